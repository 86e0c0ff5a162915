//! The public handle, [`Node`], and its builder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_dht::{Config, Dht, Key, RecordStore, SignedRecord};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identity, noise, tcp, yamux};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::ContentId;
use crate::driver::{COMMAND_QUEUE, Clock, Command, Driver, NetworkStatus, PeerInfo};
use crate::error::{NodeStopped, SpawnError};
use crate::keys::{Keyring, random_secret};
use crate::protocol::{Behaviour, PeerAddr, node_id, peer_of, without_peer};
use crate::records::DiskRecordStore;
use crate::store::{Store, StoreStats};

/// Default storage quota: 10 GiB.
pub const DEFAULT_QUOTA: u64 = 10 << 30;
/// How long a connection with no open stream is kept. libp2p closes idle connections at once by
/// default; DHT peers talk often enough that redialing would cost more than keeping them.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// The peer-to-peer port (TCP and QUIC) a node listens on by default, on every interface. When it
/// is taken the node takes a free one and keeps it for its next starts ([`PORT_FILE`]).
pub const DEFAULT_PORT: u16 = 5738;
/// Name of the file in the data directory that keeps the port a node listens on by default,
/// when it is not [`DEFAULT_PORT`].
pub const PORT_FILE: &str = "p2p-port";
/// Name of the identity key file in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// Name of the file holding the secret key of the node's own name, its key `self` (see
/// [`crate::Name`], [`crate::KeyName`]); the other named keys are in [`crate::KEYS_DIR`].
pub const NAME_KEY_FILE: &str = "name.key";

/// Configures and starts a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    pub(crate) data_dir: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    quota: u64,
    dht: Config,
    nat: crate::nat::NatConfig,
    network: crate::protocol::Network,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            quota: DEFAULT_QUOTA,
            dht: Config::default(),
            nat: crate::nat::NatConfig::default(),
            network: crate::protocol::Network::public(),
        }
    }
}

impl NodeBuilder {
    /// Keeps the identity, chunks and index under `dir` (created if missing). Without a data
    /// directory the node keeps everything in memory and has a new identity each start.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listens on `addr` (e.g. `/ip4/127.0.0.1/udp/0/quic-v1`); may be called several times.
    /// Default: QUIC and TCP on every interface, on [`DEFAULT_PORT`] (or, when that is taken, a
    /// free port, kept in the data directory for the next starts).
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Joins the network through `addr`, which must end with `/p2p/<peer id>`.
    pub fn bootstrap(mut self, addr: Multiaddr) -> Self {
        self.bootstrap.push(addr);
        self
    }

    /// Number of peers each chunk is stored on. Default [`Config::replication`].
    pub fn replication(mut self, n: usize) -> Self {
        self.dht.replication = n.max(1);
        self
    }

    /// Bytes of chunks kept at most; cached chunks are evicted beyond it. Default 10 GiB.
    pub fn quota(mut self, bytes: u64) -> Self {
        self.quota = bytes;
        self
    }

    /// Replaces the whole DHT engine configuration (k, α, timeouts, limits…). The engine seed is
    /// taken from the identity unless set here.
    pub fn dht_config(mut self, config: Config) -> Self {
        self.dht = config;
        self
    }

    /// How the node makes itself reachable: relay server, UPnP, mDNS, AutoNAT (see
    /// [`crate::nat`]). Default: relay server while publicly reachable, no UPnP, no mDNS.
    pub fn nat(mut self, nat: crate::nat::NatConfig) -> Self {
        self.nat = nat;
        self
    }

    /// Joins the network called `network` rather than the public one (see
    /// [`crate::protocol::Network`]).
    pub fn network(mut self, network: crate::protocol::Network) -> Self {
        self.network = network;
        self
    }

    /// Turns the per-bucket IP-prefix cap and bans of address prefixes off: for networks where
    /// many peers share one address, such as a local test network on 127.0.0.1.
    pub fn local_network(mut self) -> Self {
        self.dht.ip_prefix_cap = None;
        self.dht.bans.prefix_after = None;
        self
    }

