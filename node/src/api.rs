//! The daemon's HTTP API as Rust: the request and reply types that the server
//! ([`crate::http`]) and the client share, and [`Client`], which talks to a running daemon the
//! way the `cairn` command line does, for apps that would rather use the daemon than embed a
//! node (as kubo's RPC clients do for IPFS).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_node::api::Error> {
//! use cairn_node::api::Client;
//!
//! // The address and token the daemon wrote into its data directory.
//! let client = Client::from_data_dir("/home/me/.local/share/cairn".as_ref())?;
//! let put = client.put_path("photos".as_ref(), cairn_node::api::no_progress()).await?;
//! let id = put.id.parse().expect("the daemon answers content ids");
//! client.get_to_path(id, "photos-copy".as_ref(), cairn_node::api::no_progress()).await?;
//! println!("{} peers", client.status().await?.connected_peers);
//! # Ok(()) }
//! ```
//!
//! A directory is put as the node puts one (the same walk): every file streamed as a part of
//! one upload, then each directory, deepest first, as one bounded request, the root's last
//! (which pins the tree). A get writes a file or tree whole or not at all, from framed bodies
//! (see [`crate::framed`]) so that a get that fails midway reports the daemon's reason.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_dht::Key;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::framed::{Decoder, Frame};
use crate::fsutil::{FileChanged, FileSnapshot};
use crate::http::ApiFiles;
use crate::manifest::{DirEntry, EntryKind};
use crate::tree::{GetPieces, Piece, PutPieces};
use crate::{
    ContentId, ContentPath, ContentRoot, GetError, GetSummary, KeyName, Name, Progress, ProgressFn,
    PutError,
};

/// The API's path prefix.
pub const API_PREFIX: &str = "/api/v0";

/// What `POST /api/v0/uploads` answers: the id to pass as `upload=` with the parts and
/// directories of one directory put.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct UploadReply {
    /// The upload's id.
    pub upload: u64,
}

/// What a put answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PutReply {
    /// The content id.
    pub id: String,
    /// File bytes.
    pub size: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// Copies placed on other peers.
    pub replicas: u64,
    /// Copies that failed.
    pub replica_failures: u64,
}

impl From<crate::PutSummary> for PutReply {
    fn from(s: crate::PutSummary) -> Self {
        Self {
            id: s.id.to_string(),
            size: s.size,
            chunks: s.chunks,
            replicas: s.replicas,
            replica_failures: s.replica_failures,
        }
    }
}

/// The body of `POST /api/v0/dir`: one directory, whose entries were stored before (files with
/// `put?part=true`, subdirectories with earlier `dir` requests). A tree is sent deepest
/// directories first, so every request is bounded by one directory's 4,096 entries whatever the
/// size of the tree.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DirBody {
    /// The entries, in any order; names unique.
    pub entries: Vec<ListingItem>,
    /// Whether this is the tree's root: it is then pinned and announced, with everything under
    /// it, and the upload ends.
    #[serde(default)]
    pub root: bool,
    /// The directory upload it belongs to (see `POST /api/v0/uploads`).
    #[serde(default)]
    pub upload: Option<u64>,
}

/// A manifest listing, as JSON.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Listing {
    /// "file" or "dir".
    pub kind: String,
    /// File bytes under it.
    pub size: u64,
    /// For a directory, its entries.
    pub entries: Vec<ListingItem>,
}

/// One entry of a [`Listing`].
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ListingItem {
    /// Entry name.
    pub name: String,
    /// "file" or "dir".
    pub kind: String,
    /// Content id.
    pub id: String,
    /// File bytes under it.
    pub size: u64,
}

/// What `GET /api/v0/count/<id>` answers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct FileCount {
    /// Files a get writes, each occurrence counted.
    pub files: u64,
}

