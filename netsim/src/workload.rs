//! The workload and how it is judged: records published before the measurement, lookups spread
//! evenly over it, and each lookup's outcome compared with the simulator's ground truth taken
//! when it started (the k closest live honest nodes the origin can reach).

use std::time::Duration;

use cairn_dht::{Key, QueryResult, QueryStats, SignedRecord, Timestamp};
use rand::RngExt;

use crate::objects::{ContentBook, GetRun, PUBLISH_SPACING as OBJECT_SPACING};
use crate::sim::{Action, Simulator, Tracked};
use crate::{AdversaryKind, JoinMode, Report, Scenario, Workload};

/// Records live this long: longer than any run, inside the engine's 7-day limit.
const RECORD_TTL: Duration = Duration::from_secs(3 * 24 * 3600);

/// Records the durability workload publishes (besides its objects).
const DURABILITY_RECORDS: usize = 100;

/// Records are published this far apart before the measurement starts.
const PUBLISH_SPACING: Duration = Duration::from_millis(100);

/// After the workload's last lookup starts, wait this long for stragglers: the engine's
/// `query_timeout` (60 s) and a margin.
const DRAIN: Duration = Duration::from_secs(70);

/// The content workload waits at most this long after the last object is published for its
/// placements and copies to finish.
const PUBLISH_WAIT: Duration = Duration::from_secs(600);

/// After the last get starts, wait this long for stragglers: a get that keeps failing over
/// takes a few of the engine's 10 s chunk timeouts per chunk.
const GET_DRAIN: Duration = Duration::from_secs(300);

/// The signing key of workload record `i`.
fn record_secret(seed: u64, i: u64) -> [u8; 32] {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&i.to_be_bytes());
    *Key::hash(&material).as_bytes()
}

/// Runs `scenario` to the end and reports its figures.
pub fn run(scenario: &Scenario) -> Report {
    let mut sim = Simulator::new(scenario.clone());
    if scenario.join == JoinMode::Bootstrap {
        // Joins are 20 ms apart; each takes a few seconds. Ten minutes of margin.
        let limit =
            sim.now + Duration::from_millis(20) * scenario.nodes as u32 + Duration::from_secs(600);
        sim.run_until(limit, |s| s.joined());
    }
    // Let the joins' and warm start's first exchanges settle.
    let settle = sim.now + Duration::from_secs(10);
    sim.run_until(settle, |_| false);

    let records = sim.work.records.len();
    let start = sim.now;
    for i in 0..records {
        sim.schedule_publish(start + PUBLISH_SPACING * i as u32, i);
    }
    if records > 0 {
        let limit = start + PUBLISH_SPACING * records as u32 + Duration::from_secs(120);
        sim.run_until(limit, |s| s.work.puts.iter().all(Option::is_some));
    }

    let durability = scenario.workload() == Workload::Durability;
    let content = scenario.workload() == Workload::Content;
    if content || durability {
        let objects = sim.work.content.objects.len();
        let start = sim.now;
        for i in 0..objects {
            sim.push(
                start + OBJECT_SPACING * i as u32,
                Action::PublishObject { index: i },
            );
        }
        let limit = start + OBJECT_SPACING * objects as u32 + PUBLISH_WAIT;
        sim.run_until(limit, |s| s.work.content.published());
    }

    let t0 = sim.now;
    let length = scenario.workload_duration();
    sim.work.start = t0;
    let (lookups, gets) = match (content, durability) {
        (true, _) => (0, scenario.gets),
        (_, true) => (0, 0),
        _ => (scenario.lookups, 0),
    };
    if durability {
        // A count at the start, every hour, and at the end.
        let hours = length.as_secs() / 3600;
        for h in 0..=hours {
            sim.push(t0 + Duration::from_secs(h * 3600), Action::Check);
        }
        if !length.as_secs().is_multiple_of(3600) {
            sim.push(t0 + length, Action::Check);
        }
    }
    for i in 0..gets {
        // Evenly spaced like the lookups.
        let offset = length.mul_f64((2 * i + 1) as f64 / (2 * gets) as f64);
        sim.work.content.gets.push(GetRun::default());
        sim.push(t0 + offset, Action::Get { index: i });
    }
    for i in 0..lookups {
        // Evenly spaced, each in the middle of its share of the workload.
        let offset = length.mul_f64((2 * i + 1) as f64 / (2 * lookups) as f64);
        sim.work.lookups.push(LookupRun::default());
        sim.schedule_lookup(t0 + offset, i);
    }
    if let Some(p) = scenario.partition {
        let cut = t0 + length / 4;
        sim.work.partition = Some((cut, cut + p));
        sim.schedule_partition(cut, p);
        // Records are published again half way through the cut, each on one side.
        for i in 0..sim.work.records.len() {
            let at = cut + p / 2 + PUBLISH_SPACING * i as u32;
            sim.push(at, Action::Republish { index: i });
        }
    }
    sim.start_churn();
    sim.run_until(t0 + length, |_| false);
    let drain = if content { GET_DRAIN } else { DRAIN };
    sim.run_until(t0 + length + drain, |s| {
        s.work.unfinished() == 0 && s.work.content.unfinished() == 0
    });
    Report::new(&sim)
}

