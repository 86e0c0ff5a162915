//! The store's tests: eviction and reasons, staging, the quota message, damaged and
//! reconciled indexes, restored files, and a full disk.

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
fn garbage_collection_removes_cache_oldest_first_and_never_pins_replicas_or_staged() {
    both(10_000, |s| {
        let (pin, pb) = chunk(1, 100);
        let (rep, rb) = chunk(2, 100);
        let (old, ob) = chunk(3, 100);
        let (new, nb) = chunk(4, 100);
        let (staged, sb) = chunk(5, 100);
        s.insert(&pin, &pb, Reason::Pin).unwrap();
        s.insert(&rep, &rb, Reason::Replica).unwrap();
        s.insert(&old, &ob, Reason::Cache).unwrap();
        s.insert(&new, &nb, Reason::Cache).unwrap();
        let staging = s.staging();
        staging.add(&staged);
        s.insert(&staged, &sb, Reason::Cache).unwrap();
        let evicted = Arc::new(Mutex::new(Vec::new()));
        let sink = evicted.clone();
        s.on_evict(move |ids| sink.lock().unwrap().extend(ids));

        // A dry run says what would go and removes nothing.
        let dry = s.collect_garbage(100, true).unwrap();
        assert_eq!((dry.chunks, dry.bytes, dry.cache_left), (1, 100, 100));
        assert!(s.contains(&old).unwrap());
        // Keeping 100 bytes of cache removes the least recently used cached chunk only.
        assert_eq!(s.collect_garbage(100, false).unwrap(), dry);
        assert!(!s.contains(&old).unwrap() && s.read(&old).unwrap().is_none());
        assert!(s.contains(&new).unwrap());
        assert_eq!(*evicted.lock().unwrap(), vec![old]);
        // Then all of it; pinned, replica and staged chunks stay, and the byte count follows.
        let all = s.collect_garbage(0, false).unwrap();
        assert_eq!((all.chunks, all.bytes, all.cache_left), (1, 100, 0));
        for kept in [&pin, &rep, &staged] {
            assert!(s.read(kept).unwrap().is_some());
        }
        let stats = s.stats().unwrap();
        assert_eq!((stats.chunks, stats.bytes), (3, 300));
        drop(staging);
    });
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
            Err(StoreError::QuotaFull { quota: 300, .. })
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

#[test]
fn staging_is_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Staging>();
    send_sync::<Store>();
}

#[test]
fn a_store_from_before_pins_list_writes_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = stocked(dir.path());
    std::fs::remove_file(dir.path().join(PINS_FILE)).unwrap();
    let _s = Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recover::read_pins_list(dir.path()), vec![root]);
}

#[test]
fn staged_chunks_survive_eviction_until_the_staging_is_dropped() {
    both(300, |s| {
        let (a, ab) = chunk(1, 100);
        let (b, bb) = chunk(2, 100);
        let (c, cb) = chunk(3, 100);
        let staging = s.staging();
        staging.add(&a);
        staging.add(&a); // adding twice counts once for this guard
        s.insert(&a, &ab, Reason::Cache).unwrap();
        s.insert(&b, &bb, Reason::Cache).unwrap();
        s.insert(&c, &cb, Reason::Cache).unwrap();
        // a is the least recently used, but staged: b goes instead.
        let (d, db) = chunk(4, 100);
        s.insert(&d, &db, Reason::Cache).unwrap();
        assert!(s.contains(&a).unwrap(), "a staged chunk was evicted");
        assert!(!s.contains(&b).unwrap());
        // A second put staging the same chunk keeps it protected after the first finishes.
        let other = s.staging();
        other.add(&a);
        drop(staging);
        let (e, eb) = chunk(5, 100);
        s.insert(&e, &eb, Reason::Cache).unwrap();
        assert!(
            s.contains(&a).unwrap(),
            "a is still staged by the other put"
        );
        assert!(!s.contains(&c).unwrap());
        drop(other);
        let (f, fb) = chunk(6, 100);
        s.insert(&f, &fb, Reason::Cache).unwrap();
        assert!(
            !s.contains(&a).unwrap(),
            "once no put stages it, a is evictable cache again"
        );
    });
}

