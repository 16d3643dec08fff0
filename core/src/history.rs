//! The history schema: what `sim` and `real` record and what `verification` and `plots` read.
//!
//! A history is JSON Lines, one [`Entry`] per line, in non-decreasing `t_us`. The first line is a
//! [`Event::Meta`] describing the run (topics, members, the declared bounds the checkers hold the run
//! to). Nothing in a history says more about where it came from than `Meta::source`; checkers must
//! not look at it.
//!
//! Records are identified by *value*: `(producer, seq)` within a partition, where `seq` counts the
//! records a producer sent to that partition (0, 1, 2, …). Events describe contiguous runs of records
//! rather than single records, because producers, fetches and processing all work in batches; a run
//! `{offset, producer, seq, count}` says offsets `offset..offset+count` hold seqs `seq..seq+count`.
//!
//! Partitions are written `"topic/partition"` (see [`tp_name`]); members are `c0`, `c1`, … by index.
//!
//! Sizes: `fetch` and `buffer` lines carry the bytes of their records, `Meta` the byte bound
//! `buffer_bytes_max` and each producer's record size (`producers`). These fields were added within
//! schema 1; a history without them reads them as 0 or empty (no bytes known, no byte bound
//! declared, record sizes unknown).
//!
//! Schema version: [`SCHEMA_VERSION`]. A change that alters the meaning of a field bumps it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::types::TimeUs;

pub const SCHEMA_VERSION: u32 = 1;

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Microseconds since the start of the run (simulated time in `sim`, wall time in `real`).
    pub t_us: TimeUs,
    #[serde(flatten)]
    pub ev: Event,
}

/// A contiguous run of records in one partition: offsets `offset..offset+count` hold seqs
/// `seq..seq+count` of `producer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Run {
    pub offset: u64,
    pub producer: u32,
    pub seq: u64,
    pub count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Faults may be injected.
    Safety,
    /// Faults have healed; the system must recover within the declared deadline.
    Liveness,
    /// The scenario's time is up and the driver winds down: it stops the load, lets the members
    /// read what was acknowledged and leave the group cleanly (revoke, commit, leave). Everything
    /// after this line is still checked for safety, but recovery is judged here at the latest: a
    /// member leaving at the end of a run is not a partition left unowned. Written by drivers that
    /// wind down (real mode); a simulated run ends with its members in place and has no such line.
    Shutdown,
    /// The run is over; nothing after this line.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    Start,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberEvent {
    /// The member process started (first time or after a crash).
    Start,
    /// The member process crashed: no commit, no leave.
    Crash,
    /// The member left the group cleanly.
    Leave,
    /// The coordinator removed the member (session timeout or max.poll.interval.ms).
    Evicted,
    /// A request from a stale generation was rejected.
    Fenced,
}

/// A rate-limit tier as written in histories.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierBound {
    /// `"global"`, `"topic:<name>"` or `"consumer:c<N>"`.
    pub tier: String,
    pub rate_per_s: f64,
    pub burst: f64,
}

/// The bounds a run declares; checkers hold the history to exactly these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Records buffered in one consumer (fetched, not yet processed or dead-lettered).
    pub buffer_records_max: u64,
    /// Bytes of those records (0: no byte bound declared, as in histories written before it).
    #[serde(default)]
    pub buffer_bytes_max: u64,
    /// Credits one consumer may have granted in all (exclusive + floating); 0 when the strategy is not
    /// credit-based.
    pub credits_max: u64,
    /// Token-bucket tiers; empty when no rate limit is configured.
    pub rate_tiers: Vec<TierBound>,
    /// Duplicates allowed per partition after a restart or reassignment (records processed after the
    /// last commit); `None` means "whatever was processed since the last acknowledged commit".
    pub duplicate_window_records: Option<u64>,
    /// After the liveness phase begins, total position lag (records not yet processed: per
    /// partition, hw − next offset after the highest processed) must fall to at most this many
    /// records, and no partition's committed offset may stand still while it lags…
    pub lag_ok_records: u64,
    /// …within this many milliseconds.
    pub recovery_deadline_ms: u64,
    pub max_poll_interval_ms: u64,
    pub session_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub partitions: u32,
}