/// The body of `POST /api/v0/names`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PublishBody {
    /// The content id the name points at.
    pub id: String,
    /// The record's lifetime in seconds, 1 to 604,800 (7 days) [default: 24 hours]; the node
    /// renews it at half its life while it runs.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// The key whose name to publish [default: `self`, the node's own name].
    #[serde(default)]
    pub key: Option<String>,
}

/// What `POST /api/v0/names` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PublishReply {
    /// The name published (`cairnname1…`).
    pub name: String,
    /// The key it was published under.
    pub key: String,
    /// The content id it points at.
    pub id: String,
    /// Peers that stored the record.
    pub stored: usize,
}

/// What `GET /api/v0/names/<name>` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NameReply {
    /// The name.
    pub name: String,
    /// The content id it points at now.
    pub id: String,
}

/// A key, as `GET /api/v0/keys` lists it and `POST`/`DELETE /api/v0/keys/<key>` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyReply {
    /// What the key is called on the node.
    pub key: String,
    /// The name it publishes (`cairnname1…`).
    pub name: String,
}

impl From<crate::KeyInfo> for KeyReply {
    fn from(k: crate::KeyInfo) -> Self {
        Self {
            key: k.key.to_string(),
            name: k.name.to_string(),
        }
    }
}

/// What `GET /api/v0/resolve/<id or name>[/path]` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ResolvedReply {
    /// The content id the path leads to.
    pub id: String,
    /// "file" or "dir".
    pub kind: String,
    /// File bytes under it.
    pub size: u64,
}

impl From<DirEntry> for ListingItem {
    fn from(e: DirEntry) -> Self {
        Self {
            name: e.name,
            kind: kind_name(e.kind).into(),
            id: ContentId::from_key(e.id).to_string(),
            size: e.size,
        }
    }
}

impl ListingItem {
    /// The directory entry it describes; the error says what is wrong with it.
    pub fn entry(&self) -> Result<DirEntry, String> {
        let kind = match self.kind.as_str() {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            other => {
                return Err(format!(
                    "entry {:?} has kind {other:?}; expected \"file\" or \"dir\"",
                    self.name
                ));
            }
        };
        let id: ContentId = self
            .id
            .parse()
            .map_err(|e| format!("entry {:?}: {e}", self.name))?;
        Ok(DirEntry {
            name: self.name.clone(),
            kind,
            id: id.key(),
            size: self.size,
        })
    }
}

/// How a listing names an entry's kind.
pub fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

/// What every route answers on failure, with a 4xx or 5xx status.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ErrorReply {
    /// What went wrong and what to do, in one line.
    pub error: String,
}

/// What `DELETE /api/v0/uploads/<n>` answers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct EndUploadReply {
    /// The upload.
    pub upload: u64,
    /// Whether it was still open.
    pub changed: bool,
}

/// What `POST` and `DELETE /api/v0/pins/<id>` answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PinReply {
    /// The content.
    pub id: String,
    /// Whether the pin was added (or removed) now, rather than already so.
    pub changed: bool,
}

/// A peer, as `GET /api/v0/peers` lists it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PeerReply {
    /// Its peer id.
    pub peer_id: String,
    /// The address it is known by.
    pub addr: String,
    /// The last round trip measured, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Whether that connection goes through a relay.
    pub relayed: bool,
}

impl From<crate::PeerInfo> for PeerReply {
    fn from(p: crate::PeerInfo) -> Self {
        Self {
            peer_id: p.peer_id.to_string(),
            addr: p.addr.to_string(),
            rtt_ms: p.rtt.map(|r| r.as_secs_f64() * 1000.0),
            connected: p.connected,
            relayed: p.relayed,
        }
    }
}

/// The body of `POST /api/v0/peers`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AddPeerBody {
    /// A multiaddr ending in `/p2p/<peer id>`, or an invite (`cairn1…`).
    pub addr: String,
}

/// What `POST /api/v0/peers` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AddPeerReply {
    /// Who was joined through.
    pub addr: String,
    /// Close peers that answered.
    pub peers: usize,
}

