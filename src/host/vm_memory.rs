//! `sts_gateway_vm_memory_bytes`: one gauge that Envoy merges across VMs, so each VM would
//! overwrite the others'. Instead every VM writes its own linear-memory size into a small table
//! in shared data and records the largest live value: the gauge is the worst VM's memory.
use crate::token::jwks_store::SharedStore;

const KEY: &str = "sts-gateway.vm-memory";
/// Entries older than this belong to VMs that are gone (reloaded, or a replaced config).
const STALE_MS: u64 = 10_000;
/// Bound of the table (VMs per Envoy: workers + main thread, times plugin configs).
const MAX_VMS: usize = 64;
const ENTRY: usize = 24;
const CAS_ATTEMPTS: usize = 4;

/// Records `bytes` for VM `vm` at `now_ms`; returns the largest live value, or `None` if the
/// table could not be updated (lost every compare-and-swap: try again on the next tick).
pub fn report<S: SharedStore + ?Sized>(store: &S, vm: u64, bytes: u64, now_ms: u64) -> Option<u64> {
    for _ in 0..CAS_ATTEMPTS {
        let (old, cas) = store.get(KEY);
        let mut rows: Vec<[u64; 3]> = old
            .unwrap_or_default()
            .chunks_exact(ENTRY)
            .map(|c| {
                let w = |i: usize| {
                    c.get(i * 8..i * 8 + 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0)
                };
                [w(0), w(1), w(2)]
            })
            .filter(|r| r[0] != vm && now_ms.saturating_sub(r[2]) < STALE_MS)
            .collect();
        // Oldest rows first: beyond the bound, the longest-unreported VMs leave.
        let excess = rows.len().saturating_sub(MAX_VMS - 1);
        rows.drain(..excess);
        rows.push([vm, bytes, now_ms]);
        let max = rows.iter().map(|r| r[1]).max().unwrap_or(bytes);
        let encoded: Vec<u8> = rows
            .iter()
            .flat_map(|r| r.iter().flat_map(|w| w.to_be_bytes()))
            .collect();
        if store.set(KEY, &encoded, Some(cas.unwrap_or(0))) {
            return Some(max);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jwks_store::MemoryStore;

    #[test]
    fn largest_live_vm_wins_and_stale_ones_leave() {
        let s = MemoryStore::default();
        assert_eq!(report(&s, 1, 100, 0), Some(100));
        assert_eq!(report(&s, 2, 300, 1), Some(300));
        assert_eq!(report(&s, 1, 200, 2), Some(300), "each VM has its own row");
        // VM 2 stops reporting (reloaded): after STALE_MS its value no longer counts.
        assert_eq!(report(&s, 1, 150, 2 + STALE_MS), Some(150));
    }

    #[test]
    fn bounded_table() {
        let s = MemoryStore::default();
        for vm in 0..1000u64 {
            report(&s, vm, vm, 0);
        }
        assert!(s.get(KEY).0.unwrap().len() <= MAX_VMS * ENTRY);
        assert_eq!(report(&s, 5000, 1, 0), Some(999));
    }
}
