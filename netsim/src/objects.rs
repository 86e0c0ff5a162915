//! The content workload ([`Workload::Content`](crate::Workload::Content)): objects are put, then
//! got, through the engine's own placement and fetch state machines, over the links of
//! `content.rs`.
//!
//! - **Put.** Objects are published one every [`PUBLISH_SPACING`], each from a random ready
//!   honest node, which keeps every chunk (a real node pins what it put). For each chunk, the
//!   publisher runs the engine's `place` query, at most [`PLACE_WINDOW`] at once (as the node
//!   replicates with bounded concurrency), and sends the chunk over its uplink to every peer
//!   the placement names. A receiver stores the copy and `hold`s it in its engine if the engine
//!   says it `is_responsible` for it (the rule the node applies to an offered replica). The
//!   gets start once every placement has finished and every copy has arrived, or after a
//!   bounded wait.
//! - **Get.** `gets` gets spread evenly over the workload, each of an object drawn by
//!   popularity (Zipf, or uniform) from a random ready honest node that does not already hold
//!   it. The getter's engine fetches the object's root manifest alone (`start_fetch`,
//!   `add_chunks`), as a node must before it knows the rest, then its data chunks as a file of
//!   that root (the model's manifest is its size: the sim hands over the ids), and the sim
//!   answers each
//!   `Event::FetchChunk` by modelling the request: see [`Simulator::on_fetch_chunk`]. Chunks are
//!   released to the engine in order as they become contiguous (a consumer writing its output);
//!   the get ends when the last is released or on `Event::FetchFailed`. A getter that finished
//!   caches the chunks (the CDN case, bounded by the cache LRU) and `hold`s them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cairn_dht::{
    ChunkOutcome, Contact, FetchError, FetchId, Key, ProofOutcome, QueryResult, Timestamp,
};

use crate::adversary;
use crate::content::{self, Object, Popularity, Source};
use crate::scenario::Scenario;
use crate::sim::{Action, Simulator, Tracked};

/// Objects are published this far apart.
pub(crate) const PUBLISH_SPACING: Duration = Duration::from_millis(500);

/// Placement queries one publisher runs at once.
pub(crate) const PLACE_WINDOW: usize = 16;

/// How long a challenge of a peer that is gone takes to fail (a dial that gets no answer).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a challenge or of its answer on the wire (a chunk id, a nonce or a proof, and
/// framing).
const PROOF_MESSAGE_BYTES: u64 = 128;

/// The content workload's state.
#[derive(Debug, Default)]
pub(crate) struct ContentBook {
    pub(crate) objects: Vec<Object>,
    popularity: Popularity,
    pub(crate) publishes: Vec<PublishRun>,
    pub(crate) gets: Vec<GetRun>,
    /// Objects whose publication has started (or found no publisher).
    publishes_started: usize,
    /// Copies in transit from a publisher to a placed peer.
    pub(crate) copies_in_flight: usize,
    /// Copies placed peers accepted, and refused (offline, adversary, not responsible).
    pub(crate) replicas_stored: u64,
    pub(crate) replicas_refused: u64,
    /// Copies moved to a new closest peer on an engine's `Event::Replicate`, and accepted.
    pub(crate) replicas_moved: u64,
    /// Bytes sent for `Event::Replicate` (accepted or not): the repair traffic.
    pub(crate) repair_bytes: u64,
    /// Chunk bytes served to finished chunk requests, by origin (publisher or placed) copies
    /// and by cached ones.
    pub(crate) bytes_origin: u64,
    pub(crate) bytes_cache: u64,
    /// Gets in progress, by getter and the getter's fetch id: the get, and the object's chunk
    /// index of the fetch's index 0 (a get fetches the object's root manifest, its chunk 0,
    /// alone, then the rest).
    pub(crate) active: HashMap<(u32, FetchId), (usize, usize)>,
    /// Use counter for the caches' LRU order.
    tick: u64,
}

/// One object's publication.
#[derive(Clone, Debug, Default)]
pub(crate) struct PublishRun {
    pub(crate) publisher: Option<u32>,
    /// Next chunk to place.
    next: usize,
    in_flight: usize,
    /// Placements finished (whatever they found).
    pub(crate) placed: usize,
}

