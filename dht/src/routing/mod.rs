//! The routing table: 256 k-buckets by XOR distance from the local id (Kademlia §2.2).
//!
//! Policy, in order of the paper and its known improvements:
//! - An entry that answers moves to the tail (most recently seen).
//! - A newcomer to a full bucket waits in the replacement cache; the least-recently-seen entry is
//!   probed, and only if it fails does the newcomer (or the best cached peer) take its slot. Peers
//!   that have stayed up long are likely to stay up longer, and an attacker cannot flush a bucket
//!   by announcing fresh ids.
//! - At most `ip_prefix_cap` entries per bucket share an IPv4 /24 or IPv6 /48 (eclipse defence).
//! - Proximity neighbour selection, if `prefer_low_rtt` is on: when a slot frees, the cached
//!   peer with the lowest measured round trip wins; and a newcomer to a full bucket whose
//!   measured round trip is at most half the slowest entry's takes that entry's slot
//!   ([`RoutingTable::prefer_closer`]), so lookups' first hops go to nearby peers.
//! - Entries are only added for peers that proved they are alive: they sent us a request over an
//!   authenticated connection or answered one of ours. Peers merely named by others are not added.

mod bucket;

use std::time::Duration;

use bucket::Bucket;
pub(crate) use bucket::Entry;

use crate::key::KEY_BITS;
use crate::{Address, Contact, Key, Timestamp};

/// How many times faster a peer must answer than a bucket's slowest entry to take its slot
/// (see [`RoutingTable::prefer_closer`]).
pub(crate) const PNS_MARGIN: u32 = 2;

/// What happened to a peer offered to the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InsertOutcome<A> {
    /// It was already there; its last-seen time moved on.
    Updated,
    /// It took a free slot.
    Inserted,
    /// The bucket is full: the peer waits in the replacement cache; `probe`, if set, is the
    /// least-recently-seen entry, which the caller should ping.
    Cached { probe: Option<Contact<A>> },
    /// Refused: the local id, or the IP-prefix cap.
    Refused,
}

/// A peer that left the table, and the one that took its slot.
#[derive(Debug)]
pub(crate) struct Removal<A> {
    pub(crate) removed: Contact<A>,
    /// When the removed entry was first seen.
    pub(crate) added: Timestamp,
    pub(crate) promoted: Option<Contact<A>>,
}

/// Routing-table parameters, taken from [`crate::Config`].
#[derive(Clone, Debug)]
pub(crate) struct TableConfig {
    pub(crate) k: usize,
    pub(crate) replacement_cache: usize,
    pub(crate) ip_prefix_cap: Option<usize>,
    pub(crate) prefer_low_rtt: bool,
    pub(crate) max_failures: u32,
    pub(crate) probe_after: Duration,
}

/// The routing table.
#[derive(Clone, Debug)]
pub(crate) struct RoutingTable<A> {
    local: Key,
    buckets: Vec<Bucket<A>>,
    config: TableConfig,
    len: usize,
}

impl<A: Address> RoutingTable<A> {
    pub(crate) fn new(local: Key, config: TableConfig) -> Self {
        Self {
            local,
            buckets: (0..KEY_BITS).map(|_| Bucket::new()).collect(),
            config,
            len: 0,
        }
    }

    /// Records that `contact` is alive as of `now` (it answered, or sent us a request).
    #[cfg(test)]
    pub(crate) fn seen(&mut self, contact: Contact<A>, now: Timestamp) -> InsertOutcome<A> {
        self.seen_at(contact, now, None)
    }

