"""End to end with a real Keycloak (26.5.6, realm `shasta`, tests/stack/keycloak/realm-shasta.json):
the field's clients, Keycloak's own key rotation under a steady load of mints, and every
signature algorithm of Keycloak's realm keys the filter verifies.

The independent oracles: Keycloak itself (which key signs, what its JWKS publishes, which tokens it
issues), RGW (credentials that work there), and the token headers and claims read here.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from helpers import TOKEN_PATH, mint

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "stack" / "keycloak" / "s3creds.py.seed"


def jose(token: str) -> tuple[dict, dict]:
    """(header, payload) of a compact JWS, decoded here (no verification)."""

    def part(s: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    head, payload, _ = token.split(".")
    return part(head), part(payload)


def password_grant(stack, user: str, client_id: str = "shasta", **extra: str) -> dict:  # type: ignore[no-untyped-def]
    """The password grant as the `cray` CLI sends it, through the gateway."""
    r = stack.gateway_request(
        "POST",
        "/keycloak/realms/shasta/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": client_id, "username": user, "password": user, **extra},
    )
    assert r.status_code == 200, r.text
    return r.json()


def assert_credentials_work(stack, body: dict) -> None:  # type: ignore[no-untyped-def]
    """RGW accepts the minted credentials (the oracle is RGW, not the filter)."""
    creds = body["Credentials"]
    s3 = stack.s3_client(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert "Buckets" in s3.list_buckets()


# --------------------------------------------------------------------------- the field's clients


def test_cray_cli_password_grant_then_mint(stack):
    tokens = password_grant(stack, "admin")
    header, claims = jose(tokens["access_token"])
    # Keycloak's own token, with the realm file's shape.
    assert header["alg"] == "RS256" and header["kid"] in {k["kid"] for k in stack.kc_jwks()["keys"]}
    assert claims["iss"] == stack.cfg.issuer_url == "https://api-gw-service-nmn.local/keycloak/realms/shasta"
    assert "shasta" in claims["aud"] and claims["azp"] == "shasta" and claims["typ"] == "Bearer"
    assert claims["resource_access"]["shasta"]["roles"] == ["admin"]
    assert "tenant-admin" in claims["realm_access"]["roles"]
    assert claims["groups"] == ["/admins"]
    r = mint(stack, tokens["access_token"])
    assert r.status_code == 201, r.text  # PUT /apis/sts/token: 201 Created
    assert_credentials_work(stack, r.json())


def test_user_without_admin_role_is_forbidden(stack):
    claims = jose(stack.token("user"))[1]
    assert "admin" not in claims["resource_access"].get("shasta", {}).get("roles", [])
    assert mint(stack, stack.token("user")).status_code == 403
    assert mint(stack, stack.token("testuser")).status_code == 201  # positive control


def test_make_token_is_a_keycloak_token(stack, make):
    token = make("token", "USER=testuser").stdout.strip()
    header, claims = jose(token)
    assert header["kid"] in {k["kid"] for k in stack.kc_jwks()["keys"]}
    assert claims["preferred_username"] == "testuser" and claims["iss"] == stack.cfg.issuer_url
    assert mint(stack, token).status_code == 201


def test_refreshed_token_mints(stack):
    first = password_grant(stack, "testuser")
    time.sleep(1.1)  # a later iat: the refreshed token is a different token
    r = stack.gateway_request(
        "POST",
        "/keycloak/realms/shasta/protocol/openid-connect/token",
        data={"grant_type": "refresh_token", "client_id": "shasta", "refresh_token": first["refresh_token"]},
    )
    assert r.status_code == 200, r.text
    refreshed = r.json()["access_token"]
    assert refreshed != first["access_token"]
    assert jose(refreshed)[1]["iat"] > jose(first["access_token"])[1]["iat"]
    assert mint(stack, refreshed).status_code == 201


def test_keycloak_id_token_is_refused(stack):
    tokens = password_grant(stack, "admin", scope="openid")
    id_claims = jose(tokens["id_token"])[1]
    # Keycloak's ID token: typ ID, audience the client (shasta), same issuer and signing key.
    assert id_claims["typ"] == "ID" and id_claims["aud"] == "shasta"
    assert jose(tokens["id_token"])[0]["kid"] == jose(tokens["access_token"])[0]["kid"]
    r = mint(stack, tokens["id_token"])
    assert r.status_code == 401, r.text
    assert mint(stack, tokens["access_token"]).status_code == 201  # the same grant's access token


def test_token_of_another_client(stack):
    """Client `other` (realm file) also puts `shasta` in `aud`: without `authorized_parties` its
    admin's token mints; with `authorized_parties: ["shasta"]` it gets 401 (docs/configuration.md)
    and the shasta client's token still mints."""
    other = password_grant(stack, "admin", client_id="other")["access_token"]
    claims = jose(other)[1]
    assert claims["azp"] == "other" and "shasta" in claims["aud"]
    assert mint(stack, other).status_code == 201
    with stack.envoy_variant(plugin_overrides={"authorized_parties": ["shasta"]}):
        r = mint(stack, other)
        assert r.status_code == 401, r.text
        assert mint(stack, stack.token("admin")).status_code == 201