/// One get.
#[derive(Clone, Debug, Default)]
pub(crate) struct GetRun {
    pub(crate) object: usize,
    pub(crate) getter: Option<u32>,
    pub(crate) start: Timestamp,
    /// The first `Event::FetchChunk`.
    pub(crate) first_holder: Option<Timestamp>,
    /// The root manifest received.
    pub(crate) root: Option<Timestamp>,
    /// The first data chunk received: the file's first byte.
    pub(crate) first_byte: Option<Timestamp>,
    pub(crate) end: Option<Timestamp>,
    pub(crate) success: bool,
    /// The engine refused to start it (too many fetches).
    pub(crate) refused: bool,
    /// What the getter's downlink alone would need for the object.
    pub(crate) downlink_bound: Duration,
    /// Distinct holders asked.
    pub(crate) holders: BTreeSet<Key>,
    /// Chunks received, by index.
    pub(crate) received: Vec<bool>,
    /// Chunks released to the engine (all below this index).
    pub(crate) released: usize,
    /// Why the engine gave up, if it did.
    pub(crate) error: Option<FetchError>,
}

impl ContentBook {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let objects = (0..scenario.objects as u64)
            .map(|i| Object::new(scenario.seed, i, scenario.object_bytes))
            .collect();
        Self {
            objects,
            popularity: Popularity::new(scenario.objects, scenario.zipf),
            publishes: vec![PublishRun::default(); scenario.objects],
            ..Self::default()
        }
    }

    /// Whether every placement has finished and every copy has arrived.
    pub(crate) fn published(&self) -> bool {
        self.copies_in_flight == 0
            && self.publishes_started == self.objects.len()
            && self
                .publishes
                .iter()
                .zip(&self.objects)
                .all(|(p, o)| p.publisher.is_none_or(|_| p.placed == o.chunks.len()))
    }

    /// Gets started that have not ended (their getter may have gone).
    pub(crate) fn unfinished(&self) -> usize {
        self.gets
            .iter()
            .filter(|g| g.getter.is_some() && !g.refused && g.end.is_none())
            .count()
    }

    fn tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

impl Simulator {
    /// Publishes object `index` from a random ready honest node.
    pub(crate) fn publish_object(&mut self, index: usize) {
        self.work.content.publishes_started += 1;
        let Some(origin) = self.random_honest(|n| n.ready, None) else {
            return;
        };
        let chunks = self.work.content.objects[index].chunks.clone();
        for (i, key) in chunks.iter().enumerate() {
            let size = self.work.content.objects[index].chunk_size(i);
            self.keep(origin, *key, size, Source::Publisher);
        }
        self.work.content.publishes[index].publisher = Some(origin);
        // The publisher announces the object's root (its chunk 0), as a node's put does.
        let now = self.now;
        if let (Some(root), Some(engine)) =
            (chunks.first(), self.nodes[origin as usize].engine.as_mut())
        {
            let _ = engine.announce(now, *root);
        }
        self.place_more(index);
    }

    /// Starts placement queries for object `index` up to the window.
    fn place_more(&mut self, index: usize) {
        let Some(origin) = self.work.content.publishes[index].publisher else {
            return;
        };
        let now = self.now;
        let count = self.work.content.objects[index].chunks.len();
        // Bounded by the window and the chunk count.
        while self.work.content.publishes[index].in_flight < PLACE_WINDOW {
            let run = &mut self.work.content.publishes[index];
            if run.next >= count {
                break;
            }
            let chunk = run.next;
            run.next += 1;
            let key = self.work.content.objects[index].chunks[chunk];
            let Some(engine) = self.nodes[origin as usize].engine.as_mut() else {
                // The publisher left: what is not placed stays unplaced.
                self.work.content.publishes[index].placed = count;
                return;
            };
            match engine.place(now, key) {
                Ok(q) => {
                    self.tracked.insert(
                        (origin, q),
                        Tracked::Place {
                            object: index,
                            chunk,
                        },
                    );
                    self.work.content.publishes[index].in_flight += 1;
                }
                // Too many queries: this chunk stays on the publisher alone.
                Err(_) => self.work.content.publishes[index].placed += 1,
            }
        }
        self.flush(origin);
    }

