//! Deterministic network simulator for cairn-dht. Not built yet (see the netsim issue): running
//! it says so and exits with an error rather than printing figures it did not measure.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("cairn-netsim: the simulator is not built yet");
    ExitCode::FAILURE
}
