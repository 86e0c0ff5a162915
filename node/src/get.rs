//! Get: read manifests, fetch the chunks this node lacks, and write them in order.
//!
//! Which holder to ask for each chunk, how many requests at once, when to retry, fail over or
//! give up, and when to announce are the engine's decisions ([`cairn_dht::Dht::start_fetch`]);
//! this side reads manifests, hands the engine chunk ids ahead of the output, and writes the
//! verified chunks out in file order, so memory stays at the engine's window of chunks whatever
//! the file's size. Every chunk is checked against its BLAKE3 id by the driver before it gets
//! here. Fetched chunks are cached, so this node then serves them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use cairn_dht::Key;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::driver::{Command, FetchItem};
use crate::error::{GetError, NodeStopped};
use crate::manifest::{
    DirEntry, EntryKind, Link, MAX_DEPTH, MAX_TREE_DEPTH, MAX_TREE_FILES, Manifest,
};
use crate::put::{Progress, ProgressFn, tokio_stream_of};
use crate::tree::{GetPieces, Piece};
use crate::{ContentId, Node};

/// What a get wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetSummary {
    /// File bytes written.
    pub size: u64,
    /// Files written (1 for a file).
    pub files: u64,
}

/// A resolved path inside content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The entry's root manifest.
    pub id: ContentId,
    /// File or directory.
    pub kind: EntryKind,
    /// File bytes under it.
    pub size: u64,
}

/// A file's bytes as an [`tokio::io::AsyncRead`], fetched as they are read.
pub type GetReader = tokio_util::io::StreamReader<
    std::pin::Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>,
    bytes::Bytes,
>;

impl Node {
    /// The root manifest of `id`.
    pub async fn manifest(&self, id: ContentId) -> Result<Manifest, GetError> {
        self.fetch_manifest(id, id.key()).await
    }

