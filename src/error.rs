//! Every way a request can end short of a 201, and the one place each maps to an HTTP answer.
//! Bodies and headers never carry the token, a key or anything RGW returned but its error code.

use crate::sts::credentials::push_json_string;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request contradicts itself (e.g. `?tenant=` and `Cray-Tenant-Name` differ).
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    /// No bearer token: RFC 6750 challenge without an error code.
    MissingToken,
    /// The token is malformed, badly signed, or has the wrong issuer/audience.
    InvalidToken(&'static str),
    Expired,
    /// No keys were ever fetched for the token's issuer: retry soon, the token may be fine.
    KeysUnavailable,
    Forbidden(&'static str),
    /// RGW answered with an error (its status and sanitized error code).
    Rgw {
        status: u16,
        code: String,
    },
    RgwUnavailable,
    RgwTimeout,
    RgwBadAnswer(&'static str),
}

/// A complete local reply to the client.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// Label for metrics and logs (see [`Error::reason`]).
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Hand-written so a 201's body (the secret access key and session token) can never reach a log
/// through `{:?}`: the body shows as its length only, as `RgwConfig` hides its secret.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field(
                "body",
                &format_args!("<{} bytes redacted>", self.body.len()),
            )
            .finish()
    }
}

impl Error {
    /// Short stable label for metrics and the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::MissingToken => "missing",
            Error::InvalidToken(_) => "invalid",
            Error::Expired => "expired",
            Error::KeysUnavailable => "keys_unavailable",
            Error::Forbidden(_) => "forbidden",
            Error::Rgw { .. } => "rgw_error",
            Error::RgwUnavailable => "rgw_unavailable",
            Error::RgwTimeout => "rgw_timeout",
            Error::RgwBadAnswer(_) => "rgw_bad_answer",
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            Error::BadRequest(_) => 400,
            Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::MissingToken | Error::InvalidToken(_) | Error::Expired => 401,
            Error::KeysUnavailable | Error::RgwUnavailable => 503,
            Error::Forbidden(_) => 403,
            Error::Rgw { .. } | Error::RgwBadAnswer(_) => 502,
            Error::RgwTimeout => 504,
        }
    }

    fn detail(&self) -> String {
        match self {
            Error::BadRequest(why) => format!("bad request: {why}"),
            Error::NotFound => "no such endpoint".into(),
            Error::MethodNotAllowed { allow } => format!("method not allowed; use {allow}"),
            Error::MissingToken => "a bearer token is required".into(),
            Error::InvalidToken(why) => format!("invalid token: {why}"),
            Error::Expired => "invalid token: the token has expired".into(),
            Error::KeysUnavailable => "the issuer's signing keys are not available yet".into(),
            Error::Forbidden(why) => format!("forbidden: {why}"),
            Error::Rgw { status, code } => {
                format!("the object store refused the credentials request: {code} (HTTP {status})")
            }
            Error::RgwUnavailable => "the object store is unavailable".into(),
            Error::RgwTimeout => "the object store did not answer in time".into(),
            Error::RgwBadAnswer(why) => format!("the object store gave an unusable answer: {why}"),
        }
    }

    pub fn reply(&self, realm: &str) -> Reply {
        let status = self.status();
        let mut headers: Vec<(&'static str, String)> = vec![
            ("content-type", "application/problem+json".into()),
            ("cache-control", "no-store".into()),
        ];
        match self {
            Error::MissingToken => {
                headers.push(("www-authenticate", format!("Bearer realm=\"{realm}\"")));
            }
            Error::InvalidToken(_) | Error::Expired => {
                let description = self.detail().replace('"', "'");
                headers.push((
                    "www-authenticate",
                    format!(
                        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
                    ),
                ));
            }
            Error::Forbidden(_) => {
                headers.push((
                    "www-authenticate",
                    format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\""),
                ));
            }
            Error::MethodNotAllowed { allow } => headers.push(("allow", (*allow).to_string())),
            Error::KeysUnavailable | Error::RgwUnavailable => {
                headers.push(("retry-after", "5".into()))
            }
            _ => {}
        }
        // Compact JSON, keys in sorted order (as serde_json printed it before), written by hand:
        // no JSON tree and no number formatting in the module.
        let mut body = String::with_capacity(160);
        body.push('{');
        if let Error::Rgw { code, .. } = self {
            body.push_str("\"code\":");
            push_json_string(&mut body, code);
            body.push(',');
        }
        body.push_str("\"detail\":");
        push_json_string(&mut body, &self.detail());
        body.push_str(&format!(",\"status\":{status},\"title\":"));
        push_json_string(&mut body, title(status));
        body.push_str(",\"type\":\"about:blank\"}");
        Reply {
            status,
            reason: self.reason(),
            headers,
            body: body.into_bytes(),
        }
    }
}