#[test]
fn a_store_that_refused_an_over_quota_put_accepts_a_small_one_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 8 * 1000;
    {
        let s = Store::open(dir.path(), quota).unwrap();
        let staging = s.staging();
        let mut refused = None;
        for n in 0..13 {
            let (id, bytes) = chunk(n, 1000);
            staging.add(&id);
            if let Err(e) = s.insert(&id, &bytes, Reason::Cache) {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(refused, Some(StoreError::QuotaFull { staged: 8000, .. })),
            "{refused:?}"
        );
        drop(staging);
        let (id, bytes) = chunk(100, 1000);
        s.insert(&id, &bytes, Reason::Pin).unwrap();
    }
    // And after a restart (staging is in memory only).
    let s = Store::open(dir.path(), quota).unwrap();
    let (id, bytes) = chunk(101, 1000);
    s.insert(&id, &bytes, Reason::Pin).unwrap();
    assert_eq!(s.read(&id).unwrap(), Some(bytes));
}

#[test]
fn a_full_quota_says_what_holds_the_space() {
    const MIB: usize = 1 << 20;
    let s = Store::in_memory(8 << 20).unwrap();
    let (p, pb) = chunk(1, 5 * MIB);
    let (r, rb) = chunk(2, 5 * MIB / 2);
    let (h, hb) = chunk(3, MIB / 2);
    s.insert(&p, &pb, Reason::Pin).unwrap();
    s.insert(&r, &rb, Reason::Replica).unwrap();
    let staging = s.staging();
    staging.add(&h);
    s.insert(&h, &hb, Reason::Cache).unwrap();
    let (x, xb) = chunk(4, MIB);
    let err = s.insert(&x, &xb, Reason::Cache).unwrap_err();
    assert_eq!(
        err.to_string(),
        "storage quota of 8.0 MiB is full: 5.0 MiB pinned, 2.5 MiB replicas kept for the network, 0.5 MiB held by puts in progress; raise the quota (--quota) or unpin content (cairn pin rm)"
    );
    assert_eq!(human(512, 300), "512 B");
    assert_eq!(human(3 << 29, 10 << 30), "1.5 GiB");
}

#[test]
fn mark_replicas_protects_stored_chunks_in_one_go() {
    both(300, |s| {
        let (a, ab) = chunk(1, 100);
        let (b, bb) = chunk(2, 100);
        let (absent, _) = chunk(3, 100);
        s.insert(&a, &ab, Reason::Cache).unwrap();
        s.insert(&b, &bb, Reason::Cache).unwrap();
        s.mark_replicas(&[a, absent, b]).unwrap();
        assert!(s.is_replica(&a).unwrap() && s.is_replica(&b).unwrap());
        assert!(!s.contains(&absent).unwrap());
        let (c, cb) = chunk(4, 100);
        s.insert(&c, &cb, Reason::Cache).unwrap();
        let (d, db) = chunk(5, 100);
        assert!(
            matches!(s.insert(&d, &db, Reason::Cache), Ok(true)),
            "c, the only cache chunk, makes room"
        );
        let (e, eb) = chunk(6, 100);
        s.insert(&e, &eb, Reason::Cache).unwrap();
        assert!(s.contains(&a).unwrap() && s.contains(&b).unwrap());
    });
}

/// A store with a pinned root (a, holding b), a replica r and a cache chunk c, closed.
fn stocked(dir: &Path) -> (Key, Vec<(Key, Vec<u8>)>) {
    let s = Store::open(dir, 1 << 20).unwrap();
    let all: Vec<(Key, Vec<u8>)> = (1..=4).map(|n| chunk(n, 1000 + n as usize)).collect();
    s.insert(&all[0].0, &all[0].1, Reason::Cache).unwrap();
    s.insert(&all[1].0, &all[1].1, Reason::Cache).unwrap();
    s.insert(&all[2].0, &all[2].1, Reason::Replica).unwrap();
    s.insert(&all[3].0, &all[3].1, Reason::Cache).unwrap();
    let root = all[0].0;
    assert!(s.pin_all(&root, &[root, all[1].0]).unwrap());
    (root, all)
}

