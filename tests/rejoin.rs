//! A node finds its way back into the network: a restarted node rejoins through the peers it
//! knew when it is given no bootstrap address, and a node started while its bootstrap peer is
//! down joins once that peer is up.

use std::path::Path;
use std::time::Duration;

use cairn_node::{Multiaddr, Node};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::{Instant, timeout};

/// Waits (bounded) until `node` has at least one peer.
async fn until_it_has_peers(node: &Node, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = node.peers().await.map(|p| p.len()).unwrap_or(0);
        if n > 0 {
            return n;
        }
        assert!(Instant::now() < deadline, "no peer after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node on `dir` listening on TCP `port` of 127.0.0.1 only.
async fn on_port(dir: &Path, port: u16, bootstrap: Option<Multiaddr>) -> Node {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap())
        .local_network();
    if let Some(addr) = bootstrap {
        b = b.bootstrap(addr);
    }
    timeout(STEP, b.spawn())
        .await
        .unwrap()
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_through_the_peers_it_knew() {
    let mut net = Testnet::new(5).await.expect("testnet");
    let put = timeout(STEP, net.nodes[1].put_bytes(random_bytes(300_000, 11)))
        .await
        .unwrap()
        .expect("put");
    let node = net.nodes.remove(4);
    let dir = net.dirs.remove(4);
    node.shutdown().await;
    assert!(
        dir.join("peers.json").exists(),
        "the peer list is saved at stop"
    );
    // No bootstrap address this time.
    net.spawn_on(dir, None).await.expect("restart");
    let again = net.nodes.last().unwrap().clone();
    until_it_has_peers(&again, Duration::from_secs(30)).await;
    let bytes = timeout(STEP, again.get_bytes(put.id))
        .await
        .unwrap()
        .expect("a get through the rejoined network");
    assert_eq!(bytes, random_bytes(300_000, 11));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_bootstrap_peer_was_down_joins_once_it_is_up() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    // A free port for the bootstrap peer, and its identity (kept in its data directory).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = on_port(&a_dir, port, None).await;
    let a_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", a.peer_id())
        .parse()
        .unwrap();
    a.shutdown().await;
    // B starts while A is down: no peer answers, and it keeps trying.
    let b = on_port(&b_dir, 0, Some(a_addr)).await;
    assert_eq!(b.peers().await.unwrap().len(), 0, "alone while A is down");
    let a = on_port(&a_dir, port, None).await;
    // The retries wait 1, 2, 4 … s: within half a minute B has tried again.
    until_it_has_peers(&b, Duration::from_secs(40)).await;
    b.shutdown().await;
    a.shutdown().await;
}
