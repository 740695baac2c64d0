//! May this caller mint credentials, and for what scope? The configured claim rules (default:
//! the gateway's `resource_access.shasta.roles` contains `admin`), the tenant-admin rules, and the
//! `Cray-Tenant-Name` header.
//!
//! | caller | no header | header T (listed) | header T (not listed) |
//! | --- | --- | --- | --- |
//! | admin (`rules`) | full access | full (default), scoped to T with `tenants.scope_admins` | full (default), 403 with `scope_admins` |
//! | tenant admin of T | 403 | scoped to T | 403 |
//! | anyone else | 403 | 403 | 403 |
use serde_json::Value;

use crate::error::Error;
use crate::policy::rules::{Rule, RuleItem, TenantsConfig, MAX_TENANT_LEN, TENANT_PLACEHOLDER};
use crate::token::Claims;

/// What the minted credentials may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything the role allows.
    Full,
    /// Only this tenant's buckets (a session policy).
    Tenant(String),
}

pub fn authorize(
    claims: &Claims,
    rules: &[RuleItem],
    tenants: &TenantsConfig,
    tenant: Option<&str>,
) -> Result<Scope, Error> {
    let admin = all_hold(claims, rules, None);
    let Some(tenant) = tenant else {
        if admin {
            return Ok(Scope::Full);
        }
        if looks_like_tenant_admin(claims, &tenants.tenant_admin_rules) {
            return Err(Error::Forbidden(
                "tenant administrators must name their tenant in Cray-Tenant-Name",
            ));
        }
        return Err(Error::Forbidden(
            "the token lacks the role required to mint credentials",
        ));
    };
    if !is_tenant_name(tenant) {
        return Err(Error::Forbidden(
            "Cray-Tenant-Name is not a valid tenant name",
        ));
    }
    if admin && !tenants.scope_admins {
        // The token service this replaces ignored the header: so do we, by default.
        return Ok(Scope::Full);
    }
    let tenant_admin = !tenants.tenant_admin_rules.is_empty()
        && all_hold(claims, &tenants.tenant_admin_rules, Some(tenant));
    if !admin && !tenant_admin {
        return Err(Error::Forbidden(
            "the token is not an administrator of the tenant named in Cray-Tenant-Name",
        ));
    }
    // Only listed tenants have a bucket space that keeps them apart from the others.
    if !tenants.is_known(tenant) {
        return Err(Error::Forbidden(
            "Cray-Tenant-Name names a tenant this gateway does not list",
        ));
    }
    Ok(Scope::Tenant(tenant.to_string()))
}

/// The caller holds every tenant-independent tenant-admin rule (there is at least one): it
/// probably forgot the header. Only chooses the message of a 403.
fn looks_like_tenant_admin(claims: &Claims, rules: &[RuleItem]) -> bool {
    let independent: Vec<&RuleItem> = rules
        .iter()
        .filter(|item| match item {
            RuleItem::One(r) => !r.contains.contains(TENANT_PLACEHOLDER),
            RuleItem::AnyOf { any_of } => !any_of
                .iter()
                .any(|r| r.contains.contains(TENANT_PLACEHOLDER)),
        })
        .collect();
    !independent.is_empty()
        && independent
            .iter()
            .all(|item| holds_item(claims, Some(item), None))
}

fn all_hold(claims: &Claims, rules: &[RuleItem], tenant: Option<&str>) -> bool {
    rules
        .iter()
        .all(|item| holds_item(claims, Some(item), tenant))
}

fn holds_item(claims: &Claims, item: Option<&RuleItem>, tenant: Option<&str>) -> bool {
    match item {
        Some(RuleItem::One(rule)) => holds(claims, rule, tenant),
        Some(RuleItem::AnyOf { any_of }) => any_of.iter().any(|r| holds(claims, r, tenant)),
        None => false,
    }
}

fn holds(claims: &Claims, rule: &Rule, tenant: Option<&str>) -> bool {
    let expected = match tenant {
        Some(t) if rule.contains.contains(TENANT_PLACEHOLDER) => {
            std::borrow::Cow::Owned(rule.contains.replace(TENANT_PLACEHOLDER, t))
        }
        _ => std::borrow::Cow::Borrowed(rule.contains.as_str()),
    };
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
        Value::String(s) => s == expected.as_ref(),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(expected.as_ref())),
        _ => false,
    }
}

