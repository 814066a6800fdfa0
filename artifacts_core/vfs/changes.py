"""``ChangeFeed``: what other hosts change in this workspace, as it happens (``vol.vfs.changes``).

Every mutating metadata function announces its changes on the workspace's channel; the feed
keeps one subscription per volume (``meta/changes.py``) and calls its listeners with each
:class:`Change`, in the order the changes happened. Frontends use it to drop what they cached: the
VFS itself (chunk views and lengths of changed inodes), the path API's entry cache, and the FUSE
adapter (kernel entry, attribute and page caches, through libfuse's notify calls)::

    from artifacts_core.vfs.changes import Change

    def on_change(c: Change) -> None:
        if c.own:
            return  # this volume made it: its own caches are already right
        if c.kind == "all":
            ...  # drop everything; trust caches again only while vol.vfs.changes.subscribed
        elif c.kind == "entry":
            ...  # the name c.parent/c.name (and the attributes of c.parent and c.ino)
        elif c.kind == "rename":
            ...  # c.parent/c.name and c.new_parent/c.new_name (and both directories, c.ino)
        else:  # "attr" or "data"
            ...  # the attributes (and for "data", the cached content) of c.ino

    remove = vol.vfs.changes.add_listener(on_change)

Guarantees: while ``subscribed`` is true, a change made on another host reaches the listeners a
few milliseconds after its function returned there. When the subscription is lost, listeners get
an ``"all"`` change first (drop everything) and ``subscribed`` turns false: a cache filled while
unsubscribed must not be trusted. Once re-subscribed (with backoff), ``subscribed`` turns true and
listeners get another ``"all"`` (whatever was cached in between may be stale).

Listeners run on the feed's thread, one change at a time: they must be quick and must not wait
for anything that needs the feed. An exception in a listener is logged and counted, and the other
listeners still run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from artifacts_core.meta.changes import Change, ChangeKind, Subscription
from artifacts_core.metrics import Metrics

__all__ = ["Change", "ChangeFeed", "ChangeKind", "Listener"]

log = logging.getLogger("artifacts.vfs")

Listener = Callable[[Change], None]


class ChangeFeed:
    """The listeners of one volume's change subscription."""

    def __init__(self, meta, *, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        # (listener, wants own changes); replaced, never mutated: lock-free dispatch
        self._listeners: tuple[tuple[Listener, bool], ...] = ()
        self._own_wanted = False
        self._lock = threading.Lock()
        self._failed: set[int] = set()  # listeners whose failure was logged with its traceback
        self._sub = Subscription(meta.client, deliver=self._dispatch, session=lambda: meta.sid,
                                 own_wanted=lambda: self._own_wanted)

    # -- the public API ------------------------------------------------------------------------

    def add_listener(self, listener: Listener, *, own: bool = True) -> Callable[[], None]:
        """Call ``listener(change)`` for every change from now on; returns a function that
        removes it again. Listeners run in the order they were added. ``own=False``: skip the
        changes this volume made itself (``change.own``); when no listener wants them, the feed
        does not even decode them."""
        with self._lock:
            self._listeners = (*self._listeners, (listener, own))
            self._own_wanted = any(o for _, o in self._listeners)
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple((fn, o) for fn, o in self._listeners if fn is not listener)
            self._own_wanted = any(o for _, o in self._listeners)

    @property
    def subscribed(self) -> bool:
        """Whether changes are being received now; caches are trustworthy only while it is true."""
        return self._sub.subscribed

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until changes are being received; False when ``timeout`` passed first."""
        return self._sub.wait_subscribed(timeout)

    # -- the volume's side ---------------------------------------------------------------------

    def start(self, *, wait: float = 0.0) -> bool:
        """Start receiving (the volume does this once its session is registered, so its own
        changes are flagged ``own``); wait up to ``wait`` seconds for the first subscription
        attempt (a refusal ends the wait at once). Returns ``subscribed``."""
        self._sub.start()
        return self._sub.wait_first_attempt(wait) if wait > 0 else self._sub.subscribed

    def close(self) -> None:
        self._sub.stop()

    def stats(self) -> dict[str, float]:
        return {"received": self._sub.received, "losses": self._sub.losses,
                "subscribed": 1 if self._sub.subscribed else 0}

    def _dispatch(self, change: Change) -> None:
        for listener, own in self._listeners:
            if change.own and not own:
                continue
            try:
                listener(change)
            except Exception:  # one listener's bug must not starve the others
                self._metrics.inc("change_listener_errors")
                if id(listener) not in self._failed:
                    self._failed.add(id(listener))
                    log.exception("change listener %r failed (logged once; it stays registered)", listener)
