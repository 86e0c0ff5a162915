//! The `cairn` binary run as a user would: a devnet and daemons on 127.0.0.1, every process
//! stopped through its handle (killed on drop if a test fails first), every wait bounded.

mod bad_input;
mod browser;
mod crash;
mod names;
mod netns;
mod reach;
mod service;
mod survivors;
mod ux;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use cairn_tests::random_bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(120);

fn cairn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for var in [
        "CAIRN_DATA_DIR",
        "CAIRN_API",
        "CAIRN_TOKEN",
        "CAIRN_CONFIG",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    // No config file from the machine running the tests.
    c.env("CAIRN_CONFIG", "/dev/null");
    // Nothing multicast on the machine's network (the mDNS test turns mDNS back on in its own
    // namespaces).
    c.env("CAIRN_NO_MDNS", "true").env("CAIRN_NO_UPNP", "true");
    c.kill_on_drop(true);
    c
}

/// Runs `cairn --data-dir dir args…` to completion (bounded).
async fn run(dir: &Path, args: &[&str]) -> Output {
    let mut c = cairn();
    c.arg("--data-dir").arg(dir).args(args);
    timeout(STEP, c.output())
        .await
        .expect("cairn did not finish in time")
        .expect("cairn runs")
}

/// `--json` output, one object per line, as one array.
fn ndjson(text: &str) -> serde_json::Value {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "cairn failed: {}", stderr(o));
}

/// Asserts a failure with a one-line message containing `needle`.
fn assert_fails(o: &Output, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit code 1; stderr: {}",
        stderr(o)
    );
    let err = stderr(o);
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "stderr was: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "the error should be one line: {err}"
    );
}

/// Collects a child's piped stderr into a string, on a task of its own, so the child never
/// blocks on a full pipe and a failing test can show what it said.
fn collect_stderr(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use tokio::io::AsyncReadExt;
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("piped stderr");
    let sink = text.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let piece = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&piece);
        }
    });
    text
}

