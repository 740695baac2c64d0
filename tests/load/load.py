#!/usr/bin/env python3
"""Load test of the STS filter: N mints over C keep-alive connections on the test
stack, a mix of valid admin, expired and foreign (unpublished-key) tokens, and a JWKS key
rotation in the middle. Bounded in count and time; loopback only.

    flock /tmp/sts-stack.lock .venv/bin/python tests/load/load.py --requests 20000 --connections 64

Checks (exit status 1 if one fails):
  * every answer is the expected one: 201 for a token signed by a key the issuer publishes,
    401 for expired and foreign tokens (and for tokens of the retired key once it left the JWKS);
  * zero 5xx and zero transport errors;
  * no request signed with a currently published key fails during the rotation;
  * no panic / Wasm VM failure in Envoy's log, no VM reload in Envoy's stats.
Reports req/s, latency percentiles and Envoy's RSS (from /proc) before and after, as text and
as JSON (--json FILE).

The rotation: `rotate_keys(keep_old=True)` (new kid published, issuer signs with it), then the
valid tokens switch to the new kid; later the old key is dropped from the JWKS (a second
rotation with keep_old=False would add yet another key, so the issuer is rotated to a third key
with keep_old=False only after the clients stopped using the old one; tokens of the dropped
keys then count as "retired": 401 expected once the filter refetched, either answer before).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "stack"))

from helpers import TOKEN_PATH, VM_FAILURE_MARKERS, mint, rss_kb, vm_counters  # noqa: E402
from stack import Config, Stack, install_gateway_resolver  # noqa: E402


class Tokens:
    """What the clients send, switched atomically during the rotation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.valid: list[tuple[str, str]] = []  # (token, kid)
        self.published: set[str] = set()  # kids the issuer publishes right now
        self.retired: set[str] = set()  # kids that left the JWKS

    def pick(self, rnd: random.Random, expired: list[str], foreign: list[str]) -> tuple[str, str, str]:
        r = rnd.random()
        if r < 0.15:
            return rnd.choice(expired), "expired", ""
        if r < 0.25:
            return rnd.choice(foreign), "foreign", ""
        with self.lock:
            token, kid = rnd.choice(self.valid)
        return token, "valid", kid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=300, help="hard bound on the run")
    ap.add_argument("--pool", type=int, default=50, help="distinct valid tokens per key")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--keep-stack", action="store_true", help="use a running test stack, leave it running")
    args = ap.parse_args()

    install_gateway_resolver()
    st = Stack(Config.for_tests())
    if not args.keep_stack:
        st.down()
        st.up()
    try:
        return run(st, args)
    finally:
        if not args.keep_stack:
            st.down()


