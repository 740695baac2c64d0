//! The JWKS as all worker VMs see it, in Envoy's shared data, and who fetches it when.
//!
//! Per source two entries: `<key>.doc` holds the last good JWKS document, `<key>.meta` a small
//! record `{version, fetched_ok_ms, next_attempt_ms}`. A VM that wants to fetch first moves
//! `next_attempt_ms` past the fetch timeout with a compare-and-swap (a lease), so one fetch runs
//! for all workers; readers look at the small meta on each request and re-read and re-parse the
//! document only when the version moved.

use std::cell::RefCell;
use std::collections::HashMap;

/// The host's shared-data calls, behind a trait so the protocol is tested natively.
pub trait SharedStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `false` when `cas` no longer matches (someone else wrote first) or the write failed.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// Bumped on every successful fetch; 0 means nothing fetched yet.
    pub version: u64,
    pub fetched_ok_ms: u64,
    pub next_attempt_ms: u64,
    /// While a fetch runs: when its lease ends; 0 when no fetch is in flight.
    pub lease_until_ms: u64,
}

impl Meta {
    fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, v) in out.chunks_exact_mut(8).zip([
            self.version,
            self.fetched_ok_ms,
            self.next_attempt_ms,
            self.lease_until_ms,
        ]) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Meta {
        let mut words = bytes
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_be_bytes).unwrap_or(0));
        Meta {
            version: words.next().unwrap_or(0),
            fetched_ok_ms: words.next().unwrap_or(0),
            next_attempt_ms: words.next().unwrap_or(0),
            lease_until_ms: words.next().unwrap_or(0),
        }
    }
}

/// Timing of one source, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub refresh_ms: u64,
    pub min_refetch_ms: u64,
    pub retry_ms: u64,
    /// How long a claimed fetch may take before another VM may try.
    pub lease_ms: u64,
}

pub struct JwksStore<'a, S: SharedStore> {
    pub store: &'a S,
    /// Shared-data key prefix of this source.
    pub key: &'a str,
}

/// CAS retries when VMs race on the meta record; losing all of them only delays a fetch.
const CAS_ATTEMPTS: usize = 8;

impl<S: SharedStore> JwksStore<'_, S> {
    fn meta_key(&self) -> String {
        format!("{}.meta", self.key)
    }

    fn doc_key(&self) -> String {
        format!("{}.doc", self.key)
    }

    pub fn meta(&self) -> (Meta, Option<u32>) {
        let (bytes, cas) = self.store.get(&self.meta_key());
        (bytes.map(|b| Meta::decode(&b)).unwrap_or_default(), cas)
    }

    /// The current document if its version differs from `known`.
    pub fn load_if_newer(&self, known: u64) -> Option<(u64, Vec<u8>)> {
        let (meta, _) = self.meta();
        if meta.version == 0 || meta.version == known {
            return None;
        }
        let (doc, _) = self.store.get(&self.doc_key());
        doc.map(|d| (meta.version, d))
    }

    /// Periodic refresh: claims the fetch when it is due. `true` means: fetch now.
    pub fn claim_due(&self, now_ms: u64, t: &Timing) -> bool {
        self.claim(now_ms, t, |m| now_ms >= m.next_attempt_ms)
    }

    /// Refetch for an unknown `kid`: at most once per `min_refetch_ms` since the last good fetch,
    /// never while another fetch holds the lease or a failure's retry delay runs, but without
    /// waiting for the next scheduled refresh.
    pub fn claim_refetch(&self, now_ms: u64, t: &Timing) -> bool {
        self.claim(now_ms, t, |m| {
            let scheduled =
                m.version > 0 && m.next_attempt_ms == m.fetched_ok_ms.saturating_add(t.refresh_ms);
            (scheduled || now_ms >= m.next_attempt_ms)
                && now_ms >= m.fetched_ok_ms.saturating_add(t.min_refetch_ms)
        })
    }

    fn claim(&self, now_ms: u64, t: &Timing, due: impl Fn(&Meta) -> bool) -> bool {
        let (meta, cas) = self.meta();
        if !due(&meta) {
            return false;
        }
        let claimed = Meta {
            next_attempt_ms: now_ms.saturating_add(t.lease_ms),
            lease_until_ms: now_ms.saturating_add(t.lease_ms),
            ..meta
        };
        // Envoy treats cas 0 (no entry yet) as unconditional: at start-up two VMs may both
        // fetch once, which is harmless; afterwards the cas makes the lease exclusive.
        self.store
            .set(&self.meta_key(), &claimed.encode(), Some(cas.unwrap_or(0)))
    }

    pub fn record_success(&self, doc: &[u8], now_ms: u64, t: &Timing) -> u64 {
        self.store.set(&self.doc_key(), doc, None);
        self.update(|m| Meta {
            version: m.version.wrapping_add(1).max(1),
            fetched_ok_ms: now_ms,
            next_attempt_ms: now_ms.saturating_add(t.refresh_ms),
            lease_until_ms: 0,
        })
        .version
    }

    pub fn record_failure(&self, now_ms: u64, t: &Timing) {
        self.update(|m| Meta {
            next_attempt_ms: now_ms.saturating_add(t.retry_ms),
            lease_until_ms: 0,
            ..*m
        });
    }

    /// Some VM is fetching this source right now: a request missing a key may wait for it.
    #[cfg(test)]
    fn fetch_in_flight(&self, now_ms: u64) -> bool {
        self.meta().0.lease_until_ms > now_ms
    }

    fn update(&self, f: impl Fn(&Meta) -> Meta) -> Meta {
        let mut next = Meta::default();
        for _ in 0..CAS_ATTEMPTS {
            let (meta, cas) = self.meta();
            next = f(&meta);
            if self
                .store
                .set(&self.meta_key(), &next.encode(), Some(cas.unwrap_or(0)))
            {
                break;
            }
        }
        next
    }
}

