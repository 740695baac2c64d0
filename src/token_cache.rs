//! Verified-token cache: tokens in the field live for months and come back on every call, so the
//! RSA check (about 0.1 ms in V8 with `rsa_sig`, 0.5 ms with jwt-simple's) is done once per token.
//! Keyed by SHA-256 of the token, bounded, never used past the token's `exp`, and dropped when the
//! key that verified it leaves the JWKS.
//! The caller still runs the claim checks and rules on every hit; failures are never inserted.
use std::collections::HashMap;

use crate::fifo::Fifo;

use sha2::{Digest, Sha256};

use crate::verify::{Source, Verified};

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Fixed cost of an entry besides its claims (digest twice, sequence, `Verified`, map slots).
const ENTRY_OVERHEAD: usize = 160;

struct Entry {
    bytes: usize,
    verified: Verified,
}

/// Bounded in entries and in bytes. `entries` and `order` always hold the same tokens (every
/// removal goes through [`TokenCache::remove`]), so eviction is one step per entry removed.
pub struct TokenCache {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<TokenDigest, Entry>,
    /// Insertion order (oldest first), for eviction.
    order: Fifo<TokenDigest>,
}

impl TokenCache {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        TokenCache {
            capacity,
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            order: Fifo::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes accounted to the entries (claims size bound plus fixed overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Length of the eviction index: equal to [`TokenCache::len`] at all times.
    pub fn order_len(&self) -> usize {
        self.order.len()
    }

    /// A still-usable earlier verification of this token, if any.
    pub fn get(&mut self, key: &TokenDigest, now: u64, sources: &[Source]) -> Option<Verified> {
        let hit = &self.entries.get(key)?.verified;
        let exp = hit.claims.expires_at.map(|e| e.as_secs()).unwrap_or(0);
        let key_published = sources
            .get(hit.source)
            .and_then(|s| s.keys.as_deref())
            .is_some_and(|set| set.has(hit.kid.as_deref(), &hit.fingerprint));
        if now > exp || !key_published {
            self.remove(key);
            return None;
        }
        Some(hit.clone())
    }

    /// Remembers a verification; `token_len` bounds the size of its claims. Evicts the oldest
    /// entries until both bounds hold; returns how many it evicted.
    pub fn insert(&mut self, key: TokenDigest, verified: Verified, token_len: usize) -> usize {
        let bytes = token_len.saturating_add(ENTRY_OVERHEAD);
        if self.capacity == 0 || bytes > self.max_bytes {
            return 0;
        }
        self.remove(&key);
        self.order.push(key);
        self.entries.insert(key, Entry { bytes, verified });
        self.bytes = self.bytes.saturating_add(bytes);
        let mut evicted = 0;
        // Each pass removes one entry, so this ends after at most `len` passes.
        for _ in 0..self.entries.len() {
            if self.entries.len() <= self.capacity && self.bytes <= self.max_bytes {
                break;
            }
            let Some(oldest) = self.order.pop_oldest() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(e.bytes);
                evicted += 1;
            }
        }
        evicted
    }

    /// Empties the cache (configuration change).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order = Fifo::default();
        self.bytes = 0;
    }

    fn remove(&mut self, key: &TokenDigest) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(key);
            self.bytes = self.bytes.saturating_sub(e.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::tests::{jwk_json, keypairs};
    use crate::jwks::KeySet;
    use crate::verify::tests::{good_token, policy, sources, ISS, NOW};
    use crate::verify::verify;
    use std::collections::HashSet;
    use std::rc::Rc;

    #[test]
    fn hit_until_exp() {
        let s = sources();
        let t = good_token();
        let v = verify(&t, NOW, &s, &policy()).unwrap();
        let mut c = TokenCache::new(10, 1 << 20);
        c.insert(digest(&t), v, t.len());
        assert!(c.get(&digest(&t), NOW, &s).is_some());
        assert!(c.get(&digest("other"), NOW, &s).is_none());
        // Past exp (NOW + 3600) the entry is gone, even though the signature was good.
        assert!(c.get(&digest(&t), NOW + 3601, &s).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn dropped_when_key_leaves_jwks() {
        let s = sources();
        let t = good_token();
        let mut c = TokenCache::new(10, 1 << 20);
        c.insert(digest(&t), verify(&t, NOW, &s, &policy()).unwrap(), t.len());
        // Rotated: same issuer, only the other key published now.
        let doc = serde_json::json!({"keys": [jwk_json(&keypairs()[1], "sig-2", "sig", "RS256")]});
        let rotated = vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: Some(Rc::new(
                KeySet::parse(doc.to_string().as_bytes(), &["RS256".into()]).unwrap(),
            )),
        }];
        assert!(c.get(&digest(&t), NOW, &rotated).is_none());
        assert!(c.get(&digest(&t), NOW, &s).is_none(), "entry was removed");
        // Same kid, different key material: also a miss.
        let doc = serde_json::json!({"keys": [jwk_json(&keypairs()[1], "sig-1", "sig", "RS256")]});
        let swapped = vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: Some(Rc::new(
                KeySet::parse(doc.to_string().as_bytes(), &["RS256".into()]).unwrap(),
            )),
        }];
        c.insert(digest(&t), verify(&t, NOW, &s, &policy()).unwrap(), t.len());
        assert!(c.get(&digest(&t), NOW, &swapped).is_none());
    }

    #[test]
    fn bounded() {
        let s = sources();
        let t = good_token();
        let v = verify(&t, NOW, &s, &policy()).unwrap();
        let mut c = TokenCache::new(3, 1 << 20);
        for i in 0..10 {
            c.insert(digest(&format!("t{i}")), v.clone(), 100);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&digest("t9"), NOW, &s).is_some());
        assert!(c.get(&digest("t0"), NOW, &s).is_none());
        let mut off = TokenCache::new(0, 1 << 20);
        off.insert(digest(&t), v, t.len());
        assert!(off.is_empty());
    }
}

