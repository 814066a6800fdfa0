"""Redis ACL users as the orchestrator mints them, on a real redis-server (and a real Cluster).

What these prove (DESIGN.md §10): a session user reaches only its workspace's keys and only
through functions and plain data commands (no EVAL/SCRIPT/FUNCTION); a read-only user is
refused every namespace write BY REDIS, even through a raw FCALL or SET, while its session and
lock functions still work; ACL DELUSER cuts a live connection; users survive a restart through
the ACL file; on a Cluster users exist on every node and work for a slot on a non-first master.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import re
import secrets
import time

import pytest
import redis
import redis.exceptions as rex

from artifacts_core.errors import ArtifactsError, ConfigError, PermissionDenied
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.meta.keys import (
    DATA_KEY_PATTERNS,
    FORMAT_KEYS,
    JOURNAL_KEYS,
    SHARED_SESSION_KEYS,
    Keys,
    session_key_names,
    workspace_prefix,
)
from artifacts_core.servers import LOOPBACK, RedisServer
from artifacts_orchestrator.errors import ApiError
from artifacts_orchestrator.redis_acl import RedisAdmin, acl_rules, initial_aclfile_text

pytestmark = pytest.mark.redis

ADMIN = "artifacts-admin"
ROOT = 1
_ids = itertools.count(1)
_account = 7_000_000 + os.getpid() % 1_000_000  # this run's own account id: prefixes never clash


def start_acl_redis(workdir, *, port=None) -> tuple[RedisServer, str]:
    """redis-server with AOF and an ACL file (an admin user; the default user off)."""
    workdir.mkdir(parents=True, exist_ok=True)
    aclfile = workdir / "users.acl"
    password_file = workdir / "admin.pw"
    if not aclfile.exists():
        password = secrets.token_urlsafe(24)
        password_file.write_text(password)
        aclfile.write_text(initial_aclfile_text(ADMIN, password))
        aclfile.chmod(0o600)
    password = password_file.read_text()
    server = RedisServer.start(workdir, port=port, appendonly=True, extra=["--aclfile", str(aclfile)])
    return server, f"redis://{ADMIN}:{password}@{LOOPBACK}:{server.port}/0"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    server, url = start_acl_redis(tmp_path_factory.mktemp("acl-redis"))
    yield server, url
    server.stop()


@pytest.fixture
def admin(acl_redis):
    a = RedisAdmin(acl_redis[1])
    a.prepare()
    yield a
    a.close()


def new_prefix() -> str:
    return workspace_prefix(_account, next(_ids))


def formatted(url: str, prefix: str) -> RedisMetaEngine:
    engine = RedisMetaEngine(url, prefix)
    engine.format(Setting(name="acl", uuid=new_uuid(), trash_days=0), require_aof=False)
    return engine


def user_url(admin: RedisAdmin, prefix: str, *, read_only: bool) -> tuple[str, str]:
    """A session ACL user as the orchestrator mints one: its metadata session id, then its rules."""
    user, password = f"ms-t{next(_ids)}", secrets.token_urlsafe(16)
    admin.set_user(user, password, prefix, read_only=read_only, sids=admin.assign_session(prefix, user))
    return user, admin.client_url(user, password)


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_default_user_is_off(acl_redis):
    anon = redis.Redis(host=LOOPBACK, port=acl_redis[0].port)
    with pytest.raises(rex.AuthenticationError):
        anon.get("x")


def test_rules_name_every_workspace_key_once():
    p = workspace_prefix(1, 2)
    fmt = acl_rules(p, read_only=False)  # the format user: every key of the workspace
    assert f"~{p}*" in fmt and not any(r.startswith("%") for r in fmt)
    own = {f"%RW~{p}{k}" for k in ("sess7", "opens7", "locks7", "sess8", "opens8", "locks8")}
    ro = acl_rules(p, read_only=True, sids=(7, 8))
    assert f"%R~{p}*" in ro and f"~{p}*" not in ro
    assert {r for r in ro if r.startswith("%RW~")} == own  # its own session keys, exact names
    rw = acl_rules(p, read_only=False, sids=(7, 8))
    assert {r for r in rw if r.startswith("%RW~")} == own | {f"%RW~{p}{k}" for k in DATA_KEY_PATTERNS}
    assert not any(r.startswith("~") for r in rw + ro)
    for cmd in ("-select", "-move", "-copy", "-swapdb"):
        assert cmd in ro and cmd in rw
    for rules in (fmt, rw, ro):  # one channel: the workspace's change feed, subscribed to by all
        assert rules[:2] == ["resetchannels", f"&{p}changes"] and "+ssubscribe" in rules
        assert not {"+subscribe", "+psubscribe", "+publish", "allchannels", "&*"} & set(rules)
    assert "+spublish" in rw and "+spublish" in fmt and "+spublish" not in ro  # only writers announce


def _matches(pattern: str, name: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)  # Redis globs as used here: *, ? and [0-9]


def test_every_key_kind_is_in_exactly_one_write_class():
    """meta/keys.py classifies every key it builds: data (read-write sessions), a session's own,
    shared session bookkeeping (full rights only) or format-only. A key in two classes would let
    a session write what another depends on; a key in none could not be written by sessions."""
    k = Keys(workspace_prefix(1, 2))
    built = [k.setting, k.limits, k.inode(5), k.entries(5), k.parents(5), k.chunk(5, 3), k.chunk_indexes(5),
             k.inline(9), k.symlink(5), k.xattrs(5), k.sliceref, k.delfiles, k.delslices, k.commits,
             k.inlinechunks, k.sessions, k.sessusers, k.jobs, k.session(12), k.session_opens(12),
             k.session_locks(12), *(k.counter(c) for c in ("nextinode", "nextslice", "nextsession", "usedspace",
                                                           "totalinodes", "inlinebytes")),
             k.prefix + "slicebatches", *(k.history(n) for n in ("hnext", "hcur", "hepochs", "hckpts", "hpinned")),
             k.preserved_index(3), k.preserved(3, "c5_0"), k.trashinfo, k.journal, k.journal_base, k.reads, k.reads_base]
    for key in built:
        name = key[len(k.prefix):]
        classes = [any(_matches(pat, name) for pat in DATA_KEY_PATTERNS), name in session_key_names(12),
                   name in SHARED_SESSION_KEYS, name in FORMAT_KEYS, name in JOURNAL_KEYS]
        assert sum(classes) == 1, (name, classes)
    # another session's keys are never writable by this one
    assert not any(_matches(pat, name) for pat in DATA_KEY_PATTERNS for name in session_key_names(13))


def test_rw_user_is_confined_to_its_workspace_and_to_functions(acl_redis, admin):
    url = acl_redis[1]
    a, b = new_prefix(), new_prefix()
    admin_a, admin_b = formatted(url, a), formatted(url, b)
    _, a_url = user_url(admin, a, read_only=False)
    eng = RedisMetaEngine(a_url, a)
    try:
        eng.load(require_aof=True)  # the INFO check is skipped for a user without INFO
        eng.new_session()
        ino = eng.create(ROOT, "f")[0]
        assert eng.lookup(ROOT, "f")[0] == ino
        r = raw(a_url)
        assert r.set(a + "i999999", b"x")  # its workspace's data keys: allowed (it can damage only them)
        for cmd in (("GET", b + "setting"), ("SET", b + "setting", "x"), ("DEL", b + "i1"),
                    ("FCALL", "af_create", 1, b + "setting", ROOT, "x", 0o644, 0, 0, 0, 0),
                    ("EVAL", "return 1", 0), ("SCRIPT", "FLUSH"), ("FUNCTION", "FLUSH"),
                    ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)"),
                    ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("SET", "other", "1"),
                    # key-less listings would show other workspaces' key names (or their number)
                    ("SCAN", 0), ("SCAN", 0, "MATCH", "*"), ("RANDOMKEY",), ("DBSIZE",)):
            with pytest.raises(rex.ResponseError) as e:
                r.execute_command(*cmd)
            assert "NOPERM" in str(e.value) or "no permissions" in str(e.value), cmd
        # nor may it change its own workspace's limits (quota): the setting key is not writable,
        # and declaring its session key instead is refused by the function itself
        setting = r.get(a + "setting")
        with pytest.raises(rex.ResponseError, match=r"NOPERM|no permissions"):
            r.execute_command("FCALL", "af_set_limits", 1, a + "setting", setting, setting, "0", "0")
        with pytest.raises(rex.ResponseError, match="EPERM"):
            r.execute_command("FCALL", "af_set_limits", 1, f"{a}sess{eng.sid}", setting, setting, "0", "0")
        assert admin_b.statfs()  # B untouched and still readable by its admin
    finally:
        eng.close()
        admin_a.close()
        admin_b.close()


def test_read_only_user_is_enforced_by_redis(acl_redis, admin):
    url = acl_redis[1]
    p = new_prefix()
    rw = formatted(url, p)
    rw.new_session()
    ino = rw.create(ROOT, "doc")[0]
    _, ro_url = user_url(admin, p, read_only=True)
    ro = RedisMetaEngine(ro_url, p)
    r = raw(ro_url)
    k = Keys(p)
    try:
        ro.load(require_aof=True)
        ro.new_session({"read_only": True})
        assert ro.lookup(ROOT, "doc")[0] == ino
        assert ro.open(ino).is_file
        ro.flock(ino, 1, fcntl.LOCK_SH)
        ro.setlk(ino, 1, fcntl.F_RDLCK, 0, 9)
        ro.heartbeat()
        with pytest.raises(PermissionDenied):
            ro.create(ROOT, "new")
        with pytest.raises(PermissionDenied):
            ro.unlink(ROOT, "doc")
        # A modified client: every write function through FCALL (never FCALL_RO), declaring either
        # the setting key (refused by Redis: FCALL needs write permission on it) or the sessions key
        # (which a read-only user may write; the namespace functions then refuse it themselves).
        assert r.get(k.setting) is not None
        orig = ro.client.call
        for declared in (k.setting, k.sessions):
            def forced(function, *args, ro=False, key=None, _declared=declared):
                return orig(function, *args, ro=False, key=_declared)
            ro.client.call = forced
            for op in (lambda: ro.create(ROOT, "evil"), lambda: ro.unlink(ROOT, "doc"),
                       lambda: ro.setattr(ino, mode=0o777), lambda: ro.truncate(ino, 0),
                       lambda: ro.setxattr(ino, "user.x", b"v"), lambda: ro.mkdir(ROOT, "d")):
                with pytest.raises(PermissionDenied if declared == k.setting else ArtifactsError):
                    op()
        ro.client.call = orig
        with pytest.raises(rex.ResponseError, match=r"NOPERM|can.t access|no permissions"):
            r.execute_command("FCALL", "af_unlink", 1, k.setting, ROOT, "doc", 0, "0")
        for cmd in (("SET", k.setting, "x"), ("DEL", k.inode(ino)), ("HSET", k.entries(ROOT), "x", "y"),
                    ("SET", k.inode(999), "x"), ("INCR", k.counter("nextinode"))):
            with pytest.raises(rex.NoPermissionError):
                r.execute_command(*cmd)
        assert rw.lookup(ROOT, "doc")[0] == ino  # nothing changed
        assert [e.name for e in rw.listdir(ROOT)] == [b"doc"] and rw.getattr(ino).mode & 0o777 == 0o644
        ro.close_session()
    finally:
        ro.close()
        rw.close()


def _subscribe(url: str, command: str, channel: str):
    """A raw subscription attempt: the reply to (S|P)SUBSCRIBE, raising what Redis refused."""
    from artifacts_core.meta.client import RedisTarget
    from artifacts_core.meta.pubsub import SubscriberConnection

    t = RedisTarget(url)
    conn = SubscriberConnection(t, *t.hosts[0], timeout=5.0)
    conn.connect()
    try:
        conn.send(command, channel)
        return conn.reply()
    finally:
        conn.close()


def test_sessions_subscribe_to_their_own_change_channel_only(acl_redis, admin):
    """Every session user may SSUBSCRIBE to its workspace's change channel and to no other
    channel; read-write users' functions publish there (read-only users may not publish); the
    records reach a read-only subscriber."""
    from artifacts_core.meta.changes import Subscription

    url = acl_redis[1]
    a, b = new_prefix(), new_prefix()
    admin_a, admin_b = formatted(url, a), formatted(url, b)
    _, rw_url = user_url(admin, a, read_only=False)
    _, ro_url = user_url(admin, a, read_only=True)
    rw, ro = RedisMetaEngine(rw_url, a), RedisMetaEngine(ro_url, a)
    got: list = []
    sub = Subscription(ro.client, deliver=got.append, session=lambda: ro.sid)
    try:
        for user_url_ in (rw_url, ro_url):
            assert _subscribe(user_url_, "SSUBSCRIBE", Keys(a).changes)[0] == b"ssubscribe"
            for command, channel in (("SSUBSCRIBE", Keys(b).changes), ("SUBSCRIBE", Keys(b).changes),
                                     ("SUBSCRIBE", Keys(a).changes), ("PSUBSCRIBE", "*"),
                                     ("SSUBSCRIBE", "other")):
                with pytest.raises(rex.NoPermissionError):
                    _subscribe(user_url_, command, channel)
            for cmd in (("SPUBLISH", Keys(b).changes, "x"), ("PUBLISH", Keys(a).changes, "x")):
                with pytest.raises(rex.NoPermissionError):
                    raw(user_url_).execute_command(*cmd)
        with pytest.raises(rex.NoPermissionError):  # read-only: never forges records
            raw(ro_url).execute_command("SPUBLISH", Keys(a).changes, "x")
        rw.load(require_aof=True)
        ro.load(require_aof=True)
        rw.new_session()
        ro.new_session({"read_only": True})
        sub.start()
        assert sub.wait_subscribed(10)
        ino = rw.create(ROOT, "announced")[0]
        deadline = time.monotonic() + 10
        while not any(c.kind == "entry" for c in got) and time.monotonic() < deadline:
            time.sleep(0.01)
        entry = next(c for c in got if c.kind == "entry")
        assert (entry.ino, entry.parent, entry.name, entry.session, entry.own) == \
            (ino, ROOT, b"announced", rw.sid, False)
    finally:
        sub.stop()
        for e in (rw, ro, admin_a, admin_b):
            e.close()


def test_a_user_without_channel_rights_loses_the_announcement_not_the_operation(acl_redis, admin):
    """A session user minted before users had channel rights: its functions still work (the
    record is published with redis.pcall after the writes), and its subscription is refused,
    reported as not subscribed (caches then follow their TTLs)."""
    from artifacts_core.meta.changes import Subscription

    url = acl_redis[1]
    p = new_prefix()
    owner = formatted(url, p)
    user, password = f"ms-t{next(_ids)}", secrets.token_urlsafe(16)
    old_rules = [r for r in acl_rules(p, read_only=False, sids=admin.assign_session(p, user))
                 if not r.startswith(("&", "(")) and r not in ("+spublish", "+ssubscribe", "+sunsubscribe")]
    admin._each("create the ACL user", lambda n: n.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", *old_rules))
    old = RedisMetaEngine(admin.client_url(user, password), p)
    got: list = []
    sub = Subscription(old.client, deliver=got.append)
    sub.BACKOFF_MIN = 0.01
    try:
        old.load(require_aof=True)
        old.new_session()
        ino = old.create(ROOT, "still-works")[0]
        assert owner.lookup(ROOT, "still-works")[0] == ino
        assert owner.client.command("LLEN", Keys(p).journal) == 0  # its record is lost, not the operation
        sub.start()
        assert sub.wait_first_attempt(10) is False and not sub.subscribed and got == []
    finally:
        sub.stop()
        old.close()
        owner.close()
        admin.delete_user(user)


#: Every command a session user might try on the journal to rewrite or trim it.
JOURNAL_ATTACKS = (("LTRIM", "{j}", 1, -1), ("LPOP", "{j}"), ("RPOP", "{j}"), ("LSET", "{j}", 0, "x"),
                   ("LREM", "{j}", 0, "x"), ("LINSERT", "{j}", "BEFORE", "x", "y"), ("DEL", "{j}"), ("UNLINK", "{j}"),
                   ("RENAME", "{j}", "{own}"), ("LMOVE", "{j}", "{own}", "LEFT", "LEFT"), ("EXPIRE", "{j}", 1),
                   ("SET", "{j}", "x"), ("SORT", "{own}", "STORE", "{j}"), ("XADD", "{j}", "MAXLEN", "0", "*", "a", "b"),
                   ("SET", "{base}", 0), ("INCRBY", "{base}", -5), ("DEL", "{base}"),
                   ("FCALL", "af_journal_trim", 1, "{setting}", 0, 1, 100, 3600),
                   ("FCALL", "af_journal_trim", 1, "{own}", 0, 1, 100, 3600))


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_sessions_cannot_rewrite_or_trim_the_journal(acl_redis, admin, read_only):
    """The journal is append-only to session users, enforced by Redis: a read-write user's
    functions append (its ACL selector grants RPUSH on the journal and nothing else), a read-only
    user appends nothing, and no command either may run removes, reorders or alters a record or
    moves the retention's counter. Only full rights trim."""
    from artifacts_core.meta.journal import Journal, trim

    url = acl_redis[1]
    p = new_prefix()
    k = Keys(p)
    owner = formatted(url, p)
    owner.create(ROOT, "before")
    _, user_url_ = user_url(admin, p, read_only=read_only)
    eng = RedisMetaEngine(user_url_, p)
    r = raw(user_url_)
    try:
        eng.load(require_aof=True)
        eng.new_session({"read_only": read_only})
        if read_only:
            with pytest.raises(PermissionDenied):
                eng.create(ROOT, "refused")
        else:
            with eng.client.call_tag("call-9"):  # a per-call tag: the MULTI its rules grant
                eng.create(ROOT, "mine")
        journal = r.lrange(k.journal, 0, -1)  # readable by every session user
        assert len(journal) == (1 if read_only else 3)  # create, [session registration, create]
        names = {"j": k.journal, "own": k.session(eng.sid), "base": k.journal_base, "setting": k.setting}
        for attack in JOURNAL_ATTACKS:
            cmd = [a.format(**names) if isinstance(a, str) else a for a in attack]
            with pytest.raises(rex.ResponseError, match=r"NOPERM|no permissions|can.t access"):
                r.execute_command(*cmd)
        if read_only:
            with pytest.raises(rex.NoPermissionError):
                r.rpush(k.journal, "forged")
        assert r.lrange(k.journal, 0, -1) == journal and r.get(k.journal_base) is None  # nothing changed
        last = Journal(eng.client).read(0).events[-1]
        assert (last.name, last.tag) == (("before", None) if read_only else ("mine", "call-9"))
        assert trim(owner.client, max_events=1, max_age=0) == len(journal) - 1  # full rights trim
    finally:
        eng.close()
        owner.close()


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_every_session_appends_to_the_read_audit_and_none_can_rewrite_it(acl_redis, admin, read_only):
    """With a volume's read audit on, every session user's opens for reading are recorded (its
    ACL selector grants RPUSH on ``reads``), a read-only one's included; none may remove, alter
    or trim a record, move ``rbase`` or turn the audit off. Only full rights trim."""
    import os

    from artifacts_core.meta.format import set_journal_reads
    from artifacts_core.meta.journal import Journal, trim

    url = acl_redis[1]
    p = new_prefix()
    k = Keys(p)
    owner = formatted(url, p)
    f = owner.create(ROOT, "secret")[0]
    set_journal_reads(owner.client, True)
    _, user_url_ = user_url(admin, p, read_only=read_only)
    eng = RedisMetaEngine(user_url_, p)
    r = raw(user_url_)
    try:
        eng.load(require_aof=True)
        eng.new_session({"read_only": read_only, "host": "reader"})
        eng.open(f, os.O_RDONLY)
        eng.open(f, os.O_RDONLY)
        reads = r.lrange(k.reads, 0, -1)
        assert len(reads) == 3  # its registration (the actor, kept after it ends), two opens
        (ev, _) = [e for e in Journal(eng.client).read(0, reads=True).events if e.kind == "read"]
        assert ev.ino == f and ev.path == "/secret" and ev.actor is not None and ev.actor["host"] == "reader"
        names = {"j": k.reads, "own": k.session(eng.sid), "base": k.reads_base, "setting": k.setting}
        for attack in (*JOURNAL_ATTACKS, ("FCALL", "af_journal_reads", 1, "{setting}", "0", "{{}}", "x")):
            cmd = [a.format(**names) if isinstance(a, str) else a for a in attack]
            with pytest.raises(rex.ResponseError, match=r"NOPERM|no permissions|can.t access"):
                r.execute_command(*cmd)
        assert r.lrange(k.reads, 0, -1) == reads and r.get(k.reads_base) is None  # nothing changed
        assert trim(owner.client, max_events=1, max_age=0) >= 1 and r.llen(k.reads) == 1  # full rights trim
    finally:
        eng.close()
        owner.close()


