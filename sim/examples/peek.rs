//! Runs one scenario (JSON on stdin) with a seed and prints a summary of its history: entries per
//! kind, the last lag samples, and the run's counters. A debugging aid.
//!
//! `echo '{…}' | cargo run -p sluice-sim --example peek -- SEED [--no-consumers]`

use std::collections::BTreeMap;
use std::io::Read;

use sluice_core::bugs::Bugs;
use sluice_core::history::{to_line, Event};
use sluice_sim::{run_with, RunConfig, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let consumers = !args.iter().any(|a| a == "--no-consumers");
    let dump = args.iter().any(|a| a == "--dump");
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .expect("read stdin");
    let spec: sluice_core::spec::Scenario = serde_json::from_str(&text).expect("scenario JSON");
    let out = run_with(
        &spec,
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
    .expect("run");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for e in &out.history {
        let line = to_line(e);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        *kinds
            .entry(v["kind"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        if dump {
            println!("{line}");
        }
        match &e.ev {
            Event::Leader { .. }
            | Event::Fault { .. }
            | Event::Rebalance { .. }
            | Event::Member { .. }
            | Event::Note { .. }
            | Event::Phase { .. }
                if !dump =>
            {
                println!("{line}");
            }
            _ => {}
        }
    }
    println!("kinds: {kinds:?}");
    let lags: Vec<String> = out
        .history
        .iter()
        .rev()
        .filter_map(|e| match &e.ev {
            Event::Lag { tp, hw, committed } => Some(format!("{tp}:{hw}-{committed}")),
            _ => None,
        })
        .take(12)
        .collect();
    println!("last lag: {lags:?}");
    println!(
        "stats: {:?} hash {:016x} faults {:?}",
        out.stats, out.hash, out.faults
    );
}
