//! The callbacks Envoy calls (proxy-wasm ABI 0.2.1 exports), and which context is which.
//!
//! Nothing here decides anything about a request: each callback finds its root's
//! [`Gateway`] and hands it over. No callback can trap: unknown context ids, a busy gateway
//! (a callback re-entered from a hostcall) and malformed host data each have an answer.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::adapter::abi::{self, MetricType};
use crate::adapter::envoy::{self, Envoy, TICK};
use crate::config::Config;
use crate::gateway::lifecycle::{Action, Gateway};
use crate::host::metrics::{self, Kind};
use crate::host::ContextId;

/// A root context after a successful `on_configure`.
struct Plugin {
    gateway: RefCell<Gateway>,
    /// A copy of the prefix: the fast path never needs to borrow the gateway.
    prefix: Vec<u8>,
    metric_ids: Vec<(Option<u32>, Kind)>,
    /// Streams that ended while the gateway was busy.
    ended: RefCell<Vec<ContextId>>,
}

#[derive(Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
}

struct Stream {
    root: ContextId,
    /// A path under the prefix: the gateway may hold state for this stream.
    tracked: bool,
}

#[derive(Default)]
struct Vm {
    roots: HashMap<ContextId, Root>,
    streams: HashMap<ContextId, Stream>,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// The plugin of `root`, if configured. Borrows the registry only for the lookup.
fn plugin_of_root(root: ContextId) -> Option<Rc<Plugin>> {
    VM.with(|vm| {
        let vm = vm.try_borrow().ok()?;
        vm.roots.get(&root)?.plugin.clone()
    })
}

/// The root of stream `ctx` and its plugin.
fn plugin_of_stream(ctx: ContextId) -> Option<(ContextId, Rc<Plugin>)> {
    let root = VM.with(|vm| Some(vm.try_borrow().ok()?.streams.get(&ctx)?.root))?;
    Some((root, plugin_of_root(root)?))
}

/// Runs `f` on the gateway with a host for context `current`; first forgets streams that
/// ended while it was busy. `None` if the gateway is busy (a re-entered callback).
fn with_gateway<T>(
    plugin: &Plugin,
    current: ContextId,
    root: ContextId,
    f: impl FnOnce(&mut Gateway, &mut Envoy<'_>) -> T,
) -> Option<T> {
    let mut gateway = plugin.gateway.try_borrow_mut().ok()?;
    let mut host = Envoy {
        current,
        root,
        metric_ids: &plugin.metric_ids,
    };
    let ended = plugin
        .ended
        .try_borrow_mut()
        .map(|mut e| std::mem::take(&mut *e))
        .unwrap_or_default();
    for ctx in ended {
        gateway.on_stream_end(&mut host, ctx);
    }
    Some(f(&mut gateway, &mut host))
}

extern "C" {
    fn __wasm_call_ctors();
}

/// WASI reactor initialisation, then the logger.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: called once by the host before anything else (WASI reactor ABI).
    unsafe { __wasm_call_ctors() };
    crate::adapter::logger::install();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills and hands back (taken back in `abi::take`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let slice: Box<[u8]> = vec![0u8; size].into_boxed_slice();
    Box::into_raw(slice).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(ctx: u32, parent: u32) {
    VM.with(|vm| {
        let Ok(mut vm) = vm.try_borrow_mut() else {
            return;
        };
        if parent == 0 {
            vm.roots.entry(ctx).or_default();
        } else {
            vm.streams.insert(
                ctx,
                Stream {
                    root: parent,
                    tracked: false,
                },
            );
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, size: usize) -> bool {
    let bytes = envoy::plugin_configuration(size);
    let config = match Config::parse(&bytes, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            log::error!("sts-gateway: {e}");
            return false;
        }
    };
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
            (abi::define_metric(t, &name).ok(), kind)
        })
        .collect();
    // A new gateway: caches, parked requests and keys of the old config are gone.
    let plugin = Rc::new(Plugin {
        prefix: config.prefix.as_bytes().to_vec(),
        gateway: RefCell::new(Gateway::new(config)),
        metric_ids,
        ended: RefCell::new(Vec::new()),
    });
    let stored = VM.with(|vm| {
        let Ok(mut vm) = vm.try_borrow_mut() else {
            return false;
        };
        vm.roots.entry(root).or_default().plugin = Some(plugin);
        true
    });
    stored && abi::set_tick_period(TICK).is_ok()
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root: u32) {
    if let Some(plugin) = plugin_of_root(root) {
        with_gateway(&plugin, root, root, |g, h| g.on_tick(h, vm_memory_bytes()));
    }
}

/// Every callout answer comes to the root (Envoy makes callouts on the root context), and
/// the gateway finds its request by token: none is dropped because a client left.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    ctx: u32,
    token: u32,
    headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    let found = plugin_of_root(ctx)
        .map(|p| (ctx, p))
        .or_else(|| plugin_of_stream(ctx));
    if let Some((root, plugin)) = found {
        with_gateway(&plugin, ctx, root, |g, h| {
            g.on_callout_answer(h, token, headers, body_size)
        });
    }
}

const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(ctx: u32, _headers: usize, _end: bool) -> u32 {
    let Some((root, plugin)) = plugin_of_stream(ctx) else {
        // Not a stream of a configured plugin: Envoy creates none (a plugin whose
        // configuration failed is not in the chain).
        return CONTINUE;
    };
    // Fast path: requests outside the prefix cost one header read and no borrow.
    let path = envoy::request_path();
    if !path.starts_with(&plugin.prefix) {
        return CONTINUE;
    }
    #[cfg(feature = "crash-route")]
    crate::adapter::crash_route(&path);
    VM.with(|vm| {
        if let Ok(mut vm) = vm.try_borrow_mut() {
            if let Some(s) = vm.streams.get_mut(&ctx) {
                s.tracked = true;
            }
        }
    });
    let action = envoy::request_headers().and_then(|headers| {
        with_gateway(&plugin, ctx, root, |g, h| g.on_request(h, ctx, &headers))
    });
    match action {
        Some(Action::Continue) => CONTINUE,
        Some(Action::Pause) => PAUSE,
        None => {
            // The gateway was busy or the headers unreadable: fail closed, never hang.
            let _ = abi::send_local_response(503, &[("retry-after", "1")], b"");
            PAUSE
        }
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_ctx: u32) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(ctx: u32) {
    let removed = VM.with(|vm| {
        let mut vm = vm.try_borrow_mut().ok()?;
        if vm.roots.remove(&ctx).is_some() {
            return None;
        }
        vm.streams.remove(&ctx)
    });
    let Some(stream) = removed.filter(|s| s.tracked) else {
        return;
    };
    let Some(plugin) = plugin_of_root(stream.root) else {
        return;
    };
    let done = with_gateway(&plugin, ctx, stream.root, |g, h| g.on_stream_end(h, ctx));
    if done.is_none() {
        if let Ok(mut ended) = plugin.ended.try_borrow_mut() {
            ended.push(ctx);
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
