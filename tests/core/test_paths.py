"""The canonicaliser: DESIGN.md §10 "Paths"."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifacts_core.errors import InvalidArgument, NameTooLong, PermissionDenied
from artifacts_core.paths import canonicalize, check_name, join, split


@pytest.mark.parametrize(("path", "parts"), [
    ("", ()), ("/", ()), (".", ()), ("a", ("a",)), ("/a/b", ("a", "b")), ("a//b/", ("a", "b")),
    ("a/./b/../c", ("a", "c")), ("../../etc/passwd", ("etc", "passwd")), ("/..", ()),
    ("a/../../b", ("b",)), (b"caf\xc3\xa9", ("café",)), ("...", ("...",)),
])
def test_lexical_resolution_never_climbs_above_root(path, parts):
    assert canonicalize(path) == parts


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/../etc"])
def test_strict_mode_refuses_escapes(path):
    with pytest.raises(PermissionDenied):
        canonicalize(path, strict=True)


def test_strict_mode_allows_dotdot_that_stays_inside():
    assert canonicalize("a/b/../c", strict=True) == ("a", "c")


def test_nul_and_length_limits():
    with pytest.raises(InvalidArgument):
        canonicalize("a\0b")
    assert canonicalize("x" * 255) == ("x" * 255,)
    with pytest.raises(NameTooLong):
        canonicalize("x" * 256)
    with pytest.raises(NameTooLong):
        canonicalize("é" * 128)  # 256 bytes of UTF-8
    with pytest.raises(NameTooLong):
        canonicalize("/".join(["y" * 200] * 21))  # > 4096 bytes


def test_non_utf8_names_round_trip():
    raw = b"bad\xff\xfename"
    (name,) = canonicalize(raw)
    assert name.encode("utf-8", "surrogateescape") == raw


def test_names_and_split():
    for bad in ("", ".", "..", "a/b", "a\0"):
        with pytest.raises(InvalidArgument):
            check_name(bad)
    assert split("/a/b/c") == (("a", "b"), "c")
    with pytest.raises(InvalidArgument):
        split("/")
    assert join(("a", "b")) == "/a/b" and join(()) == "/"


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c d", "é"]), max_size=12))
def test_canonical_form_is_stable_and_clean(comps):
    parts = canonicalize("/".join(comps))
    assert all(p not in ("", ".", "..") for p in parts)
    assert canonicalize(join(parts)) == parts
