//! Model-based property test of the whole request lifecycle: random sequences of requests,
//! clients that leave, ticks, JWKS and RGW answers (good, failed, reset, late), key rotations
//! and the passing of time, on two VMs that share data. Every reply is checked against a
//! simple reference model of what that caller may get; after every step, memory and work are
//! checked against their bounds; at the end every request must have ended.
//!
//! `PROPTEST_CASES` sets the number of sequences (`make test`: the default below; `make soak`:
//! many more).
//!
//! The bounds below are written as numbers, not taken from the implementation: a constant
//! changed there must fail here. The generators reach each of them: bursts of hundreds of
//! forged kids (parking, absent kids), more tokens than the cache holds (entries and bytes),
//! several principals and tenants (reuse entries), advances past the reuse and refresh windows,
//! keys added and removed.
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, TestRunner};
use serde_json::json;

use crate::gateway::lifecycle::tests::{config_with, headers, jwks_doc, token, Vm, NOW_MS, OK_XML};
use crate::gateway::request::percent_decode;
use crate::host::ContextId;
use crate::test_support::{cases, NOW};
use crate::token::jwks_store::MemoryStore;

/// Two parkings, one per sequence: a small one (above `PER_CALL`, so resumes come in
/// batches; bursts of small forged tokens fill the count, padded ones the bytes), and a large
/// one that lets a burst of up to 1,400 forged kids wait, so that one refetch remembers more absent
/// kids than their bound.
const PARKINGS: [(usize, usize); 2] = [(48, 60_000), (2_000, 6_000_000)];
const CACHE_ENTRIES: usize = 4;
/// The smallest allowed; the padded tokens (about 21 KB accounted each) reach it.
const CACHE_BYTES: usize = 65_536;
/// Per call into the VM: parked requests verified again, waiters of one call.
const PER_CALL: usize = 32;
/// Replies to other streams per call into the VM (Envoy nests each one deeper): an answer
/// serves its owner and up to 32 waiters (33); a tick answers up to 33 timed-out requests and
/// resumes up to 32 parked ones.
const REPLIES_PER_CALL: usize = 65;
/// Kids remembered as unpublished, per VM.
const ABSENT_KIDS: usize = 1024;
/// STS calls in flight per VM.
const CALLS_IN_FLIGHT: usize = 1024;
/// The STS callout's timeout (config default).
const RGW_TIMEOUT_MS: u64 = 5_000;
const PRINCIPALS: usize = 3;
const TENANTS: [Option<&str>; 3] = [None, Some("red"), Some("blue")];
/// min_refetch 5 s + lease (2 s timeout + 1 s).
const MAX_WAIT_MS: u64 = 8_000;
const LEASE_MS: u64 = 3_000;
const FORGED: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Admin `p` (its own `sub`), asking for tenant `TENANTS[t]`.
    Admin {
        p: usize,
        t: usize,
    },
    /// Admin `p` again, with a token padded to about 10 KB (fills the cache's bytes).
    Big(usize),
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
    /// `n` requests at once, each with a kid nobody published; then, with `keys_change`, the
    /// issuer's keys change and that VM refetches.
    Burst {
        vm: usize,
        n: usize,
        keys_change: bool,
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
    /// The issuer stops publishing the first key (only once the second one is out).
    Retire,
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        3 => (0..PRINCIPALS, 0..TENANTS.len()).prop_map(|(p, t)| Caller::Admin { p, t }),
        1 => (0..PRINCIPALS).prop_map(Caller::Big),
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
        3 => prop_oneof![
            3 => 1..200u64,
            3 => 200..3_000u64,
            3 => 3_000..12_000u64,
            1 => 300_000..700_000u64
        ]
        .prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Rotate),
        1 => Just(Op::Retire),
        1 => (0..2usize, prop_oneof![40..100usize, 100..1_400usize], any::<bool>())
            .prop_map(|(vm, n, keys_change)| Op::Burst { vm, n, keys_change }),
    ]
}

