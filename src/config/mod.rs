//! The plugin configuration: one JSON document, parsed into typed structs and validated once in
//! `on_configure`. Every error names the field so an operator can fix it from the Envoy log.
//!
//! One file per section: `issuers`, `rgw`, the rule and tenant checks (`rules`; their types are
//! the policy layer's, `crate::policy::rules`), and the error every check returns.
use serde::Deserialize;

mod error;
mod issuers;
mod rgw;
mod rules;
#[cfg(test)]
pub(crate) mod tests;

use crate::config::error::require_non_empty;
pub use crate::config::error::ConfigError;
pub use crate::config::issuers::{IssuerConfig, JwksSource};
pub use crate::config::rgw::{RgwConfig, ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY};
use crate::config::rules::validate_rules;
pub use crate::policy::rules::{Rule, RuleItem, TenantsConfig, MAX_POLICY_CHARS, MAX_TENANT_LEN};

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
    /// Signature algorithms accepted: any of [`ALGORITHMS`] (RS256 alone by default).
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

const ALGORITHMS: &[&str] = &[
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
