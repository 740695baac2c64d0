use crate::config::*;
use crate::policy::rules::default_tenant_admin_rules;
use serde_json::{json, Value};

fn no_env(_: &str) -> Option<String> {
    None
}

pub(crate) fn sample() -> Value {
    json!({
        "issuers": [{"issuer": "https://api-gw-service-nmn.local/keycloak/realms/shasta",
                     "jwks": {"cluster": "keycloak", "authority": "kc", "path": "/jwks"}}],
        "rgw": {"cluster": "rgw", "authority": "rgw.local:8080",
                "endpoint_url": "http://rgw.local:8080", "role_arn": "arn:aws:iam:::user/STS",
                "access_key_id": "AKID", "secret_access_key": "SECRET"}
    })
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &no_env)
}

fn err_field(v: &Value) -> String {
    match parse(v) {
        Err(e) => e.field,
        Ok(_) => "accepted".into(),
    }
}

#[test]
fn defaults() {
    let c = parse(&sample()).unwrap();
    assert_eq!(c.prefix, "/apis/sts/");
    assert_eq!(c.audience, "shasta");
    assert_eq!(c.algorithms, vec!["RS256"]);
    assert_eq!(c.clock_skew_seconds, 60);
    assert_eq!(c.rules, default_rules());
    assert_eq!(c.rgw.duration_seconds, 3600);
    assert_eq!(c.rgw.region, "us-east-1");
    assert_eq!(c.rgw.service, "sts");
    assert_eq!(c.issuers[0].jwks.refresh_seconds, 300);
}

#[test]
fn missing_and_unknown_fields_are_named() {
    let mut v = sample();
    v["rgw"].as_object_mut().unwrap().remove("cluster");
    let e = parse(&v).unwrap_err();
    assert_eq!(e.field, "rgw");
    assert!(e.message.contains("cluster"), "{e}");

    let mut v = sample();
    v.as_object_mut().unwrap().remove("rgw");
    assert!(parse(&v).unwrap_err().message.contains("rgw"));

    let mut v = sample();
    v["rgw"]["secret_acces_key"] = json!("x");
    let e = parse(&v).unwrap_err();
    assert!(e.to_string().contains("secret_acces_key"), "{e}");

    let mut v = sample();
    v["rgw"]["duration_seconds"] = json!("3600");
    assert_eq!(err_field(&v), "rgw.duration_seconds");

    assert_eq!(
        Config::parse(b"not json", &no_env).unwrap_err().field,
        "(root)"
    );
    assert_eq!(Config::parse(b"", &no_env).unwrap_err().field, "(root)");
}

