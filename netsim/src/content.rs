//! Content in the simulation: what each node stores, the links that carry chunks, and the
//! objects of the content workload.
//!
//! No bytes move: a chunk is an id and a size, and a transfer is a delay computed from the two
//! ends' links.
//!
//! - **Chunks** are 256 KiB, the average chunk of the node's content-defined chunker
//!   (`node/src/chunker.rs`, `AVG_CHUNK`); an object of `object_bytes` is cut into equal chunks
//!   with the last one shorter. Chunk ids are hashes of the seed, the object and the position:
//!   random, and the same for the same seed.
//! - **Links.** Every node has an uplink and a downlink. 10 % are datacenter nodes at 1 Gbit/s
//!   both ways; the rest are home links, log-uniform between 10 and 50 Mbit/s up and 100 and
//!   500 Mbit/s down. The shape follows the public fixed-broadband medians (Ookla's Speedtest
//!   Global Index and the FCC's Measuring Broadband America report medians of one to a few
//!   hundred Mbit/s down, with uplinks a fifth to a tenth of that on cable and DSL); the
//!   log-uniform spread gives as many 10–20 Mbit/s uplinks as 25–50 ones, which is what makes
//!   a single home holder the bottleneck of a get.
//! - **Transfers.** Each link direction is a FIFO server: a transfer of `size` bytes from A to B
//!   is requested at `now`, reaches A half a round trip later, is carried by A's uplink at A's
//!   rate once the uplink has finished what was queued before it, and by B's downlink at B's
//!   rate likewise, and arrives half a round trip after both have carried it. With both links
//!   idle that is one round trip plus size over the bottleneck; concurrent transfers queue
//!   behind each other on the link they share. Each side keeps one "free at" instant, so a
//!   transfer costs O(1). (FIFO rather than processor sharing: the same total throughput and
//!   the same mean completion, without rescheduling every transfer on a link each time one
//!   starts or ends; a get sees its chunks arrive one after the other rather than together.)
//! - **Stores.** A node stores a chunk because it published it, because placement put it there
//!   (it is among the `replication` closest), or because it fetched the object (the CDN case).
//!   Cached chunks are bounded per node ([`CACHE_BYTES`]) and evicted least recently used;
//!   published and placed ones never are. Every stored chunk is `hold`-ed in the node's engine,
//!   and an evicted one `release`d, so the engine's `GetProviders` answers match the store.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cairn_dht::{Key, Timestamp};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Size of a chunk: the node's average content-defined chunk (`AVG_CHUNK`, 256 KiB).
pub(crate) const CHUNK_BYTES: u64 = 256 * 1024;

/// Bytes of a file's root manifest per chunk it lists (`manifest::Link`: id, size and CBOR
/// framing, about 45 bytes), and its fixed part.
pub(crate) const LINK_BYTES: u64 = 45;
pub(crate) const ROOT_HEADER_BYTES: u64 = 16;

/// Cached (fetched, not published or placed) bytes a node keeps at most: 256 MiB. A node's real
/// default is far larger (10 GiB of chunks in all); at the run sizes of the command line a
/// small cap is what makes eviction, and so the LRU, part of what is measured.
pub(crate) const CACHE_BYTES: u64 = 256 << 20;

/// Share of nodes on datacenter links, in percent.
const DATACENTER_PERCENT: u32 = 10;

/// A datacenter link, both ways, in bit/s.
const DATACENTER_BPS: f64 = 1e9;

/// Home uplinks, bit/s: log-uniform between these.
const HOME_UP_BPS: (f64, f64) = (10e6, 50e6);

/// Home downlinks, bit/s: log-uniform between these.
const HOME_DOWN_BPS: (f64, f64) = (100e6, 500e6);

/// A node's access link: rates and when each direction is next free.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// Uplink rate, bit/s.
    pub(crate) up_bps: u64,
    /// Downlink rate, bit/s.
    pub(crate) down_bps: u64,
    up_free: Timestamp,
    down_free: Timestamp,
}

