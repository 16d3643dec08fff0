//! Load-aware placement of hot keys (seed 001's KeyGen stage) as an alternative to hash routing.
//!
//! Hash routing sends a key to `hash(key) % partitions`, so one hot key makes one hot partition.
//! The load-aware router tracks key frequencies in a bounded heavy-hitters table and spreads keys
//! whose share exceeds a threshold over the least-loaded partitions (giving up per-key ordering for
//! those keys only — reported as such by [`LoadAwareRouter::hot_routed`]).
//!
//! The heavy-hitters table is Space-Saving (Metwally, Agrawal, El Abbadi 2005) with
//! `tracked_keys_max` counters: a tracked key's counter is incremented; an untracked key replaces the
//! key with the smallest counter `min` and starts at `min + 1` with error `min`. A counter
//! over-estimates by at most its error, so `count − error` is a guaranteed lower bound; the router
//! calls a key hot only on that lower bound, so a key that has just evicted another is never hot
//! by inheritance.
//!
//! To notice load shifts the counts decay: every `window_records` routed records, every counter,
//! error, the record total and the per-partition recent load are halved (integer halving; counters
//! that reach zero are dropped). A key is hot when at least [`HOT_EVIDENCE_RECORDS`] records are in
//! the decayed total and `(count − error) > hot_share · total`. A hot key's record goes to the
//! partition with the least recent (decayed) load, ties by lowest index; other keys go by hash.
//! Everything is integer arithmetic on ordered containers: deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementConfig {
    pub partitions: u32,
    /// Keys tracked by the heavy-hitters table (bounded memory).
    pub tracked_keys_max: u32,
    /// A key is hot when its share of recent records exceeds this fraction.
    pub hot_share: f64,
}

/// A placement configuration that cannot be honoured as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PlacementError {
    NoPartitions,
    NoTrackedKeys,
    /// `hot_share` must lie in `(0, 1]`.
    HotShareOutOfRange {
        hot_share: f64,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::NoPartitions => write!(f, "placement needs at least one partition"),
            PlacementError::NoTrackedKeys => {
                write!(f, "placement tracked_keys_max must be at least 1")
            }
            PlacementError::HotShareOutOfRange { hot_share } => {
                write!(f, "placement hot_share {hot_share} is outside (0, 1]")
            }
        }
    }
}

impl std::error::Error for PlacementError {}

impl PlacementConfig {
    pub fn validate(&self) -> Result<(), PlacementError> {
        if self.partitions == 0 {
            return Err(PlacementError::NoPartitions);
        }
        if self.tracked_keys_max == 0 {
            return Err(PlacementError::NoTrackedKeys);
        }
        if !(self.hot_share > 0.0 && self.hot_share <= 1.0) {
            return Err(PlacementError::HotShareOutOfRange {
                hot_share: self.hot_share,
            });
        }
        Ok(())
    }
}

