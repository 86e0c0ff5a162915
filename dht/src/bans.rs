//! Misbehaviour and bans: what a peer did wrong costs it points, and a peer past
//! [`BanConfig::threshold`] is banned for a while — refused as a requester, kept out of the
//! routing table, dropped from lookup answers and holder lists, and (by the node) disconnected
//! and refused on reconnect. Points decay, so an honest peer that lost a race now and then (a
//! chunk collected a moment after it said it held it) never reaches the threshold, while one that
//! forges twice is banned at once. When [`BanConfig::prefix_after`] peers of one IP prefix are
//! banned at the same time, the prefix is banned with them: ids are free, addresses are not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::contact::IpPrefix;
use crate::{Key, Timestamp};

/// What a peer did wrong. Each kind costs [`Offence::points`]; [`BanConfig::threshold`] points
/// (net of decay) ban the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offence {
    /// A record whose signature or key does not check, in an answer or a store request. No
    /// honest peer sends one (every record is checked before it is stored or served): one bans.
    ForgedRecord,
    /// Bytes that do not hash to the chunk they were sent as. An honest node checks a chunk
    /// before it serves it: one bans.
    CorruptChunk,
    /// A custody proof that does not match the challenger's own copy. Two in a row ban.
    WrongProof,
    /// A message that could not be decoded or broke the protocol (oversized, wrong kind).
    /// Three in a row ban.
    Malformed,
    /// Said it holds a chunk, then did not have it when asked. An honest peer can lose such a race
    /// (its copy collected in between): five in a row ban.
    FalseHolder,
    /// Offered a chunk this peer is far from responsible for. Routing views differ a little
    /// between honest peers: twenty in a row ban.
    JunkPush,
}

impl Offence {
    /// What the offence costs, in hundredths of the default threshold (a little over its
    /// share, so that decay between offences in a row does not let the last one fall short).
    pub fn points(self) -> u32 {
        match self {
            Offence::ForgedRecord | Offence::CorruptChunk => 100,
            Offence::WrongProof => 55,
            Offence::Malformed => 35,
            Offence::FalseHolder => 21,
            Offence::JunkPush => 6,
        }
    }
}

/// When and for how long peers are banned.
#[derive(Clone, Debug)]
pub struct BanConfig {
    /// Points (see [`Offence::points`]) that ban a peer; `None` never bans (offences still cost
    /// the peer reliability). Default `Some(100)`.
    pub threshold: Option<u32>,
    /// Points forgiven per hour. Default 126: one false holder claim every 10 minutes is
    /// forgiven as it comes.
    pub decay_per_hour: u32,
    /// The first ban's length; each later ban of the same peer doubles it. Default 1 h.
    pub duration: Duration,
    /// The longest ban. Default 24 h.
    pub max_duration: Duration,
    /// This many peers of one IPv4 /24 or IPv6 /48 banned at once ban the prefix too, until the
    /// last of their bans ends. `None` never bans a prefix (a test network where every peer is on
    /// 127.0.0.1). Default `Some(3)`.
    pub prefix_after: Option<usize>,
    /// Peers whose points or bans are remembered; beyond this the stalest are forgotten (a ban
    /// in force is forgotten last). Default 8192.
    pub max_tracked: usize,
}

impl Default for BanConfig {
    fn default() -> Self {
        Self {
            threshold: Some(100),
            decay_per_hour: 126,
            duration: Duration::from_secs(3600),
            max_duration: Duration::from_secs(24 * 3600),
            prefix_after: Some(3),
            max_tracked: 8192,
        }
    }
}

/// A ban the engine decided, for the transport to enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    /// Until when.
    pub until: Timestamp,
    /// The peer's address prefix, when this ban also banned it: the node refuses connections
    /// from any IP [`Ban::covers`].
    pub prefix: Option<BannedPrefix>,
}

/// An IP prefix under a ban (an IPv4 /24 or an IPv6 /48).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BannedPrefix(IpPrefix);

impl BannedPrefix {
    /// Whether `ip` is inside the prefix.
    pub fn covers(&self, ip: IpAddr) -> bool {
        IpPrefix::of(ip) == self.0
    }
}

impl Ban {
    /// Whether this ban covers connections from `ip`.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.prefix.is_some_and(|p| p.covers(ip))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Standing {
    /// Points, in hundredths of a point, as of `at`.
    points: u64,
    at: Timestamp,
    banned_until: Option<Timestamp>,
    bans: u32,
    prefix: Option<IpPrefix>,
}

