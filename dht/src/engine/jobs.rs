//! Periodic work, run from any input once [`JOBS_INTERVAL`] has passed: record expiry, bucket
//! refresh (Kademlia §2.3), storing again what this peer published or announces (§2.5), the
//! repair audit and handoffs (`custody.rs`), and pinging again peers dropped for failures.

use super::*;

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    pub(super) fn run_jobs(&mut self, now: Timestamp) {
        if now < self.next_jobs {
            return;
        }
        self.next_jobs = now + JOBS_INTERVAL;
        self.store.remove_expired(now);
        for peer in self.bans.expire(now) {
            self.events.push_back(Event::BanLifted { peer });
        }
        let lapsed: Vec<Key> = self
            .unconfirmed
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= UNCONFIRMED_LAPSE)
            .map(|(k, _)| *k)
            .collect();
        for key in lapsed {
            self.release(&key);
            self.events.push_back(Event::Release { key });
        }
        if let Some(interval) = self.config.refresh_interval {
            self.refresh_older_than(now, interval);
        }
        self.republish(now);
        self.audit(now);
        self.progress_handoffs(now);
        self.retry_dropped(now, RETRIES_PER_RUN);
    }

    /// Pings again the peers dropped for not answering whose time has come (at most `limit`):
    /// one that answers is back in the table (`on_alive`), one that does not waits longer.
    pub(super) fn retry_dropped(&mut self, now: Timestamp, limit: usize) {
        let due: Vec<Contact<A>> = self
            .dropped
            .values()
            .filter(|d| d.next <= now)
            .take(limit)
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

    /// Stores this peer's records again on the closest peers of the moment every
    /// `republish_interval`, asks for a renewal of each at half its lifetime, and announces
    /// again every half `provider_ttl`. Queries beyond `max_queries` wait for the next run.
    fn republish(&mut self, now: Timestamp) {
        self.published.retain(|_, p| p.record.expires > now);
        let interval = self.config.republish_interval;
        let mut due = Vec::new();
        let keys: Vec<Key> = self.published.keys().copied().collect();
        for key in &keys {
            self.ask_renewal(now, key);
        }
        for p in self.published.values() {
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
        self.announce_due(now);
    }

    /// Starts the announcements that are due — never made ([`Dht::announce_later`]), or made
    /// half a `provider_ttl` ago — at most [`BACKGROUND_ANNOUNCES`] running at once, so that a
    /// node with thousands of pinned roots does not crowd out its user's queries; each that
    /// ends starts the next.
    pub(super) fn announce_due(&mut self, now: Timestamp) {
        // Not from within itself (an announcement with nobody to ask ends at once, and would
        // start the next from inside this loop), and not before there is a peer to tell.
        if self.announcing_now || self.announcing.is_empty() {
            return;
        }
        if self.table.len() == 0 {
            self.announce_when_peers = true;
            return;
        }
        self.announce_when_peers = false;
        let running = self
            .queries
            .values()
            .filter(|q| q.internal && matches!(q.kind, Kind::Announce))
            .count();
        let room = BACKGROUND_ANNOUNCES.saturating_sub(running);
        if room == 0 {
            return;
        }
        let every = self.config.provider_ttl / 2;
        let due: Vec<Key> = self
            .announcing
            .iter()
            .filter(|(_, at)| at.is_none_or(|at| now.saturating_duration_since(at) >= every))
            .map(|(k, _)| *k)
            .take(room)
            .collect();
        self.announcing_now = true;
        for key in due {
            self.announcing.insert(key, Some(now));
            if self
                .start(now, Kind::Announce, key, Vec::new(), true)
                .is_err()
            {
                self.announcing.insert(key, None);
                break;
            }
        }
        self.announcing_now = false;
    }

    /// Asks the node to renew the record it published under `key` once it has lived half its
    /// lifetime (once per publication).
    pub(super) fn ask_renewal(&mut self, now: Timestamp, key: &Key) {
        let Some(p) = self.published.get_mut(key) else {
            return;
        };
        let left = p.record.expires.saturating_duration_since(now);
        if !p.renewal_asked && left <= p.ttl / 2 {
            p.renewal_asked = true;
            self.events.push_back(Event::RenewRecord {
                record: p.record.clone(),
                ttl: p.ttl,
            });
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