/// Waits (bounded) for the JSON `ready` event a `cairn --json daemon` prints on stdout, then
/// keeps draining its stdout so it never blocks on a full pipe; `None` if it never came.
async fn ready_event(child: &mut Child) -> Option<serde_json::Value> {
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let ready = timeout(STEP, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "ready"
            {
                return Some(v);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ready
}

/// Starts a long-running `cairn` command and waits (bounded) for the stdout line starting with
/// `ready`.
async fn start(args: &[&str], ready: &str) -> Child {
    let mut child = cairn()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cairn");
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    let found = timeout(STEP, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with(ready) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "cairn {args:?} never printed '{ready}'");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// The arguments of a daemon on its own, on data directory `dir`, its API and QUIC on
/// system-chosen loopback ports.
fn lone_daemon(dir: &str) -> [&str; 7] {
    [
        "daemon",
        "--data-dir",
        dir,
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
    ]
}

/// SIGTERM, then wait (bounded) for a clean exit.
async fn terminate(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = timeout(STEP, child.wait())
        .await
        .expect("stops after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status}");
}

async fn http_get(url: &str, range: Option<&str>) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = timeout(STEP, req.send())
        .await
        .expect("gateway answers")
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.bytes().await.expect("body").to_vec(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_put_get_cat_gateway_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let net = root.path().join("net");
    let devnet = start(
        &["devnet", "--nodes", "8", "--dir", net.to_str().unwrap()],
        "ready",
    )
    .await;
    let (node1, node6) = (net.join("node1"), net.join("node6"));

    // A 5 MiB file through node 1, back through node 6.
    let data = random_bytes(5 * 1024 * 1024, 11);
    let input = root.path().join("five.bin");
    std::fs::write(&input, &data).unwrap();
    let put = run(&node1, &["put", input.to_str().unwrap()]).await;
    assert_ok(&put);
    let id = stdout(&put);
    assert!(id.starts_with("cairn1"), "{id}");
    let output = root.path().join("copy.bin");
    let got = run(&node6, &["get", &id, "-o", output.to_str().unwrap()]).await;
    assert_ok(&got);
    assert!(std::fs::read(&output).unwrap() == data, "get differs");
    let cat = run(&net.join("node3"), &["cat", &id]).await;
    assert_ok(&cat);
    assert!(cat.stdout == data, "cat differs");

    // JSON output for scripts.
    let json = run(&node6, &["--json", "status"]).await;
    assert_ok(&json);
    let status: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert!(status["routing_table"].as_u64().unwrap() >= 7, "{status}");

    // The gateway, no token: whole file, and a range.
    let api = std::fs::read_to_string(node6.join("api.addr")).unwrap();
    let url = format!("http://{}/c/{id}", api.trim());
    let (code, body, headers) = http_get(&url, None).await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert!(body == data);
    let (code, body, headers) = http_get(&url, Some("bytes=1000000-1000099")).await;
    assert_eq!(code, 206);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000000-1000099/{}", data.len()).as_str()
    );
    assert_eq!(body, &data[1_000_000..1_000_100]);

    // A directory tree with nested folders.
    let tree = root.path().join("tree");
    std::fs::create_dir_all(tree.join("docs/deep/deeper")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    std::fs::write(tree.join("readme.txt"), b"hello tree").unwrap();
    std::fs::write(tree.join("docs/a.bin"), random_bytes(700_000, 12)).unwrap();
    std::fs::write(tree.join("docs/deep/deeper/z.txt"), b"zzz").unwrap();
    let put = run(&net.join("node2"), &["put", tree.to_str().unwrap()]).await;
    assert_ok(&put);
    let dir_id = stdout(&put);
    let out_tree = root.path().join("tree-copy");
    let got = run(
        &net.join("node8"),
        &["get", &dir_id, "-o", out_tree.to_str().unwrap()],
    )
    .await;
    assert_ok(&got);
    for rel in ["readme.txt", "docs/a.bin", "docs/deep/deeper/z.txt"] {
        assert_eq!(
            std::fs::read(tree.join(rel)).unwrap(),
            std::fs::read(out_tree.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(out_tree.join("empty").is_dir());
    let (code, body, headers) = http_get(
        &format!("http://{}/c/{dir_id}/readme.txt", api.trim()),
        None,
    )
    .await;
    assert_eq!((code, body.as_slice()), (200, &b"hello tree"[..]));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");

    // Health: every chunk of the file has verified copies on the other nodes.
    let health = run(&node1, &["--json", "health", &id]).await;
    assert_ok(&health);
    let h: serde_json::Value = serde_json::from_str(&stdout(&health)).unwrap();
    let replication = h["replication"].as_u64().unwrap();
    assert!(h["chunks"].as_u64().unwrap() >= 2, "{h}");
    // The publisher's own copy does not count; a chunk it is a replica holder of has one fewer
    // copy elsewhere.
    assert!(h["min"].as_u64().unwrap() >= replication - 1, "{h}");
    let text = run(&node1, &["health", &id]).await;
    assert_ok(&text);
    assert!(stdout(&text).contains("median"), "{}", stdout(&text));

    // Status shows the repair work; gc removes what node 6 cached for its get (never the pins
    // of node 1), and the content still comes back.
    let status = run(&node6, &["status"]).await;
    assert_ok(&status);
    assert!(stdout(&status).contains("repair:"), "{}", stdout(&status));
    let cached = |status: &serde_json::Value| status["chunks_cached"].as_u64().unwrap();
    let before: serde_json::Value =
        serde_json::from_str(&stdout(&run(&node6, &["--json", "status"]).await)).unwrap();
    assert!(cached(&before) > 0, "node 6 cached what it got: {before}");
    let dry = run(&node6, &["--json", "gc", "--dry-run"]).await;
    assert_ok(&dry);
    let dry: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap();
    assert_eq!(dry["chunks"].as_u64().unwrap(), cached(&before), "{dry}");
    let gc = run(&node6, &["gc"]).await;
    assert_ok(&gc);
    assert!(stdout(&gc).starts_with("removed "), "{}", stdout(&gc));
    let after: serde_json::Value =
        serde_json::from_str(&stdout(&run(&node6, &["--json", "status"]).await)).unwrap();
    assert_eq!(cached(&after), 0, "{after}");
    let pinned = |s: &serde_json::Value| s["chunks_pinned"].as_u64().unwrap();
    let node1_before: serde_json::Value =
        serde_json::from_str(&stdout(&run(&node1, &["--json", "status"]).await)).unwrap();
    assert_ok(&run(&node1, &["gc"]).await);
    let node1_after: serde_json::Value =
        serde_json::from_str(&stdout(&run(&node1, &["--json", "status"]).await)).unwrap();
    assert_eq!(pinned(&node1_after), pinned(&node1_before));
    let again = root.path().join("again.bin");
    assert_ok(&run(&node6, &["get", &id, "-o", again.to_str().unwrap()]).await);
    assert!(
        std::fs::read(&again).unwrap() == data,
        "get after gc differs"
    );
    assert_fails(
        &run(&node6, &["gc", "--keep", "lots"]).await,
        "--keep \"lots\"",
    );

    // Errors: message and exit code.
    assert_fails(
        &run(&node1, &["get", "cairn1nothex"]).await,
        "malformed content id",
    );
    assert_fails(
        &run(&node1, &["get", "bafyoops"]).await,
        "should start with 'cairn1'",
    );
    let missing = root.path().join("missing.bin");
    assert_fails(
        &run(&node1, &["put", missing.to_str().unwrap()]).await,
        "no such file or directory",
    );
    let unknown = format!("cairn1{}", "cd".repeat(32));
    assert_fails(&run(&node6, &["get", &unknown]).await, "no peer holds");
    let mut wrong = cairn();
    wrong
        .arg("--data-dir")
        .arg(&node1)
        .arg("status")
        .env("CAIRN_TOKEN", "not-the-token");
    let wrong = timeout(STEP, wrong.output()).await.unwrap().unwrap();
    assert_fails(&wrong, "refused the API token");
    assert!(
        !root.path().join(&unknown).exists(),
        "a failed get leaves nothing behind"
    );

    terminate(devnet).await;
    assert!(
        !node1.join("api.addr").exists(),
        "a stopped node removes its API address"
    );
    assert_fails(
        &run(&node1, &["status"]).await,
        "no cairn daemon is running for",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_commands_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["status"]).await;
    assert_fails(
        &o,
        &format!(
            "no cairn daemon is running for {}; start one with 'cairn daemon'",
            dir.path().display()
        ),
    );
    let o = run(dir.path(), &["put", "/etc/hostname"]).await;
    assert_fails(&o, "no cairn daemon is running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_daemon_and_a_new_one_serves_the_same_content() {
    let root = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = root.path().join("d");
    let dir = data_dir.to_str().unwrap();
    let args = lone_daemon(dir);
    let daemon = start(&args, "cairn daemon ready").await;
    let data = random_bytes(1_500_000, 13);
    let input = root.path().join("f.bin");
    std::fs::write(&input, &data).unwrap();
    let put = run(&data_dir, &["put", input.to_str().unwrap()]).await;
    assert_ok(&put);
    let id = stdout(&put);

    // A second daemon on the same directory is refused while the first runs.
    let mut c = cairn();
    c.args(args);
    let second_daemon = timeout(STEP, c.output()).await.unwrap().unwrap();
    assert_fails(&second_daemon, "already running");

    terminate(daemon).await;
    let daemon = start(&args, "cairn daemon ready").await;
    let out = root.path().join("again.bin");
    let got = run(&data_dir, &["get", &id, "-o", out.to_str().unwrap()]).await;
    assert_ok(&got);
    assert!(std::fs::read(&out).unwrap() == data);
    terminate(daemon).await;
}

/// The README's first command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_round_trips_and_exits() {
    let o = timeout(
        STEP,
        cairn().args(["devnet", "--demo", "--nodes", "6"]).output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_ok(&o);
    assert!(stdout(&o).contains("byte-identical"), "{}", stdout(&o));
    let j = timeout(
        STEP,
        cairn()
            .args(["--json", "devnet", "--demo", "--nodes", "3"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_ok(&j);
    let v: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert_eq!(v["identical"], true);
}

/// `cairn peers add` joins a daemon that started alone to another one, at runtime; a bad
/// address is a one-line error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_add_joins_a_lone_daemon_to_another_at_runtime() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let daemon = |dir: &Path| {
        [
            "daemon".to_owned(),
            "--data-dir".to_owned(),
            dir.to_str().unwrap().to_owned(),
            "--api".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--listen".to_owned(),
            "/ip4/127.0.0.1/udp/0/quic-v1".to_owned(),
            "--local-network".to_owned(),
        ]
    };
    let args_a = daemon(&a);
    let args_b = daemon(&b);
    let da = start(
        &args_a.iter().map(String::as_str).collect::<Vec<_>>(),
        "cairn daemon ready",
    )
    .await;
    let db = start(
        &args_b.iter().map(String::as_str).collect::<Vec<_>>(),
        "cairn daemon ready",
    )
    .await;
    let status = run(&a, &["status", "--json"]).await;
    assert_ok(&status);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    let addr = status["listen_addrs"][0].as_str().unwrap().to_owned();
    let addr = if addr.contains("/p2p/") {
        addr
    } else {
        format!("{addr}/p2p/{}", status["peer_id"].as_str().unwrap())
    };
    let before = run(&b, &["peers", "--json"]).await;
    assert_ok(&before);
    assert_eq!(stdout(&before), "", "b started alone");
    let added = run(&b, &["peers", "add", &addr]).await;
    assert_ok(&added);
    assert!(
        stdout(&added).starts_with("joined through"),
        "{}",
        stdout(&added)
    );
    let after = run(&b, &["peers", "--json"]).await;
    assert!(
        stdout(&after).contains(status["peer_id"].as_str().unwrap()),
        "{}",
        stdout(&after)
    );
    // Bad input: one line, exit 1, the daemon goes on.
    assert_fails(
        &run(&b, &["peers", "add", "not-an-address"]).await,
        "is neither a multiaddr nor an invite",
    );
    assert_fails(
        &run(&b, &["peers", "add", "/ip4/127.0.0.1/tcp/1"]).await,
        "names no peer",
    );
    assert_ok(&run(&b, &["peers"]).await);
    terminate(db).await;
    terminate(da).await;
}

/// A daemon killed with SIGKILL (no goodbye) leaves the others' routing tables within a
/// bounded time: its broken connections make them ping it, and a failed ping drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_leaves_the_routing_tables_promptly() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("n{i}"))).collect();
    let args = |dir: &Path, bootstrap: Option<&str>| {
        let mut a: Vec<String> = [
            "daemon",
            "--data-dir",
            dir.to_str().unwrap(),
            "--api",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--local-network",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(b) = bootstrap {
            a.extend(["--bootstrap".to_owned(), b.to_owned()]);
        }
        a
    };
    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let first = start(&as_strs(&args(&dirs[0], None)), "cairn daemon ready").await;
    let status = run(&dirs[0], &["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    let addr = status["listen_addrs"][0].as_str().unwrap().to_owned();
    let second = start(&as_strs(&args(&dirs[1], Some(&addr))), "cairn daemon ready").await;
    let mut victim = start(&as_strs(&args(&dirs[2], Some(&addr))), "cairn daemon ready").await;
    let victim_status = run(&dirs[2], &["status", "--json"]).await;
    let victim_status: serde_json::Value = serde_json::from_str(&stdout(&victim_status)).unwrap();
    let victim_id = victim_status["peer_id"].as_str().unwrap().to_owned();
    let knows =
        async |dir: &Path| stdout(&run(dir, &["peers", "--json"]).await).contains(&victim_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(knows(&dirs[0]).await && knows(&dirs[1]).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the victim never joined both tables"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    victim.start_kill().expect("SIGKILL");
    let _ = victim.wait().await;
    let killed = tokio::time::Instant::now();
    let deadline = killed + Duration::from_secs(90);
    while knows(&dirs[0]).await || knows(&dirs[1]).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a killed peer was still in a routing table 90 s later"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the killed peer left both tables {:?} after SIGKILL",
        killed.elapsed()
    );
    terminate(second).await;
    terminate(first).await;
}
