//! One VM (one Envoy worker's instance of the module) and the calls Envoy makes into it.
//!
//! The order of calls copies proxy-wasm-cpp-host and Envoy:
//! - start (cpp-host `WasmBase::startVm`, `ContextBase::onStart`, `onConfigure`): `_initialize`,
//!   `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, vm_config_size)`,
//!   `proxy_on_configure(root, plugin_config_size)`;
//! - a request (Envoy `Context::decodeHeaders`): `proxy_on_context_create(stream, root)`, then
//!   `proxy_on_request_headers(stream, header_count, end_of_stream)`;
//! - after every call into the VM, the deferred actions run (cpp-host `DeferAfterCallActions`):
//!   a local reply is sent then, which completes the stream;
//! - a stream that completes or whose client resets (Envoy
//!   `ConnectionManagerImpl::doDeferredStreamDestroy`: `filter_manager_.log()` then
//!   `destroyFilters()` → `Context::onDestroy`): `proxy_on_log`, `proxy_on_done`,
//!   `proxy_on_delete`. Envoy does not cancel callouts then: they belong to the root context;
//! - a callout answer (Envoy `Context::onHttpCallSuccess` / `onHttpCallFailure`):
//!   `proxy_on_http_call_response(root, token, headers, body_size, trailers)`, with
//!   `(0, 0, 0)` and no answer headers or body on a reset;
//! - the timer: `proxy_on_tick(root)` while the tick period is not zero.
//!
//! A trap (or a call that runs out of fuel, i.e. hangs) fails the VM: later calls return the
//! same [`Trap`], as Envoy stops calling a failed VM.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::OnceLock;

use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, Store, TypedFunc, WasmParams, WasmResults,
};

use crate::abi::{status, ACTION_CONTINUE};
use crate::host::{
    add_imports, CallResponse, Ctx, Deferred, HostState, LocalReply, Pairs, SharedData,
};

/// Instructions one call into the VM may run (about a second of Cranelift code): more is a hang.
const FUEL_PER_CALL: u64 = 4_000_000_000;

/// The released module: `STS_GATEWAY_WASM`, or `target/sts_gateway.wasm` of this repository.
pub fn module_path() -> PathBuf {
    std::env::var_os("STS_GATEWAY_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sts_gateway.wasm")
        })
}

struct Compiled {
    engine: Engine,
    pre: InstancePre<HostState>,
}

/// The module, compiled once per process; each [`Vm`] is a fresh instance of it.
fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        let path = module_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): run `make build` first",
                path.display()
            )
        });
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).expect("wasmtime engine");
        let module = Module::new(&engine, &bytes).expect("compile the module");
        let mut linker = Linker::new(&engine);
        add_imports(&mut linker).expect("imports");
        let pre = linker
            .instantiate_pre(&module)
            .expect("every import of the module is provided by the host");
        Compiled { engine, pre }
    })
}

/// Names of the module's imports (to check the host covers them all).
pub fn module_imports() -> Vec<String> {
    let c = compiled();
    c.pre
        .module()
        .imports()
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect()
}

/// What the module did wrong: a trap, or a call that did not return.
#[derive(Debug, Clone)]
pub struct Trap {
    /// The call into the VM, e.g. `proxy_on_request_headers(2)`.
    pub call: String,
    /// The trap code (e.g. "wasm `unreachable` instruction executed") or the host's error.
    pub message: String,
    /// wasmtime's full report (wasm backtrace).
    pub detail: String,
    /// What the module logged at error or critical level, and wrote to stderr: the SDK's panic
    /// hook logs the panic message (`panicked at ...`) there before the abort.
    pub stderr: String,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the module trapped in {}: {}\nmodule log: {}",
            self.call,
            self.message,
            self.stderr.trim_end()
        )
    }
}

/// How a stream ended for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `proxy_send_local_response`.
    Local(LocalReply),
    /// The filter let the request through (`Continue`, or `proxy_continue_stream` later).
    Continue,
    /// `proxy_close_stream`: Envoy resets the stream.
    Reset,
}

