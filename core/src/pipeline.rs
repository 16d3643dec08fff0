//! The consumer pipeline: one sans-IO state machine composed of the backpressure strategy (credit,
//! pause or none), the multi-tier rate limiter, the offset ledger, the retry policy and the worker
//! pool. A driver (the simulator's consumer node, or real mode's rdkafka loop) feeds it [`Input`]s
//! with `now_us` and executes the [`Action`]s it returns, in order:
//!
//! ```text
//!   loop {
//!       p.handle(now_us, input);              // something happened
//!       while let Some(a) = p.poll_action() { // do what it decided
//!           execute(a);
//!       }
//!       sleep_until(p.poll_timeout());       // or until the next input
//!   }
//! ```
//!
//! Records move as contiguous offset runs: one fetch returns `offset..offset+count` of a partition;
//! a worker processes a run of one partition at a time; one run per partition is in flight at once
//! (per-partition order). A record that fails waits for its retry backoff either at the front of
//! its partition, blocking it (`RetryMode::Blocking`), or parked beside it while the records after
//! it go on (`RetryMode::NonBlocking`, at most `parked_records_max` per partition; the commit
//! stays at the contiguous processed prefix + 1, K1). Every buffer is bounded: the fetched-record
//! buffer by `buffer_records_max` (except under the `none` strategy, which exists to show what
//! happens without one; parked records count in it until done), the action queue by
//! `actions_max`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::barrier::{Aligner, Coordinator};
use crate::bugs::{Bug, Bugs};
use crate::credit::{CreditConfig, Credits, Grant};
use crate::ledger::{Ledger, LedgerError};
use crate::pause::{PauseConfig, PauseControl, Toggle};
use crate::rate::{Admit, BucketConfig, BucketSnapshot, MultiTier, TierIdx};
use crate::retry::{RetryConfig, RetryPolicy, Verdict};
pub use crate::spec::{CheckpointMode, RetryMode};
use crate::spec::{Protocol, Scenario, Strategy, TierKind, PARKED_RECORDS_MAX_LIMIT};
use crate::types::{Generation, MemberId, Offset, SplitMix64, TimeUs, Tp, TpIndex};

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub member: MemberId,
    pub strategy: Strategy,
    pub protocol: Protocol,
    pub buffer_records_max: u32,
    /// Bytes of buffered records, at most (`consumers.buffer_bytes_max`): the pause and credit
    /// strategies size fetches so the buffer never holds more.
    pub buffer_bytes_max: u64,
    /// The most bytes one fetch asks for one partition (`max.partition.fetch.bytes`).
    pub max_partition_fetch_bytes: u64,
    /// The largest record the member can meet, bytes. A fetch reply holds at most the bytes it
    /// asked for, or one record whatever its size (KIP-74: a consumer always makes progress), so a
    /// bounded strategy fetches only while the free byte room holds one such record.
    pub record_bytes_max: u64,
    /// The most records one fetch may return for one partition.
    pub max_poll_records: u32,
    /// The most records one `Process` action hands a worker.
    pub process_batch_max: u32,
    pub pause: PauseConfig,
    pub credit: CreditConfig,
    pub workers: u32,
    pub retry: RetryConfig,
    /// Whether a failed record waits for its retry at the front of its partition (blocking) or
    /// parked beside it while the records after it go on (non-blocking).
    pub retry_mode: RetryMode,
    /// Non-blocking mode: the most records parked per partition (at least 1); a full set blocks
    /// the partition's dispatch of new records until one leaves it.
    pub parked_records_max: u32,
    pub commit_interval_ms: u64,
    /// What commits commit: the processed prefix (periodic) or the barrier offsets of complete
    /// aligned checkpoints (K3), triggered every `commit_interval_ms`.
    pub checkpoint: CheckpointMode,
    /// Rate-limit tiers, and for each topic index the tier path its records pass (global, topic,
    /// consumer tiers that apply).
    pub tiers: Vec<BucketConfig>,
    pub tier_names: Vec<String>,
    pub tier_paths: Vec<Vec<TierIdx>>,
    /// Limiter state restored at start (R3); `None` = full buckets.
    pub limiter_restore: Option<Vec<BucketSnapshot>>,
    /// Period of `Buffer` and `Metrics` observations.
    pub sample_interval_ms: u64,
    /// Bound on the pending action queue.
    pub actions_max: usize,
    /// Seed of the pipeline's own random draws (retry jitter).
    pub rng_seed: u64,
    pub bugs: Bugs,
}

/// The edges of an aligned checkpoint (K3) as the pipeline reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointEdge {
    /// Triggered: barriers were placed (one `Barrier` action per channel follows).
    Start,
    /// Every stage acknowledged it; the `Commit`s of its barrier offsets follow.
    Complete,
    /// Abandoned (a channel was revoked or lost during alignment); nothing is committed for it and
    /// the next checkpoint starts fresh.
    Aborted,
}

/// The stages of the pipeline that acknowledge a checkpoint: the fetch stage (at barrier
/// injection) and the worker stage (at alignment).
const STAGE_FETCH: usize = 0;
const STAGE_WORKER: usize = 1;
const STAGES: usize = 2;
/// At most one checkpoint aligns at a time; a trigger while one aligns is skipped.
const CHECKPOINTS_ALIGNING_MAX: usize = 1;

/// Commits sent for one partition's commit on revoke, the first included (see `PendingRevoke`).
const REVOKE_COMMIT_ATTEMPTS_MAX: u32 = 3;
/// Credit strategy: a partition with records still buffered fetches only when its credits cover at
/// least 1/`FETCH_CREDIT_FRACTION_DEN` of what it could fetch (a poll, or the backlog if smaller).
const FETCH_CREDIT_FRACTION_DEN: u64 = 2;
/// Pause strategy: a partition at its log end (its last reply reported no record beyond its fetch
/// position) asks for at most 1/`LOG_END_FETCH_SHARE_DEN` of a fair share of the free buffer (the
/// free records over the partitions that fetch), at least 1 record; a backlogged partition asks
/// for its known backlog plus that much. A fetch holds the room it asks for until its reply, and a
/// partition at its log end long-polls (up to `fetch.wait.max.ms`) for records that mostly have not
/// arrived: asked for a full poll, it would hold the buffer a backlogged sibling could fill (the
/// receiver-side silly window). Asking too little costs one round trip: the records it could not
/// take stay at the broker, its reply reports them as backlog, and its next fetch is sized by it.
const LOG_END_FETCH_SHARE_DEN: u64 = 4;
/// Credit strategy: floating credits are lent in chunks of at least 1/`FLOATING_GRANT_FRACTION_DEN`
/// of `max_poll_records` (or the whole pool, if smaller).
const FLOATING_GRANT_FRACTION_DEN: u32 = 4;
const _: () = assert!(CHECKPOINTS_ALIGNING_MAX == 1);

/// The checkpoint being aligned: its channels (owned partitions at trigger, sorted) and, for
/// each, the barrier offset (the fetch position at trigger: every record below it was in the
/// buffer, in flight or done) and whether the worker stage saw the barrier.
struct Align {
    id: u64,
    tps: Vec<Tp>,
    barriers: Vec<Offset>,
    arrived: Vec<bool>,
    aligner: Aligner,
}

