//! Compact per-offset storage and interval sets: the data structures that keep the checkers linear
//! in the number of records.

use std::collections::BTreeMap;

/// Slots per chunk of an [`OffsetMap`].
const CHUNK_SLOTS: u64 = 1024;

/// A map from offset (or seq) to a small `Copy` slot, stored in fixed chunks of [`CHUNK_SLOTS`] so
/// that dense key ranges cost one array access and sparse ones cost only the chunks they touch.
#[derive(Clone, Debug, Default)]
pub(crate) struct OffsetMap<T: Copy + Default> {
    chunks: BTreeMap<u64, Box<[T]>>,
}

impl<T: Copy + Default> OffsetMap<T> {
    /// The slot at `key`, or the default slot if it was never written.
    pub fn get_or_default(&self, key: u64) -> T {
        self.chunks
            .get(&(key / CHUNK_SLOTS))
            .map(|c| c[(key % CHUNK_SLOTS) as usize])
            .unwrap_or_default()
    }

    pub fn get_mut(&mut self, key: u64) -> &mut T {
        let chunk = self
            .chunks
            .entry(key / CHUNK_SLOTS)
            .or_insert_with(|| vec![T::default(); CHUNK_SLOTS as usize].into_boxed_slice());
        &mut chunk[(key % CHUNK_SLOTS) as usize]
    }

    /// Every slot of every chunk touched so far, in key order (untouched keys of a touched chunk
    /// yield the default slot; callers filter).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.chunks.iter().flat_map(|(c, slots)| {
            slots
                .iter()
                .enumerate()
                .map(move |(i, s)| (c * CHUNK_SLOTS + i as u64, s))
        })
    }
}

/// A set of `u64` stored as disjoint, non-adjacent half-open intervals `[start, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IntervalSet {
    /// start → end (exclusive).
    ivs: BTreeMap<u64, u64>,
    len: u64,
}

impl IntervalSet {
    /// Number of members.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn clear(&mut self) {
        self.ivs.clear();
        self.len = 0;
    }

    /// Adds `[lo, hi)`; returns how many members were new.
    pub fn insert(&mut self, lo: u64, hi: u64) -> u64 {
        if lo >= hi {
            return 0;
        }
        let (mut new_lo, mut new_hi) = (lo, hi);
        let mut old = 0;
        let mut absorbed = Vec::new();
        for (&s, &e) in self.ivs.range(..=hi).rev() {
            if e < lo {
                break;
            }
            absorbed.push(s);
            old += e - s;
            new_lo = new_lo.min(s);
            new_hi = new_hi.max(e);
        }
        for s in absorbed {
            self.ivs.remove(&s);
        }
        self.ivs.insert(new_lo, new_hi);
        let added = (new_hi - new_lo) - old;
        self.len += added;
        added
    }

    /// Removes `[lo, hi)`; returns how many members were removed.
    pub fn remove(&mut self, lo: u64, hi: u64) -> u64 {
        self.remove_each(lo, hi, |_, _| {})
    }

    /// Removes `[lo, hi)`, calling `removed(start, end)` for each maximal range of members it
    /// takes out; returns how many members were removed.
    pub fn remove_each(&mut self, lo: u64, hi: u64, mut removed_range: impl FnMut(u64, u64)) -> u64 {
        if lo >= hi {
            return 0;
        }
        let mut hit = Vec::new();
        for (&s, &e) in self.ivs.range(..hi).rev() {
            if e <= lo {
                break;
            }
            hit.push((s, e));
        }
        let mut removed = 0;
        for (s, e) in hit {
            self.ivs.remove(&s);
            removed += e.min(hi) - s.max(lo);
            removed_range(s.max(lo), e.min(hi));
            if s < lo {
                self.ivs.insert(s, lo);
            }
            if e > hi {
                self.ivs.insert(hi, e);
            }
        }
        self.len -= removed;
        removed
    }

    #[cfg(test)]
    pub fn contains(&self, x: u64) -> bool {
        self.containing(x).is_some()
    }

    /// The interval that holds `x`, if any.
    pub fn containing(&self, x: u64) -> Option<(u64, u64)> {
        self.ivs
            .range(..=x)
            .next_back()
            .filter(|(_, &e)| e > x)
            .map(|(&s, &e)| (s, e))
    }

    /// Whether every member of `[lo, hi)` is in the set.
    pub fn covers(&self, lo: u64, hi: u64) -> bool {
        lo >= hi || self.containing(lo).is_some_and(|(_, e)| e >= hi)
    }

    pub fn max(&self) -> Option<u64> {
        self.ivs.iter().next_back().map(|(_, &e)| e - 1)
    }
}

