//! A cairn peer: drives the [`cairn_dht`] engine over libp2p, keeps chunks on disk, and puts and
//! gets content. It is the library apps embed, and what the `cairn` daemon and command line are
//! built on.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_node::Node;
//!
//! let node = Node::builder()
//!     .data_dir("/tmp/cairn-a")
//!     .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)
//!     .bootstrap("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/12D3KooWAbc…".parse()?)
//!     .spawn()
//!     .await?;
//! let put = node.put_file("movie.mkv".as_ref()).await?;
//! println!("{}", put.id); // cairn1…
//! node.get_to_file(put.id, "copy.mkv".as_ref()).await?;
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! How it is built (see `shared/DESIGN.md`): a [`Node`] is a cheap handle that sends commands to
//! one driver task, which owns the libp2p swarm and the engine. Every protocol decision (which
//! peers hold a chunk, who to ask, when a peer is dead or lying) is the engine's; this crate
//! moves bytes: the wire ([`protocol`]), the disk ([`store`]), chunking and manifests, and put
//! and get.
//!
//! The engine decides placement with [`cairn_dht::Dht::place`]: each chunk goes to the
//! `replication` closest live peers to its hash. The node that puts content keeps it pinned. A
//! get fetches from the holders [`cairn_dht::Dht::find_holders`] finds, ranked by reliability and
//! round trip, caches what it fetched, and announces itself as a holder.

pub mod api;
pub mod chunker;
mod driver;
mod error;
pub mod framed;
pub mod fsutil;
mod get;
mod health;
pub mod http;
mod id;
mod keys;
pub mod limits;
mod loopback;
pub mod manifest;
mod metrics;
mod names;
pub mod nat;
mod node;
mod path;
mod peers;
pub mod protocol;
mod put;
mod records;
pub mod store;
mod ticket;
mod tree;
pub mod wire;

pub use cairn_dht as dht;
pub use driver::{NetworkStatus, PeerInfo};
pub use error::{
    GetError, KeyError, NameError, NodeStopped, PutError, ResolveError, SpawnError, TtlError,
    printable,
};
pub use get::{GetReader, GetSummary, Resolved};
pub use health::{ChunkHealth, Health};
pub use id::{CONTENT_ID_PREFIX, ContentId, ContentIdError};
pub use keys::{KEYS_DIR, KeyInfo, KeyName, MAX_KEY_NAME, MAX_KEYS, SELF_KEY};
pub use libp2p::{Multiaddr, PeerId};
pub use loopback::Loopback;
pub use manifest::{EntryKind, Manifest, ManifestError};
pub use names::{DEFAULT_NAME_TTL, MAX_NAME_TTL, NAME_PREFIX, Name, parse_ttl};
pub use nat::{NatConfig, NatStatus, Reachability, RelayServer};
pub use node::{
    DEFAULT_PORT, DEFAULT_QUOTA, IDENTITY_FILE, IDLE_CONNECTION_TIMEOUT, NAME_KEY_FILE, Node,
    NodeBuilder, NodeStats, PORT_FILE,
};
pub use path::{ContentPath, ContentRoot};
pub use peers::AddPeerError;
pub use protocol::Network;
pub use put::{DirWalk, Progress, ProgressFn, PutSummary, REPLICATION_WINDOW, Upload, WalkStep};
pub use ticket::{MAX_TICKET_ADDRS, MAX_TICKET_LEN, TICKET_PREFIX, Ticket, TicketError};
