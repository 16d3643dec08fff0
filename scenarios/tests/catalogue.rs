//! The catalogue is well formed, and loading answers bad input with precise errors.

use sluice_core::spec::{Faults, Scenario};
use sluice_scenarios::{catalogue, load, parse_str, to_toml, ScenarioError};

#[test]
fn every_catalogue_scenario_parses_validates_and_round_trips() {
    let names: Vec<&str> = catalogue::names().collect();
    assert!(names.len() >= 12, "the catalogue needs at least twelve scenarios, has {}", names.len());
    for name in &names {
        let s = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.name, *name, "the name inside {name}.toml must equal its file stem");
        assert!(!s.description.trim().is_empty(), "{name}: description is empty");
        assert!(!s.source.trim().is_empty(), "{name}: source is empty");
        for a in &s.expect.anomalies {
            assert!(sluice_verification::anomaly::ALL.contains(&a.as_str()), "{name}: unknown anomaly name {a:?}");
        }
        let text = to_toml(&s).unwrap();
        let again = parse_str(&text, "round-trip").unwrap_or_else(|e| panic!("{name} round trip: {e}"));
        assert_eq!(again, s, "{name} does not round-trip through TOML");
    }
}

#[test]
fn every_file_in_the_catalogue_directory_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = catalogue::names().map(String::from).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
}

/// The field-level facts the catalogue promises (what each scenario is for).
#[test]
fn catalogue_scenarios_say_what_they_claim() {
    type Claim = fn(&Scenario) -> bool;
    let claims: &[(&str, &str, Claim)] = &[
        ("s0", "3 brokers, RF 3, 12 partitions, 4 consumers, 5000/s, 1 h, broker crash + stall", |s| {
            s.cluster.brokers == 3
                && s.cluster.replication_factor == 3
                && s.topics[0].partitions == 12
                && s.consumers.count == 4
                && s.producers[0].rate_per_s == 5000.0
                && s.duration_s == 3600
                && kinds(s) == ["broker-crash", "consumer-stall"]
        }),
        ("black-friday-spike", "a 10x spike", |s| {
            matches!(s.producers[0].shape, sluice_core::spec::LoadShape::Spike { factor, .. } if factor == 10.0)
        }),
        ("unclean-election", "acks=1, unclean election, loss expected every seed", |s| {
            s.cluster.unclean_leader_election
                && s.producers[0].acks == sluice_core::spec::Acks::Leader
                && s.expect.anomalies.iter().any(|a| a == "lost-write")
                && !s.expect.anomalies_may_be_absent
        }),
        ("broker-crash-acks-all", "acks=all, min ISR 2, RF 3, nothing expected", |s| {
            s.producers[0].acks == sluice_core::spec::Acks::All
                && s.cluster.min_insync_replicas == 2
                && s.expect.anomalies.is_empty()
                && kinds(s) == ["broker-crash"]
        }),
        ("prefetch-memory-growth", "strategy none, buffer bound exceeded", |s| {
            s.consumers.strategy == sluice_core::spec::Strategy::None
                && s.expect.anomalies == ["buffer-bound-exceeded"]
        }),
        ("large-records", "64 KiB records, the byte bound binds before the record bound", |s| {
            let record = s.producers[0].record_bytes as u64;
            s.consumers.buffer_bytes_max < s.consumers.buffer_records_max as u64 * record
                && s.consumers.strategy == sluice_core::spec::Strategy::Pause
                && s.expect.anomalies.is_empty()
        }),
        ("rebalance-storm-eager", "eager", |s| s.consumers.protocol == sluice_core::spec::Protocol::Eager),
        ("rebalance-storm-static", "static membership", |s| s.consumers.static_membership),
        ("rate-limited-sink-restart", "three tiers, persisted, a restart", |s| {
            s.consumers.rate_limits.len() == 3
                && s.consumers.limiter_state == sluice_core::spec::LimiterState::Persisted
                && kinds(s) == ["consumer-crash"]
        }),
        ("poison-pill-dlq", "poison records", |s| s.consumers.retry.poison_probability > 0.0),
        ("poison-pill-nonblocking", "poison records, non-blocking retries", |s| {
            s.consumers.retry.poison_probability > 0.0 && s.consumers.retry.mode == sluice_core::spec::RetryMode::NonBlocking
        }),
        ("commit-unknown-outcome", "commit replies lost", |s| kinds(s).contains(&"commit-reply-loss")),
        ("coordinator-failover", "coordinator failover", |s| kinds(s) == ["coordinator-failover"]),
        ("network-partition-leader", "a partition", |s| kinds(s) == ["partition"]),
        ("pause-across-rebalance", "pause strategy and a crash", |s| {
            s.consumers.strategy == sluice_core::spec::Strategy::Pause && kinds(s).contains(&"consumer-crash")
        }),
    ];
    for (name, what, claim) in claims {
        let s = load(name).unwrap();
        assert!(claim(&s), "{name} should be: {what}");
    }
}

fn kinds(s: &Scenario) -> Vec<&'static str> {
    match &s.faults {
        Faults::Schedule(fs) => fs.iter().map(|f| f.kind.name()).collect(),
        Faults::Swarm(_) => vec!["swarm"],
    }
}

