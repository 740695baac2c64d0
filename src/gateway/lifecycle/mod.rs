//! The life of one request, from its headers to its reply, and what a worker VM keeps between
//! requests. Free of proxy-wasm: Envoy is reached only through [`Host`], so every transition
//! below is unit- and property-tested natively (`tests.rs`, `credentials_endpoint_tests.rs` and the model-based `model.rs` of this folder).
//!
//! A token request is in exactly one phase at a time; the phase is where it is kept:
//!
//! ```text
//!            ┌──────────── reply (401/403/404/405/503…) ───────────────┐
//!  headers → verify ──── kid unknown, a fetch may publish it ──→ parked ─┤ keys changed or
//!            │                  (self.parking)                    │      │ wait over: verify
//!            │                                                    ▼      │ again, never parks twice
//!            └── verified + authorized → calling STS (self.calls) → reply 201 (token) or 200
//!                                                                  (credentials), 502/503/504
//!  client gone: removed from wherever it is. Its STS callout, if any, goes on (Envoy makes
//!  every callout on the root context): its answer still serves the requests that wait for
//!  it and the reuse store, and is counted, but no reply is sent.
//! ```
//!
//! Words: a *callout* is an HTTP call the filter makes (JWKS fetch or STS); its *answer* is what
//! came back; a *reply* is what the client gets; *keys* are a JWKS; a request *parks* while it
//! waits for keys and is *resumed* by the root context's tick or a fetch's answer.
use std::collections::HashMap;

mod answers;
#[cfg(test)]
mod credentials_endpoint_tests;
mod intake;
#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
pub(crate) mod tests;
mod tick;

use crate::config::Config;
use crate::error::Reply;
use crate::gateway::flow::Worker;
use crate::gateway::parking::{Limits, Parking};
use crate::gateway::reuse::ReuseStore;
use crate::gateway::route::Endpoint;
use crate::host::metrics::Metric;
use crate::host::{CalloutToken, ContextId, Host};
use crate::token::cache::TokenDigest;

/// At most this many parked requests are verified again in one call into the VM, and about
/// this many timed-out STS calls answered. Envoy sends each local reply made for another
/// stream after the VM call returns, and each reply's own VM callbacks nest one level deeper:
/// an unbounded batch overflowed V8's stack at ~600 replies. It also bounds the RSA work of
/// one call (about 0.1 ms each in V8 for RS256 with a 2048-bit key: docs/performance.md).
pub const RESUME_PER_CALL: usize = 32;

/// STS calls in flight per VM at most: a callout outlives its client, so clients that leave
/// at once must not pile up calls without bound. Past it, a request is answered 503.
pub const MAX_CALLS_IN_FLIGHT: usize = 1024;

/// Tick period while resumed requests are still due (the regular period is the adapter's).
pub const FAST_TICK_MS: u64 = 1;

/// How long past its own timeout a callout's bookkeeping is kept if no answer ever comes.
const CALLOUT_SLACK_MS: u64 = 5_000;

const HEALTHZ_BODY: &[u8] = b"{\"Status\": \"ok\"}";

/// What the adapter does with the stream after its request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not ours: the request continues untouched.
    Continue,
    /// Ours: the stream waits for our reply (sent now or later).
    Pause,
}

/// The phase of a live token request (answered and gone requests have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Parked,
    CallingSts,
}

/// A request whose STS callout is in flight.
struct Call {
    ctx: ContextId,
    /// The client of `ctx` left: the answer goes to the waiters and the reuse store only.
    owner_gone: bool,
    caller: String,
    session: String,
    tenant: Option<String>,
    request_id: String,
    endpoint: Endpoint,
    started_ms: u64,
    dispatched_ms: u64,
    deadline_ms: u64,
    /// Reuse on: who the credentials are for, and requests of the same caller waiting for
    /// this call.
    reuse_key: Option<TokenDigest>,
    waiters: Vec<Waiter>,
}

/// A request of the same caller that waits for another request's STS call (coalescing).
struct Waiter {
    ctx: ContextId,
    request_id: String,
    started_ms: u64,
    /// Its answer's format: waiters of one call may have come through either endpoint.
    endpoint: Endpoint,
}

/// A JWKS fetch in flight (always the root context's, so no client can cancel it).
struct Fetch {
    source: usize,
    deadline_ms: u64,
}

