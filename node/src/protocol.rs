//! The wire: the libp2p behaviour, the DHT address type, and the chunk transfer protocol.
//!
//! - `/cairn/kad/1.0.0`: the engine's [`cairn_dht::Request`]/[`cairn_dht::Response`] over
//!   request-response in CBOR ([`crate::wire`]), requests and responses capped at
//!   [`MAX_KAD_MESSAGE`].
//! - `/cairn/chunk/1.0.0`: [`ChunkRequest`]/[`ChunkResponse`], capped at one chunk plus framing.
//! - identify (so peers learn each other's listen addresses) and ping (whose round trips feed
//!   the engine's timeouts and holder ranking).
//! - Reachability, all libp2p's own behaviours (see [`crate::nat`]): AutoNAT (am I publicly
//!   reachable?), the circuit relay v2 client (a node behind NAT reserves a slot on a public
//!   peer) and server (public nodes relay, with bounded resources), DCUtR (a relayed connection
//!   becomes a direct one by hole punching), UPnP port mapping and mDNS discovery on the LAN.
//!
//! On a named network ([`Network`]), the DHT and chunk protocols and identify's version carry
//! the name, so that its nodes never talk DHT to the public network's, nor to another's.

use std::net::IpAddr;
use std::time::Duration;

use cairn_dht::{Address, Key};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, autonat, dcutr, identify, mdns, ping, relay, upnp,
};
use serde::{Deserialize, Serialize};

use crate::chunker::MAX_CHUNK;

/// The DHT protocol (of the public network).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1.0.0");
/// The chunk transfer protocol (of the public network).
pub const CHUNK_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/chunk/1.0.0");
/// identify's protocol version string (of the public network).
pub const IDENTIFY_VERSION: &str = "/cairn/1.0.0";
/// Longest network name.
pub const MAX_NETWORK_NAME: usize = 64;

/// Which cairn network a node belongs to: the public one, or a private one by name (a company's,
/// a test lab's). Nodes of different networks may connect (libp2p's own protocols still run),
/// but speak no DHT or chunk protocol to each other and drop each other from their tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Network(Option<String>);

impl Network {
    /// The public network.
    pub fn public() -> Self {
        Self(None)
    }

    /// The network called `name`: 1 to [`MAX_NETWORK_NAME`] of `a-z`, `0-9`, `-`, `_`, `.`.
    pub fn named(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NETWORK_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(format!(
                "'{}' is not a network name: use 1 to {MAX_NETWORK_NAME} of a-z, 0-9, '-', '_' and '.'",
                crate::printable(&name.chars().take(80).collect::<String>())
            ));
        }
        Ok(if name == "public" {
            Self(None)
        } else {
            Self(Some(name.to_owned()))
        })
    }

    /// Its name, `public` for the public network.
    pub fn name(&self) -> &str {
        self.0.as_deref().unwrap_or("public")
    }

    fn protocol(&self, what: &str) -> StreamProtocol {
        match &self.0 {
            None if what == "kad" => KAD_PROTOCOL,
            None => CHUNK_PROTOCOL,
            Some(net) => StreamProtocol::try_from_owned(format!("/cairn/{net}/{what}/1.0.0"))
                .expect("starts with a slash"),
        }
    }

    /// identify's protocol version on this network: peers announcing another are dropped.
    pub fn identify_version(&self) -> String {
        match &self.0 {
            None => IDENTIFY_VERSION.to_owned(),
            Some(net) => format!("/cairn/{net}/1.0.0"),
        }
    }
}
/// Largest DHT message: 2k contacts with a few addresses each fit with room to spare.
pub const MAX_KAD_MESSAGE: u64 = 64 * 1024;
/// Largest chunk message: a chunk plus framing.
pub const MAX_CHUNK_MESSAGE: u64 = MAX_CHUNK as u64 + 4096;

/// A peer's address as the engine sees it: its libp2p id (which the engine's node id is derived
/// from, see [`node_id`]) and one dialable address.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The peer.
    pub peer: PeerId,
    /// Where to dial it.
    pub addr: Multiaddr,
}

impl Address for PeerAddr {
    fn ip(&self) -> Option<IpAddr> {
        self.addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
    }

    fn matches_id(&self, id: &Key) -> bool {
        node_id(&self.peer) == *id
    }
}

/// The DHT node id of a libp2p peer: derived from its public key, which an ed25519 `PeerId`
/// carries inline.
pub fn node_id(peer: &PeerId) -> Key {
    Key::for_peer(&peer.to_bytes())
}