    /// Starts the node: opens the store, binds the listen addresses, and bootstraps. Returns once
    /// the node is listening and, if bootstrap peers were given, the bootstrap lookup ended.
    pub async fn spawn(self) -> Result<Node, SpawnError> {
        let clock = Clock::new();
        let (keypair, keys, store) = match &self.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| SpawnError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                let keypair = load_or_create_identity(&dir.join(IDENTITY_FILE))?;
                let name_secret = load_or_create_name_key(&dir.join(NAME_KEY_FILE))?;
                let keys = Keyring::open(dir, name_secret)?;
                let (dir2, quota) = (dir.clone(), self.quota);
                let store = tokio::task::spawn_blocking(move || Store::open(&dir2, quota))
                    .await
                    .map_err(|e| SpawnError::Transport(e.to_string()))??;
                if let Some(r) = store.recovery() {
                    warn!(
                        "the chunk index was damaged ({}): moved it to {} and rebuilt it from the chunk files; {} chunks recovered, {} damaged chunk files moved to chunks-damaged/, {} pins to restore",
                        r.reason,
                        r.moved_to.display(),
                        r.chunks,
                        r.damaged_files,
                        r.roots.len()
                    );
                }
                (keypair, keys, store)
            }
            None => (
                identity::Keypair::generate_ed25519(),
                Keyring::in_memory(random_secret()),
                Store::in_memory(self.quota)?,
            ),
        };
        let keys = Arc::new(keys);
        let peer_id = keypair.public().to_peer_id();
        let mut seeds = Vec::new();
        for addr in &self.bootstrap {
            let peer = peer_of(addr).ok_or_else(|| SpawnError::Bootstrap(addr.clone()))?;
            if peer != peer_id {
                seeds.push(PeerAddr {
                    peer,
                    addr: without_peer(addr),
                });
            }
        }
        // The peers this node knew when it last ran: tried after the configured ones, and
        // alone when none is configured.
        if let Some(dir) = &self.data_dir {
            for saved in crate::peers::load(dir) {
                if saved.peer != peer_id && !seeds.iter().any(|s| s.peer == saved.peer) {
                    seeds.push(saved);
                }
            }
        }

        // One host, one IP: its inbound connections are capped, except on a local network.
        let per_ip = self.dht.ip_prefix_cap.map(|_| crate::limits::MAX_PER_IP);
        let transport = |e: &dyn std::fmt::Display| SpawnError::Transport(e.to_string());
        let (nat, network) = (self.nat.clone(), self.network.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport(&e))?
            .with_quic()
            // `/dns4/…`, `/dns6/…` and `/dnsaddr/…` bootstrap addresses.
            .with_dns()
            .map_err(|e| transport(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| transport(&e))?
            .with_bandwidth_metrics(&mut registry)
            .with_behaviour(|key, relay| {
                Behaviour::new(key, relay, per_ip, &nat, &network)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|e| transport(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();
        let listen = if self.listen.is_empty() {
            let port = default_port(self.data_dir.as_deref());
            [
                format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
                format!("/ip4/0.0.0.0/tcp/{port}"),
            ]
            .map(|a| a.parse().expect("valid multiaddr"))
            .to_vec()
        } else {
            self.listen.clone()
        };
        let mut pending = Vec::new();
        for addr in &listen {
            check_bindable(addr)?;
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| SpawnError::Listen {
                    addr: addr.clone(),
                    reason: listen_reason(&e),
                })?;
            pending.push((id, addr.clone()));
        }
        // Wait until every listener has an address (or failed), bounded in time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pending.is_empty() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| SpawnError::Listen {
                    addr: pending[0].1.clone(),
                    reason: "no address after 10 s".into(),
                })?;
            match event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    pending.retain(|(id, _)| *id != listener_id)
                }
                SwarmEvent::ListenerError { listener_id, error }
                | SwarmEvent::ListenerClosed {
                    listener_id,
                    reason: Err(error),
                    ..
                } => {
                    let addr = pending
                        .iter()
                        .find(|(id, _)| *id == listener_id)
                        .map(|(_, a)| a.clone());
                    return Err(SpawnError::Listen {
                        addr: addr.unwrap_or_else(Multiaddr::empty),
                        reason: listen_reason(&error),
                    });
                }
                _ => {}
            }
        }
        let listen_addrs: Vec<Multiaddr> = swarm.listeners().cloned().collect();

        let mut dht = self.dht.clone();
        if dht.seed == 0 {
            dht.seed = u64::from_le_bytes(
                node_id(&peer_id).as_bytes()[..8]
                    .try_into()
                    .expect("8 bytes"),
            );
        }
        let records = match &self.data_dir {
            Some(dir) => {
                let (dir, limits, now) = (dir.clone(), dht.store.clone(), clock.now());
                tokio::task::spawn_blocking(move || DiskRecordStore::open(&dir, limits, now))
                    .await
                    .map_err(|e| SpawnError::Transport(e.to_string()))?
            }
            None => DiskRecordStore::in_memory(dht.store.clone()),
        };
        // This node's names, each whose last record is still valid: signed again for the
        // lifetime it was published with and published once the node has peers (then kept
        // alive by the engine's republishing and renewals).
        let now = clock.now();
        let own_records: Vec<SignedRecord> = keys
            .secrets()
            .iter()
            .filter_map(|secret| {
                let key = Key::for_record(&SignedRecord::public_key_of(secret));
                let r = records.get(&key, now)?;
                let left = r.expires.saturating_duration_since(now);
                Some(crate::names::resign(secret, r, now, left))
            })
            .collect();
        let mut engine = Dht::with_store(node_id(&peer_id), dht, records);
        let (held, missing) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.ids().map(|ids| (ids, store.missing())))
                .await
                .map_err(|e| SpawnError::Transport(e.to_string()))??
        };
        // A chunk whose file is gone must not be offered to peers until it is fetched back.
        let gone: std::collections::HashSet<Key> = missing.iter().copied().collect();
        for id in held.into_iter().filter(|id| !gone.contains(id)) {
            engine.hold(id);
        }
        let metrics = crate::metrics::Metrics::new(registry);
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let weak = tx.downgrade();
        store.on_evict(move |keys| {
            // From a blocking thread: never wait. A lost release leaves one stale "I hold it"
            // answer until the next start.
            if let Some(tx) = weak.upgrade() {
                let _ = tx.try_send(Command::Release { keys });
            }
        });
        let driver = Driver::new(
            swarm,
            engine,
            store.clone(),
            clock,
            rx,
            tx.downgrade(),
            crate::driver::Services {
                keys: keys.clone(),
                nat: crate::nat::Nat::new(self.nat.clone()),
                identify_version: self.network.identify_version(),
                metrics: metrics.live.clone(),
            },
        );
        let task = tokio::spawn(driver.run());
        let node = Node {
            inner: Arc::new(Inner {
                commands: tx,
                store,
                peer_id,
                listen_addrs,
                data_dir: self.data_dir.clone(),
                keys,
                metrics,
                task: Mutex::new(Some(task)),
            }),
        };
        info!(%peer_id, addrs = ?node.addrs(), "cairn node started");
        if !seeds.is_empty() {
            match node.bootstrap(seeds).await {
                // The engine tries the seeds again, 1 s doubling to a minute, while it has no peer.
                Ok(0) => warn!(
                    "no bootstrap peer answered; trying again with backoff until one does (or a peer connects)"
                ),
                Ok(n) => info!(peers = n, "bootstrapped"),
                Err(e) => warn!(%e, "bootstrap failed"),
            }
        }
        if self.data_dir.is_some() {
            tokio::spawn(crate::peers::keep_saving(node.clone()));
        }
        tokio::spawn(announce_pins(node.clone()));
        for record in own_records {
            let name = crate::Name::from_public_key(record.public_key);
            match node.put_record(record).await {
                Ok(stored) => info!(%name, stored, "published a name of this node again"),
                Err(e) => warn!(%name, %e, "could not publish a name of this node again"),
            }
        }
        let recovery = node.store().recovery();
        let rebuilt = recovery.is_some();
        let roots = recovery.map(|r| r.roots.clone()).unwrap_or_default();
        if !missing.is_empty() || rebuilt {
            tokio::spawn(heal(node.clone(), missing, roots, rebuilt));
        }
        Ok(node)
    }
}

