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
use crate::log::LogRun;
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
        runs: Vec<LogRun>,
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

/// The history's JSON line, written by hand into a reused buffer: exactly the bytes
/// `serde_json::to_writer` produces for an [`Entry`] (the trace hash is taken over them), without
/// serde's per-field machinery. Entries it does not write by hand (the one `meta` line, and any
/// string that would need escaping) go through serde_json itself.
pub mod line {
    use sluice_core::history::{Edge, Entry, Event, MemberEvent, Phase, Run};

    /// Appends `e`'s JSON line (without the newline) to `out`. Returns whether it was written by
    /// hand (`false`: by serde_json).
    pub fn write_entry(out: &mut Vec<u8>, e: &Entry) -> bool {
        let start = out.len();
        if write_fast(out, e) {
            return true;
        }
        out.truncate(start);
        serde_json::to_writer(&mut *out, e).expect("history entries always serialize");
        false
    }

    /// Writes `e` by hand; `false` (with `out` partly written) when serde_json must do it.
    fn write_fast(o: &mut Vec<u8>, e: &Entry) -> bool {
        o.extend_from_slice(b"{\"t_us\":");
        u(o, e.t_us);
        o.extend_from_slice(b",\"kind\":\"");
        match &e.ev {
            Event::Meta(_) => return false,
            Event::Phase { phase } => {
                o.extend_from_slice(b"phase\",\"phase\":\"");
                o.extend_from_slice(match phase {
                    Phase::Safety => b"safety".as_slice(),
                    Phase::Liveness => b"liveness",
                    Phase::Shutdown => b"shutdown",
                    Phase::End => b"end",
                });
                o.push(b'"');
            }
            Event::Fault {
                fault,
                target,
                edge: ed,
            } => {
                o.extend_from_slice(b"fault\"");
                if !(s(o, b"fault", fault) && s(o, b"target", target)) {
                    return false;
                }
                edge(o, *ed);
            }
            Event::ProduceSend {
                producer,
                tp,
                seq,
                count,
            } => {
                o.extend_from_slice(b"produce_send\"");
                n(o, b"producer", *producer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"seq", *seq);
                n(o, b"count", *count as u64);
            }
            Event::ProduceAck {
                producer,
                tp,
                seq,
                count,
                offset,
            } => {
                o.extend_from_slice(b"produce_ack\"");
                n(o, b"producer", *producer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"seq", *seq);
                n(o, b"count", *count as u64);
                n(o, b"offset", *offset);
            }
            Event::ProduceFail {
                producer,
                tp,
                seq,
                count,
                unknown,
            } => {
                o.extend_from_slice(b"produce_fail\"");
                n(o, b"producer", *producer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"seq", *seq);
                n(o, b"count", *count as u64);
                bo(o, b"unknown", *unknown);
            }
            Event::Leader {
                tp,
                broker,
                epoch,
                isr,
                unclean,
            } => {
                o.extend_from_slice(b"leader\"");
                if !s(o, b"tp", tp) {
                    return false;
                }
                key(o, b"broker");
                match broker {
                    Some(b) => u(o, *b as u64),
                    None => o.extend_from_slice(b"null"),
                }
                n(o, b"epoch", *epoch as u64);
                key(o, b"isr");
                o.push(b'[');
                for (i, r) in isr.iter().enumerate() {
                    if i > 0 {
                        o.push(b',');
                    }
                    u(o, *r as u64);
                }
                o.push(b']');
                bo(o, b"unclean", *unclean);
            }
            Event::Member { consumer, event } => {
                o.extend_from_slice(b"member\"");
                n(o, b"consumer", *consumer as u64);
                key(o, b"event");
                o.extend_from_slice(match event {
                    MemberEvent::Start => b"\"start\"".as_slice(),
                    MemberEvent::Crash => b"\"crash\"",
                    MemberEvent::Leave => b"\"leave\"",
                    MemberEvent::Evicted => b"\"evicted\"",
                    MemberEvent::Fenced => b"\"fenced\"",
                });
            }
            Event::Rebalance {
                generation,
                edge: ed,
                protocol,
            } => {
                o.extend_from_slice(b"rebalance\"");
                n(o, b"generation", *generation as u64);
                edge(o, *ed);
                if !s(o, b"protocol", protocol) {
                    return false;
                }
            }
            Event::Assign {
                consumer,
                generation,
                tps,
            } => {
                o.extend_from_slice(b"assign\"");
                n(o, b"consumer", *consumer as u64);
                n(o, b"generation", *generation as u64);
                if !strs(o, b"tps", tps) {
                    return false;
                }
            }
            Event::Revoke {
                consumer,
                generation,
                tps,
            } => {
                o.extend_from_slice(b"revoke\"");
                n(o, b"consumer", *consumer as u64);
                n(o, b"generation", *generation as u64);
                if !strs(o, b"tps", tps) {
                    return false;
                }
            }
            Event::Seek {
                consumer,
                tp,
                offset,
            } => {
                o.extend_from_slice(b"seek\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"offset", *offset);
            }
            Event::Fetch {
                consumer,
                tp,
                runs,
                bytes,
                hw,
            } => {
                o.extend_from_slice(b"fetch\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                key(o, b"runs");
                o.push(b'[');
                for (i, r) in runs.iter().enumerate() {
                    if i > 0 {
                        o.push(b',');
                    }
                    run(o, r);
                }
                o.push(b']');
                n(o, b"bytes", *bytes);
                n(o, b"hw", *hw);
            }
            Event::ProcessStart {
                consumer,
                tp,
                offset,
                count,
                attempt,
            } => {
                o.extend_from_slice(b"process_start\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"offset", *offset);
                n(o, b"count", *count as u64);
                n(o, b"attempt", *attempt as u64);
            }
            Event::ProcessEnd {
                consumer,
                tp,
                offset,
                count,
                ok,
            } => {
                o.extend_from_slice(b"process_end\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"offset", *offset);
                n(o, b"count", *count as u64);
                n(o, b"ok", *ok as u64);
            }
            Event::DeadLetter {
                consumer,
                tp,
                offset,
                attempts,
            } => {
                o.extend_from_slice(b"dead_letter\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"offset", *offset);
                n(o, b"attempts", *attempts as u64);
            }
            Event::CommitSend {
                consumer,
                generation,
                tp,
                offset,
            } => {
                o.extend_from_slice(b"commit_send\"");
                if !commit(o, *consumer, *generation, tp, *offset) {
                    return false;
                }
            }
            Event::CommitAck {
                consumer,
                generation,
                tp,
                offset,
            } => {
                o.extend_from_slice(b"commit_ack\"");
                if !commit(o, *consumer, *generation, tp, *offset) {
                    return false;
                }
            }
            Event::CommitFail {
                consumer,
                generation,
                tp,
                offset,
                unknown,
            } => {
                o.extend_from_slice(b"commit_fail\"");
                if !commit(o, *consumer, *generation, tp, *offset) {
                    return false;
                }
                bo(o, b"unknown", *unknown);
            }
            Event::Pause { consumer, tps } => {
                o.extend_from_slice(b"pause\"");
                n(o, b"consumer", *consumer as u64);
                if !strs(o, b"tps", tps) {
                    return false;
                }
            }
            Event::Resume { consumer, tps } => {
                o.extend_from_slice(b"resume\"");
                n(o, b"consumer", *consumer as u64);
                if !strs(o, b"tps", tps) {
                    return false;
                }
            }
            Event::CreditGrant {
                consumer,
                tp,
                n: count,
                floating,
            } => {
                o.extend_from_slice(b"credit_grant\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"n", *count as u64);
                n(o, b"floating", *floating as u64);
            }
            Event::CreditReturn {
                consumer,
                tp,
                n: count,
            } => {
                o.extend_from_slice(b"credit_return\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"n", *count as u64);
            }
            Event::Token {
                consumer,
                tier,
                n: count,
                admitted,
            } => {
                o.extend_from_slice(b"token\"");
                n(o, b"consumer", *consumer as u64);
                if !s(o, b"tier", tier) {
                    return false;
                }
                n(o, b"n", *count as u64);
                bo(o, b"admitted", *admitted);
            }
            Event::Buffer {
                consumer,
                records,
                bytes,
                credits_outstanding,
            } => {
                o.extend_from_slice(b"buffer\"");
                n(o, b"consumer", *consumer as u64);
                n(o, b"records", *records);
                n(o, b"bytes", *bytes);
                n(o, b"credits_outstanding", *credits_outstanding);
            }
            Event::Lag { tp, hw, committed } => {
                o.extend_from_slice(b"lag\"");
                if !s(o, b"tp", tp) {
                    return false;
                }
                n(o, b"hw", *hw);
                n(o, b"committed", *committed);
            }
            Event::Metrics {
                consumer,
                back_pressured_ms_per_s,
                busy_ms_per_s,
                idle_ms_per_s,
            } => {
                o.extend_from_slice(b"metrics\"");
                n(o, b"consumer", *consumer as u64);
                n(o, b"back_pressured_ms_per_s", *back_pressured_ms_per_s as u64);
                n(o, b"busy_ms_per_s", *busy_ms_per_s as u64);
                n(o, b"idle_ms_per_s", *idle_ms_per_s as u64);
            }
            Event::Checkpoint {
                consumer,
                id,
                edge: ed,
            } => {
                o.extend_from_slice(b"checkpoint\"");
                n(o, b"consumer", *consumer as u64);
                n(o, b"id", *id);
                edge(o, *ed);
            }
            Event::Note { text } => {
                o.extend_from_slice(b"note\"");
                if !s(o, b"text", text) {
                    return false;
                }
            }
        }
        o.push(b'}');
        true
    }

    /// `,"name":`
    fn key(o: &mut Vec<u8>, name: &[u8]) {
        o.extend_from_slice(b",\"");
        o.extend_from_slice(name);
        o.extend_from_slice(b"\":");
    }

    fn n(o: &mut Vec<u8>, name: &[u8], v: u64) {
        key(o, name);
        u(o, v);
    }

    fn bo(o: &mut Vec<u8>, name: &[u8], v: bool) {
        key(o, name);
        o.extend_from_slice(if v { b"true".as_slice() } else { b"false" });
    }

    fn edge(o: &mut Vec<u8>, e: Edge) {
        key(o, b"edge");
        o.extend_from_slice(match e {
            Edge::Start => b"\"start\"".as_slice(),
            Edge::End => b"\"end\"",
        });
    }

    fn commit(o: &mut Vec<u8>, consumer: u32, generation: u32, tp: &str, offset: u64) -> bool {
        n(o, b"consumer", consumer as u64);
        n(o, b"generation", generation as u64);
        if !s(o, b"tp", tp) {
            return false;
        }
        n(o, b"offset", offset);
        true
    }

    fn run(o: &mut Vec<u8>, r: &Run) {
        o.extend_from_slice(b"{\"offset\":");
        u(o, r.offset);
        n(o, b"producer", r.producer as u64);
        n(o, b"seq", r.seq);
        n(o, b"count", r.count as u64);
        o.push(b'}');
    }

    /// `,"name":"value"`; `false` when `value` needs escaping (serde_json writes the entry then).
    fn s(o: &mut Vec<u8>, name: &[u8], v: &str) -> bool {
        key(o, name);
        string(o, v)
    }

    fn strs(o: &mut Vec<u8>, name: &[u8], v: &[String]) -> bool {
        key(o, name);
        o.push(b'[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            if !string(o, x) {
                return false;
            }
        }
        o.push(b']');
        true
    }

    /// A JSON string needing no escape: no `"`, no `\\`, no control character (serde_json escapes
    /// exactly those and writes every other UTF-8 byte as it is).
    fn string(o: &mut Vec<u8>, v: &str) -> bool {
        let b = v.as_bytes();
        if b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
            return false;
        }
        o.push(b'"');
        o.extend_from_slice(b);
        o.push(b'"');
        true
    }

    /// `"00"`, `"01"`, … `"99"`: two digits per division.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";

    /// A decimal `u64` (pushed byte by byte: a variable-length copy would cost a `memcpy` call).
    fn u(o: &mut Vec<u8>, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        while v >= 100 {
            let d = (v % 100) as usize * 2;
            v /= 100;
            i -= 2;
            tmp[i] = PAIRS[d];
            tmp[i + 1] = PAIRS[d + 1];
        }
        if v >= 10 {
            let d = v as usize * 2;
            i -= 2;
            tmp[i] = PAIRS[d];
            tmp[i + 1] = PAIRS[d + 1];
        } else {
            i -= 1;
            tmp[i] = b'0' + v as u8;
        }
        o.reserve(tmp.len() - i);
        for &d in &tmp[i..] {
            o.push(d);
        }
    }
}

/// One partition of the run, with its global index.
#[derive(Clone, Debug)]
pub struct TpInfo {
    pub tp: Tp,
    pub name: String,
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
            out.insert(info.name.clone(), runs);
        }
        out
    }
}

/// A bounded FIFO helper used by nodes for timed work (appends, dead letters).
pub type Timed<T> = VecDeque<(u64, T)>;

#[cfg(test)]
mod tests {
    use super::line::write_entry;
    use sluice_core::history::{Edge, Entry, Event, MemberEvent, Phase, Run};

    /// The line is byte for byte serde_json's, and written by hand exactly when `by_hand`.
    fn check(ev: Event, by_hand: bool) {
        let e = Entry { t_us: 1_234_000, ev };
        let mut got = Vec::new();
        assert_eq!(write_entry(&mut got, &e), by_hand, "{e:?}");
        let want = serde_json::to_vec(&e).expect("serializes");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{e:?}"
        );
    }

    fn tp(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn hand_written_lines_equal_serde_json() {
        let names = [
            "orders/0",
            "",
            "dlq.topic-β/11",
            "quo\"te/1",
            "back\\slash/2",
            "new\nline/3",
            "tab\t/4",
            "\u{1f}/5",
            "\u{7f}/6",
            "slash/ok",
        ];
        let nums = [
            0u64,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1_000,
            12_345,
            10_000_000_000,
            u32::MAX as u64,
            u64::MAX,
        ];
        let mut cases = vec![
            Event::Phase { phase: Phase::Safety },
            Event::Phase { phase: Phase::Liveness },
            Event::Phase { phase: Phase::Shutdown },
            Event::Phase { phase: Phase::End },
            Event::Meta(Box::new(sluice_core::history::Meta {
                schema: 1,
                source: "sim".into(),
                scenario: "s".into(),
                seed: 3,
                topics: vec![],
                producers: vec![sluice_core::history::ProducerMeta { topic: "o".into(), record_bytes: 1_024 }],
                consumers: 2,
                strategy: "none".into(),
                bounds: Default::default(),
                expect: vec![],
                settings: Default::default(),
            })),
            Event::Buffer { consumer: 2, records: 5, bytes: 5_120, credits_outstanding: 0 },
            Event::Metrics {
                consumer: 1,
                back_pressured_ms_per_s: 10,
                busy_ms_per_s: 900,
                idle_ms_per_s: 90,
            },
            Event::Checkpoint { consumer: 0, id: 7, edge: Edge::Start },
            Event::Checkpoint { consumer: 0, id: 7, edge: Edge::End },
            Event::Leader { tp: tp("o/1"), broker: None, epoch: 3, isr: vec![], unclean: false },
            Event::Leader { tp: tp("o/1"), broker: Some(2), epoch: 4, isr: vec![2, 0, 1], unclean: true },
            Event::Fetch { consumer: 1, tp: tp("o/2"), runs: vec![], bytes: 0, hw: 0 },
            Event::Rebalance { generation: 2, edge: Edge::End, protocol: "eager".into() },
        ];
        for m in [
            MemberEvent::Start,
            MemberEvent::Crash,
            MemberEvent::Leave,
            MemberEvent::Evicted,
            MemberEvent::Fenced,
        ] {
            cases.push(Event::Member { consumer: 3, event: m });
        }
        for (i, name) in names.iter().enumerate() {
            let v = nums[i % nums.len()];
            let w = nums[(i + 3) % nums.len()];
            let (c, small) = (i as u32, (v % (u32::MAX as u64 + 1)) as u32);
            let t = tp(name);
            cases.extend([
                Event::Fault { fault: t.clone(), target: "b1".into(), edge: Edge::Start },
                Event::ProduceSend { producer: c, tp: t.clone(), seq: v, count: small },
                Event::ProduceAck { producer: c, tp: t.clone(), seq: v, count: small, offset: w },
                Event::ProduceFail { producer: c, tp: t.clone(), seq: w, count: small, unknown: i % 2 == 0 },
                Event::Leader { tp: t.clone(), broker: Some(c), epoch: small, isr: vec![c, 1], unclean: false },
                Event::Assign { consumer: c, generation: small, tps: vec![t.clone(), tp("o/9")] },
                Event::Revoke { consumer: c, generation: small, tps: vec![tp("o/9"), t.clone()] },
                Event::Seek { consumer: c, tp: t.clone(), offset: v },
                Event::Fetch {
                    consumer: c,
                    tp: t.clone(),
                    runs: vec![
                        Run { offset: v, producer: c, seq: w, count: small },
                        Run { offset: 1, producer: 0, seq: 2, count: 3 },
                    ],
                    bytes: v,
                    hw: w,
                },
                Event::ProcessStart { consumer: c, tp: t.clone(), offset: v, count: small, attempt: 2 },
                Event::ProcessEnd { consumer: c, tp: t.clone(), offset: v, count: small, ok: 1 },
                Event::DeadLetter { consumer: c, tp: t.clone(), offset: w, attempts: small },
                Event::CommitSend { consumer: c, generation: small, tp: t.clone(), offset: v },
                Event::CommitAck { consumer: c, generation: small, tp: t.clone(), offset: w },
                Event::CommitFail { consumer: c, generation: small, tp: t.clone(), offset: v, unknown: i % 3 == 0 },
                Event::Pause { consumer: c, tps: vec![t.clone()] },
                Event::Resume { consumer: c, tps: vec![] },
                Event::CreditGrant { consumer: c, tp: t.clone(), n: small, floating: 1 },
                Event::CreditReturn { consumer: c, tp: t.clone(), n: small },
                Event::Token { consumer: c, tier: t.clone(), n: small, admitted: i % 2 == 1 },
                Event::Lag { tp: t.clone(), hw: v, committed: w },
                Event::Note { text: t.clone() },
                Event::Rebalance { generation: small, edge: Edge::Start, protocol: t.clone() },
            ]);
        }
        for &v in &nums {
            cases.push(Event::Lag { tp: tp("o/0"), hw: v, committed: v / 7 });
        }
        let needs_escape = |ev: &Event| {
            let line = serde_json::to_string(ev).expect("serializes");
            line.contains("\\")
        };
        for ev in cases {
            let by_hand = !matches!(ev, Event::Meta(_)) && !needs_escape(&ev);
            check(ev, by_hand);
        }
    }
}
