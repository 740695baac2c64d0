"""Tests of the local stack itself: each would fail if a part did not start or was miswired.

They do not test the filter's minting (tests/e2e/test_filter.py does); they only check that
requests under /apis/sts/ reach the filter route.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid

import boto3
import jwt
import pytest
import requests
from botocore.exceptions import ClientError

from conftest import REPO, run_make
from helpers import curl, curl_run, mint
from stack import StackError, port_open, tcp_blackhole
from stacklib.procs import proc_gone

JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
ROLES = {"admin": ["admin"], "testuser": ["admin"], "user": ["user"]}


def gateway_jwks(stack) -> dict:
    r = stack.gateway_request("GET", "/keycloak/realms/shasta/protocol/openid-connect/certs")
    assert r.status_code == 200, r.text
    return r.json()


def mock_gateway_jwks(stack) -> dict:
    """The mock issuer's JWKS through the gateway's /mock/ route."""
    r = stack.gateway_request("GET", "/mock/realms/shasta/jwks")
    assert r.status_code == 200, r.text
    return r.json()


def verify_token(stack, token: str, mock: bool = False) -> dict:
    """Check the signature against the JWKS served through the gateway (Keycloak's, or the mock
    issuer's); return the claims."""
    header = jwt.get_unverified_header(token)
    jwks = mock_gateway_jwks(stack) if mock else gateway_jwks(stack)
    keys = {k["kid"]: k for k in jwks["keys"]}
    assert header["kid"] in keys, "token kid not in the JWKS"
    assert header["alg"] == "RS256"
    key = jwt.PyJWK(keys[header["kid"]])
    issuer = stack.cfg.mock_issuer_url if mock else stack.cfg.issuer_url
    return jwt.decode(token, key, algorithms=["RS256"], audience="shasta", issuer=issuer)


# ------------------------------------------------------------------ parts running


def test_every_part_runs(stack):
    status = stack.status()
    assert all(status.values()), status
    for port in ("https", "http", "admin", "rgw", "issuer", "control"):
        assert port_open(stack.cfg.ports[port]), port


def test_envoy_admin_ready(stack):
    r = requests.get(f"{stack.admin_url}/ready", timeout=5)
    assert r.status_code == 200 and r.text.strip() == "LIVE"


def test_envoy_loaded_the_wasm_filter(stack):
    dump = requests.get(f"{stack.admin_url}/config_dump", timeout=5).json()
    text = json.dumps(dump)
    assert "envoy.filters.http.wasm" in text
    assert "FAIL_RELOAD" in text
    assert str(stack.cfg.wasm) in text


@pytest.mark.parametrize("via", ["https", "http"])
def test_plain_route_bypasses_filter(stack, via):
    r = stack.gateway_request("GET", "/plain/healthz", via=via)
    assert r.status_code == 200
    assert r.headers.get("server") == "envoy"


def test_unknown_path_is_404(stack):
    assert stack.gateway_request("GET", "/nothing-here").status_code == 404


def test_envoy_yaml_runs_as_it_is(stack, tmp_path):
    """envoy/envoy.yaml, unmodified, from a directory laid out like the repo after make build/up."""
    (tmp_path / "target" / "stack" / "tls").mkdir(parents=True)
    (tmp_path / "target" / "sts_gateway.wasm").symlink_to(stack.cfg.wasm)
    for name in ("server.crt", "server.key"):
        (tmp_path / "target" / "stack" / "tls" / name).write_bytes((stack.cfg.tls_dir / name).read_bytes())

    def validate(env):
        return subprocess.run(
            [str(stack.cfg.envoy_bin), "--mode", "validate", "-c", str(REPO / "envoy" / "envoy.yaml")]
            + ["--disable-hot-restart"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    # As documented in envoy/envoy.yaml: the keys in Envoy's environment (host_env_keys).
    keys = stack.sts_keys
    without = {k: v for k, v in os.environ.items() if not k.startswith("STS_GATEWAY_")}
    r = validate(
        {
            **without,
            "STS_GATEWAY_ACCESS_KEY_ID": keys["access_key_id"],
            "STS_GATEWAY_SECRET_ACCESS_KEY": keys["secret_access_key"],
        }
    )
    assert r.returncode == 0 and " OK" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    # The control: without them the filter refuses its configuration, naming the variable.
    r = validate(without)
    assert r.returncode != 0 and "STS_GATEWAY_ACCESS_KEY_ID" in r.stdout + r.stderr


# ------------------------------------------------------------------ issuer through the gateway


def test_make_token_prints_only_a_jwt(stack):
    out = run_make("token").stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert JWT_RE.match(lines[0]), out
    claims = verify_token(stack, lines[0])
    assert claims["preferred_username"] == "admin"


@pytest.mark.parametrize("user", sorted(ROLES))
def test_token_claims_like_keycloak(stack, user):
    token = stack.token(user)
    claims = verify_token(stack, token)
    assert claims["iss"] == "https://api-gw-service-nmn.local/keycloak/realms/shasta"
    assert isinstance(claims["aud"], list) and "shasta" in claims["aud"]
    assert claims["azp"] == "shasta"
    assert claims["typ"] == "Bearer"
    assert claims["preferred_username"] == user
    assert claims["sub"]
    assert claims["resource_access"]["shasta"]["roles"] == ROLES[user]
    assert isinstance(claims["realm_access"]["roles"], list)
    assert isinstance(claims["groups"], list)
    assert 3500 <= claims["exp"] - int(time.time()) <= 3700
    assert claims["exp"] - claims["iat"] == 3600


def test_make_token_for_another_user(stack):
    token = run_make("token", "USER=user").stdout.strip()
    assert verify_token(stack, token)["resource_access"]["shasta"]["roles"] == ["user"]


def test_unknown_user_is_refused(stack):
    r = stack.gateway_request(
        "POST",
        "/keycloak/realms/shasta/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "shasta", "username": "nobody", "password": "x"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_grant"


def test_jwks_has_signing_then_encryption_key(stack):
    keys = gateway_jwks(stack)["keys"]
    assert keys[0]["use"] == "sig" and keys[0]["alg"] == "RS256" and keys[0]["kid"]
    enc = [k for k in keys if k.get("use") == "enc"]
    assert len(enc) == 1 and enc[0]["alg"] == "RSA-OAEP"
    assert keys.index(enc[0]) > 0
    assert all("d" not in k for k in keys), "private key material in the JWKS"


def test_discovery_through_gateway(stack):
    r = stack.gateway_request("GET", "/keycloak/realms/shasta/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == stack.cfg.issuer_url
    prefix = stack.cfg.issuer_url + "/protocol/openid-connect/"
    assert doc["token_endpoint"] == prefix + "token"
    assert doc["jwks_uri"] == prefix + "certs"
    assert "password" in doc["grant_types_supported"]


# ------------------------------------------------------------------ curl over https


def test_curl_healthz_over_https(stack):
    code, body = curl(stack, f"{stack.gateway_url}/apis/sts/healthz")
    assert code == 200, body
    assert json.loads(body) == {"Status": "ok"}


def test_gateway_certificate_is_from_the_stack_ca(stack):
    assert curl(stack, f"{stack.gateway_url}/plain/healthz")[0] == 200  # the control: with the CA
    r = curl_run(stack, f"{stack.gateway_url}/plain/healthz", cacert=False)
    assert r.returncode == 60, "the gateway's certificate should not be trusted without the stack CA"


# ------------------------------------------------------------------ RGW and its STS


def test_rgw_answers_s3_with_sts_user_keys(stack):
    resp = stack.s3_client().list_buckets()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_rgw_refuses_a_wrong_secret(stack):
    s3 = stack.s3_client(aws_access_key_id=stack.sts_keys["access_key_id"], aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError) as e:
        s3.list_buckets()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("region", ["", "us-east-1"])
def test_assume_role_straight_to_rgw(stack, region):
    keys = stack.sts_keys
    sts = boto3.client(
        "sts",
        endpoint_url=stack.rgw_endpoint,
        region_name=region,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
    )
    resp = sts.assume_role(RoleArn=keys["role_arn"], RoleSessionName="stack-test", DurationSeconds=3600)
    creds = resp["Credentials"]
    assert creds["AccessKeyId"] and creds["SecretAccessKey"] and creds["SessionToken"]
    # the cray CLI's way: boto3 with region_name=''
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.rgw_endpoint,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    bucket = f"stack-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello from a temporary credential")
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hello from a temporary credential"


def test_stop_and_start_rgw_keeps_data(stack):
    s3 = stack.s3_client()
    bucket = f"stack-restart-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    stack.stop_rgw()
    assert not stack.rgw.alive()
    assert not port_open(stack.cfg.ports["rgw"])
    stack.start_rgw()
    assert stack.s3_client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


# ------------------------------------------------------------------ fixture helpers


def running_plugin_config(stack) -> dict:
    """The plugin configuration Envoy runs, read back from its /config_dump."""
    dump = requests.get(f"{stack.admin_url}/config_dump", timeout=5).json()
    values = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") == "envoy.filters.http.wasm" and "typed_config" in node:
                values.append(node["typed_config"]["config"]["configuration"]["value"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dump)
    assert values, "no wasm filter in the config dump"
    return json.loads(values[0])


def test_restart_envoy_with_plugin_overrides(stack):
    stack.restart_envoy(plugin_overrides={"rgw": {"timeout_ms": 1234}, "audience": None})
    running = running_plugin_config(stack)
    assert running["rgw"]["timeout_ms"] == 1234
    assert "audience" not in running
    assert running["rgw"]["cluster"] == "rgw"  # the rest is the default
    assert "starting Envoy" in stack.envoy_log()
    assert stack.gateway_request("GET", "/plain/healthz").status_code == 200
    stack.restart_envoy()
    assert running_plugin_config(stack)["rgw"]["timeout_ms"] == 5000


def test_restart_envoy_with_a_callable_and_extra_cluster(stack):
    """A plugin callable and an extra cluster both reach the running Envoy: RGW is pointed at a
    cluster on a closed port, so a good token gets 503 (RGW unreachable) instead of 201."""

    def point_rgw_elsewhere(plugin):
        plugin["rgw"]["cluster"] = "rgw_down"
        return plugin

    stack.restart_envoy(
        plugin_overrides=point_rgw_elsewhere, extra_clusters=[stack.cluster("rgw_down", 1, connect_timeout="0.25s")]
    )
    assert running_plugin_config(stack)["rgw"]["cluster"] == "rgw_down"
    assert mint(stack, stack.token("admin")).status_code == 503


def test_blackhole_cluster_times_out(stack):
    with tcp_blackhole() as port:
        stack.restart_envoy(extra_clusters=[stack.cluster("slow", port)], envoy_patch=route_probe_to("slow"))
        t0 = time.monotonic()
        r = stack.gateway_request("GET", "/probe/x", via="http")
        assert r.status_code == 504 and time.monotonic() - t0 >= 0.4


def route_probe_to(cluster):
    """An Envoy patch adding a /probe/ route (without the filter) to `cluster`, 0.5 s timeout."""
    import generate

    return lambda doc: generate.add_route(
        doc,
        {
            "match": {"prefix": "/probe/"},
            "route": {"cluster": cluster, "timeout": "0.5s"},
            "typed_per_filter_config": {
                "envoy.filters.http.wasm": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": True,
                }
            },
        },
    )


def test_stop_and_start_issuer(stack):
    """The mock issuer down and up again (new keys); Keycloak is another process."""
    stack.stop_issuer()
    assert not port_open(stack.cfg.ports["issuer"])
    r = stack.gateway_request("GET", "/mock/realms/shasta/jwks")
    assert r.status_code == 503
    assert verify_token(stack, stack.token("admin"))["preferred_username"] == "admin"  # Keycloak's
    stack.start_issuer()
    assert verify_token(stack, stack.control_token("admin"), mock=True)["preferred_username"] == "admin"


def test_restart_envoy_reports_a_bad_config(stack):
    with pytest.raises(StackError) as e:
        stack.restart_envoy(extra_clusters=[{"name": "broken", "type": "NO_SUCH_TYPE"}], timeout=10)
    assert "last lines" in str(e.value)
    stack.restart_envoy()
    assert requests.get(f"{stack.admin_url}/ready", timeout=5).status_code == 200


def test_control_token_expired_and_overridden(stack):
    token = stack.control_token(username="admin", expires_in=-120, claims={"azp": "other", "groups": None})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] < time.time()
    assert claims["azp"] == "other" and "groups" not in claims
    with pytest.raises(jwt.ExpiredSignatureError):
        verify_token(stack, token, mock=True)


def test_control_token_unpublished_key(stack):
    token = stack.control_token(unpublished=True)
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid not in {k["kid"] for k in gateway_jwks(stack)["keys"]}


def test_rotate_keys(stack):
    """The mock issuer's rotation (control API), seen through the gateway's /mock/ route."""
    old = jwt.get_unverified_header(stack.control_token("admin"))["kid"]
    new = stack.rotate_keys(keep_old=True)
    sig = [k["kid"] for k in mock_gateway_jwks(stack)["keys"] if k["use"] == "sig"]
    assert sig[:2] == [new, old]
    assert jwt.get_unverified_header(stack.control_token("admin"))["kid"] == new
    newest = stack.rotate_keys(keep_old=False)
    keys = mock_gateway_jwks(stack)["keys"]
    assert [k["kid"] for k in keys if k["use"] == "sig"] == [newest]
    assert keys[-1]["use"] == "enc"
    assert verify_token(stack, stack.control_token("admin"), mock=True)["preferred_username"] == "admin"
    # an old key can still sign on request (a token whose kid left the JWKS)
    assert jwt.get_unverified_header(stack.control_token(kid=old))["kid"] == old


# ------------------------------------------------------------------ make up / make down (last: restarts parts)


def test_make_up_recovers_after_kill_9(stack):
    s3_marker = f"stack-recover-{uuid.uuid4().hex[:12]}"
    stack.s3_client().create_bucket(Bucket=s3_marker)
    os.kill(stack.rgw.pid(), signal.SIGKILL)
    run_make("up")
    assert all(stack.status().values()), stack.status()
    assert stack.s3_client().head_bucket(Bucket=s3_marker)  # mon and OSD kept running: data kept

    for part in (stack.envoy, stack.issuer, stack.osd):
        os.kill(part.pid(), signal.SIGKILL)
    run_make("up")
    assert all(stack.status().values()), stack.status()
    assert stack.s3_client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert verify_token(stack, run_make("token").stdout.strip())["preferred_username"] == "admin"
    assert curl(stack, f"{stack.gateway_url}/apis/sts/healthz")[0] == 200


def test_make_down_leaves_no_process_and_up_again(stack):
    pids = {p.name: p.pid() for p in stack.parts}
    assert all(pids.values()), pids
    run_make("down")
    # No waiting here: `make down` itself returns only once every process has exited.
    alive = {n: pid for n, pid in pids.items() if not proc_gone(pid)}
    assert not alive, f"still running when make down returned: {alive}"
    for port in ("https", "http", "admin", "rgw", "issuer", "control", "mon"):
        assert not port_open(stack.cfg.ports[port]), port
    assert not list((stack.cfg.run_dir).glob("*.pid"))
    run_make("down")  # idempotent
    run_make("up")
    assert all(stack.status().values())
    # What a script does: down and up at once, twice; up refuses ports still held by anything.
    for _ in range(2):
        old = {p.name: p.pid() for p in stack.parts}
        run_make("down")
        assert not [pid for pid in old.values() if not proc_gone(pid)], old
        run_make("up")
        assert all(stack.status().values()), stack.status()
    assert (stack.cfg.state_dir / "env.sh").exists()
    env = (stack.cfg.state_dir / "env.sh").read_text()
    for var in (
        "STS_GATEWAY_URL",
        "STS_GATEWAY_HTTP_URL",
        "STS_CA_FILE",
        "RGW_ENDPOINT",
        "ENVOY_ADMIN_URL",
        "STACK_LOG_DIR",
        "OIDC_TOKEN_URL",
        "STS_ACCESS_KEY_ID",
        "STS_SECRET_ACCESS_KEY",
        "STS_ROLE_ARN",
        "ISSUER_CONTROL_URL",
    ):
        assert f"export {var}=" in env, var
    assert REPO.exists()