def test_a_user_without_multi_runs_tagged_calls_untagged_once_each(acl_redis, admin):
    """A session user minted before its rules granted MULTI: a per-call tag is dropped, the call
    runs exactly once (not half inside a refused transaction, then again)."""
    from artifacts_core.meta.journal import Journal

    url = acl_redis[1]
    p = new_prefix()
    owner = formatted(url, p)
    user, user_url_ = user_url(admin, p, read_only=False)
    raw(url).execute_command("ACL", "SETUSER", user, "-multi")
    eng = RedisMetaEngine(user_url_, p)
    try:
        eng.load(require_aof=True)
        eng.new_session({})
        with eng.client.call_tag("call-1"):
            eng.create(ROOT, "one")
            eng.mkdir(ROOT, "two")
        evs = Journal(eng.client).read(0).events
        assert [(e.op, e.name, e.tag) for e in evs] == [("create", "one", None), ("mkdir", "two", None)]
    finally:
        eng.close()
        owner.close()


def test_deluser_cuts_a_live_connection(acl_redis, admin):
    p = new_prefix()
    eng = formatted(acl_redis[1], p)
    user, url = user_url(admin, p, read_only=False)
    live = raw(url)
    assert live.ping() and live.get(p + "setting") is not None  # connection open before revocation
    admin.delete_user(user)
    with pytest.raises((rex.ConnectionError, rex.AuthenticationError, rex.ResponseError)):
        live.get(p + "setting")
    with pytest.raises((rex.AuthenticationError, rex.ResponseError)):
        raw(url).ping()
    assert user not in admin.users()
    eng.close()


