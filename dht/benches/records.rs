//! Signed records: `SignedRecord::sign` (what a publisher does once per put of a name) and
//! `SignedRecord::verify` (what every peer that stores or returns the record does), with the
//! value a name holds: a content id as text, `cairn1` and 64 hex digits (70 bytes).

use std::hint::black_box;
use std::time::Duration;

use cairn_dht::{Key, SignedRecord, Timestamp};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn records(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    let value = format!("cairn1{:x}", Key::from_bytes(id)).into_bytes();
    assert_eq!(value.len(), 70);
    let now = Timestamp::from_micros(1_000_000);
    let expires = now + Duration::from_secs(3600);

    let mut group = c.benchmark_group("record");
    group.bench_function("sign", |b| {
        b.iter(|| SignedRecord::sign(black_box(&secret), value.clone(), 7, expires))
    });
    let record = SignedRecord::sign(&secret, value.clone(), 7, expires);
    record.verify(now).expect("a fresh record verifies");
    group.bench_function("verify", |b| b.iter(|| black_box(&record).verify(now)));
    group.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
