"""`make bench-instr`: the filter's own work per request, in instructions counted by callgrind.

Builds the path harness of tests/rsa-bench natively (`--features instr`: the gateway's request
path, `Gateway::on_request` to the reply and the end of the stream, with the simulated host in
place of Envoy) and runs it under `valgrind --tool=callgrind --toggle-collect=*instr::measured*`:
only the requests inside `measured` are counted, not the start, the JWKS load or the warm-up. Each
scenario runs with N and 2N requests; instructions per request = (I(2N) - I(N)) / N, so what the
first measured requests pay once (a growing table, a first allocation) drops out too.

Scenarios (the ones of `make bench`): b a cached token, minting through a simulated RGW answer;
c a new token on every request (RSA verification each time); f (b) with reuse on.
Stages: each instruction is charged to the source file it comes from (debug line tables keep
inlined code's own file), or for the standard library to the function it was inlined into; the
table maps files to stages (token, RSA, SHA-256, JSON, SigV4, RGW's XML answer, reply, allocator,
other). The inputs are fixed (tokens with a fixed `iat`, the host's clock at that time), so the
counts repeat (the native build allocates with dlmalloc, as wasi-libc does in the module: glibc's
malloc took paths that varied by up to 1 % of b and f between identical runs): the whole
measurement runs INSTR_REPEAT times (default 2) and the largest difference between repeats is
printed. Writes target/bench/instr.json.
INSTR_N (default 200) sets N.

The same harness built for wasm32-wasip1 runs in node's V8 (the engine Envoy embeds) under
callgrind too, for the total the module costs per request in compiled wasm: node
--single-threaded --no-liftoff --no-wasm-tier-up --predictable (TurboFan only, compiled on the main
thread, no background threads), N and 2N requests, the whole process counted (callgrind cannot
see the JIT's functions, so no stages here; node's start and the wasm compilation, about 2.2
billion instructions, cancel in the difference). INSTR_V8_N (default 400) sets its N: node's own
variation (up to about 130,000 instructions a run) is then under 0.5 % of f's difference; INSTR_V8=0
skips it (it takes about 4 minutes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "rsa-bench"
WORK = REPO / "target" / "instr"
OUT = REPO / "target" / "bench"
N = int(os.environ.get("INSTR_N", "200"))
REPEAT = int(os.environ.get("INSTR_REPEAT", "2"))
SCENARIOS = os.environ.get("INSTR_SCENARIOS", "b,c,f").split(",")
V8 = os.environ.get("INSTR_V8", "1") != "0"
V8_N = int(os.environ.get("INSTR_V8_N", "400"))
V8_FLAGS = ["--single-threaded", "--no-liftoff", "--no-wasm-tier-up", "--predictable", "--no-warnings"]
IAT = 1_900_000_000  # 2030-03-17: the tokens' iat and the simulated host's clock
WARM_UP = 20  # instr.rs

# (stage, pattern on the source file or, for std/libc code, on the function), first match wins.
STAGES = [
    ("RSA", r"/crypto/rsa_math\.rs|/crypto/rsa_sig\.rs|rsa_math::|rsa_sig::"),
    ("SHA-256", r"/sha2-|/digest-|/block-buffer-|sha2::"),
    ("JSON", r"/serde_json-|/serde-|/serde_core-|serde_json::"),
    ("SigV4", r"/crypto/sigv4\.rs|/sts/request\.rs|/sts/session\.rs|sigv4::|sts::request::|sts::session::"),
    (
        "token (parse, checks, cache)",
        r"/token/|/crypto/jws\.rs|/base64-|/ct-codecs-|/jwt-simple-|/coarsetime-|/policy/|token::|jws::|policy::"
        r"|base64::|ct_codecs::"
        r"|jwt_simple::|hash::sip|hash_one|DefaultHasher",
    ),
    ("RGW's XML answer", r"/sts/response\.rs|/roxmltree-|/memchr-|roxmltree::|sts::response::|memchr::count"),
    ("reply (JSON body)", r"/sts/credentials\.rs|sts::credentials::"),
    (
        "allocator, memcpy",
        r"malloc|free|realloc|unlink_chunk|mem(cpy|move|set|cmp)|__rust_alloc|__rdl_|__rust_dealloc|alloc::|raw_vec|RawVec",
    ),
    ("simulated host, harness", r"/host/sim\.rs|/rsa-bench/src/|host::sim|rsa_bench::"),
]
OTHER = "other (gateway logic, formatting, hash maps)"
LINE = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*?)(?: \[[^\]]*\])?$")


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def build() -> tuple[Path, Path]:
    env = {**os.environ, "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only"}
    for feature in ("gen", "instr"):
        sh(
            ["nice", "-n", "10", "cargo", "build", "-q", "--release", "--features", feature]
            + ["--target-dir", str(WORK / feature)],
            cwd=HARNESS,
            env=env,
        )
    if V8:
        sh(
            ["nice", "-n", "10", "cargo", "build", "-q", "--release", "--target", "wasm32-wasip1"]
            + ["--features", "instr", "--target-dir", str(WORK / "wasm")],
            cwd=HARNESS,
        )
    tokens = WORK / "tokens"
    need = WARM_UP + 2 * max(N, V8_N if V8 else 0)
    if not (tokens / "tokens.txt").exists() or len((tokens / "tokens.txt").read_text().split()) < need:
        sh([str(WORK / "gen" / "release" / "rsa-bench"), str(tokens), str(need), str(IAT)])
    return WORK / "instr" / "release" / "rsa-bench", tokens


def callgrind(driver: Path, tokens: Path, scenario: str, n: int) -> dict[str, int]:
    """Instructions inside `measured`, per stage."""
    out = WORK / f"callgrind.{scenario}.{n}"
    sh(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=*instr::measured*"]
        + [str(driver), str(tokens), str(IAT), scenario, str(n)],
        capture_output=True,
    )
    text = sh(
        ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
    ).stdout
    stages: dict[str, int] = {}
    listing = text.split("file:function", 1)[1]
    for line in listing.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        count, where = int(m.group(1).replace(",", "")), m.group(2)
        file, _, func = where.partition(":")
        # Code of the standard library or libc is charged by the function it ran in.
        key = func if file.startswith(("/rustc/", "./", "???")) or "/rust/deps/" in file else where
        stage = next((s for s, pat in STAGES if re.search(pat, key)), OTHER)
        stages[stage] = stages.get(stage, 0) + count
    total = int(re.search(r"([\d,]+) \([ \d.]+%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
    stages["total"] = total
    return stages


def v8_total(tokens: Path, scenario: str, n: int) -> int:
    """Instructions of the whole node process running the wasm harness for n requests."""
    out = WORK / f"callgrind-v8.{scenario}.{n}"
    wasm = WORK / "wasm" / "wasm32-wasip1" / "release" / "rsa-bench.wasm"
    run = sh(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "node", *V8_FLAGS]
        + [str(HARNESS / "run.mjs"), str(wasm), str(tokens), str(IAT), scenario, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "WASI_DIR": str(tokens)},
    )
    if f"{n} requests measured" not in run.stdout:
        raise SystemExit(f"node run of {scenario}: {run.stdout} {run.stderr[-2000:]}")
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def measure(driver: Path, tokens: Path) -> dict[str, dict[str, float]]:
    result = {}
    for s in SCENARIOS:
        one, two = callgrind(driver, tokens, s, N), callgrind(driver, tokens, s, 2 * N)
        result[s] = {k: (two.get(k, 0) - one.get(k, 0)) / N for k in set(one) | set(two)}
        if V8:
            result[s]["v8_total"] = (v8_total(tokens, s, 2 * V8_N) - v8_total(tokens, s, V8_N)) / V8_N
    return result


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    driver, tokens = build()
    repeats = [measure(driver, tokens) for _ in range(REPEAT)]
    last = repeats[-1]
    totals = ["total", "v8_total"] if V8 else ["total"]
    spread = {
        f"{s} {t}": (max(r[s][t] for r in repeats) - min(r[s][t] for r in repeats)) / last[s][t] * 100
        for s in SCENARIOS
        for t in totals
    }
    names = [s for s, _ in STAGES] + [OTHER]
    print(f"\ninstructions per request (x86-64, callgrind; N={N} and 2N, {REPEAT} repeats)")
    print(f"{'stage':46}" + "".join(f"{s:>18}" for s in SCENARIOS))
    for name in names:
        cells = "".join(
            f"{last[s].get(name, 0):>10,.0f} {100 * last[s].get(name, 0) / last[s]['total']:5.1f} %" for s in SCENARIOS
        )
        print(f"{name:46}{cells}")
    print(f"{'total (native x86-64)':46}" + "".join(f"{last[s]['total']:>18,.0f}" for s in SCENARIOS))
    if V8:
        print(
            f"{'total in V8 (wasm, TurboFan, node)':46}" + "".join(f"{last[s]['v8_total']:>18,.0f}" for s in SCENARIOS)
        )
    for i, r in enumerate(repeats):
        print(f"repeat {i + 1}: " + ", ".join(f"{s} {t} {r[s][t]:,.0f}" for s in SCENARIOS for t in totals))
    print("largest difference between repeats: " + ", ".join(f"{k} {v:.3f} %" for k, v in spread.items()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    doc = {
        "commit": commit.stdout.strip(),
        "n": N,
        "v8_n": V8_N if V8 else None,
        "unit": "x86-64 instructions per request (callgrind Ir), native build of the path harness",
        "repeats": repeats,
        "difference_percent": spread,
    }
    (OUT / "instr.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"summary: {OUT / 'instr.json'}")
    bad = [k for k, v in spread.items() if v > 1.0]
    if bad:
        print(f"WARNING: repeats differ by more than 1 % for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