def test_acl_users_survive_a_restart(tmp_path):
    server, url = start_acl_redis(tmp_path / "r")
    try:
        admin = RedisAdmin(url)
        admin.prepare()
        p = new_prefix()
        formatted(url, p).close()
        _, session_url = user_url(admin, p, read_only=True)
        admin.close()
        port = server.port
        server.stop()
        server, url = start_acl_redis(tmp_path / "r", port=port)  # same port, dir and ACL file
        ro = RedisMetaEngine(session_url, p)
        assert ro.load(require_aof=True).name == "acl"  # AOF kept the keys, the ACL file the user
        ro.close()
        assert "#" in (tmp_path / "r" / "users.acl").read_text()  # only password hashes on disk
        assert oct((tmp_path / "r" / "users.acl").stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()


def test_prepare_checks_and_configures(tmp_path):
    server = RedisServer.start(tmp_path / "plain", extra=["--maxmemory-policy", "allkeys-lru"])
    try:
        admin = RedisAdmin(server.url)
        with pytest.raises(ConfigError, match="maxmemory-policy"):
            admin.prepare(require_aclfile=False)
        with pytest.raises(ConfigError, match="ACL file"):
            admin.prepare(configure=True)
        admin.prepare(configure=True, require_aclfile=False)  # the orchestrator's own Redis
        node = admin.nodes()[0]
        def conf(name):
            return [v.decode() if isinstance(v, bytes) else v for v in node.config_get(name).values()]
        assert conf("maxmemory-policy") == ["noeviction"] and conf("appendonly") == ["yes"]
        assert node.execute_command("FUNCTION", "LIST")  # the library is loaded
        admin.close()
    finally:
        server.stop()


@pytest.mark.cluster
def test_cluster_users_exist_on_every_node(redis_cluster):
    admin = RedisAdmin(redis_cluster.url)
    admin.prepare(require_aof=False, require_aclfile=False)
    probe = redis.RedisCluster(host=LOOPBACK, port=redis_cluster.ports[0])
    owner_of = lambda pfx: probe.get_node_from_key(pfx + "setting").port  # noqa: E731
    p = next(q for q in iter(new_prefix, None) if owner_of(q) != redis_cluster.ports[0])
    eng = formatted(redis_cluster.url, p)
    try:
        user, url = user_url(admin, p, read_only=False)
        ro_user, ro_url = user_url(admin, p, read_only=True)
        for port in redis_cluster.ports:
            node = redis.Redis(host=LOOPBACK, port=port)
            assert node.acl_getuser(user) and node.acl_getuser(ro_user)
            node.close()
        s = RedisMetaEngine(url, p)
        s.load(require_aof=False)
        s.new_session()
        ino = s.create(ROOT, "on-a-non-first-master")[0]
        ro = RedisMetaEngine(ro_url, p)
        ro.new_session({"read_only": True})
        assert ro.lookup(ROOT, "on-a-non-first-master")[0] == ino
        with pytest.raises(PermissionDenied):
            ro.create(ROOT, "nope")
        ro.close_session()
        s.close_session()
        s.close()
        ro.close()
        assert admin.delete_keys(p) > 0 and admin.count_keys(p) == 0
        admin.delete_users([user, ro_user])
        for port in redis_cluster.ports:
            node = redis.Redis(host=LOOPBACK, port=port)
            assert node.acl_getuser(user) is None
            node.close()
    finally:
        eng.close()
        probe.close()
        admin.close()


@pytest.mark.cluster
def test_orchestrator_over_a_cluster_end_to_end(redis_cluster, tmp_path):
    """Through the HTTP API on a Cluster: the workspace's slot sits on a non-first master; the
    format and session users work there; delete sweeps its keys and removes its users everywhere."""
    from artifacts_orchestrator.app import OrchestratorServer
    from artifacts_orchestrator.client import Artifacts
    from artifacts_orchestrator.service import Service
    from artifacts_orchestrator.store import SQLiteStore

    admin = RedisAdmin(redis_cluster.url)
    admin.prepare(require_aof=False, require_aclfile=False)
    store = SQLiteStore(tmp_path / "o.db")
    service = Service(store, admin)
    probe = redis.RedisCluster(host=LOOPBACK, port=redis_cluster.ports[0])
    with OrchestratorServer(service, admin_token="t" * 32, reap_interval=None) as server:
        api = Artifacts(Artifacts("", base_url=server.url).create_account("clu", admin_token="t" * 32).key.key,
                        base_url=server.url)
        byo = {"backend": "byo", "bucket": "bucket", "endpoint": "http://127.0.0.1:9"}  # never contacted
        while True:  # until a workspace lands on a non-first master (ids are sequential)
            r = api.workspaces.create(f"w{next(_ids)}", **byo)
            if probe.get_node_from_key(r.format.key_prefix + "setting").port != redis_cluster.ports[0]:
                break
        name = r.workspace.name
        fmt = RedisMetaEngine(r.format.url, r.format.key_prefix)
        fmt.format(Setting(name=r.workspace.volume_name, uuid=new_uuid(), trash_days=0), require_aof=False)
        fmt.close()
        assert api.workspaces.format_completed(name).status == "active"
        rw, ro = api.sessions.create(name, mode="rw"), api.sessions.create(name, mode="ro")
        assert rw.meta.url.startswith("redis+cluster://ms-")
        for port in redis_cluster.ports:
            node = redis.Redis(host=LOOPBACK, port=port)
            assert node.acl_getuser(rw.session.redis_user) and node.acl_getuser(ro.session.redis_user)
            node.close()
        eng = RedisMetaEngine(rw.meta.url, rw.meta.key_prefix)
        eng.new_session()
        eng.create(ROOT, "f")
        eng.close_session()
        eng.close()
        reader = RedisMetaEngine(ro.meta.url, ro.meta.key_prefix)
        reader.new_session({"read_only": True})
        with pytest.raises(PermissionDenied):
            reader.create(ROOT, "g")
        reader.close()
        api.workspaces.delete(name)
        for _ in range(200):
            if api.workspaces.get(name).status == "deleted":
                break
            time.sleep(0.05)
        assert api.workspaces.get(name).status == "deleted"
        assert admin.count_keys(r.format.key_prefix) == 0
        assert not {rw.session.redis_user, ro.session.redis_user} & admin.users()
    probe.close()
    admin.close()
    store.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_nodes_save_acl_files_and_keep_users_across_a_restart(tmp_path):
    """A Cluster whose nodes each have an ACL file: a session user is saved on every node, and a
    restarted node (the workspace's slot owner) still has it."""
    import subprocess

    from artifacts_core.servers import find_binary, free_port

    nodes, ports = [], []
    try:
        for i in range(3):
            port = free_port(grpc_offset=True)  # the cluster bus takes port + 10000
            d = tmp_path / f"n{i}"
            d.mkdir()
            (d / "users.acl").write_text("user default on nopass ~* &* +@all\n")
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                     "--cluster-node-timeout", "5000", "--aclfile", str(d / "users.acl")]
            nodes.append(RedisServer.start(d, port=port, appendonly=True, extra=extra))
            ports.append(port)
        subprocess.run([find_binary("redis-cli"), "-p", str(ports[0]), "--cluster", "create",
                        *[f"{LOOPBACK}:{p}" for p in ports], "--cluster-yes"], check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while any(b"cluster_state:ok" not in redis.Redis(port=p).execute_command("CLUSTER", "INFO")
                  for p in ports):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.1)
        url = "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in ports)
        admin = RedisAdmin(url)
        admin.prepare()
        assert len(admin.acl_file_nodes) == 3
        p = new_prefix()
        formatted(url, p).close()
        user, session_url = user_url(admin, p, read_only=False)
        for i in range(3):
            text = (tmp_path / f"n{i}" / "users.acl").read_text()
            assert re.search(rf"^user {user} on .*#[0-9a-f]{{64}} .*~{re.escape(p)}\*", text, re.M), text
            assert (tmp_path / f"n{i}" / "users.acl").stat().st_mode & 0o777 == 0o600
        owner = redis.RedisCluster(host=LOOPBACK, port=ports[0]).get_node_from_key(p + "setting").port
        i = ports.index(owner)
        admin.close()
        nodes[i].stop()
        nodes[i] = RedisServer.start(tmp_path / f"n{i}", port=owner, appendonly=True, extra=[
            "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / f"n{i}" / "nodes.conf"),
            "--cluster-node-timeout", "5000", "--aclfile", str(tmp_path / f"n{i}" / "users.acl")])
        deadline = time.monotonic() + 30
        while True:
            try:
                eng = RedisMetaEngine(session_url, p)
                assert eng.load(require_aof=False).name == "acl"
                eng.close()
                break
            except Exception:
                assert time.monotonic() < deadline, "the session user did not come back"
                time.sleep(0.2)
    finally:
        for n in nodes:
            n.stop()


