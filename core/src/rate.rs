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
    /// Built by `restore` (what `Bug::LimiterForgets` forgets).
    restored: bool,
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
            restored: false,
            bugs: Bugs::NONE,
        })
    }

    /// Switches planted bugs on. `Bug::BucketOverfill`: the refill cap is twice the burst.
    /// `Bug::LimiterForgets`: a bucket built by `restore` forgets the snapshot and is full again.
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self.cap_micro = if bugs.has(Bug::BucketOverfill) {
            self.burst_micro.saturating_mul(2)
        } else {
            self.burst_micro
        };
        if self.restored && bugs.has(Bug::LimiterForgets) {
            self.tokens_micro = self.burst_micro;
            self.carry = 0;
        }
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

    /// The same as `restore(cfg, snap).with_bugs(bugs)` (`Bug::LimiterForgets`: the snapshot's level
    /// is ignored and the bucket starts full).
    pub fn restore_with(cfg: BucketConfig, snap: BucketSnapshot, bugs: Bugs) -> Self {
        let mut b = TokenBucket::new(cfg, snap.at_us);
        b.tokens_micro = snap.tokens_micro.min(b.burst_micro);
        b.restored = true;
        b.with_bugs(bugs)
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
    /// tiers of the path), `Bug::BucketOverfill` (every tier refills to twice its burst) and
    /// `Bug::LimiterForgets` (a limiter built by `restore` forgets its snapshots: full buckets).
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

    /// The same as `restore(tiers, snaps).with_bugs(bugs)`.
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn cfg(rate_per_s: f64, burst: f64) -> BucketConfig {
        BucketConfig { rate_per_s, burst }
    }

    /// Runs `steps` of (time µs, tokens asked, admitted?) against one bucket created full at 0.
    fn check(c: BucketConfig, bugs: Bugs, steps: &[(u64, u32, bool)]) {
        let mut b = TokenBucket::new(c, 0).with_bugs(bugs);
        for (i, &(t, n, want)) in steps.iter().enumerate() {
            assert_eq!(b.try_take(n, t), want, "step {i}: take {n} at {t} µs from {c:?}");
        }
    }

    #[test]
    fn refill_is_exact_to_the_microsecond() {
        // 1 token/s: the next token exists at exactly 1 s.
        check(cfg(1.0, 1.0), Bugs::NONE, &[(0, 1, true), (999_999, 1, false), (S, 1, true)]);
        // 3 tokens/s: a token every 333_333.3 µs; the remainder carries, so token k is there at
        // ceil(k·10⁶/3) µs, whatever the steps in between.
        check(cfg(3.0, 3.0), Bugs::NONE, &[
            (0, 3, true),
            (333_333, 1, false),
            (333_334, 1, true),
            (666_666, 1, false),
            (666_667, 1, true),
            (999_999, 1, false),
            (S, 1, true),
        ]);
        // With a burst of 1 the bucket is full at 333_334 µs: the 2 micro-tokens beyond the cap are
        // dropped with the carry, so the next token comes a full period later.
        check(cfg(3.0, 1.0), Bugs::NONE, &[(0, 1, true), (333_334, 1, true), (666_667, 1, false), (666_668, 1, true)]);
        // Many small refills add up to the same as one big one (no drift).
        let mut b = TokenBucket::new(cfg(0.7, 5.0), 0);
        assert!(b.try_take(5, 0));
        for t in (0..=10 * S).step_by(7) {
            b.refill(t);
        }
        let mut one_step = TokenBucket::new(cfg(0.7, 5.0), 0);
        assert!(one_step.try_take(5, 0));
        assert_eq!(b.tokens_micro_at(10 * S), one_step.tokens_micro_at(10 * S));
        assert_eq!(one_step.tokens_micro_at(10 * S), 5_000_000); // 0.7·10 = 7 > 5: capped
        assert_eq!(one_step.tokens_micro_at(5 * S), 3_500_000);
    }

    #[test]
    fn ready_at_is_the_first_microsecond_a_take_succeeds() {
        // (rate, burst, taken at 0, asked, expected ready_at)
        let table: &[(f64, f64, u32, u32, Option<u64>)] = &[
            (1.0, 1.0, 1, 1, Some(S)),
            (3.0, 1.0, 1, 1, Some(333_334)),
            (2.5, 10.0, 10, 3, Some(1_200_000)),
            (0.000_001, 1.0, 1, 1, Some(S * S)),
            (1.0, 4.0, 0, 4, Some(0)), // available now
            (1.0, 4.0, 0, 5, None),    // beyond the burst: never
            (1e9, 1.0, 1, 1, Some(1)),
        ];
        for &(rate, burst, taken, n, want) in table {
            let mut b = TokenBucket::new(cfg(rate, burst), 0);
            assert!(b.try_take(taken, 0));
            let got = b.ready_at(n, 0);
            assert_eq!(got, want, "rate {rate} burst {burst} taken {taken} ask {n}");
            if let Some(t) = got {
                if t > 0 {
                    assert!(!b.clone().try_take(n, t - 1), "one µs early must fail");
                }
                assert!(b.try_take(n, t), "at ready_at it must succeed");
            }
        }
    }

    #[test]
    fn refill_stops_at_the_burst_unless_the_overfill_bug_is_planted() {
        let c = cfg(10.0, 5.0);
        check(c, Bugs::NONE, &[(0, 5, true), (0, 1, false), (10 * S, 5, true), (10 * S, 1, false)]);
        check(c, Bugs::only(Bug::BucketOverfill), &[(0, 5, true), (10 * S, 10, true), (10 * S, 1, false)]);
        let b = TokenBucket::new(c, 0);
        assert_eq!(b.available(u64::MAX), 5); // a huge gap neither overflows nor overfills
    }

    #[test]
    fn a_zero_length_window_admits_at_most_the_burst() {
        check(cfg(1000.0, 3.0), Bugs::NONE, &[(7, 1, true), (7, 1, true), (7, 1, true), (7, 1, false)]);
        check(cfg(1000.0, 3.0), Bugs::NONE, &[(7, 4, false), (7, 3, true), (7, 0, true)]);
    }

    #[test]
    fn time_running_backwards_refills_nothing() {
        check(cfg(1.0, 2.0), Bugs::NONE, &[(5 * S, 2, true), (S, 1, false), (6 * S, 1, true), (6 * S, 1, false)]);
        let mut b = TokenBucket::new(cfg(1.0, 2.0), 5 * S);
        assert!(b.try_take(2, 5 * S));
        assert_eq!(b.ready_at(1, 0), Some(6 * S)); // from the last refill, not from `now`
    }

    #[test]
    fn configurations_are_validated() {
        let table: &[(f64, f64, bool)] = &[
            (1.0, 1.0, true),
            (0.000_001, 1.0, true),
            (0.0, 1.0, false),
            (-1.0, 1.0, false),
            (f64::NAN, 1.0, false),
            (f64::INFINITY, 1.0, false),
            (1e13, 1.0, false),
            (1.0, 0.5, false),
            (1.0, f64::NAN, false),
            (1.0, 1e13, false),
        ];
        for &(rate, burst, ok) in table {
            let r = TokenBucket::try_new(cfg(rate, burst), 0);
            assert_eq!(r.is_ok(), ok, "rate {rate} burst {burst}");
            if let Err(e) = r {
                assert!(e.to_string().contains("must be finite"), "{e}");
            }
        }
        // Rates and bursts are taken to the nearest micro-token.
        assert_eq!(cfg(0.3, 1.5).rate_micro_per_s(), 300_000);
        assert_eq!(cfg(0.3, 1.5).burst_micro(), 1_500_000);
    }

    #[test]
    fn restore_starts_from_the_snapshot_clipped_to_the_burst() {
        let c = cfg(1.0, 4.0);
        let mut b = TokenBucket::new(c, 0);
        assert!(b.try_take(3, 2 * S));
        let snap = b.snapshot();
        assert_eq!(snap, BucketSnapshot { tokens_micro: 1_000_000, at_us: 2 * S });
        // (snapshot, bugs, time of first use, tokens available then)
        let table: &[(BucketSnapshot, Bugs, u64, u64)] = &[
            (snap, Bugs::NONE, 2 * S, 1),
            (snap, Bugs::NONE, 4 * S, 3), // refilled over the downtime
            (snap, Bugs::NONE, 60 * S, 4), // never beyond the burst
            (BucketSnapshot { tokens_micro: 99 * S, at_us: 0 }, Bugs::NONE, 0, 4),
            (snap, Bugs::only(Bug::LimiterForgets), 2 * S, 4), // the bug forgets the admissions
        ];
        for &(s, bugs, t, want) in table {
            let r = TokenBucket::restore_with(c, s, bugs);
            assert_eq!(r.available(t), want, "{s:?} {bugs:?} at {t}");
        }
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<BucketSnapshot>(&json).unwrap(), snap);
    }

    fn tiers() -> Vec<BucketConfig> {
        vec![cfg(1.0, 5.0), cfg(1.0, 2.0), cfg(10.0, 10.0)]
    }

    #[test]
    fn multi_tier_admits_all_or_nothing() {
        // (bugs, path, n, expected, tokens left per tier at 0)
        let refused = |tier, at| Admit::Refused { tier, retry_at_us: at };
        type Case<'a> = (Bugs, &'a [TierIdx], u32, Admit, [u64; 3]);
        let table: &[Case] = &[
            (Bugs::NONE, &[0, 1, 2], 2, Admit::Admitted, [3, 0, 8]),
            (Bugs::NONE, &[0, 1, 2], 3, refused(1, None), [5, 2, 10]),
            (Bugs::NONE, &[2, 0], 5, Admit::Admitted, [0, 2, 5]),
            (Bugs::NONE, &[0, 0, 0], 5, Admit::Admitted, [0, 2, 10]), // a repeated tier counts once
            (Bugs::NONE, &[], 1000, Admit::Admitted, [5, 2, 10]),
            // The leak: tier 0 gave its tokens although tier 1 refused.
            (Bugs::only(Bug::TierLeak), &[0, 1, 2], 3, refused(1, None), [2, 2, 10]),
        ];
        for (bugs, path, n, want, left) in table {
            let mut m = MultiTier::new(&tiers(), 0).with_bugs(*bugs);
            assert_eq!(m.admit(path, *n, 0), *want, "{bugs:?} {path:?} {n}");
            let got: Vec<u64> = (0..3).map(|t| m.available(&[t], 0)).collect();
            assert_eq!(got, left, "{bugs:?} {path:?} {n}");
        }
    }

    #[test]
    fn multi_tier_refusal_says_which_tier_and_when() {
        let mut m = MultiTier::new(&tiers(), 0);
        assert_eq!(m.admit(&[0, 1], 2, 0), Admit::Admitted);
        // Tier 1 is empty and refills at 1/s; tier 0 has 3.
        assert_eq!(m.admit(&[0, 1], 2, 0), Admit::Refused { tier: 1, retry_at_us: Some(2 * S) });
        assert_eq!(m.available(&[0, 1], 0), 0);
        assert_eq!(m.available(&[], 0), u64::MAX);
        assert_eq!(m.ready_at(&[0, 1], 2, 0), Some(2 * S));
        assert_eq!(m.ready_at(&[0, 1], 4, 0), None); // tier 1's burst is 2
        assert_eq!(m.admit(&[0, 1], 2, 2 * S - 1), Admit::Refused { tier: 1, retry_at_us: Some(2 * S) });
        assert_eq!(m.admit(&[0, 1], 2, 2 * S), Admit::Admitted);
        assert_eq!(m.check_path(&[0, 2]), Ok(()));
        assert_eq!(m.check_path(&[0, 3]), Err(RateError::UnknownTier { tier: 3, tiers: 3 }));
    }

    #[test]
    fn multi_tier_snapshot_round_trips_and_tolerates_a_changed_tier_list() {
        let mut m = MultiTier::new(&tiers(), 0);
        assert_eq!(m.admit(&[0, 1, 2], 2, S), Admit::Admitted);
        let snaps = m.snapshot();
        let r = MultiTier::restore(&tiers(), &snaps);
        assert_eq!(r.snapshot(), snaps);
        // One tier more than snapshots: it starts empty at the latest snapshot's time.
        let mut more = tiers();
        more.push(cfg(1.0, 3.0));
        let r = MultiTier::restore(&more, &snaps);
        assert_eq!(r.available(&[3], S), 0);
        assert_eq!(r.available(&[3], 3 * S), 2);
        assert_eq!(
            MultiTier::try_restore(&more, &snaps).err(),
            Some(RateError::SnapshotCount { tiers: 4, snapshots: 3 })
        );
        let forgot = MultiTier::restore_with(&tiers(), &snaps, Bugs::only(Bug::LimiterForgets));
        assert_eq!(forgot.available(&[0, 1, 2], S), 2);
        let forgot = MultiTier::restore(&tiers(), &snaps).with_bugs(Bugs::only(Bug::LimiterForgets));
        assert_eq!(forgot.available(&[0, 1, 2], S), 2);
        // A limiter that was never restored has nothing to forget.
        let mut fresh = MultiTier::new(&tiers(), 0).with_bugs(Bugs::only(Bug::LimiterForgets));
        assert_eq!(fresh.admit(&[1], 2, 0), Admit::Admitted);
        assert_eq!(fresh.clone().with_bugs(Bugs::only(Bug::LimiterForgets)).available(&[1], 0), 0);
        assert_eq!(MultiTier::restore(&tiers(), &snaps).available(&[0, 1, 2], S), 0);
    }
}
