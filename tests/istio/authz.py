"""A tiny ext_authz HTTP authorizer standing in for cray-opa (loopback only).

    python authz.py PORT LOGFILE

Envoy's ext_authz (http_service) sends it each request's method, path and allowed headers; it
answers 403 when the marker header `x-test-opa-deny` is present, else 200, and appends one JSON
line per check ({"method", "path", "deny"}) to LOGFILE so a test can see which requests reached it.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DENY_HEADER = "x-test-opa-deny"
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _check(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        deny = self.headers.get(DENY_HEADER) is not None
        with LOCK, open(LOG, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "deny": deny}) + "\n")
        body = b"denied by the test authorizer\n" if deny else b""
        self.send_response(403 if deny else 200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _check

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


if __name__ == "__main__":
    port, LOG = int(sys.argv[1]), sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
