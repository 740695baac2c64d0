//! `GET /apis/sts/credentials` (the AWS container-credentials endpoint) through the whole
//! lifecycle on the simulated host: its body, its token and tenant forms, its errors (the token
//! route's), its metrics, and that a parked request still answers in its own format.
use serde_json::json;

use crate::gateway::lifecycle::tests::{config_with, headers, jwks_doc, token, Vm, OK_XML};
use crate::gateway::lifecycle::{Action, Phase};
use crate::host::metrics::Metric;
use crate::host::ContextId;

const CREDS: &str = "/apis/sts/credentials";
const CONTAINER_BODY: &str = "{\"AccessKeyId\": \"nEffVHB6D9aV8oNWipJ\", \"SecretAccessKey\": \"EJBVsecret\", \"Token\": \"7MSXtoken\", \"Expiration\": \"2026-11-30T00:57:59Z\"}";

fn admin() -> String {
    token("admin", &["admin"], "sig-1", 0, json!({}))
}

/// `GET credentials` with `Authorization: <value>` as given (bare or `Bearer ..`).
fn get(path: &str, authorization: Option<&str>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = headers("GET", path, None, extra);
    if let Some(a) = authorization {
        h.push(("authorization".into(), a.to_string()));
    }
    h
}

/// Status, headers and body of the one reply to `ctx`.
fn reply_of(vm: &Vm, ctx: ContextId) -> (u32, Vec<(&'static str, String)>, String) {
    let replies = vm.host.replies_to(ctx);
    assert_eq!(replies.len(), 1, "exactly one reply");
    let r = replies[0];
    (
        r.status,
        r.headers.clone(),
        String::from_utf8(r.body.clone()).unwrap(),
    )
}

/// Sends the request, answers its STS callout with `OK_XML`, returns the reply.
fn mint(vm: &mut Vm, h: &[(String, String)]) -> (u32, Vec<(&'static str, String)>, String) {
    let (c, a) = vm.request(h);
    assert_eq!(a, Action::Pause);
    assert_eq!(
        vm.g.phase(c),
        Some(Phase::CallingSts),
        "{:?}",
        vm.host.replies_to(c)
    );
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    reply_of(vm, c)
}

#[test]
fn bare_and_bearer_tokens_get_the_container_format() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = admin();
    for authorization in [t.clone(), format!("Bearer {t}"), format!("bearer {t}")] {
        let (status, headers, body) = mint(&mut vm, &get(CREDS, Some(&authorization), &[]));
        assert_eq!(status, 200);
        assert_eq!(body, CONTAINER_BODY);
        assert!(headers.contains(&("content-type", "application/json".into())));
        assert!(headers.contains(&("cache-control", "no-store".into())));
    }
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 3);
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("minted")), 3);
}

#[test]
fn token_route_is_unchanged_and_not_counted_as_credentials() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = admin();
    let (status, _, body) = mint(&mut vm, &headers("PUT", "/apis/sts/token", Some(&t), &[]));
    assert_eq!(status, 201);
    assert!(
        body.starts_with("{\"Credentials\": {\"AccessKeyId\""),
        "{body}"
    );
    // The bare JWT is not a bearer token there; the query names a tenant as on the
    // credentials route, so one that differs from the header is a 400.
    let bare = vec![
        (":method".to_string(), "PUT".to_string()),
        (":path".to_string(), "/apis/sts/token".to_string()),
        ("authorization".to_string(), t.clone()),
    ];
    let (c, _) = vm.request(&bare);
    assert_eq!(vm.status_of(c), Some(401));
    let (c, _) = vm.request(&headers(
        "PUT",
        "/apis/sts/token?tenant=other",
        Some(&t),
        &[("cray-tenant-name", "vcluster-blue")],
    ));
    assert_eq!(vm.status_of(c), Some(400));
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("missing")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("bad_request")), 1);
    for r in crate::host::metrics::CREDENTIALS_REASONS {
        assert_eq!(vm.host.metric_value(Metric::CredentialsEnded(r)), 0, "{r}");
    }
}

#[test]
fn other_methods_are_405_with_allow_get() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    for m in ["PUT", "POST", "DELETE", "HEAD"] {
        let (c, a) = vm.request(&headers(m, CREDS, Some(&admin()), &[]));
        assert_eq!(a, Action::Pause);
        let (status, headers, body) = reply_of(&vm, c);
        assert_eq!(status, 405, "{m}");
        assert!(headers.contains(&("allow", "GET".into())), "{headers:?}");
        assert!(body.contains("use GET"), "{body}");
    }
    assert!(vm.sts_pending().is_empty());
}

