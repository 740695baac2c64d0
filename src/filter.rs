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
use crate::flow::{Callout, CalloutResult, Step, StsCall, Worker};
use crate::jwks_store::SharedStore;
use crate::metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, ..Root::default() })
    });
}}

/// Short, because a tick also resumes requests parked while another request's JWKS refetch
/// runs, and retries a JWKS outage at start-up promptly; a tick costs two small shared-data
/// reads per source.
const TICK: Duration = Duration::from_millis(100);

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

/// One token request, wherever it waits: in its own http context, or parked with the root.
#[derive(Default)]
struct Request {
    id: u32,
    headers: Vec<(String, String)>,
    started_ms: u64,
    sts: Option<StsCall>,
}

impl Request {
    /// Distinct per request for the session-name suffix; no extra clock read.
    fn unique(&self) -> u64 {
        self.started_ms.wrapping_mul(1_000_003) ^ u64::from(self.id).rotate_left(40)
    }

    fn request_id(&self) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == "x-request-id")
            .map_or("-", |(_, v)| v.as_str())
    }
}

/// A request whose `kid` is unknown, waiting for a JWKS refetch in flight or for the next one
/// the refetch budget allows (the root runs it).
struct Parked {
    req: Request,
    generation: u64,
    deadline_ms: u64,
}

type ParkedList = Rc<RefCell<Vec<Parked>>>;

/// Bound on requests waiting for keys per worker: a flood of forged kids is refused at once
/// beyond it rather than held.
const MAX_PARKED: usize = 2048;

/// Where replies go: the current context, or (for requests the root resumes) the request's
/// own stream, made effective only for the reply so callouts stay the root's.
#[derive(Clone, Copy)]
enum Via {
    Own,
    Root(u32),
}

impl Via {
    fn reply(self, req: &Request, m: &Metrics, a: &Answer) {
        if let Via::Root(_) = self {
            if hostcalls::set_effective_context(req.id).is_err() {
                return; // the client is gone
            }
        }
        m.answered(a.reason);
        let headers: Vec<(&str, &str)> = a.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let _ = hostcalls::send_http_response(a.status, headers, Some(&a.body));
        if let Via::Root(root) = self {
            let _ = hostcalls::set_effective_context(root);
        }
    }
}

/// What became of a step.
enum Next {
    Continue,
    Done,
    Sts(u32),
    Keys(Vec<(u32, usize)>),
    Park,
}

/// Carries out one step of `flow` for `req`.
fn act(w: &RefCell<Worker>, m: &Metrics, req: &mut Request, step: Step, via: Via) -> Next {
    match step {
        Step::Continue => Next::Continue,
        Step::Reply(answer) => {
            via.reply(req, m, &answer);
            Next::Done
        }
        Step::AwaitKeys => Next::Park,
        Step::FetchKeys(sources) => {
            let mut pending = Vec::new();
            {
                let mut wb = w.borrow_mut();
                for i in sources {
                    match wb.jwks_callout(i).as_ref().map(dispatch) {
                        Some(Ok(token)) => pending.push((token, i)),
                        _ => jwks_done(&mut wb, m, i, None, None),
                    }
                }
            }
            if !pending.is_empty() {
                return Next::Keys(pending);
            }
            let step =
                w.borrow_mut()
                    .mint(&HostShared, &req.headers, now_ms(), req.unique(), false);
            act(w, m, req, step, via)
        }
        Step::CallSts(call) => {
            let dispatched = dispatch(&call.callout);
            if dispatched.is_err() {
                log::error!(
                    "sts-gateway: cannot dispatch to RGW cluster {:?}",
                    call.callout.cluster
                );
            }
            req.sts = Some(call);
            match dispatched {
                Ok(token) => Next::Sts(token),
                Err(()) => {
                    finish_sts(w, m, req, CalloutResult::DispatchFailed, via);
                    Next::Done
                }
            }
        }
    }
}

/// The RGW callout's outcome, read in the callback of the context that made it.
fn callout_result(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = if num_headers == 0 {
        None
    } else {
        status_of_callout()
    };
    let body = match status {
        Some(_) => callout_body(body_size, crate::sts_response::MAX_BODY_BYTES).unwrap_or_default(),
        None => Vec::new(),
    };
    (status, body)
}

fn finish_sts(
    w: &RefCell<Worker>,
    m: &Metrics,
    req: &Request,
    result: CalloutResult<'_>,
    via: Via,
) {
    let rgw_status = match &result {
        CalloutResult::Answered { status, .. } => Some(*status),
        _ => None,
    };
    let latency_ms = now_ms().saturating_sub(req.started_ms);
    m.rgw_answer(rgw_status, latency_ms);
    let outcome = w.borrow().sts_answered(result);
    let answer = match &outcome {
        Ok(a) => a.clone(),
        Err(e) => w.borrow().answer(e),
    };
    if let Some(call) = &req.sts {
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
            req.request_id()
        );
    }
    via.reply(req, m, &answer);
}

fn answered<'a>(status: Option<u16>, body: &'a [u8], body_size: usize) -> CalloutResult<'a> {
    match status {
        None => CalloutResult::Reset,
        Some(status) => CalloutResult::Answered {
            status,
            body,
            body_size,
        },
    }
}

