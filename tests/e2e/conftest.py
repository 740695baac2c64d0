"""pytest fixtures for end-to-end tests against the real stack (Envoy + Ceph RGW + OIDC issuer).

The session-scoped `stack` fixture starts the *test* stack (ports + 10000, state in
target/test-stack/; STACK_TEST_PORT_OFFSET / STACK_TEST_DIR override) and stops it at the end,
also when tests fail or pytest gets SIGTERM. It is a `tests/stack/stack.py` `Stack`:

    stack.gateway_url            https://api-gw-service-nmn.local:18443 (resolves to 127.0.0.1 in-process)
    stack.gateway_http_url       http://127.0.0.1:18080
    stack.admin_url, stack.rgw_endpoint, stack.control_url, stack.token_url
    stack.ca_file                the CA that signed the gateway's certificate (for verify=)
    stack.sts_keys               {"access_key_id", "secret_access_key", "role_arn", "user"}
    stack.cfg.ports              {"https", "http", "admin", "rgw", "issuer", "control", "mon"}
    stack.token(user="admin")    JWT via the gateway (password grant, client shasta)
    stack.control_token(username="admin", claims=None, expires_in=3600, kid=None,
                        unpublished=False, header=None)   JWT from the issuer's control API
    stack.rotate_keys(keep_old=False) -> new kid;  stack.jwks()
    stack.restart_envoy(plugin_overrides=None, extra_clusters=None, envoy_patch=None, timeout=20,
                        wait_keys=True)
                                 restart Envoy with a variant config; raises StackError (with the
                                 Envoy log tail) if it does not become ready
    with stack.envoy_variant(plugin_overrides=...): ...   same, restores the default after
    stack.render_envoy(...) / Stack.plugin_config(doc)      inspect a variant without running it
    stack.wait_for_filter_keys(timeout=5.0) -> bool   (restart_envoy/up already wait for it)
    stack.envoy_stats(prefix="wasmcustom.") -> {name: int}
    stack.stop_rgw(), stack.start_rgw()        RGW down/up (data kept)
    stack.stop_issuer(), stack.start_issuer()  issuer down/up (new keys after a restart)
    Stack.cluster(name, port, host="127.0.0.1", connect_timeout="1s") -> an Envoy cluster dict
    tcp_blackhole() (context manager) -> a port that accepts and never answers (timeouts)
    stack.envoy_log_path, stack.envoy_log()  (the log since Envoy's last start), stack.log_dir
    stack.gateway_request(method, path, token=None, via="https", **requests_kwargs)
    stack.s3_client(**creds), stack.sts_client()             boto3 clients on RGW

The session removes REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from os.environ while it runs (they
would override `verify=` set on a requests Session). After every test the autouse
`_restore_stack` fixture restarts RGW and the issuer if a test stopped them and
brings Envoy back to the default config if a test changed it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "stack"))  # stack.py, stacklib/, helpers.py
sys.path.insert(0, str(REPO / "envoy"))  # generate.py

import stack as stack_mod  # noqa: E402
from stack import Config, Stack, StackError, install_gateway_resolver, tcp_blackhole  # noqa: E402,F401


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")  # unwinds into the fixture's finally: the stack is stopped


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    install_gateway_resolver()  # api-gw-service-nmn.local -> 127.0.0.1 for requests/boto3 here
    # A CA bundle from the environment would override `session.verify = stack.ca_file` in requests.
    saved_env = {k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ}
    previous = signal.signal(signal.SIGTERM, _sigterm)
    st = Stack(Config.for_tests())
    st.down()  # leftovers of an earlier session that was killed
    try:
        st.up()
        yield st
    finally:
        st.down()
        signal.signal(signal.SIGTERM, previous)
        os.environ.update(saved_env)


@pytest.fixture(autouse=True)
def _restore_stack(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").restore_defaults()


def run_make(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `make <args> STACK_ARGS=--test` from the repo root (the user-facing commands)."""
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    r = subprocess.run(
        ["make", "-s", *args, "STACK_ARGS=--test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and r.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="session")
def make():
    return run_make


__all__ = ["stack_mod", "run_make", "tcp_blackhole", "Stack", "StackError"]