/// Announces every pinned root again after a start; the engine paces them with its other
/// background announcements (and announces each again every half `provider_ttl` while the node
/// runs).
async fn announce_pins(node: Node) {
    let Ok(pins) = node.pins().await else {
        return;
    };
    for id in pins {
        if node
            .tell(Command::AnnounceLater { key: id.key() })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Chunk files fetched back at once after a start that found some missing.
const RESTORE_CONCURRENCY: usize = 4;

/// Finishes what opening the store found: fetches back from peers the pinned and replica
/// chunks whose file is gone (storing one restores its file and tells the engine it is held
/// again), then pins again the roots a rebuilt index lost. Pins are walked with fetching on,
/// so a root whose chunks are not all here is completed from peers, rather than pinned
/// partially; one that cannot be is reported with what to do. After a rebuild, which keeps every
/// recovered chunk as a replica so nothing is evicted before the pins are back, the chunks this
/// node is not responsible for become evictable again (else the rebuilt store stays full for
/// good).
async fn heal(node: Node, missing: Vec<Key>, roots: Vec<Key>, rebuilt: bool) {
    info!(
        missing = missing.len(),
        pins = roots.len(),
        "restoring missing chunks and pins"
    );
    futures::stream::iter(missing)
        .for_each_concurrent(RESTORE_CONCURRENCY, |id| {
            let node = node.clone();
            async move {
                match node.fetch_chunk(ContentId::from_key(id), id).await {
                    Ok(_) => info!(%id, "fetched back a chunk whose file was missing"),
                    Err(e) => warn!(
                        %id,
                        %e,
                        "no peer holds a chunk whose file is missing here; it stays missing until one does"
                    ),
                }
            }
        })
        .await;
    for root in roots {
        let id = ContentId::from_key(root);
        match node.pin_walk(id, true).await {
            Ok(_) => info!(%id, "pin restored after the index rebuild"),
            Err(e) => warn!(
                %id,
                %e,
                "cannot restore this pin after the index rebuild: its content is not all here and no peer sent the rest; run `cairn pin add {id}` once it is reachable"
            ),
        }
    }
    if rebuilt && let Err(e) = release_foreign_replicas(&node).await {
        warn!(%e, "cannot sort out which rebuilt chunks are replicas; they stay kept");
    }
}

/// Keeps as replicas only the stored chunks this node is responsible for.
async fn release_foreign_replicas(node: &Node) -> Result<(), crate::GetError> {
    let store = node.store().clone();
    let ids = tokio::task::spawn_blocking(move || store.ids())
        .await
        .map_err(|_| NodeStopped)??;
    let mine: std::collections::HashSet<Key> = node
        .call(|reply| Command::Responsible {
            keys: ids.clone(),
            reply,
        })
        .await?
        .into_iter()
        .collect();
    let foreign: Vec<Key> = ids.into_iter().filter(|id| !mine.contains(id)).collect();
    let store = node.store().clone();
    tokio::task::spawn_blocking(move || store.unmark_replicas(&foreign))
        .await
        .map_err(|_| NodeStopped)??;
    Ok(())
}

/// A running cairn peer. Cheap to clone: every clone talks to the same node.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let node = cairn_node::Node::builder().data_dir("/tmp/cairn-demo").spawn().await?;
/// let put = node.put_bytes(b"hello, cairn".to_vec()).await?;
/// let bytes = node.get_bytes(put.id).await?;
/// assert_eq!(bytes, b"hello, cairn");
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) store: Store,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) keys: Arc<Keyring>,
    metrics: Arc<crate::metrics::Metrics>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    // By hand, so no secret key of a name ever reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .field("listen_addrs", &self.listen_addrs)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What the node holds and sees.
