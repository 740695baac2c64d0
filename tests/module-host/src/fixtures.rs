//! The world around the module: the plugin configuration of `envoy/envoy.yaml`, the token-service
//! keys in the environment, an issuer key that signs JWTs and its JWKS, RGW's AssumeRole answer.
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::host::SharedData;
use crate::vm::{Answer, Setup, Vm};

/// 2027-01-15T08:00:00Z: the host clock of every VM at start.
pub const NOW_MS: u64 = 1_800_000_000_000;

/// The local stack's DEV-ONLY token-service keys (envoy/envoy.yaml's comment).
pub const ACCESS_KEY_ID: &str = "DEVONLYSTSACCESSKEY1";
pub const SECRET_ACCESS_KEY: &str = "DevOnlyStsSecretKeyDoNotUseAnywhere00000";

pub const KID: &str = "harness-1";
/// A test RSA key (the fuzz crate's; never used outside tests).
const KEY_PEM: &str = include_str!("../../fuzz/src/fuzz_key.pem");

fn envoy_yaml_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../envoy/envoy.yaml")
}

/// The wasm filter's `configuration.value` in envoy/envoy.yaml (the block after `value: |`).
pub fn plugin_config() -> &'static str {
    static C: OnceLock<String> = OnceLock::new();
    C.get_or_init(|| {
        let path = envoy_yaml_path();
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut lines = yaml
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("configuration:"));
        let value_line = lines
            .find(|l| l.trim_start().starts_with("value: |"))
            .expect("configuration.value block in envoy/envoy.yaml");
        let indent = value_line.len() - value_line.trim_start().len();
        let block: Vec<&str> = lines
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .collect();
        let strip = block
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let text: Vec<&str> = block.iter().map(|l| l.get(strip..).unwrap_or("")).collect();
        let text = text.join("\n");
        serde_json::from_str::<Value>(&text).expect("the plugin configuration is JSON");
        text
    })
}

pub fn config_json() -> Value {
    serde_json::from_str(plugin_config()).expect("JSON")
}

/// The prefix the filter answers under (`prefix` of the configuration).
pub fn prefix() -> String {
    config_json()["prefix"]
        .as_str()
        .unwrap_or("/apis/sts/")
        .to_string()
}

pub fn issuer() -> String {
    config_json()["issuers"][0]["issuer"]
        .as_str()
        .expect("issuer")
        .to_string()
}

pub fn audience() -> String {
    config_json()["audience"]
        .as_str()
        .expect("audience")
        .to_string()
}

pub fn jwks_cluster() -> String {
    config_json()["issuers"][0]["jwks"]["cluster"]
        .as_str()
        .expect("jwks cluster")
        .to_string()
}

/// The JWKS path of the first issuer (envoy/envoy.yaml: Keycloak's certs path).
pub fn jwks_path() -> String {
    config_json()["issuers"][0]["jwks"]["path"]
        .as_str()
        .expect("jwks path")
        .to_string()
}

pub fn rgw_cluster() -> String {
    config_json()["rgw"]["cluster"]
        .as_str()
        .expect("rgw cluster")
        .to_string()
}

pub fn endpoint_url() -> String {
    config_json()["rgw"]["endpoint_url"]
        .as_str()
        .expect("endpoint_url")
        .to_string()
}

/// What Envoy gives each VM here: the configuration above, the keys through WASI environ
/// (`vm_config.environment_variables.host_env_keys`), the two clusters, the clock.
pub fn setup(shared: Rc<RefCell<SharedData>>) -> Setup {
    Setup {
        plugin_config: plugin_config().as_bytes().to_vec(),
        env: vec![
            ("STS_GATEWAY_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            (
                "STS_GATEWAY_SECRET_ACCESS_KEY".into(),
                SECRET_ACCESS_KEY.into(),
            ),
        ],
        clusters: vec![jwks_cluster(), rgw_cluster()],
        now_ms: NOW_MS,
        shared,
    }
}

/// A VM started with [`setup`] and its own shared data.
pub fn start_vm() -> Vm {
    start_vm_with(Rc::new(RefCell::new(SharedData::default())))
}

/// A VM started with [`setup`] on `shared` (another worker's shared data).
pub fn start_vm_with(shared: Rc<RefCell<SharedData>>) -> Vm {
    match Vm::start(&setup(shared)) {
        Ok(vm) => vm,
        Err(e) => panic!("the module did not start: {e}"),
    }
}

