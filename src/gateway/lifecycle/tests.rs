//! The request lifecycle against a simulated Envoy: scenarios that reproduce the outages found
//! in review (one test each), then a model-based property test over random sequences.
use std::rc::Rc;

use serde_json::json;

use crate::config::Config;
use crate::gateway::lifecycle::{Action, Gateway, Phase, RESUME_PER_CALL};
use crate::host::metrics::Metric;
use crate::host::sim::SimHost;
use crate::host::ContextId;
use crate::test_support::{claims, jwk_json, keypairs, sign, ISS, NOW};
use crate::token::jwks_store::MemoryStore;

pub const NOW_MS: u64 = NOW * 1000;
pub const OK_XML: &str = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>nEffVHB6D9aV8oNWipJ</AccessKeyId><Expiration>2026-11-30T00:57:59.260716106Z</Expiration><SecretAccessKey>EJBVsecret</SecretAccessKey><SessionToken>7MSXtoken</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>";
pub const ROOT: ContextId = 1;

pub fn config_with(extra: serde_json::Value) -> Config {
    let mut v = json!({
        "issuers": [{"issuer": ISS, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
        "rgw": {"cluster": "rgw", "authority": "rgw.local:8080", "endpoint_url": "http://rgw.local:8080",
                "role_arn": "arn:aws:iam:::user/STS", "access_key_id": "AKIDSTS", "secret_access_key": "SECRETSTS"}
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
}

pub fn jwks_doc(kids: &[(usize, &str)]) -> Vec<u8> {
    let keys: Vec<_> = kids
        .iter()
        .map(|(i, kid)| jwk_json(&keypairs()[*i], kid, "sig", "RS256"))
        .collect();
    json!({"keys": keys}).to_string().into_bytes()
}

pub fn token(
    user: &str,
    roles: &[&str],
    kid: &str,
    key: usize,
    extra: serde_json::Value,
) -> String {
    let mut c = claims(
        json!({"preferred_username": user, "resource_access": {"shasta": {"roles": roles}}}),
    );
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(json!({"alg": "RS256", "typ": "JWT", "kid": kid}), c, key)
}

pub fn headers(
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
    ];
    if let Some(t) = token {
        h.push(("authorization".into(), format!("Bearer {t}")));
    }
    for (n, v) in extra {
        h.push((n.to_string(), v.to_string()));
    }
    h
}

/// One VM of a simulated Envoy, with its gateway.
pub struct Vm {
    pub g: Gateway,
    pub host: SimHost,
    next_ctx: ContextId,
}

impl Vm {
    pub fn new(config: Config, shared: Rc<MemoryStore>, now_ms: u64) -> Vm {
        Vm {
            g: Gateway::new(config),
            host: SimHost::new(shared, now_ms),
            next_ctx: 100,
        }
    }

    /// A VM whose keys (kid `sig-1`, key 0) another VM already fetched into shared data.
    pub fn with_keys(config: Config) -> Vm {
        let shared = Rc::new(MemoryStore::default());
        let mut vm = Vm::new(config, shared, NOW_MS);
        vm.tick();
        let token = vm.jwks_pending().expect("first tick fetches the JWKS");
        vm.answer(token, Some(200), &jwks_doc(&[(0, "sig-1")]));
        vm
    }

    fn settle(&mut self) {
        for ctx in std::mem::take(&mut self.host.ended) {
            self.g.on_stream_end(&mut self.host, ctx);
        }
    }

    pub fn request(&mut self, h: &[(String, String)]) -> (ContextId, Action) {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.host.live.insert(ctx);
        self.host.enter(ctx);
        let a = self.g.on_request(&mut self.host, ctx, h);
        self.settle();
        (ctx, a)
    }

    pub fn tick(&mut self) {
        self.host.enter(ROOT);
        self.g.on_tick(&mut self.host, 1 << 20);
        self.settle();
    }

    pub fn answer(&mut self, token: u32, status: Option<u16>, body: &[u8]) {
        self.host.pending.remove(&token).expect("pending");
        self.host.set_answer(status, body);
        // Envoy delivers every callout's answer to the root context.
        self.host.enter(ROOT);
        let headers = usize::from(status.is_some());
        self.g
            .on_callout_answer(&mut self.host, token, headers, body.len());
        self.settle();
    }

    /// The client resets its stream.
    pub fn leave(&mut self, ctx: ContextId) {
        // Its callouts go on: they are the root's (see `sim`).
        if self.host.live.remove(&ctx) {
            self.host.enter(ctx);
            self.g.on_stream_end(&mut self.host, ctx);
        }
    }

    pub fn jwks_pending(&self) -> Option<u32> {
        self.host
            .pending
            .iter()
            .find(|(_, p)| p.cluster == "keycloak")
            .map(|(t, _)| *t)
    }

    pub fn sts_pending(&self) -> Vec<u32> {
        self.host
            .pending
            .iter()
            .filter(|(_, p)| p.cluster == "rgw")
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn status_of(&self, ctx: ContextId) -> Option<u32> {
        self.host.replies_to(ctx).first().map(|r| r.status)
    }
}

fn put(t: &str) -> Vec<(String, String)> {
    headers("PUT", "/apis/sts/token", Some(t), &[])
}

#[test]
fn routes() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    assert_eq!(
        vm.request(&headers("GET", "/other", None, &[])).1,
        Action::Continue
    );
    let (c, a) = vm.request(&headers("GET", "/apis/sts/healthz", None, &[]));
    assert_eq!((a, vm.status_of(c)), (Action::Pause, Some(200)));
    let (c, _) = vm.request(&headers("GET", "/apis/sts/token", None, &[]));
    assert_eq!(vm.status_of(c), Some(405));
    let (c, _) = vm.request(&headers("PUT", "/apis/sts/nope", None, &[]));
    assert_eq!(vm.status_of(c), Some(404));
    let (c, _) = vm.request(&headers("PUT", "/apis/sts/token", None, &[]));
    assert_eq!(vm.status_of(c), Some(401));
}

#[test]
fn mint_end_to_end_in_the_simulator() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, a) = vm.request(&headers(
        "PUT",
        "/apis/sts/token",
        Some(&t),
        &[("x-request-id", "r-1")],
    ));
    assert_eq!(a, Action::Pause);
    assert_eq!(vm.g.phase(c), Some(Phase::CallingSts));
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert_eq!(vm.status_of(c), Some(201));
    assert_eq!(vm.g.phase(c), None);
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 1);
}

