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
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// cairn: a peer-to-peer content store.
///
/// Start a node with `cairn daemon` (or a local test network with `cairn devnet`), then
/// `cairn put FILE` prints a content id that `cairn get ID` fetches from any node.
#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    propagate_version = true,
    after_help = "Examples:\n  cairn daemon &\n  cairn put holiday.mp4            # prints cairn1…\n  cairn get cairn1… -o copy.mp4\n  cairn devnet --demo              # a local network of real nodes, put and get"
)]
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
    #[command(
        after_help = "Examples:\n  cairn daemon\n  cairn daemon --join cairninvite1… --quota 50GiB"
    )]
    Daemon(daemon::DaemonArgs),
    /// Store a file or directory (`-` reads standard input) and print its content id
    #[command(
        after_help = "Examples:\n  cairn put photo.jpg\n  cairn put site/\n  tar c dir | cairn put -"
    )]
    Put {
        /// File, directory, or `-` for standard input
        path: PathBuf,
    },
    /// Fetch content to a file or directory
    ///
    /// What to fetch is a content id or a name, optionally followed by a path in a directory;
    /// a name is resolved first, to whatever it points at now.
    #[command(
        after_help = "Examples:\n  cairn get cairn1… -o photo.jpg\n  cairn get cairnname1…/docs/guide.pdf     # writes guide.pdf\n  cairn get cairn1… -o - | less"
    )]
    Get {
        /// Content id (cairn1…) or name (cairnname1…), optionally followed by /path/in/dir
        #[arg(value_name = "ID|NAME[/PATH]")]
        target: String,
        /// Output path, or `-` for standard output [default: the last segment of PATH, else
        /// the id or name, in the current directory]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace an existing file at the output path
        #[arg(long)]
        force: bool,
        /// Join through the node of this invite first (from `cairn invite` on the machine that
        /// has the content), for a node that is not yet in the same network
        #[arg(long, value_name = "TICKET")]
        from: Option<String>,
    },
    /// Write a file's content to standard output
    #[command(
        after_help = "Examples:\n  cairn cat cairn1…\n  cairn cat cairnname1…/notes/today.txt"
    )]
    Cat {
        /// Content id (cairn1…) or name (cairnname1…), optionally followed by /path/in/dir
        #[arg(value_name = "ID|NAME[/PATH]")]
        target: String,
    },
    /// List a directory: each entry's name, size and id
    #[command(after_help = "Examples:\n  cairn ls cairn1…\n  cairn ls cairn1…/docs --json")]
    Ls {
        /// Content id (cairn1…) or name (cairnname1…), optionally followed by /path/in/dir
        #[arg(value_name = "ID|NAME[/PATH]")]
        target: String,
    },
    /// Open the web UI of the daemon in a browser (or print its address)
    #[command(after_help = "Examples:\n  cairn ui\n  cairn ui --print")]
    Ui {
        /// Print the address (with its token) instead of opening a browser
        #[arg(long)]
        print: bool,
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
    #[command(after_help = "Examples:\n  cairn peers\n  cairn peers add cairninvite1…")]
    Peers {
        #[command(subcommand)]
        command: Option<PeersCommand>,
    },
    /// Print an invite to this node: a ticket another node joins through (`cairn peers add`,
    /// `cairn daemon --join`) or fetches with (`cairn get ID --from`)
    #[command(
        after_help = "Example:\n  cairn invite          # on one machine; send the ticket to a friend\n  cairn get cairn1… --from cairninvite1…   # on the friend's"
    )]
    Invite,
    /// Show the node's id, addresses, reachability, routing table, storage and repair work
    #[command(after_help = "Examples:\n  cairn status\n  cairn status --json")]
    Status,
    /// Run the daemon as a service of this user, started at login (systemd on Linux, launchd
    /// on macOS)
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Ask the network how many live, verified copies each chunk of some content has
    #[command(after_help = "Example:\n  cairn health cairn1…")]
    Health {
        /// Content id (cairn1…)
        id: String,
    },
    /// Remove cached chunks (fetched by gets; never pinned content or replicas kept for the
    /// network), least recently used first
    #[command(after_help = "Examples:\n  cairn gc --dry-run\n  cairn gc --keep 2GiB")]
    Gc {
        /// Say what would be removed, and remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Keep this much cache, e.g. 2GiB [default: 0]
        #[arg(long, value_name = "SIZE")]
        keep: Option<String>,
    },
    /// Start a local network of real nodes on 127.0.0.1 and run until Ctrl-C
    #[command(
        after_help = "Examples:\n  cairn devnet --demo\n  cairn devnet --nodes 5 --dir /tmp/net"
    )]
    Devnet(devnet::DevnetArgs),
}

