//! The figures of a run: a [`Report`] computed from the finished simulation, printed as a table
//! for people or serialised as one JSON object for scripts.
//!
//! Everything here is a function of the seed and the scenario. The three figures that are not
//! (wall time, event rate, peak memory) are added by the binary, outside this crate's
//! deterministic core.

use std::fmt::{self, Write as _};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Serialize, Serializer};

use cairn_dht::Timestamp;

use crate::objects::GetRun;
use crate::sim::Simulator;
use crate::workload::Phase;
use crate::{AdversaryKind, Churn, JoinMode, Workload};

/// Pairs sampled for the median round trip.
const RTT_SAMPLES: usize = 20_001;

/// The deterministic figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Nodes at the start, adversaries included.
    pub nodes: usize,
    /// Lookups in the workload.
    pub lookups: usize,
    /// The seed.
    pub seed: u64,
    /// What the lookups asked.
    pub workload: Workload,
    /// How the network was formed.
    pub join: JoinMode,
    /// Message loss probability.
    pub loss: f64,
    /// Churn settings, if any.
    pub churn: Option<Churn>,
    /// Fraction of adversaries.
    pub adversaries: f64,
    /// Their kind, when there are any.
    pub adversary_kind: Option<AdversaryKind>,
    /// The engine's disjoint paths.
    pub disjoint_paths: usize,
    /// The engine's α.
    pub alpha: usize,
    /// The engine's k.
    pub k: usize,
    /// The engine's timeout floor, in ms.
    pub timeout_min_ms: f64,
    /// Length of the partition, in seconds.
    pub partition_seconds: Option<f64>,
    /// Length of the workload, in seconds of virtual time.
    pub duration_seconds: f64,
    /// Share of finished lookups that found their target (node lookups) or read the genuine
    /// record (record lookups). Lookups that could not succeed are left out: those whose target
    /// was across the partition while it lasted.
    pub success_rate: Option<f64>,
    /// Mean share of the true k closest live honest nodes (reachable from the origin) that a
    /// node lookup returned.
    pub closest_recall: Option<f64>,
    /// Median lookup hops to the closest peer found (1 = a peer the origin knew).
    pub hops_p50: Option<u32>,
    /// 95th percentile of hops.
    pub hops_p95: Option<u32>,
    /// Median lookup latency, in ms of virtual time.
    pub latency_ms_p50: Option<f64>,
    /// 95th percentile of lookup latency.
    pub latency_ms_p95: Option<f64>,
    /// Median round trip between two random live nodes (without jitter), in ms.
    pub rtt_ms_p50: f64,
    /// Mean requests a lookup sent (each one request/response exchange).
    pub messages_per_lookup: Option<f64>,
    /// Mean requests of a lookup that failed (no answer in time, or a useless one).
    pub failures_per_lookup: Option<f64>,
    /// Lookups that finished.
    pub lookups_finished: usize,
    /// Lookups that ended by the engine's `query_timeout`.
    pub lookups_timed_out: usize,
    /// Lookups whose origin went offline before they finished.
    pub lookups_abandoned: usize,
    /// Lookups the engine refused to start (too many queries in progress).
    pub lookups_refused: usize,
    /// Partition breakdown, in a run with one.
    pub partition: Option<PartitionReport>,
    /// Records published before the workload.
    pub records_published: usize,
    /// Mean number of peers that accepted a published record.
    pub record_replicas_mean: Option<f64>,
    /// Nodes that joined during the run (churn).
    pub joins: u64,
    /// Nodes that left during the run (churn).
    pub leaves: u64,
    /// Honest nodes online at the end.
    pub honest_online_at_end: usize,
    /// Requests sent by all engines, maintenance (joins, bucket refreshes, probes) included.
    pub requests_total: u64,
    /// Of `requests_total`, pings (liveness probes of routing-table entries).
    pub requests_ping: u64,
    /// Of `requests_ping`, those a node sent while answering a ping: a probe that made its
    /// receiver probe in turn (the receiver's bucket for the prober was full).
    pub requests_ping_after_ping: u64,
    /// `requests_total` per honest node per hour of virtual time.
    pub requests_per_node_hour: f64,
    /// Requests and responses lost (loss, partition, offline or missing peers).
    pub messages_lost: u64,
    /// Content workload: objects put.
    pub objects: Option<usize>,
    /// Content workload: bytes per object.
    pub object_bytes: Option<u64>,
    /// Content workload: chunks per object (256 KiB each, the last shorter).
    pub chunks_per_object: Option<usize>,
    /// Content workload: Zipf exponent of popularity (0: uniform).
    pub zipf: Option<f64>,
    /// Content workload: the engine's fetch window, in chunks.
    pub fetch_window: Option<usize>,
    /// Content workload: the engine's fetch lookahead, in chunks.
    pub fetch_lookahead: Option<usize>,
    /// Content workload: requests in flight per holder lookup of a fetch.
    pub fetch_alpha: Option<usize>,
    /// Mean copies per chunk that placed peers accepted (the publisher's own not counted).
    pub replicas_per_chunk_mean: Option<f64>,
    /// Placed or moved copies refused: the peer was gone, an adversary, or not responsible.
    pub replicas_refused: Option<u64>,
    /// Copies the engines moved to new closest peers (`Event::Replicate`) that were accepted.
    pub replicas_moved: Option<u64>,
    /// Gets in the workload.
    pub gets: Option<usize>,
    /// Gets that ended: every chunk received, or the engine gave up.
    pub gets_finished: Option<usize>,
    /// Gets the engine refused to start (too many fetches), or that were not started.
    pub gets_refused: Option<usize>,
    /// Gets whose getter went offline before they ended (left out of the success rate).
    pub gets_abandoned: Option<usize>,
    /// Gets the engine gave up on (`Event::FetchFailed`).
    pub gets_failed: Option<usize>,
    /// Mean holders tried for the chunk a failed get gave up on.
    pub get_failure_holders_tried_mean: Option<f64>,
    /// The first failed get's error, as the engine words it.
    pub get_failure_first: Option<String>,
    /// Share of gets (started, getter still online) that received every chunk.
    pub get_success_rate: Option<f64>,
    /// Median time from a get's start to its root manifest received, in ms.
    pub get_root_ms_p50: Option<f64>,
    /// Median time from a get's start to its first data chunk received (the file's first
    /// byte), in ms.
    pub get_first_byte_ms_p50: Option<f64>,
    /// 95th percentile of the same.
    pub get_first_byte_ms_p95: Option<f64>,
    /// Median time of a successful get, start to last chunk, in seconds.
    pub get_seconds_p50: Option<f64>,
    /// 95th percentile of the same.
    pub get_seconds_p95: Option<f64>,
    /// Median over the gets of what the getter's downlink alone would need for the object.
    pub get_downlink_bound_seconds_p50: Option<f64>,
    /// Mean distinct holders a successful get asked for chunks.
    pub get_holders_used_mean: Option<f64>,
    /// Median time from a get's start to the engine's first chunk request (its first holder
    /// found), in ms.
    pub time_to_first_holder_ms_p50: Option<f64>,
    /// Share of chunk bytes delivered to gets by origin copies (the publisher's and the placed
    /// peers') rather than by caches of earlier getters.
    pub origin_served_fraction: Option<f64>,
    /// Median get time, in seconds, of the first tenth of gets (by start) that succeeded.
    pub get_seconds_p50_first_tenth: Option<f64>,
    /// The same for the last tenth: with Zipf popularity, what caches did for late getters.
    pub get_seconds_p50_last_tenth: Option<f64>,
    /// Durability workload: copies per chunk (the engine's `replication`).
    pub replication: Option<usize>,
    /// Durability workload: share of the placed chunks (root manifests included) that some
    /// online honest node stores at the end.
    pub chunks_retrievable_end: Option<f64>,
    /// The lowest such share at any hourly check.
    pub chunks_retrievable_min: Option<f64>,
    /// Chunks no online honest node stores at the end.
    pub chunks_lost: Option<usize>,
    /// Bytes the engines' copies (`Event::Replicate`) sent, per node-hour of the run (by the
    /// online population at the checks).
    pub repair_bytes_per_node_hour: Option<f64>,
    /// Share of the published records that some online honest node holds at the end.
    pub records_retrievable_end: Option<f64>,
    /// The lowest such share at any hourly check.
    pub records_retrievable_min: Option<f64>,
    /// Events the simulator ran.
    pub events: u64,
    /// Virtual time at the end, in seconds.
    pub sim_seconds: f64,
}

