//! Who may mint, as the configuration states it: the rules (claims that must hold) and the
//! tenants (who administers each, and which buckets are theirs). Read from the plugin
//! configuration (`crate::config` validates them); used by `authorize` and `scope`.
use serde::Deserialize;

use crate::policy::scope::render;

/// One element of a rule list: a rule, or a group of which one must hold (logical OR). The
/// elements of a list must all hold (logical AND).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRuleItem")]
pub enum RuleItem {
    AnyOf { any_of: Vec<Rule> },
    One(Rule),
}

/// The JSON shape of a [`RuleItem`] (one struct, not an untagged enum: smaller and clearer
/// errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleItem {
    claim: Option<String>,
    contains: Option<String>,
    any_of: Option<Vec<Rule>>,
}

impl TryFrom<RawRuleItem> for RuleItem {
    type Error = &'static str;
    fn try_from(r: RawRuleItem) -> Result<Self, Self::Error> {
        match (r.claim, r.contains, r.any_of) {
            (Some(claim), Some(contains), None) => Ok(RuleItem::One(Rule { claim, contains })),
            (None, None, Some(any_of)) => Ok(RuleItem::AnyOf { any_of }),
            _ => Err("a rule is either {claim, contains} or {any_of: [rules]}"),
        }
    }
}

/// Placeholder for the tenant's name in tenant-admin rules and the policy template.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// Who may mint for a tenant, and what the tenant's credentials may reach
/// ([`crate::policy::scope`] says why the tenants must be listed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsConfig {
    /// An admin (`rules`) who names a tenant gets credentials scoped to it. `false` (default):
    /// full access whatever the header says, as the token service this replaces.
    #[serde(default)]
    pub scope_admins: bool,
    /// Rules that make a caller an administrator of tenant `{tenant}` (all must hold; `[]`:
    /// nobody but admins may mint for a tenant). Every way of satisfying them names `{tenant}`.
    #[serde(default = "default_tenant_admin_rules")]
    pub tenant_admin_rules: Vec<RuleItem>,
    /// The tenants whose buckets are `T-…` (a bucket belongs to the longest listed name it
    /// starts with, followed by `-`).
    #[serde(default)]
    pub names: Vec<String>,
    /// The tenants whose buckets are these patterns (`*` only at the end) instead.
    #[serde(default)]
    pub buckets: std::collections::BTreeMap<String, Vec<String>>,
    /// Removed (a free-form policy cannot be checked for isolation): refused with a hint.
    #[serde(default)]
    pub policy_template: Option<serde_json::Value>,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        TenantsConfig {
            scope_admins: false,
            tenant_admin_rules: default_tenant_admin_rules(),
            names: Vec::new(),
            buckets: Default::default(),
            policy_template: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Dot-separated path into the claims, e.g. `resource_access.shasta.roles`.
    pub claim: String,
    /// The claim equals this string or is an array containing it.
    pub contains: String,
}

/// The field's policy: `realm_access.roles` has `tenant-admin` and `groups` has
/// `<tenant>-tenant-admin`.
pub(crate) fn default_tenant_admin_rules() -> Vec<RuleItem> {
    vec![
        RuleItem::One(Rule {
            claim: "realm_access.roles".into(),
            contains: "tenant-admin".into(),
        }),
        RuleItem::One(Rule {
            claim: "groups".into(),
            contains: format!("{TENANT_PLACEHOLDER}-tenant-admin"),
        }),
    ]
}

/// RGW's limit on an AssumeRole session policy.
pub const MAX_POLICY_CHARS: usize = 2048;

/// Longest tenant name the header may carry.
pub const MAX_TENANT_LEN: usize = 253;

/// Longest name in `tenants.names`: `T-` and one more character fit a bucket name (63).
pub const MAX_LISTED_TENANT_LEN: usize = 61;

impl TenantsConfig {
    /// Some caller could get scoped credentials.
    pub fn scoping_possible(&self) -> bool {
        (self.scope_admins || !self.tenant_admin_rules.is_empty())
            && (!self.names.is_empty() || !self.buckets.is_empty())
    }

    /// The tenant is listed (`names` or `buckets`).
    pub fn is_known(&self, tenant: &str) -> bool {
        self.buckets.contains_key(tenant) || self.names.iter().any(|n| n == tenant)
    }

    /// Every tenant's resource patterns (buckets and objects), for the overlap check.
    pub fn resources(&self) -> Vec<(&str, Vec<String>)> {
        let listed = self
            .names
            .iter()
            .map(|n| (n.as_str(), vec![format!("{n}-*")]));
        let explicit = self.buckets.iter().map(|(t, ps)| {
            let all = ps
                .iter()
                .flat_map(|p| [p.clone(), format!("{p}/*")])
                .collect();
            (t.as_str(), all)
        });
        listed.chain(explicit).collect()
    }

    /// The session policy of `tenant`'s credentials, `None` for a tenant not listed.
    pub fn policy_for(&self, tenant: &str) -> Option<String> {
        if let Some(patterns) = self.buckets.get(tenant) {
            return Some(render(patterns, &[]));
        }
        if !self.names.iter().any(|n| n == tenant) {
            return None;
        }
        // Listed tenants whose buckets lie inside `tenant-*`: theirs, not this tenant's.
        let inner = format!("{tenant}-");
        let deny: Vec<String> = self
            .names
            .iter()
            .filter(|u| u.starts_with(&inner))
            .map(|u| format!("{u}-*"))
            .collect();
        Some(render(&[format!("{tenant}-*")], &deny))
    }
}
