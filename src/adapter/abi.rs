//! The host functions of proxy-wasm ABI 0.2.1 that this filter calls, as Envoy implements them
//! (proxy-wasm-cpp-host), each wrapped so that whatever status or bytes the host returns
//! become a `Result`: nothing here can trap. Statuses are plain `u32` (an out-of-range value
//! in a Rust enum would be undefined behaviour), and data the host returns is bytes.
//!
//! Memory the host returns was allocated through our `proxy_on_memory_allocate` export
//! (`exports.rs`) as a boxed slice of exactly that size, and is taken back as such.
use std::time::Duration;

use crate::host::wire;

/// A proxy-wasm status other than `Ok` (1 NotFound, 2 BadArgument, 7 Empty, 8 CasMismatch,
/// 10 InternalFailure, or anything else a host returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

const NOT_FOUND: Status = Status(1);

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpCallResponseHeaders = 6,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum BufferType {
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    if status == 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

/// Takes back bytes the host wrote through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` is null, or was returned by `proxy_on_memory_allocate(size)` and not taken back yet.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the allocator export made exactly this boxed slice (see `exports.rs`).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size)) }.into_vec()
}

/// Calls a host function that returns bytes; `Ok(None)` when it says NotFound.
fn bytes_from(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let status = call(&mut data, &mut size);
    // SAFETY: the host set `data`/`size` from our allocator, or left them null/0.
    let bytes = unsafe { take(data, size) };
    match check(status) {
        Ok(()) => Ok(Some(bytes)),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live str.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

pub fn now_ns() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: a valid out-pointer.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: plain value.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn buffer(kind: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: valid out-pointers (see `bytes_from`).
    bytes_from(|d, s| unsafe { proxy_get_buffer_bytes(kind as u32, start, max, d, s) })
}

/// Every header of a map, as bytes. A map the host serialized wrongly is `SerializationFailure`.
pub fn header_pairs(map: MapType) -> Result<Vec<wire::RawHeader>, Status> {
    // SAFETY: valid out-pointers (see `bytes_from`).
    let bytes = bytes_from(|d, s| unsafe { proxy_get_header_map_pairs(map as u32, d, s) })?;
    wire::decode_map(&bytes.unwrap_or_default()).ok_or(Status(3))
}

pub fn header_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: a live str and valid out-pointers (see `bytes_from`).
    bytes_from(|d, s| unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), d, s)
    })
}

pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = wire::encode_map(headers);
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = wire::encode_map(headers);
    let trailers = wire::encode_map(&[]);
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    // SAFETY: pointers and lengths of live buffers, a valid out-pointer.
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: plain value.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// A shared-data value and its cas; `(None, None)` when the key is absent.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut cas = 0u32;
    // SAFETY: a live str and valid out-pointers (see `bytes_from`).
    let value = bytes_from(|d, s| unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), d, s, &mut cas)
    })?;
    Ok(match value {
        Some(v) => (Some(v), (cas != 0).then_some(cas)),
        None => (None, None),
    })
}

pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: a live str and a valid out-pointer.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: plain values.
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: plain values.
    check(unsafe { proxy_record_metric(id, value) })
}
