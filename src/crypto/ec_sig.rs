//! ECDSA (ES256 on P-256 with SHA-256, ES384 on P-384 with SHA-384) and EdDSA (Ed25519) token
//! verification, with well-kept crates and no curve arithmetic of our own: RustCrypto `p256` and
//! `p384` (over `ecdsa`) and `ed25519-compact`, the same crates and versions jwt-simple already
//! depends on.
//!
//! Signatures are in the JWS form (RFC 7518 §3.4, RFC 8037 §3.1): ECDSA `r || s`, each as long as
//! the curve's field (IEEE P1363), Ed25519 the 64 bytes of RFC 8032. Keys come from a JWK:
//! `kty: EC` with `crv` and the coordinates `x`, `y` at full length (RFC 7518 §6.2.1), or
//! `kty: OKP` with `crv: Ed25519` and `x` (RFC 8037 §2). A point not on the curve, the identity,
//! or (Ed25519) a non-canonical or small-order key is refused when the key set is parsed.
//!
//! Everything but the signature check is the token verification the RSA keys use
//! (`jws::verify_token_with`: jwt-simple's checks, step for step).
use jwt_simple::common::VerificationOptions;
use p256::ecdsa::signature::Verifier;

use crate::crypto::jws::{verify_token_with, Claims};

enum Curve {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

/// An elliptic-curve public key prepared for one JWT algorithm (ES256, ES384 or EdDSA).
pub struct EcKey {
    alg: &'static str,
    curve: Curve,
}

/// The coordinates' length of a curve's points in a JWK (and of `r`, `s` in a signature).
fn field_len(crv: &str) -> Option<usize> {
    match crv {
        "P-256" | "Ed25519" => Some(32),
        "P-384" => Some(48),
        _ => None,
    }
}

impl EcKey {
    /// The key of a JWK (`kty`, `crv`, decoded `x` and, for `EC`, `y`) for algorithm `alg`;
    /// `None` when `alg` is not the one algorithm of that curve, or the key is not a valid point.
    pub fn from_jwk(alg: &str, kty: &str, crv: &str, x: &[u8], y: Option<&[u8]>) -> Option<EcKey> {
        let len = field_len(crv)?;
        if x.len() != len {
            return None;
        }
        let (alg, curve) = match (alg, kty, crv) {
            ("ES256", "EC", "P-256") => ("ES256", Curve::P256(sec1(x, y?, len)?)),
            ("ES384", "EC", "P-384") => ("ES384", Curve::P384(sec1(x, y?, len)?)),
            ("EdDSA", "OKP", "Ed25519") => {
                if y.is_some() {
                    return None;
                }
                let key = ed25519_compact::PublicKey::from_slice(x).ok()?;
                key.validate().ok()?;
                ("EdDSA", Curve::Ed25519(key))
            }
            _ => return None,
        };
        Some(EcKey { alg, curve })
    }

    /// The JWT algorithm this key verifies.
    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// The JWS signature check of `message`: P1363 `r || s` for ECDSA, RFC 8032 for Ed25519.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.curve {
            Curve::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Curve::P384(key) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Curve::Ed25519(key) => ed25519_compact::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
        }
    }

    /// jwt-simple's `verify_token` with this key's signature check.
    pub fn verify_token(
        &self,
        token: &str,
        options: &VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        verify_token_with(
            self.alg,
            &|m, s| self.verify_signature(m, s),
            token,
            options,
        )
    }
}

