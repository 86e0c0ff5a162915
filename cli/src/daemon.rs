//! `cairn daemon`: one node in the foreground with its HTTP API and gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_node::http::{ApiFiles, new_token};
use cairn_node::{Multiaddr, Node, NodeBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Settings, parse_size};
use crate::output::Output;

/// Default API and gateway address.
pub(crate) const DEFAULT_API: &str = "127.0.0.1:5737";

#[derive(clap::Args, Debug)]
pub(crate) struct DaemonArgs {
    /// Peer-to-peer listen address; repeat for several [default: QUIC and TCP on all
    /// interfaces, port 5738, or a free one kept for the next starts if that is taken]
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Peer to join the network through, ending with /p2p/PEER_ID (`/dnsaddr/…` works too);
    /// repeat for several
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Invite to join the network through (`cairn invite` on the other node); repeat for
    /// several
    #[arg(long, value_name = "TICKET")]
    join: Vec<String>,
    /// Relay for nodes behind NAT: auto (only while AutoNAT finds this node publicly
    /// reachable), on (this node has a public address), off [default: auto]
    #[arg(long, value_name = "auto|on|off")]
    relay_server: Option<cairn_node::RelayServer>,
    /// Do not look for peers on the local network (mDNS)
    #[arg(long, env = "CAIRN_NO_MDNS")]
    no_mdns: bool,
    /// Do not ask the router to map the port (UPnP)
    #[arg(long, env = "CAIRN_NO_UPNP")]
    no_upnp: bool,
    /// Join a private network by name instead of the public one: its nodes only talk to
    /// nodes with the same name [default: public]
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Let AutoNAT count private address ranges as reachable: for a lab or test network built
    /// from private ranges, never on the internet
    #[arg(long)]
    private_ranges: bool,
    /// Storage quota, e.g. 50GiB [default: 10GiB]
    #[arg(long, value_name = "SIZE")]
    quota: Option<String>,
    /// Peers each chunk is stored on [default: 5]
    #[arg(long)]
    replication: Option<usize>,
    /// Turn off the per-bucket IP-prefix cap, for networks where many peers share an address
    /// (such as several nodes on 127.0.0.1)
    #[arg(long)]
    local_network: bool,
}

