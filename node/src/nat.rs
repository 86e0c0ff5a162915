//! Reachability: what a node does to be reachable from the internet, with libp2p's own
//! behaviours doing the protocol work.
//!
//! - AutoNAT (v1) asks connected peers to dial this node back at the addresses others observe
//!   it at, and says whether it is publicly reachable. A confirmed address is the node's
//!   external address: identify tells peers about it, and the relay server serves only then.
//! - A node that AutoNAT finds private reserves a slot on up to [`WANTED_RELAYS`] connected
//!   public peers that offer the relay protocol (circuit relay v2), by listening on
//!   `<relay>/p2p-circuit`. Its relayed address goes out with identify; peers that hear it
//!   record it as the node's address, so the DHT hands out an address that works.
//! - When a connection arrives through a relay, DCUtR tries to make it direct by hole punching;
//!   once it did, the relayed connection is closed, so requests (and chunk transfers) go direct.
//! - UPnP maps the listen ports on the router where it offers that (an external address at
//!   once, no relay needed), and mDNS finds peers on the local network with no bootstrap.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, relay};
use tracing::{debug, info, warn};

use crate::protocol::{Behaviour, is_shareable};

/// Relays a private node reserves a slot on at once.
pub const WANTED_RELAYS: usize = 2;
/// Most circuits this node relays at once, when it is a relay server.
pub const MAX_CIRCUITS: usize = 32;
/// Most bytes one relayed circuit carries before the relay closes it (the peers then make
/// another, or go direct by hole punching).
pub const MAX_CIRCUIT_BYTES: u64 = 64 << 20;
/// Longest a relayed circuit lasts.
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);

/// Whether this node relays for nodes behind NAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RelayServer {
    /// Only while AutoNAT finds it publicly reachable.
    #[default]
    Auto,
    /// Always: its listen addresses are taken as reachable (a server with a public address).
    On,
    /// Never.
    Off,
}

impl std::str::FromStr for RelayServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" | "true" | "yes" => Ok(Self::On),
            "off" | "false" | "no" => Ok(Self::Off),
            _ => Err(format!("'{s}' is not one of auto, on, off")),
        }
    }
}

/// How a node makes itself reachable (see the module docs).
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Relay for others: see [`RelayServer`].
    pub relay_server: RelayServer,
    /// Map ports with UPnP on the router.
    pub upnp: bool,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Treat private address ranges as reachable in AutoNAT probes: for networks built from
    /// private ranges (a lab, namespaces in a test). Off on the internet, where a private
    /// address seen by a peer says nothing about reachability.
    pub private_ranges: bool,
    /// Wait before the first AutoNAT probe, so that some peers are connected.
    pub probe_delay: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            relay_server: RelayServer::Auto,
            upnp: false,
            mdns: false,
            private_ranges: false,
            probe_delay: Duration::from_secs(5),
        }
    }
}

impl NatConfig {
    pub(crate) fn autonat_config(&self) -> autonat::Config {
        autonat::Config {
            boot_delay: self.probe_delay,
            retry_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10 * 60),
            throttle_server_period: Duration::from_secs(30),
            only_global_ips: !self.private_ranges,
            ..autonat::Config::default()
        }
    }

    pub(crate) fn relay_server(&self, peer: PeerId) -> relay::Behaviour {
        let config = relay::Config {
            max_reservations: 128,
            max_reservations_per_peer: 2,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: MAX_CIRCUITS,
            max_circuits_per_peer: 4,
            max_circuit_duration: MAX_CIRCUIT_DURATION,
            max_circuit_bytes: MAX_CIRCUIT_BYTES,
            ..relay::Config::default()
        }
        .reservation_rate_per_peer(
            NonZeroU32::new(30).expect("non-zero"),
            Duration::from_secs(60),
        );
        let mut relay = relay::Behaviour::new(peer, config);
        // Left to itself, libp2p's relay serves as soon as any external address is confirmed,
        // a relayed one too: a node behind NAT would offer to relay. `Auto` follows AutoNAT
        // instead (see `on_autonat`), off until it finds the node public.
        relay.set_status(Some(match self.relay_server {
            RelayServer::On => relay::Status::Enable,
            RelayServer::Auto | RelayServer::Off => relay::Status::Disable,
        }));
        relay
    }
}

/// Whether this node is reachable from the internet, as AutoNAT last found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet, or no peer could say.
    #[default]
    Unknown,
    /// Peers dialed it back.
    Public,
    /// Peers could not: it is behind NAT or a firewall, and reachable through relays.
    Private,
}

