"""Secrets the orchestrator must hold, encrypted at rest: custom S3 keys of agents' workspaces.

Unlike the CLI's BYO mode (docs/cli.md: the keys stay on the hosts that mount), an agent's custom
S3 keys are held by the orchestrator, because it runs the agent's file operations itself
(docs/agents.md). They are kept only as sealed blobs in the database:

- ``SecretBox(path)``: one 256-bit key in a file of the orchestrator (mode 0600, in a directory
  it makes 0700; a key file readable by group or others is refused, as the config file is). A
  new key is written to a private temporary file first and published with ``link()``, which
  fails if the name exists: several orchestrator processes starting together on a shared key
  file all end up with the one key that won, and none reads a half-written file; AES-256-GCM with a fresh 96-bit nonce per seal, so the same secret sealed
  twice gives two different blobs;
- the blob is bound to what it belongs to (``context``, e.g. the agent id and workspace id) as
  GCM's associated data: a blob copied onto another row does not open there;
- the blob format: version byte ``1`` + nonce (12 bytes) + ciphertext with its 16-byte tag.

Losing the key file makes every sealed secret unreadable (the agents' custom storage must be
entered again); the database alone reveals nothing. Secrets never leave this module in logs or
errors: a blob that fails to open raises ``SealedSecretError`` naming the context only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Blob format version (first byte), so the scheme can change without guessing.
VERSION = 1
#: AES-GCM's standard nonce length; random nonces are safe for far more seals than an
#: orchestrator makes (2^32 under one key).
NONCE_BYTES = 12
KEY_BYTES = 32


class SealedSecretError(Exception):
    """A sealed blob could not be opened (another key file, another row, or damaged)."""


class SecretBox:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._aead = AESGCM(self._load_or_create())

    def _load_or_create(self) -> bytes:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            self._publish_new_key()
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{self.path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                                  f"run: chmod 600 {self.path}")
        key = self.path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"{self.path} is not a {KEY_BYTES}-byte key file")
        return key

    def _publish_new_key(self) -> None:
        """A fresh key at ``path`` unless another process published one first (module note)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(AESGCM.generate_key(bit_length=KEY_BYTES * 8))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: its key is the one
                os.link(tmp, self.path)
        finally:
            tmp.unlink()

    def seal(self, secret: bytes, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return bytes([VERSION]) + nonce + self._aead.encrypt(nonce, secret, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[0] != VERSION:
            raise SealedSecretError(f"the sealed secret of {context} is damaged")
        nonce, body = blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag:
            raise SealedSecretError(f"the sealed secret of {context} does not open with {self.path} "
                                    "(another key file, or a damaged row): enter the credentials again") from None
