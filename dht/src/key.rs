//! 256-bit keys in the Kademlia XOR metric (Kademlia §2.1), hashed with BLAKE3.
//!
//! Node ids, record keys and chunk ids all live in one key space, so "the peers closest to a
//! chunk" and "the peers closest to a node id" are answered by the same routing table.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Number of bits in a key, and so the number of buckets in a routing table.
pub const KEY_BITS: usize = 256;

/// A point in the 256-bit key space: a node id, a record key or a chunk id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(#[serde(with = "serde_bytes")] [u8; 32]);

/// The XOR distance between two keys, ordered as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance([u8; 32]);

impl Key {
    /// Wraps 32 raw bytes as a key. Use this for a chunk id, which already is a BLAKE3 hash.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The node id of a peer: BLAKE3 of its public key bytes, domain-separated from other keys so
    /// that no one can choose content whose key equals a node id.
    pub fn for_peer(public_key: &[u8]) -> Self {
        Self::derive("cairn 2026 node id", public_key)
    }

    /// The key under which a signed record is stored: BLAKE3 of the publisher's public key.
    pub fn for_record(public_key: &[u8; 32]) -> Self {
        Self::derive("cairn 2026 record key", public_key)
    }

    /// BLAKE3 of arbitrary bytes, without domain separation: the key of a chunk with these bytes.
    pub fn hash(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// A uniformly random key, from the caller's seeded RNG.
    pub fn random(rng: &mut impl Rng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A random key that falls in bucket `index` of a table whose local key is `self`: it shares
    /// the first `255 - index` bits with `self`, differs in the next, and is random after.
    /// Used to refresh a bucket (Kademlia §2.3).
    pub fn random_in_bucket(&self, index: usize, rng: &mut impl Rng) -> Self {
        assert!(index < KEY_BITS, "bucket index {index} out of range");
        let random = Self::random(rng);
        let bit = KEY_BITS - 1 - index; // position from the most significant bit
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            for b in 0..8 {
                let pos = i * 8 + b;
                let mask = 0x80u8 >> b;
                let v = if pos < bit {
                    self.0[i] & mask
                } else if pos == bit {
                    !self.0[i] & mask
                } else {
                    random.0[i] & mask
                };
                *byte |= v;
            }
        }
        Self(out)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The bucket `other` belongs to in a table whose local key is `self`: 255 minus the number of
    /// leading bits the two share, so bucket `i` holds distances in `[2^i, 2^(i+1))`. `None` when
    /// the keys are equal (a table never holds its own key).
    pub fn bucket_index(&self, other: &Key) -> Option<usize> {
        self.distance(other).bucket_index()
    }

    fn derive(context: &str, material: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(material);
        Self(*hasher.finalize().as_bytes())
    }
}

impl Distance {
    /// The zero distance (a key to itself).
    pub const ZERO: Distance = Distance([0; 32]);

    /// The raw bytes, big-endian.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `floor(log2(self))`, the bucket this distance falls in; `None` for zero.
    pub fn bucket_index(&self) -> Option<usize> {
        let leading = self.leading_zeros();
        (leading < KEY_BITS).then(|| KEY_BITS - 1 - leading)
    }

    /// Number of leading zero bits (256 for the zero distance).
    pub fn leading_zeros(&self) -> usize {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros() as usize;
            }
        }
        n
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self:x})")
    }
}

/// Shows the first 8 bytes in hex, enough to tell keys apart in logs.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Shows all 32 bytes in hex.
impl fmt::LowerHex for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key::from_bytes)
    }

    proptest! {
        #[test]
        fn distance_to_self_is_zero(a in key()) {
            prop_assert_eq!(a.distance(&a), Distance::ZERO);
            prop_assert_eq!(a.bucket_index(&a), None);
        }

        #[test]
        fn distance_is_symmetric(a in key(), b in key()) {
            prop_assert_eq!(a.distance(&b), b.distance(&a));
        }

        #[test]
        fn distance_is_zero_only_for_equal_keys(a in key(), b in key()) {
            prop_assert_eq!(a.distance(&b) == Distance::ZERO, a == b);
        }

        /// XOR satisfies the triangle inequality: d(a,c) <= d(a,b) + d(b,c). With XOR the
        /// stronger d(a,c) = d(a,b) ^ d(b,c) <= d(a,b) + d(b,c) holds; we check the XOR identity
        /// and that d(a,c) is at most the larger of the two doubled.
        #[test]
        fn triangle(a in key(), b in key(), c in key()) {
            let ab = a.distance(&b);
            let bc = b.distance(&c);
            let ac = a.distance(&c);
            let mut x = [0u8; 32];
            for (i, b) in x.iter_mut().enumerate() { *b = ab.0[i] ^ bc.0[i]; }
            prop_assert_eq!(ac, Distance(x));
            // d(a,c) < 2 * max(d(a,b), d(b,c)): compare bucket indices.
            let max = ab.max(bc);
            prop_assert!(ac.bucket_index() <= max.bucket_index());
        }

        /// Unidirectionality (Kademlia §2.1): for a given key and distance there is one key.
        #[test]
        fn unidirectional(a in key(), b in key(), c in key()) {
            if a.distance(&b) == a.distance(&c) {
                prop_assert_eq!(b, c);
            }
        }

        /// Ordering by distance to a target is a total order consistent with the bucket index.
        #[test]
        fn order_by_distance_is_total(t in key(), mut keys in proptest::collection::vec(key(), 0..50)) {
            keys.sort_by_key(|k| t.distance(k));
            for w in keys.windows(2) {
                let (d0, d1) = (t.distance(&w[0]), t.distance(&w[1]));
                prop_assert!(d0 <= d1);
                prop_assert!(d0.bucket_index() <= d1.bucket_index());
            }
        }

        #[test]
        fn random_in_bucket_lands_in_bucket(a in key(), index in 0usize..256, seed in any::<u64>()) {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let k = a.random_in_bucket(index, &mut rng);
            prop_assert_eq!(a.bucket_index(&k), Some(index));
        }
    }

    #[test]
    fn bucket_index_boundaries() {
        let zero = Key::from_bytes([0; 32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(zero.bucket_index(&Key::from_bytes(one)), Some(0));
        let mut top = [0u8; 32];
        top[0] = 0x80;
        assert_eq!(zero.bucket_index(&Key::from_bytes(top)), Some(255));
    }

    #[test]
    fn domains_differ() {
        let pk = [7u8; 32];
        assert_ne!(Key::for_peer(&pk), Key::for_record(&pk));
        assert_ne!(Key::for_peer(&pk), Key::hash(&pk));
    }
}
