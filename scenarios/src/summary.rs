//! What a run amounted to: statistics read off its history, the verdict against the scenario's
//! expectations, and the table the command line prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sluice_core::history::{Edge, Entry, Event, MemberEvent};
use sluice_verification::{Report, Severity, Violation};

/// Figures read off one history. Times are simulated (or, for real runs, recorded) time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Time of the last entry, seconds.
    pub duration_s: f64,
    /// Records the brokers acknowledged.
    pub records_acked: u64,
    /// Records processed successfully.
    pub records_processed: u64,
    /// Records written to the dead-letter queue.
    pub records_dead_lettered: u64,
    /// Records processed again after a restart or a hand-over (the at-least-once duplicates, from
    /// the checkers' report).
    #[serde(default)]
    pub records_reprocessed: u64,
    /// `records_processed / duration_s`.
    pub throughput_per_s: f64,
    /// The most records any one consumer held in its buffer (at a sample, or rebuilt by the
    /// checkers from fetches and releases, see [`Stats::with_report`]).
    pub buffer_peak_records: u64,
    /// The declared bound the peak is held to (from the history's meta line).
    pub buffer_records_max: u64,
    /// The most bytes any one consumer held in its buffer, and their declared bound (0: the
    /// history declares none).
    pub buffer_peak_bytes: u64,
    pub buffer_bytes_max: u64,
    /// The largest total lag (sum over partitions of high watermark minus committed) at a sample.
    pub lag_peak_records: u64,
    /// Total lag at the last sample of every partition.
    pub lag_final_records: u64,
    /// Rebalances started.
    pub rebalances: u64,
    /// Members evicted by the coordinator (session timeout or max.poll.interval.ms).
    pub evictions: u64,
    /// Faults injected.
    pub faults: u64,
    /// Pause events (partitions paused by backpressure).
    pub pauses: u64,
    /// Stall episodes the checkers found (a partition with records waiting and no progress for
    /// `STALL_MIN_MS`), listed and unlisted.
    #[serde(default)]
    pub stalls: u64,
    /// The longest of them, described for the summary table.
    #[serde(default)]
    pub stall_longest: Option<String>,
}

/// A byte count for people: `900 B`, `7.0 KiB`, `64.0 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1_024.0),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

impl Stats {
    /// Reads the statistics off a history.
    pub fn of(history: &[Entry]) -> Stats {
        let mut s = Stats::default();
        let mut lag: BTreeMap<&str, u64> = BTreeMap::new();
        for e in history {
            match &e.ev {
                Event::Meta(m) => {
                    s.buffer_records_max = m.bounds.buffer_records_max;
                    s.buffer_bytes_max = m.bounds.buffer_bytes_max;
                }
                Event::ProduceAck { count, .. } => s.records_acked += u64::from(*count),
                Event::ProcessEnd { ok, .. } => s.records_processed += u64::from(*ok),
                Event::DeadLetter { .. } => s.records_dead_lettered += 1,
                Event::Buffer { records, bytes, .. } => {
                    s.buffer_peak_records = s.buffer_peak_records.max(*records);
                    s.buffer_peak_bytes = s.buffer_peak_bytes.max(*bytes);
                }
                Event::Lag { tp, hw, committed } => {
                    lag.insert(&**tp, hw.saturating_sub(*committed));
                    s.lag_peak_records = s.lag_peak_records.max(lag.values().sum());
                }
                Event::Rebalance { edge: Edge::Start, .. } => s.rebalances += 1,
                Event::Member { event: MemberEvent::Evicted, .. } => s.evictions += 1,
                Event::Fault { edge: Edge::Start, .. } => s.faults += 1,
                Event::Pause { .. } => s.pauses += 1,
                _ => {}
            }
        }
        s.lag_final_records = lag.values().sum();
        s.duration_s = history.last().map_or(0.0, |e| e.t_us as f64 / 1e6);
        s.throughput_per_s = if s.duration_s > 0.0 { s.records_processed as f64 / s.duration_s } else { 0.0 };
        s
    }