fn keypair() -> &'static RS256KeyPair {
    static K: OnceLock<RS256KeyPair> = OnceLock::new();
    K.get_or_init(|| {
        RS256KeyPair::from_pem(KEY_PEM)
            .expect("test key")
            .with_key_id(KID)
    })
}

/// The issuer's JWKS: the test key as Keycloak publishes it.
pub fn jwks_json() -> String {
    let c = keypair().public_key().to_components();
    json!({"keys": [{
        "kid": KID, "kty": "RSA", "alg": "RS256", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e),
    }]})
    .to_string()
}

/// A JWT of the configured issuer and audience, valid for an hour from [`NOW_MS`], for user
/// `user` with the `shasta` client roles `roles` (`admin` may mint).
pub fn token(user: &str, roles: &[&str]) -> String {
    let custom = json!({
        "preferred_username": user,
        "resource_access": {"shasta": {"roles": roles}},
    });
    let now = NOW_MS / 1000;
    let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(3600))
        .with_issuer(issuer())
        .with_audience(audience())
        .with_subject(format!("sub-{user}"));
    // jwt-simple stamps its own clock: the host clock of the VMs is NOW_MS.
    claims.issued_at = Some(Duration::from_secs(now - 10));
    claims.invalid_before = Some(Duration::from_secs(now - 10));
    claims.expires_at = Some(Duration::from_secs(now + 3600));
    keypair().sign(claims).expect("sign")
}

/// An admin's token (signed once per process).
pub fn admin_token() -> String {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| token("admin", &["admin"])).clone()
}

/// The JWKS answer.
pub fn jwks_answer() -> Answer {
    Answer::status(
        200,
        &[("content-type", b"application/json")],
        jwks_json().as_bytes(),
    )
}

/// Credentials RGW issues in [`sts_answer`].
pub const STS_AKID: &str = "HARNESSAKID0000000001";
pub const STS_SECRET: &str = "harness/secret+key=0000000000000000000000";
pub const STS_SESSION: &str = "harness-session-token==";
pub const STS_EXPIRATION: &str = "2027-01-15T09:00:00.123456789Z";

/// RGW's AssumeRole answer (the shape of src/sts/response.rs's sample: no namespace).
pub fn sts_xml() -> String {
    format!(
        "<AssumeRoleResponse><AssumeRoleResult><AssumedRoleUser><Arn>arn:aws:sts:::assumed-role/STS/s</Arn>\
         <AssumedRoleId>STS:s</AssumedRoleId></AssumedRoleUser><Credentials>\
         <AccessKeyId>{STS_AKID}</AccessKeyId><Expiration>{STS_EXPIRATION}</Expiration>\
         <SecretAccessKey>{STS_SECRET}</SecretAccessKey><SessionToken>{STS_SESSION}</SessionToken>\
         </Credentials><PackedPolicySize>0</PackedPolicySize></AssumeRoleResult>\
         <ResponseMetadata><RequestId>tx-1</RequestId></ResponseMetadata></AssumeRoleResponse>"
    )
}

pub fn sts_answer() -> Answer {
    Answer::status(200, &[("content-type", b"text/xml")], sts_xml().as_bytes())
}

/// Answers every pending callout with the good answer of its cluster (JWKS, or RGW's
/// AssumeRole), until none is left; returns how many were answered.
pub fn answer_all_good(vm: &mut Vm) -> Result<usize, crate::vm::Trap> {
    let mut n = 0;
    for _ in 0..64 {
        let pending = vm.pending();
        if pending.is_empty() {
            break;
        }
        for token in pending {
            let cluster = vm.host().pending.get(&token).map(|c| c.cluster.clone());
            let answer = if cluster.as_deref() == Some(jwks_cluster().as_str()) {
                jwks_answer()
            } else {
                sts_answer()
            };
            vm.answer(token, answer)?;
            n += 1;
        }
    }
    Ok(n)
}

/// A started VM whose keys are fetched: a tick dispatches the JWKS fetch, answered here.
pub fn vm_with_keys() -> Vm {
    let mut vm = start_vm();
    if let Err(t) = vm
        .tick()
        .and_then(|()| answer_all_good(&mut vm).map(|_| ()))
    {
        panic!("{t}");
    }
    vm
}