/// The outage: a non-admin's token that expired inside the clock skew, sent 8,192 times, hung
/// the worker in the token cache's eviction loop (each lookup dropped the entry but not its
/// place in the eviction order). Fails (hangs) on the old cache.
#[test]
fn skew_expired_token_repeated_does_not_hang_or_grow() {
    let cap = 16;
    let mut vm = Vm::with_keys(config_with(json!({"token_cache_entries": cap})));
    let t = token("user", &["user"], "sig-1", 0, json!({"exp": NOW - 2}));
    for _ in 0..(8 * cap + 10) {
        let (c, _) = vm.request(&put(&t));
        assert_eq!(vm.status_of(c), Some(403));
        let u = vm.g.usage();
        assert!(u.cache_entries <= cap && u.cache_entries == 1, "{u:?}");
    }
}

/// The crash: a refetch's answer resumed every parked request in one VM call; Envoy nests the
/// deferred local replies, and ~600 overflowed V8's stack. Replies per call are now bounded.
#[test]
fn flood_of_parked_requests_is_resumed_in_bounded_batches() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.now_ms += 10_000; // refetch budget available
    let mut ctxs = Vec::new();
    for i in 0..1000 {
        let t = token("admin", &["admin"], &format!("forged-{i}"), 1, json!({}));
        let (c, _) = vm.request(&put(&t));
        ctxs.push(c);
    }
    assert_eq!(vm.g.usage().parked, 1000);
    assert_eq!(vm.host.tick_within, Some(1), "the root is woken to refetch");
    vm.tick();
    let fetch = vm.jwks_pending().expect("one refetch for all");
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1")]));
    assert_eq!(vm.host.max_deferred_per_call, RESUME_PER_CALL);
    for _ in 0..100 {
        if vm.g.usage().parked == 0 {
            break;
        }
        vm.tick();
    }
    assert!(vm.host.max_deferred_per_call <= RESUME_PER_CALL);
    for c in ctxs {
        assert_eq!(vm.status_of(c), Some(401), "forged kid");
    }
    assert_eq!(vm.host.tick_within, None, "back to the regular tick");
}

