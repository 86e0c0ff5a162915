//! Bad input through the `cairn` binary, as a user (or a stranger on the API port) would give
//! it. Every case asserts the one-line error and exit code 1, that the daemon still serves, and
//! that nothing stored before was lost. (The same cases at the library level, and data made by
//! a hostile peer, are in `tests/bad_input.rs`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_tests::{Tmpfs, random_bytes};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::time::timeout;

use super::{STEP, assert_fails, assert_ok, cairn, run, stdout};

/// A lone `cairn daemon` on a data directory, its stderr collected.
struct Daemon {
    dir: PathBuf,
    child: Child,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts a daemon on `dir` (API and QUIC on 127.0.0.1, any port) with `extra` arguments,
    /// and waits (bounded) for its ready line.
    async fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = cairn()
            .arg("--data-dir")
            .arg(dir)
            .args(["daemon", "--api", "127.0.0.1:0"])
            .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn daemon");
        let stderr = super::collect_stderr(&mut child);
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = timeout(STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("cairn daemon ready") {
                    return true;
                }
            }
            false
        })
        .await;
        let daemon = Self {
            dir: dir.to_owned(),
            child,
            stderr,
        };
        assert_eq!(
            ready,
            Ok(true),
            "the daemon on {} never got ready; stderr: {}",
            dir.display(),
            daemon.stderr()
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        daemon
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The API address and token the daemon wrote.
    fn api(&self) -> (String, String) {
        let addr = std::fs::read_to_string(self.dir.join("api.addr")).unwrap();
        let token = std::fs::read_to_string(self.dir.join("api.token")).unwrap();
        (addr.trim().to_owned(), token.trim().to_owned())
    }

    /// `cairn --data-dir DIR args…` against this daemon.
    async fn run(&self, args: &[&str]) -> std::process::Output {
        run(&self.dir, args).await
    }

    /// Puts `bytes` as a file and returns its id.
    async fn put(&self, bytes: &[u8]) -> String {
        let input = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(input.path(), bytes).unwrap();
        let o = self.run(&["put", input.path().to_str().unwrap()]).await;
        assert_ok(&o);
        stdout(&o)
    }

    /// Asserts that `id` still reads back as `bytes`.
    async fn assert_serves(&self, id: &str, bytes: &[u8]) {
        let o = self.run(&["cat", id]).await;
        assert_ok(&o);
        assert!(o.stdout == bytes, "{id} no longer reads back whole");
    }

    /// SIGTERM, and a clean exit within a bound.
    async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the daemon stops within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "exit after SIGTERM: {status}");
    }
}

