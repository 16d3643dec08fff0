//! Token-bucket rate limiting, multi-tier (rules R1–R3).
//!
//! R1: with rate r and burst b, over any window of length t the bucket admits at most b + r·t.
//! R2: a record is admitted only if every tier admits it; a refusal in one tier takes no tokens from
//! the others. R3: state can be snapshotted and restored so a restart never admits beyond R1.
//! Arithmetic is exact (integer micro-tokens), so R1 holds to the token, not approximately.
//!
//! STUB: signatures fixed; implementation and property tests pending.

use crate::types::TimeUs;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketConfig {
    pub rate_per_s: f64,
    pub burst: f64,
}

/// Persistable state of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketSnapshot {
    pub tokens_micro: u64,
    pub at_us: TimeUs,
}

pub struct TokenBucket {
    _cfg: BucketConfig,
}

impl TokenBucket {
    /// A full bucket at `now_us`.
    pub fn new(_cfg: BucketConfig, _now_us: TimeUs) -> Self {
        todo!()
    }
    /// Takes `n` tokens if available at `now_us`.
    pub fn try_take(&mut self, _n: u32, _now_us: TimeUs) -> bool {
        todo!()
    }
    /// The earliest time at which `n` tokens will be available (`now_us` if they are); `None` when
    /// `n` exceeds the burst and never will be.
    pub fn ready_at(&self, _n: u32, _now_us: TimeUs) -> Option<TimeUs> {
        todo!()
    }
    pub fn snapshot(&self) -> BucketSnapshot {
        todo!()
    }
    pub fn restore(_cfg: BucketConfig, _snap: BucketSnapshot) -> Self {
        todo!()
    }
}

/// The tiers a record passes through, by index into the limiter's tier list.
pub type TierIdx = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Admitted,
    /// Refused by this tier; retry no earlier than `retry_at_us` (`None`: never, n > burst).
    Refused { tier: TierIdx, retry_at_us: Option<TimeUs> },
}

pub struct MultiTier {
    _tiers: Vec<TokenBucket>,
}

impl MultiTier {
    pub fn new(_tiers: &[BucketConfig], _now_us: TimeUs) -> Self {
        todo!()
    }
    /// Admits `n` records through every tier in `path`, all or nothing (R2).
    pub fn admit(&mut self, _path: &[TierIdx], _n: u32, _now_us: TimeUs) -> Admit {
        todo!()
    }
    /// Whole tokens every tier in `path` could give at `now_us` (the most `admit` would accept).
    pub fn available(&self, _path: &[TierIdx], _now_us: TimeUs) -> u64 {
        todo!()
    }
    /// The earliest time every tier in `path` has `n` tokens (`None`: never, n > some burst).
    pub fn ready_at(&self, _path: &[TierIdx], _n: u32, _now_us: TimeUs) -> Option<TimeUs> {
        todo!()
    }
    pub fn snapshot(&self) -> Vec<BucketSnapshot> {
        todo!()
    }
    pub fn restore(_tiers: &[BucketConfig], _snaps: &[BucketSnapshot]) -> Self {
        todo!()
    }
}
