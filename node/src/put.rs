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
use crate::manifest::{DirEntry, EntryKind, Link, MAX_LINKS, Manifest, TreeBuilder, valid_name};
use crate::store::{Reason, Store};
use crate::{ContentId, Node, chunker};

/// Chunks being replicated at once.
pub const REPLICATION_WINDOW: usize = 8;

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

struct Tally {
    done: AtomicU64,
    total: Option<u64>,
    replicas: AtomicU64,
    failures: AtomicU64,
    chunks: AtomicU64,
    progress: ProgressFn,
}

impl Tally {
    fn new(total: Option<u64>, progress: ProgressFn) -> Arc<Self> {
        Arc::new(Self {
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
        let file = open(path)?;
        let total = file.metadata().map(|m| m.len()).ok();
        self.put_one(file, path.to_owned(), total, progress, true)
            .await
    }

    /// Puts everything read from `reader` (e.g. standard input), reporting progress.
    pub async fn put_reader(
        &self,
        reader: impl Read + Send + 'static,
        total: Option<u64>,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        self.put_one(reader, PathBuf::from("-"), total, progress, true)
            .await
    }

    /// Puts a directory tree. Symbolic links and special files are skipped (with a warning).
    pub async fn put_dir(&self, path: &Path) -> Result<PutSummary, PutError> {
        self.put_dir_with(path, no_progress()).await
    }

    /// Puts a directory tree, reporting progress.
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
                .map_err(|_| NodeStopped)?
        };
        let tally = Tally::new(Some(total), progress);
        let listing = self.put_files_under(path, &tally).await?;
        let mut tree = DirTree::default();
        for entry in listing {
            tree.insert(&entry)?;
        }
        let (root, size) = self.seal_dir(tree, &tally).await?;
        self.finish_put(root, size, &tally).await
    }

    /// Pins the content just stored (every chunk under the root, in one transaction) and
    /// announces it. Until then its chunks were evictable cache, so a put that fails, is
    /// cancelled or is killed leaves nothing pinned behind.
    async fn finish_put(
        &self,
        root: Key,
        size: u64,
        tally: &Tally,
    ) -> Result<PutSummary, PutError> {
        let id = ContentId::from_key(root);
        self.pin_walk(id, false)
            .await
            .map_err(|e| PutError::Pin(Box::new(e)))?;
        let _ = self.tell(Command::Announce { key: root }).await;
        Ok(tally.summary(id, size))
    }

    /// Puts a file that will be one entry of a directory built by [`Node::put_listing`]: its
    /// chunks are stored (as evictable cache until the directory pins them), but it is not pinned
    /// or announced as content of its own. (This is how a directory arrives over the HTTP API, one
    /// streamed file at a time.)
    pub async fn put_part(
        &self,
        reader: impl Read + Send + 'static,
        total: Option<u64>,
        progress: ProgressFn,
    ) -> Result<PutSummary, PutError> {
        self.put_one(reader, PathBuf::from("-"), total, progress, false)
            .await
    }

    /// One file's put; a `root` is pinned and announced as content of its own.
    async fn put_one(
        &self,
        reader: impl Read + Send + 'static,
        path: PathBuf,
        total: Option<u64>,
        progress: ProgressFn,
        root: bool,
    ) -> Result<PutSummary, PutError> {
        let tally = Tally::new(total, progress);
        let (id, size) = self.put_stream(reader, path, &tally).await?;
        if root {
            self.finish_put(id, size, &tally).await
        } else {
            Ok(tally.summary(ContentId::from_key(id), size))
        }
    }

    /// Builds, stores and pins a directory tree from `entries`: files already stored with
    /// [`Node::put_part`] and (empty) directories, by `/`-separated relative path.
    pub async fn put_listing(&self, entries: Vec<ListingEntry>) -> Result<PutSummary, PutError> {
        let tally = Tally::new(None, no_progress());
        let mut tree = DirTree::default();
        for entry in entries {
            tree.insert(&entry)?;
        }
        let (root, size) = self.seal_dir(tree, &tally).await?;
        self.finish_put(root, size, &tally).await
    }