pub struct Gateway {
    pub worker: Worker,
    parking: Parking,
    calls: HashMap<CalloutToken, Call>,
    call_of: HashMap<ContextId, CalloutToken>,
    fetches: HashMap<CalloutToken, Fetch>,
    /// Opt-in reuse: stored credentials, and the call in flight per caller.
    reuse: Option<ReuseStore>,
    minting: HashMap<TokenDigest, CalloutToken>,
    fast_tick: bool,
    #[cfg(test)]
    last_sts_body: String,
    /// STS requests signed so far (tests: reused and coalesced answers sign none).
    #[cfg(test)]
    sts_signed: usize,
    /// Verification passes so far (the property tests bound them per call).
    verifications: u64,
}

impl Gateway {
    pub fn new(config: Config) -> Gateway {
        let limits = Limits {
            max_requests: config.parking.max_requests,
            max_bytes: config.parking.max_bytes,
        };
        let reuse = config
            .reuse
            .map(|r| ReuseStore::new(r.max_entries, r.min_remaining_seconds));
        Gateway {
            worker: Worker::new(config),
            parking: Parking::new(limits),
            calls: HashMap::new(),
            call_of: HashMap::new(),
            fetches: HashMap::new(),
            reuse,
            minting: HashMap::new(),
            fast_tick: false,
            #[cfg(test)]
            last_sts_body: String::new(),
            #[cfg(test)]
            sts_signed: 0,
            verifications: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.worker.config
    }

    pub fn phase(&self, ctx: ContextId) -> Option<Phase> {
        if self.call_of.contains_key(&ctx) {
            Some(Phase::CallingSts)
        } else if self.parking.contains(ctx) {
            Some(Phase::Parked)
        } else {
            None
        }
    }

    /// Sizes of everything kept between calls, for the property tests' bounds.
    pub fn usage(&self) -> Usage {
        let (cache_entries, cache_bytes) = self.worker.token_cache_usage();
        Usage {
            parked: self.parking.len(),
            parked_bytes: self.parking.bytes(),
            calls: self.calls.len(),
            call_index: self.call_of.len(),
            fetches: self.fetches.len(),
            absent_kids: self.worker.absent_kids(),
            cache_entries,
            cache_bytes,
            parking_consistent: self.parking.consistent(),
            waiters: self.calls.values().map(|c| c.waiters.len()).sum(),
            max_waiters: self
                .calls
                .values()
                .map(|c| c.waiters.len())
                .max()
                .unwrap_or(0),
            minting: self.minting.len(),
            owners_gone: self.calls.values().filter(|c| c.owner_gone).count(),
            reused_entries: self.reuse.as_ref().map_or(0, ReuseStore::len),
            verifications: self.verifications,
        }
    }

    #[cfg(test)]
    pub fn last_sts_body_for_tests(&self) -> String {
        self.last_sts_body.clone()
    }

    #[cfg(test)]
    pub fn sts_signed_for_tests(&self) -> usize {
        self.sts_signed
    }

    /// The client's stream ended (reset, or done after our reply): forget its request. An STS
    /// call it made goes on for its waiters and the reuse store; its answer is not sent.
    pub fn on_stream_end<H: Host>(&mut self, _host: &mut H, ctx: ContextId) {
        self.parking.leave(ctx);
        let Some(token) = self.call_of.remove(&ctx) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&token) {
            if call.ctx == ctx {
                call.owner_gone = true;
            } else {
                call.waiters.retain(|w| w.ctx != ctx);
            }
        }
    }
}

/// Sizes of what a VM keeps between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub parked: usize,
    pub parked_bytes: usize,
    pub calls: usize,
    pub call_index: usize,
    pub fetches: usize,
    pub absent_kids: usize,
    pub cache_entries: usize,
    pub cache_bytes: usize,
    pub parking_consistent: bool,
    pub waiters: usize,
    pub max_waiters: usize,
    pub minting: usize,
    /// Calls in flight whose client left.
    pub owners_gone: usize,
    pub reused_entries: usize,
    pub verifications: u64,
}

/// Sends the reply and counts how the request ended; `false` if the client had gone.
/// `endpoint`: the minting endpoint the request came through, if any.
pub(super) fn end<H: Host>(
    host: &mut H,
    ctx: ContextId,
    reply: &Reply,
    endpoint: Option<Endpoint>,
) -> bool {
    let delivered = host.reply(ctx, reply);
    let reason = if delivered {
        reply.reason
    } else {
        "client_gone"
    };
    count(host, reason, endpoint);
    delivered
}

/// Counts how a request ended: in `sts_gateway_requests_<reason>` always, and in
/// `sts_gateway_credentials_requests_<reason>` for the credentials endpoint.
pub(super) fn count<H: Host>(host: &mut H, reason: &'static str, endpoint: Option<Endpoint>) {
    host.metric(Metric::Ended(reason));
    if endpoint == Some(Endpoint::Credentials) {
        host.metric(Metric::CredentialsEnded(reason));
    }
}
