//! Where chunk bytes live: a trait, a directory of files, and a map in memory.
//!
//! The on-disk store writes every chunk atomically (temporary file, fsync, rename, fsync of the
//! directory), so a `kill -9` at any instant leaves either the whole chunk or none of it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_dht::Key;

/// Chunk bytes by id. Blocking: call from `spawn_blocking` in async code.
pub trait ChunkStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `bytes` under `id`, replacing any previous bytes, atomically.
    fn put(&self, id: &Key, bytes: &[u8]) -> io::Result<()>;
    /// The bytes under `id`, if any.
    fn get(&self, id: &Key) -> io::Result<Option<Vec<u8>>>;
    /// Removes `id`; removing an absent id is not an error.
    fn remove(&self, id: &Key) -> io::Result<()>;
}

/// Chunks as files `chunks/<first two hex digits>/<64 hex digits>` under a directory.
#[derive(Debug)]
pub struct FsChunkStore {
    root: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

impl FsChunkStore {
    /// Opens (creating if needed) the store under `dir`. Leftover temporary files from a crash
    /// are removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let root = dir.join("chunks");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&root)?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(Self {
            root,
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    fn path(&self, id: &Key) -> PathBuf {
        let hex = format!("{id:x}");
        self.root.join(&hex[..2]).join(hex)
    }
}

impl ChunkStore for FsChunkStore {
    fn put(&self, id: &Key, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(id);
        let dir = path.parent().expect("chunk path has a parent");
        fs::create_dir_all(dir)?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{id:x}.{n}"));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        // The rename itself must survive a crash: sync the directory entry.
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn get(&self, id: &Key) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, id: &Key) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Chunks in memory, for tests and for nodes that keep nothing.
#[derive(Debug, Default)]
pub struct MemChunkStore {
    chunks: Mutex<HashMap<Key, Vec<u8>>>,
}

impl MemChunkStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ChunkStore for MemChunkStore {
    fn put(&self, id: &Key, bytes: &[u8]) -> io::Result<()> {
        lock(&self.chunks).insert(*id, bytes.to_vec());
        Ok(())
    }

    fn get(&self, id: &Key) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.chunks).get(id).cloned())
    }

    fn remove(&self, id: &Key) -> io::Result<()> {
        lock(&self.chunks).remove(id);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a HashMap half-updated in a way we care about.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared suite, run over both implementations with boundary sizes.
    fn suite(store: &dyn ChunkStore) {
        let max = crate::chunker::MAX_CHUNK;
        for size in [0, 1, max - 1, max, max + 1] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let id = Key::hash(&bytes);
            assert_eq!(store.get(&id).unwrap(), None);
            store.put(&id, &bytes).unwrap();
            assert_eq!(
                store.get(&id).unwrap().as_deref(),
                Some(&bytes[..]),
                "size {size}"
            );
            store.put(&id, &bytes).unwrap(); // idempotent
            store.remove(&id).unwrap();
            assert_eq!(store.get(&id).unwrap(), None);
            store.remove(&id).unwrap(); // absent is fine
        }
        let ids: Vec<Key> = (0..300u32).map(|i| Key::hash(&i.to_be_bytes())).collect();
        for (i, id) in ids.iter().enumerate() {
            store.put(id, &(i as u32).to_be_bytes()).unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                store.get(id).unwrap(),
                Some((i as u32).to_be_bytes().to_vec())
            );
        }
    }

    #[test]
    fn memory_store() {
        suite(&MemChunkStore::new());
    }

    #[test]
    fn fs_store() {
        let dir = tempfile::tempdir().unwrap();
        suite(&FsChunkStore::open(dir.path()).unwrap());
        // Reopening finds what was written.
        let store = FsChunkStore::open(dir.path()).unwrap();
        assert!(
            store
                .get(&Key::hash(&7u32.to_be_bytes()))
                .unwrap()
                .is_some()
        );
    }
}
