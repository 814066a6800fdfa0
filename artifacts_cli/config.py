"""Local files of the CLI: where they live, how secrets are written, and the credential chains.

Directories (SPEC.md §6.4, DESIGN.md §8) come from ``artifacts_core.config.xdg_dir``:
``config`` (``credentials.json``, ``byo-credentials``), ``cache`` (mount logs, block cache) and
``state`` (the local stack, mount-session records). Every file holding a secret is written by
:func:`write_private`: created 0600 inside a 0700 directory, written to a temporary file and
renamed, so a reader never sees half a file and no other user ever sees the secret. The first
time the CLI creates a file, it says where (``Wrote /abs/path``) so a user learns the resolved
XDG location.

Two chains resolve credentials:

- the API key: ``TONBO_API_KEY`` > ``credentials.json`` > error (``NotLoggedIn``); the
  orchestrator URL: ``ARTIFACTS_ORCHESTRATOR_URL`` > ``credentials.json`` > the local default —
  ``artifacts_orchestrator.login``, the same chain ``Artifacts()`` uses;
- BYO S3 credentials (SPEC.md §6.3): each field separately, ``ARTIFACTS_S3_<FIELD>`` first, the
  cache second; a missing access key or secret is an error (``MissingStorageCredentials``).

Masking (``mask``) shows the first 4 and last 4 characters of a secret and nothing of one too
short to hide anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

from artifacts_core.config import xdg_dir
from artifacts_orchestrator import login as login_chain
from artifacts_orchestrator.login import CREDENTIALS, Login

BYO_CREDENTIALS = "byo-credentials"
#: The cache's four fields (SPEC.md §2.7), in the order ``storage show`` prints them.
BYO_FIELDS = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "REGION")
BYO_SECRET_FIELDS = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")
ENV_PREFIX = "ARTIFACTS_S3_"
#: Below this length first4***last4 would reveal most of the value: mask it whole.
MIN_MASKABLE = 12


class CliError(Exception):
    """A user-facing failure: one line of message, an optional hint, an exit code, and a
    machine-readable ``code`` for ``--format json`` (by default named after the exit code)."""

    exit_code = 1
    code = ""

    def __init__(self, message: str, hint: str = "", *, exit_code: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code
        if code:
            self.code = code

    def __str__(self) -> str:  # Python callers (open_workspace, artifacts:// URLs) see the hint too
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class NotLoggedIn(CliError):
    exit_code = 3
    code = "not_logged_in"


class MissingStorageCredentials(CliError):
    exit_code = 7
    code = "storage_credentials_missing"


def config_path(name: str) -> Path:
    return xdg_dir("config") / name


def state_path(*parts: str) -> Path:
    return xdg_dir("state").joinpath(*parts)


def write_private(path: Path, text: str, *, announce=None) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (parent 0700). ``announce(path)`` is
    called when the file did not exist before (the CLI prints the resolved path then)."""
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if not existed and announce is not None:
        announce(path)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}", f"remove or fix {path}") from None
    return data if isinstance(data, dict) else {}


def mask(value: str | None) -> str:
    if not value:
        return "(unset)"
    if len(value) < MIN_MASKABLE:
        return "***"
    return f"{value[:4]}***{value[-4:]}"


# -- the account: API key and orchestrator URL ----------------------------------------------------

def orchestrator_url() -> str:
    return resolve_any_login().url


def resolve_any_login() -> Login:
    """The chain of ``login.resolve`` (shared with ``Artifacts()``); the key may be empty."""
    try:
        return login_chain.resolve()
    except ValueError as e:
        raise CliError(str(e), f"remove or fix {config_path(CREDENTIALS)}") from None


def resolve_login() -> Login:
    found = resolve_any_login()
    if not found.api_key:
        raise NotLoggedIn("not logged in",
                          "run `artifacts login` (or `artifacts up` for the local stack), or set TONBO_API_KEY")
    return found


def save_login(api_key: str, url: str, handle: str, *, announce=None) -> Path:
    path = config_path(CREDENTIALS)
    write_private(path, json.dumps({"api_key": api_key, "orchestrator_url": url, "handle": handle},
                                   indent=2) + "\n", announce=announce)
    return path


# -- BYO storage credentials ---------------------------------------------------------------------

def byo_path() -> Path:
    return config_path(BYO_CREDENTIALS)


def read_byo_cache() -> dict[str, str]:
    data = read_json(byo_path())
    return {k: str(data[k]) for k in BYO_FIELDS if data.get(k)}


def write_byo_cache(fields: dict[str, str]) -> Path:
    path = byo_path()
    clean = {k: fields[k] for k in BYO_FIELDS if fields.get(k)}
    write_private(path, json.dumps(clean, indent=2) + "\n")
    return path


def env_storage_fields(env=None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {k: env[ENV_PREFIX + k] for k in BYO_FIELDS if env.get(ENV_PREFIX + k)}


def resolve_byo_credentials(env=None) -> dict[str, str]:
    """Env first, field by field, then the cache; both keys or ``MissingStorageCredentials``."""
    merged = {**read_byo_cache(), **env_storage_fields(env)}
    if not merged.get("ACCESS_KEY_ID") or not merged.get("SECRET_ACCESS_KEY"):
        raise MissingStorageCredentials(
            "no S3 credentials for the BYO bucket",
            "export ARTIFACTS_S3_ACCESS_KEY_ID and ARTIFACTS_S3_SECRET_ACCESS_KEY, "
            "or save them with `artifacts storage set`")
    return merged


def as_env(fields: dict[str, str]) -> dict[str, str]:
    """Credential fields as the ``ARTIFACTS_S3_*`` variables a volume reads (secrets only)."""
    return {ENV_PREFIX + k: v for k, v in fields.items() if k in BYO_SECRET_FIELDS and v}


_env_lock = threading.Lock()


@contextlib.contextmanager
def scoped_env(values: dict[str, str]):
    """``values`` (``ARTIFACTS_S3_*``) set in this process's environment for the body only: a
    volume's S3 client reads them once, when it is made, so one workspace's keys never linger for
    the next. One body at a time (the environment is process-wide)."""
    with _env_lock:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