def test_seed_python_example_unchanged(stack):
    """The seed's s3creds.py, byte for byte (tests/stack/keycloak/s3creds.py.seed), run in its own
    interpreter. Only the network is adapted: api-gw-service-nmn.local:443 resolves to this
    stack's gateway, and the stack's CA is trusted (REQUESTS_CA_BUNDLE)."""
    port = stack.cfg.ports["https"]
    runner = f"""
import json, runpy, socket
real = socket.getaddrinfo
def fake(host, port, *a, **k):
    if host == "api-gw-service-nmn.local" and port == 443:
        return real("127.0.0.1", {port}, *a, **k)
    return real(host, port, *a, **k)
socket.getaddrinfo = fake
g = runpy.run_path({str(SEED)!r}, run_name="__main__")
print(json.dumps(g["creds_kwargs"]))
"""
    env = dict(os.environ, TESTUSER_PASSWORD="testuser", REQUESTS_CA_BUNDLE=stack.ca_file)
    out = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    creds = json.loads(out.stdout.strip().splitlines()[-1])
    s3 = stack.s3_client(
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
        aws_session_token=creds["aws_session_token"],
    )
    assert "Buckets" in s3.list_buckets()
    # Negative control: the same script with a wrong password fails at the password grant.
    env["TESTUSER_PASSWORD"] = "wrong"
    bad = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "invalid_grant" in bad.stderr


# --------------------------------------------------------------------------- rotation


class MintLoad:
    """`threads` clients minting in a loop, each at most `rate` mints per second, with tokens
    taken from `pool` (a token is removed from the pool before its key is removed). Counts the
    answers per token."""

    def __init__(self, stack, threads: int = 4, rate: float = 10.0):  # type: ignore[no-untyped-def]
        self.stack = stack
        self.pool: list[str] = []
        self.results: Counter[tuple[str, int]] = Counter()
        self.failures: list[tuple[float, str, int, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i, 1.0 / rate), daemon=True) for i in range(threads)]

    def run(self, index: int, period: float) -> None:
        session = requests.Session()
        session.verify = self.stack.ca_file
        n = index
        while not self.stop.is_set():
            t0 = time.monotonic()
            with self.lock:
                token = self.pool[n % len(self.pool)] if self.pool else None
            n += 1
            if token is not None:
                try:
                    r = session.put(
                        self.stack.gateway_url + TOKEN_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=15
                    )
                    status, text = r.status_code, r.text[:200]
                except requests.RequestException as e:
                    status, text = 0, str(e)
                kid = jose(token)[0]["kid"]
                with self.lock:
                    self.results[(kid, status)] += 1
                    if status != 201:
                        self.failures.append((time.monotonic(), kid, status, text))
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    def __enter__(self) -> MintLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=20)

    def set_pool(self, tokens: list[str]) -> None:
        with self.lock:
            self.pool = list(tokens)


