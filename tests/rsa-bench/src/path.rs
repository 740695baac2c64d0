//! The gateway's request path in V8 with the simulated host (`--features path`): a cached token
//! minting through a simulated RGW answer (scenario b) and with reuse on (scenario f). Prints
//! microseconds per request; the host is a few hash-map operations, so this is the filter's own
//! share of Envoy's CPU per request.
use std::rc::Rc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sts_gateway::config::Config;
use sts_gateway::token::jwks_store::MemoryStore;
use sts_gateway::gateway::lifecycle::{Action, Gateway};
use sts_gateway::host::sim::SimHost;

const OK_XML: &str = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>nEffVHB6D9aV8oNWipJ</AccessKeyId><Expiration>2030-11-30T00:57:59.260716106Z</Expiration><SecretAccessKey>EJBVsecretEJBVsecretEJBVsecret</SecretAccessKey><SessionToken>7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken7MSXtoken</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>";

fn gateway(reuse: bool) -> (Gateway, SimHost) {
    #[allow(unused_mut)]
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    #[cfg(feature = "pathc")]
    extra.push(("g".into(), include_bytes!(concat!(env!("CTOK_DIR"), "/n.bin")).to_vec()));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    gateway_with(reuse, &extra, now_ms)
}

/// The gateway with its JWKS loaded: the harness's key "k" plus `extra` (kid, modulus), with the
/// simulated host's clock at `now_ms`.
pub(crate) fn gateway_with(reuse: bool, extra: &[(String, Vec<u8>)], now_ms: u64) -> (Gateway, SimHost) {
    let mut v = serde_json::json!({
        "issuers": [{"issuer": "https://issuer.example", "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
        "allow_any_authenticated": true, "rules": [], "audience": "sts",
        "rgw": {"cluster": "rgw", "authority": "rgw.local:8080", "endpoint_url": "http://rgw.local:8080",
                "role_arn": "arn:aws:iam:::user/STS", "access_key_id": "AKIDSTS", "secret_access_key": "SECRETSTS"}
    });
    if reuse {
        v["reuse"] = serde_json::json!({"min_remaining_seconds": 600});
    }
    let config = Config::parse(v.to_string().as_bytes(), &|_| None).unwrap();
    let mut g = Gateway::new(config);
    let mut host = SimHost::new(Rc::new(MemoryStore::default()), now_ms);
    host.enter(1);
    g.on_tick(&mut host, 1 << 20);
    let token = *host.pending.keys().next().expect("JWKS fetch");
    host.pending.remove(&token);
    let n = URL_SAFE_NO_PAD.encode(include_bytes!("../data/n2048.bin"));
    let mut keys = vec![serde_json::json!({"kty": "RSA", "kid": "k", "n": n, "e": "AQAB"})];
    for (kid, n) in extra {
        keys.push(serde_json::json!({"kty": "RSA", "kid": kid, "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(n)}));
    }
    let doc = serde_json::json!({ "keys": keys }).to_string();
    host.set_answer(Some(200), doc.as_bytes());
    g.on_callout_answer(&mut host, token, 1, doc.len());
    g.on_tick(&mut host, 1 << 20);
    (g, host)
}

/// One request from arrival to the end of its stream; panics unless it got a 201.
pub(crate) fn mint(g: &mut Gateway, host: &mut SimHost, ctx: u32, headers: &[(String, String)]) {
    host.live.insert(ctx);
    host.enter(ctx);
    if let Action::Pause = g.on_request(host, ctx, headers) {
        if let Some(token) = host.pending.keys().next().copied() {
            host.pending.remove(&token);
            host.set_answer(Some(200), OK_XML.as_bytes());
            g.on_callout_answer(host, token, 1, OK_XML.len());
        }
    }
    let (_, reply) = host.replies.pop().expect("a reply");
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    host.live.remove(&ctx);
    for ended in std::mem::take(&mut host.ended) {
        g.on_stream_end(host, ended);
    }
    g.on_stream_end(host, ctx);
}

pub(crate) fn bearer(token: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), "PUT".into()),
        (":path".into(), "/apis/sts/token".into()),
        (":authority".into(), "api-gw-service-nmn.local".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("user-agent".into(), "wrk".into()),
    ]
}

/// Scenario c: a new issuer-shaped token (1.15 KB) on every request, against b and f with one of
/// them cached.
#[cfg(feature = "pathc")]
fn scenario_c() {
    let tokens: Vec<&str> = include_str!(concat!(env!("CTOK_DIR"), "/tokens.txt"))
        .lines()
        .collect();
    let one = bearer(tokens[0]);
    let only_c = std::env::args().nth(1).as_deref() == Some("c");
    for (name, reuse) in [("b1 (issuer-shaped token, cached)", false), ("f1 (issuer-shaped token, reuse)", true)] {
        if only_c {
            continue;
        }
        let (mut g, mut host) = gateway(reuse);
        let mut ctx = 100;
        for _ in 0..2000 {
            mint(&mut g, &mut host, ctx, &one);
            ctx += 1;
        }
        let mut best = f64::MAX;
        for _ in 0..100 {
            let t = Instant::now();
            for _ in 0..200 {
                mint(&mut g, &mut host, ctx, &one);
                ctx += 1;
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        println!("{name}: {best:.1} us/request");
    }
    let (mut g, mut host) = gateway(false);
    let mut ctx = 100;
    let mut best = f64::MAX;
    for (i, chunk) in tokens.chunks(100).enumerate() {
        let headers: Vec<_> = chunk.iter().map(|t| bearer(t)).collect();
        let t = Instant::now();
        for h in &headers {
            mint(&mut g, &mut host, ctx, h);
            ctx += 1;
        }
        if i >= 5 {
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / chunk.len() as f64);
        }
    }
    println!("c (a new issuer-shaped token per request): {best:.1} us/request");
}

pub fn run() {
    #[cfg(feature = "pathc")]
    {
        scenario_c();
        if std::env::args().nth(1).as_deref() == Some("c") {
            return;
        }
    }
    {
        use sha2::{Digest, Sha256};
        let data = vec![b'a'; 1024];
        let mut best = f64::MAX;
        for _ in 0..30 {
            let t = Instant::now();
            for _ in 0..200 {
                std::hint::black_box(Sha256::digest(std::hint::black_box(&data)));
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        println!("sha256 of 1 KiB: {best:.2} us");
    }
    let token = include_str!("../data/token2048.txt").trim();
    let headers: Vec<(String, String)> = vec![
        (":method".into(), "PUT".into()),
        (":path".into(), "/apis/sts/token".into()),
        (":authority".into(), "api-gw-service-nmn.local".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("user-agent".into(), "wrk".into()),
    ];
    let only = std::env::args().nth(1);
    for (name, reuse) in [("b (mint, cached token)", false), ("f (reuse)", true)] {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        let (mut g, mut host) = gateway(reuse);
        let mut ctx = 100;
        for _ in 0..2000 {
            mint(&mut g, &mut host, ctx, &headers);
            ctx += 1;
        }
        let mut best = f64::MAX;
        for _ in 0..300 {
            let t = Instant::now();
            for _ in 0..200 {
                mint(&mut g, &mut host, ctx, &headers);
                ctx += 1;
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        println!("{name}: {best:.1} us/request");
    }
}
