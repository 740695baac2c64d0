//! The root context's tick: keys from other VMs, due fetches, callouts that never answered,
//! and parked requests verified again (a bounded batch per call into the VM).

use crate::gateway::flow::{StsAnswer, Wait};
use crate::gateway::lifecycle::{Fetch, Gateway, CALLOUT_SLACK_MS, FAST_TICK_MS, RESUME_PER_CALL};
use crate::host::metrics::Metric;
use crate::host::vm_memory;
use crate::host::{CalloutToken, Host};

impl Gateway {
    /// The root context's timer: keys from other VMs, due fetches, parked requests.
    pub fn on_tick<H: Host>(&mut self, host: &mut H, vm_memory_bytes: u64) {
        let now = host.now_ms();
        self.worker.sync_keys(&*host);
        let mut claimed = self.worker.claim_due_fetches(&*host, now);
        if !self.parking.is_empty() {
            let waited_for = self.parking.waiting_sources();
            for i in self.worker.claim_refetches(&*host, now, &waited_for) {
                if !claimed.contains(&i) {
                    claimed.push(i);
                }
            }
        }
        for i in claimed {
            let Some(callout) = self.worker.jwks_callout(i) else {
                continue;
            };
            match host.dispatch(&callout) {
                Ok(token) => {
                    let deadline_ms = now
                        .saturating_add(callout.timeout_ms)
                        .saturating_add(CALLOUT_SLACK_MS);
                    self.fetches.insert(
                        token,
                        Fetch {
                            source: i,
                            deadline_ms,
                        },
                    );
                }
                Err(_) => self.keys_answer(host, i, None, None),
            }
        }
        let more_late = self.expire(host, now);
        self.resume(host);
        if more_late {
            self.tick_fast(host, true);
        }
        host.metric(Metric::Parked(self.parking.len() as u64));
        if let Some(max) = vm_memory::report(host, self.worker.vm_id(), vm_memory_bytes, now) {
            host.metric(Metric::VmMemoryBytes(max));
        }
    }

    /// Drops callouts whose answer never came (Envoy enforces their timeouts, so this is a
    /// backstop that keeps the maps bounded whatever the host does). Answers at most about
    /// [`RESUME_PER_CALL`] requests per call (oldest deadline first); `true` if late calls
    /// remain for the next tick.
    pub(super) fn expire<H: Host>(&mut self, host: &mut H, now: u64) -> bool {
        let late: Vec<CalloutToken> = self
            .fetches
            .iter()
            .filter(|(_, f)| now >= f.deadline_ms)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(f) = self.fetches.remove(&token) {
                self.keys_answer(host, f.source, None, None);
            }
        }
        let mut late: Vec<(u64, CalloutToken)> = self
            .calls
            .iter()
            .filter(|(_, c)| now >= c.deadline_ms)
            .map(|(t, c)| (c.deadline_ms, *t))
            .collect();
        late.sort_unstable();
        let mut answered = 0usize;
        let mut left = late.len();
        for (_, token) in late {
            // One call's replies (its owner and up to 32 waiters) always fit; more only while
            // the batch stays within that.
            let cost = self.calls.get(&token).map_or(0, |c| 1 + c.waiters.len());
            if answered > 0 && answered + cost > RESUME_PER_CALL + 1 {
                break;
            }
            left -= 1;
            if let Some(call) = self.calls.remove(&token) {
                answered += cost;
                if !call.owner_gone {
                    self.call_of.remove(&call.ctx);
                }
                self.waiting_done(token, &call);
                let timeout = StsAnswer::Answered {
                    status: 504,
                    body: b"",
                    body_size: 0,
                };
                self.sts_done(host, call, timeout);
            }
        }
        left > 0
    }

    /// Verifies again, oldest first, parked requests whose keys changed or whose wait ended:
    /// at most [`RESUME_PER_CALL`] per call, the rest on the next (fast) tick.
    pub(super) fn resume<H: Host>(&mut self, host: &mut H) {
        let now = host.now_ms();
        let versions = self.worker.keys_versions().to_vec();
        for due in self.parking.take_due(now, &versions, RESUME_PER_CALL) {
            let wait = Wait::Over {
                keys_changed: versions.get(due.source) != Some(&due.version),
            };
            self.verify(host, due.ctx, due.ask, due.started_ms, now, wait);
        }
        let more = self.parking.any_due(now, self.worker.keys_versions());
        self.tick_fast(host, more);
    }

    pub(super) fn tick_fast<H: Host>(&mut self, host: &mut H, fast: bool) {
        if fast != self.fast_tick {
            self.fast_tick = fast;
            host.tick_within(fast.then_some(FAST_TICK_MS));
        }
    }
}