/// Finding 1: parked requests keep only what they need, bounded in bytes.
#[test]
fn parked_requests_are_bounded_in_bytes_not_just_count() {
    let mut vm = Vm::with_keys(config_with(
        json!({"parking": {"max_requests": 2048, "max_bytes": 65536}}),
    ));
    vm.host.now_ms += 10_000;
    let big = "x".repeat(50_000);
    let mut refused = 0;
    for i in 0..100 {
        let t = token(
            "admin",
            &["admin"],
            &format!("forged-{i}"),
            1,
            json!({"pad": "y".repeat(2000)}),
        );
        let (c, _) = vm.request(&headers(
            "PUT",
            "/apis/sts/token",
            Some(&t),
            &[("x-big", &big)],
        ));
        if vm.status_of(c) == Some(401) {
            refused += 1;
        }
    }
    let u = vm.g.usage();
    assert!(u.parked_bytes <= 65536, "{u:?}");
    assert!(
        u.parked < 100 && refused == 100 - u.parked,
        "{u:?} refused {refused}"
    );
    // Each parked request holds its token, not the 50 KB header.
    assert!(u.parked_bytes / u.parked < 5000, "{u:?}");
}

/// Finding 3: refetches are the root's callouts, never a client's: a client that resets
/// cannot cancel the fetch or strand its lease.
#[test]
fn refetch_is_dispatched_by_the_root_and_survives_the_client() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.now_ms += 10_000;
    let rotated = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c, _) = vm.request(&put(&rotated));
    assert_eq!(vm.g.phase(c), Some(Phase::Parked));
    assert!(
        vm.jwks_pending().is_none(),
        "no callout from the client's context"
    );
    vm.tick();
    let fetch = vm.jwks_pending().expect("root refetches");
    // The client resets (SO_LINGER 0): its request is forgotten, the fetch goes on.
    vm.leave(c);
    assert_eq!(vm.g.phase(c), None);
    assert!(vm.host.pending.contains_key(&fetch));
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    // The next client with the rotated key is served at once.
    let (c2, _) = vm.request(&put(&rotated));
    assert_eq!(vm.g.phase(c2), Some(Phase::CallingSts));
}

/// Finding 5: a parked request whose client left is never resumed: no RGW call, no log line.
#[test]
fn parked_request_of_a_gone_client_never_mints() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.now_ms += 10_000;
    let rotated = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c, _) = vm.request(&put(&rotated));
    vm.tick();
    let fetch = vm.jwks_pending().unwrap();
    vm.leave(c);
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    assert!(vm.sts_pending().is_empty(), "no RGW call for a gone client");
    assert!(vm.host.replies_to(c).is_empty());
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 0);
}

/// A client that leaves during its STS call: Envoy cancels the callout, the gateway forgets it.
#[test]
fn client_leaving_during_sts_call_is_forgotten() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&put(&t));
    assert_eq!(vm.sts_pending().len(), 1);
    vm.leave(c);
    assert_eq!(vm.g.phase(c), None);
    // The call itself is the root's: it stays until its answer or its timeout.
    let u = vm.g.usage();
    assert_eq!((u.calls, u.call_index, u.owners_gone), (1, 0, 1));
}

/// Finding 7: an ID token (typ ID) with aud shasta is not a credential for this API.
#[test]
fn id_token_is_refused() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let id = token("admin", &["admin"], "sig-1", 0, json!({"typ": "ID"}));
    let (c, _) = vm.request(&put(&id));
    assert_eq!(vm.status_of(c), Some(401));
}

