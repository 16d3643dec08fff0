//! One replica's log of one partition: contiguous runs of records `(offset, producer, seq, count)`
//! tagged with the leader epoch that wrote them. Adjacent runs of the same producer with
//! consecutive seqs and the same epoch merge, so a partition written by one producer is a handful
//! of runs however long the run lasts (memory stays flat).

use sluice_core::history::Run;

/// A run of records as stored in a log (a history [`Run`] plus the leader epoch that wrote it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRun {
    pub offset: u64,
    pub producer: u32,
    pub seq: u64,
    pub count: u32,
    pub epoch: u32,
}

impl LogRun {
    pub fn end(&self) -> u64 {
        self.offset + self.count as u64
    }
    pub fn run(&self) -> Run {
        Run {
            offset: self.offset,
            producer: self.producer,
            seq: self.seq,
            count: self.count,
        }
    }
    /// Offsets `lo..hi` of this run (within it), their seqs aligned with them.
    fn slice(&self, lo: u64, hi: u64) -> LogRun {
        LogRun {
            offset: lo,
            seq: self.seq + (lo - self.offset),
            count: (hi - lo) as u32,
            ..*self
        }
    }
}

/// Runs read from a log for one partition of a reply: mostly one (adjacent runs merge), kept
/// inline so that a reply costs no allocation per partition.
pub type Runs = smallvec::SmallVec<[LogRun; 2]>;

/// How many runs from the end the idempotence check looks at (producers send in order, so a
/// retried batch is always near the end).
const DEDUP_SCAN_RUNS_MAX: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct ReplicaLog {
    runs: Vec<LogRun>,
    /// Log end offset: the next offset to be written.
    pub leo: u64,
    /// High watermark: offsets below it are committed (visible to consumers).
    pub hw: u64,
    /// Offsets below this survive a crash (fsynced, or flushed by the OS).
    pub synced: u64,
    /// Leader only: the next offset to assign (`leo` plus appends waiting for the disk).
    pub next_offset: u64,
    /// `(epoch, start offset)` for every epoch present, ascending.
    epochs: Vec<(u32, u64)>,
}

impl ReplicaLog {
    pub fn runs(&self) -> &[LogRun] {
        &self.runs
    }

    /// Appends a run at the log end (its offset must equal `leo`).
    pub fn append(&mut self, r: LogRun) {
        debug_assert_eq!(r.offset, self.leo, "appends are contiguous");
        if r.count == 0 {
            return;
        }
        if self.epochs.last().map(|e| e.0) != Some(r.epoch) {
            debug_assert!(
                self.epochs.last().is_none_or(|e| e.0 < r.epoch),
                "epochs only grow"
            );
            self.epochs.push((r.epoch, r.offset));
        }
        self.leo = r.end();
        self.next_offset = self.next_offset.max(self.leo);
        if let Some(last) = self.runs.last_mut() {
            if last.producer == r.producer
                && last.epoch == r.epoch
                && last.seq + last.count as u64 == r.seq
                && last.end() == r.offset
                && (last.count as u64 + r.count as u64) <= u32::MAX as u64
            {
                last.count += r.count;
                return;
            }
        }
        self.runs.push(r);
    }

    /// Drops every offset `>= to`.
    pub fn truncate(&mut self, to: u64) {
        if to >= self.leo {
            return;
        }
        let keep = self.runs.partition_point(|r| r.offset < to);
        self.runs.truncate(keep);
        if let Some(last) = self.runs.last_mut() {
            if last.end() > to {
                last.count = (to - last.offset) as u32;
            }
        }
        self.epochs.retain(|&(_, start)| start < to);
        self.leo = to;
        self.next_offset = to;
        self.hw = self.hw.min(to);
        self.synced = self.synced.min(to);
    }

    pub fn last_epoch(&self) -> u32 {
        self.epochs.last().map(|e| e.0).unwrap_or(0)
    }

    /// The end offset of `epoch` in this log (KIP-101/KIP-320): the start of the first later epoch,
    /// or the log end when none is later.
    pub fn end_offset_for_epoch(&self, epoch: u32) -> u64 {
        self.epochs
            .iter()
            .find(|&&(e, _)| e > epoch)
            .map(|&(_, s)| s)
            .unwrap_or(self.leo)
    }

    /// Records from `from` up to (not including) `upto`, at most `max_records`.
    pub fn read(&self, from: u64, upto: u64, max_records: u64, out: &mut Runs) -> u64 {
        let upto = upto.min(self.leo).min(from.saturating_add(max_records));
        if from >= upto {
            return 0;
        }
        let mut i = self.runs.partition_point(|r| r.end() <= from);
        let mut n = 0;
        while i < self.runs.len() && self.runs[i].offset < upto {
            let r = self.runs[i];
            let lo = r.offset.max(from);
            let hi = r.end().min(upto);
            out.push(r.slice(lo, hi));
            n += hi - lo;
            i += 1;
        }
        n
    }

