"""Local checks of workspace arguments, so a mistake fails before the orchestrator is asked.

A workspace *name* (``workspace create``) is the orchestrator's ``WORKSPACE_NAME_RE``; a
*reference* (every other command) is ``name``, ``handle/name`` or ``artifacts://handle/name``
(``client.parse_ref``). Both refuse with exit code 2, a usage error. The commands that take a
workspace (``workspace``, ``mount``, ``inspect``, ``connect``) share these.
"""

from __future__ import annotations

from artifacts_cli.config import CliError
from artifacts_orchestrator.client import parse_ref
from artifacts_orchestrator.errors import InvalidRequest
from artifacts_orchestrator.models import WORKSPACE_NAME_RE


def check_name(name: str) -> None:
    if not WORKSPACE_NAME_RE.match(name):
        raise CliError(f"invalid workspace name {name!r}",
                       "use 1-63 letters, digits, '-' or '_', starting with a letter or digit", exit_code=2)


def check_ref(ref: str) -> None:
    try:
        parse_ref(ref)
    except InvalidRequest as e:
        raise CliError(e.message, exit_code=2) from None
