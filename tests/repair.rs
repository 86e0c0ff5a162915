//! Content outlives the nodes that held it: 15 live nodes, 10 files; 4 nodes (the publisher
//! among them) stop abruptly, the others repair every chunk back to `replication` copies on
//! their own, and every file comes back byte-identical; then 4 more stop and every file is
//! still there.

use std::time::Duration;

use cairn_dht::Key;
use cairn_node::{ContentId, Manifest};
use cairn_tests::{STEP, Testnet, random_bytes};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{Instant, timeout};

const NODES: usize = 15;
const FILES: usize = 10;
const STOPPED: usize = 4;

/// Every chunk id of the file `id` (its root manifest included).
async fn chunk_ids(net: &Testnet, node: usize, id: ContentId) -> Vec<Key> {
    let Manifest::File { chunks, .. } = net.nodes[node].manifest(id).await.unwrap() else {
        panic!("a file");
    };
    let mut ids: Vec<Key> = chunks.iter().map(|c| c.id).collect();
    ids.push(id.key());
    ids
}

/// The chunks with fewer than `r` copies on the running nodes' stores, and how many they have.
fn short(net: &Testnet, ids: &[Key], r: usize) -> Vec<(Key, usize)> {
    ids.iter()
        .map(|id| {
            let copies = net
                .nodes
                .iter()
                .filter(|n| n.store().contains(id).unwrap_or(false))
                .count();
            (*id, copies)
        })
        .filter(|&(_, copies)| copies < r)
        .collect()
}

/// Stops `n` running nodes chosen by `rng`, `first` among them if given (by index).
async fn stop_some(net: &mut Testnet, rng: &mut ChaCha8Rng, n: usize, first: Option<usize>) {
    let mut order: Vec<usize> = (0..net.nodes.len()).filter(|&i| Some(i) != first).collect();
    order.shuffle(rng);
    let mut doomed: Vec<usize> = first.into_iter().chain(order).take(n).collect();
    // Highest index first, so that the others keep theirs.
    doomed.sort_unstable_by(|a, b| b.cmp(a));
    for i in doomed {
        // No handoff and no goodbye: the driver drops its connections mid-flight.
        let node = net.nodes.remove(i);
        net.dirs.remove(i);
        node.shutdown().await;
    }
}

async fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Testnet::new(NODES).await.unwrap();
    let r = cairn_dht::Config::default().replication;
    let publisher = rng.random_range(0..NODES);
    let mut files = Vec::new();
    let mut ids = Vec::new();
    for f in 0..FILES {
        let len = rng.random_range(100 * 1024..1536 * 1024);
        let bytes = random_bytes(len, seed * 100 + f as u64);
        let put = timeout(STEP, net.nodes[publisher].put_bytes(bytes.clone()))
            .await
            .unwrap()
            .unwrap();
        ids.extend(chunk_ids(&net, publisher, put.id).await);
        files.push((put.id, bytes));
    }
    assert!(
        short(&net, &ids, r).is_empty(),
        "seed {seed}: every chunk placed"
    );

    stop_some(&mut net, &mut rng, STOPPED, Some(publisher)).await;
    // The survivors notice the leaves (broken connections, failed pings) and copy each chunk to
    // the peers now among its closest: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let missing = short(&net, &ids, r);
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: after 90 s, {} of {} chunks have fewer than {r} copies: {missing:?}",
            missing.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (f, (id, bytes)) in files.iter().enumerate() {
        let getter = f % net.nodes.len();
        let got = timeout(STEP, net.nodes[getter].get_bytes(*id))
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: get of file {f} timed out"))
            .unwrap_or_else(|e| panic!("seed {seed}: file {f} after repair: {e}"));
        assert!(got == *bytes, "seed {seed}: file {f} differs after repair");
    }

    stop_some(&mut net, &mut rng, STOPPED, None).await;
    for (f, (id, bytes)) in files.iter().enumerate() {
        let getter = (f * 3) % net.nodes.len();
        let got = timeout(STEP, net.nodes[getter].get_bytes(*id))
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: get of file {f} timed out"))
            .unwrap_or_else(|e| panic!("seed {seed}: file {f} with 8 nodes gone: {e}"));
        assert!(
            got == *bytes,
            "seed {seed}: file {f} differs with 8 nodes gone"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_the_loss_of_their_publisher_and_seven_more_nodes_of_fifteen() {
    for seed in [7, 8, 9] {
        run(seed).await;
    }
}
