//! Model-based property test of the whole request lifecycle: random sequences of requests,
//! clients that leave, ticks, JWKS and RGW answers (good, failed, reset, late), key rotations
//! and the passing of time, on two VMs that share data. Every reply is checked against a
//! simple reference model of what that caller may get; after every step, memory and work are
//! checked against their bounds; at the end every request must have ended.
//!
//! `PROPTEST_CASES` sets the number of sequences (`make test`: the default below; `make soak`:
//! many more).
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;

use crate::gateway::flow::MAX_ABSENT_KIDS;
use crate::gateway::lifecycle::RESUME_PER_CALL;
use crate::gateway::lifecycle_tests::{config_with, headers, jwks_doc, token, Vm, NOW_MS, OK_XML};
use crate::host::ContextId;
use crate::token::jwks_store::MemoryStore;
use crate::token::verify::tests::NOW;

const PARK_MAX: usize = 8;
const PARK_BYTES: usize = 12_000;
const CACHE_ENTRIES: usize = 4;
const CACHE_BYTES: usize = 65_536;
/// min_refetch 5 s + lease (2 s timeout + 1 s).
const MAX_WAIT_MS: u64 = 8_000;
const LEASE_MS: u64 = 3_000;
const FORGED: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    NonAdmin,
    /// A non-admin token that expired 2 s ago: inside the skew, so it verifies (the hang).
    SkewExpired,
    Expired,
    Forged(usize),
    /// Signed with the key the issuer rotates in (only sent once it is published).
    Rotated,
    IdToken,
    Garbage,
    Healthz,
}

#[derive(Debug, Clone)]
enum Op {
    /// `credentials`: through `GET credentials` with the bare token, else `PUT token`.
    Request {
        vm: usize,
        caller: Caller,
        credentials: bool,
    },
    Leave {
        vm: usize,
        pick: usize,
    },
    Tick {
        vm: usize,
    },
    AnswerJwks {
        pick: usize,
        outcome: u8,
    },
    AnswerSts {
        pick: usize,
        outcome: u8,
    },
    Advance {
        ms: u64,
    },
    Rotate,
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        3 => Just(Caller::Admin),
        2 => Just(Caller::NonAdmin),
        4 => Just(Caller::SkewExpired),
        1 => Just(Caller::Expired),
        4 => (0..FORGED).prop_map(Caller::Forged),
        3 => Just(Caller::Rotated),
        1 => Just(Caller::IdToken),
        1 => Just(Caller::Garbage),
        1 => Just(Caller::Healthz),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..2usize, caller(), any::<bool>())
            .prop_map(|(vm, caller, credentials)| Op::Request { vm, caller, credentials }),
        2 => (0..2usize, any::<usize>()).prop_map(|(vm, pick)| Op::Leave { vm, pick }),
        4 => (0..2usize).prop_map(|vm| Op::Tick { vm }),
        3 => (any::<usize>(), 0..4u8).prop_map(|(pick, outcome)| Op::AnswerJwks { pick, outcome }),
        3 => (any::<usize>(), 0..4u8).prop_map(|(pick, outcome)| Op::AnswerSts { pick, outcome }),
        3 => prop_oneof![1..200u64, 200..3_000u64, 3_000..12_000u64].prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Rotate),
    ]
}

struct Tokens {
    admin: String,
    non_admin: String,
    skew_expired: String,
    expired: String,
    forged: Vec<String>,
    rotated: String,
    id_token: String,
}

fn tokens() -> &'static Tokens {
    static T: OnceLock<Tokens> = OnceLock::new();
    T.get_or_init(|| Tokens {
        admin: token("admin", &["admin"], "sig-1", 0, json!({})),
        non_admin: token("user", &["user"], "sig-1", 0, json!({})),
        skew_expired: token("user", &["user"], "sig-1", 0, json!({"exp": NOW - 2})),
        expired: token("admin", &["admin"], "sig-1", 0, json!({"exp": NOW - 3600})),
        forged: (0..FORGED)
            .map(|i| token("admin", &["admin"], &format!("forged-{i}"), 1, json!({})))
            .collect(),
        rotated: token("admin", &["admin"], "sig-2", 1, json!({})),
        id_token: token("admin", &["admin"], "sig-1", 0, json!({"typ": "ID"})),
    })
}

/// What the model remembers of one request.
struct Expect {
    caller: Caller,
    credentials: bool,
    arrived_ms: u64,
    /// Something could legitimately keep a rotated key from it: a failed or lost fetch,
    /// a full parking, or a wait that ran out.
    trouble: bool,
}

