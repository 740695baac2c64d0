"""Hostile input and failing dependencies, end to end on the real stack.

Every case asserts its status, and the `guard` fixture then checks what must hold after any
case: no panic and no Wasm VM failure in Envoy's log, no VM reload or new VM in Envoy's stats,
nothing secret in Envoy's log (the tokens of the case, the STS secret key, minted secrets), and
the next good request still gets 201 from the same Envoy.

Hostile tokens "validly signed but odd" come from the issuer's control API (its key signs them);
unsigned or garbage tokens are built here. RGW and JWKS misbehaviour comes from
`misbehaving.Misbehaving`, a loopback server that proxies to the real RGW / issuer until told
to misbehave, so one Envoy sees both the hostile answer and the recovery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import secrets
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import Stack
from helpers import TOKEN_PATH, VM_FAILURE_MARKERS, mint, vm_counters
from misbehaving import Misbehaving

# --------------------------------------------------------------------------- helpers


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jose_header(token: str) -> dict:
    return json.loads(unb64url(token.split(".")[0]))


def jose_payload(token: str) -> dict:
    return json.loads(unb64url(token.split(".")[1]))


def current_kid(stack: Stack) -> str:
    return next(k["kid"] for k in stack.jwks()["keys"] if k.get("use") == "sig")


def public_pem(stack: Stack) -> bytes:
    """The issuer's current signing key as the PEM a confused verifier might use as HMAC secret."""
    jwk = next(k for k in stack.jwks()["keys"] if k.get("use") == "sig")
    n = int.from_bytes(unb64url(jwk["n"]), "big")
    e = int.from_bytes(unb64url(jwk["e"]), "big")
    return (
        rsa.RSAPublicNumbers(e, n)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def good_claims(stack: Stack) -> dict:
    return jose_payload(stack.control_token("admin"))


def control_token_raw(stack: Stack, body: str) -> str:
    """The issuer's control API with a hand-written JSON body (Python's json cannot nest 10,000 deep)."""
    req = urllib.request.Request(
        f"{stack.control_url}/control/token", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["token"]


def raw_request(
    stack: Stack, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None, https: bool = True
) -> tuple[int, dict, bytes]:
    """One request with exactly these headers (duplicates allowed), over one fresh connection."""
    if https:
        ctx = ssl.create_default_context(cafile=stack.ca_file)
        conn = http.client.HTTPSConnection("127.0.0.1", stack.cfg.ports["https"], timeout=15, context=ctx)
        conn._context.check_hostname = False  # SNI/Host are the gateway's name, checked below by CA only
    else:
        conn = http.client.HTTPConnection("127.0.0.1", stack.cfg.ports["http"], timeout=15)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "api-gw-service-nmn.local")
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Guard:
    """The checks every hostile case ends with (see the module docstring)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        if not LOG_START:
            LOG_START.append(stack.envoy_log_path.stat().st_size)
        self.secrets: set[str] = {stack.sts_keys["secret_access_key"]}
        # The next good request's token: Keycloak's (the default configuration's first issuer);
        # a case that runs Envoy with the mock issuer alone sets the mock's (`mock_only`).
        self.good_token = lambda: stack.token("admin")
        self.arm()

    def arm(self) -> None:
        """Baseline: call again after the test restarted Envoy."""
        self.pid = self.stack.envoy.pid()
        self.counters = vm_counters(self.stack)
        self.offset = len(self.stack.envoy_log())
        assert self.counters.get("wasm.sts-gateway.vm_reload", 0) == 0, self.counters

    def secret(self, *values: str) -> None:
        """Values that must never reach Envoy's log (short strings would match by chance)."""
        for v in values:
            if v and len(v) >= 24:
                self.secrets.add(v)
                if v.count(".") == 2 and len(v.split(".")[2]) >= 24:
                    self.secrets.add(v.split(".")[2])  # a token's signature alone

    def good_request(self) -> dict:
        token = self.good_token()
        self.secret(token)
        r = mint(self.stack, token)
        assert r.status_code == 201, f"the next good request failed: {r.status_code} {r.text}"
        creds = r.json()["Credentials"]
        self.secret(creds["SecretAccessKey"], creds["SessionToken"])
        return creds

    def finish(self) -> None:
        self.good_request()
        assert self.stack.envoy.pid() == self.pid, "Envoy restarted during the case"
        after = vm_counters(self.stack)
        assert after == self.counters, f"Wasm VM reloaded or re-created: {self.counters} -> {after}"
        log = self.stack.envoy_log()[self.offset :]
        for marker in VM_FAILURE_MARKERS:
            assert marker not in log, f"{marker!r} in Envoy's log:\n{log[-3000:]}"
        for s in self.secrets:
            assert s not in log, f"a secret ({s[:6]}...) is in Envoy's log"
        ALL_SECRETS.update(self.secrets)


ALL_SECRETS: set[str] = set()
QUERY_SECRETS: dict[str, str] = {}  # tokens a client put in the query string -> its x-request-id
LOG_START: list[int] = []  # size of envoy.log when this module's first case began


@pytest.fixture
def guard(stack: Stack):
    g = Guard(stack)
    yield g
    g.finish()


def restart(stack: Stack, guard: Guard, **kw) -> None:
    stack.restart_envoy(**kw)
    guard.arm()


def mock_only(stack: Stack, guard: Guard, **jwks: int) -> Callable[[dict], dict]:
    """A plugin override: the mock issuer as the only issuer (one JWKS source), with `jwks`
    settings. For the cases that rotate the mock's keys and count on the kid-miss refetch of that
    one source; the guard's next good request then uses a mock token."""

    def edit(plugin: dict) -> dict:
        stack.only_mock_issuer(plugin)
        stack.mock_jwks(plugin).update(jwks)
        return plugin

    guard.good_token = lambda: stack.control_token("admin")
    return edit


def assert_problem(r, status: int) -> dict:
    shown = "(a 201's credentials not shown)" if r.status_code == 201 else r.text[:500]
    assert r.status_code == status, f"{r.status_code} {shown}"
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["status"] == status
    return body


def assert_invalid_token(r) -> None:
    assert_problem(r, 401)
    assert 'error="invalid_token"' in r.headers["www-authenticate"], r.headers


# --------------------------------------------------------------------------- tokens

HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_rsa_public_key(stack, guard, alg):
    header = {"alg": alg, "typ": "JWT", "kid": current_kid(stack)}
    signing_input = f"{b64url(json.dumps(header))}.{b64url(json.dumps(good_claims(stack)))}"
    sig = hmac.new(public_pem(stack), signing_input.encode(), HMAC[alg]).digest()
    token = f"{signing_input}.{b64url(sig)}"
    guard.secret(token)
    assert_invalid_token(mint(stack, token))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(stack, guard, alg):
    header = {"alg": alg, "typ": "JWT", "kid": current_kid(stack)}
    token = f"{b64url(json.dumps(header))}.{b64url(json.dumps(good_claims(stack)))}."
    guard.secret(token)
    assert_invalid_token(mint(stack, token))


def test_alg_none_keeping_the_real_signature(stack, guard):
    real = stack.control_token("admin")
    h, p, s = real.split(".")
    header = dict(jose_header(real), alg="none")
    token = f"{b64url(json.dumps(header))}.{p}.{s}"
    guard.secret(token)
    assert_invalid_token(mint(stack, token))


def test_rs256_by_an_unpublished_key(stack, guard):
    token = stack.control_token("admin", unpublished=True)
    guard.secret(token)
    assert jose_header(token)["kid"] not in {k["kid"] for k in stack.jwks()["keys"]}
    assert_invalid_token(mint(stack, token))
    assert_invalid_token(mint(stack, token))  # again, after the refetch it may have caused


def test_kid_of_the_encryption_key(stack, guard):
    enc = next(k["kid"] for k in stack.jwks()["keys"] if k.get("use") == "enc")
    token = stack.control_token("admin", header={"kid": enc})
    guard.secret(token)
    assert jose_header(token)["kid"] == enc
    assert_invalid_token(mint(stack, token))


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/jwks",
        "a\u0000b",
        "x\r\nX-Injected: 1",
        "%2e%2e%2f",
        "\u202egnp.exe",
        "k" * 4000,
        "sig-1\tsig-2",
    ],
)
def test_kid_with_path_or_control_characters(stack, guard, kid):
    token = stack.control_token("admin", header={"kid": kid})
    guard.secret(token)
    assert jose_header(token)["kid"] == kid
    assert_invalid_token(mint(stack, token))
    time.sleep(0.2)
    log = stack.envoy_log()[guard.offset :]
    assert "X-Injected" not in log


