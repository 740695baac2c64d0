//! Token verification: pick the key by `kid`, check the signature with jwt-simple, then the
//! claims the gateway policy requires (`exp` present, `nbf`/`iat` with skew, `iss`, `aud`).
use std::collections::HashSet;
use std::rc::Rc;

use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Audiences, Duration, Token};
use jwt_simple::JWTError;

use crate::error::Error;
use crate::token::jwks::{Jwk, KeySet};
use crate::token::Claims;

/// The keys of one JWKS source and the issuers that source speaks for.
pub struct Source {
    pub issuers: HashSet<String>,
    /// `None` until the first successful fetch.
    pub keys: Option<Rc<KeySet>>,
}

pub struct Policy {
    pub audience: String,
    pub clock_skew_seconds: u64,
    pub algorithms: Vec<String>,
    pub max_token_bytes: usize,
    /// `exp - iat` at most this (and `iat` required) when set.
    pub max_lifetime_seconds: Option<u64>,
    /// `azp` must be one of these when set.
    pub authorized_parties: Option<Vec<String>>,
}

/// A token whose signature checked out, and which key vouched for it.
#[derive(Clone)]
pub struct Verified {
    pub claims: Rc<Claims>,
    pub source: usize,
    pub kid: Option<String>,
    pub fingerprint: [u8; 32],
}

#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// No published key has the token's `kid`: the JWKS of `source` (the one of the issuer the
    /// token names) may have rotated, worth one refetch of that source.
    UnknownKid {
        kid: String,
        source: usize,
    },
    Rejected(Error),
}

impl From<Error> for VerifyError {
    fn from(e: Error) -> Self {
        VerifyError::Rejected(e)
    }
}

pub fn verify(
    token: &str,
    now: u64,
    sources: &[Source],
    policy: &Policy,
) -> Result<Verified, VerifyError> {
    let meta =
        Token::decode_metadata(token).map_err(|_| Error::InvalidToken("malformed token header"))?;
    let alg = meta.algorithm();
    if !policy.algorithms.iter().any(|a| a == alg) {
        return Err(Error::InvalidToken("signature algorithm not allowed").into());
    }
    if sources.iter().all(|s| s.keys.is_none()) {
        return Err(Error::KeysUnavailable.into());
    }
    let candidates = candidates(sources, meta.key_id(), alg)?;
    if candidates.is_empty() {
        // A source that never loaded might hold the key: that is an outage, not a bad token.
        if sources.iter().any(|s| s.keys.is_none()) {
            return Err(Error::KeysUnavailable.into());
        }
        // Which source could publish it: the one of the issuer the token names, read before the
        // signature is checked (as Envoy's jwt_authn picks a provider by `iss`). A token of no
        // accepted issuer is refused whatever its key, so it never waits.
        let source = unverified_issuer(token)
            .and_then(|iss| sources.iter().position(|s| s.issuers.contains(&iss)))
            .ok_or(Error::InvalidToken("issuer not accepted"))?;
        return Err(VerifyError::UnknownKid {
            kid: meta.key_id().unwrap_or_default().to_string(),
            source,
        });
    }
    let mut last = Error::InvalidToken("signature does not verify");
    for (index, jwk) in candidates {
        let Some(source) = sources.get(index) else {
            continue;
        };
        let Some(key) = jwk.verifier(alg) else {
            continue;
        };
        match key.verify(token, options(now, source, policy)) {
            Ok(claims) => {
                // jwt-simple refuses a duplicate registered claim but keeps the last of any
                // other (a second `resource_access` would win): refuse every duplicate key.
                if !payload_has_unique_keys(token) {
                    return Err(Error::InvalidToken("malformed token").into());
                }
                check_claims(&claims, now, &source.issuers, policy)?;
                return Ok(Verified {
                    claims: Rc::new(claims),
                    source: index,
                    kid: jwk.kid.clone(),
                    fingerprint: jwk.fingerprint,
                });
            }
            Err(e) => last = map_jwt_error(&e),
        }
    }
    Err(last.into())
}

/// Keys that may have signed the token: by `kid`, or the single fitting key when it has none.
fn candidates<'a>(
    sources: &'a [Source],
    kid: Option<&str>,
    alg: &str,
) -> Result<Vec<(usize, &'a Jwk)>, Error> {
    let loaded = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.keys.as_deref().map(|k| (i, k)));
    match kid {
        Some(kid) => Ok(loaded
            .filter_map(|(i, set)| set.by_kid(kid).map(|k| (i, k)))
            .collect()),
        None => {
            let fitting: Vec<(usize, &Jwk)> = loaded
                .filter_map(|(i, set)| set.single_for(alg).map(|k| (i, k)))
                .collect();
            if fitting.len() == 1 {
                Ok(fitting)
            } else {
                Err(Error::InvalidToken(
                    "token has no kid and the issuer publishes several keys",
                ))
            }
        }
    }
}

