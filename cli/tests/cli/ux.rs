//! The command line as people and scripts meet it: `ls`, `get`'s naming, `--force` and
//! `-o -`, NDJSON and JSON errors under `--json`, `peers` and `pins` with nothing to show,
//! human sizes in `status`, an example in every command's help with the global options listed
//! once, and `devnet` refusing options it does not use.

use super::{assert_fails, assert_ok, cairn, lone_daemon, run, start, stderr, stdout, terminate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_names_refuses_lists_and_speaks_json() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let daemon = start(&lone_daemon(dir.to_str().unwrap()), "cairn daemon ready").await;

    // A lone node: `peers` says so in words, and prints nothing under --json.
    let o = run(&dir, &["peers"]).await;
    assert_ok(&o);
    assert!(stdout(&o).starts_with("no peers:"), "{}", stdout(&o));
    let o = run(&dir, &["--json", "peers"]).await;
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    let o = run(&dir, &["pin", "ls"]).await;
    assert!(
        stdout(&o).starts_with("no pinned content"),
        "{}",
        stdout(&o)
    );

    // A tree put, listed, and a file in it got by path.
    let tree = root.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("notes.txt"), "first notes").unwrap();
    std::fs::write(tree.join("sub/big.bin"), vec![7u8; 5000]).unwrap();
    let put = run(&dir, &["put", tree.to_str().unwrap()]).await;
    assert_ok(&put);
    let id = stdout(&put);
    let summary = stderr(&put);
    assert!(
        summary.starts_with("put ") && summary.contains(" in ") && summary.contains("/s)"),
        "the put ends with a summary line: {summary}"
    );
    let ls = run(&dir, &["ls", &id]).await;
    assert_ok(&ls);
    let lines: Vec<String> = stdout(&ls).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("notes.txt") && lines[0].contains("11 B"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("sub/") && lines[1].contains("4.88 KiB"),
        "{lines:?}"
    );
    let ls = run(&dir, &["--json", "ls", &format!("{id}/sub")]).await;
    let entries: Vec<serde_json::Value> = stdout(&ls)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["name"], "big.bin");
    assert_eq!(entries[0]["size"], 5000);

    // `get ID/path` keeps the file's own name, in the current directory.
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut get = cairn();
    get.current_dir(&work)
        .arg("--data-dir")
        .arg(&dir)
        .args(["get", &format!("{id}/notes.txt")]);
    let o = get.output().await.unwrap();
    assert_ok(&o);
    assert_eq!(
        std::fs::read_to_string(work.join("notes.txt")).unwrap(),
        "first notes"
    );
    // An existing file is not replaced without --force, and is left as it was.
    let out = work.join("notes.txt");
    std::fs::write(&out, "mine, keep me").unwrap();
    let target = format!("{id}/notes.txt");
    let o = run(&dir, &["get", &target, "-o", out.to_str().unwrap()]).await;
    assert_fails(&o, "already exists; pass --force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine, keep me");
    let o = run(
        &dir,
        &["get", &target, "-o", out.to_str().unwrap(), "--force"],
    )
    .await;
    assert_ok(&o);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "first notes");
    // `-o -` is standard output, not a file named "-".
    let mut get = cairn();
    get.current_dir(&work)
        .arg("--data-dir")
        .arg(&dir)
        .args(["get", &target, "-o", "-"]);
    let o = get.output().await.unwrap();
    assert_ok(&o);
    assert_eq!(o.stdout, b"first notes");
    assert!(!work.join("-").exists());
    let o = run(&dir, &["get", &id, "-o", "-"]).await;
    assert_fails(&o, "is a directory");

    // --json: one object per result, and errors as a JSON object on stderr.
    let o = run(&dir, &["pin", "add", &id]).await;
    assert_ok(&o);
    let o = run(&dir, &["--json", "pin", "ls"]).await;
    let pin: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pin["id"], id.as_str());
    let o = run(&dir, &["--json", "get", "cairn1nonsense"]).await;
    assert_eq!(o.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_str(&stderr(&o))
        .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {}", stderr(&o)));
    assert!(
        err["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{err}"
    );

    // Human sizes in status, exact bytes under --json.
    let o = run(&dir, &["status"]).await;
    let text = stdout(&o);
    let stored = text.lines().find(|l| l.starts_with("stored:")).unwrap();
    assert!(
        stored.contains("KiB") && stored.contains("10.00 GiB quota"),
        "{stored}"
    );
    let o = run(&dir, &["--json", "status"]).await;
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(s["stored_bytes"].as_u64().unwrap() > 5000, "{s}");
    terminate(daemon).await;
}

#[tokio::test]
async fn every_command_has_an_example_and_global_options_are_listed_once() {
    let top = cairn().arg("--help").output().await.unwrap();
    let top = String::from_utf8_lossy(&top.stdout).to_string();
    assert!(
        top.contains("Global options (for every command):") && top.contains("--data-dir <DIR>")
    );
    for command in [
        "daemon", "put", "get", "cat", "ls", "ui", "pin", "name", "key", "peers", "invite",
        "status", "service", "health", "gc", "devnet",
    ] {
        let help = cairn().args([command, "--help"]).output().await.unwrap();
        assert!(help.status.success(), "{command} --help fails");
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        let own = help.split("Global options").next().unwrap();
        assert!(
            help.contains("Example") || help.contains("Commands:"),
            "`cairn {command} --help` has no example:\n{help}"
        );
        assert!(
            !own.contains("--data-dir <DIR>"),
            "`cairn {command} --help` repeats the global options:\n{help}"
        );
    }
    for sub in [
        ["pin", "add"],
        ["key", "gen"],
        ["name", "publish"],
        ["service", "install"],
    ] {
        let help = cairn().args(sub).arg("--help").output().await.unwrap();
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        assert!(help.contains("Example"), "`cairn {sub:?} --help`:\n{help}");
    }
}

#[tokio::test]
async fn devnet_refuses_options_it_does_not_use() {
    for (flag, value) in [
        ("--data-dir", "/tmp/x"),
        ("--api", "127.0.0.1:1"),
        ("--config", "/tmp/x.toml"),
    ] {
        let o = cairn()
            .args([flag, value, "devnet"])
            .output()
            .await
            .unwrap();
        assert_fails(&o, &format!("devnet does not use {flag}"));
    }
}