#[test]
fn errors_are_the_token_routes() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let user = token("user", &["user"], "sig-1", 0, json!({}));
    let expired = token("admin", &["admin"], "sig-1", 0, json!({"exp": 1}));
    let forged = token("admin", &["admin"], "sig-1", 1, json!({}));
    for (t, status) in [
        (None, 401),
        (Some(user.as_str()), 403),
        (Some(expired.as_str()), 401),
        (Some(forged.as_str()), 401),
        (Some("a.b.c"), 401),
    ] {
        let (c1, _) = vm.request(&headers("PUT", "/apis/sts/token", t, &[]));
        let (c2, _) = vm.request(&headers("GET", CREDS, t, &[]));
        let on_token = reply_of(&vm, c1);
        assert_eq!(on_token.0, status, "{}", on_token.2);
        assert_eq!(reply_of(&vm, c2), on_token, "same status, headers and body");
    }
    // RGW's refusal and outages too.
    let denied = "<Error><Code>AccessDenied</Code></Error>";
    for (rgw_status, body) in [(Some(403), denied), (Some(503), "x"), (None, "")] {
        let mut replies = Vec::new();
        for h in [
            headers("PUT", "/apis/sts/token", Some(&admin()), &[]),
            headers("GET", CREDS, Some(&admin()), &[]),
        ] {
            let (c, _) = vm.request(&h);
            let sts = vm.sts_pending();
            vm.answer(sts[0], rgw_status, body.as_bytes());
            replies.push(reply_of(&vm, c));
        }
        assert!(replies[0].0 >= 500, "{replies:?}");
        assert_eq!(replies[0], replies[1]);
    }
    assert_eq!(
        vm.host.metric_value(Metric::CredentialsEnded("forbidden")),
        1
    );
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("missing")), 1);
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("invalid")), 2);
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("expired")), 1);
    assert_eq!(
        vm.host.metric_value(Metric::CredentialsEnded("rgw_error")),
        1
    );
    assert_eq!(vm.host.metric_value(Metric::Ended("forbidden")), 2);
}

#[test]
fn tenant_query_means_the_header() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = admin();
    let bearer = format!("Bearer {t}");
    // Alone, or equal to the header (also percent-encoded): the request goes on.
    for (path, header) in [
        ("/apis/sts/credentials?tenant=vcluster-blue", None),
        ("/apis/sts/credentials?x=1&tenant=vcluster-blue&y", None),
        ("/apis/sts/credentials?tenant=vcluster%2Dblue", None),
        (
            "/apis/sts/credentials?tenant=vcluster-blue",
            Some("vcluster-blue"),
        ),
        ("/apis/sts/credentials?tenants=x", Some("vcluster-blue")),
    ] {
        let extra: Vec<(&str, &str)> = header
            .map(|h| ("cray-tenant-name", h))
            .into_iter()
            .collect();
        let (status, _, body) = mint(&mut vm, &get(path, Some(&bearer), &extra));
        assert_eq!((status, body.as_str()), (200, CONTAINER_BODY), "{path}");
    }
    // Different from the header, or given twice: 400 problem+json, no RGW call.
    for (path, header) in [
        (
            "/apis/sts/credentials?tenant=vcluster-red",
            Some("vcluster-blue"),
        ),
        ("/apis/sts/credentials?tenant=", Some("vcluster-blue")),
        (
            "/apis/sts/credentials?tenant=vcluster-blue&tenant=vcluster-blue",
            None,
        ),
    ] {
        let extra: Vec<(&str, &str)> = header
            .map(|h| ("cray-tenant-name", h))
            .into_iter()
            .collect();
        let (c, _) = vm.request(&get(path, Some(&bearer), &extra));
        let (status, headers, body) = reply_of(&vm, c);
        assert_eq!(status, 400, "{path}");
        assert!(headers.contains(&("content-type", "application/problem+json".into())));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["status"].as_u64(), v["title"].as_str()),
            (Some(400), Some("Bad Request"))
        );
        assert!(!body.contains(&t), "no token in the body");
        assert!(vm.sts_pending().is_empty());
    }
    assert_eq!(vm.host.metric_value(Metric::Ended("bad_request")), 3);
    assert_eq!(
        vm.host
            .metric_value(Metric::CredentialsEnded("bad_request")),
        3
    );
    // A missing token is still the first thing said.
    let (c, _) = vm.request(&get(
        "/apis/sts/credentials?tenant=a",
        None,
        &[("cray-tenant-name", "b")],
    ));
    assert_eq!(vm.status_of(c), Some(401));
}

#[test]
fn invalid_tenant_in_the_query_is_refused_like_the_header() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    let t = admin();
    for bad in ["Not_A_Label", "-x-", "a%20b", "x+y", &"a".repeat(300)] {
        let decoded = bad.replace("%20", " ").replace('+', " ");
        let (c1, _) = vm.request(&headers(
            "PUT",
            "/apis/sts/token",
            Some(&t),
            &[("cray-tenant-name", &decoded)],
        ));
        let (c2, _) = vm.request(&get(&format!("{CREDS}?tenant={bad}"), Some(&t), &[]));
        let (c3, _) = vm.request(&get(CREDS, Some(&t), &[("cray-tenant-name", &decoded)]));
        let on_token = reply_of(&vm, c1);
        assert!((400..500).contains(&on_token.0), "{bad}: {on_token:?}");
        assert_eq!(reply_of(&vm, c2), on_token, "{bad}");
        assert_eq!(reply_of(&vm, c3), on_token, "{bad}");
    }
    assert!(vm.sts_pending().is_empty());
}

