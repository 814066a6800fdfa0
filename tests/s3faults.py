"""A fault-injecting HTTP reverse proxy on loopback, in front of the REAL SeaweedFS.

It answers the first N requests with an S3 error (or sits on them past the client's read
timeout) and forwards the rest byte for byte. It stands in front of the real server; it does not
replace it. Used by the object-store and VFS fault tests.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from artifacts_core.servers import LOOPBACK

#: Headers a proxy must not forward (RFC 9110 §7.6.1), plus Expect, which it answers itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "expect", "content-length"}


class FaultProxy:
    """Loopback reverse proxy: the first ``fail_first`` requests get ``status``/``code``, the first
    ``delay_first`` wait ``delay`` seconds before being forwarded; the rest go straight through."""

    def __init__(self, upstream_port: int, *, fail_first: int = 0, status: int = 503,
                 code: str = "SlowDown", delay_first: int = 0, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.fail_first, self.status, self.code = fail_first, status, code
        self.delay_first, self.delay = delay_first, delay
        self.requests = self.faults = 0
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of each request
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        # A 20 ms poll makes shutdown() quick (the default 0.5 s would dominate each test).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def next_action(self) -> str:
        with self._lock:
            self.requests += 1
            if self.requests <= self.fail_first:
                self.faults += 1
                return "fail"
            if self.requests <= self.fail_first + self.delay_first:
                return "delay"
            return "forward"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()  # wakes handlers sleeping in "delay"
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp's pool expects

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        action = proxy.next_action()
        proxy.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        try:
            if action == "fail":
                self._reply_error(proxy)
                return
            if action == "delay" and proxy.stopping.wait(proxy.delay):
                return
            self._forward(proxy, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on us (read timeout): expected

    def _reply_error(self, proxy: FaultProxy) -> None:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{proxy.code}</Code>'
               f"<Message>injected by the test proxy</Message><Resource>{self.path}</Resource>"
               f"<RequestId>fault-{proxy.requests}</RequestId></Error>").encode()
        self.send_response_only(proxy.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    def _forward(self, proxy: FaultProxy, body: bytes) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, proxy.upstream_port, timeout=30)
        try:
            # Host is forwarded unchanged: it is part of the SigV4 signature.
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response_only(resp.status, resp.reason)
            for name, value in resp.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            upstream_length = resp.getheader("Content-Length")
            head = self.command == "HEAD"
            self.send_header("Content-Length", upstream_length if head and upstream_length else str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle
