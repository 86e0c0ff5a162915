//! The DHT's signed records and provider entries on disk (`records.redb` in the data
//! directory), so that what this node stores for others — and its own name — survives a
//! restart. The engine reads and writes a [`MemoryRecordStore`] as before; every change is
//! written through to the file, which is read back at start (each record verified again, the
//! expired ones dropped).
//!
//! Writes are not synced one by one (an fsync per record would stall the driver under a burst
//! of announcements); they are synced once a minute, when the engine drops expired entries, and
//! when the node stops. A crash loses at most the last minute, which the records' owners
//! publish again within the hour. A file that cannot be read is moved aside and started afresh,
//! with a warning: these are copies of what the network holds, never the only copy of anything.

use std::path::{Path, PathBuf};

use cairn_dht::{
    Contact, Key, MemoryRecordStore, ProviderRecord, RecordStore, SignedRecord, StoreError,
    StoreLimits, Timestamp,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::protocol::PeerAddr;

/// The file in the data directory.
pub(crate) const RECORDS_FILE: &str = "records.redb";

/// Record key → the signed record, CBOR.
const RECORDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("records");
/// Content key → its provider entries, CBOR.
const PROVIDERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("providers");

#[derive(Serialize, Deserialize)]
struct Entry {
    provider: Contact<PeerAddr>,
    expires: Timestamp,
}

/// A [`RecordStore`] kept in memory and mirrored in a redb file.
pub(crate) struct DiskRecordStore {
    mem: MemoryRecordStore<PeerAddr>,
    /// `None` without a data directory, or after the file failed (logged once).
    db: Option<Database>,
    /// Written since the last sync.
    dirty: bool,
}

impl std::fmt::Debug for DiskRecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskRecordStore")
            .field("records", &self.mem.record_count())
            .field("on_disk", &self.db.is_some())
            .finish()
    }
}

impl DiskRecordStore {
    /// The store of a node without a data directory: memory only.
    pub(crate) fn in_memory(limits: StoreLimits) -> Self {
        Self {
            mem: MemoryRecordStore::new(limits),
            db: None,
            dirty: false,
        }
    }

    /// Opens (or creates) the file in `dir` and loads what it holds that is still valid at
    /// `now`. Never fails: a file that cannot be read is moved aside (and said so).
    pub(crate) fn open(dir: &Path, limits: StoreLimits, now: Timestamp) -> Self {
        let path = dir.join(RECORDS_FILE);
        let mut store = Self::in_memory(limits.clone());
        store.db = match load(&path, &mut store.mem, now) {
            Ok(db) => Some(db),
            Err(e) => {
                let aside = aside_name(&path);
                warn!(
                    path = %path.display(),
                    error = %e,
                    moved_to = %aside.display(),
                    "the DHT records file could not be read; starting with an empty one"
                );
                store.mem = MemoryRecordStore::new(limits);
                let _ = std::fs::rename(&path, &aside);
                Database::create(&path)
                    .map_err(|e| {
                        warn!(error = %e, "cannot create the DHT records file; records stay in memory")
                    })
                    .ok()
            }
        };
        store
    }

    /// Writes `f`'s changes in one transaction; a failure turns the mirror off (the engine goes
    /// on in memory) with a warning.
    fn write(
        &mut self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) {
        let Some(db) = &self.db else {
            return;
        };
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => self.dirty = !matches!(durability, Durability::Immediate),
            Err(e) => {
                warn!(error = %e, "writing the DHT records file failed; records stay in memory until the node restarts");
                self.db = None;
            }
        }
    }

    fn write_providers(&mut self, key: Key) {
        let entries: Vec<Entry> = self
            .mem
            .provider_records(&key)
            .iter()
            .map(|p| Entry {
                provider: p.provider.clone(),
                expires: p.expires,
            })
            .collect();
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &entries).unwrap_or_default();
        self.write(Durability::None, |txn| {
            let mut table = txn.open_table(PROVIDERS)?;
            if entries.is_empty() {
                table.remove(key.as_bytes())?;
            } else {
                table.insert(key.as_bytes(), bytes.as_slice())?;
            }
            Ok(())
        });
    }

    /// Syncs what was written so far.
    pub(crate) fn sync(&mut self) {
        if self.dirty {
            self.write(Durability::Immediate, |_| Ok(()));
        }
    }
}

impl Drop for DiskRecordStore {
    fn drop(&mut self) {
        self.sync();
    }
}

