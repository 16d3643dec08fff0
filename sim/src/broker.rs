//! Brokers, replication and the controller.
//!
//! - Placement: partition `g` (global index) has replicas `g, g+1, … (mod brokers)`; the first is
//!   the preferred leader.
//! - A leader assigns offsets when a produce request arrives and the batch enters its log when the
//!   disk append completes. acks=0 is answered on receipt, acks=1 after the leader's append,
//!   acks=all once the high watermark covers the batch. acks=all is refused with
//!   NOT_ENOUGH_REPLICAS while the ISR is smaller than `min.insync.replicas`.
//! - Followers fetch from the leader (one request per leader covering all their partitions, long
//!   poll `replica.fetch.wait.max.ms`), append, and report their log end in the next fetch. Each
//!   fetch carries the follower's last epoch; a follower whose log diverges from the leader's is told
//!   the leader's end offset for that epoch and truncates (KIP-101/KIP-320).
//! - High watermark = the minimum log end over the ISR (never decreasing on a leader). A follower
//!   joins the ISR once it has fetched up to the high watermark and leaves it when it has not caught
//!   up for `replica.lag.time.max.ms`.
//! - The controller (KRaft-like, never crashed, metadata visible to everyone at once — a
//!   simplification) fences a broker it cannot reach for `broker.session.timeout.ms`, or at once
//!   when the broker restarted (a new incarnation). Fencing removes the broker from every ISR it is
//!   in (except as the last member, as Kafka does) and moves its leaderships to the first live ISR
//!   member. With no live ISR member the partition goes offline, unless unclean election is enabled:
//!   then any live replica leads and the others truncate to it — acknowledged records are lost.
//! - A crash loses the log tail not yet flushed (`disk.rs`) unless the cluster fsyncs.

use std::collections::{BTreeMap, VecDeque};

use sluice_core::history::Event;
use sluice_core::spec::Acks;

use crate::disk::{Disk, OS_FLUSH_INTERVAL_MS};
use crate::group::{
    Coordinator, CoordinatorConfig, CoordinatorEvent, ErrorCode, Req, Request, Resp, Response,
};
use crate::log::{LogRun, ReplicaLog, Runs};
use crate::net::NodeIdx;
use crate::world::{
    consts::*, FetchResult, Msg, ProdBatch, ProduceResult, ReplicaFetchPart, ReplicaFetchResult,
    World,
};

/// A replica fetch in flight for this long without an answer is abandoned (`replica.socket.timeout.ms`
/// is 30 s in Kafka; shorter here so that followers notice a dead leader's restart sooner).
pub const REPLICA_FETCH_TIMEOUT_MS: u64 = 5_000;

/// The controller's metadata for one partition.
#[derive(Clone, Debug)]
pub struct PartMeta {
    pub replicas: Vec<u32>,
    pub leader: Option<u32>,
    pub epoch: u32,
    pub isr: Vec<u32>,
    /// The leader's view of each replica's log end (indexed like `replicas`).
    pub fol_leo: Vec<u64>,
    /// When each replica last fetched up to the leader's log end.
    pub caught_up_ms: Vec<u64>,
    /// The last high watermark a leader had (reported while the partition is offline).
    pub last_hw: u64,
}

impl PartMeta {
    fn slot(&self, b: u32) -> usize {
        self.replicas
            .iter()
            .position(|&r| r == b)
            .expect("a replica of this partition")
    }
}

#[derive(Clone, Debug, Default)]
pub struct ControllerState {
    pub last_seen_ms: Vec<u64>,
    pub fenced: Vec<bool>,
    pub known_incarnation: Vec<u64>,
}

#[derive(Clone, Debug)]
enum Append {
    Leader {
        req: u64,
        items: Vec<(usize, u32, LogRun)>,
    },
    Follower {
        leader: u32,
        parts: Vec<(u32, Runs, u64)>,
    },
}

