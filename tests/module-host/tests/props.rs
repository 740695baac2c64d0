//! The property of `scenario::run` over arbitrary event sequences, on the compiled module:
//! requests with arbitrary header names, values (non-UTF-8 bytes included) and counts, on
//! every endpoint under the prefix and outside it; callout answers of any status, headers and
//! body, resets and timeouts, in any order; clients that leave at any point; ticks.
//!
//! `MODULE_CASES` sets the number of sequences (default 128, `make module-test`).
use proptest::collection::vec;
use proptest::prelude::*;
use std::cell::RefCell;
use std::time::Instant;

use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use sts_gateway_module_host::fixtures;
use sts_gateway_module_host::scenario::{run, AnswerSpec, Op, Outcome, Request, Target};

/// Bytes Envoy's codecs deliver in a header value: anything but NUL, CR and LF (Envoy's
/// `HeaderString` refuses those three; HTTP/1.1 obs-text 0x80-0xff passes unchanged).
fn value() -> impl Strategy<Value = Vec<u8>> {
    let clean = |v: Vec<u8>| -> Vec<u8> {
        v.into_iter()
            .map(|b| {
                if matches!(b, 0 | b'\r' | b'\n') {
                    b' '
                } else {
                    b
                }
            })
            .collect()
    };
    prop_oneof![
        4 => vec(any::<u8>(), 0..48).prop_map(clean),
        2 => "[ -~]{0,40}".prop_map(String::into_bytes),
        1 => prop_oneof![
            Just(b"Mozilla/5.0 \xa1\xb1".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            Just(b"caf\xe9".to_vec()),
            Just(b"bl\xfce".to_vec()),
            Just(b"\xc3\x28".to_vec()),
            Just(Vec::new()),
        ],
        1 => vec(any::<u8>(), 0..4000).prop_map(clean),
    ]
}

/// Header names as Envoy's codecs deliver them: RFC 9110 tokens (Envoy's Balsa parser refuses
/// other bytes with a 400 before any filter runs: `kValidCharacters` in
/// source/common/http/http1/balsa_parser.cc), in lower case; and the names the filter reads.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => "[a-z0-9!#$%&'*+.^_`|~-]{1,24}".prop_map(String::into_bytes),
        2 => prop_oneof![
            Just(b"authorization".to_vec()),
            Just(b"cray-tenant-name".to_vec()),
            Just(b"x-forwarded-access-token".to_vec()),
            Just(b"user-agent".to_vec()),
            Just(b"x-request-id".to_vec()),
        ],
    ]
}

fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    prop_oneof![
        6 => vec((name(), value()), 0..6),
        1 => vec((name(), value()), 0..100),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("PUT".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        "[A-Z]{1,8}",
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        2 => Just(Target::Healthz),
        3 => Just(Target::Token),
        2 => prop_oneof![
            value(),
            value().prop_map(|v| [b"Bearer ".to_vec(), v].concat()),
        ].prop_map(Target::TokenAuthorization),
        2 => value().prop_map(Target::TokenTenant),
        1 => Just(Target::Credentials),
        2 => (method(), prop_oneof![
            Just("healthz".to_string()),
            Just("token".to_string()),
            Just("credentials".to_string()),
            Just("credentials?tenant=t1".to_string()),
            "[!-~]{0,24}".prop_map(|s| s.replace('#', "")),
        ]).prop_map(|(method, rest)| Target::Under { method, rest }),
        2 => (method(), prop_oneof![
            Just("/keycloak/realms/shasta/protocol/openid-connect/certs".to_string()),
            Just("/plain/healthz".to_string()),
            Just("/apis/stsx".to_string()),
            "/[!-~]{0,24}".prop_map(|s| s.replace('#', "")),
        ]).prop_map(|(method, path)| Target::Outside { method, path }),
    ]
}

fn answer() -> impl Strategy<Value = AnswerSpec> {
    prop_oneof![
        5 => Just(AnswerSpec::Good),
        1 => Just(AnswerSpec::Reset),
        1 => Just(AnswerSpec::Timeout),
        3 => (
            prop_oneof![Just(200u16), Just(403), Just(500), 100u16..600],
            headers(),
            prop_oneof![
                vec(any::<u8>(), 0..300),
                Just(fixtures::jwks_json().into_bytes()),
                Just(fixtures::sts_xml().into_bytes()),
                Just(fixtures::sts_xml().replace("AKID", "\u{e9}").into_bytes()),
            ],
        ).prop_map(|(status, headers, body)| AnswerSpec::Raw { status, headers, body }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (target(), headers(), any::<bool>()).prop_map(|(target, headers, end_of_stream)| {
            Op::Request(Request { target, headers, end_of_stream })
        }),
        2 => (0u32..3000).prop_map(|advance_ms| Op::Tick { advance_ms }),
        4 => (any::<usize>(), answer()).prop_map(|(pick, answer)| Op::Answer { pick, answer }),
        2 => any::<usize>().prop_map(|pick| Op::Leave { pick }),
        1 => Just(Op::RefuseNextDispatch),
        1 => Just(Op::Switch),
    ]
}

/// Most sequences start on a VM whose keys are fetched (the first tick and its answer), so
/// requests reach verification, RGW and the 201; the others start cold (503 until the keys).
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (proptest::bool::weighted(0.75), vec(op(), 1..32)).prop_map(|(warm, ops)| {
        let start = [
            Op::Tick { advance_ms: 0 },
            Op::Answer {
                pick: 0,
                answer: AnswerSpec::Good,
            },
        ];
        if warm {
            start.into_iter().chain(ops).collect()
        } else {
            ops
        }
    })
}

fn cases() -> u32 {
    std::env::var("MODULE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

#[test]
fn never_traps_and_every_request_gets_exactly_one_reply() {
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/props.regressions"
        )))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let totals = RefCell::new(Outcome::default());
    let started = Instant::now();
    let result = runner.run(&ops(), |ops| {
        let out = run(&ops).map_err(TestCaseError::fail)?;
        let mut t = totals.borrow_mut();
        t.requests += out.requests;
        t.local_replies += out.local_replies;
        t.continues += out.continues;
        t.left += out.left;
        t.callouts_answered += out.callouts_answered;
        for (s, n) in out.statuses {
            *t.statuses.entry(s).or_insert(0) += n;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = totals.into_inner();
    println!(
        "{} sequences in {:.1}s: {} requests, {} local replies {:?}, {} continued, {} clients \
         left, {} callouts answered",
        cases(),
        started.elapsed().as_secs_f64(),
        t.requests,
        t.local_replies,
        t.statuses,
        t.continues,
        t.left,
        t.callouts_answered
    );
    // The runs reach the deep paths: credentials minted through RGW, refusals, pass-through.
    if cases() >= 64 {
        for status in [200, 201, 401] {
            assert!(
                t.statuses.get(&status).copied().unwrap_or(0) > 0,
                "no {status}: {t:?}"
            );
        }
        assert!(t.continues > 0 && t.left > 0, "{t:?}");
    }
}
