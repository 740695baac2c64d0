//! sts-gateway: a proxy-wasm filter that mints temporary Ceph RGW S3 credentials.
//!
//! One folder per layer, one module per step of the data flow:
//! request (`gateway::route`, `gateway::request`) → extract the token (`token::extract`) →
//! verify (`token::jwks`, `token::jwks_store`, `token::verify`, `token::cache`; signatures in
//! `crypto::jws`, `crypto::rsa_sig`, `crypto::ec_sig`) → authorize (`policy::authorize`,
//! `policy::scope`, as `policy::rules` states it) → STS request (`sts::session`, `sts::request`,
//! `crypto::sigv4`) → callout → parse (`sts::response`) → reply (`sts::credentials`, `error`).
//!
//! `gateway::flow` runs those steps for one pass; `gateway::lifecycle` carries a request through
//! its phases (parked while keys are fetched, calling STS, answered or gone) and owns all state
//! kept between calls (`gateway::parking`, `gateway::reuse`, the token cache, callouts in
//! flight). `config` reads and checks the plugin configuration once. Envoy is reached only
//! through `host::Host`; `adapter` (feature `envoy`) is the proxy-wasm ABI on top. No module
//! depends on itself through others (`tests/lint/module_cycles.py`, in `make lint`).
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
pub mod config;
pub mod crypto;
pub mod error;
pub mod fifo;
pub mod gateway;
pub mod host;
pub mod policy;
pub mod sts;
#[cfg(test)]
pub(crate) mod test_support;
pub mod token;

#[cfg(feature = "envoy")]
mod adapter;
