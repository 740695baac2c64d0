//! The fuzz targets of sts-gateway as plain functions, so `cargo fuzz` (fuzz_targets/) and a
//! stable `cargo test` replay of the committed corpus (`make test`'s smoke) run the same code.
//!
//! Every function must return normally for every input: a panic, an abort, an overflow or a
//! timeout is a crash.
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::algorithms::RS256KeyPair;
use sts_gateway::config::Config;
use sts_gateway::gateway::flow::Worker;
use sts_gateway::gateway::lifecycle::Gateway;
use sts_gateway::host::sim::SimHost;
use sts_gateway::token::jwks::KeySet;
use sts_gateway::token::jwks_store::MemoryStore;

pub const ISSUER: &str = "https://api-gw-service-nmn.local/keycloak/realms/shasta";
/// 2027-01-15: the fixed "now" of the token target.
pub const NOW_MS: u64 = 1_800_000_000_000;
const KEY_PEM: &str = include_str!("fuzz_key.pem");

fn keypair() -> &'static RS256KeyPair {
    static KP: OnceLock<RS256KeyPair> = OnceLock::new();
    KP.get_or_init(|| {
        RS256KeyPair::from_pem(KEY_PEM)
            .expect("fuzz key")
            .with_key_id("fuzz-1")
    })
}

