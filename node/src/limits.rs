//! Connection limits: how many connections a stranger can make this node hold.
//!
//! Three libp2p behaviours in the node's [`crate::protocol`] behaviour:
//! - libp2p's `connection_limits`: pending and established connections, in and out, in all
//!   and per peer;
//! - libp2p's `memory_connection_limits`: no new connection while the process uses more than
//!   [`MAX_MEMORY_FRACTION`] of the machine's memory;
//! - `IpLimit`: inbound connections per remote IP address, so that one host cannot take all
//!   the inbound slots with many peer ids (off on a local network, where every peer is on
//!   127.0.0.1), and none from an address prefix the engine banned (see
//!   [`cairn_dht::BannedPrefix`]).
//!
//! Banned peer ids are refused by libp2p's `allow_block_list`, also in that behaviour.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId, connection_limits};

/// Connections being set up at once, each way.
pub const MAX_PENDING: u32 = 128;
/// Established connections in all.
pub const MAX_ESTABLISHED: u32 = 512;
/// Established inbound connections (the rest of [`MAX_ESTABLISHED`] is kept for this node's
/// own dials, so strangers cannot take every slot).
pub const MAX_ESTABLISHED_INBOUND: u32 = 384;
/// Established connections to one peer (a QUIC and a TCP one, say).
pub const MAX_PER_PEER: u32 = 2;
/// Inbound connections, pending or established, from one IP address.
pub const MAX_PER_IP: usize = 8;
/// No new connection is accepted or dialled while the process uses more than this share of the
/// machine's memory.
pub const MAX_MEMORY_FRACTION: f64 = 0.9;

/// The node's connection limits.
pub(crate) fn connection_limits() -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING))
            .with_max_pending_outgoing(Some(MAX_PENDING))
            .with_max_established(Some(MAX_ESTABLISHED))
            .with_max_established_incoming(Some(MAX_ESTABLISHED_INBOUND))
            .with_max_established_per_peer(Some(MAX_PER_PEER)),
    )
}

/// The remote IP of an address, if it has one.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Refuses an inbound connection from an IP address that already has `max` (pending or
/// established); `None` lets everything through.
#[derive(Debug, Default)]
pub(crate) struct IpLimit {
    max: Option<usize>,
    /// Prefixes refused until the instant given.
    banned: Vec<(cairn_dht::BannedPrefix, Instant)>,
    /// The IP of each inbound connection counted, and the count per IP.
    by_connection: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

/// An inbound connection refused by [`IpLimit`].
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {max} inbound connections to this node")]
pub(crate) struct TooManyFromIp {
    ip: IpAddr,
    max: usize,
}

/// An inbound connection from a banned address prefix.
#[derive(Debug, thiserror::Error)]
#[error("{ip} is in an address prefix banned for misbehaviour")]
pub(crate) struct BannedIp {
    ip: IpAddr,
}

impl IpLimit {
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Refuses connections from `prefix` until `until`.
    pub(crate) fn ban(&mut self, prefix: cairn_dht::BannedPrefix, until: Instant) {
        let now = Instant::now();
        self.banned.retain(|(p, end)| *end > now && *p != prefix);
        self.banned.push((prefix, until));
    }

    fn is_banned(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.banned
            .iter()
            .any(|(p, end)| *end > now && p.covers(ip))
    }

    fn forget(&mut self, id: &ConnectionId) {
        if let Some(ip) = self.by_connection.remove(id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for IpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.is_banned(ip) {
            return Err(ConnectionDenied::new(BannedIp { ip }));
        }
        let Some(max) = self.max else {
            return Ok(());
        };
        let n = self.per_ip.entry(ip).or_default();
        if *n >= max {
            return Err(ConnectionDenied::new(TooManyFromIp { ip, max }));
        }
        *n += 1;
        self.by_connection.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed {
                connection_id,
                endpoint: ConnectedPoint::Listener { .. },
                ..
            })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget(&connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_gets_max_inbound_connections_and_a_slot_back_when_one_closes() {
        let mut limit = IpLimit::new(Some(2));
        let local: Multiaddr = "/ip4/10.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let a: Multiaddr = "/ip4/192.0.2.7/udp/5000/quic-v1".parse().unwrap();
        let b: Multiaddr = "/ip4/198.51.100.9/udp/5000/quic-v1".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..4).map(ConnectionId::new_unchecked).collect();
        assert!(
            limit
                .handle_pending_inbound_connection(ids[0], &local, &a)
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(ids[1], &local, &a)
                .is_ok()
        );
        let refused = limit.handle_pending_inbound_connection(ids[2], &local, &a);
        assert!(refused.is_err(), "a third from the same IP");
        assert!(
            limit
                .handle_pending_inbound_connection(ids[3], &local, &b)
                .is_ok()
        );
        limit.forget(&ids[0]);
        assert!(
            limit
                .handle_pending_inbound_connection(ids[2], &local, &a)
                .is_ok()
        );
        // Off: anything goes.
        let mut off = IpLimit::new(None);
        for i in 0..100 {
            let id = ConnectionId::new_unchecked(i);
            assert!(
                off.handle_pending_inbound_connection(id, &local, &a)
                    .is_ok()
            );
        }
    }
}
