//! SIGKILL of a daemon in the middle of a large put, at several moments: every chunk file left
//! on disk hashes to its name, no temporary file survives the next start, the put's client
//! fails with a one-line error, and the daemon reopens and serves what was stored before.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn_tests::random_bytes;
use tokio::time::{Instant, timeout};

use super::{STEP, assert_ok, cairn, lone_daemon, run, start, stderr, stdout};

/// Chunk files under `dir/chunks` (two-level fan-out), with their names.
fn chunk_files(data_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(fans) = std::fs::read_dir(data_dir.join("chunks")) else {
        return out;
    };
    for fan in fans.flatten() {
        if !fan.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push((f.file_name().to_string_lossy().into_owned(), f.path()));
        }
    }
    out
}

/// Files in the store's temporary directory (a write caught mid-way).
fn tmp_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("tmp")).map_or(0, |d| d.count())
}

/// Asserts that every chunk file hashes to its name.
fn assert_chunks_sound(data_dir: &Path, when: &str) {
    for (name, path) in chunk_files(data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            name,
            "{when}: {} does not hash to its name ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_large_put_leaves_a_sound_store_that_serves_what_it_had() {
    let root = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = root.path().join("d");
    let dir = data_dir.to_str().unwrap();
    let args = lone_daemon(dir);
    // What was stored before: a small file, put and pinned by the first daemon.
    let daemon = start(&args, "cairn daemon ready").await;
    let small = random_bytes(700_000, 31);
    let small_path = root.path().join("small.bin");
    std::fs::write(&small_path, &small).unwrap();
    let put = run(&data_dir, &["put", small_path.to_str().unwrap()]).await;
    assert_ok(&put);
    let small_id = stdout(&put);
    let before = chunk_files(&data_dir).len();

    // Kill at several points of a put, by how many of its chunks are on disk: at the first,
    // early, half way, and near the end. Each round puts a large file of its own (about 160
    // chunks of 256 KiB on average), so that all its chunks are new.
    let large_path = root.path().join("large.bin");
    let mut large = Vec::new();
    let mut daemon = Some(daemon);
    for (round, new_chunks) in [1usize, 10, 70, 125].into_iter().enumerate() {
        let mut d = match daemon.take() {
            Some(d) => d,
            None => start(&args, "cairn daemon ready").await,
        };
        large = random_bytes(40 * 1024 * 1024, 32 + round as u64);
        std::fs::write(&large_path, &large).unwrap();
        let at_start = chunk_files(&data_dir).len();
        let mut client = cairn()
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["-q", "put", large_path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn put");
        // Wait (bounded) until the round's share of chunks is on disk.
        let deadline = Instant::now() + STEP;
        while chunk_files(&data_dir).len() < at_start + new_chunks {
            assert!(
                Instant::now() < deadline,
                "round {round}: the put stored {} of {new_chunks} chunks in {STEP:?}",
                chunk_files(&data_dir).len() - at_start
            );
            assert!(
                client.try_wait().unwrap().is_none(),
                "round {round}: the put ended before {new_chunks} of its chunks were on disk"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        d.start_kill().expect("SIGKILL the daemon");
        let status = timeout(STEP, d.wait()).await.unwrap().unwrap();
        assert!(!status.success(), "round {round}: killed, not exited");
        let out = timeout(STEP, client.wait_with_output())
            .await
            .expect("the put's client ends once its daemon is gone")
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "round {round}: {err}");
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "round {round}: the client says what went wrong in one line: {err}"
        );
        assert!(err.contains("stopped answering"), "round {round}: {err}");
        assert_chunks_sound(&data_dir, &format!("round {round}, after SIGKILL"));
    }

    // The daemon reopens: no temporary file left, every chunk sound, the small file served and
    // still pinned, and the large put goes through.
    let daemon = start(&args, "cairn daemon ready").await;
    assert_eq!(tmp_files(&data_dir), 0, "temporary files swept on open");
    assert_chunks_sound(&data_dir, "after the restart");
    assert!(chunk_files(&data_dir).len() >= before);
    let out = root.path().join("small.out");
    let got = run(&data_dir, &["get", &small_id, "-o", out.to_str().unwrap()]).await;
    assert_ok(&got);
    assert!(
        std::fs::read(&out).unwrap() == small,
        "the small file, byte-identical"
    );
    let pins = run(&data_dir, &["pin", "ls"]).await;
    assert_ok(&pins);
    assert!(
        stdout(&pins).contains(&small_id),
        "still pinned: {}",
        stdout(&pins)
    );
    let put = run(&data_dir, &["-q", "put", large_path.to_str().unwrap()]).await;
    assert_ok(&put);
    let large_id = stdout(&put);
    let out = root.path().join("large.out");
    let got = run(&data_dir, &["get", &large_id, "-o", out.to_str().unwrap()]).await;
    assert_ok(&got);
    assert!(
        std::fs::read(&out).unwrap() == large,
        "the large file, byte-identical"
    );
    super::terminate(daemon).await;
}
