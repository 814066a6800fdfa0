"""A Hypothesis state machine on the real Redis and SeaweedFS interleaves file operations,
checkpoints, restores, deletes of checkpoints, diffs and clones, and compares the workspace, every
checkpoint's read-only view and every diff with an in-memory model (docs/history.md)."""


import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

NAMES = st.sampled_from(["a", "b", "d/a", "d/b"])
DATA = st.one_of(st.binary(max_size=40), st.binary(min_size=20_000, max_size=20_050))  # inline and S3


class HistoryModel(RuleBasedStateMachine):
    vol = None  # set per test
    checkpoints = Bundle("checkpoints")

    def __init__(self):
        super().__init__()
        v = self.vol
        for c in v.checkpoints.list():
            v.checkpoints.delete(c.name)
        for name in v.listdir("/"):
            if name.startswith("."):
                continue
            (v.rmtree if v.isdir(name) else v.remove)(name)
        v.mkdir("d")
        self.files: dict[str, bytes] = {}
        self.saved: dict[str, dict[str, bytes]] = {}
        self.n = 0

    def _name(self, kind):
        self.n += 1
        return f"{kind}{self.n}"

    @rule(path=NAMES, data=DATA)
    def write(self, path, data):
        self.vol.write_bytes(path, data)
        self.files[path] = data

    @rule(path=NAMES, data=st.binary(min_size=1, max_size=30))
    def append(self, path, data):
        with self.vol.open(path, "ab") as f:
            f.write(data)
        self.files[path] = self.files.get(path, b"") + data

    @rule(path=NAMES)
    def remove(self, path):
        if path in self.files:
            self.vol.remove(path)
            del self.files[path]

    @rule(src=NAMES, dst=NAMES)
    def rename(self, src, dst):
        if src in self.files and src != dst:
            self.vol.rename(src, dst)
            self.files[dst] = self.files.pop(src)

    @rule(src=NAMES, dst=NAMES)
    def clone(self, src, dst):
        if src in self.files and dst not in self.files:
            self.vol.clone(src, dst)
            self.files[dst] = self.files[src]

    @rule(target=checkpoints)
    def checkpoint(self):
        name = self._name("c")
        self.vol.checkpoints.create(name)
        self.saved[name] = dict(self.files)
        return name

    @rule(target=checkpoints, name=checkpoints)
    def restore(self, name):
        if name not in self.saved:
            return "gone"
        safety = self._name("s")
        self.vol.checkpoints.restore(name, safety=safety)
        self.saved[safety] = dict(self.files)
        self.files = dict(self.saved[name])
        return safety

    @rule(name=checkpoints)
    def delete(self, name):
        if name in self.saved:
            self.vol.checkpoints.delete(name)
            del self.saved[name]

    @rule(name=checkpoints)
    def browse(self, name):
        if name in self.saved:
            view = self.vol.checkpoints.view(name)
            got = {p: view.read_bytes(p) for p in ("a", "b", "d/a", "d/b") if view.exists(p)}
            assert got == self.saved[name], name

    @rule(name=checkpoints)
    def diff(self, name):
        if name not in self.saved:
            return
        old, new = self.saved[name], self.files
        changes = self.vol.checkpoints.diff(name)
        added = {c.path.lstrip("/") for c in changes if c.kind == "added" and c.type == "file"}
        removed = {c.path.lstrip("/") for c in changes if c.kind == "removed" and c.type == "file"}
        modified = {c.path.lstrip("/") for c in changes if c.kind == "modified"}
        for c in changes:
            if c.kind == "renamed":
                added.add(c.path.lstrip("/"))
                removed.add((c.old_path or "").lstrip("/"))
        # every path whose content differs is reported; nothing unchanged is reported
        for p in set(old) | set(new):
            if old.get(p) != new.get(p):
                assert p in added | removed | modified, (p, changes)
        for p in modified:
            assert old.get(p) != new.get(p) and p in old and p in new, (p, changes)

    @invariant()
    def workspace_matches(self):
        got = {p: self.vol.read_bytes(p) for p in ("a", "b", "d/a", "d/b") if self.vol.exists(p)}
        assert got == self.files
        assert sorted(c.name for c in self.vol.checkpoints.list()) == sorted(self.saved)


@pytest.mark.slow
def test_history_matches_the_model(vol):
    from hypothesis.stateful import run_state_machine_as_test

    HistoryModel.vol = vol
    run_state_machine_as_test(HistoryModel, settings=settings(
        max_examples=12, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)))


