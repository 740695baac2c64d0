//! Callout answers: a JWKS fetch's keys, and an STS call's answer to its request and to every
//! request waiting for it (the reuse store keeps it too).

use crate::error::Error;
use crate::gateway::flow::StsAnswer;
use crate::gateway::lifecycle::{count, end, Call, Gateway};
use crate::gateway::route::Endpoint;
use crate::host::metrics::Metric;
use crate::host::{CalloutToken, ContextId, Host};
use crate::sts::response::{AssumedCredentials, MAX_BODY_BYTES};

impl Gateway {
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
    pub(super) fn waiting_done(&mut self, token: CalloutToken, call: &Call) {
        if let Some(key) = call.reuse_key {
            if self.minting.get(&key) == Some(&token) {
                self.minting.remove(&key);
            }
        }
    }

    pub(super) fn keys_answer<H: Host>(
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

    pub(super) fn sts_done<H: Host>(&mut self, host: &mut H, call: Call, answer: StsAnswer<'_>) {
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
    pub(super) fn answer_one<H: Host>(
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
