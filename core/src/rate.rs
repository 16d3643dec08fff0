//! Token-bucket rate limiting, multi-tier (rules R1–R3).
//!
//! R1: with rate r and burst b, over any window of length t the bucket admits at most b + r·t.
//! R2: a record is admitted only if every tier admits it; a refusal in one tier takes no tokens from
//! the others. R3: state can be snapshotted and restored so a restart never admits beyond R1.
//! Arithmetic is exact (integer micro-tokens), so R1 holds to the token, not approximately.
//!
//! # Arithmetic
//! A bucket holds `tokens_micro` (10⁻⁶ token) and refills at `rate_micro_per_s` micro-tokens per
//! second, i.e. `rate_micro_per_s · Δµs / 10⁶` micro-tokens after `Δµs`; the remainder of that
//! division is carried to the next refill, so splitting a refill in steps never loses or gains
//! anything. The level is capped at `burst_micro`, and reaching the cap drops the carry. The rate and
//! burst of a [`BucketConfig`] are converted once, rounded to the nearest micro-token.
//!
//! Why R1 holds exactly: let Φ = tokens_micro·10⁶ + carry. Just after a refill Φ ≤ burst_micro·10⁶
//! (either the bucket is capped and the carry is 0, or tokens_micro < burst_micro and carry < 10⁶).
//! Refills add at most rate_micro_per_s·Δµs to Φ; admitting n tokens removes n·10¹²; Φ ≥ 0. Hence
//! over any window [t0, t1]: admitted·10¹² ≤ burst_micro·10⁶ + rate_micro_per_s·(t1 − t0).
//!
//! # Persistence (R3)
//! [`BucketSnapshot`] is the bucket's level (without the sub-micro-token carry, which only makes the
//! restored bucket poorer) and the time of its last refill. The contract with the driver: persist
//! the snapshot after every admission (the seed's design writes it to a compacted topic keyed by the
//! limiter id). [`TokenBucket::restore`] starts from the snapshot's level, clipped to the burst, and
//! refills from the snapshot's time on its first use, never beyond the burst. A bucket restored from
//! its latest snapshot therefore obeys R1 over windows that span the restart, counting admissions
//! before it. A snapshot older than the last admission would forget those admissions: that is the
//! driver's side of the contract.

use std::fmt;

use crate::bugs::{Bug, Bugs};
use crate::types::TimeUs;

const MICRO: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketConfig {
    pub rate_per_s: f64,
    pub burst: f64,
}

/// Why a limiter could not be built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateError {
    /// The rate must be finite, at least one micro-token per second and at most 10¹² per second.
    InvalidRate { rate_per_s: f64 },
    /// The burst must be finite, at least one token and at most 10¹² tokens.
    InvalidBurst { burst: f64 },
    /// A path names a tier the limiter does not have.
    UnknownTier { tier: TierIdx, tiers: usize },
    /// A restore got a different number of snapshots than tiers.
    SnapshotCount { tiers: usize, snapshots: usize },
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::InvalidRate { rate_per_s } => {
                write!(f, "rate_per_s {rate_per_s} must be finite, at least 0.000001 and at most 1e12")
            }
            RateError::InvalidBurst { burst } => {
                write!(f, "burst {burst} must be finite, at least 1 token and at most 1e12")
            }
            RateError::UnknownTier { tier, tiers } => {
                write!(f, "tier index {tier} out of range: the limiter has {tiers} tiers")
            }
            RateError::SnapshotCount { tiers, snapshots } => {
                write!(f, "{snapshots} snapshots for a limiter of {tiers} tiers")
            }
        }
    }
}

impl std::error::Error for RateError {}

fn to_micro(x: f64) -> u64 {
    // `as` saturates; callers check finiteness and ranges.
    (x * MICRO as f64).round() as u64
}

impl BucketConfig {
    /// The rate in micro-tokens per second, rounded to the nearest.
    pub fn rate_micro_per_s(&self) -> u64 {
        to_micro(self.rate_per_s)
    }
    /// The burst in micro-tokens, rounded to the nearest.
    pub fn burst_micro(&self) -> u64 {
        to_micro(self.burst)
    }
    pub fn validate(&self) -> Result<(), RateError> {
        if !self.rate_per_s.is_finite() || self.rate_micro_per_s() == 0 || self.rate_per_s > 1e12 {
            return Err(RateError::InvalidRate { rate_per_s: self.rate_per_s });
        }
        if !self.burst.is_finite() || self.burst_micro() < MICRO || self.burst > 1e12 {
            return Err(RateError::InvalidBurst { burst: self.burst });
        }
        Ok(())
    }
}

