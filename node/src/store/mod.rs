//! The chunk store: bytes in a [`ChunkStore`], and an index of why each chunk is kept in an
//! embedded transactional database (redb).
//!
//! A chunk is kept for any of three reasons: it is **pinned** (counted: one per pinned content
//! that contains it, including content put on this node), this node is a **responsible replica**
//! (one of the `replication` closest peers to its hash), or it is **cached** after a get (neither
//! of the others). Only cached chunks are evicted, least recently used first, when a new chunk
//! would take the store past its quota.
//!
//! Bytes are written (atomically) before the index commits, and removed after it commits, so a
//! crash can leave an orphan file but never an index entry without its bytes.

mod chunks;
mod recover;
mod staging;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use cairn_dht::Key;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

pub use chunks::{ChunkStore, FsChunkStore, MemChunkStore};
pub use recover::{PINS_FILE, Recovery};
pub use staging::Staging;

use recover::{INDEX_FILE, OpenFailure};
use staging::{Staged, lock};

/// id → (pins, responsible replica, size, last access tick).
const CHUNKS: TableDefinition<[u8; 32], (u32, bool, u64, u64)> = TableDefinition::new("chunks");
/// (last access tick, id) of every evictable (cache-only) chunk: the LRU order.
const LRU: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("lru");
/// Pinned content roots.
const PINS: TableDefinition<[u8; 32], ()> = TableDefinition::new("pins");
/// Counters: "bytes" stored, "tick" of the access clock.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What to do about a full quota, from what fills it.
fn quota_advice(pinned: u64, replica: u64, staged: u64) -> &'static str {
    if pinned >= replica.max(staged) && pinned > 0 {
        "raise the quota (--quota) or unpin content (cairn pin rm)"
    } else if staged >= replica {
        "the content being put is larger than the quota: raise the quota (--quota)"
    } else {
        "raise the quota (--quota): this node keeps copies for the network"
    }
}

/// Why a chunk is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Part of content pinned here (or put here).
    Pin,
    /// This node is one of the closest peers to the chunk's hash.
    Replica,
    /// Fetched for a get; evictable.
    Cache,
}

/// Errors of the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing chunk files failed.
    #[error("chunk store i/o failed: {0}; check the data directory's disk and permissions")]
    Io(#[from] std::io::Error),
    /// The index database failed.
    #[error("chunk index failed: {0}")]
    Index(#[from] redb::Error),
    /// Another process has the store open.
    #[error(
        "{0} is in use by another cairn process (a daemon is probably running on it); stop it or use another data directory"
    )]
    Locked(std::path::PathBuf),
    /// The store was closed: its node has shut down.
    #[error("the chunk store is closed because its node has shut down; start it again")]
    Closed,
    /// Content to pin is not all stored here.
    #[error(
        "{missing} chunks of the content are not stored here (evicted, or never fetched); raise the quota and try again"
    )]
    Incomplete {
        /// Chunks missing.
        missing: usize,
    },
    /// Nothing evictable is left and the chunk does not fit.
    #[error(
        "storage quota of {} is full: {} pinned, {} replicas kept for the network, {} held by puts in progress; {}",
        human(*.quota, *.quota), human(*.pinned, *.quota), human(*.replica, *.quota), human(*.staged, *.quota),
        quota_advice(*.pinned, *.replica, *.staged)
    )]
    QuotaFull {
        /// The quota in bytes.
        quota: u64,
        /// Bytes of chunks kept because pinned content contains them.
        pinned: u64,
        /// Bytes of chunks kept (and not pinned) as responsible replicas.
        replica: u64,
        /// Bytes of cache chunks protected by a [`Staging`] of a put in progress.
        staged: u64,
    },
    /// The file system holding the store has no space left.
    #[error(
        "the disk holding {} is full (no space left on device); free some space or lower --quota",
        .path.display()
    )]
    DiskFull {
        /// The data directory.
        path: PathBuf,
    },
}

impl StoreError {
    /// Whether the error came from a file system without space left.
    fn is_no_space(&self) -> bool {
        let io = match self {
            StoreError::Io(e) | StoreError::Index(redb::Error::Io(e)) => e,
            _ => return false,
        };
        // ENOSPC, and EDQUOT (a user's disk quota) which reads the same to the user.
        io.kind() == std::io::ErrorKind::StorageFull || matches!(io.raw_os_error(), Some(28 | 122))
    }

