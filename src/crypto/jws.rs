//! The compact-JWS checks every verifier shares (RSA in `rsa_sig`, ECDSA and EdDSA in `ec_sig`):
//! jwt-simple 0.15's `Token::verify` and `JWTClaims::validate`, step for step and error for error,
//! with the signature check left to the caller. jwt-simple keeps `validate` crate-private, so it is
//! written out here; the algorithm tests compare every path with jwt-simple itself.
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Clock, JWTClaims, Token};
use jwt_simple::JWTError;
use serde::Deserialize;

/// Claims of a verified token: the registered ones typed, every other one kept as JSON.
pub type Claims = JWTClaims<serde_json::Map<String, serde_json::Value>>;

/// jwt-simple's `token::MAX_HEADER_LENGTH`.
const MAX_HEADER_LENGTH: usize = 8192;

/// jwt-simple's `verify_token`, the same for every algorithm (`rsa_sig`, `ec_sig`): `alg` is the key's algorithm, `verify_signature(message, signature)` its check.
/// `options.max_header_length` above jwt-simple's 8192 is not honoured (the header is decoded by
/// `Token::decode_metadata`, which caps it).
pub fn verify_token_with(
    alg: &str,
    verify_signature: &dyn Fn(&[u8], &[u8]) -> bool,
    token: &str,
    options: &VerificationOptions,
) -> Result<Claims, jwt_simple::Error> {
    {
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
        if meta.algorithm() != alg {
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
                b64url(&salt)?;
            }
        }
        let signature = b64url(signature_b64)?;
        let authenticated = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or(JWTError::CompactEncodingError)?;
        if !verify_signature(authenticated.as_bytes(), &signature) {
            return Err(JWTError::InvalidSignature.into());
        }
        let claims: Claims = serde_json::from_slice(&b64url(claims_b64)?)?;
        validate(&claims, options)?;
        Ok(claims)
    }
}

/// Base64url without padding, as jwt-simple's `ct_codecs` decodes it (no `=`, no stray bits,
/// the same error), with the `base64` crate: `ct_codecs` is constant-time and several times
/// slower, which a public token does not need.
fn b64url(s: &str) -> Result<Vec<u8>, jwt_simple::Error> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| jwt_simple::reexports::ct_codecs::Error::InvalidInput.into())
}

/// The raw `salt` header member (the header already decoded once in `Token::decode_metadata`).
fn header_salt(header_b64: &str) -> Result<Option<String>, jwt_simple::Error> {
    #[derive(Deserialize)]
    struct Salt {
        salt: Option<String>,
    }
    let header = b64url(header_b64)?;
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