def test_keycloak_rotation_under_load(stack):
    """Keycloak's rotation through its admin REST API, under 4 clients x 10 mints/s:
    a new rsa-generated provider of higher priority signs new tokens at once (kid-miss refetch),
    the old key keeps minting while published (passive), and after its provider is removed its
    tokens get 401 within refresh_seconds (10 here). 0 failed mints of valid tokens."""
    refresh = 10

    def fast_refresh(plugin: dict) -> dict:
        # Keycloak alone, as in the field (one JWKS source): see test_kid_miss_with_two_sources.
        plugin["issuers"] = plugin["issuers"][:1]
        plugin["issuers"][0]["jwks"].update(refresh_seconds=refresh, min_refetch_seconds=1)
        return plugin

    stack.restart_envoy(plugin_overrides=fast_refresh)
    old_providers = [p for p in stack.kc_key_providers() if p["providerId"] == "rsa-generated"]
    assert len(old_providers) == 1
    old_id = old_providers[0]["id"]
    old_token = stack.token("admin")
    old_kid = jose(old_token)[0]["kid"]
    new_id = None
    try:
        with MintLoad(stack) as load:
            load.set_pool([old_token])
            time.sleep(3)
            new_id = stack.kc_add_key_provider("rsa-generated", priority=500, name="rsa-rotated")
            new_token = stack.token("testuser")
            new_kid = jose(new_token)[0]["kid"]
            assert new_kid != old_kid
            published = {k["kid"] for k in stack.kc_jwks()["keys"]}
            assert {old_kid, new_kid} <= published
            t0 = time.monotonic()
            r = mint(stack, new_token)
            assert r.status_code == 201, r.text  # at once: the unknown kid parks for one refetch
            first_new_mint = time.monotonic() - t0
            load.set_pool([old_token, new_token])
            time.sleep(3)
            # The old key passive: still published, no longer signing.
            stack.kc_update_key_provider(old_id, active="false")
            assert old_kid in {k["kid"] for k in stack.kc_jwks()["keys"]}
            assert jose(stack.token("admin"))[0]["kid"] == new_kid
            time.sleep(refresh + 2)  # at least one periodic refresh with the old key passive
            assert mint(stack, old_token).status_code == 201
            # Remove the old provider: its key leaves the JWKS, its tokens leave the load.
            load.set_pool([new_token])
            time.sleep(0.5)
            stack.kc_remove_key_provider(old_id)
            removed_at = time.monotonic()
            assert old_kid not in {k["kid"] for k in stack.kc_jwks()["keys"]}
            refused_after = None
            while time.monotonic() - removed_at < refresh + 10:
                if mint(stack, old_token).status_code == 401:
                    refused_after = time.monotonic() - removed_at
                    break
                time.sleep(0.2)
            time.sleep(2)
        counts = dict(load.results)
        print(
            f"\nrotation: mints per (kid, status) {counts}; first new-kid mint {first_new_mint:.2f}s; "
            f"old key refused {refused_after}s after its provider was removed"
        )
        assert load.failures == [], load.failures[:5]
        assert counts.get((old_kid, 201), 0) > 50 and counts.get((new_kid, 201), 0) > 50
        assert refused_after is not None and refused_after <= refresh + 3, refused_after
    finally:
        if new_id is not None:
            # Back to one rsa-generated provider for the tests that follow (keys of the session).
            for p in stack.kc_key_providers():
                if p["id"] not in (new_id,) and p["providerId"] == "rsa-generated":
                    stack.kc_remove_key_provider(p["id"])