fn assert_rebuilt(dir: &Path, root: Key, all: &[(Key, Vec<u8>)]) {
    let s = Store::open(dir, 1 << 20).unwrap();
    let r = s.recovery().expect("the damage was detected");
    assert_eq!(r.chunks, all.len() as u64, "{r:?}");
    assert_eq!(r.damaged_files, 0);
    assert_eq!(r.roots, vec![root]);
    assert!(r.moved_to.exists(), "the damaged index was kept: {r:?}");
    for (id, bytes) in all {
        assert_eq!(s.read(id).unwrap().as_ref(), Some(bytes));
        // Nothing found on disk is evictable before the node sorts it out.
        assert!(s.is_replica(id).unwrap());
    }
    assert!(s.pinned_roots().unwrap().is_empty(), "the node re-pins");
    assert_eq!(
        s.stats().unwrap().bytes,
        all.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    drop(s);
    // The rebuilt index is sound: the next open has nothing to recover.
    assert!(Store::open(dir, 1 << 20).unwrap().recovery().is_none());
}

fn index(dir: &Path) -> PathBuf {
    dir.join(INDEX_FILE)
}

#[test]
fn an_index_of_random_bytes_is_rebuilt_from_the_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(index(dir.path()), noise).unwrap();
    assert_rebuilt(dir.path(), root, &all);
}

#[test]
fn an_index_with_one_flipped_bit_is_rebuilt_from_the_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let mut bytes = std::fs::read(index(dir.path())).unwrap();
    // Flip a bit inside a live page: in a stored chunk id, where redb keeps its keys.
    let id = all[3].0;
    let at = bytes
        .windows(32)
        .position(|w| w == id.as_bytes())
        .expect("the id is in the index file");
    bytes[at + 7] ^= 0x10;
    std::fs::write(index(dir.path()), bytes).unwrap();
    assert_rebuilt(dir.path(), root, &all);
}

#[test]
fn an_emptied_index_is_rebuilt_from_the_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    std::fs::write(index(dir.path()), b"").unwrap();
    assert_rebuilt(dir.path(), root, &all);
}

#[test]
fn a_deleted_index_is_rebuilt_from_the_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    std::fs::remove_file(index(dir.path())).unwrap();
    assert_rebuilt(dir.path(), root, &all);
}

#[test]
fn a_truncated_index_is_rebuilt_from_the_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(index(dir.path()))
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 2).unwrap();
    drop(file);
    assert_rebuilt(dir.path(), root, &all);
}

#[test]
fn a_rebuild_moves_chunk_files_that_do_not_match_their_name_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let fs = FsChunkStore::open(dir.path()).unwrap();
    let bad = fs.path(&all[2].0);
    std::fs::write(&bad, b"not the chunk").unwrap();
    std::fs::write(index(dir.path()), b"").unwrap();
    let s = Store::open(dir.path(), 1 << 20).unwrap();
    let r = s.recovery().unwrap();
    assert_eq!((r.chunks, r.damaged_files), (3, 1));
    assert_eq!(r.roots, vec![root]);
    assert!(!bad.exists());
    let kept = dir
        .path()
        .join("chunks-damaged")
        .join(format!("{:x}", all[2].0));
    assert_eq!(std::fs::read(kept).unwrap(), b"not the chunk");
    assert!(!s.contains(&all[2].0).unwrap());
}

#[test]
fn orphan_files_are_adopted_as_cache_or_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (_, all) = stocked(dir.path());
    let (good, good_bytes) = chunk(50, 700);
    let (bad, _) = chunk(51, 700);
    {
        // As a crash between writing the bytes and committing the index leaves them.
        let fs = FsChunkStore::open(dir.path()).unwrap();
        fs.put(&good, &good_bytes).unwrap();
        fs.put(&bad, b"garbage").unwrap();
    }
    let s = Store::open(dir.path(), 1 << 20).unwrap();
    assert!(s.recovery().is_none());
    assert_eq!(s.read(&good).unwrap(), Some(good_bytes));
    assert!(!s.is_replica(&good).unwrap());
    assert!(!s.contains(&bad).unwrap());
    assert!(
        dir.path()
            .join("chunks-damaged")
            .join(format!("{bad:x}"))
            .exists()
    );
    let stats = s.stats().unwrap();
    assert_eq!(stats.chunks, all.len() as u64 + 1);
    assert_eq!(stats.cached, 2);
}

