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
//! (per-partition order). Every buffer is bounded: the fetched-record buffer by
//! `buffer_records_max` (except under the `none` strategy, which exists to show what happens
//! without one), the action queue by `actions_max`.

use std::collections::VecDeque;

use crate::bugs::Bugs;
use crate::credit::CreditConfig;
use crate::pause::PauseConfig;
use crate::rate::{BucketConfig, BucketSnapshot, TierIdx};
use crate::retry::RetryConfig;
use crate::spec::{Protocol, Strategy};
use crate::types::{Generation, MemberId, Offset, TimeUs, Tp};

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub member: MemberId,
    pub strategy: Strategy,
    pub protocol: Protocol,
    pub buffer_records_max: u32,
    /// The most records one fetch may return for one partition.
    pub max_poll_records: u32,
    /// The most records one `Process` action hands a worker.
    pub process_batch_max: u32,
    pub pause: PauseConfig,
    pub credit: CreditConfig,
    pub workers: u32,
    pub retry: RetryConfig,
    pub commit_interval_ms: u64,
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
    pub bugs: Bugs,
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
    /// A fetch returned offsets `offset..offset+count` of `tp`; `hw` is the high watermark.
    Fetched { tp: Tp, offset: Offset, count: u32, hw: Offset },
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
    /// Fetch up to `max_records` of `tp` from `offset`. One fetch per partition is outstanding at a
    /// time; answer with `Fetched` or `FetchEmpty`.
    Fetch { tp: Tp, offset: Offset, max_records: u32 },
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
    Buffer { records: u64, credits_outstanding: u64 },
    Metrics { back_pressured_ms_per_s: u32, busy_ms_per_s: u32, idle_ms_per_s: u32 },
    /// Snapshot of the limiter state to persist (R3).
    LimiterSnapshot { snaps: Vec<BucketSnapshot> },
}

/// Counters and levels a driver or a report may read at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub buffered_records: u64,
    pub buffered_records_peak: u64,
    pub credits_outstanding: u64,
    pub processed_records: u64,
    pub dead_lettered_records: u64,
    pub busy_workers: u32,
    pub owned_partitions: u32,
    pub paused_partitions: u32,
}

pub struct Pipeline {
    _cfg: PipelineConfig,
    _actions: VecDeque<Action>,
}

impl Pipeline {
    pub fn new(_cfg: PipelineConfig, _now_us: TimeUs) -> Self {
        todo!()
    }
    pub fn handle(&mut self, _now_us: TimeUs, _input: Input<'_>) {
        todo!()
    }
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }
    /// When the pipeline next wants a `Tick` (retry backoff, rate-limit refill, commit or sample
    /// period), if ever.
    pub fn poll_timeout(&self) -> Option<TimeUs> {
        todo!()
    }
    /// The last time the application "polled" (took records or had none to take): the driver
    /// compares it with `max.poll.interval.ms`.
    pub fn last_poll_us(&self) -> TimeUs {
        todo!()
    }
    pub fn stats(&self) -> Stats {
        todo!()
    }
    pub fn owned(&self) -> Vec<Tp> {
        todo!()
    }
}
