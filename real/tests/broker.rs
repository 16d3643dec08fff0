//! Real mode against a live broker. Every test reads `SLUICE_BROKERS` (e.g. `127.0.0.1:19092`, set
//! by the test script after `scripts/broker.sh start`) and is skipped, saying so, when it is unset.
//! The durable-broker test reads `SLUICE_DURABLE_BROKERS` (`scripts/broker.sh start --durable`); the
//! benchmark runs only with `SLUICE_BENCH=1`.
//!
//! Each scenario is short (tens of seconds) and creates its own topics and group.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sluice_core::history::{Entry, Event, MemberEvent, Phase};
use sluice_core::spec::Scenario;
use sluice_real::{run_cli, BrokerControl, RealArgs, RealOutcome};

fn brokers(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            println!("SKIPPED {test}: {var} is not set (start a broker with scripts/broker.sh start and export {var}=127.0.0.1:PORT)");
            None
        }
    }
}

fn scenario(text: &str) -> Scenario {
    let sc: Scenario = toml::from_str(text).unwrap_or_else(|e| panic!("test scenario does not parse: {e}"));
    if let Err(es) = sc.validate() {
        panic!("test scenario is invalid: {es:?}");
    }
    sc
}

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a scenario and checks what every real run must hold: it finished, it cleaned up, the
/// history has the documented shape, and no acknowledged record was lost.
fn run(brokers: &str, name: &str, sc: Scenario, broker_control: Option<BrokerControl>) -> RealOutcome {
    let mut args = RealArgs::new(sc, brokers, out_dir(name));
    args.seed = 7;
    args.broker_control = broker_control;
    // Extra librdkafka settings for debugging a run: SLUICE_REAL_X="debug=cgrp,log_level=7".
    if let Ok(x) = std::env::var("SLUICE_REAL_X") {
        args.overrides = x.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    }
    let t0 = std::time::Instant::now();
    let out = run_cli(args).unwrap_or_else(|e| panic!("{name}: real run failed: {e}"));
    println!("{name}: {} entries in {:.1} s, load {:?}, skipped {:?}, history {}", out.history.len(), t0.elapsed().as_secs_f64(), out.load, out.skipped_faults, out.history_path.display());
    assert!(out.member_failures.is_empty(), "{name}: member failures {:?}", out.member_failures);
    let h = &out.history;
    assert!(matches!(h.first().map(|e| &e.ev), Some(Event::Meta(m)) if m.source == "real"), "{name}: first entry is Meta");
    assert!(matches!(h.last().map(|e| &e.ev), Some(Event::Phase { phase: Phase::End })), "{name}: last entry is Phase End");
    assert!(h.windows(2).all(|w| w[0].t_us <= w[1].t_us), "{name}: t_us must not decrease");
    assert!(out.load.acked > 0, "{name}: nothing was acknowledged");
    let (acked, unfetched) = acked_never_fetched(h);
    assert_eq!(unfetched, 0, "{name}: {unfetched} of {acked} acknowledged records were never fetched");
    let report = sluice_verification::check(h);
    for v in &report.violations {
        println!("{name}: violation {} ({}) at {:?}: {}", v.anomaly, v.rule, v.t_us, v.detail);
    }
    // The history agrees with itself (among others: every fetch's bytes are its records' declared
    // sizes), so the checkers can take it at its word.
    assert!(report.input_errors.is_empty(), "{name}: input errors {:?}", report.input_errors);
    let lost: Vec<_> = report.violations.iter().filter(|v| v.anomaly == "lost-write" || v.anomaly == "unseen").collect();
    assert!(lost.is_empty(), "{name}: lost acknowledged records: {lost:?}");
    out
}

/// Acknowledged records, and those of them no member ever fetched (an independent count, not the
/// verification crate's).
fn acked_never_fetched(h: &[Entry]) -> (u64, u64) {
    let mut acked: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut fetched: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for e in h {
        match &e.ev {
            Event::ProduceAck { tp, offset, count, .. } => acked.entry(tp).or_default().extend(*offset..offset + *count as u64),
            Event::Fetch { tp, runs, .. } => {
                for r in runs {
                    fetched.entry(tp).or_default().extend(r.offset..r.offset + r.count as u64);
                }
            }
            _ => {}
        }
    }
    let total = acked.values().map(|s| s.len() as u64).sum();
    let missing = acked.iter().map(|(tp, s)| s.difference(fetched.get(tp).unwrap_or(&BTreeSet::new())).count() as u64).sum();
    (total, missing)
}

