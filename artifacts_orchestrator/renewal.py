"""Keeping a mount session alive: the renewer a mount, agent-API or MCP process runs beside its I/O.

A session is issued with a lifetime and a renewal token (service.py). ``SessionRenewer`` is one
daemon thread that calls ``POST /sessions/renew`` with that token at about half the session's
remaining life, so a mount lives for months in steps of its TTL while what issued it allows
(its API key unrevoked, its grant live). Nothing is swapped: the orchestrator extends the same
Redis ACL user and S3 user, so I/O never pauses.

Timing uses the orchestrator's answer (``expires_in``: seconds left, measured by the
orchestrator) and this host's monotonic clock, so a skewed host clock does not matter. The first
renewal runs at once when the renewer starts (the process cannot know how long ago the session
was issued: a mount's setup takes seconds, which matter for a short TTL), then each is due at half
the life left; if the orchestrator is unreachable, it retries every
quarter of what is left (at least every ``RETRY_MIN`` s, at most every ``RETRY_MAX`` s; past the
expiry every ``RETRY_MAX`` s: a session the reaper has not revoked yet may still be renewed). A refusal (``renewal_refused``: revoked session, revoked key, revoked or
expired grant; or an unknown token) is final: logged once, ``on_refused`` called, and the
session then ends at its expiry exactly as a revocation ends it (the reaper deletes its ACL
user; the mount's next operation fails with EACCES).

The token is a secret: it reaches a mount process through its settings pipe (never argv, the
environment or a file), and is never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgspec

from artifacts_orchestrator.errors import ApiError, RenewalRefused, Unauthorized

log = logging.getLogger("artifacts.renewal")

#: Retry bounds while the orchestrator is unreachable: often enough to catch it when it is back
#: (a restart takes seconds), rarely enough not to hammer it during a long outage.
RETRY_MIN, RETRY_MAX = 1.0, 60.0
#: Renew when this fraction of the remaining life has passed: half leaves as much time for retries
#: as has passed, so an outage of up to half a TTL costs no mount.
RENEW_AT = 0.5


class RenewalSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What a process needs to keep its session alive (passed through a mount's settings pipe)."""

    url: str  # the orchestrator's base URL
    token: str  # the session's renewal token (tbr_…)
    ttl: float  # seconds the session had left when it was issued


class SessionRenewer:
    """Renews one session in a daemon thread until ``stop()`` or a refusal (module note)."""

    def __init__(self, settings: RenewalSettings, *, on_refused: Callable[[ApiError], None] | None = None,
                 renew: Callable[[], float] | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.on_refused = on_refused
        self._renew = renew or self._call
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Renewals that succeeded; the last refusal (None while none).
        self.renewals = 0
        self.refused: ApiError | None = None
        self.expires = monotonic() + settings.ttl

    def _call(self) -> float:
        from artifacts_orchestrator.client import Artifacts

        return Artifacts("", base_url=self.settings.url).sessions.renew_with_token(self.settings.token).expires_in

    def start(self) -> SessionRenewer:
        self._thread = threading.Thread(target=self._run, name="artifacts-session-renewal", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def next_delay(self, failed: bool) -> float:
        left = self.expires - self._monotonic()
        if failed:  # past the expiry the orchestrator decides (the reaper may not have run yet)
            return RETRY_MAX if left <= 0 else min(max(left / 4, RETRY_MIN), RETRY_MAX)
        return max(left * RENEW_AT, 0.0)

    def renew_once(self) -> bool:
        """One renewal: True when renewed; False when the orchestrator could not be reached (a
        retry follows). A refusal is recorded in ``refused`` and ends the renewer."""
        started = self._monotonic()
        try:
            expires_in = self._renew()
        except (RenewalRefused, Unauthorized) as e:
            self.refused = e
            log.warning("session renewal refused (%s): the session ends at its expiry, in %.0f s", e.message,
                        max(0.0, self.expires - self._monotonic()))
            self._stop.set()
            if self.on_refused is not None:
                self.on_refused(e)
            return False
        except ApiError as e:  # unreachable or failing: retried
            log.info("session renewal failed (%s); retrying", e.message)
            return False
        self.expires = started + expires_in
        self.renewals += 1
        return True

    def _run(self) -> None:
        failed = not self.renew_once()
        while not self._stop.wait(self.next_delay(failed)):
            failed = not self.renew_once()
