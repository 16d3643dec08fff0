//! The offset ledger (rules K1, K2): per partition, which offsets are done (processed or
//! dead-lettered), possibly out of order, and the commit that may be sent: the contiguous done prefix
//! + 1, never beyond. Tracks commits in flight and their outcome (acked, failed, unknown).
//!
//! Per tracked partition the ledger keeps:
//! - `next`: the first offset not yet done. Everything in `start..next` is done; this is the
//!   committable offset (K1).
//! - `ranges`: done ranges above `next`, disjoint, non-adjacent (merged on insert), as a BTreeMap
//!   `first → end` (end exclusive). At most `pending_ranges_max` of them; one more is
//!   [`LedgerError::TooManyRanges`] and changes nothing. A range that reaches `next` is folded in.
//! - `acked`: the highest commit the broker acknowledged (initially `start`, the offset the
//!   partition resumed at, which was itself committed or is the reset position).
//! - `in_flight`: the highest commit sent and not yet answered.
//! - `maybe`: the highest commit whose outcome is unknown (timed out): it may have been applied.
//!
//! Commit outcomes:
//! - `commit_acked(o)` raises `acked` to `o`; an older commit's ack arriving after a newer one
//!   (a lower `o`) is ignored, so the recorded committed offset never goes backwards
//!   (librdkafka#2782 is a committed offset going backwards after a rebalance).
//! - `commit_failed(o, unknown)` clears the in-flight commit `o` (the partition becomes dirty
//!   again, so the commit is re-sent). With `unknown = true` the commit may have been applied:
//!   `committed()` still answers the last *acked* offset — the only one K2 may rely on — while
//!   `maybe_committed()` reports the unknown one; a later acked commit supersedes both.
//!
//! Planted bug [`Bug::CommitBeyondProcessed`]: `committable` answers the highest done offset + 1,
//! even when earlier offsets are not done (breaks K1).

use std::collections::BTreeMap;
use std::fmt;

use crate::bugs::{Bug, Bugs};
use crate::types::{Offset, Tp, TpIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    /// `done` for an offset below the partition's start or already done.
    AlreadyDone { tp: Tp, offset: Offset },
    /// The partition is not tracked (not assigned).
    Unknown(Tp),
    /// More out-of-order completions than `pending_ranges_max`.
    TooManyRanges { tp: Tp },
    /// `offset + count` does not fit in an offset.
    Overflow { tp: Tp, offset: Offset, count: u32 },
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::AlreadyDone { tp, offset } => {
                write!(f, "{tp} offset {offset} is already done or below the start")
            }
            LedgerError::Unknown(tp) => write!(f, "{tp} is not tracked"),
            LedgerError::TooManyRanges { tp } => {
                write!(
                    f,
                    "{tp} has too many out-of-order done ranges (pending_ranges_max)"
                )
            }
            LedgerError::Overflow { tp, offset, count } => {
                write!(f, "{tp} offset {offset} + {count} overflows")
            }
        }
    }
}

impl std::error::Error for LedgerError {}

#[derive(Clone, Debug)]
struct Part {
    start: Offset,
    next: Offset,
    ranges: BTreeMap<Offset, Offset>,
    /// Highest done offset + 1 (== `next` when there are no gaps).
    done_end: Offset,
    acked: Offset,
    in_flight: Option<Offset>,
    maybe: Option<Offset>,
}

/// Cost: partitions live in a `Vec` sorted by `Tp` (the order `tracked` and `dirty` report), found
/// through a direct index by (topic, partition), so the per-completion calls (`done`,
/// `committable`, commit outcomes) do no tree search; an in-order completion with no ranges
/// pending touches no map at all. `track` and `untrack` (ownership changes) are O(n).
pub struct Ledger {
    pending_ranges_max: usize,
    /// At most one entry per tracked partition, sorted by `Tp`.
    parts: Vec<(Tp, Part)>,
    index: TpIndex,
    bugs: Bugs,
}

impl Ledger {
    /// `pending_ranges_max` bounds the out-of-order ranges kept per partition.
    pub fn new(pending_ranges_max: usize) -> Self {
        Ledger {
            pending_ranges_max,
            parts: Vec::new(),
            index: TpIndex::default(),
            bugs: Bugs::NONE,
        }
    }

    /// Enables planted bugs (only [`Bug::CommitBeyondProcessed`] affects the ledger).
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub fn pending_ranges_max(&self) -> usize {
        self.pending_ranges_max
    }