/// The field's tenant names: `^[a-z0-9][a-z0-9\-\.]{1,251}[a-z0-9]$` (3–253 characters).
pub fn is_tenant_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=MAX_TENANT_LEN).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    fn rule(claim: &str, contains: &str) -> Rule {
        Rule {
            claim: claim.into(),
            contains: contains.into(),
        }
    }

    fn admin_rule() -> Vec<RuleItem> {
        vec![RuleItem::One(rule("resource_access.shasta.roles", "admin"))]
    }

    fn tenants() -> TenantsConfig {
        TenantsConfig::default()
    }

    /// `blue` and `red` listed, admins scoped.
    fn listed() -> TenantsConfig {
        TenantsConfig {
            scope_admins: true,
            names: vec!["blue".into(), "red".into(), "blue-x".into()],
            ..tenants()
        }
    }

    fn admin() -> Claims {
        claims(json!({"resource_access": {"shasta": {"roles": ["user", "admin"]}}}))
    }

    fn tenant_admin(groups: &[&str]) -> Claims {
        claims(json!({"realm_access": {"roles": ["tenant-admin"]}, "groups": groups}))
    }

    #[test]
    fn admin_role_required() {
        assert_eq!(
            authorize(&admin(), &admin_rule(), &tenants(), None),
            Ok(Scope::Full)
        );
        for c in [
            json!({"resource_access": {"shasta": {"roles": ["user"]}}}),
            json!({"resource_access": {"other": {"roles": ["admin"]}}}),
            json!({"resource_access": {"shasta": {"roles": "administrator"}}}),
            json!({"resource_access": {"shasta": {"roles": [{"admin": true}]}}}),
            json!({"realm_access": {"roles": ["admin"]}}),
            json!({}),
        ] {
            assert_eq!(
                authorize(&claims(c.clone()), &admin_rule(), &tenants(), None),
                Err(Error::Forbidden(
                    "the token lacks the role required to mint credentials"
                )),
                "{c}"
            );
        }
    }

    #[test]
    fn any_of_groups_and_registered_claims() {
        let c = claims(json!({"sub": "abc", "azp": "shasta"}));
        let rules = vec![
            RuleItem::One(rule("sub", "abc")),
            RuleItem::AnyOf {
                any_of: vec![rule("azp", "cray"), rule("azp", "shasta")],
            },
        ];
        assert_eq!(authorize(&c, &rules, &tenants(), None), Ok(Scope::Full));
        let neither = vec![RuleItem::AnyOf {
            any_of: vec![rule("azp", "cray"), rule("sub", "xyz")],
        }];
        assert!(authorize(&c, &neither, &tenants(), None).is_err());
        // "admin OR ops" as one list element.
        let either = vec![RuleItem::AnyOf {
            any_of: vec![
                rule("resource_access.shasta.roles", "admin"),
                rule("realm_access.roles", "ops"),
            ],
        }];
        let ops = claims(json!({"realm_access": {"roles": ["ops"]}}));
        assert_eq!(authorize(&ops, &either, &tenants(), None), Ok(Scope::Full));
    }

    #[test]
    fn who_may_mint_for_a_tenant() {
        let t = listed();
        let scoped = |name: &str| Ok(Scope::Tenant(name.into()));
        // Admins: full access by default whatever the header (as the old token service),
        // listed or not; scoped when the operator says so, and then only to listed tenants.
        for name in ["blue", "green"] {
            assert_eq!(
                authorize(&admin(), &admin_rule(), &tenants(), Some(name)),
                Ok(Scope::Full)
            );
        }
        assert_eq!(
            authorize(&admin(), &admin_rule(), &t, Some("blue")),
            scoped("blue")
        );
        assert_eq!(
            authorize(&admin(), &admin_rule(), &t, Some("green")),
            Err(Error::Forbidden(
                "Cray-Tenant-Name names a tenant this gateway does not list"
            ))
        );
        // Tenant admins: only their own listed tenant, and only with the header.
        let ta = tenant_admin(&["blue-tenant-admin", "green-tenant-admin", "other"]);
        for cfg in [
            &t,
            &TenantsConfig {
                scope_admins: false,
                ..listed()
            },
        ] {
            assert_eq!(
                authorize(&ta, &admin_rule(), cfg, Some("blue")),
                scoped("blue")
            );
        }
        assert_eq!(
            authorize(&ta, &admin_rule(), &t, Some("red")),
            Err(Error::Forbidden(
                "the token is not an administrator of the tenant named in Cray-Tenant-Name"
            ))
        );
        assert_eq!(
            authorize(&ta, &admin_rule(), &t, Some("green")),
            Err(Error::Forbidden(
                "Cray-Tenant-Name names a tenant this gateway does not list"
            ))
        );
        assert!(
            authorize(&ta, &admin_rule(), &tenants(), Some("blue")).is_err(),
            "nothing listed by default"
        );
        assert_eq!(
            authorize(&ta, &admin_rule(), &t, None),
            Err(Error::Forbidden(
                "tenant administrators must name their tenant in Cray-Tenant-Name"
            ))
        );
        // The group alone, or the role alone, is not enough.
        let group_only = claims(json!({"groups": ["blue-tenant-admin"]}));
        assert!(authorize(&group_only, &admin_rule(), &t, Some("blue")).is_err());
        let role_only = tenant_admin(&[]);
        assert!(authorize(&role_only, &admin_rule(), &t, Some("blue")).is_err());
        // A group of a tenant whose name extends another's does not count.
        let longer = tenant_admin(&["blue-x-tenant-admin"]);
        assert!(authorize(&longer, &admin_rule(), &t, Some("blue")).is_err());
        assert_eq!(
            authorize(&longer, &admin_rule(), &t, Some("blue-x")),
            scoped("blue-x")
        );
        // No tenant admins when the operator says so.
        let none = TenantsConfig {
            tenant_admin_rules: vec![],
            ..listed()
        };
        assert!(authorize(&ta, &admin_rule(), &none, Some("blue")).is_err());
        // Anyone else.
        let user = claims(json!({"resource_access": {"shasta": {"roles": ["user"]}}}));
        assert!(authorize(&user, &admin_rule(), &t, Some("blue")).is_err());
    }

    #[test]
    fn tenant_header_syntax() {
        let long = "a".repeat(253);
        for ok in ["vcluster-blue", "abc", "t.1", "a-b.c", long.as_str()] {
            assert!(is_tenant_name(ok), "{ok}");
        }
        let too_long = "a".repeat(254);
        for bad in [
            "",
            "a",
            "ab",
            "-ab",
            "ab-",
            ".ab",
            "ab.",
            "Blue",
            "a_b",
            "ä-b",
            "a b",
            "a/b",
            too_long.as_str(),
        ] {
            assert!(!is_tenant_name(bad), "{bad}");
            assert_eq!(
                authorize(&admin(), &admin_rule(), &tenants(), Some(bad)),
                Err(Error::Forbidden(
                    "Cray-Tenant-Name is not a valid tenant name"
                )),
                "{bad}"
            );
        }
    }
}
