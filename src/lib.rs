//! sts-gateway: a proxy-wasm filter that mints temporary Ceph RGW S3 credentials.
//!
//! Data flow, one module per step:
//! request (`route`) → extract token (`extract`) → verify (`jwks`, `verify`, `token_cache`) →
//! authorize (`authorize`) → STS request (`session`, `sigv4`, `sts_request`) → callout
//! (`filter`) → parse (`sts_response`) → response (`credentials`, `error`).
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
pub mod error;
pub mod extract;
pub mod flow;
pub mod jwks;
pub mod jwks_store;
pub mod route;
pub mod session;
pub mod sigv4;
pub mod sts_request;
pub mod sts_response;
pub mod token_cache;
pub mod verify;

mod filter;
mod metrics;
