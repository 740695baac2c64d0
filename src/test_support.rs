//! Keys, tokens and claims the unit tests of several layers share. A leaf: it imports no module
//! of the crate, so a test of any layer can use it without two modules importing each other.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::algorithms::RS256KeyPair;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Test keys are slow to generate: make two once and share them.
pub fn keypairs() -> &'static [RS256KeyPair; 2] {
    static KEYS: OnceLock<[RS256KeyPair; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            RS256KeyPair::generate(2048).unwrap().with_key_id("sig-1"),
            RS256KeyPair::generate(2048).unwrap().with_key_id("sig-2"),
        ]
    })
}

pub fn jwk_json(kp: &RS256KeyPair, kid: &str, use_: &str, alg: &str) -> serde_json::Value {
    let c = kp.public_key().to_components();
    serde_json::json!({"kty": "RSA", "use": use_, "alg": alg, "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)})
}

/// The backend jwt-simple uses (superboring over `rsa` 0.9): the padding and digest of `alg`.
pub fn oracle_parts(alg: &str) -> (superboring::rsa::Padding, superboring::hash::MessageDigest) {
    use superboring::{hash::MessageDigest, rsa::Padding};
    let padding = if alg.starts_with("PS") {
        Padding::PKCS1_PSS
    } else {
        Padding::PKCS1
    };
    let digest = match &alg[2..] {
        "256" => MessageDigest::sha256(),
        "384" => MessageDigest::sha384(),
        _ => MessageDigest::sha512(),
    };
    (padding, digest)
}

/// A signature of `message` under `alg` with test key `key` (PSS salt as long as the hash).
pub fn sign_raw(alg: &str, key: usize, message: &[u8]) -> Vec<u8> {
    let der = keypairs()[key].to_der().unwrap();
    let rsa = superboring::rsa::Rsa::private_key_from_der(&der).unwrap();
    let pkey = superboring::pkey::PKey::from_rsa(rsa).unwrap();
    let (padding, digest) = oracle_parts(alg);
    let mut signer = superboring::sign::Signer::new(digest, &pkey).unwrap();
    signer.set_rsa_padding(padding).unwrap();
    signer.update(message).unwrap();
    signer.sign_to_vec().unwrap()
}

/// The issuer of the test tokens, and the time they are checked at.
pub const ISS: &str = "https://api-gw-service-nmn.local/keycloak/realms/shasta";
pub const NOW: u64 = 1_800_000_000;

pub fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": ["shasta", "account"], "azp": "shasta", "typ": "Bearer",
        "sub": "u-1", "preferred_username": "admin", "exp": NOW + 3600, "iat": NOW - 10,
        "resource_access": {"shasta": {"roles": ["admin"]}}});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

pub fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Signs arbitrary header/claims JSON with key 0 (sig-1) or 1 (the enc key's private half).
pub fn sign(header: Value, claims: Value, key: usize) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign_raw("RS256", key, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Property-test cases: `PROPTEST_CASES` (`make soak` raises it), else the test's own default.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
