//! `cairn`: run a node, put and get content, and try a whole network on one machine.
//!
//! A thin front end: the node, its HTTP API and everything else live in `cairn-node`. Commands
//! other than `daemon` and `devnet` talk to a running daemon through its HTTP API, found through
//! the data directory (`--data-dir`, `CAIRN_DATA_DIR`) or `--api`/`CAIRN_API`.

mod client;
mod config;
mod daemon;
mod devnet;
mod output;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// cairn: a peer-to-peer content store.
///
/// Start a node with `cairn daemon` (or a local test network with `cairn devnet`), then
/// `cairn put FILE` prints a content id that `cairn get ID` fetches from any node.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Data directory of the node to use or run [default: the platform data directory]
    #[arg(long, global = true, env = "CAIRN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// API address: where `daemon` serves its API and gateway [default: 127.0.0.1:5737], or where
    /// other commands reach a daemon (instead of the address in its data directory)
    #[arg(long, global = true, env = "CAIRN_API", value_name = "ADDR")]
    api: Option<String>,

    /// Configuration file (TOML) [default: cairn/config.toml in the platform config directory]
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    json: bool,

    /// Quiet: no progress bars
    #[arg(short, long, global = true)]
    quiet: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node in the foreground, with its HTTP API and gateway on loopback
    Daemon(daemon::DaemonArgs),
    /// Store a file or directory (`-` reads standard input) and print its content id
    Put {
        /// File, directory, or `-` for standard input
        path: PathBuf,
    },
    /// Fetch content to a file or directory
    ///
    /// What to fetch is a content id or a name, optionally followed by a path in a directory;
    /// a name is resolved first, to whatever it points at now.
    #[command(
        after_long_help = "Examples:\n  cairn get cairn1… -o photo.jpg\n  cairn get cairnname1…/docs/guide.pdf     # writes guide.pdf"
    )]
    Get {
        /// Content id (cairn1…) or name (cairnname1…), optionally followed by /path/in/dir
        #[arg(value_name = "ID|NAME[/PATH]")]
        target: String,
        /// Output path [default: the last segment of PATH, else the id or name, in the current
        /// directory]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Join through the node of this invite first (from `cairn invite` on the machine that
        /// has the content), for a node that is not yet in the same network
        #[arg(long, value_name = "TICKET")]
        from: Option<String>,
    },
    /// Write a file's content to standard output
    #[command(
        after_long_help = "Examples:\n  cairn cat cairn1…\n  cairn cat cairnname1…/notes/today.txt"
    )]
    Cat {
        /// Content id (cairn1…) or name (cairnname1…), optionally followed by /path/in/dir
        #[arg(value_name = "ID|NAME[/PATH]")]
        target: String,
    },
    /// Keep content on this node for good
    #[command(subcommand)]
    Pin(PinCommand),
    /// Publish or resolve a mutable name
    #[command(subcommand)]
    Name(NameCommand),
    /// Create, list or remove the keys names are published under
    #[command(subcommand)]
    Key(KeyCommand),
    /// List the peers in the routing table, or add one
    Peers {
        #[command(subcommand)]
        command: Option<PeersCommand>,
    },
    /// Print an invite to this node: a ticket another node joins through (`cairn peers add`,
    /// `cairn daemon --join`) or fetches with (`cairn get ID --from`)
    #[command(
        after_long_help = "Example:\n  cairn invite          # on one machine; send the ticket to a friend\n  cairn get cairn1… --from cairninvite1…   # on the friend's"
    )]
    Invite,
    /// Show the node's id, addresses, reachability, routing table, storage and repair work
    Status,
    /// Run the daemon as a service of this user, started at login (systemd on Linux, launchd
    /// on macOS)
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Ask the network how many live, verified copies each chunk of some content has
    Health {
        /// Content id (cairn1…)
        id: String,
    },
    /// Remove cached chunks (fetched by gets; never pinned content or replicas kept for the
    /// network), least recently used first
    Gc {
        /// Say what would be removed, and remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Keep this much cache, e.g. 2GiB [default: 0]
        #[arg(long, value_name = "SIZE")]
        keep: Option<String>,
    },
    /// Start a local network of real nodes on 127.0.0.1 and run until Ctrl-C
    Devnet(devnet::DevnetArgs),
}

#[derive(Subcommand, Debug)]
enum PinCommand {
    /// Pin content: fetch whatever is missing and keep all of it
    Add {
        /// Content id
        id: String,
    },
    /// Unpin content: its chunks become evictable cache
    Rm {
        /// Content id
        id: String,
    },
    /// List pinned content
    Ls,
}