/// Success of lookups by when they started relative to the partition and whether origin and
/// target were on the same side while it lasted.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionReport {
    /// Success rate of lookups started before the partition.
    pub before: Option<f64>,
    /// Success of lookups started during it between nodes on the same side.
    pub during_same_side: Option<f64>,
    /// Success of lookups started during it across the cut (expected 0: unreachable).
    pub during_cross_side: Option<f64>,
    /// Success of lookups started after it healed between nodes that were on opposite sides
    /// (for records: reads from the side opposite the one where the record was published
    /// again during the cut, which must return the newer version).
    pub after_cross_side: Option<f64>,
    /// The same for the lookups started in the second half of the time from the heal to the
    /// end of the workload: how well it healed, rather than how fast.
    pub after_cross_side_late: Option<f64>,
    /// Success of all lookups started after it healed.
    pub after: Option<f64>,
    /// Mean routing-table entries on the other side of the partition line, per live honest
    /// node, when the cut started.
    pub routing_across_at_cut: Option<f64>,
    /// The same when the cut healed: what the cut left of each side's view of the other.
    pub routing_across_at_heal: Option<f64>,
    /// The same at the end of the run: how far healing got.
    pub routing_across_at_end: f64,
}

impl Report {
    pub(crate) fn new(sim: &Simulator) -> Self {
        let s = &sim.scenario;
        let runs = &sim.work.lookups;
        let finished: Vec<_> = runs.iter().filter_map(|r| r.outcome).collect();
        // Judged lookups: finished, and their target was reachable when they started.
        let judged: Vec<_> = runs
            .iter()
            .filter(|r| !r.cross)
            .filter_map(|r| r.outcome)
            .collect();
        let success_rate = rate(judged.iter().map(|o| o.success));
        let recalls: Vec<f64> = judged.iter().filter_map(|o| o.recall).collect();
        let closest_recall = mean(&recalls);
        let mut hops: Vec<u32> = finished.iter().map(|o| o.stats.hops).collect();
        hops.sort_unstable();
        let mut latency: Vec<Duration> = finished.iter().map(|o| o.stats.duration).collect();
        latency.sort_unstable();
        let requests: Vec<f64> = finished
            .iter()
            .map(|o| f64::from(o.stats.requests))
            .collect();
        let failures: Vec<f64> = finished
            .iter()
            .map(|o| f64::from(o.stats.failures))
            .collect();
        let partition = s.partition.map(|_| {
            let phase = |p: Phase, cross: Option<bool>| {
                rate(
                    runs.iter()
                        .filter(|r| r.origin.is_some() && r.phase == p)
                        .filter(|r| cross.is_none_or(|c| r.cross == c))
                        .filter_map(|r| r.outcome.map(|o| o.success)),
                )
            };
            let after_cross = |from: Timestamp| {
                rate(
                    runs.iter()
                        .filter(|r| r.phase == Phase::After && r.opposite_sides)
                        .filter(|r| r.started >= from)
                        .filter_map(|r| r.outcome.map(|o| o.success)),
                )
            };
            let (_, heal) = sim.work.partition.expect("a partition");
            let end = sim.work.start + sim.scenario.workload_duration();
            let late = heal + end.saturating_duration_since(heal) / 2;
            PartitionReport {
                before: phase(Phase::Before, None),
                during_same_side: phase(Phase::During, Some(false)),
                during_cross_side: phase(Phase::During, Some(true)),
                after_cross_side: after_cross(heal),
                after_cross_side_late: after_cross(late),
                after: phase(Phase::After, None),
                routing_across_at_cut: sim.work.across_at_cut.map(round),
                routing_across_at_heal: sim.work.across_at_heal.map(round),
                routing_across_at_end: round(sim.routing_across()),
            }
        });
        let puts: Vec<f64> = sim
            .work
            .puts
            .iter()
            .map(|p| p.unwrap_or(0) as f64)
            .collect();
        let sim_seconds = sim.now.as_micros() as f64 / 1e6;
        let node_hours = (s.nodes - s.adversary_count()) as f64 * sim_seconds / 3600.0;
        let adversaries = s.adversary_count() as f64 / s.nodes.max(1) as f64;
        let c = (s.workload() == Workload::Content).then(|| ContentFigures::new(sim));
        let c = c.as_ref();
        let d = (s.workload() == Workload::Durability).then_some(());
        let checks = &sim.work.checks;
        Self {
            nodes: s.nodes,
            lookups: if matches!(s.workload(), Workload::Content | Workload::Durability) {
                0
            } else {
                s.lookups
            },
            seed: s.seed,
            workload: s.workload(),
            join: s.join,
            loss: s.loss,
            churn: s.churn,
            adversaries: round(adversaries),
            adversary_kind: (s.adversary_count() > 0).then_some(s.adversary_kind),
            disjoint_paths: s.disjoint_paths,
            alpha: s.alpha,
            k: s.k,
            timeout_min_ms: ms(s.timeout_min),
            partition_seconds: s.partition.map(|p| p.as_secs_f64()),
            duration_seconds: s.workload_duration().as_secs_f64(),
            success_rate,
            closest_recall: closest_recall.map(round),
            hops_p50: percentile(&hops, 50.0).copied(),
            hops_p95: percentile(&hops, 95.0).copied(),
            latency_ms_p50: percentile(&latency, 50.0).map(|d| ms(*d)),
            latency_ms_p95: percentile(&latency, 95.0).map(|d| ms(*d)),
            rtt_ms_p50: median_rtt(sim),
            messages_per_lookup: mean(&requests).map(round),
            failures_per_lookup: mean(&failures).map(round),
            lookups_finished: finished.len(),
            lookups_timed_out: finished.iter().filter(|o| o.stats.timed_out).count(),
            lookups_abandoned: runs
                .iter()
                .filter(|r| r.origin.is_some() && r.outcome.is_none() && !r.refused)
                .count(),
            lookups_refused: runs.iter().filter(|r| r.refused).count(),
            partition,
            records_published: sim.work.records.len(),
            record_replicas_mean: mean(&puts).map(round),
            joins: sim.counters.joins,
            leaves: sim.counters.leaves,
            honest_online_at_end: sim.honest_online(),
            requests_total: sim.counters.requests,
            requests_ping: sim.counters.pings,
            requests_ping_after_ping: sim.counters.ping_after_ping,
            requests_per_node_hour: round(sim.counters.requests as f64 / node_hours.max(1e-9)),
            messages_lost: sim.counters.lost,
            objects: c.map(|c| c.objects),
            object_bytes: c.map(|_| s.object_bytes),
            chunks_per_object: c.map(|c| c.chunks_per_object),
            zipf: c.map(|_| s.zipf),
            fetch_window: c.map(|_| {
                s.fetch_window
                    .unwrap_or(cairn_dht::FetchConfig::default().window)
            }),
            fetch_lookahead: c.map(|_| {
                s.fetch_lookahead
                    .unwrap_or(cairn_dht::FetchConfig::default().lookahead)
            }),
            fetch_alpha: c.map(|_| {
                s.fetch_alpha
                    .unwrap_or(cairn_dht::FetchConfig::default().alpha)
            }),
            replicas_per_chunk_mean: c.and_then(|c| c.replicas_per_chunk_mean),
            replicas_refused: c.map(|c| c.replicas_refused),
            replicas_moved: c.map(|c| c.replicas_moved),
            gets: c.map(|_| s.gets),
            gets_finished: c.map(|c| c.finished),
            gets_refused: c.map(|c| c.refused),
            gets_abandoned: c.map(|c| c.abandoned),
            gets_failed: c.map(|c| c.failed),
            get_failure_holders_tried_mean: c.and_then(|c| c.failure_holders_tried_mean),
            get_failure_first: c.and_then(|c| c.failure_first.clone()),
            get_success_rate: c.and_then(|c| c.success_rate),
            get_root_ms_p50: c.and_then(|c| percentile(&c.root, 50.0).map(|d| ms(*d))),
            get_first_byte_ms_p50: c.and_then(|c| percentile(&c.first_byte, 50.0).map(|d| ms(*d))),
            get_first_byte_ms_p95: c.and_then(|c| percentile(&c.first_byte, 95.0).map(|d| ms(*d))),
            get_seconds_p50: c.and_then(|c| percentile(&c.seconds, 50.0).map(|d| secs(*d))),
            get_seconds_p95: c.and_then(|c| percentile(&c.seconds, 95.0).map(|d| secs(*d))),
            get_downlink_bound_seconds_p50: c
                .and_then(|c| percentile(&c.downlink_bound, 50.0).map(|d| secs(*d))),
            get_holders_used_mean: c.and_then(|c| c.holders_used_mean),
            time_to_first_holder_ms_p50: c
                .and_then(|c| percentile(&c.first_holder, 50.0).map(|d| ms(*d))),
            origin_served_fraction: c.and_then(|c| c.origin_served_fraction),
            get_seconds_p50_first_tenth: c.and_then(|c| c.first_tenth),
            get_seconds_p50_last_tenth: c.and_then(|c| c.last_tenth),
            replication: d.map(|_| {
                s.replication
                    .unwrap_or(cairn_dht::Config::default().replication)
            }),
            chunks_retrievable_end: d
                .and_then(|_| checks.last().map(|c| round(c.chunks_fraction()))),
            chunks_retrievable_min: d.and_then(|_| {
                checks
                    .iter()
                    .map(|c| c.chunks_fraction())
                    .reduce(f64::min)
                    .map(round)
            }),
            chunks_lost: d.and_then(|_| checks.last().map(|c| c.chunks_total - c.chunks_present)),
            repair_bytes_per_node_hour: d.map(|_| {
                let hours = checks.first().zip(checks.last()).map_or(0.0, |(a, b)| {
                    b.at.saturating_duration_since(a.at).as_secs_f64() / 3600.0
                });
                let online = mean(
                    &sim.work
                        .online_samples
                        .iter()
                        .map(|&n| n as f64)
                        .collect::<Vec<_>>(),
                )
                .unwrap_or(0.0);
                round(sim.work.content.repair_bytes as f64 / (online * hours).max(1e-9))
            }),
            records_retrievable_end: d
                .and_then(|_| checks.last().map(|c| round(c.records_fraction()))),
            records_retrievable_min: d.and_then(|_| {
                checks
                    .iter()
                    .map(|c| c.records_fraction())
                    .reduce(f64::min)
                    .map(round)
            }),
            events: sim.counters.events,
            sim_seconds: round(sim_seconds),
        }
    }

