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
    generation: u64,
    deadline_ms: u64,
    started_ms: u64,
}

/// A parked request that is due: the keys changed or its wait ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    pub ctx: ContextId,
    pub ask: Ask,
    pub started_ms: u64,
    /// The key generation it parked at.
    pub generation: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// `requests` and `order` always hold the same streams: every removal goes through both.
pub struct Parking {
    limits: Limits,
    bytes: usize,
    requests: HashMap<ContextId, Parked>,
    /// Arrival order (oldest first).
    order: Fifo<ContextId>,
}

impl Parking {
    pub fn new(limits: Limits) -> Parking {
        Parking {
            limits,
            bytes: 0,
            requests: HashMap::new(),
            order: Fifo::default(),
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
        self.order.len() == self.requests.len()
            && self.requests.keys().all(|c| self.order.contains(c))
            && self.bytes == self.requests.values().map(|p| p.ask.bytes()).sum::<usize>()
            && self.order.queue_len() <= 2 * self.order.len() + 17
    }

    /// Parks a request until the keys move past `generation` or `deadline_ms` passes.
    pub fn park(
        &mut self,
        ctx: ContextId,
        ask: Ask,
        generation: u64,
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
        self.order.push(ctx);
        self.requests.insert(
            ctx,
            Parked {
                ctx,
                ask,
                generation,
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

    /// Up to `max` due requests, oldest first. Requests park in arrival order with the same
    /// wait and the key generation only grows, so the due ones are a prefix: the scan stops
    /// at the first that is not due.
    pub fn take_due(&mut self, now_ms: u64, generation: u64, max: usize) -> Vec<Due> {
        let mut due = Vec::new();
        for _ in 0..max {
            if !self.any_due(now_ms, generation) {
                break;
            }
            let Some(p) = self.order.oldest().and_then(|ctx| self.remove(ctx)) else {
                break;
            };
            due.push(Due {
                ctx: p.ctx,
                ask: p.ask,
                started_ms: p.started_ms,
                generation: p.generation,
            });
        }
        due
    }

    /// Whether [`Parking::take_due`] would return something now.
    pub fn any_due(&mut self, now_ms: u64, generation: u64) -> bool {
        self.order
            .oldest()
            .and_then(|ctx| self.requests.get(&ctx))
            .is_some_and(|p| p.generation != generation || now_ms >= p.deadline_ms)
    }

    fn remove(&mut self, ctx: ContextId) -> Option<Parked> {
        let p = self.requests.remove(&ctx)?;
        self.order.remove(&ctx);
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
    //! Parking against a plain list over random sequences: park, clients leaving, key
    //! generations moving, time passing, bounded takes.
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_requests: 6,
        max_bytes: 1200,
    };
    const WAIT: u64 = 100;

    #[derive(Debug, Clone)]
    enum Op {
        Park { ctx: u32, token_len: usize },
        Leave(u32),
        Take(usize),
        Advance(u64),
        NewKeys,
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
            4 => (0..12u32, 1..400usize).prop_map(|(ctx, token_len)| Op::Park { ctx, token_len }),
            2 => (0..12u32).prop_map(Op::Leave),
            2 => (0..5usize).prop_map(Op::Take),
            2 => (1..80u64).prop_map(Op::Advance),
            1 => Just(Op::NewKeys),
        ], 1..200)) {
            let mut p = Parking::new(LIMITS);
            // (ctx, bytes, generation, deadline), oldest first.
            let mut model: Vec<(u32, usize, u64, u64)> = Vec::new();
            let (mut now, mut generation) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Park { ctx, token_len } => {
                        let a = ask(token_len);
                        let bytes = a.bytes();
                        let fits = !model.iter().any(|m| m.0 == ctx)
                            && model.len() < LIMITS.max_requests
                            && model.iter().map(|m| m.1).sum::<usize>() + bytes <= LIMITS.max_bytes;
                        let r = p.park(ctx, a, generation, now, now + WAIT);
                        prop_assert_eq!(r.is_ok(), fits);
                        if fits {
                            model.push((ctx, bytes, generation, now + WAIT));
                        }
                    }
                    Op::Leave(ctx) => {
                        let was = model.iter().any(|m| m.0 == ctx);
                        model.retain(|m| m.0 != ctx);
                        prop_assert_eq!(p.leave(ctx), was);
                    }
                    Op::Take(max) => {
                        let got: Vec<u32> = p.take_due(now, generation, max).iter().map(|d| d.ctx).collect();
                        let mut want = Vec::new();
                        while want.len() < max {
                            match model.first() {
                                Some(m) if m.2 != generation || now >= m.3 => {
                                    want.push(m.0);
                                    model.remove(0);
                                }
                                _ => break,
                            }
                        }
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(ms) => now += ms,
                    Op::NewKeys => generation += 1,
                }
                prop_assert!(p.consistent());
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(p.bytes(), model.iter().map(|m| m.1).sum::<usize>());
                prop_assert!(p.len() <= LIMITS.max_requests && p.bytes() <= LIMITS.max_bytes);
            }
        }
    }
}
