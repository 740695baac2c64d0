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
pub mod authorize;
pub mod config;
pub mod credentials;
#[cfg(test)]
mod credentials_endpoint_tests;
pub mod error;
pub mod extract;
pub mod fifo;
pub mod flow;
pub mod host;
pub mod jwks;
pub mod jwks_store;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_model;
#[cfg(test)]
mod lifecycle_tests;
pub mod metrics;
pub mod parking;
pub mod reuse;
pub mod route;
mod rsa_math;
pub mod rsa_sig;
pub mod session;
pub mod sigv4;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod sts_request;
pub mod sts_response;
pub mod token_cache;
pub mod verify;
pub mod vm_memory;

#[cfg(feature = "envoy")]
mod filter;