impl Reply {
    pub fn local(&self) -> Option<&LocalReply> {
        match self {
            Reply::Local(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub id: u32,
    pub headers: Pairs,
    /// Every reply, in order (more than one is a bug).
    pub replies: Vec<Reply>,
    /// Replies asked for after the stream had ended (client gone or already answered).
    pub late_replies: Vec<Reply>,
    /// The client reset the stream before it was answered.
    pub client_left: bool,
    /// `proxy_on_delete` was called.
    pub deleted: bool,
}

struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: TypedFunc<(i32, i32), i32>,
    on_configure: TypedFunc<(i32, i32), i32>,
    on_tick: TypedFunc<i32, ()>,
    on_request_headers: TypedFunc<(i32, i32, i32), i32>,
    on_http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    on_done: TypedFunc<i32, i32>,
    /// Optional, as in proxy-wasm-cpp-host (`ContextBase::onLog` returns when the module
    /// does not export it); the filter exports none.
    on_log: Option<TypedFunc<i32, ()>>,
    on_delete: TypedFunc<i32, ()>,
}

/// What Envoy gives a VM: plugin configuration, environment, clusters, clock, shared data.
#[derive(Clone)]
pub struct Setup {
    pub plugin_config: Vec<u8>,
    pub env: Vec<(String, String)>,
    pub clusters: Vec<String>,
    pub now_ms: u64,
    /// Shared data of the vm_id (give two VMs the same one to model two workers).
    pub shared: Rc<RefCell<SharedData>>,
}

/// A callout answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Response {
        headers: Pairs,
        body: Vec<u8>,
        trailers: Pairs,
    },
    /// Envoy `onHttpCallFailure` (connection reset, or the answer exceeded the buffer limit).
    Reset,
}

impl Answer {
    pub fn status(code: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Answer {
        let mut h: Pairs = vec![(b":status".to_vec(), code.to_string().into_bytes())];
        h.extend(
            headers
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec())),
        );
        Answer::Response {
            headers: h,
            body: body.to_vec(),
            trailers: Vec::new(),
        }
    }

    /// What Envoy's async client delivers when the callout's timeout passes: a local 504.
    pub fn timeout() -> Answer {
        Answer::status(
            504,
            &[("content-length", b"24"), ("content-type", b"text/plain")],
            b"upstream request timeout",
        )
    }
}

pub struct Vm {
    store: Store<HostState>,
    ex: Exports,
    pub root: u32,
    pub streams: BTreeMap<u32, Stream>,
    pub trap: Option<Trap>,
}

