//! The proxy-wasm adapter (cargo feature `envoy`): turns Envoy's callbacks into calls of
//! [`crate::gateway::lifecycle::Gateway`] and implements [`Host`] with hostcalls. Nothing here decides
//! anything about a request.
//!
//! Context ownership matters with proxy-wasm-rust 0.2: the SDK routes a callout's answer to the
//! context whose callback made the call, and drops it if that context is gone. So JWKS fetches
//! are only dispatched from root callbacks (the tick), and an STS callout made for a resumed
//! request is attached to that request's stream (effective context) so Envoy cancels it when
//! the client leaves.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action as EnvoyAction, BufferType, ContextType, LogLevel, MapType, MetricType,
};

use crate::config::Config;
use crate::error::Reply;
use crate::gateway::lifecycle::{Action, Gateway};
use crate::host::metrics::{self, Kind, Metric};
use crate::host::{Callout, CalloutToken, ContextId, DispatchError, Host};
use crate::token::jwks_store::SharedStore;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, shared: None })
    });
}}

/// Regular tick: syncs keys other VMs fetched, runs due JWKS fetches, ends parked waits.
const TICK: Duration = Duration::from_millis(100);

/// What the root and its streams share.
struct Shared {
    gateway: RefCell<Gateway>,
    metric_ids: Vec<(Option<u32>, Kind)>,
    /// Streams that ended while the gateway was busy (a callback inside a hostcall).
    ended: RefCell<Vec<ContextId>>,
}

/// The host, as seen from the callback of context `current`.
struct Envoy<'a> {
    current: ContextId,
    root: ContextId,
    metric_ids: &'a [(Option<u32>, Kind)],
}

impl Envoy<'_> {
    /// Runs `f` with `ctx` as the effective context; `None` if that context is gone.
    fn as_context<T>(&self, ctx: ContextId, f: impl FnOnce() -> T) -> Option<T> {
        if ctx == self.current {
            return Some(f());
        }
        hostcalls::set_effective_context(ctx).ok()?;
        let out = f();
        let _ = hostcalls::set_effective_context(self.current);
        Some(out)
    }
}

impl SharedStore for Envoy<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

impl Host for Envoy<'_> {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn dispatch(
        &mut self,
        owner: Option<ContextId>,
        c: &Callout,
    ) -> Result<CalloutToken, DispatchError> {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let send = || {
            hostcalls::dispatch_http_call(
                &c.cluster,
                headers,
                c.body.as_deref(),
                vec![],
                Duration::from_millis(c.timeout_ms),
            )
        };
        self.as_context(owner.unwrap_or(self.root), send)
            .ok_or(DispatchError::StreamGone)?
            .map_err(|_| DispatchError::Failed)
    }

    fn answer_status(&self) -> Option<u16> {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
    }

    fn answer_body(&self, size: usize, max: usize) -> Option<Vec<u8>> {
        if size > max {
            return None;
        }
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .map(Option::unwrap_or_default)
    }

    fn reply(&mut self, ctx: ContextId, r: &Reply) -> bool {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.as_context(ctx, || {
            hostcalls::send_http_response(r.status, headers, Some(&r.body)).is_ok()
        })
        .unwrap_or(false)
    }

    fn tick_within(&mut self, ms: Option<u64>) {
        let period = ms.map_or(TICK, Duration::from_millis);
        // The root's timer, whichever context asks.
        self.as_context(self.root, || hostcalls::set_tick_period(period));
    }

    fn metric(&mut self, m: Metric) {
        let Some((index, value)) = m.index_and_value() else {
            return;
        };
        if let Some((Some(id), kind)) = self.metric_ids.get(index) {
            let _ = match kind {
                Kind::Counter => hostcalls::increment_metric(*id, value as i64),
                Kind::Gauge | Kind::Histogram => hostcalls::record_metric(*id, value),
            };
        }
    }
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