impl Link {
    /// Draws a link from the distribution in the module doc.
    pub(crate) fn draw(rng: &mut ChaCha8Rng) -> Self {
        let (up, down) = if rng.random_range(0..100) < DATACENTER_PERCENT {
            (DATACENTER_BPS, DATACENTER_BPS)
        } else {
            (
                log_uniform(rng, HOME_UP_BPS),
                log_uniform(rng, HOME_DOWN_BPS),
            )
        };
        Self {
            up_bps: up as u64,
            down_bps: down as u64,
            up_free: Timestamp::EPOCH,
            down_free: Timestamp::EPOCH,
        }
    }

    /// How long `bytes` take on the downlink alone.
    pub(crate) fn down_time(&self, bytes: u64) -> Duration {
        carry(bytes, self.down_bps)
    }
}

/// Schedules a transfer of `bytes` from `sender` to `receiver`, requested at `now`, over a pair
/// whose one-way delays are `there` (request) and `back` (data): returns when the last byte
/// arrives, and books both links (see the module doc).
pub(crate) fn transfer(
    now: Timestamp,
    there: Duration,
    back: Duration,
    sender: &mut Link,
    receiver: &mut Link,
    bytes: u64,
) -> Timestamp {
    let start = now + there;
    let up_done = start.max(sender.up_free) + carry(bytes, sender.up_bps);
    sender.up_free = up_done;
    let down_done = start.max(receiver.down_free) + carry(bytes, receiver.down_bps);
    receiver.down_free = down_done;
    up_done.max(down_done) + back
}

/// Time to carry `bytes` at `bps`, rounded up to the microsecond.
fn carry(bytes: u64, bps: u64) -> Duration {
    let micros = (u128::from(bytes) * 8_000_000).div_ceil(u128::from(bps.max(1)));
    Duration::from_micros(micros.min(u128::from(u64::MAX)) as u64)
}

fn log_uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// Why a node has a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// It put the object.
    Publisher,
    /// Placement chose it (one of the `replication` closest when the object was put).
    Placed,
    /// It fetched the object and keeps the chunk as cache.
    Cached,
}

impl Source {
    /// Publisher and placed copies are the origin; a cached copy is the CDN effect.
    pub(crate) fn is_origin(self) -> bool {
        self != Source::Cached
    }
}

#[derive(Clone, Copy, Debug)]
struct Held {
    size: u32,
    source: Source,
    /// Last use of a cached copy, its key in the LRU order.
    used: u64,
}

/// The chunks one node stores.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContentStore {
    chunks: HashMap<Key, Held>,
    /// Cached copies by last use, oldest first.
    lru: BTreeMap<u64, Key>,
    cached_bytes: u64,
}

impl ContentStore {
    /// Stores `key` for `source` at use count `tick`; returns the cached chunks evicted to make
    /// room (which the caller releases from the engine). A copy already held keeps the stronger
    /// reason (publisher or placed over cached).
    pub(crate) fn insert(&mut self, key: Key, size: u32, source: Source, tick: u64) -> Vec<Key> {
        if let Some(held) = self.chunks.get_mut(&key) {
            if held.source == Source::Cached && source != Source::Cached {
                self.lru.remove(&held.used);
                self.cached_bytes -= u64::from(held.size);
                held.source = source;
            } else if held.source == Source::Cached {
                self.lru.remove(&held.used);
                held.used = tick;
                self.lru.insert(tick, key);
            }
            return Vec::new();
        }
        self.chunks.insert(
            key,
            Held {
                size,
                source,
                used: tick,
            },
        );
        if source != Source::Cached {
            return Vec::new();
        }
        self.lru.insert(tick, key);
        self.cached_bytes += u64::from(size);
        let mut evicted = Vec::new();
        // Bounded by the number of cached copies; the newest (this one) is never evicted.
        while self.cached_bytes > CACHE_BYTES && self.lru.len() > 1 {
            let Some((_, old)) = self.lru.pop_first() else {
                break;
            };
            if let Some(copy) = self.chunks.remove(&old) {
                self.cached_bytes -= u64::from(copy.size);
            }
            evicted.push(old);
        }
        evicted
    }

