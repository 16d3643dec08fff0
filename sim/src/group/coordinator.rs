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
    /// `group.max.session.timeout.ms`: larger session timeouts are refused. It also bounds every
    /// lease a member may hold, which a restored coordinator waits out (see [`Coordinator::restore`]).
    pub group_max_session_timeout_ms: u64,
    /// The offsets log is compacted (latest record per partition) when it grows beyond this.
    /// Must exceed `partitions.len() + 1`.
    pub offsets_log_records_max: usize,
    /// This coordinator's incarnation (e.g. the leader epoch of the offsets partition); member ids
    /// it issues carry it.
    pub epoch: u32,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// A committed offset, with the generation of the commit.
    Offset { tp: Tp, offset: Offset, generation: Generation },
    /// A generation was formed (group metadata): a restored coordinator continues above it.
    Generation { generation: Generation },
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
    owned: Vec<Tp>,
    rebalance_timeout_us: u64,
    session_timeout_us: u64,
    /// Session deadline: last heartbeat (or join/sync) + session timeout.
    session_deadline_us: u64,
    /// The JoinGroup awaiting an answer in this rebalance (its correlation id).
    pending_join: Option<u64>,
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
    /// When the join phase ends at the latest (rebalance timeout / initial delay).
    join_deadline_us: Option<u64>,
    /// When the sync phase ends at the latest (members that have not synced are removed).
    sync_deadline_us: Option<u64>,
    /// No rebalance completes before this (a restored coordinator waits out old leases).
    fence_until_us: u64,
    committed: BTreeMap<Tp, (Offset, Generation)>,
    log: Vec<LogRecord>,
    outbox: VecDeque<Outgoing>,
    events: VecDeque<CoordinatorEvent>,
}

impl Coordinator {
    /// A fresh coordinator for an empty group.
    pub fn new(cfg: CoordinatorConfig) -> Result<Self, ConfigError> {
        todo!()
    }

    /// A coordinator taking over after failover, rebuilt from the replicated offsets log. It knows
    /// the committed offsets and the last generation (new generations continue above it) but no
    /// members: every member must rejoin (its old member id is unknown here, so its heartbeats get
    /// UNKNOWN_MEMBER_ID). Members of the old coordinator may still hold partitions under their
    /// lease (at most `group_max_session_timeout_ms` after their last acknowledged request, which
    /// precedes `now_us`), so no rebalance completes before `now_us + group_max_session_timeout_ms`.
    pub fn restore(cfg: CoordinatorConfig, log: &[LogRecord], now_us: u64) -> Result<Self, ConfigError> {
        todo!()
    }

    /// Handles one request. Responses go to the outbox; the world must drain [`Self::poll_transmit`]
    /// after every call (the outbox holds at most `2 * members_max + 1` responses).
    pub fn handle_request(&mut self, now_us: u64, req: Req) {
        todo!()
    }

    /// Fires the timers that are due at `now_us`: session timeouts, the end of the join phase, the
    /// end of the sync phase.
    pub fn handle_timeout(&mut self, now_us: u64) {
        todo!()
    }

    /// The earliest time at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CoordinatorEvent> {
        self.events.pop_front()
    }

    /// The offsets log to replicate (compacted when it exceeds `offsets_log_records_max`).
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

    /// The members (consumer → partitions) of the current generation's assignment.
    pub fn assignment(&self) -> BTreeMap<MemberId, Vec<Tp>> {
        self.members.values().map(|m| (m.consumer, m.assigned.clone())).collect()
    }

    pub fn members_len(&self) -> usize {
        self.members.len()
    }
}
