"""``SubscriberConnection``: the change feed's own wire connection to Redis (RESP2, sharded pub/sub).

``meta/client.py`` is the choke point for commands; this is the one other way the metadata engine
talks to Redis, for one reason each:

- redis-py's ``PubSub`` reconnects and re-subscribes by itself, so the messages published in
  between are lost without a sign; the feed must see every disconnection (and then tell its
  listeners that everything may have changed);
- it reads one message per wake-up through several layers: measured here at ~28 µs of CPU per
  message on the (loaded) build machine, and a writing mount receives one record per operation
  of its own. Here one ``recv`` drains whatever has arrived and hiredis parses it.

It speaks plain RESP2: ``AUTH`` when the URL carries credentials, then whatever the caller sends
(``SSUBSCRIBE``, ``PING``). ``rediss://`` uses TLS with the system's default verification
(certificate and host name). Every failure is an exception; nothing is retried here.

Thread-safety: one thread reads and writes; ``close`` may be called from another thread to wake a
blocked read (the socket is shut down first).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl

import hiredis
import redis.exceptions as rex

from artifacts_core.meta.client import RedisTarget

#: Bytes read per ``recv``: many records (~60 bytes each) per wake-up under a burst.
RECV_SIZE = 64 << 10


def reply_error(text: str) -> rex.RedisError:
    """An error reply as redis-py would raise it (so callers can tell NOPERM and MOVED apart)."""
    code, _, rest = text.partition(" ")
    if code == "NOPERM":
        return rex.NoPermissionError(rest)
    if code == "MOVED":
        return rex.MovedError(rest)
    if code in ("WRONGPASS", "NOAUTH"):
        return rex.AuthenticationError(text)
    return rex.ResponseError(text)


class SubscriberConnection:
    """One connection to one Redis node, for a subscription."""

    def __init__(self, target: RedisTarget, host: str, port: int, *, timeout: float) -> None:
        self.address = (host, port)
        self._target = target
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._poll = select.poll()  # not select(): a busy process may hold fds above 1024
        self._reader = hiredis.Reader()

    def connect(self) -> None:
        """Open the connection and authenticate (raises ConnectionError, AuthenticationError)."""
        host, port = self.address
        try:
            sock = socket.create_connection(self.address, timeout=min(self._timeout, 5.0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._target.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            sock.settimeout(self._timeout)
        except OSError as e:
            raise rex.ConnectionError(f"cannot connect to {host}:{port}: {e}") from e
        self._sock = sock
        self._poll.register(sock, select.POLLIN)
        t = self._target
        if t.password is not None:
            self.send(*(("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)))
            self.reply()

    def send(self, *args: str | bytes) -> None:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        try:
            self._socket().sendall(b"".join(parts))
        except OSError as e:
            raise rex.ConnectionError(f"lost the connection to {self._where()}: {e}") from e

    def reply(self) -> object:
        """The next reply, waiting up to the connection's timeout; an error reply is raised."""
        got = self.replies(self._timeout, limit=1)
        if not got:
            raise rex.TimeoutError(f"no reply from {self._where()} within {self._timeout:.0f} s")
        if isinstance(got[0], Exception):
            raise got[0]
        return got[0]

    def replies(self, timeout: float, *, limit: int = 0) -> list[object]:
        """The replies that have arrived, waiting up to ``timeout`` seconds for the first (an
        empty list when none came). Error replies are returned as exceptions, not raised; a
        closed connection raises ConnectionError."""
        out = self._parsed(limit)
        if out:
            return out
        sock = self._socket()
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        try:
            if not pending and not self._poll.poll(timeout * 1000):
                return []
            data = sock.recv(RECV_SIZE)
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(sock.pending())
        except (OSError, ValueError) as e:  # ValueError: closed by another thread meanwhile
            raise rex.ConnectionError(f"lost the connection to {self._where()}: {e}") from e
        if not data:
            raise rex.ConnectionError(f"{self._where()} closed the connection")
        self._reader.feed(data)
        return self._parsed(limit)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in select
            sock.close()

    def _parsed(self, limit: int) -> list[object]:
        out: list[object] = []
        while not limit or len(out) < limit:
            try:
                msg = self._reader.gets()
            except hiredis.ProtocolError as e:
                raise rex.ConnectionError(f"unreadable reply from {self._where()}: {e}") from e
            if msg is False:
                break
            out.append(reply_error(str(msg)) if isinstance(msg, hiredis.ReplyError) else msg)
        return out

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise rex.ConnectionError(f"the connection to {self._where()} is closed")
        return self._sock

    def _where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"