/// Points and bans of the peers that misbehaved, bounded.
#[derive(Debug)]
pub(crate) struct Bans {
    config: BanConfig,
    peers: HashMap<Key, Standing>,
    prefixes: HashMap<IpPrefix, Timestamp>,
}

impl Bans {
    pub(crate) fn new(config: BanConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            prefixes: HashMap::new(),
        }
    }

    /// Charges `peer` (last seen at `ip`) with `offence`; the ban it earned, if this was the
    /// last straw.
    pub(crate) fn charge(
        &mut self,
        now: Timestamp,
        peer: &Key,
        ip: Option<IpAddr>,
        offence: Offence,
    ) -> Option<Ban> {
        if self.is_banned(now, peer) {
            return None;
        }
        if !self.peers.contains_key(peer) && self.peers.len() >= self.config.max_tracked {
            self.evict(now);
        }
        let decay = self.config.decay_per_hour;
        let s = self.peers.entry(*peer).or_default();
        let elapsed = now.saturating_duration_since(s.at).as_secs();
        let forgiven = u64::from(decay) * 100 * elapsed / 3600;
        s.points = s.points.saturating_sub(forgiven) + u64::from(offence.points()) * 100;
        s.at = s.at.max(now);
        if let Some(ip) = ip {
            s.prefix = Some(IpPrefix::of(ip));
        }
        let threshold = u64::from(self.config.threshold?) * 100;
        if s.points < threshold {
            return None;
        }
        let length = self
            .config
            .duration
            .saturating_mul(1 << s.bans.min(16))
            .min(self.config.max_duration);
        let until = now + length;
        s.points = 0;
        s.bans = s.bans.saturating_add(1);
        s.banned_until = Some(until);
        let prefix = s.prefix;
        let prefix = prefix.filter(|p| self.prefix_full(now, p)).map(|p| {
            let end = self.prefixes.entry(p).or_insert(until);
            *end = (*end).max(until);
            BannedPrefix(p)
        });
        Some(Ban { until, prefix })
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn is_banned(&self, now: Timestamp, peer: &Key) -> bool {
        self.peers
            .get(peer)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Whether `contact` is banned, by its id or by its address's prefix.
    pub(crate) fn shuns<A: crate::Address>(
        &self,
        now: Timestamp,
        contact: &crate::Contact<A>,
    ) -> bool {
        self.is_banned(now, &contact.id)
            || contact
                .addr
                .ip()
                .is_some_and(|ip| self.is_banned_ip(now, ip))
    }

    /// Whether `peer` was banned and the ban has not been seen to end (by [`Bans::expire`]):
    /// for callers without the time.
    pub(crate) fn under_ban(&self, peer: &Key) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|s| s.banned_until.is_some())
    }

    /// Whether connections from `ip` are refused at `now`.
    pub(crate) fn is_banned_ip(&self, now: Timestamp, ip: IpAddr) -> bool {
        self.prefixes
            .get(&IpPrefix::of(ip))
            .is_some_and(|until| *until > now)
    }

    /// Ends the bans that ran out by `now`; the peers whose ban ended.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<Key> {
        self.prefixes.retain(|_, until| *until > now);
        let mut lifted: Vec<Key> = self
            .peers
            .iter_mut()
            .filter_map(|(k, s)| match s.banned_until {
                Some(until) if until <= now => {
                    s.banned_until = None;
                    Some(*k)
                }
                _ => None,
            })
            .collect();
        lifted.sort_unstable();
        lifted
    }

    /// Peers banned at `now`, with the end of each ban.
    pub(crate) fn banned(&self, now: Timestamp) -> impl Iterator<Item = (&Key, Timestamp)> {
        self.peers
            .iter()
            .filter_map(move |(k, s)| s.banned_until.filter(|u| *u > now).map(|u| (k, u)))
    }

    /// Whether `prefix_after` peers of `prefix` are banned at `now`.
    fn prefix_full(&self, now: Timestamp, prefix: &IpPrefix) -> bool {
        let Some(after) = self.config.prefix_after else {
            return false;
        };
        let n = self
            .peers
            .values()
            .filter(|s| {
                s.prefix.as_ref() == Some(prefix) && s.banned_until.is_some_and(|u| u > now)
            })
            .count();
        n >= after.max(1)
    }

    /// Forgets the quarter of tracked peers with the fewest points that are not banned (or, if
    /// every one is banned, those whose bans end soonest), ties broken by id.
    fn evict(&mut self, now: Timestamp) {
        let mut order: Vec<(bool, Timestamp, u64, Key)> = self
            .peers
            .iter()
            .map(|(k, s)| {
                let until = s.banned_until.filter(|u| *u > now);
                (until.is_some(), until.unwrap_or(s.at), s.points, *k)
            })
            .collect();
        order.sort_unstable();
        let n = (self.config.max_tracked / 4).max(1);
        for (_, _, _, k) in order.into_iter().take(n) {
            self.peers.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn t(secs: u64) -> Timestamp {
        Timestamp::EPOCH + Duration::from_secs(secs)
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)))
    }

    #[test]
    fn two_wrong_proofs_ban_and_bans_lengthen() {
        let mut b = Bans::new(BanConfig::default());
        let p = Key::hash(b"liar");
        assert_eq!(b.charge(t(0), &p, ip(1), Offence::WrongProof), None);
        let ban = b.charge(t(1), &p, ip(1), Offence::WrongProof).unwrap();
        assert_eq!(ban.until, t(1) + Duration::from_secs(3600));
        assert!(ban.prefix.is_none());
        assert!(b.is_banned(t(2), &p));
        // Charges during a ban change nothing.
        assert_eq!(b.charge(t(3), &p, ip(1), Offence::ForgedRecord), None);
        assert!(b.is_banned(t(3), &p));
        assert!(b.expire(t(2)).is_empty());
        assert_eq!(b.expire(t(3602)), vec![p]);
        assert!(!b.is_banned(t(3602), &p));
        // One forgery bans at once, and the second ban is twice as long.
        let again = b.charge(t(3603), &p, ip(1), Offence::ForgedRecord).unwrap();
        assert_eq!(again.until, t(3603) + Duration::from_secs(7200));
    }

    #[test]
    fn points_decay_so_rare_slips_never_ban() {
        let mut b = Bans::new(BanConfig::default());
        let p = Key::hash(b"honest");
        // A false holder claim every 10 minutes for a day: 21 points each, 21 forgiven between.
        for i in 0..144 {
            assert_eq!(b.charge(t(i * 600), &p, ip(1), Offence::FalseHolder), None);
        }
        // Five at once ban.
        let q = Key::hash(b"liar");
        let bans: Vec<_> = (0..5)
            .filter_map(|_| b.charge(t(0), &q, ip(2), Offence::FalseHolder))
            .collect();
        assert_eq!(bans.len(), 1);
    }

    #[test]
    fn a_prefix_is_banned_with_its_third_peer() {
        let mut b = Bans::new(BanConfig::default());
        let mut last = None;
        for n in 0..3u8 {
            let p = Key::hash(&[n]);
            b.charge(t(0), &p, ip(n), Offence::WrongProof);
            last = b.charge(t(0), &p, ip(n), Offence::WrongProof);
        }
        let ban = last.unwrap();
        let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200));
        assert!(ban.covers(other));
        assert!(b.is_banned_ip(t(10), other));
        assert!(!b.is_banned_ip(t(10), IpAddr::V4(Ipv4Addr::new(203, 0, 114, 1))));
        b.expire(t(3601));
        assert!(!b.is_banned_ip(t(3601), other));
        // Off: never a prefix.
        let mut off = Bans::new(BanConfig {
            prefix_after: None,
            ..BanConfig::default()
        });
        for n in 0..5u8 {
            let p = Key::hash(&[n]);
            off.charge(t(0), &p, ip(n), Offence::WrongProof);
            let ban = off.charge(t(0), &p, ip(n), Offence::WrongProof).unwrap();
            assert!(ban.prefix.is_none());
        }
    }

    #[test]
    fn bounded_and_bans_outlive_points() {
        let mut b = Bans::new(BanConfig {
            max_tracked: 8,
            ..BanConfig::default()
        });
        let banned = Key::hash(b"banned");
        b.charge(t(0), &banned, None, Offence::Malformed);
        b.charge(t(0), &banned, None, Offence::Malformed);
        b.charge(t(0), &banned, None, Offence::Malformed);
        assert!(b.is_banned(t(0), &banned));
        for n in 0..100u32 {
            b.charge(t(1), &Key::hash(&n.to_be_bytes()), None, Offence::JunkPush);
        }
        assert!(b.peers.len() <= 8);
        assert!(b.is_banned(t(2), &banned));
    }
}
