//! One consumer group member: an rdkafka `BaseConsumer` driven by the core [`Pipeline`], on its
//! own OS thread.
//!
//! The thread is a single event loop. Workers are deadlines, not threads: processing is a real
//! wait (the scenario's processing-time draw, scaled), and the loop sleeps in `poll()` until the
//! next deadline, the pipeline's next timer or a message. The rebalance callback runs inside
//! `poll()` on the same thread and drives the same pipeline: on revoke it finishes in-flight work
//! and commits synchronously before giving the partitions up (K1); on assign it resolves the
//! committed offsets and assigns with the positions the pipeline chose (`Seek`).
//!
//! Between librdkafka and the pipeline sits a staging area (what `poll()` returned that the
//! pipeline has not fetched yet), bounded per partition by [`STAGE_RECORDS_MAX`] with a
//! librdkafka pause of that partition. The pipeline's own buffer bound is what the checkers judge.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use sluice_core::bugs::Bugs;
use sluice_core::history::{Edge, Event, MemberEvent, Run};
use sluice_core::pipeline::{Action, CheckpointEdge, CommitOutcome, Input, Pipeline, PipelineConfig};
use sluice_core::spec::{AssignorKind, OffsetReset, ProcessingTime, Protocol, Scenario};
use sluice_core::{MemberId, Offset, Rng, SplitMix64, TimeUs, Tp};

use crate::kafka::{Conn, Names};
use crate::recorder::Recorder;

/// Records one partition may hold in the staging area before librdkafka is told to pause it.
pub const STAGE_RECORDS_MAX: usize = 4_096;
/// The longest single `poll()` wait, so that control flags are seen promptly.
pub const POLL_WAIT_MAX_MS: u64 = 50;
/// Messages taken from librdkafka per loop turn.
pub const POLL_BATCH_MAX: usize = 2_048;
/// Pipeline steps one loop turn may take before librdkafka is polled again (each step is short:
/// microseconds; the bound keeps polls frequent against `max.poll.interval.ms`).
pub const STEP_ROUNDS_MAX: u32 = 256;
/// How long a revocation may wait for in-flight work before giving up on it.
pub const REVOKE_WAIT_MAX_MS: u64 = 30_000;
/// Timeout of synchronous Kafka calls made from the member thread (commit, committed offsets).
pub const KAFKA_CALL_TIMEOUT_MS: u64 = 10_000;
/// How often the watchdog compares the last poll with `max.poll.interval.ms`.
pub const WATCHDOG_PERIOD_MS: u64 = 20;
/// Attempts to write one record to the dead-letter topic.
pub const DLQ_ATTEMPTS_MAX: u32 = 10;

/// Shared switches the run's orchestrator flips to inject faults into one member.
#[derive(Debug, Default)]
pub struct Control {
    /// Leave the group cleanly (commit on revoke) and end the thread.
    pub stop: AtomicBool,
    /// Crash: end the thread without any commit.
    pub crash: AtomicBool,
    /// Do not poll or process until this run time (µs): a stalled handler.
    pub stall_until_us: AtomicU64,
    /// Processing-time multiplier ×1000 (1000 = normal speed).
    pub slow_factor_milli: AtomicU64,
    /// Run time (µs) of the member's last `poll()` call; 0 before the first.
    pub last_poll_us: AtomicU64,
    /// The member has been recorded as evicted and not reassigned since.
    pub evicted: AtomicBool,
}

impl Control {
    pub fn new() -> Arc<Self> {
        let c = Control::default();
        c.slow_factor_milli.store(1000, Ordering::Relaxed);
        Arc::new(c)
    }
}

/// Everything a member needs to run.
#[derive(Clone)]
pub struct MemberPlan {
    pub index: u32,
    pub scenario: Arc<Scenario>,
    pub names: Names,
    pub conn: Conn,
    pub bugs: Bugs,
    /// Wall seconds per scenario second.
    pub time_scale: f64,
    pub seed: u64,
    /// Extra librdkafka settings for the consumer (after the scenario's).
    pub consumer_overrides: Vec<(String, String)>,
}

/// How a member thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Stopped,
    Crashed,
    Failed(String),
}

/// librdkafka's name for an assignor (`sticky` has no eager librdkafka implementation: it falls back
/// to round-robin, and the run says so).
pub fn assignor_name(a: AssignorKind) -> &'static str {
    match a {
        AssignorKind::Range => "range",
        AssignorKind::RoundRobin | AssignorKind::Sticky => "roundrobin",
        AssignorKind::CooperativeSticky => "cooperative-sticky",
    }
}

/// The consumer configuration the scenario asks for.
pub fn consumer_config(plan: &MemberPlan) -> ClientConfig {
    let k = &plan.scenario.consumers;
    let mut c = plan.conn.base();
    c.set("group.id", &plan.names.group)
        .set("client.id", format!("{}-c{}", plan.names.prefix, plan.index))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", assignor_name(k.assignor))
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", k.heartbeat_interval_ms.to_string())
        .set("max.poll.interval.ms", k.max_poll_interval_ms.to_string())
        .set("fetch.wait.max.ms", k.fetch_wait_max_ms.to_string())
        .set("max.partition.fetch.bytes", k.max_partition_fetch_bytes.to_string())
        .set("fetch.max.bytes", k.fetch_max_bytes.to_string())
        .set("fetch.min.bytes", k.fetch_min_bytes.to_string())
        // librdkafka's prefetch queue holds no more bytes than the pipeline's buffer may.
        .set("queued.max.messages.kbytes", (k.buffer_bytes_max / 1_024).max(1).to_string())
        .set(
            "auto.offset.reset",
            match k.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        );
    if k.static_membership {
        c.set("group.instance.id", format!("{}-c{}", plan.names.prefix, plan.index));
    }
    for (key, v) in &plan.consumer_overrides {
        c.set(key, v);
    }
    c
}

