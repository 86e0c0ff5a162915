//! Placement: which peers hold a chunk. Every rule is here: the `replication` closest peers
//! are its holders ([`placement`], what a put stores to); a peer keeps a chunk as a replica only
//! if it is one of them by its own view ([`among_closest`] with `replication`), and accepts one
//! from another peer within twice that (the slack for routing tables that differ a little);
//! and replicas follow the closest set as peers come and go:
//!
//! A chunk belongs on the `replication` closest peers to its key. Each peer only knows its own
//! routing table, but the peers near a key know that neighbourhood well (Kademlia §2.2), so the
//! holders of a chunk notice when its closest set changes:
//! - a peer **joins** near the key: it is now among the closest, so it should get a copy; if it
//!   pushed one of the old holders out of the set, that holder hands its copy over, and
//!   releases it only once every peer of the new set proved it holds the chunk (`custody.rs`);
//! - a peer **leaves** (it failed and left the routing table): the next peer in line is now
//!   among the closest and should get a copy.
//!
//! Every responsible holder decides for itself, from its own routing table, with no traffic of
//! its own; several may send to the same newcomer, so the node asks whether the peer has the
//! chunk before it sends the bytes. (Electing one sender — say, the closest old holder — loses
//! copies when peers join faster than copies land: the elected holder may not have its own yet.) Each costs a
//! scan of the routing table per chunk held (a few hundred distance comparisons), once per peer
//! that joins or leaves.

use std::collections::BTreeSet;

use crate::routing::RoutingTable;
use crate::{Address, Contact, Key};

/// Whether `local` is closer to `key` than the `n`-th closest peer `table` knows (or it knows
/// fewer than `n`).
pub(crate) fn among_closest<A: Address>(
    table: &RoutingTable<A>,
    local: &Key,
    key: &Key,
    n: usize,
) -> bool {
    let n = n.max(1);
    match table.closest(key, n).get(n - 1) {
        None => true,
        Some(farthest) => key.distance(local) < key.distance(&farthest.id),
    }
}

/// Where a chunk goes, from the live peers a lookup found closest to `key` (closest first):
/// the `replication` closest of them and `local`, and whether `local` is one of those (it then
/// keeps its own copy, and one fewer peer gets one).
pub(crate) fn placement<A>(
    mut closest: Vec<Contact<A>>,
    local: &Key,
    key: &Key,
    replication: usize,
) -> (Vec<Contact<A>>, bool) {
    let n = replication.max(1);
    closest.truncate(n);
    let local_distance = key.distance(local);
    let closer_than_local = closest
        .iter()
        .filter(|p| key.distance(&p.id) < local_distance)
        .count();
    let here = closer_than_local < n;
    if here && closest.len() == n {
        closest.pop();
    }
    (closest, here)
}

/// One copy to make: send the chunk under `key` to `to`; if `release`, this peer then is no
/// longer among the closest and hands the chunk over (it may release its responsible copy once
/// the new closest peers proved theirs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer<A> {
    pub(crate) key: Key,
    pub(crate) to: Contact<A>,
    pub(crate) release: bool,
}

/// Copies to make because `joined` entered the routing table.
pub(crate) fn on_join<A: Address>(
    table: &RoutingTable<A>,
    held: &BTreeSet<Key>,
    local: &Key,
    replication: usize,
    joined: &Contact<A>,
) -> Vec<Transfer<A>> {
    let r = replication.max(1);
    let mut out = Vec::new();
    for key in held {
        let peers = table.closest(key, r + 1);
        let d_local = key.distance(local);
        let closer = peers
            .iter()
            .take_while(|c| key.distance(&c.id) < d_local)
            .count();
        let joined_closer = key.distance(&joined.id) < d_local;
        // Responsible before the newcomer: fewer than r other peers closer than us.
        let closer_before = closer - usize::from(joined_closer);
        if closer_before >= r {
            continue;
        }
        // The newcomer's rank among the peers and us; it matters only inside the r closest.
        let Some(rank) = peers.iter().position(|c| c.id == joined.id) else {
            continue;
        };
        if rank + usize::from(!joined_closer) >= r {
            continue;
        }
        out.push(Transfer {
            key: *key,
            to: joined.clone(),
            release: closer >= r,
        });
    }
    out
}

