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

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cairn_dht::Key;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

pub use chunks::{ChunkStore, FsChunkStore, MemChunkStore};

/// id → (pins, responsible replica, size, last access tick).
const CHUNKS: TableDefinition<[u8; 32], (u32, bool, u64, u64)> = TableDefinition::new("chunks");
/// (last access tick, id) of every evictable (cache-only) chunk: the LRU order.
const LRU: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("lru");
/// Pinned content roots.
const PINS: TableDefinition<[u8; 32], ()> = TableDefinition::new("pins");
/// Counters: "bytes" stored, "tick" of the access clock.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

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
        "storage quota of {quota} bytes is full of pinned and replica data; raise the quota or unpin content"
    )]
    QuotaFull {
        /// The quota.
        quota: u64,
    },
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

/// Chunks and their index.
#[derive(Clone)]
pub struct Store {
    chunks: Arc<dyn ChunkStore>,
    db: Arc<Database>,
    quota: u64,
    /// Serialises, per chunk id, "write the bytes + commit the index" against "commit an
    /// eviction + delete the bytes", so an eviction never deletes bytes a concurrent insert of
    /// the same chunk just wrote. Striped: 64 locks for all ids.
    stripes: Arc<Vec<Mutex<()>>>,
    /// Told which chunks were evicted (the node tells the engine it no longer holds them).
    on_evict: Arc<OnceLock<EvictHook>>,
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
    pub fn open(dir: &Path, quota: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        // The index first: its lock keeps a second process from touching the chunk files
        // (opening the chunk store clears leftover temporary files).
        let db = match Database::create(dir.join("index.redb")) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(dir.to_owned()));
            }
            other => other?,
        };
        let chunks = Arc::new(FsChunkStore::open(dir)?);
        Self::with_parts(chunks, db, quota)
    }

    /// A store that keeps everything in memory.
    pub fn in_memory(quota: u64) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::with_parts(Arc::new(MemChunkStore::new()), db, quota)
    }

    fn with_parts(
        chunks: Arc<dyn ChunkStore>,
        db: Database,
        quota: u64,
    ) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(CHUNKS)?;
        txn.open_table(LRU)?;
        txn.open_table(PINS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self {
            chunks,
            db: Arc::new(db),
            quota,
            stripes: Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()),
            on_evict: Arc::new(OnceLock::new()),
        })
    }

    /// Sets what to call with the ids of evicted chunks (once; later calls are ignored).
    pub fn on_evict(&self, f: impl Fn(Vec<Key>) + Send + Sync + 'static) {
        let _ = self.on_evict.set(Box::new(f));
    }

    fn stripe(&self, id: &Key) -> MutexGuard<'_, ()> {
        let i = usize::from(id.as_bytes()[0]) % STRIPES;
        // The guarded data is (); a poisoned lock protects nothing that could be half-updated.
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a chunk for `reason`. If it is already stored, only the reason is added. Returns
    /// whether the bytes were new. Cached chunks are evicted to make room; if that is not enough
    /// the chunk is refused with [`StoreError::QuotaFull`].
    pub fn insert(&self, id: &Key, bytes: &[u8], reason: Reason) -> Result<bool, StoreError> {
        if self.add_reason(id, reason)? {
            return Ok(false);
        }
        let size = bytes.len() as u64;
        let mut evicted = Vec::new();
        let new = {
            let _guard = self.stripe(id);
            self.chunks.put(id, bytes)?;
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let outcome = (|| -> Result<bool, StoreError> {
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
                while bytes_used + size > self.quota {
                    let Some((tick, victim)) = lru.first()?.map(|(k, _)| k.value()) else {
                        return Err(StoreError::QuotaFull { quota: self.quota });
                    };
                    lru.remove((tick, victim))?;
                    if let Some(e) = table.remove(&victim)?.map(|g| g.value()) {
                        bytes_used -= e.2;
                    }
                    evicted.push(Key::from_bytes(victim));
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
            match outcome {
                Ok(new) => {
                    txn.commit()?;
                    new
                }
                Err(e) => {
                    txn.abort()?;
                    self.chunks.remove(id)?;
                    return Err(e);
                }
            }
        };
        if !evicted.is_empty() {
            for victim in &evicted {
                // Under the victim's stripe, and only if nobody stored it again meanwhile.
                let _guard = self.stripe(victim);
                if !self.contains(victim)? {
                    self.chunks.remove(victim)?;
                }
            }
            if let Some(f) = self.on_evict.get() {
                f(evicted);
            }
        }
        Ok(new)
    }

    /// Pins `root`: adds one pin to every chunk occurrence in `ids` (the chunks under it, as
    /// walked from it) and records the root, in one transaction. Returns false, changing
    /// nothing, if the root was pinned already; fails with [`StoreError::Incomplete`] if any
    /// chunk is not stored.
    pub fn pin_all(&self, root: &Key, ids: &[Key]) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut pins = txn.open_table(PINS)?;
            if pins.get(root.as_bytes())?.is_some() {
                return Ok(false);
            }
            let mut table = txn.open_table(CHUNKS)?;
            let mut lru = txn.open_table(LRU)?;
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
        txn.commit()?;
        Ok(true)
    }

    /// Unpins `root`: removes one pin from every chunk occurrence in `ids` that is stored, and
    /// forgets the root, in one transaction. Returns false if the root was not pinned.
    pub fn unpin_all(&self, root: &Key, ids: &[Key]) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
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
    }

    /// Adds `reason` to a stored chunk. Returns false if the chunk is not stored.
    pub fn add_reason(&self, id: &Key, reason: Reason) -> Result<bool, StoreError> {
        self.update(id, |e| with_reason(e, reason))
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

    /// The chunk's bytes, if stored. Marks it as recently used.
    pub fn read(&self, id: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let entry = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(CHUNKS)?;
            table.get(id.as_bytes())?.map(|g| g.value())
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let bytes = self.chunks.get(id)?;
        if bytes.is_some() && evictable(entry) {
            // LRU order matters only for evictable chunks; losing a touch in a crash is harmless,
            // so it is not fsynced.
            let mut txn = self.db.begin_write()?;
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
        }
        Ok(bytes)
    }

    /// Rewrites the bytes of a stored chunk whose file was found corrupt (the index is
    /// unchanged). The caller has verified `bytes` against `id`.
    pub fn repair(&self, id: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        if self.contains(id)? {
            self.chunks.put(id, bytes)?;
        }
        Ok(())
    }

    /// Whether the chunk is stored.
    pub fn contains(&self, id: &Key) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        Ok(table.get(id.as_bytes())?.is_some())
    }

    /// Every stored chunk id.
    pub fn ids(&self) -> Result<Vec<Key>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(Key::from_bytes(row?.0.value()));
        }
        Ok(out)
    }

    /// Whether the chunk is kept as a responsible replica.
    pub fn is_replica(&self, id: &Key) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        Ok(table.get(id.as_bytes())?.is_some_and(|g| g.value().1))
    }

    /// Pinned content roots.
    pub fn pinned_roots(&self) -> Result<Vec<Key>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PINS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(Key::from_bytes(row?.0.value()));
        }
        Ok(out)
    }

    /// Counts by reason.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
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
    }

    fn update(
        &self,
        id: &Key,
        f: impl FnOnce((u32, bool, u64, u64)) -> (u32, bool, u64, u64),
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let found = {
            let mut table = txn.open_table(CHUNKS)?;
            let mut lru = txn.open_table(LRU)?;
            let existing = table.get(id.as_bytes())?.map(|g| g.value());
            match existing {
                None => false,
                Some(old) => {
                    let new = f(old);
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
                    true
                }
            }
        };
        txn.commit()?;
        Ok(found)
    }
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
mod tests {
    use super::*;

