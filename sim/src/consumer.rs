//! Consumers: each runs the group member (`group::Member`) and the core `Pipeline`, and executes
//! what they decide against the simulated cluster.
//!
//! - Fetch: the pipeline asks per partition; the driver sends one request per leader broker
//!   covering every partition it wants from that broker (long poll `fetch.wait.max.ms`).
//! - Process: a worker is busy for the run's processing time, drawn in one go for the whole run
//!   (Gamma(n, mean) for exponential times, n·ms for constant, a normal approximation of the sum
//!   for log-normal). Whether a record is poison, or fails transiently on an attempt, depends only
//!   on the seed, the partition, the offset (and the attempt).
//! - Commit: OffsetCommit through the member to the coordinator; a lost reply ends as unknown.
//! - DeadLetter: a produce to the dead-letter topic, acknowledged after `DLQ_APPEND_MS`.
//! - `max.poll.interval.ms`: the pipeline's `last_poll_us` is handed to the member.

use std::collections::BTreeMap;

use sluice_core::history::{Edge, Event, MemberEvent, Run};
use sluice_core::pipeline::{
    Action as PAction, CheckpointEdge, CommitOutcome, Input, Pipeline, PipelineConfig,
};
use sluice_core::spec::{LimiterState, OffsetReset, ProcessingTime};
use sluice_core::types::{Generation, MemberId, Offset, Tp};

use crate::dist::{hash_unit, Stream};
use crate::group::{Action as GAction, LostReason, Member, MemberConfig};
use crate::world::{consts::*, FetchResult, Msg, World};

/// Group requests are retried this many times before the member rediscovers the coordinator.
pub const GROUP_RETRIES_MAX: u32 = 3;
/// Work items (pipeline and member actions) handled in one step at most; the rest waits for the
/// next step (a bound against a livelock between the two state machines).
pub const ACTIONS_PER_STEP_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Job {
    done_ms: u64,
    tp: Tp,
    offset: Offset,
    count: u32,
    ok: u32,
}

#[derive(Clone, Debug)]
struct FetchReq {
    req_id: u64,
    sent_ms: u64,
    tps: Vec<Tp>,
}

pub struct Consumer {
    pub idx: u32,
    pub(crate) member: Option<Member>,
    pipe: Option<Pipeline>,
    times: Stream,
    workers: Vec<Option<Job>>,
    /// Fetches the pipeline asked for and the driver has not sent yet: tp → (offset, max).
    wants: BTreeMap<Tp, (Offset, u32, u64)>,
    /// The fetch request in flight to each broker.
    fetching: Vec<Option<FetchReq>>,
    /// Per broker: no fetch is sent to it before `.0` (ms), after its connection was refused or
    /// reset; `.1` is the backoff that set it (0: connected), doubled on each failure in a row.
    reconnect: Vec<(u64, u64)>,
    /// The broker the member's group requests (join, sync, heartbeat, commit, offset fetch) were
    /// last sent to: its connection reset fails them at once.
    group_broker: Option<u32>,
    next_fetch_req: u64,
    /// Member commit correlation → the offsets it carries (with the generation the pipeline used).
    commits: BTreeMap<u64, Vec<(Tp, Offset, Generation)>>,
    /// Assignments waiting for their committed offsets: corr → (generation, tps).
    assigning: BTreeMap<u64, (Generation, Vec<Tp>)>,
    /// Assignments whose offset request could not be sent yet.
    offsets_backlog: Vec<(Generation, Vec<Tp>)>,
    /// A FindCoordinator that found no live coordinator is asked again at this time
    /// (`retry.backoff.ms` later), as a client retries COORDINATOR_NOT_AVAILABLE.
    find_coordinator_at_ms: Option<u64>,
    /// Dead-letter appends in flight: (ack time, tp, offset).
    dlq: Vec<(u64, Tp, Offset)>,
    last_poll_reported: u64,
    generation: Generation,
    /// Faults in force: a stall until this time, slow-down factors, lost commit replies.
    pub stall_until_ms: u64,
    pub slow: Vec<(u64, f64)>,
    pub commit_reply_loss: Vec<u64>,
    /// Records processed (for reports).
    pub processed: u64,
    tier_names: Vec<String>,
}

