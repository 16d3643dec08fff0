//! End to end through the simulator: every catalogue scenario meets its expectations at seed 1,
//! runs are reproducible from their seed and from the files they write, and comparisons and
//! explorations find what they should.

use std::path::PathBuf;

use sluice_core::bugs::{Bug, Bugs};
use sluice_core::spec::Strategy;
use sluice_scenarios::runner::{self, CompareBy, ExploreOptions};
use sluice_scenarios::{catalogue, load};

fn temp_dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-runs-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn every_catalogue_scenario_meets_its_expectations_at_seed_1() {
    // s0 simulates a full hour (minutes of wall time even in release): SLUICE_SLOW=1 includes it.
    let slow = std::env::var_os("SLUICE_SLOW").is_some();
    let mut failed = Vec::new();
    for name in catalogue::names().filter(|n| slow || *n != "s0") {
        let s = load(name).unwrap();
        match runner::run_one(&s, 1, None, Bugs::NONE, None) {
            Ok(r) if r.pass() => {}
            Ok(r) => failed.push(format!("{name}:\n{}", r.table())),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{} scenario(s) failed at seed 1:\n{}", failed.len(), failed.join("\n\n"));
}

#[test]
fn summaries_at_fixed_seeds() {
    for (name, seed) in [
        ("steady", 1),
        ("broker-crash-acks-all", 2),
        ("unclean-election", 3),
        ("prefetch-memory-growth", 4),
        ("poison-pill-nonblocking", 5),
    ] {
        let s = load(name).unwrap();
        let r = runner::run_one(&s, seed, None, Bugs::NONE, None).unwrap();
        insta::assert_snapshot!(format!("{name}-{seed}"), r.table());
    }
}

#[test]
fn a_seed_decides_the_run() {
    for name in ["commit-unknown-outcome", "poison-pill-nonblocking"] {
        let s = load(name).unwrap();
        let hash = |seed| runner::run_one(&s, seed, None, Bugs::NONE, None).unwrap().hash;
        let (a, b, c) = (hash(5), hash(5), hash(6));
        assert_eq!(a, b, "{name}: same seed, different histories");
        assert_ne!(a, c, "{name}: different seeds, same history");
    }
}

#[test]
fn a_run_writes_files_that_check_and_replay_to_the_same_result() {
    let dir = temp_dir("files");
    let s = load("rate-limited-sink-restart").unwrap();
    let r = runner::run_one(&s, 3, Some(Strategy::Pause), Bugs::NONE, Some(&dir)).unwrap();
    for f in ["history.jsonl", "report.json", "scenario.toml"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(r.replay, "cargo sluice run rate-limited-sink-restart --seed 3 --strategy pause");
    // Checking the written history reaches the run's verdict and hash.
    let c = runner::check_file(&dir.join("history.jsonl")).unwrap();
    assert_eq!((c.hash.as_str(), c.judgement.pass), (r.hash.as_str(), r.pass()));
    // The written scenario replays to the same history.
    let again = load(dir.join("scenario.toml").to_str().unwrap()).unwrap();
    let r2 = runner::run_one(&again, 3, Some(Strategy::Pause), Bugs::NONE, None).unwrap();
    assert_eq!(r2.hash, r.hash);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn planted_bugs_are_caught() {
    // (scenario, bug, the anomaly its rule names)
    let cases = [
        ("steady", Bug::CommitBeforeProcess, "commit-beyond-processed"),
        ("prefetch-memory-growth", Bug::UnboundedBuffer, "buffer-bound-exceeded"),
        ("rate-limited-sink-restart", Bug::BucketOverfill, "rate-bound"),
        ("large-records", Bug::UnboundedBuffer, "buffer-bound-exceeded"),
        ("large-records", Bug::UndercountBytes, "buffer-bound-exceeded"),
        ("commit-on-revoke", Bug::NoCommitOnRevoke, "duplicate-beyond-window"),
    ];
    for (name, bug, anomaly) in cases {
        let mut s = load(name).unwrap();
        // prefetch-memory-growth expects the overflow under strategy none; under pause only the bug
        // can cause it, so nothing is expected.
        s.expect.anomalies.clear();
        let strategy = (name == "prefetch-memory-growth").then_some(Strategy::Pause);
        let r = runner::run_one(&s, 1, strategy, Bugs::only(bug), None).unwrap();
        assert!(!r.pass(), "{name} with {} passed:\n{}", bug.name(), r.table());
        assert!(r.judgement.observed.iter().any(|a| a == anomaly), "{name} with {}:\n{}", bug.name(), r.table());
        assert!(r.replay.ends_with(&format!("--plant {}", bug.name())), "{}", r.replay);
    }
}

#[test]
fn comparing_strategies_shows_which_one_bounds_the_buffer() {
    let s = load("prefetch-memory-growth").unwrap();
    let c = runner::compare(&s, 1, CompareBy::Strategy, &CompareBy::Strategy.variants(), Bugs::NONE, None).unwrap();
    let names: Vec<&str> = c.runs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["none", "pause", "credit"]);
    for (name, r) in &c.runs {
        let exceeded = r.judgement.observed.iter().any(|a| a == "buffer-bound-exceeded");
        assert_eq!(exceeded, name == "none", "{name}:\n{}", r.table());
    }
    assert!(c.pass, "{}", c.table());
}

/// 64 KiB records: under pause and credit the byte bound (8 MiB = 128 records) is what holds the
/// buffer, far below its record bound; without a strategy the prefetch runs past both, and the
/// byte bound is named in the violation.
#[test]
fn comparing_strategies_on_large_records_shows_the_byte_bound() {
    let s = load("large-records").unwrap();
    let bytes_max = s.consumers.buffer_bytes_max;
    let record = s.producers[0].record_bytes as u64;
    let c = runner::compare(&s, 1, CompareBy::Strategy, &CompareBy::Strategy.variants(), Bugs::NONE, None).unwrap();
    for (name, r) in &c.runs {
        let (peak, peak_records) = (r.stats.buffer_peak_bytes, r.stats.buffer_peak_records);
        if name == "none" {
            assert!(!r.pass(), "none:\n{}", r.table());
            assert!(r.judgement.unexpected.iter().any(|v| v.rule == "buffer_bytes_max"), "none:\n{}", r.table());
            assert!(peak > bytes_max, "none: byte peak {peak}");
        } else {
            assert!(r.pass(), "{name}:\n{}", r.table());
            assert!(peak <= bytes_max && peak > bytes_max - record, "{name}: byte peak {peak} of {bytes_max}");
            assert_eq!(peak_records, bytes_max / record, "{name}: the byte bound, not the record bound, held the buffer");
        }
    }
}

#[test]
fn exploring_with_a_planted_bug_reports_replayable_seeds_and_shrinks_the_first() {
    let dir = temp_dir("explore");
    let s = load("steady").unwrap();
    let opts = ExploreOptions {
        first_seed: 10,
        seeds: 4,
        bugs: Bugs::only(Bug::CommitBeforeProcess),
        swarm: true,
        threads: 2,
        shrink: true,
        out_dir: dir.clone(),
    };
    let progress_calls = std::sync::atomic::AtomicU64::new(0);
    let x = runner::explore(&s, &opts, &|_| {
        progress_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(x.seeds_run, 4);
    assert_eq!(progress_calls.into_inner(), 4);
    assert!(!x.failures.is_empty(), "{}", x.table());
    let seeds: Vec<u64> = x.failures.iter().map(|f| f.seed).collect();
    assert!(seeds.windows(2).all(|w| w[0] < w[1]), "failures not in seed order: {seeds:?}");
    for f in &x.failures {
        assert!(f.replay.contains(&format!("--seed {}", f.seed)) && f.replay.contains("--plant commit-before-process"), "{}", f.replay);
    }
    let shrunk = x.shrunk.as_ref().expect("the first failure is shrunk");
    assert!(shrunk.faults_after <= shrunk.faults_before);
    // The shrunk file is a valid scenario whose run at that seed still fails.
    let replay = load(&shrunk.file).unwrap();
    let r = runner::run_one(&replay, shrunk.seed, None, opts.bugs, None).unwrap();
    assert_eq!(r.pass(), !shrunk.reproduced, "{}", r.table());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exploring_writes_distribution_plots_and_an_index() {
    let dir = temp_dir("explore-sweep");
    let s = load("steady").unwrap();
    let opts = ExploreOptions { first_seed: 1, seeds: 3, bugs: Bugs::NONE, swarm: true, threads: 2, shrink: false, out_dir: dir.clone() };
    let x = runner::explore(&s, &opts, &|_| {}).unwrap();
    assert!(x.pass(), "{}", x.table());
    let index = std::fs::read_to_string(dir.join("index.html")).expect("explore writes index.html");
    for name in ["sweep_max_lag__records_.png", "sweep_peak_buffer__records_.png"] {
        assert!(dir.join(name).exists(), "{name} missing");
        assert!(index.contains(name), "index.html does not show {name}");
    }
}

/// A run's report comes from the online checker when it saw the whole history, and from checking
/// what was recorded otherwise: either way it is the report of the history the run wrote. Three
/// paths: a clean run and a run with a violation that goes on (the online checker saw every
/// entry), and a run stopped at its first unexpected violation (checked over what it recorded).
#[test]
fn a_runs_report_is_its_historys_report() {
    let s = load("large-records").unwrap();
    for (bugs, stop) in [(Bugs::NONE, false), (Bugs::only(Bug::UndercountBytes), false), (Bugs::only(Bug::UndercountBytes), true)] {
        let sim = runner::simulate(&s, 1, bugs, stop).unwrap();
        assert_eq!(sim.stopped_early, stop, "{bugs:?} stop {stop}");
        assert_eq!(sim.judgement.pass, bugs.is_empty(), "{bugs:?} stop {stop}");
        assert_eq!(sim.report, sluice_verification::check(&sim.history), "{bugs:?} stop {stop}");
    }
}

/// A history that contradicts itself fails its check and says where: here one fetch claims a byte
/// more than its records' declared sizes. The same history unmangled passes.
#[test]
fn a_history_that_contradicts_itself_fails_its_check() {
    let dir = temp_dir("contradicts");
    let s = load("large-records").unwrap();
    let r = runner::run_one(&s, 1, None, Bugs::NONE, Some(&dir)).unwrap();
    assert!(r.pass(), "{}", r.table());
    let path = dir.join("history.jsonl");
    let clean = runner::check_file(&path).unwrap();
    assert!(clean.judgement.pass && clean.judgement.input_errors.is_empty(), "{}", clean.table());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let i = lines.iter().position(|l| l.contains(r#""kind":"fetch""#)).expect("a fetch line");
    let mut e: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
    e["bytes"] = serde_json::json!(e["bytes"].as_u64().unwrap() + 1);
    lines[i] = e.to_string();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let c = runner::check_file(&path).unwrap();
    assert!(!c.judgement.pass, "{}", c.table());
    assert!(c.judgement.observed.is_empty(), "no anomaly, only the contradiction: {}", c.table());
    assert!(c.table().contains("input error: fetch of"), "{}", c.table());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A consumer that stops for 60 s without leaving the group: the report lists a stall on each of
/// its partitions, owned by it, from the stall's start to its end (at lag-sample resolution), and
/// on no other partition; the steady control lists none.
#[test]
fn a_stalled_consumers_partitions_are_listed_as_stalls() {
    let s = load("stream-consumer-stall").unwrap();
    let sim = runner::simulate(&s, 1, Bugs::NONE, false).unwrap();
    assert!(sim.judgement.pass, "{:?}", sim.judgement);
    let stalls = &sim.report.liveness.stalls;
    // The partitions c1 owned when the stall began (its last assignment before 30 s).
    let owned: Vec<String> = sim
        .history
        .iter()
        .take_while(|e| e.t_us < 30_000_000)
        .filter_map(|e| match &e.ev {
            sluice_core::history::Event::Assign { consumer: 1, tps, .. } => Some(tps.iter().map(|t| t.to_string()).collect()),
            _ => None,
        })
        .last()
        .expect("c1 was assigned partitions before the stall");
    let mut stalled: Vec<String> = stalls.iter().map(|x| x.tp.clone()).collect();
    stalled.sort();
    assert_eq!(stalled, owned, "{stalls:#?}");
    for x in stalls {
        assert_eq!(x.owners, ["c1"], "{x:?}");
        assert!((29_000_000..=31_000_000).contains(&x.from_us), "{x:?}");
        let to = x.to_us.expect("the stall ended");
        assert!((90_000_000..=93_000_000).contains(&to), "{x:?}");
        assert!(x.lag_max > 5_000, "60 s of a third of 600 records/s piled up: {x:?}");
    }
    let steady = runner::simulate(&load("steady").unwrap(), 1, Bugs::NONE, false).unwrap();
    assert!(steady.report.liveness.stalls.is_empty(), "{:#?}", steady.report.liveness.stalls);
}

/// rust-rdkafka#627: committing on revoke is what keeps a clean hand-over free of re-processing.
/// With it, the only records processed twice are those the crashed member had processed since
/// its last commit; without it (the planted bug), the members that hand partitions back also lose
/// everything since the last 30 s periodic commit, and the checker names it.
#[test]
fn committing_on_revoke_keeps_hand_overs_free_of_reprocessing() {
    let s = load("commit-on-revoke").unwrap();
    let ok = runner::run_one(&s, 1, None, Bugs::NONE, None).unwrap();
    let bug = runner::run_one(&s, 1, None, Bugs::only(Bug::NoCommitOnRevoke), None).unwrap();
    assert!(ok.pass(), "{}", ok.table());
    assert!(!bug.pass(), "{}", bug.table());
    assert!(
        bug.stats.records_reprocessed > ok.stats.records_reprocessed + 500,
        "reprocessed: {} with commit on revoke, {} without",
        ok.stats.records_reprocessed,
        bug.stats.records_reprocessed
    );
}
