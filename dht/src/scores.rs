//! What the engine remembers about individual peers: round trips, reliability, request budget.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{RateLimit, TimeoutConfig};
use crate::{Key, RttEstimator, Timestamp};

/// Round trip and reliability of one peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerScore {
    /// Round-trip estimate, once measured.
    pub rtt: Option<RttEstimator>,
    /// Requests the peer answered.
    pub successes: u32,
    /// Requests that failed, timed out, or were answered with bad data.
    pub failures: u32,
    /// Peers it named in lookup answers that then answered (halved with `referrals_failed`
    /// whenever their sum passes 64, so the figure follows the peer's recent answers).
    pub referrals_ok: u32,
    /// Peers it named in lookup answers that then failed.
    pub referrals_failed: u32,
    /// Requests to it that timed out since it last answered: each doubles its timeout (RFC
    /// 6298 §5.5), so a peer slowed by load is not dropped for two answers a little late.
    pub timeouts_in_a_row: u8,
    last_seen: Timestamp,
}

impl PeerScore {
    /// Share of requests answered, with one imagined success and failure as a prior so a new
    /// peer scores 0.5.
    pub fn reliability(&self) -> f64 {
        (f64::from(self.successes) + 1.0)
            / (f64::from(self.successes) + f64::from(self.failures) + 2.0)
    }

    /// Whether the peers it names in lookup answers fail too often to be worth chasing: at
    /// least 4 failed and more than a third of all. An honest peer's referrals fail only when
    /// peers left since it last heard of them; a misrouter's made-up ones all fail.
    pub fn misroutes(&self) -> bool {
        self.referrals_failed >= 4 && 2 * self.referrals_failed > self.referrals_ok
    }
}

/// Doublings of a peer's timeout after requests to it timed out in a row (at most 8×).
pub(crate) const MAX_BACKOFF: u8 = 3;

/// Scores of the peers we met, bounded.
#[derive(Debug)]
pub(crate) struct Scores {
    peers: HashMap<Key, PeerScore>,
    /// Over all samples: the timeout for a peer never measured.
    global: Option<RttEstimator>,
    max: usize,
}

impl Scores {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            peers: HashMap::new(),
            global: None,
            max: max.max(1),
        }
    }

    pub(crate) fn get(&self, id: &Key) -> Option<&PeerScore> {
        self.peers.get(id)
    }

    pub(crate) fn rtt(&self, id: &Key) -> Option<Duration> {
        self.peers.get(id).and_then(|s| s.rtt).map(|r| r.srtt())
    }

    /// The timeout of a request to `id`: from its own round trips once measured. A peer never
    /// measured may sit anywhere in the network's spread of round trips, so it gets twice what the
    /// network-wide estimate supports (netsim: with the estimate alone, peers 250–300 ms away
    /// timed out and fell out of lookups and routing tables).
    ///
    /// Each timeout since the peer last answered doubles it, up to [`MAX_BACKOFF`] doublings
    /// and the ceiling (RFC 6298 §5.5, TCP's backoff): a loaded peer answering just past its
    /// estimate (a machine busy with a put) keeps its place in the routing tables, which drop a
    /// peer after `max_failures` in a row, while a dead one costs only a little more.
    pub(crate) fn timeout(&self, id: &Key, config: &TimeoutConfig) -> Duration {
        let score = self.peers.get(id);
        let base = match (score.and_then(|s| s.rtt), self.global) {
            (Some(rtt), _) => rtt.timeout(config),
            (None, Some(global)) => (global.timeout(config) * 2).clamp(config.min, config.max),
            (None, None) => config.initial.clamp(config.min, config.max),
        };
        let backoff = score.map_or(0, |s| s.timeouts_in_a_row.min(MAX_BACKOFF));
        (base * (1u32 << backoff)).min(config.max)
    }

    /// A request to `id` timed out.
    pub(crate) fn on_timeout(&mut self, id: &Key, now: Timestamp) {
        let s = self.entry(id, now);
        s.timeouts_in_a_row = s.timeouts_in_a_row.saturating_add(1);
    }

    pub(crate) fn on_rtt(&mut self, id: &Key, sample: Duration, now: Timestamp) {
        let s = self.entry(id, now);
        match &mut s.rtt {
            Some(r) => r.update(sample),
            None => s.rtt = Some(RttEstimator::new(sample)),
        }
        s.timeouts_in_a_row = 0;
        match &mut self.global {
            Some(r) => r.update(sample),
            None => self.global = Some(RttEstimator::new(sample)),
        }
    }

    pub(crate) fn on_success(&mut self, id: &Key, now: Timestamp) {
        let s = self.entry(id, now);
        s.successes = s.successes.saturating_add(1);
    }

    /// A peer `id` named in a lookup answer answered (`ok`) or failed.
    pub(crate) fn on_referral(&mut self, id: &Key, ok: bool, now: Timestamp) {
        let s = self.entry(id, now);
        if ok {
            s.referrals_ok = s.referrals_ok.saturating_add(1);
        } else {
            s.referrals_failed = s.referrals_failed.saturating_add(1);
        }
        if s.referrals_ok + s.referrals_failed > 64 {
            s.referrals_ok /= 2;
            s.referrals_failed /= 2;
        }
    }

    /// Whether `id`'s lookup answers are to be ignored (see [`PeerScore::misroutes`]).
    pub(crate) fn misroutes(&self, id: &Key) -> bool {
        self.peers.get(id).is_some_and(PeerScore::misroutes)
    }

    pub(crate) fn on_failure(&mut self, id: &Key, weight: u32, now: Timestamp) {
        let s = self.entry(id, now);
        s.failures = s.failures.saturating_add(weight);
    }

    fn entry(&mut self, id: &Key, now: Timestamp) -> &mut PeerScore {
        if !self.peers.contains_key(id) && self.peers.len() >= self.max {
            evict_stalest(&mut self.peers, self.max, |s| s.last_seen);
        }
        let s = self.peers.entry(*id).or_default();
        s.last_seen = s.last_seen.max(now);
        s
    }
}

