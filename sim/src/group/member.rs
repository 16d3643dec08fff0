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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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

/// A bad [`MemberConfig`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberConfigError {
    #[error("heartbeat_interval_ms ({heartbeat}) must be > 0 and below session_timeout_ms ({session})")]
    Heartbeat { heartbeat: u64, session: u64 },
    #[error("{0} must be > 0")]
    Zero(&'static str),
    #[error("max_poll_interval_ms + request_timeout_ms overflows")]
    Overflow,
}

impl MemberConfig {
    /// Checks the relations the member relies on (the world should call it before [`Member::new`]).
    pub fn validate(&self) -> Result<(), MemberConfigError> {
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err(MemberConfigError::Heartbeat { heartbeat: self.heartbeat_interval_ms, session: self.session_timeout_ms });
        }
        if self.max_poll_interval_ms == 0 {
            return Err(MemberConfigError::Zero("max_poll_interval_ms"));
        }
        if self.request_timeout_ms == 0 {
            return Err(MemberConfigError::Zero("request_timeout_ms"));
        }
        let wait_ms = self.max_poll_interval_ms.checked_add(self.request_timeout_ms).ok_or(MemberConfigError::Overflow)?;
        wait_ms.checked_mul(1_000).map(|_| ()).ok_or(MemberConfigError::Overflow)
    }
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
    /// Not started, left, stopped by a fatal error, or waiting for the next poll after a max-poll
    /// breach.
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

/// The most commits and offset fetches one member keeps in flight.
pub const REQUESTS_INFLIGHT_MAX: usize = 64;

/// What the member does once the driver has finished a revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterRevoke {
    Rejoin,
    Leave,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Other {
    Commit,
    Fetch,
}

/// The join or sync request in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    corr: u64,
    sent_us: u64,
    deadline_us: u64,
}

/// The client-side group state machine. See the module docs.
#[derive(Debug)]
pub struct Member {
    cfg: MemberConfig,
    /// The phase, whether or not the coordinator is known (see [`Member::state`]).
    phase: MemberState,
    coordinator_known: bool,
    /// Set by a fatal error (FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL, …): the member stays idle.
    fatal: Option<ErrorCode>,
    member_id: Option<GroupMemberId>,
    generation: Option<Generation>,
    /// Partitions owned now, sorted (assigned and neither revoked nor lost).
    owned: Vec<Tp>,
    /// What the latest JoinGroup reported owning (cooperative): the coordinator withholds these
    /// from everybody else until this member revokes them and rejoins.
    reported: Vec<Tp>,
    /// Partitions of the `Revoke` the driver is working on (a subset of `owned`).
    revoking: Vec<Tp>,
    after_revoke: AfterRevoke,
    /// The member holds its partitions until then, unless renewed (see the module docs).
    lease_until_us: u64,
    last_poll_us: u64,
    /// Left after a max-poll breach; rejoins at the next poll.
    poll_breached: bool,
    group_inflight: Option<InFlight>,
    /// Join/sync attempts that timed out since the last success.
    attempts: u32,
    retry_at_us: Option<u64>,
    hb_inflight: Option<(u64, u64)>,
    hb_failures: u32,
    next_hb_us: u64,
    others: BTreeMap<u64, (Other, u64)>,
    next_corr: u64,
    actions: VecDeque<Action>,
}

impl Member {
    pub fn new(cfg: MemberConfig) -> Self {
        Member {
            cfg,
            phase: MemberState::Idle,
            coordinator_known: false,
            fatal: None,
            member_id: None,
            generation: None,
            owned: Vec::new(),
            reported: Vec::new(),
            revoking: Vec::new(),
            after_revoke: AfterRevoke::Rejoin,
            lease_until_us: 0,
            last_poll_us: 0,
            poll_breached: false,
            group_inflight: None,
            attempts: 0,
            retry_at_us: None,
            hb_inflight: None,
            hb_failures: 0,
            next_hb_us: 0,
            others: BTreeMap::new(),
            next_corr: 0,
            actions: VecDeque::new(),
        }
    }