/// The fixed key set: the fuzz key (`use: sig`), plus a `use: enc` key, as Keycloak publishes.
pub fn jwks_doc() -> String {
    let c = keypair().public_key().to_components();
    let n = URL_SAFE_NO_PAD.encode(&c.n);
    let e = URL_SAFE_NO_PAD.encode(&c.e);
    serde_json::json!({"keys": [
        {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "fuzz-1", "n": n, "e": e},
        {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1", "n": n, "e": e},
    ]})
    .to_string()
}

pub fn config_json() -> String {
    serde_json::json!({
        "issuers": [{"issuer": ISSUER, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
        "rgw": {"cluster": "rgw", "authority": "rgw:8080", "endpoint_url": "http://rgw:8080",
                "role_arn": "arn:aws:iam:::user/STS", "access_key_id": "AKID",
                "secret_access_key": "SECRETSECRETSECRETSECRET"},
        "token_cache_entries": 8
    })
    .to_string()
}

/// A gateway on a simulated host whose keys are already fetched.
fn gateway() -> (Gateway, SimHost) {
    let config = Config::parse(config_json().as_bytes(), &|_| None).expect("fuzz config");
    let mut g = Gateway::new(config);
    let mut host = SimHost::new(Rc::new(MemoryStore::default()), NOW_MS);
    g.on_tick(&mut host, 0);
    let token = *host.pending.keys().next().expect("jwks fetch");
    host.pending.clear();
    host.set_answer(Some(200), jwks_doc().as_bytes());
    g.on_callout_answer(&mut host, token, 1, jwks_doc().len());
    (g, host)
}

/// Signs `header.payload` (arbitrary bytes, base64url-encoded here) with the published key:
/// RS256 (EMSA-PKCS1-v1_5 over SHA-256, [`pkcs1_sha256_block`]) with the key's CRT parts made
/// once per process ([`crt`]), not a signer set up per input.
pub fn sign(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let em = BigUint::from_bytes_be(&pkcs1_sha256_block(256, input.as_bytes()));
    let sig = left_pad(&private_op(&em).to_bytes_be(), 256);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The fuzz key's private operation by the Chinese remainder theorem (RFC 8017 §5.1.2, 2.b):
/// about a quarter of the time of `m^d mod n`.
struct Crt {
    p: BigUint,
    q: BigUint,
    dp: BigUint,
    dq: BigUint,
    qinv: BigUint,
}

/// The CRT parts, from the fuzz key once per process, checked once against `m^d mod n` and
/// the oracle's verifier (a wrong signer would turn every signed input into a refused one).
fn crt() -> &'static Crt {
    static CRT: OnceLock<Crt> = OnceLock::new();
    CRT.get_or_init(|| {
        let der = keypair().to_der().expect("der");
        let key = superboring::rsa::Rsa::private_key_from_der(&der).expect("rsa");
        let big = |b: superboring::bn::BigNum| BigUint::from_bytes_be(&b.to_vec());
        let crt = Crt {
            p: big(key.p()),
            q: big(key.q()),
            dp: big(key.dmp1().expect("dp")),
            dq: big(key.dmq1().expect("dq")),
            qinv: big(key.iqmp().expect("qinv")),
        };
        let (n, d) = private_parts();
        let m = BigUint::from_bytes_be(b"a message for the CRT self-check") % n;
        assert_eq!(
            crt_op(&crt, &m),
            m.modpow(d, n),
            "CRT differs from m^d mod n"
        );
        crt
    })
}

fn crt_op(c: &Crt, m: &BigUint) -> BigUint {
    let m1 = (m % &c.p).modpow(&c.dp, &c.p);
    let m2 = (m % &c.q).modpow(&c.dq, &c.q);
    // h = qinv * (m1 - m2) mod p, kept non-negative.
    let h = (&c.qinv * ((&m1 + &c.p) - (&m2 % &c.p))) % &c.p;
    m2 + h * &c.q
}

/// `m^d mod n` for the fuzz key, for m < n.
fn private_op(m: &BigUint) -> BigUint {
    crt_op(crt(), m)
}

/// Token target. First byte selects the shape:
/// - even: the rest is the `Authorization` header value as sent (extract + verify + authorize);
/// - odd: the rest is `header \xff claims`, signed here with the published key, so the
///   claims parser, claim checks and authorization see arbitrary JSON behind a valid signature.
///
/// Bit 1 of the first byte picks the endpoint: `PUT token`, or `GET credentials` (bare tokens
/// allowed) with a `?tenant=` made of the input's first bytes.
///
/// Both go through `Gateway::on_request` on a simulated host (route, extract, verify, token
/// cache, authorize, the signed STS request), twice (the second hits the cache), then the
/// STS answer with the rest of the input as its body.
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut parts = rest.splitn(2, |&b| b == 0xff);
        let header = parts.next().unwrap_or_default();
        let claims = parts.next().unwrap_or_default();
        format!("Bearer {}", sign(header, claims))
    };
    thread_local! {
        static STATE: RefCell<Option<(Gateway, SimHost)>> = const { RefCell::new(None) };
    }
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let (g, host) = state.get_or_insert_with(gateway);
        let tenant = String::from_utf8_lossy(&data[..data.len().min(8)]).into_owned();
        let (method, path) = if mode & 2 == 0 {
            ("PUT", "/apis/sts/token".to_string())
        } else {
            ("GET", format!("/apis/sts/credentials?tenant={tenant}"))
        };
        let headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path),
            ("authorization".to_string(), value),
            (
                "cray-tenant-name".to_string(),
                String::from_utf8_lossy(&data[..data.len().min(8)]).into_owned(),
            ),
        ];
        for i in 0..2u32 {
            let ctx = 100 + i;
            host.live.insert(ctx);
            host.enter(ctx);
            g.on_request(host, ctx, &headers);
            let pending: Vec<u32> = host.pending.keys().copied().collect();
            for token in pending {
                if let Some(p) = host.pending.remove(&token) {
                    assert!(
                        !format!("{p:?}").contains("SECRETSECRET"),
                        "secret in a callout"
                    );
                }
                host.set_answer(Some(200), rest);
                g.on_callout_answer(host, token, 1, rest.len());
            }
            host.live.remove(&ctx);
            g.on_stream_end(host, ctx);
        }
        host.replies.clear();
        host.ended.clear();
        // Also the bare functions, with a tiny size limit.
        let _ = sts_gateway::token::extract::bearer_token(&headers, 300);
        let _ = sts_gateway::token::extract::container_token(&headers, 300);
    });
}

/// JWKS target: any document, for every allowed algorithm set; a parsed set must be usable.
pub fn jwks(data: &[u8]) {
    for algs in [
        &["RS256"][..],
        &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
    ] {
        let algs: Vec<String> = algs.iter().map(|s| s.to_string()).collect();
        if let Ok(set) = KeySet::parse(data, &algs) {
            assert!(!set.keys.is_empty());
            for k in &set.keys {
                assert!(!k.verifiers.is_empty());
                let _ = set.by_kid(k.kid.as_deref().unwrap_or(""));
            }
            let _ = set.single_for("RS256");
        }
    }
}