    /// A placement query finished: send the chunk to every peer it names.
    pub(crate) fn on_placed(
        &mut self,
        origin: u32,
        object: usize,
        chunk: usize,
        result: QueryResult<u32>,
    ) {
        let run = &mut self.work.content.publishes[object];
        run.in_flight -= 1;
        run.placed += 1;
        if let QueryResult::Placement { peers, .. } = result {
            let key = self.work.content.objects[object].chunks[chunk];
            let size = self.work.content.objects[object].chunk_size(chunk);
            for peer in peers {
                let Some(to) = self.slot_of(peer.addr) else {
                    self.work.content.replicas_refused += 1;
                    continue;
                };
                let at = self.transfer(origin, to, u64::from(size));
                self.work.content.copies_in_flight += 1;
                self.push(
                    at,
                    Action::Copy {
                        to,
                        chunk: key,
                        size,
                        moved: false,
                    },
                );
            }
        }
        self.place_more(object);
    }

    /// A copy arrived at `to`: it keeps it if its engine says it is responsible (the rule the
    /// node applies to an offered replica).
    pub(crate) fn on_copy(&mut self, to: u32, chunk: Key, size: u32, moved: bool) {
        self.work.content.copies_in_flight -= 1;
        let responsible = self.nodes[to as usize]
            .engine
            .as_ref()
            .is_some_and(|e| e.is_responsible(&chunk));
        if !(self.nodes[to as usize].online && responsible) {
            self.work.content.replicas_refused += 1;
            return;
        }
        self.keep(to, chunk, size, Source::Placed);
        if moved {
            self.work.content.replicas_moved += 1;
        } else {
            self.work.content.replicas_stored += 1;
        }
    }

    /// `slot`'s engine handed `key` over (`Event::Release`): its copy becomes cache.
    pub(crate) fn on_release(&mut self, slot: u32, key: Key) {
        let tick = self.work.content.tick();
        let node = &mut self.nodes[slot as usize];
        let evicted = node.store.demote(&key, tick);
        if let Some(engine) = node.engine.as_mut() {
            for old in &evicted {
                engine.release(old);
            }
        }
    }

    /// `slot`'s engine challenges `peer` over `key` (`Event::Challenge`): the node's proof
    /// exchange, modelled. An online honest peer that keeps the chunk for good (published or
    /// placed there; not a cached copy) proves it, one that does not says so, an adversary's proof is wrong, and a peer that is gone (or across a
    /// cut) is unreachable after [`DIAL_TIMEOUT`]. Answered after a round trip; each way
    /// costs [`PROOF_MESSAGE_BYTES`] of repair traffic.
    pub(crate) fn on_challenge(&mut self, slot: u32, key: Key, peer: Contact<u32>) {
        let (at, outcome) = match self.slot_of(peer.addr) {
            Some(dest) if self.nodes[dest as usize].online && !self.cut(slot, dest) => {
                let at = self.now + self.delay(slot, dest) + self.delay(dest, slot);
                let node = &self.nodes[dest as usize];
                let outcome = if node.adversary {
                    ProofOutcome::Invalid
                } else if node.store.keeps(&key) {
                    ProofOutcome::Valid
                } else {
                    ProofOutcome::Missing
                };
                (at, outcome)
            }
            _ => (self.now + DIAL_TIMEOUT, ProofOutcome::Unreachable),
        };
        self.work.content.repair_bytes += 2 * PROOF_MESSAGE_BYTES;
        self.push(
            at,
            Action::Proof {
                node: slot,
                chunk: key,
                peer: peer.id,
                outcome,
            },
        );
    }

    /// `slot`'s engine wants a copy of `key` on `to` (a peer joined or left the closest set, or
    /// the audit found it lacking): send it, if this node still has it.
    pub(crate) fn on_replicate(&mut self, slot: u32, key: Key, to: Contact<u32>) {
        let Some(size) = self.nodes[slot as usize].store.size(&key) else {
            return;
        };
        let Some(dest) = self.slot_of(to.addr) else {
            self.work.content.replicas_refused += 1;
            return;
        };
        let at = self.transfer(slot, dest, u64::from(size));
        self.work.content.copies_in_flight += 1;
        self.work.content.repair_bytes += u64::from(size);
        self.push(
            at,
            Action::Copy {
                to: dest,
                chunk: key,
                size,
                moved: true,
            },
        );
    }