/// One producer as a history declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProducerMeta {
    pub topic: String,
    /// Bytes of each of its records, counted as `fetch` and `buffer` lines count them (key, value
    /// and per-record overhead): what lets a checker rebuild a consumer's buffered bytes from the
    /// records it fetched and released.
    pub record_bytes: u64,
}

/// The first line of every history: what the run was and the bounds it declares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub schema: u32,
    /// `"sim"` or `"real"`. For humans and reports only; checkers ignore it.
    pub source: String,
    pub scenario: String,
    pub seed: u64,
    pub topics: Vec<TopicMeta>,
    /// The producers `0..N` (a run's `producer` indexes this): the topic each writes and the
    /// size of its records. Empty in histories written before it: record sizes unknown, and
    /// the checkers judge the byte bound on the consumers' own samples alone.
    #[serde(default)]
    pub producers: Vec<ProducerMeta>,
    /// Number of consumer members `c0..cN`.
    pub consumers: u32,
    /// Backpressure strategy name (`none`, `pause`, `credit`).
    pub strategy: String,
    pub bounds: Bounds,
    /// Anomaly names the scenario expects to see (e.g. `lost-write`); empty for "all hold".
    pub expect: Vec<String>,
    /// Free-form settings for reports (assignor, protocol, acks, …). Checkers read two kinds:
    /// `checkpoint` (`periodic`/`aligned`) and, under non-blocking retries only,
    /// `retry_mode = "non-blocking"` with `retry_max_attempts` (absent: blocking retries).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A partition's name in a history (`topic/partition`): shared, so that recording an event about a
/// partition copies no string.
pub type TpName = std::sync::Arc<str>;

