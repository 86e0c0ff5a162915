//! The discrete-event core: nodes, the event loop, message delivery, timers, churn and
//! partitions. The workload (what is looked up and how it is judged) is in `workload.rs`.
//!
//! Each honest node is a real [`Dht<u32>`] whose address is its slot in `nodes`. The loop pops
//! the earliest event, feeds it to the engine it concerns, then drains that engine's outputs
//! (`poll_transmit` into delayed deliveries, `poll_event` into the workload's bookkeeping,
//! `poll_timeout` into one timer event per node), so the engines run exactly as the node runs
//! them, only with a virtual clock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cairn_dht::{
    ChunkOutcome, Config, Contact, Dht, Event, FetchConfig, FetchId, Key, ProofOutcome, QueryId,
    Request, RequestBody, RequestId, Response, TimeoutConfig, Timestamp, Transmit,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adversary::{self, Adversaries};
use crate::content::{ContentStore, Link};
use crate::directory::KeyIndex;
use crate::network::{Geography, Region};
use crate::queue::EventQueue;
use crate::workload::Workbook;
use crate::{AdversaryKind, JoinMode, Scenario};

/// A node keeps a connection to a peer this long after their last exchange (the node's
/// `IDLE_CONNECTION_TIMEOUT`).
const CONNECTION_IDLE: Duration = Duration::from_secs(300);

/// How long after a peer leaves its open connections are seen to break: libp2p's ping every
/// 15 s and its timeout, for a peer that vanished without closing them.
const BREAK_NOTICED: Duration = Duration::from_secs(30);

/// Joins in [`JoinMode::Bootstrap`] are this far apart.
const JOIN_SPACING: Duration = Duration::from_millis(20);

/// Peers of each bucket a warm-started node has met, in multiples of k (see
/// `Simulator::warm_start`).
const WARM_MET: usize = 2;

/// A hard cap on events, far above any run the command line allows, so a bug cannot spin
/// forever.
const MAX_EVENTS: u64 = 20_000_000_000;

/// Rounds of draining one engine's outputs in a flush; far above the two or three that handling
/// an event can set off.
const MAX_FLUSH_ROUNDS: usize = 64;

/// One node slot. Slots are never reused: a node that leaves keeps its slot, offline.
pub(crate) struct Node {
    pub(crate) id: Key,
    pub(crate) addr: u32,
    pub(crate) region: Region,
    pub(crate) adversary: bool,
    pub(crate) online: bool,
    /// Its first lookup has finished (or it started warm): it may originate workload lookups.
    pub(crate) ready: bool,
    /// The engine of an honest node that is online.
    pub(crate) engine: Option<Box<Dht<u32>>>,
    /// The instant of the timer event queued for this node, if any.
    timer_at: Option<Timestamp>,
    /// Its access link.
    pub(crate) link: Link,
    /// The chunks it stores.
    pub(crate) store: ContentStore,
}

/// What the queue holds.
pub(crate) enum Action {
    /// A request arrives at `to`.
    Request {
        from: u32,
        to: u32,
        to_id: Key,
        id: RequestId,
        request: Request,
    },
    /// A response arrives back at `to`, the requester.
    Response {
        from: u32,
        to: u32,
        id: RequestId,
        response: Response<u32>,
    },
    /// The transport tells `to` that its request `id` reached a peer with another id.
    Refused { to: u32, id: RequestId },
    /// An adversary introduces itself to `to` (a ping whose answer it ignores).
    Hello { from: u32, to: u32 },
    /// A node's engine asked for `handle_timeout` at this instant.
    Timer { node: u32 },
    /// A starting node joins ([`JoinMode::Bootstrap`]).
    Join { node: u32 },
    /// Workload lookup number `index` starts.
    Lookup { index: usize },
    /// Record number `index` is published.
    Publish { index: usize },
    /// Record number `index` is published again, with a higher sequence and a new value, by a
    /// node on one side of the partition while it is cut.
    Republish { index: usize },
    /// A node's session ends.
    Leave { node: u32 },
    /// `node`'s connection to `peer`, which left, is seen to break (see [`CONNECTION_IDLE`]).
    ConnectionLost { node: u32, peer: Key },
    /// A new node arrives.
    Arrive,
    /// The partition starts.
    Cut,
    /// The partition heals.
    Heal,
    /// Object number `index` is published (content workload).
    PublishObject { index: usize },
    /// A copy of `chunk` arrives at `to`: placed by its publisher, or `moved` by an engine
    /// (`Event::Replicate`).
    Copy {
        to: u32,
        chunk: Key,
        size: u32,
        moved: bool,
    },
    /// What came of `node`'s challenge of `peer` over `chunk` (`Event::Challenge`) reaches it.
    Proof {
        node: u32,
        chunk: Key,
        peer: Key,
        outcome: ProofOutcome,
    },
    /// Get number `index` starts.
    Get { index: usize },
    /// The durability workload's hourly count of what is still stored.
    Check,
    /// The outcome of a chunk request reaches `getter` (see `objects.rs`).
    ChunkDone {
        getter: u32,
        fetch: FetchId,
        index: u64,
        from: Key,
        outcome: ChunkOutcome,
        size: u32,
        origin: bool,
    },
}

