//! `cairn devnet`: a local network of real nodes on 127.0.0.1, each with its own data directory
//! and API, so the whole system can be tried on one machine with one command.

use std::path::PathBuf;

use anyhow::Context;
use cairn_node::Loopback;

use crate::daemon::{Running, shutdown_signal};
use crate::output::Output;

#[derive(clap::Args, Debug)]
pub(crate) struct DevnetArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// Directory for the nodes' data (node1, node2, …); kept afterwards [default: a temporary
    /// directory, removed on exit]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Put a generated 8 MiB file on the first node, get it back from the last, check it is
    /// byte-identical, print what happened, and exit
    #[arg(long)]
    demo: bool,
}

pub(crate) async fn run(args: DevnetArgs, out: &Output) -> anyhow::Result<()> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("cairn-devnet-").tempdir()?),
    };
    let root = args
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .context("no devnet directory")?;
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;

    let mut running: Vec<Running> = Vec::new();
    let started = start_all(&root, args.nodes, &mut running).await;
    if let Err(e) = started {
        for r in running {
            r.stop().await;
        }
        return Err(e);
    }

    if args.demo {
        let result = demo(&root, &running, out).await;
        for r in running {
            r.stop().await;
        }
        drop(temp);
        return result;
    }

    let first = &running[0];
    let lines: Vec<String> = running
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "  node{:<3} {}  api http://{}",
                i + 1,
                r.node.peer_id(),
                r.api
            )
        })
        .collect();
    let last = running.len();
    let text = format!(
        "cairn devnet: {n} nodes on 127.0.0.1, data in {root}\n{nodes}\n\n\
         Point the command line at any node with --data-dir (or CAIRN_DATA_DIR):\n  \
         cairn --data-dir {root}/node1 put FILE\n  \
         cairn --data-dir {root}/node{last} get ID -o OUT\n\
         Gateway of node 1: http://{api}/c/ID\n\
         Ctrl-C stops every node.\nready",
        n = running.len(),
        root = root.display(),
        nodes = lines.join("\n"),
        api = first.api,
    );
    let json = serde_json::json!({
        "event": "ready",
        "dir": root,
        "nodes": running.iter().enumerate().map(|(i, r)| serde_json::json!({
            "name": format!("node{}", i + 1),
            "peer_id": r.node.peer_id().to_string(),
            "api": r.api.to_string(),
            "data_dir": root.join(format!("node{}", i + 1)),
            "addrs": r.node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let stop = shutdown_signal();
    out.print(text, json);
    stop.await;
    eprintln!("stopping {} nodes…", running.len());
    for r in running {
        r.stop().await;
    }
    drop(temp);
    Ok(())
}

async fn start_all(
    root: &std::path::Path,
    n: u16,
    running: &mut Vec<Running>,
) -> anyhow::Result<()> {
    let net = Loopback::new(root);
    net.start(usize::from(n), running, |i, builder| {
        let dir = net.dir(i);
        async move {
            Running::start(builder, &dir, "127.0.0.1:0".parse()?)
                .await
                .with_context(|| format!("starting node{}", i + 1))
        }
    })
    .await
}

/// Size of the demo file.
const DEMO_BYTES: usize = 8 << 20;

/// The round trip of `--demo`: put on the first node, get from the last, compare.
async fn demo(root: &std::path::Path, running: &[Running], out: &Output) -> anyhow::Result<()> {
    let (first, last) = (&running[0], &running[running.len() - 1]);
    // Deterministic pseudo-random content (BLAKE3 in extendable-output mode).
    let mut data = vec![0u8; DEMO_BYTES];
    blake3::Hasher::new()
        .update(b"cairn devnet demo")
        .finalize_xof()
        .fill(&mut data);
    let input = root.join("demo-input.bin");
    std::fs::write(&input, &data).with_context(|| format!("cannot write {}", input.display()))?;

    let started = std::time::Instant::now();
    let put = first.node.put_file(&input).await.context("put failed")?;
    let put_time = started.elapsed();
    let output = root.join("demo-output.bin");
    let started = std::time::Instant::now();
    last.node
        .get_to_file(put.id, &output)
        .await
        .context("get failed")?;
    let get_time = started.elapsed();
    let same = std::fs::read(&output).context("cannot read the output back")? == data;
    anyhow::ensure!(same, "the bytes got back differ from the bytes put");
    let mib = DEMO_BYTES as f64 / f64::from(1 << 20);
    out.print(
        format!(
            "put {mib:.0} MiB on node1 in {put_ms} ms: {id}\n  {chunks} chunks, {replicas} replicas on other nodes\n\
             got it back from node{n} in {get_ms} ms: byte-identical",
            put_ms = put_time.as_millis(),
            id = put.id,
            chunks = put.chunks,
            replicas = put.replicas,
            n = running.len(),
            get_ms = get_time.as_millis(),
        ),
        serde_json::json!({
            "event": "demo",
            "id": put.id.to_string(),
            "bytes": DEMO_BYTES,
            "chunks": put.chunks,
            "replicas": put.replicas,
            "put_ms": put_time.as_millis() as u64,
            "get_ms": get_time.as_millis() as u64,
            "identical": same,
        }),
    );
    Ok(())
}
