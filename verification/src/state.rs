//! The checker state machine. [`Checker::step`] applies one entry and runs every incremental
//! (safety) rule on it; [`Checker::finish`] runs the end-of-history rules and builds the report.

use std::collections::{BTreeMap, BTreeSet};

use sluice_core::history::{self, Bounds, Edge, Entry, Event, MemberEvent, Phase, Run};

use crate::anomaly as a;
use crate::liveness::{LagStatus, LagTrack, Liveness, Stall, STALLS_LISTED_MAX, STALL_MIN_MS};
use crate::offsets::{ranges, IntervalSet, OffsetMap};
use crate::{Report, Severity, Summary, Violation, VIOLATIONS_LISTED_MAX};

/// Most input errors kept in a report.
const INPUT_ERRORS_MAX: usize = 100;
/// Most records one event may describe; an event above it is reported as an input error and
/// skipped (it would otherwise cost memory and time out of proportion to the history's size).
pub(crate) const RECORDS_PER_EVENT_MAX: u64 = 1 << 20;
/// Sentinel producer id: "no value seen at this offset".
const NO_PRODUCER: u32 = u32::MAX;

/// What is known about one offset of one partition.
#[derive(Clone, Copy, Debug)]
struct Slot {
    producer: u32,
    seq: u64,
    /// Time the offset was first fetched.
    fetch_t: u64,
    /// Ownership epoch of the partition when this offset was last processed OK (0 = never).
    proc_epoch: u32,
    fetched: bool,
    /// Processed OK or dead-lettered.
    done: bool,
    /// Non-blocking retries only: the attempt that last failed at this offset (0 = none), so a
    /// record parked for its retry is told apart from a dropped one.
    failed_attempt: u32,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            producer: NO_PRODUCER,
            seq: 0,
            fetch_t: 0,
            proc_epoch: 0,
            fetched: false,
            done: false,
            failed_attempt: 0,
        }
    }
}

/// What is known about one value `(producer, seq)` of one partition.
#[derive(Clone, Copy, Debug)]
struct ValSlot {
    /// First offset the value was seen at (u64::MAX = never).
    offset: u64,
    ack_offset: u64,
    ack_t: u64,
    acked: bool,
    read: bool,
}

impl Default for ValSlot {
    fn default() -> Self {
        ValSlot {
            offset: u64::MAX,
            ack_offset: 0,
            ack_t: 0,
            acked: false,
            read: false,
        }
    }
}

#[derive(Default)]
struct Part {
    name: String,
    slots: OffsetMap<Slot>,
    vals: BTreeMap<u32, OffsetMap<ValSlot>>,
    /// Per producer: acked batch base seq → base offset (nonmonotonic-send).
    sends: BTreeMap<u32, BTreeMap<u64, u64>>,
    max_read: Option<u64>,
    /// Offsets processed OK or dead-lettered, by anyone.
    done: IntervalSet,
    last_acked_commit: Option<u64>,
    /// Commits that may have been applied without an acknowledgement: sent and not yet answered
    /// (the reply may be lost, the sender may crash) or failed with unknown outcome.
    /// (consumer, offset) → count of such commits.
    maybe_commits: BTreeMap<(u32, u64), u32>,
    lowest_acked: Option<u64>,
    first_fetch: Option<u64>,
    /// Bumped on every assignment of the partition to a new owner.
    epoch: u32,
    /// Last acknowledged commit at the time of the latest (re)assignment.
    dup_floor: u64,
    owners: BTreeSet<u32>,
    /// consumer → processing runs started and not ended.
    in_flight: BTreeMap<u32, u32>,
    lag: LagTrack,
    /// Position lag at the latest lag sample.
    pos_lag: u64,
    /// Stall tracking: the position (next offset after the highest one done) at the last lag
    /// sample that showed progress or nothing to do, the time of that sample, and the stall in
    /// progress, if any.
    progress_next: u64,
    progress_at_us: u64,
    stall: Option<Stall>,
    /// Set when the previous owner gave the partition up at a clean revoke without committing
    /// what it processed (K1's commit on revoke): (that consumer, its processed end). The next
    /// assignment takes it as its duplicate floor.
    handoff_floor: Option<(u32, u64)>,
    /// The consumer whose uncommitted clean hand-over set the current `dup_floor`, if any.
    floor_from_revoke: Option<u32>,
    /// Last (consumer, offset) flagged by K1, so a CommitAck does not repeat its CommitSend.
    k1_flagged: Option<(u32, u64)>,
    subscribed: bool,
}

/// One consumer's view of one partition.
#[derive(Default)]
struct Chan {
    /// Next offset the consumer should fetch; `None` until a seek or the first fetch.
    pos: Option<u64>,
    awaiting_first_seek: bool,
    last_seek: Option<u64>,
    buffered: IntervalSet,
    /// Bytes of the `buffered` records, by their producers' declared sizes (0 when the history
    /// declares none).
    buffered_bytes: u64,
    credits: u64,
    /// End (exclusive) of the highest offset this consumer processed or dead-lettered during its
    /// current ownership.
    processed_end: u64,
    /// Highest offset this consumer sent a commit for during its current ownership.
    commit_sent: Option<u64>,
    /// Non-blocking retries only: runs started and not ended, first offset → attempt (at most
    /// the runs in flight at once).
    run_attempts: BTreeMap<u64, u32>,
}

#[derive(Default)]
struct Cons {
    buffered: u64,
    /// Bytes of the reconstructed buffer (see `Chan::buffered_bytes`).
    buffered_bytes: u64,
    credits: u64,
    buffer_peak: u64,
    buffer_bytes_peak: u64,
    over_reconstructed: bool,
    over_reconstructed_bytes: bool,
    over_reported: bool,
    over_reported_bytes: bool,
    c3_latched: bool,
}

struct Tier {
    name: String,
    rate_per_us: f64,
    burst: f64,
    admitted: f64,
    /// max over admissions i of rate·t_i − (admitted before i), and that admission's time and
    /// admitted-before total (the start of the worst window).
    best: f64,
    best_t_us: u64,
    best_before: f64,
    latched: bool,
}

pub(crate) struct Checker {
    bounds: Bounds,
    meta_seen: bool,
    /// Per producer, the bytes of each record (`Meta::producers`); empty when the history declares
    /// none, and then buffered bytes are judged on the consumers' samples alone.
    record_bytes: Vec<u64>,
    /// A fetch whose `bytes` contradict the declared record sizes was reported (once is enough).
    fetch_bytes_reported: bool,
    tp_index: BTreeMap<String, usize>,
    parts: Vec<Part>,
    chans: BTreeMap<(u32, usize), Chan>,
    cons: BTreeMap<u32, Cons>,
    /// Members whose current assignment is lost (crashed, evicted, fenced): their next revoke is
    /// not a clean hand-over. Cleared by the member's next assignment.
    lost: BTreeSet<u32>,
    /// `Meta::settings["checkpoint"] == "aligned"`: commits follow complete checkpoints only, so
    /// a revoke does not commit the processed prefix.
    aligned: bool,
    /// `Meta::settings["retry_mode"] == "non-blocking"`: the `retry_max_attempts` it declares. A
    /// failed record may then be overtaken by the records after it while it waits for its retry.
    nonblocking_max_attempts: Option<u32>,
    /// K3, per consumer: the aligned checkpoint being aligned (id, start time) and, per partition,
    /// the end of the highest run started meanwhile.
    ckpt_open: BTreeMap<u32, (u64, BTreeMap<usize, u64>)>,
    /// K3: a checkpoint that just completed (consumer, id, completion time, runs started while it
    /// aligned); its barrier offsets are the commits the consumer sends at that same instant.
    ckpt_done: Option<(u32, u64, u64, BTreeMap<usize, u64>)>,
    tiers: Vec<Tier>,
    violations: Vec<Violation>,
    counts: BTreeMap<String, u64>,
    /// Anomaly names seen with Safety or Liveness severity.
    present: BTreeSet<String>,
    expect: Vec<String>,
    unlisted: u64,
    input_errors: Vec<String>,
    summary: Summary,
    /// First safety violation of the entry being applied.
    first_of_step: Option<Violation>,
    now: u64,
    liveness_start: Option<u64>,
    /// `total_pos_lag` when the liveness phase began: the report says whether lag was draining.
    liveness_start_lag: u64,
    recovered_at: Option<u64>,
    deadline_checked: bool,
    /// Sum over partitions of the latest committed lag (hw − committed).
    total_lag: u64,
    /// Sum over partitions of the latest position lag (hw − next offset after the highest one
    /// processed or dead-lettered): what recovery is judged on.
    total_pos_lag: u64,
    /// Stall episodes that ended (open ones are added at the end), at most `STALLS_LISTED_MAX`
    /// (see `list_stall`).
    stalls: Vec<Stall>,
    stalls_unlisted: u64,
}

