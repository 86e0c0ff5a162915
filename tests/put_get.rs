//! Put and get across a network of real nodes.

use std::collections::HashSet;
use std::time::Duration;

use cairn_dht::Key;
use cairn_node::{ContentId, GetError, Manifest, Node};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::{Instant, timeout};

/// Every chunk and manifest id under `root`, read from `node`'s own store.
async fn chunk_ids(node: &Node, root: ContentId) -> Vec<Key> {
    let mut out = vec![root.key()];
    let mut stack = vec![node.manifest(root).await.unwrap()];
    while let Some(m) = stack.pop() {
        match m {
            Manifest::File { chunks, .. } => out.extend(chunks.iter().map(|c| c.id)),
            Manifest::FileTree { parts, .. } => {
                for p in parts {
                    out.push(p.id);
                    stack.push(node.manifest(ContentId::from_key(p.id)).await.unwrap());
                }
            }
            Manifest::Dir { entries } => {
                for e in entries {
                    out.push(e.id);
                    stack.push(node.manifest(ContentId::from_key(e.id)).await.unwrap());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_put_on_one_node_is_got_from_another_after_the_first_leaves() {
    let net = Testnet::new(12).await.unwrap();
    let data = random_bytes(20 * 1024 * 1024, 4);
    let input = net.scratch("in").join("big.bin");
    std::fs::write(&input, &data).unwrap();
    let a = &net.nodes[0];
    let put = timeout(STEP, a.put_file(&input)).await.unwrap().unwrap();
    assert_eq!(put.size, data.len() as u64);
    assert_eq!(put.replica_failures, 0, "{put:?}");
    assert!(put.replicas >= put.chunks * 4, "{put:?}");
    a.shutdown().await;

    let b = &net.nodes[7];
    let out = net.scratch("out").join("copy.bin");
    let got = timeout(STEP, b.get_to_file(put.id, &out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.size, data.len() as u64);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the copy differs from the original"
    );
    net.shutdown().await;
}

/// Placement is exact on an idle machine. On a loaded one (CI runs several testnets at once on
/// 2 cores) a peer that answers past its timeout twice is dropped from a table for a while, and
/// the next peer in line gets its copy; once it is back the copies follow it (a join's copy and
/// handoff). So the test asks what a user relies on: each chunk ends up as a replica on every
/// one of its `replication` closest nodes, and no node beyond the `2 × replication` closest
/// (the slack a peer accepts a push within) ever stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_chunk_reaches_its_replication_closest_nodes_and_no_far_node() {
    let net = Testnet::new(12).await.unwrap();
    let replication = cairn_dht::Config::default().replication;
    let data = random_bytes(3 * 1024 * 1024, 5);
    let a = &net.nodes[3];
    let put = timeout(STEP, a.put_bytes(data)).await.unwrap().unwrap();
    let ids = chunk_ids(a, put.id).await;
    assert!(ids.len() > 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        let closest: HashSet<usize> = net.closest(&id, replication).into_iter().collect();
        let near: HashSet<usize> = net.closest(&id, 2 * replication).into_iter().collect();
        loop {
            let missing: Vec<usize> = closest
                .iter()
                .copied()
                .filter(|&i| !net.nodes[i].store().is_replica(&id).unwrap())
                .collect();
            for (i, node) in net.nodes.iter().enumerate() {
                if i != 3 && !near.contains(&i) {
                    assert!(
                        !node.store().contains(&id).unwrap(),
                        "chunk {id:?} stored on node {i}, far from it"
                    );
                }
            }
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chunk {id:?} is not a replica on closest nodes {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_rotted_on_disk_are_never_sent_and_the_get_still_succeeds() {
    let mut net = Testnet::new(8).await.unwrap();
    let replication = cairn_dht::Config::default().replication;
    let data = random_bytes(3 * 1024 * 1024, 6);
    let origin = &net.nodes[0];
    let put = timeout(STEP, origin.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(put.replica_failures, 0, "{put:?}");
    let ids = chunk_ids(origin, put.id).await;
    origin.shutdown().await;
    // On every chunk, all but one of its replicas now hold flipped bytes (bit rot on disk). A
    // holder checks a chunk before it sends it (a reader bans a peer that sends bytes that do
    // not match), so the damaged copies are deleted and never sent.
    let mut corrupted = Vec::new();
    for id in &ids {
        let holders: Vec<usize> = (1..net.nodes.len())
            .filter(|&i| net.nodes[i].store().contains(id).unwrap())
            .collect();
        // Usually every one of the closest but the origin; a placement lookup that timed out
        // on a loaded machine may have picked the origin in place of one of them.
        let expected = replication - usize::from(net.closest(id, replication).contains(&0));
        assert!(
            holders.len() + 1 >= expected && holders.len() >= 2,
            "{} holders of {id:?}, expected {expected}",
            holders.len()
        );
        for &i in holders.iter().skip(1) {
            let hex = format!("{id:x}");
            let path = net.dirs[i].join("chunks").join(&hex[..2]).join(&hex);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            corrupted.push(path);
        }
    }
    assert!(corrupted.len() > ids.len());
    // A reader that joins now and holds nothing of it. (Peers may also copy chunks to it as a
    // new closest peer: a corrupt copy is refused, and counted, there too.)
    let first = net.nodes[1].addrs()[0].clone();
    let dir = net.scratch("reader");
    let reader = net.spawn_on(dir, Some(first)).await.unwrap();
    let node = &net.nodes[reader];
    let got = timeout(STEP, node.get_bytes(put.id)).await.unwrap();
    let got = got.unwrap_or_else(|e| panic!("get failed: {e}"));
    assert!(got == data, "the bytes differ");
    let mut penalised = 0;
    for n in &net.nodes[1..] {
        let network = n.stats().await.unwrap().network;
        penalised += network.penalised;
        assert_eq!(
            network.banned, 0,
            "an honest node with a damaged disk was banned"
        );
    }
    assert_eq!(penalised, 0, "a damaged copy was sent");
    assert!(
        corrupted.iter().any(|p| !p.exists()),
        "the damaged copies asked for were deleted"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_share_content_share_chunks() {
    let node = Node::builder().spawn().await.unwrap();
    let original = random_bytes(8 * 1024 * 1024, 7);
    let mut edited = original.clone();
    edited.splice(
        4_000_000..4_000_000,
        b"a few bytes inserted in the middle".iter().copied(),
    );
    let a = node.put_bytes(original).await.unwrap();
    let b = node.put_bytes(edited).await.unwrap();
    let (ca, cb): (HashSet<Key>, HashSet<Key>) = (
        chunk_ids(&node, a.id).await.into_iter().collect(),
        chunk_ids(&node, b.id).await.into_iter().collect(),
    );
    let shared = ca.intersection(&cb).count();
    // Root manifests differ, and the edit touches one or two data chunks.
    assert!(
        shared + 3 >= ca.len(),
        "{shared} of {} chunks shared",
        ca.len()
    );
    assert!(ca.len() > 20);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_what_it_stored() {
    let mut net = Testnet::new(1).await.unwrap();
    let data = random_bytes(2 * 1024 * 1024 + 3, 8);
    let put = net.nodes[0].put_bytes(data.clone()).await.unwrap();
    assert_eq!(put.replicas, 0, "alone, nothing is replicated");
    let dir = net.dirs[0].clone();
    // Shut down and drop every handle: the index database is locked while any is alive.
    let old = net.nodes.remove(0);
    net.dirs.remove(0);
    old.shutdown().await;
    drop(old);

    let restarted = net
        .spawn_on(dir, None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let addr = net.nodes[restarted].addrs()[0].clone();
    let reader_dir = net.scratch("reader");
    let reader = net.spawn_on(reader_dir, Some(addr)).await.unwrap();
    let got = timeout(STEP, net.nodes[reader].get_bytes(put.id))
        .await
        .unwrap()
        .unwrap();
    assert!(got == data);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_directories_and_unknown_ids() {
    let net = Testnet::new(4).await.unwrap();
    let (a, b) = (&net.nodes[1], &net.nodes[3]);

    let empty = timeout(STEP, a.put_bytes(Vec::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(empty.size, 0);
    assert_eq!(
        timeout(STEP, b.get_bytes(empty.id)).await.unwrap().unwrap(),
        Vec::<u8>::new()
    );

    let tree = net.scratch("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    std::fs::create_dir_all(tree.join("empty-dir")).unwrap();
    std::fs::write(tree.join("top.txt"), b"top").unwrap();
    std::fs::write(tree.join("a/one.bin"), random_bytes(300_000, 9)).unwrap();
    std::fs::write(tree.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(tree.join("a/b/empty"), b"").unwrap();
    let put = timeout(STEP, a.put_dir(&tree)).await.unwrap().unwrap();
    assert_eq!(put.size, 3 + 300_000 + 4);
    let out = net.scratch("got").join("tree");
    let got = timeout(STEP, b.get_to_file(put.id, &out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.files, 4);
    for rel in ["top.txt", "a/one.bin", "a/b/c/deep.txt", "a/b/empty"] {
        assert_eq!(
            std::fs::read(out.join(rel)).unwrap(),
            std::fs::read(tree.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(out.join("empty-dir").is_dir());
    let deep = b.resolve(put.id, "a/b/c/deep.txt").await.unwrap();
    assert_eq!(b.get_bytes(deep.id).await.unwrap(), b"deep");

    // Nobody has this: a clear error, in bounded time.
    let unknown: ContentId = format!("cairn1{}", "ab".repeat(32)).parse().unwrap();
    let started = std::time::Instant::now();
    let err = timeout(Duration::from_secs(90), b.get_bytes(unknown))
        .await
        .expect("get must not hang")
        .unwrap_err();
    assert!(
        matches!(err, GetError::NotFound(id) if id == unknown),
        "{err}"
    );
    assert!(err.to_string().starts_with("no peer holds cairn1"), "{err}");
    eprintln!("unknown id answered in {:?}", started.elapsed());
    net.shutdown().await;
}

/// A node that put content while alone serves it to a peer that joins later, and places it on
/// that peer as a new closest node (regression: put chunks were not registered as held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_serves_what_it_put_to_a_peer_that_joins_later() {
    let mut net = Testnet::new(1).await.unwrap();
    let data = random_bytes(1_500_000, 31);
    let put = net.nodes[0].put_bytes(data.clone()).await.unwrap();
    let first = net.nodes[0].addrs()[0].clone();
    let dir = net.scratch("joiner");
    let joiner = net.spawn_on(dir, Some(first)).await.unwrap();
    let got = timeout(STEP, net.nodes[joiner].get_bytes(put.id))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("get failed: {e}"));
    assert!(got == data);
    net.shutdown().await;
}