/// RGW's success answer with a distinct access key id per call.
fn ok_xml(n: u64) -> String {
    OK_XML.replace("nEffVHB6D9aV8oNWipJ", &format!("AKID{n:015}"))
}

fn access_key(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    // The token route's 201 nests them; the credentials endpoint's 200 does not.
    let key = v["Credentials"]["AccessKeyId"]
        .as_str()
        .or(v["AccessKeyId"].as_str())?;
    Some(key.to_string())
}

struct World {
    reuse: bool,
    minted: u64,
    /// Access key ids RGW handed out (per VM: stores are per worker), with when.
    issued: HashMap<String, (usize, u64)>,
    vms: [Vm; 2],
    rotated: bool,
    expect: HashMap<(usize, ContextId), Expect>,
    left: usize,
    now_ms: u64,
}

impl World {
    fn new(reuse: bool) -> World {
        let config = || {
            let mut c = json!({
                "token_cache_entries": CACHE_ENTRIES,
                "token_cache_bytes": CACHE_BYTES,
                "parking": {"max_requests": PARK_MAX, "max_bytes": PARK_BYTES},
            });
            if reuse {
                c["reuse"] = json!({"min_remaining_seconds": 3000, "max_entries": 2});
            }
            config_with(c)
        };
        let shared = Rc::new(MemoryStore::default());
        let mut a = Vm::new(config(), shared.clone(), NOW_MS);
        a.tick();
        let t = a.jwks_pending().expect("first fetch");
        a.answer(t, Some(200), &jwks_doc(&[(0, "sig-1")]));
        let mut b = Vm::new(config(), shared, NOW_MS);
        b.tick(); // picks the keys up from shared data
        World {
            reuse,
            minted: 0,
            issued: HashMap::new(),
            vms: [a, b],
            rotated: false,
            expect: HashMap::new(),
            left: 0,
            now_ms: NOW_MS,
        }
    }

    fn jwks_doc(&self) -> Vec<u8> {
        if self.rotated {
            jwks_doc(&[(0, "sig-1"), (1, "sig-2")])
        } else {
            jwks_doc(&[(0, "sig-1")])
        }
    }

