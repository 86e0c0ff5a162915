//! `Node::health` counts copies that holders prove, not copies they claim: a holder whose chunk
//! file is gone still says it holds the chunk, and is not counted.

use cairn_node::Manifest;
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_counts_proven_copies_and_misses_a_holder_that_lost_its_bytes() {
    let net = Testnet::new(8).await.unwrap();
    let r = cairn_dht::Config::default().replication;
    let put = timeout(STEP, net.nodes[0].put_bytes(random_bytes(900_000, 41)))
        .await
        .unwrap()
        .unwrap();
    let Manifest::File { chunks, .. } = net.nodes[0].manifest(put.id).await.unwrap() else {
        panic!("a file");
    };
    // Node 7 checks: every chunk has at least `replication` proven copies on other nodes.
    let checker = 7;
    let h = timeout(STEP, net.nodes[checker].health(put.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.chunks.len(), chunks.len() + 1, "data chunks and the root");
    // Exactly the other nodes that store each chunk (the checker's own copy does not count:
    // with 8 nodes it may be one of the `replication`, and then a chunk has one fewer).
    let stored_elsewhere = |hex: &str| {
        (0..net.nodes.len())
            .filter(|&i| i != checker)
            .filter(|&i| {
                let id = net.nodes[i].store().ids().unwrap();
                id.iter().any(|k| format!("{k:x}") == hex)
            })
            .count()
    };
    for c in &h.chunks {
        assert_eq!(c.copies, stored_elsewhere(&c.id), "{c:?}");
    }
    assert!(h.min() >= r - 1, "{h:?}");

    // One holder of the first chunk (not the checker) loses the chunk's file behind its store's
    // back: it still claims the chunk, but cannot prove it.
    let victim_chunk = chunks[0].id;
    let hex = format!("{victim_chunk:x}");
    let before = h.chunks.iter().find(|c| c.id == hex).unwrap().copies;
    let holder = (0..net.nodes.len())
        .find(|&i| i != checker && i != 0 && net.nodes[i].store().contains(&victim_chunk).unwrap())
        .expect("a holder besides the publisher and the checker");
    let file = net.dirs[holder].join("chunks").join(&hex[..2]).join(&hex);
    std::fs::remove_file(&file).unwrap();
    let h = timeout(STEP, net.nodes[checker].health(put.id))
        .await
        .unwrap()
        .unwrap();
    let c = h.chunks.iter().find(|c| c.id == hex).unwrap();
    assert_eq!(c.copies, before - 1, "{c:?}");
    assert!(c.claimed > c.copies, "the holder still claims it: {c:?}");
    net.shutdown().await;
}
