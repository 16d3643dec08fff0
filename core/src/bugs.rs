//! Planted bugs: deliberately broken policies that can be switched on to show that the property
//! tests and the checkers catch them. Never on by default; a run names the ones it enables
//! (`--plant NAME` on the command line), and its history says so in `Meta::settings`.

use serde::{Deserialize, Serialize};

/// One planted bug. Each names the rule it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Bug {
    /// K1: commit fetched offsets before they are processed.
    CommitBeforeProcess = 0,
    /// K1: commit the highest done offset + 1 even when earlier offsets are not done.
    CommitBeyondProcessed,
    /// K1/K2: give partitions up on revoke without committing what was processed.
    NoCommitOnRevoke,
    /// C1: fetch regardless of the credits granted.
    IgnoreCredits,
    /// R1: the token bucket refills beyond its burst.
    BucketOverfill,
    /// R2: a refusal in one tier still takes tokens from the tiers before it.
    TierLeak,
    /// R3: a restart forgets the limiter state and starts with full buckets.
    LimiterForgets,
    /// G1: under the eager protocol, keep processing buffered records of revoked partitions.
    ProcessRevoked,
    /// Buffer bound: never pause, never stop fetching (prefetch grows without bound).
    UnboundedBuffer,
    /// Nothing dropped silently: after the last retry drop the record instead of dead-lettering it.
    DropAfterRetries,
    /// K2: after (re)assignment start from the latest offset instead of the committed one.
    NoSeekOnAssign,
    /// G3: the round-robin assignor gives every partition to the first member.
    UnbalancedAssignor,
    /// K3: the worker stage hands out records behind a checkpoint barrier before alignment ends.
    BarrierOvertakes,
    /// Byte bound: count half the bytes of every fetch reply, so the buffer holds twice the bytes
    /// the pipeline believes (and its own samples report).
    UndercountBytes,
}

impl Bug {
    pub const ALL: [Bug; 14] = [
        Bug::CommitBeforeProcess,
        Bug::CommitBeyondProcessed,
        Bug::NoCommitOnRevoke,
        Bug::IgnoreCredits,
        Bug::BucketOverfill,
        Bug::TierLeak,
        Bug::LimiterForgets,
        Bug::ProcessRevoked,
        Bug::UnboundedBuffer,
        Bug::DropAfterRetries,
        Bug::NoSeekOnAssign,
        Bug::UnbalancedAssignor,
        Bug::BarrierOvertakes,
        Bug::UndercountBytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitBeforeProcess => "commit-before-process",
            Bug::CommitBeyondProcessed => "commit-beyond-processed",
            Bug::NoCommitOnRevoke => "no-commit-on-revoke",
            Bug::IgnoreCredits => "ignore-credits",
            Bug::BucketOverfill => "bucket-overfill",
            Bug::TierLeak => "tier-leak",
            Bug::LimiterForgets => "limiter-forgets",
            Bug::ProcessRevoked => "process-revoked",
            Bug::UnboundedBuffer => "unbounded-buffer",
            Bug::DropAfterRetries => "drop-after-retries",
            Bug::NoSeekOnAssign => "no-seek-on-assign",
            Bug::UnbalancedAssignor => "unbalanced-assignor",
            Bug::BarrierOvertakes => "barrier-overtakes",
            Bug::UndercountBytes => "undercount-bytes",
        }
    }

    pub fn from_name(s: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// A set of planted bugs (empty by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs(u32);

impl Bugs {
    pub const NONE: Bugs = Bugs(0);

    pub fn only(b: Bug) -> Bugs {
        Bugs(1 << b as u8)
    }
    pub fn with(self, b: Bug) -> Bugs {
        Bugs(self.0 | 1 << b as u8)
    }
    #[inline]
    pub fn has(self, b: Bug) -> bool {
        self.0 & (1 << b as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |b| self.has(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_exactly_what_was_added() {
        for b in Bug::ALL {
            assert_eq!(Bug::from_name(b.name()), Some(b));
            let s = Bugs::only(b);
            assert!(s.has(b));
            assert_eq!(s.iter().collect::<Vec<_>>(), vec![b]);
        }
        assert!(Bugs::NONE.is_empty());
        assert_eq!(Bugs::NONE.iter().count(), 0);
    }
}