#[test]
fn parked_credentials_request_answers_in_its_format() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    vm.host.now_ms += 10_000; // refetch budget available
    let rotated = token("admin", &["admin"], "sig-2", 1, json!({}));
    let (c_creds, _) = vm.request(&get(CREDS, Some(&rotated), &[]));
    let (c_token, _) = vm.request(&headers("PUT", "/apis/sts/token", Some(&rotated), &[]));
    assert_eq!(vm.g.phase(c_creds), Some(Phase::Parked));
    assert_eq!(vm.g.phase(c_token), Some(Phase::Parked));
    vm.tick();
    let fetch = vm.jwks_pending().expect("root refetches");
    vm.answer(fetch, Some(200), &jwks_doc(&[(0, "sig-1"), (1, "sig-2")]));
    for _ in 0..10 {
        vm.tick();
    }
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 2);
    for s in sts {
        vm.answer(s, Some(200), OK_XML.as_bytes());
    }
    let (status, _, body) = reply_of(&vm, c_creds);
    assert_eq!((status, body.as_str()), (200, CONTAINER_BODY));
    let (status, _, body) = reply_of(&vm, c_token);
    assert_eq!(status, 201);
    assert!(body.contains("\"SessionToken\""), "{body}");
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("minted")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("minted")), 2);
}

#[test]
fn client_gone_and_timeouts_count_for_the_endpoint() {
    let mut vm = Vm::with_keys(config_with(json!({})));
    // RGW never answers: the backstop's 504 is the credentials request's too.
    let (c, _) = vm.request(&get(CREDS, Some(&admin()), &[]));
    vm.host.pending.clear();
    vm.host.now_ms += 60_000;
    vm.tick();
    assert_eq!(vm.status_of(c), Some(504));
    assert_eq!(
        vm.host
            .metric_value(Metric::CredentialsEnded("rgw_timeout")),
        1
    );
    // The client leaves before the answer is delivered.
    let (c, _) = vm.request(&get(CREDS, Some(&admin()), &[]));
    let sts = vm.sts_pending();
    vm.host.live.remove(&c);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    assert_eq!(
        vm.host
            .metric_value(Metric::CredentialsEnded("client_gone")),
        1
    );
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("minted")), 0);
}

/// Opt-in reuse: requests of one caller through both endpoints share one RGW call and stored
/// credentials, and each gets its own endpoint's format, also when a waiter takes the call over.
#[test]
fn reuse_and_coalescing_answer_each_endpoint_in_its_format() {
    let mut vm = Vm::with_keys(config_with(
        json!({"reuse": {"min_remaining_seconds": 600}}),
    ));
    let t = admin();
    let (owner, _) = vm.request(&headers("PUT", "/apis/sts/token", Some(&t), &[]));
    let (w_creds, _) = vm.request(&get(CREDS, Some(&t), &[]));
    let (w_token, _) = vm.request(&headers("PUT", "/apis/sts/token", Some(&t), &[]));
    let (w_creds2, _) = vm.request(&get(CREDS, Some(&t), &[]));
    assert_eq!(vm.sts_pending().len(), 1, "one RGW call for all four");
    // The owner leaves; its call goes on and answers the waiters, each in its format.
    vm.leave(owner);
    vm.tick();
    let sts = vm.sts_pending();
    assert_eq!(sts.len(), 1);
    vm.answer(sts[0], Some(200), OK_XML.as_bytes());
    for c in [w_creds, w_creds2] {
        let (status, _, body) = reply_of(&vm, c);
        assert_eq!((status, body.as_str()), (200, CONTAINER_BODY));
    }
    let (status, _, body) = reply_of(&vm, w_token);
    assert_eq!(status, 201);
    assert!(body.contains("\"SessionToken\": \"7MSXtoken\""), "{body}");
    // Stored credentials are handed out again in the asker's format.
    let (c, _) = vm.request(&get(CREDS, Some(&t), &[]));
    assert!(vm.sts_pending().is_empty());
    assert_eq!(reply_of(&vm, c), reply_of(&vm, w_creds));
    // The owner left: every waiter's answer is a coalesced one, and nothing was sent twice.
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("minted")), 0);
    assert_eq!(
        vm.host.metric_value(Metric::CredentialsEnded("coalesced")),
        2
    );
    assert_eq!(vm.host.metric_value(Metric::CredentialsEnded("reused")), 1);
    assert_eq!(vm.host.metric_value(Metric::Ended("coalesced")), 3);
    assert_eq!(vm.host.metric_value(Metric::Ended("client_gone")), 1);
    assert_eq!(vm.g.sts_signed_for_tests(), 1);
}
