//! The proxy-wasm adapter (cargo feature `envoy`): Envoy's callbacks in (`exports`), hostcalls
//! out (`abi`, `envoy`), written on the ABI itself rather than on the proxy-wasm SDK, whose
//! accessors unwrap host data (a header that is not UTF-8 trapped the VM) and whose
//! dispatcher drops a callout's answer when the stream that made it has gone, although Envoy
//! makes every callout on the root context and delivers its answer there.
mod abi;
mod envoy;
mod exports;
mod logger;

/// Test builds only (`--features crash-route`, never in a release): lets the end-to-end tests
/// prove that a VM that really dies fails closed and is reloaded.
#[cfg(feature = "crash-route")]
#[allow(clippy::panic)]
fn crash_route(path: &[u8]) {
    if path.ends_with(b"/__crash") {
        panic!("sts-gateway: crash-route requested");
    }
}
