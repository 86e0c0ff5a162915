//! The simulator's omniscient view of who is online: sorted lists of live node ids, from which
//! it computes the ground truth a lookup is judged against ("the k closest live honest nodes to
//! the target") and the answers of adversaries that route from global knowledge.
//!
//! The n closest keys to a target in the XOR metric all share the longest prefix with it that
//! still holds n keys, and the keys sharing a prefix are one contiguous run of a sorted list. So
//! a query is a binary search for that prefix length (each step two `partition_point`s), a scan
//! of a run of about 2n keys, and a sort of that run: microseconds at 100,000 nodes.

use cairn_dht::{KEY_BITS, Key};

/// A sorted list of `(id, slot)` pairs.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyIndex {
    entries: Vec<(Key, u32)>,
}

impl KeyIndex {
    pub(crate) fn insert(&mut self, id: Key, slot: u32) {
        let pos = self.entries.partition_point(|(k, _)| *k < id);
        self.entries.insert(pos, (id, slot));
    }

    pub(crate) fn remove(&mut self, id: &Key) {
        let pos = self.entries.partition_point(|(k, _)| k < id);
        if self.entries.get(pos).is_some_and(|(k, _)| k == id) {
            self.entries.remove(pos);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot at `index` in key order.
    pub(crate) fn slot_at(&self, index: usize) -> u32 {
        self.entries[index].1
    }

    /// Every entry whose key starts with the first `prefix` bits of `target`.
    pub(crate) fn with_prefix(&self, target: &Key, prefix: usize) -> &[(Key, u32)] {
        let (lo, hi) = prefix_bounds(target, prefix);
        let start = self.entries.partition_point(|(k, _)| *k < lo);
        let end = self.entries.partition_point(|(k, _)| *k <= hi);
        &self.entries[start..end]
    }

    /// The `n` entries closest to `target` that pass `keep`, closest first.
    pub(crate) fn closest(
        &self,
        target: &Key,
        n: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Vec<(Key, u32)> {
        if n == 0 || self.entries.is_empty() {
            return Vec::new();
        }
        // Longest prefix whose run holds at least n entries (before filtering).
        let (mut lo, mut hi) = (0usize, KEY_BITS);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.with_prefix(target, mid).len() >= n {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut prefix = lo;
        // Shorten the prefix until enough entries pass the filter (bounded by the key length).
        loop {
            let mut run: Vec<(Key, u32)> = self
                .with_prefix(target, prefix)
                .iter()
                .filter(|(_, s)| keep(*s))
                .copied()
                .collect();
            if run.len() >= n || prefix == 0 {
                run.sort_unstable_by_key(|(k, _)| target.distance(k));
                run.truncate(n);
                return run;
            }
            prefix -= 1;
        }
    }
}

/// The smallest and largest keys sharing the first `prefix` bits of `target`.
pub(crate) fn prefix_bounds(target: &Key, prefix: usize) -> (Key, Key) {
    let mut lo = *target.as_bytes();
    let mut hi = *target.as_bytes();
    for bit in prefix.min(KEY_BITS)..KEY_BITS {
        let mask = 0x80u8 >> (bit % 8);
        lo[bit / 8] &= !mask;
        hi[bit / 8] |= mask;
    }
    (Key::from_bytes(lo), Key::from_bytes(hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn closest_matches_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut index = KeyIndex::default();
        let mut all = Vec::new();
        for slot in 0..2000u32 {
            let id = Key::random(&mut rng);
            index.insert(id, slot);
            all.push((id, slot));
        }
        for (id, _) in all.iter().take(100) {
            index.remove(id);
        }
        all.drain(..100);
        for round in 0..200 {
            let target = if round % 2 == 0 {
                Key::random(&mut rng)
            } else {
                all[rng.random_range(0..all.len())].0
            };
            let n = rng.random_range(1..50);
            let keep = |s: u32| !s.is_multiple_of(3);
            let got = index.closest(&target, n, keep);
            let mut want: Vec<(Key, u32)> = all.iter().copied().filter(|(_, s)| keep(*s)).collect();
            want.sort_by_key(|(k, _)| target.distance(k));
            want.truncate(n);
            assert_eq!(got, want);
        }
    }
}