/// What a finished engine query belonged to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tracked {
    Join,
    Lookup(usize),
    Publish(usize),
    /// Placement of chunk `chunk` of object `object`.
    Place {
        object: usize,
        chunk: usize,
    },
}

/// Counters over the whole run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) events: u64,
    pub(crate) requests: u64,
    pub(crate) pings: u64,
    pub(crate) ping_after_ping: u64,
    pub(crate) lost: u64,
    pub(crate) joins: u64,
    pub(crate) leaves: u64,
}

/// A running simulation.
pub(crate) struct Simulator {
    pub(crate) scenario: Scenario,
    pub(crate) now: Timestamp,
    pub(crate) nodes: Vec<Node>,
    queue: EventQueue<Action>,
    pub(crate) geo: Geography,
    /// Live honest nodes.
    pub(crate) honest: KeyIndex,
    /// Live nodes, honest or not.
    pub(crate) all: KeyIndex,
    /// Live adversaries.
    pub(crate) adversary_index: KeyIndex,
    adversaries: Adversaries,
    /// Sybil addresses (the only ones that are not slots).
    sybil_slots: BTreeMap<u32, u32>,
    pub(crate) partitioned: bool,
    pub(crate) tracked: HashMap<(u32, QueryId), Tracked>,
    pub(crate) work: Workbook,
    net_rng: ChaCha8Rng,
    churn_rng: ChaCha8Rng,
    pub(crate) work_rng: ChaCha8Rng,
    /// Draws every node's link; its own stream, so that the content model changes no other
    /// draw.
    link_rng: ChaCha8Rng,
    /// Honest population that churn keeps up.
    population: usize,
    pub(crate) counters: Counters,
    /// Joins of the starting network not yet finished ([`JoinMode::Bootstrap`]).
    pending_joins: usize,
}

