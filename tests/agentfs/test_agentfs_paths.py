"""Every attack string of the agent-tools survey (§3.4), against the agent API's path rules and,
where resolution matters, against a real workspace (real Redis and SeaweedFS)."""

import errno
import os
import threading
import time

import pytest

from artifacts_agentfs.api import AgentFS
from artifacts_agentfs.paths import agent_path
from artifacts_core.config import profile_config
from artifacts_core.volume import format_volume, open_volume

ESCAPES = ["../secret", "../../../../etc/passwd", "a/../../b", "a/b/../../..", "./././../x", "a/./../..",
           "/..", "/../x", ".."]
BACKSLASH = ["..\\..\\windows\\win.ini", "a\\..\\..\\b", "C:\\Windows\\win.ini", "\\\\server\\share\\x",
             "\\\\?\\C:\\x", "\\\\.\\PhysicalDrive0", "..\\", "\\"]
DRIVES = ["C:foo", "c:/x"]
ENCODED = ["%2e%2e%2f", "..%2f", "%2e%2e/", "%252e%252e%252f", "..%5c", "%c0%ae%c0%ae/"]
CONTROL = ["a.txt\x00.png", "\x00", "a\nb", "a\rb", "\x1b[31m.txt", "a\tb", "a\x7fb", "a\x85b"]
LOOKALIKES = ["\uff0e\uff0e\uff0fsecret", "\u2025/secret", "\u2024\u2024/secret", "\ufe52\ufe52/secret",
              "..\uff3csecret", "..\u2215secret", "..\u2044secret"]
SPOOFING = ["invoice\u202efdp.exe", "re\u200bad.md", "\ufeffname", "a\u2066b"]
PORTABILITY = ["file.txt:hidden", "file.txt::$DATA", "CON", "nul.txt", "aux", "COM1.log", "name.", "name "]
GLOBS = ["**/../../*", "../*", "/**", "{a,../../b}", "[!a]/../x"]