    /// [`RoutingTable::seen`], with the round trip measured to the peer if known (kept with its
    /// entry for [`RoutingTable::prefer_closer`]; `None` keeps the one it had).
    pub(crate) fn seen_at(
        &mut self,
        contact: Contact<A>,
        now: Timestamp,
        rtt: Option<Duration>,
    ) -> InsertOutcome<A> {
        let Some(index) = self.local.bucket_index(&contact.id) else {
            return InsertOutcome::Refused;
        };
        let config = &self.config;
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.position(&contact.id) {
            let addr_ok = contact.addr == bucket.entries[pos].contact.addr
                || bucket.prefix_allows(&contact.addr, config.ip_prefix_cap, Some(&contact.id));
            let mut entry = bucket.entries.remove(pos);
            entry.last_seen = now;
            entry.failures = 0;
            entry.rtt = rtt.or(entry.rtt);
            if addr_ok {
                entry.contact.addr = contact.addr;
            }
            bucket.entries.push(entry);
            if bucket.probing == Some(contact.id) {
                bucket.probing = None;
            }
            return InsertOutcome::Updated;
        }
        if !bucket.prefix_allows(&contact.addr, config.ip_prefix_cap, None) {
            return InsertOutcome::Refused;
        }
        if bucket.entries.len() < config.k {
            bucket.replacements.retain(|e| e.contact.id != contact.id);
            bucket.entries.push(Entry {
                rtt,
                ..Entry::new(contact, now)
            });
            self.len += 1;
            return InsertOutcome::Inserted;
        }
        let entry = Entry {
            rtt,
            ..Entry::new(contact, now)
        };
        bucket.cache(entry, config.replacement_cache);
        // A full bucket with a free slot-to-be: if the oldest entry has been quiet for a while,
        // ask the caller to check it is still there. A recently seen head needs no probe.
        let head = &bucket.entries[0];
        let quiet = now.saturating_duration_since(head.last_seen) >= config.probe_after;
        let probe = (bucket.probing.is_none() && quiet).then(|| {
            bucket.probing = Some(head.contact.id);
            head.contact.clone()
        });
        InsertOutcome::Cached { probe }
    }

    /// The caller will not probe `id` after all (see [`InsertOutcome::Cached`]): a later
    /// newcomer may ask again.
    pub(crate) fn probe_skipped(&mut self, id: &Key) {
        if let Some(index) = self.local.bucket_index(id) {
            let bucket = &mut self.buckets[index];
            if bucket.probing == Some(*id) {
                bucket.probing = None;
            }
        }
    }

    /// Records a failed request to `id`. The entry is removed after `max_failures` in a row, or
    /// at once if it was being probed for a newcomer; the best replacement takes its slot.
    pub(crate) fn failed(
        &mut self,
        id: &Key,
        rtt: impl Fn(&Key) -> Option<Duration>,
    ) -> Option<Removal<A>> {
        let index = self.local.bucket_index(id)?;
        let bucket = &mut self.buckets[index];
        let Some(pos) = bucket.position(id) else {
            bucket.replacements.retain(|e| e.contact.id != *id);
            return None;
        };
        let entry = &mut bucket.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        let probed = bucket.probing == Some(*id);
        if entry.failures < self.config.max_failures && !probed {
            return None;
        }
        Some(self.remove_at(index, pos, rtt))
    }

    /// Removes `id` from the table (and its cache), promoting a replacement.
    pub(crate) fn remove(
        &mut self,
        id: &Key,
        rtt: impl Fn(&Key) -> Option<Duration>,
    ) -> Option<Removal<A>> {
        let index = self.local.bucket_index(id)?;
        let bucket = &mut self.buckets[index];
        bucket.replacements.retain(|e| e.contact.id != *id);
        let pos = bucket.position(id)?;
        Some(self.remove_at(index, pos, rtt))
    }

    fn remove_at(
        &mut self,
        index: usize,
        pos: usize,
        rtt: impl Fn(&Key) -> Option<Duration>,
    ) -> Removal<A> {
        let config = &self.config;
        let bucket = &mut self.buckets[index];
        let entry = bucket.entries.remove(pos);
        let (removed, added) = (entry.contact, entry.added);
        if bucket.probing == Some(removed.id) {
            bucket.probing = None;
        }
        let promoted = bucket
            .take_replacement(config.ip_prefix_cap, config.prefer_low_rtt, rtt)
            .map(|mut e| {
                e.failures = 0;
                let c = e.contact.clone();
                bucket.entries.push(e);
                c
            });
        if promoted.is_none() {
            self.len -= 1;
        }
        Removal {
            removed,
            added,
            promoted,
        }
    }

