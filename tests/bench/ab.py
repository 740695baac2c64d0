"""A/B of filter builds: `.venv/bin/python tests/bench/ab.py A.wasm B.wasm [...]` restarts the
bench stack's Envoy with each module in turn (two alternating rounds, so drift on a shared machine
hits every variant alike) and prints mints/s, p50 and Envoy/RGW CPU per mint for scenario (b) at
1 and 4 connections. Used to pick opt-level "s" (docs/performance.md). Leaves
target/sts_gateway.wasm as the last variant: run `make build` after."""

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
        token = bench.OUT / "token-one.txt"
        token.write_text(st.token("admin") + "\n")
        env = {**os.environ, "TOKENS_FILE": str(token), "EXPECT_STATUS": "201"}
        url = st.cfg.gateway_http_url + "/"
        for _ in range(2):
            for wasm in wasms:
                if Path(wasm).resolve() != (REPO / "target" / "sts_gateway.wasm").resolve():
                    shutil.copy(wasm, REPO / "target" / "sts_gateway.wasm")
                st.restart_envoy()
                subprocess.run(["wrk", "-t1", "-c1", "-d1s", "-s", str(bench.LUA), url], env=env, capture_output=True)
                for c in (1, 4):
                    e0, r0 = cpu_ms(st.envoy.pid()), cpu_ms(st.rgw.pid())
                    out = subprocess.run(
                        ["wrk", "-t1", f"-c{c}", "-d3s", "--latency", "-s", str(bench.LUA), url],
                        env=env,
                        capture_output=True,
                        text=True,
                    ).stdout
                    n = int(re.search(r"(\d+) requests in", out).group(1))
                    bad = re.search(r"BAD_STATUS (\d+)", out).group(1)
                    p50 = re.search(r"\s50%\s+(\S+)", out).group(1)
                    print(
                        f"{Path(wasm).name:24} c={c} mints/s={n / 3:.0f} p50={p50} "
                        f"envoy_ms={(cpu_ms(st.envoy.pid()) - e0) / n:.3f} "
                        f"rgw_ms={(cpu_ms(st.rgw.pid()) - r0) / n:.3f} "
                        f"bad={bad}",
                        flush=True,
                    )
    finally:
        st.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
