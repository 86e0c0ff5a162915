//! The iterative lookup (Kademlia §2.3), optionally over disjoint paths (S/Kademlia §4.4).
//!
//! Each path keeps its candidates sorted by distance to the target and keeps `alpha` requests in
//! flight to the closest ones not yet asked. A path ends when the `k` closest candidates that did
//! not fail have all answered (or nobody is left to ask). A peer that fails leaves the candidate
//! set. With several paths, a peer queried by one path is never queried by another, so a liar
//! can only steer the paths it is on; the result merges every path's answers.

use std::collections::{HashMap, HashSet};

use crate::{Address, Contact, Distance, Key};

/// Which path of a lookup a request belongs to.
pub(crate) type PathId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting,
    Succeeded,
}

#[derive(Clone, Debug)]
struct Candidate<A> {
    contact: Contact<A>,
    distance: Distance,
    state: State,
    /// Requests from the lookup's start to reach this peer: 1 for the peers we knew.
    hop: u32,
    /// Whether the peer was asked again after a timeout.
    retried: bool,
}

#[derive(Clone, Debug)]
struct Path<A> {
    candidates: Vec<Candidate<A>>,
    in_flight: usize,
    failures: usize,
    /// Whether the top-up round (see [`Lookup::next_requests`]) was done.
    topped_up: bool,
}

/// A lookup in progress.
#[derive(Clone, Debug)]
pub(crate) struct Lookup<A> {
    target: Key,
    local: Key,
    k: usize,
    alpha: usize,
    /// Most candidates a path keeps; farther ones not yet asked are dropped.
    capacity: usize,
    paths: Vec<Path<A>>,
    /// Every peer some path has queried, and which path (disjointness).
    claimed: HashMap<Key, PathId>,
    /// Peers that failed: other answers naming them do not bring them back.
    failed: HashSet<Key>,
}

impl<A: Address> Lookup<A> {
    /// A lookup of `target` starting from `seeds` (deduplicated, the local id skipped), split
    /// round-robin over `paths` paths.
    pub(crate) fn new(
        target: Key,
        local: Key,
        seeds: Vec<Contact<A>>,
        k: usize,
        alpha: usize,
        paths: usize,
    ) -> Self {
        let paths = paths.max(1);
        let mut lookup = Self {
            target,
            local,
            k: k.max(1),
            alpha: alpha.max(1),
            capacity: k.max(1) * 4,
            paths: (0..paths)
                .map(|_| Path {
                    candidates: Vec::new(),
                    in_flight: 0,
                    failures: 0,
                    topped_up: false,
                })
                .collect(),
            claimed: HashMap::new(),
            failed: HashSet::new(),
        };
        let mut seeds = seeds;
        seeds.sort_by_key(|c| target.distance(&c.id));
        seeds.dedup_by_key(|c| c.id);
        for (i, seed) in seeds.into_iter().enumerate() {
            lookup.offer(i % paths, seed, 1);
        }
        lookup
    }

    /// The key looked up.
    pub(crate) fn target(&self) -> &Key {
        &self.target
    }

    /// The peers to ask now, with their path; they are marked as waiting.
    ///
    /// Top-up round: dead peers took places in the answers we got, so peers just beyond them
    /// may never have been named. When a path that met failures has nothing left to ask, it asks
    /// its `alpha` closest responders once more (the engine then asks for more peers per
    /// answer); anything closer they name is looked up as usual.
    pub(crate) fn next_requests(&mut self) -> Vec<(PathId, Contact<A>)> {
        let mut out = Vec::new();
        let done: Vec<bool> = (0..self.paths.len()).map(|p| self.path_done(p)).collect();
        for (pid, path) in self.paths.iter_mut().enumerate() {
            if done[pid] && path.failures > 0 && !path.topped_up {
                path.topped_up = true;
                for c in path
                    .candidates
                    .iter_mut()
                    .filter(|c| c.state == State::Succeeded)
                    .take(self.alpha)
                {
                    c.state = State::Waiting;
                    path.in_flight += 1;
                    out.push((pid, c.contact.clone()));
                }
                continue;
            }
            let mut live = 0;
            let mut i = 0;
            while i < path.candidates.len() && live < self.k && path.in_flight < self.alpha {
                let c = &mut path.candidates[i];
                if c.state == State::NotContacted {
                    if self.claimed.get(&c.contact.id).is_some_and(|&p| p != pid) {
                        // Another path asked this peer: leave it to that path.
                        path.candidates.remove(i);
                        continue;
                    }
                    self.claimed.insert(c.contact.id, pid);
                    c.state = State::Waiting;
                    path.in_flight += 1;
                    out.push((pid, c.contact.clone()));
                }
                live += 1;
                i += 1;
            }
        }
        out
    }

