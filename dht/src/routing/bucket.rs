//! One k-bucket: live entries ordered from least to most recently seen, and a replacement cache.

use std::time::Duration;

use crate::contact::IpPrefix;
use crate::{Address, Contact, Key, Timestamp};

/// A routing-table entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry<A> {
    pub(crate) contact: Contact<A>,
    pub(crate) last_seen: Timestamp,
    /// When it was first seen (its seniority: a peer dropped for failures and back takes the
    /// place of a younger one, see [`super::RoutingTable::reinstate`]).
    pub(crate) added: Timestamp,
    /// Consecutive failed requests.
    pub(crate) failures: u32,
    /// The round trip measured to it when last seen, if any (for proximity selection).
    pub(crate) rtt: Option<Duration>,
}

impl<A: Address> Entry<A> {
    pub(crate) fn new(contact: Contact<A>, now: Timestamp) -> Self {
        Self {
            contact,
            last_seen: now,
            added: now,
            failures: 0,
            rtt: None,
        }
    }

    fn prefix(&self) -> Option<IpPrefix> {
        self.contact.addr.ip().map(IpPrefix::of)
    }
}

/// A k-bucket.
#[derive(Clone, Debug)]
pub(crate) struct Bucket<A> {
    /// Least recently seen first.
    pub(crate) entries: Vec<Entry<A>>,
    /// Candidates for a slot that frees up, most recently seen last.
    pub(crate) replacements: Vec<Entry<A>>,
    /// The entry being probed because a newcomer wants its slot.
    pub(crate) probing: Option<Key>,
    /// When a lookup last targeted this bucket's range.
    pub(crate) last_refresh: Timestamp,
}

impl<A: Address> Bucket<A> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            replacements: Vec::new(),
            probing: None,
            last_refresh: Timestamp::EPOCH,
        }
    }

    pub(crate) fn position(&self, id: &Key) -> Option<usize> {
        self.entries.iter().position(|e| e.contact.id == *id)
    }

    /// Whether `addr` may join given the IP-prefix cap, not counting the entry with id `except`.
    pub(crate) fn prefix_allows(&self, addr: &A, cap: Option<usize>, except: Option<&Key>) -> bool {
        let (Some(cap), Some(ip)) = (cap, addr.ip()) else {
            return true;
        };
        let prefix = IpPrefix::of(ip);
        let same = self
            .entries
            .iter()
            .filter(|e| Some(&e.contact.id) != except && e.prefix() == Some(prefix))
            .count();
        same < cap
    }

    /// Puts `entry` in the replacement cache (replacing an older copy), bounded by `size`.
    pub(crate) fn cache(&mut self, entry: Entry<A>, size: usize) {
        self.replacements
            .retain(|e| e.contact.id != entry.contact.id);
        if size == 0 {
            return;
        }
        if self.replacements.len() >= size {
            self.replacements.remove(0);
        }
        self.replacements.push(entry);
    }

    /// Takes the best replacement that passes the IP-prefix cap: the lowest measured round trip
    /// when `rtt` gives one and `prefer_low_rtt` is set, otherwise the most recently seen.
    pub(crate) fn take_replacement(
        &mut self,
        cap: Option<usize>,
        prefer_low_rtt: bool,
        rtt: impl Fn(&Key) -> Option<Duration>,
    ) -> Option<Entry<A>> {
        let eligible = |e: &Entry<A>| self.prefix_allows(&e.contact.addr, cap, None);
        let mut best: Option<(usize, Option<Duration>)> = None;
        for (i, e) in self.replacements.iter().enumerate().rev() {
            if !eligible(e) {
                continue;
            }
            let r = if prefer_low_rtt {
                rtt(&e.contact.id)
            } else {
                None
            };
            let better = match best {
                None => true,
                // Measured beats unmeasured; lower beats higher; ties keep the more recent.
                Some((_, b)) => match (r, b) {
                    (Some(r), Some(b)) => r < b,
                    (Some(_), None) => true,
                    _ => false,
                },
            };
            if better {
                best = Some((i, r));
            }
        }
        best.map(|(i, _)| self.replacements.remove(i))
    }
}