/// Persistable state of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketSnapshot {
    pub tokens_micro: u64,
    pub at_us: TimeUs,
}

#[derive(Clone, Debug)]
pub struct TokenBucket {
    cfg: BucketConfig,
    rate_micro_per_s: u64,
    burst_micro: u64,
    /// The refill cap: `burst_micro`, or twice that under `Bug::BucketOverfill`.
    cap_micro: u64,
    tokens_micro: u64,
    /// Remainder of `rate_micro_per_s · Δµs / 10⁶` not yet credited; always < 10⁶.
    carry: u64,
    /// Time of the last refill.
    at_us: TimeUs,
    bugs: Bugs,
}

/// A bucket's level as of some time: (tokens_micro, carry, at_us).
#[derive(Clone, Copy)]
struct Level {
    tokens_micro: u64,
    carry: u64,
    at_us: TimeUs,
}

impl TokenBucket {
    /// A full bucket at `now_us`.
    ///
    /// # Panics
    /// On an invalid configuration (see [`BucketConfig::validate`]; scenario validation refuses
    /// such specs); [`TokenBucket::try_new`] is the non-panicking form.
    pub fn new(cfg: BucketConfig, now_us: TimeUs) -> Self {
        match Self::try_new(cfg, now_us) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// A full bucket at `now_us`, or why the configuration is unusable.
    pub fn try_new(cfg: BucketConfig, now_us: TimeUs) -> Result<Self, RateError> {
        cfg.validate()?;
        let burst_micro = cfg.burst_micro();
        Ok(TokenBucket {
            cfg,
            rate_micro_per_s: cfg.rate_micro_per_s(),
            burst_micro,
            cap_micro: burst_micro,
            tokens_micro: burst_micro,
            carry: 0,
            at_us: now_us,
            bugs: Bugs::NONE,
        })
    }

    /// Switches planted bugs on. `Bug::BucketOverfill`: the refill cap is twice the burst.
    /// (`Bug::LimiterForgets` acts in [`TokenBucket::restore_with`].)
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self.cap_micro = if bugs.has(Bug::BucketOverfill) {
            self.burst_micro.saturating_mul(2)
        } else {
            self.burst_micro
        };
        self
    }

    pub fn config(&self) -> BucketConfig {
        self.cfg
    }
    pub fn rate_micro_per_s(&self) -> u64 {
        self.rate_micro_per_s
    }
    pub fn burst_micro(&self) -> u64 {
        self.burst_micro
    }

    /// The level at `now_us` (no change before the last refill: time never runs backwards here).
    #[inline]
    fn level_at(&self, now_us: TimeUs) -> Level {
        if now_us <= self.at_us {
            return Level { tokens_micro: self.tokens_micro, carry: self.carry, at_us: self.at_us };
        }
        let full = Level { tokens_micro: self.cap_micro, carry: 0, at_us: now_us };
        if self.tokens_micro >= self.cap_micro {
            return full;
        }
        let elapsed_us = now_us - self.at_us;
        let (add, carry) = match self.rate_micro_per_s.checked_mul(elapsed_us) {
            Some(p) if p <= u64::MAX - MICRO => {
                let t = p + self.carry;
                (t / MICRO, t % MICRO)
            }
            _ => {
                let t = self.rate_micro_per_s as u128 * elapsed_us as u128 + self.carry as u128;
                let add = t / MICRO as u128;
                if add >= self.cap_micro as u128 {
                    return full;
                }
                (add as u64, (t % MICRO as u128) as u64)
            }
        };
        if add >= self.cap_micro - self.tokens_micro {
            full
        } else {
            Level { tokens_micro: self.tokens_micro + add, carry, at_us: now_us }
        }
    }

    #[inline]
    fn refill(&mut self, now_us: TimeUs) {
        let l = self.level_at(now_us);
        self.tokens_micro = l.tokens_micro;
        self.carry = l.carry;
        self.at_us = l.at_us;
    }

    /// Micro-tokens in the bucket at `now_us`.
    pub fn tokens_micro_at(&self, now_us: TimeUs) -> u64 {
        self.level_at(now_us).tokens_micro
    }

    /// Whole tokens in the bucket at `now_us`.
    pub fn available(&self, now_us: TimeUs) -> u64 {
        self.tokens_micro_at(now_us) / MICRO
    }