/// What `GET /api/v0/invite` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct InviteReply {
    /// The invite (`cairn1…`).
    pub ticket: String,
    /// The node's peer id.
    pub peer_id: String,
    /// The addresses it lists.
    pub addrs: Vec<String>,
}

/// What `GET /api/v0/status` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StatusReply {
    /// Chunk bytes fetched from peers since the start.
    pub chunk_bytes_received: u64,
    /// Chunk bytes served or pushed to peers since the start.
    pub chunk_bytes_sent: u64,
    /// The node's peer id.
    pub peer_id: String,
    /// The node's own name (`cairnname1…`).
    pub name: String,
    /// The addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// Peers in the routing table.
    pub routing_table: usize,
    /// Peers connected now.
    pub connected_peers: usize,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// The store's quota.
    pub quota_bytes: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// Chunks kept as pinned content.
    pub chunks_pinned: u64,
    /// Chunks kept as replicas for the network.
    pub chunks_replica: u64,
    /// Chunks kept as cache.
    pub chunks_cached: u64,
    /// Penalties given to misbehaving peers.
    pub penalised_peers: u64,
    /// Peers banned now.
    pub banned_peers: usize,
    /// Copies each chunk should have.
    pub replication: usize,
    /// The network's name.
    pub network: String,
    /// Requests refused by the rate limit.
    pub rate_limited_requests: u64,
    /// `public`, `private` or `unknown`.
    pub reachability: String,
    /// External addresses confirmed.
    pub external_addrs: Vec<String>,
    /// Relayed addresses reserved.
    pub relayed_addrs: Vec<String>,
    /// Hole punches that succeeded.
    pub hole_punches: u64,
    /// Hole punches that failed.
    pub hole_punch_failures: u64,
    /// Repair figures.
    pub repair: RepairReply,
}

/// The repair figures of a [`StatusReply`].
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RepairReply {
    /// Chunks this node is responsible for keeping placed.
    pub chunks_responsible: usize,
    /// Of those, chunks with fewer proven copies than the target.
    pub chunks_below_target: usize,
    /// Of those, chunks not yet checked.
    pub chunks_unaudited: usize,
    /// Chunks handed over to closer peers.
    pub handoffs: usize,
    /// Copies sent by repair.
    pub copies_sent: u64,
    /// Bytes sent by repair.
    pub bytes_sent: u64,
    /// Storage proofs that were right.
    pub proofs_valid: u64,
    /// Storage proofs that were wrong.
    pub proofs_invalid: u64,
    /// Chunks released after hand-over.
    pub released: u64,
}

/// What `GET /api/v0/health/<id>` answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HealthReply {
    /// The content.
    pub content: String,
    /// Copies each chunk should have.
    pub replication: usize,
    /// Distinct chunks, manifests included.
    pub chunks: usize,
    /// The fewest verified copies of any chunk.
    pub min: usize,
    /// The median of the chunks' verified copies.
    pub median: usize,
    /// The chunks with fewer verified copies than `replication`.
    pub at_risk: Vec<crate::ChunkHealth>,
    /// Every chunk's copies.
    pub copies: Vec<crate::ChunkHealth>,
}

/// The body of `POST /api/v0/gc`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default)]
pub struct GcBody {
    /// Only say what would be removed.
    #[serde(default)]
    pub dry_run: bool,
    /// Bytes of cache to keep.
    #[serde(default)]
    pub keep_bytes: u64,
}

/// What `POST /api/v0/gc` answers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct GcReply {
    /// Whether nothing was removed, only counted.
    pub dry_run: bool,
    /// Cached chunks removed (or that would be).
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Cache left.
    pub cache_left_bytes: u64,
}

