//! Put and get throughput across a loopback network, and the getting node's peak memory: the
//! figures of the "Put and get across a 12-node loopback network" section of `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p cairn-node --example loopback_bench -- --size-mib 256 --nodes 12
//! ```
//!
//! It starts `nodes - 1` nodes in this process on 127.0.0.1 (QUIC and TCP, system-chosen ports,
//! each with its own temporary data directory), writes a seeded random file of `size-mib` MiB
//! piece by piece, and times `put_file` on node 0 (which returns once every chunk has been sent
//! to its closest peers). The get runs in a child process, this same program re-run with the
//! hidden `--getter` mode, so that the peak resident memory it reports (`VmHWM` from
//! `/proc/self/status`) is the getting node's alone: it starts the last node, bootstrapped from
//! node 0, times `get_to_file`, checks the copy's BLAKE3 against the original's, and prints one
//! line of JSON. The parent waits for that line at most [`GETTER_TIMEOUT`], then kills the
//! child, stops every node and prints a summary.
//!
//! The getter joins after the put, so it becomes one of the `replication` closest peers of
//! about `replication / nodes` of the chunks, and the other peers copy those to it while it gets
//! (replicas follow the closest set). The get reads a chunk that has already arrived from its own
//! store, so the get figure is the whole file's, partly local; the summary says how many chunks
//! the getter ended up holding as cache (fetched) and as replica (copied to it, or fetched and
//! then kept as a replica).
//!
//! `--settle` makes the getter wait, after it joined, until those copies stop arriving, and
//! then measure the get alone: time, and peak memory counted from there (the peak is reset
//! through `/proc/self/clear_refs`).
//!
//! `--dht-rate N` gives every node an inbound DHT request budget of N per peer (burst and per
//! second) instead of the engine's default, to show how that limit bounds a single getter.
//!
//! Set `RUST_LOG` (e.g. `RUST_LOG=cairn_node=debug`) for the nodes' logs on standard error, or
//! `GETTER_LOG` for the getting node's alone. The getter also reports its progress, routing
//! table and connections on standard error every few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cairn_node::{ContentId, Multiaddr, Node, Progress, ProgressFn, PutSummary};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Longest the child may take to start its node, get the file and check it.
const GETTER_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest the put may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(1200);
/// Longest one node may take to start and bootstrap.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Seed of the generated file, so every run puts the same bytes.
const SEED: u64 = 0x00ca_1e5e;
/// The file is generated and hashed in pieces of this size.
const PIECE: usize = 1 << 20;
const MIB: f64 = (1 << 20) as f64;
/// How often the getter reports its progress.
const MONITOR_EVERY: Duration = Duration::from_secs(2);
/// With `--settle`: the replica copies to the getter are done once none arrived for this long…
const SETTLE_QUIET: Duration = Duration::from_secs(2);
/// …or after this long in any case.
const SETTLE_MAX: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let getting = args.first().is_some_and(|a| a == "--getter");
    let filter = match std::env::var("GETTER_LOG") {
        Ok(directives) if getting => tracing_subscriber::EnvFilter::new(directives),
        _ => tracing_subscriber::EnvFilter::from_default_env(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let result = match args.first().map(String::as_str) {
        Some("--getter") => runtime().and_then(|rt| rt.block_on(getter(&args[1..]))),
        _ => parse_args(&args).and_then(|opts| runtime()?.block_on(bench(opts))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

struct Options {
    size_mib: u64,
    nodes: usize,
    /// Every node's inbound DHT request budget per peer, instead of the engine's default.
    dht_rate: Option<u32>,
    /// Let the replica copies to the getter finish before the get, and measure from there.
    settle: bool,
}

impl Options {
    /// The flags the getter needs, passed on to it.
    fn getter_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(rate) = self.dht_rate {
            flags.extend(["--dht-rate".to_owned(), rate.to_string()]);
        }
        if self.settle {
            flags.push("--settle".to_owned());
        }
        flags
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options {
        size_mib: 256,
        nodes: 12,
        dht_rate: None,
        settle: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => opts.size_mib = value()?.parse().context("--size-mib")?,
            "--nodes" => opts.nodes = value()?.parse().context("--nodes")?,
            "--dht-rate" => opts.dht_rate = Some(value()?.parse().context("--dht-rate")?),
            "--settle" => opts.settle = true,
            other => bail!(
                "unknown argument {other:?}; expected --size-mib N --nodes N [--dht-rate N] \
                 [--settle]"
            ),
        }
    }
    ensure!(opts.size_mib > 0, "--size-mib must be at least 1");
    ensure!(
        opts.nodes >= 2,
        "--nodes must be at least 2 (one puts, one gets)"
    );
    Ok(opts)
}

/// The parent: the network, the put, the child getter, the summary.
async fn bench(opts: Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let size = opts.size_mib << 20;

    let started = Instant::now();
    let net = loopback(root.path(), opts.dht_rate);
    let nodes = tokio::time::timeout(SPAWN_TIMEOUT * opts.nodes as u32, net.spawn(opts.nodes - 1))
        .await
        .context("starting the nodes timed out")??;
    eprintln!(
        "started {} nodes in {:.1} s",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );

    let result = measure(&opts, size, root.path(), &nodes).await;
    for node in &nodes {
        node.shutdown().await;
    }
    let (put, put_time, got) = result?;

    println!(
        "loopback bench: {} MiB file, {} nodes (node 0 puts; node {} gets, in its own process){}",
        opts.size_mib,
        opts.nodes,
        opts.nodes - 1,
        opts.dht_rate
            .map(|rate| format!("; DHT request budget {rate}/s per peer"))
            .unwrap_or_default()
    );
    println!(
        "put:   {:>8.1} MiB/s  ({:.2} s; {} chunks incl. manifests, {} replicas stored, {} refused)",
        size as f64 / MIB / put_time.as_secs_f64(),
        put_time.as_secs_f64(),
        put.chunks,
        put.replicas,
        put.replica_failures
    );
    // The put's figures stand even if the get failed.
    let got = got?;
    let get_rate = size as f64 / MIB / got.get_secs;
    println!(
        "get:   {:>8.1} MiB/s  ({:.2} s; BLAKE3 of the copy matches)",
        get_rate, got.get_secs
    );
    println!(
        "getter peak RSS: {:.1} MiB  (after start and bootstrap, before the get: {:.1} MiB; \
         start took {:.2} s)",
        got.peak_rss_kib as f64 / 1024.0,
        got.start_rss_kib as f64 / 1024.0,
        got.start_secs
    );
    if let Some(waited) = got.settle_secs {
        println!(
            "settled: waited {waited:.1} s for replica copies before the get; the getter then \
             held {} chunks",
            got.held_before_get
        );
    }
    println!(
        "getter store after the get: {} chunks as cache, {} as replica; getter CPU {:.1} s",
        got.cached_chunks, got.replica_chunks, got.cpu_secs
    );
    println!(
        "put side (all {} in-process nodes): peak RSS {:.1} MiB, CPU {:.1} s",
        nodes.len(),
        peak_rss_kib()? as f64 / 1024.0,
        cpu_secs()?
    );
    Ok(())
}

/// Writes the file, puts it, and runs the getter; the get's outcome is returned apart so that
/// the put's figures are reported either way. The caller stops the nodes whatever happens.
async fn measure(
    opts: &Options,
    size: u64,
    dir: &Path,
    nodes: &[Node],
) -> anyhow::Result<(PutSummary, Duration, anyhow::Result<GetterReport>)> {
    let input = dir.join("input.bin");
    let expected = {
        let input = input.clone();
        tokio::task::spawn_blocking(move || write_random(&input, size, SEED)).await??
    };
    eprintln!("wrote {} MiB of seeded random bytes", opts.size_mib);

    let started = Instant::now();
    let put = tokio::time::timeout(PUT_TIMEOUT, nodes[0].put_file(&input))
        .await
        .context("put timed out")??;
    let put_time = started.elapsed();
    eprintln!(
        "put {} as {} chunks in {:.2} s ({} replicas stored, {} refused)",
        put.id,
        put.chunks,
        put_time.as_secs_f64(),
        put.replicas,
        put.replica_failures
    );

    let output = dir.join("output.bin");
    let bootstrap = nodes[0].addrs()[0].clone();
    eprintln!("the getter bootstraps from {bootstrap}");
    let flags = opts.getter_flags();
    let got = tokio::task::spawn_blocking(move || {
        run_getter(&bootstrap, put.id, &output, &expected.to_hex(), &flags)
    })
    .await?
    .and_then(|got| {
        ensure!(
            got.bytes == size,
            "the getter wrote {} bytes, expected {size}",
            got.bytes
        );
        Ok(got)
    });
    Ok((put, put_time, got))
}

/// The bench's loopback network under `root`, optionally with an inbound DHT request budget
/// of `dht_rate` per peer.
fn loopback(root: &Path, dht_rate: Option<u32>) -> cairn_node::Loopback {
    let net = cairn_node::Loopback::new(root);
    match dht_rate {
        Some(rate) => {
            let mut config = cairn_node::dht::Config::default();
            config.rate.burst = rate;
            config.rate.per_second = rate;
            net.dht_config(config)
        }
        None => net,
    }
}

/// Writes `size` seeded random bytes to `path` one [`PIECE`] at a time; returns their BLAKE3.
fn write_random(path: &Path, size: u64, seed: u64) -> anyhow::Result<blake3::Hash> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut piece = vec![0u8; PIECE];
    let mut left = size;
    while left > 0 {
        let n = left.min(PIECE as u64) as usize;
        rng.fill_bytes(&mut piece[..n]);
        hasher.update(&piece[..n]);
        file.write_all(&piece[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(hasher.finalize())
}

/// What the child reports, as one line of JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct GetterReport {
    /// Seconds to start the node and bootstrap.
    start_secs: f64,
    /// Seconds `get_to_file` took.
    get_secs: f64,
    /// Bytes written.
    bytes: u64,
    /// With `--settle`: seconds waited for replica copies to stop arriving before the get.
    settle_secs: Option<f64>,
    /// With `--settle`: chunks the getter held when the get started.
    held_before_get: u64,
    /// Peak resident set after start, before the get (KiB); with `--settle`, the resident set
    /// when the get started, the peak having been reset.
    start_rss_kib: u64,
    /// Peak resident set after the get (KiB): the figure.
    peak_rss_kib: u64,
    /// Chunks the getter's store held after the get only as cache: fetched by the get.
    cached_chunks: u64,
    /// Chunks it held as replica: copied to it by peers because it is among their closest
    /// peers, or fetched by the get and then kept as a replica for the same reason.
    replica_chunks: u64,
    /// CPU seconds (user + system) the getter used in all.
    cpu_secs: f64,
}

/// Kills and reaps the child on every path out of [`run_getter`].
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs this program as the getter and reads its report, killing it after [`GETTER_TIMEOUT`].
fn run_getter(
    bootstrap: &Multiaddr,
    id: ContentId,
    output: &Path,
    expected_hex: &str,
    flags: &[String],
) -> anyhow::Result<GetterReport> {
    let exe = std::env::current_exe().context("finding this program to run the getter")?;
    let mut child = ChildGuard(
        std::process::Command::new(exe)
            .arg("--getter")
            .arg(bootstrap.to_string())
            .arg(id.to_string())
            .arg(output)
            .arg(expected_hex)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the getter process")?,
    );
    let stdout = child.0.stdout.take().context("the getter's stdout")?;
    // Read on a thread so that the wait below can time out; it ends at the child's exit (or
    // its kill), when the pipe closes.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        // One line is all a well-behaved getter prints; cap what a broken one can make us hold.
        let mut last = None;
        for line in BufReader::new(stdout.take(1 << 20)).lines() {
            match line {
                Ok(l) if l.starts_with('{') => last = Some(l),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(last);
    });
    let deadline = Instant::now() + GETTER_TIMEOUT;
    let timed_out = || {
        anyhow::anyhow!(
            "the getter did not finish within {} s; killed it",
            GETTER_TIMEOUT.as_secs()
        )
    };
    let line = rx.recv_timeout(GETTER_TIMEOUT).map_err(|_| timed_out())?;
    // Its output is closed; wait for it to exit, still within the deadline.
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(status.success(), "the getter failed ({status})");
    let line = line.context("the getter printed no report")?;
    serde_json::from_str(&line).with_context(|| format!("reading the getter's report {line:?}"))
}

/// The child: `--getter <bootstrap multiaddr> <content id> <out path> <expected BLAKE3 hex>
/// [--dht-rate N] [--settle]`.
async fn getter(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, id, output, expected, flags @ ..] = args else {
        bail!("usage: --getter <bootstrap-multiaddr> <content-id> <out-path> <blake3-hex> [flags]");
    };
    let opts = parse_args(flags)?;
    let bootstrap: Multiaddr = bootstrap.parse().context("bootstrap address")?;
    let id: ContentId = id.parse()?;
    let output = PathBuf::from(output);
    let dir = tempfile::tempdir()?;

    let started = Instant::now();
    let getter = dir.path().join("getter");
    let builder = loopback(dir.path(), opts.dht_rate).builder(&getter, Some(bootstrap));
    let node = tokio::time::timeout(SPAWN_TIMEOUT, builder.spawn())
        .await
        .context("node start timed out")??;
    let start_secs = started.elapsed().as_secs_f64();
    let (settle_secs, held_before_get) = if opts.settle {
        let waited = settle(&node).await;
        // Restart the peak-RSS count (Linux ≥ 4.0), so that the figure is the get's own.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let held = node.stats().await.map_or(0, |s| s.store.chunks);
        (Some(waited), held)
    } else {
        (None, 0)
    };
    let start_rss_kib = peak_rss_kib()?;

    let done = Arc::new(AtomicU64::new(0));
    let monitor = tokio::spawn(monitor(node.clone(), done.clone()));
    let started = Instant::now();
    let progress: ProgressFn = Arc::new(move |p: Progress| done.store(p.done, Ordering::Relaxed));
    let got =
        tokio::time::timeout(GETTER_TIMEOUT, node.get_to_path_with(id, &output, progress)).await;
    let get_secs = started.elapsed().as_secs_f64();
    monitor.abort();
    // Read before hashing the copy, so that the figure is the get's alone.
    let peak_rss_kib = peak_rss_kib()?;
    let store = node.stats().await.map(|s| s.store);
    node.shutdown().await;
    let got = got
        .context("get timed out")?
        .with_context(|| format!("get failed after {get_secs:.2} s"))?;

    let hash = {
        let output = output.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<blake3::Hash> {
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(std::fs::File::open(output)?)?;
            Ok(hasher.finalize())
        })
        .await??
    };
    ensure!(
        hash.to_hex().as_str() == expected,
        "the copy's BLAKE3 is {hash}, the original's {expected}"
    );
    let report = GetterReport {
        start_secs,
        get_secs,
        bytes: got.size,
        start_rss_kib,
        peak_rss_kib,
        settle_secs,
        held_before_get,
        cached_chunks: store.as_ref().map_or(0, |s| s.cached),
        replica_chunks: store.as_ref().map_or(0, |s| s.replica),
        cpu_secs: cpu_secs()?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Waits until no chunk has reached this node's store for [`SETTLE_QUIET`], at most
/// [`SETTLE_MAX`]; returns the seconds waited.
async fn settle(node: &Node) -> f64 {
    let started = Instant::now();
    let (mut held, mut since) = (u64::MAX, Instant::now());
    while started.elapsed() < SETTLE_MAX {
        let now_held = node.stats().await.map_or(0, |s| s.store.chunks);
        if now_held != held {
            (held, since) = (now_held, Instant::now());
        } else if since.elapsed() >= SETTLE_QUIET {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed().as_secs_f64()
}

/// Reports the get's progress and the node's view of the network on standard error, every
/// [`MONITOR_EVERY`] until aborted.
async fn monitor(node: Node, done: Arc<AtomicU64>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(MONITOR_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok(stats) = node.stats().await else {
            return;
        };
        eprintln!(
            "getter: {:6.1} s  {:7.1} MiB  routing table {:2}  connected {:2}  rss {:6.1} MiB (peak {:6.1})  threads {}",
            started.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed) as f64 / MIB,
            stats.network.routing_table,
            stats.network.connected,
            status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0,
            peak_rss_kib().unwrap_or(0) as f64 / 1024.0,
            status_kib("Threads:").unwrap_or(0),
        );
    }
}

/// CPU seconds (user + system) this process used so far, from `/proc/self/stat` (Linux, whose
/// clock ticks there are 1/100 s).
fn cpu_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// This process's peak resident set size in KiB (`VmHWM` in `/proc/self/status`, Linux).
fn peak_rss_kib() -> anyhow::Result<u64> {
    status_kib("VmHWM:")
}

/// A figure (KiB for sizes) from `/proc/self/status` (Linux), by its field name with the colon.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status (Linux only)"))
}