def _code(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return None


@pytest.mark.parametrize("path", ESCAPES + BACKSLASH + DRIVES + ENCODED + LOOKALIKES + SPOOFING)
def test_sandbox_forms_are_refused_with_eacces(path):
    with pytest.raises(PermissionError):
        agent_path(path)


@pytest.mark.parametrize("path", CONTROL)
def test_nul_and_control_characters_are_invalid(path):
    assert _code(agent_path, path) == 22  # EINVAL


@pytest.mark.parametrize("path", ["a" * 256, "é" * 255, "a/" * 512 + "b", "x" * 4097, "a/" * 10_000,
                                  "p" * (1 << 20)])
def test_length_and_depth_bounds(path):
    t = time.perf_counter()
    assert _code(agent_path, path) == 36  # ENAMETOOLONG
    assert time.perf_counter() - t < 0.05  # a megabyte of path is refused before any work


def test_root_relative_and_literal_dot_names_are_allowed():
    assert agent_path("/etc/passwd").parts == ("etc", "passwd")
    assert agent_path("//etc/passwd").parts == ("etc", "passwd")
    assert agent_path("///x").parts == ("x",)
    assert agent_path(".../x").parts == ("...", "x")
    assert agent_path("notes..md").parts == ("notes..md",)
    assert agent_path("[...slug].ts").parts == ("[...slug].ts",)
    assert agent_path("a/./b/../c").parts == ("a", "c")
    assert agent_path(b"caf\xc3\xa9").parts == ("café",)
    assert _code(agent_path, b"\xc0\xae\xc0\xae/x") == 22  # overlong UTF-8: invalid at the byte layer
    assert agent_path("caf\u00e9.txt") == agent_path("cafe\u0301.txt")  # NFC: one name
    assert agent_path("\u212a.txt") == agent_path("K.txt")  # Kelvin sign is K under NFC
    assert agent_path("k.txt") != agent_path("K.txt")  # names are case-sensitive
    assert agent_path("%20 100%.txt").parts == ("%20 100%.txt",)


def test_paths_through_a_real_workspace(vol):
    fs = AgentFS(vol)
    fs.write_file("/etc/passwd", "workspace file")
    assert fs.read_file("etc/passwd")["content"] == "workspace file"
    assert fs.read_file("//etc/passwd")["content"] == "workspace file"
    with open("/etc/passwd") as host:
        assert host.read() != "workspace file"
    for name in (".../x", "notes..md", "[...slug].ts", "*", "?", "[a-z]", "{x}", "}{", "İ.txt"):
        fs.write_file(name, name)
        assert fs.read_file(name)["content"] == name
    assert fs.glob("*")["matches"].count("*") == 1
    assert "[a-z]" in [e["name"] for e in fs.readdir("")["entries"]]
    fs.write_file("caf\u00e9.txt", "one")
    assert fs.read_file("cafe\u0301.txt")["content"] == "one"
    fs.write_file("a.txt", "a")
    for src, dst in (("a.txt", "../a.txt"), ("a.txt", "/../../b"), ("a.txt", "../../x")):
        assert _code(fs.move_file, src, dst) == 13
        assert _code(fs.copy_file, src, dst) == 13
    # the survey's patch envelopes ("Move to: ../../x", "create ../x") are these calls here
    assert _code(fs.write_file, "../x", "x") == 13
    assert _code(fs.edit_file, "../../x", "a", "b") == 13
    for name in PORTABILITY:  # names a tool may not create; reading them is just "not found"
        assert _code(fs.write_file, name, "x") == 22, name
        assert _code(fs.mkdir, name) == 22, name
        assert _code(fs.read_file, name) == 2, name
        assert fs.exists(name) is False
    vol.write_bytes("made:elsewhere", b"ok")  # a name another frontend made stays usable
    assert fs.read_file("made:elsewhere")["content"] == "ok"
    fs.write_file("made:elsewhere", "overwritten")
    assert fs.read_file("made:elsewhere")["content"] == "overwritten"
    for reserved in (".trash", ".trash/x", ".stats", ".config", "/.accesslog"):
        assert _code(fs.read_file, reserved) == 13
    assert {e["name"] for e in fs.readdir("/")["entries"]}.isdisjoint({".trash", ".stats", ".config"})


def test_root_and_trailing_slash_edges(vol):
    fs = AgentFS(vol)
    fs.write_file("file.txt", "x")
    assert _code(fs.delete_file, "") == 1  # EPERM
    assert _code(fs.delete_file, "/") == 1
    assert _code(fs.rmdir, ".") == 1
    assert _code(fs.rmdir, "/") == 1
    assert _code(fs.move_file, "/", "x") == 1
    assert _code(fs.read_file, "file.txt/") == 20  # ENOTDIR
    assert _code(fs.delete_file, "file.txt/") == 20
    assert _code(fs.write_file, "new.txt/", "x") == 21  # EISDIR, as open("new.txt/", O_CREAT)
    assert _code(fs.append_file, "file.txt/", "x") == 21
    assert not fs.exists("new.txt")
    assert fs.read_file("file.txt")["content"] == "x"


def test_symlinks_pointing_out_are_never_followed(vol, tmp_path):
    fs = AgentFS(vol)
    outside = tmp_path / "host"
    outside.mkdir()
    vol.symlink("/etc", "link")
    vol.symlink("../../..", "up")
    vol.symlink("/proc/self/root", "r")
    vol.symlink(str(outside), "hostdir")
    assert _code(fs.read_file, "link/passwd") == 13
    assert _code(fs.readdir, "up") == 13
    assert _code(fs.readdir, "r") == 13
    assert _code(fs.write_file, "link/x", "pwned") == 13
    assert _code(fs.write_file, "hostdir/x", "pwned") == 13
    assert _code(fs.append_file, "hostdir/x", "pwned") == 13
    assert list(outside.iterdir()) == []
    vol.symlink("b", "a")
    vol.symlink("a", "b")
    assert _code(fs.read_file, "a") == 40  # ELOOP, not a hang
    fs.write_file("end.txt", "end")
    for i in range(41):
        vol.symlink(f"c{i + 1}" if i < 40 else "end.txt", f"c{i}")
    assert _code(fs.read_file, "c0") == 40
    assert fs.read_file("c1")["content"] == "end"  # 40 hops are allowed, as Linux
    fs.mkdir("inside")
    vol.symlink("inside", "in")
    fs.write_file("in/f.txt", "through an inside link")
    assert fs.read_file("inside/f.txt")["content"] == "through an inside link"
    vol.symlink("inside/f.txt", "flink")
    fs.write_file("flink", "replaced through the link")  # writeFile on a link writes its target
    assert fs.read_file("inside/f.txt")["content"] == "replaced through the link"
    fs.delete_file("flink")  # deleteFile removes the link, not the target
    assert fs.exists("inside/f.txt") and not fs.exists("flink")


def test_symlinks_into_reserved_names_are_not_followed(vol):
    """A link cannot reach what the path itself may not name (the internal files, the trash)."""
    fs = AgentFS(vol)
    vol.symlink(".config", "cfg")
    vol.symlink(".trash", "t")
    vol.symlink("sub/../.stats", "st")
    fs.mkdir("sub")
    vol.symlink("../.accesslog", "sub/log")
    for call, args in ((fs.stat, ("cfg",)), (fs.read_file, ("cfg",)), (fs.exists, ("cfg",)),
                       (fs.readdir, ("t",)), (fs.read_file, ("st",)), (fs.read_file, ("sub/log",)),
                       (fs.stat, ("sub/log",)), (fs.write_file, ("cfg", "x")), (fs.append_file, ("st", "x")),
                       (fs.readdir, ("t/",))):
        assert _code(call, *args) == 13, (call.__name__, args)
    assert vol.read_bytes("cfg") == vol.read_bytes(".config")  # the path API is the operator's


def test_directory_swapped_for_an_outward_link_during_writes(vol, tmp_path):
    fs = AgentFS(vol)
    outside = tmp_path / "host"
    outside.mkdir()
    fs.mkdir("dir")
    stop, errors, results = threading.Event(), [], []

    def writer():
        for i in range(200):
            try:
                fs.write_file("dir/file", f"v{i}")
                results.append("ok")
            except OSError as e:
                results.append(e.errno)
        stop.set()

    def swapper():
        while not stop.is_set():
            try:
                vol.rename("dir", "dir.away")
                vol.symlink(str(outside), "dir")
                vol.remove("dir")
                vol.rename("dir.away", "dir")
            except OSError as e:
                errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=swapper)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(outside.iterdir()) == []  # nothing ever reached the host
    assert set(results) <= {"ok", 13, 2, 20, 17}  # written inside, or refused
    assert "ok" in results


