//! Pause/resume backpressure (Kafka-style) and the "none" strategy.
//!
//! Above `high_records` buffered, every assigned partition is paused (no fetches); at or below
//! `low_records` they are resumed. Records already requested keep arriving while paused, so the
//! buffer bound must leave room for one `max.poll.records` batch per partition above `high`.
//!
//! The controller has hysteresis: it pauses when the level *reaches* `high_records` while running
//! and resumes when the level *falls to* `low_records` or below while paused; levels strictly
//! between the two marks change nothing. So it never emits the same toggle twice in a row, and it
//! is paused exactly when the last mark crossed was the high one. `low_records < high_records` is
//! required ([`PauseControl::try_new`] says why a configuration is refused).
//!
//! The "none" strategy uses no controller: the pipeline simply never pauses.

use std::fmt;

use crate::types::Tp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PauseConfig {
    pub high_records: u32,
    pub low_records: u32,
}

/// Why a [`PauseConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseConfigError {
    /// The low watermark must lie strictly below the high one, or the controller would flap.
    LowNotBelowHigh { low_records: u32, high_records: u32 },
}

impl fmt::Display for PauseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseConfigError::LowNotBelowHigh { low_records, high_records } => write!(
                f,
                "pause watermarks: low_records ({low_records}) must be below high_records ({high_records})"
            ),
        }
    }
}

impl std::error::Error for PauseConfigError {}

impl PauseConfig {
    pub fn validate(&self) -> Result<(), PauseConfigError> {
        if self.low_records >= self.high_records {
            return Err(PauseConfigError::LowNotBelowHigh {
                low_records: self.low_records,
                high_records: self.high_records,
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct PauseControl {
    cfg: PauseConfig,
    paused: bool,
}

impl PauseControl {
    /// A running (not paused) controller.
    ///
    /// # Panics
    /// When `cfg.low_records >= cfg.high_records`; scenario validation refuses such specs, and
    /// [`PauseControl::try_new`] is the non-panicking form.
    pub fn new(cfg: PauseConfig) -> Self {
        match Self::try_new(cfg) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// A running (not paused) controller, or why the watermarks are unusable.
    pub fn try_new(cfg: PauseConfig) -> Result<Self, PauseConfigError> {
        cfg.validate()?;
        Ok(PauseControl { cfg, paused: false })
    }

    pub fn config(&self) -> PauseConfig {
        self.cfg
    }

    /// Called whenever the buffer level changes; returns a toggle when the state flips. The caller
    /// applies it to every assigned partition.
    #[inline]
    pub fn on_level(&mut self, buffered_records: u64) -> Option<Toggle> {
        if !self.paused && buffered_records >= self.cfg.high_records as u64 {
            self.paused = true;
            Some(Toggle::Pause)
        } else if self.paused && buffered_records <= self.cfg.low_records as u64 {
            self.paused = false;
            Some(Toggle::Resume)
        } else {
            None
        }
    }

    #[inline]
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// A newly assigned partition: whether it must start paused (librdkafka#1849: pause state must
    /// follow the buffer, not survive a rebalance by accident). It starts paused exactly when the
    /// controller is paused, whatever state the partition had before it was revoked.
    pub fn on_assigned(&self, _tp: Tp) -> bool {
        self.paused
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    Pause,
    Resume,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(high: u32, low: u32) -> PauseConfig {
        PauseConfig { high_records: high, low_records: low }
    }

    /// Feeds `levels` to a fresh controller; checks the toggles and the final paused state.
    fn check(high: u32, low: u32, levels: &[u64], expect: &[Option<Toggle>], paused_after: bool) {
        let mut c = PauseControl::new(cfg(high, low));
        let got: Vec<_> = levels.iter().map(|&l| c.on_level(l)).collect();
        assert_eq!(got, expect, "levels {levels:?} with high {high} low {low}");
        assert_eq!(c.paused(), paused_after);
        assert_eq!(c.on_assigned(Tp::new(0, 7)), paused_after);
    }

    #[test]
    fn hysteresis_table() {
        use Toggle::*;
        // (high, low, levels, toggles, paused at the end)
        check(10, 4, &[0, 9, 9], &[None, None, None], false);
        check(10, 4, &[10], &[Some(Pause)], true); // reaching high pauses
        check(10, 4, &[12, 15, 5], &[Some(Pause), None, None], true); // between marks: stay paused
        check(10, 4, &[12, 4], &[Some(Pause), Some(Resume)], false); // falling to low resumes
        check(10, 4, &[12, 0, 3, 5, 9], &[Some(Pause), Some(Resume), None, None, None], false);
        check(10, 4, &[4, 3], &[None, None], false); // low while running: nothing
        check(1, 0, &[1, 1, 0, 0, 1], &[Some(Pause), None, Some(Resume), None, Some(Pause)], true);
        check(u32::MAX, 0, &[u64::MAX, 0], &[Some(Pause), Some(Resume)], false);
    }

    #[test]
    fn watermarks_must_be_ordered() {
        for (high, low, ok) in [(10, 4, true), (10, 10, false), (4, 10, false), (0, 0, false), (1, 0, true)] {
            let r = PauseControl::try_new(cfg(high, low));
            assert_eq!(r.is_ok(), ok, "high {high} low {low}");
            if !ok {
                let e = r.err().unwrap();
                assert_eq!(e, PauseConfigError::LowNotBelowHigh { low_records: low, high_records: high });
                assert!(e.to_string().contains("must be below"));
            }
        }
    }

    #[test]
    #[should_panic(expected = "low_records (5) must be below high_records (5)")]
    fn new_panics_with_a_clear_message() {
        let _ = PauseControl::new(cfg(5, 5));
    }
}
