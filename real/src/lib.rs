//! Real mode: the core pipeline against a live Kafka-protocol cluster through rdkafka.
//!
//! [`run_cli`] plays one scenario: it creates the run's own topics and group (named
//! `sluice-<scenario>-<runid>-…`), starts a load generator ([`load`]) and one thread per consumer
//! member ([`member`]) that drives the same [`sluice_core::pipeline::Pipeline`] the simulator
//! drives, injects the scenario's faults that a real cluster allows, records the history (same
//! JSON Lines schema as the simulator, `t_us` = wall time since the run started), and deletes what
//! it created on the way out — also on Ctrl-C.
//!
//! Real mode uses the real tokio crate (`real_tokio`) for orchestration, timers and the Ctrl-C
//! signal; the members and the load generator are blocking rdkafka loops on their own threads.

pub mod bench;
pub mod fidelity;
pub mod kafka;
pub mod load;
pub mod member;
pub mod recorder;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};

use sluice_core::bugs::Bugs;
use sluice_core::history::{self, Bounds, Edge, Entry, Event, Phase, TopicMeta};
use sluice_core::spec::{FaultKind, Faults, Scenario};

use kafka::{Conn, Names};
use member::{Control, Exit, MemberPlan};
use recorder::{Clock, Recorder};

/// What the CLI hands real mode (no clap types here).
#[derive(Clone, Debug)]
pub struct RealArgs {
    pub scenario: Scenario,
    /// `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// librdkafka `key=value` overrides (`-X`), applied to every client after the scenario's.
    pub overrides: Vec<String>,
    /// Wall seconds per scenario second (1.0 = real time; 0.5 plays the scenario twice as fast).
    pub time_scale: f64,
    /// Where `history.jsonl` is written.
    pub out_dir: PathBuf,
    pub seed: u64,
    /// The CLI will also run the simulator and compare (see [`fidelity::compare`]).
    pub compare_sim: bool,
    /// Planted bugs to switch on in the pipeline.
    pub bugs: Bugs,
    /// How to crash and restart the broker for broker faults: `scripts/broker.sh` and whether it
    /// manages the durable broker. `None`: broker faults are skipped.
    pub broker_control: Option<BrokerControl>,
}

#[derive(Clone, Debug)]
pub struct BrokerControl {
    pub script: PathBuf,
    pub durable: bool,
}

impl RealArgs {
    pub fn new(scenario: Scenario, brokers: impl Into<String>, out_dir: impl Into<PathBuf>) -> Self {
        RealArgs {
            scenario,
            brokers: brokers.into(),
            overrides: Vec::new(),
            time_scale: 1.0,
            out_dir: out_dir.into(),
            seed: 1,
            compare_sim: false,
            bugs: Bugs::NONE,
            broker_control: None,
        }
    }
}

/// What a real run produced.
#[derive(Clone, Debug)]
pub struct RealOutcome {
    pub history: Vec<Entry>,
    pub history_path: PathBuf,
    /// The Kafka objects the run used (and deleted).
    pub names: Names,
    /// Scenario faults real mode could not inject, with the reason.
    pub skipped_faults: Vec<String>,
    /// Objects that could not be deleted at the end.
    pub cleanup_problems: Vec<String>,
    pub load: load::LoadSummary,
    /// Members whose thread failed (not a fault the scenario injected).
    pub member_failures: Vec<String>,
    pub compare_sim: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error("scenario is invalid: {0}")]
    Spec(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("cluster {brokers} unreachable: no metadata within {timeout_ms} ms ({detail})")]
    Unreachable { brokers: String, timeout_ms: u64, detail: String },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("interrupted (Ctrl-C); the partial history is at {history_path}; cleanup problems: {cleanup:?}")]
    Interrupted { history_path: PathBuf, cleanup: Vec<String> },
}

