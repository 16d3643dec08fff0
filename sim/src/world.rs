//! The world: every piece of simulated state (brokers and their logs, the controller's partition
//! metadata, producers, consumers, the group coordinator, the network, the history recorder) in one
//! struct behind one lock. Each node (broker, producer, consumer) has the time it next needs to run
//! ([`World::wake_at`]); the run's one task (see `crate::run_with`) steps the due nodes
//! ([`World::step`]) and sleeps until the next thing is due. A crash is [`World::crash_node`], which
//! drops exactly the state a real crash loses and marks the node down.

use std::collections::{BTreeMap, VecDeque};

use sluice_core::history::{self, Entry, Event, Phase, TopicMeta, TraceHash};
use sluice_core::spec::{Acks, Scenario};
use sluice_core::types::Tp;

use crate::broker::{Broker, PartMeta};
use crate::consumer::Consumer;
use crate::dist::Stream;
use crate::group::{Coordinator, Req, Resp};
use crate::log::Runs;
use crate::net::{Layout, Net, NodeIdx};
use crate::producer::Producer;

/// What goes over the simulated network.
#[derive(Clone, Debug)]
pub enum Msg {
    Produce {
        req_id: u64,
        producer: u32,
        acks: Acks,
        idempotent: bool,
        batches: Vec<ProdBatch>,
    },
    ProduceResp {
        req_id: u64,
        results: Vec<(u32, ProduceResult)>,
    },
    ReplicaFetch {
        follower: u32,
        parts: Vec<ReplicaFetchPart>,
    },
    ReplicaFetchResp {
        leader: u32,
        parts: Vec<(u32, ReplicaFetchResult)>,
    },
    /// A consumer's fetch: per partition `(global index, offset, max records, max bytes)`.
    Fetch {
        consumer: u32,
        req_id: u64,
        wait_ms: u64,
        parts: Vec<(u32, u64, u32, u64)>,
    },
    FetchResp {
        req_id: u64,
        parts: Vec<(u32, FetchResult)>,
    },
    Group(Req),
    GroupResp(Resp),
}

