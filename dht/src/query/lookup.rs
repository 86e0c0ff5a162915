//! The iterative lookup (Kademlia §2.3), optionally over disjoint paths (S/Kademlia §4.4).
//!
//! Each path keeps its candidates sorted by distance to the target and keeps `alpha` requests in
//! flight to the closest ones not yet asked, until an answer brings nobody closer than the
//! closest candidate already known: then it asks all of its `k` closest not yet asked at once
//! (Kademlia §2.3's last round; with α alone the k closest are asked α at a time, and a lookup
//! took 8 round trips for 3 hops). A path ends when the `k` closest candidates that did
//! not fail have all answered (or nobody is left to ask). A peer that fails leaves the candidate
//! set. With several paths, a peer queried by one path is never queried by another, so a liar
//! can only steer the paths it is on; the result merges every path's answers.
//!
//! Against misrouting (answers full of made-up or dead peers next to the target):
//! - each candidate remembers who named it; a peer whose referrals failed at least
//!   [`DISTRUST_AFTER`] times and more often than they answered is *distrusted* for the rest of
//!   the lookup: what it names later is ignored, the peers that only distrusted peers named are
//!   dropped, and those of them already asked are distrusted in turn (misrouters name each
//!   other: the taint follows the chain);
//! - a request that has not been answered after half its timeout *stalls*: it stops counting
//!   against α, so the lookup asks the next candidate instead of waiting, while an answer that
//!   still comes in is taken (its candidate is not given up until the timeout);
//! - failures the lookup can blame on a distrusted referrer are not counted toward asking for
//!   more peers per answer (see [`Lookup::unexplained_failures`]);
//! - a contact implausibly close to the target for the network's size (see
//!   [`PLAUSIBLE_SLACK_BITS`]) is not a candidate at all: ids are drawn uniformly, so with N
//!   peers the i-th closest to a key shares about log₂(N/i) bits with it, and one sharing many
//!   more was made up (a misrouter's fake) or placed there (a Sybil cluster around a key, as in
//!   the eclipse attack on the IPFS DHT that Prünster et al. measured in 2022). The target
//!   itself, when a peer has that id, is always plausible.

use std::collections::{HashMap, HashSet};

use crate::{Address, Contact, Distance, Key};

/// Failed referrals (at least, and more than answered) that make a lookup distrust a referrer.
pub(crate) const DISTRUST_AFTER: u32 = 2;

/// How many bits closer to the target than its rank makes likely a candidate may be: the i-th
/// closest of N uniformly drawn ids shares more than log₂(N/i) + t bits with a key with
/// probability about 2^-t (for i = 1; far less for larger i), so t = 16 drops an honest closest
/// peer in about one lookup in 65,000 (more where the size estimate is low: netsim at 300 nodes
/// lost one of 6,000 closest peers with t = 12), while a fake next to the target (90 bits and
/// more) or a Sybil cluster (64 bits at 10,000 nodes, where log₂ N is 13) never passes.
pub(crate) const PLAUSIBLE_SLACK_BITS: f64 = 16.0;

/// Other referrers a candidate remembers besides the first.
const MAX_OTHER_REFERRERS: usize = 4;

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
    /// Who named it first (`None`: a seed).
    referrer: Option<Key>,
    /// Other peers that named it too (a few).
    others: Vec<Key>,
    /// Waiting past half its timeout: no longer counted in `in_flight`.
    stalled: bool,
}

#[derive(Clone, Debug)]
struct Path<A> {
    candidates: Vec<Candidate<A>>,
    in_flight: usize,
    failures: usize,
    /// Whether the top-up round (see [`Lookup::next_requests`]) was done.
    topped_up: bool,
    /// An answer brought no candidate closer than the closest already known: from then on the
    /// path asks all of its k closest not yet asked at once (Kademlia §2.3).
    converged: bool,
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
    /// Per referrer: referrals that answered, and that failed.
    referrals: HashMap<Key, (u32, u32)>,
    /// Referrers whose referrals failed at least twice and more often than not.
    distrusted: HashSet<Key>,
    /// Failures of peers named by a distrusted referrer.
    blamed: usize,
    /// Failures in all.
    failures: usize,
    /// log₂ of the network's size, as the local routing table estimates it; `None` turns the
    /// plausibility check off.
    log2_size: Option<f64>,
    /// Whether a converged path asks all of its k closest at once (see the module docs); off
    /// for the many holder lookups a fetch runs side by side.
    last_round_at_once: bool,
}