# -- a session cannot damage another session's state (DESIGN.md §10) ----------------------------

@pytest.mark.parametrize("attacker_mode", ["ro", "rw"])
def test_a_session_cannot_break_another_sessions_mount(acl_redis, admin, attacker_mode):
    """Replays the attacks found by hand with real session users: before, a read-only session's
    ACL let it write every session and lock key, so ``HDEL {p}sessioninfo 1`` made a read-write
    mount answer ESTALE on every open, ``SET {p}nextsession x`` made every new mount fail, and the
    ``sessions``/``jobs`` keys could be deleted or set. Now a session writes only its own keys;
    the victim keeps working and new sessions still register."""
    p = new_prefix()
    k = Keys(p)
    formatted(acl_redis[1], p).close()
    _, victim_url = user_url(admin, p, read_only=False)
    victim = RedisMetaEngine(victim_url, p)
    victim.load(require_aof=True)
    victim.new_session()
    ino = victim.create(ROOT, "work.txt")[0]
    victim.open(ino)
    victim.flock(ino, 1, fcntl.LOCK_EX)
    _, bad_url = user_url(admin, p, read_only=attacker_mode == "ro")
    bad = raw(bad_url)
    evil = RedisMetaEngine(bad_url, p)
    evil.new_session({"read_only": attacker_mode == "ro"})
    vs = str(victim.sid)
    attacks = [
        ("HDEL", k.prefix + "sessioninfo", vs), ("HSET", k.prefix + "sessioninfo", vs, "x"),  # the old layout
        ("DEL", k.session(victim.sid)), ("HSET", k.session(victim.sid), "expire", "0"),
        ("DEL", k.session_opens(victim.sid)), ("HDEL", k.session_opens(victim.sid), ino),
        ("DEL", k.session_locks(victim.sid)), ("HSET", k.session_locks(victim.sid), ino, "x"),
        ("SET", k.counter("nextsession"), "x"), ("DEL", k.sessions), ("ZREM", k.sessions, vs),
        ("ZADD", k.sessions, 0, vs), ("DEL", k.sessusers), ("HSET", k.sessusers, "ms-x", vs),
        ("SET", k.setting, "x"), ("HSET", k.limits, "capacity", "1"),
        ("SET", k.prefix + "sess-anything", "x"),  # no wildcard: a session writes three exact keys
        ("FCALL", "af_session_sweep", 1, k.setting, 0, 10**9, 0, 1, 100, 1000),  # "expire" everyone
        ("FCALL", "af_session_close", 1, k.session(victim.sid), vs, 1000, "1"),
        ("FCALL", "af_flock", 1, k.session(victim.sid), ino, vs, "0" * 16, "U"),
        ("FCALL", "af_session_end", 1, k.setting, "ms-x", 1000),
        ("MOVE", k.inode(ino), 1), ("COPY", k.inode(ino), k.inode(ino), "DB", 1), ("SELECT", 1),
        ("SWAPDB", 0, 1),
    ]
    if attacker_mode == "ro":  # data maintenance elections: read-write sessions run those jobs
        attacks += [("DEL", k.jobs), ("SET", k.jobs, "x")]
    try:
        for cmd in attacks:
            with pytest.raises(rex.ResponseError, match=r"NOPERM|can.t access|no permissions"):
                bad.execute_command(*cmd)
        # The victim mount: opens, heartbeats and holds its lock as before.
        assert victim.open(ino).is_file
        victim.heartbeat()
        with pytest.raises(BlockingIOError):
            evil.flock(ino, 2, fcntl.LOCK_SH | fcntl.LOCK_NB)
        # New mounts still register (the orchestrator assigns ids; nextsession is intact).
        _, next_url = user_url(admin, p, read_only=True)
        newcomer = RedisMetaEngine(next_url, p)
        assert newcomer.new_session({"read_only": True}) > evil.sid
        newcomer.close()
        # and a sweep with the real clock ends nobody alive
        assert admin.sweep_sessions(p) == 0 and victim.open(ino).is_file
    finally:
        evil.close()
        bad.close()
        victim.close()