/// Envoy refuses the RGW callout: 503, counted `rgw_unavailable`. The owner's stream is gone
/// when its call is dispatched (reset, Envoy has not told the filter yet): no reply, no RGW call,
/// counted `client_gone` (not `rgw_unavailable`).
#[test]
fn dispatch_failure_is_503_and_owner_gone_is_client_gone() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.refuse_clusters.insert("rgw".into());
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&put(&t));
    assert_eq!(vm.status_of(c), Some(503));
    assert_eq!(vm.host.metric_value(Metric::Ended("rgw_unavailable")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("client_gone")), 0);
    vm.host.refuse_clusters.clear();
    // A request parked for a rotated key; its stream dies while the fetch runs.
    vm.host.now_ms += 10_000;
    let rotated = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c2, _) = vm.request(&put(&rotated));
    assert_eq!(vm.g.phase(c2), Some(Phase::Parked));
    vm.tick();
    let fetch = vm.jwks_pending().expect("root refetches");
    vm.host.live.remove(&c2);
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    // Envoy has not told the gateway yet: the call is made (callouts are the root's), and
    // its answer finds the client gone.
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert!(vm.host.replies_to(c2).is_empty());
    assert!(vm.host.second_replies.is_empty());
    assert_eq!(vm.host.metric_value(Metric::Ended("client_gone")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("rgw_unavailable")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 0);
}

#[test]
fn lost_callouts_expire() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&put(&t));
    // The host never answers (it always does; this is the backstop).
    vm.host.pending.clear();
    vm.host.now_ms += 60_000;
    vm.tick();
    assert_eq!(vm.status_of(c), Some(504));
    assert_eq!(vm.g.usage().calls, 0);
}

#[test]
fn tenant_scope_reaches_rgw_as_session_policy() {
    let mut vm = Vm::with_keys(config_with(
        json!({"tenants": {"names": ["blue"], "scope_admins": true}}),
    ));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&headers(
        "PUT",
        "/apis/sts/token",
        Some(&t),
        &[("cray-tenant-name", "blue")],
    ));
    assert_eq!(vm.g.phase(c), Some(Phase::CallingSts));
    let body = vm.g.last_sts_body_for_tests();
    assert!(body.contains("RoleSessionName=admin%40blue-"), "{body}");
    assert!(body.contains("&Policy=%7B%22Version%22"), "{body}");
    assert!(body.contains("arn%3Aaws%3As3%3A%3A%3Ablue-%2A"), "{body}");
    // Without the header: no policy, as before.
    let (_, _) = vm.request(&put(&t));
    assert!(!vm.g.last_sts_body_for_tests().contains("Policy="));
    // A tenant admin of another tenant: 403, no RGW call.
    let ta = token(
        "ta",
        &[],
        "sig-1",
        0,
        json!({"realm_access": {"roles": ["tenant-admin"]}, "groups": ["red-tenant-admin"]}),
    );
    let before = vm.sts_pending().len();
    let (c, _) = vm.request(&headers(
        "PUT",
        "/apis/sts/token",
        Some(&ta),
        &[("cray-tenant-name", "blue")],
    ));
    assert_eq!(vm.status_of(c), Some(403));
    assert_eq!(vm.sts_pending().len(), before);
}

fn reuse_vm() -> Vm {
    Vm::with_keys(config_with(json!({
        "reuse": {"min_remaining_seconds": 600},
        "tenants": {"names": ["blue"], "scope_admins": true}
    })))
}

