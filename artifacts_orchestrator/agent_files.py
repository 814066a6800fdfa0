"""The agents' file server: each agent's workspace opened lazily, served on its own bounded pool.

Here the orchestrator is on the read/write path, unlike for mounts (docs/agents.md, "Two roles"):
an agent calling ``readFile`` over HTTP has no volume of its own, so the orchestrator opens the
agent's workspace and runs the operation with the agent API (``artifacts_agentfs``), whose checks
(the sandbox rules, size limits, structured errors) are the same as for Python callers.

Moving parts, per agent (a ``_Slot``):

- a volume opened on first use with a mount session of its own (a Redis ACL user limited to the
  workspace's keys and, managed, S3 keys limited to its prefix; custom storage uses the agent's
  unsealed keys): the orchestrator's admin rights never touch an agent's files;
- a thread pool of ``WORKERS_PER_AGENT`` threads (the core blocks on Redis and S3), and at most
  ``MAX_WAITING`` calls admitted (running or queued) — more are refused at once with 429
  ``agent_busy``: one agent's flood fills its own queue, never another agent's;
- ``close_idle`` (on every reaper pass) closes volumes unused for ``IDLE_SECONDS`` and revokes their
  sessions; ``close_agent`` (a toggle, a storage switch, a delete) closes at once, after the calls
  in flight on that volume finish;
- the session is renewed when half its lifetime has passed, on the next call.

Invariant: a volume is closed only when no call uses it (``_Slot.active`` under its condition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from artifacts_agentfs import AgentFS, tools
from artifacts_agentfs.errors import to_error
from artifacts_core.errors import ArtifactsError
from artifacts_core.volume import Volume, open_volume
from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator import models as m
from artifacts_orchestrator.agents import AgentService
from artifacts_orchestrator.errors import AgentBusy, ApiError
from artifacts_orchestrator.service import OWN_HANDLE

log = logging.getLogger("artifacts.orchestrator.agentfiles")

#: Threads per agent: enough to overlap one agent's Redis round trips and S3 transfers, small
#: enough that hundreds of active agents stay within a few thousand threads.
WORKERS_PER_AGENT = 4
#: Calls of one agent admitted at once (running or waiting); a client past it gets 429.
MAX_WAITING = 64
#: An agent's volume idle this long is closed (its session revoked); reopening costs ~10 ms.
IDLE_SECONDS = 300.0
#: Bound on waiting for in-flight calls before closing a volume (a write of 32 MiB to a slow S3).
CLOSE_WAIT = 60.0


@dataclass
class _Open:
    vol: Volume
    fs: AgentFS
    account: m.Account
    workspace_id: int
    workspace_name: str
    session_id: str
    opened_at: float
    renew_at: float


@dataclass
class _Slot:
    agent_id: str
    pool: ThreadPoolExecutor
    cond: threading.Condition = field(default_factory=threading.Condition)
    opened: _Open | None = None
    active: int = 0  # calls using ``opened``
    admitted: int = 0  # calls running or queued on ``pool``
    last_used: float = field(default_factory=time.monotonic)


class AgentFiles:
    def __init__(self, agents: AgentService, *, workers: int = WORKERS_PER_AGENT, max_waiting: int = MAX_WAITING,
                 idle_seconds: float = IDLE_SECONDS, session_ttl: int | None = None) -> None:
        self.agents = agents
        self.service = agents.service
        self.workers = workers
        self.max_waiting = max_waiting
        self.idle_seconds = idle_seconds
        self.session_ttl = session_ttl
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        agents.on_detach.append(self.close_agent)
        self.service.reap_hooks.append(self._reap)

    # -- calls --------------------------------------------------------------------------------------

    async def call(self, account: m.Account, agent: am.Agent, tool: str, arguments: Any) -> dict:
        """``tools.call``'s answer (``{"ok": ...}``) for one operation of ``agent``, run on the
        agent's own pool. Raises ``ApiError`` for what is not a file operation's failure (a
        workspace toggled off, too many calls waiting)."""
        slot = self._admit(agent.id)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(slot.pool, self._run, slot, account, agent, tool, arguments)
        finally:
            with self._lock:
                slot.admitted -= 1
                slot.last_used = time.monotonic()

    def _admit(self, agent_id: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(agent_id)
            if slot is None:
                slot = self._slots[agent_id] = _Slot(agent_id, ThreadPoolExecutor(
                    self.workers, thread_name_prefix=f"agent-{agent_id[3:11]}"))
            if slot.admitted >= self.max_waiting:
                raise AgentBusy(f"agent {agent_id} has {slot.admitted} file operations in flight; retry shortly")
            slot.admitted += 1
            slot.last_used = time.monotonic()
            return slot

    def _run(self, slot: _Slot, account: m.Account, agent: am.Agent, tool: str, arguments: Any) -> dict:
        try:
            opened = self._acquire(slot, account, agent)
        except ArtifactsError as e:  # Redis or S3 refused the open: the agent API's EIO-style answer
            log.warning("agent %s: opening its workspace failed: %s", agent.id, type(e).__name__)
            return open_error(e)
        try:
            return tools.call(opened.fs, tool, arguments)
        finally:
            with slot.cond:
                slot.active -= 1
                slot.cond.notify_all()

    def _acquire(self, slot: _Slot, account: m.Account, agent: am.Agent) -> _Open:
        """The slot's open volume (opened now if needed), counted as in use."""
        ws, keys = self.agents.serving(agent)  # WorkspaceOff when toggled off
        with slot.cond:
            if slot.opened is not None and slot.opened.workspace_id != ws.id:
                self._close_locked(slot)
            if slot.opened is None:
                slot.opened = self._open(account, agent, ws, keys)
            elif time.time() >= slot.opened.renew_at:
                self._renew(slot.opened)
            slot.active += 1
            return slot.opened

    def _open(self, account: m.Account, agent: am.Agent, ws: m.Workspace, keys: tuple[str, str] | None) -> _Open:
        ttl = self.session_ttl or int(self.service.session_ttl)
        grant = self.service.create_session(account, OWN_HANDLE, ws.name, m.CreateSessionRequest(
            mode="rw", ttl_seconds=ttl, host="orchestrator", mountpoint=f"agent:{agent.id}"))
        creds = grant.storage.credentials
        if keys is None and creds is not None:
            keys = (creds.access_key_id, creds.secret_access_key)
        try:
            vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                              credentials=keys, mountpoint=f"agent:{agent.id}")
        except BaseException:
            with contextlib.suppress(ApiError):
                self.service.revoke_session(account, OWN_HANDLE, ws.name, grant.session.id)
            raise
        now = time.time()
        log.info("agent %s: opened %s (session %s)", agent.id, ws.name, grant.session.id)
        return _Open(vol=vol, fs=AgentFS(vol), account=account, workspace_id=ws.id, workspace_name=ws.name,
                     session_id=grant.session.id, opened_at=now, renew_at=now + ttl / 2)

    def _renew(self, opened: _Open) -> None:
        ttl = self.session_ttl or int(self.service.session_ttl)
        self.service.renew_session(opened.account, OWN_HANDLE, opened.workspace_name, opened.session_id,
                                   m.RenewSessionRequest(ttl_seconds=ttl))
        opened.renew_at = time.time() + ttl / 2

    # -- closing ------------------------------------------------------------------------------------

    def _close_locked(self, slot: _Slot) -> None:
        """Close the slot's volume once no call uses it (the caller holds ``slot.cond``)."""
        opened = slot.opened
        if opened is None:
            return
        slot.cond.wait_for(lambda: slot.active == 0, timeout=CLOSE_WAIT)
        slot.opened = None
        with contextlib.suppress(Exception):  # a revoked or deleted workspace fails fast here
            opened.vol.close()
        with contextlib.suppress(ApiError):
            self.service.revoke_session(opened.account, OWN_HANDLE, opened.workspace_name, opened.session_id)
        log.info("agent %s: closed %s", slot.agent_id, opened.workspace_name)

    def close_agent(self, agent_id: str) -> None:
        with self._lock:
            slot = self._slots.get(agent_id)
        if slot is not None:
            with slot.cond:
                self._close_locked(slot)

    def close_idle(self, now: float | None = None) -> int:
        """Close volumes idle for ``idle_seconds`` and drop their pools; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [s for s in self._slots.values() if s.admitted == 0 and now - s.last_used >= self.idle_seconds]
            for s in idle:
                del self._slots[s.agent_id]
        for s in idle:
            with s.cond:
                self._close_locked(s)
            s.pool.shutdown(wait=False)
        return len(idle)

    def _reap(self, _now: float) -> dict[str, int]:
        return {"agent_volumes_closed": self.close_idle()}

    def open_agents(self) -> list[str]:
        with self._lock:
            return [a for a, s in self._slots.items() if s.opened is not None]

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for s in slots:
            with s.cond:
                self._close_locked(s)
            s.pool.shutdown(wait=True)


def open_error(e: BaseException) -> dict:
    """A volume that would not open (Redis or S3 refused) as the agent API's structured error."""
    return {"ok": False, "error": to_error(e if isinstance(e, ArtifactsError) else OSError(5, str(e)))}
