//! The `cairn` command line. Not built yet (see the command-line issue): running it says so and
//! exits with an error.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("cairn: the command line is not built yet; the engine is in the cairn-dht crate");
    ExitCode::FAILURE
}