/// One producer batch: `count` records of the producer's partition `tp` from `seq`.
#[derive(Clone, Copy, Debug)]
pub struct ProdBatch {
    pub tp: u32,
    pub seq: u64,
    pub count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProduceResult {
    Ok {
        offset: u64,
    },
    NotLeader,
    NotEnoughReplicas,
    /// Written to the leader's log, but the ISR fell below `min.insync.replicas` before it was
    /// replicated (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND): the outcome is unknown.
    NotEnoughReplicasAfterAppend,
    Timeout,
}

#[derive(Clone, Copy, Debug)]
pub struct ReplicaFetchPart {
    pub tp: u32,
    pub fetch_offset: u64,
    pub last_epoch: u32,
    pub leader_epoch: u32,
}

#[derive(Clone, Debug)]
pub enum ReplicaFetchResult {
    Data {
        runs: Runs,
        hw: u64,
    },
    /// The follower's log diverges from the leader's: truncate to `end_offset`, then fetch again.
    Diverging {
        end_offset: u64,
    },
    NotLeader,
}

#[derive(Clone, Debug)]
pub enum FetchResult {
    Data {
        runs: Vec<sluice_core::history::Run>,
        hw: u64,
    },
    Empty {
        hw: u64,
    },
    NotLeader,
}

/// The history recorder: hashes every line as it is recorded (the [`TraceHash`] of
/// [`history::hash_entries`]), keeps the entries when asked to, and shows each to the observer.
pub struct Recorder {
    keep: bool,
    pub entries: Vec<Entry>,
    hash: TraceHash,
    pub count: u64,
    observer: Option<ObserverPtr>,
    pub stopped: bool,
    pub stopped_early: bool,
    buf: Vec<u8>,
}

/// The run's observer. SAFETY: `run` keeps the `&mut` it came from borrowed for the whole
/// simulation and drops the runtime (and with it every clone of the world) before returning; madsim
/// runs every task on the calling thread, so the pointer is never used concurrently or after.
pub struct ObserverPtr(pub *mut (dyn FnMut(&Entry) -> bool + 'static));
unsafe impl Send for ObserverPtr {}

impl Recorder {
    pub fn new(keep: bool, observer: Option<ObserverPtr>) -> Self {
        Recorder {
            keep,
            entries: Vec::new(),
            hash: TraceHash::new(),
            count: 0,
            observer,
            stopped: false,
            stopped_early: false,
            buf: Vec::with_capacity(256),
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn record(&mut self, t_ms: u64, ev: Event) {
        if self.stopped {
            return;
        }
        let e = Entry {
            t_us: t_ms * 1_000,
            ev,
        };
        self.push(&e);
        if let Some(obs) = &self.observer {
            // SAFETY: see `ObserverPtr`.
            let keep_going = unsafe { (*obs.0)(&e) };
            if !keep_going {
                self.stopped_early = true;
                if self.keep {
                    self.entries.push(e);
                }
                let end = Entry {
                    t_us: t_ms * 1_000,
                    ev: Event::Phase { phase: Phase::End },
                };
                self.push(&end);
                if self.keep {
                    self.entries.push(end);
                }
                self.stopped = true;
                return;
            }
        }
        if self.keep {
            self.entries.push(e);
        }
    }

    fn push(&mut self, e: &Entry) {
        self.buf.clear();
        line::write_entry(&mut self.buf, e);
        self.hash.line(&self.buf);
        self.count += 1;
    }
}

use sluice_core::jsonl as line;

/// One partition of the run, with its global index.
#[derive(Clone, Debug)]
pub struct TpInfo {
    pub tp: Tp,
    pub name: history::TpName,
}

/// Fixed protocol constants of the model (Kafka defaults where Kafka has one).
pub mod consts {
    /// `request.timeout.ms` (producer and consumer requests).
    pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// `retry.backoff.ms`.
    pub const RETRY_BACKOFF_MS: u64 = 100;
    /// librdkafka's `reconnect.backoff.ms`: a client waits this long before connecting again to a
    /// broker whose connection was refused or reset, doubling after each failure in a row...
    pub const RECONNECT_BACKOFF_MS: u64 = 100;
    /// ... up to `reconnect.backoff.max.ms`.
    pub const RECONNECT_BACKOFF_MAX_MS: u64 = 10_000;
    /// `replica.fetch.wait.max.ms`.
    pub const REPLICA_FETCH_WAIT_MS: u64 = 500;
    /// The most records one replica fetch returns per partition (`replica.fetch.max.bytes` in
    /// records).
    pub const REPLICA_FETCH_RECORDS_MAX: u64 = 10_000;
    /// KRaft `broker.session.timeout.ms`: the controller fences a broker it has not heard from for
    /// this long.
    pub const BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;
    /// How often the controller checks broker liveness and ISR lag.
    pub const CONTROLLER_TICK_MS: u64 = 250;
    /// Lag samples (per partition) are taken this often.
    pub const LAG_SAMPLE_MS: u64 = 1_000;
    /// A dead-letter append is acknowledged after this long (a produce to the DLQ topic).
    pub const DLQ_APPEND_MS: u64 = 3;
    /// Records a producer holds per partition before it stops generating load for it
    /// (`buffer.memory` in records).
    pub const PRODUCER_PENDING_RECORDS_MAX: u64 = 1_000_000;
    /// Messages queued for one node at once; beyond it the network drops (a full socket buffer).
    pub const INBOX_MESSAGES_MAX: usize = 100_000;
}

/// Run-wide knobs that are not part of the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldOptions {
    /// Keep the entries in memory (the bench turns this off and keeps only the hash).
    pub keep_history: bool,
    /// Run the consumer group (off: the cluster and producers alone).
    pub consumers: bool,
}

pub struct World {
    pub spec: Scenario,
    pub seed: u64,
    pub bugs: sluice_core::bugs::Bugs,
    pub opts: WorldOptions,
    pub layout: Layout,
    pub now_ms: u64,
    pub rec: Recorder,
    pub net: Net,
    pub tps: Vec<TpInfo>,
    /// Global index of partition 0 of each topic.
    pub tp_base: Vec<u32>,
    pub meta: Vec<PartMeta>,
    pub meta_version: u64,
    pub brokers: Vec<Broker>,
    pub producers: Vec<Producer>,
    /// Bytes of each record of producer `p` (`producers[p].record_bytes`).
    pub record_bytes: Vec<u64>,
    pub consumers: Vec<Consumer>,
    pub coordinator: Option<Coordinator>,
    pub coordinator_broker: u32,
    pub coordinator_epoch: u32,
    /// Persisted limiter state per consumer (R3).
    pub limiter_snaps: Vec<Option<Vec<sluice_core::rate::BucketSnapshot>>>,
    pub up: Vec<bool>,
    /// Messages in flight to each node, ordered by `(arrival ms, send order)`; sends mostly arrive
    /// in order, so an insert is a push at the back.
    inbox: Vec<VecDeque<(u64, u64, Msg)>>,
    msg_seq: u64,
    /// When each node next needs to run (`u64::MAX`: only when a message arrives).
    pub wake_at: Vec<u64>,
    /// Nodes made due at the current millisecond (a poke, or a message sent with no latency) since
    /// the scheduler last looked; at most one entry per node between two steps.
    pub due_now: Vec<NodeIdx>,
    pub ctrl: crate::broker::ControllerState,
    pub rng: Stream,
    pub messages: u64,
    /// Node steps run (see [`World::step`]).
    pub steps: u64,
    /// Consumer connections to a broker refused (it was down) or reset (it crashed).
    pub consumer_disconnects: u64,
    /// The node whose step is running, and whether it asked to run again (a self-poke).
    stepping: Option<NodeIdx>,
    again: bool,
}

impl World {
    pub fn new(
        spec: &Scenario,
        seed: u64,
        bugs: sluice_core::bugs::Bugs,
        opts: WorldOptions,
        rec: Recorder,
    ) -> Self {
        let layout = Layout {
            brokers: spec.cluster.brokers,
            producers: spec.producers.len() as u32,
            consumers: if opts.consumers {
                spec.consumers.count
            } else {
                0
            },
        };
        let mut tps = Vec::new();
        let mut tp_base = Vec::new();
        for (ti, t) in spec.topics.iter().enumerate() {
            tp_base.push(tps.len() as u32);
            for p in 0..t.partitions {
                tps.push(TpInfo {
                    tp: Tp::new(ti as u16, p),
                    name: history::tp_name(&t.name, p),
                });
            }
        }
        let nodes = layout.nodes();
        let mut w = World {
            spec: spec.clone(),
            seed,
            bugs,
            opts,
            layout,
            now_ms: 0,
            rec,
            net: Net::new(spec.cluster.network_latency_ms, seed).with_client_latency(
                layout.consumer(0)..layout.controller(),
                spec.consumers.client_latency_ms,
            ),
            meta: Vec::new(),
            meta_version: 0,
            brokers: Vec::new(),
            producers: Vec::new(),
            record_bytes: spec.producers.iter().map(|p| p.record_bytes as u64).collect(),
            consumers: Vec::new(),
            coordinator: None,
            coordinator_broker: 0,
            coordinator_epoch: 0,
            limiter_snaps: vec![None; layout.consumers as usize],
            up: vec![true; nodes],
            inbox: (0..nodes).map(|_| VecDeque::new()).collect(),
            msg_seq: 0,
            wake_at: vec![0; nodes],
            due_now: Vec::with_capacity(nodes),
            ctrl: Default::default(),
            rng: Stream::new(seed, "world"),
            messages: 0,
            steps: 0,
            consumer_disconnects: 0,
            stepping: None,
            again: false,
            tps,
            tp_base,
        };
        w.init_cluster();
        for p in 0..layout.producers {
            let pr = Producer::new(&w, p);
            w.producers.push(pr);
        }
        if opts.consumers {
            w.init_group();
            for c in 0..layout.consumers {
                let co = Consumer::new(&w, c);
                w.consumers.push(co);
            }
        }
        w
    }

    pub fn tp_global(&self, tp: Tp) -> u32 {
        self.tp_base[tp.topic as usize] + tp.partition
    }

    /// The history's first line.
    pub fn meta_event(&self) -> Event {
        let s = &self.spec;
        let k = &s.consumers;
        let mut settings = BTreeMap::new();
        let c = &s.cluster;
        settings.insert("brokers".into(), c.brokers.to_string());
        settings.insert(
            "replication_factor".into(),
            c.replication_factor.to_string(),
        );
        settings.insert(
            "min_insync_replicas".into(),
            c.min_insync_replicas.to_string(),
        );
        settings.insert(
            "unclean_leader_election".into(),
            c.unclean_leader_election.to_string(),
        );
        settings.insert("fsync_on_append".into(), c.fsync_on_append.to_string());
        // The simulator's calibration, so that a fidelity figure names the model it came from.
        settings.insert("broker_profile".into(), c.broker_profile.name().into());
        settings.insert("rebalance_delay_ms".into(), s.rebalance_delay_ms().to_string());
        settings.insert("client_latency_ms".into(), k.client_latency_ms.to_string());
        let acks: Vec<&str> = s
            .producers
            .iter()
            .map(|p| match p.acks {
                Acks::None => "0",
                Acks::Leader => "1",
                Acks::All => "all",
            })
            .collect();
        settings.insert("acks".into(), acks.join(","));
        settings.insert(
            "idempotent".into(),
            s.producers
                .iter()
                .map(|p| p.idempotent.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        settings.insert("assignor".into(), k.assignor.name().into());
        settings.insert(
            "protocol".into(),
            format!("{:?}", k.protocol).to_lowercase(),
        );
        settings.insert("static_membership".into(), k.static_membership.to_string());
        settings.insert("checkpoint".into(), k.checkpoint.name().into());
        for (key, value) in k.retry.history_settings() {
            settings.insert(key.into(), value);
        }
        settings.insert("consumers_enabled".into(), self.opts.consumers.to_string());
        Event::Meta(Box::new(sluice_core::history::Meta {
            schema: history::SCHEMA_VERSION,
            source: "sim".into(),
            scenario: s.name.clone(),
            seed: self.seed,
            topics: s
                .topics
                .iter()
                .map(|t| TopicMeta {
                    name: t.name.clone(),
                    partitions: t.partitions,
                })
                .collect(),
            producers: s.producers_meta(),
            consumers: self.layout.consumers,
            strategy: k.strategy.name().into(),
            bounds: s.bounds(),
            expect: s.expect.anomalies.clone(),
            settings,
        }))
    }

    pub fn record(&mut self, ev: Event) {
        let now = self.now_ms;
        self.rec.record(now, ev);
    }

    /// Sends `msg` from `from` to `to` over the simulated network.
    pub fn send(&mut self, from: NodeIdx, to: NodeIdx, msg: Msg) {
        if !self.up[to] || !self.up[from] {
            return;
        }
        let Some(d) = self.net.delay_ms(from, to) else {
            return;
        };
        if self.inbox[to].len() >= consts::INBOX_MESSAGES_MAX {
            self.net.dropped += 1;
            return;
        }
        let at = self.now_ms + d;
        self.msg_seq += 1;
        self.messages += 1;
        let q = &mut self.inbox[to];
        // After every message that arrives no later (`msg_seq` only grows).
        if q.back().is_none_or(|m| m.0 <= at) {
            q.push_back((at, self.msg_seq, msg));
        } else {
            let pos = q.partition_point(|m| m.0 <= at);
            q.insert(pos, (at, self.msg_seq, msg));
        }
        if at < self.wake_at[to] {
            self.wake_at[to] = at;
            if at <= self.now_ms {
                self.due_now.push(to);
            }
        }
    }

    /// Asks node `n` to run a step now (its state changed from outside).
    pub fn poke(&mut self, n: NodeIdx) {
        if self.stepping == Some(n) {
            self.again = true;
            return;
        }
        if self.wake_at[n] > self.now_ms {
            self.wake_at[n] = self.now_ms;
            self.due_now.push(n);
        }
    }

    pub fn poke_brokers(&mut self) {
        for b in 0..self.layout.brokers {
            self.poke(self.layout.broker(b));
        }
    }

    /// Handles what is due for node `n`; returns when it next needs to run (`u64::MAX`: only when a
    /// message arrives).
    pub fn step(&mut self, n: NodeIdx) -> u64 {
        if !self.up[n] || self.rec.stopped {
            return u64::MAX;
        }
        let now = self.now_ms;
        self.steps += 1;
        self.stepping = Some(n);
        self.again = false;
        while self.inbox[n].front().is_some_and(|m| m.0 <= now) {
            let (_, _, msg) = self.inbox[n].pop_front().expect("checked non-empty");
            self.deliver(n, msg);
        }
        let l = self.layout;
        let t = if n < l.producer(0) {
            self.broker_tick(n as u32)
        } else if n < l.consumer(0) {
            self.producer_tick((n - l.producer(0)) as u32)
        } else if n < l.controller() {
            self.consumer_tick((n - l.consumer(0)) as u32)
        } else {
            u64::MAX
        };
        let next_msg = self.inbox[n].front().map(|m| m.0).unwrap_or(u64::MAX);
        self.stepping = None;
        let t = if std::mem::take(&mut self.again) {
            now + 1
        } else {
            t
        };
        match t.min(next_msg) {
            u64::MAX => u64::MAX,
            next => next.max(now + 1),
        }
    }

    fn deliver(&mut self, n: NodeIdx, msg: Msg) {
        let l = self.layout;
        if n < l.producer(0) {
            self.broker_deliver(n as u32, msg);
        } else if n < l.consumer(0) {
            self.producer_deliver((n - l.producer(0)) as u32, msg);
        } else if n < l.controller() {
            self.consumer_deliver((n - l.consumer(0)) as u32, msg);
        }
    }

    /// A node crashed: it loses its volatile state and every message queued for it.
    pub fn crash_node(&mut self, n: NodeIdx) {
        self.up[n] = false;
        self.inbox[n].clear();
        let l = self.layout;
        if n < l.producer(0) {
            self.broker_crash(n as u32);
        } else if n < l.consumer(0) {
            // Producers are not crashed by any fault kind.
        } else if n < l.controller() {
            self.consumer_crash((n - l.consumer(0)) as u32);
        }
    }

    /// A crashed node comes back with what survived.
    pub fn restart_node(&mut self, n: NodeIdx) {
        self.up[n] = true;
        self.inbox[n].clear();
        self.wake_at[n] = self.now_ms;
        let l = self.layout;
        if n < l.producer(0) {
            self.broker_restart(n as u32);
        } else if n < l.consumer(0) {
        } else if n < l.controller() {
            self.consumer_restart((n - l.consumer(0)) as u32);
        }
    }

    /// Per-second samples: lag of every partition (leader's high watermark minus the committed
    /// offset).
    pub fn sample_lag(&mut self) {
        if !self.opts.consumers {
            return;
        }
        let subscribed: Vec<u32> = self
            .spec
            .subscribed_partitions()
            .iter()
            .map(|&tp| self.tp_global(tp))
            .collect();
        for g in subscribed {
            let hw = self.partition_hw(g);
            let committed = self
                .coordinator
                .as_ref()
                .and_then(|c| c.committed(self.tps[g as usize].tp))
                .unwrap_or(0);
            let tp = self.tps[g as usize].name.clone();
            self.record(Event::Lag { tp, hw, committed });
        }
    }

    /// Final state of every partition: the leader's log (or, with no leader, the longest replica).
    pub fn final_logs(&self) -> BTreeMap<String, Vec<sluice_core::history::Run>> {
        let mut out = BTreeMap::new();
        for (g, info) in self.tps.iter().enumerate() {
            let m = &self.meta[g];
            let b = m.leader.or_else(|| {
                m.replicas.iter().copied().max_by_key(|&b| {
                    self.brokers[b as usize].logs[g]
                        .as_ref()
                        .map(|l| l.leo)
                        .unwrap_or(0)
                })
            });
            let runs = b
                .and_then(|b| self.brokers[b as usize].logs[g].as_ref())
                .map(|l| l.runs().iter().map(|r| r.run()).collect())
                .unwrap_or_default();
            out.insert(info.name.to_string(), runs);
        }
        out
    }
}

/// A bounded FIFO helper used by nodes for timed work (appends, dead letters).
pub type Timed<T> = VecDeque<(u64, T)>;
