//! The STS `AssumeRole` call as Ceph RGW takes it: a SigV4-signed form POST to `/`.
//!
//! The body is form-encoded with RFC 3986 percent-encoding (space is `%20`, never `+`: RGW 16.2
//! does not decode `+`). The signature covers `content-type`, `host`, `x-amz-content-sha256` and
//! `x-amz-date`; `host` is the `:authority` Envoy sends.

use crate::crypto::sigv4::{self, PathMode, Request, Scope, SigningKeyCache};

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
const STS_VERSION: &str = "2011-06-15";

/// What one AssumeRole call needs besides the secret and the time.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRoleParams<'a> {
    /// `:authority` of the callout and the signed `host` header, e.g. `rgw.local:8080`.
    pub authority: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub access_key_id: &'a str,
    pub role_arn: &'a str,
    pub role_session_name: &'a str,
    pub duration_seconds: u32,
    /// Optional session policy (IAM JSON) that narrows the role.
    pub policy: Option<&'a str>,
}

/// Headers (HTTP/2 pseudo-headers first) and body, ready for an Envoy HTTP callout.
#[derive(Clone, PartialEq, Eq)]
pub struct AssumeRoleRequest {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl AssumeRoleRequest {
    /// The headers as borrowed pairs, the shape `dispatch_http_call` takes.
    #[cfg(test)]
    fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

// The signature in `authorization` is not secret on its own, but keep Debug short and uniform.
impl core::fmt::Debug for AssumeRoleRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AssumeRoleRequest")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// `Action=AssumeRole&Version=2011-06-15&RoleArn=...&RoleSessionName=...&DurationSeconds=...`
/// (then `&Policy=...` when set), each value percent-encoded.
fn form_body(p: &AssumeRoleParams<'_>) -> String {
    let duration = p.duration_seconds.to_string();
    let mut fields: Vec<(&str, &str)> = vec![
        ("Action", "AssumeRole"),
        ("Version", STS_VERSION),
        ("RoleArn", p.role_arn),
        ("RoleSessionName", p.role_session_name),
        ("DurationSeconds", &duration),
    ];
    if let Some(policy) = p.policy {
        fields.push(("Policy", policy));
    }
    let mut out =
        String::with_capacity(160 + p.role_arn.len() + p.policy.map_or(0, |s| s.len() * 3));
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&sigv4::uri_encode(v, false));
    }
    out
}