@pytest.mark.parametrize("pattern", GLOBS)
def test_glob_patterns_cannot_climb(vol, pattern):
    assert _code(AgentFS(vol).glob, pattern) == 13


#: Patterns that backtracking engines (Python's re) take minutes or longer on, holding the GIL.
CATASTROPHIC_REGEXES = ("(a+)+$", "((a+))+$", "(a|a)+$", "(a?){25}a{25}", "(x+x+)+y", "(.*a){12}")
CATASTROPHIC_GLOBS = ("*a*a*a*a*a*a*a*a*b", "**/*a*a*a*a*a*a*a*a*a*a*b")


def test_catastrophic_patterns_run_in_linear_time(vol):
    """grep and glob are linear in the text whatever the pattern (RE2): the patterns found by
    hand to run for minutes answer at once, with the right result; what RE2 cannot do in linear
    time (backreferences, lookaround) is EINVAL with a message saying so."""
    fs = AgentFS(vol)
    fs.write_file("long.txt", "a" * 4000 + "!\n" + "aaaa\n")
    fs.write_file("a" * 200 + "c", "x")  # a long name the glob walks past
    t = time.perf_counter()
    for pattern, expected in zip(CATASTROPHIC_REGEXES, ([2], [2], [2], [1], [], [1]), strict=True):
        lines = [m["line"] for m in fs.grep(pattern, path="long.txt")["matches"]]
        assert lines == expected, pattern  # what Python's re answers, eventually
    for pattern in CATASTROPHIC_GLOBS:
        assert fs.glob(pattern)["matches"] == []
    assert time.perf_counter() - t < 5.0  # each ran for minutes before
    for refused in (r"(\w)\1", "(?P<x>a)(?P=x)", "a(?=b)", "(?<!a)b", r"x\Z", "a{1001}"):
        with pytest.raises(OSError) as e:
            fs.grep(refused)
        assert e.value.errno == errno.EINVAL and "RE2" in str(e.value), refused
    assert fs.grep("(a+)+$", fixed=True)["matches"] == []
    assert fs.grep("A{4}$", ignore_case=True, path="long.txt")["matches"][0]["line"] == 2


def test_a_pathological_pattern_does_not_stall_other_calls(vol):
    """While one call matches a pattern that backtracking would take minutes on, another call of
    the same process completes at once (the GIL is not held: one agent cannot stall the MCP
    server's other calls)."""
    fs = AgentFS(vol)
    fs.write_file("big/long.txt", ("a" * 4000 + "!\n") * 400)  # 1.6 MB of near-matches
    fs.write_file("small.txt", "hello\n")
    done: dict = {}

    def slow():
        t = time.perf_counter()
        done["slow"] = fs.grep("(a|a)+$|((a+))+$", path="big")
        done["slow_s"] = time.perf_counter() - t

    th = threading.Thread(target=slow, daemon=True)
    th.start()
    t = time.perf_counter()
    assert fs.stat("small.txt")["type"] == "file" and fs.read_file("small.txt")["content"] == "hello\n"
    quick = time.perf_counter() - t
    th.join(60)
    assert not th.is_alive(), "the pathological grep did not finish"
    assert done["slow"]["matches"] == []
    assert quick < 2.0, f"a concurrent call took {quick:.2f} s"


