//! Benchmark: scenario S0 (3 brokers, RF 3, 12 partitions, 4 consumers, 5 000 records/s, one
//! simulated hour, a broker crash and a consumer stall). Prints simulated seconds per wall second,
//! the history entries and node steps per simulated second (with the entries by kind), and the peak
//! RSS (VmHWM) at every simulated 10 minutes, to show memory stays flat.
//!
//! Two runs: S0 with Kafka's client defaults (`linger.ms` = 5), the benchmark's headline; then, clearly
//! labelled, the same scenario with a coarser producer (`linger.ms` = 50: ten times fewer, larger
//! batches), to show how the cost scales with the batches the clients make.
//!
//! Last, the floor: S0's own counts of history entries, messages and node steps pushed through a
//! bare binary-heap event loop with no model at all (each entry written and hashed exactly as the
//! simulator does, each message a heap push and pop, each node step a pop), on the same machine in
//! the same run. No simulator that records S0's events one by one can run faster than that.
//!
//! `cargo bench -p sluice-sim --bench s0` (release). `SLUICE_BENCH_S=120` shortens both runs;
//! `SLUICE_BENCH_ONLY=default` (or `coarse`) runs one of them.
//! Wall time and /proc are read here only, outside the simulation's determinism rules.

use sluice_core::bugs::Bugs;
use sluice_core::history::{Entry, Event};
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

