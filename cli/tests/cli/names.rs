//! Named keys and names from the command line: `cairn key gen|ls|rm`, `cairn name publish
//! --key`, and `get`/`cat` of `NAME[/path]` and `ID/path` from another node of a devnet; and
//! each mistake a user makes, as a one-line error with exit code 1.

use std::path::Path;

use cairn_tests::random_bytes;
use tokio::time::timeout;

use super::{STEP, assert_fails, assert_ok, cairn, run, start, stdout, terminate};

/// The lines of a `cairn --json key ls`: one JSON object per key.
async fn keys(dir: &Path) -> Vec<serde_json::Value> {
    let o = run(dir, &["--json", "key", "ls"]).await;
    assert_ok(&o);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_names_and_name_paths_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let net = root.path().join("net");
    let devnet = start(
        &["devnet", "--nodes", "3", "--dir", net.to_str().unwrap()],
        "ready",
    )
    .await;
    let (owner, reader) = (net.join("node1"), net.join("node3"));

    // At first only `self`, the node's own name, as `status` shows it.
    let listed = keys(&owner).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["key"], "self");
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&run(&owner, &["--json", "status"]).await)).unwrap();
    assert_eq!(listed[0]["name"], status["name"]);

    // A second key: its name printed, listed after self, kept private on disk.
    let made = run(&owner, &["key", "gen", "blog"]).await;
    assert_ok(&made);
    let name = stdout(&made);
    assert!(name.starts_with("cairnname1"), "{name}");
    let text = run(&owner, &["key", "ls"]).await;
    assert_ok(&text);
    let lines: Vec<Vec<String>> = stdout(&text)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "self".to_owned(),
                status["name"].as_str().unwrap().to_owned()
            ],
            vec!["blog".to_owned(), name.clone()],
        ]
    );
    assert_eq!(keys(&owner).await[1]["name"], name.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&owner.join("keys")), 0o700);
        assert_eq!(mode(&owner.join("keys/blog")), 0o600);
    }

    // A directory, published under the new key; the name is what publish prints.
    let tree = root.path().join("site");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    let page = random_bytes(200_000, 31);
    std::fs::write(tree.join("docs/page.bin"), &page).unwrap();
    std::fs::write(tree.join("index.html"), b"<h1>hi</h1>").unwrap();
    let put = run(&owner, &["put", tree.to_str().unwrap()]).await;
    assert_ok(&put);
    let id = stdout(&put);
    let published = run(
        &owner,
        &["name", "publish", &id, "--key", "blog", "--ttl", "10m"],
    )
    .await;
    assert_ok(&published);
    assert_eq!(stdout(&published), name);
    let json = run(
        &owner,
        &[
            "--json", "name", "publish", &id, "--key", "blog", "--ttl", "3600",
        ],
    )
    .await;
    assert_ok(&json);
    let reply: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        (reply["name"].as_str(), reply["key"].as_str()),
        (Some(name.as_str()), Some("blog"))
    );

    // Another node resolves it, and gets and cats through it.
    let resolved = run(&reader, &["name", "resolve", &name]).await;
    assert_ok(&resolved);
    assert_eq!(stdout(&resolved), id);
    let cat = run(&reader, &["cat", &format!("{name}/docs/page.bin")]).await;
    assert_ok(&cat);
    assert!(cat.stdout == page, "cat NAME/path");
    let cat = run(&reader, &["cat", &format!("{id}/index.html")]).await;
    assert_ok(&cat);
    assert_eq!(cat.stdout, b"<h1>hi</h1>", "cat ID/path");
    // Without -o, a get of NAME/path writes the path's last segment in the current directory.
    let here = root.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let mut get = cairn();
    get.current_dir(&here)
        .arg("--data-dir")
        .arg(&reader)
        .args(["get", &format!("{name}/docs/page.bin")]);
    let got = timeout(STEP, get.output()).await.unwrap().unwrap();
    assert_ok(&got);
    assert_eq!(stdout(&got), "page.bin");
    assert!(std::fs::read(here.join("page.bin")).unwrap() == page);
    // The whole tree through the name.
    let copy = root.path().join("copy");
    assert_ok(&run(&reader, &["get", &name, "-o", copy.to_str().unwrap()]).await);
    assert!(std::fs::read(copy.join("docs/page.bin")).unwrap() == page);
    assert_eq!(
        std::fs::read(copy.join("index.html")).unwrap(),
        b"<h1>hi</h1>"
    );
    let sub = root.path().join("docs-copy");
    assert_ok(
        &run(
            &reader,
            &["get", &format!("{name}/docs"), "-o", sub.to_str().unwrap()],
        )
        .await,
    );
    assert!(std::fs::read(sub.join("page.bin")).unwrap() == page);

    // Mistakes: one line, exit code 1.
    assert_fails(
        &run(&owner, &["key", "gen", "blog"]).await,
        "a key named 'blog' already exists",
    );
    assert_fails(
        &run(&owner, &["key", "gen", "self"]).await,
        "already exists",
    );
    assert_fails(
        &run(&owner, &["key", "gen", ".hidden"]).await,
        "not a valid key name",
    );
    assert_fails(
        &run(&owner, &["key", "gen", "a/b"]).await,
        "not a valid key name",
    );
    assert_fails(
        &run(&owner, &["key", "gen", &"k".repeat(65)]).await,
        "at most 64",
    );
    assert_fails(
        &run(&owner, &["name", "publish", &id, "--key", "nope"]).await,
        "no key named 'nope'",
    );
    assert_fails(
        &run(&owner, &["name", "publish", &id, "--ttl", "8d"]).await,
        "--ttl: a name's lifetime must be 1s to 7d",
    );
    assert_fails(
        &run(&owner, &["name", "publish", &id, "--ttl", "10 minutes"]).await,
        "is not a duration",
    );
    assert_fails(
        &run(&reader, &["get", "cairnname1zz"]).await,
        "not a cairn name",
    );
    assert_fails(
        &run(&reader, &["name", "resolve", "cairnname1zz"]).await,
        "not a cairn name",
    );
    assert_fails(
        &run(&reader, &["cat", &format!("{name}/docs/missing.txt")]).await,
        "not found in directory",
    );
    let nobody = format!("cairnname1{}", "ab".repeat(32));
    assert_fails(
        &run(&reader, &["get", &nobody]).await,
        "no peer holds a record",
    );
    assert_fails(
        &run(&reader, &["get", "bafy/x"]).await,
        "should start with 'cairn1'",
    );
    assert_fails(
        &run(&owner, &["key", "rm", "self"]).await,
        "cannot be removed",
    );

    // Removed: gone from the list and the disk; self stays.
    let rm = run(&owner, &["key", "rm", "blog"]).await;
    assert_ok(&rm);
    assert!(
        stdout(&rm).starts_with("removed key blog"),
        "{}",
        stdout(&rm)
    );
    assert!(!owner.join("keys/blog").exists());
    assert_fails(
        &run(&owner, &["key", "rm", "blog"]).await,
        "no key named 'blog'",
    );
    assert_fails(
        &run(&owner, &["name", "publish", &id, "--key", "blog"]).await,
        "no key named 'blog'",
    );
    let left = keys(&owner).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], status["name"]);
    terminate(devnet).await;
}
