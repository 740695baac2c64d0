//! sts-gateway: a proxy-wasm filter that mints temporary Ceph RGW S3 credentials.
//!
//! Data flow, one module per step:
//! request (`route`) → extract token (`extract`) → verify (`jwks`, `jwks_store`, `verify`,
//! `token_cache`) → authorize (`authorize`) → STS request (`session`, `sigv4`, `sts_request`) →
//! callout → parse (`sts_response`) → response (`credentials`, `error`).
//!
//! `flow` runs those steps for one pass; `lifecycle` carries a request through its phases
//! (parked while keys are fetched, calling STS, answered or gone) and owns all state kept
//! between calls (`parking`, the token cache, fetches in flight). Envoy is reached only through
//! `host::Host`; `filter` (feature `envoy`) is the proxy-wasm adapter.
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
