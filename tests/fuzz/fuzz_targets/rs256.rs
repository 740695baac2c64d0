#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sts_gateway_fuzz::rs256(data));