/// What talking to a daemon can fail with. Each says what went wrong and what to do, in one
/// line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing listens where the daemon should be.
    #[error("no cairn daemon is running {0}; start one with 'cairn daemon'")]
    NoDaemon(String),
    /// The daemon refused the token.
    #[error("the daemon {target} refused the API token: {message}")]
    Token {
        /// Which daemon.
        target: String,
        /// What it said.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon {
        /// The HTTP status.
        status: u16,
        /// The daemon's own error.
        message: String,
    },
    /// The connection broke before an answer came.
    #[error(
        "the daemon {target} stopped answering during the request ({source}); nothing it stored before is lost: check that it still runs (start it with `cairn daemon`) and try again"
    )]
    Stopped {
        /// Which daemon.
        target: String,
        /// What broke.
        source: reqwest::Error,
    },
    /// A content body ended before its end.
    #[error("the daemon {target} stopped sending before the end of the content{detail}; try again")]
    Cut {
        /// Which daemon.
        target: String,
        /// What broke, if anything said (` (…)`).
        detail: String,
    },
    /// An answer was not what the API sends.
    #[error(
        "the daemon {target} sent an answer this client cannot read ({source}); is it the same version of cairn?"
    )]
    Reply {
        /// Which daemon.
        target: String,
        /// What was wrong with it.
        source: reqwest::Error,
    },
    /// The client could not be set up.
    #[error("cannot set up an HTTP client: {0}")]
    Setup(String),
    /// Reading what was to be put failed.
    #[error(transparent)]
    Put(#[from] PutError),
    /// Writing what was got failed, or the content is not what it should be.
    #[error(transparent)]
    Get(#[from] GetError),
}

/// A progress callback that ignores progress.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

/// A running daemon's API.
#[derive(Clone, Debug)]
pub struct Client {
    origin: String,
    token: String,
    http: reqwest::Client,
    /// What to name in errors: `at 127.0.0.1:5739`, `for /path/to/data`.
    target: String,
}

impl Client {
    /// The daemon whose API listens at `addr` (`127.0.0.1:5739`), with its token.
    pub fn new(addr: impl std::fmt::Display, token: impl Into<String>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            origin: format!("http://{addr}"),
            token: token.into(),
            http,
            target: format!("at {addr}"),
        })
    }

    /// The daemon of data directory `dir`, from the address and token it wrote there.
    pub fn from_data_dir(dir: &Path) -> Result<Self, Error> {
        let target = format!("for {}", dir.display());
        let (addr, token) = ApiFiles::new(dir)
            .read()
            .ok_or_else(|| Error::NoDaemon(target.clone()))?;
        Ok(Self {
            target,
            ..Self::new(addr, token)?
        })
    }

    /// The same daemon with another token.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            ..self
        }
    }

    /// The daemon's HTTP origin (`http://127.0.0.1:5739`): the gateway is under `/c/` and
    /// `/n/`, the web UI under `/ui/`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The token it sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Which daemon, as errors name it (`at 127.0.0.1:5739`, `for /path/to/data`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Puts a file or a directory tree (symbolic links and special files in it skipped); a
    /// file that changes while it is read fails the put, naming it.
    pub async fn put_path(&self, path: &Path, progress: ProgressFn) -> Result<PutReply, Error> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PutError::NotFound(path.to_owned()),
            _ => PutError::Read {
                path: path.to_owned(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            return self.put_dir(path, progress).await;
        }
        // The length is only for progress: pipes and /proc files say 0 and are read to their
        // end.
        let counter = Counter::new((meta.len() > 0).then_some(meta.len()), progress);
        self.upload_file(path, None, &counter).await
    }

    /// Puts what `body` yields, read to its end, as one file.
    pub async fn put_stream(
        &self,
        body: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static,
        progress: ProgressFn,
    ) -> Result<PutReply, Error> {
        let counter = Counter::new(None, progress);
        self.upload(counter.count(body), None).await
    }

    /// Puts a directory tree as one upload (see the module's documentation); an upload that
    /// fails is ended, so the daemon does not go on keeping its pieces.
    async fn put_dir(&self, root: &Path, progress: ProgressFn) -> Result<PutReply, Error> {
        let total = {
            let root = root.to_owned();
            tokio::task::spawn_blocking(move || crate::put::tree_size(&root))
                .await
                .map_err(|_| crate::NodeStopped)
                .map_err(PutError::from)??
        };
        let UploadReply { upload } = self.post_json("/uploads", &()).await?;
        let mut pieces = ApiPieces {
            client: self,
            upload,
            counter: Counter::new(Some(total), progress),
            sum: PutReply {
                id: String::new(),
                size: 0,
                chunks: 0,
                replicas: 0,
                replica_failures: 0,
            },
        };
        match crate::tree::put_tree(root, &mut pieces).await {
            Ok((id, size)) => Ok(PutReply {
                id: ContentId::from_key(id).to_string(),
                size,
                ..pieces.sum
            }),
            Err(e) => {
                // Best effort: the daemon also ends an upload whose piece failed, or that idles.
                let url = self.url(&format!("/uploads/{upload}"));
                let _ = self.send(self.http.delete(url)).await;
                Err(e)
            }
        }
    }

    /// Uploads one file, read to the end of what it gives; fails, naming it, if it changed
    /// while it was read.
    async fn upload_file(
        &self,
        path: &Path,
        part: Option<u64>,
        counter: &Counter,
    ) -> Result<PutReply, Error> {
        let read_error = |source| PutError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        let snapshot = FileSnapshot::of(&meta);
        let watch = file.try_clone().map_err(read_error)?;
        let read = Arc::new(AtomicU64::new(0));
        let changed = Arc::new(AtomicBool::new(false));
        let (counted, flag) = (read.clone(), changed.clone());
        // After the last byte, check the file against how it was when opened; an error here
        // aborts the upload, so the daemon never stores a mix of two versions.
        let check = futures::stream::once(async move {
            let now = watch.metadata()?;
            if snapshot.changed(&now, counted.load(Ordering::Relaxed)) {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other(FileChanged));
            }
            Ok(bytes::Bytes::new())
        })
        .try_filter(|b| futures::future::ready(!b.is_empty()));
        let body = counter
            .count(tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::from_std(file),
                256 << 10,
            ))
            .inspect_ok(move |b| {
                read.fetch_add(b.len() as u64, Ordering::Relaxed);
            })
            .chain(check);
        let result = self.upload(body, part).await;
        if changed.load(Ordering::Relaxed) {
            return Err(PutError::Changed(path.to_owned()).into());
        }
        result
    }

    /// Streams a body into a put (chunked: the length of what is read is known only at its end):
    /// content of its own, or with `part`, a file of that directory upload.
    async fn upload(
        &self,
        body: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static,
        part: Option<u64>,
    ) -> Result<PutReply, Error> {
        let mut request = self.http.post(self.url("/put"));
        if let Some(upload) = part {
            request = request.query(&[("part", "true"), ("upload", &upload.to_string())]);
        }
        let request = request.body(reqwest::Body::wrap_stream(body));
        self.json(self.send(request).await?).await
    }

    /// Writes the file or directory tree `id` is to `out`, as [`crate::Node::get_to_file`]
    /// does: whole or not at all; an existing file is replaced, a device or FIFO written to in
    /// place, an existing directory refused.
    pub async fn get_to_path(
        &self,
        id: ContentId,
        out: &Path,
        progress: ProgressFn,
    ) -> Result<GetSummary, Error> {
        let listing = self.ls(id).await?;
        let total = listing.size;
        let root = ApiGet::piece(id, listing)?;
        // The total, before the first byte.
        progress(Progress {
            done: 0,
            total: Some(total),
        });
        let mut done = 0u64;
        let mut report = |n| {
            done += n;
            progress(Progress {
                done,
                total: Some(total),
            });
        };
        crate::tree::get_tree(&mut ApiGet { client: self }, id, root, out, &mut report).await
    }

    /// A file's bytes as they arrive. The stream ends with the daemon's error if the get
    /// failed, or with [`Error::Cut`] if the body was cut short.
    pub async fn get_stream(
        &self,
        id: ContentId,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, Error>> + Send + use<>, Error> {
        let request = self
            .http
            .get(self.url(&format!("/get/{id}")))
            .query(&[("framed", true)]);
        let response = self.send(request).await?;
        let target = self.target.clone();
        let body = Box::pin(response.bytes_stream());
        Ok(futures::stream::try_unfold(
            (body, Decoder::new()),
            move |(mut body, mut decoder)| {
                let target = target.clone();
                async move {
                    loop {
                        let frame = decoder.next_frame().map_err(|e| Error::Cut {
                            target: target.clone(),
                            detail: format!(" ({e})"),
                        })?;
                        match frame {
                            Some(Frame::Data(bytes)) => return Ok(Some((bytes, (body, decoder)))),
                            Some(Frame::Error(message)) => {
                                return Err(Error::Daemon {
                                    status: 500,
                                    message,
                                });
                            }
                            Some(Frame::End) => return Ok(None),
                            None => {}
                        }
                        match body.next().await {
                            Some(Ok(piece)) => decoder.push(&piece),
                            Some(Err(e)) => {
                                return Err(Error::Cut {
                                    target,
                                    detail: format!(" ({e})"),
                                });
                            }
                            None => {
                                return Err(Error::Cut {
                                    target,
                                    detail: String::new(),
                                });
                            }
                        }
                    }
                }
            },
        ))
    }

    /// The content id `target` (`ID[/path]` or `NAME[/path]`) leads to: itself for a bare id,
    /// else asked of the daemon, which resolves the name and follows the path.
    pub async fn resolve_path(&self, target: &ContentPath) -> Result<ContentId, Error> {
        if let (ContentRoot::Id(id), "") = (target.root, target.path.as_str()) {
            return Ok(id);
        }
        let mut path = format!("/resolve/{}", segment(&target.root.to_string()));
        for s in target.path.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.push_str(&segment(s));
        }
        let reply: ResolvedReply = self.get_json(&path).await?;
        self.content_id(&reply.id)
    }

    /// What `id` is: a file's size, or a directory's entries.
    pub async fn ls(&self, id: ContentId) -> Result<Listing, Error> {
        self.get_json(&format!("/ls/{id}")).await
    }

    /// How many files a get of `id` writes; refused past the limit.
    pub async fn count(&self, id: ContentId) -> Result<FileCount, Error> {
        self.get_json(&format!("/count/{id}")).await
    }

    /// The pinned content ids.
    pub async fn pins(&self) -> Result<Vec<String>, Error> {
        self.get_json("/pins").await
    }

    /// Pins `id` (fetching what is missing), or with `add` false unpins it.
    pub async fn pin(&self, id: ContentId, add: bool) -> Result<PinReply, Error> {
        let url = self.url(&format!("/pins/{id}"));
        let request = if add {
            self.http.post(url)
        } else {
            self.http.delete(url)
        };
        self.json(self.send(request).await?).await
    }

    /// The peers of the routing table.
    pub async fn peers(&self) -> Result<Vec<PeerReply>, Error> {
        self.get_json("/peers").await
    }

    /// Joins the network through `addr`: a multiaddr ending in `/p2p/<peer id>`, or an invite.
    pub async fn add_peer(&self, addr: &str) -> Result<AddPeerReply, Error> {
        let body = AddPeerBody {
            addr: addr.to_owned(),
        };
        self.post_json("/peers", &body).await
    }

    /// An invite to the daemon's node.
    pub async fn invite(&self) -> Result<InviteReply, Error> {
        self.get_json("/invite").await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusReply, Error> {
        self.get_json("/status").await
    }

    /// Verified copies of each chunk of `id` on other peers.
    pub async fn health(&self, id: ContentId) -> Result<HealthReply, Error> {
        self.get_json(&format!("/health/{id}")).await
    }

    /// Removes cached chunks beyond `keep_bytes`, oldest first (or only counts them).
    pub async fn gc(&self, body: GcBody) -> Result<GcReply, Error> {
        self.post_json("/gc", &body).await
    }

    /// Publishes the name of `key` (default: the node's own) pointing at `id` for `ttl`.
    pub async fn publish(
        &self,
        id: ContentId,
        key: Option<&KeyName>,
        ttl: Duration,
    ) -> Result<PublishReply, Error> {
        let body = PublishBody {
            id: id.to_string(),
            ttl_secs: Some(ttl.as_secs()),
            key: key.map(ToString::to_string),
        };
        self.post_json("/names", &body).await
    }

    /// What `name` points at now.
    pub async fn resolve_name(&self, name: &Name) -> Result<NameReply, Error> {
        self.get_json(&format!("/names/{name}")).await
    }

    /// The node's named keys.
    pub async fn keys(&self) -> Result<Vec<KeyReply>, Error> {
        self.get_json("/keys").await
    }

    /// Creates key `key`.
    pub async fn generate_key(&self, key: &KeyName) -> Result<KeyReply, Error> {
        let url = self.url(&format!("/keys/{key}"));
        self.json(self.send(self.http.post(url)).await?).await
    }

    /// Removes key `key`: its name is no longer renewed.
    pub async fn remove_key(&self, key: &KeyName) -> Result<KeyReply, Error> {
        let url = self.url(&format!("/keys/{key}"));
        self.json(self.send(self.http.delete(url)).await?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.origin)
    }

    fn content_id(&self, text: &str) -> Result<ContentId, Error> {
        text.parse().map_err(|e| Error::Daemon {
            status: 500,
            message: format!("the daemon {} answered a bad content id: {e}", self.target),
        })
    }

    /// `GET /api/v0{path}`, its JSON reply.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.json(self.send(self.http.get(self.url(path))).await?)
            .await
    }

    /// `POST /api/v0{path}` with a JSON body, its JSON reply.
    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        let request = self.http.post(self.url(path)).json(body);
        self.json(self.send(request).await?).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        response.json().await.map_err(|source| Error::Reply {
            target: self.target.clone(),
            source,
        })
    }

    /// Sends with the token; turns a refused connection and an error status into errors.
    /// A request whose body can be sent again (all but streamed uploads) is retried a few
    /// times, backing off, when the connection closes before an answer: the daemon closes new
    /// connections at once while its connection table is full (see [`crate::http`]).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let request = request.bearer_auth(&self.token);
        let mut backoff = Duration::from_millis(250);
        // Only requests that are safe to repeat: reads, and the directory steps of an upload.
        let idempotent = request
            .try_clone()
            .and_then(|r| r.build().ok())
            .is_some_and(|r| {
                r.method() == reqwest::Method::GET || r.url().path().ends_with("/dir")
            });
        let mut retries = if idempotent { 4 } else { 0 };
        let response = loop {
            let again = if retries > 0 {
                request.try_clone()
            } else {
                None
            };
            let attempt = match again {
                Some(copy) => copy.send().await,
                None => break request.send().await,
            };
            match attempt {
                Err(e) if !e.is_connect() && !e.is_timeout() => {
                    tracing::debug!(%e, "the daemon closed the connection; trying again");
                    retries -= 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => break other,
            }
        };
        let response = response.map_err(|e| {
            if e.is_connect() {
                Error::NoDaemon(self.target.clone())
            } else {
                // Connected, then the answer never came: the daemon died or dropped the request.
                Error::Stopped {
                    target: self.target.clone(),
                    source: e,
                }
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let message = response
            .json::<ErrorReply>()
            .await
            .map(|r| r.error)
            .unwrap_or_else(|_| format!("the daemon answered {status}"));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Token {
                target: self.target.clone(),
                message,
            });
        }
        Err(Error::Daemon {
            status: status.as_u16(),
            message,
        })
    }
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Bytes sent so far, told to a progress callback.
struct Counter {
    done: Arc<AtomicU64>,
    total: Option<u64>,
    progress: ProgressFn,
}

impl Counter {
    fn new(total: Option<u64>, progress: ProgressFn) -> Self {
        Self {
            done: Arc::new(AtomicU64::new(0)),
            total,
            progress,
        }
    }

    /// `stream`, counting its bytes.
    fn count<S>(&self, stream: S) -> impl Stream<Item = std::io::Result<bytes::Bytes>> + use<S>
    where
        S: Stream<Item = std::io::Result<bytes::Bytes>>,
    {
        let (done, total, progress) = (self.done.clone(), self.total, self.progress.clone());
        stream.inspect_ok(move |b| {
            let done = done.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
            progress(Progress { done, total });
        })
    }
}

/// How the client's directory put stores its pieces: each file a part of one upload, each
/// directory one `dir` request.
struct ApiPieces<'a> {
    client: &'a Client,
    upload: u64,
    counter: Counter,
    /// Chunks and copies so far.
    sum: PutReply,
}

