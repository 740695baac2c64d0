//! Finds the bearer token: `Authorization: Bearer <jwt>` (RFC 6750), else
//! `X-Forwarded-Access-Token`. A token in the query string is never looked at.
//!
//! The container-credentials endpoint ([`container_token`]) also takes the bare JWT as the whole
//! `Authorization` value: AWS SDKs send a token file's content verbatim, and such a file often
//! holds only the JWT.
use crate::error::Error;

/// `headers` are the request headers as Envoy hands them over (names lower-case).
pub fn bearer_token(headers: &[(String, String)], max_bytes: usize) -> Result<&str, Error> {
    find_token(headers, max_bytes, false)
}

/// Like [`bearer_token`], and `Authorization: <jwt>` (one word, no scheme) is that JWT.
pub fn container_token(headers: &[(String, String)], max_bytes: usize) -> Result<&str, Error> {
    find_token(headers, max_bytes, true)
}

fn find_token(
    headers: &[(String, String)],
    max_bytes: usize,
    bare_ok: bool,
) -> Result<&str, Error> {
    let mut authorization = headers.iter().filter(|(n, _)| n == "authorization");
    let token = match (authorization.next(), authorization.next()) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidToken("more than one Authorization header"))
        }
        (Some((_, value)), None) => from_authorization(value, bare_ok)?,
        (None, _) => {
            let mut forwarded = headers
                .iter()
                .filter(|(n, _)| n == "x-forwarded-access-token");
            match (forwarded.next(), forwarded.next()) {
                (Some(_), Some(_)) => {
                    return Err(Error::InvalidToken(
                        "more than one X-Forwarded-Access-Token header",
                    ))
                }
                (Some((_, value)), None) => value.trim(),
                (None, _) => return Err(Error::MissingToken),
            }
        }
    };
    check_syntax(token, max_bytes)?;
    Ok(token)
}

fn from_authorization(value: &str, bare_ok: bool) -> Result<&str, Error> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    // One word that is not the scheme itself: the bare token (its syntax is checked next).
    if bare_ok && rest.is_empty() && !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(scheme);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) is not a bearer token: challenge as if none was sent.
        return Err(Error::MissingToken);
    }
    Ok(rest.trim())
}

/// RFC 6750 b64token syntax, three dot-separated parts, bounded size: cheap checks that keep
/// hostile input away from the JSON and RSA code.
fn check_syntax(token: &str, max_bytes: usize) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::InvalidToken("empty bearer token"));
    }
    if token.len() > max_bytes {
        return Err(Error::InvalidToken("token too large"));
    }
    // One pass over the bytes (this runs on every request); the part count is reported first.
    let (mut dots, mut foreign) = (0usize, false);
    for &b in token.as_bytes() {
        match b {
            b'.' => dots += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => foreign = true,
        }
    }
    if dots != 2 {
        return Err(Error::InvalidToken(
            "token is not a compact JWS (three parts)",
        ));
    }
    if foreign {
        return Err(Error::InvalidToken("token is not base64url"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }
    const T: &str = "aaa.bbb.ccc";

    #[test]
    fn bearer_and_forwarded() {
        assert_eq!(
            bearer_token(&h(&[("authorization", "Bearer aaa.bbb.ccc")]), 100),
            Ok(T)
        );
        assert_eq!(
            bearer_token(&h(&[("authorization", "bearer  aaa.bbb.ccc ")]), 100),
            Ok(T)
        );
        assert_eq!(
            bearer_token(&h(&[("x-forwarded-access-token", T)]), 100),
            Ok(T)
        );
        // Authorization wins over the forwarded header.
        let both = h(&[
            ("x-forwarded-access-token", "x.y.z"),
            ("authorization", "Bearer aaa.bbb.ccc"),
        ]);
        assert_eq!(bearer_token(&both, 100), Ok(T));
    }

    #[test]
    fn missing() {
        assert_eq!(
            bearer_token(&h(&[(":path", "/apis/sts/token?access_token=a.b.c")]), 100),
            Err(Error::MissingToken)
        );
        assert_eq!(
            bearer_token(&h(&[("authorization", "Basic dXNlcjpwYXNz")]), 100),
            Err(Error::MissingToken)
        );
    }

    #[test]
    fn malformed() {
        let bad = |headers: &[(&str, &str)]| {
            matches!(bearer_token(&h(headers), 100), Err(Error::InvalidToken(_)))
        };
        assert!(bad(&[("authorization", "Bearer")]));
        assert!(bad(&[("authorization", "Bearer ")]));
        assert!(bad(&[("authorization", "Bearer a.b")]));
        assert!(bad(&[("authorization", "Bearer a.b.c.d")]));
        assert!(bad(&[("authorization", "Bearer a.b+.c")]));
        assert!(bad(&[("authorization", "Bearer a.b.c\u{7}")]));
        assert!(bad(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer a.b.c")
        ]));
        assert!(bad(&[
            ("x-forwarded-access-token", "a.b.c"),
            ("x-forwarded-access-token", "a.b.c")
        ]));
        let big = format!("Bearer {}.b.c", "a".repeat(200));
        assert!(bad(&[("authorization", big.as_str())]));
    }

    #[test]
    fn bare_token_only_for_the_container_endpoint() {
        let bare = h(&[("authorization", "aaa.bbb.ccc")]);
        assert_eq!(container_token(&bare, 100), Ok(T));
        assert_eq!(
            container_token(&h(&[("authorization", " aaa.bbb.ccc ")]), 100),
            Ok(T)
        );
        // The token route keeps RFC 6750: no scheme is no bearer token.
        assert_eq!(bearer_token(&bare, 100), Err(Error::MissingToken));
        // Everything the token route accepts, the container endpoint accepts the same way.
        for v in ["Bearer aaa.bbb.ccc", "bearer  aaa.bbb.ccc "] {
            assert_eq!(container_token(&h(&[("authorization", v)]), 100), Ok(T));
        }
        assert_eq!(
            container_token(&h(&[("x-forwarded-access-token", T)]), 100),
            Ok(T)
        );
        assert_eq!(container_token(&h(&[]), 100), Err(Error::MissingToken));
        // Another scheme is still no token; a one-word value must be a compact JWS.
        assert_eq!(
            container_token(&h(&[("authorization", "Basic dXNlcjpwYXNz")]), 100),
            Err(Error::MissingToken)
        );
        let bad = |v: &str| {
            matches!(
                container_token(&h(&[("authorization", v)]), 100),
                Err(Error::InvalidToken(_))
            )
        };
        for v in [
            "Bearer", "bearer", "Bearer ", "a.b", "a.b.c.d", "a.b+.c", "garbage",
        ] {
            assert!(bad(v), "{v:?}");
        }
        let big = format!("{}.b.c", "a".repeat(200));
        assert!(bad(&big));
        // A token file with a trailing newline or two tokens is refused, not guessed at.
        assert!(bad("aaa.bbb.ccc\naaa.bbb.ccc"));
        assert!(bad("aaa.bbb.ccc\taaa"));
        assert_eq!(
            container_token(&h(&[("authorization", "aaa.bbb.ccc aaa.bbb.ccc")]), 100),
            Err(Error::MissingToken)
        );
    }
}