#[derive(Clone, Debug)]
pub struct NodeStats {
    /// The network side.
    pub network: NetworkStatus,
    /// The store side.
    pub store: StoreStats,
}

impl Node {
    /// A builder with defaults.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The addresses it listens on, each ending with `/p2p/<peer id>`, ready to give to another
    /// node's [`NodeBuilder::bootstrap`].
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.inner
            .listen_addrs
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(self.inner.peer_id)))
            .collect()
    }

    /// The data directory, if the node has one.
    pub fn data_dir(&self) -> Option<&Path> {
        self.inner.data_dir.as_deref()
    }

    /// The local chunk store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Joins (again) through `seeds`; returns how many close peers answered.
    pub async fn bootstrap(&self, seeds: Vec<PeerAddr>) -> Result<usize, NodeStopped> {
        let r = self
            .call(|reply| Command::Bootstrap { seeds, reply })
            .await?;
        Ok(r.unwrap_or(0))
    }

    /// Network and store figures.
    pub async fn stats(&self) -> Result<NodeStats, crate::error::GetError> {
        let network = self.call(|reply| Command::Status { reply }).await?;
        let store = self.inner.store.clone();
        let store = tokio::task::spawn_blocking(move || store.stats())
            .await
            .map_err(|_| NodeStopped)??;
        Ok(NodeStats { network, store })
    }

    /// Chunk bytes received from and sent to peers since the node started: `(in, out)`.
    pub fn chunk_traffic(&self) -> (u64, u64) {
        let live = &self.inner.metrics.live;
        (live.chunk_bytes_in.get(), live.chunk_bytes_out.get())
    }

    /// Every metric in Prometheus text format (the OpenMetrics text `/metrics` serves).
    pub async fn metrics(&self) -> Result<String, crate::error::GetError> {
        let stats = self.stats().await?;
        Ok(self.inner.metrics.render(&stats))
    }

    /// The addresses this node can be reached at now, best first (each ending with
    /// `/p2p/<peer id>`): confirmed external, relayed, then listen addresses.
    pub async fn reachable_addrs(&self) -> Result<Vec<Multiaddr>, NodeStopped> {
        let addrs = self.call(|reply| Command::Addresses { reply }).await?;
        Ok(addrs
            .into_iter()
            .map(|a| without_peer(&a).with(Protocol::P2p(self.inner.peer_id)))
            .collect())
    }

    /// An invite to this node: its peer id and the addresses it can be reached at now.
    pub async fn invite(&self) -> Result<crate::Ticket, NodeStopped> {
        let addrs = self.call(|reply| Command::Addresses { reply }).await?;
        Ok(crate::Ticket::new(self.inner.peer_id, addrs))
    }

    /// Joins the network through the node of `ticket`, dialing it at every address the ticket
    /// has; returns how many close peers answered.
    pub async fn join(&self, ticket: &crate::Ticket) -> Result<usize, crate::AddPeerError> {
        let Some(first) = ticket.addrs.first() else {
            return Err(crate::AddPeerError::NoAddress);
        };
        if ticket.peer == self.peer_id() {
            return Err(crate::AddPeerError::Itself(first.clone()));
        }
        self.tell(Command::AddAddresses {
            peer: ticket.peer,
            addrs: ticket.addrs.clone(),
        })
        .await?;
        let seed = PeerAddr {
            peer: ticket.peer,
            addr: first.clone(),
        };
        Ok(self.bootstrap(vec![seed]).await?)
    }

    /// The peers in the routing table.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeStopped> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Publishes a signed record (a mutable name) on the closest peers. Returns how many stored
    /// it.
    pub async fn put_record(&self, record: SignedRecord) -> Result<usize, crate::NameError> {
        self.call(|reply| Command::PutRecord { record, reply })
            .await?
            .map_err(crate::NameError::Rejected)
    }

    /// Reads the signed record under `key`: the highest valid sequence the closest peers hold.
    pub async fn get_record(&self, key: Key) -> Result<Option<SignedRecord>, crate::NameError> {
        self.call(|reply| Command::GetRecord { key, reply })
            .await?
            .map_err(crate::NameError::Rejected)
    }

    /// Stops the node: closes its connections, waits for its task to end and closes the store,
    /// so the data directory can be opened again at once. Everything stored is already on
    /// disk.
    pub async fn shutdown(&self) {
        // The next start rejoins through the peers known now.
        self.save_peers().await;
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        if let Some(task) = self.inner.task.lock().await.take() {
            let _ = task.await;
        }
        // Release the data directory now, not when the last clone of this handle drops.
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }

    /// Sends a command and waits for its reply.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeStopped> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(reply))
            .await
            .map_err(|_| NodeStopped)?;
        rx.await.map_err(|_| NodeStopped)
    }

    /// Sends a command that has no reply.
    pub(crate) async fn tell(&self, command: Command) -> Result<(), NodeStopped> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| NodeStopped)
    }
}