const GOOD: &str = r#"name = "t"
duration_s = 10

[cluster]
brokers = 3
replication_factor = 3

[[topics]]
name = "a"
partitions = 2

[[producers]]
topic = "a"
rate_per_s = 10.0

[consumers]
count = 1
topics = ["a"]

[[faults]]
kind = "broker-crash"
broker = 0
at_s = 1.0
"#;

/// What a load error must look like.
enum Want {
    /// A parse error at this line (and column, when given) whose message contains the text.
    Parse(usize, Option<usize>, &'static str),
    /// A validation problem at this field path (with this line, when known) containing the text.
    Invalid(&'static str, Option<usize>, &'static str),
}

fn check(label: &str, text: &str, want: Want) {
    let err = parse_str(text, "case.toml").expect_err(label);
    let shown = err.to_string();
    match (&err, want) {
        (ScenarioError::Parse { location, message, .. }, Want::Parse(line, col, needle)) => {
            let l = location.as_ref().unwrap_or_else(|| panic!("{label}: no location in {shown}"));
            assert_eq!(l.line, line, "{label}: {shown}");
            if let Some(col) = col {
                assert_eq!(l.column, col, "{label}: {shown}");
            }
            assert!(message.contains(needle), "{label}: {message:?} lacks {needle:?}");
            assert!(shown.starts_with(&format!("case.toml:{}:{}: ", l.line, l.column)), "{label}: {shown}");
            assert!(shown.contains(&format!("{line} | ")) && shown.contains('^'), "{label}: no snippet in {shown}");
        }
        (ScenarioError::Invalid { problems, .. }, Want::Invalid(path, line, needle)) => {
            let p = problems.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{label}: no problem at {path}: {shown}"));
            assert!(p.message.contains(needle), "{label}: {:?} lacks {needle:?}", p.message);
            assert_eq!(p.line, line, "{label}: {shown}");
            assert!(shown.contains(path), "{label}: {shown}");
        }
        _ => panic!("{label}: wrong kind of error: {shown}"),
    }
}

#[test]
fn the_base_case_is_good() {
    parse_str(GOOD, "good.toml").unwrap();
}

#[test]
fn malformed_scenarios_are_answered_precisely() {
    let cases: Vec<(&str, String, Want)> = vec![
        ("unknown field", GOOD.replace("brokers = 3", "brokers = 3\nbrokerz = 1"), Want::Parse(6, None, "unknown field `brokerz`")),
        ("wrong type", GOOD.replace("partitions = 2", "partitions = \"two\""), Want::Parse(10, None, "invalid type")),
        ("missing field", GOOD.replace("duration_s = 10\n", ""), Want::Parse(1, Some(1), "missing field `duration_s`")),
        ("syntax error", GOOD.replace("count = 1", "count = = 1"), Want::Parse(17, Some(9), "")),
        ("unknown fault field", GOOD.replace("broker = 0", "broker = 0\nbrokr = 2"), Want::Parse(23, Some(1), "unknown field `brokr` in faults[0]")),
        ("unknown fault kind", GOOD.replace("\"broker-crash\"", "\"meteor\""), Want::Parse(20, None, "unknown variant `meteor`")),
        ("faults neither swarm nor a schedule", GOOD.replace("duration_s = 10", "duration_s = 10\nfaults = \"storm\"").replace("[[faults]]\nkind = \"broker-crash\"\nbroker = 0\nat_s = 1.0\n", ""), Want::Parse(3, None, "must be \"swarm\" or a schedule")),
        ("rf above brokers", GOOD.replace("replication_factor = 3", "replication_factor = 4"), Want::Invalid("cluster.replication_factor", Some(6), "exceeds the 3 brokers")),
        ("rate zero", GOOD.replace("rate_per_s = 10.0", "rate_per_s = 0.0"), Want::Invalid("producers[0].rate_per_s", Some(14), "must be > 0")),
        ("rate negative", GOOD.replace("rate_per_s = 10.0", "rate_per_s = -5.0"), Want::Invalid("producers[0].rate_per_s", Some(14), "must be > 0")),
        ("zero partitions", GOOD.replace("partitions = 2", "partitions = 0"), Want::Invalid("topics[0].partitions", Some(10), "at least 1")),
        (
            "burst below one",
            format!("{GOOD}\n[[consumers.rate_limits]]\ntier = \"global\"\nrate_per_s = 5.0\nburst = 0.5\n"),
            Want::Invalid("consumers.rate_limits[0].burst", Some(28), "at least 1"),
        ),
        ("fault on a missing broker", GOOD.replace("broker = 0", "broker = 9"), Want::Invalid("faults[0].broker", Some(22), "does not exist")),
        ("fault lasting forever", GOOD.replace("at_s = 1.0", "at_s = 1.0\nfor_s = inf"), Want::Invalid("faults[0].for_s", Some(24), "a finite number >= 0")),
        ("fault at no time", GOOD.replace("at_s = 1.0", "at_s = nan"), Want::Invalid("faults[0].at_s", Some(23), "within the safety phase")),
        ("client latency too long", GOOD.replace("count = 1", "count = 1\nclient_latency_ms = 10001"), Want::Invalid("consumers.client_latency_ms", Some(18), "exceeds the maximum 10000 ms")),
        ("rebalance delay too long", GOOD.replace("brokers = 3", "brokers = 3\ninitial_rebalance_delay_ms = 300001"), Want::Invalid("cluster.initial_rebalance_delay_ms", Some(6), "exceeds the maximum 300000 ms")),
        (
            "tansu hold beyond the maximum",
            GOOD.replace("brokers = 3", "brokers = 3\nbroker_profile = \"tansu\"").replace("count = 1", "count = 1\nsession_timeout_ms = 700000"),
            Want::Invalid("cluster.broker_profile", Some(6), "holds joins 350000 ms"),
        ),
        ("unknown broker profile", GOOD.replace("brokers = 3", "brokers = 3\nbroker_profile = \"redpanda\""), Want::Parse(6, None, "unknown variant `redpanda`")),
        (
            "unknown retry mode",
            format!("{GOOD}\n[consumers.retry]\nmode = \"sometimes\"\n"),
            Want::Parse(26, None, "unknown variant `sometimes`"),
        ),
        (
            "empty parked set",
            format!("{GOOD}\n[consumers.retry]\nmode = \"non-blocking\"\nparked_records_max = 0\n"),
            Want::Invalid("consumers.retry.parked_records_max", Some(27), "within 1..=256"),
        ),
        (
            "parked set above its limit",
            format!("{GOOD}\n[consumers.retry]\nparked_records_max = 257\n"),
            Want::Invalid("consumers.retry.parked_records_max", Some(26), "within 1..=256"),
        ),
        (
            "parked set above the buffer",
            format!("{}\n[consumers.retry]\nmode = \"non-blocking\"\nparked_records_max = 8\n", GOOD.replace("count = 1", "count = 1\nbuffer_records_max = 4")),
            Want::Invalid("consumers.retry.parked_records_max", Some(28), "exceed buffer_records_max 4"),
        ),
        ("record of no bytes", GOOD.replace("rate_per_s = 10.0", "rate_per_s = 10.0\nrecord_bytes = 0"), Want::Invalid("producers[0].record_bytes", Some(15), "within 20..=524288")),
        // A record holds at least its key and the (producer, seq) that identifies it.
        ("record smaller than its identity", GOOD.replace("rate_per_s = 10.0", "rate_per_s = 10.0\nrecord_bytes = 19"), Want::Invalid("producers[0].record_bytes", Some(15), "within 20..=524288")),
        (
            "byte bound below one record",
            GOOD.replace("rate_per_s = 10.0", "rate_per_s = 10.0\nrecord_bytes = 4096").replace("count = 1", "count = 1\nbuffer_bytes_max = 4095"),
            Want::Invalid("consumers.buffer_bytes_max", Some(19), "cannot hold one record of the subscribed topics (4096 bytes)"),
        ),
        (
            "minimum fetch above the maximum",
            GOOD.replace("count = 1", "count = 1\nfetch_min_bytes = 2000\nfetch_max_bytes = 1000"),
            Want::Invalid("consumers.fetch_min_bytes", Some(18), "within 1..=fetch_max_bytes (1000), got 2000"),
        ),
        ("fetch larger than a client takes", GOOD.replace("count = 1", "count = 1\nfetch_max_bytes = 100000000"), Want::Invalid("consumers.fetch_max_bytes", Some(18), "within 1..=99000000")),
        (
            "defaulted field located by its table",
            GOOD.replace("replication_factor = 3\n", "").replace("brokers = 3", "brokers = 2"),
            Want::Invalid("cluster.replication_factor", Some(4), "exceeds the 2 brokers"),
        ),
    ];
    for (label, text, want) in cases {
        check(label, &text, want);
    }
}

#[test]
fn every_validation_problem_is_reported_not_just_the_first() {
    let text = GOOD.replace("partitions = 2", "partitions = 0").replace("rate_per_s = 10.0", "rate_per_s = 0.0");
    match parse_str(&text, "x.toml") {
        Err(ScenarioError::Invalid { problems, .. }) => {
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert!(paths.contains(&"topics[0].partitions") && paths.contains(&"producers[0].rate_per_s"), "{paths:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_and_paths_that_do_not_exist_are_told_apart() {
    match load("no-such-scenario") {
        Err(ScenarioError::Unknown { name, known }) => {
            assert_eq!(name, "no-such-scenario");
            assert!(known.iter().any(|k| k == "s0"));
        }
        other => panic!("{other:?}"),
    }
    match load("/nonexistent/dir/x.toml") {
        Err(e @ ScenarioError::Io { .. }) => assert!(e.to_string().contains("/nonexistent/dir/x.toml"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_load_by_path() {
    let dir = std::env::temp_dir().join(format!("sluice-scenarios-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mine.toml");
    std::fs::write(&path, GOOD).unwrap();
    let s = load(path.to_str().unwrap()).unwrap();
    assert_eq!(s.name, "t");
    std::fs::remove_dir_all(&dir).unwrap();
}
