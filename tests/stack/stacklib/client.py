"""Clients of the stack: name resolution for the gateway, tokens, requests, boto3 clients."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from .config import CLIENT_ID, GATEWAY_HOST

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if isinstance(host, (str, bytes)) and (host.decode() if isinstance(host, bytes) else host).lower() == GATEWAY_HOST:
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


def install_gateway_resolver() -> None:
    """Resolve api-gw-service-nmn.local to 127.0.0.1 in this Python process (curl's --resolve)."""
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]


@contextlib.contextmanager
def tcp_blackhole() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never answers (for timeout tests):
    `with tcp_blackhole() as port: stack.restart_envoy(extra_clusters=[Stack.cluster("slow", port)])`."""
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conns.append(conn)  # held open, never read from or written to
            except (TimeoutError, OSError):
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=2)
        for c in conns:
            c.close()
        srv.close()


class ClientMixin:
    # ---- tokens
    def token(self, user: str = "admin", password: str | None = None, via: str = "https") -> str:
        """A JWT for `user` from the issuer through the gateway (password grant, client shasta)."""
        import requests

        install_gateway_resolver()
        base = self.cfg.gateway_url if via == "https" else self.cfg.gateway_http_url
        r = requests.post(
            f"{base}{self.cfg.realm_path}/protocol/openid-connect/token",
            data={"grant_type": "password", "client_id": CLIENT_ID, "username": user, "password": password or user},
            verify=self.ca_file,
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    # ---- clients
    def gateway_request(self, method: str, path: str, token: str | None = None, via: str = "https", **kwargs: Any):  # type: ignore[no-untyped-def]
        """A requests call to the gateway (https with the CA, or via="http"); `token` adds
        `Authorization: Bearer <token>`. Returns the requests.Response."""
        import requests

        install_gateway_resolver()
        base = self.cfg.gateway_url if via == "https" else self.cfg.gateway_http_url
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 15)
        kwargs.setdefault("verify", self.ca_file)
        return requests.request(method, base + path, headers=headers, **kwargs)

    def s3_client(self, **creds: str):  # type: ignore[no-untyped-def]
        """boto3 S3 client on RGW; default: the token-service user's keys."""
        import boto3
        from botocore.config import Config as BotoConfig

        kw = creds or {"aws_access_key_id": self.cfg.access_key, "aws_secret_access_key": self.cfg.secret_key}
        return boto3.client(
            "s3",
            endpoint_url=self.cfg.rgw_endpoint,
            region_name="us-east-1",
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            **kw,
        )

    def sts_client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "sts",
            endpoint_url=self.cfg.rgw_endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.cfg.access_key,
            aws_secret_access_key=self.cfg.secret_key,
        )
