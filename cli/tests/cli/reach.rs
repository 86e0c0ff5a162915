//! Issue 13: daemons that find and reach each other as they would on the real internet — two
//! nodes behind their own NAT routers meeting through a public relay and a DHT, two on one LAN
//! finding each other by mDNS, invites, and an address that survives a restart.
//!
//! The networks are Linux network namespaces built by each test (see [`super::netns`]), with
//! documentation and private address ranges only; the invite test runs on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_tests::random_bytes;

use super::netns::{HOST, Lab, NatKind, NsDaemon, available, run_in, sh};

/// Longest a node behind NAT may take to learn it is private and hold a relay reservation.
const RELAYED_BOUND: Duration = Duration::from_secs(90);
/// Longest hole punching may take to make a relayed connection direct (DCUtR tries three
/// times, 5 s apart).
const PUNCH_BOUND: Duration = Duration::from_secs(30);
/// Longest two daemons may take to list each other as peers.
const MEET_BOUND: Duration = Duration::from_secs(60);
/// Longest a daemon whose bootstrap peer was down may take to join it once it is up: the engine
/// tries its seeds again 1 s, 2 s, 4 s … apart, capped at a minute, so a peer that comes up
/// after `DOWN_FOR` is tried again within the next doubling.
const LATE_JOIN_BOUND: Duration = Duration::from_secs(30);
/// How long the bootstrap peer stays down in the late-join test.
const DOWN_FOR: Duration = Duration::from_secs(6);

fn peer_listed(peers: &serde_json::Value, peer_id: &str) -> bool {
    peers
        .as_array()
        .is_some_and(|l| l.iter().any(|p| p["peer_id"] == peer_id))
}

/// The port of the first QUIC address in `addrs`.
fn quic_port(addrs: &[String]) -> u16 {
    addrs
        .iter()
        .filter(|a| a.contains("/quic-v1"))
        .find_map(|a| a.split('/').nth(4)?.parse().ok())
        .unwrap_or_else(|| panic!("no QUIC address in {addrs:?}"))
}

/// What a failing reachability test shows: the lines about NAT, relays, hole punches and
/// warnings from each daemon's log.
fn nat_logs(daemons: &[(&str, &NsDaemon)]) -> String {
    let mut out = String::new();
    for (name, d) in daemons {
        out.push_str(&format!(
            "\n--- {name} ({}) ---\n{}",
            d.peer_id,
            d.log_lines(&[
                "WARN",
                "ERROR",
                "nat",
                "relay",
                "dcutr",
                "autonat",
                "AutoNAT",
                "reservation",
                "hole",
                "bootstrap",
                "routing",
                "dropped",
                "penal"
            ])
        ));
    }
    out
}

/// The small internet: a public relay R at 198.51.100.1 in namespace I (the "internet"), and
/// two homes, each a host behind its own NAT router:
///
/// ```text
///   HA 10.0.1.2 ── 10.0.1.1 RA 203.0.113.2 ── 203.0.113.1  I  192.0.2.1 ── 192.0.2.2 RB 10.0.2.1 ── 10.0.2.2 HB
///                                                  R: 198.51.100.1
/// ```
///
/// RA and RB masquerade what leaves their WAN side and let in only answers to it, as a home
/// router does. B in HA puts a file; C in HB, which knows only R, finds B through the DHT,
/// reaches it through R's relay, and gets the file byte-identical: over a direct connection
/// when hole punching gets through the NATs (Linux's default, port-preserving), over the relay
/// when it cannot (`--random-fully`, a symmetric NAT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_nat_meet_through_a_relay_and_share_a_file() {
    across_two_nats(NatKind::PortPreserving, "nat").await;
}

/// As above, behind two symmetric NATs, where no hole punch can work: the file comes through
/// R's relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_symmetric_nats_the_file_comes_through_the_relay() {
    across_two_nats(NatKind::Symmetric, "snat").await;
}

