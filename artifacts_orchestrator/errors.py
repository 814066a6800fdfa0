"""The orchestrator's error codes, shared by the server (JSON bodies) and the client (exceptions).

Every failed HTTP call answers ``{"code": "<machine-readable>", "message": "<human-readable>"}``
(SPEC.md §3.2), plus ``existing`` for ``workspace_exists``. The table below is the one place a code
is tied to its HTTP status; the server raises :class:`ApiError` subclasses and the client turns a
body back into the same class with :func:`error_from_body`, so ``except WorkspaceExists`` works on
both sides of the wire.

Messages never carry secrets (API keys, ACL passwords, S3 secret keys): they are built from ids,
names and statuses only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """An error the orchestrator reports to its caller. ``code`` and ``status`` come from the class."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, extra: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.extra = extra or {}
        if status is not None:  # a client seeing an unknown code keeps the server's status
            self.status = status  # type: ignore[misc]

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Unauthorized(ApiError):
    code, status = "unauthorized", 401


class Forbidden(ApiError):
    code, status = "forbidden", 403


class WorkspaceNotFound(ApiError):
    code, status = "workspace_not_found", 404


class SessionNotFound(ApiError):
    code, status = "session_not_found", 404


class KeyNotFound(ApiError):
    code, status = "key_not_found", 404


class RouteNotFound(ApiError):
    code, status = "not_found", 404


class MethodNotAllowed(ApiError):
    code, status = "method_not_allowed", 405


class WorkspaceExists(ApiError):
    """409; ``existing`` (also in the body) is the live workspace, so create can resume it."""

    code, status = "workspace_exists", 409

    @property
    def existing(self) -> dict[str, Any] | None:
        return self.extra.get("existing")


class AccountExists(ApiError):
    code, status = "account_exists", 409


class WorkspaceNotActive(ApiError):
    code, status = "workspace_not_active", 409


class WorkspaceNotCompletable(ApiError):
    code, status = "workspace_not_completable", 409


class SettingKeyMissing(ApiError):
    code, status = "setting_key_missing", 422


class InvalidRequest(ApiError):
    code, status = "invalid_request", 422


class MetadataAclProvisioningFailed(ApiError):
    code, status = "metadata_acl_provisioning_failed", 500


class StorageProvisioningFailed(ApiError):
    code, status = "storage_provisioning_failed", 500


class InternalError(ApiError):
    code, status = "internal", 500


# -- platforms (issue 8; docs/platform.md) --------------------------------------------------------


class TenantNotFound(ApiError):
    code, status = "tenant_not_found", 404


class TenantExists(ApiError):
    code, status = "tenant_exists", 409


class GrantNotFound(ApiError):
    code, status = "grant_not_found", 404


class GrantRevoked(ApiError):
    """The ticket's grant (or the runtime's access) was revoked or has expired."""

    code, status = "grant_revoked", 403


class TicketInvalid(ApiError):
    """Not a ticket, tampered with, or signed by an unknown or retired key."""

    code, status = "ticket_invalid", 401


class TicketExpired(ApiError):
    code, status = "ticket_expired", 401


class TicketUsed(ApiError):
    """A ticket is single-use (DESIGN.md §10): a remount needs a new one."""

    code, status = "ticket_used", 409


class RenewalRefused(ApiError):
    """A session renewal refused: the session was revoked, the API key that opened it was revoked,
    its grant was revoked or has expired, or its workspace is no longer active. The session ends
    at its current expiry (the mount then gets EACCES, as after a revocation)."""

    code, status = "renewal_refused", 403


# -- agents and their file API (docs/agents.md) -----------------------------------------------------


class AgentNotFound(ApiError):
    code, status = "agent_not_found", 404


class AgentTokenNotFound(ApiError):
    code, status = "agent_token_not_found", 404


class WorkspaceOff(ApiError):
    """The agent's workspace is toggled off (its data is kept): the file API has nothing to serve."""

    code, status = "workspace_off", 409


class StorageCheckFailed(ApiError):
    """A custom S3 location failed the check made before it is saved; ``problem`` says which
    (``unreachable``, ``region``, ``bucket``, ``credentials``, ``permissions``) and
    ``missing_permissions`` lists the S3 actions the key lacks."""

    code, status = "storage_check_failed", 422


class AgentBusy(ApiError):
    """Too many file operations of one agent are waiting: retry after a moment."""

    code, status = "agent_busy", 429


# -- history (docs/history.md) --------------------------------------------------------------------


class CheckpointNotFound(ApiError):
    code, status = "checkpoint_not_found", 404


class CheckpointExists(ApiError):
    code, status = "checkpoint_exists", 409


class OrchestratorUnavailable(ApiError):
    """Client side only: the orchestrator could not be reached (no HTTP answer at all)."""

    code, status = "orchestrator_unavailable", 503


ERRORS: dict[str, type[ApiError]] = {cls.code: cls for cls in (
    Unauthorized, Forbidden, WorkspaceNotFound, SessionNotFound, KeyNotFound, RouteNotFound,
    MethodNotAllowed, WorkspaceExists, AccountExists, WorkspaceNotActive, WorkspaceNotCompletable,
    SettingKeyMissing, InvalidRequest, MetadataAclProvisioningFailed, StorageProvisioningFailed,
    InternalError, OrchestratorUnavailable, TenantNotFound, TenantExists, GrantNotFound, GrantRevoked,
    TicketInvalid, TicketExpired, TicketUsed, RenewalRefused, AgentNotFound, AgentTokenNotFound, WorkspaceOff,
    StorageCheckFailed, AgentBusy, CheckpointNotFound, CheckpointExists)}


def error_from_body(status: int, body: Any) -> ApiError:
    """The exception for an error response (unknown codes keep their code text and status)."""
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return ApiError(f"HTTP {status} without an error body", status=status)
    code = body["code"]
    message = str(body.get("message") or code)
    extra = {k: v for k, v in body.items() if k not in ("code", "message")}
    cls = ERRORS.get(code)
    if cls is None:
        err = ApiError(message, extra=extra, status=status)
        err.code = code  # type: ignore[misc]
        return err
    return cls(message, extra=extra)
