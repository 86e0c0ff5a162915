//! Periodic work, run from any input once [`JOBS_INTERVAL`] has passed: record expiry, bucket
//! refresh (Kademlia §2.3), and storing again what this peer published or announces (§2.5).

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
        self.republish(now);
        self.audit(now);
        self.retry_dropped(now);
    }

    /// Pings again the peers dropped for not answering whose time has come (at most 32 a run):
    /// one that answers is back in the table (`on_alive`), one that does not waits longer.
    fn retry_dropped(&mut self, now: Timestamp) {
        let due: Vec<Contact<A>> = self
            .dropped
            .values()
            .filter(|d| d.next <= now)
            .take(32)
            .map(|d| d.contact.clone())
            .collect();
        for contact in due {
            if let Some(d) = self.dropped.get_mut(&contact.id) {
                // Not asked again before this ping's outcome.
                d.next = Timestamp::NEVER;
            }
            self.send(now, contact, RequestBody::Ping, Purpose::Retry);
        }
    }

    /// Checks the next held chunks (as many as spread every one over `repair_interval`, at
    /// most `repair_budget`): asks each of its `replication` closest peers, as this peer's table
    /// knows them, whether it holds it (`GetProviders`); the answers and failures do the rest
    /// (a copy to each that lacks it, a failing peer dropped and the closest sets repaired).
    /// Chunks this peer is not among the closest of are left to the peers that are.
    fn audit(&mut self, now: Timestamp) {
        if self.held.is_empty() {
            return;
        }
        let interval = self.config.repair_interval;
        let start = match self.audit_cursor {
            Some(next) => next,
            // A round ended: the next begins `repair_interval` after it began.
            None if self
                .audit_round
                .is_some_and(|began| now.saturating_duration_since(began) < interval) =>
            {
                return;
            }
            None => {
                self.audit_round = Some(now);
                Key::from_bytes([0; 32])
            }
        };
        // Spread over the interval: the round's share of one jobs run, within the budget.
        let runs = (interval.as_secs() / JOBS_INTERVAL.as_secs()).max(1);
        let due = (self.held.len() as u64).div_ceil(runs) as usize;
        let count = due.clamp(1, self.config.repair_budget.max(1));
        let keys: Vec<Key> = self.held.range(start..).take(count).copied().collect();
        self.audit_cursor = keys.last().and_then(|last| {
            self.held
                .range((std::ops::Bound::Excluded(*last), std::ops::Bound::Unbounded))
                .next()
                .copied()
        });
        let r = self.config.replication.max(1);
        for key in keys {
            let peers = self.table.closest(&key, r);
            let d_local = key.distance(&self.local);
            // Responsible: fewer than r known peers are closer than this one.
            let closer = peers
                .iter()
                .filter(|c| key.distance(&c.id) < d_local)
                .count();
            if closer >= r {
                continue;
            }
            for peer in peers.into_iter().take(r - 1) {
                self.send(
                    now,
                    peer,
                    RequestBody::GetProviders { key },
                    Purpose::Audit { key },
                );
            }
        }
    }

    /// Stores this peer's records again on the closest peers of the moment every
    /// `republish_interval`, asks for a renewal of each at half its lifetime, and announces
    /// again every half `provider_ttl`. Queries beyond `max_queries` wait for the next run.
    fn republish(&mut self, now: Timestamp) {
        self.published.retain(|_, p| p.record.expires > now);
        let interval = self.config.republish_interval;
        let mut due = Vec::new();
        for p in self.published.values_mut() {
            let left = p.record.expires.saturating_duration_since(now);
            if !p.renewal_asked && left <= p.ttl / 2 {
                p.renewal_asked = true;
                self.events.push_back(Event::RenewRecord {
                    record: p.record.clone(),
                    ttl: p.ttl,
                });
            }
            if now.saturating_duration_since(p.at) >= interval {
                due.push(p.record.clone());
            }
        }
        for record in due {
            let key = record.key();
            if self
                .start(now, Kind::PutRecord { record }, key, Vec::new(), true)
                .is_err()
            {
                break;
            }
            if let Some(p) = self.published.get_mut(&key) {
                p.at = now;
            }
        }
        let every = self.config.provider_ttl / 2;
        let due: Vec<Key> = self
            .announcing
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= every)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if self
                .start(now, Kind::Announce, key, Vec::new(), true)
                .is_err()
            {
                break;
            }
            self.announcing.insert(key, now);
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
