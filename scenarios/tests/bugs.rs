//! Every planted bug is caught by exploration within 100 seeds, on the catalogue scenario that
//! exercises its rule: with swarm faults (the seed picks them), or — for R3, which needs a restart
//! while the limiter is saturated — with the scenario's own schedule (`explore --schedule`). For each bug: the first detecting
//! seed names one of the anomalies of the bug's rule; the correct core passes that same seed; the
//! failure shrinks to at most three faults and the shrunk scenario file replays it. The test
//! prints seeds-to-detection per bug and their median.

use std::path::PathBuf;
use std::sync::Mutex;

use sluice_core::bugs::{Bug, Bugs};
use sluice_core::spec::{Faults, Scenario, SwarmWord};
use sluice_scenarios::load;
use sluice_scenarios::runner::{self, ExploreOptions};

/// Seeds explored per bug before the test gives up.
const SEEDS_MAX: u64 = 100;
/// The most faults a shrunk counterexample may keep.
const SHRUNK_FAULTS_MAX: usize = 3;

/// Faults of a case: picked by the seed, or the scenario's own schedule.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Swarm,
    Schedule,
}
use Mode::*;

/// (bug, scenario, fault mode, the anomalies that name its rule)
const CASES: &[(Bug, &str, Mode, &[&str])] = &[
    (Bug::CommitBeforeProcess, "steady", Swarm, &["commit-beyond-processed"]),
    // Non-blocking retries complete records out of offset order: a parked record is a hole below
    // records done after it, which the planted ledger commits past.
    (Bug::CommitBeyondProcessed, "poison-pill-nonblocking", Swarm, &["commit-beyond-processed"]),
    (Bug::NoCommitOnRevoke, "rebalance-storm-eager", Swarm, &["duplicate-beyond-window"]),
    (Bug::IgnoreCredits, "slow-consumer", Swarm, &["credit-rule"]),
    (Bug::BucketOverfill, "rate-limited-sink-restart", Swarm, &["rate-bound"]),
    (Bug::TierLeak, "rate-limited-backlog", Swarm, &["rate-bound"]),
    (Bug::LimiterForgets, "rate-limited-backlog", Schedule, &["rate-bound"]),
    (Bug::ProcessRevoked, "rebalance-storm-eager", Swarm, &["partition-owned-twice", "duplicate-beyond-window"]),
    (Bug::UnboundedBuffer, "slow-consumer", Swarm, &["buffer-bound-exceeded", "credit-rule"]),
    (Bug::DropAfterRetries, "poison-pill-dlq", Swarm, &["dropped-record"]),
    (Bug::NoSeekOnAssign, "rebalance-storm-eager", Swarm, &["gap-after-restart"]),
    (Bug::UnbalancedAssignor, "round-robin-fair-share", Swarm, &["lag-not-recovered", "unseen"]),
    (Bug::BarrierOvertakes, "aligned-checkpoints", Swarm, &["barrier-overtaken"]),
    (Bug::UndercountBytes, "large-records", Swarm, &["buffer-bound-exceeded"]),
];

fn explored(name: &str, mode: Mode) -> Scenario {
    let mut sc = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    if mode == Swarm {
        sc.faults = Faults::Swarm(SwarmWord::Swarm);
        sc.name = format!("{name}-swarm");
    }
    sc
}

struct Found {
    bug: Bug,
    scenario: &'static str,
    seed: u64,
    anomalies: Vec<String>,
    faults_before: usize,
    faults_after: usize,
}

fn hunt(bug: Bug, scenario: &'static str, mode: Mode, names: &[&str], dir: &std::path::Path) -> Found {
    let sc = explored(scenario, mode);
    let bugs = Bugs::only(bug);
    let hit = (1..=SEEDS_MAX).find_map(|seed| {
        let sim = runner::simulate(&sc, seed, bugs, true).unwrap_or_else(|e| panic!("{} seed {seed}: {e}", bug.name()));
        let seen: Vec<String> = sim.judgement.unexpected_anomalies.clone();
        seen.iter().any(|a| names.contains(&a.as_str())).then_some((seed, seen))
    });
    let Some((seed, anomalies)) = hit else {
        panic!("{} on {scenario}: none of {names:?} within {SEEDS_MAX} seeds", bug.name());
    };
    // The correct core passes the same seed: the detection is the bug's.
    let clean = runner::simulate(&sc, seed, Bugs::NONE, false).unwrap();
    assert!(clean.judgement.pass, "{scenario} seed {seed} fails without {}: {:?}", bug.name(), clean.judgement.observed);

    // Shrinking the failure keeps at most three faults, and the written file replays it.
    let out = dir.join(bug.name());
    let x = runner::explore(
        &load(scenario).unwrap(),
        &ExploreOptions { first_seed: seed, seeds: 1, bugs, swarm: mode == Swarm, threads: 1, shrink: true, out_dir: out.clone() },
        &|_| {},
    )
    .unwrap();
    let s = x.shrunk.as_ref().unwrap_or_else(|| panic!("{}: no shrink\n{}", bug.name(), x.table()));
    assert!(s.reproduced, "{}: the shrunk schedule does not reproduce\n{}", bug.name(), x.table());
    assert!(s.faults_after <= SHRUNK_FAULTS_MAX, "{}: {} faults after shrinking\n{}", bug.name(), s.faults_after, x.table());
    let replay = load(&s.file).unwrap();
    let r = runner::run_one(&replay, seed, None, bugs, None).unwrap();
    assert!(!r.pass(), "{}: the shrunk file {} passes", bug.name(), s.file);
    Found { bug, scenario, seed, anomalies, faults_before: s.faults_before, faults_after: s.faults_after }
}

#[test]
fn every_planted_bug_is_caught_within_100_seeds_and_shrinks() {
    // Every planted bug is listed. commit-beyond-processed acts only where records complete out
    // of offset order: under non-blocking retries (poison-pill-nonblocking).
    let missing: Vec<&str> = Bug::ALL.iter().filter(|b| !CASES.iter().any(|c| c.0 == **b)).map(|b| b.name()).collect();
    assert!(missing.is_empty(), "planted bugs without an exploration case: {missing:?}");
    let dir = std::env::temp_dir().join(format!("sluice-bugs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let next = Mutex::new(0usize);
    let found: Mutex<Vec<Found>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(&(bug, scenario, mode, names)) = CASES.get(i) else { break };
                let f = hunt(bug, scenario, mode, names, &dir);
                found.lock().unwrap().push(f);
            });
        }
    });
    let mut found = found.into_inner().unwrap();
    found.sort_by_key(|f| f.bug);
    let mut seeds: Vec<u64> = found.iter().map(|f| f.seed).collect();
    seeds.sort_unstable();
    println!("{:<26} {:<26} {:>5}  {:<8} anomalies", "bug", "scenario", "seed", "faults");
    for f in &found {
        println!(
            "{:<26} {:<26} {:>5}  {:>2} -> {:<2} {}",
            f.bug.name(),
            f.scenario,
            f.seed,
            f.faults_before,
            f.faults_after,
            f.anomalies.join(", ")
        );
    }
    println!("median seeds to detection: {} (of {} bugs)", seeds[seeds.len() / 2], seeds.len());
    assert_eq!(found.len(), CASES.len());
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