/// Whether a peer at `distance` from the target, with `closer` candidates before it, is
/// plausible in a network of 2^`log2_size` peers.
fn plausible(distance: &Distance, closer: usize, log2_size: f64, slack: f64) -> bool {
    let rank = (closer + 1) as f64;
    (distance.leading_zeros() as f64) <= log2_size - rank.log2() + slack
}

/// Whether some peer not distrusted named `c` (or it is a seed).
fn trusted<A>(c: &Candidate<A>, distrusted: &HashSet<Key>) -> bool {
    match c.referrer {
        None => true,
        Some(r) => !distrusted.contains(&r) || c.others.iter().any(|o| !distrusted.contains(o)),
    }
}

/// What a finished request tells the engine about the peer that named the one asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Referral {
    /// The peer that named it.
    pub(crate) referrer: Key,
    /// Whether the peer named answered.
    pub(crate) ok: bool,
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
                    converged: false,
                })
                .collect(),
            claimed: HashMap::new(),
            failed: HashSet::new(),
            referrals: HashMap::new(),
            distrusted: HashSet::new(),
            blamed: 0,
            failures: 0,
            log2_size: None,
            last_round_at_once: true,
        };
        let mut seeds = seeds;
        seeds.sort_by_key(|c| target.distance(&c.id));
        seeds.dedup_by_key(|c| c.id);
        for (i, seed) in seeds.into_iter().enumerate() {
            lookup.offer(i % paths, seed, 1, None);
        }
        lookup
    }

    /// Turns the plausibility check on for a network of about 2^`log2_size` peers (see
    /// [`PLAUSIBLE_SLACK_BITS`]), and drops the seeds it refuses.
    pub(crate) fn with_size_estimate(mut self, log2_size: Option<f64>) -> Self {
        self.log2_size = log2_size;
        let (target, slack) = (self.target, PLAUSIBLE_SLACK_BITS);
        if let Some(l2) = log2_size {
            for p in &mut self.paths {
                let mut rank = 0usize;
                p.candidates.retain(|c| {
                    let ok = c.contact.id == target || plausible(&c.distance, rank, l2, slack);
                    rank += usize::from(ok);
                    ok
                });
            }
        }
        self
    }

    /// Keeps α in flight to the end instead of sending the last round at once: for the holder
    /// lookups of a fetch, up to its lookahead of them at once, which end at enough holders
    /// rather than at the k closest, and whose last rounds together would put every chunk's
    /// whole neighbourhood in flight at the same moment.
    pub(crate) fn alpha_to_the_end(mut self) -> Self {
        self.last_round_at_once = false;
        self
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
            let limit = if path.converged && self.last_round_at_once {
                self.k
            } else {
                self.alpha
            };
            let mut live = 0;
            let mut i = 0;
            while i < path.candidates.len() && live < self.k && path.in_flight < limit {
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

    /// `from` answered on `path` with `closer` peers; the referral that led to it, if any.
    pub(crate) fn on_success(
        &mut self,
        path: PathId,
        from: &Key,
        closer: Vec<Contact<A>>,
    ) -> Option<Referral> {
        let p = self.paths.get_mut(path)?;
        let c = p
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == *from && c.state == State::Waiting)?;
        c.state = State::Succeeded;
        let hop = c.hop + 1;
        if !std::mem::take(&mut c.stalled) {
            p.in_flight -= 1;
        }
        let referrer = c.referrer;
        if let Some(r) = referrer {
            self.referrals.entry(r).or_default().0 += 1;
        }
        let closest = |p: &Path<A>| p.candidates.first().map(|c| c.distance);
        let before = closest(p);
        if !self.distrusted.contains(from) {
            for contact in closer.into_iter().take(2 * self.k) {
                self.offer(path, contact, hop, Some(*from));
            }
        }
        let p = &mut self.paths[path];
        if closest(p) == before {
            p.converged = true;
        }
        referrer.map(|referrer| Referral { referrer, ok: true })
    }

    /// The request to `from` on `path` has waited half its timeout: it stops counting against
    /// α (its answer is still taken if it comes).
    pub(crate) fn on_stall(&mut self, path: PathId, from: &Key) {
        let Some(p) = self.paths.get_mut(path) else {
            return;
        };
        if let Some(c) = p
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == *from && c.state == State::Waiting && !c.stalled)
        {
            c.stalled = true;
            p.in_flight -= 1;
        }
    }

    /// Failures of peers that no distrusted referrer named: those that say the network has
    /// dead peers in it, rather than that somebody lied.
    pub(crate) fn unexplained_failures(&self) -> usize {
        self.failures - self.blamed
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
        let suspect = !trusted(c, &self.distrusted);
        if c.retried || i >= k || (!known && i > 0) || (!known && suspect) {
            return false;
        }
        c.retried = true;
        c.state = State::NotContacted;
        if !std::mem::take(&mut c.stalled) {
            p.in_flight -= 1;
        }
        true
    }

    /// `from` failed on `path`: it leaves the candidate set. Returns the referral that led to
    /// it, if any; a referrer whose referrals now fail at least twice and more often than they
    /// answer is distrusted, and the peers only it named leave every path.
    pub(crate) fn on_failure(&mut self, path: PathId, from: &Key) -> Option<Referral> {
        let p = self.paths.get_mut(path)?;
        let i = p
            .candidates
            .iter()
            .position(|c| c.contact.id == *from && c.state == State::Waiting)?;
        let c = p.candidates.remove(i);
        if !c.stalled {
            p.in_flight -= 1;
        }
        p.failures += 1;
        self.failures += 1;
        self.failed.insert(*from);
        let referrer = c.referrer?;
        let (ok, failed) = {
            let r = self.referrals.entry(referrer).or_default();
            r.1 += 1;
            *r
        };
        if !trusted(&c, &self.distrusted) {
            self.blamed += 1;
        } else if failed >= DISTRUST_AFTER && failed > ok {
            self.distrust(referrer);
            if !trusted(&c, &self.distrusted) {
                self.blamed += 1;
            }
        }
        Some(Referral {
            referrer,
            ok: false,
        })
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
                c.state == State::Waiting
                    || (c.state == State::NotContacted
                        && self.claimed.get(&c.contact.id).is_none_or(|&p| p == path))
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

    /// Distrusts `peer`, and then every peer only distrusted peers named: those not asked
    /// leave the candidates, those asked are distrusted too.
    fn distrust(&mut self, peer: Key) {
        let mut work = vec![peer];
        // Bounded: each peer is distrusted once, and the candidates are bounded.
        while let Some(p) = work.pop() {
            if !self.distrusted.insert(p) {
                continue;
            }
            let distrusted = &self.distrusted;
            for path in &mut self.paths {
                path.candidates.retain(|c| {
                    if trusted(c, distrusted) {
                        return true;
                    }
                    if c.state != State::NotContacted {
                        work.push(c.contact.id);
                        return true;
                    }
                    false
                });
            }
        }
    }

    fn offer(&mut self, path: PathId, contact: Contact<A>, hop: u32, referrer: Option<Key>) {
        if contact.id == self.local
            || !contact.addr.matches_id(&contact.id)
            || self.failed.contains(&contact.id)
        {
            return;
        }
        let distance = self.target.distance(&contact.id);
        let p = &mut self.paths[path];
        let pos = match p.candidates.binary_search_by_key(&distance, |c| c.distance) {
            Ok(i) => {
                // Already a candidate: named by another peer too.
                let c = &mut p.candidates[i];
                if let Some(r) = referrer
                    && c.referrer.is_some()
                    && c.referrer != Some(r)
                    && !c.others.contains(&r)
                    && c.others.len() < MAX_OTHER_REFERRERS
                {
                    c.others.push(r);
                }
                return;
            }
            Err(pos) => pos,
        };
        if pos >= self.capacity {
            return;
        }
        if let Some(l2) = self.log2_size
            && contact.id != self.target
            && !plausible(&distance, pos, l2, PLAUSIBLE_SLACK_BITS)
        {
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
                referrer,
                others: Vec::new(),
                stalled: false,
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
    fn an_answer_that_brings_nobody_closer_sends_the_last_round_at_once() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        let mut l = Lookup::new(target, local, (5..=12).map(c).collect(), 4, 1, 1);
        let addrs =
            |r: Vec<(PathId, Contact<u32>)>| r.into_iter().map(|(_, c)| c.addr).collect::<Vec<_>>();
        assert_eq!(addrs(l.next_requests()), vec![5]);
        // An answer naming a closer peer: still α at a time.
        l.on_success(0, &c(5).id, vec![c(1)]);
        assert_eq!(addrs(l.next_requests()), vec![1]);
        // Nobody closer than 1: the rest of the 4 closest go out together.
        l.on_success(0, &c(1).id, vec![c(6)]);
        assert_eq!(addrs(l.next_requests()), vec![6, 7]);
        assert!(l.next_requests().is_empty(), "only the k closest");
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
        // Peer 1 named nobody closer: the rest of the k closest are asked at once.
        let next = l.next_requests();
        assert_eq!(
            next.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(!l.is_finished());
        l.on_success(0, &c(3).id, vec![]);
        l.on_success(0, &c(4).id, vec![]);
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

    #[test]
    fn a_referrer_whose_peers_fail_is_distrusted_and_its_other_peers_dropped() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        // Peer 100 names four made-up peers right next to the target and one real one.
        let mut l = Lookup::new(target, local, vec![c(100), c(90)], 20, 2, 1);
        assert_eq!(l.next_requests().len(), 2);
        let named = vec![c(1), c(2), c(3), c(4), c(50)];
        // Each answer brings someone closer, so the lookup stays at α.
        l.on_success(0, &c(90).id, vec![c(4)]);
        assert_eq!(
            l.on_success(0, &c(100).id, named),
            None,
            "a seed has no referrer"
        );
        let asked: Vec<u32> = l.next_requests().iter().map(|(_, c)| c.addr).collect();
        assert_eq!(asked, vec![1, 2]);
        let r = l.on_failure(0, &c(1).id).unwrap();
        assert_eq!((r.referrer, r.ok), (c(100).id, false));
        // One failure: not yet distrusted, the next one is asked.
        assert_eq!(
            l.next_requests()
                .iter()
                .map(|(_, c)| c.addr)
                .collect::<Vec<_>>(),
            vec![3]
        );
        l.on_failure(0, &c(2).id);
        // Two and none answered: distrusted. Peer 3 is in flight; 50, named only by it, is
        // dropped, 4 stays (90 named it too).
        l.on_failure(0, &c(3).id);
        let asked: Vec<u32> = l.next_requests().iter().map(|(_, c)| c.addr).collect();
        assert_eq!(asked, vec![4]);
        assert_eq!(
            l.unexplained_failures(),
            1,
            "only the first failure was not blamed"
        );
        l.on_success(0, &c(4).id, vec![]);
        // The top-up round a failure earns (4 and 90), then done; 50 was never asked.
        let top_up = l.next_requests();
        assert_eq!(
            top_up.iter().map(|(_, c)| c.addr).collect::<Vec<_>>(),
            vec![4, 90]
        );
        for (path, c) in top_up {
            l.on_success(path, &c.id, vec![]);
        }
        assert!(l.is_finished());
        let (closest, _) = l.closest_succeeded(20);
        assert_eq!(
            closest.iter().map(|c| c.addr).collect::<Vec<_>>(),
            vec![4, 90, 100]
        );
    }

    #[test]
    fn a_stalled_request_frees_its_slot_and_its_late_answer_still_counts() {
        let target = Key::from_bytes([0; 32]);
        let local = Key::from_bytes([0xff; 32]);
        let mut l = Lookup::new(target, local, vec![c(1), c(2), c(3)], 3, 1, 1);
        assert_eq!(
            l.next_requests()
                .iter()
                .map(|(_, c)| c.addr)
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert!(l.next_requests().is_empty(), "α = 1");
        l.on_stall(0, &c(1).id);
        assert_eq!(
            l.next_requests()
                .iter()
                .map(|(_, c)| c.addr)
                .collect::<Vec<_>>(),
            vec![2]
        );
        l.on_stall(0, &c(2).id);
        assert_eq!(
            l.next_requests()
                .iter()
                .map(|(_, c)| c.addr)
                .collect::<Vec<_>>(),
            vec![3]
        );
        l.on_success(0, &c(3).id, vec![]);
        assert!(!l.is_finished(), "the stalled ones are among the k closest");
        l.on_success(0, &c(1).id, vec![]);
        l.on_failure(0, &c(2).id);
        // The top-up round a failure earns, then done.
        for (path, c) in l.next_requests() {
            l.on_success(path, &c.id, vec![]);
        }
        assert!(l.is_finished());
        let (closest, _) = l.closest_succeeded(3);
        assert_eq!(
            closest.iter().map(|c| c.addr).collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}
