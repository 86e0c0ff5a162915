//! Where a peer keeps the records others asked it to hold: a trait, and a bounded in-memory
//! implementation. The engine only calls the trait, so a node may keep records on disk.

use std::collections::{BTreeMap, HashMap};

use crate::config::StoreLimits;
use crate::contact::IpPrefix;
use crate::{Address, Contact, Key, SignedRecord, Timestamp};

/// "This peer holds the content under this key", until `expires`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProviderRecord<A> {
    /// The provider.
    pub provider: Contact<A>,
    /// When the announcement lapses.
    pub expires: Timestamp,
}

/// Why the store refused a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store already has a record with a higher sequence, or the same sequence with another
    /// value.
    #[error("a record with sequence {held} is already stored; publish with a higher sequence")]
    Stale {
        /// The sequence held.
        held: u64,
    },
    /// The store is full.
    #[error("record store is full")]
    Full,
}

/// Storage of signed and provider records. Signatures and lifetimes are checked by the engine
/// before `put`; the store enforces sequence order and its own capacity.
pub trait RecordStore<A> {
    /// The record under `key`, if one is stored and live at `now`.
    fn get(&self, key: &Key, now: Timestamp) -> Option<&SignedRecord>;
    /// Stores `record`, unless one with a higher sequence (or the same sequence and another value)
    /// is held.
    fn put(&mut self, record: SignedRecord) -> Result<(), StoreError>;
    /// Adds or refreshes a provider of `key`.
    fn add_provider(&mut self, key: Key, record: ProviderRecord<A>) -> Result<(), StoreError>;
    /// Providers of `key` live at `now`.
    fn providers(&self, key: &Key, now: Timestamp) -> Vec<Contact<A>>;
    /// Drops everything expired at `now`.
    fn remove_expired(&mut self, now: Timestamp);
    /// Number of signed records held.
    fn record_count(&self) -> usize;
    /// Keys of the signed records held, in key order.
    fn record_keys(&self) -> Vec<Key>;
}

/// A [`RecordStore`] in memory, bounded by [`StoreLimits`].
#[derive(Debug)]
pub struct MemoryRecordStore<A> {
    limits: StoreLimits,
    records: HashMap<Key, SignedRecord>,
    // BTreeMap so that iteration (and so eviction) order is deterministic.
    providers: BTreeMap<Key, Vec<ProviderRecord<A>>>,
    /// Provider entries held per provider, and per provider address prefix (quotas).
    per_provider: HashMap<Key, usize>,
    per_prefix: HashMap<IpPrefix, usize>,
}

impl<A> MemoryRecordStore<A> {
    /// An empty store with these limits.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            records: HashMap::new(),
            providers: BTreeMap::new(),
            per_provider: HashMap::new(),
            per_prefix: HashMap::new(),
        }
    }

    /// The provider entries of `key`, expired ones included (for a store that mirrors this one
    /// on disk).
    pub fn provider_records(&self, key: &Key) -> &[ProviderRecord<A>] {
        self.providers.get(key).map_or(&[], |l| l.as_slice())
    }

    /// Keys with provider entries, in key order.
    pub fn provider_keys(&self) -> impl Iterator<Item = &Key> {
        self.providers.keys()
    }
}

impl<A: Address> MemoryRecordStore<A> {
    /// Counts one entry of `p` more (`up`) or fewer.
    fn count(
        per_provider: &mut HashMap<Key, usize>,
        per_prefix: &mut HashMap<IpPrefix, usize>,
        p: &Contact<A>,
        up: bool,
    ) {
        fn step<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, k: K, up: bool) {
            let n = map.entry(k).or_default();
            if up {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        }
        step(per_provider, p.id, up);
        per_provider.retain(|_, n| *n > 0);
        if let Some(ip) = p.addr.ip() {
            step(per_prefix, IpPrefix::of(ip), up);
            per_prefix.retain(|_, n| *n > 0);
        }
    }
}

