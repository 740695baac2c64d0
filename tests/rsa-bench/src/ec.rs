//! `--features ec`: the gateway's token verifiers timed per algorithm in V8 (`run.sh ec`): RS256
//! on the harness's 2048-bit key, and ES256, ES384 and EdDSA (`sts_gateway::crypto::ec_sig`) on
//! keys made here by jwt-simple. Prints microseconds per verification, for the signature check
//! alone (`verify_signature` of the signed part) and for the whole token (`verify_token`: base64,
//! header and claims JSON, signature, claim checks).
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use sts_gateway::crypto::ec_sig::EcKey;
use sts_gateway::crypto::rsa_sig::RsaKey;

/// Best of 40 batches, microseconds per call.
fn time(iters: usize, f: &dyn Fn() -> bool) -> f64 {
    for _ in 0..iters * 5 {
        assert!(std::hint::black_box(f()), "a valid signature was refused");
    }
    let mut best = f64::MAX;
    for _ in 0..40 {
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    best
}

fn claims() -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_hours(1)).with_issuer("https://issuer.example").with_subject("bench")
}

fn options() -> VerificationOptions {
    VerificationOptions::default()
}

fn report(alg: &str, verify: &dyn Fn(&[u8], &[u8]) -> bool, whole: &dyn Fn(&str) -> bool, token: &str, iters: usize) {
    let (msg, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    // Negative control: a flipped bit in the signature is refused.
    let mut bad = sig.clone();
    bad[3] ^= 1;
    assert!(!verify(msg.as_bytes(), &bad), "{alg}: a bad signature was accepted");
    let s = time(iters, &|| verify(msg.as_bytes(), &sig));
    let w = time(iters, &|| whole(token));
    println!("{alg}: {s:.1} us/signature, {w:.1} us/token ({} B token)", token.len());
}

pub fn run() {
    let token = include_str!("../data/token2048.txt").trim();
    let rsa = RsaKey::from_components("RS256", include_bytes!("../data/n2048.bin"), &[1, 0, 1]).unwrap();
    let o = VerificationOptions { artificial_time: Some(Duration::from_secs(1_800_000_000)), ..Default::default() };
    report("RS256", &|m, s| rsa.verify_signature(m, s), &|t| rsa.verify_token(t, &o).is_ok(), token, 20);

    let kp = ES256KeyPair::generate();
    let xy = kp.public_key().public_key().to_bytes_uncompressed();
    let key = EcKey::from_jwk("ES256", "EC", "P-256", &xy[1..33], Some(&xy[33..])).unwrap();
    let token = kp.sign(claims()).unwrap();
    let o = options();
    report("ES256", &|m, s| key.verify_signature(m, s), &|t| key.verify_token(t, &o).is_ok(), &token, 20);

    let kp = ES384KeyPair::generate();
    let xy = kp.public_key().public_key().to_bytes_uncompressed();
    let key = EcKey::from_jwk("ES384", "EC", "P-384", &xy[1..49], Some(&xy[49..])).unwrap();
    let token = kp.sign(claims()).unwrap();
    report("ES384", &|m, s| key.verify_signature(m, s), &|t| key.verify_token(t, &o).is_ok(), &token, 10);

    let kp = Ed25519KeyPair::generate();
    let x = kp.public_key().to_bytes();
    let key = EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &x, None).unwrap();
    let token = kp.sign(claims()).unwrap();
    report("EdDSA", &|m, s| key.verify_signature(m, s), &|t| key.verify_token(t, &o).is_ok(), &token, 20);
}
