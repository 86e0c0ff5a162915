//! `cairn_node::api::Client` against real daemons' APIs on a loopback network: a directory tree
//! put through one node's API comes back byte-identical through another's, every typed reply
//! decodes what the server sends, and failures are the errors they should be.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_node::api::{Client, Error, GcBody};
use cairn_node::http::serve;
use cairn_node::{ContentId, GetError, Node, Progress, ProgressFn};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::timeout;

const TOKEN: &str = "client-test-token";

/// An API server for `node` on 127.0.0.1, stopped by dropping `stop`.
async fn serve_api(node: &Node) -> (Client, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, node.clone(), TOKEN, async {
        let _ = stopped.await;
    }));
    (Client::new(addr, TOKEN).unwrap(), stop)
}

/// Every file under `root`, by path relative to it, with its bytes (directories as `None`).
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut open = vec![root.to_owned()];
    // Bounded: the trees here are a few dozen entries.
    while let Some(dir) = open.pop() {
        assert!(found.len() < 10_000, "runaway walk");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                found.insert(rel, None);
                open.push(path);
            } else {
                found.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// Writes a small tree: nested directories, an empty file and one, an empty directory, and a
/// file of several chunks.
fn write_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("top.txt"), b"at the top\n").unwrap();
    std::fs::write(root.join("a/nothing"), b"").unwrap();
    std::fs::write(root.join("a/b/mid.bin"), random_bytes(70_000, seed)).unwrap();
    std::fs::write(root.join("a/b/c/big.bin"), random_bytes(3 << 20, seed + 1)).unwrap();
}

