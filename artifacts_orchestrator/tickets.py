"""Signed mount tickets: the key ring that signs them and the one function that verifies them.

A mount ticket (docs/platform.md) is the only thing a platform hands its customer's runtime. It is
a small JSON object::

    {"format": "artifacts-mount-ticket/1", "kid": "20261121T064000Z-3fa9c2d1",
     "claims": "<base64url of the claims' JSON bytes>", "signature": "<base64url Ed25519 signature>"}

The signature covers ``b"artifacts-mount-ticket/1." + kid + b"." + claims`` (the base64url text,
so no JSON canonicalisation is needed: the verifier checks the exact bytes that were signed, then
decodes them). The format string and the kid are inside the signed message, so a ticket cannot be
replayed under another format or attributed to another key. ``claims`` (``TicketClaims``) name the
workspace (id and ``handle/name``), the mode, the tenant, the runtime, the grant, issue and expiry
times, a unique id (``jti``) and the orchestrator URL to exchange it at. No secret is inside: the
ticket only proves the orchestrator said so; single use is enforced by the orchestrator's record of
each ``jti`` (platform_service.py), not by the ticket.

``KeyRing`` keeps Ed25519 keys as PKCS#8 PEM files ``<kid>.pem`` (0600) in a 0700 directory, never
in the database (which holds no secret). ``kid`` starts with the key's UTC creation time, so names
sort by age: the newest key signs; an older key still verifies until ``MAX_TICKET_TTL`` (+ a grace
for other processes to notice) after the next key was created — by then every ticket it signed has
expired. ``rotate()`` adds a key; ``prune()`` deletes keys nothing can need. The directory's mtime
is checked on each use, so a rotation by another process (``python -m artifacts_orchestrator
rotate-ticket-key``) is seen without a restart.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from artifacts_orchestrator.errors import TicketExpired, TicketInvalid

log = logging.getLogger("artifacts.orchestrator.tickets")

TICKET_FORMAT = "artifacts-mount-ticket/1"
#: Ticket lifetime bounds: a minute (less cannot get a runtime booted and its mount started) up to
#: a day (a ticket is meant for one task start; long-lived access is what grants are for).
MIN_TICKET_TTL, MAX_TICKET_TTL = 60, 24 * 3600
#: How long after a rotation other orchestrator processes may still sign with the old key (they
#: check the key directory on every use; this only covers clock skew between hosts).
ROTATION_GRACE = 300
#: A ticket is a few hundred bytes; anything this large is not one (checked before decoding).
MAX_TICKET_BYTES = 8 << 10
KID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


class TicketWorkspace(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: int
    ref: str  # handle/name


class TicketClaims(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    v: int
    jti: str
    iss: str  # the orchestrator URL the runtime exchanges the ticket at
    iat: float
    exp: float
    account_id: int
    workspace: TicketWorkspace
    mode: Literal["ro", "rw"]
    tenant: str  # slug
    tenant_id: int
    runtime_id: str
    grant_id: str


class MountTicket(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    kid: str
    claims: str
    signature: str


class PublicKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    alg: str
    public_key: str  # base64url of the raw 32 bytes
    created_at: float
    retires_at: float | None = None  # no longer accepted after this (None: the signing key)


_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_FROM_URLSAFE = str.maketrans("-_", "+/")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: only the alphabet, and the one canonical spelling of the
    bytes (``urlsafe_b64decode`` alone skips characters outside the alphabet, and ignores the spare
    bits of the last character, so one signature had many accepted spellings)."""
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.b64decode(text.translate(_FROM_URLSAFE) + "=" * (-len(text) % 4), validate=True)
    if _b64(data) != text:
        raise ValueError("not the canonical base64url spelling")
    return data


def _signed_message(kid: str, claims_b64: str) -> bytes:
    return f"{TICKET_FORMAT}.{kid}.{claims_b64}".encode()


def _created(kid: str) -> float:
    return float(calendar.timegm(time.strptime(kid[:16], "%Y%m%dT%H%M%SZ")))


