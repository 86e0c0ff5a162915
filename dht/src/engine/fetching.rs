//! Fetches of content as engine commands: the planner in `crate::fetch` decides, this carries
//! its decisions out (holder lookups, chunk requests as events, timers, scores, announcing).

use super::*;

impl<A: Address, S: RecordStore<A>> Dht<A, S> {
    /// Starts fetching the content under `root` (a file's root manifest, if the caller has
    /// one), to which chunks are then added with [`Dht::add_chunks`]; see the `fetch` module
    /// for what the engine decides. Peers that announced `root` (found by the lookup that
    /// fetched the root manifest) hold all of it, so they are every chunk's first holders, and a
    /// chunk is looked up on its own only when they fail it. With `announce`, this peer
    /// announces itself as a provider of `root` when a fetch that received every chunk ends.
    pub fn start_fetch(
        &mut self,
        root: Option<Key>,
        announce: bool,
    ) -> Result<FetchId, QueryError> {
        let mut providers = root
            .and_then(|r| self.recent_providers.get(&r))
            .cloned()
            .unwrap_or_default();
        providers.retain(|p| !self.bans.under_ban(&p.id));
        self.fetches
            .start(root, announce, providers)
            .ok_or(QueryError::Busy {
                max: self.config.fetch.max_fetches,
            })
    }

    /// Adds chunks to a fetch, in the order the caller will use them; returns the index of the
    /// first (indices count from 0 in the order added), or `None` for an unknown fetch.
    pub fn add_chunks(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        chunks: impl IntoIterator<Item = Key>,
    ) -> Option<u64> {
        self.run_jobs(now);
        self.with_fetches(now, |fetches, rtt, out| {
            fetches.add(now, fetch, chunks, rtt, out)
        })
    }

    /// The outcome of an [`Event::FetchChunk`] request to `from`.
    pub fn handle_chunk(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        index: u64,
        from: &Key,
        outcome: ChunkOutcome,
    ) {
        self.run_jobs(now);
        self.with_fetches(now, |fetches, rtt, out| {
            fetches.on_chunk(now, (fetch, index), from, outcome, rtt, out)
        });
    }

    /// The caller has used chunk `index` of `fetch` (written it out, in order): it leaves the
    /// fetch's window, making room for the next request.
    pub fn release_chunk(&mut self, now: Timestamp, fetch: FetchId, index: u64) {
        self.with_fetches(now, |fetches, rtt, out| {
            fetches.release(now, fetch, index, rtt, out)
        });
    }

    /// Ends a fetch, finished or abandoned; one that received every chunk announces its root.
    pub fn end_fetch(&mut self, now: Timestamp, fetch: FetchId) {
        let mut out = Vec::new();
        self.fetches.end(fetch, &mut out);
        self.apply_fetch(now, out);
    }

    /// Fetches in progress.
    pub fn fetches_in_progress(&self) -> usize {
        self.fetches.len()
    }

    /// Runs `f` on the fetches with the round-trip ranking, then carries out what they decided.
    pub(super) fn with_fetches<T>(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut Fetches<A>, &dyn Fn(&Key) -> Duration, &mut Vec<Action<A>>) -> T,
    ) -> T {
        let mut out = Vec::new();
        let result = {
            let rtt = rtt_of(&self.scores, self.config.timeouts.initial);
            f(&mut self.fetches, &rtt, &mut out)
        };
        self.apply_fetch(now, out);
        result
    }

    /// Carries out what the fetches decided.
    pub(super) fn apply_fetch(&mut self, now: Timestamp, actions: Vec<Action<A>>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::FindHolders {
                    fetch,
                    index,
                    key,
                    tried,
                } => {
                    let kind = self.holders_kind(Some((fetch, index)), tried);
                    if self.start(now, kind, key, Vec::new(), true).is_err() {
                        // Too many queries: as if the lookup found nobody (a later one retries).
                        let mut out = Vec::new();
                        {
                            let rtt = rtt_of(&self.scores, self.config.timeouts.initial);
                            self.fetches.on_holders(
                                now,
                                (fetch, index),
                                Vec::new(),
                                BTreeSet::new(),
                                &rtt,
                                &mut out,
                            );
                        }
                        queue.extend(out);
                    }
                }
                Action::Request {
                    fetch,
                    index,
                    chunk,
                    from,
                    deadline,
                } => {
                    self.timers
                        .push(Reverse((deadline, Timer::Fetch(fetch, index))));
                    self.events.push_back(Event::FetchChunk {
                        fetch,
                        index,
                        chunk,
                        from,
                    });
                }
                Action::Wake { at, fetch, index } => {
                    self.timers.push(Reverse((at, Timer::Fetch(fetch, index))));
                }
                Action::Failed { fetch, error } => {
                    self.events.push_back(Event::FetchFailed { fetch, error });
                }
                Action::Outcome { peer, ok, offence } => match (ok, offence) {
                    (true, _) => self.scores.on_success(&peer, now),
                    (false, Some(offence)) => self.report(now, &peer, None, offence),
                    (false, None) => self.scores.on_failure(&peer, 1, now),
                },
                Action::Announce { root } => {
                    let _ = self.start(now, Kind::Announce, root, Vec::new(), true);
                }
            }
        }
    }
}