struct Tokens {
    admins: Vec<String>,
    big: Vec<String>,
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
        admins: (0..PRINCIPALS)
            .map(|p| {
                let sub = format!("u-admin-{p}");
                token(
                    &format!("admin{p}"),
                    &["admin"],
                    "sig-1",
                    0,
                    json!({ "sub": sub }),
                )
            })
            .collect(),
        big: (0..PRINCIPALS)
            .map(|p| {
                let sub = format!("u-admin-{p}");
                let pad = "x".repeat(10_000);
                token(
                    &format!("admin{p}"),
                    &["admin"],
                    "sig-1",
                    0,
                    json!({ "sub": sub, "pad": pad }),
                )
            })
            .collect(),
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

/// A token with a kid nobody publishes (its signature is never reached).
fn forged_kid(i: usize) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("burst-{i}")});
    // Every fourth one is padded (about 10 KB): the parking's byte bound is reached too.
    let t = tokens();
    let base = if i % 4 == 3 { &t.big[0] } else { &t.admins[0] };
    let rest = base.split_once('.').map_or("", |(_, r)| r);
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// What the model remembers of one request.
struct Expect {
    caller: Caller,
    credentials: bool,
    arrived_ms: u64,
    /// Something could legitimately keep a rotated key from it: a failed or lost fetch,
    /// a full parking, or a wait that ran out.
    trouble: bool,
    /// An RGW call on its worker failed or timed out while it waited: a 502/503/504 is
    /// allowed. Without it, an admin must get credentials.
    rgw_trouble: bool,
}

/// Who an STS request was for: the session's user and the tenant its policy names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MintedFor {
    user: String,
    tenant: Option<String>,
}

fn minted_for(sts_body: &[u8]) -> MintedFor {
    let body = String::from_utf8_lossy(sts_body);
    let param = |name: &str| {
        body.split('&')
            .find_map(|kv| kv.strip_prefix(name))
            .map(percent_decode)
    };
    let session = param("RoleSessionName=").unwrap_or_default();
    let user = session
        .split(['@', '-'])
        .next()
        .unwrap_or_default()
        .to_string();
    let tenant = param("Policy=").map(|policy| {
        TENANTS
            .iter()
            .flatten()
            .find(|t| policy.contains(&format!(":::{t}")))
            .map_or_else(|| format!("unknown policy {policy}"), |t| t.to_string())
    });
    MintedFor { user, tenant }
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
    /// Access key ids RGW handed out (per VM: stores are per worker), with when, and for whom.
    issued: HashMap<String, (usize, u64, MintedFor)>,
    vms: [Vm; 2],
    rotated: bool,
    retired: bool,
    park_max: usize,
    park_bytes: usize,
    expect: HashMap<(usize, ContextId), Expect>,
    left: usize,
    now_ms: u64,
}