def test_kid_miss_with_two_sources(stack):
    """The stack's default configuration has two JWKS sources (Keycloak, the mock). A token of a
    key Keycloak has just added must mint at once, as with one source, also when the other
    source's refetch (for a mock token of a new mock key, sent meanwhile) lands first and
    changes the keys.

    Made deterministic: Keycloak's JWKS answers 1 s late (a slow proxy), the mock's at once and
    with a key added. Was a filter bug: the request parked on the unknown kid was verified again
    when the FIRST source's refetch completed (the mock's) and got 401 before Keycloak's JWKS
    arrived. The oracle: Keycloak publishes the kid (its JWKS, read here) and the request took at
    least the delay (it waited for Keycloak's answer, not the mock's)."""
    from misbehaving import Misbehaving

    delay = 1.0
    with Misbehaving(upstream=f"http://127.0.0.1:{stack.cfg.ports['keycloak']}") as srv:

        def edit(plugin: dict) -> dict:
            for issuer in plugin["issuers"]:
                issuer["jwks"]["min_refetch_seconds"] = 1
            plugin["issuers"][0]["jwks"]["cluster"] = "slow_keycloak"
            return plugin

        new_id, rotated = None, False
        old_mock_kid = next(k["kid"] for k in stack.jwks()["keys"] if k.get("use") == "sig")
        with stack.envoy_variant(plugin_overrides=edit, extra_clusters=[stack.cluster("slow_keycloak", srv.port)]):
            try:
                assert mint(stack, stack.token("admin")).status_code == 201  # through the proxy
                time.sleep(1.2)  # past min_refetch_seconds since the start-up fetches
                known = {k["kid"] for k in stack.kc_jwks()["keys"]}
                # Above every provider earlier tests left, so that the new key signs.
                top = max(int(p["config"]["priority"][0]) for p in stack.kc_key_providers())
                new_id = stack.kc_add_key_provider("rsa-generated", priority=top + 100, name="rsa-two-sources")
                token = stack.token("admin")
                kid = jose(token)[0]["kid"]
                assert kid not in known and kid in {k["kid"] for k in stack.kc_jwks()["keys"]}
                stack.rotate_keys(keep_old=True)  # the mock's refetch will change its keys
                rotated = True
                # The mock's new key signs it: its kid is unknown too, and parks on the mock's source.
                mock_token = stack.control_token()
                ok = "wasmcustom.sts_gateway_jwks_fetches_ok"
                fetched = stack.envoy_stats().get(ok, 0)
                srv.behave("slow", delay=delay)

                def timed(t: str) -> tuple[int, float, str]:
                    t0 = time.monotonic()
                    r = mint(stack, t)
                    return r.status_code, time.monotonic() - t0, r.text

                with ThreadPoolExecutor(max_workers=2) as pool:
                    ours = pool.submit(timed, token)
                    time.sleep(0.2)  # Keycloak's refetch is on its way (1 s)
                    theirs = pool.submit(timed, mock_token)
                    mock_status, mock_took, mock_text = theirs.result()
                    status, took, text = ours.result()
                # The mock's refetch landed first and changed its keys (its own request minted
                # before Keycloak answered); the Keycloak token still waited for Keycloak's.
                assert mock_status == 201 and mock_took < delay, (mock_status, mock_took, mock_text)
                assert status == 201, f"{status} after {took:.2f}s: {text}"
                assert took >= delay, took
                # Both sources were refetched, each for its own waiting request.
                assert stack.envoy_stats().get(ok, 0) - fetched >= 2
            finally:
                srv.behave("proxy")
                if new_id is not None:
                    stack.kc_remove_key_provider(new_id)
                if rotated:
                    stack.retire_key(old_mock_kid)


# --------------------------------------------------------------------------- algorithms

ALGS = {
    "ES256": ("ecdsa-generated", {"ecdsaEllipticCurveKey": "P-256"}, {"kty": "EC", "crv": "P-256"}),
    "ES384": ("ecdsa-generated", {"ecdsaEllipticCurveKey": "P-384"}, {"kty": "EC", "crv": "P-384"}),
    "EdDSA": ("eddsa-generated", {"eddsaEllipticCurveKey": "Ed25519"}, {"kty": "OKP", "crv": "Ed25519"}),
}


@pytest.mark.parametrize("alg", list(ALGS))
def test_keycloak_signs_with(stack, alg):
    """A realm whose access tokens Keycloak signs with `alg` (a key provider of that kind, and
    the realm's default signature algorithm): the token mints when `algorithms` allows `alg`,
    and gets 401 under the default (RS256 only)."""
    provider, config, jwk_shape = ALGS[alg]
    comp = stack.kc_add_key_provider(provider, priority=400, name=f"{alg}-key", **config)
    try:
        stack.kc_admin("PUT", "/realms/shasta", {"defaultSignatureAlgorithm": alg})
        token = stack.token("admin")
        header = jose(token)[0]
        assert header["alg"] == alg
        jwk = next(k for k in stack.kc_jwks()["keys"] if k["kid"] == header["kid"])
        assert {k: jwk[k] for k in jwk_shape} == jwk_shape
        assert mint(stack, token).status_code == 401  # RS256 only: allowed_algorithms is the gate
        with stack.envoy_variant(plugin_overrides={"algorithms": ["RS256", alg]}):
            r = mint(stack, token)
            assert r.status_code == 201, r.text
            assert_credentials_work(stack, r.json())
            # A signature of another token: refused (the check is real).
            other = stack.token("testuser")
            forged = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
            assert mint(stack, forged).status_code == 401
    finally:
        stack.kc_admin("PUT", "/realms/shasta", {"defaultSignatureAlgorithm": "RS256"})
        stack.kc_remove_key_provider(comp)
