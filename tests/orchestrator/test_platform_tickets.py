"""Mount tickets without servers: signing and verification, every kind of tampering, expiry, key
rotation and retirement, damaged key files; and the runtime's checks of a ticket file and of the
address it sends the ticket to."""

from __future__ import annotations

import base64
import json
import os
import stat

import msgspec
import pytest

from artifacts_cli.ticket import TicketFileError, _exchange_url, read_ticket_file
from artifacts_orchestrator.errors import TicketExpired, TicketInvalid
from artifacts_orchestrator.tickets import (
    MAX_TICKET_TTL,
    ROTATION_GRACE,
    KeyRing,
    TicketClaims,
    TicketWorkspace,
    unverified_claims,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(clock: Clock, **over) -> TicketClaims:
    fields = dict(v=1, jti="ab" * 16, iss="http://127.0.0.1:8720", iat=clock.now, exp=clock.now + 600, account_id=3,
                  workspace=TicketWorkspace(id=12, ref="alice/task"), mode="rw", tenant="acme", tenant_id=1,
                  runtime_id="task-1", grant_id="gr_1")
    return TicketClaims(**{**fields, **over})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def ring(tmp_path):
    clock = Clock()
    return KeyRing(tmp_path / "keys", clock=clock), clock


def test_a_signed_ticket_verifies_and_carries_no_secret(ring):
    keys, clock = ring
    t = msgspec.to_builtins(keys.sign(claims(clock)))
    assert keys.verify(t) == claims(clock)
    assert unverified_claims(t).workspace.ref == "alice/task"
    assert (keys.directory.stat().st_mode & 0o777) == 0o700
    pem = next(keys.directory.glob("*.pem"))
    assert (pem.stat().st_mode & 0o777) == 0o600
    assert b"PRIVATE" not in json.dumps(t).encode()


@pytest.mark.parametrize("change", ["mode", "workspace", "exp", "runtime", "extra", "kid", "format", "sig",
                                   "truncated", "not_b64", "huge"])
def test_any_change_to_a_ticket_is_refused(ring, change):
    keys, clock = ring
    t = msgspec.to_builtins(keys.sign(claims(clock, mode="ro")))
    body = json.loads(base64.urlsafe_b64decode(t["claims"] + "=="))
    edits = {
        "mode": lambda: dict(t, claims=b64(json.dumps(dict(body, mode="rw")).encode())),
        "workspace": lambda: dict(t, claims=b64(json.dumps(dict(body, workspace={"id": 13, "ref": "a/b"})).encode())),
        "exp": lambda: dict(t, claims=b64(json.dumps(dict(body, exp=body["exp"] + 1)).encode())),
        "runtime": lambda: dict(t, claims=b64(json.dumps(dict(body, runtime_id="other")).encode())),
        "extra": lambda: dict(t, claims=b64(json.dumps(dict(body, admin=True)).encode())),
        "kid": lambda: dict(t, kid=t["kid"][:-1] + ("0" if t["kid"][-1] != "0" else "1")),
        "format": lambda: dict(t, format="artifacts-mount-ticket/2"),
        "sig": lambda: dict(t, signature=b64(b"\0" * 64)),
        "truncated": lambda: dict(t, signature=t["signature"][:-4]),
        "not_b64": lambda: dict(t, claims="***"),
        "huge": lambda: dict(t, claims="A" * 20000),
    }
    with pytest.raises(TicketInvalid):
        keys.verify(edits[change]())


def _respell_last(sig: str) -> str:
    """The same signature bytes under another spelling: the last character's spare bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]


@pytest.mark.parametrize("junk", ["sig_bang", "sig_space", "sig_newline", "sig_dot", "sig_padding",
                                  "sig_plus_slash", "sig_respelled", "claims_padding"])
def test_base64_is_decoded_strictly(ring, junk):
    """The signature's base64url used to accept any junk (urlsafe_b64decode skips characters
    outside its alphabet) and other spellings of the same bytes: a ticket with "!" in its
    signature verified. Only the one canonical spelling does now."""
    keys, clock = ring
    t = msgspec.to_builtins(keys.sign(claims(clock)))
    sig, mid = t["signature"], len(t["signature"]) // 2
    edits = {
        "sig_bang": dict(t, signature=sig[:mid] + "!" + sig[mid:]),
        "sig_space": dict(t, signature=sig[:mid] + " " + sig[mid:]),
        "sig_newline": dict(t, signature=sig + "\n"),
        "sig_dot": dict(t, signature=sig[:mid] + "." + sig[mid:]),
        "sig_padding": dict(t, signature=sig + "=="),
        "sig_plus_slash": dict(t, signature=sig.replace("-", "+").replace("_", "/")) if ("-" in sig or "_" in sig)
        else dict(t, signature=sig + "+"),
        "sig_respelled": dict(t, signature=_respell_last(sig)),
        "claims_padding": dict(t, claims=t["claims"] + "="),
    }
    assert keys.verify(t) == claims(clock)  # the canonical ticket verifies
    with pytest.raises(TicketInvalid):
        keys.verify(edits[junk])


def test_shapes_that_are_not_tickets(ring):
    keys, _ = ring
    for bad in (None, [], "x", {}, {"format": 1}, {"format": "a", "kid": "b", "claims": "c"}):
        with pytest.raises(TicketInvalid):
            keys.verify(bad)


def test_expiry(ring):
    keys, clock = ring
    t = msgspec.to_builtins(keys.sign(claims(clock)))
    clock.now += 599
    keys.verify(t)
    clock.now += 1
    with pytest.raises(TicketExpired):
        keys.verify(t)


def test_rotation_keeps_old_keys_until_their_tickets_have_expired(ring, tmp_path):
    keys, clock = ring
    old = msgspec.to_builtins(keys.sign(claims(clock, exp=clock.now + MAX_TICKET_TTL)))
    new_kid = keys.rotate()  # same second: still sorts after the first key
    new = msgspec.to_builtins(keys.sign(claims(clock)))
    assert new["kid"] == new_kid > old["kid"]
    other_process = KeyRing(keys.directory, clock=clock)  # another orchestrator on the same directory
    assert other_process.verify(old) and other_process.verify(new)
    assert msgspec.to_builtins(other_process.sign(claims(clock)))["kid"] == new_kid
    clock.now += MAX_TICKET_TTL + ROTATION_GRACE - 5
    assert keys.prune() == []
    clock.now += 10
    assert keys.prune() == [old["kid"]]
    assert [k.kid for k in keys.public_keys()] == [new_kid]
    with pytest.raises(TicketInvalid, match="unknown or retired"):
        other_process.verify(old)


def test_a_deleted_key_stops_verifying_at_once_and_a_damaged_one_is_skipped(ring):
    keys, clock = ring
    first = msgspec.to_builtins(keys.sign(claims(clock)))
    keys.rotate()
    (keys.directory / f"{first['kid']}.pem").unlink()  # compromised: removed by hand
    with pytest.raises(TicketInvalid):
        keys.verify(first)
    (keys.directory / "20990101T000000Z-deadbeef.pem").write_text("not a key")
    assert keys.verify(msgspec.to_builtins(keys.sign(claims(clock))))


# -- the runtime's side --------------------------------------------------------------------------


def test_ticket_file_checks(ring, tmp_path):
    keys, clock = ring
    t = msgspec.to_builtins(keys.sign(claims(clock)))
    f = tmp_path / "mount-ticket.json"
    f.write_text(json.dumps(t))
    for mode in (0o644, 0o640, 0o604, 0o660):
        f.chmod(mode)
        with pytest.raises(TicketFileError, match=r"accessible by group or others .*chmod 600"):
            read_ticket_file(str(f))
    f.chmod(0o600)
    f.write_text("[" * 10_000 + "]" * 10_000)  # nested past the parser's recursion: a clear error
    with pytest.raises(TicketFileError, match="is not JSON"):
        read_ticket_file(str(f))
    f.write_text(json.dumps(t))
    f.chmod(0o400)
    assert read_ticket_file(str(f)) == t
    f.chmod(0o600)
    f.write_text(json.dumps({"mount_ticket": t, "ticket_id": "x"}))  # the whole SDK answer works too
    assert read_ticket_file(str(f)) == t
    link = tmp_path / "link.json"  # Kubernetes secret volumes are symlinks to the real file
    link.symlink_to(f)
    assert read_ticket_file(str(link)) == t
    f.write_text("not json")
    with pytest.raises(TicketFileError, match="not JSON"):
        read_ticket_file(str(f))
    with pytest.raises(TicketFileError, match="cannot read"):
        read_ticket_file(str(tmp_path / "missing.json"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(TicketFileError, match="not a regular file"):
        read_ticket_file(str(fifo))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_ticket_is_never_sent_in_clear_text_off_the_host(monkeypatch):
    monkeypatch.delenv("ARTIFACTS_ORCHESTRATOR_URL", raising=False)
    assert _exchange_url("http://127.0.0.1:8720/") == "http://127.0.0.1:8720"
    assert _exchange_url("http://localhost:8720") == "http://localhost:8720"
    assert _exchange_url("http://[::1]:8720") == "http://[::1]:8720"
    assert _exchange_url("https://orchestrator.example.com") == "https://orchestrator.example.com"
    for bad in ("http://10.0.0.5:8720", "http://orchestrator.example.com", "ftp://x", "nonsense"):
        with pytest.raises(TicketFileError):
            _exchange_url(bad)
    monkeypatch.setenv("ARTIFACTS_ORCHESTRATOR_URL", "https://inside.example:8443")
    assert _exchange_url("http://127.0.0.1:8720") == "https://inside.example:8443"
