//! The simulated world: a seeded Kafka cluster on madsim (brokers with partition replicas, leaders
//! and ISR, acks, a group coordinator, producers with load shapes, consumers running the core
//! pipeline, faults) and a thin driver. One seed decides everything.
//!
//! Codemap:
//! - [`world`]: all state behind one lock, the message types, the history recorder.
//! - [`net`], [`disk`]: the simulated network (latency, the consumers' client latency, loss, cuts
//!   incl. one-way) and disks (append latency, slow-disk factor, what a crash loses) as plain data.
//! - [`log`]: a replica's log as runs `(offset, producer, seq, count, epoch)`.
//! - [`broker`]: replication, ISR, high watermark, acks, elections (clean and unclean), truncation,
//!   the controller, the coordinator's host.
//! - [`producer`]: load shapes, keys, partitioning, batching, retries, idempotence.
//! - [`consumer`]: the driver of `group::Member` and `sluice_core::pipeline::Pipeline`.
//! - [`faults`]: schedules and swarm mode.
//! - [`group`]: the consumer-group protocol state machines.
//!
//! madsim provides the runtime, simulated time and the seed. One task schedules the world: every
//! broker, producer and consumer is a node with the time it next needs to run (`World::wake_at`,
//! lowered when a message is sent to it or it is poked); at each simulated millisecond that has
//! something due, the task runs the controller's and the fault schedule's work, then the due nodes'
//! steps one at a time in an order drawn from the seed, then sleeps to the next due millisecond.
//! Idle nodes cost nothing, and an instant costs one timer however many nodes it wakes. A crash drops
//! the node's volatile state and marks it down (it is never stepped and receives nothing); a restart
//! marks it up and due at once. Nothing here reads the wall clock or OS randomness; every random
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
    /// Consumer connections to a broker refused (it was down) or reset (it crashed); each starts
    /// a reconnect backoff.
    pub consumer_disconnects: u64,
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
        consumer_disconnects: w.consumer_disconnects,
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

/// Node steps run at one simulated millisecond at most; what is still due after that waits for the
/// next millisecond (a bound against nodes poking each other forever at one instant).
pub const STEPS_PER_MS_MAX: u32 = 100_000;

/// Runs every node step due at `now`, one at a time, the next one drawn at random (from the seed)
/// among the nodes due: the interleaving of simultaneous events is the seed's choice, as it was
/// when each node was its own madsim task. A step may make other nodes due at once (a poke).
fn run_due_nodes(w: &mut World, now: u64, order: &mut dist::Stream, due: &mut Vec<net::NodeIdx>) {
    let nodes = w.layout.controller();
    // `due` is kept sorted by node index: the nodes that are up with `wake_at <= now`.
    due.clear();
    due.extend((0..nodes).filter(|&n| w.up[n] && w.wake_at[n] <= now));
    w.due_now.clear();
    for _ in 0..STEPS_PER_MS_MAX {
        let i = match due.len() {
            0 => return,
            1 => 0,
            k => order.below(k as u64) as usize,
        };
        let n = due.remove(i);
        let t = w.step(n);
        w.wake_at[n] = t;
        if w.rec.stopped {
            return;
        }
        // Nodes the step made due now.
        for k in 0..w.due_now.len() {
            let m = w.due_now[k];
            if m < nodes && w.up[m] && w.wake_at[m] <= now {
                if let Err(pos) = due.binary_search(&m) {
                    due.insert(pos, m);
                }
            }
        }
        w.due_now.clear();
    }
    for n in 0..nodes {
        if w.up[n] && w.wake_at[n] <= now {
            w.wake_at[n] = now + 1;
        }
    }
}

/// When the next node step is due (`u64::MAX`: none until something is sent).
fn next_node_wake(w: &World) -> u64 {
    (0..w.layout.controller())
        .filter(|&n| w.up[n])
        .map(|n| w.wake_at[n])
        .min()
        .unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    FaultEnd(usize),
    FaultStart(usize),
}

async fn main_task(w: Arc<Mutex<World>>, faults: Vec<sluice_core::spec::Fault>, total_ms: u64) {
    let start = tokio::time::Instant::now();
    let (layout, safety_ms, seed) = {
        let g = w.lock().expect("world lock");
        (g.layout, g.spec.duration_s * 1_000, g.seed)
    };
    let mut order = dist::Stream::new(seed, "schedule");
    let mut due = Vec::with_capacity(layout.nodes());
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
    let mut liveness_started = false;
    loop {
        let now = elapsed_ms(start);
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
                        if let Some(a) = g.fault_start(i as u64, &faults[i]) {
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
                            g.fault_end(&a);
                        }
                    }
                }
            }
            if !liveness_started && now >= safety_ms {
                liveness_started = true;
                for (_, a) in std::mem::take(&mut active) {
                    g.fault_end(&a);
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
            run_due_nodes(&mut g, now, &mut order, &mut due);
            if g.rec.stopped {
                break;
            }
            let mut n = next_ctrl.min(next_lag).min(total_ms).min(next_node_wake(&g));
            if !liveness_started {
                n = n.min(safety_ms);
            }
            if let Some(s) = schedule.iter().map(|s| s.0).min() {
                n = n.min(s);
            }
            next = n;
        }
        tokio::time::sleep_until(start + Duration::from_millis(next.max(now + 1))).await;
    }
}