/// The port to listen on by default: the one kept in `dir` from an earlier start, else
/// [`DEFAULT_PORT`]; if TCP or UDP is taken on it, a port free for both (said in the log, and
/// kept in `dir` so the address handed to others holds across restarts).
fn default_port(dir: Option<&Path>) -> u16 {
    let file = dir.map(|d| d.join(PORT_FILE));
    let kept = file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| t.trim().parse::<u16>().ok())
        .filter(|p| *p != 0);
    let wanted = kept.unwrap_or(DEFAULT_PORT);
    let free = |port: u16| {
        ["/ip4/0.0.0.0/tcp/", "/ip4/0.0.0.0/udp/"].iter().all(|p| {
            format!("{p}{port}")
                .parse()
                .is_ok_and(|a: Multiaddr| check_bindable(&a).is_ok())
        })
    };
    if free(wanted) {
        return wanted;
    }
    // Bounded: an ephemeral TCP port whose UDP twin is free too, in a few tries.
    let found = (0..32).find_map(|_| {
        let socket = std::net::TcpListener::bind("0.0.0.0:0").ok()?;
        let port = socket.local_addr().ok()?.port();
        drop(socket);
        free(port).then_some(port)
    });
    let Some(port) = found else {
        warn!(
            port = wanted,
            "the p2p port is taken and no free one was found; letting the system choose"
        );
        return 0;
    };
    warn!(
        "the p2p port {wanted} is taken (by another program or cairn node); listening on {port} instead, and keeping it for the next starts"
    );
    if let Some(f) = file
        && let Err(e) = std::fs::write(&f, format!("{port}\n"))
    {
        warn!(path = %f.display(), %e, "cannot keep the p2p port; the next start may listen on another");
    }
    port
}

