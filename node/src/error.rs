//! Errors, one enum per operation. Messages are lowercase, name what went wrong and say what to
//! do.

use std::path::PathBuf;

use libp2p::Multiaddr;

use crate::store::StoreError;
use crate::{ContentId, ManifestError};

/// `text` with its control characters escaped (`\u{1b}` for ESC): for echoing what a user or a
/// peer gave into a message that may reach a terminal, where a raw escape sequence would act.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The data directory could not be created or read.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The identity key file is unreadable or corrupt.
    #[error(
        "identity key {path} is unusable ({reason}); restore it from a backup, or move it away to create a new identity"
    )]
    Identity {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A named key's file (in `keys/`) is unreadable or is not a key.
    #[error(
        "key file {path} is unusable ({reason}); restore it from a backup, or move it out of the keys directory to start without it (its name then lapses)"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The chunk store could not be opened.
    #[error("cannot open the chunk store: {0}")]
    Store(#[from] StoreError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}; choose another address or port")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A bootstrap address does not name its peer.
    #[error("bootstrap address {0} must end with /p2p/<peer id>")]
    Bootstrap(Multiaddr),
    /// The libp2p transport could not be built.
    #[error("cannot set up networking: {0}")]
    Transport(String),
}

/// The node's driver task has stopped (it was shut down).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the cairn node has shut down; start it again")]
pub struct NodeStopped;

/// A put failed. What was stored before the failure stays stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The input path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// Reading the input failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file name is not valid UTF-8 or not a valid entry name.
    #[error("{0}: file name is not valid UTF-8 or contains '/', '\\' or NUL; rename it")]
    BadName(PathBuf),
    /// A directory has more entries than one manifest holds.
    #[error(
        "{0}: more than {max} entries in one directory; split it into subdirectories",
        max = crate::manifest::MAX_LINKS
    )]
    TooManyEntries(PathBuf),
    /// Directories nest deeper than [`crate::manifest::MAX_DEPTH`].
    #[error(
        "{0}: directories nest more than {max} levels deep, which cairn refuses; flatten the tree",
        max = crate::manifest::MAX_DEPTH
    )]
    TooDeep(PathBuf),
    /// A file name is longer than [`crate::manifest::MAX_NAME`] bytes.
    #[error(
        "{0}: the file name is longer than {max} bytes, which no disk can hold; rename it",
        max = crate::manifest::MAX_NAME
    )]
    NameTooLong(PathBuf),
    /// Two entries of one directory have the same name.
    #[error("two entries of one directory are both named {0:?}; names must be unique")]
    DuplicateName(String),
    /// A directory entry given over the API does not match what it names.
    #[error("directory entry {name:?} is refused: {reason}")]
    BadEntry {
        /// The entry's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The input file changed while it was read, so what was read is no version of it.
    #[error(
        "{0} changed while it was being read (it grew, shrank or was rewritten); put it again once nothing is writing to it"
    )]
    Changed(PathBuf),
    /// The content was stored but could not be pinned (a chunk was evicted meanwhile: the
    /// quota is too small for it).
    #[error("cannot pin the content just stored: {0}")]
    Pin(Box<GetError>),
    /// The local store refused the data.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Publishing or reading a signed record failed.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The engine refused the command (invalid record, stale sequence, too busy).
    #[error(transparent)]
    Rejected(#[from] cairn_dht::QueryError),
    /// The text is not a name.
    #[error("{0}")]
    Malformed(String),
    /// No peer holds a live record for the name.
    #[error("no peer holds a record for {0}; it was never published or has expired")]
    NotFound(String),
    /// The lifetime asked for a record is not one peers keep.
    #[error(transparent)]
    Ttl(#[from] TtlError),
    /// The key to publish under is not usable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// A name's lifetime is malformed or out of range (see [`crate::parse_ttl`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// The text is not a duration.
    #[error(
        "'{0}' is not a duration: use seconds, or a number followed by s, m, h or d (90s, 10m, 24h, 7d)"
    )]
    Malformed(String),
    /// Shorter than a second, or longer than peers keep a record.
    #[error(
        "a name's lifetime must be 1s to 7d (the longest peers keep a record); '{0}' is out of range"
    )]
    OutOfRange(String),
}

