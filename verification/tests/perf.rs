//! Scale check, selected by `SLUICE_SLOW=1` (it is a slow test, not a hidden one): a clean model
//! history of at least 1M entries checks with no violation.
//!
//! Measured (release, this 2-core machine, other builds running), 1,111,565 entries holding
//! 617,620 records: `check_1m_entries` finishes in 0.86-1.12 s of which generation
//! (`generate_1m_entries`) takes 0.35-0.63 s, so checking takes about 0.3-0.55 s; peak RSS of the
//! whole test about 370 MB (most of it the history itself). Reproduce with
//!   SLUICE_SLOW=1 cargo test --release -p sluice-verification --test perf -- --exact check_1m_entries
//!   SLUICE_SLOW=1 cargo test --release -p sluice-verification --test perf -- --exact generate_1m_entries
//! and compare the "finished in" times.

mod common;

use sluice_core::{Rng, SplitMix64};

const ENTRIES_MIN: usize = 1_000_000;

fn slow() -> bool {
    let on = std::env::var("SLUICE_SLOW").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: slow test, run with SLUICE_SLOW=1");
    }
    on
}

fn big_history() -> Vec<sluice_core::history::Entry> {
    let mut rng = SplitMix64(42);
    // Each op writes about 2 entries; 550k ops give comfortably more than 1M.
    let ops: Vec<common::Op> = (0..550_000)
        .map(|_| ((rng.next_u64() % 4) as u8, (rng.next_u64() % 256) as u8))
        .collect();
    let h = common::clean_history(&ops);
    assert!(h.len() >= ENTRIES_MIN, "only {} entries", h.len());
    h
}

#[test]
fn generate_1m_entries() {
    if !slow() {
        return;
    }
    assert!(big_history().len() >= ENTRIES_MIN);
}

#[test]
fn check_1m_entries() {
    if !slow() {
        return;
    }
    let h = big_history();
    let report = sluice_verification::check(&h);
    assert!(
        report.violations.is_empty(),
        "{:?}",
        &report.violations[..report.violations.len().min(3)]
    );
    assert_eq!(report.summary.entries, h.len() as u64);
    eprintln!(
        "entries {} records acked {}",
        h.len(),
        report.summary.records_acked
    );
}
