"""AWS SDKs refresh their credentials from the gateway by themselves (issue 12), end to end on the
real Envoy 1.40 + Ceph RGW + issuer.

`GET /apis/sts/credentials` answers the AWS container-credentials format. The SDK clients here
(boto3, the `aws` CLI) run in subprocesses with a clean environment holding only what
docs/sdk-credentials.md tells users to set:

    AWS_CONTAINER_CREDENTIALS_FULL_URI      https://127.0.0.1:<https port>/apis/sts/credentials
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE  a file holding the JWT, no trailing newline
    AWS_ENDPOINT_URL_S3                     RGW
    AWS_DEFAULT_REGION                      us-east-1

plus PATH and an empty HOME (no ~/.aws). They trust the gateway's CA the way the doc says:
botocore checks this endpoint against certifi's bundle only, so the client Python is a venv of
its own whose certifi bundle got the CA appended with the doc's command (the project's venv is
never touched); `test_https_trust_is_certifi_only` shows the other usual ways do not work.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

CREDS_PATH = "/apis/sts/credentials"
TOKEN_PATH = "/apis/sts/token"
EXPIRATION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MINTED = "wasmcustom.sts_gateway_credentials_requests_minted"
# The command docs/sdk-credentials.md gives Python users of a venv (run with that venv's python first on PATH).
APPEND_CA = 'cat "$STS_CA_FILE" >> "$(python -c "import certifi; print(certifi.where())")"'

# An S3 program that knows nothing of the gateway: commands as JSON lines on stdin, one JSON
# answer line each. The access key id of the credentials in use is read without refreshing.
CLIENT = r"""
import json, sys
import boto3

def say(obj):
    print(json.dumps(obj), flush=True)

try:
    s3 = boto3.client("s3")
except Exception as e:
    say({"op": "client", "error": type(e).__name__, "message": str(e)})
    sys.exit(3)
say({"op": "client"})
creds = s3._request_signer._credentials
for line in sys.stdin:
    cmd = json.loads(line)
    op, out = cmd["op"], {}
    try:
        if op == "create":
            s3.create_bucket(Bucket=cmd["bucket"])
        elif op == "put":
            s3.put_object(Bucket=cmd["bucket"], Key=cmd["key"], Body=cmd["body"].encode())
        elif op == "get":
            out["body"] = s3.get_object(Bucket=cmd["bucket"], Key=cmd["key"])["Body"].read().decode()
        elif op == "list":
            contents = s3.list_objects_v2(Bucket=cmd["bucket"]).get("Contents", [])
            out["keys"] = [o["Key"] for o in contents]
        out["key_id"] = creds._access_key
    except Exception as e:
        out.update(error=type(e).__name__, message=str(e))
    out["op"] = op
    say(out)