    /// Raises the buffer peaks to those the checkers rebuilt from fetches and releases (bytes by
    /// the producers' declared record sizes): a consumer's samples show only what it believes it
    /// holds, at the instants it samples.
    pub fn with_report(mut self, report: &Report) -> Stats {
        let peak = |m: &BTreeMap<String, u64>| m.values().copied().max().unwrap_or(0);
        self.buffer_peak_records = self.buffer_peak_records.max(peak(&report.summary.buffer_peak_records));
        self.buffer_peak_bytes = self.buffer_peak_bytes.max(peak(&report.summary.buffer_peak_bytes));
        self.records_reprocessed = report.summary.records_reprocessed;
        let lv = &report.liveness;
        self.stalls = lv.stalls.len() as u64 + lv.stalls_unlisted;
        let end_us = (self.duration_s * 1e6) as u64;
        self.stall_longest = lv.stalls.iter().max_by_key(|s| (s.duration_ms(end_us), std::cmp::Reverse(s.from_us))).map(|s| {
            let owners = if s.owners.is_empty() { "no owner".to_string() } else { format!("owned by {}", s.owners.join(", ")) };
            let until = s.to_us.map_or("the end".to_string(), |t| format!("{:.1} s", t as f64 / 1e6));
            format!("{:.1} s on {} ({owners}), from {:.1} s to {until}, lag up to {} records", s.duration_ms(end_us) as f64 / 1e3, s.tp, s.from_us as f64 / 1e6, s.lag_max)
        });
        self
    }
}

/// The verdict of a run against what its scenario expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Every distinct anomaly name the checkers reported.
    pub observed: Vec<String>,
    /// Listed violations of anomalies the scenario does not expect (the report caps its list; an
    /// unexpected name in `observed` fails the run even when none of its violations is listed).
    pub unexpected: Vec<Violation>,
    /// Names of the anomalies seen that the scenario does not expect.
    pub unexpected_anomalies: Vec<String>,
    /// Expected anomalies that did not appear (a failure unless they may be absent).
    pub missing: Vec<String>,
    /// Where the history contradicts itself or the schema (the checkers' input errors): a history
    /// the checkers cannot take at its word fails, whatever else it shows.
    #[serde(default)]
    pub input_errors: Vec<String>,
    /// Whether the run passed: nothing unexpected, nothing expected missing unless allowed, and no
    /// input error.
    pub pass: bool,
}

/// The input errors of a judgement as table lines: the first few, then how many more.
pub fn input_error_lines(j: &Judgement) -> Vec<String> {
    const SHOWN: usize = 5;
    let mut v: Vec<String> = j.input_errors.iter().take(SHOWN).cloned().collect();
    if j.input_errors.len() > SHOWN {
        v.push(format!("… and {} more (see report.json)", j.input_errors.len() - SHOWN));
    }
    v
}

/// Judges a report against the expected anomaly names. Findings of `Info` severity (worth counting,
/// not anomalies) neither fail a run nor count as an expected anomaly seen.
pub fn judge(report: &Report, expected: &[String], may_be_absent: bool) -> Judgement {
    let counted = |v: &&Violation| v.severity != Severity::Info;
    // `anomalies` names every anomaly present, also those the capped violation list left out.
    let observed: BTreeSet<&str> = report
        .anomalies
        .iter()
        .map(String::as_str)
        .chain(report.violations.iter().filter(counted).map(|v| v.anomaly.as_str()))
        .collect();
    let unexpected: Vec<Violation> =
        report.violations.iter().filter(counted).filter(|v| !expected.contains(&v.anomaly)).cloned().collect();
    let unexpected_anomalies: Vec<String> =
        observed.iter().filter(|a| !expected.iter().any(|e| e == *a)).map(|a| a.to_string()).collect();
    let missing: Vec<String> = expected.iter().filter(|a| !observed.contains(a.as_str())).cloned().collect();
    let input_errors = report.input_errors.clone();
    let pass = unexpected_anomalies.is_empty() && (missing.is_empty() || may_be_absent) && input_errors.is_empty();
    Judgement { observed: observed.into_iter().map(String::from).collect(), unexpected, unexpected_anomalies, missing, input_errors, pass }
}

