//! What a tenant's credentials reach: the session policy RGW enforces, and the checks that keep
//! two tenants' bucket spaces apart.
//!
//! Tenant names and bucket names share their characters (`a-z 0-9 - .`), so no separator tells
//! `blue` + `-x-data` from `blue-x` + `-data`. The gateway therefore knows its tenants
//! (`tenants.names`, `tenants.buckets`) and a bucket belongs to the listed tenant with the
//! **longest** name `U` such that the bucket starts with `U-`:
//!
//! - a tenant of `tenants.names` gets `s3:*` on `T-*` (and its objects), and an explicit `Deny`
//!   on `U-*` for every listed tenant `U` whose name starts with `T-` (its buckets are inside
//!   `T-*`);
//! - a tenant of `tenants.buckets` gets its patterns; a pattern that could match a resource of
//!   another tenant is refused in the configuration.
//!
//! RGW 16.2 matches resources with a wildcard matcher that does not backtrack (`rgw_string.cc`
//! `match_wildcards`): a `*` followed by more characters can match less than AWS's. Every pattern
//! rendered here has its only `*` at the end (`T-*`, `U-*`, explicit patterns are refused
//! otherwise), where both matchers agree; the property test in this module checks both.
use std::fmt::Write as _;

/// Resource patterns of a tenant's policy, without the `arn:aws:s3:::` prefix.
const ARN_PREFIX: &str = "arn:aws:s3:::";

/// The session policy: `s3:*` on `allow` (each pattern and its objects), `Deny` on `deny`.
/// Compact JSON (RGW does not decode `+`); patterns are `[a-z0-9.?*-]`, nothing to escape.
pub fn render(allow: &[String], deny: &[String]) -> String {
    let mut out = String::from(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["#,
    );
    for (i, p) in allow.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{ARN_PREFIX}{p}\",\"{ARN_PREFIX}{p}/*\"");
    }
    out.push_str("]}");
    if !deny.is_empty() {
        out.push_str(r#",{"Effect":"Deny","Action":["s3:*"],"Resource":["#);
        for (i, p) in deny.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{ARN_PREFIX}{p}\"");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// A policy that reaches nothing: what a scoped call gets if its tenant has no policy (never
/// expected: authorization refuses tenants that are not listed).
pub const DENY_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["s3:*"],"Resource":["*"]}]}"#;

/// Whether some string matches both glob patterns (`*` any run, `?` one character, anything
/// else itself; `/` is an ordinary character, so object resources are covered). Configuration
/// time only: at most `(|a|+1)·(|b|+1)` states.
pub fn globs_intersect(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let width = b.len() + 1;
    // reach[i*width + j]: the prefixes a[..i] and b[..j] can match one common string.
    let mut reach = vec![false; (a.len() + 1) * width];
    if let Some(first) = reach.first_mut() {
        *first = true;
    }
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let here = reach.get(i * width + j).copied().unwrap_or(false);
            if !here {
                continue;
            }
            let ca = a.get(i).copied();
            let cb = b.get(j).copied();
            // A `*` matches nothing more: skip it.
            if ca == Some(b'*') {
                set(&mut reach, (i + 1) * width + j);
            }
            if cb == Some(b'*') {
                set(&mut reach, i * width + j + 1);
            }
            // Both consume one common character.
            if let (Some(x), Some(y)) = (ca, cb) {
                let wild = |c: u8| c == b'*' || c == b'?';
                if wild(x) || wild(y) || x == y {
                    let ni = if x == b'*' { i } else { i + 1 };
                    let nj = if y == b'*' { j } else { j + 1 };
                    if (ni, nj) != (i, j) {
                        set(&mut reach, ni * width + nj);
                    }
                }
            }
        }
    }
    reach.last().copied().unwrap_or(false)
}

fn set(reach: &mut [bool], at: usize) {
    if let Some(r) = reach.get_mut(at) {
        *r = true;
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
pub(crate) mod tests;