    /// Whether redb latched the error: every later call on that handle fails with
    /// `PreviousIo` until the database is closed and opened again.
    fn latches(&self) -> bool {
        matches!(
            self,
            StoreError::Index(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Index(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Chunks stored.
    pub chunks: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Chunks kept because pinned content contains them.
    pub pinned: u64,
    /// Chunks kept as a responsible replica.
    pub replica: u64,
    /// Chunks kept only as cache.
    pub cached: u64,
    /// The quota in bytes.
    pub quota: u64,
}

/// What [`Store::collect_garbage`] removed (or would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Cached chunks removed.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of cache left.
    pub cache_left: u64,
}

/// Chunks and their index.
#[derive(Clone)]
pub struct Store {
    chunks: Arc<dyn ChunkStore>,
    index: Arc<Index>,
    quota: u64,
    /// Serialises, per chunk id, "write the bytes + commit the index" against "commit an
    /// eviction + delete the bytes", so an eviction never deletes bytes a concurrent insert of
    /// the same chunk just wrote. Striped: 64 locks for all ids.
    stripes: Arc<Vec<Mutex<()>>>,
    /// Told which chunks were evicted (the node tells the engine it no longer holds them).
    on_evict: Arc<OnceLock<EvictHook>>,
    /// Chunks that puts in progress protect from eviction.
    staged: Staged,
    /// Indexed as pinned or replica, but their file is gone: to fetch back from peers.
    missing: Arc<Mutex<HashSet<Key>>>,
    /// Cached copies written without waiting for the disk ([`Store::insert_fetched`]): synced
    /// before anything makes one a pin or a replica.
    unsynced: Arc<Mutex<HashSet<Key>>>,
    recovery: Option<Arc<Recovery>>,
    /// The data directory (None in memory): where `pins.list` lives, and the disk a full-disk
    /// error names.
    dir: Option<PathBuf>,
    /// Serialises rewrites of `pins.list`.
    pins_file: Arc<Mutex<()>>,
    /// A pin committed since `pins.list` was last written ([`Store::pin_put`]).
    pins_dirty: Arc<AtomicBool>,
}

/// The index database, closed and opened again after an i/o failure (redb refuses every call
/// on a handle that saw one, e.g. ENOSPC during a commit, until it is reopened).
struct Index {
    /// None in memory: an in-memory database cannot be reopened.
    path: Option<PathBuf>,
    db: RwLock<Option<Database>>,
    /// Set by [`Store::close`]: never reopened after.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("chunks", &self.chunks)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

const STRIPES: usize = 64;

/// What [`Store::on_evict`] calls with the ids of evicted chunks.
type EvictHook = Box<dyn Fn(Vec<Key>) + Send + Sync>;

impl Store {
    /// Opens the store in `dir` (chunk files and `index.redb`), creating it if needed.
    ///
    /// A damaged index (redb reports corruption or panics on it, or it lists no chunk while
    /// chunk files exist) is moved aside and rebuilt from the chunk files, which name their own
    /// hash; see [`Store::recovery`]. A sound index is reconciled with the files: see
    /// [`Store::missing`].
    pub fn open(dir: &Path, quota: u64) -> Result<Self, StoreError> {
        Self::open_inner(dir, quota).map_err(|e| classify(e, Some(dir)))
    }

    fn open_inner(dir: &Path, quota: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(INDEX_FILE);
        // The index first: its lock keeps a second process from touching the chunk files
        // (opening the chunk store clears leftover temporary files).
        let opened = match recover::open_checked(&path) {
            Err(OpenFailure::Locked) => return Err(StoreError::Locked(dir.to_owned())),
            Err(OpenFailure::Other(e)) => return Err(e),
            Ok(db) => Ok(db),
            Err(OpenFailure::Damaged(reason)) => Err(reason),
        };
        let chunks = FsChunkStore::open(dir)?;
        let files = chunks.list()?;
        let opened = match opened {
            Ok(db) if !files.is_empty() && recover::is_empty(&db)? => {
                drop(db);
                Err(format!(
                    "it lists no chunk while {} chunk files are on disk",
                    files.len()
                ))
            }
            other => other,
        };
        let (db, recovery, missing) = match opened {
            Ok(db) => {
                let missing = recover::reconcile(&db, &chunks, files)?;
                (db, None, missing)
            }
            Err(reason) => {
                // Reported by the caller from `recovery()`, in one line with the outcome.
                let (db, recovery) = recover::rebuild(dir, reason, &chunks, files)?;
                (db, Some(recovery), HashSet::new())
            }
        };
        let mut store = Self::with_parts(Arc::new(chunks), db, Some(path), quota)?;
        store.recovery = recovery.map(Arc::new);
        store.missing = Arc::new(Mutex::new(missing));
        store.dir = Some(dir.to_owned());
        if store.recovery.is_none() && !dir.join(PINS_FILE).exists() {
            // A store from before pins.list existed: start the copy now, not at the next pin.
            store.save_pins_list();
        }
        Ok(store)
    }

    /// A store that keeps everything in memory.
    pub fn in_memory(quota: u64) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::with_parts(Arc::new(MemChunkStore::new()), db, None, quota)
    }

    fn with_parts(
        chunks: Arc<dyn ChunkStore>,
        db: Database,
        path: Option<PathBuf>,
        quota: u64,
    ) -> Result<Self, StoreError> {
        recover::create_tables(&db)?;
        Ok(Self {
            chunks,
            index: Arc::new(Index {
                path,
                db: RwLock::new(Some(db)),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
            quota,
            stripes: Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()),
            on_evict: Arc::new(OnceLock::new()),
            staged: Arc::default(),
            missing: Arc::default(),
            unsynced: Arc::default(),
            recovery: None,
            dir: None,
            pins_file: Arc::default(),
            pins_dirty: Arc::default(),
        })
    }

    /// Sets what to call with the ids of evicted chunks (once; later calls are ignored).
    pub fn on_evict(&self, f: impl Fn(Vec<Key>) + Send + Sync + 'static) {
        let _ = self.on_evict.set(Box::new(f));
    }

    /// What opening found wrong with the index and rebuilt, if anything.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_deref()
    }

    /// Chunks indexed as pinned or replica whose file is gone (found at open, or by a read
    /// since): the node fetches them back from peers, and must not claim to hold them meanwhile.
    pub fn missing(&self) -> Vec<Key> {
        lock(&self.missing).iter().copied().collect()
    }

    /// Whether the chunk is indexed but its file is gone (see [`Store::missing`]).
    pub fn is_missing(&self, id: &Key) -> bool {
        lock(&self.missing).contains(id)
    }

    /// A guard protecting the chunks of a put in progress from eviction; see [`Staging`].
    pub fn staging(&self) -> Staging {
        Staging::new(self.staged.clone())
    }

    fn stripe(&self, id: &Key) -> MutexGuard<'_, ()> {
        let i = usize::from(id.as_bytes()[0]) % STRIPES;
        // The guarded data is (); a poisoned lock protects nothing that could be half-updated.
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the index. An i/o failure closes the handle (redb would refuse every later
    /// call on it) so the next call opens the file again: once space is back, the store works
    /// again without a restart. Never call it from inside `f`: the lock is not reentrant.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.index.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let result = {
            let mut guard = self.index.db.read().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                drop(guard);
                self.reopen()?;
                guard = self.index.db.read().unwrap_or_else(|e| e.into_inner());
            }
            match guard.as_ref() {
                Some(db) => f(db),
                None => return Err(StoreError::Index(redb::Error::DatabaseClosed)),
            }
        };
        result.map_err(|e| {
            if e.latches() && self.index.path.is_some() {
                let mut guard = self.index.db.write().unwrap_or_else(|e| e.into_inner());
                *guard = None;
            }
            self.classify(e)
        })
    }

    /// The storage quota in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Closes the index, releasing the data directory for another process (or a node started
    /// on it again) at once, whatever clones of this store are still around; every later call
    /// fails with [`StoreError::Closed`].
    pub fn close(&self) {
        self.flush_pins_list();
        self.index
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let mut guard = self.index.db.write().unwrap_or_else(|e| e.into_inner());
        *guard = None;
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.index.db.write().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return Ok(());
        }
        if self.index.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let Some(path) = &self.index.path else {
            return Err(StoreError::Index(redb::Error::DatabaseClosed));
        };
        let db = Database::create(path).map_err(|e| self.classify(e.into()))?;
        *guard = Some(db);
        Ok(())
    }

