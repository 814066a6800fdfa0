"""When an object-store request is worth repeating, and how long to wait before repeating it.

Owns :class:`RetryPolicy` (the knobs), :func:`is_transient` (the classification of botocore and
aiohttp failures into "try again" and "give up now") and :class:`Backoff` (the schedule of one
operation: capped exponential backoff with full jitter, bounded by attempts *and* total time).
The S3 store's single choke point (``S3ObjectStore._call``) is the only user; nothing here talks
to the network.

Invariant: an operation makes at most ``max_attempts`` attempts and never starts an attempt, nor
sleeps, past ``total_timeout`` after it began. Client errors (400, 403, 404 …) are never
retried: repeating them cannot change the answer and would only delay the caller's error.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

#: Error codes S3 and S3-compatible servers use to ask a client to slow down or come back later.
THROTTLING_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequests", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
    "EC2ThrottledException", "PriorRequestNotComplete",
})

#: Codes that arrive with a 4xx status but describe a transient server-side condition.
TRANSIENT_CODES = frozenset({
    "RequestTimeout",  # 400: the server gave up waiting for our body; a fresh attempt usually works
    "InternalError", "ServiceUnavailable", "ServerBusy", "OperationAborted",
})

#: HTTP statuses that mean "not now" rather than "no".
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one object-store operation tries before it reports a failure."""

    # 8 attempts ride out a few seconds of throttling or a gateway restart, yet a dead endpoint
    # still fails within a bounded time; past that, the caller (a read, a flush) should hear it.
    max_attempts: int = 8
    # 50 ms first step: shorter than any S3 round trip worth retrying, long enough to leave a
    # throttled prefix alone for a moment.
    base_delay: float = 0.05
    # 5 s cap: with full jitter the mean wait is half of it; waiting longer between attempts only
    # hides an outage from the caller.
    max_delay: float = 5.0
    # 60 s total: a FUSE read or flush blocked longer than a minute looks hung to a user, and
    # every attempt plus sleep must fit inside it.
    total_timeout: float = 60.0
    # 5 s to open a TCP (and TLS) connection: loopback and in-region S3 take milliseconds, so
    # anything slower is a routing problem that a new attempt may avoid.
    connect_timeout: float = 5.0
    # 30 s without a byte from the server: a 4 MiB block moves in well under a second on any
    # working link; a silent socket that long is stuck and deserves a fresh connection.
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        for name in ("base_delay", "max_delay", "total_timeout", "connect_timeout", "read_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must not be negative")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The sleep before retry number ``retry`` (1-based): uniform in ``[0, min(cap, base·2^(retry-1))]``.

        Full jitter (AWS architecture blog, "Exponential Backoff and Jitter") spreads clients that
        failed together, so they do not come back together.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(retry - 1, 62)))
        return (rng or random).uniform(0.0, ceiling)


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ``ClientError`` (``"NoSuchKey"``, ``"403"`` …), else the class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ``ClientError``, or ``None`` when no response arrived."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a new attempt may succeed: throttling, 5xx, timeouts, dropped connections."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        return (code in THROTTLING_CODES or code in TRANSIENT_CODES
                or http_status(exc) in TRANSIENT_STATUSES)
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not fix itself
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True  # refused, reset, timed out, truncated body
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError))


class Backoff:
    """The retry schedule of one operation: counts attempts and enforces both bounds."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self.deadline = self.started + policy.total_timeout
        self.attempts = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self) -> float | None:
        """The sleep before the next attempt, or ``None`` when the operation must give up now."""
        if self.attempts >= self.policy.max_attempts:
            return None
        delay = self.policy.delay(self.attempts)
        # No point sleeping into the deadline: the attempt after the sleep would have no time left.
        if time.monotonic() + delay >= self.deadline:
            return None
        return delay
