//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256) token verification with a fast public-key operation.
//!
//! jwt-simple's pure-Rust backend checks an RS256 signature with RustCrypto `rsa` 0.9 on 64-bit
//! `num-bigint-dig` digits, which wasm32 emulates: about 2 ms per check in V8 for 2048 bits. Here
//! the check is `s^65537 mod n` in 32-bit Montgomery arithmetic (`rsa_math`), about 0.1 ms.
//!
//! Everything else is jwt-simple 0.15's own `Token::verify` and `JWTClaims::validate`, step for step
//! and error for error, so the accepted tokens and the reported errors stay the same: the key
//! policy (`check_rsa_key_policy`: 2048 to 4096 bits, odd modulus, e = 65537), the token and
//! header limits, `crit`, `typ`, `alg`, `salt`, the signature (its length equals the modulus
//! length, it is below the modulus, and the decoded block equals the one expected byte for byte:
//! `00 01 FF.. 00`, the DER DigestInfo of SHA-256, the hash), then the claims. The tests compare it
//! with jwt-simple (the oracle) and run the Wycheproof RSA PKCS#1 v1.5 SHA-256 vectors; the fuzz
//! target `rs256` (tests/fuzz) compares both on arbitrary tokens, keys and encoded blocks.
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Clock, Token};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use jwt_simple::JWTError;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::jwks::Claims;
use crate::rsa_math::limb32::Modulus;

/// jwt-simple's RSA key policy.
const MIN_MODULUS_BITS: usize = 2048;
const MAX_MODULUS_BITS: usize = 4096;
/// jwt-simple's `token::MAX_HEADER_LENGTH`.
const MAX_HEADER_LENGTH: usize = 8192;
/// DER of `DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) }` up
/// to the hash (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// An RSA public key for RS256.
pub struct Rs256Key {
    modulus: Modulus,
}

impl Rs256Key {
    /// Big-endian `n` and `e` (leading zeros allowed); `None` for a key jwt-simple refuses.
    pub fn from_components(n: &[u8], e: &[u8]) -> Option<Rs256Key> {
        let n = trim_leading_zeros(n);
        let top = n.first()?;
        let bits = (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return None;
        }
        if n.last()? & 1 != 1 || trim_leading_zeros(e) != [1, 0, 1] {
            return None;
        }
        Some(Rs256Key {
            modulus: Modulus::new(n)?,
        })
    }

    /// RSAVP1 (RFC 8017 §5.2.2): `s^e mod n` as many bytes as the modulus, `None` unless the
    /// signature is exactly as long as the modulus and below it.
    pub fn rsavp1(&self, signature: &[u8]) -> Option<Vec<u8>> {
        self.modulus.pow65537(signature)
    }

    /// RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) with SHA-256.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        // Steps 1 and 2: length, s < n, s^e mod n.
        let Some(em) = self.rsavp1(signature) else {
            return false;
        };
        // Steps 3 and 4: build the expected block and compare whole.
        let k = self.modulus.len();
        let t_len = SHA256_DIGEST_INFO.len() + 32;
        let Some(ps_len) = k.checked_sub(t_len + 3).filter(|&n| n >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(&SHA256_DIGEST_INFO);
        expected.extend_from_slice(&Sha256::digest(message));
        em == expected
    }