#[test]
fn entries_whose_file_is_gone_are_dropped_if_cache_and_listed_missing_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let fs = FsChunkStore::open(dir.path()).unwrap();
    for (id, _) in &all {
        fs.remove(id).unwrap();
    }
    drop(fs);
    let s = Store::open(dir.path(), 1 << 20).unwrap();
    assert!(s.recovery().is_none());
    let mut missing = s.missing();
    missing.sort();
    let mut want = vec![all[0].0, all[1].0, all[2].0];
    want.sort();
    assert_eq!(
        missing, want,
        "pinned and replica chunks are kept and listed"
    );
    assert!(
        !s.contains(&all[3].0).unwrap(),
        "the cache-only entry is dropped"
    );
    assert_eq!(s.pinned_roots().unwrap(), vec![root]);
    assert_eq!(
        s.stats().unwrap().bytes,
        all[..3].iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    // Reading one says it is not here (so a get fetches it); storing it restores the file.
    let (id, bytes) = &all[2];
    assert_eq!(s.read(id).unwrap(), None);
    assert!(
        s.insert(id, bytes, Reason::Cache).unwrap(),
        "the bytes were written"
    );
    assert_eq!(s.read(id).unwrap().as_ref(), Some(bytes));
    assert!(s.is_replica(id).unwrap(), "its reasons are unchanged");
    assert!(!s.missing().contains(id));
}

#[test]
fn insert_rewrites_a_file_deleted_or_damaged_while_running() {
    both(1 << 20, |s| {
        let (a, ab) = chunk(1, 1000);
        s.insert(&a, &ab, Reason::Pin).unwrap();
        assert!(
            !s.insert(&a, &ab, Reason::Cache).unwrap(),
            "intact: nothing written"
        );
        s.chunks.remove(&a).unwrap();
        assert_eq!(s.read(&a).unwrap(), None);
        assert_eq!(s.missing(), vec![a]);
        assert!(s.insert(&a, &ab, Reason::Cache).unwrap());
        assert_eq!(s.read(&a).unwrap(), Some(ab.clone()));
        assert!(s.missing().is_empty());
        s.chunks.put(&a, b"rot").unwrap();
        assert!(s.insert(&a, &ab, Reason::Cache).unwrap());
        assert_eq!(s.read(&a).unwrap(), Some(ab.clone()));
        // Bytes that do not match the id never replace a file that verifies.
        assert!(!s.insert(&a, b"wrong", Reason::Cache).unwrap());
        assert_eq!(s.read(&a).unwrap(), Some(ab.clone()));
    });
}

#[test]
fn pins_list_follows_the_pinned_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    assert_eq!(recover::read_pins_list(dir.path()), vec![root]);
    let s = Store::open(dir.path(), 1 << 20).unwrap();
    let other = all[2].0;
    s.pin_all(&other, &[other]).unwrap();
    let mut listed = recover::read_pins_list(dir.path());
    listed.sort();
    let mut want = vec![root, other];
    want.sort();
    assert_eq!(listed, want);
    s.unpin_all(&root, &[root, all[1].0]).unwrap();
    assert_eq!(recover::read_pins_list(dir.path()), vec![other]);
}

#[test]
fn a_puts_pin_reaches_pins_list_when_flushed_or_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let (root, all) = stocked(dir.path());
    let s = Store::open(dir.path(), 1 << 20).unwrap();
    let (a, b) = (all[1].0, all[2].0);
    assert!(s.pin_put(&a, &[a], &[]).unwrap());
    assert_eq!(recover::read_pins_list(dir.path()), vec![root], "not yet");
    s.flush_pins_list();
    let mut listed = recover::read_pins_list(dir.path());
    listed.sort();
    let mut want = vec![root, a];
    want.sort();
    assert_eq!(listed, want);
    assert!(s.pin_put(&b, &[b], &[]).unwrap());
    s.close();
    let mut listed = recover::read_pins_list(dir.path());
    listed.sort();
    want.push(b);
    want.sort();
    assert_eq!(listed, want, "close writes what a put left due");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Store::open(dir.path(), 1 << 20).unwrap();
    assert!(matches!(
        Store::open(dir.path(), 1 << 20),
        Err(StoreError::Locked(_))
    ));
}

