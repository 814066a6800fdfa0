"""Counters, latency histograms and the access log behind ``.stats`` and ``.accesslog``.

One helper, :meth:`Metrics.operation`, wraps every VFS operation: it times it, counts it (by
operation and errno), feeds the latency histogram, and — only while someone reads
``.accesslog`` — formats one access-log line (op, args, result errno name, duration). With no
reader the access log costs one attribute check.

Other layers (object stores, chunk store, metadata client) keep their own counters; ``render``
pulls them in through registered *sources* (callables returning ``{name: value}``), so ``.stats``
is one Prometheus text snapshot of the whole client.

Thread-safe: FUSE calls arrive on many threads. Counters are plain dict updates under one lock;
histograms use fixed buckets (no allocation per observation).
"""

from __future__ import annotations

import bisect
import collections
import errno as _errno
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

#: Latency buckets (seconds): from 50 µs (a cached getattr) to 10 s (a flush waiting on S3).
BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

#: Lines kept per access-log reader before the oldest are dropped (a slow reader never blocks
#: an operation; it sees a "lines dropped" marker instead).
ACCESSLOG_BACKLOG = 10_000


class _Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bucket bound containing the q-quantile (coarse, for summaries)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return BUCKETS[i] if i < len(BUCKETS) else float("inf")
        return float("inf")


class AccessLogReader:
    """One open ``.accesslog``: a bounded queue of lines."""

    def __init__(self, log: AccessLog) -> None:
        self._log = log
        self._lines: collections.deque[str] = collections.deque(maxlen=ACCESSLOG_BACKLOG)
        self._cond = threading.Condition()
        self.closed = False

    def push(self, line: str) -> None:
        with self._cond:
            self._lines.append(line)
            self._cond.notify()

    def read(self, max_bytes: int, timeout: float | None = 1.0) -> bytes:
        """Lines available now (waiting up to ``timeout`` for the first), at most ``max_bytes``."""
        with self._cond:
            if not self._lines and not self.closed:
                self._cond.wait(timeout)
            out: list[str] = []
            size = 0
            while self._lines:
                line = self._lines[0]
                if out and size + len(line) > max_bytes:
                    break
                out.append(self._lines.popleft())
                size += len(line)
            return "".join(out).encode("utf-8", "backslashreplace")[: max(max_bytes, 0)]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._log.unsubscribe(self)


class AccessLog:
    def __init__(self) -> None:
        self._readers: list[AccessLogReader] = []
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._readers)

    def subscribe(self) -> AccessLogReader:
        reader = AccessLogReader(self)
        with self._lock:
            self._readers = [*self._readers, reader]
        return reader

    def unsubscribe(self, reader: AccessLogReader) -> None:
        with self._lock:
            self._readers = [r for r in self._readers if r is not reader]

    def write(self, line: str) -> None:
        for reader in self._readers:
            reader.push(line)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = collections.defaultdict(float)
        self._hist: dict[str, _Histogram] = {}
        self._sources: list[tuple[str, Callable[[], Mapping[str, float]]]] = []
        self.accesslog = AccessLog()

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += value

    def get(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe(self, op: str, seconds: float) -> None:
        with self._lock:
            hist = self._hist.get(op)
            if hist is None:
                hist = self._hist[op] = _Histogram()
            hist.observe(seconds)

    def add_source(self, prefix: str, source: Callable[[], Mapping[str, float]]) -> None:
        """Counters of another layer, read at render time as ``artifacts_<prefix>_<name>``."""
        self._sources.append((prefix, source))

    @contextmanager
    def operation(self, op: str, *args: object, uid: int = 0, pid: int = 0) -> Iterator[None]:
        """Time, count and (while ``.accesslog`` is read) log one VFS operation."""
        start = time.perf_counter()
        result = "OK"
        try:
            yield
        except BaseException as e:
            code = getattr(e, "errno", None)
            result = _errno.errorcode.get(code, "EIO") if isinstance(code, int) else "EIO"
            raise
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._counters[("ops", (("op", op),))] += 1
                if result != "OK":
                    self._counters[("op_errors", (("errno", result), ("op", op)))] += 1
                hist = self._hist.get(op)
                if hist is None:
                    hist = self._hist[op] = _Histogram()
                hist.observe(elapsed)
            if self.accesslog.active:
                stamp = time.strftime("%Y.%m.%d %H:%M:%S", time.localtime())
                rendered = ", ".join(repr(a) if isinstance(a, (str, bytes)) else str(a) for a in args)
                self.accesslog.write(f"{stamp}.{int((time.time() % 1) * 1e6):06d} [uid:{uid},pid:{pid}] "
                                     f"{op} ({rendered}): {result} <{elapsed:.6f}>\n")

    def render(self) -> str:
        """A Prometheus text snapshot of every counter, histogram and source."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            hists = {op: (list(h.counts), h.sum, h.count) for op, h in self._hist.items()}
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = collections.defaultdict(list)
        for (name, labels), value in counters.items():
            by_name[name].append((labels, value))
        for name in sorted(by_name):
            lines.append(f"# TYPE artifacts_{name}_total counter")
            for labels, value in sorted(by_name[name]):
                lines.append(f"artifacts_{name}_total{_labels(labels)} {_num(value)}")
        if hists:
            lines.append("# TYPE artifacts_op_seconds histogram")
            for op in sorted(hists):
                counts, total, count = hists[op]
                cumulative = 0
                for bound, c in zip((*BUCKETS, float("inf")), counts, strict=True):
                    cumulative += c
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'artifacts_op_seconds_bucket{{op="{op}",le="{le}"}} {cumulative}')
                lines.append(f'artifacts_op_seconds_sum{{op="{op}"}} {total:.6f}')
                lines.append(f'artifacts_op_seconds_count{{op="{op}"}} {count}')
        for prefix, source in self._sources:
            try:
                values = source()
            except Exception:  # a failing source must not break .stats
                continue
            for name in sorted(values):
                lines.append(f"# TYPE artifacts_{prefix}_{name} gauge")
                lines.append(f"artifacts_{prefix}_{name} {_num(values[name])}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"