#[cfg(test)]
mod model {
    //! The cache against a plain FIFO list over random sequences in simulated time: the same
    //! token inserted again and again, tokens that expire inside the skew, key rotations.
    use super::*;
    use crate::jwks::tests::{jwk_json, keypairs};
    use crate::jwks::KeySet;
    use crate::verify::tests::{claims, sign, sources, ISS, NOW};
    use crate::verify::{verify, Verified};
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::rc::Rc;
    use std::sync::OnceLock;

    const CAP: usize = 5;
    const MAX_BYTES: usize = 6 * 1024;

    /// Eight verified tokens: exp at NOW + 10 * i (some expire during a run).
    fn pool() -> Vec<(String, Verified)> {
        static P: OnceLock<Vec<String>> = OnceLock::new();
        let tokens = P.get_or_init(|| {
            (0..8u64)
                .map(|i| {
                    let pad = "p".repeat(200 * i as usize);
                    sign(
                        serde_json::json!({"alg": "RS256", "kid": "sig-1"}),
                        claims(serde_json::json!({"exp": NOW + 10 * i, "pad": pad})),
                        0,
                    )
                })
                .collect()
        });
        let s = sources();
        tokens
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    verify(t, NOW, &s, &crate::verify::tests::policy()).unwrap(),
                )
            })
            .collect()
    }

    fn rotated() -> Vec<Source> {
        let doc = serde_json::json!({"keys": [jwk_json(&keypairs()[1], "sig-2", "sig", "RS256")]});
        vec![Source {
            issuers: HashSet::from([ISS.to_string()]),
            keys: Some(Rc::new(
                KeySet::parse(doc.to_string().as_bytes(), &["RS256".into()]).unwrap(),
            )),
        }]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize),
        Get(usize),
        Advance(u64),
        Rotate,
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::lifecycle_model::cases(256), ..ProptestConfig::default() })]
        #[test]
        fn cache_matches_fifo_model(ops in prop::collection::vec(prop_oneof![
            4 => (0..8usize).prop_map(Op::Insert),
            4 => (0..8usize).prop_map(Op::Get),
            1 => (1..30u64).prop_map(Op::Advance),
            1 => Just(Op::Rotate),
        ], 1..300)) {
            let pool = pool();
            let mut c = TokenCache::new(CAP, MAX_BYTES);
            // The model: (index, bytes) oldest first.
            let mut model: Vec<(usize, usize)> = Vec::new();
            let mut now = NOW;
            let mut srcs = sources();
            let mut rotated_out = false;
            for op in ops {
                match op {
                    Op::Insert(i) => {
                        let (t, v) = &pool[i];
                        let evicted = c.insert(digest(t), v.clone(), t.len());
                        let bytes = t.len() + ENTRY_OVERHEAD;
                        model.retain(|(j, _)| *j != i);
                        model.push((i, bytes));
                        let mut model_evicted = 0;
                        while model.len() > CAP || model.iter().map(|m| m.1).sum::<usize>() > MAX_BYTES {
                            model.remove(0);
                            model_evicted += 1;
                        }
                        prop_assert_eq!(evicted, model_evicted);
                        prop_assert!(evicted <= CAP + 1, "bounded work");
                    }
                    Op::Get(i) => {
                        let (t, _) = &pool[i];
                        let hit = c.get(&digest(t), now, &srcs).is_some();
                        let exp = NOW + 10 * i as u64;
                        let present = model.iter().any(|(j, _)| *j == i);
                        let expect = present && now <= exp && !rotated_out;
                        if present && !expect {
                            model.retain(|(j, _)| *j != i);
                        }
                        prop_assert_eq!(hit, expect);
                    }
                    Op::Advance(s) => now += s,
                    Op::Rotate => {
                        srcs = rotated();
                        rotated_out = true;
                    }
                }
                prop_assert_eq!(c.len(), model.len());
                prop_assert_eq!(c.order_len(), c.len());
                prop_assert_eq!(c.bytes(), model.iter().map(|m| m.1).sum::<usize>());
                prop_assert!(c.len() <= CAP && c.bytes() <= MAX_BYTES);
            }
        }
    }
}
