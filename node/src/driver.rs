//! The driver: one task that owns the libp2p swarm and the DHT engine, and `select!`s over
//! commands from [`crate::Node`] handles, swarm events, finished store work and the engine's
//! timer. It makes no protocol decision: it feeds the engine and carries out what it says.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_dht::{
    Ban, ChunkOutcome, Contact, Dht, Event, FetchError, FetchId, Key, Offence, ProofOutcome,
    QueryError, QueryId, QueryResult, RequestBody, RequestId, ResponseBody, SignedRecord,
    Timestamp, proof,
};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, ping};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use crate::protocol::{
    Behaviour, BehaviourEvent, ChunkRequest, ChunkResponse, PeerAddr, is_shareable, node_id,
};
use crate::records::DiskRecordStore;
use crate::store::{Reason, Store};
use crate::wire::{Frame, WireError};

/// Commands queued from handles to the driver at most.
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Finished store jobs queued at most.
const DONE_QUEUE: usize = 256;
/// Replica copies (see [`cairn_dht::Event::Replicate`]) in flight at once.
pub(crate) const REPAIR_CONCURRENCY: usize = 4;
/// Inbound chunk requests being served at once (disk work, up to a megabyte each); beyond it a
/// request is refused as busy and the asker tries another holder. Per peer, libp2p's stream
/// limit per connection applies too.
pub(crate) const INBOUND_CHUNK_CONCURRENCY: usize = 32;

/// The engine's clock: wall time at start plus a monotonic clock, so it never goes backwards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_unix: Timestamp,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start: Instant::now(),
            start_unix: Timestamp::from_unix(unix),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.start_unix + self.start.elapsed()
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.start + t.saturating_duration_since(self.start_unix)
    }
}

/// Where a chunk should go, as the engine decided.
#[derive(Debug)]
pub(crate) struct Placement {
    pub(crate) peers: Vec<PeerAddr>,
}

/// Why a transfer with a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("peer does not have the chunk")]
    NotFound,
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Network(String),
    #[error("unexpected answer")]
    Protocol,
}

/// What the network looks like from here.
#[derive(Clone, Debug)]
pub struct NetworkStatus {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses it listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers in the DHT routing table.
    pub routing_table: usize,
    /// Peers with an open connection.
    pub connected: usize,
    /// Times a peer was penalised for chunk bytes that did not match their id (in answer to a
    /// fetch or as a replica copy) or for a wrong proof of holding a chunk.
    pub penalised: u64,
    /// Peers banned now for misbehaviour (see [`cairn_dht::Offence`]).
    pub banned: usize,
    /// What the repair audit and handoffs found and did.
    pub repair: cairn_dht::RepairStats,
    /// Bytes of chunk copies sent to peers that lacked them (repair traffic) since start.
    pub repair_bytes_sent: u64,
    /// Peers each chunk is stored on.
    pub replication: usize,
    /// Reachability: AutoNAT's finding, external and relayed addresses, hole punches.
    pub nat: crate::nat::NatStatus,
    /// The network it is on (`public`, or a private network's name).
    pub network: String,
    /// Requests from peers refused by a rate limit since start.
    pub rate_limited: u64,
}

/// A peer in the routing table.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its id.
    pub peer_id: PeerId,
    /// Its address.
    pub addr: Multiaddr,
    /// Smoothed round trip, once measured.
    pub rtt: Option<Duration>,
    /// Whether a connection is open.
    pub connected: bool,
    /// Whether that connection goes through a relay (no direct one yet).
    pub relayed: bool,
}

type Reply<T> = oneshot::Sender<T>;

