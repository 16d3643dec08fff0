//! The offset ledger (rules K1, K2): per partition, which offsets are done (processed or
//! dead-lettered), possibly out of order, and the commit that may be sent: the contiguous done prefix
//! + 1, never beyond. Tracks commits in flight and their outcome (acked, failed, unknown).
//!
//! STUB: signatures fixed; implementation and property tests pending.

use crate::types::{Offset, Tp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    /// `done` for an offset below the partition's start or already done.
    AlreadyDone { tp: Tp, offset: Offset },
    /// The partition is not tracked (not assigned).
    Unknown(Tp),
    /// More out-of-order completions than `pending_ranges_max`.
    TooManyRanges { tp: Tp },
}

pub struct Ledger {
    _pending_ranges_max: usize,
}

impl Ledger {
    /// `pending_ranges_max` bounds the out-of-order ranges kept per partition.
    pub fn new(_pending_ranges_max: usize) -> Self {
        todo!()
    }
    /// Starts tracking `tp` from `start` (the committed offset it resumed at, K2).
    pub fn track(&mut self, _tp: Tp, _start: Offset) {
        todo!()
    }
    /// Stops tracking `tp` (revoked); returns the offset that should have been committed.
    pub fn untrack(&mut self, _tp: Tp) -> Option<Offset> {
        todo!()
    }
    /// Offsets `offset..offset+count` are done (processed or dead-lettered), in any order.
    pub fn done(&mut self, _tp: Tp, _offset: Offset, _count: u32) -> Result<(), LedgerError> {
        todo!()
    }
    /// The offset to commit for `tp`: contiguous done prefix + 1, i.e. the first not-done offset (K1).
    pub fn committable(&self, _tp: Tp) -> Option<Offset> {
        todo!()
    }
    /// Partitions whose committable offset is ahead of the last acked or in-flight commit.
    pub fn dirty(&self, _out: &mut Vec<(Tp, Offset)>) {
        todo!()
    }
    pub fn commit_sent(&mut self, _tp: Tp, _offset: Offset) {
        todo!()
    }
    pub fn commit_acked(&mut self, _tp: Tp, _offset: Offset) {
        todo!()
    }
    /// The commit failed; `unknown` = its reply was lost and it may have been applied.
    pub fn commit_failed(&mut self, _tp: Tp, _offset: Offset, _unknown: bool) {
        todo!()
    }
    /// The last offset known to be committed.
    pub fn committed(&self, _tp: Tp) -> Option<Offset> {
        todo!()
    }
}
