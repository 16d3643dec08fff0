//! Property tests for the offset ledger (K1, K2), barrier alignment and checkpoint completion (K3)
//! and the retry policy.
//!
//! Property bodies are plain functions; the `*_catches_*` tests run the same body against a
//! planted bug or a broken variant through proptest's `TestRunner` and assert that a failure IS
//! found. Seeds are fixed: runs are reproducible.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
mod common;

use proptest::test_runner::{Config, TestCaseError};

use sluice_core::barrier::{AlignError, Aligner, Coordinator};
use sluice_core::bugs::{Bug, Bugs};
use sluice_core::ledger::{Ledger, LedgerError};
use sluice_core::retry::{RetryConfig, RetryPolicy, Verdict};
use sluice_core::{Offset, SplitMix64, Tp};

const TP: Tp = Tp::new(0, 0);

const SEED: u64 = 0x5EED_0002;

fn config(cases: u32) -> Config {
    common::config(cases, SEED)
}

/// [`common::assert_caught`] on this file's seed.
fn assert_caught<S: Strategy>(strategy: S, rule: &str, body: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    common::assert_caught(SEED, strategy, rule, body)
}

/// `start..start+len` cut into chunks of 1..=4 offsets, completed in a shuffled order, with some
/// chunks completed twice (a duplicate completion must be refused).
#[derive(Clone, Debug)]
struct CompletionCase {
    start: Offset,
    chunks: Vec<(Offset, u32)>,
    pending_ranges_max: usize,
}

fn chunks_of(start: Offset, sizes: &[u32]) -> Vec<(Offset, u32)> {
    let mut at = start;
    sizes
        .iter()
        .map(|&n| {
            let c = (at, n);
            at += u64::from(n);
            c
        })
        .collect()
}

