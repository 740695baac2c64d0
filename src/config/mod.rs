//! The plugin configuration: one JSON document, parsed into typed structs and validated once in
//! `on_configure`. Every error names the field so an operator can fix it from the Envoy log.
use serde::Deserialize;
use std::fmt;

/// Environment variables (Envoy `vm_config.environment_variables`, Istio `vmConfig.env`) that
/// supply the token-service keys when the plugin configuration leaves them out, so the keys
/// need not appear in Envoy's config dump.
pub const ENV_ACCESS_KEY_ID: &str = "STS_GATEWAY_ACCESS_KEY_ID";
pub const ENV_SECRET_ACCESS_KEY: &str = "STS_GATEWAY_SECRET_ACCESS_KEY";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: {}: {}",
            self.field, self.message
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path prefix the filter owns; everything else passes through.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Required member of the token's `aud`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Signature algorithms accepted (RSA family only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Longest token accepted, in bytes; longer ones are refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    pub issuers: Vec<IssuerConfig>,
    /// All must hold (logical AND). Default: the gateway's admin rule. Never empty: letting
    /// any authenticated user mint takes `allow_any_authenticated: true`.
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleItem>,
    /// Explicit opt-in to "any valid token may mint" (then `rules` must be empty).
    #[serde(default)]
    pub allow_any_authenticated: bool,
    /// When set, tokens must carry `iat`, and `exp - iat` may not exceed this.
    #[serde(default)]
    pub max_token_lifetime_seconds: Option<u64>,
    /// When set, the token's `azp` (the client it was issued to) must be one of these.
    #[serde(default)]
    pub authorized_parties: Option<Vec<String>>,
    /// Verified-token cache entries per worker; 0 disables the cache.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: usize,
    /// Bound of the verified-token cache in bytes per worker (each entry counts twice its
    /// token's length, for the token and its claims, plus a fixed overhead: see
    /// `token::cache::entry_bytes`).
    #[serde(default = "default_token_cache_bytes")]
    pub token_cache_bytes: usize,
    /// Requests waiting for keys (unknown `kid` during a JWKS refetch), per worker.
    #[serde(default)]
    pub parking: ParkingConfig,
    /// Credentials scoped to a tenant (`Cray-Tenant-Name`).
    #[serde(default)]
    pub tenants: TenantsConfig,
    /// Opt-in: hand a caller the credentials already minted for them while enough lifetime
    /// remains, and let concurrent requests of one caller share one RGW call. Off when absent.
    #[serde(default)]
    pub reuse: Option<ReuseConfig>,
    pub rgw: RgwConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value accepted.
    pub issuer: String,
    pub jwks: JwksSource,
}

/// Where the filter fetches an issuer's keys. Issuers with the same source share one fetch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// An unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_min_refetch")]
    pub min_refetch_seconds: u64,
    /// Retry delay after a failed fetch (also before the first success).
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
    #[serde(default = "default_jwks_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_jwks_max_bytes")]
    pub max_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkingConfig {
    /// At most this many; beyond it an unknown `kid` gets 401 at once.
    #[serde(default = "default_parking_requests")]
    pub max_requests: usize,
    /// At most this many bytes (token, tenant, request id and a fixed overhead each).
    #[serde(default = "default_parking_bytes")]
    pub max_bytes: usize,
}