/// Everything the history records. Serialized with `"kind"` as the tag, fields flattened beside
/// `t_us`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// First line of every history (boxed: it is one line of millions, and the largest).
    Meta(Box<Meta>),
    Phase {
        phase: Phase,
    },
    /// A fault injected (`start`) or healed (`end`).
    Fault {
        fault: String,
        target: String,
        edge: Edge,
    },
    /// A producer sent a batch (before any ack).
    ProduceSend {
        producer: u32,
        tp: TpName,
        seq: u64,
        count: u32,
    },
    /// The broker acknowledged a batch at `offset` (base offset of the batch).
    ProduceAck {
        producer: u32,
        tp: TpName,
        seq: u64,
        count: u32,
        offset: u64,
    },
    /// A send failed; `unknown` when the outcome is unknown (timeout: it may or may not be written).
    ProduceFail {
        producer: u32,
        tp: TpName,
        seq: u64,
        count: u32,
        unknown: bool,
    },
    /// Leadership of a partition changed.
    Leader {
        tp: TpName,
        broker: Option<u32>,
        epoch: u32,
        isr: Vec<u32>,
        unclean: bool,
    },
    Member {
        consumer: u32,
        event: MemberEvent,
    },
    Rebalance {
        generation: u32,
        edge: Edge,
        protocol: String,
    },
    /// The member now owns these partitions (after any seek below).
    Assign {
        consumer: u32,
        generation: u32,
        tps: Vec<TpName>,
    },
    /// The member gave these partitions up (after its commit-on-revoke, if any).
    Revoke {
        consumer: u32,
        generation: u32,
        tps: Vec<TpName>,
    },
    /// The member's fetch position for `tp` was set to `offset` (the committed offset, or the reset
    /// policy's answer when none is committed).
    Seek {
        consumer: u32,
        tp: TpName,
        offset: u64,
    },
    /// Records returned to the member by one fetch (poll). `hw` is the high watermark the broker
    /// reported with it.
    Fetch {
        consumer: u32,
        tp: TpName,
        runs: Vec<Run>,
        /// Bytes of the records returned (0 in histories written before record sizes).
        #[serde(default)]
        bytes: u64,
        hw: u64,
    },
    /// The member began processing offsets `offset..offset+count` of `tp` (attempt 1 = first try).
    ProcessStart {
        consumer: u32,
        tp: TpName,
        offset: u64,
        count: u32,
        attempt: u32,
    },
    /// Processing of the run that began at `offset` finished: the first `ok` records succeeded; if
    /// `ok < count` the record at `offset + ok` failed and the rest were not attempted.
    ProcessEnd {
        consumer: u32,
        tp: TpName,
        offset: u64,
        count: u32,
        ok: u32,
    },
    /// A record was given up on after `attempts` tries and written to the dead-letter queue.
    DeadLetter {
        consumer: u32,
        tp: TpName,
        offset: u64,
        attempts: u32,
    },
    CommitSend {
        consumer: u32,
        generation: u32,
        tp: TpName,
        offset: u64,
    },
    CommitAck {
        consumer: u32,
        generation: u32,
        tp: TpName,
        offset: u64,
    },
    /// A commit failed; `unknown` when its reply was lost (it may have been applied).
    CommitFail {
        consumer: u32,
        generation: u32,
        tp: TpName,
        offset: u64,
        unknown: bool,
    },
    Pause {
        consumer: u32,
        tps: Vec<TpName>,
    },
    Resume {
        consumer: u32,
        tps: Vec<TpName>,
    },
    /// The receiver granted `n` credits on channel `tp`. `floating` counts how many of them came from
    /// the shared floating pool.
    CreditGrant {
        consumer: u32,
        tp: TpName,
        n: u32,
        floating: u32,
    },
    /// Credits returned unused (a channel revoked, or floating credits handed back to the pool).
    CreditReturn {
        consumer: u32,
        tp: TpName,
        n: u32,
    },
    /// Records admitted (`admitted = true`) or refused by one rate-limit tier.
    Token {
        consumer: u32,
        tier: String,
        n: u32,
        admitted: bool,
    },
    /// A periodic sample of one consumer's buffer (records fetched, not yet processed or
    /// dead-lettered) and credit state.
    Buffer {
        consumer: u32,
        records: u64,
        /// Bytes of those records (0 in histories written before record sizes).
        #[serde(default)]
        bytes: u64,
        credits_outstanding: u64,
    },
    /// Per-partition lag sample: high watermark minus committed offset.
    Lag {
        tp: TpName,
        hw: u64,
        committed: u64,
    },
    /// Flink-style time accounting for one consumer over the last second.
    Metrics {
        consumer: u32,
        back_pressured_ms_per_s: u32,
        busy_ms_per_s: u32,
        idle_ms_per_s: u32,
    },
    /// An aligned checkpoint across the pipeline's stages.
    Checkpoint {
        consumer: u32,
        id: u64,
        edge: Edge,
    },
    /// Free-form note (e.g. a fault real mode cannot inject, listed as skipped).
    Note {
        text: String,
    },
}

/// The history name of a partition: `"orders/3"`.
pub fn tp_name(topic: &str, partition: u32) -> TpName {
    format!("{topic}/{partition}").into()
}

/// Splits `"orders/3"` into `("orders", 3)`.
pub fn parse_tp(name: &str) -> Option<(&str, u32)> {
    let (t, p) = name.rsplit_once('/')?;
    Some((t, p.parse().ok()?))
}

