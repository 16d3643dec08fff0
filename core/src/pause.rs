//! Pause/resume backpressure (Kafka-style) and the "none" strategy.
//!
//! Above `high_records` buffered, every assigned partition is paused (no fetches); at or below
//! `low_records` they are resumed. Records already requested keep arriving while paused, so the
//! buffer bound must leave room for one `max.poll.records` batch per partition above `high`.
//!
//! STUB: signatures fixed; implementation and property tests pending.

use crate::types::Tp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PauseConfig {
    pub high_records: u32,
    pub low_records: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    Pause,
    Resume,
}

pub struct PauseControl {
    _cfg: PauseConfig,
}

impl PauseControl {
    pub fn new(cfg: PauseConfig) -> Self {
        PauseControl { _cfg: cfg }
    }
    /// Called whenever the buffer level changes; returns a toggle when the state flips. The caller
    /// applies it to every assigned partition.
    pub fn on_level(&mut self, _buffered_records: u64) -> Option<Toggle> {
        todo!()
    }
    pub fn paused(&self) -> bool {
        todo!()
    }
    /// A newly assigned partition: whether it must start paused (librdkafka#1849: pause state must
    /// follow the buffer, not survive a rebalance by accident).
    pub fn on_assigned(&self, _tp: Tp) -> bool {
        todo!()
    }
}