impl Reachability {
    /// `unknown`, `public` or `private`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// What the node knows about its own reachability, for `status` and metrics.
#[derive(Clone, Debug, Default)]
pub struct NatStatus {
    /// What AutoNAT found.
    pub reachability: Reachability,
    /// Addresses confirmed reachable (AutoNAT, UPnP, or given).
    pub external_addrs: Vec<Multiaddr>,
    /// Relayed addresses this node is reachable at (relays that accepted a reservation).
    pub relayed_addrs: Vec<Multiaddr>,
    /// Connections made direct by hole punching since start.
    pub hole_punches: u64,
    /// Hole punching attempts that failed since start.
    pub hole_punch_failures: u64,
}

/// The driver's reachability state.
pub(crate) struct Nat {
    config: NatConfig,
    reachability: Reachability,
    /// Connected peers that offer the relay protocol, with an address to reserve through.
    candidates: HashMap<PeerId, Multiaddr>,
    /// Relay listeners asked for, by relay.
    listeners: HashMap<PeerId, ListenerId>,
    /// Relays whose reservation failed: not asked again until the next status change.
    refused: HashSet<PeerId>,
    /// Relayed addresses with a reservation.
    relayed: HashMap<ListenerId, Multiaddr>,
    /// Open connections that go through a relay, by peer.
    circuits: HashMap<PeerId, HashSet<ConnectionId>>,
    hole_punches: u64,
    hole_punch_failures: u64,
}

impl Nat {
    pub(crate) fn new(config: NatConfig) -> Self {
        Self {
            config,
            reachability: Reachability::Unknown,
            candidates: HashMap::new(),
            listeners: HashMap::new(),
            refused: HashSet::new(),
            relayed: HashMap::new(),
            circuits: HashMap::new(),
            hole_punches: 0,
            hole_punch_failures: 0,
        }
    }

    pub(crate) fn status(&self, swarm: &Swarm<Behaviour>) -> NatStatus {
        NatStatus {
            reachability: self.reachability,
            external_addrs: swarm.external_addresses().cloned().collect(),
            relayed_addrs: self.relayed.values().cloned().collect(),
            hole_punches: self.hole_punches,
            hole_punch_failures: self.hole_punch_failures,
        }
    }

    /// A new listen address: on `--relay-server on`, a shareable one is taken as reachable.
    pub(crate) fn on_new_listen_addr(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        listener: ListenerId,
        addr: &Multiaddr,
    ) {
        if self.config.relay_server == RelayServer::On && is_shareable(addr) && !is_loopback(addr) {
            swarm.add_external_address(addr.clone());
        }
        // The relay client reports the circuit address once the reservation is accepted.
        if is_circuit(addr) && self.listeners.values().any(|l| *l == listener) {
            info!(%addr, "reachable through a relay");
            self.relayed.insert(listener, addr.clone());
        }
    }

    /// A listener ended: if it was a relay's, try another relay.
    pub(crate) fn on_listener_closed(&mut self, swarm: &mut Swarm<Behaviour>, id: ListenerId) {
        self.relayed.remove(&id);
        if let Some(relay) = self
            .listeners
            .iter()
            .find(|(_, l)| **l == id)
            .map(|(p, _)| *p)
        {
            debug!(%relay, "relay listener closed");
            self.listeners.remove(&relay);
            self.refused.insert(relay);
            self.reserve(swarm);
        }
    }

    /// identify told what `peer` supports: a relay is a candidate to reserve through.
    pub(crate) fn on_identify(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        info: &libp2p::identify::Info,
        addr: Option<&Multiaddr>,
    ) {
        let relays = info
            .protocols
            .iter()
            .any(|p| p.as_ref() == relay::HOP_PROTOCOL_NAME.as_ref());
        match (relays, addr) {
            (true, Some(addr)) if !is_circuit(addr) => {
                self.candidates.insert(peer, addr.clone());
                self.reserve(swarm);
            }
            _ => {
                self.candidates.remove(&peer);
            }
        }
    }