#[test]
fn every_validation_names_its_field() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("prefix", Box::new(|v| v["prefix"] = json!("apis/sts"))),
        ("realm", Box::new(|v| v["realm"] = json!("a\"b"))),
        ("audience", Box::new(|v| v["audience"] = json!(""))),
        ("algorithms", Box::new(|v| v["algorithms"] = json!([]))),
        (
            "algorithms[1]",
            Box::new(|v| v["algorithms"] = json!(["RS256", "HS256"])),
        ),
        (
            "algorithms[0]",
            Box::new(|v| v["algorithms"] = json!(["none"])),
        ),
        (
            "clock_skew_seconds",
            Box::new(|v| v["clock_skew_seconds"] = json!(3600)),
        ),
        (
            "max_token_bytes",
            Box::new(|v| v["max_token_bytes"] = json!(10)),
        ),
        ("issuers", Box::new(|v| v["issuers"] = json!([]))),
        (
            "issuers[0].issuer",
            Box::new(|v| v["issuers"][0]["issuer"] = json!(" ")),
        ),
        (
            "issuers[0].jwks.cluster",
            Box::new(|v| v["issuers"][0]["jwks"]["cluster"] = json!("")),
        ),
        (
            "issuers[0].jwks.authority",
            Box::new(|v| v["issuers"][0]["jwks"]["authority"] = json!("")),
        ),
        (
            "issuers[0].jwks.path",
            Box::new(|v| v["issuers"][0]["jwks"]["path"] = json!("jwks")),
        ),
        (
            "issuers[0].jwks.refresh_seconds",
            Box::new(|v| v["issuers"][0]["jwks"]["refresh_seconds"] = json!(1)),
        ),
        (
            "issuers[0].jwks.min_refetch_seconds",
            Box::new(|v| v["issuers"][0]["jwks"]["min_refetch_seconds"] = json!(1000)),
        ),
        (
            "issuers[0].jwks.retry_seconds",
            Box::new(|v| v["issuers"][0]["jwks"]["retry_seconds"] = json!(0)),
        ),
        (
            "issuers[0].jwks.timeout_ms",
            Box::new(|v| v["issuers"][0]["jwks"]["timeout_ms"] = json!(5)),
        ),
        (
            "issuers[0].jwks.max_bytes",
            Box::new(|v| v["issuers"][0]["jwks"]["max_bytes"] = json!(5)),
        ),
        (
            "issuers[1].issuer",
            Box::new(|v| {
                let i = v["issuers"][0].clone();
                v["issuers"].as_array_mut().unwrap().push(i)
            }),
        ),
        (
            "rules[0].claim",
            Box::new(|v| v["rules"] = json!([{"claim": "a..b", "contains": "x"}])),
        ),
        (
            "token_cache_entries",
            Box::new(|v| v["token_cache_entries"] = json!(10_000_000)),
        ),
        ("rgw.cluster", Box::new(|v| v["rgw"]["cluster"] = json!(""))),
        (
            "rgw.authority",
            Box::new(|v| v["rgw"]["authority"] = json!("")),
        ),
        (
            "rgw.endpoint_url",
            Box::new(|v| v["rgw"]["endpoint_url"] = json!("rgw:8080")),
        ),
        (
            "rgw.role_arn",
            Box::new(|v| v["rgw"]["role_arn"] = json!("STS")),
        ),
        (
            "rgw.access_key_id",
            Box::new(|v| v["rgw"]["access_key_id"] = json!("")),
        ),
        (
            "rgw.secret_access_key",
            Box::new(|v| {
                v["rgw"]
                    .as_object_mut()
                    .unwrap()
                    .remove("secret_access_key");
            }),
        ),
        ("rgw.service", Box::new(|v| v["rgw"]["service"] = json!(""))),
        (
            "rgw.service",
            Box::new(|v| v["rgw"]["service"] = json!("sts/x")),
        ),
        (
            "rgw.region",
            Box::new(|v| v["rgw"]["region"] = json!("us-east-1/x")),
        ),
        (
            "rgw.duration_seconds",
            Box::new(|v| v["rgw"]["duration_seconds"] = json!(899)),
        ),
        (
            "rgw.duration_seconds",
            Box::new(|v| v["rgw"]["duration_seconds"] = json!(43201)),
        ),
        (
            "rgw.timeout_ms",
            Box::new(|v| v["rgw"]["timeout_ms"] = json!(0)),
        ),
        (
            "rgw.policy",
            Box::new(|v| v["rgw"]["policy"] = json!("{not json")),
        ),
    ];
    for (field, mutate) in cases {
        let mut v = sample();
        mutate(&mut v);
        assert_eq!(err_field(&v), field, "case {field}: {v}");
    }
}

#[test]
fn secrets_from_environment() {
    let mut v = sample();
    let rgw = v["rgw"].as_object_mut().unwrap();
    rgw.remove("access_key_id");
    rgw.remove("secret_access_key");
    let env = |name: &str| match name {
        ENV_ACCESS_KEY_ID => Some("ENVKEY".to_string()),
        ENV_SECRET_ACCESS_KEY => Some("ENVSECRET".to_string()),
        _ => None,
    };
    let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
    assert_eq!(c.rgw.access_key_id(), "ENVKEY");
    assert_eq!(c.rgw.secret_access_key(), "ENVSECRET");
    assert!(!format!("{:?}", c.rgw).contains("ENVSECRET"));
    // Without the environment, the error names the field and the variable.
    let e = parse(&v).unwrap_err();
    assert_eq!(e.field, "rgw.access_key_id");
    assert!(e.message.contains(ENV_ACCESS_KEY_ID));
}

#[test]
fn shared_jwks_sources() {
    let mut v = sample();
    let mut second = v["issuers"][0].clone();
    second["issuer"] = json!("http://keycloak:8080/keycloak/realms/shasta");
    let mut third = v["issuers"][0].clone();
    third["issuer"] = json!("https://auth.cmn.example/keycloak/realms/shasta");
    third["jwks"]["cluster"] = json!("other");
    v["issuers"].as_array_mut().unwrap().extend([second, third]);
    let c = parse(&v).unwrap();
    assert_eq!(c.jwks_sources().len(), 2);
    assert_eq!(c.issuers_of_source(0).len(), 2);
    assert_eq!(
        c.issuers_of_source(1),
        vec!["https://auth.cmn.example/keycloak/realms/shasta"]
    );
    assert!(c.issuers_of_source(2).is_empty());
}

