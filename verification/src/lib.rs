//! Checkers that read a history and name the anomalies in it. They know nothing of where the
//! history came from (simulator or real cluster).
//!
//! STUB: entry points fixed; the checkers are being built.

use sluice_core::history::Entry;

/// One anomaly found in a history.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// The anomaly's name (`lost-write`, `duplicate`, `credit-rule`, `partition-owned-twice`, …).
    pub anomaly: String,
    /// The rule it breaks (`C1`, `R1`, `G1`, `K1`, …) or the Jepsen class.
    pub rule: String,
    /// Time of the first violating event (µs), if it has one.
    pub t_us: Option<u64>,
    /// Partition, consumer, offsets involved, as text for humans.
    pub detail: String,
}

/// The result of checking a whole history.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub violations: Vec<Violation>,
}

/// Runs every checker over a complete history.
pub fn check(_history: &[Entry]) -> Report {
    todo!()
}

/// The safety checkers, fed one entry at a time; reports the first violation at the event that
/// causes it.
pub struct Online {}

impl Online {
    pub fn new() -> Self {
        todo!()
    }
    pub fn observe(&mut self, _e: &Entry) -> Option<Violation> {
        todo!()
    }
}
