//! The client side of the group protocol, one per consumer.
//!
//! The consumer driver feeds it responses, timer ticks and poll times, and drains [`Action`]s:
//! `Send` a request to the coordinator, `FindCoordinator` (the world answers with
//! [`Member::coordinator_found`]), and the ownership changes `Assign` / `Revoke` / `Lost`.
//!
//! Ownership rules (G1): the member owns a partition from its `Assign` until its `Revoke` or `Lost`.
//! A `Revoke` is answered by the driver with [`Member::revoke_done`] after committing; the member
//! sends nothing that depends on the revocation before that. Besides, the member holds its
//! partitions only under a lease: every successful response to a request sent at `t` proves the
//! coordinator cannot evict it before `t + min(session timeout, rebalance timeout)`; when the lease
//! runs out without renewal the member declares its partitions `Lost` itself, before the coordinator
//! can give them to someone else.

use std::collections::VecDeque;

use sluice_core::spec::Protocol;
use sluice_core::types::{Generation, MemberId, Offset, Tp};

use super::{ms, ErrorCode, GroupMemberId, JoinGroup, JoinOk, Req, Request, Resp, Response};

/// Static settings of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// The consumer this member runs in (its network address and history name).
    pub consumer: MemberId,
    /// `group.instance.id` (KIP-345): `Some` makes the member static.
    pub group_instance_id: Option<u32>,
    pub protocol: Protocol,
    pub topics: Vec<u16>,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Also the rebalance timeout sent in JoinGroup.
    pub max_poll_interval_ms: u64,
    /// A request without a response after this long is timed out (and retried, if a group request).
    pub request_timeout_ms: u64,
    /// Group requests (join, sync, heartbeat) are retried at most this many times before the member
    /// treats the coordinator as unknown and asks to rediscover it.
    pub retries_max: u32,
    pub retry_backoff_ms: u64,
}

/// What the member asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this request to the current coordinator.
    Send(Req),
    /// The coordinator is unknown: find which broker coordinates the group now, then call
    /// [`Member::coordinator_found`].
    FindCoordinator,
    /// The member now owns `tps` in `generation` (in addition to what it keeps).
    Assign { generation: Generation, tps: Vec<Tp> },
    /// Stop processing `tps`, commit what was processed, then call [`Member::revoke_done`].
    Revoke { generation: Generation, tps: Vec<Tp> },
    /// `tps` are gone without a commit (they may already belong to another member).
    Lost { tps: Vec<Tp>, reason: LostReason },
    /// Answer to [`Member::commit`] with the same `corr`. `Err(None)`: timed out, outcome unknown.
    CommitDone { corr: u64, result: Result<(), Option<ErrorCode>> },
    /// Answer to [`Member::fetch_offsets`] with the same `corr`.
    Offsets { corr: u64, result: Result<Vec<(Tp, Option<Offset>)>, Option<ErrorCode>> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The lease ran out (no acknowledged request for the session / rebalance timeout).
    SessionExpired,
    /// The coordinator answered UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or FENCED_INSTANCE_ID.
    Fenced,
    /// `max.poll.interval.ms` passed without a poll: the member left the group.
    MaxPollExceeded,
    /// The member left the group at the driver's request ([`Member::leave`]).
    Left,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Not started, left, or waiting for the next poll after a max-poll breach.
    Idle,
    /// Waiting for the world to name the coordinator.
    FindingCoordinator,
    /// Waiting for the driver's `revoke_done` before rejoining.
    Revoking,
    /// JoinGroup sent, waiting for its response.
    Joining,
    /// SyncGroup sent, waiting for its response.
    Syncing,
    /// In a generation, heartbeating.
    Stable,
}

/// The client-side group state machine. See the module docs.
#[derive(Debug)]
pub struct Member {
    cfg: MemberConfig,
    state: MemberState,
    member_id: Option<GroupMemberId>,
    generation: Option<Generation>,
    /// Partitions owned now (assigned and neither revoked nor lost).
    owned: Vec<Tp>,
    last_poll_us: u64,
    next_corr: u64,
    actions: VecDeque<Action>,
}

impl Member {
    pub fn new(cfg: MemberConfig) -> Self {
        todo!()
    }

    /// Starts (or restarts after a max-poll breach) the member: finds the coordinator, then joins.
    pub fn start(&mut self, now_us: u64) {
        todo!()
    }

    /// The world names the coordinator (after `FindCoordinator`): the member (re)sends what it was
    /// waiting for.
    pub fn coordinator_found(&mut self, now_us: u64) {
        todo!()
    }

    pub fn handle_response(&mut self, now_us: u64, resp: Resp) {
        todo!()
    }

    /// Heartbeats, request timeouts and retries, the lease, and the max-poll check.
    pub fn handle_timeout(&mut self, now_us: u64) {
        todo!()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The driver polled at `now_us` (it resets the max-poll clock; after a max-poll breach the
    /// member rejoins).
    pub fn record_poll(&mut self, now_us: u64) {
        todo!()
    }

    /// The driver finished the revoke it was asked for (its commit is sent or done).
    pub fn revoke_done(&mut self, now_us: u64) {
        todo!()
    }

    /// Commits `offsets` in the current generation. Returns the correlation id that the matching
    /// [`Action::CommitDone`] carries, or `None` when the member is in no generation.
    pub fn commit(&mut self, now_us: u64, offsets: Vec<(Tp, Offset)>) -> Option<u64> {
        todo!()
    }

    /// Asks for the committed offsets of `tps`; answered by [`Action::Offsets`].
    pub fn fetch_offsets(&mut self, now_us: u64, tps: Vec<Tp>) -> u64 {
        todo!()
    }

    /// Leaves the group (consumer shutdown): everything owned is revoked (the driver commits),
    /// then LeaveGroup is sent (not by static members).
    pub fn leave(&mut self, now_us: u64) {
        todo!()
    }

    pub fn state(&self) -> MemberState {
        self.state
    }

    pub fn generation(&self) -> Option<Generation> {
        self.generation
    }

    pub fn member_id(&self) -> Option<GroupMemberId> {
        self.member_id
    }

    /// The partitions this member owns now.
    pub fn owned(&self) -> &[Tp] {
        &self.owned
    }

    pub fn consumer(&self) -> MemberId {
        self.cfg.consumer
    }
}