/// Everything `sluice run` reports about one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub scenario: String,
    pub seed: u64,
    pub strategy: String,
    /// Planted bug names.
    pub bugs: Vec<String>,
    /// The history hash (`history::TraceHash` over its JSON lines), as 16 hex digits.
    pub hash: String,
    pub history_entries: usize,
    /// The first violation the online checker saw while the run went on, if any.
    pub first_online: Option<Violation>,
    /// Whether the run was stopped at an online violation.
    pub stopped_early: bool,
    pub expected: Vec<String>,
    pub judgement: Judgement,
    pub stats: Stats,
    /// The command that replays this run exactly.
    pub replay: String,
    /// Where the history, report and plots were written, if anywhere.
    pub out_dir: Option<String>,
    /// Why plots are missing, when drawing failed (the verdict does not depend on plots).
    pub plot_error: Option<String>,
}

impl RunSummary {
    pub fn pass(&self) -> bool {
        self.judgement.pass
    }

    /// The human table `sluice run` prints. Deterministic for a given run (no paths, no wall time).
    pub fn table(&self) -> String {
        let s = &self.stats;
        let j = &self.judgement;
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<22} {v}");
        };
        let _ = writeln!(t, "{} (seed {}, strategy {})", self.scenario, self.seed, self.strategy);
        if !self.bugs.is_empty() {
            row(&mut t, "planted bugs", self.bugs.join(", "));
        }
        let verdict = if j.pass { "PASS" } else { "FAIL" };
        let held = if j.observed.is_empty() { "all invariants held".to_string() } else { format!("anomalies seen: {}", j.observed.join(", ")) };
        row(&mut t, "verdict", format!("{verdict} ({held})"));
        if !self.expected.is_empty() {
            row(&mut t, "expected anomalies", self.expected.join(", "));
        }
        if !j.missing.is_empty() {
            row(&mut t, "expected but missing", j.missing.join(", "));
        }
        for v in j.unexpected.iter().take(5) {
            let at = v.t_us.map_or(String::new(), |t| format!(" at {:.3} s", t as f64 / 1e6));
            row(&mut t, "violation", format!("{} [{}]{at}: {}", v.anomaly, v.rule, v.detail));
        }
        if j.unexpected.len() > 5 {
            row(&mut t, "", format!("… and {} more (see report.json)", j.unexpected.len() - 5));
        }
        for line in input_error_lines(j) {
            row(&mut t, "input error", line);
        }
        row(&mut t, "simulated time", format!("{:.1} s", s.duration_s));
        row(&mut t, "records acked", s.records_acked.to_string());
        row(&mut t, "records processed", format!("{} ({:.1}/s)", s.records_processed, s.throughput_per_s));
        row(&mut t, "dead-lettered", s.records_dead_lettered.to_string());
        row(&mut t, "reprocessed", s.records_reprocessed.to_string());
        let bytes = if s.buffer_bytes_max > 0 {
            format!(", {} of {}", size(s.buffer_peak_bytes), size(s.buffer_bytes_max))
        } else {
            String::new()
        };
        row(&mut t, "buffer peak", format!("{} of {} records{bytes}", s.buffer_peak_records, s.buffer_records_max));
        row(&mut t, "lag peak / final", format!("{} / {} records", s.lag_peak_records, s.lag_final_records));
        row(&mut t, "rebalances", format!("{} ({} evictions)", s.rebalances, s.evictions));
        row(&mut t, "faults / pauses", format!("{} / {}", s.faults, s.pauses));
        row(&mut t, "stalls", match &s.stall_longest {
            None => "none".to_string(),
            Some(longest) => format!("{} (longest {longest})", s.stalls),
        });
        row(&mut t, "history", format!("{} entries, hash {}", self.history_entries, self.hash));
        let _ = write!(t, "  replay: {}", self.replay);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &str, severity: Severity) -> Violation {
        Violation { anomaly: a.into(), rule: "r".into(), t_us: None, detail: String::new(), severity, tp: None, consumer: None }
    }

    #[test]
    fn judgement_table() {
        // (reported, expected, may_be_absent, pass, unexpected, missing)
        type Case = (&'static [&'static str], &'static [&'static str], bool, bool, usize, usize);
        let cases: &[Case] = &[
            (&[], &[], false, true, 0, 0),
            (&["duplicate"], &[], false, false, 1, 0),
            (&["lost-write", "lost-write"], &["lost-write"], false, true, 0, 0),
            (&[], &["lost-write"], false, false, 0, 1),
            (&[], &["lost-write"], true, true, 0, 1),
            (&["lost-write", "duplicate"], &["lost-write"], true, false, 1, 0),
            // Info findings are counted elsewhere, never judged.
            (&["info:unseen"], &[], false, true, 0, 0),
            (&["info:lost-write"], &["lost-write"], false, false, 0, 1),
            (&["liveness:lag-not-recovered"], &[], false, false, 1, 0),
        ];
        for (reported, expected, absent, pass, unexpected, missing) in cases {
            let violations = reported
                .iter()
                .map(|a| match a.split_once(':') {
                    Some(("info", name)) => v(name, Severity::Info),
                    Some((_, name)) => v(name, Severity::Liveness),
                    None => v(a, Severity::Safety),
                })
                .collect();
            let report = Report { violations, ..Default::default() };
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let j = judge(&report, &expected, *absent);
            assert_eq!((j.pass, j.unexpected.len(), j.missing.len()), (*pass, *unexpected, *missing), "{reported:?} vs {expected:?}");
        }
        // Anomalies named by the report but left out of its capped violation list still count.
        let capped = Report { anomalies: vec!["lost-write".into(), "duplicate".into()], ..Default::default() };
        let j = judge(&capped, &["lost-write".to_string()], false);
        assert!(!j.pass && j.missing.is_empty() && j.observed == ["duplicate", "lost-write"], "{j:?}");
        let j = judge(&capped, &["lost-write".to_string(), "duplicate".to_string()], false);
        assert!(j.pass, "{j:?}");
    }

    #[test]
    fn stats_sum_lag_per_partition_and_take_peaks() {
        let text = [
            r#"{"t_us":0,"kind":"produce_ack","producer":0,"tp":"t/0","seq":0,"count":10,"offset":0}"#,
            r#"{"t_us":1000,"kind":"lag","tp":"t/0","hw":10,"committed":0}"#,
            r#"{"t_us":1000,"kind":"lag","tp":"t/1","hw":5,"committed":1}"#,
            r#"{"t_us":1500,"kind":"buffer","consumer":0,"records":7,"bytes":7168,"credits_outstanding":0}"#,
            r#"{"t_us":1500,"kind":"buffer","consumer":1,"records":3,"credits_outstanding":0}"#,
            r#"{"t_us":2000,"kind":"process_end","consumer":0,"tp":"t/0","offset":0,"count":10,"ok":8}"#,
            r#"{"t_us":2000,"kind":"lag","tp":"t/0","hw":10,"committed":8}"#,
            r#"{"t_us":2000000,"kind":"rebalance","generation":1,"edge":"start","protocol":"eager"}"#,
            r#"{"t_us":2000000,"kind":"rebalance","generation":1,"edge":"end","protocol":"eager"}"#,
        ]
        .join("\n");
        let h = sluice_core::history::parse_jsonl(&text).unwrap();
        let s = Stats::of(&h);
        assert_eq!(s.records_acked, 10);
        assert_eq!(s.records_processed, 8);
        assert_eq!(s.buffer_peak_records, 7);
        assert_eq!(s.buffer_peak_bytes, 7_168);
        assert_eq!((size(7_168), size(64 << 20), size(900)), ("7.0 KiB".into(), "64.0 MiB".into(), "900 B".into()));
        assert_eq!(s.lag_peak_records, 14);
        assert_eq!(s.lag_final_records, 6);
        assert_eq!(s.rebalances, 1);
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(s.throughput_per_s, 4.0);
    }
}
