//! The daemon's HTTP server against slow and hostile clients, its JSON errors, and listen
//! addresses whose port is taken.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_node::http::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE, serve};
use cairn_node::manifest::{DirEntry, EntryKind};
use cairn_node::{Node, SpawnError};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const TOKEN: &str = "test-token";

/// A running API server for `node` on 127.0.0.1, and the means to stop it.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(node: &Node) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, node.clone(), TOKEN, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server; returns how long it took to end.
    pub(crate) async fn stop(self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.send(());
        timeout(SHUTDOWN_GRACE + Duration::from_secs(10), self.task)
            .await
            .expect("the server ends within its shutdown grace and a margin")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// A client that pools no connections, so that each attempt opens a fresh one.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends `request` until it gets an answer, for at most `bound`: while the server's connection
/// table is full it closes new connections at once, by design.
async fn answer_within(
    bound: Duration,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Response {
    let deadline = Instant::now() + bound;
    loop {
        match request().send().await {
            Ok(response) => return response,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no answer within {bound:?}; last error: {e}"
                );
                // No event tells a client that a slot is free again: poll, bounded above.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The soft limit on open files of this process, from /proc (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Opens up to `n` connections that each send half a request header and then stall.
async fn stalled_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(Ok(mut stream)) = timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        else {
            continue;
        };
        // The server closes connections beyond its limit at once; a failed write is expected.
        let _ = stream
            .write_all(b"GET /api/v0/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await;
        held.push(stream);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_the_api_or_block_shutdown() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let data = random_bytes(100_000, 81);
    let put = timeout(STEP, node.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    let server = Server::start(node).await;

    // Each stalled connection costs two descriptors in this process (client and server side);
    // keep well under the soft limit rather than raising it.
    let limit = open_file_limit().unwrap_or(1024);
    let n = 2000.min(limit.saturating_sub(300) / 2);
    assert!(n >= 300, "open file limit {limit} is too low for this test");
    let held = timeout(Duration::from_secs(60), stalled_connections(server.addr, n))
        .await
        .expect("opening the stalled connections is bounded");
    assert!(!held.is_empty());

    let http = client();
    let status = answer_within(Duration::from_secs(20), || {
        http.get(server.url("/api/v0/status")).bearer_auth(TOKEN)
    })
    .await;
    assert_eq!(status.status(), 200);
    let body: serde_json::Value = status.json().await.unwrap();
    assert_eq!(body["peer_id"], node.peer_id().to_string());

    let got = answer_within(Duration::from_secs(20), || {
        http.get(server.url(&format!("/c/{}", put.id)))
    })
    .await;
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().await.unwrap() == data,
        "the gateway served other bytes"
    );

    // Fresh stalled connections, well inside their header timeout, are open at the stop.
    let more = stalled_connections(server.addr, 50).await;
    assert!(!more.is_empty());
    let took = server.stop().await;
    assert!(
        took < SHUTDOWN_GRACE + Duration::from_secs(5),
        "shutdown took {took:?}"
    );
    drop((held, more));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let net = Testnet::new(1).await.unwrap();
    let server = Server::start(&net.nodes[0]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = timeout(HEADER_READ_TIMEOUT + Duration::from_secs(10), async {
        // hyper may answer the timeout with a 408 before closing; read until the close.
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the idle connection was not closed");
    assert!(
        started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
    server.stop().await;
    net.shutdown().await;
}

/// Asserts `response` has status `status` and a JSON `{"error": …}` body; returns the message.
async fn json_error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status, "{response:?}");
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
        .to_owned();
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "{message:?}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_mistake_is_a_json_4xx() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let server = Server::start(node).await;
    let http = client();
    let post = |path: &str| http.post(server.url(path)).bearer_auth(TOKEN);

    let bad_json = post("/api/v0/names")
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    let message = json_error(bad_json, 400).await;
    assert!(message.contains("send a JSON object"), "{message}");

    let wrong_shape = post("/api/v0/dir")
        .header("content-type", "application/json")
        .body("{\"not\": \"a list\"}")
        .send()
        .await
        .unwrap();
    let message = json_error(wrong_shape, 422).await;
    assert!(
        message.contains("send a JSON object {\"entries\""),
        "{message}"
    );

    let no_type = post("/api/v0/dir").body("[]").send().await.unwrap();
    let message = json_error(no_type, 415).await;
    assert!(message.contains("application/json"), "{message}");

    let huge = post("/api/v0/dir")
        .header("content-type", "application/json")
        .body(vec![b' '; cairn_node::http::MAX_JSON_BODY + 1])
        .send()
        .await
        .unwrap();
    json_error(huge, 413).await;

    let bad_query = post("/api/v0/put?part=maybe")
        .body("x")
        .send()
        .await
        .unwrap();
    json_error(bad_query, 400).await;

    let unknown = http.get(server.url("/no/such/route")).send().await.unwrap();
    json_error(unknown, 404).await;
    let unknown_api = http
        .get(server.url("/api/v0/nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    json_error(unknown_api, 404).await;
    let wrong_method = http
        .delete(server.url("/api/v0/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    json_error(wrong_method, 405).await;

    let put = timeout(STEP, node.put_bytes(b"named".to_vec()))
        .await
        .unwrap()
        .unwrap();
    for ttl in [0, 7 * 24 * 3600 + 1] {
        let response = post("/api/v0/names")
            .json(&serde_json::json!({ "id": put.id.to_string(), "ttl_secs": ttl }))
            .send()
            .await
            .unwrap();
        let message = json_error(response, 400).await;
        assert!(message.contains("send 1 to 604800"), "{message}");
    }

    let no_token = http.get(server.url("/api/v0/status")).send().await.unwrap();
    json_error(no_token, 401).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = http
            .get(server.url("/api/v0/status"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
    let wrong = http
        .get(server.url("/api/v0/status"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    json_error(wrong, 401).await;

    server.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_index_links_work_for_awkward_names() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let names = ["a #1?.txt", "50% off.txt", "été.txt", "<b>&amp;.txt"];
    let mut entries = Vec::new();
    let upload = node.begin_upload();
    for (i, name) in names.iter().enumerate() {
        let bytes = format!("file {i}").into_bytes();
        let size = bytes.len() as u64;
        let part = timeout(
            STEP,
            node.put_part(
                std::io::Cursor::new(bytes),
                Some(size),
                std::sync::Arc::new(|_| {}),
                &upload,
            ),
        )
        .await
        .unwrap()
        .unwrap();
        entries.push(DirEntry {
            name: (*name).to_owned(),
            kind: EntryKind::File,
            id: part.id.key(),
            size,
        });
    }
    let sub = timeout(STEP, node.put_dir_entries(entries, false, &upload))
        .await
        .unwrap()
        .unwrap();
    let sub_dir = DirEntry {
        name: "sub dir".into(),
        kind: EntryKind::Dir,
        id: sub.id.key(),
        size: sub.size,
    };
    let root = timeout(STEP, node.put_dir_entries(vec![sub_dir], true, &upload))
        .await
        .unwrap()
        .unwrap();
    let server = Server::start(node).await;
    let http = client();

    let index = http
        .get(server.url(&format!("/c/{}/sub%20dir/", root.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    let html = index.text().await.unwrap();
    assert!(html.contains("&lt;b&gt;&amp;amp;.txt"), "{html}");
    let hrefs: Vec<&str> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        // The entries' links, relative to the listing; not the breadcrumbs or the link up.
        .filter(|href| !href.starts_with('/') && *href != "../")
        .collect();
    assert_eq!(hrefs.len(), names.len(), "{html}");
    for href in hrefs {
        // The link works as a browser would send it: as written in the page, resolved
        // against the listing's URL.
        let url = server.url(&format!("/c/{}/sub%20dir/{href}", root.id));
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{href}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("file "), "{href}: {text}");
    }
    server.stop().await;
    net.shutdown().await;
}

/// The port of the first address of `node` using `protocol` ("tcp" or "udp").
fn port_of(node: &Node, protocol: &str) -> u16 {
    node.addrs()
        .iter()
        .find_map(|a| {
            let text = a.to_string();
            let parts: Vec<&str> = text.split('/').collect();
            let at = parts.iter().position(|p| *p == protocol)?;
            parts.get(at + 1)?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {protocol} address in {:?}", node.addrs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_whose_port_is_taken_fails_naming_it() {
    let net = Testnet::new(1).await.unwrap();
    let first = &net.nodes[0];
    for addr in [
        format!("/ip4/127.0.0.1/tcp/{}", port_of(first, "tcp")),
        format!("/ip4/127.0.0.1/udp/{}/quic-v1", port_of(first, "udp")),
    ] {
        let dir = net.scratch(&format!("second-{}", addr.replace('/', "_")));
        let spawned = timeout(
            STEP,
            Node::builder()
                .data_dir(&dir)
                .listen(addr.parse().unwrap())
                .local_network()
                .spawn(),
        )
        .await
        .unwrap();
        match spawned {
            Err(e @ SpawnError::Listen { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(&addr) && message.contains("already in use"),
                    "{message}"
                );
            }
            Err(e) => panic!("{addr}: wrong error: {e}"),
            Ok(node) => {
                node.shutdown().await;
                panic!("a second node listened on {addr}, which the first holds");
            }
        }
    }
    // An address of no interface here fails in libp2p's own bind: the reason is still words.
    for addr in ["/ip4/192.0.2.1/tcp/0", "/ip4/192.0.2.1/udp/0/quic-v1"] {
        let spawned = timeout(STEP, Node::builder().listen(addr.parse().unwrap()).spawn())
            .await
            .unwrap();
        match spawned {
            Err(e @ SpawnError::Listen { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(addr) && message.contains("no interface"),
                    "{message}"
                );
            }
            Err(e) => panic!("{addr}: wrong error: {e}"),
            Ok(node) => {
                node.shutdown().await;
                panic!("a node listened on {addr}, which is no address of this machine");
            }
        }
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_get_that_cannot_start_fails_before_the_headers() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let data = random_bytes(2 << 20, 90);
    let put = timeout(STEP, node.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    let cairn_node::Manifest::File { chunks, .. } = node.manifest(put.id).await.unwrap() else {
        panic!("a 2 MiB file is one file manifest");
    };
    // The first data chunk's file is gone and no peer has it.
    let hex = format!("{:x}", chunks[0].id);
    std::fs::remove_file(net.dirs[0].join("chunks").join(&hex[..2]).join(&hex)).unwrap();
    let server = Server::start(node).await;
    let response = timeout(
        STEP,
        client().get(server.url(&format!("/c/{}", put.id))).send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 502, "not a 200 that is cut short");
    let message = json_error(response, 502).await;
    assert!(
        message.contains(&hex),
        "the error names the chunk: {message}"
    );
    server.stop().await;
    net.shutdown().await;
}
