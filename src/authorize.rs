//! May this caller mint credentials? The configured claim rules (default: the gateway's
//! `resource_access.shasta.roles` contains `admin`) and the tenant header's syntax.
use serde_json::Value;

use crate::config::Rule;
use crate::error::Error;
use crate::jwks::Claims;

pub fn authorize(claims: &Claims, rules: &[Rule], tenant: Option<&str>) -> Result<(), Error> {
    for rule in rules {
        if !holds(claims, rule) {
            return Err(Error::Forbidden(
                "the token lacks the role required to mint credentials",
            ));
        }
    }
    match tenant {
        Some(t) if !is_rfc1123_label(t) => Err(Error::Forbidden(
            "Cray-Tenant-Name is not a valid RFC 1123 label",
        )),
        _ => Ok(()),
    }
}

fn holds(claims: &Claims, rule: &Rule) -> bool {
    let mut path = rule.claim.split('.');
    let first = path.next().unwrap_or_default();
    // Registered claims are typed fields of `Claims`; the rest live in `custom`.
    let registered = match first {
        "sub" => claims.subject.clone().map(Value::String),
        "iss" => claims.issuer.clone().map(Value::String),
        _ => None,
    };
    let mut value = match &registered {
        Some(v) => v,
        None => match claims.custom.get(first) {
            Some(v) => v,
            None => return false,
        },
    };
    for segment in path {
        match value.get(segment) {
            Some(v) => value = v,
            None => return false,
        }
    }
    match value {
        Value::String(s) => s == &rule.contains,
        Value::Array(items) => items
            .iter()
            .any(|i| i.as_str() == Some(rule.contains.as_str())),
        _ => false,
    }
}

/// Kubernetes-style RFC 1123 label: lower-case alphanumerics and '-', 1–63 characters,
/// starting and ending alphanumeric (tenant names are Kubernetes names).
pub fn is_rfc1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }
    fn admin_rule() -> Vec<Rule> {
        vec![Rule {
            claim: "resource_access.shasta.roles".into(),
            contains: "admin".into(),
        }]
    }

    #[test]
    fn admin_role_required() {
        let admin = claims(json!({"resource_access": {"shasta": {"roles": ["user", "admin"]}}}));
        assert_eq!(authorize(&admin, &admin_rule(), None), Ok(()));
        for c in [
            json!({"resource_access": {"shasta": {"roles": ["user"]}}}),
            json!({"resource_access": {"other": {"roles": ["admin"]}}}),
            json!({"resource_access": {"shasta": {"roles": "administrator"}}}),
            json!({"resource_access": {"shasta": {"roles": [{"admin": true}]}}}),
            json!({"realm_access": {"roles": ["admin"]}}),
            json!({}),
        ] {
            assert!(
                matches!(
                    authorize(&claims(c.clone()), &admin_rule(), None),
                    Err(Error::Forbidden(_))
                ),
                "{c}"
            );
        }
    }

    #[test]
    fn string_claims_and_registered_claims() {
        let c = claims(json!({"sub": "abc", "azp": "shasta"}));
        let rules = vec![
            Rule {
                claim: "sub".into(),
                contains: "abc".into(),
            },
            Rule {
                claim: "azp".into(),
                contains: "shasta".into(),
            },
        ];
        assert_eq!(authorize(&c, &rules, None), Ok(()));
        assert_eq!(authorize(&c, &[], None), Ok(()));
    }

    #[test]
    fn tenant_label() {
        let c = claims(json!({}));
        for ok in ["vcluster-blue", "a", "t1", &"a".repeat(63)] {
            assert_eq!(authorize(&c, &[], Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Blue",
            "a_b",
            "a.b",
            "ä",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(authorize(&c, &[], Some(bad)).is_err(), "{bad}");
        }
    }
}
