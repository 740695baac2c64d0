"""The STS filter end to end: real Envoy 1.40 (V8) running target/sts_gateway.wasm, real Ceph RGW
16.2 STS, tokens from the independent OIDC issuer (oauth2-mock-server) through the gateway."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config as BotoConfig

from helpers import TOKEN_PATH, curl, mint, python_client_example

EXPIRATION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def assert_credentials(stack, r):
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert list(doc) == ["Credentials"]
    creds = doc["Credentials"]
    assert list(creds) == ["AccessKeyId", "EndpointURL", "Expiration", "SecretAccessKey", "SessionToken"]
    # The exact text clients see today: json.dumps of that dict.
    assert r.text == json.dumps(doc)
    assert creds["EndpointURL"] == stack.rgw_endpoint
    assert EXPIRATION_RE.match(creds["Expiration"]), creds["Expiration"]
    expires = datetime.fromisoformat(creds["Expiration"])
    left = expires - datetime.now(UTC)
    assert timedelta(minutes=59) < left <= timedelta(hours=1, seconds=5), left
    assert len(creds["AccessKeyId"]) >= 16 and len(creds["SecretAccessKey"]) >= 32
    assert len(creds["SessionToken"]) > 100
    return creds


def jwt_claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def use_with_boto3(creds):
    """Exactly the Python client's creds_kwargs, as the cray CLI does (region_name '')."""
    creds_kwargs = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
        "endpoint_url": creds["EndpointURL"],
    }
    s3 = boto3.client("s3", region_name="", config=BotoConfig(retries={"max_attempts": 1}), **creds_kwargs)
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello from sts-gateway")
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hello from sts-gateway"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["hello.txt"]
    s3.delete_object(Bucket=bucket, Key="hello.txt")
    s3.delete_bucket(Bucket=bucket)


def test_admin_mints_working_credentials(stack):
    token = stack.token("admin")
    creds = assert_credentials(stack, mint(stack, token))
    use_with_boto3(creds)
    # A second mint with the same token (cached verification) gives fresh credentials.
    again = assert_credentials(stack, mint(stack, token))
    assert again["AccessKeyId"] != creds["AccessKeyId"]


def test_testuser_is_an_admin_too_and_http_listener_works(stack):
    token = stack.token("testuser")
    assert_credentials(stack, mint(stack, token, via="http"))


def test_forwarded_access_token_header(stack):
    token = stack.token("admin")
    r = stack.gateway_request("PUT", TOKEN_PATH, headers={"X-Forwarded-Access-Token": token})
    assert_credentials(stack, r)


def test_curl_example(stack):
    token = stack.token("admin")
    code, body = curl(stack, "-X", "PUT", "-H", f"Authorization: Bearer {token}", f"{stack.gateway_url}{TOKEN_PATH}")
    assert code == 201, body
    creds = json.loads(body)["Credentials"]
    assert list(creds) == ["AccessKeyId", "EndpointURL", "Expiration", "SecretAccessKey", "SessionToken"]


def test_python_client_example(stack):
    """The Python client (requests_oauthlib password grant, then PUT) pointed at the gateway:
    201 and credentials that work."""
    token, sts_response = python_client_example(stack, username="testuser")
    assert sts_response.status_code == 201, sts_response.text
    assert jwt_claims(token["access_token"])["preferred_username"] == "testuser"
    use_with_boto3(sts_response.json()["Credentials"])


def test_user_without_admin_role_is_forbidden(stack):
    r = mint(stack, stack.token("user"))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 403


def test_missing_token_is_401_with_challenge(stack):
    r = stack.gateway_request("PUT", TOKEN_PATH)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="')
    assert "error=" not in r.headers["www-authenticate"]


def test_expired_token_is_401_invalid_token(stack):
    token = stack.control_token(username="admin", expires_in=-300)
    r = mint(stack, token)
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "expired" in r.json()["detail"]


def test_token_signed_by_unpublished_key_is_401(stack):
    token = stack.control_token(username="admin", unpublished=True)
    r = mint(stack, token)
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert token not in r.text


# The RSA algorithms besides RS256 that `algorithms` may allow (src/config/mod.rs ALGORITHMS).
OTHER_RSA_ALGORITHMS = ["RS384", "RS512", "PS256", "PS384", "PS512"]
NOT_ALLOWED = "invalid token: signature algorithm not allowed"


def assert_not_allowed(r) -> None:
    assert r.status_code == 401, r.status_code  # (a 201's body would print credentials)
    assert r.json()["detail"] == NOT_ALLOWED, r.text


