"""Keycloak (the field's issuer): the server distribution from Maven Central, run from
target/keycloak/ with dev-file storage (H2) on loopback, the realm `shasta` of
tests/stack/keycloak/realm-shasta.json, and its admin REST API (key providers for rotation).

`make deps` (tests/stack/keycloak/install.sh) downloads `org.keycloak:keycloak-quarkus-dist`
with Maven (cached in ~/.cache/sts-gateway/keycloak/m2), unpacks it into target/keycloak/, runs
`kc.sh build` once (the build-time options below) and `kc.sh import` once into a template
database. `up` copies that template into the stack's
state directory and runs `kc.sh start --optimized`: no schema creation, no import, no
augmentation at start. `down` discards the copy (the realm comes back as committed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .config import GATEWAY_HOST, REALM, REPO, StackError
from .procs import http_get, log, port_open, spawn, wait_for

KEYCLOAK_VERSION = "26.5.6"
KEYCLOAK_CACHE = REPO / "target" / "keycloak"
KEYCLOAK_HOME = KEYCLOAK_CACHE / f"keycloak-{KEYCLOAK_VERSION}"
REALM_FILE = REPO / "tests" / "stack" / "keycloak" / "realm-shasta.json"
TEMPLATE_DB = KEYCLOAK_CACHE / "template-db"
# The realm's administrator (client role realm-admin of realm-management, in the realm file): the
# tests' admin REST API calls on realm shasta. DEV-ONLY password, loopback only.
KC_ADMIN_USER = "kcadmin"
KC_ADMIN_PASSWORD = "devonly-kcadmin"  # noqa: S105  (a throw-away local value)
# The Keycloak server's own path prefix (build option http-relative-path): Envoy forwards
# /keycloak/... unchanged, and the issuer is the gateway's https URL (hostname option).
RELATIVE_PATH = "/keycloak"


def db_url(directory: Path) -> str:
    return f"jdbc:h2:file:{directory}/keycloakdb;NON_KEYWORDS=VALUE"


def java_child(pid: int) -> int | None:
    """The java process kc.sh started (its only child)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if len(children) == 1 else None