fn s0(duration_s: u64, linger_ms: u64) -> Scenario {
    let v = serde_json::json!({
        "name": "S0",
        "description": "3 brokers, RF 3, 12 partitions, 4 consumers, 5 000 records/s, a broker crash and a consumer stall",
        "duration_s": duration_s,
        "liveness_s": 60,
        "topics": [{"name": "orders", "partitions": 12}],
        "producers": [{"topic": "orders", "rate_per_s": 5000.0, "linger_ms": linger_ms}],
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

/// The history's `kind` tags, indexed by [`kind`].
const KINDS: [&str; 29] = [
    "meta",
    "phase",
    "fault",
    "produce_send",
    "produce_ack",
    "produce_fail",
    "leader",
    "member",
    "rebalance",
    "assign",
    "revoke",
    "seek",
    "fetch",
    "process_start",
    "process_end",
    "dead_letter",
    "commit_send",
    "commit_ack",
    "commit_fail",
    "pause",
    "resume",
    "credit_grant",
    "credit_return",
    "token",
    "buffer",
    "lag",
    "metrics",
    "checkpoint",
    "note",
];

/// The index in [`KINDS`] of an entry's kind (an array index: counting must not slow the run).
fn kind(e: &Entry) -> usize {
    match e.ev {
        Event::Meta(_) => 0,
        Event::Phase { .. } => 1,
        Event::Fault { .. } => 2,
        Event::ProduceSend { .. } => 3,
        Event::ProduceAck { .. } => 4,
        Event::ProduceFail { .. } => 5,
        Event::Leader { .. } => 6,
        Event::Member { .. } => 7,
        Event::Rebalance { .. } => 8,
        Event::Assign { .. } => 9,
        Event::Revoke { .. } => 10,
        Event::Seek { .. } => 11,
        Event::Fetch { .. } => 12,
        Event::ProcessStart { .. } => 13,
        Event::ProcessEnd { .. } => 14,
        Event::DeadLetter { .. } => 15,
        Event::CommitSend { .. } => 16,
        Event::CommitAck { .. } => 17,
        Event::CommitFail { .. } => 18,
        Event::Pause { .. } => 19,
        Event::Resume { .. } => 20,
        Event::CreditGrant { .. } => 21,
        Event::CreditReturn { .. } => 22,
        Event::Token { .. } => 23,
        Event::Buffer { .. } => 24,
        Event::Lag { .. } => 25,
        Event::Metrics { .. } => 26,
        Event::Checkpoint { .. } => 27,
        Event::Note { .. } => 28,
    }
}

/// What a run counted: `(entries, messages, node steps, simulated ms, wall s)`.
type Counts = (u64, u64, u64, u64, f64);

fn bench(label: &str, duration_s: u64, linger_ms: u64) -> Counts {
    let spec = s0(duration_s, linger_ms);
    let mut marks: Vec<(u64, u64, u64)> = Vec::new();
    let mut kinds = [0u64; KINDS.len()];
    let mut entries = 0u64;
    let mut next_mark_us = 0u64;
    let mut observer = |e: &Entry| {
        entries += 1;
        kinds[kind(e)] += 1;
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
    let st = &out.stats;
    let sim_s = st.simulated_ms as f64 / 1_000.0;
    println!("{label}");
    println!(
        "  S0: {sim_s:.0} simulated s in {wall_s:.2} wall s = {:.0}x real time",
        sim_s / wall_s
    );
    println!(
        "    {} history entries, {} messages ({} dropped), {} node steps, {} records produced, {} processed, hash {:016x}",
        st.entries, st.messages, st.messages_dropped, st.steps, st.records_produced, st.records_processed, out.hash
    );
    println!(
        "    per simulated second: {:.0} entries, {:.0} messages, {:.0} node steps",
        st.entries as f64 / sim_s,
        st.messages as f64 / sim_s,
        st.steps as f64 / sim_s
    );
    println!(
        "    per wall second: {:.0} entries, {:.0} messages, {:.0} node steps",
        st.entries as f64 / wall_s,
        st.messages as f64 / wall_s,
        st.steps as f64 / wall_s
    );
    let mut by_count: Vec<(&str, u64)> = KINDS.iter().copied().zip(kinds).filter(|k| k.1 > 0).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shares: Vec<String> = by_count
        .iter()
        .map(|(k, n)| format!("{k} {:.1}%", 100.0 * *n as f64 / st.entries.max(1) as f64))
        .collect();
    println!("    entries by kind: {}", shares.join(", "));
    println!("    VmHWM before the run: {rss_before} kB");
    for (t, kb, n) in marks {
        println!("    at {t:>5} simulated s: VmHWM {kb} kB after {n} entries");
    }
    println!("    VmHWM at the end: {} kB", vm_hwm_kb());
    (st.entries, st.messages, st.steps, st.simulated_ms, wall_s)
}

/// The floor: `entries`, `messages` and `steps` spread evenly over `sim_ms` simulated
/// milliseconds through a bare event loop. Returns the wall seconds it took.
fn floor(entries: u64, messages: u64, steps: u64, sim_ms: u64) -> f64 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let tp: sluice_core::history::TpName = "orders/7".into();
    let mut hash = sluice_core::history::TraceHash::new();
    let mut buf = Vec::with_capacity(256);
    // (delivery ms, send order, node, payload): about the size of a simulator message header.
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32, [u64; 3])>> = BinaryHeap::new();
    let (mut done_e, mut done_m, mut done_s, mut seq, mut acc) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let wall = std::time::Instant::now();
    for t in 1..=sim_ms {
        // Even shares up to `t` (integer arithmetic: the totals come out exact).
        let want = |total: u64| (total as u128 * t as u128 / sim_ms as u128) as u64;
        while done_m < want(messages) {
            seq += 1;
            heap.push(Reverse((t + 1 + (seq & 1), seq, (seq % 8) as u32, [seq, t, acc])));
            done_m += 1;
        }
        // Every message is delivered when due.
        while heap.peek().is_some_and(|m| m.0 .0 <= t) {
            let Reverse((_, s, n, p)) = heap.pop().expect("peeked");
            acc = acc.wrapping_add(s ^ n as u64 ^ p[0] ^ p[2]);
        }
        while done_s < want(steps) {
            // A node step: its clock and the next thing it waits for.
            acc = acc.wrapping_add(heap.peek().map_or(t, |m| m.0 .0) ^ done_s);
            done_s += 1;
        }
        while done_e < want(entries) {
            let e = Entry {
                t_us: t * 1_000,
                ev: Event::ProduceAck {
                    producer: 0,
                    tp: tp.clone(),
                    seq: done_e * 3,
                    count: (done_e % 7) as u32 + 1,
                    offset: done_e * 3 + acc % 3,
                },
            };
            buf.clear();
            sluice_core::jsonl::write_entry(&mut buf, &e);
            hash.line(&buf);
            done_e += 1;
        }
    }
    let wall_s = wall.elapsed().as_secs_f64();
    std::hint::black_box((hash.finish(), acc, heap.len()));
    wall_s
}

fn main() {
    let duration_s: u64 = std::env::var("SLUICE_BENCH_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_540);
    let only = std::env::var("SLUICE_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "default" {
        let (e, m, s, ms, wall_s) = bench(
            "S0 with Kafka's client defaults (linger.ms = 5, fetch.wait.max.ms = 500):",
            duration_s,
            5,
        );
        let floor_s = floor(e, m, s, ms);
        let sim_s = ms as f64 / 1_000.0;
        println!("The floor: the same {e} entries, {m} messages and {s} node steps through a bare event loop, no model:");
        println!(
            "  {sim_s:.0} simulated s in {floor_s:.2} wall s = {:.0}x real time (the simulator above: {:.0}x, {:.1} times the floor's wall time)",
            sim_s / floor_s,
            sim_s / wall_s,
            wall_s / floor_s
        );
    }
    if only.is_empty() || only == "coarse" {
        bench(
            "S0 with a coarser producer, NOT the default (linger.ms = 50):",
            duration_s,
            50,
        );
    }
}
