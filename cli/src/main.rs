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

use std::path::PathBuf;
use std::process::ExitCode;

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
    Get {
        /// Content id (cairn1…)
        id: String,
        /// Output path [default: the content id, in the current directory]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Write a file's content to standard output
    Cat {
        /// Content id (cairn1…)
        id: String,
    },
    /// Keep content on this node for good
    #[command(subcommand)]
    Pin(PinCommand),
    /// Publish or resolve a mutable name
    #[command(subcommand)]
    Name(NameCommand),
    /// List the peers in the routing table, or add one
    Peers {
        #[command(subcommand)]
        command: Option<PeersCommand>,
    },
    /// Show the node's id, addresses, routing table, storage and repair work
    Status,
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
    Add {
        /// Its address, ending in `/p2p/<peer id>` (its `cairn status` shows them)
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
enum NameCommand {
    /// Point this node's name at a content id
    Publish {
        /// Content id
        id: String,
        /// How long the record lives, in seconds (at most 7 days)
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=604_800))]
        ttl: u64,
    },
    /// Print the content id a name points at
    Resolve {
        /// Name (cairnname1…)
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
        command => {
            let client = client::Client::connect(&settings)?;
            match command {
                Command::Put { path } => client.put(&path, &out).await,
                Command::Get { id, output } => {
                    // Dropping the get on Ctrl-C or SIGTERM removes its staged output.
                    tokio::select! {
                        r = client.get(&id, output, &out) => r,
                        () = daemon::shutdown_signal() => {
                            anyhow::bail!("interrupted; the partial download was removed")
                        }
                    }
                }
                Command::Cat { id } => client.cat(&id).await,
                Command::Pin(PinCommand::Add { id }) => client.pin(&id, true, &out).await,
                Command::Pin(PinCommand::Rm { id }) => client.pin(&id, false, &out).await,
                Command::Pin(PinCommand::Ls) => client.pins(&out).await,
                Command::Name(NameCommand::Publish { id, ttl }) => {
                    client.publish(&id, ttl, &out).await
                }
                Command::Name(NameCommand::Resolve { name }) => client.resolve(&name, &out).await,
                Command::Peers { command: None } => client.peers(&out).await,
                Command::Peers {
                    command: Some(PeersCommand::Add { addr }),
                } => client.add_peer(&addr, &out).await,
                Command::Status => client.status(&out).await,
                Command::Health { id } => client.health(&id, &out).await,
                Command::Gc { dry_run, keep } => {
                    let keep = match keep {
                        Some(text) => config::parse_size(&text)
                            .map_err(|e| anyhow::anyhow!("--keep {text:?}: {e}"))?,
                        None => 0,
                    };
                    client.gc(dry_run, keep, &out).await
                }
                Command::Daemon(_) | Command::Devnet(_) => unreachable!("handled above"),
            }
        }
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
