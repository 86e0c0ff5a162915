//! Custody of the chunks this peer holds: the repair audit and the verified handoff, and what
//! they learn of each chunk's proven copies.
//!
//! A copy counts only once its holder **proves** it has the bytes: the engine sends a fresh
//! random nonce ([`Event::Challenge`]), the node reads its own copy and asks the peer for
//! [`proof`] of the nonce over its copy, and hands back what came of it
//! ([`Dht::handle_proof`]). A "yes, I hold it" costs a liar nothing; a keyed BLAKE3 hash under a
//! key it has never seen costs it the bytes.
//!
//! - **Audit** (every `repair_interval`, within `repair_budget` chunks a minute): each chunk
//!   this peer is responsible for challenges the other `replication - 1` closest peers. One
//!   that lacks the chunk gets a copy ([`Event::Replicate`]); one whose proof is wrong is
//!   penalised and dropped from the table (and the next peer in line gets a copy); one that
//!   cannot be reached is checked for liveness. Each round takes the chunks with the fewest
//!   proven copies at their last check first (never-checked chunks before all), so a budget too
//!   small for the round repairs the chunks nearest to loss.
//! - **Handoff**: a peer pushed out of a chunk's closest set by a newcomer copies the chunk to
//!   it, and keeps its responsible copy until all `replication` closest peers have proved
//!   theirs; only then does it tell the node to release it ([`Event::Release`]), which keeps
//!   the bytes as evictable cache (never touching pinned data).

use rand::Rng;

use super::*;

/// Bytes of a chunk one proof covers, at an offset the nonce picks: a peer must keep the
/// whole chunk to answer challenges at unknown offsets, and proving costs a small read.
pub const PROOF_WINDOW: usize = 64 * 1024;

/// A proof older than this many `repair_interval`s no longer counts as a confirmed copy.
const PROOF_LIFETIME_ROUNDS: u32 = 2;

/// A challenge the node has not reported on after this long is forgotten.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(180);

/// Handoffs checked at most per jobs run.
const HANDOFFS_PER_RUN: usize = 64;

/// The window over which departures from the routing table are counted to estimate how long
/// peers stay, and the most departures remembered.
const CHURN_WINDOW: Duration = Duration::from_secs(1800);
const MAX_DEPARTURES: usize = 4096;

/// The audit runs at least this often under heavy churn: a quarter of the estimated mean
/// session, never more often than this.
const MIN_AUDIT_INTERVAL: Duration = Duration::from_secs(120);

/// The answer to a challenge with `nonce` over a chunk's `bytes`: a BLAKE3 hash keyed by the
/// nonce of the chunk's length and of [`PROOF_WINDOW`] bytes at an offset the nonce picks. The
/// challenger computes it over its own copy, the challenged peer over its copy; they match
/// only if both hold the same bytes.
pub fn proof(nonce: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let window = PROOF_WINDOW.min(bytes.len());
    let offsets = (bytes.len() - window) as u64 + 1;
    let mut pick = [0u8; 8];
    pick.copy_from_slice(&nonce[..8]);
    let offset = (u64::from_le_bytes(pick) % offsets) as usize;
    let mut hasher = blake3::Hasher::new_keyed(nonce);
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(&bytes[offset..offset + window]);
    *hasher.finalize().as_bytes()
}

/// What came of a challenge ([`Event::Challenge`]), for [`Dht::handle_proof`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProofOutcome {
    /// The peer's proof matched this peer's copy: it holds the bytes.
    Valid,
    /// The peer answered with a proof that does not match: it does not hold these bytes.
    Invalid,
    /// The peer says it does not hold the chunk.
    Missing,
    /// The peer could not be reached.
    Unreachable,
    /// Nothing was asked: this peer no longer has its own copy to check against.
    Unchecked,
}

