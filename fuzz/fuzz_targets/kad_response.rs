//! `/cairn/kad/1.0.0` responses: `wire::decode::<cairn_dht::Response<PeerAddr>>` at
//! `MAX_KAD_MESSAGE`, which parses every contact's `PeerId` and `Multiaddr` from the peer's
//! bytes; then what the node asks of those addresses, and verification of a returned record.

#![no_main]

use cairn_dht::{Address, Contact, Response, ResponseBody};
use cairn_node::protocol::{self, MAX_KAD_MESSAGE, PeerAddr};
use cairn_node::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = wire::decode::<Response<PeerAddr>>(data, MAX_KAD_MESSAGE) else {
        return;
    };
    let contacts: &[Contact<PeerAddr>] = match &response.body {
        ResponseBody::Nodes { closer } => closer,
        ResponseBody::Value { record, closer } => {
            if let Some(record) = record {
                cairn_fuzz::check_record(record);
            }
            closer
        }
        ResponseBody::Providers {
            providers, closer, ..
        } => {
            providers.iter().for_each(check_contact);
            closer
        }
        ResponseBody::Pong | ResponseBody::Stored | ResponseBody::Error(_) => &[],
    };
    contacts.iter().for_each(check_contact);
    cairn_fuzz::round_trip(&response);
});

/// What the driver and the engine compute from a contact a peer sent.
fn check_contact(contact: &Contact<PeerAddr>) {
    let addr = &contact.addr;
    let _ = addr.ip();
    let _ = addr.matches_id(&contact.id);
    let _ = protocol::node_id(&addr.peer);
    let _ = protocol::is_shareable(&addr.addr);
    let _ = protocol::peer_of(&addr.addr);
    let bare = protocol::without_peer(&addr.addr);
    assert!(
        protocol::peer_of(&bare).is_none(),
        "without_peer left a peer id"
    );
    let _ = addr.addr.to_string();
    let _ = addr.peer.to_base58();
}