/// RGW XML target: any status and body. A success carries non-empty printable fields.
pub fn sts_xml(data: &[u8]) {
    let (status, body) = match data.split_first() {
        Some((&s, rest)) => (if s < 128 { 200 } else { 300 + u16::from(s) }, rest),
        None => (200, data),
    };
    match sts_gateway::sts::response::parse(status, body) {
        Ok(c) => {
            for f in [
                &c.access_key_id,
                &c.secret_access_key,
                &c.session_token,
                &c.expiration,
            ] {
                assert!(!f.is_empty() && f.bytes().all(|b| b.is_ascii_graphic()));
            }
            let _ = sts_gateway::sts::credentials::response_body(&c, "http://rgw:8080");
        }
        Err(sts_gateway::sts::response::StsError::Rgw { code, .. }) => {
            assert!(code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        Err(_) => {}
    }
}

/// Config target: any plugin configuration; an accepted one must build a worker.
pub fn config(data: &[u8]) {
    let env =
        |name: &str| (name == sts_gateway::config::ENV_SECRET_ACCESS_KEY).then(|| "s".repeat(40));
    if let Ok(c) = Config::parse(data, &env) {
        let _ = format!("{c:?}");
        let w = Worker::new(c);
        for i in 0..w.source_count() {
            let _ = w.jwks_callout(i);
        }
    }
}

/// RS256 and PS256 target: our verifier (`sts_gateway::crypto::rsa_sig`) against jwt-simple's pure-Rust one, the
/// oracle, which the gateway used before (issue 13). First byte:
/// - 0: the rest is a token: both verdicts (claims or error message) are the same;
/// - 1: the rest is `header \xff claims`, signed with the fuzz key, then as 0;
/// - 2: the rest edits a correct PKCS#1 v1.5 SHA-256 block (pairs: position, xor mask); its
///   signature (block^d mod n, or the block itself when it is not below n) must get the same
///   verdict from both, and RSAVP1 must give the block back;
/// - 3: the rest is a signature as is: same verdicts, RSAVP1 equal to `num-bigint-dig`'s modpow;
/// - 5: as 2 for PS256 (RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt): the rest edits a
///   correct PSS block (the one behind the oracle's own signature); both verdicts are the same;
/// - otherwise (4, 6 and up): the rest is n's length (2 bytes, big-endian), e's length (1 byte), n, e, s: both accept or refuse the key, and for an accepted
///   key RSAVP1(s) equals `num-bigint-dig`'s `s^65537 mod n`.
pub fn rs256(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => same_token_verdict(&String::from_utf8_lossy(rest)),
        1 => {
            let mut parts = rest.splitn(2, |&b| b == 0xff);
            let header = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            same_token_verdict(&sign(header, claims));
        }
        2 => {
            let message = b"header.claims";
            let mut em = pkcs1_sha256_block(256, message);
            for edit in rest.chunks(2) {
                if let [pos, mask] = edit {
                    em[usize::from(*pos)] ^= mask;
                }
            }
            let n = &private_parts().0;
            let m = BigUint::from_bytes_be(&em);
            let sig = if &m < n {
                left_pad(&private_op(&m).to_bytes_be(), 256)
            } else {
                em.clone()
            };
            let verdict = ours().verify_signature(message, &sig);
            assert_eq!(
                verdict,
                oracle_signature(message, &sig),
                "verdicts differ for block {em:02x?}"
            );
            if &m < n {
                assert_eq!(ours().rsavp1(&sig).as_deref(), Some(&em[..]));
            }
            assert_eq!(verdict, em == pkcs1_sha256_block(256, message));
        }
        3 => {
            let message = b"header.claims";
            assert_eq!(
                ours().verify_signature(message, rest),
                oracle_signature(message, rest)
            );
            same_rsavp1(ours(), &private_parts().0, 256, rest);
        }
        5 => {
            let message = b"header.claims";
            let n = &private_parts().0;
            let (good_sig, good_em) = pss_signature(message);
            let mut em = good_em.clone();
            for edit in rest.chunks(2) {
                if let [pos, mask] = edit {
                    em[usize::from(*pos)] ^= mask;
                }
            }
            let m = BigUint::from_bytes_be(&em);
            if &m >= n {
                return;
            }
            let sig = left_pad(&private_op(&m).to_bytes_be(), 256);
            let verdict = ours_ps256().verify_signature(message, &sig);
            assert_eq!(
                verdict,
                oracle_verify("PS256", message, &sig),
                "verdicts differ for block {em:02x?}"
            );
            if em == *good_em {
                assert!(
                    verdict && sig == good_sig.as_slice(),
                    "the good block refused"
                );
            }
        }
        _ => {
            let [n_hi, n_lo, e_len, rest @ ..] = rest else {
                return;
            };
            let (n, rest) =
                rest.split_at(usize::from(u16::from_be_bytes([*n_hi, *n_lo])).min(rest.len()));
            let (e, s) = rest.split_at(usize::from(*e_len).min(rest.len()));
            let new = sts_gateway::crypto::rsa_sig::RsaKey::from_components("RS256", n, e);
            let old = jwt_simple::algorithms::RS256PublicKey::from_components(n, e);
            assert_eq!(new.is_some(), old.is_ok(), "key acceptance differs");
            if let Some(key) = new {
                let modulus = BigUint::from_bytes_be(n);
                let len = modulus.to_bytes_be().len();
                let s = left_pad(s, len);
                same_rsavp1(&key, &modulus, len, &s);
            }
        }
    }
}

use superboring::reexports::rsa::BigUint;

fn ours() -> &'static sts_gateway::crypto::rsa_sig::RsaKey {
    static KEY: OnceLock<sts_gateway::crypto::rsa_sig::RsaKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let c = keypair().public_key().to_components();
        sts_gateway::crypto::rsa_sig::RsaKey::from_components("RS256", &c.n, &c.e)
            .expect("fuzz key")
    })
}