/// How a commit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Acked,
    Failed,
    /// The reply was lost: it may or may not have been applied.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// The member now owns these partitions, each with the offset to start at (the committed
    /// offset, or the reset policy's answer; the driver resolves it).
    Assigned { generation: Generation, tps: &'a [(Tp, Offset)] },
    /// The coordinator asks the member to give these partitions up (eager: all it owns). The
    /// pipeline finishes in-flight work on them, commits (K1), then emits `RevokeDone`.
    Revoke { generation: Generation, tps: &'a [Tp] },
    /// The partitions were lost (session expired, fenced): no commit is possible; drop them.
    Lost { tps: &'a [Tp] },
    /// A fetch returned offsets `offset..offset+count` of `tp`, `bytes` in all: at most the
    /// fetch's `max_bytes`, or a single record; `hw` is the high watermark.
    Fetched { tp: Tp, offset: Offset, count: u32, bytes: u64, hw: Offset },
    /// A fetch returned nothing or failed (not leader, timeout); it may be retried.
    FetchEmpty { tp: Tp, hw: Option<Offset> },
    /// The run handed to `worker` finished: its first `ok` records succeeded; when `ok < count` the
    /// record at `offset + ok` failed and the rest were not attempted.
    ProcessDone { worker: u32, ok: u32 },
    CommitDone { tp: Tp, offset: Offset, outcome: CommitOutcome },
    /// The dead-letter producer acknowledged the record.
    DeadLetterDone { tp: Tp, offset: Offset },
    /// Time passed.
    Tick,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Fetch up to `max_records` of `tp` from `offset`, at most `max_bytes` of them (or one record
    /// whatever its size, when it is the first of the request's replies with data). One fetch per
    /// partition is outstanding at a time; answer with `Fetched` or `FetchEmpty`.
    Fetch { tp: Tp, offset: Offset, max_records: u32, max_bytes: u64 },
    Pause { tp: Tp },
    Resume { tp: Tp },
    /// The fetch position of `tp` is now `offset` (assignment).
    Seek { tp: Tp, offset: Offset },
    /// Run the handler on offsets `offset..offset+count` of `tp` on `worker`; answer `ProcessDone`.
    Process { worker: u32, tp: Tp, offset: Offset, count: u32, attempt: u32 },
    Commit { generation: Generation, tp: Tp, offset: Offset },
    DeadLetter { tp: Tp, offset: Offset, attempts: u32 },
    /// Revocation finished: the driver may tell the coordinator.
    RevokeDone { generation: Generation, tps: Vec<Tp> },
    /// Observations for the history.
    CreditGrant { tp: Tp, n: u32, floating: u32 },
    CreditReturn { tp: Tp, n: u32 },
    Token { tier: TierIdx, n: u32, admitted: bool },
    Buffer { records: u64, bytes: u64, credits_outstanding: u64 },
    Metrics { back_pressured_ms_per_s: u32, busy_ms_per_s: u32, idle_ms_per_s: u32 },
    /// Snapshot of the limiter state to persist (R3).
    LimiterSnapshot { snaps: Vec<BucketSnapshot> },
    /// An aligned checkpoint (K3, `CheckpointMode::Aligned`) started, completed or was aborted.
    Checkpoint { id: u64, edge: CheckpointEdge },
    /// Checkpoint `id` placed its barrier in `tp`'s channel at `offset`: records from `offset` on
    /// are after it. Emitted right after `Checkpoint { edge: Start }`, one per channel.
    Barrier { id: u64, tp: Tp, offset: Offset },
}

/// Counters and levels a driver or a report may read at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub buffered_records: u64,
    pub buffered_records_peak: u64,
    pub buffered_bytes: u64,
    pub buffered_bytes_peak: u64,
    pub credits_outstanding: u64,
    pub processed_records: u64,
    pub dead_lettered_records: u64,
    pub busy_workers: u32,
    pub owned_partitions: u32,
    pub paused_partitions: u32,
    /// Completions the ledger refused as stale (`AlreadyDone` or `Unknown`: a dead-letter
    /// acknowledgement or run result for a partition lost or reassigned meanwhile), in records.
    /// Counted, never dropped silently.
    pub stale_completions: u64,
    /// Aligned checkpoints completed and aborted (K3).
    pub checkpoints_completed: u64,
    pub checkpoints_aborted: u64,
}


/// Bound on out-of-order completion ranges the ledger keeps per partition. With one run in flight
/// per partition completions are in order except around dead-lettered records awaiting their
/// acknowledgement and (non-blocking retries) parked records, at most `PARKED_RECORDS_MAX_LIMIT`
/// of them, plus the one on a worker: half the bound leaves the other half to the dead letters.
pub const LEDGER_PENDING_RANGES_MAX: usize = 1_024;
const _: () = assert!((PARKED_RECORDS_MAX_LIMIT as usize + 1) * 2 <= LEDGER_PENDING_RANGES_MAX);

/// The bytes of `to` of `from` records that hold `bytes` in all, in proportion (exact when the
/// records are of one size); all of them when `to >= from`.
#[inline]
fn share_bytes(bytes: u64, from: impl Into<u64>, to: impl Into<u64>) -> u64 {
    let (from, to) = (from.into(), to.into());
    if to >= from {
        bytes
    } else {
        (bytes as u128 * to as u128 / from as u128) as u64
    }
}

/// Records a completion in the ledger. A stale completion (the partition was lost or reassigned
/// since: `Unknown`, `AlreadyDone`) is counted in `Stats::stale_completions`; a refusal that breaks
/// the ledger's bound (`TooManyRanges`, `Overflow`) is a broken invariant and stops the pipeline
/// with the error: a completion is never dropped silently.
#[inline]
fn ledger_done(ledger: &mut Ledger, stats: &mut Stats, tp: Tp, offset: Offset, count: u32) {
    match ledger.done(tp, offset, count) {
        Ok(()) => {}
        Err(LedgerError::Unknown(_) | LedgerError::AlreadyDone { .. }) => stats.stale_completions += count as u64,
        Err(e @ (LedgerError::TooManyRanges { .. } | LedgerError::Overflow { .. })) => ledger_refused(tp, offset, count, e),
    }
}

#[cold]
#[inline(never)]
fn ledger_refused(tp: Tp, offset: Offset, count: u32, e: LedgerError) -> ! {
    panic!("ledger refused completion {tp}@{offset}+{count}: {e} (LEDGER_PENDING_RANGES_MAX = {LEDGER_PENDING_RANGES_MAX} bounds out-of-order runs)")
}

impl PipelineConfig {
    /// The configuration of member `member` for a scenario. Every consumer of a scenario gets the
    /// same settings; the global rate tier is enforced as equal per-consumer shares (rate/n,
    /// burst/n), so the group as a whole never exceeds it.
    pub fn from_spec(spec: &Scenario, member: MemberId, bugs: Bugs) -> Self {
        let k = &spec.consumers;
        let partitions = spec.subscribed_partitions().len() as u32;
        let exclusive = k.exclusive_credits;
        let floating_default = k.buffer_records_max.saturating_sub(partitions.saturating_mul(exclusive));
        let (high, low) = spec.pause_watermarks();
        let mut tiers = Vec::new();
        let mut tier_names = Vec::new();
        let mut tier_paths: Vec<Vec<TierIdx>> = vec![Vec::new(); spec.topics.len()];
        for l in &k.rate_limits {
            let idx = tiers.len();
            let (cfg, name) = match l.tier {
                TierKind::Global => {
                    let n = k.count.max(1) as f64;
                    (BucketConfig { rate_per_s: l.rate_per_s / n, burst: (l.burst / n).max(1.0) }, "global".to_string())
                }
                TierKind::Topic => (
                    BucketConfig { rate_per_s: l.rate_per_s / k.count.max(1) as f64, burst: (l.burst / k.count.max(1) as f64).max(1.0) },
                    format!("topic:{}", l.topic.as_deref().unwrap_or("")),
                ),
                TierKind::Consumer => (BucketConfig { rate_per_s: l.rate_per_s, burst: l.burst }, format!("consumer:{member}")),
            };
            tiers.push(cfg);
            tier_names.push(name);
            for (ti, t) in spec.topics.iter().enumerate() {
                let applies = match l.tier {
                    TierKind::Topic => l.topic.as_deref() == Some(t.name.as_str()),
                    TierKind::Global | TierKind::Consumer => true,
                };
                if applies {
                    tier_paths[ti].push(idx);
                }
            }
        }
        PipelineConfig {
            member,
            strategy: k.strategy,
            protocol: k.protocol,
            buffer_records_max: k.buffer_records_max,
            buffer_bytes_max: k.buffer_bytes_max,
            max_partition_fetch_bytes: k.max_partition_fetch_bytes,
            record_bytes_max: spec.record_bytes_max(),
            max_poll_records: k.max_poll_records,
            process_batch_max: k.max_poll_records,
            pause: PauseConfig { high_records: high, low_records: low },
            credit: CreditConfig {
                exclusive_per_channel: exclusive,
                floating_max: k.floating_credits.unwrap_or(floating_default),
                buffer_records_max: k.buffer_records_max,
            },
            workers: k.workers,
            retry: RetryConfig {
                max_attempts: k.retry.max_attempts,
                backoff_initial_ms: k.retry.backoff_initial_ms,
                backoff_max_ms: k.retry.backoff_max_ms,
                jitter: k.retry.jitter,
            },
            retry_mode: k.retry.mode,
            parked_records_max: k.retry.parked_records_max,
            commit_interval_ms: k.commit_interval_ms,
            checkpoint: k.checkpoint,
            tiers,
            tier_names,
            tier_paths,
            limiter_restore: None,
            sample_interval_ms: 1_000,
            actions_max: 4_096 + 16 * partitions as usize,
            rng_seed: 0x5EED_0000 ^ member.0 as u64,
            bugs,
        }
    }
}

/// One owned partition.
#[derive(Debug)]
struct Part {
    /// Next offset to fetch.
    fetch_pos: Offset,
    /// Records the outstanding fetch asked for: its reservation in the buffer until the reply.
    fetch_requested: u32,
    /// Bytes it reserved (its `max_bytes`, or one largest record if more).
    fetch_requested_bytes: u64,
    fetch_outstanding: bool,
    /// Buffered runs `(offset, count)` in offset order, not yet handed to a worker (the in-flight run
    /// is taken off the front).
    buffer: VecDeque<(Offset, u32)>,
    buffered: u64,
    /// Bytes of the `buffered` records. Records leave in proportion (exact when a partition's
    /// records are of one size) and the last one leaving takes what is left.
    buffered_bytes: u64,
    in_flight: bool,
    /// Blocking retries: a failed record waiting for its retry at the buffer front:
    /// `(offset, attempt, not_before_us)`.
    retry: Option<(Offset, u32, TimeUs)>,
    /// Non-blocking retries: failed records parked for their retry, out of `buffer` but still
    /// counted in `buffered` (they occupy buffer space and hold their credits until done), sorted
    /// by `(not_before_us, offset)` so the first is the next due. At most `parked_records_max`
    /// (with the one being retried on a worker, if any); empty in blocking mode.
    parked: Vec<Parked>,
    paused: bool,
    /// Credit strategy: the last fetch decision found too few credits (none, or fewer than half of
    /// what it could fetch while its own records are still buffered); the partition leaves the
    /// fetch ready-set until a grant for it arrives or its buffer empties.
    starved: bool,
    /// Barrier offset of the checkpoint being aligned: records from here on are held back.
    barrier: Option<Offset>,
    /// Membership in the dispatch and fetch ready-sets (so unchanged membership costs no search).
    in_ready: bool,
    in_fetchable: bool,
    /// The previous owner-incarnation of this partition had a fetch outstanding when it was given
    /// up: its reply may still arrive and must not be taken for this incarnation's.
    stale_fetch: bool,
    revoking: bool,
    /// Commit on revoke sent, outcome pending.
    revoke_commit_pending: bool,
    /// The high watermark the last fetch reply reported (real mode: the end of the records staged
    /// locally): `hw - fetch_pos` is the backlog the partition knows of.
    hw: Offset,
}

/// A set of positions in the partition table, one bit each: O(1) insert and remove, iteration in
/// position order (which is `Tp` order). Sized to the table (at most one bit per owned partition);
/// resized when the table is rebuilt.
#[derive(Debug, Default)]
struct PosSet {
    words: Vec<u64>,
    len: usize,
}

impl PosSet {
    /// Empties the set and sizes it for `n` positions.
    fn reset(&mut self, n: usize) {
        self.words.clear();
        self.words.resize(n.div_ceil(64), 0);
        self.len = 0;
    }

    #[inline]
    fn insert(&mut self, i: usize) {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        if self.words[w] & bit == 0 {
            self.words[w] |= bit;
            self.len += 1;
        }
    }

    #[inline]
    fn remove(&mut self, i: usize) {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        if self.words[w] & bit != 0 {
            self.words[w] &= !bit;
            self.len -= 1;
        }
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1u64 << (i % 64)) != 0
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first position in `from..end` that is in the set.
    #[inline]
    fn next_in(&self, from: usize, end: usize) -> Option<usize> {
        if from >= end {
            return None;
        }
        let mut w = from / 64;
        let mut bits = self.words[w] & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                return (i < end).then_some(i);
            }
            w += 1;
            if w * 64 >= end {
                return None;
            }
            bits = self.words[w];
        }
    }

    /// The count matches the bits, and no bit lies at or beyond `n`.
    fn consistent(&self, n: usize) -> bool {
        let ones: usize = self.words.iter().map(|w| w.count_ones() as usize).sum();
        self.words.len() == n.div_ceil(64) && ones == self.len && (0..self.words.len() * 64).all(|i| i < n || !self.contains(i))
    }
}