fn title(status: u32) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(a: &'a Reply, name: &str) -> Option<&'a str> {
        a.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn statuses_and_challenges() {
        let a = Error::MissingToken.reply("sts");
        assert_eq!(a.status, 401);
        assert_eq!(header(&a, "www-authenticate"), Some("Bearer realm=\"sts\""));

        let a = Error::Expired.reply("sts");
        assert_eq!(a.status, 401);
        assert!(header(&a, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));

        let a = Error::KeysUnavailable.reply("sts");
        assert_eq!((a.status, header(&a, "retry-after")), (503, Some("5")));

        let a = Error::MethodNotAllowed { allow: "PUT" }.reply("sts");
        assert_eq!((a.status, header(&a, "allow")), (405, Some("PUT")));

        assert_eq!(Error::Forbidden("x").reply("r").status, 403);
        assert_eq!(Error::RgwTimeout.reply("r").status, 504);
        assert_eq!(Error::RgwUnavailable.reply("r").status, 503);
        assert_eq!(Error::RgwBadAnswer("x").reply("r").status, 502);
        assert_eq!(Error::NotFound.reply("r").status, 404);
    }

    #[test]
    fn bad_request() {
        let a = Error::BadRequest("tenant query parameter and Cray-Tenant-Name differ").reply("r");
        assert_eq!((a.status, a.reason), (400, "bad_request"));
        assert_eq!(header(&a, "content-type"), Some("application/problem+json"));
        assert_eq!(header(&a, "cache-control"), Some("no-store"));
        assert_eq!(header(&a, "www-authenticate"), None);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["status"], 400);
        assert_eq!(v["title"], "Bad Request");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(
            v["detail"],
            "bad request: tenant query parameter and Cray-Tenant-Name differ"
        );
    }

    /// `{:?}` of a reply shows its status, reason and headers but never its body (a 201's body
    /// holds the secret key and the session token).
    #[test]
    fn debug_hides_the_body() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETKEY";
        let session = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
        let body = format!("{{\"SecretAccessKey\":\"{secret}\",\"SessionToken\":\"{session}\"}}");
        let reply = Reply {
            status: 201,
            reason: "minted",
            headers: vec![("content-type", "application/json".into())],
            body: body.clone().into_bytes(),
        };
        let shown = format!("{reply:?}");
        // Positive control: the reply holds both, and the check finds them in a plain dump.
        let plain = format!("{:?}", String::from_utf8_lossy(&reply.body));
        assert!(plain.contains(secret) && plain.contains(session));
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(session), "{shown}");
        assert!(!shown.contains("SecretAccessKey"), "{shown}");
        // The rest is still there, and the body's length.
        assert!(shown.contains("201") && shown.contains("minted"), "{shown}");
        assert!(shown.contains("application/json"), "{shown}");
        assert!(
            shown.contains(&format!("<{} bytes redacted>", body.len())),
            "{shown}"
        );
    }

    #[test]
    fn problem_json_body() {
        let a = Error::Rgw {
            status: 403,
            code: "AccessDenied".into(),
        }
        .reply("r");
        assert_eq!(a.status, 502);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(v["title"], "Bad Gateway");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["code"], "AccessDenied");
        assert!(v["detail"].as_str().unwrap().contains("AccessDenied"));
        assert_eq!(header(&a, "content-type"), Some("application/problem+json"));
    }
}