def test_no_kid_while_the_jwks_has_several_keys(stack, guard):
    # A variant, so the Envoy that learned the rotated JWKS is replaced after the test; it starts
    # with exactly one signing key, whatever earlier tests left in the issuer.
    stack.rotate_keys(keep_old=False)
    restart(stack, guard, plugin_overrides=mock_only(stack, guard, min_refetch_seconds=1))
    old_kid = current_kid(stack)
    stack.rotate_keys(keep_old=True)
    assert len([k for k in stack.jwks()["keys"] if k.get("use") == "sig"]) == 2
    time.sleep(1.2)  # min_refetch_seconds since the fetch at Envoy's start
    # The new kid makes the filter refetch: it now knows both keys (on every worker).
    seen = [mint(stack, stack.control_token("admin")).status_code for _ in range(6)]
    seen += [mint(stack, stack.control_token("admin", kid=old_kid)).status_code for _ in range(6)]
    assert seen == [201] * 12, seen
    token = stack.control_token("admin", header={"kid": None})
    guard.secret(token)
    assert "kid" not in jose_header(token)
    r = mint(stack, token)
    assert_invalid_token(r)
    assert "no kid" in r.json()["detail"]


def test_no_kid_with_a_single_signing_key_is_accepted(stack, guard):
    """The control case of the one above: with one signing key a kid-less token verifies. The
    mock issuer alone: with Keycloak's source too, two signing keys would fit a kid-less token."""
    stack.rotate_keys(keep_old=False)  # one signing key, whatever earlier tests left
    restart(stack, guard, plugin_overrides=mock_only(stack, guard))  # a variant: fresh JWKS now, default after
    token = stack.control_token("admin", header={"kid": None})
    guard.secret(token)
    assert "kid" not in jose_header(token)
    assert mint(stack, token).status_code == 201


