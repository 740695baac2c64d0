# sts-gateway: build the filter, run the local stack (Envoy + Ceph RGW + OIDC issuer), test.
# `make help` lists the targets (from the `## ` comment on each target's line).
# STACK_ARGS=--test makes up/down/status/token/env act on the test stack (target/test-stack/).
# Commands that start a stack share fixed loopback ports: on a shared machine run them under
# `flock /tmp/sts-stack.lock make ...`.

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
            python3 python3-venv gcc libc6-dev openjdk-17-jre-headless maven
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# `USER` is also the login name in the environment: only a command-line USER= counts.
TOKEN_USER := $(if $(filter command line,$(origin USER)),$(USER),admin)

.PHONY: help deps deps-apt deps-node deps-rust deps-fuzz deps-python deps-npm deps-sdk deps-keycloak build build-crash up down status env token run \
        test lint unit soak e2e manifests release bench bench-instr clean fuzz fuzz-smoke load load-short \
        istio-manifests deps-istio istio-e2e \
        module-test fuzz-module

help: ## this list
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)$$/\1\t\2/' \
	  | awk -F '\t' '{ printf "  make %-12s %s\n", $$1, $$2 }'

# ---------------------------------------------------------------- dependencies (idempotent)

deps: deps-apt deps-node deps-rust deps-fuzz deps-python deps-npm deps-sdk deps-keycloak ## install what is missing (Debian packages, Rust target, cargo-fuzz, .venv, npm, SDK clients, Keycloak)

deps-apt: ## the Debian packages (ceph, wrk, binaryen, ...), with sudo if not root
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
deps-node: ## check Node.js >= 20 and npm (installs Debian's if missing)
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "deps: installing nodejs and npm from Debian"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends nodejs npm; \
	fi; \
	major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then \
	  echo "deps: Node.js $$(node --version) is too old: the issuer needs Node.js >= 20 (e.g. from NodeSource)" >&2; exit 1; \
	fi

deps-rust: ## check rustup, add the wasm32-wasip1 target
	@command -v rustup >/dev/null || { echo "deps: rustup is required (https://rustup.rs)" >&2; exit 1; }
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# cargo-fuzz runs on rustup's nightly toolchain (libFuzzer needs unstable flags).
deps-fuzz: deps-rust ## cargo-fuzz (cargo install --locked) and rustup's nightly toolchain
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# The SDK clients of tests/e2e/test_sdks.py: the AWS SDK for JavaScript v3 (npm, versions in
# tests/sdk/js/package-lock.json) and a Go program on the AWS SDK for Go v2 (Go module proxy,
# versions in tests/sdk/go/go.sum), built into target/sdk-go-client. Needs Go >= 1.24.
SDK_JS_STAMP := tests/sdk/js/node_modules/.installed
SDK_GO_BIN   := target/sdk-go-client
deps-sdk: $(SDK_JS_STAMP) $(SDK_GO_BIN) ## the JavaScript v3 and Go v2 SDK clients of the e2e tests (npm, Go module proxy)
$(SDK_JS_STAMP): tests/sdk/js/package-lock.json tests/sdk/js/package.json | deps-node
	cd tests/sdk/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
$(SDK_GO_BIN): tests/sdk/go/main.go tests/sdk/go/go.mod tests/sdk/go/go.sum
	@command -v go >/dev/null || { echo "deps-sdk: Go >= 1.24 is required (https://go.dev/dl/)" >&2; exit 1; }
	cd tests/sdk/go && nice -n 10 go build -mod=readonly -o ../../../$(SDK_GO_BIN) .

deps-python: $(VENV_STAMP) ## the project virtualenv .venv from tests/requirements.txt
$(VENV_STAMP): tests/requirements.txt | deps-apt
	@[ -x $(VENV_PY) ] || python3 -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	@touch $@