    /// jwt-simple's `RS256PublicKey::verify_token`. `options.max_header_length` above jwt-simple's
    /// 8192 is not honoured (the header is decoded by `Token::decode_metadata`, which caps it).
    pub fn verify_token(
        &self,
        token: &str,
        options: &VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        if let Some(max_token_length) = options.max_token_length {
            if token.len() > max_token_length {
                return Err(JWTError::TokenTooLong.into());
            }
        }
        let mut parts = token.split('.');
        let header_b64 = parts.next().ok_or(JWTError::CompactEncodingError)?;
        if header_b64.len() > options.max_header_length.unwrap_or(MAX_HEADER_LENGTH) {
            return Err(JWTError::HeaderTooLarge.into());
        }
        let claims_b64 = parts.next().ok_or(JWTError::CompactEncodingError)?;
        let signature_b64 = parts.next().ok_or(JWTError::CompactEncodingError)?;
        if parts.next().is_some() {
            return Err(JWTError::CompactEncodingError.into());
        }
        let meta = Token::decode_metadata(token)?;
        if meta.critical().is_some_and(|crit| !crit.is_empty()) {
            return Err(JWTError::UnknownCriticalExtension.into());
        }
        if let Some(expected) = &options.required_signature_type {
            let typ = meta
                .signature_type()
                .ok_or(JWTError::RequiredSignatureTypeMismatch)?;
            if typ.to_uppercase() != expected.to_uppercase() {
                return Err(JWTError::RequiredSignatureTypeMismatch.into());
            }
        } else if let Some(typ) = meta.signature_type() {
            let typ = typ.to_uppercase();
            if typ != "JWT" && !typ.ends_with("+JWT") {
                return Err(JWTError::NotJWT.into());
            }
        }
        if let Some(expected) = &options.required_content_type {
            let cty = meta
                .content_type()
                .ok_or(JWTError::RequiredContentTypeMismatch)?;
            if cty.to_uppercase() != expected.to_uppercase() {
                return Err(JWTError::RequiredContentTypeMismatch.into());
            }
        }
        if meta.algorithm() != "RS256" {
            return Err(JWTError::AlgorithmMismatch.into());
        }
        if let Some(required) = &options.required_key_id {
            match meta.key_id() {
                Some(kid) if kid == required => {}
                Some(_) => return Err(JWTError::KeyIdentifierMismatch.into()),
                None => return Err(JWTError::MissingJWTKeyIdentifier.into()),
            }
        }
        // jwt-simple decodes a `salt` (and fails on bad base64) even though RSA ignores it;
        // `TokenMetadata::salt` hides a decoding failure, so read the raw header member.
        if meta.salt().is_none() {
            if let Some(salt) = header_salt(header_b64)? {
                Base64UrlSafeNoPadding::decode_to_vec(salt, None)?;
            }
        }
        let signature = Base64UrlSafeNoPadding::decode_to_vec(signature_b64, None)?;
        let authenticated = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or(JWTError::CompactEncodingError)?;
        if !self.verify_signature(authenticated.as_bytes(), &signature) {
            return Err(JWTError::InvalidSignature.into());
        }
        let claims: Claims =
            serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(claims_b64, None)?)?;
        validate(&claims, options)?;
        Ok(claims)
    }
}

/// The raw `salt` header member (the header already decoded once in `Token::decode_metadata`).
fn header_salt(header_b64: &str) -> Result<Option<String>, jwt_simple::Error> {
    #[derive(Deserialize)]
    struct Salt {
        salt: Option<String>,
    }
    let header = Base64UrlSafeNoPadding::decode_to_vec(header_b64, None)?;
    Ok(serde_json::from_slice::<Salt>(&header)?.salt)
}

/// jwt-simple 0.15's `JWTClaims::validate`, which is crate-private there.
fn validate(claims: &Claims, options: &VerificationOptions) -> Result<(), JWTError> {
    let now = options
        .artificial_time
        .unwrap_or_else(Clock::now_since_epoch);
    let time_tolerance = options.time_tolerance.unwrap_or_default();
    if let Some(reject_before) = options.reject_before {
        let issued_at = claims.issued_at.ok_or(JWTError::OldTokenReused)?;
        if issued_at < reject_before {
            return Err(JWTError::OldTokenReused);
        }
    }
    if !options.accept_future {
        if let Some(time_issued) = claims.issued_at {
            if time_issued > now + time_tolerance {
                return Err(JWTError::ClockDrift);
            }
        }
    }
    if let Some(max_validity) = options.max_validity {
        let time_issued = claims.issued_at.ok_or(JWTError::TokenIsTooOld)?;
        if !(now <= time_issued || now - time_issued <= max_validity) {
            return Err(JWTError::TokenIsTooOld);
        }
    }
    if !options.accept_future {
        if let Some(invalid_before) = claims.invalid_before {
            if now + time_tolerance < invalid_before {
                return Err(JWTError::TokenNotValidYet);
            }
        }
    }
    if let Some(expires_at) = claims.expires_at {
        if !(now >= time_tolerance && now - time_tolerance <= expires_at) {
            return Err(JWTError::TokenHasExpired);
        }
    }
    if let Some(allowed_issuers) = &options.allowed_issuers {
        match &claims.issuer {
            Some(issuer) if allowed_issuers.contains(issuer) => {}
            Some(_) => return Err(JWTError::RequiredIssuerMismatch),
            None => return Err(JWTError::RequiredIssuerMissing),
        }
    }
    if let Some(required_subject) = &options.required_subject {
        match &claims.subject {
            Some(subject) if subject == required_subject => {}
            Some(_) => return Err(JWTError::RequiredSubjectMismatch),
            None => return Err(JWTError::RequiredSubjectMissing),
        }
    }
    if let Some(required_nonce) = &options.required_nonce {
        match &claims.nonce {
            Some(nonce) if nonce == required_nonce => {}
            Some(_) => return Err(JWTError::RequiredNonceMismatch),
            None => return Err(JWTError::RequiredNonceMissing),
        }
    }
    if let Some(allowed_audiences) = &options.allowed_audiences {
        match &claims.audiences {
            Some(audiences) if audiences.contains(allowed_audiences) => {}
            Some(_) => return Err(JWTError::RequiredAudienceMismatch),
            None => return Err(JWTError::RequiredAudienceMissing),
        }
    }
    Ok(())
}