/// A worker's current run.
#[derive(Clone, Copy, Debug)]
struct Work {
    tp: Tp,
    offset: Offset,
    count: u32,
    ok: u32,
    done_at_us: TimeUs,
}

/// A record in the staging area.
#[derive(Clone, Copy, Debug)]
struct Staged {
    offset: Offset,
    producer: u32,
    seq: u64,
    /// Key and value bytes.
    bytes: u32,
}

struct Fetch {
    offset: Offset,
    max_records: u32,
    max_bytes: u64,
    asked_at_us: TimeUs,
}

struct State {
    pipeline: Pipeline,
    workers: Vec<Option<Work>>,
    staging: BTreeMap<Tp, VecDeque<Staged>>,
    /// Next offset the staging area should deliver per partition (what the pipeline will ask).
    next_deliver: BTreeMap<Tp, Offset>,
    fetches: BTreeMap<Tp, Fetch>,
    /// Partitions the pipeline paused / the staging bound paused in librdkafka.
    paused_pipeline: BTreeSet<Tp>,
    paused_stage: BTreeSet<Tp>,
    /// librdkafka currently assigns these.
    assigned: BTreeSet<Tp>,
    generation: u32,
    rng: SplitMix64,
    /// Seeks the pipeline asked for during an assignment, applied to the assign list.
    assign_seeks: Option<BTreeMap<Tp, Offset>>,
    revoke_done: bool,
    /// Dead-letter writes waiting for their acknowledgement: (tp, offset) → attempts.
    dlq_pending: BTreeMap<(Tp, Offset), (u32, u32)>,
}

struct Env {
    plan: MemberPlan,
    rec: Recorder,
    control: Arc<Control>,
    /// Set while the member crashes: the rebalance callback then only unassigns (no commit).
    crashed: AtomicBool,
    topic_index: BTreeMap<String, u16>,
    dlq: ThreadedProducer<DlqCtx>,
}

impl Env {
    fn now(&self) -> TimeUs {
        self.rec.clock().now_us()
    }
    fn me(&self) -> u32 {
        self.plan.index
    }
    fn tp_name(&self, tp: Tp) -> sluice_core::history::TpName {
        self.plan.scenario.tp_name(tp)
    }
    fn kafka_topic(&self, tp: Tp) -> &str {
        &self.plan.names.topics[tp.topic as usize]
    }
    fn tp_of(&self, topic: &str, partition: i32) -> Option<Tp> {
        Some(Tp::new(*self.topic_index.get(topic)?, partition.max(0) as u32))
    }
    fn tpl(&self, tps: &[Tp]) -> TopicPartitionList {
        let mut l = TopicPartitionList::with_capacity(tps.len());
        for tp in tps {
            l.add_partition(self.kafka_topic(*tp), tp.partition as i32);
        }
        l
    }
}

struct DlqCtx {
    acks: Mutex<Vec<(Tp, Offset, bool)>>,
}
impl ClientContext for DlqCtx {}
impl ProducerContext for DlqCtx {
    type DeliveryOpaque = Box<(Tp, Offset)>;
    fn delivery(&self, r: &DeliveryResult<'_>, o: Box<(Tp, Offset)>) {
        let (tp, off) = *o;
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).push((tp, off, r.is_ok()));
    }
}

pub struct MemberCtx {
    env: Arc<Env>,
    state: Arc<Mutex<State>>,
}

impl ClientContext for MemberCtx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        // librdkafka's own log, to stderr when asked for (`SLUICE_REAL_DEBUG=1` with `-X debug=…`).
        if std::env::var_os("SLUICE_REAL_DEBUG").is_some() {
            eprintln!("c{} librdkafka {level:?} {fac}: {msg}", self.env.me());
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.env.rec.note(format!("c{}: librdkafka error: {error}: {reason}", self.env.me()));
    }
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConsumerContext for MemberCtx {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let env = &self.env;
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let tps: Vec<Tp> = tpl.elements().iter().filter_map(|e| env.tp_of(e.topic(), e.partition())).collect();
        let crashed = env.crashed.load(Ordering::Relaxed);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if !crashed {
                    let mut st = lock(&self.state);
                    on_assign(env, &mut st, c, &tps, tpl);
                }
                let r = if cooperative { c.incremental_assign(tpl) } else { c.assign(tpl) };
                if let Err(e) = r {
                    env.rec.note(format!("c{}: assign failed: {e}", env.me()));
                }
                if !crashed {
                    let mut st = lock(&self.state);
                    st.assigned.extend(tps.iter().copied());
                    // Partitions the pipeline paused at assignment are paused now that they exist.
                    let paused: Vec<Tp> = tps.iter().copied().filter(|tp| st.paused_pipeline.contains(tp)).collect();
                    if !paused.is_empty() {
                        let l = env.tpl(&paused);
                        let _ = c.pause(&l);
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if !crashed {
                    let lost = c.assignment_lost();
                    let mut st = lock(&self.state);
                    on_revoke(env, &mut st, c, &tps, lost);
                }
                let r = if cooperative { c.incremental_unassign(tpl) } else { c.unassign() };
                if let Err(e) = r {
                    env.rec.note(format!("c{}: unassign failed: {e}", env.me()));
                }
                let mut st = lock(&self.state);
                for tp in &tps {
                    st.assigned.remove(tp);
                    st.paused_stage.remove(tp);
                }
            }
            other => {
                env.rec.note(format!("c{}: rebalance error {other:?}", env.me()));
                let _ = c.unassign();
                lock(&self.state).assigned.clear();
            }
        }
    }
}