/// The owned partitions in `Tp` order with an O(1) index: a step looks its partition up several
/// times, and a search of an ordered map costs more than the rest of the step. Holds at most one
/// entry per owned partition; ownership changes (rare) rebuild the index and the ready-sets.
///
/// The dispatch and fetch ready-sets are sets of positions in `entries`, kept equal to the parts'
/// `in_ready` / `in_fetchable` flags: a step inserts or removes its partition in O(1), and a walk
/// over a set visits only its members, in `Tp` order.
#[derive(Debug, Default)]
struct PartMap {
    entries: Vec<(Tp, Part)>,
    index: TpIndex,
    /// Bumped whenever positions move (an insertion or removal), so that a position remembered
    /// from an earlier step can be told apart from a current one.
    layout: u64,
    /// Dispatch ready-set: owned partitions with buffered records the worker stage may take (none
    /// in flight, not revoking, not held back by a barrier).
    ready: PosSet,
    /// Fetch ready-set: owned partitions with no fetch outstanding, not revoking, and (credit
    /// strategy) not known to be without credits.
    fetchable: PosSet,
}

impl PartMap {
    #[inline]
    fn pos(&self, tp: &Tp) -> Option<usize> {
        self.index.find(&self.entries, *tp)
    }

    #[inline]
    fn get(&self, tp: &Tp) -> Option<&Part> {
        self.pos(tp).map(|i| &self.entries[i].1)
    }

    #[inline]
    fn get_mut(&mut self, tp: &Tp) -> Option<&mut Part> {
        self.pos(tp).map(|i| &mut self.entries[i].1)
    }

    fn contains_key(&self, tp: &Tp) -> bool {
        self.pos(tp).is_some()
    }

    /// Inserts or replaces the entry of `tp`; returns the entry replaced.
    fn insert(&mut self, tp: Tp, part: Part) -> Option<Part> {
        match self.entries.binary_search_by(|(t, _)| t.cmp(&tp)) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.entries[i].1, part);
                self.rebuild_index();
                Some(old)
            }
            Err(i) => {
                self.entries.insert(i, (tp, part));
                self.rebuild_index();
                None
            }
        }
    }

    fn remove(&mut self, tp: &Tp) -> Option<Part> {
        let i = self.entries.binary_search_by(|(t, _)| t.cmp(tp)).ok()?;
        let (_, p) = self.entries.remove(i);
        self.rebuild_index();
        Some(p)
    }

    fn iter(&self) -> impl Iterator<Item = (&Tp, &Part)> {
        self.entries.iter().map(|(t, p)| (t, p))
    }

    fn keys(&self) -> impl Iterator<Item = &Tp> {
        self.entries.iter().map(|(t, _)| t)
    }

    fn values(&self) -> impl Iterator<Item = &Part> {
        self.entries.iter().map(|(_, p)| p)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Re-indexes after an insertion or removal; positions moved, so the ready-sets are rebuilt
    /// from the parts' membership flags.
    fn rebuild_index(&mut self) {
        self.layout += 1;
        self.index.rebuild(&self.entries);
        let n = self.entries.len();
        self.ready.reset(n);
        self.fetchable.reset(n);
        for (i, (_, p)) in self.entries.iter().enumerate() {
            if p.in_ready {
                self.ready.insert(i);
            }
            if p.in_fetchable {
                self.fetchable.insert(i);
            }
        }
    }
}

impl Part {
    /// Belongs in the dispatch ready-set: a run could be handed out now, barring the rate limiter
    /// and retry backoffs. A parked record (non-blocking retries) lies before any barrier, so it
    /// is always eligible.
    #[inline(always)]
    fn ready(&self, barrier_overtakes: bool) -> bool {
        !self.in_flight
            && !self.revoking
            && (self.buffer.front().is_some_and(|f| barrier_overtakes || self.barrier.is_none_or(|b| f.0 < b))
                || !self.parked.is_empty())
    }

    /// Belongs in the fetch ready-set.
    #[inline(always)]
    fn fetchable(&self) -> bool {
        !self.fetch_outstanding && !self.revoking && !self.starved
    }
}

/// A failed record parked for a non-blocking retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Parked {
    not_before_us: TimeUs,
    offset: Offset,
    /// The attempt its retry will be.
    attempt: u32,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    tp: Tp,
    offset: Offset,
    count: u32,
    attempt: u32,
    /// The partition was given up (lost, revoked, or dropped as a zombie) while this run was in
    /// flight: its outcome belongs to no current incarnation and is ignored when it arrives.
    void: bool,
}

#[derive(Debug)]
struct PendingRevoke {
    generation: Generation,
    tps: Vec<Tp>,
    /// Commits on revoke sent so far, per partition of `tps`. A failed one is sent again, at most
    /// `REVOKE_COMMIT_ATTEMPTS_MAX` times in all: a commit refused for good (the group has moved
    /// on: fenced, rebalancing) fails at once on every attempt, and without the bound a driver whose
    /// commit call answers synchronously would loop without end.
    committed: Vec<(Tp, u32)>,
}

/// Worker-time accounting for the Flink metrics, in worker-microseconds.
#[derive(Debug, Default, Clone, Copy)]
struct TimeAcc {
    busy: u64,
    back_pressured: u64,
    idle: u64,
}

pub struct Pipeline {
    cfg: PipelineConfig,
    generation: Generation,
    parts: PartMap,
    /// Parts revoked but kept for processing (only under the ProcessRevoked bug).
    zombie: BTreeMap<Tp, Part>,
    /// Fetch positions of partitions given up (for the NoSeekOnAssign bug only).
    old_positions: BTreeMap<Tp, Offset>,
    workers: Vec<Option<Job>>,
    free_workers: u32,
    credits: Credits,
    pause: PauseControl,
    limiter: Option<MultiTier>,
    limiter_wait_until: Option<TimeUs>,
    limiter_refused_reported: bool,
    ledger: Ledger,
    retry: RetryPolicy,
    rng: SplitMix64,
    actions: ActionQueue,
    pending_revoke: Option<PendingRevoke>,
    buffered_total: u64,
    reserved_total: u64,
    buffered_bytes_total: u64,
    reserved_bytes_total: u64,
    stats: Stats,
    now_us: TimeUs,
    last_poll_us: TimeUs,
    next_commit_us: TimeUs,
    next_sample_us: TimeUs,
    acc: TimeAcc,
    acc_since_us: TimeUs,
    /// Whether free workers are held back by the rate limiter or a retry backoff (back-pressured)
    /// rather than having nothing to do (idle).
    blocked: bool,
    grants: Vec<Grant>,
    dirty: Vec<(Tp, Offset)>,
    /// Round-robin cursor for fair dispatch across partitions.
    cursor: Option<Tp>,
    /// `(layout, position)`: the position of the first owned partition after `cursor`, remembered
    /// while the partition table keeps its `layout` (saves a search per dispatch).
    cursor_split: Option<(u64, usize)>,
    /// Zombie partitions to visit in a dispatch walk (planted bug only); reused, no allocation per
    /// step. At most one entry per zombie.
    zombie_scratch: Vec<Tp>,
    coordinator: Coordinator,
    align: Option<Align>,
    /// Partitions given up with a fetch outstanding (at most one entry per partition ever owned);
    /// the entry leaves when the reply arrives or the partition is assigned again.
    stale_fetches: BTreeSet<Tp>,
}

/// The pending actions, oldest first: a vector and the position of the next one to hand out.
/// Appending writes the action in place (a step appends one or two, and a ring buffer's append
/// is a call that copies it through memory); the vector empties whenever the driver has taken every
/// action, and drops its taken prefix once that is the larger half. Holds at most `actions_max`
/// pending actions (`push_action` enforces it).
#[derive(Debug, Default)]
struct ActionQueue {
    /// Taken entries (`None`) before `head`, pending ones from `head` on.
    buf: Vec<Option<Action>>,
    head: usize,
}

impl ActionQueue {
    /// Taken entries kept before they are dropped from the front.
    const TAKEN_KEPT_MAX: usize = 1_024;

    fn with_capacity(n: usize) -> Self {
        ActionQueue { buf: Vec::with_capacity(n), head: 0 }
    }

    #[inline]
    fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    #[inline(always)]
    fn push_back(&mut self, a: Action) {
        self.buf.push(Some(a));
    }

    /// Appends the action `make` builds, building it only once its slot exists, so that it is
    /// written straight into the slot: built first and then moved, it goes through a temporary
    /// the compiler copies with wider loads than it was written with (a store-forwarding stall
    /// on the hot appends).
    #[inline(always)]
    fn push_with(&mut self, make: impl FnOnce() -> Action) {
        self.buf.push(None);
        if let Some(slot) = self.buf.last_mut() {
            *slot = Some(make());
        }
    }

    #[inline]
    fn pop_front(&mut self) -> Option<Action> {
        let a = self.buf.get_mut(self.head)?.take();
        debug_assert!(a.is_some(), "entries from head on are pending");
        self.head += 1;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head > Self::TAKEN_KEPT_MAX && self.head * 2 > self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        a
    }
}

