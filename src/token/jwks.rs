//! An issuer's JSON Web Key Set, parsed once per change into ready-to-use verifying keys.
use jwt_simple::common::VerificationOptions;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::crypto::ec_sig::EcKey;
use crate::crypto::jws::Claims;
use crate::crypto::rsa_sig::RsaKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Keys beyond this many are ignored: a JWKS is a handful of keys, not a denial-of-service vector.
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson,
    NoUsableKey,
}

impl JwksError {
    pub fn reason(&self) -> &'static str {
        match self {
            JwksError::NotJson => "not a JSON Web Key Set",
            JwksError::NoUsableKey => "no usable signing key",
        }
    }
}

/// One public key, prepared for one algorithm: RSA (`rsa_sig`), or ECDSA / EdDSA (`ec_sig`).
pub enum VerifyingKey {
    Rsa(RsaKey),
    Ec(EcKey),
}

impl VerifyingKey {
    /// The JWT algorithm this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            VerifyingKey::Rsa(k) => k.alg(),
            VerifyingKey::Ec(k) => k.alg(),
        }
    }

    /// Signature check plus jwt-simple's standard claim checks under `options`.
    pub fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        match self {
            VerifyingKey::Rsa(k) => k.verify_token(token, &options),
            VerifyingKey::Ec(k) => k.verify_token(token, &options),
        }
    }
}

/// A JWK usable for signatures.
pub struct Jwk {
    pub kid: Option<String>,
    /// SHA-256 of the key material: a cached verification stays valid only while a key with
    /// this `kid` and this fingerprint is published.
    pub fingerprint: [u8; 32],
    pub verifiers: Vec<VerifyingKey>,
}

impl Jwk {
    pub fn verifier(&self, alg: &str) -> Option<&VerifyingKey> {
        self.verifiers.iter().find(|v| v.alg() == alg)
    }
}

