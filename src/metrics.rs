//! Counters and a histogram in Envoy's stats. The names are an operator-facing interface (README
//! "Deploying in Istio" > "Observe"); keep them stable:
//!
//! - `sts_gateway_requests_<reason>`: every answer of the filter by `Answer::reason` (`minted`, ...)
//! - `sts_gateway_jwks_fetches_ok` / `sts_gateway_jwks_fetches_failed`
//! - `sts_gateway_rgw_answers_<2xx|4xx|5xx|none>`: the STS callout's status class
//! - `sts_gateway_rgw_latency_ms` (histogram): request taken → RGW's answer
//!
//! `/stats` shows them as `wasmcustom.<name>`; `/stats/prometheus` prints the custom `wasmcustom`
//! namespace without it (`sts_gateway_*`), and `envoy/envoy.yaml`'s `stats_tags` turn the suffix
//! into a `reason` / `class` / `result` label. Defining a metric is per VM; Envoy merges equal names.
use proxy_wasm::hostcalls::{define_metric, increment_metric, record_metric};
use proxy_wasm::types::MetricType;

/// Every label an answer can carry (`Answer::reason`), each its own counter.
const REASONS: &[&str] = &[
    "minted",
    "healthz",
    "not_found",
    "method_not_allowed",
    "missing",
    "invalid",
    "expired",
    "keys_unavailable",
    "forbidden",
    "rgw_error",
    "rgw_unavailable",
    "rgw_timeout",
    "rgw_bad_answer",
];

#[derive(Default)]
pub struct Metrics {
    answers: Vec<(&'static str, u32)>,
    jwks_ok: Option<u32>,
    jwks_failed: Option<u32>,
    rgw_by_class: Vec<(&'static str, u32)>,
    rgw_latency: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        let answers = REASONS
            .iter()
            .filter_map(|r| counter(&format!("sts_gateway_requests_{r}")).map(|id| (*r, id)))
            .collect();
        let rgw_by_class = ["2xx", "4xx", "5xx", "none"]
            .iter()
            .filter_map(|c| counter(&format!("sts_gateway_rgw_answers_{c}")).map(|id| (*c, id)))
            .collect();
        Metrics {
            answers,
            jwks_ok: counter("sts_gateway_jwks_fetches_ok"),
            jwks_failed: counter("sts_gateway_jwks_fetches_failed"),
            rgw_by_class,
            rgw_latency: define_metric(MetricType::Histogram, "sts_gateway_rgw_latency_ms").ok(),
        }
    }

    pub fn answered(&self, reason: &str) {
        bump(
            self.answers
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, id)| *id),
        );
    }

    pub fn jwks_fetch(&self, ok: bool) {
        bump(if ok { self.jwks_ok } else { self.jwks_failed });
    }

    pub fn rgw_answer(&self, status: Option<u16>, latency_ms: u64) {
        let class = match status {
            Some(200..=299) => "2xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "none",
        };
        bump(
            self.rgw_by_class
                .iter()
                .find(|(c, _)| *c == class)
                .map(|(_, id)| *id),
        );
        if let Some(id) = self.rgw_latency {
            let _ = record_metric(id, latency_ms);
        }
    }
}