/// Where a lookup started relative to the partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the partition, or in a run without one.
    #[default]
    Before,
    /// While the network was split.
    During,
    /// After it healed.
    After,
}

/// One workload lookup.
#[derive(Clone, Debug, Default)]
pub(crate) struct LookupRun {
    /// The origin, once started (`None`: never started, no ready node was online).
    pub(crate) origin: Option<u32>,
    pub(crate) target: Option<Key>,
    /// The record read, for a record lookup.
    pub(crate) record: Option<usize>,
    /// The k closest live honest nodes the origin could reach at the start, for a node lookup.
    pub(crate) truth: Vec<Key>,
    pub(crate) phase: Phase,
    /// When it started.
    pub(crate) started: Timestamp,
    /// Origin and target are on opposite sides of the partition line (whether or not it is cut).
    pub(crate) opposite_sides: bool,
    /// Origin and target were on opposite sides of the partition while it lasted.
    pub(crate) cross: bool,
    /// The engine refused to start it (too many queries).
    pub(crate) refused: bool,
    pub(crate) outcome: Option<Outcome>,
}

/// How a lookup ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) success: bool,
    /// Share of the truth returned (node lookups only).
    pub(crate) recall: Option<f64>,
    pub(crate) stats: QueryStats,
}

/// The workload's state.
#[derive(Debug, Default)]
pub(crate) struct Workbook {
    pub(crate) records: Vec<SignedRecord>,
    /// Per record, how many peers stored it once its publication finished.
    pub(crate) puts: Vec<Option<usize>>,
    pub(crate) lookups: Vec<LookupRun>,
    pub(crate) start: Timestamp,
    pub(crate) partition: Option<(Timestamp, Timestamp)>,
    /// Mean routing-table entries across the partition line per live honest node, when the cut
    /// started and when it healed.
    pub(crate) across_at_cut: Option<f64>,
    pub(crate) across_at_heal: Option<f64>,
    /// Per record, the side of the node that published it again during the cut (record
    /// workload with a partition).
    pub(crate) republished_on: Vec<Option<u8>>,
    /// The content workload's objects and gets.
    pub(crate) content: ContentBook,
    /// The durability workload's hourly counts, and the online population at each.
    pub(crate) checks: Vec<crate::durability::Check>,
    pub(crate) online_samples: Vec<usize>,
    finished: usize,
    started: usize,
}

impl Workbook {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let count = match scenario.workload() {
            Workload::Node | Workload::Content => 0,
            Workload::Durability => DURABILITY_RECORDS,
            Workload::Record if scenario.adversary_kind == AdversaryKind::Sybil => 1,
            Workload::Record => (scenario.lookups / 10).clamp(1, 100),
        };
        let records = (0..count as u64)
            .map(|i| {
                let value = format!("cairn-netsim record {i}").into_bytes();
                SignedRecord::sign(
                    &record_secret(scenario.seed, i),
                    value,
                    1,
                    Timestamp::EPOCH + RECORD_TTL,
                )
            })
            .collect();
        let content = match scenario.workload() {
            Workload::Content | Workload::Durability => ContentBook::new(scenario),
            _ => ContentBook::default(),
        };
        Self {
            records,
            puts: vec![None; count],
            republished_on: vec![None; count],
            content,
            ..Self::default()
        }
    }

    /// Lookups started and not yet finished (abandoned ones included).
    pub(crate) fn unfinished(&self) -> usize {
        self.started - self.finished
    }
}

impl Simulator {
    /// Publishes record `index` from a random ready honest node.
    pub(crate) fn publish(&mut self, index: usize) {
        let Some(origin) = self.random_origin() else {
            self.work.puts[index] = Some(0);
            return;
        };
        let record = self.work.records[index].clone();
        let now = self.now;
        let Some(engine) = self.nodes[origin as usize].engine.as_mut() else {
            return;
        };
        match engine.put_record(now, record) {
            Ok(q) => {
                self.tracked.insert((origin, q), Tracked::Publish(index));
            }
            Err(_) => self.work.puts[index] = Some(0),
        }
        self.flush(origin);
    }

    /// Publishes record `index` again (sequence 2, a new value) from a random ready honest
    /// node, while the network is cut: only its side hears of it until the heal. From then on
    /// the new value is the truth a read must return.
    pub(crate) fn republish(&mut self, index: usize) {
        let Some(origin) = self.random_origin() else {
            return;
        };
        let old = &self.work.records[index];
        let value = format!("cairn-netsim record {index}, republished during the cut").into_bytes();
        let record = SignedRecord::sign(
            &record_secret(self.scenario.seed, index as u64),
            value,
            old.sequence + 1,
            old.expires,
        );
        self.work.records[index] = record.clone();
        self.work.republished_on[index] = Some(self.side(origin));
        let now = self.now;
        if let Some(engine) = self.nodes[origin as usize].engine.as_mut() {
            // Its outcome is not tracked: the reads after the heal are the measure.
            let _ = engine.put_record(now, record);
        }
        self.flush(origin);
    }