    /// Takes `n` tokens if available at `now_us`.
    #[inline]
    pub fn try_take(&mut self, n: u32, now_us: TimeUs) -> bool {
        self.refill(now_us);
        let need = n as u64 * MICRO;
        if self.tokens_micro >= need {
            self.tokens_micro -= need;
            true
        } else {
            false
        }
    }

    /// The earliest time at which `n` tokens will be available (`now_us` if they are); `None` when
    /// `n` exceeds the burst and never will be. Exact to the microsecond: `try_take(n)` succeeds at
    /// the returned time and would fail one microsecond earlier (if nothing else takes tokens).
    pub fn ready_at(&self, n: u32, now_us: TimeUs) -> Option<TimeUs> {
        let need = n as u64 * MICRO;
        if need > self.cap_micro {
            return None;
        }
        let l = self.level_at(now_us);
        if l.tokens_micro >= need {
            return Some(now_us);
        }
        // Smallest Δ with carry + rate·Δ ≥ deficit·10⁶.
        let deficit = (need - l.tokens_micro) as u128 * MICRO as u128 - l.carry as u128;
        let rate = self.rate_micro_per_s as u128;
        let delta = deficit.div_ceil(rate);
        Some(l.at_us.saturating_add(u64::try_from(delta).unwrap_or(u64::MAX)))
    }

    /// The state to persist (R3); see the module docs for the contract.
    pub fn snapshot(&self) -> BucketSnapshot {
        BucketSnapshot { tokens_micro: self.tokens_micro, at_us: self.at_us }
    }

    /// The bucket as it was at `snap.at_us`, clipped to the burst; it refills from then on first use.
    ///
    /// # Panics
    /// On an invalid configuration, like [`TokenBucket::new`].
    pub fn restore(cfg: BucketConfig, snap: BucketSnapshot) -> Self {
        Self::restore_with(cfg, snap, Bugs::NONE)
    }

    /// [`TokenBucket::restore`] with planted bugs. `Bug::LimiterForgets`: the snapshot's level is
    /// ignored and the bucket starts full.
    pub fn restore_with(cfg: BucketConfig, snap: BucketSnapshot, bugs: Bugs) -> Self {
        let mut b = TokenBucket::new(cfg, snap.at_us).with_bugs(bugs);
        if !bugs.has(Bug::LimiterForgets) {
            b.tokens_micro = snap.tokens_micro.min(b.burst_micro);
        }
        b
    }
}

/// The tiers a record passes through, by index into the limiter's tier list.
pub type TierIdx = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Admitted,
    /// Refused by this tier; retry no earlier than `retry_at_us` (`None`: never, n > burst).
    ///
    /// `tier` is the first tier of the path (in path order) without `n` tokens; `retry_at_us` is the
    /// earliest time every tier of the path has `n` tokens, if nothing else takes any.
    Refused { tier: TierIdx, retry_at_us: Option<TimeUs> },
}

/// Several token buckets ("tiers": global, per topic, per consumer); a record passes a path of
/// them. A tier index repeated in a path counts once.
#[derive(Clone, Debug)]
pub struct MultiTier {
    tiers: Vec<TokenBucket>,
    bugs: Bugs,
}

impl MultiTier {
    /// Full buckets at `now_us`.
    ///
    /// # Panics
    /// On an invalid tier configuration; [`MultiTier::try_new`] is the non-panicking form.
    pub fn new(tiers: &[BucketConfig], now_us: TimeUs) -> Self {
        match Self::try_new(tiers, now_us) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn try_new(tiers: &[BucketConfig], now_us: TimeUs) -> Result<Self, RateError> {
        let tiers = tiers.iter().map(|c| TokenBucket::try_new(*c, now_us)).collect::<Result<_, _>>()?;
        Ok(MultiTier { tiers, bugs: Bugs::NONE })
    }

    /// Switches planted bugs on: `Bug::TierLeak` (a refusal keeps the tokens taken from earlier
    /// tiers of the path) and `Bug::BucketOverfill` (every tier refills to twice its burst).
    /// (`Bug::LimiterForgets` acts in [`MultiTier::restore_with`].)
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self.tiers = self.tiers.into_iter().map(|t| t.with_bugs(bugs)).collect();
        self
    }

    pub fn len(&self) -> usize {
        self.tiers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }
    pub fn tier(&self, t: TierIdx) -> Option<&TokenBucket> {
        self.tiers.get(t)
    }

