//! BLAKE3 verification of a chunk: `Key::hash` over the chunk's bytes, which a reader compares
//! with the chunk id (the driver for every fetched chunk, the store for every chunk it serves).
//! At 256 KiB (the average chunk) and 1 MiB (the largest).

use std::hint::black_box;

use cairn_dht::Key;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn verify(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut group = c.benchmark_group("chunk_verify");
    for (label, len) in [("256KiB", 256 * 1024), ("1MiB", 1024 * 1024)] {
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        let id = Key::hash(&bytes);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("blake3", label), |b| {
            b.iter(|| Key::hash(black_box(&bytes)) == id)
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