    /// Starts tracking `tp` from `start` (the committed offset it resumed at, K2).
    /// Tracking an already tracked partition starts it afresh.
    pub fn track(&mut self, tp: Tp, start: Offset) {
        let part = Part {
            start,
            next: start,
            ranges: BTreeMap::new(),
            done_end: start,
            acked: start,
            in_flight: None,
            maybe: None,
        };
        match self.parts.binary_search_by(|(t, _)| t.cmp(&tp)) {
            Ok(i) => self.parts[i].1 = part,
            Err(i) => {
                self.parts.insert(i, (tp, part));
                self.index.rebuild(&self.parts);
            }
        }
    }

    /// Stops tracking `tp` (revoked); returns the offset that should have been committed.
    pub fn untrack(&mut self, tp: Tp) -> Option<Offset> {
        let c = self.committable(tp);
        if let Ok(i) = self.parts.binary_search_by(|(t, _)| t.cmp(&tp)) {
            self.parts.remove(i);
            self.index.rebuild(&self.parts);
        }
        c
    }

    #[inline]
    fn get(&self, tp: Tp) -> Option<&Part> {
        self.index.find(&self.parts, tp).map(|i| &self.parts[i].1)
    }

    #[inline]
    fn get_mut(&mut self, tp: Tp) -> Option<&mut Part> {
        self.index.find(&self.parts, tp).map(|i| &mut self.parts[i].1)
    }

    pub fn is_tracked(&self, tp: Tp) -> bool {
        self.get(tp).is_some()
    }

