//! Opt-in reuse of minted credentials (`reuse.min_remaining_seconds`): a caller already verified
//! and authorized gets back the credentials minted for the same caller (issuer, subject, tenant
//! scope) while enough of their lifetime remains. Per worker, bounded in entries (and so in
//! bytes: RGW's credentials are a few hundred bytes), never in shared data (they are secrets),
//! and gone with the configuration (a new configuration builds a new gateway).
use std::collections::HashMap;

use crate::fifo::Fifo;

use crate::sts::response::AssumedCredentials;
use crate::token::cache::TokenDigest;

struct Stored {
    creds: AssumedCredentials,
    expires_ms: u64,
}

pub struct ReuseStore {
    max_entries: usize,
    min_remaining_ms: u64,
    entries: HashMap<TokenDigest, Stored>,
    /// Insertion order (oldest first); always the same keys as `entries`.
    order: Fifo<TokenDigest>,
}

/// Longest credentials kept (RGW's are ~460 bytes); longer ones are not stored.
const MAX_STORED_BYTES: usize = 4096;

impl ReuseStore {
    pub fn new(max_entries: usize, min_remaining_seconds: u64) -> ReuseStore {
        ReuseStore {
            max_entries,
            min_remaining_ms: min_remaining_seconds.saturating_mul(1000),
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

    pub fn consistent(&self) -> bool {
        self.order.len() == self.entries.len()
            && self.entries.keys().all(|k| self.order.contains(k))
    }

    /// Credentials for `key` with at least the configured lifetime left at `now_ms`.
    pub fn get(&mut self, key: &TokenDigest, now_ms: u64) -> Option<AssumedCredentials> {
        let e = self.entries.get(key)?;
        if e.expires_ms.saturating_sub(now_ms) < self.min_remaining_ms || e.expires_ms <= now_ms {
            self.remove(key);
            return None;
        }
        Some(e.creds.clone())
    }

    pub fn put(&mut self, key: TokenDigest, creds: AssumedCredentials, expires_ms: u64) {
        let bytes = creds.access_key_id.len()
            + creds.secret_access_key.len()
            + creds.session_token.len()
            + creds.expiration.len();
        if self.max_entries == 0 || bytes > MAX_STORED_BYTES {
            return;
        }
        self.remove(&key);
        self.order.push(key);
        self.entries.insert(key, Stored { creds, expires_ms });
        // One insert adds one entry: at most one eviction.
        if self.entries.len() > self.max_entries {
            if let Some(oldest) = self.order.pop_oldest() {
                self.entries.remove(&oldest);
            }
        }
    }

    fn remove(&mut self, key: &TokenDigest) {
        if self.entries.remove(key).is_some() {
            self.order.remove(key);
        }
    }
}

#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    fn creds(i: u8) -> AssumedCredentials {
        AssumedCredentials {
            access_key_id: format!("AK{i}"),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            expiration: "x".into(),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u64),
        Get(u8),
        Advance(u64),
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::test_support::cases(256), ..ProptestConfig::default() })]
        #[test]
        fn store_matches_model(ops in prop::collection::vec(prop_oneof![
            3 => (0..8u8, 1..5_000u64).prop_map(|(k, life)| Op::Put(k, life)),
            3 => (0..8u8).prop_map(Op::Get),
            1 => (1..2_000u64).prop_map(Op::Advance),
        ], 1..200)) {
            const MAX: usize = 4;
            const MIN_REMAINING_MS: u64 = 1_000;
            let mut s = ReuseStore::new(MAX, 1);
            // (key, access key id, expires), oldest first.
            let mut model: Vec<(u8, String, u64)> = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Put(k, life) => {
                        let c = creds(k.wrapping_add(now as u8));
                        s.put([k; 32], c.clone(), now + life);
                        model.retain(|m| m.0 != k);
                        model.push((k, c.access_key_id, now + life));
                        if model.len() > MAX {
                            model.remove(0);
                        }
                    }
                    Op::Get(k) => {
                        let got = s.get(&[k; 32], now).map(|c| c.access_key_id);
                        let want = match model.iter().position(|m| m.0 == k) {
                            Some(i) if model[i].2.saturating_sub(now) >= MIN_REMAINING_MS && model[i].2 > now => {
                                Some(model[i].1.clone())
                            }
                            Some(i) => {
                                model.remove(i);
                                None
                            }
                            None => None,
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(ms) => now += ms,
                }
                prop_assert!(s.consistent());
                prop_assert_eq!(s.len(), model.len());
                prop_assert!(s.len() <= MAX);
            }
        }
    }
}
