"""What the end-to-end tests, the load test and the benchmark share (one place, no copies).

TOKEN_PATH, mint(stack, token, **kw)     the token request through the gateway
VM_FAILURE_MARKERS, vm_counters(stack)    signs of a panicking or reloaded Wasm VM
rss_kb(pid)                               a process's resident memory
python_client_example(stack, ...)           the Python client clients use (requests_oauthlib)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TOKEN_PATH = "/apis/sts/token"

# What Envoy 1.40 and proxy-wasm write when the filter panics or its VM dies.
VM_FAILURE_MARKERS = (
    "panicked",
    "Wasm VM failed",
    "Plugin configured to fail closed",
    "Function: proxy_",
    "RuntimeError",
    "[critical]",
)


def mint(stack, token: str | None, **kwargs):  # type: ignore[no-untyped-def]
    """PUT the token path (https unless via="http"); `token` becomes `Authorization: Bearer`."""
    return stack.gateway_request("PUT", TOKEN_PATH, token=token, **kwargs)


def vm_counters(stack) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Envoy's Wasm VM reload and creation counters: they move when a VM died and was replaced."""
    stats = stack.envoy_stats("wasm.")
    return {k: v for k, v in stats.items() if "vm_reload" in k or k.endswith("v8.created")}


def rss_kb(pid: int | None) -> int | None:
    """VmRSS of a process in kB (None without a pid or a VmRSS line)."""
    if not pid:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def python_client_example(stack, username: str = "testuser", password: str | None = None):  # type: ignore[no-untyped-def]
    """The Python client of the token service as clients run it (requests_oauthlib password
    grant with client `shasta` in realm `shasta`, then PUT the token path with the session),
    pointed at this stack's gateway. Keycloak's users have their name as password (the default).
    Returns (the OAuth2 token dict, the PUT's response)."""
    import oauthlib.oauth2
    import requests_oauthlib

    realm = "shasta"
    client_id = "shasta"
    base = stack.gateway_url
    token_url = f"{base}/keycloak/realms/{realm}/protocol/openid-connect/token"
    sts_url = f"{base}{TOKEN_PATH}"
    oauth_client = oauthlib.oauth2.LegacyApplicationClient(client_id=client_id)
    session = requests_oauthlib.OAuth2Session(
        client=oauth_client,
        token_updater=lambda t: None,
        auto_refresh_url=token_url,
        auto_refresh_kwargs={"client_id": client_id},
    )
    session.verify = stack.ca_file
    password = password or username
    token = session.fetch_token(token_url=token_url, client_id=client_id, username=username, password=password)
    return token, session.put(sts_url)


def curl_run(stack, *args: str, cacert: bool = True) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """curl with the gateway's name resolved to 127.0.0.1 (`--resolve`), trusting the stack's CA
    (or, with cacert=False, no CA at all); prints the body, then the status on a last line."""
    port = stack.cfg.ports["https"]
    trust = ["--cacert", stack.ca_file] if cacert else []
    return subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "15", *trust]
        + ["--resolve", f"api-gw-service-nmn.local:{port}:127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, CURL_CA_BUNDLE=""),
    )


def curl(stack, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(status, body) of a curl call that must succeed at the transport level."""
    r = curl_run(stack, *args)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body