    /// Follows `path` (`a/b/c`, empty for the root) through directories.
    pub async fn resolve(&self, id: ContentId, path: &str) -> Result<Resolved, GetError> {
        let mut m = self.manifest(id).await?;
        let mut here = Resolved {
            id,
            kind: kind_of(&m),
            size: m.size(),
        };
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let Manifest::Dir { entries } = &m else {
                return Err(no_such(id, path));
            };
            let entry = entries
                .iter()
                .find(|e| e.name == part)
                .ok_or_else(|| no_such(id, path))?;
            here = Resolved {
                id: ContentId::from_key(entry.id),
                kind: entry.kind,
                size: entry.size,
            };
            m = self.fetch_manifest(id, here.id.key()).await?;
            if m.size() != here.size {
                return Err(GetError::Manifest {
                    content: id,
                    source: crate::ManifestError::Invalid(
                        "an entry's size differs from its content",
                    ),
                });
            }
        }
        Ok(here)
    }

    /// The bytes of a file, as a stream read as it is fetched.
    pub async fn get(&self, id: ContentId) -> Result<GetReader, GetError> {
        self.get_range(id, 0, u64::MAX).await
    }

    /// Bytes `start..end` of a file (clamped to its size), read as they are fetched.
    pub async fn get_range(
        &self,
        id: ContentId,
        start: u64,
        end: u64,
    ) -> Result<GetReader, GetError> {
        let root = self.manifest(id).await?;
        self.get_range_of(id, root, start, end)
    }

    /// [`Node::get_range`] of a file whose root manifest `root` the caller has read already.
    pub(crate) fn get_range_of(
        &self,
        id: ContentId,
        root: Manifest,
        start: u64,
        end: u64,
    ) -> Result<GetReader, GetError> {
        if matches!(root, Manifest::Dir { .. }) {
            return Err(GetError::IsDirectory(id));
        }
        let end = end.max(start);
        // The engine announces this node as a holder once a whole file came.
        let whole = start == 0 && end >= root.size();
        let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(2);
        let node = self.clone();
        let fetch_tx = tx.clone();
        let fetch = tokio::spawn(async move {
            let mut chunks = std::pin::pin!(node.file_chunks(id, root, start, end, whole));
            while let Some(next) = chunks.next().await {
                let item = next.map(bytes::Bytes::from).map_err(std::io::Error::from);
                let failed = item.is_err();
                if fetch_tx.send(item).await.is_err() || failed {
                    return; // the reader went away, or the error is delivered
                }
            }
        });
        // A fetch that dies must not look like the end of the file to the reader.
        tokio::spawn(async move {
            if let Err(e) = fetch.await {
                let _ = tx
                    .send(Err(std::io::Error::other(format!("the get failed: {e}"))))
                    .await;
            }
        });
        let stream: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>> =
            Box::pin(tokio_stream_of(rx));
        Ok(tokio_util::io::StreamReader::new(stream))
    }

    /// The whole of a (small) file in memory.
    pub async fn get_bytes(&self, id: ContentId) -> Result<Vec<u8>, GetError> {
        let root = self.manifest(id).await?;
        if matches!(root, Manifest::Dir { .. }) {
            return Err(GetError::IsDirectory(id));
        }
        let parts: Vec<Vec<u8>> = self
            .file_chunks(id, root, 0, u64::MAX, true)
            .try_collect()
            .await?;
        Ok(parts.concat())
    }

    /// Writes a file, or a directory tree, to `out`. The output appears whole or not at all: it
    /// is written under a temporary name beside `out` and renamed when complete. An existing
    /// file at `out` is replaced, a symbolic link is followed (what it names is replaced, not the
    /// link), a device or FIFO (`/dev/null`, a named pipe) is written to in place, and an
    /// existing directory is refused.
    pub async fn get_to_file(&self, id: ContentId, out: &Path) -> Result<GetSummary, GetError> {
        self.get_to_path_with(id, out, std::sync::Arc::new(|_| {}))
            .await
    }

    /// Like [`Node::get_to_file`], reporting progress.
    pub async fn get_to_path_with(
        &self,
        id: ContentId,
        out: &Path,
        progress: ProgressFn,
    ) -> Result<GetSummary, GetError> {
        let root = self.manifest(id).await?;
        let total = root.size();
        let mut done = 0u64;
        let mut report = |n| {
            done += n;
            progress(Progress {
                done,
                total: Some(total),
            });
        };
        let root = match root {
            Manifest::Dir { entries } => Piece::Dir(entries),
            file => Piece::File(file),
        };
        let mut pieces = Pieces {
            node: self,
            content: id,
        };
        let summary = crate::tree::get_tree(&mut pieces, id, root, out, &mut report).await?;
        self.announce(id).await;
        Ok(summary)
    }

    /// How many files a get of `id` writes (each occurrence counted: a directory listed twice
    /// writes its files twice), refused with [`GetError::TooManyFiles`] past
    /// [`MAX_TREE_FILES`]. Each distinct directory manifest is fetched once, so a small
    /// hostile DAG that would expand to billions of files is refused after reading a few
    /// manifests, before anything is written.
    pub async fn count_files(&self, id: ContentId) -> Result<u64, GetError> {
        let mut files: HashMap<Key, u64> = HashMap::new();
        // Directories being counted: id, depth, and their entries once read.
        let mut open: Vec<(Key, usize, Option<Vec<crate::manifest::DirEntry>>)> =
            vec![(id.key(), 0, None)];
        while let Some((key, depth, entries)) = open.last_mut() {
            let (key, depth) = (*key, *depth);
            if files.contains_key(&key) {
                open.pop();
                continue;
            }
            match entries {
                None => match self.fetch_manifest(id, key).await? {
                    Manifest::Dir { entries: listed } => {
                        if depth >= MAX_DEPTH {
                            return Err(GetError::TooDeep(id));
                        }
                        let subdirs: Vec<Key> = listed
                            .iter()
                            .filter(|e| e.kind == EntryKind::Dir && !files.contains_key(&e.id))
                            .map(|e| e.id)
                            .collect();
                        *entries = Some(listed);
                        open.extend(subdirs.into_iter().map(|d| (d, depth + 1, None)));
                    }
                    _ => {
                        files.insert(key, 1);
                        open.pop();
                    }
                },
                Some(listed) => {
                    let total = listed.iter().fold(0u64, |sum, e| match e.kind {
                        EntryKind::File => sum.saturating_add(1),
                        EntryKind::Dir => {
                            sum.saturating_add(files.get(&e.id).copied().unwrap_or(0))
                        }
                    });
                    if total > MAX_TREE_FILES {
                        return Err(GetError::TooManyFiles {
                            content: id,
                            files: total,
                        });
                    }
                    files.insert(key, total);
                    open.pop();
                }
            }
        }
        Ok(files.get(&id.key()).copied().unwrap_or(0))
    }

    /// Keeps `id` here for good: fetches whatever is missing and pins every chunk, in one
    /// transaction. Returns false if it was pinned already.
    pub async fn pin(&self, id: ContentId) -> Result<bool, GetError> {
        let new = self.pin_walk(id, true).await?;
        if new {
            self.announce(id).await;
        }
        Ok(new)
    }

    /// Releases a pin: its chunks become evictable cache (unless pinned by other content or
    /// kept as replicas). Returns false if `id` was not pinned.
    pub async fn unpin(&self, id: ContentId) -> Result<bool, GetError> {
        let ids = self.walk(id, false, &self.inner.store.staging()).await?;
        let (store, root) = (self.inner.store.clone(), id.key());
        let was = tokio::task::spawn_blocking(move || store.unpin_all(&root, &ids))
            .await
            .map_err(|_| NodeStopped)??;
        Ok(was)
    }

    /// Pins every chunk under `id` (fetching missing ones if `fetch`) and records the root,
    /// atomically. Returns false if the root was pinned already.
    pub(crate) async fn pin_walk(&self, id: ContentId, fetch: bool) -> Result<bool, GetError> {
        Ok(self.pin_walk_ids(id, fetch).await?.0)
    }

    /// [`Node::pin_walk`], also returning the ids it pinned.
    pub(crate) async fn pin_walk_ids(
        &self,
        id: ContentId,
        fetch: bool,
    ) -> Result<(bool, Vec<Key>), GetError> {
        // What a fetching walk keeps stays staged until the pin commits.
        let staging = self.inner.store.staging();
        if fetch {
            let size = self.manifest(id).await?.size();
            let quota = self.inner.store.quota();
            if size > quota {
                return Err(GetError::TooLarge {
                    content: id,
                    size,
                    quota,
                });
            }
        }
        let ids = self.walk(id, fetch, &staging).await?;
        let (store, root) = (self.inner.store.clone(), id.key());
        let pinned =
            tokio::task::spawn_blocking(move || store.pin_all(&root, &ids).map(|n| (n, ids)))
                .await
                .map_err(|_| NodeStopped)??;
        Ok(pinned)
    }

    /// Pinned content.
    pub async fn pins(&self) -> Result<Vec<ContentId>, GetError> {
        let store = self.inner.store.clone();
        let roots = tokio::task::spawn_blocking(move || store.pinned_roots())
            .await
            .map_err(|_| NodeStopped)??;
        Ok(roots.into_iter().map(ContentId::from_key).collect())
    }

    /// Every distinct chunk under `content` (manifests included). With `fetch`, what is missing
    /// here is fetched and kept (staged against eviction until the caller pins it, refused
    /// with the store's error if it does not fit); without, data chunks are listed unread, so
    /// that pinning reports the ones that are not stored. Iterative, each id visited once,
    /// every entry checked against the manifest it names, and refused past [`MAX_DEPTH`]
    /// directory levels or [`MAX_TREE_DEPTH`] levels of a file's tree: manifests may come from
    /// strangers.
    pub(crate) async fn walk(
        &self,
        content: ContentId,
        fetch: bool,
        staging: &crate::store::Staging,
    ) -> Result<Vec<Key>, GetError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let invalid = |why| GetError::Manifest {
            content,
            source: crate::ManifestError::Invalid(why),
        };
        // (id, directory depth, file-tree depth, what its parent says it is)
        let mut pending = vec![(content.key(), 0usize, 0usize, None)];
        while let Some((id, dirs, parts, expect)) = pending.pop() {
            if !seen.insert(id) {
                continue;
            }
            if dirs > MAX_DEPTH || parts > MAX_TREE_DEPTH {
                return Err(GetError::TooDeep(content));
            }
            out.push(id);
            let bytes = if fetch {
                self.keep(content, id, staging).await?
            } else {
                self.stored(id).await?
            };
            let Some(bytes) = bytes else {
                continue; // not stored: pinning will say so
            };
            let manifest = Manifest::decode(&bytes)
                .map_err(|source| GetError::Manifest { content, source })?;
            if let Some((kind, size)) = expect
                && (kind_of(&manifest) != kind || manifest.size() != size)
            {
                return Err(invalid("an entry's size or kind differs from its content"));
            }
            match manifest {
                Manifest::File { chunks, .. } => {
                    for c in chunks {
                        if seen.insert(c.id) {
                            if fetch && !self.has(c.id).await? {
                                self.keep(content, c.id, staging).await?;
                            }
                            out.push(c.id);
                        }
                    }
                }
                Manifest::FileTree { parts: links, .. } => pending.extend(
                    links
                        .iter()
                        .rev()
                        .map(|p| (p.id, dirs, parts + 1, Some((EntryKind::File, p.size)))),
                ),
                Manifest::Dir { entries } => pending.extend(
                    entries
                        .iter()
                        .rev()
                        .map(|e| (e.id, dirs + 1, 0, Some((e.kind, e.size)))),
                ),
            }
        }
        Ok(out)
    }

    /// The chunk's bytes if it is stored here.
    pub(crate) async fn stored(&self, id: Key) -> Result<Option<Vec<u8>>, GetError> {
        let store = self.inner.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.read(&id))
            .await
            .map_err(|_| NodeStopped)??)
    }

    /// Whether the chunk is stored here (by the index; no read).
    async fn has(&self, id: Key) -> Result<bool, GetError> {
        let store = self.inner.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.contains(&id))
            .await
            .map_err(|_| NodeStopped)??)
    }

    /// Fetches a chunk (from here or a peer) and makes sure it is kept, staged under `staging`;
    /// a store that cannot take it (quota, disk) fails the walk with its error.
    async fn keep(
        &self,
        content: ContentId,
        id: Key,
        staging: &crate::store::Staging,
    ) -> Result<Option<Vec<u8>>, GetError> {
        staging.add(&id);
        let bytes = self.fetch_chunk(content, id).await?;
        if !self.has(id).await? {
            let (store, copy) = (self.inner.store.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || store.insert_fetched(&id, &copy))
                .await
                .map_err(|_| NodeStopped)??;
        }
        Ok(Some(bytes))
    }

    /// The bytes `start..end` of the file under `root`, chunk by chunk in order. The chunks
    /// this node lacks go to one engine fetch, which decides where each comes from; this side
    /// reads the file's manifests, hands the engine the chunk ids ahead of the output, takes
    /// the verified chunks as they come, and writes them out in order, releasing each (memory:
    /// the engine's window of chunks). With `root`, the engine announces this node as a holder
    /// of it once every chunk came.
    fn file_chunks(
        &self,
        content: ContentId,
        root: Manifest,
        start: u64,
        end: u64,
        announce: bool,
    ) -> impl Stream<Item = Result<Vec<u8>, GetError>> + Send + 'static {
        if let Manifest::File {
            data: Some(data), ..
        } = &root
        {
            // The file is in its manifest, which is here already.
            let from = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
            let to = usize::try_from(end)
                .unwrap_or(usize::MAX)
                .clamp(from, data.len());
            let bytes = data[from..to].to_vec();
            let node = self.clone();
            return futures::stream::once(async move {
                if announce {
                    node.announce(content).await;
                }
                Ok(bytes)
            })
            .filter(|b: &Result<Vec<u8>, GetError>| {
                std::future::ready(b.as_ref().map_or(true, |b| !b.is_empty()))
            })
            .left_stream();
        }
        let planner = Planner {
            node: self.clone(),
            content,
            leaves: Leaves::new(root, start, end),
            leaves_done: false,
            start,
            end,
            announce,
            fetch: None,
            queue: std::collections::VecDeque::new(),
            arrived: std::collections::BTreeMap::new(),
        };
        futures::stream::try_unfold(planner, |mut planner| async move {
            Ok(planner.next().await?.map(|bytes| (bytes, planner)))
        })
        .right_stream()
    }

    async fn fetch_manifest(&self, content: ContentId, id: Key) -> Result<Manifest, GetError> {
        let bytes = self.fetch_chunk(content, id).await?;
        Manifest::decode(&bytes).map_err(|source| GetError::Manifest { content, source })
    }

    /// One chunk, verified: from the local store, else through an engine fetch of it alone. A
    /// local copy that fails verification is replaced by the fetched one.
    pub(crate) async fn fetch_chunk(
        &self,
        content: ContentId,
        id: Key,
    ) -> Result<Vec<u8>, GetError> {
        let corrupt_here = match self.stored(id).await? {
            Some(bytes) if Key::hash(&bytes) == id => return Ok(bytes),
            Some(_) => {
                warn!(%id, "a locally stored chunk is corrupt; fetching it again");
                true
            }
            None => false,
        };
        let mut fetch = EngineFetch::start(self, None, false).await?;
        fetch.add(vec![id]).await?;
        let bytes = match fetch.next().await {
            Ok((_, bytes)) => bytes,
            Err(FetchFailure::Failed(e)) if corrupt_here && e.holders_tried == 0 => {
                return Err(GetError::Damaged {
                    content,
                    chunk: format!("{id:x}"),
                });
            }
            Err(e) => return Err(e.into_get_error(content)),
        };
        fetch.end().await;
        if corrupt_here {
            let (store, good) = (self.inner.store.clone(), bytes.clone());
            let repaired = tokio::task::spawn_blocking(move || store.repair(&id, &good)).await;
            if !matches!(repaired, Ok(Ok(()))) {
                warn!(%id, "could not repair a corrupt chunk");
            }
        } else {
            self.cache(id, bytes.clone()).await;
        }
        Ok(bytes)
    }

    /// Keeps a fetched chunk as cache and tells the engine this node now serves it.
    async fn cache(&self, id: Key, bytes: Vec<u8>) {
        let store = self.inner.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.insert_fetched(&id, &bytes)).await;
        match stored {
            Ok(Ok(_)) => {
                let _ = self.tell(Command::Hold { key: id }).await;
            }
            Ok(Err(e)) => debug!(%id, %e, "not caching a fetched chunk"),
            Err(_) => {}
        }
    }

    async fn announce(&self, id: ContentId) {
        let _ = self.tell(Command::Announce { key: id.key() }).await;
    }
}