/// Lists a stall episode, or counts it once the list holds `STALLS_LISTED_MAX`.
fn list_stall(listed: &mut Vec<Stall>, unlisted: &mut u64, s: Stall) {
    if listed.len() < STALLS_LISTED_MAX {
        listed.push(s);
    } else {
        *unlisted += 1;
    }
}

/// Rejects events whose record ranges overflow or are absurdly large.
fn validate(ev: &Event) -> Result<(), String> {
    let range = |what: &str, start: u64, count: u64| -> Result<(), String> {
        if count > RECORDS_PER_EVENT_MAX {
            return Err(format!(
                "{what} {start} with count {count} above {RECORDS_PER_EVENT_MAX} records per event"
            ));
        }
        if start.checked_add(count).is_none_or(|end| end == u64::MAX) {
            return Err(format!("{what} {start} + count {count} overflows"));
        }
        Ok(())
    };
    match ev {
        Event::ProduceSend { seq, count, .. } | Event::ProduceFail { seq, count, .. } => {
            range("seq", *seq, *count as u64)
        }
        Event::ProduceAck {
            seq, count, offset, ..
        } => {
            range("seq", *seq, *count as u64)?;
            range("offset", *offset, *count as u64)
        }
        Event::Fetch { runs, .. } => {
            let total: u64 = runs.iter().map(|r| r.count as u64).sum();
            range("fetch of", 0, total)?;
            for r in runs {
                range("seq", r.seq, r.count as u64)?;
                range("offset", r.offset, r.count as u64)?;
            }
            Ok(())
        }
        Event::ProcessEnd { ok, count, .. } if ok > count => {
            Err(format!("process_end with ok {ok} above count {count}"))
        }
        Event::ProcessStart { offset, count, .. } | Event::ProcessEnd { offset, count, .. } => {
            range("offset", *offset, *count as u64)
        }
        Event::DeadLetter { offset, .. } | Event::Seek { offset, .. } => {
            range("offset", *offset, 1)
        }
        Event::CommitSend { offset, .. }
        | Event::CommitAck { offset, .. }
        | Event::CommitFail { offset, .. } => range("offset", *offset, 1),
        _ => Ok(()),
    }
}

/// `a-b`, or `a` when the range holds one offset.
fn span(lo: u64, hi_inclusive: u64) -> String {
    if lo == hi_inclusive {
        lo.to_string()
    } else {
        format!("{lo}-{hi_inclusive}")
    }
}

fn tp_consumer(c: u32) -> String {
    format!("c{c}")
}

