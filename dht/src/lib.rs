//! Sans-IO Kademlia engine for cairn: no sockets, no tokio, no clock and no global RNG.
//!
//! Time comes in as an argument ([`Timestamp`]), randomness from [`Config::seed`], and messages
//! in and out through [`Dht`]'s `handle_*` and `poll_*` methods, so the same code runs in the
//! node (over libp2p) and in `cairn-netsim` (over a simulated network of thousands of peers).
//! `clippy.toml` bans `Instant::now`, `SystemTime::now` and unseeded RNGs here.
//!
//! Every protocol decision lives in this crate:
//! - [`Key`]: 256-bit BLAKE3 keys, XOR distance (Kademlia §2.1).
//! - the routing table: 256 buckets of k = 20 with replacement caches, preference for long-lived
//!   peers (§2.2), a per-bucket IP-prefix cap (eclipse defence), proximity-aware replacement.
//! - lookups: iterative, α in flight, ending when the k closest live peers answered (§2.3);
//!   adaptive per-peer timeouts ([`RttEstimator`]); optional disjoint paths (S/Kademlia §4.4).
//! - records: [`SignedRecord`]s verified before storing, sequence only moving forward; provider
//!   records bound to the authenticated announcer; a bounded [`RecordStore`].
//! - chunk placement (the `placement` module holds every rule): [`Dht::place`] decides which
//!   peers hold a chunk, [`Dht::find_holders`] finds them, [`Dht::rank`] orders them for
//!   fetching, and [`Event::Replicate`] moves copies to new closest peers as peers join and
//!   leave.
//! - custody: a repair audit challenges each held chunk's closest peers to prove they hold it
//!   ([`Event::Challenge`], [`proof`]) and copies it to those that lack it, fewest proven
//!   copies first; a peer pushed out of a chunk's closest set releases its copy
//!   ([`Event::Release`]) only once all the new closest peers proved theirs.
//! - fetching: [`Dht::start_fetch`] and its events decide, for content the caller reads, which
//!   holder to ask for each chunk, how many at once, when to retry, fail over or give up (the
//!   `fetch` module).
//! - inbound limits: a request budget per peer, bounded answers, bounded state everywhere.
//!
//! # Example
//!
//! Two engines wired by hand; a real caller does the same over a network.
//!
//! ```
//! use cairn_dht::{Config, Contact, Dht, Event, Key, QueryResult, Timestamp};
//!
//! let (a_id, b_id) = (Key::for_peer(b"a"), Key::for_peer(b"b"));
//! let mut a: Dht<u32> = Dht::new(a_id, Config::default());
//! let mut b: Dht<u32> = Dht::new(b_id, Config::default());
//! let now = Timestamp::EPOCH;
//!
//! let query = a.bootstrap(now, [Contact::new(b_id, 2)]).unwrap();
//! while let Some(t) = a.poll_transmit() {
//!     let response = b.handle_request(now, Contact::new(a_id, 1), t.request);
//!     a.handle_response(now, t.id, response);
//! }
//! let finished = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
//!     Event::QueryFinished { id, result: QueryResult::Bootstrap { closest }, .. } if id == query => Some(closest),
//!     _ => None,
//! });
//! assert_eq!(finished.unwrap()[0].id, b_id);
//! assert!(a.contains_peer(&b_id) && b.contains_peer(&a_id));
//! ```

mod bans;
mod config;
mod contact;
mod engine;
mod fetch;
mod key;
mod message;
mod placement;
mod query;
mod record;
mod routing;
mod rtt;
mod scores;
mod time;

pub use bans::{Ban, BanConfig, BannedPrefix, Offence};
pub use config::{Config, RateLimit, StoreLimits, TimeoutConfig};
pub use contact::{Address, Contact};
pub use engine::{
    Dht, Event, PROOF_WINDOW, ProofOutcome, RepairStats, RequestId, Transmit, UNCONFIRMED_LAPSE,
    proof,
};
pub use fetch::{ChunkOutcome, FetchConfig, FetchError, FetchId};
pub use key::{Distance, KEY_BITS, Key};
pub use message::{
    MAX_INLINE_CHUNK, PROTOCOL_VERSION, RemoteError, Request, RequestBody, Response, ResponseBody,
};
pub use query::{QueryError, QueryId, QueryResult, QueryStats};
pub use record::{
    MemoryRecordStore, ProviderRecord, RecordError, RecordStore, SignedRecord, StoreError,
};
pub use rtt::RttEstimator;
pub use scores::PeerScore;
pub use time::Timestamp;
