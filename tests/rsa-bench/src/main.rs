//! One RS256 backend (a cargo feature) timed on a 2048- and a 4096-bit key: `run.sh` builds it for
//! wasm32-wasip1 and runs it in node (V8). Prints microseconds per verification.
#![allow(unused_imports, dead_code, unreachable_code)]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::time::Instant;

#[allow(dead_code)]
#[macro_use]
#[path = "../../../src/crypto/rsa_math.rs"]
mod rsa_math;

#[cfg(feature = "hand64")]
#[allow(dead_code)]
mod limb64 {
    modulus_impl!(Modulus, u64, u128);
}

/// DER DigestInfo prefix of SHA-256 (RFC 8017 §9.2 note 1).
#[allow(dead_code)]
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    0x05, 0x00, 0x04, 0x20,
];

#[allow(dead_code)]
fn expected_em(len: usize, msg: &[u8]) -> Vec<u8> {
    let mut em = vec![0xff; len];
    em[0] = 0;
    em[1] = 1;
    let t = len - 19 - 32;
    em[t - 1] = 0;
    em[t..t + 19].copy_from_slice(&SHA256_PREFIX);
    em[t + 19..].copy_from_slice(&Sha256::digest(msg));
    em
}

trait Backend {
    fn verify(&self, token: &str, msg: &[u8], sig: &[u8]) -> bool;
}

#[cfg(feature = "jwt")]
mod b {
    use jwt_simple::prelude::*;
    pub struct K(RS256PublicKey);
    pub fn new(n: &[u8]) -> K {
        K(RS256PublicKey::from_components(n, &[1, 0, 1]).unwrap())
    }
    impl super::Backend for K {
        fn verify(&self, token: &str, _: &[u8], _: &[u8]) -> bool {
            let o = VerificationOptions { artificial_time: Some(Duration::from_secs(1_800_000_000)), ..Default::default() };
            self.0.verify_token::<NoCustomClaims>(token, Some(o)).is_ok()
        }
    }
}

#[cfg(feature = "rsa09")]
mod b {
    use rsa09::{BigUint, Pkcs1v15Sign, RsaPublicKey};
    use sha2::{Digest, Sha256};
    pub struct K(RsaPublicKey);
    pub fn new(n: &[u8]) -> K {
        K(RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from(65537u32)).unwrap())
    }
    impl super::Backend for K {
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            self.0.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig).is_ok()
        }
    }
}

#[cfg(feature = "rsa010")]
mod b {
    use rsa010::{BoxedUint, Pkcs1v15Sign, RsaPublicKey};
    use sha2_11::{Digest, Sha256};
    pub struct K(RsaPublicKey);
    pub fn new(n: &[u8]) -> K {
        let bits = n.len() as u32 * 8;
        K(RsaPublicKey::new(BoxedUint::from_be_slice(n, bits).unwrap(), BoxedUint::from_be_slice(&[1, 0, 1], 32).unwrap()).unwrap())
    }
    impl super::Backend for K {
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            self.0.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig).is_ok()
        }
    }
}

#[cfg(feature = "numbig")]
mod b {
    use num_bigint::BigUint;
    pub struct K(BigUint, usize);
    pub fn new(n: &[u8]) -> K {
        K(BigUint::from_bytes_be(n), n.len())
    }
    impl super::Backend for K {
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            let s = BigUint::from_bytes_be(sig);
            if sig.len() != self.1 || s >= self.0 {
                return false;
            }
            let m = s.modpow(&BigUint::from(65537u32), &self.0).to_bytes_be();
            let em = super::expected_em(self.1, msg);
            m.len() == self.1 - 1 && m[..] == em[1..]
        }
    }
}

#[cfg(feature = "lazy")]
#[allow(dead_code)]
mod lazy;

#[cfg(feature = "lazy")]
mod b {
    use super::lazy::lazy_impl::Modulus;
    pub struct K(Modulus, super::rsa_math::limb32::Modulus);
    pub fn new(n: &[u8]) -> K {
        K(Modulus::new(n).unwrap(), super::rsa_math::limb32::Modulus::new(n).unwrap())
    }
    impl super::Backend for K {
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            match self.0.pow65537(sig) {
                Some(em) => em == super::expected_em(self.0.len(), msg),
                None => false,
            }
        }
    }
    /// Same output as the 32-bit limbs for pseudo-random s.
    pub fn check(k: &K) {
        let mut x: u64 = 88172645463325252;
        for _ in 0..200 {
            let s: Vec<u8> = (0..k.0.len()).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            assert_eq!(k.0.pow65537(&s), k.1.pow65537(&s));
        }
    }
}