#[test]
fn safety_defaults_are_enforced() {
    let mut v = sample();
    v["rules"] = json!([]);
    assert_eq!(err_field(&v), "rules");
    v["allow_any_authenticated"] = json!(true);
    assert_eq!(parse(&v).unwrap().rules.len(), 0);
    v["rules"] = json!([{"claim": "sub", "contains": "x"}]);
    assert_eq!(err_field(&v), "allow_any_authenticated");
    let mut v = sample();
    v["issuers"][0]["jwks"]["min_refetch_seconds"] = json!(0);
    assert_eq!(err_field(&v), "issuers[0].jwks.min_refetch_seconds");
    let mut v = sample();
    v["max_token_lifetime_seconds"] = json!(10);
    assert_eq!(err_field(&v), "max_token_lifetime_seconds");
    let mut v = sample();
    v["authorized_parties"] = json!([]);
    assert_eq!(err_field(&v), "authorized_parties");
    let mut v = sample();
    v["parking"] = json!({"max_requests": 100000});
    assert_eq!(err_field(&v), "parking.max_requests");
}

#[test]
fn rule_groups() {
    let mut v = sample();
    v["rules"] =
        json!([{"any_of": [{"claim": "a.b", "contains": "x"}, {"claim": "c", "contains": "y"}]}]);
    assert!(
        matches!(&parse(&v).unwrap().rules[0], RuleItem::AnyOf { any_of } if any_of.len() == 2)
    );
    v["rules"] = json!([{"any_of": []}]);
    assert_eq!(err_field(&v), "rules[0].any_of");
    v["rules"] = json!([{"any_of": [{"claim": "a..b", "contains": "x"}]}]);
    assert_eq!(err_field(&v), "rules[0].any_of[0].claim");
    v["rules"] = json!([{"claim": "groups", "contains": "{tenant}-admin"}]);
    assert_eq!(err_field(&v), "rules[0].contains");
}