/// Appends an action, enforcing `actions_max` (a free function so that callers holding a borrow of
/// a partition can push).
#[inline(always)]
fn push_action(actions: &mut ActionQueue, actions_max: usize, a: Action) {
    if actions.len() >= actions_max {
        actions_overflow(actions_max);
    }
    actions.push_back(a);
}

#[cold]
#[inline(never)]
fn actions_overflow(actions_max: usize) -> ! {
    panic!("pipeline action queue exceeded actions_max ({actions_max}): the driver must drain poll_action()")
}

/// What a dispatch walk does after visiting one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// Nothing buffered to hand out (or a run in flight, or revoking).
    Idle,
    /// Records buffered, but none handed out now (retry backoff, barrier) or a run handed out.
    Buffered,
    /// The rate limiter refused: the walk ends.
    Stop,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig, now_us: TimeUs) -> Self {
        assert!(cfg.workers >= 1, "workers must be at least 1");
        assert!(cfg.max_poll_records >= 1 && cfg.process_batch_max >= 1);
        assert!(cfg.buffer_records_max >= 1);
        assert!(cfg.record_bytes_max >= 1 && cfg.max_partition_fetch_bytes >= 1);
        assert!(cfg.buffer_bytes_max >= cfg.record_bytes_max, "the byte bound holds one record");
        assert!(
            cfg.retry_mode == RetryMode::Blocking || (1..=PARKED_RECORDS_MAX_LIMIT).contains(&cfg.parked_records_max),
            "non-blocking retries need parked_records_max within 1..={PARKED_RECORDS_MAX_LIMIT}"
        );
        assert!(cfg.commit_interval_ms >= 1 && cfg.sample_interval_ms >= 1);
        assert_eq!(cfg.tiers.len(), cfg.tier_names.len());
        let limiter = if cfg.tiers.is_empty() {
            None
        } else {
            Some(match &cfg.limiter_restore {
                Some(snaps) => MultiTier::restore(&cfg.tiers, snaps).with_bugs(cfg.bugs),
                None => MultiTier::new(&cfg.tiers, now_us).with_bugs(cfg.bugs),
            })
        };
        // Floating credits return to channels in chunks of a quarter poll (see `fetch`).
        let credits = Credits::new(cfg.credit)
            .with_bugs(cfg.bugs)
            .with_floating_grant_min(cfg.max_poll_records.div_ceil(FLOATING_GRANT_FRACTION_DEN));
        let ledger = Ledger::new(LEDGER_PENDING_RANGES_MAX).with_bugs(cfg.bugs);
        Pipeline {
            generation: 0,
            parts: PartMap::default(),
            zombie: BTreeMap::new(),
            old_positions: BTreeMap::new(),
            workers: vec![None; cfg.workers as usize],
            free_workers: cfg.workers,
            credits,
            pause: PauseControl::new(cfg.pause),
            limiter,
            limiter_wait_until: None,
            limiter_refused_reported: false,
            ledger,
            retry: RetryPolicy::new(cfg.retry),
            rng: SplitMix64(cfg.rng_seed),
            actions: ActionQueue::with_capacity(64),
            pending_revoke: None,
            buffered_total: 0,
            reserved_total: 0,
            buffered_bytes_total: 0,
            reserved_bytes_total: 0,
            stats: Stats::default(),
            now_us,
            last_poll_us: now_us,
            next_commit_us: now_us + cfg.commit_interval_ms * 1_000,
            next_sample_us: now_us + cfg.sample_interval_ms * 1_000,
            acc: TimeAcc::default(),
            acc_since_us: now_us,
            blocked: false,
            grants: Vec::new(),
            dirty: Vec::new(),
            cursor: None,
            cursor_split: None,
            zombie_scratch: Vec::new(),
            coordinator: Coordinator::new(STAGES),
            align: None,
            stale_fetches: BTreeSet::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    pub fn handle(&mut self, now_us: TimeUs, input: Input<'_>) {
        self.advance(now_us);
        match input {
            Input::Assigned { generation, tps } => self.on_assigned(generation, tps),
            Input::Revoke { generation, tps } => self.on_revoke(generation, tps),
            Input::Lost { tps } => {
                if tps.iter().any(|tp| self.in_checkpoint(*tp)) {
                    self.abort_checkpoint();
                }
                for tp in tps {
                    self.drop_part(*tp);
                }
                // A revocation waiting on these partitions no longer can commit them.
                if let Some(p) = &mut self.pending_revoke {
                    p.tps.retain(|tp| !tps.contains(tp));
                }
            }
            Input::Fetched { tp, offset, count, bytes, hw } => self.on_fetched(tp, offset, count, bytes, hw),
            Input::FetchEmpty { tp, hw } => {
                let strategy_credit = self.cfg.strategy == Strategy::Credit;
                if !self.parts.contains_key(&tp) {
                    self.stale_fetches.remove(&tp);
                }
                if let Some(p) = self.parts.get_mut(&tp) {
                    p.fetch_outstanding = false;
                    self.reserved_total -= p.fetch_requested as u64;
                    p.fetch_requested = 0;
                    self.reserved_bytes_total -= p.fetch_requested_bytes;
                    p.fetch_requested_bytes = 0;
                    if let Some(hw) = hw {
                        p.hw = p.hw.max(hw);
                    }
                    if strategy_credit {
                        let backlog = p.hw.saturating_sub(p.fetch_pos);
                        self.credits.announce_backlog(tp, backlog);
                    }
                    self.sync_sets(tp);
                }
            }
            Input::ProcessDone { worker, ok } => self.on_process_done(worker, ok),
            Input::CommitDone { tp, offset, outcome } => {
                match outcome {
                    CommitOutcome::Acked => self.ledger.commit_acked(tp, offset),
                    CommitOutcome::Failed => self.ledger.commit_failed(tp, offset, false),
                    CommitOutcome::Unknown => self.ledger.commit_failed(tp, offset, true),
                }
                if let Some(p) = self.parts.get_mut(&tp) {
                    p.revoke_commit_pending = false;
                }
            }
            Input::DeadLetterDone { tp, offset } => {
                // The record left the buffer when it was sent to the DLQ; it is done now.
                ledger_done(&mut self.ledger, &mut self.stats, tp, offset, 1);
                self.check_arrival(tp);
            }
            Input::Tick => {}
        }
        self.drive();
    }

    // Not `#[inline]`: inlined into a driver's loop, the action is copied out of the queue with
    // wider loads than it was stored with; the pipeline-step benchmark measured 63 ns against 50 ns
    // (a store-forwarding stall), although callgrind counted 3 % fewer instructions.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<TimeUs> {
        let mut t = self.next_commit_us.min(self.next_sample_us);
        if let Some(w) = self.limiter_wait_until {
            t = t.min(w);
        }
        if self.free_workers > 0 {
            for p in self.parts.values() {
                if let Some((_, _, at)) = p.retry {
                    if !p.in_flight {
                        t = t.min(at);
                    }
                }
                if let Some(first) = p.parked.first() {
                    if !p.in_flight {
                        t = t.min(first.not_before_us);
                    }
                }
            }
        }
        Some(t.max(self.now_us))
    }

    pub fn last_poll_us(&self) -> TimeUs {
        self.last_poll_us
    }

    /// The records of a fetch reply (`count` records of `tp` from `offset`) that the pipeline would
    /// take into its buffer, as `(first offset, count)`; `None` when it takes none: a partition not
    /// owned or being revoked, no fetch outstanding (a second reply to one request), the reply to a
    /// previous incarnation's fetch that lies ahead of where this incarnation starts, or records it
    /// already holds. A reply is clipped to what its fetch asked for. A driver records (as a
    /// history `fetch`) only what the pipeline takes; the rest is discarded as a client discards a
    /// reply to a fetch of an older assignment.
    pub fn fetch_take(&self, tp: Tp, offset: Offset, count: u32) -> Option<(Offset, u32)> {
        let p = self.parts.get(&tp)?;
        if p.revoking || !p.fetch_outstanding || (p.stale_fetch && offset > p.fetch_pos) {
            return None;
        }
        let mut count = count.min(p.fetch_requested);
        let mut offset = offset;
        if offset < p.fetch_pos {
            let skip = (p.fetch_pos - offset).min(count as u64) as u32;
            offset += skip as u64;
            count -= skip;
        }
        (count > 0).then_some((offset, count))
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.buffered_records = self.buffered_total;
        s.buffered_bytes = self.buffered_bytes_total;
        s.credits_outstanding = self.credits.outstanding();
        s.busy_workers = self.cfg.workers - self.free_workers;
        s.owned_partitions = self.parts.len() as u32;
        s.paused_partitions = self.parts.values().filter(|p| p.paused).count() as u32;
        s
    }

    pub fn owned(&self) -> Vec<Tp> {
        self.parts.keys().copied().collect()
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The committed offset the ledger knows for `tp` (last acknowledged commit).
    pub fn committed(&self, tp: Tp) -> Option<Offset> {
        self.ledger.committed(tp)
    }

    // ----- internals -------------------------------------------------------------------------

    #[inline]
    fn push(&mut self, a: Action) {
        push_action(&mut self.actions, self.cfg.actions_max, a);
    }

    /// [`Pipeline::push`] for the hot appends: the action is built in its slot (see
    /// [`ActionQueue::push_with`]).
    #[inline(always)]
    fn push_with(&mut self, make: impl FnOnce() -> Action) {
        if self.actions.len() >= self.cfg.actions_max {
            actions_overflow(self.cfg.actions_max);
        }
        self.actions.push_with(make);
    }

    #[inline]
    fn push_grants(&mut self) {
        for k in 0..self.grants.len() {
            let g = self.grants[k];
            self.push_with(|| Action::CreditGrant { tp: g.tp, n: g.n, floating: g.floating });
            // Credits arrived: a partition that found none may fetch again.
            if let Some(i) = self.parts.pos(&g.tp) {
                let p = &mut self.parts.entries[i].1;
                if p.starved {
                    p.starved = false;
                    self.sync_sets_at(i);
                }
            }
        }
        self.grants.clear();
    }

    /// Accounts worker time up to `now_us` and emits the periodic samples that fall due.
    #[inline]
    fn advance(&mut self, now_us: TimeUs) {
        let now_us = now_us.max(self.now_us);
        while self.next_sample_us <= now_us {
            let boundary = self.next_sample_us;
            self.account(boundary);
            self.emit_samples();
            self.next_sample_us += self.cfg.sample_interval_ms * 1_000;
        }
        self.account(now_us);
        self.now_us = now_us;
    }

    #[inline]
    fn account(&mut self, until_us: TimeUs) {
        if until_us <= self.acc_since_us {
            return;
        }
        let dt = until_us - self.acc_since_us;
        let busy = (self.cfg.workers - self.free_workers) as u64;
        let free = self.free_workers as u64;
        self.acc.busy += busy * dt;
        if self.blocked {
            self.acc.back_pressured += free * dt;
        } else {
            self.acc.idle += free * dt;
        }
        self.acc_since_us = until_us;
    }

    fn emit_samples(&mut self) {
        let total = self.acc.busy + self.acc.back_pressured + self.acc.idle;
        if total > 0 {
            let per_s = |x: u64| ((x as u128 * 1_000 + total as u128 / 2) / total as u128) as u32;
            let busy = per_s(self.acc.busy);
            let bp = per_s(self.acc.back_pressured);
            let idle = 1_000u32.saturating_sub(busy + bp);
            self.push(Action::Metrics { back_pressured_ms_per_s: bp, busy_ms_per_s: busy, idle_ms_per_s: idle });
        }
        self.acc = TimeAcc::default();
        let records = self.buffered_total;
        let bytes = self.buffered_bytes_total;
        let credits_outstanding = self.credits.outstanding();
        self.push(Action::Buffer { records, bytes, credits_outstanding });
    }

    fn on_assigned(&mut self, generation: Generation, tps: &[(Tp, Offset)]) {
        self.generation = self.generation.max(generation);
        for &(tp, committed) in tps {
            if self.parts.contains_key(&tp) {
                continue; // cooperative: already owned, keeps its state
            }
            // A zombie (ProcessRevoked bug) partition coming back becomes owned again, afresh:
            // its run still on a worker and its buffered records belong to the zombie.
            if let Some(z) = self.zombie.remove(&tp) {
                for job in self.workers.iter_mut().flatten() {
                    if job.tp == tp {
                        job.void = true;
                    }
                }
                self.buffered_total -= z.buffered;
                self.buffered_bytes_total -= z.buffered_bytes;
            }
            let start = if self.cfg.bugs.has(Bug::NoSeekOnAssign) {
                self.old_positions.get(&tp).copied().unwrap_or(committed).max(committed)
            } else {
                committed
            };
            self.ledger.track(tp, start);
            if self.cfg.strategy == Strategy::Credit {
                match self.credits.add_channel(tp) {
                    Ok(g) => self.push(Action::CreditGrant { tp, n: g.n, floating: g.floating }),
                    Err(e) => panic!("credit channel for {tp} refused: {e:?} (the spec's validation guarantees room)"),
                }
            }
            let paused = self.uses_pause() && self.pause.on_assigned(tp);
            self.parts.insert(
                tp,
                Part {
                    fetch_pos: start,
                    fetch_requested: 0,
                    fetch_requested_bytes: 0,
                    fetch_outstanding: false,
                    buffer: VecDeque::new(),
                    buffered: 0,
                    buffered_bytes: 0,
                    in_flight: false,
                    retry: None,
                    parked: Vec::new(),
                    paused,
                    starved: false,
                    barrier: None,
                    in_ready: false,
                    in_fetchable: false,
                    stale_fetch: self.stale_fetches.remove(&tp),
                    revoking: false,
                    revoke_commit_pending: false,
                    hw: start,
                },
            );
            self.sync_sets(tp);
            self.push(Action::Seek { tp, offset: start });
            if paused {
                self.push(Action::Pause { tp });
            }
        }
    }

    /// Whether the fetch walk sizes fetches by credits (and so marks partitions without any as
    /// starved): the credit strategy, its credits heeded, the buffer bounded.
    #[inline]
    fn fetch_checks_credits(&self) -> bool {
        self.cfg.strategy == Strategy::Credit && !self.cfg.bugs.has(Bug::IgnoreCredits) && !self.cfg.bugs.has(Bug::UnboundedBuffer)
    }

    fn uses_pause(&self) -> bool {
        self.cfg.strategy == Strategy::Pause && !self.cfg.bugs.has(Bug::UnboundedBuffer)
    }

    fn on_revoke(&mut self, generation: Generation, tps: &[Tp]) {
        let tps: Vec<Tp> = tps.iter().copied().filter(|tp| self.parts.contains_key(tp)).collect();
        if tps.iter().any(|tp| self.in_checkpoint(*tp)) {
            self.abort_checkpoint();
        }
        if self.cfg.bugs.has(Bug::ProcessRevoked) && self.cfg.protocol == Protocol::Eager {
            // Planted: acknowledge at once and keep processing what is buffered.
            for tp in &tps {
                if let Some(mut p) = self.parts.remove(tp) {
                    self.ledger.untrack(*tp);
                    if self.cfg.strategy == Strategy::Credit {
                        let n = self.credits.remove_channel(*tp);
                        if n > 0 {
                            self.push(Action::CreditReturn { tp: *tp, n });
                        }
                    }
                    p.revoking = false;
                    self.zombie.insert(*tp, p);
                    self.sync_sets(*tp);
                }
            }
            self.push(Action::RevokeDone { generation, tps });
            return;
        }
        for tp in &tps {
            if let Some(p) = self.parts.get_mut(tp) {
                p.revoking = true;
            }
            self.sync_sets(*tp);
        }
        // A second revoke while one is pending joins it (the later generation answers).
        match &mut self.pending_revoke {
            Some(p) => {
                p.generation = generation;
                for tp in tps {
                    if !p.tps.contains(&tp) {
                        p.tps.push(tp);
                    }
                }
            }
            None => self.pending_revoke = Some(PendingRevoke { generation, tps, committed: Vec::new() }),
        }
    }

    /// Finishes a pending revocation once nothing of its partitions is in flight: commit (K1),
    /// wait for the outcome, then give them up.
    fn progress_revoke(&mut self) {
        let Some(mut pr) = self.pending_revoke.take() else { return };
        let mut waiting = false;
        for tp in &pr.tps {
            if let Some(p) = self.parts.get(tp) {
                if p.in_flight {
                    waiting = true;
                }
            }
        }
        if waiting {
            self.pending_revoke = Some(pr);
            return;
        }
        // Send the commits on revoke once.
        let mut sent_any = false;
        for tp in &pr.tps {
            let Some(p) = self.parts.get(tp) else { continue };
            if p.revoke_commit_pending {
                sent_any = true;
                continue;
            }
        }
        if !sent_any {
            let mut to_commit = Vec::new();
            // Aligned mode commits only the barrier offsets of complete checkpoints: a revoked
            // partition's next owner replays from the last complete checkpoint.
            if !self.cfg.bugs.has(Bug::NoCommitOnRevoke) && self.cfg.checkpoint == CheckpointMode::Periodic {
                for tp in &pr.tps {
                    let attempts = pr.committed.iter().find(|(t, _)| t == tp).map_or(0, |(_, n)| *n);
                    if !self.parts.contains_key(tp) || attempts >= REVOKE_COMMIT_ATTEMPTS_MAX {
                        continue;
                    }
                    if let Some(off) = self.commit_offset(*tp) {
                        let last = self.ledger.committed(*tp);
                        if last.is_none_or(|c| off > c) {
                            to_commit.push((*tp, off));
                        }
                    }
                }
            }
            if self.cfg.checkpoint == CheckpointMode::Aligned {
                // A checkpoint's commit still in flight is waited for, so the next owner starts
                // from it.
                for tp in &pr.tps {
                    if self.ledger.in_flight(*tp).is_some() {
                        if let Some(p) = self.parts.get_mut(tp) {
                            p.revoke_commit_pending = true;
                        }
                    }
                }
            }
            for (tp, off) in to_commit {
                match pr.committed.iter_mut().find(|(t, _)| *t == tp) {
                    Some((_, n)) => *n += 1,
                    None => pr.committed.push((tp, 1)),
                }
                self.ledger.commit_sent(tp, off);
                if let Some(p) = self.parts.get_mut(&tp) {
                    p.revoke_commit_pending = true;
                }
                self.push(Action::Commit { generation: self.generation, tp, offset: off });
            }
        }
        let still = pr.tps.iter().any(|tp| self.parts.get(tp).is_some_and(|p| p.revoke_commit_pending));
        if still {
            self.pending_revoke = Some(pr);
            return;
        }
        for tp in &pr.tps {
            if let Some(p) = self.parts.get(tp) {
                self.old_positions.insert(*tp, p.fetch_pos);
            }
            self.drop_part(*tp);
        }
        self.push(Action::RevokeDone { generation: pr.generation, tps: pr.tps });
    }

    /// Gives a partition up: drops its buffered records (the next owner re-fetches them from the
    /// committed offset), returns its credits, stops tracking it.
    fn drop_part(&mut self, tp: Tp) {
        // A run of this partition still on a worker belongs to the incarnation being dropped: its
        // records' buffer space and credits are returned below, and its outcome must not count
        // against a later incarnation if the partition comes back before it finishes.
        for job in self.workers.iter_mut().flatten() {
            if job.tp == tp {
                job.void = true;
            }
        }
        let Some(p) = self.parts.remove(&tp) else {
            self.zombie.remove(&tp);
            return;
        };
        self.sync_sets(tp);
        if p.fetch_outstanding {
            self.stale_fetches.insert(tp);
        }
        self.old_positions.insert(tp, p.fetch_pos);
        self.buffered_total -= p.buffered;
        self.reserved_total -= p.fetch_requested as u64;
        self.buffered_bytes_total -= p.buffered_bytes;
        self.reserved_bytes_total -= p.fetch_requested_bytes;
        self.ledger.untrack(tp);
        if self.cfg.strategy == Strategy::Credit {
            let n = self.credits.remove_channel(tp);
            if n > 0 {
                self.push(Action::CreditReturn { tp, n });
            }
            // Buffered records of the closed channel give their space back.
            if p.buffered > 0 {
                self.credits.discard(tp, p.buffered as u32);
            }
        }
        self.level_changed();
    }

    fn on_fetched(&mut self, tp: Tp, offset: Offset, count: u32, bytes: u64, hw: Offset) {
        let Some(i) = self.parts.pos(&tp) else {
            self.stale_fetches.remove(&tp); // the reply of a fetch of a partition given up
            return;
        };
        self.take_fetched(i, tp, offset, count, bytes, hw);
        self.sync_sets_at(i);
    }

    /// Takes a fetch reply for the partition at position `i` of the table into its buffer.
    fn take_fetched(&mut self, i: usize, tp: Tp, offset: Offset, count: u32, bytes: u64, hw: Offset) {
        let credit = self.cfg.strategy == Strategy::Credit;
        let fetch_checks_credits = self.fetch_checks_credits();
        let p = &mut self.parts.entries[i].1;
        if p.stale_fetch && offset > p.fetch_pos {
            // The reply to the previous incarnation's fetch, ahead of where this one starts:
            // taking it would skip records. It is not this incarnation's reply: change nothing.
            p.stale_fetch = false;
            return;
        }
        let requested = p.fetch_requested;
        let requested_bytes = p.fetch_requested_bytes;
        p.fetch_outstanding = false;
        self.reserved_total -= requested as u64;
        p.fetch_requested = 0;
        self.reserved_bytes_total -= requested_bytes;
        p.fetch_requested_bytes = 0;
        p.hw = p.hw.max(hw);
        if p.revoking || count == 0 {
            return;
        }
        debug_assert!(count == 1 || bytes <= requested_bytes.max(self.cfg.max_partition_fetch_bytes), "a reply holds at most max_bytes, or one record");
        let bytes = if self.cfg.bugs.has(Bug::UndercountBytes) { bytes / 2 } else { bytes };
        // Never accept more than was asked for (the bound the fetch was sized by).
        let mut bytes = share_bytes(bytes, count, count.min(requested));
        let mut count = count.min(requested);
        let mut offset = offset;
        if offset < p.fetch_pos {
            // Overlap with what we already hold: keep only the new tail.
            let skip = (p.fetch_pos - offset).min(count as u64) as u32;
            offset += skip as u64;
            bytes = share_bytes(bytes, count, count - skip);
            count -= skip;
            if count == 0 {
                return;
            }
        }
        if credit {
            // The records taken use credits (C1); the channel then announces the backlog left
            // behind them at the broker.
            let hw = p.hw;
            let backlog = |count: u32| hw.saturating_sub(offset + count as u64);
            let left = match self.credits.consume_and_announce(tp, count, backlog(count)) {
                Ok(left) => left,
                Err(_e) => {
                    // Only the credits we hold may be used (C1): keep what they cover.
                    let avail = self.credits.available(tp);
                    bytes = share_bytes(bytes, count, count.min(avail));
                    count = count.min(avail);
                    if count == 0 {
                        return;
                    }
                    self.credits.consume_and_announce(tp, count, backlog(count)).expect("consume within available")
                }
            };
            if left == 0 && fetch_checks_credits {
                // No credits left: this step's fetch walk would find none for the partition and
                // mark it starved (nothing between here and the walk changes its credits); mark it
                // now, so the walk need not visit it. A grant (push_grants) lets it fetch again.
                p.starved = true;
            }
        }
        p.fetch_pos = offset + count as u64;
        match p.buffer.back_mut() {
            Some((o, c)) if *o + *c as u64 == offset => *c += count,
            _ => p.buffer.push_back((offset, count)),
        }
        p.buffered += count as u64;
        self.buffered_total += count as u64;
        p.buffered_bytes += bytes;
        self.buffered_bytes_total += bytes;
        if self.buffered_total > self.stats.buffered_records_peak {
            self.stats.buffered_records_peak = self.buffered_total;
        }
        if self.buffered_bytes_total > self.stats.buffered_bytes_peak {
            self.stats.buffered_bytes_peak = self.buffered_bytes_total;
        }
        self.level_changed();
    }

    #[inline]
    fn level_changed(&mut self) {
        if self.uses_pause() {
            self.pause_level_changed();
        }
    }

    fn pause_level_changed(&mut self) {
        if let Some(t) = self.pause.on_level(self.buffered_total) {
            let paused = t == Toggle::Pause;
            let tps: Vec<Tp> = self.parts.iter().filter(|(_, p)| p.paused != paused).map(|(tp, _)| *tp).collect();
            for tp in tps {
                self.parts.get_mut(&tp).expect("owned").paused = paused;
                self.push(if paused { Action::Pause { tp } } else { Action::Resume { tp } });
            }
        }
    }

    fn on_process_done(&mut self, worker: u32, ok: u32) {
        // Read the run, then free its worker (a copy of the fields, not a move of the whole
        // `Option<Job>` through memory).
        let Some(&Some(job)) = self.workers.get(worker as usize) else {
            return; // unknown or already free: a stale answer
        };
        self.workers[worker as usize] = None;
        self.free_workers += 1;
        assert!(ok <= job.count, "ProcessDone reports more ok records than the run had");
        if job.void {
            self.stats.stale_completions += 1;
            return;
        }
        let credit = self.cfg.strategy == Strategy::Credit;
        // Positions in the partition table stay put until ownership changes, which nothing below
        // does: look the partition up once.
        let pos = self.parts.pos(&job.tp);
        let owned = pos.is_some();
        let p = match pos {
            Some(i) => &mut self.parts.entries[i].1,
            None => match self.zombie.get_mut(&job.tp) {
                Some(p) => p,
                None => return, // lost meanwhile: results are void
            },
        };
        p.in_flight = false;
        // The run was taken off the buffer front when it started; what failed goes back in front.
        if ok > 0 {
            if owned {
                ledger_done(&mut self.ledger, &mut self.stats, job.tp, job.offset, ok);
            }
            self.stats.processed_records += ok as u64;
        }
        let mut released = ok as u64;
        if ok < job.count {
            let failed = job.offset + ok as u64;
            let rest = job.count - ok - 1;
            if rest > 0 {
                p.buffer.push_front((failed + 1, rest));
            }
            match self.retry.on_failure(job.attempt, self.now_us, &mut self.rng) {
                Verdict::RetryAt { at_us, attempt } => match self.cfg.retry_mode {
                    RetryMode::Blocking => {
                        p.buffer.push_front((failed, 1));
                        p.retry = Some((failed, attempt, at_us));
                    }
                    RetryMode::NonBlocking => {
                        // Parked: out of the buffer's order, still in its count (its space and
                        // credit are held until it is done), and holding the commit back (the
                        // ledger's prefix stops at it).
                        let pk = Parked { not_before_us: at_us, offset: failed, attempt };
                        let at = p.parked.partition_point(|q| *q < pk);
                        p.parked.insert(at, pk);
                        assert!(
                            p.parked.len() <= self.cfg.parked_records_max as usize,
                            "{} parked records on {} above parked_records_max {}",
                            p.parked.len(),
                            job.tp,
                            self.cfg.parked_records_max
                        );
                    }
                },
                Verdict::DeadLetter { attempts } => {
                    p.retry = None;
                    released += 1;
                    if self.cfg.bugs.has(Bug::DropAfterRetries) {
                        if owned {
                            ledger_done(&mut self.ledger, &mut self.stats, job.tp, failed, 1);
                        }
                    } else {
                        self.stats.dead_lettered_records += 1;
                        self.actions.push_back(Action::DeadLetter { tp: job.tp, offset: failed, attempts });
                    }
                }
            }
        } else {
            p.retry = None;
        }
        let released_bytes = if released == p.buffered { p.buffered_bytes } else { share_bytes(p.buffered_bytes, p.buffered, released) };
        p.buffered_bytes -= released_bytes;
        self.buffered_bytes_total -= released_bytes;
        p.buffered -= released;
        self.buffered_total -= released;
        if p.buffered == 0 && p.starved {
            // Starved for too few credits while its records were buffered: with none left, it
            // fetches whatever it holds (no grant need wake it, see `fetch`).
            p.starved = false;
        }
        if credit && owned && released > 0 {
            self.credits.release(job.tp, released as u32, &mut self.grants);
            self.push_grants();
        }
        if let Some(i) = pos {
            self.sync_sets_at(i);
            self.check_arrival(job.tp);
        }
        self.level_changed();
    }

    fn in_checkpoint(&self, tp: Tp) -> bool {
        self.align.as_ref().is_some_and(|a| a.tps.binary_search(&tp).is_ok())
    }

    /// Triggers an aligned checkpoint: the fetch stage places a barrier at the end of every owned
    /// partition's buffer (a control item: no credit, no buffer slot) and acknowledges at once.
    fn trigger_checkpoint(&mut self) {
        if self.align.is_some() || self.pending_revoke.is_some() {
            return; // one aligns at a time; none during a revocation
        }
        let tps: Vec<Tp> = self.parts.iter().filter(|(_, p)| !p.revoking).map(|(tp, _)| *tp).collect();
        if tps.is_empty() {
            return;
        }
        let id = self.coordinator.trigger();
        self.push(Action::Checkpoint { id, edge: CheckpointEdge::Start });
        let mut barriers = Vec::with_capacity(tps.len());
        for &tp in &tps {
            let p = self.parts.get_mut(&tp).expect("owned");
            let b = p.fetch_pos;
            p.barrier = Some(b);
            barriers.push(b);
            self.push(Action::Barrier { id, tp, offset: b });
        }
        let acked = self.coordinator.ack(STAGE_FETCH, id);
        assert!(!acked, "checkpoint {id} complete before the worker stage acknowledged it");
        let n = tps.len();
        self.align = Some(Align { id, tps: tps.clone(), barriers, arrived: vec![false; n], aligner: Aligner::new(n) });
        for &tp in &tps {
            self.sync_sets(tp);
            self.check_arrival(tp);
        }
    }

    /// The worker stage sees `tp`'s barrier once every record before it is done (processed or
    /// dead-lettered); when it has seen all barriers (aligned) it acknowledges, which completes the
    /// checkpoint.
    #[inline]
    fn check_arrival(&mut self, tp: Tp) {
        if self.align.is_some() {
            self.check_barrier_arrival(tp);
        }
    }

    fn check_barrier_arrival(&mut self, tp: Tp) {
        let Some(al) = &mut self.align else { return };
        let Ok(i) = al.tps.binary_search(&tp) else { return };
        if al.arrived[i] {
            return;
        }
        let prefix = self.ledger.committable(tp);
        if prefix.is_none_or(|d| d < al.barriers[i]) {
            return;
        }
        al.arrived[i] = true;
        let aligned = match al.aligner.on_barrier(i, al.id) {
            Ok(a) => a,
            Err(e) => panic!("checkpoint {} barrier on {tp}: {e}", al.id),
        };
        if aligned.is_some() {
            let id = al.id;
            let complete = self.coordinator.ack(STAGE_WORKER, id);
            assert!(complete, "checkpoint {id} aligned and acknowledged by every stage but not complete");
            self.complete_checkpoint();
        }
    }

    /// Commits exactly the barrier offsets of the completed checkpoint and unblocks its channels.
    fn complete_checkpoint(&mut self) {
        let al = self.align.take().expect("a checkpoint is aligning");
        self.push(Action::Checkpoint { id: al.id, edge: CheckpointEdge::Complete });
        self.stats.checkpoints_completed += 1;
        for (&tp, &b) in al.tps.iter().zip(&al.barriers) {
            let Some(p) = self.parts.get_mut(&tp) else { continue };
            p.barrier = None;
            let off = if self.cfg.bugs.has(Bug::CommitBeforeProcess) { p.fetch_pos } else { b };
            let newer = self.ledger.committed(tp).is_none_or(|c| off > c) && self.ledger.in_flight(tp).is_none_or(|f| off > f);
            if newer {
                self.ledger.commit_sent(tp, off);
                self.push(Action::Commit { generation: self.generation, tp, offset: off });
            }
            self.sync_sets(tp);
        }
    }

    /// Abandons the checkpoint being aligned (a channel was revoked or lost): nothing is committed
    /// for it, every channel is unblocked, and the next trigger starts a fresh one.
    fn abort_checkpoint(&mut self) {
        let Some(al) = self.align.take() else { return };
        self.push(Action::Checkpoint { id: al.id, edge: CheckpointEdge::Aborted });
        self.stats.checkpoints_aborted += 1;
        for &tp in &al.tps {
            if let Some(p) = self.parts.get_mut(&tp) {
                p.barrier = None;
            }
            self.sync_sets(tp);
        }
    }

    /// Puts `tp` into or takes it out of the dispatch and fetch ready-sets according to its state.
    /// Called after every change of `buffer`, `in_flight`, `revoking`, `fetch_outstanding`,
    /// `starved`, `barrier` or ownership (a partition no longer owned left the sets when the table
    /// was rebuilt).
    #[inline]
    fn sync_sets(&mut self, tp: Tp) {
        if let Some(i) = self.parts.pos(&tp) {
            self.sync_sets_at(i);
        }
    }

    /// [`Pipeline::sync_sets`] for the partition at position `i` of the table.
    #[inline]
    fn sync_sets_at(&mut self, i: usize) {
        let overtakes = self.cfg.bugs.has(Bug::BarrierOvertakes);
        let parts = &mut self.parts;
        let p = &mut parts.entries[i].1;
        let (ready, fetchable) = (p.ready(overtakes), p.fetchable());
        if ready != p.in_ready {
            p.in_ready = ready;
            if ready {
                parts.ready.insert(i);
            } else {
                parts.ready.remove(i);
            }
        }
        if fetchable != p.in_fetchable {
            p.in_fetchable = fetchable;
            if fetchable {
                parts.fetchable.insert(i);
            } else {
                parts.fetchable.remove(i);
            }
        }
    }

    /// The offset to commit for `tp` now: the ledger's processed prefix + 1 (K1), or under the
    /// CommitBeforeProcess bug the fetch position.
    fn commit_offset(&self, tp: Tp) -> Option<Offset> {
        if self.cfg.bugs.has(Bug::CommitBeforeProcess) {
            return self.parts.get(&tp).map(|p| p.fetch_pos);
        }
        self.ledger.committable(tp)
    }

    /// Decides what to do next: revocations, dispatch to workers, fetches, commits.
    fn drive(&mut self) {
        if self.pending_revoke.is_some() {
            self.progress_revoke();
        }
        self.dispatch();
        self.fetch();
        if self.now_us >= self.next_commit_us {
            match self.cfg.checkpoint {
                CheckpointMode::Periodic => self.periodic_commit(),
                CheckpointMode::Aligned => self.trigger_checkpoint(),
            }
            while self.next_commit_us <= self.now_us {
                self.next_commit_us += self.cfg.commit_interval_ms * 1_000;
            }
        }
        // Below the grant minimum there is nothing to lend (`grant_floating` would return at once).
        if self.credits_floating_enabled() && self.credits.may_lend() {
            self.credits.grant_floating(&mut self.grants);
            if !self.grants.is_empty() {
                self.push_grants();
                self.fetch();
            }
        }
        debug_assert!(self.sets_consistent(), "ready-sets out of step with the partitions' state");
    }

    /// The ready-sets equal what a walk over every partition would find, and the parts' membership
    /// flags say the same (checked in debug builds after every step).
    fn sets_consistent(&self) -> bool {
        let overtakes = self.cfg.bugs.has(Bug::BarrierOvertakes);
        let n = self.parts.len();
        self.parts.ready.consistent(n)
            && self.parts.fetchable.consistent(n)
            && self.parts.entries.iter().enumerate().all(|(i, (_, p))| {
                let (ready, fetchable) = (p.ready(overtakes), p.fetchable());
                self.parts.ready.contains(i) == ready && p.in_ready == ready && self.parts.fetchable.contains(i) == fetchable && p.in_fetchable == fetchable
            })
    }

    fn credits_floating_enabled(&self) -> bool {
        self.cfg.strategy == Strategy::Credit && self.cfg.credit.floating_max > 0
    }

    fn periodic_commit(&mut self) {
        self.dirty.clear();
        if self.cfg.bugs.has(Bug::CommitBeforeProcess) {
            for (tp, p) in self.parts.iter() {
                if !p.revoking && self.ledger.committed(*tp).is_none_or(|c| p.fetch_pos > c) {
                    self.dirty.push((*tp, p.fetch_pos));
                }
            }
        } else {
            self.ledger.dirty(&mut self.dirty);
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &(tp, off) in &dirty {
            if self.parts.get(&tp).is_some_and(|p| p.revoking) {
                continue; // the revoke commits it
            }
            self.ledger.commit_sent(tp, off);
            self.push(Action::Commit { generation: self.generation, tp, offset: off });
        }
        self.dirty = dirty;
    }

    /// Hands runs to free workers, round-robin over partitions, one run per partition at a time.
    fn dispatch(&mut self) {
        self.blocked = false;
        if self.free_workers == 0 {
            return;
        }
        let now = self.now_us;
        if let Some(w) = self.limiter_wait_until {
            if now < w {
                self.blocked = self.has_work();
                return;
            }
            self.limiter_wait_until = None;
        }
        if self.parts.ready.is_empty() && self.zombie.is_empty() {
            // Nothing to hand out: the application is polling for more.
            self.last_poll_us = now;
            return;
        }
        let mut any_buffered = false;
        let mut stopped = false;
        // Visit the ready partitions starting after the cursor, wrapping around once (round-robin
        // over partitions: the ready-set holds exactly the owned partitions the full walk would not
        // skip, in the same order); zombies (planted bug only) last. A partition handed a run
        // leaves the ready-set at once; that never moves the walk, which goes by position.
        let n = self.parts.len();
        let split = match (self.cursor, self.cursor_split) {
            (None, _) => 0,
            (Some(_), Some((layout, split))) if layout == self.parts.layout => split,
            (Some(c), _) => self.parts.entries.partition_point(|(t, _)| *t <= c),
        };
        debug_assert_eq!(split, self.cursor.map_or(0, |c| self.parts.entries.partition_point(|(t, _)| *t <= c)));
        for (from, end) in [(split, n), (0, split)] {
            let mut at = from;
            while self.free_workers > 0 {
                let Some(i) = self.parts.ready.next_in(at, end) else { break };
                at = i + 1;
                match self.visit(Some(i), self.parts.entries[i].0) {
                    Visit::Idle => {}
                    Visit::Buffered => any_buffered = true,
                    Visit::Stop => {
                        any_buffered = true;
                        stopped = true;
                        break;
                    }
                }
            }
            if stopped {
                break;
            }
        }
        if !stopped && self.free_workers > 0 && !self.zombie.is_empty() {
            let mut zombies = std::mem::take(&mut self.zombie_scratch);
            zombies.clear();
            zombies.extend(self.zombie.keys().copied());
            for &tp in &zombies {
                if self.free_workers == 0 {
                    break;
                }
                match self.visit(None, tp) {
                    Visit::Idle => {}
                    Visit::Buffered => any_buffered = true,
                    Visit::Stop => {
                        any_buffered = true;
                        break;
                    }
                }
            }
            self.zombie_scratch = zombies;
        }
        if !any_buffered && self.free_workers > 0 {
            // Nothing to hand out: the application is polling for more.
            self.last_poll_us = now;
        }
    }

    /// One partition of a dispatch walk: the owned one at position `pos`, or (`None`) the zombie
    /// `tp`. Hands its next run to a free worker when the retry backoff, the checkpoint barrier and
    /// the rate limiter let it.
    fn visit(&mut self, pos: Option<usize>, tp: Tp) -> Visit {
        let now = self.now_us;
        let zombie = pos.is_none();
        let p = match pos {
            Some(i) => &self.parts.entries[i].1,
            None => match self.zombie.get(&tp) {
                Some(p) => p,
                None => return Visit::Idle,
            },
        };
        if p.in_flight || (p.buffer.is_empty() && p.parked.is_empty()) || (p.revoking && !zombie) {
            return Visit::Idle;
        }
        // Non-blocking retries: a parked record whose backoff is over goes first; otherwise the
        // buffer front, unless the parked set is full (backpressure) or the buffer is empty.
        let mut from_parked = false;
        let (offset, avail, attempt) = match p.retry {
            Some((off, attempt, at)) => {
                if now < at {
                    self.blocked = true;
                    return Visit::Buffered;
                }
                (off, 1, attempt)
            }
            None => match p.parked.first() {
                Some(first) if now >= first.not_before_us => {
                    from_parked = true;
                    (first.offset, 1, first.attempt)
                }
                Some(_) if p.buffer.is_empty() || p.parked.len() >= self.cfg.parked_records_max as usize => {
                    self.blocked = true;
                    return Visit::Buffered;
                }
                _ => {
                    let (o, c) = *p.buffer.front().expect("non-empty");
                    (o, c.min(self.cfg.process_batch_max), 1)
                }
            },
        };
        let mut n = avail;
        // Records behind the barrier of the checkpoint aligning wait for it to complete (K3).
        if let Some(b) = p.barrier {
            debug_assert!(!from_parked || offset < b, "a parked record lies before the barrier");
            if !self.cfg.bugs.has(Bug::BarrierOvertakes) {
                if offset >= b {
                    return Visit::Buffered;
                }
                n = n.min((b - offset).min(u32::MAX as u64) as u32);
            }
        }
        if let Some(lim) = &mut self.limiter {
            let path = &self.cfg.tier_paths[tp.topic as usize];
            if !path.is_empty() {
                let can = lim.available(path, now);
                if can == 0 {
                    if let Admit::Refused { tier, retry_at_us } = lim.admit(path, 1, now) {
                        if !self.limiter_refused_reported {
                            self.limiter_refused_reported = true;
                            self.actions.push_back(Action::Token { tier, n: 1, admitted: false });
                        }
                        self.limiter_wait_until = Some(retry_at_us.unwrap_or(now + 1_000_000).max(now + 1));
                    }
                    self.blocked = true;
                    return Visit::Stop;
                }
                n = n.min(can.min(u32::MAX as u64) as u32);
                match lim.admit(path, n, now) {
                    Admit::Admitted => {
                        self.limiter_refused_reported = false;
                        for &tier in path.iter() {
                            self.actions.push_back(Action::Token { tier, n, admitted: true });
                        }
                        let snaps = lim.snapshot();
                        self.actions.push_back(Action::LimiterSnapshot { snaps });
                    }
                    Admit::Refused { .. } => {
                        self.blocked = true;
                        return Visit::Stop;
                    }
                }
            }
        }
        // Take the run off the buffer front (or the parked record out of the parked set).
        let p = match pos {
            Some(i) => &mut self.parts.entries[i].1,
            None => self.zombie.get_mut(&tp).expect("present"),
        };
        if from_parked {
            let taken = p.parked.remove(0);
            debug_assert_eq!((taken.offset, n), (offset, 1));
        } else {
            let front = p.buffer.front_mut().expect("non-empty");
            debug_assert_eq!(front.0, offset);
            if front.1 == n {
                p.buffer.pop_front();
            } else {
                front.0 += n as u64;
                front.1 -= n;
            }
            if attempt > 1 {
                p.retry = None;
            }
        }
        p.in_flight = true;
        p.in_ready = false;
        if let Some(i) = pos {
            self.parts.ready.remove(i);
        }
        let worker = self.workers.iter().position(|w| w.is_none()).expect("a free worker") as u32;
        self.workers[worker as usize] = Some(Job { tp, offset, count: n, attempt, void: false });
        self.free_workers -= 1;
        self.cursor = Some(tp);
        // The owned partition at `i` is the cursor now: those after it start at `i + 1`.
        self.cursor_split = pos.map(|i| (self.parts.layout, i + 1));
        self.last_poll_us = now;
        self.push_with(|| Action::Process { worker, tp, offset, count: n, attempt });
        Visit::Buffered
    }

    fn has_work(&self) -> bool {
        self.parts.values().any(|p| (!p.buffer.is_empty() || !p.parked.is_empty()) && !p.in_flight)
    }

    /// Issues fetches for partitions that may fetch, sized by the strategy's bound. One walk over
    /// the fetch ready-set, in `Tp` order (the order of a full walk over the partitions). The
    /// common empty case is decided inline, without a call.
    #[inline(always)]
    fn fetch(&mut self) {
        if !self.parts.fetchable.is_empty() {
            self.fetch_walk();
        }
    }

    /// Pause strategy: the records a partition at its log end may ask for when `room_records` of
    /// the buffer are free: 1/`LOG_END_FETCH_SHARE_DEN` of the fair share among the partitions
    /// that fetch (owned, unpaused, not being revoked: those with a fetch outstanding count too,
    /// their replies will want room), at least 1, so that a partition at its log end fetches
    /// whenever a record of room is free (none stalls, C4).
    fn log_end_fetch_records(&self, room_records: u64) -> u64 {
        let fetching = self.parts.values().filter(|p| !p.paused && !p.revoking).count() as u64;
        (room_records / (fetching.max(1) * LOG_END_FETCH_SHARE_DEN)).max(1)
    }

    fn fetch_walk(&mut self) {
        let strategy = if self.cfg.bugs.has(Bug::UnboundedBuffer) { Strategy::None } else { self.cfg.strategy };
        let ignore_credits = self.cfg.bugs.has(Bug::IgnoreCredits);
        let max = self.cfg.max_poll_records;
        let cap = self.cfg.buffer_records_max as u64;
        let actions_max = self.cfg.actions_max;
        let mut room = cap.saturating_sub(self.buffered_total + self.reserved_total);
        // The byte bound (every strategy but none): a fetch asks for at most the free byte room,
        // and only while that room holds one record of the largest size (a reply may always hold
        // one record, whatever `max_bytes` says).
        let bytes_bounded = strategy != Strategy::None;
        let record_bytes_max = self.cfg.record_bytes_max;
        let partition_bytes_max = self.cfg.max_partition_fetch_bytes;
        let mut byte_room = self.cfg.buffer_bytes_max.saturating_sub(self.buffered_bytes_total + self.reserved_bytes_total);
        // Pause strategy: what a partition at its log end may ask for in this walk (see
        // `LOG_END_FETCH_SHARE_DEN`), fixed at the walk's start so that the order of the walk does
        // not change it.
        let log_end_records = if strategy == Strategy::Pause { self.log_end_fetch_records(room) } else { 0 };
        let n_parts = self.parts.len();
        let mut at = 0;
        while let Some(i) = self.parts.fetchable.next_in(at, n_parts) {
            if bytes_bounded && byte_room < record_bytes_max {
                // No partition can fetch until records leave the buffer (they wake the walk).
                break;
            }
            at = i + 1;
            let (tp, p) = &mut self.parts.entries[i];
            let tp = *tp;
            debug_assert!(!p.fetch_outstanding && !p.revoking);
            let n = match strategy {
                Strategy::None => max,
                Strategy::Pause => {
                    if p.paused {
                        continue;
                    }
                    // Sized by what the partition can use, not by what is free: its known backlog
                    // plus the log-end share, within a poll and the free room.
                    let could = p.hw.saturating_sub(p.fetch_pos).saturating_add(log_end_records);
                    let n = (max as u64).min(room).min(could) as u32;
                    room -= n as u64;
                    n
                }
                Strategy::Credit => {
                    if ignore_credits {
                        max
                    } else {
                        let mut n = max.min(self.credits.available(tp));
                        // No small fetches while the partition's own records are buffered or being
                        // processed (their credits are sure to come back and wake it): a fetch
                        // waits until it can take at least half of what it could use, the
                        // smaller of a full poll and the backlog at the broker. A partition with
                        // nothing buffered fetches whatever it holds, so none stalls (C4).
                        if p.buffered > 0 {
                            let could = (max as u64).min(p.hw.saturating_sub(p.fetch_pos));
                            if (n as u64) * FETCH_CREDIT_FRACTION_DEN < could {
                                n = 0;
                            }
                        }
                        if n == 0 {
                            // Too few credits: wait for a grant (push_grants) or an empty buffer
                            // (on_process_done) before looking again.
                            p.starved = true;
                            p.in_fetchable = false;
                            self.parts.fetchable.remove(i);
                        }
                        n
                    }
                }
            };
            if n == 0 {
                continue;
            }
            let offset = p.fetch_pos;
            // n records never exceed n largest records, so asking for more bytes than that would
            // only hold room a sibling could use.
            let wanted_bytes = (n as u64).saturating_mul(record_bytes_max).min(partition_bytes_max);
            let (max_bytes, reserve_bytes) = if bytes_bounded {
                let max_bytes = wanted_bytes.min(byte_room);
                let reserve = max_bytes.max(record_bytes_max);
                byte_room -= reserve;
                (max_bytes, reserve)
            } else {
                (wanted_bytes, wanted_bytes.max(record_bytes_max))
            };
            p.fetch_outstanding = true;
            p.fetch_requested = n;
            p.fetch_requested_bytes = reserve_bytes;
            p.in_fetchable = false;
            self.parts.fetchable.remove(i);
            self.reserved_total += n as u64;
            self.reserved_bytes_total += reserve_bytes;
            if self.actions.len() >= actions_max {
                actions_overflow(actions_max);
            }
            self.actions.push_with(|| Action::Fetch { tp, offset, max_records: n, max_bytes });
        }
    }
}