/// Fails if listen address `addr` cannot be bound: its port is taken (by another process or
/// another node), or no interface of this machine has its IP address.
///
/// libp2p-tcp 0.45 binds every listening socket with SO_REUSEPORT (`PortUse::Reuse` in
/// `Transport::do_listen`, whatever `Config::port_reuse` says), so a second node on a taken TCP
/// port "listens" too, and the kernel then shares incoming connections between the two: 1 of 4
/// bootstrap dials reached the wrong node. Binding a plain socket first, without SO_REUSEPORT,
/// fails on a port anyone holds. libp2p-quic binds its UDP socket without SO_REUSEPORT and fails
/// by itself, but its error reaches us through `Either` wrappers whose `source` skips the I/O
/// error and whose text is empty; binding here gives every bind failure one clear message.
/// Someone may still take the port between this check and libp2p's bind: that narrow race is
/// the price of not patching libp2p. Port 0 is bound too (to an ephemeral port, at once
/// released), which checks the IP address. Non-IP addresses are left to libp2p.
fn check_bindable(addr: &Multiaddr) -> Result<(), SpawnError> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let (kind, protocol, port) = match parts.next() {
        Some(Protocol::Tcp(port)) => (socket2::Type::STREAM, socket2::Protocol::TCP, port),
        Some(Protocol::Udp(port)) => (socket2::Type::DGRAM, socket2::Protocol::UDP, port),
        _ => return Ok(()),
    };
    let at = std::net::SocketAddr::new(ip, port);
    let bind = || -> std::io::Result<()> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(at), kind, Some(protocol))?;
        // As libp2p does: an IPv6 listener leaves IPv4 to an IPv4 listener on the same port.
        if at.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // As libp2p does, so that a port still in TIME_WAIT from a previous run is free; on UDP
        // it would let two sockets share a port, so not there.
        #[cfg(unix)]
        if kind == socket2::Type::STREAM {
            socket.set_reuse_address(true)?;
        }
        socket.bind(&at.into())
    };
    bind().map_err(|e| SpawnError::Listen {
        addr: addr.clone(),
        reason: io_reason(&e),
    })
}

/// The reason for a listen error from libp2p, in words: the first I/O error of a definite kind
/// in its chain if there is one, else the chain's non-empty texts (libp2p's `TransportError`
/// prints nothing of its own).
fn listen_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut texts = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // Bounded: an error chain that loops must not hang the start.
    for _ in 0..32 {
        let Some(e) = cause else { break };
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() != std::io::ErrorKind::Other {
                return io_reason(io);
            }
            // `io::Error::source` skips the error it wraps; look into that error too.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        let text = e.to_string();
        if !text.is_empty() && !texts.contains(&text) {
            texts.push(text);
        }
        cause = e.source();
    }
    if texts.is_empty() {
        format!("{error:?}")
    } else {
        texts.join(": ")
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use by another process or node".into(),
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address".into()
        }
        _ => e.to_string(),
    }
}

/// Reads the node's ed25519 key, or creates one (file mode 0600) on first start.
fn load_or_create_identity(path: &Path) -> Result<identity::Keypair, SpawnError> {
    let err = |reason: String| SpawnError::Identity {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = identity::Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| err(e.to_string()))?;
            crate::fsutil::write_private(path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(keypair)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Reads the secret key of the node's name, or creates one (file mode 0600) on first start.
fn load_or_create_name_key(path: &Path) -> Result<[u8; 32], SpawnError> {
    let err = |reason: String| SpawnError::Identity {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| err("not 32 bytes".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret();
            crate::fsutil::write_private(path, &secret).map_err(|e| err(e.to_string()))?;
            Ok(secret)
        }
        Err(e) => Err(err(e.to_string())),
    }
}