    /// Stores the directory manifests of `tree` bottom-up; returns the root and its size.
    fn seal_dir<'a>(
        &'a self,
        tree: DirTree,
        tally: &'a Arc<Tally>,
    ) -> futures::future::BoxFuture<'a, Result<(Key, u64), PutError>> {
        Box::pin(async move {
            if tree.entries.len() > MAX_LINKS {
                return Err(PutError::TooManyEntries(PathBuf::from(tree.path)));
            }
            let mut entries = Vec::with_capacity(tree.entries.len());
            for (name, item) in tree.entries {
                let (kind, id, size) = match item {
                    TreeItem::File(id, size) => (EntryKind::File, id, size),
                    TreeItem::Dir(sub) => {
                        let (id, size) = self.seal_dir(sub, tally).await?;
                        (EntryKind::Dir, id, size)
                    }
                };
                entries.push(DirEntry {
                    name,
                    kind,
                    id,
                    size,
                });
            }
            let manifest = Manifest::Dir { entries };
            let size = manifest.size();
            let bytes = manifest.encode();
            let id = Key::hash(&bytes);
            let store = self.inner.store.clone();
            tokio::task::spawn_blocking(move || store.insert(&id, &bytes, Reason::Cache))
                .await
                .map_err(|_| NodeStopped)??;
            tally.chunks.fetch_add(1, Ordering::Relaxed);
            self.replicate(id, 0, tally).await;
            Ok((id, size))
        })
    }

    /// Puts every regular file under `dir` and returns the listing of the tree. Symbolic links
    /// and special files are skipped with a warning.
    async fn put_files_under(
        &self,
        dir: &Path,
        tally: &Arc<Tally>,
    ) -> Result<Vec<ListingEntry>, PutError> {
        let mut listing = Vec::new();
        let mut pending = vec![(dir.to_owned(), String::new())];
        while let Some((path, rel)) = pending.pop() {
            let mut children = Vec::new();
            for entry in std::fs::read_dir(&path).map_err(|e| read_error(&path, e))? {
                let entry = entry.map_err(|e| read_error(&path, e))?;
                let name = entry
                    .file_name()
                    .into_string()
                    .ok()
                    .filter(|n| valid_name(n))
                    .ok_or_else(|| PutError::BadName(entry.path()))?;
                children.push((name, entry.path()));
            }
            children.sort();
            if children.is_empty() && !rel.is_empty() {
                listing.push(ListingEntry::Dir { path: rel.clone() });
            }
            for (name, child) in children {
                let child_rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let meta = std::fs::symlink_metadata(&child).map_err(|e| read_error(&child, e))?;
                if meta.is_dir() {
                    pending.push((child, child_rel));
                } else if meta.is_file() {
                    let file = open(&child)?;
                    let (id, size) = self.put_stream(file, child, tally).await?;
                    listing.push(ListingEntry::File {
                        path: child_rel,
                        id: ContentId::from_key(id),
                        size,
                    });
                } else {
                    warn!(path = %child.display(), "skipping: not a regular file or directory");
                }
            }
        }
        Ok(listing)
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
        let chunking = tokio::task::spawn_blocking(move || chunk_into(reader, &path, &store, &tx));
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
        let store = self.inner.store.clone();
        let local = placement.local;
        let bytes = tokio::task::spawn_blocking(move || {
            if local {
                store.add_reason(&id, Reason::Replica)?;
            }
            store.read(&id)
        })
        .await;
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
    tx: &mpsc::Sender<(Key, u64)>,
) -> Result<(Key, u64, u64), PutError> {
    let mut tree = TreeBuilder::new();
    let (mut size, mut count) = (0u64, 0u64);
    let mut emit = |id: Key, bytes: &[u8], len: u64| -> Result<(), PutError> {
        store.insert(&id, bytes, Reason::Cache)?;
        count += 1;
        // A closed channel means the put was abandoned: stop reading.
        tx.blocking_send((id, len)).map_err(|_| NodeStopped)?;
        Ok(())
    };
    for chunk in chunker::chunks(reader) {
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
    Ok((root, size, count))
}

/// A stream over a bounded receiver.
pub(crate) fn tokio_stream_of<T>(rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

fn open(path: &Path) -> Result<std::fs::File, PutError> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => Err(read_error(path, std::io::Error::other("is a directory"))),
        _ => Ok(file),
    }
}

fn read_error(path: &Path, source: std::io::Error) -> PutError {
    if source.kind() == std::io::ErrorKind::NotFound {
        PutError::NotFound(path.to_owned())
    } else {
        PutError::Read {
            path: path.to_owned(),
            source,
        }
    }
}

/// Bytes of the regular files under `dir`, for a progress total.
fn tree_size(dir: &Path) -> u64 {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// One entry of a directory listing given to [`Node::put_listing`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ListingEntry {
    /// A file stored with [`Node::put_part`].
    File {
        /// Relative path, `/`-separated.
        path: String,
        /// The file's content id.
        id: ContentId,
        /// Its size in bytes.
        size: u64,
    },
    /// A directory (needed only for empty ones; others follow from their files' paths).
    Dir {
        /// Relative path, `/`-separated.
        path: String,
    },
}

/// A directory tree being assembled from a listing.
#[derive(Debug, Default)]
struct DirTree {
    /// The directory's own path, for error messages.
    path: String,
    entries: std::collections::BTreeMap<String, TreeItem>,
}

#[derive(Debug)]
enum TreeItem {
    File(Key, u64),
    Dir(DirTree),
}

impl DirTree {
    fn insert(&mut self, entry: &ListingEntry) -> Result<(), PutError> {
        let (path, file) = match entry {
            ListingEntry::File { path, id, size } => (path, Some((id.key(), *size))),
            ListingEntry::Dir { path } => (path, None),
        };
        let bad = || PutError::BadName(PathBuf::from(path));
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| !valid_name(p)) {
            return Err(bad());
        }
        let mut here = self;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if last && let Some((id, size)) = file {
                if here
                    .entries
                    .insert((*part).to_owned(), TreeItem::File(id, size))
                    .is_some()
                {
                    return Err(bad());
                }
                return Ok(());
            }
            let sub_path = parts[..=i].join("/");
            let item = here.entries.entry((*part).to_owned()).or_insert_with(|| {
                TreeItem::Dir(DirTree {
                    path: sub_path,
                    entries: Default::default(),
                })
            });
            here = match item {
                TreeItem::Dir(d) => d,
                TreeItem::File(..) => return Err(bad()),
            };
        }
        Ok(())
    }
}