    /// `from` answered on `path` with `closer` peers.
    pub(crate) fn on_success(&mut self, path: PathId, from: &Key, closer: Vec<Contact<A>>) {
        let Some(p) = self.paths.get_mut(path) else {
            return;
        };
        let Some(c) = p
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == *from && c.state == State::Waiting)
        else {
            return;
        };
        c.state = State::Succeeded;
        let hop = c.hop + 1;
        p.in_flight -= 1;
        for contact in closer.into_iter().take(2 * self.k) {
            self.offer(path, contact, hop);
        }
    }

    /// The request to `from` on `path` timed out. If the peer was not retried yet and is among
    /// the path's k closest (`known`: it answered us before) or is the path's closest candidate,
    /// it is queued to be asked once more and true is returned; otherwise nothing changes (the
    /// caller then calls [`Lookup::on_failure`]).
    pub(crate) fn on_timeout(&mut self, path: PathId, from: &Key, known: bool) -> bool {
        let k = self.k;
        let Some(p) = self.paths.get_mut(path) else {
            return false;
        };
        let Some(i) = p
            .candidates
            .iter()
            .position(|c| c.contact.id == *from && c.state == State::Waiting)
        else {
            return false;
        };
        let c = &mut p.candidates[i];
        // A peer we never heard from gets a second chance only as the closest candidate (most
        // often the target itself); else ids made up by a misrouting peer would each cost two
        // timeouts.
        if c.retried || i >= k || (!known && i > 0) {
            return false;
        }
        c.retried = true;
        c.state = State::NotContacted;
        p.in_flight -= 1;
        true
    }

    /// `from` failed on `path`: it leaves the candidate set.
    pub(crate) fn on_failure(&mut self, path: PathId, from: &Key) {
        let Some(p) = self.paths.get_mut(path) else {
            return;
        };
        if let Some(i) = p
            .candidates
            .iter()
            .position(|c| c.contact.id == *from && c.state == State::Waiting)
        {
            p.candidates.remove(i);
            p.in_flight -= 1;
            p.failures += 1;
            self.failed.insert(*from);
        }
    }

    /// Whether every path has ended.
    pub(crate) fn is_finished(&self) -> bool {
        (0..self.paths.len()).all(|p| {
            let path = &self.paths[p];
            self.path_done(p) && (path.failures == 0 || path.topped_up)
        })
    }

    /// Nobody waiting, and none of the path's k closest left to ask (a candidate claimed by
    /// another path does not count: next_requests drops it).
    fn path_done(&self, path: PathId) -> bool {
        let p = &self.paths[path];
        p.in_flight == 0
            && !p.candidates.iter().take(self.k).any(|c| {
                c.state == State::NotContacted
                    && self.claimed.get(&c.contact.id).is_none_or(|&p| p == path)
            })
    }

    /// The closest peers that answered, at most `n`, closest first, with the hop count of the
    /// closest one.
    pub(crate) fn closest_succeeded(&self, n: usize) -> (Vec<Contact<A>>, u32) {
        let mut all: Vec<&Candidate<A>> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|c| c.state == State::Succeeded)
            .collect();
        all.sort_by_key(|c| c.distance);
        all.dedup_by_key(|c| c.contact.id);
        let hops = all.first().map_or(0, |c| c.hop);
        (
            all.into_iter().take(n).map(|c| c.contact.clone()).collect(),
            hops,
        )
    }

    fn offer(&mut self, path: PathId, contact: Contact<A>, hop: u32) {
        if contact.id == self.local
            || !contact.addr.matches_id(&contact.id)
            || self.failed.contains(&contact.id)
        {
            return;
        }
        let distance = self.target.distance(&contact.id);
        let p = &mut self.paths[path];
        let pos = match p.candidates.binary_search_by_key(&distance, |c| c.distance) {
            Ok(_) => return, // already a candidate
            Err(pos) => pos,
        };
        if pos >= self.capacity {
            return;
        }
        p.candidates.insert(
            pos,
            Candidate {
                contact,
                distance,
                state: State::NotContacted,
                hop,
                retried: false,
            },
        );
        // Drop the farthest not-yet-asked candidates beyond capacity; asked ones are kept so
        // their answers still find them.
        while p.candidates.len() > self.capacity {
            match p
                .candidates
                .iter()
                .rposition(|c| c.state == State::NotContacted)
            {
                Some(i) if i >= self.capacity => {
                    p.candidates.remove(i);
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8) -> Contact<u32> {
        let mut b = [0u8; 32];
        b[0] = n;
        Contact::new(Key::from_bytes(b), u32::from(n))
    }

    #[test]
    fn alpha_in_flight_and_termination() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        let seeds = (1..=10).map(c).collect();
        let mut l = Lookup::new(target, local, seeds, 4, 2, 1);
        let first = l.next_requests();
        assert_eq!(
            first.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            l.next_requests().is_empty(),
            "alpha bounds requests in flight"
        );
        l.on_success(0, &c(1).id, vec![]);
        l.on_failure(0, &c(2).id);
        let next = l.next_requests();
        assert_eq!(
            next.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![3, 4]
        );
        l.on_success(0, &c(3).id, vec![]);
        l.on_success(0, &c(4).id, vec![]);
        let next = l.next_requests();
        assert_eq!(
            next.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![5]
        );
        assert!(!l.is_finished());
        l.on_success(0, &c(5).id, vec![]);
        // The k=4 closest live peers (1,3,4,5) all answered, but peer 2 failed: one top-up
        // round asks the alpha closest responders again.
        assert!(!l.is_finished());
        let top_up = l.next_requests();
        assert_eq!(
            top_up.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![1, 3]
        );
        l.on_success(0, &c(1).id, vec![]);
        l.on_success(0, &c(3).id, vec![]);
        assert!(l.next_requests().is_empty());
        assert!(l.is_finished());
        let (closest, _) = l.closest_succeeded(4);
        assert_eq!(
            closest.iter().map(|c| c.addr).collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
    }

    #[test]
    fn a_timed_out_close_peer_is_asked_once_more() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        let mut l = Lookup::new(target, local, vec![c(1), c(2)], 2, 2, 1);
        assert_eq!(l.next_requests().len(), 2);
        l.on_success(0, &c(2).id, vec![]);
        assert!(l.on_timeout(0, &c(1).id, true), "first timeout: retry");
        let again = l.next_requests();
        assert_eq!(
            again.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![1]
        );
        assert!(!l.on_timeout(0, &c(1).id, true), "second timeout: give up");
        l.on_failure(0, &c(1).id);
        let (closest, _) = l.closest_succeeded(2);
        assert_eq!(closest.iter().map(|c| c.addr).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn disjoint_paths_never_share_a_peer() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        let mut l = Lookup::new(target, local, vec![c(10), c(20)], 3, 3, 2);
        let mut asked: Vec<(PathId, u32)> = Vec::new();
        for _ in 0..10 {
            let reqs = l.next_requests();
            if reqs.is_empty() {
                break;
            }
            for (path, contact) in reqs {
                asked.push((path, contact.addr));
                // Every peer tells every path about the same closer peers.
                l.on_success(path, &contact.id, vec![c(1), c(2), c(3), c(4)]);
            }
        }
        let mut ids: Vec<u32> = asked.iter().map(|(_, a)| *a).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no peer queried twice: {asked:?}");
        assert!(l.is_finished());
    }
}
