//! Fetching content: which holder to ask for each chunk, how many requests at once, when to look
//! for holders again, retry, fail over, or give up.
//!
//! The caller (the node, or netsim) reads manifests, hands the chunk ids it needs to a fetch in
//! file order ([`Dht::add_chunks`](crate::Dht::add_chunks)), moves and verifies the bytes that
//! [`Event::FetchChunk`](crate::Event::FetchChunk) asks for, reports each outcome
//! ([`Dht::handle_chunk`](crate::Dht::handle_chunk)) and releases chunks in order as it uses them
//! ([`Dht::release_chunk`](crate::Dht::release_chunk)). Everything else is decided here:
//!
//! - **Holder lookups ahead of the download.** A holder lookup starts for every chunk within
//!   [`FetchConfig::lookahead`] of the first unreleased one, so on a high-latency network a large
//!   get is not one lookup per chunk in series.
//! - **Several holders at once.** Only the [`FetchConfig::window`] chunks from the first
//!   unreleased one are requested (the caller's memory bound, and never a window that later
//!   chunks fill while the first waits); each request goes to the untried holder of that chunk
//!   with the lowest expected wait, `(requests in flight to it + 1) × its round trip`,
//!   so a fast holder gets more of the window than a slow one.
//! - **Failover and retry on the engine's own timers.** A request that fails, times out
//!   ([`FetchConfig::chunk_timeout`] plus the holder's round trip), finds no chunk, or brings bytes
//!   that fail verification moves on to the chunk's next holder; when none is left, the holders
//!   are looked up again after a backoff, at most [`FetchConfig::lookups`] lookups per chunk.
//! - **Penalties.** A holder that answered a lookup that it holds the chunk and then does not
//!   serve it counts as lying, like one whose bytes fail verification; plain failures count as
//!   failed transfers. Both lower its rank for every later fetch.
//! - **Giving up**, with a [`FetchError`] naming the chunk, the holders tried and the lookups made.
//! - **Announcing**: a fetch of content with a root that received every chunk announces this peer
//!   as a provider of the root when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::{Contact, Key, Offence, Timestamp};

/// Identifies a fetch; events about it carry it back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FetchId(pub(crate) u64);

impl FetchId {
    /// The raw number, unique within one engine.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// What came of a chunk request the engine asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChunkOutcome {
    /// The bytes arrived and hash to the chunk id.
    Ok,
    /// The peer answered that it does not have the chunk.
    NotFound,
    /// The request failed: no connection, a broken stream, a refusal, a timeout of the caller's.
    Failed,
    /// Bytes arrived that do not hash to the chunk id.
    Corrupt,
    /// Good bytes arrived but the caller had no room for them: no one's fault; the chunk is
    /// asked of the same holder again.
    Dropped,
}

/// Why a fetch gave up.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error(
    "chunk {chunk:x} is held by no reachable peer (tried {holders_tried} holders in {lookups} lookups); try again later"
)]
pub struct FetchError {
    /// The chunk that could not be had.
    pub chunk: Key,
    /// Holders asked for it.
    pub holders_tried: usize,
    /// Holder lookups made for it.
    pub lookups: u32,
}

/// Limits and timers of fetches (part of [`crate::Config`]).
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Chunks from the first unreleased one that may be requested, per fetch: the caller's
    /// memory bound (window × the largest chunk: 32 MiB at most, 8 MiB at the average chunk).
    /// Default 32 (netsim, 10,000 nodes, 16 MiB objects: median get 1.10 s; 1.04 s at 64, for
    /// twice the memory; BENCHMARKS.md).
    pub window: usize,
    /// How far past the first unreleased chunk holder lookups run ahead. Default 64: a get is
    /// bound by holder lookups (one per chunk), not by the window (same runs, an older engine:
    /// median get 3.24 s at window 8 / lookahead 16, 1.53 s at 16 / 64, 1.23 s at 32 / 64).
    pub lookahead: usize,
    /// Requests in flight per holder lookup of a fetch (the `alpha` of the lookup). Default 6,
    /// twice the DHT's: a get waits on these lookups, and their requests are small next to the
    /// chunks they find (netsim, 10,000 nodes, 16 MiB objects: BENCHMARKS.md).
    pub alpha: usize,
    /// A chunk request with no outcome after this plus the holder's round trip counts as failed.
    /// Default 10 s (a 1 MiB chunk over a 1 Mbit/s uplink).
    pub chunk_timeout: Duration,
    /// Holder lookups per chunk before the fetch gives up. Default 3.
    pub lookups: u32,
    /// Wait before looking up a chunk's holders again; doubled each time. Default 250 ms.
    pub backoff: Duration,
    /// Fetches at once; more are refused with [`crate::QueryError::Busy`]. Default 64.
    pub max_fetches: usize,
    /// Chunks one fetch holds at once (added and not released). Default 65,536.
    pub max_chunks: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            window: 32,
            lookahead: 64,
            alpha: 6,
            chunk_timeout: Duration::from_secs(10),
            lookups: 3,
            backoff: Duration::from_millis(250),
            max_fetches: 64,
            max_chunks: 1 << 16,
        }
    }
}

/// What the engine must do for the fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action<A> {
    /// Start a holder lookup for chunk `index` of `fetch`; holders in `tried` failed it
    /// already and do not count toward ending the lookup.
    FindHolders {
        fetch: FetchId,
        index: u64,
        key: Key,
        tried: BTreeSet<Key>,
    },
    /// Ask `from` for the chunk (an [`crate::Event::FetchChunk`]) and wake at `deadline`.
    Request {
        fetch: FetchId,
        index: u64,
        chunk: Key,
        from: Contact<A>,
        deadline: Timestamp,
    },
    /// Call [`Fetches::on_wake`] for this chunk at `at`.
    Wake {
        at: Timestamp,
        fetch: FetchId,
        index: u64,
    },
    /// The fetch gave up.
    Failed { fetch: FetchId, error: FetchError },
    /// A transfer with `peer` went well or not; `offence` if it claimed the chunk and did not
    /// have it, or sent garbage.
    Outcome {
        peer: Key,
        ok: bool,
        offence: Option<Offence>,
    },
    /// Announce this peer as a provider of `root`.
    Announce { root: Key },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Needs a holder lookup.
    New,
    /// A holder lookup is running.
    Looking,
    /// Has untried holders, waits for room in the window.
    Ready,
    /// Requested from `from`, which has until `deadline`.
    Requesting { from: Key, deadline: Timestamp },
    /// Waits until `until` before looking up holders again.
    Backoff { until: Timestamp },
    /// Waits until `until` before asking its next holder (the caller had no room for it).
    Paused { until: Timestamp },
    /// The bytes are with the caller, not yet released.
    Done,
}

