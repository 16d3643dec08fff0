//! Shared helpers of the simulator's tests: scenarios as data, and checks over a finished run.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_core::bugs::Bugs;
use sluice_core::history::{Event, Run};
use sluice_core::spec::Scenario;
use sluice_sim::{run_with, RunConfig, SimOptions, SimOutcome};

/// A small cluster: 3 brokers, RF 3, one topic of `partitions`, one producer, `consumers` consumers.
pub fn base(partitions: u32, rate_per_s: f64, consumers: u32) -> Value {
    json!({
        "name": "test",
        "duration_s": 20,
        "liveness_s": 5,
        "topics": [{"name": "orders", "partitions": partitions}],
        "producers": [{"topic": "orders", "rate_per_s": rate_per_s}],
        "consumers": {"count": consumers, "topics": ["orders"]},
    })
}

/// Sets `path` (dotted, e.g. `cluster.min_insync_replicas`) in a scenario value.
pub fn set(mut v: Value, path: &str, x: Value) -> Value {
    let mut cur = &mut v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next = if let Ok(idx) = p.parse::<usize>() {
            &mut cur[idx]
        } else {
            if cur.get(*p).is_none() {
                cur[*p] = json!({});
            }
            &mut cur[*p]
        };
        if last {
            *next = x;
            return v;
        }
        cur = next;
    }
    v
}

pub fn scenario(v: Value) -> Scenario {
    let s: Scenario = serde_json::from_value(v).expect("test scenario parses");
    s.validate().expect("test scenario is valid");
    s
}

pub fn run_seed(s: &Scenario, seed: u64, consumers: bool) -> SimOutcome {
    run_with(
        s,
        SimOptions {
            seed,
            bugs: Bugs::NONE,
            observer: None,
        },
        RunConfig {
            keep_history: true,
            consumers,
        },
    )
    .expect("the run completes")
}

/// Acknowledged records missing from (or overwritten in) the final log of their partition at the
/// acknowledged offset: `(records acked, records lost)`.
pub fn lost_acked(out: &SimOutcome) -> (u64, u64) {
    let mut acked = 0;
    let mut lost = 0;
    let logs: &BTreeMap<String, Vec<Run>> = &out.final_logs;
    for e in &out.history {
        if let Event::ProduceAck {
            producer,
            tp,
            seq,
            count,
            offset,
        } = &e.ev
        {
            acked += *count as u64;
            let runs = logs.get(&**tp).map(|v| v.as_slice()).unwrap_or(&[]);
            for i in 0..*count as u64 {
                let o = offset + i;
                let at = runs.partition_point(|r| r.offset + r.count as u64 <= o);
                let ok = runs.get(at).is_some_and(|r| {
                    r.offset <= o && r.producer == *producer && r.seq + (o - r.offset) == seq + i
                });
                if !ok {
                    lost += 1;
                }
            }
        }
    }
    (acked, lost)
}

/// How many seeds a sweep uses: `default`, or `long` when `SLUICE_LONG=1`.
pub fn seeds(default: u64, long: u64) -> u64 {
    if std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1") {
        long
    } else {
        default
    }
}

pub fn count(out: &SimOutcome, f: impl Fn(&Event) -> bool) -> usize {
    out.history.iter().filter(|e| f(&e.ev)).count()
}