    /// The report as a table for a terminal, one figure a line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<28} {value}");
        };
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.4}{unit}"),
            None => "-".to_string(),
        };
        let pct = |v: Option<f64>| match v {
            Some(v) => format!("{:.2} %", v * 100.0),
            None => "-".to_string(),
        };
        row("nodes", self.nodes.to_string());
        row(
            "lookups",
            format!("{} ({:?})", self.lookups, self.workload).to_lowercase(),
        );
        row("seed", self.seed.to_string());
        row("join", format!("{:?}", self.join).to_lowercase());
        row("loss", format!("{:.2} %", self.loss * 100.0));
        row(
            "churn",
            match &self.churn {
                Some(c) => format!(
                    "mean session {} s, {:?}",
                    c.mean_session.as_secs(),
                    c.distribution
                )
                .to_lowercase(),
                None => "none".into(),
            },
        );
        row(
            "adversaries",
            match self.adversary_kind {
                Some(kind) => {
                    // The command line's name for it (`fake-holder`).
                    let name = clap::ValueEnum::to_possible_value(&kind)
                        .map_or_else(|| format!("{kind:?}"), |v| v.get_name().to_string());
                    format!("{:.1} % {name}", self.adversaries * 100.0)
                }
                None => "none".into(),
            },
        );
        row(
            "engine",
            format!(
                "k = {}, alpha = {}, disjoint paths = {}, timeout floor {} ms",
                self.k, self.alpha, self.disjoint_paths, self.timeout_min_ms
            ),
        );
        if let Some(p) = self.partition_seconds {
            row("partition", format!("{p} s"));
        }
        row("workload length", format!("{} s", self.duration_seconds));
        row("", String::new());
        row("success rate", pct(self.success_rate));
        row("closest recall", pct(self.closest_recall));
        row(
            "hops p50 / p95",
            format!("{} / {}", show(self.hops_p50), show(self.hops_p95)),
        );
        row(
            "latency p50 / p95",
            format!(
                "{} / {}",
                opt(self.latency_ms_p50, " ms"),
                opt(self.latency_ms_p95, " ms")
            ),
        );
        row("median pair rtt", format!("{:.1} ms", self.rtt_ms_p50));
        row(
            "requests per lookup",
            format!(
                "{} ({} failed)",
                opt(self.messages_per_lookup, ""),
                opt(self.failures_per_lookup, "")
            ),
        );
        row(
            "lookups finished",
            format!(
                "{} (timed out {}, abandoned {}, refused {})",
                self.lookups_finished,
                self.lookups_timed_out,
                self.lookups_abandoned,
                self.lookups_refused
            ),
        );
        if let Some(p) = &self.partition {
            row("  before partition", pct(p.before));
            row("  during, same side", pct(p.during_same_side));
            row("  during, across", pct(p.during_cross_side));
            row("  after heal, across", pct(p.after_cross_side));
            row("  after heal, across, late", pct(p.after_cross_side_late));
            row("  after heal, all", pct(p.after));
            let one = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            row(
                "  peers across, per table",
                format!(
                    "{} at the cut, {} at the heal, {:.1} at the end",
                    one(p.routing_across_at_cut),
                    one(p.routing_across_at_heal),
                    p.routing_across_at_end
                ),
            );
        }
        if self.records_published > 0 {
            row(
                "records published",
                format!(
                    "{} (mean replicas {})",
                    self.records_published,
                    opt(self.record_replicas_mean, "")
                ),
            );
        }
        if let (Some(objects), Some(bytes), Some(gets)) =
            (self.objects, self.object_bytes, self.gets)
        {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            row(
                "objects",
                format!(
                    "{objects} of {:.1} MiB ({} chunks and a root manifest each), {:.2} placed copies per chunk, {} moved, {} refused",
                    mib(bytes),
                    self.chunks_per_object.unwrap_or(0),
                    self.replicas_per_chunk_mean.unwrap_or(0.0),
                    self.replicas_moved.unwrap_or(0),
                    self.replicas_refused.unwrap_or(0),
                ),
            );
            row(
                "gets",
                format!(
                    "{gets} (zipf {}, window {}, lookahead {}, lookup alpha {}), {} ended ({} given up), {} refused, {} abandoned",
                    self.zipf.unwrap_or(0.0),
                    self.fetch_window.unwrap_or(0),
                    self.fetch_lookahead.unwrap_or(0),
                    self.fetch_alpha.unwrap_or(0),
                    self.gets_finished.unwrap_or(0),
                    self.gets_failed.unwrap_or(0),
                    self.gets_refused.unwrap_or(0),
                    self.gets_abandoned.unwrap_or(0)
                ),
            );
            row("get success rate", pct(self.get_success_rate));
            if let Some(first) = &self.get_failure_first {
                row(
                    "first give-up",
                    format!(
                        "{first} (mean holders tried {})",
                        opt(self.get_failure_holders_tried_mean, "")
                    ),
                );
            }
            row(
                "first byte p50 / p95",
                format!(
                    "{} / {}",
                    opt(self.get_first_byte_ms_p50, " ms"),
                    opt(self.get_first_byte_ms_p95, " ms")
                ),
            );
            row(
                "first holder / root p50",
                format!(
                    "{} / {}",
                    opt(self.time_to_first_holder_ms_p50, " ms"),
                    opt(self.get_root_ms_p50, " ms")
                ),
            );
            row(
                "get time p50 / p95",
                format!(
                    "{} / {} (downlink alone p50 {})",
                    opt(self.get_seconds_p50, " s"),
                    opt(self.get_seconds_p95, " s"),
                    opt(self.get_downlink_bound_seconds_p50, " s")
                ),
            );
            row(
                "get p50, first / last 10 %",
                format!(
                    "{} / {}",
                    opt(self.get_seconds_p50_first_tenth, " s"),
                    opt(self.get_seconds_p50_last_tenth, " s")
                ),
            );
            row("holders used per get", opt(self.get_holders_used_mean, ""));
            row("bytes served by origin", pct(self.origin_served_fraction));
        }
        if self.workload == Workload::Durability {
            row(
                "chunks retrievable end / min",
                format!(
                    "{} / {} ({} lost, replication {})",
                    pct(self.chunks_retrievable_end),
                    pct(self.chunks_retrievable_min),
                    self.chunks_lost.unwrap_or(0),
                    self.replication.unwrap_or(0)
                ),
            );
            row(
                "records retrievable end / min",
                format!(
                    "{} / {}",
                    pct(self.records_retrievable_end),
                    pct(self.records_retrievable_min)
                ),
            );
            row(
                "repair traffic",
                format!(
                    "{} MiB per node-hour",
                    self.repair_bytes_per_node_hour
                        .map_or("-".into(), |b| format!("{:.2}", b / (1 << 20) as f64))
                ),
            );
        }
        if self.churn.is_some() {
            row(
                "churn events",
                format!(
                    "{} joined, {} left, {} honest online at end",
                    self.joins, self.leaves, self.honest_online_at_end
                ),
            );
        }
        row(
            "requests (all)",
            format!(
                "{} ({} pings, {} of them set off by a ping; {:.0} per node-hour), {} lost",
                self.requests_total,
                self.requests_ping,
                self.requests_ping_after_ping,
                self.requests_per_node_hour,
                self.messages_lost
            ),
        );
        row(
            "simulated",
            format!("{:.1} s, {} events", self.sim_seconds, self.events),
        );
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table())
    }
}

