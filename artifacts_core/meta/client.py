"""The one choke point between the metadata engine and Redis.

``MetaClient`` owns the connection pool for one workspace and offers exactly three ways to talk
to Redis: ``call`` (one ``FCALL``/``FCALL_RO``: one round trip), ``pipeline`` (several reads in
one round trip) and ``command`` (a single plain command). Each maps Redis errors once:

- ``ENOENT something`` returned by a function -> the matching errno exception;
- ``NOPERM`` / "can't access" (ACL denial, a revoked session) -> EACCES;
- Redis out of memory (``OutOfMemoryError``: redis-py 8 strips the ``OOM`` prefix) -> ENOSPC
  with a hint, logged once per burst (``OOM_LOG_INTERVAL``), not once per operation;
- connection loss and timeouts -> :class:`MetaUnavailable` naming the server; the pool
  reconnects by itself when Redis returns;
- a missing or older function library -> loaded (when this client may) and the call retried once.

Redis Cluster: a workspace lives in one hash slot, so the client talks to that slot's master
directly through a plain ``redis.Redis`` (redis-py's cluster client would spend an extra
``COMMAND GETKEYS`` round trip on every ``FCALL``). A ``MOVED`` reply refreshes the slot map.

Every round trip is counted (``round_trips``), for ``.stats`` and for the tests that prove one
round trip per operation.

The change feed (``meta/changes.py``) subscribes through its own connection to the slot's owner
(``owner_address()``), ``meta/pubsub.py``: the one other way the engine talks to Redis.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from artifacts_core.errors import (
    ArtifactsError,
    ConfigError,
    InvalidArgument,
    MetaUnavailable,
    NoSpace,
    PermissionDenied,
    error_for,
)
from artifacts_core.meta import library
from artifacts_core.meta.keys import Keys

log = logging.getLogger("artifacts.meta")

_ERRNO_REPLY = re.compile(r"^(E[A-Z0-9]+)\s?(.*)$", re.S)

#: Socket timeout for one Redis command. Functions are short (every check, then a few writes);
#: a reply slower than this means Redis is stuck or unreachable, which the caller must hear.
DEFAULT_TIMEOUT = 10.0
#: Pool size: FUSE serves many threads at once; each holds a connection only for one round trip.
DEFAULT_POOL = 64
#: Seconds between two log lines about a full Redis: a burst of refused operations (a build
#: writing thousands of files) gets one line, not one per operation; each caller still gets ENOSPC.
OOM_LOG_INTERVAL = 60.0


class RedisTarget:
    """A parsed metadata URL: ``redis://``, ``rediss://`` or ``redis+cluster://`` seeds."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ConfigError(f"unsupported metadata URL scheme {parts.scheme!r}",
                              hint="use redis://, rediss:// or redis+cluster://host:port,host:port")
        self.tls = parts.scheme.startswith("rediss")
        self.cluster = parts.scheme.endswith("+cluster")
        netloc = parts.netloc
        self.username: str | None = None
        self.password: str | None = None
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            user, sep, password = userinfo.partition(":")
            if sep:
                self.username, self.password = unquote(user) or None, unquote(password)
            else:
                self.password = unquote(user)
        self.hosts: list[tuple[str, int]] = []
        for hostport in netloc.split(","):
            host, _, port = hostport.rpartition(":")
            if not host:
                host, port = port, "6379"
            try:
                self.hosts.append((host.strip("[]"), int(port)))
            except ValueError:
                raise ConfigError(f"invalid port in metadata URL host {hostport!r}") from None
        self.db = 0
        path = parts.path.strip("/")
        if path:
            if self.cluster:
                raise ConfigError("a Redis Cluster URL has no database number")
            try:
                self.db = int(path)
            except ValueError:
                raise ConfigError(f"invalid database number {path!r} in metadata URL") from None
        if not self.cluster and len(self.hosts) != 1:
            raise ConfigError("a redis:// URL names exactly one host; use redis+cluster:// for a Cluster")

    def redacted(self) -> str:
        """The URL without secrets, for logs and ``.config``."""
        scheme = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        user = f"{self.username}:***@" if self.username else ("***@" if self.password else "")
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{scheme}://{user}{hosts}" + ("" if self.cluster else f"/{self.db}")

    def connect(self, host: str, port: int, *, pool_size: int, timeout: float,
                wait_for_connection: bool = False) -> redis.Redis:
        """A client of one node. ``wait_for_connection``: a caller finding all ``pool_size``
        connections busy waits for one (up to ``timeout``) instead of failing at once with
        "Too many connections" (redis-py's default pool)."""
        options: dict[str, Any] = dict(host=host, port=port, db=self.db, username=self.username, password=self.password,
                       socket_timeout=timeout, socket_connect_timeout=min(timeout, 5.0),
                       max_connections=pool_size, health_check_interval=30, decode_responses=False,
                       retry=_retry())
        if not wait_for_connection:
            return redis.Redis(ssl=self.tls, **options)
        if self.tls:
            options["connection_class"] = redis.SSLConnection
        return redis.Redis(connection_pool=redis.BlockingConnectionPool(timeout=timeout, **options))


