//! Networks of real nodes on one machine, on 127.0.0.1: what `cairn devnet`, the tests and the
//! benchmarks run, built one way.
//!
//! Every node listens on QUIC and TCP on system-chosen ports of 127.0.0.1, has its own data
//! directory (`node1`, `node2`, … under one root), and runs with the per-address caps off
//! ([`NodeBuilder::local_network`]), since every peer shares one address. The first node starts
//! alone; each later one bootstraps from it, one at a time, so each start ends with the node in
//! the network.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_node::SpawnError> {
//! let net = cairn_node::Loopback::new("/tmp/cairn-net").spawn(5).await?;
//! let put = net[0].put_bytes(b"hello".to_vec()).await.expect("put");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;

use crate::{Node, NodeBuilder, SpawnError};

/// How to start a loopback network: where its data goes, and the engine's configuration.
#[derive(Clone, Debug)]
pub struct Loopback {
    root: PathBuf,
    dht: Option<cairn_dht::Config>,
}

impl Loopback {
    /// A network whose nodes keep their data under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            dht: None,
        }
    }

    /// Gives every node this engine configuration (the local-network relaxations still apply).
    pub fn dht_config(mut self, config: cairn_dht::Config) -> Self {
        self.dht = Some(config);
        self
    }

    /// The data directory of node `i` (counting from 0): `node{i + 1}` under the root.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{}", i + 1))
    }

    /// A builder for one node on `dir`, joining through `bootstrap` if given.
    pub fn builder(&self, dir: &Path, bootstrap: Option<Multiaddr>) -> NodeBuilder {
        let mut b = Node::builder();
        if let Some(config) = &self.dht {
            b = b.dht_config(config.clone());
        }
        let mut b = b
            .data_dir(dir)
            .listen(loopback_addr("/ip4/127.0.0.1/udp/0/quic-v1"))
            .listen(loopback_addr("/ip4/127.0.0.1/tcp/0"))
            .local_network();
        if let Some(addr) = bootstrap {
            b = b.bootstrap(addr);
        }
        b
    }

    /// Starts `n` nodes one at a time with `start`, which gets each node's index and builder
    /// and returns what runs it (a [`Node`], or a node with a server of its own), pushing each
    /// onto `running`. It stops at the first failure, leaving the started ones in `running`
    /// for the caller to stop.
    pub async fn start<T, E, F, Fut>(
        &self,
        n: usize,
        running: &mut Vec<T>,
        mut start: F,
    ) -> Result<(), E>
    where
        T: AsRef<Node>,
        F: FnMut(usize, NodeBuilder) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        for i in running.len()..running.len() + n {
            let bootstrap = running.first().map(|r| r.as_ref().addrs()[0].clone());
            let builder = self.builder(&self.dir(i), bootstrap);
            running.push(start(i, builder).await?);
        }
        Ok(())
    }

    /// Starts `n` nodes; if one fails to start, stops those already started.
    pub async fn spawn(&self, n: usize) -> Result<Vec<Node>, SpawnError> {
        let mut nodes = Vec::with_capacity(n);
        let started = self.start(n, &mut nodes, |_, b| b.spawn()).await;
        if let Err(e) = started {
            for node in nodes {
                node.shutdown().await;
            }
            return Err(e);
        }
        Ok(nodes)
    }
}

impl AsRef<Node> for Node {
    fn as_ref(&self) -> &Node {
        self
    }
}

fn loopback_addr(text: &str) -> Multiaddr {
    text.parse().expect("a valid loopback multiaddr")
}
