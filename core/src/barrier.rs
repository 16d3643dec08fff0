//! Aligned barrier checkpoints across pipeline stages (rule K3, Flink aligned checkpoints).
//!
//! A stage with several input channels, on receiving checkpoint `id`'s barrier on one channel, blocks
//! that channel until the barrier has arrived on every channel, then forwards the barrier downstream:
//! a barrier never overtakes records. A checkpoint is complete only when every stage acknowledged it.
//!
//! [`Aligner`] rules, for one stage:
//! - At most one checkpoint is being aligned at a time (the *current* one). Its barrier blocks each
//!   channel it arrives on; when it has arrived on every channel, `on_barrier` returns `Some(id)`
//!   and every channel is unblocked.
//! - A barrier whose id is not newer than the current or last aligned one is [`AlignError::Stale`].
//! - A barrier (or data, via [`Aligner::on_data`]) on a blocked channel is [`AlignError::Blocked`]:
//!   the caller must hold that channel's input back until alignment ends.
//! - A barrier for a newer id on an unblocked channel while an older one is being aligned aborts
//!   the older alignment (that checkpoint can never complete at this stage, as in Flink when a
//!   newer barrier arrives) and starts aligning the newer id.
//!
//! [`Coordinator`] rules: `trigger` hands out increasing ids (1, 2, …); `ack(stage, id)` returns true
//! exactly once per id, when the last of the `stages` stages acknowledges it. At most
//! `pending_checkpoints_max` checkpoints wait for acks; triggering another one aborts the oldest
//! pending. Completing `id` also aborts every older pending checkpoint (it is subsumed).

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignError {
    /// A barrier for an older or unknown checkpoint.
    Stale { id: u64 },
    /// Data on a channel that is blocked (would overtake the barrier).
    Blocked { channel: usize },
    /// `channel` is not one of this stage's inputs.
    NoSuchChannel { channel: usize, channels: usize },
}

impl fmt::Display for AlignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlignError::Stale { id } => write!(f, "barrier for stale checkpoint {id}"),
            AlignError::Blocked { channel } => {
                write!(
                    f,
                    "input on channel {channel} while it is blocked for alignment"
                )
            }
            AlignError::NoSuchChannel { channel, channels } => {
                write!(
                    f,
                    "channel {channel} does not exist (the stage has {channels})"
                )
            }
        }
    }
}

impl std::error::Error for AlignError {}

/// Alignment at one stage with `channels` inputs.
pub struct Aligner {
    /// `blocked[c]`: channel `c` delivered the current barrier and waits for the others.
    blocked: Vec<bool>,
    /// Channels blocked right now (the number of `true` in `blocked`).
    arrived: usize,
    /// The checkpoint being aligned, if any.
    current: Option<u64>,
    /// The newest checkpoint id seen (aligned or aborted); older barriers are stale.
    newest: Option<u64>,
    /// Alignments abandoned because a newer barrier arrived first.
    aborted: u64,
}

impl Aligner {
    pub fn new(channels: usize) -> Self {
        Aligner {
            blocked: vec![false; channels],
            arrived: 0,
            current: None,
            newest: None,
            aborted: 0,
        }
    }

    pub fn channels(&self) -> usize {
        self.blocked.len()
    }

    /// The checkpoint being aligned, if any.
    pub fn aligning(&self) -> Option<u64> {
        self.current
    }

    /// Alignments abandoned because a newer barrier arrived before they completed.
    pub fn aborted(&self) -> u64 {
        self.aborted
    }

    /// Whether data from `channel` may be processed now (false while it waits for alignment, and
    /// for a channel that does not exist).
    pub fn accepts(&self, channel: usize) -> bool {
        matches!(self.blocked.get(channel), Some(false))
    }