/// Chunk ids handed to the engine ahead of the output: twice its default lookahead (cheap: ids
/// only), so that it never waits for this side to read the next manifest.
const PLAN_AHEAD: usize = 128;

/// One engine fetch from the get's side: chunks go in with [`EngineFetch::add`] and come out
/// verified, by index, with [`EngineFetch::next`].
struct EngineFetch {
    node: Node,
    id: cairn_dht::FetchId,
    rx: mpsc::Receiver<FetchItem>,
    ended: bool,
}

/// Why an engine fetch produced no chunk.
enum FetchFailure {
    /// The engine gave up.
    Failed(cairn_dht::FetchError),
    /// The node stopped.
    Stopped,
}

impl FetchFailure {
    fn into_get_error(self, content: ContentId) -> GetError {
        match self {
            FetchFailure::Stopped => GetError::Stopped(NodeStopped),
            FetchFailure::Failed(e) if e.chunk == content.key() && e.holders_tried == 0 => {
                GetError::NotFound(content)
            }
            FetchFailure::Failed(e) => GetError::Unavailable {
                content,
                chunk: format!("{:x}", e.chunk),
                tried: e.holders_tried,
            },
        }
    }
}

impl EngineFetch {
    async fn start(node: &Node, root: Option<Key>, announce: bool) -> Result<Self, GetError> {
        let (id, rx) = node
            .call(|reply| Command::Fetch {
                root,
                announce,
                reply,
            })
            .await?
            .map_err(|e| GetError::Busy(e.to_string()))?;
        Ok(Self {
            node: node.clone(),
            id,
            rx,
            ended: false,
        })
    }