/// The content workload's figures, gathered from its gets.
struct ContentFigures {
    objects: usize,
    chunks_per_object: usize,
    replicas_per_chunk_mean: Option<f64>,
    replicas_refused: u64,
    replicas_moved: u64,
    finished: usize,
    refused: usize,
    abandoned: usize,
    failed: usize,
    failure_holders_tried_mean: Option<f64>,
    failure_first: Option<String>,
    success_rate: Option<f64>,
    /// Sorted, like every list of durations here.
    root: Vec<Duration>,
    first_byte: Vec<Duration>,
    first_holder: Vec<Duration>,
    seconds: Vec<Duration>,
    downlink_bound: Vec<Duration>,
    holders_used_mean: Option<f64>,
    origin_served_fraction: Option<f64>,
    first_tenth: Option<f64>,
    last_tenth: Option<f64>,
}

impl ContentFigures {
    fn new(sim: &Simulator) -> Self {
        let book = &sim.work.content;
        let gets = &book.gets;
        let chunks: usize = book.objects.iter().map(|o| o.chunks.len()).sum();
        let started = |g: &&GetRun| g.getter.is_some() && !g.refused;
        // A get whose getter left before it ended cannot be judged.
        let abandoned = |g: &GetRun| {
            started(&g)
                && g.end.is_none()
                && g.getter.is_some_and(|s| !sim.nodes[s as usize].online)
        };
        let judged: Vec<&GetRun> = gets
            .iter()
            .filter(started)
            .filter(|g| !abandoned(g))
            .collect();
        let since =
            |t: Option<Timestamp>, g: &GetRun| t.map(|t| t.saturating_duration_since(g.start));
        let sorted = |mut v: Vec<Duration>| {
            v.sort_unstable();
            v
        };
        let ok: Vec<&GetRun> = judged.iter().copied().filter(|g| g.success).collect();
        let seconds_of = |g: &GetRun| since(g.end, g).unwrap_or_default();
        let tenth = |part: &[GetRun]| {
            let v = sorted(part.iter().filter(|g| g.success).map(seconds_of).collect());
            percentile(&v, 50.0).map(|d| secs(*d))
        };
        let n = gets.len().div_ceil(10);
        let holders: Vec<f64> = ok.iter().map(|g| g.holders.len() as f64).collect();
        let served = book.bytes_origin + book.bytes_cache;
        let errors: Vec<_> = gets.iter().filter_map(|g| g.error.as_ref()).collect();
        let tried: Vec<f64> = errors.iter().map(|e| e.holders_tried as f64).collect();
        Self {
            objects: book.objects.len(),
            chunks_per_object: book.objects.first().map_or(0, |o| o.data_chunks()),
            replicas_per_chunk_mean: (chunks > 0)
                .then(|| round(book.replicas_stored as f64 / chunks as f64)),
            replicas_refused: book.replicas_refused,
            replicas_moved: book.replicas_moved,
            finished: gets.iter().filter(|g| g.end.is_some()).count(),
            refused: gets
                .iter()
                .filter(|g| g.getter.is_none() || g.refused)
                .count(),
            abandoned: gets.iter().filter(|g| abandoned(g)).count(),
            failed: errors.len(),
            failure_holders_tried_mean: mean(&tried).map(round),
            failure_first: errors.first().map(|e| e.to_string()),
            success_rate: rate(judged.iter().map(|g| g.success)),
            root: sorted(judged.iter().filter_map(|g| since(g.root, g)).collect()),
            first_byte: sorted(
                judged
                    .iter()
                    .filter_map(|g| since(g.first_byte, g))
                    .collect(),
            ),
            first_holder: sorted(
                judged
                    .iter()
                    .filter_map(|g| since(g.first_holder, g))
                    .collect(),
            ),
            seconds: sorted(ok.iter().map(|g| seconds_of(g)).collect()),
            downlink_bound: sorted(judged.iter().map(|g| g.downlink_bound).collect()),
            holders_used_mean: mean(&holders).map(round),
            origin_served_fraction: (served > 0)
                .then(|| round(book.bytes_origin as f64 / served as f64)),
            first_tenth: tenth(&gets[..n.min(gets.len())]),
            last_tenth: tenth(&gets[gets.len().saturating_sub(n)..]),
        }
    }
}