/// Build the signed AssumeRole callout at `unix_seconds`.
pub fn build(
    p: &AssumeRoleParams<'_>,
    keys: &mut SigningKeyCache,
    secret_access_key: &str,
    unix_seconds: u64,
) -> AssumeRoleRequest {
    let body = form_body(p);
    let payload_sha256 = sigv4::sha256_hex(body.as_bytes());
    let amz_date = sigv4::amz_date(unix_seconds);
    let date = amz_date.get(..8).unwrap_or_default();
    let scope = Scope {
        date_yyyymmdd: date,
        region: p.region,
        service: p.service,
    };
    let key = keys.get(secret_access_key, date, p.region, p.service);
    let signed_headers = [
        ("host", p.authority),
        ("content-type", CONTENT_TYPE),
        ("x-amz-date", amz_date.as_str()),
        ("x-amz-content-sha256", payload_sha256.as_str()),
    ];
    let req = Request {
        method: "POST",
        path: "/",
        path_mode: PathMode::AsIs,
        query: &[],
        headers: &signed_headers,
        payload_sha256: &payload_sha256,
    };
    let signed = sigv4::sign(&req, p.access_key_id, key, &amz_date, &scope);
    let headers = vec![
        (":method", "POST".to_owned()),
        (":path", "/".to_owned()),
        (":authority", p.authority.to_owned()),
        ("content-type", CONTENT_TYPE.to_owned()),
        ("x-amz-date", amz_date.clone()),
        ("x-amz-content-sha256", payload_sha256.clone()),
        ("authorization", signed.authorization),
    ];
    AssumeRoleRequest { headers, body }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const T: u64 = 1_796_000_279; // 2026-11-30T00:57:59Z

    fn params() -> AssumeRoleParams<'static> {
        AssumeRoleParams {
            authority: "rgw.local:8080",
            region: "us-east-1",
            service: "sts",
            access_key_id: "STSUSERKEY",
            role_arn: "arn:aws:iam:::role/ARS",
            role_session_name: "alice-0000002a",
            duration_seconds: 3600,
            policy: None,
        }
    }

    #[test]
    fn body_is_percent_encoded_without_plus() {
        assert_eq!(
            form_body(&params()),
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A%3Arole%2FARS\
             &RoleSessionName=alice-0000002a&DurationSeconds=3600"
        );
        let mut p = params();
        p.role_session_name = "a b+c=d&e";
        p.policy = Some(r#"{"Version": "2012-10-17"}"#);
        let body = form_body(&p);
        assert!(
            body.contains("&RoleSessionName=a%20b%2Bc%3Dd%26e&"),
            "{body}"
        );
        assert!(
            body.ends_with("&Policy=%7B%22Version%22%3A%20%222012-10-17%22%7D"),
            "{body}"
        );
        assert!(!body.contains('+') && !body.contains(' '));
    }

    #[test]
    fn headers_are_complete_and_in_order() {
        let mut keys = SigningKeyCache::new();
        let r = build(&params(), &mut keys, SECRET, T);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                ":method",
                ":path",
                ":authority",
                "content-type",
                "x-amz-date",
                "x-amz-content-sha256",
                "authorization"
            ]
        );
        assert_eq!(r.header(":method"), Some("POST"));
        assert_eq!(r.header(":path"), Some("/"));
        assert_eq!(r.header(":authority"), Some("rgw.local:8080"));
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(r.header("x-amz-date"), Some("20261130T005759Z"));
        assert_eq!(
            r.header("x-amz-content-sha256"),
            Some(sigv4::sha256_hex(r.body.as_bytes()).as_str())
        );
        let auth = r.header("authorization").unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=STSUSERKEY/20261130/us-east-1/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_eq!(r.header_refs().len(), 7);
    }

    /// Consistency, not an oracle (that is `golden_request`): the signature is recomputed from
    /// the headers as sent, the way a server does, and a wrong secret gives another one.
    #[test]
    fn signature_verifies_when_recomputed_from_sent_headers() {
        let mut keys = SigningKeyCache::new();
        let r = build(&params(), &mut keys, SECRET, T);
        let auth = r.header("authorization").unwrap();
        let sig = auth.rsplit_once("Signature=").unwrap().1;
        let amz_date = r.header("x-amz-date").unwrap();
        let sent: Vec<(&str, &str)> = vec![
            ("Host", r.header(":authority").unwrap()),
            ("Content-Type", r.header("content-type").unwrap()),
            ("X-Amz-Date", amz_date),
            (
                "X-Amz-Content-Sha256",
                r.header("x-amz-content-sha256").unwrap(),
            ),
        ];
        let payload = sigv4::sha256_hex(r.body.as_bytes());
        let req = Request {
            method: "POST",
            path: "/",
            path_mode: PathMode::Normalize,
            query: &[],
            headers: &sent,
            payload_sha256: &payload,
        };
        let scope = Scope {
            date_yyyymmdd: &amz_date[..8],
            region: "us-east-1",
            service: "sts",
        };
        let key = sigv4::derive_signing_key(SECRET, "20261130", "us-east-1", "sts");
        let again = sigv4::sign(&req, "STSUSERKEY", &key, amz_date, &scope);
        assert_eq!(again.signature, sig);
        assert_eq!(again.authorization, auth);

        let wrong = sigv4::derive_signing_key("not-the-secret", "20261130", "us-east-1", "sts");
        assert_ne!(
            sigv4::sign(&req, "STSUSERKEY", &wrong, amz_date, &scope).signature,
            sig
        );
    }

    /// Fixed time, keys and inputs; the expected values come from an independent signer,
    /// botocore's SigV4Auth: `tests/sigv4/golden_sts_request.py` computes them, and `make unit`
    /// checks that they are the ones here.
    #[test]
    fn golden_request() {
        let mut keys = SigningKeyCache::new();
        let r = build(&params(), &mut keys, SECRET, T);
        assert_eq!(
            r.header("x-amz-content-sha256"),
            Some("46539951783f0cc25460007d1cdcddf289a745dde54fcbc357508a0d68653b7e")
        );
        assert_eq!(
            r.header("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=STSUSERKEY/20261130/us-east-1/sts/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, \
                 Signature=5622df6dae72e6c5e873c828611d0683873880f4c6d0fc5aa5e58c6df9b411a9"
            )
        );
    }

    #[test]
    fn signing_key_is_reused_within_a_day() {
        let mut keys = SigningKeyCache::new();
        let a = build(&params(), &mut keys, SECRET, T);
        let b = build(&params(), &mut keys, SECRET, T + 60);
        assert_eq!(keys.derivations(), 1);
        assert_ne!(a.header("authorization"), b.header("authorization"));
        build(&params(), &mut keys, SECRET, T + 86_400);
        assert_eq!(keys.derivations(), 2);
    }

    #[test]
    fn debug_does_not_show_header_values() {
        let mut keys = SigningKeyCache::new();
        let r = build(&params(), &mut keys, SECRET, T);
        let shown = format!("{r:?}");
        assert!(!shown.contains("Signature=") && !shown.contains("STSUSERKEY"));
    }
}
