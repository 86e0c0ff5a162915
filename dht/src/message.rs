//! The wire messages of the DHT protocol. Every peer speaks these; the node carries them over
//! libp2p request-response (CBOR), the simulator hands them across directly.
//!
//! Chunk bytes travel here only when small: the engine decides which peers should hold a chunk
//! ([`crate::QueryResult::Placement`]) and who holds it ([`RequestBody::GetProviders`]), and the
//! node moves the bytes over its own protocol, except that a holder answering a fetch's lookup
//! puts a chunk of at most [`MAX_INLINE_CHUNK`] bytes in its answer (Kademlia's `FIND_VALUE`):
//! a small file then comes in one round trip, not two.

use serde::{Deserialize, Serialize};

use crate::{Contact, Key, SignedRecord};

/// The protocol version this engine speaks. A peer answers a request of another version with
/// [`RemoteError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest chunk a holder puts in its answer to a lookup that asked for it
/// ([`RequestBody::GetProviders`] `with_chunk`): a root manifest with a small file inside
/// (the node inlines files of up to 4 KiB), far below a message's cap.
pub const MAX_INLINE_CHUNK: usize = 8 * 1024;

/// A request, with its protocol version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The sender's protocol version.
    pub version: u16,
    /// What is asked.
    pub body: RequestBody,
}

/// What a request asks.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RequestBody {
    /// Are you there? Answered by [`ResponseBody::Pong`].
    Ping,
    /// Your `count` closest peers to `target`. Answered by [`ResponseBody::Nodes`].
    FindNode {
        /// The key looked up.
        target: Key,
        /// How many peers are wanted: k, or more when the asker met dead peers near the target
        /// (their places in a k-sized answer are wasted). Answers are capped at 2k.
        count: u16,
    },
    /// The signed record under `key`, and your k closest peers to it. Answered by
    /// [`ResponseBody::Value`].
    FindValue {
        /// The record key.
        key: Key,
    },
    /// Keep this record. Answered by [`ResponseBody::Stored`] or an error.
    PutRecord {
        /// The record; the receiver verifies it before storing.
        record: SignedRecord,
    },
    /// I, the sender, hold the content under `key`. The provider is the authenticated sender, so
    /// no peer can announce another. Answered by [`ResponseBody::Stored`] or an error.
    AddProvider {
        /// The content key.
        key: Key,
    },
    /// Who holds `key` (you, if you keep a replica, and the providers announced to you), and
    /// your k closest peers to it. Answered by [`ResponseBody::Providers`].
    GetProviders {
        /// The content key.
        key: Key,
        /// A fetch asks: a holder puts the chunk itself in its answer if it is at most
        /// [`MAX_INLINE_CHUNK`] bytes. (Absent from peers that never ask.)
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        with_chunk: bool,
    },
}

/// A response, with its protocol version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Response<A> {
    /// The responder's protocol version.
    pub version: u16,
    /// The answer.
    pub body: ResponseBody<A>,
}

/// The answer to a request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ResponseBody<A> {
    /// Answer to [`RequestBody::Ping`].
    Pong,
    /// Answer to [`RequestBody::FindNode`]: at most `count` (and 2k) peers, closest first.
    Nodes {
        /// The responder's closest peers to the target.
        closer: Vec<Contact<A>>,
    },
    /// Answer to [`RequestBody::FindValue`].
    Value {
        /// The record, if the responder holds a live one.
        record: Option<SignedRecord>,
        /// The responder's closest peers to the key.
        closer: Vec<Contact<A>>,
    },
    /// Answer to [`RequestBody::GetProviders`].
    Providers {
        /// Whether the responder itself holds a replica. (It cannot name its own address: the
        /// asker already knows how it reached it.)
        holds: bool,
        /// Other peers that announced they hold the content.
        providers: Vec<Contact<A>>,
        /// The responder's closest peers to the key.
        closer: Vec<Contact<A>>,
        /// The chunk under the key, if asked `with_chunk`, held, and small.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
        chunk: Option<Vec<u8>>,
    },
    /// A store request was accepted.
    Stored,
    /// The request was refused.
    Error(RemoteError),
}

/// Why a peer refused a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The peer speaks another protocol version.
    #[error("peer speaks dht protocol version {supported}; upgrade one of the two")]
    UnsupportedVersion {
        /// The version the peer speaks.
        supported: u16,
    },
    /// The sender exceeded its request budget at this peer.
    #[error("peer is rate limiting us; slow down")]
    RateLimited,
    /// The record failed verification (signature, expiry or size).
    #[error("peer refused an invalid record")]
    InvalidRecord,
    /// The peer holds a newer record.
    #[error("peer holds record sequence {held}, newer than the one sent")]
    StaleRecord {
        /// The sequence the peer holds.
        held: u64,
    },
    /// The peer's store is full.
    #[error("peer's record store is full")]
    StoreFull,
    /// The peer banned us for misbehaviour (for a while).
    #[error("peer has banned us for misbehaviour")]
    Banned,
    /// The peer is not among the closest to the key (by its own table), so it does not keep
    /// records or provider entries for it.
    #[error("peer is not among the closest to this key; store it on closer peers")]
    NotResponsible,
}

impl Request {
    /// A request of this engine's version.
    pub fn new(body: RequestBody) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            body,
        }
    }
}

impl<A> Response<A> {
    /// A response of this engine's version.
    pub fn new(body: ResponseBody<A>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            body,
        }
    }

    /// A refusal.
    pub fn error(error: RemoteError) -> Self {
        Self::new(ResponseBody::Error(error))
    }
}