@pytest.fixture(scope="module")
def orchestrator(acl_redis, tmp_path_factory):
    """An orchestrator (HTTP API, no background loops) on the ACL Redis, with one account. One per
    module: its workspace ids (hence key prefixes) come from its database."""
    from artifacts_orchestrator.app import OrchestratorServer
    from artifacts_orchestrator.client import Artifacts
    from artifacts_orchestrator.service import Service
    from artifacts_orchestrator.store import SQLiteStore

    admin = RedisAdmin(acl_redis[1])
    admin.prepare()
    store = SQLiteStore(tmp_path_factory.mktemp("orch") / "o.db")
    service = Service(store, admin)
    with OrchestratorServer(service, admin_token="t" * 32, reap_interval=None, sweep_interval=None) as server:
        key = Artifacts("", base_url=server.url).create_account("acl-tests", admin_token="t" * 32).key.key
        yield Orchestrated(service, Artifacts(key, base_url=server.url), server.url)
    store.close()
    admin.close()


class Orchestrated(tuple):
    """(service, api) with the server's URL: unpacks as the pair."""

    def __new__(cls, service, api, url):
        obj = super().__new__(cls, (service, api))
        obj.url = url
        return obj

    def new_account(self):
        from artifacts_orchestrator.client import Artifacts

        key = Artifacts("", base_url=self.url).create_account(f"acct{next(_ids)}", admin_token="t" * 32).key.key
        return Artifacts(key, base_url=self.url)