#[test]
fn callers_without_sub_never_share_credentials() {
    let mut vm = reuse_vm();
    let no_sub = |user: &str| token(user, &["admin"], "sig-1", 0, json!({"sub": null}));
    let (a, b) = (no_sub("admin-a"), no_sub("admin-b"));
    // Concurrent: b does not wait for a's call (no coalescing).
    let (ca, _) = vm.request(&put(&a));
    let (cb, _) = vm.request(&put(&b));
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 2, "one RGW call each");
    let other_xml = OK_XML.replace("nEffVHB6D9aV8oNWipJ", "OTHERKEYOTHERKEY123");
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    vm.answer(sts[1], Some(200), other_xml.as_bytes());
    let (ra, rb) = (
        vm.host.replies_to(ca)[0].body.clone(),
        vm.host.replies_to(cb)[0].body.clone(),
    );
    assert_ne!(ra, rb);
    // Sequential: b after a's answer is stored (if it were) still mints its own.
    let (cb2, _) = vm.request(&put(&b));
    assert_eq!(vm.g.phase(cb2), Some(Phase::CallingSts));
    let (ca2, _) = vm.request(&put(&a));
    assert_eq!(vm.g.phase(ca2), Some(Phase::CallingSts));
    assert_eq!(vm.host.metric_value(Metric::Ended("reused")), 0);
    assert_eq!(vm.host.metric_value(Metric::Ended("coalesced")), 0);
    assert_eq!(vm.host.metric_value(Metric::ReuseNoSubject), 4);
    assert_eq!(vm.g.usage().reused_entries, 0);
    // Positive control: the same admins with a `sub` do reuse.
    let with_sub = token("admin-a", &["admin"], "sig-1", 0, json!({"sub": "a-1"}));
    let (c1, _) = vm.request(&put(&with_sub));
    let pending = vm.sts_pending();
    vm.answer(*pending.last().unwrap(), Some(200), OK_XML.as_bytes());
    assert_eq!(vm.status_of(c1), Some(201));
    let (c2, _) = vm.request(&put(&with_sub));
    assert_eq!(vm.status_of(c2), Some(201));
    assert_eq!(vm.host.metric_value(Metric::Ended("reused")), 1);
    assert_eq!(vm.host.metric_value(Metric::ReuseNoSubject), 4);
}

#[test]
fn reuse_hands_back_stored_credentials_while_enough_lifetime_remains() {
    let mut vm = reuse_vm();
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c1, _) = vm.request(&put(&t));
    let sts = vm.sts_pending();
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert_eq!(vm.status_of(c1), Some(201));
    // Same caller again: no RGW call, same credentials, counted as reused.
    let (c2, _) = vm.request(&put(&t));
    assert!(vm.sts_pending().is_empty());
    assert_eq!(
        vm.host.replies_to(c2)[0].body,
        vm.host.replies_to(c1)[0].body
    );
    assert_eq!(vm.host.metric_value(Metric::Ended("reused")), 1);
    // A reused answer signs no STS request.
    assert_eq!(vm.g.sts_signed_for_tests(), 1);
    // Another tenant scope is another caller.
    let (_, _) = vm.request(&headers(
        "PUT",
        "/apis/sts/token",
        Some(&t),
        &[("cray-tenant-name", "blue")],
    ));
    assert_eq!(vm.sts_pending().len(), 1);
    // Past 3600 - 600 s: minted anew.
    vm.host.now_ms += 3_001_000;
    let t2 = token("admin", &["admin"], "sig-1", 0, json!({"exp": NOW + 7200}));
    let (_, _) = vm.request(&put(&t2));
    assert_eq!(vm.sts_pending().len(), 2);
    // Every request is still verified: a non-admin of the same subject is refused.
    let u = token("user", &["user"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&put(&u));
    assert_eq!(vm.status_of(c), Some(403));
}

#[test]
fn reuse_is_off_by_default() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    for _ in 0..3 {
        let (_, _) = vm.request(&put(&t));
    }
    assert_eq!(vm.sts_pending().len(), 3);
}

#[test]
fn concurrent_requests_of_one_caller_share_one_call_even_if_its_client_leaves() {
    let mut vm = reuse_vm();
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (owner, _) = vm.request(&put(&t));
    let waiters: Vec<ContextId> = (0..5).map(|_| vm.request(&put(&t)).0).collect();
    assert_eq!(vm.sts_pending().len(), 1, "one RGW call");
    assert_eq!(vm.g.sts_signed_for_tests(), 1, "waiters sign nothing");
    // The owner's client leaves: as in Envoy, its call goes on (the root's), and it is
    // never sent a second time.
    vm.leave(owner);
    vm.leave(waiters[0]);
    vm.tick();
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1, "the same call, not a second AssumeRole");
    assert_eq!(vm.g.sts_signed_for_tests(), 1);
    assert_eq!(vm.g.usage().owners_gone, 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    for w in &waiters[1..] {
        assert_eq!(vm.status_of(*w), Some(201));
    }
    assert!(vm.host.replies_to(owner).is_empty());
    assert!(vm.host.replies_to(waiters[0]).is_empty());
    assert!(vm.host.second_replies.is_empty());
    assert_eq!(vm.host.metric_value(Metric::Ended("coalesced")), 4);
    assert_eq!(vm.host.metric_value(Metric::Ended("client_gone")), 1);
    let u = vm.g.usage();
    assert_eq!(
        (u.calls, u.call_index, u.waiters, u.minting, u.owners_gone),
        (0, 0, 0, 0, 0)
    );
    // The answer of the call whose client left was stored: the next request reuses it.
    let (c, _) = vm.request(&put(&t));
    assert_eq!(vm.status_of(c), Some(201));
    assert!(vm.sts_pending().is_empty());
}

