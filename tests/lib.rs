//! Test helpers: [`Testnet`], a network of real cairn nodes on 127.0.0.1, and seeded data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cairn_node::{Loopback, Multiaddr, Node};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long any single step of a test may take before it fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(120);

/// A network of real nodes on loopback, each with its own data directory: a
/// [`cairn_node::Loopback`] network under a temporary directory.
pub struct Testnet {
    /// The nodes; node 0 is everyone's bootstrap peer.
    pub nodes: Vec<Node>,
    /// Data directory of each node, by index.
    pub dirs: Vec<PathBuf>,
    loopback: Loopback,
    root: tempfile::TempDir,
}

impl Testnet {
    /// Starts `n` nodes: node 0 first, then the others bootstrapping from it, one at a time.
    pub async fn new(n: usize) -> anyhow::Result<Self> {
        Self::with_config(n, cairn_dht::Config::default()).await
    }

    /// Starts `n` nodes as [`Testnet::new`] does, each with this engine configuration.
    pub async fn with_config(n: usize, config: cairn_dht::Config) -> anyhow::Result<Self> {
        init_logging();
        let root = tempfile::tempdir()?;
        let loopback = Loopback::new(root.path()).dht_config(config);
        let mut nodes = Vec::new();
        let started = loopback
            .start(n, &mut nodes, |i, builder| async move {
                timed_spawn(builder)
                    .await
                    .with_context(|| format!("starting node {i}"))
            })
            .await;
        let dirs = (0..nodes.len()).map(|i| loopback.dir(i)).collect();
        let net = Self {
            nodes,
            dirs,
            loopback,
            root,
        };
        if let Err(e) = started {
            net.shutdown().await;
            return Err(e);
        }
        Ok(net)
    }

    /// Starts one more node on `dir` (which may hold an earlier node's data), joined to node 0
    /// if it is running.
    pub async fn spawn_on(
        &mut self,
        dir: PathBuf,
        bootstrap: Option<Multiaddr>,
    ) -> anyhow::Result<usize> {
        let node = timed_spawn(self.loopback.builder(&dir, bootstrap)).await?;
        self.nodes.push(node);
        self.dirs.push(dir);
        Ok(self.nodes.len() - 1)
    }

    /// Indices of the `n` nodes whose ids are closest to `key`, closest first.
    pub fn closest(&self, key: &cairn_dht::Key, n: usize) -> Vec<usize> {
        let mut by_distance: Vec<(usize, cairn_dht::Key)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (i, cairn_node::protocol::node_id(&node.peer_id())))
            .collect();
        by_distance.sort_by_key(|(_, id)| key.distance(id));
        by_distance.into_iter().take(n).map(|(i, _)| i).collect()
    }

    /// A fresh directory under the testnet's temporary root.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.root.path().join(name);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// Stops every node and starts each again on its data directory, in the same order: node
    /// 0 first, the others joining through it.
    pub async fn restart_all(&mut self) -> anyhow::Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for node in std::mem::take(&mut self.nodes) {
            node.shutdown().await;
        }
        let mut seed = None;
        for dir in dirs {
            self.spawn_on(dir, seed.clone()).await?;
            seed.get_or_insert_with(|| self.nodes[0].addrs()[0].clone());
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}

/// Starts a node on 127.0.0.1 as a [`Loopback`] network's nodes are, on `dir`.
pub async fn spawn(dir: &Path, bootstrap: Option<Multiaddr>) -> anyhow::Result<Node> {
    timed_spawn(Loopback::new(dir).builder(dir, bootstrap)).await
}

/// Starts `builder`'s node, failing after [`STEP`].
async fn timed_spawn(builder: cairn_node::NodeBuilder) -> anyhow::Result<Node> {
    Ok(tokio::time::timeout(STEP, builder.spawn()).await??)
}

/// `len` bytes from a seeded generator.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A small tmpfs for one test (a disk that fills up), unmounted when dropped, even if the test
/// fails. Mounting needs root: [`Tmpfs::mount`] says why it could not, for the test to print
/// and skip.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `4m`) on a new directory.
    pub fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}