def active_workspace(api) -> str:
    name = f"w{next(_ids)}"
    r = api.workspaces.create(name, backend="byo", bucket="bucket", endpoint="http://127.0.0.1:9")  # never contacted
    fmt = RedisMetaEngine(r.format.url, r.format.key_prefix)
    fmt.format(Setting(name=r.workspace.volume_name, uuid=new_uuid(), trash_days=0), require_aof=False)
    fmt.close()
    api.workspaces.format_completed(name)
    return name


def test_revoking_a_session_releases_its_locks_at_once(orchestrator):
    """The orchestrator ends the revoked session's metadata session: its locks (and opens) go
    with the revocation, not a session timeout later."""
    _service, api = orchestrator
    name = active_workspace(api)
    a, b = api.sessions.create(name, mode="rw"), api.sessions.create(name, mode="ro")
    holder = RedisMetaEngine(a.meta.url, a.meta.key_prefix)
    holder.new_session()
    ino = holder.create(ROOT, "locked")[0]
    holder.flock(ino, 1, fcntl.LOCK_EX)
    waiter = RedisMetaEngine(b.meta.url, b.meta.key_prefix)
    waiter.new_session({"read_only": True})
    with pytest.raises(BlockingIOError):
        waiter.flock(ino, 2, fcntl.LOCK_SH | fcntl.LOCK_NB)
    api.sessions.revoke(name, a.session.id)
    waiter.flock(ino, 2, fcntl.LOCK_SH | fcntl.LOCK_NB)
    with pytest.raises(PermissionDenied):
        holder.heartbeat()
    assert [s["sid"] for s in waiter.list_sessions()] == [waiter.sid]
    holder.close()
    waiter.close()


