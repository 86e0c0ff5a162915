//! Invites: a short copy-paste ticket with a node's peer id and the addresses it can be reached
//! at (direct, mapped by the router, relayed), which another node joins through
//! (`cairn daemon --join`, `cairn peers add`) or fetches from (`cairn get ID --from`).
//!
//! Text form: `cairninvite1` then lowercase base32 (RFC 4648 §7 alphabet, no padding) of the
//! peer id (length-prefixed), each address (length-prefixed), and the first 4 bytes of the
//! BLAKE3 hash of all that, so that a ticket cut short or mistyped is caught at once.

use std::fmt;
use std::str::FromStr;

use libp2p::{Multiaddr, PeerId};

/// The prefix of a ticket's text form; the digit is the format version.
pub const TICKET_PREFIX: &str = "cairninvite1";
/// Most addresses a ticket carries.
pub const MAX_TICKET_ADDRS: usize = 8;
/// Longest ticket text accepted.
pub const MAX_TICKET_LEN: usize = 2048;
const CHECKSUM: usize = 4;

/// A node and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The node.
    pub peer: PeerId,
    /// Its addresses, without `/p2p/<peer id>`, best first.
    pub addrs: Vec<Multiaddr>,
}

/// Why a string is not a ticket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Wrong prefix.
    #[error(
        "not a cairn invite: it should start with '{TICKET_PREFIX}' (from `cairn invite` on the other machine)"
    )]
    Prefix,
    /// Damaged: bad characters, cut short, or a wrong checksum.
    #[error("the invite is damaged ({0}); copy it again, whole")]
    Damaged(&'static str),
}

fn base32() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding().expect("a valid base32 alphabet")
}

impl Ticket {
    /// A ticket for `peer` with (at most [`MAX_TICKET_ADDRS`] of) `addrs`.
    pub fn new(peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        let mut out: Vec<Multiaddr> = Vec::new();
        for a in addrs {
            let a = crate::protocol::without_peer(&a);
            if !out.contains(&a) && out.len() < MAX_TICKET_ADDRS {
                out.push(a);
            }
        }
        Self { peer, addrs: out }
    }

    /// Each address with `/p2p/<peer id>`, as [`crate::Node::add_peer`] takes them.
    pub fn full_addrs(&self) -> Vec<Multiaddr> {
        self.addrs
            .iter()
            .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(self.peer)))
            .collect()
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let mut field = |bytes: &[u8]| {
            b.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
            b.extend_from_slice(&bytes[..bytes.len().min(255)]);
        };
        field(&self.peer.to_bytes());
        for a in &self.addrs {
            field(&a.to_vec());
        }
        let sum = blake3::hash(&b);
        b.extend_from_slice(&sum.as_bytes()[..CHECKSUM]);
        b
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TICKET_PREFIX}{}", base32().encode(&self.to_bytes()))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let body = s.strip_prefix(TICKET_PREFIX).ok_or(TicketError::Prefix)?;
        if s.len() > MAX_TICKET_LEN {
            return Err(TicketError::Damaged("too long"));
        }
        let bytes = base32()
            .decode(body.to_ascii_lowercase().as_bytes())
            .map_err(|_| TicketError::Damaged("characters that do not belong in it"))?;
        if bytes.len() < CHECKSUM + 1 {
            return Err(TicketError::Damaged("too short"));
        }
        let (data, sum) = bytes.split_at(bytes.len() - CHECKSUM);
        if blake3::hash(data).as_bytes()[..CHECKSUM] != *sum {
            return Err(TicketError::Damaged("its checksum does not match"));
        }
        let mut fields = Vec::new();
        let mut rest = data;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if tail.len() < len || fields.len() > MAX_TICKET_ADDRS {
                return Err(TicketError::Damaged("a field runs past its end"));
            }
            fields.push(&tail[..len]);
            rest = &tail[len..];
        }
        let (peer, addrs) = fields
            .split_first()
            .ok_or(TicketError::Damaged("no peer id"))?;
        let peer = PeerId::from_bytes(peer).map_err(|_| TicketError::Damaged("a bad peer id"))?;
        let addrs = addrs
            .iter()
            .map(|a| Multiaddr::try_from(a.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TicketError::Damaged("a bad address"))?;
        Ok(Self { peer, addrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        Ticket::new(
            peer,
            [
                "/ip4/198.51.100.7/udp/5738/quic-v1".parse().unwrap(),
                "/ip4/198.51.100.7/tcp/5738".parse().unwrap(),
                format!("/ip4/203.0.113.1/udp/5738/quic-v1/p2p/{peer}/p2p-circuit")
                    .parse()
                    .unwrap(),
            ],
        )
    }

    #[test]
    fn a_ticket_reads_back_as_written() {
        let t = ticket();
        let text = t.to_string();
        assert!(text.starts_with(TICKET_PREFIX));
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(text.parse::<Ticket>().unwrap(), t);
        assert_eq!(t.full_addrs().len(), 3);
    }

    #[test]
    fn a_damaged_ticket_is_refused_with_what_is_wrong() {
        let text = ticket().to_string();
        assert_eq!("cairn1abc".parse::<Ticket>(), Err(TicketError::Prefix));
        let cut = &text[..text.len() - 3];
        assert!(matches!(
            cut.parse::<Ticket>(),
            Err(TicketError::Damaged(_))
        ));
        let mut typo = text.clone().into_bytes();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(matches!(
            typo.parse::<Ticket>(),
            Err(TicketError::Damaged("its checksum does not match"))
        ));
        assert!(matches!(
            format!("{TICKET_PREFIX}!!").parse::<Ticket>(),
            Err(TicketError::Damaged(_))
        ));
        let long = format!("{TICKET_PREFIX}{}", "a".repeat(MAX_TICKET_LEN));
        assert!(matches!(
            long.parse::<Ticket>(),
            Err(TicketError::Damaged("too long"))
        ));
    }
}
