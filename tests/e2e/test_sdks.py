"""docs/sdk-credentials.md's recipe with the AWS SDK for JavaScript v3 (npm) and the AWS SDK for Go
v2 (the Go module proxy), beside boto3 and the `aws` CLI (test_credentials.py), end to end on the
real Envoy + Ceph RGW + issuer.

Each SDK runs as a program that knows nothing of the gateway (tests/sdk/js/s3.mjs,
tests/sdk/go/main.go, installed by `make deps-sdk`), in a process whose whole environment is the
doc's variables, PATH, an empty HOME and the one variable through which that runtime trusts the
gateway's CA (Node: NODE_EXTRA_CA_CERTS; Go: SSL_CERT_FILE). Each creates a bucket, puts, gets
and lists; each refreshes its credentials by itself and follows a rotated token file; the token
file holds the bare JWT or `Bearer <jwt>` (the form CSM's OPA `ext_authz` lets through).

Refresh: credentials last at least 900 s (RGW's minimum). The JavaScript SDK refreshes 5 minutes
before expiry, so its process clock is moved 11 minutes ahead (inside RGW's 15-minute skew);
the Go SDK refreshes at expiry unless told otherwise, so its credentials cache gets an
`ExpiryWindow` of 15 minutes (a documented option, passed as a flag).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_credentials import (
    MINTED,
    bucket_name,
    caller_of,
    creds_url,
    s3_roundtrip,
    wait_mint_lines,
    write_token,
)

REPO = Path(__file__).resolve().parents[2]
JS_CLIENT = REPO / "tests" / "sdk" / "js" / "s3.mjs"
GO_CLIENT = REPO / "target" / "sdk-go-client"


class Program:
    """An SDK client program in its own process, driven one JSON command at a time."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.p = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.started = self._read()

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        assert line, f"client died: {self.p.stderr.read()}"
        return json.loads(line)

    def do(self, op: str, **kw) -> dict:  # type: ignore[no-untyped-def]
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


def env_for(stack, sdk: str, token_file: Path) -> dict[str, str]:
    """The doc's variables, PATH, an empty HOME, and the runtime's CA variable: nothing else."""
    home = token_file.parent / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": creds_url(stack),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        "AWS_ENDPOINT_URL_S3": stack.rgw_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if sdk == "js":
        env["NODE_EXTRA_CA_CERTS"] = stack.ca_file
    else:
        env["SSL_CERT_FILE"] = stack.ca_file
    return env


def start(stack, sdk: str, token_file: Path, refresh: bool = False) -> Program:
    if sdk == "js":
        node = shutil.which("node")
        assert node, "node is required (make deps)"
        assert (JS_CLIENT.parent / "node_modules" / "@aws-sdk" / "client-s3").is_dir(), "run make deps-sdk"
        argv = [node, str(JS_CLIENT)]
    else:
        assert GO_CLIENT.is_file(), "run make deps-sdk"
        argv = [str(GO_CLIENT), *(["-expiry-window", "15m"] if refresh else [])]
    program = Program(argv, env_for(stack, sdk, token_file))
    assert "error" not in program.started, program.started
    return program


@pytest.mark.parametrize("form", ["bare", "bearer"])
@pytest.mark.parametrize("sdk", ["js", "go"])
def test_sdk_with_environment_only(stack, tmp_path, sdk, form):
    token = stack.token("admin")
    token_file = tmp_path / "sts-token"
    write_token(token_file, token if form == "bare" else f"Bearer {token}")
    before = stack.envoy_stats().get(MINTED, 0)
    lines_before = len(wait_mint_lines(stack, 0))
    program = start(stack, sdk, token_file)
    try:
        print(f"\n{sdk}: {program.started}")
        s3_roundtrip(program, bucket_name(), 2)
    finally:
        program.close()
    fetched = stack.envoy_stats().get(MINTED, 0) - before
    assert fetched >= 1, "the SDK fetched its credentials through the gateway"
    lines = wait_mint_lines(stack, lines_before + fetched)[lines_before:]
    assert lines and {caller_of(ln) for ln in lines} == {"admin"}, lines


@pytest.mark.parametrize("sdk", ["js", "go"])
def test_sdk_refreshes_by_itself_and_follows_a_rotated_token(stack, tmp_path, sdk):
    with stack.envoy_variant(plugin_overrides={"rgw": {"duration_seconds": 900}}):
        token_file = tmp_path / "sts-token"
        write_token(token_file, stack.token("admin"))
        program = start(stack, sdk, token_file, refresh=True)
        try:
            bucket = bucket_name()
            first_key = program.do("key")
            assert "error" not in first_key, first_key
            s3_roundtrip(program, bucket, 1)
            fetched0 = stack.envoy_stats().get(MINTED, 0)
            lines0 = len(wait_mint_lines(stack, 0))
            # Rotation: the file gets testuser's token; the next refresh must send it.
            write_token(token_file, stack.token("testuser"))
            if sdk == "js":
                assert "error" not in program.do("advance", seconds=660)
            for i in range(3):
                put = program.do("put", bucket=bucket, key=f"after-{i}", body="rotated")
                assert "error" not in put, put
                got = program.do("get", bucket=bucket, key=f"after-{i}")
                assert got.get("body") == "rotated", got
            second_key = program.do("key")
            assert "error" not in second_key, second_key
            fetched = stack.envoy_stats().get(MINTED, 0) - fetched0
            lines = wait_mint_lines(stack, lines0 + fetched)[lines0:]
            print(f"\n{sdk}: {program.started}; {fetched} fetches for 7 calls after the rotation")
            assert fetched >= 1, "no refresh"
            assert second_key["key"] != first_key["key"], (first_key, second_key)
            assert lines and {caller_of(ln) for ln in lines} == {"testuser"}, lines
        finally:
            program.close()
