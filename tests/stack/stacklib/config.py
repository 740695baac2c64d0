"""The stack's settings: ports, directories, keys, URLs and the environment it exports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
ISSUER_DIR = REPO / "tests" / "stack" / "issuer"
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
    # Keycloak: outside every stack's 8080-9901 range moved by 0, 10000 or 20000 (make istio-e2e).
    "keycloak": 28180,  # Keycloak (http, /keycloak/...), Envoy cluster `keycloak`
    "keycloak_mgmt": 29180,  # Keycloak's management interface (bound, unused: no health/metrics)
}
PORT_ENV = {
    "https": "STACK_HTTPS_PORT",
    "http": "STACK_HTTP_PORT",
    "admin": "STACK_ADMIN_PORT",
    "rgw": "STACK_RGW_PORT",
    "issuer": "STACK_ISSUER_PORT",
    "control": "STACK_ISSUER_CONTROL_PORT",
    "mon": "STACK_MON_PORT",
    "keycloak": "STACK_KEYCLOAK_PORT",
    "keycloak_mgmt": "STACK_KEYCLOAK_MGMT_PORT",
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
    # Keycloak's issuer, as the gateway serves it (the field's URL).
    issuer_url: str = f"https://{GATEWAY_HOST}/keycloak/realms/{REALM}"
    # The mock issuer's (oauth2-mock-server): its own URL, a second issuer of the plugin.
    mock_issuer_url: str = f"https://{GATEWAY_HOST}/mock/realms/{REALM}"
    keycloak_home: Path = REPO / "target" / "keycloak" / "keycloak-26.5.6"
    keycloak_start_timeout: float = 240.0
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
    def from_env(cls, test: bool = False, env: dict[str, str] | None = None) -> Config:
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
            ("mock_issuer_url", "STACK_MOCK_ISSUER_URL"),
            ("keycloak_home", "STACK_KEYCLOAK_HOME"),
            ("envoy_bin", "STACK_ENVOY_BIN"),
            ("wasm", "STACK_WASM"),
            ("node_bin", "STACK_NODE_BIN"),
        ]:
            if env.get(var):
                kw[attr] = env[var]
        if "keycloak_home" in kw:
            kw["keycloak_home"] = Path(kw["keycloak_home"]).resolve()
        if "envoy_bin" in kw:
            kw["envoy_bin"] = Path(kw["envoy_bin"])
        if "wasm" in kw:
            kw["wasm"] = Path(kw["wasm"]).resolve()
        return cls(state_dir=state_dir, ports=ports, name="test-stack" if test else "stack", **kw)

    @classmethod
    def for_tests(cls) -> Config:
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
            "MOCK_ISSUER": self.mock_issuer_url,
            "KEYCLOAK_URL_DIRECT": f"http://127.0.0.1:{self.ports['keycloak']}/keycloak",
            "ISSUER_CONTROL_URL": self.control_url,
            "STS_ACCESS_KEY_ID": self.access_key,
            "STS_SECRET_ACCESS_KEY": self.secret_key,
            "STS_ROLE_ARN": self.role_arn,
            "STS_USER": self.sts_user,
            "CURL_RESOLVE": f"{GATEWAY_HOST}:{self.ports['https']}:127.0.0.1",
        }