impl RealError {
    /// The process exit code for this error, as documented for the CLI: 130 for Ctrl-C (the
    /// shell's convention for SIGINT), 2 for bad input or an unreachable cluster, 1 for a Kafka
    /// failure during the run.
    pub fn exit_code(&self) -> u8 {
        match self {
            RealError::Interrupted { .. } => 130,
            RealError::Spec(_) | RealError::Config(_) | RealError::Unreachable { .. } | RealError::Io(_) => 2,
            RealError::Kafka(_) => 1,
        }
    }
}

/// Time-scale bounds: below this processing sleeps lose their meaning; above it runs take days.
pub const TIME_SCALE_MIN: f64 = 0.01;
pub const TIME_SCALE_MAX: f64 = 100.0;
/// Period of the lag sampler (committed offsets + broker watermarks).
pub const LAG_SAMPLE_MS: u64 = 1_000;
/// How long joining a member thread at the end may take before the run reports it.
pub const MEMBER_JOIN_TIMEOUT_MS: u64 = 60_000;

/// How long the final reads may take after the producers stop.
pub const DRAIN_MAX_MS: u64 = 20_000;

/// Acknowledged records beyond the highest offset any member fetched, summed over partitions.
fn unread_acked(h: &[Entry]) -> u64 {
    let mut end: BTreeMap<&str, u64> = BTreeMap::new();
    let mut read: BTreeMap<&str, u64> = BTreeMap::new();
    for e in h {
        match &e.ev {
            Event::ProduceAck { tp, offset, count, .. } => {
                let v = end.entry(&**tp).or_insert(0);
                *v = (*v).max(offset + *count as u64);
            }
            Event::Fetch { tp, runs, .. } => {
                if let Some(r) = runs.last() {
                    let v = read.entry(&**tp).or_insert(0);
                    *v = (*v).max(r.offset + r.count as u64);
                }
            }
            _ => {}
        }
    }
    end.iter().map(|(tp, e)| e.saturating_sub(read.get(tp).copied().unwrap_or(0))).sum()
}

/// The bounds a run declares (from the scenario), as the checkers read them.
pub fn bounds_of(sc: &Scenario) -> Bounds {
    sc.bounds()
}

/// One scheduled action of the orchestrator, in scenario seconds.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Inject { at_s: f64, fault: String, target: String, what: Inject },
    Heal { at_s: f64, fault: String, target: String, what: Heal },
}

#[derive(Clone, Debug, PartialEq)]
enum Inject {
    CrashConsumer(u32),
    Stall(u32, f64),
    Slow(u32, f64),
    CrashBroker,
}

#[derive(Clone, Debug, PartialEq)]
enum Heal {
    RestartConsumer(u32),
    Unslow(u32),
    RestartBroker,
    /// Nothing to do but say it healed.
    Mark,
}

impl Step {
    fn at_s(&self) -> f64 {
        match self {
            Step::Inject { at_s, .. } | Step::Heal { at_s, .. } => *at_s,
        }
    }
}

