//! Checks of the rule lists and the tenants section: every error names its field, and
//! tenant-admin rules must name the tenant in every branch.
use crate::config::error::ConfigError;
use crate::policy::authorize::is_tenant_name;
use crate::policy::rules::{
    Rule, RuleItem, TenantsConfig, MAX_LISTED_TENANT_LEN, MAX_POLICY_CHARS, TENANT_PLACEHOLDER,
};
use crate::policy::scope::globs_intersect;

pub(crate) fn validate_rules(
    at: &str,
    rules: &[RuleItem],
    tenant_placeholder: bool,
) -> Result<(), ConfigError> {
    for (i, item) in rules.iter().enumerate() {
        let group: Vec<(String, &Rule)> = match item {
            RuleItem::One(r) => vec![(format!("{at}[{i}]"), r)],
            RuleItem::AnyOf { any_of } if any_of.is_empty() => {
                return Err(ConfigError::new(
                    &format!("{at}[{i}].any_of"),
                    "must list at least one rule",
                ))
            }
            RuleItem::AnyOf { any_of } => any_of
                .iter()
                .enumerate()
                .map(|(j, r)| (format!("{at}[{i}].any_of[{j}]"), r))
                .collect(),
        };
        for (field, rule) in group {
            if rule.claim.is_empty() || rule.claim.split('.').any(str::is_empty) {
                return Err(ConfigError::new(
                    &format!("{field}.claim"),
                    "must be a dot-separated claim path",
                ));
            }
            if !tenant_placeholder && rule.contains.contains(TENANT_PLACEHOLDER) {
                return Err(ConfigError::new(
                    &format!("{field}.contains"),
                    "{tenant} is only known in tenants.tenant_admin_rules",
                ));
            }
        }
    }
    Ok(())
}

/// Tenant-admin rules must depend on the tenant in every way they can be satisfied: some
/// element (they are ANDed) names `{tenant}` in each of its branches. Otherwise a tenant admin
/// of one tenant would be one of every tenant.
fn tenant_bound(at: &str, rules: &[RuleItem]) -> Result<(), ConfigError> {
    let names = |r: &Rule| r.contains.contains(TENANT_PLACEHOLDER);
    if rules.is_empty() {
        return Ok(());
    }
    let bound = rules.iter().any(|item| match item {
        RuleItem::One(r) => names(r),
        RuleItem::AnyOf { any_of } => any_of.iter().all(names),
    });
    if bound {
        return Ok(());
    }
    // Name the branch that lets a caller through without the tenant.
    for (i, item) in rules.iter().enumerate() {
        if let RuleItem::AnyOf { any_of } = item {
            if let Some(j) = any_of.iter().position(|r| !names(r)) {
                if any_of.iter().any(names) {
                    return Err(ConfigError::new(
                        &format!("{at}[{i}].any_of[{j}].contains"),
                        "does not name {tenant}: this branch would make a caller an administrator of every tenant",
                    ));
                }
            }
        }
    }
    Err(ConfigError::new(
        at,
        "no rule names {tenant} in every branch: a caller would be an administrator of every tenant (e.g. add {\"claim\": \"groups\", \"contains\": \"{tenant}-tenant-admin\"})",
    ))
}

impl TenantsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.policy_template.is_some() {
            return Err(ConfigError::new(
                "tenants.policy_template",
                "was removed: a free-form policy cannot be checked to keep tenants apart; list the tenants in tenants.names (buckets T-…) or tenants.buckets (docs/configuration.md#tenants)",
            ));
        }
        validate_rules("tenants.tenant_admin_rules", &self.tenant_admin_rules, true)?;
        tenant_bound("tenants.tenant_admin_rules", &self.tenant_admin_rules)?;
        for (i, name) in self.names.iter().enumerate() {
            let at = format!("tenants.names[{i}]");
            if !is_tenant_name(name) {
                return Err(ConfigError::new(&at, "is not a valid tenant name"));
            }
            if name.len() > MAX_LISTED_TENANT_LEN {
                return Err(ConfigError::new(
                    &at,
                    format!("is longer than {MAX_LISTED_TENANT_LEN} characters: no bucket name (at most 63) can start with it and '-'; give it explicit patterns in tenants.buckets"),
                ));
            }
            if self.names.iter().take(i).any(|n| n == name) {
                return Err(ConfigError::new(&at, "is listed twice"));
            }
            if self.buckets.contains_key(name) {
                return Err(ConfigError::new(
                    &at,
                    "is also in tenants.buckets: list a tenant in one of them",
                ));
            }
        }
        for (tenant, patterns) in &self.buckets {
            let at = format!("tenants.buckets.{tenant}");
            if !is_tenant_name(tenant) {
                return Err(ConfigError::new(&at, "is not a valid tenant name"));
            }
            if patterns.is_empty() {
                return Err(ConfigError::new(
                    &at,
                    "must list at least one bucket pattern",
                ));
            }
            for p in patterns {
                let body = p.strip_suffix('*').unwrap_or(p);
                let ok = !body.is_empty()
                    && p.len() <= 63
                    && body.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)
                    });
                if !ok {
                    return Err(ConfigError::new(
                        &at,
                        format!("{p:?} is not a bucket name pattern (a-z, 0-9, '-', '.', at most 63, and '*' only at the end: RGW's matcher does not backtrack)"),
                    ));
                }
                // Another tenant's resources, its buckets and their objects: refused.
                for (other, theirs) in self.resources() {
                    if other == tenant {
                        continue;
                    }
                    let clash = [p.clone(), format!("{p}/*")]
                        .iter()
                        .any(|mine| theirs.iter().any(|t| globs_intersect(mine, t)));
                    if clash {
                        return Err(ConfigError::new(
                            &at,
                            format!("{p:?} can match a bucket or object of tenant {other:?}"),
                        ));
                    }
                }
            }
        }
        let fields = self
            .buckets
            .keys()
            .map(|t| (t, format!("tenants.buckets.{t}")))
            .chain(
                self.names
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t, format!("tenants.names[{i}]"))),
            );
        for (tenant, at) in fields {
            let len = self.policy_for(tenant).map_or(0, |p| p.len());
            if len > MAX_POLICY_CHARS {
                return Err(ConfigError::new(
                    &at,
                    format!(
                        "its policy is {len} characters; RGW accepts at most {MAX_POLICY_CHARS}"
                    ),
                ));
            }
        }
        Ok(())
    }
}