#[derive(Subcommand, Debug)]
enum PinCommand {
    /// Pin content: fetch whatever is missing and keep all of it
    #[command(after_help = "Example:\n  cairn pin add cairn1…")]
    Add {
        /// Content id
        id: String,
    },
    /// Unpin content: its chunks become evictable cache
    #[command(after_help = "Example:\n  cairn pin rm cairn1…")]
    Rm {
        /// Content id
        id: String,
    },
    /// List pinned content
    #[command(after_help = "Example:\n  cairn pin ls --json")]
    Ls,
}

#[derive(Subcommand, Debug)]
enum PeersCommand {
    /// Connect to a peer and join the network through it, now
    #[command(
        after_help = "Examples:\n  cairn peers add cairninvite1…\n  cairn peers add /ip4/192.0.2.7/udp/5738/quic-v1/p2p/12D3KooW…"
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
        after_help = "Examples:\n  cairn name publish cairn1…\n  cairn name publish cairn1… --key blog --ttl 7d"
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
    #[command(after_help = "Example:\n  cairn name resolve cairnname1…")]
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
        after_help = "Example:\n  cairn key gen blog && cairn name publish cairn1… --key blog"
    )]
    Gen {
        /// What to call the key
        name: String,
    },
    /// List the keys, each with its name (`self` is this node's own)
    #[command(after_help = "Example:\n  cairn key ls --json")]
    Ls,
    /// Remove a key for good; its name is no longer renewed and lapses
    ///
    /// `self` cannot be removed. Nobody can publish under the removed key's name again.
    #[command(after_help = "Example:\n  cairn key rm blog")]
    Rm {
        /// The key
        name: String,
    },
}

/// The options every command takes: listed once, in `cairn --help`, and hidden from each
/// subcommand's help, which points there instead.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let mut section = String::from("Global options (for every command):\n");
    for a in &globals {
        let flag = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("    --{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) => continue,
        };
        let value = a
            .get_value_names()
            .filter(|_| a.get_action().takes_values())
            .map(|v| {
                format!(
                    " <{}>",
                    v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" ")
                )
            })
            .unwrap_or_default();
        let env = a
            .get_env()
            .map(|e| format!(" [env: {}]", e.to_string_lossy()))
            .unwrap_or_default();
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        section.push_str(&format!("  {flag}{value}\n          {help}{env}\n"));
    }
    for a in &globals {
        cmd = cmd.mut_arg(a.get_id().clone(), |a| a.hide(true));
    }
    let examples = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    cmd.after_help(format!("{section}\n{examples}"))
        .mut_subcommands(global_footer)
}

fn global_footer(sub: clap::Command) -> clap::Command {
    let footer =
        "Global options (--data-dir, --api, --config, --json, -q, -v): see `cairn --help`.";
    let help = match sub.get_after_help() {
        Some(h) => format!("{h}\n\n{footer}"),
        None => footer.to_owned(),
    };
    sub.after_help(help).mut_subcommands(global_footer)
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let json = cli.json;
    init_logging(cli.verbose);
    // `devnet` makes its own data directories and API addresses: say so rather than ignore them.
    if let Some(("devnet", _)) = matches.subcommand() {
        let own = "each node gets its own data directory under --dir, and an API on a free port";
        for (id, flag, why) in [
            ("data_dir", "--data-dir", own),
            ("api", "--api", own),
            (
                "config",
                "--config",
                "its nodes run with the defaults, on 127.0.0.1",
            ),
        ] {
            if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                return fail(json, &anyhow::anyhow!("devnet does not use {flag}: {why}"));
            }
        }
    }
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
        Err(e) => fail(json, &e),
    }
}

/// Prints `e` on stderr, one line (a JSON object under `--json`), and fails.
fn fail(json: bool, e: &anyhow::Error) -> ExitCode {
    let message = output::one_line(e);
    if json {
        eprintln!("{}", serde_json::json!({ "error": message }));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::FAILURE
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
                    force,
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
                        r = client.get(&target, output, force, &out) => r,
                        () = daemon::shutdown_signal() => {
                            anyhow::bail!("interrupted; the partial download was removed")
                        }
                    }
                }
                Command::Cat { target } => client.cat(&target).await,
                Command::Ls { target } => client.list(&target, &out).await,
                Command::Ui { print } => client.ui(print, &out).await,
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