impl<A: Address> RecordStore<A> for MemoryRecordStore<A> {
    fn get(&self, key: &Key, now: Timestamp) -> Option<&SignedRecord> {
        self.records.get(key).filter(|r| r.expires > now)
    }

    fn put(&mut self, record: SignedRecord) -> Result<(), StoreError> {
        let key = record.key();
        match self.records.get(&key) {
            Some(held) if held.sequence > record.sequence => {
                return Err(StoreError::Stale {
                    held: held.sequence,
                });
            }
            Some(held) if held.sequence == record.sequence && held.value != record.value => {
                return Err(StoreError::Stale {
                    held: held.sequence,
                });
            }
            Some(_) => {}
            None if self.records.len() >= self.limits.max_records => return Err(StoreError::Full),
            None => {}
        }
        self.records.insert(key, record);
        Ok(())
    }

    fn add_provider(&mut self, key: Key, record: ProviderRecord<A>) -> Result<(), StoreError> {
        if !self.providers.contains_key(&key)
            && self.providers.len() >= self.limits.max_provider_keys
        {
            return Err(StoreError::Full);
        }
        if let Some(existing) = self
            .providers
            .get_mut(&key)
            .and_then(|l| l.iter_mut().find(|p| p.provider.id == record.provider.id))
        {
            // A refresh keeps its place; the address is the one it announced from now.
            let old = std::mem::replace(existing, record);
            Self::count(
                &mut self.per_provider,
                &mut self.per_prefix,
                &old.provider,
                false,
            );
            Self::count(
                &mut self.per_provider,
                &mut self.per_prefix,
                &existing.provider,
                true,
            );
            return Ok(());
        }
        // Quotas: one peer, or one address prefix, cannot fill the table.
        let by_peer = self
            .per_provider
            .get(&record.provider.id)
            .copied()
            .unwrap_or(0);
        let by_prefix = record
            .provider
            .addr
            .ip()
            .and_then(|ip| self.per_prefix.get(&IpPrefix::of(ip)).copied())
            .unwrap_or(0);
        if by_peer >= self.limits.max_provider_entries_per_peer
            || by_prefix >= self.limits.max_provider_entries_per_prefix
        {
            return Err(StoreError::Full);
        }
        let list = self.providers.entry(key).or_default();
        if list.len() >= self.limits.max_providers_per_key {
            // Full: the providers known longest keep their places (they refresh them), so
            // ids that announce again and again cannot take a key's list over.
            return Err(StoreError::Full);
        }
        Self::count(
            &mut self.per_provider,
            &mut self.per_prefix,
            &record.provider,
            true,
        );
        list.push(record);
        Ok(())
    }