def test_a_session_bloating_its_own_keys_is_revoked_by_the_sweep(orchestrator):
    """What a session may write is three exact keys of its own; what the functions write there is
    bounded, and raw writes beyond SESSION_MEMORY_MAX get the session revoked (and its keys
    dropped) by the orchestrator's sweep."""
    from artifacts_orchestrator.service import SESSION_MEMORY_MAX

    service, api = orchestrator
    name = active_workspace(api)
    grant = api.sessions.create(name, mode="ro")
    eng = RedisMetaEngine(grant.meta.url, grant.meta.key_prefix)
    with pytest.raises(ArtifactsError, match="4096"):  # the function bounds its own writes
        eng.new_session({"read_only": True, "host": "h" * 5000})
    sid = eng.new_session({"read_only": True})
    r = raw(grant.meta.url)
    chunk = b"x" * (1 << 20)
    for i in range(SESSION_MEMORY_MAX // len(chunk) + 2):
        r.hset(Keys(grant.meta.key_prefix).session_opens(sid), f"f{i}", chunk)
    assert service.sweep_sessions()["memory_revoked"] == 1
    row = api.sessions.list(name, include_revoked=True).sessions[0]
    assert row.revoke_reason == "memory" and row.revoked_at
    assert admin_count(service, grant.meta.key_prefix, sid) == 0
    with pytest.raises((rex.ConnectionError, rex.AuthenticationError, rex.ResponseError)):
        r.ping()
    eng.close()


def admin_count(service, prefix: str, sid: int) -> int:
    node = service.redis.nodes()[0]
    return node.exists(*(prefix + n for n in session_key_names(sid)))


# -- one account cannot starve another; revocations are never left half-done -----------------------

def test_one_accounts_parallel_loops_do_not_fail_anothers_calls(orchestrator):
    """Ten parallel ``inspect`` loops of one account used to exhaust the 4 admin Redis connections
    the 16 workers shared: another account's session creations failed 10 times in 15 and its
    revocations 2 in 5 (metadata_acl_provisioning_failed). Now the pool has a connection per
    worker (and waits instead of failing), and one account holds at most 4 workers."""
    import threading

    _service, noisy = orchestrator
    victim = orchestrator.new_account()
    loud, calm = active_workspace(noisy), active_workspace(victim)
    stop = threading.Event()
    noisy_errors: list = []

    def inspect_loop():
        while not stop.is_set():
            try:
                noisy.workspaces.inspect(loud)
            except Exception as e:
                noisy_errors.append(e)

    loops = [threading.Thread(target=inspect_loop, daemon=True) for _ in range(10)]
    for t in loops:
        t.start()
    errors, grants = [], []
    try:
        for _ in range(15):
            try:
                grants.append(victim.sessions.create(calm, mode="ro"))
            except Exception as e:
                errors.append(e)
        for g in grants[:5]:
            try:
                victim.sessions.revoke(calm, g.session.id)
            except Exception as e:
                errors.append(e)
    finally:
        stop.set()
        for t in loops:
            t.join(30)
    assert errors == [] and noisy_errors == []
    live = {x.id for x in victim.sessions.list(calm).sessions}
    assert live == {g.session.id for g in grants[5:]}
    assert not {g.session.redis_user for g in grants[:5]} & orchestrator[0].redis.users()


def test_an_account_holds_at_most_a_quarter_of_the_workers(orchestrator, monkeypatch):
    """A slow call of one account occupies at most ACCOUNT_CONCURRENCY (4) of the 16 workers; its
    other requests wait without a thread, and another account's calls go through meanwhile."""
    import threading

    from artifacts_orchestrator.handlers import ACCOUNT_CONCURRENCY

    service, noisy = orchestrator
    victim = orchestrator.new_account()
    name = active_workspace(noisy)
    release, inside, peak = threading.Event(), [0], [0]
    lock = threading.Lock()
    real = service.inspect_workspace

    def slow_inspect(*args):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            release.wait(30)
            return real(*args)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(service, "inspect_workspace", slow_inspect)
    calls = [threading.Thread(target=noisy.workspaces.inspect, args=(name,), daemon=True) for _ in range(10)]
    for t in calls:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while inside[0] < ACCOUNT_CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the other six had time to take workers, if they could
        assert inside[0] == ACCOUNT_CONCURRENCY
        assert victim.workspaces.list().workspaces == []  # another account is served meanwhile
    finally:
        release.set()
        for t in calls:
            t.join(30)
    assert peak[0] == ACCOUNT_CONCURRENCY


def test_a_revocation_cut_short_is_finished_by_the_reaper(orchestrator, acl_redis):
    """Redis refusing in the middle of a revocation used to leave the session live: the call
    failed before the row was marked, and the reaper only revokes expired rows. Now the row is
    revoked first and the reaper retries the cleanup until it is done."""
    service, api = orchestrator
    name = active_workspace(api)
    grant = api.sessions.create(name, mode="rw")
    user = grant.session.redis_user
    node = service.redis.nodes()[0]
    node.execute_command("ACL", "SETUSER", ADMIN, "-acl|deluser")  # Redis refuses DELUSER for now
    try:
        with pytest.raises(ApiError) as e:
            api.sessions.revoke(name, grant.session.id)
        assert e.value.code == "metadata_acl_provisioning_failed"
        row = api.sessions.list(name, include_revoked=True).sessions[0]
        assert row.revoked_at is not None  # revoked for every caller already
        assert user in service.redis.users()  # but not yet cleaned up
    finally:
        node.execute_command("ACL", "SETUSER", ADMIN, "+@all")
    done = service.reap()
    assert done["revocations_finished"] == 1
    assert user not in service.redis.users()
    assert service.store.get_session(grant.session.id).cleaned_at is not None
    assert node.hget(grant.meta.key_prefix + "sessusers", user) is None  # its metadata session ended
    with pytest.raises((rex.ConnectionError, rex.AuthenticationError, rex.ResponseError)):
        raw(grant.meta.url).ping()
    assert service.reap().get("revocations_finished", 0) == 0  # nothing left owed


def test_several_clients_share_a_grant_up_to_its_block_of_ids(orchestrator):
    """A grant serves several clients at once (``artifacts exec`` opens a volume and mounts the
    workspace with the same grant): each registers its own id of the grant's block; past the
    block, a clear EBUSY. A second client never takes over a live one's id."""
    from artifacts_orchestrator.redis_acl import SESSIONS_PER_USER

    _service, api = orchestrator
    name = active_workspace(api)
    grant = api.sessions.create(name, mode="rw")
    clients = []
    try:
        for _ in range(SESSIONS_PER_USER):
            eng = RedisMetaEngine(grant.meta.url, grant.meta.key_prefix)
            eng.new_session()
            clients.append(eng)
        assert len({c.sid for c in clients}) == SESSIONS_PER_USER
        ino = clients[0].create(ROOT, "shared")[0]
        clients[0].flock(ino, 1, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError):
            clients[1].flock(ino, 2, fcntl.LOCK_SH | fcntl.LOCK_NB)  # two sessions, as two hosts
        extra = RedisMetaEngine(grant.meta.url, grant.meta.key_prefix)
        with pytest.raises(ArtifactsError) as e:
            extra.new_session()
        assert e.value.errno == errno.EBUSY and "session ids of this grant" in str(e.value)
        freed = clients[3].sid
        clients[3].close_session()  # a freed id is taken by the next client
        assert extra.new_session() == freed
        extra.close()
    finally:
        for c in clients:
            c.close()