/// The median base round trip over random pairs of live nodes, from an RNG of its own so that
/// measuring it changes nothing else.
fn median_rtt(sim: &Simulator) -> f64 {
    let n = sim.all.len();
    if n < 2 {
        return 0.0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sim.scenario.seed ^ 0x0077_0000);
    let mut rtts: Vec<Duration> = (0..RTT_SAMPLES)
        .map(|_| {
            let a = sim.all.slot_at(rng.random_range(0..n));
            let b = sim.all.slot_at(rng.random_range(0..n));
            let (na, nb) = (&sim.nodes[a as usize], &sim.nodes[b as usize]);
            sim.geo.rtt(a, na.region, b, nb.region)
        })
        .collect();
    rtts.sort_unstable();
    percentile(&rtts, 50.0).map_or(0.0, |d| ms(*d))
}

/// Nearest-rank percentile of sorted values.
fn percentile<T>(sorted: &[T], p: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

fn rate(outcomes: impl Iterator<Item = bool>) -> Option<f64> {
    let (mut n, mut ok) = (0usize, 0usize);
    for o in outcomes {
        n += 1;
        ok += usize::from(o);
    }
    (n > 0).then(|| round(ok as f64 / n as f64))
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn secs(d: Duration) -> f64 {
    round(d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    round(d.as_micros() as f64 / 1000.0)
}

/// Four decimals: enough for any figure here, and short JSON.
fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn show(v: Option<u32>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Serialises a duration as seconds.
pub(crate) fn as_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Serialises an optional duration as seconds.
pub(crate) fn as_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(&50));
        assert_eq!(percentile(&v, 95.0), Some(&95));
        assert_eq!(percentile(&[7u32], 95.0), Some(&7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