/// The chunk files of a data directory.
fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir.join("chunks")).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_missing_and_special_inputs() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let kept = random_bytes(200_000, 60);
    let kept_id = d.put(&kept).await;

    // Ids: a clear line, and what the user typed is echoed without its escape sequences.
    let o = d.run(&["get", "cairn1\u{1b}[2J\u{7}abc"]).await;
    assert_fails(&o, "malformed content id");
    assert!(
        !o.stderr.contains(&0x1b) && !o.stderr.contains(&0x07),
        "control characters reached the terminal"
    );
    assert_fails(
        &d.run(&["cat", "bafyoops"]).await,
        "should start with 'cairn1'",
    );
    let unknown = format!("cairn1{}", "ab".repeat(32));
    assert_fails(&d.run(&["cat", &unknown]).await, "no peer holds");
    assert_fails(
        &d.run(&["pin", "add", "cairn1zz"]).await,
        "malformed content id",
    );

    // A missing input file.
    let missing = root.path().join("missing.bin");
    assert_fails(
        &d.run(&["put", missing.to_str().unwrap()]).await,
        "no such file or directory",
    );

    // A /proc file says it is empty: it is read to its end, not stored empty.
    let version = std::fs::read("/proc/version").unwrap();
    let o = d.run(&["put", "/proc/version"]).await;
    assert_ok(&o);
    d.assert_serves(&stdout(&o), &version).await;

    // A FIFO with a writer.
    let fifo = root.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, b"through a pipe").unwrap())
    };
    let o = d.run(&["put", fifo.to_str().unwrap()]).await;
    assert_ok(&o);
    writer.join().unwrap();
    d.assert_serves(&stdout(&o), b"through a pipe").await;

    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_during_a_put_is_refused_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let kept = random_bytes(100_000, 61);
    let kept_id = d.put(&kept).await;
    let path = root.path().join("growing.log");
    std::fs::write(&path, random_bytes(30 << 20, 62)).unwrap();
    // Append while the put runs: the file cannot be read whole in one piece while it grows.
    let done = Arc::new(AtomicBool::new(false));
    let appender = {
        let (done, path) = (done.clone(), path.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            for _ in 0..200_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                f.write_all(&[b'x'; 512]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let o = d.run(&["put", path.to_str().unwrap()]).await;
    done.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert_fails(&o, "changed while it was being read");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(path.to_str().unwrap()),
        "the error names the file"
    );
    let pins = d.run(&["pin", "ls"]).await;
    assert_ok(&pins);
    assert_eq!(stdout(&pins), kept_id, "nothing half-read was pinned");
    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_as_output_are_written_to_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let data = random_bytes(700_000, 63);
    let id = d.put(&data).await;

    let o = d.run(&["get", &id, "-o", "/dev/null"]).await;
    assert_ok(&o);
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device(),
        "/dev/null is still a device"
    );

    let fifo = root.path().join("out.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = d.run(&["get", &id, "-o", fifo.to_str().unwrap()]).await;
    assert_ok(&o);
    assert!(reader.join().unwrap() == data, "the reader got the content");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let target = root.path().join("target.bin");
    std::fs::write(&target, b"old").unwrap();
    let link = root.path().join("link.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Through a link to an existing file: that file is replaced, with --force as any other.
    assert_fails(
        &d.run(&["get", &id, "-o", link.to_str().unwrap()]).await,
        "pass --force",
    );
    assert_ok(
        &d.run(&["get", &id, "-o", link.to_str().unwrap(), "--force"])
            .await,
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read(&target).unwrap() == data);

    let dangling = root.path().join("dangling");
    std::os::unix::fs::symlink(root.path().join("nowhere"), &dangling).unwrap();
    assert_fails(
        &d.run(&["get", &id, "-o", dangling.to_str().unwrap()]).await,
        "symbolic link to a missing file",
    );
    assert_fails(
        &d.run(&["get", &id, "-o", root.path().to_str().unwrap()])
            .await,
        "is a directory",
    );

    // An interrupted get of a dead process leaves a staging directory; the next get into the
    // same place removes it.
    let stale = root.path().join(format!(".cairn-get-{}-xyz", u32::MAX - 1));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("content"), b"partial").unwrap();
    let out = root.path().join("copy.bin");
    assert_ok(&d.run(&["get", &id, "-o", out.to_str().unwrap()]).await);
    assert!(
        !stale.exists(),
        "the abandoned partial download was removed"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_removes_its_partial_output() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let id = d.put(&random_bytes(96 << 20, 64)).await;
    let out_dir = root.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut get = cairn()
        .arg("--data-dir")
        .arg(&d.dir)
        .args(["get", &id, "-o"])
        .arg(out_dir.join("big.bin"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) for the staged output to appear, then freeze the daemon so the get is
    // surely in progress when it is interrupted.
    let staged = timeout(STEP, async {
        loop {
            let found = std::fs::read_dir(&out_dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".cairn-get-"));
            if found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(staged.is_ok(), "the get never staged its output");
    let daemon_pid = d.child.id().unwrap().to_string();
    let signal = |sig: &str, pid: &str| {
        std::process::Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
    };
    signal("-STOP", &daemon_pid);
    signal("-INT", &get.id().unwrap().to_string());
    let status = timeout(STEP, get.wait()).await;
    signal("-CONT", &daemon_pid);
    let status = status.expect("the get ends after Ctrl-C").unwrap();
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    get.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(err.contains("interrupted"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "an interrupted get left {left:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_emptied_index_is_rebuilt_and_everything_still_served() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    let d = Daemon::start(&dir, &[]).await;
    let data = random_bytes(3 << 20, 65);
    let id = d.put(&data).await;
    d.stop().await;
    for (what, damage) in [
        ("random bytes", random_bytes(4096, 66)),
        ("emptied", Vec::new()),
    ] {
        std::fs::write(dir.join("index.redb"), &damage).unwrap();
        let d = Daemon::start(&dir, &[]).await;
        d.assert_serves(&id, &data).await;
        let pins = d.run(&["pin", "ls"]).await;
        assert_ok(&pins);
        assert_eq!(stdout(&pins), id, "{what}: the pin survived");
        let warned = d.stderr();
        assert!(
            warned.contains("index") && warned.contains("rebuilt"),
            "{what}: the daemon says what it did: {warned}"
        );
        d.stop().await;
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with("index.redb.damaged-")),
        "the damaged index is kept aside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_corrupted_chunk_files_on_a_lone_node_fail_clearly() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    let d = Daemon::start(&dir, &[]).await;
    let before: Vec<PathBuf> = chunk_files(&dir);
    let victim = random_bytes(2 << 20, 67);
    let victim_id = d.put(&victim).await;
    let kept = random_bytes(300_000, 68);
    let kept_id = d.put(&kept).await;
    // A data chunk of the victim: a file that came with its put and is not its root manifest
    // (the root is the id) and not one of the kept file's.
    let victim_root = victim_id.trim_start_matches("cairn1").to_owned();
    let kept_root = kept_id.trim_start_matches("cairn1").to_owned();
    let mut candidates: Vec<PathBuf> = chunk_files(&dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != victim_root && name != kept_root
        })
        .filter(|p| std::fs::metadata(p).unwrap().len() > 40_000)
        .collect();
    candidates.sort();
    // The kept file is one chunk, so a large chunk not named by its id is the victim's.
    let corrupt = candidates.pop().expect("a data chunk of the victim");
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&corrupt, &bytes).unwrap();
    let out = root.path().join("victim.bin");
    let o = d
        .run(&["get", &victim_id, "-o", out.to_str().unwrap()])
        .await;
    assert_fails(&o, "is damaged on this node's disk");
    assert!(!out.exists(), "a failed get leaves nothing");
    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;

    // Deleted while the daemon was stopped: it says the chunk cannot be had, naming it.
    std::fs::remove_file(&corrupt).unwrap();
    let d = Daemon::start(&dir, &[]).await;
    let o = d
        .run(&["get", &victim_id, "-o", out.to_str().unwrap()])
        .await;
    let name = corrupt.file_name().unwrap().to_string_lossy().into_owned();
    assert_fails(&o, &name);
    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_put_clearly_and_loses_nothing() {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot mount an 8 MiB tmpfs as a data directory ({why}); needs root"
            );
            return;
        }
    };
    let d = Daemon::start(&fs.path().join("d"), &[]).await;
    let kept = random_bytes(500_000, 69);
    let kept_id = d.put(&kept).await;
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 3 << 20]).unwrap();
    let input = tempfile::tempdir().unwrap();
    let big = input.path().join("big.bin");
    std::fs::write(&big, random_bytes(6 << 20, 76)).unwrap();
    let o = d.run(&["put", big.to_str().unwrap()]).await;
    assert_fails(&o, "is full");
    d.assert_serves(&kept_id, &kept).await;
    std::fs::remove_file(&ballast).unwrap();
    let after = d.put(&random_bytes(400_000, 70)).await;
    assert!(after.starts_with("cairn1"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_over_quota_does_not_wedge_the_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    let d = Daemon::start(&dir, &["--quota", "8MiB"]).await;
    let kept = random_bytes(500_000, 71);
    let kept_id = d.put(&kept).await;
    // Two subdirectories: the second's files must not evict the first's before the root pins
    // them (which would pin a tree with files missing).
    let tree = root.path().join("tree");
    for (sub, n) in [("a", 7u64), ("b", 6)] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
        for i in 0..n {
            let bytes = random_bytes(1 << 20, 80 + i + if sub == "b" { 10 } else { 0 });
            std::fs::write(tree.join(sub).join(format!("f{i}")), bytes).unwrap();
        }
    }
    assert_fails(
        &d.run(&["put", tree.to_str().unwrap()]).await,
        "raise the quota",
    );
    assert!(
        d.put(&random_bytes(500_000, 72))
            .await
            .starts_with("cairn1")
    );
    d.stop().await;
    let d = Daemon::start(&dir, &["--quota", "8MiB"]).await;
    assert!(
        d.put(&random_bytes(500_000, 73))
            .await
            .starts_with("cairn1")
    );
    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_api_bodies_get_json_errors() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let kept = random_bytes(100_000, 74);
    let kept_id = d.put(&kept).await;
    let (addr, token) = d.api();
    // No connection reuse: the server closes a connection whose oversized body it did not read,
    // and a pooled client could send the next request on it as it closes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("http://{addr}/api/v0/{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("dir", b"{not json".to_vec(), 400),
        ("dir", vec![b' '; 9 << 20], 413),
        ("names", b"{\"id\": 5}".to_vec(), 422),
        (
            "dir",
            format!(
                "{{\"entries\": [{{\"name\": \"x\", \"kind\": \"file\", \"id\": \"cairn1{}\", \"size\": 18446744073709551615}}], \"root\": true}}",
                "ab".repeat(32)
            )
            .into_bytes(),
            400,
        ),
    ];
    for (path, body, status) in cases {
        let response = timeout(STEP, post(path, body)).await.unwrap().unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(json["error"].is_string(), "{json}");
    }
    d.assert_serves(&kept_id, &kept).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_half_open_clients_neither_starve_the_api_nor_block_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(&root.path().join("d"), &[]).await;
    let kept = random_bytes(100_000, 75);
    let kept_id = d.put(&kept).await;
    let (addr, _) = d.api();
    let mut stalled = Vec::new();
    for _ in 0..600 {
        let Ok(Ok(mut s)) = timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        else {
            continue;
        };
        let _ = s
            .write_all(b"GET /api/v0/status HTTP/1.1\r\nHost: x\r\n")
            .await;
        stalled.push(s);
    }
    assert!(stalled.len() > 300, "opened {} connections", stalled.len());
    let status = d.run(&["status"]).await;
    assert_ok(&status);
    d.assert_serves(&kept_id, &kept).await;
    // SIGTERM ends the daemon while those connections are still open.
    d.stop().await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut c = cairn();
    c.arg("--data-dir").arg(root.path().join("a")).args([
        "daemon",
        "--api",
        "127.0.0.1:0",
        "--listen",
        &listen,
    ]);
    let o = timeout(STEP, c.output()).await.unwrap().unwrap();
    assert_fails(&o, &listen);
    assert_fails(&o, "already in use");

    let api = format!("127.0.0.1:{port}");
    let mut c = cairn();
    c.arg("--data-dir")
        .arg(root.path().join("b"))
        .args(["daemon", "--api", &api])
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let o = timeout(STEP, c.output()).await.unwrap().unwrap();
    assert_fails(&o, &api);
    drop(taken);
}
