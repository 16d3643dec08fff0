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
/// of the step). One flat table holds a slot per (topic, partition) below the largest indexed
/// partition number (the stride), 4 bytes each, when partitions are numbered below
/// [`TpIndex::DENSE_PARTITIONS_MAX`] and the table stays within [`TpIndex::DENSE_SLOTS_MAX`];
/// other partitions fall back to binary search. Rebuilt when entries come or go, which is rare
/// (ownership changes).
#[derive(Clone, Debug, Default)]
pub struct TpIndex {
    /// Slots per topic in `slots`: every partition number in the table is below it (0: no table).
    stride: u32,
    /// `slots[topic * stride + partition]`: position, or `NO_SLOT`.
    slots: Vec<u32>,
    /// Some entries are not in the table (searched for instead).
    sparse: bool,
}

impl TpIndex {
    pub const DENSE_PARTITIONS_MAX: u32 = 4_096;
    /// Upper bound of the flat table, in slots (4 MiB); beyond it every entry is searched for.
    pub const DENSE_SLOTS_MAX: usize = 1 << 20;
    const NO_SLOT: u32 = u32::MAX;

    /// Position of `tp` in `entries` (which must be sorted by `Tp` and indexed by the last
    /// [`TpIndex::rebuild`]).
    #[inline]
    pub fn find<V>(&self, entries: &[(Tp, V)], tp: Tp) -> Option<usize> {
        if tp.partition < self.stride {
            let slot = *self.slots.get(tp.topic as usize * self.stride as usize + tp.partition as usize)?;
            return (slot != Self::NO_SLOT).then_some(slot as usize);
        }
        if self.sparse {
            return entries.binary_search_by(|(t, _)| t.cmp(&tp)).ok();
        }
        None
    }

    /// Re-indexes `entries` after an insertion or removal.
    pub fn rebuild<V>(&mut self, entries: &[(Tp, V)]) {
        let dense = |tp: &Tp| tp.partition < Self::DENSE_PARTITIONS_MAX;
        let stride = entries.iter().filter(|(tp, _)| dense(tp)).map(|(tp, _)| tp.partition + 1).max().unwrap_or(0);
        let topics = entries.iter().map(|(tp, _)| tp.topic as usize + 1).max().unwrap_or(0);
        self.sparse = entries.iter().any(|(tp, _)| !dense(tp));
        self.stride = stride;
        if topics * stride as usize > Self::DENSE_SLOTS_MAX {
            self.stride = 0;
            self.sparse = true;
        }
        self.slots.clear();
        self.slots.resize(topics * self.stride as usize, Self::NO_SLOT);
        for (i, (tp, _)) in entries.iter().enumerate() {
            if tp.partition < self.stride {
                self.slots[tp.topic as usize * self.stride as usize + tp.partition as usize] = i as u32;
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

    #[test]
    fn a_table_beyond_its_bound_falls_back_to_search() {
        // 300 topics x partition 4000: 1.2 M slots, above DENSE_SLOTS_MAX.
        let entries: Vec<(Tp, u32)> = (0..300u16).map(|t| (Tp::new(t, 4_000), t as u32)).collect();
        let mut ix = TpIndex::default();
        ix.rebuild(&entries);
        for (i, (tp, _)) in entries.iter().enumerate() {
            assert_eq!(ix.find(&entries, *tp), Some(i));
        }
        assert_eq!(ix.find(&entries, Tp::new(0, 3_999)), None);
        assert_eq!(ix.find(&entries, Tp::new(300, 4_000)), None);
        // Only dense entries: a partition past the stride is absent without a search.
        let small = vec![(Tp::new(0, 0), 0u32), (Tp::new(1, 2), 1)];
        ix.rebuild(&small);
        assert_eq!(ix.find(&small, Tp::new(1, 2)), Some(1));
        assert_eq!(ix.find(&small, Tp::new(1, 3)), None);
        assert_eq!(ix.find(&small, Tp::new(0, 1)), None);
        ix.rebuild::<u32>(&[]);
        assert_eq!(ix.find::<u32>(&[], Tp::new(0, 0)), None);
    }
}
