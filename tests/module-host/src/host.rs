//! The host side of the proxy-wasm ABI 0.2.1, as Envoy implements it: every import the module
//! has, returning what Envoy returns in each situation (the Rust SDK 0.2.5 panics on a status it
//! does not expect, so the status codes are part of the contract).
//!
//! Sources, proxy-wasm-cpp-host at 52a02917 (2026-07-01) and Envoy's
//! `source/extensions/common/wasm/context.cc` (b40935ac):
//! - `src/exports.cc`: one function per import; `contextOrEffectiveContext()` (the context set by
//!   `proxy_set_effective_context`, else the one whose callback runs); `http_call` always uses
//!   `contextOrEffectiveContext()->root_context()`, so every callout belongs to the root context
//!   and its answer is delivered to the root context's id.
//! - `src/pairs_util.cc`: the map format (u32 count, then (u32 key len, u32 value len) per pair,
//!   then each key and each value followed by a NUL).
//! - `include/proxy-wasm/wasm.h`: `copyToPointerSize` (an empty value is written as pointer 0,
//!   size 0 without calling the allocator; otherwise the module's `proxy_on_memory_allocate`
//!   provides the memory), `allocMemory` (only `proxy_log`, `fd_write`, `clock_time_get`,
//!   `poll_oneoff` may be called from inside the allocator: others trap "restricted_callback",
//!   `src/v8/v8.cc`), metric ids (type in the low 2 bits, +4 per metric), callout tokens (+4).
//! - Envoy `context.cc`: `getHeaderMapValue` (a map that does not exist now, e.g. the request
//!   headers seen from the root context or a callout answer's headers after a reset, is
//!   `BadArgument`; a missing key is `NotFound`; duplicated keys give the first value),
//!   `getHeaderMapPairs` (a missing map is an empty list), `getBuffer` (`PluginConfiguration`
//!   only during `proxy_on_configure`, `HttpCallResponseBody` only while a callout answer with a
//!   response is delivered, else `NotFound`), `httpCall` (unknown cluster or a missing
//!   `:path`/`:method`/`:authority` is `BadArgument`), `sendLocalResponse` (deferred until the
//!   VM call returns; ignored on a context without a stream, i.e. the root),
//!   `incrementMetric`/`recordMetric`/`defineMetric`.
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use wasmtime::{format_err, Result};
use wasmtime::{Caller, Linker, Memory, TypedFunc};

use crate::abi::{buffer, errno, map, status, stream, LOG_LEVEL_MAX};

pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Imports the module may call from inside `proxy_on_memory_allocate` (cpp-host `allocMemory`).
const MALLOC_ALLOWED: &[&str] = &[
    "env.proxy_log",
    "wasi_snapshot_preview1.fd_write",
    "wasi_snapshot_preview1.clock_time_get",
    "wasi_snapshot_preview1.poll_oneoff",
];

/// Imports the module may call from `_initialize` (cpp-host `WasmBase::startVm`; the other
/// `wasi_*` of that list are not imported by this module).
const START_ALLOWED: &[&str] = &[
    "env.proxy_log",
    "wasi_snapshot_preview1.fd_write",
    "wasi_snapshot_preview1.environ_sizes_get",
    "wasi_snapshot_preview1.environ_get",
    "wasi_snapshot_preview1.clock_time_get",
    "wasi_snapshot_preview1.random_get",
    "wasi_snapshot_preview1.poll_oneoff",
];

/// A context the VM knows (`proxy_on_context_create` called, `proxy_on_delete` not yet).
#[derive(Debug, Default)]
pub struct Ctx {
    /// 0 for the root context.
    pub parent: u32,
    /// Envoy's `request_headers_`: set in `decodeHeaders`, cleared when the filter continues.
    pub request_headers: Option<Pairs>,
}

/// A callout Envoy accepted and has not answered yet.
#[derive(Debug, Clone)]
pub struct Callout {
    pub cluster: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    /// The context whose callback dispatched it (`current`, not the effective context).
    pub dispatched_by: u32,
    /// Host time when dispatched.
    pub at_ms: u64,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// A callout answer as Envoy hands it over while `proxy_on_http_call_response` runs.
#[derive(Debug, Clone)]
pub struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// A local reply the module asked for (`proxy_send_local_response`).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub details: Vec<u8>,
}

impl std::fmt::Debug for LocalReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (text(n), text(v)))
            .collect();
        write!(f, "{} {:?} {}", self.status, headers, text(&self.body))
    }
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What Envoy does after the VM call returns (cpp-host `addAfterVmCallAction`).
#[derive(Debug, Clone)]
pub enum Deferred {
    LocalReply {
        ctx: u32,
        reply: LocalReply,
    },
    /// `proxy_continue_stream(Request)`: `continueDecoding()`.
    Continue {
        ctx: u32,
    },
    /// `proxy_close_stream(Request)`: `resetStream()`.
    Reset {
        ctx: u32,
    },
}

/// Envoy's shared data: one map per vm_id, shared by every VM (worker) of that id.
#[derive(Debug, Default)]
pub struct SharedData {
    map: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    cas: u32,
}

