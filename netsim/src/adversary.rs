//! Adversaries: nodes whose requests the simulator answers maliciously instead of running an
//! honest engine. They collude perfectly: each knows every other adversary and every live node
//! (the [`Directory`]), the strongest attacker the model allows.

use std::collections::BTreeMap;

use cairn_dht::{Contact, Key, Request, RequestBody, Response, ResponseBody, SignedRecord};

use crate::AdversaryKind;
use crate::directory::KeyIndex;
use crate::network::mix;

/// Addresses with this high byte reach no node: made-up contacts point there, so requests to
/// them time out.
pub(crate) const VOID_ADDR: u32 = 0xff00_0000;

/// Sybil ids per /24 network: the IP-prefix cap of honest routing tables sees them as one
/// operator's.
pub(crate) const SYBILS_PER_SUBNET: u32 = 254;

/// Bits a Sybil id shares with the attacked key: far more than any honest id shares at 2^20
/// nodes, so every Sybil is closer to the key than every honest node.
pub(crate) const SYBIL_PREFIX_BITS: usize = 64;

/// What adversaries know and remember, shared by all of them.
#[derive(Debug)]
pub(crate) struct Adversaries {
    pub(crate) kind: AdversaryKind,
    /// The key the Sybils surround.
    pub(crate) sybil_target: Option<Key>,
    /// Genuine records the forgers were asked to store, by key.
    records: BTreeMap<Key, SignedRecord>,
}

/// The membership views an adversary answers from.
pub(crate) struct Directory<'a> {
    /// Every live node, honest or not.
    pub(crate) all: &'a KeyIndex,
    /// Every live adversary.
    pub(crate) adversaries: &'a KeyIndex,
    /// The contact (id and address) of a slot.
    pub(crate) contact: &'a dyn Fn(u32) -> Contact<u32>,
}

impl Adversaries {
    pub(crate) fn new(kind: AdversaryKind) -> Self {
        Self {
            kind,
            sybil_target: None,
            records: BTreeMap::new(),
        }
    }

    /// The answer of adversary `me` to `request`, or `None` to stay silent.
    pub(crate) fn answer(
        &mut self,
        me: u32,
        request: &Request,
        dir: &Directory<'_>,
        k: usize,
    ) -> Option<Response<u32>> {
        let body = match self.kind {
            AdversaryKind::Drop => return None,
            AdversaryKind::Misroute => self.misroute(me, &request.body, dir, k),
            AdversaryKind::Forge => self.forge(me, &request.body, dir, k),
            AdversaryKind::Sybil => self.sybil(me, &request.body, dir, k),
            AdversaryKind::FakeHolder => fake_holder(me, &request.body, dir, k),
        };
        Some(Response::new(body))
    }

    fn misroute(
        &mut self,
        me: u32,
        body: &RequestBody,
        dir: &Directory<'_>,
        k: usize,
    ) -> ResponseBody<u32> {
        let lie = |target: &Key, count: usize| {
            // Half made-up ids right next to the target (closer than any real node, so the
            // lookup chases them into timeouts), half the adversaries closest to it.
            let fakes = count / 2;
            let mut out: Vec<Contact<u32>> = (0..fakes).map(|i| fake(target, me, i)).collect();
            out.extend(
                dir.adversaries
                    .closest(target, count - fakes + 1, |s| s != me)
                    .into_iter()
                    .take(count - fakes)
                    .map(|(_, s)| (dir.contact)(s)),
            );
            out
        };
        steer(body, k, lie)
    }

    fn forge(
        &mut self,
        me: u32,
        body: &RequestBody,
        dir: &Directory<'_>,
        k: usize,
    ) -> ResponseBody<u32> {
        match body {
            RequestBody::Ping => ResponseBody::Pong,
            RequestBody::FindNode { target, count } => ResponseBody::Nodes {
                closer: honest_closest(target, clamp_count(*count, k), me, dir),
            },
            RequestBody::FindValue { key } => ResponseBody::Value {
                record: self.records.get(key).map(|genuine| {
                    let mut forged = genuine.clone();
                    forged.sequence = forged.sequence.saturating_add(1);
                    forged.value = b"forged".to_vec();
                    forged
                }),
                closer: honest_closest(key, k, me, dir),
            },
            RequestBody::PutRecord { record } => {
                self.records.insert(record.key(), record.clone());
                ResponseBody::Stored
            }
            RequestBody::AddProvider { .. } => ResponseBody::Stored,
            RequestBody::GetProviders { key, .. } => ResponseBody::Providers {
                holds: true,
                providers: Vec::new(),
                closer: honest_closest(key, k, me, dir),
                chunk: None,
            },
        }
    }

    fn sybil(
        &mut self,
        me: u32,
        body: &RequestBody,
        dir: &Directory<'_>,
        k: usize,
    ) -> ResponseBody<u32> {
        let target = self.sybil_target;
        // Near the attacked key: only Sybils. Elsewhere: honest routing, to stay in tables.
        let answer = |key: &Key, count: usize| match target {
            Some(t) if shared_prefix(key, &t) >= SYBIL_PREFIX_BITS / 2 => dir
                .adversaries
                .closest(key, count, |s| s != me)
                .into_iter()
                .map(|(_, s)| (dir.contact)(s))
                .collect(),
            _ => honest_closest(key, count, me, dir),
        };
        steer(body, k, answer)
    }
}

