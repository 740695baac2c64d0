#!/usr/bin/env python3
"""The local sts-gateway stack: Envoy 1.40 + Ceph RGW 16.2 (mon, memstore OSD, radosgw) + an
OIDC issuer (oauth2-mock-server), all on 127.0.0.1, all state and logs under one directory.

    python tests/stack/stack.py [--test] up|down|status|token [USER]|env|tls|render

`--test` selects the test stack (ports + 10000, state in target/test-stack/) so tests never
collide with a user's `make up` (target/stack/). pytest imports this module (see
tests/e2e/conftest.py): `Stack(Config.for_tests())`.

Every process is tracked by a pid file under <state>/run/ and is stopped by that pid only
(after checking that its command line names this state dir). `up` is idempotent: parts that
run are kept, dead parts are restarted (Ceph is re-created when its mon or OSD died: the
OSD keeps its data in memory), stale pid files are cleaned, ports are checked first.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
ISSUER_DIR = REPO / "tests" / "stack" / "issuer"
ENVOY_TEMPLATE = REPO / "envoy" / "envoy.yaml"
GATEWAY_HOST = "api-gw-service-nmn.local"
REALM = "shasta"
CLIENT_ID = "shasta"

# DEV-ONLY throw-away credentials of the token-service user in the local RGW.
DEV_ACCESS_KEY = "DEVONLYSTSACCESSKEY1"  # 20 chars
DEV_SECRET_KEY = "DevOnlyStsSecretKeyDoNotUseAnywhere00000"  # 40 chars
DEV_RGW_STS_KEY = "devonlystskey016"  # RGW's `rgw sts key`: exactly 16 chars

DEFAULT_PORTS = {
    "https": 8443,  # Envoy https listener (api-gw-service-nmn.local)
    "http": 8080,  # Envoy plain http listener
    "admin": 9901,  # Envoy admin
    "rgw": 7480,  # Ceph RGW (S3 + STS)
    "issuer": 8081,  # OIDC issuer (oauth2-mock-server)
    "control": 8082,  # issuer test-control API
    "mon": 3300,  # Ceph mon (msgr v2)
}
PORT_ENV = {
    "https": "STACK_HTTPS_PORT",
    "http": "STACK_HTTP_PORT",
    "admin": "STACK_ADMIN_PORT",
    "rgw": "STACK_RGW_PORT",
    "issuer": "STACK_ISSUER_PORT",
    "control": "STACK_ISSUER_CONTROL_PORT",
    "mon": "STACK_MON_PORT",
}
TEST_PORT_OFFSET = 10000


class StackError(RuntimeError):
    pass


# --------------------------------------------------------------------------- configuration


@dataclass
class Config:
    state_dir: Path
    ports: dict[str, int]
    sts_user: str = "STS"
    sts_role: str = "STS"
    role_arn: str = ""
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY
    rgw_sts_key: str = DEV_RGW_STS_KEY
    issuer_url: str = f"https://{GATEWAY_HOST}/keycloak/realms/{REALM}"
    envoy_bin: Path = REPO / ".venv" / "bin" / "envoy"
    wasm: Path = REPO / "target" / "sts_gateway.wasm"
    node_bin: str = "node"
    envoy_concurrency: int = 2
    name: str = "stack"

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if not self.role_arn:
            self.role_arn = f"arn:aws:iam:::user/{self.sts_role}"
        if len(self.rgw_sts_key) != 16:
            raise StackError("the RGW sts key must be exactly 16 characters")

    @classmethod
    def from_env(cls, test: bool = False, env: dict[str, str] | None = None) -> "Config":
        """User stack: STACK_DIR, STACK_*_PORT. Test stack: STACK_TEST_DIR, STACK_TEST_PORT_OFFSET."""
        env = dict(os.environ if env is None else env)
        if test:
            offset = int(env.get("STACK_TEST_PORT_OFFSET", TEST_PORT_OFFSET))
            ports = {k: v + offset for k, v in DEFAULT_PORTS.items()}
            state_dir = Path(env.get("STACK_TEST_DIR", REPO / "target" / "test-stack"))
        else:
            ports = {k: int(env.get(PORT_ENV[k], v)) for k, v in DEFAULT_PORTS.items()}
            state_dir = Path(env.get("STACK_DIR", REPO / "target" / "stack"))
        kw: dict[str, Any] = {}
        for attr, var in [
            ("sts_user", "STACK_STS_USER"),
            ("sts_role", "STACK_STS_ROLE"),
            ("role_arn", "STACK_STS_ROLE_ARN"),
            ("access_key", "STACK_STS_ACCESS_KEY_ID"),
            ("secret_key", "STACK_STS_SECRET_ACCESS_KEY"),
            ("rgw_sts_key", "STACK_RGW_STS_KEY"),
            ("issuer_url", "STACK_ISSUER_URL"),
            ("envoy_bin", "STACK_ENVOY_BIN"),
            ("wasm", "STACK_WASM"),
            ("node_bin", "STACK_NODE_BIN"),
        ]:
            if env.get(var):
                kw[attr] = env[var]
        if "envoy_bin" in kw:
            kw["envoy_bin"] = Path(kw["envoy_bin"])
        if "wasm" in kw:
            kw["wasm"] = Path(kw["wasm"]).resolve()
        return cls(state_dir=state_dir, ports=ports, name="test-stack" if test else "stack", **kw)

    @classmethod
    def for_tests(cls) -> "Config":
        return cls.from_env(test=True)

    # derived paths / URLs
    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ceph_dir(self) -> Path:
        return self.state_dir / "ceph"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def gateway_url(self) -> str:
        return f"https://{GATEWAY_HOST}:{self.ports['https']}"

    @property
    def gateway_http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"

    @property
    def rgw_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['rgw']}"

    @property
    def issuer_direct_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['issuer']}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['control']}"

    @property
    def realm_path(self) -> str:
        return f"/keycloak/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.gateway_url}{self.realm_path}/protocol/openid-connect/token"

    @property
    def certs_url(self) -> str:
        return f"{self.gateway_url}{self.realm_path}/protocol/openid-connect/certs"

    @property
    def discovery_url(self) -> str:
        return f"{self.gateway_url}{self.realm_path}/.well-known/openid-configuration"

    def env_vars(self) -> dict[str, str]:
        return {
            "STACK_DIR": str(self.state_dir),
            "STS_GATEWAY_URL": self.gateway_url,
            "STS_GATEWAY_HTTP_URL": self.gateway_http_url,
            "STS_GATEWAY_HOST": GATEWAY_HOST,
            "STS_GATEWAY_HTTPS_PORT": str(self.ports["https"]),
            "STS_CA_FILE": str(self.ca_file),
            "RGW_ENDPOINT": self.rgw_endpoint,
            "ENVOY_ADMIN_URL": self.admin_url,
            "STACK_LOG_DIR": str(self.log_dir),
            "ENVOY_LOG": str(self.log_dir / "envoy.log"),
            "OIDC_ISSUER": self.issuer_url,
            "OIDC_TOKEN_URL": self.token_url,
            "OIDC_CERTS_URL": self.certs_url,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "ISSUER_URL_DIRECT": self.issuer_direct_url,
            "ISSUER_CONTROL_URL": self.control_url,
            "STS_ACCESS_KEY_ID": self.access_key,
            "STS_SECRET_ACCESS_KEY": self.secret_key,
            "STS_ROLE_ARN": self.role_arn,
            "STS_USER": self.sts_user,
            "CURL_RESOLVE": f"{GATEWAY_HOST}:{self.ports['https']}:127.0.0.1",
        }


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def deep_merge(base: dict, over: dict) -> dict:
    """Merge `over` into `base` (in place): dicts recurse, None deletes, anything else replaces."""
    for k, v in over.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(check: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] | None = None,
             log_file: Path | None = None, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, subprocess.SubprocessError):
            pass
        if alive is not None and not alive():
            raise StackError(f"{what}: process exited\n{tail(log_file)}")
        time.sleep(interval)
    raise StackError(f"{what}: not ready after {timeout:.0f}s\n{tail(log_file)}")


def tail(path: Path | None, lines: int = 40, since: int = 0) -> str:
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def proc_state(pid: int) -> str | None:
    """The process state letter from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def run(cmd: list[str], input: str | None = None, check: bool = True, timeout: float = 60) -> str:
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise StackError(f"command failed ({r.returncode}): {shlex.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


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
            except (socket.timeout, OSError):
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


@dataclass
class Part:
    """One process of the stack, tracked by its pid file."""

    name: str
    pidfile: Path
    marker: str  # must appear in /proc/<pid>/cmdline (guards against pid reuse)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        state = proc_state(pid)
        return state is not None and state not in ("Z", "X") and self.marker in proc_cmdline(pid)

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is not None and self.alive():
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and proc_state(pid) not in (None, "Z", "X"):
                    time.sleep(0.02)
                if proc_state(pid) in (None, "Z", "X"):
                    break
            # reap it if it is our child (zombie otherwise)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()


# --------------------------------------------------------------------------- the stack


class Stack:
    """Start, stop and use the local stack. All public helpers are what tests use."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        rd = cfg.run_dir
        sd = f"{cfg.state_dir}/"  # every part's command line names a file under the state dir
        self.envoy = Part("envoy", rd / "envoy.pid", sd)
        self.issuer = Part("issuer", rd / "issuer.pid", sd)
        self.mon = Part("ceph-mon", rd / "mon.a.pid", sd)
        self.osd = Part("ceph-osd", rd / "osd.0.pid", sd)
        self.rgw = Part("radosgw", rd / "client.rgw.gw.pid", sd)
        self._envoy_log_offset = 0
        self._envoy_variant = False
        self._procs: list[subprocess.Popen] = []

    # ---- public attributes used by tests
    @property
    def parts(self) -> list[Part]:
        return [self.envoy, self.issuer, self.rgw, self.osd, self.mon]

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
        return {"access_key_id": self.cfg.access_key, "secret_access_key": self.cfg.secret_key,
                "role_arn": self.cfg.role_arn, "user": self.cfg.sts_user}

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
        self.ensure_envoy()
        self.write_env()
        log(f"{cfg.name} up in {time.monotonic() - t0:.1f}s; env: {cfg.state_dir / 'env.sh'}")

    def down(self) -> None:
        for part in self.parts:
            if part.alive():
                log(f"stopping {part.name} (pid {part.pid()})")
            part.stop()
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=0.1)
        self._procs.clear()
        # Ceph's data lives in memory (memstore): nothing to keep once its daemons stopped.
        shutil.rmtree(self.cfg.ceph_dir, ignore_errors=True)
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
            raise StackError(f"port {port} ({key}) is already in use by a process this stack did not start; "
                             f"stop it or choose another port ({PORT_ENV[key]})")

    # ---- TLS
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
            "authorityKeyIdentifier = keyid, issuer\n")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-subj", "/CN=sts-gateway local dev CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", str(d / "server.key"),
             "-out", str(d / "server.csr"), "-subj", f"/CN={GATEWAY_HOST}"])
        run(["openssl", "x509", "-req", "-sha256", "-days", "825", "-in", str(d / "server.csr"),
             "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
             "-out", str(d / "server.crt"), "-extfile", str(d / "server.ext")])
        os.chmod(d / "server.key", 0o644)  # readable by Envoy whoever runs it; dev-only key

    # ---- issuer
    def ensure_issuer(self) -> None:
        if self.issuer.alive():
            return
        self.issuer.stop()
        self.check_port_free("issuer")
        self.check_port_free("control")
        logf = self.cfg.log_dir / "issuer.log"
        env = dict(os.environ, ISSUER_URL=self.cfg.issuer_url, ISSUER_HOST="127.0.0.1",
                   ISSUER_PORT=str(self.cfg.ports["issuer"]), ISSUER_CONTROL_PORT=str(self.cfg.ports["control"]),
                   ISSUER_CLIENT_ID=CLIENT_ID)
        with open(logf, "ab") as out:
            p = subprocess.Popen([self.cfg.node_bin, "issuer.js", f"--stack-dir={self.cfg.state_dir}/"],
                                 cwd=ISSUER_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(p)
        self.issuer.pidfile.write_text(f"{p.pid}\n")
        wait_for(lambda: http_get(f"{self.cfg.issuer_direct_url}/jwks")[0] == 200
                 and http_get(f"{self.cfg.control_url}/control/healthz")[0] == 200,
                 15, "issuer", alive=lambda: p.poll() is None, log_file=logf)
        log(f"issuer up (pid {p.pid}) on {self.cfg.issuer_direct_url}")

    # ---- Envoy
    def render_envoy(self, plugin_overrides: dict | Callable[[dict], dict | None] | None = None,
                     extra_clusters: list[dict] | None = None,
                     envoy_patch: Callable[[dict], dict | None] | None = None) -> dict:
        """envoy/envoy.yaml with this stack's ports, absolute paths and keys, plus overrides.

        plugin_overrides: a dict deep-merged into the plugin's JSON configuration (None deletes a
        key, lists replace), or a callable that edits (or returns) that configuration.
        extra_clusters: Envoy cluster dicts added (or replacing ones of the same name).
        envoy_patch: a callable that edits (or returns) the whole Envoy config dict.
        """
        import yaml  # from .venv

        cfg = self.cfg
        doc = yaml.safe_load(ENVOY_TEMPLATE.read_text())
        doc = json.loads(json.dumps(doc))  # unshare YAML aliases: every listener gets its own copy
        doc["admin"]["address"]["socket_address"]["port_value"] = cfg.ports["admin"]
        for lst in doc["static_resources"]["listeners"]:
            lst["address"]["socket_address"]["port_value"] = cfg.ports[lst["name"]]
            for chain in lst["filter_chains"]:
                ts = chain.get("transport_socket")
                if ts:
                    cert = ts["typed_config"]["common_tls_context"]["tls_certificates"][0]
                    cert["certificate_chain"]["filename"] = str(cfg.tls_dir / "server.crt")
                    cert["private_key"]["filename"] = str(cfg.tls_dir / "server.key")
                hcm = chain["filters"][0]["typed_config"]
                for f in hcm["http_filters"]:
                    if f["name"] != "envoy.filters.http.wasm":
                        continue
                    wc = f["typed_config"]["config"]
                    wc["vm_config"]["code"]["local"]["filename"] = str(cfg.wasm)
                    plugin = json.loads(wc["configuration"]["value"])
                    plugin["issuers"][0]["issuer"] = cfg.issuer_url
                    plugin["rgw"].update({
                        "authority": f"127.0.0.1:{cfg.ports['rgw']}",
                        "endpoint_url": cfg.rgw_endpoint,
                        "role_arn": cfg.role_arn,
                        "access_key_id": cfg.access_key,
                        "secret_access_key": cfg.secret_key,
                    })
                    if callable(plugin_overrides):
                        plugin = plugin_overrides(plugin) or plugin
                    elif plugin_overrides:
                        deep_merge(plugin, plugin_overrides)
                    wc["configuration"]["value"] = json.dumps(plugin, indent=2)
        ports = {"rgw": cfg.ports["rgw"], "keycloak": cfg.ports["issuer"]}
        clusters = doc["static_resources"]["clusters"]
        for c in clusters:
            if c["name"] in ports:
                ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ep["address"]["socket_address"]["port_value"] = ports[c["name"]]
        for extra in extra_clusters or []:
            clusters[:] = [c for c in clusters if c["name"] != extra["name"]] + [copy.deepcopy(extra)]
        if envoy_patch is not None:
            doc = envoy_patch(doc) or doc
        return doc

    @staticmethod
    def plugin_config(doc: dict) -> dict:
        """The plugin JSON configuration inside a rendered Envoy config (first listener)."""
        for lst in doc["static_resources"]["listeners"]:
            for f in lst["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
                if f["name"] == "envoy.filters.http.wasm":
                    return json.loads(f["typed_config"]["config"]["configuration"]["value"])
        raise KeyError("no wasm filter")

    def _write_envoy_config(self, doc: dict) -> tuple[Path, str]:
        import yaml

        d = self.cfg.state_dir / "envoy"
        d.mkdir(parents=True, exist_ok=True)
        text = "# generated by tests/stack/stack.py from envoy/envoy.yaml; do not edit\n" + \
            yaml.safe_dump(doc, sort_keys=False, width=120)
        path = d / "envoy.yaml"
        path.write_text(text)
        h = hashlib.sha256(text.encode())
        h.update(self.cfg.wasm.read_bytes())
        return path, h.hexdigest()

    def ensure_envoy(self) -> None:
        """Start Envoy with the default config, or restart it if its config or the wasm changed."""
        path, fingerprint = self._write_envoy_config(self.render_envoy())
        fp_file = self.cfg.state_dir / "envoy" / "fingerprint"
        if self.envoy.alive() and fp_file.exists() and fp_file.read_text() == fingerprint:
            return
        if self.envoy.alive():
            log("Envoy config or filter changed: restarting Envoy")
        self._start_envoy(path)
        fp_file.write_text(fingerprint)
        self._envoy_variant = False

    def _start_envoy(self, config_path: Path, timeout: float = 20, wait_keys: bool = True,
                     env: dict[str, str] | None = None) -> None:
        self.envoy.stop()
        for key in ("https", "http", "admin"):
            self.check_port_free(key)
        logf = self.envoy_log_path
        with open(logf, "ab") as out:
            self._envoy_log_offset = out.tell()
            out.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting Envoy with {config_path}\n".encode())
            out.flush()
            p = subprocess.Popen(
                [str(self.cfg.envoy_bin), "-c", str(config_path), "--disable-hot-restart",
                 "--concurrency", str(self.cfg.envoy_concurrency), "--log-level", "info"],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **env} if env else None)
        self._procs.append(p)
        self.envoy.pidfile.write_text(f"{p.pid}\n")

        def ready() -> bool:
            return http_get(f"{self.cfg.admin_url}/ready", timeout=1)[0] == 200

        try:
            wait_for(ready, timeout, "Envoy", alive=lambda: p.poll() is None)
        except StackError as e:
            self.envoy.stop()
            raise StackError(f"{e}\n{tail(logf, 60, self._envoy_log_offset)}") from None
        if wait_keys:
            self.wait_for_filter_keys()
        log(f"Envoy up (pid {p.pid}): {self.cfg.gateway_url} and {self.cfg.gateway_http_url}")

    def envoy_stats(self, prefix: str = "wasmcustom.") -> dict[str, int]:
        """Envoy's counters and gauges whose names start with `prefix` (the filter's metrics
        are `wasmcustom.sts_gateway_*`)."""
        status, body = http_get(f"{self.cfg.admin_url}/stats?filter=^{prefix.replace('.', '[.]')}", timeout=2)
        out: dict[str, int] = {}
        for line in body.decode().splitlines() if status == 200 else []:
            name, _, value = line.partition(": ")
            if name.startswith(prefix) and value.strip().isdigit():
                out[name] = int(value)
        return out

    def wait_for_filter_keys(self, timeout: float = 5.0) -> bool:
        """Wait until the filter finished its first JWKS fetch (its metrics
        sts_gateway_jwks_fetches_ok/_failed); False at once if the filter has no such metrics
        (e.g. the placeholder), False after `timeout` if no fetch finished. Never raises."""
        names = ("wasmcustom.sts_gateway_jwks_fetches_ok", "wasmcustom.sts_gateway_jwks_fetches_failed")
        deadline = time.monotonic() + timeout
        while True:
            stats = self.envoy_stats()
            if not any(n in stats for n in names):
                return False
            if stats.get(names[0], 0) > 0:
                return True
            if stats.get(names[1], 0) > 0 or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def restart_envoy(self, plugin_overrides: dict | Callable[[dict], dict | None] | None = None,
                      extra_clusters: list[dict] | None = None,
                      envoy_patch: Callable[[dict], dict | None] | None = None, timeout: float = 20,
                      wait_keys: bool = True, envoy_env: dict[str, str] | None = None) -> Path:
        """Restart Envoy with a variant of the default config (see render_envoy); returns once
        Envoy is ready, or raises StackError with the tail of Envoy's log. Without arguments it
        restores the default config. With wait_keys (default) it also waits (up to 5 s, never
        failing) until the filter finished its first JWKS fetch, see wait_for_filter_keys().
        envoy_env: extra environment variables of the Envoy process (e.g. secrets the filter
        reads through vm_config.environment_variables.host_env_keys).
        Returns the path of the config used."""
        doc = self.render_envoy(plugin_overrides, extra_clusters, envoy_patch)
        path, fingerprint = self._write_envoy_config(doc)
        fp_file = self.cfg.state_dir / "envoy" / "fingerprint"
        fp_file.unlink(missing_ok=True)
        variant = bool(plugin_overrides or extra_clusters or envoy_patch or envoy_env)
        self._envoy_variant = True  # until proven ready with the default
        self._start_envoy(path, timeout, wait_keys, envoy_env)
        if not variant:
            fp_file.write_text(fingerprint)
            self._envoy_variant = False
        return path

    @contextlib.contextmanager
    def envoy_variant(self, **kwargs: Any) -> Iterator["Stack"]:
        """`with stack.envoy_variant(plugin_overrides={...}):` restarts Envoy with the variant and
        restores the default config afterwards."""
        try:
            self.restart_envoy(**kwargs)
            yield self
        finally:
            self.restart_envoy()

    @staticmethod
    def cluster(name: str, port: int, host: str = "127.0.0.1", connect_timeout: str = "1s") -> dict:
        """A STATIC Envoy cluster dict for restart_envoy(extra_clusters=[...])."""
        return {"name": name, "type": "STATIC", "connect_timeout": connect_timeout,
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}

    def stop_issuer(self) -> None:
        """Stop the OIDC issuer (JWKS outage); start_issuer() brings it back with NEW keys."""
        self.issuer.stop()
        wait_for(lambda: not port_open(self.cfg.ports["issuer"]), 10, "issuer port release")

    def start_issuer(self) -> None:
        self.ensure_issuer()

    def restore_defaults(self) -> None:
        """Bring back what tests may have changed: default Envoy config, RGW and issuer running."""
        if not self.rgw.alive():
            self.start_rgw()
        if not self.issuer.alive():
            self.start_issuer()
        if self._envoy_variant or not self.envoy.alive():
            self.restart_envoy()

    # ---- Ceph
    def _ceph_conf(self) -> Path:
        return self.cfg.ceph_dir / "ceph.conf"

    def ceph(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return run(["ceph", "-c", str(self._ceph_conf()), "-n", "client.admin", *args], input=input, check=check)

    def radosgw_admin(self, *args: str, check: bool = True) -> str:
        return run(["radosgw-admin", "-c", str(self._ceph_conf()), "-n", "client.admin", *args], check=check)

    def ensure_ceph(self) -> None:
        if self.mon.alive() and self.osd.alive() and (self.cfg.ceph_dir / "ceph.conf").exists():
            if not self.rgw.alive():
                self.start_rgw()
                self.ensure_sts_principals()
            return
        for part in (self.rgw, self.osd, self.mon):
            if part.alive():
                log(f"Ceph is incomplete: stopping {part.name} (pid {part.pid()}) to re-create the cluster")
            part.stop(timeout=2)  # its data goes anyway: do not wait for a graceful shutdown
        self.create_ceph()
        self.start_rgw()
        self.ensure_sts_principals()

    def create_ceph(self) -> None:
        t0 = time.monotonic()
        cfg = self.cfg
        d = cfg.ceph_dir
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("mon/a", "osd/0"):
            (d / sub).mkdir(parents=True)
        self.check_port_free("mon")
        self.check_port_free("rgw")
        fsid = str(uuid.uuid4())
        mon_addr = f"v2:127.0.0.1:{cfg.ports['mon']}"
        conf = f"""# generated by tests/stack/stack.py: a throw-away one-node cluster on loopback
