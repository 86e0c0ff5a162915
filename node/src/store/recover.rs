//! Opening the index defensively, rebuilding it from the chunk files when it is damaged, and
//! reconciling it with those files on every open.
//!
//! The chunk files are the truth: each is named by the BLAKE3 hash of its bytes, so it can be
//! verified without the index. The index only says *why* a chunk is kept, and the pinned roots
//! are also kept in `pins.list` beside it, so a lost index loses no byte and no pin.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cairn_dht::Key;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tracing::warn;

use super::chunks::{FsChunkStore, parse_hex_key};
use super::{CHUNKS, LRU, META, PINS, StoreError, evictable, next_tick};

/// Name of the index database in the data directory.
pub(crate) const INDEX_FILE: &str = "index.redb";
/// Name of the copy of the pinned roots kept beside the index, one root in hex a line.
pub const PINS_FILE: &str = "pins.list";
/// Chunks indexed per write transaction while rebuilding, so memory stays bounded.
const REBUILD_BATCH: usize = 256;

/// What `open` found and did, for the node to report and finish (None when the index was sound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// What was wrong with the index, in words.
    pub reason: String,
    /// Where the damaged index was moved (it is never deleted).
    pub moved_to: PathBuf,
    /// Chunks re-indexed from their files.
    pub chunks: u64,
    /// Chunk files whose bytes do not match their name, moved to `chunks-damaged/`.
    pub damaged_files: u64,
    /// The pinned roots as last recorded in `pins.list`; the node pins them again by walking
    /// them (the store cannot read manifests).
    pub roots: Vec<Key>,
}

/// Why the index could not be used as it is.
pub(crate) enum OpenFailure {
    /// Another process holds it.
    Locked,
    /// The file is damaged: say why, then rebuild.
    Damaged(String),
    /// Something else failed (permissions, i/o) that rebuilding would not fix.
    Other(StoreError),
}

/// Opens the index and checks it, turning redb's panics on a damaged file into
/// [`OpenFailure::Damaged`]. The full integrity check reads the whole index once: a few MB
/// even for a store of many GB of chunks, and the only way to see a flipped bit before it
/// misleads the store.
pub(crate) fn open_checked(path: &Path) -> Result<Database, OpenFailure> {
    let attempt = catch_unwind(AssertUnwindSafe(|| -> Result<Database, redb::Error> {
        let mut db = Database::create(path)?;
        if !db.check_integrity()? {
            return Err(redb::Error::Corrupted(
                "it failed redb's integrity check".into(),
            ));
        }
        create_tables(&db)?;
        // A cheap read of every table, so a damaged page behind a sound header shows now.
        let txn = db.begin_read()?;
        txn.open_table(CHUNKS)?.len()?;
        txn.open_table(LRU)?.len()?;
        txn.open_table(PINS)?.len()?;
        txn.open_table(META)?.len()?;
        drop(txn);
        Ok(db)
    }));
    match attempt {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::Error::DatabaseAlreadyOpen)) => Err(OpenFailure::Locked),
        Ok(Err(redb::Error::Io(e)))
            if !matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            Err(OpenFailure::Other(StoreError::Index(redb::Error::Io(e))))
        }
        Ok(Err(e)) => Err(OpenFailure::Damaged(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(OpenFailure::Damaged(format!(
                "the index library panicked reading it ({what})"
            )))
        }
    }
}

pub(crate) fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(CHUNKS)?;
    txn.open_table(LRU)?;
    txn.open_table(PINS)?;
    txn.open_table(META)?;
    txn.commit()?;
    Ok(())
}

/// Whether the index lists no chunk at all.
pub(crate) fn is_empty(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    Ok(txn.open_table(CHUNKS)?.is_empty()?)
}

/// Moves the damaged index aside, creates a fresh one and indexes every chunk file that
/// verifies, as a replica: nothing found on disk may become evictable before the node knows
/// what it is (the repair jobs sort out responsibility later).
pub(crate) fn rebuild(
    dir: &Path,
    reason: String,
    chunks: &FsChunkStore,
    files: Vec<(Key, PathBuf)>,
) -> Result<(Database, Recovery), StoreError> {
    let path = dir.join(INDEX_FILE);
    let moved_to = move_aside(&path)?;
    let db = Database::create(&path)?;
    create_tables(&db)?;
    let (mut indexed, mut damaged) = (0u64, 0u64);
    for batch in files.chunks(REBUILD_BATCH) {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(CHUNKS)?;
            let mut meta = txn.open_table(META)?;
            let mut bytes_used = meta.get("bytes")?.map_or(0, |g| g.value());
            for (id, file) in batch {
                match verified_len(id, file) {
                    Ok(Some(size)) => {
                        let tick = next_tick(&mut meta)?;
                        table.insert(id.as_bytes(), (0, true, size, tick))?;
                        bytes_used += size;
                        indexed += 1;
                    }
                    Ok(None) => {
                        damaged += 1;
                        quarantine(chunks, file);
                    }
                    Err(e) => {
                        // Unreadable now is not proof of damage: leave it where it is.
                        damaged += 1;
                        warn!(path = %file.display(), %e, "cannot read a chunk file while rebuilding the index; leaving it in place");
                    }
                }
            }
            meta.insert("bytes", bytes_used)?;
        }
        txn.commit()?;
    }
    let recovery = Recovery {
        reason,
        moved_to,
        chunks: indexed,
        damaged_files: damaged,
        roots: read_pins_list(dir),
    };
    Ok((db, recovery))
}

