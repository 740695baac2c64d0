//! The rows of issue 17's table, each on the compiled module: one request with raw non-UTF-8
//! header bytes must get its documented answer, with no trap.
//!
//! On the module of commit 2c17879 (proxy-wasm 0.2.5's `String::from_utf8(..).unwrap()` on the
//! request headers) rows 1 to 4 fail with the trap; row 5 (outside the prefix) passes: the
//! filter reads only `:path` there.
use sts_gateway_module_host::fixtures::{admin_token, answer_all_good, vm_with_keys, STS_AKID};
use sts_gateway_module_host::vm::{Reply, Vm};

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn h(name: &str, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.to_vec())
}

fn bearer() -> Vec<u8> {
    format!("Bearer {}", admin_token()).into_bytes()
}

/// Sends one request on a VM whose keys are fetched, answers its callouts well, and returns
/// the VM and the stream; a trap fails the test with the module's panic message.
fn send(method: &str, path: &str, headers: Headers) -> (Vm, u32) {
    let mut vm = vm_with_keys();
    let ctx = match vm.request(method, path, &headers, true) {
        Ok(ctx) => ctx,
        Err(trap) => panic!("{trap}"),
    };
    if let Err(trap) = answer_all_good(&mut vm) {
        panic!("{trap}");
    }
    (vm, ctx)
}

fn only_local_reply(vm: &Vm, ctx: u32) -> (u32, String) {
    match vm.replies(ctx) {
        [Reply::Local(r)] => (r.status, r.body_str()),
        other => panic!("stream {ctx}: expected exactly one local reply, got {other:?}"),
    }
}

#[test]
fn row1_healthz_with_latin1_user_agent_is_200() {
    let (vm, ctx) = send(
        "GET",
        "/apis/sts/healthz",
        vec![h("user-agent", b"Mozilla/5.0 \xa1\xb1")],
    );
    let (status, _) = only_local_reply(&vm, ctx);
    assert_eq!(status, 200);
}

#[test]
fn row2_token_with_non_utf8_unused_header_mints() {
    let (vm, ctx) = send(
        "PUT",
        "/apis/sts/token",
        vec![h("authorization", &bearer()), h("x-note", b"\xff\xfe")],
    );
    let (status, body) = only_local_reply(&vm, ctx);
    assert_eq!(status, 201, "body: {body}");
    assert!(
        body.contains(STS_AKID),
        "the credentials RGW issued: {body}"
    );
}

#[test]
fn row3_token_with_latin1_tenant_is_refused() {
    let (vm, ctx) = send(
        "PUT",
        "/apis/sts/token",
        vec![
            h("authorization", &bearer()),
            h("cray-tenant-name", b"bl\xfce"),
        ],
    );
    let (status, body) = only_local_reply(&vm, ctx);
    assert!(
        status == 403 || status == 400,
        "a tenant name that is not UTF-8: 403 or 400, got {status} {body}"
    );
    assert!(vm.host().pending.is_empty() && !body.contains(STS_AKID));
}

#[test]
fn row4_token_with_invalid_utf8_in_authorization_is_401() {
    let (vm, ctx) = send(
        "PUT",
        "/apis/sts/token",
        vec![h(
            "authorization",
            b"Bearer \xc3\x28eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        )],
    );
    let (status, body) = only_local_reply(&vm, ctx);
    assert_eq!(status, 401, "body: {body}");
}

#[test]
fn row5_outside_the_prefix_continues() {
    let (vm, ctx) = send(
        "GET",
        "/keycloak/realms/shasta/protocol/openid-connect/certs",
        vec![h("user-agent", b"caf\xe9")],
    );
    assert_eq!(vm.replies(ctx), &[Reply::Continue]);
}
