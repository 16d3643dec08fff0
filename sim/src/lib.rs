//! The simulated world: a seeded Kafka cluster on madsim (brokers with partition replicas, leaders
//! and ISR, acks, a group coordinator, producers with load shapes, consumers running the core
//! pipeline, faults) and a thin driver. One seed decides everything.
//!
//! Codemap:
//! - [`world`]: all state behind one lock, the message types, the history recorder.
//! - [`net`], [`disk`]: the simulated network (latency, loss, cuts incl. one-way) and disks (append
//!   latency, slow-disk factor, what a crash loses) as plain data.
//! - [`log`]: a replica's log as runs `(offset, producer, seq, count, epoch)`.
//! - [`broker`]: replication, ISR, high watermark, acks, elections (clean and unclean), truncation,
//!   the controller, the coordinator's host.
//! - [`producer`]: load shapes, keys, partitioning, batching, retries, idempotence.
//! - [`consumer`]: the driver of `group::Member` and `sluice_core::pipeline::Pipeline`.
//! - [`faults`]: schedules and swarm mode.
//! - [`group`]: the consumer-group protocol state machines.
//!
//! madsim provides the runtime, simulated time, the seed and the nodes: every broker, producer and
//! consumer is a madsim node whose one task loops "lock the world, handle what is due, sleep until
//! the next thing is due". A crash is `Handle::kill` plus dropping the node's volatile state; a
//! restart is `Handle::restart`. Nothing here reads the wall clock or OS randomness; every random
//! draw comes from a stream derived from the seed ([`dist`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::bugs::Bugs;
use sluice_core::history::{Entry, Event, Phase, Run};
use sluice_core::spec::{Faults, Scenario};

pub mod broker;
pub mod consumer;
pub mod disk;
pub mod dist;
pub mod faults;
pub mod group;
pub mod log;
pub mod net;
pub mod producer;
pub mod world;

use world::{consts::*, ObserverPtr, Recorder, World, WorldOptions};

/// What one simulated run is asked to do.
pub struct SimOptions<'a> {
    pub seed: u64,
    /// Planted bugs switched on in every consumer (empty by default).
    pub bugs: Bugs,
    /// Called with every history entry as it is recorded (online checking). Returning `false` stops
    /// the run at that entry (the history then ends there, with a `phase: end` line).
    pub observer: Option<&'a mut dyn FnMut(&Entry) -> bool>,
}

/// The result of one simulated run.
pub struct SimOutcome {
    pub history: Vec<Entry>,
    /// `history::hash_entries(&history)`.
    pub hash: u64,
    /// Whether the observer stopped the run early.
    pub stopped_early: bool,
    /// The faults the run injected (the scenario's schedule, or what the seed chose under swarm),
    /// as a schedule that replays them.
    pub faults: Vec<sluice_core::spec::Fault>,
    /// Each partition's log at the end of the run (the leader's replica, or the longest one while
    /// the partition is offline), for loss checks against the acknowledged sends.
    pub final_logs: BTreeMap<String, Vec<Run>>,
    pub stats: SimStats,
}

/// Counters of one run, for reports and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub entries: u64,
    pub messages: u64,
    pub messages_dropped: u64,
    /// Node steps: a broker, producer or consumer handling what was due for it.
    pub steps: u64,
    pub records_produced: u64,
    pub records_processed: u64,
    pub simulated_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("the simulation exceeded a bound: {0}")]
    Bound(String),
}

/// Settings of a run beyond the scenario and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Keep the history in memory (`SimOutcome::history`); off, only its hash is computed.
    pub keep_history: bool,
    /// Run the consumer group; off, the cluster and producers alone.
    pub consumers: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            keep_history: true,
            consumers: true,
        }
    }
}

/// Runs `spec` in a fresh madsim runtime seeded with `opts.seed`. Requires a `--cfg madsim` build
/// (the workspace's default).
pub fn run(spec: &Scenario, opts: SimOptions<'_>) -> Result<SimOutcome, SimError> {
    run_with(spec, opts, RunConfig::default())
}

