//! The gateway as a browser meets it: a directory's `index.html` or a readable listing, types
//! from names or sniffed from bytes, ranges, ETags and 304s, caching, the sandbox and nosniff
//! headers for content from strangers, the `Host` check against DNS rebinding, and a file that
//! fails midway aborting the connection instead of ending like a whole one.

use std::time::Duration;

use cairn_node::http::GATEWAY_CSP;
use cairn_tests::{STEP, Testnet, random_bytes};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tokio::time::timeout;

use super::http_server::Server;

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// A client as a browser is: it does not follow redirects by itself here, so the test sees them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn text(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(&name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_sites_listings_types_ranges_and_cache_headers_safely() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let tree = tempfile::tempdir().unwrap();
    let site = tree.path().join("site");
    std::fs::create_dir_all(site.join("docs/deeper")).unwrap();
    let index = "<!doctype html><title>hi</title><p id=x>static</p>";
    std::fs::write(site.join("index.html"), index).unwrap();
    std::fs::write(site.join("docs/notes.txt"), "some notes").unwrap();
    std::fs::write(site.join("docs/noext"), "plain words, no extension").unwrap();
    std::fs::write(site.join("docs/picture"), PNG).unwrap();
    std::fs::write(site.join("docs/deeper/x.bin"), random_bytes(3000, 5)).unwrap();
    let root = timeout(STEP, node.put_dir(&site))
        .await
        .unwrap()
        .unwrap()
        .id;
    let pic = timeout(STEP, node.put_bytes(PNG.to_vec()))
        .await
        .unwrap()
        .unwrap()
        .id;
    let server = Server::start(node).await;
    let http = browser();
    let get = |path: String| {
        let http = http.clone();
        let url = server.url(&path);
        async move { timeout(STEP, http.get(url).send()).await.unwrap().unwrap() }
    };

    // A directory's URL ends in '/', so that its pages' relative links work.
    let r = get(format!("/c/{root}")).await;
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(text(r.headers(), header::LOCATION), format!("/c/{root}/"));

    // A directory with index.html serves it, with the headers of content from strangers.
    let r = get(format!("/c/{root}/")).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(text(&h, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(text(&h, header::CONTENT_SECURITY_POLICY), GATEWAY_CSP);
    assert!(GATEWAY_CSP.starts_with("sandbox") && !GATEWAY_CSP.contains("allow-same-origin"));
    assert_eq!(text(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(
        text(&h, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.text().await.unwrap(), index);

    // One without: a listing with breadcrumbs, a link up, names, sizes and types.
    let r = get(format!("/c/{root}/docs/")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        text(r.headers(), header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let etag = text(r.headers(), header::ETAG).to_owned();
    let html = r.text().await.unwrap();
    for needle in [
        &format!("<a href=\"/c/{root}/\">"),
        "<span>docs</span>",
        "<a href=\"../\">../</a>",
        "<a href=\"deeper/\">deeper/</a>",
        "<a href=\"notes.txt\">notes.txt</a>",
        "10 B",
        "2.9 KiB",
        "text/plain",
        "directory",
        "4 entries",
    ] {
        assert!(
            html.contains(needle),
            "the listing lacks {needle:?}:\n{html}"
        );
    }
    let r = timeout(
        STEP,
        http.get(server.url(&format!("/c/{root}/docs/")))
            .header(header::IF_NONE_MATCH, &etag)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Types: from the name; sniffed from the bytes when the name says nothing, or there is no
    // name at all (a bare file id).
    for (path, want) in [
        (
            format!("/c/{root}/docs/notes.txt"),
            "text/plain; charset=utf-8",
        ),
        (format!("/c/{root}/docs/noext"), "text/plain; charset=utf-8"),
        (format!("/c/{root}/docs/picture"), "image/png"),
        (format!("/c/{pic}"), "image/png"),
        (
            format!("/c/{root}/docs/deeper/x.bin"),
            "application/octet-stream",
        ),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(text(r.headers(), header::CONTENT_TYPE), want, "{path}");
    }

    // Ranges (as a video player asks), typed by the file's start even from its middle.
    let r = timeout(
        STEP,
        http.get(server.url(&format!("/c/{pic}")))
            .header(header::RANGE, "bytes=4-7")
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        text(r.headers(), header::CONTENT_RANGE),
        format!("bytes 4-7/{}", PNG.len())
    );
    assert_eq!(text(r.headers(), header::CONTENT_TYPE), "image/png");
    assert_eq!(text(r.headers(), header::ACCEPT_RANGES), "bytes");
    assert_eq!(&r.bytes().await.unwrap()[..], &PNG[4..8]);

    // ETag and If-None-Match: a 304 without a body.
    let r = get(format!("/c/{pic}")).await;
    let etag = text(r.headers(), header::ETAG).to_owned();
    assert_eq!(etag, format!("\"{pic}\""));
    let r = timeout(
        STEP,
        http.get(server.url(&format!("/c/{pic}")))
            .header(header::IF_NONE_MATCH, format!("\"other\", {etag}"))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(text(r.headers(), header::ETAG), etag);
    assert!(r.bytes().await.unwrap().is_empty());

    // Under /n/ a name may move: revalidate every time.
    let (name, _) = timeout(STEP, node.publish_name(root, Duration::from_secs(600)))
        .await
        .unwrap()
        .unwrap();
    let r = get(format!("/n/{name}/docs/notes.txt")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(text(r.headers(), header::CACHE_CONTROL), "no-cache");
    assert_eq!(r.text().await.unwrap(), "some notes");

    // DNS rebinding: a page on a name that its owner points at 127.0.0.1 is refused.
    for (host, ok) in [
        ("evil.example", false),
        ("evil.example:5737", false),
        ("localhost", true),
        ("127.0.0.1", true),
    ] {
        let r = timeout(
            STEP,
            http.get(server.url(&format!("/c/{pic}")))
                .header(header::HOST, host)
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        if ok {
            assert_eq!(r.status(), 200, "{host}");
        } else {
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("DNS rebinding"),
                "{body}"
            );
        }
    }
    server.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_get_that_fails_midway_aborts_the_connection() {
    let net = Testnet::new(1).await.unwrap();
    let node = &net.nodes[0];
    let data = random_bytes(8 << 20, 91);
    let put = timeout(STEP, node.put_bytes(data.clone()))
        .await
        .unwrap()
        .unwrap();
    let cairn_node::Manifest::File { chunks, .. } = node.manifest(put.id).await.unwrap() else {
        panic!("an 8 MiB file is one file manifest");
    };
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    // A chunk past the first is gone and no peer has it: the headers are out by then.
    let lost = &chunks[chunks.len() - 1];
    let hex = format!("{:x}", lost.id);
    std::fs::remove_file(net.dirs[0].join("chunks").join(&hex[..2]).join(&hex)).unwrap();
    let server = Server::start(node).await;
    let r = timeout(
        STEP,
        browser().get(server.url(&format!("/c/{}", put.id))).send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), 200);
    let declared = r.content_length().unwrap();
    assert_eq!(declared, data.len() as u64);
    let mut body = r.bytes_stream();
    let mut got = 0u64;
    let mut failed = false;
    while let Some(piece) = timeout(STEP, futures::StreamExt::next(&mut body))
        .await
        .expect("the body ends or fails in time")
    {
        match piece {
            Ok(bytes) => got += bytes.len() as u64,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed && got < declared,
        "a client must see the cut: failed {failed}, {got} of {declared} bytes"
    );
    server.stop().await;
    net.shutdown().await;
}
