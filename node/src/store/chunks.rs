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
    /// Stores `bytes` under `id` without waiting for the disk (a copy that may be lost in a
    /// crash: a cached chunk fetched from peers, verified whenever it is read).
    fn put_unsynced(&self, id: &Key, bytes: &[u8]) -> io::Result<()> {
        self.put(id, bytes)
    }
    /// Waits until the bytes under `id` are on the disk (for a copy stored with
    /// [`ChunkStore::put_unsynced`] that is now to be kept).
    fn sync(&self, _id: &Key) -> io::Result<()> {
        Ok(())
    }
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

    /// Where the bytes of `id` live.
    pub fn path(&self, id: &Key) -> PathBuf {
        let hex = format!("{id:x}");
        self.root.join(&hex[..2]).join(hex)
    }

    /// Every chunk file, by the id its name claims (unverified), with its path. One listing of
    /// the 256 fan-out directories; names that are not a chunk id are left alone and not listed.
    pub fn list(&self) -> io::Result<Vec<(Key, PathBuf)>> {
        let mut out = Vec::new();
        for fan in fs::read_dir(&self.root)? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(fan.path())? {
                let file = file?;
                let name = file.file_name();
                let Some(id) = name.to_str().and_then(parse_hex_key) else {
                    continue;
                };
                if file.file_type()?.is_file() {
                    out.push((id, file.path()));
                }
            }
        }
        Ok(out)
    }

    /// Moves a chunk file whose bytes do not match its name to `chunks-damaged/` beside
    /// `chunks/`, keeping it for inspection instead of deleting it. Returns where it went.
    pub fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let damaged = self.root.parent().map_or_else(
            || PathBuf::from("chunks-damaged"),
            |p| p.join("chunks-damaged"),
        );
        fs::create_dir_all(&damaged)?;
        let name = path.file_name().map_or_else(
            || std::ffi::OsString::from("unnamed"),
            std::ffi::OsStr::to_os_string,
        );
        let mut to = damaged.join(&name);
        // A second damaged copy of the same id must not overwrite the first.
        let mut n = 1;
        while to.exists() {
            let mut numbered = name.clone();
            numbered.push(format!(".{n}"));
            to = damaged.join(numbered);
            n += 1;
        }
        fs::rename(path, &to)?;
        Ok(to)
    }

    /// Writes a chunk file through a temporary file and a rename; with `sync`, waits for the
    /// disk (file and directory entry) before returning.
    fn write(&self, id: &Key, bytes: &[u8], sync: bool) -> io::Result<()> {
        let path = self.path(id);
        let dir = path.parent().expect("chunk path has a parent");
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{id:x}.{n}"));
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            drop(file);
            match fs::rename(&tmp, &path) {
                // The first chunk under its prefix: its directory comes now (not a mkdir for
                // every write).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(dir)?;
                    fs::rename(&tmp, &path)
                }
                renamed => renamed,
            }
        })();
        if let Err(e) = written {
            // A half-written temporary file on a full disk would keep the space taken after the
            // failure; give it back so the next write can succeed once space is freed.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if sync {
            // The rename itself must survive a crash: sync the directory entry.
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A key from its 64 lowercase or uppercase hex digits.
pub(crate) fn parse_hex_key(s: &str) -> Option<Key> {
    if s.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Key::from_bytes(bytes))
}

impl ChunkStore for FsChunkStore {
    fn put(&self, id: &Key, bytes: &[u8]) -> io::Result<()> {
        self.write(id, bytes, true)
    }

    fn put_unsynced(&self, id: &Key, bytes: &[u8]) -> io::Result<()> {
        self.write(id, bytes, false)
    }

    fn sync(&self, id: &Key) -> io::Result<()> {
        let path = self.path(id);
        match fs::File::open(&path) {
            Ok(file) => file.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        fs::File::open(path.parent().expect("chunk path has a parent"))?.sync_all()
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
