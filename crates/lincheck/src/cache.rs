//! The memo of configurations already explored: (linearized set, state) pairs.
//!
//! Lowe's refinement of Wing & Gong: two search paths that linearized the same set of
//! operations and reached the same state have the same future, so the second is cut.
//!
//! Extended with dominance over unknown-outcome ops: a configuration whose search failed,
//! with completed ops K, unknown ops U' and state s, also rules out (K, U, s) for every
//! U ⊇ U'. Every completion of the latter is one of the former (the extra unknown ops are
//! still pending there and need never apply), so it has none either. Only finished (failed)
//! configurations dominate; in-progress ones (ancestors on the search path) only match
//! exactly, which cannot happen because sets grow along a path.
//!
//! Entries are stored exactly (never by hash alone): a hash collision can never prune a
//! branch that could have succeeded. Skipping a check only costs time, never correctness,
//! which is what bounds the dominance scan.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;

use crate::bitset::{Compressed, LinearizedSet, is_subset, mix64};
use crate::states::StateId;

/// Marks the end of a chain.
const CHAIN_END: u32 = u32::MAX;

/// Memory charged per entry for the two hash maps (key, value, control byte, load slack).
const BUCKETS_BYTES_PER_ENTRY: usize = 48;

/// Failed configurations examined per dominance check: the most recent ones of the same
/// (completed ops, state). Bounds the cost of one insert when many variants pile up.
const DOMINANCE_SCAN_MAX: usize = 32;

/// Index of a remembered configuration.
pub(crate) type EntryId = u32;

/// One remembered configuration. Its set's two regions are stored back to back in the
/// arena from `start`: `lens[0]` words of the completed region, then `lens[1]` words of the
/// unknown region, each after `skips[r]` implicit all-ones words.
#[derive(Clone, Copy, Debug)]
struct Entry {
    state: StateId,
    /// Next entry with the same full hash, or `CHAIN_END`.
    next_exact: u32,
    /// Next failed entry with the same (completed region, state) hash, or `CHAIN_END`.
    /// Meaningful once the entry is failed.
    next_failed: u32,
    /// Hash of (completed region, state), to file the entry once it fails.
    dominance_hash: u64,
    failed: bool,
    start: usize,
    skips: [u32; 2],
    lens: [u32; 2],
}

type PremixedMap = HashMap<u64, u32, BuildHasherDefault<PremixedHasher>>;

/// Set of configurations seen by one partition's search.
#[derive(Default)]
pub(crate) struct Cache {
    /// Hash of (whole set, state) -> first entry of its chain.
    exact: PremixedMap,
    /// Hash of (completed region, state) -> most recent failed entry of its chain.
    failed: PremixedMap,
    entries: Vec<Entry>,
    /// Arena holding every entry's canonical words back to back.
    words: Vec<u64>,
}

impl Cache {
    /// Records (`set`, `state`) as in progress and returns its id, or `None` if it was seen
    /// before or is dominated by a failed configuration.
    pub(crate) fn insert(&mut self, set: &LinearizedSet, state: StateId) -> Option<EntryId> {
        let salt = state.as_u64().wrapping_mul(0xA24B_AED4_963E_E407);
        let exact_hash = mix64(set.hash() ^ salt);
        let dominance_hash = mix64(set.known_hash() ^ salt);
        let regions = set.canonical();
        let head = self.exact.get(&exact_hash).copied().unwrap_or(CHAIN_END);
        let mut cursor = head;
        while cursor != CHAIN_END {
            let entry = &self.entries[cursor as usize];
            if entry.state == state
                && self.region(entry, 0) == regions[0]
                && self.region(entry, 1) == regions[1]
            {
                return None;
            }
            cursor = entry.next_exact;
        }
        if self.is_dominated(dominance_hash, state, &regions) {
            return None;
        }
        let id = u32::try_from(self.entries.len()).expect("lincheck: over 2^32 cache entries");
        assert!(id != CHAIN_END, "lincheck: cache full");
        let fits = |n: usize| u32::try_from(n).expect("set fits in 2^32 words");
        self.entries.push(Entry {
            state,
            next_exact: head,
            next_failed: CHAIN_END,
            dominance_hash,
            failed: false,
            start: self.words.len(),
            skips: regions.map(|(skip, _)| fits(skip)),
            lens: regions.map(|(_, middle)| fits(middle.len())),
        });
        for (_, middle) in regions {
            self.words.extend_from_slice(middle);
        }
        self.exact.insert(exact_hash, id);
        Some(id)
    }