    /// Data arrived on `channel`: `Ok` if it may be processed now, `Blocked` if it must wait.
    pub fn on_data(&self, channel: usize) -> Result<(), AlignError> {
        match self.blocked.get(channel) {
            None => Err(AlignError::NoSuchChannel {
                channel,
                channels: self.blocked.len(),
            }),
            Some(true) => Err(AlignError::Blocked { channel }),
            Some(false) => Ok(()),
        }
    }

    /// A barrier `id` arrived on `channel`; returns `Some(id)` when aligned on all channels (forward
    /// it downstream and unblock every channel).
    pub fn on_barrier(&mut self, channel: usize, id: u64) -> Result<Option<u64>, AlignError> {
        let channels = self.blocked.len();
        let Some(&blocked) = self.blocked.get(channel) else {
            return Err(AlignError::NoSuchChannel { channel, channels });
        };
        if blocked {
            return Err(AlignError::Blocked { channel });
        }
        match self.current {
            Some(cur) if id == cur => {}
            Some(cur) if id < cur => return Err(AlignError::Stale { id }),
            _ => {
                if self.newest.is_some_and(|n| id <= n) {
                    return Err(AlignError::Stale { id });
                }
                if self.current.is_some() {
                    // A newer barrier overtook the alignment in progress: abandon it.
                    self.aborted += 1;
                    self.unblock_all();
                }
                self.current = Some(id);
                self.newest = Some(id);
            }
        }
        self.blocked[channel] = true;
        self.arrived += 1;
        debug_assert!(self.arrived <= channels);
        if self.arrived == channels {
            self.unblock_all();
            self.current = None;
            return Ok(Some(id));
        }
        Ok(None)
    }

    fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.arrived = 0;
    }
}

/// Default bound on checkpoints waiting for acknowledgements.
pub const PENDING_CHECKPOINTS_MAX_DEFAULT: usize = 16;

/// Tracks acknowledgements of checkpoints from `stages` stages.
pub struct Coordinator {
    stages: usize,
    pending_checkpoints_max: usize,
    next_id: u64,
    /// Pending checkpoint id → which stages acknowledged it.
    pending: BTreeMap<u64, Vec<bool>>,
    last_complete: Option<u64>,
    aborted: u64,
}

impl Coordinator {
    pub fn new(stages: usize) -> Self {
        Coordinator {
            stages,
            pending_checkpoints_max: PENDING_CHECKPOINTS_MAX_DEFAULT,
            next_id: 1,
            pending: BTreeMap::new(),
            last_complete: None,
            aborted: 0,
        }
    }

    /// Bounds the checkpoints waiting for acks (at least 1).
    pub fn with_pending_checkpoints_max(mut self, pending_checkpoints_max: usize) -> Self {
        self.pending_checkpoints_max = pending_checkpoints_max.max(1);
        self
    }

    /// Starts checkpoint and returns its id (increasing).
    pub fn trigger(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        while self.pending.len() >= self.pending_checkpoints_max {
            self.pending.pop_first();
            self.aborted += 1;
        }
        self.pending.insert(id, vec![false; self.stages]);
        id
    }

    /// Stage `stage` acknowledged `id`; returns true when `id` just became complete.
    /// Acks for unknown, aborted, complete or already acknowledged checkpoints, and from stages
    /// that do not exist, change nothing and return false.
    pub fn ack(&mut self, stage: usize, id: u64) -> bool {
        let Some(acks) = self.pending.get_mut(&id) else {
            return false;
        };
        match acks.get_mut(stage) {
            Some(a) if !*a => *a = true,
            _ => return false,
        }
        if !acks.iter().all(|a| *a) {
            return false;
        }
        // Complete: drop it and every older pending checkpoint (subsumed).
        let newer = self.pending.split_off(&(id + 1));
        let older = std::mem::replace(&mut self.pending, newer);
        self.aborted += older.len() as u64 - 1;
        debug_assert!(self.last_complete.is_none_or(|l| l < id));
        self.last_complete = Some(id);
        true
    }

    pub fn last_complete(&self) -> Option<u64> {
        self.last_complete
    }

