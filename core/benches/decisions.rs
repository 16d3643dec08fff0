//! Per-decision cost of the core: token admit, credit consume/release, ledger update, and one
//! pipeline step. Prints nanoseconds per operation (median of several rounds) so figures are read
//! side by side from one run. Run: `cargo bench -p sluice-core --bench decisions`.
//!
//! `SLUICE_BENCH_FILTER=pipeline` runs only the rows whose name contains the filter (e.g. to count
//! instructions of one row under callgrind).
//!
//! Wall-clock timing happens here only, outside any simulated path.

use std::hint::black_box;
use std::time::Instant;

use sluice_core::bugs::Bugs;
use sluice_core::credit::{CreditConfig, Credits};
use sluice_core::ledger::Ledger;
use sluice_core::pause::PauseConfig;
use sluice_core::pipeline::{Action, CheckpointMode, Input, Pipeline, PipelineConfig, RetryMode};
use sluice_core::rate::{BucketConfig, MultiTier, TokenBucket};
use sluice_core::retry::RetryConfig;
use sluice_core::spec::{Protocol, Strategy};
use sluice_core::types::{MemberId, Tp};

const ROUNDS: usize = 7;

/// Runs `f` (which performs `ops` operations) ROUNDS times; returns the median ns per operation.
fn measure(ops: u64, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let mut v: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[ROUNDS / 2]
}

fn main() {
    let n: u64 = 1_000_000;
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let mut pipeline_steps: u64 = 0;
    let filter = std::env::var("SLUICE_BENCH_FILTER").unwrap_or_default();
    let wanted = |name: &str| name.contains(filter.as_str());

    if wanted("token bucket try_take(1)") {
        rows.push(("token bucket try_take(1)", {
            let mut b = TokenBucket::new(BucketConfig { rate_per_s: 1e9, burst: 1e6 }, 0);
            let mut now = 0u64;
            measure(n, || {
                for _ in 0..n {
                    now += 1;
                    black_box(b.try_take(1, black_box(now)));
                }
            })
        }));
    }

    if wanted("multi-tier admit (3 tiers)") {
        rows.push(("multi-tier admit (3 tiers)", {
            let tiers = [BucketConfig { rate_per_s: 1e9, burst: 1e6 }; 3];
            let mut m = MultiTier::new(&tiers, 0);
            let path = [0usize, 1, 2];
            let mut now = 0u64;
            measure(n, || {
                for _ in 0..n {
                    now += 1;
                    black_box(m.admit(&path, 1, black_box(now)));
                }
            })
        }));
    }

    if wanted("credit consume + release (12 channels)") {
        rows.push(("credit consume + release (12 channels)", {
            let mut c = Credits::new(CreditConfig { exclusive_per_channel: 4, floating_max: 52, buffer_records_max: 100 });
            for p in 0..12 {
                c.add_channel(Tp::new(0, p)).unwrap();
            }
            let mut grants = Vec::with_capacity(16);
            measure(n, || {
                for i in 0..n {
                    let tp = Tp::new(0, (i % 12) as u32);
                    c.consume(tp, 1).unwrap();
                    grants.clear();
                    c.release(tp, 1, &mut grants);
                    black_box(&grants);
                }
            })
        }));
    }

    if wanted("ledger done + committable") {
        rows.push(("ledger done + committable", {
            let mut l = Ledger::new(1024);
            let tp = Tp::new(0, 0);
            l.track(tp, 0);
            let mut off = 0u64;
            measure(n, || {
                for _ in 0..n {
                    l.done(tp, off, 1).unwrap();
                    off += 1;
                    black_box(l.committable(tp));
                }
            })
        }));
    }

    if wanted("pipeline step (fetch reply or process done)") {
        rows.push(("pipeline step (fetch reply or process done)", {
            let cfg = PipelineConfig {
                member: MemberId(0),
                strategy: Strategy::Credit,
                protocol: Protocol::Cooperative,
                buffer_records_max: 2_000,
                buffer_bytes_max: 64 << 20,
                max_partition_fetch_bytes: 1 << 20,
                record_bytes_max: 1_024,
                max_poll_records: 50,
                process_batch_max: 50,
                pause: PauseConfig { high_records: 1_600, low_records: 800 },
                credit: CreditConfig { exclusive_per_channel: 50, floating_max: 1_400, buffer_records_max: 2_000 },
                workers: 4,
                retry: RetryConfig { max_attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 100, jitter: 0.5 },
                retry_mode: RetryMode::Blocking,
                parked_records_max: 16,
                commit_interval_ms: 5_000,
                checkpoint: CheckpointMode::Periodic,
                tiers: vec![],
                tier_names: vec![],
                tier_paths: vec![vec![]],
                limiter_restore: None,
                sample_interval_ms: 1_000,
                actions_max: 100_000,
                rng_seed: 1,
                bugs: Bugs::NONE,
            };
            let tps: Vec<(Tp, u64)> = (0..12).map(|p| (Tp::new(0, p), 0)).collect();
            let mut pl = Pipeline::new(cfg, 0);
            pl.handle(0, Input::Assigned { generation: 1, tps: &tps });
            let mut now = 0u64;
            let mut steps = 0u64;
            let mut fetches: Vec<(Tp, u64, u32)> = Vec::new();
            let mut done: Vec<(u32, u32)> = Vec::new();
            let rounds = 100_000u64;
            let mut total_steps = 0u64;
            let ns = measure(1, || {
                steps = 0;
                for _ in 0..rounds {
                    now += 100;
                    while let Some(a) = pl.poll_action() {
                        match a {
                            Action::Fetch { tp, offset, max_records, .. } => fetches.push((tp, offset, max_records)),
                            Action::Process { worker, count, .. } => done.push((worker, count)),
                            _ => {}
                        }
                    }
                    for (tp, offset, max) in fetches.drain(..) {
                        pl.handle(now, Input::Fetched { tp, offset, count: max, bytes: max as u64 * 1_024, hw: offset + 10_000 });
                        steps += 1;
                    }
                    for (worker, count) in done.drain(..) {
                        pl.handle(now, Input::ProcessDone { worker, ok: count });
                        steps += 1;
                    }
                }
                total_steps = steps;
            });
            pipeline_steps = total_steps;
            ns / total_steps as f64
        }));
    }

    println!("{:<48} {:>10}", "decision", "ns/op");
    for (name, ns) in &rows {
        println!("{:<48} {:>10.1}", name, ns);
    }
    println!("(median of {ROUNDS} rounds; target <= 50 ns each on one core)");
    // `measure` runs each body ROUNDS + 1 times (one warm-up): instructions per pipeline step under
    // callgrind are Ir(Pipeline::handle) / (pipeline_steps * (ROUNDS + 1)).
    println!("pipeline steps per round: {pipeline_steps} ({} rounds including warm-up)", ROUNDS + 1);
}