/// [`run`] with explicit [`RunConfig`].
pub fn run_with(
    spec: &Scenario,
    opts: SimOptions<'_>,
    cfg: RunConfig,
) -> Result<SimOutcome, SimError> {
    spec.validate().map_err(|errs| {
        SimError::Invalid(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let layout = net::Layout {
        brokers: spec.cluster.brokers,
        producers: spec.producers.len() as u32,
        consumers: if cfg.consumers {
            spec.consumers.count
        } else {
            0
        },
    };
    let faults = match &spec.faults {
        Faults::Schedule(v) => v.clone(),
        Faults::Swarm(_) => faults::swarm(spec, opts.seed),
    };
    faults::check_schedule(spec, &layout, &faults)?;
    let total_ms = (spec.duration_s + spec.liveness_s)
        .checked_mul(1_000)
        .ok_or_else(|| SimError::Invalid("duration too long".into()))?;

    let observer = opts.observer.map(|o| {
        let p: *mut (dyn FnMut(&Entry) -> bool + '_) = o;
        // SAFETY: only the lifetime is erased; see `ObserverPtr`.
        ObserverPtr(unsafe {
            std::mem::transmute::<
                *mut (dyn FnMut(&Entry) -> bool + '_),
                *mut (dyn FnMut(&Entry) -> bool + 'static),
            >(p)
        })
    });
    let rec = Recorder::new(cfg.keep_history, observer);
    let wopts = WorldOptions {
        keep_history: cfg.keep_history,
        consumers: cfg.consumers,
    };
    let world = World::new(spec, opts.seed, opts.bugs, wopts, rec);
    if cfg.consumers && world.coordinator.is_none() {
        return Err(SimError::Invalid(
            "the group coordinator rejects this group configuration".into(),
        ));
    }
    let world = Arc::new(Mutex::new(world));
    {
        let rt =
            madsim::runtime::Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
        rt.block_on(main_task(world.clone(), faults.clone(), total_ms));
    }
    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
    let history = std::mem::take(&mut w.rec.entries);
    let stats = SimStats {
        entries: w.rec.count,
        messages: w.messages,
        messages_dropped: w.net.dropped,
        steps: w.steps,
        records_produced: w.producers.iter().map(|p| p.generated).sum(),
        records_processed: w.consumers.iter().map(|c| c.processed).sum(),
        simulated_ms: w.now_ms,
    };
    Ok(SimOutcome {
        hash: w.rec.hash(),
        stopped_early: w.rec.stopped_early,
        history,
        faults,
        final_logs: w.final_logs(),
        stats,
    })
}

fn elapsed_ms(start: tokio::time::Instant) -> u64 {
    (tokio::time::Instant::now() - start).as_millis() as u64
}

/// A node's only task: handle what is due, sleep until the next thing is due or a message arrives.
async fn node_main(
    w: Arc<Mutex<World>>,
    n: net::NodeIdx,
    start: tokio::time::Instant,
    far_ms: u64,
) {
    let notify = w.lock().expect("world lock").notify[n].clone();
    loop {
        let wake = {
            let mut g = w.lock().expect("world lock");
            if g.rec.stopped || !g.up[n] {
                return;
            }
            let now = elapsed_ms(start);
            g.now_ms = g.now_ms.max(now);
            let t = g.step(n);
            g.wake_at[n] = t;
            t
        };
        let until = start + Duration::from_millis(wake.min(far_ms));
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    FaultEnd(usize),
    FaultStart(usize),
}

async fn main_task(w: Arc<Mutex<World>>, faults: Vec<sluice_core::spec::Fault>, total_ms: u64) {
    let handle = madsim::runtime::Handle::current();
    let start = tokio::time::Instant::now();
    let far_ms = total_ms + 3_600_000;
    let (layout, safety_ms, main_notify) = {
        let g = w.lock().expect("world lock");
        (g.layout, g.spec.duration_s * 1_000, g.main_notify.clone())
    };
    // Nodes: brokers, producers, consumers (the controller is this task).
    let mut ids = Vec::new();
    for n in 0..layout.controller() {
        let w2 = w.clone();
        let node = handle
            .create_node()
            .name(layout.name(n))
            .init(move || node_main(w2.clone(), n, start, far_ms))
            .build();
        ids.push(node.id());
    }
    {
        let mut g = w.lock().expect("world lock");
        let meta = g.meta_event();
        g.record(meta);
        g.record(Event::Phase {
            phase: Phase::Safety,
        });
        g.record_leaders();
        for c in 0..layout.consumers {
            g.consumer_start(c);
        }
    }
    let mut schedule: Vec<(u64, Due)> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                ((f.at_s * 1_000.0).round() as u64).min(safety_ms),
                Due::FaultStart(i),
            )
        })
        .collect();
    let mut active: BTreeMap<usize, faults::Active> = BTreeMap::new();
    let mut next_ctrl = CONTROLLER_TICK_MS;
    let mut next_lag = LAG_SAMPLE_MS;
    let mut next_prune = PRUNE_TASKS_MS;
    let mut liveness_started = false;
    loop {
        let now = elapsed_ms(start);
        let mut ops = Vec::new();
        let next;
        {
            let mut g = w.lock().expect("world lock");
            g.now_ms = g.now_ms.max(now);
            if g.rec.stopped {
                break;
            }
            // Faults due now, in time order (heals before starts at the same instant).
            schedule.sort();
            while schedule.first().is_some_and(|s| s.0 <= now) {
                let (_, due) = schedule.remove(0);
                match due {
                    Due::FaultStart(i) => {
                        let (o, a) = g.fault_start(i as u64, &faults[i]);
                        ops.extend(o);
                        if let Some(a) = a {
                            let end = if faults[i].for_s > 0.0
                                || a.name == "broker-crash"
                                || a.name == "leader-crash"
                                || a.name == "coordinator-failover"
                            {
                                Some(a.end_ms)
                            } else {
                                None
                            };
                            if let Some(end) = end {
                                schedule.push((end.min(safety_ms.max(now)), Due::FaultEnd(i)));
                            }
                            active.insert(i, a);
                        }
                    }
                    Due::FaultEnd(i) => {
                        if let Some(a) = active.remove(&i) {
                            ops.extend(g.fault_end(&a));
                        }
                    }
                }
            }
            if !liveness_started && now >= safety_ms {
                liveness_started = true;
                for (_, a) in std::mem::take(&mut active) {
                    ops.extend(g.fault_end(&a));
                }
                schedule.retain(|s| !matches!(s.1, Due::FaultEnd(_)));
                g.net.heal_all();
                g.record(Event::Phase {
                    phase: Phase::Liveness,
                });
            }
            if now >= next_ctrl {
                g.controller_tick();
                next_ctrl = now + CONTROLLER_TICK_MS;
            }
            if now >= next_lag {
                g.sample_lag();
                next_lag = now + LAG_SAMPLE_MS;
            }
            if now >= total_ms {
                g.record(Event::Phase { phase: Phase::End });
                g.rec.stopped = true;
                break;
            }
            let mut n = next_ctrl.min(next_lag).min(next_prune).min(total_ms);
            if !liveness_started {
                n = n.min(safety_ms);
            }
            if let Some(s) = schedule.iter().map(|s| s.0).min() {
                n = n.min(s);
            }
            next = n;
        }
        for op in ops {
            match op {
                faults::NodeOp::Kill(n) => handle.kill(ids[n]),
                faults::NodeOp::Restart(n) => handle.restart(ids[n]),
            }
        }
        if now >= next_prune {
            // madsim drops finished tasks from its per-node lists only when asked for metrics.
            let _ = handle.metrics().num_tasks();
            next_prune = now + PRUNE_TASKS_MS;
        }
        let until = start + Duration::from_millis(next.max(now + 1));
        tokio::select! {
            biased;
            _ = main_notify.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}