    /// Checkpoints waiting for acks, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// Checkpoints abandoned (evicted by the pending bound or subsumed by a newer completion).
    pub fn aborted(&self) -> u64 {
        self.aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Barrier(usize, u64),
        Data(usize),
    }

    /// Runs events against a fresh aligner; each result is rendered as a short string.
    fn check(channels: usize, events: &[Ev], expect: &[&str]) {
        let mut a = Aligner::new(channels);
        let got: Vec<String> = events
            .iter()
            .map(|e| match *e {
                Ev::Barrier(c, id) => match a.on_barrier(c, id) {
                    Ok(Some(id)) => format!("aligned {id}"),
                    Ok(None) => "wait".to_string(),
                    Err(e) => format!("{e:?}"),
                },
                Ev::Data(c) => format!("accepts {}", a.accepts(c)),
            })
            .collect();
        assert_eq!(got, expect, "events {events:?}");
    }

    #[test]
    fn aligner_table() {
        use Ev::*;
        check(1, &[Barrier(0, 1), Data(0)], &["aligned 1", "accepts true"]);
        check(
            2,
            &[
                Barrier(0, 1),
                Data(0),
                Data(1),
                Barrier(0, 1),
                Barrier(1, 1),
                Data(0),
            ],
            &[
                "wait",
                "accepts false",
                "accepts true",
                "Blocked { channel: 0 }",
                "aligned 1",
                "accepts true",
            ],
        );
        check(
            2,
            &[
                Barrier(0, 2),
                Barrier(1, 2),
                Barrier(0, 1),
                Barrier(0, 2),
                Barrier(1, 3),
            ],
            &[
                "wait",
                "aligned 2",
                "Stale { id: 1 }",
                "Stale { id: 2 }",
                "wait",
            ],
        );
        // A newer barrier aborts the alignment of an older one; the older one is then stale.
        check(
            3,
            &[
                Barrier(0, 1),
                Barrier(1, 2),
                Data(0),
                Barrier(0, 1),
                Barrier(0, 2),
                Barrier(2, 2),
            ],
            &[
                "wait",
                "wait",
                "accepts true",
                "Stale { id: 1 }",
                "wait",
                "aligned 2",
            ],
        );
        check(
            2,
            &[Barrier(2, 1), Data(5)],
            &["NoSuchChannel { channel: 2, channels: 2 }", "accepts false"],
        );
    }

    #[test]
    fn coordinator_completes_once_after_all_acks() {
        let mut c = Coordinator::new(3);
        let a = c.trigger();
        let b = c.trigger();
        assert!(a < b);
        // (stage, id, expect ack result, expect last_complete after)
        let steps: &[(usize, u64, bool, Option<u64>)] = &[
            (0, a, false, None),
            (0, a, false, None),
            (1, a, false, None),
            (7, a, false, None),
            (2, a, true, Some(a)),
            (2, a, false, Some(a)),
            (0, b, false, Some(a)),
            (1, b, false, Some(a)),
            (2, b, true, Some(b)),
            (0, 99, false, Some(b)),
        ];
        for &(stage, id, expect, last) in steps {
            assert_eq!(c.ack(stage, id), expect, "ack({stage}, {id})");
            assert_eq!(c.last_complete(), last);
        }
    }

    #[test]
    fn coordinator_bounds_pending_and_subsumes_older() {
        let mut c = Coordinator::new(1).with_pending_checkpoints_max(2);
        let ids: Vec<u64> = (0..3).map(|_| c.trigger()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(c.pending().collect::<Vec<_>>(), vec![2, 3]);
        assert!(!c.ack(0, 1), "evicted checkpoint cannot complete");
        assert!(c.ack(0, 3));
        assert_eq!(c.pending().count(), 0, "2 is subsumed by 3");
        assert!(!c.ack(0, 2));
        assert_eq!(c.aborted(), 2);
    }
}
