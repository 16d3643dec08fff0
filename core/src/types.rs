//! Small shared value types. Everything here is `Copy` and cheap: the core's hot paths use these,
//! never strings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Simulated or real time in microseconds since the start of a run. The core never reads a clock;
/// every state machine takes `now_us` as an argument.
pub type TimeUs = u64;

/// A Kafka offset.
pub type Offset = u64;

/// A consumer-group generation (epoch). Stale generations are fenced.
pub type Generation = u32;

/// A topic-partition. `topic` indexes the run's topic table (the scenario's `topics`, in order);
/// histories write it as `"name/partition"` (Kafka topic names cannot contain `/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tp {
    pub topic: u16,
    pub partition: u32,
}

impl Tp {
    pub const fn new(topic: u16, partition: u32) -> Self {
        Tp { topic, partition }
    }
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}/{}", self.topic, self.partition)
    }
}

/// A group member (consumer) index within a run: `c0`, `c1`, … in histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId(pub u32);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A deterministic random source injected into the core (retry jitter, load-aware tie breaks).
/// The simulator passes one derived from the seed; real mode passes one seeded from the run id.
pub trait Rng {
    fn next_u64(&mut self) -> u64;

    /// A uniform draw in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64: tiny, fast, good enough for jitter and tie breaks, and trivially reproducible.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// An O(1) index from `Tp` to a position in a `Tp`-sorted vector of entries, for the hot paths that
/// look a partition up several times per step (a search of an ordered map costs more than the rest
/// of the step). Partitions numbered below [`TpIndex::DENSE_PARTITIONS_MAX`] get a direct slot
/// (4 bytes per partition and topic); higher ones fall back to binary search. Rebuilt when entries
/// come or go, which is rare (ownership changes).
#[derive(Clone, Debug, Default)]
pub struct TpIndex {
    /// `dense[topic][partition]`: position, or `NO_SLOT`.
    dense: Vec<Vec<u32>>,
}

impl TpIndex {
    pub const DENSE_PARTITIONS_MAX: u32 = 4_096;
    const NO_SLOT: u32 = u32::MAX;

    /// Position of `tp` in `entries` (which must be sorted by `Tp` and indexed by the last
    /// [`TpIndex::rebuild`]).
    #[inline]
    pub fn find<V>(&self, entries: &[(Tp, V)], tp: Tp) -> Option<usize> {
        if tp.partition < Self::DENSE_PARTITIONS_MAX {
            let slot = *self.dense.get(tp.topic as usize)?.get(tp.partition as usize)?;
            return (slot != Self::NO_SLOT).then_some(slot as usize);
        }
        entries.binary_search_by(|(t, _)| t.cmp(&tp)).ok()
    }

    /// Re-indexes `entries` after an insertion or removal.
    pub fn rebuild<V>(&mut self, entries: &[(Tp, V)]) {
        for v in &mut self.dense {
            v.fill(Self::NO_SLOT);
        }
        for (i, (tp, _)) in entries.iter().enumerate() {
            if tp.partition < Self::DENSE_PARTITIONS_MAX {
                let (t, p) = (tp.topic as usize, tp.partition as usize);
                if self.dense.len() <= t {
                    self.dense.resize_with(t + 1, Vec::new);
                }
                if self.dense[t].len() <= p {
                    self.dense[t].resize(p + 1, Self::NO_SLOT);
                }
                self.dense[t][p] = i as u32;
            }
        }
    }
}

#[cfg(test)]
mod tp_index_tests {
    use super::*;

    #[test]
    fn finds_dense_and_sparse_partitions_and_forgets_removed_ones() {
        let mut entries: Vec<(Tp, char)> = vec![(Tp::new(0, 1), 'a'), (Tp::new(0, 9_000), 'b'), (Tp::new(2, 0), 'c')];
        let mut ix = TpIndex::default();
        ix.rebuild(&entries);
        for (i, (tp, _)) in entries.iter().enumerate() {
            assert_eq!(ix.find(&entries, *tp), Some(i));
        }
        assert_eq!(ix.find(&entries, Tp::new(0, 2)), None);
        assert_eq!(ix.find(&entries, Tp::new(1, 0)), None);
        entries.remove(0);
        ix.rebuild(&entries);
        assert_eq!(ix.find(&entries, Tp::new(0, 1)), None);
        assert_eq!(ix.find(&entries, Tp::new(2, 0)), Some(1));
    }
}
