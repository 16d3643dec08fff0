//! The group coordinator: one state machine per consumer group, hosted by the coordinator broker.
//!
//! States (Kafka's `GroupState`): `Empty` → `PreparingRebalance` (collecting JoinGroups) →
//! `CompletingRebalance` (assignment computed, waiting for every SyncGroup) → `Stable`. Each completed
//! join phase bumps the generation by one.
//!
//! Simplification: Kafka hands the member list to an elected leader member, which runs the assignor
//! and sends the result in its SyncGroup. Here the coordinator runs
//! [`sluice_core::assign::assign`] itself when the join phase completes and answers every SyncGroup
//! at once. Under the cooperative protocol (KIP-429) the coordinator withholds every partition that
//! some member still reports owning in its JoinGroup: the owner gets the target minus what moves (it
//! sees the loss, revokes, and rejoins), and the new owner gets the moved partitions in the next
//! generation, once nobody owns them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sluice_core::assign::{self, MemberInfo};
use sluice_core::spec::{AssignorKind, Protocol};
use sluice_core::types::{Generation, MemberId, Offset, Tp};

use super::{ms, ErrorCode, GroupMemberId, JoinGroup, JoinOk, Req, Request, Resp, Response};

/// Static settings of one coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    pub assignor: AssignorKind,
    /// Every partition of every topic the group may subscribe to.
    pub partitions: Vec<Tp>,
    /// `group.max.size`: joins beyond it get GROUP_MAX_SIZE_REACHED.
    pub members_max: usize,
    /// `group.initial.rebalance.delay.ms` (Kafka default 3 000): the first rebalance of an empty
    /// group waits this long after the last new join (up to the rebalance timeout) so that members
    /// starting together form one generation.
    pub initial_rebalance_delay_ms: u64,
    /// The broker holds *every* join phase, not only an empty group's first, and no phase completes
    /// before `initial_rebalance_delay_ms` after its last join (a rejoin too; up to the rebalance
    /// timeout from the phase's start). Off for Kafka; on for the in-memory Tansu broker real mode is measured
    /// against (`BrokerProfile::Tansu`, finding F1 of docs/fidelity.md).
    pub delay_every_join_phase: bool,
    /// `group.max.session.timeout.ms`: larger session timeouts are refused.
    pub group_max_session_timeout_ms: u64,
    /// The offsets log is compacted (latest record per partition) when it grows beyond this.
    /// Must exceed `partitions.len() + 1`.
    pub offsets_log_records_max: usize,
    /// This coordinator's incarnation (e.g. the leader epoch of the offsets partition); member ids
    /// it issues carry it.
    pub epoch: u32,
    /// Planted bugs of the assignor (only `Bug::UnbalancedAssignor` acts here).
    pub bugs: sluice_core::bugs::Bugs,
}

/// A bad [`CoordinatorConfig`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("members_max must be at least 1")]
    NoMembers,
    #[error("offsets_log_records_max ({max}) must exceed the partition count + 1 ({need})")]
    LogTooSmall { max: usize, need: usize },
    #[error("group_max_session_timeout_ms must be > 0")]
    NoSessionTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

/// One record of the offsets log (the model of `__consumer_offsets`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// A committed offset, with the generation of the commit.
    Offset { tp: Tp, offset: Offset, generation: Generation },
    /// Group metadata (Kafka's `GroupMetadataValue`): the generation, its protocol and members with
    /// their assignments. Written when a generation is formed (Kafka writes it with the leader's
    /// SyncGroup, before any member learns its assignment) and when a static member takes its slot
    /// over without a rebalance. A restored coordinator resumes the latest one.
    Group(GroupRecord),
}

/// The group as one metadata record stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    pub generation: Generation,
    pub protocol: Option<Protocol>,
    pub members: Vec<StoredMember>,
}

