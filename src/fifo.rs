//! Keys in insertion order, with removal from anywhere: the eviction order of the token cache,
//! the reuse store and the parking. A queue whose entries go stale when their key is removed or
//! pushed again (skipped when they reach the front, and compacted away once they outnumber the
//! live ones), so every operation is O(1) amortized and the queue never holds more than
//! `2 × len + 16` entries. (Smaller in the module than a `BTreeMap` per value type.)
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct Fifo<K> {
    seq_of: HashMap<K, u64>,
    queue: VecDeque<(u64, K)>,
    next: u64,
}

impl<K: Copy + Eq + Hash> Default for Fifo<K> {
    fn default() -> Self {
        Fifo {
            seq_of: HashMap::new(),
            queue: VecDeque::new(),
            next: 0,
        }
    }
}

impl<K: Copy + Eq + Hash> Fifo<K> {
    pub fn len(&self) -> usize {
        self.seq_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq_of.is_empty()
    }

    /// Entries in the queue, stale ones included (for the bounds of the property tests).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn contains(&self, k: &K) -> bool {
        self.seq_of.contains_key(k)
    }

    /// `k` becomes the newest (moved there if it was present).
    pub fn push(&mut self, k: K) {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.seq_of.insert(k, seq);
        self.queue.push_back((seq, k));
        self.compact();
    }

    pub fn remove(&mut self, k: &K) -> bool {
        let removed = self.seq_of.remove(k).is_some();
        if removed {
            self.compact();
        }
        removed
    }

    pub fn oldest(&mut self) -> Option<K> {
        self.skip_stale();
        self.queue.front().map(|(_, k)| *k)
    }

    pub fn pop_oldest(&mut self) -> Option<K> {
        self.skip_stale();
        let (_, k) = self.queue.pop_front()?;
        self.seq_of.remove(&k);
        Some(k)
    }

    fn is_live(&self, seq: u64, k: &K) -> bool {
        self.seq_of.get(k) == Some(&seq)
    }

    fn skip_stale(&mut self) {
        // Each pass removes one stale entry: at most `queue.len()` passes.
        for _ in 0..self.queue.len() {
            match self.queue.front() {
                Some(&(seq, k)) if !self.is_live(seq, &k) => {
                    self.queue.pop_front();
                }
                _ => break,
            }
        }
    }

    fn compact(&mut self) {
        if self.queue.len() > 2 * self.seq_of.len() + 16 {
            let seq_of = &self.seq_of;
            self.queue.retain(|(seq, k)| seq_of.get(k) == Some(seq));
        }
    }
}

#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::test_support::cases(256), ..ProptestConfig::default() })]
        #[test]
        fn fifo_matches_a_list(ops in prop::collection::vec((0..4u8, 0..10u8), 1..400)) {
            let mut f = Fifo::default();
            let mut model: Vec<u8> = Vec::new();
            for (op, k) in ops {
                match op {
                    0 | 1 => {
                        f.push(k);
                        model.retain(|m| *m != k);
                        model.push(k);
                    }
                    2 => {
                        prop_assert_eq!(f.remove(&k), model.contains(&k));
                        model.retain(|m| *m != k);
                    }
                    _ => {
                        let want = (!model.is_empty()).then(|| model.remove(0));
                        prop_assert_eq!(f.pop_oldest(), want);
                    }
                }
                prop_assert_eq!(f.len(), model.len());
                prop_assert_eq!(f.oldest(), model.first().copied());
                prop_assert!(f.queue_len() <= 2 * f.len() + 17, "queue {}", f.queue_len());
            }
        }
    }
}