/// A small tmpfs mounted for one test, unmounted when dropped (even if the test fails).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_store_works_again_once_space_is_freed() {
    let fs = match Tmpfs::mount("3m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a 3 MiB tmpfs to fill ({why}); needs root");
            return;
        }
    };
    let dir = fs.0.path().join("store");
    let s = Store::open(&dir, 1 << 30).unwrap();
    // Ballast to free later, so the store itself never has to give anything back.
    let ballast = fs.0.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 1 << 20]).unwrap();
    let mut stored = Vec::new();
    let mut full = None;
    for n in 0..64 {
        let (id, bytes) = chunk(n, 100 << 10);
        match s.insert(&id, &bytes, Reason::Pin) {
            Ok(_) => stored.push((id, bytes)),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let full = full.expect("a 3 MiB disk filled up");
    assert!(matches!(full, StoreError::DiskFull { .. }), "{full:?}");
    assert_eq!(
        full.to_string(),
        format!(
            "the disk holding {} is full (no space left on device); free some space or lower --quota",
            dir.display()
        )
    );
    // Small writes at the edge reach the index's own file: whatever fails must fail cleanly.
    for n in 100..140 {
        let (id, bytes) = chunk(n, 1 + n as usize);
        match s.insert(&id, &bytes, Reason::Pin) {
            Ok(_) => stored.push((id, bytes)),
            Err(e) => assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}"),
        }
    }
    assert!(!stored.is_empty());
    for (id, bytes) in &stored {
        assert_eq!(
            s.read(id).unwrap().as_ref(),
            Some(bytes),
            "a chunk stored before the disk filled"
        );
    }
    std::fs::remove_file(&ballast).unwrap();
    let (id, bytes) = chunk(1000, 100 << 10);
    s.insert(&id, &bytes, Reason::Pin).expect("space is back");
    stored.push((id, bytes));
    drop(s);
    let s = Store::open(&dir, 1 << 30).unwrap();
    assert!(s.recovery().is_none());
    assert!(s.missing().is_empty());
    for (id, bytes) in &stored {
        assert_eq!(s.read(id).unwrap().as_ref(), Some(bytes));
    }
}

#[test]
fn a_fetched_copy_is_synced_before_it_is_kept_and_forgotten_once_evicted() {
    both(250, |s| {
        let (a, ab) = chunk(1, 100);
        let (b, bb) = chunk(2, 100);
        let (c, cb) = chunk(3, 100);
        s.insert_fetched(&a, &ab).unwrap();
        s.insert_fetched(&b, &bb).unwrap();
        assert_eq!(lock(&s.unsynced).len(), 2);
        assert_eq!(s.read_verified(&a).unwrap(), Some(ab.clone()));
        // Pinned or made a replica: synced first, no longer pending.
        assert!(s.pin_all(&a, &[a]).unwrap());
        s.mark_replicas(&[b]).unwrap();
        assert!(lock(&s.unsynced).is_empty());
        // A fetched copy evicted to make room is no longer tracked.
        s.unmark_replicas(&[b]).unwrap();
        s.insert_fetched(&c, &cb).unwrap();
        assert!(!s.contains(&b).unwrap(), "b was the cache to evict");
        assert_eq!(s.read(&c).unwrap(), Some(cb.clone()));
        s.insert(&c, &cb, Reason::Pin).unwrap();
        assert!(lock(&s.unsynced).is_empty());
        assert_eq!(s.stats().unwrap().pinned, 2);
    });
}

#[test]
fn a_put_pins_and_marks_its_replicas_in_one_call_even_when_pinned_already() {
    both(10_000, |s| {
        let (root, rb) = chunk(1, 100);
        let (data, db) = chunk(2, 100);
        s.insert(&root, &rb, Reason::Cache).unwrap();
        s.insert(&data, &db, Reason::Cache).unwrap();
        assert!(s.pin_all_marking(&root, &[root, data], &[data]).unwrap());
        assert!(s.is_replica(&data).unwrap() && !s.is_replica(&root).unwrap());
        assert_eq!(s.pinned_roots().unwrap(), vec![root]);
        // Put again: not pinned twice, but the replica marks still land.
        assert!(!s.pin_all_marking(&root, &[root, data], &[root]).unwrap());
        assert!(s.is_replica(&root).unwrap());
        assert_eq!(s.stats().unwrap().pinned, 2);
    });
}