deps-npm: $(NPM_STAMP) ## the issuer's npm packages (npm ci)
$(NPM_STAMP): $(ISSUER_DIR)/package-lock.json $(ISSUER_DIR)/package.json | deps-node
	cd $(ISSUER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Keycloak (the stack's issuer) from Maven Central with mvn (the download cached in
# ~/.cache/sts-gateway/keycloak/m2), unpacked into target/keycloak/, `kc.sh build` once, the realm
# file imported once into a template database. Needs Java 17+ and Maven (APT_PKGS).
deps-keycloak: deps-apt ## Keycloak from Maven Central (cached in ~/.cache/sts-gateway/) into target/keycloak/
	@tests/stack/keycloak/install.sh

# ---------------------------------------------------------------- build

build: deps-rust ## the filter: target/sts_gateway.wasm (cargo release build + wasm-opt)
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

# Test-only module with a route that panics (feature crash-route): the e2e tests prove a VM that
# really dies fails closed and is reloaded. Never released; built before `build`, which then
# rebuilds the release features.
CRASH_WASM := target/sts_gateway-crash.wasm
build-crash: deps-rust ## test-only module that panics on /apis/sts/__crash (target/sts_gateway-crash.wasm)
	cargo build --release --target $(WASM_TARGET) --features envoy,crash-route
	cp $(WASM_CARGO) $(CRASH_WASM)

# ---------------------------------------------------------------- deployment (docs/istio.md)

# envoy/envoy.yaml and envoy/istio/*.yaml from the one source, envoy/sts-gateway.yaml.
# ISTIO_RELEASE: the Istio release the manifests target (1.26 default, the field's: WasmPlugin
# failStrategy FAIL_CLOSE; 1.27 and later: FAIL_RELOAD). The committed envoy/istio/ is for the default.
ISTIO_RELEASE ?= 1.26
manifests: $(VENV_STAMP) ## envoy/envoy.yaml + envoy/istio/*.yaml from envoy/sts-gateway.yaml [ISTIO_RELEASE=1.26]
	$(VENV_PY) envoy/generate.py --istio-release $(ISTIO_RELEASE)

# The optimized module (make build), its sha256, and the Istio manifests with that sha256 (and
# WASM_URL=..., if given, as the WasmPlugin url) in target/release/istio/.
RELEASE_DIR := target/release
WASM_URL ?=
release: build $(VENV_STAMP) ## target/release/: the module, its sha256, Istio manifests with it (WASM_URL=..., ISTIO_RELEASE=1.26)
	@mkdir -p $(RELEASE_DIR)
	@cp $(WASM) $(RELEASE_DIR)/sts_gateway.wasm
	@cd $(RELEASE_DIR) && sha256sum sts_gateway.wasm > sts_gateway.wasm.sha256
	@sha=$$(cut -d' ' -f1 $(RELEASE_DIR)/sts_gateway.wasm.sha256); \
	$(VENV_PY) envoy/generate.py --only-istio --out $(RELEASE_DIR) --wasm-sha256 $$sha \
	  --istio-release $(ISTIO_RELEASE) $(if $(WASM_URL),--wasm-url '$(WASM_URL)') >/dev/null; \
	echo "release: $(RELEASE_DIR)/sts_gateway.wasm ($$(stat -c %s $(RELEASE_DIR)/sts_gateway.wasm) bytes)"; \
	echo "release: $(RELEASE_DIR)/sts_gateway.wasm.sha256, $(RELEASE_DIR)/istio/*.yaml"; \
	echo "sha256: $$sha"; \
	echo "release: manifests for Istio $(ISTIO_RELEASE)"

# ---------------------------------------------------------------- the local stack

up: deps build ## start the stack in the background (idempotent; state in target/stack/)
	@$(STACK) up
	@$(STACK) howto

down: ## stop the stack; returns when its processes have exited
	@if [ -x $(VENV_PY) ]; then $(STACK) down; else python3 tests/stack/stack.py $(STACK_ARGS) down; fi

status: $(VENV_STAMP) ## which parts of the stack run
	@$(STACK) status

env: $(VENV_STAMP) ## print the stack's environment (as in target/stack/env.sh)
	@$(STACK) env

token: $(VENV_STAMP) ## print a JWT obtained through the gateway [USER=admin|testuser|user]
	@$(STACK) token $(TOKEN_USER)

# Foreground: Ctrl-C (or the end of the terminal) stops everything.
run: deps build ## build, start the stack in the foreground, print how to use it; Ctrl-C stops it
	@trap '$(STACK) down' EXIT; trap 'exit 0' INT TERM HUP; \
	$(STACK) up; \
	$(STACK) howto; \
	echo; echo "Stack running; press Ctrl-C to stop it."; \
	while sleep 3600; do :; done

# ---------------------------------------------------------------- tests

test: deps lint unit soak istio-manifests fuzz-smoke build module-test e2e istio-e2e load-short ## everything: lint, unit, soak (model tests, SOAK_CASES), Istio manifests, fuzz smoke, the compiled module, e2e, istiod e2e, load-short

# Python: ruff over tests/ and envoy/ (ruff.toml). Rust: rustfmt, clippy native (all targets, and
# the fuzz crate's library and corpus replay) and for the module (clippy denies
# unwrap/expect/panic/indexing outside tests there). Docs: the links of README.md and docs/
# (files and #anchors, GitHub's rules). CI: .ci/run drops the variables that narrow a run.
lint: deps-rust $(VENV_STAMP) ## ruff, cargo fmt, clippy (native, fuzz crate, wasm), doc links, .ci/run's environment
	$(VENV)/bin/ruff check tests envoy
	$(VENV)/bin/ruff format --check tests envoy
	$(VENV_PY) tests/lint/check_links.py --self-test
	python3 tests/lint/module_cycles.py
	.ci/check-env
	cargo fmt --check
	cargo fmt --check --manifest-path tests/fuzz/Cargo.toml
	cargo clippy -q --all-targets -- -D warnings
	cargo clippy -q --all-targets --manifest-path tests/fuzz/Cargo.toml -- -D warnings
	cargo clippy -q --release --target $(WASM_TARGET) --features envoy -- -D warnings
	cargo clippy -q --release --target $(WASM_TARGET) --features envoy,crash-route -- -D warnings

unit: $(VENV_STAMP) ## the Rust unit tests (cargo test), and botocore's SigV4 golden values
	cargo test
	$(VENV_PY) tests/sigv4/golden_sts_request.py --check

# The model-based property tests of every stateful part (the request lifecycle, the token cache,
# parking, the reuse store, the FIFO index: every test whose path contains `model`) with many
# more sequences than make test runs (SOAK_CASES each).
SOAK_CASES ?= 2000
soak: ## the model-based property tests with SOAK_CASES sequences each (default 2000)
	PROPTEST_CASES=$(SOAK_CASES) cargo test --release -q model

# The Istio manifests against Istio's CRD schemas (1.26.0 and 1.30.3 from ../shared/istio-crds/,
# beside the repository); no stack. Fails (never skips) when the schemas are missing.
istio-manifests: $(VENV_STAMP) ## the generated Istio manifests against Istio 1.26.0 and 1.30.3 CRD schemas
	$(VENV)/bin/pytest tests/istio/test_manifests.py -q $(PYTEST_ARGS)

# The field's Istio control plane, pilot-discovery of Istio 1.26.0 (HPE CSM's cray-istio), built
# from the Go module proxy into a cache that survives runs. Istio's tags carry no `v`: the module
# version is the pseudo-version of the 1.26.0 tag's commit (c2e9871f340c, 2025-05-06T18:19:44Z).
ISTIO_PILOT_VERSION ?= v0.0.0-20250506181944-c2e9871f340c
ISTIO_CACHE ?= $(HOME)/.cache/sts-gateway/istio-1.26.0
PILOT_DISCOVERY := $(ISTIO_CACHE)/bin/pilot-discovery
deps-istio: ## pilot-discovery of Istio 1.26.0 (go install, cached in ~/.cache/sts-gateway/)
	@command -v go >/dev/null || { echo "deps-istio: the Go toolchain is required (https://go.dev/dl)" >&2; exit 1; }
	@if [ ! -x $(PILOT_DISCOVERY) ]; then \
	  echo "deps-istio: go install istio.io/istio/pilot/cmd/pilot-discovery@$(ISTIO_PILOT_VERSION) (first build: minutes)"; \
	  mkdir -p $(ISTIO_CACHE)/bin; \
	  GOBIN=$(ISTIO_CACHE)/bin GOFLAGS= nice -n 10 go install istio.io/istio/pilot/cmd/pilot-discovery@$(ISTIO_PILOT_VERSION); \
	fi
	@echo "deps-istio: $(PILOT_DISCOVERY)"

# The filter through a real istiod (file mode) and the stack's Envoy as an Istio ingress gateway.
# Its own stack (ports + 20000, istiod on 127.0.0.1:25010, state in target/istio-stack/); the note
# (Istio release, timings, the placement table, the swap counts) is target/istio-stack/NOTE.md.
istio-e2e: deps build deps-istio ## e2e through istiod 1.26.0 (file mode) + the stack's Envoy as ingress gateway
	@trap '$(VENV_PY) tests/istio/istiod.py down >/dev/null 2>&1 || true' EXIT; \
	PILOT_DISCOVERY=$(PILOT_DISCOVERY) $(VENV)/bin/pytest tests/istio/test_istiod.py -v $(PYTEST_ARGS); \
	cat target/istio-stack/NOTE.md

# The released module (target/sts_gateway.wasm) in a proxy-wasm host inside the test process
# (tests/module-host: wasmtime, Envoy's side of the ABI 0.2.1): issue 17's table, a mint, the
# committed seeds of the fuzz target `module`, and MODULE_CASES random event sequences.
MODULE_CASES ?= 512
module-test: build ## the compiled module in a proxy-wasm host: table, mint, MODULE_CASES (512) random sequences
	STS_GATEWAY_WASM=$(CURDIR)/$(WASM) MODULE_CASES=$(MODULE_CASES) \
	  cargo test --no-fail-fast --manifest-path tests/module-host/Cargo.toml

# The session fixture starts and stops the test stack; the trap also stops it if pytest dies.
e2e: deps build-crash build ## end-to-end tests on the test stack (PYTEST_ARGS=... passes options to pytest)
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV)/bin/pytest tests/e2e -v $(PYTEST_ARGS)

# Benchmarks on their own stack (test ports, target/bench-stack/), in interleaved rounds: prints
# each ratio as median [lowest-highest round] and writes target/bench/summary.json (every round).
# BENCH_ROUNDS (6), BENCH_SECONDS (3), BENCH_CONNECTIONS (1,8,32), BENCH_SCENARIOS tune it (~5.5 min).
# Run it under `flock /tmp/sts-stack.lock` on a shared machine.
bench: deps build ## benchmarks on their own stack: a table, target/bench/summary.json
	$(VENV_PY) tests/bench/bench.py

# The filter's own work per request in instructions (callgrind on the native path harness of
# tests/rsa-bench, scenarios b, c, f, stage shares): no stack, no timing, the same count on every
# run. INSTR_N requests (default 200), INSTR_REPEAT repeats (default 2). Writes target/bench/instr.json.
bench-instr: deps-rust deps-python ## instructions per request and per stage (callgrind), target/bench/instr.json
	@dpkg-query -W -f='$${Status}' valgrind 2>/dev/null | grep -q "install ok installed" || { \
	  echo "deps: installing Debian package valgrind"; $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends valgrind; }
	$(VENV_PY) tests/bench/instr.py

# Fuzzing: cargo-fuzz crate in tests/fuzz (targets token, jwks, sts_xml, rs256,
# config); libFuzzer writes new inputs to target/fuzz-corpus/<t>, the committed seeds in
# tests/fuzz/corpus/<t> are only read. FUZZ_SECONDS per target (default 600), FUZZ_TARGETS.
FUZZ_TARGETS ?= token jwks sts_xml config rs256
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 10
# -O alone would build without debug assertions; -a keeps them (overflow checks) in the optimized build.
FUZZ_RUN = cargo +nightly fuzz run --fuzz-dir tests/fuzz --features fuzzing -O -a -s none
fuzz: deps-fuzz ## fuzz every target for FUZZ_SECONDS (default 600) each
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_RUN) $$t target/fuzz-corpus/$$t tests/fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
	    | grep -E '^(stat::|Done|==|SUMMARY|.*(panicked|crash|deadly))' || exit 1; \
	done