/// Brings a sound index and the chunk files into agreement: entries whose file is gone are
/// dropped if they were only cache, else kept and returned as missing (to fetch back from
/// peers); files with no entry (a crash between writing the bytes and committing, or between
/// committing an eviction and deleting) are adopted as cache if they verify, else quarantined.
/// Known files are not read: one directory listing is the whole cost of a clean open.
pub(crate) fn reconcile(
    db: &Database,
    chunks: &FsChunkStore,
    files: Vec<(Key, PathBuf)>,
) -> Result<HashSet<Key>, StoreError> {
    let mut on_disk: HashMap<Key, PathBuf> = files.into_iter().collect();
    let mut missing = HashSet::new();
    let mut dropped = Vec::new();
    {
        let txn = db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        for row in table.iter()? {
            let (k, v) = row?;
            let (id, entry) = (Key::from_bytes(k.value()), v.value());
            if on_disk.remove(&id).is_some() {
                continue;
            }
            if evictable(entry) {
                dropped.push((id, entry));
            } else {
                missing.insert(id);
            }
        }
    }
    // What is left on disk has no index entry.
    if dropped.is_empty() && on_disk.is_empty() {
        return Ok(missing);
    }
    let (mut adopted, mut quarantined) = (0u64, 0u64);
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(CHUNKS)?;
        let mut lru = txn.open_table(LRU)?;
        let mut meta = txn.open_table(META)?;
        let mut bytes_used = meta.get("bytes")?.map_or(0, |g| g.value());
        for (id, entry) in &dropped {
            table.remove(id.as_bytes())?;
            lru.remove((entry.3, *id.as_bytes()))?;
            bytes_used = bytes_used.saturating_sub(entry.2);
        }
        for (id, file) in &on_disk {
            match verified_len(id, file) {
                Ok(Some(size)) => {
                    let tick = next_tick(&mut meta)?;
                    table.insert(id.as_bytes(), (0, false, size, tick))?;
                    lru.insert((tick, *id.as_bytes()), ())?;
                    bytes_used += size;
                    adopted += 1;
                }
                Ok(None) => {
                    quarantine(chunks, file);
                    quarantined += 1;
                }
                Err(e) => {
                    warn!(path = %file.display(), %e, "cannot read an unindexed chunk file; leaving it in place")
                }
            }
        }
        meta.insert("bytes", bytes_used)?;
    }
    txn.commit()?;
    if !dropped.is_empty() || quarantined > 0 {
        warn!(
            forgotten = dropped.len(),
            adopted,
            quarantined,
            "the chunk index and the chunk files disagreed: cached chunks whose file was gone are forgotten, unindexed files adopted as cache, files that do not match their name moved to chunks-damaged/"
        );
    }
    Ok(missing)
}

/// The roots in `pins.list`; an absent file or a line that is not a root is skipped.
pub(crate) fn read_pins_list(dir: &Path) -> Vec<Key> {
    let Ok(text) = fs::read_to_string(dir.join(PINS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| parse_hex_key(l.trim()))
        .collect()
}

/// Replaces `pins.list` atomically (temporary file, fsync, rename, fsync of the directory).
pub(crate) fn write_pins_list(dir: &Path, roots: &[Key]) -> io::Result<()> {
    let tmp = dir.join(format!("{PINS_FILE}.tmp"));
    let mut text = String::with_capacity(roots.len() * 65);
    for root in roots {
        text.push_str(&format!("{root:x}\n"));
    }
    let mut file = fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(PINS_FILE))?;
    fs::File::open(dir)?.sync_all()
}

/// The file's length if its bytes hash to `id`, None if they do not.
fn verified_len(id: &Key, file: &Path) -> io::Result<Option<u64>> {
    let bytes = fs::read(file)?;
    Ok((Key::hash(&bytes) == *id).then_some(bytes.len() as u64))
}

fn quarantine(chunks: &FsChunkStore, file: &Path) {
    match chunks.quarantine(file) {
        Ok(to) => {
            warn!(from = %file.display(), to = %to.display(), "a chunk file does not match its name; moved it aside")
        }
        Err(e) => {
            warn!(path = %file.display(), %e, "a chunk file does not match its name and cannot be moved aside")
        }
    }
}

/// Renames the index to `index.redb.damaged-<unix seconds>` (numbered if that exists).
fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{INDEX_FILE}.damaged-{secs}");
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut to = dir.join(&base);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    match fs::rename(path, &to) {
        Ok(()) => Ok(to),
        // Nothing to keep: the index file was deleted outright.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(to),
        Err(e) => Err(e),
    }
}
