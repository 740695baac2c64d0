"""Deployment and operations, end to end on the real Envoy 1.40 + Ceph RGW + issuer:

- the files generated from envoy/sts-gateway.yaml are up to date (rerun the generator, diff);
- the wasm filter config of the generated Istio EnvoyFilter (module fetched over http with its
  sha256, Istio cluster names `outbound|8080||...` mapped onto local clusters, keys from the
  process environment through host_env_keys) mints 201 in the real Envoy;
- with the keys only in Envoy's process environment, /config_dump holds no secret;
- the filter config delivered by file-based ECDS is replaced (new STS keys, new issuer list)
  without restarting Envoy while a client mints continuously, with no failed request;
- the filter's metrics move when they should, Envoy tags them for Prometheus, and the per-mint
  log line carries caller, session, tenant, outcome, latency and request id, never a secret.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "envoy"))

import generate  # noqa: E402  (envoy/generate.py)
from generate import replace_wasm_filter, wasm_filters  # noqa: E402
from helpers import TOKEN_PATH, mint  # noqa: E402
from stacklib.config import DEV_SECRET_KEY  # noqa: E402

WASM = "envoy.filters.http.wasm"
ISTIO_RGW = "outbound|8080||rgw.ceph.svc.cluster.local"
ISTIO_KEYCLOAK = "outbound|8080||keycloak.services.svc.cluster.local"
ISTIO_ARTIFACTS = "outbound|8080||artifacts.services.svc.cluster.local"


# ------------------------------------------------------------------ helpers


def leaves(doc, path: str = "") -> dict:
    """{dotted path: value} of every scalar and list in a mapping (lists are values)."""
    if isinstance(doc, dict):
        out: dict = {}
        for k, v in doc.items():
            out.update(leaves(v, f"{path}.{k}" if path else k))
        return out
    return {path: doc}


def expected_leaves(src: dict, target: str) -> dict:
    """What the source says a target's plugin configuration holds (target values win)."""
    return {**leaves(src["plugin"]), **leaves(src["targets"][target]["plugin"])}


def envoy_pid(stack) -> int:
    pid = stack.envoy.pid()
    assert pid and stack.envoy.alive()
    return pid


def config_dump(stack) -> str:
    r = requests.get(f"{stack.admin_url}/config_dump", timeout=5)
    assert r.status_code == 200
    return r.text


def prometheus(stack) -> str:
    r = requests.get(f"{stack.admin_url}/stats/prometheus", timeout=5)
    assert r.status_code == 200
    return r.text


def prom_value(text: str, name: str, labels: str = "") -> float:
    """Value of one Prometheus sample `name{labels}` (labels exactly as Envoy prints them), 0 if absent."""
    pat = re.compile(r"^" + re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)$", re.M)
    m = pat.search(text)
    return float(m.group(1)) if m else 0.0


@pytest.fixture()
def wasm_server(stack):
    """Serves the module Envoy fetches (the EnvoyFilter's remote code) on a loopback port."""
    body = stack.cfg.wasm.read_bytes()
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/wasm")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # noqa: ARG002
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], hashlib.sha256(body).hexdigest(), hits
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------ 1. one source, generated manifests


