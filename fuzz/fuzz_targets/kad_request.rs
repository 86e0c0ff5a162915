//! `/cairn/kad/1.0.0` requests: every inbound DHT request goes through
//! `wire::decode::<cairn_dht::Request>` at `MAX_KAD_MESSAGE`, and a `PutRecord`'s record is then
//! verified.

#![no_main]

use cairn_dht::{Request, RequestBody};
use cairn_node::protocol::MAX_KAD_MESSAGE;
use cairn_node::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = wire::decode::<Request>(data, MAX_KAD_MESSAGE) else {
        return;
    };
    if let RequestBody::PutRecord { record } = &request.body {
        cairn_fuzz::check_record(record);
    }
    cairn_fuzz::round_trip(&request);
});