class _SessionRetry(Retry):
    """redis-py retries ``AuthenticationError`` (a ``ConnectionError``) ten times with backoff, which
    made a revoked session's next operation take 3-5 s to fail (benchmarks/bench_revocation.py).
    A refused AUTH is final here: the session was revoked or has expired, and EACCES is due now.
    Every other error is retried exactly as redis-py's default does."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def retryable(e: Exception) -> bool:
            if isinstance(e, (rex.AuthenticationError, rex.AuthorizationError)):
                return False
            return is_retryable(e) if is_retryable is not None else True
        return super().call_with_retry(do, fail, retryable, with_failure_count)


def _retry() -> Retry:
    # redis-py 8's defaults (redis/_defaults.py): 10 retries, jittered backoff from 10 ms, capped at 1 s.
    return _SessionRetry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 10)


class MetaClient:
    """Connections and the call choke point for one workspace (``keys.prefix``)."""

    def __init__(self, url: str, keys: Keys, *, pool_size: int = DEFAULT_POOL,
                 timeout: float = DEFAULT_TIMEOUT, may_load_library: bool = True) -> None:
        self.target = RedisTarget(url)
        self.keys = keys
        self._pool_size = pool_size
        self._timeout = timeout
        self._may_load = may_load_library
        self._lock = threading.Lock()
        self._node: redis.Redis | None = None
        self._cluster: redis.RedisCluster | None = None
        self.round_trips = 0
        self.errors = 0
        self.denied = 0
        self.full = 0  # operations Redis refused for lack of memory
        self._full_logged = -OOM_LOG_INTERVAL
        self._checked_library = False
        #: This thread's per-call tag (``call_tag``).
        self._local = threading.local()
        self._multi: bool | None = None  # may this user run MULTI (_can_multi); None: not asked yet
        #: The key every call declares as KEYS[1] unless told otherwise: ``setting``, or this
        #: client's own session key once it registered one (meta/sessions.py) — FCALL needs write
        #: permission on its declared key, and a session ACL user may not write ``setting``.
        #: The functions' change records name the session it declares as the actor.
        self.declared = keys.setting

    # -- connections ---------------------------------------------------------------------------

    @property
    def is_cluster(self) -> bool:
        return self.target.cluster

    def node(self) -> redis.Redis:
        """The plain client of the master that owns this workspace's slot."""
        node = self._node
        if node is not None:
            return node
        with self._lock:
            if self._node is None:
                self._node = self._connect_owner()
            return self._node

    def _connect_owner(self) -> redis.Redis:
        t = self.target
        if not t.cluster:
            host, port = t.hosts[0]
            return t.connect(host, port, pool_size=self._pool_size, timeout=self._timeout)
        if self._cluster is None:
            nodes = [redis.cluster.ClusterNode(h, p) for h, p in t.hosts]
            self._cluster = redis.RedisCluster(
                startup_nodes=nodes, username=t.username, password=t.password, ssl=t.tls,
                socket_timeout=self._timeout, socket_connect_timeout=min(self._timeout, 5.0))
        owner = self._cluster.get_node_from_key(self.keys.setting)
        return t.connect(owner.host, owner.port, pool_size=self._pool_size, timeout=self._timeout)

    def master_clients(self) -> list[redis.Redis]:
        """One client per master (a Function library must be loaded on each of them)."""
        if not self.target.cluster:
            return [self.node()]
        self.node()
        assert self._cluster is not None
        return [self.target.connect(n.host, n.port, pool_size=2, timeout=self._timeout)
                for n in self._cluster.get_primaries()]

    def owner_address(self) -> tuple[str, int]:
        """(host, port) of the master that owns this workspace's slot."""
        kw = self.node().connection_pool.connection_kwargs
        return kw["host"], kw["port"]

    @property
    def timeout(self) -> float:
        """Seconds one command may take before it counts as failed."""
        return self._timeout

    def refresh_owner(self) -> None:
        """Forget the slot's owner (a MOVED reply, a lost subscription): the next use asks again."""
        self._refresh_owner()

    def _refresh_owner(self) -> None:
        with self._lock:
            old, self._node = self._node, None
            if self._cluster is not None:
                self._cluster.nodes_manager.initialize()
        if old is not None:
            old.close()

    def close(self) -> None:
        with self._lock:
            if self._node is not None:
                self._node.close()
                self._node = None
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    # -- the choke point -----------------------------------------------------------------------

    def call(self, function: str, *args: Any, ro: bool = False, key: str | None = None) -> Any:
        """One ``FCALL``/``FCALL_RO`` of ``function`` with ``declared`` as KEYS[1] (or ``key``,
        another key of this workspace). Under ``call_tag`` (this thread), a writing call on the
        session's key is wrapped in one MULTI that sets the session's per-call tag before it and
        clears it after: its change records, and only its, carry the tag."""
        command = "FCALL_RO" if ro else "FCALL"
        routed = self.declared if key is None else key
        assert self.keys.own(routed), routed
        tag = getattr(self._local, "tag", None)
        if tag and not ro and routed != self.keys.setting and function != "af_session_tag" and self._can_multi():
            def tagged(r: redis.Redis) -> Any:
                pipe = r.pipeline(transaction=True)
                pipe.execute_command("FCALL", "af_session_tag", 1, routed, tag, "call")
                pipe.execute_command(command, function, 1, routed, *args)
                pipe.execute_command("FCALL", "af_session_tag", 1, routed, "", "call")
                result = pipe.execute(raise_on_error=False)[1]
                if isinstance(result, Exception):
                    raise result
                return result
            return self._run(tagged, what=function)
        return self._run(lambda r: r.execute_command(command, function, 1, routed, *args),
                         what=function)

    def _can_multi(self) -> bool:
        """Whether this Redis user may run MULTI, probed once with an empty transaction (a
        session user minted before its rules granted it may not: its calls then run untagged,
        never failed -- and never half inside a refused MULTI)."""
        if self._multi is None:
            def probe(r: redis.Redis) -> bool:
                try:
                    pipe = r.pipeline(transaction=True)
                    pipe.execute_command("PING")
                    pipe.execute()
                    return True
                except rex.ResponseError as e:  # NOPERM on MULTI, then "EXEC without MULTI"
                    if "NOPERM" in str(e) or "without MULTI" in str(e) or isinstance(e, rex.NoPermissionError):
                        return False
                    raise
            self._multi = bool(self._run(probe, what="MULTI"))
            if not self._multi:
                log.info("this Redis user may not run MULTI: per-call tags are off for it")
        return self._multi

    @contextlib.contextmanager
    def call_tag(self, tag: str) -> Iterator[None]:
        """The change records of this thread's calls inside carry ``tag`` (the agent API's
        tool-call id), whatever other threads on the same client do meanwhile: each writing call
        runs in a MULTI with the tag set and cleared around it (one round trip; two more
        function calls on the server). At most 256 bytes, no NUL."""
        if len(tag.encode()) > 256 or "\0" in tag:
            raise InvalidArgument("a tag is at most 256 bytes, without NUL")
        prev = getattr(self._local, "tag", None)
        self._local.tag = tag or None
        try:
            yield
        finally:
            self._local.tag = prev

    def command(self, *args: Any) -> Any:
        """One plain command (reads of keys this workspace owns)."""
        return self._run(lambda r: r.execute_command(*args), what=str(args[0]))

    def pipeline(self, build: Callable[[Any], object]) -> list[Any]:
        """Several commands in one round trip (no MULTI: reads only)."""
        def run(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            build(pipe)
            return pipe.execute(raise_on_error=True)
        return self._run(run, what="pipeline")

    def _run(self, op: Callable[[redis.Redis], Any], *, what: str) -> Any:
        loaded = False
        moved = 0
        while True:
            self.round_trips += 1
            try:
                return op(self.node())
            except (rex.MovedError, rex.AskError) as e:
                if moved >= 3:
                    raise MetaUnavailable(f"the workspace's hash slot keeps moving ({e})") from e
                moved += 1
                self._refresh_owner()
            except rex.ResponseError as e:
                text = str(e)
                if ("Function not found" in text or "No such function" in text) and not loaded:
                    self.ensure_library(force=True)
                    loaded = True
                    continue
                raise self._translate(e, what) from e
            except (rex.AuthenticationError, rex.AuthorizationError) as e:
                self.denied += 1
                raise PermissionDenied(
                    "Redis refused this workspace's credentials",
                    hint="the mount session may have been revoked or expired; mount again") from e
            except (rex.ConnectionError, rex.TimeoutError) as e:
                self.errors += 1
                if isinstance(e.__cause__, PermissionError) or "NOPERM" in str(e):
                    raise PermissionDenied("Redis denied access to this workspace",
                                           hint="the mount session was revoked") from e
                where = ",".join(f"{h}:{p}" for h, p in self.target.hosts)
                kind = "timed out" if isinstance(e, rex.TimeoutError) else "is unreachable"
                raise MetaUnavailable(
                    f"the metadata server at {where} {kind} during {what}",
                    hint="check that Redis is running; operations resume when it returns") from e

    def _translate(self, e: rex.ResponseError, what: str) -> ArtifactsError:
        text = str(e)
        m = _ERRNO_REPLY.match(text)
        if m:
            return error_for(m.group(1), m.group(2) or what)
        if isinstance(e, rex.OutOfMemoryError) or text.startswith("OOM") or "> 'maxmemory'" in text:
            return self._full(what)
        self.errors += 1
        if text.startswith("NOPERM") or "can't access" in text or "no permissions" in text.lower():
            self.denied += 1
            return PermissionDenied(f"Redis denied {what}",
                                    hint="the session is read-only, revoked, or not for this workspace")
        log.error("unexpected Redis error in %s: %s", what, text)
        return ArtifactsError(f"metadata operation {what} failed: {text}")

    def _full(self, what: str) -> NoSpace:
        """Redis refused ``what`` at ``maxmemory``: ENOSPC for the caller, one log line per burst."""
        self.full += 1
        now = time.monotonic()
        if now - self._full_logged >= OOM_LOG_INTERVAL:
            self._full_logged = now
            where = ",".join(f"{h}:{p}" for h, p in self.target.hosts)
            log.warning("Redis at %s is full (used memory reached maxmemory): operations that add "
                        "metadata fail with ENOSPC until space is freed (deleting and truncating "
                        "files, reading and the session still work); free space by deleting files, "
                        "or raise Redis maxmemory. Refused so far: %d (%s)", where, self.full, what)
        return NoSpace("the metadata server (Redis) is full",
                       hint="free space by deleting files, or raise Redis maxmemory")

    # -- the function library ------------------------------------------------------------------

    def ensure_library(self, *, force: bool = False) -> None:
        """Load the function library on every master where it is missing or older."""
        if self._checked_library and not force:
            return
        ours = library.parse_version(library.version_string())
        assert ours is not None
        for client in self.master_clients():
            try:
                try:
                    theirs = library.loaded_version(client)
                except rex.NoPermissionError:
                    # A session user may not list functions: ask the library itself, on the
                    # node that owns this workspace (the only one this session uses).
                    self._check_library_by_call(ours)
                    break
                if theirs is not None and theirs[0] > ours[0]:
                    raise ConfigError(
                        f"Redis holds metadata library v{theirs[0]}, newer than this client's v{ours[0]}",
                        hint="upgrade artifacts on this host")
                if theirs != ours:
                    if not self._may_load:
                        raise ConfigError("the metadata function library is missing or outdated",
                                          hint="ask the orchestrator to load it (it does so at start)")
                    client.execute_command("FUNCTION", "LOAD", "REPLACE", library.library_code())
                    log.info("loaded metadata library %s", library.version_string())
            except (rex.ConnectionError, rex.TimeoutError) as e:
                raise MetaUnavailable(f"cannot reach Redis to check the function library: {e}") from e
            finally:
                if client is not self._node:
                    client.close()
        self._checked_library = True

    def _check_library_by_call(self, ours: tuple[int, str]) -> None:
        try:
            reply = self.node().execute_command("FCALL_RO", "af_version", 1, self.keys.setting)
        except rex.ResponseError as e:
            raise ConfigError("the metadata function library is not loaded in this Redis",
                              hint="the orchestrator loads it at start; check that it is running") from e
        theirs = library.parse_version(reply)
        if theirs != ours:
            raise ConfigError(f"Redis holds metadata library {reply!r}, this client needs {library.version_string()}",
                              hint="upgrade artifacts on this host, or the orchestrator's library")


def wait_until_ready(client: MetaClient, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.command("PING")
            return
        except MetaUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def fcall_args(values: Sequence[Any]) -> list[Any]:
    """Arguments as Redis sends them (``None`` becomes an empty string)."""
    return ["" if v is None else v for v in values]