/// A client that leaves mid-call still costs RGW its mint (Envoy does not cancel the root's
/// callout), and the answer is dropped without a reply.
#[test]
fn a_client_that_leaves_mid_call_gets_no_reply_and_its_call_still_ends() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let (c, _) = vm.request(&put(&t));
    vm.leave(c);
    assert_eq!(vm.g.phase(c), None);
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1, "the callout goes on");
    assert_eq!(vm.g.usage().calls, 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert!(vm.host.replies_to(c).is_empty());
    assert!(vm.host.second_replies.is_empty());
    assert_eq!(vm.host.metric_value(Metric::Ended("client_gone")), 1);
    assert_eq!(vm.g.usage().calls, 0);
}

/// 40 RGW calls time out in one tick: each VM call answers about `RESUME_PER_CALL` of them
/// (replies to other streams nest in Envoy), the rest on the next fast ticks.
#[test]
fn forty_timeouts_in_one_tick_are_answered_in_bounded_batches() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let ctxs: Vec<ContextId> = (0..40)
        .map(|i| {
            let t = token(&format!("admin{i}"), &["admin"], "sig-1", 0, json!({}));
            vm.request(&put(&t)).0
        })
        .collect();
    assert_eq!(vm.sts_pending().len(), 40);
    // Past the callout timeout and the slack, with no answer from the host.
    vm.host.now_ms += 60_000;
    let mut ticks = 0;
    while ctxs.iter().any(|c| vm.status_of(*c).is_none()) {
        ticks += 1;
        assert!(ticks <= 4, "answered within a few ticks");
        vm.tick();
        assert!(
            vm.host.max_deferred_per_call <= 33,
            "{}",
            vm.host.max_deferred_per_call
        );
    }
    assert!(ticks >= 2, "not all in one call");
    for c in &ctxs {
        assert_eq!(vm.status_of(*c), Some(504));
    }
    assert_eq!(vm.g.usage().calls, 0);
}

#[test]
fn a_failed_shared_call_fails_every_waiter_and_stores_nothing() {
    let mut vm = reuse_vm();
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    let ctxs: Vec<ContextId> = (0..3).map(|_| vm.request(&put(&t)).0).collect();
    let sts = vm.sts_pending();
    vm.answer(sts[0], Some(503), b"no healthy upstream");
    for c in &ctxs {
        assert_eq!(vm.status_of(*c), Some(503));
    }
    let (_, _) = vm.request(&put(&t));
    assert_eq!(vm.sts_pending().len(), 1, "nothing was stored");
}

/// Calls outlive their clients: past `MAX_CALLS_IN_FLIGHT` (1,024) calls in flight on a VM, a
/// request is answered 503 rather than piling up callouts.
#[test]
fn calls_in_flight_are_bounded() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = token("admin", &["admin"], "sig-1", 0, json!({}));
    for _ in 0..1024 {
        let (c, _) = vm.request(&put(&t));
        vm.leave(c);
    }
    assert_eq!(vm.sts_pending().len(), 1024);
    let (c, _) = vm.request(&put(&t));
    assert_eq!(vm.status_of(c), Some(503));
    assert_eq!(vm.sts_pending().len(), 1024);
    // One answer frees a place.
    let first = vm.sts_pending()[0];
    vm.answer(first, Some(200), OK_XML.as_bytes());
    let (c, _) = vm.request(&put(&t));
    assert_eq!(vm.g.phase(c), Some(Phase::CallingSts));
}

