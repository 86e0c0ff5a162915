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
//! Set `RUST_LOG` (e.g. `RUST_LOG=cairn_node=debug`) for the nodes' logs on standard error.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cairn_node::{ContentId, Multiaddr, Node, PutSummary};
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

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
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
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options {
        size_mib: 256,
        nodes: 12,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => opts.size_mib = value()?.parse().context("--size-mib")?,
            "--nodes" => opts.nodes = value()?.parse().context("--nodes")?,
            other => bail!("unknown argument {other:?}; expected --size-mib N --nodes N"),
        }
    }
    ensure!(opts.size_mib > 0, "--size-mib must be at least 1");
    ensure!(opts.nodes >= 2, "--nodes must be at least 2 (one puts, one gets)");
    Ok(opts)
}

/// The parent: the network, the put, the child getter, the summary.
async fn bench(opts: Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let size = opts.size_mib << 20;

    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::with_capacity(opts.nodes - 1);
    for i in 0..opts.nodes - 1 {
        let bootstrap = nodes.first().map(|n| n.addrs()[0].clone());
        let node = spawn(&root.path().join(format!("node{i}")), bootstrap)
            .await
            .with_context(|| format!("starting node {i}"))?;
        nodes.push(node);
    }
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

    let put_rate = size as f64 / MIB / put_time.as_secs_f64();
    let get_rate = size as f64 / MIB / got.get_secs;
    println!(
        "loopback bench: {} MiB file, {} nodes (node 0 puts; a {}th node gets in its own process)",
        opts.size_mib, opts.nodes, opts.nodes
    );
    println!(
        "put:   {:>8.1} MiB/s  ({:.2} s; {} chunks incl. manifests, {} replicas stored, {} refused)",
        put_rate,
        put_time.as_secs_f64(),
        put.chunks,
        put.replicas,
        put.replica_failures
    );
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
    println!(
        "put side (all {} in-process nodes) peak RSS: {:.1} MiB",
        nodes.len(),
        peak_rss_kib()? as f64 / 1024.0
    );
    Ok(())
}

/// Writes the file, puts it, and runs the getter. The caller stops the nodes whatever happens.
async fn measure(
    opts: &Options,
    size: u64,
    dir: &Path,
    nodes: &[Node],
) -> anyhow::Result<(PutSummary, Duration, GetterReport)> {
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
        "put {} as {} chunks in {:.2} s",
        put.id,
        put.chunks,
        put_time.as_secs_f64()
    );

    let output = dir.join("output.bin");
    let bootstrap = nodes[0].addrs()[0].clone();
    let got = tokio::task::spawn_blocking(move || {
        run_getter(&bootstrap, put.id, &output, &expected.to_hex())
    })
    .await??;
    ensure!(
        got.bytes == size,
        "the getter wrote {} bytes, expected {size}",
        got.bytes
    );
    Ok((put, put_time, got))
}

/// Starts one node on loopback, optionally bootstrapped from `bootstrap`.
async fn spawn(dir: &Path, bootstrap: Option<Multiaddr>) -> anyhow::Result<Node> {
    let mut builder = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)
        .listen("/ip4/127.0.0.1/tcp/0".parse()?)
        .local_network();
    if let Some(addr) = bootstrap {
        builder = builder.bootstrap(addr);
    }
    tokio::time::timeout(SPAWN_TIMEOUT, builder.spawn())
        .await
        .context("node start timed out")?
        .map_err(Into::into)
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
    /// Peak resident set after start, before the get (KiB).
    start_rss_kib: u64,
    /// Peak resident set after the get (KiB): the figure.
    peak_rss_kib: u64,
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
) -> anyhow::Result<GetterReport> {
    let exe = std::env::current_exe().context("finding this program to run the getter")?;
    let mut child = ChildGuard(
        std::process::Command::new(exe)
            .arg("--getter")
            .arg(bootstrap.to_string())
            .arg(id.to_string())
            .arg(output)
            .arg(expected_hex)
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
    let line = match rx.recv_timeout(GETTER_TIMEOUT) {
        Ok(line) => line,
        Err(_) => bail!(
            "the getter did not finish within {} s; killed it",
            GETTER_TIMEOUT.as_secs()
        ),
    };
    let status = child.0.wait()?;
    ensure!(status.success(), "the getter failed ({status})");
    let line = line.context("the getter printed no report")?;
    serde_json::from_str(&line).with_context(|| format!("reading the getter's report {line:?}"))
}

/// The child: `--getter <bootstrap multiaddr> <content id> <out path> <expected BLAKE3 hex>`.
async fn getter(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, id, output, expected] = args else {
        bail!("usage: --getter <bootstrap-multiaddr> <content-id> <out-path> <blake3-hex>");
    };
    let bootstrap: Multiaddr = bootstrap.parse().context("bootstrap address")?;
    let id: ContentId = id.parse()?;
    let output = PathBuf::from(output);
    let dir = tempfile::tempdir()?;

    let started = Instant::now();
    let node = spawn(&dir.path().join("getter"), Some(bootstrap)).await?;
    let start_secs = started.elapsed().as_secs_f64();
    let start_rss_kib = peak_rss_kib()?;

    let started = Instant::now();
    let got = tokio::time::timeout(GETTER_TIMEOUT, node.get_to_file(id, &output)).await;
    let get_secs = started.elapsed().as_secs_f64();
    // Read before hashing the copy, so that the figure is the get's alone.
    let peak_rss_kib = peak_rss_kib()?;
    node.shutdown().await;
    let got = got.context("get timed out")??;

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
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// This process's peak resident set size in KiB (`VmHWM` in `/proc/self/status`, Linux).
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status (Linux only)")
}
