//! Every limit and parameter of the engine, with documented defaults.

use std::time::Duration;

/// Engine configuration. `Config::default()` is what a cairn node runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bucket size and the number of closest peers a lookup returns (Kademlia's k). Default 20.
    pub k: usize,
    /// Requests in flight per lookup path (Kademlia's α). Default 3.
    pub alpha: usize,
    /// Number of disjoint lookup paths (S/Kademlia §4.4); 1 turns the option off. With d > 1 no
    /// peer is queried by two paths, so one liar can mislead at most one path. Default 1.
    pub disjoint_paths: usize,
    /// How many peers hold each chunk: a chunk is placed on the `replication` closest peers to
    /// its key. Default 5.
    pub replication: usize,
    /// Entries kept per bucket in the replacement cache. Default 20.
    pub replacement_cache: usize,
    /// At most this many peers per bucket from the same IPv4 /24 or IPv6 /48, a cheap defence
    /// against one operator eclipsing a region of the key space. `None` turns the cap off (useful
    /// on a test network where every peer is on 127.0.0.1). Default `Some(2)`.
    pub ip_prefix_cap: Option<usize>,
    /// Among candidates for a bucket slot, take the one with the lowest measured round trip
    /// (proximity neighbour selection). Default true.
    pub prefer_low_rtt: bool,
    /// A routing-table entry whose requests failed this many times in a row is dropped. Default 2.
    pub max_failures: u32,
    /// Request timeouts.
    pub timeouts: TimeoutConfig,
    /// A lookup that has not finished after this long ends with what it has. Default 60 s.
    pub query_timeout: Duration,
    /// Buckets not looked up for this long are refreshed by `handle_timeout`; `None` never
    /// refreshes on its own. Default 15 minutes.
    pub refresh_interval: Option<Duration>,
    /// A get-record lookup ends once this many peers returned a valid record (it then returns the
    /// highest sequence among them). Default 3.
    pub record_quorum: usize,
    /// How long an announced provider record lives. Default 24 h. This peer announces again
    /// what it announced with [`crate::Dht::announce`] every half of it.
    pub provider_ttl: Duration,
    /// How often this peer stores again, on the closest peers of the moment, the records it
    /// published with [`crate::Dht::put_record`] (the closest set changes as peers come and
    /// go; Kademlia §2.5 republishes hourly). Default 1 h.
    pub republish_interval: Duration,
    /// Each chunk this peer is responsible for is checked this often: the `replication`
    /// closest peers of the moment are challenged to prove they hold it
    /// ([`crate::Event::Challenge`]), and each that does not is sent a copy
    /// ([`crate::Event::Replicate`]); one that does not answer counts as failing, one that
    /// proves wrong is penalised. Spread over the interval, the chunks with the fewest proven
    /// copies first. Under heavy churn the audit runs more often: every quarter of the mean
    /// time a peer stays, as the routing table sees it, but not more often than every 2
    /// minutes. Default 10 min.
    pub repair_interval: Duration,
    /// Chunks checked at most per minute, whatever the interval asks (a budget on the repair
    /// traffic). Default 256.
    pub repair_budget: usize,
    /// Storage limits of the record store.
    pub store: StoreLimits,
    /// Inbound request budget per peer.
    pub rate: RateLimit,
    /// When misbehaving peers are banned, and for how long.
    pub bans: crate::BanConfig,
    /// Inbound chunk request budget per peer, for the node's chunk protocol (see
    /// [`crate::Dht::allow_chunk_request`]). Default a burst of 1024 and 512 a second: 128
    /// MiB/s of average (256 KiB) chunks to one peer, above what one reader fetches from one
    /// holder on a fast link, so that a flood is cut off and a reader is not.
    pub chunk_rate: RateLimit,
    /// Replica copies one peer may push to this one, in KiB (see
    /// [`crate::Dht::allow_replica`]). Default a burst of 1 GiB and 64 KiB a second (225 MiB an
    /// hour): far more than a peer's share of what a newcomer inherits when it joins (the
    /// copies of the chunks it is now closest to come from all their holders), far less than
    /// a disk.
    pub replica_budget: RateLimit,
    /// Queries running at once; a command beyond this is refused with
    /// [`crate::QueryError::Busy`]. Together with `alpha` and `disjoint_paths` this bounds the
    /// requests in flight. Default 256.
    pub max_queries: usize,
    /// A full bucket probes its least-recently-seen entry for a newcomer only if that entry has
    /// been quiet this long; a peer heard from recently is assumed alive. Default 60 s.
    pub probe_after: Duration,
    /// Peers whose round trip and reliability are remembered (routing-table entries and peers
    /// met in lookups); the stalest beyond this are forgotten. Default 8192.
    pub max_tracked_peers: usize,
    /// Fetch limits and timers (see [`crate::FetchConfig`]).
    pub fetch: crate::FetchConfig,
    /// Seed of the engine's RNG (bucket refresh targets). Same inputs + same seed = same outputs.
    pub seed: u64,
}