/// Copies to make because `left` left the routing table (already removed from `table`).
pub(crate) fn on_leave<A: Address>(
    table: &RoutingTable<A>,
    held: &BTreeSet<Key>,
    local: &Key,
    replication: usize,
    left: &Contact<A>,
) -> Vec<Transfer<A>> {
    let r = replication.max(1);
    if r < 2 {
        return Vec::new(); // the set is us alone: nobody to send to
    }
    let mut out = Vec::new();
    for key in held {
        let peers = table.closest(key, r);
        let d_local = key.distance(local);
        let closer = peers
            .iter()
            .take_while(|c| key.distance(&c.id) < d_local)
            .count();
        if closer >= r {
            continue; // not responsible
        }
        // The set now is us and the r - 1 closest peers; its farthest peer entered it if the
        // departed peer was closer than that one (and it is not us).
        let Some(entrant) = peers.get(r - 2) else {
            continue; // fewer peers than places: nobody entered
        };
        if key.distance(&entrant.id) < d_local {
            continue; // we are the farthest member: we are the one who entered, and hold it
        }
        if key.distance(&left.id) < key.distance(&entrant.id) {
            out.push(Transfer {
                key: *key,
                to: entrant.clone(),
                release: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::routing::TableConfig;
    use std::time::Duration;

    fn table(local: Key) -> RoutingTable<u32> {
        RoutingTable::new(
            local,
            TableConfig {
                k: 20,
                replacement_cache: 20,
                ip_prefix_cap: None,
                prefer_low_rtt: false,
                max_failures: 2,
                probe_after: Duration::ZERO,
            },
        )
    }

    /// Keys laid out on a line: peer `n` has id `n` in its first byte, the key is 0.
    fn key_at(n: u8) -> Key {
        let mut b = [0u8; 32];
        b[0] = n;
        b[31] = 1; // never equal to the key 0
        Key::from_bytes(b)
    }

    #[test]
    fn a_newcomer_among_the_closest_gets_a_copy_from_the_closest_holder() {
        let chunk = Key::from_bytes([0; 32]);
        let held: BTreeSet<Key> = [chunk].into();
        let local = key_at(10);
        let mut t = table(local);
        for n in [20u8, 30, 40] {
            t.seen(Contact::new(key_at(n), u32::from(n)), Timestamp::EPOCH);
        }
        // r = 3: the set is {10 (us), 20, 30}. A newcomer at 5 enters and pushes 30 out.
        let newcomer = Contact::new(key_at(5), 5);
        t.seen(newcomer.clone(), Timestamp::EPOCH);
        let out = on_join(&t, &held, &local, 3, &newcomer);
        assert_eq!(
            out,
            vec![Transfer {
                key: chunk,
                to: newcomer.clone(),
                release: false
            }]
        );
        // Seen from 20, also a holder: it sends too (the node asks first, so no bytes twice).
        let mut t20 = table(key_at(20));
        for n in [10u8, 30, 40, 5] {
            t20.seen(Contact::new(key_at(n), u32::from(n)), Timestamp::EPOCH);
        }
        assert_eq!(on_join(&t20, &held, &key_at(20), 3, &newcomer).len(), 1);
        // Seen from 30, pushed out of the set by the newcomer: it sends and may release.
        let mut t30 = table(key_at(30));
        for n in [10u8, 20, 40, 5] {
            t30.seen(Contact::new(key_at(n), u32::from(n)), Timestamp::EPOCH);
        }
        let out = on_join(&t30, &held, &key_at(30), 3, &newcomer);
        assert_eq!(
            out,
            vec![Transfer {
                key: chunk,
                to: newcomer.clone(),
                release: true
            }]
        );
        // Seen from 40, never responsible: nothing.
        let mut t40 = table(key_at(40));
        for n in [10u8, 20, 30, 5] {
            t40.seen(Contact::new(key_at(n), u32::from(n)), Timestamp::EPOCH);
        }
        assert!(on_join(&t40, &held, &key_at(40), 3, &newcomer).is_empty());
        // A newcomer far away changes nothing.
        let far = Contact::new(key_at(200), 200);
        t.seen(far.clone(), Timestamp::EPOCH);
        assert!(on_join(&t, &held, &local, 3, &far).is_empty());
    }

    #[test]
    fn a_newcomer_closer_than_us_takes_our_place_when_the_set_is_full() {
        let chunk = Key::from_bytes([0; 32]);
        let held: BTreeSet<Key> = [chunk].into();
        let local = key_at(10);
        let mut t = table(local);
        t.seen(Contact::new(key_at(20), 20), Timestamp::EPOCH);
        // r = 1: we alone hold it; a newcomer at 5 takes over and we may release.
        let newcomer = Contact::new(key_at(5), 5);
        t.seen(newcomer.clone(), Timestamp::EPOCH);
        let out = on_join(&t, &held, &local, 1, &newcomer);
        assert_eq!(
            out,
            vec![Transfer {
                key: chunk,
                to: newcomer,
                release: true
            }]
        );
    }

    #[test]
    fn when_a_holder_leaves_the_next_in_line_gets_a_copy() {
        let chunk = Key::from_bytes([0; 32]);
        let held: BTreeSet<Key> = [chunk].into();
        let local = key_at(10);
        let mut t = table(local);
        for n in [20u8, 30, 40] {
            t.seen(Contact::new(key_at(n), u32::from(n)), Timestamp::EPOCH);
        }
        // r = 3: {10, 20, 30}; 20 leaves, so 40 enters.
        let left = Contact::new(key_at(20), 20);
        t.remove(&left.id, |_| None);
        let out = on_leave(&t, &held, &local, 3, &left);
        assert_eq!(
            out,
            vec![Transfer {
                key: chunk,
                to: Contact::new(key_at(40), 40),
                release: false
            }]
        );
        // With fewer peers than places, nobody enters when one leaves.
        let outside = Contact::new(key_at(40), 40);
        t.remove(&outside.id, |_| None);
        assert!(on_leave(&t, &held, &local, 3, &outside).is_empty());
    }
}