/// A token bucket per peer on inbound requests.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    config: RateLimit,
    buckets: HashMap<Key, (f64, Timestamp)>,
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimit) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Whether `peer` may make one more request at `now`.
    pub(crate) fn allow(&mut self, peer: &Key, now: Timestamp) -> bool {
        self.allow_n(peer, now, 1)
    }

    /// Whether `peer` may spend `cost` tokens at `now` (they are taken if so).
    pub(crate) fn allow_n(&mut self, peer: &Key, now: Timestamp, cost: u32) -> bool {
        let burst = f64::from(self.config.burst);
        if !self.buckets.contains_key(peer) && self.buckets.len() >= self.config.max_tracked_peers {
            let max = self.config.max_tracked_peers;
            evict_stalest(&mut self.buckets, max, |(_, last)| *last);
        }
        let (tokens, last) = self.buckets.entry(*peer).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * f64::from(self.config.per_second)).min(burst);
        *last = (*last).max(now);
        let cost = f64::from(cost.max(1));
        if *tokens >= cost {
            *tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Forgets the stalest quarter of `map` (at least one entry), ties broken by key so the outcome
/// is deterministic whatever the map's iteration order.
fn evict_stalest<V>(map: &mut HashMap<Key, V>, max: usize, last: impl Fn(&V) -> Timestamp) {
    let mut ages: Vec<(Timestamp, Key)> = map.iter().map(|(k, v)| (last(v), *k)).collect();
    ages.sort_unstable();
    let n = (max / 4).max(1);
    for (_, k) in ages.into_iter().take(n) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_refills() {
        let mut r = RateLimiter::new(RateLimit {
            burst: 3,
            per_second: 1,
            max_tracked_peers: 2,
        });
        let p = Key::hash(b"p");
        let t0 = Timestamp::EPOCH;
        assert!(r.allow(&p, t0) && r.allow(&p, t0) && r.allow(&p, t0));
        assert!(!r.allow(&p, t0));
        assert!(r.allow(&p, t0 + Duration::from_secs(1)));
        assert!(!r.allow(&p, t0 + Duration::from_secs(1)));
        // Bounded: a third peer evicts the stalest.
        r.allow(&Key::hash(b"q"), t0);
        r.allow(&Key::hash(b"s"), t0);
        assert!(r.buckets.len() <= 2);
    }

    #[test]
    fn scores_bounded_and_timeouts_adapt() {
        let config = TimeoutConfig::default();
        let mut s = Scores::new(4);
        let a = Key::hash(b"a");
        assert_eq!(s.timeout(&a, &config), config.initial);
        s.on_rtt(&a, Duration::from_millis(500), Timestamp::EPOCH);
        assert!(s.timeout(&a, &config) > Duration::from_millis(500));
        // An unmeasured peer now gets twice the network-wide estimate, not the initial guess.
        let b = Key::hash(b"b");
        assert_eq!(
            s.timeout(&b, &config),
            (s.timeout(&a, &config) * 2).min(config.max)
        );
        // Timeouts in a row double a peer's timeout, up to 8×; an answer ends the backoff.
        let measured = s.timeout(&a, &config);
        for doublings in [1u32, 2, 3, 3] {
            s.on_timeout(&a, Timestamp::EPOCH);
            assert_eq!(
                s.timeout(&a, &config),
                (measured * (1 << doublings)).min(config.max)
            );
        }
        s.on_rtt(&a, Duration::from_millis(500), Timestamp::EPOCH);
        assert!(s.timeout(&a, &config) < measured * 2);
        for i in 0..20u8 {
            s.on_success(&Key::hash(&[i]), Timestamp::from_micros(u64::from(i)));
        }
        assert!(s.peers.len() <= 4);
    }
}