    /// Stores a chunk on `slot` and tells its engine, releasing what the cache evicted.
    pub(crate) fn keep(&mut self, slot: u32, key: Key, size: u32, source: Source) {
        let tick = self.work.content.tick();
        let node = &mut self.nodes[slot as usize];
        let evicted = node.store.insert(key, size, source, tick);
        if let Some(engine) = node.engine.as_mut() {
            // A copy another peer pushed is unconfirmed until a third proves one too, as the
            // node's driver tells its engine (`Dht::hold_pushed`).
            match source {
                Source::Placed => engine.hold_pushed(self.now, key),
                Source::Publisher | Source::Cached => engine.hold(key),
            }
            for old in &evicted {
                engine.release(old);
            }
        }
    }

    /// Schedules a transfer of `bytes` from `from` to `to` requested now (see
    /// [`content::transfer`]); returns when it arrives.
    pub(crate) fn transfer(&mut self, from: u32, to: u32, bytes: u64) -> Timestamp {
        if from == to {
            return self.now;
        }
        let there = self.delay(to, from);
        let back = self.delay(from, to);
        let (a, b) = (from as usize, to as usize);
        let (sender, receiver) = if a < b {
            let (lo, hi) = self.nodes.split_at_mut(b);
            (&mut lo[a].link, &mut hi[0].link)
        } else {
            let (lo, hi) = self.nodes.split_at_mut(a);
            (&mut hi[0].link, &mut lo[b].link)
        };
        content::transfer(self.now, there, back, sender, receiver, bytes)
    }

    /// Starts get `index`.
    pub(crate) fn start_get(&mut self, index: usize) {
        let object = self.work.content.popularity.draw(&mut self.work_rng);
        let first = self.work.content.objects[object].chunks[0];
        let getter = self.random_honest(|n| n.ready && !n.store.contains(&first), None);
        let run = &mut self.work.content.gets[index];
        run.object = object;
        run.start = self.now;
        let Some(getter) = getter else {
            return;
        };
        run.getter = Some(getter);
        let bytes =
            self.work.content.objects[object].bytes + self.work.content.objects[object].root_bytes;
        run.downlink_bound = self.nodes[getter as usize].link.down_time(bytes);
        let chunks = self.work.content.objects[object].chunks.clone();
        run.received = vec![false; chunks.len()];
        let now = self.now;
        let Some(engine) = self.nodes[getter as usize].engine.as_mut() else {
            return;
        };
        // The root manifest is fetched alone, as a node fetches a root before it knows the
        // rest; its lookup finds who announced the object.
        let Ok(fetch) = engine.start_fetch(None, false) else {
            self.work.content.gets[index].refused = true;
            return;
        };
        self.work.content.active.insert((getter, fetch), (index, 0));
        if engine
            .add_chunks(now, fetch, chunks.into_iter().take(1))
            .is_none()
        {
            // More chunks than a fetch takes: the get cannot be made.
            engine.end_fetch(now, fetch);
            self.work.content.active.remove(&(getter, fetch));
            self.work.content.gets[index].refused = true;
        }
        self.flush(getter);
    }

    /// The getter's engine asks `from` for `chunk`: model the request. An honest holder online
    /// that has the chunk sends it over the two links; one without it answers "not found" a round
    /// trip later; a fake holder answers "not found" or sends garbage at link speed (half of
    /// them each, [`adversary::fake_holder_corrupts`]). A peer that is offline, or an address
    /// nobody has, never answers: the engine's own chunk timeout moves on, as a node's would
    /// when a dial hangs (the model has no "connection refused").
    pub(crate) fn on_fetch_chunk(
        &mut self,
        getter: u32,
        fetch: FetchId,
        index: u64,
        chunk: Key,
        from: Contact<u32>,
    ) {
        let Some(&(get, offset)) = self.work.content.active.get(&(getter, fetch)) else {
            return;
        };
        let index = index + offset as u64;
        let now = self.now;
        let run = &mut self.work.content.gets[get];
        run.first_holder.get_or_insert(now);
        run.holders.insert(from.id);
        let object = run.object;
        let Some(holder) = self.slot_of(from.addr) else {
            return;
        };
        let node = &self.nodes[holder as usize];
        if !node.online || node.id != from.id || self.cut(holder, getter) {
            return;
        }
        let size = {
            let o = &self.work.content.objects[object];
            usize::try_from(index).map_or(0, |i| o.chunk_size(i))
        };
        let (at, outcome, origin) = if node.adversary {
            if adversary::fake_holder_corrupts(self.scenario.seed, holder) {
                let at = self.transfer(holder, getter, u64::from(size));
                (at, ChunkOutcome::Corrupt, false)
            } else {
                let at = self.now + self.delay(getter, holder) + self.delay(holder, getter);
                (at, ChunkOutcome::NotFound, false)
            }
        } else {
            let tick = self.work.content.tick();
            match self.nodes[holder as usize].store.serve(&chunk, tick) {
                Some(source) => {
                    let at = self.transfer(holder, getter, u64::from(size));
                    (at, ChunkOutcome::Ok, source.is_origin())
                }
                None => {
                    let at = self.now + self.delay(getter, holder) + self.delay(holder, getter);
                    (at, ChunkOutcome::NotFound, false)
                }
            }
        };
        self.push(
            at,
            Action::ChunkDone {
                getter,
                fetch,
                index: index - offset as u64,
                from: from.id,
                outcome,
                size,
                origin,
            },
        );
    }