    /// [`read`](Self::read) within a byte budget: at most `max_bytes` of records, a record of
    /// producer `p` holding `record_bytes[p]` bytes, except that with `min_one` the first record is
    /// taken whatever its size (KIP-74: the first partition with data always returns some).
    /// Returns the records and bytes read.
    #[allow(clippy::too_many_arguments)]
    pub fn read_sized(
        &self,
        from: u64,
        upto: u64,
        max_records: u64,
        max_bytes: u64,
        min_one: bool,
        record_bytes: &[u64],
        out: &mut Vec<LogRun>,
    ) -> (u64, u64) {
        let upto = upto.min(self.leo).min(from.saturating_add(max_records));
        if from >= upto {
            return (0, 0);
        }
        let mut i = self.runs.partition_point(|r| r.end() <= from);
        let (mut n, mut bytes) = (0u64, 0u64);
        while i < self.runs.len() && self.runs[i].offset < upto {
            let r = self.runs[i];
            let size = record_bytes[r.producer as usize];
            let lo = r.offset.max(from);
            let mut fit = max_bytes.saturating_sub(bytes) / size;
            if fit == 0 && n == 0 && min_one {
                fit = 1;
            }
            let hi = r.end().min(upto).min(lo + fit);
            if hi <= lo {
                break;
            }
            out.push(r.slice(lo, hi));
            n += hi - lo;
            bytes += (hi - lo) * size;
            if hi < r.end().min(upto) {
                break;
            }
            i += 1;
        }
        (n, bytes)
    }

    /// Idempotence: the offset at which `producer`'s `seq` was written, if it is among the recent
    /// runs.
    pub fn find_seq(&self, producer: u32, seq: u64) -> Option<u64> {
        for r in self.runs.iter().rev().take(DEDUP_SCAN_RUNS_MAX) {
            if r.producer == producer && seq >= r.seq && seq < r.seq + r.count as u64 {
                return Some(r.offset + (seq - r.seq));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offset: u64, producer: u32, seq: u64, count: u32, epoch: u32) -> LogRun {
        LogRun {
            offset,
            producer,
            seq,
            count,
            epoch,
        }
    }

    #[test]
    fn contiguous_runs_merge_and_reads_split() {
        let mut l = ReplicaLog::default();
        l.append(run(0, 0, 0, 5, 1));
        l.append(run(5, 0, 5, 5, 1));
        l.append(run(10, 1, 0, 3, 1));
        l.append(run(13, 1, 3, 2, 2));
        assert_eq!(l.runs().len(), 3);
        let mut out = Runs::new();
        assert_eq!(l.read(3, 100, 9, &mut out), 9);
        assert_eq!(out.to_vec(), vec![run(3, 0, 3, 7, 1), run(10, 1, 0, 2, 1)]);
        assert_eq!(l.find_seq(0, 7), Some(7));
        assert_eq!(l.find_seq(1, 4), Some(14));
        assert_eq!(l.find_seq(1, 5), None);
    }

    /// Byte budgets: whole records only, across producers of different sizes; the first record
    /// whatever its size with `min_one`, nothing without it.
    #[test]
    fn sized_reads_stop_at_the_byte_budget_but_return_one_record_first() {
        let mut l = ReplicaLog::default();
        l.append(run(0, 0, 0, 4, 1)); // 100-byte records
        l.append(run(4, 1, 0, 4, 1)); // 1 000-byte records
        let sizes = [100, 1_000];
        let mut out = Vec::new();
        assert_eq!(l.read_sized(0, 8, 100, 1_350, false, &sizes, &mut out), (4, 400), "whole records only");
        assert_eq!(out, vec![run(0, 0, 0, 4, 1)]);
        out.clear();
        assert_eq!(l.read_sized(0, 8, 100, 1_450, false, &sizes, &mut out), (5, 1_400));
        assert_eq!(out, vec![run(0, 0, 0, 4, 1), run(4, 1, 0, 1, 1)]);
        out.clear();
        assert_eq!(l.read_sized(0, 8, 3, 10_000, false, &sizes, &mut out), (3, 300), "the record limit");
        out.clear();
        assert_eq!(l.read_sized(5, 8, 100, 999, false, &sizes, &mut out), (0, 0));
        assert!(out.is_empty());
        assert_eq!(l.read_sized(5, 8, 100, 999, true, &sizes, &mut out), (1, 1_000), "min_one");
        assert_eq!(out, vec![run(5, 1, 1, 1, 1)]);
        out.clear();
        assert_eq!(l.read_sized(5, 8, 100, 2_500, true, &sizes, &mut out), (2, 2_000), "min_one adds nothing beyond the budget");
    }

    #[test]
    fn truncation_and_epoch_ends() {
        let mut l = ReplicaLog::default();
        l.append(run(0, 0, 0, 10, 1));
        l.append(run(10, 0, 10, 10, 3));
        l.hw = 15;
        assert_eq!(l.end_offset_for_epoch(1), 10);
        assert_eq!(l.end_offset_for_epoch(2), 10);
        assert_eq!(l.end_offset_for_epoch(3), 20);
        l.truncate(7);
        assert_eq!((l.leo, l.hw, l.last_epoch()), (7, 7, 1));
        assert_eq!(l.runs(), &[run(0, 0, 0, 7, 1)]);
    }
}
