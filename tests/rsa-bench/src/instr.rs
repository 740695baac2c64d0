//! `--features instr`: the gateway's request path for `make bench-instr`, built natively and run
//! under `valgrind --tool=callgrind --toggle-collect=*instr::measured*`, so that only the
//! measured requests are counted (the JWKS load and the warm-up are not).
//!
//! `rsa-bench DIR SCENARIO N`: DIR holds `n.bin` and `tokens.txt` written by `--features gen` with a
//! fixed `iat` (the third argument of gen, also passed here as `IAT`); SCENARIO is
//! - `b`: one issuer-shaped token, verified once then found in the token cache; every request
//!   signs an AssumeRole and gets the simulated RGW answer (make bench's b),
//! - `c`: a new token on every request (RSA verification each time; make bench's c),
//! - `f`: (b) with reuse on (`reuse.min_remaining_seconds` 600): the credentials minted first are
//!   handed out again (make bench's f).
//!
//! The simulated host's clock is fixed, so the same inputs take the same path: two runs differ only
//! by the random SipHash key of the token cache and of the nonce (a few instructions).
use std::hint::black_box;

/// dlmalloc, the allocator wasi-libc gives the module in wasm, instead of glibc's malloc: closer to
/// what the module runs, and its path does not vary from run to run the way glibc's bins did
/// (up to 1 % of b and f between two identical runs).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use sts_gateway::gateway::lifecycle::Gateway;
use sts_gateway::host::sim::SimHost;

use crate::path::{bearer, gateway_with, mint};

/// Requests before the measured ones (JIT-free here, but caches, allocator pools and lazily built
/// state settle).
const WARM_UP: usize = 20;

#[inline(never)]
fn measured(g: &mut Gateway, host: &mut SimHost, headers: &[Vec<(String, String)>], ctx: &mut u32) {
    for h in headers {
        mint(g, host, *ctx, black_box(h));
        *ctx += 1;
    }
}

pub fn run() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rsa-bench DIR IAT b|c|f N";
    let dir = std::path::Path::new(args.get(1).expect(usage));
    let iat: u64 = args.get(2).expect(usage).parse().expect(usage);
    let scenario = args.get(3).expect(usage).as_str();
    let n: usize = args.get(4).expect(usage).parse().expect(usage);
    let key = std::fs::read(dir.join("n.bin")).expect("n.bin");
    let text = std::fs::read_to_string(dir.join("tokens.txt")).expect("tokens.txt");
    let tokens: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let (reuse, distinct) = match scenario {
        "b" => (false, false),
        "c" => (false, true),
        "f" => (true, false),
        _ => panic!("{usage}"),
    };
    let need = if distinct { WARM_UP + n } else { 1 };
    assert!(tokens.len() >= need, "{} tokens in {}, {need} needed", tokens.len(), dir.display());
    let (mut g, mut host) = gateway_with(reuse, &[("g".into(), key)], (iat + 60) * 1000);
    let pick = |i: usize| bearer(tokens[if distinct { i } else { 0 }]);
    let warm: Vec<_> = (0..WARM_UP).map(pick).collect();
    let headers: Vec<_> = (WARM_UP..WARM_UP + n).map(pick).collect();
    let mut ctx = 100;
    for h in &warm {
        mint(&mut g, &mut host, ctx, h);
        ctx += 1;
    }
    measured(&mut g, &mut host, &headers, &mut ctx);
    println!("{scenario}: {n} requests measured");
}
