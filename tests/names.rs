//! Names people can use: a second key on a node, a name published under it and read from
//! another node, `NAME/path` into a directory through the library and the gateway, the
//! mistakes a user makes, and a named key's name renewed through a restart of every node.

use std::time::Duration;

use cairn_node::http::serve;
use cairn_node::{ContentPath, EntryKind, KeyError, KeyName, NameError, ResolveError, TtlError};
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::timeout;

const TOKEN: &str = "names-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_under_a_second_key_resolves_elsewhere_and_leads_into_a_directory() {
    let net = Testnet::new(5).await.expect("testnet");
    let (owner, reader) = (&net.nodes[1], &net.nodes[4]);

    // A second key beside `self`, which is the node's own name as before.
    let site: KeyName = "my-site.v2".parse().unwrap();
    let own = owner.name();
    let made = timeout(STEP, owner.generate_key(&site))
        .await
        .unwrap()
        .expect("a new key");
    assert_ne!(made.name, own, "a new key has a name of its own");
    let keys = owner.keys();
    let listed: Vec<(&str, _)> = keys.iter().map(|k| (k.key.as_str(), k.name)).collect();
    assert_eq!(listed, [("self", own), ("my-site.v2", made.name)]);
    assert_eq!(owner.key(&site).unwrap(), made);

    // A directory, published under the new key.
    let tree = net.scratch("tree");
    std::fs::create_dir_all(tree.join("docs/deep")).unwrap();
    let page = random_bytes(300_000, 21);
    std::fs::write(tree.join("index.html"), b"<h1>hello</h1>").unwrap();
    std::fs::write(tree.join("docs/deep/page.bin"), &page).unwrap();
    let put = timeout(STEP, owner.put_dir(&tree))
        .await
        .unwrap()
        .expect("put the tree");
    let (name, stored) = timeout(
        STEP,
        owner.publish_name_under(&site, put.id, Duration::from_secs(3600)),
    )
    .await
    .unwrap()
    .expect("publish under the second key");
    assert_eq!(name, made.name);
    assert!(stored > 0, "the record reached peers");

    // Another node reads it, and follows NAME/path into the directory.
    let resolved = timeout(STEP, reader.resolve_name(name))
        .await
        .unwrap()
        .expect("resolves from another node");
    assert_eq!(resolved, put.id);
    let path: ContentPath = format!("{name}/docs/deep/page.bin").parse().unwrap();
    let file = timeout(STEP, reader.resolve_path(&path))
        .await
        .unwrap()
        .expect("NAME/path resolves");
    assert_eq!((file.kind, file.size), (EntryKind::File, page.len() as u64));
    let bytes = timeout(STEP, reader.get_bytes(file.id))
        .await
        .unwrap()
        .expect("get what NAME/path leads to");
    assert!(bytes == page, "NAME/path gives the file's bytes");
    let by_id: ContentPath = format!("{}/docs/deep/page.bin", put.id).parse().unwrap();
    let same = timeout(STEP, reader.resolve_path(&by_id))
        .await
        .unwrap()
        .expect("ID/path resolves");
    assert_eq!(same.id, file.id);
    let dir = timeout(
        STEP,
        reader.resolve_path(&format!("{name}/docs/").parse().unwrap()),
    )
    .await
    .unwrap()
    .expect("NAME/dir/ resolves");
    assert_eq!(dir.kind, EntryKind::Dir);

    // The reader's gateway serves the name, resolving it at each request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, reader.clone(), TOKEN, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let get = async |path: String| {
        let response = timeout(STEP, http.get(format!("http://{addr}{path}")).send())
            .await
            .expect("the gateway answers")
            .expect("request");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body").to_vec())
    };
    let (status, body) = get(format!("/n/{name}/docs/deep/page.bin")).await;
    assert_eq!(status, 200);
    assert!(body == page, "the gateway serves NAME/path");
    let (status, body) = get(format!("/n/{name}/index.html")).await;
    assert_eq!((status, body.as_slice()), (200, &b"<h1>hello</h1>"[..]));
    // The root holds an index.html: that is what it serves.
    let (status, body) = get(format!("/n/{name}/")).await;
    assert_eq!((status, body.as_slice()), (200, &b"<h1>hello</h1>"[..]));
    // A directory without one lists its entries, its breadcrumbs leading back through the name.
    let (status, body) = get(format!("/n/{name}/docs/")).await;
    assert_eq!(status, 200);
    let index = String::from_utf8(body).unwrap();
    assert!(
        index.contains(&format!("href=\"/n/{name}/\"")) && index.contains("href=\"deep/\""),
        "the index links through the name: {index}"
    );
    // Without the slash: redirected to it (followed here), so relative links work.
    let (status, body) = get(format!("/n/{name}/docs")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().contains("href=\"deep/\""));
    // Mistakes: a name nobody published, a malformed one, a path that is not there.
    let nobody = format!("cairnname1{}", "ab".repeat(32));
    for (path, code, needle) in [
        (format!("/n/{nobody}"), 404, "no peer holds a record"),
        (format!("/n/{nobody}/a.txt"), 404, "no peer holds a record"),
        ("/n/cairnname1nothex".to_owned(), 400, "not a cairn name"),
        (format!("/n/{name}/nope.txt"), 404, "not found"),
    ] {
        let (status, body) = get(path.clone()).await;
        assert_eq!(status, code, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = v["error"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // The library's answers to a user's mistakes.
    assert!(matches!(
        owner.generate_key(&site).await,
        Err(KeyError::Exists(_))
    ));
    assert!(matches!(
        owner.generate_key(&KeyName::self_key()).await,
        Err(KeyError::Exists(_))
    ));
    let unknown: KeyName = "nobody".parse().unwrap();
    let err = owner
        .publish_name_under(&unknown, put.id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, NameError::Key(KeyError::Unknown(_))), "{err}");
    assert!(err.to_string().contains("no key named 'nobody'"), "{err}");
    for ttl in [Duration::ZERO, Duration::from_secs(7 * 86_400 + 1)] {
        let err = owner
            .publish_name_under(&site, put.id, ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NameError::Ttl(TtlError::OutOfRange(_))),
            "{err}"
        );
    }
    assert!(matches!(
        owner.remove_key(&KeyName::self_key()).await,
        Err(KeyError::RemoveSelf)
    ));
    let err = timeout(STEP, reader.resolve_path(&nobody.parse().unwrap()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, ResolveError::Name(NameError::NotFound(_))),
        "{err}"
    );

    // Removed: gone from the list and from disk; the node's own name stays.
    let removed = owner.remove_key(&site).await.expect("remove");
    assert_eq!(removed, made);
    assert_eq!(owner.keys().len(), 1);
    assert_eq!(owner.name(), own);
    assert!(!net.dirs[1].join("keys").join("my-site.v2").exists());
    net.shutdown().await;
}