async fn across_two_nats(kind: NatKind, lab_name: &str) {
    if !available().unwrap_or_else(|e| panic!("{e}")) {
        return;
    }
    let punchable = kind == NatKind::PortPreserving;
    let mut lab = Lab::new(lab_name);
    let (i, ra, rb, ha, hb) = (
        lab.ns("i"),
        lab.ns("ra"),
        lab.ns("rb"),
        lab.ns("ha"),
        lab.ns("hb"),
    );
    sh(&[
        "ip",
        "-n",
        &i,
        "addr",
        "add",
        "198.51.100.1/32",
        "dev",
        "lo",
    ]);
    Lab::forward(&i);
    Lab::link(&i, "i-a", "203.0.113.1/24", &ra, "ra-wan", "203.0.113.2/24");
    Lab::link(&i, "i-b", "192.0.2.1/24", &rb, "rb-wan", "192.0.2.2/24");
    Lab::link(&ra, "ra-lan", "10.0.1.1/24", &ha, "ha-eth", "10.0.1.2/24");
    Lab::link(&rb, "rb-lan", "10.0.2.1/24", &hb, "hb-eth", "10.0.2.2/24");
    Lab::default_route(&ra, "203.0.113.1");
    Lab::default_route(&rb, "192.0.2.1");
    Lab::default_route(&ha, "10.0.1.1");
    Lab::default_route(&hb, "10.0.2.1");
    Lab::nat(&ra, "ra-wan", kind);
    Lab::nat(&rb, "rb-wan", kind);

    let root = tempfile::tempdir().unwrap();
    // The relay keeps no replicas (a 1-byte quota), so C can only get the file from B.
    let r = NsDaemon::start(
        &i,
        &root.path().join("r"),
        &[
            "--relay-server",
            "on",
            "--private-ranges",
            "--no-mdns",
            "--no-upnp",
            "--quota",
            "1",
        ],
    )
    .await;
    let seed = format!(
        "/ip4/198.51.100.1/udp/{}/quic-v1/p2p/{}",
        quic_port(&r.addrs),
        r.peer_id
    );
    let home = |ns: &str, name: &str, quota: &str| {
        let (ns, dir, seed, quota) = (
            ns.to_owned(),
            root.path().join(name),
            seed.clone(),
            quota.to_owned(),
        );
        async move {
            let args = [
                "--bootstrap",
                &seed,
                "--private-ranges",
                "--no-mdns",
                "--no-upnp",
                "--quota",
                &quota,
            ];
            NsDaemon::start(&ns, &dir, &args).await
        }
    };
    let relayed = |s: &serde_json::Value| {
        s["reachability"] == "private"
            && s["relayed_addrs"].as_array().is_some_and(|a| !a.is_empty())
    };

    let b = home(&ha, "b", "1GiB").await;
    let (ok, status) = b.status_until(RELAYED_BOUND, relayed).await;
    assert!(
        ok,
        "B behind NAT never found itself private with a relayed address: {status}{}",
        nat_logs(&[("R", &r), ("B", &b)])
    );
    let data = random_bytes(1024 * 1024, 1301);
    let input = root.path().join("shared.bin");
    std::fs::write(&input, &data).unwrap();
    let id = run_in(&ha, &b.dir, &["put", input.to_str().unwrap()]).await;

    // C keeps no replicas either (a 1-byte quota), so that the get below is what brings it the
    // file, over the connection the test reports.
    let c = home(&hb, "c", "1").await;
    let (ok, status) = c.status_until(RELAYED_BOUND, relayed).await;
    assert!(
        ok,
        "C behind NAT never found itself private with a relayed address: {status}{}",
        nat_logs(&[("R", &r), ("B", &b), ("C", &c)])
    );
    // C met B as soon as it joined (B pushes copies to a peer that joins a chunk's closest
    // set), through R's relay; hole punching then makes the connection direct where it can.
    // Wait (bounded) for that, so the get below runs on the connection the test reports.
    let to_b = |peers: &serde_json::Value| {
        peers
            .as_array()
            .and_then(|l| l.iter().find(|p| p["peer_id"] == b.peer_id.as_str()))
            .cloned()
    };
    let started = Instant::now();
    let mut link = None;
    let mut peers = serde_json::Value::Null;
    while started.elapsed() < PUNCH_BOUND {
        peers = super::ndjson(&run_in(&hb, &c.dir, &["--json", "peers"]).await);
        link = to_b(&peers);
        if link
            .as_ref()
            .is_some_and(|p| p["connected"] == true && (p["relayed"] == false || !punchable))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let link = link.unwrap_or_else(|| {
        panic!(
            "C never listed B as a peer: {peers}{}",
            nat_logs(&[("R", &r), ("B", &b), ("C", &c)])
        )
    });
    let direct_before = link["relayed"] == false;
    let held = super::netns::status_in(&hb, &c.dir).await["stored_bytes"]
        .as_u64()
        .unwrap();

    let output = root.path().join("copy.bin");
    let started = Instant::now();
    let mut get = super::netns::cairn_in(&hb);
    get.arg("--data-dir")
        .arg(&c.dir)
        .args(["get", &id, "-o", output.to_str().unwrap()]);
    let got = tokio::time::timeout(super::STEP, get.output())
        .await
        .expect("the get finishes")
        .expect("cairn runs");
    assert!(
        got.status.success(),
        "C cannot get B's file: {}{}",
        super::stderr(&got),
        nat_logs(&[("R", &r), ("B", &b), ("C", &c)])
    );
    let took = started.elapsed();
    assert!(std::fs::read(&output).unwrap() == data, "C's copy differs");

    let (sb, sc) = (
        super::netns::status_in(&ha, &b.dir).await,
        super::netns::status_in(&hb, &c.dir).await,
    );
    let punched = sb["hole_punches"].as_u64().unwrap() + sc["hole_punches"].as_u64().unwrap();
    // Direct if it was before the get and no relayed connection was left: a hole punch that
    // succeeded during the get counts as relayed, the get having started on the relay.
    let direct = direct_before && punched >= 1;
    eprintln!(
        "1 MiB from B to C across two {kind:?} NATs: the get took {:.2} s over a {} connection ({} of it already pushed to C as replicas); hole punches: B {}, C {}; failures: B {}, C {}",
        took.as_secs_f64(),
        if direct {
            "direct (hole-punched)"
        } else {
            "relayed"
        },
        if held == 0 {
            "none".to_owned()
        } else {
            format!("{held} bytes")
        },
        sb["hole_punches"],
        sc["hole_punches"],
        sb["hole_punch_failures"],
        sc["hole_punch_failures"],
    );
    if punchable {
        // Linux's MASQUERADE keeps the source port and lets in answers to what went out, so
        // hole punching must succeed here; a relayed connection means DCUtR failed.
        assert!(
            direct,
            "the connection between B and C stayed relayed: {link}{}",
            nat_logs(&[("R", &r), ("B", &b), ("C", &c)])
        );
    } else {
        // A random port for every flow: no hole punch can land, so the bytes came through R.
        assert!(
            !direct_before && punched == 0,
            "hole punching got through two symmetric NATs?: {link}{}",
            nat_logs(&[("R", &r), ("B", &b), ("C", &c)])
        );
    }
    drop(lab);
}

/// Two daemons on one LAN (two namespaces joined by a veth pair, each with a default route
/// through the other as a home network has), mDNS on as a desktop runs it, no bootstrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_a_lan_find_each_other_by_mdns() {
    if !available().unwrap_or_else(|e| panic!("{e}")) {
        return;
    }
    let mut lab = Lab::new("mdns");
    let (a, b) = (lab.ns("a"), lab.ns("b"));
    Lab::link(&a, "a-eth", "10.9.0.1/24", &b, "b-eth", "10.9.0.2/24");
    Lab::default_route(&a, "10.9.0.2");
    Lab::default_route(&b, "10.9.0.1");
    let root = tempfile::tempdir().unwrap();
    let da = NsDaemon::start(&a, &root.path().join("a"), &["--no-upnp"]).await;
    let db = NsDaemon::start(&b, &root.path().join("b"), &["--no-upnp"]).await;
    for (me, other, name) in [(&da, &db, "A"), (&db, &da, "B")] {
        let started = Instant::now();
        let mut found = false;
        while started.elapsed() < MEET_BOUND {
            let peers: serde_json::Value =
                super::ndjson(&run_in(&me.ns, &me.dir, &["--json", "peers"]).await);
            if peer_listed(&peers, &other.peer_id) {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            found,
            "{name} never found the other daemon by mDNS{}",
            nat_logs(&[("A", &da), ("B", &db)])
        );
        eprintln!(
            "{name} found the other by mDNS {:.1} s after starting to look",
            started.elapsed().as_secs_f64()
        );
    }
    drop(lab);
}

/// A daemon on its own on 127.0.0.1.
async fn loopback_daemon(dir: &Path) -> NsDaemon {
    NsDaemon::start(
        HOST,
        dir,
        &[
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--local-network",
            "--no-mdns",
            "--no-upnp",
        ],
    )
    .await
}

/// `cairn invite` on A, `cairn peers add TICKET` on B: they connect. C, which knows no one,
/// gets A's file with `cairn get ID --from TICKET`. A's `/metrics` page then has every metric
/// the issue names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_connect_daemons_and_get_from_fetches_through_one() {
    let root = tempfile::tempdir().unwrap();
    let a = loopback_daemon(&root.path().join("a")).await;
    let b = loopback_daemon(&root.path().join("b")).await;
    let c = loopback_daemon(&root.path().join("c")).await;
    let ticket = run_in(HOST, &a.dir, &["invite"]).await;
    assert!(ticket.starts_with("cairninvite1"), "{ticket}");
    assert!(ticket.len() < 200, "an invite is short: {ticket}");
    let added = run_in(HOST, &b.dir, &["peers", "add", &ticket]).await;
    assert!(added.contains("joined through"), "{added}");
    for (me, other) in [(&b, &a), (&a, &b)] {
        let peers: serde_json::Value =
            super::ndjson(&run_in(HOST, &me.dir, &["--json", "peers"]).await);
        assert!(peer_listed(&peers, &other.peer_id), "{peers}");
    }

    let data = random_bytes(300_000, 1302);
    let input = root.path().join("f.bin");
    std::fs::write(&input, &data).unwrap();
    let id = run_in(HOST, &a.dir, &["put", input.to_str().unwrap()]).await;
    let output = root.path().join("copy.bin");
    let no_one: serde_json::Value =
        super::ndjson(&run_in(HOST, &c.dir, &["--json", "peers"]).await);
    assert_eq!(no_one.as_array().map(Vec::len), Some(0), "{no_one}");
    run_in(
        HOST,
        &c.dir,
        &[
            "get",
            &id,
            "--from",
            &ticket,
            "-o",
            output.to_str().unwrap(),
        ],
    )
    .await;
    assert!(std::fs::read(&output).unwrap() == data, "C's copy differs");

    // A damaged ticket is a one-line error naming it.
    let mut damaged = ticket.clone();
    damaged.replace_range(20..21, if &ticket[20..21] == "a" { "b" } else { "a" });
    let mut bad = super::netns::cairn_in(HOST);
    bad.arg("--data-dir")
        .arg(&b.dir)
        .args(["peers", "add", &damaged]);
    let bad = tokio::time::timeout(super::STEP, bad.output())
        .await
        .unwrap()
        .unwrap();
    super::assert_fails(&bad, "invite");

    let api = std::fs::read_to_string(a.dir.join("api.addr")).unwrap();
    let (code, body, headers) =
        super::http_get(&format!("http://{}/metrics", api.trim()), None).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(code, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    for metric in [
        "cairn_peers_connected",
        "cairn_routing_table_peers",
        "cairn_lookups_total",
        "cairn_lookup_duration_seconds",
        "cairn_chunk_received_bytes_total",
        "cairn_chunk_sent_bytes_total",
        "libp2p_bandwidth_bytes_total",
        "cairn_stored_chunks",
        "cairn_stored_bytes",
        "cairn_repair_copies_sent",
        "cairn_repair_sent_bytes",
        "cairn_rate_limited_requests",
        "cairn_banned_peers",
        "cairn_publicly_reachable",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(metric)),
            "/metrics has no {metric}:\n{text}"
        );
    }
    // A served the file to C: its chunk bytes sent count it.
    let sent: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cairn_chunk_sent_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        sent >= data.len() as f64,
        "cairn_chunk_sent_bytes_total {sent}"
    );
    for d in [a, b, c] {
        d.stop().await;
    }
}