    /// Whether a failed entry with the same completed ops and state has a subset of the
    /// unknown ops of `regions`.
    fn is_dominated(
        &self,
        dominance_hash: u64,
        state: StateId,
        regions: &[Compressed<'_>; 2],
    ) -> bool {
        let mut cursor = self
            .failed
            .get(&dominance_hash)
            .copied()
            .unwrap_or(CHAIN_END);
        for _ in 0..DOMINANCE_SCAN_MAX {
            if cursor == CHAIN_END {
                return false;
            }
            let entry = &self.entries[cursor as usize];
            if entry.state == state
                && self.region(entry, 0) == regions[0]
                && is_subset(self.region(entry, 1), regions[1])
            {
                return true;
            }
            cursor = entry.next_failed;
        }
        false
    }

    /// Records that the search from configuration `id` finished without success.
    ///
    /// # Panics
    /// If it was already marked (each configuration is explored once).
    pub(crate) fn mark_failed(&mut self, id: EntryId) {
        let entry = &mut self.entries[id as usize];
        assert!(!entry.failed, "configuration {id} failed twice");
        entry.failed = true;
        entry.next_failed = self
            .failed
            .insert(entry.dominance_hash, id)
            .unwrap_or(CHAIN_END);
    }

    /// Region `r` (0 = completed ops, 1 = unknown ops) of an entry's set.
    fn region(&self, entry: &Entry, r: usize) -> Compressed<'_> {
        let start = entry.start + if r == 0 { 0 } else { entry.lens[0] as usize };
        let len = entry.lens[r] as usize;
        (entry.skips[r] as usize, &self.words[start..start + len])
    }

    /// Number of configurations remembered.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate heap bytes held (deterministic: counts, not allocator capacities).
    pub(crate) fn bytes(&self) -> usize {
        self.entries.len() * (size_of::<Entry>() + BUCKETS_BYTES_PER_ENTRY) + self.words.len() * 8
    }
}

/// A hasher for keys that are already well-mixed 64-bit hashes: passes them through.
#[derive(Default)]
struct PremixedHasher(u64);

impl Hasher for PremixedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in for completeness.
        for byte in bytes {
            self.0 = mix64(self.0 ^ u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_set_and_state_is_seen_once_whatever_the_insertion_order() {
        // Goal: exact memo semantics; method: insert equal sets built in different orders.
        let mut cache = Cache::default();
        let mut a = LinearizedSet::new(200, 10);
        let mut b = LinearizedSet::new(200, 10);
        let unknown = a.bit_of_unknown(3);
        for bit in [3, 150, 64, 0, unknown] {
            a.insert(bit);
        }
        for bit in [0, 64, 3, unknown, 150] {
            b.insert(bit);
        }
        assert!(cache.insert(&a, StateId::ABSENT).is_some());
        assert!(cache.insert(&b, StateId::ABSENT).is_none());
        b.remove(unknown);
        assert!(cache.insert(&b, StateId::ABSENT).is_some());
        b.remove(150);
        assert!(cache.insert(&b, StateId::ABSENT).is_some());
        assert_eq!(cache.len(), 3);
        assert!(cache.bytes() > 0);
    }

    #[test]
    fn only_failed_configurations_dominate_supersets_of_unknown_ops() {
        // Goal: dominance is sound; method: a superset is new while its subset is in
        // progress, and ruled out once the subset failed.
        let mut cache = Cache::default();
        let mut set = LinearizedSet::new(10, 10);
        set.insert(0);
        let base = cache.insert(&set, StateId::ABSENT).unwrap();
        set.insert(set.bit_of_unknown(2));
        assert!(cache.insert(&set, StateId::ABSENT).is_some());
        set.insert(set.bit_of_unknown(5));
        cache.mark_failed(base);
        assert!(cache.insert(&set, StateId::ABSENT).is_none());
        set.insert(1);
        assert!(
            cache.insert(&set, StateId::ABSENT).is_some(),
            "different completed ops"
        );
    }
}
