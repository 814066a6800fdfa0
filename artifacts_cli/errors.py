"""How a failure reads: the exit codes, the orchestrator codes' hints, one ``describe`` for all.

Every failure of a command ends in ``main.run``, which asks :func:`describe` for a
:class:`Failure` — exit code, machine-readable code, message, hint — and prints it: one
``Error:`` line and an optional ``Hint:`` line on stderr, plus, with ``--format json``, one JSON
object on stdout (``{"error": {"code", "message", "hint", "exit_code"}}``) so scripts that parse
stdout see the failure too. Python entry points (``connect.open_workspace``, ``artifacts://``
URLs) use the same description for their exceptions' text.

| code | meaning |
|---|---|
| 0 | success |
| 1 | error (the server failed, an unexpected exception: "run with --trace for details") |
| 2 | usage: bad flags or arguments, an invalid name, a refused confirmation |
| 3 | authentication: not logged in, key unknown or revoked, workspace of another account |
| 4 | not found: no such workspace (or session) |
| 5 | conflict: the workspace exists, or is not in a state that allows this |
| 6 | unavailable: the orchestrator (or the local stack) cannot be reached |
| 7 | storage credentials: none for a BYO bucket, or the bucket refused them |
| 8 | mount: the mountpoint is busy, missing, not empty, or not mounted |
| 130 | interrupted (Ctrl-C) |

Hints may name the workspace and mountpoint of the command that failed (``{name}``,
``{mountpoint}``): a hint that says ``artifacts mount <name> …`` when the name is known is one more
thing for the user to work out.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass

from artifacts_cli.config import CliError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5
EXIT_UNAVAILABLE, EXIT_STORAGE, EXIT_MOUNT, EXIT_INTERRUPTED = 6, 7, 8, 130

#: The code a failure without its own gets in JSON, by exit code.
EXIT_NAMES = {EXIT_ERROR: "error", EXIT_USAGE: "usage", EXIT_AUTH: "unauthorized", EXIT_NOT_FOUND: "not_found",
              EXIT_CONFLICT: "conflict", EXIT_UNAVAILABLE: "unavailable", EXIT_STORAGE: "storage_credentials",
              EXIT_MOUNT: "mount", EXIT_INTERRUPTED: "interrupted"}

#: Orchestrator error code -> (exit code, hint). Messages come from the server (SPEC.md §3.2).
API_ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (EXIT_AUTH, "run `artifacts login` again (or `artifacts up` on this machine), or check TONBO_API_KEY"),
    "forbidden": (EXIT_AUTH, "that workspace belongs to another account"),
    "workspace_not_found": (EXIT_NOT_FOUND, "check the name with `artifacts workspace list`"),
    "session_not_found": (EXIT_NOT_FOUND, ""),
    "key_not_found": (EXIT_NOT_FOUND, ""),
    "workspace_exists": (EXIT_CONFLICT, "pick another name, or mount it: `artifacts mount {name} {mountpoint}`"),
    "workspace_not_active": (EXIT_CONFLICT, "if it is pending_format, re-run `artifacts workspace create`; "
                                            "if deleting or deleted, create it again"),
    "workspace_not_completable": (EXIT_CONFLICT, "the workspace is being deleted; create it again"),
    "setting_key_missing": (EXIT_CONFLICT, "the format step did not finish; re-run `artifacts workspace create`"),
    "invalid_request": (EXIT_USAGE, ""),
    "metadata_acl_provisioning_failed": (EXIT_ERROR, "transient: retry in a few seconds"),
    "storage_provisioning_failed": (EXIT_ERROR, "the managed storage refused or is down: retry in a few seconds"),
    "orchestrator_unavailable": (EXIT_UNAVAILABLE, "start the local stack with `artifacts up`, or check "
                                                   "ARTIFACTS_ORCHESTRATOR_URL"),
}


class Interrupted(CliError):
    """Ctrl-C in a step that says what re-running does (``workspace create`` resumes)."""

    exit_code = EXIT_INTERRUPTED
    code = "interrupted"


@dataclass(frozen=True)
class Failure:
    exit_code: int
    code: str
    message: str
    hint: str = ""

    def as_json(self) -> dict:
        return {"error": asdict(self)}


def _fill(hint: str, args) -> str:
    """Put the command's own workspace and mountpoint into a hint's placeholders."""
    if "{" not in hint:
        return hint
    name = getattr(args, "name", None) or getattr(args, "workspace", None) or "<name>"
    mountpoint = getattr(args, "mountpoint", None) or "<mountpoint>"
    return hint.format(name=name, mountpoint=mountpoint)


def describe(e: BaseException, args=None, *, trace: bool = False) -> Failure:
    """The one place an exception becomes a message, a hint, a code and an exit code."""
    from artifacts_core.errors import ArtifactsError
    from artifacts_fuse.mount import MountError
    from artifacts_orchestrator.errors import ApiError

    if isinstance(e, CliError):
        code = getattr(e, "code", None) or EXIT_NAMES.get(e.exit_code, "error")
        return Failure(e.exit_code, code, e.message, e.hint)
    if isinstance(e, ApiError):
        exit_code, hint = API_ERRORS.get(e.code, (EXIT_ERROR, ""))
        text = e.message if e.code == "orchestrator_unavailable" else f"{e.code}: {e.message}"
        return Failure(exit_code, e.code, text, _fill(hint, args))
    if isinstance(e, MountError):
        return Failure(EXIT_MOUNT, e.code, str(e.strerror or e), e.hint or "")
    if isinstance(e, ArtifactsError):
        return Failure(EXIT_ERROR, e.code, e.strerror or str(e), e.hint or "")
    if isinstance(e, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, "interrupted", "interrupted")
    if trace:
        traceback.print_exception(e)
    return Failure(EXIT_ERROR, "internal", f"unexpected {type(e).__name__}: {e}", "run with --trace for details")