/// What the repair audit and handoffs have found and done, for status displays.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RepairStats {
    /// Chunks held whose last audit found this peer responsible.
    pub responsible: usize,
    /// Of those, the chunks with fewer than `replication` proven copies (this peer's included)
    /// at their last audit: copies were sent to the peers that lacked them.
    pub below_target: usize,
    /// Chunks held not audited yet.
    pub unaudited: usize,
    /// Chunks being handed over to the peers that are now their closest.
    pub handoffs: usize,
    /// Copies asked of the node ([`Event::Replicate`]) since start.
    pub copies_sent: u64,
    /// Challenges answered with a valid proof since start.
    pub proofs_valid: u64,
    /// Challenges answered with a wrong proof since start (the peers were penalised).
    pub proofs_invalid: u64,
    /// Handoffs completed ([`Event::Release`]) since start.
    pub released: u64,
}

/// The custody state of the engine.
#[derive(Debug)]
pub(super) struct Custody<A> {
    /// Audit order: (round last audited, proven copies then, chunk). The earliest round comes
    /// first (0: never), and within a round the chunks with the fewest proven copies.
    queue: BTreeSet<(u64, u8, Key)>,
    /// Each held chunk's place in `queue`.
    place: HashMap<Key, (u64, u8)>,
    /// The peers that proved a copy of each chunk, and when (at most `replication` kept).
    proven: HashMap<Key, Vec<(Key, Timestamp)>>,
    /// Chunks being handed over, and since when; and the order they are checked in (a key
    /// no longer in `handoffs` is skipped).
    handoffs: HashMap<Key, Timestamp>,
    handoff_order: VecDeque<Key>,
    /// Challenges sent and not reported on: (chunk, peer) → (peer's contact, when).
    challenges: HashMap<(Key, Key), (Contact<A>, Timestamp)>,
    /// When peers left the routing table for not answering, within [`CHURN_WINDOW`].
    departures: VecDeque<Timestamp>,
    /// The current audit round, and when it began.
    round: u64,
    round_began: Option<Timestamp>,
    stats: RepairStats,
}

impl<A> Default for Custody<A> {
    fn default() -> Self {
        Self {
            queue: BTreeSet::new(),
            place: HashMap::new(),
            proven: HashMap::new(),
            handoffs: HashMap::new(),
            handoff_order: VecDeque::new(),
            challenges: HashMap::new(),
            departures: VecDeque::new(),
            round: 0,
            round_began: None,
            stats: RepairStats::default(),
        }
    }
}

