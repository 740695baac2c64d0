# sts-gateway: build the filter, run the local stack (Envoy + Ceph RGW + OIDC issuer), test.
#
#   make run          build, start the stack, print how to use it; Ctrl-C stops it
#   make test         every test (unit + end to end) on a separate test stack
#   make up / down    start / stop the stack in the background (state: target/stack/)
#   make token [USER=admin]   print a JWT obtained through the gateway
#   make manifests    envoy/envoy.yaml + envoy/istio/*.yaml from envoy/sts-gateway.yaml
#   make release      target/release/sts_gateway.wasm, its .sha256, and Istio manifests with it
#
# STACK_ARGS=--test makes up/down/status/token/env act on the test stack (target/test-stack/).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-print-directory
.DEFAULT_GOAL := help

VENV        := .venv
VENV_PY     := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.installed
ISSUER_DIR  := tests/stack/issuer
NPM_STAMP   := $(ISSUER_DIR)/node_modules/.installed
STACK_ARGS  ?=
STACK       := $(VENV_PY) tests/stack/stack.py $(STACK_ARGS)
WASM_TARGET := wasm32-wasip1
WASM_CARGO  := target/$(WASM_TARGET)/release/sts_gateway.wasm
WASM        := target/sts_gateway.wasm
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
PYTEST_ARGS ?=

# Debian packages the stack and the tests need (ceph: mon, osd, radosgw, CLI; wrk for load).
APT_PKGS := ceph-mon ceph-osd radosgw ceph-common wrk binaryen openssl curl ca-certificates \
            python3 python3-venv gcc libc6-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# `USER` is also the login name in the environment: only a command-line USER= counts.
TOKEN_USER := $(if $(filter command line,$(origin USER)),$(USER),admin)

.PHONY: help deps deps-apt deps-node deps-rust deps-python deps-npm build up down status env token run \
        test unit soak e2e manifests release bench clean fuzz fuzz-smoke load load-short

help:
	@sed -n '2,11p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- dependencies (idempotent)

deps: deps-apt deps-node deps-rust deps-python deps-npm