/// Serializes one entry as a JSON line (without the newline): serde_json's bytes, written by
/// [`crate::jsonl::write_entry`].
pub fn to_line(e: &Entry) -> String {
    let mut out = Vec::with_capacity(128);
    crate::jsonl::write_entry(&mut out, e);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Parses a whole JSON Lines history. Errors name the 1-based line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Entry>, HistoryError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(line).map_err(|err| HistoryError {
            line: i + 1,
            message: err.to_string(),
        })?;
        out.push(e);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "history line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for HistoryError {}

/// The trace hash: the history hash printed by runs and compared by determinism tests, over the
/// history's JSON lines. Each line, followed by `\n`, is taken 8 bytes at a time as little-endian
/// words (its last word holds the tail and the `\n`, zero-padded; no JSON line holds a raw `\n` or
/// NUL, so the line boundaries are part of what is hashed), and each word is mixed in as
/// `h = rotl((h ^ word) * K, 31)`, from FNV's offset basis. Stable across processes, platforms and
/// releases (no default hasher). One multiply per 8 bytes: byte-wise FNV-1a, one per byte in a
/// dependent chain, took a tenth of a simulated run's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

impl TraceHash {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    pub const fn new() -> Self {
        TraceHash(Self::BASIS)
    }

    /// Mixes in one line (without its newline).
    #[inline]
    pub fn line(&mut self, line: &[u8]) {
        let mut h = self.0;
        let mut words = line.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = Self::mix(h, u64::from_le_bytes(b));
        }
        let tail = words.remainder();
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = b'\n';
        self.0 = Self::mix(h, u64::from_le_bytes(last));
    }

    #[inline(always)]
    fn mix(h: u64, w: u64) -> u64 {
        (h ^ w).wrapping_mul(Self::K).rotate_left(31)
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for TraceHash {
    fn default() -> Self {
        Self::new()
    }
}

/// The [`TraceHash`] of these lines (each without its newline).
pub fn hash_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h = TraceHash::new();
    for l in lines {
        h.line(l.as_bytes());
    }
    h.finish()
}

/// Hash of a history's entries, as [`hash_lines`] over their JSON lines.
pub fn hash_entries(entries: &[Entry]) -> u64 {
    let lines: Vec<String> = entries.iter().map(to_line).collect();
    hash_lines(lines.iter().map(|s| s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_with_flat_kind_tag() {
        let e = Entry {
            t_us: 1500,
            ev: Event::Fetch {
                consumer: 2,
                tp: tp_name("orders", 3),
                runs: vec![Run { offset: 10, producer: 0, seq: 7, count: 4 }],
                bytes: 4_096,
                hw: 20,
            },
        };
        let line = to_line(&e);
        assert_eq!(
            line,
            r#"{"t_us":1500,"kind":"fetch","consumer":2,"tp":"orders/3","runs":[{"offset":10,"producer":0,"seq":7,"count":4}],"bytes":4096,"hw":20}"#
        );
        assert_eq!(parse_jsonl(&line).unwrap(), vec![e]);
        // A line written before record sizes (no `bytes`) still reads, as 0 bytes.
        let old = r#"{"t_us":1500,"kind":"fetch","consumer":2,"tp":"orders/3","runs":[],"hw":20}"#;
        assert!(matches!(parse_jsonl(old).unwrap()[0].ev, Event::Fetch { bytes: 0, .. }));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = parse_jsonl("{\"t_us\":1,\"kind\":\"phase\",\"phase\":\"safety\"}\n{oops").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn tp_names_round_trip() {
        assert_eq!(parse_tp(&tp_name("a.b-c", 11)), Some(("a.b-c", 11)));
        assert_eq!(parse_tp("nopartition"), None);
    }

    /// [`TraceHash`] of `""` and of `{"t_us":0}`, computed independently of the code under test.
    const PINNED_EMPTY: u64 = 0x6e36_d36d_9373_2a04;
    const PINNED_SHORT: u64 = 0xd9c6_03ef_77dc_9b1a;

    #[test]
    fn hash_is_stable_and_order_sensitive() {
        assert_eq!(hash_lines(["a", "b"]), hash_lines(["a", "b"]));
        assert_ne!(hash_lines(["a", "b"]), hash_lines(["b", "a"]));
        // Pinned: a change here changes every recorded trace hash.
        assert_eq!(hash_lines([""]), PINNED_EMPTY);
        assert_eq!(hash_lines(["{\"t_us\":0}"]), PINNED_SHORT);
        // Line boundaries are hashed: the same bytes split differently hash differently, as do
        // lines differing in one byte of a full word or of the tail.
        assert_ne!(hash_lines(["abcdefgh", "ij"]), hash_lines(["abcdefghij"]));
        assert_ne!(hash_lines(["abcdefgh", "ij"]), hash_lines(["abcdefg", "hij"]));
        assert_ne!(hash_lines(["", ""]), hash_lines([""]));
        assert_ne!(hash_lines(["abcdefghX"]), hash_lines(["abcdefghY"]));
        assert_ne!(hash_lines(["Xbcdefghi"]), hash_lines(["Ybcdefghi"]));
    }
}
