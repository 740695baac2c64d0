#!/bin/sh
# Usage: tests/rsa-bench/run.sh [backend...]; each backend is a cargo feature of this crate.
# `path` times the gateway's whole request path (scenarios b and f) with the simulated host.
set -e
cd "$(dirname "$0")"
for b in ${@:-jwt rsa09_u64 rsa09 rsa010 numbig hand32 hand64}; do
  f=$b; [ "$b" = path ] && f=path,gw_sig
  cargo build -q --release --target wasm32-wasip1 --no-default-features --features "$f" --target-dir target/$b
  w=target/$b/wasm32-wasip1/release/rsa-bench.wasm
  echo "== $b ($(stat -c %s $w) bytes)"
  node --no-warnings run.mjs $w
done
