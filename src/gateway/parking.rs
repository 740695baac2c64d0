//! Requests waiting for keys: their `kid` is unknown and a JWKS fetch (running, or the next one
//! the refetch budget allows) may publish it. Bounded in count and in bytes; each keeps only
//! what verifying it again needs ([`Ask`]), never the request's headers.
use std::collections::HashMap;

use crate::fifo::Fifo;
use crate::gateway::route::Endpoint;
use crate::host::ContextId;

/// What a token request needs after its headers are gone.
#[derive(Clone, PartialEq, Eq)]
pub struct Ask {
    pub token: String,
    pub tenant: Option<String>,
    /// `x-request-id`, for the mint log line (bounded, printable).
    pub request_id: String,
    /// The endpoint it came through: the format of its answer.
    pub endpoint: Endpoint,
}

/// Hand-written so the bearer token can never reach a log through `{:?}` (as `RgwConfig` hides
/// its secret): the token shows as its length only.
impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field(
                "token",
                &format_args!("<{} bytes redacted>", self.token.len()),
            )
            .field("tenant", &self.tenant)
            .field("request_id", &self.request_id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Fixed cost of a parked request besides its strings (map slots, sequence, deadline).
const PARKED_OVERHEAD: usize = 128;

impl Ask {
    pub fn bytes(&self) -> usize {
        self.token.len()
            + self.tenant.as_ref().map_or(0, String::len)
            + self.request_id.len()
            + PARKED_OVERHEAD
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: usize,
}

#[derive(Debug)]
struct Parked {
    ctx: ContextId,
    ask: Ask,
    source: usize,
    version: u64,
    deadline_ms: u64,
    started_ms: u64,
}

/// A parked request that is due: its source's keys changed or its wait ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    pub ctx: ContextId,
    pub ask: Ask,
    pub started_ms: u64,
    /// The JWKS source whose keys it waits for, and their version when it parked.
    pub source: usize,
    pub version: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// `requests` and `order` always hold the same streams: every removal goes through both.
pub struct Parking {
    limits: Limits,
    bytes: usize,
    requests: HashMap<ContextId, Parked>,
    /// Arrival order (oldest first), one queue per JWKS source: requests of one source park
    /// with the same wait and its keys' version only moves on, so the due ones of a source are
    /// the front of its queue. (At most as many queues as the configuration has sources.)
    order: Vec<Fifo<ContextId>>,
}

impl Parking {
    pub fn new(limits: Limits) -> Parking {
        Parking {
            limits,
            bytes: 0,
            requests: HashMap::new(),
            order: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn contains(&self, ctx: ContextId) -> bool {
        self.requests.contains_key(&ctx)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Both indexes agree and the byte count is exact (for the property tests).
    pub fn consistent(&self) -> bool {
        self.order.iter().map(Fifo::len).sum::<usize>() == self.requests.len()
            && self
                .requests
                .values()
                .all(|p| self.order.get(p.source).is_some_and(|q| q.contains(&p.ctx)))
            && self.bytes == self.requests.values().map(|p| p.ask.bytes()).sum::<usize>()
            && self.order.iter().all(|q| q.queue_len() <= 2 * q.len() + 17)
    }

    /// Sources that parked requests wait for (their refetches are worth claiming).
    pub fn waiting_sources(&self) -> Vec<usize> {
        (0..self.order.len())
            .filter(|&i| self.order.get(i).is_some_and(|q| !q.is_empty()))
            .collect()
    }

    /// Parks a request until the keys of `source` move past `version` or `deadline_ms`
    /// passes. `source` is below the configuration's source count (the worker's index).
    pub fn park(
        &mut self,
        ctx: ContextId,
        ask: Ask,
        (source, version): (usize, u64),
        started_ms: u64,
        deadline_ms: u64,
    ) -> Result<(), Full> {
        let bytes = ask.bytes();
        if self.requests.contains_key(&ctx)
            || self.requests.len() >= self.limits.max_requests
            || self.bytes.saturating_add(bytes) > self.limits.max_bytes
        {
            return Err(Full);
        }
        if self.order.len() <= source {
            self.order.resize_with(source + 1, Fifo::default);
        }
        let Some(queue) = self.order.get_mut(source) else {
            return Err(Full);
        };
        queue.push(ctx);
        self.requests.insert(
            ctx,
            Parked {
                ctx,
                ask,
                source,
                version,
                deadline_ms,
                started_ms,
            },
        );
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    /// The client left: forget its request. `true` if it was parked.
    pub fn leave(&mut self, ctx: ContextId) -> bool {
        self.remove(ctx).is_some()
    }

    /// Up to `max` due requests, source by source, oldest first within each. `versions` are
    /// the sources' current key versions, by index. The due ones of a source are the front of
    /// its queue: the scan of a source stops at its first request that is not due.
    pub fn take_due(&mut self, now_ms: u64, versions: &[u64], max: usize) -> Vec<Due> {
        let mut due = Vec::new();
        for source in 0..self.order.len() {
            while due.len() < max && self.front_due(source, now_ms, versions) {
                let front = self.order.get_mut(source).and_then(Fifo::oldest);
                let Some(p) = front.and_then(|ctx| self.remove(ctx)) else {
                    break;
                };
                due.push(Due {
                    ctx: p.ctx,
                    ask: p.ask,
                    started_ms: p.started_ms,
                    source: p.source,
                    version: p.version,
                });
            }
        }
        due
    }

    /// Whether [`Parking::take_due`] would return something now.
    pub fn any_due(&mut self, now_ms: u64, versions: &[u64]) -> bool {
        (0..self.order.len()).any(|source| self.front_due(source, now_ms, versions))
    }

    fn front_due(&mut self, source: usize, now_ms: u64, versions: &[u64]) -> bool {
        let current = versions.get(source).copied().unwrap_or(0);
        self.order
            .get_mut(source)
            .and_then(Fifo::oldest)
            .and_then(|ctx| self.requests.get(&ctx))
            .is_some_and(|p| p.version != current || now_ms >= p.deadline_ms)
    }

    fn remove(&mut self, ctx: ContextId) -> Option<Parked> {
        let p = self.requests.remove(&ctx)?;
        if let Some(queue) = self.order.get_mut(p.source) {
            queue.remove(&ctx);
        }
        self.bytes = self.bytes.saturating_sub(p.ask.bytes());
        Some(p)
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    /// `{:?}` of a parked request never shows its bearer token, only the other fields.
    #[test]
    fn debug_hides_the_token() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2VjcmV0LXNpZ25hdHVyZQ";
        let ask = Ask {
            token: format!("Bearer {token}"),
            tenant: Some("tenant-a".into()),
            request_id: "req-42".into(),
            endpoint: Endpoint::Credentials,
        };
        let shown = format!("{ask:?}");
        // Positive control: the token is in the value, and the check finds it in a plain dump.
        assert!(format!("{:?}", ask.token).contains(token));
        assert!(!shown.contains(token), "{shown}");
        assert!(!shown.contains("c2VjcmV0LXNpZ25hdHVyZQ"), "{shown}");
        assert!(
            shown.contains("tenant-a") && shown.contains("req-42"),
            "{shown}"
        );
        assert!(shown.contains("Credentials"), "{shown}");
        assert!(
            shown.contains(&format!("<{} bytes redacted>", ask.token.len())),
            "{shown}"
        );
    }
}

#[cfg(test)]
mod model {
    //! Parking against a plain list over random sequences: park (for one of three JWKS
    //! sources), clients leaving, a source's keys moving, time passing, bounded takes.
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_requests: 6,
        max_bytes: 1200,
    };
    const WAIT: u64 = 100;
    const SOURCES: usize = 3;

    #[derive(Debug, Clone)]
    enum Op {
        Park {
            ctx: u32,
            token_len: usize,
            source: usize,
        },
        Leave(u32),
        Take(usize),
        Advance(u64),
        NewKeys(usize),
    }

    fn ask(len: usize) -> Ask {
        Ask {
            token: "t".repeat(len),
            tenant: None,
            request_id: "-".into(),
            endpoint: Endpoint::Token,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::test_support::cases(256), ..ProptestConfig::default() })]
        #[test]
        fn parking_matches_model(ops in prop::collection::vec(prop_oneof![
            4 => (0..12u32, 1..400usize, 0..SOURCES).prop_map(|(ctx, token_len, source)| Op::Park { ctx, token_len, source }),
            2 => (0..12u32).prop_map(Op::Leave),
            2 => (0..5usize).prop_map(Op::Take),
            2 => (1..80u64).prop_map(Op::Advance),
            1 => (0..SOURCES).prop_map(Op::NewKeys),
        ], 1..200)) {
            let mut p = Parking::new(LIMITS);
            // (ctx, bytes, source, version, deadline), oldest first.
            let mut model: Vec<(u32, usize, usize, u64, u64)> = Vec::new();
            let mut now = 0u64;
            let mut versions = [0u64; SOURCES];
            for op in ops {
                match op {
                    Op::Park { ctx, token_len, source } => {
                        let a = ask(token_len);
                        let bytes = a.bytes();
                        let fits = !model.iter().any(|m| m.0 == ctx)
                            && model.len() < LIMITS.max_requests
                            && model.iter().map(|m| m.1).sum::<usize>() + bytes <= LIMITS.max_bytes;
                        let r = p.park(ctx, a, (source, versions[source]), now, now + WAIT);
                        prop_assert_eq!(r.is_ok(), fits);
                        if fits {
                            model.push((ctx, bytes, source, versions[source], now + WAIT));
                        }
                    }
                    Op::Leave(ctx) => {
                        let was = model.iter().any(|m| m.0 == ctx);
                        model.retain(|m| m.0 != ctx);
                        prop_assert_eq!(p.leave(ctx), was);
                    }
                    Op::Take(max) => {
                        let got: Vec<u32> = p.take_due(now, &versions, max).iter().map(|d| d.ctx).collect();
                        // Every due request (its own source's keys moved, or its wait ended),
                        // by source, oldest first within a source; the first `max` of them.
                        let mut due: Vec<(u32, usize, usize, u64, u64)> = model
                            .iter()
                            .filter(|m| m.3 != versions[m.2] || now >= m.4)
                            .copied()
                            .collect();
                        due.sort_by_key(|m| m.2);
                        due.truncate(max);
                        let want: Vec<u32> = due.iter().map(|m| m.0).collect();
                        model.retain(|m| !want.contains(&m.0));
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(ms) => now += ms,
                    Op::NewKeys(source) => versions[source] += 1,
                }
                let mut waiting: Vec<usize> = model.iter().map(|m| m.2).collect();
                waiting.sort_unstable();
                waiting.dedup();
                prop_assert_eq!(p.waiting_sources(), waiting);
                prop_assert!(p.consistent());
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(p.bytes(), model.iter().map(|m| m.1).sum::<usize>());
                prop_assert!(p.len() <= LIMITS.max_requests && p.bytes() <= LIMITS.max_bytes);
            }
        }
    }
}
