//! Retries with capped exponential backoff and jitter from an injected RNG, and the dead-letter
//! decision: after `max_attempts` a record goes to the DLQ, so a poison record never blocks its
//! partition forever and nothing is dropped silently.
//!
//! - `backoff_ms(retry) = min(backoff_initial_ms · 2^(retry-1), backoff_max_ms)`, computed without
//!   overflow for every `retry` (the doubling saturates, then the cap applies).
//! - `on_failure(attempt, now_us, rng)`: while `attempt < max_attempts` the record is retried at
//!   `now_us + delay`, where `delay = backoff · (1 − jitter · u)` and `u ∈ [0, 1)` is drawn from the
//!   injected RNG, so `delay ∈ (backoff · (1 − jitter), backoff]`. At `attempt >= max_attempts` the
//!   verdict is `DeadLetter`.

use std::fmt;

use crate::types::{Rng, TimeUs};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// 0 = no jitter, 1 = full jitter.
    pub jitter: f64,
}

/// A retry configuration that cannot be honoured as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetryConfigError {
    /// `max_attempts` must be at least 1 (the first try is an attempt).
    NoAttempts,
    /// `jitter` must lie in `[0, 1]`.
    JitterOutOfRange { jitter: f64 },
    /// `backoff_initial_ms` must not exceed `backoff_max_ms`.
    InitialAboveMax {
        backoff_initial_ms: u64,
        backoff_max_ms: u64,
    },
}

impl fmt::Display for RetryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryConfigError::NoAttempts => write!(f, "retry max_attempts must be at least 1"),
            RetryConfigError::JitterOutOfRange { jitter } => {
                write!(f, "retry jitter {jitter} is outside [0, 1]")
            }
            RetryConfigError::InitialAboveMax { backoff_initial_ms, backoff_max_ms } => write!(
                f,
                "retry backoff_initial_ms {backoff_initial_ms} exceeds backoff_max_ms {backoff_max_ms}"
            ),
        }
    }
}

impl std::error::Error for RetryConfigError {}

