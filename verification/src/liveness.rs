//! Consumer-lag evaluation after LinkedIn Burrow's rules, over the last
//! [`LAG_WINDOW_SAMPLES`] lag samples of each partition:
//!
//! - OK: some sample in the window has zero lag, or commits advance and lag does not grow;
//! - WARN: the committed offset advances across the window but lag grows (non-decreasing, last >
//!   first);
//! - STALLED: the committed offset does not move across the window while lag > 0;
//! - STOPPED: as STALLED, and the committed offset never moved in the whole history or has not moved
//!   for longer than `recovery_deadline_ms`.
//!
//! The overall status is the worst partition's. These statuses are committed-offset based, as
//! Burrow's are; the recovery judgement (`lag-not-recovered`) uses position lag instead (records
//! not yet processed), because committed lag carries a sawtooth of arrival rate × commit interval
//! even in a healthy group, and adds a STOPPED partition at the deadline as a failure of its own.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Samples per partition that the status looks at (Burrow's default window is 10 offsets).
pub const LAG_WINDOW_SAMPLES: usize = 10;

/// How long a partition with records to process may go without its consumers getting any further
/// before it counts as stalled, milliseconds.
pub const STALL_MIN_MS: u64 = 10_000;
/// Most stall episodes a report lists (the rest are counted in `stalls_unlisted`).
pub const STALLS_LISTED_MAX: usize = 200;

/// A span in which a partition had records waiting and its consumers got no further: no record
/// of it was processed or dead-lettered for at least [`STALL_MIN_MS`] while its position lag was
/// above zero. A consumer that stops polling (a stream that is never woken, a stuck handler, a
/// member the group has not yet noticed is gone) shows up here while it still owns its partitions,
/// whether or not the group ever rebalances. Informational: a stall is not an anomaly by itself;
/// one that outlasts the liveness phase is judged as `lag-not-recovered`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    pub tp: String,
    /// The lag sample after which the partition got no further (µs).
    pub from_us: u64,
    /// The first lag sample showing progress again (µs); `None`: still stalled when the history
    /// ended.
    pub to_us: Option<u64>,
    /// Members that owned the partition when the stall was recognised.
    pub owners: Vec<String>,
    /// Largest position lag (records not yet processed) during the stall.
    pub lag_max: u64,
}

impl Stall {
    /// Its length up to `end_us` when it was still open then, milliseconds.
    pub fn duration_ms(&self, end_us: u64) -> u64 {
        self.to_us.unwrap_or(end_us).saturating_sub(self.from_us) / 1_000
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagStatus {
    #[default]
    Ok,
    Warn,
    Stalled,
    Stopped,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionLiveness {
    pub tp: String,
    pub status: LagStatus,
    pub samples: u64,
    pub last_lag: u64,
    pub last_committed: u64,
    pub max_lag: u64,
}

/// The liveness section of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    pub overall: LagStatus,
    pub partitions: Vec<PartitionLiveness>,
    /// Start of the liveness phase (µs), if the history has one.
    pub phase_start_us: Option<u64>,
    /// First lag sample in the liveness phase with total lag ≤ `lag_ok_records`.
    pub recovered_at_us: Option<u64>,
    pub recovery_time_ms: Option<u64>,
    /// Stall episodes, in the order they were recognised (see [`Stall`]).
    #[serde(default)]
    pub stalls: Vec<Stall>,
    /// Stall episodes not listed because the list was full.
    #[serde(default)]
    pub stalls_unlisted: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    hw: u64,
    committed: u64,
}

/// Lag history of one partition, bounded to the window.
#[derive(Clone, Debug, Default)]
pub(crate) struct LagTrack {
    window: VecDeque<Sample>,
    samples: u64,
    max_lag: u64,
    /// Time the committed offset last changed (or of the first sample).
    committed_since_us: u64,
    ever_advanced: bool,
}

impl LagTrack {
    /// Records a sample; returns its lag.
    pub fn push(&mut self, t_us: u64, hw: u64, committed: u64) -> u64 {
        match self.window.back() {
            None => self.committed_since_us = t_us,
            Some(prev) if prev.committed != committed => {
                self.committed_since_us = t_us;
                self.ever_advanced = true;
            }
            Some(_) => {}
        }
        if self.window.len() == LAG_WINDOW_SAMPLES {
            self.window.pop_front();
        }
        self.window.push_back(Sample { hw, committed });
        self.samples += 1;
        let lag = hw.saturating_sub(committed);
        self.max_lag = self.max_lag.max(lag);
        lag
    }

    pub fn last_lag(&self) -> u64 {
        self.window
            .back()
            .map_or(0, |s| s.hw.saturating_sub(s.committed))
    }

    pub fn evaluate(&self, tp: &str, end_us: u64, recovery_deadline_ms: u64) -> PartitionLiveness {
        let lags: Vec<u64> = self
            .window
            .iter()
            .map(|s| s.hw.saturating_sub(s.committed))
            .collect();
        let status = match (self.window.front(), self.window.back()) {
            (Some(first), Some(last)) => {
                if lags.contains(&0) {
                    LagStatus::Ok
                } else if first.committed == last.committed {
                    let still_ms = end_us.saturating_sub(self.committed_since_us) / 1000;
                    let long = recovery_deadline_ms > 0 && still_ms > recovery_deadline_ms;
                    if !self.ever_advanced || long {
                        LagStatus::Stopped
                    } else {
                        LagStatus::Stalled
                    }
                } else if lags.windows(2).all(|w| w[1] >= w[0]) && lags.last() > lags.first() {
                    LagStatus::Warn
                } else {
                    LagStatus::Ok
                }
            }
            _ => LagStatus::Ok,
        };
        PartitionLiveness {
            tp: tp.to_string(),
            status,
            samples: self.samples,
            last_lag: self.last_lag(),
            last_committed: self.window.back().map_or(0, |s| s.committed),
            max_lag: self.max_lag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (samples as (hw, committed) one second apart, expected status)
    #[test]
    fn burrow_rules() {
        let cases: &[(&[(u64, u64)], LagStatus)] = &[
            (&[], LagStatus::Ok),
            (&[(10, 5), (12, 12), (20, 15)], LagStatus::Ok),
            (&[(10, 5), (14, 7), (20, 9)], LagStatus::Warn),
            (&[(10, 5), (14, 9), (16, 13)], LagStatus::Ok),
            // committed advances 0→5 inside the window; lag 10, 9, 15, 17 is not monotone.
            (&[(10, 0), (14, 5), (20, 5), (22, 5)], LagStatus::Ok),
            (&[(10, 5), (20, 5), (30, 5)], LagStatus::Stopped),
        ];
        for (samples, want) in cases {
            let mut t = LagTrack::default();
            for (i, &(hw, c)) in samples.iter().enumerate() {
                t.push(i as u64 * 1_000_000, hw, c);
            }
            let got = t
                .evaluate("a/0", samples.len() as u64 * 1_000_000, 0)
                .status;
            assert_eq!(got, *want, "{samples:?}");
        }
    }

    #[test]
    fn stalled_after_progress_then_stopped_after_deadline() {
        let mut t = LagTrack::default();
        t.push(0, 10, 0);
        t.push(1_000_000, 20, 10); // advanced
        for i in 0..LAG_WINDOW_SAMPLES as u64 {
            t.push(2_000_000 + i * 1_000_000, 30, 12);
        }
        let end = 12_000_000;
        assert_eq!(t.evaluate("a/0", end, 60_000).status, LagStatus::Stalled);
        assert_eq!(t.evaluate("a/0", end, 5_000).status, LagStatus::Stopped);
    }
}