    /// Checks that every index of `path` names a tier. `admit`, `available` and `ready_at` panic on
    /// an unknown tier (a configuration bug in the caller): check paths once, up front.
    pub fn check_path(&self, path: &[TierIdx]) -> Result<(), RateError> {
        match path.iter().find(|&&t| t >= self.tiers.len()) {
            Some(&tier) => Err(RateError::UnknownTier { tier, tiers: self.tiers.len() }),
            None => Ok(()),
        }
    }

    #[inline]
    fn bucket(&self, t: TierIdx) -> &TokenBucket {
        match self.tiers.get(t) {
            Some(b) => b,
            None => panic!("{}", RateError::UnknownTier { tier: t, tiers: self.tiers.len() }),
        }
    }

    /// Admits `n` records through every tier in `path`, all or nothing (R2): every tier is checked
    /// first, and tokens are taken from all of them only if all have `n`.
    pub fn admit(&mut self, path: &[TierIdx], n: u32, now_us: TimeUs) -> Admit {
        let need = n as u64 * MICRO;
        if self.bugs.has(Bug::TierLeak) {
            for (k, &t) in path.iter().enumerate() {
                if path[..k].contains(&t) {
                    continue;
                }
                if !self.tiers[t].try_take(n, now_us) {
                    return Admit::Refused { tier: t, retry_at_us: self.ready_at(path, n, now_us) };
                }
            }
            return Admit::Admitted;
        }
        for &t in path {
            if self.bucket(t).tokens_micro_at(now_us) < need {
                return Admit::Refused { tier: t, retry_at_us: self.ready_at(path, n, now_us) };
            }
        }
        for (k, &t) in path.iter().enumerate() {
            if path[..k].contains(&t) {
                continue;
            }
            let taken = self.tiers[t].try_take(n, now_us);
            debug_assert!(taken, "tier {t} was checked");
        }
        Admit::Admitted
    }

    /// Whole tokens every tier in `path` could give at `now_us` (the most `admit` would accept).
    /// An empty path limits nothing: `u64::MAX`.
    pub fn available(&self, path: &[TierIdx], now_us: TimeUs) -> u64 {
        path.iter().map(|&t| self.bucket(t).available(now_us)).min().unwrap_or(u64::MAX)
    }

    /// The earliest time every tier in `path` has `n` tokens (`None`: never, n > some burst).
    pub fn ready_at(&self, path: &[TierIdx], n: u32, now_us: TimeUs) -> Option<TimeUs> {
        let mut at = now_us;
        for &t in path {
            at = at.max(self.bucket(t).ready_at(n, now_us)?);
        }
        Some(at)
    }

    /// One snapshot per tier, in tier order (R3: persist after every admission).
    pub fn snapshot(&self) -> Vec<BucketSnapshot> {
        self.tiers.iter().map(|t| t.snapshot()).collect()
    }

    /// Restores every tier from its snapshot (see [`TokenBucket::restore`]). A tier without a
    /// snapshot (the tier list grew) starts *empty* at the latest snapshot's time, which keeps R1;
    /// extra snapshots are ignored. [`MultiTier::try_restore`] refuses a count mismatch instead.
    ///
    /// # Panics
    /// On an invalid tier configuration, like [`MultiTier::new`].
    pub fn restore(tiers: &[BucketConfig], snaps: &[BucketSnapshot]) -> Self {
        Self::restore_with(tiers, snaps, Bugs::NONE)
    }

    /// [`MultiTier::restore`] that refuses invalid tiers and a snapshot count that does not match.
    pub fn try_restore(tiers: &[BucketConfig], snaps: &[BucketSnapshot]) -> Result<Self, RateError> {
        if tiers.len() != snaps.len() {
            return Err(RateError::SnapshotCount { tiers: tiers.len(), snapshots: snaps.len() });
        }
        for c in tiers {
            c.validate()?;
        }
        Ok(Self::restore(tiers, snaps))
    }

    /// [`MultiTier::restore`] with planted bugs (`Bug::LimiterForgets`: every tier starts full;
    /// the others as in [`MultiTier::with_bugs`]).
    pub fn restore_with(tiers: &[BucketConfig], snaps: &[BucketSnapshot], bugs: Bugs) -> Self {
        let latest_us = snaps.iter().map(|s| s.at_us).max().unwrap_or(0);
        let empty = BucketSnapshot { tokens_micro: 0, at_us: latest_us };
        let buckets = tiers
            .iter()
            .enumerate()
            .map(|(i, c)| TokenBucket::restore_with(*c, snaps.get(i).copied().unwrap_or(empty), bugs))
            .collect();
        MultiTier { tiers: buckets, bugs }
    }
}