    /// Why this node has `key`, if it does; a cached copy counts as used at `tick`.
    pub(crate) fn serve(&mut self, key: &Key, tick: u64) -> Option<Source> {
        let copy = self.chunks.get_mut(key)?;
        if copy.source == Source::Cached {
            self.lru.remove(&copy.used);
            copy.used = tick;
            self.lru.insert(tick, *key);
        }
        Some(copy.source)
    }

    /// The size of `key`, if this node has it.
    pub(crate) fn size(&self, key: &Key) -> Option<u32> {
        self.chunks.get(key).map(|c| c.size)
    }

    /// Whether this node keeps `key` for good (published or placed here, not only cached): the
    /// copies a node proves when challenged.
    pub(crate) fn keeps(&self, key: &Key) -> bool {
        self.chunks.get(key).is_some_and(|c| c.source.is_origin())
    }

    /// A placed copy that is no longer among the closest becomes cache (evictable); returns
    /// what its arrival in the cache evicted. Published copies stay: the publisher pinned them.
    pub(crate) fn demote(&mut self, key: &Key, tick: u64) -> Vec<Key> {
        match self.chunks.get(key) {
            Some(c) if c.source == Source::Placed => {
                let size = c.size;
                self.chunks.remove(key);
                self.insert(*key, size, Source::Cached, tick)
            }
            _ => Vec::new(),
        }
    }

    /// Every chunk this node has.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Key> {
        self.chunks.keys()
    }

    /// Whether this node has `key`.
    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.chunks.contains_key(key)
    }
}

/// One object of the content workload: a file, its root manifest first.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    /// Its chunks, in order: the root manifest (which lists the others), then the data.
    pub(crate) chunks: Vec<Key>,
    /// Its data's size in bytes.
    pub(crate) bytes: u64,
    /// Its root manifest's size in bytes.
    pub(crate) root_bytes: u64,
}

impl Object {
    /// Object `index` of a run seeded with `seed`, of `bytes` bytes of data.
    pub(crate) fn new(seed: u64, index: u64, bytes: u64) -> Self {
        let count = bytes.div_ceil(CHUNK_BYTES).max(1);
        // Index 0 is the root manifest, the others data chunk `i - 1`.
        let chunks = (0..=count)
            .map(|i| {
                let mut material = [0u8; 24];
                material[..8].copy_from_slice(&seed.to_be_bytes());
                material[8..16].copy_from_slice(&index.to_be_bytes());
                material[16..].copy_from_slice(&i.to_be_bytes());
                Key::hash(&material)
            })
            .collect();
        Self {
            chunks,
            bytes,
            root_bytes: ROOT_HEADER_BYTES + LINK_BYTES * count,
        }
    }

    /// Size of chunk `i`: the root manifest, then full data chunks and what is left.
    pub(crate) fn chunk_size(&self, i: usize) -> u32 {
        let Some(data) = i.checked_sub(1) else {
            return self.root_bytes as u32;
        };
        let before = data as u64 * CHUNK_BYTES;
        self.bytes.saturating_sub(before).clamp(0, CHUNK_BYTES) as u32
    }

    /// Data chunks (the root manifest not counted).
    pub(crate) fn data_chunks(&self) -> usize {
        self.chunks.len() - 1
    }
}

/// Object popularity: Zipf with exponent `s` over the objects in order (object 0 the most
/// popular), uniform when `s` is 0.
#[derive(Clone, Debug, Default)]
pub(crate) struct Popularity {
    /// Cumulative weights, normalised to end at 1.
    cdf: Vec<f64>,
}

