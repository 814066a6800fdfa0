"""``artifacts://handle/workspace/path`` URLs for pandas, pyarrow, dask and every fsspec user.

::

    import fsspec
    with fsspec.open("artifacts://alice/demo/data.csv", "r") as f:   # or pd.read_csv(...)
        print(f.read())

``WorkspaceFileSystem`` is the class the ``artifacts`` fsspec protocol is registered to
(``pyproject.toml``). Given a volume (``fsspec.filesystem("artifacts", volume=vol)``) or the
arguments of ``open_volume`` it is exactly the core's ``ArtifactsFileSystem``: paths are inside
that one volume. Given neither — what ``fsspec.open(url)`` and pandas do — the first two parts of
a path name the workspace (``handle/workspace``, as everywhere in the CLI) and the rest the path
inside it; ``read_only=True`` (``storage_options={"read_only": True}`` in pandas) asks for
read-only sessions.

Each workspace is opened once per process with ``connect.open_workspace`` — a session from the
orchestrator, with the login ``artifacts login`` / ``artifacts up`` saved (or ``TONBO_API_KEY``)
— and shared by every filesystem instance of the process: fsspec makes an instance per
``fsspec.open``, and a volume per read would cost a session, a Redis connection and threads
each time. Sessions are revoked and volumes closed when the process exits (``close_all``, also
callable directly). With no login, an unreachable orchestrator or an unknown workspace the call
fails with ``connect.ConnectError``, whose text says what to run.
"""

from __future__ import annotations

import atexit
import contextlib
import threading

from artifacts_core.fsspec_fs import ArtifactsFileSystem

_lock = threading.Lock()
#: (orchestrator URL, handle, workspace, read_only) -> (the open volume, what closes it).
_open: dict[tuple[str, str, str, bool], tuple[object, contextlib.ExitStack]] = {}


def _volume(handle: str, name: str, read_only: bool):
    from artifacts_cli.config import resolve_any_login
    from artifacts_cli.connect import open_workspace

    key = (resolve_any_login().url, handle, name, read_only)
    with _lock:
        hit = _open.get(key)
        if hit is not None:
            return hit[0]
        stack = contextlib.ExitStack()
        vol = stack.enter_context(open_workspace(f"{handle}/{name}", read_only=read_only))
        if not _open:
            atexit.register(close_all)
        _open[key] = (vol, stack)
        return vol


def close_all() -> None:
    """Close every workspace ``artifacts://`` URLs opened in this process (revoking their
    sessions); the next URL opens them again. Runs at exit."""
    with _lock:
        opened = list(_open.values())
        _open.clear()
    for _, stack in reversed(opened):
        with contextlib.suppress(Exception):  # the session's TTL ends it otherwise
            stack.close()


class WorkspaceFileSystem(ArtifactsFileSystem):
    """``artifacts://handle/workspace/path`` with the CLI's login, or one volume (see above)."""

    def __init__(self, volume=None, *, read_only: bool = False, **open_args) -> None:
        self._by_url = volume is None and not open_args
        self.read_only = read_only
        if self._by_url:
            super(ArtifactsFileSystem, self).__init__()  # no volume of its own: one per workspace
            self.vol = None
            self._owned = False
        else:  # one volume: given, or opened from open_volume's arguments (read_only among them)
            super().__init__(volume, **({"read_only": True} if read_only and volume is None else {}), **open_args)

    def _locate(self, path) -> tuple:
        if not self._by_url:
            return super()._locate(path)
        parts = self._strip_protocol(path).strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise ValueError(f"artifacts:// URLs name a workspace and a path in it: "
                             f"artifacts://<handle>/<workspace>/<path>, not {path!r} "
                             "(`artifacts whoami` shows your handle)")
        handle, name, rest = parts[0], parts[1], parts[2:]
        return _volume(handle, name, self.read_only), "/" + "/".join(rest), f"/{handle}/{name}"