#[derive(Clone, Debug)]
struct PendingProduce {
    from: NodeIdx,
    req_id: u64,
    acks: Acks,
    results: Vec<(u32, Option<ProduceResult>)>,
    remaining: usize,
    deadline_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct AckWait {
    req: u64,
    idx: usize,
    tp: u32,
    offset: u64,
    need: u64,
    epoch: u32,
}

#[derive(Clone, Debug)]
enum Parked {
    Replica {
        from: NodeIdx,
        follower: u32,
        parts: Vec<ReplicaFetchPart>,
        deadline_ms: u64,
    },
    Consumer {
        from: NodeIdx,
        req_id: u64,
        parts: Vec<(u32, u64, u32, u64)>,
        deadline_ms: u64,
    },
}

impl Parked {
    fn deadline(&self) -> u64 {
        match self {
            Parked::Replica { deadline_ms, .. } | Parked::Consumer { deadline_ms, .. } => {
                *deadline_ms
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FollowerFetch {
    Idle,
    InFlight { sent_ms: u64 },
    Appending,
}

#[derive(Clone, Debug)]
pub struct Broker {
    pub id: u32,
    pub incarnation: u64,
    /// This broker's replica of each partition (by global index), `None` where it hosts none.
    pub logs: Vec<Option<ReplicaLog>>,
    pub disk: Disk,
    appends: VecDeque<(u64, Append)>,
    reqs: BTreeMap<u64, PendingProduce>,
    next_req: u64,
    ack_waits: Vec<AckWait>,
    parked: Vec<Parked>,
    /// Empty, kept for their capacity: the lists above are swapped with these while they are
    /// walked (every walk re-queues most of what it takes).
    ack_waits_spare: Vec<AckWait>,
    parked_spare: Vec<Parked>,
    fetch_state: Vec<FollowerFetch>,
    /// `(leader, epoch)` of each partition as this broker last acted on it.
    led: Vec<(Option<u32>, u32)>,
    seen_meta: Option<u64>,
    next_flush_ms: u64,
    dirty: bool,
}

impl World {
    pub(crate) fn init_cluster(&mut self) {
        let c = self.spec.cluster.clone();
        let n = self.tps.len();
        for b in 0..c.brokers {
            self.brokers.push(Broker {
                id: b,
                incarnation: 0,
                logs: vec![None; n],
                disk: Disk::new(c.disk_append_ms, c.fsync_on_append),
                appends: VecDeque::new(),
                reqs: BTreeMap::new(),
                next_req: 0,
                ack_waits: Vec::new(),
                parked: Vec::new(),
                ack_waits_spare: Vec::new(),
                parked_spare: Vec::new(),
                fetch_state: vec![FollowerFetch::Idle; c.brokers as usize],
                led: vec![(None, 0); n],
                seen_meta: None,
                next_flush_ms: OS_FLUSH_INTERVAL_MS,
                dirty: false,
            });
        }
        for g in 0..n {
            let replicas: Vec<u32> = (0..c.replication_factor)
                .map(|i| (g as u32 + i) % c.brokers)
                .collect();
            for &r in &replicas {
                self.brokers[r as usize].logs[g] = Some(ReplicaLog::default());
            }
            let k = replicas.len();
            self.meta.push(PartMeta {
                leader: Some(replicas[0]),
                epoch: 1,
                isr: replicas.clone(),
                fol_leo: vec![0; k],
                caught_up_ms: vec![0; k],
                last_hw: 0,
                replicas,
            });
        }
        self.meta_version = 1;
        self.ctrl.last_seen_ms = vec![0; c.brokers as usize];
        self.ctrl.fenced = vec![false; c.brokers as usize];
        self.ctrl.known_incarnation = vec![0; c.brokers as usize];
    }

    pub(crate) fn record_leaders(&mut self) {
        for g in 0..self.tps.len() {
            self.record_leader(g as u32, false);
        }
    }

    fn record_leader(&mut self, g: u32, unclean: bool) {
        let m = &self.meta[g as usize];
        let ev = Event::Leader {
            tp: self.tps[g as usize].name.clone(),
            broker: m.leader,
            epoch: m.epoch,
            isr: m.isr.clone(),
            unclean,
        };
        self.record(ev);
    }

    /// The high watermark consumers see for partition `g`.
    pub fn partition_hw(&self, g: u32) -> u64 {
        let m = &self.meta[g as usize];
        match m.leader {
            Some(l) if self.up[self.layout.broker(l)] => self.brokers[l as usize].logs[g as usize]
                .as_ref()
                .map(|l| l.hw)
                .unwrap_or(m.last_hw),
            _ => m.last_hw,
        }
    }

    fn refresh_roles(&mut self, b: u32) {
        if self.brokers[b as usize].seen_meta == Some(self.meta_version) {
            return;
        }
        let br = &mut self.brokers[b as usize];
        br.seen_meta = Some(self.meta_version);
        let mut led = Vec::new();
        for (g, m) in self.meta.iter().enumerate() {
            if m.leader == Some(b) && br.logs[g].is_some() {
                led.push(g as u32);
            }
            let Some(log) = br.logs[g].as_mut() else {
                continue;
            };
            let now = (m.leader, m.epoch);
            if br.led[g] != now {
                if m.leader == Some(b) {
                    log.next_offset = log.leo;
                    log.hw = log.hw.min(log.leo);
                }
                br.led[g] = now;
            }
        }
        // The ISR may have shrunk: the high watermark may move.
        for g in led {
            self.advance_hw(b, g);
        }
    }

    pub(crate) fn broker_deliver(&mut self, b: u32, msg: Msg) {
        self.refresh_roles(b);
        match msg {
            Msg::Produce {
                req_id,
                producer,
                acks,
                idempotent,
                batches,
            } => {
                let from = self.layout.producer(producer);
                self.handle_produce(b, from, req_id, producer, acks, idempotent, batches)
            }
            Msg::ReplicaFetch { follower, parts } => {
                let from = self.layout.broker(follower);
                match self.eval_replica_fetch(b, follower, &parts, false) {
                    Some(resp) => self.send(
                        self.layout.broker(b),
                        from,
                        Msg::ReplicaFetchResp {
                            leader: b,
                            parts: resp,
                        },
                    ),
                    None => {
                        let deadline_ms = self.now_ms + REPLICA_FETCH_WAIT_MS;
                        self.brokers[b as usize].parked.push(Parked::Replica {
                            from,
                            follower,
                            parts,
                            deadline_ms,
                        })
                    }
                }
            }
            Msg::ReplicaFetchResp { leader, parts } => {
                self.handle_replica_fetch_resp(b, leader, parts)
            }
            Msg::Fetch {
                consumer,
                req_id,
                wait_ms,
                parts,
            } => {
                let from = self.layout.consumer(consumer);
                match self.eval_consumer_fetch(b, req_id, &parts, false) {
                    Some(resp) => self.send(
                        self.layout.broker(b),
                        from,
                        Msg::FetchResp {
                            req_id,
                            parts: resp,
                        },
                    ),
                    None => {
                        let deadline_ms = self.now_ms + wait_ms;
                        self.brokers[b as usize].parked.push(Parked::Consumer {
                            from,
                            req_id,
                            parts,
                            deadline_ms,
                        })
                    }
                }
            }
            Msg::Group(req) => self.handle_group_request(b, req),
            Msg::ProduceResp { .. } | Msg::FetchResp { .. } | Msg::GroupResp(_) => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_produce(
        &mut self,
        b: u32,
        from: NodeIdx,
        req_id: u64,
        producer: u32,
        acks: Acks,
        idempotent: bool,
        batches: Vec<ProdBatch>,
    ) {
        let min_isr = self.spec.cluster.min_insync_replicas as usize;
        let registered = self.registered(b);
        let rid = self.brokers[b as usize].next_req;
        self.brokers[b as usize].next_req += 1;
        let mut results: Vec<(u32, Option<ProduceResult>)> = Vec::with_capacity(batches.len());
        let mut items = Vec::new();
        let mut waits = Vec::new();
        for (i, pb) in batches.iter().enumerate() {
            let m = &self.meta[pb.tp as usize];
            let epoch = m.epoch;
            let res = if m.leader != Some(b) || !registered {
                Some(ProduceResult::NotLeader)
            } else if acks == Acks::All && m.isr.len() < min_isr {
                Some(ProduceResult::NotEnoughReplicas)
            } else {
                let log = self.brokers[b as usize].logs[pb.tp as usize]
                    .as_mut()
                    .expect("the leader hosts a replica");
                let dup = if idempotent {
                    log.find_seq(producer, pb.seq)
                } else {
                    None
                };
                match dup {
                    Some(offset) if acks == Acks::All && offset + pb.count as u64 > log.hw => {
                        waits.push(AckWait {
                            req: rid,
                            idx: i,
                            tp: pb.tp,
                            offset,
                            need: offset + pb.count as u64,
                            epoch,
                        });
                        None
                    }
                    Some(offset) => Some(ProduceResult::Ok { offset }),
                    None => {
                        let offset = log.next_offset;
                        log.next_offset += pb.count as u64;
                        items.push((
                            i,
                            pb.tp,
                            LogRun {
                                offset,
                                producer,
                                seq: pb.seq,
                                count: pb.count,
                                epoch,
                            },
                        ));
                        if acks == Acks::None {
                            Some(ProduceResult::Ok { offset })
                        } else {
                            None
                        }
                    }
                }
            };
            results.push((pb.tp, res));
        }
        let now = self.now_ms;
        let br = &mut self.brokers[b as usize];
        if !items.is_empty() {
            let done = br.disk.append(now);
            br.appends
                .push_back((done, Append::Leader { req: rid, items }));
        }
        br.ack_waits.extend(waits);
        let remaining = results.iter().filter(|r| r.1.is_none()).count();
        let p = PendingProduce {
            from,
            req_id,
            acks,
            results,
            remaining,
            deadline_ms: now + REQUEST_TIMEOUT_MS,
        };
        if remaining == 0 {
            self.respond_produce(b, p);
        } else {
            debug_assert!(
                self.brokers[b as usize]
                    .reqs
                    .last_key_value()
                    .is_none_or(|(_, q)| q.deadline_ms <= p.deadline_ms),
                "deadlines grow with request ids"
            );
            self.brokers[b as usize].reqs.insert(rid, p);
            // Idempotent duplicates may already be covered by the high watermark check below.
            self.brokers[b as usize].dirty = true;
        }
    }

    fn respond_produce(&mut self, b: u32, p: PendingProduce) {
        let results = p
            .results
            .into_iter()
            .map(|(tp, r)| (tp, r.unwrap_or(ProduceResult::Timeout)))
            .collect();
        self.send(
            self.layout.broker(b),
            p.from,
            Msg::ProduceResp {
                req_id: p.req_id,
                results,
            },
        );
    }

    fn complete(&mut self, b: u32, req: u64, idx: usize, res: ProduceResult) {
        let br = &mut self.brokers[b as usize];
        let Some(p) = br.reqs.get_mut(&req) else {
            return;
        };
        if p.results[idx].1.is_some() {
            return;
        }
        p.results[idx].1 = Some(res);
        p.remaining -= 1;
        if p.remaining == 0 {
            let p = br.reqs.remove(&req).expect("present");
            self.respond_produce(b, p);
        }
    }

    /// Raises the high watermark of `g` on its leader `b` to the minimum log end over the ISR.
    fn advance_hw(&mut self, b: u32, g: u32) {
        let m = &self.meta[g as usize];
        if m.leader != Some(b) {
            return;
        }
        let Some(log) = self.brokers[b as usize].logs[g as usize].as_ref() else {
            return;
        };
        let mut min = log.leo;
        for &r in &m.isr {
            if r != b {
                min = min.min(m.fol_leo[m.slot(r)]);
            }
        }
        let hw = log.hw.max(min.min(log.leo));
        if hw > log.hw {
            self.brokers[b as usize].logs[g as usize]
                .as_mut()
                .expect("checked")
                .hw = hw;
            self.meta[g as usize].last_hw = hw;
            self.brokers[b as usize].dirty = true;
        }
    }

    /// A follower fetch: `None` when it should wait (nothing new and not forced).
    fn eval_replica_fetch(
        &mut self,
        b: u32,
        f: u32,
        parts: &[ReplicaFetchPart],
        force: bool,
    ) -> Option<Vec<(u32, ReplicaFetchResult)>> {
        let now = self.now_ms;
        let mut out = Vec::with_capacity(parts.len());
        let mut respond = force;
        let mut isr_changed = Vec::new();
        let registered = self.registered(b);
        for p in parts {
            let g = p.tp as usize;
            let m = &self.meta[g];
            if m.leader != Some(b) || m.epoch != p.leader_epoch || !registered {
                out.push((p.tp, ReplicaFetchResult::NotLeader));
                respond = true;
                continue;
            }
            let log = self.brokers[b as usize].logs[g]
                .as_ref()
                .expect("leader hosts a replica");
            let end = if p.last_epoch > 0 {
                log.end_offset_for_epoch(p.last_epoch).min(log.leo)
            } else {
                log.leo
            };
            if p.fetch_offset > end {
                out.push((p.tp, ReplicaFetchResult::Diverging { end_offset: end }));
                respond = true;
                continue;
            }
            let (leo, hw) = (log.leo, log.hw);
            let mut runs = Runs::new();
            log.read(p.fetch_offset, leo, REPLICA_FETCH_RECORDS_MAX, &mut runs);
            let m = &mut self.meta[g];
            let slot = m.slot(f);
            m.fol_leo[slot] = p.fetch_offset;
            if p.fetch_offset >= leo {
                m.caught_up_ms[slot] = now;
            }
            if !m.isr.contains(&f) && p.fetch_offset >= hw && !self.ctrl.fenced[f as usize] {
                m.isr.push(f);
                let order = m.replicas.clone();
                m.isr.sort_by_key(|r| order.iter().position(|o| o == r));
                isr_changed.push(p.tp);
            }
            if !runs.is_empty() {
                respond = true;
            }
            out.push((p.tp, ReplicaFetchResult::Data { runs, hw }));
        }
        for p in parts {
            self.advance_hw(b, p.tp);
        }
        if !isr_changed.is_empty() {
            self.meta_version += 1;
            for g in isr_changed {
                self.record_leader(g, false);
            }
        }
        if respond {
            // The high watermark may have moved with this fetch: report the current one.
            for (tp, r) in out.iter_mut() {
                if let ReplicaFetchResult::Data { hw, .. } = r {
                    *hw = self.brokers[b as usize].logs[*tp as usize]
                        .as_ref()
                        .map(|l| l.hw)
                        .unwrap_or(*hw);
                }
            }
            Some(out)
        } else {
            None
        }
    }

    /// Answers a consumer fetch, or `None` to keep it parked. Each partition returns at most its
    /// records and bytes asked for, the whole reply at most `fetch_max_bytes`, except that the
    /// first partition served that has data returns its first record whatever its size (KIP-74).
    /// Unless `force` (its wait is over), a fetch is answered only when its reply would carry
    /// `fetch_min_bytes`, or a partition is no longer led here.
    /// Partitions are served from a starting point that rotates with the request id, so that
    /// when the byte budget runs out it is not always the same partitions that go without; the
    /// reply lists them in the request's order.
    fn eval_consumer_fetch(
        &mut self,
        b: u32,
        req_id: u64,
        parts: &[(u32, u64, u32, u64)],
        force: bool,
    ) -> Option<Vec<(u32, FetchResult)>> {
        let registered = self.registered(b);
        // A parked fetch is looked at again whenever the broker changes: first, cheaply, whether
        // any partition could answer (not led here, or records below the high watermark).
        let may_answer = |&(tp, offset, max, _): &(u32, u64, u32, u64)| {
            self.meta[tp as usize].leader != Some(b)
                || !registered
                || self.brokers[b as usize].logs[tp as usize]
                    .as_ref()
                    .is_none_or(|l| max > 0 && offset < l.hw.min(l.leo))
        };
        if !force && !parts.iter().any(may_answer) {
            return None;
        }
        let mut out: Vec<(u32, FetchResult)> = parts
            .iter()
            .map(|&(tp, ..)| (tp, FetchResult::NotLeader))
            .collect();
        let mut respond = force;
        let mut buf = Vec::new();
        let mut budget = self.spec.consumers.fetch_max_bytes;
        let mut got = 0u64;
        let mut min_one = true;
        let start = (req_id % parts.len().max(1) as u64) as usize;
        for k in 0..parts.len() {
            let i = (start + k) % parts.len();
            let (tp, offset, max, max_bytes) = parts[i];
            let m = &self.meta[tp as usize];
            if m.leader != Some(b) || !registered {
                respond = true;
                continue;
            }
            let log = self.brokers[b as usize].logs[tp as usize]
                .as_ref()
                .expect("leader hosts a replica");
            buf.clear();
            let (_, bytes) = log.read_sized(
                offset,
                log.hw,
                max as u64,
                max_bytes.min(budget),
                min_one,
                &self.record_bytes,
                &mut buf,
            );
            if buf.is_empty() {
                out[i].1 = FetchResult::Empty { hw: log.hw };
            } else {
                min_one = false;
                got += bytes;
                budget = budget.saturating_sub(bytes);
                out[i].1 = FetchResult::Data {
                    runs: buf.iter().map(|r| r.run()).collect(),
                    hw: log.hw,
                };
            }
        }
        respond |= got > 0 && got >= self.spec.consumers.fetch_min_bytes;
        respond.then_some(out)
    }

    fn handle_replica_fetch_resp(
        &mut self,
        b: u32,
        leader: u32,
        parts: Vec<(u32, ReplicaFetchResult)>,
    ) {
        self.brokers[b as usize].fetch_state[leader as usize] = FollowerFetch::Idle;
        let mut to_append = Vec::new();
        for (tp, r) in parts {
            if self.meta[tp as usize].leader == Some(b) {
                continue;
            }
            let Some(log) = self.brokers[b as usize].logs[tp as usize].as_mut() else {
                continue;
            };
            match r {
                ReplicaFetchResult::Data { runs, hw } => {
                    if runs.first().is_some_and(|r| r.offset == log.leo) {
                        to_append.push((tp, runs, hw));
                    } else if runs.is_empty() {
                        log.hw = log.hw.max(hw.min(log.leo));
                    }
                }
                ReplicaFetchResult::Diverging { end_offset } => log.truncate(end_offset),
                ReplicaFetchResult::NotLeader => {}
            }
        }
        if !to_append.is_empty() {
            let now = self.now_ms;
            let br = &mut self.brokers[b as usize];
            let done = br.disk.append(now);
            br.appends.push_back((
                done,
                Append::Follower {
                    leader,
                    parts: to_append,
                },
            ));
            br.fetch_state[leader as usize] = FollowerFetch::Appending;
        }
    }

    pub(crate) fn broker_tick(&mut self, b: u32) -> u64 {
        self.refresh_roles(b);
        let now = self.now_ms;
        let fsync = self.spec.cluster.fsync_on_append;
        // The OS flushes dirty pages periodically.
        if now >= self.brokers[b as usize].next_flush_ms {
            let br = &mut self.brokers[b as usize];
            for log in br.logs.iter_mut().flatten() {
                log.synced = log.leo;
            }
            br.next_flush_ms = now + OS_FLUSH_INTERVAL_MS;
        }
        // Disk appends that completed.
        while self.brokers[b as usize]
            .appends
            .front()
            .is_some_and(|a| a.0 <= now)
        {
            let (_, a) = self.brokers[b as usize]
                .appends
                .pop_front()
                .expect("checked");
            match a {
                Append::Leader { req, items } => {
                    let acks = self.brokers[b as usize].reqs.get(&req).map(|p| p.acks);
                    for (idx, tp, run) in items {
                        let m = &self.meta[tp as usize];
                        let still = m.leader == Some(b) && m.epoch == run.epoch;
                        let log = self.brokers[b as usize].logs[tp as usize]
                            .as_mut()
                            .expect("replica");
                        if !still || run.offset != log.leo {
                            self.complete(b, req, idx, ProduceResult::NotLeader);
                            continue;
                        }
                        log.append(run);
                        if fsync {
                            log.synced = log.leo;
                        }
                        self.brokers[b as usize].dirty = true;
                        match acks {
                            Some(Acks::Leader) => {
                                self.complete(b, req, idx, ProduceResult::Ok { offset: run.offset })
                            }
                            Some(Acks::All) => self.brokers[b as usize].ack_waits.push(AckWait {
                                req,
                                idx,
                                tp,
                                offset: run.offset,
                                need: run.end(),
                                epoch: run.epoch,
                            }),
                            _ => {}
                        }
                        self.advance_hw(b, tp);
                    }
                }
                Append::Follower { leader, parts } => {
                    for (tp, runs, hw) in parts {
                        if self.meta[tp as usize].leader == Some(b) {
                            continue;
                        }
                        let log = self.brokers[b as usize].logs[tp as usize]
                            .as_mut()
                            .expect("replica");
                        for r in runs {
                            if r.offset == log.leo {
                                log.append(r);
                            }
                        }
                        if fsync {
                            log.synced = log.leo;
                        }
                        log.hw = log.hw.max(hw.min(log.leo));
                    }
                    if self.brokers[b as usize].fetch_state[leader as usize]
                        == FollowerFetch::Appending
                    {
                        self.brokers[b as usize].fetch_state[leader as usize] = FollowerFetch::Idle;
                    }
                }
            }
        }
        // Produce requests past their timeout. Ids and deadlines grow together (every request
        // gets the same timeout), so the expired ones are the first.
        while let Some(e) = self.brokers[b as usize].reqs.first_entry() {
            if e.get().deadline_ms > now {
                break;
            }
            let (k, p) = e.remove_entry();
            self.brokers[b as usize].ack_waits.retain(|w| w.req != k);
            self.respond_produce(b, p);
        }
        // acks=all waiters and parked fetches, when something moved.
        if std::mem::take(&mut self.brokers[b as usize].dirty) {
            let br = &mut self.brokers[b as usize];
            let mut waits = std::mem::take(&mut br.ack_waits_spare);
            std::mem::swap(&mut waits, &mut br.ack_waits);
            for w in waits.drain(..) {
                let m = &self.meta[w.tp as usize];
                if m.leader != Some(b) || m.epoch != w.epoch {
                    self.complete(b, w.req, w.idx, ProduceResult::NotLeader);
                    continue;
                }
                let hw = self.brokers[b as usize].logs[w.tp as usize]
                    .as_ref()
                    .map(|l| l.hw)
                    .unwrap_or(0);
                if hw >= w.need
                    && self.meta[w.tp as usize].isr.len()
                        < self.spec.cluster.min_insync_replicas as usize
                {
                    // Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: written, but not to enough replicas.
                    self.complete(b, w.req, w.idx, ProduceResult::NotEnoughReplicasAfterAppend);
                } else if hw >= w.need {
                    self.complete(b, w.req, w.idx, ProduceResult::Ok { offset: w.offset });
                } else {
                    self.brokers[b as usize].ack_waits.push(w);
                }
            }
            self.brokers[b as usize].ack_waits_spare = waits;
            self.serve_parked(b, false);
        }
        self.serve_parked(b, true);
        // The group coordinator, if hosted here.
        let mut next = u64::MAX;
        if b == self.coordinator_broker {
            if let Some(t) = self.coordinator.as_ref().and_then(|c| c.poll_timeout()) {
                if t <= now * 1_000 {
                    if let Some(c) = self.coordinator.as_mut() {
                        c.handle_timeout(now * 1_000);
                    }
                    self.drain_coordinator();
                }
            }
            if let Some(t) = self.coordinator.as_ref().and_then(|c| c.poll_timeout()) {
                next = next.min(t.div_ceil(1_000));
            }
        }
        // Follower fetches: one request per leader covering every partition followed from it, sent
        // to each leader with no request of ours in flight (built only then: most ticks have one
        // in flight to every leader).
        let nb = self.spec.cluster.brokers;
        for l in 0..nb {
            if l == b {
                continue;
            }
            let st = self.brokers[b as usize].fetch_state[l as usize];
            if let FollowerFetch::InFlight { sent_ms } = st {
                if now >= sent_ms + REPLICA_FETCH_TIMEOUT_MS {
                    self.brokers[b as usize].fetch_state[l as usize] = FollowerFetch::Idle;
                } else {
                    next = next.min(sent_ms + REPLICA_FETCH_TIMEOUT_MS);
                }
            }
            if self.brokers[b as usize].fetch_state[l as usize] != FollowerFetch::Idle {
                continue;
            }
            let logs = &self.brokers[b as usize].logs;
            let mut parts = Vec::with_capacity(self.meta.len());
            for (g, m) in self.meta.iter().enumerate() {
                if m.leader != Some(l) {
                    continue;
                }
                if let Some(log) = logs[g].as_ref() {
                    parts.push(ReplicaFetchPart {
                        tp: g as u32,
                        fetch_offset: log.leo,
                        last_epoch: log.last_epoch(),
                        leader_epoch: m.epoch,
                    });
                }
            }
            if parts.is_empty() {
                continue;
            }
            self.brokers[b as usize].fetch_state[l as usize] = FollowerFetch::InFlight { sent_ms: now };
            next = next.min(now + REPLICA_FETCH_TIMEOUT_MS);
            self.send(
                self.layout.broker(b),
                self.layout.broker(l),
                Msg::ReplicaFetch { follower: b, parts },
            );
        }
        let br = &self.brokers[b as usize];
        next = next.min(br.next_flush_ms);
        if let Some(a) = br.appends.front() {
            next = next.min(a.0);
        }
        for p in &br.parked {
            next = next.min(p.deadline());
        }
        if let Some((_, p)) = br.reqs.first_key_value() {
            next = next.min(p.deadline_ms);
        }
        next
    }

    /// Answers parked fetches that have data (`expired_only = false`) or whose wait is over.
    fn serve_parked(&mut self, b: u32, expired_only: bool) {
        let now = self.now_ms;
        let br = &mut self.brokers[b as usize];
        if expired_only && br.parked.iter().all(|p| p.deadline() > now) {
            return;
        }
        let mut parked = std::mem::take(&mut br.parked_spare);
        std::mem::swap(&mut parked, &mut br.parked);
        let me = self.layout.broker(b);
        for p in parked.drain(..) {
            let force = p.deadline() <= now;
            if expired_only && !force {
                self.brokers[b as usize].parked.push(p);
                continue;
            }
            match p {
                Parked::Replica {
                    from,
                    follower,
                    ref parts,
                    ..
                } => match self.eval_replica_fetch(b, follower, parts, force) {
                    Some(resp) => self.send(
                        me,
                        from,
                        Msg::ReplicaFetchResp {
                            leader: b,
                            parts: resp,
                        },
                    ),
                    None => self.brokers[b as usize].parked.push(p),
                },
                Parked::Consumer {
                    from,
                    req_id,
                    ref parts,
                    ..
                } => match self.eval_consumer_fetch(b, req_id, parts, force) {
                    Some(resp) => self.send(
                        me,
                        from,
                        Msg::FetchResp {
                            req_id,
                            parts: resp,
                        },
                    ),
                    None => self.brokers[b as usize].parked.push(p),
                },
            }
        }
        self.brokers[b as usize].parked_spare = parked;
    }

    pub(crate) fn broker_crash(&mut self, b: u32) {
        let fsync = self.spec.cluster.fsync_on_append;
        let br = &mut self.brokers[b as usize];
        for log in br.logs.iter_mut().flatten() {
            if !fsync {
                let keep = log.synced;
                log.truncate(keep);
            }
            log.next_offset = log.leo;
        }
        br.appends.clear();
        br.reqs.clear();
        br.ack_waits.clear();
        br.parked.clear();
        br.fetch_state
            .iter_mut()
            .for_each(|s| *s = FollowerFetch::Idle);
        br.disk.reset();
        br.led.iter_mut().for_each(|l| *l = (None, 0));
        br.seen_meta = None;
        br.dirty = false;
        // A group coordinator here stays unreachable until the controller fences this broker (its
        // session times out, or it registers anew on restart): only then does the offsets
        // partition get a new leader, which loads the group (`fence`).
        // A dead process resets its connections: peers see their requests fail at once.
        for p in 0..self.layout.producers {
            self.producer_disconnect(p, b);
        }
        for c in 0..self.layout.consumers {
            self.consumer_disconnect(c, b, false);
        }
        for f in 0..self.spec.cluster.brokers {
            if f != b {
                self.brokers[f as usize].fetch_state[b as usize] = FollowerFetch::Idle;
                self.poke(self.layout.broker(f));
            }
        }
    }

    pub(crate) fn broker_restart(&mut self, b: u32) {
        let now = self.now_ms;
        let br = &mut self.brokers[b as usize];
        br.incarnation += 1;
        br.next_flush_ms = now + OS_FLUSH_INTERVAL_MS;
        // The broker registers with the controller as it starts.
        self.controller_tick();
    }

    /// The controller's periodic work: liveness, fencing, elections, ISR shrink.
    pub(crate) fn controller_tick(&mut self) {
        let now = self.now_ms;
        let ctrl = self.layout.controller();
        let mut changed = false;
        for b in 0..self.spec.cluster.brokers {
            let n = self.layout.broker(b);
            let alive = self.up[n] && !self.net.cut(n, ctrl) && !self.net.cut(ctrl, n);
            let inc = self.brokers[b as usize].incarnation;
            if alive && inc != self.ctrl.known_incarnation[b as usize] {
                // A restarted broker registers anew: its old leaderships and ISR places are void.
                self.ctrl.known_incarnation[b as usize] = inc;
                if !self.ctrl.fenced[b as usize] {
                    self.fence(b);
                }
                changed = true;
            }
            if alive {
                self.ctrl.last_seen_ms[b as usize] = now;
                if self.ctrl.fenced[b as usize] {
                    self.unfence(b);
                    changed = true;
                }
            } else if !self.ctrl.fenced[b as usize]
                && now >= self.ctrl.last_seen_ms[b as usize] + BROKER_SESSION_TIMEOUT_MS
            {
                self.fence(b);
                changed = true;
            }
        }
        // ISR shrink (the leader's AlterPartition, applied by the controller).
        let lag_max = self.spec.cluster.replica_lag_time_max_ms;
        for g in 0..self.meta.len() {
            let m = &self.meta[g];
            let Some(l) = m.leader else { continue };
            // Only a live leader that reaches the controller can shrink its ISR (AlterPartition).
            let ln = self.layout.broker(l);
            if !self.up[ln] || self.ctrl.fenced[l as usize] || self.net.cut(ln, ctrl) {
                continue;
            }
            let m = &self.meta[g];
            let out: Vec<u32> = m
                .isr
                .iter()
                .copied()
                .filter(|&r| r != l && now >= m.caught_up_ms[m.slot(r)] + lag_max)
                .collect();
            if !out.is_empty() {
                self.meta[g].isr.retain(|r| !out.contains(r));
                self.record_leader(g as u32, false);
                changed = true;
            }
        }
        // Offline partitions: a live ISR member may lead again; otherwise unclean election if enabled.
        for g in 0..self.meta.len() {
            if self.meta[g].leader.is_none() && self.elect(g as u32, None) {
                changed = true;
            }
        }
        if changed {
            self.meta_version += 1;
            self.poke_brokers();
        }
    }

    /// Whether the controller knows this incarnation of `b` (a restarted broker acts as a leader
    /// only after it registered again).
    fn registered(&self, b: u32) -> bool {
        self.ctrl.known_incarnation[b as usize] == self.brokers[b as usize].incarnation
            && !self.ctrl.fenced[b as usize]
    }

    fn usable(&self, b: u32) -> bool {
        self.up[self.layout.broker(b)] && !self.ctrl.fenced[b as usize]
    }

    fn fence(&mut self, b: u32) {
        self.ctrl.fenced[b as usize] = true;
        if b == self.coordinator_broker {
            self.move_coordinator();
        }
        for g in 0..self.meta.len() {
            let m = &mut self.meta[g];
            if !m.replicas.contains(&b) {
                continue;
            }
            let mut touched = false;
            if m.isr.contains(&b) && m.isr.len() > 1 {
                m.isr.retain(|&r| r != b);
                touched = true;
            }
            if m.leader == Some(b) {
                self.elect(g as u32, Some(b));
            } else if touched {
                self.record_leader(g as u32, false);
            }
        }
    }

    fn unfence(&mut self, b: u32) {
        self.ctrl.fenced[b as usize] = false;
        for g in 0..self.meta.len() {
            if self.meta[g].leader.is_none() && self.meta[g].replicas.contains(&b) {
                self.elect(g as u32, None);
            }
        }
    }

    /// Elects a leader for `g` (its current leader `old`, if any, is leaving). Returns whether the
    /// metadata changed.
    fn elect(&mut self, g: u32, old: Option<u32>) -> bool {
        let unclean_ok = self.spec.cluster.unclean_leader_election;
        let m = &self.meta[g as usize];
        let clean = m
            .isr
            .iter()
            .copied()
            .find(|&r| Some(r) != old && self.usable(r));
        let (leader, unclean) = match clean {
            Some(r) => (Some(r), false),
            None if unclean_ok => match m
                .replicas
                .iter()
                .copied()
                .find(|&r| Some(r) != old && self.usable(r))
            {
                Some(r) => (Some(r), true),
                None => (None, false),
            },
            None => (None, false),
        };
        if leader.is_none() && old.is_none() {
            return false;
        }
        let now = self.now_ms;
        let m = &mut self.meta[g as usize];
        m.leader = leader;
        m.epoch += 1;
        if unclean {
            m.isr = vec![leader.expect("unclean implies a leader")];
        }
        m.fol_leo.iter_mut().for_each(|x| *x = 0);
        m.caught_up_ms.iter_mut().for_each(|x| *x = now);
        self.record_leader(g, unclean);
        true
    }

    // ---- the group coordinator hosted by a broker ----

    fn coordinator_config(&self, epoch: u32) -> CoordinatorConfig {
        let k = &self.spec.consumers;
        let partitions = self.spec.subscribed_partitions();
        CoordinatorConfig {
            assignor: k.assignor,
            members_max: (k.count as usize * 2).max(8),
            initial_rebalance_delay_ms: self.spec.rebalance_delay_ms(),
            delay_every_join_phase: self.spec.cluster.broker_profile.holds_every_join_phase(),
            group_max_session_timeout_ms: k.session_timeout_ms.max(k.heartbeat_interval_ms + 1),
            offsets_log_records_max: partitions.len() * 4 + 16,
            partitions,
            epoch,
            bugs: self.bugs,
        }
    }

    pub(crate) fn init_group(&mut self) {
        let brokers = self.spec.cluster.brokers as u64;
        self.coordinator_broker =
            (crate::dist::fnv(self.spec.consumers.group.as_bytes()) % brokers) as u32;
        self.coordinator_epoch = 0;
        // The config is validated with the scenario; a bad one is reported by `run` before this.
        self.coordinator = Coordinator::new(self.coordinator_config(0)).ok();
    }

    /// The controller fenced the coordinator's broker: the next live, unfenced broker (the offsets
    /// partition's new leader) takes the group over, rebuilt from the replicated offsets log. Until
    /// then (a crash is noticed after `BROKER_SESSION_TIMEOUT_MS`, as for any partition leader) the
    /// group has no coordinator that answers.
    pub(crate) fn move_coordinator(&mut self) {
        let Some(old) = self.coordinator.take() else {
            return;
        };
        let log = old.offsets_log().to_vec();
        let n = self.spec.cluster.brokers;
        let mut next = self.coordinator_broker;
        for i in 1..=n {
            let cand = (self.coordinator_broker + i) % n;
            if self.up[self.layout.broker(cand)] && !self.ctrl.fenced[cand as usize] {
                next = cand;
                break;
            }
        }
        self.coordinator_broker = next;
        self.coordinator_epoch += 1;
        let cfg = self.coordinator_config(self.coordinator_epoch);
        self.coordinator = Coordinator::restore(cfg, &log, self.now_ms * 1_000).ok();
        self.poke(self.layout.broker(next));
    }

    fn handle_group_request(&mut self, b: u32, req: Req) {
        let from = self.layout.consumer(req.from.0);
        if b != self.coordinator_broker || self.coordinator.is_none() {
            let resp = error_response(&req, ErrorCode::NotCoordinator);
            self.send(self.layout.broker(b), from, Msg::GroupResp(resp));
            return;
        }
        let now_us = self.now_ms * 1_000;
        if let Some(c) = self.coordinator.as_mut() {
            c.handle_request(now_us, req);
        }
        self.drain_coordinator();
    }

    pub(crate) fn drain_coordinator(&mut self) {
        let me = self.layout.broker(self.coordinator_broker);
        let protocol = format!("{:?}", self.spec.consumers.protocol).to_lowercase();
        loop {
            let Some(c) = self.coordinator.as_mut() else {
                return;
            };
            let Some(out) = c.poll_transmit() else { break };
            let consumer = out.to.0;
            if consumer >= self.layout.consumers {
                continue;
            }
            let is_commit = matches!(out.resp.body, Response::OffsetCommit(_));
            if is_commit && self.consumers[consumer as usize].commit_replies_lost() {
                continue;
            }
            self.send(me, self.layout.consumer(consumer), Msg::GroupResp(out.resp));
        }
        loop {
            let Some(c) = self.coordinator.as_mut() else {
                return;
            };
            let Some(ev) = c.poll_event() else { break };
            let e = match ev {
                CoordinatorEvent::RebalanceStart { generation } => Event::Rebalance {
                    generation,
                    edge: sluice_core::history::Edge::Start,
                    protocol: protocol.clone(),
                },
                CoordinatorEvent::RebalanceEnd { generation, .. } => Event::Rebalance {
                    generation,
                    edge: sluice_core::history::Edge::End,
                    protocol: protocol.clone(),
                },
                CoordinatorEvent::Evicted {
                    consumer,
                    member_id,
                    ..
                } => {
                    // A restarted consumer joins as a new member; the coordinator may still
                    // expire its previous incarnation. That is not the running member's eviction.
                    let current = self
                        .consumers
                        .get(consumer.0 as usize)
                        .and_then(|k| k.member.as_ref())
                        .and_then(|m| m.member_id());
                    if current.is_some_and(|id| id != member_id) {
                        Event::Note {
                            text: format!(
                                "the coordinator expired c{}'s previous member {member_id:?}; its running member is {:?}",
                                consumer.0,
                                current.expect("checked")
                            ),
                        }
                    } else {
                        Event::Member {
                            consumer: consumer.0,
                            event: sluice_core::history::MemberEvent::Evicted,
                        }
                    }
                }
                CoordinatorEvent::Left { consumer, .. } => Event::Member {
                    consumer: consumer.0,
                    event: sluice_core::history::MemberEvent::Leave,
                },
            };
            self.record(e);
        }
    }
}

/// The response a broker that is not (or not yet) the coordinator gives to a group request.
pub fn error_response(req: &Req, code: ErrorCode) -> Resp {
    let body = match &req.body {
        Request::JoinGroup(_) => Response::JoinGroup(Err(code)),
        Request::SyncGroup { .. } => Response::SyncGroup(Err(code)),
        Request::Heartbeat { .. } => Response::Heartbeat(Err(code)),
        Request::LeaveGroup { .. } => Response::LeaveGroup(Err(code)),
        Request::OffsetCommit { .. } => Response::OffsetCommit(Err(code)),
        Request::OffsetFetch { .. } => Response::OffsetFetch(Err(code)),
    };
    Resp {
        corr: req.corr,
        body,
    }
}
