//! Peers as the engine sees them: a node id and an address of the caller's choosing.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Key;

/// The address type the engine is generic over: libp2p `Multiaddr`s in the node, integers in the
/// simulator. The engine never dials; it hands addresses back in [`crate::Transmit`]s and ships
/// them to other peers in lookup answers, hence the serde bounds.
pub trait Address: Clone + Eq + Hash + Debug + Serialize + DeserializeOwned {
    /// The IP address this address reaches, if it has one, for the per-bucket IP-prefix cap.
    fn ip(&self) -> Option<IpAddr>;

    /// Whether this address can belong to the peer with node id `id`. Where the address names
    /// the peer's public key (a libp2p `PeerId`), a contact whose id does not match is a lie and
    /// is dropped from lookup answers. Default: always true.
    fn matches_id(&self, id: &Key) -> bool {
        let _ = id;
        true
    }
}

/// A peer: its node id (derived from its public key, see [`Key::for_peer`]) and an address.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Contact<A> {
    /// The node id.
    pub id: Key,
    /// Where to reach it.
    pub addr: A,
}

impl<A> Contact<A> {
    /// A contact from its parts.
    pub fn new(id: Key, addr: A) -> Self {
        Self { id, addr }
    }
}

/// The network an IP address belongs to for the eclipse cap: its IPv4 /24 or IPv6 /48.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum IpPrefix {
    V4([u8; 3]),
    V6([u8; 6]),
}

impl IpPrefix {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                IpPrefix::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpPrefix::of(IpAddr::V4(v4)),
                None => {
                    let o = v6.octets();
                    IpPrefix::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
                }
            },
        }
    }
}

impl Address for u32 {
    /// Simulated peers: peer `n` lives at `10.x.y.1` with a /24 of its own.
    fn ip(&self) -> Option<IpAddr> {
        let b = self.to_be_bytes();
        Some(IpAddr::V4(std::net::Ipv4Addr::new(b[1], b[2], b[3], 1)))
    }
}

impl Address for std::net::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        Some(std::net::SocketAddr::ip(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let c: IpAddr = "192.0.3.1".parse().unwrap();
        assert_eq!(IpPrefix::of(a), IpPrefix::of(b));
        assert_ne!(IpPrefix::of(a), IpPrefix::of(c));
        let d: IpAddr = "2001:db8:1::1".parse().unwrap();
        let e: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        let f: IpAddr = "2001:db8:2::1".parse().unwrap();
        assert_eq!(IpPrefix::of(d), IpPrefix::of(e));
        assert_ne!(IpPrefix::of(d), IpPrefix::of(f));
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(IpPrefix::of(mapped), IpPrefix::of(a));
    }
}