#[derive(Debug)]
struct Chunk<A> {
    key: Key,
    state: State,
    /// Holders not tried yet, best first.
    holders: Vec<Contact<A>>,
    /// Holders asked already.
    tried: BTreeSet<Key>,
    /// Holders that said, answering a lookup, that they hold it.
    claimed: BTreeSet<Key>,
    /// The holder of the request in flight, and when it was sent.
    asked: Option<Contact<A>>,
    sent: Sent,
    /// When the request in flight has been out long enough to ask a second holder too.
    hedge_at: Timestamp,
    /// The second request, to another holder, of a chunk that was slow to come.
    hedge: Option<Hedge<A>>,
    /// A lookup runs beside the providers it started with.
    beside: bool,
    lookups: u32,
}

/// What a holder's requests took, smoothed (an exponential average, 1/4 new: a holder's uplink
/// changes slowly).
#[derive(Clone, Copy, Debug)]
struct Service {
    /// Request to bytes of a request sent while no other of this engine's was out to it: a
    /// round trip plus one chunk over its uplink.
    alone: Duration,
    /// Between the bytes of one request and the next, while requests were queued back to back:
    /// one chunk over its uplink. Until measured, as long as `alone` (no gain assumed from
    /// queueing a second request).
    gap: Option<Duration>,
    /// When its last bytes came.
    last: Timestamp,
}

impl Service {
    /// When a request sent now would be answered, `busy` requests being out to it already.
    fn expected(&self, busy: u32) -> Duration {
        self.alone + self.gap.unwrap_or(self.alone).saturating_mul(busy)
    }
}

/// Smoothed: 3/4 old, 1/4 new.
fn smooth(old: Duration, new: Duration) -> Duration {
    (old * 3 + new) / 4
}

/// A second request for a chunk whose first was slow (a holder on a slow uplink, or a busy
/// one): whichever answers first wins, and a failure of either leaves the other.
#[derive(Debug)]
struct Hedge<A> {
    from: Contact<A>,
    sent: Sent,
    deadline: Timestamp,
}

/// A request's send time, and whether another of this engine's was out to the same holder then.
#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    at: Timestamp,
    queued: bool,
}

#[derive(Debug)]
struct Fetch<A> {
    /// The content's root, whoever announces it being a holder of every chunk.
    content: Option<Key>,
    /// The root to announce once complete.
    root: Option<Key>,
    /// Peers that announced the whole content: every chunk's first holders.
    providers: Vec<Contact<A>>,
    /// Holders that could not be reached: not asked again in this fetch.
    unreachable: BTreeSet<Key>,
    /// Holders charged with a false claim in this fetch: one that lost a file's chunks (a
    /// damaged disk) fails every one of them for the same reason, so it is charged once.
    charged: BTreeSet<Key>,
    /// Chunks added and not released, by index.
    chunks: BTreeMap<u64, Chunk<A>>,
    next_index: u64,
    failed: bool,
}

/// Every fetch of one engine.
#[derive(Debug)]
pub(crate) struct Fetches<A> {
    config: FetchConfig,
    fetches: BTreeMap<FetchId, Fetch<A>>,
    next: u64,
    /// How fast each holder served this engine's requests: what its uplink costs, which a
    /// round trip alone does not say.
    service: BTreeMap<Key, Service>,
}

/// A request out for this many times what its holder was expected to take (its service time,
/// else its round trip) is slow: a chunk at the head of the window, or in the last requests
/// of a fetch, is then asked of a second, idle holder too.
const HEDGE_FACTOR: u32 = 2;

/// Requests never count as slow sooner than this (jitter on a fast link is not slowness).
const HEDGE_FLOOR: Duration = Duration::from_millis(20);

/// The chunks at the head of a fetch (the next to be released) that may be asked twice.
const HEDGE_HEAD: usize = 4;

/// Holders whose service time is remembered; the rest are forgotten beyond it.
const SERVICE_TRACKED: usize = 4096;

impl<A: Clone> Fetches<A> {
    pub(crate) fn new(config: FetchConfig) -> Self {
        Self {
            config,
            fetches: BTreeMap::new(),
            next: 0,
            service: BTreeMap::new(),
        }
    }

    /// A new fetch, or `None` if `max_fetches` are running. `root` is announced when the fetch
    /// ends complete; `providers` are asked first for every chunk.
    pub(crate) fn start(
        &mut self,
        content: Option<Key>,
        announce: bool,
        providers: Vec<Contact<A>>,
    ) -> Option<FetchId> {
        if self.fetches.len() >= self.config.max_fetches.max(1) {
            return None;
        }
        let id = FetchId(self.next);
        self.next += 1;
        self.fetches.insert(
            id,
            Fetch {
                content,
                root: content.filter(|_| announce),
                providers,
                unreachable: BTreeSet::new(),
                charged: BTreeSet::new(),
                chunks: BTreeMap::new(),
                next_index: 0,
                failed: false,
            },
        );
        Some(id)
    }

    /// Whether `fetch` is of chunks named alone (manifests, found by id), not of a file's
    /// content: its lookups ask holders for the bytes in their answers, a small chunk then
    /// coming in one round trip. A file's chunks are mostly large, and a holder would look up
    /// their size for nothing.
    pub(crate) fn of_lone_chunks(&self, fetch: FetchId) -> bool {
        self.fetches
            .get(&fetch)
            .is_some_and(|f| f.content.is_none())
    }

