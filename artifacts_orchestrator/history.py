"""A workspace's history over HTTP: checkpoints list, create, show, diff, restore, delete
(docs/history.md, docs/orchestrator.md).

The orchestrator is never on the data path: it holds no file data and reads no block. Each call
opens a short-lived metadata engine on the workspace's prefix with the orchestrator's admin
connection and runs the same Redis functions a client runs (``af_ck_*``): metadata only, one
function call for create and for restore, bounded batches for delete. So

- ``create`` takes the cut as the Redis function orders it against every host: what clients have
  committed (closed or fsynced) is in it, unflushed writes of a running mount are not — as
  ``artifacts checkpoint create`` from another machine;
- ``diff`` names paths (added, removed, modified, renamed); text diffs need file contents, which
  only a data-path client reads (the CLI's ``checkpoint diff --text``, the SDK's volume);
- ``restore`` tells every mount to drop its caches, as any restore does.

Core errors become API errors here: no such checkpoint 404 ``checkpoint_not_found``, a taken
name 409 ``checkpoint_exists``, a bad name or duration 422 ``invalid_request``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgspec

from artifacts_core.errors import ArtifactsError, Exists, InvalidArgument, NotFound
from artifacts_core.history import Checkpoints
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_orchestrator import models as m
from artifacts_orchestrator.errors import (
    CheckpointExists,
    CheckpointNotFound,
    InvalidRequest,
    MetadataAclProvisioningFailed,
)

T = TypeVar("T")


def checkpoint_view(c: Any) -> m.CheckpointView:
    return m.CheckpointView(name=c.name, epoch=c.epoch, created=c.created, keep=c.keep, kind=c.kind,
                            origin=dict(c.origin), changed_keys=c.preserved)


class WorkspaceHistory:
    """History calls of one orchestrator, on its admin Redis connection."""

    def __init__(self, admin_url: str, *, open_engine: Callable[[str, str], RedisMetaEngine] | None = None) -> None:
        self.admin_url = admin_url
        self._open = open_engine or (lambda url, prefix: RedisMetaEngine(url, prefix, pool_size=1))

    @contextlib.contextmanager
    def _checkpoints(self, prefix: str, who: str) -> Iterator[Checkpoints]:
        meta = self._open(self.admin_url, prefix)
        try:
            try:
                meta.load(require_aof=False)  # the workspace's own clients checked the server
            except ArtifactsError as e:
                raise MetadataAclProvisioningFailed(f"cannot read the workspace's metadata: {e.strerror}") from e
            yield Checkpoints(meta, None, origin={"via": "orchestrator", "account": who})
        finally:
            meta.close()

    @staticmethod
    def _mapped(fn: Callable[[], T], name: str = "") -> T:
        try:
            return fn()
        except NotFound as e:
            raise CheckpointNotFound(e.strerror or f"no checkpoint named {name!r}") from None
        except Exists as e:
            raise CheckpointExists(e.strerror or f"a checkpoint named {name!r} exists") from None
        except InvalidArgument as e:
            hint = f" ({e.hint})" if e.hint else ""
            raise InvalidRequest(f"{e.strerror}{hint}") from None

    def list(self, prefix: str, who: str) -> m.CheckpointList:
        with self._checkpoints(prefix, who) as cps:
            return m.CheckpointList(checkpoints=[checkpoint_view(c) for c in cps.list()])

    def create(self, prefix: str, who: str, req: m.CreateCheckpointRequest) -> m.CheckpointView:
        with self._checkpoints(prefix, who) as cps:
            return checkpoint_view(self._mapped(lambda: cps.create(req.name or None, keep=req.keep), req.name or ""))

    def show(self, prefix: str, who: str, name: str) -> m.CheckpointDetail:
        with self._checkpoints(prefix, who) as cps:
            info = self._mapped(lambda: cps.show(name), name)
            return m.CheckpointDetail(checkpoint=checkpoint_view(cps.get(name)), changes_since=info["changes_since"],
                                      changed_keys=info["changed_keys"], pinned_bytes=info["pinned_bytes"])

    def diff(self, prefix: str, who: str, name: str, to: str | None) -> m.ChangeList:
        with self._checkpoints(prefix, who) as cps:
            changes = self._mapped(lambda: cps.diff(name, to or None), to or name)
            return m.ChangeList(changes=[m.ChangeView(**msgspec.to_builtins(c)) for c in changes])

    def restore(self, prefix: str, who: str, name: str, req: m.RestoreCheckpointRequest) -> m.RestoreResult:
        with self._checkpoints(prefix, who) as cps:
            r = self._mapped(lambda: cps.restore(name, safety=req.safety or None), name)
            return m.RestoreResult(restored=r["restored"], safety=r["safety"], keys=r["keys"],
                                   removed_inodes=r["removed_inodes"])

    def delete(self, prefix: str, who: str, name: str) -> m.DeletedCheckpoint:
        with self._checkpoints(prefix, who) as cps:
            self._mapped(lambda: cps.delete(name), name)
            return m.DeletedCheckpoint(deleted=name)