fn on_assign(env: &Env, st: &mut State, c: &BaseConsumer<MemberCtx>, tps: &[Tp], tpl: &mut TopicPartitionList) {
    env.control.evicted.store(false, Ordering::Relaxed);
    st.generation += 1;
    let generation = st.generation;
    // The committed offsets decide where each partition starts (K2).
    let mut starts: Vec<(Tp, Offset)> = Vec::with_capacity(tps.len());
    {
        let committed = c.committed_offsets(tpl.clone(), Duration::from_millis(KAFKA_CALL_TIMEOUT_MS));
        let committed = match committed {
            Ok(l) => l,
            Err(e) => {
                env.rec.note(format!("c{}: committed offsets unavailable ({e}); using the reset policy", env.me()));
                TopicPartitionList::new()
            }
        };
        for tp in tps {
            let got = committed
                .find_partition(env.kafka_topic(*tp), tp.partition as i32)
                .map(|e| e.offset());
            let start = match got {
                Some(KOffset::Offset(o)) if o >= 0 => o as u64,
                _ => reset_answer(env, c, *tp),
            };
            starts.push((*tp, start));
        }
        drop(committed); // before anything else: a live list blocks the consumer's drop
    }
    for (tp, _) in &starts {
        st.staging.remove(tp);
        st.fetches.remove(tp);
    }
    let now = env.now();
    st.pipeline.handle(now, Input::Assigned { generation, tps: &starts });
    env.rec.record(Event::Assign {
        consumer: env.me(),
        generation,
        tps: tps.iter().map(|tp| env.tp_name(*tp)).collect(),
    });
    st.assign_seeks = Some(BTreeMap::new());
    execute(env, st, c);
    let seeks = st.assign_seeks.take().unwrap_or_default();
    for (tp, start) in &starts {
        let off = seeks.get(tp).copied().unwrap_or(*start);
        st.next_deliver.insert(*tp, off);
        let _ = tpl.set_partition_offset(env.kafka_topic(*tp), tp.partition as i32, KOffset::Offset(off as i64));
    }
}

/// Where a partition with no committed offset starts: the reset policy's answer.
fn reset_answer(env: &Env, c: &BaseConsumer<MemberCtx>, tp: Tp) -> Offset {
    let wm = c.fetch_watermarks(env.kafka_topic(tp), tp.partition as i32, Duration::from_millis(KAFKA_CALL_TIMEOUT_MS));
    match (env.plan.scenario.consumers.auto_offset_reset, wm) {
        (OffsetReset::Earliest, Ok((low, _))) => low.max(0) as u64,
        (OffsetReset::Latest, Ok((_, high))) => high.max(0) as u64,
        (_, Err(e)) => {
            env.rec.note(format!("c{}: watermarks of {} unavailable ({e}); starting at 0", env.me(), env.tp_name(tp)));
            0
        }
    }
}

fn on_revoke(env: &Env, st: &mut State, c: &BaseConsumer<MemberCtx>, tps: &[Tp], lost: bool) {
    let generation = st.generation;
    let owned: BTreeSet<Tp> = st.pipeline.owned().into_iter().collect();
    let tps: Vec<Tp> = tps.iter().copied().filter(|tp| owned.contains(tp)).collect();
    if lost {
        if !env.control.evicted.swap(true, Ordering::Relaxed) {
            env.rec.record(Event::Member { consumer: env.me(), event: MemberEvent::Evicted });
        }
        st.pipeline.handle(env.now(), Input::Lost { tps: &tps });
        execute(env, st, c);
    } else {
        st.revoke_done = false;
        st.pipeline.handle(env.now(), Input::Revoke { generation, tps: &tps });
        execute(env, st, c);
        let deadline = env.now() + REVOKE_WAIT_MAX_MS * 1_000;
        // Finish in-flight work on the revoked partitions, commit, then give them up (K1).
        while !st.revoke_done && env.now() < deadline {
            let next = st.workers.iter().flatten().map(|w| w.done_at_us).min();
            let timer = st.pipeline.poll_timeout();
            let wake = [next, timer].into_iter().flatten().min().unwrap_or(env.now() + 10_000);
            let now = env.now();
            if wake > now {
                std::thread::sleep(Duration::from_micros((wake - now).min(POLL_WAIT_MAX_MS * 1_000)));
            }
            step(env, st, c);
        }
        if !st.revoke_done {
            env.rec.note(format!("c{}: revocation did not finish within {REVOKE_WAIT_MAX_MS} ms", env.me()));
        }
    }
    if !tps.is_empty() {
        env.rec.record(Event::Revoke {
            consumer: env.me(),
            generation,
            tps: tps.iter().map(|tp| env.tp_name(*tp)).collect(),
        });
    }
    for tp in &tps {
        st.staging.remove(tp);
        st.fetches.remove(tp);
        st.next_deliver.remove(tp);
        st.paused_pipeline.remove(tp);
    }
}