    fn classify(&self, e: StoreError) -> StoreError {
        classify(e, self.dir.as_deref())
    }

    /// Stores a chunk for `reason`. If it is already stored, the reason is added, and the bytes
    /// are written again if its file is missing or damaged. Returns whether bytes were written.
    /// Cached chunks are evicted to make room (never those a [`Staging`] protects); if that is
    /// not enough the chunk is refused with [`StoreError::QuotaFull`].
    pub fn insert(&self, id: &Key, bytes: &[u8], reason: Reason) -> Result<bool, StoreError> {
        self.insert_with(id, bytes, reason, true)
    }

    /// Stores a chunk fetched from peers as cache, without waiting for the disk: a crash may
    /// lose it or leave it damaged, which costs nothing (it is evictable, and every read of a
    /// chunk this node sends or serves is verified first, see [`Store::read_verified`]). This
    /// is what a get writes for each chunk it lacked, so it skips the two fsyncs of the file and
    /// the index's of a kept chunk. Should the copy be pinned or made a replica later, its file
    /// is synced first.
    pub fn insert_fetched(&self, id: &Key, bytes: &[u8]) -> Result<bool, StoreError> {
        self.insert_with(id, bytes, Reason::Cache, false)
    }

    /// Stores a chunk a put just read, as cache, without waiting for the disk, like
    /// [`Store::insert_fetched`]: the put syncs it with [`Store::sync_chunks`] while its
    /// replicas are being placed, and its pin commits the index; a put that fails before
    /// leaves only evictable cache.
    pub fn insert_put(&self, id: &Key, bytes: &[u8]) -> Result<bool, StoreError> {
        self.insert_with(id, bytes, Reason::Cache, false)
    }

