//! Put: chunk, store locally, then place every chunk on its closest peers.
//!
//! Chunking runs on a blocking thread and hands chunk ids to the async side through a bounded
//! channel; replication reads each chunk back from the store when its turn comes. Memory is
//! bounded by the channel, [`REPLICATION_WINDOW`] and one manifest per tree level, whatever the
//! size of the input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_dht::Key;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::driver::Command;
use crate::error::{NodeStopped, PutError};
use crate::manifest::{
    DirEntry, EntryKind, INLINE_MAX, Link, MAX_DEPTH, MAX_LINKS, MAX_NAME, Manifest, TreeBuilder,
    valid_name,
};
use crate::store::{Reason, Staging, Store};
use crate::{ContentId, Node, chunker};

/// Chunks being replicated at once.
pub const REPLICATION_WINDOW: usize = 8;

/// How many chunks behind the reading a put waits for the disk to hold them.
const SYNC_LAG: usize = 8;

/// Progress of a put or a get, in file bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done (for a put: stored and sent to their peers).
    pub done: u64,
    /// Bytes in all, when known.
    pub total: Option<u64>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What a put stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutSummary {
    /// The content id.
    pub id: ContentId,
    /// File bytes.
    pub size: u64,
    /// Chunks, manifests included.
    pub chunks: u64,
    /// Copies stored on other peers.
    pub replicas: u64,
    /// Copies that a chosen peer refused or did not take.
    pub replica_failures: u64,
}

/// A directory put that arrives in pieces ([`Node::put_part`], [`Node::put_dir_entries`]): keeps
/// everything its pieces stored from eviction until its root pins the tree, so a slow upload
/// under quota pressure does not lose its first files to its last. Dropping every clone (the
/// upload finished, failed or was abandoned) or a restart makes the pieces evictable cache.
#[derive(Clone, Debug)]
pub struct Upload {
    staging: Arc<Staging>,
}

struct Tally {
    /// Keeps what the put stored from eviction until it is pinned (or the put fails).
    staging: Arc<Staging>,
    done: AtomicU64,
    total: Option<u64>,
    replicas: AtomicU64,
    failures: AtomicU64,
    chunks: AtomicU64,
    progress: ProgressFn,
}

impl Tally {
    fn new(store: &Store, total: Option<u64>, progress: ProgressFn) -> Arc<Self> {
        Self::staged(Arc::new(store.staging()), total, progress)
    }