/// A node with its API server.
pub(crate) struct Running {
    pub(crate) node: Node,
    pub(crate) api: SocketAddr,
    files: ApiFiles,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl AsRef<Node> for Running {
    fn as_ref(&self) -> &Node {
        &self.node
    }
}

impl Running {
    /// Starts `builder`'s node and serves its API on `api` (loopback only), writing the API
    /// address and token into `data_dir`.
    pub(crate) async fn start(
        builder: NodeBuilder,
        data_dir: &Path,
        api: SocketAddr,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            api.ip().is_loopback(),
            "the API must listen on a loopback address (127.0.0.1 or [::1]), not {api}"
        );
        let node = builder.spawn().await.context("cannot start the node")?;
        let listener = match tokio::net::TcpListener::bind(api).await {
            Ok(l) => l,
            Err(e) => {
                node.shutdown().await;
                anyhow::bail!(
                    "cannot serve the API on {api}: {e}; pass --api 127.0.0.1:<free port>"
                );
            }
        };
        let api = listener.local_addr()?;
        let token = new_token();
        let files = ApiFiles::new(data_dir);
        files
            .write(api, &token)
            .with_context(|| format!("cannot write the API files into {}", data_dir.display()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(cairn_node::http::serve(
            listener,
            node.clone(),
            &token,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            node,
            api,
            files,
            stop,
            server,
        })
    }

    /// Stops the API and the node, and removes the API files.
    pub(crate) async fn stop(self) {
        self.files.remove();
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.node.shutdown().await;
    }
}

pub(crate) async fn run(settings: &Settings, args: DaemonArgs, out: &Output) -> anyhow::Result<()> {
    let data_dir: PathBuf = settings.data_dir.clone();
    let api: SocketAddr = settings
        .api
        .as_deref()
        .unwrap_or(DEFAULT_API)
        .parse()
        .context("--api must be an address like 127.0.0.1:5737")?;
    if let Some((addr, _)) = ApiFiles::new(&data_dir).read()
        && tokio::net::TcpStream::connect(addr).await.is_ok()
    {
        anyhow::bail!(
            "a cairn daemon is already running for {} (api {addr}); stop it first",
            data_dir.display()
        );
    }
    let mut builder = Node::builder().data_dir(&data_dir);
    let listen = if args.listen.is_empty() {
        parse_all(&settings.file.listen)?
    } else {
        args.listen
    };
    for addr in listen {
        builder = builder.listen(addr);
    }
    let bootstrap = if args.bootstrap.is_empty() {
        parse_all(&settings.file.bootstrap)?
    } else {
        args.bootstrap
    };
    for addr in bootstrap {
        builder = builder.bootstrap(addr);
    }
    let quota = match (&args.quota, &settings.file.quota) {
        (Some(q), _) => Some(parse_size(q)?),
        (None, Some(toml::Value::Integer(n))) => {
            Some(u64::try_from(*n).context("quota must be positive")?)
        }
        (None, Some(toml::Value::String(s))) => Some(parse_size(s)?),
        (None, Some(_)) => {
            anyhow::bail!("quota in the config file must be a number or a size like \"10GiB\"")
        }
        (None, None) => None,
    };
    if let Some(q) = quota {
        builder = builder.quota(q);
    }
    if let Some(r) = args.replication.or(settings.file.replication) {
        builder = builder.replication(r);
    }
    if args.local_network {
        builder = builder.local_network();
    }
    let relay_server = match (args.relay_server, &settings.file.relay_server) {
        (Some(r), _) => r,
        (None, Some(text)) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("relay_server in the config file: {e}"))?,
        (None, None) => cairn_node::RelayServer::Auto,
    };
    builder = builder.nat(cairn_node::NatConfig {
        relay_server,
        mdns: !args.no_mdns && settings.file.mdns.unwrap_or(true),
        upnp: !args.no_upnp && settings.file.upnp.unwrap_or(true),
        private_ranges: args.private_ranges,
        ..cairn_node::NatConfig::default()
    });
    if let Some(name) = args.network.as_ref().or(settings.file.network.as_ref()) {
        builder = builder.network(cairn_node::Network::named(name).map_err(anyhow::Error::msg)?);
    }
    let joins: Vec<cairn_node::Ticket> = args
        .join
        .iter()
        .chain(if args.join.is_empty() {
            settings.file.join.iter()
        } else {
            [].iter()
        })
        .map(|t| t.parse().with_context(|| format!("--join {}", short(t))))
        .collect::<anyhow::Result<_>>()?;
    let running = Running::start(builder, &data_dir, api).await?;
    let node = &running.node;
    for ticket in &joins {
        match node.join(ticket).await {
            Ok(0) => {
                tracing::warn!(peer = %ticket.peer, "the invite's node did not answer; the node keeps trying its known peers")
            }
            Ok(n) => tracing::info!(peer = %ticket.peer, peers = n, "joined through an invite"),
            Err(e) => tracing::warn!(peer = %ticket.peer, %e, "cannot join through an invite"),
        }
    }
    let stop = shutdown_signal();
    out.print(
        format!(
            "cairn daemon ready: peer {}\n  api and gateway: http://{}\n  data: {}\n  listening: {}",
            node.peer_id(),
            running.api,
            data_dir.display(),
            node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join("\n             ")
        ),
        serde_json::json!({
            "event": "ready",
            "peer_id": node.peer_id().to_string(),
            "api": running.api.to_string(),
            "data_dir": data_dir,
            "addrs": node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        }),
    );
    stop.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

/// The start of a long argument, for an error message.
fn short(text: &str) -> String {
    let t: String = text.chars().take(24).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}

fn parse_all(addrs: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("'{a}' in the config file is not a multiaddr"))
        })
        .collect()
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are in place once this returns, not only once
/// the future is first polled: a SIGTERM sent the moment a daemon says it is ready (as a service
/// manager may) stops it cleanly instead of killing it.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate()).and_then(|term| {
            let int = signal(SignalKind::interrupt())?;
            Ok((term, int))
        });
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