#[test]
fn tenant_policies() {
    let mut v = sample();
    v["tenants"] = json!({"names": ["blue", "blue-x", "blue-x-y", "blue.z", "red"]});
    let c = parse(&v).unwrap();
    let p = c.tenants.policy_for("blue").unwrap();
    assert_eq!(
        p,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::blue-*","arn:aws:s3:::blue-*/*"]},{"Effect":"Deny","Action":["s3:*"],"Resource":["arn:aws:s3:::blue-x-*","arn:aws:s3:::blue-x-y-*"]}]}"#
    );
    assert!(!p.contains(' '), "compact: RGW does not decode '+'");
    assert_eq!(
        c.tenants.policy_for("red").unwrap(),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::red-*","arn:aws:s3:::red-*/*"]}]}"#
    );
    assert!(c.tenants.policy_for("blue-x").unwrap().contains("Deny"));
    assert!(!c.tenants.policy_for("blue-x-y").unwrap().contains("Deny"));
    assert_eq!(c.tenants.policy_for("green"), None, "not listed");
    // Explicit buckets.
    let mut v = sample();
    v["tenants"] = json!({"names": ["red"], "buckets": {"blue": ["blue-data", "shared-*"]}});
    let c = parse(&v).unwrap();
    let p: Value = serde_json::from_str(&c.tenants.policy_for("blue").unwrap()).unwrap();
    assert_eq!(
        p["Statement"][0]["Resource"],
        json!([
            "arn:aws:s3:::blue-data",
            "arn:aws:s3:::blue-data/*",
            "arn:aws:s3:::shared-*",
            "arn:aws:s3:::shared-*/*"
        ])
    );
    // Refused, naming the field.
    type Case = (Value, &'static str);
    let long = "a".repeat(62);
    let many: Vec<String> = (0..40)
        .map(|i| format!("bucket-pattern-{i:02}-*"))
        .collect();
    let nested: Vec<String> = (0..60)
        .map(|i| format!("a-{i:02}"))
        .chain(["a".to_string()])
        .collect();
    let cases: Vec<Case> = vec![
        (json!({"policy_template": "{}"}), "tenants.policy_template"),
        (json!({"names": ["Blue"]}), "tenants.names[0]"),
        (json!({"names": ["blue", "blue"]}), "tenants.names[1]"),
        (json!({"names": [long]}), "tenants.names[0]"),
        (
            json!({"names": ["blue"], "buckets": {"blue": ["x"]}}),
            "tenants.names[0]",
        ),
        (
            json!({"buckets": {"blue": ["Bad_Name"]}}),
            "tenants.buckets.blue",
        ),
        (
            json!({"buckets": {"blue": ["a*b"]}}),
            "tenants.buckets.blue",
        ),
        (
            json!({"buckets": {"blue": ["a?b"]}}),
            "tenants.buckets.blue",
        ),
        (json!({"buckets": {"blue": ["*"]}}), "tenants.buckets.blue"),
        (json!({"buckets": {"blue": []}}), "tenants.buckets.blue"),
        (json!({"buckets": {"Blue": ["b"]}}), "tenants.buckets.Blue"),
        (json!({"buckets": {"blue": many}}), "tenants.buckets.blue"),
        (json!({"names": nested}), "tenants.names[60]"),
        // Overlaps with another tenant's buckets: explicit vs listed, explicit vs explicit.
        (
            json!({"names": ["red"], "buckets": {"blue": ["red-x"]}}),
            "tenants.buckets.blue",
        ),
        (
            json!({"names": ["red"], "buckets": {"blue": ["re*"]}}),
            "tenants.buckets.blue",
        ),
        (
            json!({"buckets": {"blue": ["shared-*"], "red": ["shared-red"]}}),
            "tenants.buckets.blue",
        ),
    ];
    for (tenants, field) in cases {
        let mut v = sample();
        v["tenants"] = tenants.clone();
        assert_eq!(err_field(&v), field, "{tenants}");
    }
    // Not overlaps: `redx` is not in `red-*`, nor `red` itself.
    let mut v = sample();
    v["tenants"] = json!({"names": ["red"], "buckets": {"blue": ["redx-*", "red"]}});
    assert!(parse(&v).is_ok());
    // A global session policy would be replaced by a tenant's: refused while some caller
    // can be scoped to a listed tenant.
    let mut v = sample();
    v["rgw"]["policy"] = json!("{}");
    assert!(parse(&v).is_ok(), "nothing listed: nobody is scoped");
    v["tenants"] = json!({"names": ["blue"]});
    assert_eq!(err_field(&v), "rgw.policy");
    v["tenants"] = json!({"names": ["blue"], "scope_admins": false, "tenant_admin_rules": []});
    assert!(parse(&v).is_ok());
}

#[test]
fn tenant_admin_rules_must_name_the_tenant() {
    let refused = [
        (
            json!([{"claim": "realm_access.roles", "contains": "tenant-admin"}]),
            "tenants.tenant_admin_rules",
        ),
        (
            json!([{"claim": "realm_access.roles", "contains": "tenant-admin"},
                   {"any_of": [{"claim": "groups", "contains": "{tenant}-tenant-admin"},
                               {"claim": "groups", "contains": "all-tenants"}]}]),
            "tenants.tenant_admin_rules[1].any_of[1].contains",
        ),
        (
            json!([{"any_of": [{"claim": "groups", "contains": "x"},
                               {"claim": "groups", "contains": "{tenant}-ta"}]}]),
            "tenants.tenant_admin_rules[0].any_of[0].contains",
        ),
    ];
    for (rules, field) in refused {
        let mut v = sample();
        v["tenants"] = json!({"tenant_admin_rules": rules});
        assert_eq!(err_field(&v), field, "{rules}");
    }
    for rules in [
        json!([]),
        json!([{"claim": "realm_access.roles", "contains": "tenant-admin"},
               {"claim": "groups", "contains": "{tenant}-tenant-admin"}]),
        json!([{"any_of": [{"claim": "groups", "contains": "{tenant}-a"},
                           {"claim": "groups", "contains": "{tenant}-b"}]},
               {"any_of": [{"claim": "x", "contains": "1"}, {"claim": "y", "contains": "2"}]}]),
    ] {
        let mut v = sample();
        v["tenants"] = json!({"tenant_admin_rules": rules});
        assert!(parse(&v).is_ok(), "{rules}");
    }
    assert_eq!(
        parse(&sample()).unwrap().tenants.tenant_admin_rules,
        default_tenant_admin_rules()
    );
}
