"""AgentFS against a dictionary: random sequences of writeFile, appendFile, deleteFile, moveFile,
copyFile, readFile and readdir on the real Redis and SeaweedFS must agree with a model of the
same operations (contents and errors), including content past the inline limit."""

import base64
import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from artifacts_agentfs.api import AgentFS

NAMES = ["a", "b", "c.txt", "d/x", "d/y"]
#: Contents: small (inline) and a few large enough for S3 slices (the inline limit is 16 KiB).
DATA = st.one_of(st.binary(min_size=1, max_size=40),
                 st.sampled_from([b"L" * 20_000, b"M" * 70_000]))
_runs = itertools.count()


def _errno(fn, *args, **kw):
    try:
        return fn(*args, **kw), None
    except OSError as e:
        return None, e.errno


def test_agentfs_agrees_with_a_model(vol):
    fs = AgentFS(vol)

    class Model(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.root = f"m{next(_runs)}"
            self.files: dict[str, bytes] = {}
            self.has_d = False

        def p(self, name: str) -> str:
            return f"{self.root}/{name}"

        @rule(name=st.sampled_from(NAMES), data=DATA)
        def write(self, name, data):
            fs.write_file(self.p(name), data)
            self.files[name] = data
            self.has_d |= name.startswith("d/")

        @rule(name=st.sampled_from(NAMES), data=DATA)
        def append(self, name, data):
            r = fs.append_file(self.p(name), data)
            assert r["offset"] == len(self.files.get(name, b""))
            self.files[name] = self.files.get(name, b"") + data
            self.has_d |= name.startswith("d/")

        @rule(name=st.sampled_from(NAMES))
        def delete(self, name):
            _, err = _errno(fs.delete_file, self.p(name))
            if name in self.files:
                assert err is None
                del self.files[name]
            else:
                assert err == 2

        @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES), overwrite=st.booleans(),
              copy=st.booleans())
        def move_or_copy(self, src, dst, overwrite, copy):
            if src == dst:
                return
            op = fs.copy_file if copy else fs.move_file
            _, err = _errno(op, self.p(src), self.p(dst), overwrite=overwrite)
            if src not in self.files:
                assert err == 2
            elif dst in self.files and not overwrite:
                assert err == 17
            else:
                assert err is None
                self.files[dst] = self.files[src] if copy else self.files.pop(src)
                self.has_d |= dst.startswith("d/")

        @rule(name=st.sampled_from(NAMES))
        def read(self, name):
            r, err = _errno(fs.read_file, self.p(name), encoding="base64")
            if name in self.files:
                assert err is None and base64.b64decode(r["content"]) == self.files[name]
                assert r["size"] == len(self.files[name])
            else:
                assert err == 2

        @invariant()
        def listing(self):
            if not fs.exists(self.root):
                assert not self.files and not self.has_d
                return
            names = [e["name"] for e in fs.readdir(self.root)["entries"]]
            want = sorted({n for n in self.files if "/" not in n} | ({"d"} if self.has_d else set()))
            assert names == want

    run_state_machine_as_test(Model, settings=settings(
        max_examples=25, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
