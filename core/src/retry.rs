//! Retries with capped exponential backoff and jitter from an injected RNG, and the dead-letter
//! decision: after `max_attempts` a record goes to the DLQ, so a poison record never blocks its
//! partition forever and nothing is dropped silently.
//!
//! STUB: signatures fixed; implementation and property tests pending.

use crate::types::{Rng, TimeUs};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// 0 = no jitter, 1 = full jitter.
    pub jitter: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try again at `at_us` (attempt number `attempt`, 2 = first retry).
    RetryAt { at_us: TimeUs, attempt: u32 },
    /// Give up: send to the dead-letter queue after `attempts` tries.
    DeadLetter { attempts: u32 },
}

pub struct RetryPolicy {
    _cfg: RetryConfig,
}

impl RetryPolicy {
    pub fn new(cfg: RetryConfig) -> Self {
        RetryPolicy { _cfg: cfg }
    }
    /// Backoff before retry number `retry` (1-based), before jitter: min(initial·2^(retry-1), max).
    pub fn backoff_ms(&self, _retry: u32) -> u64 {
        todo!()
    }
    /// Attempt `attempt` (1-based) failed at `now_us`: retry or dead-letter.
    pub fn on_failure(&self, _attempt: u32, _now_us: TimeUs, _rng: &mut dyn Rng) -> Verdict {
        todo!()
    }
}
