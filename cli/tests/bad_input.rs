//! Bad input is answered with a clear message and exit code 2, never a panic. Runs the built binary.

use std::path::PathBuf;
use std::process::Command;

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
"#;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn sluice(args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).env_remove("RUST_LOG").output().expect("the binary runs");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn scenario_file(dir: &std::path::Path, label: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{}.toml", label.replace(' ', "-")));
    std::fs::write(&p, text).unwrap();
    p
}

/// Asserts exit 2, no panic, and that stderr contains every needle.
fn check(label: &str, args: &[&str], needles: &[&str]) {
    let o = sluice(args);
    assert_eq!(o.code, Some(2), "{label}: exit code; stderr:\n{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{label}: panicked:\n{}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "{label}: stderr lacks {n:?}:\n{}", o.stderr);
    }
}

#[test]
fn malformed_files_and_bad_flags_exit_2_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown field", GOOD.replace("brokers = 3", "brokers = 3\nbrokerz = 1"), vec!["unknown field `brokerz`", ":6:"]),
        ("wrong type", GOOD.replace("partitions = 2", "partitions = \"two\""), vec!["invalid type", ":10:"]),
        ("missing field", GOOD.replace("[consumers]\ncount = 1\ntopics = [\"a\"]\n", ""), vec!["missing field `consumers`"]),
        ("syntax error", GOOD.replace("count = 1", "count = = 1"), vec![":17:9:", "17 | count = = 1", "^"]),
        ("rf above brokers", GOOD.replace("replication_factor = 3", "replication_factor = 4"), vec!["cluster.replication_factor", "exceeds the 3 brokers", ":6:"]),
        ("rate zero", GOOD.replace("rate_per_s = 10.0", "rate_per_s = 0.0"), vec!["producers[0].rate_per_s", "must be > 0"]),
        ("rate negative", GOOD.replace("rate_per_s = 10.0", "rate_per_s = -1.0"), vec!["producers[0].rate_per_s", "must be > 0"]),
        ("zero partitions", GOOD.replace("partitions = 2", "partitions = 0"), vec!["topics[0].partitions", "at least 1"]),
        (
            "burst below one",
            format!("{GOOD}\n[[consumers.rate_limits]]\ntier = \"global\"\nrate_per_s = 5.0\nburst = 0.5\n"),
            vec!["consumers.rate_limits[0].burst", "at least 1"],
        ),
        ("unknown fault kind", format!("{GOOD}\n[[faults]]\nkind = \"meteor\"\nat_s = 1.0\n"), vec!["unknown variant `meteor`"]),
    ];
    for (label, text, needles) in &files {
        let path = scenario_file(&dir, label, text);
        let p = path.to_str().unwrap();
        check(label, &["run", p, "--out", dir.join("out").to_str().unwrap()], needles);
        // The same file is refused the same way by every subcommand that loads scenarios.
        check(&format!("{label} (compare)"), &["compare", p], needles);
        check(&format!("{label} (explore)"), &["explore", p, "--seeds", "1"], needles);
    }
    let good = scenario_file(&dir, "good", GOOD);
    let good = good.to_str().unwrap();
    let flags: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("unknown scenario name", vec!["run", "no-such-scenario"], vec!["unknown scenario \"no-such-scenario\"", "steady"]),
        ("nonexistent file", vec!["run", "/nonexistent/x.toml"], vec!["cannot read /nonexistent/x.toml"]),
        ("bad strategy", vec!["run", good, "--strategy", "turbo"], vec!["invalid value 'turbo'", "none", "pause", "credit"]),
        ("bad plant", vec!["run", good, "--plant", "gremlin"], vec!["unknown bug \"gremlin\"", "ignore-credits"]),
        ("negative seed", vec!["run", good, "--seed", "-3"], vec!["unexpected argument '-3'"]),
        ("seed beyond u64", vec!["run", good, "--seed", "18446744073709551616"], vec!["invalid value '18446744073709551616' for '--seed <SEED>'"]),
        ("seed not a number", vec!["run", good, "--seed", "many"], vec!["invalid value 'many'"]),
        ("bad compare axis", vec!["compare", "steady", "--by", "colour"], vec!["invalid value 'colour'"]),
        ("zero explore seeds", vec!["explore", "steady", "--seeds", "0"], vec!["--seeds must be within"]),
        ("unknown subcommand", vec!["launch"], vec!["unrecognized subcommand"]),
        ("missing argument", vec!["run"], vec!["required"]),
        ("missing history", vec!["check", "/nonexistent/history.jsonl"], vec!["cannot read /nonexistent/history.jsonl"]),
        ("real without brokers", vec!["real", "steady"], vec!["--brokers"]),
        ("real with a bad time scale", vec!["real", "steady", "--brokers", "127.0.0.1:1", "--time-scale", "0"], vec!["time scale"]),
        ("sim profile without compare-sim", vec!["real", "steady", "--brokers", "127.0.0.1:1", "--sim-profile", "tansu"], vec!["--compare-sim"]),
        ("unknown sim profile", vec!["real", "steady", "--brokers", "127.0.0.1:1", "--compare-sim", "--sim-profile", "redpanda"], vec!["invalid value 'redpanda'", "kafka", "tansu"]),
    ];
    for (label, args, needles) in &flags {
        check(label, args, needles);
    }
    let not_history = scenario_file(&dir, "not-history", "{\"t_us\": 1, \"kind\": \"nonsense\"}\n");
    check("malformed history", &["check", not_history.to_str().unwrap()], &["line 1"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_errors_are_machine_readable_too() {
    let o = sluice(&["--json", "run", "no-such-scenario"]);
    assert_eq!(o.code, Some(2));
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", o.stdout));
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("unknown scenario"));
}

#[test]
fn list_names_every_catalogue_scenario() {
    let o = sluice(&["list"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let names: Vec<&str> = sluice_scenarios::catalogue::names().collect();
    for n in &names {
        assert!(o.stdout.lines().any(|l| l.starts_with(&format!("{n} "))), "{n} missing from:\n{}", o.stdout);
    }
    let o = sluice(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), names.len());
    assert!(v.as_array().unwrap().iter().all(|r| !r["source"].as_str().unwrap().is_empty()));
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [vec!["--help"], vec!["run", "--help"]] {
        let o = sluice(&args);
        assert_eq!(o.code, Some(0));
        for needle in ["Exit codes:", "130", "bad input"] {
            assert!(o.stdout.contains(needle), "{args:?} help lacks {needle:?}:\n{}", o.stdout);
        }
    }
}

/// `check` of a history that contradicts itself (a fetch of one 100-byte record that claims 150
/// bytes) exits 2 and names the contradiction; the same history with the right bytes exits 0.
#[test]
fn a_history_that_contradicts_itself_is_bad_input() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-contradicts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let meta = r#"{"t_us":0,"kind":"meta","schema":1,"source":"test","scenario":"t","seed":1,"topics":[{"name":"a","partitions":1}],"producers":[{"topic":"a","record_bytes":100}],"consumers":1,"strategy":"none","bounds":{"buffer_records_max":10,"buffer_bytes_max":1000,"credits_max":0,"rate_tiers":[],"duplicate_window_records":null,"lag_ok_records":0,"recovery_deadline_ms":0,"max_poll_interval_ms":300000,"session_timeout_ms":45000},"expect":[],"settings":{}}"#;
    let body = |bytes: u64| {
        [
            meta.to_string(),
            r#"{"t_us":1,"kind":"produce_send","producer":0,"tp":"a/0","seq":0,"count":1}"#.to_string(),
            r#"{"t_us":2,"kind":"produce_ack","producer":0,"tp":"a/0","seq":0,"count":1,"offset":0}"#.to_string(),
            r#"{"t_us":3,"kind":"assign","consumer":0,"generation":1,"tps":["a/0"]}"#.to_string(),
            format!(r#"{{"t_us":4,"kind":"fetch","consumer":0,"tp":"a/0","runs":[{{"offset":0,"producer":0,"seq":0,"count":1}}],"bytes":{bytes},"hw":1}}"#),
            r#"{"t_us":5,"kind":"process_start","consumer":0,"tp":"a/0","offset":0,"count":1,"attempt":1}"#.to_string(),
            r#"{"t_us":6,"kind":"process_end","consumer":0,"tp":"a/0","offset":0,"count":1,"ok":1}"#.to_string(),
        ]
        .join("\n")
            + "\n"
    };
    for (bytes, code) in [(100, 0), (150, 2)] {
        let p = dir.join(format!("h{bytes}.jsonl"));
        std::fs::write(&p, body(bytes)).unwrap();
        let o = sluice(&["check", p.to_str().unwrap()]);
        assert_eq!(o.code, Some(code), "bytes {bytes}:\n{}\n{}", o.stdout, o.stderr);
        assert_eq!(o.stdout.contains("input error: fetch of a/0 by c0"), code == 2, "bytes {bytes}:\n{}", o.stdout);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