impl Checker {
    pub fn new() -> Self {
        Checker {
            bounds: Bounds::default(),
            meta_seen: false,
            record_bytes: Vec::new(),
            fetch_bytes_reported: false,
            tp_index: BTreeMap::new(),
            parts: Vec::new(),
            chans: BTreeMap::new(),
            cons: BTreeMap::new(),
            lost: BTreeSet::new(),
            aligned: false,
            nonblocking_max_attempts: None,
            ckpt_open: BTreeMap::new(),
            ckpt_done: None,
            tiers: Vec::new(),
            violations: Vec::new(),
            counts: BTreeMap::new(),
            present: BTreeSet::new(),
            expect: Vec::new(),
            unlisted: 0,
            input_errors: Vec::new(),
            summary: Summary::default(),
            first_of_step: None,
            now: 0,
            liveness_start: None,
            liveness_start_lag: 0,
            recovered_at: None,
            deadline_checked: false,
            total_lag: 0,
            total_pos_lag: 0,
            stalls: Vec::new(),
            stalls_unlisted: 0,
        }
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    fn input_error(&mut self, msg: String) {
        if self.input_errors.len() < INPUT_ERRORS_MAX {
            self.input_errors.push(msg);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        anomaly: &str,
        rule: &str,
        sev: Severity,
        t: Option<u64>,
        tp: Option<usize>,
        consumer: Option<u32>,
        detail: String,
    ) {
        let v = Violation {
            anomaly: anomaly.to_string(),
            rule: rule.to_string(),
            t_us: t,
            detail,
            severity: sev,
            tp: tp.map(|i| self.parts[i].name.clone()),
            consumer,
        };
        *self.counts.entry(v.anomaly.clone()).or_insert(0) += 1;
        if sev != Severity::Info {
            self.present.insert(v.anomaly.clone());
        }
        if sev == Severity::Safety && self.first_of_step.is_none() {
            self.first_of_step = Some(v.clone());
        }
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(v);
        } else {
            self.unlisted += 1;
        }
    }

    /// Safety violation at the current event.
    fn safety(
        &mut self,
        anomaly: &str,
        rule: &str,
        tp: Option<usize>,
        consumer: Option<u32>,
        detail: String,
    ) {
        let t = Some(self.now);
        self.emit(anomaly, rule, Severity::Safety, t, tp, consumer, detail);
    }

    fn part(&mut self, tp: &str) -> usize {
        if let Some(&i) = self.tp_index.get(tp) {
            return i;
        }
        let i = self.parts.len();
        self.parts.push(Part {
            name: tp.to_string(),
            ..Part::default()
        });
        self.tp_index.insert(tp.to_string(), i);
        i
    }

    fn chan(&mut self, c: u32, p: usize) -> &mut Chan {
        self.cons.entry(c).or_default();
        self.chans.entry((c, p)).or_default()
    }

    /// Applies one entry; returns the first safety violation it causes.
    pub fn step(&mut self, e: &Entry) -> Option<Violation> {
        self.first_of_step = None;
        if e.t_us < self.now {
            let msg = format!(
                "entry {} at t_us {} goes back in time (previous {})",
                self.summary.entries + 1,
                e.t_us,
                self.now
            );
            self.input_error(msg);
        }
        self.now = self.now.max(e.t_us);
        self.summary.entries += 1;
        self.summary.end_t_us = self.now;
        if !self.meta_seen && !matches!(e.ev, Event::Meta(_)) {
            self.meta_seen = true;
            self.input_error(
                "the history does not start with a meta line; no bounds are checked".into(),
            );
        }
        self.check_deadline();
        if self.ckpt_done.as_ref().is_some_and(|d| d.2 < self.now) {
            self.ckpt_done = None;
        }
        if let Err(why) = validate(&e.ev) {
            let msg = format!(
                "entry {} (t_us {}) skipped: {why}",
                self.summary.entries, e.t_us
            );
            self.input_error(msg);
            return None;
        }
        self.apply(&e.ev);
        self.first_of_step.take()
    }

    fn apply(&mut self, ev: &Event) {
        match ev {
            Event::Meta(m) => {
                let history::Meta { topics, producers, bounds, expect, settings, .. } = &**m;
                if self.meta_seen {
                    self.input_error("a second meta line".into());
                    return;
                }
                self.meta_seen = true;
                self.aligned = settings.get("checkpoint").is_some_and(|m| m == "aligned");
                if settings.get("retry_mode").is_some_and(|m| m == "non-blocking") {
                    match settings.get("retry_max_attempts").map(|n| n.parse::<u32>()) {
                        Some(Ok(n)) if n >= 1 => self.nonblocking_max_attempts = Some(n),
                        other => self.input_error(format!("meta says retry_mode non-blocking with retry_max_attempts {other:?}: a whole number >= 1 is needed; every record is judged as under blocking retries")),
                    }
                }
                self.bounds = bounds.clone();
                self.record_bytes = producers.iter().map(|p| p.record_bytes).collect();
                self.expect = expect.clone();
                for name in expect {
                    if !crate::anomaly::ALL.contains(&name.as_str()) {
                        self.input_error(format!("meta expects unknown anomaly {name:?}"));
                    }
                }
                self.tiers = bounds
                    .rate_tiers
                    .iter()
                    .map(|t| Tier {
                        name: t.tier.clone(),
                        rate_per_us: t.rate_per_s / 1e6,
                        burst: t.burst,
                        admitted: 0.0,
                        best: f64::NEG_INFINITY,
                        best_t_us: 0,
                        best_before: 0.0,
                        latched: false,
                    })
                    .collect();
                for t in topics {
                    for p in 0..t.partitions {
                        let i = self.part(&sluice_core::history::tp_name(&t.name, p));
                        self.parts[i].subscribed = true;
                    }
                }
            }
            Event::Phase { phase } => {
                if *phase == Phase::Liveness && self.liveness_start.is_none() {
                    self.liveness_start = Some(self.now);
                    self.liveness_start_lag = self.total_pos_lag;
                }
                // The driver winds down from here (members leave): recovery is judged now, before
                // the leaves empty the group, if the deadline has not come yet.
                if *phase == Phase::Shutdown
                    && self.liveness_start.is_some()
                    && !self.deadline_checked
                    && self.bounds.recovery_deadline_ms > 0
                {
                    self.judge_recovery(self.now, Some("the scenario ended"));
                }
            }
            Event::Fault { edge, .. } => {
                if *edge == Edge::Start {
                    self.summary.faults_injected += 1;
                }
            }
            Event::ProduceSend { count, .. } => self.summary.records_produced += *count as u64,
            Event::ProduceAck {
                producer,
                tp,
                seq,
                count,
                offset,
            } => self.produce_ack(*producer, tp, *seq, *count, *offset),
            Event::ProduceFail { .. } | Event::Leader { .. } | Event::Metrics { .. } => {}
            Event::Checkpoint { consumer, id, edge } => match edge {
                Edge::Start => {
                    self.ckpt_open.insert(*consumer, (*id, BTreeMap::new()));
                }
                Edge::End => {
                    if let Some((open_id, runs)) = self.ckpt_open.remove(consumer) {
                        if open_id == *id {
                            self.ckpt_done = Some((*consumer, *id, self.now, runs));
                        }
                    }
                }
            },
            Event::Note { .. } | Event::Pause { .. } | Event::Resume { .. } => {}
            Event::Member { consumer, event } => self.member(*consumer, *event),
            Event::Rebalance { edge, .. } => {
                if *edge == Edge::Start {
                    self.summary.rebalances += 1;
                }
            }
            Event::Assign { consumer, tps, .. } => {
                self.lost.remove(consumer);
                for tp in tps {
                    let p = self.part(tp);
                    self.assign(*consumer, p);
                }
            }
            Event::Revoke { consumer, tps, .. } => {
                for tp in tps {
                    let p = self.part(tp);
                    self.revoke(*consumer, p);
                }
            }
            Event::Seek {
                consumer,
                tp,
                offset,
            } => {
                let p = self.part(tp);
                self.seek(*consumer, p, *offset);
            }
            Event::Fetch {
                consumer, tp, runs, bytes, ..
            } => {
                let p = self.part(tp);
                self.fetch_bytes(*consumer, tp, runs, *bytes);
                self.fetch(*consumer, p, runs);
            }
            Event::ProcessStart {
                consumer,
                tp,
                offset,
                count,
                attempt,
            } => {
                let p = self.part(tp);
                self.process_start(*consumer, p, *offset, *count, *attempt);
            }
            Event::ProcessEnd {
                consumer,
                tp,
                offset,
                count,
                ok,
            } => {
                let p = self.part(tp);
                self.process_end(*consumer, p, *offset, *count, *ok);
            }
            Event::DeadLetter {
                consumer,
                tp,
                offset,
                ..
            } => {
                let p = self.part(tp);
                self.summary.records_dead_lettered += 1;
                if self.parts[p].owners.contains(consumer) {
                    let ch = self.chan(*consumer, p);
                    ch.processed_end = ch.processed_end.max(*offset + 1);
                }
                self.mark_done(p, *offset, *offset + 1);
                self.unbuffer(*consumer, p, *offset, *offset + 1);
            }
            Event::CommitSend {
                consumer,
                tp,
                offset,
                ..
            } => {
                let p = self.part(tp);
                self.commit_k1(*consumer, p, *offset, "CommitSend");
                self.barrier_k3(*consumer, p, *offset);
                let ch = self.chan(*consumer, p);
                ch.commit_sent = Some(ch.commit_sent.map_or(*offset, |o| o.max(*offset)));
                *self.parts[p]
                    .maybe_commits
                    .entry((*consumer, *offset))
                    .or_insert(0) += 1;
            }
            Event::CommitAck {
                consumer,
                tp,
                offset,
                ..
            } => {
                let p = self.part(tp);
                self.commit_k1(*consumer, p, *offset, "CommitAck");
                self.summary.commits_acked += 1;
                let part = &mut self.parts[p];
                part.last_acked_commit = Some(*offset);
                // This commit and the sender's older ones are settled.
                let c = *consumer;
                part.maybe_commits
                    .retain(|&(mc, mo), _| mc != c || mo > *offset);
            }
            Event::CommitFail {
                consumer,
                tp,
                offset,
                unknown,
                ..
            } => {
                if !*unknown {
                    // Definitely not applied.
                    let p = self.part(tp);
                    let part = &mut self.parts[p];
                    if let Some(n) = part.maybe_commits.get_mut(&(*consumer, *offset)) {
                        *n -= 1;
                        if *n == 0 {
                            part.maybe_commits.remove(&(*consumer, *offset));
                        }
                    }
                }
            }
            Event::CreditGrant {
                consumer, tp, n, ..
            } => {
                let p = self.part(tp);
                self.chan(*consumer, p).credits += *n as u64;
                self.cons
                    .get_mut(consumer)
                    .expect("chan() created it")
                    .credits += *n as u64;
                self.check_c3(*consumer, None);
            }
            Event::CreditReturn { consumer, tp, n } => {
                let p = self.part(tp);
                let ch = self.chan(*consumer, p);
                let k = (*n as u64).min(ch.credits);
                ch.credits -= k;
                self.cons
                    .get_mut(consumer)
                    .expect("chan() created it")
                    .credits -= k;
            }
            Event::Token {
                consumer,
                tier,
                n,
                admitted,
            } => {
                if *admitted {
                    self.token(*consumer, tier, *n);
                } else {
                    self.token_refused(*consumer, tier, *n);
                }
            }
            Event::Buffer {
                consumer,
                records,
                bytes,
                credits_outstanding,
            } => self.buffer_sample(*consumer, *records, *bytes, *credits_outstanding),
            Event::Lag { tp, hw, committed } => {
                let p = self.part(tp);
                self.lag(p, *hw, *committed);
            }
        }
    }

    // ---- producers -------------------------------------------------------------------------

    fn produce_ack(&mut self, producer: u32, tp: &str, seq: u64, count: u32, offset: u64) {
        let p = self.part(tp);
        let now = self.now;
        self.summary.records_acked += count as u64;
        let mut dup = Vec::new();
        let mut inconsistent = Vec::new();
        {
            let part = &mut self.parts[p];
            part.lowest_acked = Some(part.lowest_acked.map_or(offset, |l| l.min(offset)));
            let vals = part.vals.entry(producer).or_default();
            for i in 0..count as u64 {
                let (o, s) = (offset + i, seq + i);
                let v = vals.get_mut(s);
                if !v.acked {
                    v.acked = true;
                    v.ack_offset = o;
                    v.ack_t = now;
                }
                if v.offset == u64::MAX {
                    v.offset = o;
                } else if v.offset != o {
                    dup.push((o, s, v.offset));
                }
                let slot = part.slots.get_mut(o);
                if slot.producer == NO_PRODUCER {
                    slot.producer = producer;
                    slot.seq = s;
                } else if (slot.producer, slot.seq) != (producer, s) {
                    inconsistent.push((o, slot.producer, slot.seq, s));
                }
            }
        }
        self.report_values(p, None, "acknowledged", producer, &dup, &inconsistent);
        // nonmonotonic-send: acked batches of one producer, ordered by seq, must be ordered by offset.
        let sends = self.parts[p].sends.entry(producer).or_default();
        let before = sends.range(..seq).next_back().map(|(&s, &o)| (s, o));
        let after = sends.range(seq + 1..).next().map(|(&s, &o)| (s, o));
        sends.entry(seq).or_insert(offset);
        let bad = match (before, after) {
            (Some((s, o)), _) if o >= offset => Some((s, o)),
            (_, Some((s, o))) if o <= offset => Some((s, o)),
            _ => None,
        };
        if let Some((s, o)) = bad {
            let name = self.parts[p].name.clone();
            self.safety(
                a::NONMONOTONIC_SEND,
                "nonmonotonic-send",
                Some(p),
                None,
                format!("{name}: producer {producer} seq {seq} acked at offset {offset}, but seq {s} is at offset {o}"),
            );
        }
    }

    /// Reports duplicate values and inconsistent offsets found by one event.
    fn report_values(
        &mut self,
        p: usize,
        consumer: Option<u32>,
        how: &str,
        producer: u32,
        dup: &[(u64, u64, u64)],
        inc: &[(u64, u32, u64, u64)],
    ) {
        let name = self.parts[p].name.clone();
        if let Some(&(o, s, first)) = dup.first() {
            let offs: Vec<u64> = dup.iter().map(|d| d.0).collect();
            self.safety(
                a::DUPLICATE,
                "duplicate",
                Some(p),
                consumer,
                format!(
                    "{name}: {} value(s) of producer {producer} {how} at offsets {} already seen at other offsets (first: producer {producer} seq {s} at offsets {first} and {o})",
                    dup.len(),
                    ranges(&offs)
                ),
            );
        }
        if let Some(&(o, p0, s0, s)) = inc.first() {
            let offs: Vec<u64> = inc.iter().map(|d| d.0).collect();
            self.safety(
                a::INCONSISTENT_OFFSETS,
                "inconsistent-offsets",
                Some(p),
                consumer,
                format!(
                    "{name}: {} offset(s) {} hold two values (first: offset {o} holds producer {p0} seq {s0} and producer {producer} seq {s}, {how})",
                    inc.len(),
                    ranges(&offs)
                ),
            );
        }
    }

    /// K3: `offset` is the barrier of `p` if `c` sends it as its checkpoint completes; nothing
    /// at or past it may have started while the checkpoint aligned.
    fn barrier_k3(&mut self, c: u32, p: usize, barrier: u64) {
        if !self.aligned {
            return;
        }
        let Some((dc, id, t_end, runs)) = &self.ckpt_done else {
            return;
        };
        if *dc != c || *t_end != self.now {
            return;
        }
        let id = *id;
        if let Some(&end) = runs.get(&p) {
            if end > barrier {
                let name = self.parts[p].name.clone();
                self.safety(
                    a::BARRIER_OVERTAKEN,
                    "K3",
                    Some(p),
                    Some(c),
                    format!("{name}: c{c} started offsets {barrier}-{} while checkpoint {id} was aligning, at or past its barrier {barrier}: records behind a barrier must wait until the checkpoint completes", end - 1),
                );
            }
        }
    }

    // ---- group membership and ownership ---------------------------------------------------

    fn member(&mut self, c: u32, ev: MemberEvent) {
        if matches!(
            ev,
            MemberEvent::Crash | MemberEvent::Evicted | MemberEvent::Fenced
        ) {
            self.lost.insert(c);
        }
        match ev {
            MemberEvent::Start | MemberEvent::Crash | MemberEvent::Leave => {
                // A fresh, dead or departed process owns nothing, buffers nothing, holds no credits (a
                // handler still running after a leave is a zombie, as after an eviction below).
                for part in &mut self.parts {
                    part.owners.remove(&c);
                    part.in_flight.remove(&c);
                }
                for ((_, _), ch) in self.chans.range_mut((c, 0)..(c, usize::MAX)) {
                    *ch = Chan::default();
                }
                if let Some(k) = self.cons.get_mut(&c) {
                    k.buffered = 0;
                    k.buffered_bytes = 0;
                    k.credits = 0;
                }
            }
            MemberEvent::Evicted => {
                // The coordinator took its partitions; the process may live on as a zombie. A
                // handler still running on a record then (a process stalled past its session) ends
                // when it returns, as after a leave: G1 judges what members start, and the next
                // owner starting that record is Kafka's protocol, not a second owner. Anything the
                // zombie starts from now on is judged (it owns nothing).
                for part in &mut self.parts {
                    part.owners.remove(&c);
                    part.in_flight.remove(&c);
                }
            }
            MemberEvent::Fenced => {}
        }
    }

    fn assign(&mut self, c: u32, p: usize) {
        if self.parts[p].owners.contains(&c) {
            return; // re-listing a kept partition (cooperative)
        }
        let part = &mut self.parts[p];
        part.owners.insert(c);
        part.epoch += 1;
        part.dup_floor = part.last_acked_commit.unwrap_or(0);
        part.floor_from_revoke = None;
        if let Some((from, end)) = part.handoff_floor.take() {
            if end > part.dup_floor {
                part.dup_floor = end;
                part.floor_from_revoke = Some(from);
            }
        }
        let ch = self.chan(c, p);
        ch.processed_end = 0;
        ch.commit_sent = None;
        ch.pos = None;
        ch.awaiting_first_seek = true;
        ch.last_seek = None;
    }

    fn revoke(&mut self, c: u32, p: usize) {
        let was_owner = self.parts[p].owners.remove(&c);
        let clean = was_owner && !self.lost.contains(&c);
        let acked = self.parts[p].last_acked_commit.unwrap_or(0);
        let aligned = self.aligned;
        let ch = self.chan(c, p);
        // K1: a clean revoke commits what was processed before the partition moves. If no
        // commit was even sent for it, the next owner may re-process only what came after.
        // Aligned checkpoints (K3) commit only complete checkpoints: the next owner replays from
        // the last one by design.
        let committed = ch.commit_sent.unwrap_or(0).max(acked);
        let (last_seek, processed_end) = (ch.last_seek, ch.processed_end);
        // What it could commit is the contiguous prefix done from where it started, not the
        // highest offset it finished: a record still waiting for its retry (non-blocking
        // retries) or for its dead-letter acknowledgement holds the commit back.
        let processed_end = match last_seek {
            Some(seek) => processed_end.min(self.parts[p].done.containing(seek).map_or(seek, |(_, e)| e)),
            None => processed_end,
        };
        if clean && !aligned && processed_end > committed {
            self.parts[p].handoff_floor = Some((c, processed_end));
        }
        let ch = self.chan(c, p);
        ch.pos = None;
        ch.awaiting_first_seek = false;
        let dropped = ch.buffered.len();
        let dropped_bytes = ch.buffered_bytes;
        ch.buffered.clear();
        ch.buffered_bytes = 0;
        let k = self.cons.get_mut(&c).expect("chan() created it");
        k.buffered -= dropped;
        k.buffered_bytes -= dropped_bytes;
    }

    fn seek(&mut self, c: u32, p: usize, offset: u64) {
        let ch = self.chan(c, p);
        ch.pos = Some(offset);
        ch.last_seek = Some(offset);
        let first = std::mem::replace(&mut ch.awaiting_first_seek, false);
        if !first {
            return;
        }
        // K2: resuming above the committed offset skips records.
        let part = &self.parts[p];
        let maybe = part.maybe_commits.keys().map(|&(_, o)| o).max();
        let (limit, what) = match (part.last_acked_commit, maybe) {
            (Some(c), Some(u)) if u > c => (
                Some(u),
                "highest commit that may have been applied (unanswered or unknown outcome)",
            ),
            (Some(c), _) => (Some(c), "last acknowledged commit"),
            (None, Some(u)) => (
                Some(u),
                "highest commit that may have been applied (unanswered or unknown outcome)",
            ),
            (None, None) => (
                part.lowest_acked,
                "lowest acknowledged offset (nothing committed)",
            ),
        };
        if let Some(limit) = limit {
            if offset > limit {
                let name = part.name.clone();
                self.safety(
                    a::GAP_AFTER_RESTART,
                    "K2",
                    Some(p),
                    Some(c),
                    format!("{name}: c{c} resumed at offset {offset} after assignment, above the {what} {limit}: offsets {} skipped", span(limit, offset - 1)),
                );
            }
        }
    }

    // ---- consumption ------------------------------------------------------------------------

    /// A fetch's `bytes` against its records' declared sizes: a consumer that counts the bytes it
    /// fetched wrongly bounds its buffer on the wrong figure. Reported once, as the history
    /// contradicting itself; the reconstructed buffer goes by the declared sizes either way.
    fn fetch_bytes(&mut self, c: u32, tp: &str, runs: &[Run], bytes: u64) {
        if self.record_bytes.is_empty() || self.fetch_bytes_reported {
            return;
        }
        let declared = self.record_bytes.len();
        if let Some(r) = runs.iter().find(|r| r.producer as usize >= declared) {
            self.fetch_bytes_reported = true;
            self.input_error(format!("fetch of {tp} by c{c}: a run of producer {}, but meta declares {declared} producer(s); its records are counted as 0 bytes", r.producer));
            return;
        }
        let want: u64 = runs.iter().map(|r| r.count as u64 * self.record_bytes[r.producer as usize]).sum();
        if bytes != want {
            self.fetch_bytes_reported = true;
            self.input_error(format!("fetch of {tp} by c{c} at {} us says {bytes} bytes, but its records hold {want} by the producers' declared record sizes", self.now));
        }
    }

    fn fetch(&mut self, c: u32, p: usize, runs: &[Run]) {
        let now = self.now;
        let n: u64 = runs.iter().map(|r| r.count as u64).sum();
        if n == 0 {
            return;
        }
        self.summary.records_consumed += n;
        let name = self.parts[p].name.clone();
        let credit_based = self.bounds.credits_max > 0;
        // A response to a fetch sent before the partition was revoked (or by an evicted member) is
        // discarded by a correct client: it counts as evidence of the log's content, but not as a
        // poll, a use of credit, or buffered records. Processing it would break G1.
        let owned = self.parts[p].owners.contains(&c);
        if owned {
            self.fetch_owned(c, p, runs, n, &name, credit_based);
        }

        // Values: read flags, duplicates, inconsistent offsets.
        for r in runs {
            let mut dup = Vec::new();
            let mut inc = Vec::new();
            let part = &mut self.parts[p];
            part.first_fetch.get_or_insert(r.offset);
            if r.count > 0 {
                let last = r.offset + r.count as u64 - 1;
                part.max_read = Some(part.max_read.map_or(last, |m| m.max(last)));
            }
            let vals = part.vals.entry(r.producer).or_default();
            for i in 0..r.count as u64 {
                let (o, s) = (r.offset + i, r.seq + i);
                let v = vals.get_mut(s);
                v.read = true;
                if v.offset == u64::MAX {
                    v.offset = o;
                } else if v.offset != o {
                    dup.push((o, s, v.offset));
                }
                let slot = part.slots.get_mut(o);
                if owned && !slot.fetched {
                    slot.fetched = true;
                    slot.fetch_t = now;
                }
                if slot.producer == NO_PRODUCER {
                    slot.producer = r.producer;
                    slot.seq = s;
                } else if (slot.producer, slot.seq) != (r.producer, s) {
                    inc.push((o, slot.producer, slot.seq, s));
                    // A different record now sits at this offset (the log was truncated and
                    // rewritten): processing it is not a re-processing of the one before.
                    slot.proc_epoch = 0;
                }
            }
            self.report_values(
                p,
                Some(c),
                &format!("fetched by c{c}"),
                r.producer,
                &dup,
                &inc,
            );
        }
        if owned {
            self.check_buffer(c);
            self.check_c3(c, None);
        }
    }

    /// Poll order, credits (C1) and the reconstructed buffer, for a fetch by the partition's owner.
    fn fetch_owned(
        &mut self,
        c: u32,
        p: usize,
        runs: &[Run],
        n: u64,
        name: &str,
        credit_based: bool,
    ) {
        // Poll order: each run must start where the previous one (or the position) left off.
        let mut pos = self.chan(c, p).pos;
        let mut order_issue = None;
        for r in runs.iter().filter(|r| r.count > 0) {
            if let Some(expect) = pos {
                if order_issue.is_none() && r.offset != expect {
                    order_issue = Some((expect, r.offset));
                }
            }
            pos = Some(r.offset + r.count as u64);
        }
        let ch = self.chan(c, p);
        ch.pos = pos;
        let outstanding = ch.credits;
        ch.credits -= n.min(outstanding);
        let mut added = 0;
        let mut added_bytes = 0;
        let sizes = &self.record_bytes;
        let ch = self.chans.get_mut(&(c, p)).expect("chan() created it");
        for r in runs {
            let new = ch.buffered.insert(r.offset, r.offset + r.count as u64);
            added += new;
            added_bytes += new * sizes.get(r.producer as usize).copied().unwrap_or(0);
        }
        ch.buffered_bytes += added_bytes;
        let k = self.cons.get_mut(&c).expect("chan() created it");
        k.credits -= n.min(outstanding);
        k.buffered += added;
        k.buffered_bytes += added_bytes;
        if let Some((expect, got)) = order_issue {
            if got > expect {
                self.safety(a::POLL_SKIP, "poll-skip", Some(p), Some(c), format!("{name}: c{c} fetched offset {got} with its position at {expect} and no seek between: offsets {} skipped", span(expect, got - 1)));
            } else {
                self.safety(a::NONMONOTONIC_POLL, "nonmonotonic-poll", Some(p), Some(c), format!("{name}: c{c} fetched offset {got} but its position was {expect}, with no seek between"));
            }
        }
        if credit_based && n > outstanding {
            self.safety(a::CREDIT_RULE, "C1", Some(p), Some(c), format!("{name}: c{c} fetched {n} records with {outstanding} credits outstanding on the channel"));
        }
    }

    fn process_start(&mut self, c: u32, p: usize, offset: u64, count: u32, attempt: u32) {
        if self.nonblocking_max_attempts.is_some() {
            self.chan(c, p).run_attempts.insert(offset, attempt);
        }
        if let Some((_, runs)) = self.ckpt_open.get_mut(&c) {
            let end = runs.entry(p).or_insert(0);
            *end = (*end).max(offset + count as u64);
        }
        let part = &self.parts[p];
        let name = part.name.clone();
        let owners: Vec<String> = part.owners.iter().map(|&o| tp_consumer(o)).collect();
        let others_busy: Vec<String> = part
            .in_flight
            .keys()
            .filter(|&&o| o != c)
            .map(|&o| tp_consumer(o))
            .collect();
        let end = offset + count as u64;
        if !part.owners.contains(&c) {
            self.safety(a::PARTITION_OWNED_TWICE, "G1", Some(p), Some(c), format!("{name}: c{c} processes offsets {offset}-{} without owning the partition (owners: [{}])", end.saturating_sub(1), owners.join(", ")));
        } else if owners.len() > 1 {
            self.safety(a::PARTITION_OWNED_TWICE, "G1", Some(p), Some(c), format!("{name}: c{c} processes offsets {offset}-{} while the partition is assigned to [{}]", end.saturating_sub(1), owners.join(", ")));
        } else if !others_busy.is_empty() {
            self.safety(
                a::PARTITION_OWNED_TWICE,
                "G1",
                Some(p),
                Some(c),
                format!(
                    "{name}: c{c} processes offsets {offset}-{} while [{}] still process(es) it",
                    end.saturating_sub(1),
                    others_busy.join(", ")
                ),
            );
        }
        *self.parts[p].in_flight.entry(c).or_insert(0) += 1;
    }

    fn process_end(&mut self, c: u32, p: usize, offset: u64, count: u32, ok: u32) {
        if self.nonblocking_max_attempts.is_some() {
            let attempt = self.chan(c, p).run_attempts.remove(&offset);
            if ok < count {
                // The record at `offset + ok` failed on this attempt (unknown when its start was
                // not seen: judged as under blocking retries).
                self.parts[p].slots.get_mut(offset + ok as u64).failed_attempt = attempt.unwrap_or(0);
            }
        }
        let part = &mut self.parts[p];
        if let Some(n) = part.in_flight.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                part.in_flight.remove(&c);
            }
        }
        let end = offset + ok as u64;
        self.summary.records_processed += ok as u64;
        let (epoch, floor, floor_from) = (part.epoch, part.dup_floor, part.floor_from_revoke);
        // A non-owner's processing is G1's concern; it is marked so the owner's later processing of
        // the same offsets counts as a legitimate hand-over, not a re-processing within one ownership.
        let owner = part.owners.contains(&c);
        let mark = if owner { epoch.max(1) } else { u32::MAX };
        let window_end = self
            .bounds
            .duplicate_window_records
            .map_or(u64::MAX, |w| floor.saturating_add(w));
        let mut beyond = Vec::new();
        let mut reprocessed = 0;
        for o in offset..end {
            let slot = part.slots.get_mut(o);
            if slot.proc_epoch != 0 {
                reprocessed += 1;
                let allowed = !owner || (slot.proc_epoch != epoch && o >= floor && o < window_end);
                if !allowed {
                    beyond.push(o);
                }
            }
            slot.proc_epoch = mark;
        }
        self.summary.records_reprocessed += reprocessed;
        if !beyond.is_empty() {
            let name = part.name.clone();
            let w = self
                .bounds
                .duplicate_window_records
                .map_or("unbounded".to_string(), |w| format!("{w} records"));
            let why = match floor_from {
                Some(r) => format!("c{r} gave the partition up at a clean revoke having processed up to {floor} without committing it (K1: commit on revoke), so re-processing is allowed only from {floor}"),
                None => format!("re-processing is allowed only from the commit {floor} acknowledged at the last reassignment"),
            };
            self.safety(
                a::DUPLICATE_BEYOND_WINDOW,
                "K2",
                Some(p),
                Some(c),
                format!(
                    "{name}: c{c} processed offsets {} again; {why} (window: {w}), never twice within one ownership",
                    ranges(&beyond)
                ),
            );
        }
        if owner {
            let ch = self.chan(c, p);
            ch.processed_end = ch.processed_end.max(end);
        }
        self.mark_done(p, offset, end);
        self.unbuffer(c, p, offset, end);
    }

    fn mark_done(&mut self, p: usize, lo: u64, hi: u64) {
        let part = &mut self.parts[p];
        part.done.insert(lo, hi);
        for o in lo..hi {
            part.slots.get_mut(o).done = true;
        }
    }

    fn unbuffer(&mut self, c: u32, p: usize, lo: u64, hi: u64) {
        let ch = self.chans.entry((c, p)).or_default();
        let removed;
        let mut removed_bytes = 0;
        if self.record_bytes.is_empty() {
            removed = ch.buffered.remove(lo, hi);
        } else {
            // The bytes leaving are those of the records the slots say sit at the removed
            // offsets (a fetch wrote them there before it buffered them).
            let (slots, sizes) = (&self.parts[p].slots, &self.record_bytes);
            removed = ch.buffered.remove_each(lo, hi, |s, e| {
                for o in s..e {
                    removed_bytes += sizes.get(slots.get_or_default(o).producer as usize).copied().unwrap_or(0);
                }
            });
            // Bytes rebuilt from the slots may differ from those buffered when a truncated log put
            // another record at an offset between its fetch and its release: never below zero, and
            // none left once no record is.
            removed_bytes = if ch.buffered.len() == 0 { ch.buffered_bytes } else { removed_bytes.min(ch.buffered_bytes) };
            ch.buffered_bytes -= removed_bytes;
        }
        let k = self.cons.entry(c).or_default();
        k.buffered -= removed;
        k.buffered_bytes -= removed_bytes;
        if k.buffered <= self.bounds.buffer_records_max {
            k.over_reconstructed = false;
        }
        if k.buffered_bytes <= self.bounds.buffer_bytes_max {
            k.over_reconstructed_bytes = false;
        }
        self.check_c3(c, None);
    }

    // ---- commits ------------------------------------------------------------------------------

    fn commit_k1(&mut self, c: u32, p: usize, offset: u64, what: &str) {
        let base = {
            let part = &self.parts[p];
            let seek = self.chans.get(&(c, p)).and_then(|ch| ch.last_seek);
            seek.or(part.last_acked_commit)
                .or(part.first_fetch)
                .or(part.lowest_acked)
                .unwrap_or(0)
        };
        let part = &mut self.parts[p];
        if offset <= base || part.done.covers(base, offset) {
            return;
        }
        if part.k1_flagged == Some((c, offset)) {
            return;
        }
        part.k1_flagged = Some((c, offset));
        let frontier = part.done.containing(base).map_or(base, |(_, e)| e);
        let name = part.name.clone();
        self.safety(
            a::COMMIT_BEYOND_PROCESSED,
            "K1",
            Some(p),
            Some(c),
            format!("{name}: c{c} {what} offset {offset}, but from offset {base} only {} processed or dead-lettered (a commit may be at most {frontier})", if frontier > base { format!("offsets {} are", span(base, frontier - 1)) } else { "nothing is".to_string() }),
        );
    }

    // ---- flow control -------------------------------------------------------------------------

    fn check_buffer(&mut self, c: u32) {
        let max = self.bounds.buffer_records_max;
        let bytes_max = self.bounds.buffer_bytes_max;
        let k = self.cons.get_mut(&c).expect("consumer exists");
        k.buffer_bytes_peak = k.buffer_bytes_peak.max(k.buffered_bytes);
        if bytes_max > 0 && k.buffered_bytes > bytes_max && !k.over_reconstructed_bytes {
            k.over_reconstructed_bytes = true;
            let (b, n) = (k.buffered_bytes, k.buffered);
            self.safety(a::BUFFER_BOUND_EXCEEDED, "buffer_bytes_max", None, Some(c), format!("c{c}: {n} records of {b} bytes fetched and not yet processed, dead-lettered or revoked (reconstructed from the producers' record sizes), above buffer_bytes_max {bytes_max}"));
        }
        let k = self.cons.get_mut(&c).expect("consumer exists");
        k.buffer_peak = k.buffer_peak.max(k.buffered);
        if max == 0 || k.buffered <= max {
            k.over_reconstructed = false;
            return;
        }
        if k.over_reconstructed {
            return;
        }
        k.over_reconstructed = true;
        let b = k.buffered;
        self.safety(a::BUFFER_BOUND_EXCEEDED, "buffer_records_max", None, Some(c), format!("c{c}: {b} records fetched and not yet processed, dead-lettered or revoked (reconstructed), above buffer_records_max {max}"));
    }

    /// A consumer's own buffer sample: its records within `buffer_records_max` and their bytes
    /// within `buffer_bytes_max` (0: none declared). Both are also checked on the buffer
    /// reconstructed from fetches (see `check_buffer`), the bytes when the history declares its
    /// producers' record sizes: a sample shows one instant, and only what the consumer believes.
    fn buffer_sample(&mut self, c: u32, records: u64, bytes: u64, credits_outstanding: u64) {
        let max = self.bounds.buffer_records_max;
        let bytes_max = self.bounds.buffer_bytes_max;
        let k = self.cons.entry(c).or_default();
        k.buffer_peak = k.buffer_peak.max(records);
        k.buffer_bytes_peak = k.buffer_bytes_peak.max(bytes);
        if bytes_max > 0 && bytes > bytes_max {
            if !k.over_reported_bytes {
                k.over_reported_bytes = true;
                self.safety(a::BUFFER_BOUND_EXCEEDED, "buffer_bytes_max", None, Some(c), format!("c{c}: buffer sample reports {bytes} bytes, above buffer_bytes_max {bytes_max}"));
            }
        } else {
            self.cons.get_mut(&c).expect("created above").over_reported_bytes = false;
        }
        let k = self.cons.get_mut(&c).expect("created above");
        if max > 0 && records > max {
            if !k.over_reported {
                k.over_reported = true;
                self.safety(a::BUFFER_BOUND_EXCEEDED, "buffer_records_max", None, Some(c), format!("c{c}: buffer sample reports {records} records, above buffer_records_max {max}"));
            }
        } else {
            k.over_reported = false;
        }
        self.check_c3(c, Some((records, credits_outstanding)));
    }

    /// C3: outstanding credits + buffered records within both credits_max and buffer_records_max.
    /// `sample` is a reported (records, credits) pair; otherwise the reconstructed state is used.
    fn check_c3(&mut self, c: u32, sample: Option<(u64, u64)>) {
        let cmax = self.bounds.credits_max;
        if cmax == 0 {
            return;
        }
        let bmax = self.bounds.buffer_records_max;
        let k = self.cons.get_mut(&c).expect("consumer exists");
        let (buffered, credits, how) = match sample {
            Some((b, cr)) => (b, cr, "reported"),
            None => (k.buffered, k.credits, "reconstructed"),
        };
        let sum = buffered + credits;
        let over = sum > cmax || (bmax > 0 && sum > bmax);
        if !over {
            if sample.is_none() {
                k.c3_latched = false;
            }
            return;
        }
        if k.c3_latched {
            return;
        }
        k.c3_latched = true;
        self.safety(
            a::CREDIT_RULE,
            "C3",
            None,
            Some(c),
            format!("c{c}: {credits} credits outstanding + {buffered} records buffered = {sum} ({how}), above credits_max {cmax} / buffer_records_max {bmax}"),
        );
    }

    /// R1 for every configured tier named `tier`: over every window ending at an admission,
    /// admitted ≤ burst + rate·t. Exact and O(1) per admission: with A the admitted total,
    /// max over window starts i of (A − A_before_i − rate·(t − t_i)) = A − rate·t + max_i(rate·t_i − A_before_i).
    fn token(&mut self, c: u32, tier: &str, n: u32) {
        let now = self.now as f64;
        let mut hits = Vec::new();
        for (i, t) in self.tiers.iter_mut().enumerate() {
            if t.name != tier {
                continue;
            }
            let cand = t.rate_per_us * now - t.admitted;
            if cand > t.best {
                t.best = cand;
                t.best_t_us = self.now;
                t.best_before = t.admitted;
            }
            t.admitted += n as f64;
            let worst = t.admitted - t.rate_per_us * now + t.best;
            let eps = 1e-9 * (1.0 + t.admitted.abs() + (t.rate_per_us * now).abs()) + 1e-6;
            if worst > t.burst + eps {
                if !t.latched {
                    t.latched = true;
                    hits.push(i);
                }
            } else {
                t.latched = false;
            }
        }
        for i in hits {
            let t = &self.tiers[i];
            let window_us = self.now - t.best_t_us;
            let d = format!(
                "tier {}: c{c}'s admission makes {} records admitted in the {window_us} µs from t_us {} to {}, above burst {} + {} records/s × window = {:.3}",
                t.name,
                t.admitted - t.best_before,
                t.best_t_us,
                self.now,
                t.burst,
                t.rate_per_us * 1e6,
                t.burst + t.rate_per_us * window_us as f64
            );
            self.safety(a::RATE_BOUND, "R1", None, Some(c), d);
        }
    }

    /// R2: a refusal in one tier consumes no tokens in the others. A bucket that only ever lost
    /// tokens to admissions holds, at any moment, `burst - max(0, worst window ending now)` (the
    /// same quantity R1 bounds). A tier that refuses `n` records while that level is at least
    /// `n + 1` (one token of slack for rounding) has lost tokens to something other than an
    /// admission: a refusal elsewhere on the path took them. Judged on the refusing consumer's
    /// own tier (`consumer:c<N>`) only: how a global or per-topic bound is shared among the
    /// consumers is the limiter's business, not the history's.
    fn token_refused(&mut self, c: u32, tier: &str, n: u32) {
        if tier != format!("consumer:c{c}") {
            return;
        }
        let now = self.now as f64;
        let mut hits = Vec::new();
        for t in self.tiers.iter().filter(|t| t.name == tier) {
            // The candidate window starting now is empty (0); `best` covers earlier starts.
            let worst = (t.admitted - t.rate_per_us * now
                + t.best.max(t.rate_per_us * now - t.admitted))
            .max(0.0);
            let level = t.burst - worst;
            if level >= n as f64 + 1.0 {
                hits.push((t.name.clone(), level, t.admitted));
            }
        }
        for (name, level, admitted) in hits {
            let d = format!(
                "tier {name}: refused c{c} {n} record(s) at t_us {} although its {admitted} admissions so far leave it {level:.3} tokens: tokens left the bucket without an admission (a refusal in another tier took them)",
                self.now
            );
            self.safety(a::RATE_BOUND, "R2", None, Some(c), d);
        }
    }

    // ---- lag and liveness ---------------------------------------------------------------------

    fn lag(&mut self, p: usize, hw: u64, committed: u64) {
        let part = &mut self.parts[p];
        let prev = part.lag.last_lag();
        let lag = part.lag.push(self.now, hw, committed);
        self.total_lag = self.total_lag.saturating_sub(prev).saturating_add(lag);
        // Position lag: records the consumers have yet to get through. Committed lag also
        // counts what was processed since the last commit (a sawtooth of rate × commit
        // interval), so recovery is judged on position; commit progress is judged separately
        // (Burrow's STOPPED, at the deadline).
        let next = part.done.max().map_or(0, |m| m + 1);
        let pos = hw.saturating_sub(next);
        let prev_pos = std::mem::replace(&mut part.pos_lag, pos);
        // Stalls: records waiting and no progress for STALL_MIN_MS.
        if pos == 0 || next > part.progress_next {
            part.progress_next = part.progress_next.max(next);
            part.progress_at_us = self.now;
            if let Some(mut s) = part.stall.take() {
                s.to_us = Some(self.now);
                list_stall(&mut self.stalls, &mut self.stalls_unlisted, s);
            }
        } else if let Some(s) = &mut part.stall {
            s.lag_max = s.lag_max.max(pos);
        } else if self.now.saturating_sub(part.progress_at_us) >= STALL_MIN_MS * 1_000 {
            part.stall = Some(Stall {
                tp: part.name.clone(),
                from_us: part.progress_at_us,
                to_us: None,
                owners: part.owners.iter().map(|&o| tp_consumer(o)).collect(),
                lag_max: pos,
            });
        }
        self.total_pos_lag = self
            .total_pos_lag
            .saturating_sub(prev_pos)
            .saturating_add(pos);
        self.summary.max_lag_records = self.summary.max_lag_records.max(self.total_lag);
        self.summary.max_partition_lag_records = self.summary.max_partition_lag_records.max(lag);
        if let Some(t0) = self.liveness_start {
            if self.recovered_at.is_none() && self.total_pos_lag <= self.bounds.lag_ok_records {
                self.recovered_at = Some(self.now);
                self.summary.recovery_time_ms = Some((self.now - t0) / 1000);
            }
        }
    }

    fn deadline_us(&self) -> Option<u64> {
        let t0 = self.liveness_start?;
        (self.bounds.recovery_deadline_ms > 0)
            .then(|| t0.saturating_add(self.bounds.recovery_deadline_ms.saturating_mul(1000)))
    }

    /// Once the recovery deadline has passed, judge recovery (once).
    fn check_deadline(&mut self) {
        if self.deadline_checked {
            return;
        }
        if let Some(d) = self.deadline_us() {
            if self.now >= d {
                self.judge_recovery(d, None);
            }
        }
    }

    /// Judges recovery at `at`: the deadline, or earlier when the run ended before it (`early`
    /// says how, for the report).
    fn judge_recovery(&mut self, at: u64, early: Option<&str>) {
        self.deadline_checked = true;
        let ms = self.bounds.recovery_deadline_ms;
        let ok = self.bounds.lag_ok_records;
        let when = match early {
            None => format!("{ms} ms into the liveness phase"),
            Some(how) => {
                let into = at.saturating_sub(self.liveness_start.unwrap_or(at)) / 1_000;
                format!("{into} ms into the liveness phase, when {how} (before the {ms} ms deadline)")
            }
        };
        let recovered_in_time = self.recovered_at.is_some_and(|r| r <= at);
        if !recovered_in_time {
            let lag = self.total_pos_lag;
            let trend = self.drain_trend(at);
            self.emit(a::LAG_NOT_RECOVERED, "liveness", Severity::Liveness, Some(at), None, None, format!("total position lag (records not yet processed) {lag} still above lag_ok_records {ok} {when}; {trend}"));
        }
        // Commits must move too: a partition whose committed offset has not advanced for the whole
        // deadline (or never) while it lags by more than `lag_ok_records` is Burrow's STOPPED.
        let stopped: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.subscribed)
            .map(|p| p.lag.evaluate(&p.name, at, ms))
            .filter(|pl| pl.status == LagStatus::Stopped && pl.last_lag > ok)
            .map(|pl| {
                format!(
                    "{} (lag {}, committed {})",
                    pl.tp, pl.last_lag, pl.last_committed
                )
            })
            .collect();
        self.partitions_not_recovered(at, "STOPPED (committed offset not advancing while lagging)", &stopped, &when);
        if self.cons.is_empty() && self.chans.is_empty() {
            return; // no consumer ever appeared: ownership is not judged
        }
        let unowned: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.subscribed && p.owners.is_empty())
            .map(|p| p.name.clone())
            .collect();
        self.partitions_not_recovered(at, "subscribed and unassigned", &unowned, &when);
    }

    /// How the total lag moved over the liveness phase up to `at`, so that a report tells a group
    /// that is stuck from one that drains too slowly for the deadline (capacity, not a fault).
    fn drain_trend(&self, at: u64) -> String {
        let (l0, l1, ok) = (self.liveness_start_lag, self.total_pos_lag, self.bounds.lag_ok_records);
        let secs = at.saturating_sub(self.liveness_start.unwrap_or(at)) as f64 / 1e6;
        if l1 >= l0 || secs <= 0.0 {
            return format!("not draining: it was {l0} when the liveness phase began");
        }
        let rate = (l0 - l1) as f64 / secs;
        let more_s = (l1 - ok) as f64 / rate;
        let more = if more_s < 10.0 { format!("{more_s:.1}") } else { format!("{more_s:.0}") };
        format!(
            "draining too slowly: down from {l0} when the liveness phase began, {rate:.0} records/s on average, so about {more} s more to reach {ok}"
        )
    }

    /// One `lag-not-recovered` naming the partitions in `which` state at the deadline `at`.
    fn partitions_not_recovered(&mut self, at: u64, state: &str, which: &[String], when: &str) {
        if which.is_empty() {
            return;
        }
        self.emit(
            a::LAG_NOT_RECOVERED,
            "liveness",
            Severity::Liveness,
            Some(at),
            None,
            None,
            format!("{} partition(s) {state} {when}: {}", which.len(), which.join(", ")),
        );
    }

    // ---- end of history -------------------------------------------------------------------------

    pub fn finish(mut self) -> Report {
        let end = self.now;
        // Records acknowledged at or before this time had the whole recovery deadline to be
        // polled: unseen ones are a liveness anomaly. Later ones are counted only.
        let drain_cutoff = match (self.liveness_start, self.bounds.recovery_deadline_ms) {
            (Some(t0), 0) => Some(t0),
            (Some(t0), ms) => end
                .checked_sub(ms.saturating_mul(1000))
                .filter(|&c| c >= t0),
            (None, _) => None,
        };
        for p in 0..self.parts.len() {
            self.finish_values(p, drain_cutoff);
            self.finish_dropped(p);
        }
        if self.liveness_start.is_some()
            && !self.deadline_checked
            && self.bounds.recovery_deadline_ms > 0
        {
            self.judge_recovery(end, Some("the history ended"));
        }

        let mut liveness = Liveness {
            phase_start_us: self.liveness_start,
            recovered_at_us: self.recovered_at,
            recovery_time_ms: self.summary.recovery_time_ms,
            ..Liveness::default()
        };
        for part in &self.parts {
            let pl = part
                .lag
                .evaluate(&part.name, end, self.bounds.recovery_deadline_ms);
            liveness.overall = liveness.overall.max(pl.status);
            liveness.partitions.push(pl);
        }
        liveness.partitions.sort_by(|x, y| x.tp.cmp(&y.tp));
        for part in &mut self.parts {
            if let Some(s) = part.stall.take() {
                list_stall(&mut self.stalls, &mut self.stalls_unlisted, s);
            }
        }
        liveness.stalls = std::mem::take(&mut self.stalls);
        liveness.stalls_unlisted = self.stalls_unlisted;

        let mut summary = std::mem::take(&mut self.summary);
        for (c, k) in &self.cons {
            summary
                .buffer_peak_records
                .insert(tp_consumer(*c), k.buffer_peak);
            summary
                .buffer_peak_bytes
                .insert(tp_consumer(*c), k.buffer_bytes_peak);
        }
        let anomalies: Vec<String> = crate::anomaly::ALL
            .iter()
            .filter(|n| self.present.contains(**n))
            .map(|s| s.to_string())
            .collect();
        Report {
            violations: self.violations,
            violations_unlisted: self.unlisted,
            counts: self.counts,
            anomalies,
            expected_seen: Vec::new(),
            expected_missing: Vec::new(),
            unexpected: Vec::new(),
            liveness,
            summary,
            input_errors: self.input_errors,
        }
        .with_expectations(&self.expect)
    }

    /// lost-write and unseen for one partition.
    fn finish_values(&mut self, p: usize, drain_cutoff: Option<u64>) {
        let part = &self.parts[p];
        let max_read = part.max_read;
        let mut lost: Vec<(u64, u32, u64, u64)> = Vec::new(); // (offset, producer, seq, ack_t)
        let mut unseen: Vec<(u64, u32, u64, u64)> = Vec::new();
        for (&producer, vals) in &part.vals {
            for (seq, v) in vals.iter() {
                if !v.acked || v.read {
                    continue;
                }
                let item = (v.ack_offset, producer, seq, v.ack_t);
                if max_read.is_some_and(|m| v.ack_offset <= m) {
                    lost.push(item);
                } else {
                    unseen.push(item);
                }
            }
        }
        lost.sort();
        unseen.sort();
        let name = part.name.clone();
        self.summary.records_unseen += unseen.len() as u64;
        if !lost.is_empty() {
            let offs: Vec<u64> = lost.iter().map(|l| l.0).collect();
            let (o, pr, s, t) = lost[0];
            let t_first = lost.iter().map(|l| l.3).min();
            self.emit(
                a::LOST_WRITE,
                "lost-write",
                Severity::Safety,
                t_first.or(Some(t)),
                Some(p),
                None,
                format!("{name}: {} acknowledged record(s) at offsets {} never read, though offsets up to {} were read (first: producer {pr} seq {s} acked at offset {o})", lost.len(), ranges(&offs), max_read.unwrap_or(0)),
            );
        }
        let (overdue, recent): (Vec<_>, Vec<_>) = unseen
            .into_iter()
            .partition(|u| drain_cutoff.is_some_and(|c| u.3 <= c));
        for (group, sev, why) in [
            (
                overdue,
                Severity::Liveness,
                "though acknowledged a full recovery deadline before the end of the liveness phase",
            ),
            (
                recent,
                Severity::Info,
                if drain_cutoff.is_some() {
                    "acknowledged too late for the liveness phase to drain them (counted, not an anomaly)"
                } else {
                    "and the history has no full liveness phase (counted, not an anomaly)"
                },
            ),
        ] {
            if group.is_empty() {
                continue;
            }
            let offs: Vec<u64> = group.iter().map(|l| l.0).collect();
            let t_first = group.iter().map(|l| l.3).min();
            self.emit(
                a::UNSEEN,
                "unseen",
                sev,
                t_first,
                Some(p),
                None,
                format!(
                    "{name}: {} acknowledged record(s) at offsets {} never polled, {why}",
                    group.len(),
                    ranges(&offs)
                ),
            );
        }
    }

    /// dropped-record: fetched, never processed OK nor dead-lettered, while later offsets of the
    /// partition were. Fetched records at the end of the partition are pending, not dropped.
    fn finish_dropped(&mut self, p: usize) {
        let part = &self.parts[p];
        let max_done = part.done.max();
        let mut dropped = Vec::new();
        let mut first_t = None;
        let mut pending = 0;
        // Non-blocking retries: a record whose last attempt failed with attempts left is parked
        // for its retry, overtaken by later offsets by design: pending, not dropped.
        let max_attempts = self.nonblocking_max_attempts.unwrap_or(0);
        for (o, s) in part.slots.iter() {
            if !s.fetched || s.done {
                continue;
            }
            let parked = s.failed_attempt != 0 && s.failed_attempt < max_attempts;
            if max_done.is_some_and(|m| o < m) && !parked {
                dropped.push(o);
                first_t = Some(first_t.map_or(s.fetch_t, |t: u64| t.min(s.fetch_t)));
            } else {
                pending += 1;
            }
        }
        self.summary.records_pending_at_end += pending;
        if !dropped.is_empty() {
            let name = part.name.clone();
            self.emit(
                a::DROPPED_RECORD,
                "dropped-record",
                Severity::Safety,
                first_t,
                Some(p),
                None,
                format!("{name}: {} fetched record(s) at offsets {} neither processed nor dead-lettered, though later offsets up to {} were", dropped.len(), ranges(&dropped), max_done.unwrap_or(0)),
            );
        }
    }
}