def test_64_kib_token_is_refused_by_envoy_before_the_filter(stack, guard):
    """Envoy's default header limit (max_request_headers_kb 60) answers 431 before any filter runs."""
    real = stack.control_token("admin")
    h, p, s = real.split(".")
    token = f"{h}.{p}{'A' * (64 * 1024)}.{s}"
    guard.secret(token)
    r = mint(stack, token)
    assert r.status_code == 431, r.status_code


def test_token_over_max_token_bytes_is_401_before_parsing(stack, guard):
    """Below Envoy's limit but above the filter's max_token_bytes (16384): the filter refuses it."""
    token = stack.control_token("admin", claims={"pad": "x" * 20000})
    guard.secret(token)
    assert 16384 < len(token) < 60 * 1024
    r = mint(stack, token)
    assert_invalid_token(r)
    assert "too large" in r.json()["detail"]


@pytest.mark.parametrize(
    "shape", ["two_parts", "four_parts", "trailing_dot", "leading_dot", "only_dots", "empty_payload", "five_dots"]
)
def test_extra_or_missing_dots(stack, guard, shape):
    real = stack.control_token("admin")
    guard.secret(real)
    h, p, s = real.split(".")
    token = {
        "two_parts": f"{h}.{p}",
        "four_parts": f"{h}.{p}.{s}.{s}",
        "trailing_dot": f"{real}.",
        "leading_dot": f".{real}",
        "only_dots": "..",
        "empty_payload": f"{h}..{s}",
        "five_dots": f"{h}.{p}...{s}",
    }[shape]
    assert_invalid_token(mint(stack, token))


@pytest.mark.parametrize("shape", ["plus_slash", "padding", "bad_length", "not_json", "utf8", "percent"])
def test_bad_base64url(stack, guard, shape):
    real = stack.control_token("admin")
    guard.secret(real)
    h, p, s = real.split(".")
    token = {
        "plus_slash": f"{h}.{p.replace('-', '+').replace('_', '/')}+/.{s}",
        "padding": f"{h}==.{p}.{s}",
        "bad_length": f"{h}A.{p}.{s}",  # 4n+1 characters cannot be base64
        "not_json": f"{b64url('not json')}.{p}.{s}",
        "utf8": f"{h}.{p}\u00e9.{s}",
        "percent": f"{h}.{p}%3D.{s}",
    }[shape]
    if shape == "utf8":
        status, headers, body = raw_request(
            stack, "PUT", TOKEN_PATH, [("Authorization", f"Bearer {token}".encode().decode("latin-1"))]
        )
        assert status == 401, (status, body)
        return
    assert_invalid_token(mint(stack, token))


def test_header_nested_10000_deep_is_refused(stack, guard):
    """27 KB of header: refused by size (max_token_bytes) at the default settings."""
    header = '{"alg":"RS256","x":' + "[" * 10000 + "]" * 10000 + "}"
    token = f"{b64url(header)}.{b64url(json.dumps(good_claims(stack)))}.{b64url(b'sig' * 90)}"
    r = mint(stack, token)
    assert_invalid_token(r)


@pytest.mark.parametrize("where", ["header", "signed_claims"])
def test_json_nested_10000_deep_reaches_the_parser(stack, guard, where):
    """With max_token_bytes raised to 64 KiB deep JSON reaches serde_json (recursion limit 128):
    a 10,000-deep unsigned header, and 2,000-deep validly signed claims (parsed after the
    signature check)."""
    restart(stack, guard, plugin_overrides={"max_token_bytes": 65536})
    deep = "[" * 10000 + "]" * 10000
    if where == "header":
        header = '{"alg":"RS256","kid":"' + current_kid(stack) + '","x":' + deep + "}"
        token = f"{b64url(header)}.{b64url(json.dumps(good_claims(stack)))}.{b64url(b'sig' * 90)}"
    else:
        # The issuer (Node) overflows its own stack at 10,000; 2,000 is still far past serde_json's 128.
        deep = "[" * 2000 + "]" * 2000
        token = control_token_raw(stack, '{"username": "admin", "expires_in": 3600, "claims": {"x": ' + deep + "}}")
    guard.secret(token)
    assert_invalid_token(mint(stack, token))


# Tokens over JSON that no JOSE library writes, signed by the issuer's current key through its
# control API (`stack.sign_raw`): the signature verifies, so what the filter answers is about the
# JSON. Each case first mints with the same raw-signing path and the same header and payload minus
# the oddity (the positive control), then sends the odd token.


def raw_header(stack: Stack, **extra: object) -> dict:
    return {"alg": "RS256", "typ": "JWT", "kid": current_kid(stack), **extra}


