"""The agent's own history: ``checkpoint``, ``restore``, ``diff`` (docs/history.md).

An agent saves its work before a risky step and rolls back what it did: ``checkpoint`` is
constant time whatever the workspace's size, ``restore`` is atomic and takes a safety
checkpoint first (so a restore can itself be undone), ``diff`` lists what changed since a
checkpoint (optionally with unified diffs of text files). A read-only session may diff but not
checkpoint or restore (EROFS).
"""

from __future__ import annotations

from typing import Any

import msgspec

from artifacts_agentfs.base import AgentBase

#: Changes listed per diff call: an agent's context is not the place for a million paths.
DIFF_MAX = 1000


class HistoryOps(AgentBase):
    """The history tools; state (``vol``) is ``AgentBase``'s."""

    def checkpoint(self, name: str | None = None, *, keep: str | None = None) -> dict[str, Any]:
        c = self.vol.checkpoints.create(name or None, keep=keep)
        return {"name": c.name, "createdAt": c.created, "epoch": c.epoch}

    def restore(self, name: str) -> dict[str, Any]:
        r = self.vol.checkpoints.restore(name)
        return {"restored": r["restored"], "safety_checkpoint": r["safety"]}

    def diff(self, name: str, *, to: str | None = None, text: bool = False) -> dict[str, Any]:
        changes = self.vol.checkpoints.diff(name, to or None, text=text)
        rows = [{k: v for k, v in msgspec.to_builtins(c).items() if v is not None} for c in changes[:DIFF_MAX]]
        return {"from": name, "to": to or "now", "changes": rows, "truncated": len(changes) > DIFF_MAX}
