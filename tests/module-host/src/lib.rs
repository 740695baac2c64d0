//! A test host for the released module `target/sts_gateway.wasm`: it runs the module in wasmtime
//! inside the test process and plays Envoy's part of the proxy-wasm ABI 0.2.1 (see `host` for
//! the imports and the sources they copy, `vm` for the order of calls).
//!
//! - [`vm::Vm`]: one VM; `request`, `tick`, `answer`, `leave` are the events Envoy delivers.
//! - [`fixtures`]: the configuration of envoy/envoy.yaml, an issuer key, tokens, answers.
//! - [`scenario`]: arbitrary event sequences and the property every run must satisfy (used by
//!   the proptest in `tests/` and the fuzz target `module` in tests/fuzz).
pub mod abi;
pub mod fixtures;
pub mod host;
pub mod scenario;
pub mod vm;
