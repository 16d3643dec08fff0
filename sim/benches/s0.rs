//! Benchmark: scenario S0 (3 brokers, RF 3, 12 partitions, 4 consumers, 5 000 records/s, one
//! simulated hour, a broker crash and a consumer stall). Prints simulated seconds per wall second
//! and the peak RSS (VmHWM) at every simulated 10 minutes, to show memory stays flat.
//!
//! `cargo bench -p sluice-sim --bench s0` (release). `SLUICE_BENCH_S=600` shortens the run.
//! Wall time and /proc are read here only, outside the simulation's determinism rules.

use sluice_core::bugs::Bugs;
use sluice_core::history::Event;
use sluice_core::spec::Scenario;
use sluice_sim::{run_with, RunConfig, SimOptions};

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn s0(duration_s: u64) -> Scenario {
    let v = serde_json::json!({
        "name": "S0",
        "description": "3 brokers, RF 3, 12 partitions, 4 consumers, 5 000 records/s, a broker crash and a consumer stall",
        "duration_s": duration_s,
        "liveness_s": 60,
        "topics": [{"name": "orders", "partitions": 12}],
        "producers": [{"topic": "orders", "rate_per_s": 5000.0}],
        "consumers": {"count": 4, "topics": ["orders"], "session_timeout_ms": 10000, "heartbeat_interval_ms": 3000},
        "faults": [
            {"at_s": (duration_s as f64) * 0.25, "for_s": 30.0, "kind": "broker-crash", "broker": 1},
            {"at_s": (duration_s as f64) * 0.5, "for_s": 20.0, "kind": "consumer-stall", "consumer": 2}
        ]
    });
    let s: Scenario = serde_json::from_value(v).expect("S0 parses");
    s.validate().expect("S0 is valid");
    s
}

fn main() {
    let duration_s: u64 = std::env::var("SLUICE_BENCH_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_540);
    let spec = s0(duration_s);
    let mut marks: Vec<(u64, u64, u64)> = Vec::new();
    let mut entries = 0u64;
    let mut next_mark_us = 0u64;
    let mut observer = |e: &sluice_core::history::Entry| {
        entries += 1;
        if e.t_us >= next_mark_us && matches!(e.ev, Event::Lag { .. }) {
            marks.push((e.t_us / 1_000_000, vm_hwm_kb(), entries));
            next_mark_us += 600_000_000;
        }
        true
    };
    let rss_before = vm_hwm_kb();
    let wall = std::time::Instant::now();
    let out = run_with(
        &spec,
        SimOptions {
            seed: 1,
            bugs: Bugs::NONE,
            observer: Some(&mut observer),
        },
        RunConfig {
            keep_history: false,
            consumers: true,
        },
    )
    .expect("S0 runs");
    let wall_s = wall.elapsed().as_secs_f64();
    let sim_s = out.stats.simulated_ms as f64 / 1_000.0;
    println!(
        "S0: {sim_s:.0} simulated s in {wall_s:.2} wall s = {:.0}x real time",
        sim_s / wall_s
    );
    println!(
        "    {} history entries, {} messages ({} dropped), {} records produced, {} processed, hash {:016x}",
        out.stats.entries, out.stats.messages, out.stats.messages_dropped, out.stats.records_produced, out.stats.records_processed, out.hash
    );
    println!(
        "    per wall second: {:.0} entries, {:.0} messages",
        out.stats.entries as f64 / wall_s,
        out.stats.messages as f64 / wall_s
    );
    println!("    VmHWM before the run: {rss_before} kB");
    for (t, kb, n) in marks {
        println!("    at {t:>5} simulated s: VmHWM {kb} kB after {n} entries");
    }
    println!("    VmHWM at the end: {} kB", vm_hwm_kb());
}