    fn flag_trouble(&mut self) {
        for e in self.expect.values_mut() {
            e.trouble = true;
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let before: Vec<u64> = self.vms.iter().map(|v| v.g.usage().verifications).collect();
        for vm in &mut self.vms {
            vm.host.max_deferred_per_call = 0;
        }
        match op {
            Op::Request {
                vm,
                caller,
                credentials,
            } => {
                let caller = match caller {
                    Caller::Rotated if !self.rotated => Caller::Forged(0),
                    c => *c,
                };
                let t = tokens();
                let h = match caller {
                    Caller::Admin => headers("PUT", "/apis/sts/token", Some(&t.admin), &[]),
                    Caller::NonAdmin => headers("PUT", "/apis/sts/token", Some(&t.non_admin), &[]),
                    Caller::SkewExpired => {
                        headers("PUT", "/apis/sts/token", Some(&t.skew_expired), &[])
                    }
                    Caller::Expired => headers("PUT", "/apis/sts/token", Some(&t.expired), &[]),
                    Caller::Forged(i) => headers("PUT", "/apis/sts/token", Some(&t.forged[i]), &[]),
                    Caller::Rotated => headers("PUT", "/apis/sts/token", Some(&t.rotated), &[]),
                    Caller::IdToken => headers("PUT", "/apis/sts/token", Some(&t.id_token), &[]),
                    Caller::Garbage => headers("PUT", "/apis/sts/token", Some("a.b.c"), &[]),
                    Caller::Healthz => headers("GET", "/apis/sts/healthz", None, &[]),
                };
                let credentials = *credentials && caller != Caller::Healthz;
                let h = if credentials { as_credentials(h) } else { h };
                let full = self.vms[*vm].g.usage().parked >= PARK_MAX;
                let (ctx, _) = self.vms[*vm].request(&h);
                self.expect.insert(
                    (*vm, ctx),
                    Expect {
                        caller,
                        credentials,
                        arrived_ms: self.now_ms,
                        trouble: full,
                    },
                );
            }
            Op::Leave { vm, pick } => {
                let live: Vec<ContextId> = {
                    let mut l: Vec<_> = self.vms[*vm].host.live.iter().copied().collect();
                    l.sort_unstable();
                    l
                };
                if !live.is_empty() {
                    let ctx = live[pick % live.len()];
                    self.vms[*vm].leave(ctx);
                    self.expect.remove(&(*vm, ctx));
                    self.left += 1;
                }
            }
            Op::Tick { vm } => self.vms[*vm].tick(),
            Op::AnswerJwks { pick, outcome } => {
                let pending: Vec<(usize, u32)> = (0..2)
                    .flat_map(|v| self.vms[v].jwks_pending().map(|t| (v, t)))
                    .collect();
                if !pending.is_empty() {
                    let (v, t) = pending[pick % pending.len()];
                    let doc = self.jwks_doc();
                    match outcome {
                        0 | 1 => self.vms[v].answer(t, Some(200), &doc),
                        2 => {
                            self.flag_trouble();
                            self.vms[v].answer(t, Some(500), b"oops");
                        }
                        _ => {
                            self.flag_trouble();
                            self.vms[v].answer(t, None, b"");
                        }
                    }
                }
            }
            Op::AnswerSts { pick, outcome } => {
                let pending: Vec<(usize, u32)> = (0..2)
                    .flat_map(|v| self.vms[v].sts_pending().into_iter().map(move |t| (v, t)))
                    .collect();
                if !pending.is_empty() {
                    let (v, t) = pending[pick % pending.len()];
                    match outcome {
                        0 | 1 => self.sts_ok(v, t),
                        2 => self.vms[v].answer(t, Some(503), b"no healthy upstream"),
                        _ => self.vms[v].answer(t, None, b""),
                    }
                }
            }
            Op::Advance { ms } => {
                self.now_ms += ms;
                for vm in &mut self.vms {
                    vm.host.now_ms = self.now_ms;
                }
            }
            Op::Rotate => {
                // The issuer publishes a second key; fetches from now on return both.
                self.rotated = true;
            }
        }
        self.check_bounds(&before)
    }

    fn sts_ok(&mut self, v: usize, t: u32) {
        self.minted += 1;
        let xml = ok_xml(self.minted);
        self.issued
            .insert(format!("AKID{:015}", self.minted), (v, self.now_ms));
        self.vms[v].answer(t, Some(200), xml.as_bytes());
    }

    fn check_bounds(&mut self, before: &[u64]) -> Result<(), TestCaseError> {
        for (i, vm) in self.vms.iter().enumerate() {
            let u = vm.g.usage();
            prop_assert!(u.parking_consistent, "{u:?}");
            prop_assert!(
                u.parked <= PARK_MAX && u.parked_bytes <= PARK_BYTES,
                "{u:?}"
            );
            prop_assert!(
                u.cache_entries <= CACHE_ENTRIES && u.cache_bytes <= CACHE_BYTES,
                "{u:?}"
            );
            prop_assert!(u.absent_kids <= MAX_ABSENT_KIDS, "{u:?}");
            prop_assert_eq!(u.calls + u.waiters, u.call_index);
            prop_assert!(u.max_waiters <= RESUME_PER_CALL);
            prop_assert!(u.minting <= u.calls, "{u:?}");
            prop_assert!(u.reused_entries <= 2, "{u:?}");
            if !self.reuse {
                prop_assert_eq!((u.waiters, u.minting, u.reused_entries), (0, 0, 0));
            }
            prop_assert!(u.calls <= vm.host.live.len(), "{u:?}");
            prop_assert!(u.fetches <= 3, "{u:?}");
            // Work per call: one verification for a new request, or a bounded resume batch.
            prop_assert!(
                u.verifications - before[i] <= RESUME_PER_CALL as u64 + 1,
                "{u:?}"
            );
            prop_assert!(vm.host.max_deferred_per_call <= RESUME_PER_CALL);
        }
        // The shared lease: two JWKS fetches of the same source never overlap within a lease.
        let mut times: Vec<u64> = self
            .vms
            .iter()
            .flat_map(|v| v.host.pending.values())
            .filter(|p| p.cluster == "keycloak")
            .map(|p| p.dispatched_ms)
            .collect();
        times.sort_unstable();
        for w in times.windows(2) {
            prop_assert!(w[1] - w[0] >= LEASE_MS, "fetches overlap: {times:?}");
        }
        self.check_replies()
    }

    /// Every reply so far against the model; replied requests leave the model.
    fn check_replies(&mut self) -> Result<(), TestCaseError> {
        for v in 0..2 {
            let replies = std::mem::take(&mut self.vms[v].host.replies);
            for (ctx, reply) in replies {
                let e = self.expect.remove(&(v, ctx));
                prop_assert!(
                    e.is_some(),
                    "second reply or reply to an unknown stream {ctx}"
                );
                let Some(e) = e else { continue };
                let waited = self.now_ms.saturating_sub(e.arrived_ms) >= MAX_WAIT_MS;
                // The endpoints differ only in their success.
                let (minted, other) = if e.credentials {
                    (200, 201)
                } else {
                    (201, 200)
                };
                prop_assert!(reply.status != other || e.caller == Caller::Healthz);
                if reply.status == minted {
                    let body = String::from_utf8_lossy(&reply.body);
                    let key = if e.credentials {
                        "\"Token\""
                    } else {
                        "\"SessionToken\""
                    };
                    prop_assert!(body.contains(key), "{body}");
                }
                let s = if reply.status == minted {
                    201
                } else {
                    reply.status
                };
                let ok = match e.caller {
                    Caller::Admin => matches!(s, 201 | 502 | 503 | 504),
                    Caller::NonAdmin => s == 403,
                    Caller::SkewExpired => s == 403 || s == 401,
                    Caller::Expired | Caller::Forged(_) | Caller::IdToken | Caller::Garbage => {
                        s == 401
                    }
                    Caller::Rotated => {
                        matches!(s, 201 | 502 | 503 | 504) || (s == 401 && (e.trouble || waited))
                    }
                    Caller::Healthz => s == 200,
                };
                prop_assert!(
                    ok,
                    "{:?} got {} ({})",
                    e.caller,
                    s,
                    String::from_utf8_lossy(&reply.body)
                );
                if s == 201 {
                    // Every 201 carries credentials RGW issued, to this worker, and a reused
                    // one only while enough lifetime remains (3600 s, 3000 s must remain).
                    let key = access_key(&reply.body);
                    let issued = key.as_ref().and_then(|k| self.issued.get(k));
                    prop_assert!(issued.is_some(), "unknown credentials {key:?}");
                    if let Some((vm, at)) = issued {
                        prop_assert_eq!(*vm, v, "credentials crossed workers");
                        prop_assert!(self.now_ms - at <= 600_000, "reused too late");
                        if !self.reuse {
                            prop_assert_eq!(reply.reason, "minted");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Everything answers promptly from now on: every request must end.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..400 {
            if self.expect.is_empty() {
                break;
            }
            let before: Vec<u64> = self.vms.iter().map(|v| v.g.usage().verifications).collect();
            let doc = self.jwks_doc();
            for v in 0..2 {
                self.vms[v].host.max_deferred_per_call = 0;
                if let Some(t) = self.vms[v].jwks_pending() {
                    self.vms[v].answer(t, Some(200), &doc);
                }
                for t in self.vms[v].sts_pending() {
                    self.sts_ok(v, t);
                }
                self.vms[v].tick();
            }
            self.now_ms += 100;
            for vm in &mut self.vms {
                vm.host.now_ms = self.now_ms;
            }
            self.check_bounds(&before)?;
        }
        prop_assert!(
            self.expect.is_empty(),
            "requests never ended: {}",
            self.expect.len()
        );
        for vm in &self.vms {
            let u = vm.g.usage();
            prop_assert_eq!((u.parked, u.calls, u.call_index), (0, 0, 0), "{:?}", u);
            prop_assert_eq!((u.waiters, u.minting, u.orphans), (0, 0, 0), "{:?}", u);
        }
        Ok(())
    }
}

/// `PROPTEST_CASES` if set (make soak), else `default`.
/// The same request through `GET credentials`, the token as the bare `Authorization` value.
fn as_credentials(h: Vec<(String, String)>) -> Vec<(String, String)> {
    h.into_iter()
        .map(|(n, v)| match n.as_str() {
            ":method" => (n, "GET".to_string()),
            ":path" => (n, "/apis/sts/credentials".to_string()),
            "authorization" => {
                let bare = v.strip_prefix("Bearer ").unwrap_or(&v).to_string();
                (n, bare)
            }
            _ => (n, v),
        })
        .collect()
}

pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_matches_model(ops in prop::collection::vec(op(), 1..160), reuse in any::<bool>()) {
        let mut w = World::new(reuse);
        for op in &ops {
            w.apply(op)?;
        }
        w.drain()?;
    }

    /// The hang's sequence, made likely: the same skew-expired token again and again between
    /// other traffic, far past twice the cache's capacity.
    #[test]
    fn repeated_skew_expired_token(extra in prop::collection::vec(op(), 0..40), repeats in 9usize..64) {
        let mut w = World::new(false);
        for (i, op) in extra.iter().enumerate() {
            w.apply(op)?;
            for _ in 0..repeats / 8 + (i % 2) {
                w.apply(&Op::Request { vm: i % 2, caller: Caller::SkewExpired, credentials: i % 3 == 0 })?;
            }
        }
        for _ in 0..repeats {
            w.apply(&Op::Request { vm: 0, caller: Caller::SkewExpired, credentials: false })?;
        }
        w.drain()?;
    }
}