/// A JWKS callout answered (in the callback of the context that made it).
fn jwks_answered(w: &RefCell<Worker>, m: &Metrics, i: usize, body_size: usize) {
    let mut w = w.borrow_mut();
    let body = callout_body(body_size, w.jwks_max_bytes(i));
    jwks_done(&mut w, m, i, status_of_callout(), body.as_deref());
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

#[derive(Default)]
struct Root {
    id: u32,
    worker: Option<Rc<RefCell<Worker>>>,
    metrics: Rc<Metrics>,
    /// In-flight JWKS fetches: callout token → source index.
    fetches: HashMap<u32, usize>,
    /// Requests waiting for keys another request is fetching (shared with the http contexts).
    parked: ParkedList,
    /// STS callouts the root made for resumed requests: callout token → request.
    resumed: HashMap<u32, Request>,
    /// Gauge of this VM's linear memory, for capacity planning (`make bench` reports it).
    vm_memory: Option<u32>,
}

impl Root {
    fn refresh(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let mut w = worker.borrow_mut();
        w.sync_keys(&HostShared);
        let now = now_ms();
        let mut claimed = w.claim_due_fetches(&HostShared, now);
        // Parked requests wait for keys: refetch as soon as the budget allows.
        if !self.parked.borrow().is_empty() {
            claimed.extend(w.claim_refetches(&HostShared, now));
        }
        for i in claimed {
            match w.jwks_callout(i).as_ref().map(dispatch) {
                Some(Ok(token)) => {
                    self.fetches.insert(token, i);
                }
                _ => jwks_done(&mut w, &self.metrics, i, None, None),
            }
        }
    }

    /// Resumes parked requests once the keys changed or their wait ran out.
    fn resume_parked(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let now = now_ms();
        let generation = worker.borrow().keys_generation();
        let due: Vec<Parked> = {
            let mut parked = self.parked.borrow_mut();
            let (due, waiting) = parked
                .drain(..)
                .partition(|p| p.generation != generation || now >= p.deadline_ms);
            *parked = waiting;
            due
        };
        for p in due {
            let mut req = p.req;
            let step =
                worker
                    .borrow_mut()
                    .mint(&HostShared, &req.headers, now, req.unique(), false);
            if let Next::Sts(token) =
                act(&worker, &self.metrics, &mut req, step, Via::Root(self.id))
            {
                self.resumed.insert(token, req);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        if let Some(i) = self.fetches.remove(&token) {
            jwks_answered(&worker, &self.metrics, i, body_size);
            self.resume_parked();
        } else if let Some(req) = self.resumed.remove(&token) {
            let (status, body) = callout_result(num_headers, body_size);
            let result = answered(status, &body, body_size);
            finish_sts(&worker, &self.metrics, &req, result, Via::Root(self.id));
        }
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
        self.resume_parked();
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
            config,
            worker,
            metrics: self.metrics.clone(),
            parked: self.parked.clone(),
            req: Request {
                id,
                ..Request::default()
            },
            key_fetches: HashMap::new(),
            sts_token: None,
        }))
    }
}

struct Http {
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<Metrics>,
    parked: ParkedList,
    req: Request,
    /// Unknown-`kid` refetches this request waits for: callout token → source index.
    key_fetches: HashMap<u32, usize>,
    sts_token: Option<u32>,
}

impl Http {
    fn handle(&mut self, step: Step) -> Action {
        match act(&self.worker, &self.metrics, &mut self.req, step, Via::Own) {
            Next::Continue => Action::Continue,
            Next::Done => Action::Pause,
            Next::Sts(token) => {
                self.sts_token = Some(token);
                Action::Pause
            }
            Next::Keys(pending) => {
                self.key_fetches.extend(pending);
                Action::Pause
            }
            Next::Park if self.parked.borrow().len() >= MAX_PARKED => {
                let answer = self.worker.borrow().answer(&Error::InvalidToken(
                    "signing key (kid) not published by the issuer",
                ));
                Via::Own.reply(&self.req, &self.metrics, &answer);
                Action::Pause
            }
            Next::Park => {
                let w = self.worker.borrow();
                let req = std::mem::take(&mut self.req);
                self.parked.borrow_mut().push(Parked {
                    generation: w.keys_generation(),
                    deadline_ms: req.started_ms.saturating_add(w.max_wait_ms()),
                    req,
                });
                Action::Pause
            }
        }
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
            jwks_answered(&self.worker, &self.metrics, i, body_size);
            if self.key_fetches.is_empty() {
                let step = self.worker.borrow_mut().mint(
                    &HostShared,
                    &self.req.headers,
                    now_ms(),
                    self.req.unique(),
                    false,
                );
                if let Action::Continue = self.handle(step) {
                    self.resume_http_request();
                }
            }
        } else if self.sts_token == Some(token) {
            let (status, body) = callout_result(num_headers, body_size);
            let result = answered(status, &body, body_size);
            finish_sts(&self.worker, &self.metrics, &self.req, result, Via::Own);
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Fast path: requests outside the prefix cost one header read.
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if !path.starts_with(&self.config.prefix) {
            return Action::Continue;
        }
        self.req.started_ms = now_ms();
        self.req.headers = self.get_http_request_headers();
        let step = self.worker.borrow_mut().on_request(
            &HostShared,
            &self.req.headers,
            self.req.started_ms,
            self.req.unique(),
        );
        self.handle(step)
    }
}