/// In a namespace of its own (so that the default port is free and nothing binds the host's
/// interfaces): a daemon with no `--listen` takes the default port and keeps its peer id and
/// port across a restart; a second daemon finds the port taken, says so, takes a free one and
/// keeps that too. Then a daemon whose bootstrap peer is down waits for it, and joins it within
/// a bound once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_keeps_its_id_and_port_and_waits_for_a_late_bootstrap_peer() {
    if !available().unwrap_or_else(|e| panic!("{e}")) {
        return;
    }
    let mut lab = Lab::new("port");
    let ns = lab.ns("n");
    let root = tempfile::tempdir().unwrap();
    let quiet = ["--no-mdns", "--no-upnp", "--local-network"];

    let a = NsDaemon::start(&ns, &root.path().join("a"), &quiet).await;
    let (a_id, a_port) = (a.peer_id.clone(), quic_port(&a.addrs));
    assert_eq!(a_port, 5738, "the default port: {:?}", a.addrs);
    assert!(
        a.addrs.iter().any(|x| x.contains("/tcp/5738")),
        "TCP on the default port too: {:?}",
        a.addrs
    );
    let b = NsDaemon::start(&ns, &root.path().join("b"), &quiet).await;
    let b_port = quic_port(&b.addrs);
    assert_ne!(b_port, 5738);
    assert!(
        b.log().contains("5738"),
        "B says the default port is taken: {}",
        b.log()
    );
    b.stop().await;
    let b = NsDaemon::start(&ns, &root.path().join("b"), &quiet).await;
    assert_eq!(
        quic_port(&b.addrs),
        b_port,
        "B keeps the port it fell back to"
    );
    b.stop().await;
    a.stop().await;
    let a = NsDaemon::start(&ns, &root.path().join("a"), &quiet).await;
    assert_eq!(
        (a.peer_id.as_str(), quic_port(&a.addrs)),
        (a_id.as_str(), a_port)
    );
    a.stop().await;

    // A is down; L starts with A as its only bootstrap peer and has no one.
    let seed = format!("/ip4/127.0.0.1/udp/{a_port}/quic-v1/p2p/{a_id}");
    let mut args = vec![
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--bootstrap",
        &seed,
    ];
    args.extend(quiet);
    let l = NsDaemon::start(&ns, &root.path().join("l"), &args).await;
    tokio::time::sleep(DOWN_FOR).await;
    let s = super::netns::status_in(&ns, &l.dir).await;
    assert_eq!(s["routing_table"], 0, "{s}");
    let a = NsDaemon::start(&ns, &root.path().join("a"), &quiet).await;
    let up = Instant::now();
    let (ok, s) = l
        .status_until(LATE_JOIN_BOUND, |s| s["routing_table"].as_u64() >= Some(1))
        .await;
    assert!(
        ok,
        "L never joined its bootstrap peer after it came up: {s}\n{}",
        l.log()
    );
    eprintln!(
        "a daemon whose bootstrap peer was down for {} s joined it {:.1} s after it came up",
        DOWN_FOR.as_secs(),
        up.elapsed().as_secs_f64()
    );
    l.stop().await;
    a.stop().await;
    drop(lab);
}