class KeycloakMixin:
    # ---- process
    @property
    def keycloak_dir(self) -> Path:
        return self.cfg.state_dir / "keycloak"

    @property
    def keycloak_url(self) -> str:
        """Keycloak straight, not through the gateway (http://127.0.0.1:<port>/keycloak)."""
        return f"http://127.0.0.1:{self.cfg.ports['keycloak']}{RELATIVE_PATH}"

    def keycloak_args(self) -> list[str]:
        cfg = self.cfg
        return [
            str(cfg.keycloak_home / "bin" / "kc.sh"),
            "start",
            "--optimized",
            "--cache=local",
            "--http-enabled=true",
            "--http-host=127.0.0.1",
            f"--http-port={cfg.ports['keycloak']}",
            f"--http-management-port={cfg.ports['keycloak_mgmt']}",
            "--https-port=0",
            # Every URL Keycloak writes (issuer, discovery's endpoints) is the gateway's, as in the
            # field, whatever URL a request came in by (Envoy's port, or 127.0.0.1 straight).
            f"--hostname=https://{GATEWAY_HOST}{RELATIVE_PATH}",
            f"--db-url={db_url(self.keycloak_dir / 'h2')}",
            f"-Djava.io.tmpdir={self.keycloak_dir / 'tmp'}",
        ]

    def ensure_keycloak(self) -> None:
        if self.keycloak.alive():
            return
        self.keycloak.stop()
        cfg = self.cfg
        if not (cfg.keycloak_home / "lib" / "quarkus" / "build-system.properties").exists():
            raise StackError(f"Keycloak is not installed in {cfg.keycloak_home}: run `make deps`")
        if not (TEMPLATE_DB / "keycloakdb.mv.db").exists():
            raise StackError(f"Keycloak's template database {TEMPLATE_DB} is missing: run `make deps`")
        self.check_port_free("keycloak")
        self.check_port_free("keycloak_mgmt")
        t0 = time.monotonic()
        shutil.rmtree(self.keycloak_dir, ignore_errors=True)
        (self.keycloak_dir / "tmp").mkdir(parents=True)
        shutil.copytree(TEMPLATE_DB, self.keycloak_dir / "h2")
        logf = self.cfg.log_dir / "keycloak.log"
        env = dict(
            os.environ,
            # A small heap and the C1 compiler only: faster start on a small machine.
            JAVA_OPTS_KC_HEAP="-Xms64m -Xmx512m",
            JAVA_OPTS_APPEND="-XX:TieredStopAtLevel=1",
        )
        p = spawn(self.keycloak_args(), self.keycloak_dir, env, logf)
        self._procs.append(p)
        self.keycloak.pidfile.write_text(f"{p.pid}\n")
        wait_for(
            lambda: http_get(f"{self.keycloak_url}/realms/{REALM}/.well-known/openid-configuration")[0] == 200,
            cfg.keycloak_start_timeout,
            "Keycloak",
            alive=lambda: p.poll() is None,
            log_file=logf,
            interval=0.2,
        )
        # kc.sh runs java as its child and forwards SIGTERM; track java itself, so that a SIGKILL
        # after the stop timeout ends the server, not only the script.
        java = java_child(p.pid)
        if java is not None:
            self.keycloak.pidfile.write_text(f"{java}\n")
        took = time.monotonic() - t0
        log(f"Keycloak {KEYCLOAK_VERSION} up (pid {java or p.pid}) on {self.keycloak_url} in {took:.1f}s")

    def stop_keycloak(self) -> None:
        self.keycloak.stop(timeout=20)
        wait_for(lambda: not port_open(self.cfg.ports["keycloak"]), 10, "Keycloak port release")

    # ---- OpenID Connect, straight to Keycloak (tests go through the gateway, see client.py)
    def keycloak_token_response(
        self, user: str = "admin", password: str | None = None, client_id: str = "shasta", scope: str | None = None
    ) -> dict:
        data = {"grant_type": "password", "client_id": client_id, "username": user, "password": password or user}
        if scope:
            data["scope"] = scope
        return self._kc_form(f"/realms/{REALM}/protocol/openid-connect/token", data)

    def _kc_form(self, path: str, data: dict[str, str]) -> dict:
        req = urllib.request.Request(
            f"{self.keycloak_url}{path}",
            data=urllib.parse.urlencode(data).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise StackError(f"Keycloak {path}: {e.code} {e.read().decode()}") from None

    # ---- admin REST API
    def _kc_admin_token(self) -> str:
        tok = getattr(self, "_kc_admin", None)
        if tok is not None and tok[1] > time.monotonic():
            return tok[0]
        d = self._kc_form(
            f"/realms/{REALM}/protocol/openid-connect/token",
            {
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": KC_ADMIN_USER,
                "password": KC_ADMIN_PASSWORD,
            },
        )
        self._kc_admin = (d["access_token"], time.monotonic() + min(30, d.get("expires_in", 60) - 10))
        return d["access_token"]

    def kc_admin(self, method: str, path: str, body: Any = None, retry: bool = True) -> Any:
        """A call to Keycloak's admin REST API (/admin/realms/...); returns the JSON answer, or
        for a 201 the id at the end of its Location header. The administrator's token is cached;
        a 401 (its signing key was removed by a test) gets one retry with a new token."""
        req = urllib.request.Request(
            f"{self.keycloak_url}/admin{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._kc_admin_token()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status == 201:
                    return r.headers.get("Location", "").rsplit("/", 1)[-1]
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code == 401 and retry:
                self._kc_admin = None
                return self.kc_admin(method, path, body, retry=False)
            raise StackError(f"Keycloak admin {method} {path}: {e.code} {e.read().decode()}") from None

    def kc_realm_id(self, realm: str = REALM) -> str:
        return self.kc_admin("GET", f"/realms/{realm}")["id"]

    def kc_key_providers(self, realm: str = REALM) -> list[dict]:
        """The realm's key provider components (rsa-generated, ecdsa-generated, ...)."""
        return self.kc_admin("GET", f"/realms/{realm}/components?type=org.keycloak.keys.KeyProvider")

    def kc_add_key_provider(
        self,
        provider: str = "rsa-generated",
        priority: int = 200,
        name: str | None = None,
        realm: str = REALM,
        **config: str,
    ) -> str:
        """Adds a key provider (rsa-generated, ecdsa-generated with ecdsaEllipticCurveKey P-256 or
        P-384, eddsa-generated with eddsaEllipticCurveKey Ed25519) and returns its component id.
        The active key of the highest priority signs new tokens."""
        cfg = {"priority": [str(priority)], "enabled": ["true"], "active": ["true"]}
        cfg.update({k: [v] for k, v in config.items()})
        return self.kc_admin(
            "POST",
            f"/realms/{realm}/components",
            {
                "name": name or f"{provider}-{priority}",
                "providerId": provider,
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": self.kc_realm_id(realm),
                "config": cfg,
            },
        )

    def kc_update_key_provider(self, component_id: str, realm: str = REALM, **config: str) -> None:
        comp = self.kc_admin("GET", f"/realms/{realm}/components/{component_id}")
        comp["config"].update({k: [v] for k, v in config.items()})
        self.kc_admin("PUT", f"/realms/{realm}/components/{component_id}", comp)

    def kc_remove_key_provider(self, component_id: str, realm: str = REALM) -> None:
        self.kc_admin("DELETE", f"/realms/{realm}/components/{component_id}")

    def kc_keys(self, realm: str = REALM) -> list[dict]:
        """The realm's keys as the admin API lists them (kid, algorithm, status, providerId)."""
        return self.kc_admin("GET", f"/realms/{realm}/keys")["keys"]

    def kc_jwks(self, realm: str = REALM) -> dict:
        status, body = http_get(f"{self.keycloak_url}/realms/{realm}/protocol/openid-connect/certs")
        if status != 200:
            raise StackError(f"Keycloak JWKS: {status}")
        return json.loads(body)