    /// Adds chunks in order; returns the index of the first.
    async fn add(&mut self, chunks: Vec<Key>) -> Result<u64, GetError> {
        let fetch = self.id;
        self.node
            .call(|reply| Command::AddChunks {
                fetch,
                chunks,
                reply,
            })
            .await?
            .ok_or(GetError::Stopped(NodeStopped))
    }

    /// The next verified chunk to arrive, in any order.
    async fn next(&mut self) -> Result<(u64, Vec<u8>), FetchFailure> {
        match self.rx.recv().await {
            Some(FetchItem::Chunk { index, bytes }) => Ok((index, bytes)),
            Some(FetchItem::Failed(e)) => Err(FetchFailure::Failed(e)),
            None => Err(FetchFailure::Stopped),
        }
    }

    async fn release(&self, index: u64) {
        let fetch = self.id;
        let _ = self.node.tell(Command::ReleaseChunk { fetch, index }).await;
    }

    async fn end(mut self) {
        self.ended = true;
        let fetch = self.id;
        let _ = self.node.tell(Command::EndFetch { fetch }).await;
    }
}

impl Drop for EngineFetch {
    fn drop(&mut self) {
        if !self.ended {
            // A get dropped midway (its reader went away). If the queue is full, the driver
            // ends the fetch itself when it next finds the receiver gone.
            let fetch = self.id;
            let _ = self
                .node
                .inner
                .commands
                .try_send(Command::EndFetch { fetch });
        }
    }
}