#[derive(Subcommand, Debug)]
enum PeersCommand {
    /// Connect to a peer and join the network through it, now
    #[command(
        after_long_help = "Examples:\n  cairn peers add cairninvite1…\n  cairn peers add /ip4/192.0.2.7/udp/5738/quic-v1/p2p/12D3KooW…"
    )]
    Add {
        /// An invite (`cairn invite` on the other node), or an address ending in
        /// `/p2p/<peer id>` (its `cairn status` shows them)
        #[arg(value_name = "TICKET|MULTIADDR")]
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
enum NameCommand {
    /// Point a name of this node at a content id, and print the name
    ///
    /// The name is the one of key `self` (this node's own name) unless --key names another
    /// (see `cairn key gen`). The daemon renews the record at half its life for as long as it
    /// runs, and publishes it again when it restarts.
    #[command(
        after_long_help = "Examples:\n  cairn name publish cairn1…\n  cairn name publish cairn1… --key blog --ttl 7d"
    )]
    Publish {
        /// Content id (cairn1…)
        id: String,
        /// The key whose name to publish
        #[arg(long, value_name = "KEY", default_value = cairn_node::SELF_KEY)]
        key: String,
        /// How long the record lives unless renewed: seconds, or a number with s, m, h or d
        /// (90s, 10m, 24h, 7d); at most 7 days
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        ttl: String,
    },
    /// Print the content id a name points at
    #[command(after_long_help = "Example:\n  cairn name resolve cairnname1…")]
    Resolve {
        /// Name (cairnname1…)
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create a key and print its name (cairnname1…)
    ///
    /// A key name is 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'. The
    /// secret key is kept in the daemon's data directory (keys/NAME, mode 0600): back it up, as
    /// nobody can publish under its name without it.
    #[command(
        after_long_help = "Example:\n  cairn key gen blog && cairn name publish cairn1… --key blog"
    )]
    Gen {
        /// What to call the key
        name: String,
    },
    /// List the keys, each with its name (`self` is this node's own)
    #[command(after_long_help = "Example:\n  cairn key ls --json")]
    Ls,
    /// Remove a key for good; its name is no longer renewed and lapses
    ///
    /// `self` cannot be removed. Nobody can publish under the removed key's name again.
    #[command(after_long_help = "Example:\n  cairn key rm blog")]
    Rm {
        /// The key
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = config::Settings::resolve(&cli)?;
    let out = output::Output::new(cli.json, cli.quiet);
    match cli.command {
        Command::Daemon(args) => daemon::run(&settings, args, &out).await,
        Command::Devnet(args) => devnet::run(args, &out).await,
        Command::Service(command) => service::run(&cli_paths(&settings), command, &out),
        command => {
            let client = client::Client::connect(&settings)?;
            match command {
                Command::Put { path } => client.put(&path, &out).await,
                Command::Get {
                    target,
                    output,
                    from,
                } => {
                    if let Some(ticket) = from {
                        client
                            .join_quietly(&ticket)
                            .await
                            .context("--from: cannot reach the invite's node")?;
                    }
                    // Dropping the get on Ctrl-C or SIGTERM removes its staged output.
                    tokio::select! {
                        r = client.get(&target, output, &out) => r,
                        () = daemon::shutdown_signal() => {
                            anyhow::bail!("interrupted; the partial download was removed")
                        }
                    }
                }
                Command::Cat { target } => client.cat(&target).await,
                Command::Pin(PinCommand::Add { id }) => client.pin(&id, true, &out).await,
                Command::Pin(PinCommand::Rm { id }) => client.pin(&id, false, &out).await,
                Command::Pin(PinCommand::Ls) => client.pins(&out).await,
                Command::Name(NameCommand::Publish { id, key, ttl }) => {
                    let ttl = cairn_node::parse_ttl(&ttl).context("--ttl")?;
                    client.publish(&id, &key, ttl, &out).await
                }
                Command::Key(KeyCommand::Gen { name }) => client.generate_key(&name, &out).await,
                Command::Key(KeyCommand::Ls) => client.keys(&out).await,
                Command::Key(KeyCommand::Rm { name }) => client.remove_key(&name, &out).await,
                Command::Name(NameCommand::Resolve { name }) => client.resolve(&name, &out).await,
                Command::Peers { command: None } => client.peers(&out).await,
                Command::Peers {
                    command: Some(PeersCommand::Add { addr }),
                } => client.add_peer(&addr, &out).await,
                Command::Status => client.status(&out).await,
                Command::Invite => client.invite(&out).await,
                Command::Health { id } => client.health(&id, &out).await,
                Command::Gc { dry_run, keep } => {
                    let keep = match keep {
                        Some(text) => config::parse_size(&text)
                            .map_err(|e| anyhow::anyhow!("--keep {text:?}: {e}"))?,
                        None => 0,
                    };
                    client.gc(dry_run, keep, &out).await
                }
                Command::Daemon(_) | Command::Devnet(_) | Command::Service(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// What a service runs: this binary on this data directory and config.
fn cli_paths(settings: &config::Settings) -> service::Paths {
    service::Paths {
        data_dir: settings.data_dir.clone(),
        config: settings.config_path.clone(),
    }
}

/// Quiet by default (warnings only); `-v` for more; `RUST_LOG` wins.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