impl<A> Custody<A> {
    /// A chunk is now held: it is audited before every chunk already checked.
    pub(super) fn hold(&mut self, key: Key) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.place.entry(key) {
            e.insert((0, 0));
            self.queue.insert((0, 0, key));
        }
    }

    /// A chunk is no longer held.
    pub(super) fn forget(&mut self, key: &Key) {
        if let Some((round, copies)) = self.place.remove(key) {
            self.queue.remove(&(round, copies, *key));
        }
        self.proven.remove(key);
        self.handoffs.remove(key);
    }

    /// A peer left the routing table for not answering.
    pub(super) fn departed(&mut self, now: Timestamp) {
        if self.departures.len() >= MAX_DEPARTURES {
            self.departures.pop_front();
        }
        self.departures.push_back(now);
    }

    /// Departures within the window ending `now`.
    fn recent_departures(&mut self, now: Timestamp) -> usize {
        while self
            .departures
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > CHURN_WINDOW)
        {
            self.departures.pop_front();
        }
        self.departures.len()
    }

    fn requeue(&mut self, key: Key, round: u64, copies: u8) {
        if let Some(old) = self.place.insert(key, (round, copies)) {
            self.queue.remove(&(old.0, old.1, key));
            self.queue.insert((round, copies, key));
        }
    }
}

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    /// What came of the challenge of `peer` over `key` ([`Event::Challenge`]).
    pub fn handle_proof(&mut self, now: Timestamp, key: Key, peer: &Key, outcome: ProofOutcome) {
        self.run_jobs(now);
        let Some((contact, _)) = self.custody.challenges.remove(&(key, *peer)) else {
            return; // forgotten, or never asked
        };
        match outcome {
            ProofOutcome::Valid => {
                self.custody.stats.proofs_valid += 1;
                self.unconfirmed.remove(&key);
                let r = self.config.replication.max(1);
                let proven = self.custody.proven.entry(key).or_default();
                proven.retain(|(p, _)| p != peer);
                proven.push((*peer, now));
                if proven.len() > r {
                    proven.remove(0);
                }
                let copies = self.proven_copies(now, &key, Timestamp::EPOCH);
                if let Some(&(round, _)) = self.custody.place.get(&key) {
                    self.custody.requeue(key, round, copies as u8);
                }
            }
            ProofOutcome::Missing => {
                if self.held.contains(&key) && !self.unconfirmed.contains_key(&key) {
                    self.custody.stats.copies_sent += 1;
                    self.events.push_back(Event::Replicate { key, to: contact });
                }
            }
            ProofOutcome::Invalid => {
                self.custody.stats.proofs_invalid += 1;
                if let Some(p) = self.custody.proven.get_mut(&key) {
                    p.retain(|(p, _)| p != peer);
                }
                self.report(now, peer, None, Offence::WrongProof);
            }
            ProofOutcome::Unreachable => self.connection_lost(now, peer),
            ProofOutcome::Unchecked => {}
        }
    }

    /// What the repair audit and handoffs have found and done.
    pub fn repair_stats(&self) -> RepairStats {
        let r = self.config.replication.max(1);
        let mut stats = self.custody.stats;
        stats.handoffs = self.custody.handoffs.len();
        stats.responsible = 0;
        stats.below_target = 0;
        stats.unaudited = 0;
        for &(round, copies) in self.custody.place.values() {
            if round == 0 {
                stats.unaudited += 1;
            } else if copies != u8::MAX {
                stats.responsible += 1;
                stats.below_target += usize::from(usize::from(copies) < r);
            }
        }
        stats
    }

    /// The copies of `key` proven since `since` on the current `replication` closest peers,
    /// this one included (it holds the chunk).
    fn proven_copies(&self, now: Timestamp, key: &Key, since: Timestamp) -> usize {
        let r = self.config.replication.max(1);
        let lifetime = self.config.repair_interval * PROOF_LIFETIME_ROUNDS;
        let fresh = |at: Timestamp| at >= since && now.saturating_duration_since(at) <= lifetime;
        let closest = self.table.closest(key, r);
        let proven = self.custody.proven.get(key).map_or(0, |p| {
            p.iter()
                .filter(|(peer, at)| fresh(*at) && closest.iter().any(|c| c.id == *peer))
                .count()
        });
        1 + proven
    }

    /// Challenges `peer` over `key` unless a challenge is already out.
    fn challenge(&mut self, now: Timestamp, key: Key, peer: Contact<A>) {
        let slot = (key, peer.id);
        if self.custody.challenges.contains_key(&slot) {
            return;
        }
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);
        self.custody.challenges.insert(slot, (peer.clone(), now));
        self.events.push_back(Event::Challenge { key, peer, nonce });
    }

    /// Starts handing `key` over, unless that is under way already (see
    /// [`Dht::progress_handoffs`]).
    fn begin_handoff(&mut self, now: Timestamp, key: Key) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.custody.handoffs.entry(key) {
            e.insert(now);
            self.custody.handoff_order.push_back(key);
        }
    }

    /// Sends a copy of `key` to `to`, a new closest peer; hands `key` over if this peer is no
    /// longer among its closest (`release`).
    pub(super) fn transfer(&mut self, now: Timestamp, t: placement::Transfer<A>) {
        self.custody.stats.copies_sent += 1;
        if t.release {
            self.begin_handoff(now, t.key);
        }
        self.events.push_back(Event::Replicate {
            key: t.key,
            to: t.to,
        });
    }

    /// How often each chunk is audited: `repair_interval`, or under heavy churn a quarter of
    /// the mean time a peer stays, estimated from the routing table (its size over the rate
    /// at which entries leave for not answering), so that a chunk's holders are checked a few
    /// times in the life of each (netsim, 15-minute sessions: see BENCHMARKS.md).
    pub(super) fn audit_interval(&mut self, now: Timestamp) -> Duration {
        let configured = self.config.repair_interval;
        let departures = self.custody.recent_departures(now);
        if departures == 0 {
            return configured;
        }
        let per_second = departures as f64 / CHURN_WINDOW.as_secs_f64();
        let session = Duration::from_secs_f64(self.table.len().max(1) as f64 / per_second);
        (session / 4).clamp(MIN_AUDIT_INTERVAL.min(configured), configured)
    }

    /// The repair audit's share of one jobs run (see the module docs).
    pub(super) fn audit(&mut self, now: Timestamp) {
        self.custody
            .challenges
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < CHALLENGE_TIMEOUT);
        if self.custody.queue.is_empty() {
            return;
        }
        let interval = self.audit_interval(now);
        let round = self.custody.round;
        let behind = self
            .custody
            .queue
            .first()
            .is_some_and(|&(last, _, _)| last < round);
        if !behind {
            // The round is done: the next begins `repair_interval` after it began.
            if self
                .custody
                .round_began
                .is_some_and(|began| now.saturating_duration_since(began) < interval)
            {
                return;
            }
            self.custody.round += 1;
            self.custody.round_began = Some(now);
        }
        let round = self.custody.round;
        // Spread over the interval: the round's share of one jobs run, within the budget.
        let runs = (interval.as_secs() / JOBS_INTERVAL.as_secs()).max(1);
        let due = (self.custody.place.len() as u64).div_ceil(runs) as usize;
        let count = due.clamp(1, self.config.repair_budget.max(1));
        let keys: Vec<Key> = self
            .custody
            .queue
            .iter()
            .take_while(|&&(last, _, _)| last < round)
            .take(count)
            .map(|&(_, _, key)| key)
            .collect();
        let r = self.config.replication.max(1);
        for key in keys {
            let peers = self.table.closest(&key, r);
            let d_local = key.distance(&self.local);
            // Responsible: fewer than r known peers are closer than this one.
            let closer = peers
                .iter()
                .filter(|c| key.distance(&c.id) < d_local)
                .count();
            if closer >= r {
                // Left to the peers that are (a handoff checks its own copies).
                self.custody.requeue(key, round, u8::MAX);
                continue;
            }
            let copies = self.proven_copies(now, &key, Timestamp::EPOCH);
            self.custody.requeue(key, round, copies as u8);
            for peer in peers.into_iter().take(r - 1) {
                self.challenge(now, key, peer);
            }
        }
    }

    /// Moves handoffs on: a chunk whose `replication` closest peers all proved their copies
    /// since the handoff began is released; the others challenge the peers not yet proven (one
    /// that lacks the chunk gets a copy). A chunk this peer is again responsible for stays.
    pub(super) fn progress_handoffs(&mut self, now: Timestamp) {
        let r = self.config.replication.max(1);
        let mut due = Vec::new();
        while due.len() < HANDOFFS_PER_RUN {
            let Some(key) = self.custody.handoff_order.pop_front() else {
                break;
            };
            if let Some(&since) = self.custody.handoffs.get(&key) {
                due.push((key, since));
            }
        }
        for (key, since) in due {
            if !self.held.contains(&key)
                || placement::among_closest(&self.table, &self.local, &key, r)
            {
                self.custody.handoffs.remove(&key);
                continue;
            }
            // This peer is not among the r closest, so all r of them must have proven a copy.
            let proven = self.proven_copies(now, &key, since) - 1;
            if proven >= r {
                self.custody.handoffs.remove(&key);
                self.custody.stats.released += 1;
                self.events.push_back(Event::Release { key });
                continue;
            }
            let fresh = |p: &Key, proven: &HashMap<Key, Vec<(Key, Timestamp)>>| {
                proven
                    .get(&key)
                    .is_some_and(|v| v.iter().any(|(q, at)| q == p && *at >= since))
            };
            for peer in self.table.closest(&key, r) {
                if !fresh(&peer.id, &self.custody.proven) {
                    self.challenge(now, key, peer);
                }
            }
            // Checked again at a later run, behind the others.
            self.custody.handoff_order.push_back(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn key(last: u8) -> Key {
        let mut b = [0u8; 32];
        b[31] = last;
        Key::from_bytes(b)
    }

    /// An engine with id 0 and `replication` `r`, and the peers `ids` in its table.
    fn engine(r: usize, ids: &[[u8; 32]]) -> (Dht<u32>, Vec<Contact<u32>>) {
        let config = Config {
            replication: r,
            ..Config::default()
        };
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), config);
        let mut peers = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let peer = Contact::new(Key::from_bytes(*id), i as u32 + 1);
            dht.handle_request(
                Timestamp::EPOCH,
                peer.clone(),
                Request::new(RequestBody::Ping),
            );
            peers.push(peer);
        }
        drain(&mut dht);
        (dht, peers)
    }

    fn far() -> [u8; 32] {
        let mut id = [0u8; 32];
        id[0] = 0x80;
        id
    }

    /// Events out; every request answered, empty (these tests are about custody).
    fn drain(dht: &mut Dht<u32>) -> Vec<Event<u32>> {
        let now = dht.next_jobs - JOBS_INTERVAL;
        while let Some(t) = dht.poll_transmit() {
            let body = match t.request.body {
                RequestBody::Ping => ResponseBody::Pong,
                RequestBody::FindNode { .. } => ResponseBody::Nodes { closer: Vec::new() },
                RequestBody::FindValue { .. } => ResponseBody::Value {
                    record: None,
                    closer: Vec::new(),
                },
                RequestBody::GetProviders { .. } => ResponseBody::Providers {
                    holds: false,
                    providers: Vec::new(),
                    closer: Vec::new(),
                    chunk: None,
                },
                RequestBody::PutRecord { .. } | RequestBody::AddProvider { .. } => {
                    ResponseBody::Stored
                }
            };
            dht.handle_response(now, t.id, Response::new(body));
        }
        std::iter::from_fn(|| dht.poll_event()).collect()
    }

    fn challenges(events: &[Event<u32>]) -> Vec<(Key, Key)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Challenge { key, peer, .. } => Some((*key, peer.id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn proofs_match_only_over_the_same_bytes_and_nonce() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let (n1, n2) = ([1u8; 32], [2u8; 32]);
        assert_eq!(proof(&n1, &bytes), proof(&n1, &bytes.clone()));
        assert_ne!(
            proof(&n1, &bytes),
            proof(&n2, &bytes),
            "a fresh nonce, a fresh answer"
        );
        let mut flipped = bytes.clone();
        flipped[299_999] ^= 1;
        let mut nonce = [0u8; 32];
        nonce[8] = 1; // offset 0 picked by the first 8 bytes: the window misses the last byte
        assert_eq!(proof(&nonce, &bytes), proof(&nonce, &flipped));
        let offsets = (bytes.len() - PROOF_WINDOW + 1) as u64;
        nonce[..8].copy_from_slice(&(offsets - 1).to_le_bytes());
        assert_ne!(
            proof(&nonce, &bytes),
            proof(&nonce, &flipped),
            "the last window"
        );
        assert_ne!(
            proof(&n1, &bytes),
            proof(&n1, &bytes[..bytes.len() - 1]),
            "a truncated copy fails"
        );
        assert_eq!(proof(&n1, b""), proof(&n1, b""), "an empty chunk is fine");
    }

    #[test]
    fn the_audit_challenges_a_chunks_closest_peers_and_copies_it_to_one_that_lacks_it() {
        let (mut dht, peers) = engine(5, &[far()]);
        let chunk = key(7);
        dht.hold(chunk);
        // Nine minutes: inside the 10-minute repair interval every held chunk is checked once.
        let mut asked = Vec::new();
        let mut copies = 0;
        let mut t = Timestamp::EPOCH + Duration::from_secs(3600);
        for _ in 0..9 {
            t = t + MINUTE;
            dht.handle_timeout(t);
            let events = drain(&mut dht);
            for (k, p) in challenges(&events) {
                asked.push(p);
                dht.handle_proof(t, k, &p, ProofOutcome::Missing);
            }
            copies += drain(&mut dht)
                .iter()
                .filter(|e| matches!(e, Event::Replicate { key, to } if *key == chunk && to.id == peers[0].id))
                .count();
        }
        assert_eq!(
            asked,
            vec![peers[0].id],
            "one challenge per repair interval"
        );
        assert_eq!(copies, 1, "a copy goes to the peer that lacks it");
        assert_eq!(dht.repair_stats().below_target, 1);
    }

    #[test]
    fn a_pushed_copy_nobody_else_holds_is_not_multiplied_and_lapses() {
        let (mut dht, peers) = engine(5, &[far()]);
        let (junk, genuine) = (key(7), key(8));
        let t0 = Timestamp::EPOCH + Duration::from_secs(3600);
        dht.hold_pushed(t0, junk);
        dht.hold_pushed(t0, genuine);
        assert!(dht.is_unconfirmed(&junk));
        let mut t = t0;
        let mut copies = Vec::new();
        let mut released = Vec::new();
        for _ in 0..31 {
            t = t + MINUTE;
            dht.handle_timeout(t);
            let events = drain(&mut dht);
            released.extend(events.iter().filter_map(|e| match e {
                Event::Release { key } => Some(*key),
                _ => None,
            }));
            for (k, p) in challenges(&events) {
                // The other peer holds the genuine chunk, not the junk.
                let outcome = if k == genuine {
                    ProofOutcome::Valid
                } else {
                    ProofOutcome::Missing
                };
                dht.handle_proof(t, k, &p, outcome);
            }
            copies.extend(drain(&mut dht).into_iter().filter_map(|e| match e {
                Event::Replicate { key, to } => Some((key, to.id)),
                _ => None,
            }));
        }
        assert!(copies.is_empty(), "the junk was not copied on: {copies:?}");
        assert!(
            !dht.is_unconfirmed(&genuine),
            "confirmed by the other's proof"
        );
        assert!(dht.holds(&genuine));
        assert_eq!(released, vec![junk], "the junk lapsed after 30 minutes");
        assert!(!dht.holds(&junk));
        let _ = peers;
    }

    #[test]
    fn a_wrong_proof_costs_the_peer_its_place() {
        let (mut dht, peers) = engine(5, &[far()]);
        let chunk = key(7);
        dht.hold(chunk);
        let t = Timestamp::EPOCH + Duration::from_secs(3600);
        dht.handle_timeout(t);
        let asked = challenges(&drain(&mut dht));
        assert_eq!(asked, vec![(chunk, peers[0].id)]);
        dht.handle_proof(t, chunk, &peers[0].id, ProofOutcome::Invalid);
        assert!(!dht.contains_peer(&peers[0].id), "dropped from the table");
        assert_eq!(dht.repair_stats().proofs_invalid, 1);
        // An outcome nobody asked for changes nothing.
        dht.handle_proof(t, chunk, &peers[0].id, ProofOutcome::Valid);
        assert_eq!(dht.repair_stats().proofs_valid, 0);
    }

    #[test]
    fn a_handoff_releases_only_once_every_new_closest_peer_proved_its_copy() {
        let chunk = key(7);
        let (mut dht, _) = engine(2, &[far()]);
        dht.hold(chunk);
        let mut t = Timestamp::EPOCH + Duration::from_secs(3600);
        // Two peers join next to the chunk (distances 1 and 2, this peer's is 7): the second
        // pushes this peer out of the two closest, so it copies and hands over.
        let near: Vec<Contact<u32>> = [6u8, 5]
            .iter()
            .map(|&b| Contact::new(key(b), u32::from(b) + 10))
            .collect();
        let mut replicated = Vec::new();
        for p in &near {
            dht.handle_request(t, p.clone(), Request::new(RequestBody::Ping));
            for e in drain(&mut dht) {
                if let Event::Replicate { key, to } = e {
                    replicated.push((key, to.id));
                }
            }
        }
        assert!(replicated.contains(&(chunk, near[1].id)), "{replicated:?}");
        assert_eq!(dht.repair_stats().handoffs, 1);
        // The next run challenges both; only one proves its copy: nothing is released.
        t = t + MINUTE;
        dht.handle_timeout(t);
        let mut asked = challenges(&drain(&mut dht));
        asked.sort();
        let mut both = vec![(chunk, near[0].id), (chunk, near[1].id)];
        both.sort();
        assert_eq!(asked, both);
        dht.handle_proof(t, chunk, &near[1].id, ProofOutcome::Valid);
        dht.handle_proof(t, chunk, &near[0].id, ProofOutcome::Missing);
        let events = drain(&mut dht);
        assert!(!events.iter().any(|e| matches!(e, Event::Release { .. })));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Replicate { key, to } if *key == chunk && to.id == near[0].id)),
            "the one that lacks it gets a copy"
        );
        // The next run asks only the one not yet proven; its proof completes the handoff.
        t = t + MINUTE;
        dht.handle_timeout(t);
        assert_eq!(challenges(&drain(&mut dht)), vec![(chunk, near[0].id)]);
        dht.handle_proof(t, chunk, &near[0].id, ProofOutcome::Valid);
        t = t + MINUTE;
        dht.handle_timeout(t);
        let events = drain(&mut dht);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Release { key } if *key == chunk)),
            "{events:?}"
        );
        assert_eq!(dht.repair_stats().handoffs, 0);
        assert_eq!(dht.repair_stats().released, 1);
    }

    #[test]
    fn the_audit_runs_more_often_when_peers_leave_fast() {
        let ids: Vec<[u8; 32]> = (0..20u8)
            .map(|i| {
                let mut id = [0u8; 32];
                id[0] = 0x80 | i;
                id[1] = i;
                id
            })
            .collect();
        let (mut dht, _) = engine(5, &ids);
        let n = dht.routing_table_len();
        assert!(n >= 10, "{n}");
        let t = Timestamp::EPOCH + Duration::from_secs(3600);
        assert_eq!(
            dht.audit_interval(t),
            Duration::from_secs(600),
            "no churn seen"
        );
        // As many departures in half an hour as the table holds: peers stay 30 minutes, and
        // each chunk is audited every 7.5.
        for _ in 0..n {
            dht.custody.departed(t);
        }
        assert_eq!(dht.audit_interval(t), Duration::from_secs(450));
        // Far more: never below two minutes.
        for _ in 0..20 * n {
            dht.custody.departed(t);
        }
        assert_eq!(dht.audit_interval(t), MIN_AUDIT_INTERVAL);
        // Half an hour on, those departures no longer count.
        let later = t + CHURN_WINDOW + MINUTE;
        assert_eq!(dht.audit_interval(later), Duration::from_secs(600));
    }

    #[test]
    fn each_round_audits_the_chunks_with_the_fewest_proven_copies_first() {
        let (mut dht, peers) = engine(2, &[far()]);
        // Key order puts `a` first; one check per jobs run (2 chunks over 10 runs).
        let (a, b) = (key(7), key(9));
        dht.hold(a);
        dht.hold(b);
        let mut t = Timestamp::EPOCH + Duration::from_secs(3600);
        let mut order = Vec::new();
        for _ in 0..25 {
            t = t + MINUTE;
            dht.handle_timeout(t);
            for (k, p) in challenges(&drain(&mut dht)) {
                order.push(k);
                // `a` is proven, `b` never is.
                let outcome = if k == a {
                    ProofOutcome::Valid
                } else {
                    ProofOutcome::Missing
                };
                dht.handle_proof(t, k, &p, outcome);
                assert_eq!(p, peers[0].id);
            }
        }
        assert_eq!(
            &order[..2],
            &[a, b],
            "first round in key order (neither proven)"
        );
        assert_eq!(
            &order[2..4],
            &[b, a],
            "then the chunk short of copies first"
        );
        assert_eq!(&order[4..6], &[b, a]);
    }
}
