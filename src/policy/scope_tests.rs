use crate::config::{Config, MAX_POLICY_CHARS};
use crate::policy::authorize::{authorize, is_tenant_name, Scope};
use crate::policy::scope::*;
use crate::token::Claims;
use proptest::prelude::*;
use serde_json::{json, Value};

/// AWS's resource wildcards: `*` any run (also across `/`), `?` one character; a plain
/// backtracking matcher written for this test.
pub fn aws_match(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, _) => s.is_empty(),
        (Some((b'*', rest)), _) => aws_match(rest, s) || (!s.is_empty() && aws_match(p, &s[1..])),
        (Some((c, rest)), Some((d, srest))) => (*c == b'?' || c == d) && aws_match(rest, srest),
        (Some(_), None) => false,
    }
}

/// RGW 16.2's matcher as Ceph's `match_wildcards` behaves: on `*`, the next pattern
/// character ends the run as soon as the input shows it (no backtracking).
pub fn rgw_match(p: &[u8], s: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    loop {
        if i == p.len() {
            return j == s.len();
        }
        if p[i] == b'*' {
            if i + 1 == p.len() {
                return true;
            }
            if j == s.len() || p[i + 1] == s[j] {
                i += 1;
            } else {
                j += 1;
            }
            continue;
        }
        if j == s.len() {
            return false;
        }
        if p[i] == b'?' || p[i] == s[j] {
            i += 1;
            j += 1;
            continue;
        }
        return false;
    }
}

/// Whether `policy` lets its holder act on resource `arn` under `matcher`: some Allow
/// resource matches and no Deny resource does (IAM's evaluation for one action, `s3:*`).
pub fn allows(policy: &str, arn: &str, matcher: fn(&[u8], &[u8]) -> bool) -> bool {
    let doc: Value = serde_json::from_str(policy).unwrap();
    let mut allowed = false;
    for st in doc["Statement"].as_array().unwrap() {
        assert_eq!(st["Action"], json!(["s3:*"]));
        let hit = st["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| matcher(r.as_str().unwrap().as_bytes(), arn.as_bytes()));
        match st["Effect"].as_str().unwrap() {
            "Deny" if hit => return false,
            "Allow" if hit => allowed = true,
            _ => {}
        }
    }
    allowed
}

#[test]
fn matchers_and_intersection() {
    for m in [aws_match as fn(&[u8], &[u8]) -> bool, rgw_match] {
        assert!(m(b"blue-*", b"blue-x-data/k"));
        assert!(m(b"a?c", b"abc"));
        assert!(!m(b"blue-*", b"blue"));
        assert!(!m(b"blue-*", b"bluex-data"));
    }
    // Where they differ: RGW does not backtrack.
    assert!(aws_match(b"a*b", b"acbb"));
    assert!(!rgw_match(b"a*b", b"acbb"));
    assert!(globs_intersect("blue-*", "blue-x-*"));
    assert!(
        globs_intersect("ab?x*", "ab/*"),
        "? matches the / of an object"
    );
    assert!(!globs_intersect("blue-*", "bluex-*"));
    assert!(!globs_intersect("data", "data-*"));
    assert!(globs_intersect("data*", "data"));
    assert!(!globs_intersect("a?", "abc"));
}

// ---- the property: no listed tenant's policy reaches another's buckets -----------------

fn base() -> Value {
    crate::config::tests::sample()
}

fn parse(v: &Value) -> Option<Config> {
    Config::parse(v.to_string().as_bytes(), &|_| None).ok()
}

/// The bucket's owner by the documented rule, computed from the names alone (not from
/// any policy): the explicit tenant whose pattern it matches, else the listed tenant with
/// the longest name `U` such that the bucket starts with `U-`.
fn owner<'a>(
    bucket: &str,
    names: &'a [String],
    explicit: &'a [(String, Vec<String>)],
) -> Option<&'a str> {
    for (t, patterns) in explicit {
        if patterns
            .iter()
            .any(|p| aws_match(p.as_bytes(), bucket.as_bytes()))
        {
            return Some(t);
        }
    }
    names
        .iter()
        .filter(|u| bucket.starts_with(&format!("{u}-")))
        .max_by_key(|u| u.len())
        .map(String::as_str)
}