    fn staged(staging: Arc<Staging>, total: Option<u64>, progress: ProgressFn) -> Arc<Self> {
        Arc::new(Self {
            staging,
            done: AtomicU64::new(0),
            total,
            replicas: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            progress,
        })
    }

    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (self.progress)(Progress {
            done,
            total: self.total,
        });
    }

    fn summary(&self, id: ContentId, size: u64) -> PutSummary {
        PutSummary {
            id,
            size,
            chunks: self.chunks.load(Ordering::Relaxed),
            replicas: self.replicas.load(Ordering::Relaxed),
            replica_failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

impl Node {
    /// Starts a directory put that arrives in pieces.
    pub fn begin_upload(&self) -> Upload {
        Upload {
            staging: Arc::new(self.inner.store.staging()),
        }
    }

    /// Puts the bytes in memory.
    pub async fn put_bytes(&self, bytes: Vec<u8>) -> Result<PutSummary, PutError> {
        let total = bytes.len() as u64;
        self.put_reader(std::io::Cursor::new(bytes), Some(total), no_progress())
            .await
    }

    /// Puts a file.
    pub async fn put_file(&self, path: &Path) -> Result<PutSummary, PutError> {
        self.put_file_with(path, no_progress()).await
    }

    /// Puts a file, reporting progress.
    pub async fn put_file_with(
        &self,
        path: &Path,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        let file = crate::fsutil::WatchedFile::open(path).map_err(|e| read_error(path, e))?;
        let total = Some(file.snapshot().len());
        self.put_one(file, path.to_owned(), total, progress).await
    }

    /// Puts everything read from `reader` (e.g. standard input), reporting progress.
    pub async fn put_reader(
        &self,
        reader: impl Read + Send + 'static,
        total: Option<u64>,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        self.put_one(reader, PathBuf::from("-"), total, progress)
            .await
    }

    /// Puts a directory tree. Symbolic links and special files are skipped (with a warning).
    pub async fn put_dir(&self, path: &Path) -> Result<PutSummary, PutError> {
        self.put_dir_with(path, no_progress()).await
    }

    /// Puts a directory tree, reporting progress. The tree is walked iteratively, deepest
    /// directories sealed first, and refused with [`PutError::TooDeep`] past
    /// [`MAX_DEPTH`] levels.
    pub async fn put_dir_with(
        &self,
        path: &Path,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        let meta = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
        if !meta.is_dir() {
            return self.put_file_with(path, progress).await;
        }
        let total = {
            let p = path.to_owned();
            tokio::task::spawn_blocking(move || tree_size(&p))
                .await
                .map_err(|_| NodeStopped)??
        };
        let tally = Tally::new(&self.inner.store, Some(total), progress);
        let mut pieces = Pieces {
            node: self,
            tally: &tally,
        };
        let (id, size) = crate::tree::put_tree(path, &mut pieces).await?;
        self.finish_put(id, size, &tally).await
    }

    /// Pins the content just stored (every chunk under the root, in one transaction), keeps
    /// as replicas the chunks this node is responsible for, and announces it. Until then its
    /// chunks were cache, staged against eviction while the put ran, so a put that fails, is
    /// cancelled or is killed leaves nothing behind that the quota cannot evict.
    async fn finish_put(
        &self,
        root: Key,
        size: u64,
        tally: &Tally,
    ) -> Result<PutSummary, PutError> {
        let id = ContentId::from_key(root);
        let staging = self.inner.store.staging();
        let ids = self
            .walk(id, false, &staging)
            .await
            .map_err(|e| PutError::Pin(Box::new(e)))?;
        let mine = self
            .call(|reply| Command::Responsible {
                keys: ids.clone(),
                reply,
            })
            .await?;
        // Pinned, and marked a replica where responsible, in one commit.
        let store = self.inner.store.clone();
        let pinning = store.clone();
        tokio::task::spawn_blocking(move || pinning.pin_put(&root, &ids, &mine))
            .await
            .map_err(|_| NodeStopped)?
            .map_err(|e| PutError::Pin(Box::new(e.into())))?;
        // The copy of the pins beside the index, after the put has returned.
        tokio::task::spawn_blocking(move || store.flush_pins_list());
        let _ = self.tell(Command::Announce { key: root }).await;
        Ok(tally.summary(id, size))
    }

    /// Puts a file that will be one entry of a directory built with [`Node::put_dir_entries`]:
    /// its chunks are stored (as evictable cache until the directory's root pins them), but it is
    /// not pinned or announced as content of its own. (This is how a directory arrives over the
    /// HTTP API, one streamed file at a time.)
    pub async fn put_part(
        &self,
        reader: impl Read + Send + 'static,
        total: Option<u64>,
        progress: ProgressFn,
        upload: &Upload,
    ) -> Result<PutSummary, PutError> {
        let tally = Tally::staged(upload.staging.clone(), total, progress);
        let (id, size) = self.put_stream(reader, PathBuf::from("-"), &tally).await?;
        Ok(tally.summary(ContentId::from_key(id), size))
    }

    /// One file's put, pinned and announced as content of its own.
    async fn put_one(
        &self,
        reader: impl Read + Send + 'static,
        path: PathBuf,
        total: Option<u64>,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        let tally = Tally::new(&self.inner.store, total, progress);
        let (id, size) = self.put_stream(reader, path, &tally).await?;
        self.finish_put(id, size, &tally).await
    }

    /// Stores one directory manifest whose entries are files and directories already stored on
    /// this node (with [`Node::put_part`] and earlier calls of this): how a directory arrives
    /// over the HTTP API, deepest directories first, one bounded request each. Every entry is
    /// checked against what it names: the id must be stored here, a file entry must name a file
    /// and a directory entry a directory, and the size must be the content's. With `root`, the
    /// whole tree is pinned and announced; otherwise it stays evictable cache until its root is.
    pub async fn put_dir_entries(
        &self,
        entries: Vec<DirEntry>,
        root: bool,
        upload: &Upload,
    ) -> Result<PutSummary, PutError> {
        if entries.len() > MAX_LINKS {
            return Err(PutError::TooManyEntries(PathBuf::from("-")));
        }
        for e in &entries {
            self.check_entry(e).await?;
        }
        let tally = Tally::staged(upload.staging.clone(), None, no_progress());
        let (id, size) = self.seal_dir(entries, Path::new("-"), &tally).await?;
        if root {
            self.finish_put(id, size, &tally).await
        } else {
            Ok(tally.summary(ContentId::from_key(id), size))
        }
    }

    /// Checks a directory entry given by a client against the manifest it names.
    async fn check_entry(&self, e: &DirEntry) -> Result<(), PutError> {
        let bad = |reason: &'static str| PutError::BadEntry {
            name: e.name.clone(),
            reason,
        };
        check_name(&e.name, Path::new(&e.name))?;
        let store = self.inner.store.clone();
        let id = e.id;
        let bytes = tokio::task::spawn_blocking(move || store.read(&id))
            .await
            .map_err(|_| NodeStopped)??
            .ok_or(bad(
                "its id is not stored on this node; upload it first (or it was evicted: raise the quota)",
            ))?;
        let manifest = Manifest::decode(&bytes).map_err(|_| bad("its id is not a manifest"))?;
        match (&manifest, e.kind) {
            (Manifest::Dir { .. }, EntryKind::File) => {
                return Err(bad("it is listed as a file but its id is a directory"));
            }
            (Manifest::File { .. } | Manifest::FileTree { .. }, EntryKind::Dir) => {
                return Err(bad("it is listed as a directory but its id is a file"));
            }
            _ => {}
        }
        if manifest.size() != e.size {
            return Err(bad("its size differs from its content's"));
        }
        Ok(())
    }

    /// Stores a directory manifest of `entries` (sorted here; names must be unique) and places
    /// it; returns its id and size. `dir` names the directory in errors.
    async fn seal_dir(
        &self,
        mut entries: Vec<DirEntry>,
        dir: &Path,
        tally: &Arc<Tally>,
    ) -> Result<(Key, u64), PutError> {
        if entries.len() > MAX_LINKS {
            return Err(PutError::TooManyEntries(dir.to_owned()));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(PutError::DuplicateName(w[0].name.clone()));
        }
        let manifest = Manifest::Dir { entries };
        let size = manifest.size();
        let bytes = manifest.encode();
        let id = Key::hash(&bytes);
        tally.staging.add(&id);
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.insert(&id, &bytes, Reason::Cache))
            .await
            .map_err(|_| NodeStopped)??;
        tally.chunks.fetch_add(1, Ordering::Relaxed);
        self.replicate(id, 0, tally).await;
        Ok((id, size))
    }

    /// Chunks `reader` into the store and replicates every chunk; returns the root manifest id
    /// and the byte count.
    async fn put_stream(
        &self,
        reader: impl Read + Send + 'static,
        path: PathBuf,
        tally: &Arc<Tally>,
    ) -> Result<(Key, u64), PutError> {
        let (tx, rx) = mpsc::channel::<(Key, u64)>(2 * REPLICATION_WINDOW);
        let store = self.inner.store.clone();
        let staging = tally.clone();
        let chunking = tokio::task::spawn_blocking(move || {
            chunk_into(reader, &path, &store, &staging.staging, &tx)
        });
        let replicated = tokio_stream_of(rx)
            .map(|(id, len)| self.replicate(id, len, tally))
            .buffer_unordered(REPLICATION_WINDOW)
            .count();
        let (chunked, _) = tokio::join!(chunking, replicated);
        let (root, size, chunks) = chunked.map_err(|_| NodeStopped)??;
        tally.chunks.fetch_add(chunks, Ordering::Relaxed);
        Ok((root, size))
    }

    /// Places one chunk on its closest peers. Failures are counted, not fatal: the chunk is
    /// stored here, and a later repair or put can place it again.
    async fn replicate(&self, id: Key, len: u64, tally: &Tally) {
        // This node serves the chunk from now on (and keeps it placed as peers come and go).
        let _ = self.tell(Command::Hold { key: id }).await;
        let placement = match self.call(|reply| Command::Place { key: id, reply }).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                warn!(%id, %e, "could not place a chunk");
                tally.failures.fetch_add(1, Ordering::Relaxed);
                tally.advance(len);
                return;
            }
            Err(NodeStopped) => return,
        };
        // Whether this node keeps it as a replica is settled when the put pins (finish_put):
        // a put that fails must leave only evictable cache.
        let store = self.inner.store.clone();
        let bytes = tokio::task::spawn_blocking(move || store.read(&id)).await;
        let bytes = match bytes {
            Ok(Ok(Some(bytes))) => bytes,
            other => {
                warn!(%id, ?other, "chunk vanished from the store before replication");
                tally.advance(len);
                return;
            }
        };
        let sends = placement.peers.into_iter().map(|to| {
            let bytes = bytes.clone();
            async move {
                self.call(|reply| Command::SendChunk {
                    to,
                    id,
                    bytes,
                    reply,
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
        });
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => {
                    tally.replicas.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    debug!(%id, %e, "a replica was not stored");
                    tally.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tally.advance(len);
    }
}

/// Chunks `reader`, storing chunks and manifests (as cache until the put pins its root), sending
/// each id (with the file bytes it covers) to be replicated. Returns (root, size, chunk count).
fn chunk_into(
    reader: impl Read,
    path: &Path,
    store: &Store,
    staging: &Staging,
    tx: &mpsc::Sender<(Key, u64)>,
) -> Result<(Key, u64, u64), PutError> {
    let mut tree = TreeBuilder::new();
    let (mut size, mut count) = (0u64, 0u64);
    // Chunks are written without waiting for the disk and synced SYNC_LAG chunks behind (and
    // the last ones once all are read), so that the fsyncs overlap the reading and the
    // placing of the chunks after them rather than delaying every one.
    let mut unsynced = std::collections::VecDeque::new();
    let mut emit = |id: Key, bytes: &[u8], len: u64| -> Result<(), PutError> {
        staging.add(&id);
        store.insert_put(&id, bytes)?;
        count += 1;
        // A closed channel means the put was abandoned: stop reading.
        tx.blocking_send((id, len)).map_err(|_| NodeStopped)?;
        unsynced.push_back(id);
        if unsynced.len() > SYNC_LAG {
            let due: Vec<Key> = unsynced.drain(..unsynced.len() - SYNC_LAG).collect();
            store.sync_chunks(&due)?;
        }
        Ok(())
    };
    // A file of one small chunk goes inside its manifest: one chunk to place, not two.
    let mut chunks = chunker::chunks(reader);
    let mut head = Vec::with_capacity(2);
    for chunk in chunks.by_ref().take(2) {
        head.push(chunk.map_err(|e| read_error(path, e))?);
    }
    if head.len() == 1 && head[0].len() <= INLINE_MAX {
        let data = head.pop().unwrap_or_default();
        let len = data.len() as u64;
        let manifest = Manifest::inline(data).encode();
        let id = Key::hash(&manifest);
        emit(id, &manifest, len)?;
        store.sync_chunks(&[id])?;
        return Ok((id, len, count));
    }
    for chunk in head.into_iter().map(Ok).chain(chunks) {
        let bytes = chunk.map_err(|e| read_error(path, e))?;
        let id = Key::hash(&bytes);
        let len = bytes.len() as u64;
        size += len;
        emit(id, &bytes, len)?;
        for (mid, mbytes) in tree.push(Link { id, size: len }) {
            emit(mid, &mbytes, 0)?;
        }
    }
    let (rest, root) = tree.finish();
    for (mid, mbytes) in rest {
        emit(mid, &mbytes, 0)?;
    }
    store.sync_chunks(unsynced.make_contiguous())?;
    Ok((root, size, count))
}

/// A stream over a bounded receiver.
pub(crate) fn tokio_stream_of<T>(rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

fn read_error(path: &Path, source: std::io::Error) -> PutError {
    if crate::fsutil::is_changed(&source) {
        PutError::Changed(path.to_owned())
    } else if source.kind() == std::io::ErrorKind::NotFound {
        PutError::NotFound(path.to_owned())
    } else {
        PutError::Read {
            path: path.to_owned(),
            source,
        }
    }
}

/// Bytes of the regular files under `dir`, for a progress total (one walk of metadata only).
pub(crate) fn tree_size(dir: &Path) -> Result<u64, PutError> {
    let mut total = 0u64;
    for step in DirWalk::new(dir)? {
        if let WalkStep::File { len, .. } = step? {
            total = total.saturating_add(len);
        }
    }
    Ok(total)
}

/// A step of a [`DirWalk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkStep {
    /// A subdirectory of the current directory is entered; the steps that follow, up to its
    /// [`WalkStep::Close`], are inside it.
    Open {
        /// Its name.
        name: String,
    },
    /// A regular file in the current directory.
    File {
        /// Its name.
        name: String,
        /// Its path.
        path: PathBuf,
        /// Its length when listed.
        len: u64,
    },
    /// A symbolic link or special file, not put.
    Skipped {
        /// Its path.
        path: PathBuf,
    },
    /// The current directory is complete (the last `Close` is the root's).
    Close {
        /// Its path.
        dir: PathBuf,
    },
}

/// Walks a directory tree on disk depth-first, without recursion, in name order: each directory
/// is listed once, checked (entry names, [`MAX_LINKS`] entries, [`MAX_DEPTH`] levels), and closed
/// after everything in it, so a caller can seal directories deepest first. The library's
/// [`Node::put_dir`] and the command line's upload share it.
#[derive(Debug)]
pub struct DirWalk {
    /// Open directories, the root first; each with its path and its children still to visit
    /// (in reverse name order, so the next is at the end).
    stack: Vec<(PathBuf, Vec<(String, PathBuf)>)>,
}

impl DirWalk {
    /// Starts at `root`, which must be a directory.
    pub fn new(root: &Path) -> Result<Self, PutError> {
        let children = list_dir(root)?;
        Ok(Self {
            stack: vec![(root.to_owned(), children)],
        })
    }
}

impl Iterator for DirWalk {
    type Item = Result<WalkStep, PutError>;

    /// The next step, or `None` after the root's [`WalkStep::Close`].
    fn next(&mut self) -> Option<Result<WalkStep, PutError>> {
        let depth = self.stack.len();
        let (_, children) = self.stack.last_mut()?;
        let Some((name, path)) = children.pop() else {
            let (dir, _) = self.stack.pop()?;
            return Some(Ok(WalkStep::Close { dir }));
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => return Some(Err(read_error(&path, e))),
        };
        Some(if meta.is_dir() {
            if depth >= MAX_DEPTH {
                return Some(Err(PutError::TooDeep(path)));
            }
            match list_dir(&path) {
                Ok(children) => {
                    self.stack.push((path, children));
                    Ok(WalkStep::Open { name })
                }
                Err(e) => Err(e),
            }
        } else if meta.is_file() {
            Ok(WalkStep::File {
                name,
                path,
                len: meta.len(),
            })
        } else {
            Ok(WalkStep::Skipped { path })
        })
    }
}

/// Refuses a name no directory entry may have, saying why.
fn check_name(name: &str, path: &Path) -> Result<(), PutError> {
    if name.len() > MAX_NAME {
        Err(PutError::NameTooLong(path.to_owned()))
    } else if !valid_name(name) {
        Err(PutError::BadName(path.to_owned()))
    } else {
        Ok(())
    }
}

/// The children of `dir` with valid names, in reverse name order.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, PutError> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| PutError::BadName(entry.path()))?;
        check_name(&name, &entry.path())?;
        children.push((name, entry.path()));
        if children.len() > MAX_LINKS {
            return Err(PutError::TooManyEntries(dir.to_owned()));
        }
    }
    children.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(children)
}

/// How a node's own directory put stores its pieces: chunked into its store and placed on
/// their peers, as one put's tally.
struct Pieces<'a> {
    node: &'a Node,
    tally: &'a Arc<Tally>,
}

impl crate::tree::PutPieces for Pieces<'_> {
    type Error = PutError;

    async fn file(&mut self, path: &Path) -> Result<(Key, u64), PutError> {
        let file = crate::fsutil::WatchedFile::open(path).map_err(|e| read_error(path, e))?;
        self.node
            .put_stream(file, path.to_owned(), self.tally)
            .await
    }

    async fn dir(
        &mut self,
        entries: Vec<DirEntry>,
        dir: &Path,
        _root: bool,
    ) -> Result<(Key, u64), PutError> {
        self.node.seal_dir(entries, dir, self.tally).await
    }
}
