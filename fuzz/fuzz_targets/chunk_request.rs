//! `/cairn/chunk/1.0.0` requests: `wire::decode::<ChunkRequest>` at `MAX_CHUNK_MESSAGE`.
//! `ChunkRequest` has no `PartialEq`, so the round trip checks the encoding is a fixed point.

#![no_main]

use cairn_dht::Key;
use cairn_node::protocol::{ChunkRequest, MAX_CHUNK_MESSAGE};
use cairn_node::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = wire::decode::<ChunkRequest>(data, MAX_CHUNK_MESSAGE) else {
        return;
    };
    if let ChunkRequest::Store { id, bytes } = &request {
        // The receiver checks the bytes hash to the id before keeping them.
        let _ = Key::hash(bytes) == *id;
    }
    cairn_fuzz::round_trip_bytes(&request);
});