/// Per-record processing time in µs: the scenario's distribution, the slow-consumer factor and
/// the time scale.
fn draw_process_us(p: &ProcessingTime, rng: &mut SplitMix64, factor: f64, scale: f64) -> u64 {
    let ms = match *p {
        ProcessingTime::Constant { ms } => ms,
        ProcessingTime::Exponential { mean_ms } => -mean_ms * (1.0 - rng.next_f64()).ln(),
        ProcessingTime::LogNormal { mean_ms, cv } => {
            let s2 = (1.0 + cv * cv).ln();
            let mu = mean_ms.ln() - s2 / 2.0;
            let u1 = 1.0 - rng.next_f64();
            let u2 = rng.next_f64();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            (mu + s2.sqrt() * z).exp()
        }
    };
    (ms.max(0.0) * factor * scale * 1_000.0) as u64
}

/// Whether the record at `offset` of `tp` is a poison pill: a fixed function of the run's seed so
/// that every attempt at it fails.
fn is_poison(seed: u64, tp: Tp, offset: Offset, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    let mut r = SplitMix64(seed ^ ((tp.topic as u64) << 48) ^ ((tp.partition as u64) << 32) ^ offset.wrapping_mul(0x9E37_79B9));
    r.next_f64() < p
}

/// Drains and executes the pipeline's actions until it has nothing more to say.
fn execute(env: &Env, st: &mut State, c: &BaseConsumer<MemberCtx>) {
    let me = env.me();
    let mut guard = 0u64;
    while let Some(a) = st.pipeline.poll_action() {
        guard += 1;
        assert!(guard < 10_000_000, "pipeline produced actions without end");
        match a {
            Action::Fetch { tp, offset, max_records, max_bytes } => {
                if st.next_deliver.get(&tp) != Some(&offset) {
                    // The pipeline wants another position: what is staged is no longer wanted.
                    st.staging.remove(&tp);
                    st.next_deliver.insert(tp, offset);
                    if st.assigned.contains(&tp) {
                        if let Err(e) = c.seek(env.kafka_topic(tp), tp.partition as i32, KOffset::Offset(offset as i64), Duration::from_millis(KAFKA_CALL_TIMEOUT_MS)) {
                            env.rec.note(format!("c{me}: seek {} to {offset} failed: {e}", env.tp_name(tp)));
                        }
                    }
                }
                st.fetches.insert(tp, Fetch { offset, max_records, max_bytes, asked_at_us: env.now() });
            }
            Action::Pause { tp } => {
                st.paused_pipeline.insert(tp);
                if st.assigned.contains(&tp) && !st.paused_stage.contains(&tp) {
                    let _ = c.pause(&env.tpl(&[tp]));
                }
                env.rec.record(Event::Pause { consumer: me, tps: vec![env.tp_name(tp)] });
            }
            Action::Resume { tp } => {
                st.paused_pipeline.remove(&tp);
                if st.assigned.contains(&tp) && !st.paused_stage.contains(&tp) {
                    let _ = c.resume(&env.tpl(&[tp]));
                }
                env.rec.record(Event::Resume { consumer: me, tps: vec![env.tp_name(tp)] });
            }
            Action::Seek { tp, offset } => {
                env.rec.record(Event::Seek { consumer: me, tp: env.tp_name(tp), offset });
                if let Some(s) = st.assign_seeks.as_mut() {
                    s.insert(tp, offset);
                } else {
                    st.staging.remove(&tp);
                    st.next_deliver.insert(tp, offset);
                    if st.assigned.contains(&tp) {
                        let _ = c.seek(env.kafka_topic(tp), tp.partition as i32, KOffset::Offset(offset as i64), Duration::from_millis(KAFKA_CALL_TIMEOUT_MS));
                    }
                }
            }
            Action::Process { worker, tp, offset, count, attempt } => {
                let k = &env.plan.scenario.consumers;
                let factor = env.control.slow_factor_milli.load(Ordering::Relaxed) as f64 / 1000.0;
                let mut total_us = 0u64;
                let mut ok = count;
                for i in 0..count {
                    total_us += draw_process_us(&k.processing, &mut st.rng, factor, env.plan.time_scale);
                    let fails = is_poison(env.plan.seed, tp, offset + i as u64, k.retry.poison_probability)
                        || (k.retry.transient_failure_probability > 0.0 && st.rng.next_f64() < k.retry.transient_failure_probability);
                    if fails {
                        ok = i;
                        break;
                    }
                }
                env.rec.record(Event::ProcessStart { consumer: me, tp: env.tp_name(tp), offset, count, attempt });
                let w = worker as usize;
                if w >= st.workers.len() {
                    st.workers.resize(w + 1, None);
                }
                st.workers[w] = Some(Work { tp, offset, count, ok, done_at_us: env.now() + total_us });
            }
            Action::Commit { generation, tp, offset } => {
                let name = env.tp_name(tp);
                env.rec.record(Event::CommitSend { consumer: me, generation, tp: name.clone(), offset });
                let mut l = TopicPartitionList::with_capacity(1);
                let _ = l.add_partition_offset(env.kafka_topic(tp), tp.partition as i32, KOffset::Offset(offset as i64));
                let r = c.commit(&l, CommitMode::Sync);
                drop(l);
                let outcome = match r {
                    Ok(()) => {
                        env.rec.record(Event::CommitAck { consumer: me, generation, tp: name, offset });
                        CommitOutcome::Acked
                    }
                    Err(e) => {
                        let unknown = matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::OperationTimedOut));
                        env.rec.record(Event::CommitFail { consumer: me, generation, tp: name, offset, unknown });
                        if unknown {
                            CommitOutcome::Unknown
                        } else {
                            CommitOutcome::Failed
                        }
                    }
                };
                st.pipeline.handle(env.now(), Input::CommitDone { tp, offset, outcome });
            }
            Action::DeadLetter { tp, offset, attempts } => {
                st.dlq_pending.insert((tp, offset), (attempts, 1));
                send_dlq(env, tp, offset);
            }
            Action::RevokeDone { .. } => st.revoke_done = true,
            Action::CreditGrant { tp, n, floating } => {
                env.rec.record(Event::CreditGrant { consumer: me, tp: env.tp_name(tp), n, floating })
            }
            Action::CreditReturn { tp, n } => env.rec.record(Event::CreditReturn { consumer: me, tp: env.tp_name(tp), n }),
            Action::Token { tier, n, admitted } => {
                let name = st.pipeline.config().tier_names.get(tier).cloned().unwrap_or_else(|| format!("tier{tier}"));
                env.rec.record(Event::Token { consumer: me, tier: name, n, admitted })
            }
            Action::Buffer { records, bytes, credits_outstanding } => {
                env.rec.record(Event::Buffer { consumer: me, records, bytes, credits_outstanding })
            }
            Action::Metrics { back_pressured_ms_per_s, busy_ms_per_s, idle_ms_per_s } => {
                env.rec.record(Event::Metrics { consumer: me, back_pressured_ms_per_s, busy_ms_per_s, idle_ms_per_s })
            }
            Action::Checkpoint { id, edge } => match edge {
                CheckpointEdge::Start => env.rec.record(Event::Checkpoint { consumer: me, id, edge: Edge::Start }),
                CheckpointEdge::Complete => env.rec.record(Event::Checkpoint { consumer: me, id, edge: Edge::End }),
                CheckpointEdge::Aborted => env.rec.note(format!("c{me}: checkpoint {id} aborted")),
            },
            Action::Barrier { .. } => {
                // Barrier positions are internal to the pipeline; its commits record their effect.
            }
            Action::LimiterSnapshot { .. } => {
                // Persisting limiter state to a compacted topic is not played in real mode (R3 is
                // a simulator scenario); the run notes this once at start.
            }
        }
    }
}

