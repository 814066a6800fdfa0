"""``login``, ``logout``, ``whoami``: who the CLI speaks for (SPEC.md §2.3, §4.1).

An account is an API key (``tbo_`` + 32 characters) on an orchestrator. ``login`` checks the key
with ``GET /whoami`` before saving it, with the orchestrator's URL and the account's handle, to
``credentials.json`` (0600). The key is read from ``--api-key``, from ``TONBO_API_KEY``, or from
standard input (piped, or typed at a hidden prompt): prefer stdin, since a key in argv is visible
to every local user through ``ps``. ``TONBO_API_KEY``, when set, is used by every command without
any login, and wins over the saved file.

There is no browser on these hosts and no User Center: the OAuth flow of the product (browser or
``--manual-code``) is out of scope here; ``--manual-code`` says so and exits 2. ``artifacts up``
creates a local account and saves its key, so a fresh machine needs no login at all.

``logout`` deletes ``credentials.json`` only; the BYO credential cache stays (``storage clear``).
"""

from __future__ import annotations

import getpass
import os
import sys

from artifacts_cli.config import (
    CREDENTIALS,
    CliError,
    config_path,
    orchestrator_url,
    resolve_login,
    save_login,
)
from artifacts_orchestrator.client import KEY_ENV, Artifacts
from artifacts_orchestrator.models import API_KEY_RE


def client() -> Artifacts:
    """The orchestrator client for the current login (``NotLoggedIn`` if there is none)."""
    login = resolve_login()
    return Artifacts(login.api_key, base_url=login.url)


def _read_key(args) -> str:
    if args.api_key and args.api_key != "-":
        return args.api_key.strip()
    if args.api_key != "-" and os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].strip()
    if sys.stdin.isatty():
        return getpass.getpass("API key (tbo_…): ").strip()
    return sys.stdin.readline().strip()


def cmd_login(args) -> int:
    out = args.out
    if args.manual_code:
        raise CliError("browser and --manual-code login (OAuth) are not available with this orchestrator",
                       "log in with an API key: `artifacts login --api-key -` (key on stdin), or set "
                       "TONBO_API_KEY; `artifacts up` creates one for this machine", exit_code=2)
    key = _read_key(args)
    if not key:
        raise CliError("no API key given (nothing on standard input or after --api-key)",
                       "pipe it in: `artifacts login --api-key - < key-file`, type it at the prompt of "
                       "`artifacts login` in a terminal, or set TONBO_API_KEY; `artifacts up` makes a "
                       "local account with its own key", exit_code=2, code="no_api_key")
    if not API_KEY_RE.match(key):
        raise CliError("that is not an API key (expected tbo_ followed by 32 letters and digits)",
                       "copy the key printed when it was created", exit_code=2)
    url = (args.url or orchestrator_url()).rstrip("/")
    me = Artifacts(key, base_url=url).whoami()
    path = save_login(key, url, me.account.handle, announce=lambda p: out.info(f"Wrote {p}"))
    out.info(f"Credentials saved to {path} (mode 0600).")
    out.result(f"Logged in as {me.account.handle} at {url}.",
               data={"handle": me.account.handle, "orchestrator_url": url, "credentials": str(path)})
    return 0


def cmd_logout(args) -> int:
    path = config_path(CREDENTIALS)
    try:
        path.unlink()
    except FileNotFoundError:
        args.out.result("Not logged in (no saved credentials).", data={"logged_out": False})
        return 0
    args.out.result(f"Removed {path}. The BYO credential cache is kept (`artifacts storage clear` removes it).",
                    data={"logged_out": True, "removed": str(path)})
    if os.environ.get(KEY_ENV):
        args.out.warn(f"{KEY_ENV} is still set in this shell; commands keep using it")
    return 0


def cmd_whoami(args) -> int:
    login = resolve_login()
    me = Artifacts(login.api_key, base_url=login.url).whoami()
    via = KEY_ENV if login.source == "env" else login.source
    key = me.key
    lines = [f"Handle:       {me.account.handle}",
             f"Account id:   {me.account.id}",
             f"Orchestrator: {login.url}",
             f"API key:      {key.hint} ({key.name or 'unnamed'}), from {via}" if key else "API key: (none)"]
    args.out.result("\n".join(lines), data={"account": me.account, "key": key, "orchestrator_url": login.url,
                                            "credentials_source": via})
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("login", help="authenticate with an API key",
                       description="Save an API key for this machine (checked with the orchestrator first).")
    p.add_argument("--api-key", metavar="KEY", help="the key, or - to read it from stdin (default: "
                   "TONBO_API_KEY, else stdin)")
    p.add_argument("--url", help="orchestrator URL (default: ARTIFACTS_ORCHESTRATOR_URL, the saved one, "
                   "or the local stack's)")
    p.add_argument("--manual-code", action="store_true", help="OAuth with a one-time code (not available here)")
    p.set_defaults(func=cmd_login)
    p = sub.add_parser("logout", help="forget the saved credentials")
    p.set_defaults(func=cmd_logout)
    p = sub.add_parser("whoami", help="print the current identity")
    p.set_defaults(func=cmd_whoami)
