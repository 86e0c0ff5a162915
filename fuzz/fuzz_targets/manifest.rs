//! `Manifest::decode`: every manifest a get fetches (after its hash checked out, so an attacker
//! chooses all of it). Decoding promises canonical form, so an accepted manifest must encode to
//! exactly the bytes it came from, and decode from them to an equal value.

#![no_main]

use cairn_node::manifest::{Manifest, valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::decode(data) else {
        return;
    };
    let bytes = manifest.encode();
    assert_eq!(bytes, data, "an accepted manifest is not canonical");
    assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(&manifest));
    let _ = manifest.size();
    if let Manifest::Dir { entries } = &manifest {
        assert!(entries.iter().all(|e| valid_name(&e.name)));
    }
});
