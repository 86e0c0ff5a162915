//! Replicas follow the closest set as peers join.

use std::time::Duration;

use cairn_dht::Key;
use cairn_node::Manifest;
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_copied_to_peers_that_join_among_the_closest() {
    let mut net = Testnet::new(5).await.unwrap();
    let replication = cairn_dht::Config::default().replication;
    let put = timeout(
        STEP,
        net.nodes[0].put_bytes(random_bytes(2 * 1024 * 1024, 21)),
    )
    .await
    .unwrap()
    .unwrap();
    let Manifest::File { chunks, .. } = net.nodes[0].manifest(put.id).await.unwrap() else {
        panic!("a file");
    };
    let mut ids: Vec<Key> = chunks.iter().map(|c| c.id).collect();
    ids.push(put.id.key());

    // Seven more nodes join.
    let first = net.nodes[0].addrs()[0].clone();
    for i in 0..7 {
        let dir = net.scratch(&format!("late{i}"));
        net.spawn_on(dir, Some(first.clone())).await.unwrap();
    }

    // Every chunk reaches the `replication` closest of all twelve nodes, without another put.
    // The copies are made in the background: wait for the condition, bounded in time.
    let missing = || -> Vec<(Key, usize)> {
        let mut missing = Vec::new();
        for id in &ids {
            for i in net.closest(id, replication) {
                if !net.nodes[i].store().contains(id).unwrap() {
                    missing.push((*id, i));
                }
            }
        }
        missing
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = missing();
        if m.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "copies still missing after 60 s: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.shutdown().await;
}