/// Runs `f` on the gateway with a host for context `current`; first forgets streams that
/// ended while it was busy. Never panics: a busy gateway (re-entrant callback) skips `f`.
fn with_gateway<T>(
    shared: &Shared,
    current: ContextId,
    root: ContextId,
    f: impl FnOnce(&mut Gateway, &mut Envoy<'_>) -> T,
) -> Option<T> {
    let mut gateway = shared.gateway.try_borrow_mut().ok()?;
    let mut host = Envoy {
        current,
        root,
        metric_ids: &shared.metric_ids,
    };
    if let Ok(mut ended) = shared.ended.try_borrow_mut() {
        for ctx in ended.drain(..) {
            gateway.on_stream_end(&mut host, ctx);
        }
    }
    Some(f(&mut gateway, &mut host))
}

struct Root {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        if let Some(shared) = &self.shared {
            with_gateway(shared, self.id, self.id, |g, h| {
                g.on_callout_answer(h, token, headers, body_size)
            });
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
                let metric_ids = metrics::all()
                    .into_iter()
                    .map(|(name, kind)| {
                        let t = match kind {
                            Kind::Counter => MetricType::Counter,
                            Kind::Gauge => MetricType::Gauge,
                            Kind::Histogram => MetricType::Histogram,
                        };
                        (hostcalls::define_metric(t, &name).ok(), kind)
                    })
                    .collect();
                // A new gateway: caches, parked requests and keys of the old config are gone.
                self.shared = Some(Rc::new(Shared {
                    gateway: RefCell::new(Gateway::new(config)),
                    metric_ids,
                    ended: RefCell::new(Vec::new()),
                }));
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
        if let Some(shared) = &self.shared {
            with_gateway(shared, self.id, self.id, |g, h| {
                g.on_tick(h, vm_memory_bytes())
            });
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id,
            root: self.id,
            shared: self.shared.clone()?,
            tracked: false,
        }))
    }
}

struct Http {
    id: u32,
    root: u32,
    shared: Rc<Shared>,
    /// Ours (a path under the prefix): the gateway may hold state for this stream.
    tracked: bool,
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        with_gateway(&self.shared, self.id, self.root, |g, h| {
            g.on_callout_answer(h, token, headers, body_size)
        });
    }

    fn on_done(&mut self) -> bool {
        if self.tracked {
            let done = with_gateway(&self.shared, self.id, self.root, |g, h| {
                g.on_stream_end(h, self.id)
            });
            if done.is_none() {
                if let Ok(mut ended) = self.shared.ended.try_borrow_mut() {
                    ended.push(self.id);
                }
            }
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> EnvoyAction {
        // Fast path: requests outside the prefix cost one header read.
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let prefix_matches = self
            .shared
            .gateway
            .try_borrow()
            .is_ok_and(|g| path.starts_with(&g.config().prefix));
        if !prefix_matches {
            return EnvoyAction::Continue;
        }
        #[cfg(feature = "crash-route")]
        crash_route(&path);
        self.tracked = true;
        let headers = self.get_http_request_headers();
        let action = with_gateway(&self.shared, self.id, self.root, |g, h| {
            g.on_request(h, self.id, &headers)
        });
        match action {
            Some(Action::Continue) => EnvoyAction::Continue,
            Some(Action::Pause) => EnvoyAction::Pause,
            None => {
                // Only if Envoy re-entered the VM mid-call: never leave the client hanging.
                let _ = hostcalls::send_http_response(503, vec![("retry-after", "1")], None);
                EnvoyAction::Pause
            }
        }
    }
}

/// Test builds only (`--features crash-route`, never in a release): lets the end-to-end tests
/// prove that a VM that really dies fails closed and is reloaded.
#[cfg(feature = "crash-route")]
#[allow(clippy::panic)]
fn crash_route(path: &str) {
    if path.ends_with("/__crash") {
        panic!("sts-gateway: crash-route requested");
    }
}