    fn providers(&self, key: &Key, now: Timestamp) -> Vec<Contact<A>> {
        self.providers
            .get(key)
            .map(|l| {
                l.iter()
                    .filter(|p| p.expires > now)
                    .map(|p| p.provider.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remove_expired(&mut self, now: Timestamp) {
        self.records.retain(|_, r| r.expires > now);
        let (per_provider, per_prefix) = (&mut self.per_provider, &mut self.per_prefix);
        self.providers.retain(|_, l| {
            l.retain(|p| {
                let live = p.expires > now;
                if !live {
                    Self::count(per_provider, per_prefix, &p.provider, false);
                }
                live
            });
            !l.is_empty()
        });
    }

    fn record_count(&self) -> usize {
        self.records.len()
    }

    fn record_keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.records.keys().copied().collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(secret: u8, seq: u64, value: &[u8]) -> SignedRecord {
        SignedRecord::sign(
            &[secret; 32],
            value.to_vec(),
            seq,
            Timestamp::from_micros(10_000_000),
        )
    }

    #[test]
    fn sequence_only_moves_forward() {
        let mut s: MemoryRecordStore<u32> = MemoryRecordStore::new(StoreLimits::default());
        let now = Timestamp::EPOCH;
        s.put(rec(1, 5, b"a")).unwrap();
        assert_eq!(s.put(rec(1, 4, b"old")), Err(StoreError::Stale { held: 5 }));
        assert_eq!(
            s.put(rec(1, 5, b"other")),
            Err(StoreError::Stale { held: 5 })
        );
        s.put(rec(1, 5, b"a")).unwrap();
        s.put(rec(1, 6, b"b")).unwrap();
        let key = rec(1, 0, b"").key();
        assert_eq!(s.get(&key, now).unwrap().value, b"b");
        assert!(s.get(&key, Timestamp::from_micros(10_000_000)).is_none());
    }

    #[test]
    fn limits_hold() {
        let limits = StoreLimits {
            max_records: 2,
            max_provider_keys: 1,
            max_providers_per_key: 2,
            ..StoreLimits::default()
        };
        let mut s: MemoryRecordStore<u32> = MemoryRecordStore::new(limits);
        s.put(rec(1, 1, b"")).unwrap();
        s.put(rec(2, 1, b"")).unwrap();
        assert_eq!(s.put(rec(3, 1, b"")), Err(StoreError::Full));
        assert_eq!(s.record_count(), 2);
        let key = Key::hash(b"content");
        let t = |s| Timestamp::EPOCH + Duration::from_secs(s);
        let p = |n: u8, e| ProviderRecord {
            provider: Contact::new(Key::hash(&[n]), u32::from(n)),
            expires: t(e),
        };
        s.add_provider(key, p(1, 10)).unwrap();
        s.add_provider(key, p(2, 20)).unwrap();
        // Full: the providers known longest keep their places, however long a newcomer's
        // announcement would live; they refresh theirs.
        assert_eq!(s.add_provider(key, p(3, 5)), Err(StoreError::Full));
        assert_eq!(s.add_provider(key, p(3, 30)), Err(StoreError::Full));
        s.add_provider(key, p(1, 30)).unwrap();
        let ids: Vec<u32> = s
            .providers(&key, t(0))
            .into_iter()
            .map(|c| c.addr)
            .collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(
            s.add_provider(Key::hash(b"other"), p(1, 10)),
            Err(StoreError::Full)
        );
        s.remove_expired(t(25));
        assert_eq!(s.providers(&key, t(25)).len(), 1);
        s.remove_expired(t(100));
        assert_eq!(s.record_count(), 0);
    }

    #[test]
    fn one_provider_or_one_prefix_cannot_fill_the_table() {
        let limits = StoreLimits {
            max_provider_entries_per_peer: 3,
            max_provider_entries_per_prefix: 5,
            ..StoreLimits::default()
        };
        let mut s: MemoryRecordStore<u32> = MemoryRecordStore::new(limits);
        let t = |s| Timestamp::EPOCH + Duration::from_secs(s);
        let entry = |id: u8, addr: u32| ProviderRecord {
            provider: Contact::new(Key::hash(&[id]), addr),
            expires: t(10),
        };
        let key = |n: u32| Key::hash(&n.to_be_bytes());
        // netsim addresses: each u32 is its own /24, so ids 1 and 2 at one address share one.
        for n in 0..3 {
            s.add_provider(key(n), entry(1, 7)).unwrap();
        }
        assert_eq!(
            s.add_provider(key(3), entry(1, 7)),
            Err(StoreError::Full),
            "per peer"
        );
        // A refresh is always taken.
        s.add_provider(key(0), entry(1, 7)).unwrap();
        for n in 10..12 {
            s.add_provider(key(n), entry(2, 7)).unwrap();
        }
        assert_eq!(
            s.add_provider(key(12), entry(3, 7)),
            Err(StoreError::Full),
            "per prefix"
        );
        s.add_provider(key(12), entry(3, 8)).unwrap();
        // Expired entries give their quota back.
        s.remove_expired(t(11));
        for n in 20..23 {
            s.add_provider(key(n), entry(1, 7)).unwrap();
        }
    }
}
