"""Who a client speaks for: the one chain that finds the API key and the orchestrator's URL.

The SDK (``Artifacts()``), the ``artifacts`` command and everything built on them
(``open_workspace``, ``artifacts://`` URLs in fsspec) resolve the same way, so a machine where
``artifacts login`` (or ``artifacts up``) ran needs nothing more:

- API key: the explicit argument > ``TONBO_API_KEY`` > ``credentials.json``'s ``api_key``;
- orchestrator URL: the explicit argument > ``ARTIFACTS_ORCHESTRATOR_URL`` >
  ``credentials.json``'s ``orchestrator_url`` > ``DEFAULT_URL`` (where ``artifacts up`` serves).

``credentials.json`` lives in ``$XDG_CONFIG_HOME/tonbo/artifacts/`` (mode 0600; the CLI writes it).
The key and the URL are resolved separately, as the CLI always did: ``TONBO_API_KEY`` with no URL
in the environment talks to the saved orchestrator. Nothing here logs or repeats a key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from artifacts_core.config import xdg_dir

#: Where ``artifacts up`` serves the orchestrator when nothing else is configured.
DEFAULT_URL = "http://127.0.0.1:8720"
URL_ENV = "ARTIFACTS_ORCHESTRATOR_URL"
KEY_ENV = "TONBO_API_KEY"
CREDENTIALS = "credentials.json"


@dataclass(frozen=True)
class Login:
    """A resolved identity. ``source`` says where the key came from: ``"argument"``, ``"env"``,
    the credentials file's path, or ``""`` when there is no key at all."""

    api_key: str
    url: str
    source: str

    def __repr__(self) -> str:  # never the key
        return f"Login(url={self.url!r}, source={self.source!r})"


def credentials_path() -> Path:
    return xdg_dir("config") / CREDENTIALS


def read_saved() -> dict:
    """``credentials.json`` as a dict (``{}`` when there is none); ``ValueError`` naming the file
    when it cannot be read or is not JSON."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}; remove or fix it (`artifacts login` rewrites it)") from None
    return data if isinstance(data, dict) else {}


def resolve(api_key: str | None = None, base_url: str | None = None) -> Login:
    """The key and URL a client should use (either may be given explicitly)."""
    saved: dict | None = None

    def saved_field(name: str) -> str:
        nonlocal saved
        if saved is None:
            saved = read_saved()
        value = saved.get(name)
        return value if isinstance(value, str) else ""

    url = (base_url or os.environ.get(URL_ENV) or saved_field("orchestrator_url") or DEFAULT_URL).rstrip("/")
    if api_key is not None:
        return Login(api_key, url, "argument")
    if os.environ.get(KEY_ENV):
        return Login(os.environ[KEY_ENV], url, "env")
    key = saved_field("api_key")
    return Login(key, url, str(credentials_path()) if key else "")
