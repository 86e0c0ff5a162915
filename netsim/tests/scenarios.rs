//! Seeded netsim scenarios at small sizes. Each asserts a threshold measured with the engine at
//! the commit these tests were last updated against (the timeout and retry changes of 218a2d8,
//! and the retry of a lookup's closest candidate after it); the comment on each says what was
//! measured and why the threshold is where it is. The seed is printed on failure and can be
//! changed with
//! `CAIRN_TEST_SEED` to explore (the thresholds hold for the default seed; other seeds are for
//! exploration, not for CI).
//!
//! The simulator and engine are compiled with opt-level 3 in the dev profile (root Cargo.toml),
//! so these run in seconds under `cargo test`.

use std::time::Duration;

use cairn_netsim::{
    AdversaryKind, Churn, JoinMode, Report, Scenario, SessionDistribution, Workload, run,
};

fn seed() -> u64 {
    std::env::var("CAIRN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

fn scenario() -> Scenario {
    Scenario {
        nodes: 1000,
        lookups: 300,
        seed: seed(),
        duration: Duration::from_secs(300),
        ..Scenario::default()
    }
}

fn check(report: &Report, what: &str, ok: bool) {
    assert!(
        ok,
        "seed {}: {what}\n{}\n{}",
        report.seed,
        report.table(),
        serde_json::to_string(report).unwrap_or_default()
    );
}

/// All 300 lookups finish, each finds its target, and each returns the whole true 20 closest
/// (live, honest) peers.
fn every_lookup_finds_the_true_closest(report: &Report) {
    check(report, "all lookups finish", report.lookups_finished == 300);
    check(
        report,
        "every lookup finds its target",
        report.success_rate == Some(1.0),
    );
    check(
        report,
        "recall of the true 20 closest (live, honest) peers is 100 %",
        report.closest_recall == Some(1.0),
    );
}

/// A stable network of 1,000 honest nodes, warm routing tables, no loss: every lookup of a
/// live node's id finds it, and the whole true k closest, with the engine's default 250 ms
/// timeout floor.
///
/// Measured (seed 7): 300 of 300 lookups find their target, recall 100 %, hops p95 3; the same
/// on seeds 1–11. The floor no longer matters here: a peer never measured gets twice the
/// network-wide timeout estimate, which covers the far peers (250–300 ms) that timed out at the
/// floor before, when 2 of 300 lookups missed (a 500 ms floor changes no figure now). No ping
/// sets off another ping: an inbound ping no longer makes its receiver probe its own bucket (the
/// cascade was 97 % of all traffic at 10,000 nodes).
#[test]
fn stable_network_every_lookup_finds_its_target() {
    let report = run(&scenario());
    every_lookup_finds_the_true_closest(&report);
    check(
        &report,
        "at most 4 hops at the 95th percentile (log2(1000/20) ≈ 6 is the classic bound)",
        report.hops_p95.is_some_and(|h| h <= 4),
    );
    check(
        &report,
        "no ping sets off a ping (no probe cascade)",
        report.requests_ping_after_ping == 0,
    );
}

/// 1 % of messages (requests and responses, independently) lost: the netsim issue asks for at
/// least 99 % success.
///
/// Measured (seed 7): 100 % of lookups find their target (also 100 % on seeds 1–3), recall
/// 98.05 %. What decides a lookup is the exchange with the target, which the origin has almost
/// never heard from; the engine asks a timed-out peer once more if it answered before or is the
/// lookup's closest candidate, so one lost message no longer drops the target (before that rule:
/// 96.33 %). Recall stays below 100 % because farther peers that were never heard from get no
/// second chance (that keeps made-up ids from misrouting peers cheap). Asserted at 99 % success,
/// the figure, and 97 % recall.
#[test]
fn one_percent_loss() {
    let report = run(&Scenario {
        loss: 0.01,
        ..scenario()
    });
    check(
        &report,
        "≥ 99 % success with 1 % loss",
        report.success_rate.is_some_and(|s| s >= 0.99),
    );
    check(
        &report,
        "recall ≥ 97 % with 1 % loss",
        report.closest_recall.is_some_and(|r| r >= 0.97),
    );
    check(&report, "messages were lost", report.messages_lost > 0);
}

/// The Americas are cut off from the rest for ten minutes, a quarter into a 20-minute workload,
/// then the cut heals.
///
/// Measured (seed 7, 1,000 nodes): every lookup before the cut and every one on one side during
/// it succeeds; lookups across it fail (the target is unreachable, by construction); after the
/// heal all 37 lookups across the old cut succeed (100 % on seeds 1–3 too). While cut, each
/// side dropped the other side's peers from its routing tables; the engine pings dropped peers
/// again with backoff, the first that answers sets off a retry of all the others, and a peer
/// that is back takes its slot from a younger entry (`RoutingTable::reinstate`): a node's table
/// held 61.2 peers from the other side at the cut, 10.8 at the heal and 59.7 five minutes
/// later (97.5 %; before the comeback retry and reinstatement, 11.8). With proximity neighbour
/// selection (`RoutingTable::prefer_closer`) the far buckets hold nearer peers, so fewer from
/// the other side of a geographic cut: 49.7 at the cut, 6.7 at the heal and 37.8 at the end
/// (76 %), as a peer that is back can lose its slot again to a newcomer twice as close; every
/// lookup across still succeeds. Thresholds sit a lookup or more below the measurement.
#[test]
fn partition_and_heal() {
    let base = Scenario {
        lookups: 400,
        partition: Some(Duration::from_secs(600)),
        ..scenario()
    };
    let report = run(&base);
    let Some(p) = report.partition.clone() else {
        panic!("seed {}: no partition figures", report.seed);
    };
    check(
        &report,
        "before: ≥ 99 % succeed",
        p.before.is_some_and(|s| s >= 0.99),
    );
    check(
        &report,
        "during, same side: all succeed",
        p.during_same_side == Some(1.0),
    );
    check(
        &report,
        "during, across: (almost) none succeed",
        p.during_cross_side.is_some_and(|s| s <= 0.05),
    );
    check(
        &report,
        "after healing, across: ≥ 97 % succeed",
        p.after_cross_side.is_some_and(|s| s >= 0.97),
    );
    check(
        &report,
        "the routing tables get back ≥ 70 % of their entries across the old cut",
        p.routing_across_at_cut
            .is_some_and(|cut| p.routing_across_at_end >= 0.7 * cut),
    );
}

/// A record published again (a higher sequence, a new value) on one side of the cut while it
/// lasts is read as the new version from both sides after the heal: the new closest peers from
/// the other side get it pushed when they are back in the holders' tables, a read that meets
/// both versions runs to the end of its lookup and sends the new one to the peers that answered
/// with the old one (read repair).
///
/// Measured (seeds 7 and 1–3, 1,000 nodes, 40 records): reads from the other side in the five
/// minutes after the heal return the new version 91–100 % of the time (the misses are in the
/// first minutes, before the tables healed), and 100 % in the last two and a half.
#[test]
fn a_record_published_again_during_a_cut_reads_new_on_both_sides_after_the_heal() {
    let report = run(&Scenario {
        lookups: 400,
        workload: Some(Workload::Record),
        partition: Some(Duration::from_secs(600)),
        ..scenario()
    });
    let p = report.partition.clone().expect("partition figures");
    check(
        &report,
        "after the heal, reads from the other side: ≥ 85 % new",
        p.after_cross_side.is_some_and(|s| s >= 0.85),
    );
    check(
        &report,
        "from half way to the end after the heal: all new",
        p.after_cross_side_late == Some(1.0),
    );
}

/// 20 % (and 50 %) of the nodes misroute: they answer lookups only with each other and with
/// made-up ids next to the target. The table of plain and 4-disjoint-path lookups.
///
/// Measured (seed 7, 1,000 nodes, 300 lookups; "cut" = lookups ended by the engine's 60 s
/// `query_timeout`):
///
/// | misrouters | paths | success | recall | latency p50 | requests/lookup | cut |
/// |---|---|---|---|---|---|---|
/// | 20 % | 1 | 99.33 % | 0.802 | 20.0 s | 97.1 | – |
/// | 20 % | 4 | 100 % | 0.808 | 53.5 s | 532.6 | – |
/// | 50 % | 1 | 87.00 % | 0.436 | 58.8 s | 207.5 | – |
/// | 50 % | 4 | 100 % | 0.508 | 60.0 s | 810.0 | – |
///
/// (The "cut" counts are from before the closest-candidate retry; the retry adds a timeout for a
/// made-up id that is the closest candidate, which raised the 4-path latency from 43.7 s.)
///
/// Recall is bounded by the misrouters themselves: they answer, so the engine counts those
/// closest to the target among the k it returns, leaving room for about (1 − fraction) × k
/// honest ones; every row sits at that bound. Disjoint paths buy success (finding the target),
/// 13 points at 50 %, at 3–5 × the requests. Made-up ids cost each lookup a timeout per
/// round, and since 218a2d8 twice as long a one: a made-up id is never measured, so it gets
/// twice the network-wide timeout, and the failures raise the FindNode count towards 2k, which
/// this adversary fills half with made-up ids. The median doubled (about 10 s before at 20 %),
/// and at 50 % half the lookups now run until the query timeout cuts them off.
#[test]
fn misrouting_adversaries_with_and_without_disjoint_paths() {
    let mut rows = Vec::new();
    for fraction in [0.2, 0.5] {
        for paths in [1, 4] {
            let report = run(&Scenario {
                adversaries: fraction,
                adversary_kind: AdversaryKind::Misroute,
                disjoint_paths: paths,
                ..scenario()
            });
            eprintln!(
                "misroute {:>3.0} % paths {paths}: success {:?} recall {:?} latency p50 {:?} ms requests/lookup {:?}",
                fraction * 100.0,
                report.success_rate,
                report.closest_recall,
                report.latency_ms_p50,
                report.messages_per_lookup
            );
            rows.push((fraction, paths, report));
        }
    }
    let get = |f: f64, p: usize| {
        &rows
            .iter()
            .find(|(rf, rp, _)| *rf == f && *rp == p)
            .expect("row")
            .2
    };
    let success = |r: &Report| r.success_rate.unwrap_or(0.0);
    let recall = |r: &Report| r.closest_recall.unwrap_or(0.0);
    for (fraction, _, report) in &rows {
        check(
            report,
            "recall within 0.1 of the honest share (1 - fraction)",
            recall(report) >= 1.0 - fraction - 0.1,
        );
        check(report, "every lookup ends", report.lookups_finished == 300);
    }
    check(
        get(0.2, 1),
        "20 %, plain: ≥ 98 % success",
        success(get(0.2, 1)) >= 0.98,
    );
    check(
        get(0.2, 1),
        "20 %, plain: at most 5 % of lookups cut by the query timeout",
        get(0.2, 1).lookups_timed_out <= 15,
    );
    check(
        get(0.2, 4),
        "20 %, 4 paths: ≥ 99 % success",
        success(get(0.2, 4)) >= 0.99,
    );
    check(
        get(0.5, 4),
        "50 %, 4 paths: ≥ 98 % success",
        success(get(0.5, 4)) >= 0.98,
    );
    check(
        get(0.5, 4),
        "50 %: disjoint paths do not lower success",
        success(get(0.5, 4)) >= success(get(0.5, 1)),
    );
    check(
        get(0.2, 4),
        "disjoint paths cost ≥ 3× the requests",
        get(0.2, 4).messages_per_lookup.unwrap_or(0.0)
            >= 3.0 * get(0.2, 1).messages_per_lookup.unwrap_or(f64::MAX),
    );
}

/// 20 % of the nodes return forged records (higher sequence, other value, genuine signature):
/// every read still returns the genuine record, because the engine verifies signatures.
///
/// Measured (seed 7): 100 %.
#[test]
fn forged_records_are_never_returned() {
    let report = run(&Scenario {
        adversaries: 0.2,
        adversary_kind: AdversaryKind::Forge,
        ..scenario()
    });
    check(
        &report,
        "all reads return the genuine record",
        report.success_rate == Some(1.0),
    );
}

/// Nodes leave and join with exponential sessions of 30 minutes on average (166 of the 1,000
/// left and 162 joined over the 5-minute workload).
///
/// Measured (seed 7): 100 % success, recall 99.87 % (the same success and 99.78–99.93 % recall
/// on seeds 1–6 and 8–11). A lookup would miss by asking a peer that just left (its timeout
/// drops it) or by looking for a just-joined target nobody knows yet.
#[test]
fn churn_keeps_lookups_working() {
    let report = run(&Scenario {
        churn: Some(Churn {
            mean_session: Duration::from_secs(1800),
            distribution: SessionDistribution::Exponential,
        }),
        ..scenario()
    });
    check(
        &report,
        "nodes joined and left",
        report.joins > 0 && report.leaves > 0,
    );
    check(
        &report,
        "≥ 99 % success under churn",
        report.success_rate.is_some_and(|s| s >= 0.99),
    );
    check(
        &report,
        "recall ≥ 99 % under churn",
        report.closest_recall.is_some_and(|r| r >= 0.99),
    );
}

/// Same scenario, same seed: the same report, byte for byte; another seed: another report.
#[test]
fn the_same_seed_gives_the_same_report() {
    let s = Scenario {
        nodes: 300,
        lookups: 100,
        loss: 0.01,
        churn: Some(Churn {
            mean_session: Duration::from_secs(600),
            distribution: SessionDistribution::Weibull { shape: 0.5 },
        }),
        ..scenario()
    };
    let a = serde_json::to_string(&run(&s)).expect("json");
    let b = serde_json::to_string(&run(&s)).expect("json");
    assert_eq!(a, b, "seed {}: two runs differ", s.seed);
    let c = serde_json::to_string(&run(&Scenario {
        seed: s.seed ^ 1,
        ..s.clone()
    }))
    .expect("json");
    assert_ne!(a, c, "seed {}: the seed changes nothing", s.seed);
}

// ---- content ----------------------------------------------------------------------------------

/// The content workload at a test's size: 300 nodes, 10 objects of 2 MiB (8 chunks of 256
/// KiB each, the engine's fetch window), 50 gets over two minutes.
fn content() -> Scenario {
    Scenario {
        nodes: 300,
        workload: Some(Workload::Content),
        objects: 10,
        object_bytes: 2 << 20,
        gets: 50,
        duration: Duration::from_secs(120),
        ..scenario()
    }
}

/// A stable network: every chunk is placed on `replication` (5) peers, and every get receives
/// every chunk through the engine's fetch state machine.
///
/// Measured (seed 7): 4.97 placed copies per chunk (the publisher is sometimes one of the
/// five), 50 of 50 gets, first byte p50 289 ms (about 2 median round trips: a holder lookup,
/// then the request), get p50 0.67 s against 0.07 s for the getter's downlink alone (the
/// holders' 10–50 Mbit/s home uplinks and one round trip per chunk request bound it, not the
/// getter), 7.7 distinct holders per get.
#[test]
fn stable_network_every_get_succeeds() {
    let report = run(&content());
    check(
        &report,
        "placement puts about `replication` copies of each chunk",
        report.replicas_per_chunk_mean.is_some_and(|r| r >= 4.5),
    );
    check(&report, "every get ends", report.gets_finished == Some(50));
    check(
        &report,
        "every get succeeds",
        report.get_success_rate == Some(1.0),
    );
    check(
        &report,
        "a get is never faster than the getter's downlink",
        report.get_seconds_p50 >= report.get_downlink_bound_seconds_p50,
    );
    check(
        &report,
        "gets spread over several holders",
        report.get_holders_used_mean.is_some_and(|h| h >= 2.0),
    );
}

/// 20 % of the nodes claim to hold every chunk, then refuse it or send garbage.
///
/// Measured (seed 7): 100 % of gets succeed (11.4 distinct holders asked per get, against 7.7
/// without them: the claims cost a request each before the engine moves on).
#[test]
fn fake_holders_do_not_stop_gets() {
    let report = run(&Scenario {
        adversaries: 0.2,
        adversary_kind: AdversaryKind::FakeHolder,
        ..content()
    });
    check(
        &report,
        "≥ 99 % of gets succeed with 20 % fake holders",
        report.get_success_rate.is_some_and(|s| s >= 0.99),
    );
}

/// Objects larger than the fetch window. When the window counted chunks received and not yet
/// released, a caller releasing in order deadlocked it once `window` chunks past a slow first
/// one had come (seed 7, 4 MiB objects: 11 of 50 gets ended); the window now slides from the
/// first unreleased chunk.
#[test]
fn gets_of_objects_larger_than_the_window_succeed() {
    let report = run(&Scenario {
        object_bytes: 4 << 20,
        ..content()
    });
    check(
        &report,
        "every get succeeds",
        report.get_success_rate == Some(1.0),
    );
}

/// Same content scenario, same seed: the same report; Zipf popularity changes it.
#[test]
fn the_same_seed_gives_the_same_content_report() {
    let s = Scenario {
        adversaries: 0.1,
        adversary_kind: AdversaryKind::FakeHolder,
        zipf: 1.0,
        ..content()
    };
    let a = serde_json::to_string(&run(&s)).expect("json");
    let b = serde_json::to_string(&run(&s)).expect("json");
    assert_eq!(a, b, "seed {}: two runs differ", s.seed);
    let c = serde_json::to_string(&run(&Scenario {
        zipf: 0.0,
        ..s.clone()
    }))
    .expect("json");
    assert_ne!(a, c, "seed {}: popularity changes nothing", s.seed);
}

/// Objects and records kept alive through churn by the engines alone: 300 nodes with a
/// 30-minute mean session (about 590 leave and 585 join over the hour), nobody reading.
///
/// Measured (seed 7, and seeds 1–3): no chunk and no record lost at any check. Before a chunk's
/// closest peer that failed the repair job's question was pinged at once, seed 7 lost 1 of its
/// 200 chunks (the second failure that drops a peer came only at the next audit).
#[test]
fn churn_loses_no_chunk_and_no_record_while_the_engines_repair() {
    let report = run(&Scenario {
        nodes: 300,
        workload: Some(Workload::Durability),
        objects: 40,
        object_bytes: 4 * 256 * 1024,
        churn: Some(Churn {
            mean_session: Duration::from_secs(1800),
            distribution: SessionDistribution::Exponential,
        }),
        duration: Duration::from_secs(3600),
        ..scenario()
    });
    check(&report, "nodes came and went", report.leaves > 100);
    check(
        &report,
        "every chunk had a live copy at every check",
        report.chunks_retrievable_min == Some(1.0) && report.chunks_lost == Some(0),
    );
    check(
        &report,
        "every record had a live holder at every check",
        report.records_retrievable_min == Some(1.0),
    );
    check(
        &report,
        "the copies were the engines' doing (repair traffic)",
        report.repair_bytes_per_node_hour.is_some_and(|b| b > 0.0),
    );
}

// ---- Small networks of real engines (these were `dht/tests/network.rs`, which had an event
// loop of its own): 300 nodes that join through the engine's own `bootstrap`, so what is tested
// is what a real network goes through: joins, lookups, records, and peers that stop answering
// without telling anyone.

/// 300 nodes, each joining through `bootstrap` from one already in, then 300 lookups.
fn joined() -> Scenario {
    Scenario {
        nodes: 300,
        lookups: 300,
        seed: seed(),
        join: JoinMode::Bootstrap,
        duration: Duration::from_secs(120),
        ..Scenario::default()
    }
}

/// After every node has joined through `bootstrap`, a lookup of any node's id from any other
/// finds it and the whole true k closest.
#[test]
fn after_bootstrap_every_node_is_found_from_other_nodes() {
    let report = run(&joined());
    every_lookup_finds_the_true_closest(&report);
}

/// Records published from random nodes are read back, genuine, from random other nodes.
#[test]
fn a_record_put_from_one_node_is_read_from_the_others() {
    let report = run(&Scenario {
        workload: Some(Workload::Record),
        ..joined()
    });
    check(&report, "all reads finish", report.lookups_finished == 300);
    check(
        &report,
        "every read returns the genuine record",
        report.success_rate == Some(1.0),
    );
    check(
        &report,
        "records reached their closest peers",
        report.record_replicas_mean.is_some_and(|r| r >= 15.0),
    );
}

/// A third of the peers join and then never answer anything (no goodbye, nobody told): a
/// lookup still ends with the true closest live peers, within its timeouts.
#[test]
fn lookups_with_a_third_of_peers_dead_end_with_the_true_closest_live_peers() {
    let report = run(&Scenario {
        adversaries: 0.33,
        adversary_kind: AdversaryKind::Drop,
        ..joined()
    });
    every_lookup_finds_the_true_closest(&report);
    check(
        &report,
        "no lookup ran into the query timeout",
        report.lookups_timed_out == 0,
    );
    check(
        &report,
        "lookups met dead peers (else this tests nothing)",
        report.failures_per_lookup.is_some_and(|f| f >= 1.0),
    );
}