impl Simulator {
    /// Builds the starting network: nodes, regions, adversaries, and (warm start) routing tables.
    pub(crate) fn new(scenario: Scenario) -> Self {
        let seed = scenario.seed;
        assert!(
            scenario.nodes < 1 << 23,
            "seed {seed}: at most 2^23 nodes (addresses are slots below 2^24)"
        );
        let mut build_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb111_d000);
        let geo = Geography::new(seed);
        let work = Workbook::new(&scenario);
        let mut adversaries = Adversaries::new(scenario.adversary_kind);
        let adversary_count = scenario.adversary_count();
        let honest_count = scenario.nodes - adversary_count;
        let sybil = scenario.adversary_kind == AdversaryKind::Sybil && adversary_count > 0;
        if sybil {
            adversaries.sybil_target = work.records.first().map(|r| r.key());
        }
        let mut sim = Self {
            now: Timestamp::EPOCH,
            nodes: Vec::with_capacity(scenario.nodes),
            queue: EventQueue::new(),
            geo,
            honest: KeyIndex::default(),
            all: KeyIndex::default(),
            adversary_index: KeyIndex::default(),
            adversaries,
            sybil_slots: BTreeMap::new(),
            partitioned: false,
            tracked: HashMap::new(),
            work,
            net_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0e7_0000),
            churn_rng: ChaCha8Rng::seed_from_u64(seed ^ 0xc4_0000),
            work_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x3007_0000),
            link_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0011_4c00),
            population: honest_count,
            counters: Counters::default(),
            pending_joins: 0,
            scenario,
        };
        for slot in 0..sim.scenario.nodes as u32 {
            let region = sim.geo.place(&mut build_rng);
            let adversary = slot as usize >= honest_count;
            let (id, addr) = match sim.adversaries.sybil_target {
                Some(target) if adversary => {
                    let i = slot - honest_count as u32;
                    let addr = adversary::sybil_addr(i);
                    sim.sybil_slots.insert(addr, slot);
                    (adversary::sybil_id(&target, seed ^ u64::from(i)), addr)
                }
                _ => (node_id(seed, slot), slot),
            };
            sim.add_node(id, addr, region, adversary);
        }
        match sim.scenario.join {
            JoinMode::Warm => sim.warm_start(),
            JoinMode::Bootstrap => {
                // Node 0 is the first: it needs nobody. The others join one by one.
                sim.nodes[0].ready = true;
                for slot in 1..sim.nodes.len() as u32 {
                    sim.queue
                        .push(sim.now + JOIN_SPACING * slot, Action::Join { node: slot });
                }
                sim.pending_joins = honest_count.saturating_sub(1);
            }
        }
        sim
    }

    /// Creates an online node in a new slot.
    fn add_node(&mut self, id: Key, addr: u32, region: Region, adversary: bool) -> u32 {
        let slot = self.nodes.len() as u32;
        let engine = (!adversary).then(|| {
            let config = Config {
                k: self.scenario.k,
                alpha: self.scenario.alpha,
                disjoint_paths: self.scenario.disjoint_paths,
                timeouts: TimeoutConfig {
                    min: self.scenario.timeout_min,
                    ..TimeoutConfig::default()
                },
                seed: crate::network::mix(self.scenario.seed ^ u64::from(slot)),
                replication: self
                    .scenario
                    .replication
                    .unwrap_or(Config::default().replication),
                fetch: FetchConfig {
                    window: self
                        .scenario
                        .fetch_window
                        .unwrap_or(FetchConfig::default().window),
                    lookahead: self
                        .scenario
                        .fetch_lookahead
                        .unwrap_or(FetchConfig::default().lookahead),
                    alpha: self
                        .scenario
                        .fetch_alpha
                        .unwrap_or(FetchConfig::default().alpha),
                    ..FetchConfig::default()
                },
                ..Config::default()
            };
            Box::new(Dht::new(id, config))
        });
        self.nodes.push(Node {
            id,
            addr,
            region,
            adversary,
            online: true,
            ready: false,
            engine,
            timer_at: None,
            link: Link::draw(&mut self.link_rng),
            store: ContentStore::default(),
        });
        self.all.insert(id, slot);
        if adversary {
            self.adversary_index.insert(id, slot);
        } else {
            self.honest.insert(id, slot);
        }
        slot
    }

    /// Fills every routing table as a network that has run a while would have it: node x has
    /// met up to [`WARM_MET`] × k random nodes of each of its buckets and measured its round
    /// trip to each (a real node pings every peer it connects to), and the engine decides what
    /// enters: the IP-prefix cap keeps out most Sybils, and proximity neighbour selection keeps
    /// the nearer peers of a bucket that has more than k to choose from.
    fn warm_start(&mut self) {
        let k = self.scenario.k;
        let met = WARM_MET * k;
        let now = self.now;
        let ping = Request::new(RequestBody::Ping);
        let mut chosen: Vec<u32> = Vec::with_capacity(k);
        for x in 0..self.nodes.len() as u32 {
            self.nodes[x as usize].ready = true;
            if self.nodes[x as usize].adversary {
                continue;
            }
            let id = self.nodes[x as usize].id;
            let mut peers: Vec<u32> = Vec::new();
            // Bucket `255 - shared`: ids sharing `shared` leading bits with x, then differing.
            for shared in 0..cairn_dht::KEY_BITS {
                let mut flipped = *id.as_bytes();
                flipped[shared / 8] ^= 0x80 >> (shared % 8);
                let run = self.all.with_prefix(&Key::from_bytes(flipped), shared + 1);
                chosen.clear();
                if run.len() <= met {
                    chosen.extend(run.iter().map(|(_, s)| *s));
                } else {
                    // Distinct picks from the run (a few k; the run is far larger).
                    while chosen.len() < met {
                        let s = run[self.work_rng.random_range(0..run.len())].1;
                        if !chosen.contains(&s) {
                            chosen.push(s);
                        }
                    }
                }
                peers.extend_from_slice(&chosen);
                // Nobody else shares the next bit: every nearer bucket is empty.
                if self.all.with_prefix(&id, shared + 1).len() <= 1 {
                    break;
                }
            }
            for p in peers {
                let from = self.contact(p);
                let (a, b) = (&self.nodes[x as usize], &self.nodes[p as usize]);
                let rtt = self.geo.rtt(x, a.region, p, b.region);
                if let Some(engine) = self.nodes[x as usize].engine.as_mut() {
                    engine.handle_rtt(now, &from.id, rtt);
                    engine.handle_request(now, from, ping.clone());
                }
            }
            self.flush(x);
        }
    }

    /// Runs events until `done` holds or the next event is after `limit`; time then stands at
    /// the last event run (or at `limit` if the queue ran past it).
    pub(crate) fn run_until(&mut self, limit: Timestamp, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            let Some((at, action)) = self.queue.pop_until(limit) else {
                if limit != Timestamp::NEVER {
                    self.now = self.now.max(limit);
                }
                return;
            };
            self.counters.events += 1;
            assert!(
                self.counters.events < MAX_EVENTS,
                "seed {}: event budget exhausted",
                self.scenario.seed
            );
            self.now = self.now.max(at);
            self.dispatch(at, action);
        }
    }

    fn dispatch(&mut self, at: Timestamp, action: Action) {
        let now = self.now;
        match action {
            Action::Request {
                from,
                to,
                to_id,
                id,
                request,
            } => self.deliver_request(from, to, to_id, id, request),
            Action::Response {
                from,
                to,
                id,
                response,
            } => {
                if !self.nodes[to as usize].online || self.cut(from, to) {
                    self.counters.lost += 1;
                    return;
                }
                if let Some(engine) = self.nodes[to as usize].engine.as_mut() {
                    engine.handle_response(now, id, response);
                    self.flush(to);
                }
            }
            Action::Refused { to, id } => {
                if let Some(engine) = self.nodes[to as usize].engine.as_mut() {
                    engine.handle_failure(now, id);
                    self.flush(to);
                }
            }
            Action::Hello { from, to } => {
                if self.nodes[from as usize].online && !self.cut(from, to) {
                    let contact = self.contact(from);
                    if let Some(engine) = self.nodes[to as usize].engine.as_mut() {
                        engine.handle_request(now, contact, Request::new(RequestBody::Ping));
                        self.flush(to);
                    }
                }
            }
            Action::Timer { node } => {
                let n = &mut self.nodes[node as usize];
                if n.timer_at != Some(at) {
                    return; // superseded by an earlier timer
                }
                n.timer_at = None;
                if let Some(engine) = n.engine.as_mut() {
                    engine.handle_timeout(now);
                    self.flush(node);
                }
            }
            Action::Join { node } => self.join(node),
            Action::Lookup { index } => self.start_lookup(index),
            Action::Publish { index } => self.publish(index),
            Action::Republish { index } => self.republish(index),
            Action::Leave { node } => self.leave(node),
            Action::ConnectionLost { node, peer } => {
                let now = self.now;
                if let Some(engine) = self.nodes[node as usize].engine.as_mut() {
                    engine.connection_lost(now, &peer);
                    self.flush(node);
                }
            }
            Action::Arrive => self.arrive(),
            Action::Cut => {
                self.work.across_at_cut = Some(self.routing_across());
                self.partitioned = true;
            }
            Action::Heal => {
                self.work.across_at_heal = Some(self.routing_across());
                self.partitioned = false;
            }
            Action::PublishObject { index } => self.publish_object(index),
            Action::Copy {
                to,
                chunk,
                size,
                moved,
            } => self.on_copy(to, chunk, size, moved),
            Action::Proof {
                node,
                chunk,
                peer,
                outcome,
            } => {
                let now = self.now;
                if let Some(engine) = self.nodes[node as usize].engine.as_mut() {
                    engine.handle_proof(now, chunk, &peer, outcome);
                    self.flush(node);
                }
            }
            Action::Get { index } => self.start_get(index),
            Action::Check => self.check_durability(),
            Action::ChunkDone {
                getter,
                fetch,
                index,
                from,
                outcome,
                size,
                origin,
            } => self.on_chunk_done(getter, fetch, index, from, outcome, size, origin),
        }
    }

    fn deliver_request(&mut self, from: u32, to: u32, to_id: Key, id: RequestId, request: Request) {
        let now = self.now;
        if !self.nodes[to as usize].online || self.cut(from, to) {
            self.counters.lost += 1;
            return; // the requester times out
        }
        if self.nodes[to as usize].id != to_id {
            // The authenticated handshake names another peer: the transport reports a failure.
            let delay = self.delay(to, from);
            self.queue
                .push(now + delay, Action::Refused { to: from, id });
            return;
        }
        let response = if self.nodes[to as usize].adversary {
            let nodes = &self.nodes;
            let contact = |s: u32| Contact::new(nodes[s as usize].id, nodes[s as usize].addr);
            let dir = adversary::Directory {
                all: &self.all,
                adversaries: &self.adversary_index,
                contact: &contact,
            };
            self.adversaries.answer(to, &request, &dir, self.scenario.k)
        } else {
            let contact = self.contact(from);
            let was_ping = matches!(request.body, RequestBody::Ping);
            let before = self.counters.pings;
            let engine = self.nodes[to as usize].engine.as_mut();
            let response = engine.map(|e| e.handle_request(now, contact, request));
            self.flush(to);
            if was_ping {
                self.counters.ping_after_ping += self.counters.pings - before;
            }
            response
        };
        let Some(response) = response else {
            return;
        };
        if self.lost() {
            self.counters.lost += 1;
            return;
        }
        let delay = self.delay(to, from);
        self.queue.push(
            now + delay,
            Action::Response {
                from: to,
                to: from,
                id,
                response,
            },
        );
    }

    /// Drains a node's outputs after an input. Handling an event can feed the engine again
    /// (a fetch that failed is ended), so drain until a round brings nothing out.
    pub(crate) fn flush(&mut self, slot: u32) {
        for _ in 0..MAX_FLUSH_ROUNDS {
            let mut quiet = true;
            loop {
                let Some(engine) = self.nodes[slot as usize].engine.as_mut() else {
                    return;
                };
                let Some(t) = engine.poll_transmit() else {
                    break;
                };
                quiet = false;
                self.send(slot, t);
            }
            loop {
                let Some(engine) = self.nodes[slot as usize].engine.as_mut() else {
                    return;
                };
                let Some(event) = engine.poll_event() else {
                    break;
                };
                quiet = false;
                match event {
                    Event::QueryFinished { id, result, stats } => {
                        if let Some(what) = self.tracked.remove(&(slot, id)) {
                            self.on_finished(slot, what, result, stats);
                        }
                    }
                    Event::FetchChunk {
                        fetch,
                        index,
                        chunk,
                        from,
                    } => self.on_fetch_chunk(slot, fetch, index, chunk, from),
                    // The simulated holders carry no bytes, so none answers with a chunk.
                    Event::ChunkInline { .. } => {}
                    Event::FetchFailed { fetch, error } => self.on_fetch_failed(slot, fetch, error),
                    Event::Replicate { key, to } => self.on_replicate(slot, key, to),
                    Event::Challenge { key, peer, .. } => self.on_challenge(slot, key, peer),
                    Event::Release { key } => self.on_release(slot, key),
                    _ => {}
                }
            }
            if quiet {
                break;
            }
        }
        let now = self.now;
        let node = &mut self.nodes[slot as usize];
        if let Some(t) = node.engine.as_mut().and_then(|e| e.poll_timeout()) {
            let t = t.max(now);
            if node.timer_at.is_none_or(|queued| t < queued) {
                node.timer_at = Some(t);
                self.queue.push(t, Action::Timer { node: slot });
            }
        }
    }

    fn send(&mut self, from: u32, t: Transmit<u32>) {
        self.counters.requests += 1;
        if matches!(t.request.body, RequestBody::Ping) {
            self.counters.pings += 1;
        }
        let Some(to) = self.slot_of(t.to.addr) else {
            self.counters.lost += 1;
            return; // nobody there: the request times out
        };
        if self.cut(from, to) || self.lost() {
            self.counters.lost += 1;
            return;
        }
        let delay = self.delay(from, to);
        self.queue.push(
            self.now + delay,
            Action::Request {
                from,
                to,
                to_id: t.to.id,
                id: t.id,
                request: t.request,
            },
        );
    }

    /// Schedules `action` at `at`.
    pub(crate) fn push(&mut self, at: Timestamp, action: Action) {
        self.queue.push(at, action);
    }

    /// Schedules a workload action.
    pub(crate) fn schedule_lookup(&mut self, at: Timestamp, index: usize) {
        self.queue.push(at, Action::Lookup { index });
    }

    /// Schedules the publication of a record.
    pub(crate) fn schedule_publish(&mut self, at: Timestamp, index: usize) {
        self.queue.push(at, Action::Publish { index });
    }

    /// Schedules the partition.
    pub(crate) fn schedule_partition(&mut self, start: Timestamp, length: Duration) {
        self.queue.push(start, Action::Cut);
        self.queue.push(start + length, Action::Heal);
    }

    /// Starts churn from now: every online honest node gets the rest of a session (see
    /// [`Churn::residual_session`](crate::Churn)), and arrivals begin.
    pub(crate) fn start_churn(&mut self) {
        let Some(churn) = self.scenario.churn else {
            return;
        };
        for slot in 0..self.nodes.len() as u32 {
            let n = &self.nodes[slot as usize];
            if n.online && !n.adversary {
                let at = self.now + churn.residual_session(&mut self.churn_rng);
                self.queue.push(at, Action::Leave { node: slot });
            }
        }
        let at = self.now + churn.next_arrival(self.population, &mut self.churn_rng);
        self.queue.push(at, Action::Arrive);
    }

    fn leave(&mut self, slot: u32) {
        let n = &mut self.nodes[slot as usize];
        if !n.online {
            return;
        }
        n.online = false;
        n.ready = false;
        // Dropping the engine frees its memory; requests to the node now time out.
        n.engine = None;
        let id = n.id;
        self.honest.remove(&id);
        self.all.remove(&id);
        self.counters.leaves += 1;
        // The node keeps a connection to each peer it exchanged with in the last
        // `CONNECTION_IDLE`; those peers see it break (libp2p's ping fails, or the transport
        // reports the close) and tell their engines, as the node's driver does.
        let now = self.now;
        let mut broken = Vec::new();
        for (slot, node) in self.nodes.iter().enumerate() {
            let Some(engine) = node.engine.as_ref() else {
                continue;
            };
            if engine
                .peer_last_seen(&id)
                .is_some_and(|at| now.saturating_duration_since(at) <= CONNECTION_IDLE)
            {
                broken.push(slot as u32);
            }
        }
        for node in broken {
            self.queue.push(
                now + BREAK_NOTICED,
                Action::ConnectionLost { node, peer: id },
            );
        }
    }

    fn arrive(&mut self) {
        let Some(churn) = self.scenario.churn else {
            return;
        };
        let slot = self.nodes.len() as u32;
        if (slot as usize) < (1 << 23) {
            let region = self.geo.place(&mut self.churn_rng);
            let id = node_id(self.scenario.seed, slot);
            self.add_node(id, slot, region, false);
            self.counters.joins += 1;
            let at = self.now + churn.session(&mut self.churn_rng);
            self.queue.push(at, Action::Leave { node: slot });
            self.join(slot);
        }
        let at = self.now + churn.next_arrival(self.population, &mut self.churn_rng);
        self.queue.push(at, Action::Arrive);
    }

    /// `slot` joins through a random ready honest node (an adversary introduces itself to its
    /// closest honest nodes and a few random ones instead).
    fn join(&mut self, slot: u32) {
        let now = self.now;
        if self.nodes[slot as usize].adversary {
            let id = self.nodes[slot as usize].id;
            let k = self.scenario.k;
            let mut peers: Vec<u32> = self
                .honest
                .closest(&id, k, |s| self.nodes[s as usize].ready)
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            for _ in 0..k {
                if let Some(s) = self.random_ready_honest(None) {
                    peers.push(s);
                }
            }
            self.nodes[slot as usize].ready = true;
            for to in peers {
                let delay = self.delay(slot, to);
                self.queue
                    .push(now + delay, Action::Hello { from: slot, to });
            }
            return;
        }
        let Some(seed) = self.random_ready_honest(Some(slot)) else {
            self.nodes[slot as usize].ready = true;
            return;
        };
        let seed_contact = self.contact(seed);
        let Some(engine) = self.nodes[slot as usize].engine.as_mut() else {
            return;
        };
        match engine.bootstrap(now, [seed_contact]) {
            Ok(q) => {
                self.tracked.insert((slot, q), Tracked::Join);
            }
            Err(_) => self.nodes[slot as usize].ready = true,
        }
        self.flush(slot);
    }

    /// A node finished joining.
    pub(crate) fn on_joined(&mut self, slot: u32) {
        self.nodes[slot as usize].ready = true;
        if self.pending_joins > 0 && (slot as usize) < self.scenario.nodes {
            self.pending_joins -= 1;
        }
    }

    /// Whether the starting network has finished joining.
    pub(crate) fn joined(&self) -> bool {
        self.pending_joins == 0
    }

    /// A random online, ready honest node other than `except`, drawn with the churn RNG:
    /// bounded tries, then a scan.
    fn random_ready_honest(&mut self, except: Option<u32>) -> Option<u32> {
        if self.honest.is_empty() {
            return None;
        }
        for _ in 0..64 {
            let s = self
                .honest
                .slot_at(self.churn_rng.random_range(0..self.honest.len()));
            if self.nodes[s as usize].ready && Some(s) != except {
                return Some(s);
            }
        }
        (0..self.honest.len())
            .map(|i| self.honest.slot_at(i))
            .find(|&s| self.nodes[s as usize].ready && Some(s) != except)
    }

    /// The contact of a slot.
    pub(crate) fn contact(&self, slot: u32) -> Contact<u32> {
        let n = &self.nodes[slot as usize];
        Contact::new(n.id, n.addr)
    }

    pub(crate) fn slot_of(&self, addr: u32) -> Option<u32> {
        if addr >> 24 == 0 {
            ((addr as usize) < self.nodes.len()).then_some(addr)
        } else {
            self.sybil_slots.get(&addr).copied()
        }
    }

    /// Mean number of routing-table entries on the other side of the partition line, over the
    /// live honest nodes: how much of the other side a node can still route to.
    pub(crate) fn routing_across(&self) -> f64 {
        let (mut entries, mut nodes) = (0usize, 0usize);
        for i in 0..self.honest.len() {
            let slot = self.honest.slot_at(i);
            let Some(engine) = self.nodes[slot as usize].engine.as_ref() else {
                continue;
            };
            let side = self.side(slot);
            nodes += 1;
            entries += engine
                .routing_peers()
                .filter_map(|c| self.slot_of(c.addr))
                .filter(|&s| self.side(s) != side)
                .count();
        }
        entries as f64 / nodes.max(1) as f64
    }

    /// Whether the partition separates `a` and `b` now.
    pub(crate) fn cut(&self, a: u32, b: u32) -> bool {
        self.partitioned && self.side(a) != self.side(b)
    }

    /// The side of the partition `slot` is on.
    pub(crate) fn side(&self, slot: u32) -> u8 {
        Geography::side(self.nodes[slot as usize].region)
    }

    fn lost(&mut self) -> bool {
        self.scenario.loss > 0.0 && self.net_rng.random::<f64>() < self.scenario.loss
    }

    pub(crate) fn delay(&mut self, from: u32, to: u32) -> Duration {
        let (a, b) = (&self.nodes[from as usize], &self.nodes[to as usize]);
        let rtt = self.geo.rtt(from, a.region, to, b.region);
        self.geo.one_way(rtt, &mut self.net_rng)
    }

    /// Live honest nodes now.
    pub(crate) fn honest_online(&self) -> usize {
        self.honest.len()
    }
}

/// The node id of slot `slot` in a run seeded with `seed`: as a real node's, a hash of a
/// (here made-up) public key.
fn node_id(seed: u64, slot: u32) -> Key {
    let mut material = [0u8; 12];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&slot.to_be_bytes());
    Key::for_peer(&material)
}