/// An in-memory store with Envoy's shared-data semantics (the cas grows on every write; a
/// write to an existing key with a stale non-zero cas fails; cas 0, or a missing key, writes
/// unconditionally), for native tests and the fuzz targets.
#[derive(Default)]
pub struct MemoryStore(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut m = self.0.borrow_mut();
        let current = m.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(have)) = (cas, current) {
            if expected != 0 && expected != have {
                return false;
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        m.insert(key.to_string(), (value.to_vec(), next));
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const T: Timing = Timing {
        refresh_ms: 300_000,
        min_refetch_ms: 30_000,
        retry_ms: 5_000,
        lease_ms: 3_000,
    };

    #[test]
    fn one_fetch_for_all_workers() {
        let shared = MemoryStore::default();
        let a = JwksStore {
            store: &shared,
            key: "k",
        };
        let b = JwksStore {
            store: &shared,
            key: "k",
        };
        assert!(a.claim_due(1000, &T));
        assert!(!b.claim_due(1000, &T), "lease held");
        assert!(!b.claim_due(3999, &T));
        assert!(
            b.claim_due(4000, &T),
            "lease expired: a fetch that hung is retried"
        );
        assert_eq!(a.record_success(b"{\"keys\":[]}", 4100, &T), 1);
        assert!(!a.claim_due(4100 + 299_999, &T));
        assert!(a.claim_due(4100 + 300_000, &T));
    }

    #[test]
    fn readers_see_new_versions_only() {
        let shared = MemoryStore::default();
        let s = JwksStore {
            store: &shared,
            key: "k",
        };
        assert_eq!(s.load_if_newer(0), None);
        s.claim_due(0, &T);
        let v = s.record_success(b"doc1", 10, &T);
        assert_eq!(s.load_if_newer(0), Some((v, b"doc1".to_vec())));
        assert_eq!(s.load_if_newer(v), None);
        s.record_success(b"doc2", 20, &T);
        assert_eq!(s.load_if_newer(v), Some((v + 1, b"doc2".to_vec())));
    }

    #[test]
    fn failure_keeps_document_and_retries_later() {
        let shared = MemoryStore::default();
        let s = JwksStore {
            store: &shared,
            key: "k",
        };
        s.claim_due(0, &T);
        let v = s.record_success(b"good", 0, &T);
        assert!(s.claim_due(300_000, &T));
        s.record_failure(300_100, &T);
        assert_eq!(s.load_if_newer(0), Some((v, b"good".to_vec())));
        assert!(!s.claim_due(305_099, &T));
        assert!(s.claim_due(305_100, &T));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let shared = MemoryStore::default();
        let s = JwksStore {
            store: &shared,
            key: "k",
        };
        s.claim_due(0, &T);
        s.record_success(b"doc", 1_000, &T);
        assert!(
            !s.claim_refetch(30_999, &T),
            "within min_refetch of the last fetch"
        );
        assert!(s.claim_refetch(31_000, &T));
        assert!(
            !s.claim_refetch(31_001, &T),
            "lease held by the first refetch"
        );
        s.record_success(b"doc2", 31_050, &T);
        assert!(!s.fetch_in_flight(31_051));
        assert!(!s.claim_refetch(40_000, &T));
        assert!(s.claim_refetch(61_050, &T));
        // After a failure the retry delay also holds back refetches.
        s.record_failure(61_100, &T);
        assert!(!s.claim_refetch(62_000, &T));
        assert!(s.claim_refetch(66_100, &T));
    }

    #[test]
    fn meta_roundtrip_and_garbage() {
        let m = Meta {
            version: 7,
            fetched_ok_ms: 8,
            next_attempt_ms: 9,
            lease_until_ms: 10,
        };
        assert_eq!(Meta::decode(&m.encode()), m);
        assert_eq!(Meta::decode(b"xx"), Meta::default());
    }
}
