//! A genuine mint through the compiled module, every step checked against what Envoy, the
//! issuer and RGW see: the JWKS fetch, the signed AssumeRole callout, the 201 body.
use sts_gateway_module_host::fixtures::{
    self, admin_token, jwks_answer, start_vm, sts_answer, token, vm_with_keys, ACCESS_KEY_ID,
    SECRET_ACCESS_KEY, STS_AKID, STS_SECRET, STS_SESSION,
};
use sts_gateway_module_host::host::Callout;
use sts_gateway_module_host::vm::{Reply, Trap, Vm};

fn ok<T>(r: Result<T, Trap>) -> T {
    r.unwrap_or_else(|t| panic!("{t}"))
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn only_pending(vm: &Vm) -> (u32, Callout) {
    let pending = vm.pending();
    assert_eq!(
        pending.len(),
        1,
        "exactly one callout: {:?}",
        vm.host().pending
    );
    let token = pending[0];
    (token, vm.host().pending[&token].clone())
}

fn put_token(vm: &mut Vm, bearer: &str) -> u32 {
    let headers = vec![(
        b"authorization".to_vec(),
        format!("Bearer {bearer}").into_bytes(),
    )];
    ok(vm.request("PUT", "/apis/sts/token", &headers, true))
}

/// The 201 body, byte for byte as the token service it replaces (src/sts/credentials.rs):
/// RGW's `Expiration` 2027-01-15T09:00:00.123456789Z in Python's isoformat (6 digits, +00:00).
fn expected_body() -> String {
    format!(
        "{{\"Credentials\": {{\"AccessKeyId\": \"{STS_AKID}\", \"EndpointURL\": \"{}\", \
         \"Expiration\": \"2027-01-15T09:00:00.123456+00:00\", \"SecretAccessKey\": \
         \"{STS_SECRET}\", \"SessionToken\": \"{STS_SESSION}\"}}}}",
        fixtures::endpoint_url()
    )
}

#[test]
fn admin_token_mints_201_with_rgw_credentials() {
    let mut vm = start_vm();
    // The first tick fetches the JWKS from the configured cluster, on the root context.
    ok(vm.tick());
    let (jwks_token, fetch) = only_pending(&vm);
    assert_eq!(fetch.cluster, fixtures::jwks_cluster());
    assert_eq!(fetch.header(":method"), Some(&b"GET"[..]));
    assert_eq!(
        fetch.header(":path"),
        Some(fixtures::jwks_path().as_bytes())
    );
    assert_eq!(fetch.dispatched_by, vm.root);
    ok(vm.answer(jwks_token, jwks_answer()));
    assert!(vm.pending().is_empty());

    let ctx = put_token(&mut vm, &admin_token());
    assert!(vm.replies(ctx).is_empty(), "waits for RGW");
    let (sts_token, call) = only_pending(&vm);
    assert_eq!(call.cluster, fixtures::rgw_cluster());
    assert_eq!(call.header(":method"), Some(&b"POST"[..]));
    assert_eq!(call.header(":authority"), Some(&b"127.0.0.1:7480"[..]));
    let authz = s(call.header("authorization").expect("SigV4 Authorization"));
    assert!(
        authz.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "signed with the token-service key from the environment: {authz}"
    );
    let body = s(&call.body);
    assert!(body.contains("Action=AssumeRole"), "{body}");
    assert!(
        body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A%3Auser%2FSTS"),
        "{body}"
    );
    let all_headers: String = call.headers.iter().map(|(n, v)| s(n) + &s(v)).collect();
    assert!(!all_headers.contains(SECRET_ACCESS_KEY) && !body.contains(SECRET_ACCESS_KEY));

    ok(vm.answer(sts_token, sts_answer()));
    let reply = match vm.replies(ctx) {
        [Reply::Local(r)] => r.clone(),
        other => panic!("one local reply, got {other:?}"),
    };
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("content-type"), Some(&b"application/json"[..]));
    assert_eq!(reply.body_str(), expected_body());
    assert!(vm.streams[&ctx].deleted, "the stream ended after its reply");
    let log: String = vm
        .host()
        .log
        .iter()
        .map(|(_, l)| l.clone() + "\n")
        .collect();
    assert!(
        !log.contains(SECRET_ACCESS_KEY) && !log.contains(STS_SECRET),
        "{log}"
    );
    assert!(
        vm.host().violations.is_empty(),
        "{:?}",
        vm.host().violations
    );
}

#[test]
fn request_before_the_first_fetch_is_503_then_mints_once_the_keys_come() {
    let mut vm = start_vm();
    let early = put_token(&mut vm, &admin_token());
    let r = vm.local_reply(early).expect("one local reply");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(vm
        .pending()
        .iter()
        .all(|t| vm.host().pending[t].cluster != fixtures::rgw_cluster()));
    ok(vm.tick());
    ok(fixtures::answer_all_good(&mut vm));
    let ctx = put_token(&mut vm, &admin_token());
    ok(fixtures::answer_all_good(&mut vm));
    let r = vm.local_reply(ctx).expect("one local reply");
    assert_eq!((r.status, r.body_str()), (201, expected_body()));
}

#[test]
fn non_admin_is_403_and_rgw_is_not_called() {
    let mut vm = vm_with_keys();
    let ctx = put_token(&mut vm, &token("user", &["user"]));
    assert!(vm.pending().is_empty(), "no AssumeRole for a non-admin");
    assert_eq!(vm.local_reply(ctx).map(|r| r.status), Some(403));
}

#[test]
fn client_that_leaves_mid_call_gets_nothing_and_the_vm_goes_on() {
    let mut vm = vm_with_keys();
    let ctx = put_token(&mut vm, &admin_token());
    let (sts_token, _) = only_pending(&vm);
    ok(vm.leave(ctx));
    assert!(vm.streams[&ctx].deleted);
    // Envoy does not cancel the callout (it belongs to the root context): its answer comes.
    ok(vm.answer(sts_token, sts_answer()));
    assert!(vm.replies(ctx).is_empty() && vm.streams[&ctx].late_replies.is_empty());
    // The next client mints.
    let next = put_token(&mut vm, &admin_token());
    ok(fixtures::answer_all_good(&mut vm));
    assert_eq!(vm.local_reply(next).map(|r| r.status), Some(201));
}

#[test]
fn host_provides_every_import_of_the_module() {
    let imports = sts_gateway_module_host::vm::module_imports();
    for name in [
        "env.proxy_log",
        "env.proxy_get_header_map_pairs",
        "env.proxy_send_local_response",
        "env.proxy_http_call",
        "env.proxy_set_effective_context",
        "wasi_snapshot_preview1.environ_get",
    ] {
        assert!(imports.iter().any(|i| i == name), "{name} in {imports:?}");
    }
    // Instantiation links every import (a missing one fails `start_vm`).
    let _ = start_vm();
}