/// Maps the scenario's faults onto what real mode can do; the rest are returned as skipped.
fn plan_faults(sc: &Scenario, broker_control: bool) -> (Vec<Step>, Vec<String>) {
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    let fs = match &sc.faults {
        Faults::Swarm(_) => {
            skipped.push("swarm: seed-chosen fault schedules are simulator-only".to_string());
            return (steps, skipped);
        }
        Faults::Schedule(fs) => fs,
    };
    for f in fs {
        let name = f.kind.name().to_string();
        let end = f.at_s + f.for_s;
        match &f.kind {
            FaultKind::ConsumerCrash { consumer } => {
                let target = format!("c{consumer}");
                steps.push(Step::Inject { at_s: f.at_s, fault: name.clone(), target: target.clone(), what: Inject::CrashConsumer(*consumer) });
                if f.for_s > 0.0 {
                    steps.push(Step::Heal { at_s: end, fault: name, target, what: Heal::RestartConsumer(*consumer) });
                }
            }
            FaultKind::ConsumerStall { consumer } => {
                let target = format!("c{consumer}");
                steps.push(Step::Inject { at_s: f.at_s, fault: name.clone(), target: target.clone(), what: Inject::Stall(*consumer, f.for_s) });
                steps.push(Step::Heal { at_s: end, fault: name, target, what: Heal::Mark });
            }
            FaultKind::SlowConsumer { consumer, factor } => {
                let target = format!("c{consumer}");
                steps.push(Step::Inject { at_s: f.at_s, fault: name.clone(), target: target.clone(), what: Inject::Slow(*consumer, *factor) });
                steps.push(Step::Heal { at_s: end, fault: name, target, what: Heal::Unslow(*consumer) });
            }
            FaultKind::BrokerCrash { broker } if broker_control && *broker == 0 => {
                steps.push(Step::Inject { at_s: f.at_s, fault: name.clone(), target: "b0".into(), what: Inject::CrashBroker });
                steps.push(Step::Heal { at_s: end, fault: name, target: "b0".into(), what: Heal::RestartBroker });
            }
            FaultKind::LeaderCrash { topic, partition } if broker_control => {
                // One broker leads everything.
                let target = format!("leader of {topic}/{partition} (b0)");
                steps.push(Step::Inject { at_s: f.at_s, fault: name.clone(), target: target.clone(), what: Inject::CrashBroker });
                steps.push(Step::Heal { at_s: end, fault: name, target, what: Heal::RestartBroker });
            }
            FaultKind::BrokerCrash { broker } if broker_control => {
                skipped.push(format!("{name} of broker {broker} at {} s: the managed cluster has one broker (b0)", f.at_s))
            }
            FaultKind::BrokerCrash { .. } | FaultKind::LeaderCrash { .. } => {
                skipped.push(format!("{name} at {} s: the broker is not managed by this run (no broker control)", f.at_s))
            }
            FaultKind::Partition { .. } | FaultKind::Latency { .. } => {
                skipped.push(format!("{name} at {} s: network faults need control of the network (simulator only)", f.at_s))
            }
            FaultKind::SlowDisk { .. } => skipped.push(format!("{name} at {} s: disk speed is not controllable here", f.at_s)),
            FaultKind::CoordinatorFailover => {
                skipped.push(format!("{name} at {} s: a one-broker cluster has no other coordinator", f.at_s))
            }
            FaultKind::CommitReplyLoss { .. } => {
                skipped.push(format!("{name} at {} s: dropping commit replies needs control of the network", f.at_s))
            }
        }
    }
    steps.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
    (steps, skipped)
}

fn run_id(seed: u64) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut r = sluice_core::SplitMix64(nanos ^ seed.rotate_left(17) ^ std::process::id() as u64);
    format!("{:08x}", sluice_core::Rng::next_u64(&mut r) as u32)
}

/// Starts one member thread.
fn spawn_member(plan: MemberPlan, rec: Recorder, control: Arc<Control>) -> std::thread::JoinHandle<Exit> {
    let name = format!("sluice-c{}", plan.index);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run_member_guarded(plan, rec, control))
        .expect("spawning a member thread")
}

fn run_member_guarded(plan: MemberPlan, rec: Recorder, control: Arc<Control>) -> Exit {
    let idx = plan.index;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| member::run_member(plan, rec.clone(), control))) {
        Ok(e) => e,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            rec.note(format!("c{idx}: member thread panicked: {msg}"));
            Exit::Failed(format!("c{idx} panicked: {msg}"))
        }
    }
}

