//! Manifest encode and decode (`Manifest::encode`, `Manifest::decode`, which parses, re-encodes
//! to check the encoding is canonical, and validates): a `File` manifest of 1,000 chunk links
//! (a 250 MiB file at the average chunk size) and a `Dir` manifest of 1,000 entries.

use std::hint::black_box;

use cairn_node::dht::Key;
use cairn_node::manifest::{DirEntry, EntryKind, Link, Manifest};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LINKS: usize = 1_000;

fn manifests() -> [(&'static str, Manifest); 2] {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let chunks: Vec<Link> = (0..LINKS)
        .map(|_| Link {
            id: Key::random(&mut rng),
            size: rng.random_range(64 * 1024..=1024 * 1024),
        })
        .collect();
    let file = Manifest::File {
        size: chunks.iter().map(|l| l.size).sum(),
        chunks,
        data: None,
    };
    // Names as a photo or source folder has them, sorted by the zero-padded number.
    let entries = (0..LINKS)
        .map(|i| DirEntry {
            name: format!("IMG_{i:05}.jpg"),
            kind: if i % 10 == 0 {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            id: Key::random(&mut rng),
            size: rng.random_range(0..16 * 1024 * 1024),
        })
        .collect();
    let dir = Manifest::Dir { entries };
    [("file_1000_links", file), ("dir_1000_entries", dir)]
}

fn manifest(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifest");
    for (label, m) in manifests() {
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(&m));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| black_box(&m).encode())
        });
        group.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| Manifest::decode(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, manifest);
criterion_main!(benches);
