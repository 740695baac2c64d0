//! Verified-token cache: tokens in the field live for months and come back on every call, so the
//! RSA check (about 0.5 ms in V8) is done once per token. Keyed by SHA-256 of the token, bounded,
//! never used past the token's `exp`, and dropped when the key that verified it leaves the JWKS.
//! The caller still runs the claim checks and rules on every hit; failures are never inserted.
use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::verify::{Source, Verified};

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenDigest, Verified>,
    /// Insertion order, for eviction of the oldest entry when full.
    order: VecDeque<TokenDigest>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A still-usable earlier verification of this token, if any.
    pub fn get(&mut self, key: &TokenDigest, now: u64, sources: &[Source]) -> Option<Verified> {
        let hit = self.entries.get(key)?;
        let exp = hit.claims.expires_at.map(|e| e.as_secs()).unwrap_or(0);
        let key_published = sources
            .get(hit.source)
            .and_then(|s| s.keys.as_deref())
            .is_some_and(|set| set.has(hit.kid.as_deref(), &hit.fingerprint));
        if now > exp || !key_published {
            self.entries.remove(key);
            return None;
        }
        Some(hit.clone())
    }

    pub fn insert(&mut self, key: TokenDigest, verified: Verified) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, verified).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.entries.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) if old != key => {
                    self.entries.remove(&old);
                }
                Some(_) => self.order.push_back(key),
                None => break,
            }
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
        let mut c = TokenCache::new(10);
        c.insert(digest(&t), v);
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
        let mut c = TokenCache::new(10);
        c.insert(digest(&t), verify(&t, NOW, &s, &policy()).unwrap());
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
        c.insert(digest(&t), verify(&t, NOW, &s, &policy()).unwrap());
        assert!(c.get(&digest(&t), NOW, &swapped).is_none());
    }

    #[test]
    fn bounded() {
        let s = sources();
        let t = good_token();
        let v = verify(&t, NOW, &s, &policy()).unwrap();
        let mut c = TokenCache::new(3);
        for i in 0..10 {
            c.insert(digest(&format!("t{i}")), v.clone());
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&digest("t9"), NOW, &s).is_some());
        assert!(c.get(&digest("t0"), NOW, &s).is_none());
        let mut off = TokenCache::new(0);
        off.insert(digest(&t), v);
        assert!(off.is_empty());
    }
}
