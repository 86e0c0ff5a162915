//! Checks shared by the fuzz targets in `fuzz_targets/`: what must hold of a message that a
//! decoder accepted. A decoder refusing bytes is always fine; a panic, here or in the decoder,
//! is a bug.

use std::fmt::Debug;

use cairn_dht::{SignedRecord, Timestamp};
use cairn_node::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The instant records are verified at: 2025-06-15, before the expiry of the seed records
/// (`examples/seeds.rs`), so that a seed's valid signature reaches the expiry check.
pub const NOW: Timestamp = Timestamp::from_micros(1_750_000_000_000_000);

/// Encodes a decoded `value` and decodes it again: the second decode must succeed and give an
/// equal value. Returns the encoding.
///
/// The second decode has no size cap: a peer's encoding need not be the one we write (it may use
/// indefinite lengths, non-minimal integers or unknown map keys), so ours can differ in length
/// from what was received.
pub fn round_trip<T>(value: &T) -> Vec<u8>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = wire::encode(value).expect("a decoded message encodes");
    let back: T = wire::decode(&bytes, u64::MAX).expect("an encoded message decodes");
    assert_eq!(&back, value, "decode(encode(v)) != v");
    bytes
}

/// [`round_trip`] for a type without `PartialEq`: the encoding must be a fixed point, encoding
/// what decoding the encoding gave yields the same bytes.
pub fn round_trip_bytes<T>(value: &T) -> Vec<u8>
where
    T: Serialize + DeserializeOwned,
{
    let bytes = wire::encode(value).expect("a decoded message encodes");
    let back: T = wire::decode(&bytes, u64::MAX).expect("an encoded message decodes");
    let again = wire::encode(&back).expect("a decoded message encodes");
    assert_eq!(again, bytes, "encode(decode(encode(v))) != encode(v)");
    bytes
}

/// What a peer does with a record it received: find its key and verify it. A verdict either way
/// is fine; the check must not panic, and a record that verifies keeps verifying after a round
/// trip.
pub fn check_record(record: &SignedRecord) {
    let _ = record.key();
    let verdict = record.verify(NOW);
    let _ = verdict.as_ref().map_err(|e| e.is_forgery());
    let bytes = wire::encode(record).expect("a decoded record encodes");
    let back: SignedRecord = wire::decode(&bytes, u64::MAX).expect("an encoded record decodes");
    assert_eq!(
        back.verify(NOW),
        verdict,
        "a round trip changed the verdict"
    );
}