    /// Adds chunks in order; returns the index of the first, or `None` if the fetch is unknown
    /// or would hold more than `max_chunks`.
    pub(crate) fn add(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        chunks: impl IntoIterator<Item = Key>,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) -> Option<u64> {
        let max = self.config.max_chunks;
        let f = self.fetches.get_mut(&fetch)?;
        let first = f.next_index;
        for key in chunks {
            if f.chunks.len() >= max {
                break;
            }
            // With providers of the whole content, no lookup until they fail this chunk.
            let state = if f.providers.is_empty() {
                State::New
            } else {
                State::Ready
            };
            f.chunks.insert(
                f.next_index,
                Chunk {
                    key,
                    state,
                    holders: f.providers.clone(),
                    tried: BTreeSet::new(),
                    claimed: BTreeSet::new(),
                    asked: None,
                    sent: Sent::default(),
                    hedge_at: Timestamp::EPOCH,
                    hedge: None,
                    beside: false,
                    lookups: 0,
                },
            );
            f.next_index += 1;
        }
        self.drive(now, fetch, rtt, out);
        Some(first)
    }

    /// A holder lookup for chunk `index` ended with `holders` (ranked best first); `claimed` are
    /// those that said themselves that they hold it.
    pub(crate) fn on_holders(
        &mut self,
        now: Timestamp,
        (fetch, index): (FetchId, u64),
        holders: Vec<Contact<A>>,
        claimed: BTreeSet<Key>,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let Some(f) = self.fetches.get_mut(&fetch).filter(|f| !f.failed) else {
            return;
        };
        let unreachable = &f.unreachable;
        let Some(c) = f.chunks.get_mut(&index) else {
            return;
        };
        let looking = c.state == State::Looking;
        if !looking && !c.beside {
            return;
        }
        c.beside = false;
        c.claimed.extend(claimed);
        merge(c, holders, unreachable);
        // Waiting on this lookup, or left with no holder while it ran (the ones it met went
        // first and failed): what it found decides what comes next.
        if looking || (c.state == State::Ready && c.holders.is_empty()) {
            c.state = State::Ready;
            if c.holders.is_empty() {
                self.next_holder(now, fetch, index, out);
            }
        }
        self.drive(now, fetch, rtt, out);
    }

    /// A holder answered the lookup for chunk `index` with the chunk itself (a small one): it
    /// counts as requested from `from` now, so the caller hands the bytes over and reports the
    /// outcome like any answer ([`Fetches::on_chunk`]: the window, the caller's room and
    /// blame work the same). Returns the deadline to keep, or None if the chunk is received
    /// already (or unknown). A chunk requested from another holder meanwhile keeps that
    /// request: good bytes count whenever they come.
    pub(crate) fn on_inline(
        &mut self,
        now: Timestamp,
        (fetch, index): (FetchId, u64),
        from: &Contact<A>,
        rtt: &dyn Fn(&Key) -> Duration,
    ) -> Option<Timestamp> {
        let timeout = self.config.chunk_timeout;
        let f = self.fetches.get_mut(&fetch).filter(|f| !f.failed)?;
        let c = f.chunks.get_mut(&index)?;
        match c.state {
            State::Done => None,
            State::Requesting { deadline, .. } => Some(deadline),
            _ => {
                let deadline = now + timeout + rtt(&from.id);
                c.holders.retain(|h| h.id != from.id);
                c.tried.insert(from.id);
                c.claimed.insert(from.id);
                c.state = State::Requesting {
                    from: from.id,
                    deadline,
                };
                c.asked = Some(from.clone());
                c.sent = Sent {
                    at: now,
                    queued: false,
                };
                c.hedge_at = deadline;
                Some(deadline)
            }
        }
    }

    /// A holder lookup for chunk `index` still running met `holders` (ranked best first): a
    /// chunk waiting on the lookup can be requested from them at once, the lookup going on
    /// beside, and one already being fetched gets more holders to spread over.
    pub(crate) fn on_holders_found(
        &mut self,
        now: Timestamp,
        (fetch, index): (FetchId, u64),
        holders: Vec<Contact<A>>,
        claimed: BTreeSet<Key>,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let Some(f) = self.fetches.get_mut(&fetch).filter(|f| !f.failed) else {
            return;
        };
        let Some(c) = f.chunks.get_mut(&index) else {
            return;
        };
        let looking = c.state == State::Looking;
        if !looking && !c.beside {
            return;
        }
        c.claimed.extend(claimed);
        merge(c, holders, &f.unreachable);
        // Holders it had tried, or that could not be reached, leave it waiting on the lookup.
        if looking && !c.holders.is_empty() {
            c.state = State::Ready;
            c.beside = true;
        }
        self.drive(now, fetch, rtt, out);
    }

