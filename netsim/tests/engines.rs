//! Small networks of real engines through netsim's harness (the one simulator: these were
//! `dht/tests/network.rs`, which had an event loop of its own). 300 nodes that join through
//! the engine's own `bootstrap`, so what is tested is what a real network goes through: joins,
//! lookups, records, and peers that stop answering without telling anyone. The seed is printed
//! on failure and can be changed with `CAIRN_TEST_SEED`.

use std::time::Duration;

use cairn_netsim::{AdversaryKind, JoinMode, Report, Scenario, Workload, run};

fn seed() -> u64 {
    std::env::var("CAIRN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0002)
}

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

fn check(report: &Report, what: &str, ok: bool) {
    assert!(
        ok,
        "seed {}: {what}\n{}\n{}",
        report.seed,
        report.table(),
        serde_json::to_string(report).unwrap_or_default()
    );
}

/// After every node has joined through `bootstrap`, a lookup of any node's id from any other
/// finds it and the whole true k closest.
#[test]
fn after_bootstrap_every_node_is_found_from_other_nodes() {
    let report = run(&joined());
    check(
        &report,
        "all lookups finish",
        report.lookups_finished == 300,
    );
    check(
        &report,
        "every lookup finds its target",
        report.success_rate == Some(1.0),
    );
    check(
        &report,
        "recall of the true 20 closest is 100 %",
        report.closest_recall == Some(1.0),
    );
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
    check(
        &report,
        "all lookups finish",
        report.lookups_finished == 300,
    );
    check(
        &report,
        "every lookup finds its target",
        report.success_rate == Some(1.0),
    );
    check(
        &report,
        "recall of the true 20 closest live peers is 100 %",
        report.closest_recall == Some(1.0),
    );
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