fn count(h: &[Entry], f: impl Fn(&Event) -> bool) -> usize {
    h.iter().filter(|e| f(&e.ev)).count()
}

/// Time (µs) of the first entry matching `f` at or after `from_us`.
fn first_after(h: &[Entry], from_us: u64, f: impl Fn(&Event) -> bool) -> Option<u64> {
    h.iter().find(|e| e.t_us >= from_us && f(&e.ev)).map(|e| e.t_us)
}

fn fault_start(h: &[Entry], name: &str) -> u64 {
    h.iter()
        .find_map(|e| match &e.ev {
            Event::Fault { fault, edge: sluice_core::history::Edge::Start, .. } if fault == name => Some(e.t_us),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} fault in the history"))
}

/// Partitions each member owns at the end of the history prefix up to `t_us`.
fn owners_at(h: &[Entry], t_us: u64) -> BTreeMap<String, BTreeSet<u32>> {
    let mut own: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for e in h.iter().take_while(|e| e.t_us <= t_us) {
        match &e.ev {
            Event::Assign { consumer, tps, .. } => {
                for tp in tps {
                    own.entry(tp.to_string()).or_default().insert(*consumer);
                }
            }
            Event::Revoke { consumer, tps, .. } => {
                for tp in tps {
                    own.entry(tp.to_string()).or_default().remove(consumer);
                }
            }
            Event::Member { consumer, event: MemberEvent::Crash | MemberEvent::Evicted | MemberEvent::Leave | MemberEvent::Start } => {
                for o in own.values_mut() {
                    o.remove(consumer);
                }
            }
            _ => {}
        }
    }
    own
}

const TAKEOVER_BUDGET_US: u64 = 30_000_000;

fn group_scenario(assignor: &str, protocol: &str) -> String {
    format!(
        r#"
name = "group-{assignor}"
duration_s = 22
liveness_s = 10
[[topics]]
name = "orders"
partitions = 4
[[producers]]
topic = "orders"
rate_per_s = 200.0
[consumers]
count = 2
topics = ["orders"]
strategy = "pause"
assignor = "{assignor}"
protocol = "{protocol}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = {{ kind = "constant", ms = 0.5 }}
[[faults]]
kind = "consumer-crash"
consumer = 1
at_s = 5.0
for_s = 12.0
[expect]
lag_ok_records = 400
recovery_deadline_ms = 10000
"#
    )
}

/// Under each assignor: both members get partitions, the crash of c1 hands all of them to c0 within
/// the budget, and the restarted c1 gets some back (a second rebalance). c1 stays down for 12 s: the
/// local broker takes 3-4 s to rebalance, and a restart that comes back before the takeover has
/// finished joins the same rebalance, so c0 would never own all four (a race, not a finding).
fn check_group(assignor: &str, protocol: &str) {
    let test = format!("group_{assignor}");
    let Some(b) = brokers("SLUICE_BROKERS", &test) else { return };
    let out = run(&b, &test, scenario(&group_scenario(assignor, protocol)), None);
    let h = &out.history;
    assert!(h.iter().any(|e| matches!(e.ev, Event::Meta(ref m) if m.settings.get("assignor").map(|s| s.as_str()) == Some(match assignor { "round-robin" => "roundrobin", a => a }))));
    let crash = fault_start(h, "consumer-crash");
    let before = owners_at(h, crash);
    let owned_by = |m: &BTreeMap<String, BTreeSet<u32>>, c: u32| m.values().filter(|o| o.contains(&c)).count();
    assert!(owned_by(&before, 0) > 0 && owned_by(&before, 1) > 0, "{test}: both members own partitions before the crash: {before:?}");
    // c0 owns all 4 partitions within the budget after the crash.
    let took_over = h
        .iter()
        .filter(|e| e.t_us >= crash && e.t_us <= crash + TAKEOVER_BUDGET_US)
        .map(|e| e.t_us)
        .find(|t| owned_by(&owners_at(h, *t), 0) == 4);
    let took_over = took_over.unwrap_or_else(|| panic!("{test}: c0 did not take over all partitions within 30 s"));
    println!("{test}: takeover {:.1} s after the crash", (took_over - crash) as f64 / 1e6);
    // The restarted c1 rejoins and gets partitions again.
    let restart = first_after(h, crash + 1, |e| matches!(e, Event::Member { consumer: 1, event: MemberEvent::Start })).expect("c1 restarted");
    assert!(first_after(h, restart, |e| matches!(e, Event::Assign { consumer: 1, tps, .. } if !tps.is_empty())).is_some(), "{test}: c1 got partitions after its restart");
    // Every partition was revoked at most by commit-on-revoke: each Revoke of a live member is
    // preceded by its commits, so no processed record is re-read beyond the commit window.
    assert!(count(h, |e| matches!(e, Event::CommitAck { .. })) > 0);
}

#[test]
fn group_range_rebalances() {
    check_group("range", "eager");
}

#[test]
fn group_roundrobin_rebalances() {
    check_group("round-robin", "eager");
}

#[test]
fn group_cooperative_sticky_rebalances() {
    check_group("cooperative-sticky", "cooperative");
}

/// Pause/resume: a slow consumer with a small buffer pauses above the high watermark, resumes below
/// the low one, keeps fetching after resuming, and never buffers beyond its bound.
#[test]
fn pause_and_resume() {
    let test = "pause_and_resume";
    let Some(b) = brokers("SLUICE_BROKERS", test) else { return };
    let sc = scenario(
        r#"
name = "pause-resume"
duration_s = 10
liveness_s = 12
[[topics]]
name = "events"
partitions = 2
[[producers]]
topic = "events"
rate_per_s = 400.0
shape = { kind = "spike", factor = 3.0, at_s = 3, for_s = 4 }
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 1
topics = ["events"]
strategy = "pause"
assignor = "range"
protocol = "eager"
buffer_records_max = 300
pause_high_records = 200
pause_low_records = 80
max_poll_records = 100
fetch_wait_max_ms = 100
commit_interval_ms = 1000
workers = 1
processing = { kind = "constant", ms = 2.0 }
[expect]
lag_ok_records = 100000
recovery_deadline_ms = 12000
"#,
    );
    let out = run(&b, test, sc, None);
    let h = &out.history;
    let pauses = count(h, |e| matches!(e, Event::Pause { .. }));
    let resumes = count(h, |e| matches!(e, Event::Resume { .. }));
    assert!(pauses > 0 && resumes > 0, "{test}: pauses {pauses}, resumes {resumes}");
    let first_resume = first_after(h, 0, |e| matches!(e, Event::Resume { .. })).unwrap();
    assert!(first_after(h, first_resume, |e| matches!(e, Event::Fetch { .. })).is_some(), "{test}: fetching continued after a resume");
    let peak = h.iter().filter_map(|e| match e.ev { Event::Buffer { records, .. } => Some(records), _ => None }).max().unwrap_or(0);
    assert!(peak <= 300, "{test}: buffer peaked at {peak} > 300");
}

/// 20 000-byte records against a byte bound of ten of them (its record bound is 2 000): every
/// fetch returns whole records within the bytes the pipeline asked for, the buffer never holds more
/// than its byte bound, and everything is processed.
#[test]
fn large_records_stay_within_the_byte_bound() {
    let test = "large_records_stay_within_the_byte_bound";
    let Some(b) = brokers("SLUICE_BROKERS", test) else { return };
    let sc = scenario(
        r#"
name = "large-records"
duration_s = 10
liveness_s = 10
[[topics]]
name = "blobs"
partitions = 2
[[producers]]
topic = "blobs"
rate_per_s = 150.0
record_bytes = 20000
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 1
topics = ["blobs"]
strategy = "pause"
assignor = "range"
protocol = "eager"
buffer_bytes_max = 200000
max_partition_fetch_bytes = 100000
fetch_wait_max_ms = 100
commit_interval_ms = 1000
processing = { kind = "constant", ms = 4.0 }
[expect]
lag_ok_records = 100000
recovery_deadline_ms = 10000
"#,
    );
    let out = run(&b, test, sc, None);
    let h = &out.history;
    let mut fetches = 0;
    for e in h {
        if let Event::Fetch { tp, runs, bytes, .. } = &e.ev {
            let n: u64 = runs.iter().map(|r| r.count as u64).sum();
            assert_eq!(*bytes, n * 20_000, "{test}: {tp}: {n} records of 20 000 bytes");
            assert!(*bytes <= 100_000, "{test}: {tp}: a fetch of {bytes} bytes, max.partition.fetch.bytes 100 000");
            fetches += 1;
        }
    }
    assert!(fetches > 10, "{test}: {fetches} fetches");
    for e in h {
        if let Event::Buffer { records, bytes, .. } = e.ev {
            assert_eq!(bytes, records * 20_000, "{test}: a buffer sample of {records} records");
            assert!(bytes <= 200_000, "{test}: the buffer held {bytes} bytes, bound 200 000");
        }
    }
    let report = sluice_verification::check(h);
    assert!(report.violations.iter().all(|v| v.anomaly != "buffer-bound-exceeded"), "{test}: {:?}", report.violations);
    assert_eq!(report.summary.records_processed, out.load.acked, "{test}: every acknowledged record processed");
}

/// Commit, crash, restart: the restarted member resumes each partition at the last acknowledged
/// commit before the crash (K2), and reads nothing twice beyond what it processed after that commit.
#[test]
fn restart_resumes_at_the_committed_offset() {
    let test = "restart_resumes_at_the_committed_offset";
    let Some(b) = brokers("SLUICE_BROKERS", test) else { return };
    let sc = scenario(
        r#"
name = "commit-restart"
duration_s = 12
liveness_s = 8
[[topics]]
name = "ledger"
partitions = 2
[[producers]]
topic = "ledger"
rate_per_s = 300.0
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 1
topics = ["ledger"]
strategy = "credit"
assignor = "range"
protocol = "eager"
commit_interval_ms = 700
fetch_wait_max_ms = 100
processing = { kind = "exponential", mean_ms = 0.5 }
[[faults]]
kind = "consumer-crash"
consumer = 0
at_s = 5.0
for_s = 2.0
[expect]
lag_ok_records = 1000
recovery_deadline_ms = 8000
"#,
    );
    let out = run(&b, test, sc, None);
    let h = &out.history;
    let crash = fault_start(h, "consumer-crash");
    let mut last_commit: BTreeMap<String, u64> = BTreeMap::new();
    for e in h.iter().take_while(|e| e.t_us < crash) {
        if let Event::CommitAck { tp, offset, .. } = &e.ev {
            last_commit.insert(tp.to_string(), *offset);
        }
    }
    assert!(!last_commit.is_empty(), "{test}: commits before the crash");
    let restart = first_after(h, crash + 1, |e| matches!(e, Event::Member { consumer: 0, event: MemberEvent::Start })).expect("restarted");
    let mut seen = BTreeSet::new();
    for e in h.iter().filter(|e| e.t_us >= restart) {
        if let Event::Seek { tp, offset, .. } = &e.ev {
            if seen.insert(tp.clone()) {
                let want = last_commit.get(&**tp).copied().unwrap_or(0);
                assert_eq!(*offset, want, "{test}: {tp} resumed at {offset}, last acknowledged commit {want}");
            }
        }
    }
    assert_eq!(seen.len(), 2, "{test}: both partitions were sought after the restart");
}

/// A member that stalls past max.poll.interval.ms is evicted and the other takes over its
/// partitions within the budget.
#[test]
fn stalled_member_is_evicted_and_the_other_takes_over() {
    let test = "stalled_member_is_evicted";
    let Some(b) = brokers("SLUICE_BROKERS", test) else { return };
    let sc = scenario(
        r#"
name = "stall-evict"
duration_s = 20
liveness_s = 10
[[topics]]
name = "jobs"
partitions = 4
[[producers]]
topic = "jobs"
rate_per_s = 100.0
[consumers]
count = 2
topics = ["jobs"]
strategy = "pause"
assignor = "range"
protocol = "eager"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 6000
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = { kind = "constant", ms = 1.0 }
[[faults]]
kind = "consumer-stall"
consumer = 0
at_s = 5.0
for_s = 12.0
[expect]
lag_ok_records = 500
recovery_deadline_ms = 10000
"#,
    );
    let out = run(&b, test, sc, None);
    let h = &out.history;
    let stall = fault_start(h, "consumer-stall");
    let evicted = first_after(h, stall, |e| matches!(e, Event::Member { consumer: 0, event: MemberEvent::Evicted })).expect("c0 evicted");
    assert!(evicted - stall >= 6_000_000 - 200_000, "{test}: evicted {} ms after the stall began, before max.poll.interval.ms", (evicted - stall) / 1000);
    let took_over = h
        .iter()
        .filter(|e| e.t_us >= stall && e.t_us <= stall + TAKEOVER_BUDGET_US)
        .map(|e| e.t_us)
        .find(|t| owners_at(h, *t).values().filter(|o| o.contains(&1)).count() == 4)
        .unwrap_or_else(|| panic!("{test}: c1 did not take all partitions within 30 s of the stall"));
    println!("{test}: evicted after {:.1} s, takeover after {:.1} s", (evicted - stall) as f64 / 1e6, (took_over - stall) as f64 / 1e6);
}

/// Catalogue-like scenarios end to end: the verification checkers judge the histories.
fn check_e2e(name: &str, text: &str, allowed: &[&str]) -> Option<RealOutcome> {
    let b = brokers("SLUICE_BROKERS", name)?;
    let out = run(&b, name, scenario(text), None);
    let report = sluice_verification::check(&out.history);
    let unexpected: Vec<_> = report.violations.iter().filter(|v| !allowed.contains(&v.anomaly.as_str())).collect();
    assert!(unexpected.is_empty(), "{name}: unexpected anomalies {unexpected:#?}");
    Some(out)
}

#[test]
fn e2e_steady_credit() {
    check_e2e(
        "steady-credit",
        r#"
name = "steady-credit"
duration_s = 10
liveness_s = 10
[[topics]]
name = "orders"
partitions = 3
[[producers]]
topic = "orders"
rate_per_s = 300.0
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 2
topics = ["orders"]
strategy = "credit"
assignor = "cooperative-sticky"
protocol = "cooperative"
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = { kind = "log-normal", mean_ms = 0.5, cv = 0.5 }
[expect]
lag_ok_records = 1000
recovery_deadline_ms = 10000
"#,
        &[],
    );
}

#[test]
fn e2e_black_friday_spike_pause() {
    check_e2e(
        "black-friday-spike",
        r#"
name = "black-friday-spike"
duration_s = 12
liveness_s = 12
[[topics]]
name = "orders"
partitions = 4
[[producers]]
topic = "orders"
rate_per_s = 150.0
shape = { kind = "spike", factor = 10.0, at_s = 4, for_s = 3 }
keys = { kind = "zipf", count = 1000, exponent = 1.1 }
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 2
topics = ["orders"]
strategy = "pause"
assignor = "range"
protocol = "eager"
buffer_records_max = 1000
commit_interval_ms = 1000
fetch_wait_max_ms = 100
workers = 2
processing = { kind = "exponential", mean_ms = 2.0 }
[expect]
lag_ok_records = 2000
recovery_deadline_ms = 12000
"#,
        &[],
    );
}

#[test]
fn e2e_poison_pill_goes_to_the_dlq() {
    let Some(out) = check_e2e(
        "poison-pill-dlq",
        r#"
name = "poison-pill-dlq"
duration_s = 10
liveness_s = 10
[[topics]]
name = "payments"
partitions = 2
[[producers]]
topic = "payments"
rate_per_s = 100.0
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 1
topics = ["payments"]
strategy = "pause"
assignor = "range"
protocol = "eager"
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = { kind = "constant", ms = 0.5 }
[consumers.retry]
max_attempts = 3
backoff_initial_ms = 10
backoff_max_ms = 100
poison_probability = 0.01
[expect]
lag_ok_records = 500
recovery_deadline_ms = 10000
"#,
        &[],
    ) else {
        return;
    };
    let dl = count(&out.history, |e| matches!(e, Event::DeadLetter { attempts: 3, .. }));
    assert!(dl > 0, "poison records reached the dead-letter topic after 3 attempts ({dl})");
}

#[test]
fn e2e_slow_consumer_none_strategy() {
    let out = check_e2e(
        "slow-consumer-none",
        r#"
name = "slow-consumer-none"
duration_s = 12
liveness_s = 12
[[topics]]
name = "clicks"
partitions = 4
[[producers]]
topic = "clicks"
rate_per_s = 300.0
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 2
topics = ["clicks"]
strategy = "none"
assignor = "round-robin"
protocol = "eager"
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = { kind = "constant", ms = 1.0 }
[[faults]]
kind = "slow-consumer"
consumer = 0
factor = 5.0
at_s = 3.0
for_s = 5.0
[[faults]]
kind = "latency"
node = "b0"
ms = 20
at_s = 2.0
for_s = 2.0
[expect]
lag_ok_records = 2000
recovery_deadline_ms = 12000
"#,
        // Without a backpressure strategy the buffer is unbounded by design.
        &["buffer-bound-exceeded"],
    );
    if let Some(out) = out {
        assert!(out.skipped_faults.iter().any(|s| s.starts_with("latency")), "{:?}", out.skipped_faults);
        assert!(out.history.iter().any(|e| matches!(&e.ev, Event::Note { text } if text.starts_with("skipped: latency"))));
    }
}

/// kill -9 of the durable broker and restart: nothing acknowledged is lost.
#[test]
fn durable_broker_kill_and_restart() {
    let test = "durable_broker_kill_and_restart";
    let Some(b) = brokers("SLUICE_DURABLE_BROKERS", test) else { return };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker.sh");
    let sc = scenario(
        r#"
name = "durable-broker-crash"
duration_s = 14
liveness_s = 16
[cluster]
brokers = 1
replication_factor = 1
min_insync_replicas = 1
[[topics]]
name = "payments"
partitions = 2
[[producers]]
topic = "payments"
rate_per_s = 100.0
[consumers]
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 10000
count = 1
topics = ["payments"]
strategy = "pause"
assignor = "range"
protocol = "eager"
commit_interval_ms = 1000
fetch_wait_max_ms = 100
processing = { kind = "constant", ms = 0.5 }
[[faults]]
kind = "broker-crash"
broker = 0
at_s = 5.0
for_s = 3.0
[expect]
lag_ok_records = 1000
recovery_deadline_ms = 16000
"#,
    );
    let out = run(&b, test, sc, Some(BrokerControl { script, durable: true }));
    assert!(out.skipped_faults.is_empty(), "{:?}", out.skipped_faults);
    let crash = fault_start(&out.history, "broker-crash");
    assert!(first_after(&out.history, crash, |e| matches!(e, Event::ProduceAck { .. })).is_some(), "produce resumed after the restart");
}

/// `SLUICE_BENCH=1`: the pipeline's records/s against a bare rdkafka loop, same broker, same run.
#[test]
fn bench_pipeline_vs_bare_consumer() {
    let test = "bench_pipeline_vs_bare_consumer";
    if std::env::var("SLUICE_BENCH").ok().as_deref() != Some("1") {
        println!("SKIPPED {test}: set SLUICE_BENCH=1 to run the benchmark");
        return;
    }
    let Some(b) = brokers("SLUICE_BROKERS", test) else { return };
    let records: u64 = std::env::var("SLUICE_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    // The credit strategy twice: with the default 2 exclusive credits per partition, and with
    // exclusive credits sized like a fetch (1 000 of max_poll_records 2 000; 6 000 of the 20 000
    // buffer records, the rest floating).
    for (strategy, exclusive) in [("pause", None), ("none", None), ("credit", None), ("credit", Some(1_000))] {
        let r = sluice_real::bench::run_bench_with(&b, records, 6, strategy, exclusive, 3).unwrap_or_else(|e| panic!("bench failed: {e}"));
        let strategy = match exclusive {
            Some(e) => format!("{strategy} (exclusive {e})"),
            None => strategy.to_string(),
        };
        println!(
            "bench {strategy}: {} records, {} partitions: bare {:.0} rec/s, pipeline {:.0} rec/s, ratio {:.3} (target >= 0.9); {:.1} records/fetch, {:.1} records/run",
            r.records, r.partitions, r.bare_per_s, r.pipeline_per_s, r.ratio, r.records_per_fetch, r.records_per_run
        );
        assert!(r.bare_per_s > 0.0 && r.pipeline_per_s > 0.0);
    }
}