fn options(now: u64, source: &Source, policy: &Policy) -> VerificationOptions {
    VerificationOptions {
        allowed_issuers: Some(source.issuers.clone()),
        allowed_audiences: Some(HashSet::from([policy.audience.clone()])),
        time_tolerance: Some(Duration::from_secs(policy.clock_skew_seconds)),
        artificial_time: Some(Duration::from_secs(now)),
        max_token_length: Some(policy.max_token_bytes),
        ..VerificationOptions::default()
    }
}

/// The token's payload bytes (base64url-decoded), not yet trusted.
fn payload(token: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()
}

/// The `iss` of a token whose signature is not checked yet: only to choose which issuer's keys
/// to wait for, never to accept anything.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&payload(token)?).ok()?.iss
}

/// The payload is JSON whose objects, at every depth, name each key once.
fn payload_has_unique_keys(token: &str) -> bool {
    payload(token).is_some_and(|bytes| serde_json::from_slice::<UniqueKeys>(&bytes).is_ok())
}

/// Deserializes any JSON, failing on a key that repeats within one object. Depth is bounded by
/// serde_json's recursion limit (128), so it ends on every input.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        // One key per pass: ends with the object.
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

/// The policy's claim checks, run on every request, also when the signature check was cached.
pub fn check_claims(
    claims: &Claims,
    now: u64,
    issuers: &HashSet<String>,
    policy: &Policy,
) -> Result<(), Error> {
    let skew = policy.clock_skew_seconds;
    let exp = claims
        .expires_at
        .ok_or(Error::InvalidToken("token has no exp"))?
        .as_secs();
    if now > exp.saturating_add(skew) {
        return Err(Error::Expired);
    }
    if let Some(nbf) = claims.invalid_before {
        if nbf.as_secs() > now.saturating_add(skew) {
            return Err(Error::InvalidToken("token not valid yet (nbf)"));
        }
    }
    if let Some(iat) = claims.issued_at {
        if iat.as_secs() > now.saturating_add(skew) {
            return Err(Error::InvalidToken("token issued in the future (iat)"));
        }
    }
    if let Some(max) = policy.max_lifetime_seconds {
        let iat = claims
            .issued_at
            .ok_or(Error::InvalidToken("token has no iat"))?
            .as_secs();
        if exp.saturating_sub(iat) > max {
            return Err(Error::InvalidToken(
                "token lifetime exceeds the allowed maximum",
            ));
        }
    }
    match &claims.issuer {
        Some(iss) if issuers.contains(iss) => {}
        _ => return Err(Error::InvalidToken("issuer not accepted")),
    }
    // Keycloak marks access tokens `typ: Bearer`; an ID or refresh token is not a credential
    // for this API even when its `aud` matches.
    match claims.custom.get("typ") {
        None => {}
        Some(serde_json::Value::String(t)) if t == "Bearer" => {}
        Some(_) => return Err(Error::InvalidToken("token type (typ) is not Bearer")),
    }
    if let Some(parties) = &policy.authorized_parties {
        let azp = claims.custom.get("azp").and_then(|v| v.as_str());
        if !azp.is_some_and(|azp| parties.iter().any(|p| p == azp)) {
            return Err(Error::InvalidToken(
                "token was issued to a client not accepted (azp)",
            ));
        }
    }
    // Compared in place: this runs on every request, also on token-cache hits.
    let accepted = match &claims.audiences {
        Some(Audiences::AsString(aud)) => aud == &policy.audience,
        Some(Audiences::AsSet(auds)) => auds.contains(&policy.audience),
        None => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(Error::InvalidToken("audience not accepted"))
    }
}

