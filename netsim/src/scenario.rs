//! What to simulate: the network's size, its conditions and the workload, all in one value so a
//! test, the command line and a report name the same run.

use std::time::Duration;

use serde::Serialize;

use crate::Churn;

/// The parameters of one run. `Scenario::default()` is a stable network of 1,000 honest nodes
/// with 500 lookups over ten minutes.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Nodes at the start, adversaries included.
    pub nodes: usize,
    /// Lookups of the workload, spread evenly over `duration`.
    pub lookups: usize,
    /// Seed of every random choice: same seed, same run.
    pub seed: u64,
    /// Probability that one message (a request or a response) is lost.
    pub loss: f64,
    /// Nodes leave and new ones join; `None` keeps the membership fixed.
    pub churn: Option<Churn>,
    /// Fraction of the nodes that are adversaries.
    pub adversaries: f64,
    /// How the adversaries misbehave.
    pub adversary_kind: AdversaryKind,
    /// The engine's `disjoint_paths` (S/Kademlia); 1 is a plain Kademlia lookup.
    pub disjoint_paths: usize,
    /// The engine's α: requests in flight per lookup path.
    pub alpha: usize,
    /// The engine's k: bucket size and lookup result size.
    pub k: usize,
    /// The engine's floor on request timeouts (`TimeoutConfig::min`).
    #[serde(serialize_with = "crate::report::as_secs")]
    pub timeout_min: Duration,
    /// Split the network in two (the Americas against the rest) for this long, starting a
    /// quarter into the workload; the workload is stretched to at least twice this.
    #[serde(serialize_with = "crate::report::as_opt_secs")]
    pub partition: Option<Duration>,
    /// How long the workload runs in virtual time.
    #[serde(serialize_with = "crate::report::as_secs")]
    pub duration: Duration,
    /// How the starting nodes come to know each other.
    pub join: JoinMode,
    /// What the lookups ask; `None` picks [`Workload::Record`] for the `forge` and `sybil`
    /// adversaries (whose attacks are on records) and [`Workload::Node`] otherwise.
    pub workload: Option<Workload>,
    /// Objects the content workload publishes ([`Workload::Content`]).
    pub objects: usize,
    /// Size of each object, in bytes; it is cut into 256 KiB chunks (the node's average
    /// content-defined chunk size), the last one shorter.
    pub object_bytes: u64,
    /// Gets of the content workload, spread evenly over `duration`.
    pub gets: usize,
    /// Zipf exponent of object popularity: object `r` (from 1) is asked for with weight
    /// `1 / r^zipf`; 0 makes every object equally likely.
    pub zipf: f64,
    /// The engine's fetch window (`FetchConfig::window`: chunks requested or received and not
    /// yet released, per get); `None` keeps the engine's default.
    pub fetch_window: Option<usize>,
    /// The engine's fetch lookahead (`FetchConfig::lookahead`: how far past the first
    /// unreleased chunk holder lookups run); `None` keeps the engine's default.
    pub fetch_lookahead: Option<usize>,
    /// The engine's holder-lookup width for fetches (`FetchConfig::alpha`); `None` keeps the
    /// engine's default.
    pub fetch_alpha: Option<usize>,
    /// Copies per chunk (`Config::replication`); `None` keeps the engine's default.
    pub replication: Option<usize>,
}

/// How adversaries answer requests. They run no engine: the simulator answers for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// Never answers anything (not even a ping): a black hole that joined honestly.
    Drop,
    /// Answers pings; answers every lookup request only with other adversaries closest to the
    /// target and with made-up ids next to the target that no node owns.
    Misroute,
    /// Routes honestly, but answers record reads with a forged record (a higher sequence and
    /// another value under the genuine signature), swallows stores, and claims to hold every
    /// chunk it is asked about.
    Forge,
    /// Many ids placed next to one target key (the first published record's key), all from a
    /// few /24 networks (254 ids per /24). For keys near the target they answer only with each
    /// other and return no record; elsewhere they route honestly to stay in routing tables.
    Sybil,
    /// Routes honestly, but claims to hold every chunk: answers `GetProviders` with
    /// `holds: true` and lists itself as a provider. Asked for the chunk, half of them (by
    /// slot, seeded) answer that they do not have it, the other half send bytes that do not
    /// match its hash.
    FakeHolder,
}

/// How the starting network is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JoinMode {
    /// Routing tables start filled as in a network that has run for a while: every node hears
    /// from up to k random live nodes of each of its buckets (through the engine's own
    /// `handle_request`, so its insertion rules apply). Cheap at any size.
    Warm,
    /// Every node joins through the engine's `bootstrap` from a random node already in, one
    /// every 20 ms of virtual time; the workload starts when every join has finished.
    Bootstrap,
}

/// What the workload's lookups ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `find_node` of a random live honest node's id from another random live honest node;
    /// success is finding it, recall is judged against the true k closest.
    Node,
    /// Records are published first (`put_record`), then each lookup is a `get_record` of one of
    /// them; success is reading the genuine value.
    Record,
    /// Objects are cut into chunks and placed first (`place`, then a transfer to each placed
    /// peer), then random nodes get them through the engine's fetch state machine over
    /// modelled links; success is receiving every chunk (see `content.rs`).
    Content,
    /// Objects are placed as in `content`, records published, and then nodes come and go
    /// (`churn`) for the whole run with nobody reading: every hour the sim counts the chunks
    /// that some online honest node still stores, and the records some online honest node
    /// still holds. What keeps them is the engines' repair, handoff and republishing alone.
    Durability,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            nodes: 1000,
            lookups: 500,
            seed: 0,
            loss: 0.0,
            churn: None,
            adversaries: 0.0,
            adversary_kind: AdversaryKind::Misroute,
            disjoint_paths: 1,
            alpha: 3,
            k: 20,
            timeout_min: cairn_dht::TimeoutConfig::default().min,
            partition: None,
            duration: Duration::from_secs(600),
            join: JoinMode::Warm,
            workload: None,
            objects: 100,
            object_bytes: 16 << 20,
            gets: 1000,
            zipf: 0.0,
            fetch_window: None,
            fetch_lookahead: None,
            fetch_alpha: None,
            replication: None,
        }
    }
}

impl Scenario {
    /// The workload the run uses.
    pub fn workload(&self) -> Workload {
        self.workload.unwrap_or(match self.adversary_kind {
            AdversaryKind::Forge | AdversaryKind::Sybil if self.adversary_count() > 0 => {
                Workload::Record
            }
            AdversaryKind::FakeHolder if self.adversary_count() > 0 => Workload::Content,
            _ => Workload::Node,
        })
    }

    /// How many of the starting nodes are adversaries.
    pub fn adversary_count(&self) -> usize {
        let n = (self.nodes as f64 * self.adversaries.clamp(0.0, 1.0)).round() as usize;
        // At least two honest nodes, or there is nothing to look up.
        n.min(self.nodes.saturating_sub(2))
    }

    /// The workload's length: `duration`, stretched to twice the partition so that a quarter of
    /// the lookups run before it, half during it and a quarter after it heals.
    pub fn workload_duration(&self) -> Duration {
        match self.partition {
            Some(p) => self.duration.max(p * 2),
            None => self.duration,
        }
    }
}
