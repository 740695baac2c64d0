"""The OIDC issuer (oauth2-mock-server, Node) and its test-control API."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

from .config import CLIENT_ID, ISSUER_DIR, StackError
from .procs import http_get, log, port_open, spawn, wait_for


def b64url(data: bytes) -> str:
    """base64url without padding (JOSE's encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IssuerMixin:
    def ensure_issuer(self) -> None:
        if self.issuer.alive():
            return
        self.issuer.stop()
        self.check_port_free("issuer")
        self.check_port_free("control")
        logf = self.cfg.log_dir / "issuer.log"
        env = dict(
            os.environ,
            ISSUER_URL=self.cfg.mock_issuer_url,
            ISSUER_HOST="127.0.0.1",
            ISSUER_PORT=str(self.cfg.ports["issuer"]),
            ISSUER_CONTROL_PORT=str(self.cfg.ports["control"]),
            ISSUER_CLIENT_ID=CLIENT_ID,
        )
        p = spawn([self.cfg.node_bin, "issuer.js", f"--stack-dir={self.cfg.state_dir}/"], ISSUER_DIR, env, logf)
        self._procs.append(p)
        self.issuer.pidfile.write_text(f"{p.pid}\n")
        wait_for(
            lambda: (
                http_get(f"{self.cfg.issuer_direct_url}/jwks")[0] == 200
                and http_get(f"{self.cfg.control_url}/control/healthz")[0] == 200
            ),
            15,
            "issuer",
            alive=lambda: p.poll() is None,
            log_file=logf,
        )
        log(f"issuer up (pid {p.pid}) on {self.cfg.issuer_direct_url}")

    def stop_issuer(self) -> None:
        """Stop the OIDC issuer (JWKS outage); start_issuer() brings it back with NEW keys."""
        self.issuer.stop()
        wait_for(lambda: not port_open(self.cfg.ports["issuer"]), 10, "issuer port release")

    def start_issuer(self) -> None:
        self.ensure_issuer()

    def _control(self, path: str, body: dict | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.cfg.control_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise StackError(f"issuer control {path}: {e.code} {e.read().decode()}") from None

    def control_token(
        self,
        username: str = "admin",
        claims: dict | None = None,
        expires_in: int = 3600,
        kid: str | None = None,
        unpublished: bool = False,
        header: dict | None = None,
    ) -> str:
        """A token signed by the issuer (its current key, or `kid`, or a key never published when
        `unpublished`), with Keycloak-like claims for `username`; `claims` override them (None
        removes one); `expires_in` may be negative (an expired token); `header` overrides header fields."""
        body = {
            "username": username,
            "claims": claims or {},
            "expires_in": expires_in,
            "unpublished": unpublished,
            "header": header or {},
        }
        if kid is not None:
            body["kid"] = kid
        return self._control("/control/token", body)["token"]

    def rotate_keys(self, keep_old: bool = False, alg: str = "RS256", current: bool = True) -> str:
        """Publish a new signing key of `alg` (RS256/384/512, PS256/384/512) and return its kid.
        `current` (default) makes it the key tokens are signed with; otherwise it is published
        after the others and used only by tokens that name its kid. keep_old keeps the other
        keys in the JWKS."""
        body = {"keep_old": keep_old, "alg": alg, "current": current}
        return self._control("/control/rotate", body)["kid"]

    def retire_key(self, kid: str) -> None:
        """Remove a (not current) signing key from the JWKS."""
        self._control("/control/retire", {"kid": kid})

    def sign_raw(self, header: bytes, payload: bytes, kid: str | None = None) -> str:
        """A token over exactly these header and payload bytes (base64url-encoded here), signed
        by the issuer's current key (or `kid`) with that key's algorithm, whatever the header
        says: for JSON no JOSE library would sign (duplicate claims, `crit`)."""
        body = {"header_b64": b64url(header), "payload_b64": b64url(payload)}
        if kid is not None:
            body["kid"] = kid
        return self._control("/control/sign-raw", body)["token"]

    def jwks(self) -> dict:
        """The issuer's JWKS (straight from the issuer, not through the gateway)."""
        return self._control("/control/jwks")
