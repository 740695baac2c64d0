//! The bearer token: extraction from the request, the issuers' keys (JWKS) in shared data,
//! verification, and the cache of verified tokens.
pub mod cache;
pub mod extract;
pub mod jwks;
pub mod jwks_store;
pub mod verify;

/// What every later step reads of a verified token.
pub use crate::crypto::jws::Claims;