# make test's smoke: the committed corpus through every target as a stable `cargo test`, then
# FUZZ_SMOKE_SECONDS of real fuzzing per target. Replaying the corpus alone is not fuzzing: a
# target fails unless it ran at least FUZZ_SMOKE_MIN_RATE new inputs per second beyond the files
# libFuzzer loaded (its `seed corpus: files: N` line), i.e. mutated inputs, not the corpus again.
FUZZ_SMOKE_MIN_RATE ?= 2
fuzz-smoke: deps-fuzz ## replay the fuzz corpus, then fuzz each target for FUZZ_SMOKE_SECONDS (10)
	cargo test -q --manifest-path tests/fuzz/Cargo.toml
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; \
	  out=$$($(FUZZ_RUN) $$t target/fuzz-corpus/$$t tests/fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SMOKE_SECONDS) -timeout=10 -print_final_stats=1 2>&1) \
	    || { echo "$$out" | tail -40; echo "fuzz-smoke: $$t FAILED" >&2; exit 1; }; \
	  runs=$$(echo "$$out" | sed -n 's/^stat::number_of_executed_units: *//p'); \
	  files=$$(echo "$$out" | sed -n 's/^INFO: seed corpus: files: \([0-9]*\).*/\1/p' | head -1); \
	  new=$$(( $${runs:-0} - $${files:-0} )); \
	  want=$$(( $(FUZZ_SMOKE_MIN_RATE) * $(FUZZ_SMOKE_SECONDS) )); \
	  [ -n "$$files" ] && [ "$$new" -ge "$$want" ] || { echo "$$out" | tail -20; \
	    echo "fuzz-smoke: $$t ran $$new inputs beyond its corpus of $${files:-?} files, fewer than $$want" >&2; exit 1; }; \
	  echo "fuzz-smoke: $$t: $$runs executions ($$files corpus files, $$new new inputs, $$(( new / $(FUZZ_SMOKE_SECONDS) ))/s) in $(FUZZ_SMOKE_SECONDS)s, no crash"; \
	done

