//! Embedding cairn in an app: two nodes on this machine, a put on one, a get from the other.
//!
//! ```text
//! cargo run -p cairn-node --example embed
//! ```
//!
//! Everything stays on 127.0.0.1 and in temporary directories, so it needs no network and
//! leaves nothing behind. A real app would keep one node for its whole life, with a data
//! directory it keeps (the node's identity and chunks live there) and the default listen
//! addresses, and bootstrap from peers it knows.

use std::time::Duration;

use anyhow::{Context, ensure};
use cairn_node::Node;

/// How long each step may take before the example gives up instead of hanging.
const STEP: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Each node owns a data directory: identity key, chunk files and index. Temporary here.
    let dirs = tempfile::tempdir()?;

    // The first node listens on a system-chosen QUIC port on loopback. `local_network()` turns
    // off the engine's limit on peers sharing an IP prefix (an eclipse defence), which would
    // otherwise stop peers that all live on 127.0.0.1 from filling its routing table.
    let first = Node::builder()
        .data_dir(dirs.path().join("first"))
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)
        .local_network()
        .spawn()
        .await
        .context("starting the first node")?;

    // `addrs()` ends each address with `/p2p/<peer id>`: exactly what another node's
    // `bootstrap` wants. `spawn` returns once the bootstrap lookup has finished.
    let bootstrap = first.addrs()[0].clone();
    println!("first node:  {} at {bootstrap}", first.peer_id());
    let second = Node::builder()
        .data_dir(dirs.path().join("second"))
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)
        .local_network()
        .bootstrap(bootstrap)
        .spawn()
        .await
        .context("starting the second node")?;
    println!("second node: {}", second.peer_id());

    // Put a file on the first node. It is chunked, stored and pinned there, and every chunk is
    // sent to its closest peers (here: the second node). The content id names the bytes: a
    // reader checks everything it receives against it.
    let original = b"Hello from cairn! Every byte you read back was checked against its hash.\n";
    let path = dirs.path().join("hello.txt");
    std::fs::write(&path, original)?;
    let put = tokio::time::timeout(STEP, first.put_file(&path))
        .await
        .context("put timed out")??;
    println!(
        "put {} bytes: {} chunk(s) counting the manifest, {} replica(s) on other peers",
        put.size, put.chunks, put.replicas
    );
    // The text form (`cairn1…`) is what you show, copy and paste; it parses back.
    println!("content id: {}", put.id);
    let id: cairn_node::ContentId = put.id.to_string().parse()?;

    // Get it on the second node, written whole to a file (or not at all). For large content,
    // `Node::get` gives a streaming reader instead; `get_bytes` suits small content.
    let out = dirs.path().join("copy.txt");
    let got = tokio::time::timeout(STEP, second.get_to_file(id, &out))
        .await
        .context("get timed out")??;
    let copy = std::fs::read(&out)?;
    ensure!(copy == original, "the copy differs from the original");
    println!("got {} bytes back on the second node: identical", got.size);

    // Stop both nodes: this closes their connections and waits for their tasks. What they
    // stored is on disk already.
    second.shutdown().await;
    first.shutdown().await;
    Ok(())
}
