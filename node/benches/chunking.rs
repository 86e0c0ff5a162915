//! FastCDC chunking of 16 MiB of seeded random bytes: `chunker::chunks` over a reader (what a
//! put runs: each chunk copied out into its own `Vec`) and `chunker::cuts` over a buffer (cut
//! points only, no copies).

use std::hint::black_box;

use cairn_node::chunker;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LEN: usize = 16 * 1024 * 1024;

fn chunking(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut data = vec![0u8; LEN];
    rng.fill_bytes(&mut data);

    let mut group = c.benchmark_group("chunking");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.bench_function("stream_16MiB", |b| {
        b.iter(|| {
            let mut n = 0;
            for chunk in chunker::chunks(black_box(&data[..])) {
                n += chunk.expect("reading a slice cannot fail").len();
            }
            assert_eq!(n, LEN);
        })
    });
    group.bench_function("cuts_16MiB", |b| {
        b.iter(|| {
            chunker::cuts(black_box(&data))
                .map(|(_, len)| len)
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