    /// A chunk request's outcome reaches the getter: tell its engine, release what is now
    /// contiguous, and end the get once every chunk is released.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_chunk_done(
        &mut self,
        getter: u32,
        fetch: FetchId,
        index: u64,
        from: Key,
        outcome: ChunkOutcome,
        size: u32,
        origin: bool,
    ) {
        let Some(&(get, offset)) = self.work.content.active.get(&(getter, fetch)) else {
            return; // the get ended (failed) before this arrived
        };
        let now = self.now;
        let Some(engine) = self.nodes[getter as usize].engine.as_mut() else {
            return; // the getter left
        };
        engine.handle_chunk(now, fetch, index, &from, outcome);
        let book = &mut self.work.content;
        let run = &mut book.gets[get];
        let i = usize::try_from(index).map_or(usize::MAX, |i| i + offset);
        if outcome == ChunkOutcome::Ok && run.received.get(i) == Some(&false) {
            // The engine takes good bytes whenever they come, even from a request it had
            // already timed out; so does the get.
            run.received[i] = true;
            if i == 0 {
                run.root.get_or_insert(now);
            } else {
                run.first_byte.get_or_insert(now);
            }
            if origin {
                book.bytes_origin += u64::from(size);
            } else {
                book.bytes_cache += u64::from(size);
            }
            // Bounded by the chunk count.
            while run.released < run.received.len() && run.received[run.released] {
                engine.release_chunk(now, fetch, (run.released - offset) as u64);
                run.released += 1;
            }
            if offset == 0 && run.released == 1 && run.received.len() > 1 {
                // The root came: fetch the rest as a file of that root (its announcers first),
                // announcing it once complete.
                engine.end_fetch(now, fetch);
                book.active.remove(&(getter, fetch));
                let object = run.object;
                let root = book.objects[object].chunks[0];
                let rest: Vec<Key> = book.objects[object].chunks[1..].to_vec();
                match engine.start_fetch(Some(root), true) {
                    Ok(next) => {
                        book.active.insert((getter, next), (get, 1));
                        engine.add_chunks(now, next, rest);
                    }
                    Err(_) => {
                        run.refused = true;
                        run.end = Some(now);
                    }
                }
            } else if run.released == run.received.len() {
                engine.end_fetch(now, fetch);
                run.end = Some(now);
                run.success = true;
                book.active.remove(&(getter, fetch));
                let object = run.object;
                for c in 0..book.objects[object].chunks.len() {
                    let key = self.work.content.objects[object].chunks[c];
                    let size = self.work.content.objects[object].chunk_size(c);
                    self.keep(getter, key, size, Source::Cached);
                }
            }
        }
        self.flush(getter);
    }

    /// The getter's engine gave up on a get.
    pub(crate) fn on_fetch_failed(&mut self, getter: u32, fetch: FetchId, error: FetchError) {
        let Some((get, _)) = self.work.content.active.remove(&(getter, fetch)) else {
            return;
        };
        let now = self.now;
        let run = &mut self.work.content.gets[get];
        run.end = Some(now);
        run.error = Some(error);
        if let Some(engine) = self.nodes[getter as usize].engine.as_mut() {
            engine.end_fetch(now, fetch);
        }
        // No flush: this runs inside the getter's flush, which goes on draining.
    }
}