/// Valid tenant names of 3 to `max` characters (`-` and `.` anywhere inside).
fn name_of_len(max: usize) -> impl Strategy<Value = String> {
    let inner = format!("[a-z0-9.-]{{1,{}}}", max - 2);
    (
        "[a-z0-9]",
        proptest::string::string_regex(&inner).unwrap(),
        "[a-z0-9]",
    )
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

/// T and U related the ways that break prefix schemes: U = T + sep + more, U a prefix of
/// T, dashes and dots swapped, or unrelated; plus up to three more listed names built the
/// same way (chains `a`, `a-b`, `a-b-c`).
fn related(t: String) -> impl Strategy<Value = Vec<String>> {
    let more = prop::collection::vec(
        (
            0..5u8,
            "[-.]",
            "[a-z0-9][a-z0-9.-]{0,6}[a-z0-9]|[a-z0-9]",
            1..60usize,
        ),
        1..5,
    );
    more.prop_map(move |steps| {
        let mut names = vec![t.clone()];
        for (kind, sep, tail, cut) in steps {
            let from = names.last().unwrap().clone();
            let n = match kind {
                0 | 1 => format!("{from}{sep}{tail}"),
                2 => {
                    let mut s: String = from.chars().take(cut.max(3)).collect();
                    while s.ends_with(['-', '.']) {
                        s.pop();
                    }
                    s
                }
                3 => from
                    .chars()
                    .map(|c| match c {
                        '-' => '.',
                        '.' => '-',
                        c => c,
                    })
                    .collect(),
                _ => tail.clone(),
            };
            names.push(n);
        }
        names
    })
}

fn bucket_suffix() -> impl Strategy<Value = String> {
    "[a-z0-9]|[a-z0-9][a-z0-9.-]{0,20}[a-z0-9]"
}

fn tenant_admin(t: &str) -> Claims {
    serde_json::from_value(json!({
        "realm_access": {"roles": ["tenant-admin"]},
        "groups": [format!("{t}-tenant-admin")]
    }))
    .unwrap()
}

pub(crate) fn cases() -> u32 {
    crate::test_support::cases(4096)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Every pair T ≠ U of listed tenants, under `tenants.names` (buckets `T-…`), with
    /// `scope_admins` on or off: T's credentials (the policy a tenant admin of T gets
    /// through `authorize`) reach none of U's buckets or objects, and do reach their own
    /// (positive control), under AWS's matcher and RGW's.
    #[test]
    fn listed_tenants_never_reach_each_other(
        names in name_of_len(61).prop_flat_map(related),
        picks in (0..5usize, 0..5usize),
        suffixes in prop::collection::vec((0..5usize, bucket_suffix()), 1..8),
        key in "[a-z0-9/*?.-]{0,12}",
        scope_admins in any::<bool>(),
    ) {
        let mut names: Vec<String> = names.into_iter().filter(|n| is_tenant_name(n) && n.len() <= 61).collect();
        names.sort();
        names.dedup();
        if names.len() < 2 {
            names.push(if names.contains(&"zz9".to_string()) { "zz8" } else { "zz9" }.into());
        }
        let t = names[picks.0 % names.len()].clone();
        let u = names[(picks.0 + 1 + picks.1 % (names.len() - 1)) % names.len()].clone();
        prop_assert_ne!(&t, &u);
        let mut v = base();
        v["tenants"] = json!({"names": names, "scope_admins": scope_admins});
        let config = match Config::parse(v.to_string().as_bytes(), &|_| None) {
            Ok(c) => c,
            // Refused only when some policy would exceed RGW's limit.
            Err(e) => {
                prop_assert!(e.message.contains("RGW accepts at most"), "{e}");
                return Ok(());
            }
        };
        let scope = authorize(&tenant_admin(&t), &config.rules, &config.tenants, Some(&t)).unwrap();
        prop_assert_eq!(&scope, &Scope::Tenant(t.clone()));
        let policy = config.tenants.policy_for(&t).unwrap();
        prop_assert!(policy.len() <= MAX_POLICY_CHARS);
        // Buckets of every listed name's space, including the part of U's space where
        // another listed name (maybe T) starts: the oracle says whose each one is.
        for (who, suffix) in &suffixes {
            let of = &names[who % names.len()];
            for b in [format!("{u}-{suffix}"), format!("{of}-{suffix}"), format!("{t}-{suffix}")] {
                if b.len() > 63 {
                    continue;
                }
                let bucket_arn = format!("arn:aws:s3:::{b}");
                let object_arn = format!("arn:aws:s3:::{b}/{key}");
                let mine = owner(&b, &names, &[]) == Some(t.as_str());
                for m in [aws_match as fn(&[u8], &[u8]) -> bool, rgw_match] {
                    prop_assert_eq!(allows(&policy, &bucket_arn, m), mine, "{} {} {}", t, b, policy);
                    prop_assert_eq!(allows(&policy, &object_arn, m), mine, "{} {} {}", t, object_arn, policy);
                }
            }
        }
    }

    /// The same with explicit bucket patterns (`tenants.buckets`) for some tenants: a
    /// configuration that is accepted never lets T reach a bucket or object matching U's
    /// patterns or U's `U-…` space, and T reaches its own patterns' buckets.
    #[test]
    fn explicit_buckets_never_reach_other_tenants(
        names in prop::collection::vec(prop_oneof![4 => name_of_len(20), 1 => name_of_len(253)], 2..5),
        patterns in prop::collection::vec(prop::collection::vec("[a-z0-9][a-z0-9.-]{0,10}\\*?", 1..3), 2..5),
        explicit_mask in any::<u8>(),
        fill in "[a-z0-9][a-z0-9.-]{0,8}",
        key in "[a-z0-9/*?.-]{0,12}",
    ) {
        let mut names: Vec<String> = names.into_iter().filter(|n| is_tenant_name(n)).collect();
        names.sort();
        names.dedup();
        prop_assume!(names.len() >= 2);
        let mut listed = Vec::new();
        let mut explicit: Vec<(String, Vec<String>)> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if explicit_mask & (1 << i) != 0 {
                explicit.push((n.clone(), patterns[i % patterns.len()].clone()));
            } else {
                listed.push(n.clone());
            }
        }
        let mut v = base();
        let buckets: serde_json::Map<String, Value> = explicit.iter().map(|(n, p)| (n.clone(), json!(p))).collect();
        v["tenants"] = json!({"names": listed, "buckets": buckets});
        let Some(config) = parse(&v) else { return Ok(()); };
        for t in &names {
            let policy = config.tenants.policy_for(t).unwrap();
            // Candidate buckets: every pattern instantiated, every `U-…` space.
            let mut candidates = Vec::new();
            for (_, ps) in &explicit {
                for p in ps {
                    candidates.push(p.replace('*', &fill));
                    candidates.push(p.replace('*', ""));
                }
            }
            for n in &names {
                candidates.push(format!("{n}-{fill}0"));
            }
            for b in candidates {
                let o = owner(&b, &listed, &explicit);
                for arn in [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/{key}")] {
                    for m in [aws_match as fn(&[u8], &[u8]) -> bool, rgw_match] {
                        let reach = allows(&policy, &arn, m);
                        match o {
                            Some(owner) if owner != t => prop_assert!(!reach, "{} reaches {} of {}: {}", t, arn, owner, policy),
                            Some(_) => prop_assert!(reach, "{} misses its own {}: {}", t, arn, policy),
                            None => prop_assert!(!reach, "{} reaches unowned {}", t, arn),
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn default_configuration_scopes_no_one() {
    // No tenant is listed by default: a tenant admin gets nothing, an admin gets the old
    // token service's answer (full access) whatever the header says.
    let c = parse(&base()).unwrap();
    for t in ["blue", "blue-x", "a.b"] {
        assert!(authorize(&tenant_admin(t), &c.rules, &c.tenants, Some(t)).is_err());
        assert_eq!(c.tenants.policy_for(t), None);
    }
}
