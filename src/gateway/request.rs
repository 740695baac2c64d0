//! What a minting request asks for, read once from its headers: the token, the tenant
//! (`Cray-Tenant-Name`, or `?tenant=` on the credentials route) and the request id. The headers
//! themselves are not kept.
use crate::error::Error;
use crate::gateway::parking::Ask;
use crate::gateway::route::Endpoint;
use crate::token::extract::{bearer_token, container_token};

/// Longest `x-request-id` kept for the log line.
const MAX_REQUEST_ID: usize = 128;

/// Longest tenant name kept: longer than any valid one (refused by authorization), never
/// stored whole.
const MAX_TENANT: usize = 256;

/// What a minting request needs, taken from its headers once; the headers are not kept.
///
/// `PUT token`: `Authorization: Bearer` (or `X-Forwarded-Access-Token`); `GET credentials` also
/// takes the bare JWT as the `Authorization` value. Both: the tenant from `Cray-Tenant-Name` or
/// `?tenant=T` (AWS SDKs cannot add headers); two headers, two parameters, or a header and a
/// parameter that differ are a 400.
pub fn ask_of(
    headers: &[(String, String)],
    max_token_bytes: usize,
    endpoint: Endpoint,
) -> Result<Ask, Error> {
    let token = match endpoint {
        Endpoint::Token => bearer_token(headers, max_token_bytes)?,
        Endpoint::Credentials => container_token(headers, max_token_bytes)?,
    }
    .to_string();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let request_id = header("x-request-id")
        .unwrap_or("-")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REQUEST_ID)
        .collect();
    // Two tenants, in headers or in the query, are ambiguous: never pick one.
    let mut headers_named = headers.iter().filter(|(n, _)| n == "cray-tenant-name");
    let mut tenant = match (headers_named.next(), headers_named.next()) {
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest("more than one Cray-Tenant-Name header"))
        }
        (Some((_, value)), None) => Some(value.to_string()),
        (None, _) => None,
    };
    // Both routes read `?tenant=` the same way (it is never ignored).
    if let Some(query) = tenant_query(header(":path").unwrap_or_default())? {
        match &tenant {
            Some(h) if *h != query => {
                return Err(Error::BadRequest(
                    "the tenant query parameter and the Cray-Tenant-Name header differ",
                ))
            }
            _ => tenant = Some(query),
        }
    }
    let tenant = tenant.map(|t| t.chars().take(MAX_TENANT).collect());
    Ok(Ask {
        token,
        tenant,
        request_id,
        endpoint,
    })
}

/// The `tenant` parameter of the path's query, percent-decoded (`+` is a space, as in forms).
/// More than one is a 400: which one was meant is unknown.
fn tenant_query(path: &str) -> Result<Option<String>, Error> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name) != "tenant" {
            continue;
        }
        if found.is_some() {
            return Err(Error::BadRequest("more than one tenant query parameter"));
        }
        found = Some(percent_decode(value));
    }
    Ok(found)
}

/// `%XX` → that byte, `+` → space; a `%` not followed by two hex digits stays as it is. Bytes
/// that are not UTF-8 become U+FFFD (no valid tenant has them).
pub(crate) fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (_, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "aaa.bbb.ccc";

    fn ask(path: &str, extra: &[(&str, &str)], endpoint: Endpoint) -> Result<Ask, Error> {
        let mut h = vec![
            (":path".to_string(), path.to_string()),
            ("authorization".to_string(), format!("Bearer {T}")),
        ];
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        ask_of(&h, 1000, endpoint)
    }

    #[test]
    fn one_tenant_or_a_400() {
        for e in [Endpoint::Token, Endpoint::Credentials] {
            let tenant = |path: &str, extra: &[(&str, &str)]| ask(path, extra, e).map(|a| a.tenant);
            assert_eq!(tenant("/apis/sts/token", &[]), Ok(None));
            assert_eq!(
                tenant("/x", &[("cray-tenant-name", "blue")]),
                Ok(Some("blue".into()))
            );
            // The query is honoured on both routes, alone or agreeing with the header.
            assert_eq!(tenant("/x?tenant=blue", &[]), Ok(Some("blue".into())));
            assert_eq!(
                tenant("/x?a=1&tenant=bl%75e", &[("cray-tenant-name", "blue")]),
                Ok(Some("blue".into()))
            );
            for (path, extra, why) in [
                (
                    "/x",
                    &[("cray-tenant-name", "red"), ("cray-tenant-name", "blue")][..],
                    "more than one Cray-Tenant-Name header",
                ),
                (
                    "/x",
                    &[("cray-tenant-name", "blue"), ("cray-tenant-name", "blue")][..],
                    "more than one Cray-Tenant-Name header",
                ),
                (
                    "/x?tenant=red",
                    &[("cray-tenant-name", "blue")][..],
                    "the tenant query parameter and the Cray-Tenant-Name header differ",
                ),
                (
                    "/x?tenant=blue&tenant=blue",
                    &[][..],
                    "more than one tenant query parameter",
                ),
            ] {
                assert_eq!(
                    tenant(path, extra),
                    Err(Error::BadRequest(why)),
                    "{e:?} {path} {extra:?}"
                );
            }
        }
    }
}
