"""A Hypothesis state machine: the engine against a small in-memory model of a POSIX tree.

The model knows names, types, link counts, sizes (always 0: no data here), modes and symlink
targets; it decides each operation's errno the way Linux does (the rules of docs/metadata.md).
After every step the whole tree is compared: every directory's listing, every inode's type,
nlink, mode and length, the parent of every directory, and the volume's inode and space counters.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import stat

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.meta.namespace import RENAME_EXCHANGE, RENAME_NOREPLACE
from artifacts_core.types import ROOT_INO

NAMES = st.sampled_from(["a", "b", "c", "d"])  # few names: collisions are the interesting part
PICK = st.integers(min_value=0, max_value=1000)  # index into the current inodes of some kind
MODES = st.sampled_from([0o644, 0o600, 0o755, 0o700])
FLAGS = st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])

#: Workspace ids of this module: a random 15-digit base, clear of the small ids other tests count
#: from (a collision would refuse the format with EEXIST).
_ids = itertools.count(secrets.randbelow(10**15) + 10**15)


class Model:
    def __init__(self):
        self.kind = {ROOT_INO: "dir"}
        self.mode = {ROOT_INO: 0o1777}
        self.entries = {ROOT_INO: {}}  # dir -> name -> ino
        self.parent = {ROOT_INO: ROOT_INO}  # dirs only
        self.target = {}

    def nlink(self, ino):
        if self.kind[ino] == "dir":
            return 2 + sum(self.kind[c] == "dir" for c in self.entries[ino].values())
        return sum(1 for d in self.entries.values() for c in d.values() if c == ino)

    def under(self, ino, top):
        """Whether directory ``ino`` is ``top`` or below it."""
        while True:
            if ino == top:
                return True
            if ino == ROOT_INO:
                return False
            ino = self.parent[ino]

    def forget(self, ino):
        if self.kind[ino] == "dir":
            del self.entries[ino], self.parent[ino]
        elif self.nlink(ino) > 0:
            return
        del self.kind[ino], self.mode[ino]
        self.target.pop(ino, None)


class NamespaceMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self):
        super().__init__()
        prefix = f"{{u_{os.getpid()}_w_{next(_ids)}}}:"
        self.m = RedisMetaEngine(self.url, prefix)
        self.m.format(Setting(name="sm", uuid=new_uuid(), trash_days=0), require_aof=False)
        self.model = Model()

    def teardown(self):
        self.m.close()

    def dirs(self):
        return sorted(self.model.entries)

    def pick(self, items, i):
        return items[i % len(items)]

    def expect(self, code, op):
        """Run ``op``; it must fail with ``code`` (or succeed when ``code`` is None)."""
        try:
            result = op()
        except OSError as e:
            assert code is not None, f"unexpected {errno.errorcode[e.errno]}: {e}"
            assert errno.errorcode[e.errno] == code, f"expected {code}, got {errno.errorcode[e.errno]}: {e}"
            return None
        assert code is None, f"expected {code}, it succeeded"
        return result

    # -- rules ---------------------------------------------------------------------------------

    def _new(self, d, name, kind, mode, make, target=None):
        code = "EEXIST" if name in self.model.entries[d] else None
        result = self.expect(code, make)
        if result is None:
            return
        ino = result[0]
        assert ino not in self.model.kind, "an inode number was reused"
        self.model.kind[ino], self.model.mode[ino] = kind, mode
        self.model.entries[d][name] = ino
        if kind == "dir":
            self.model.entries[ino], self.model.parent[ino] = {}, d
        if target is not None:
            self.model.target[ino] = target

    @rule(i=PICK, name=NAMES, mode=MODES)
    def mkdir(self, i, name, mode):
        d = self.pick(self.dirs(), i)
        self._new(d, name, "dir", mode, lambda: self.m.mkdir(d, name, mode))

    @rule(i=PICK, name=NAMES, mode=MODES)
    def create(self, i, name, mode):
        d = self.pick(self.dirs(), i)
        self._new(d, name, "file", mode, lambda: self.m.create(d, name, mode))

    @rule(i=PICK, name=NAMES, dest=st.sampled_from(["x", "../y", "/abs/z"]))
    def symlink(self, i, name, dest):
        d = self.pick(self.dirs(), i)
        self._new(d, name, "symlink", 0o777, lambda: self.m.symlink(d, name, dest), dest)

    @rule(i=PICK, j=PICK, name=NAMES)
    def link(self, i, j, name):
        files = sorted(k for k, v in self.model.kind.items() if v != "dir")
        if not files:
            return
        ino, d = self.pick(files, i), self.pick(self.dirs(), j)
        code = "EEXIST" if name in self.model.entries[d] else None
        if self.expect(code, lambda: self.m.link(ino, d, name)) is not None:
            self.model.entries[d][name] = ino

    @rule(i=PICK, name=NAMES)
    def unlink(self, i, name):
        d = self.pick(self.dirs(), i)
        ino = self.model.entries[d].get(name)
        code = "ENOENT" if ino is None else "EISDIR" if self.model.kind[ino] == "dir" else None
        self.expect(code, lambda: self.m.unlink(d, name))
        if code is None:
            del self.model.entries[d][name]
            self.model.forget(ino)

    @rule(i=PICK, name=NAMES)
    def rmdir(self, i, name):
        d = self.pick(self.dirs(), i)
        ino = self.model.entries[d].get(name)
        if ino is None:
            code = "ENOENT"
        elif self.model.kind[ino] != "dir":
            code = "ENOTDIR"
        else:
            code = "ENOTEMPTY" if self.model.entries[ino] else None
        self.expect(code, lambda: self.m.rmdir(d, name))
        if code is None:
            del self.model.entries[d][name]
            self.model.forget(ino)

    @rule(i=PICK, name=NAMES, j=PICK, new=NAMES, flags=FLAGS)
    def rename(self, i, name, j, new, flags):
        md = self.model
        d1, d2 = self.pick(self.dirs(), i), self.pick(self.dirs(), j)
        src, dst = md.entries[d1].get(name), md.entries[d2].get(new)
        sdir, tdir = src is not None and md.kind[src] == "dir", dst is not None and md.kind[dst] == "dir"
        exchange = flags == RENAME_EXCHANGE
        code = None
        if src is None or (exchange and dst is None):
            code = "ENOENT"
        elif flags == RENAME_NOREPLACE and dst is not None:
            code = "EEXIST"
        elif d1 != d2 and sdir and md.under(d2, src):
            code = "EINVAL"
        elif d1 != d2 and tdir and md.under(d1, dst):
            code = "EINVAL" if exchange else "ENOTEMPTY"
        elif src == dst:
            code = "same"
        elif dst is not None and not exchange:
            if sdir and not tdir:
                code = "ENOTDIR"
            elif tdir and not sdir:
                code = "EISDIR"
            elif tdir and md.entries[dst]:
                code = "ENOTEMPTY"
        done = self.expect(None if code == "same" else code, lambda: self.m.rename(d1, name, d2, new, flags))
        if code == "same":
            assert done is False
            return
        if code is not None:
            return
        if exchange:
            md.entries[d1][name], md.entries[d2][new] = dst, src
            if tdir:
                md.parent[dst] = d1
        else:
            del md.entries[d1][name]
            md.entries[d2][new] = src
            if dst is not None:
                md.forget(dst)
        if sdir:
            md.parent[src] = d2

    @rule(i=PICK, mode=MODES)
    def chmod(self, i, mode):
        ino = self.pick(sorted(self.model.kind), i)
        if self.model.kind[ino] == "symlink":
            return
        self.m.setattr(ino, mode=mode)
        self.model.mode[ino] = mode

    # -- the whole tree agrees -----------------------------------------------------------------

    @invariant()
    def tree_matches(self):
        md = self.model
        for d, names in md.entries.items():
            listed = {e.name.decode(): e for e in self.m.listdir(d, plus=True)}
            assert {n: e.ino for n, e in listed.items()} == names, f"directory {d}"
            for n, e in listed.items():
                ino = names[n]
                kind = md.kind[ino]
                fmt = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK}[kind]
                assert e.attr.mode == fmt | md.mode[ino], (n, oct(e.attr.mode))
                assert e.attr.nlink == md.nlink(ino), (n, e.attr.nlink, md.nlink(ino))
                expected_len = {"dir": 4096, "file": 0, "symlink": len(md.target.get(ino, ""))}[kind]
                assert e.attr.length == expected_len
                if kind == "dir" or md.nlink(ino) == 1:
                    assert e.attr.parent == d
                else:
                    assert e.attr.parent == 0
        assert self.m.getattr(ROOT_INO).nlink == md.nlink(ROOT_INO)
        live = len(md.kind) + 1  # + the trash directory
        s = self.m.statfs()
        assert s.used_inodes == live
        assert s.total_space - s.avail_space == 4096 * live


def test_engine_matches_the_model(redis_url):
    NamespaceMachine.url = redis_url
    run_state_machine_as_test(
        NamespaceMachine,
        settings=settings(max_examples=150, stateful_step_count=30, deadline=None, derandomize=False))