fn map_jwt_error(e: &jwt_simple::Error) -> Error {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => Error::Expired,
        Some(JWTError::TokenNotValidYet) => Error::InvalidToken("token not valid yet (nbf)"),
        Some(JWTError::ClockDrift) => Error::InvalidToken("token issued in the future (iat)"),
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            Error::InvalidToken("issuer not accepted")
        }
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            Error::InvalidToken("audience not accepted")
        }
        Some(JWTError::InvalidSignature) => Error::InvalidToken("signature does not verify"),
        Some(JWTError::UnknownCriticalExtension) => {
            Error::InvalidToken("unsupported critical header (crit)")
        }
        Some(JWTError::NotJWT) => Error::InvalidToken("header typ is not JWT"),
        Some(JWTError::TokenTooLong) => Error::InvalidToken("token too large"),
        _ => Error::InvalidToken("malformed token"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{b64, claims, jwk_json, keypairs, sign, sign_raw, ISS, NOW};
    use hmac::{Hmac, Mac};
    use jwt_simple::algorithms::RSAKeyPairLike;
    use jwt_simple::prelude::{Claims as C, Duration};
    use serde_json::{json, Value};

    pub fn policy() -> Policy {
        Policy {
            audience: "shasta".into(),
            clock_skew_seconds: 60,
            algorithms: vec!["RS256".into()],
            max_token_bytes: 16384,
            max_lifetime_seconds: None,
            authorized_parties: None,
        }
    }

    pub fn sources() -> Vec<Source> {
        let [a, b] = keypairs();
        let doc = json!({"keys": [jwk_json(a, "sig-1", "sig", "RS256"), jwk_json(b, "enc-1", "enc", "RSA-OAEP")]});
        vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: Some(Rc::new(
                KeySet::parse(doc.to_string().as_bytes(), &["RS256".into()]).unwrap(),
            )),
        }]
    }

    pub fn good_token() -> String {
        sign(
            json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"}),
            claims(json!({})),
            0,
        )
    }

    fn rejected(token: &str) -> Error {
        match verify(token, NOW, &sources(), &policy()) {
            Err(VerifyError::Rejected(e)) => e,
            Err(VerifyError::UnknownKid { .. }) => panic!("unknown kid"),
            Ok(_) => panic!("accepted"),
        }
    }

    fn invalid(token: &str) -> bool {
        matches!(rejected(token), Error::InvalidToken(_))
    }

    #[test]
    fn valid_token() {
        let v = verify(&good_token(), NOW, &sources(), &policy()).unwrap();
        assert_eq!(v.claims.custom["preferred_username"], "admin");
        assert_eq!(v.kid.as_deref(), Some("sig-1"));
        // Also one made by jwt-simple itself, audience as a plain string.
        let c = C::with_custom_claims(
            json!({"resource_access": {}}).as_object().unwrap().clone(),
            Duration::from_hours(1),
        )
        .with_issuer(ISS)
        .with_audience("shasta");
        let t = keypairs()[0].sign(c).unwrap();
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        assert!(verify(&t, now, &sources(), &policy()).is_ok());
    }

    #[test]
    fn time_claims() {
        let h = json!({"alg": "RS256", "kid": "sig-1"});
        let expired = sign(h.clone(), claims(json!({"exp": NOW - 61})), 0);
        assert_eq!(rejected(&expired), Error::Expired);
        // Within the skew it still passes.
        assert!(verify(
            &sign(h.clone(), claims(json!({"exp": NOW - 59})), 0),
            NOW,
            &sources(),
            &policy()
        )
        .is_ok());
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"nbf": NOW + 120})),
            0
        )));
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"iat": NOW + 120})),
            0
        )));
        assert!(invalid(&sign(h.clone(), claims(json!({"exp": null})), 0)));
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"exp": "1900000000"})),
            0
        )));
    }

    #[test]
    fn issuer_and_audience() {
        let h = json!({"alg": "RS256", "kid": "sig-1"});
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"iss": "https://evil/realms/shasta"})),
            0
        )));
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"iss": format!("{ISS}/")})),
            0
        )));
        assert!(invalid(&sign(h.clone(), claims(json!({"iss": null})), 0)));
        assert!(invalid(&sign(
            h.clone(),
            claims(json!({"aud": ["account"]})),
            0
        )));
        assert!(invalid(&sign(h.clone(), claims(json!({"aud": null})), 0)));
        assert!(verify(
            &sign(h.clone(), claims(json!({"aud": "shasta"})), 0),
            NOW,
            &sources(),
            &policy()
        )
        .is_ok());
    }

    #[test]
    fn algorithm_attacks() {
        let body = b64(claims(json!({})).to_string().as_bytes());
        let none = format!("{}.{body}.", b64(br#"{"alg":"none","kid":"sig-1"}"#));
        assert!(invalid(&none));
        // HS256 keyed with the RSA public key (the classic confusion attack).
        let pem = keypairs()[0].public_key().to_pem().unwrap();
        for alg in ["HS256", "HS384", "HS512"] {
            let head = b64(format!(r#"{{"alg":"{alg}","kid":"sig-1"}}"#).as_bytes());
            let input = format!("{head}.{body}");
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(pem.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            let t = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
            assert_eq!(
                rejected(&t),
                Error::InvalidToken("signature algorithm not allowed")
            );
        }
    }

    #[test]
    fn keys() {
        // Signed by a key that is not published (the enc key's private half, kid of the sig key).
        let foreign = sign(
            json!({"alg": "RS256", "kid": "sig-1"}),
            claims(json!({})),
            1,
        );
        assert_eq!(
            rejected(&foreign),
            Error::InvalidToken("signature does not verify")
        );
        // kid of the encryption key: not a signing key, so unknown.
        let enc = sign(
            json!({"alg": "RS256", "kid": "enc-1"}),
            claims(json!({})),
            1,
        );
        assert_eq!(
            verify(&enc, NOW, &sources(), &policy()).err(),
            Some(VerifyError::UnknownKid {
                kid: "enc-1".into(),
                source: 0
            })
        );
        let odd = sign(
            json!({"alg": "RS256", "kid": "../../etc/passwd\u{0}"}),
            claims(json!({})),
            0,
        );
        assert_eq!(
            verify(&odd, NOW, &sources(), &policy()).err(),
            Some(VerifyError::UnknownKid {
                kid: "../../etc/passwd\u{0}".into(),
                source: 0
            })
        );
        // An unknown kid of no accepted issuer (or none): refused at once, it never waits.
        for iss in [
            json!("https://elsewhere.example/realms/shasta"),
            json!(null),
            json!(7),
        ] {
            let stranger = sign(
                json!({"alg": "RS256", "kid": "sig-9"}),
                claims(json!({ "iss": iss })),
                0,
            );
            assert_eq!(
                rejected(&stranger),
                Error::InvalidToken("issuer not accepted"),
                "{iss}"
            );
        }
        // No kid: the only signing key is tried.
        let no_kid = sign(json!({"alg": "RS256"}), claims(json!({})), 0);
        assert!(verify(&no_kid, NOW, &sources(), &policy()).is_ok());
    }

    #[test]
    fn no_kid_with_several_keys_is_refused() {
        let [a, b] = keypairs();
        let doc = json!({"keys": [jwk_json(a, "sig-1", "sig", "RS256"), jwk_json(b, "sig-2", "sig", "RS256")]});
        let s = vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: Some(Rc::new(
                KeySet::parse(doc.to_string().as_bytes(), &["RS256".into()]).unwrap(),
            )),
        }];
        let t = sign(json!({"alg": "RS256"}), claims(json!({})), 0);
        assert!(matches!(
            verify(&t, NOW, &s, &policy()),
            Err(VerifyError::Rejected(Error::InvalidToken(_)))
        ));
    }

    #[test]
    fn keys_never_fetched() {
        let s = vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: None,
        }];
        assert_eq!(
            verify(&good_token(), NOW, &s, &policy()).err(),
            Some(VerifyError::Rejected(Error::KeysUnavailable))
        );
    }

    #[test]
    fn malformed() {
        let good = good_token();
        let parts: Vec<&str> = good.split('.').collect();
        // Tampered payload.
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims(json!({"preferred_username": "root"}))
                .to_string()
                .as_bytes()),
            parts[2]
        );
        assert!(invalid(&tampered));
        assert!(invalid(&format!("{}.{}!.{}", parts[0], parts[1], parts[2])));
        assert!(invalid(&format!("{}x.{}.{}", parts[0], parts[1], parts[2])));
        assert!(invalid("a.b.c"));
        assert!(invalid(&format!("{}.{}", parts[0], parts[1])));
        // crit header, and a header typ that is not JWT.
        assert!(invalid(&sign(
            json!({"alg": "RS256", "kid": "sig-1", "crit": ["exp"]}),
            claims(json!({})),
            0
        )));
        assert!(invalid(&sign(
            json!({"alg": "RS256", "kid": "sig-1", "typ": "at+jwt-not"}),
            claims(json!({})),
            0
        )));
        // Deeply nested claims fail without overflowing the stack.
        let deep = format!(
            "{{\"iss\":\"{ISS}\",\"x\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let h = b64(br#"{"alg":"RS256","kid":"sig-1"}"#);
        let input = format!("{h}.{}", b64(deep.as_bytes()));
        let t = format!("{input}.{}", b64(&sign_raw("RS256", 0, input.as_bytes())));
        assert!(invalid(&t));
        // Duplicate claims are refused by the JSON parser for registered claims. Both `iss`
        // values are the accepted issuer, so the duplicate is the only thing wrong; the control
        // (the same claims with `iss` once, signed the same way) is accepted.
        let signed = |payload: &str| {
            let input = format!("{h}.{}", b64(payload.as_bytes()));
            format!("{input}.{}", b64(&sign_raw("RS256", 0, input.as_bytes())))
        };
        let once = format!(r#"{{"iss":"{ISS}","aud":"shasta","exp":1900000000}}"#);
        let twice = format!(r#"{{"iss":"{ISS}","iss":"{ISS}","aud":"shasta","exp":1900000000}}"#);
        let s = sources();
        assert!(verify(&signed(&once), NOW, &s, &policy()).is_ok());
        assert!(invalid(&signed(&twice)));
    }

    fn verdict(extra: Value, policy: &Policy) -> Result<(), Error> {
        let t = sign(
            json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"}),
            claims(extra),
            0,
        );
        match verify(&t, NOW, &sources(), policy) {
            Ok(_) => Ok(()),
            Err(VerifyError::Rejected(e)) => Err(e),
            Err(VerifyError::UnknownKid { .. }) => panic!("unknown kid"),
        }
    }

    #[test]
    fn token_type_must_be_bearer_when_present() {
        // Keycloak's ID and refresh tokens carry the same aud; only access tokens are Bearer.
        assert_eq!(verdict(json!({}), &policy()), Ok(()));
        assert_eq!(verdict(json!({"typ": null}), &policy()), Ok(()));
        for typ in [
            json!("ID"),
            json!("Refresh"),
            json!("bearer"),
            json!(["Bearer"]),
            json!(1),
        ] {
            assert_eq!(
                verdict(json!({"typ": typ}), &policy()),
                Err(Error::InvalidToken("token type (typ) is not Bearer")),
                "{typ}"
            );
        }
    }

    #[test]
    fn authorized_parties_when_configured() {
        let p = Policy {
            authorized_parties: Some(vec!["shasta".into(), "cray".into()]),
            ..policy()
        };
        assert_eq!(verdict(json!({}), &p), Ok(()));
        assert_eq!(verdict(json!({"azp": "cray"}), &p), Ok(()));
        let refused = Err(Error::InvalidToken(
            "token was issued to a client not accepted (azp)",
        ));
        assert_eq!(verdict(json!({"azp": "other-client"}), &p), refused);
        assert_eq!(verdict(json!({"azp": null}), &p), refused);
        assert_eq!(verdict(json!({"azp": "other-client"}), &policy()), Ok(()));
    }

    #[test]
    fn lifetime_cap_when_configured() {
        let p = Policy {
            max_lifetime_seconds: Some(3600),
            ..policy()
        };
        // Default claims: iat NOW-10, exp NOW+3600: lifetime 3610.
        assert_eq!(
            verdict(json!({}), &p),
            Err(Error::InvalidToken(
                "token lifetime exceeds the allowed maximum"
            ))
        );
        assert_eq!(verdict(json!({"iat": NOW}), &p), Ok(()));
        assert_eq!(
            verdict(json!({"iat": null}), &p),
            Err(Error::InvalidToken("token has no iat"))
        );
        // A field token that lives a year.
        assert_eq!(
            verdict(json!({"iat": NOW - 10, "exp": NOW + 365 * 86_400}), &p),
            Err(Error::InvalidToken(
                "token lifetime exceeds the allowed maximum"
            ))
        );
        assert_eq!(verdict(json!({"iat": null}), &policy()), Ok(()));
    }

    #[test]
    fn duplicate_keys_anywhere_in_the_payload_are_refused() {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "sig-1"});
        let good = claims(json!({})).to_string();
        let signed = |payload: &str| {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(payload.as_bytes())
            );
            format!("{input}.{}", b64(&sign_raw("RS256", 0, input.as_bytes())))
        };
        // Control: the same signing path with every key once verifies.
        assert!(verify(&signed(&good), NOW, &sources(), &policy()).is_ok());
        let user = claims(json!({"resource_access": {"shasta": {"roles": ["user"]}}})).to_string();
        for dup in [
            // Escalation: a second resource_access granting admin (last one would win).
            user.replacen(
                '{',
                r#"{"resource_access":{"shasta":{"roles":["admin"]}},"#,
                1,
            ),
            good.replacen('{', r#"{"groups":["x"],"groups":["y"],"#, 1),
            // Nested: a duplicate inside resource_access.
            good.replacen(
                r#""shasta":"#,
                r#""shasta":{"roles":["admin"]},"shasta":"#,
                1,
            ),
        ] {
            assert_eq!(
                rejected(&signed(&dup)),
                Error::InvalidToken("malformed token"),
                "{dup}"
            );
        }
    }
}
