//! A network that stops and starts again on the same data directories keeps its names: the
//! signed records each node stored for others are on disk, and the owner publishes its own
//! name again once it has peers.

use cairn_node::DEFAULT_NAME_TTL;
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolves_after_every_node_restarted_on_its_data_directory() {
    let mut net = Testnet::new(6).await.expect("testnet");
    let owner = 3;
    let put = timeout(STEP, net.nodes[owner].put_bytes(random_bytes(100_000, 7)))
        .await
        .unwrap()
        .expect("put");
    let (name, stored) = timeout(
        STEP,
        net.nodes[owner].publish_name(put.id, DEFAULT_NAME_TTL),
    )
    .await
    .unwrap()
    .expect("publish");
    assert!(stored > 0, "the name reached peers");
    // Every node stops; none is left to remember the name in memory.
    let dirs = net.dirs.clone();
    for node in std::mem::take(&mut net.nodes) {
        node.shutdown().await;
    }
    net.dirs.clear();
    // All start again on their directories, node 0 first, the others joining through it.
    net.spawn_on(dirs[0].clone(), None)
        .await
        .expect("node 0 again");
    let first = net.nodes[0].addrs()[0].clone();
    for dir in &dirs[1..] {
        net.spawn_on(dir.clone(), Some(first.clone()))
            .await
            .expect("node again");
    }
    // Read from a node that is not the owner.
    let reader = 5;
    assert_ne!(reader, owner);
    let resolved = timeout(STEP, net.nodes[reader].resolve_name(name))
        .await
        .unwrap()
        .expect("the name resolves after the restart");
    assert_eq!(resolved, put.id);
    // A node that joins later reads it too.
    let late = net.scratch("late");
    let n = net
        .spawn_on(late, Some(first.clone()))
        .await
        .expect("late node");
    let resolved = timeout(STEP, net.nodes[n].resolve_name(name))
        .await
        .unwrap()
        .expect("the name resolves from a node that joined later");
    assert_eq!(resolved, put.id);
    net.shutdown().await;
}

/// A name outlives its first lifetime while its owner runs: the engine asks the owner to sign
/// it again at half its life (here 10 s), through a restart of the whole network, and a node
/// that joins after the first record expired reads the renewed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_name_outlives_its_first_ttl_and_reaches_a_node_that_joined_later() {
    let ttl = std::time::Duration::from_secs(10);
    let mut net = Testnet::new(5).await.expect("testnet");
    let owner = 2;
    let put = timeout(STEP, net.nodes[owner].put_bytes(random_bytes(50_000, 9)))
        .await
        .unwrap()
        .expect("put");
    let published = tokio::time::Instant::now();
    let (name, _) = timeout(STEP, net.nodes[owner].publish_name(put.id, ttl))
        .await
        .unwrap()
        .expect("publish");
    let first = net.nodes[0]
        .get_record(name.key())
        .await
        .unwrap()
        .expect("the record is out there");
    // Every node stops and starts again on its directory.
    net.restart_all().await.expect("every node again");
    let seed = net.nodes[0].addrs()[0].clone();
    // Wait (bounded) for the renewal to reach the network: a higher sequence, a later expiry.
    let deadline = tokio::time::Instant::now() + STEP;
    let renewed = loop {
        if let Ok(Some(r)) = net.nodes[4].get_record(name.key()).await
            && r.sequence > first.sequence
        {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renewal of the name seen in {STEP:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(renewed.expires > first.expires);
    // Signed again for the lifetime it was published with, not for what was left of it.
    let life = |r: &cairn_dht::SignedRecord| r.expires.as_micros() - r.sequence;
    assert_eq!(life(&first), ttl.as_micros() as u64);
    assert_eq!(
        life(&renewed),
        ttl.as_micros() as u64,
        "the full ten seconds again"
    );
    // Past the first record's expiry, a node that joins now still resolves the name.
    tokio::time::sleep_until(published + ttl + std::time::Duration::from_secs(1)).await;
    let late = net.scratch("late");
    let n = net
        .spawn_on(late, Some(seed.clone()))
        .await
        .expect("late node");
    let resolved = timeout(STEP, net.nodes[n].resolve_name(name))
        .await
        .unwrap()
        .expect("the renewed name resolves from a node that joined later");
    assert_eq!(resolved, put.id);
    net.shutdown().await;
}