    /// Starts workload lookup `index`.
    pub(crate) fn start_lookup(&mut self, index: usize) {
        let Some(origin) = self.random_origin() else {
            return;
        };
        let k = self.scenario.k;
        let now = self.now;
        let phase = match self.work.partition {
            Some((_, heal)) if now >= heal => Phase::After,
            Some((cut, _)) if now >= cut => Phase::During,
            _ => Phase::Before,
        };
        let mut run = LookupRun {
            origin: Some(origin),
            phase,
            started: now,
            ..LookupRun::default()
        };
        match self.scenario.workload() {
            Workload::Node => {
                let Some(target) = self.random_target(origin) else {
                    return;
                };
                let target_id = self.nodes[target as usize].id;
                run.target = Some(target_id);
                run.opposite_sides = self.side(origin) != self.side(target);
                run.cross = phase == Phase::During && run.opposite_sides;
                run.truth = self
                    .honest
                    .closest(&target_id, k, |s| s != origin && !self.cut(origin, s))
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
            }
            Workload::Content | Workload::Durability => return,
            Workload::Record => {
                let record = if self.scenario.adversary_kind == AdversaryKind::Sybil {
                    0
                } else {
                    self.work_rng.random_range(0..self.work.records.len())
                };
                run.record = Some(record);
                run.target = Some(self.work.records[record].key());
                // Published again during the cut: a read from the other side cannot see the
                // new value until the heal (it is left out, like a node lookup across the cut),
                // and one after the heal from there is "across".
                if let Some(side) = self.work.republished_on[record] {
                    run.opposite_sides = side != self.side(origin);
                    run.cross = phase == Phase::During && run.opposite_sides;
                }
            }
        }
        let Some(target) = run.target else { return };
        let Some(engine) = self.nodes[origin as usize].engine.as_mut() else {
            return;
        };
        let started = match run.record {
            Some(_) => engine.get_record(now, target),
            None => engine.find_node(now, target),
        };
        match started {
            Ok(q) => {
                self.tracked.insert((origin, q), Tracked::Lookup(index));
                self.work.started += 1;
            }
            Err(_) => run.refused = true,
        }
        self.work.lookups[index] = run;
        self.flush(origin);
    }

    /// An engine query the simulator tracks has finished.
    pub(crate) fn on_finished(
        &mut self,
        slot: u32,
        what: Tracked,
        result: QueryResult<u32>,
        stats: QueryStats,
    ) {
        match what {
            Tracked::Join => self.on_joined(slot),
            Tracked::Place { object, chunk } => self.on_placed(slot, object, chunk, result),
            Tracked::Publish(index) => {
                let stored = match result {
                    QueryResult::PutRecord { stored, .. } => stored,
                    _ => 0,
                };
                self.work.puts[index] = Some(stored);
            }
            Tracked::Lookup(index) => {
                let run = &self.work.lookups[index];
                let (success, recall) = match result {
                    QueryResult::FindNode { closest, .. } => {
                        let success = closest.first().map(|c| c.id) == run.target;
                        let found = run
                            .truth
                            .iter()
                            .filter(|t| closest.iter().any(|c| c.id == **t))
                            .count();
                        let recall =
                            (!run.truth.is_empty()).then(|| found as f64 / run.truth.len() as f64);
                        (success, recall)
                    }
                    QueryResult::GetRecord { record, .. } => {
                        let want = run.record.map(|r| &self.work.records[r].value);
                        (record.map(|r| r.value).as_ref() == want, None)
                    }
                    _ => (false, None),
                };
                self.work.lookups[index].outcome = Some(Outcome {
                    success,
                    recall,
                    stats,
                });
                self.work.finished += 1;
            }
        }
    }

    /// A random ready, online honest node, from the workload's RNG.
    fn random_origin(&mut self) -> Option<u32> {
        self.random_honest(|n| n.ready, None)
    }

    /// A random online honest node other than `origin`.
    fn random_target(&mut self, origin: u32) -> Option<u32> {
        self.random_honest(|_| true, Some(origin))
    }

    pub(crate) fn random_honest(
        &mut self,
        keep: impl Fn(&crate::sim::Node) -> bool,
        except: Option<u32>,
    ) -> Option<u32> {
        let n = self.honest.len();
        if n == 0 {
            return None;
        }
        // Bounded tries, then a scan from a random point.
        for _ in 0..64 {
            let s = self.honest.slot_at(self.work_rng.random_range(0..n));
            if keep(&self.nodes[s as usize]) && Some(s) != except {
                return Some(s);
            }
        }
        let from = self.work_rng.random_range(0..n);
        (0..n)
            .map(|i| self.honest.slot_at((from + i) % n))
            .find(|&s| keep(&self.nodes[s as usize]) && Some(s) != except)
    }
}
