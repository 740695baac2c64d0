//! The filter's metrics, named here once. The names are an operator-facing interface
//! (docs "Observe"); keep them stable:
//!
//! - `sts_gateway_requests_<reason>`: every reply of the filter by `Reply::reason` (`minted`, ...),
//!   whichever endpoint it came through (`PUT token` and `GET credentials` alike)
//! - `sts_gateway_credentials_requests_<reason>`: the subset of those that came through
//!   `GET credentials` (the AWS container-credentials endpoint, [`CREDENTIALS_REASONS`]); the
//!   token route's share is the difference
//! - `sts_gateway_jwks_fetches_ok` / `sts_gateway_jwks_fetches_failed`
//! - `sts_gateway_rgw_answers_<2xx|4xx|5xx|none>`: the STS callout's status class
//! - `sts_gateway_rgw_latency_ms` (histogram): request taken → RGW's answer
//! - `sts_gateway_parked` (gauge): requests of this VM waiting for keys
//! - `sts_gateway_vm_memory_bytes` (gauge): the largest linear memory of any live VM
//! - `sts_gateway_reuse_no_subject`: reuse is on but the token has no `sub`, so the request
//!   neither reused nor shared another's call (it minted its own)
//!
//! `/stats` shows them as `wasmcustom.<name>`; `/stats/prometheus` prints the custom `wasmcustom`
//! namespace without it (`sts_gateway_*`), and `envoy/envoy.yaml`'s `stats_tags` turn the suffix
//! into a `reason` / `class` / `result` label (`sts_gateway_credentials_requests{reason=..}`).
//! Defining a metric is per VM; Envoy merges equal names.

/// Every label a reply can carry (`Reply::reason`), each its own counter.
const REASONS: &[&str] = &[
    "minted",
    "healthz",
    "not_found",
    "method_not_allowed",
    "bad_request",
    "missing",
    "invalid",
    "expired",
    "keys_unavailable",
    "forbidden",
    "rgw_error",
    "rgw_unavailable",
    "rgw_timeout",
    "rgw_bad_answer",
    "client_gone",
    // 201s without an RGW call of their own (opt-in reuse): handed stored credentials, or
    // waited for another request's call.
    "reused",
    "coalesced",
];

/// The reasons a `GET credentials` request can end with (not the other endpoints' ones).
pub const CREDENTIALS_REASONS: &[&str] = &[
    "minted",
    "bad_request",
    "missing",
    "invalid",
    "expired",
    "keys_unavailable",
    "forbidden",
    "rgw_error",
    "rgw_unavailable",
    "rgw_timeout",
    "rgw_bad_answer",
    "client_gone",
    // 200s without an RGW call of their own (opt-in reuse), as in `REASONS`.
    "reused",
    "coalesced",
];