# The fuzz target `module` (tests/fuzz/fuzz_targets/module.rs): the built module in the
# proxy-wasm host of tests/module-host. It needs wasmtime (feature `module`, about 12 CPU-minutes
# to build with coverage instrumentation), so it is not in FUZZ_TARGETS: the other targets and
# make test's fuzz smoke build without it; make module-test replays its seeds.
fuzz-module: deps-fuzz build ## fuzz the compiled module (target `module`) for FUZZ_SECONDS (600)
	@mkdir -p target/fuzz-corpus/module; echo "fuzz: module for $(FUZZ_SECONDS)s"
	@STS_GATEWAY_WASM=$(CURDIR)/$(WASM) \
	  cargo +nightly fuzz run --fuzz-dir tests/fuzz --features module -O -a -s none module \
	    target/fuzz-corpus/module tests/fuzz/corpus/module -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
	  | grep -E '^(stat::|Done|==|SUMMARY|.*(panicked|crash|deadly|trapped|module log))'

# Load: LOAD_REQUESTS mints over LOAD_CONNECTIONS keep-alive connections on the test stack, with two
# JWKS key rotations (at 30 % and 65 % of the requests); summary in target/load/summary.json.
LOAD_REQUESTS ?= 20000
LOAD_CONNECTIONS ?= 64
load: deps build ## LOAD_REQUESTS mints (20000) with two JWKS key rotations on the test stack
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV_PY) tests/load/load.py --requests $(LOAD_REQUESTS) --connections $(LOAD_CONNECTIONS) \
	  --max-seconds 300 --json target/load/summary.json

load-short: deps build ## the same with 2000 mints (part of make test)
	@trap '$(VENV_PY) tests/stack/stack.py --test down >/dev/null 2>&1 || true' EXIT; \
	$(VENV_PY) tests/load/load.py --requests 2000 --connections 64 --max-seconds 60 \
	  --json target/load/summary-short.json

clean: down ## stop both stacks, remove their state and the built module
	@$(if $(wildcard $(VENV_PY)),$(VENV_PY),python3) tests/stack/stack.py --test down
	rm -rf target/stack target/test-stack $(WASM)
