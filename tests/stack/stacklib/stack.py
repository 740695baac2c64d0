"""The Stack: every part together (up, down, status), built from one mixin per part."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from .ceph import CephMixin
from .client import ClientMixin
from .config import GATEWAY_HOST, ISSUER_DIR, PORT_ENV, Config, StackError
from .envoy import EnvoyMixin
from .issuer import IssuerMixin
from .keycloak import KeycloakMixin
from .procs import Part, log, port_open, stop_parts
from .tls import TlsMixin


class Stack(TlsMixin, CephMixin, IssuerMixin, KeycloakMixin, EnvoyMixin, ClientMixin):
    """Start, stop and use the local stack. All public helpers are what tests use."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        rd = cfg.run_dir
        sd = f"{cfg.state_dir}/"  # every part's command line names a file under the state dir
        self.envoy = Part("envoy", rd / "envoy.pid", sd)
        self.issuer = Part("issuer", rd / "issuer.pid", sd)
        self.keycloak = Part("keycloak", rd / "keycloak.pid", sd)
        self.mon = Part("ceph-mon", rd / "mon.a.pid", sd)
        self.osd = Part("ceph-osd", rd / "osd.0.pid", sd)
        self.rgw = Part("radosgw", rd / "client.rgw.gw.pid", sd)
        self._envoy_log_offset = 0
        self._envoy_variant = False
        self._procs: list[subprocess.Popen] = []

    # ---- public attributes used by tests
    @property
    def parts(self) -> list[Part]:
        return [self.envoy, self.issuer, self.keycloak, self.rgw, self.osd, self.mon]

    @property
    def gateway_url(self) -> str:
        return self.cfg.gateway_url

    @property
    def gateway_http_url(self) -> str:
        return self.cfg.gateway_http_url

    @property
    def admin_url(self) -> str:
        return self.cfg.admin_url

    @property
    def rgw_endpoint(self) -> str:
        return self.cfg.rgw_endpoint

    @property
    def ca_file(self) -> str:
        return str(self.cfg.ca_file)

    @property
    def control_url(self) -> str:
        return self.cfg.control_url

    @property
    def token_url(self) -> str:
        return self.cfg.token_url

    @property
    def sts_keys(self) -> dict[str, str]:
        return {
            "access_key_id": self.cfg.access_key,
            "secret_access_key": self.cfg.secret_key,
            "role_arn": self.cfg.role_arn,
            "user": self.cfg.sts_user,
        }

    @property
    def envoy_log_path(self) -> Path:
        return self.cfg.log_dir / "envoy.log"

    @property
    def log_dir(self) -> Path:
        return self.cfg.log_dir

    def envoy_log(self) -> str:
        """Envoy's log since its last start."""
        with open(self.envoy_log_path, "rb") as f:
            f.seek(self._envoy_log_offset)
            return f.read().decode("utf-8", "replace")

    # ---- whole stack
    def up(self) -> None:
        t0 = time.monotonic()
        cfg = self.cfg
        for d in (cfg.run_dir, cfg.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.ensure_tls()
        if not cfg.wasm.exists():
            raise StackError(f"{cfg.wasm} is missing: run `make build` first")
        if not cfg.envoy_bin.exists():
            raise StackError(f"{cfg.envoy_bin} is missing: run `make deps` first")
        if not (ISSUER_DIR / "node_modules" / "oauth2-mock-server").exists():
            raise StackError("the issuer's npm packages are missing: run `make deps` first")
        self.ensure_ceph()
        self.ensure_issuer()
        self.ensure_keycloak()
        self.ensure_envoy()
        self.write_env()
        log(f"{cfg.name} up in {time.monotonic() - t0:.1f}s; env: {cfg.state_dir / 'env.sh'}")

    def down(self) -> None:
        """Stops every part and returns only when their processes have exited (SIGTERM; SIGKILL
        after 10 s), so that `down` then `up` never races a dying daemon for its port."""
        running = [part for part in self.parts if part.alive()]
        for part in running:
            log(f"stopping {part.name} (pid {part.pid()})")
        stop_parts(self.parts, timeout=10.0)
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=0.1)
        self._procs.clear()
        # Ceph's data lives in memory (memstore): nothing to keep once its daemons stopped.
        shutil.rmtree(self.cfg.ceph_dir, ignore_errors=True)
        # Keycloak's database is a copy of the template (make deps): the committed realm comes back.
        shutil.rmtree(self.cfg.state_dir / "keycloak", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.cfg.state_dir / "env.sh").unlink()

    def status(self) -> dict[str, int | None]:
        return {p.name: (p.pid() if p.alive() else None) for p in self.parts}

    def write_env(self) -> Path:
        path = self.cfg.state_dir / "env.sh"
        lines = ["# written by `make up` (tests/stack/stack.py); source it: . " + str(path)]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.cfg.env_vars().items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def check_port_free(self, key: str) -> None:
        port = self.cfg.ports[key]
        if port_open(port):
            raise StackError(
                f"port {port} ({key}) is already in use by a process this stack did not start; "
                f"stop it or choose another port ({PORT_ENV[key]})"
            )

    def restore_defaults(self) -> None:
        """Bring back what tests may have changed: default Envoy config, RGW and issuer running."""
        if not self.rgw.alive():
            self.start_rgw()
        if not self.issuer.alive():
            self.start_issuer()
        if not self.keycloak.alive():
            self.ensure_keycloak()
        if self._envoy_variant or not self.envoy.alive():
            self.restart_envoy()

    def howto(self) -> str:
        cfg = self.cfg
        make_args = " STACK_ARGS=--test" if cfg.name == "test-stack" else ""
        rel = os.path.relpath(cfg.ca_file, Path.cwd()) if str(cfg.ca_file).startswith(str(Path.cwd())) else cfg.ca_file
        return "\n".join(
            [
                f"Gateway:  {cfg.gateway_url}  (https, CA {rel}; also {cfg.gateway_http_url})",
                f"RGW:      {cfg.rgw_endpoint}   Envoy admin: {cfg.admin_url}   logs: {cfg.log_dir}",
                f"Env:      . {cfg.state_dir / 'env.sh'}",
                "",
                "Get a token (users: admin, testuser = admin role; user = no admin role):",
                f"  TOKEN=$(make -s token{make_args} USER=admin)",
                "Call the token service (curl, as clients in the field call it):",
                f'  curl -X PUT -H "Authorization: Bearer $TOKEN" --cacert {rel} '
                f"--resolve {GATEWAY_HOST}:{cfg.ports['https']}:127.0.0.1 {cfg.gateway_url}/apis/sts/token",
            ]
        )
