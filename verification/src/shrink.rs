//! A generic shrinker: delta debugging (Zeller and Hildebrandt's ddmin) over a list of fault
//! events. Given a failing list and a predicate `fails`, it returns a sub-list (order kept) that
//! still fails and from which no single event can be removed without the failure going away
//! (1-minimal) — unless the bounded number of attempts ran out first.

/// The result of a shrink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk<T> {
    /// A failing sub-list of the input, in the input's order.
    pub events: Vec<T>,
    /// Calls made to `fails` (including the first check of the whole input).
    pub attempts: usize,
    /// `true` when `attempts_max` was reached: `events` fails but may not be minimal.
    pub exhausted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the input does not fail: nothing to shrink")]
    InputPasses,
    #[error("attempts_max must be at least 1")]
    NoAttempts,
}

/// Shrinks `input` to a minimal failing sub-list, calling `fails` at most `attempts_max` times.
pub fn shrink<T: Clone>(
    input: &[T],
    attempts_max: usize,
    mut fails: impl FnMut(&[T]) -> bool,
) -> Result<Shrunk<T>, ShrinkError> {
    if attempts_max == 0 {
        return Err(ShrinkError::NoAttempts);
    }
    let mut attempts = 1;
    if !fails(input) {
        return Err(ShrinkError::InputPasses);
    }
    let mut cur: Vec<T> = input.to_vec();
    let mut n = 2usize;
    let mut try_fails = |cand: &[T], attempts: &mut usize| -> Option<bool> {
        if *attempts >= attempts_max {
            return None;
        }
        *attempts += 1;
        Some(fails(cand))
    };
    'outer: while cur.len() >= 2 {
        let n_eff = n.min(cur.len());
        let bounds: Vec<(usize, usize)> = (0..n_eff)
            .map(|i| (i * cur.len() / n_eff, (i + 1) * cur.len() / n_eff))
            .collect();
        // 1. Reduce to a subset.
        for &(lo, hi) in &bounds {
            match try_fails(&cur[lo..hi], &mut attempts) {
                None => {
                    return Ok(Shrunk {
                        events: cur,
                        attempts,
                        exhausted: true,
                    })
                }
                Some(true) => {
                    cur = cur[lo..hi].to_vec();
                    n = 2;
                    continue 'outer;
                }
                Some(false) => {}
            }
        }
        // 2. Reduce to a complement.
        if n_eff > 2 {
            for &(lo, hi) in &bounds {
                let comp: Vec<T> = cur[..lo].iter().chain(&cur[hi..]).cloned().collect();
                match try_fails(&comp, &mut attempts) {
                    None => {
                        return Ok(Shrunk {
                            events: cur,
                            attempts,
                            exhausted: true,
                        })
                    }
                    Some(true) => {
                        cur = comp;
                        n = (n_eff - 1).max(2);
                        continue 'outer;
                    }
                    Some(false) => {}
                }
            }
        }
        // 3. Increase granularity, or stop at single elements.
        if n_eff >= cur.len() {
            break;
        }
        n = (2 * n_eff).min(cur.len());
    }
    // A one-element list may still shrink to the empty list.
    if cur.len() == 1 {
        match try_fails(&[], &mut attempts) {
            None => {
                return Ok(Shrunk {
                    events: cur,
                    attempts,
                    exhausted: true,
                })
            }
            Some(true) => cur.clear(),
            Some(false) => {}
        }
    }
    Ok(Shrunk {
        events: cur,
        attempts,
        exhausted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contains_all(xs: &[u32], need: &[u32]) -> bool {
        need.iter().all(|n| xs.contains(n))
    }

    /// (input length, elements that together cause the failure, expected result)
    #[test]
    fn finds_the_culprits() {
        let cases: &[(u32, &[u32], &[u32])] = &[
            (10, &[3], &[3]),
            (10, &[3, 7], &[3, 7]),
            (100, &[0, 50, 99], &[0, 50, 99]),
            (1, &[0], &[0]),
            (64, &[63, 1], &[1, 63]),
        ];
        for &(len, need, want) in cases {
            let input: Vec<u32> = (0..len).collect();
            let s = shrink(&input, 10_000, |xs| contains_all(xs, need)).unwrap();
            assert_eq!(s.events, want, "need {need:?}");
            assert!(!s.exhausted);
        }
    }

    #[test]
    fn always_failing_shrinks_to_empty() {
        let s = shrink(&[1, 2, 3], 100, |_| true).unwrap();
        assert_eq!(s.events, Vec::<i32>::new());
    }

    #[test]
    fn input_that_passes_is_an_error() {
        assert_eq!(
            shrink(&[1, 2, 3], 100, |_| false),
            Err(ShrinkError::InputPasses)
        );
        assert_eq!(shrink(&[1], 0, |_| true), Err(ShrinkError::NoAttempts));
    }

    #[test]
    fn attempts_are_bounded_and_result_still_fails() {
        let input: Vec<u32> = (0..1000).collect();
        let need = [5, 500, 995];
        let mut calls = 0;
        let s = shrink(&input, 20, |xs| {
            calls += 1;
            contains_all(xs, &need)
        })
        .unwrap();
        assert!(s.exhausted);
        assert_eq!(s.attempts, 20);
        assert_eq!(calls, 20);
        assert!(contains_all(&s.events, &need));
        assert!(s.events.len() < input.len());
    }

    proptest! {
        /// For any input and any culprit set, the result fails, keeps the input's order, and is
        /// 1-minimal: dropping any single element makes it pass.
        #[test]
        fn result_is_one_minimal(len in 1usize..60, picks in proptest::collection::vec(0usize..60, 1..4)) {
            let input: Vec<usize> = (0..len).collect();
            let need: Vec<usize> = picks.into_iter().map(|p| p % len).collect();
            let fails = |xs: &[usize]| need.iter().all(|n| xs.contains(n));
            let s = shrink(&input, 100_000, fails).unwrap();
            prop_assert!(!s.exhausted);
            prop_assert!(fails(&s.events));
            prop_assert!(s.events.windows(2).all(|w| w[0] < w[1]));
            for i in 0..s.events.len() {
                let mut fewer = s.events.clone();
                fewer.remove(i);
                prop_assert!(!fails(&fewer));
            }
        }
    }
}