    fn chunk(n: u32, size: usize) -> (Key, Vec<u8>) {
        let bytes: Vec<u8> = (0..size).map(|i| (i as u32 ^ n) as u8).collect();
        (Key::hash(&bytes), bytes)
    }

    fn both(quota: u64, f: impl Fn(&Store)) {
        f(&Store::in_memory(quota).unwrap());
        let dir = tempfile::tempdir().unwrap();
        f(&Store::open(dir.path(), quota).unwrap());
    }

    #[test]
    fn evicts_least_recently_used_cache_only() {
        both(300, |s| {
            let (a, ab) = chunk(1, 100);
            let (b, bb) = chunk(2, 100);
            let (c, cb) = chunk(3, 100);
            let (d, db) = chunk(4, 100);
            assert!(s.insert(&a, &ab, Reason::Cache).unwrap());
            assert!(s.insert(&b, &bb, Reason::Pin).unwrap());
            assert!(s.insert(&c, &cb, Reason::Cache).unwrap());
            s.read(&a).unwrap(); // a is now more recent than c
            assert!(s.insert(&d, &db, Reason::Replica).unwrap());
            assert!(
                !s.contains(&c).unwrap(),
                "c was the least recently used cache chunk"
            );
            assert!(s.contains(&a).unwrap() && s.contains(&b).unwrap() && s.contains(&d).unwrap());
            let stats = s.stats().unwrap();
            assert_eq!(
                (
                    stats.chunks,
                    stats.bytes,
                    stats.pinned,
                    stats.replica,
                    stats.cached
                ),
                (3, 300, 1, 1, 1)
            );
            // Only a is evictable; a fifth chunk evicts it, a sixth does not fit.
            let (e, eb) = chunk(5, 100);
            s.insert(&e, &eb, Reason::Pin).unwrap();
            assert!(!s.contains(&a).unwrap());
            let (f, fb) = chunk(6, 100);
            assert!(matches!(
                s.insert(&f, &fb, Reason::Pin),
                Err(StoreError::QuotaFull { quota: 300 })
            ));
            assert!(!s.contains(&f).unwrap());
            // Unpinning makes room.
            s.remove_reason(&e, Reason::Pin).unwrap();
            s.insert(&f, &fb, Reason::Pin).unwrap();
            assert_eq!(s.read(&f).unwrap(), Some(fb.clone()));
        });
    }