/// Samples committed offsets and broker watermarks of every partition into `Lag` entries.
fn lag_sampler(conn: Conn, names: Names, sc: Arc<Scenario>, rec: Recorder, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = match conn.base().set("group.id", &names.group).set("enable.auto.commit", "false").create() {
        Ok(c) => c,
        Err(e) => {
            rec.note(format!("lag sampler: {e}"));
            return;
        }
    };
    let tps = sc.subscribed_partitions();
    let timeout = Duration::from_millis(member::KAFKA_CALL_TIMEOUT_MS);
    let mut last = std::time::Instant::now() - Duration::from_millis(LAG_SAMPLE_MS);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping || last.elapsed() >= Duration::from_millis(LAG_SAMPLE_MS) {
            last = std::time::Instant::now();
            let mut l = TopicPartitionList::new();
            for tp in &tps {
                l.add_partition(&names.topics[tp.topic as usize], tp.partition as i32);
            }
            let committed: BTreeMap<(u16, u32), u64> = match consumer.committed_offsets(l, timeout) {
                Ok(c) => {
                    let m = tps
                        .iter()
                        .map(|tp| {
                            let off = c
                                .find_partition(&names.topics[tp.topic as usize], tp.partition as i32)
                                .map(|e| match e.offset() {
                                    KOffset::Offset(o) if o >= 0 => o as u64,
                                    _ => 0,
                                })
                                .unwrap_or(0);
                            ((tp.topic, tp.partition), off)
                        })
                        .collect();
                    drop(c);
                    m
                }
                Err(e) => {
                    rec.note(format!("lag sampler: committed offsets: {e}"));
                    BTreeMap::new()
                }
            };
            if !committed.is_empty() {
                let mut evs = Vec::with_capacity(tps.len());
                for tp in &tps {
                    if let Ok((_, high)) = consumer.fetch_watermarks(&names.topics[tp.topic as usize], tp.partition as i32, timeout) {
                        evs.push(Event::Lag { tp: sc.tp_name(*tp), hw: high.max(0) as u64, committed: committed[&(tp.topic, tp.partition)] });
                    }
                }
                rec.record_all(evs);
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(consumer);
}

/// Ctrl-C (SIGINT), listened for from the moment it is created (`ctrl_c()` would register only
/// when first polled).
struct Interrupt {
    #[cfg(unix)]
    sigint: real_tokio::signal::unix::Signal,
}

impl Interrupt {
    fn listen() -> Result<Self, RealError> {
        #[cfg(unix)]
        {
            let sigint = real_tokio::signal::unix::signal(real_tokio::signal::unix::SignalKind::interrupt())?;
            Ok(Interrupt { sigint })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupt {})
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            self.sigint.recv().await;
        }
        #[cfg(not(unix))]
        {
            let _ = real_tokio::signal::ctrl_c().await;
        }
    }
}

fn broker_cmd(bc: &BrokerControl, what: &str) -> Result<(), String> {
    let mut cmd = std::process::Command::new(&bc.script);
    cmd.arg(what);
    if bc.durable {
        cmd.arg("--durable");
    }
    let out = cmd.output().map_err(|e| format!("{} {what}: {e}", bc.script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{} {what}: {}", bc.script.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Plays one scenario against the cluster at `args.brokers`.
pub fn run_cli(args: RealArgs) -> Result<RealOutcome, RealError> {
    let sc = &args.scenario;
    sc.validate().map_err(|es| RealError::Spec(es.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    if !(args.time_scale.is_finite() && (TIME_SCALE_MIN..=TIME_SCALE_MAX).contains(&args.time_scale)) {
        return Err(RealError::Config(format!("time scale {} is outside {TIME_SCALE_MIN}..={TIME_SCALE_MAX}", args.time_scale)));
    }
    if args.brokers.trim().is_empty() {
        return Err(RealError::Config("no brokers given (HOST:PORT)".into()));
    }
    let conn = Conn { brokers: args.brokers.clone(), overrides: kafka::parse_overrides(&args.overrides)? };
    let broker_count = kafka::check_reachable(&conn)?;
    std::fs::create_dir_all(&args.out_dir)?;
    let rt = real_tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sluice-real")
        .build()?;
    rt.block_on(run_async(args, conn, broker_count))
}

async fn run_async(args: RealArgs, conn: Conn, broker_count: usize) -> Result<RealOutcome, RealError> {
    // Listen for Ctrl-C before anything is created on the cluster, so that an interrupt at any
    // moment after that still deletes what the run created.
    let mut interrupt = Interrupt::listen()?;
    let sc = Arc::new(args.scenario.clone());
    let topic_names: Vec<String> = sc.topics.iter().map(|t| t.name.clone()).collect();
    let names = Names::new(&sc.name, &run_id(args.seed), &topic_names);
    let replication = (sc.cluster.replication_factor as usize).min(broker_count.max(1)) as i32;
    let mut to_create: Vec<(String, u32)> = sc.topics.iter().zip(&names.topics).map(|(t, n)| (n.clone(), t.partitions)).collect();
    to_create.push((names.dlq.clone(), 1));
    kafka::create_topics(&conn, &to_create, replication).await?;
    tracing::info!(prefix = %names.prefix, overrides = ?conn.overrides_redacted(), "real run starting");

    let rec = Recorder::new(Clock::start());
    let mut settings = BTreeMap::new();
    let k = &sc.consumers;
    settings.insert("assignor".into(), member::assignor_name(k.assignor).to_string());
    settings.insert("protocol".into(), format!("{:?}", k.protocol).to_lowercase());
    // The checkers exempt aligned checkpoints from commit-on-revoke: both backends must say.
    settings.insert("checkpoint".into(), k.checkpoint.name().to_string());
    // Non-blocking retries overtake parked records: the checkers must know (both backends say).
    for (key, value) in k.retry.history_settings() {
        settings.insert(key.into(), value);
    }
    settings.insert("time_scale".into(), args.time_scale.to_string());
    settings.insert("brokers".into(), args.brokers.clone());
    settings.insert("broker_count".into(), broker_count.to_string());
    settings.insert("replication_factor".into(), replication.to_string());
    settings.insert("kafka_prefix".into(), names.prefix.clone());
    settings.insert("generation".into(), "member-local count of assignments (librdkafka hides the group generation)".into());
    settings.insert("librdkafka".into(), rdkafka::util::get_rdkafka_version().1);
    if !conn.overrides.is_empty() {
        settings.insert("overrides".into(), conn.overrides_redacted().join(","));
    }
    if !args.bugs.is_empty() {
        settings.insert("bugs".into(), args.bugs.iter().map(|b| b.name()).collect::<Vec<_>>().join(","));
    }
    rec.record(Event::Meta(Box::new(history::Meta {
        schema: history::SCHEMA_VERSION,
        source: "real".into(),
        scenario: sc.name.clone(),
        seed: args.seed,
        topics: sc.topics.iter().map(|t| TopicMeta { name: t.name.clone(), partitions: t.partitions }).collect(),
        producers: sc.producers_meta(),
        consumers: k.count,
        strategy: k.strategy.name().into(),
        bounds: bounds_of(&sc),
        expect: sc.expect.anomalies.clone(),
        settings,
    })));
    rec.record(Event::Phase { phase: Phase::Safety });
    let (steps, mut skipped) = plan_faults(&sc, args.broker_control.is_some());
    if sc.cluster.brokers > 1 || sc.cluster.replication_factor as usize > broker_count {
        skipped.push(format!(
            "cluster shape: the scenario asks for {} brokers with replication factor {}; the live cluster has {broker_count} broker(s), topics use factor {replication}",
            sc.cluster.brokers, sc.cluster.replication_factor
        ));
    }
    if !k.rate_limits.is_empty() && k.limiter_state == sluice_core::spec::LimiterState::Persisted {
        skipped.push("limiter persistence (R3): limiter snapshots are not written to a compacted topic in real mode".into());
    }
    for s in &skipped {
        rec.record(Event::Note { text: format!("skipped: {s}") });
    }

    let ms = |s: f64| Duration::from_secs_f64((s * args.time_scale).max(0.0));
    let mk_plan = |i: u32| MemberPlan {
        index: i,
        scenario: sc.clone(),
        names: names.clone(),
        conn: conn.clone(),
        bugs: args.bugs,
        time_scale: args.time_scale,
        seed: args.seed,
        consumer_overrides: Vec::new(),
    };
    // Consumers first, so that the first records find a group forming.
    let controls: Vec<Arc<Control>> = (0..k.count).map(|_| Control::new()).collect();
    let mut handles: Vec<Option<std::thread::JoinHandle<Exit>>> =
        (0..k.count).map(|i| Some(spawn_member(mk_plan(i), rec.clone(), controls[i as usize].clone()))).collect();
    let mut controls = controls;
    let stop_load = Arc::new(AtomicBool::new(false));
    let load_handle = {
        let plan = load::LoadPlan { scenario: (*sc).clone(), kafka_topics: names.topics.clone(), time_scale: args.time_scale, seed: args.seed };
        let (conn, rec, stop) = (conn.clone(), rec.clone(), stop_load.clone());
        std::thread::Builder::new().name("sluice-load".into()).spawn(move || load::run_load(&plan, &conn, &rec, &stop))?
    };
    let stop_lag = Arc::new(AtomicBool::new(false));
    let lag_handle = {
        let (conn, names, sc, rec, stop) = (conn.clone(), names.clone(), sc.clone(), rec.clone(), stop_lag.clone());
        std::thread::Builder::new().name("sluice-lag".into()).spawn(move || lag_sampler(conn, names, sc, rec, stop))?
    };

    let start = real_tokio::time::Instant::now();
    let mut member_failures = Vec::new();
    let schedule = async {
        for step in &steps {
            real_tokio::time::sleep_until(start + ms(step.at_s())).await;
            match step {
                Step::Inject { fault, target, what, .. } => {
                    rec.record(Event::Fault { fault: fault.clone(), target: target.clone(), edge: Edge::Start });
                    match what {
                        Inject::CrashConsumer(c) => {
                            let i = *c as usize;
                            controls[i].crash.store(true, Ordering::Relaxed);
                            if let Some(h) = handles[i].take() {
                                let _ = real_tokio::task::spawn_blocking(move || h.join()).await;
                            }
                        }
                        Inject::Stall(c, for_s) => {
                            let until = rec.clock().now_us() + (for_s * args.time_scale * 1e6) as u64;
                            controls[*c as usize].stall_until_us.store(until, Ordering::Relaxed);
                        }
                        Inject::Slow(c, factor) => {
                            controls[*c as usize].slow_factor_milli.store((factor * 1000.0).round().max(1.0) as u64, Ordering::Relaxed)
                        }
                        Inject::CrashBroker => {
                            if let Some(bc) = &args.broker_control {
                                let bc = bc.clone();
                                if let Ok(Err(e)) = real_tokio::task::spawn_blocking(move || broker_cmd(&bc, "crash")).await {
                                    rec.note(format!("broker crash failed: {e}"));
                                }
                            }
                        }
                    }
                }
                Step::Heal { fault, target, what, .. } => {
                    match what {
                        Heal::RestartConsumer(c) => {
                            let i = *c as usize;
                            controls[i] = Control::new();
                            handles[i] = Some(spawn_member(mk_plan(*c), rec.clone(), controls[i].clone()));
                        }
                        Heal::Unslow(c) => controls[*c as usize].slow_factor_milli.store(1000, Ordering::Relaxed),
                        Heal::RestartBroker => {
                            if let Some(bc) = &args.broker_control {
                                let bc = bc.clone();
                                if let Ok(Err(e)) = real_tokio::task::spawn_blocking(move || broker_cmd(&bc, "start")).await {
                                    rec.note(format!("broker restart failed: {e}"));
                                }
                            }
                        }
                        Heal::Mark => {}
                    }
                    rec.record(Event::Fault { fault: fault.clone(), target: target.clone(), edge: Edge::End });
                }
            }
        }
        real_tokio::time::sleep_until(start + ms(sc.duration_s as f64)).await;
        rec.record(Event::Phase { phase: Phase::Liveness });
        real_tokio::time::sleep_until(start + ms((sc.duration_s + sc.liveness_s) as f64)).await;
    };
    let interrupted = real_tokio::select! {
        biased;
        _ = interrupt.recv() => true,
        _ = schedule => false,
    };
    if interrupted {
        rec.note("interrupted by Ctrl-C: stopping");
    }

    // Wind down: load first (flush), then members (clean leave: commit on revoke), then lag. The
    // checkers judge recovery at this line, not after the members have left.
    rec.record(Event::Phase { phase: Phase::Shutdown });
    stop_load.store(true, Ordering::Relaxed);
    let load_summary = match real_tokio::task::spawn_blocking(move || load_handle.join()).await {
        Ok(Ok(Ok(s))) => s,
        Ok(Ok(Err(e))) => {
            member_failures.push(format!("load generator: {e}"));
            load::LoadSummary::default()
        }
        _ => {
            member_failures.push("load generator thread panicked".into());
            load::LoadSummary::default()
        }
    };
    // Final reads (as in Jepsen's Kafka workload): with the producers stopped, give the members
    // time to fetch everything acknowledged before they leave, so that a record left unread means
    // something and not just "the run ended".
    if !interrupted {
        let deadline = real_tokio::time::Instant::now() + Duration::from_millis(DRAIN_MAX_MS);
        loop {
            let unread = unread_acked(&rec.snapshot());
            if unread == 0 {
                break;
            }
            if real_tokio::time::Instant::now() >= deadline {
                rec.note(format!("final reads: {unread} acknowledged records still unread after {DRAIN_MAX_MS} ms"));
                break;
            }
            real_tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for c in &controls {
        c.stop.store(true, Ordering::Relaxed);
    }
    for (i, h) in handles.iter_mut().enumerate() {
        if let Some(h) = h.take() {
            let joined = real_tokio::time::timeout(Duration::from_millis(MEMBER_JOIN_TIMEOUT_MS), real_tokio::task::spawn_blocking(move || h.join())).await;
            match joined {
                Ok(Ok(Ok(Exit::Failed(e)))) => member_failures.push(e),
                Ok(Ok(Ok(_))) => {}
                Ok(_) => member_failures.push(format!("c{i}: thread panicked")),
                Err(_) => member_failures.push(format!("c{i}: did not stop within {MEMBER_JOIN_TIMEOUT_MS} ms")),
            }
        }
    }
    stop_lag.store(true, Ordering::Relaxed);
    let _ = real_tokio::task::spawn_blocking(move || lag_handle.join()).await;
    if rec.overflow() > 0 {
        member_failures.push(format!("history full: {} entries dropped", rec.overflow()));
    }
    rec.record(Event::Phase { phase: Phase::End });

    let cleanup = kafka::delete_run_objects(&conn, &names).await;
    let history = rec.snapshot();
    let history_path = args.out_dir.join("history.jsonl");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&history_path)?;
        sluice_core::jsonl::write_lines(&history, |chunk| f.write_all(chunk))?;
    }
    if interrupted {
        return Err(RealError::Interrupted { history_path, cleanup });
    }
    Ok(RealOutcome {
        history,
        history_path,
        names,
        skipped_faults: skipped,
        cleanup_problems: cleanup,
        load: load_summary,
        member_failures,
        compare_sim: args.compare_sim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::spec::Fault;

    fn scenario(faults: &str) -> Scenario {
        let text = format!(
            r#"
name = "t"
duration_s = 10
[[topics]]
name = "orders"
partitions = 2
[[producers]]
topic = "orders"
rate_per_s = 10.0
[consumers]
count = 2
topics = ["orders"]
{faults}
"#
        );
        toml::from_str(&text).expect("test scenario parses")
    }

    #[test]
    fn faults_map_to_steps_or_are_listed_as_skipped() {
        let sc = scenario(
            r#"
[[faults]]
at_s = 2.0
for_s = 3.0
kind = "consumer-crash"
consumer = 1
[[faults]]
at_s = 1.0
for_s = 2.0
kind = "partition"
from = ["b0"]
to = ["c0"]
[[faults]]
at_s = 4.0
for_s = 1.0
kind = "broker-crash"
broker = 0
"#,
        );
        let (steps, skipped) = plan_faults(&sc, false);
        assert_eq!(steps.len(), 2);
        assert!(matches!(steps[0], Step::Inject { what: Inject::CrashConsumer(1), .. }));
        assert!(matches!(steps[1], Step::Heal { what: Heal::RestartConsumer(1), .. }));
        assert_eq!(steps[1].at_s(), 5.0);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].starts_with("partition"));
        assert!(skipped[1].starts_with("broker-crash"));
        let (steps, skipped) = plan_faults(&sc, true);
        assert_eq!(steps.len(), 4);
        assert_eq!(skipped.len(), 1);
        assert!(steps.windows(2).all(|w| w[0].at_s() <= w[1].at_s()));
        let _unused: Option<Fault> = None;
    }

    #[test]
    fn unread_acked_counts_what_no_fetch_reached() {
        use sluice_core::history::Run;
        let e = |ev| Entry { t_us: 0, ev };
        let ack = |tp: &str, offset, count| e(Event::ProduceAck { producer: 0, tp: tp.into(), seq: offset, count, offset });
        let fetch = |tp: &str, offset, count| e(Event::Fetch { consumer: 0, tp: tp.into(), runs: vec![Run { offset, producer: 0, seq: offset, count }], bytes: 0, hw: 0 });
        let cases: Vec<(Vec<Entry>, u64)> = vec![
            (vec![], 0),
            (vec![ack("a/0", 0, 10)], 10),
            (vec![ack("a/0", 0, 10), fetch("a/0", 0, 4)], 6),
            (vec![ack("a/0", 0, 10), fetch("a/0", 0, 10), ack("a/1", 0, 3)], 3),
            (vec![ack("a/0", 0, 10), fetch("a/0", 8, 2)], 0),
        ];
        for (h, want) in cases {
            assert_eq!(unread_acked(&h), want, "{h:?}");
        }
    }

    #[test]
    fn bounds_follow_the_scenario() {
        let sc = scenario("");
        let b = bounds_of(&sc);
        assert_eq!(b.buffer_records_max, 2_000);
        // Credit strategy by default: 2 partitions x 2 exclusive + the rest of the buffer floating.
        assert_eq!(b.credits_max, 2_000);
        assert_eq!(b.session_timeout_ms, 45_000);
        assert!(b.rate_tiers.is_empty());
    }

    #[test]
    fn bad_arguments_are_refused_before_any_connection() {
        let sc = scenario("");
        let mut a = RealArgs::new(sc.clone(), "127.0.0.1:1", std::env::temp_dir());
        a.time_scale = 0.0;
        assert!(matches!(run_cli(a), Err(RealError::Config(_))));
        let mut a = RealArgs::new(sc.clone(), "127.0.0.1:1", std::env::temp_dir());
        a.overrides = vec!["sasl.password".into()];
        assert!(matches!(run_cli(a), Err(RealError::Config(_))));
        let mut bad = sc;
        bad.consumers.count = 0;
        assert!(matches!(run_cli(RealArgs::new(bad, "127.0.0.1:1", std::env::temp_dir())), Err(RealError::Spec(_))));
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let cases = [
            (RealError::Interrupted { history_path: PathBuf::from("h"), cleanup: vec![] }, 130),
            (RealError::Spec("s".into()), 2),
            (RealError::Config("c".into()), 2),
            (RealError::Unreachable { brokers: "b".into(), timeout_ms: 1, detail: "d".into() }, 2),
            (RealError::Io(std::io::Error::other("io")), 2),
            (RealError::Kafka("k".into()), 1),
        ];
        for (e, want) in cases {
            assert_eq!(e.exit_code(), want, "{e}");
        }
    }

    #[test]
    fn an_unreachable_cluster_is_a_clear_error_within_the_bound() {
        let t0 = std::time::Instant::now();
        // Nothing listens on port 1.
        let r = run_cli(RealArgs::new(scenario(""), "127.0.0.1:1", std::env::temp_dir()));
        let took = t0.elapsed();
        match r {
            Err(RealError::Unreachable { timeout_ms, .. }) => assert_eq!(timeout_ms, kafka::METADATA_TIMEOUT_MS),
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert!(took < Duration::from_millis(kafka::METADATA_TIMEOUT_MS + 5_000), "took {took:?}");
    }
}