/// Opens the file and loads it into `mem`.
fn load(
    path: &Path,
    mem: &mut MemoryRecordStore<PeerAddr>,
    now: Timestamp,
) -> Result<Database, redb::Error> {
    let db = Database::create(path)?;
    {
        let txn = db.begin_write()?;
        txn.open_table(RECORDS)?;
        txn.open_table(PROVIDERS)?;
        txn.commit()?;
    }
    let txn = db.begin_read()?;
    for row in txn.open_table(RECORDS)?.iter()? {
        let (_, value) = row?;
        // Verified again: the file is only as trustworthy as the disk.
        let record: Option<SignedRecord> = cbor4ii::serde::from_slice(value.value()).ok();
        if let Some(record) = record.filter(|r| r.verify(now).is_ok()) {
            let _ = mem.put(record);
        }
    }
    for row in txn.open_table(PROVIDERS)?.iter()? {
        let (key, value) = row?;
        let key = Key::from_bytes(*key.value());
        let entries: Vec<Entry> = cbor4ii::serde::from_slice(value.value()).unwrap_or_default();
        for e in entries.into_iter().filter(|e| e.expires > now) {
            let record = ProviderRecord {
                provider: e.provider,
                expires: e.expires,
            };
            let _ = mem.add_provider(key, record);
        }
    }
    drop(txn);
    Ok(db)
}

fn aside_name(path: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    path.with_extension(format!("redb.damaged-{stamp}"))
}

impl RecordStore<PeerAddr> for DiskRecordStore {
    fn get(&self, key: &Key, now: Timestamp) -> Option<&SignedRecord> {
        self.mem.get(key, now)
    }

    fn put(&mut self, record: SignedRecord) -> Result<(), StoreError> {
        self.mem.put(record.clone())?;
        let key = record.key();
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &record).unwrap_or_default();
        self.write(Durability::None, |txn| {
            txn.open_table(RECORDS)?
                .insert(key.as_bytes(), bytes.as_slice())?;
            Ok(())
        });
        Ok(())
    }

    fn add_provider(
        &mut self,
        key: Key,
        record: ProviderRecord<PeerAddr>,
    ) -> Result<(), StoreError> {
        self.mem.add_provider(key, record)?;
        self.write_providers(key);
        Ok(())
    }

    fn providers(&self, key: &Key, now: Timestamp) -> Vec<Contact<PeerAddr>> {
        self.mem.providers(key, now)
    }

    fn remove_expired(&mut self, now: Timestamp) {
        let records_before = self.mem.record_keys();
        let providers_before: Vec<(Key, usize)> = self
            .mem
            .provider_keys()
            .map(|k| (*k, self.mem.provider_records(k).len()))
            .collect();
        self.mem.remove_expired(now);
        let records_after: std::collections::BTreeSet<Key> =
            self.mem.record_keys().into_iter().collect();
        let gone: Vec<Key> = records_before
            .into_iter()
            .filter(|k| !records_after.contains(k))
            .collect();
        if !gone.is_empty() {
            self.write(Durability::None, |txn| {
                let mut table = txn.open_table(RECORDS)?;
                for key in &gone {
                    table.remove(key.as_bytes())?;
                }
                Ok(())
            });
        }
        // Only the lists that lost entries are written again.
        for (key, before) in providers_before {
            if self.mem.provider_records(&key).len() != before {
                self.write_providers(key);
            }
        }
        self.sync();
    }

    fn record_count(&self) -> usize {
        self.mem.record_count()
    }

    fn record_keys(&self) -> Vec<Key> {
        self.mem.record_keys()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> Timestamp {
        Timestamp::from_unix(Duration::from_secs(1_800_000_000))
    }

    fn provider(n: u8) -> ProviderRecord<PeerAddr> {
        let peer = libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
            .unwrap()
            .public()
            .to_peer_id();
        let addr = PeerAddr {
            peer,
            addr: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        };
        ProviderRecord {
            provider: Contact::new(crate::protocol::node_id(&peer), addr),
            expires: t0() + HOUR,
        }
    }

    #[test]
    fn records_and_providers_survive_a_reopen_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let lasting = SignedRecord::sign(&[1; 32], b"a".to_vec(), 1, t0() + 4 * HOUR);
        let brief = SignedRecord::sign(&[2; 32], b"b".to_vec(), 1, t0() + HOUR / 2);
        let content = Key::hash(b"content");
        {
            let mut store = DiskRecordStore::open(dir.path(), StoreLimits::default(), t0());
            store.put(lasting.clone()).unwrap();
            store.put(brief.clone()).unwrap();
            store.add_provider(content, provider(1)).unwrap();
        }
        let later = t0() + HOUR;
        let store = DiskRecordStore::open(dir.path(), StoreLimits::default(), later - HOUR / 4);
        assert_eq!(store.get(&lasting.key(), later), Some(&lasting));
        assert_eq!(store.get(&brief.key(), t0()), None, "expired on load");
        assert_eq!(
            store.providers(&content, later - HOUR / 4),
            vec![provider(1).provider]
        );
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_the_store_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORDS_FILE), b"not a database").unwrap();
        let mut store = DiskRecordStore::open(dir.path(), StoreLimits::default(), t0());
        assert_eq!(store.record_count(), 0);
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("damaged"));
        assert!(moved, "the damaged file is kept aside");
        // And the new file works.
        let record = SignedRecord::sign(&[1; 32], b"a".to_vec(), 1, t0() + HOUR);
        store.put(record.clone()).unwrap();
        drop(store);
        let store = DiskRecordStore::open(dir.path(), StoreLimits::default(), t0());
        assert_eq!(store.get(&record.key(), t0()), Some(&record));
    }
}
