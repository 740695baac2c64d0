"""The dev CA and the gateway's server certificate (openssl)."""

from __future__ import annotations

import os

from .config import GATEWAY_HOST
from .procs import log, run


class TlsMixin:
    def ensure_tls(self) -> None:
        d = self.cfg.tls_dir
        if (d / "server.crt").exists() and (d / "server.key").exists() and (d / "ca.crt").exists():
            return
        d.mkdir(parents=True, exist_ok=True)
        log(f"generating a dev CA and server certificate in {d}")
        (d / "server.ext").write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = DNS:{GATEWAY_HOST}, DNS:localhost, IP:127.0.0.1\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
        )
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "3650",
                "-keyout",
                str(d / "ca.key"),
                "-out",
                str(d / "ca.crt"),
                "-subj",
                "/CN=sts-gateway local dev CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )
        run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-keyout",
                str(d / "server.key"),
                "-out",
                str(d / "server.csr"),
                "-subj",
                f"/CN={GATEWAY_HOST}",
            ]
        )
        run(
            [
                "openssl",
                "x509",
                "-req",
                "-sha256",
                "-days",
                "825",
                "-in",
                str(d / "server.csr"),
                "-CA",
                str(d / "ca.crt"),
                "-CAkey",
                str(d / "ca.key"),
                "-CAcreateserial",
                "-out",
                str(d / "server.crt"),
                "-extfile",
                str(d / "server.ext"),
            ]
        )
        os.chmod(d / "server.key", 0o644)  # readable by Envoy whoever runs it; dev-only key
