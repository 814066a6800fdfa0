"""``storage set|show|clear``: the local BYO credential cache (SPEC.md §2.7, §6.3; seed 002).

The cache is one JSON file, ``$XDG_CONFIG_HOME/tonbo/artifacts/byo-credentials`` (mode 0600),
with four fields: ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, REGION. It is client-side only:
nothing here talks to the orchestrator, which never sees BYO credentials.

- ``set`` with no flags saves the current ``ARTIFACTS_S3_*`` variables; flags update only the
  named fields (rotation: ``--access-key-id … --secret-access-key …``), env-free if need be.
  Flags win over the environment for the fields they name; other fields keep their cached value
  unless the environment sets them.
- ``show`` prints the path and the values masked first4***last4 (``(unset)`` when missing),
  and says which fields the current shell's environment overrides.
- ``clear`` deletes the file.

Managed workspaces never use this cache: each mount gets its own server-issued keys.
"""

from __future__ import annotations

import os

from artifacts_cli.config import (
    BYO_FIELDS,
    BYO_SECRET_FIELDS,
    CliError,
    byo_path,
    env_storage_fields,
    mask,
    read_byo_cache,
    write_byo_cache,
)


def cmd_set(args) -> int:
    flags = {"ACCESS_KEY_ID": args.access_key_id, "SECRET_ACCESS_KEY": args.secret_access_key,
             "SESSION_TOKEN": args.session_token, "REGION": args.region}
    flags = {k: v for k, v in flags.items() if v}
    env = env_storage_fields()
    if not flags and not env:
        raise CliError("nothing to save: no flags and no ARTIFACTS_S3_* variables set",
                       "export ARTIFACTS_S3_ACCESS_KEY_ID / ARTIFACTS_S3_SECRET_ACCESS_KEY, or pass "
                       "--access-key-id and --secret-access-key", exit_code=2)
    fields = {**read_byo_cache(), **(env if not flags else {}), **flags}
    existed = byo_path().exists()
    path = write_byo_cache(fields)
    changed = sorted(flags or env)
    if not existed:
        args.out.info(f"Wrote {path}")
    args.out.result(f"Saved {', '.join(changed)} to {path} (mode 0600).",
                    data={"path": str(path), "updated": changed})
    return 0


def cmd_show(args) -> int:
    path = byo_path()
    cached = read_byo_cache()
    env = env_storage_fields()
    shown = {k: (mask(cached.get(k)) if k in BYO_SECRET_FIELDS else cached.get(k) or "(unset)")
             for k in BYO_FIELDS}
    lines = [f"Path: {path}" + ("" if path.exists() else " (not created)")]
    lines += [f"{k}: {v}" for k, v in shown.items()]
    overridden = [k for k in BYO_FIELDS if k in env]
    if overridden:
        lines.append("Overridden in this shell by: " + ", ".join(f"ARTIFACTS_S3_{k}" for k in overridden))
    mode = f"{os.stat(path).st_mode & 0o777:o}" if path.exists() else None
    args.out.result("\n".join(lines), data={"path": str(path), "exists": path.exists(), "mode": mode,
                                            "fields": shown, "env_overrides": overridden})
    return 0


def cmd_clear(args) -> int:
    path = byo_path()
    try:
        path.unlink()
        removed = True
    except FileNotFoundError:
        removed = False
    text = (f"Removed {path}. Future BYO mounts need ARTIFACTS_S3_* in the environment." if removed
            else f"No cache at {path}.")
    args.out.result(text, data={"path": str(path), "removed": removed})
    return 0


def add_parser(sub) -> None:
    st = sub.add_parser("storage", help="manage the local BYO credential cache")
    st.set_defaults(parser=st)
    ssub = st.add_subparsers(dest="storage_command", metavar="<subcommand>")
    p = ssub.add_parser("set", help="save ARTIFACTS_S3_* (or the given fields) to the cache")
    p.add_argument("--access-key-id", help="the bucket's access key id (ACCESS_KEY_ID)")
    p.add_argument("--secret-access-key", help="its secret (SECRET_ACCESS_KEY); visible in ps: prefer the "
                   "environment variable and no flags")
    p.add_argument("--session-token", help="a temporary credential's session token (SESSION_TOKEN)")
    p.add_argument("--region", help="the bucket's region (REGION), e.g. us-west-2 or auto")
    p.set_defaults(func=cmd_set)
    p = ssub.add_parser("show", help="print the cache path and masked values")
    p.set_defaults(func=cmd_show)
    p = ssub.add_parser("clear", help="delete the cache")
    p.set_defaults(func=cmd_clear)
