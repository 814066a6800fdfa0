"""Redis as the orchestrator sees it: the checks at start, the function library, ACL users, key sweeps.

``RedisAdmin`` holds admin connections to every node of the deployment (one for a standalone
Redis; every primary and replica of a Cluster, since ACL users are not replicated) and owns:

- ``prepare()``: at start, check (or, for a Redis the orchestrator started itself, configure)
  ``maxmemory-policy noeviction`` and AOF on every node (DESIGN.md §10), note which nodes have an
  ACL file, and load the metadata function library on every primary (session users cannot);
- ACL users: ``set_user`` / ``delete_user`` apply the same rules to every node and then
  ``ACL SAVE`` on each, so a user survives a restart and exists wherever the workspace's slot
  may live; ``users()`` lists ours (``fmt-`` and ``ms-`` names) for the reaper;
- the workspace sweep of the delete flow (``SCAN MATCH`` with the braces escaped, then ``UNLINK``
  in batches) and the ``setting`` check of format-completed.

ACL rules (DESIGN.md §10): every user we mint gets ``reset`` first (no inherited rights), a
password given to Redis only as its SHA-256 (``#<hex>``: the clear password never reaches Redis
or its ACL file), and the command set ``-@all +@read +@write -@scripting -@dangerous +fcall
+fcall_ro +ping +hello +time`` — no ``EVAL``, ``SCRIPT`` or ``FUNCTION``, and none of the commands
that reach another database (``SELECT``, ``MOVE``, ``COPY``, ``SWAPDB``: a key moved to another
database would outlive its workspace's delete). Keys (DESIGN.md §10: a session writes only what
it owns; ``meta/keys.py`` classifies every key kind): every user reads ``%R~{p}*``; a session
user writes its own ``sess<sid>``, ``opens<sid>`` and ``locks<sid>`` (for each of the ids
assigned here, at mint time, by ``assign_session``) and, when read-write, the workspace's data keys
(``DATA_KEY_PATTERNS``); never another session's keys, the shared session bookkeeping or the
volume's ``setting``/``limits``. Format users write ``~{p}*``. Channels: ``resetchannels`` then
``&{p}changes`` only, the workspace's change channel (``meta/changes.py``): every user may
``SSUBSCRIBE`` to it, and users that write data may ``SPUBLISH`` there, which their functions do
with the caller's permissions. The journal (``meta/journal.py``): read by every user; a read-write
session user gets one ACL selector, ``(%W~{p}reads %W~{p}journal +rpush)`` (a read-only one
``(%W~{p}reads +rpush)``: the read audit): its functions append records, and
nothing it runs can remove or change one (retention, with full rights, trims); read-only users
cannot append change records (no ``SUBSCRIBE``, ``PSUBSCRIBE`` or ``PUBLISH``: the records are
sharded messages, which plain subscribers never see). ``CLIENT SETINFO`` (sent by redis-py on
connect) is granted where the server
knows it (Redis >= 7.2); redis-py ignores its refusal elsewhere. A Cluster client also needs
``CLUSTER SLOTS``/``SHARDS``/``NODES``, ``COMMAND`` and ``READONLY`` to find the slot's owner.

Revocation is ``ACL DELUSER``, which closes the user's live connections (``off`` would not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import quote

import redis
import redis.exceptions as rex

from artifacts_core.errors import ArtifactsError, ConfigError
from artifacts_core.meta.client import MetaClient, RedisTarget
from artifacts_core.meta.format import load_setting
from artifacts_core.meta.journal import trim
from artifacts_core.meta.keys import (
    DATA_KEY_PATTERNS,
    Keys,
    check_prefix,
    session_key_names,
    workspace_prefix,
)
from artifacts_orchestrator.errors import MetadataAclProvisioningFailed

log = logging.getLogger("artifacts.orchestrator.redis")

#: Name prefixes of the ACL users the orchestrator mints (the reaper touches no other user).
FORMAT_USER_PREFIX = "fmt-"
SESSION_USER_PREFIX = "ms-"

BASE_COMMANDS = ("-@all", "+@read", "+@write", "-@scripting", "-@dangerous", "+fcall", "+fcall_ro",
                 "+ping", "+hello", "+time",
                 # A per-call tag is set and cleared around one function call in a MULTI
                 # (meta/client.py: call_tag); a transaction reaches no key the user could not.
                 "+multi", "+exec", "+discard",
                 # Commands that take no key see the whole database: SCAN and RANDOMKEY would show
                 # other workspaces' key names, DBSIZE their number. Sessions need none of them.
                 "-scan", "-randomkey", "-dbsize",
                 # Commands that reach another database: a key MOVEd (or COPY … DB'd) there escapes
                 # the workspace's key patterns and its delete sweep. SELECT and SWAPDB are outside
                 # +@read/+@write or in -@dangerous already; refused by name all the same.
                 "-select", "-move", "-copy", "-swapdb")
#: What redis-py's cluster client runs to find the slot owner (no data, no writes).
CLUSTER_COMMANDS = ("+cluster|slots", "+cluster|shards", "+cluster|nodes", "+command", "+readonly",
                    "+asking")
#: Pub/sub for the change feed: every user subscribes to its workspace's channel; a user that
#: may run mutating functions also publishes there (the functions' SPUBLISH runs as the caller).
SUBSCRIBE_COMMANDS = ("+ssubscribe", "+sunsubscribe")
PUBLISH_COMMANDS = ("+spublish",)

#: Counters shown by ``summarize`` and the single keys counted under their own name.
COUNTERS = ("totalinodes", "usedspace", "inlinebytes", "nextinode", "nextslice")
_SINGLETONS = frozenset(("setting", "limits", "sessions", "sessusers", "jobs", "commits", "sliceref",
                         "delfiles", "delslices", "inlinechunks", "slicebatches", "nextsession"))

#: Keys per SCAN step and per UNLINK in the delete sweep: large enough to be quick, small enough
#: that one command never blocks Redis for long.
SWEEP_BATCH = 1000
#: Admin connections per Redis node: one for each of the orchestrator's worker threads (16,
#: app.WORKERS) plus its background loops, so no request waits for another's connection. It was 4:
#: ten parallel ``inspect`` loops of one account made other accounts' session creations and
#: revocations fail ("Too many connections"). A caller finding all busy waits (up to the timeout).
ADMIN_POOL = 20
#: Session ids (hence concurrent clients) per session user: a grant serves a mount, or the
#: volume of ``artifacts exec`` and the warm mount it makes, or an MCP server with its bash tool's
#: mount; 8 leaves room. Each id adds three exact key patterns to the user's ACL rules.
SESSIONS_PER_USER = 8
#: Per call of the stale-session sweep: sessions looked at, inodes released (~1 ms of Redis per
#: 100 inodes, as the clients' own sweep in meta/sessions.py).
SWEEP_SESSIONS, SWEEP_BUDGET = 100, 1000


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def acl_rules(prefix: str, *, read_only: bool, sids: Iterable[int] | None = None, cluster: bool = False,
              extra_commands: Iterable[str] = ()) -> list[str]:
    """The ACL SETUSER rules (without user, on/off and password) of a workspace user: a session
    user (``sids``: its assigned session ids) or, without ``sids``, a format user (all keys)."""
    check_prefix(prefix)
    if sids is None:
        if read_only:
            raise ValueError("a read-only user is a session user: give its session ids")
        keys = [f"~{prefix}*"]
    else:
        own = [name for sid in sids for name in session_key_names(sid)]
        writable = [*own, *(() if read_only else DATA_KEY_PATTERNS)]
        keys = [f"%R~{prefix}*", *(f"%RW~{prefix}{k}" for k in writable)]
    commands = [*BASE_COMMANDS, *SUBSCRIBE_COMMANDS, *(() if read_only else PUBLISH_COMMANDS),
                *(CLUSTER_COMMANDS if cluster else ()), *extra_commands]
    # The journal: appended by the mutating functions, which run as the caller. A selector lets
    # this user write that one key with RPUSH and nothing else (the root rules grant it read only),
    # so it can add records but never remove, reorder or alter one (no LTRIM, LPOP, LSET, DEL, ...).
    # The read audit (`reads`, af_open with the volume's journal_reads on) likewise, for every
    # session user: read-only sessions are its main writers.
    journal = []
    if sids is not None:
        appendable = [Keys(prefix).reads, *(() if read_only else (Keys(prefix).journal,))]
        journal = ["(" + " ".join(f"%W~{k}" for k in appendable) + " +rpush)"]
    return ["resetchannels", f"&{Keys(prefix).changes}", *keys, *commands, *journal]


def initial_aclfile_text(admin_user: str, admin_password: str) -> str:
    """An ACL file for a Redis the orchestrator provisions: an admin user, and the default user
    OFF (nobody can log in as it) but with every permission. Found by experiment on Redis 7.0:
    replaying the AOF at start checks each MULTI/EXEC (what a function call is written as)
    against the default user's permissions, so a restricted default user silently loses every
    function-written key on restart (redis/redis#14541)."""
    return (f"user default off nopass ~* &* +@all\n"
            f"user {admin_user} on #{password_hash(admin_password)} ~* &* +@all\n")


class RedisAdmin:
    """Admin connections to every node, and the operations the orchestrator runs on Redis."""

    def __init__(self, admin_url: str, *, public_url: str | None = None, timeout: float = 10.0,
                 pool_size: int = ADMIN_POOL) -> None:
        self.admin_url = admin_url
        self.pool_size = pool_size
        self.target = RedisTarget(admin_url)
        self.public = RedisTarget(public_url or admin_url)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._nodes: list[redis.Redis] | None = None
        self._cluster: redis.RedisCluster | None = None
        self.acl_file_nodes: dict[str, str] = {}  # node -> its ACL file path
        self.extra_commands: tuple[str, ...] = ()

    # -- connections ----------------------------------------------------------------------------

    def nodes(self) -> list[redis.Redis]:
        with self._lock:
            if self._nodes is None:
                t = self.target
                if not t.cluster:
                    host, port = t.hosts[0]
                    self._nodes = [t.connect(host, port, pool_size=self.pool_size, timeout=self.timeout,
                                             wait_for_connection=True)]
                else:
                    self._cluster = redis.RedisCluster(
                        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in t.hosts],
                        username=t.username, password=t.password, ssl=t.tls,
                        socket_timeout=self.timeout)
                    self._nodes = [t.connect(n.host, n.port, pool_size=self.pool_size, timeout=self.timeout,
                                             wait_for_connection=True) for n in self._cluster.get_nodes()]
            return self._nodes

    def close(self) -> None:
        with self._lock:
            for n in self._nodes or []:
                n.close()
            if self._cluster is not None:
                self._cluster.close()
            self._nodes, self._cluster = None, None

    def _each(self, what: str, op) -> list:
        try:
            return [op(n) for n in self.nodes()]
        except (rex.ConnectionError, rex.TimeoutError) as e:
            self.close()  # rebuilt on the next call (a restarted Redis, a changed topology)
            raise MetadataAclProvisioningFailed(f"cannot reach Redis to {what}; retry in a few seconds") from e
        except rex.ResponseError as e:
            # Redis's reply says why in its first words; the cap keeps a long one out of the body.
            raise MetadataAclProvisioningFailed(f"Redis refused to {what}: {str(e)[:200]}") from e

    @staticmethod
    def _name(node: redis.Redis) -> str:
        kw = node.connection_pool.connection_kwargs
        return f"{kw.get('host')}:{kw.get('port')}"

    # -- start-up -------------------------------------------------------------------------------

    def prepare(self, *, configure: bool = False, require_aof: bool = True,
                require_aclfile: bool = True) -> None:
        """Check every node's configuration (setting it first with ``configure``), then load the
        function library on every primary."""
        for node in self.nodes():
            name = self._name(node)
            if configure:
                node.config_set("maxmemory-policy", "noeviction")
                node.config_set("appendonly", "yes")
                _wait_initial_aof(node, name)
            cfg: dict[Any, Any] = node.config_get("maxmemory-policy")  # keys bytes or str, as the client decodes
            policy = cfg.get(b"maxmemory-policy", cfg.get("maxmemory-policy", b""))
            policy = policy.decode() if isinstance(policy, bytes) else policy
            if policy != "noeviction":
                raise ConfigError(f"Redis {name} has maxmemory-policy {policy!r}: it may evict metadata",
                                  hint="set maxmemory-policy noeviction")
            aof: dict[Any, Any] = node.config_get("appendonly")
            if require_aof and (aof.get(b"appendonly") or aof.get("appendonly")) not in (b"yes", "yes"):
                raise ConfigError(f"Redis {name} runs without AOF", hint="set appendonly yes")
            if require_aof:
                _check_default_user(node, name)
            acl: dict[Any, Any] = node.config_get("aclfile")
            path = acl.get(b"aclfile") or acl.get("aclfile")
            if path:
                self.acl_file_nodes[name] = path.decode() if isinstance(path, bytes) else path
            elif require_aclfile:
                raise ConfigError(f"Redis {name} has no ACL file: session users would not survive a restart",
                                  hint="start redis-server with --aclfile <path>")
            else:
                log.warning("Redis %s has no ACL file; ACL users live in memory only", name)
        version = str(self.nodes()[0].info("server").get("redis_version", "0"))
        major_minor = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
        self.extra_commands = ("+client|setinfo",) if major_minor >= (7, 2) else ()  # new in 7.2
        meta = MetaClient(self.admin_url, Keys(workspace_prefix(0, 0)), pool_size=2)
        try:
            meta.ensure_library()
        finally:
            meta.close()

    # -- ACL users ------------------------------------------------------------------------------

    def set_user(self, user: str, password: str, prefix: str, *, read_only: bool,
                 sids: Iterable[int] | None = None) -> None:
        """Create (or replace) ``user`` on every node and save the ACL files. ``sids``: the
        session ids ``assign_session`` gave a session user (format users have none)."""
        rules = acl_rules(prefix, read_only=read_only, sids=sids, cluster=self.target.cluster,
                          extra_commands=self.extra_commands)
        secret = f"#{password_hash(password)}"
        try:
            self._each("create the ACL user",
                       lambda n: n.execute_command("ACL", "SETUSER", user, "reset", "on", secret, *rules))
        except MetadataAclProvisioningFailed:
            with contextlib.suppress(MetadataAclProvisioningFailed):
                self.delete_user(user)  # no half-provisioned user survives on some nodes
            raise
        self._save()

    def delete_user(self, user: str) -> None:
        """Remove ``user`` everywhere (closing its live connections); absent users are fine."""
        self._each("delete the ACL user", lambda n: n.execute_command("ACL", "DELUSER", user))
        self._save()

    def delete_users(self, users: Iterable[str]) -> None:
        users = list(users)
        if users:
            self._each("delete ACL users", lambda n: n.execute_command("ACL", "DELUSER", *users))
            self._save()

    def users(self) -> set[str]:
        """Our ACL users (format and session) present on any node."""
        found: set[str] = set()
        for names in self._each("list ACL users", lambda n: n.execute_command("ACL", "USERS")):
            for raw in names:
                name = raw.decode() if isinstance(raw, bytes) else raw
                if name.startswith((FORMAT_USER_PREFIX, SESSION_USER_PREFIX)):
                    found.add(name)
        return found

    def _save(self) -> None:
        """ACL SAVE on every node with an ACL file. Redis rewrites the file with its umask (0644
        seen here); a file on this host is put back to 0600. Keep remote ones in a 0700 directory."""
        def save(n: redis.Redis) -> None:
            path = self.acl_file_nodes.get(self._name(n))
            if path:
                n.execute_command("ACL", "SAVE")
                if n.connection_pool.connection_kwargs.get("host") in ("127.0.0.1", "localhost", "::1"):
                    with contextlib.suppress(OSError):
                        os.chmod(path, 0o600)
        self._each("save the ACL file", save)

    # -- workspace keys -------------------------------------------------------------------------

    def _owner(self, prefix: str) -> redis.Redis:
        nodes = self.nodes()
        if self._cluster is None:
            return nodes[0]
        owner = self._cluster.get_node_from_key(prefix + "setting")
        for n in nodes:
            kw = n.connection_pool.connection_kwargs
            if (kw.get("host"), kw.get("port")) == (owner.host, owner.port):
                return n
        raise MetadataAclProvisioningFailed("the workspace's hash slot has no known owner")

    def setting_present(self, prefix: str) -> bool:
        """Whether a readable volume ``setting`` exists under ``prefix``."""
        meta = MetaClient(self.admin_url, Keys(prefix), pool_size=1, may_load_library=False)
        try:
            load_setting(meta)
            return True
        except ConfigError:
            return False
        except ArtifactsError as e:
            raise MetadataAclProvisioningFailed(f"cannot read the workspace setting: {e}") from e
        finally:
            meta.close()

    def trim_journal(self, prefix: str) -> int:
        """The journal's retention for one workspace: its setting's bounds (``journal_max_events``,
        ``journal_max_days``). Session users cannot trim (their ACL rules): this is the only path.
        Returns how many events were dropped."""
        meta = MetaClient(self.admin_url, Keys(prefix), pool_size=1, may_load_library=False)
        try:
            s = load_setting(meta)
            return trim(meta, max_events=s.journal_max_events, max_age=s.journal_max_days * 86400)
        except ConfigError:
            return 0  # not formatted (yet): nothing journaled
        except ArtifactsError as e:
            raise MetadataAclProvisioningFailed(f"cannot trim the workspace's journal: {e}") from e
        finally:
            meta.close()

    # -- meta sessions of session users (lua/31_sessions.lua) --------------------------------------

    def _fcall(self, what: str, function: str, prefix: str, *args) -> Any:
        try:
            return self._owner(prefix).execute_command("FCALL", function, 1, prefix + "setting", *args)
        except (rex.ConnectionError, rex.TimeoutError) as e:
            self.close()
            raise MetadataAclProvisioningFailed(f"cannot reach Redis to {what}; retry in a few seconds") from e
        except rex.ResponseError as e:
            raise MetadataAclProvisioningFailed(f"Redis refused to {what}: {str(e)[:200]}") from e

    def assign_session(self, prefix: str, user: str) -> list[int]:
        """The metadata session ids of session user ``user`` (allocated on first call): a session
        user may not write the shared ``nextsession`` and ``sessions`` keys, so its ids are made
        here, before its ACL rules (which name them) exist. ``SESSIONS_PER_USER`` of them: one per
        client the grant serves at once."""
        first = int(self._fcall("assign session ids", "af_session_assign", prefix, user, SESSIONS_PER_USER))
        raw = cast(bytes, self._owner(prefix).hget(prefix + "sessusers", user) or b"")  # replies are bytes
        count = int(raw.split(b":")[1]) if b":" in raw else SESSIONS_PER_USER
        return list(range(first, first + count))

    def end_session(self, prefix: str, user: str) -> None:
        """End ``user``'s metadata session now (its locks released, its opens deregistered,
        unlinked files it held last freed) and forget its id. Idempotent."""
        while True:
            done, _freed = self._fcall("end the metadata session", "af_session_end", prefix, user, SWEEP_BUDGET)
            if done:
                return

    def sweep_sessions(self, prefix: str) -> int:
        """End the workspace's metadata sessions whose expiry passed (session users never sweep:
        they may not write other sessions' keys). Returns how many were ended."""
        ended = 0
        while True:
            n, more, _freed = self._fcall("sweep stale sessions", "af_session_sweep", prefix, 0, 0, 0, 1,
                                          SWEEP_SESSIONS, SWEEP_BUDGET)
            ended += int(n)
            if not int(more):
                return ended

    def session_memory(self, prefix: str) -> dict[str, int]:
        """Bytes of Redis memory each session user's own keys take (``MEMORY USAGE``, sampled)."""
        node = self._owner(prefix)
        try:
            mapping = cast(dict[bytes, bytes], node.hgetall(prefix + "sessusers") or {})  # replies are bytes
            users = []
            for u, block in mapping.items():
                if not u.startswith(b"#"):
                    first, _, count = block.decode().partition(":")
                    users.append((u.decode(), [f"{prefix}{name}" for sid in range(int(first), int(first) + int(count))
                                               for name in session_key_names(sid)]))
            pipe = node.pipeline(transaction=False)
            for _user, keys in users:
                for key in keys:
                    pipe.memory_usage(key)
            sizes = iter(pipe.execute())
        except (rex.ConnectionError, rex.TimeoutError) as e:
            self.close()
            raise MetadataAclProvisioningFailed("cannot reach Redis to measure session keys") from e
        return {user: sum(next(sizes) or 0 for _ in keys) for user, keys in users}

    def delete_keys(self, prefix: str) -> int:
        """SCAN+UNLINK every key under ``prefix`` (repeated until a whole pass finds none)."""
        pattern = Keys(prefix).pattern  # braces escaped: a literal {…} in MATCH
        total = 0
        try:
            node = self._owner(prefix)
            while True:
                found = 0
                for batch in _batches(node.scan_iter(match=pattern, count=SWEEP_BATCH), SWEEP_BATCH):
                    found += node.unlink(*batch)
                total += found
                if not found:
                    return total
        except (rex.ConnectionError, rex.TimeoutError) as e:
            self.close()
            raise MetadataAclProvisioningFailed("cannot reach Redis to delete the workspace's keys") from e

    def summarize(self, prefix: str) -> dict:
        """A workspace's keyspace for ``artifacts inspect``: key counts by kind (the letters that
        start a key's suffix: ``i`` attrs, ``d`` directories, ``c`` chunk lists, ...; whole names
        for the singletons), the volume's counters and its live metadata sessions. Sessions may
        not SCAN (it would show every workspace's key names), so the orchestrator does it."""
        node = self._owner(prefix)
        kinds: dict[str, int] = {}
        total = 0
        for key in node.scan_iter(match=Keys(prefix).pattern, count=SWEEP_BATCH):
            suffix = key.decode("utf-8", "surrogateescape")[len(prefix):]
            m = re.match(r"[a-z]+", suffix)
            kind = suffix if suffix in _SINGLETONS or (m and m.group(0) in COUNTERS) else (
                m.group(0) if m else "(other)")
            kinds[kind] = kinds.get(kind, 0) + 1
            total += 1
        counters = self.counters(prefix)
        sessions = []
        for sid in cast(list[bytes], node.zrange(prefix + "sessions", 0, -1)):  # replies are bytes
            info = node.hget(f"{prefix}sess{int(sid)}", "info")
            if info is None:
                continue  # an assigned id whose client has not registered (or has ended)
            try:
                detail = json.loads(info)
            except ValueError:
                detail = {}
            sessions.append({"sid": sid.decode(), **{k: detail.get(k) for k in ("host", "pid", "mountpoint",
                                                                                 "read_only")}})
        return {"keys": total, "kinds": dict(sorted(kinds.items())), "counters": counters,
                "meta_sessions": sessions}

    def counters(self, prefix: str) -> dict[str, int]:
        """The volume's counters (used space, inodes, ...): one MGET, no scan."""
        values = self._owner(prefix).mget([prefix + c for c in COUNTERS])
        return {c: int(v) if v is not None else 0 for c, v in zip(COUNTERS, values, strict=True)}

    def references(self, prefix: str) -> dict:
        """What the workspace's metadata refers to in S3, for gc and fsck (``references.py``):
        it takes SCAN, which sessions may not run."""
        from artifacts_orchestrator.references import references

        return references(self._owner(prefix), prefix)

    def quota(self, prefix: str, *, capacity: int | None = None, inodes: int | None = None,
              change: bool = False) -> dict:
        """The workspace's limits and usage; with ``change``, set the given limits first
        (``quota.py``: only the orchestrator may write the setting)."""
        from artifacts_orchestrator import quota

        node = self._owner(prefix)
        if change:
            return quota.change(node, prefix, capacity=capacity, inodes=inodes)
        return quota.read(node, prefix)

    def count_keys(self, prefix: str) -> int:
        node = self._owner(prefix)
        return sum(1 for _ in node.scan_iter(match=Keys(prefix).pattern, count=SWEEP_BATCH))

    # -- what clients get -----------------------------------------------------------------------

    def client_url(self, user: str, password: str) -> str:
        """The metadata URL a client connects with: the public address, this user's credentials."""
        t = self.public
        scheme = ("rediss" if t.tls else "redis") + ("+cluster" if t.cluster else "")
        hosts = ",".join(f"{h}:{p}" for h, p in t.hosts)
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{scheme}://{auth}{hosts}" + ("" if t.cluster else f"/{t.db}")