class KeyRing:
    """Ed25519 signing keys in a private directory (see the module note for rotation)."""

    def __init__(self, directory: str | os.PathLike, *, clock: Callable[[], float] = time.time,
                 max_ticket_ttl: float = MAX_TICKET_TTL) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self.max_ticket_ttl = max_ticket_ttl
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._seen_mtime: int | None = None
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    # -- files ------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Ed25519PrivateKey]:
        with self._lock:
            mtime = self.directory.stat().st_mtime_ns
            if mtime != self._seen_mtime:
                keys = {}
                for path in sorted(self.directory.glob("*.pem")):
                    if not KID_RE.match(path.stem):
                        continue
                    try:
                        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                    except (OSError, ValueError, TypeError) as e:  # a damaged file must not stop the others
                        log.error("ignoring ticket key %s: %s", path.name, type(e).__name__)
                        continue
                    if isinstance(key, Ed25519PrivateKey):
                        keys[path.stem] = key
                self._keys, self._seen_mtime = keys, mtime
            return self._keys

    def rotate(self) -> str:
        """Create a new signing key (it signs from now on) and return its kid."""
        created = int(self.clock())
        existing = self._load()
        if existing:  # kids sort by creation second: a second rotation within one second goes next
            created = max(created, int(_created(max(existing))) + 1)
        kid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created)) + "-" + secrets.token_hex(4)
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        tmp = self.directory / f".{kid}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, self.directory / f"{kid}.pem")  # appears whole or not at all
        return kid

    def _retirements(self) -> dict[str, float | None]:
        """kid -> when it stops being accepted (None for the newest, the signing key)."""
        kids = sorted(self._load())
        out: dict[str, float | None] = {}
        for older, newer in itertools.pairwise(kids):
            out[older] = _created(newer) + self.max_ticket_ttl + ROTATION_GRACE
        if kids:
            out[kids[-1]] = None
        return out

    def prune(self) -> list[str]:
        """Delete keys that can no longer verify any unexpired ticket; returns their kids."""
        now = self.clock()
        gone = [kid for kid, until in self._retirements().items() if until is not None and until <= now]
        for kid in gone:
            (self.directory / f"{kid}.pem").unlink(missing_ok=True)
        return gone

    def public_keys(self) -> list[PublicKey]:
        now = self.clock()
        keys = self._load()
        out = []
        for kid, until in self._retirements().items():
            if until is None or until > now:
                raw = keys[kid].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                out.append(PublicKey(kid=kid, alg="Ed25519", public_key=_b64(raw), created_at=_created(kid),
                                     retires_at=until))
        return out

    def _signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        keys = self._load()
        if not keys:
            self.rotate()
            keys = self._load()
        kid = max(keys)
        return kid, keys[kid]

    def _verifying_key(self, kid: str) -> Ed25519PublicKey | None:
        keys = self._load()
        until = self._retirements().get(kid, 0.0)
        if kid not in keys or (until is not None and until <= self.clock()):
            return None  # unknown or retired
        return keys[kid].public_key()

    # -- tickets ----------------------------------------------------------------------------------

    def sign(self, claims: TicketClaims) -> MountTicket:
        kid, key = self._signing_key()
        body = _b64(msgspec.json.encode(claims))
        signature = key.sign(_signed_message(kid, body))
        return MountTicket(format=TICKET_FORMAT, kid=kid, claims=body, signature=_b64(signature))

    def verify(self, ticket: object) -> TicketClaims:
        """The claims of a genuine, unexpired ticket; ``TicketInvalid`` or ``TicketExpired`` else.
        Says nothing about single use, grants or workspaces: the service checks those."""
        try:
            t = msgspec.convert(ticket, MountTicket)
        except msgspec.ValidationError:
            raise TicketInvalid("not a mount ticket (expected format, kid, claims, signature)") from None
        if t.format != TICKET_FORMAT:
            raise TicketInvalid(f"unsupported ticket format {t.format[:40]!r} (expected {TICKET_FORMAT})")
        if len(t.claims) + len(t.signature) > MAX_TICKET_BYTES or not KID_RE.match(t.kid):
            raise TicketInvalid("malformed mount ticket")
        public = self._verifying_key(t.kid)
        if public is None:
            raise TicketInvalid("the ticket's signing key is unknown or retired")
        try:
            public.verify(_unb64(t.signature), _signed_message(t.kid, t.claims))
            claims = msgspec.json.decode(_unb64(t.claims), type=TicketClaims)
        except (InvalidSignature, binascii.Error, ValueError, msgspec.DecodeError):
            raise TicketInvalid("the ticket's signature does not match its contents") from None
        if claims.v != 1:
            raise TicketInvalid(f"unsupported ticket version {claims.v}")
        if claims.exp <= self.clock():
            raise TicketExpired(f"the mount ticket expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claims.exp))}; "
                                "ask the platform for a new one")
        return claims


def unverified_claims(ticket: object) -> TicketClaims:
    """The claims without checking the signature: for a runtime to find the orchestrator URL and
    show what it is about to mount. Never an authorization decision."""
    try:
        t = msgspec.convert(ticket, MountTicket)
        return msgspec.json.decode(_unb64(t.claims), type=TicketClaims)
    except (msgspec.ValidationError, msgspec.DecodeError, binascii.Error, ValueError):
        raise TicketInvalid("not a mount ticket (expected format, kid, claims, signature)") from None