impl SharedData {
    fn next_cas(&mut self) -> u32 {
        // cpp-host shared_data.h: starts at 1, 0 is never a valid cas.
        self.cas = self.cas.wrapping_add(1);
        if self.cas == 0 {
            self.cas = 1;
        }
        self.cas
    }

    /// cpp-host `SharedData::set`: a non-zero cas must match the stored one.
    pub fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let next = self.next_cas();
        match self.map.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return status::CAS_MISMATCH;
                }
                *entry = (value.to_vec(), next);
            }
            None => {
                self.map.insert(key.to_vec(), (value.to_vec(), next));
            }
        }
        status::OK
    }

    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).cloned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
    pub records: u64,
}

/// Everything the host keeps for one VM.
pub struct HostState {
    pub(crate) memory: Option<Memory>,
    pub(crate) limits: wasmtime::StoreLimits,
    pub(crate) malloc: Option<TypedFunc<i32, i32>>,
    restricted: Option<&'static [&'static str]>,

    /// Wall-clock and monotonic time of the simulated host, in nanoseconds.
    pub now_ns: u64,
    pub mono_ns: u64,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    /// Envoy's `temp_plugin_`: set only while `proxy_on_configure` runs.
    pub(crate) in_configure: bool,
    /// `vm_config.environment_variables` (WASI environ).
    pub env: Vec<(String, String)>,
    /// Clusters Envoy knows; a callout to another is `BadArgument`.
    pub clusters: Vec<String>,
    /// Envoy plugin properties (`plugin_name`, `plugin_root_id`, `plugin_vm_id`).
    pub plugin_name: String,
    pub vm_id: String,

    pub root_id: u32,
    pub(crate) next_context_id: u32,
    pub contexts: BTreeMap<u32, Ctx>,
    /// The context whose callback runs (0: none).
    pub(crate) current: u32,
    /// `effective_context_id_` (0: none).
    pub(crate) effective: u32,

    next_http_call_id: u32,
    pub pending: BTreeMap<u32, Callout>,
    pub(crate) call_response: Option<CallResponse>,
    /// The root context's `status_code_` / `status_message_` (`proxy_get_status`).
    pub(crate) call_status: (u32, Vec<u8>),
    /// Makes the next `proxy_http_call` fail inline (`InternalFailure`, as when Envoy's async
    /// client cannot start the request).
    pub refuse_next_dispatch: bool,

    pub(crate) deferred: VecDeque<Deferred>,
    /// cpp-host `stop_iteration_`: a local reply was sent during this VM call.
    pub(crate) stop_iteration: bool,

    pub shared: Rc<RefCell<SharedData>>,
    next_metric_id: [u32; 3],
    pub metrics: BTreeMap<u32, Metric>,
    pub tick_period_ms: u64,

    pub log: Vec<(i32, String)>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Things Envoy would not do what the module wants (a reply on the root context, ...).
    pub violations: Vec<String>,
    /// Calls per import.
    pub hostcalls: BTreeMap<&'static str, u64>,
    rng: u64,
}

impl HostState {
    pub fn new(now_ms: u64, shared: Rc<RefCell<SharedData>>) -> HostState {
        HostState {
            memory: None,
            // Envoy's V8 has no smaller bound than wasm32's 4 GiB; 1 GiB keeps a runaway case
            // from taking the machine (memory.grow then fails and the module aborts: a trap).
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(1 << 30)
                .build(),
            malloc: None,
            restricted: None,
            now_ns: now_ms * 1_000_000,
            mono_ns: 1_000_000_000,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            in_configure: false,
            env: Vec::new(),
            clusters: Vec::new(),
            plugin_name: "sts-gateway".into(),
            vm_id: "sts-gateway".into(),
            root_id: 0,
            // cpp-host wasm.h: `next_context_id_ = 1; // 0 is reserved for the VM context.`
            next_context_id: 1,
            contexts: BTreeMap::new(),
            current: 0,
            effective: 0,
            // cpp-host wasm.h: `next_http_call_id_ = CalloutType::HttpCall (0)`, `+= 4`.
            next_http_call_id: 0,
            pending: BTreeMap::new(),
            call_response: None,
            call_status: (0, Vec::new()),
            refuse_next_dispatch: false,
            deferred: VecDeque::new(),
            stop_iteration: false,
            shared,
            // cpp-host wasm.h: counters start at 0, gauges 1, histograms 2; `+= 4` each.
            next_metric_id: [0, 1, 2],
            metrics: BTreeMap::new(),
            tick_period_ms: 0,
            log: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            violations: Vec::new(),
            hostcalls: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub(crate) fn alloc_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    /// cpp-host `contextOrEffectiveContext()`: the effective context if it still exists.
    fn context(&self) -> u32 {
        if self.effective != 0 && self.contexts.contains_key(&self.effective) {
            self.effective
        } else {
            self.current
        }
    }

    pub(crate) fn restrict(&mut self, allowed: Option<&'static [&'static str]>) {
        self.restricted = allowed;
    }

    pub(crate) fn restrict_start(&mut self) {
        self.restricted = Some(START_ALLOWED);
    }

    /// Panic output of the module so far (stderr), for trap reports.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.metrics
            .values()
            .filter(|m| m.name == name)
            .map(|m| m.value)
            .sum()
    }

