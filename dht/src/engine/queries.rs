//! The lookup machinery every query kind shares: starting a query, sending what its lookup
//! wants, taking answers, the store phase of puts and announcements, and finishing with the
//! kind's result.

use super::*;

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    pub(super) fn start(
        &mut self,
        now: Timestamp,
        kind: Kind<A>,
        target: Key,
        seeds: Vec<Contact<A>>,
        internal: bool,
    ) -> Result<QueryId, QueryError> {
        if self.queries.len() >= self.config.max_queries {
            return Err(QueryError::Busy {
                max: self.config.max_queries,
            });
        }
        self.run_jobs(now);
        let id = QueryId(self.next_query);
        self.next_query += 1;
        // A put or an announcement right after a lookup of the same key (a put's placement of
        // its root) stores to the peers that lookup found.
        let recent = matches!(kind, Kind::Announce | Kind::PutRecord { .. })
            .then(|| self.recent_closest(now, &target))
            .flatten();
        let mut candidates = self.table.closest(&target, self.config.k);
        candidates.extend(seeds);
        // A fetch's holder lookups run wider (a get waits on them), and α wide to the end (a
        // fetch runs many at once).
        let of_fetch = matches!(&kind, Kind::Holders { fetch: Some(_), .. });
        let alpha = if of_fetch {
            self.config.fetch.alpha.max(1)
        } else {
            self.config.alpha
        };
        let mut lookup = Lookup::new(
            target,
            self.local,
            candidates,
            self.config.k,
            alpha,
            self.config.disjoint_paths,
        )
        .with_size_estimate(self.table.log2_size_estimate(self.config.k));
        if of_fetch {
            lookup = lookup.alpha_to_the_end();
        }
        self.table.mark_refreshed(&target, now);
        let deadline = now + self.config.query_timeout;
        self.timers.push(Reverse((deadline, Timer::Query(id))));
        self.queries.insert(
            id,
            Query {
                kind,
                lookup,
                phase: Phase::Lookup,
                stats: QueryStats {
                    started: now,
                    ..QueryStats::default()
                },
                deadline,
                internal,
            },
        );
        match recent {
            Some(peers) => self.store_phase(now, id, peers),
            None => self.advance(now, id),
        }
        Ok(id)
    }

    /// Sends what the lookup wants sent; moves on when it has ended.
    pub(super) fn advance(&mut self, now: Timestamp, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        if !matches!(q.phase, Phase::Lookup) {
            return;
        }
        let body = match &q.kind {
            Kind::GetRecord { .. } => RequestBody::FindValue {
                key: *q.lookup.target(),
            },
            Kind::Holders { fetch, .. } => RequestBody::GetProviders {
                key: *q.lookup.target(),
                with_chunk: fetch.is_some_and(|(f, _)| self.fetches.of_lone_chunks(f)),
            },
            // Every dead peer met takes a place in the answers the lookup gets; ask for two more
            // per failure (up to 2k) so the k closest *live* peers still fit (the 300-engine
            // test in netsim/tests/scenarios.rs with a third of the peers dead finds all of them
            // only with this).
            _ => RequestBody::FindNode {
                target: *q.lookup.target(),
                count: (self.config.k + 2 * q.lookup.unexplained_failures()).min(2 * self.config.k)
                    as u16,
            },
        };
        let requests = q.lookup.next_requests();
        q.stats.requests += requests.len() as u32;
        let finished = requests.is_empty() && q.lookup.is_finished();
        for (path, to) in requests {
            self.send(now, to, body.clone(), Purpose::Lookup { query: id, path });
        }
        if finished {
            self.on_lookup_done(now, id);
        }
    }

    pub(super) fn on_lookup_response(
        &mut self,
        now: Timestamp,
        id: QueryId,
        path: PathId,
        from: Contact<A>,
        response: Response<A>,
    ) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let target = *q.lookup.target();
        if self.bans.is_banned(now, &from.id) {
            // Banned while the lookup ran: its answer is worth nothing.
            q.stats.failures += 1;
            q.lookup.on_failure(path, &from.id);
            self.advance(now, id);
            return;
        }
        let mut new_providers = Vec::new();
        let mut inline = None;
        let closer = match (&mut q.kind, response.body) {
            (
                Kind::Bootstrap
                | Kind::Refresh
                | Kind::FindNode
                | Kind::PutRecord { .. }
                | Kind::Announce
                | Kind::Place,
                ResponseBody::Nodes { closer },
            ) => Some(closer),
            (
                Kind::GetRecord {
                    best,
                    answers,
                    seen,
                },
                ResponseBody::Value { record, closer },
            ) => {
                if let Some(record) = record {
                    let checked = match record.verify(now) {
                        Ok(()) if record.key() == target => Ok(()),
                        Ok(()) => Err(true), // a record of another key: a lie
                        Err(e) => Err(e.is_forgery()),
                    };
                    if let Err(forged) = checked {
                        q.stats.failures += 1;
                        q.lookup.on_failure(path, &from.id);
                        if forged {
                            self.charge(now, &from, Offence::ForgedRecord);
                        } else {
                            self.scores.on_failure(&from.id, 1, now);
                        }
                        self.advance(now, id);
                        return;
                    }
                    *answers += 1;
                    seen.push((from.clone(), record.sequence));
                    if best.as_ref().is_none_or(|b| record.sequence > b.sequence) {
                        *best = Some(record);
                    }
                }
                Some(closer)
            }
            (
                Kind::Holders {
                    holders,
                    verified,
                    referrers,
                    announced,
                    ..
                },
                ResponseBody::Providers {
                    holds,
                    providers,
                    closer,
                    chunk,
                },
            ) => {
                if holds {
                    holders.push(from.clone());
                    verified.insert(from.id);
                    inline = chunk;
                }
                let mut named = false;
                for p in providers.into_iter().take(self.config.k) {
                    if p.id != self.local && p.addr.matches_id(&p.id) && !self.bans.shuns(now, &p) {
                        named |= !verified.contains(&p.id);
                        if !announced.iter().any(|a| a.id == p.id) {
                            announced.push(p.clone());
                            new_providers.push(p.clone());
                        }
                        holders.push(p);
                    }
                }
                if named {
                    referrers.insert(from.id);
                }
                holders.sort_by_key(|c| c.id);
                holders.dedup_by_key(|c| c.id);
                Some(closer)
            }
            _ => None, // an error, or an answer to another question
        };
        match closer {
            Some(mut closer) => {
                // A peer reached at a public address may only name peers at public ones: a
                // stranger on the internet must not steer dials into this node's LAN (peers
                // on a LAN or one machine name each other at private addresses).
                let public = from.addr.ip().is_some_and(is_public);
                closer.retain(|c| {
                    !self.bans.shuns(now, c) && (!public || c.addr.ip().is_none_or(is_public))
                });
                // A peer this table holds keeps the address it was seen at: a bogus address in
                // a third party's answer must not make its dial fail and cost it its place.
                for c in &mut closer {
                    if let Some(e) = self.table.entry(&c.id) {
                        c.addr = e.contact.addr.clone();
                    }
                }
                if self.scores.misroutes(&from.id) {
                    // Its referrals fail too often: an answer, but nothing in it is chased.
                    closer.clear();
                }
                q.stats.successes += 1;
                if let Some(r) = q.lookup.on_success(path, &from.id, closer) {
                    self.scores.on_referral(&r.referrer, r.ok, now);
                }
            }
            None => {
                q.stats.failures += 1;
                // A peer that answered with an error is alive: its referrer told the truth.
                if let Some(r) = q.lookup.on_failure(path, &from.id) {
                    self.scores.on_referral(&r.referrer, true, now);
                }
            }
        }
        let inline = match &q.kind {
            Kind::Holders {
                fetch: Some(chunk), ..
            } => inline.map(|bytes| (*chunk, bytes)),
            _ => None,
        };
        // A fetch gets each holder as soon as the lookup meets it: the first request need not
        // wait for the lookup to reach the closest peers, and the lookup goes on beside it.
        let stream = match &mut q.kind {
            Kind::Holders {
                holders,
                verified,
                fetch: Some(chunk),
                streamed,
                ..
            } => {
                let fresh: Vec<Contact<A>> = holders
                    .iter()
                    .filter(|h| streamed.insert(h.id))
                    .cloned()
                    .collect();
                (!fresh.is_empty()).then(|| (*chunk, fresh, verified.clone()))
            }
            _ => None,
        };
        let done_early = match &q.kind {
            // A quorum of answers, unless they disagree: then some peers hold an old version
            // (after a partition, or while an update spreads) and the lookup runs to its end,
            // where the newest it met wins.
            Kind::GetRecord {
                answers,
                seen,
                best,
            } => {
                let newest = best.as_ref().map_or(0, |b| b.sequence);
                *answers >= self.config.record_quorum.max(1)
                    && seen.iter().all(|(_, seq)| *seq == newest)
            }
            // Enough live holders: those that answered that they hold it, plus at most one
            // claim per responder about others.
            Kind::Holders {
                verified,
                referrers,
                tried,
                want,
                ..
            } => {
                let fresh = verified.difference(tried).count();
                let claims = referrers
                    .iter()
                    .filter(|r| !verified.contains(r) && !tried.contains(r))
                    .count();
                fresh + claims >= *want
            }
            _ => false,
        };
        if !new_providers.is_empty() {
            // Remembered as they come: a get may read the root before this lookup ends, and
            // fetches of this content already running take them as holders of every chunk.
            if let Kind::Holders { announced, .. } = &q.kind
                && !announced.is_empty()
            {
                self.recent_providers.insert(target, announced.clone());
            }
            self.rank(&mut new_providers);
            self.with_fetches(now, |fetches, rtt, out| {
                fetches.on_providers(now, &target, new_providers, rtt, out)
            });
        }
        // The chunk came with the answer: the lookup has done its work (before the holders
        // it met are streamed, so that none is asked for the bytes again).
        let arrived =
            inline.is_some_and(|(chunk, bytes)| self.on_inline(now, chunk, target, &from, bytes));
        let done_early = done_early || arrived;
        if let Some((chunk, mut fresh, verified)) = stream.filter(|_| !done_early) {
            self.rank(&mut fresh);
            self.with_fetches(now, |fetches, rtt, out| {
                fetches.on_holders_found(now, chunk, fresh, verified, rtt, out)
            });
        }
        if done_early {
            self.finish(now, id, false);
        } else {
            self.advance(now, id);
        }
    }

    /// A holder's answer to the lookup for chunk `key` of a fetch carried `bytes`: whether they are
    /// the chunk's (then handed on as [`Event::ChunkInline`]). Bytes that are not are a corrupt
    /// chunk, charged as one.
    fn on_inline(
        &mut self,
        now: Timestamp,
        (fetch, index): (FetchId, u64),
        key: Key,
        from: &Contact<A>,
        bytes: Vec<u8>,
    ) -> bool {
        if bytes.len() > MAX_INLINE_CHUNK || Key::hash(&bytes) != key {
            self.charge(now, from, Offence::CorruptChunk);
            return false;
        }
        let deadline = {
            let rtt = rtt_of(&self.scores, self.config.timeouts.initial);
            self.fetches.on_inline(now, (fetch, index), from, &rtt)
        };
        let Some(deadline) = deadline else {
            return true; // had already: nothing to hand on
        };
        self.timers
            .push(Reverse((deadline, Timer::Fetch(fetch, index))));
        self.events.push_back(Event::ChunkInline {
            fetch,
            index,
            chunk: key,
            from: from.clone(),
            bytes,
        });
        true
    }

    pub(super) fn on_lookup_done(&mut self, now: Timestamp, id: QueryId) {
        let Some(q) = self.queries.get(&id) else {
            return;
        };
        let (closest, _) = q.lookup.closest_succeeded(self.config.k);
        if !closest.is_empty() {
            let target = *q.lookup.target();
            self.recent_closest.insert(target, (now, closest.clone()));
        }
        self.store_phase(now, id, closest);
    }

    /// The live peers a lookup of `target` found closest within the last
    /// [`RECENT_LOOKUP_TTL`], less any banned since.
    fn recent_closest(&self, now: Timestamp, target: &Key) -> Option<Vec<Contact<A>>> {
        let (at, closest) = self.recent_closest.get(target)?;
        if now.saturating_duration_since(*at) >= RECENT_LOOKUP_TTL {
            return None;
        }
        let closest: Vec<Contact<A>> = closest
            .iter()
            .filter(|p| !self.bans.under_ban(&p.id))
            .cloned()
            .collect();
        (!closest.is_empty()).then_some(closest)
    }

    /// After the lookup: a put or an announcement stores to `peers`; any other query ends.
    fn store_phase(&mut self, now: Timestamp, id: QueryId, peers: Vec<Contact<A>>) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let body = match &q.kind {
            Kind::PutRecord { record } => RequestBody::PutRecord {
                record: record.clone(),
            },
            Kind::Announce => RequestBody::AddProvider {
                key: *q.lookup.target(),
            },
            Kind::Bootstrap => {
                self.finish(now, id, false);
                self.refresh_older_than(now, Duration::ZERO);
                return;
            }
            _ => {
                self.finish(now, id, false);
                return;
            }
        };
        q.phase = Phase::Store {
            waiting: peers.len(),
            stored: 0,
            failed: 0,
        };
        q.stats.requests += peers.len() as u32;
        if peers.is_empty() {
            self.finish(now, id, false);
            return;
        }
        for to in peers {
            self.send(now, to, body.clone(), Purpose::Store { query: id });
        }
    }

    pub(super) fn on_store_outcome(&mut self, now: Timestamp, id: QueryId, ok: bool) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let Phase::Store {
            waiting,
            stored,
            failed,
        } = &mut q.phase
        else {
            return;
        };
        *waiting = waiting.saturating_sub(1);
        if ok {
            *stored += 1;
            q.stats.successes += 1;
        } else {
            *failed += 1;
            q.stats.failures += 1;
        }
        if *waiting == 0 {
            self.finish(now, id, false);
        }
    }

    /// Read repair: the peers that answered a read with an older version of `record` get
    /// this one, and this peer's own store keeps it (unless it holds a newer one), so that it
    /// remembers the newest version it has seen: a later read starts from it, and answers
    /// that roll the name back make that read run to the end of its lookup.
    fn repair_record(
        &mut self,
        now: Timestamp,
        record: &SignedRecord,
        seen: Vec<(Contact<A>, u64)>,
    ) {
        for (peer, seq) in seen {
            if seq < record.sequence {
                let body = RequestBody::PutRecord {
                    record: record.clone(),
                };
                self.send(now, peer, body, Purpose::Push);
            }
        }
        let key = record.key();
        if self
            .store
            .get(&key, now)
            .is_none_or(|held| held.sequence < record.sequence)
        {
            let _ = self.accept_record(now, record.clone());
        }
    }

    pub(super) fn finish(&mut self, now: Timestamp, id: QueryId, timed_out: bool) {
        let Some(q) = self.queries.remove(&id) else {
            return;
        };
        let k = self.config.k;
        let target = *q.lookup.target();
        let (closest, hops) = q.lookup.closest_succeeded(k);
        let mut stats = q.stats;
        stats.hops = hops;
        stats.duration = now.saturating_duration_since(stats.started);
        stats.timed_out = timed_out;
        let (stored, failed) = match q.phase {
            Phase::Store {
                stored,
                failed,
                waiting,
            } => (stored, failed + waiting),
            Phase::Lookup => (0, 0),
        };
        let result = match q.kind {
            Kind::Refresh => return,
            Kind::Bootstrap => {
                self.after_bootstrap(now, closest.len());
                QueryResult::Bootstrap { closest }
            }
            Kind::FindNode => QueryResult::FindNode { target, closest },
            Kind::GetRecord {
                best,
                answers,
                seen,
            } => {
                if let Some(record) = &best {
                    self.repair_record(now, record, seen);
                }
                QueryResult::GetRecord {
                    key: target,
                    record: best,
                    answers,
                }
            }
            Kind::PutRecord { .. } => QueryResult::PutRecord {
                key: target,
                stored,
                failed,
            },
            Kind::Announce => QueryResult::Announce {
                key: target,
                stored,
                failed,
            },
            Kind::Holders {
                mut holders,
                verified,
                announced,
                fetch: Some((fetch, index)),
                ..
            } => {
                if !announced.is_empty() {
                    self.recent_providers.insert(target, announced);
                }
                self.rank(&mut holders);
                self.with_fetches(now, |fetches, rtt, out| {
                    fetches.on_holders(now, (fetch, index), holders, verified, rtt, out)
                });
                return;
            }
            Kind::Holders {
                holders, announced, ..
            } => {
                if !announced.is_empty() {
                    self.recent_providers.insert(target, announced);
                }
                QueryResult::Holders {
                    key: target,
                    holders,
                    closest,
                }
            }
            Kind::Place => {
                let (peers, local) =
                    placement::placement(closest, &self.local, &target, self.config.replication);
                QueryResult::Placement {
                    key: target,
                    peers,
                    local,
                }
            }
        };
        if !q.internal {
            self.events
                .push_back(Event::QueryFinished { id, result, stats });
        } else if matches!(result, QueryResult::Announce { .. }) {
            self.announce_due(now); // the next in line
        }
    }

    pub(super) fn send(
        &mut self,
        now: Timestamp,
        to: Contact<A>,
        body: RequestBody,
        purpose: Purpose,
    ) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let timeout = self.scores.timeout(&to.id, &self.config.timeouts);
        let deadline = now + timeout;
        self.timers.push(Reverse((deadline, Timer::Request(id))));
        if matches!(purpose, Purpose::Lookup { .. }) {
            self.timers
                .push(Reverse((now + timeout / 2, Timer::Stall(id))));
        }
        self.pending.insert(
            id,
            Pending {
                to: to.clone(),
                sent: now,
                deadline,
                purpose,
            },
        );
        self.transmits.push_back(Transmit {
            id,
            to,
            request: Request::new(body),
        });
    }
}

/// Whether `ip` can be reached across the internet: not loopback, private, link-local, shared
/// (CGNAT), documentation, benchmarking, multicast or unspecified.
pub(crate) fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared address space
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}