/// Our PS256 key, from the fuzz key, made once per process.
fn ours_ps256() -> &'static sts_gateway::crypto::rsa_sig::RsaKey {
    static KEY: OnceLock<sts_gateway::crypto::rsa_sig::RsaKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let c = keypair().public_key().to_components();
        sts_gateway::crypto::rsa_sig::RsaKey::from_components("PS256", &c.n, &c.e)
            .expect("fuzz key")
    })
}

/// jwt-simple's public key of the fuzz key, made once per process.
fn oracle_public_key() -> &'static jwt_simple::algorithms::RS256PublicKey {
    static KEY: OnceLock<jwt_simple::algorithms::RS256PublicKey> = OnceLock::new();
    KEY.get_or_init(|| keypair().public_key())
}

/// The oracle's PS256 signature of `message` (random salt, made once) and its block s^e mod n.
fn pss_signature(message: &[u8]) -> &'static (Vec<u8>, Vec<u8>) {
    static SIG: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SIG.get_or_init(|| {
        let der = keypair().to_der().expect("der");
        let rsa = superboring::rsa::Rsa::private_key_from_der(&der).expect("rsa");
        let pkey = superboring::pkey::PKey::from_rsa(rsa).expect("pkey");
        let mut signer =
            superboring::sign::Signer::new(superboring::hash::MessageDigest::sha256(), &pkey)
                .expect("signer");
        signer
            .set_rsa_padding(superboring::rsa::Padding::PKCS1_PSS)
            .expect("padding");
        signer.update(message).expect("update");
        let sig = signer.sign_to_vec().expect("sign");
        let n = &private_parts().0;
        let em = BigUint::from_bytes_be(&sig).modpow(&BigUint::from(65537u32), n);
        (sig, left_pad(&em.to_bytes_be(), 256))
    })
}

/// n and d of the fuzz key, for raw private-key operations.
fn private_parts() -> &'static (BigUint, BigUint) {
    static PARTS: OnceLock<(BigUint, BigUint)> = OnceLock::new();
    PARTS.get_or_init(|| {
        let der = keypair().to_der().expect("der");
        let key = superboring::rsa::Rsa::private_key_from_der(&der).expect("rsa");
        (
            BigUint::from_bytes_be(&key.n().to_vec()),
            BigUint::from_bytes_be(&key.d().to_vec()),
        )
    })
}

/// RSAVP1 against `num-bigint-dig`: `None` exactly when s is not `len` bytes or not below n.
fn same_rsavp1(key: &sts_gateway::crypto::rsa_sig::RsaKey, n: &BigUint, len: usize, s: &[u8]) {
    let v = BigUint::from_bytes_be(s);
    let expected = (s.len() == len && &v < n)
        .then(|| left_pad(&v.modpow(&BigUint::from(65537u32), n).to_bytes_be(), len));
    assert_eq!(key.rsavp1(s), expected, "RSAVP1 differs for s = {s:02x?}");
}

