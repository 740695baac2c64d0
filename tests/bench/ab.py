"""A/B of filter builds: `.venv/bin/python tests/bench/ab.py A.wasm B.wasm [...]` restarts the
bench stack's Envoy with each module in turn (two alternating rounds, so drift on a shared machine
hits every variant alike) and prints mints/s, p50 and Envoy/RGW CPU per mint for scenario (b) at
1 and 4 connections. Used to pick opt-level "s" (docs/performance.md). Leaves
target/sts_gateway.wasm as the last variant: run `make build` after.

AB_SCENARIO=c: scenario (c) instead, a new token per request, at 1 and 8 connections (AB_ROUNDS
rounds, default 2). Each wrk run of one Envoy gets its own slice of a pool of distinct tokens, so
no token repeats while the token cache lives (a restart empties it); a run that used more
tokens than its slice says so (`cycled`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import REPO, cpu_ms  # noqa: E402

from stack import Config, Stack  # noqa: E402


def main(wasms: list[str]) -> int:
    cfg = Config.from_env(test=True, env={**os.environ, "STACK_TEST_DIR": str(REPO / "target" / "bench-stack")})
    st = Stack(cfg)
    st.down()
    try:
        st.up()
        bench.OUT.mkdir(parents=True, exist_ok=True)
        scenario_c = os.environ.get("AB_SCENARIO") == "c"
        # (label, connections); in the scenario-c mode a run of (b) at 8 connections, the cached
        # path, gives the reference in the same conditions: c - b is the cost of a new token.
        # (a), RGW alone, gives c / a as make bench defines it.
        runs = [("c", 1), ("c", 8), ("b", 8), ("a", 8)] if scenario_c else [("b", 1), ("b", 4)]
        connections = (1, 8) if scenario_c else (1, 4)
        token = bench.OUT / "token-one.txt"
        token.write_text(st.token("admin") + "\n")
        files: dict = {key: token for key in ("warm", *connections)}
        if scenario_c:
            sizes = {"warm": 2000, 1: 4000, 8: 8000}
            tokens: list[str] = []
            while len(tokens) < sum(sizes.values()):
                tokens += st._control("/control/tokens", {"count": 500, "username": "admin"})["tokens"]
            for key, size in sizes.items():
                files[key] = bench.OUT / f"token-ab-{key}.txt"
                files[key].write_text("\n".join(tokens[:size]) + "\n")
                tokens = tokens[size:]
        url = st.cfg.gateway_http_url + "/"
        presigned = str(bench.presigned_assume_role(st)) if scenario_c else ""
        for _ in range(int(os.environ.get("AB_ROUNDS", "2"))):
            for wasm in wasms:
                if Path(wasm).resolve() != (REPO / "target" / "sts_gateway.wasm").resolve():
                    shutil.copy(wasm, REPO / "target" / "sts_gateway.wasm")
                st.restart_envoy()
                env = {**os.environ, "TOKENS_FILE": str(files["warm"]), "EXPECT_STATUS": "201"}
                subprocess.run(["wrk", "-t1", "-c1", "-d1s", "-s", str(bench.LUA), url], env=env, capture_output=True)
                for label, c in runs:
                    env = {
                        **os.environ,
                        "TOKENS_FILE": str(files[c] if label == "c" else token),
                        "EXPECT_STATUS": "201",
                    }
                    run_url = url
                    if label == "a":
                        env, run_url = {**os.environ, "REQUEST_FILE": presigned}, st.rgw_endpoint + "/"
                    e0, r0 = cpu_ms(st.envoy.pid()), cpu_ms(st.rgw.pid())
                    out = subprocess.run(
                        ["wrk", "-t1", f"-c{c}", "-d3s", "--latency", "-s", str(bench.LUA), run_url],
                        env=env,
                        capture_output=True,
                        text=True,
                    ).stdout
                    n = int(re.search(r"(\d+) requests in", out).group(1))
                    bad = re.search(r"BAD_STATUS (\d+)", out).group(1)
                    p50 = re.search(r"\s50%\s+(\S+)", out).group(1)
                    print(
                        f"{Path(wasm).name:24} {label} c={c} mints/s={n / 3:.0f} p50={p50} "
                        f"envoy_ms={(cpu_ms(st.envoy.pid()) - e0) / n:.3f} "
                        f"rgw_ms={(cpu_ms(st.rgw.pid()) - r0) / n:.3f} "
                        f"bad={bad}"
                        + (" cycled" if label == "c" and scenario_c and n > sum(1 for _ in open(files[c])) else ""),
                        flush=True,
                    )
    finally:
        st.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