impl Consumer {
    pub fn new(w: &World, idx: u32) -> Self {
        let k = &w.spec.consumers;
        Consumer {
            idx,
            member: None,
            pipe: None,
            times: Stream::new(w.seed, &format!("processing/c{idx}")),
            workers: vec![None; k.workers as usize],
            wants: BTreeMap::new(),
            fetching: vec![None; w.spec.cluster.brokers as usize],
            reconnect: vec![(0, 0); w.spec.cluster.brokers as usize],
            group_broker: None,
            next_fetch_req: 0,
            commits: BTreeMap::new(),
            assigning: BTreeMap::new(),
            offsets_backlog: Vec::new(),
            find_coordinator_at_ms: None,
            dlq: Vec::new(),
            last_poll_reported: 0,
            generation: 0,
            stall_until_ms: 0,
            slow: Vec::new(),
            commit_reply_loss: Vec::new(),
            processed: 0,
            tier_names: Vec::new(),
        }
    }

    pub fn commit_replies_lost(&self) -> bool {
        !self.commit_reply_loss.is_empty()
    }

    fn slow_factor(&self) -> f64 {
        self.slow.iter().map(|s| s.1).fold(1.0, f64::max)
    }

    pub fn running(&self) -> bool {
        self.pipe.is_some()
    }
}

/// Builds one consumer's pipeline configuration (the core's mapping from the scenario).
pub fn pipeline_config(w: &World, c: u32) -> PipelineConfig {
    let mut cfg = PipelineConfig::from_spec(&w.spec, MemberId(c), w.bugs);
    if w.spec.consumers.limiter_state == LimiterState::Persisted {
        cfg.limiter_restore = w.limiter_snaps[c as usize].clone();
    }
    cfg
}

impl World {
    fn member_config(&self, c: u32) -> MemberConfig {
        let k = &self.spec.consumers;
        MemberConfig {
            consumer: MemberId(c),
            group_instance_id: k.static_membership.then_some(c),
            protocol: k.protocol,
            topics: k
                .topics
                .iter()
                .filter_map(|t| self.spec.topic_index(t))
                .collect(),
            session_timeout_ms: k.session_timeout_ms,
            heartbeat_interval_ms: k.heartbeat_interval_ms,
            max_poll_interval_ms: k.max_poll_interval_ms,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            retries_max: GROUP_RETRIES_MAX,
            retry_backoff_ms: RETRY_BACKOFF_MS,
        }
    }

    /// Starts (or restarts) consumer `c`: a fresh member and pipeline.
    pub(crate) fn consumer_start(&mut self, c: u32) {
        let now_us = self.now_ms * 1_000;
        let cfg = pipeline_config(self, c);
        let mcfg = self.member_config(c);
        let co = &mut self.consumers[c as usize];
        co.tier_names = cfg.tier_names.clone();
        co.pipe = Some(Pipeline::new(cfg, now_us));
        let mut m = Member::new(mcfg);
        m.start(now_us);
        co.member = Some(m);
        co.last_poll_reported = now_us;
        self.record(Event::Member {
            consumer: c,
            event: MemberEvent::Start,
        });
        self.poke(self.layout.consumer(c));
    }

    pub(crate) fn consumer_crash(&mut self, c: u32) {
        let co = &mut self.consumers[c as usize];
        co.pipe = None;
        co.member = None;
        co.workers.iter_mut().for_each(|w| *w = None);
        co.wants.clear();
        co.fetching.iter_mut().for_each(|f| *f = None);
        co.group_broker = None;
        co.commits.clear();
        co.assigning.clear();
        co.offsets_backlog.clear();
        co.dlq.clear();
        self.record(Event::Member {
            consumer: c,
            event: MemberEvent::Crash,
        });
    }

    /// A stall: work in progress finishes no earlier than `until_ms`.
    pub(crate) fn stall_running_jobs(&mut self, c: u32, until_ms: u64) {
        for j in self.consumers[c as usize].workers.iter_mut().flatten() {
            j.done_ms = j.done_ms.max(until_ms);
        }
        self.poke(self.layout.consumer(c));
    }

    pub(crate) fn consumer_restart(&mut self, c: u32) {
        self.consumer_start(c);
    }

    fn process_cost_ms(&mut self, c: u32, n: u32) -> f64 {
        let factor = self.consumers[c as usize].slow_factor();
        let s = &mut self.consumers[c as usize].times;
        let n_f = n as f64;
        let base = match self.spec.consumers.processing {
            ProcessingTime::Constant { ms } => ms * n_f,
            ProcessingTime::Exponential { mean_ms } => s.gamma(n_f, mean_ms),
            ProcessingTime::LogNormal { mean_ms, cv } => {
                if n <= 8 {
                    let sigma2 = (1.0 + cv * cv).ln();
                    let mu = mean_ms.ln() - sigma2 / 2.0;
                    (0..n)
                        .map(|_| (mu + sigma2.sqrt() * s.normal()).exp())
                        .sum()
                } else {
                    let sd = cv * mean_ms * n_f.sqrt();
                    (mean_ms * n_f + sd * s.normal()).max(0.0)
                }
            }
        };
        base * factor
    }

