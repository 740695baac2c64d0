//! Everything the filter needs from Envoy, behind one small trait, so the whole request
//! lifecycle ([`crate::gateway::lifecycle`]) runs natively in tests. The proxy-wasm adapter
//! (`filter.rs`, cargo feature `envoy`) is the only implementation that talks to a host.
pub mod metrics;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod vm_memory;
pub mod wire;

use crate::error::Reply;
use crate::host::metrics::Metric;
use crate::token::jwks_store::SharedStore;

/// Envoy's id of an HTTP stream's context.
pub type ContextId = u32;
/// Envoy's id of an HTTP callout, unique per VM.
pub type CalloutToken = u32;

/// An HTTP callout, ready for `dispatch_http_call`.
#[derive(Debug)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchError {
    /// Envoy refused the callout (unknown cluster, bad headers).
    Failed,
}

/// The host calls of one VM. Shared data comes with [`SharedStore`].
pub trait Host: SharedStore {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Sends `callout`. Envoy makes every callout on the root context, whichever context
    /// asks: it is not cancelled when a client leaves, and its answer always comes back,
    /// through [`crate::gateway::lifecycle::Gateway::on_callout_answer`] with the returned
    /// token (or the callout times out).
    fn dispatch(&mut self, callout: &Callout) -> Result<CalloutToken, DispatchError>;
    /// `:status` of the callout answer being handled (`None`: reset, no headers).
    fn answer_status(&self) -> Option<u16>;
    /// Body of the callout answer being handled, if it is at most `max` bytes.
    fn answer_body(&self, size: usize, max: usize) -> Option<Vec<u8>>;
    /// Sends a local reply on stream `ctx`; `false` when that stream is gone.
    fn reply(&mut self, ctx: ContextId, reply: &Reply) -> bool;
    /// Asks for the next [`crate::gateway::lifecycle::Gateway::on_tick`] within `ms` milliseconds
    /// (`None`: back to the regular period).
    fn tick_within(&mut self, ms: Option<u64>);
    fn metric(&mut self, m: Metric);
}
