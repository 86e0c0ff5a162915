//! What each kind of query is for and what it gathers while its lookup runs; the engine
//! (`crate::engine`) drives them all through the one lookup machine (`lookup.rs`).

use std::collections::BTreeSet;

use crate::fetch::FetchId;
use crate::{Contact, Key, SignedRecord};

/// A query's kind and its state.
#[derive(Debug)]
pub(crate) enum Kind<A> {
    /// Joining: a lookup of this peer's own id.
    Bootstrap,
    /// A bucket refresh: a lookup of a random id in it, no event.
    Refresh,
    /// The k closest live peers to a target.
    FindNode,
    /// The valid record with the highest sequence.
    GetRecord {
        best: Option<SignedRecord>,
        answers: usize,
        /// The responders that returned a valid record, and its sequence: at the end, those
        /// behind `best` are sent it (read repair).
        seen: Vec<(Contact<A>, u64)>,
    },
    /// A record stored on the k closest.
    PutRecord { record: SignedRecord },
    /// This peer as a provider on the k closest.
    Announce,
    /// Peers that hold a chunk: its replicas and the content's announcers.
    Holders {
        holders: Vec<Contact<A>>,
        /// Responders that said they hold it: live, and answerable for the claim.
        verified: BTreeSet<Key>,
        /// Responders that named other providers: each counts once toward `want`, however
        /// many it named (one liar cannot end a lookup with a list of dead or fake holders).
        referrers: BTreeSet<Key>,
        /// Holders a fetch tried already: they do not count toward `want`, so a lookup after
        /// failures goes on past the peers that failed (fake holders on the lookup path would
        /// otherwise end every lookup by themselves).
        tried: BTreeSet<Key>,
        /// Holders named by provider records (peers that announced the whole content), as
        /// opposed to replicas of this one chunk.
        announced: Vec<Contact<A>>,
        want: usize,
        /// The fetch chunk this lookup finds holders for (no event: the fetch goes on).
        fetch: Option<(FetchId, u64)>,
        /// Holders already handed to the fetch while the lookup goes on.
        streamed: BTreeSet<Key>,
    },
    /// Where a chunk should be stored: the `replication` closest live peers.
    Place,
}