impl Default for ParkingConfig {
    fn default() -> Self {
        ParkingConfig {
            max_requests: default_parking_requests(),
            max_bytes: default_parking_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReuseConfig {
    /// Reuse credentials only while at least this much of their lifetime remains.
    pub min_remaining_seconds: u64,
    /// Callers remembered per worker.
    #[serde(default = "default_reuse_entries")]
    pub max_entries: usize,
}

fn default_reuse_entries() -> usize {
    1024
}

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

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RgwConfig {
    pub cluster: String,
    /// Host the STS request is sent to and signed for.
    pub authority: String,
    /// `EndpointURL` handed to clients.
    pub endpoint_url: String,
    pub role_arn: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_service")]
    pub service: String,
    #[serde(default = "default_duration")]
    pub duration_seconds: u32,
    #[serde(default = "default_rgw_timeout")]
    pub timeout_ms: u64,
    /// Optional IAM session policy (compact JSON) that narrows the role.
    #[serde(default)]
    pub policy: Option<String>,
}

impl fmt::Debug for RgwConfig {
    // Hand-written so the secret can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RgwConfig")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("endpoint_url", &self.endpoint_url)
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("duration_seconds", &self.duration_seconds)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_prefix() -> String {
    "/apis/sts/".into()
}
fn default_realm() -> String {
    "sts-gateway".into()
}
fn default_audience() -> String {
    "shasta".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_clock_skew() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    16 * 1024
}
fn default_rules() -> Vec<RuleItem> {
    vec![RuleItem::One(Rule {
        claim: "resource_access.shasta.roles".into(),
        contains: "admin".into(),
    })]
}
/// The field's policy: `realm_access.roles` has `tenant-admin` and `groups` has
/// `<tenant>-tenant-admin`.
fn default_tenant_admin_rules() -> Vec<RuleItem> {
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
fn default_token_cache_entries() -> usize {
    4096
}
fn default_token_cache_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_parking_requests() -> usize {
    2048
}
fn default_parking_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refetch() -> u64 {
    5
}
fn default_retry() -> u64 {
    5
}
fn default_jwks_timeout() -> u64 {
    2000
}
fn default_jwks_max_bytes() -> usize {
    256 * 1024
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_service() -> String {
    "sts".into()
}
fn default_duration() -> u32 {
    3600
}
fn default_rgw_timeout() -> u64 {
    5000
}

pub const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Reads an environment variable of the Wasm VM; injected so tests need not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Parses and validates; secrets missing from the JSON are taken from the VM environment.
    pub fn parse(bytes: &[u8], env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(root)".to_string()
            } else {
                path
            };
            ConfigError::new(&field, e.into_inner().to_string())
        })?;
        config.fill_secrets_from_env(env);
        config.validate()?;
        Ok(config)
    }

    fn fill_secrets_from_env(&mut self, env: EnvLookup<'_>) {
        if self.rgw.access_key_id.is_none() {
            self.rgw.access_key_id = env(ENV_ACCESS_KEY_ID);
        }
        if self.rgw.secret_access_key.is_none() {
            self.rgw.secret_access_key = env(ENV_SECRET_ACCESS_KEY);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            return Err(ConfigError::new("prefix", "must start and end with '/'"));
        }
        if self.realm.contains('"') || self.realm.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "realm",
                "must not contain quotes or control characters",
            ));
        }
        require_non_empty("audience", &self.audience)?;
        if self.algorithms.is_empty() {
            return Err(ConfigError::new(
                "algorithms",
                "must name at least one algorithm",
            ));
        }
        for (i, alg) in self.algorithms.iter().enumerate() {
            if !ALGORITHMS.contains(&alg.as_str()) {
                return Err(ConfigError::new(
                    &format!("algorithms[{i}]"),
                    format!(
                        "unsupported algorithm {alg:?}; allowed: {}",
                        ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if self.clock_skew_seconds > 600 {
            return Err(ConfigError::new(
                "clock_skew_seconds",
                "must be at most 600",
            ));
        }
        if !(256..=1024 * 1024).contains(&self.max_token_bytes) {
            return Err(ConfigError::new(
                "max_token_bytes",
                "must be between 256 and 1048576",
            ));
        }
        if self.issuers.is_empty() {
            return Err(ConfigError::new("issuers", "must list at least one issuer"));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            issuer.validate(&format!("issuers[{i}]"))?;
            if self
                .issuers
                .iter()
                .take(i)
                .any(|other| other.issuer == issuer.issuer)
            {
                return Err(ConfigError::new(
                    &format!("issuers[{i}].issuer"),
                    "duplicate issuer",
                ));
            }
        }
        match (self.rules.is_empty(), self.allow_any_authenticated) {
            (true, false) => {
                return Err(ConfigError::new(
                    "rules",
                    "must hold at least one rule; to let any authenticated user mint, set allow_any_authenticated: true",
                ))
            }
            (false, true) => {
                return Err(ConfigError::new(
                    "allow_any_authenticated",
                    "cannot be combined with rules (set rules: [] to let any authenticated user mint)",
                ))
            }
            _ => {}
        }
        if let Some(max) = self.max_token_lifetime_seconds {
            if !(60..=10 * 366 * 86_400).contains(&max) {
                return Err(ConfigError::new(
                    "max_token_lifetime_seconds",
                    "must be between 60 and 316224000",
                ));
            }
        }
        if let Some(parties) = &self.authorized_parties {
            if parties.is_empty() {
                return Err(ConfigError::new(
                    "authorized_parties",
                    "must list at least one client id when set",
                ));
            }
            for (i, p) in parties.iter().enumerate() {
                require_non_empty(&format!("authorized_parties[{i}]"), p)?;
            }
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.token_cache_bytes) {
            return Err(ConfigError::new(
                "token_cache_bytes",
                "must be between 65536 and 1073741824",
            ));
        }
        if self.parking.max_requests > 65_536 {
            return Err(ConfigError::new(
                "parking.max_requests",
                "must be at most 65536",
            ));
        }
        if self.parking.max_bytes > 256 * 1024 * 1024 {
            return Err(ConfigError::new(
                "parking.max_bytes",
                "must be at most 268435456",
            ));
        }
        validate_rules("rules", &self.rules, false)?;
        if let Some(r) = &self.reuse {
            if r.min_remaining_seconds < 60
                || r.min_remaining_seconds >= u64::from(self.rgw.duration_seconds)
            {
                return Err(ConfigError::new(
                    "reuse.min_remaining_seconds",
                    "must be at least 60 and less than rgw.duration_seconds",
                ));
            }
            if !(1..=100_000).contains(&r.max_entries) {
                return Err(ConfigError::new(
                    "reuse.max_entries",
                    "must be between 1 and 100000",
                ));
            }
        }
        self.tenants.validate()?;
        if self.rgw.policy.is_some() && self.tenants.scoping_possible() {
            return Err(ConfigError::new(
                "rgw.policy",
                "cannot be combined with tenant scoping (a tenant's policy would replace it): set tenants.scope_admins false and tenants.tenant_admin_rules [], or drop rgw.policy",
            ));
        }
        if self.token_cache_entries > 1_000_000 {
            return Err(ConfigError::new(
                "token_cache_entries",
                "must be at most 1000000",
            ));
        }
        self.rgw.validate()
    }

    /// Distinct JWKS sources, in first-seen order; issuers map onto them by index.
    pub fn jwks_sources(&self) -> Vec<&JwksSource> {
        let mut sources: Vec<&JwksSource> = Vec::new();
        for issuer in &self.issuers {
            if !sources.contains(&&issuer.jwks) {
                sources.push(&issuer.jwks);
            }
        }
        sources
    }

    /// Issuers whose keys come from the source at `index` of [`Config::jwks_sources`].
    pub fn issuers_of_source(&self, index: usize) -> Vec<String> {
        let sources = self.jwks_sources();
        match sources.get(index) {
            Some(source) => self
                .issuers
                .iter()
                .filter(|i| &&i.jwks == source)
                .map(|i| i.issuer.clone())
                .collect(),
            None => Vec::new(),
        }
    }
}

impl IssuerConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        require_non_empty(&format!("{at}.issuer"), &self.issuer)?;
        let j = &self.jwks;
        require_non_empty(&format!("{at}.jwks.cluster"), &j.cluster)?;
        require_non_empty(&format!("{at}.jwks.authority"), &j.authority)?;
        if !j.path.starts_with('/') {
            return Err(ConfigError::new(
                &format!("{at}.jwks.path"),
                "must start with '/'",
            ));
        }
        if !(10..=86_400).contains(&j.refresh_seconds) {
            return Err(ConfigError::new(
                &format!("{at}.jwks.refresh_seconds"),
                "must be between 10 and 86400",
            ));
        }
        // 0 would let forged kids drive back-to-back fetches.
        if j.min_refetch_seconds < 1 || j.min_refetch_seconds > j.refresh_seconds {
            return Err(ConfigError::new(
                &format!("{at}.jwks.min_refetch_seconds"),
                "must be at least 1 and not exceed refresh_seconds",
            ));
        }
        if !(1..=3600).contains(&j.retry_seconds) {
            return Err(ConfigError::new(
                &format!("{at}.jwks.retry_seconds"),
                "must be between 1 and 3600",
            ));
        }
        if !(100..=60_000).contains(&j.timeout_ms) {
            return Err(ConfigError::new(
                &format!("{at}.jwks.timeout_ms"),
                "must be between 100 and 60000",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&j.max_bytes) {
            return Err(ConfigError::new(
                &format!("{at}.jwks.max_bytes"),
                "must be between 1024 and 16777216",
            ));
        }
        Ok(())
    }
}

impl RgwConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        require_non_empty("rgw.cluster", &self.cluster)?;
        require_non_empty("rgw.authority", &self.authority)?;
        if !(self.endpoint_url.starts_with("http://") || self.endpoint_url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "rgw.endpoint_url",
                "must be an http:// or https:// URL",
            ));
        }
        require_non_empty("rgw.role_arn", &self.role_arn)?;
        if !self.role_arn.starts_with("arn:") || !self.role_arn.contains('/') {
            return Err(ConfigError::new(
                "rgw.role_arn",
                "must be an ARN naming a role, e.g. arn:aws:iam:::role/NAME",
            ));
        }
        match &self.access_key_id {
            Some(k) if !k.is_empty() => {}
            _ => {
                return Err(ConfigError::new(
                    "rgw.access_key_id",
                    format!("missing: set it here or in the VM environment as {ENV_ACCESS_KEY_ID}"),
                ))
            }
        }
        match &self.secret_access_key {
            Some(k) if !k.is_empty() => {}
            _ => {
                return Err(ConfigError::new(
                    "rgw.secret_access_key",
                    format!(
                        "missing: set it here or in the VM environment as {ENV_SECRET_ACCESS_KEY}"
                    ),
                ))
            }
        }
        if self.service.is_empty() || self.service.contains('/') {
            return Err(ConfigError::new(
                "rgw.service",
                "must be non-empty and contain no '/'",
            ));
        }
        if self.region.contains('/') {
            return Err(ConfigError::new("rgw.region", "must contain no '/'"));
        }
        if !(900..=43_200).contains(&self.duration_seconds) {
            return Err(ConfigError::new(
                "rgw.duration_seconds",
                "must be between 900 and 43200",
            ));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                "rgw.timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        if let Some(policy) = &self.policy {
            if policy.len() > 2048 || serde_json::from_str::<serde_json::Value>(policy).is_err() {
                return Err(ConfigError::new(
                    "rgw.policy",
                    "must be a JSON document of at most 2048 characters",
                ));
            }
        }
        Ok(())
    }

