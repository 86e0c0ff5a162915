//! The engine: one peer's whole Kademlia state machine. Its parts by concept: the lookup
//! machinery shared by every query kind (`queries.rs`; the kinds and the lookup itself are in
//! `crate::query`), fetches of content (`fetching.rs`, over the planner in `crate::fetch`),
//! periodic work (`jobs.rs`), the custody of held chunks (`custody.rs`: repair audit, verified
//! handoff); placement rules are in `crate::placement`.

mod custody;
mod fetching;
mod jobs;
mod queries;

use custody::Custody;
pub use custody::{PROOF_WINDOW, ProofOutcome, RepairStats, proof};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::bans::{Ban, Bans, Offence};
use crate::fetch::{Action, ChunkOutcome, FetchError, FetchId, Fetches};
use crate::message::{
    MAX_INLINE_CHUNK, PROTOCOL_VERSION, RemoteError, Request, RequestBody, Response, ResponseBody,
};
use crate::placement;
use crate::query::{Kind, Lookup, PathId};
use crate::record::{ProviderRecord, RecordError, RecordStore, StoreError};
use crate::routing::{InsertOutcome, Removal, RoutingTable, TableConfig};
use crate::scores::{PeerScore, RateLimiter, Scores};
use crate::{
    Address, Config, Contact, Key, MemoryRecordStore, QueryError, QueryId, QueryResult, QueryStats,
    SignedRecord, Timestamp,
};

/// A pushed replica that no other peer proved it holds within this long is released (see
/// [`Dht::hold_pushed`]): three audits at the default `repair_interval`.
pub const UNCONFIRMED_LAPSE: Duration = Duration::from_secs(30 * 60);

/// How often `handle_timeout` runs housekeeping (record expiry, bucket refresh).
const JOBS_INTERVAL: Duration = Duration::from_secs(60);

/// Weight of a misbehaviour (bad bytes, a lie) against a peer, in failed requests.
const MISBEHAVIOUR_WEIGHT: u32 = 5;

/// The measured round trip of a peer, or `unmeasured` for one never measured: what the fetch
/// planner ranks holders by.
fn rtt_of(scores: &Scores, unmeasured: Duration) -> impl Fn(&Key) -> Duration + '_ {
    move |k| scores.rtt(k).unwrap_or(unmeasured)
}

/// Identifies an outbound request; the caller hands it back with the response or failure.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId(u64);

impl RequestId {
    /// The raw number, unique within one engine.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// A request the engine wants sent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transmit<A> {
    /// Give this back to [`Dht::handle_response`] or [`Dht::handle_failure`].
    pub id: RequestId,
    /// The peer to send to. The transport must make sure it reaches the peer whose id is
    /// `to.id` (in the node, the libp2p peer id is authenticated by Noise) and report a failure
    /// otherwise.
    pub to: Contact<A>,
    /// What to send.
    pub request: Request,
}

/// Something the caller should know or act on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event<A> {
    /// A command's query ended.
    QueryFinished {
        /// The id the command returned.
        id: QueryId,
        /// What it found.
        result: QueryResult<A>,
        /// Its counters.
        stats: QueryStats,
    },
    /// A peer entered the routing table (the node may want to keep a connection to it).
    PeerAdded {
        /// The peer.
        peer: Contact<A>,
    },
    /// A peer left the routing table.
    PeerRemoved {
        /// The peer.
        peer: Contact<A>,
    },
    /// A chunk this peer holds should be copied to `to`, which is among the `replication`
    /// closest peers to it and lacks it (see the `placement` module: a peer joined, or one
    /// left; or the repair audit found it missing). The node sends the bytes.
    Replicate {
        /// The chunk.
        key: Key,
        /// Where the copy goes.
        to: Contact<A>,
    },
    /// Ask `peer` to prove it holds the chunk `key`: the node computes [`proof`] of `nonce`
    /// over its own copy, asks the peer for the same over its copy, compares, and reports with
    /// [`Dht::handle_proof`] (see `custody.rs`).
    Challenge {
        /// The chunk.
        key: Key,
        /// Who must prove it.
        peer: Contact<A>,
        /// A fresh random key for the proof.
        nonce: [u8; 32],
    },
    /// This peer is no longer among the `replication` closest peers to the chunk `key`, and
    /// all of them proved they hold it, or a copy pushed here lapsed with no other peer
    /// proving it holds one too (see [`Dht::hold_pushed`]): the node may keep its copy as
    /// evictable cache instead of a responsible replica (pinned data stays pinned).
    Release {
        /// The chunk.
        key: Key,
    },
    /// A fetch asks for a chunk: request `chunk` from `from`, verify it, and report the outcome
    /// with [`Dht::handle_chunk`] (the engine times the request out itself).
    FetchChunk {
        /// The fetch.
        fetch: FetchId,
        /// The chunk's place in the fetch, to give back.
        index: u64,
        /// The chunk id.
        chunk: Key,
        /// The holder to ask.
        from: Contact<A>,
    },
    /// A holder's answer to a fetch's lookup carried the chunk itself (a small one, checked
    /// against its id): hand the bytes over as if `from` had answered a [`Event::FetchChunk`],
    /// and report the outcome with [`Dht::handle_chunk`] the same way.
    ChunkInline {
        /// The fetch.
        fetch: FetchId,
        /// The chunk's place in the fetch.
        index: u64,
        /// The chunk id.
        chunk: Key,
        /// The holder that sent it.
        from: Contact<A>,
        /// The chunk's bytes; they hash to `chunk`.
        bytes: Vec<u8>,
    },
    /// A fetch gave up: a chunk could not be had from any holder found.
    FetchFailed {
        /// The fetch.
        fetch: FetchId,
        /// Which chunk, and what was tried.
        error: FetchError,
    },
    /// A record this peer published has lived half its lifetime: sign it again with a later
    /// expiry (the same `ttl` from now) and a higher sequence, and publish that with
    /// [`Dht::put_record`], or it lapses. Only the holder of its secret key can.
    RenewRecord {
        /// The record as last published.
        record: SignedRecord,
        /// Its lifetime when it was published.
        ttl: Duration,
    },
    /// A peer stored a signed record with us.
    RecordStored {
        /// The record key.
        key: Key,
        /// Who sent it.
        from: Key,
    },
    /// `peer` misbehaved past [`crate::BanConfig::threshold`] and is banned until `ban.until`:
    /// the engine refuses its requests, keeps it out of the routing table and drops it from
    /// lookup answers; the node should disconnect it and refuse its connections (and those
    /// from `ban.prefix`, if set) until [`Event::BanLifted`].
    Banned {
        /// The peer.
        peer: Key,
        /// Until when, and the address prefix banned with it.
        ban: Ban,
    },
    /// `peer`'s ban ended.
    BanLifted {
        /// The peer.
        peer: Key,
    },
}

/// The Kademlia engine of one peer, sans-IO in the style of quinn-proto's `Connection`.
///
/// The caller owns sockets and time. The run loop is:
/// 1. feed every input: [`handle_request`](Self::handle_request) for an inbound request (send
///    back what it returns), [`handle_response`](Self::handle_response) /
///    [`handle_failure`](Self::handle_failure) for the outcome of a [`Transmit`], and
///    [`handle_timeout`](Self::handle_timeout) when the instant from `poll_timeout` comes;
///    commands (`bootstrap`, `find_node`, `put_record`, …) are inputs too;
/// 2. drain every output: [`poll_transmit`](Self::poll_transmit) until `None` (send each),
///    [`poll_event`](Self::poll_event) until `None`;
/// 3. sleep until [`poll_timeout`](Self::poll_timeout), or until the next input.
///
/// Every input takes `now`, which must not go backwards. The same inputs in the same order with
/// the same [`Config::seed`] give the same outputs.
#[derive(Debug)]
pub struct Dht<A, S = MemoryRecordStore<A>> {
    local: Key,
    config: Config,
    table: RoutingTable<A>,
    store: S,
    scores: Scores,
    bans: Bans,
    limiter: RateLimiter,
    /// The budget of chunk requests per peer (`Config::chunk_rate`).
    chunk_limiter: RateLimiter,
    replica_limiter: RateLimiter,
    /// Requests refused by a rate limit since start.
    rate_limited: u64,
    rng: ChaCha8Rng,
    /// Chunks this peer stores, ordered so that repair decisions come out in a fixed order.
    held: BTreeSet<Key>,
    /// Copies other peers pushed here that no other peer has yet proved it holds too, and since
    /// when: not copied on by the audit, and released once [`UNCONFIRMED_LAPSE`] passes.
    unconfirmed: BTreeMap<Key, Timestamp>,
    fetches: Fetches<A>,
    /// Who announced the content under recently looked-up keys: a fetch of a file whose root
    /// manifest was just fetched asks them first for every chunk.
    recent_providers: Recent<Vec<Contact<A>>>,
    /// The live peers recent lookups found closest to their targets, and when: an
    /// announcement or a record put within [`RECENT_LOOKUP_TTL`] of one goes straight to them.
    recent_closest: Recent<(Timestamp, Vec<Contact<A>>)>,
    /// Records this peer published, stored again every `republish_interval`.
    published: BTreeMap<Key, Published>,
    /// Keys this peer announces itself a provider of, and when it last did.
    announcing: BTreeMap<Key, Option<Timestamp>>,
    /// Peers dropped from the routing table for not answering, pinged again with backoff.
    dropped: BTreeMap<Key, Dropped<A>>,
    /// The last bootstrap's seeds, tried again while the table is empty, and the next wait.
    bootstrap_seeds: Vec<Contact<A>>,
    bootstrap_wait: Duration,
    /// When a dropped peer last came back and every other dropped peer was tried at once.
    last_comeback: Option<Timestamp>,
    /// `announce_due` is running (it does not run again from inside itself); it found the
    /// routing table empty and waits for a peer.
    announcing_now: bool,
    announce_when_peers: bool,
    /// The repair audit and handoffs of held chunks.
    custody: Custody<A>,
    queries: BTreeMap<QueryId, Query<A>>,
    pending: HashMap<RequestId, Pending<A>>,
    timers: BinaryHeap<Reverse<(Timestamp, Timer)>>,
    transmits: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    next_query: u64,
    next_request: u64,
    next_jobs: Timestamp,
}