/// A progress callback that keeps the last `done` it was told, and checks it never goes back.
fn last_done() -> (ProgressFn, Arc<AtomicU64>) {
    let last = Arc::new(AtomicU64::new(0));
    let seen = last.clone();
    let progress: ProgressFn = Arc::new(move |p: Progress| {
        let before = seen.swap(p.done, Ordering::Relaxed);
        assert!(
            p.done >= before,
            "progress went back from {before} to {}",
            p.done
        );
    });
    (progress, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_put_through_one_daemon_comes_back_whole_through_another() {
    let net = Testnet::new(3).await.unwrap();
    let (first, _stop_first) = serve_api(&net.nodes[0]).await;
    let (last, _stop_last) = serve_api(&net.nodes[2]).await;
    let input = net.scratch("input");
    write_tree(&input, 41);
    let total: u64 = tree(&input)
        .values()
        .flatten()
        .map(|b| b.len() as u64)
        .sum();

    // On another task: the client's futures are Send, as an app's runtime needs.
    let (progress, put_done) = last_done();
    let put = {
        let (client, input) = (first.clone(), input.clone());
        tokio::spawn(async move { client.put_path(&input, progress).await })
    };
    let put = timeout(STEP, put).await.unwrap().unwrap().unwrap();
    assert_eq!(put.size, total);
    assert_eq!(
        put_done.load(Ordering::Relaxed),
        total,
        "put progress ends at the total"
    );
    assert!(put.chunks > 5, "files and directories were stored: {put:?}");
    let id: ContentId = put.id.parse().unwrap();

    let out = net.scratch("out").join("copy");
    let (progress, get_done) = last_done();
    let got = timeout(STEP, last.get_to_path(id, &out, progress))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.files, 4);
    assert_eq!(got.size, total);
    assert_eq!(get_done.load(Ordering::Relaxed), total);
    assert_eq!(
        tree(&out),
        tree(&input),
        "the tree came back byte-identical"
    );

    // A path inside it, resolved by the daemon, streamed.
    let inner = last
        .resolve_path(&format!("{id}/a/b/mid.bin").parse().unwrap())
        .await
        .unwrap();
    let listing = last.ls(inner).await.unwrap();
    assert_eq!((listing.kind.as_str(), listing.size), ("file", 70_000));
    let mut bytes = Vec::new();
    let mut stream = std::pin::pin!(last.get_stream(inner).await.unwrap());
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        bytes.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(bytes, random_bytes(70_000, 41));

    // An existing directory in the way is refused, and nothing in it is touched.
    let refused = last
        .get_to_path(id, &out, cairn_node::api::no_progress())
        .await;
    assert!(
        matches!(refused, Err(Error::Get(GetError::Output(_)))),
        "{refused:?}"
    );
    assert_eq!(tree(&out), tree(&input));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_reply_decodes_what_the_daemon_sends() {
    let net = Testnet::new(2).await.unwrap();
    let (client, _stop) = serve_api(&net.nodes[0]).await;
    let node = &net.nodes[0];

    let status = client.status().await.unwrap();
    assert_eq!(status.peer_id, node.peer_id().to_string());
    assert_eq!(status.connected_peers, 1);
    let peers = client.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, net.nodes[1].peer_id().to_string());
    assert!(peers[0].connected && !peers[0].relayed);
    let invite = client.invite().await.unwrap();
    assert_eq!(invite.peer_id, status.peer_id);
    assert!(!invite.addrs.is_empty());

    let file = net.scratch("in").join("one.bin");
    std::fs::write(&file, random_bytes(10_000, 7)).unwrap();
    let put = client
        .put_path(&file, cairn_node::api::no_progress())
        .await
        .unwrap();
    let id: ContentId = put.id.parse().unwrap();
    assert_eq!(client.pins().await.unwrap(), vec![put.id.clone()]);
    assert!(
        !client.pin(id, true).await.unwrap().changed,
        "already pinned"
    );
    assert!(client.pin(id, false).await.unwrap().changed);
    assert!(client.pins().await.unwrap().is_empty());
    let health = client.health(id).await.unwrap();
    assert_eq!(health.content, put.id);
    assert_eq!(health.chunks, health.copies.len());
    let gc = client
        .gc(GcBody {
            dry_run: true,
            keep_bytes: 0,
        })
        .await
        .unwrap();
    assert!(gc.dry_run);

    let key = "album".parse().unwrap();
    let made = client.generate_key(&key).await.unwrap();
    assert!(client.keys().await.unwrap().contains(&made));
    let published = client
        .publish(id, Some(&key), std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(published.name, made.name);
    let resolved = client
        .resolve_name(&published.name.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.id, put.id);
    assert_eq!(client.remove_key(&key).await.unwrap(), made);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_the_errors_they_should_be() {
    let net = Testnet::new(1).await.unwrap();
    let (client, stop) = serve_api(&net.nodes[0]).await;

    let wrong = client.clone().with_token("not-the-token");
    let refused = wrong.status().await;
    assert!(matches!(refused, Err(Error::Token { .. })), "{refused:?}");

    // Content no peer has: the daemon's own error, with its status.
    let unknown = ContentId::from_key(cairn_node::dht::Key::hash(b"nobody put this"));
    match client.ls(unknown).await {
        Err(Error::Daemon { status, message }) => {
            assert!((400..600).contains(&status), "{status}");
            assert!(message.contains(&unknown.to_string()), "{message}");
        }
        other => panic!("expected the daemon's error, got {other:?}"),
    }

    // A missing input is named before anything is sent.
    let missing = net.scratch("in").join("absent");
    let put = client
        .put_path(&missing, cairn_node::api::no_progress())
        .await;
    assert!(
        matches!(&put, Err(Error::Put(cairn_node::PutError::NotFound(p))) if *p == missing),
        "{put:?}"
    );

    // The daemon gone: a clear "no daemon" error, naming where it was looked for.
    drop(stop);
    let target = client.target().to_owned();
    let mut gone = client.status().await;
    // The server stops accepting once it sees the stop: bounded wait for that event.
    for _ in 0..50 {
        if matches!(gone, Err(Error::NoDaemon(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        gone = client.status().await;
    }
    match gone {
        Err(e @ Error::NoDaemon(_)) => {
            let text = e.to_string();
            assert!(
                text.contains(&target) && text.contains("cairn daemon"),
                "{text}"
            );
        }
        other => panic!("expected no daemon, got {other:?}"),
    }
    net.shutdown().await;
}

/// A daemon whose listing of a subdirectory contradicts the entry that names it (another size):
/// the client refuses the tree and writes nothing, as the node does with a peer's manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_contradicts_its_entry_is_refused_and_nothing_is_written() {
    use axum::extract::Path as UrlPath;
    use axum::routing::get;
    use cairn_node::api::{FileCount, Listing, ListingItem};

    let root = ContentId::from_key(cairn_node::dht::Key::hash(b"root"));
    let sub = ContentId::from_key(cairn_node::dht::Key::hash(b"sub"));
    let ls = move |UrlPath(id): UrlPath<String>| async move {
        let listing = if id == root.to_string() {
            Listing {
                kind: "dir".into(),
                size: 5,
                entries: vec![ListingItem {
                    name: "sub".into(),
                    kind: "dir".into(),
                    id: sub.to_string(),
                    size: 5,
                }],
            }
        } else {
            // The entry said 5 bytes under it.
            Listing {
                kind: "dir".into(),
                size: 99,
                entries: Vec::new(),
            }
        };
        axum::Json(listing)
    };
    let app = axum::Router::new().route("/api/v0/ls/{id}", get(ls)).route(
        "/api/v0/count/{id}",
        get(|| async { axum::Json(FileCount { files: 0 }) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let client = Client::new(addr, "token").unwrap();
    let got = timeout(
        STEP,
        client.get_to_path(root, &out, cairn_node::api::no_progress()),
    )
    .await
    .expect("the get ends");
    assert!(
        matches!(&got, Err(Error::Get(GetError::Manifest { content, .. })) if *content == sub),
        "{got:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing is left behind"
    );
    server.abort();
}
