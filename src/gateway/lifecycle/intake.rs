//! Request intake: a request's headers, one verification pass, and the STS call it leads to
//! (or the reuse store's answer, or a wait on a call in flight for the same caller).

use crate::error::{Error, Reply};
use crate::gateway::flow::{Step, StsAnswer, StsCall, Wait};
use crate::gateway::lifecycle::{
    end, Action, Call, Gateway, Waiter, CALLOUT_SLACK_MS, HEALTHZ_BODY, MAX_CALLS_IN_FLIGHT,
    RESUME_PER_CALL,
};
use crate::gateway::parking::Ask;
use crate::gateway::request::ask_of;
use crate::gateway::route::{route, Endpoint, Route};
use crate::host::metrics::Metric;
use crate::host::{Callout, ContextId, DispatchError, Host};

impl Gateway {
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
    pub(super) fn start<H: Host>(
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
    pub(super) fn verify<H: Host>(
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
            Step::AwaitKeys { source } => {
                let version = self.worker.keys_versions().get(source).copied();
                let deadline = now.saturating_add(self.worker.max_wait_ms());
                let parked = version.is_some_and(|v| {
                    self.parking
                        .park(ctx, ask, (source, v), started_ms, deadline)
                        .is_ok()
                });
                if !parked {
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

    pub(super) fn call_sts<H: Host>(
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
    pub(super) fn dispatch_sts<H: Host>(&mut self, host: &mut H, entry: Call, callout: Callout) {
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
}
