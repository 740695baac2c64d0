//! `cargo run --release --features gen -- DIR COUNT`: a fresh RS256 key (DIR/n.bin) and COUNT
//! distinct tokens (DIR/tokens.txt) shaped like the local issuer's access tokens (1.3 KB, the same
//! claims), valid for an hour, for the path harness's scenario c. A third argument, a Unix time in
//! seconds, fixes their `iat` (and `nbf`, `exp` an hour later) so that `make bench-instr` runs the
//! same request path on every run (its simulated host's clock is set to that time).
use jwt_simple::prelude::*;

pub fn run() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let count: usize = args[2].parse().unwrap();
    let fixed_iat: Option<u64> = args.get(3).map(|t| t.parse().unwrap());
    let kp = RS256KeyPair::generate(2048).unwrap().with_key_id("g");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("n.bin"), kp.public_key().to_components().n).unwrap();
    let custom: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "amr": ["pwd"], "scope": "openid profile email", "azp": "shasta", "typ": "Bearer",
        "preferred_username": "admin", "name": "admin", "email": "admin@example.invalid",
        "email_verified": false,
        "realm_access": {"roles": ["offline_access", "uma_authorization", "admin"]},
        "resource_access": {"shasta": {"roles": ["admin"]}, "account": {"roles": ["manage-account", "view-profile"]}},
        "groups": ["/admins"]
    })).unwrap();
    let mut out = String::new();
    for i in 0..count {
        let mut claims = Claims::with_custom_claims(custom.clone(), Duration::from_hours(1))
            .with_issuer("https://issuer.example")
            .with_audiences(HashSet::from(["sts".to_string(), "account".to_string()]))
            .with_subject("34a22a70-2978-5c75-a27c-90eccfdb57ec")
            .with_jwt_id(format!("a7a3d2ff-b3a5-4a6b-a935-{i:012}"));
        if let Some(iat) = fixed_iat {
            claims.issued_at = Some(Duration::from_secs(iat));
            claims.invalid_before = Some(Duration::from_secs(iat));
            claims.expires_at = Some(Duration::from_secs(iat + 3600));
        }
        out.push_str(&kp.sign(claims).unwrap());
        out.push('\n');
    }
    std::fs::write(dir.join("tokens.txt"), out).unwrap();
}