def test_generated_files_are_up_to_date(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "envoy" / "generate.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    files = generate.generate(generate.load_source(), generate.TEMPLATE.read_text())
    assert len(files) == 7  # + envoy/istio/envoyfilter-before-router-cmn.yaml
    for rel in files:
        fresh = (tmp_path / rel).read_text()
        assert fresh == files[rel]
        assert (REPO / rel).read_text() == fresh, f"{rel} is stale: run `make manifests` and commit it"


def test_manifests_follow_the_source_and_hold_no_secret():
    src = generate.load_source()
    files = generate.generate(src, generate.TEMPLATE.read_text())
    # envoy.yaml embeds exactly the local plugin config of the source.
    local = yaml.safe_load(files["envoy/envoy.yaml"])
    configs = [json.loads(f["typed_config"]["config"]["configuration"]["value"]) for f in wasm_filters(local)]
    # The oracle is the source itself, read here without the generator's merge: every leaf of
    # `plugin` and of the target's `plugin` (the target's wins) is in the output, and nothing else.
    assert len(configs) == 2 and all(leaves(c) == expected_leaves(src, "local") for c in configs)
    for lst in local["static_resources"]["listeners"]:
        assert lst["filter_chains"][0]["filters"][0]["typed_config"]["normalize_path"] is True
    istio_cfg = json.loads(
        yaml.safe_load(files["envoy/istio/envoyfilter.yaml"])["spec"]["configPatches"][0]["patch"]["value"][
            "typed_config"
        ]["config"]["configuration"]["value"]
    )
    assert leaves(istio_cfg) == expected_leaves(src, "istio")
    assert "access_key_id" not in istio_cfg["rgw"] and "secret_access_key" not in istio_cfg["rgw"]
    assert istio_cfg["rgw"]["cluster"] == ISTIO_RGW
    assert {i["jwks"]["cluster"] for i in istio_cfg["issuers"]} == {ISTIO_KEYCLOAK}
    secret = DEV_SECRET_KEY
    for rel, text in files.items():
        if rel == "envoy/envoy.yaml":  # its comment shows how to export the dev keys; the config holds none
            text = json.dumps(local)
        assert secret not in text and "DEVONLY" not in text, rel

    after, before = (
        yaml.safe_load(files[f"envoy/istio/{n}.yaml"]) for n in ("envoyfilter", "envoyfilter-before-router")
    )
    for ef, sub, op in (
        (after, "envoy.filters.http.ext_authz", "INSERT_AFTER"),
        (before, "envoy.filters.http.router", "INSERT_BEFORE"),
    ):
        assert ef["kind"] == "EnvoyFilter"
        assert ef["spec"]["workloadSelector"]["labels"] == {"istio": "ingressgateway"}
        (p,) = ef["spec"]["configPatches"]
        assert p["applyTo"] == "HTTP_FILTER" and p["match"]["context"] == "GATEWAY"
        assert p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == sub
        assert p["patch"]["operation"] == op
        cfg = p["patch"]["value"]["typed_config"]["config"]
        assert cfg["failure_policy"] == "FAIL_RELOAD"
        assert json.loads(cfg["configuration"]["value"]) == istio_cfg
        assert cfg["vm_config"]["environment_variables"] == {"host_env_keys": generate.ENV_KEYS}
    assert after["spec"]["configPatches"][0]["patch"]["value"] == before["spec"]["configPatches"][0]["patch"]["value"]

    wp = yaml.safe_load(files["envoy/istio/wasmplugin.yaml"])["spec"]
    assert wp["pluginConfig"] == istio_cfg
    assert wp["failStrategy"] == "FAIL_CLOSE" and wp["phase"] == "STATS"
    assert wp["vmConfig"]["env"] == [{"name": k, "valueFrom": "HOST"} for k in generate.ENV_KEYS]
    assert wp["sha256"] == src["istio"]["sha256_placeholder"]
    patch = yaml.safe_load(files["envoy/istio/gateway-deployment-patch.yaml"])
    env = patch["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["valueFrom"]["secretKeyRef"]["name"] for e in env] == [src["istio"]["secret_name"]] * 2

    # A release fills in the sha256 (and url) and changes nothing else.
    sha = hashlib.sha256(b"module").hexdigest()
    rel = generate.generate(src, generate.TEMPLATE.read_text(), sha256=sha, url="https://example.invalid/m.wasm")
    placeholder = src["istio"]["sha256_placeholder"]
    for name, text in files.items():
        expect = text.replace(placeholder, sha).replace(src["istio"]["wasm_url"], "https://example.invalid/m.wasm")
        assert rel[name] == expect, name
    assert placeholder not in rel["envoy/istio/wasmplugin.yaml"]


# ------------------------------------------------------------------ 1b. the EnvoyFilter's config in the real Envoy


def test_istio_envoyfilter_config_mints_in_real_envoy(stack, wasm_server):
    """The wasm filter exactly as the generated EnvoyFilter inserts it (with a release's sha256):
    Envoy fetches the module over http and checks the sha256, the callouts use the Istio cluster
    names (defined here as plain clusters pointing at the local RGW and at the gateway's own
    /keycloak/ routes, the way a real gateway fronts Keycloak), and the keys come from Envoy's
    process environment."""
    port, sha, hits = wasm_server
    src = generate.load_source()
    files = generate.generate(src, generate.TEMPLATE.read_text(), sha256=sha)
    ef = yaml.safe_load(files["envoy/istio/envoyfilter.yaml"])
    value = ef["spec"]["configPatches"][0]["patch"]["value"]
    assert value["name"] == WASM
    code = value["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert code["sha256"] == sha and code["http_uri"]["cluster"] == ISTIO_ARTIFACTS
    keys = stack.sts_keys
    stack.restart_envoy(
        envoy_patch=lambda doc: replace_wasm_filter(doc, value),
        extra_clusters=[
            stack.cluster(ISTIO_RGW, stack.cfg.ports["rgw"]),
            stack.cluster(ISTIO_KEYCLOAK, stack.cfg.ports["http"]),
            stack.cluster(ISTIO_ARTIFACTS, port),
        ],
    )  # the keys: Envoy's environment
    assert hits and set(hits) == {"/sts-gateway/0.1.0/sts_gateway.wasm"}  # once per listener's filter config
    assert stack.wait_for_filter_keys(), stack.envoy_log()[-3000:]
    r = mint(stack, stack.token("admin"))
    assert r.status_code == 201, r.text
    assert r.headers.get("content-type") == "application/json", (r.headers, r.text)
    assert r.json()["Credentials"]["EndpointURL"] == "http://rgw.local:8080"  # from the Istio config
    assert "3 issuer(s)" in stack.envoy_log()
    dump = config_dump(stack)
    assert ISTIO_RGW in dump and keys["secret_access_key"] not in dump


def test_envoyfilter_with_a_wrong_sha256_fails_closed(stack, wasm_server):
    """A module whose sha256 does not match is never run: Envoy starts, the filter fails closed
    (503 on the token path), no credentials are minted."""
    port, sha, hits = wasm_server
    files = generate.generate(generate.load_source(), generate.TEMPLATE.read_text(), sha256="0" * 64)
    value = yaml.safe_load(files["envoy/istio/envoyfilter.yaml"])["spec"]["configPatches"][0]["patch"]["value"]
    stack.restart_envoy(
        envoy_patch=lambda doc: replace_wasm_filter(doc, value),
        wait_keys=False,
        extra_clusters=[stack.cluster(ISTIO_ARTIFACTS, port)],
    )
    assert hits  # fetched, and refused
    log = stack.envoy_log()
    assert "Retry limit exceeded for fetching data from remote data source" in log
    assert "Plugin sts-gateway failed to load" in log
    assert "configured: prefix" not in log
    assert mint(stack, stack.token("admin")).status_code == 503


# ------------------------------------------------------------------ 3. secrets outside the config


def test_stack_keys_come_from_envoy_environment_never_in_config_dump(stack):
    """The local stack keeps the keys as the Istio gateway does: in Envoy's process environment,
    passed into the VM by host_env_keys. The positive controls: Envoy's environment holds the
    secret, the filter mints with it, and the dump holds the variable names."""
    keys = stack.sts_keys
    environ = Path(f"/proc/{envoy_pid(stack)}/environ").read_bytes().split(b"\0")
    assert f"STS_GATEWAY_SECRET_ACCESS_KEY={keys['secret_access_key']}".encode() in environ
    r = mint(stack, stack.token("admin"))
    assert r.status_code == 201, r.text
    dump = config_dump(stack)
    assert '"host_env_keys"' in dump and "STS_GATEWAY_SECRET_ACCESS_KEY" in dump
    assert keys["secret_access_key"] not in dump
    assert keys["access_key_id"] not in dump
    assert '"secret_access_key"' not in dump
    rendered = (stack.cfg.state_dir / "envoy" / "envoy.yaml").read_text()
    assert keys["secret_access_key"] not in rendered and "host_env_keys" in rendered
    assert keys["secret_access_key"] not in stack.envoy_log()


def test_inline_key_values_do_show_in_config_dump(stack):
    """The control: Envoy's environment_variables.key_values are config, so the dump shows them;
    that is why the manifests and the local stack use host_env_keys (Istio: valueFrom HOST)."""
    keys = stack.sts_keys
    values = {
        "STS_GATEWAY_ACCESS_KEY_ID": keys["access_key_id"],
        "STS_GATEWAY_SECRET_ACCESS_KEY": keys["secret_access_key"],
    }
    stack.restart_envoy(envoy_patch=lambda doc: generate.set_env_vars(doc, {"key_values": values}))
    assert mint(stack, stack.token("admin")).status_code == 201
    assert keys["secret_access_key"] in config_dump(stack)


# ------------------------------------------------------------------ 4. rotation without restart (ECDS)


def _ecds_resource(filter_config: dict) -> str:
    return yaml.safe_dump(
        {
            "resources": [
                {
                    "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": WASM,
                    "typed_config": filter_config,
                }
            ]
        },
        sort_keys=False,
    )


def _swap(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, path)  # rename(2): Envoy sees the move of a complete file


ECDS_STAT = "extension_config_discovery.http_filter.envoy.filters.http.wasm."


def _ecds_reloads(stack) -> int:
    stats = stack.envoy_stats(ECDS_STAT)
    assert stats.get(ECDS_STAT + "config_fail", 0) == 0
    return stats[ECDS_STAT + "config_reload"]


def test_rotation_through_ecds_without_restart(stack, tmp_path):
    keys = stack.sts_keys
    new_key, new_secret = "ROTATEDSTSACCESSKEY2", f"RotatedStsSecret{uuid.uuid4().hex}"[:40]
    new_issuer = "https://auth.cmn.example.local/keycloak/realms/shasta"
    default_filter = wasm_filters(stack.render_envoy())[0]["typed_config"]
    old_plugin = json.loads(default_filter["config"]["configuration"]["value"])
    new_plugin = copy.deepcopy(old_plugin)
    new_plugin["rgw"].update(access_key_id=new_key, secret_access_key=new_secret)
    # The new issuer shares the mock issuer's JWKS (its tokens are the control API's).
    new_plugin["issuers"].append({"issuer": new_issuer, "jwks": stack.mock_jwks(old_plugin)})
    new_filter = copy.deepcopy(default_filter)
    new_filter["config"]["configuration"]["value"] = json.dumps(new_plugin)

    ecds = tmp_path / "sts-gateway-filter.yaml"
    ecds.write_text(_ecds_resource(default_filter))
    discovery = {
        "name": WASM,
        "config_discovery": {
            "config_source": {"path_config_source": {"path": str(ecds)}, "resource_api_version": "V3"},
            "type_urls": [generate.WASM_TYPE],
        },
    }
    stack.restart_envoy(envoy_patch=lambda doc: replace_wasm_filter(doc, discovery))
    pid = envoy_pid(stack)
    token = stack.token("admin")
    other_iss = stack.control_token("admin", claims={"iss": new_issuer})
    assert mint(stack, token).status_code == 201
    assert mint(stack, other_iss).status_code == 401  # not an accepted issuer yet
    reloads = _ecds_reloads(stack)

    # RGW: the token-service user gets a second key pair (the operator's first rotation step).
    stack.radosgw_admin(
        "key",
        "create",
        f"--uid={keys['user']}",
        "--key-type=s3",
        f"--access-key={new_key}",
        f"--secret-key={new_secret}",
    )
    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def minter():
        s = requests.Session()  # one keep-alive connection through the swap
        s.verify = stack.ca_file
        while not stop.is_set():
            try:
                r = s.put(stack.gateway_url + TOKEN_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=10)
                statuses.append(r.status_code)
            except requests.RequestException as e:
                errors.append(repr(e))

    t = threading.Thread(target=minter, daemon=True)
    try:
        t.start()
        deadline = time.monotonic() + 20
        while len(statuses) < 5 and time.monotonic() < deadline:  # traffic before the swap
            time.sleep(0.05)
        before_swap = len(statuses)
        assert before_swap >= 5, (before_swap, errors[:3])
        _swap(ecds, _ecds_resource(new_filter))
        deadline = time.monotonic() + 10
        while _ecds_reloads(stack) <= reloads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ecds_reloads(stack) == reloads + 1, stack.envoy_log()[-3000:]
        at_reload = len(statuses)
        deadline = time.monotonic() + 30
        while len(statuses) <= at_reload + 10 and time.monotonic() < deadline:  # traffic after it
            time.sleep(0.05)
        stop.set()
        t.join(15)
        assert not errors, errors[:3]
        assert len(statuses) > at_reload + 10, (before_swap, at_reload, len(statuses))
        assert set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
        print(
            f"rotation: {len(statuses)} mints on one connection, {before_swap} before the swap, "
            f"{len(statuses) - statuses.count(201)} failed"
        )

        # The old key pair is removed from RGW: RGW refuses it, the gateway still mints (new keys).
        stack.radosgw_admin(
            "key", "rm", f"--uid={keys['user']}", "--key-type=s3", f"--access-key={keys['access_key_id']}"
        )
        import botocore.exceptions

        with pytest.raises(botocore.exceptions.ClientError):
            stack.s3_client().list_buckets()
        for _ in range(6):  # fresh connections: both workers
            assert mint(stack, token, headers={"Connection": "close"}).status_code == 201
        # The new issuer list is in effect.
        assert mint(stack, other_iss).status_code == 201
        assert envoy_pid(stack) == pid
        assert new_secret not in stack.envoy_log()
    finally:
        stop.set()
        t.join(15)
        # Give the stack its original key pair back.
        stack.radosgw_admin(
            "key",
            "create",
            f"--uid={keys['user']}",
            "--key-type=s3",
            f"--access-key={keys['access_key_id']}",
            f"--secret-key={keys['secret_access_key']}",
            check=False,
        )
        stack.radosgw_admin(
            "key", "rm", f"--uid={keys['user']}", "--key-type=s3", f"--access-key={new_key}", check=False
        )


# ------------------------------------------------------------------ 5. metrics and the log line


def _wait_stat(stack, name: str, at_least: int, timeout: float = 8.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        v = stack.envoy_stats().get(name, 0)
        if v >= at_least or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def _latency_count(stack) -> float:
    return prom_value(prometheus(stack), "sts_gateway_rgw_latency_ms_count")


def test_metrics_move_when_they_should(stack):
    # JWKS fetch counters of a fresh Envoy.
    stack.restart_envoy()
    s = stack.envoy_stats()
    assert s["wasmcustom.sts_gateway_jwks_fetches_ok"] >= 1
    assert s["wasmcustom.sts_gateway_jwks_fetches_failed"] == 0

    pre = stack.envoy_stats()
    lat0 = _latency_count(stack)
    token = stack.token("admin")
    assert mint(stack, token).status_code == 201
    assert mint(stack, None).status_code == 401
    assert mint(stack, "not.a.jwt").status_code == 401
    assert mint(stack, stack.control_token("admin", expires_in=-3600)).status_code == 401
    assert mint(stack, stack.token("user")).status_code == 403
    post = stack.envoy_stats()
    delta = {k[len("wasmcustom.sts_gateway_") :]: post.get(k, 0) - pre.get(k, 0) for k in post}
    expect = {
        "requests_minted": 1,
        "requests_missing": 1,
        "requests_invalid": 1,
        "requests_expired": 1,
        "requests_forbidden": 1,
        "rgw_answers_2xx": 1,
        "rgw_answers_4xx": 0,
        "rgw_answers_5xx": 0,
    }
    assert {k: delta.get(k) for k in expect} == expect, delta
    # The latency histogram shows up at Envoy's next stats flush (every 5 s by default).
    deadline = time.monotonic() + 20  # several flush periods: a loaded machine may miss one
    while _latency_count(stack) < lat0 + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _latency_count(stack) == lat0 + 1

    # RGW down: Envoy answers the callout 503 itself -> a 5xx RGW answer.
    stack.stop_rgw()
    try:
        assert mint(stack, token).status_code == 503
    finally:
        stack.start_rgw()
    assert (
        stack.envoy_stats()["wasmcustom.sts_gateway_rgw_answers_5xx"]
        == post.get("wasmcustom.sts_gateway_rgw_answers_5xx", 0) + 1
    )

    # Prometheus: one metric per family, the reason/class as a label (envoy.yaml stats_tags);
    # Envoy prints its custom `wasmcustom` namespace without the namespace and the envoy_ prefix.
    text = prometheus(stack)
    assert prom_value(text, "sts_gateway_requests", 'reason="minted"') >= 1
    assert prom_value(text, "sts_gateway_requests", 'reason="forbidden"') >= 1
    assert prom_value(text, "sts_gateway_rgw_answers", 'class="2xx"') >= 1
    assert prom_value(text, "sts_gateway_jwks_fetches", 'result="ok"') >= 1
    assert 'sts_gateway_rgw_latency_ms_bucket{le="5"}' in text
    assert "envoy_wasmcustom" not in text


def test_jwks_failures_are_counted(stack):
    stack.restart_envoy(
        plugin_overrides={
            "issuers": [
                {
                    "issuer": stack.cfg.issuer_url,
                    "jwks": {
                        "cluster": "keycloak",
                        "authority": "api-gw-service-nmn.local",
                        "path": "/no-such-jwks",
                        "retry_seconds": 1,
                    },
                }
            ]
        },
        wait_keys=False,
    )
    assert _wait_stat(stack, "wasmcustom.sts_gateway_jwks_fetches_failed", 2) >= 2  # retried
    assert stack.envoy_stats()["wasmcustom.sts_gateway_jwks_fetches_ok"] == 0
    r = mint(stack, stack.token("admin"))
    assert r.status_code == 503
    assert stack.envoy_stats()["wasmcustom.sts_gateway_requests_keys_unavailable"] >= 1


def test_mint_log_line(stack):
    # An admin's tenant header scopes only with tenants.scope_admins and a listed tenant.
    with stack.envoy_variant(plugin_overrides={"tenants": {"scope_admins": True, "names": ["tenant-a"]}}):
        _mint_log_line(stack)


def _mint_log_line(stack):
    request_id = f"ops-{uuid.uuid4()}"
    token = stack.token("admin")
    r = mint(stack, token, headers={"x-request-id": request_id, "Cray-Tenant-Name": "tenant-a"})
    assert r.status_code == 201, r.text
    creds = r.json()["Credentials"]
    deadline = time.monotonic() + 20
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = [ln for ln in stack.envoy_log().splitlines() if "sts-gateway: mint " in ln and request_id in ln]
        time.sleep(0.05)
    assert len(lines) == 1, stack.envoy_log()[-3000:]
    line = lines[0]
    m = re.search(
        r'sts-gateway: mint caller="admin" session=(\S+) tenant=tenant-a status=201 outcome=minted '
        r'rgw_status=200 latency_ms=(\d+) request_id="' + re.escape(request_id) + '"',
        line,
    )
    assert m, line
    assert m.group(1).startswith("admin")
    log = stack.envoy_log()
    for secret in (
        stack.sts_keys["secret_access_key"],
        creds["SecretAccessKey"],
        creds["SessionToken"],
        token,
        token.split(".")[2],
    ):
        assert secret not in log