/// One member of a [`GroupRecord`] (Kafka's `MemberMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    pub id: GroupMemberId,
    pub consumer: MemberId,
    pub instance: Option<u32>,
    pub topics: Vec<u16>,
    /// What the member reported owning when the generation formed (cooperative withholding).
    pub owned: Vec<Tp>,
    pub assigned: Vec<Tp>,
    pub rebalance_timeout_us: u64,
    pub session_timeout_us: u64,
    /// The JoinGroup that put the member in this generation: older ones stay stale after a restore.
    pub last_join_corr: u64,
}

/// A response addressed to the consumer that sent the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: MemberId,
    pub resp: Resp,
}

/// What the coordinator reports for the history (`Rebalance` start/end, `Member` evicted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorEvent {
    /// A rebalance began; the generation it will form is `generation`.
    RebalanceStart { generation: Generation },
    /// Generation `generation` was formed with this assignment (consumer → partitions).
    RebalanceEnd { generation: Generation, assignment: BTreeMap<MemberId, Vec<Tp>> },
    /// A member was removed without leaving: session or rebalance timeout.
    Evicted { consumer: MemberId, member_id: GroupMemberId, reason: EvictReason },
    /// A member left with LeaveGroup.
    Left { consumer: MemberId, member_id: GroupMemberId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    SessionTimeout,
    /// Did not rejoin (or sync) within its rebalance timeout.
    RebalanceTimeout,
}

/// Everything the coordinator knows about one member.
#[derive(Clone, Debug)]
struct MemberSlot {
    consumer: MemberId,
    instance: Option<u32>,
    topics: Vec<u16>,
    /// Partitions the member reported owning in its last JoinGroup (cooperative).
    owned: Vec<Tp>,
    rebalance_timeout_us: u64,
    session_timeout_us: u64,
    /// Last heartbeat (or join, sync, commit) + session timeout.
    session_deadline_us: u64,
    /// Correlation id of the JoinGroup awaiting an answer in this join phase.
    pending_join: Option<u64>,
    /// Highest JoinGroup correlation id seen from this member: older ones are stale (reordered or
    /// duplicated) and dropped, so an old `owned` list never overrides a newer one.
    last_join_corr: u64,
    /// Synced the current generation.
    synced: bool,
    /// Assignment in the current generation.
    assigned: Vec<Tp>,
}

/// The coordinator of one group. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    state: GroupState,
    generation: Generation,
    protocol: Option<Protocol>,
    members: BTreeMap<GroupMemberId, MemberSlot>,
    /// Static members: instance id → current member id.
    instances: BTreeMap<u32, GroupMemberId>,
    next_seq: u32,
    /// PreparingRebalance: members that have not rejoined by then are removed.
    join_deadline_us: u64,
    /// PreparingRebalance out of Empty (every PreparingRebalance with `delay_every_join_phase`):
    /// the delay, extended by each new member (by each join with `delay_every_join_phase`).
    initial_until_us: Option<u64>,
    /// Upper bound of the delay (its start + the rebalance timeout).
    initial_cap_us: u64,
    /// CompletingRebalance: members that have not synced by then are removed.
    sync_deadline_us: u64,
    /// The latest group metadata written to the log (kept across compaction).
    stored: GroupRecord,
    committed: BTreeMap<Tp, (Offset, Generation)>,
    partitions: BTreeSet<Tp>,
    log: Vec<LogRecord>,
    outbox: VecDeque<Outgoing>,
    events: VecDeque<CoordinatorEvent>,
}

