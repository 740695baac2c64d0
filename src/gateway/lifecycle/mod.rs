//! The life of one request, from its headers to its reply, and what a worker VM keeps between
//! requests. Free of proxy-wasm: Envoy is reached only through [`Host`], so every transition
//! below is unit- and property-tested natively (`tests/` of this module and `lifecycle_model`).
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

use crate::config::Config;
use crate::error::{Error, Reply};
use crate::gateway::flow::{Step, StsAnswer, StsCall, Wait, Worker};
use crate::gateway::parking::{Ask, Limits, Parking};
use crate::gateway::request::ask_of;
use crate::gateway::reuse::ReuseStore;
use crate::gateway::route::{route, Endpoint, Route};
use crate::host::metrics::Metric;
use crate::host::vm_memory;
use crate::host::{Callout, CalloutToken, ContextId, DispatchError, Host};
use crate::sts::response::{AssumedCredentials, MAX_BODY_BYTES};
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

    /// A request's headers (pseudo-headers included, names lower-case).
    pub fn on_request<H: Host>(
        &mut self,
        host: &mut H,
        ctx: ContextId,
        headers: &[(String, String)],
    ) -> Action {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let reply = match route(&self.config().prefix, get(":method"), get(":path")) {
            Route::PassThrough => return Action::Continue,
            Route::Healthz => Reply {
                status: 200,
                reason: "healthz",
                headers: vec![("content-type", "application/json".into())],
                body: HEALTHZ_BODY.to_vec(),
            },
            Route::NotFound => self.worker.reply(&Error::NotFound),
            Route::MethodNotAllowed { allow } => {
                self.worker.reply(&Error::MethodNotAllowed { allow })
            }
            Route::Token => return self.start(host, ctx, headers, Endpoint::Token),
            Route::Credentials => return self.start(host, ctx, headers, Endpoint::Credentials),
        };
        end(host, ctx, &reply, None);
        Action::Pause
    }

    /// A minting request (either endpoint): what it asks for, then its first verification.
    fn start<H: Host>(
        &mut self,
        host: &mut H,
        ctx: ContextId,
        headers: &[(String, String)],
        endpoint: Endpoint,
    ) -> Action {
        match ask_of(headers, self.config().max_token_bytes, endpoint) {
            Ok(ask) => {
                // The request's one clock read.
                let now = host.now_ms();
                self.verify(host, ctx, ask, now, now, Wait::Allowed);
            }
            Err(e) => {
                let reply = self.worker.reply(&e);
                end(host, ctx, &reply, Some(endpoint));
            }
        }
        Action::Pause
    }

    /// One verification pass of a token request, and the phase it leads to.
    fn verify<H: Host>(
        &mut self,
        host: &mut H,
        ctx: ContextId,
        ask: Ask,
        started_ms: u64,
        now: u64,
        wait: Wait,
    ) {
        self.verifications += 1;
        let endpoint = ask.endpoint;
        let unique = started_ms.wrapping_mul(1_000_003) ^ u64::from(ctx).rotate_left(40);
        match self.worker.mint(&*host, &ask, now, unique, wait) {
            Step::Reply(reply) => {
                end(host, ctx, &reply, Some(ask.endpoint));
            }
            Step::AwaitKeys => {
                let generation = self.worker.keys_generation();
                let deadline = now.saturating_add(self.worker.max_wait_ms());
                if self
                    .parking
                    .park(ctx, ask, generation, started_ms, deadline)
                    .is_err()
                {
                    // Full: a flood of unknown kids is refused rather than held.
                    let reply = self.worker.reply(&Error::InvalidToken(
                        "signing key (kid) not published by the issuer",
                    ));
                    end(host, ctx, &reply, Some(endpoint));
                    return;
                }
                host.metric(Metric::Parked(self.parking.len() as u64));
                // The root claims the refetch on its next tick: make that one now.
                self.tick_fast(host, true);
            }
            Step::CallSts(call) => self.call_sts(host, ctx, call, &ask, started_ms, now),
        }
    }

    fn call_sts<H: Host>(
        &mut self,
        host: &mut H,
        ctx: ContextId,
        call: StsCall,
        ask: &Ask,
        started_ms: u64,
        now: u64,
    ) {
        if call.unshared {
            host.metric(Metric::ReuseNoSubject);
        }
        if let (Some(store), Some(key)) = (self.reuse.as_mut(), call.reuse_key) {
            if let Some(creds) = store.get(&key, now) {
                self.answer_one(
                    host,
                    Some(ctx),
                    ask.endpoint,
                    &call.caller,
                    &call.session,
                    call.tenant.as_deref(),
                    &ask.request_id,
                    started_ms,
                    None,
                    &Ok(creds),
                    "reused",
                    now,
                );
                return;
            }
            if let Some(waiting) = self.minting.get(&key).and_then(|t| self.calls.get_mut(t)) {
                // Bounded: each waiter's reply is sent from one VM call (see RESUME_PER_CALL).
                if waiting.waiters.len() < RESUME_PER_CALL {
                    waiting.waiters.push(Waiter {
                        ctx,
                        request_id: ask.request_id.clone(),
                        started_ms,
                        endpoint: ask.endpoint,
                    });
                    if let Some(token) = self.minting.get(&key) {
                        self.call_of.insert(ctx, *token);
                    }
                    return;
                }
            }
        }
        if self.calls.len() >= MAX_CALLS_IN_FLIGHT {
            let reply = self.worker.reply(&Error::RgwUnavailable);
            end(host, ctx, &reply, Some(ask.endpoint));
            return;
        }
        // Only now, with RGW really called, is the request signed.
        let callout = self.worker.sts_callout(&call, now / 1000);
        #[cfg(test)]
        {
            self.last_sts_body =
                String::from_utf8_lossy(callout.body.as_deref().unwrap_or_default()).into();
            self.sts_signed += 1;
        }
        let entry = Call {
            ctx,
            owner_gone: false,
            caller: call.caller,
            session: call.session,
            tenant: call.tenant,
            request_id: ask.request_id.clone(),
            endpoint: ask.endpoint,
            started_ms,
            dispatched_ms: now,
            deadline_ms: now
                .saturating_add(callout.timeout_ms)
                .saturating_add(CALLOUT_SLACK_MS),
            reuse_key: call.reuse_key,
            waiters: Vec::new(),
        };
        self.dispatch_sts(host, entry, callout);
    }

    /// Sends `entry`'s STS callout (the root's: it outlives the client).
    fn dispatch_sts<H: Host>(&mut self, host: &mut H, entry: Call, callout: Callout) {
        match host.dispatch(&callout) {
            Ok(token) => {
                self.call_of.insert(entry.ctx, token);
                if let Some(key) = entry.reuse_key {
                    self.minting.entry(key).or_insert(token);
                }
                self.calls.insert(token, entry);
            }
            Err(DispatchError::Failed) => {
                log::error!(
                    "sts-gateway: cannot dispatch to RGW cluster {:?}",
                    callout.cluster
                );
                self.sts_done(host, entry, StsAnswer::DispatchFailed);
            }
        }
    }

    /// A callout's answer arrived (in whichever context Envoy delivered it).
    pub fn on_callout_answer<H: Host>(
        &mut self,
        host: &mut H,
        token: CalloutToken,
        num_headers: usize,
        body_size: usize,
    ) {
        let status = if num_headers == 0 {
            None
        } else {
            host.answer_status()
        };
        if let Some(fetch) = self.fetches.remove(&token) {
            let max = self.worker.jwks_max_bytes(fetch.source);
            let body = status.and_then(|_| host.answer_body(body_size, max));
            self.keys_answer(host, fetch.source, status, body.as_deref());
            self.resume(host);
        } else if let Some(call) = self.calls.remove(&token) {
            if !call.owner_gone {
                self.call_of.remove(&call.ctx);
            }
            self.waiting_done(token, &call);
            let body = match status {
                Some(_) => host.answer_body(body_size, MAX_BODY_BYTES),
                None => None,
            };
            let answer = match status {
                None => StsAnswer::Reset,
                Some(status) => StsAnswer::Answered {
                    status,
                    body: body.as_deref().unwrap_or_default(),
                    body_size,
                },
            };
            self.sts_done(host, call, answer);
        }
    }

    /// `token`'s call ends: it no longer collects waiters.
    fn waiting_done(&mut self, token: CalloutToken, call: &Call) {
        if let Some(key) = call.reuse_key {
            if self.minting.get(&key) == Some(&token) {
                self.minting.remove(&key);
            }
        }
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

    /// The root context's timer: keys from other VMs, due fetches, parked requests.
    pub fn on_tick<H: Host>(&mut self, host: &mut H, vm_memory_bytes: u64) {
        let now = host.now_ms();
        self.worker.sync_keys(&*host);
        let mut claimed = self.worker.claim_due_fetches(&*host, now);
        if !self.parking.is_empty() {
            for i in self.worker.claim_refetches(&*host, now) {
                if !claimed.contains(&i) {
                    claimed.push(i);
                }
            }
        }
        for i in claimed {
            let Some(callout) = self.worker.jwks_callout(i) else {
                continue;
            };
            match host.dispatch(&callout) {
                Ok(token) => {
                    let deadline_ms = now
                        .saturating_add(callout.timeout_ms)
                        .saturating_add(CALLOUT_SLACK_MS);
                    self.fetches.insert(
                        token,
                        Fetch {
                            source: i,
                            deadline_ms,
                        },
                    );
                }
                Err(_) => self.keys_answer(host, i, None, None),
            }
        }
        let more_late = self.expire(host, now);
        self.resume(host);
        if more_late {
            self.tick_fast(host, true);
        }
        host.metric(Metric::Parked(self.parking.len() as u64));
        if let Some(max) = vm_memory::report(host, self.worker.vm_id(), vm_memory_bytes, now) {
            host.metric(Metric::VmMemoryBytes(max));
        }
    }

    /// Drops callouts whose answer never came (Envoy enforces their timeouts, so this is a
    /// backstop that keeps the maps bounded whatever the host does). Answers at most about
    /// [`RESUME_PER_CALL`] requests per call (oldest deadline first); `true` if late calls
    /// remain for the next tick.
    fn expire<H: Host>(&mut self, host: &mut H, now: u64) -> bool {
        let late: Vec<CalloutToken> = self
            .fetches
            .iter()
            .filter(|(_, f)| now >= f.deadline_ms)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(f) = self.fetches.remove(&token) {
                self.keys_answer(host, f.source, None, None);
            }
        }
        let mut late: Vec<(u64, CalloutToken)> = self
            .calls
            .iter()
            .filter(|(_, c)| now >= c.deadline_ms)
            .map(|(t, c)| (c.deadline_ms, *t))
            .collect();
        late.sort_unstable();
        let mut answered = 0usize;
        let mut left = late.len();
        for (_, token) in late {
            // One call's replies (its owner and up to 32 waiters) always fit; more only while
            // the batch stays within that.
            let cost = self.calls.get(&token).map_or(0, |c| 1 + c.waiters.len());
            if answered > 0 && answered + cost > RESUME_PER_CALL + 1 {
                break;
            }
            left -= 1;
            if let Some(call) = self.calls.remove(&token) {
                answered += cost;
                if !call.owner_gone {
                    self.call_of.remove(&call.ctx);
                }
                self.waiting_done(token, &call);
                let timeout = StsAnswer::Answered {
                    status: 504,
                    body: b"",
                    body_size: 0,
                };
                self.sts_done(host, call, timeout);
            }
        }
        left > 0
    }

    fn keys_answer<H: Host>(
        &mut self,
        host: &mut H,
        source: usize,
        status: Option<u16>,
        body: Option<&[u8]>,
    ) {
        let now = host.now_ms();
        match self.worker.jwks_fetched(&*host, source, status, body, now) {
            Ok(keys) => {
                host.metric(Metric::JwksFetch { ok: true });
                log::info!("sts-gateway: JWKS source {source} fetched: {keys} signing key(s)");
            }
            Err(reason) => {
                host.metric(Metric::JwksFetch { ok: false });
                let status = status.map_or("none".to_string(), |s| s.to_string());
                log::warn!("sts-gateway: JWKS source {source} fetch failed (status {status}): {reason}; keeping the last good keys");
            }
        }
    }

    /// Verifies again, oldest first, parked requests whose keys changed or whose wait ended:
    /// at most [`RESUME_PER_CALL`] per call, the rest on the next (fast) tick.
    fn resume<H: Host>(&mut self, host: &mut H) {
        let now = host.now_ms();
        let generation = self.worker.keys_generation();
        for due in self.parking.take_due(now, generation, RESUME_PER_CALL) {
            let wait = Wait::Over {
                keys_changed: due.generation != generation,
            };
            self.verify(host, due.ctx, due.ask, due.started_ms, now, wait);
        }
        let more = self.parking.any_due(now, self.worker.keys_generation());
        self.tick_fast(host, more);
    }

    fn tick_fast<H: Host>(&mut self, host: &mut H, fast: bool) {
        if fast != self.fast_tick {
            self.fast_tick = fast;
            host.tick_within(fast.then_some(FAST_TICK_MS));
        }
    }

    fn sts_done<H: Host>(&mut self, host: &mut H, call: Call, answer: StsAnswer<'_>) {
        let rgw_status = match &answer {
            StsAnswer::Answered { status, .. } => Some(*status),
            _ => None,
        };
        let now = host.now_ms();
        host.metric(Metric::RgwAnswer { status: rgw_status });
        host.metric(Metric::RgwLatencyMs(now.saturating_sub(call.started_ms)));
        let creds = self.worker.sts_credentials(answer);
        if let (Ok(c), Some(store), Some(key)) = (&creds, self.reuse.as_mut(), call.reuse_key) {
            let lifetime_ms = u64::from(self.worker.config.rgw.duration_seconds) * 1000;
            store.put(
                key,
                c.clone(),
                call.dispatched_ms.saturating_add(lifetime_ms),
            );
        }
        self.answer_one(
            host,
            (!call.owner_gone).then_some(call.ctx),
            call.endpoint,
            &call.caller,
            &call.session,
            call.tenant.as_deref(),
            &call.request_id,
            call.started_ms,
            rgw_status,
            &creds,
            "minted",
            now,
        );
        for w in &call.waiters {
            self.call_of.remove(&w.ctx);
            self.answer_one(
                host,
                Some(w.ctx),
                w.endpoint,
                &call.caller,
                &call.session,
                call.tenant.as_deref(),
                &w.request_id,
                w.started_ms,
                rgw_status,
                &creds,
                "coalesced",
                now,
            );
        }
    }

    /// Replies to one request with `creds` in the format of the `endpoint` it came through (a
    /// success counts as `success`) and logs its mint line. `ctx` is `None` when the client
    /// left while RGW minted: nothing is sent, the line says `client_gone`.
    #[allow(clippy::too_many_arguments)]
    fn answer_one<H: Host>(
        &self,
        host: &mut H,
        ctx: Option<ContextId>,
        endpoint: Endpoint,
        caller: &str,
        session: &str,
        tenant: Option<&str>,
        request_id: &str,
        started_ms: u64,
        rgw_status: Option<u16>,
        creds: &Result<AssumedCredentials, Error>,
        success: &'static str,
        now: u64,
    ) {
        let outcome = creds
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| self.worker.credentials_reply_for(endpoint, c));
        // The rendered reply is this request's own: no copy on the hot path.
        let (reply, failure) = match outcome {
            Ok(mut r) => {
                r.reason = success;
                (r, None)
            }
            Err(e) => (self.worker.reply(&e), Some(e.reason())),
        };
        let delivered = match ctx {
            Some(ctx) => end(host, ctx, &reply, Some(endpoint)),
            None => {
                count(host, "client_gone", Some(endpoint));
                false
            }
        };
        let reason = match (failure, delivered) {
            (_, false) => "client_gone",
            (None, true) => success,
            (Some(r), true) => r,
        };
        log::info!(
            "sts-gateway: mint caller={:?} session={} tenant={} status={} outcome={} rgw_status={} latency_ms={} request_id={:?} route={}",
            caller,
            session,
            tenant.unwrap_or("-"),
            reply.status,
            reason,
            rgw_status.map_or("-".to_string(), |s| s.to_string()),
            now.saturating_sub(started_ms),
            request_id,
            endpoint.as_str()
        );
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
fn end<H: Host>(host: &mut H, ctx: ContextId, reply: &Reply, endpoint: Option<Endpoint>) -> bool {
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
fn count<H: Host>(host: &mut H, reason: &'static str, endpoint: Option<Endpoint>) {
    host.metric(Metric::Ended(reason));
    if endpoint == Some(Endpoint::Credentials) {
        host.metric(Metric::CredentialsEnded(reason));
    }
}
