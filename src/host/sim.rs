//! A simulated Envoy for native tests, property tests and the fuzz targets (feature `sim`):
//! streams that come and go, callouts that wait until a test answers them, simulated time,
//! shared data with Envoy's cas rules, and counters of everything the gateway asks of it.
//!
//! As in Envoy, every callout belongs to the root context: a client that leaves cancels none,
//! and every callout is answered (or times out) whatever became of the stream it was for.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use crate::error::Reply;
use crate::host::metrics::Metric;
use crate::host::{Callout, CalloutToken, ContextId, DispatchError, Host};
use crate::token::jwks_store::{MemoryStore, SharedStore};

/// A callout waiting for its answer.
#[derive(Debug)]
pub struct Pending {
    pub cluster: String,
    pub path: String,
    /// The callout's body (the signed STS request), for tests that check who it was for.
    pub body: Vec<u8>,
    pub dispatched_ms: u64,
}

pub struct SimHost {
    pub shared: Rc<MemoryStore>,
    pub now_ms: u64,
    /// Streams whose clients are still connected.
    pub live: HashSet<ContextId>,
    /// The context whose callback is running (replies to others count as deferred).
    pub current: ContextId,
    pub pending: BTreeMap<CalloutToken, Pending>,
    next_token: CalloutToken,
    answer: Option<(Option<u16>, Vec<u8>)>,
    /// Every reply delivered, in order.
    pub replies: Vec<(ContextId, Reply)>,
    /// Streams the gateway replied to (delivered or not): a second reply to one of them is a
    /// bug, recorded in `second_replies`.
    pub answered: HashSet<ContextId>,
    pub second_replies: Vec<ContextId>,
    /// Replies sent for streams other than `current` during the current call: Envoy runs
    /// each after the call, one nesting level deeper than the previous one.
    pub deferred_this_call: usize,
    pub max_deferred_per_call: usize,
    pub tick_within: Option<u64>,
    pub metrics: HashMap<(usize, bool), u64>,
    /// Callouts refused by the host (unknown cluster).
    pub refuse_clusters: HashSet<String>,
    /// Streams that got their reply: Envoy ends them, the driver tells the gateway.
    pub ended: Vec<ContextId>,
}

impl SimHost {
    pub fn new(shared: Rc<MemoryStore>, now_ms: u64) -> SimHost {
        SimHost {
            shared,
            now_ms,
            live: HashSet::new(),
            current: 0,
            pending: BTreeMap::new(),
            next_token: 1,
            answer: None,
            replies: Vec::new(),
            answered: HashSet::new(),
            second_replies: Vec::new(),
            deferred_this_call: 0,
            max_deferred_per_call: 0,
            tick_within: None,
            metrics: HashMap::new(),
            refuse_clusters: HashSet::new(),
            ended: Vec::new(),
        }
    }

    /// Starts a call into the VM from context `ctx`.
    pub fn enter(&mut self, ctx: ContextId) {
        self.current = ctx;
        self.deferred_this_call = 0;
    }

    /// The answer the next `answer_status` / `answer_body` report.
    pub fn set_answer(&mut self, status: Option<u16>, body: &[u8]) {
        self.answer = Some((status, body.to_vec()));
    }

    /// Counter (or last gauge value) of metric `m`'s slot.
    pub fn metric_value(&self, m: Metric) -> u64 {
        m.index_and_value()
            .and_then(|(i, _)| {
                self.metrics
                    .get(&(
                        i,
                        matches!(
                            m,
                            Metric::Ended(_)
                                | Metric::CredentialsEnded(_)
                                | Metric::JwksFetch { .. }
                                | Metric::RgwAnswer { .. }
                                | Metric::ReuseNoSubject
                        ),
                    ))
                    .copied()
            })
            .unwrap_or(0)
    }

    pub fn replies_to(&self, ctx: ContextId) -> Vec<&Reply> {
        self.replies
            .iter()
            .filter(|(c, _)| *c == ctx)
            .map(|(_, r)| r)
            .collect()
    }
}

impl SharedStore for SimHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.shared.set(key, value, cas)
    }
}

impl Host for SimHost {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn dispatch(&mut self, c: &Callout) -> Result<CalloutToken, DispatchError> {
        if self.refuse_clusters.contains(&c.cluster) {
            return Err(DispatchError::Failed);
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        let path = c
            .headers
            .iter()
            .find(|(n, _)| *n == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.pending.insert(
            token,
            Pending {
                cluster: c.cluster.clone(),
                path,
                body: c.body.clone().unwrap_or_default(),
                dispatched_ms: self.now_ms,
            },
        );
        Ok(token)
    }

    fn answer_status(&self) -> Option<u16> {
        self.answer.as_ref().and_then(|(s, _)| *s)
    }

    fn answer_body(&self, size: usize, max: usize) -> Option<Vec<u8>> {
        if size > max {
            return None;
        }
        self.answer.as_ref().map(|(_, b)| b.clone())
    }

    fn reply(&mut self, ctx: ContextId, reply: &Reply) -> bool {
        if !self.answered.insert(ctx) {
            self.second_replies.push(ctx);
            return false;
        }
        if !self.live.remove(&ctx) {
            // Gone before its reply: Envoy refuses the effective context.
            return false;
        }
        if ctx != self.current {
            self.deferred_this_call += 1;
            self.max_deferred_per_call = self.max_deferred_per_call.max(self.deferred_this_call);
        }
        self.replies.push((ctx, reply.clone()));
        self.ended.push(ctx);
        true
    }

    fn tick_within(&mut self, ms: Option<u64>) {
        self.tick_within = ms;
    }

    fn metric(&mut self, m: Metric) {
        let Some((index, value)) = m.index_and_value() else {
            return;
        };
        let counter = matches!(
            m,
            Metric::Ended(_)
                | Metric::CredentialsEnded(_)
                | Metric::JwksFetch { .. }
                | Metric::RgwAnswer { .. }
                | Metric::ReuseNoSubject
        );
        let slot = self.metrics.entry((index, counter)).or_insert(0);
        if counter {
            *slot += value;
        } else {
            *slot = value;
        }
    }
}