impl Popularity {
    pub(crate) fn new(objects: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=objects)
            .map(|r| {
                total += (r as f64).powf(-s.max(0.0));
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// Draws an object index.
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_idle_transfer_takes_a_round_trip_plus_size_over_the_bottleneck() {
        let mut a = Link {
            up_bps: 8_000_000,
            down_bps: 1_000_000_000,
            up_free: Timestamp::EPOCH,
            down_free: Timestamp::EPOCH,
        };
        let mut b = a.clone();
        b.down_bps = 80_000_000;
        let t0 = Timestamp::EPOCH;
        // 1 MB at 8 Mbit/s: 1 s, plus 2 × 10 ms.
        let done = transfer(t0, ms(10), ms(10), &mut a, &mut b, 1_000_000);
        assert_eq!(done, t0 + ms(1020));
        // A second transfer from a queues behind the first on a's uplink.
        let mut c = b.clone();
        c.down_free = Timestamp::EPOCH;
        let done = transfer(t0, ms(10), ms(10), &mut a, &mut c, 1_000_000);
        assert_eq!(done, t0 + ms(2020));
    }

    #[test]
    fn links_follow_the_documented_distribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let links: Vec<Link> = (0..10_000).map(|_| Link::draw(&mut rng)).collect();
        let dc = links.iter().filter(|l| l.up_bps == 1_000_000_000).count();
        assert!((800..1200).contains(&dc), "{dc}");
        for l in links.iter().filter(|l| l.up_bps != 1_000_000_000) {
            assert!((10_000_000..=50_000_000).contains(&l.up_bps));
            assert!((100_000_000..=500_000_000).contains(&l.down_bps));
        }
    }

    #[test]
    fn cache_is_bounded_lru_and_never_evicts_placed_copies() {
        let mut store = ContentStore::default();
        let key = |i: u64| Key::hash(&i.to_be_bytes());
        let size = CHUNK_BYTES as u32;
        store.insert(key(0), size, Source::Placed, 0);
        let cap = CACHE_BYTES / CHUNK_BYTES;
        for i in 1..=cap {
            assert!(store.insert(key(i), size, Source::Cached, i).is_empty());
        }
        // Using chunk 1 makes chunk 2 the oldest.
        assert_eq!(store.serve(&key(1), cap + 1), Some(Source::Cached));
        let evicted = store.insert(key(cap + 1), size, Source::Cached, cap + 2);
        assert_eq!(evicted, vec![key(2)]);
        assert!(store.contains(&key(0)) && store.contains(&key(1)));
        // A cached copy that placement then chooses stops being evictable, and back.
        store.insert(key(3), size, Source::Placed, cap + 3);
        assert_eq!(store.serve(&key(3), cap + 4), Some(Source::Placed));
        // It left room in the cache when it was placed, so its return evicts nothing.
        assert!(store.demote(&key(3), cap + 5).is_empty());
        assert_eq!(store.serve(&key(3), cap + 6), Some(Source::Cached));
        assert!(store.demote(&key(1), cap + 7).is_empty());
    }

    #[test]
    fn objects_split_into_chunks_and_zipf_favours_the_first() {
        let o = Object::new(1, 2, 3 * CHUNK_BYTES + 10);
        assert_eq!(o.chunks.len(), 5);
        assert_eq!(o.data_chunks(), 4);
        assert_eq!(o.chunk_size(0), (ROOT_HEADER_BYTES + 4 * LINK_BYTES) as u32);
        assert_eq!(o.chunk_size(1), CHUNK_BYTES as u32);
        assert_eq!(o.chunk_size(4), 10);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zipf = Popularity::new(100, 1.0);
        let first = (0..10_000).filter(|_| zipf.draw(&mut rng) == 0).count();
        // 1 / H(100) ≈ 19 %.
        assert!((1700..2200).contains(&first), "{first}");
        let uniform = Popularity::new(100, 0.0);
        let first = (0..10_000).filter(|_| uniform.draw(&mut rng) == 0).count();
        assert!((50..160).contains(&first), "{first}");
    }
}