fn send_dlq(env: &Env, tp: Tp, offset: Offset) {
    let payload = format!("{}@{offset}", env.tp_name(tp));
    let r = env.dlq.send(BaseRecord::with_opaque_to(&env.plan.names.dlq, Box::new((tp, offset))).payload(&payload).key(&payload));
    if let Err((e, _)) = r {
        env.rec.note(format!("c{}: dead-letter send for {payload} failed at once: {e}", env.me()));
    }
}

/// The cached high watermark librdkafka last saw in a fetch response for `tp`.
fn cached_high_watermark(env: &Env, c: &BaseConsumer<MemberCtx>, tp: Tp) -> Option<u64> {
    let topic = CString::new(env.kafka_topic(tp)).ok()?;
    let mut low: i64 = -1;
    let mut high: i64 = -1;
    // SAFETY: the client pointer is valid while `c` lives; the out-pointers are valid locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(c.client().native_ptr(), topic.as_ptr(), tp.partition as i32, &mut low, &mut high)
    };
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 {
        Some(high as u64)
    } else {
        None
    }
}

/// The high watermark a fetch records in the history: what the broker last reported, but never
/// below the end of the records already received (delivered in this answer, or staged behind it).
/// A broker serves only records below its high watermark, so this is still a lower bound of the
/// true one (the in-memory Tansu reports 1 or stale values).
///
/// The pipeline itself is told the end of what the staging area holds instead: the staging area is
/// the sender its fetches are answered from, so that is the backlog a channel can actually be sent
/// now. The credit strategy lends floating credits against that backlog; told the broker's, it
/// would lend them to partitions librdkafka has not delivered yet, where they sit unused while the
/// partitions with staged records fetch with their exclusive credits alone, a few records at a time.
fn high_watermark(broker: Option<u64>, staged_end: Option<u64>, delivered_end: u64) -> u64 {
    broker.unwrap_or(0).max(staged_end.unwrap_or(0)).max(delivered_end)
}

