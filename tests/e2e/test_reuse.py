"""Opt-in reuse and coalescing in the real Envoy against the real RGW: the same caller gets the
credentials already minted for them (RGW's own answer proves they work), concurrent requests of
one caller share one RGW call per worker, callers without `sub` never share, and with the option
off every request mints."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import Stack
from helpers import TOKEN_PATH
from misbehaving import Misbehaving

REUSE = {"reuse": {"min_remaining_seconds": 600}, "tenants": {"names": ["blue"], "scope_admins": True}}


def mint(stack, token, tenant=None):
    headers = {"Authorization": f"Bearer {token}"}
    if tenant:
        headers["Cray-Tenant-Name"] = tenant
    return requests.put(stack.cfg.gateway_http_url + TOKEN_PATH, headers=headers, timeout=10)


def key_id(r) -> str:
    assert r.status_code == 201, r.text
    return r.json()["Credentials"]["AccessKeyId"]


def counters(stack) -> dict[str, int]:
    return stack.envoy_stats()


def delta(before, after, name) -> int:
    return after.get(f"wasmcustom.{name}", 0) - before.get(f"wasmcustom.{name}", 0)


def test_off_by_default_every_request_mints(stack):
    token = stack.token("admin")
    assert key_id(mint(stack, token)) != key_id(mint(stack, token))


def test_reused_credentials_are_the_same_and_work(stack):
    with stack.envoy_variant(plugin_overrides=REUSE):
        token = stack.token("admin")
        s = requests.Session()
        url = stack.cfg.gateway_http_url + TOKEN_PATH
        before = counters(stack)
        # One keep-alive connection: one worker, one store.
        ids = [key_id(s.put(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)) for _ in range(5)]
        after = counters(stack)
        assert len(set(ids)) == 1, ids
        assert delta(before, after, "sts_gateway_rgw_answers_2xx") == 1
        assert delta(before, after, "sts_gateway_requests_reused") == 4
        # RGW accepts them.
        r = s.put(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        c = r.json()["Credentials"]
        s3 = stack.s3_client(
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
        )
        s3.list_buckets()
        # Another scope of the same caller is another caller; every request is still authorized.
        assert key_id(mint(stack, token, tenant="blue")) not in ids
        assert mint(stack, stack.token("user")).status_code == 403


def test_concurrent_requests_of_one_caller_share_rgw_calls(stack):
    # RGW answers through a proxy that holds each answer 0.5 s, so the 16 requests (sent
    # together) surely arrive while their worker's call is in flight, however loaded the
    # machine: without it, a slow client thread could come after the call and be reused instead.
    overrides = {**REUSE, "rgw": {"cluster": "slow_rgw", "timeout_ms": 5000}}
    with (
        Misbehaving(upstream=stack.rgw_endpoint) as srv,
        stack.envoy_variant(plugin_overrides=overrides, extra_clusters=[Stack.cluster("slow_rgw", srv.port)]),
    ):
        srv.behave("slow", delay=0.5)
        token = stack.token("testuser")
        before = counters(stack)
        # All 16 leave together, so some arrive while their worker's RGW call is in flight.
        start = threading.Barrier(16)

        def one(_: int) -> str:
            start.wait(timeout=30)
            return key_id(mint(stack, token))

        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(one, range(16)))
        after = counters(stack)
        calls = delta(before, after, "sts_gateway_rgw_answers_2xx")
        coalesced = delta(before, after, "sts_gateway_requests_coalesced")
        reused = delta(before, after, "sts_gateway_requests_reused")
        # At most one call per worker store (two workers), the rest waited or reused, and at
        # least one really waited for another's call (reuse alone would also add up to 16).
        assert 1 <= calls <= 2 and len(set(ids)) == calls, (calls, set(ids))
        assert coalesced + reused == 16 - calls, (coalesced, reused)
        assert coalesced >= 1, (coalesced, reused)


def test_callers_without_sub_never_share(stack):
    """Two admins whose tokens carry no `sub` (Keycloak 25+ without the `basic` scope): each
    request mints its own credentials, sequentially on one connection (one worker's store) and
    concurrently, and the metric counts them."""

    def no_sub(user):
        return stack.control_token(
            username=user, claims={"sub": None, "resource_access": {"shasta": {"roles": ["admin"]}}}
        )

    with stack.envoy_variant(plugin_overrides=REUSE):
        a, b = no_sub("admin-a"), no_sub("admin-b")
        s = requests.Session()
        url = stack.cfg.gateway_http_url + TOKEN_PATH
        before = counters(stack)
        start = len(stack.envoy_log())
        seq = [key_id(s.put(url, headers={"Authorization": f"Bearer {t}"}, timeout=10)) for t in (a, b, a, b)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            conc = list(pool.map(lambda i: key_id(mint(stack, a if i % 2 else b)), range(16)))
        after = counters(stack)
        ids = seq + conc
        assert len(set(ids)) == len(ids), "no two requests got the same credentials"
        assert delta(before, after, "sts_gateway_rgw_answers_2xx") == len(ids)
        assert delta(before, after, "sts_gateway_requests_reused") == 0
        assert delta(before, after, "sts_gateway_requests_coalesced") == 0
        assert delta(before, after, "sts_gateway_reuse_no_subject") == len(ids)
        # Each answer was minted for its own caller (RGW's session names say who).
        lines = [ln for ln in stack.envoy_log()[start:].splitlines() if "sts-gateway: mint" in ln]
        assert len(lines) == len(ids), lines
        for ln in lines:
            caller = "admin-a" if 'caller="admin-a"' in ln else "admin-b"
            assert f"session={caller}-" in ln and "outcome=minted" in ln, ln
        # Positive control: with a `sub`, the same caller does reuse.
        t = stack.token("admin")
        assert key_id(s.put(url, headers={"Authorization": f"Bearer {t}"}, timeout=10)) == key_id(
            s.put(url, headers={"Authorization": f"Bearer {t}"}, timeout=10)
        )
