"""The one exception hierarchy of Artifacts.

Every error raised by the core carries an ``errno`` and subclasses the matching built-in
(``FileNotFoundError``, ``PermissionError``, ...), so Python callers, ``shutil`` and fsspec behave
as they do with local files. Frontends map it exactly once: FUSE to a negative errno, the agent
API to ``{code, message, path, hint}``, the CLI to a message and an exit code, the orchestrator to
``{"code", "message"}`` JSON.

Build errors with :func:`error_for` (or the classes directly); never raise a bare ``OSError`` from
the core. The message names what went wrong and, where there is one, what to do.
"""

from __future__ import annotations

import errno as _errno
import os


class ArtifactsError(OSError):
    """Base of every error raised by the core. ``errno`` is always set."""

    default_errno = _errno.EIO

    def __init__(self, message: str = "", *, errno: int | None = None, path: str | None = None,
                 hint: str | None = None) -> None:
        code = self.default_errno if errno is None else errno
        super().__init__(code, message or os.strerror(code))
        self.path = path
        self.hint = hint
        if path is not None:
            self.filename = path

    @property
    def code(self) -> str:
        """The errno's symbolic name, e.g. ``"ENOENT"``."""
        return "EIO" if self.errno is None else _errno.errorcode.get(self.errno, "EIO")

    def __str__(self) -> str:
        text = self.strerror or ""
        if self.path is not None:
            text = f"{text}: {self.path!r}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class NotFound(ArtifactsError, FileNotFoundError):
    default_errno = _errno.ENOENT


class Exists(ArtifactsError, FileExistsError):
    default_errno = _errno.EEXIST


class NotADirectory(ArtifactsError, NotADirectoryError):
    default_errno = _errno.ENOTDIR


class IsADirectory(ArtifactsError, IsADirectoryError):
    default_errno = _errno.EISDIR


class PermissionDenied(ArtifactsError, PermissionError):
    """EACCES or EPERM: the caller may not do this (including a revoked session)."""

    default_errno = _errno.EACCES


class NotEmpty(ArtifactsError):
    default_errno = _errno.ENOTEMPTY


class InvalidArgument(ArtifactsError):
    default_errno = _errno.EINVAL


class NameTooLong(ArtifactsError):
    default_errno = _errno.ENAMETOOLONG


class NoSpace(ArtifactsError):
    """ENOSPC (capacity, inodes, Redis out of memory) or EDQUOT (a quota)."""

    default_errno = _errno.ENOSPC


class IntegrityError(ArtifactsError):
    """Stored bytes failed verification (checksum, length, framing). Never returned as data."""

    default_errno = _errno.EIO


class StorageError(ArtifactsError):
    """The object store failed after retries; ``__cause__`` keeps the last underlying error."""

    default_errno = _errno.EIO


class MissingObject(StorageError):
    """An object the metadata refers to is not in the store (EIO, never ENOENT: the file exists)."""


class MetaUnavailable(ArtifactsError):
    """Redis could not be reached or timed out; operations resume when it returns."""

    default_errno = _errno.EIO


class ReadOnly(ArtifactsError):
    default_errno = _errno.EROFS


class Busy(ArtifactsError):
    default_errno = _errno.EBUSY


class TimedOut(ArtifactsError):
    default_errno = _errno.ETIMEDOUT


class VersionMismatch(ArtifactsError):
    """The file is not at the version the caller expected (it changed, or it is gone)."""

    default_errno = _errno.ESTALE


class EntryIsSymlink(ArtifactsError):
    """A by-name data operation met a symbolic link: resolve it and repeat on the target."""

    default_errno = _errno.ELOOP


#: The ``expect`` value of the by-name data operations meaning "the name must not exist yet"
#: (exclusive create); any other expectation is a version ``(ino, gen)``. A mismatch raises
#: ``VersionMismatch``.
ABSENT = "-"


class ConfigError(ArtifactsError):
    """Bad settings or a misconfigured server (e.g. an evicting Redis); the message says what to fix."""

    default_errno = _errno.EINVAL


_BY_ERRNO: dict[int, type[ArtifactsError]] = {
    _errno.ENOENT: NotFound,
    _errno.EEXIST: Exists,
    _errno.ENOTDIR: NotADirectory,
    _errno.EISDIR: IsADirectory,
    _errno.EACCES: PermissionDenied,
    _errno.EPERM: PermissionDenied,
    _errno.ENOTEMPTY: NotEmpty,
    _errno.EINVAL: InvalidArgument,
    _errno.ENAMETOOLONG: NameTooLong,
    _errno.ENOSPC: NoSpace,
    _errno.EDQUOT: NoSpace,
    _errno.EROFS: ReadOnly,
    _errno.EBUSY: Busy,
    _errno.ETIMEDOUT: TimedOut,
}


def error_for(code: int | str, message: str = "", *, path: str | None = None,
              hint: str | None = None) -> ArtifactsError:
    """The right exception instance for an errno number or name (``"ENOENT"``)."""
    if isinstance(code, str):
        number = getattr(_errno, code, None)
        if not isinstance(number, int):
            raise ValueError(f"unknown errno name {code!r}")
        code = number
    cls = _BY_ERRNO.get(code, ArtifactsError)
    return cls(message, errno=code, path=path, hint=hint)


def errno_of(exc: BaseException) -> int:
    """The errno a frontend should report for any exception (EIO when it has none)."""
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    return _errno.EIO