pub(crate) enum Command {
    Bootstrap {
        seeds: Vec<PeerAddr>,
        reply: Reply<Result<usize, QueryError>>,
    },
    Place {
        key: Key,
        reply: Reply<Result<Placement, QueryError>>,
    },
    /// Starts an engine fetch of the content under `root`, announced when complete if
    /// `announce`; its chunks arrive on the receiver (see [`FetchItem`]).
    Fetch {
        root: Option<Key>,
        announce: bool,
        reply: Reply<Result<(FetchId, mpsc::Receiver<FetchItem>), QueryError>>,
    },
    /// Adds chunks to a fetch; the reply is the index of the first.
    AddChunks {
        fetch: FetchId,
        chunks: Vec<Key>,
        reply: Reply<Option<u64>>,
    },
    /// The get used chunk `index`.
    ReleaseChunk {
        fetch: FetchId,
        index: u64,
    },
    /// The get is over (done or abandoned).
    EndFetch {
        fetch: FetchId,
    },
    Announce {
        key: Key,
    },
    /// Announce `key` in the background, paced by the engine.
    AnnounceLater {
        key: Key,
    },
    Hold {
        key: Key,
    },
    Release {
        keys: Vec<Key>,
    },
    SendChunk {
        to: PeerAddr,
        id: Key,
        bytes: Vec<u8>,
        reply: Reply<Result<(), TransferError>>,
    },
    KeepChunk {
        at: PeerAddr,
        id: Key,
        reply: Reply<Result<(), TransferError>>,
    },
    /// Ask `peer` to prove it holds `id`, expecting `expected`: the proof over this node's own
    /// copy, `None` if it has none left. The outcome goes to `reply` if given (a health
    /// check), else to the engine (its challenge).
    Prove {
        peer: Contact<PeerAddr>,
        id: Key,
        nonce: [u8; 32],
        expected: Option<[u8; 32]>,
        reply: Option<Reply<ProofOutcome>>,
    },
    /// Every holder of `key` among its closest peers ([`Dht::find_all_holders`]).
    FindAllHolders {
        key: Key,
        reply: Reply<Result<Vec<Contact<PeerAddr>>, QueryError>>,
    },
    PutRecord {
        record: SignedRecord,
        reply: Reply<Result<usize, QueryError>>,
    },
    GetRecord {
        key: Key,
        reply: Reply<Result<Option<SignedRecord>, QueryError>>,
    },
    /// Which of `keys` this node keeps as a replica (one of the `replication` closest).
    Responsible {
        keys: Vec<Key>,
        reply: Reply<Vec<Key>>,
    },
    Status {
        reply: Reply<NetworkStatus>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    /// The addresses this node can be reached at, best first: external (confirmed by AutoNAT
    /// or mapped by UPnP), relayed, then listen addresses.
    Addresses {
        reply: Reply<Vec<Multiaddr>>,
    },
    /// Addresses to dial `peer` at, beside those already known.
    AddAddresses {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A query waiting for its engine event.
enum Waiter {
    Bootstrap(Reply<Result<usize, QueryError>>),
    Place(Reply<Result<Placement, QueryError>>),
    PutRecord(Reply<Result<usize, QueryError>>),
    GetRecord(Reply<Result<Option<SignedRecord>, QueryError>>),
    Holders(Reply<Result<Vec<Contact<PeerAddr>>, QueryError>>),
    Background,
}

/// Store work done off the driver task, handed back to answer a peer.
enum Done {
    Respond(ResponseChannel<ChunkResponse>, ChunkResponse),
    /// An answer about chunk `id` that tells whether this node has it.
    Stored(ResponseChannel<ChunkResponse>, Key, ChunkResponse),
    /// A DHT answer that waited for a small chunk to go in it.
    Kad(
        ResponseChannel<cairn_dht::Response<PeerAddr>>,
        cairn_dht::Response<PeerAddr>,
    ),
}

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    engine: Dht<PeerAddr, DiskRecordStore>,
    store: Store,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    waiters: HashMap<QueryId, Waiter>,
    kad_out: HashMap<OutboundRequestId, KadSent>,
    chunk_out: HashMap<OutboundRequestId, ChunkWaiter>,
    /// Where each engine fetch delivers its chunks.
    fetches: HashMap<FetchId, mpsc::Sender<FetchItem>>,
    /// A dialable address per peer: what identify reported, or what we dialed.
    listen: HashMap<PeerId, Multiaddr>,
    /// The remote address of a connected peer, if no better one is known.
    remote: HashMap<PeerId, Multiaddr>,
    /// The IP a connected peer's latest connection came from or went to: what the engine is
    /// told, for its per-prefix caps and bans, rather than an address the peer claims.
    observed: HashMap<PeerId, IpAddr>,
    penalised: u64,
    /// Commands to ourselves, for replica copies running on their own tasks. Weak, so that the
    /// driver still stops when the last handle is dropped.
    self_tx: mpsc::WeakSender<Command>,
    repair_permits: Arc<Semaphore>,
    /// Bytes of replica copies sent, counted by the copying tasks.
    repair_bytes: Arc<AtomicU64>,
    inbound_permits: Arc<Semaphore>,
    /// This node's name keys: the engine asks for their records to be signed again before they
    /// lapse.
    keys: Arc<crate::keys::Keyring>,
    /// Peers banned by the engine, by node id, until it lifts the ban.
    banned: HashMap<Key, PeerId>,
    /// Reachability: AutoNAT, relays, hole punching.
    nat: crate::nat::Nat,
    /// identify's protocol version of this node's network: a peer announcing another is on
    /// another network and is dropped.
    identify_version: String,
    metrics: crate::metrics::Live,
}

enum ChunkWaiter {
    Send(Reply<Result<(), TransferError>>),
    /// A challenge: the proof that would match this node's copy, and who wants the outcome
    /// (the engine if `None`).
    Prove {
        id: Key,
        peer: Key,
        expected: [u8; 32],
        reply: Option<Reply<ProofOutcome>>,
    },
    /// A request an engine fetch asked for.
    Engine {
        fetch: FetchId,
        index: u64,
        chunk: Key,
    },
}

/// A DHT request in flight: the engine's id for it, and the request, kept to send it once more
/// when the connection it went out on closes while another to the same peer stays open.
struct KadSent {
    id: RequestId,
    request: cairn_dht::Request,
    resent: bool,
}

/// What an engine fetch delivers to its get.
#[derive(Debug)]
pub(crate) enum FetchItem {
    /// Chunk `index`, verified against its id.
    Chunk { index: u64, bytes: Vec<u8> },
    /// The fetch gave up.
    Failed(FetchError),
}

/// What the driver uses besides the swarm, the engine and the store.
pub(crate) struct Services {
    /// The node's signing keys.
    pub(crate) keys: Arc<crate::keys::Keyring>,
    /// NAT traversal state: reachability, relay reservations, hole punches.
    pub(crate) nat: crate::nat::Nat,
    /// The identify protocol version, which names the network.
    pub(crate) identify_version: String,
    /// Counters and gauges the `/metrics` endpoint reads.
    pub(crate) metrics: crate::metrics::Live,
}

impl Driver {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        engine: Dht<PeerAddr, DiskRecordStore>,
        store: Store,
        clock: Clock,
        commands: mpsc::Receiver<Command>,
        self_tx: mpsc::WeakSender<Command>,
        services: Services,
    ) -> Self {
        let Services {
            keys,
            nat,
            identify_version,
            metrics,
        } = services;
        let (done_tx, done_rx) = mpsc::channel(DONE_QUEUE);
        Self {
            swarm,
            engine,
            store,
            clock,
            commands,
            done_tx,
            done_rx,
            waiters: HashMap::new(),
            kad_out: HashMap::new(),
            chunk_out: HashMap::new(),
            fetches: HashMap::new(),
            listen: HashMap::new(),
            remote: HashMap::new(),
            observed: HashMap::new(),
            penalised: 0,
            self_tx,
            repair_permits: Arc::new(Semaphore::new(REPAIR_CONCURRENCY)),
            repair_bytes: Arc::new(AtomicU64::new(0)),
            inbound_permits: Arc::new(Semaphore::new(INBOUND_CHUNK_CONCURRENCY)),
            keys,
            banned: HashMap::new(),
            nat,
            identify_version,
            metrics,
        }
    }

    /// Runs until a shutdown command or until every handle is dropped.
    pub(crate) async fn run(mut self) {
        let timer = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(timer);
        loop {
            self.flush();
            if let Some(t) = self.engine.poll_timeout() {
                timer.as_mut().reset(self.clock.instant(t).into());
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                () = &mut timer => {
                    let now = self.clock.now();
                    self.engine.handle_timeout(now);
                }
            }
        }
    }

    /// Drains the engine: sends its requests, acts on its events.
    fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            let peer = t.to.addr.peer;
            if !self.swarm.is_connected(&peer) {
                self.swarm.add_peer_address(peer, t.to.addr.addr.clone());
            }
            self.kad_send(
                peer,
                KadSent {
                    id: t.id,
                    request: t.request,
                    resent: false,
                },
            );
        }
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::QueryFinished { id, result, stats } => {
                    trace!(?id, ?stats, "query finished");
                    let kind = crate::metrics::Kind {
                        kind: query_kind(&result).into(),
                    };
                    self.metrics.lookups.get_or_create(&kind).inc();
                    self.metrics
                        .lookup_seconds
                        .get_or_create(&kind)
                        .observe(stats.duration.as_secs_f64());
                    self.on_query_finished(id, result);
                }
                Event::PeerAdded { peer } => debug!(peer = %peer.addr.peer, "routing table: added"),
                Event::PeerRemoved { peer } => {
                    debug!(peer = %peer.addr.peer, "routing table: removed");
                    if !self.swarm.is_connected(&peer.addr.peer) {
                        self.listen.remove(&peer.addr.peer);
                    }
                }
                Event::RecordStored { key, .. } => debug!(%key, "stored a record for a peer"),
                Event::Banned { peer, ban } => self.ban(peer, ban),
                Event::BanLifted { peer } => {
                    if let Some(peer) = self.banned.remove(&peer) {
                        debug!(%peer, "ban lifted");
                        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    }
                }
                Event::RenewRecord { record, ttl } => self.renew(record, ttl),
                Event::Replicate { key, to } => self.replicate(key, to.addr),
                Event::Challenge { key, peer, nonce } => self.challenge(key, peer, nonce),
                Event::Release { key } => {
                    // Handed over: the copy stays as evictable cache (pinned chunks stay pinned).
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || store.remove_reason(&key, Reason::Replica));
                }
                Event::FetchChunk {
                    fetch,
                    index,
                    chunk,
                    from,
                } => {
                    if self.fetches.get(&fetch).is_none_or(|tx| tx.is_closed()) {
                        // The get went away without ending its fetch.
                        self.fetches.remove(&fetch);
                        self.engine.end_fetch(self.clock.now(), fetch);
                        continue;
                    }
                    debug!(fetch = fetch.as_u64(), index, %chunk, peer = %from.addr.peer, "fetch: asking a holder");
                    let waiter = ChunkWaiter::Engine {
                        fetch,
                        index,
                        chunk,
                    };
                    self.chunk_request(from.addr, ChunkRequest::Get { id: chunk }, waiter);
                }
                Event::ChunkInline {
                    fetch,
                    index,
                    chunk,
                    from,
                    bytes,
                } => {
                    debug!(fetch = fetch.as_u64(), index, %chunk, peer = %from.addr.peer, "fetch: a holder's lookup answer brought the chunk");
                    let response = Some(ChunkResponse::Data(bytes));
                    self.on_fetched(from.addr.peer, fetch, index, chunk, response);
                }
                Event::FetchFailed { fetch, error } => {
                    debug!(fetch = fetch.as_u64(), %error, "fetch: gave up");
                    if let Some(tx) = self.fetches.remove(&fetch) {
                        let _ = tx.try_send(FetchItem::Failed(error));
                    }
                    self.engine.end_fetch(self.clock.now(), fetch);
                }
            }
        }
    }

    /// Enforces a ban the engine decided: the peer is disconnected and refused on reconnect
    /// (libp2p's block list), and so is its address prefix if the ban covers it.
    fn ban(&mut self, id: Key, ban: Ban) {
        let Some(peer) = self.peer_of_id(&id) else {
            return; // never connected: the engine refuses it anyway
        };
        warn!(%peer, "banned a peer for misbehaviour");
        self.banned.insert(id, peer);
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        if let Some(prefix) = ban.prefix {
            let until = self.clock.instant(ban.until);
            self.swarm.behaviour_mut().per_ip.ban(prefix, until);
        }
        self.listen.remove(&peer);
    }

    /// The libp2p peer whose node id is `id`, among the peers this driver knows of.
    fn peer_of_id(&self, id: &Key) -> Option<PeerId> {
        self.observed
            .keys()
            .chain(self.listen.keys())
            .chain(self.remote.keys())
            .find(|p| node_id(p) == *id)
            .copied()
    }

    /// `peer` sent bytes that are not a message (garbage, or larger than the protocol allows):
    /// the engine counts it toward a ban, and the stream is dropped unanswered.
    fn on_malformed(&mut self, now: Timestamp, peer: PeerId, error: &WireError) {
        debug!(%peer, %error, "peer sent a malformed message");
        let ip = self.observed.get(&peer).copied();
        self.engine
            .report(now, &node_id(&peer), ip, Offence::Malformed);
    }

    /// Signs a record of one of this node's names again with a later expiry (the same lifetime
    /// from now) and a higher sequence, and publishes it; a record under a key this node does
    /// not hold (any more) is not ours to renew.
    fn renew(&mut self, record: SignedRecord, ttl: Duration) {
        let Some(secret) = self.keys.secret_for(&record.public_key) else {
            return;
        };
        let now = self.clock.now();
        // For the lifetime it was published with (which its sequence records), or `ttl`, the
        // life the engine saw it start with, for a record whose sequence is no signing time.
        let renewed = crate::names::resign(&secret, &record, now, ttl);
        match self.engine.put_record(now, renewed) {
            Ok(_) => debug!(key = %record.key(), "renewed a name record of this node"),
            Err(e) => warn!(key = %record.key(), %e, "could not renew a name record of this node"),
        }
    }

    fn on_query_finished(&mut self, id: QueryId, result: QueryResult<PeerAddr>) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        let addrs = |v: Vec<Contact<PeerAddr>>| v.into_iter().map(|c| c.addr).collect::<Vec<_>>();
        match (waiter, result) {
            (Waiter::Bootstrap(reply), QueryResult::Bootstrap { closest }) => {
                let _ = reply.send(Ok(closest.len()));
            }
            // Whether this node keeps a replica is asked when a put pins (Command::Responsible).
            (Waiter::Place(reply), QueryResult::Placement { peers, .. }) => {
                let _ = reply.send(Ok(Placement {
                    peers: addrs(peers),
                }));
            }
            (Waiter::PutRecord(reply), QueryResult::PutRecord { stored, .. }) => {
                let _ = reply.send(Ok(stored));
            }
            (Waiter::GetRecord(reply), QueryResult::GetRecord { record, .. }) => {
                let _ = reply.send(Ok(record));
            }
            (Waiter::Holders(reply), QueryResult::Holders { holders, .. }) => {
                let _ = reply.send(Ok(holders));
            }
            (Waiter::Background, _) => {}
            (_, other) => warn!(?other, "query finished with an unexpected result"),
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Bootstrap { seeds, reply } => {
                for s in &seeds {
                    self.listen.insert(s.peer, s.addr.clone());
                }
                let contacts = seeds.into_iter().map(|a| Contact::new(node_id(&a.peer), a));
                let started = self.engine.bootstrap(now, contacts);
                self.await_query(started, reply, Waiter::Bootstrap);
            }
            Command::Place { key, reply } => {
                let started = self.engine.place(now, key);
                self.await_query(started, reply, Waiter::Place);
            }
            Command::Fetch {
                root,
                announce,
                reply,
            } => {
                // Room for the engine's window (chunks in flight or unreleased) twice over, for
                // late duplicates after a failover.
                let queue = 2 * self.engine.config().fetch.window.max(1) + 2;
                let started = self.engine.start_fetch(root, announce).map(|id| {
                    let (tx, rx) = mpsc::channel(queue);
                    self.fetches.insert(id, tx);
                    (id, rx)
                });
                let _ = reply.send(started);
            }
            Command::AddChunks {
                fetch,
                chunks,
                reply,
            } => {
                let _ = reply.send(self.engine.add_chunks(now, fetch, chunks));
            }
            Command::ReleaseChunk { fetch, index } => {
                self.engine.release_chunk(now, fetch, index);
            }
            Command::EndFetch { fetch } => {
                self.fetches.remove(&fetch);
                self.engine.end_fetch(now, fetch);
            }
            Command::Announce { key } => {
                if let Ok(id) = self.engine.announce(now, key) {
                    self.waiters.insert(id, Waiter::Background);
                }
            }
            Command::AnnounceLater { key } => self.engine.announce_later(now, key),
            Command::Hold { key } => self.engine.hold(key),
            Command::Release { keys } => {
                for key in &keys {
                    self.engine.release(key);
                    // A root evicted from the cache is no longer offered to the network.
                    self.engine.stop_announcing(key);
                }
            }
            Command::SendChunk {
                to,
                id,
                bytes,
                reply,
            } => {
                self.chunk_request(
                    to,
                    ChunkRequest::Store { id, bytes },
                    ChunkWaiter::Send(reply),
                );
            }
            Command::KeepChunk { at, id, reply } => {
                self.chunk_request(at, ChunkRequest::Keep { id }, ChunkWaiter::Send(reply));
            }
            Command::Prove {
                peer,
                id,
                nonce,
                expected,
                reply,
            } => match expected {
                None => self.on_proof(id, peer.id, ProofOutcome::Unchecked, reply),
                Some(expected) => self.chunk_request(
                    peer.addr,
                    ChunkRequest::Prove { id, nonce },
                    ChunkWaiter::Prove {
                        id,
                        peer: peer.id,
                        expected,
                        reply,
                    },
                ),
            },
            Command::FindAllHolders { key, reply } => {
                let started = self.engine.find_all_holders(now, key);
                self.await_query(started, reply, Waiter::Holders);
            }
            Command::PutRecord { record, reply } => {
                let started = self.engine.put_record(now, record);
                self.await_query(started, reply, Waiter::PutRecord);
            }
            Command::GetRecord { key, reply } => {
                let started = self.engine.get_record(now, key);
                self.await_query(started, reply, Waiter::GetRecord);
            }
            Command::Responsible { mut keys, reply } => {
                keys.retain(|k| self.engine.is_replica_holder(k));
                let _ = reply.send(keys);
            }
            Command::Status { reply } => {
                let _ = reply.send(NetworkStatus {
                    peer_id: *self.swarm.local_peer_id(),
                    listen_addrs: self.swarm.listeners().cloned().collect(),
                    routing_table: self.engine.routing_table_len(),
                    connected: self.swarm.connected_peers().count(),
                    penalised: self.penalised,
                    banned: self.engine.banned_peers(self.clock.now()).len(),
                    repair: self.engine.repair_stats(),
                    repair_bytes_sent: self.repair_bytes.load(Ordering::Relaxed),
                    replication: self.engine.config().replication,
                    nat: self.nat.status(&self.swarm),
                    rate_limited: self.engine.rate_limited(),
                    network: network_name(&self.identify_version),
                });
            }
            Command::Peers { reply } => {
                let peers = self
                    .engine
                    .routing_peers()
                    .map(|c| PeerInfo {
                        peer_id: c.addr.peer,
                        addr: c.addr.addr.clone(),
                        rtt: self
                            .engine
                            .peer_score(&c.id)
                            .and_then(|s| s.rtt)
                            .map(|r| r.srtt()),
                        connected: self.swarm.is_connected(&c.addr.peer),
                        relayed: self.nat.is_relayed(&c.addr.peer),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Addresses { reply } => {
                let status = self.nat.status(&self.swarm);
                let mut addrs: Vec<Multiaddr> = status.external_addrs;
                addrs.extend(status.relayed_addrs);
                addrs.extend(self.swarm.listeners().filter(|a| is_shareable(a)).cloned());
                // Loopback addresses last: they work only on this machine.
                addrs.sort_by_key(crate::nat::is_loopback);
                addrs.dedup();
                let _ = reply.send(addrs);
            }
            Command::AddAddresses { peer, addrs } => {
                if let Some(first) = addrs.first() {
                    self.listen.entry(peer).or_insert_with(|| first.clone());
                }
                for a in addrs {
                    self.swarm.add_peer_address(peer, a);
                }
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Keeps `reply` until the query ends, or answers at once if it could not start.
    fn await_query<T>(
        &mut self,
        started: Result<QueryId, cairn_dht::QueryError>,
        reply: Reply<Result<T, QueryError>>,
        waiter: fn(Reply<Result<T, QueryError>>) -> Waiter,
    ) {
        match started {
            Ok(id) => {
                self.waiters.insert(id, waiter(reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Sends an engine request over the DHT protocol.
    fn kad_send(&mut self, peer: PeerId, sent: KadSent) {
        let out = self
            .swarm
            .behaviour_mut()
            .kad
            .send_request(&peer, Frame::Valid(sent.request.clone()));
        self.kad_out.insert(out, sent);
    }

    /// Sends a chunk protocol request to `to`, its answer going to `waiter`.
    fn chunk_request(&mut self, to: PeerAddr, request: ChunkRequest, waiter: ChunkWaiter) {
        if let ChunkRequest::Store { bytes, .. } = &request {
            self.metrics.chunk_bytes_out.inc_by(bytes.len() as u64);
        }
        self.swarm.add_peer_address(to.peer, to.addr);
        let out = self
            .swarm
            .behaviour_mut()
            .chunk
            .send_request(&to.peer, Frame::Valid(request));
        self.chunk_out.insert(out, waiter);
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = self.clock.now();
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(now, event),
            SwarmEvent::Behaviour(BehaviourEvent::Chunk(event)) => self.on_chunk(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.engine.handle_rtt(now, &node_id(&peer), rtt);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identify(now, peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => {
                self.nat.on_autonat(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.nat.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.nat.on_relay_server(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                self.nat.on_dcutr(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(e)) => self.nat.on_upnp(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.on_mdns(now, e),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                self.nat
                    .on_connection(peer_id, connection_id, endpoint.is_relayed());
                let addr = endpoint.get_remote_address().clone();
                if let Some(ip) = crate::limits::ip_of(&addr) {
                    self.observed.insert(peer_id, ip);
                }
                if endpoint.is_dialer() {
                    self.listen.entry(peer_id).or_insert(addr);
                } else {
                    self.remote.insert(peer_id, addr);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.nat.on_connection_closed(peer_id, connection_id);
                if num_established > 0 {
                    return;
                }
                self.nat.on_disconnected(&mut self.swarm, peer_id);
                self.remote.remove(&peer_id);
                self.observed.remove(&peer_id);
                let id = node_id(&peer_id);
                if !self.engine.contains_peer(&id) {
                    self.listen.remove(&peer_id);
                } else if let Some(cause) = cause {
                    // Broken, not closed for being idle: is the peer still there?
                    debug!(peer = %peer_id, %cause, "connection lost; checking the peer");
                    self.engine.connection_lost(now, &id);
                }
            }
            SwarmEvent::NewListenAddr {
                address,
                listener_id,
            } => {
                debug!(%address, "listening");
                self.nat
                    .on_new_listen_addr(&mut self.swarm, listener_id, &address);
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.nat.on_listener_closed(&mut self.swarm, listener_id)
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "reachable at an external address")
            }
            other => trace!(?other, "swarm event"),
        }
    }

    /// What a peer said about itself: its network, addresses and protocols.
    fn on_identify(&mut self, now: Timestamp, peer: PeerId, info: identify::Info) {
        if info.protocol_version != self.identify_version {
            debug!(%peer, theirs = %info.protocol_version, "a peer of another network; disconnecting");
            self.engine.connection_lost(now, &node_id(&peer));
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        let observed = self.observed.get(&peer).copied();
        let best = best_address(&info.listen_addrs, observed);
        for a in info
            .listen_addrs
            .iter()
            .filter(|a| is_shareable(a) || crate::nat::is_circuit(a))
        {
            self.swarm.add_peer_address(peer, a.clone());
        }
        let direct = best.as_ref().filter(|a| !crate::nat::is_circuit(a));
        self.nat.on_identify(&mut self.swarm, peer, &info, direct);
        if let Some(best) = best {
            self.listen.insert(peer, best);
        }
    }

    /// mDNS found peers on the local network: join through those not known yet.
    fn on_mdns(&mut self, now: Timestamp, event: libp2p::mdns::Event) {
        let libp2p::mdns::Event::Discovered(found) = event else {
            return;
        };
        let mut seeds: HashMap<PeerId, Multiaddr> = HashMap::new();
        for (peer, addr) in found {
            if peer == *self.swarm.local_peer_id() {
                continue;
            }
            self.swarm.add_peer_address(peer, addr.clone());
            seeds.entry(peer).or_insert(addr);
        }
        let new: Vec<Contact<PeerAddr>> = seeds
            .into_iter()
            .filter(|(peer, _)| !self.engine.contains_peer(&node_id(peer)))
            .map(|(peer, addr)| {
                info!(%peer, %addr, "found a peer on the local network (mDNS)");
                self.listen.entry(peer).or_insert_with(|| addr.clone());
                Contact::new(node_id(&peer), PeerAddr { peer, addr })
            })
            .collect();
        if !new.is_empty() {
            let _ = self.engine.bootstrap(now, new);
        }
    }

    fn on_kad(
        &mut self,
        now: Timestamp,
        event: request_response::Event<Frame<cairn_dht::Request>, cairn_dht::Response<PeerAddr>>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: Frame::Invalid(e),
                    ..
                } => self.on_malformed(now, peer, &e),
                request_response::Message::Request {
                    request: Frame::Valid(request),
                    channel,
                    ..
                } => {
                    // The address the peer listens on, unless its IP is not the one the connection
                    // came from (a claim the engine's per-prefix cap must not trust): then the
                    // connection's own. A relayed address is the exception: a node behind NAT
                    // is reachable only so, and it counts under the relay's prefix.
                    let observed = self.observed.get(&peer).copied();
                    let claimed = self.listen.get(&peer).filter(|a| {
                        crate::nat::is_circuit(a)
                            || observed.is_none_or(|ip| crate::limits::ip_of(a) == Some(ip))
                    });
                    let Some(addr) = claimed
                        .or_else(|| self.remote.get(&peer))
                        .or_else(|| self.listen.get(&peer))
                        .cloned()
                    else {
                        return; // no address at all: cannot happen on an open connection
                    };
                    let from = Contact::new(node_id(&peer), PeerAddr { peer, addr });
                    let with_chunk = match &request.body {
                        RequestBody::GetProviders {
                            key,
                            with_chunk: true,
                        } => Some(*key),
                        _ => None,
                    };
                    let response = self.engine.handle_request(now, from, request);
                    match (with_chunk, &response.body) {
                        (Some(key), ResponseBody::Providers { holds: true, .. }) => {
                            self.answer_with_chunk(key, channel, response);
                        }
                        _ => {
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .kad
                                .send_response(channel, response);
                        }
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(sent) = self.kad_out.remove(&request_id) {
                        self.engine.handle_response(now, sent.id, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                debug!(%peer, %error, "dht request failed");
                if let request_response::OutboundFailure::Io(e) = &error
                    && let Some(wire) = WireError::of(e)
                {
                    self.on_malformed(now, peer, wire);
                }
                let Some(sent) = self.kad_out.remove(&request_id) else {
                    return;
                };
                // One of several connections closed under the request, most often the relayed
                // one after hole punching made a direct one: the peer is fine, ask again there.
                if matches!(error, request_response::OutboundFailure::ConnectionClosed)
                    && !sent.resent
                    && self.swarm.is_connected(&peer)
                {
                    self.kad_send(
                        peer,
                        KadSent {
                            resent: true,
                            ..sent
                        },
                    );
                } else {
                    self.engine.handle_failure(now, sent.id);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound dht request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The answer (or, `None`, the failure) of a chunk request an engine fetch asked for: the
    /// bytes are verified here, handed to the get, and the outcome reported to the engine, which
    /// decides what happens next.
    fn on_fetched(
        &mut self,
        peer: PeerId,
        fetch: FetchId,
        index: u64,
        chunk: Key,
        response: Option<ChunkResponse>,
    ) {
        let outcome = match response {
            Some(ChunkResponse::Data(bytes)) if Key::hash(&bytes) == chunk => {
                self.metrics.chunk_bytes_in.inc_by(bytes.len() as u64);
                match self
                    .fetches
                    .get(&fetch)
                    .map(|tx| tx.try_send(FetchItem::Chunk { index, bytes }))
                {
                    Some(Ok(())) => ChunkOutcome::Ok,
                    // No room (the get is behind, or gone): not the holder's fault.
                    _ => ChunkOutcome::Dropped,
                }
            }
            Some(ChunkResponse::Data(_)) => {
                warn!(%peer, %chunk, "peer sent bytes that do not match the chunk id; penalising it");
                self.penalised += 1;
                ChunkOutcome::Corrupt
            }
            Some(ChunkResponse::NotFound) => ChunkOutcome::NotFound,
            Some(_) | None => ChunkOutcome::Failed,
        };
        debug!(fetch = fetch.as_u64(), index, %chunk, %peer, ?outcome, "fetch: a holder answered");
        let now = self.clock.now();
        self.engine
            .handle_chunk(now, fetch, index, &node_id(&peer), outcome);
    }

    fn on_chunk(&mut self, event: request_response::Event<Frame<ChunkRequest>, ChunkResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: Frame::Invalid(e),
                    ..
                } => {
                    let now = self.clock.now();
                    self.on_malformed(now, peer, &e);
                }
                request_response::Message::Request {
                    request: Frame::Valid(request),
                    channel,
                    ..
                } => self.serve_chunk(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => match (self.chunk_out.remove(&request_id), response) {
                    (
                        Some(ChunkWaiter::Engine {
                            fetch,
                            index,
                            chunk,
                        }),
                        response,
                    ) => self.on_fetched(peer, fetch, index, chunk, Some(response)),
                    (
                        Some(ChunkWaiter::Prove {
                            id,
                            peer,
                            expected,
                            reply,
                        }),
                        response,
                    ) => {
                        let outcome = match response {
                            ChunkResponse::Proof(p) if p == expected => ProofOutcome::Valid,
                            ChunkResponse::Proof(_) => ProofOutcome::Invalid,
                            ChunkResponse::NotFound => ProofOutcome::Missing,
                            // Busy, or an answer of another kind: no verdict this time.
                            _ => ProofOutcome::Unchecked,
                        };
                        self.on_proof(id, peer, outcome, reply);
                    }
                    (Some(ChunkWaiter::Send(reply)), ChunkResponse::Stored) => {
                        let _ = reply.send(Ok(()));
                    }
                    (Some(ChunkWaiter::Send(reply)), ChunkResponse::NotFound) => {
                        let _ = reply.send(Err(TransferError::NotFound));
                    }
                    (Some(ChunkWaiter::Send(reply)), ChunkResponse::Refused(why)) => {
                        let _ = reply.send(Err(TransferError::Refused(why)));
                    }
                    (Some(ChunkWaiter::Send(reply)), _) => {
                        let _ = reply.send(Err(TransferError::Protocol));
                    }
                    (None, _) => {}
                },
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let request_response::OutboundFailure::Io(e) = &error
                    && let Some(wire) = WireError::of(e)
                {
                    let now = self.clock.now();
                    self.on_malformed(now, peer, wire);
                }
                let e = TransferError::Network(error.to_string());
                match self.chunk_out.remove(&request_id) {
                    Some(ChunkWaiter::Engine {
                        fetch,
                        index,
                        chunk,
                    }) => self.on_fetched(peer, fetch, index, chunk, None),
                    Some(ChunkWaiter::Send(reply)) => {
                        let _ = reply.send(Err(e));
                    }
                    Some(ChunkWaiter::Prove {
                        id, peer, reply, ..
                    }) => self.on_proof(id, peer, ProofOutcome::Unreachable, reply),
                    None => {}
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound chunk request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Copies a chunk to a peer that is now among its closest, as the engine decided, off the
    /// driver task. At most [`REPAIR_CONCURRENCY`] copies are in flight; the rest wait their turn.
    fn replicate(&mut self, id: Key, to: PeerAddr) {
        let store = self.store.clone();
        let commands = self.self_tx.clone();
        let permits = self.repair_permits.clone();
        let sent = self.repair_bytes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let Some(commands) = commands.upgrade() else {
                return; // the node is shutting down
            };
            let peer = to.peer;
            // Several holders may decide to copy to the same peer: ask it to keep what it has
            // first.
            let (reply, has) = oneshot::channel();
            let at = to.clone();
            if commands
                .send(Command::KeepChunk { at, id, reply })
                .await
                .is_err()
            {
                return;
            }
            let outcome = if let Ok(Ok(())) = has.await {
                Ok(Ok(()))
            } else {
                let read = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.read_verified(&id)).await
                };
                let Ok(Ok(Some(bytes))) = read else {
                    return; // evicted or gone meanwhile: nothing to copy
                };
                sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let (reply, done) = oneshot::channel();
                if commands
                    .send(Command::SendChunk {
                        to,
                        id,
                        bytes,
                        reply,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                done.await
            };
            drop(commands);
            match outcome {
                Ok(Ok(())) => debug!(%id, %peer, "copied a chunk to a new closest peer"),
                Ok(Err(e)) => {
                    debug!(%id, %peer, %e, "could not copy a chunk to a new closest peer")
                }
                Err(_) => {}
            }
        });
    }

    /// What came of a challenge: to the engine if it asked, else to `reply`; a wrong proof
    /// costs the peer its standing either way.
    fn on_proof(
        &mut self,
        id: Key,
        peer: Key,
        outcome: ProofOutcome,
        reply: Option<Reply<ProofOutcome>>,
    ) {
        let now = self.clock.now();
        if outcome == ProofOutcome::Invalid {
            self.penalised += 1;
        }
        match reply {
            None => self.engine.handle_proof(now, id, &peer, outcome),
            Some(reply) => {
                if outcome == ProofOutcome::Invalid {
                    self.engine.report(now, &peer, None, Offence::WrongProof);
                }
                let _ = reply.send(outcome);
            }
        }
    }

    /// Reads this node's copy of `id` off the driver task and computes the proof that `peer`'s
    /// answer must match, then asks `peer` (an engine challenge, see `cairn_dht::proof`).
    fn challenge(&mut self, id: Key, peer: Contact<PeerAddr>, nonce: [u8; 32]) {
        let store = self.store.clone();
        let commands = self.self_tx.clone();
        tokio::spawn(async move {
            let expected = tokio::task::spawn_blocking(move || match store.read_verified(&id) {
                Ok(Some(bytes)) => Some(proof(&nonce, &bytes)),
                _ => None,
            })
            .await
            .ok()
            .flatten();
            if let Some(commands) = commands.upgrade() {
                let _ = commands
                    .send(Command::Prove {
                        peer,
                        id,
                        nonce,
                        expected,
                        reply: None,
                    })
                    .await;
            }
        });
    }

    /// Answers a chunk request off the driver task (disk work), handing the answer back.
    fn serve_chunk(
        &mut self,
        peer: PeerId,
        request: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
    ) {
        let store = self.store.clone();
        let done = self.done_tx.clone();
        let now = self.clock.now();
        if !self.engine.allow_chunk_request(now, &node_id(&peer)) {
            let limited =
                ChunkResponse::Refused("rate limited: too many chunk requests; slow down".into());
            let _ = self
                .swarm
                .behaviour_mut()
                .chunk
                .send_response(channel, limited);
            return;
        }
        let Ok(permit) = self.inbound_permits.clone().try_acquire_owned() else {
            let busy = ChunkResponse::Refused("busy; try another holder".into());
            let _ = self
                .swarm
                .behaviour_mut()
                .chunk
                .send_response(channel, busy);
            return;
        };
        match request {
            ChunkRequest::Get { id } => {
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let response = match store.read_verified(&id) {
                        Ok(Some(bytes)) => ChunkResponse::Data(bytes),
                        Ok(None) => ChunkResponse::NotFound,
                        Err(e) => {
                            warn!(%e, "reading a chunk to serve failed");
                            ChunkResponse::NotFound
                        }
                    };
                    let _ = done.blocking_send(Done::Stored(channel, id, response));
                });
            }
            ChunkRequest::Keep { id } => {
                if !self.engine.is_responsible(&id) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .chunk
                        .send_response(channel, ChunkResponse::NotFound);
                    return;
                }
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    // Only a copy we now keep as a replica counts: a cached one may be evicted,
                    // and one whose file is gone is no copy at all.
                    let response = if store.is_missing(&id) {
                        ChunkResponse::NotFound
                    } else {
                        match store.add_reason(&id, Reason::Replica) {
                            Ok(true) => ChunkResponse::Stored,
                            _ => ChunkResponse::NotFound,
                        }
                    };
                    let _ = done.blocking_send(Done::Stored(channel, id, response));
                });
            }
            ChunkRequest::Prove { id, nonce } => {
                // Only a copy kept for good (pinned, or a replica) is proven: a cached one may
                // be evicted. Answering changes nothing: a challenger whose proof comes back
                // missing offers a copy (`Keep`), which makes a responsible peer keep it.
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let kept = !store.is_missing(&id) && matches!(store.keeps(&id), Ok(true));
                    let response = match kept.then(|| store.read_verified(&id)) {
                        Some(Ok(Some(bytes))) => ChunkResponse::Proof(proof(&nonce, &bytes)),
                        _ => ChunkResponse::NotFound,
                    };
                    let _ = done.blocking_send(Done::Respond(channel, response));
                });
            }
            ChunkRequest::Store { id, bytes } => {
                self.metrics.chunk_bytes_in.inc_by(bytes.len() as u64);
                let now = self.clock.now();
                let from = node_id(&peer);
                let ip = self.observed.get(&peer).copied();
                let refusal = if Key::hash(&bytes) != id {
                    self.penalised += 1;
                    self.engine.report(now, &from, ip, Offence::CorruptChunk);
                    Some("bytes do not hash to the chunk id")
                } else if !self.engine.allow_replica(now, &from, bytes.len()) {
                    Some("replica budget spent: this peer keeps no more copies from you for now")
                } else if !self.engine.is_responsible(&id) {
                    self.engine.report(now, &from, ip, Offence::JunkPush);
                    Some(
                        "this peer is not among the closest to the chunk; offer it to a closer one",
                    )
                } else {
                    None
                };
                if let Some(why) = refusal {
                    let refusal = ChunkResponse::Refused(why.into());
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .chunk
                        .send_response(channel, refusal);
                    return;
                }
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let response = match store.insert(&id, &bytes, Reason::Replica) {
                        Ok(_) => ChunkResponse::Stored,
                        Err(e) => ChunkResponse::Refused(e.to_string()),
                    };
                    let _ = done.blocking_send(Done::Stored(channel, id, response));
                });
            }
        }
    }

    /// Answers a fetch's lookup with the chunk `key` in it, if it is small enough
    /// ([`cairn_dht::MAX_INLINE_CHUNK`]) and intact here; read off the driver's task.
    fn answer_with_chunk(
        &mut self,
        key: Key,
        channel: ResponseChannel<cairn_dht::Response<PeerAddr>>,
        mut response: cairn_dht::Response<PeerAddr>,
    ) {
        // Bounded like serving a chunk: with no room, the answer goes without the bytes (the
        // fetch then asks over the chunk protocol).
        let Ok(permit) = self.inbound_permits.clone().try_acquire_owned() else {
            let _ = self
                .swarm
                .behaviour_mut()
                .kad
                .send_response(channel, response);
            return;
        };
        let (store, done) = (self.store.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let small = store
                .len_of(&key)
                .is_ok_and(|n| n.is_some_and(|n| n <= cairn_dht::MAX_INLINE_CHUNK as u64));
            if small
                && let Ok(Some(bytes)) = store.read_verified(&key)
                && let ResponseBody::Providers { chunk, .. } = &mut response.body
            {
                *chunk = Some(bytes);
            }
            let _ = done.blocking_send(Done::Kad(channel, response));
        });
    }

    fn on_done(&mut self, done: Done) {
        let (channel, response) = match done {
            Done::Kad(channel, response) => {
                if let ResponseBody::Providers {
                    chunk: Some(bytes), ..
                } = &response.body
                {
                    self.metrics.chunk_bytes_out.inc_by(bytes.len() as u64);
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .send_response(channel, response);
                return;
            }
            Done::Respond(channel, response) => (channel, response),
            Done::Stored(channel, id, response) => {
                if matches!(response, ChunkResponse::NotFound) && self.engine.holds(&id) {
                    // Noted as held, not here (its file was damaged and deleted): stop
                    // claiming it; the repair of the peers holding it too copies it back.
                    self.engine.release(&id);
                } else if matches!(response, ChunkResponse::Stored) {
                    // Kept at another peer's request (a push, or a repair's Keep): held, and
                    // unconfirmed until a third peer proves a copy too.
                    let now = self.clock.now();
                    self.engine.hold_pushed(now, id);
                }
                (channel, response)
            }
        };
        if let ChunkResponse::Data(bytes) = &response {
            self.metrics.chunk_bytes_out.inc_by(bytes.len() as u64);
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .chunk
            .send_response(channel, response);
    }
}

/// The address to record for a peer, out of those it listens on (identify): one at the IP its
/// connection comes from if any (it is not behind NAT from here), else a relayed one (it is
/// behind NAT and reserved a slot on a relay), else one that is not loopback; QUIC first in
/// each (one socket: the address a peer dials from is the one it listens on).
fn best_address(addrs: &[Multiaddr], observed: Option<IpAddr>) -> Option<Multiaddr> {
    let quic = |a: &Multiaddr| {
        a.iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1))
    };
    let pick = |class: &dyn Fn(&Multiaddr) -> bool| {
        let of: Vec<&Multiaddr> = addrs.iter().filter(|a| class(a)).collect();
        of.iter()
            .find(|a| quic(a))
            .or(of.first())
            .map(|a| (*a).clone())
    };
    let direct = |a: &Multiaddr| is_shareable(a);
    pick(&|a| direct(a) && observed.is_some() && crate::limits::ip_of(a) == observed)
        .or_else(|| pick(&crate::nat::is_circuit))
        .or_else(|| pick(&|a| direct(a) && !crate::nat::is_loopback(a)))
        .or_else(|| pick(&direct))
}

/// The network name in identify version `/cairn/<name>/1.0.0` (`public` for `/cairn/1.0.0`).
fn network_name(version: &str) -> String {
    let parts: Vec<&str> = version.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["cairn", name, _] => (*name).to_owned(),
        _ => "public".to_owned(),
    }
}

/// A lookup's kind, as a metric label.
fn query_kind(result: &QueryResult<PeerAddr>) -> &'static str {
    match result {
        QueryResult::Bootstrap { .. } => "bootstrap",
        QueryResult::FindNode { .. } => "find_node",
        QueryResult::GetRecord { .. } => "get_record",
        QueryResult::PutRecord { .. } => "put_record",
        QueryResult::Announce { .. } => "announce",
        QueryResult::Holders { .. } => "holders",
        QueryResult::Placement { .. } => "placement",
    }
}
