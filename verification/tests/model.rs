//! Property tests over the in-test model (`common`): clean histories give no violation; one
//! mutated event gives the anomaly it should.

mod common;

use proptest::prelude::*;
use sluice_core::history::{Entry, Event};
use sluice_verification::{check, Online};

fn ops() -> impl Strategy<Value = Vec<common::Op>> {
    proptest::collection::vec((0u8..4, any::<u8>()), 0..120)
}

fn anomalies(h: &[Entry]) -> Vec<String> {
    check(h).anomalies
}

/// Asserts that `h` shows `must` and nothing outside `may ∪ {must}`.
fn check_mutant(h: &[Entry], must: &str, may: &[&str]) -> Result<(), TestCaseError> {
    let got = anomalies(h);
    prop_assert!(
        got.iter().any(|a| a == must),
        "expected {must}, got {got:?}"
    );
    for a in &got {
        prop_assert!(
            a == must || may.contains(&a.as_str()),
            "unexpected {a} (expected {must})"
        );
    }
    Ok(())
}

fn indices(h: &[Entry], pred: impl Fn(&Event) -> bool) -> Vec<usize> {
    h.iter()
        .enumerate()
        .filter(|(_, e)| pred(&e.ev))
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn clean_model_histories_have_no_violation(ops in ops()) {
        let h = common::clean_history(&ops);
        let report = check(&h);
        prop_assert!(report.violations.is_empty(), "{:#?}", report.violations);
        prop_assert!(report.input_errors.is_empty(), "{:?}", report.input_errors);
        prop_assert_eq!(report.summary.records_acked, report.summary.records_processed);
        // The model samples its buffer after every fetch, so its samples' peak is the true one:
        // the buffer rebuilt from fetches and record sizes never counts more.
        let sampled = h.iter().filter_map(|e| match e.ev { Event::Buffer { bytes, .. } => Some(bytes), _ => None }).max().unwrap_or(0);
        prop_assert_eq!(report.summary.buffer_peak_bytes.get("c0").copied().unwrap_or(0), sampled);
        let mut online = Online::new();
        for e in &h {
            prop_assert_eq!(online.observe(e), None);
        }
    }

    /// Dropping a fetch (and its credit grant) that a later fetch follows: the later fetch skips.
    #[test]
    fn dropping_a_fetch_is_a_poll_skip(ops in ops(), pick in any::<usize>()) {
        let mut h = common::clean_history(&ops);
        let fetches = indices(&h, |e| matches!(e, Event::Fetch { .. }));
        prop_assume!(fetches.len() >= 2);
        let i = fetches[pick % (fetches.len() - 1)];
        h.remove(i);
        h.remove(i - 1); // its CreditGrant
        check_mutant(&h, "poll-skip", &["lost-write"])?;
    }

    /// A buffer sample reporting one byte more than `buffer_bytes_max` (its records within
    /// their bound) is a buffer bound exceeded.
    #[test]
    fn a_sample_above_the_byte_bound_is_buffer_bound_exceeded(ops in ops(), pick in any::<usize>()) {
        let mut h = common::clean_history(&ops);
        let samples = indices(&h, |e| matches!(e, Event::Buffer { .. }));
        prop_assume!(!samples.is_empty());
        if let Event::Buffer { bytes, .. } = &mut h[samples[pick % samples.len()]].ev {
            *bytes = common::BUFFER_BYTES_MAX + 1;
        }
        check_mutant(&h, "buffer-bound-exceeded", &[])?;
    }

    /// A consumer that counts half the bytes it holds: its own samples stay within a byte bound
    /// its buffer is over. The buffer rebuilt from the fetches and the producers' declared record
    /// sizes shows it; with no sizes declared, the same history passes (the samples are all a
    /// checker has then).
    #[test]
    fn a_buffer_over_the_byte_bound_its_samples_hide_is_caught_by_reconstruction(ops in ops()) {
        let mut h = common::clean_history(&ops);
        let peak = h.iter().filter_map(|e| match e.ev { Event::Buffer { bytes, .. } => Some(bytes), _ => None }).max().unwrap_or(0);
        prop_assume!(peak >= 2);
        for e in &mut h {
            match &mut e.ev {
                Event::Buffer { bytes, .. } => *bytes /= 2,
                Event::Meta(m) => m.bounds.buffer_bytes_max = peak - 1,
                _ => {}
            }
        }
        check_mutant(&h, "buffer-bound-exceeded", &[])?;
        let r = sluice_verification::check(&h);
        prop_assert!(r.violations.iter().any(|v| v.rule == "buffer_bytes_max" && v.detail.contains("reconstructed")), "{:?}", r.violations);
        if let Event::Meta(m) = &mut h[0].ev {
            m.producers.clear();
        }
        prop_assert_eq!(anomalies(&h), Vec::<String>::new());
    }

    /// A fetch whose `bytes` disagree with its records' declared sizes is reported as the
    /// history contradicting itself.
    #[test]
    fn a_fetch_miscounting_its_bytes_is_an_input_error(ops in ops(), pick in any::<usize>(), by in 1u64..1_000) {
        let mut h = common::clean_history(&ops);
        let fetches = indices(&h, |e| matches!(e, Event::Fetch { .. }));
        prop_assume!(!fetches.is_empty());
        if let Event::Fetch { bytes, .. } = &mut h[fetches[pick % fetches.len()]].ev {
            *bytes += by;
        }
        let r = sluice_verification::check(&h);
        prop_assert!(r.input_errors.iter().any(|e| e.contains("declared record sizes")), "{:?}", r.input_errors);
    }

    /// Bumping a commit past the processed prefix breaks K1.
    #[test]
    fn bumping_a_commit_is_commit_beyond_processed(ops in ops(), pick in any::<usize>(), by in 1u64..4) {
        let mut h = common::clean_history(&ops);
        let sends = indices(&h, |e| matches!(e, Event::CommitSend { .. }));
        prop_assume!(!sends.is_empty());
        let i = sends[pick % sends.len()];
        for j in [i, i + 1] {
            if let Event::CommitSend { offset, .. } | Event::CommitAck { offset, .. } = &mut h[j].ev {
                *offset += by;
            }
        }
        check_mutant(&h, "commit-beyond-processed", &[])?;
    }

    /// Acknowledging an already-written value again at the end of the log is a duplicate.
    #[test]
    fn duplicating_a_value_is_a_duplicate(ops in ops(), pick in any::<usize>()) {
        let mut h = common::clean_history(&ops);
        let acks = indices(&h, |e| matches!(e, Event::ProduceAck { .. }));
        prop_assume!(!acks.is_empty());
        let Event::ProduceAck { producer, seq, .. } = h[acks[pick % acks.len()]].ev.clone() else { unreachable!() };
        let log_end = check(&h).summary.records_acked;
        let t = h.last().unwrap().t_us;
        let at = h.len() - 1; // before the final Phase::End
        h.insert(at, Entry { t_us: t, ev: Event::ProduceAck { producer, tp: common::TP.into(), seq, count: 1, offset: log_end } });
        check_mutant(&h, "duplicate", &["nonmonotonic-send"])?;
    }
}