    /// How many of the records `offset..offset+count` succeed on this attempt before one fails.
    fn process_ok(&self, tp: Tp, offset: Offset, count: u32, attempt: u32) -> u32 {
        let r = &self.spec.consumers.retry;
        if r.poison_probability <= 0.0 && r.transient_failure_probability <= 0.0 {
            return count;
        }
        let g = self.tp_global(tp) as u64;
        for i in 0..count {
            let o = offset + i as u64;
            if hash_unit(&[self.seed, 1, g, o]) < r.poison_probability {
                return i;
            }
            if hash_unit(&[self.seed, 2, g, o, attempt as u64]) < r.transient_failure_probability {
                return i;
            }
        }
        count
    }

    /// Broker `b`'s process died: the fetch and the group requests in flight to it fail at once
    /// (connection reset); or, with `refused`, a request was just sent to it while it is down
    /// (connection refused: what is in flight never reached it).
    pub(crate) fn consumer_disconnect(&mut self, c: u32, b: u32, refused: bool) {
        if !self.consumers[c as usize].running() {
            return;
        }
        let now_us = self.now_ms * 1_000;
        self.consumer_disconnects += 1;
        // Not before the reconnect backoff: a client does not hammer a broker that is down.
        let r = &mut self.consumers[c as usize].reconnect[b as usize];
        r.1 = if r.1 == 0 {
            RECONNECT_BACKOFF_MS
        } else {
            (r.1 * 2).min(RECONNECT_BACKOFF_MAX_MS)
        };
        r.0 = self.now_ms + r.1;
        if let Some(f) = self.consumers[c as usize].fetching[b as usize].take() {
            for tp in f.tps {
                if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                    p.handle(now_us, Input::FetchEmpty { tp, hw: None });
                }
            }
            self.poke(self.layout.consumer(c));
        }
        let co = &mut self.consumers[c as usize];
        if co.group_broker == Some(b) {
            co.group_broker = None;
            if let Some(m) = co.member.as_mut() {
                m.coordinator_disconnected(now_us, refused);
            }
            self.poke(self.layout.consumer(c));
        }
    }

    pub(crate) fn consumer_deliver(&mut self, c: u32, msg: Msg) {
        if !self.consumers[c as usize].running() {
            return;
        }
        let now = self.now_ms;
        match msg {
            Msg::GroupResp(resp) => {
                if let Some(m) = self.consumers[c as usize].member.as_mut() {
                    m.handle_response(now * 1_000, resp);
                }
            }
            Msg::FetchResp { req_id, parts } => {
                let co = &mut self.consumers[c as usize];
                let Some(slot) = co
                    .fetching
                    .iter()
                    .position(|f| f.as_ref().is_some_and(|f| f.req_id == req_id))
                else {
                    return;
                };
                co.fetching[slot] = None;
                co.reconnect[slot] = (0, 0);
                for (g, r) in parts {
                    let tp = self.tps[g as usize].tp;
                    let name = self.tps[g as usize].name.clone();
                    let input_hw = match r {
                        FetchResult::Data { runs, hw } => {
                            let offset = runs[0].offset;
                            let count: u32 = runs.iter().map(|r| r.count).sum();
                            let bytes = self.runs_bytes(&runs);
                            // What the pipeline discards (a reply to a fetch of an older
                            // assignment, records it already holds) is not a poll: only the
                            // records it takes are recorded.
                            let taken = self.consumers[c as usize]
                                .pipe
                                .as_ref()
                                .and_then(|p| p.fetch_take(tp, offset, count));
                            if let Some((from, n)) = taken {
                                let runs = clip_runs(&runs, from, from + n as u64);
                                // Usually the whole reply is taken: its bytes are known already.
                                let bytes = if (from, n) == (offset, count) {
                                    bytes
                                } else {
                                    self.runs_bytes(&runs)
                                };
                                self.record(Event::Fetch {
                                    consumer: c,
                                    tp: name,
                                    bytes,
                                    runs,
                                    hw,
                                });
                            }
                            if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                                p.handle(
                                    now * 1_000,
                                    Input::Fetched {
                                        tp,
                                        offset,
                                        count,
                                        bytes,
                                        hw,
                                    },
                                );
                            }
                            continue;
                        }
                        FetchResult::Empty { hw } => Some(hw),
                        FetchResult::NotLeader => None,
                    };
                    if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                        p.handle(now * 1_000, Input::FetchEmpty { tp, hw: input_hw });
                    }
                }
            }
            _ => {}
        }
    }

    pub(crate) fn consumer_tick(&mut self, c: u32) -> u64 {
        if !self.consumers[c as usize].running() {
            return u64::MAX;
        }
        let now = self.now_ms;
        let now_us = now * 1_000;
        // Finished work.
        for w in 0..self.consumers[c as usize].workers.len() {
            let Some(job) = self.consumers[c as usize].workers[w] else {
                continue;
            };
            if job.done_ms > now {
                continue;
            }
            self.consumers[c as usize].workers[w] = None;
            self.consumers[c as usize].processed += job.ok as u64;
            let tp = self.tps[self.tp_global(job.tp) as usize].name.clone();
            self.record(Event::ProcessEnd {
                consumer: c,
                tp,
                offset: job.offset,
                count: job.count,
                ok: job.ok,
            });
            if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                p.handle(
                    now_us,
                    Input::ProcessDone {
                        worker: w as u32,
                        ok: job.ok,
                    },
                );
            }
        }
        let dlq_done: Vec<(u64, Tp, Offset)> = {
            let co = &mut self.consumers[c as usize];
            let (done, rest): (Vec<_>, Vec<_>) = co.dlq.iter().partition(|d| d.0 <= now);
            co.dlq = rest;
            done
        };
        for (_, tp, offset) in dlq_done {
            if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                p.handle(now_us, Input::DeadLetterDone { tp, offset });
            }
        }
        // Fetches that got no answer.
        let wait = self.spec.consumers.fetch_wait_max_ms;
        for b in 0..self.consumers[c as usize].fetching.len() {
            let expired = self.consumers[c as usize].fetching[b]
                .as_ref()
                .is_some_and(|f| now >= f.sent_ms + wait + REQUEST_TIMEOUT_MS);
            if expired {
                let f = self.consumers[c as usize].fetching[b]
                    .take()
                    .expect("checked");
                for tp in f.tps {
                    if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                        p.handle(now_us, Input::FetchEmpty { tp, hw: None });
                    }
                }
            }
        }
        // Timers of the two state machines.
        if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now_us) {
                p.handle(now_us, Input::Tick);
            }
        }
        if let Some(m) = self.consumers[c as usize].member.as_mut() {
            if m.poll_timeout().is_some_and(|t| t <= now_us) {
                m.handle_timeout(now_us);
            }
        }
        for (generation, tps) in std::mem::take(&mut self.consumers[c as usize].offsets_backlog) {
            self.request_offsets(c, generation, tps);
        }
        if self.consumers[c as usize].find_coordinator_at_ms.is_some_and(|t| t <= now) {
            self.consumers[c as usize].find_coordinator_at_ms = None;
            self.member_action(c, GAction::FindCoordinator);
        }
        self.consumer_drain(c);
        self.consumer_send_fetches(c);
        // Next wake.
        let co = &self.consumers[c as usize];
        let mut next = u64::MAX;
        for j in co.workers.iter().flatten() {
            next = next.min(j.done_ms);
        }
        for d in &co.dlq {
            next = next.min(d.0);
        }
        for f in co.fetching.iter().flatten() {
            next = next.min(f.sent_ms + wait + REQUEST_TIMEOUT_MS);
        }
        if !co.wants.is_empty() || !co.offsets_backlog.is_empty() {
            next = next.min(now + RETRY_BACKOFF_MS);
        }
        if !co.wants.is_empty() {
            for &(at, _) in &co.reconnect {
                if at > now {
                    next = next.min(at);
                }
            }
        }
        if let Some(t) = co.find_coordinator_at_ms {
            next = next.min(t);
        }
        if let Some(t) = co.pipe.as_ref().and_then(|p| p.poll_timeout()) {
            next = next.min(t.div_ceil(1_000));
        }
        if let Some(t) = co.member.as_ref().and_then(|m| m.poll_timeout()) {
            next = next.min(t.div_ceil(1_000));
        }
        next
    }

    /// Executes what the member and the pipeline decided until neither has anything left.
    fn consumer_drain(&mut self, c: u32) {
        let now = self.now_ms;
        let now_us = now * 1_000;
        let me = self.layout.consumer(c);
        let mut budget = ACTIONS_PER_STEP_MAX;
        // The pipeline has no queued action (it ran to empty and got no input since).
        let mut pipe_idle = false;
        loop {
            let mut progressed = false;
            // The application's polls reset the member's max-poll clock.
            let co = &mut self.consumers[c as usize];
            if let (Some(p), Some(m)) = (co.pipe.as_ref(), co.member.as_mut()) {
                let lp = p.last_poll_us();
                if lp > co.last_poll_reported {
                    co.last_poll_reported = lp;
                    m.record_poll(lp);
                }
            }
            // An ownership change (`Revoke`, `Lost`) reaches the pipeline only once the actions it
            // queued before have run: a `Process` decided while the partition was owned must not
            // start after the partition is gone.
            while let Some(next) = self.consumers[c as usize]
                .member
                .as_ref()
                .and_then(|m| m.peek_action())
            {
                if matches!(next, GAction::Revoke { .. } | GAction::Lost { .. }) && !pipe_idle {
                    break;
                }
                let Some(a) = self.consumers[c as usize]
                    .member
                    .as_mut()
                    .and_then(|m| m.poll_action())
                else {
                    break;
                };
                progressed = true;
                pipe_idle = false;
                budget = budget.saturating_sub(1);
                self.member_action(c, a);
            }
            let mut commit_batch: Vec<(Tp, Offset, Generation)> = Vec::new();
            while let Some(a) = self.consumers[c as usize]
                .pipe
                .as_mut()
                .and_then(|p| p.poll_action())
            {
                progressed = true;
                budget = budget.saturating_sub(1);
                self.pipeline_action(c, a, &mut commit_batch);
            }
            pipe_idle = true;
            if !commit_batch.is_empty() {
                let offsets: Vec<(Tp, Offset)> =
                    commit_batch.iter().map(|&(tp, o, _)| (tp, o)).collect();
                let corr = self.consumers[c as usize]
                    .member
                    .as_mut()
                    .and_then(|m| m.commit(now_us, offsets));
                match corr {
                    Some(corr) => {
                        self.consumers[c as usize]
                            .commits
                            .insert(corr, commit_batch);
                    }
                    None => {
                        for (tp, offset, generation) in commit_batch {
                            let name = self.tps[self.tp_global(tp) as usize].name.clone();
                            self.record(Event::CommitFail {
                                consumer: c,
                                generation,
                                tp: name,
                                offset,
                                unknown: false,
                            });
                            if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                                p.handle(
                                    now_us,
                                    Input::CommitDone {
                                        tp,
                                        offset,
                                        outcome: CommitOutcome::Failed,
                                    },
                                );
                            }
                            pipe_idle = false;
                        }
                    }
                }
                progressed = true;
            }
            // A member action is left waiting above while the pipeline has actions to run; once
            // they have run, it goes next.
            if self.consumers[c as usize]
                .member
                .as_ref()
                .is_some_and(|m| m.peek_action().is_some())
            {
                progressed = true;
            }
            if !progressed || budget == 0 || !self.consumers[c as usize].running() {
                break;
            }
        }
        let _ = me;
    }

    /// Asks the coordinator for the committed offsets of newly assigned partitions (retried from the
    /// tick while the member has too many requests in flight).
    fn request_offsets(&mut self, c: u32, generation: Generation, tps: Vec<Tp>) {
        let now_us = self.now_ms * 1_000;
        let co = &mut self.consumers[c as usize];
        match co
            .member
            .as_mut()
            .and_then(|m| m.fetch_offsets(now_us, tps.clone()))
        {
            Some(corr) => {
                co.assigning.insert(corr, (generation, tps));
            }
            None => co.offsets_backlog.push((generation, tps)),
        }
    }

    fn forget_pending_assign(&mut self, c: u32, tps: &[Tp]) {
        let co = &mut self.consumers[c as usize];
        for (_, (_, pending)) in co.assigning.iter_mut() {
            pending.retain(|tp| !tps.contains(tp));
        }
        for (_, pending) in co.offsets_backlog.iter_mut() {
            pending.retain(|tp| !tps.contains(tp));
        }
    }

    fn member_action(&mut self, c: u32, a: GAction) {
        let now = self.now_ms;
        let now_us = now * 1_000;
        let me = self.layout.consumer(c);
        match a {
            GAction::Send(req) => {
                let b = self.coordinator_broker;
                let to = self.layout.broker(b);
                self.consumers[c as usize].group_broker = Some(b);
                self.send(me, to, Msg::Group(req));
                // A request to a dead broker is refused at once (no listener), as a fetch is:
                // the member looks for the coordinator again instead of waiting out the
                // request's timeout (a JoinGroup's is max.poll.interval.ms).
                if !self.up[to] {
                    self.consumer_disconnect(c, b, true);
                }
            }
            GAction::FindCoordinator => {
                if self.up[self.layout.broker(self.coordinator_broker)] {
                    self.consumers[c as usize].find_coordinator_at_ms = None;
                    if let Some(m) = self.consumers[c as usize].member.as_mut() {
                        m.coordinator_found(now_us);
                    }
                } else {
                    self.consumers[c as usize].find_coordinator_at_ms = Some(now + RETRY_BACKOFF_MS);
                }
            }
            GAction::Assign { generation, tps } => {
                self.consumers[c as usize].generation = generation;
                self.request_offsets(c, generation, tps);
            }
            GAction::Offsets { corr, result } => {
                let Some((generation, tps)) = self.consumers[c as usize].assigning.remove(&corr)
                else {
                    return;
                };
                match result {
                    Ok(list) => {
                        let reset = self.spec.consumers.auto_offset_reset;
                        let owned: Vec<Tp> = self.consumers[c as usize]
                            .member
                            .as_ref()
                            .map(|m| m.owned().to_vec())
                            .unwrap_or_default();
                        let mut start = Vec::new();
                        for (tp, off) in list {
                            if !owned.contains(&tp) {
                                continue;
                            }
                            let o = off.unwrap_or_else(|| match reset {
                                OffsetReset::Earliest => 0,
                                OffsetReset::Latest => self.partition_hw(self.tp_global(tp)),
                            });
                            start.push((tp, o));
                        }
                        if start.is_empty() {
                            return;
                        }
                        let names = start
                            .iter()
                            .map(|(tp, _)| self.tps[self.tp_global(*tp) as usize].name.clone())
                            .collect();
                        self.record(Event::Assign {
                            consumer: c,
                            generation,
                            tps: names,
                        });
                        if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                            p.handle(
                                now_us,
                                Input::Assigned {
                                    generation,
                                    tps: &start,
                                },
                            );
                        }
                    }
                    Err(_) => self.request_offsets(c, generation, tps),
                }
            }
            GAction::Revoke { generation, tps } => {
                // Partitions still waiting for their offsets were never handed to the pipeline.
                self.forget_pending_assign(c, &tps);
                if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                    p.handle(
                        now_us,
                        Input::Revoke {
                            generation,
                            tps: &tps,
                        },
                    );
                }
            }
            GAction::Lost { tps, reason } => {
                self.forget_pending_assign(c, &tps);
                // The history says why the partitions go without a commit: a fenced member, or
                // one whose lease ran out (session or max.poll.interval.ms) is evicted. Only a
                // plain revoke (or a requested leave) is a clean hand-over that commits first.
                let why = match reason {
                    LostReason::Fenced => Some(MemberEvent::Fenced),
                    LostReason::SessionExpired | LostReason::MaxPollExceeded => {
                        Some(MemberEvent::Evicted)
                    }
                    LostReason::Left => None,
                };
                if let Some(event) = why {
                    self.record(Event::Member { consumer: c, event });
                }
                let owned: Vec<Tp> = self.consumers[c as usize]
                    .pipe
                    .as_ref()
                    .map(|p| p.owned())
                    .unwrap_or_default();
                let gone: Vec<Tp> = tps
                    .iter()
                    .copied()
                    .filter(|tp| owned.contains(tp))
                    .collect();
                if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                    p.handle(now_us, Input::Lost { tps: &tps });
                }
                if !gone.is_empty() {
                    let generation = self.consumers[c as usize].generation;
                    let names = gone
                        .iter()
                        .map(|tp| self.tps[self.tp_global(*tp) as usize].name.clone())
                        .collect();
                    self.record(Event::Revoke {
                        consumer: c,
                        generation,
                        tps: names,
                    });
                }
            }
            GAction::CommitDone { corr, result } => {
                let Some(batch) = self.consumers[c as usize].commits.remove(&corr) else {
                    return;
                };
                for (tp, offset, generation) in batch {
                    let name = self.tps[self.tp_global(tp) as usize].name.clone();
                    let outcome = match result {
                        Ok(()) => {
                            self.record(Event::CommitAck {
                                consumer: c,
                                generation,
                                tp: name,
                                offset,
                            });
                            CommitOutcome::Acked
                        }
                        Err(None) => {
                            self.record(Event::CommitFail {
                                consumer: c,
                                generation,
                                tp: name,
                                offset,
                                unknown: true,
                            });
                            CommitOutcome::Unknown
                        }
                        Err(Some(_)) => {
                            self.record(Event::CommitFail {
                                consumer: c,
                                generation,
                                tp: name,
                                offset,
                                unknown: false,
                            });
                            CommitOutcome::Failed
                        }
                    };
                    if let Some(p) = self.consumers[c as usize].pipe.as_mut() {
                        p.handle(
                            now_us,
                            Input::CommitDone {
                                tp,
                                offset,
                                outcome,
                            },
                        );
                    }
                }
            }
        }
    }

    fn pipeline_action(
        &mut self,
        c: u32,
        a: PAction,
        commit_batch: &mut Vec<(Tp, Offset, Generation)>,
    ) {
        let now = self.now_ms;
        let now_us = now * 1_000;
        let name = |w: &World, tp: Tp| w.tps[w.tp_global(tp) as usize].name.clone();
        match a {
            PAction::Fetch {
                tp,
                offset,
                max_records,
                max_bytes,
            } => {
                self.consumers[c as usize]
                    .wants
                    .insert(tp, (offset, max_records, max_bytes));
            }
            PAction::Pause { tp } => {
                let tps = vec![name(self, tp)];
                self.record(Event::Pause { consumer: c, tps });
            }
            PAction::Resume { tp } => {
                let tps = vec![name(self, tp)];
                self.record(Event::Resume { consumer: c, tps });
            }
            PAction::Seek { tp, offset } => {
                let tp = name(self, tp);
                self.record(Event::Seek {
                    consumer: c,
                    tp,
                    offset,
                });
            }
            PAction::Process {
                worker,
                tp,
                offset,
                count,
                attempt,
            } => {
                let ok = self.process_ok(tp, offset, count, attempt);
                let n = if ok < count { ok + 1 } else { count };
                let cost_ms = self.process_cost_ms(c, n);
                let stall = self.consumers[c as usize].stall_until_ms;
                let done_ms = (now + cost_ms.round() as u64).max(stall);
                let tpn = name(self, tp);
                self.record(Event::ProcessStart {
                    consumer: c,
                    tp: tpn,
                    offset,
                    count,
                    attempt,
                });
                let co = &mut self.consumers[c as usize];
                if let Some(slot) = co.workers.get_mut(worker as usize) {
                    *slot = Some(Job {
                        done_ms,
                        tp,
                        offset,
                        count,
                        ok,
                    });
                }
            }
            PAction::Commit {
                generation,
                tp,
                offset,
            } => {
                let tpn = name(self, tp);
                self.record(Event::CommitSend {
                    consumer: c,
                    generation,
                    tp: tpn,
                    offset,
                });
                commit_batch.push((tp, offset, generation));
            }
            PAction::DeadLetter {
                tp,
                offset,
                attempts,
            } => {
                let tpn = name(self, tp);
                self.record(Event::DeadLetter {
                    consumer: c,
                    tp: tpn,
                    offset,
                    attempts,
                });
                self.consumers[c as usize]
                    .dlq
                    .push((now + DLQ_APPEND_MS, tp, offset));
            }
            PAction::RevokeDone { generation, tps } => {
                if !tps.is_empty() {
                    let names = tps.iter().map(|&tp| name(self, tp)).collect();
                    self.record(Event::Revoke {
                        consumer: c,
                        generation,
                        tps: names,
                    });
                }
                if let Some(m) = self.consumers[c as usize].member.as_mut() {
                    m.revoke_done(now_us);
                }
            }
            PAction::CreditGrant { tp, n, floating } => {
                let tp = name(self, tp);
                self.record(Event::CreditGrant {
                    consumer: c,
                    tp,
                    n,
                    floating,
                });
            }
            PAction::CreditReturn { tp, n } => {
                let tp = name(self, tp);
                self.record(Event::CreditReturn { consumer: c, tp, n });
            }
            PAction::Token { tier, n, admitted } => {
                let tier_name = self.consumers[c as usize]
                    .tier_names
                    .get(tier)
                    .cloned()
                    .unwrap_or_else(|| format!("tier{tier}"));
                self.record(Event::Token {
                    consumer: c,
                    tier: tier_name,
                    n,
                    admitted,
                });
            }
            PAction::Buffer {
                records,
                bytes,
                credits_outstanding,
            } => {
                self.record(Event::Buffer {
                    consumer: c,
                    records,
                    bytes,
                    credits_outstanding,
                });
            }
            PAction::Metrics {
                back_pressured_ms_per_s,
                busy_ms_per_s,
                idle_ms_per_s,
            } => {
                self.record(Event::Metrics {
                    consumer: c,
                    back_pressured_ms_per_s,
                    busy_ms_per_s,
                    idle_ms_per_s,
                });
            }
            PAction::LimiterSnapshot { snaps } => {
                self.limiter_snaps[c as usize] = Some(snaps);
            }
            PAction::Checkpoint { id, edge } => match edge {
                CheckpointEdge::Start => self.record(Event::Checkpoint {
                    consumer: c,
                    id,
                    edge: Edge::Start,
                }),
                CheckpointEdge::Complete => self.record(Event::Checkpoint {
                    consumer: c,
                    id,
                    edge: Edge::End,
                }),
                CheckpointEdge::Aborted => self.record(Event::Note {
                    text: format!("c{c}: checkpoint {id} aborted"),
                }),
            },
            // Barrier placement is internal to the pipeline; the history has no line for it.
            PAction::Barrier { .. } => {}
        }
    }

    fn consumer_send_fetches(&mut self, c: u32) {
        if self.consumers[c as usize].wants.is_empty() {
            return;
        }
        let me = self.layout.consumer(c);
        let wait_ms = self.spec.consumers.fetch_wait_max_ms;
        let nb = self.spec.cluster.brokers as usize;
        let mut per_broker: Vec<Vec<(u32, u64, u32, u64)>> = vec![Vec::new(); nb];
        let mut sent = Vec::new();
        for (&tp, &(offset, max, max_bytes)) in &self.consumers[c as usize].wants {
            let g = self.tp_global(tp);
            let Some(l) = self.meta[g as usize].leader else {
                continue;
            };
            let co = &self.consumers[c as usize];
            if co.fetching[l as usize].is_some() || self.now_ms < co.reconnect[l as usize].0 {
                continue;
            }
            per_broker[l as usize].push((g, offset, max, max_bytes));
            sent.push(tp);
        }
        for tp in &sent {
            self.consumers[c as usize].wants.remove(tp);
        }
        for (l, parts) in per_broker.into_iter().enumerate() {
            if parts.is_empty() {
                continue;
            }
            let co = &mut self.consumers[c as usize];
            let req_id = co.next_fetch_req;
            co.next_fetch_req += 1;
            let tps = parts
                .iter()
                .map(|&(g, _, _, _)| self.tps[g as usize].tp)
                .collect();
            co.fetching[l] = Some(FetchReq {
                req_id,
                sent_ms: self.now_ms,
                tps,
            });
            self.send(
                me,
                self.layout.broker(l as u32),
                Msg::Fetch {
                    consumer: c,
                    req_id,
                    wait_ms,
                    parts,
                },
            );
            if !self.up[self.layout.broker(l as u32)] {
                self.consumer_disconnect(c, l as u32, true);
            }
        }
    }
}