/// Values by key from recent queries; the oldest forgotten beyond a bound.
#[derive(Debug)]
struct Recent<V> {
    by_key: HashMap<Key, V>,
    order: VecDeque<Key>,
    cap: usize,
}

/// Keys whose providers are remembered.
const RECENT_PROVIDERS: usize = 1024;

/// Keys whose lookup results are remembered, and for how long one is used instead of a new
/// lookup: a put's announcement follows the placement lookup of its root, which found the
/// same closest peers moments before.
const RECENT_LOOKUPS: usize = 256;
const RECENT_LOOKUP_TTL: Duration = Duration::from_secs(10);

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, key: Key, value: V) {
        if self.by_key.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }

    fn get(&self, key: &Key) -> Option<&V> {
        self.by_key.get(key)
    }
}

/// Seeds a bootstrap keeps for its retries.
const MAX_BOOTSTRAP_SEEDS: usize = 256;
/// The first retry of a bootstrap that found nobody, and the longest wait between retries.
const BOOTSTRAP_RETRY_FIRST: Duration = Duration::from_secs(1);
const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);

/// Peers dropped for failures that are remembered to be tried again.
const MAX_DROPPED: usize = 1024;
/// The first retry of a dropped peer comes this long after it was dropped; each further one
/// waits twice as long, up to [`RETRY_DROPPED_MAX`], and after [`RETRY_DROPPED_ATTEMPTS`]
/// the peer is forgotten (about three hours in all).
const RETRY_DROPPED_FIRST: Duration = Duration::from_secs(60);
const RETRY_DROPPED_MAX: Duration = Duration::from_secs(300);
const RETRY_DROPPED_ATTEMPTS: u32 = 40;
/// Dropped peers pinged again per jobs run.
const RETRIES_PER_RUN: usize = 32;
/// Background announcements (re-announcing, [`Dht::announce_later`]) running at once.
const BACKGROUND_ANNOUNCES: usize = 8;
/// Dropped peers pinged at once when one of them is back (a cut healed, most likely), at most
/// once per [`RETRY_DROPPED_FIRST`].
const RETRIES_ON_COMEBACK: usize = 256;

/// A peer dropped for not answering.
#[derive(Debug, Clone)]
struct Dropped<A> {
    contact: Contact<A>,
    /// When it was first seen in the table: its seniority, kept if it is back.
    added: Timestamp,
    attempts: u32,
    next: Timestamp,
}

/// A record this peer published, kept to store again.
#[derive(Debug, Clone)]
struct Published {
    record: SignedRecord,
    /// When it was last stored on the closest peers.
    at: Timestamp,
    /// Its lifetime when published: what a renewal gives it again.
    ttl: Duration,
    /// A renewal was asked for.
    renewal_asked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Timer {
    Request(RequestId),
    Query(QueryId),
    Fetch(FetchId, u64),
    /// Try the last bootstrap's seeds again.
    Bootstrap,
    /// A record this peer published reaches half its lifetime: ask for a renewal.
    Renew(Key),
    /// A lookup request has waited half its timeout: it stops counting against α.
    Stall(RequestId),
}

#[derive(Debug)]
struct Pending<A> {
    to: Contact<A>,
    sent: Timestamp,
    deadline: Timestamp,
    purpose: Purpose,
}

#[derive(Clone, Copy, Debug)]
enum Purpose {
    Lookup {
        query: QueryId,
        path: PathId,
    },
    Store {
        query: QueryId,
    },
    Probe,
    /// A record handed to a peer that joined its closest set: nothing follows.
    Push,
    /// Is a peer whose connection broke still there? A failure drops it at once.
    Liveness,
    /// Is a peer dropped for not answering back?
    Retry,
}

#[derive(Debug)]
struct Query<A> {
    kind: Kind<A>,
    lookup: Lookup<A>,
    phase: Phase,
    stats: QueryStats,
    deadline: Timestamp,
    /// Maintenance queries (bucket refresh) finish without an event.
    internal: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Lookup,
    Store {
        waiting: usize,
        stored: usize,
        failed: usize,
    },
}

impl<A: Address> Dht<A> {
    /// An engine for the peer with id `local`, keeping records in memory.
    pub fn new(local: Key, config: Config) -> Self {
        let store = MemoryRecordStore::new(config.store.clone());
        Self::with_store(local, config, store)
    }
}

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    /// An engine for the peer with id `local`, keeping records in `store`.
    pub fn with_store(local: Key, config: Config, store: S) -> Self {
        let table = RoutingTable::new(
            local,
            TableConfig {
                k: config.k,
                replacement_cache: config.replacement_cache,
                ip_prefix_cap: config.ip_prefix_cap,
                prefer_low_rtt: config.prefer_low_rtt,
                max_failures: config.max_failures.max(1),
                probe_after: config.probe_after,
            },
        );
        Self {
            local,
            table,
            store,
            scores: Scores::new(config.max_tracked_peers),
            bans: Bans::new(config.bans.clone()),
            limiter: RateLimiter::new(config.rate.clone()),
            chunk_limiter: RateLimiter::new(config.chunk_rate.clone()),
            replica_limiter: RateLimiter::new(config.replica_budget.clone()),
            rate_limited: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            held: BTreeSet::new(),
            unconfirmed: BTreeMap::new(),
            fetches: Fetches::new(config.fetch.clone()),
            recent_providers: Recent::new(RECENT_PROVIDERS),
            recent_closest: Recent::new(RECENT_LOOKUPS),
            published: BTreeMap::new(),
            announcing: BTreeMap::new(),
            dropped: BTreeMap::new(),
            bootstrap_seeds: Vec::new(),
            bootstrap_wait: BOOTSTRAP_RETRY_FIRST,
            last_comeback: None,
            announcing_now: false,
            announce_when_peers: false,
            custody: Custody::default(),
            queries: BTreeMap::new(),
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_query: 0,
            next_request: 0,
            next_jobs: Timestamp::EPOCH,
            config,
        }
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// Answers an inbound request from `from`, whose id the transport authenticated.
    pub fn handle_request(
        &mut self,
        now: Timestamp,
        from: Contact<A>,
        request: Request,
    ) -> Response<A> {
        self.run_jobs(now);
        if request.version != PROTOCOL_VERSION {
            return Response::error(RemoteError::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            });
        }
        if self.bans.is_banned(now, &from.id) {
            return Response::error(RemoteError::Banned);
        }
        if !self.limiter.allow(&from.id, now) {
            self.rate_limited += 1;
            return Response::error(RemoteError::RateLimited);
        }
        let k = self.config.k;
        // A ping is often itself a probe for a full bucket; letting it set off a probe of our own
        // makes probes cascade through the network (netsim: 97% of all traffic was pings).
        let may_probe = !matches!(request.body, RequestBody::Ping);
        let body = match request.body {
            RequestBody::Ping => ResponseBody::Pong,
            RequestBody::FindNode { target, count } => ResponseBody::Nodes {
                closer: self
                    .table
                    .closest(&target, usize::from(count).clamp(1, 2 * k)),
            },
            RequestBody::FindValue { key } => ResponseBody::Value {
                record: self.store.get(&key, now).cloned(),
                closer: self.table.closest(&key, k),
            },
            // Records and provider entries are kept only by the peers a publisher's lookup
            // finds closest: a peer that knows k peers closer to the key than itself (all of
            // them in the key's bucket, which holds k at most) is not among them, has no
            // business holding it, and a flood of junk keys lands on few peers.
            RequestBody::PutRecord { record }
                if !placement::among_closest(&self.table, &self.local, &record.key(), k) =>
            {
                ResponseBody::Error(RemoteError::NotResponsible)
            }
            RequestBody::AddProvider { key }
                if !placement::among_closest(&self.table, &self.local, &key, k) =>
            {
                ResponseBody::Error(RemoteError::NotResponsible)
            }
            RequestBody::PutRecord { record } => match self.accept_record(now, record) {
                Ok(key) => {
                    self.events
                        .push_back(Event::RecordStored { key, from: from.id });
                    ResponseBody::Stored
                }
                Err((e, forged)) => {
                    if forged {
                        self.charge(now, &from, Offence::ForgedRecord);
                        return Response::error(e);
                    }
                    ResponseBody::Error(e)
                }
            },
            RequestBody::AddProvider { key } => {
                let record = ProviderRecord {
                    provider: from.clone(),
                    expires: now + self.config.provider_ttl,
                };
                match self.store.add_provider(key, record) {
                    Ok(()) => ResponseBody::Stored,
                    Err(_) => ResponseBody::Error(RemoteError::StoreFull),
                }
            }
            RequestBody::GetProviders { key, .. } => {
                let mut providers = self.store.providers(&key, now);
                providers.retain(|p| p.id != from.id);
                providers.truncate(k);
                // The bytes, if asked for, are the node's to add: see `inline_chunk`.
                ResponseBody::Providers {
                    holds: self.held.contains(&key),
                    providers,
                    closer: self.table.closest(&key, k),
                    chunk: None,
                }
            }
        };
        // The sender proved it is alive; add it after answering so it is not in its own answer.
        self.on_alive(now, from, may_probe);
        Response::new(body)
    }