    /// Starts the member: asks for the coordinator, then joins.
    pub fn start(&mut self, now_us: u64) {
        self.fatal = None;
        self.poll_breached = false;
        self.last_poll_us = now_us;
        self.coordinator_known = false;
        self.actions.push_back(Action::FindCoordinator);
        self.begin_join(now_us);
    }

    /// The world names the coordinator (after `FindCoordinator`): the member (re)sends what it was
    /// waiting for.
    pub fn coordinator_found(&mut self, now_us: u64) {
        self.coordinator_known = true;
        self.attempts = 0;
        self.hb_failures = 0;
        match self.phase {
            MemberState::Joining | MemberState::Syncing if self.group_inflight.is_none() => self.send_group(now_us),
            MemberState::Stable | MemberState::Revoking => self.next_hb_us = now_us,
            _ => {}
        }
    }

    /// The connection to the coordinator was reset (its broker's process died), or, with
    /// `refused`, never made (the process was already down: nothing listens): as in Kafka's
    /// network client, every request in flight on it fails at once instead of waiting for its
    /// timeout. After a reset, commits and offset fetches end with an unknown outcome (the broker
    /// may have applied them before it died); refused, they reached no broker and fail outright
    /// (`COORDINATOR_NOT_AVAILABLE`). A join, sync or heartbeat is dropped and the member
    /// rediscovers the coordinator (then resends its join or sync). Without this a member waiting
    /// for a JoinGroup answer from a dead coordinator would wait out
    /// `max_poll_interval_ms + request_timeout_ms` before looking for its successor.
    pub fn coordinator_disconnected(&mut self, _now_us: u64, refused: bool) {
        let err = refused.then_some(ErrorCode::CoordinatorNotAvailable);
        for (corr, (kind, _)) in std::mem::take(&mut self.others) {
            self.actions.push_back(match kind {
                Other::Commit => Action::CommitDone { corr, result: Err(err) },
                Other::Fetch => Action::Offsets { corr, result: Err(err) },
            });
        }
        if self.phase != MemberState::Idle {
            self.coordinator_lost();
        }
    }

    pub fn handle_response(&mut self, now_us: u64, resp: Resp) {
        let Resp { corr, body } = resp;
        match body {
            Response::JoinGroup(r) => {
                let Some(f) = self.take_group(corr, MemberState::Joining) else { return };
                match r {
                    Ok(JoinOk { generation, member_id, .. }) => {
                        self.member_id = Some(member_id);
                        self.generation = Some(generation);
                        self.renew(f.sent_us);
                        self.phase = MemberState::Syncing;
                        self.send_group(now_us);
                    }
                    Err(e) => self.group_error(now_us, e),
                }
            }
            Response::SyncGroup(r) => {
                let Some(f) = self.take_group(corr, MemberState::Syncing) else { return };
                match r {
                    Ok(tps) => {
                        self.renew(f.sent_us);
                        self.apply_assignment(now_us, tps);
                    }
                    Err(e) => self.group_error(now_us, e),
                }
            }
            Response::Heartbeat(r) => {
                let Some((hb_corr, sent_us)) = self.hb_inflight else { return };
                if hb_corr != corr {
                    return;
                }
                self.hb_inflight = None;
                match r {
                    Ok(()) => {
                        self.hb_failures = 0;
                        self.renew(sent_us);
                    }
                    Err(e) => self.group_error(now_us, e),
                }
            }
            Response::LeaveGroup(_) => {}
            Response::OffsetCommit(r) => {
                if let Some((Other::Commit, _)) = self.others.remove(&corr) {
                    self.coordinator_error(r.err());
                    self.actions.push_back(Action::CommitDone { corr, result: r.map_err(Some) });
                }
            }
            Response::OffsetFetch(r) => {
                if let Some((Other::Fetch, _)) = self.others.remove(&corr) {
                    self.coordinator_error(r.as_ref().err().copied());
                    self.actions.push_back(Action::Offsets { corr, result: r.map_err(Some) });
                }
            }
        }
    }

