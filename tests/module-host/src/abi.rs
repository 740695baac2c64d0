//! Numbers of the proxy-wasm ABI 0.2.1 as Envoy uses them (proxy-wasm-cpp-host's `WasmResult`,
//! map and buffer types; the Rust SDK 0.2.5 `types.rs` has the same values).

/// `WasmResult` (proxy-wasm-cpp-sdk `proxy_wasm_common.h`).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const PARSE_FAILURE: i32 = 4;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const BROKEN_CONNECTION: i32 = 11;
}

/// `WasmHeaderMapType`.
pub mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const GRPC_INITIAL_METADATA: i32 = 4;
    pub const GRPC_TRAILING_METADATA: i32 = 5;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
    pub const MAX: i32 = 7;
}

/// `WasmBufferType`.
pub mod buffer {
    pub const HTTP_REQUEST_BODY: i32 = 0;
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    pub const DOWNSTREAM_DATA: i32 = 2;
    pub const UPSTREAM_DATA: i32 = 3;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const GRPC_RECEIVE_BUFFER: i32 = 5;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
    pub const CALL_DATA: i32 = 8;
    pub const MAX: i32 = 8;
}

/// `WasmStreamType` (continue_stream / close_stream).
pub mod stream {
    pub const REQUEST: i32 = 0;
    pub const RESPONSE: i32 = 1;
    pub const DOWNSTREAM: i32 = 2;
    pub const UPSTREAM: i32 = 3;
}

/// `FilterHeadersStatus` returned by `proxy_on_request_headers`.
pub const ACTION_CONTINUE: i32 = 0;

/// WASI preview1 errno values used by proxy-wasm-cpp-host's `wasi_unstable_*` functions.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOTSUP: i32 = 58;
}

/// Log levels of `proxy_log` (0 trace .. 5 critical).
pub const LOG_LEVEL_MAX: i32 = 5;