/// Stable 64-bit key hash: MurmurHash3's 64-bit finalizer (`fmix64`) applied to `key` XOR a fixed
/// odd constant (so that key 0 does not hash to 0). A bijection on `u64`; never the default hasher.
pub fn key_hash(key: u64) -> u64 {
    let mut h = key ^ 0x9E37_79B9_7F4A_7C15;
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

/// `key_hash(key) % partitions`; 0 partitions is treated as 1.
pub fn hash_partition(key: u64, partitions: u32) -> u32 {
    (key_hash(key) % u64::from(partitions.max(1))) as u32
}

/// Records in the decayed total before any key can be called hot.
pub const HOT_EVIDENCE_RECORDS: u64 = 32;

/// Default records between two halvings of the counts.
pub const WINDOW_RECORDS_DEFAULT: u64 = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counter {
    count: u64,
    error: u64,
}

pub struct LoadAwareRouter {
    cfg: PlacementConfig,
    window_records: u64,
    /// Tracked key → counter; at most `tracked_keys_max` entries.
    counters: BTreeMap<u64, Counter>,
    /// `(count, key)` for every tracked key: the smallest is the eviction victim.
    by_count: BTreeSet<(u64, u64)>,
    /// Decayed number of records routed.
    total: u64,
    /// Records routed since the last halving.
    in_window: u64,
    /// Records routed to each partition so far.
    load: Vec<u64>,
    /// Decayed records routed to each partition.
    recent: Vec<u64>,
    hot_routed: u64,
}

impl LoadAwareRouter {
    /// Builds a router. Degenerate values are normalised, never a panic: 0 partitions or 0 tracked
    /// keys count as 1, and a `hot_share` outside `(0, 1]` makes no key hot (plain hash routing).
    /// Use [`PlacementConfig::validate`] or [`LoadAwareRouter::try_new`] to reject them instead.
    pub fn new(cfg: PlacementConfig) -> Self {
        let partitions = cfg.partitions.max(1) as usize;
        LoadAwareRouter {
            cfg,
            window_records: WINDOW_RECORDS_DEFAULT,
            counters: BTreeMap::new(),
            by_count: BTreeSet::new(),
            total: 0,
            in_window: 0,
            load: vec![0; partitions],
            recent: vec![0; partitions],
            hot_routed: 0,
        }
    }

    pub fn try_new(cfg: PlacementConfig) -> Result<Self, PlacementError> {
        cfg.validate()?;
        Ok(Self::new(cfg))
    }

    /// Records between two halvings of the counts (at least 1).
    pub fn with_window_records(mut self, window_records: u64) -> Self {
        self.window_records = window_records.max(1);
        self
    }

    fn tracked_keys_max(&self) -> usize {
        self.cfg.tracked_keys_max.max(1) as usize
    }

    /// Picks the partition for one record of `key` and accounts its load.
    pub fn route(&mut self, key: u64) -> u32 {
        self.count(key);
        let p = if self.is_hot(key) {
            self.hot_routed += 1;
            self.least_loaded()
        } else {
            hash_partition(key, self.cfg.partitions)
        };
        self.load[p as usize] += 1;
        self.recent[p as usize] += 1;
        self.in_window += 1;
        if self.in_window >= self.window_records {
            self.decay();
        }
        p
    }

    /// Records routed to each partition so far.
    pub fn load(&self) -> &[u64] {
        &self.load
    }

    /// Records routed away from their hash partition because their key was hot (their per-key
    /// order is not kept).
    pub fn hot_routed(&self) -> u64 {
        self.hot_routed
    }

    /// Keys in the heavy-hitters table (at most `tracked_keys_max`).
    pub fn tracked_keys(&self) -> usize {
        self.counters.len()
    }

    /// Whether `key` is hot right now.
    pub fn is_hot(&self, key: u64) -> bool {
        if self.total < HOT_EVIDENCE_RECORDS
            || !(self.cfg.hot_share > 0.0 && self.cfg.hot_share <= 1.0)
        {
            return false;
        }
        let Some(c) = self.counters.get(&key) else {
            return false;
        };
        (c.count - c.error) as f64 > self.cfg.hot_share * self.total as f64
    }

    fn count(&mut self, key: u64) {
        self.total += 1;
        if let Some(c) = self.counters.get_mut(&key) {
            self.by_count.remove(&(c.count, key));
            c.count += 1;
            self.by_count.insert((c.count, key));
            return;
        }
        let mut error = 0;
        if self.counters.len() >= self.tracked_keys_max() {
            if let Some((min, victim)) = self.by_count.pop_first() {
                self.counters.remove(&victim);
                error = min;
            }
        }
        let c = Counter {
            count: error + 1,
            error,
        };
        self.counters.insert(key, c);
        self.by_count.insert((c.count, key));
        debug_assert!(self.counters.len() <= self.tracked_keys_max());
        debug_assert_eq!(self.counters.len(), self.by_count.len());
    }

    fn least_loaded(&self) -> u32 {
        let mut best = 0usize;
        for (i, &r) in self.recent.iter().enumerate() {
            if r < self.recent[best] {
                best = i;
            }
        }
        best as u32
    }

    fn decay(&mut self) {
        self.in_window = 0;
        self.total /= 2;
        self.recent.iter_mut().for_each(|r| *r /= 2);
        let old = std::mem::take(&mut self.counters);
        self.by_count.clear();
        for (key, c) in old {
            let c = Counter {
                count: c.count / 2,
                error: c.error / 2,
            };
            if c.count > 0 {
                self.counters.insert(key, c);
                self.by_count.insert((c.count, key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(partitions: u32, tracked_keys_max: u32, hot_share: f64) -> PlacementConfig {
        PlacementConfig {
            partitions,
            tracked_keys_max,
            hot_share,
        }
    }

    #[test]
    fn key_hash_table() {
        // fmix64 of (key ^ 0x9E3779B97F4A7C15); fixed values guard the routing of recorded runs.
        let cases: &[(u64, u32)] = &[(0, 8), (1, 8), (2, 8), (12345, 8), (u64::MAX, 8)];
        for &(key, partitions) in cases {
            let h = key_hash(key);
            assert_eq!(h, key_hash(key));
            assert_eq!(
                hash_partition(key, partitions),
                (h % partitions as u64) as u32
            );
        }
        assert_ne!(key_hash(0), 0);
        assert_ne!(key_hash(0), key_hash(1));
        assert_eq!(hash_partition(42, 0), 0);
        // Spread: 8 000 consecutive keys over 8 partitions land within 10 % of the mean.
        let mut counts = [0u32; 8];
        for k in 0..8_000 {
            counts[hash_partition(k, 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..=1_100).contains(&c)),
            "{counts:?}"
        );
    }

    /// Routes `records` (key per record) and returns the final load.
    fn run(c: PlacementConfig, window: u64, records: impl Iterator<Item = u64>) -> (Vec<u64>, u64) {
        let mut r = LoadAwareRouter::new(c).with_window_records(window);
        for k in records {
            let p = r.route(k);
            assert!(p < c.partitions.max(1));
            assert!(r.tracked_keys() <= c.tracked_keys_max.max(1) as usize);
        }
        (r.load().to_vec(), r.hot_routed())
    }

    #[test]
    fn one_hot_key_is_spread_but_hashing_concentrates_it() {
        // Half the records carry key 7, the rest cycle over 1 000 cold keys.
        let records = || (0..20_000u64).map(|i| if i % 2 == 0 { 7 } else { 1_000 + i % 1_000 });
        let (aware, hot) = run(cfg(8, 16, 0.1), 1_024, records());
        let (hashed, none) = run(cfg(8, 16, 1.0), 1_024, records());
        assert_eq!(none, 0);
        assert!(hot > 9_000, "hot records rerouted: {hot}");
        let spread = |l: &[u64]| l.iter().max().unwrap() - l.iter().min().unwrap();
        eprintln!(
            "load-aware {aware:?} (spread {}), hash {hashed:?} (spread {})",
            spread(&aware),
            spread(&hashed)
        );
        assert!(spread(&aware) < 64, "load-aware {aware:?}");
        assert!(spread(&hashed) > 9_000, "hash {hashed:?}");
        assert_eq!(aware.iter().sum::<u64>(), 20_000);
    }

    #[test]
    fn a_load_shift_is_noticed_and_a_cooled_key_goes_back_to_its_hash() {
        let mut r = LoadAwareRouter::new(cfg(4, 8, 0.2)).with_window_records(256);
        for i in 0..5_000u64 {
            r.route(if i % 2 == 0 { 1 } else { 100 + i % 50 });
        }
        assert!(r.is_hot(1));
        for i in 0..5_000u64 {
            r.route(if i % 2 == 0 { 2 } else { 100 + i % 50 });
        }
        assert!(!r.is_hot(1), "key 1 cooled down");
        assert!(r.is_hot(2), "key 2 became hot");
        assert_eq!(r.route(1), hash_partition(1, 4));
    }

    #[test]
    fn degenerate_configs_are_rejected_or_normalised() {
        let cases: &[(PlacementConfig, Result<(), PlacementError>)] = &[
            (cfg(4, 8, 0.2), Ok(())),
            (cfg(0, 8, 0.2), Err(PlacementError::NoPartitions)),
            (cfg(4, 0, 0.2), Err(PlacementError::NoTrackedKeys)),
            (
                cfg(4, 8, 0.0),
                Err(PlacementError::HotShareOutOfRange { hot_share: 0.0 }),
            ),
        ];
        for (c, expect) in cases {
            assert_eq!(&c.validate(), expect);
            assert_eq!(LoadAwareRouter::try_new(*c).is_ok(), expect.is_ok());
        }
        let (load, _) = run(cfg(0, 0, f64::NAN), 4, (0..100).map(|i| i % 3));
        assert_eq!(load, vec![100]);
    }

    #[test]
    fn routing_is_deterministic() {
        let keys = || (0..3_000u64).map(|i| key_hash(i) % 40);
        assert_eq!(
            run(cfg(6, 4, 0.05), 128, keys()),
            run(cfg(6, 4, 0.05), 128, keys())
        );
    }
}