/// Where a planned chunk comes from.
enum Source {
    /// Stored here.
    Local,
    /// The engine fetch's chunk of this index.
    Fetched(u64),
}

/// The state of one file's output: chunks planned in file order, and those that arrived.
struct Planner {
    node: Node,
    content: ContentId,
    leaves: Leaves,
    leaves_done: bool,
    start: u64,
    end: u64,
    /// Announce the content once every chunk came.
    announce: bool,
    fetch: Option<EngineFetch>,
    /// Chunks to output, in order.
    queue: std::collections::VecDeque<(Link, u64, Source)>,
    /// Fetched chunks that came before their turn, by fetch index.
    arrived: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl Planner {
    /// The next piece of the output, or `None` at its end.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, GetError> {
        self.plan().await?;
        let Some((link, offset, source)) = self.queue.pop_front() else {
            if let Some(fetch) = self.fetch.take() {
                fetch.end().await;
            }
            return Ok(None);
        };
        let content = self.content;
        let bytes = match source {
            Source::Local => self.node.fetch_chunk(content, link.id).await?,
            Source::Fetched(index) => {
                let bytes = self.take(index).await?;
                if let Some(fetch) = &self.fetch {
                    fetch.release(index).await;
                }
                self.node.cache(link.id, bytes.clone()).await;
                bytes
            }
        };
        if bytes.len() as u64 != link.size {
            return Err(GetError::Manifest {
                content,
                source: crate::ManifestError::Invalid("chunk length differs from its manifest"),
            });
        }
        // Trim to the range.
        let from = self.start.saturating_sub(offset).min(link.size) as usize;
        let to = self.end.saturating_sub(offset).min(link.size) as usize;
        Ok(Some(if from == 0 && to == bytes.len() {
            bytes
        } else {
            bytes[from..to].to_vec()
        }))
    }