impl World {
    /// Bytes of the records of `runs` (each producer writes records of one size).
    pub(crate) fn runs_bytes(&self, runs: &[Run]) -> u64 {
        runs.iter().map(|r| r.count as u64 * self.record_bytes[r.producer as usize]).sum()
    }
}

/// The part of `runs` (contiguous, in offset order) that lies in `[from, to)`; a run cut at its
/// start keeps its producer sequence numbers aligned with its offsets.
fn clip_runs(runs: &[Run], from: u64, to: u64) -> Vec<Run> {
    runs.iter()
        .filter_map(|r| {
            let lo = r.offset.max(from);
            let hi = (r.offset + r.count as u64).min(to);
            (lo < hi).then(|| Run { offset: lo, producer: r.producer, seq: r.seq + (lo - r.offset), count: (hi - lo) as u32 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_runs_keeps_the_range_and_aligns_sequence_numbers() {
        let r = |offset, producer, seq, count| Run { offset, producer, seq, count };
        let runs = [r(10, 0, 100, 3), r(13, 1, 7, 2)];
        let cases: [(u64, u64, Vec<Run>); 5] = [
            (10, 15, runs.to_vec()),
            (11, 15, vec![r(11, 0, 101, 2), r(13, 1, 7, 2)]),
            (12, 14, vec![r(12, 0, 102, 1), r(13, 1, 7, 1)]),
            (13, 20, vec![r(13, 1, 7, 2)]),
            (15, 20, vec![]),
        ];
        for (from, to, want) in cases {
            assert_eq!(clip_runs(&runs, from, to), want, "[{from}, {to})");
        }
    }
}
