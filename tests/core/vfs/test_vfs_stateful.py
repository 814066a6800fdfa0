"""A Hypothesis state machine drives the path API and an in-memory model side by side, on the real
Redis and SeaweedFS: create, write at offsets, append, truncate, rename, unlink, mkdir, rmdir,
read. Any divergence in content, names or errors fails with the shortest sequence that shows it."""

import errno
import uuid

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

NAMES = st.sampled_from(["a", "b", "c"])
DIRS = st.sampled_from(["", "d1", "d1/d2"])
DATA = st.one_of(st.binary(max_size=64), st.binary(min_size=20_000, max_size=20_100))  # inline and S3 slices


def errno_of(fn):
    try:
        fn()
        return None
    except OSError as e:
        return e.errno


class PathModel(RuleBasedStateMachine):
    vol = None  # set per test

    def __init__(self):
        super().__init__()
        self.files: dict[str, bytearray] = {}
        self.dirs: set[str] = {""}
        self.root = f"/r{uuid.uuid4().hex[:10]}"
        self.vol.mkdir(self.root)

    def p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    @staticmethod
    def join(d: str, n: str) -> str:
        return f"{d}/{n}" if d else n

    @initialize(data=DATA)
    def seed(self, data):
        self.vol.mkdir(self.p("d1"))
        self.vol.write_bytes(self.p("a"), data)
        self.dirs.add("d1")
        self.files["a"] = bytearray(data)

    @rule(d=DIRS, n=NAMES)
    def mkdir(self, d, n):
        path = self.join(d, n)
        expected = (errno.ENOENT if d not in self.dirs else
                    errno.EEXIST if path in self.dirs or path in self.files else None)
        assert errno_of(lambda: self.vol.mkdir(self.p(path))) == expected
        if expected is None:
            self.dirs.add(path)

    @rule(d=DIRS, n=NAMES, data=DATA)
    def write_file(self, d, n, data):
        path = self.join(d, n)
        expected = errno.ENOENT if d not in self.dirs else errno.EISDIR if path in self.dirs else None
        assert errno_of(lambda: self.vol.write_bytes(self.p(path), data)) == expected
        if expected is None:
            self.files[path] = bytearray(data)

    @precondition(lambda self: self.files)
    @rule(data=st.data(), chunk=DATA, offset=st.integers(0, 30_000))
    def write_at(self, data, chunk, offset):
        path = data.draw(st.sampled_from(sorted(self.files)))
        with self.vol.open(self.p(path), "r+b") as f:
            f.seek(offset)
            f.write(chunk)
        buf = self.files[path]
        if not chunk:  # a write of nothing does not extend the file (POSIX)
            return
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(chunk)] = chunk

    @precondition(lambda self: self.files)
    @rule(data=st.data(), chunk=DATA)
    def append(self, data, chunk):
        path = data.draw(st.sampled_from(sorted(self.files)))
        with self.vol.open(self.p(path), "ab") as f:
            f.write(chunk)
        self.files[path] += chunk

    @precondition(lambda self: self.files)
    @rule(data=st.data(), length=st.integers(0, 40_000))
    def truncate(self, data, length):
        path = data.draw(st.sampled_from(sorted(self.files)))
        self.vol.truncate(self.p(path), length)
        buf = self.files[path]
        if length < len(buf):
            del buf[length:]
        else:
            buf.extend(bytes(length - len(buf)))

    @rule(d=DIRS, n=NAMES)
    def unlink(self, d, n):
        path = self.join(d, n)
        expected = (None if path in self.files else errno.EISDIR if path in self.dirs else errno.ENOENT)
        assert errno_of(lambda: self.vol.remove(self.p(path))) == expected
        self.files.pop(path, None)

    @rule(d=DIRS, n=NAMES)
    def rmdir(self, d, n):
        path = self.join(d, n)
        if path in self.dirs:
            busy = any(k.startswith(path + "/") for k in (*self.files, *self.dirs))
            expected = errno.ENOTEMPTY if busy else None
        else:
            expected = errno.ENOTDIR if path in self.files else errno.ENOENT
        assert errno_of(lambda: self.vol.rmdir(self.p(path))) == expected
        if expected is None:
            self.dirs.discard(path)

    @precondition(lambda self: self.files)
    @rule(data=st.data(), d=DIRS, n=NAMES)
    def rename_file(self, data, d, n):
        src = data.draw(st.sampled_from(sorted(self.files)))
        dst = self.join(d, n)
        if d not in self.dirs:
            expected = errno.ENOENT
        elif dst in self.dirs:
            expected = errno.EISDIR
        else:
            expected = None
        assert errno_of(lambda: self.vol.rename(self.p(src), self.p(dst))) == expected
        if expected is None and src != dst:
            self.files[dst] = self.files.pop(src)

    @invariant()
    def contents_and_names_agree(self):
        for path, buf in self.files.items():
            assert self.vol.read_bytes(self.p(path)) == bytes(buf), path
        for d in self.dirs:
            names = set(self.vol.listdir(self.p(d)))
            expected = {k.rsplit("/", 1)[-1] for k in (*self.files, *self.dirs)
                        if k and k.rpartition("/")[0] == d}
            assert names == expected, d


@pytest.mark.slow
def test_path_api_matches_the_model(vol):
    from hypothesis.stateful import run_state_machine_as_test

    PathModel.vol = vol
    run_state_machine_as_test(PathModel, settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)))