impl RetryConfig {
    /// Checks the configuration. [`RetryPolicy::new`] accepts any configuration (it clamps the
    /// jitter into `[0, 1]` and treats `max_attempts = 0` like 1); callers that read a
    /// configuration from outside should validate it first.
    pub fn validate(&self) -> Result<(), RetryConfigError> {
        if self.max_attempts == 0 {
            return Err(RetryConfigError::NoAttempts);
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(RetryConfigError::JitterOutOfRange {
                jitter: self.jitter,
            });
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(RetryConfigError::InitialAboveMax {
                backoff_initial_ms: self.backoff_initial_ms,
                backoff_max_ms: self.backoff_max_ms,
            });
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try again at `at_us` (attempt number `attempt`, 2 = first retry).
    RetryAt { at_us: TimeUs, attempt: u32 },
    /// Give up: send to the dead-letter queue after `attempts` tries.
    DeadLetter { attempts: u32 },
}

pub struct RetryPolicy {
    cfg: RetryConfig,
}

impl RetryPolicy {
    pub fn new(cfg: RetryConfig) -> Self {
        RetryPolicy { cfg }
    }

    pub fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// Backoff before retry number `retry` (1-based), before jitter: min(initial·2^(retry-1), max).
    /// `retry = 0` is treated as 1. Never overflows.
    pub fn backoff_ms(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1);
        let raw = if self.cfg.backoff_initial_ms == 0 {
            0
        } else if doublings >= 64 {
            u64::MAX
        } else {
            self.cfg
                .backoff_initial_ms
                .saturating_mul(1u64 << doublings)
        };
        raw.min(self.cfg.backoff_max_ms)
    }

    /// The jitter actually applied: the configured one clamped into `[0, 1]` (NaN counts as 0).
    fn jitter(&self) -> f64 {
        let j = self.cfg.jitter;
        if j.is_nan() {
            0.0
        } else {
            j.clamp(0.0, 1.0)
        }
    }

    /// Attempt `attempt` (1-based) failed at `now_us`: retry or dead-letter.
    pub fn on_failure(&self, attempt: u32, now_us: TimeUs, rng: &mut dyn Rng) -> Verdict {
        let max_attempts = self.cfg.max_attempts.max(1);
        if attempt >= max_attempts {
            return Verdict::DeadLetter { attempts: attempt };
        }
        // Retry number `attempt` follows attempt number `attempt`.
        let backoff_us = self.backoff_ms(attempt.max(1)).saturating_mul(1_000);
        let u = rng.next_f64();
        debug_assert!((0.0..1.0).contains(&u));
        let cut = (backoff_us as f64 * self.jitter() * u).floor();
        // `cut` ≤ backoff_us as f64; the float-to-int cast saturates, the subtraction too.
        let delay_us = backoff_us.saturating_sub(cut as u64);
        debug_assert!(delay_us <= backoff_us);
        Verdict::RetryAt {
            at_us: now_us.saturating_add(delay_us),
            attempt: attempt.max(1) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SplitMix64;

    fn cfg(max_attempts: u32, initial: u64, max: u64, jitter: f64) -> RetryConfig {
        RetryConfig {
            max_attempts,
            backoff_initial_ms: initial,
            backoff_max_ms: max,
            jitter,
        }
    }

    #[test]
    fn backoff_table() {
        // (initial, max, retry, expected backoff_ms)
        let cases: &[(u64, u64, u32, u64)] = &[
            (100, 10_000, 0, 100),
            (100, 10_000, 1, 100),
            (100, 10_000, 2, 200),
            (100, 10_000, 3, 400),
            (100, 10_000, 7, 6_400),
            (100, 10_000, 8, 10_000),
            (100, 10_000, 64, 10_000),
            (100, 10_000, u32::MAX, 10_000),
            (u64::MAX, u64::MAX, 3, u64::MAX),
            (0, 10_000, 50, 0),
            (1, u64::MAX, 64, 1 << 63),
            (1, u64::MAX, 65, u64::MAX),
        ];
        for &(initial, max, retry, expect) in cases {
            let p = RetryPolicy::new(cfg(5, initial, max, 0.0));
            assert_eq!(
                p.backoff_ms(retry),
                expect,
                "initial={initial} max={max} retry={retry}"
            );
        }
    }

    /// An RNG that always returns the same `next_f64` draw.
    struct Fixed(u64);
    impl Rng for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    #[test]
    fn verdict_table() {
        // (max_attempts, jitter, rng word, attempt, now_us, expected)
        let half = 1u64 << 63; // next_f64 = 0.5
        let cases: &[(u32, f64, u64, u32, u64, Verdict)] = &[
            (
                3,
                0.0,
                half,
                1,
                0,
                Verdict::RetryAt {
                    at_us: 100_000,
                    attempt: 2,
                },
            ),
            (
                3,
                0.0,
                half,
                2,
                5,
                Verdict::RetryAt {
                    at_us: 200_005,
                    attempt: 3,
                },
            ),
            (3, 0.0, half, 3, 5, Verdict::DeadLetter { attempts: 3 }),
            (3, 0.0, half, 9, 5, Verdict::DeadLetter { attempts: 9 }),
            (
                3,
                1.0,
                half,
                1,
                0,
                Verdict::RetryAt {
                    at_us: 50_000,
                    attempt: 2,
                },
            ),
            (
                3,
                0.5,
                half,
                1,
                0,
                Verdict::RetryAt {
                    at_us: 75_000,
                    attempt: 2,
                },
            ),
            (
                3,
                1.0,
                0,
                1,
                0,
                Verdict::RetryAt {
                    at_us: 100_000,
                    attempt: 2,
                },
            ),
            (1, 0.0, half, 1, 0, Verdict::DeadLetter { attempts: 1 }),
            (0, 0.0, half, 1, 0, Verdict::DeadLetter { attempts: 1 }),
            (
                3,
                0.0,
                half,
                1,
                u64::MAX,
                Verdict::RetryAt {
                    at_us: u64::MAX,
                    attempt: 2,
                },
            ),
        ];
        for &(max_attempts, jitter, word, attempt, now, expect) in cases {
            let p = RetryPolicy::new(cfg(max_attempts, 100, 1_000, jitter));
            assert_eq!(p.on_failure(attempt, now, &mut Fixed(word)), expect);
        }
    }

    #[test]
    fn validate_table() {
        let cases: &[(RetryConfig, Result<(), RetryConfigError>)] = &[
            (cfg(3, 100, 1_000, 0.5), Ok(())),
            (cfg(0, 100, 1_000, 0.5), Err(RetryConfigError::NoAttempts)),
            (
                cfg(3, 100, 1_000, 1.5),
                Err(RetryConfigError::JitterOutOfRange { jitter: 1.5 }),
            ),
            (
                cfg(3, 2_000, 1_000, 0.0),
                Err(RetryConfigError::InitialAboveMax {
                    backoff_initial_ms: 2_000,
                    backoff_max_ms: 1_000,
                }),
            ),
        ];
        for (c, expect) in cases {
            assert_eq!(&c.validate(), expect, "{c:?}");
        }
        assert!(cfg(3, 1, 2, f64::NAN).validate().is_err());
    }

    #[test]
    fn same_seed_same_verdicts() {
        let p = RetryPolicy::new(cfg(10, 10, 5_000, 1.0));
        let run = |seed| {
            let mut rng = SplitMix64(seed);
            (1..12)
                .map(|a| p.on_failure(a, 1_000, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
