//! Writes seed corpora: a few valid messages of each kind, encoded as the node encodes them, into
//! `corpus/<target>/` (or the directory given as the first argument). Run from `fuzz/` with
//! `cargo run --release --example seeds` (see README.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_dht::{
    Contact, Key, RemoteError, Request, RequestBody, Response, ResponseBody, SignedRecord,
    Timestamp,
};
use cairn_node::manifest::{DirEntry, EntryKind, Link, Manifest};
use cairn_node::protocol::{ChunkRequest, ChunkResponse, PeerAddr};
use cairn_node::{ContentId, Multiaddr, Name, PeerId, wire};

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("corpus"));
    let record = record();

    let requests = [
        RequestBody::Ping,
        RequestBody::FindNode {
            target: Key::hash(b"target"),
            count: 20,
        },
        RequestBody::FindValue { key: record.key() },
        RequestBody::PutRecord {
            record: record.clone(),
        },
        RequestBody::AddProvider {
            key: Key::hash(b"content"),
        },
        RequestBody::GetProviders {
            key: Key::hash(b"content"),
        },
    ];
    write(
        &root,
        "kad_request",
        requests.into_iter().map(|b| enc(&Request::new(b))),
    )?;

    let contacts: Vec<Contact<PeerAddr>> = [
        "/ip4/192.0.2.1/udp/4001/quic-v1",
        "/ip4/198.51.100.7/tcp/4001",
        "/ip6/2001:db8::1/udp/4001/quic-v1",
    ]
    .iter()
    .enumerate()
    .map(|(i, a)| {
        let peer = peer(i as u8);
        Contact::new(
            cairn_node::protocol::node_id(&peer),
            PeerAddr {
                peer,
                addr: a.parse::<Multiaddr>().expect("a valid multiaddr"),
            },
        )
    })
    .collect();
    let responses: [ResponseBody<PeerAddr>; 7] = [
        ResponseBody::Pong,
        ResponseBody::Nodes {
            closer: contacts.clone(),
        },
        ResponseBody::Value {
            record: Some(record.clone()),
            closer: contacts[..1].to_vec(),
        },
        ResponseBody::Providers {
            holds: true,
            providers: contacts[1..].to_vec(),
            closer: contacts[..2].to_vec(),
        },
        ResponseBody::Stored,
        ResponseBody::Error(RemoteError::StaleRecord { held: 9 }),
        ResponseBody::Error(RemoteError::RateLimited),
    ];
    write(
        &root,
        "kad_response",
        responses.into_iter().map(|b| enc(&Response::new(b))),
    )?;

    let id = Key::hash(b"chunk bytes");
    let chunk_requests = [
        ChunkRequest::Get { id },
        ChunkRequest::Keep { id },
        ChunkRequest::Prove { id, nonce: [3; 32] },
        ChunkRequest::Store {
            id,
            bytes: b"chunk bytes".to_vec(),
        },
    ];
    write(&root, "chunk_request", chunk_requests.iter().map(enc))?;

    let chunk_responses = [
        ChunkResponse::Data(b"chunk bytes".to_vec()),
        ChunkResponse::NotFound,
        ChunkResponse::Stored,
        ChunkResponse::Proof([5; 32]),
        ChunkResponse::Refused("over quota".into()),
    ];
    write(&root, "chunk_response", chunk_responses.iter().map(enc))?;

    let link = |i: u64, size| Link {
        id: Key::hash(&i.to_be_bytes()),
        size,
    };
    let entry = |name: &str, kind, size| DirEntry {
        name: name.into(),
        kind,
        id: Key::hash(name.as_bytes()),
        size,
    };
    let manifests = [
        Manifest::File {
            size: 0,
            chunks: vec![],
            data: None,
        },
        Manifest::File {
            size: 30,
            chunks: vec![link(1, 10), link(2, 20)],
            data: None,
        },
        Manifest::FileTree {
            size: 300,
            parts: vec![link(3, 100), link(4, 200)],
        },
        Manifest::Dir {
            entries: vec![
                entry("a.txt", EntryKind::File, 5),
                entry("docs", EntryKind::Dir, 12),
            ],
        },
    ];
    for m in &manifests {
        assert_eq!(
            Manifest::decode(&m.encode()).as_ref(),
            Ok(m),
            "seed is valid"
        );
    }
    write(&root, "manifest", manifests.iter().map(Manifest::encode))?;

    let content = ContentId::from_key(Key::hash(b"root manifest"));
    let name = Name::from_public_key(record.public_key);
    let ids = [
        content.to_string(),
        name.to_string(),
        format!("{content}/docs/a.txt"),
        format!("{name}//photos/"),
        "self".into(),
        "backup-key_2.v1".into(),
        "3600".into(),
        "1h30m".into(),
        "7d".into(),
    ];
    write(&root, "ids", ids.into_iter().map(String::into_bytes))?;
    Ok(())
}

/// A valid record, live at `cairn_fuzz::NOW`.
fn record() -> SignedRecord {
    let expires = cairn_fuzz::NOW + Duration::from_secs(5 * 365 * 86_400);
    let value = ContentId::from_key(Key::hash(b"root manifest"))
        .to_string()
        .into_bytes();
    let record = SignedRecord::sign(&[7; 32], value, 1, expires);
    record
        .verify(cairn_fuzz::NOW)
        .expect("the seed record verifies");
    assert!(record.verify(Timestamp::NEVER).is_err());
    record
}

/// An ed25519 peer id: the identity multihash of the protobuf-encoded public key.
fn peer(i: u8) -> PeerId {
    let public = SignedRecord::public_key_of(&[i.wrapping_add(1); 32]);
    let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    bytes.extend_from_slice(&public);
    PeerId::from_bytes(&bytes).expect("a valid peer id")
}

fn enc<T: serde::Serialize>(message: &T) -> Vec<u8> {
    wire::encode(message).expect("encoding to a Vec cannot fail")
}

fn write(root: &Path, target: &str, seeds: impl Iterator<Item = Vec<u8>>) -> std::io::Result<()> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for (i, bytes) in seeds.enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), bytes)?;
        n += 1;
    }
    println!("{}: {n} seeds", dir.display());
    Ok(())
}