/// Formats sorted offsets as compact ranges: `3, 7-9`, listing at most `RANGES_SHOWN_MAX` ranges.
pub(crate) fn ranges(sorted: &[u64]) -> String {
    const RANGES_SHOWN_MAX: usize = 8;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &x in sorted {
        match out.last_mut() {
            Some((_, e)) if *e + 1 == x => *e = x,
            _ => out.push((x, x)),
        }
    }
    let mut parts: Vec<String> = out
        .iter()
        .take(RANGES_SHOWN_MAX)
        .map(|&(s, e)| {
            if s == e {
                s.to_string()
            } else {
                format!("{s}-{e}")
            }
        })
        .collect();
    if out.len() > RANGES_SHOWN_MAX {
        parts.push(format!("… ({} more ranges)", out.len() - RANGES_SHOWN_MAX));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_set_matches_a_naive_set() {
        // Table of operations: (insert?, lo, hi, expected change).
        let ops: &[(bool, u64, u64, u64)] = &[
            (true, 5, 10, 5),
            (true, 10, 12, 2), // adjacent: merges
            (true, 0, 3, 3),
            (true, 2, 6, 2), // bridges 0..3 and 5..12 (adds 3, 4)
            (false, 4, 8, 4),
            (false, 100, 200, 0),
            (true, 0, 12, 4),
            (false, 0, 12, 12),
        ];
        let mut s = IntervalSet::default();
        let mut naive = std::collections::BTreeSet::new();
        for &(ins, lo, hi, want) in ops {
            let got = if ins {
                s.insert(lo, hi)
            } else {
                s.remove(lo, hi)
            };
            let naive_change = (lo..hi)
                .filter(|x| {
                    if ins {
                        naive.insert(*x)
                    } else {
                        naive.remove(x)
                    }
                })
                .count();
            assert_eq!(got, want, "op {ins} {lo}..{hi}");
            assert_eq!(got as usize, naive_change);
            assert_eq!(s.len() as usize, naive.len());
            for x in 0..20 {
                assert_eq!(s.contains(x), naive.contains(&x), "member {x}");
            }
        }
    }

    #[test]
    fn covers_and_max() {
        let mut s = IntervalSet::default();
        s.insert(3, 8);
        assert!(s.covers(3, 8));
        assert!(s.covers(5, 5));
        assert!(!s.covers(2, 8));
        assert!(!s.covers(3, 9));
        assert_eq!(s.max(), Some(7));
    }

    #[test]
    fn offset_map_is_sparse_and_ordered() {
        let mut m: OffsetMap<u8> = OffsetMap::default();
        *m.get_mut(5) = 1;
        *m.get_mut(1_000_000_007) = 2;
        assert_eq!(m.get_or_default(5), 1);
        assert_eq!(m.get_or_default(6), 0);
        assert_eq!(m.get_or_default(1_000_000_007), 2);
        let set: Vec<u64> = m.iter().filter(|(_, v)| **v != 0).map(|(k, _)| k).collect();
        assert_eq!(set, vec![5, 1_000_000_007]);
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(ranges(&[]), "");
    }
}