impl ApiPieces<'_> {
    fn add(&mut self, reply: &PutReply) -> Result<(Key, u64), Error> {
        self.sum.chunks += reply.chunks;
        self.sum.replicas += reply.replicas;
        self.sum.replica_failures += reply.replica_failures;
        Ok((self.client.content_id(&reply.id)?.key(), reply.size))
    }
}

impl PutPieces for ApiPieces<'_> {
    type Error = Error;

    async fn file(&mut self, path: &Path) -> Result<(Key, u64), Error> {
        let reply = self
            .client
            .upload_file(path, Some(self.upload), &self.counter)
            .await?;
        self.add(&reply)
    }

    async fn dir(
        &mut self,
        entries: Vec<DirEntry>,
        _dir: &Path,
        root: bool,
    ) -> Result<(Key, u64), Error> {
        let body = DirBody {
            entries: entries.into_iter().map(ListingItem::from).collect(),
            root,
            upload: Some(self.upload),
        };
        let reply: PutReply = self.client.post_json("/dir", &body).await?;
        self.add(&reply)
    }
}

/// How the client's get fetches the pieces of a tree: listings and framed file bodies.
struct ApiGet<'a> {
    client: &'a Client,
}

impl ApiGet<'_> {
    /// What a listing of `id` says it is.
    fn piece(id: ContentId, listing: Listing) -> Result<Piece<ContentId>, Error> {
        if listing.kind != "dir" {
            return Ok(Piece::File(id));
        }
        let entries = listing
            .entries
            .iter()
            .map(ListingItem::entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| GetError::Manifest {
                content: id,
                source: crate::ManifestError::Invalid("the daemon listed a malformed entry"),
            })?;
        Ok(Piece::Dir(entries))
    }
}

impl GetPieces for ApiGet<'_> {
    type File = ContentId;
    type Error = Error;

    async fn open(&mut self, id: Key, entry: &DirEntry) -> Result<Piece<ContentId>, Error> {
        let id = ContentId::from_key(id);
        match entry.kind {
            EntryKind::File => Ok(Piece::File(id)),
            EntryKind::Dir => {
                let listing = self.client.ls(id).await?;
                if listing.kind != "dir" || listing.size != entry.size {
                    return Err(GetError::Manifest {
                        content: id,
                        source: crate::ManifestError::Invalid(
                            "an entry's size or kind differs from its content",
                        ),
                    }
                    .into());
                }
                Self::piece(id, listing)
            }
        }
    }

    async fn count(&mut self, id: ContentId) -> Result<(), Error> {
        self.client.count(id).await.map(|_| ())
    }

    async fn bytes(
        &mut self,
        id: ContentId,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, Error>> + Send + 'static, Error> {
        self.client.get_stream(id).await
    }
}