impl World {
    fn new(reuse: bool, parking: usize) -> World {
        let (park_max, park_bytes) = PARKINGS[parking % PARKINGS.len()];
        let config = || {
            let mut c = json!({
                "token_cache_entries": CACHE_ENTRIES,
                "token_cache_bytes": CACHE_BYTES,
                "parking": {"max_requests": park_max, "max_bytes": park_bytes},
                "tenants": {"scope_admins": true, "names": ["red", "blue"]},
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
            retired: false,
            park_max,
            park_bytes,
            expect: HashMap::new(),
            left: 0,
            now_ms: NOW_MS,
        }
    }

    fn jwks_doc(&self) -> Vec<u8> {
        if self.retired {
            jwks_doc(&[(1, "sig-2")])
        } else if self.rotated {
            jwks_doc(&[(0, "sig-1"), (1, "sig-2")])
        } else {
            jwks_doc(&[(0, "sig-1")])
        }
    }

    /// Work counters before one call into a VM.
    fn start_call(&mut self) -> Vec<u64> {
        for vm in &mut self.vms {
            vm.host.max_deferred_per_call = 0;
        }
        self.vms.iter().map(|v| v.g.usage().verifications).collect()
    }

    fn flag_trouble(&mut self) {
        for e in self.expect.values_mut() {
            e.trouble = true;
        }
    }

    fn flag_rgw_trouble(&mut self, vm: usize) {
        for ((v, _), e) in &mut self.expect {
            if *v == vm {
                e.rgw_trouble = true;
            }
        }
    }

    fn expect(&mut self, vm: usize, ctx: ContextId, caller: Caller, credentials: bool, full: bool) {
        // It may wait for (coalesce onto) a call that is already late.
        let rgw_trouble = self.has_late_call(vm);
        self.expect.insert(
            (vm, ctx),
            Expect {
                caller,
                credentials,
                arrived_ms: self.now_ms,
                trouble: full,
                rgw_trouble,
            },
        );
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut before: Vec<u64> = self.vms.iter().map(|v| v.g.usage().verifications).collect();
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
                    Caller::Admin { p, t: tenant } => {
                        let extra: Vec<(&str, &str)> = TENANTS[tenant]
                            .map(|name| ("cray-tenant-name", name))
                            .into_iter()
                            .collect();
                        headers("PUT", "/apis/sts/token", Some(&t.admins[p]), &extra)
                    }
                    Caller::Big(p) => headers("PUT", "/apis/sts/token", Some(&t.big[p]), &[]),
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
                // Full by count, or by bytes for a token of up to about 11 KB.
                let u = self.vms[*vm].g.usage();
                let full = u.parked >= self.park_max || u.parked_bytes + 12_000 > self.park_bytes;
                let (ctx, _) = self.vms[*vm].request(&h);
                self.expect(*vm, ctx, caller, credentials, full);
            }
            Op::Burst { vm, n, keys_change } => {
                // One call per request, as Envoy makes them, each checked on its own.
                for i in 0..*n {
                    let t = forged_kid(i);
                    let h = headers("PUT", "/apis/sts/token", Some(&t), &[]);
                    let (ctx, _) = self.vms[*vm].request(&h);
                    self.expect(*vm, ctx, Caller::Forged(0), false, true);
                    if i + 1 < *n {
                        // Each request is one call into the VM: its own bounds.
                        self.check_bounds(&before)?;
                        before = self.start_call();
                    }
                }
                if *keys_change {
                    // The issuer's keys change while the burst waits, and the VM refetches:
                    // every parked forged kid is then remembered as absent (their bound).
                    if self.rotated {
                        self.retired = true;
                    } else {
                        self.rotated = true;
                    }
                    self.check_bounds(&before)?;
                    // Past the refetch budget (min_refetch_seconds 5), so the tick refetches.
                    self.advance(5_001);
                    before = self.start_call();
                    self.vms[*vm].tick();
                    if let Some(t) = self.vms[*vm].jwks_pending() {
                        self.check_bounds(&before)?;
                        before = self.start_call();
                        let doc = self.jwks_doc();
                        self.vms[*vm].answer(t, Some(200), &doc);
                    }
                }
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
                        2 => {
                            self.flag_rgw_trouble(v);
                            self.vms[v].answer(t, Some(503), b"no healthy upstream");
                        }
                        _ => {
                            self.flag_rgw_trouble(v);
                            self.vms[v].answer(t, None, b"");
                        }
                    }
                }
            }
            Op::Advance { ms } => self.advance(*ms),
            Op::Rotate => {
                // The issuer publishes a second key; fetches from now on return both.
                self.rotated = true;
            }
            Op::Retire => {
                if self.rotated {
                    self.retired = true;
                }
            }
        }
        self.check_bounds(&before)
    }

    /// A call past its timeout, which the gateway may answer 504.
    fn has_late_call(&self, vm: usize) -> bool {
        self.vms[vm]
            .host
            .pending
            .values()
            .any(|p| p.cluster == "rgw" && self.now_ms - p.dispatched_ms >= RGW_TIMEOUT_MS)
    }

    fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        for v in 0..2 {
            self.vms[v].host.now_ms = self.now_ms;
            if self.has_late_call(v) {
                self.flag_rgw_trouble(v);
            }
        }
    }

    fn sts_ok(&mut self, v: usize, t: u32) {
        self.minted += 1;
        let xml = ok_xml(self.minted);
        let whom = self.vms[v]
            .host
            .pending
            .get(&t)
            .map(|p| minted_for(&p.body));
        if let Some(whom) = whom {
            self.issued
                .insert(format!("AKID{:015}", self.minted), (v, self.now_ms, whom));
        }
        self.vms[v].answer(t, Some(200), xml.as_bytes());
    }

    /// Token callers whose token may no longer verify: its key retired, or near its `exp`.
    fn may_be_unverifiable(&self, caller: Caller) -> bool {
        let expiring = self.now_ms / 1000 + 120 >= NOW + 3600;
        let old_key = self.retired && !matches!(caller, Caller::Rotated);
        expiring || old_key
    }

    fn check_bounds(&mut self, before: &[u64]) -> Result<(), TestCaseError> {
        for (i, vm) in self.vms.iter().enumerate() {
            let u = vm.g.usage();
            prop_assert!(u.parking_consistent, "{u:?}");
            prop_assert!(
                u.parked <= self.park_max && u.parked_bytes <= self.park_bytes,
                "{u:?}"
            );
            prop_assert!(
                u.cache_entries <= CACHE_ENTRIES && u.cache_bytes <= CACHE_BYTES,
                "{u:?}"
            );
            prop_assert!(u.absent_kids <= ABSENT_KIDS, "{u:?}");
            prop_assert_eq!(u.calls + u.waiters, u.call_index + u.owners_gone);
            prop_assert!(u.max_waiters <= PER_CALL);
            prop_assert!(u.minting <= u.calls, "{u:?}");
            prop_assert!(u.reused_entries <= 2, "{u:?}");
            prop_assert!(u.fetches <= 3, "{u:?}");
            if !self.reuse {
                prop_assert_eq!((u.waiters, u.minting, u.reused_entries), (0, 0, 0));
            }
            // A call outlives its client (Envoy's callouts are the root's), never the bound.
            prop_assert!(u.calls - u.owners_gone <= vm.host.live.len(), "{u:?}");
            prop_assert!(u.calls <= CALLS_IN_FLIGHT, "{u:?}");
            prop_assert!(
                vm.host.second_replies.is_empty(),
                "a stream got two replies"
            );
            // Work per call: one verification for a new request, or a bounded resume batch.
            prop_assert!(u.verifications - before[i] <= PER_CALL as u64 + 1, "{u:?}");
            prop_assert!(
                vm.host.max_deferred_per_call <= REPLIES_PER_CALL,
                "{}",
                vm.host.max_deferred_per_call
            );
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
                let rgw_failed = e.rgw_trouble && (502..=504).contains(&s);
                let unverifiable = s == 401 && self.may_be_unverifiable(e.caller);
                let ok = unverifiable
                    || match e.caller {
                        // Success is required: only a failed or late RGW call excuses a 5xx.
                        Caller::Admin { .. } | Caller::Big(_) => s == 201 || rgw_failed,
                        Caller::NonAdmin => s == 403,
                        Caller::SkewExpired => s == 403 || s == 401,
                        Caller::Expired | Caller::Forged(_) | Caller::IdToken | Caller::Garbage => {
                            s == 401
                        }
                        Caller::Rotated => {
                            s == 201 || rgw_failed || (s == 401 && (e.trouble || waited))
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
                    if let Some((vm, at, whom)) = issued {
                        prop_assert_eq!(*vm, v, "credentials crossed workers");
                        // Only ever the caller they were minted for, with its own scope.
                        let wanted = match e.caller {
                            Caller::Admin { p, t } => MintedFor {
                                user: format!("admin{p}"),
                                tenant: TENANTS[t].map(str::to_string),
                            },
                            Caller::Big(p) => MintedFor {
                                user: format!("admin{p}"),
                                tenant: None,
                            },
                            Caller::Rotated => MintedFor {
                                user: "admin".into(),
                                tenant: None,
                            },
                            other => MintedFor {
                                user: format!("no credentials for {other:?}"),
                                tenant: None,
                            },
                        };
                        prop_assert_eq!(whom, &wanted, "credentials crossed callers");
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
            // Calls whose clients all left still end with their answer (Envoy's are the root's).
            let pending = self.vms.iter().any(|v| !v.host.pending.is_empty());
            if self.expect.is_empty() && !pending {
                break;
            }
            let doc = self.jwks_doc();
            for v in 0..2 {
                // Each call into the VM is checked against the per-call bounds on its own.
                if let Some(t) = self.vms[v].jwks_pending() {
                    let before = self.start_call();
                    self.vms[v].answer(t, Some(200), &doc);
                    self.check_bounds(&before)?;
                }
                for t in self.vms[v].sts_pending() {
                    let before = self.start_call();
                    self.sts_ok(v, t);
                    self.check_bounds(&before)?;
                }
                let before = self.start_call();
                self.vms[v].tick();
                self.check_bounds(&before)?;
            }
            self.now_ms += 100;
            for vm in &mut self.vms {
                vm.host.now_ms = self.now_ms;
            }
        }
        prop_assert!(
            self.expect.is_empty(),
            "requests never ended: {}",
            self.expect.len()
        );
        for vm in &self.vms {
            let u = vm.g.usage();
            prop_assert_eq!((u.parked, u.calls, u.call_index), (0, 0, 0), "{:?}", u);
            prop_assert_eq!((u.waiters, u.minting, u.owners_gone), (0, 0, 0), "{:?}", u);
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

/// Runs `cases` sequences of `strategy` through `test` on another thread, and fails if they
/// take longer than a generous deadline: a regression of an endless loop fails the suite
/// instead of hanging it.
fn run_with_deadline<S>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
) where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    // Generous (a loaded CI machine, bursts of 1,400 requests): it is there to turn a hang
    // into a failure, not to time the tests.
    let deadline = Duration::from_secs(300 + u64::from(cases));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = RunnerConfig {
            cases,
            max_shrink_iters: std::env::var("PROPTEST_MAX_SHRINK_ITERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000),
            failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
            ..RunnerConfig::default()
        };
        let result = TestRunner::new(config).run(&strategy, test);
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("no answer within {deadline:?}: a hang"),
    }
}

#[test]
fn lifecycle_matches_model() {
    let strategy = (
        prop::collection::vec(op(), 1..160),
        any::<bool>(),
        0..2usize,
    );
    run_with_deadline(cases(64), strategy, |(ops, reuse, parking)| {
        let mut w = World::new(reuse, parking);
        for op in &ops {
            w.apply(op)?;
        }
        w.drain()
    });
}

/// The hang's sequence, made likely: the same skew-expired token again and again between
/// other traffic, far past twice the cache's capacity.
#[test]
fn repeated_skew_expired_token() {
    let strategy = (prop::collection::vec(op(), 0..40), 9usize..64);
    run_with_deadline(cases(48), strategy, |(extra, repeats)| {
        let mut w = World::new(false, 0);
        for (i, op) in extra.iter().enumerate() {
            w.apply(op)?;
            for _ in 0..repeats / 8 + (i % 2) {
                w.apply(&Op::Request {
                    vm: i % 2,
                    caller: Caller::SkewExpired,
                    credentials: i % 3 == 0,
                })?;
            }
        }
        for _ in 0..repeats {
            w.apply(&Op::Request {
                vm: 0,
                caller: Caller::SkewExpired,
                credentials: false,
            })?;
        }
        w.drain()
    });
}

fn replay(ops: &[Op], reuse: bool) {
    let mut w = World::new(reuse, 0);
    for op in ops {
        w.apply(op).unwrap();
    }
    w.drain().unwrap();
}

fn req(vm: usize, caller: Caller) -> Op {
    Op::Request {
        vm,
        caller,
        credentials: false,
    }
}

/// Saved by proptest (an earlier `Op` shape): a rotated key's token parked across the wait.
#[test]
fn regression_rotated_token_across_the_wait() {
    let admin = Caller::Admin { p: 0, t: 0 };
    replay(
        &[
            Op::Rotate,
            req(1, Caller::Rotated),
            req(0, admin),
            Op::Advance { ms: 3171 },
            Op::Advance { ms: 4829 },
            Op::Tick { vm: 1 },
            req(1, Caller::Rotated),
        ],
        false,
    );
}

/// Saved by proptest (an earlier `Op` shape): with reuse, a client leaves after a refetch.
#[test]
fn regression_leave_after_refetch_with_reuse() {
    let admin = Caller::Admin { p: 0, t: 0 };
    replay(
        &[
            Op::Advance { ms: 5000 },
            Op::Rotate,
            req(1, Caller::Rotated),
            req(0, Caller::Forged(0)),
            Op::Tick { vm: 0 },
            Op::AnswerJwks {
                pick: 0,
                outcome: 0,
            },
            Op::Tick { vm: 1 },
            req(1, admin),
            req(1, Caller::Forged(0)),
            Op::Leave {
                vm: 1,
                pick: 12131546227340912397,
            },
        ],
        true,
    );
}

/// `make soak` found it on the old lifecycle (seed cc aeefdcc0…): two requests of one
/// caller coalesce, then the owner and the waiter both leave; the orphaned call was kept
/// until a tick that never came. Calls are the root's now: the call ends with its answer.
#[test]
fn regression_owner_and_waiter_both_leave() {
    let admin = Caller::Admin { p: 0, t: 0 };
    replay(
        &[
            req(0, admin),
            req(0, admin),
            Op::Leave { vm: 0, pick: 0 },
            Op::Leave { vm: 0, pick: 0 },
        ],
        true,
    );
}