/// A fake holder routes honestly (to stay in routing tables and be asked) and claims every
/// chunk, naming itself as a provider too, so that a holder lookup that trusted claims would
/// stop at it. What it does when asked for the bytes is [`fake_holder_corrupts`].
fn fake_holder(me: u32, body: &RequestBody, dir: &Directory<'_>, k: usize) -> ResponseBody<u32> {
    match body {
        RequestBody::GetProviders { key, .. } => ResponseBody::Providers {
            holds: true,
            providers: vec![(dir.contact)(me)],
            closer: honest_closest(key, k, me, dir),
            chunk: None,
        },
        _ => steer(body, k, |key, n| honest_closest(key, n, me, dir)),
    }
}

/// Whether fake holder `slot` answers a chunk request with garbage (true) or with "not found"
/// (false): half and half, by a hash of the seed and the slot, so it is fixed for the run.
pub(crate) fn fake_holder_corrupts(seed: u64, slot: u32) -> bool {
    mix(seed ^ 0xfa4e_0000 ^ u64::from(slot)) & 1 == 1
}

/// The Sybil id number `i` around `target`: the first [`SYBIL_PREFIX_BITS`] bits of the target,
/// then bits drawn from `salt`.
pub(crate) fn sybil_id(target: &Key, salt: u64) -> Key {
    let mut bytes = *target.as_bytes();
    let tail = Key::hash(&salt.to_be_bytes());
    bytes[SYBIL_PREFIX_BITS / 8..].copy_from_slice(&tail.as_bytes()[SYBIL_PREFIX_BITS / 8..]);
    Key::from_bytes(bytes)
}

/// The address of Sybil number `i`: 254 per /24, on /24s that no honest slot uses.
pub(crate) fn sybil_addr(i: u32) -> u32 {
    let host = 1 + i % SYBILS_PER_SUBNET;
    let subnet = 0x00ff_fff0 - i / SYBILS_PER_SUBNET;
    (host << 24) | subnet
}

/// The `n` live nodes closest to `key` other than `me`, as an honest node with a perfect table
/// would answer.
fn honest_closest(key: &Key, n: usize, me: u32, dir: &Directory<'_>) -> Vec<Contact<u32>> {
    dir.all
        .closest(key, n, |s| s != me)
        .into_iter()
        .map(|(_, s)| (dir.contact)(s))
        .collect()
}

/// A contact no node owns, next to `target`.
fn fake(target: &Key, me: u32, i: usize) -> Contact<u32> {
    let salt = mix(u64::from(me) << 16 ^ i as u64);
    let mut bytes = *target.as_bytes();
    let noise = Key::hash(&[target.as_bytes().as_slice(), &salt.to_be_bytes()].concat());
    bytes[12..].copy_from_slice(&noise.as_bytes()[12..]);
    Contact::new(
        Key::from_bytes(bytes),
        VOID_ADDR | (salt as u32 & 0x00ff_ffff),
    )
}

/// The answer of an adversary that answers every lookup with the peers `closer` picks (and holds
/// nothing, and pretends to store whatever it is given).
fn steer(
    body: &RequestBody,
    k: usize,
    closer: impl Fn(&Key, usize) -> Vec<Contact<u32>>,
) -> ResponseBody<u32> {
    match body {
        RequestBody::Ping => ResponseBody::Pong,
        RequestBody::FindNode { target, count } => ResponseBody::Nodes {
            closer: closer(target, clamp_count(*count, k)),
        },
        RequestBody::FindValue { key } => ResponseBody::Value {
            record: None,
            closer: closer(key, k),
        },
        RequestBody::GetProviders { key, .. } => ResponseBody::Providers {
            holds: false,
            providers: Vec::new(),
            closer: closer(key, k),
            chunk: None,
        },
        RequestBody::PutRecord { .. } | RequestBody::AddProvider { .. } => ResponseBody::Stored,
    }
}

fn clamp_count(count: u16, k: usize) -> usize {
    usize::from(count).clamp(1, 2 * k)
}

fn shared_prefix(a: &Key, b: &Key) -> usize {
    a.distance(b).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sybil_addresses_share_few_subnets_and_no_honest_one() {
        let subnets: std::collections::BTreeSet<u32> =
            (0..1000).map(|i| sybil_addr(i) & 0x00ff_ffff).collect();
        assert_eq!(subnets.len(), 4);
        assert!(subnets.iter().all(|s| *s > 0x00f0_0000));
        assert!(
            (0..1000).all(|i| sybil_addr(i) >> 24 != 0 && sybil_addr(i) & VOID_ADDR != VOID_ADDR)
        );
    }

    #[test]
    fn sybils_are_closer_than_random_ids() {
        let target = Key::hash(b"t");
        let s = sybil_id(&target, 1);
        assert!(target.distance(&s).leading_zeros() >= SYBIL_PREFIX_BITS);
    }
}