    /// Waits for the disk to hold the files of those of `ids` written without waiting for it
    /// ([`Store::insert_put`], [`Store::insert_fetched`]); the others cost nothing.
    pub fn sync_chunks(&self, ids: &[Key]) -> Result<(), StoreError> {
        self.settle(ids)
    }

    fn insert_with(
        &self,
        id: &Key,
        bytes: &[u8],
        reason: Reason,
        durable: bool,
    ) -> Result<bool, StoreError> {
        // None: evicted between adding the reason and taking the stripe; store it afresh.
        if self.add_reason(id, reason)?
            && let Some(restored) = self.restore_file(id, bytes)?
        {
            return Ok(restored);
        }
        let size = bytes.len() as u64;
        let mut evicted = Vec::new();
        let new = {
            let _guard = self.stripe(id);
            if durable {
                self.chunks.put(id, bytes)
            } else {
                self.chunks.put_unsynced(id, bytes)
            }
            .map_err(|e| self.classify(e.into()))?;
            if durable {
                lock(&self.unsynced).remove(id);
            } else {
                lock(&self.unsynced).insert(*id);
            }
            let outcome = self.with_db(|db| {
                let mut txn = db.begin_write()?;
                txn.set_durability(if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                })?;
                let staged = (|| -> Result<bool, StoreError> {
                    let mut table = txn.open_table(CHUNKS)?;
                    let mut lru = txn.open_table(LRU)?;
                    let mut meta = txn.open_table(META)?;
                    let existing = table.get(id.as_bytes())?.map(|g| g.value());
                    if let Some(entry) = existing {
                        // Raced with another insert of the same chunk.
                        let entry = with_reason(entry, reason);
                        if !evictable(entry) {
                            lru.remove((entry.3, *id.as_bytes()))?;
                        }
                        table.insert(id.as_bytes(), entry)?;
                        return Ok(false);
                    }
                    let mut bytes_used = meta.get("bytes")?.map_or(0, |g| g.value());
                    if bytes_used + size > self.quota {
                        let need = bytes_used + size - self.quota;
                        let staged = lock(&self.staged);
                        let mut victims = Vec::new();
                        let mut freed = 0;
                        for row in lru.iter()? {
                            let (tick, victim) = row?.0.value();
                            if staged.contains_key(&Key::from_bytes(victim)) {
                                continue;
                            }
                            freed += table.get(&victim)?.map_or(0, |g| g.value().2);
                            victims.push((tick, victim));
                            if freed >= need {
                                break;
                            }
                        }
                        if freed < need {
                            return Err(self.quota_full(&table, &staged)?);
                        }
                        drop(staged);
                        for (tick, victim) in victims {
                            lru.remove((tick, victim))?;
                            if let Some(e) = table.remove(&victim)?.map(|g| g.value()) {
                                bytes_used -= e.2;
                            }
                            evicted.push(Key::from_bytes(victim));
                        }
                    }
                    let tick = next_tick(&mut meta)?;
                    let entry = with_reason((0, false, size, tick), reason);
                    if evictable(entry) {
                        lru.insert((tick, *id.as_bytes()), ())?;
                    }
                    table.insert(id.as_bytes(), entry)?;
                    meta.insert("bytes", bytes_used + size)?;
                    Ok(true)
                })();
                match staged {
                    Ok(new) => {
                        txn.commit()?;
                        Ok(new)
                    }
                    Err(e) => {
                        txn.abort()?;
                        Err(e)
                    }
                }
            });
            match outcome {
                Ok(new) => new,
                Err(e) => {
                    // Nothing was committed: the bytes just written belong to no entry. (When
                    // the race above found an entry, the commit that failed was only adding a
                    // reason, and the entry's own bytes are the same bytes: keep them then.)
                    evicted.clear();
                    if !self.contains(id).unwrap_or(true) {
                        let _ = self.chunks.remove(id);
                    }
                    return Err(e);
                }
            }
        };
        lock(&self.missing).remove(id);
        if !durable && !new && self.keeps(id).unwrap_or(true) {
            // Raced with an insert that keeps it: this unsynced file replaced its synced one.
            self.settle(std::slice::from_ref(id))?;
        }
        if !evicted.is_empty() {
            for victim in &evicted {
                // Under the victim's stripe, and only if nobody stored it again meanwhile.
                let _guard = self.stripe(victim);
                if !self.contains(victim)? {
                    self.chunks.remove(victim)?;
                    lock(&self.unsynced).remove(victim);
                }
            }
            if let Some(f) = self.on_evict.get() {
                f(evicted);
            }
        }
        Ok(new)
    }

    /// For an indexed chunk: writes `bytes` again if its file is missing or does not verify.
    /// Returns whether it wrote, or None if the entry is gone (evicted meanwhile).
    fn restore_file(&self, id: &Key, bytes: &[u8]) -> Result<Option<bool>, StoreError> {
        let _guard = self.stripe(id);
        if !self.contains(id)? {
            return Ok(None);
        }
        let on_disk = self.chunks.get(id)?;
        // Compare with the caller's bytes first (cheap); hash only when they differ, so that
        // wrong bytes from a caller never replace a file that verifies.
        let intact = on_disk
            .as_deref()
            .is_some_and(|b| b == bytes || Key::hash(b) == *id);
        if intact {
            return Ok(Some(false));
        }
        self.chunks
            .put(id, bytes)
            .map_err(|e| self.classify(e.into()))?;
        lock(&self.missing).remove(id);
        warn!(%id, "restored a chunk file that was missing or damaged");
        Ok(Some(true))
    }

    /// The breakdown of a full quota, computed only when an insert is refused.
    fn quota_full(
        &self,
        table: &impl ReadableTable<[u8; 32], (u32, bool, u64, u64)>,
        staged: &HashMap<Key, u32>,
    ) -> Result<StoreError, StoreError> {
        let (mut pinned, mut replica, mut held) = (0, 0, 0);
        for row in table.iter()? {
            let (k, v) = row?;
            let (pins, is_replica, size, _) = v.value();
            if pins > 0 {
                pinned += size;
            } else if is_replica {
                replica += size;
            } else if staged.contains_key(&Key::from_bytes(k.value())) {
                held += size;
            }
        }
        Ok(StoreError::QuotaFull {
            quota: self.quota,
            pinned,
            replica,
            staged: held,
        })
    }

    /// Adds the replica reason to every stored chunk of `ids` in one transaction (absent ids are
    /// skipped): a put calls it once it has pinned, for the chunks this node is responsible for.
    pub fn mark_replicas(&self, ids: &[Key]) -> Result<(), StoreError> {
        self.set_replicas(ids, true)
    }

    /// Removes [`Reason::Replica`] from every stored id of `ids`, in one write transaction: the
    /// chunks this node turned out not to be responsible for become evictable (unless pinned).
    pub fn unmark_replicas(&self, ids: &[Key]) -> Result<(), StoreError> {
        self.set_replicas(ids, false)
    }

    fn set_replicas(&self, ids: &[Key], replica: bool) -> Result<(), StoreError> {
        if replica {
            self.settle(ids)?;
        }
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(CHUNKS)?;
                let mut lru = txn.open_table(LRU)?;
                for id in ids {
                    let existing = table.get(id.as_bytes())?.map(|g| g.value());
                    let Some(old) = existing else { continue };
                    rewrite(
                        &mut table,
                        &mut lru,
                        id,
                        old,
                        (old.0, replica, old.2, old.3),
                    )?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Pins `root`: adds one pin to every chunk occurrence in `ids` (the chunks under it, as
    /// walked from it) and records the root, in one transaction. Returns false, changing
    /// nothing, if the root was pinned already; fails with [`StoreError::Incomplete`] if any
    /// chunk is not stored.
    pub fn pin_all(&self, root: &Key, ids: &[Key]) -> Result<bool, StoreError> {
        self.pin_all_marking(root, ids, &[])
    }

    /// [`Store::pin_all`], and in the same transaction (one commit, one fsync) the replica
    /// reason on those of `replicas` that are stored: what a put does when it finishes.
    pub fn pin_all_marking(
        &self,
        root: &Key,
        ids: &[Key],
        replicas: &[Key],
    ) -> Result<bool, StoreError> {
        let new = self.commit_pin(root, ids, replicas)?;
        if new {
            self.save_pins_list();
        }
        Ok(new)
    }

    /// [`Store::pin_all_marking`] without waiting for `pins.list`: what a put does, so that it
    /// returns once the pin is committed; the caller writes the list after with
    /// [`Store::flush_pins_list`] (and [`Store::close`] does, if nobody did). A crash between
    /// the two loses nothing: the index has the pin, and the list is only its copy.
    pub fn pin_put(&self, root: &Key, ids: &[Key], replicas: &[Key]) -> Result<bool, StoreError> {
        let new = self.commit_pin(root, ids, replicas)?;
        if new {
            self.pins_dirty.store(true, Ordering::Release);
        }
        Ok(new)
    }

    /// Writes `pins.list` if a pin was committed since it last was.
    pub fn flush_pins_list(&self) {
        if self.pins_dirty.load(Ordering::Acquire) {
            self.save_pins_list();
        }
    }

    fn commit_pin(&self, root: &Key, ids: &[Key], replicas: &[Key]) -> Result<bool, StoreError> {
        self.settle(ids)?;
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let already = {
                let mut pins = txn.open_table(PINS)?;
                let already = pins.get(root.as_bytes())?.is_some();
                if already && replicas.is_empty() {
                    return Ok(false);
                }
                let mut table = txn.open_table(CHUNKS)?;
                let mut lru = txn.open_table(LRU)?;
                if !already {
                    let mut missing = 0;
                    for id in ids {
                        let existing = table.get(id.as_bytes())?.map(|g| g.value());
                        let Some(entry) = existing else {
                            missing += 1;
                            continue;
                        };
                        if evictable(entry) {
                            lru.remove((entry.3, *id.as_bytes()))?;
                        }
                        table.insert(id.as_bytes(), with_reason(entry, Reason::Pin))?;
                    }
                    if missing > 0 {
                        return Err(StoreError::Incomplete { missing });
                    }
                    pins.insert(root.as_bytes(), ())?;
                }
                for id in replicas {
                    let existing = table.get(id.as_bytes())?.map(|g| g.value());
                    if let Some(old) = existing {
                        rewrite(&mut table, &mut lru, id, old, (old.0, true, old.2, old.3))?;
                    }
                }
                already
            };
            txn.commit()?;
            Ok(!already)
        })
    }

    /// Unpins `root`: removes one pin from every chunk occurrence in `ids` that is stored, and
    /// forgets the root, in one transaction. Returns false if the root was not pinned.
    pub fn unpin_all(&self, root: &Key, ids: &[Key]) -> Result<bool, StoreError> {
        let was = self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut pins = txn.open_table(PINS)?;
                if pins.remove(root.as_bytes())?.is_none() {
                    return Ok(false);
                }
                let mut table = txn.open_table(CHUNKS)?;
                let mut lru = txn.open_table(LRU)?;
                for id in ids {
                    let existing = table.get(id.as_bytes())?.map(|g| g.value());
                    if let Some(old) = existing {
                        let new = (old.0.saturating_sub(1), old.1, old.2, old.3);
                        if !evictable(old) && evictable(new) {
                            lru.insert((new.3, *id.as_bytes()), ())?;
                        }
                        table.insert(id.as_bytes(), new)?;
                    }
                }
            }
            txn.commit()?;
            Ok(true)
        })?;
        if was {
            self.save_pins_list();
        }
        Ok(was)
    }

    /// Copies the pinned roots to `pins.list`, from which a rebuilt index gets its pins back.
    /// The pin itself has committed by now: a failure here is reported, not returned.
    fn save_pins_list(&self) {
        let Some(dir) = &self.dir else { return };
        let _guard = lock(&self.pins_file);
        // Cleared before the read: a pin committed after it marks the list due again.
        self.pins_dirty.store(false, Ordering::Release);
        // Read under the lock, so the last writer writes the latest set.
        let written = self
            .pinned_roots()
            .and_then(|roots| Ok(recover::write_pins_list(dir, &roots)?));
        if let Err(e) = written {
            warn!(%e, "cannot update pins.list (the copy of the pinned roots kept beside the index); the pins themselves are saved");
        }
    }

    /// Adds `reason` to a stored chunk. Returns false if the chunk is not stored.
    pub fn add_reason(&self, id: &Key, reason: Reason) -> Result<bool, StoreError> {
        if reason != Reason::Cache {
            self.settle(std::slice::from_ref(id))?;
        }
        self.update(id, |e| with_reason(e, reason))
    }

    /// Syncs the files of those of `ids` written by [`Store::insert_fetched`], before they are
    /// kept for good.
    fn settle(&self, ids: &[Key]) -> Result<(), StoreError> {
        let due: Vec<Key> = {
            let mut unsynced = lock(&self.unsynced);
            if unsynced.is_empty() {
                return Ok(());
            }
            ids.iter()
                .filter(|id| unsynced.remove(id))
                .copied()
                .collect()
        };
        for id in &due {
            self.chunks.sync(id).map_err(|e| self.classify(e.into()))?;
        }
        Ok(())
    }

    /// Removes `reason` from a stored chunk; a chunk with no reason left becomes cache (kept
    /// until evicted). Returns false if the chunk is not stored.
    pub fn remove_reason(&self, id: &Key, reason: Reason) -> Result<bool, StoreError> {
        self.update(id, |(pins, replica, size, tick)| match reason {
            Reason::Pin => (pins.saturating_sub(1), replica, size, tick),
            Reason::Replica => (pins, false, size, tick),
            Reason::Cache => (pins, replica, size, tick),
        })
    }

    /// The chunk's bytes, if stored. Marks it as recently used. An indexed chunk whose file is
    /// gone reads as not stored (so a get fetches it from peers, and storing it restores the
    /// file), with a warning.
    pub fn read(&self, id: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let entry = self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            Ok(table.get(id.as_bytes())?.map(|g| g.value()))
        })?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let bytes = self.chunks.get(id)?;
        if bytes.is_none() {
            warn!(%id, "a chunk in the index has no file; it will be fetched again from peers when needed");
            if !evictable(entry) {
                lock(&self.missing).insert(*id);
            }
            return Ok(None);
        }
        if evictable(entry) {
            // LRU order matters only for evictable chunks; losing a touch in a crash is harmless,
            // so it is not fsynced.
            self.with_db(|db| {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::None)?;
                {
                    let mut table = txn.open_table(CHUNKS)?;
                    let mut lru = txn.open_table(LRU)?;
                    let mut meta = txn.open_table(META)?;
                    let existing = table.get(id.as_bytes())?.map(|g| g.value());
                    if let Some(e) = existing.filter(|e| evictable(*e)) {
                        let tick = next_tick(&mut meta)?;
                        lru.remove((e.3, *id.as_bytes()))?;
                        lru.insert((tick, *id.as_bytes()), ())?;
                        table.insert(id.as_bytes(), (e.0, e.1, e.2, tick))?;
                    }
                }
                txn.commit()?;
                Ok(())
            })?;
        }
        Ok(bytes)
    }

    /// The chunk's bytes if stored and intact: what this node sends to others (served, copied,
    /// proven). A file whose bytes no longer match its id (damaged on disk) is deleted, the
    /// chunk reads as missing from then on (so repair fetches it again), and `None` is returned:
    /// a reader bans a peer that sends bytes that do not match.
    pub fn read_verified(&self, id: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.read(id)? else {
            return Ok(None);
        };
        if Key::hash(&bytes) == *id {
            return Ok(Some(bytes));
        }
        {
            let _guard = self.stripe(id);
            match self.chunks.remove(id) {
                Ok(()) => {
                    warn!(%id, "a stored chunk no longer matches its id (disk damage?); deleted it, not sent")
                }
                Err(e) => {
                    warn!(%id, %e, "a stored chunk no longer matches its id; could not delete it")
                }
            }
        }
        // Reading again notes the chunk as missing, for repair.
        let _ = self.read(id);
        Ok(None)
    }

    /// Rewrites the bytes of a stored chunk whose file was found corrupt (the index is
    /// unchanged). The caller has verified `bytes` against `id`.
    pub fn repair(&self, id: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        let _guard = self.stripe(id);
        if self.contains(id)? {
            self.chunks
                .put(id, bytes)
                .map_err(|e| self.classify(e.into()))?;
            lock(&self.missing).remove(id);
        }
        Ok(())
    }

    /// The chunk's size in bytes, if stored (from the index: no file is read).
    pub fn len_of(&self, id: &Key) -> Result<Option<u64>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            Ok(table.get(id.as_bytes())?.map(|g| g.value().2))
        })
    }

    /// Whether the chunk is stored.
    pub fn contains(&self, id: &Key) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            Ok(table.get(id.as_bytes())?.is_some())
        })
    }

    /// Every stored chunk id.
    pub fn ids(&self) -> Result<Vec<Key>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                out.push(Key::from_bytes(row?.0.value()));
            }
            Ok(out)
        })
    }

    /// Whether the chunk is kept as a responsible replica.
    pub fn is_replica(&self, id: &Key) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            Ok(table.get(id.as_bytes())?.is_some_and(|g| g.value().1))
        })
    }

    /// Whether the chunk is kept for good: pinned, or a responsible replica (not only cached).
    pub fn keeps(&self, id: &Key) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            Ok(table
                .get(id.as_bytes())?
                .is_some_and(|g| g.value().0 > 0 || g.value().1))
        })
    }

    /// Pinned content roots.
    pub fn pinned_roots(&self) -> Result<Vec<Key>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(PINS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                out.push(Key::from_bytes(row?.0.value()));
            }
            Ok(out)
        })
    }

    /// Removes cached chunks (neither pinned nor kept as a responsible replica, nor protected
    /// by a put in progress), least recently used first, until at most `keep` bytes of cache
    /// remain; with `dry_run` only says what it would remove. Pinned chunks and replicas are
    /// never touched. The removed ids go to the eviction callback, as evicted ones do.
    pub fn collect_garbage(&self, keep: u64, dry_run: bool) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let victims = self.with_db(|db| {
            let txn = db.begin_write()?;
            let victims = {
                let mut table = txn.open_table(CHUNKS)?;
                let mut lru = txn.open_table(LRU)?;
                let mut meta = txn.open_table(META)?;
                let staged = lock(&self.staged);
                let mut cache = Vec::new();
                let mut cache_bytes = 0;
                for row in lru.iter()? {
                    let (tick, id) = row?.0.value();
                    if staged.contains_key(&Key::from_bytes(id)) {
                        continue;
                    }
                    let size = table.get(&id)?.map_or(0, |g| g.value().2);
                    cache_bytes += size;
                    cache.push((tick, id, size));
                }
                drop(staged);
                // Oldest first, until what is left fits in `keep`.
                let mut victims = Vec::new();
                for (tick, id, size) in cache {
                    if cache_bytes <= keep {
                        break;
                    }
                    cache_bytes -= size;
                    report.chunks += 1;
                    report.bytes += size;
                    victims.push((tick, id));
                }
                report.cache_left = cache_bytes;
                if !dry_run {
                    let mut used = meta.get("bytes")?.map_or(0, |g| g.value());
                    for &(tick, id) in &victims {
                        lru.remove((tick, id))?;
                        if let Some(e) = table.remove(&id)?.map(|g| g.value()) {
                            used = used.saturating_sub(e.2);
                        }
                    }
                    meta.insert("bytes", used)?;
                }
                victims
            };
            if dry_run {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(victims)
        })?;
        if dry_run || victims.is_empty() {
            return Ok(report);
        }
        let removed: Vec<Key> = victims
            .into_iter()
            .map(|(_, id)| Key::from_bytes(id))
            .collect();
        for id in &removed {
            // Under its stripe, and only if nobody stored it again meanwhile.
            let _guard = self.stripe(id);
            if !self.contains(id)? {
                self.chunks.remove(id)?;
                lock(&self.unsynced).remove(id);
            }
        }
        if let Some(f) = self.on_evict.get() {
            f(removed);
        }
        Ok(report)
    }

    /// Counts by reason.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            let mut s = StoreStats {
                quota: self.quota,
                ..StoreStats::default()
            };
            for row in table.iter()? {
                let (pins, replica, size, _) = row?.1.value();
                s.chunks += 1;
                s.bytes += size;
                if pins > 0 {
                    s.pinned += 1;
                }
                if replica {
                    s.replica += 1;
                }
                if pins == 0 && !replica {
                    s.cached += 1;
                }
            }
            Ok(s)
        })
    }

    fn update(
        &self,
        id: &Key,
        f: impl FnOnce((u32, bool, u64, u64)) -> (u32, bool, u64, u64),
    ) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let found = {
                let mut table = txn.open_table(CHUNKS)?;
                let mut lru = txn.open_table(LRU)?;
                let existing = table.get(id.as_bytes())?.map(|g| g.value());
                match existing {
                    None => false,
                    Some(old) => {
                        rewrite(&mut table, &mut lru, id, old, f(old))?;
                        true
                    }
                }
            };
            // Nothing to write (an insert's first question, for a new chunk): no commit, so no
            // fsync.
            if found {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(found)
        })
    }
}