    /// Tracked partitions in order.
    pub fn tracked(&self) -> impl Iterator<Item = Tp> + '_ {
        self.parts.iter().map(|(tp, _)| *tp)
    }

    /// Offsets `offset..offset+count` are done (processed or dead-lettered), in any order.
    /// `count = 0` is a no-op. On error nothing changes: after `TooManyRanges` the caller still
    /// holds a completion it must report again later. Out-of-order ranges never outnumber the
    /// records in flight at once, so `pending_ranges_max` ≥ that number rules the error out.
    #[inline]
    pub fn done(&mut self, tp: Tp, offset: Offset, count: u32) -> Result<(), LedgerError> {
        let Some(i) = self.index.find(&self.parts, tp) else { return Err(LedgerError::Unknown(tp)) };
        if count == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(u64::from(count))
            .ok_or(LedgerError::Overflow { tp, offset, count })?;
        let p = &mut self.parts[i].1;
        if offset == p.next && p.ranges.is_empty() {
            // In order with nothing pending above (the usual case): the prefix just grows.
            p.next = end;
            p.done_end = p.done_end.max(end);
            return Ok(());
        }
        self.done_with_ranges(i, tp, offset, end)
    }

    /// [`Ledger::done`] of `offset..end` for the partition at position `i`, when it is out of
    /// order or ranges are pending.
    fn done_with_ranges(&mut self, i: usize, tp: Tp, offset: Offset, end: Offset) -> Result<(), LedgerError> {
        let max = self.pending_ranges_max;
        let p = &mut self.parts[i].1;
        if offset < p.next {
            return Err(LedgerError::AlreadyDone { tp, offset });
        }
        // Ranges are disjoint, so if any overlaps `offset..end`, the one starting last before
        // `end` does.
        if let Some((&first, &last_end)) = p.ranges.range(..end).next_back() {
            if last_end > offset {
                return Err(LedgerError::AlreadyDone {
                    tp,
                    offset: offset.max(first),
                });
            }
        }
        if offset == p.next {
            p.next = end;
            while let Some(e) = p.ranges.remove(&p.next) {
                p.next = e;
            }
        } else {
            let pred = p
                .ranges
                .range(..offset)
                .next_back()
                .filter(|(_, &e)| e == offset)
                .map(|(&f, _)| f);
            let succ = p.ranges.get(&end).copied();
            let after =
                p.ranges.len() + 1 - usize::from(pred.is_some()) - usize::from(succ.is_some());
            if after > max {
                return Err(LedgerError::TooManyRanges { tp });
            }
            let first = pred.unwrap_or(offset);
            let last = match succ {
                Some(e) => {
                    p.ranges.remove(&end);
                    e
                }
                None => end,
            };
            p.ranges.insert(first, last);
        }
        p.done_end = p.done_end.max(end).max(p.next);
        debug_assert!(p.ranges.len() <= max);
        debug_assert!(p.ranges.keys().next().is_none_or(|&f| f > p.next));
        Ok(())
    }

    /// Whether `offset` of `tp` is done (`None` if `tp` is not tracked). Offsets below the start
    /// count as done.
    pub fn is_done(&self, tp: Tp, offset: Offset) -> Option<bool> {
        let p = self.get(tp)?;
        Some(
            offset < p.next
                || p.ranges
                    .range(..=offset)
                    .next_back()
                    .is_some_and(|(_, &e)| e > offset),
        )
    }

    /// Out-of-order done ranges kept for `tp` (bounded by `pending_ranges_max`).
    pub fn pending_ranges(&self, tp: Tp) -> Option<usize> {
        self.get(tp).map(|p| p.ranges.len())
    }

    /// The offset to commit for `tp`: contiguous done prefix + 1, i.e. the first not-done offset (K1).
    pub fn committable(&self, tp: Tp) -> Option<Offset> {
        self.get(tp).map(|p| self.committable_of(p))
    }

    #[inline]
    fn committable_of(&self, p: &Part) -> Offset {
        if self.bugs.has(Bug::CommitBeyondProcessed) {
            p.done_end
        } else {
            p.next
        }
    }

    /// Partitions whose committable offset is ahead of the last acked or in-flight commit.
    /// Appends `(tp, committable)` in partition order.
    pub fn dirty(&self, out: &mut Vec<(Tp, Offset)>) {
        for (tp, p) in &self.parts {
            let (tp, c) = (*tp, self.committable_of(p));
            if c > p.acked && p.in_flight.is_none_or(|f| c > f) {
                out.push((tp, c));
            }
        }
    }

    pub fn commit_sent(&mut self, tp: Tp, offset: Offset) {
        if let Some(p) = self.get_mut(tp) {
            p.in_flight = Some(p.in_flight.map_or(offset, |f| f.max(offset)));
        }
    }

    /// The broker acknowledged the commit of `offset`. An ack older than the recorded one is
    /// ignored (committed offsets never go backwards). Acks for untracked partitions are ignored.
    pub fn commit_acked(&mut self, tp: Tp, offset: Offset) {
        if let Some(p) = self.get_mut(tp) {
            p.acked = p.acked.max(offset);
            if p.in_flight.is_some_and(|f| f <= p.acked) {
                p.in_flight = None;
            }
            if p.maybe.is_some_and(|m| m <= p.acked) {
                p.maybe = None;
            }
        }
    }

    /// The commit failed; `unknown` = its reply was lost and it may have been applied.
    pub fn commit_failed(&mut self, tp: Tp, offset: Offset, unknown: bool) {
        if let Some(p) = self.get_mut(tp) {
            if p.in_flight == Some(offset) {
                p.in_flight = None;
            }
            if unknown && offset > p.acked {
                p.maybe = Some(p.maybe.map_or(offset, |m| m.max(offset)));
            }
        }
    }

    /// The last offset known to be committed.
    pub fn committed(&self, tp: Tp) -> Option<Offset> {
        self.get(tp).map(|p| p.acked)
    }

    /// The highest commit with an unknown outcome above the acked one, if any: the broker may hold
    /// this offset instead of [`Ledger::committed`].
    pub fn maybe_committed(&self, tp: Tp) -> Option<Offset> {
        self.get(tp).and_then(|p| p.maybe)
    }

    /// The highest commit sent and not yet answered.
    pub fn in_flight(&self, tp: Tp) -> Option<Offset> {
        self.get(tp).and_then(|p| p.in_flight)
    }

    /// The offset `tp` started at.
    pub fn start(&self, tp: Tp) -> Option<Offset> {
        self.get(tp).map(|p| p.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: Tp = Tp::new(0, 0);

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Done(Offset, u32),
        Sent(Offset),
        Acked(Offset),
        Failed(Offset, bool),
    }

    /// Applies `ops` to a ledger tracking `TP` from 10 with `pending_ranges_max = 2`, and checks
    /// each op's result and the state after the last: (committable, committed, dirty).
    fn check(
        bugs: Bugs,
        ops: &[(Op, Result<(), LedgerError>)],
        expect: (Offset, Offset, Vec<(Tp, Offset)>),
    ) {
        let mut l = Ledger::new(2).with_bugs(bugs);
        l.track(TP, 10);
        for &(op, ref want) in ops {
            let got = match op {
                Op::Done(o, n) => l.done(TP, o, n),
                Op::Sent(o) => {
                    l.commit_sent(TP, o);
                    Ok(())
                }
                Op::Acked(o) => {
                    l.commit_acked(TP, o);
                    Ok(())
                }
                Op::Failed(o, u) => {
                    l.commit_failed(TP, o, u);
                    Ok(())
                }
            };
            assert_eq!(&got, want, "{op:?} in {ops:?}");
        }
        let mut dirty = Vec::new();
        l.dirty(&mut dirty);
        assert_eq!(
            (l.committable(TP).unwrap(), l.committed(TP).unwrap(), dirty),
            expect,
            "{ops:?}"
        );
    }

    #[test]
    fn ledger_table() {
        use Op::*;
        let ok = Ok(());
        let n = Bugs::NONE;
        check(n, &[], (10, 10, vec![]));
        check(n, &[(Done(10, 3), ok)], (13, 10, vec![(TP, 13)]));
        check(n, &[(Done(12, 1), ok)], (10, 10, vec![]));
        check(
            n,
            &[(Done(12, 1), ok), (Done(10, 2), ok)],
            (13, 10, vec![(TP, 13)]),
        );
        check(
            n,
            &[(
                Done(9, 1),
                Err(LedgerError::AlreadyDone { tp: TP, offset: 9 }),
            )],
            (10, 10, vec![]),
        );
        check(
            n,
            &[
                (Done(12, 3), ok),
                (
                    Done(11, 2),
                    Err(LedgerError::AlreadyDone { tp: TP, offset: 12 }),
                ),
            ],
            (10, 10, vec![]),
        );
        check(
            n,
            &[
                (Done(12, 1), ok),
                (Done(14, 1), ok),
                (Done(16, 1), Err(LedgerError::TooManyRanges { tp: TP })),
                (Done(13, 1), ok),
                (Done(16, 1), ok),
                (Done(10, 2), ok),
            ],
            (15, 10, vec![(TP, 15)]),
        );
        check(n, &[(Done(10, 5), ok), (Sent(15), ok)], (15, 10, vec![]));
        check(
            n,
            &[(Done(10, 5), ok), (Sent(15), ok), (Acked(15), ok)],
            (15, 15, vec![]),
        );
        check(
            n,
            &[(Done(10, 5), ok), (Sent(12), ok), (Done(15, 1), ok)],
            (16, 10, vec![(TP, 16)]),
        );
        check(
            n,
            &[(Done(10, 5), ok), (Sent(15), ok), (Failed(15, false), ok)],
            (15, 10, vec![(TP, 15)]),
        );
        check(
            n,
            &[(Done(10, 5), ok), (Sent(15), ok), (Failed(15, true), ok)],
            (15, 10, vec![(TP, 15)]),
        );
        // An older commit's ack arriving after a newer one's is ignored.
        check(
            n,
            &[
                (Done(10, 5), ok),
                (Sent(12), ok),
                (Sent(15), ok),
                (Acked(15), ok),
                (Acked(12), ok),
            ],
            (15, 15, vec![]),
        );
        check(
            Bugs::only(Bug::CommitBeyondProcessed),
            &[(Done(12, 3), ok)],
            (15, 10, vec![(TP, 15)]),
        );
    }

    #[test]
    fn unknown_outcome_is_superseded_by_a_later_ack() {
        let mut l = Ledger::new(4);
        l.track(TP, 0);
        l.done(TP, 0, 10).unwrap();
        l.commit_sent(TP, 10);
        l.commit_failed(TP, 10, true);
        assert_eq!(
            (l.committed(TP), l.maybe_committed(TP)),
            (Some(0), Some(10))
        );
        l.commit_sent(TP, 10);
        l.commit_acked(TP, 10);
        assert_eq!((l.committed(TP), l.maybe_committed(TP)), (Some(10), None));
    }

    #[test]
    fn untracked_partitions_are_errors_or_none() {
        let mut l = Ledger::new(4);
        let other = Tp::new(1, 3);
        assert_eq!(l.done(other, 0, 1), Err(LedgerError::Unknown(other)));
        assert_eq!(l.committable(other), None);
        l.track(other, 5);
        l.done(other, 5, 2).unwrap();
        assert_eq!(l.untrack(other), Some(7));
        assert_eq!(l.committed(other), None);
        assert_eq!(l.done(TP, u64::MAX, 2), Err(LedgerError::Unknown(TP)));
        l.track(TP, u64::MAX - 1);
        assert_eq!(
            l.done(TP, u64::MAX, 2),
            Err(LedgerError::Overflow {
                tp: TP,
                offset: u64::MAX,
                count: 2
            })
        );
        assert_eq!(l.is_done(TP, u64::MAX - 1), Some(false));
    }
}