    /// A lookup met `providers` announcing `content` (ranked best first): fetches of it that
    /// did not know them take them as holders of every chunk not yet received.
    pub(crate) fn on_providers(
        &mut self,
        now: Timestamp,
        content: &Key,
        providers: Vec<Contact<A>>,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let ids: Vec<FetchId> = self
            .fetches
            .iter()
            .filter(|(_, f)| !f.failed && f.content.as_ref() == Some(content))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(f) = self.fetches.get_mut(&id) else {
                continue;
            };
            for p in &providers {
                if f.unreachable.contains(&p.id) || f.providers.iter().any(|x| x.id == p.id) {
                    continue;
                }
                f.providers.push(p.clone());
                for c in f.chunks.values_mut().filter(|c| c.state != State::Done) {
                    merge(c, vec![p.clone()], &f.unreachable);
                    if c.state == State::Looking && !c.holders.is_empty() {
                        c.state = State::Ready;
                        c.beside = true;
                    }
                }
            }
            self.drive(now, id, rtt, out);
        }
    }

    /// The outcome of the request for chunk `index` (from whichever holder it went to).
    pub(crate) fn on_chunk(
        &mut self,
        now: Timestamp,
        (fetch, index): (FetchId, u64),
        from: &Key,
        outcome: ChunkOutcome,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let backoff = self.config.backoff;
        let Some(c) = self.chunk_mut(fetch, index) else {
            return;
        };
        let hedged = c.hedge.as_ref().is_some_and(|h| h.from.id == *from);
        if outcome == ChunkOutcome::Dropped {
            if hedged && let Some(h) = c.hedge.take() {
                c.tried.remove(from);
                c.holders.insert(0, h.from);
            } else if matches!(c.state, State::Requesting { from: f, .. } if f == *from)
                && let Some(asked) = c.asked.take()
            {
                c.tried.remove(from);
                c.holders.insert(0, asked);
                let until = now + backoff;
                c.state = State::Paused { until };
                out.push(Action::Wake {
                    at: until,
                    fetch,
                    index,
                });
            }
            self.drive(now, fetch, rtt, out);
            return;
        }
        let claimed = c.claimed.contains(from);
        let offence = match outcome {
            ChunkOutcome::NotFound if claimed => self
                .fetches
                .get_mut(&fetch)
                .is_some_and(|f| f.charged.insert(*from))
                .then_some(Offence::FalseHolder),
            ChunkOutcome::Corrupt => Some(Offence::CorruptChunk),
            _ => None,
        };
        let Some(c) = self.chunk_mut(fetch, index) else {
            return;
        };
        out.push(Action::Outcome {
            peer: *from,
            ok: outcome == ChunkOutcome::Ok,
            offence,
        });
        let primary = matches!(c.state, State::Requesting { from: f, .. } if f == *from);
        let current = primary || hedged;
        if outcome == ChunkOutcome::Ok && current {
            let sent = match (&c.hedge, hedged) {
                (Some(h), true) => h.sent,
                _ => c.sent,
            };
            self.measure(now, from, sent);
        }
        let Some(c) = self.chunk_mut(fetch, index) else {
            return;
        };
        match outcome {
            // Good bytes are good whenever they come (even after a timeout moved on).
            ChunkOutcome::Ok if c.state != State::Done => {
                c.state = State::Done;
                c.hedge = None;
            }
            ChunkOutcome::Ok => {}
            // The second request failed: the first goes on.
            _ if hedged => c.hedge = None,
            // The first failed: the second, if any, goes on.
            _ if primary && c.hedge.is_some() => promote(c),
            _ if primary => {
                c.state = State::Ready;
                self.next_holder(now, fetch, index, out);
            }
            _ => {}
        }
        if outcome == ChunkOutcome::Failed {
            self.forget_holder(now, fetch, from, out);
        }
        self.drive(now, fetch, rtt, out);
    }

    /// A request to `from` sent at `sent` brought its bytes now.
    fn measure(&mut self, now: Timestamp, from: &Key, sent: Sent) {
        let took = now.saturating_duration_since(sent.at);
        if self.service.len() >= SERVICE_TRACKED && !self.service.contains_key(from) {
            self.service.pop_first();
        }
        let s = self.service.entry(*from).or_insert(Service {
            alone: took,
            gap: None,
            last: now,
        });
        if !sent.queued {
            s.alone = smooth(s.alone, took);
        } else if s.last > sent.at {
            // It waited behind the one that came at `last`.
            let gap = now.saturating_duration_since(s.last);
            s.gap = Some(s.gap.map_or(gap, |g| smooth(g, gap)));
        }
        s.last = now;
    }

    /// A timer this module asked for came.
    pub(crate) fn on_wake(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        index: u64,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let Some(c) = self.chunk_mut(fetch, index) else {
            return;
        };
        match c.state {
            State::Requesting { from, deadline } if deadline <= now => {
                out.push(Action::Outcome {
                    peer: from,
                    ok: false,
                    offence: None,
                });
                if c.hedge.as_ref().is_some_and(|h| h.deadline > now) {
                    promote(c);
                } else {
                    if let Some(h) = c.hedge.take() {
                        out.push(Action::Outcome {
                            peer: h.from.id,
                            ok: false,
                            offence: None,
                        });
                    }
                    c.state = State::Ready;
                    self.next_holder(now, fetch, index, out);
                }
            }
            State::Requesting { .. } if c.hedge.is_none() && c.hedge_at <= now => {
                self.hedge(now, fetch, index, rtt, out);
                return;
            }
            State::Backoff { until } if until <= now => c.state = State::New,
            State::Paused { until } if until <= now => c.state = State::Ready,
            _ => return,
        }
        self.drive(now, fetch, rtt, out);
    }

    /// Asks a second holder for chunk `index`, whose request is slow to come, if the chunk is
    /// at the head of the window (later chunks wait for it to be released) or nothing else is
    /// left to fetch, and an idle holder is left: whichever answers first wins.
    fn hedge(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        index: u64,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let (window, timeout) = (self.config.window.max(1), self.config.chunk_timeout);
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        let head = f.chunks.range(..index).take(HEDGE_HEAD).count() < HEDGE_HEAD;
        let endgame = f.chunks.len() <= window
            && f.chunks
                .values()
                .all(|c| matches!(c.state, State::Requesting { .. } | State::Done));
        if !(head || endgame) {
            return;
        }
        let busy = inflight(f);
        let Some(c) = f.chunks.get_mut(&index) else {
            return;
        };
        let Some(pick) = c.holders.iter().position(|h| !busy.contains_key(&h.id)) else {
            return;
        };
        let from = c.holders.remove(pick);
        c.tried.insert(from.id);
        let deadline = now + timeout + rtt(&from.id);
        c.hedge = Some(Hedge {
            from: from.clone(),
            sent: Sent {
                at: now,
                queued: false,
            },
            deadline,
        });
        out.push(Action::Request {
            fetch,
            index,
            chunk: c.key,
            from,
            deadline,
        });
    }

    /// The caller used chunk `index`: it leaves the window.
    pub(crate) fn release(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        index: u64,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        if f.chunks.get(&index).is_some_and(|c| c.state == State::Done) {
            f.chunks.remove(&index);
        }
        self.drive(now, fetch, rtt, out);
    }

    /// Ends a fetch; one that got every chunk announces its root.
    pub(crate) fn end(&mut self, fetch: FetchId, out: &mut Vec<Action<A>>) {
        let Some(f) = self.fetches.remove(&fetch) else {
            return;
        };
        let complete = !f.failed && f.chunks.values().all(|c| c.state == State::Done);
        if let (true, Some(root)) = (complete, f.root) {
            out.push(Action::Announce { root });
        }
    }

    /// Fetches running.
    pub(crate) fn len(&self) -> usize {
        self.fetches.len()
    }

    fn chunk_mut(&mut self, fetch: FetchId, index: u64) -> Option<&mut Chunk<A>> {
        let f = self.fetches.get_mut(&fetch)?;
        if f.failed {
            return None;
        }
        f.chunks.get_mut(&index)
    }

    /// A holder that could not be reached is dropped from every chunk of the fetch that has
    /// not asked it yet (a dead provider of the whole content would otherwise cost each chunk
    /// a timeout); chunks left with no holder go on to a lookup.
    fn forget_holder(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        peer: &Key,
        out: &mut Vec<Action<A>>,
    ) {
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        f.providers.retain(|p| p.id != *peer);
        f.unreachable.insert(*peer);
        let mut stranded = Vec::new();
        for (&index, c) in f.chunks.iter_mut() {
            c.holders.retain(|h| h.id != *peer);
            if c.state == State::Ready && c.holders.is_empty() {
                stranded.push(index);
            }
        }
        for index in stranded {
            self.next_holder(now, fetch, index, out);
        }
    }

    /// After a holder failed (state `Ready`): leaves it `Ready` if an untried holder is left,
    /// else backs off for another lookup, else gives the whole fetch up.
    fn next_holder(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        index: u64,
        out: &mut Vec<Action<A>>,
    ) {
        let (lookups, backoff) = (self.config.lookups.max(1), self.config.backoff);
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        let Some(c) = f.chunks.get_mut(&index) else {
            return;
        };
        if !c.holders.is_empty() {
            return;
        }
        if c.beside {
            // Its own lookup is running: wait for it.
            c.beside = false;
            c.state = State::Looking;
            return;
        }
        if c.lookups == 0 {
            // The content's providers failed it: look this chunk up at once.
            c.state = State::New;
            return;
        }
        if c.lookups < lookups {
            let until = now + backoff * (1u32 << (c.lookups.saturating_sub(1)).min(16));
            c.state = State::Backoff { until };
            out.push(Action::Wake {
                at: until,
                fetch,
                index,
            });
            return;
        }
        let error = FetchError {
            chunk: c.key,
            holders_tried: c.tried.len(),
            lookups: c.lookups,
        };
        f.failed = true;
        out.push(Action::Failed { fetch, error });
    }

    /// Starts the lookups and requests that fit.
    fn drive(
        &mut self,
        now: Timestamp,
        fetch: FetchId,
        rtt: &dyn Fn(&Key) -> Duration,
        out: &mut Vec<Action<A>>,
    ) {
        let (window, lookahead) = (self.config.window.max(1), self.config.lookahead.max(1));
        let timeout = self.config.chunk_timeout;
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        if f.failed {
            return;
        }
        // Requests in flight per holder, for spreading the window.
        let mut inflight = inflight(f);
        // The window is the `window` chunks from the first unreleased one, not a count of
        // requests: the caller releases in order, so a count would let later chunks fill it
        // while the first waits for holders, and then nothing could move.
        for (position, (&index, c)) in f.chunks.iter_mut().take(lookahead).enumerate() {
            // Started with the content's providers: its own lookup runs beside them, so that
            // its replicas share the window too.
            if c.lookups == 0
                && !c.beside
                && matches!(c.state, State::Ready | State::Requesting { .. })
            {
                c.beside = true;
                c.lookups += 1;
                out.push(Action::FindHolders {
                    fetch,
                    index,
                    key: c.key,
                    tried: BTreeSet::new(),
                });
            }
            match c.state {
                State::New => {
                    c.state = State::Looking;
                    c.lookups += 1;
                    out.push(Action::FindHolders {
                        fetch,
                        index,
                        key: c.key,
                        tried: c.tried.clone(),
                    });
                }
                State::Ready if position < window && !c.holders.is_empty() => {
                    // The soonest expected answer, from what each holder's requests took (see
                    // `Service`; one never asked: its round trip); ties go to the better-ranked
                    // holder. While the chunk's own lookup runs, it goes only to a holder with
                    // nothing in flight: a content's lone provider on a home uplink would
                    // otherwise take the whole window before the lookups find the replicas. The
                    // chunk waits for the holders its lookup brings, or for the lookup's end.
                    // (netsim, 10,000 nodes, 16 MiB objects: median get 1.10 s, against 1.19 s
                    // when a busy holder expected to answer within 4 of its round trips is
                    // queued behind, 1.36 s within 8; BENCHMARKS.md.)
                    let service = &self.service;
                    let looking = c.beside;
                    let cost = |i: usize| {
                        let id = c.holders[i].id;
                        let busy = inflight.get(&id).copied().unwrap_or(0);
                        let expected = match service.get(&id) {
                            Some(s) => s.expected(busy),
                            None => rtt(&id).saturating_mul(busy + 1),
                        };
                        (busy == 0 || !looking).then_some((expected, i, busy > 0))
                    };
                    let Some((expected, pick, queued)) =
                        (0..c.holders.len()).filter_map(cost).min()
                    else {
                        continue;
                    };
                    let from = c.holders.remove(pick);
                    let id = from.id;
                    c.tried.insert(id);
                    let deadline = now + timeout + rtt(&id);
                    c.state = State::Requesting { from: id, deadline };
                    c.asked = Some(from.clone());
                    c.sent = Sent { at: now, queued };
                    // Slow beyond what was expected of this holder: time to ask another too.
                    c.hedge_at = now + expected.saturating_mul(HEDGE_FACTOR).max(HEDGE_FLOOR);
                    *inflight.entry(id).or_default() += 1;
                    out.push(Action::Request {
                        fetch,
                        index,
                        chunk: c.key,
                        from,
                        deadline,
                    });
                    out.push(Action::Wake {
                        at: c.hedge_at,
                        fetch,
                        index,
                    });
                }
                _ => {}
            }
        }
    }
}

