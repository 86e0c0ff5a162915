//! `cairn-netsim`: run a scenario from the command line and print its figures.
//!
//! The simulator itself (`netsim/src`) is sans-IO: virtual clock, seeded randomness. This runner
//! sits outside it because it does I/O: arguments, output, and the one wall-clock read, timing
//! the run for `wall_seconds` (reported beside the deterministic figures, never inside them).

use std::process::ExitCode;
use std::time::Duration;

use cairn_netsim::{
    AdversaryKind, Churn, JoinMode, Report, Scenario, SessionDistribution, Workload,
};
use clap::Parser;
use serde::Serialize;

/// Simulate a cairn DHT of many real engines over a modelled network, deterministically.
///
/// Prints a table of figures; with --json, the last line is one JSON object. The same arguments
/// give the same figures, apart from wall_seconds, events_per_second and peak_rss_mb.
#[derive(Debug, Parser)]
#[command(name = "cairn-netsim", version)]
struct Args {
    /// Nodes at the start, adversaries included.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Lookups, spread evenly over the workload's duration.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability that a message (request or response) is lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Churn: mean session length in seconds; nodes leave and new ones join.
    #[arg(long, value_name = "SECONDS")]
    churn_mean_session: Option<f64>,
    /// Session length distribution under churn.
    #[arg(long, value_enum, default_value_t = Sessions::Exponential)]
    churn_distribution: Sessions,
    /// Shape of the Weibull session distribution (below 1: heavy-tailed).
    #[arg(long, default_value_t = 0.5)]
    weibull_shape: f64,
    /// Fraction of the nodes that are adversaries, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    adversaries: f64,
    /// What the adversaries do.
    #[arg(long, value_enum, default_value_t = AdversaryKind::Misroute)]
    adversary_kind: AdversaryKind,
    /// Disjoint lookup paths (S/Kademlia); 1 is plain Kademlia.
    #[arg(long, default_value_t = 1)]
    disjoint_paths: usize,
    /// Requests in flight per lookup path (Kademlia's alpha).
    #[arg(long, default_value_t = 3)]
    alpha: usize,
    /// Bucket size and lookup result size (Kademlia's k).
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// The engine's floor on request timeouts, in ms (the engine's default is 250).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    timeout_min_ms: u64,
    /// Split the network in two for this many seconds, a quarter into the workload.
    #[arg(long, value_name = "SECONDS")]
    partition: Option<f64>,
    /// Length of the workload in seconds of virtual time.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// How the starting nodes come to know each other.
    #[arg(long, value_enum, default_value_t = JoinMode::Warm)]
    join: JoinMode,
    /// What the workload does (default: records for forge and sybil adversaries, content for
    /// fake holders, node lookups otherwise).
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Content workload: objects to put.
    #[arg(long, default_value_t = 100)]
    objects: usize,
    /// Content workload: size of each object in MiB (cut into 256 KiB chunks).
    #[arg(long, value_name = "MIB", default_value_t = 16.0)]
    object_mib: f64,
    /// Content and durability workloads: chunks of 256 KiB per object, instead of
    /// `--object-mib`.
    #[arg(long, value_name = "N")]
    chunks_per_object: Option<usize>,
    /// Copies per chunk, the engine's `replication` (default: the engine's, 5).
    #[arg(long, value_name = "N")]
    replication: Option<usize>,
    /// Content workload: gets, spread evenly over the workload's duration.
    #[arg(long, default_value_t = 1000)]
    gets: usize,
    /// Content workload: Zipf exponent of object popularity (0: uniform).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    zipf: f64,
    /// Content workload: the engine's fetch window per get, in chunks (default: the engine's).
    #[arg(long, value_name = "CHUNKS")]
    fetch_window: Option<usize>,
    /// Content workload: how many chunks past the first unreleased one the engine looks up
    /// holders for (default: the engine's).
    #[arg(long, value_name = "CHUNKS")]
    fetch_lookahead: Option<usize>,
    /// Content workload: requests in flight per holder lookup of a fetch (default: the
    /// engine's).
    #[arg(long, value_name = "N")]
    fetch_alpha: Option<usize>,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Sessions {
    Exponential,
    Weibull,
}

/// The JSON line: the deterministic report, then the three figures of the machine it ran on.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(flatten)]
    report: &'a Report,
    wall_seconds: f64,
    events_per_second: f64,
    peak_rss_mb: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = match scenario(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cairn-netsim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (report, wall) = wall_clock::time(|| cairn_netsim::run(&scenario));
    let wall_seconds = (wall.as_secs_f64() * 1000.0).round() / 1000.0;
    let events_per_second = (report.events as f64 / wall.as_secs_f64().max(1e-9)).round();
    let peak_rss_mb = peak_rss_mb();
    print!("{report}");
    println!(
        "  {:<28} {wall_seconds:.1} s ({events_per_second:.0} events/s), peak rss {}",
        "wall time",
        peak_rss_mb.map_or("-".into(), |m| format!("{m:.0} MiB"))
    );
    if args.json {
        let line = JsonLine {
            report: &report,
            wall_seconds,
            events_per_second,
            peak_rss_mb,
        };
        match serde_json::to_string(&line) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("cairn-netsim: cannot write the report as json: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn scenario(args: &Args) -> Result<Scenario, String> {
    let secs = |name: &str, v: f64| {
        if (0.0..1e9).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!(
                "--{name} must be a number of seconds between 0 and 1e9, got {v}"
            ))
        }
    };
    if !(0.0..=1.0).contains(&args.loss) {
        return Err(format!("--loss must be between 0 and 1, got {}", args.loss));
    }
    if !(0.0..=1.0).contains(&args.adversaries) {
        return Err(format!(
            "--adversaries must be between 0 and 1, got {}",
            args.adversaries
        ));
    }
    if args.nodes < 2 || args.nodes >= 1 << 23 {
        return Err(format!(
            "--nodes must be between 2 and 8388607, got {}",
            args.nodes
        ));
    }
    if args.k == 0 || args.alpha == 0 || args.disjoint_paths == 0 {
        return Err("--k, --alpha and --disjoint-paths must be at least 1".into());
    }
    if args.weibull_shape <= 0.0 || !args.weibull_shape.is_finite() {
        return Err(format!(
            "--weibull-shape must be positive, got {}",
            args.weibull_shape
        ));
    }
    if !(args.object_mib > 0.0 && args.object_mib <= 65536.0) {
        return Err(format!(
            "--object-mib must be above 0 and at most 65536, got {}",
            args.object_mib
        ));
    }
    if !(0.0..=10.0).contains(&args.zipf) {
        return Err(format!(
            "--zipf must be between 0 and 10, got {}",
            args.zipf
        ));
    }
    if args.objects == 0 || args.objects > 1_000_000 {
        return Err(format!(
            "--objects must be between 1 and 1000000, got {}",
            args.objects
        ));
    }
    let out_of_range = |v: Option<usize>| v.is_some_and(|w| w == 0 || w > 4096);
    if out_of_range(args.fetch_window) || out_of_range(args.fetch_lookahead) {
        return Err("--fetch-window and --fetch-lookahead must be between 1 and 4096".into());
    }
    if args.fetch_alpha.is_some_and(|a| a == 0 || a > 64) {
        return Err("--fetch-alpha must be between 1 and 64".into());
    }
    if args.replication.is_some_and(|r| r == 0 || r > 20) {
        return Err("--replication must be between 1 and 20".into());
    }
    if args
        .chunks_per_object
        .is_some_and(|c| c == 0 || c > 262_144)
    {
        return Err("--chunks-per-object must be between 1 and 262144".into());
    }
    let churn = match args.churn_mean_session {
        Some(mean) => {
            let mean_session = secs("churn-mean-session", mean)?;
            if mean_session < Duration::from_secs(1) {
                return Err("--churn-mean-session must be at least 1 second".into());
            }
            Some(Churn {
                mean_session,
                distribution: match args.churn_distribution {
                    Sessions::Exponential => SessionDistribution::Exponential,
                    Sessions::Weibull => SessionDistribution::Weibull {
                        shape: args.weibull_shape,
                    },
                },
            })
        }
        None => None,
    };
    Ok(Scenario {
        nodes: args.nodes,
        lookups: args.lookups,
        seed: args.seed,
        loss: args.loss,
        churn,
        adversaries: args.adversaries,
        adversary_kind: args.adversary_kind,
        disjoint_paths: args.disjoint_paths,
        alpha: args.alpha,
        k: args.k,
        timeout_min: Duration::from_millis(args.timeout_min_ms),
        partition: args.partition.map(|p| secs("partition", p)).transpose()?,
        duration: secs("duration", args.duration)?,
        join: args.join,
        workload: args.workload,
        objects: args.objects,
        object_bytes: match args.chunks_per_object {
            Some(n) => n as u64 * 256 * 1024,
            None => (args.object_mib * 1024.0 * 1024.0).round() as u64,
        },
        gets: args.gets,
        zipf: args.zipf,
        fetch_window: args.fetch_window,
        fetch_lookahead: args.fetch_lookahead,
        fetch_alpha: args.fetch_alpha,
        replication: args.replication,
    })
}

/// Peak resident memory of this process (VmHWM in /proc/self/status), in MiB; `None` where
/// there is no /proc. Not part of the deterministic report.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0).round())
}

mod wall_clock {
    //! The only wall-clock read in netsim. Its figure (wall_seconds, and events_per_second
    //! derived from it) is reported beside the deterministic report, never inside it.

    use std::time::Duration;

    /// Runs `f` and measures how long it took on the wall clock.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
        let start = std::time::Instant::now();
        let out = f();
        (out, start.elapsed())
    }
}