const RGW_CLASSES: &[&str] = &["2xx", "4xx", "5xx", "none"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A request ended with this reason (a reply, or `client_gone`).
    Ended(&'static str),
    /// A `GET credentials` request ended with this reason (counted in `Ended` too).
    CredentialsEnded(&'static str),
    JwksFetch {
        ok: bool,
    },
    RgwAnswer {
        status: Option<u16>,
    },
    RgwLatencyMs(u64),
    Parked(u64),
    VmMemoryBytes(u64),
    /// Reuse on, token without `sub`: minted alone.
    ReuseNoSubject,
}

/// Every metric's name and kind, in a fixed order: the adapter defines them once and keeps the
/// host's ids in this order.
pub fn all() -> Vec<(String, Kind)> {
    let mut v: Vec<(String, Kind)> = REASONS
        .iter()
        .map(|r| (format!("sts_gateway_requests_{r}"), Kind::Counter))
        .collect();
    v.push(("sts_gateway_jwks_fetches_ok".into(), Kind::Counter));
    v.push(("sts_gateway_jwks_fetches_failed".into(), Kind::Counter));
    v.extend(
        RGW_CLASSES
            .iter()
            .map(|c| (format!("sts_gateway_rgw_answers_{c}"), Kind::Counter)),
    );
    v.push(("sts_gateway_rgw_latency_ms".into(), Kind::Histogram));
    v.push(("sts_gateway_parked".into(), Kind::Gauge));
    v.push(("sts_gateway_vm_memory_bytes".into(), Kind::Gauge));
    v.extend(CREDENTIALS_REASONS.iter().map(|r| {
        (
            format!("sts_gateway_credentials_requests_{r}"),
            Kind::Counter,
        )
    }));
    v.push(("sts_gateway_reuse_no_subject".into(), Kind::Counter));
    v
}

impl Metric {
    /// Index into [`all`] and the value to add (counters) or record (gauges, histograms).
    pub fn index_and_value(self) -> Option<(usize, u64)> {
        let base_jwks = REASONS.len();
        let base_rgw = base_jwks + 2;
        let latency = base_rgw + RGW_CLASSES.len();
        let base_credentials = latency + 3;
        Some(match self {
            Metric::Ended(reason) => (REASONS.iter().position(|r| *r == reason)?, 1),
            Metric::JwksFetch { ok } => (base_jwks + usize::from(!ok), 1),
            Metric::RgwAnswer { status } => {
                let class = match status {
                    Some(200..=299) => 0,
                    Some(400..=499) => 1,
                    Some(_) => 2,
                    None => 3,
                };
                (base_rgw + class, 1)
            }
            Metric::RgwLatencyMs(ms) => (latency, ms),
            Metric::Parked(n) => (latency + 1, n),
            Metric::VmMemoryBytes(b) => (latency + 2, b),
            Metric::CredentialsEnded(reason) => (
                base_credentials + CREDENTIALS_REASONS.iter().position(|r| *r == reason)?,
                1,
            ),
            Metric::ReuseNoSubject => (base_credentials + CREDENTIALS_REASONS.len(), 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_maps_to_its_name() {
        let names = all();
        let name = |m: Metric| names[m.index_and_value().unwrap().0].0.clone();
        assert_eq!(name(Metric::Ended("minted")), "sts_gateway_requests_minted");
        assert_eq!(
            name(Metric::Ended("client_gone")),
            "sts_gateway_requests_client_gone"
        );
        assert_eq!(
            name(Metric::JwksFetch { ok: true }),
            "sts_gateway_jwks_fetches_ok"
        );
        assert_eq!(
            name(Metric::JwksFetch { ok: false }),
            "sts_gateway_jwks_fetches_failed"
        );
        assert_eq!(
            name(Metric::RgwAnswer { status: Some(200) }),
            "sts_gateway_rgw_answers_2xx"
        );
        assert_eq!(
            name(Metric::RgwAnswer { status: Some(403) }),
            "sts_gateway_rgw_answers_4xx"
        );
        assert_eq!(
            name(Metric::RgwAnswer { status: Some(503) }),
            "sts_gateway_rgw_answers_5xx"
        );
        assert_eq!(
            name(Metric::RgwAnswer { status: None }),
            "sts_gateway_rgw_answers_none"
        );
        assert_eq!(name(Metric::RgwLatencyMs(3)), "sts_gateway_rgw_latency_ms");
        assert_eq!(name(Metric::Parked(3)), "sts_gateway_parked");
        assert_eq!(
            name(Metric::VmMemoryBytes(3)),
            "sts_gateway_vm_memory_bytes"
        );
        assert_eq!(Metric::Ended("no such reason").index_and_value(), None);
        for r in REASONS {
            assert!(Metric::Ended(r).index_and_value().is_some());
        }
        assert_eq!(
            name(Metric::Ended("bad_request")),
            "sts_gateway_requests_bad_request"
        );
        for r in CREDENTIALS_REASONS {
            assert!(REASONS.contains(r), "{r}");
            assert_eq!(
                name(Metric::CredentialsEnded(r)),
                format!("sts_gateway_credentials_requests_{r}")
            );
        }
        assert_eq!(Metric::CredentialsEnded("healthz").index_and_value(), None);
        assert_eq!(name(Metric::ReuseNoSubject), "sts_gateway_reuse_no_subject");
        assert_eq!(Metric::CredentialsEnded("nope").index_and_value(), None);
        // Every name once, every index in range.
        let mut sorted: Vec<_> = names.iter().map(|(n, _)| n.clone()).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