/// Turns "no space left" into [`StoreError::DiskFull`], naming the data directory.
fn classify(e: StoreError, dir: Option<&Path>) -> StoreError {
    if e.is_no_space() {
        StoreError::DiskFull {
            path: dir.map(Path::to_owned).unwrap_or_default(),
        }
    } else {
        e
    }
}

/// `bytes` in the unit that suits `scale` (the quota), so every figure of one message reads
/// in the same unit: "8.0 MiB", "0.1 MiB".
fn human(bytes: u64, scale: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    match UNITS.iter().find(|(size, _)| scale >= *size) {
        Some((size, unit)) => format!("{:.1} {unit}", bytes as f64 / *size as f64),
        None => format!("{bytes} B"),
    }
}

/// Replaces a chunk's index entry `old` with `new`, moving it into or out of the LRU order as
/// it becomes evictable or stops being so.
fn rewrite(
    table: &mut redb::Table<[u8; 32], (u32, bool, u64, u64)>,
    lru: &mut redb::Table<(u64, [u8; 32]), ()>,
    id: &Key,
    old: (u32, bool, u64, u64),
    new: (u32, bool, u64, u64),
) -> Result<(), StoreError> {
    match (evictable(old), evictable(new)) {
        (true, false) => {
            lru.remove((old.3, *id.as_bytes()))?;
        }
        (false, true) => {
            lru.insert((new.3, *id.as_bytes()), ())?;
        }
        _ => {}
    }
    table.insert(id.as_bytes(), new)?;
    Ok(())
}

fn with_reason(
    (pins, replica, size, tick): (u32, bool, u64, u64),
    reason: Reason,
) -> (u32, bool, u64, u64) {
    match reason {
        Reason::Pin => (pins.saturating_add(1), replica, size, tick),
        Reason::Replica => (pins, true, size, tick),
        Reason::Cache => (pins, replica, size, tick),
    }
}

fn evictable((pins, replica, _, _): (u32, bool, u64, u64)) -> bool {
    pins == 0 && !replica
}

fn next_tick(meta: &mut redb::Table<&str, u64>) -> Result<u64, StoreError> {
    let tick = meta.get("tick")?.map_or(0, |g| g.value()) + 1;
    meta.insert("tick", tick)?;
    Ok(tick)
}

#[cfg(test)]
mod tests;
