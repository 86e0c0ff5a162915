//! Prometheus metrics, served as text at the API's `/metrics` (see [`crate::http`]).
//!
//! Counters that events drive (lookups, their latency, chunk bytes) are updated by the driver
//! as they happen; gauges of state (peers, routing table, stored chunks by reason, repair,
//! bans, reachability) are read from the node when the page is asked for. Transport bytes in and
//! out per protocol stack come from libp2p's own bandwidth metrics (`libp2p_bandwidth_bytes`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label with one value, such as `kind="find_node"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub(crate) kind: String,
}

/// Counters the driver updates.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) lookups: Family<Kind, Counter>,
    pub(crate) lookup_seconds: Family<Kind, Histogram, fn() -> Histogram>,
    pub(crate) chunk_bytes_in: Counter,
    pub(crate) chunk_bytes_out: Counter,
}

fn lookup_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Live {
    fn new() -> Self {
        Self {
            lookups: Family::default(),
            lookup_seconds: Family::new_with_constructor(lookup_histogram),
            chunk_bytes_in: Counter::default(),
            chunk_bytes_out: Counter::default(),
        }
    }
}

/// Gauges set from the node's state when the page is read.
#[derive(Clone, Default)]
struct State {
    peers_connected: Gauge,
    routing_table: Gauge,
    chunks: Family<Kind, Gauge>,
    stored_bytes: Gauge,
    repair_copies: Gauge,
    repair_bytes: Gauge,
    below_target: Gauge,
    banned: Gauge,
    penalised: Gauge,
    rate_limited: Gauge,
    public: Gauge,
    relayed_addrs: Gauge,
    hole_punches: Gauge,
}

/// The node's metrics registry.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) live: Live,
    state: State,
}

impl Metrics {
    /// Registers cairn's metrics in `registry`, which libp2p's bandwidth metrics are already in.
    pub(crate) fn new(mut registry: Registry) -> Arc<Self> {
        let live = Live::new();
        let state = State::default();
        let r = registry.sub_registry_with_prefix("cairn");
        r.register(
            "lookups",
            "DHT lookups finished, by kind",
            live.lookups.clone(),
        );
        r.register(
            "lookup_duration_seconds",
            "How long DHT lookups took, by kind",
            live.lookup_seconds.clone(),
        );
        r.register(
            "chunk_received_bytes",
            "Chunk bytes received from peers (fetches and replica copies)",
            live.chunk_bytes_in.clone(),
        );
        r.register(
            "chunk_sent_bytes",
            "Chunk bytes sent to peers (served and replica copies)",
            live.chunk_bytes_out.clone(),
        );
        let gauges: [(&str, &str, &Gauge); 12] = [
            (
                "peers_connected",
                "Peers with an open connection",
                &state.peers_connected,
            ),
            (
                "routing_table_peers",
                "Peers in the DHT routing table",
                &state.routing_table,
            ),
            (
                "stored_bytes",
                "Bytes of chunks stored",
                &state.stored_bytes,
            ),
            (
                "repair_copies_sent",
                "Replica copies sent to peers that lacked them, since start",
                &state.repair_copies,
            ),
            (
                "repair_sent_bytes",
                "Bytes of replica copies sent (repair traffic), since start",
                &state.repair_bytes,
            ),
            (
                "repair_below_target_chunks",
                "Chunks this node is responsible for with fewer proven copies than the target at their last audit",
                &state.below_target,
            ),
            (
                "banned_peers",
                "Peers banned now for misbehaviour",
                &state.banned,
            ),
            (
                "penalised",
                "Times a peer was penalised for bad chunk bytes or a wrong proof, since start",
                &state.penalised,
            ),
            (
                "rate_limited_requests",
                "Requests from peers refused by a rate limit, since start",
                &state.rate_limited,
            ),
            (
                "publicly_reachable",
                "1 if AutoNAT found this node publicly reachable, 0 if not or not yet known",
                &state.public,
            ),
            (
                "relayed_addresses",
                "Relays this node holds a reservation on",
                &state.relayed_addrs,
            ),
            (
                "hole_punches",
                "Connections made direct by hole punching, since start",
                &state.hole_punches,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        r.register(
            "stored_chunks",
            "Chunks stored, by why they are kept (pinned, replica, cached)",
            state.chunks.clone(),
        );
        Arc::new(Self {
            registry,
            live,
            state,
        })
    }

    /// The page: every metric in Prometheus text format, gauges set from `stats` first.
    pub(crate) fn render(&self, stats: &crate::NodeStats) -> String {
        let (n, s) = (&stats.network, &stats.store);
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.state.peers_connected, n.connected as u64);
        set(&self.state.routing_table, n.routing_table as u64);
        set(&self.state.stored_bytes, s.bytes);
        set(&self.state.repair_copies, n.repair.copies_sent);
        set(&self.state.repair_bytes, n.repair_bytes_sent);
        set(&self.state.below_target, n.repair.below_target as u64);
        set(&self.state.banned, n.banned as u64);
        set(&self.state.penalised, n.penalised);
        set(&self.state.rate_limited, n.rate_limited);
        set(
            &self.state.public,
            u64::from(n.nat.reachability == crate::nat::Reachability::Public),
        );
        set(&self.state.relayed_addrs, n.nat.relayed_addrs.len() as u64);
        set(&self.state.hole_punches, n.nat.hole_punches);
        for (kind, v) in [
            ("pinned", s.pinned),
            ("replica", s.replica),
            ("cached", s.cached),
        ] {
            set(
                &self.state.chunks.get_or_create(&Kind { kind: kind.into() }),
                v,
            );
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
