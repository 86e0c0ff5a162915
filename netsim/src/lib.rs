//! Deterministic discrete-event simulator for cairn-dht: no sockets, no threads, no clock, no
//! global RNG (`clippy.toml` bans `Instant::now`, `SystemTime::now` and unseeded RNGs here).
//!
//! It runs thousands of real [`cairn_dht::Dht<u32>`] engines, the code a cairn node ships,
//! over a modelled network, and reports how lookups fare at a scale no test can run as
//! processes. The model:
//! - **latency**: a synthetic geography of five regions; a pair's round trip is 5–20 ms inside a
//!   region and 80–300 ms across, stable per pair, plus per-message jitter (`network.rs`);
//! - **loss**: each request and response is lost with a given probability;
//! - **churn**: exponential or Weibull session lengths with a given mean; new nodes arrive as a
//!   Poisson process and join through the engine's `bootstrap` (`churn.rs`);
//! - **partitions**: the Americas cut off from the rest for a period, then healed;
//! - **adversaries**: a fraction of nodes that the simulator answers for, maliciously: dropping
//!   every request, misrouting, forging records, or a Sybil cluster around one key
//!   (`adversary.rs`), or claiming to hold every chunk and then refusing it or sending
//!   garbage;
//! - **content**: every node has a store of chunk ids and an access link (home links of tens of
//!   Mbit/s up and hundreds down, a tenth of the nodes in datacenters at 1 Gbit/s); a chunk
//!   transfer takes a round trip plus its size over the two ends' links, queued behind the
//!   transfers already on them (`content.rs`). The content workload puts objects through the
//!   engine's `place` and gets them through its fetch state machine (`objects.rs`).
//!
//! Everything random comes from [`Scenario::seed`], and events at the same instant run in the
//! order they were scheduled: the same scenario gives the same [`Report`], byte for byte.
//!
//! ```
//! let report = cairn_netsim::run(&cairn_netsim::Scenario {
//!     nodes: 200,
//!     lookups: 20,
//!     ..Default::default()
//! });
//! assert_eq!(report.lookups_finished, 20);
//! ```

mod adversary;
mod churn;
mod content;
mod directory;
mod durability;
mod network;
mod objects;
mod queue;
mod report;
mod scenario;
mod sim;
mod workload;

pub use churn::{Churn, SessionDistribution};
pub use report::{PartitionReport, Report};
pub use scenario::{AdversaryKind, JoinMode, Scenario, Workload};
pub use workload::run;