@pytest.mark.parametrize("alg", OTHER_RSA_ALGORITHMS)
def test_other_rsa_algorithm_mints_only_when_configured(stack, alg):
    """The issuer publishes an `alg` key next to its RS256 one and signs a token with it. With
    `algorithms: [alg]` the token mints and an RS256 token is refused; with the default
    configuration (RS256 only) it is the other way round. PyJWT, verifying the token with the
    published key, is the independent check that it really is `alg`."""
    import jwt

    rs256 = stack.control_token(username="admin")
    kid = stack.rotate_keys(keep_old=True, alg=alg, current=False)
    try:
        token = stack.control_token(username="admin", kid=kid)
        jwk = next(k for k in stack.jwks()["keys"] if k["kid"] == kid)
        assert jwk["alg"] == alg and jwt.get_unverified_header(token)["alg"] == alg
        jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[alg], audience="shasta")  # raises if not
        # Default configuration: refused for its algorithm, while the RS256 token mints.
        assert_not_allowed(mint(stack, token))
        assert_credentials(stack, mint(stack, rs256))
        with stack.envoy_variant(plugin_overrides={"algorithms": [alg]}):
            assert_credentials(stack, mint(stack, token))
            assert_not_allowed(mint(stack, rs256))
    finally:
        stack.retire_key(kid)