    /// Heartbeats, request timeouts and retries, the lease, and the max-poll check.
    pub fn handle_timeout(&mut self, now_us: u64) {
        // Commits and fetches without an answer: outcome unknown (also after the member left).
        let late: Vec<(u64, Other)> = self
            .others
            .iter()
            .filter(|(_, (_, sent))| sent + ms(self.cfg.request_timeout_ms) <= now_us)
            .map(|(c, (k, _))| (*c, *k))
            .collect();
        for (corr, kind) in late {
            self.others.remove(&corr);
            self.actions.push_back(match kind {
                Other::Commit => Action::CommitDone { corr, result: Err(None) },
                Other::Fetch => Action::Offsets { corr, result: Err(None) },
            });
        }
        if self.phase == MemberState::Idle {
            return;
        }
        // max.poll.interval.ms: leave, lose everything, rejoin at the next poll.
        if now_us > self.last_poll_us + ms(self.cfg.max_poll_interval_ms) {
            self.lose_all(LostReason::MaxPollExceeded);
            self.send_leave(now_us);
            self.poll_breached = true;
            return;
        }
        // The lease: drop the partitions before the coordinator may give them away.
        if !self.owned.is_empty() && now_us >= self.lease_until_us {
            self.lose_all(LostReason::SessionExpired);
            self.after_loss(now_us);
        }
        // Join/sync timeout: retry after the backoff; too many timeouts: rediscover the coordinator.
        if self.group_inflight.is_some_and(|f| f.deadline_us <= now_us) {
            self.group_inflight = None;
            self.attempts += 1;
            if self.attempts > self.cfg.retries_max {
                self.coordinator_lost();
            } else {
                self.retry_at_us = Some(now_us + ms(self.cfg.retry_backoff_ms));
            }
        }
        if self.retry_at_us.is_some_and(|t| t <= now_us) {
            self.retry_at_us = None;
            if matches!(self.phase, MemberState::Joining | MemberState::Syncing) && self.group_inflight.is_none() {
                self.send_group(now_us);
            }
        }
        // Heartbeats.
        if let Some((_, sent)) = self.hb_inflight {
            if sent + ms(self.cfg.request_timeout_ms) <= now_us {
                self.hb_inflight = None;
                self.hb_failures += 1;
                self.next_hb_us = now_us + ms(self.cfg.retry_backoff_ms);
                if self.hb_failures > self.cfg.retries_max {
                    self.coordinator_lost();
                }
            }
        }
        if self.heartbeating() && self.hb_inflight.is_none() && self.next_hb_us <= now_us {
            let (generation, member_id) = (self.generation.expect("in a generation"), self.member_id.expect("a member"));
            let corr = self.send(Request::Heartbeat { generation, member_id });
            self.hb_inflight = Some((corr, now_us));
            self.next_hb_us = now_us + ms(self.cfg.heartbeat_interval_ms);
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let request_us = ms(self.cfg.request_timeout_ms);
        let others = self.others.values().map(|(_, sent)| sent + request_us).min();
        if self.phase == MemberState::Idle {
            return others;
        }
        let max_poll = Some(self.last_poll_us + ms(self.cfg.max_poll_interval_ms) + 1);
        let lease = (!self.owned.is_empty()).then_some(self.lease_until_us);
        let group = self.group_inflight.map(|f| f.deadline_us);
        let hb = match self.hb_inflight {
            Some((_, sent)) => Some(sent + request_us),
            None => self.heartbeating().then_some(self.next_hb_us),
        };
        [max_poll, lease, group, self.retry_at_us, hb, others].into_iter().flatten().min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The action [`Self::poll_action`] would return next, left in place.
    pub fn peek_action(&self) -> Option<&Action> {
        self.actions.front()
    }

    /// The driver polled at `now_us`: resets the max-poll clock; after a max-poll breach the member
    /// rejoins.
    pub fn record_poll(&mut self, now_us: u64) {
        self.last_poll_us = self.last_poll_us.max(now_us);
        if self.poll_breached && self.fatal.is_none() {
            self.poll_breached = false;
            self.begin_join(now_us);
        }
    }

    /// The driver finished the revoke it was asked for (its commit is sent or done).
    pub fn revoke_done(&mut self, now_us: u64) {
        if self.phase != MemberState::Revoking {
            return; // the revoke was overtaken (partitions lost, member left)
        }
        let revoked: BTreeSet<Tp> = std::mem::take(&mut self.revoking).into_iter().collect();
        self.owned.retain(|tp| !revoked.contains(tp));
        match self.after_revoke {
            AfterRevoke::Leave if !self.owned.is_empty() => self.revoke(self.owned.clone(), AfterRevoke::Leave),
            AfterRevoke::Leave => self.send_leave(now_us),
            AfterRevoke::Rejoin => {
                self.phase = MemberState::Joining;
                self.begin_join(now_us);
            }
        }
    }

    /// Commits `offsets` in the current generation. Returns the correlation id that the matching
    /// [`Action::CommitDone`] carries, or `None` when the member is in no generation or already has
    /// [`REQUESTS_INFLIGHT_MAX`] requests in flight.
    pub fn commit(&mut self, now_us: u64, offsets: Vec<(Tp, Offset)>) -> Option<u64> {
        let (Some(generation), Some(member_id)) = (self.generation, self.member_id) else { return None };
        if self.others.len() >= REQUESTS_INFLIGHT_MAX {
            return None;
        }
        let corr = self.send(Request::OffsetCommit { generation, member_id, offsets });
        self.others.insert(corr, (Other::Commit, now_us));
        Some(corr)
    }

    /// Asks for the committed offsets of `tps`; answered by [`Action::Offsets`]. `None` when
    /// [`REQUESTS_INFLIGHT_MAX`] requests are in flight.
    pub fn fetch_offsets(&mut self, now_us: u64, tps: Vec<Tp>) -> Option<u64> {
        if self.others.len() >= REQUESTS_INFLIGHT_MAX {
            return None;
        }
        let corr = self.send(Request::OffsetFetch { tps });
        self.others.insert(corr, (Other::Fetch, now_us));
        Some(corr)
    }

    /// Leaves the group (consumer shutdown): everything owned is revoked (the driver commits), then
    /// LeaveGroup is sent (not by static members, which keep their slot for the session timeout).
    pub fn leave(&mut self, now_us: u64) {
        match self.phase {
            MemberState::Idle => {}
            MemberState::Revoking => self.after_revoke = AfterRevoke::Leave,
            _ if !self.owned.is_empty() => self.revoke(self.owned.clone(), AfterRevoke::Leave),
            _ => self.send_leave(now_us),
        }
    }

    /// The phase; `FindingCoordinator` while the coordinator is unknown in any active phase.
    pub fn state(&self) -> MemberState {
        if self.phase != MemberState::Idle && !self.coordinator_known {
            MemberState::FindingCoordinator
        } else {
            self.phase
        }
    }

    /// The fatal error that stopped the member, if any.
    pub fn fatal(&self) -> Option<ErrorCode> {
        self.fatal
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

    // ---- internals --------------------------------------------------------------------------

    fn send(&mut self, body: Request) -> u64 {
        self.next_corr += 1;
        let corr = self.next_corr;
        self.actions.push_back(Action::Send(Req { corr, from: self.cfg.consumer, body }));
        corr
    }

    /// Heartbeats run while the member is in a generation and not (re)joining.
    fn heartbeating(&self) -> bool {
        matches!(self.phase, MemberState::Stable | MemberState::Revoking)
            && self.coordinator_known
            && self.generation.is_some()
            && self.member_id.is_some()
    }

    /// The coordinator acknowledged a request sent at `sent_us`: it cannot evict this member before
    /// `sent_us + min(session timeout, rebalance timeout)`.
    fn renew(&mut self, sent_us: u64) {
        let lease_us = ms(self.cfg.session_timeout_ms.min(self.cfg.max_poll_interval_ms));
        self.lease_until_us = self.lease_until_us.max(sent_us + lease_us);
    }

    /// Takes the join/sync in flight if `corr` answers it in `phase`.
    fn take_group(&mut self, corr: u64, phase: MemberState) -> Option<InFlight> {
        let f = self.group_inflight.filter(|f| f.corr == corr && self.phase == phase)?;
        self.group_inflight = None;
        self.attempts = 0;
        Some(f)
    }

    /// Sends the join or sync of the current phase, if the coordinator is known.
    fn send_group(&mut self, now_us: u64) {
        if !self.coordinator_known {
            return;
        }
        let (body, wait_us) = match self.phase {
            MemberState::Joining => {
                self.reported.clone_from(&self.owned);
                let j = JoinGroup {
                    member_id: self.member_id,
                    group_instance_id: self.cfg.group_instance_id,
                    protocol: self.cfg.protocol,
                    topics: self.cfg.topics.clone(),
                    owned: self.owned.clone(),
                    rebalance_timeout_ms: self.cfg.max_poll_interval_ms,
                    session_timeout_ms: self.cfg.session_timeout_ms,
                };
                // The coordinator answers a join only when the join phase ends.
                (Request::JoinGroup(j), ms(self.cfg.max_poll_interval_ms + self.cfg.request_timeout_ms))
            }
            MemberState::Syncing => {
                let (generation, member_id) = (self.generation.expect("joined"), self.member_id.expect("joined"));
                (Request::SyncGroup { generation, member_id }, ms(self.cfg.request_timeout_ms))
            }
            _ => return,
        };
        let corr = self.send(body);
        self.group_inflight = Some(InFlight { corr, sent_us: now_us, deadline_us: now_us + wait_us });
    }

    /// (Re)joins: under eager, everything owned is revoked first (the join follows `revoke_done`);
    /// under cooperative the member joins with what it owns.
    fn begin_join(&mut self, now_us: u64) {
        if self.phase == MemberState::Revoking {
            return; // the join follows revoke_done
        }
        self.hb_inflight = None;
        self.retry_at_us = None;
        if self.cfg.protocol == Protocol::Eager && !self.owned.is_empty() {
            self.revoke(self.owned.clone(), AfterRevoke::Rejoin);
            return;
        }
        self.phase = MemberState::Joining;
        self.group_inflight = None;
        self.send_group(now_us);
    }

    fn revoke(&mut self, tps: Vec<Tp>, after: AfterRevoke) {
        debug_assert!(tps.iter().all(|tp| self.owned.contains(tp)));
        self.phase = MemberState::Revoking;
        self.after_revoke = after;
        self.revoking = tps.clone();
        self.actions.push_back(Action::Revoke { generation: self.generation.unwrap_or(0), tps });
    }

    /// SyncGroup answered: take the new partitions, revoke the ones taken away (KIP-429 round 1,
    /// followed by a rejoin for round 2).
    fn apply_assignment(&mut self, now_us: u64, tps: Vec<Tp>) {
        let generation = self.generation.expect("synced a generation");
        let target: BTreeSet<Tp> = tps.into_iter().collect();
        let fresh: Vec<Tp> = target.iter().filter(|tp| !self.owned.contains(tp)).copied().collect();
        let gone: Vec<Tp> = self.owned.iter().filter(|tp| !target.contains(tp)).copied().collect();
        // A partition reported in the join but lost since (the lease ran out while the join phase
        // was open) was withheld from everybody in this generation, waiting for a revoke that
        // cannot come: rejoin so that the next generation gives it out.
        let withheld = self.reported.iter().any(|tp| !target.contains(tp) && !self.owned.contains(tp));
        self.reported.clear();
        self.phase = MemberState::Stable;
        self.hb_failures = 0;
        self.next_hb_us = now_us + ms(self.cfg.heartbeat_interval_ms);
        if !fresh.is_empty() {
            self.owned.extend_from_slice(&fresh);
            self.owned.sort_unstable();
            self.actions.push_back(Action::Assign { generation, tps: fresh });
        }
        if !gone.is_empty() {
            self.revoke(gone, AfterRevoke::Rejoin);
        } else if withheld {
            self.begin_join(now_us);
        }
    }

    /// An error answer to a join, sync or heartbeat.
    fn group_error(&mut self, now_us: u64, e: ErrorCode) {
        match e {
            // A revoke in progress is followed by a rejoin (or the leave) anyway.
            ErrorCode::RebalanceInProgress if self.phase == MemberState::Revoking => {}
            ErrorCode::RebalanceInProgress => self.begin_join(now_us),
            ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId => {
                self.lose_all(LostReason::Fenced);
                self.generation = None;
                if e == ErrorCode::UnknownMemberId {
                    self.member_id = None;
                }
                if matches!(self.phase, MemberState::Stable | MemberState::Syncing) {
                    self.phase = MemberState::Joining; // no revoke: nothing is owned any more
                }
                self.after_loss(now_us);
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => self.coordinator_lost(),
            ErrorCode::FencedInstanceId
            | ErrorCode::InconsistentGroupProtocol
            | ErrorCode::InvalidSessionTimeout
            | ErrorCode::GroupMaxSizeReached
            | ErrorCode::UnknownTopicOrPartition => {
                self.lose_all(LostReason::Fenced);
                self.stop();
                self.fatal = Some(e);
            }
        }
    }

    fn coordinator_error(&mut self, e: Option<ErrorCode>) {
        if matches!(e, Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)) {
            self.coordinator_lost();
        }
    }

    fn coordinator_lost(&mut self) {
        self.group_inflight = None;
        self.hb_inflight = None;
        self.retry_at_us = None;
        self.attempts = 0;
        self.hb_failures = 0;
        if self.coordinator_known {
            self.coordinator_known = false;
            self.actions.push_back(Action::FindCoordinator);
        }
    }

    /// Drops everything owned without a commit (including a revoke in progress); the caller then
    /// calls [`Self::after_loss`].
    fn lose_all(&mut self, reason: LostReason) {
        self.revoking.clear();
        if !self.owned.is_empty() {
            let tps = std::mem::take(&mut self.owned);
            self.actions.push_back(Action::Lost { tps, reason });
        }
    }

    /// After a loss: a revoke in progress is overtaken (what was to follow it happens now); a
    /// member in a generation rejoins; a join or sync in flight carries on.
    fn after_loss(&mut self, now_us: u64) {
        match (self.phase, self.after_revoke) {
            (MemberState::Revoking, AfterRevoke::Leave) => self.send_leave(now_us),
            (MemberState::Revoking, AfterRevoke::Rejoin) | (MemberState::Stable, _) => {
                self.phase = MemberState::Joining;
                self.begin_join(now_us);
            }
            (MemberState::Joining, _) if self.group_inflight.is_none() => self.begin_join(now_us),
            _ => {}
        }
    }

    /// LeaveGroup (dynamic members only), then idle.
    fn send_leave(&mut self, _now_us: u64) {
        debug_assert!(self.owned.is_empty());
        if let (None, Some(member_id), true) = (self.cfg.group_instance_id, self.member_id, self.coordinator_known) {
            self.send(Request::LeaveGroup { member_id });
        }
        self.stop();
    }

    /// Back to idle, out of any generation.
    fn stop(&mut self) {
        self.phase = MemberState::Idle;
        self.member_id = None;
        self.generation = None;
        self.group_inflight = None;
        self.hb_inflight = None;
        self.retry_at_us = None;
        self.revoking.clear();
    }
}