    #[test]
    fn reasons_add_up() {
        both(1 << 20, |s| {
            let (a, ab) = chunk(1, 10);
            assert!(s.insert(&a, &ab, Reason::Pin).unwrap());
            assert!(!s.insert(&a, &ab, Reason::Pin).unwrap());
            s.remove_reason(&a, Reason::Pin).unwrap();
            assert_eq!(s.stats().unwrap().pinned, 1, "pinned twice, unpinned once");
            s.remove_reason(&a, Reason::Pin).unwrap();
            assert_eq!(s.stats().unwrap().cached, 1);
            // Pinning a root pins each occurrence once, atomically, and only once per root.
            let (b, bb) = chunk(2, 10);
            s.insert(&b, &bb, Reason::Cache).unwrap();
            assert!(s.pin_all(&a, &[a, b, b]).unwrap());
            assert!(!s.pin_all(&a, &[a, b, b]).unwrap());
            assert_eq!(s.pinned_roots().unwrap(), vec![a]);
            assert_eq!(s.stats().unwrap().pinned, 2);
            assert!(s.unpin_all(&a, &[a, b, b]).unwrap());
            assert!(!s.unpin_all(&a, &[a, b, b]).unwrap());
            assert_eq!(s.stats().unwrap().cached, 2);
            let (c, _) = chunk(3, 10);
            assert!(matches!(
                s.pin_all(&c, &[c]),
                Err(StoreError::Incomplete { missing: 1 })
            ));
            assert!(s.pinned_roots().unwrap().is_empty());
        });
    }

    #[test]
    fn reopened_store_serves_what_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ab) = chunk(1, 1000);
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.insert(&a, &ab, Reason::Replica).unwrap();
        }
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.read(&a).unwrap(), Some(ab));
        assert!(s.is_replica(&a).unwrap());
        assert_eq!(s.ids().unwrap(), vec![a]);
    }
}