#: How long the first AOF may take to write after AOF is switched on at runtime (a fresh local
#: Redis holds little; a large one is what an operator configures by hand instead).
INITIAL_AOF_TIMEOUT = 60.0


def _wait_initial_aof(node: redis.Redis, name: str) -> None:
    """Switching AOF on at runtime starts a background rewrite that writes the first AOF; until it
    ends the data is not yet durable, and Redis refuses to shut down ("Writing initial AOF,
    can't exit" — seen here on 7.0). Wait for it."""
    import time

    deadline = time.monotonic() + INITIAL_AOF_TIMEOUT
    while True:
        info = node.info("persistence")
        if not int(info.get("aof_rewrite_in_progress", 0)) and not int(info.get("aof_rewrite_scheduled", 0)):
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"Redis {name} is still writing its first AOF after {INITIAL_AOF_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _check_default_user(node: redis.Redis, name: str) -> None:
    """AOF replay runs transactions with the default user's permissions (see initial_aclfile_text)."""
    info: dict[str, Any] = node.acl_getuser("default") or {}
    granted = " ".join(str(x) for x in [info.get("commands", ""), *info.get("categories", [])])
    keys = info.get("keys", [])
    keys = keys.split() if isinstance(keys, str) else keys
    if "+@all" not in granted or "~*" not in keys:
        raise ConfigError(
            f"Redis {name}: the default ACL user lacks full permissions, and Redis replays AOF "
            "transactions with them: metadata written by functions would be lost on restart",
            hint="give the default user `~* &* +@all` and turn it `off` instead of restricting it")


def _batches(it: Iterable, size: int):
    batch = []
    for item in it:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