def test_workspace_prefixes_never_see_each_other(redis_url, storage_url, tmp_path):
    pid = os.getpid()
    vols = []
    try:
        for ws in ("1", "10"):
            url = storage_url + "-ws" + ws if "?" not in storage_url else storage_url.replace("?", f"-ws{ws}?", 1)
            prefix = f"{{u_{pid}_w_77{ws}}}:"
            format_volume(redis_url, url, f"ws{ws}", key_prefix=prefix, require_aof=False, trash_days=0)
            vols.append(open_volume(redis_url, url, key_prefix=prefix, require_aof=False,
                                    config=profile_config("interactive", entry_ttl=0.0, attr_ttl=0.0,
                                                          cache_dir=str(tmp_path / ws))))
        one, ten = AgentFS(vols[0]), AgentFS(vols[1])
        ten.write_file("secret.txt", "ws10 only")
        ten.write_file("big.bin", os.urandom(100_000))  # S3 blocks under ws10's own storage prefix
        assert one.readdir("")["entries"] == []
        assert one.glob("**")["matches"] == [] and not one.exists("secret.txt")
    finally:
        for v in vols:
            v.close()


def test_reserved_names_through_an_in_workspace_symlink(volume_factory):
    """With ``sub/up -> ..`` the agent API used to read and purge ``sub/up/.trash``, and writeFile
    ``sub/up/.stats`` made real root entries named ``.stats``/``.trash`` that shadowed the internal
    files and could not be deleted. Reserved names are checked on the resolved location, and no
    frontend may create them at the root."""
    from artifacts_core.errors import NotFound, PermissionDenied
    from artifacts_core.types import ROOT_INO

    vol = volume_factory(format_options={"trash_days": 1})
    fs = AgentFS(vol)
    fs.mkdir("sub")
    vol.symlink("..", "sub/up")
    fs.write_file("a.txt", "keep me")
    fs.write_file("gone.txt", "in the trash")
    fs.delete_file("gone.txt")
    (hour,) = vol.listdir(".trash")
    trashed = vol.listdir(f".trash/{hour}")
    assert trashed and fs.read_file("sub/up/a.txt")["content"] == "keep me"  # the link itself works
    attacks = [
        lambda: fs.readdir("sub/up/.trash"), lambda: fs.stat("sub/up/.trash"),
        lambda: fs.readdir(f"sub/up/.trash/{hour}"), lambda: fs.rmdir("sub/up/.trash"),
        lambda: fs.rmdir(f"sub/up/.trash/{hour}"), lambda: fs.delete_file(f"sub/up/.trash/{hour}/{trashed[0]}"),
        lambda: fs.read_file("sub/up/.stats"), lambda: fs.read_file("sub/up/.config"),
        lambda: fs.write_file("sub/up/.stats", "x"), lambda: fs.write_file("sub/up/.trash", "x"),
        lambda: fs.append_file("sub/up/.accesslog", "x"), lambda: fs.mkdir("sub/up/.stats"),
        lambda: fs.mkdir("sub/up/.trash/x"), lambda: fs.copy_file("a.txt", "sub/up/.config"),
        lambda: fs.move_file("a.txt", "sub/up/.trash"), lambda: fs.move_file(f"sub/up/.trash/{hour}", "loot"),
        lambda: fs.grep("trash", path="sub/up/.trash"), lambda: fs.glob("*", path="sub/up/.trash"),
    ]
    for i, attack in enumerate(attacks):
        assert _code(attack) == errno.EACCES, i
    listed = {e["name"] for e in fs.readdir("sub/up")["entries"]}
    assert listed == {"a.txt", "sub"}  # the internal names stay hidden through the link too
    assert fs.glob("*", path="sub/up")["matches"] == ["sub/up/a.txt", "sub/up/sub"]
    assert vol.listdir(f".trash/{hour}") == trashed  # nothing purged
    for name in (".stats", ".config", ".accesslog", ".trash"):  # and no real root entry was made
        with pytest.raises(NotFound):
            vol.meta.lookup(ROOT_INO, name)
    # The core refuses the names at the root for every frontend.
    for make in (lambda: vol.vfs.mkdir(ROOT_INO, ".stats", 0o755),
                 lambda: vol.vfs.replace_content(ROOT_INO, ".trash", b"x"),
                 lambda: vol.vfs.append(ROOT_INO, ".config", b"x"),
                 lambda: vol.vfs.symlink(ROOT_INO, ".accesslog", "a.txt")):
        with pytest.raises(PermissionDenied):
            make()
