"""Errors of the agent API: Python exceptions of the built-in types, and structured results.

Every failure an agent can cause is an ``OSError`` subclass from ``artifacts_core.errors`` (so
``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``, ... for Python callers) or one
of the agent-specific classes below. ``to_error(exc)`` turns any of them into the structured
result tool callers get::

    {"code": "ENOENT", "message": "no such file", "path": "notes/a.md",
     "hint": "Check the path with readdir or glob; paths are relative to the workspace root."}

Codes: the POSIX names (ENOENT, EEXIST, EISDIR, ENOTDIR, ENOTEMPTY, EACCES, ENAMETOOLONG, ENOSPC,
EINVAL, EFBIG, ELOOP, EROFS, EIO) plus ECONFLICT (a version precondition failed), EAMBIGUOUS (an
edit's text matched more than once), ENOMATCH (an edit's text matched nowhere) and EBINARY (text
asked of binary content). The hint is one line written for a model: what to do next.
"""

from __future__ import annotations

import errno as _errno

from artifacts_core.errors import ArtifactsError, InvalidArgument, PermissionDenied, VersionMismatch


class _Coded:
    """``.code`` is the agent code (ArtifactsError's is the errno name)."""

    agent_code = "EIO"

    @property
    def code(self) -> str:
        return self.agent_code


class ConflictError(_Coded, ArtifactsError):
    """ECONFLICT: the file changed since the version token the caller passed (errno ESTALE)."""

    default_errno = _errno.ESTALE
    agent_code = "ECONFLICT"


class AmbiguousMatchError(_Coded, ArtifactsError, ValueError):
    """EAMBIGUOUS: ``old_text`` occurs more than once and ``replace_all`` was not asked."""

    default_errno = _errno.EINVAL
    agent_code = "EAMBIGUOUS"


class NoMatchError(_Coded, ArtifactsError, ValueError):
    """ENOMATCH: ``old_text`` occurs nowhere in the file."""

    default_errno = _errno.EINVAL
    agent_code = "ENOMATCH"


class BinaryContentError(_Coded, ArtifactsError, ValueError):
    """EBINARY: the content is not UTF-8 text (read it with ``encoding="base64"``)."""

    default_errno = _errno.EILSEQ
    agent_code = "EBINARY"


class TooLargeError(ArtifactsError):
    """EFBIG: content over the API's size bound (``Limits``)."""

    default_errno = _errno.EFBIG


class SandboxError(PermissionDenied):
    """EACCES: the path would leave the workspace, or uses a form the agent API refuses."""


#: One line per code, for a model: what to try next.
HINTS: dict[str, str] = {
    "ENOENT": "Check the path with readdir or glob; paths are relative to the workspace root.",
    "EEXIST": "The destination exists: pick another path, or pass overwrite=true.",
    "EISDIR": "The path is a directory: use readdir to list it or rmdir to delete it.",
    "ENOTDIR": "A component of the path is a file, not a directory: check the path.",
    "ENOTEMPTY": "The directory is not empty: use rmdir, which deletes recursively.",
    "EACCES": "Use a plain relative path inside the workspace (no '..' above the root, "
              "backslashes, encoded or look-alike characters).",
    "EPERM": "This operation is not allowed on this path.",
    "ENAMETOOLONG": "Use shorter names: at most 255 bytes per name and 1024 bytes per path.",
    "ENOSPC": "The workspace is full: delete files you no longer need.",
    "EINVAL": "Check the arguments against the tool's schema.",
    "EFBIG": "Too large for one call: read with offset/length or line ranges, or write in parts "
             "with appendFile.",
    "ELOOP": "Too many symbolic links: the path loops.",
    "EROFS": "The workspace is read-only here.",
    "ECONFLICT": "The file changed since you read it: read it again and redo the change against "
                 "the new version.",
    "EAMBIGUOUS": "old_text matches several places: include more surrounding lines to make it "
                  "unique, or pass replace_all=true.",
    "ENOMATCH": "old_text was not found: read the file again and copy the exact text, "
                "including whitespace.",
    "EBINARY": "The file is binary: read it with encoding='base64'.",
    "EIO": "A storage error: retry the call once; if it fails again, report it.",
}


def code_of(exc: BaseException) -> str:
    """The agent-facing code of any exception."""
    code = getattr(exc, "agent_code", None)
    if code:
        return code
    if isinstance(exc, VersionMismatch):
        return "ECONFLICT"
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return _errno.errorcode.get(exc.errno, "EIO")
    if isinstance(exc, (ValueError, TypeError)):
        return "EINVAL"
    return "EIO"


def to_error(exc: BaseException, path: str | None = None) -> dict:
    """``{code, message, path, hint}`` for an exception (never raises)."""
    code = code_of(exc)
    if isinstance(exc, OSError):
        message = exc.strerror or str(exc)
        where = getattr(exc, "path", None) or exc.filename
    else:
        message, where = str(exc), None
    hint = getattr(exc, "hint", None) or HINTS.get(code, HINTS["EIO"])
    return {"code": code, "message": message or code, "path": path if path is not None else where,
            "hint": hint}


def conflict(path: str, current: str | None) -> ConflictError:
    now = f"now {current}" if current else "the file no longer exists"
    return ConflictError(f"version mismatch: {now}", path=path, hint=HINTS["ECONFLICT"])


def invalid(message: str, path: str | None = None, hint: str | None = None) -> InvalidArgument:
    return InvalidArgument(message, path=path, hint=hint or HINTS["EINVAL"])
