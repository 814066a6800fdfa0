"""The volume's background thread: what runs while a volume is open, in every client.

Every ``TICK`` seconds it commits dirty files whose data has waited past ``flush_interval`` or
been idle past ``flush_idle``; every ``heartbeat`` it refreshes the session; and, when
``background_jobs`` is on, it offers to run the elected jobs (stale-session cleanup, reclaiming
deleted data, trash expiry, migration of quiet inline data to S3). Elections happen in Redis, so
with many clients each job runs in one of them at a time.

A job's failure is counted and logged, never raised: the next tick tries again. A job that keeps
failing (Redis full, S3 down) logs once per ``FAILURE_LOG_INTERVAL``, not on every tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("artifacts.vfs")

#: Granularity of the timers: fine enough for the 1 s idle flush, coarse enough to cost nothing.
TICK = 0.2
#: Seconds between two log lines about the same job failing: an outage that lasts is one line a
#: minute per job (the counter in .stats has every failure), not five a second.
FAILURE_LOG_INTERVAL = 60.0


#: A job as the volume gives it: (name, seconds between two runs, what to run).
TickJob = tuple[str, float, Callable[[], object]]


@dataclass
class _Job:
    name: str
    interval: float  # seconds between two runs
    fn: Callable[[], object]
    last: float = 0.0  # time.monotonic() of the last run


class Background:
    def __init__(self, *, tick_jobs: Sequence[TickJob], metrics) -> None:
        self._jobs = [_Job(name, interval, fn) for name, interval, fn in tick_jobs]
        self._logged: dict[str, float] = {}  # job name -> when its last failure was logged
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="artifacts-bg", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            for job in self._jobs:
                name, interval, fn, last = job.name, job.interval, job.fn, job.last
                if now - last < interval:
                    continue
                job.last = now
                try:
                    fn()
                except Exception as e:
                    self._metrics.inc("background_errors", job=name)
                    if now - self._logged.get(name, -FAILURE_LOG_INTERVAL) >= FAILURE_LOG_INTERVAL:
                        self._logged[name] = now
                        log.warning("background job %s failed: %s (logged once a minute while it "
                                    "keeps failing; .stats counts every failure)", name, e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
