//! Lookups and the commands built on them: what a command asked, what it returns.

mod kind;
mod lookup;

use std::time::Duration;

pub(crate) use kind::Kind;
pub(crate) use lookup::{Lookup, PathId};

use crate::{Contact, Key, SignedRecord, Timestamp};

/// Identifies a command's query; the [`crate::Event::QueryFinished`] that ends it carries it back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct QueryId(pub(crate) u64);

/// What a finished query found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum QueryResult<A> {
    /// [`crate::Dht::bootstrap`]: the closest peers to our own id.
    Bootstrap {
        /// Closest peers found, closest first.
        closest: Vec<Contact<A>>,
    },
    /// [`crate::Dht::find_node`]: the k closest live peers to the target.
    FindNode {
        /// The target.
        target: Key,
        /// Closest peers that answered, closest first.
        closest: Vec<Contact<A>>,
    },
    /// [`crate::Dht::get_record`]: the valid record with the highest sequence seen.
    GetRecord {
        /// The record key.
        key: Key,
        /// The best record, if any peer had a valid one.
        record: Option<SignedRecord>,
        /// How many peers answered with a valid record.
        answers: usize,
    },
    /// [`crate::Dht::put_record`]: how many of the closest peers stored the record.
    PutRecord {
        /// The record key.
        key: Key,
        /// Peers that accepted it.
        stored: usize,
        /// Peers that refused or did not answer.
        failed: usize,
    },
    /// [`crate::Dht::announce`]: how many of the closest peers took our provider record.
    Announce {
        /// The content key.
        key: Key,
        /// Peers that accepted it.
        stored: usize,
        /// Peers that refused or did not answer.
        failed: usize,
    },
    /// [`crate::Dht::find_holders`]: peers that hold the content.
    Holders {
        /// The content key.
        key: Key,
        /// Holders found (replicas and announced providers), in no particular order; rank them
        /// with [`crate::Dht::rank`].
        holders: Vec<Contact<A>>,
        /// The closest live peers to the key, for a caller that wants to look further.
        closest: Vec<Contact<A>>,
    },
    /// [`crate::Dht::place`]: where a chunk should be stored.
    Placement {
        /// The chunk key.
        key: Key,
        /// The remote peers among the `replication` closest to the key, closest first. The node
        /// sends the chunk to each.
        peers: Vec<Contact<A>>,
        /// Whether the local node is itself among the `replication` closest (and so should keep
        /// the chunk as a responsible replica).
        local: bool,
    },
}

/// Counters of one query, for figures and tuning.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct QueryStats {
    /// Requests sent.
    pub requests: u32,
    /// Requests answered.
    pub successes: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Lookup hops to the closest peer found (1 = a peer we already knew).
    pub hops: u32,
    /// When the query started.
    pub started: Timestamp,
    /// How long it ran.
    pub duration: Duration,
    /// Whether it ended because `query_timeout` passed.
    pub timed_out: bool,
}

/// Why a command was not started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `max_queries` lookups are already running.
    #[error("too many queries in progress ({max}); wait for some to finish")]
    Busy {
        /// The limit.
        max: usize,
    },
    /// The local store holds a newer record under this name.
    #[error(
        "a record with sequence {held} is already stored under this name; publish with a higher sequence"
    )]
    StaleRecord {
        /// The sequence held.
        held: u64,
    },
    /// The record to publish is invalid.
    #[error("record is invalid: {0}")]
    InvalidRecord(#[from] crate::RecordError),
}