/// One turn of the loop: finished workers, dead-letter acks, timers, actions, fetch answers.
fn step(env: &Env, st: &mut State, c: &BaseConsumer<MemberCtx>) {
    let me = env.me();
    let now = env.now();
    for w in 0..st.workers.len() {
        if let Some(work) = st.workers[w] {
            if work.done_at_us <= now {
                st.workers[w] = None;
                env.rec.record(Event::ProcessEnd { consumer: me, tp: env.tp_name(work.tp), offset: work.offset, count: work.count, ok: work.ok });
                st.pipeline.handle(now, Input::ProcessDone { worker: w as u32, ok: work.ok });
            }
        }
    }
    let acks = std::mem::take(&mut *env.dlq.context().acks.lock().unwrap_or_else(|p| p.into_inner()));
    for (tp, offset, ok) in acks {
        let Some((attempts, sends)) = st.dlq_pending.get(&(tp, offset)).copied() else { continue };
        if ok {
            st.dlq_pending.remove(&(tp, offset));
            env.rec.record(Event::DeadLetter { consumer: me, tp: env.tp_name(tp), offset, attempts });
            st.pipeline.handle(env.now(), Input::DeadLetterDone { tp, offset });
        } else if sends < DLQ_ATTEMPTS_MAX {
            st.dlq_pending.insert((tp, offset), (attempts, sends + 1));
            send_dlq(env, tp, offset);
        } else {
            st.dlq_pending.remove(&(tp, offset));
            env.rec.note(format!("c{me}: dead-letter write of {}@{offset} failed {DLQ_ATTEMPTS_MAX} times", env.tp_name(tp)));
        }
    }
    if st.pipeline.poll_timeout().is_some_and(|t| t <= now) {
        st.pipeline.handle(now, Input::Tick);
    }
    execute(env, st, c);
    // Answer outstanding fetches from the staging area.
    let wait_us = env.plan.scenario.consumers.fetch_wait_max_ms * 1_000;
    let tps: Vec<Tp> = st.fetches.keys().copied().collect();
    for tp in tps {
        let (offset, max, max_bytes, asked) = {
            let f = &st.fetches[&tp];
            (f.offset, f.max_records, f.max_bytes, f.asked_at_us)
        };
        let q = st.staging.entry(tp).or_default();
        while q.front().is_some_and(|r| r.offset < offset) {
            q.pop_front();
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut count = 0u32;
        let mut bytes = 0u64;
        let mut first = None;
        while count < max {
            let Some(r) = q.front().copied() else { break };
            match first {
                None => first = Some(r.offset),
                Some(f) if r.offset != f + count as u64 => break, // a gap: deliver up to it
                _ => {}
            }
            // Within the bytes asked for, but always one record (as a broker answers, KIP-74).
            if count > 0 && bytes + r.bytes as u64 > max_bytes {
                break;
            }
            q.pop_front();
            count += 1;
            bytes += r.bytes as u64;
            match runs.last_mut() {
                Some(last) if last.producer == r.producer && last.seq + last.count as u64 == r.seq && last.offset + last.count as u64 == r.offset => {
                    last.count += 1
                }
                _ => runs.push(Run { offset: r.offset, producer: r.producer, seq: r.seq, count: 1 }),
            }
        }
        let qlen = q.len();
        let staged_end = q.back().map(|r| r.offset + 1);
        if count > 0 {
            let first = first.unwrap_or(offset);
            if first != offset {
                env.rec.note(format!("c{me}: {} has no record at {offset}; next is {first}", env.tp_name(tp)));
            }
            let hw = high_watermark(cached_high_watermark(env, c, tp), staged_end, first + count as u64);
            st.fetches.remove(&tp);
            st.next_deliver.insert(tp, first + count as u64);
            env.rec.record(Event::Fetch { consumer: me, tp: env.tp_name(tp), runs, bytes, hw });
            let local_end = staged_end.unwrap_or(0).max(first + count as u64);
            st.pipeline.handle(env.now(), Input::Fetched { tp, offset: first, count, bytes, hw: local_end });
        } else if now.saturating_sub(asked) >= wait_us {
            st.fetches.remove(&tp);
            st.pipeline.handle(env.now(), Input::FetchEmpty { tp, hw: staged_end });
        }
        // The staging bound: librdkafka stops prefetching a partition whose stage is full.
        if qlen < STAGE_RECORDS_MAX / 4 && st.paused_stage.remove(&tp) && st.assigned.contains(&tp) && !st.paused_pipeline.contains(&tp) {
            let _ = c.resume(&env.tpl(&[tp]));
        }
    }
    execute(env, st, c);
}

/// Whether a `step` now would make progress without new records from librdkafka: a worker's run
/// is due, or an outstanding fetch can be answered from the staging area.
fn can_step_now(st: &State, now: TimeUs) -> bool {
    st.workers.iter().flatten().any(|w| w.done_at_us <= now)
        || st.fetches.keys().any(|tp| st.staging.get(tp).is_some_and(|q| !q.is_empty()))
}

/// Runs one member until it is told to stop or crash. Blocking: call it on its own thread.
pub fn run_member(plan: MemberPlan, rec: Recorder, control: Arc<Control>) -> Exit {
    let me = plan.index;
    let sc = plan.scenario.clone();
    let k = &sc.consumers;
    if k.assignor == AssignorKind::Sticky {
        rec.note(format!("c{me}: librdkafka has no eager sticky assignor; using roundrobin (skipped: sticky)"));
    }
    if k.protocol == Protocol::Cooperative && k.assignor != AssignorKind::CooperativeSticky {
        rec.note(format!("c{me}: cooperative protocol without cooperative-sticky is not possible in librdkafka"));
    }
    let mut pcfg = PipelineConfig::from_spec(&sc, MemberId(me), plan.bugs);
    pcfg.limiter_restore = None;
    let workers = pcfg.workers as usize;
    let dlq: ThreadedProducer<DlqCtx> = match plan
        .conn
        .base()
        .set("linger.ms", "1")
        .create_with_context(DlqCtx { acks: Mutex::new(Vec::new()) })
    {
        Ok(p) => p,
        Err(e) => return Exit::Failed(format!("c{me}: dead-letter producer: {e}")),
    };
    let topic_index = plan.names.topics.iter().enumerate().map(|(i, n)| (n.clone(), i as u16)).collect();
    let env = Arc::new(Env { plan: plan.clone(), rec: rec.clone(), control: control.clone(), crashed: AtomicBool::new(false), topic_index, dlq });
    let state = Arc::new(Mutex::new(State {
        pipeline: Pipeline::new(pcfg, env.now()),
        workers: vec![None; workers],
        staging: BTreeMap::new(),
        next_deliver: BTreeMap::new(),
        fetches: BTreeMap::new(),
        paused_pipeline: BTreeSet::new(),
        paused_stage: BTreeSet::new(),
        assigned: BTreeSet::new(),
        generation: 0,
        rng: SplitMix64(plan.seed ^ (0xA5A5_5A5A_u64 << 8) ^ me as u64),
        assign_seeks: None,
        revoke_done: false,
        dlq_pending: BTreeMap::new(),
    }));
    let consumer: BaseConsumer<MemberCtx> = match consumer_config(&plan).create_with_context(MemberCtx { env: env.clone(), state: state.clone() }) {
        Ok(c) => c,
        Err(e) => return Exit::Failed(format!("c{me}: consumer: {e}")),
    };
    let subs: Vec<&str> = k.topics.iter().filter_map(|t| sc.topic_index(t)).map(|i| plan.names.topics[i as usize].as_str()).collect();
    if let Err(e) = consumer.subscribe(&subs) {
        return Exit::Failed(format!("c{me}: subscribe: {e}"));
    }
    rec.record(Event::Member { consumer: me, event: MemberEvent::Start });
    let max_poll_us = k.max_poll_interval_ms * 1_000;
    let alive = Arc::new(AtomicBool::new(true));
    let watchdog = spawn_watchdog(me, rec.clone(), control.clone(), alive.clone(), max_poll_us);
    let mut batch: Vec<(Tp, Staged)> = Vec::with_capacity(POLL_BATCH_MAX);
    let exit = loop {
        if control.crash.load(Ordering::Relaxed) {
            break Exit::Crashed;
        }
        if control.stop.load(Ordering::Relaxed) {
            break Exit::Stopped;
        }
        let now = env.now();
        let stall_until = control.stall_until_us.load(Ordering::Relaxed);
        if stall_until > now {
            // A stalled handler: no poll, no processing.
            std::thread::sleep(Duration::from_micros((stall_until - now).min(POLL_WAIT_MAX_MS * 1_000)));
            continue;
        }
        let (wait_us, poll_allowed) = {
            let mut st = lock(&state);
            step(&env, &mut st, &consumer);
            // Work the pipeline can do at once (finished runs, fetches the staging area can
            // answer) is done before librdkafka is asked again: a turn of the outer loop costs a
            // poll of librdkafka and the state lock, which small fetches would otherwise pay each.
            let mut rounds = 1;
            while rounds < STEP_ROUNDS_MAX && can_step_now(&st, env.now()) {
                step(&env, &mut st, &consumer);
                rounds += 1;
            }
            let now = env.now();
            let next_worker = st.workers.iter().flatten().map(|w| w.done_at_us).min();
            let timer = st.pipeline.poll_timeout();
            let fetch_deadline = st.fetches.values().map(|f| f.asked_at_us + k.fetch_wait_max_ms * 1_000).min();
            let staged_ready = st.fetches.keys().any(|tp| st.staging.get(tp).is_some_and(|q| !q.is_empty()));
            let wake = [next_worker, timer, fetch_deadline].into_iter().flatten().min().unwrap_or(now + POLL_WAIT_MAX_MS * 1_000);
            let wait = if staged_ready { 0 } else { wake.saturating_sub(now).min(POLL_WAIT_MAX_MS * 1_000) };
            // The application polls Kafka only when its pipeline polls: a handler busy past
            // max.poll.interval.ms gets the member evicted, as with a synchronous loop.
            let busy = st.workers.iter().any(|w| w.is_some());
            let allowed = !(busy && now.saturating_sub(st.pipeline.last_poll_us()) > max_poll_us);
            (wait, allowed)
        };
        if !poll_allowed {
            std::thread::sleep(Duration::from_micros(wait_us.max(1_000)));
            continue;
        }
        // Take what librdkafka has, without holding the state (the rebalance callback needs it).
        control.last_poll_us.store(env.now().max(1), Ordering::Relaxed);
        batch.clear();
        let mut timeout = Duration::from_micros(wait_us);
        while batch.len() < POLL_BATCH_MAX {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    if let (Some(tp), Some((producer, seq))) = (env.tp_of(m.topic(), m.partition()), m.payload().and_then(crate::load::decode)) {
                        let bytes = (m.key_len() + m.payload_len()) as u32;
                        batch.push((tp, Staged { offset: m.offset().max(0) as u64, producer, seq, bytes }));
                    }
                }
                // Global errors also reach the context's error callback, which notes them.
                Some(Err(_)) => break,
            }
            timeout = Duration::ZERO;
        }
        if !batch.is_empty() {
            let mut st = lock(&state);
            let owned: BTreeSet<Tp> = st.assigned.clone();
            let mut full = Vec::new();
            for (tp, r) in batch.drain(..) {
                if !owned.contains(&tp) {
                    continue;
                }
                let q = st.staging.entry(tp).or_default();
                q.push_back(r);
                if q.len() >= STAGE_RECORDS_MAX && !st.paused_stage.contains(&tp) && !full.contains(&tp) {
                    full.push(tp);
                }
            }
            for tp in full {
                st.paused_stage.insert(tp);
                if !st.paused_pipeline.contains(&tp) {
                    let _ = consumer.pause(&env.tpl(&[tp]));
                }
            }
        }
    };
    match exit {
        Exit::Crashed => {
            // No commit, no revocation work: the process is gone.
            env.crashed.store(true, Ordering::Relaxed);
            rec.record(Event::Member { consumer: me, event: MemberEvent::Crash });
            drop(consumer);
        }
        _ => {
            // A clean leave: closing runs the revoke callback, which commits what was processed.
            drop(consumer);
            rec.record(Event::Member { consumer: me, event: MemberEvent::Leave });
        }
    }
    let _ = env.dlq.flush(Duration::from_millis(5_000));
    alive.store(false, Ordering::Relaxed);
    let _ = watchdog.join();
    exit
}