fn left_pad(b: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![0; len.saturating_sub(b.len())];
    v.extend_from_slice(b);
    v
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2) with SHA-256, written out here from the RFC.
fn pkcs1_sha256_block(k: usize, message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut t = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    t.extend_from_slice(&sha2::Sha256::digest(message));
    let mut em = vec![0x00, 0x01];
    em.resize(k - t.len() - 1, 0xff);
    em.push(0x00);
    em.extend_from_slice(&t);
    em
}

/// The old verifier: superboring (RustCrypto `rsa` 0.9), as jwt-simple calls it.
fn oracle_signature(message: &[u8], signature: &[u8]) -> bool {
    oracle_verify("RS256", message, signature)
}

/// The old verifier for RS256 or PS256 (its public key made once per thread).
fn oracle_verify(alg: &str, message: &[u8], signature: &[u8]) -> bool {
    thread_local! {
        static PKEY: superboring::pkey::PKey<superboring::pkey::Public> = {
            let c = oracle_public_key().to_components();
            let rsa = superboring::rsa::Rsa::from_public_components(
                superboring::bn::BigNum::from_slice(&c.n).expect("n"),
                superboring::bn::BigNum::from_slice(&c.e).expect("e"),
            )
            .expect("rsa");
            superboring::pkey::PKey::from_rsa(rsa).expect("pkey")
        };
    }
    PKEY.with(|pkey| oracle_verify_with(pkey, alg, message, signature))
}

fn oracle_verify_with(
    pkey: &superboring::pkey::PKey<superboring::pkey::Public>,
    alg: &str,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let mut v = superboring::sign::Verifier::new(superboring::hash::MessageDigest::sha256(), pkey)
        .expect("verifier");
    let padding = if alg == "PS256" {
        superboring::rsa::Padding::PKCS1_PSS
    } else {
        superboring::rsa::Padding::PKCS1
    };
    v.set_rsa_padding(padding).expect("padding");
    v.update(message).expect("update");
    v.verify(signature).unwrap_or(false)
}

/// Claims as JSON with `aud` (a set) sorted.
fn normalized(c: &sts_gateway::token::Claims) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("claims");
    if let Some(serde_json::Value::Array(aud)) = v.get_mut("aud") {
        aud.sort_by_key(|a| a.to_string());
    }
    v
}

/// Both token verifiers under the gateway's options: the same claims or the same error.
fn same_token_verdict(token: &str) {
    use jwt_simple::algorithms::RSAPublicKeyLike;
    use jwt_simple::prelude::{Duration, VerificationOptions};
    let options = VerificationOptions {
        allowed_issuers: Some([ISSUER.to_string()].into()),
        allowed_audiences: Some(["shasta".to_string()].into()),
        time_tolerance: Some(Duration::from_secs(60)),
        artificial_time: Some(Duration::from_secs(NOW_MS / 1000)),
        max_token_length: Some(16384),
        ..VerificationOptions::default()
    };
    let old = oracle_public_key()
        .verify_token::<serde_json::Map<String, serde_json::Value>>(token, Some(options.clone()));
    let new = ours().verify_token(token, &options);
    match (old, new) {
        (Ok(a), Ok(b)) => assert_eq!(
            normalized(&a),
            normalized(&b),
            "claims differ for {token:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "errors differ for {token:?}"),
        (a, b) => panic!(
            "verdicts differ for {token:?}: old ok {}, new ok {}",
            a.is_ok(),
            b.is_ok()
        ),
    }
}

#[cfg(test)]
mod replay {
    //! `cargo test`: every committed corpus file through its target (the smoke of `make test`).
    use std::path::Path;

    fn replay(target: &str, f: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus dir") {
            let path = entry.expect("entry").path();
            f(&std::fs::read(&path).expect("read"));
            n += 1;
        }
        assert!(
            n >= 3,
            "{target}: only {n} corpus files in {}",
            dir.display()
        );
    }

    #[test]
    fn token() {
        replay("token", super::token);
    }
    #[test]
    fn jwks() {
        replay("jwks", super::jwks);
    }
    #[test]
    fn sts_xml() {
        replay("sts_xml", super::sts_xml);
    }
    #[test]
    fn rs256() {
        replay("rs256", super::rs256);
    }
    #[test]
    fn config() {
        replay("config", super::config);
    }
}