/// An uncompressed SEC1 point `04 || x || y` from full-length coordinates.
fn sec1<K: FromSec1>(x: &[u8], y: &[u8], len: usize) -> Option<K> {
    if y.len() != len {
        return None;
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    K::from_sec1(&point)
}

trait FromSec1: Sized {
    fn from_sec1(point: &[u8]) -> Option<Self>;
}

impl FromSec1 for p256::ecdsa::VerifyingKey {
    fn from_sec1(point: &[u8]) -> Option<Self> {
        Self::from_sec1_bytes(point).ok()
    }
}

impl FromSec1 for p384::ecdsa::VerifyingKey {
    fn from_sec1(point: &[u8]) -> Option<Self> {
        Self::from_sec1_bytes(point).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Wycheproof's ECDSA (P1363, the JWS form) and EdDSA vectors, with their counts asserted, and
    //! jwt-simple (whose own ES256/ES384/EdDSA signers are independent of this code) as the
    //! oracle for whole tokens.
    use super::*;
    use wycheproof::TestResult;

    /// (tests, valid, invalid, acceptable) of one Wycheproof set, and the number of vectors whose
    /// verdict differs from Wycheproof's (an `acceptable` one counts as either).
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Counts {
        tests: usize,
        valid: usize,
        invalid: usize,
        acceptable: usize,
        mismatches: usize,
    }

    fn count(c: &mut Counts, result: TestResult, ok: bool) {
        c.tests += 1;
        match result {
            TestResult::Valid => {
                c.valid += 1;
                c.mismatches += usize::from(!ok);
            }
            TestResult::Invalid => {
                c.invalid += 1;
                c.mismatches += usize::from(ok);
            }
            TestResult::Acceptable => c.acceptable += 1,
        }
    }

    fn ecdsa_p1363(name: wycheproof::ecdsa::TestName, alg: &str, crv: &str) -> Counts {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        let mut c = Counts::default();
        for group in &set.test_groups {
            assert_eq!(
                group.test_type,
                wycheproof::ecdsa::TestGroupTypeId::EcdsaP1363
            );
            // The uncompressed SEC1 point 04 || x || y, coordinates at full length (as in a JWK).
            let point: &[u8] = &group.key.key;
            let len = (point.len() - 1) / 2;
            assert_eq!(point[0], 4);
            let (x, y) = (&point[1..1 + len], &point[1 + len..]);
            let key = EcKey::from_jwk(alg, "EC", crv, x, Some(y));
            for t in &group.tests {
                let ok = key
                    .as_ref()
                    .is_some_and(|k| k.verify_signature(&t.msg, &t.sig));
                count(&mut c, t.result, ok);
            }
        }
        c
    }

    fn b64(s: &str) -> Vec<u8> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).unwrap()
    }

    #[test]
    fn wycheproof_ecdsa_p256_sha256_p1363() {
        let c = ecdsa_p1363(
            wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363,
            "ES256",
            "P-256",
        );
        assert_eq!(
            c,
            Counts {
                tests: EXPECTED_P256.0,
                valid: EXPECTED_P256.1,
                invalid: EXPECTED_P256.2,
                acceptable: 0,
                mismatches: 0
            }
        );
    }

    #[test]
    fn wycheproof_ecdsa_p384_sha384_p1363() {
        let c = ecdsa_p1363(
            wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363,
            "ES384",
            "P-384",
        );
        assert_eq!(
            c,
            Counts {
                tests: EXPECTED_P384.0,
                valid: EXPECTED_P384.1,
                invalid: EXPECTED_P384.2,
                acceptable: 0,
                mismatches: 0
            }
        );
    }

    #[test]
    fn wycheproof_eddsa_ed25519() {
        let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        let mut c = Counts::default();
        for group in &set.test_groups {
            let key = EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &group.key.pk, None);
            for t in &group.tests {
                let ok = key
                    .as_ref()
                    .is_some_and(|k| k.verify_signature(&t.msg, &t.sig));
                count(&mut c, t.result, ok);
            }
        }
        assert_eq!(
            c,
            Counts {
                tests: EXPECTED_ED25519.0,
                valid: EXPECTED_ED25519.1,
                invalid: EXPECTED_ED25519.2,
                acceptable: 0,
                mismatches: 0
            }
        );
    }

    /// (tests, valid, invalid) of the vectors in wycheproof 0.7.
    const EXPECTED_P256: (usize, usize, usize) = (262, 173, 89);
    const EXPECTED_P384: (usize, usize, usize) = (280, 193, 87);
    const EXPECTED_ED25519: (usize, usize, usize) = (151, 88, 63);

    /// A key of one curve is not a key of another algorithm, and bad points are refused.
    #[test]
    fn keys_fit_one_algorithm() {
        use jwt_simple::prelude::*;
        let es = ES256KeyPair::generate();
        let point = es.public_key().public_key().to_bytes_uncompressed();
        let (x, y) = (&point[1..33], &point[33..65]);
        assert!(EcKey::from_jwk("ES256", "EC", "P-256", x, Some(y)).is_some());
        assert!(EcKey::from_jwk("ES384", "EC", "P-256", x, Some(y)).is_none());
        assert!(EcKey::from_jwk("EdDSA", "EC", "P-256", x, Some(y)).is_none());
        assert!(EcKey::from_jwk("ES256", "EC", "P-384", x, Some(y)).is_none());
        assert!(EcKey::from_jwk("ES256", "OKP", "P-256", x, Some(y)).is_none());
        assert!(EcKey::from_jwk("ES256", "EC", "P-256", x, None).is_none());
        assert!(EcKey::from_jwk("ES256", "EC", "P-256", &x[1..], Some(y)).is_none());
        let mut off = y.to_vec();
        off[31] ^= 1; // (x, y') is not on the curve
        assert!(EcKey::from_jwk("ES256", "EC", "P-256", x, Some(&off)).is_none());
        assert!(EcKey::from_jwk("ES256", "EC", "P-256", &[0; 32], Some(&[0; 32])).is_none());
        let ed = Ed25519KeyPair::generate();
        let x = ed.public_key().to_bytes();
        assert!(EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &x, None).is_some());
        assert!(EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &x, Some(&x)).is_none());
        assert!(EcKey::from_jwk("EdDSA", "OKP", "Ed448", &x, None).is_none());
        // The identity (small order) is refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &identity, None).is_none());
    }

    /// Tokens signed by jwt-simple's ES256, ES384 and EdDSA key pairs verify with the same
    /// claims jwt-simple's own verifier returns; a changed signature or payload does not.
    #[test]
    fn tokens_of_every_curve_verify_like_jwt_simple() {
        use jwt_simple::prelude::*;
        let claims = jwt_simple::claims::Claims::create(Duration::from_hours(1))
            .with_issuer("iss")
            .with_audience("shasta");
        let options = VerificationOptions::default();
        let es256 = ES256KeyPair::generate();
        let es384 = ES384KeyPair::generate();
        let ed = Ed25519KeyPair::generate();
        let p = es256.public_key().public_key().to_bytes_uncompressed();
        let q = es384.public_key().public_key().to_bytes_uncompressed();
        type Oracle<'a> = Box<dyn Fn(&str) -> bool + 'a>;
        let cases: Vec<(EcKey, String, Oracle)> = vec![
            (
                EcKey::from_jwk("ES256", "EC", "P-256", &p[1..33], Some(&p[33..])).unwrap(),
                es256.sign(claims.clone()).unwrap(),
                Box::new(|t: &str| {
                    es256
                        .public_key()
                        .verify_token::<NoCustomClaims>(t, None)
                        .is_ok()
                }),
            ),
            (
                EcKey::from_jwk("ES384", "EC", "P-384", &q[1..49], Some(&q[49..])).unwrap(),
                es384.sign(claims.clone()).unwrap(),
                Box::new(|t: &str| {
                    es384
                        .public_key()
                        .verify_token::<NoCustomClaims>(t, None)
                        .is_ok()
                }),
            ),
            (
                EcKey::from_jwk("EdDSA", "OKP", "Ed25519", &ed.public_key().to_bytes(), None)
                    .unwrap(),
                ed.sign(claims.clone()).unwrap(),
                Box::new(|t: &str| {
                    ed.public_key()
                        .verify_token::<NoCustomClaims>(t, None)
                        .is_ok()
                }),
            ),
        ];
        for (key, token, oracle) in &cases {
            assert!(oracle(token), "{}", key.alg());
            let got = key.verify_token(token, &options).unwrap();
            assert_eq!(got.issuer.as_deref(), Some("iss"));
            // One bit of the signature flipped, and another payload under the same signature.
            let (head, sig) = token.rsplit_once('.').unwrap();
            let mut bytes = b64(sig);
            bytes[5] ^= 1;
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            use base64::Engine;
            let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(!oracle(&flipped));
            assert!(
                key.verify_token(&flipped, &options).is_err(),
                "{}",
                key.alg()
            );
            let mut parts: Vec<&str> = token.split('.').collect();
            let other = URL_SAFE_NO_PAD.encode(br#"{"iss":"iss","aud":"shasta"}"#);
            parts[1] = &other;
            assert!(key.verify_token(&parts.join("."), &options).is_err());
            // Another algorithm's key never verifies it.
            for (other_key, _, _) in &cases {
                if other_key.alg() != key.alg() {
                    assert!(other_key.verify_token(token, &options).is_err());
                }
            }
        }
    }
}