#[cfg(any(feature = "hand32", feature = "hand64"))]
mod b {
    #[cfg(feature = "hand32")]
    use super::rsa_math::limb32::Modulus;
    #[cfg(feature = "hand64")]
    use super::limb64::Modulus;
    pub struct K(Modulus);
    pub fn new(n: &[u8]) -> K {
        K(Modulus::new(n).unwrap())
    }
    impl super::Backend for K {
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            match self.0.pow65537(sig) {
                Some(em) => em == super::expected_em(self.0.len(), msg),
                None => false,
            }
        }
    }
}

/// The gateway's RS256 verifier: the whole token (`gw`) or the signature only (`gw_sig`).
#[cfg(any(feature = "gw", feature = "gw_sig"))]
mod b {
    use sts_gateway::crypto::rsa_sig::RsaKey as Rs256Key;
    pub struct K(Rs256Key);
    pub fn new(n: &[u8]) -> K {
        K(Rs256Key::from_components("RS256", n, &[1, 0, 1]).unwrap())
    }
    impl super::Backend for K {
        #[cfg(feature = "gw")]
        fn verify(&self, token: &str, _: &[u8], _: &[u8]) -> bool {
            use jwt_simple::prelude::*;
            let o = VerificationOptions { artificial_time: Some(Duration::from_secs(1_800_000_000)), ..Default::default() };
            self.0.verify_token(token, &o).is_ok()
        }
        #[cfg(feature = "gw_sig")]
        fn verify(&self, _: &str, msg: &[u8], sig: &[u8]) -> bool {
            self.0.verify_signature(msg, sig)
        }
    }
}

#[cfg(feature = "path")]
mod path;
#[cfg(feature = "instr")]
mod instr;
#[cfg(feature = "ec")]
mod ec;
#[cfg(feature = "gen")]
mod gen;

fn main() {
    #[cfg(feature = "gen")]
    {
        gen::run();
        return;
    }
    #[cfg(feature = "instr")]
    {
        instr::run();
        return;
    }
    #[cfg(feature = "ec")]
    {
        ec::run();
        return;
    }
    #[cfg(feature = "path")]
    {
        path::run();
        return;
    }
    #[cfg(feature = "gw")]
    parts();
    #[cfg(any(feature = "jwt", feature = "rsa09", feature = "rsa010", feature = "numbig", feature = "lazy",
              feature = "hand32", feature = "hand64", feature = "gw", feature = "gw_sig"))]
    for (bits, n, token) in [
        (2048, &include_bytes!("../data/n2048.bin")[..], include_str!("../data/token2048.txt")),
        (4096, &include_bytes!("../data/n4096.bin")[..], include_str!("../data/token4096.txt")),
    ] {
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let key = b::new(n);
        #[cfg(feature = "lazy")]
        b::check(&key);
        assert!(key.verify(token, msg.as_bytes(), &sig), "valid signature rejected");
        let mut bad = sig.clone();
        bad[10] ^= 1;
        let bad_token = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&bad));
        assert!(!key.verify(&bad_token, msg.as_bytes(), &bad), "bad signature accepted");
        let iters = if bits == 2048 { 20 } else { 5 };
        for _ in 0..iters * 10 {
            key.verify(token, msg.as_bytes(), &sig);
        }
        let mut best = f64::MAX;
        for _ in 0..60 {
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(key.verify(token, msg.as_bytes(), &sig));
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
        println!("{bits}: {best:.1} us/verify");
    }
}

/// Pieces of the token path, 2048-bit token.
#[cfg(feature = "gw")]
fn parts() {
    use jwt_simple::prelude::*;
    let token = include_str!("../data/token2048.txt");
    let (_, rest) = token.split_once('.').unwrap();
    let (claims_b64, _) = rest.split_once('.').unwrap();
    let time = |name: &str, f: &dyn Fn()| {
        for _ in 0..2000 { f(); }
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = Instant::now();
            for _ in 0..100 { f(); }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / 100.0);
        }
        println!("  {name}: {best:.2} us");
    };
    time("decode_metadata", &|| { std::hint::black_box(Token::decode_metadata(std::hint::black_box(token)).is_ok()); });
    time("b64 claims", &|| { std::hint::black_box(URL_SAFE_NO_PAD.decode(std::hint::black_box(claims_b64)).unwrap()); });
    let raw = URL_SAFE_NO_PAD.decode(claims_b64).unwrap();
    time("claims json", &|| { std::hint::black_box(serde_json::from_slice::<JWTClaims<serde_json::Map<String, serde_json::Value>>>(std::hint::black_box(&raw)).is_ok()); });
    time("sha256", &|| { std::hint::black_box(Sha256::digest(std::hint::black_box(token.as_bytes()))); });
}
