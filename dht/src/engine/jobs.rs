//! Periodic work, run from any input once [`JOBS_INTERVAL`] has passed: record expiry and bucket
//! refresh (Kademlia §2.3).

use super::*;

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    pub(super) fn run_jobs(&mut self, now: Timestamp) {
        if now < self.next_jobs {
            return;
        }
        self.next_jobs = now + JOBS_INTERVAL;
        self.store.remove_expired(now);
        if let Some(interval) = self.config.refresh_interval {
            self.refresh_older_than(now, interval);
        }
    }

    pub(super) fn refresh_older_than(&mut self, now: Timestamp, interval: Duration) -> usize {
        let mut started = 0;
        for bucket in self.table.stale_buckets(now, interval) {
            let target = self.local.random_in_bucket(bucket, &mut self.rng);
            if self
                .start(now, Kind::Refresh, target, Vec::new(), true)
                .is_err()
            {
                break;
            }
            started += 1;
        }
        started
    }
}
