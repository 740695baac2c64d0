"""`make bench`: the filter's throughput and cost against RGW's own limit, in one run.

Scenarios (wrk, keep-alive, plain-http listener so TLS does not blur the filter's cost):
  a        AssumeRole straight to RGW (one pre-signed request replayed): the ceiling
  b        PUT /apis/sts/token through Envoy + filter, one token reused (the field's pattern)
  c        the same, a different valid token on every request (no verified-token cache hit)
  d_filter GET /apis/sts/healthz through the filter
  d_plain  GET /plain/healthz, a route without the filter (the floor)
  e_proxy  the AssumeRole of (a) proxied by Envoy on a route without the filter: what Envoy
           itself costs for a request that reaches RGW (a route added to the bench's Envoy only)
  f        (b) with opt-in reuse on (reuse.min_remaining_seconds 600): the same caller gets the
           credentials already minted, RGW is called once per worker
at 1, 8 and 32 connections, 3 runs each; medians are reported. CPU per request comes from
/proc/<pid>/stat of Envoy and radosgw. Writes target/bench/summary.json (ratios b/a, c/a,
e_proxy/a, f/a and b/e_proxy per connection count) and prints a table. BENCH_SCENARIOS=b,f
narrows it.
The bench brings up its own stack (test ports, state in target/bench-stack) and stops it after.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "stack"))

from helpers import rss_kb  # noqa: E402
from stack import Config, Stack  # noqa: E402

OUT = REPO / "target" / "bench"
LUA = Path(__file__).with_name("requests.lua")
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,8,32").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
# More distinct tokens than both workers' verified-token caches hold (4096 each by default),
# cycled, so every request in (c) misses the cache.
POOL = int(os.environ.get("BENCH_TOKEN_POOL", "12000"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / CLK_TCK


def to_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, connections: int, env: dict[str, str]) -> dict:
    threads = min(connections, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{DURATION}s", "--latency", "-s", str(LUA), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60, env={**os.environ, **env}).stdout
    with (OUT / "wrk.log").open("a") as log:
        log.write(f"$ {' '.join(cmd)}\n{out}\n")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = int(re.search(r"BAD_STATUS (\d+)", out).group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99_ms": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "errors": errors,
    }


def add_proxy_route(doc: dict) -> dict:
    """/plain/rgw/ → RGW without the filter, for the e_proxy reference scenario."""
    for listener in doc["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        routes.insert(
            0,
            {
                "match": {"prefix": "/plain/rgw/"},
                "route": {"cluster": "rgw", "prefix_rewrite": "/"},
                "typed_per_filter_config": {
                    "envoy.filters.http.wasm": {
                        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                        "disabled": True,
                    }
                },
            },
        )
    return doc


def presigned_assume_role(st: Stack) -> Path:
    """One AssumeRole request signed by botocore, replayed as is (RGW accepts a signature
    for 15 minutes; the session name repeats, which RGW allows)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = st.sts_keys
    body = (
        "Action=AssumeRole&Version=2011-06-15&RoleArn="
        + keys["role_arn"].replace(":", "%3A").replace("/", "%2F")
        + "&RoleSessionName=bench&DurationSeconds=3600"
    )
    host = st.rgw_endpoint.split("//", 1)[1]
    req = AWSRequest(
        method="POST",
        url=f"{st.rgw_endpoint}/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Host": host},
    )
    SigV4Auth(Credentials(keys["access_key_id"], keys["secret_access_key"]), "sts", "us-east-1").add_auth(req)
    lines = [f"{k}: {v}" for k, v in req.headers.items()]
    path = OUT / "assume-role.req"
    path.write_text("\n".join(["POST /"] + lines) + "\n\n" + body)
    (OUT / "assume-role-proxied.req").write_text("\n".join(["POST /plain/rgw/"] + lines) + "\n\n" + body)
    return path


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "wrk.log").unlink(missing_ok=True)
    cfg = Config.from_env(test=True, env={**os.environ, "STACK_TEST_DIR": str(REPO / "target" / "bench-stack")})
    st = Stack(cfg)
    st.down()
    try:
        st.up()
        st.restart_envoy(envoy_patch=add_proxy_route)
        return run(st)
    finally:
        st.down()