fn completion_case() -> impl Strategy<Value = CompletionCase> {
    (
        0..1_000u64,
        prop::collection::vec(1..=4u32, 1..40),
        1..10usize,
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_flat_map(|(start, sizes, pending_ranges_max, dups)| {
            let mut chunks = chunks_of(start, &sizes);
            let again: Vec<(Offset, u32)> =
                dups.iter().map(|i| chunks[i.index(chunks.len())]).collect();
            chunks.extend(again);
            (
                Just(start),
                Just(chunks).prop_shuffle(),
                Just(pending_ranges_max),
            )
        })
        .prop_map(|(start, chunks, pending_ranges_max)| CompletionCase {
            start,
            chunks,
            pending_ranges_max,
        })
}

/// Reference: the first offset at or above `start` not in `done`.
fn first_not_done(start: Offset, done: &BTreeSet<Offset>) -> Offset {
    let mut o = start;
    while done.contains(&o) {
        o += 1;
    }
    o
}

/// Reference: maximal runs of done offsets above the first not-done one.
fn ranges_above(start: Offset, done: &BTreeSet<Offset>) -> usize {
    let first = first_not_done(start, done);
    let mut runs = 0;
    let mut prev: Option<Offset> = None;
    for &o in done.range(first..) {
        if prev != Some(o.wrapping_sub(1)) {
            runs += 1;
        }
        prev = Some(o);
    }
    runs
}

fn k1_body(bugs: Bugs, case: &CompletionCase) -> Result<(), TestCaseError> {
    let mut l = Ledger::new(case.pending_ranges_max).with_bugs(bugs);
    l.track(TP, case.start);
    let mut done: BTreeSet<Offset> = BTreeSet::new();
    let mut queue: VecDeque<(Offset, u32)> = case.chunks.iter().copied().collect();
    // Refused chunks go back to the end of the queue; the chunk at the first not-done offset is
    // always accepted, so every pass over the queue makes progress.
    let mut steps_left = queue.len() * queue.len() + 1;
    while let Some((offset, count)) = queue.pop_front() {
        prop_assert!(steps_left > 0, "no progress");
        steps_left -= 1;
        let chunk: Vec<Offset> = (offset..offset + u64::from(count)).collect();
        let already = chunk.iter().any(|o| done.contains(o));
        match l.done(TP, offset, count) {
            Ok(()) => {
                prop_assert!(!already, "accepted an already done chunk {offset}+{count}");
                done.extend(chunk);
            }
            Err(LedgerError::AlreadyDone { offset: o, .. }) => {
                prop_assert!(already, "refused a new chunk {offset}+{count}");
                prop_assert!(
                    done.contains(&o),
                    "AlreadyDone names {o}, which is not done"
                );
            }
            Err(LedgerError::TooManyRanges { .. }) => {
                prop_assert!(!already);
                let mut with: BTreeSet<Offset> = done.clone();
                with.extend(chunk);
                prop_assert!(
                    ranges_above(case.start, &with) > case.pending_ranges_max,
                    "TooManyRanges below the bound"
                );
                queue.push_back((offset, count));
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        let expect = first_not_done(case.start, &done);
        let got = l.committable(TP).unwrap();
        prop_assert!(
            got <= expect,
            "K1: committable {got} beyond the first not-done offset {expect}"
        );
        prop_assert_eq!(got, expect, "committable lags the done prefix");
        prop_assert!(l.pending_ranges(TP).unwrap() <= case.pending_ranges_max);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// K2: crash and resume from the committed offset.

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Acked,
    Failed,
    /// The reply was lost; `applied` says whether the broker applied it anyway.
    Unknown {
        applied: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Complete the next chunk in the processing order.
    Process,
    /// Send a commit of whatever is dirty, with this outcome.
    Commit(Outcome),
    /// Send a commit and answer it only later (`Late`), possibly after newer commits.
    Send,
    Late(Outcome),
}

#[derive(Clone, Debug)]
struct ResumeCase {
    /// Completion order of the chunks of `0..end` before the crash (processing may be out of order).
    chunks: Vec<(Offset, u32)>,
    ops: Vec<Op>,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Acked),
        Just(Outcome::Failed),
        any::<bool>().prop_map(|applied| Outcome::Unknown { applied })
    ]
}

fn resume_case() -> impl Strategy<Value = ResumeCase> {
    let op = prop_oneof![
        4 => Just(Op::Process),
        2 => outcome().prop_map(Op::Commit),
        1 => Just(Op::Send),
        1 => outcome().prop_map(Op::Late),
    ];
    (
        prop::collection::vec(1..=3u32, 1..30),
        prop::collection::vec(op, 0..80),
    )
        .prop_flat_map(|(sizes, ops)| {
            // Shuffle only within windows of 4 chunks: a few records in flight at a time.
            let chunks = chunks_of(0, &sizes);
            let windows: Vec<_> = chunks
                .chunks(4)
                .map(|w| Just(w.to_vec()).prop_shuffle())
                .collect();
            (windows, Just(ops))
        })
        .prop_map(|(windows, ops)| ResumeCase {
            chunks: windows.into_iter().flatten().collect(),
            ops,
        })
}

fn k2_body(bugs: Bugs, case: &ResumeCase) -> Result<(), TestCaseError> {
    let end: Offset = case
        .chunks
        .iter()
        .map(|&(o, n)| o + u64::from(n))
        .max()
        .unwrap_or(0);
    let mut processed: BTreeMap<Offset, u32> = BTreeMap::new();
    let mut l = Ledger::new(64).with_bugs(bugs);
    l.track(TP, 0);
    let mut next_chunk = 0;
    let mut broker: Offset = 0;
    let mut last_acked: Offset = 0;
    let mut late: VecDeque<Offset> = VecDeque::new();
    let mut dirty = Vec::new();
    let resolve =
        |l: &mut Ledger, broker: &mut Offset, last_acked: &mut Offset, c: Offset, out: Outcome| {
            match out {
                Outcome::Acked => {
                    // The broker keeps the newest commit it applied; an older, late one is applied too
                    // (that is how offsets go backwards on the wire), but the ledger must not follow it.
                    *broker = c;
                    *last_acked = (*last_acked).max(c);
                    l.commit_acked(TP, c);
                }
                Outcome::Failed => l.commit_failed(TP, c, false),
                Outcome::Unknown { applied } => {
                    if applied {
                        *broker = c;
                    }
                    l.commit_failed(TP, c, true);
                }
            }
        };
    for op in &case.ops {
        match *op {
            Op::Process => {
                if let Some(&(o, n)) = case.chunks.get(next_chunk) {
                    next_chunk += 1;
                    l.done(TP, o, n)
                        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    (o..o + u64::from(n)).for_each(|x| *processed.entry(x).or_default() += 1);
                }
            }
            Op::Commit(out) | Op::Late(out) => {
                let c = if matches!(op, Op::Late(_)) {
                    late.pop_front()
                } else {
                    dirty.clear();
                    l.dirty(&mut dirty);
                    dirty.first().map(|&(_, c)| {
                        l.commit_sent(TP, c);
                        c
                    })
                };
                if let Some(c) = c {
                    resolve(&mut l, &mut broker, &mut last_acked, c, out);
                }
            }
            Op::Send => {
                dirty.clear();
                l.dirty(&mut dirty);
                if let Some(&(_, c)) = dirty.first() {
                    l.commit_sent(TP, c);
                    late.push_back(c);
                }
            }
        }
        prop_assert_eq!(
            l.committed(TP).unwrap(),
            last_acked,
            "committed is not the highest acked commit"
        );
    }
    // Crash. Whatever the broker holds (an unknown-outcome commit may have landed) is within the
    // done prefix, so even resuming from it leaves no gap.
    let phase1: BTreeSet<Offset> = processed.keys().copied().collect();
    let mut prefix_end = 0;
    while phase1.contains(&prefix_end) {
        prefix_end += 1;
    }
    prop_assert!(
        broker <= prefix_end,
        "K2: the broker holds commit {broker} beyond the processed prefix {prefix_end}"
    );
    // Resume from the ledger's committed offset.
    let resume = l.committed(TP).unwrap();
    let mut l2 = Ledger::new(64);
    l2.track(TP, resume);
    for o in resume..end {
        l2.done(TP, o, 1)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        *processed.entry(o).or_default() += 1;
    }
    for o in 0..end {
        prop_assert!(
            processed.contains_key(&o),
            "K2: offset {o} never processed (resumed at {resume})"
        );
    }
    let again: BTreeSet<Offset> = processed
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&o, _)| o)
        .collect();
    let expect: BTreeSet<Offset> = phase1.range(last_acked..).copied().collect();
    prop_assert_eq!(
        again,
        expect,
        "re-processed offsets are not exactly those after the last acked commit"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// K3: barriers never overtake records; checkpoints complete only after every ack.

/// What a stage's aligner must offer; implemented by the real one and a broken one.
trait Align {
    fn accepts(&self, channel: usize) -> bool;
    fn on_barrier(&mut self, channel: usize, id: u64) -> Result<Option<u64>, AlignError>;
}

impl Align for Aligner {
    fn accepts(&self, channel: usize) -> bool {
        Aligner::accepts(self, channel)
    }
    fn on_barrier(&mut self, channel: usize, id: u64) -> Result<Option<u64>, AlignError> {
        Aligner::on_barrier(self, channel, id)
    }
}

/// Broken aligner: counts barriers but never blocks a channel.
struct NonBlocking {
    channels: usize,
    seen: BTreeMap<u64, usize>,
}

impl Align for NonBlocking {
    fn accepts(&self, _channel: usize) -> bool {
        true
    }
    fn on_barrier(&mut self, _channel: usize, id: u64) -> Result<Option<u64>, AlignError> {
        let n = self.seen.entry(id).or_default();
        *n += 1;
        Ok((*n == self.channels).then_some(id))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// A record of epoch `epoch` (after barrier `epoch`, before barrier `epoch + 1`).
    Data {
        epoch: u64,
    },
    Barrier(u64),
}

#[derive(Clone, Debug)]
struct AlignCase {
    /// Records per epoch per channel: `records[c][e]` records precede barrier `e + 1` on channel `c`.
    records: Vec<Vec<u8>>,
    barriers: u64,
    /// The channel the stage tries to read next, step by step (then it drains round-robin).
    schedule: Vec<usize>,
}

fn align_case() -> impl Strategy<Value = AlignCase> {
    (1..=4usize, 1..=4u64)
        .prop_flat_map(|(channels, barriers)| {
            (
                prop::collection::vec(
                    prop::collection::vec(0..4u8, barriers as usize + 1),
                    channels,
                ),
                Just(barriers),
                prop::collection::vec(0..channels, 0..60),
            )
        })
        .prop_map(|(records, barriers, schedule)| AlignCase {
            records,
            barriers,
            schedule,
        })
}

fn k3_align_body(aligner: &mut dyn Align, case: &AlignCase) -> Result<(), TestCaseError> {
    let channels = case.records.len();
    let mut queues: Vec<VecDeque<Item>> = case
        .records
        .iter()
        .map(|per_epoch| {
            let mut q = VecDeque::new();
            for (e, &n) in per_epoch.iter().enumerate() {
                (0..n).for_each(|_| q.push_back(Item::Data { epoch: e as u64 }));
                if (e as u64) < case.barriers {
                    q.push_back(Item::Barrier(e as u64 + 1));
                }
            }
            q
        })
        .collect();
    // The stage's output: the epoch of each record, and the barriers it forwards, in order.
    let mut forwarded: u64 = 0;
    let drain = (0..channels * 256).map(|i| i % channels);
    for ch in case.schedule.iter().copied().chain(drain) {
        if !aligner.accepts(ch) {
            continue;
        }
        let Some(item) = queues[ch].pop_front() else {
            continue;
        };
        match item {
            Item::Data { epoch } => {
                // Aligned mode: a record of epoch e is processed after barrier e went out and
                // before barrier e + 1 does.
                prop_assert!(
                    epoch == forwarded,
                    "K3: a record of epoch {epoch} processed while the stage is at checkpoint {forwarded}"
                );
            }
            Item::Barrier(id) => {
                let r = aligner
                    .on_barrier(ch, id)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                if let Some(id) = r {
                    prop_assert_eq!(id, forwarded + 1, "barriers forwarded out of order");
                    forwarded = id;
                }
            }
        }
    }
    prop_assert!(queues.iter().all(VecDeque::is_empty), "input left unread");
    prop_assert_eq!(forwarded, case.barriers, "not every barrier was forwarded");
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum CoordOp {
    Trigger,
    /// Stage `stage` acks the `pick`-th id triggered so far (modulo).
    Ack {
        stage: usize,
        pick: usize,
    },
}

#[derive(Clone, Debug)]
struct CoordCase {
    stages: usize,
    pending_max: usize,
    ops: Vec<CoordOp>,
}

fn coord_case() -> impl Strategy<Value = CoordCase> {
    (1..=4usize, 1..=4usize)
        .prop_flat_map(|(stages, pending_max)| {
            let op = prop_oneof![
                1 => Just(CoordOp::Trigger),
                4 => (0..stages + 1, 0..16usize).prop_map(|(stage, pick)| CoordOp::Ack { stage, pick }),
            ];
            (Just(stages), Just(pending_max), prop::collection::vec(op, 0..60))
        })
        .prop_map(|(stages, pending_max, ops)| CoordCase { stages, pending_max, ops })
}

fn k3_complete_body(case: &CoordCase) -> Result<(), TestCaseError> {
    let mut c = Coordinator::new(case.stages).with_pending_checkpoints_max(case.pending_max);
    let mut ids: Vec<u64> = Vec::new();
    let mut acks: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let mut completed: BTreeSet<u64> = BTreeSet::new();
    for op in &case.ops {
        match *op {
            CoordOp::Trigger => {
                let id = c.trigger();
                prop_assert!(ids.last().is_none_or(|&l| id > l), "ids not increasing");
                ids.push(id);
                prop_assert!(c.pending().count() <= case.pending_max);
            }
            CoordOp::Ack { stage, pick } => {
                let Some(&id) = (!ids.is_empty()).then(|| &ids[pick % ids.len()]) else {
                    continue;
                };
                let was_pending = c.pending().any(|p| p == id);
                let fresh = stage < case.stages && acks.entry(id).or_default().insert(stage);
                let all = acks.get(&id).map_or(0, BTreeSet::len) == case.stages;
                let done = c.ack(stage, id);
                if done {
                    prop_assert!(
                        all,
                        "K3: checkpoint {id} complete with acks from {:?} only",
                        acks.get(&id)
                    );
                    prop_assert!(completed.insert(id), "K3: checkpoint {id} completed twice");
                    prop_assert!(completed.iter().all(|&x| x <= id));
                }
                // Liveness: the last ack of a checkpoint still pending completes it.
                prop_assert_eq!(
                    done,
                    was_pending && fresh && all,
                    "ack({}, {}) result",
                    stage,
                    id
                );
                prop_assert_eq!(c.last_complete(), completed.last().copied());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Retry policy.

fn retry_case() -> impl Strategy<Value = (RetryConfig, u64, u64, u32)> {
    (
        1..=10u32,
        0..5_000u64,
        0..200_000u64,
        0.0..=1.0f64,
        any::<u64>(),
        0..1_000_000u64,
        any::<u32>(),
    )
        .prop_map(|(max_attempts, initial, extra, jitter, seed, now, retry)| {
            let cfg = RetryConfig {
                max_attempts,
                backoff_initial_ms: initial,
                backoff_max_ms: initial + extra,
                jitter,
            };
            (cfg, seed, now, retry)
        })
}

fn retry_body((cfg, seed, now, retry): (RetryConfig, u64, u64, u32)) -> Result<(), TestCaseError> {
    let p = RetryPolicy::new(cfg);
    // Reference backoff in u128: min(initial · 2^(r-1), max).
    let reference = |r: u32| -> u64 {
        let shift = r.max(1) - 1;
        if cfg.backoff_initial_ms == 0 {
            0
        } else if shift >= 64 {
            cfg.backoff_max_ms
        } else {
            (u128::from(cfg.backoff_initial_ms) << shift).min(u128::from(cfg.backoff_max_ms)) as u64
        }
    };
    for r in [retry, retry.saturating_add(1), 1, 2, 63, 64, 65, u32::MAX] {
        prop_assert_eq!(p.backoff_ms(r), reference(r), "backoff_ms({})", r);
    }
    let mut rng = SplitMix64(seed);
    let mut attempt = 1;
    let mut at = now;
    loop {
        match p.on_failure(attempt, at, &mut rng) {
            Verdict::RetryAt {
                at_us,
                attempt: next,
            } => {
                prop_assert!(
                    attempt < cfg.max_attempts,
                    "retried after {attempt} of {} attempts",
                    cfg.max_attempts
                );
                prop_assert_eq!(next, attempt + 1);
                let backoff_us = p.backoff_ms(attempt) * 1_000;
                let delay = at_us - at;
                prop_assert!(
                    delay <= backoff_us,
                    "delay {delay} above backoff {backoff_us}"
                );
                let floor = (backoff_us as f64 * (1.0 - cfg.jitter)).floor() as u64;
                prop_assert!(
                    delay + 1 >= floor,
                    "delay {delay} below backoff·(1−jitter) {floor}"
                );
                at = at_us;
                attempt = next;
            }
            Verdict::DeadLetter { attempts } => {
                prop_assert_eq!(
                    attempts,
                    cfg.max_attempts,
                    "dead-lettered after {} attempts",
                    attempts
                );
                break;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn k1_commit_never_beyond_processed(case in completion_case()) {
        k1_body(Bugs::NONE, &case)?;
    }

    #[test]
    fn k2_resume_has_no_gap(case in resume_case()) {
        k2_body(Bugs::NONE, &case)?;
    }

    #[test]
    fn k3_barrier_never_overtakes(case in align_case()) {
        k3_align_body(&mut Aligner::new(case.records.len()), &case)?;
    }

    #[test]
    fn k3_complete_only_after_all_acks(case in coord_case()) {
        k3_complete_body(&case)?;
    }

    #[test]
    fn retry_backoff_bounded_and_dlq_after_n(case in retry_case()) {
        retry_body(case)?;
    }
}

#[test]
fn k1_catches_commit_beyond_processed() {
    assert_caught(completion_case(), "K1", |case| {
        k1_body(Bugs::only(Bug::CommitBeyondProcessed), &case)
    });
}

#[test]
fn k2_catches_commit_beyond_processed() {
    assert_caught(resume_case(), "K2", |case| {
        k2_body(Bugs::only(Bug::CommitBeyondProcessed), &case)
    });
}

#[test]
fn k3_catches_an_aligner_that_does_not_block() {
    assert_caught(align_case(), "K3", |case| {
        let mut broken = NonBlocking {
            channels: case.records.len(),
            seen: BTreeMap::new(),
        };
        k3_align_body(&mut broken, &case)
    });
}