"""


# ------------------------------------------------------------------ helpers


def get_creds(stack, authorization: str | None, path: str = CREDS_PATH, **kw) -> requests.Response:
    headers = dict(kw.pop("headers", None) or {})
    if authorization is not None:
        headers["Authorization"] = authorization
    return stack.gateway_request("GET", path, headers=headers, **kw)


def creds_url(stack, query: str = "") -> str:
    return f"https://127.0.0.1:{stack.cfg.ports['https']}{CREDS_PATH}{query}"


def mint_lines(stack, route: str = "credentials") -> list[str]:
    return [
        ln
        for ln in stack.envoy_log().splitlines()
        if "sts-gateway: mint " in ln and ln.rstrip().endswith(f"route={route}")
    ]


def wait_mint_lines(stack, at_least: int, route: str = "credentials", timeout: float = 8.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = mint_lines(stack, route)
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def caller_of(line: str) -> str:
    m = re.search(r'mint caller="([^"]*)"', line)
    assert m, line
    return m.group(1)


@pytest.fixture(scope="module")
def client_venv(stack, tmp_path_factory) -> Path:
    """A Python of its own for the SDK clients: a venv with a copy of certifi to which the
    gateway's CA is appended by the doc's command, and the project's packages (boto3, awscli)
    through a .pth file; `bin/aws` is the awscli script as pip would install it there."""
    venv = tmp_path_factory.mktemp("sdk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    import certifi

    shutil.copytree(Path(certifi.__file__).parent, purelib / "certifi")
    (purelib / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "STS_CA_FILE": stack.ca_file}
    where = subprocess.run(
        ["python", "-c", "import certifi; print(certifi.where())"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert where.startswith(str(venv)), f"the client venv would change another bundle: {where}"
    subprocess.run(["sh", "-c", APPEND_CA], env=env, check=True, timeout=30)
    assert Path(stack.ca_file).read_text().strip() in Path(where).read_text()
    aws = Path(sys.executable).parent / "aws"
    script = aws.read_text().split("\n", 1)[1]
    (venv / "bin" / "aws").write_text(f"#!{py}\n{script}")
    (venv / "bin" / "aws").chmod(0o755)
    (venv / "client.py").write_text(CLIENT)
    return venv


def sdk_env(stack, venv: Path, token_file: Path, query: str = "", **extra: str) -> dict[str, str]:
    """The client's whole environment: the doc's four variables, PATH and an empty HOME."""
    home = token_file.parent / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": creds_url(stack, query),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        "AWS_ENDPOINT_URL_S3": stack.rgw_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.update(extra)
    return env


def write_token(path: Path, token: str) -> None:
    """The token file as the doc says: only the JWT, no trailing newline."""
    path.write_text(token)
    assert not path.read_text().endswith("\n")


class Client:
    """The boto3 client program in its own process, driven one command at a time."""

    def __init__(self, venv: Path, env: dict[str, str]):
        self.p = subprocess.Popen(
            [str(venv / "bin" / "python"), str(venv / "client.py")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = self._read()

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        assert line, f"client died: {self.p.stderr.read()}"
        return json.loads(line)

    def do(self, op: str, **kw: str) -> dict:
        self.p.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.p.stdin.flush()
        out = self._read()
        assert out["op"] == op, out
        return out

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def s3_roundtrip(client: Client, bucket: str, n: int) -> list[dict]:
    """create, then n x (put, get, list): every call must succeed."""
    answers = [client.do("create", bucket=bucket)]
    for i in range(n):
        answers.append(client.do("put", bucket=bucket, key=f"k{i}", body=f"hello {i}"))
        got = client.do("get", bucket=bucket, key=f"k{i}")
        assert got.get("body") == f"hello {i}", got
        answers.append(got)
        listed = client.do("list", bucket=bucket)
        assert listed.get("keys") == [f"k{j}" for j in range(i + 1)], listed
        answers.append(listed)
    errors = [a for a in answers if "error" in a]
    assert not errors, errors
    return answers


def bucket_name() -> str:
    return f"sdk-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ the endpoint itself


def test_container_credentials_format(stack):
    token = stack.token("admin")
    for authorization in (token, f"Bearer {token}"):
        r = get_creds(stack, authorization)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        doc = r.json()
        assert list(doc) == ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"]
        assert EXPIRATION_RE.match(doc["Expiration"]), doc["Expiration"]
        left = datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)
        assert timedelta(minutes=58) < left <= timedelta(hours=1), left
        # They are RGW credentials.
        s3 = stack.s3_client(
            aws_access_key_id=doc["AccessKeyId"],
            aws_secret_access_key=doc["SecretAccessKey"],
            aws_session_token=doc["Token"],
        )
        assert "Buckets" in s3.list_buckets()
    # The token route is unchanged beside it.
    r = stack.gateway_request("PUT", TOKEN_PATH, token=token)
    assert r.status_code == 201 and list(r.json()["Credentials"])[-1] == "SessionToken", r.text
    r = stack.gateway_request("PUT", TOKEN_PATH, headers={"Authorization": token})
    assert r.status_code == 401, "the bare JWT is only for the credentials endpoint"


def test_other_methods_are_405(stack):
    for method in ("PUT", "POST", "DELETE"):
        r = stack.gateway_request(method, CREDS_PATH, token=stack.token("admin"))
        assert r.status_code == 405, (method, r.text)
        assert r.headers["allow"] == "GET"
        assert r.headers["content-type"] == "application/problem+json"


def test_tenant_query_parameter(stack):
    # An admin is scoped by a tenant only with tenants.scope_admins and a listed tenant.
    with stack.envoy_variant(plugin_overrides={"tenants": {"scope_admins": True, "names": ["vcluster-blue"]}}):
        _tenant_query_parameter(stack)


def _tenant_query_parameter(stack):
    token = stack.token("admin")
    request_id = f"creds-{uuid.uuid4()}"
    r = get_creds(stack, token, path=f"{CREDS_PATH}?tenant=vcluster-blue", headers={"x-request-id": request_id})
    assert r.status_code == 200, r.text
    lines = []
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:
        lines = [ln for ln in mint_lines(stack) if request_id in ln]
        time.sleep(0.05)
    assert len(lines) == 1 and " tenant=vcluster-blue " in lines[0], lines
    # The same in both places is fine; different is a 400 problem, and nothing is minted.
    r = get_creds(
        stack, token, path=f"{CREDS_PATH}?tenant=vcluster-blue", headers={"Cray-Tenant-Name": "vcluster-blue"}
    )
    assert r.status_code == 200, r.text
    before = stack.envoy_stats().get(MINTED, 0)
    r = get_creds(stack, token, path=f"{CREDS_PATH}?tenant=vcluster-blue", headers={"Cray-Tenant-Name": "other"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "Bad Request" and "differ" in r.json()["detail"]
    assert stack.envoy_stats().get(MINTED, 0) == before
    assert stack.envoy_stats()["wasmcustom.sts_gateway_credentials_requests_bad_request"] >= 1
    # An invalid tenant is refused as the header would be on the token route.
    on_token = stack.gateway_request("PUT", TOKEN_PATH, token=token, headers={"Cray-Tenant-Name": "Not_A_Label"})
    r = get_creds(stack, token, path=f"{CREDS_PATH}?tenant=Not_A_Label")
    assert (r.status_code, r.text) == (on_token.status_code, on_token.text)
    assert 400 <= r.status_code < 500


def test_denials_match_the_token_route(stack):
    cases = {
        "bad": "not.a.jwt",
        "expired": stack.control_token("admin", expires_in=-3600),
        "non-admin": stack.token("user"),
    }
    want = {"bad": 401, "expired": 401, "non-admin": 403}
    for name, token in cases.items():
        on_token = stack.gateway_request("PUT", TOKEN_PATH, token=token)
        bearer = get_creds(stack, f"Bearer {token}")
        bare = get_creds(stack, token)
        assert on_token.status_code == want[name], (name, on_token.text)
        for r in (bearer, bare):
            assert r.status_code == on_token.status_code, (name, r.text)
            assert r.json() == on_token.json(), name
            assert token not in r.text
        assert bearer.headers.get("www-authenticate") == on_token.headers.get("www-authenticate")
    r = get_creds(stack, None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer ")


def test_metrics_tell_the_routes_apart(stack):
    before = stack.envoy_stats()
    token = stack.token("admin")
    assert get_creds(stack, token).status_code == 200
    assert get_creds(stack, token).status_code == 200
    assert stack.gateway_request("PUT", TOKEN_PATH, token=token).status_code == 201
    assert get_creds(stack, stack.token("user")).status_code == 403
    after = stack.envoy_stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["wasmcustom.sts_gateway_requests_minted"] == 3, "every mint, both routes"
    assert delta[MINTED] == 2
    assert delta["wasmcustom.sts_gateway_credentials_requests_forbidden"] == 1
    assert delta["wasmcustom.sts_gateway_requests_forbidden"] == 1
    prom = requests.get(f"{stack.admin_url}/stats/prometheus", timeout=5).text
    assert re.search(r'^sts_gateway_credentials_requests\{reason="minted"\} [1-9]', prom, re.M), prom[:2000]
    assert re.search(r'^sts_gateway_requests\{reason="minted"\} [1-9]', prom, re.M)
    lines = wait_mint_lines(stack, 2)
    assert all(" status=200 outcome=minted " in ln for ln in lines[-2:]), lines
    assert any(
        ln.rstrip().endswith("route=token") and " status=201 " in ln
        for ln in stack.envoy_log().splitlines()
        if "sts-gateway: mint " in ln
    )
    log = stack.envoy_log()
    assert token not in log and token.split(".")[2] not in log


# ------------------------------------------------------------------ SDKs, with nothing but the environment


def test_boto3_with_environment_only(stack, client_venv, tmp_path):
    token_file = tmp_path / "sts-token"
    write_token(token_file, stack.token("admin"))
    before = stack.envoy_stats().get(MINTED, 0)
    client = Client(client_venv, sdk_env(stack, client_venv, token_file))
    try:
        assert "error" not in client.started, client.started
        s3_roundtrip(client, bucket_name(), 2)
    finally:
        client.close()
    assert stack.envoy_stats().get(MINTED, 0) > before, "the SDK fetched through the gateway"


def test_boto3_with_a_bearer_token_file(stack, client_venv, tmp_path):
    """Behind CSM's OPA `ext_authz` the token file must hold `Bearer <jwt>` (a value without a
    scheme is denied there): botocore sends the file verbatim, and the gateway takes both forms."""
    token_file = tmp_path / "sts-token"
    write_token(token_file, "Bearer " + stack.token("admin"))
    before = stack.envoy_stats().get(MINTED, 0)
    lines_before = len(mint_lines(stack))
    client = Client(client_venv, sdk_env(stack, client_venv, token_file))
    try:
        assert "error" not in client.started, client.started
        s3_roundtrip(client, bucket_name(), 1)
    finally:
        client.close()
    fetched = stack.envoy_stats().get(MINTED, 0) - before
    assert fetched >= 1, "the SDK fetched through the gateway"
    lines = wait_mint_lines(stack, lines_before + fetched)[lines_before:]
    assert lines and {caller_of(ln) for ln in lines} == {"admin"}, lines


def test_boto3_refreshes_by_itself_and_follows_a_rotated_token(stack, client_venv, tmp_path):
    """RGW's minimum duration (900 s) puts the SDK inside its 15-minute advisory window from the
    start: before each S3 call it fetches credentials again. After the token file gets another
    user's token, the later fetches carry that token."""
    with stack.envoy_variant(plugin_overrides={"rgw": {"duration_seconds": 900}}):
        r = get_creds(stack, stack.token("admin"))
        left = datetime.strptime(r.json()["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)
        assert left <= timedelta(seconds=900), left
        fetched0 = stack.envoy_stats().get(MINTED, 0)
        token_file = tmp_path / "sts-token"
        write_token(token_file, stack.token("admin"))
        client = Client(client_venv, sdk_env(stack, client_venv, token_file))
        try:
            assert "error" not in client.started, client.started
            bucket = bucket_name()
            first = s3_roundtrip(client, bucket, 3)  # 10 S3 calls
            fetched1 = stack.envoy_stats().get(MINTED, 0)
            refreshes = fetched1 - fetched0 - 1  # the first fetch is the client's start
            lines = wait_mint_lines(stack, fetched1 - fetched0 + 1)
            assert len(lines) == fetched1 - fetched0 + 1, "one mint log line per fetch"
            assert refreshes >= len(first), f"{refreshes} refreshes for {len(first)} calls"
            assert {caller_of(ln) for ln in lines} == {"admin"}
            assert len({a["key_id"] for a in first}) >= 2, "new credentials in use"

            # Rotation: the file gets testuser's token; the next fetches send it.
            write_token(token_file, stack.token("testuser"))
            mark = len(lines)
            for i in range(3):
                put = client.do("put", bucket=bucket, key=f"after-{i}", body="rotated")
                assert "error" not in put, put
                got = client.do("get", bucket=bucket, key=f"after-{i}")
                assert got.get("body") == "rotated", got
            fetched2 = stack.envoy_stats().get(MINTED, 0)
            lines = wait_mint_lines(stack, fetched2 - fetched0 + 1)
            after = [caller_of(ln) for ln in lines[mark:]]
            assert len(after) >= 6 and set(after) == {"testuser"}, after
            print(
                f"\nrefresh: {refreshes} refreshes for {len(first)} S3 calls before the rotation, "
                f"{fetched2 - fetched1} fetches (all as testuser) for 6 calls after it; "
                f"{fetched2 - fetched0} fetches in all"
            )
        finally:
            client.close()


def test_aws_cli_with_environment_only(stack, client_venv, tmp_path):
    token_file = tmp_path / "sts-token"
    write_token(token_file, stack.token("admin"))
    env = sdk_env(stack, client_venv, token_file)
    bucket = bucket_name()
    (tmp_path / "hello.txt").write_text("hello from the aws CLI\n")

    def aws(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(["aws", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"aws {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    before = stack.envoy_stats().get(MINTED, 0)
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", "hello.txt", f"s3://{bucket}/hello.txt")
    assert bucket in aws("s3", "ls").stdout
    assert "hello.txt" in aws("s3", "ls", f"s3://{bucket}/").stdout
    aws("s3", "cp", f"s3://{bucket}/hello.txt", "back.txt")
    assert (tmp_path / "back.txt").read_text() == "hello from the aws CLI\n"
    assert stack.envoy_stats().get(MINTED, 0) - before >= 5, "each aws command fetched from the gateway"


def test_sdk_surfaces_denials_promptly(stack, client_venv, tmp_path):
    """Bad, expired and non-admin tokens: the SDK raises with the gateway's status (after
    botocore's 3 attempts, 1 s apart) instead of hanging or falling back to other credentials."""
    cases = {
        "bad": ("not.a.jwt", 401),
        "expired": (stack.control_token("admin", expires_in=-3600), 401),
        "non-admin": (stack.token("user"), 403),
    }
    for name, (token, status) in cases.items():
        token_file = tmp_path / f"token-{name}"
        write_token(token_file, token)
        t0 = time.monotonic()
        client = Client(client_venv, sdk_env(stack, client_venv, token_file))
        took = time.monotonic() - t0
        client.close()
        assert client.started.get("error") == "CredentialRetrievalError", (name, client.started)
        assert f"Received non 200 response {status}" in client.started["message"], (name, client.started)
        assert token not in client.started["message"]
        assert client.p.returncode == 3
        assert took < 15, (name, took)
        print(f"\ndenial {name}: {status}, SDK error after {took:.1f} s")


def test_token_file_with_a_newline_is_refused_by_the_sdk(stack, client_venv, tmp_path):
    """Why the doc writes the file with printf %s: botocore refuses a token with a newline."""
    token_file = tmp_path / "sts-token"
    token_file.write_text(stack.token("admin") + "\n")
    client = Client(client_venv, sdk_env(stack, client_venv, token_file))
    client.close()
    assert "not a legal header value" in client.started.get("message", ""), client.started


def test_https_trust_is_certifi_only(stack, client_venv, tmp_path):
    """What botocore 1.44 honours for this endpoint's certificate: certifi's bundle only.
    With the project venv's unmodified certifi, AWS_CA_BUNDLE, SSL_CERT_FILE and
    REQUESTS_CA_BUNDLE pointing at the gateway CA all fail the TLS handshake."""
    token_file = tmp_path / "sts-token"
    write_token(token_file, stack.token("admin"))
    project_venv = Path(sys.executable).parent.parent
    project_venv_env = sdk_env(stack, client_venv, token_file)
    project_venv_env["PATH"] = f"{project_venv / 'bin'}:/usr/bin:/bin"
    variants = {
        name: {**project_venv_env, name: stack.ca_file}
        for name in ("AWS_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(client_venv / "client.py")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in variants.items()
    }
    for name, p in procs.items():
        out, _ = p.communicate(timeout=60)
        started = json.loads(out.splitlines()[0])
        assert started.get("error") == "SSLError", (name, started)
        assert "CERTIFICATE_VERIFY_FAILED" in started["message"], (name, started)
    # The client venv (certifi + CA) works.
    ok = Client(client_venv, sdk_env(stack, client_venv, token_file))
    ok.close()
    assert "error" not in ok.started, ok.started


def test_doc_recipe(stack, client_venv, tmp_path):
    """docs/sdk-credentials.md's local-stack recipe, pasted into bash as it is, with only the
    test stack's ports, CA and `STACK_ARGS=--test` put in (and a bucket name of its own)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sdk-credentials.md").read_text()
    section = doc.split("## Try it on the local stack", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    bucket = bucket_name()
    ports = stack.cfg.ports
    script = (
        block.replace("make -s token", "make -s token STACK_ARGS=--test")
        .replace("127.0.0.1:8443", f"127.0.0.1:{ports['https']}")
        .replace("127.0.0.1:7480", f"127.0.0.1:{ports['rgw']}")
        .replace("target/stack/tls/ca.crt", stack.ca_file)
        .replace("demo-bucket", bucket)
    )
    assert script.count(str(ports["https"])) == 1 and stack.ca_file in script and bucket in script, script
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{client_venv / 'bin'}:/usr/bin:/bin", "HOME": str(home)}
    before = stack.envoy_stats().get(MINTED, 0)
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, f"{script}\n{r.stdout}\n{r.stderr}"
    assert bucket in r.stdout
    token = (home / ".sts-token").read_text()
    assert token.count(".") == 2 and not token.endswith("\n")
    assert stack.envoy_stats().get(MINTED, 0) - before >= 2
