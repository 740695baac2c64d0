//! `rgw`: where the STS call goes, the role it assumes, and the keys it is signed with.
use serde::Deserialize;
use std::fmt;

use crate::config::error::{require_non_empty, ConfigError};

/// Environment variables (Envoy `vm_config.environment_variables`, Istio `vmConfig.env`) that
/// supply the token-service keys when the plugin configuration leaves them out, so the keys
/// need not appear in Envoy's config dump.
pub const ENV_ACCESS_KEY_ID: &str = "STS_GATEWAY_ACCESS_KEY_ID";

pub const ENV_SECRET_ACCESS_KEY: &str = "STS_GATEWAY_SECRET_ACCESS_KEY";

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

impl RgwConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