/// Two issuers, two JWKS sources: a request parked for a kid of the second issuer waits for the
/// second source's refetch. The first source's new keys (its own rotation) answer the requests
/// parked for them and leave this one waiting; before, any source's change resumed every parked
/// request, and this one got 401 although its issuer was about to publish the key.
#[test]
fn a_parked_request_waits_for_its_own_issuers_keys() {
    const ISS2: &str = "https://api-gw-service-nmn.local/mock/realms/shasta";
    let config = config_with(json!({"issuers": [
        {"issuer": ISS, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}},
        {"issuer": ISS2, "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/mock/jwks"}},
    ]}));
    let mut vm = Vm::new(config, Rc::new(MemoryStore::default()), NOW_MS);
    let fetch_of = |vm: &Vm, path: &str| {
        vm.host
            .pending
            .iter()
            .find(|(_, p)| p.cluster == "keycloak" && p.path == path)
            .map(|(t, _)| *t)
    };
    vm.tick();
    let first = fetch_of(&vm, "/jwks").expect("first source fetched");
    let second = fetch_of(&vm, "/mock/jwks").expect("second source fetched");
    vm.answer(first, Some(200), &jwks_doc(&[(0, "sig-1")]));
    vm.answer(second, Some(200), &jwks_doc(&[(0, "mock-1")]));
    vm.host.now_ms += 10_000;

    // Key 1 signs for both issuers under a kid neither has published yet.
    let theirs = token("admin", &["admin"], "mock-2", 1, json!({ "iss": ISS2 }));
    let ours = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c2, _) = vm.request(&put(&theirs));
    assert_eq!(vm.g.phase(c2), Some(Phase::Parked));
    vm.tick();
    let second = fetch_of(&vm, "/mock/jwks").expect("its issuer's keys are refetched");
    assert_eq!(fetch_of(&vm, "/jwks"), None, "no one waits for the first's");
    let (c1, _) = vm.request(&put(&ours));
    assert_eq!(vm.g.phase(c1), Some(Phase::Parked));
    vm.tick();
    let first = fetch_of(&vm, "/jwks").expect("now the first's too");

    // The first issuer's rotation lands: its request goes on, the other one keeps waiting.
    vm.answer(first, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    vm.tick();
    assert_eq!(vm.g.phase(c1), Some(Phase::CallingSts));
    assert_eq!(
        vm.g.phase(c2),
        Some(Phase::Parked),
        "{:?}",
        vm.status_of(c2)
    );
    // Its own issuer publishes the key: it mints.
    vm.answer(
        second,
        Some(200),
        &jwks_doc(&[(0, "mock-1"), (1, "mock-2")]),
    );
    vm.tick();
    assert_eq!(vm.g.phase(c2), Some(Phase::CallingSts));
    for sts in vm.sts_pending() {
        vm.answer(sts, Some(200), OK_XML.as_bytes());
    }
    assert_eq!((vm.status_of(c1), vm.status_of(c2)), (Some(201), Some(201)));
}

/// A refetch after a rotation serves stale keys (an HTTP cache, an issuer node that has not
/// seen the rotation): the new kid is refused at once only within `min_refetch_seconds` (5 s),
/// then a token signed with it may wait for a refetch again, and mints.
#[test]
fn stale_keys_after_a_rotation_refuse_the_new_kid_for_seconds_only() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.now_ms += 10_000;
    let rotated = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c, _) = vm.request(&put(&rotated));
    assert_eq!(vm.g.phase(c), Some(Phase::Parked));
    vm.tick();
    let fetch = vm.jwks_pending().expect("refetch");
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1")])); // stale
    assert_eq!(vm.status_of(c), Some(401));
    // Within the window: refused at once, no wait, no refetch.
    vm.host.now_ms += 4_000;
    let (c2, _) = vm.request(&put(&rotated));
    assert_eq!(vm.status_of(c2), Some(401), "remembered as absent");
    // Past it: the token waits for a refetch, which now serves the rotated keys.
    vm.host.now_ms += 1_001;
    let (c3, _) = vm.request(&put(&rotated));
    assert_eq!(vm.g.phase(c3), Some(Phase::Parked), "may wait again");
    vm.tick();
    let fetch = vm.jwks_pending().expect("a second refetch");
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    assert_eq!(vm.g.phase(c3), Some(Phase::CallingSts));
    let sts = vm.sts_pending();
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert_eq!(vm.status_of(c3), Some(201));
}