    pub fn access_key_id(&self) -> &str {
        self.access_key_id.as_deref().unwrap_or_default()
    }

    pub fn secret_access_key(&self) -> &str {
        self.secret_access_key.as_deref().unwrap_or_default()
    }
}

fn validate_rules(
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

    fn validate(&self) -> Result<(), ConfigError> {
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
            if !crate::policy::authorize::is_tenant_name(name) {
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
            if !crate::policy::authorize::is_tenant_name(tenant) {
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
                    let clash = [p.clone(), format!("{p}/*")].iter().any(|mine| {
                        theirs
                            .iter()
                            .any(|t| crate::policy::scope::globs_intersect(mine, t))
                    });
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

    /// Every tenant's resource patterns (buckets and objects), for the overlap check.
    fn resources(&self) -> Vec<(&str, Vec<String>)> {
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
            return Some(crate::policy::scope::render(patterns, &[]));
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
        Some(crate::policy::scope::render(
            &[format!("{tenant}-*")],
            &deny,
        ))
    }
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

fn require_non_empty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(crate) fn sample() -> Value {
        json!({
            "issuers": [{"issuer": "https://api-gw-service-nmn.local/keycloak/realms/shasta",
                         "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
            "rgw": {"cluster": "rgw", "authority": "rgw.local:8080",
                    "endpoint_url": "http://rgw.local:8080", "role_arn": "arn:aws:iam:::user/STS",
                    "access_key_id": "AKID", "secret_access_key": "SECRET"}
        })
    }

    fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes(), &no_env)
    }

    fn err_field(v: &Value) -> String {
        match parse(v) {
            Err(e) => e.field,
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&sample()).unwrap();
        assert_eq!(c.prefix, "/apis/sts/");
        assert_eq!(c.audience, "shasta");
        assert_eq!(c.algorithms, vec!["RS256"]);
        assert_eq!(c.clock_skew_seconds, 60);
        assert_eq!(c.rules, default_rules());
        assert_eq!(c.rgw.duration_seconds, 3600);
        assert_eq!(c.rgw.region, "us-east-1");
        assert_eq!(c.rgw.service, "sts");
        assert_eq!(c.issuers[0].jwks.refresh_seconds, 300);
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let mut v = sample();
        v["rgw"].as_object_mut().unwrap().remove("cluster");
        let e = parse(&v).unwrap_err();
        assert_eq!(e.field, "rgw");
        assert!(e.message.contains("cluster"), "{e}");

        let mut v = sample();
        v.as_object_mut().unwrap().remove("rgw");
        assert!(parse(&v).unwrap_err().message.contains("rgw"));

        let mut v = sample();
        v["rgw"]["secret_acces_key"] = json!("x");
        let e = parse(&v).unwrap_err();
        assert!(e.to_string().contains("secret_acces_key"), "{e}");

        let mut v = sample();
        v["rgw"]["duration_seconds"] = json!("3600");
        assert_eq!(err_field(&v), "rgw.duration_seconds");

        assert_eq!(
            Config::parse(b"not json", &no_env).unwrap_err().field,
            "(root)"
        );
        assert_eq!(Config::parse(b"", &no_env).unwrap_err().field, "(root)");
    }

    #[test]
    fn every_validation_names_its_field() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("prefix", Box::new(|v| v["prefix"] = json!("apis/sts"))),
            ("realm", Box::new(|v| v["realm"] = json!("a\"b"))),
            ("audience", Box::new(|v| v["audience"] = json!(""))),
            ("algorithms", Box::new(|v| v["algorithms"] = json!([]))),
            (
                "algorithms[1]",
                Box::new(|v| v["algorithms"] = json!(["RS256", "HS256"])),
            ),
            (
                "algorithms[0]",
                Box::new(|v| v["algorithms"] = json!(["none"])),
            ),
            (
                "clock_skew_seconds",
                Box::new(|v| v["clock_skew_seconds"] = json!(3600)),
            ),
            (
                "max_token_bytes",
                Box::new(|v| v["max_token_bytes"] = json!(10)),
            ),
            ("issuers", Box::new(|v| v["issuers"] = json!([]))),
            (
                "issuers[0].issuer",
                Box::new(|v| v["issuers"][0]["issuer"] = json!(" ")),
            ),
            (
                "issuers[0].jwks.cluster",
                Box::new(|v| v["issuers"][0]["jwks"]["cluster"] = json!("")),
            ),
            (
                "issuers[0].jwks.authority",
                Box::new(|v| v["issuers"][0]["jwks"]["authority"] = json!("")),
            ),
            (
                "issuers[0].jwks.path",
                Box::new(|v| v["issuers"][0]["jwks"]["path"] = json!("jwks")),
            ),
            (
                "issuers[0].jwks.refresh_seconds",
                Box::new(|v| v["issuers"][0]["jwks"]["refresh_seconds"] = json!(1)),
            ),
            (
                "issuers[0].jwks.min_refetch_seconds",
                Box::new(|v| v["issuers"][0]["jwks"]["min_refetch_seconds"] = json!(1000)),
            ),
            (
                "issuers[0].jwks.retry_seconds",
                Box::new(|v| v["issuers"][0]["jwks"]["retry_seconds"] = json!(0)),
            ),
            (
                "issuers[0].jwks.timeout_ms",
                Box::new(|v| v["issuers"][0]["jwks"]["timeout_ms"] = json!(5)),
            ),
            (
                "issuers[0].jwks.max_bytes",
                Box::new(|v| v["issuers"][0]["jwks"]["max_bytes"] = json!(5)),
            ),
            (
                "issuers[1].issuer",
                Box::new(|v| {
                    let i = v["issuers"][0].clone();
                    v["issuers"].as_array_mut().unwrap().push(i)
                }),
            ),
            (
                "rules[0].claim",
                Box::new(|v| v["rules"] = json!([{"claim": "a..b", "contains": "x"}])),
            ),
            (
                "token_cache_entries",
                Box::new(|v| v["token_cache_entries"] = json!(10_000_000)),
            ),
            ("rgw.cluster", Box::new(|v| v["rgw"]["cluster"] = json!(""))),
            (
                "rgw.authority",
                Box::new(|v| v["rgw"]["authority"] = json!("")),
            ),
            (
                "rgw.endpoint_url",
                Box::new(|v| v["rgw"]["endpoint_url"] = json!("rgw:8080")),
            ),
            (
                "rgw.role_arn",
                Box::new(|v| v["rgw"]["role_arn"] = json!("STS")),
            ),
            (
                "rgw.access_key_id",
                Box::new(|v| v["rgw"]["access_key_id"] = json!("")),
            ),
            (
                "rgw.secret_access_key",
                Box::new(|v| {
                    v["rgw"]
                        .as_object_mut()
                        .unwrap()
                        .remove("secret_access_key");
                }),
            ),
            ("rgw.service", Box::new(|v| v["rgw"]["service"] = json!(""))),
            (
                "rgw.service",
                Box::new(|v| v["rgw"]["service"] = json!("sts/x")),
            ),
            (
                "rgw.region",
                Box::new(|v| v["rgw"]["region"] = json!("us-east-1/x")),
            ),
            (
                "rgw.duration_seconds",
                Box::new(|v| v["rgw"]["duration_seconds"] = json!(899)),
            ),
            (
                "rgw.duration_seconds",
                Box::new(|v| v["rgw"]["duration_seconds"] = json!(43201)),
            ),
            (
                "rgw.timeout_ms",
                Box::new(|v| v["rgw"]["timeout_ms"] = json!(0)),
            ),
            (
                "rgw.policy",
                Box::new(|v| v["rgw"]["policy"] = json!("{not json")),
            ),
        ];
        for (field, mutate) in cases {
            let mut v = sample();
            mutate(&mut v);
            assert_eq!(err_field(&v), field, "case {field}: {v}");
        }
    }

    #[test]
    fn secrets_from_environment() {
        let mut v = sample();
        let rgw = v["rgw"].as_object_mut().unwrap();
        rgw.remove("access_key_id");
        rgw.remove("secret_access_key");
        let env = |name: &str| match name {
            ENV_ACCESS_KEY_ID => Some("ENVKEY".to_string()),
            ENV_SECRET_ACCESS_KEY => Some("ENVSECRET".to_string()),
            _ => None,
        };
        let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
        assert_eq!(c.rgw.access_key_id(), "ENVKEY");
        assert_eq!(c.rgw.secret_access_key(), "ENVSECRET");
        assert!(!format!("{:?}", c.rgw).contains("ENVSECRET"));
        // Without the environment, the error names the field and the variable.
        let e = parse(&v).unwrap_err();
        assert_eq!(e.field, "rgw.access_key_id");
        assert!(e.message.contains(ENV_ACCESS_KEY_ID));
    }

    #[test]
    fn shared_jwks_sources() {
        let mut v = sample();
        let mut second = v["issuers"][0].clone();
        second["issuer"] = json!("http://keycloak:8080/keycloak/realms/shasta");
        let mut third = v["issuers"][0].clone();
        third["issuer"] = json!("https://auth.cmn.example/keycloak/realms/shasta");
        third["jwks"]["cluster"] = json!("other");
        v["issuers"].as_array_mut().unwrap().extend([second, third]);
        let c = parse(&v).unwrap();
        assert_eq!(c.jwks_sources().len(), 2);
        assert_eq!(c.issuers_of_source(0).len(), 2);
        assert_eq!(
            c.issuers_of_source(1),
            vec!["https://auth.cmn.example/keycloak/realms/shasta"]
        );
        assert!(c.issuers_of_source(2).is_empty());
    }

    #[test]
    fn safety_defaults_are_enforced() {
        let mut v = sample();
        v["rules"] = json!([]);
        assert_eq!(err_field(&v), "rules");
        v["allow_any_authenticated"] = json!(true);
        assert_eq!(parse(&v).unwrap().rules.len(), 0);
        v["rules"] = json!([{"claim": "sub", "contains": "x"}]);
        assert_eq!(err_field(&v), "allow_any_authenticated");
        let mut v = sample();
        v["issuers"][0]["jwks"]["min_refetch_seconds"] = json!(0);
        assert_eq!(err_field(&v), "issuers[0].jwks.min_refetch_seconds");
        let mut v = sample();
        v["max_token_lifetime_seconds"] = json!(10);
        assert_eq!(err_field(&v), "max_token_lifetime_seconds");
        let mut v = sample();
        v["authorized_parties"] = json!([]);
        assert_eq!(err_field(&v), "authorized_parties");
        let mut v = sample();
        v["parking"] = json!({"max_requests": 100000});
        assert_eq!(err_field(&v), "parking.max_requests");
    }

    #[test]
    fn rule_groups() {
        let mut v = sample();
        v["rules"] = json!([{"any_of": [{"claim": "a.b", "contains": "x"}, {"claim": "c", "contains": "y"}]}]);
        assert!(
            matches!(&parse(&v).unwrap().rules[0], RuleItem::AnyOf { any_of } if any_of.len() == 2)
        );
        v["rules"] = json!([{"any_of": []}]);
        assert_eq!(err_field(&v), "rules[0].any_of");
        v["rules"] = json!([{"any_of": [{"claim": "a..b", "contains": "x"}]}]);
        assert_eq!(err_field(&v), "rules[0].any_of[0].claim");
        v["rules"] = json!([{"claim": "groups", "contains": "{tenant}-admin"}]);
        assert_eq!(err_field(&v), "rules[0].contains");
    }

    #[test]
    fn tenant_policies() {
        let mut v = sample();
        v["tenants"] = json!({"names": ["blue", "blue-x", "blue-x-y", "blue.z", "red"]});
        let c = parse(&v).unwrap();
        let p = c.tenants.policy_for("blue").unwrap();
        assert_eq!(
            p,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::blue-*","arn:aws:s3:::blue-*/*"]},{"Effect":"Deny","Action":["s3:*"],"Resource":["arn:aws:s3:::blue-x-*","arn:aws:s3:::blue-x-y-*"]}]}"#
        );
        assert!(!p.contains(' '), "compact: RGW does not decode '+'");
        assert_eq!(
            c.tenants.policy_for("red").unwrap(),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::red-*","arn:aws:s3:::red-*/*"]}]}"#
        );
        assert!(c.tenants.policy_for("blue-x").unwrap().contains("Deny"));
        assert!(!c.tenants.policy_for("blue-x-y").unwrap().contains("Deny"));
        assert_eq!(c.tenants.policy_for("green"), None, "not listed");
        // Explicit buckets.
        let mut v = sample();
        v["tenants"] = json!({"names": ["red"], "buckets": {"blue": ["blue-data", "shared-*"]}});
        let c = parse(&v).unwrap();
        let p: Value = serde_json::from_str(&c.tenants.policy_for("blue").unwrap()).unwrap();
        assert_eq!(
            p["Statement"][0]["Resource"],
            json!([
                "arn:aws:s3:::blue-data",
                "arn:aws:s3:::blue-data/*",
                "arn:aws:s3:::shared-*",
                "arn:aws:s3:::shared-*/*"
            ])
        );
        // Refused, naming the field.
        type Case = (Value, &'static str);
        let long = "a".repeat(62);
        let many: Vec<String> = (0..40)
            .map(|i| format!("bucket-pattern-{i:02}-*"))
            .collect();
        let nested: Vec<String> = (0..60)
            .map(|i| format!("a-{i:02}"))
            .chain(["a".to_string()])
            .collect();
        let cases: Vec<Case> = vec![
            (json!({"policy_template": "{}"}), "tenants.policy_template"),
            (json!({"names": ["Blue"]}), "tenants.names[0]"),
            (json!({"names": ["blue", "blue"]}), "tenants.names[1]"),
            (json!({"names": [long]}), "tenants.names[0]"),
            (
                json!({"names": ["blue"], "buckets": {"blue": ["x"]}}),
                "tenants.names[0]",
            ),
            (
                json!({"buckets": {"blue": ["Bad_Name"]}}),
                "tenants.buckets.blue",
            ),
            (
                json!({"buckets": {"blue": ["a*b"]}}),
                "tenants.buckets.blue",
            ),
            (
                json!({"buckets": {"blue": ["a?b"]}}),
                "tenants.buckets.blue",
            ),
            (json!({"buckets": {"blue": ["*"]}}), "tenants.buckets.blue"),
            (json!({"buckets": {"blue": []}}), "tenants.buckets.blue"),
            (json!({"buckets": {"Blue": ["b"]}}), "tenants.buckets.Blue"),
            (json!({"buckets": {"blue": many}}), "tenants.buckets.blue"),
            (json!({"names": nested}), "tenants.names[60]"),
            // Overlaps with another tenant's buckets: explicit vs listed, explicit vs explicit.
            (
                json!({"names": ["red"], "buckets": {"blue": ["red-x"]}}),
                "tenants.buckets.blue",
            ),
            (
                json!({"names": ["red"], "buckets": {"blue": ["re*"]}}),
                "tenants.buckets.blue",
            ),
            (
                json!({"buckets": {"blue": ["shared-*"], "red": ["shared-red"]}}),
                "tenants.buckets.blue",
            ),
        ];
        for (tenants, field) in cases {
            let mut v = sample();
            v["tenants"] = tenants.clone();
            assert_eq!(err_field(&v), field, "{tenants}");
        }
        // Not overlaps: `redx` is not in `red-*`, nor `red` itself.
        let mut v = sample();
        v["tenants"] = json!({"names": ["red"], "buckets": {"blue": ["redx-*", "red"]}});
        assert!(parse(&v).is_ok());
        // A global session policy would be replaced by a tenant's: refused while some caller
        // can be scoped to a listed tenant.
        let mut v = sample();
        v["rgw"]["policy"] = json!("{}");
        assert!(parse(&v).is_ok(), "nothing listed: nobody is scoped");
        v["tenants"] = json!({"names": ["blue"]});
        assert_eq!(err_field(&v), "rgw.policy");
        v["tenants"] = json!({"names": ["blue"], "scope_admins": false, "tenant_admin_rules": []});
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn tenant_admin_rules_must_name_the_tenant() {
        let refused = [
            (
                json!([{"claim": "realm_access.roles", "contains": "tenant-admin"}]),
                "tenants.tenant_admin_rules",
            ),
            (
                json!([{"claim": "realm_access.roles", "contains": "tenant-admin"},
                       {"any_of": [{"claim": "groups", "contains": "{tenant}-tenant-admin"},
                                   {"claim": "groups", "contains": "all-tenants"}]}]),
                "tenants.tenant_admin_rules[1].any_of[1].contains",
            ),
            (
                json!([{"any_of": [{"claim": "groups", "contains": "x"},
                                   {"claim": "groups", "contains": "{tenant}-ta"}]}]),
                "tenants.tenant_admin_rules[0].any_of[0].contains",
            ),
        ];
        for (rules, field) in refused {
            let mut v = sample();
            v["tenants"] = json!({"tenant_admin_rules": rules});
            assert_eq!(err_field(&v), field, "{rules}");
        }
        for rules in [
            json!([]),
            json!([{"claim": "realm_access.roles", "contains": "tenant-admin"},
                   {"claim": "groups", "contains": "{tenant}-tenant-admin"}]),
            json!([{"any_of": [{"claim": "groups", "contains": "{tenant}-a"},
                               {"claim": "groups", "contains": "{tenant}-b"}]},
                   {"any_of": [{"claim": "x", "contains": "1"}, {"claim": "y", "contains": "2"}]}]),
        ] {
            let mut v = sample();
            v["tenants"] = json!({"tenant_admin_rules": rules});
            assert!(parse(&v).is_ok(), "{rules}");
        }
        assert_eq!(
            parse(&sample()).unwrap().tenants.tenant_admin_rules,
            default_tenant_admin_rules()
        );
    }
}