    /// The response to the request `id`.
    pub fn handle_response(&mut self, now: Timestamp, id: RequestId, response: Response<A>) {
        self.run_jobs(now);
        let Some(pending) = self.pending.remove(&id) else {
            return; // already timed out, or never ours
        };
        let peer = pending.to.id;
        self.scores
            .on_rtt(&peer, now.saturating_duration_since(pending.sent), now);
        self.scores.on_success(&peer, now);
        self.on_alive(now, pending.to.clone(), true);
        match pending.purpose {
            Purpose::Probe | Purpose::Push | Purpose::Liveness | Purpose::Retry => {}
            Purpose::Lookup { query, path } => {
                self.on_lookup_response(now, query, path, pending.to, response)
            }
            Purpose::Store { query } => {
                let ok = matches!(response.body, ResponseBody::Stored);
                self.on_store_outcome(now, query, ok);
            }
        }
    }

    /// The request `id` failed: the peer could not be reached, the connection broke, or the
    /// answer could not be decoded. Timeouts need no call: `handle_timeout` fails requests whose
    /// deadline passed.
    pub fn handle_failure(&mut self, now: Timestamp, id: RequestId) {
        self.run_jobs(now);
        self.fail_request(now, id, false);
    }

    /// A request failed, or (`timed_out`) its deadline passed. A lookup asks a peer that timed
    /// out once more if the peer answered us before and is among the k closest the lookup knows,
    /// or is its closest candidate (often the target, which we may never have heard from): on a
    /// lossy link one lost message should not drop a live peer from the answer (netsim: 1% loss
    /// cost 3–4% of lookups without).
    fn fail_request(&mut self, now: Timestamp, id: RequestId, timed_out: bool) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if timed_out {
            self.scores.on_timeout(&pending.to.id, now);
        }
        let known = self
            .scores
            .get(&pending.to.id)
            .is_some_and(|s| s.successes > 0);
        if matches!(pending.purpose, Purpose::Retry) {
            // Still not back: wait longer (or forget it).
            let peer = pending.to.id;
            if let Some(d) = self.dropped.get_mut(&peer) {
                d.attempts += 1;
                if d.attempts >= RETRY_DROPPED_ATTEMPTS {
                    self.dropped.remove(&peer);
                } else {
                    let wait = RETRY_DROPPED_FIRST
                        .saturating_mul(1 << d.attempts.min(16))
                        .min(RETRY_DROPPED_MAX);
                    d.next = now + wait;
                }
            }
            return;
        } else if matches!(pending.purpose, Purpose::Liveness) {
            // A peer whose connection broke and that does not answer now is gone.
            self.scores.on_failure(&pending.to.id, 1, now);
            let removal = self.table.remove(&pending.to.id, |k| self.scores.rtt(k));
            self.remember_dropped(now, removal.as_ref());
            self.on_removal(now, removal);
        } else {
            self.fail_peer(now, &pending.to.id, 1);
        }
        match pending.purpose {
            Purpose::Probe | Purpose::Push | Purpose::Liveness | Purpose::Retry => {}
            Purpose::Lookup { query, path } => {
                if let Some(q) = self.queries.get_mut(&query) {
                    q.stats.failures += 1;
                    let retry = timed_out && q.lookup.on_timeout(path, &pending.to.id, known);
                    if !retry && let Some(r) = q.lookup.on_failure(path, &pending.to.id) {
                        self.scores.on_referral(&r.referrer, r.ok, now);
                    }
                    self.advance(now, query);
                }
            }
            Purpose::Store { query } => self.on_store_outcome(now, query, false),
        }
    }

    /// Time passed: fails requests past their deadline, ends queries past `query_timeout`, and
    /// runs housekeeping.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Request(id) => {
                    if self.pending.get(&id).is_some_and(|p| p.deadline <= now) {
                        self.fail_request(now, id, true);
                    }
                }
                Timer::Query(id) => {
                    if self.queries.get(&id).is_some_and(|q| q.deadline <= now) {
                        self.finish(now, id, true);
                    }
                }
                Timer::Fetch(fetch, index) => {
                    self.with_fetches(now, |fetches, rtt, out| {
                        fetches.on_wake(now, fetch, index, rtt, out)
                    });
                }
                Timer::Bootstrap if self.table.len() == 0 => {
                    let (local, seeds) = (self.local, self.bootstrap_seeds.clone());
                    if self
                        .start(now, Kind::Bootstrap, local, seeds, true)
                        .is_err()
                    {
                        self.after_bootstrap(now, 0);
                    }
                }
                Timer::Bootstrap => {}
                Timer::Renew(key) => self.ask_renewal(now, &key),
                Timer::Stall(id) => {
                    let stalled = self.pending.get(&id).and_then(|p| match p.purpose {
                        Purpose::Lookup { query, path } => Some((query, path, p.to.id)),
                        _ => None,
                    });
                    if let Some((query, path, peer)) = stalled
                        && let Some(q) = self.queries.get_mut(&query)
                    {
                        q.lookup.on_stall(path, &peer);
                        self.advance(now, query);
                    }
                }
            }
        }
        self.run_jobs(now);
    }

    /// A round trip to `peer` measured outside the engine (libp2p ping).
    pub fn handle_rtt(&mut self, now: Timestamp, peer: &Key, rtt: Duration) {
        self.scores.on_rtt(peer, rtt, now);
    }

    /// The outcome of a data transfer with `peer` outside the DHT protocol (a chunk fetched or
    /// not): it counts toward the peer's reliability, which [`Dht::rank`] orders holders by. A
    /// failed transfer does not remove the peer from the routing table; its DHT requests decide
    /// that.
    pub fn handle_transfer(&mut self, now: Timestamp, peer: &Key, ok: bool) {
        if ok {
            self.scores.on_success(peer, now);
        } else {
            self.scores.on_failure(peer, 1, now);
        }
    }

    /// `peer` did `offence` where the engine could not see it (a chunk whose bytes do not match
    /// its id, an undecodable message): it costs the peer reliability and points toward a ban
    /// (see `crate::BanConfig`); `ip` is the address the transport saw it at, if the caller
    /// knows it (else the engine uses the one in its routing table). All but
    /// [`Offence::JunkPush`] drop the peer from the routing table too.
    pub fn report(&mut self, now: Timestamp, peer: &Key, ip: Option<IpAddr>, offence: Offence) {
        let ip = ip.or_else(|| self.table.entry(peer).and_then(|e| e.contact.addr.ip()));
        self.charge_at(now, peer, ip, offence);
    }

    /// Whether `peer` is banned now (see [`Event::Banned`]).
    pub fn is_banned(&self, now: Timestamp, peer: &Key) -> bool {
        self.bans.is_banned(now, peer)
    }

    /// Whether connections from `ip` are refused now: enough peers of its prefix were banned
    /// (`crate::BanConfig::prefix_after`).
    pub fn is_banned_ip(&self, now: Timestamp, ip: IpAddr) -> bool {
        self.bans.is_banned_ip(now, ip)
    }

    /// The peers banned now, with the end of each ban, in id order.
    pub fn banned_peers(&self, now: Timestamp) -> Vec<(Key, Timestamp)> {
        let mut v: Vec<(Key, Timestamp)> = self.bans.banned(now).map(|(k, t)| (*k, t)).collect();
        v.sort_unstable();
        v
    }

    /// Charges `from` with `offence` at the address it was met at.
    pub(super) fn charge(&mut self, now: Timestamp, from: &Contact<A>, offence: Offence) {
        self.charge_at(now, &from.id, from.addr.ip(), offence);
    }

    fn charge_at(&mut self, now: Timestamp, peer: &Key, ip: Option<IpAddr>, offence: Offence) {
        let minor = offence == Offence::JunkPush;
        self.scores
            .on_failure(peer, if minor { 1 } else { MISBEHAVIOUR_WEIGHT }, now);
        let ban = self.bans.charge(now, peer, ip, offence);
        if !minor || ban.is_some() {
            let removal = self.table.remove(peer, |k| self.scores.rtt(k));
            self.on_removal(now, removal);
            self.dropped.remove(peer);
        }
        if let Some(ban) = ban {
            self.events.push_back(Event::Banned { peer: *peer, ban });
            // Requests queued for it are not sent: they fail now.
            let (to_it, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.transmits)
                .into_iter()
                .partition(|t| t.to.id == *peer);
            self.transmits = rest;
            for t in to_it {
                self.fail_request(now, t.id, false);
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------------

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        // Drop timers whose request or query already ended.
        while let Some(Reverse((_, timer))) = self.timers.peek() {
            let live = match timer {
                Timer::Request(id) | Timer::Stall(id) => self.pending.contains_key(id),
                Timer::Query(id) => self.queries.contains_key(id),
                Timer::Fetch(..) | Timer::Bootstrap => true,
                Timer::Renew(key) => self.published.get(key).is_some_and(|p| !p.renewal_asked),
            };
            if live {
                break;
            }
            self.timers.pop();
        }
        let next = self.timers.peek().map(|Reverse((at, _))| *at);
        Some(next.map_or(self.next_jobs, |t| t.min(self.next_jobs)))
    }

    // ---- commands -----------------------------------------------------------------------------

    /// Joins the network through `seeds`: looks up our own id (which fills the nearest buckets
    /// and makes us known to our neighbours), then refreshes every bucket from the nearest
    /// non-empty one outwards.
    ///
    /// If it ends with no peer and the routing table is still empty, the engine tries the same
    /// seeds again on its own, 1 s later and then twice as long each time up to a minute, until
    /// the table has a peer (from a retry, or from a peer that contacted this one).
    pub fn bootstrap(
        &mut self,
        now: Timestamp,
        seeds: impl IntoIterator<Item = Contact<A>>,
    ) -> Result<QueryId, QueryError> {
        let local = self.local;
        let seeds: Vec<Contact<A>> = seeds.into_iter().take(MAX_BOOTSTRAP_SEEDS).collect();
        self.bootstrap_seeds = seeds.clone();
        self.bootstrap_wait = BOOTSTRAP_RETRY_FIRST;
        self.start(now, Kind::Bootstrap, local, seeds, false)
    }

    /// A bootstrap ended with `closest`: with nobody, and nobody in the table either, try its
    /// seeds again later.
    pub(super) fn after_bootstrap(&mut self, now: Timestamp, found: usize) {
        if found > 0 || self.table.len() > 0 || self.bootstrap_seeds.is_empty() {
            return;
        }
        let at = now + self.bootstrap_wait;
        self.bootstrap_wait = (self.bootstrap_wait * 2).min(BOOTSTRAP_RETRY_MAX);
        self.timers.push(Reverse((at, Timer::Bootstrap)));
    }

    /// Refreshes buckets not looked up within `refresh_interval` (all of them if it is `None`)
    /// with a lookup of a random key in each. Returns how many lookups started; they finish
    /// without events.
    pub fn refresh(&mut self, now: Timestamp) -> usize {
        let interval = self.config.refresh_interval.unwrap_or(Duration::ZERO);
        self.refresh_older_than(now, interval)
    }

    /// Finds the k closest live peers to `target`.
    pub fn find_node(&mut self, now: Timestamp, target: Key) -> Result<QueryId, QueryError> {
        self.start(now, Kind::FindNode, target, Vec::new(), false)
    }

    /// Reads the signed record under `key`: asks the closest peers until `record_quorum` valid
    /// answers from other peers agree (or the lookup ends) and returns the highest sequence,
    /// this peer's own copy included. The own copy does not count toward the quorum: a reader
    /// that holds a record still hears from `record_quorum` others.
    pub fn get_record(&mut self, now: Timestamp, key: Key) -> Result<QueryId, QueryError> {
        let best = self.store.get(&key, now).cloned();
        let answers = 0;
        self.start(
            now,
            Kind::GetRecord {
                best,
                answers,
                seen: Vec::new(),
            },
            key,
            Vec::new(),
            false,
        )
    }

    /// Publishes a signed record: keeps it locally and stores it on the k closest peers.
    pub fn put_record(
        &mut self,
        now: Timestamp,
        record: SignedRecord,
    ) -> Result<QueryId, QueryError> {
        self.check_record(now, &record)?;
        match self.store.put(record.clone()) {
            Ok(()) | Err(StoreError::Full) => {}
            Err(StoreError::Stale { held }) => return Err(QueryError::StaleRecord { held }),
        }
        let key = record.key();
        let newer = self
            .published
            .get(&key)
            .is_none_or(|p| record.sequence >= p.record.sequence);
        if newer {
            let ttl = record.expires.saturating_duration_since(now);
            self.published.insert(
                key,
                Published {
                    record: record.clone(),
                    at: now,
                    ttl,
                    renewal_asked: false,
                },
            );
            // At half its life exactly, not at the next jobs run: a short-lived record would
            // lapse first.
            self.timers
                .push(Reverse((record.expires - ttl / 2, Timer::Renew(key))));
        }
        self.start(now, Kind::PutRecord { record }, key, Vec::new(), false)
    }

    /// Stops storing again the record under `key` that this peer published (it lapses at its
    /// expiry).
    pub fn stop_publishing(&mut self, key: &Key) {
        self.published.remove(key);
    }

    /// Announces that this peer holds the content under `key`: adds a provider record on the k
    /// closest peers, and again every half `provider_ttl` until [`Dht::stop_announcing`].
    pub fn announce(&mut self, now: Timestamp, key: Key) -> Result<QueryId, QueryError> {
        let id = self.start(now, Kind::Announce, key, Vec::new(), false)?;
        self.announcing.insert(key, Some(now));
        Ok(id)
    }

    /// Announces `key` like [`Dht::announce`], but in the background, paced with the other
    /// announcements (at most eight at once): what a node calls for each
    /// pinned root after a start. No event follows.
    pub fn announce_later(&mut self, now: Timestamp, key: Key) {
        self.announcing.entry(key).or_insert(None);
        self.announce_due(now);
    }

    /// Stops announcing `key` (the content was unpinned or dropped); the provider records out
    /// there lapse at their expiry.
    pub fn stop_announcing(&mut self, key: &Key) {
        self.announcing.remove(key);
    }

    /// Keys this peer announces, in key order.
    pub fn announcing(&self) -> impl Iterator<Item = &Key> {
        self.announcing.keys()
    }

    /// Finds peers that hold the content under `key` (replicas and announced providers). Stops
    /// early once `replication` live holders are known — peers that answered that they hold
    /// it, plus at most one claim per responder about others — so a lookup can end at a nearby
    /// cache but not on a list of dead or fake holders.
    pub fn find_holders(&mut self, now: Timestamp, key: Key) -> Result<QueryId, QueryError> {
        let kind = self.holders_kind(None, BTreeSet::new());
        self.start(now, kind, key, Vec::new(), false)
    }

    /// Finds every peer among the closest to `key` that holds the content, running the lookup
    /// to its end (for a census of copies, such as a health check; [`Dht::find_holders`] stops
    /// at the first `replication`).
    pub fn find_all_holders(&mut self, now: Timestamp, key: Key) -> Result<QueryId, QueryError> {
        let mut kind = self.holders_kind(None, BTreeSet::new());
        if let Kind::Holders { want, .. } = &mut kind {
            *want = usize::MAX;
        }
        self.start(now, kind, key, Vec::new(), false)
    }

    /// A holder lookup. The first for a chunk stops early at `replication` live holders; one
    /// after failures (some holders `tried`) runs to the end of the lookup, collecting every
    /// holder among the closest peers, so that the holders that failed (possibly liars that
    /// answer first) cannot crowd out the honest copies.
    fn holders_kind(&self, fetch: Option<(FetchId, u64)>, tried: BTreeSet<Key>) -> Kind<A> {
        let want = if tried.is_empty() {
            self.config.replication.max(1)
        } else {
            usize::MAX
        };
        Kind::Holders {
            holders: Vec::new(),
            verified: BTreeSet::new(),
            referrers: BTreeSet::new(),
            tried,
            announced: Vec::new(),
            want,
            fetch,
            streamed: BTreeSet::new(),
        }
    }

    /// Decides where the chunk under `key` should be stored: the `replication` closest live
    /// peers to it, which may include this one.
    pub fn place(&mut self, now: Timestamp, key: Key) -> Result<QueryId, QueryError> {
        self.start(now, Kind::Place, key, Vec::new(), false)
    }

    /// Notes that this peer stores the chunk under `key` and serves it: `GetProviders` answers
    /// say so.
    pub fn hold(&mut self, key: Key) {
        self.held.insert(key);
        self.custody.hold(key);
    }

    /// Notes that this peer now stores the chunk under `key` because another peer pushed it
    /// here as a replica. Until some other peer proves it holds the chunk too (the audit asks
    /// them), the copy is *unconfirmed*: the audit does not copy it on to peers that lack it
    /// (one stranger's junk pushed to one peer is not multiplied by the network's repair), and
    /// after [`UNCONFIRMED_LAPSE`] it is released ([`Event::Release`]: the node keeps it as
    /// evictable cache). A genuine put stores every replica at once, so the first audit
    /// confirms it.
    pub fn hold_pushed(&mut self, now: Timestamp, key: Key) {
        if !self.held.contains(&key) {
            self.unconfirmed.insert(key, now);
        }
        self.hold(key);
    }

    /// Notes that this peer no longer stores the chunk under `key`.
    pub fn release(&mut self, key: &Key) {
        self.held.remove(key);
        self.unconfirmed.remove(key);
        self.custody.forget(key);
    }

    /// Whether `key` is a pushed copy no other peer has proved yet (see [`Dht::hold_pushed`]).
    pub fn is_unconfirmed(&self, key: &Key) -> bool {
        self.unconfirmed.contains_key(key)
    }

    // ---- queries about state ------------------------------------------------------------------

    /// This peer's id.
    pub fn local_id(&self) -> Key {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of peers in the routing table.
    pub fn routing_table_len(&self) -> usize {
        self.table.len()
    }

    /// The peers in the routing table, nearest buckets first.
    pub fn routing_peers(&self) -> impl Iterator<Item = &Contact<A>> {
        self.table.entries().map(|e| &e.contact)
    }

    /// Whether `id` is in the routing table.
    pub fn contains_peer(&self, id: &Key) -> bool {
        self.table.entry(id).is_some()
    }

    /// Whether `peer` may make one more chunk request now (`Config::chunk_rate`); the node
    /// refuses one beyond the budget without reading the disk.
    pub fn allow_chunk_request(&mut self, now: Timestamp, peer: &Key) -> bool {
        let allowed = self.chunk_limiter.allow(peer, now);
        self.rate_limited += u64::from(!allowed);
        allowed
    }

    /// Requests (DHT, chunk, replica pushes) refused by a rate limit since start.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// Whether `peer` may have this peer keep `bytes` more of replica copies it pushes now
    /// (`Config::replica_budget`, in KiB): one stranger cannot fill this peer's disk, however
    /// close to its id the chunks it makes up are.
    pub fn allow_replica(&mut self, now: Timestamp, peer: &Key, bytes: usize) -> bool {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let allowed = self.replica_limiter.allow_n(peer, now, kib);
        self.rate_limited += u64::from(!allowed);
        allowed
    }

    /// When this peer last heard from `id`, if it is in the routing table.
    pub fn peer_last_seen(&self, id: &Key) -> Option<Timestamp> {
        self.table.entry(id).map(|e| e.last_seen)
    }

    /// The record this peer stores under `key`, if it holds one live at `now` (no network
    /// traffic).
    pub fn stored_record(&self, key: &Key, now: Timestamp) -> Option<&SignedRecord> {
        self.store.get(key, now)
    }

    /// The transport lost its connection to `peer` abnormally (reset, timed out): if it is in
    /// the routing table, ping it now, and drop it at once if that fails, so that the closest
    /// sets it was in are repaired without waiting for a lookup or a get to trip over it.
    pub fn connection_lost(&mut self, now: Timestamp, peer: &Key) {
        self.run_jobs(now);
        let Some(contact) = self.table.entry(peer).map(|e| e.contact.clone()) else {
            return;
        };
        let probing = self
            .pending
            .values()
            .any(|p| matches!(p.purpose, Purpose::Liveness) && p.to.id == *peer);
        if !probing {
            self.send(now, contact, RequestBody::Ping, Purpose::Liveness);
        }
    }

    /// The `n` peers in our routing table closest to `target` (no network traffic).
    pub fn closest_known(&self, target: &Key, n: usize) -> Vec<Contact<A>> {
        self.table.closest(target, n)
    }

    /// What the engine measured of `peer`.
    pub fn peer_score(&self, peer: &Key) -> Option<PeerScore> {
        self.scores.get(peer).copied()
    }

    /// Orders `peers` best first for fetching: most reliable, then lowest round trip (unmeasured
    /// peers after measured ones), then by id for a deterministic order.
    pub fn rank(&self, peers: &mut [Contact<A>]) {
        let key = |c: &Contact<A>| {
            let score = self.scores.get(&c.id).copied().unwrap_or_default();
            // Reliability in whole percent so that near-equal peers compare by round trip.
            let reliability = (score.reliability() * 100.0).round() as u32;
            let rtt = score.rtt.map_or(Duration::MAX, |r| r.srtt());
            (Reverse(reliability), rtt, c.id)
        };
        peers.sort_by_cached_key(key);
    }

    /// Whether this peer should accept a replica of the chunk under `key` from another peer: it
    /// is among the `2 × replication` closest peers to `key` that it knows. The slack covers
    /// routing tables that differ a little between peers; a peer far from the key refuses, so
    /// nobody can fill its disk with chunks it is not responsible for.
    pub fn is_responsible(&self, key: &Key) -> bool {
        let n = 2 * self.config.replication.max(1);
        placement::among_closest(&self.table, &self.local, key, n)
    }

    /// Whether this peer is one of the `replication` closest peers to `key` that it knows, with
    /// no slack: whether it keeps a chunk it stored itself as a replica (unlike
    /// [`Dht::is_responsible`], which decides what to accept from others).
    pub fn is_replica_holder(&self, key: &Key) -> bool {
        placement::among_closest(&self.table, &self.local, key, self.config.replication)
    }

    /// Whether this peer noted that it holds `key`.
    pub fn holds(&self, key: &Key) -> bool {
        self.held.contains(key)
    }

    /// The record store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Queries in progress, maintenance included.
    pub fn queries_in_progress(&self) -> usize {
        self.queries.len()
    }

    // ---- peers and the routing table ----------------------------------------------------------

    fn on_alive(&mut self, now: Timestamp, contact: Contact<A>, may_probe: bool) {
        if self.bans.shuns(now, &contact) {
            return;
        }
        let dropped = self.dropped.remove(&contact.id);
        if dropped.is_some() {
            self.on_comeback(now);
        }
        let rtt = self.scores.rtt(&contact.id);
        let outcome = self.table.seen_at(contact.clone(), now, rtt);
        if let (InsertOutcome::Cached { probe }, Some(dropped)) = (&outcome, dropped) {
            // Back after failures, into a bucket that filled meanwhile: its seniority wins.
            if let Some(displaced) = self.table.reinstate(contact.clone(), dropped.added, now) {
                if let Some(head) = probe {
                    self.table.probe_skipped(&head.id);
                }
                self.on_removal(
                    now,
                    Some(Removal {
                        removed: displaced,
                        added: now,
                        promoted: None,
                    }),
                );
                self.on_peer_added(now, contact);
                return;
            }
        }
        if let InsertOutcome::Cached { probe } = &outcome
            && let Some(slow) = self.table.prefer_closer(&contact.id)
        {
            // Traded for a peer twice as close by: the slow one is alive and waits in the
            // cache, so its chunks stay where they are (no departure, no copies to make).
            if let Some(head) = probe {
                self.table.probe_skipped(&head.id);
            }
            self.events.push_back(Event::PeerRemoved { peer: slow });
            self.on_peer_added(now, contact);
            return;
        }
        match outcome {
            InsertOutcome::Inserted => self.on_peer_added(now, contact),
            InsertOutcome::Cached { probe: Some(head) } if may_probe => {
                self.send(now, head, RequestBody::Ping, Purpose::Probe);
            }
            InsertOutcome::Cached { probe: Some(head) } => self.table.probe_skipped(&head.id),
            InsertOutcome::Updated
            | InsertOutcome::Cached { probe: None }
            | InsertOutcome::Refused => {}
        }
    }

    fn fail_peer(&mut self, now: Timestamp, peer: &Key, weight: u32) {
        self.scores.on_failure(peer, weight, now);
        let removal = self.table.failed(peer, |k| self.scores.rtt(k));
        self.remember_dropped(now, removal.as_ref());
        self.on_removal(now, removal);
    }

    /// A peer dropped for not answering is back: the others dropped with it (by the same cut,
    /// the same outage) are likely back too, so they are all tried now rather than at their
    /// turn in the backoff (netsim `--partition`: the tables heal within a round trip of the
    /// first peer that comes back, not minutes later).
    fn on_comeback(&mut self, now: Timestamp) {
        if self
            .last_comeback
            .is_some_and(|at| now.saturating_duration_since(at) < RETRY_DROPPED_FIRST)
        {
            return;
        }
        self.last_comeback = Some(now);
        for d in self.dropped.values_mut() {
            if d.next != Timestamp::NEVER {
                d.next = d.next.min(now);
            }
        }
        self.retry_dropped(now, RETRIES_ON_COMEBACK);
    }

    /// A peer dropped for not answering may be back later (a partition heals, a laptop wakes):
    /// it is pinged again with backoff (see `jobs.rs`). Liars are not remembered.
    fn remember_dropped(&mut self, now: Timestamp, removal: Option<&Removal<A>>) {
        let Some(removal) = removal else {
            return;
        };
        self.custody.departed(now);
        if self.dropped.len() >= MAX_DROPPED
            && let Some(oldest) = self
                .dropped
                .iter()
                .min_by_key(|(_, d)| d.next)
                .map(|(k, _)| *k)
        {
            self.dropped.remove(&oldest);
        }
        self.dropped.insert(
            removal.removed.id,
            Dropped {
                contact: removal.removed.clone(),
                added: removal.added,
                attempts: 0,
                next: now + RETRY_DROPPED_FIRST,
            },
        );
    }

    fn on_removal(&mut self, now: Timestamp, removal: Option<Removal<A>>) {
        if let Some(Removal {
            removed, promoted, ..
        }) = removal
        {
            let r = self.config.replication;
            for t in placement::on_leave(&self.table, &self.held, &self.local, r, &removed) {
                self.transfer(now, t);
            }
            self.events.push_back(Event::PeerRemoved { peer: removed });
            if let Some(peer) = promoted {
                self.on_peer_added(now, peer);
            }
        }
    }

    fn on_peer_added(&mut self, now: Timestamp, peer: Contact<A>) {
        let r = self.config.replication;
        for t in placement::on_join(&self.table, &self.held, &self.local, r, &peer) {
            self.transfer(now, t);
        }
        // Records live on the k closest: one that joined them gets each from this peer (which
        // keeps its own copy; records are small and expire on their own).
        if self.store.record_count() > 0 {
            let keys: BTreeSet<Key> = self.store.record_keys().into_iter().collect();
            for t in placement::on_join(&self.table, &keys, &self.local, self.config.k, &peer) {
                if let Some(record) = self.store.get(&t.key, now).cloned() {
                    let body = RequestBody::PutRecord { record };
                    self.send(now, t.to, body, Purpose::Push);
                }
            }
        }
        self.events.push_back(Event::PeerAdded { peer });
        if self.announce_when_peers {
            self.announce_due(now);
        }
    }

    // ---- records ------------------------------------------------------------------------------

    fn check_record(&self, now: Timestamp, record: &SignedRecord) -> Result<(), RecordError> {
        let limits = &self.config.store;
        if record.value.len() > limits.max_value_bytes {
            return Err(RecordError::TooLarge {
                len: record.value.len(),
                max: limits.max_value_bytes,
            });
        }
        if record.expires > now + limits.max_record_ttl {
            return Err(RecordError::TooLong {
                max_secs: limits.max_record_ttl.as_secs(),
            });
        }
        record.verify(now)
    }

    /// Stores a record a peer sent; on refusal, why, and whether the record was a forgery
    /// (a signature that does not check, which no honest peer sends).
    fn accept_record(
        &mut self,
        now: Timestamp,
        record: SignedRecord,
    ) -> Result<Key, (RemoteError, bool)> {
        self.check_record(now, &record)
            .map_err(|e| (RemoteError::InvalidRecord, e.is_forgery()))?;
        let key = record.key();
        match self.store.put(record) {
            Ok(()) => Ok(key),
            Err(StoreError::Stale { held }) => Err((RemoteError::StaleRecord { held }, false)),
            Err(StoreError::Full) => Err((RemoteError::StoreFull, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responsibility_follows_distance() {
        let local = Key::from_bytes([0; 32]);
        let config = Config {
            replication: 1,
            ..Config::default()
        };
        let mut dht: Dht<u32> = Dht::new(local, config);
        let now = Timestamp::EPOCH;
        // Two peers whose ids start 0x80 and 0x40: bucket 255 and 254.
        let mut far = [0u8; 32];
        far[0] = 0x80;
        let mut mid = [0u8; 32];
        mid[0] = 0xc0;
        for (i, id) in [far, mid].into_iter().enumerate() {
            dht.handle_request(
                now,
                Contact::new(Key::from_bytes(id), i as u32),
                Request::new(RequestBody::Ping),
            );
        }
        assert_eq!(dht.routing_table_len(), 2);
        // A key next to us: we are closer than both peers.
        let mut near_us = [0u8; 32];
        near_us[31] = 1;
        assert!(dht.is_responsible(&Key::from_bytes(near_us)));
        // A key next to the 0x80 peer: both peers (0x80…, 0xc0…) are closer to it than we are
        // (0x00…), and 2 × replication = 2.
        let mut near_far = far;
        near_far[31] = 1;
        assert!(!dht.is_responsible(&Key::from_bytes(near_far)));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// An engine at id 0 that knows one peer (id 0x80…, address 1).
    fn one_peer() -> (Dht<u32>, Contact<u32>) {
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let mut id = [0u8; 32];
        id[0] = 0x80;
        let peer = Contact::new(Key::from_bytes(id), 1);
        dht.handle_request(
            Timestamp::EPOCH,
            peer.clone(),
            Request::new(RequestBody::Ping),
        );
        (dht, peer)
    }

    /// Requests sent, as bodies, each failed; the peer then pings, so it stays in the table.
    fn sent(dht: &mut Dht<u32>, now: Timestamp) -> Vec<RequestBody> {
        let mut bodies = Vec::new();
        let mut peers = Vec::new();
        while let Some(t) = dht.poll_transmit() {
            bodies.push(t.request.body.clone());
            dht.handle_failure(now, t.id);
            peers.push(t.to);
        }
        for peer in peers {
            dht.handle_request(now, peer, Request::new(RequestBody::Ping));
        }
        bodies
    }

    fn events(dht: &mut Dht<u32>) -> Vec<Event<u32>> {
        std::iter::from_fn(|| dht.poll_event()).collect()
    }

    #[test]
    fn a_peer_that_stores_a_forged_record_is_banned_refused_and_kept_out_then_forgiven() {
        let (mut dht, liar) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let mut forged = SignedRecord::sign(&[7; 32], b"v".to_vec(), 1, t0 + HOUR);
        forged.value = b"forged".to_vec();
        let put = |dht: &mut Dht<u32>, t| {
            dht.handle_request(
                t,
                liar.clone(),
                Request::new(RequestBody::PutRecord {
                    record: forged.clone(),
                }),
            )
        };
        assert_eq!(
            put(&mut dht, t0).body,
            ResponseBody::Error(RemoteError::InvalidRecord)
        );
        assert!(
            !dht.contains_peer(&liar.id),
            "dropped from the table at once"
        );
        assert!(dht.is_banned(t0, &liar.id), "one forgery bans");
        let banned: Vec<_> = events(&mut dht)
            .into_iter()
            .filter_map(|e| match e {
                Event::Banned { peer, ban } => Some((peer, ban.until)),
                _ => None,
            })
            .collect();
        assert_eq!(banned, vec![(liar.id, t0 + HOUR)]);
        // Refused, and not let back into the table by its requests.
        let ping = dht.handle_request(t0, liar.clone(), Request::new(RequestBody::Ping));
        assert_eq!(ping.body, ResponseBody::Error(RemoteError::Banned));
        assert!(!dht.contains_peer(&liar.id));
        // A lookup answer naming it does not bring it back either.
        let mut id = [0u8; 32];
        id[0] = 0x40;
        let honest = Contact::new(Key::from_bytes(id), 2);
        dht.handle_request(t0, honest.clone(), Request::new(RequestBody::Ping));
        dht.find_node(t0, Key::from_bytes([0x81; 32])).unwrap();
        while let Some(t) = dht.poll_transmit() {
            assert_ne!(t.to.id, liar.id, "a banned peer is not asked");
            let closer = vec![liar.clone()];
            dht.handle_response(t0, t.id, Response::new(ResponseBody::Nodes { closer }));
        }
        assert!(!dht.contains_peer(&liar.id));
        assert_eq!(dht.banned_peers(t0), vec![(liar.id, t0 + HOUR)]);
        // The ban ends: lifted, and the peer may come back.
        let later = t0 + HOUR + Duration::from_secs(61);
        dht.handle_timeout(later);
        assert!(
            events(&mut dht)
                .iter()
                .any(|e| matches!(e, Event::BanLifted { peer } if *peer == liar.id))
        );
        dht.handle_request(later, liar.clone(), Request::new(RequestBody::Ping));
        assert!(dht.contains_peer(&liar.id));
    }

    #[test]
    fn records_and_providers_far_from_this_peer_are_refused() {
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let now = Timestamp::EPOCH;
        // 20 peers in the 0x80 half: all closer than us to any key there.
        for i in 0..20u8 {
            let mut id = [0u8; 32];
            id[0] = 0x80 | i;
            let peer = Contact::new(Key::from_bytes(id), u32::from(i) + 1);
            dht.handle_request(now, peer, Request::new(RequestBody::Ping));
        }
        let asker = Contact::new(Key::from_bytes([0xc0; 32]), 99);
        let mut far = [0u8; 32];
        far[0] = 0x80;
        far[31] = 7;
        let answer = dht.handle_request(
            now,
            asker.clone(),
            Request::new(RequestBody::AddProvider {
                key: Key::from_bytes(far),
            }),
        );
        assert_eq!(
            answer.body,
            ResponseBody::Error(RemoteError::NotResponsible)
        );
        // A key next to us is ours to keep.
        let mut near = [0u8; 32];
        near[31] = 7;
        let answer = dht.handle_request(
            now,
            asker,
            Request::new(RequestBody::AddProvider {
                key: Key::from_bytes(near),
            }),
        );
        assert_eq!(answer.body, ResponseBody::Stored);
    }

    #[test]
    fn a_public_peer_cannot_point_lookups_at_private_addresses() {
        use std::net::SocketAddr;
        let mut dht: Dht<SocketAddr> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let now = Timestamp::EPOCH;
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let id = |b: u8| {
            let mut k = [0u8; 32];
            k[0] = b;
            Key::from_bytes(k)
        };
        let public = Contact::new(id(0x80), at("1.1.1.1:4001"));
        dht.handle_request(now, public.clone(), Request::new(RequestBody::Ping));
        dht.find_node(now, id(0x41)).unwrap();
        let first = dht.poll_transmit().unwrap();
        assert_eq!(first.to, public);
        let closer = vec![
            Contact::new(id(0x40), at("192.168.1.5:4001")),
            Contact::new(id(0x42), at("127.0.0.1:4001")),
            Contact::new(id(0x43), at("9.9.9.9:4001")),
        ];
        dht.handle_response(now, first.id, Response::new(ResponseBody::Nodes { closer }));
        let asked: Vec<SocketAddr> = std::iter::from_fn(|| dht.poll_transmit())
            .map(|t| t.to.addr)
            .collect();
        assert_eq!(asked, vec![at("9.9.9.9:4001")]);
        assert!(!queries::is_public("10.1.2.3".parse().unwrap()));
        assert!(!queries::is_public("100.64.0.1".parse().unwrap()));
        assert!(!queries::is_public("fe80::1".parse().unwrap()));
        assert!(queries::is_public("2a00::1".parse().unwrap()));
    }

    #[test]
    fn published_records_are_stored_again_hourly_and_renewed_at_half_their_life() {
        let (mut dht, _) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let record = SignedRecord::sign(&[7; 32], b"v1".to_vec(), 1, t0 + 4 * HOUR);
        let key = record.key();
        dht.put_record(t0, record).unwrap();
        let first = sent(&mut dht, t0);
        assert!(!first.is_empty(), "published at once");
        events(&mut dht);
        // A lookup of the key: a publication (a record pushed to a peer that joins is not).
        let about = |bodies: &[RequestBody], key: Key| {
            bodies
                .iter()
                .any(|b| matches!(b, RequestBody::FindNode { target, .. } if *target == key))
        };
        // Within the hour: nothing again (bucket refreshes aside).
        let t = t0 + HOUR / 2;
        dht.handle_timeout(t);
        let early = sent(&mut dht, t);
        assert!(!about(&early, key), "{early:?}");
        // Past the hour: stored again, on the closest of the moment.
        let t = t0 + HOUR + Duration::from_secs(61);
        dht.handle_timeout(t);
        let again = sent(&mut dht, t);
        assert!(
            again
                .iter()
                .any(|b| matches!(b, RequestBody::FindNode { target, .. } if *target == key)),
            "stored again: {again:?}"
        );
        assert!(
            !events(&mut dht)
                .iter()
                .any(|e| matches!(e, Event::RenewRecord { .. })),
            "not yet at half its life"
        );
        // Past half its life (2 of 4 hours left): renewal asked, once.
        let t = t0 + 2 * HOUR + Duration::from_secs(61);
        dht.handle_timeout(t);
        let renewals = |e: &[Event<u32>]| {
            e.iter()
                .filter(|e| matches!(e, Event::RenewRecord { ttl, .. } if *ttl == 4 * HOUR))
                .count()
        };
        assert_eq!(renewals(&events(&mut dht)), 1);
        let t = t + Duration::from_secs(61);
        dht.handle_timeout(t);
        assert_eq!(renewals(&events(&mut dht)), 0, "asked once");
        // Renewed (a higher sequence): a fresh life, published at once.
        let renewed = SignedRecord::sign(&[7; 32], b"v1".to_vec(), 2, t + 4 * HOUR);
        dht.put_record(t, renewed).unwrap();
        assert!(about(&sent(&mut dht, t), key));
        // Expired without renewal: forgotten, never stored again.
        let mut dht2 = one_peer().0;
        let short = SignedRecord::sign(&[8; 32], b"v".to_vec(), 1, t0 + HOUR / 2);
        let short_key = short.key();
        dht2.put_record(t0, short).unwrap();
        sent(&mut dht2, t0);
        let t = t0 + 2 * HOUR;
        dht2.handle_timeout(t);
        assert!(
            !about(&sent(&mut dht2, t), short_key),
            "an expired record is not published again"
        );
    }

    #[test]
    fn announced_keys_are_announced_again_every_half_provider_ttl_until_stopped() {
        let (mut dht, _) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let key = Key::hash(b"content");
        dht.announce(t0, key).unwrap();
        sent(&mut dht, t0);
        let t = t0 + 12 * HOUR + Duration::from_secs(61);
        dht.handle_timeout(t);
        let again = sent(&mut dht, t);
        assert!(
            again
                .iter()
                .any(|b| matches!(b, RequestBody::FindNode { target, .. } if *target == key)),
            "announced again: {again:?}"
        );
        dht.stop_announcing(&key);
        let t = t + 12 * HOUR + Duration::from_secs(61);
        dht.handle_timeout(t);
        assert!(
            !sent(&mut dht, t)
                .iter()
                .any(|b| matches!(b, RequestBody::FindNode { target, .. } if *target == key)),
            "stopped"
        );
    }

    #[test]
    fn an_announcement_right_after_a_lookup_of_its_key_stores_to_the_peers_it_found() {
        let (mut dht, peer) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let key = Key::hash(b"content");
        let lookup_of_key =
            |b: &RequestBody| matches!(b, RequestBody::FindNode { target, .. } if *target == key);
        // Answers every request to `peer`: FindNode with nobody closer, stores with Stored.
        let answer = |dht: &mut Dht<u32>, now: Timestamp| {
            let mut bodies = Vec::new();
            while let Some(t) = dht.poll_transmit() {
                let body = match &t.request.body {
                    RequestBody::AddProvider { .. } => ResponseBody::Stored,
                    _ => ResponseBody::Nodes { closer: Vec::new() },
                };
                bodies.push(t.request.body.clone());
                dht.handle_response(now, t.id, Response::new(body));
            }
            bodies
        };
        dht.place(t0, key).unwrap();
        assert!(answer(&mut dht, t0).iter().any(lookup_of_key));
        let t1 = t0 + Duration::from_secs(1);
        dht.announce(t1, key).unwrap();
        let sent = answer(&mut dht, t1);
        assert!(
            !sent.iter().any(lookup_of_key),
            "no second lookup: {sent:?}"
        );
        assert!(
            sent.iter()
                .any(|b| matches!(b, RequestBody::AddProvider { key: k } if *k == key)),
            "stored straight to the peer found: {sent:?}"
        );
        assert!(dht.contains_peer(&peer.id));
        // Once the lookup is old, an announcement looks the closest peers up again.
        let later = t0 + RECENT_LOOKUP_TTL;
        dht.announce(later, key).unwrap();
        assert!(answer(&mut dht, later).iter().any(lookup_of_key));
    }

    /// Starts a fetch of `key` (of a file's content if `root`) on `dht`; the GetProviders its
    /// lookup sends, and whether it asks for the bytes.
    fn fetch_lookup(
        dht: &mut Dht<u32>,
        now: Timestamp,
        key: Key,
        root: Option<Key>,
    ) -> (FetchId, RequestId, bool) {
        let fetch = dht.start_fetch(root, false).unwrap();
        dht.add_chunks(now, fetch, [key]).unwrap();
        let mut asked = None;
        while let Some(t) = dht.poll_transmit() {
            if let RequestBody::GetProviders { key: k, with_chunk } = t.request.body
                && k == key
            {
                asked = Some((t.id, with_chunk));
            }
        }
        let (id, with_chunk) = asked.expect("the fetch looks up holders");
        (fetch, id, with_chunk)
    }

    fn providers_with(chunk: Option<Vec<u8>>) -> Response<u32> {
        Response::new(ResponseBody::Providers {
            holds: true,
            providers: Vec::new(),
            closer: Vec::new(),
            chunk,
        })
    }

    #[test]
    fn a_small_chunk_comes_in_its_holders_lookup_answer_and_is_not_requested_again() {
        let (mut dht, peer) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let bytes = b"a root manifest with a small file inside".to_vec();
        let key = Key::hash(&bytes);
        // A file's chunks are not asked for in lookup answers: they are mostly large.
        let (_, _, with_chunk) = fetch_lookup(&mut dht, t0, key, Some(key));
        assert!(
            !with_chunk,
            "a file's fetch does not ask for bytes in answers"
        );
        let (fetch, id, with_chunk) = fetch_lookup(&mut dht, t0, key, None);
        assert!(with_chunk, "a lone chunk's fetch asks for the bytes");
        dht.handle_response(t0, id, providers_with(Some(bytes.clone())));
        let got = events(&mut dht);
        assert!(
            got.iter().any(
                |e| matches!(e, Event::ChunkInline { fetch: f, index: 0, chunk, from, bytes: b }
                if *f == fetch && *chunk == key && from.id == peer.id && *b == bytes)
            ),
            "the bytes are handed on: {got:?}"
        );
        assert!(
            !got.iter()
                .any(|e| matches!(e, Event::FetchChunk { fetch: f, .. } if *f == fetch)),
            "and not requested: {got:?}"
        );
        dht.handle_chunk(t0, fetch, 0, &peer.id, ChunkOutcome::Ok);
        dht.release_chunk(t0, fetch, 0);
        assert!(events(&mut dht).is_empty());
        assert!(dht.contains_peer(&peer.id));
    }

    #[test]
    fn a_holder_whose_lookup_answer_carries_bytes_that_are_not_the_chunk_is_banned() {
        let (mut dht, peer) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let key = Key::hash(b"the real chunk");
        let (fetch, id, _) = fetch_lookup(&mut dht, t0, key, None);
        dht.handle_response(t0, id, providers_with(Some(b"something else".to_vec())));
        let got = events(&mut dht);
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::Banned { peer: p, .. } if *p == peer.id)),
            "banned: {got:?}"
        );
        assert!(
            !got.iter()
                .any(|e| matches!(e, Event::ChunkInline { fetch: f, .. } if *f == fetch)),
            "nothing handed on: {got:?}"
        );
        assert!(!dht.contains_peer(&peer.id));
    }

    #[test]
    fn a_peer_that_joins_a_records_closest_set_is_sent_the_record() {
        let (mut dht, _) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        let record = SignedRecord::sign(&[7; 32], b"v1".to_vec(), 1, t0 + 4 * HOUR);
        dht.put_record(t0, record.clone()).unwrap();
        sent(&mut dht, t0);
        let mut id = [0u8; 32];
        id[0] = 0x40;
        let newcomer = Contact::new(Key::from_bytes(id), 2);
        dht.handle_request(t0, newcomer.clone(), Request::new(RequestBody::Ping));
        let mut pushed = Vec::new();
        while let Some(t) = dht.poll_transmit() {
            if t.to.id == newcomer.id {
                pushed.push(t.request.body.clone());
            }
        }
        assert!(
            pushed
                .iter()
                .any(|b| matches!(b, RequestBody::PutRecord { record: r } if *r == record)),
            "the newcomer gets the record: {pushed:?}"
        );
    }

    #[test]
    fn a_peer_whose_connection_broke_is_pinged_and_dropped_at_once_if_it_does_not_answer() {
        let (mut dht, peer) = one_peer();
        let t = Timestamp::EPOCH + HOUR;
        sent(&mut dht, t);
        dht.connection_lost(t, &peer.id);
        dht.connection_lost(t, &peer.id);
        let pings: Vec<_> = std::iter::from_fn(|| dht.poll_transmit())
            .filter(|t| matches!(t.request.body, RequestBody::Ping))
            .collect();
        assert_eq!(pings.len(), 1, "one ping, however often the loss is told");
        assert!(matches!(pings[0].request.body, RequestBody::Ping));
        dht.handle_failure(t, pings[0].id);
        assert!(
            !dht.contains_peer(&peer.id),
            "dropped after one failed ping"
        );
        assert!(
            events(&mut dht)
                .iter()
                .any(|e| matches!(e, Event::PeerRemoved { .. })),
            "and the closest sets it was in are re-evaluated"
        );
        // One that answers stays.
        let (mut dht, peer) = one_peer();
        dht.connection_lost(t, &peer.id);
        let ping = dht.poll_transmit().expect("a ping");
        dht.handle_response(t, ping.id, Response::new(ResponseBody::Pong));
        assert!(dht.contains_peer(&peer.id));
    }

    #[test]
    fn a_read_that_meets_an_old_version_runs_to_the_end_and_repairs_the_stale_peer() {
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let t0 = Timestamp::EPOCH + HOUR;
        let peers: Vec<Contact<u32>> = (1..=4u8)
            .map(|b| {
                let mut id = [0u8; 32];
                id[0] = 0x80 | b;
                Contact::new(Key::from_bytes(id), u32::from(b))
            })
            .collect();
        for p in &peers {
            dht.handle_request(t0, p.clone(), Request::new(RequestBody::Ping));
        }
        while dht.poll_transmit().is_some() {}
        let v1 = SignedRecord::sign(&[9; 32], b"old".to_vec(), 1, t0 + HOUR);
        let v2 = SignedRecord::sign(&[9; 32], b"new".to_vec(), 2, t0 + HOUR);
        let key = v1.key();
        let query = dht.get_record(t0, key).unwrap();
        // Peer 1 holds the new version, the others the old one: three answers are a quorum,
        // but they disagree, so every peer is asked.
        let mut asked = 0;
        let mut stale = Vec::new();
        for _ in 0..4 {
            let Some(t) = dht.poll_transmit() else { break };
            asked += 1;
            let record = if t.to.id == peers[0].id {
                v2.clone()
            } else {
                v1.clone()
            };
            if t.to.id != peers[0].id {
                stale.push(t.to.id);
            }
            let body = ResponseBody::Value {
                record: Some(record),
                closer: Vec::new(),
            };
            dht.handle_response(t0, t.id, Response::new(body));
        }
        while let Some(t) = dht.poll_transmit() {
            match &t.request.body {
                RequestBody::FindValue { .. } => {
                    asked += 1;
                    let body = ResponseBody::Value {
                        record: Some(v1.clone()),
                        closer: Vec::new(),
                    };
                    stale.push(t.to.id);
                    dht.handle_response(t0, t.id, Response::new(body));
                }
                RequestBody::PutRecord { record } => {
                    assert_eq!(record.sequence, 2, "the newest goes back");
                    assert!(
                        stale.contains(&t.to.id),
                        "only to a peer that had the old one"
                    );
                    stale.retain(|p| *p != t.to.id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(asked, 4, "all four asked");
        assert!(stale.is_empty(), "every stale peer repaired: {stale:?}");
        let read = events(&mut dht).into_iter().find_map(|e| match e {
            Event::QueryFinished {
                id,
                result: QueryResult::GetRecord { record, .. },
                ..
            } if id == query => record,
            _ => None,
        });
        assert_eq!(read.map(|r| r.sequence), Some(2));
        // The reader remembers it: three peers that answer with the old version later cannot
        // roll it back.
        assert_eq!(dht.stored_record(&key, t0).map(|r| r.sequence), Some(2));
        let again = dht.get_record(t0, key).unwrap();
        while let Some(t) = dht.poll_transmit() {
            if let RequestBody::FindValue { .. } = t.request.body {
                let body = ResponseBody::Value {
                    record: Some(v1.clone()),
                    closer: Vec::new(),
                };
                dht.handle_response(t0, t.id, Response::new(body));
            }
        }
        let read = events(&mut dht).into_iter().find_map(|e| match e {
            Event::QueryFinished {
                id,
                result: QueryResult::GetRecord { record, .. },
                ..
            } if id == again => record,
            _ => None,
        });
        assert_eq!(read.map(|r| r.sequence), Some(2), "no rollback");
    }

    #[test]
    fn chunk_requests_beyond_a_peers_budget_are_refused_and_the_budget_refills() {
        let (mut dht, peer) = one_peer();
        let t = Timestamp::EPOCH + HOUR;
        let burst = dht.config().chunk_rate.burst;
        let allowed = (0..burst + 10)
            .filter(|_| dht.allow_chunk_request(t, &peer.id))
            .count();
        assert_eq!(allowed, burst as usize, "a burst, then refusals");
        assert!(
            dht.allow_chunk_request(t, &Key::hash(b"another")),
            "another peer has its own budget"
        );
        let later = t + Duration::from_secs(1);
        let refilled = (0..burst)
            .filter(|_| dht.allow_chunk_request(later, &peer.id))
            .count();
        assert_eq!(refilled, dht.config().chunk_rate.per_second as usize);
    }

    #[test]
    fn background_announcements_wait_for_a_peer() {
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let t = Timestamp::EPOCH + HOUR;
        // Nobody to tell: ten thousand keys start nothing (and recurse nowhere).
        for i in 0..10_000u32 {
            dht.announce_later(t, Key::hash(&i.to_le_bytes()));
        }
        assert_eq!(dht.queries_in_progress(), 0);
        let mut id = [0u8; 32];
        id[0] = 0x80;
        dht.handle_request(
            t,
            Contact::new(Key::from_bytes(id), 1),
            Request::new(RequestBody::Ping),
        );
        let announces = std::iter::from_fn(|| dht.poll_transmit())
            .filter(|t| matches!(t.request.body, RequestBody::FindNode { .. }))
            .count();
        assert!(
            announces >= 8,
            "the first peer sets them going: {announces}"
        );
    }

    #[test]
    fn background_announcements_run_eight_at_a_time_each_that_ends_starting_the_next() {
        let (mut dht, _) = one_peer();
        let t = Timestamp::EPOCH + HOUR;
        dht.handle_timeout(t);
        let others = dht.queries_in_progress(); // maintenance
        for i in 0..20u8 {
            dht.announce_later(t, Key::hash(&[i]));
        }
        assert_eq!(dht.queries_in_progress(), others + 8);
        let mut announced = 0;
        // Each answer moves one announcement on: its lookup ends, it stores, the next starts.
        for _ in 0..200 {
            let Some(tx) = dht.poll_transmit() else { break };
            let body = match tx.request.body {
                RequestBody::AddProvider { .. } => {
                    announced += 1;
                    ResponseBody::Stored
                }
                _ => ResponseBody::Nodes { closer: Vec::new() },
            };
            dht.handle_response(t, tx.id, Response::new(body));
            assert!(dht.queries_in_progress() <= others + 8);
        }
        assert_eq!(announced, 20, "every key announced, none twice");
        assert_eq!(dht.queries_in_progress(), 0);
        assert!(
            events(&mut dht)
                .iter()
                .all(|e| !matches!(e, Event::QueryFinished { .. }))
        );
    }

    #[test]
    fn a_dropped_peer_that_is_back_takes_its_slot_from_a_younger_entry() {
        let config = Config {
            k: 2,
            ..Config::default()
        };
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), config);
        // Three peers of bucket 255 (first bit set); the bucket holds two.
        let peer = |b: u8, addr| {
            let mut id = [0u8; 32];
            id[0] = 0x80 | b;
            Contact::new(Key::from_bytes(id), addr)
        };
        let (a, b, c) = (peer(1, 1), peer(2, 2), peer(3, 3));
        let t0 = Timestamp::EPOCH + HOUR;
        for p in [&a, &b] {
            dht.handle_request(t0, p.clone(), Request::new(RequestBody::Ping));
        }
        // A's connection breaks and it does not answer: dropped; C fills its slot.
        dht.connection_lost(t0, &a.id);
        let ping = dht.poll_transmit().expect("a liveness ping");
        dht.handle_failure(t0, ping.id);
        assert!(!dht.contains_peer(&a.id));
        let t1 = t0 + Duration::from_secs(5);
        dht.handle_request(t1, c.clone(), Request::new(RequestBody::Ping));
        assert!(dht.contains_peer(&c.id) && dht.contains_peer(&b.id));
        while dht.poll_transmit().is_some() {}
        // A minute later A is pinged again and answers: it is back, in C's place (C is younger
        // than A), and C waits in the replacement cache.
        let t2 = t0 + Duration::from_secs(61);
        dht.handle_timeout(t2);
        let retry = std::iter::from_fn(|| dht.poll_transmit())
            .find(|t| t.to.id == a.id)
            .expect("A is tried again");
        dht.handle_response(t2, retry.id, Response::new(ResponseBody::Pong));
        assert!(dht.contains_peer(&a.id), "back");
        assert!(dht.contains_peer(&b.id), "B, older than A, stays");
        assert!(
            !dht.contains_peer(&c.id),
            "C, the youngest, gave up its slot"
        );
    }

    #[test]
    fn a_peer_dropped_for_not_answering_is_tried_again_and_is_back_when_it_answers() {
        let (mut dht, peer) = one_peer();
        let t0 = Timestamp::EPOCH + HOUR;
        // It misses two requests: dropped.
        for _ in 0..2 {
            dht.connection_lost(t0, &peer.id);
            dht.find_node(t0, Key::hash(b"x")).unwrap();
            while let Some(t) = dht.poll_transmit() {
                dht.handle_failure(t0, t.id);
            }
        }
        assert!(!dht.contains_peer(&peer.id), "dropped");
        // A minute later it is pinged again; it answers, and is back.
        let t = t0 + Duration::from_secs(121);
        dht.handle_timeout(t);
        let retry = std::iter::from_fn(|| dht.poll_transmit())
            .find(|t| t.to.id == peer.id && matches!(t.request.body, RequestBody::Ping))
            .expect("pinged again");
        dht.handle_response(t, retry.id, Response::new(ResponseBody::Pong));
        assert!(dht.contains_peer(&peer.id), "back in the table");
    }

    #[test]
    fn a_bootstrap_that_found_nobody_is_tried_again_with_backoff_until_a_peer_answers() {
        let mut dht: Dht<u32> = Dht::new(Key::from_bytes([0; 32]), Config::default());
        let mut id = [0u8; 32];
        id[0] = 0x80;
        let seed = Contact::new(Key::from_bytes(id), 1);
        let t0 = Timestamp::EPOCH + HOUR;
        dht.bootstrap(t0, [seed.clone()]).unwrap();
        let mut tries = Vec::new();
        let mut t = t0;
        for _ in 0..400 {
            while let Some(tx) = dht.poll_transmit() {
                if tx.to.id == seed.id {
                    tries.push(t.saturating_duration_since(t0).as_secs());
                }
                dht.handle_failure(t, tx.id);
            }
            if tries.len() >= 5 {
                break;
            }
            t = t + Duration::from_millis(500);
            dht.handle_timeout(t);
        }
        assert_eq!(tries.len(), 5, "tried again: {tries:?}");
        let gaps: Vec<u64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "waits grow: {tries:?}"
        );
        // Once it answers, the retries stop.
        dht.handle_request(t, seed.clone(), Request::new(RequestBody::Ping));
        let later = t + Duration::from_secs(600);
        dht.handle_timeout(later);
        let local = dht.local_id();
        assert!(
            !std::iter::from_fn(|| dht.poll_transmit())
                .any(|tx| matches!(tx.request.body, RequestBody::FindNode { target, .. } if target == local)),
            "no more bootstrap once the table has a peer"
        );
    }
}
