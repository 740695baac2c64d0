"""A loopback HTTP/1.1 server for the answers a real RGW or issuer never gives.

    with Misbehaving(upstream=stack.rgw_endpoint) as srv:          # proxies to RGW by default
        stack.restart_envoy(extra_clusters=[Stack.cluster("misbehaving", srv.port)], ...)
        srv.behave("status", status=500, body=b"boom")             # every answer from now on
        ...
        srv.behave("proxy")                                        # back to the real upstream

Behaviors (`behave(name, **kw)`):
    proxy                 forward the request to `upstream` (method, path, headers, body) and
                          relay its answer: the server is transparent
    status                status=, body=, content_type=  a fixed answer
    huge                  size= bytes of `fill` (default b"A") with a Content-Length, streamed
    slow                  delay= seconds of silence, then the `then` behavior (default proxy)
    refuse                close the connection without answering (a reset as Envoy sees it)

Everything is bounded: the server binds 127.0.0.1 only, sleeps in small steps that end when
the server stops, and closes every connection on `close()`. TCP_NODELAY on every accepted
socket (without it a Wasm callout waits ~40 ms for the delayed ACK).
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
}


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        super().server_bind()

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # an idle keep-alive connection is dropped after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self) -> None:
        owner: Misbehaving = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length else b""
        owner._record(self.command, self.path)
        name, kw = owner.current()
        self._answer(owner, name, kw, body)

    def _answer(self, owner: Misbehaving, name: str, kw: dict, body: bytes) -> None:
        if name == "slow":
            owner._sleep(float(kw.get("delay", 2.0)))
            then = kw.get("then", ("proxy", {}))
            return self._answer(owner, then[0], then[1], body)
        if name == "refuse":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if name == "status":
            data = kw.get("body", b"")
            data = data.encode() if isinstance(data, str) else data
            return self._send(int(kw.get("status", 200)), data, kw.get("content_type", "text/plain"))
        if name == "huge":
            size = int(kw.get("size", 10 << 20))
            fill = kw.get("fill", b"A")
            self.send_response(int(kw.get("status", 200)))
            self.send_header("Content-Type", kw.get("content_type", "application/octet-stream"))
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = (fill * (65536 // len(fill) + 1))[:65536]
            sent = 0
            while sent < size and not owner._stopped.is_set():
                part = chunk[: size - sent]
                try:
                    self.wfile.write(part)
                except OSError:
                    return None
                sent += len(part)
            return None
        if name == "proxy":
            return self._proxy(owner, body)
        return self._send(599, f"unknown behavior {name}".encode(), "text/plain")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _proxy(self, owner: Misbehaving, body: bytes) -> None:
        if owner.upstream is None:
            return self._send(502, b"no upstream", "text/plain")
        u = urllib.parse.urlsplit(owner.upstream)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            path = owner.upstream_path or self.path
            conn.request(self.command, path, body=body or None, headers=headers)
            r = conn.getresponse()
            data = r.read()
            ctype = r.getheader("Content-Type", "application/octet-stream")
            return self._send(r.status, data, ctype)
        except OSError as e:
            return self._send(502, f"proxy: {e}".encode(), "text/plain")
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve  # noqa: N815


class Misbehaving:
    """A misbehaving HTTP server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, upstream: str | None = None, upstream_path: str | None = None, port: int = 0):
        self.upstream = upstream
        self.upstream_path = upstream_path  # proxy to this path instead of the request's
        self._lock = threading.Lock()
        self._behavior: tuple[str, dict] = ("proxy", {})
        self._stopped = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self._srv = _Server(("127.0.0.1", port), _Handler)
        self._srv.owner = self  # type: ignore[attr-defined]
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def behave(self, name: str, **kw: Any) -> Misbehaving:
        with self._lock:
            self._behavior = (name, kw)
        return self

    def current(self) -> tuple[str, dict]:
        with self._lock:
            return self._behavior

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))
            del self.requests[:-1000]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + min(seconds, 60.0)
        while time.monotonic() < deadline and not self._stopped.is_set():
            time.sleep(0.02)

    def close(self) -> None:
        self._stopped.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Misbehaving:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