def run(st: Stack) -> int:
    http = st.cfg.gateway_http_url
    one = OUT / "token-one.txt"
    one.write_text(st.token("admin") + "\n")
    started = time.monotonic()
    pool = OUT / "token-pool.txt"
    tokens: list[str] = []
    while len(tokens) < POOL:  # batches keep each control call well inside its timeout
        tokens += st._control("/control/tokens", {"count": min(500, POOL - len(tokens)), "username": "admin"})["tokens"]
    pool.write_text("\n".join(tokens) + "\n")
    print(f"{len(tokens)} distinct tokens in {time.monotonic() - started:.1f} s", flush=True)
    scenarios = {
        "a": (st.rgw_endpoint + "/", {"REQUEST_FILE": str(presigned_assume_role(st))}),
        "e_proxy": (http + "/", {"REQUEST_FILE": str(OUT / "assume-role-proxied.req")}),
        "b": (http + "/", {"TOKENS_FILE": str(one), "EXPECT_STATUS": "201"}),
        "c": (http + "/", {"TOKENS_FILE": str(pool), "EXPECT_STATUS": "201"}),
        "d_filter": (http + "/apis/sts/healthz", {}),
        "d_plain": (http + "/plain/healthz", {}),
    }
    only = os.environ.get("BENCH_SCENARIOS")
    if only:
        scenarios = {k: v for k, v in scenarios.items() if k in only.split(",")}
    results = measure(st, scenarios)
    if not only or "f" in only.split(","):
        # f: the same caller again and again with opt-in reuse: Envoy restarted with
        # reuse.min_remaining_seconds (the other scenarios ran with the default: reuse off).
        st.restart_envoy(plugin_overrides={"reuse": {"min_remaining_seconds": 600}}, envoy_patch=add_proxy_route)
        results += measure(st, {"f": (http + "/", {"TOKENS_FILE": str(one), "EXPECT_STATUS": "201"})})
        st.restart_envoy(envoy_patch=add_proxy_route)
    summary = build_summary(st, results)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    return 0


def measure(st: Stack, scenarios: dict[str, tuple[str, dict[str, str]]]) -> list[dict]:
    """Every scenario at every connection count, RUNS times each; the medians."""
    envoy_pid, rgw_pid = st.envoy.pid(), st.rgw.pid()
    # Warm up: JIT, connection pools, caches; and check every scenario answers as expected.
    for name, (url, env) in scenarios.items():
        warm = wrk_short(url, env)
        if warm["errors"]:
            print(f"scenario {name}: {warm['errors']} errors while warming up", file=sys.stderr)
    results = []
    for connections in CONNECTIONS:
        for name, (url, env) in scenarios.items():
            runs = []
            for _ in range(RUNS):
                e0, r0 = cpu_ms(envoy_pid), cpu_ms(rgw_pid)
                r = wrk(url, connections, env)
                e1, r1 = cpu_ms(envoy_pid), cpu_ms(rgw_pid)
                n = max(r["requests"], 1)
                r["envoy_cpu_ms_per_req"] = (e1 - e0) / n
                r["rgw_cpu_ms_per_req"] = (r1 - r0) / n
                runs.append(r)
            med = {
                k: statistics.median(x[k] for x in runs)
                for k in ("rps", "p50_ms", "p99_ms", "envoy_cpu_ms_per_req", "rgw_cpu_ms_per_req")
            }
            row = {
                "scenario": name,
                "connections": connections,
                **{k: round(v, 4) for k, v in med.items()},
                "errors": sum(x["errors"] for x in runs),
                "requests": sum(x["requests"] for x in runs),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    return results


def wrk_short(url: str, env: dict[str, str]) -> dict:
    global DURATION
    saved, DURATION = DURATION, 1
    try:
        return wrk(url, 2, env)
    finally:
        DURATION = saved


def build_summary(st: Stack, results: list[dict]) -> dict:
    def rps(s: str, c: int) -> float:
        return next(r["rps"] for r in results if r["scenario"] == s and r["connections"] == c)

    have = {r["scenario"] for r in results}
    pairs = [("b", "a"), ("c", "a"), ("e_proxy", "a"), ("f", "a"), ("b", "e_proxy")]
    ratios = {
        f"{s}_over_{base}": {str(c): round(rps(s, c) / rps(base, c), 3) for c in CONNECTIONS}
        for s, base in pairs
        if {s, base} <= have
    }
    stats = st.envoy_stats() if hasattr(st, "envoy_stats") else {}
    vm_bytes = next((v for k, v in stats.items() if k.endswith("sts_gateway_vm_memory_bytes")), None)
    return {
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "note": "load generator, Envoy and RGW share these cores",
        },
        "duration_s": DURATION,
        "runs": results,
        "ratios": ratios,
        "wasm_bytes": (REPO / "target" / "sts_gateway.wasm").stat().st_size,
        "wasm_vm_memory_bytes_per_worker": vm_bytes,
        "envoy_rss_kb": rss_kb(st.envoy.pid()),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def print_table(s: dict) -> None:
    print()
    print(
        f"{'scenario':9} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'envoy ms/req':>12} {'rgw ms/req':>10}"
    )
    for r in s["runs"]:
        print(
            f"{r['scenario']:9} {r['connections']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['errors']:>6} {r['envoy_cpu_ms_per_req']:>12.3f} {r['rgw_cpu_ms_per_req']:>10.3f}"
        )
    print()
    for name, by_c in s["ratios"].items():
        print(f"{name}: " + ", ".join(f"{c} conns {v:.2f}" for c, v in by_c.items()))
    vm = s["wasm_vm_memory_bytes_per_worker"]
    print(
        f".wasm {s['wasm_bytes']} bytes; Wasm VM linear memory per worker "
        f"{'n/a' if vm is None else f'{vm / 1048576:.1f} MiB'}; Envoy RSS {s['envoy_rss_kb']} kB"
    )
    print(f"summary: {OUT / 'summary.json'}")


if __name__ == "__main__":
    sys.exit(main())
