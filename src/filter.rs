//! proxy-wasm glue: moves headers, callouts and shared data between Envoy and [`crate::flow`].
//! Nothing here decides anything; every branch of the request path lives in `flow`.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::Config;
use crate::error::{Answer, Error};
use crate::flow::{Callout, CalloutResult, Step, Worker};
use crate::jwks_store::SharedStore;
use crate::metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Short enough that a JWKS outage at start-up is retried promptly; a tick costs one
/// small shared-data read per source.
const TICK: Duration = Duration::from_millis(500);

struct HostShared;

impl SharedStore for HostShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn dispatch(c: &Callout) -> Result<u32, ()> {
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    hostcalls::dispatch_http_call(
        &c.cluster,
        headers,
        c.body.as_deref(),
        vec![],
        Duration::from_millis(c.timeout_ms),
    )
    .map_err(|_| ())
}

fn status_of_callout() -> Option<u16> {
    hostcalls::get_map_value(
        proxy_wasm::types::MapType::HttpCallResponseHeaders,
        ":status",
    )
    .ok()
    .flatten()
    .and_then(|s| s.parse().ok())
}

fn callout_body(size: usize, max: usize) -> Option<Vec<u8>> {
    if size > max {
        return None;
    }
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .map(Option::unwrap_or_default)
}

#[derive(Default)]
struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
    metrics: Rc<Metrics>,
    /// In-flight JWKS fetches: callout token → source index.
    fetches: HashMap<u32, usize>,
    /// Gauge of this VM's linear memory, for capacity planning (`make bench` reports it).
    vm_memory: Option<u32>,
}

fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

impl Root {
    fn refresh(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let mut w = worker.borrow_mut();
        w.sync_keys(&HostShared);
        for i in w.claim_due_fetches(&HostShared, now_ms()) {
            match w.jwks_callout(i).as_ref().map(dispatch) {
                Some(Ok(token)) => {
                    self.fetches.insert(token, i);
                }
                _ => jwks_done(&mut w, &self.metrics, i, None, None),
            }
        }
    }
}

