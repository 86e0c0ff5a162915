//! The modelled network: a synthetic geography that gives every pair of nodes a stable round
//! trip, per-message jitter, and the two sides of a partition.
//!
//! Nodes live in five regions with rough internet weights. A pair inside one region has a round
//! trip of 5–20 ms; a pair across regions has the regions' base round trip (80–300 ms, shaped on
//! public inter-continent figures) spread ±15 % per pair. The pair's value is a hash of the two
//! nodes and the seed, so it is stable for the whole run without an N×N matrix: it is what the
//! engine's RTT estimator converges to. Each message adds 0–5 % of its one-way delay plus up to
//! 1 ms of jitter.

use std::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A region of the synthetic geography.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region(pub(crate) u8);

/// Region names and their share of nodes, in percent.
const REGIONS: [(&str, u32); 5] = [
    ("north-america", 30),
    ("europe", 30),
    ("asia", 25),
    ("south-america", 8),
    ("oceania", 7),
];

/// Base round trip between regions, in ms (symmetric; the diagonal is unused).
const CROSS_RTT_MS: [[u32; 5]; 5] = [
    // NA  EU   AS   SA   OC
    [0, 90, 160, 120, 170],  // north-america
    [90, 0, 200, 200, 280],  // europe
    [160, 200, 0, 300, 110], // asia
    [120, 200, 300, 0, 280], // south-america
    [170, 280, 110, 280, 0], // oceania
];

/// The geography of one run.
#[derive(Clone, Debug)]
pub(crate) struct Geography {
    seed: u64,
}

impl Geography {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Draws a region with the weights of [`REGIONS`].
    pub(crate) fn place(&self, rng: &mut ChaCha8Rng) -> Region {
        let total: u32 = REGIONS.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random_range(0..total);
        for (i, (_, w)) in REGIONS.iter().enumerate() {
            if pick < *w {
                return Region(i as u8);
            }
            pick -= w;
        }
        Region(0)
    }

    /// The stable round trip between nodes `a` and `b` (simulator slots) in `ra` and `rb`.
    pub(crate) fn rtt(&self, a: u32, ra: Region, b: u32, rb: Region) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h = mix(self.seed ^ (u64::from(lo) << 32 | u64::from(hi)));
        let micros = if ra == rb {
            // 5–20 ms.
            5_000 + h % 15_001
        } else {
            let base = u64::from(CROSS_RTT_MS[usize::from(ra.0)][usize::from(rb.0)]) * 1000;
            // ±15 %, kept inside 80–300 ms.
            let spread = base * 85 / 100 + h % (base * 30 / 100 + 1);
            spread.clamp(80_000, 300_000)
        };
        Duration::from_micros(micros)
    }

    /// One message's delay: half the pair's round trip plus jitter.
    pub(crate) fn one_way(&self, rtt: Duration, rng: &mut ChaCha8Rng) -> Duration {
        let half = rtt.as_micros() as u64 / 2;
        let jitter = rng.random_range(0..=half / 20 + 1_000);
        Duration::from_micros(half + jitter)
    }

    /// The side of a partition a region falls on: the Americas against the rest (about 38 %
    /// against 62 % of nodes), as when transatlantic and transpacific links are cut.
    pub(crate) fn side(region: Region) -> u8 {
        match region.0 {
            0 | 3 => 0,
            _ => 1,
        }
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a 64-bit value.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn round_trips_are_stable_symmetric_and_in_range() {
        let geo = Geography::new(7);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for a in 0..200u32 {
            let ra = geo.place(&mut rng);
            for b in 0..20u32 {
                let rb = Region((b % 5) as u8);
                let rtt = geo.rtt(a, ra, b, rb);
                assert_eq!(rtt, geo.rtt(b, rb, a, ra));
                let ms = rtt.as_millis();
                if ra == rb {
                    assert!((5..=20).contains(&ms), "{ms}");
                } else {
                    assert!((80..=300).contains(&ms), "{ms}");
                }
                let one_way = geo.one_way(rtt, &mut rng);
                assert!(one_way + Duration::from_micros(1) >= rtt / 2);
                assert!(one_way <= rtt / 2 + rtt / 40 + ms_(2));
            }
        }
    }

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