fn trim_leading_zeros(x: &[u8]) -> &[u8] {
    let first = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    x.get(first..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! The oracle is jwt-simple's pure-Rust verifier (superboring over RustCrypto `rsa` 0.9),
    //! which the gateway used before, and `num-bigint-dig` for the arithmetic.
    use super::*;
    use crate::jwks::tests::keypairs;
    use crate::verify::tests::{claims, sign, ISS, NOW};
    use jwt_simple::algorithms::{RS256PublicKey, RSAPublicKeyLike};
    use jwt_simple::prelude::Duration;
    use serde_json::json;
    use superboring::reexports::rsa::BigUint;
    use wycheproof::rsa_pkcs1_verify::{TestFlag, TestName, TestSet};
    use wycheproof::TestResult;

    fn oracle_signature(n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> Option<bool> {
        use superboring::{bn::BigNum, hash::MessageDigest, pkey::PKey, rsa, sign::Verifier};
        let key = rsa::Rsa::from_public_components(
            BigNum::from_slice(n).ok()?,
            BigNum::from_slice(e).ok()?,
        )
        .ok()?;
        let pkey = PKey::from_rsa(key).ok()?;
        let mut v = Verifier::new(MessageDigest::sha256(), &pkey).ok()?;
        v.set_rsa_padding(rsa::Padding::PKCS1).ok()?;
        v.update(message).ok()?;
        Some(v.verify(signature).unwrap_or(false))
    }

    /// Every RSASSA-PKCS1-v1_5 SHA-256 vector whose key jwt-simple accepts: the expected result,
    /// and the oracle's. The vectors of other hashes must all fail RS256; keys outside the policy
    /// (e.g. 8192 bits) are refused by both.
    #[test]
    fn wycheproof_pkcs1_v1_5() {
        let (mut valid, mut invalid, mut other_hash) = (0, 0, 0);
        let sets = [
            (TestName::Rsa2048Sha256, true),
            (TestName::Rsa3072Sha256, true),
            (TestName::Rsa4096Sha256, true),
            (TestName::Rsa8192Sha256, true),
            (TestName::Rsa2048Sha384, false),
            (TestName::Rsa2048Sha512, false),
            (TestName::Rsa2048Sha224, false),
            (TestName::Rsa2048Sha512_256, false),
            (TestName::Rsa3072Sha384, false),
            (TestName::Rsa4096Sha512, false),
        ];
        for (name, sha256) in sets {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                let (n, e) = (&group.key.n[..], &group.key.e[..]);
                let key = Rs256Key::from_components(n, e);
                assert_eq!(
                    key.is_some(),
                    RS256PublicKey::from_components(n, e).is_ok(),
                    "{name:?}: key policy differs"
                );
                let Some(key) = key else {
                    assert!(
                        !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&group.key_size)
                            || trim_leading_zeros(e) != [1, 0, 1],
                        "{name:?}: a key within the policy refused"
                    );
                    continue;
                };
                for t in &group.tests {
                    let ours = key.verify_signature(&t.msg, &t.sig);
                    let oracle = oracle_signature(n, e, &t.msg, &t.sig).unwrap();
                    assert_eq!(ours, oracle, "{name:?} tc {} ({})", t.tc_id, t.comment);
                    if !sha256 {
                        // Their WrongHash vectors may be valid SHA-256 signatures.
                        if !t.flags.contains(&TestFlag::WrongHash) {
                            assert!(!ours, "{name:?} tc {}: another hash accepted", t.tc_id);
                        }
                        other_hash += 1;
                        continue;
                    }
                    match t.result {
                        TestResult::Valid => {
                            assert!(ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                            valid += 1;
                        }
                        TestResult::Invalid => {
                            assert!(!ours, "{name:?} tc {} ({})", t.tc_id, t.comment);
                            invalid += 1;
                        }
                        TestResult::Acceptable => {}
                    }
                }
            }
        }
        assert!(
            valid >= 20 && invalid >= 700 && other_hash >= 100,
            "{valid} {invalid} {other_hash}"
        );
    }

    /// xorshift64*: reproducible inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// RSAVP1 against `num-bigint-dig` for odd moduli of every length from 2041 to 4096 bits in
    /// steps of 7 (not only whole limbs), and for edge values of s.
    #[test]
    fn rsavp1_matches_num_bigint() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let e = BigUint::from(65537u32);
        for bits in (2041usize..=4096).step_by(7) {
            let len = bits.div_ceil(8);
            let mut n = rng.bytes(len);
            n[0] &= 0xff >> (len * 8 - bits);
            n[0] |= 1 << ((bits - 1) % 8);
            n[len - 1] |= 1;
            let big_n = BigUint::from_bytes_be(&n);
            let key = Rs256Key::from_components(&n, &[1, 0, 1]);
            assert_eq!(key.is_some(), bits >= MIN_MODULUS_BITS, "{bits} bits");
            let Some(key) = key else { continue };
            let mut n_minus_1 = n.clone();
            n_minus_1[len - 1] ^= 1;
            let mut candidates = vec![rng.bytes(len), vec![0; len], n_minus_1, n.clone()];
            let mut one = vec![0; len];
            one[len - 1] = 1;
            candidates.push(one);
            candidates.push(rng.bytes(len - 1));
            candidates.push(rng.bytes(len + 1));
            for s in candidates {
                let v = BigUint::from_bytes_be(&s);
                let expected = (s.len() == len && v < big_n).then(|| {
                    let r = v.modpow(&e, &big_n).to_bytes_be();
                    let mut out = vec![0; len - r.len()];
                    out.extend_from_slice(&r);
                    out
                });
                assert_eq!(key.rsavp1(&s), expected, "{bits} bits, s = {s:02x?}");
            }
        }
    }

    /// The key policy is jwt-simple's, also for padded, short, long, even and odd-exponent keys.
    #[test]
    fn key_policy_matches_jwt_simple() {
        let c = keypairs()[0].public_key().to_components();
        let mut rng = Rng(7);
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (c.n.clone(), c.e.clone()),
            ([&[0, 0][..], &c.n].concat(), [&[0][..], &c.e].concat()),
            (c.n.clone(), vec![3]),
            (c.n.clone(), vec![1, 0, 3]),
            (c.n.clone(), vec![]),
            (c.n[1..].to_vec(), c.e.clone()),
            (vec![], c.e.clone()),
        ];
        let mut even = c.n.clone();
        even[255] &= 0xfe;
        cases.push((even, c.e.clone()));
        for len in [255, 256, 257, 384, 511, 512, 513] {
            let mut n = rng.bytes(len);
            n[len - 1] |= 1;
            n[0] |= 0x80;
            cases.push((n.clone(), c.e.clone()));
            n[0] = 1;
            cases.push((n, c.e.clone()));
        }
        for (n, e) in cases {
            assert_eq!(
                Rs256Key::from_components(&n, &e).is_some(),
                RS256PublicKey::from_components(&n, &e).is_ok(),
                "n {} bytes, e {e:?}",
                n.len()
            );
        }
    }

    fn options(now: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some([ISS.to_string()].into()),
            allowed_audiences: Some(["shasta".to_string()].into()),
            time_tolerance: Some(Duration::from_secs(60)),
            artificial_time: Some(Duration::from_secs(now)),
            max_token_length: Some(16384),
            ..VerificationOptions::default()
        }
    }

    /// Same claims or same error as jwt-simple; returns whether the token was accepted.
    fn same_verdict(token: &str, options: &VerificationOptions) -> bool {
        let c = keypairs()[0].public_key().to_components();
        let ours = Rs256Key::from_components(&c.n, &c.e).unwrap();
        let old = keypairs()[0]
            .public_key()
            .verify_token::<serde_json::Map<String, serde_json::Value>>(
                token,
                Some(options.clone()),
            );
        let new = ours.verify_token(token, options);
        match (old, new) {
            (Ok(a), Ok(b)) => {
                assert_eq!(normalized(&a), normalized(&b), "{token}");
                true
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "{token}");
                false
            }
            (a, b) => panic!("{token}: old ok {}, new ok {}", a.is_ok(), b.is_ok()),
        }
    }

    /// The claims as JSON, with `aud` (a set) sorted.
    fn normalized(c: &Claims) -> serde_json::Value {
        let mut v = serde_json::to_value(c).unwrap();
        if let Some(serde_json::Value::Array(aud)) = v.get_mut("aud") {
            aud.sort_by_key(|a| a.to_string());
        }
        v
    }

    #[test]
    fn tokens_get_jwt_simple_verdicts() {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"});
        let good = sign(header.clone(), claims(json!({})), 0);
        let mut accepted = 0;
        let mut tokens = vec![good.clone()];
        // Headers: typ, crit, salt, alg, kid, field types.
        for h in [
            json!({"alg": "RS256"}),
            json!({"alg": "RS256", "typ": "at+jwt"}),
            json!({"alg": "RS256", "typ": "Bearer"}),
            json!({"alg": "RS256", "crit": []}),
            json!({"alg": "RS256", "crit": ["exp"]}),
            json!({"alg": "RS256", "salt": "AAAA"}),
            json!({"alg": "RS256", "salt": "!!!"}),
            json!({"alg": "RS256", "salt": 5}),
            json!({"alg": "RS384"}),
            json!({"alg": "none"}),
            json!({"alg": "RS256", "kid": 7}),
            json!({"typ": "JWT"}),
            json!([1]),
        ] {
            tokens.push(sign(h, claims(json!({})), 0));
        }
        // Claims: times, issuer, audience, types.
        for c in [
            json!({"exp": NOW - 61}),
            json!({"exp": NOW - 59}),
            json!({"exp": null}),
            json!({"nbf": NOW + 61}),
            json!({"nbf": NOW + 59}),
            json!({"iat": NOW + 61}),
            json!({"iss": "other"}),
            json!({"iss": null}),
            json!({"aud": "shasta"}),
            json!({"aud": ["other"]}),
            json!({"aud": null}),
            json!({"exp": "soon"}),
            json!({"sub": 5}),
        ] {
            tokens.push(sign(header.clone(), claims(c), 0));
        }
        tokens.push(sign(header.clone(), json!("not an object"), 0));
        // Signed by another key; tampered parts; broken encodings and shapes.
        tokens.push(sign(header.clone(), claims(json!({})), 1));
        let (input, sig) = good.rsplit_once('.').unwrap();
        let (head, body) = input.split_once('.').unwrap();
        for (i, c) in good.char_indices().step_by(37) {
            let flipped = if c == 'A' { 'B' } else { 'A' };
            tokens.push(format!("{}{flipped}{}", &good[..i], &good[i + 1..]));
        }
        tokens.extend([
            format!("{input}.{sig}="),
            format!("{input}.{sig}A"),
            format!("{input}.{}", &sig[..sig.len() - 2]),
            format!("{input}."),
            format!("{input}.{sig}.x"),
            format!("{head}.{body}"),
            format!("{head}.{body}=.{sig}"),
            format!("{head}=.{body}.{sig}"),
            input.to_string(),
            String::new(),
            "..".to_string(),
            format!("{}.{body}.{sig}", "A".repeat(9000)),
        ]);
        for token in &tokens {
            for now in [NOW, NOW - 100, NOW + 3659, NOW + 3661] {
                accepted += usize::from(same_verdict(token, &options(now)));
            }
        }
        // Tokens accepted by both: the good one and several header/claim variants.
        assert!(accepted >= 10, "{accepted}");
        let mut tight = options(NOW);
        tight.max_token_length = Some(good.len() - 1);
        assert!(!same_verdict(&good, &tight));
        let mut strict = options(NOW);
        strict.required_subject = Some("u-1".into());
        strict.required_key_id = Some("sig-1".into());
        strict.required_signature_type = Some("jwt".into());
        strict.max_validity = Some(Duration::from_secs(5));
        assert!(!same_verdict(&good, &strict));
        strict.max_validity = None;
        assert!(same_verdict(&good, &strict));
        strict.required_nonce = Some("n".into());
        assert!(!same_verdict(&good, &strict));
    }
}
