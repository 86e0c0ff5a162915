//! Bad input through the library: data that strangers made, inputs that change under a put,
//! outputs that are not plain files, and a store that must not wedge. Each case asserts the
//! error, that the node keeps serving, and that nothing stored before was lost. (The same cases
//! through the `cairn` binary are in `cli/tests/cli/bad_input.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_dht::Key;
use cairn_node::manifest::{DirEntry, EntryKind, MAX_DEPTH, Manifest};
use cairn_node::store::{Reason, Store, StoreError};
use cairn_node::{ContentId, GetError, PutError};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::timeout;

/// Writes a chain of `depth` directory manifests, each holding the next, into the store at
/// `dir` (as a stranger's node would hold them); returns the outermost one.
fn store_dir_chain(dir: &Path, depth: usize) -> ContentId {
    let store = Store::open(dir, 1 << 30).unwrap();
    let mut inner = Manifest::Dir {
        entries: Vec::new(),
    };
    let mut id = Key::hash(&inner.encode());
    store.insert(&id, &inner.encode(), Reason::Pin).unwrap();
    for _ in 0..depth {
        inner = Manifest::Dir {
            entries: vec![DirEntry {
                name: "d".into(),
                kind: EntryKind::Dir,
                id,
                size: 0,
            }],
        };
        let bytes = inner.encode();
        id = Key::hash(&bytes);
        store.insert(&id, &bytes, Reason::Pin).unwrap();
    }
    ContentId::from_key(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_manifests_from_a_peer_is_refused_not_a_crash() {
    let mut net = Testnet::new(0).await.unwrap();
    let stranger_dir = net.scratch("stranger");
    let chain = store_dir_chain(&stranger_dir, 2_000);
    let stranger = net.spawn_on(stranger_dir, None).await.unwrap();
    let bootstrap = net.nodes[stranger].addrs()[0].clone();
    let victim = net
        .spawn_on(net.scratch("victim"), Some(bootstrap))
        .await
        .unwrap();
    let victim = net.nodes[victim].clone();

    // What the victim had before keeps being served.
    let before = timeout(STEP, victim.put_bytes(b"kept".to_vec()))
        .await
        .unwrap()
        .unwrap();

    let pinned = timeout(STEP, victim.pin(chain)).await.unwrap();
    assert!(
        matches!(pinned, Err(GetError::TooDeep(id)) if id == chain),
        "{pinned:?}"
    );
    assert!(
        pinned.unwrap_err().to_string().contains("1024 levels"),
        "the error names the limit"
    );
    let out = net.scratch("out").join("chain");
    let got = timeout(STEP, victim.get_to_file(chain, &out))
        .await
        .unwrap();
    assert!(matches!(got, Err(GetError::TooDeep(_))), "{got:?}");
    assert!(!out.exists(), "a refused get leaves nothing at the output");
    assert!(victim.pins().await.unwrap().contains(&before.id));
    assert!(!victim.pins().await.unwrap().contains(&chain));
    assert_eq!(
        timeout(STEP, victim.get_bytes(before.id))
            .await
            .unwrap()
            .unwrap(),
        b"kept"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_directories_put_up_to_the_limit_and_are_refused_past_it() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let make = |name: &str, depth: usize| {
        let root = net.scratch(name);
        let mut leaf = root.clone();
        for _ in 0..depth {
            leaf.push("d");
        }
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("f"), b"deep").unwrap();
        root
    };
    // 800 levels crashed the daemon with a stack overflow; now they round-trip.
    let deep = make("deep", 800);
    let put = timeout(STEP, node.put_dir(&deep)).await.unwrap().unwrap();
    let out = net.scratch("out").join("deep");
    timeout(STEP, node.get_to_file(put.id, &out))
        .await
        .unwrap()
        .unwrap();
    let mut leaf = out.clone();
    for _ in 0..800 {
        leaf.push("d");
    }
    assert_eq!(std::fs::read(leaf.join("f")).unwrap(), b"deep");

    let too_deep = make("too-deep", MAX_DEPTH + 1);
    let refused = timeout(STEP, node.put_dir(&too_deep)).await.unwrap();
    assert!(matches!(refused, Err(PutError::TooDeep(_))), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("1024 levels"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_grows_or_shrinks_during_a_put_is_an_error_naming_it() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    // The put reads at most a bounded window (channel, replication window, chunker) ahead of
    // the first progress report, far less than 40 MiB, so the change lands before its end.
    let len = 40 << 20;
    for grow in [true, false] {
        let path = net.scratch("changing").join(format!("grow-{grow}"));
        std::fs::write(&path, random_bytes(len, 21)).unwrap();
        let changed = Arc::new(AtomicBool::new(false));
        let (flag, target) = (changed.clone(), path.clone());
        let progress: cairn_node::ProgressFn = Arc::new(move |_| {
            if !flag.swap(true, Ordering::SeqCst) {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .unwrap();
                if grow {
                    f.set_len(len as u64 + 4096).unwrap();
                } else {
                    f.set_len(1 << 20).unwrap();
                }
            }
        });
        let put = timeout(STEP, node.put_file_with(&path, progress))
            .await
            .unwrap();
        assert!(changed.load(Ordering::SeqCst));
        assert!(
            matches!(&put, Err(PutError::Changed(p)) if p == &path),
            "grow {grow}: {put:?}"
        );
        assert!(
            put.unwrap_err()
                .to_string()
                .contains("changed while it was being read")
        );
    }
    assert!(node.pins().await.unwrap().is_empty(), "nothing was pinned");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_report_no_length_are_read_to_their_end() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let proc_file = Path::new("/proc/self/mountinfo");
    if !proc_file.exists() {
        eprintln!("skipped: no /proc on this system");
        return;
    }
    let put = timeout(STEP, node.put_file(proc_file))
        .await
        .unwrap()
        .unwrap();
    assert!(put.size > 0, "/proc files say 0 bytes and are read whole");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_writes_devices_in_place_and_follows_links() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let data = random_bytes(300_000, 22);
    let put = timeout(STEP, node.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    let got = timeout(STEP, node.get_to_file(put.id, Path::new("/dev/null")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.size, data.len() as u64);
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(!meta.is_file(), "/dev/null is still a device");

    let dir = net.scratch("links");
    let target = dir.join("target.bin");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    timeout(STEP, node.get_to_file(put.id, &link))
        .await
        .unwrap()
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is kept"
    );
    assert!(
        std::fs::read(&target).unwrap() == data,
        "its target is written"
    );

    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let refused = timeout(STEP, node.get_to_file(put.id, &dangling))
        .await
        .unwrap();
    assert!(matches!(refused, Err(GetError::Output(_))), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("missing file"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_over_quota_leaves_the_store_usable_even_after_a_restart() {
    cairn_tests::init_logging();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let spawn = || async {
        timeout(
            STEP,
            cairn_node::Loopback::new(root.path())
                .builder(&dir, None)
                .quota(8 << 20)
                .spawn(),
        )
        .await
        .unwrap()
        .unwrap()
    };
    let node = spawn().await;
    let kept = timeout(STEP, node.put_bytes(random_bytes(500_000, 23)))
        .await
        .unwrap()
        .unwrap();
    let tree = root.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..13 {
        std::fs::write(tree.join(format!("f{i}")), random_bytes(1 << 20, 30 + i)).unwrap();
    }
    let failed = timeout(STEP, node.put_dir(&tree)).await.unwrap();
    let err = failed.unwrap_err();
    assert!(
        matches!(err, PutError::Store(StoreError::QuotaFull { .. })),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("the content being put is larger than the quota"),
        "the error says what holds the space: {message}"
    );
    // Afterwards, and after a restart, small puts fit and what was stored before is there.
    let mut node = node;
    for round in 0..2u64 {
        if round == 1 {
            node.shutdown().await;
            node = spawn().await;
        }
        let small = timeout(STEP, node.put_bytes(random_bytes(500_000, 40 + round)))
            .await
            .unwrap();
        assert!(small.is_ok(), "round {round}: {small:?}");
        assert_eq!(
            timeout(STEP, node.get_bytes(kept.id))
                .await
                .unwrap()
                .unwrap(),
            random_bytes(500_000, 23),
            "what was stored before is still there"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_entries_from_a_client_are_checked_against_what_they_name() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let file = timeout(STEP, node.put_bytes(b"a file".to_vec()))
        .await
        .unwrap()
        .unwrap();
    let upload = node.begin_upload();
    let dir = timeout(STEP, node.put_dir_entries(Vec::new(), false, &upload))
        .await
        .unwrap()
        .unwrap();
    let entry = |name: &str, kind, id: ContentId, size| DirEntry {
        name: name.into(),
        kind,
        id: id.key(),
        size,
    };
    let nowhere = ContentId::from_key(Key::hash(b"stored nowhere"));
    let cases = [
        (
            vec![entry("x", EntryKind::File, nowhere, 0)],
            "not stored on this node",
        ),
        (
            vec![entry("x", EntryKind::File, file.id, u64::MAX)],
            "size differs",
        ),
        (
            vec![entry(
                "x",
                EntryKind::File,
                file.id,
                1_000_000_000_000_000_000,
            )],
            "size differs",
        ),
        (
            vec![entry("x", EntryKind::File, dir.id, 0)],
            "listed as a file but its id is a directory",
        ),
        (
            vec![entry("x", EntryKind::Dir, file.id, file.size)],
            "listed as a directory but its id is a file",
        ),
        (
            vec![entry(&"n".repeat(300), EntryKind::File, file.id, file.size)],
            "longer than 255 bytes",
        ),
        (
            vec![
                entry("same", EntryKind::File, file.id, file.size),
                entry("same", EntryKind::File, file.id, file.size),
            ],
            "both named \"same\"",
        ),
    ];
    for (entries, needle) in cases {
        let refused = timeout(STEP, node.put_dir_entries(entries.clone(), true, &upload))
            .await
            .unwrap();
        let message = refused.map(|s| s.id.to_string()).unwrap_err().to_string();
        assert!(message.contains(needle), "{entries:?}: {message}");
    }
    let ok = timeout(
        STEP,
        node.put_dir_entries(
            vec![entry("x", EntryKind::File, file.id, file.size)],
            true,
            &upload,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ok.size, file.size);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_expands_to_billions_of_files_is_refused_before_writing() {
    let mut net = Testnet::new(0).await.unwrap();
    let dir = net.scratch("stranger");
    let root = {
        let store = Store::open(&dir, 1 << 30).unwrap();
        let put = |m: &Manifest| {
            let bytes = m.encode();
            let id = Key::hash(&bytes);
            store.insert(&id, &bytes, Reason::Pin).unwrap();
            id
        };
        let file = put(&Manifest::File {
            size: 0,
            chunks: Vec::new(),
            data: None,
        });
        // Three levels of 4,096 entries, each naming the level below: 4,096³ files.
        let mut below = (file, EntryKind::File);
        for _ in 0..3 {
            let entries = (0..cairn_node::manifest::MAX_LINKS)
                .map(|i| DirEntry {
                    name: format!("e{i:04}"),
                    kind: below.1,
                    id: below.0,
                    size: 0,
                })
                .collect();
            below = (put(&Manifest::Dir { entries }), EntryKind::Dir);
        }
        ContentId::from_key(below.0)
    };
    let n = net.spawn_on(dir, None).await.unwrap();
    let node = net.nodes[n].clone();
    let out = net.scratch("out").join("bomb");
    let got = timeout(STEP, node.get_to_file(root, &out)).await.unwrap();
    assert!(
        matches!(got, Err(GetError::TooManyFiles { files, .. }) if files > 10_000_000),
        "{got:?}"
    );
    assert!(!out.exists(), "nothing was written");
    let parent = out.parent().unwrap();
    assert_eq!(
        std::fs::read_dir(parent).unwrap().count(),
        0,
        "no staging left"
    );
    // Pinning walks each distinct manifest once: three directories and the file, not 4,096³.
    timeout(STEP, node.pin(root)).await.unwrap().unwrap();
    assert_eq!(node.store().stats().unwrap().pinned, 4);
    net.shutdown().await;
}