    pub(crate) fn on_autonat(&mut self, swarm: &mut Swarm<Behaviour>, event: autonat::Event) {
        let autonat::Event::StatusChanged { new, .. } = event else {
            return;
        };
        let reachability = match new {
            autonat::NatStatus::Public(addr) => {
                info!(%addr, "AutoNAT: publicly reachable");
                Reachability::Public
            }
            autonat::NatStatus::Private => {
                info!("AutoNAT: behind NAT or a firewall; reserving a slot on relays");
                Reachability::Private
            }
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        self.reachability = reachability;
        if self.config.relay_server == RelayServer::Auto {
            let serve = reachability == Reachability::Public;
            info!(serve, "relay server follows AutoNAT");
            swarm.behaviour_mut().relay.set_status(Some(if serve {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            }));
        }
        self.refused.clear();
        if reachability == Reachability::Public {
            // Reachable directly: relays are not needed.
            for (_, listener) in self.listeners.drain() {
                swarm.remove_listener(listener);
            }
            self.relayed.clear();
        }
        self.reserve(swarm);
    }

    pub(crate) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    info!(relay = %relay_peer_id, "relay accepted a reservation");
                }
            }
            other => debug!(?other, "relay client"),
        }
    }

    pub(crate) fn on_relay_server(&mut self, event: relay::Event) {
        debug!(?event, "relay server");
    }

    /// A hole punching attempt ended: on success the relayed connections to the peer close, so
    /// that every request goes over the direct one.
    pub(crate) fn on_dcutr(&mut self, swarm: &mut Swarm<Behaviour>, event: libp2p::dcutr::Event) {
        match event.result {
            Ok(direct) => {
                self.hole_punches += 1;
                info!(peer = %event.remote_peer_id, "hole punching made the connection direct");
                for id in self
                    .circuits
                    .remove(&event.remote_peer_id)
                    .unwrap_or_default()
                {
                    if id != direct {
                        swarm.close_connection(id);
                    }
                }
            }
            Err(e) => {
                self.hole_punch_failures += 1;
                info!(peer = %event.remote_peer_id, %e, "hole punching failed; the connection stays relayed");
            }
        }
    }

    pub(crate) fn on_upnp(&mut self, event: libp2p::upnp::Event) {
        match event {
            libp2p::upnp::Event::NewExternalAddr { external_addr, .. } => {
                info!(%external_addr, "UPnP: the router maps a port to this node")
            }
            libp2p::upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                warn!(%external_addr, "UPnP: the router no longer maps this port")
            }
            libp2p::upnp::Event::GatewayNotFound => debug!("UPnP: no gateway on this network"),
            libp2p::upnp::Event::NonRoutableGateway => {
                debug!("UPnP: the gateway is itself behind NAT")
            }
        }
    }

    pub(crate) fn on_connection(&mut self, peer: PeerId, id: ConnectionId, relayed: bool) {
        if relayed {
            self.circuits.entry(peer).or_default().insert(id);
        }
    }

    pub(crate) fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(c) = self.circuits.get_mut(&peer) {
            c.remove(&id);
            if c.is_empty() {
                self.circuits.remove(&peer);
            }
        }
    }

    /// Whether a connection to `peer` goes through a relay.
    pub(crate) fn is_relayed(&self, peer: &PeerId) -> bool {
        self.circuits.contains_key(peer)
    }

    /// A peer disconnected: it can no longer relay for this node.
    pub(crate) fn on_disconnected(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        self.candidates.remove(&peer);
        self.circuits.remove(&peer);
        if let Some(listener) = self.listeners.remove(&peer) {
            swarm.remove_listener(listener);
            self.relayed.remove(&listener);
            self.reserve(swarm);
        }
    }

    /// While private, keeps [`WANTED_RELAYS`] reservations asked for.
    fn reserve(&mut self, swarm: &mut Swarm<Behaviour>) {
        // `--relay-server on` says the node has a public address, whatever a probe found.
        if self.reachability != Reachability::Private || self.config.relay_server == RelayServer::On
        {
            return;
        }
        let mut choices: Vec<(PeerId, Multiaddr)> = self
            .candidates
            .iter()
            .filter(|(p, _)| !self.listeners.contains_key(p) && !self.refused.contains(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        choices.sort_by_key(|(p, _)| *p); // the same relays each time, not the map's order
        for (relay, addr) in choices {
            if self.listeners.len() >= WANTED_RELAYS {
                break;
            }
            // The address may end in the relay's id already (a seed's, or an invite's).
            let Ok(circuit) = addr.with_p2p(relay) else {
                self.refused.insert(relay);
                continue;
            };
            let circuit = circuit.with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    debug!(%circuit, "asking a relay for a reservation");
                    self.listeners.insert(relay, listener);
                }
                Err(e) => {
                    debug!(%circuit, %e, "cannot listen through this relay");
                    self.refused.insert(relay);
                }
            }
        }
    }
}

/// Whether `addr` goes through a relay (`…/p2p-circuit…`).
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether `addr` is on a loopback interface.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