/// A random change to one entry: numbers from small to extreme, consumers that never joined.
fn perturb(ev: &mut Event, x: u64) {
    let wild = [0, 1, 7, 1 << 20, u32::MAX as u64, u64::MAX - 1, u64::MAX][(x % 7) as usize];
    match ev {
        Event::Fetch { runs, consumer, .. } => {
            if let Some(r) = runs.first_mut() {
                r.offset = wild;
                r.count = (x >> 8) as u32;
            }
            *consumer = (x % 3) as u32;
        }
        Event::ProduceAck {
            offset, seq, count, ..
        } => {
            *offset = wild;
            *seq = x >> 3;
            *count = (x >> 40) as u32;
        }
        Event::ProcessStart {
            offset,
            count,
            consumer,
            ..
        } => {
            *offset = wild;
            *count = (x >> 8) as u32;
            *consumer = (x % 3) as u32;
        }
        Event::ProcessEnd { offset, ok, .. } => {
            *offset = wild;
            *ok = (x >> 8) as u32;
        }
        Event::CommitSend { offset, .. }
        | Event::CommitAck { offset, .. }
        | Event::Seek { offset, .. } => *offset = wild,
        Event::Lag { hw, committed, .. } => {
            *hw = wild;
            *committed = x;
        }
        Event::CreditGrant { n, .. } => *n = x as u32,
        Event::Buffer { records, bytes, .. } => {
            *records = wild;
            *bytes = x;
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Malformed input never panics or hangs: perturbed, reordered or truncated histories still give
    /// a report (possibly with input errors), and online and offline agree on the first violation.
    #[test]
    fn mangled_histories_never_panic(ops in ops(), edits in proptest::collection::vec((any::<usize>(), any::<u64>()), 1..12), cut in any::<usize>()) {
        let mut h = common::clean_history(&ops);
        for (i, x) in edits {
            let i = i % h.len();
            if x % 5 == 0 {
                h.remove(i);
                if h.is_empty() {
                    break;
                }
            } else if x % 5 == 1 {
                let j = (x as usize / 5) % h.len();
                h.swap(i, j);
            } else {
                perturb(&mut h[i].ev, x);
            }
        }
        h.truncate(cut % (h.len() + 1));
        let report = check(&h);
        let mut online = Online::new();
        let mut first = None;
        for e in &h {
            let v = online.observe(e);
            if first.is_none() {
                first = v;
            }
        }
        let n = online.violations().len();
        prop_assert_eq!(online.violations(), &report.violations[..n]);
        if let Some(f) = first {
            prop_assert!(report.violations.contains(&f));
        }
    }
}

/// A history of admissions by one tier: (gap since the previous admission in ms, records).
fn admissions_history(adm: &[(u64, u32)], rate_per_s: f64, burst: f64) -> Vec<Entry> {
    let mut meta = common::meta();
    if let Event::Meta(m) = &mut meta {
        m.bounds.rate_tiers = vec![sluice_core::history::TierBound {
            tier: "global".into(),
            rate_per_s,
            burst,
        }];
    }
    let mut h = vec![Entry { t_us: 0, ev: meta }];
    let mut t = 0;
    for &(gap_ms, n) in adm {
        t += gap_ms * 1000;
        h.push(Entry {
            t_us: t,
            ev: Event::Token {
                consumer: 0,
                tier: "global".into(),
                n,
                admitted: true,
            },
        });
    }
    h
}

/// R1 by brute force: some window [t_i, t_j] admits more than burst + rate·(t_j − t_i).
fn r1_broken_brute(adm: &[(u64, u32)], rate_per_ms: u64, burst: u64) -> bool {
    let mut times = Vec::new();
    let mut t = 0;
    for &(gap, _) in adm {
        t += gap;
        times.push(t);
    }
    (0..adm.len()).any(|i| {
        (i..adm.len()).any(|j| {
            let admitted: u64 = adm[i..=j].iter().map(|a| a.1 as u64).sum();
            admitted > burst + rate_per_ms * (times[j] - times[i])
        })
    })
}

proptest! {
    /// The linear R1 check agrees with the quadratic definition on every window.
    #[test]
    fn rate_check_matches_brute_force(adm in proptest::collection::vec((0u64..5, 0u32..6), 0..40), rate_per_ms in 0u64..3, burst in 0u64..12) {
        let h = admissions_history(&adm, rate_per_ms as f64 * 1000.0, burst as f64);
        let fired = check(&h).anomalies.contains(&"rate-bound".to_string());
        prop_assert_eq!(fired, r1_broken_brute(&adm, rate_per_ms, burst));
    }
}