/// Adaptive request timeout parameters (see [`crate::RttEstimator`]).
#[derive(Clone, Debug)]
pub struct TimeoutConfig {
    /// Timeout for a peer with no measurement, until any peer has been measured. Default 1 s.
    pub initial: Duration,
    /// Floor of any timeout. Default 250 ms.
    pub min: Duration,
    /// Ceiling of any timeout. Default 10 s.
    pub max: Duration,
    /// Timeout = srtt + `variance_multiplier` × rttvar (RFC 6298 uses 4). Default 4.
    pub variance_multiplier: u32,
}

/// Limits of a [`crate::MemoryRecordStore`].
#[derive(Clone, Debug)]
pub struct StoreLimits {
    /// Signed records kept at most. Default 65 536.
    pub max_records: usize,
    /// Largest record value accepted, in bytes. Default 4 KiB (a value is usually a content id).
    pub max_value_bytes: usize,
    /// Longest lifetime a record may claim from now; farther expiries are refused. Default 7 days.
    pub max_record_ttl: Duration,
    /// Keys with provider records kept at most. Default 65 536.
    pub max_provider_keys: usize,
    /// Providers kept per key; when full, those known longest keep their places. Default 20.
    pub max_providers_per_key: usize,
    /// Provider entries one provider may hold here, over all keys. Default 1024.
    pub max_provider_entries_per_peer: usize,
    /// Provider entries the providers of one IPv4 /24 or IPv6 /48 may hold here, over all keys
    /// (ids are free, addresses are not). Default 4096.
    pub max_provider_entries_per_prefix: usize,
}

/// A token bucket per peer on inbound requests. The defaults leave room for an honest heavy
/// user: a peer putting a large file runs one placement lookup per chunk, and on a small network
/// every lookup asks every peer.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Requests a peer may send in a burst. Default 1000.
    pub burst: u32,
    /// Sustained requests per second per peer. Default 500.
    pub per_second: u32,
    /// Peers tracked at once; the least recently seen is forgotten beyond this. Default 4096.
    pub max_tracked_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            disjoint_paths: 1,
            replication: 5,
            replacement_cache: 20,
            ip_prefix_cap: Some(2),
            prefer_low_rtt: true,
            max_failures: 2,
            timeouts: TimeoutConfig::default(),
            query_timeout: Duration::from_secs(60),
            refresh_interval: Some(Duration::from_secs(15 * 60)),
            record_quorum: 3,
            provider_ttl: Duration::from_secs(24 * 3600),
            republish_interval: Duration::from_secs(3600),
            repair_interval: Duration::from_secs(600),
            repair_budget: 256,
            store: StoreLimits::default(),
            rate: RateLimit::default(),
            bans: crate::BanConfig::default(),
            chunk_rate: RateLimit {
                burst: 1024,
                per_second: 512,
                max_tracked_peers: 4096,
            },
            replica_budget: RateLimit {
                burst: 1 << 20,
                per_second: 64,
                max_tracked_peers: 4096,
            },
            max_queries: 256,
            probe_after: Duration::from_secs(60),
            max_tracked_peers: 8192,
            fetch: crate::FetchConfig::default(),
            seed: 0,
        }
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            min: Duration::from_millis(250),
            max: Duration::from_secs(10),
            variance_multiplier: 4,
        }
    }
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_records: 65_536,
            max_value_bytes: 4096,
            max_record_ttl: Duration::from_secs(7 * 24 * 3600),
            max_provider_keys: 65_536,
            max_providers_per_key: 20,
            max_provider_entries_per_peer: 1024,
            max_provider_entries_per_prefix: 4096,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 1000,
            per_second: 500,
            max_tracked_peers: 4096,
        }
    }
}
