//! [`Host`] implemented with hostcalls, as seen from the callback of one context.
use std::time::Duration;

use crate::adapter::abi::{self, BufferType, MapType};
use crate::error::Reply;
use crate::host::metrics::{Kind, Metric};
use crate::host::{wire, Callout, CalloutToken, ContextId, DispatchError, Host};
use crate::token::jwks_store::SharedStore;

/// Regular tick: syncs keys other VMs fetched, runs due JWKS fetches, ends parked waits.
pub const TICK: Duration = Duration::from_millis(100);

pub struct Envoy<'a> {
    /// The context whose callback is running.
    pub current: ContextId,
    pub root: ContextId,
    pub metric_ids: &'a [(Option<u32>, Kind)],
}

impl Envoy<'_> {
    /// Runs `f` with `ctx` as the effective context; `None` if the host refuses (that stream
    /// is gone).
    fn as_context<T>(&self, ctx: ContextId, f: impl FnOnce() -> T) -> Option<T> {
        if ctx == self.current {
            return Some(f());
        }
        abi::set_effective_context(ctx).ok()?;
        let out = f();
        let _ = abi::set_effective_context(self.current);
        Some(out)
    }
}

impl SharedStore for Envoy<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        abi::shared_data(key).unwrap_or((None, None))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        abi::set_shared_data(key, value, cas).is_ok()
    }
}

impl Host for Envoy<'_> {
    fn now_ms(&self) -> u64 {
        abi::now_ns().map_or(0, |ns| ns / 1_000_000)
    }

    fn dispatch(&mut self, c: &Callout) -> Result<CalloutToken, DispatchError> {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        // Envoy makes every callout on the root context whichever context asks
        // (proxy-wasm-cpp-host `http_call`): it outlives the client, and its answer comes
        // back to the root.
        abi::http_call(
            &c.cluster,
            &headers,
            c.body.as_deref().unwrap_or_default(),
            Duration::from_millis(c.timeout_ms),
        )
        .map_err(|_| DispatchError::Failed)
    }

    fn answer_status(&self) -> Option<u16> {
        let value = abi::header_value(MapType::HttpCallResponseHeaders, ":status").ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    fn answer_body(&self, size: usize, max: usize) -> Option<Vec<u8>> {
        if size > max {
            return None;
        }
        let body = abi::buffer(BufferType::HttpCallResponseBody, 0, size).ok()?;
        // A host that returns more than it announced gets what was asked for, at most.
        body.map(|mut b| {
            b.truncate(size);
            b
        })
        .or(Some(Vec::new()))
    }

    fn reply(&mut self, ctx: ContextId, r: &Reply) -> bool {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.as_context(ctx, || {
            abi::send_local_response(r.status, &headers, &r.body).is_ok()
        })
        .unwrap_or(false)
    }

    fn tick_within(&mut self, ms: Option<u64>) {
        let period = ms.map_or(TICK, Duration::from_millis);
        // The root's timer, whichever context asks.
        self.as_context(self.root, || abi::set_tick_period(period));
    }

    fn metric(&mut self, m: Metric) {
        let Some((index, value)) = m.index_and_value() else {
            return;
        };
        if let Some((Some(id), kind)) = self.metric_ids.get(index) {
            let _ = match kind {
                Kind::Counter => {
                    abi::increment_metric(*id, i64::try_from(value).unwrap_or(i64::MAX))
                }
                Kind::Gauge | Kind::Histogram => abi::record_metric(*id, value),
            };
        }
    }
}

/// The request headers of the current stream, as the gateway reads them ([`wire::text`]).
pub fn request_headers() -> Option<Vec<(String, String)>> {
    abi::header_pairs(MapType::HttpRequestHeaders)
        .ok()
        .map(|h| wire::texts(&h))
}

/// `:path` of the current stream, as bytes.
pub fn request_path() -> Vec<u8> {
    abi::header_value(MapType::HttpRequestHeaders, ":path")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The plugin configuration, as bytes.
pub fn plugin_configuration(size: usize) -> Vec<u8> {
    abi::buffer(BufferType::PluginConfiguration, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}
