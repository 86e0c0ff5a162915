//! A node whose store was damaged while it was stopped comes back whole: a wrecked index is
//! rebuilt from the chunk files with the pins restored, a deleted chunk file is fetched back
//! from peers, and a full disk is a clear error that passes once space is freed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_dht::Key;
use cairn_node::{ContentId, Manifest, Multiaddr, Node, PutError};
use cairn_tests::{STEP, Testnet, Tmpfs, random_bytes};
use tokio::time::{Instant, timeout};

/// Waits (bounded) until `done` holds; there is no event to await for background healing.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "after 60 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes node `i` out of the testnet and stops it.
async fn stop(net: &mut Testnet, i: usize) -> PathBuf {
    let node = net.nodes.remove(i);
    node.shutdown().await;
    net.dirs.remove(i)
}

/// Starts a node on `dir` again (the stopped one closed its store at shutdown).
async fn respawn(net: &mut Testnet, dir: &Path, bootstrap: Option<Multiaddr>) -> Node {
    match net.spawn_on(dir.to_owned(), bootstrap).await {
        Ok(n) => net.nodes[n].clone(),
        Err(e) => panic!("restarting the node on {}: {e:#}", dir.display()),
    }
}

fn chunk_file(dir: &Path, id: &Key) -> PathBuf {
    let hex = format!("{id:x}");
    dir.join("chunks").join(&hex[..2]).join(hex)
}

async fn sorted_pins(node: &Node) -> Vec<String> {
    let mut pins: Vec<String> = node
        .pins()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    pins.sort();
    pins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_index_was_wrecked_while_stopped_serves_all_it_had_with_its_pins() {
    let mut net = Testnet::new(3).await.unwrap();
    let files: Vec<Vec<u8>> = vec![
        random_bytes(3 * 1024 * 1024, 31),
        random_bytes(300 * 1024, 32),
    ];
    // Node 1's index gets random bytes, node 2's is emptied.
    let mut puts: Vec<Vec<ContentId>> = vec![Vec::new(); 3];
    for i in [1, 2] {
        for data in &files {
            let put = timeout(STEP, net.nodes[i].put_bytes(data.clone()))
                .await
                .unwrap()
                .unwrap();
            puts[i].push(put.id);
        }
    }
    let pins_before: Vec<Vec<String>> = vec![
        Vec::new(),
        sorted_pins(&net.nodes[1]).await,
        sorted_pins(&net.nodes[2]).await,
    ];
    assert_eq!(pins_before[1].len(), 2);
    let mut dirs = Vec::new();
    while !net.nodes.is_empty() {
        dirs.push(stop(&mut net, 0).await);
    }
    let noise = random_bytes(4096, 33);
    std::fs::write(dirs[1].join("index.redb"), noise).unwrap();
    std::fs::write(dirs[2].join("index.redb"), b"").unwrap();

    for i in [1, 2] {
        // Alone: whatever it serves comes from its own disk.
        let node = respawn(&mut net, &dirs[i], None).await;
        let recovery = node
            .store()
            .recovery()
            .expect("the damage was noticed")
            .clone();
        assert_eq!(recovery.damaged_files, 0, "{recovery:?}");
        assert_eq!(recovery.roots.len(), 2, "{recovery:?}");
        assert!(recovery.moved_to.exists(), "the damaged index was kept");
        eventually("pins restored", async || {
            sorted_pins(&node).await == pins_before[i]
        })
        .await;
        for (id, data) in puts[i].iter().zip(&files) {
            let got = timeout(STEP, node.get_bytes(*id)).await.unwrap().unwrap();
            assert!(&got == data, "node {i}: the bytes of {id} differ");
        }
        drop(node);
        stop(&mut net, 0).await;
        // The rebuilt index is sound and keeps the pins.
        let node = respawn(&mut net, &dirs[i], None).await;
        assert!(node.store().recovery().is_none());
        assert_eq!(sorted_pins(&node).await, pins_before[i]);
        drop(node);
        stop(&mut net, 0).await;
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_file_deleted_while_stopped_is_fetched_back_from_peers() {
    let mut net = Testnet::new(6).await.unwrap();
    let data = random_bytes(2 * 1024 * 1024, 34);
    let put = timeout(STEP, net.nodes[0].put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(put.replica_failures, 0, "{put:?}");
    let Manifest::File { chunks, .. } = net.nodes[0].manifest(put.id).await.unwrap() else {
        panic!("a file");
    };
    let pinned = chunks[0].id;
    // A node other than the putter that keeps some chunk as a replica.
    let (holder, replica) = (1..net.nodes.len())
        .find_map(|i| {
            chunks
                .iter()
                .find(|c| net.nodes[i].store().is_replica(&c.id).unwrap())
                .map(|c| (i, c.id))
        })
        .expect("some node holds a replica");
    let first = net.nodes[if holder == 1 { 2 } else { 1 }].addrs()[0].clone();

    let holder_dir = net.dirs[holder].clone();

    // The putter loses a pinned chunk, the holder a replica.
    for (dir, id) in [(net.dirs[0].clone(), pinned), (holder_dir, replica)] {
        let i = net.dirs.iter().position(|d| *d == dir).unwrap();
        stop(&mut net, i).await;
        std::fs::remove_file(chunk_file(&dir, &id)).unwrap();
        let node = respawn(&mut net, &dir, Some(first.clone())).await;
        assert!(node.store().recovery().is_none());
        assert!(
            node.store().missing().contains(&id) || chunk_file(&dir, &id).exists(),
            "node {i}: the missing chunk was noticed"
        );
        eventually("the deleted chunk file is back", async || {
            chunk_file(&dir, &id).exists()
        })
        .await;
        assert_eq!(
            Key::hash(&std::fs::read(chunk_file(&dir, &id)).unwrap()),
            id,
            "the restored file holds the chunk"
        );
        assert!(node.store().missing().is_empty());
        let got = timeout(STEP, node.get_bytes(put.id))
            .await
            .unwrap()
            .unwrap();
        assert!(got == data, "node {i}: the bytes differ");
        drop(node);
    }
    assert!(
        net.nodes
            .last()
            .unwrap()
            .store()
            .is_replica(&replica)
            .unwrap(),
        "the replica keeps its reason"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_onto_a_full_disk_fails_clearly_and_puts_work_once_space_is_freed() {
    let fs = match Tmpfs::mount("4m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a 4 MiB tmpfs to fill ({why}); needs root");
            return;
        }
    };
    cairn_tests::init_logging();
    let dir = fs.path().join("node");
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 2 << 20]).unwrap();
    let node = cairn_tests::spawn(&dir, None).await.unwrap();
    let small = timeout(STEP, node.put_bytes(random_bytes(64 * 1024, 35)))
        .await
        .unwrap()
        .unwrap();
    let err = timeout(STEP, node.put_bytes(random_bytes(3 * 1024 * 1024, 36)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            PutError::Store(cairn_node::store::StoreError::DiskFull { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is full (no space left on device)"),
        "{err}"
    );
    // What was stored before is intact.
    assert_eq!(
        timeout(STEP, node.get_bytes(small.id))
            .await
            .unwrap()
            .unwrap(),
        random_bytes(64 * 1024, 35)
    );
    std::fs::remove_file(&ballast).unwrap();
    let data = random_bytes(512 * 1024, 37);
    let put = timeout(STEP, node.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a put after space was freed: {e}"));
    assert_eq!(
        timeout(STEP, node.get_bytes(put.id))
            .await
            .unwrap()
            .unwrap(),
        data
    );
    node.shutdown().await;
}