/// Creating, listing or removing a named key failed (see [`crate::KeyName`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a valid key name.
    #[error(
        "'{0}' is not a valid key name: use at most {max} letters, digits, '-', '_' or '.', not starting with '.'",
        max = crate::keys::MAX_KEY_NAME
    )]
    BadName(String),
    /// A key of that name exists; replacing it would lose its name for good.
    #[error("a key named '{0}' already exists; choose another name")]
    Exists(crate::KeyName),
    /// No key of that name.
    #[error(
        "no key named '{0}'; list the keys with `cairn key ls`, or create it with `cairn key gen {0}`"
    )]
    Unknown(crate::KeyName),
    /// `self`, the node's own key, cannot be removed.
    #[error("the key 'self' is this node's own name key and cannot be removed")]
    RemoveSelf,
    /// The node holds [`crate::keys::MAX_KEYS`] keys already.
    #[error("this node already holds {max} keys, the most it renews; remove one first", max = crate::keys::MAX_KEYS)]
    TooMany,
    /// The key file or its directory could not be written or removed.
    #[error("cannot write key file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Resolving `NAME[/path]` or `ID[/path]` to content failed (see [`crate::ContentPath`]).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The root is neither a content id nor a name.
    #[error(
        "'{0}' is not a cairn content id or name: it should start with 'cairn1' (a content id) or 'cairnname1' (a name)"
    )]
    Root(String),
    /// The root is a malformed content id.
    #[error(transparent)]
    Id(#[from] crate::ContentIdError),
    /// The root is a name that is malformed or does not resolve.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The content or the path in it could not be read.
    #[error(transparent)]
    Get(#[from] GetError),
}

/// A get failed. Nothing partial is left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// No peer that could be found holds the content.
    #[error("no peer holds {0}; check the id, and that a node holding it is online")]
    NotFound(ContentId),
    /// Some chunk could not be fetched from any holder.
    #[error(
        "chunk {chunk} of {content} is held by no reachable peer (tried {tried}); try again later"
    )]
    Unavailable {
        /// The content.
        content: ContentId,
        /// The missing chunk, as hex.
        chunk: String,
        /// Holders tried.
        tried: usize,
    },
    /// Manifests nest deeper than [`crate::manifest::MAX_DEPTH`]: not content cairn made, and
    /// refused before it could make a walk do unbounded work.
    #[error("{0} nests directories or file parts more than 1024 levels deep, which cairn refuses")]
    TooDeep(ContentId),
    /// A directory tree would write more files than [`crate::manifest::MAX_TREE_FILES`].
    #[error(
        "{content} would write {files} files, more than the {max} cairn writes for one get; get a subdirectory of it instead",
        max = crate::manifest::MAX_TREE_FILES
    )]
    TooManyFiles {
        /// The content.
        content: ContentId,
        /// Files counted (at least).
        files: u64,
    },
    /// The content is larger than this node's whole storage quota.
    #[error(
        "{content} holds {size} bytes, more than this node's storage quota of {quota} bytes; raise the quota (--quota) to keep it here"
    )]
    TooLarge {
        /// The content.
        content: ContentId,
        /// Its size.
        size: u64,
        /// The quota.
        quota: u64,
    },
    /// The only copy of a chunk, on this node's disk, is damaged and no peer has a good one.
    #[error(
        "chunk {chunk} of {content} is damaged on this node's disk and no reachable peer holds a good copy; it can be had again only from a node that still holds it"
    )]
    Damaged {
        /// The content.
        content: ContentId,
        /// The damaged chunk, as hex.
        chunk: String,
    },
    /// The output path cannot be written.
    #[error(transparent)]
    Output(#[from] crate::fsutil::OutputError),
    /// A manifest failed to decode: the content is not cairn content.
    #[error("{content} does not lead to valid cairn content: {source}")]
    Manifest {
        /// The content.
        content: ContentId,
        /// What is wrong.
        source: ManifestError,
    },
    /// The engine could not start the lookup (too many queries in progress).
    #[error("the node is too busy to look for holders ({0}); try again shortly")]
    Busy(String),
    /// The content is a directory, and the operation needs a file.
    #[error("{0} is a directory; get it to a path instead of a stream")]
    IsDirectory(ContentId),
    /// A path inside a directory does not exist.
    #[error("{path} not found in directory {content}")]
    NoSuchPath {
        /// The directory.
        content: ContentId,
        /// The path.
        path: String,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The output path exists already.
    #[error("{0} already exists; choose another output path or remove it")]
    Exists(PathBuf),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

impl From<GetError> for std::io::Error {
    fn from(e: GetError) -> Self {
        std::io::Error::other(e)
    }
}
