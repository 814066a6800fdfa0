"""Counters of an object store, per operation, for the volume's ``.stats`` file and benchmarks.

Owns :class:`ObjectStoreStats`: for each operation (``get``, ``put``, ``delete``, ``head``,
``list``) how many operations finished, how many HTTP requests they took (retries included), the
bytes received and sent, the retries, the failures (split into "not found" — an ordinary answer
for ``head`` — and real errors), and the latency sum and count (Prometheus summary style, so a
scraper derives the mean over any window).

Moving parts: the store's choke point calls :meth:`ObjectStoreStats.record` once per finished
operation; readers call :meth:`snapshot`, which copies the counters under the lock.

Invariant: counters only grow, and a snapshot is consistent (every field of one operation's
counters comes from the same instant). All methods are thread-safe: the store records on the
event-loop thread while ``.stats`` is read from FUSE threads.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

#: The operations of the ``ObjectStore`` interface, listed in every snapshot even when unused
#: so that a Prometheus series exists from the start (absent series break rate() queries).
OPERATIONS = ("get", "put", "delete", "head", "list")


@dataclass
class OpCounters:
    operations: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    retries: int = 0
    errors: int = 0
    not_found: int = 0
    latency_sum: float = 0.0  # seconds, whole operation including retries and backoff sleeps
    latency_count: int = 0


class ObjectStoreStats:
    """Thread-safe per-operation counters. One instance may be shared by several stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, OpCounters] = {op: OpCounters() for op in OPERATIONS}

    def record(self, op: str, *, attempts: int, seconds: float, bytes_in: int = 0,
               bytes_out: int = 0, error: bool = False, not_found: bool = False) -> None:
        """Account one finished operation that made ``attempts`` HTTP requests."""
        with self._lock:
            c = self._ops.get(op)
            if c is None:
                c = self._ops[op] = OpCounters()
            c.operations += 1
            c.requests += attempts
            c.retries += max(0, attempts - 1)
            c.bytes_in += bytes_in
            c.bytes_out += bytes_out
            c.errors += int(error)
            c.not_found += int(not_found)
            c.latency_sum += seconds
            c.latency_count += 1

    def snapshot(self) -> dict[str, dict[str, float]]:
        """``{op: {counter: value}}`` plus a ``"total"`` entry summing every operation."""
        with self._lock:
            out: dict[str, dict[str, float]] = {op: asdict(c) for op, c in self._ops.items()}
        total: dict[str, float] = dict.fromkeys(asdict(OpCounters()), 0)
        for counters in out.values():
            for name, value in counters.items():
                total[name] += value
        out["total"] = total
        return out

    def total(self, counter: str) -> float:
        """One counter summed over every operation (``stats.total("retries")``)."""
        return self.snapshot()["total"][counter]

    def __repr__(self) -> str:
        t = self.snapshot()["total"]
        return (f"ObjectStoreStats(requests={t['requests']}, retries={t['retries']}, "
                f"errors={t['errors']}, bytes_in={t['bytes_in']}, bytes_out={t['bytes_out']})")