def run(st: Stack, args: argparse.Namespace) -> int:
    # Refetch on an unknown kid at most once a second: the rotation is learned at once.
    # The mock issuer alone (one JWKS source): its keys rotate, its tokens are the load.
    st.restart_envoy(plugin_overrides=lambda p: st.mock_jwks(st.only_mock_issuer(p)).update(min_refetch_seconds=1))
    envoy_pid = st.envoy.pid()
    assert envoy_pid
    log_start = st.envoy_log_path.stat().st_size  # byte offset of this run in envoy.log
    t0 = time.monotonic()
    kid0 = next(k["kid"] for k in st.jwks()["keys"] if k.get("use") == "sig")
    tokens = Tokens()
    tokens.valid = [(st.control_token("admin" if i % 2 else "testuser"), kid0) for i in range(args.pool)]
    tokens.published = {kid0}
    first_valid = list(tokens.valid)
    expired = [st.control_token("admin", expires_in=-600) for _ in range(20)]
    foreign = [st.control_token("admin", unpublished=True) for _ in range(20)]
    print(
        f"load: {len(tokens.valid)} valid, {len(expired)} expired, {len(foreign)} foreign tokens "
        f"in {time.monotonic() - t0:.1f}s",
        flush=True,
    )

    # Warm up (every worker parses the JWKS, caches a few tokens), then measure RSS.
    for tok, _ in tokens.valid[:8]:
        mint(st, tok, via="http")
    rss_before = rss_kb(envoy_pid)
    vm_before = vm_counters(st)

    port = st.cfg.ports["http"]
    sent = Counter()
    results: Counter = Counter()
    unexpected: list[tuple[str, str, int, str]] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + args.max_seconds
    budget = {"left": args.requests}
    # The rotations start at 30 % and 65 % of the requests, while the clients go on; they may not
    # run more than 10 % past that point until the rotation is done, so that every phase (before,
    # between and after the rotations) gets its share of the requests.
    gate = threading.Condition(lock)
    phase = {"n": 0, "limit": int(args.requests * 0.4)}
    by_phase: Counter = Counter()

    def take() -> int:
        with gate:
            while True:
                if budget["left"] <= 0 or stop.is_set() or time.monotonic() > deadline:
                    return 0
                if args.requests - budget["left"] < phase["limit"]:
                    break
                gate.wait(0.1)
            budget["left"] -= 1
            by_phase[phase["n"]] += 1
            return args.requests - budget["left"]

    def next_phase(limit_fraction: float) -> None:
        with gate:
            phase["n"] += 1
            phase["limit"] = int(args.requests * limit_fraction)
            gate.notify_all()

    def client(n: int) -> None:
        rnd = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat: list[float] = []
        while not stop.is_set() and time.monotonic() < deadline:
            seq = take()
            if not seq:
                break
            token, kind, kid = tokens.pick(rnd, expired, foreign)
            t = time.perf_counter()
            try:
                conn.request(
                    "PUT", TOKEN_PATH, headers={"Host": "api-gw-service-nmn.local", "Authorization": f"Bearer {token}"}
                )
                r = conn.getresponse()
                body = r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, body = 0, str(e).encode()
            lat.append(time.perf_counter() - t)
            with tokens.lock:
                published = kid in tokens.published
                retired = kid in tokens.retired
            if kind == "valid" and retired:
                ok = status in (201, 401)
                kind = "retired"
            elif kind == "valid":
                ok = status == 201 and body.startswith(b'{"Credentials": {"AccessKeyId": ')
                if not published:
                    ok = status in (201, 401)
            else:
                ok = status == 401
            with lock:
                sent[kind] += 1
                results[(kind, status)] += 1
                if not ok:
                    unexpected.append((kind, kid[:8], status, body[:160].decode("utf-8", "replace")))
        with lock:
            latencies.extend(lat)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.connections)]
    t_start = time.monotonic()
    for t in threads:
        t.start()

    # The rotations, while the clients run.
    def taken() -> int:
        with lock:
            return args.requests - budget["left"]

    rotation: dict[str, float] = {}
    while taken() < args.requests * 0.3 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    kid1 = st.rotate_keys(keep_old=True)
    new_valid = [(st.control_token("admin" if i % 2 else "testuser"), kid1) for i in range(args.pool)]
    with tokens.lock:
        tokens.published = {kid0, kid1}
        tokens.valid = new_valid
    next_phase(0.75)
    rotation["switched_at"] = time.monotonic() - t_start
    print(f"load: rotation: kid {kid1[:8]} published and used from {rotation['switched_at']:.1f}s", flush=True)
    while taken() < args.requests * 0.65 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    # Drop the old key: a rotation without keep_old publishes only a third key, so first switch the
    # clients to that key's tokens... which needs the key first. Order: publish kid2 alone (kid0 and
    # kid1 leave), then switch the clients at once; requests with kid1 in between are "retired".
    with tokens.lock:
        tokens.retired = {kid0, kid1}
        tokens.published = set()
    kid2 = st.rotate_keys(keep_old=False)
    newest = [(st.control_token("admin" if i % 2 else "testuser"), kid2) for i in range(args.pool)]
    with tokens.lock:
        tokens.published = {kid2}
        tokens.valid = newest
    next_phase(1.0)
    rotation["dropped_at"] = time.monotonic() - t_start
    print(f"load: old keys dropped, kid {kid2[:8]} used from {rotation['dropped_at']:.1f}s", flush=True)

    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic() + 5))
    stop.set()
    elapsed = time.monotonic() - t_start
    time.sleep(0.5)
    rss_after = rss_kb(envoy_pid)
    vm_after = vm_counters(st)
    # Envoy writes its access log lazily: a restart flushes it, then the whole run's log is read.
    st.restart_envoy()
    with open(st.envoy_log_path, "rb") as f:
        f.seek(log_start)
        log = f.read().decode("utf-8", "replace")
    markers = [m for m in VM_FAILURE_MARKERS if m in log]
    every_token = [tok for tok, _ in first_valid + new_valid + newest] + expired + foreign
    secrets = set(every_token) | {tok.rsplit(".", 1)[1] for tok in every_token}
    leaked = sum(1 for secret in secrets if secret in log)
    # The positive control: the lines searched are there, one access-log line per request.
    access_lines = log.count('"PUT /apis/sts/token HTTP/1.1"')

    total = sum(sent.values())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    five_xx = sum(n for (kind, status), n in results.items() if status >= 500 or status == 0)
    published_failed = [u for u in unexpected if u[0] == "valid"]
    summary = {
        "requests": total,
        "connections": args.connections,
        "seconds": round(elapsed, 2),
        "req_per_s": round(total / elapsed, 1) if elapsed else 0,
        "latency_ms": {
            "p50": round(pct(0.5), 2),
            "p90": round(pct(0.9), 2),
            "p99": round(pct(0.99), 2),
            "max": round(pct(1.0), 2),
        },
        "by_kind_status": {f"{k}:{s}": n for (k, s), n in sorted(results.items())},
        "unexpected": len(unexpected),
        "unexpected_5xx_or_transport": five_xx,
        "published_key_failures": len(published_failed),
        "envoy_rss_kb": {"before": rss_before, "after": rss_after},
        "vm_counters": {"before": vm_before, "after": vm_after},
        "vm_failure_markers": markers,
        "tokens_in_log": leaked,
        "tokens_scanned": len(secrets),
        "access_log_lines": access_lines,
        "requests_by_phase": {str(k): v for k, v in sorted(by_phase.items())},
        "rotation": rotation,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    for u in unexpected[:20]:
        print("unexpected:", u)
    failures = []
    if total < args.requests:
        failures.append(f"only {total} of {args.requests} requests within {args.max_seconds}s")
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected answers ({len(published_failed)} with a published key)")
    if five_xx:
        failures.append(f"{five_xx} 5xx or transport errors")
    if vm_after != vm_before or markers:
        failures.append(f"Wasm VM trouble: {vm_before} -> {vm_after}, log markers {markers}")
    if leaked:
        failures.append(f"{leaked} tokens in Envoy's log")
    if access_lines < total:
        failures.append(f"only {access_lines} access-log lines for {total} requests: the log scan saw too little")
    for n in range(3):
        if by_phase[n] < args.requests * 0.2:
            failures.append(f"phase {n} (0: before, 1: between, 2: after the rotations) had {by_phase[n]} requests")
    for f in failures:
        print("load: FAIL:", f)
    print(
        f"load: {total} requests in {elapsed:.1f}s = {summary['req_per_s']} req/s; "
        f"Envoy RSS {rss_before} kB -> {rss_after} kB; {'FAIL' if failures else 'ok'}",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