def claims_text(claims: dict, *members: str) -> bytes:
    """`claims` as JSON text with raw `"name": value` members appended (duplicates allowed)."""
    text = json.dumps(claims)
    return (text[:-1] + "".join(f", {m}" for m in members) + "}").encode()


def raw_signed(stack: Stack, guard: Guard, header: dict | bytes, payload: bytes) -> str:
    if isinstance(header, dict):
        header = json.dumps(header).encode()
    token = stack.sign_raw(header, payload)
    guard.secret(token)
    return token


def assert_raw_control_mints(stack: Stack, guard: Guard, header: dict, claims: dict) -> None:
    """The positive control: the raw-signing path with this header and these claims mints."""
    r = mint(stack, raw_signed(stack, guard, header, claims_text(claims)))
    assert r.status_code == 201, f"the raw-signed control did not mint: {r.status_code} {r.text}"
    guard.secret(r.json()["Credentials"]["SecretAccessKey"], r.json()["Credentials"]["SessionToken"])


def test_sign_raw_signs_exactly_the_bytes_given(stack, guard):
    """The oracle the cases below rely on: the token carries the given bytes unchanged, and its
    signature verifies with the published key (checked here with `cryptography`, not the filter)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = json.dumps(raw_header(stack)).encode()
    payload = b'{"iss": "a", "iss": "b", "x": 1}'
    token = raw_signed(stack, guard, header, payload)
    h, p, s = token.split(".")
    assert (unb64url(h), unb64url(p)) == (header, payload)
    jwk = next(k for k in stack.jwks()["keys"] if k["kid"] == current_kid(stack))
    key = rsa.RSAPublicNumbers(
        int.from_bytes(unb64url(jwk["e"]), "big"), int.from_bytes(unb64url(jwk["n"]), "big")
    ).public_key()
    key.verify(unb64url(s), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if not


MALFORMED = "invalid token: malformed token"
DUPLICATES = {
    # name: (username, the member appended to that user's good claims, expected status, detail)
    "iss_twice_same": ("admin", '"iss": "__ISS__"', 401, MALFORMED),
    "iss_twice_other": ("admin", '"iss": "https://evil.example/"', 401, MALFORMED),
    "aud_twice": ("admin", '"aud": "shasta"', 401, MALFORMED),
    "exp_twice": ("admin", '"exp": __EXP__', 401, MALFORMED),
    "resource_access_twice_same": ("admin", '"resource_access": __RA__', 401, MALFORMED),
    # A user's token whose second resource_access grants admin: a parser that keeps the first
    # value sees a user (403), one that keeps the last sees an admin (201).
    "resource_access_escalating": ("user", '"resource_access": {"shasta": {"roles": ["admin"]}}', 401, MALFORMED),
}
# jwt-simple parses the registered claims (iss, sub, aud, exp, nbf, iat, jti) into a struct whose
# derived Deserialize refuses a duplicate, and flattens every other claim into a JSON map where the
# last duplicate would win; the filter therefore refuses a duplicate key anywhere in the payload.


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_claims_validly_signed(stack, guard, case):
    """Duplicate claims under a valid signature are refused as malformed (not as a bad
    signature: the control with the same header and claims, each once, mints)."""
    username, member, expected, detail = DUPLICATES[case]
    claims = jose_payload(stack.control_token(username))
    header = raw_header(stack)
    # The control: these claims, each once (with the admin role, so that it can mint).
    assert_raw_control_mints(stack, guard, header, dict(claims, resource_access={"shasta": {"roles": ["admin"]}}))
    if username == "user":  # the first resource_access alone: a user, refused
        assert mint(stack, raw_signed(stack, guard, header, claims_text(claims))).status_code == 403
    member = (
        member.replace("__ISS__", stack.cfg.issuer_url)
        .replace("__EXP__", str(claims["exp"]))
        .replace("__RA__", json.dumps(claims["resource_access"]))
    )
    payload = claims_text(claims, member)
    name = member.split(":")[0]
    assert payload.count(name.encode()) == 2, payload
    r = mint(stack, raw_signed(stack, guard, header, payload))
    if r.status_code == 201:
        guard.secret(r.json()["Credentials"]["SecretAccessKey"], r.json()["Credentials"]["SessionToken"])
    assert r.status_code == expected, (
        f"{r.status_code} (expected {expected}) {r.text[:300] if r.status_code != 201 else ''}"
    )
    assert_problem(r, expected)
    assert r.json()["detail"] == detail, r.json()


CRIT = {
    # name: (header members added, expected status, detail)
    "registered_name": ({"crit": ["exp"]}, 401, "invalid token: unsupported critical header (crit)"),
    "unknown_extension": (
        {"crit": ["x-unknown"], "x-unknown": 1},
        401,
        "invalid token: unsupported critical header (crit)",
    ),
    # RFC 7515 4.1.11: producers MUST NOT send an empty list; recipients MAY refuse it. jwt-simple
    # accepts it (it names no extension the filter would have to understand).
    "empty_list": ({"crit": []}, 201, None),
    "not_a_list": ({"crit": "exp"}, 401, "invalid token: malformed token header"),
}


@pytest.mark.parametrize("case", list(CRIT))
def test_crit_header_validly_signed(stack, guard, case):
    """A `crit` header naming anything, under a valid signature, is refused as not understood
    (RFC 7515 4.1.11), a `crit` that is not a list as a malformed header (not as a bad
    signature: the control, the same header without `crit`, mints)."""
    extra, expected, detail = CRIT[case]
    claims = good_claims(stack)
    assert_raw_control_mints(stack, guard, raw_header(stack), claims)
    r = mint(stack, raw_signed(stack, guard, raw_header(stack, **extra), claims_text(claims)))
    if r.status_code == 201:
        guard.secret(r.json()["Credentials"]["SecretAccessKey"], r.json()["Credentials"]["SessionToken"])
    assert r.status_code == expected, (
        f"{r.status_code} (expected {expected}) {r.text[:300] if r.status_code != 201 else ''}"
    )
    if expected != 201:
        assert_problem(r, expected)
        assert r.json()["detail"] == detail, r.json()


def test_token_in_the_query_is_ignored(stack, guard):
    token = stack.token("admin")
    request_id = "query-token-" + secrets.token_hex(8)
    r = stack.gateway_request("PUT", f"{TOKEN_PATH}?access_token={token}", headers={"x-request-id": request_id})
    assert_problem(r, 401)
    assert "error=" not in r.headers["www-authenticate"]  # "missing", not "invalid"
    # Envoy's access log prints the path with its query (the client's leak, but the log must not
    # keep it): checked by test_zz_query_token_not_in_the_access_log once the log is flushed.
    QUERY_SECRETS[token] = request_id


@pytest.mark.parametrize("second", ["same", "garbage", "basic"])
def test_two_authorization_headers(stack, guard, second):
    token = stack.token("admin")
    guard.secret(token)
    other = {"same": f"Bearer {token}", "garbage": "Bearer a.b.c", "basic": "Basic YWRtaW46YWRtaW4="}[second]
    for https in (True, False):
        status, headers, body = raw_request(
            stack, "PUT", TOKEN_PATH, [("Authorization", f"Bearer {token}"), ("Authorization", other)], https=https
        )
        # Envoy's HTTP/1 codec joins repeated headers into one value ("Bearer a, Bearer b"), so
        # the filter sees one malformed token rather than two headers: 401 either way.
        assert status == 401, (status, body)
        assert 'error="invalid_token"' in headers["www-authenticate"], headers


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    ", "bearer", "Bearer\t", "Token abc.def.ghi", ""])
def test_bearer_with_no_token(stack, guard, value):
    status, headers, body = raw_request(stack, "PUT", TOKEN_PATH, [("Authorization", value)])
    assert status == 401, (status, body)
    assert headers["www-authenticate"].startswith("Bearer realm=")


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "POST", "DELETE", "PATCH", "GET"])
def test_other_methods_on_the_token_path_are_405(stack, guard, method):
    r = stack.gateway_request(method, TOKEN_PATH, token=stack.token("admin"))
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "PUT"


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/apis/sts/token/", 404),  # the filter: not an endpoint
        ("/apis/sts//token", 404),  # the filter: Envoy does not merge slashes (merge_slashes off)
        ("/apis/sts/%74oken", 201),  # Envoy's normalize_path decodes the unreserved %74 ('t')
        ("/apis/sts/./token", 201),  # normalize_path removes dot segments
        ("/apis/sts/x/../token", 201),
        ("/APIS/sts/token", 404),  # not the filter's prefix: the route's direct 404 (empty body)
        ("/apis/sts/token?x=1", 201),
        ("/apis/sts/token#frag", 400),  # Envoy refuses a fragment in the request-target
        ("/apis/sts/token%2F", 404),
        ("/apis/sts/%2e%2e/sts/token", 201),
    ],
)
def test_paths(stack, guard, path, expected):
    status, headers, body = raw_request(stack, "PUT", path, [("Authorization", f"Bearer {stack.token('admin')}")])
    assert status == expected, (status, body[:300])
    if expected == 201:
        guard.secret(json.loads(body)["Credentials"]["SecretAccessKey"])
    elif expected == 400:
        assert b"Credentials" not in body
    elif path.startswith("/apis/sts/"):
        assert headers["content-type"] == "application/problem+json"
    else:
        assert body == b"" and "www-authenticate" not in headers  # Envoy's route, not the filter


@pytest.mark.parametrize("body", [b"{}", b"x" * 100_000, b"\x00\xff" * 1000])
def test_request_body_on_put_is_ignored(stack, guard, body):
    token = stack.token("admin")
    guard.secret(token)
    r = mint(stack, token, data=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- RGW


VALID_CREDS = {
    "AccessKeyId": "AKIAHOSTILE000000001",
    "SecretAccessKey": "S" * 40,
    "SessionToken": "T" * 384,
    "Expiration": "2030-11-30T00:57:59.260716106Z",
}


def assume_role_xml(**fields: str | None) -> str:
    creds = {**VALID_CREDS, **fields}
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in creds.items() if v is not None)
    return (
        f"<AssumeRoleResponse><AssumeRoleResult><Credentials>{inner}</Credentials>"
        "</AssumeRoleResult></AssumeRoleResponse>"
    )


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
    + "]><AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>&lol9;</AccessKeyId>"
    + "</Credentials></AssumeRoleResult></AssumeRoleResponse>"
)
XXE = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + assume_role_xml(
    SessionToken="&xxe;"
)

RGW_CASES = {
    # name: (behavior, kwargs, expected status, expected `code` in the problem body or None)
    "rgw_500": ("status", {"status": 500, "body": "Internal Server Error"}, 502, None),
    "rgw_403_access_denied": (
        "status",
        {
            "status": 403,
            "content_type": "application/xml",
            "body": '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
            "<Message></Message><RequestId>tx1</RequestId><HostId>h</HostId></Error>",
        },
        502,
        "AccessDenied",
    ),
    "rgw_code_injection": (
        "status",
        {"status": 400, "body": '<Error><Code>Bad"Code&#13;&#10;&lt;script&gt;' + "A" * 500 + "</Code></Error>"},
        502,
        "BadCodescript" + "A" * 51,
    ),
    "rgw_error_not_xml": ("status", {"status": 400, "body": "<Error><Code>Bad\r\n<script>"}, 502, "Unknown"),
    "garbage_xml": ("status", {"status": 200, "body": "<AssumeRoleResponse><AssumeRoleResult><Creden"}, 502, None),
    "not_xml": ("status", {"status": 200, "body": b"\x00\x01\xfe\xff garbage"}, 502, None),
    "html": ("status", {"status": 200, "body": "<html><body>login</body></html>"}, 502, None),
    "doctype_entity_expansion": ("status", {"status": 200, "body": LAUGHS}, 502, None),
    "external_entity": ("status", {"status": 200, "body": XXE}, 502, None),
    "undeclared_entity": ("status", {"status": 200, "body": assume_role_xml(SessionToken="&xxe;")}, 502, None),
    "body_10_mib": ("huge", {"size": 10 << 20, "fill": b"<a>"}, 502, None),
    "missing_AccessKeyId": ("status", {"status": 200, "body": assume_role_xml(AccessKeyId=None)}, 502, None),
    "missing_SecretAccessKey": ("status", {"status": 200, "body": assume_role_xml(SecretAccessKey=None)}, 502, None),
    "missing_SessionToken": ("status", {"status": 200, "body": assume_role_xml(SessionToken=None)}, 502, None),
    "missing_Expiration": ("status", {"status": 200, "body": assume_role_xml(Expiration=None)}, 502, None),
    "bad_Expiration": ("status", {"status": 200, "body": assume_role_xml(Expiration="tomorrow")}, 502, None),
    "slower_than_timeout": ("slow", {"delay": 10.0}, 504, None),
    "connection_closed": ("refuse", {}, 503, None),
}


@pytest.fixture(scope="module")
def hostile_rgw(stack) -> Misbehaving:
    with Misbehaving(upstream=stack.rgw_endpoint) as srv:
        yield srv


def rgw_variant(stack: Stack, guard: Guard, srv: Misbehaving) -> None:
    srv.behave("proxy")
    restart(
        stack,
        guard,
        plugin_overrides={"rgw": {"cluster": "hostile_rgw", "timeout_ms": 1000}},
        extra_clusters=[Stack.cluster("hostile_rgw", srv.port)],
    )


@pytest.mark.parametrize("case", list(RGW_CASES))
def test_rgw_misbehaves(stack, guard, hostile_rgw, case):
    behavior, kw, expected, code = RGW_CASES[case]
    rgw_variant(stack, guard, hostile_rgw)
    guard.good_request()  # through the transparent proxy first
    token = stack.token("admin")
    guard.secret(token)
    hostile_rgw.behave(behavior, **kw)
    try:
        t0 = time.monotonic()
        r = mint(stack, token)
        elapsed = time.monotonic() - t0
    finally:
        hostile_rgw.behave("proxy")
    body = assert_problem(r, expected)
    if code is not None:
        assert body.get("code") == code, body
    else:
        assert "code" not in body or body["code"] == "Unknown", body
    for secret in (VALID_CREDS["SecretAccessKey"], VALID_CREDS["SessionToken"], "root:", "lollollol"):
        assert secret not in r.text
    if case == "slower_than_timeout":
        assert 0.9 < elapsed < 8, elapsed  # rgw.timeout_ms 1000, not the server's 10 s (wide: loaded CI)


def test_rgw_stopped_is_503_then_recovers(stack, guard):
    stack.stop_rgw()
    r = mint(stack, stack.token("admin"))
    assert_problem(r, 503)
    assert r.headers["retry-after"].isdigit()
    stack.start_rgw()


# --------------------------------------------------------------------------- JWKS


JWKS_CASES = {
    "jwks_500": ("status", {"status": 500, "body": "oops"}),
    "jwks_404_html": ("status", {"status": 404, "body": "<html>not found</html>"}),
    "jwks_garbage": ("status", {"status": 200, "body": b"\x00garbage{", "content_type": "application/json"}),
    "jwks_html_200": ("status", {"status": 200, "body": "<html>login</html>"}),
    "jwks_no_usable_key": (
        "status",
        {
            "status": 200,
            "body": json.dumps(
                {
                    "keys": [
                        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
                        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
                        {"kty": "RSA", "n": "!!!", "e": "AQAB", "kid": "bad-b64"},
                    ]
                }
            ),
        },
    ),
    "jwks_deep_json": ("status", {"status": 200, "body": '{"keys":' + "[" * 10000 + "]" * 10000 + "}"}),
    "jwks_10_mib": ("huge", {"size": 10 << 20, "fill": b'{"keys":[', "content_type": "application/json"}),
    "jwks_slower_than_timeout": ("slow", {"delay": 2.0}),
    "jwks_connection_closed": ("refuse", {}),
}


@pytest.fixture(scope="module")
def hostile_jwks(stack) -> Misbehaving:
    with Misbehaving(upstream=stack.cfg.issuer_direct_url) as srv:
        yield srv


def jwks_variant(stack: Stack, guard: Guard, srv: Misbehaving, **jwks: int) -> None:
    """The mock issuer's JWKS source behind `srv`; Keycloak's (the first issuer) stays as it is,
    so the guard's next good request (a Keycloak token) also shows the other source unharmed."""

    def edit(plugin: dict) -> None:
        stack.mock_jwks(plugin).update(
            {
                "cluster": "hostile_jwks",
                "path": "/jwks",
                # Far beyond every wait below: recovering within them is retry_seconds' doing.
                "refresh_seconds": 3600,
                "retry_seconds": 1,
                "min_refetch_seconds": 1,
                "timeout_ms": 500,
                **jwks,
            }
        )

    restart(
        stack, guard, plugin_overrides=edit, extra_clusters=[Stack.cluster("hostile_jwks", srv.port)], wait_keys=False
    )