fn jwks_done(w: &mut Worker, m: &Metrics, i: usize, status: Option<u16>, body: Option<&[u8]>) {
    match w.jwks_fetched(&HostShared, i, status, body, now_ms()) {
        Ok(keys) => {
            m.jwks_fetch(true);
            log::info!("sts-gateway: JWKS source {i} fetched: {keys} signing key(s)");
        }
        Err(reason) => {
            m.jwks_fetch(false);
            let status = status.map_or("none".to_string(), |s| s.to_string());
            log::warn!("sts-gateway: JWKS source {i} fetch failed (status {status}): {reason}; keeping the last good keys");
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        let Some(i) = self.fetches.remove(&token) else {
            return;
        };
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let mut w = worker.borrow_mut();
        let body = callout_body(body_size, w.jwks_max_bytes(i));
        jwks_done(
            &mut w,
            &self.metrics,
            i,
            status_of_callout(),
            body.as_deref(),
        );
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!(
                    "sts-gateway: configured: prefix {}, {} issuer(s), role {}",
                    config.prefix,
                    config.issuers.len(),
                    config.rgw.role_arn
                );
                self.worker = Some(Rc::new(RefCell::new(Worker::new(config))));
                self.metrics = Rc::new(Metrics::define());
                self.vm_memory = hostcalls::define_metric(
                    proxy_wasm::types::MetricType::Gauge,
                    "sts_gateway_vm_memory_bytes",
                )
                .ok();
                self.set_tick_period(TICK);
                true
            }
            Err(e) => {
                log::error!("sts-gateway: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.refresh();
        if let Some(id) = self.vm_memory {
            let _ = hostcalls::record_metric(id, vm_memory_bytes());
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        let config = worker.borrow().config.clone();
        Some(Box::new(Http {
            id,
            config,
            worker,
            metrics: self.metrics.clone(),
            headers: Vec::new(),
            key_fetches: HashMap::new(),
            sts: None,
            started_ms: 0,
        }))
    }
}

struct Http {
    id: u32,
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<Metrics>,
    headers: Vec<(String, String)>,
    /// Unknown-`kid` refetches this request waits for: callout token → source index.
    key_fetches: HashMap<u32, usize>,
    /// The STS callout in flight and what the access log says about it.
    sts: Option<(u32, crate::flow::StsCall)>,
    started_ms: u64,
}

impl Http {
    /// Distinct per request for the session-name suffix; no extra clock read.
    fn unique(&self) -> u64 {
        self.started_ms.wrapping_mul(1_000_003) ^ u64::from(self.id).rotate_left(40)
    }

    fn run(&mut self, step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Reply(answer) => {
                self.reply(&answer);
                Action::Pause
            }
            Step::FetchKeys(sources) => {
                let w = self.worker.clone();
                let mut w = w.borrow_mut();
                for i in sources {
                    match w.jwks_callout(i).as_ref().map(dispatch) {
                        Some(Ok(token)) => {
                            self.key_fetches.insert(token, i);
                        }
                        _ => jwks_done(&mut w, &self.metrics, i, None, None),
                    }
                }
                drop(w);
                if self.key_fetches.is_empty() {
                    return self.mint_again();
                }
                Action::Pause
            }
            Step::CallSts(call) => match dispatch(&call.callout) {
                Ok(token) => {
                    self.sts = Some((token, call));
                    Action::Pause
                }
                Err(()) => {
                    log::error!(
                        "sts-gateway: cannot dispatch to RGW cluster {:?}",
                        call.callout.cluster
                    );
                    self.sts = Some((0, call));
                    self.finish_sts(CalloutResult::DispatchFailed);
                    Action::Pause
                }
            },
        }
    }

    fn mint_again(&mut self) -> Action {
        let unique = self.unique();
        let step =
            self.worker
                .borrow_mut()
                .mint(&HostShared, &self.headers, now_ms(), unique, false);
        self.run(step)
    }

    fn reply(&mut self, answer: &Answer) {
        self.metrics.answered(answer.reason);
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        self.send_http_response(answer.status, headers, Some(&answer.body));
    }

    fn finish_sts(&mut self, result: CalloutResult<'_>) {
        let rgw_status = match &result {
            CalloutResult::Answered { status, .. } => Some(*status),
            _ => None,
        };
        let latency_ms = now_ms().saturating_sub(self.started_ms);
        self.metrics.rgw_answer(rgw_status, latency_ms);
        let outcome = self.worker.borrow().sts_answered(result);
        let answer = match &outcome {
            Ok(a) => a.clone(),
            Err(e) => self.worker.borrow().answer(e),
        };
        if let Some((_, call)) = &self.sts {
            let request_id = self
                .headers
                .iter()
                .find(|(n, _)| n == "x-request-id")
                .map_or("-", |(_, v)| v.as_str());
            let reason = outcome.as_ref().err().map_or("minted", Error::reason);
            log::info!(
                "sts-gateway: mint caller={:?} session={} tenant={} status={} outcome={} rgw_status={} latency_ms={} request_id={:?}",
                call.caller,
                call.session,
                call.tenant.as_deref().unwrap_or("-"),
                answer.status,
                reason,
                rgw_status.map_or("-".to_string(), |s| s.to_string()),
                latency_ms,
                request_id
            );
        }
        self.reply(&answer);
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if let Some(i) = self.key_fetches.remove(&token) {
            let w = self.worker.clone();
            let mut w = w.borrow_mut();
            let body = callout_body(body_size, w.jwks_max_bytes(i));
            jwks_done(
                &mut w,
                &self.metrics,
                i,
                status_of_callout(),
                body.as_deref(),
            );
            drop(w);
            if self.key_fetches.is_empty() {
                let action = self.mint_again();
                if matches!(action, Action::Continue) {
                    self.resume_http_request();
                }
            }
            return;
        }
        if !matches!(&self.sts, Some((t, _)) if *t == token) {
            return;
        }
        let status = status_of_callout();
        let result = match status {
            None if num_headers == 0 => CalloutResult::Reset,
            None => CalloutResult::Reset,
            Some(status) => {
                let body = callout_body(body_size, crate::sts_response::MAX_BODY_BYTES);
                let body = body.unwrap_or_default();
                return self.finish_sts(CalloutResult::Answered {
                    status,
                    body: &body,
                    body_size,
                });
            }
        };
        self.finish_sts(result);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Fast path: requests outside the prefix cost one header read.
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if !path.starts_with(&self.config.prefix) {
            return Action::Continue;
        }
        self.started_ms = now_ms();
        self.headers = self.get_http_request_headers();
        let unique = self.unique();
        let step = self.worker.borrow_mut().on_request(
            &HostShared,
            &self.headers,
            self.started_ms,
            unique,
        );
        self.run(step)
    }
}
