//! The hand-written histories in `tests/histories/`: each planted anomaly fires, nothing fires on
//! the clean one, online and offline checking agree, and each report is snapshotted.

use sluice_core::history::{parse_jsonl, Entry};
use sluice_verification::{check, expected_of, verdict, Online, Severity};

fn load(file: &str) -> Vec<Entry> {
    let path = format!("{}/tests/histories/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_jsonl(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (file, anomalies the report must list — exactly these, nothing else)
const CASES: &[(&str, &[&str])] = &[
    ("clean.jsonl", &[]),
    ("unseen_info.jsonl", &[]),
    ("clean_rebalance.jsonl", &[]),
    ("lost_write.jsonl", &["lost-write"]),
    ("unseen.jsonl", &["unseen"]),
    ("duplicate.jsonl", &["duplicate"]),
    ("inconsistent_offsets.jsonl", &["inconsistent-offsets"]),
    ("poll_skip.jsonl", &["poll-skip"]),
    ("nonmonotonic_poll.jsonl", &["nonmonotonic-poll"]),
    ("nonmonotonic_send.jsonl", &["nonmonotonic-send"]),
    ("buffer_bound_exceeded.jsonl", &["buffer-bound-exceeded"]),
    ("credit_rule_c1.jsonl", &["credit-rule"]),
    ("credit_rule_c3.jsonl", &["credit-rule"]),
    ("rate_bound.jsonl", &["rate-bound"]),
    ("rate_bound_r2.jsonl", &["rate-bound"]),
    ("partition_owned_twice.jsonl", &["partition-owned-twice"]),
    ("zombie_handler.jsonl", &[]),
    (
        "commit_beyond_processed.jsonl",
        &["commit-beyond-processed"],
    ),
    ("gap_after_restart.jsonl", &["gap-after-restart"]),
    ("dropped_record.jsonl", &["dropped-record"]),
    (
        "duplicate_beyond_window.jsonl",
        &["duplicate-beyond-window"],
    ),
    ("lag_not_recovered.jsonl", &["lag-not-recovered"]),
    ("lag_unassigned.jsonl", &["lag-not-recovered"]),
    ("lag_draining_slowly.jsonl", &["lag-not-recovered"]),
    ("revoke_without_commit.jsonl", &["duplicate-beyond-window"]),
    ("barrier_overtaken.jsonl", &["barrier-overtaken"]),
    ("lag_sawtooth.jsonl", &[]),
    ("lag_commits_stopped.jsonl", &["lag-not-recovered"]),
    ("nonblocking_clean.jsonl", &[]),
    ("nonblocking_dropped.jsonl", &["dropped-record"]),
    ("shutdown_clean.jsonl", &[]),
    ("shutdown_unassigned.jsonl", &["lag-not-recovered"]),
];

/// The one place that checks a history file against its expectation.
fn check_file(file: &str, expect: &[&str]) {
    let h = load(file);
    let report = check(&h);
    assert!(
        report.input_errors.is_empty(),
        "{file}: {:?}",
        report.input_errors
    );
    assert_eq!(report.anomalies, expect, "{file}: {:#?}", report.violations);
    // The file's Meta::expect says the same, and the verdict agrees.
    let meta_expect = expected_of(&h);
    assert_eq!(meta_expect, expect, "{file}: meta expect");
    let v = verdict(&report, &meta_expect);
    assert!(v.ok, "{file}: {v:?}");
    assert_eq!(v.exit_code(), 0);
    assert_eq!(report.expected_seen, expect);
    assert!(report.expected_missing.is_empty() && report.unexpected.is_empty());
    // Judged against "all hold", a planted history fails with exit code 1.
    let strict = verdict(&report, &[]);
    assert_eq!(strict.ok, expect.is_empty(), "{file}");
    if !expect.is_empty() {
        assert_eq!(strict.exit_code(), 1);
    }
    // Every listed violation names a time, a rule and a detail.
    for v in &report.violations {
        assert!(
            v.t_us.is_some() && !v.rule.is_empty() && !v.detail.is_empty(),
            "{file}: {v:?}"
        );
    }
    // Counts agree with the list (no list is truncated at this size).
    let listed: u64 = report.violations.len() as u64;
    assert_eq!(report.counts.values().sum::<u64>(), listed);
    insta::assert_json_snapshot!(file.trim_end_matches(".jsonl"), report);
}

#[test]
fn each_planted_history_fires_exactly_its_anomaly() {
    for (file, expect) in CASES {
        check_file(file, expect);
    }
}

#[test]
fn every_anomaly_name_has_a_planted_history() {
    for name in sluice_verification::anomaly::ALL {
        assert!(
            CASES.iter().any(|(_, e)| e.contains(&name)),
            "no history plants {name}"
        );
    }
}

#[test]
fn online_and_offline_agree_on_the_first_violation() {
    for (file, _) in CASES {
        let h = load(file);
        let mut online = Online::new();
        let mut first_online = None;
        for e in &h {
            let v = online.observe(e);
            if first_online.is_none() {
                first_online = v;
            }
        }
        let report = check(&h);
        let first_offline = report
            .violations
            .iter()
            .find(|v| v.severity == Severity::Safety && is_incremental(&v.anomaly))
            .cloned();
        assert_eq!(first_online, first_offline, "{file}");
        // Online's own record is a prefix of the offline list; the rest are end-of-history checks.
        let n = online.violations().len();
        assert_eq!(online.violations(), &report.violations[..n], "{file}");
        for v in &report.violations[n..] {
            assert!(
                !is_incremental(&v.anomaly) || v.anomaly == "lag-not-recovered",
                "{file}: {v:?}"
            );
        }
    }
}

/// Anomalies judged at an event (the others are judged at the end of the history;
/// `lag-not-recovered` at its deadline when the history reaches it, else at the end).
fn is_incremental(anomaly: &str) -> bool {
    !matches!(
        anomaly,
        "lost-write" | "unseen" | "dropped-record" | "lag-not-recovered"
    )
}

/// Recovery is judged at `phase: shutdown`: the members' leaves in the wind-down after it are not
/// partitions left unowned. Without that line, the same history fires at the deadline.
#[test]
fn recovery_is_judged_at_shutdown_not_after_the_members_leave() {
    use sluice_core::history::{Event, Phase};
    let h = load("shutdown_clean.jsonl");
    assert!(check(&h).anomalies.is_empty());
    let without: Vec<Entry> = h
        .into_iter()
        .filter(|e| !matches!(e.ev, Event::Phase { phase: Phase::Shutdown }))
        .collect();
    let report = check(&without);
    assert_eq!(report.anomalies, ["lag-not-recovered"]);
    assert!(
        report.violations.iter().any(|v| v.detail.contains("subscribed and unassigned")),
        "{:#?}",
        report.violations
    );
}

#[test]
fn the_info_unseen_is_counted_but_not_an_anomaly() {
    let report = check(&load("unseen_info.jsonl"));
    assert_eq!(report.counts.get("unseen"), Some(&1));
    assert_eq!(report.summary.records_unseen, 2);
    assert!(report
        .violations
        .iter()
        .all(|v| v.severity == Severity::Info));
}

#[test]
fn summary_figures_of_the_clean_history() {
    let s = check(&load("clean.jsonl")).summary;
    assert_eq!(
        (s.records_produced, s.records_acked, s.records_consumed),
        (6, 6, 6)
    );
    assert_eq!((s.records_processed, s.records_dead_lettered), (5, 1));
    assert_eq!(s.buffer_peak_records.get("c0"), Some(&4));
    assert_eq!(s.rebalances, 1);
    assert_eq!(s.recovery_time_ms, Some(0));
    assert_eq!(s.records_pending_at_end, 0);
}

#[test]
fn a_history_without_meta_is_an_input_error_not_a_panic() {
    let mut h = load("clean.jsonl");
    h.remove(0);
    let report = check(&h);
    assert_eq!(report.input_errors.len(), 1);
    assert!(report.input_errors[0].contains("meta"));
}
