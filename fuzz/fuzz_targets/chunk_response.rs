//! `/cairn/chunk/1.0.0` responses: `wire::decode::<ChunkResponse>` at `MAX_CHUNK_MESSAGE`.
//! `ChunkResponse` has no `PartialEq`, so the round trip checks the encoding is a fixed point.

#![no_main]

use cairn_node::protocol::{ChunkResponse, MAX_CHUNK_MESSAGE};
use cairn_node::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = wire::decode::<ChunkResponse>(data, MAX_CHUNK_MESSAGE) else {
        return;
    };
    if let ChunkResponse::Refused(reason) = &response {
        // A peer's reason is echoed to a terminal only through `printable`.
        assert!(!cairn_node::printable(reason).chars().any(char::is_control));
    }
    cairn_fuzz::round_trip_bytes(&response);
});