[global]
fsid = {fsid}
mon host = [{mon_addr}]
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {cfg.run_dir}
pid file = {cfg.run_dir}/$name.pid
admin socket = {cfg.run_dir}/$name.asok
log file = {cfg.log_dir}/$name.log
mon data = {d}/mon/$id
osd data = {d}/osd/$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
paxos propose interval = 0.01
paxos min wait = 0.01
mon data avail warn = 2
mon data avail crit = 1

[mon.a]
keyring = {d}/mon.keyring

[client.admin]
keyring = {d}/admin.keyring

[osd.0]
keyring = {d}/osd/0/keyring

[client.rgw.gw]
keyring = {d}/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:{cfg.ports['rgw']} tcp_nodelay=1
rgw sts key = {cfg.rgw_sts_key}
rgw s3 auth use sts = true
rgw enable ops log = false
"""
        self._ceph_conf().write_text(conf)
        at = "ceph-authtool"
        run([at, "--create-keyring", str(d / "mon.keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
        run([at, "--create-keyring", str(d / "admin.keyring"), "--gen-key", "-n", "client.admin",
             "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"])
        run([at, "--create-keyring", str(d / "rgw.keyring"), "--gen-key", "-n", "client.rgw.gw",
             "--cap", "mon", "allow rw", "--cap", "osd", "allow rwx"])
        for k in ("admin.keyring", "rgw.keyring"):
            run([at, str(d / "mon.keyring"), "--import-keyring", str(d / k)])
        run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[{mon_addr}]", str(d / "monmap")])
        c = ["-c", str(self._ceph_conf())]
        run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", str(d / "mon.keyring")])
        run(["ceph-mon", *c, "-i", "a"])
        mon_log = cfg.log_dir / "mon.a.log"
        wait_for(lambda: self.mon.alive(), 10, "ceph-mon", log_file=mon_log)
        wait_for(lambda: "quorum" in self.ceph("mon", "stat", check=False), 20, "ceph-mon quorum", log_file=mon_log)
        osd_uuid = str(uuid.uuid4())
        secret = run([at, "--gen-print-key"]).strip()
        osd_id = self.ceph("osd", "new", osd_uuid, "-i", "-", input=json.dumps({"cephx_secret": secret})).strip()
        if osd_id != "0":
            raise StackError(f"expected osd id 0, got {osd_id!r}")
        run([at, "--create-keyring", str(d / "osd/0/keyring"), "--name", "osd.0", "--add-key", secret])
        run(["ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid])
        run(["ceph-osd", *c, "-i", "0"])
        wait_for(lambda: self.osd.alive(), 10, "ceph-osd", log_file=cfg.log_dir / "osd.0.log")
        log(f"Ceph mon+osd up in {time.monotonic() - t0:.1f}s ({d})")

    def start_rgw(self) -> None:
        """Start radosgw (Ceph's mon and OSD must run) and wait until it answers S3."""
        if self.rgw.alive():
            return
        self.rgw.stop()
        self.check_port_free("rgw")
        t0 = time.monotonic()
        run(["radosgw", "-c", str(self._ceph_conf()), "-n", "client.rgw.gw"])
        logf = self.cfg.log_dir / "client.rgw.gw.log"
        wait_for(lambda: self.rgw.alive(), 10, "radosgw", log_file=logf)
        wait_for(lambda: http_get(self.cfg.rgw_endpoint + "/", timeout=1)[0] == 200, 60, "radosgw HTTP",
                 alive=self.rgw.alive, log_file=logf)
        log(f"radosgw up (pid {self.rgw.pid()}) on {self.cfg.rgw_endpoint} in {time.monotonic() - t0:.1f}s")

    def stop_rgw(self) -> None:
        """Stop radosgw (by its pid); `start_rgw()` brings it back with the same data."""
        self.rgw.stop()
        wait_for(lambda: not port_open(self.cfg.ports["rgw"]), 10, "radosgw port release")

    def ensure_sts_principals(self) -> None:
        """The token-service user (with its keys) and the role it may assume, with an s3:* policy."""
        cfg = self.cfg
        info = self.radosgw_admin("user", "info", f"--uid={cfg.sts_user}", check=False)
        if not info.strip():
            self.radosgw_admin("user", "create", f"--uid={cfg.sts_user}", f"--display-name={cfg.sts_user}",
                               f"--access-key={cfg.access_key}", f"--secret-key={cfg.secret_key}")
        if not self.radosgw_admin("role", "get", f"--role-name={cfg.sts_role}", check=False).strip():
            trust = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam:::user/{cfg.sts_user}"]},
                "Action": ["sts:AssumeRole"]}]}
            self.radosgw_admin("role", "create", f"--role-name={cfg.sts_role}", "--path=/",
                               f"--assume-role-policy-doc={json.dumps(trust, separators=(',', ':'))}")
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["s3:*"], "Resource": "arn:aws:s3:::*"}]}
            self.radosgw_admin("role-policy", "put", f"--role-name={cfg.sts_role}", "--policy-name=s3-all",
                               f"--policy-doc={json.dumps(policy, separators=(',', ':'))}")

    def howto(self) -> str:
        cfg = self.cfg
        make_args = " STACK_ARGS=--test" if cfg.name == "test-stack" else ""
        rel = os.path.relpath(cfg.ca_file, Path.cwd()) if str(cfg.ca_file).startswith(str(Path.cwd())) else cfg.ca_file
        return "\n".join([
            f"Gateway:  {cfg.gateway_url}  (https, CA {rel}; also {cfg.gateway_http_url})",
            f"RGW:      {cfg.rgw_endpoint}   Envoy admin: {cfg.admin_url}   logs: {cfg.log_dir}",
            f"Env:      . {cfg.state_dir / 'env.sh'}",
            "",
            "Get a token (users: admin, testuser = admin role; user = no admin role):",
            f"  TOKEN=$(make -s token{make_args} USER=admin)",
            "Call the token service (curl, as clients in the field call it):",
            f'  curl -X PUT -H "Authorization: Bearer $TOKEN" --cacert {rel} '
            f"--resolve {GATEWAY_HOST}:{cfg.ports['https']}:127.0.0.1 {cfg.gateway_url}/apis/sts/token",
        ])

    # ---- tokens
    def token(self, user: str = "admin", password: str | None = None, via: str = "https") -> str:
        """A JWT for `user` from the issuer through the gateway (password grant, client shasta)."""
        import requests

        install_gateway_resolver()
        base = self.cfg.gateway_url if via == "https" else self.cfg.gateway_http_url
        r = requests.post(f"{base}{self.cfg.realm_path}/protocol/openid-connect/token",
                          data={"grant_type": "password", "client_id": CLIENT_ID, "username": user,
                                "password": password or user},
                          verify=self.ca_file, timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]

    def _control(self, path: str, body: dict | None = None) -> Any:
        req = urllib.request.Request(f"{self.cfg.control_url}{path}",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise StackError(f"issuer control {path}: {e.code} {e.read().decode()}") from None

    def control_token(self, username: str = "admin", claims: dict | None = None, expires_in: int = 3600,
                      kid: str | None = None, unpublished: bool = False, header: dict | None = None) -> str:
        """A token signed by the issuer (its current key, or `kid`, or a key never published when
        `unpublished`), with Keycloak-like claims for `username`; `claims` override them (None
        removes one); `expires_in` may be negative (an expired token); `header` overrides header fields."""
        body = {"username": username, "claims": claims or {}, "expires_in": expires_in,
                "unpublished": unpublished, "header": header or {}}
        if kid is not None:
            body["kid"] = kid
        return self._control("/control/token", body)["token"]

    def rotate_keys(self, keep_old: bool = False) -> str:
        """Make a new RS256 signing key current; keep_old keeps the old one in the JWKS. Returns the new kid."""
        return self._control("/control/rotate", {"keep_old": keep_old})["kid"]

    def jwks(self) -> dict:
        """The issuer's JWKS (straight from the issuer, not through the gateway)."""
        return self._control("/control/jwks")

    # ---- clients
    def gateway_request(self, method: str, path: str, token: str | None = None, via: str = "https",
                        **kwargs: Any):  # type: ignore[no-untyped-def]
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
        return boto3.client("s3", endpoint_url=self.cfg.rgw_endpoint, region_name="us-east-1",
                            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}), **kw)

    def sts_client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("sts", endpoint_url=self.cfg.rgw_endpoint, region_name="us-east-1",
                            aws_access_key_id=self.cfg.access_key, aws_secret_access_key=self.cfg.secret_key)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="store_true", help="the test stack (other ports, target/test-stack/)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start every part (idempotent; restarts dead parts)")
    sub.add_parser("down", help="stop every part started by up (by pid)")
    sub.add_parser("status", help="show which parts run")
    t = sub.add_parser("token", help="print a JWT obtained through the gateway (password grant)")
    t.add_argument("user", nargs="?", default="admin")
    t.add_argument("--http", action="store_true", help="use the plain http listener")
    sub.add_parser("env", help="print the environment (as in env.sh)")
    sub.add_parser("tls", help="only generate the CA and server certificate")
    sub.add_parser("render", help="print the Envoy config the stack runs")
    sub.add_parser("howto", help="print how to get a token and call the token service")
    args = ap.parse_args(argv)
    stack = Stack(Config.from_env(test=args.test))
    try:
        if args.cmd == "up":
            try:
                stack.up()
            except BaseException:
                log("up failed; parts that did start keep running (`make down` stops them)")
                raise
        elif args.cmd == "down":
            stack.down()
            log(f"{stack.cfg.name} down")
        elif args.cmd == "status":
            for name, pid in stack.status().items():
                print(f"{name:10} {'running, pid ' + str(pid) if pid else 'stopped'}")
            return 0 if all(stack.status().values()) else 3
        elif args.cmd == "token":
            if not stack.envoy.alive():
                raise StackError(f"the gateway of {stack.cfg.state_dir} is not running: start it with `make up`")
            import requests

            try:
                print(stack.token(args.user, via="http" if args.http else "https"))
            except requests.HTTPError as e:
                raise StackError(f"token request failed: {e.response.status_code} {e.response.text}") from None
            except requests.RequestException as e:
                raise StackError(f"token request failed: {e}") from None
        elif args.cmd == "env":
            for k, v in stack.cfg.env_vars().items():
                print(f"export {k}={shlex.quote(v)}")
        elif args.cmd == "tls":
            stack.ensure_tls()
        elif args.cmd == "howto":
            print(stack.howto())
        elif args.cmd == "render":
            import yaml

            print(yaml.safe_dump(stack.render_envoy(), sort_keys=False, width=120))
    except StackError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