/// A name under a named key lives as the node's own name does: its key survives a restart of
/// every node on its data directory, the name is published again and resolves, and the
/// renewals the engine asks for at half its life (here 10 s) are signed with that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_keys_name_survives_a_restart_and_is_renewed() {
    let ttl = Duration::from_secs(10);
    let mut net = Testnet::new(5).await.expect("testnet");
    let owner = 3;
    let key: KeyName = "photos".parse().unwrap();
    let made = timeout(STEP, net.nodes[owner].generate_key(&key))
        .await
        .unwrap()
        .expect("key");
    let own = net.nodes[owner].name();
    let put = timeout(STEP, net.nodes[owner].put_bytes(random_bytes(40_000, 22)))
        .await
        .unwrap()
        .expect("put");
    let (name, _) = timeout(STEP, net.nodes[owner].publish_name_under(&key, put.id, ttl))
        .await
        .unwrap()
        .expect("publish");
    let first = net.nodes[0]
        .get_record(name.key())
        .await
        .unwrap()
        .expect("the record is out there");

    net.restart_all().await.expect("every node again");
    let seed = net.nodes[0].addrs()[0].clone();
    // The same keys and names after the restart.
    let again = &net.nodes[owner];
    assert_eq!(again.name(), own, "the self name is kept");
    assert_eq!(again.key(&key).expect("the key is kept"), made);

    // Published again at the start, then renewed by the engine's request at half its life:
    // two newer versions in turn, the second signed by the driver with the named key.
    let newer = async |than: u64| {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Ok(Some(r)) = net.nodes[1].get_record(name.key()).await
                && r.sequence > than
            {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no newer record of the named key's name seen in {STEP:?}"
            );
            // Polled: nothing tells another node that a record was renewed.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let republished = newer(first.sequence).await;
    let renewed = newer(republished.sequence).await;
    assert_eq!(renewed.public_key, name.public_key());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    renewed
        .verify(cairn_dht::Timestamp::from_unix(now))
        .expect("signed with the named key");
    assert!(renewed.expires > first.expires);
    assert_eq!(
        renewed.expires.as_micros() - renewed.sequence,
        ttl.as_micros() as u64
    );
    // A node that joins now resolves the name.
    let late = net.scratch("late");
    let n = net
        .spawn_on(late, Some(seed.clone()))
        .await
        .expect("late node");
    let resolved = timeout(STEP, net.nodes[n].resolve_name(name))
        .await
        .unwrap()
        .expect("resolves after the restart");
    assert_eq!(resolved, put.id);
    net.shutdown().await;
}