def test_duration_seconds_900_against_rgw(stack):
    """`rgw.duration_seconds: 900` reaches RGW: its Expiration (passed through by the filter) is
    about now + 900 s, not the default's 3600, and the credentials work on RGW."""
    token = stack.token("admin")
    assert_credentials(stack, mint(stack, token))  # the control: the default is ~1 h (checked there)
    with stack.envoy_variant(plugin_overrides={"rgw": {"duration_seconds": 900}}):
        before = datetime.now(UTC)
        r = mint(stack, token)
        after = datetime.now(UTC)
        assert r.status_code == 201, r.status_code
        creds = r.json()["Credentials"]
        expires = datetime.fromisoformat(creds["Expiration"])
        # RGW's clock is this machine's; its Expiration has microseconds, ours too.
        slack = timedelta(seconds=5)
        assert before + timedelta(seconds=900) - slack <= expires <= after + timedelta(seconds=900) + slack, (
            before,
            expires,
        )
        s3 = stack.s3_client(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        bucket = f"e2e-d900-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        s3.delete_bucket(Bucket=bucket)


def test_healthz_and_methods(stack):
    r = stack.gateway_request("GET", "/apis/sts/healthz")
    assert r.status_code == 200 and r.json() == {"Status": "ok"}
    r = stack.gateway_request("GET", TOKEN_PATH, token=stack.token("admin"))
    assert r.status_code == 405 and r.headers["allow"] == "PUT"
    r = stack.gateway_request("PUT", "/apis/sts/nope")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_rgw_down_is_503_then_recovers(stack):
    token = stack.token("admin")
    assert_credentials(stack, mint(stack, token))
    stack.stop_rgw()
    r = mint(stack, token)
    assert r.status_code == 503, r.text
    assert r.json()["status"] == 503
    stack.start_rgw()
    assert_credentials(stack, mint(stack, token))


def test_wrong_sts_secret_is_502_with_rgw_code(stack):
    wrong = "WrongSecretWrongSecretWrongSecretWrong00"
    stack.restart_envoy(plugin_overrides={"rgw": {"secret_access_key": wrong}})
    r = mint(stack, stack.token("admin"))
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["code"] in ("SignatureDoesNotMatch", "AccessDenied"), body
    assert r.headers["content-type"] == "application/problem+json"
    assert wrong not in r.text
    assert wrong not in stack.envoy_log()


@pytest.mark.parametrize("field", ["role_arn", "cluster", "endpoint_url"])
def test_config_missing_field_is_refused(stack, field):
    def drop(plugin):
        del plugin["rgw"][field]
        return plugin

    with pytest.raises(Exception) as refused:
        stack.restart_envoy(plugin_overrides=drop, timeout=15)
    log = str(refused.value) + stack.envoy_log()
    # The one line that names the missing field (serde's "missing field `x`" under `rgw`), not
    # the word anywhere in Envoy's log (`cluster` is in every Envoy log).
    assert f"invalid plugin configuration: rgw: missing field `{field}`" in log, log[-3000:]


def test_bad_config_value_names_the_field(stack):
    with pytest.raises(Exception) as refused:
        stack.restart_envoy(plugin_overrides={"rgw": {"duration_seconds": 60}}, timeout=15)
    log = str(refused.value) + stack.envoy_log()
    assert "rgw.duration_seconds" in log


def wait_for_log(stack, seen, since: int, timeout: float = 20.0) -> str:
    """Envoy's log from offset `since` once `seen(the filter's per-mint lines in it)` holds (the
    log is written asynchronously), or as it is after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        log = stack.envoy_log()[since:]
        if seen("\n".join(ln for ln in log.splitlines() if "sts-gateway: mint" in ln)) or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def test_no_secret_in_envoy_log_or_error_bodies(stack):
    since = len(stack.envoy_log())
    token = stack.token("admin")
    creds = assert_credentials(stack, mint(stack, token))
    denied = mint(stack, stack.token("user"))
    assert token not in denied.text
    # The positive control: the filter's line for the mint reached the log (the refusal has none).
    log = wait_for_log(stack, lambda text: "status=201" in text, since)
    assert "sts-gateway: mint" in log and "status=201" in log, "the per-mint log line is missing"
    log = stack.envoy_log()  # all of it since Envoy's start
    for secret in (
        token,
        token.split(".")[2],
        stack.sts_keys["secret_access_key"],
        creds["SecretAccessKey"],
        creds["SessionToken"],
    ):
        assert secret not in log
    assert "panicked" not in log


def test_session_name_names_the_caller(stack):
    """RGW's logs and the filter's log line say who holds which credentials."""
    since = len(stack.envoy_log())
    mint(stack, stack.token("testuser"))
    log = wait_for_log(stack, lambda text: 'caller="testuser"' in text, since)
    lines = [ln for ln in log.splitlines() if "sts-gateway: mint" in ln]
    assert any('caller="testuser"' in ln and "session=testuser-" in ln and "status=201" in ln for ln in lines), lines[
        -5:
    ]


class DelayProxy:
    """A loopback TCP relay that holds every chunk from Envoy for `delay` seconds before passing
    it to the real issuer: it widens the window in which a JWKS refetch is in flight."""

    def __init__(self, target_port: int, delay: float):
        import socket
        import threading

        self.target_port, self.delay = target_port, delay
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst, delay in ((client, upstream, self.delay), (upstream, client, 0)):
                self.threading.Thread(target=self._pipe, args=(src, dst, delay), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, delay):
        try:
            while chunk := src.recv(65536):
                time.sleep(delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.srv.close()


def test_key_rotation_concurrent_requests_wait_for_one_refetch(stack):
    """Keycloak publishes a new key and signs with it at once: the first request with the new
    kid refetches the JWKS (slowed to 0.4 s here), the ones arriving meanwhile wait for that
    fetch instead of failing, and all of them mint. One refetch serves them all."""
    from concurrent.futures import ThreadPoolExecutor

    proxy = DelayProxy(stack.cfg.ports["issuer"], delay=0.4)

    def slow_refetch(plugin):
        # The mock issuer alone: one JWKS source, whose fetches the test counts.
        stack.only_mock_issuer(plugin)
        stack.mock_jwks(plugin).update(cluster="slow_keycloak", min_refetch_seconds=1)
        return plugin

    try:
        stack.restart_envoy(plugin_overrides=slow_refetch, extra_clusters=[stack.cluster("slow_keycloak", proxy.port)])
        time.sleep(1.2)  # past min_refetch_seconds since the start-up fetch
        fetched = stack.envoy_stats().get("wasmcustom.sts_gateway_jwks_fetches_ok", 0)
        new_kid = stack.rotate_keys(keep_old=True)
        token = stack.control_token(username="admin", kid=new_kid)
        started = time.monotonic()
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(lambda _: mint(stack, token, via="http").status_code, range(48)))
        elapsed = time.monotonic() - started
        assert statuses == [201] * 48, statuses
        assert elapsed >= 0.4, "the requests did not wait for the slowed refetch"
        ok = "wasmcustom.sts_gateway_jwks_fetches_ok"
        deadline = time.monotonic() + 20
        while stack.envoy_stats().get(ok, 0) == fetched and time.monotonic() < deadline:
            time.sleep(0.05)
        # A second refetch, had one started, would still be in the slow proxy: give it time to land.
        time.sleep(2.0)
        refetches = stack.envoy_stats().get(ok, 0) - fetched
        assert refetches == 1, refetches
        assert "panicked" not in stack.envoy_log()
    finally:
        proxy.close()
