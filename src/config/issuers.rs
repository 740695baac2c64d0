//! `issuers`: the accepted `iss` values and where each one's keys (JWKS) are fetched.
use serde::Deserialize;

use crate::config::error::{require_non_empty, ConfigError};

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

impl IssuerConfig {
    pub(crate) fn validate(&self, at: &str) -> Result<(), ConfigError> {
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