impl Vm {
    /// A new VM: instantiate, `_initialize`, create the root context, start, configure.
    /// `Err` if the module traps, or refuses to start or its configuration (as a string).
    pub fn start(setup: &Setup) -> Result<Vm, String> {
        let c = compiled();
        let mut state = HostState::new(setup.now_ms, setup.shared.clone());
        state.plugin_config = setup.plugin_config.clone();
        state.env = setup.env.clone();
        state.clusters = setup.clusters.clone();
        let mut store = Store::new(&c.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(FUEL_PER_CALL).map_err(|e| e.to_string())?;
        let instance = c
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiate: {e:?}"))?;
        let func = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| format!("the module does not export {name}"))
        };
        macro_rules! typed {
            ($name:literal) => {
                func(&mut store, $name)?
                    .typed(&store)
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        let ex = Exports {
            initialize: match instance.get_func(&mut store, "_initialize") {
                Some(f) => Some(f.typed(&store).map_err(|e| e.to_string())?),
                None => None,
            },
            on_context_create: typed!("proxy_on_context_create"),
            on_vm_start: typed!("proxy_on_vm_start"),
            on_configure: typed!("proxy_on_configure"),
            on_tick: typed!("proxy_on_tick"),
            on_request_headers: typed!("proxy_on_request_headers"),
            on_http_call_response: typed!("proxy_on_http_call_response"),
            on_done: typed!("proxy_on_done"),
            on_log: match instance.get_func(&mut store, "proxy_on_log") {
                Some(f) => Some(f.typed(&store).map_err(|e| e.to_string())?),
                None => None,
            },
            on_delete: typed!("proxy_on_delete"),
        };
        let malloc: TypedFunc<i32, i32> = typed!("proxy_on_memory_allocate");
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or("the module exports no memory")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().malloc = Some(malloc);

        let mut vm = Vm {
            store,
            ex,
            root: 0,
            streams: BTreeMap::new(),
            trap: None,
        };
        if let Some(init) = vm.ex.initialize.clone() {
            vm.store.data_mut().restrict_start();
            let r = vm.call("_initialize", 0, init, ());
            vm.store.data_mut().restrict(None);
            r.map_err(|t| t.to_string())?;
        }
        let root = vm.store.data_mut().alloc_context_id();
        vm.root = root;
        vm.store.data_mut().root_id = root;
        vm.store.data_mut().contexts.insert(root, Ctx::default());
        let f = vm.ex.on_context_create.clone();
        vm.call("proxy_on_context_create", root, f, (root as i32, 0))
            .map_err(|t| t.to_string())?;
        let size = vm.store.data().vm_config.len() as i32;
        let f = vm.ex.on_vm_start.clone();
        if vm
            .call("proxy_on_vm_start", root, f, (root as i32, size))
            .map_err(|t| t.to_string())?
            == 0
        {
            return Err("proxy_on_vm_start returned false".into());
        }
        vm.run_deferred().map_err(|t| t.to_string())?;
        let size = vm.store.data().plugin_config.len() as i32;
        vm.store.data_mut().in_configure = true;
        let f = vm.ex.on_configure.clone();
        let ok = vm.call("proxy_on_configure", root, f, (root as i32, size));
        vm.store.data_mut().in_configure = false;
        if ok.map_err(|t| t.to_string())? == 0 {
            return Err(format!(
                "proxy_on_configure returned false; log: {:?}",
                vm.store.data().log
            ));
        }
        vm.run_deferred().map_err(|t| t.to_string())?;
        Ok(vm)
    }

    pub fn host(&self) -> &HostState {
        self.store.data()
    }

    pub fn host_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// One call into the VM as context `ctx`'s callback.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        ctx: u32,
        f: TypedFunc<P, R>,
        params: P,
    ) -> Result<R, Trap> {
        if let Some(t) = &self.trap {
            return Err(t.clone());
        }
        let s = self.store.data_mut();
        // cpp-host `SaveRestoreContext`: the effective context never outlives a call.
        s.current = ctx;
        s.effective = 0;
        let _ = self.store.set_fuel(FUEL_PER_CALL);
        let r = f.call(&mut self.store, params);
        let s = self.store.data_mut();
        s.current = 0;
        s.effective = 0;
        r.map_err(|e| {
            let message = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::OutOfFuel) => {
                    format!("no return after {FUEL_PER_CALL} instructions (a hang)")
                }
                Some(trap) => trap.to_string(),
                None => format!("{e}"),
            };
            let s = self.store.data();
            let mut log: Vec<String> = s
                .log
                .iter()
                .filter(|(l, _)| *l >= 4)
                .map(|(_, m)| m.clone())
                .collect();
            log.push(s.stderr_text());
            let t = Trap {
                call: format!("{name}({ctx})"),
                message,
                detail: format!("{e:?}"),
                stderr: log.join("\n"),
            };
            self.trap = Some(t.clone());
            t
        })
    }

    /// The actions Envoy runs after a VM call returns; they may call into the VM again.
    fn run_deferred(&mut self) -> Result<(), Trap> {
        self.store.data_mut().stop_iteration = false;
        while let Some(d) = self.store.data_mut().deferred.pop_front() {
            match d {
                Deferred::LocalReply { ctx, reply } => self.finish(ctx, Reply::Local(reply))?,
                Deferred::Continue { ctx } => {
                    let paused = self
                        .host()
                        .contexts
                        .get(&ctx)
                        .is_some_and(|c| c.request_headers.is_some());
                    if paused {
                        self.finish(ctx, Reply::Continue)?;
                    }
                }
                Deferred::Reset { ctx } => self.finish(ctx, Reply::Reset)?,
            }
        }
        Ok(())
    }

    /// Stream `ctx` gets `reply`; it then ends (the response completed or was reset).
    fn finish(&mut self, ctx: u32, reply: Reply) -> Result<(), Trap> {
        let Some(st) = self.streams.get_mut(&ctx) else {
            self.host_mut()
                .violations
                .push(format!("reply to unknown stream {ctx}"));
            return Ok(());
        };
        if st.deleted || st.client_left || !st.replies.is_empty() {
            st.late_replies.push(reply);
            return Ok(());
        }
        st.replies.push(reply);
        self.end_stream(ctx)
    }

    /// Envoy `doDeferredStreamDestroy`: log, then destroy the filter (done, delete).
    fn end_stream(&mut self, ctx: u32) -> Result<(), Trap> {
        if self.streams.get(&ctx).is_none_or(|s| s.deleted) {
            return Ok(());
        }
        if let Some(c) = self.host_mut().contexts.get_mut(&ctx) {
            c.request_headers = None;
        }
        let (log, done, delete) = (
            self.ex.on_log.clone(),
            self.ex.on_done.clone(),
            self.ex.on_delete.clone(),
        );
        if let Some(log) = log {
            self.call("proxy_on_log", ctx, log, ctx as i32)?;
        }
        self.call("proxy_on_done", ctx, done, ctx as i32)?;
        self.call("proxy_on_delete", ctx, delete, ctx as i32)?;
        self.host_mut().contexts.remove(&ctx);
        if let Some(st) = self.streams.get_mut(&ctx) {
            st.deleted = true;
        }
        Ok(())
    }

    /// A request's headers arrive: Envoy's request header map is `:authority`, `:path`,
    /// `:method`, `:scheme`, then `headers` (names lower-case, as Envoy's codecs deliver them).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(Vec<u8>, Vec<u8>)],
        end_of_stream: bool,
    ) -> Result<u32, Trap> {
        let mut all: Pairs = vec![
            (b":authority".to_vec(), b"api-gw-service-nmn.local".to_vec()),
            (b":path".to_vec(), path.as_bytes().to_vec()),
            (b":method".to_vec(), method.as_bytes().to_vec()),
            (b":scheme".to_vec(), b"https".to_vec()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
        );
        // Added by Envoy's connection manager before the filters run.
        all.push((b"x-forwarded-proto".to_vec(), b"https".to_vec()));
        let root = self.root;
        let ctx = self.host_mut().alloc_context_id();
        self.host_mut().contexts.insert(
            ctx,
            Ctx {
                parent: root,
                request_headers: None,
            },
        );
        self.streams.insert(
            ctx,
            Stream {
                id: ctx,
                headers: all.clone(),
                replies: Vec::new(),
                late_replies: Vec::new(),
                client_left: false,
                deleted: false,
            },
        );
        let f = self.ex.on_context_create.clone();
        self.call("proxy_on_context_create", ctx, f, (ctx as i32, root as i32))?;
        self.run_deferred()?;
        let count = all.len() as i32;
        if let Some(c) = self.host_mut().contexts.get_mut(&ctx) {
            c.request_headers = Some(all);
        }
        let f = self.ex.on_request_headers.clone();
        let action = self.call(
            "proxy_on_request_headers",
            ctx,
            f,
            (ctx as i32, count, i32::from(end_of_stream)),
        )?;
        // cpp-host `convertVmCallResultToFilterHeadersStatus`: any local reply during the call
        // turns Continue into StopAllIterationAndWatermark.
        let continues = action == ACTION_CONTINUE && !self.host().stop_iteration;
        self.run_deferred()?;
        if continues {
            self.finish(ctx, Reply::Continue)?;
            self.run_deferred()?;
        }
        Ok(ctx)
    }

    /// The root context's timer fires (if the module set a period).
    pub fn tick(&mut self) -> Result<(), Trap> {
        if self.host().tick_period_ms == 0 {
            return Ok(());
        }
        let (f, root) = (self.ex.on_tick.clone(), self.root);
        self.call("proxy_on_tick", root, f, root as i32)?;
        self.run_deferred()
    }

    /// Host time passes.
    pub fn advance(&mut self, ms: u64) {
        let s = self.host_mut();
        s.now_ns += ms * 1_000_000;
        s.mono_ns += ms * 1_000_000;
    }

    pub fn now_ms(&self) -> u64 {
        self.host().now_ns / 1_000_000
    }

    /// Tokens of the callouts waiting for an answer, oldest first.
    pub fn pending(&self) -> Vec<u32> {
        self.host().pending.keys().copied().collect()
    }

    /// Delivers the answer of callout `token` to the root context.
    pub fn answer(&mut self, token: u32, answer: Answer) -> Result<(), Trap> {
        if self.host_mut().pending.remove(&token).is_none() {
            return Ok(());
        }
        let (f, root) = (self.ex.on_http_call_response.clone(), self.root);
        let r = match answer {
            Answer::Response {
                headers,
                body,
                trailers,
            } => {
                let counts = (
                    headers.len() as i32,
                    body.len() as i32,
                    trailers.len() as i32,
                );
                self.host_mut().call_response = Some(CallResponse {
                    headers,
                    body,
                    trailers,
                });
                let r = self.call(
                    "proxy_on_http_call_response",
                    root,
                    f,
                    (root as i32, token as i32, counts.0, counts.1, counts.2),
                );
                self.host_mut().call_response = None;
                r
            }
            Answer::Reset => {
                self.host_mut().call_status = (status::BROKEN_CONNECTION as u32, b"reset".to_vec());
                let r = self.call(
                    "proxy_on_http_call_response",
                    root,
                    f,
                    (root as i32, token as i32, 0, 0, 0),
                );
                self.host_mut().call_status = (0, Vec::new());
                r
            }
        };
        r?;
        self.run_deferred()
    }

    /// The client of stream `ctx` resets it (if it has not ended yet).
    pub fn leave(&mut self, ctx: u32) -> Result<(), Trap> {
        match self.streams.get_mut(&ctx) {
            Some(st) if !st.deleted && st.replies.is_empty() => st.client_left = true,
            _ => return Ok(()),
        }
        self.end_stream(ctx)?;
        self.run_deferred()
    }

    /// Streams not yet ended.
    pub fn open_streams(&self) -> Vec<u32> {
        self.streams
            .values()
            .filter(|s| !s.deleted)
            .map(|s| s.id)
            .collect()
    }

    pub fn replies(&self, ctx: u32) -> &[Reply] {
        self.streams
            .get(&ctx)
            .map(|s| s.replies.as_slice())
            .unwrap_or_default()
    }

    /// The only local reply of stream `ctx`, if it got exactly one reply and it is local.
    pub fn local_reply(&self, ctx: u32) -> Option<&LocalReply> {
        match self.replies(ctx) {
            [Reply::Local(r)] => Some(r),
            _ => None,
        }
    }
}
