#![no_main]
// The compiled module (target/sts_gateway.wasm, `make build`) in the proxy-wasm host of
// tests/module-host: arbitrary requests, callout answers, ticks and clients that leave; a trap,
// a hang or a request without exactly one reply is a crash.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sts_gateway_module_host::scenario::fuzz_one(data));
