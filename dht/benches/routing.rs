//! `Dht::closest_known` (the routing table's `closest`, which every `FindNode`, `FindValue` and
//! `GetProviders` answer and every lookup start calls) on tables of 200 and 2,000 peers.
//!
//! The tables are filled through the public engine API: each peer sends one ping, which the
//! engine answers and then adds the sender, as it does for any authenticated request. Ids are
//! drawn bucket by bucket (`Key::random_in_bucket`, k = 20 per bucket from the farthest bucket
//! inwards), which is the shape a table takes in a large network: 200 peers is about what a peer
//! of a 10,000-node network knows (ten full buckets), 2,000 the table of a far larger one.

use std::hint::black_box;

use cairn_dht::{Config, Contact, Dht, Key, Request, RequestBody, Timestamp};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// An engine whose table holds `peers` peers, 20 per bucket from bucket 255 down.
fn engine(peers: usize, rng: &mut ChaCha8Rng) -> Dht<u32> {
    let local = Key::random(rng);
    let config = Config::default();
    let k = config.k;
    let mut dht: Dht<u32> = Dht::new(local, config);
    let now = Timestamp::EPOCH;
    for n in 0..peers {
        let bucket = 255 - n / k;
        let id = local.random_in_bucket(bucket, rng);
        let addr = u32::try_from(n + 1).expect("fewer than 2^32 peers");
        let response =
            dht.handle_request(now, Contact::new(id, addr), Request::new(RequestBody::Ping));
        black_box(response);
    }
    assert_eq!(
        dht.routing_table_len(),
        peers,
        "every ping added its sender"
    );
    dht
}

fn closest(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut group = c.benchmark_group("closest");
    for peers in [200, 2_000] {
        let dht = engine(peers, &mut rng);
        let k = dht.config().k;
        let targets: Vec<Key> = (0..256).map(|_| Key::random(&mut rng)).collect();
        let mut i = 0;
        group.bench_function(BenchmarkId::new("k=20", peers), |b| {
            b.iter(|| {
                i = (i + 1) % targets.len();
                black_box(dht.closest_known(&targets[i], k))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, closest);
criterion_main!(benches);
