//! A stranger attacks live nodes on loopback (`crate::liar`): readers still get the genuine
//! records and bytes, the liar ends up banned and cannot come back, a flood is throttled while
//! an honest get completes, and garbage is refused while the node keeps serving.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_dht::{Key, RemoteError, RequestBody, ResponseBody, SignedRecord, Timestamp};
use cairn_node::Node;
use cairn_node::protocol::ChunkRequest;
use cairn_tests::{STEP, Testnet, random_bytes};
use tokio::time::timeout;

use crate::liar::{Liar, forged_record};

fn in_an_hour() -> Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_unix(now + Duration::from_secs(3600))
}

/// Starts a liar and makes every node of `net` meet it (each adds it to its routing table when
/// it pings).
async fn liar_among(net: &Testnet, seed: u8) -> Liar {
    let liar = Liar::spawn(seed).await.unwrap();
    for n in &net.nodes {
        timeout(STEP, liar.dial(n.addrs()[0].clone()))
            .await
            .unwrap()
            .unwrap();
        let pong = timeout(STEP, liar.kad(n.peer_id(), RequestBody::Ping))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pong.body, ResponseBody::Pong);
    }
    liar
}

async fn banned(node: &Node) -> usize {
    node.stats().await.unwrap().network.banned
}

/// After a ban: the liar's connection is gone, and neither a new one nor a request gets through.
async fn assert_shut_out(liar: &Liar, node: &Node) {
    assert!(
        !node
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == liar.peer_id),
        "the liar left the routing table"
    );
    let _ = timeout(STEP, liar.dial(node.addrs()[0].clone())).await;
    let ping = timeout(STEP, liar.kad(node.peer_id(), RequestBody::Ping))
        .await
        .unwrap();
    assert!(ping.is_err(), "a banned peer got an answer: {ping:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_are_outvoted_and_the_forger_is_banned_and_cannot_reconnect() {
    let net = Testnet::new(5).await.unwrap();
    let liar = liar_among(&net, 201).await;
    let (publisher, reader) = (&net.nodes[1], &net.nodes[4]);
    // Names the liar forges, read one after another until the reader has caught it (whether a
    // read asks the liar before it has its quorum depends on where the liar's id falls; 40
    // names make missing it every time a one in 10¹⁵ chance).
    let mut reads = 0;
    for i in 0..40u8 {
        let secret = [i.wrapping_add(1); 32];
        let record = SignedRecord::sign(
            &secret,
            format!("genuine {i}").into_bytes(),
            1,
            in_an_hour(),
        );
        liar.forge(record.public_key).await;
        timeout(STEP, publisher.put_record(record.clone()))
            .await
            .unwrap()
            .unwrap();
        let got = timeout(STEP, reader.get_record(record.key()))
            .await
            .unwrap()
            .unwrap();
        reads += 1;
        assert_eq!(
            got.as_ref(),
            Some(&record),
            "read {i} returned the genuine record"
        );
        if banned(reader).await > 0 {
            break;
        }
    }
    assert_eq!(banned(reader).await, 1, "banned after {reads} reads");
    eprintln!("the reader banned the forger after {reads} reads");
    assert_shut_out(&liar, reader).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_holders_sending_garbage_cost_the_liar_and_readers_get_the_right_bytes() {
    // Eight nodes and the liar at replication 5: the reader holds about half of each file
    // itself and fetches the rest.
    let net = Testnet::new(8).await.unwrap();
    let liar = liar_among(&net, 202).await;
    let (publisher, reader) = (&net.nodes[1], &net.nodes[4]);
    let mut gets = 0;
    for seed in 0..12u64 {
        let bytes = random_bytes(2 << 20, seed);
        let put = timeout(STEP, publisher.put_bytes(bytes.clone()))
            .await
            .unwrap()
            .unwrap();
        // The liar announces itself as a provider of the whole file too, so that the reader's
        // fetch, which starts from the root's providers, counts it among the first holders.
        for n in &net.nodes {
            let key = put.id.key();
            let _ = timeout(
                STEP,
                liar.kad(n.peer_id(), RequestBody::AddProvider { key }),
            )
            .await;
        }
        let got = timeout(STEP, reader.get_bytes(put.id))
            .await
            .unwrap()
            .unwrap();
        gets += 1;
        assert!(got == bytes, "get {seed} returned the genuine bytes");
        if banned(reader).await > 0 {
            break;
        }
    }
    assert_eq!(banned(reader).await, 1, "banned after {gets} gets");
    eprintln!("the reader banned the false holder after {gets} gets");
    assert!(reader.stats().await.unwrap().network.penalised >= 1);
    assert_shut_out(&liar, reader).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_and_replayed_records_are_refused() {
    let net = Testnet::new(2).await.unwrap();
    let liar = liar_among(&net, 203).await;
    let node = &net.nodes[0];
    let put = |record: SignedRecord| liar.kad(node.peer_id(), RequestBody::PutRecord { record });
    let secret = [9; 32];
    let newer = SignedRecord::sign(&secret, b"v2".to_vec(), 2, in_an_hour());
    assert_eq!(put(newer.clone()).await.unwrap().body, ResponseBody::Stored);
    // An older sequence, validly signed: a replay.
    let older = SignedRecord::sign(&secret, b"v1".to_vec(), 1, in_an_hour());
    assert_eq!(
        put(older).await.unwrap().body,
        ResponseBody::Error(RemoteError::StaleRecord { held: 2 })
    );
    // Expired, validly signed.
    let past = Timestamp::from_unix(
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(60),
    );
    let expired = SignedRecord::sign(&[8; 32], b"old".to_vec(), 1, past);
    assert_eq!(
        put(expired).await.unwrap().body,
        ResponseBody::Error(RemoteError::InvalidRecord)
    );
    // Neither of those is a lie; a bad signature is, and it bans.
    assert_eq!(banned(node).await, 0);
    let forged = forged_record(newer.public_key);
    // The answer is a refusal, unless the ban closed the connection before it went out.
    let answer = put(forged).await;
    assert!(
        answer.as_ref().map_or(true, |r| r.body
            == ResponseBody::Error(RemoteError::InvalidRecord)),
        "{answer:?}"
    );
    assert_eq!(banned(node).await, 1);
    // What the node holds is still the genuine newest record.
    let held = timeout(STEP, net.nodes[1].get_record(newer.key()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held, Some(newer));
    assert_shut_out(&liar, node).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_are_refused_and_the_node_keeps_serving() {
    let net = Testnet::new(3).await.unwrap();
    let liar = liar_among(&net, 204).await;
    let node = &net.nodes[0];
    // Not CBOR at all; then 100 KiB, past the DHT protocol's 64 KiB.
    let garbage = timeout(STEP, liar.raw(node.peer_id(), vec![0xff; 64]))
        .await
        .unwrap();
    assert!(garbage.is_err(), "garbage got an answer: {garbage:?}");
    let oversized = timeout(STEP, liar.raw(node.peer_id(), random_bytes(100 * 1024, 1)))
        .await
        .unwrap();
    assert!(oversized.is_err(), "an oversized message got an answer");
    // A well-formed request is still answered; the third malformed message bans.
    let pong = liar.kad(node.peer_id(), RequestBody::Ping).await.unwrap();
    assert_eq!(pong.body, ResponseBody::Pong);
    let _ = timeout(STEP, liar.raw(node.peer_id(), vec![0x9f; 32]))
        .await
        .unwrap();
    assert_eq!(banned(node).await, 1);
    assert_shut_out(&liar, node).await;
    // The node serves everyone else as before.
    let bytes = random_bytes(300 * 1024, 2);
    let put = timeout(STEP, node.put_bytes(bytes.clone()))
        .await
        .unwrap()
        .unwrap();
    let got = timeout(STEP, net.nodes[2].get_bytes(put.id))
        .await
        .unwrap()
        .unwrap();
    assert!(got == bytes);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_is_throttled_while_another_readers_get_completes() {
    // Eight nodes at replication 5: each reader fetches about a third of the file. The request
    // budgets are a fifth of the defaults, so that one process on this machine can exceed them
    // (the defaults allow 500 DHT and 512 chunk requests a second per peer).
    let budget = cairn_dht::RateLimit {
        burst: 200,
        per_second: 100,
        max_tracked_peers: 4096,
    };
    let config = cairn_dht::Config {
        rate: budget.clone(),
        chunk_rate: budget,
        ..cairn_dht::Config::default()
    };
    let net = Testnet::with_config(8, config).await.unwrap();
    let liar = liar_among(&net, 205).await;
    // A flooder, not a false holder: nobody bans it for its answers.
    liar.claims(false).await;
    let (holder, reader) = (&net.nodes[1], &net.nodes[7]);
    let bytes = random_bytes(16 << 20, 3);
    let put = timeout(STEP, holder.put_bytes(bytes.clone()))
        .await
        .unwrap()
        .unwrap();
    // The same get without a flood, for comparison.
    let quiet = Instant::now();
    let _ = timeout(STEP, net.nodes[6].get_bytes(put.id))
        .await
        .unwrap()
        .unwrap();
    let quiet = quiet.elapsed();
    // Per node 3,000 DHT and 3,000 chunk requests, as fast as the node's stream limits let
    // them in (60 DHT and 24 chunk requests in flight per node; libp2p refuses streams past 64
    // and 32 per connection), while the reader gets.
    let flood = async {
        use futures::StreamExt;
        let liar = &liar;
        let kad = futures::future::join_all(net.nodes.iter().map(|n| {
            futures::stream::iter(0..3000u32)
                .map(move |i| {
                    let target = Key::hash(&i.to_be_bytes());
                    liar.kad(n.peer_id(), RequestBody::FindNode { target, count: 40 })
                })
                .buffer_unordered(60)
                .collect::<Vec<_>>()
        }));
        let chunk = futures::future::join_all(net.nodes.iter().map(|n| {
            futures::stream::iter(0..3000u32)
                .map(move |i| {
                    let id = Key::hash(&i.to_be_bytes());
                    liar.chunk(n.peer_id(), ChunkRequest::Get { id })
                })
                .buffer_unordered(24)
                .collect::<Vec<_>>()
        }));
        let (kad, chunk) = tokio::join!(kad, chunk);
        let kad: Vec<_> = kad.into_iter().flatten().collect();
        let chunk: Vec<_> = chunk.into_iter().flatten().collect();
        let kad_limited = kad
            .iter()
            .filter(
                |r| matches!(r, Ok(r) if r.body == ResponseBody::Error(RemoteError::RateLimited)),
            )
            .count();
        let chunk_limited = chunk
            .iter()
            .filter(|r| matches!(r, Ok(cairn_node::protocol::ChunkResponse::Refused(_))))
            .count();
        let unanswered =
            kad.iter().filter(|r| r.is_err()).count() + chunk.iter().filter(|r| r.is_err()).count();
        (kad_limited, chunk_limited, unanswered)
    };
    let get = async {
        let start = Instant::now();
        let got = timeout(STEP, reader.get_bytes(put.id))
            .await
            .unwrap()
            .unwrap();
        (got, start.elapsed())
    };
    let ((kad, chunk, unanswered), (got, flooded)) = tokio::join!(flood, get);
    assert!(got == bytes, "the reader got the genuine bytes");
    assert!(
        kad > 0 && chunk > 0,
        "the flood was throttled: {kad} DHT, {chunk} chunk, {unanswered} unanswered"
    );
    eprintln!(
        "16 MiB get: {quiet:?} quiet, {flooded:?} under a flood of 48,000 requests \
         ({kad} DHT and {chunk} chunk requests refused for the budget, {unanswered} unanswered)"
    );
    net.shutdown().await;
}