/// Requests in flight per holder in a fetch, second requests included.
fn inflight<A>(f: &Fetch<A>) -> BTreeMap<Key, u32> {
    let mut busy: BTreeMap<Key, u32> = BTreeMap::new();
    for c in f.chunks.values() {
        if let State::Requesting { from, .. } = c.state {
            *busy.entry(from).or_default() += 1;
            if let Some(h) = &c.hedge {
                *busy.entry(h.from.id).or_default() += 1;
            }
        }
    }
    busy
}

/// The first request of a chunk failed while a second was out: the second becomes the one.
fn promote<A>(c: &mut Chunk<A>) {
    if let Some(h) = c.hedge.take() {
        c.state = State::Requesting {
            from: h.from.id,
            deadline: h.deadline,
        };
        c.asked = Some(h.from);
        c.sent = h.sent;
    }
}

/// Adds to a chunk's holders those it has not tried or been given, and that could be reached:
/// merged with the providers it may have, the window spreads over all of them (a content's one
/// provider is often a home uplink, slower than five replicas at once).
fn merge<A>(c: &mut Chunk<A>, holders: Vec<Contact<A>>, unreachable: &BTreeSet<Key>) {
    for h in holders {
        if !c.tried.contains(&h.id)
            && !unreachable.contains(&h.id)
            && !c.holders.iter().any(|x| x.id == h.id)
        {
            c.holders.push(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::EPOCH;

    /// A small window and lookahead, so the tests can see their edges.
    fn config() -> FetchConfig {
        FetchConfig {
            window: 8,
            lookahead: 16,
            ..FetchConfig::default()
        }
    }

    fn key(n: u32) -> Key {
        Key::for_peer(&n.to_be_bytes())
    }

    fn holder(n: u32) -> Contact<u32> {
        Contact::new(key(1000 + n), n)
    }

    /// Holder `n` has a round trip of `n` × 10 ms.
    fn rtt(k: &Key) -> Duration {
        (1..100)
            .find(|n| holder(*n).id == *k)
            .map_or(Duration::from_secs(1), |n| {
                Duration::from_millis(10 * n as u64)
            })
    }

    fn requests(out: &[Action<u32>]) -> Vec<(u64, u32)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Request { index, from, .. } => Some((*index, from.addr)),
                _ => None,
            })
            .collect()
    }

    /// Lookup `index` of fetch `id` answers `holders` (none claiming); what follows.
    fn answer(f: &mut Fetches<u32>, id: FetchId, index: u64, holders: &[u32]) -> Vec<Action<u32>> {
        let mut out = Vec::new();
        let hs = holders.iter().map(|h| holder(*h)).collect();
        f.on_holders(T0, (id, index), hs, BTreeSet::new(), &rtt, &mut out);
        out
    }

    /// Holder `from` answers chunk `index` of fetch `id` with `outcome` at `now`; what follows.
    fn outcome(
        f: &mut Fetches<u32>,
        now: Timestamp,
        (id, index): (FetchId, u64),
        from: u32,
        outcome: ChunkOutcome,
    ) -> Vec<Action<u32>> {
        let mut out = Vec::new();
        f.on_chunk(now, (id, index), &holder(from).id, outcome, &rtt, &mut out);
        out
    }

    /// The first wake-up asked for.
    fn wake(out: &[Action<u32>]) -> Option<Timestamp> {
        out.iter().find_map(|a| match a {
            Action::Wake { at, .. } => Some(*at),
            _ => None,
        })
    }

    fn lookups(out: &[Action<u32>]) -> Vec<u64> {
        out.iter()
            .filter_map(|a| match a {
                Action::FindHolders { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// A fetch of `n` chunks; every lookup answered with `holders`.
    fn fetch_with(n: u32, holders: &[u32]) -> (Fetches<u32>, FetchId, Vec<Action<u32>>) {
        let mut f = Fetches::new(config());
        let id = f.start(Some(key(0)), true, Vec::new()).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, (1..=n).map(key), &rtt, &mut out);
        let mut all = Vec::new();
        for index in lookups(&out) {
            let hs = holders.iter().map(|h| holder(*h)).collect();
            let claimed = holders.iter().map(|h| holder(*h).id).collect();
            f.on_holders(T0, (id, index), hs, claimed, &rtt, &mut all);
        }
        all.extend(out);
        (f, id, all)
    }

    #[test]
    fn looks_ahead_and_keeps_the_window() {
        let (mut f, id, out) = fetch_with(40, &[1, 2, 3]);
        let looked = lookups(&out);
        assert_eq!(looked, (0..16).collect::<Vec<_>>(), "lookups run 16 ahead");
        let asked = requests(&out);
        assert_eq!(asked.len(), 8, "8 requests at once");
        // Completing without releasing frees nothing; releasing in order does.
        let mut more = Vec::new();
        for (index, from) in &asked {
            f.on_chunk(
                T0,
                (id, *index),
                &holder(*from).id,
                ChunkOutcome::Ok,
                &rtt,
                &mut more,
            );
        }
        assert!(
            requests(&more).is_empty(),
            "done but unreleased chunks hold the window"
        );
        f.release(T0, id, 0, &rtt, &mut more);
        assert_eq!(requests(&more).len(), 1);
        assert_eq!(
            lookups(&more),
            vec![16],
            "the lookahead moves with the window"
        );
    }

    #[test]
    fn faster_holders_get_more_of_the_window() {
        let (_, _, out) = fetch_with(16, &[1, 2]);
        let asked = requests(&out);
        let fast = asked.iter().filter(|(_, h)| *h == 1).count();
        let slow = asked.iter().filter(|(_, h)| *h == 2).count();
        assert_eq!(fast + slow, 8);
        assert!(fast > slow, "10 ms holder {fast} vs 20 ms holder {slow}");
        assert!(slow > 0, "the window is spread, not all on one holder");
    }

    #[test]
    fn a_holder_that_claimed_and_does_not_serve_is_a_liar_and_the_next_is_asked() {
        let (mut f, id, out) = fetch_with(1, &[1, 2]);
        assert_eq!(requests(&out), vec![(0, 1)]);
        let more = outcome(&mut f, T0, (id, 0), 1, ChunkOutcome::NotFound);
        assert!(more.contains(&Action::Outcome {
            peer: holder(1).id,
            ok: false,
            offence: Some(Offence::FalseHolder)
        }));
        assert_eq!(requests(&more), vec![(0, 2)]);
        // A plain failure is no lie.
        let more = outcome(&mut f, T0, (id, 0), 2, ChunkOutcome::Failed);
        assert!(more.contains(&Action::Outcome {
            peer: holder(2).id,
            ok: false,
            offence: None
        }));
    }

    #[test]
    fn a_silent_holder_times_out_and_good_bytes_count_whenever_they_come() {
        let (mut f, id, out) = fetch_with(1, &[1, 2]);
        let deadline = out
            .iter()
            .find_map(|a| match a {
                Action::Request { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .unwrap();
        let mut more = Vec::new();
        f.on_wake(deadline, id, 0, &rtt, &mut more);
        assert_eq!(requests(&more), vec![(0, 2)], "fails over at the deadline");
        // The first holder's late answer still completes the chunk.
        let mut more = outcome(&mut f, deadline, (id, 0), 1, ChunkOutcome::Ok);
        f.release(deadline, id, 0, &rtt, &mut more);
        f.end(id, &mut more);
        assert!(more.contains(&Action::Announce { root: key(0) }));
    }

    #[test]
    fn gives_up_after_its_lookups_naming_the_chunk() {
        let mut f: Fetches<u32> = Fetches::new(config());
        let id = f.start(None, false, Vec::new()).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, [key(7)], &rtt, &mut out);
        let mut now = T0;
        let mut failed = None;
        for round in 1..=3u32 {
            assert_eq!(lookups(&out), vec![0], "lookup {round}");
            out.clear();
            f.on_holders(
                now,
                (id, 0),
                vec![holder(round)],
                BTreeSet::new(),
                &rtt,
                &mut out,
            );
            assert_eq!(requests(&out), vec![(0, round)]);
            out.clear();
            f.on_chunk(
                now,
                (id, 0),
                &holder(round).id,
                ChunkOutcome::Corrupt,
                &rtt,
                &mut out,
            );
            if let Some(Action::Failed { error, .. }) =
                out.iter().find(|a| matches!(a, Action::Failed { .. }))
            {
                failed = Some(error.clone());
                break;
            }
            let at = wake(&out).expect("backs off before looking again");
            assert!(at > now);
            now = at;
            out.clear();
            f.on_wake(now, id, 0, &rtt, &mut out);
        }
        let error = failed.expect("gives up after 3 lookups");
        assert_eq!(
            error,
            FetchError {
                chunk: key(7),
                holders_tried: 3,
                lookups: 3
            }
        );
        assert!(error.to_string().contains(&format!("{:x}", key(7))));
        let mut more = Vec::new();
        f.end(id, &mut more);
        assert!(more.is_empty(), "a failed fetch announces nothing");
    }

    #[test]
    fn the_first_chunk_is_requested_even_while_later_ones_wait_for_release() {
        let (mut f, id, out) = fetch_with(12, &[1]);
        let asked = requests(&out);
        assert_eq!(asked.len(), 8);
        // Chunk 0's only holder fails; 1..8 arrive and wait for 0 to be released first.
        let mut more = outcome(&mut f, T0, (id, 0), 1, ChunkOutcome::Failed);
        // Whatever else was asked meanwhile arrives too.
        let mut asked: Vec<u64> = (1..8).collect();
        asked.extend(requests(&more).into_iter().map(|(index, _)| index));
        for index in asked {
            f.on_chunk(
                T0,
                (id, index),
                &holder(1).id,
                ChunkOutcome::Ok,
                &rtt,
                &mut more,
            );
        }
        let at = more
            .iter()
            .find_map(|a| match a {
                Action::Wake { at, index: 0, .. } => Some(*at),
                _ => None,
            })
            .expect("chunk 0 backs off");
        let mut more = Vec::new();
        f.on_wake(at, id, 0, &rtt, &mut more);
        assert_eq!(lookups(&more), vec![0]);
        let mut more = Vec::new();
        f.on_holders(
            at,
            (id, 0),
            vec![holder(2)],
            BTreeSet::new(),
            &rtt,
            &mut more,
        );
        assert_eq!(requests(&more), vec![(0, 2)], "chunk 0 is asked again");
    }

    #[test]
    fn a_content_provider_is_asked_at_once_and_the_lookups_beside_it_spread_the_window() {
        let mut f = Fetches::new(config());
        let id = f.start(None, false, vec![holder(3)]).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, (1..=4).map(key), &rtt, &mut out);
        assert_eq!(
            requests(&out),
            vec![(0, 3)],
            "a provider never asked gets one request while the chunks' lookups run"
        );
        assert_eq!(lookups(&out), vec![0, 1, 2, 3], "lookups run beside");
        let more = answer(&mut f, id, 1, &[2]);
        assert_eq!(
            requests(&more),
            vec![(1, 2)],
            "the lookup's holder is asked"
        );
        let more = answer(&mut f, id, 2, &[]);
        assert_eq!(
            requests(&more),
            vec![(2, 3)],
            "a lookup that found nobody else leaves the chunk to the provider"
        );
        let more = outcome(&mut f, T0, (id, 0), 3, ChunkOutcome::NotFound);
        assert!(
            more.contains(&Action::Outcome {
                peer: holder(3).id,
                ok: false,
                offence: None
            }),
            "a provider of the content did not claim this chunk"
        );
        assert!(lookups(&more).is_empty(), "its lookup is already running");
        let more = answer(&mut f, id, 0, &[1]);
        assert_eq!(requests(&more), vec![(0, 1)]);
    }

    #[test]
    fn an_unreachable_provider_is_dropped_for_every_chunk() {
        let mut f = Fetches::new(config());
        let id = f.start(None, false, vec![holder(1)]).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, (1..=12).map(key), &rtt, &mut out);
        assert_eq!(requests(&out).len(), 1);
        let more = outcome(&mut f, T0, (id, 0), 1, ChunkOutcome::Failed);
        assert!(requests(&more).is_empty(), "nobody else to ask yet");
        // Its lookup names the provider again, and another holder: only that one is asked.
        let more = answer(&mut f, id, 0, &[1, 2]);
        assert_eq!(requests(&more), vec![(0, 2)]);
        // Chunk 8 had not asked the provider yet: it has no holder left until its lookup.
        let more = answer(&mut f, id, 8, &[1]);
        assert!(
            requests(&more).is_empty(),
            "the unreachable provider is not asked again"
        );
    }

    #[test]
    fn holders_met_while_a_lookup_runs_are_asked_at_once() {
        let mut f = Fetches::new(config());
        let id = f.start(None, false, Vec::new()).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, [key(1)], &rtt, &mut out);
        assert_eq!(lookups(&out), vec![0]);
        let mut more = Vec::new();
        f.on_holders_found(
            T0,
            (id, 0),
            vec![holder(2)],
            BTreeSet::new(),
            &rtt,
            &mut more,
        );
        assert_eq!(
            requests(&more),
            vec![(0, 2)],
            "no wait for the lookup's end"
        );
        let more = answer(&mut f, id, 0, &[2, 3]);
        assert!(
            requests(&more).is_empty(),
            "one request per chunk at a time"
        );
        let more = outcome(&mut f, T0, (id, 0), 2, ChunkOutcome::NotFound);
        assert_eq!(
            requests(&more),
            vec![(0, 3)],
            "the lookup's other holder is next"
        );
    }

    #[test]
    fn a_lookup_that_meets_only_holders_already_tried_still_leads_to_the_end() {
        let mut f = Fetches::new(config());
        let id = f.start(None, false, Vec::new()).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, [key(1)], &rtt, &mut out);
        let found = |f: &mut Fetches<u32>, now| {
            let mut more = Vec::new();
            f.on_holders_found(
                now,
                (id, 0),
                vec![holder(1)],
                BTreeSet::new(),
                &rtt,
                &mut more,
            );
            more
        };
        assert_eq!(requests(&found(&mut f, T0)), vec![(0, 1)]);
        let mut now = T0;
        let mut more = outcome(&mut f, now, (id, 0), 1, ChunkOutcome::NotFound);
        more.extend(answer(&mut f, id, 0, &[1]));
        // Each later lookup meets the same, tried, holder and ends with nothing new.
        for round in 0..3 {
            let Some(at) = wake(&more) else {
                break;
            };
            now = at;
            let mut woke = Vec::new();
            f.on_wake(now, id, 0, &rtt, &mut woke);
            assert_eq!(lookups(&woke), vec![0], "round {round}: looked up again");
            assert!(requests(&found(&mut f, now)).is_empty(), "not asked again");
            let mut end = Vec::new();
            f.on_holders(
                now,
                (id, 0),
                vec![holder(1)],
                BTreeSet::new(),
                &rtt,
                &mut end,
            );
            more = end;
        }
        assert!(
            more.iter().any(|a| matches!(a, Action::Failed { .. })),
            "the fetch gives up instead of waiting forever: {more:?}"
        );
    }

    #[test]
    fn providers_found_after_a_fetch_began_hold_every_chunk() {
        let mut f = Fetches::new(config());
        let id = f.start(Some(key(0)), false, Vec::new()).unwrap();
        let mut out = Vec::new();
        f.add(T0, id, (1..=3).map(key), &rtt, &mut out);
        assert!(requests(&out).is_empty());
        let mut more = Vec::new();
        f.on_providers(T0, &key(9), vec![holder(4)], &rtt, &mut more);
        assert!(requests(&more).is_empty(), "another content's providers");
        f.on_providers(T0, &key(0), vec![holder(1)], &rtt, &mut more);
        assert_eq!(
            requests(&more),
            vec![(0, 1)],
            "asked at once, once while the lookups run"
        );
        let more = answer(&mut f, id, 1, &[]);
        assert_eq!(
            requests(&more),
            vec![(1, 1)],
            "chunk 1 has the provider too"
        );
    }

    #[test]
    fn a_slow_chunk_at_the_head_is_asked_of_a_second_holder_and_the_first_answer_wins() {
        let (mut f, id, out) = fetch_with(1, &[1, 2, 3]);
        assert_eq!(requests(&out), vec![(0, 1)]);
        let at = wake(&out).expect("a wake-up to judge the request slow");
        assert!(at > T0, "not at once");
        let mut more = Vec::new();
        f.on_wake(at, id, 0, &rtt, &mut more);
        assert_eq!(requests(&more), vec![(0, 2)], "a second holder is asked");
        // The first fails: the second goes on, nobody else is asked.
        let more = outcome(&mut f, at, (id, 0), 1, ChunkOutcome::NotFound);
        assert!(requests(&more).is_empty(), "the second request goes on");
        let more = outcome(&mut f, at, (id, 0), 2, ChunkOutcome::Ok);
        assert!(requests(&more).is_empty());
        let mut more = Vec::new();
        f.end(id, &mut more);
        assert!(
            more.iter().any(|a| matches!(a, Action::Announce { .. })),
            "the fetch got its chunk"
        );
    }

    #[test]
    fn a_late_answer_to_a_first_request_is_harmless_once_the_second_won() {
        let (mut f, id, out) = fetch_with(2, &[1, 2, 3]);
        let at = wake(&out).expect("a wake-up to judge the request slow");
        let mut more = Vec::new();
        f.on_wake(at, id, 0, &rtt, &mut more);
        let hedged: Vec<_> = requests(&more);
        assert_eq!(hedged.len(), 1, "one second request");
        let second = hedged[0].1;
        outcome(&mut f, at, (id, 0), second, ChunkOutcome::Ok);
        let first = requests(&out).iter().find(|(i, _)| *i == 0).unwrap().1;
        let more = outcome(&mut f, at, (id, 0), first, ChunkOutcome::Ok);
        assert!(requests(&more).is_empty());
        let mut more = Vec::new();
        f.release(at, id, 0, &rtt, &mut more);
        let more = outcome(&mut f, at, (id, 0), first, ChunkOutcome::Ok);
        assert!(more.is_empty(), "a released chunk is gone");
    }

    #[test]
    fn a_chunk_the_caller_had_no_room_for_is_asked_again_later_without_blame() {
        let (mut f, id, out) = fetch_with(1, &[1, 2]);
        assert_eq!(requests(&out), vec![(0, 1)]);
        let more = outcome(&mut f, T0, (id, 0), 1, ChunkOutcome::Dropped);
        assert!(
            !more.iter().any(|a| matches!(a, Action::Outcome { .. })),
            "no blame"
        );
        let at = wake(&more).expect("waits before asking again");
        let mut more = Vec::new();
        f.on_wake(at, id, 0, &rtt, &mut more);
        assert_eq!(
            requests(&more),
            vec![(0, 1)],
            "the same holder, asked again"
        );
    }

    #[test]
    fn fetches_are_bounded() {
        let mut f: Fetches<u32> = Fetches::new(FetchConfig {
            max_fetches: 2,
            ..FetchConfig::default()
        });
        assert!(
            f.start(None, false, Vec::new()).is_some()
                && f.start(None, false, Vec::new()).is_some()
        );
        assert!(f.start(None, false, Vec::new()).is_none());
    }
}