    fn next_random(&mut self) -> u8 {
        // xorshift64*: deterministic "random" bytes keep failures reproducible.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}

// ------------------------------------------------------------------ memory helpers

type C<'a> = Caller<'a, HostState>;

fn enter(c: &mut C<'_>, name: &'static str) -> Result<()> {
    let s = c.data_mut();
    *s.hostcalls.entry(name).or_insert(0) += 1;
    if let Some(allowed) = s.restricted {
        if !allowed.contains(&name) {
            let msg = format!("restricted_callback: {name} called where Envoy forbids it");
            s.violations.push(msg.clone());
            return Err(format_err!(msg));
        }
    }
    Ok(())
}

fn mem(c: &C<'_>) -> Result<Memory> {
    c.data()
        .memory
        .ok_or_else(|| format_err!("module has no memory export"))
}

fn read(c: &C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = c.data().memory?;
    let data = m.data(c);
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    data.get(start..end).map(<[u8]>::to_vec)
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> bool {
    let Ok(m) = mem(c) else { return false };
    let data = m.data_mut(c);
    let start = ptr as u32 as usize;
    let Some(end) = start.checked_add(bytes.len()) else {
        return false;
    };
    match data.get_mut(start..end) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> bool {
    write(c, ptr, &v.to_le_bytes())
}

fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> bool {
    write(c, ptr, &v.to_le_bytes())
}

/// cpp-host `allocMemory`: the module's allocator, called with restricted imports.
fn alloc(c: &mut C<'_>, size: usize) -> Result<Option<i32>> {
    let f = c
        .data()
        .malloc
        .clone()
        .ok_or_else(|| format_err!("module does not export proxy_on_memory_allocate"))?;
    let saved = c.data().restricted;
    c.data_mut().restricted = Some(MALLOC_ALLOWED);
    let r = f.call(&mut *c, size as i32);
    c.data_mut().restricted = saved;
    let ptr = r?;
    if ptr == 0 {
        return Ok(None);
    }
    // cpp-host checks the returned block lies in memory.
    let m = mem(c)?;
    let ok = (ptr as u32 as usize)
        .checked_add(size)
        .is_some_and(|end| end <= m.data_size(&*c));
    Ok(ok.then_some(ptr))
}

/// cpp-host `copyToPointerSize`.
fn copy_out(c: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<bool> {
    let mut pointer = 0;
    if !bytes.is_empty() {
        match alloc(c, bytes.len())? {
            Some(p) => {
                if !write(c, p, bytes) {
                    return Ok(false);
                }
                pointer = p;
            }
            None => return Ok(false),
        }
    }
    Ok(write_u32(c, ptr_ptr, pointer as u32) && write_u32(c, size_ptr, bytes.len() as u32))
}

/// cpp-host `PairsUtil::pairsSize` + `marshalPairs`.
pub fn marshal_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// cpp-host `PairsUtil::toPairs`: malformed input gives an empty list.
pub fn unmarshal_pairs(buf: &[u8]) -> Pairs {
    fn parse(buf: &[u8]) -> Option<Pairs> {
        let u32_at = |pos: usize| -> Option<u32> {
            Some(u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?))
        };
        let n = u32_at(0)? as usize;
        // PROXY_WASM_HOST_PAIRS_MAX_COUNT (limits.h): 1024.
        if n > 1024 || 4 + n * 8 > buf.len() {
            return None;
        }
        let mut pos = 4 + n * 8;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let kl = u32_at(4 + i * 8)? as usize;
            let vl = u32_at(8 + i * 8)? as usize;
            let k = buf.get(pos..pos + kl)?.to_vec();
            pos += kl;
            if *buf.get(pos)? != 0 {
                return None;
            }
            pos += 1;
            let v = buf.get(pos..pos + vl)?.to_vec();
            pos += vl;
            if *buf.get(pos)? != 0 {
                return None;
            }
            pos += 1;
            out.push((k, v));
        }
        (pos == buf.len()).then_some(out)
    }
    parse(buf).unwrap_or_default()
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

// ------------------------------------------------------------------ maps and buffers

/// Envoy `getConstMap`: `None` when that map does not exist for this context now.
fn header_map(s: &HostState, ctx: u32, t: i32) -> Option<Pairs> {
    match t {
        map::REQUEST_HEADERS => s.contexts.get(&ctx)?.request_headers.clone(),
        map::HTTP_CALL_RESPONSE_HEADERS => s.call_response.as_ref().map(|r| r.headers.clone()),
        map::HTTP_CALL_RESPONSE_TRAILERS => s.call_response.as_ref().map(|r| r.trailers.clone()),
        // No request trailers, response headers/trailers or gRPC metadata in this harness.
        _ => None,
    }
}

/// Envoy `getBuffer`: `None` is `NotFound`.
fn buffer_bytes(s: &HostState, t: i32) -> Option<Vec<u8>> {
    match t {
        buffer::VM_CONFIGURATION => Some(s.vm_config.clone()),
        buffer::PLUGIN_CONFIGURATION => s.in_configure.then(|| s.plugin_config.clone()),
        buffer::HTTP_CALL_RESPONSE_BODY => s.call_response.as_ref().map(|r| r.body.clone()),
        // `buffer_.set(request_body_buffer_)` with no body: an empty buffer.
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY => Some(Vec::new()),
        buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA | buffer::GRPC_RECEIVE_BUFFER => {
            Some(Vec::new())
        }
        buffer::CALL_DATA => Some(Vec::new()),
        _ => None,
    }
}

// ------------------------------------------------------------------ the imports

macro_rules! wrap {
    ($linker:ident, $module:literal, $name:literal, |$c:ident $(, $a:ident : $t:ty)*| -> $ret:ty $body:block) => {
        $linker.func_wrap($module, $name, move |mut $c: C<'_> $(, $a: $t)*| -> Result<$ret> {
            enter(&mut $c, concat!($module, ".", $name))?;
            $body
        })?;
    };
}

/// Adds every import of the module (all of proxy-wasm 0.2.1's `env` functions the Rust SDK
/// links, and the six WASI preview1 functions) to `linker`.
pub fn add_imports(linker: &mut Linker<HostState>) -> Result<()> {
    // ---- logging, time, timer
    wrap!(linker, "env", "proxy_log", |c,
                                       level: i32,
                                       ptr: i32,
                                       len: i32|
     -> i32 {
        if !(0..=LOG_LEVEL_MAX).contains(&level) {
            return Ok(status::BAD_ARGUMENT);
        }
        let Some(msg) = read(&c, ptr, len) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        c.data_mut()
            .log
            .push((level, String::from_utf8_lossy(&msg).into_owned()));
        Ok(status::OK)
    });
    wrap!(
        linker,
        "env",
        "proxy_get_current_time_nanoseconds",
        |c, ptr: i32| -> i32 {
            let now = c.data().now_ns;
            Ok(if write_u64(&mut c, ptr, now) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        }
    );
    wrap!(
        linker,
        "env",
        "proxy_set_tick_period_milliseconds",
        |c, ms: i32| -> i32 {
            // cpp-host `setTimerPeriod`: the timer of the root context, whichever context asks.
            c.data_mut().tick_period_ms = ms as u32 as u64;
            Ok(status::OK)
        }
    );

    // ---- configuration, properties, buffers
    wrap!(linker, "env", "proxy_get_buffer_bytes", |c,
                                                    t: i32,
                                                    start: i32,
                                                    length: i32,
                                                    ptr_ptr: i32,
                                                    size_ptr: i32|
     -> i32 {
        if !(0..=buffer::MAX).contains(&t) {
            return Ok(status::BAD_ARGUMENT);
        }
        let Some(buf) = buffer_bytes(c.data(), t) else {
            return Ok(status::NOT_FOUND);
        };
        let (start, mut length) = (start as u32 as usize, length as u32 as usize);
        if start.checked_add(length).is_none() {
            return Ok(status::BAD_ARGUMENT);
        }
        // exports.cc get_buffer_bytes: "Don't overread."
        if start > buf.len() {
            length = 0;
        } else if start + length > buf.len() {
            length = buf.len() - start;
        }
        if length == 0 {
            let ok = write_u32(&mut c, ptr_ptr, 0) && write_u32(&mut c, size_ptr, 0);
            return Ok(if ok {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            });
        }
        let slice = buf[start..start + length].to_vec();
        Ok(if copy_out(&mut c, &slice, ptr_ptr, size_ptr)? {
            status::OK
        } else {
            status::INVALID_MEMORY_ACCESS
        })
    });
    wrap!(linker, "env", "proxy_set_buffer_bytes", |c,
                                                    t: i32,
                                                    _start: i32,
                                                    _len: i32,
                                                    ptr: i32,
                                                    size: i32|
     -> i32 {
        if !(0..=buffer::MAX).contains(&t) {
            return Ok(status::BAD_ARGUMENT);
        }
        if buffer_bytes(c.data(), t).is_none() {
            return Ok(status::NOT_FOUND);
        }
        if read(&c, ptr, size).is_none() {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        // Configuration and callout bodies are immutable (Envoy `Buffer::copyFrom`).
        Ok(status::BAD_ARGUMENT)
    });
    wrap!(linker, "env", "proxy_get_property", |c,
                                                ptr: i32,
                                                len: i32,
                                                out_ptr: i32,
                                                out_size: i32|
     -> i32 {
        let Some(path) = read(&c, ptr, len) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        // Envoy `findValue`: the plugin's own names; the stream attributes (request.*, ...)
        // are not modelled here and answer NotFound like an absent attribute.
        let s = c.data();
        let value = match path.as_slice() {
            b"plugin_name" => s.plugin_name.clone(),
            b"plugin_vm_id" => s.vm_id.clone(),
            b"plugin_root_id" => String::new(),
            _ => return Ok(status::NOT_FOUND),
        };
        Ok(if copy_out(&mut c, value.as_bytes(), out_ptr, out_size)? {
            status::OK
        } else {
            status::INVALID_MEMORY_ACCESS
        })
    });
    wrap!(linker, "env", "proxy_set_property", |c,
                                                kp: i32,
                                                kl: i32,
                                                vp: i32,
                                                vl: i32|
     -> i32 {
        if read(&c, kp, kl).is_none() || read(&c, vp, vl).is_none() {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        // Envoy `setProperty`: needs a stream's StreamInfo.
        let s = c.data();
        Ok(if s.context() == s.root_id {
            status::NOT_FOUND
        } else {
            status::OK
        })
    });

    // ---- header maps
    wrap!(
        linker,
        "env",
        "proxy_get_header_map_pairs",
        |c, t: i32, ptr_ptr: i32, size_ptr: i32| -> i32 {
            if !(0..=map::MAX).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let ctx = c.data().context();
            // Envoy `getHeaderMapPairs`: a map that does not exist is an empty list.
            let pairs = header_map(c.data(), ctx, t).unwrap_or_default();
            let bytes = if pairs.is_empty() {
                Vec::new()
            } else {
                marshal_pairs(&pairs)
            };
            Ok(if copy_out(&mut c, &bytes, ptr_ptr, size_ptr)? {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        }
    );
    wrap!(
        linker,
        "env",
        "proxy_get_header_map_value",
        |c, t: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32| -> i32 {
            if !(0..=map::MAX).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(key) = read(&c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let ctx = c.data().context();
            let Some(pairs) = header_map(c.data(), ctx, t) else {
                // "Requested map type is not currently available."
                return Ok(status::BAD_ARGUMENT);
            };
            let key = lower(&key);
            let Some((_, value)) = pairs.into_iter().find(|(k, _)| *k == key) else {
                return Ok(status::NOT_FOUND);
            };
            Ok(if copy_out(&mut c, &value, ptr_ptr, size_ptr)? {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        }
    );
    wrap!(linker, "env", "proxy_set_header_map_pairs", |c,
                                                        t: i32,
                                                        ptr: i32,
                                                        size: i32|
     -> i32 {
        if !(0..=map::MAX).contains(&t) {
            return Ok(status::BAD_ARGUMENT);
        }
        let Some(buf) = read(&c, ptr, size) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        mutate_map(&mut c, t, |m| {
            *m = unmarshal_pairs(&buf)
                .into_iter()
                .map(|(k, v)| (lower(&k), v))
                .collect();
        })
    });
    wrap!(linker, "env", "proxy_add_header_map_value", |c,
                                                        t: i32,
                                                        kp: i32,
                                                        kl: i32,
                                                        vp: i32,
                                                        vl: i32|
     -> i32 {
        if !(0..=map::MAX).contains(&t) {
            return Ok(status::BAD_ARGUMENT);
        }
        let (Some(k), Some(v)) = (read(&c, kp, kl), read(&c, vp, vl)) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        mutate_map(&mut c, t, |m| m.push((lower(&k), v)))
    });
    wrap!(
        linker,
        "env",
        "proxy_replace_header_map_value",
        |c, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            if !(0..=map::MAX).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let (Some(k), Some(v)) = (read(&c, kp, kl), read(&c, vp, vl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let k = lower(&k);
            mutate_map(&mut c, t, |m| {
                m.retain(|(n, _)| *n != k);
                m.push((k, v));
            })
        }
    );
    wrap!(linker, "env", "proxy_remove_header_map_value", |c,
                                                           t: i32,
                                                           kp: i32,
                                                           kl: i32|
     -> i32 {
        if !(0..=map::MAX).contains(&t) {
            return Ok(status::BAD_ARGUMENT);
        }
        let Some(k) = read(&c, kp, kl) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let k = lower(&k);
        mutate_map(&mut c, t, |m| m.retain(|(n, _)| *n != k))
    });

    // ---- the stream
    wrap!(linker, "env", "proxy_send_local_response", |c,
                                                       code: i32,
                                                       dp: i32,
                                                       dl: i32,
                                                       bp: i32,
                                                       bl: i32,
                                                       hp: i32,
                                                       hl: i32,
                                                       _grpc: i32|
     -> i32 {
        let (Some(details), Some(body), Some(headers)) =
            (read(&c, dp, dl), read(&c, bp, bl), read(&c, hp, hl))
        else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let s = c.data_mut();
        let ctx = s.context();
        let reply = LocalReply {
            status: code as u32,
            headers: unmarshal_pairs(&headers),
            body,
            details,
        };
        if ctx == s.root_id || !s.contexts.contains_key(&ctx) {
            // Envoy `sendLocalResponse` acts only `if (decoder_callbacks_)`: a root context
            // has none, so the reply is silently dropped and that client waits.
            s.violations.push(format!(
                "proxy_send_local_response {} on context {ctx} (no stream): Envoy drops it",
                reply.status
            ));
        } else {
            s.deferred.push_back(Deferred::LocalReply { ctx, reply });
        }
        s.stop_iteration = true;
        Ok(status::OK)
    });
    wrap!(linker, "env", "proxy_continue_stream", |c, t: i32| -> i32 {
        let s = c.data_mut();
        let ctx = s.context();
        match t {
            stream::REQUEST => {
                if ctx != s.root_id && s.contexts.contains_key(&ctx) {
                    s.deferred.push_back(Deferred::Continue { ctx });
                }
                Ok(status::OK)
            }
            stream::RESPONSE | stream::DOWNSTREAM => Ok(status::OK),
            // Envoy `continueStream(Upstream)`: Unimplemented (12).
            stream::UPSTREAM => Ok(12),
            _ => Ok(status::BAD_ARGUMENT),
        }
    });
    wrap!(linker, "env", "proxy_close_stream", |c, t: i32| -> i32 {
        let s = c.data_mut();
        let ctx = s.context();
        match t {
            stream::REQUEST => {
                if ctx != s.root_id && s.contexts.contains_key(&ctx) {
                    s.deferred.push_back(Deferred::Reset { ctx });
                }
                Ok(status::OK)
            }
            stream::RESPONSE | stream::DOWNSTREAM | stream::UPSTREAM => Ok(status::OK),
            _ => Ok(status::BAD_ARGUMENT),
        }
    });
    wrap!(linker, "env", "proxy_set_effective_context", |c,
                                                         id: i32|
     -> i32 {
        let s = c.data_mut();
        if !s.contexts.contains_key(&(id as u32)) {
            return Ok(status::BAD_ARGUMENT);
        }
        s.effective = id as u32;
        Ok(status::OK)
    });
    wrap!(linker, "env", "proxy_done", |c| -> i32 {
        // No root context is shutting down (`WasmBase::done`).
        let _ = &mut c;
        Ok(status::NOT_FOUND)
    });

    // ---- callouts
    wrap!(linker, "env", "proxy_http_call", |c,
                                             up: i32,
                                             ul: i32,
                                             hp: i32,
                                             hl: i32,
                                             bp: i32,
                                             bl: i32,
                                             tp: i32,
                                             tl: i32,
                                             timeout: i32,
                                             token_ptr: i32|
     -> i32 {
        let (Some(cluster), Some(headers), Some(body), Some(_trailers)) = (
            read(&c, up, ul),
            read(&c, hp, hl),
            read(&c, bp, bl),
            read(&c, tp, tl),
        ) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        // "try to write the token to verify the memory before starting the async operation"
        if !write_u32(&mut c, token_ptr, 0) {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        // Envoy `httpCall`.
        if timeout < 0 {
            return Ok(status::BAD_ARGUMENT);
        }
        let cluster = String::from_utf8_lossy(&cluster).into_owned();
        if !c.data().clusters.contains(&cluster) {
            return Ok(status::BAD_ARGUMENT);
        }
        let headers: Pairs = unmarshal_pairs(&headers)
            .into_iter()
            .map(|(k, v)| (lower(&k), v))
            .collect();
        let has = |n: &[u8]| headers.iter().any(|(k, _)| k.as_slice() == n);
        if !has(b":path") || !has(b":method") || !has(b":authority") {
            return Ok(status::BAD_ARGUMENT);
        }
        let s = c.data_mut();
        if std::mem::take(&mut s.refuse_next_dispatch) {
            return Ok(status::INTERNAL_FAILURE);
        }
        s.next_http_call_id = s.next_http_call_id.wrapping_add(4);
        let token = s.next_http_call_id;
        let callout = Callout {
            cluster,
            headers,
            body,
            timeout_ms: timeout as u32,
            dispatched_by: s.current,
            at_ms: s.now_ns / 1_000_000,
        };
        s.pending.insert(token, callout);
        write_u32(&mut c, token_ptr, token);
        Ok(status::OK)
    });
    wrap!(linker, "env", "proxy_get_status", |c,
                                              code_ptr: i32,
                                              ptr_ptr: i32,
                                              size_ptr: i32|
     -> i32 {
        let (code, msg) = c.data().call_status.clone();
        if !write_u32(&mut c, code_ptr, code) {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        Ok(if copy_out(&mut c, &msg, ptr_ptr, size_ptr)? {
            status::OK
        } else {
            status::INVALID_MEMORY_ACCESS
        })
    });

    // ---- shared data
    wrap!(linker, "env", "proxy_get_shared_data", |c,
                                                   kp: i32,
                                                   kl: i32,
                                                   ptr_ptr: i32,
                                                   size_ptr: i32,
                                                   cas_ptr: i32|
     -> i32 {
        let Some(key) = read(&c, kp, kl) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let got = c.data().shared.borrow().get(&key);
        let Some((value, cas)) = got else {
            return Ok(status::NOT_FOUND);
        };
        if !copy_out(&mut c, &value, ptr_ptr, size_ptr)? || !write_u32(&mut c, cas_ptr, cas) {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        Ok(status::OK)
    });
    wrap!(linker, "env", "proxy_set_shared_data", |c,
                                                   kp: i32,
                                                   kl: i32,
                                                   vp: i32,
                                                   vl: i32,
                                                   cas: i32|
     -> i32 {
        let (Some(key), Some(value)) = (read(&c, kp, kl), read(&c, vp, vl)) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let r = c.data().shared.borrow_mut().set(&key, &value, cas as u32);
        Ok(r)
    });

    // ---- shared queues (not used by the filter: nothing is registered)
    wrap!(
        linker,
        "env",
        "proxy_register_shared_queue",
        |c, np: i32, nl: i32, token_ptr: i32| -> i32 {
            if read(&c, np, nl).is_none() {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(if write_u32(&mut c, token_ptr, 1) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        }
    );
    wrap!(
        linker,
        "env",
        "proxy_resolve_shared_queue",
        |c, vp: i32, vl: i32, np: i32, nl: i32, _token_ptr: i32| -> i32 {
            if read(&c, vp, vl).is_none() || read(&c, np, nl).is_none() {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(status::NOT_FOUND)
        }
    );
    wrap!(
        linker,
        "env",
        "proxy_enqueue_shared_queue",
        |c, _token: i32, dp: i32, dl: i32| -> i32 {
            if read(&c, dp, dl).is_none() {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(status::NOT_FOUND)
        }
    );
    wrap!(
        linker,
        "env",
        "proxy_dequeue_shared_queue",
        |c, _token: i32, _ptr_ptr: i32, _size_ptr: i32| -> i32 {
            let _ = &mut c;
            Ok(status::NOT_FOUND)
        }
    );

    // ---- metrics
    wrap!(linker, "env", "proxy_define_metric", |c,
                                                 t: i32,
                                                 np: i32,
                                                 nl: i32,
                                                 id_ptr: i32|
     -> i32 {
        let Some(name) = read(&c, np, nl) else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let kind = match t {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return Ok(status::BAD_ARGUMENT),
        };
        let s = c.data_mut();
        let slot = &mut s.next_metric_id[t as usize];
        *slot += 4;
        let id = *slot;
        s.metrics.insert(
            id,
            Metric {
                name: String::from_utf8_lossy(&name).into_owned(),
                kind,
                value: 0,
                records: 0,
            },
        );
        Ok(if write_u32(&mut c, id_ptr, id) {
            status::OK
        } else {
            status::INVALID_MEMORY_ACCESS
        })
    });
    wrap!(linker, "env", "proxy_increment_metric", |c,
                                                    id: i32,
                                                    offset: i64|
     -> i32 {
        let s = c.data_mut();
        let kind = id as u32 & 3;
        let Some(m) = s.metrics.get_mut(&(id as u32)) else {
            return Ok(if kind == 2 {
                status::BAD_ARGUMENT
            } else {
                status::NOT_FOUND
            });
        };
        match m.kind {
            // Envoy `incrementMetric`: a counter only goes up.
            MetricKind::Counter if offset > 0 => m.value += offset,
            MetricKind::Counter => return Ok(status::BAD_ARGUMENT),
            MetricKind::Gauge => m.value += offset,
            MetricKind::Histogram => return Ok(status::BAD_ARGUMENT),
        }
        Ok(status::OK)
    });
    wrap!(linker, "env", "proxy_record_metric", |c,
                                                 id: i32,
                                                 value: i64|
     -> i32 {
        let s = c.data_mut();
        let Some(m) = s.metrics.get_mut(&(id as u32)) else {
            return Ok(status::NOT_FOUND);
        };
        match m.kind {
            MetricKind::Counter => m.value += value,
            MetricKind::Gauge => m.value = value,
            MetricKind::Histogram => {
                m.value = value;
                m.records += 1;
            }
        }
        Ok(status::OK)
    });

    // ---- gRPC and foreign functions (not used by the filter; Envoy's answers without a
    // gRPC service or a registered function)
    wrap!(linker, "env", "proxy_grpc_call", |c,
                                             sp: i32,
                                             sl: i32,
                                             _a: i32,
                                             _b: i32,
                                             _d: i32,
                                             _e: i32,
                                             _f: i32,
                                             _g: i32,
                                             _h: i32,
                                             _i: i32,
                                             _timeout: i32,
                                             _token_ptr: i32|
     -> i32 {
        if read(&c, sp, sl).is_none() {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        Ok(status::PARSE_FAILURE)
    });
    wrap!(linker, "env", "proxy_grpc_stream", |c,
                                               sp: i32,
                                               sl: i32,
                                               _a: i32,
                                               _b: i32,
                                               _d: i32,
                                               _e: i32,
                                               _f: i32,
                                               _g: i32,
                                               _token_ptr: i32|
     -> i32 {
        if read(&c, sp, sl).is_none() {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        Ok(status::PARSE_FAILURE)
    });
    wrap!(linker, "env", "proxy_grpc_send", |c,
                                             _token: i32,
                                             _mp: i32,
                                             _ml: i32,
                                             _end: i32|
     -> i32 {
        let _ = &mut c;
        Ok(status::BAD_ARGUMENT)
    });
    wrap!(linker, "env", "proxy_grpc_cancel", |c,
                                               _token: i32|
     -> i32 {
        let _ = &mut c;
        Ok(status::BAD_ARGUMENT)
    });
    wrap!(linker, "env", "proxy_grpc_close", |c, _token: i32| -> i32 {
        let _ = &mut c;
        Ok(status::BAD_ARGUMENT)
    });
    wrap!(linker, "env", "proxy_call_foreign_function", |c,
                                                         np: i32,
                                                         nl: i32,
                                                         ap: i32,
                                                         al: i32,
                                                         _rp: i32,
                                                         _rs: i32|
     -> i32 {
        if read(&c, np, nl).is_none() || read(&c, ap, al).is_none() {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        Ok(status::NOT_FOUND)
    });

    // ---- WASI preview1 (cpp-host `wasi_unstable_*`)
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "fd_write",
        |c, fd: i32, iovs: i32, n: i32, nwritten_ptr: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            let mut out = Vec::new();
            for i in 0..n.max(0) {
                let Some(iov) = read(&c, iovs + i * 8, 8) else {
                    return Ok(errno::FAULT);
                };
                let buf = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                if len != 0 {
                    let Some(bytes) = read(&c, buf, len) else {
                        return Ok(errno::FAULT);
                    };
                    out.extend_from_slice(&bytes);
                }
            }
            let written = out.len() as u32;
            let s = c.data_mut();
            // stdout is logged at info, stderr at error (cpp-host writevImpl).
            let (level, sink) = if fd == 1 {
                (2, &mut s.stdout)
            } else {
                (4, &mut s.stderr)
            };
            sink.extend_from_slice(&out);
            if !out.is_empty() {
                let text = String::from_utf8_lossy(&out);
                s.log.push((level, text.trim_end_matches('\n').to_string()));
            }
            Ok(if write_u32(&mut c, nwritten_ptr, written) {
                errno::SUCCESS
            } else {
                errno::FAULT
            })
        }
    );
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |c, count_ptr: i32, size_ptr: i32| -> i32 {
            let env = c.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            let ok = write_u32(&mut c, count_ptr, env.len() as u32)
                && write_u32(&mut c, size_ptr, size as u32);
            Ok(if ok { errno::SUCCESS } else { errno::FAULT })
        }
    );
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "environ_get",
        |c, array_ptr: i32, buf_ptr: i32| -> i32 {
            let env = c.data().env.clone();
            let (mut array, mut buf) = (array_ptr, buf_ptr);
            for (k, v) in env {
                let entry = format!("{k}={v}\0");
                if !write_u32(&mut c, array, buf as u32) || !write(&mut c, buf, entry.as_bytes()) {
                    return Ok(errno::FAULT);
                }
                buf += entry.len() as i32;
                array += 4;
            }
            Ok(errno::SUCCESS)
        }
    );
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "clock_time_get",
        |c, id: i32, _precision: i64, ptr: i32| -> i32 {
            let t = match id {
                0 => c.data().now_ns,
                1 => c.data().mono_ns,
                _ => return Ok(errno::NOTSUP),
            };
            Ok(if write_u64(&mut c, ptr, t) {
                errno::SUCCESS
            } else {
                errno::FAULT
            })
        }
    );
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "random_get",
        |c, ptr: i32, len: i32| -> i32 {
            let len = len as u32 as usize;
            // PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES
            if len > 64 * 1024 {
                return Ok(errno::INVAL);
            }
            let bytes: Vec<u8> = (0..len).map(|_| c.data_mut().next_random()).collect();
            Ok(if write(&mut c, ptr, &bytes) {
                errno::SUCCESS
            } else {
                errno::FAULT
            })
        }
    );
    wrap!(
        linker,
        "wasi_snapshot_preview1",
        "proc_exit",
        |c, code: i32| -> () {
            // cpp-host logs "wasi_unstable proc_exit" and returns.
            c.data_mut().violations.push(format!("proc_exit({code})"));
            Ok(())
        }
    );
    Ok(())
}

fn mutate_map(c: &mut C<'_>, t: i32, f: impl FnOnce(&mut Pairs)) -> Result<i32> {
    let s = c.data_mut();
    let ctx = s.context();
    // Envoy `getMap`: only the request headers are writable here, and only while they exist.
    if t != map::REQUEST_HEADERS {
        return Ok(status::BAD_ARGUMENT);
    }
    match s
        .contexts
        .get_mut(&ctx)
        .and_then(|c| c.request_headers.as_mut())
    {
        Some(m) => {
            f(m);
            Ok(status::OK)
        }
        None => Ok(status::BAD_ARGUMENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_format_is_cpp_hosts() {
        // u32 count, (u32 key len, u32 value len) per pair, then key NUL value NUL each.
        let pairs: Pairs = vec![
            (b":path".to_vec(), b"/x".to_vec()),
            (b"a".to_vec(), b"\xff".to_vec()),
        ];
        let bytes = marshal_pairs(&pairs);
        let mut want = Vec::new();
        for w in [2u32, 5, 2, 1, 1] {
            want.extend_from_slice(&w.to_le_bytes());
        }
        want.extend_from_slice(b":path\0/x\0a\0\xff\0");
        assert_eq!(bytes, want);
        assert_eq!(unmarshal_pairs(&bytes), pairs);
        // Malformed (a missing NUL, trailing bytes, a short buffer): an empty list.
        let mut bad = bytes.clone();
        bad[bytes.len() - 1] = b'x';
        assert!(unmarshal_pairs(&bad).is_empty());
        assert!(unmarshal_pairs(&[bytes.as_slice(), b"x"].concat()).is_empty());
        assert!(unmarshal_pairs(&bytes[..3]).is_empty());
    }

    #[test]
    fn shared_data_cas_rules() {
        let mut d = SharedData::default();
        assert_eq!(d.set(b"k", b"v1", 0), status::OK);
        let (_, cas) = d.get(b"k").unwrap();
        assert_eq!(d.set(b"k", b"v2", cas + 1), status::CAS_MISMATCH);
        assert_eq!(d.set(b"k", b"v2", cas), status::OK);
        assert_eq!(d.get(b"k").unwrap().0, b"v2");
        assert_eq!(d.set(b"k", b"v3", 0), status::OK, "cas 0 always writes");
    }
}