/// A chunk protocol request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChunkRequest {
    /// Send me the chunk with this id.
    Get {
        /// The chunk id.
        id: Key,
    },
    /// Keep the copy of this chunk you may already have as a responsible replica. Answered
    /// `Stored` if the peer has the chunk and is among its closest (it now keeps it for good), or
    /// `NotFound` (then send the bytes with `Store`). Asked before sending a copy, so that a peer
    /// that already has the chunk costs a round trip, not a megabyte.
    Keep {
        /// The chunk id.
        id: Key,
    },
    /// Prove you keep this chunk as a responsible replica: answer
    /// [`cairn_dht::proof`] of `nonce` over your copy ([`ChunkResponse::Proof`]), or
    /// `NotFound`. Sent by the repair audit and handoffs of the peers that hold it too.
    Prove {
        /// The chunk id.
        id: Key,
        /// The challenger's fresh random key.
        nonce: [u8; 32],
    },
    /// Keep this chunk: you are one of the closest peers to its hash.
    Store {
        /// The chunk id; the receiver checks the bytes hash to it.
        id: Key,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
}

/// A chunk protocol response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChunkResponse {
    /// The chunk's bytes (the asker verifies them against the id).
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// I do not have it.
    NotFound,
    /// Stored.
    Stored,
    /// The answer to [`ChunkRequest::Prove`].
    Proof([u8; 32]),
    /// Refused, and why.
    Refused(String),
}

/// The DHT protocol's codec (see [`crate::wire`]).
pub type KadCodec = crate::wire::Codec<cairn_dht::Request, cairn_dht::Response<PeerAddr>>;
/// The chunk protocol's codec (see [`crate::wire`]).
pub type ChunkCodec = crate::wire::Codec<ChunkRequest, ChunkResponse>;

/// The node's libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) kad: request_response::Behaviour<KadCodec>,
    pub(crate) chunk: request_response::Behaviour<ChunkCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay: relay::Behaviour,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) upnp: Toggle<upnp::tokio::Behaviour>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    limits: libp2p::connection_limits::Behaviour,
    memory: libp2p::memory_connection_limits::Behaviour,
    pub(crate) per_ip: crate::limits::IpLimit,
    pub(crate) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
}

impl Behaviour {
    /// The behaviour, with at most `per_ip` inbound connections from one IP address (`None`:
    /// no cap, for a local network), and reachability as `nat` says.
    pub(crate) fn new(
        key: &libp2p::identity::Keypair,
        relay_client: relay::client::Behaviour,
        per_ip: Option<usize>,
        nat: &crate::nat::NatConfig,
        network: &Network,
    ) -> std::io::Result<Self> {
        let peer = key.public().to_peer_id();
        let kad_codec = KadCodec::new(MAX_KAD_MESSAGE, MAX_KAD_MESSAGE);
        let chunk_codec = ChunkCodec::new(MAX_CHUNK_MESSAGE, MAX_CHUNK_MESSAGE);
        // The engine times DHT requests itself (adaptive per peer); this is only a backstop.
        let kad_config = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(15))
            .with_max_concurrent_streams(64);
        let chunk_config = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(60))
            .with_max_concurrent_streams(32);
        let mdns = if nat.mdns {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
        } else {
            None
        };
        Ok(Self {
            kad: request_response::Behaviour::with_codec(
                kad_codec,
                [(network.protocol("kad"), ProtocolSupport::Full)],
                kad_config,
            ),
            chunk: request_response::Behaviour::with_codec(
                chunk_codec,
                [(network.protocol("chunk"), ProtocolSupport::Full)],
                chunk_config,
            ),
            // Pushed when listen addresses change: a relayed address reaches peers at once.
            identify: identify::Behaviour::new(
                identify::Config::new(network.identify_version(), key.public())
                    .with_push_listen_addr_updates(true),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            autonat: autonat::Behaviour::new(peer, nat.autonat_config()),
            relay_client,
            relay: nat.relay_server(peer),
            dcutr: dcutr::Behaviour::new(peer),
            upnp: Toggle::from(nat.upnp.then(upnp::tokio::Behaviour::default)),
            mdns: Toggle::from(mdns),
            limits: crate::limits::connection_limits(),
            memory: libp2p::memory_connection_limits::Behaviour::with_max_percentage(
                crate::limits::MAX_MEMORY_FRACTION,
            ),
            per_ip: crate::limits::IpLimit::new(per_ip),
            blocked: Default::default(),
        })
    }
}

/// The peer id at the end of `addr` (`…/p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `addr` without a trailing `/p2p/<id>`.
pub fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// Whether `addr` is worth telling other peers about: an IP address with TCP or QUIC, not a
/// relay circuit, not the unspecified address.
pub fn is_shareable(addr: &Multiaddr) -> bool {
    let mut ip_ok = false;
    let mut transport = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) => ip_ok = !ip.is_unspecified(),
            Protocol::Ip6(ip) => ip_ok = !ip.is_unspecified(),
            Protocol::Tcp(_) | Protocol::QuicV1 => transport = true,
            Protocol::P2pCircuit => return false,
            _ => {}
        }
    }
    ip_ok && transport
}