    /// Reads manifests until [`PLAN_AHEAD`] chunks are planned (or the file ends), and hands
    /// those not stored here to the engine fetch, keeping the output order.
    async fn plan(&mut self) -> Result<(), GetError> {
        let mut planned = Vec::new();
        while !self.leaves_done && self.queue.len() + planned.len() < PLAN_AHEAD {
            match self.leaves.next(&self.node, self.content).await? {
                Some((link, offset)) => {
                    let local = self.node.has(link.id).await?;
                    planned.push((link, offset, local));
                }
                None => self.leaves_done = true,
            }
        }
        let wanted: Vec<Key> = planned
            .iter()
            .filter(|(_, _, local)| !local)
            .map(|(link, _, _)| link.id)
            .collect();
        let mut next = self.hand_over(wanted).await?;
        for (link, offset, local) in planned {
            let source = if local {
                Source::Local
            } else {
                next += 1;
                Source::Fetched(next - 1)
            };
            self.queue.push_back((link, offset, source));
        }
        Ok(())
    }

    /// Adds `chunks` to the engine fetch (started on first use); returns the index of the
    /// first.
    async fn hand_over(&mut self, chunks: Vec<Key>) -> Result<u64, GetError> {
        if chunks.is_empty() {
            return Ok(0);
        }
        if self.fetch.is_none() {
            let root = Some(self.content.key());
            self.fetch = Some(EngineFetch::start(&self.node, root, self.announce).await?);
        }
        let fetch = self.fetch.as_mut().ok_or(GetError::Stopped(NodeStopped))?;
        fetch.add(chunks).await
    }

    /// Fetched chunk `index`, waiting for it; others that come first are kept for their turn.
    async fn take(&mut self, index: u64) -> Result<Vec<u8>, GetError> {
        let content = self.content;
        loop {
            if let Some(bytes) = self.arrived.remove(&index) {
                return Ok(bytes);
            }
            let fetch = self.fetch.as_mut().ok_or(GetError::Stopped(NodeStopped))?;
            match fetch.next().await {
                // A duplicate (a late answer after a failover) of one already taken is dropped.
                Ok((i, bytes)) if i >= index => {
                    self.arrived.insert(i, bytes);
                }
                Ok(_) => {}
                Err(e) => return Err(e.into_get_error(content)),
            }
        }
    }
}