deps-apt:
	@missing=""; \
	for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Node.js >= 20 (NodeSource or Debian's nodejs + npm); oauth2-mock-server 9.3 runs on 20.
deps-node:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "deps: installing nodejs and npm from Debian"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends nodejs npm; \
	fi; \
	major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then \
	  echo "deps: Node.js $$(node --version) is too old: the issuer needs Node.js >= 20 (e.g. from NodeSource)" >&2; exit 1; \
	fi

deps-rust:
	@command -v rustup >/dev/null || { echo "deps: rustup is required (https://rustup.rs)" >&2; exit 1; }
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

deps-python: $(VENV_STAMP)
$(VENV_STAMP): tests/requirements.txt | deps-apt
	@[ -x $(VENV_PY) ] || python3 -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	@touch $@

deps-npm: $(NPM_STAMP)
$(NPM_STAMP): $(ISSUER_DIR)/package-lock.json $(ISSUER_DIR)/package.json | deps-node
	cd $(ISSUER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# ---------------------------------------------------------------- build

build: deps-rust
	cargo build --release --target $(WASM_TARGET) --features envoy
	@if [ ! -f $(WASM) ] || [ $(WASM_CARGO) -nt $(WASM) ]; then \
	  if command -v wasm-opt >/dev/null; then \
	    wasm-opt $(WASM_OPT_FLAGS) $(WASM_CARGO) -o $(WASM).tmp; \
	  else \
	    echo "build: wasm-opt not found (Debian: binaryen): copying the unoptimized module"; \
	    cp $(WASM_CARGO) $(WASM).tmp; \
	  fi; \
	  mv $(WASM).tmp $(WASM); \
	fi; \
	echo "build: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

# ---------------------------------------------------------------- deployment (README "Deploying in Istio")

# envoy/envoy.yaml and envoy/istio/*.yaml from the one source, envoy/sts-gateway.yaml.
manifests: $(VENV_STAMP)
	$(VENV_PY) envoy/generate.py

# The optimized module (make build), its sha256, and the Istio manifests with that sha256 (and
# WASM_URL=..., if given, as the WasmPlugin url) in target/release/istio/.
RELEASE_DIR := target/release
WASM_URL ?=
release: build $(VENV_STAMP)
	@mkdir -p $(RELEASE_DIR)
	@cp $(WASM) $(RELEASE_DIR)/sts_gateway.wasm
	@cd $(RELEASE_DIR) && sha256sum sts_gateway.wasm > sts_gateway.wasm.sha256
	@sha=$$(cut -d' ' -f1 $(RELEASE_DIR)/sts_gateway.wasm.sha256); \
	$(VENV_PY) envoy/generate.py --only-istio --out $(RELEASE_DIR) --wasm-sha256 $$sha \
	  $(if $(WASM_URL),--wasm-url '$(WASM_URL)') >/dev/null; \
	echo "release: $(RELEASE_DIR)/sts_gateway.wasm ($$(stat -c %s $(RELEASE_DIR)/sts_gateway.wasm) bytes)"; \
	echo "release: $(RELEASE_DIR)/sts_gateway.wasm.sha256, $(RELEASE_DIR)/istio/*.yaml"; \
	echo "sha256: $$sha"

# ---------------------------------------------------------------- the local stack

up: deps build
	@$(STACK) up
	@$(STACK) howto

down:
	@if [ -x $(VENV_PY) ]; then $(STACK) down; else python3 tests/stack/stack.py $(STACK_ARGS) down; fi

status: $(VENV_STAMP)
	@$(STACK) status

env: $(VENV_STAMP)
	@$(STACK) env

token: $(VENV_STAMP)
	@$(STACK) token $(TOKEN_USER)

# Foreground: Ctrl-C (or the end of the terminal) stops everything.
run: deps build
	@trap '$(STACK) down' EXIT; trap 'exit 0' INT TERM HUP; \
	$(STACK) up; \
	$(STACK) howto; \
	echo; echo "Stack running; press Ctrl-C to stop it."; \
	while sleep 3600; do :; done

# ---------------------------------------------------------------- tests

test: deps unit fuzz-smoke build e2e load-short

unit:
	cargo test

# The model-based property tests of every stateful part (lifecycle, token cache, parking) with
# many more sequences than make test runs (SOAK_CASES each).
SOAK_CASES ?= 2000
soak:
	PROPTEST_CASES=$(SOAK_CASES) cargo test --release -q model

# The session fixture starts and stops the test stack; the trap also stops it if pytest dies.
e2e: deps build
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV)/bin/pytest tests/e2e -v $(PYTEST_ARGS)

# Benchmarks on their own stack (test ports, target/bench-stack/): prints a table and writes
# target/bench/summary.json. BENCH_CONNECTIONS, BENCH_RUNS, BENCH_SECONDS tune it.
bench: deps build
	$(VENV_PY) tests/bench/bench.py

# Hardening (issue 5). Fuzzing: cargo-fuzz crate in tests/fuzz (targets token, jwks, sts_xml, rs256,
# config); libFuzzer writes new inputs to target/fuzz-corpus/<t>, the committed seeds in
# tests/fuzz/corpus/<t> are only read. FUZZ_SECONDS per target (default 600), FUZZ_TARGETS.
FUZZ_TARGETS ?= token jwks sts_xml config rs256
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_RUN = cargo +nightly fuzz run --fuzz-dir tests/fuzz --features fuzzing -O -s none
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_RUN) $$t target/fuzz-corpus/$$t tests/fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
	    | grep -E '^(stat::|Done|==|SUMMARY|.*(panicked|crash|deadly))' || exit 1; \
	done

# make test's smoke: the committed corpus through every target as a stable `cargo test`; plus
# FUZZ_SMOKE_SECONDS of real fuzzing per target when cargo-fuzz and nightly are installed.
fuzz-smoke:
	cargo test -q --manifest-path tests/fuzz/Cargo.toml
	@if command -v cargo-fuzz >/dev/null && rustup toolchain list | grep -q '^nightly'; then \
	  for t in $(FUZZ_TARGETS); do \
	    mkdir -p target/fuzz-corpus/$$t; \
	    $(FUZZ_RUN) $$t target/fuzz-corpus/$$t tests/fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SMOKE_SECONDS) -timeout=10 -print_final_stats=1 2>&1 \
	      | grep -E '^(stat::number_of_executed_units|==|SUMMARY|.*(panicked|deadly))' || exit 1; \
	  done; \
	else echo "fuzz-smoke: cargo-fuzz or nightly missing: corpus replay only (make fuzz installs cargo-fuzz)"; fi

# Load: LOAD_REQUESTS mints over LOAD_CONNECTIONS keep-alive connections on the test stack, with a
# JWKS key rotation in the middle; summary in target/load/summary.json.
LOAD_REQUESTS ?= 20000
LOAD_CONNECTIONS ?= 64
load: deps build
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV_PY) tests/load/load.py --requests $(LOAD_REQUESTS) --connections $(LOAD_CONNECTIONS) \
	  --max-seconds 300 --json target/load/summary.json

load-short: deps build
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV_PY) tests/load/load.py --requests 2000 --connections 64 --max-seconds 60 \
	  --json target/load/summary-short.json

clean: down
	@$(if $(wildcard $(VENV_PY)),$(VENV_PY),python3) tests/stack/stack.py --test down
	rm -rf target/stack target/test-stack $(WASM)