    /// Proximity neighbour selection in a full bucket: `id`, just seen and waiting in the
    /// replacement cache, takes the slot of the entry with the longest round trip measured when
    /// it was last seen ([`RoutingTable::seen_at`]) if its own is at most half that
    /// ([`PNS_MARGIN`]); the slow entry moves to the cache and is
    /// returned. Only measured round trips count, so a peer nobody timed keeps its slot, and the
    /// margin keeps entries from trading places over jitter. Near the local id buckets are
    /// rarely full, so this reorders the far buckets, where a lookup's first hops go: those hops
    /// then stay close by (Dabek et al., "Designing a DHT for low latency and high throughput",
    /// NSDI 2004, PNS), where Kademlia's rule alone keeps whoever came first.
    pub(crate) fn prefer_closer(&mut self, id: &Key) -> Option<Contact<A>> {
        if !self.config.prefer_low_rtt {
            return None;
        }
        let index = self.local.bucket_index(id)?;
        let (cap, cache) = (self.config.ip_prefix_cap, self.config.replacement_cache);
        let bucket = &mut self.buckets[index];
        let newcomer = bucket
            .replacements
            .iter()
            .rposition(|e| e.contact.id == *id)?;
        let fast = bucket.replacements[newcomer].rtt?;
        let (slow_pos, slow) = bucket
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| bucket.probing != Some(e.contact.id))
            .filter_map(|(i, e)| e.rtt.map(|r| (i, r)))
            .max_by_key(|&(_, r)| r)?;
        if fast.saturating_mul(PNS_MARGIN) > slow {
            return None;
        }
        let slow_id = bucket.entries[slow_pos].contact.id;
        if !bucket.prefix_allows(
            &bucket.replacements[newcomer].contact.addr,
            cap,
            Some(&slow_id),
        ) {
            return None;
        }
        let entry = bucket.replacements.remove(newcomer);
        let out = bucket.entries.remove(slow_pos);
        bucket.entries.push(entry);
        let contact = out.contact.clone();
        bucket.cache(out, cache);
        Some(contact)
    }

    /// A peer dropped for failures answers again, but its bucket filled meanwhile: it takes the
    /// place of the youngest entry first seen after it (`added`, its own first sighting), which
    /// moves to the replacement cache and is returned. Kademlia keeps the longest-known live
    /// peers; a partition or an outage made this one fail through no fault it can be charged
    /// with, and without this every bucket that refilled during a cut keeps only one side for
    /// good (netsim `--partition`). None if no entry is younger, or the peer is already in.
    pub(crate) fn reinstate(
        &mut self,
        contact: Contact<A>,
        added: Timestamp,
        now: Timestamp,
    ) -> Option<Contact<A>> {
        let index = self.local.bucket_index(&contact.id)?;
        let config = &self.config;
        let bucket = &mut self.buckets[index];
        if bucket.position(&contact.id).is_some() {
            return None;
        }
        let (pos, _) = bucket
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.added > added)
            .max_by_key(|(_, e)| e.added)?;
        let displaced = bucket.entries.remove(pos);
        if !bucket.prefix_allows(&contact.addr, config.ip_prefix_cap, None) {
            bucket.entries.insert(pos, displaced);
            return None;
        }
        if bucket.probing == Some(displaced.contact.id) {
            bucket.probing = None;
        }
        bucket.replacements.retain(|e| e.contact.id != contact.id);
        let mut entry = Entry::new(contact, now);
        entry.added = added;
        bucket.entries.push(entry);
        let out = displaced.contact.clone();
        bucket.cache(displaced, config.replacement_cache);
        Some(out)
    }

    /// The `n` contacts in the table closest to `target`, closest first.
    pub(crate) fn closest(&self, target: &Key, n: usize) -> Vec<Contact<A>> {
        if n == 0 {
            return Vec::new();
        }
        let mut all: Vec<(crate::Distance, &Contact<A>)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| (target.distance(&e.contact.id), &e.contact))
            .collect();
        if all.len() > n {
            all.select_nth_unstable_by_key(n, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// log₂ of the network's size as this table sees it: ids are uniform, so the i-th closest
    /// peer to our own id sharing b leading bits with it says about i · 2^b peers exist; the
    /// median over our k closest, which one unusually near or far neighbour does not move.
    /// `None` while the table holds fewer than k peers: a joining peer knows too little to tell.
    pub(crate) fn log2_size_estimate(&self, k: usize) -> Option<f64> {
        if self.len() < k.max(1) {
            return None;
        }
        let mut estimates: Vec<f64> = self
            .closest(&self.local, k)
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let shared = self.local.distance(&c.id).leading_zeros() as f64;
                shared + ((i + 1) as f64).log2()
            })
            .collect();
        estimates.sort_by(f64::total_cmp);
        estimates.get(estimates.len() / 2).copied()
    }

    /// The entry for `id`, if it is in the table.
    pub(crate) fn entry(&self, id: &Key) -> Option<&Entry<A>> {
        let index = self.local.bucket_index(id)?;
        let bucket = &self.buckets[index];
        bucket.position(id).map(|p| &bucket.entries[p])
    }

    /// Number of entries (not counting replacement caches).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every entry, bucket by bucket from the nearest.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry<A>> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Notes that a lookup just covered bucket `index`.
    pub(crate) fn mark_refreshed(&mut self, target: &Key, now: Timestamp) {
        if let Some(i) = self.local.bucket_index(target) {
            self.buckets[i].last_refresh = now;
        }
    }

    /// Buckets worth refreshing at `now`: from the bucket of the nearest known peer outwards (the
    /// nearer ones are empty in any network smaller than 2^256), those not refreshed within
    /// `interval`. An empty table yields nothing.
    pub(crate) fn stale_buckets(&self, now: Timestamp, interval: Duration) -> Vec<usize> {
        let Some(nearest) = self.buckets.iter().position(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        (nearest..KEY_BITS)
            .filter(|&i| now.saturating_duration_since(self.buckets[i].last_refresh) >= interval)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn bucket_sizes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.buckets
            .iter()
            .map(|b| (b.entries.len(), b.replacements.len()))
    }

    #[cfg(test)]
    pub(crate) fn buckets_entries(&self) -> impl Iterator<Item = &[Entry<A>]> + '_ {
        self.buckets.iter().map(|b| b.entries.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::IpPrefix;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    fn config(k: usize, cap: Option<usize>) -> TableConfig {
        TableConfig {
            k,
            replacement_cache: k,
            ip_prefix_cap: cap,
            prefer_low_rtt: true,
            max_failures: 2,
            probe_after: Duration::ZERO,
        }
    }

    fn no_rtt(_: &Key) -> Option<Duration> {
        None
    }

    /// A peer op for the property tests: insert a key from one of a few /24s, or fail one.
    #[derive(Clone, Debug)]
    enum Op {
        Seen([u8; 32], u8),
        Fail(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (any::<[u8; 32]>(), 0u8..6).prop_map(|(k, net)| Op::Seen(k, net)),
            1 => (0usize..1000).prop_map(Op::Fail),
        ];
        proptest::collection::vec(op, 0..400)
    }

    fn addr(net: u8, host: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, net, host], 4000))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn invariants_hold(local in any::<[u8; 32]>(), ops in ops(), k in 1usize..8, cap in proptest::option::of(1usize..4)) {
            let local = Key::from_bytes(local);
            let mut table = RoutingTable::new(local, config(k, cap));
            // Keys skewed into few buckets so buckets fill: keep the first byte near local's.
            let mut known: Vec<Key> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                let now = Timestamp::from_micros(i as u64);
                match op {
                    Op::Seen(mut bytes, net) => {
                        bytes[0] = local.as_bytes()[0] ^ (bytes[0] & 0x03);
                        let id = Key::from_bytes(bytes);
                        known.push(id);
                        table.seen(Contact::new(id, addr(net, i as u8)), now);
                    }
                    Op::Fail(i) => {
                        if !known.is_empty() {
                            let id = known[i % known.len()];
                            table.failed(&id, no_rtt);
                        }
                    }
                }
                // A bucket never holds more than k; the table never holds the local id.
                for (entries, cache) in table.bucket_sizes() {
                    prop_assert!(entries <= k);
                    prop_assert!(cache <= k);
                }
                prop_assert!(table.entry(&local).is_none());
                prop_assert_eq!(table.entries().count(), table.len());
                // The IP-prefix cap holds in every bucket.
                if let Some(cap) = cap {
                    for entries in table.buckets_entries() {
                        let mut counts: HashMap<IpPrefix, usize> = HashMap::new();
                        for e in entries {
                            *counts.entry(IpPrefix::of(e.contact.addr.ip())).or_default() += 1;
                        }
                        prop_assert!(counts.values().all(|&c| c <= cap));
                    }
                }
            }
        }

        #[test]
        fn closest_matches_brute_force(local in any::<[u8; 32]>(), keys in proptest::collection::vec(any::<[u8; 32]>(), 0..200), target in any::<[u8; 32]>(), n in 0usize..40) {
            let local = Key::from_bytes(local);
            let target = Key::from_bytes(target);
            let mut table = RoutingTable::new(local, config(20, None));
            for (i, k) in keys.iter().enumerate() {
                table.seen(Contact::new(Key::from_bytes(*k), addr(0, i as u8)), Timestamp::EPOCH);
            }
            let mut all: Vec<Key> = table.entries().map(|e| e.contact.id).collect();
            all.sort_by_key(|k| target.distance(k));
            all.truncate(n);
            let got: Vec<Key> = table.closest(&target, n).into_iter().map(|c| c.id).collect();
            prop_assert_eq!(got, all);
        }
    }

    fn key_in_bucket(local: &Key, index: usize, salt: u8) -> Key {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(salt));
        local.random_in_bucket(index, &mut rng)
    }

    #[test]
    fn full_bucket_keeps_old_peers_until_they_fail() {
        let local = Key::from_bytes([0; 32]);
        let mut table = RoutingTable::new(local, config(2, None));
        let a = key_in_bucket(&local, 200, 1);
        let b = key_in_bucket(&local, 200, 2);
        let c = key_in_bucket(&local, 200, 3);
        let t = Timestamp::EPOCH;
        assert_eq!(
            table.seen(Contact::new(a, addr(1, 1)), t),
            InsertOutcome::Inserted
        );
        assert_eq!(
            table.seen(Contact::new(b, addr(2, 1)), t),
            InsertOutcome::Inserted
        );
        // c waits; a (least recently seen) is to be probed.
        let out = table.seen(Contact::new(c, addr(3, 1)), t);
        assert_eq!(
            out,
            InsertOutcome::Cached {
                probe: Some(Contact::new(a, addr(1, 1)))
            }
        );
        // a answers: it stays, c stays cached.
        assert_eq!(
            table.seen(Contact::new(a, addr(1, 1)), t),
            InsertOutcome::Updated
        );
        assert!(table.entry(&c).is_none());
        // Now b is the oldest; c again triggers a probe of b, which fails: c takes b's slot.
        let out = table.seen(Contact::new(c, addr(3, 1)), t);
        assert_eq!(
            out,
            InsertOutcome::Cached {
                probe: Some(Contact::new(b, addr(2, 1)))
            }
        );
        let removal = table
            .failed(&b, no_rtt)
            .expect("probed entry is removed on failure");
        assert_eq!(removal.removed.id, b);
        assert_eq!(removal.promoted.map(|c| c.id), Some(c));
        assert!(table.entry(&c).is_some());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_newcomer_twice_as_close_takes_the_slowest_slot_of_a_full_bucket() {
        let local = Key::from_bytes([0; 32]);
        let mut table = RoutingTable::new(local, config(2, None));
        let (a, b) = (key_in_bucket(&local, 100, 1), key_in_bucket(&local, 100, 2));
        let (near, middling) = (key_in_bucket(&local, 100, 3), key_in_bucket(&local, 100, 4));
        let ms = |k: &Key| {
            Some(Duration::from_millis(match k {
                k if *k == a => 40,
                k if *k == b => 200,
                k if *k == near => 20,
                k if *k == middling => 150,
                _ => return None,
            }))
        };
        let t = Timestamp::EPOCH;
        table.seen_at(Contact::new(a, addr(1, 1)), t, ms(&a));
        table.seen_at(Contact::new(b, addr(2, 1)), t, ms(&b));
        // 150 ms is not half of 200: no trade. Unmeasured: no trade.
        table.seen_at(Contact::new(middling, addr(3, 1)), t, ms(&middling));
        assert_eq!(table.prefer_closer(&middling), None);
        let unknown = key_in_bucket(&local, 100, 5);
        table.seen_at(Contact::new(unknown, addr(4, 1)), t, ms(&unknown));
        assert_eq!(table.prefer_closer(&unknown), None);
        // 20 ms against the slowest, b at 200: b goes to the cache, still known.
        table.seen_at(Contact::new(near, addr(5, 1)), t, ms(&near));
        assert_eq!(table.prefer_closer(&near).map(|c| c.id), Some(b));
        assert!(table.entry(&near).is_some() && table.entry(&b).is_none());
        assert_eq!(table.len(), 2);
        // Off when proximity is not preferred.
        let mut plain = RoutingTable::new(
            local,
            TableConfig {
                prefer_low_rtt: false,
                ..config(2, None)
            },
        );
        for (i, id) in [a, b, near].into_iter().enumerate() {
            plain.seen_at(Contact::new(id, addr(1, i as u8)), t, ms(&id));
        }
        assert_eq!(plain.prefer_closer(&near), None);
    }

    #[test]
    fn replacement_with_lowest_rtt_wins() {
        let local = Key::from_bytes([0; 32]);
        let mut table = RoutingTable::new(
            local,
            TableConfig {
                replacement_cache: 4,
                ..config(1, None)
            },
        );
        let a = key_in_bucket(&local, 100, 1);
        let slow = key_in_bucket(&local, 100, 2);
        let fast = key_in_bucket(&local, 100, 3);
        let t = Timestamp::EPOCH;
        table.seen(Contact::new(a, addr(1, 1)), t);
        table.seen(Contact::new(fast, addr(2, 1)), t);
        table.seen(Contact::new(slow, addr(3, 1)), t);
        let rtts = |k: &Key| {
            if *k == fast {
                Some(Duration::from_millis(5))
            } else if *k == slow {
                Some(Duration::from_millis(200))
            } else {
                None
            }
        };
        let removal = table.remove(&a, rtts).unwrap();
        assert_eq!(removal.promoted.map(|c| c.id), Some(fast));
    }

    #[test]
    fn ip_prefix_cap_refuses_third_peer_of_a_network() {
        let local = Key::from_bytes([0; 32]);
        let mut table = RoutingTable::new(local, config(20, Some(2)));
        let t = Timestamp::EPOCH;
        for salt in 0..2 {
            let id = key_in_bucket(&local, 255, salt);
            assert_eq!(
                table.seen(Contact::new(id, addr(7, salt)), t),
                InsertOutcome::Inserted
            );
        }
        let third = key_in_bucket(&local, 255, 9);
        assert_eq!(
            table.seen(Contact::new(third, addr(7, 9)), t),
            InsertOutcome::Refused
        );
        // Another bucket has its own count.
        let other = key_in_bucket(&local, 254, 9);
        assert_eq!(
            table.seen(Contact::new(other, addr(7, 9)), t),
            InsertOutcome::Inserted
        );
    }

    #[test]
    fn stale_buckets_start_at_nearest_peer() {
        let local = Key::from_bytes([0; 32]);
        let mut table = RoutingTable::new(local, config(20, None));
        assert!(
            table
                .stale_buckets(Timestamp::EPOCH, Duration::ZERO)
                .is_empty()
        );
        table.seen(
            Contact::new(key_in_bucket(&local, 250, 1), addr(1, 1)),
            Timestamp::EPOCH,
        );
        assert_eq!(
            table.stale_buckets(Timestamp::EPOCH, Duration::ZERO),
            (250..256).collect::<Vec<_>>()
        );
    }
}