/// librdkafka leaves the group when the application has not polled for `max.poll.interval.ms`,
/// but tells the application only at its next poll — which a stalled member does not make. The
/// watchdog records the eviction when it happens, by the same rule.
fn spawn_watchdog(me: u32, rec: Recorder, control: Arc<Control>, alive: Arc<AtomicBool>, max_poll_us: u64) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("sluice-c{me}-watchdog"))
        .spawn(move || {
            while alive.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(WATCHDOG_PERIOD_MS));
                let last = control.last_poll_us.load(Ordering::Relaxed);
                let now = rec.clock().now_us();
                if last > 0
                    && now.saturating_sub(last) > max_poll_us
                    && alive.load(Ordering::Relaxed)
                    && !control.crash.load(Ordering::Relaxed)
                    && !control.evicted.swap(true, Ordering::Relaxed)
                {
                    rec.record(Event::Member { consumer: me, event: MemberEvent::Evicted });
                }
            }
        })
        .expect("spawning a watchdog thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_draws_have_the_documented_means() {
        let cases = [
            (ProcessingTime::Constant { ms: 2.0 }, 2_000.0),
            (ProcessingTime::Exponential { mean_ms: 1.5 }, 1_500.0),
            (ProcessingTime::LogNormal { mean_ms: 3.0, cv: 0.5 }, 3_000.0),
        ];
        for (p, want_us) in cases {
            let mut rng = SplitMix64(11);
            let n = 40_000;
            let mean = (0..n).map(|_| draw_process_us(&p, &mut rng, 1.0, 1.0) as f64).sum::<f64>() / n as f64;
            assert!((mean - want_us).abs() / want_us < 0.03, "{p:?}: mean {mean} µs, want {want_us}");
        }
        let mut rng = SplitMix64(1);
        assert_eq!(draw_process_us(&ProcessingTime::Constant { ms: 2.0 }, &mut rng, 3.0, 0.5), 3_000);
    }

    #[test]
    fn poison_is_a_fixed_property_of_the_record() {
        let tp = Tp::new(0, 1);
        let hits: Vec<bool> = (0..2_000).map(|o| is_poison(5, tp, o, 0.1)).collect();
        let again: Vec<bool> = (0..2_000).map(|o| is_poison(5, tp, o, 0.1)).collect();
        assert_eq!(hits, again);
        let rate = hits.iter().filter(|h| **h).count() as f64 / 2_000.0;
        assert!((0.07..0.13).contains(&rate), "{rate}");
        assert!(!(0..100).any(|o| is_poison(5, tp, o, 0.0)));
    }

    #[test]
    fn the_high_watermark_is_never_below_what_was_received() {
        // (broker's, staged end, delivered end, told)
        let cases = [
            (Some(1), Some(5_000), 2_000, 5_000),    // the in-memory broker's "1"
            (Some(9_000), Some(5_000), 2_000, 9_000), // an honest broker is believed
            (None, None, 300, 300),                   // nothing staged behind the answer
            (Some(0), None, 0, 0),
            (None, Some(42), 0, 42),
        ];
        for (broker, staged, delivered, want) in cases {
            assert_eq!(high_watermark(broker, staged, delivered), want, "{broker:?} {staged:?} {delivered}");
        }
    }

    #[test]
    fn assignor_names_are_librdkafkas() {
        let cases = [
            (AssignorKind::Range, "range"),
            (AssignorKind::RoundRobin, "roundrobin"),
            (AssignorKind::Sticky, "roundrobin"),
            (AssignorKind::CooperativeSticky, "cooperative-sticky"),
        ];
        for (a, want) in cases {
            assert_eq!(assignor_name(a), want);
        }
    }
}
