//! Round-trip estimation and adaptive request timeouts.
//!
//! A fixed 10 s timeout (the original Kademlia and many implementations) makes one dead peer
//! cost a lookup ten seconds. We estimate each peer's round trip the way TCP does (RFC 6298:
//! smoothed RTT and its mean deviation, gains 1/8 and 1/4) and time a request out after
//! `srtt + multiplier * rttvar`, clamped to a floor and a ceiling. Peers never measured get the
//! same formula over all samples, so the engine adapts to the network it is in.

use std::time::Duration;

use crate::config::TimeoutConfig;

/// A smoothed round-trip estimate (RFC 6298 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    samples: u32,
}

impl RttEstimator {
    /// An estimator seeded with its first sample.
    pub fn new(first: Duration) -> Self {
        Self {
            srtt: first,
            rttvar: first / 2,
            samples: 1,
        }
    }

    /// Folds in a new sample.
    pub fn update(&mut self, sample: Duration) {
        let delta = self.srtt.abs_diff(sample);
        self.rttvar = self.rttvar * 3 / 4 + delta / 4;
        self.srtt = self.srtt * 7 / 8 + sample / 8;
        self.samples = self.samples.saturating_add(1);
    }

    /// The smoothed round trip.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// The mean deviation of the round trip.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// How many samples were folded in.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The request timeout this estimate supports under `config`.
    pub fn timeout(&self, config: &TimeoutConfig) -> Duration {
        let t = self.srtt + self.rttvar * config.variance_multiplier;
        t.clamp(config.min, config.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_clamps() {
        let config = TimeoutConfig::default();
        let mut e = RttEstimator::new(Duration::from_millis(100));
        for _ in 0..50 {
            e.update(Duration::from_millis(100));
        }
        assert!(e.srtt() >= Duration::from_millis(99) && e.srtt() <= Duration::from_millis(101));
        assert!(e.rttvar() < Duration::from_millis(2));
        assert_eq!(
            e.timeout(&config),
            config.min.max(e.srtt() + e.rttvar() * 4)
        );
        let slow = RttEstimator::new(Duration::from_secs(60));
        assert_eq!(slow.timeout(&config), config.max);
    }

    #[test]
    fn variance_widens_timeout() {
        let config = TimeoutConfig {
            min: Duration::ZERO,
            ..TimeoutConfig::default()
        };
        let mut steady = RttEstimator::new(Duration::from_millis(200));
        let mut jittery = RttEstimator::new(Duration::from_millis(200));
        for i in 0..20 {
            steady.update(Duration::from_millis(200));
            jittery.update(Duration::from_millis(if i % 2 == 0 { 100 } else { 300 }));
        }
        assert!(jittery.timeout(&config) > steady.timeout(&config));
    }
}