def wait_status(stack: Stack, token: str, status: int, timeout: float) -> float:
    """Polls a mint until it answers `status`; returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = mint(stack, token)
        if last.status_code == status:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(
        f"no {status} within {timeout}s; last {last.status_code if last else None}: {last.text if last else ''}"
    )


def jwks_failures(stack: Stack) -> int:
    return stack.envoy_stats().get("wasmcustom.sts_gateway_jwks_fetches_failed", 0)


@pytest.mark.parametrize("case", list(JWKS_CASES))
def test_jwks_misbehaves(stack, guard, hostile_jwks, case):
    """From Envoy's start: 503 with Retry-After while no key was ever fetched, 201 once the JWKS
    answers; then the same misbehaviour on a refetch keeps the last good keys (201)."""
    behavior, kw = JWKS_CASES[case]
    token = stack.control_token("admin")
    guard.secret(token)
    try:
        hostile_jwks.behave(behavior, **kw)
        jwks_variant(stack, guard, hostile_jwks)
        deadline = time.monotonic() + 20
        while jwks_failures(stack) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jwks_failures(stack) >= 1, "the first fetch did not fail"
        r = mint(stack, token)
        assert_problem(r, 503)
        assert r.headers["retry-after"].isdigit()
        hostile_jwks.behave("proxy")
        # retry_seconds 1 brings the keys; without it the next attempt is refresh_seconds (3600) away.
        took = wait_status(stack, token, 201, timeout=60)
        assert took < 45, took
        # Keys known: a misbehaving refetch (forced by an unknown kid, at most once per
        # min_refetch_seconds 1) changes nothing for callers: the last good keys stay.
        hostile_jwks.behave(behavior, **kw)
        before = jwks_failures(stack)
        for _ in range(2):
            time.sleep(1.2)
            assert_invalid_token(mint(stack, stack.control_token("admin", unpublished=True)))
            assert mint(stack, token).status_code == 201
        deadline = time.monotonic() + 20
        while jwks_failures(stack) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jwks_failures(stack) >= before + 2, "the filter did not refetch the JWKS"
        assert mint(stack, token).status_code == 201
    finally:
        hostile_jwks.behave("proxy")


def test_jwks_over_max_bytes_is_refused(stack, guard, hostile_jwks):
    """A real JWKS padded past jwks.max_bytes (here 4 KiB) is refused although it is valid JSON."""
    token = stack.control_token("admin")
    guard.secret(token)
    padded = dict(stack.jwks(), padding="x" * 8192)
    hostile_jwks.behave("status", status=200, body=json.dumps(padded), content_type="application/json")
    jwks_variant(stack, guard, hostile_jwks, max_bytes=4096)
    # The 503 must follow the refused fetch, not merely come before the first answer.
    deadline = time.monotonic() + 20
    while jwks_failures(stack) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jwks_failures(stack) >= 1, "the padded JWKS was not refused"
    assert_problem(mint(stack, token), 503)
    hostile_jwks.behave("status", status=200, body=json.dumps(stack.jwks()), content_type="application/json")
    wait_status(stack, token, 201, timeout=60)
    hostile_jwks.behave("proxy")


def test_issuer_down_when_envoy_starts_then_up(stack, guard):
    """The mock issuer down when Envoy starts (Keycloak, the other source, stays up)."""
    old_token = stack.control_token("admin")
    guard.secret(old_token)
    stack.stop_issuer()
    restart(stack, guard, plugin_overrides=lambda p: stack.mock_jwks(p).update(retry_seconds=1), wait_keys=False)
    r = mint(stack, old_token)
    assert_problem(r, 503)
    assert r.headers["retry-after"].isdigit()
    assert "not available" in r.json()["detail"]
    stack.start_issuer()  # with new keys
    token = stack.control_token("admin")
    guard.secret(token)
    # retry_seconds 1 brings the new keys; the default refresh_seconds (300) would not, in time.
    took = wait_status(stack, token, 201, timeout=60)
    assert took < 45, took
    assert_invalid_token(mint(stack, old_token))  # its key is gone with the old issuer


def test_keys_rotated_while_traffic_runs(stack, guard):
    """Old kid gone, new kid present, with 4 clients minting all along: every request signed by a
    key the issuer publishes gets 201; the old kid's tokens get 401 once the filter refetched."""
    restart(stack, guard, plugin_overrides=mock_only(stack, guard, min_refetch_seconds=1))
    state = {"token": stack.control_token("admin"), "published": {current_kid(stack)}}
    guard.secret(state["token"])
    results: list[tuple[str, bool, int]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                token = state["token"]
            kid = jose_header(token)["kid"]
            r = mint(stack, token, via="http")
            with lock:
                results.append((kid, kid in state["published"], r.status_code))

    def wait_results(enough) -> None:
        """Until `enough(results)` holds (traffic, not wall-clock time, marks each phase)."""
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            with lock:
                if enough(results):
                    return
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_results(lambda rs: len(rs) >= 10)  # traffic with the old key first
        old_kid = current_kid(stack)
        with lock:
            new_kid = stack.rotate_keys(keep_old=False)
            state["published"] = {new_kid}
            state["token"] = stack.control_token("admin")
            old_token = stack.control_token("admin", kid=old_kid)
        guard.secret(state["token"], old_token)
        wait_results(lambda rs: sum(1 for kid, _, _ in rs if kid == new_kid) > 10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert sum(1 for kid, _, _ in results if kid == new_kid) > 10, results[-5:]
    assert {st for _, _, st in results} <= {201, 401}, sorted({st for _, _, st in results})
    assert mint(stack, old_token).status_code == 401
    bad = [(kid[:8], st) for kid, published, st in results if published and st != 201]
    # Was a filter bug (concurrent requests with the new kid got 401 while one request's refetch
    # was in flight), fixed by parking them until the refetch ends (2ae6bb7).
    assert not bad, f"{len(bad)} of {len(results)} requests with a published key failed: {bad[:20]}"


# --------------------------------------------------------------------------- the log, flushed


def flushed_log(stack: Stack) -> str:
    """This module's part of envoy.log after a restart (Envoy flushes its access log on exit)."""
    assert LOG_START, "run with the other cases of this module"
    stack.restart_envoy()
    with open(stack.envoy_log_path, "rb") as f:
        f.seek(LOG_START[0])
        return f.read().decode("utf-8", "replace")


def test_zz_query_token_not_in_the_access_log(stack):
    """The access log prints the path without its query (envoy/envoy.yaml.in's log_format)."""
    assert QUERY_SECRETS, "run with test_token_in_the_query_is_ignored"
    text = flushed_log(stack)
    # Positive control: each of those requests has its access-log line (found by its
    # x-request-id), the path printed and the 401, so the token's absence is not a missing line.
    for request_id in QUERY_SECRETS.values():
        lines = [ln for ln in text.splitlines() if f'"{request_id}"' in ln]
        assert any('"PUT /apis/sts/token HTTP/1.1" 401 ' in ln for ln in lines), (request_id, lines)
    assert not [s for s in QUERY_SECRETS if s in text], "a token sent in the query string is in Envoy's log"


def test_zz_no_secret_in_the_flushed_log(stack):
    """Envoy's access log is flushed lazily: restart Envoy (it flushes on exit), then grep the
    whole log of this module's run for every secret the cases used."""
    assert ALL_SECRETS, "run with the other cases of this module"
    text = flushed_log(stack)
    # The positive control: the access-log lines searched are really there, one per request of
    # the cases (well over a hundred mints), and so are the filter's own per-mint lines.
    access = [ln for ln in text.splitlines() if '"PUT /apis/sts/token HTTP/1.1"' in ln]
    assert len(access) >= 100, f"only {len(access)} access-log lines for the token path"
    assert " 201 " in "".join(access) and " 401 " in "".join(access)
    assert "sts-gateway: mint " in text
    leaked = [s[:8] for s in ALL_SECRETS if s in text]
    assert not leaked, f"{len(leaked)} secret(s) in Envoy's log, e.g. starting {leaked[:5]}"
    for marker in VM_FAILURE_MARKERS:
        assert marker not in text, marker
