//! The proxy-wasm adapter (cargo feature `envoy`).
mod filter;