/// Walks a file's manifest tree in order, yielding the data chunks that overlap a byte range
/// with their file offsets; part manifests are fetched as the walk reaches them.
struct Leaves {
    stack: Vec<Frame>,
    start: u64,
    end: u64,
}

struct Frame {
    links: Vec<Link>,
    next: usize,
    offset: u64,
    leaf_level: bool,
}

impl Leaves {
    fn new(root: Manifest, start: u64, end: u64) -> Self {
        let frame = match root {
            Manifest::File { chunks, .. } => Some(Frame {
                links: chunks,
                next: 0,
                offset: 0,
                leaf_level: true,
            }),
            Manifest::FileTree { parts, .. } => Some(Frame {
                links: parts,
                next: 0,
                offset: 0,
                leaf_level: false,
            }),
            Manifest::Dir { .. } => None,
        };
        Self {
            stack: frame.into_iter().collect(),
            start,
            end,
        }
    }

    async fn next(
        &mut self,
        node: &Node,
        content: ContentId,
    ) -> Result<Option<(Link, u64)>, GetError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(link) = frame.links.get(frame.next).copied() else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            let offset = frame.offset;
            frame.offset = frame.offset.saturating_add(link.size);
            if offset >= self.end {
                self.stack.clear();
                return Ok(None);
            }
            if offset.saturating_add(link.size) <= self.start {
                continue;
            }
            if frame.leaf_level {
                return Ok(Some((link, offset)));
            }
            if self.stack.len() > MAX_TREE_DEPTH {
                return Err(GetError::TooDeep(content));
            }
            let part = node.fetch_manifest(content, link.id).await?;
            if part.size() != link.size {
                return Err(GetError::Manifest {
                    content,
                    source: crate::ManifestError::Invalid("a part's size differs from its link"),
                });
            }
            let (links, leaf_level) = match part {
                Manifest::File { data: Some(_), .. } => {
                    return Err(GetError::Manifest {
                        content,
                        source: crate::ManifestError::Invalid("a small file's data inside a tree"),
                    });
                }
                Manifest::File { chunks, .. } => (chunks, true),
                Manifest::FileTree { parts, .. } => (parts, false),
                Manifest::Dir { .. } => {
                    return Err(GetError::Manifest {
                        content,
                        source: crate::ManifestError::Invalid("a directory inside a file"),
                    });
                }
            };
            self.stack.push(Frame {
                links,
                next: 0,
                offset,
                leaf_level,
            });
        }
    }
}

fn kind_of(m: &Manifest) -> EntryKind {
    match m {
        Manifest::Dir { .. } => EntryKind::Dir,
        _ => EntryKind::File,
    }
}

fn no_such(content: ContentId, path: &str) -> GetError {
    GetError::NoSuchPath {
        content,
        path: path.to_owned(),
    }
}

/// How a node's own get fetches the pieces of a tree: manifests and chunks from here or its
/// peers, each checked against the entry that names it.
struct Pieces<'a> {
    node: &'a Node,
    /// The content being got, for errors.
    content: ContentId,
}

impl GetPieces for Pieces<'_> {
    type File = Manifest;
    type Error = GetError;

    async fn open(&mut self, id: Key, entry: &DirEntry) -> Result<Piece<Manifest>, GetError> {
        let m = self.node.fetch_manifest(self.content, id).await?;
        if m.size() != entry.size || kind_of(&m) != entry.kind {
            return Err(GetError::Manifest {
                content: self.content,
                source: crate::ManifestError::Invalid(
                    "an entry's size or kind differs from its content",
                ),
            });
        }
        Ok(match m {
            Manifest::Dir { entries } => Piece::Dir(entries),
            file => Piece::File(file),
        })
    }

    async fn count(&mut self, id: ContentId) -> Result<(), GetError> {
        self.node.count_files(id).await.map(|_| ())
    }

    async fn bytes(
        &mut self,
        file: Manifest,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, GetError>> + Send + 'static, GetError> {
        // The caller announces the content it gets (a file or a directory's root).
        Ok(self
            .node
            .file_chunks(self.content, file, 0, u64::MAX, false)
            .map_ok(bytes::Bytes::from))
    }
}