pub struct KeySet {
    pub keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document; `algorithms` are the ones the configuration allows. Keys for
    /// encryption (`use: enc`), of other types, or unusable for every allowed algorithm are
    /// skipped; a set with no usable key is an error so the last good set is kept.
    pub fn parse(body: &[u8], algorithms: &[String]) -> Result<KeySet, JwksError> {
        let raw: RawJwks = serde_json::from_slice(body).map_err(|_| JwksError::NotJson)?;
        let keys: Vec<Jwk> = raw
            .keys
            .iter()
            .take(MAX_KEYS)
            .filter_map(|k| prepare(k, algorithms))
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The one key that can verify `alg`, for tokens without a `kid`; `None` when ambiguous.
    pub fn single_for(&self, alg: &str) -> Option<&Jwk> {
        let mut fitting = self.keys.iter().filter(|k| k.verifier(alg).is_some());
        match (fitting.next(), fitting.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }

    pub fn has(&self, kid: Option<&str>, fingerprint: &[u8; 32]) -> bool {
        self.keys
            .iter()
            .any(|k| k.kid.as_deref() == kid && &k.fingerprint == fingerprint)
    }
}

fn prepare(raw: &RawJwk, algorithms: &[String]) -> Option<Jwk> {
    if matches!(raw.use_.as_deref(), Some(u) if u != "sig") {
        return None;
    }
    // The algorithms this key may verify: the allowed ones, narrowed to its `alg` if it has one.
    let algs = algorithms
        .iter()
        .filter(|alg| raw.alg.as_deref().is_none_or(|a| a == alg.as_str()));
    let mut hash = Sha256::new();
    let verifiers: Vec<VerifyingKey> = match raw.kty.as_deref()? {
        "RSA" => {
            let n = b64(raw.n.as_deref()?)?;
            let e = b64(raw.e.as_deref()?)?;
            hash.update((n.len() as u64).to_be_bytes());
            hash.update(&n);
            hash.update(&e);
            algs.filter_map(|alg| RsaKey::from_components(alg, &n, &e))
                .map(VerifyingKey::Rsa)
                .collect()
        }
        kty @ ("EC" | "OKP") => {
            let crv = raw.crv.as_deref()?;
            let x = b64(raw.x.as_deref()?)?;
            let y = match (kty, raw.y.as_deref()) {
                ("EC", Some(y)) => Some(b64(y)?),
                ("OKP", None) => None,
                _ => return None,
            };
            // Domain-separated from RSA's (which starts with an 8-byte length).
            hash.update(kty.as_bytes());
            hash.update([0]);
            hash.update(crv.as_bytes());
            hash.update([0]);
            hash.update(&x);
            hash.update(y.as_deref().unwrap_or_default());
            algs.filter_map(|alg| EcKey::from_jwk(alg, kty, crv, &x, y.as_deref()))
                .map(VerifyingKey::Ec)
                .collect()
        }
        _ => return None,
    };
    if verifiers.is_empty() {
        return None;
    }
    Some(Jwk {
        kid: raw.kid.clone(),
        fingerprint: hash.finalize().into(),
        verifiers,
    })
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{jwk_json, keypairs};

    fn algs() -> Vec<String> {
        vec!["RS256".to_string()]
    }

    #[test]
    fn keycloak_like_set_skips_enc_key() {
        let [a, b] = keypairs();
        let doc = serde_json::json!({"keys": [
            jwk_json(a, "sig-1", "sig", "RS256"),
            jwk_json(b, "enc-1", "enc", "RSA-OAEP"),
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes(), &algs()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.by_kid("sig-1").is_some());
        assert!(set.by_kid("enc-1").is_none());
        assert!(set.single_for("RS256").is_some());
        assert!(set.single_for("RS384").is_none());
    }

    #[test]
    fn key_without_use_or_alg_is_usable_for_allowed_algs() {
        let [a, _] = keypairs();
        let mut k = jwk_json(a, "k", "sig", "RS256");
        k.as_object_mut().unwrap().remove("use");
        k.as_object_mut().unwrap().remove("alg");
        let set = KeySet::parse(
            serde_json::json!({"keys": [k]}).to_string().as_bytes(),
            &["RS256".into(), "PS256".into()],
        )
        .unwrap();
        assert_eq!(set.keys[0].verifiers.len(), 2);
    }

    #[test]
    fn bad_documents() {
        for body in [
            &b""[..],
            b"null",
            b"{}",
            b"{\"keys\": 1}",
            b"<html>",
            b"{\"keys\": [}",
        ] {
            assert_eq!(
                KeySet::parse(body, &algs()).err(),
                Some(JwksError::NotJson),
                "{body:?}"
            );
        }
        let only_enc =
            serde_json::json!({"keys": [jwk_json(&keypairs()[0], "e", "enc", "RSA-OAEP")]});
        assert_eq!(
            KeySet::parse(only_enc.to_string().as_bytes(), &algs()).err(),
            Some(JwksError::NoUsableKey)
        );
        let bad_n =
            serde_json::json!({"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}]});
        assert_eq!(
            KeySet::parse(bad_n.to_string().as_bytes(), &algs()).err(),
            Some(JwksError::NoUsableKey)
        );
        let weak =
            serde_json::json!({"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"}]});
        assert_eq!(
            KeySet::parse(weak.to_string().as_bytes(), &algs()).err(),
            Some(JwksError::NoUsableKey)
        );
        // Deep nesting must fail cleanly (serde_json's recursion limit), not overflow the stack.
        let deep = format!(
            "{{\"keys\": [{}{}]}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            KeySet::parse(deep.as_bytes(), &algs()).err(),
            Some(JwksError::NotJson)
        );
    }

    #[test]
    fn fingerprint_tracks_key_material() {
        let [a, b] = keypairs();
        let one = serde_json::json!({"keys": [jwk_json(a, "k", "sig", "RS256")]});
        let two = serde_json::json!({"keys": [jwk_json(b, "k", "sig", "RS256")]});
        let s1 = KeySet::parse(one.to_string().as_bytes(), &algs()).unwrap();
        let s2 = KeySet::parse(two.to_string().as_bytes(), &algs()).unwrap();
        let f1 = s1.keys[0].fingerprint;
        assert!(s1.has(Some("k"), &f1));
        assert!(!s2.has(Some("k"), &f1));
    }
}