impl Coordinator {
    /// A fresh coordinator for an empty group.
    pub fn new(cfg: CoordinatorConfig) -> Result<Self, ConfigError> {
        if cfg.members_max == 0 {
            return Err(ConfigError::NoMembers);
        }
        if cfg.group_max_session_timeout_ms == 0 {
            return Err(ConfigError::NoSessionTimeout);
        }
        let partitions: BTreeSet<Tp> = cfg.partitions.iter().copied().collect();
        let need = partitions.len() + 1;
        if cfg.offsets_log_records_max <= need {
            return Err(ConfigError::LogTooSmall { max: cfg.offsets_log_records_max, need });
        }
        Ok(Coordinator {
            cfg,
            state: GroupState::Empty,
            generation: 0,
            protocol: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            next_seq: 0,
            join_deadline_us: 0,
            initial_until_us: None,
            initial_cap_us: 0,
            sync_deadline_us: 0,
            stored: GroupRecord::default(),
            committed: BTreeMap::new(),
            partitions,
            log: Vec::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// A coordinator taking over after failover, rebuilt from the replicated offsets log as Kafka's
    /// `GroupMetadataManager` loads a group: the committed offsets, and the latest group metadata
    /// record, resumed as a Stable group of that generation with the same member ids and
    /// assignments (or Empty). Every member's session is renewed from `now_us`, so its heartbeats
    /// carry on and nothing moves; a member that died meanwhile is removed when that session
    /// expires. A rebalance the predecessor had begun but not formed is lost: its members' rejoins
    /// open it again.
    ///
    /// G1 across the failover: a member holds its partitions at most until its lease (the last
    /// acknowledged request + `min(session, rebalance timeout)`) runs out, and every acknowledged
    /// request came before `now_us`; the restored coordinator removes no stored member before
    /// `now_us + session timeout`, and members absent from the record own nothing (partitions are
    /// only ever given by a formed generation, which is recorded before anyone learns of it).
    pub fn restore(cfg: CoordinatorConfig, log: &[LogRecord], now_us: u64) -> Result<Self, ConfigError> {
        let mut c = Coordinator::new(cfg)?;
        let mut stored: Option<&GroupRecord> = None;
        for rec in log {
            match rec {
                LogRecord::Offset { tp, offset, generation } => {
                    c.committed.insert(*tp, (*offset, *generation));
                    c.generation = c.generation.max(*generation);
                }
                LogRecord::Group(g) => stored = Some(g),
            }
        }
        if let Some(g) = stored {
            c.generation = c.generation.max(g.generation);
            c.protocol = g.protocol;
            for m in &g.members {
                if let Some(inst) = m.instance {
                    c.instances.insert(inst, m.id);
                }
                c.members.insert(
                    m.id,
                    MemberSlot {
                        consumer: m.consumer,
                        instance: m.instance,
                        topics: m.topics.clone(),
                        owned: m.owned.clone(),
                        rebalance_timeout_us: m.rebalance_timeout_us,
                        session_timeout_us: m.session_timeout_us,
                        session_deadline_us: now_us + m.session_timeout_us,
                        pending_join: None,
                        last_join_corr: m.last_join_corr,
                        synced: true,
                        assigned: m.assigned.clone(),
                    },
                );
            }
            // An empty group's record carries no protocol (it is cleared before the record is written).
            c.state = if c.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
            c.stored = g.clone();
        }
        c.compact();
        c.check_invariants();
        Ok(c)
    }

    /// Handles one request. Responses go to the outbox; the world must drain [`Self::poll_transmit`]
    /// after every call (the outbox holds at most `members_max + 1` responses then).
    pub fn handle_request(&mut self, now_us: u64, req: Req) {
        let Req { corr, from, body } = req;
        let reply = match body {
            Request::JoinGroup(j) => self.join(now_us, corr, from, j).map(Response::JoinGroup),
            Request::SyncGroup { generation, member_id } => Some(Response::SyncGroup(self.sync(now_us, generation, member_id))),
            Request::Heartbeat { generation, member_id } => {
                Some(Response::Heartbeat(self.heartbeat(now_us, generation, member_id)))
            }
            Request::LeaveGroup { member_id } => Some(Response::LeaveGroup(self.leave(now_us, member_id))),
            Request::OffsetCommit { generation, member_id, offsets } => {
                Some(Response::OffsetCommit(self.commit(now_us, generation, member_id, &offsets)))
            }
            Request::OffsetFetch { tps } => Some(Response::OffsetFetch(self.fetch(&tps))),
        };
        if let Some(body) = reply {
            self.outbox.push_back(Outgoing { to: from, resp: Resp { corr, body } });
        }
        self.try_complete_join(now_us);
        assert!(self.outbox.len() <= self.cfg.members_max + 1, "outbox not drained");
    }

    /// Fires the timers that are due at `now_us`: session timeouts, the end of the initial delay,
    /// the end of the join phase, the end of the sync phase.
    pub fn handle_timeout(&mut self, now_us: u64) {
        if self.initial_until_us.is_some_and(|t| t <= now_us) {
            self.initial_until_us = None;
        }
        // Session timeouts. Members waiting for their JoinGroup answer are kept alive (as Kafka does).
        let expired: Vec<GroupMemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.session_deadline_us <= now_us && m.pending_join.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(*id, Some(EvictReason::SessionTimeout));
        }
        if !expired.is_empty() {
            self.members_changed(now_us);
        }
        match self.state {
            GroupState::PreparingRebalance if self.join_deadline_us <= now_us => {
                let late: Vec<GroupMemberId> =
                    self.members.iter().filter(|(_, m)| m.pending_join.is_none()).map(|(id, _)| *id).collect();
                for id in late {
                    self.remove(id, Some(EvictReason::RebalanceTimeout));
                }
            }
            GroupState::CompletingRebalance if self.sync_deadline_us <= now_us => {
                let late: Vec<GroupMemberId> =
                    self.members.iter().filter(|(_, m)| !m.synced).map(|(id, _)| *id).collect();
                for id in late {
                    self.remove(id, Some(EvictReason::RebalanceTimeout));
                }
                self.members_changed(now_us);
            }
            _ => {}
        }
        self.try_complete_join(now_us);
    }

    /// The earliest time at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let preparing = self.state == GroupState::PreparingRebalance;
        let sessions = self.members.values().filter(|m| m.pending_join.is_none()).map(|m| m.session_deadline_us);
        let phase = match self.state {
            GroupState::PreparingRebalance => Some(self.join_deadline_us),
            GroupState::CompletingRebalance => Some(self.sync_deadline_us),
            _ => None,
        };
        let delay = self.initial_until_us.filter(|_| preparing);
        sessions.chain(phase).chain(delay).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CoordinatorEvent> {
        self.events.pop_front()
    }

    /// The offsets log to replicate (compacted when it exceeds `offsets_log_records_max`). A commit
    /// is acknowledged in the same call that appends it: a world modelling replication of
    /// `__consumer_offsets` copies the log before delivering the acknowledgement.
    pub fn offsets_log(&self) -> &[LogRecord] {
        &self.log
    }

    pub fn committed(&self, tp: Tp) -> Option<Offset> {
        self.committed.get(&tp).map(|&(o, _)| o)
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The current generation's assignment (consumer → partitions). Two slots of one consumer (a
    /// dynamic member restarted before its old slot expired) are merged.
    pub fn assignment(&self) -> BTreeMap<MemberId, Vec<Tp>> {
        let mut out: BTreeMap<MemberId, Vec<Tp>> = BTreeMap::new();
        for m in self.members.values() {
            out.entry(m.consumer).or_default().extend_from_slice(&m.assigned);
        }
        out
    }

    pub fn members_len(&self) -> usize {
        self.members.len()
    }

    // ---- request handlers -------------------------------------------------------------------

    /// JoinGroup. `None`: the answer is deferred to the end of the join phase (or the request is a
    /// stale duplicate and gets none).
    fn join(&mut self, now_us: u64, corr: u64, from: MemberId, j: JoinGroup) -> Option<Result<JoinOk, ErrorCode>> {
        if j.session_timeout_ms == 0 || j.session_timeout_ms > self.cfg.group_max_session_timeout_ms {
            return Some(Err(ErrorCode::InvalidSessionTimeout));
        }
        if !self.members.is_empty() && self.protocol.is_some_and(|p| p != j.protocol) {
            return Some(Err(ErrorCode::InconsistentGroupProtocol));
        }
        let id = match (j.member_id, j.group_instance_id) {
            (Some(id), _) if self.members.contains_key(&id) => id,
            (Some(_), Some(inst)) if self.instances.contains_key(&inst) => return Some(Err(ErrorCode::FencedInstanceId)),
            (Some(_), _) => return Some(Err(ErrorCode::UnknownMemberId)),
            (None, Some(inst)) if self.instances.contains_key(&inst) => {
                return self.static_rejoin(now_us, corr, from, inst, j);
            }
            (None, _) => {
                // A duplicate of a first join still waiting for its answer is the same join.
                if self.members.values().any(|m| m.consumer == from && m.pending_join == Some(corr)) {
                    return None;
                }
                if self.members.len() >= self.cfg.members_max {
                    return Some(Err(ErrorCode::GroupMaxSizeReached));
                }
                return self.new_member(now_us, corr, from, j);
            }
        };
        let slot = self.members.get_mut(&id).expect("known member");
        if corr < slot.last_join_corr || (corr == slot.last_join_corr && slot.pending_join.is_none()) {
            return None; // stale or duplicated: the member has moved on
        }
        slot.last_join_corr = corr;
        slot.session_deadline_us = now_us + slot.session_timeout_us;
        slot.rebalance_timeout_us = ms(j.rebalance_timeout_ms);
        slot.session_timeout_us = ms(j.session_timeout_ms);
        let changed = slot.topics != j.topics || slot.owned != j.owned;
        slot.topics = j.topics;
        slot.owned = j.owned;
        match self.state {
            GroupState::PreparingRebalance => {
                slot.pending_join = Some(corr);
                if self.cfg.delay_every_join_phase {
                    self.hold_after_join(now_us);
                }
                None
            }
            // A known member rejoining with what it had: it lost the answer; repeat it.
            GroupState::CompletingRebalance | GroupState::Stable if !changed => Some(Ok(self.join_ok(id))),
            _ => {
                slot.pending_join = Some(corr);
                self.start_rebalance(now_us);
                None
            }
        }
    }

    fn new_member(&mut self, now_us: u64, corr: u64, from: MemberId, j: JoinGroup) -> Option<Result<JoinOk, ErrorCode>> {
        let id = GroupMemberId { epoch: self.cfg.epoch, seq: self.next_seq };
        self.next_seq += 1;
        if let Some(inst) = j.group_instance_id {
            self.instances.insert(inst, id);
        }
        self.protocol = Some(j.protocol);
        self.members.insert(
            id,
            MemberSlot {
                consumer: from,
                instance: j.group_instance_id,
                topics: j.topics,
                owned: j.owned,
                rebalance_timeout_us: ms(j.rebalance_timeout_ms),
                session_timeout_us: ms(j.session_timeout_ms),
                session_deadline_us: now_us + ms(j.session_timeout_ms),
                pending_join: Some(corr),
                last_join_corr: corr,
                synced: false,
                assigned: Vec::new(),
            },
        );
        match self.state {
            GroupState::PreparingRebalance if self.cfg.delay_every_join_phase => self.hold_after_join(now_us),
            GroupState::PreparingRebalance => self.extend_delay(now_us),
            _ => self.start_rebalance(now_us),
        }
        None
    }

    /// `delay_every_join_phase`: the phase completes no earlier than the delay after this join,
    /// even when an earlier hold has already run out (up to its cap).
    fn hold_after_join(&mut self, now_us: u64) {
        if self.cfg.initial_rebalance_delay_ms > 0 {
            let until = (now_us + ms(self.cfg.initial_rebalance_delay_ms)).min(self.initial_cap_us);
            self.initial_until_us = Some(self.initial_until_us.map_or(until, |t| t.max(until)));
        }
    }

    /// Within the delay of a join phase, a join extends it to `initial_rebalance_delay_ms` from now,
    /// up to its cap.
    fn extend_delay(&mut self, now_us: u64) {
        if let Some(t) = self.initial_until_us.as_mut() {
            *t = (now_us + ms(self.cfg.initial_rebalance_delay_ms)).min(self.initial_cap_us).max(*t);
        }
    }

    /// KIP-345: a static member restarting (no member id, a known instance id) takes over its slot
    /// under a new member id; the old id is fenced. In Stable or CompletingRebalance nothing is
    /// rebalanced: the member syncs and gets the slot's assignment back.
    fn static_rejoin(&mut self, now_us: u64, corr: u64, from: MemberId, inst: u32, j: JoinGroup) -> Option<Result<JoinOk, ErrorCode>> {
        let old = self.instances[&inst];
        let mut slot = self.members.remove(&old).expect("instance maps to a member");
        let id = GroupMemberId { epoch: self.cfg.epoch, seq: self.next_seq };
        self.next_seq += 1;
        self.instances.insert(inst, id);
        // Partitions the old incarnation reported owning but was not given (withheld for its revoke)
        // would stay with nobody: the new incarnation owns nothing and has nothing to revoke, so it
        // would never ask for the follow-up rebalance that gives them out. Rebalance now instead.
        let orphans = slot.owned.iter().any(|tp| !slot.assigned.contains(tp));
        let changed = slot.topics != j.topics || orphans;
        slot.consumer = from;
        slot.topics = j.topics;
        slot.owned = j.owned;
        slot.last_join_corr = corr;
        slot.rebalance_timeout_us = ms(j.rebalance_timeout_ms);
        slot.session_timeout_us = ms(j.session_timeout_ms);
        slot.session_deadline_us = now_us + slot.session_timeout_us;
        slot.synced = false;
        slot.pending_join = None;
        let state = self.state;
        self.members.insert(id, slot);
        match state {
            GroupState::CompletingRebalance | GroupState::Stable if !changed => {
                // Kafka persists the new member id at once: a restored coordinator must know it.
                self.store();
                Some(Ok(self.join_ok(id)))
            }
            GroupState::PreparingRebalance => {
                self.members.get_mut(&id).expect("inserted").pending_join = Some(corr);
                if self.cfg.delay_every_join_phase {
                    self.hold_after_join(now_us);
                }
                None
            }
            _ => {
                self.members.get_mut(&id).expect("inserted").pending_join = Some(corr);
                self.start_rebalance(now_us);
                None
            }
        }
    }

    fn sync(&mut self, now_us: u64, generation: Generation, id: GroupMemberId) -> Result<Vec<Tp>, ErrorCode> {
        let slot = self.members.get_mut(&id).ok_or(ErrorCode::UnknownMemberId)?;
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        slot.synced = true;
        slot.session_deadline_us = now_us + slot.session_timeout_us;
        let assigned = slot.assigned.clone();
        if self.state == GroupState::CompletingRebalance && self.members.values().all(|m| m.synced) {
            self.state = GroupState::Stable;
        }
        Ok(assigned)
    }

    fn heartbeat(&mut self, now_us: u64, generation: Generation, id: GroupMemberId) -> Result<(), ErrorCode> {
        let slot = self.members.get_mut(&id).ok_or(ErrorCode::UnknownMemberId)?;
        slot.session_deadline_us = now_us + slot.session_timeout_us;
        if self.state == GroupState::PreparingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn leave(&mut self, now_us: u64, id: GroupMemberId) -> Result<(), ErrorCode> {
        if !self.members.contains_key(&id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.remove(id, None);
        self.members_changed(now_us);
        Ok(())
    }

    /// OffsetCommit: only a known member in the current generation may commit (G1/K1: a member
    /// fenced out of the generation cannot overwrite its successor's offsets). Accepted while
    /// preparing a rebalance (members commit on revoke, as in Kafka) and, unlike Kafka, also while
    /// completing one: here the assignment is fixed when the join phase ends (Kafka waits for the
    /// leader's SyncGroup), so a cooperative member may commit what it revokes in round 1 at once.
    fn commit(&mut self, now_us: u64, generation: Generation, id: GroupMemberId, offsets: &[(Tp, Offset)]) -> Result<(), ErrorCode> {
        let slot = self.members.get_mut(&id).ok_or(ErrorCode::UnknownMemberId)?;
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        if offsets.iter().any(|(tp, _)| !self.partitions.contains(tp)) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        slot.session_deadline_us = now_us + slot.session_timeout_us;
        for &(tp, offset) in offsets {
            self.committed.insert(tp, (offset, generation));
            self.append(LogRecord::Offset { tp, offset, generation });
        }
        Ok(())
    }

    fn fetch(&self, tps: &[Tp]) -> Result<Vec<(Tp, Option<Offset>)>, ErrorCode> {
        if tps.iter().any(|tp| !self.partitions.contains(tp)) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        Ok(tps.iter().map(|&tp| (tp, self.committed(tp))).collect())
    }

    // ---- group transitions ------------------------------------------------------------------

    fn join_ok(&self, id: GroupMemberId) -> JoinOk {
        JoinOk {
            generation: self.generation,
            member_id: id,
            leader: *self.members.keys().next().expect("a member"),
            protocol: self.protocol.expect("set by the first join"),
        }
    }

    fn remove(&mut self, id: GroupMemberId, evicted: Option<EvictReason>) {
        let slot = self.members.remove(&id).expect("removing a known member");
        if let Some(inst) = slot.instance {
            if self.instances.get(&inst) == Some(&id) {
                self.instances.remove(&inst);
            }
        }
        self.events.push_back(match evicted {
            Some(reason) => CoordinatorEvent::Evicted { consumer: slot.consumer, member_id: id, reason },
            None => CoordinatorEvent::Left { consumer: slot.consumer, member_id: id },
        });
    }

    /// After members were removed: a formed group rebalances, an empty one empties.
    fn members_changed(&mut self, now_us: u64) {
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.form_generation(now_us);
            }
        } else if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance) {
            self.start_rebalance(now_us);
        }
    }

    fn start_rebalance(&mut self, now_us: u64) {
        debug_assert!(self.state != GroupState::PreparingRebalance);
        let from_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        for m in self.members.values_mut() {
            m.synced = false;
        }
        let rebalance_us = self.members.values().map(|m| m.rebalance_timeout_us).max().unwrap_or(0);
        self.join_deadline_us = now_us + rebalance_us;
        if (from_empty || self.cfg.delay_every_join_phase) && self.cfg.initial_rebalance_delay_ms > 0 {
            self.initial_cap_us = now_us + rebalance_us;
            self.initial_until_us = Some((now_us + ms(self.cfg.initial_rebalance_delay_ms)).min(self.initial_cap_us));
        }
        self.events.push_back(CoordinatorEvent::RebalanceStart { generation: self.generation + 1 });
    }

    /// Ends the join phase once every member has rejoined (or the deadline removed the others),
    /// and the initial delay is over.
    fn try_complete_join(&mut self, now_us: u64) {
        if self.state != GroupState::PreparingRebalance
            || self.initial_until_us.is_some_and(|t| t > now_us)
            || !self.members.values().all(|m| m.pending_join.is_some())
        {
            return;
        }
        self.initial_until_us = None;
        self.form_generation(now_us);
    }

    /// Forms the next generation from the members present (all of which have rejoined): computes
    /// the assignment, answers every pending JoinGroup, and moves to CompletingRebalance (or Empty).
    fn form_generation(&mut self, now_us: u64) {
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.store();
            self.events.push_back(CoordinatorEvent::RebalanceEnd { generation: self.generation, assignment: BTreeMap::new() });
            return;
        }
        let cooperative = self.protocol == Some(Protocol::Cooperative);
        // Assignor input: members in member-id order under synthetic ids 0..n. Stickiness uses what
        // each member holds (cooperative) or held in the last generation (eager).
        let ids: Vec<GroupMemberId> = self.members.keys().copied().collect();
        let infos: Vec<MemberInfo> = self
            .members
            .values()
            .enumerate()
            .map(|(i, m)| MemberInfo {
                id: MemberId(i as u32),
                topics: m.topics.clone(),
                owned: if cooperative { m.owned.clone() } else { m.assigned.clone() },
            })
            .collect();
        let partitions: Vec<Tp> = self.partitions.iter().copied().collect();
        let target = assign::assign_with_bugs(self.cfg.assignor, &infos, &partitions, self.cfg.bugs);
        // KIP-429: a partition some member still owns goes to nobody else in this generation; its
        // owner's assignment lacks it, so the owner revokes it and rejoins for the next one.
        let mut owner: BTreeMap<Tp, GroupMemberId> = BTreeMap::new();
        for (id, m) in &self.members {
            for tp in &m.owned {
                owner.insert(*tp, *id);
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let want = target.get(&MemberId(i as u32)).cloned().unwrap_or_default();
            let given: Vec<Tp> = want.into_iter().filter(|tp| owner.get(tp).is_none_or(|o| o == id)).collect();
            let slot = self.members.get_mut(id).expect("member");
            slot.assigned = given;
            slot.synced = false;
            slot.session_deadline_us = now_us + slot.session_timeout_us;
        }
        // Durable before any member hears of the generation (Kafka answers SyncGroup only once the
        // leader's assignment is written).
        self.store();
        let mut replies = Vec::with_capacity(ids.len());
        for id in &ids {
            let slot = self.members.get_mut(id).expect("member");
            let corr = slot.pending_join.take().expect("every member rejoined");
            replies.push((slot.consumer, corr, *id));
        }
        for (to, corr, id) in replies {
            let body = Response::JoinGroup(Ok(self.join_ok(id)));
            self.outbox.push_back(Outgoing { to, resp: Resp { corr, body } });
        }
        let rebalance_us = self.members.values().map(|m| m.rebalance_timeout_us).max().unwrap_or(0);
        self.sync_deadline_us = now_us + rebalance_us;
        self.state = GroupState::CompletingRebalance;
        self.events.push_back(CoordinatorEvent::RebalanceEnd { generation: self.generation, assignment: self.assignment() });
        self.check_invariants();
    }

    fn append(&mut self, rec: LogRecord) {
        self.log.push(rec);
        if self.log.len() > self.cfg.offsets_log_records_max {
            self.compact();
        }
    }

    /// Writes the group metadata record for the current generation and members.
    fn store(&mut self) {
        self.stored = GroupRecord {
            generation: self.generation,
            protocol: self.protocol,
            members: self
                .members
                .iter()
                .map(|(&id, m)| StoredMember {
                    id,
                    consumer: m.consumer,
                    instance: m.instance,
                    topics: m.topics.clone(),
                    owned: m.owned.clone(),
                    assigned: m.assigned.clone(),
                    rebalance_timeout_us: m.rebalance_timeout_us,
                    session_timeout_us: m.session_timeout_us,
                    last_join_corr: m.last_join_corr,
                })
                .collect(),
        };
        self.append(LogRecord::Group(self.stored.clone()));
    }

    /// Log compaction: the latest offset per partition and the latest group metadata.
    fn compact(&mut self) {
        self.log.clear();
        self.log.push(LogRecord::Group(self.stored.clone()));
        for (&tp, &(offset, generation)) in &self.committed {
            self.log.push(LogRecord::Offset { tp, offset, generation });
        }
        assert!(self.log.len() <= self.cfg.offsets_log_records_max, "compacted log within its bound");
    }

    /// G1 at the coordinator: no partition is assigned to two members of one generation.
    fn check_invariants(&self) {
        let mut seen = BTreeSet::new();
        for m in self.members.values() {
            for tp in &m.assigned {
                assert!(seen.insert(*tp), "{tp} assigned twice in generation {}", self.generation);
            }
        }
        assert!(self.members.len() <= self.cfg.members_max);
    }
}
