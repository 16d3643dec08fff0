//! The Kafka classic consumer-group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup /
//! OffsetCommit / OffsetFetch), with the cooperative variant (KIP-429) and static membership
//! (KIP-345), as two sans-IO state machines in the quinn-proto style:
//!
//! - [`coordinator::Coordinator`]: one per group, hosted by the coordinator broker.
//! - [`member::Member`]: the client side inside each consumer.
//!
//! Neither reads a clock or does IO. Inputs are `handle_*(now_us, …)` calls; outputs are queues the
//! caller drains (`poll_transmit` / `poll_action` / `poll_event`) and a timer
//! (`poll_timeout() -> Option<u64>`, an absolute time in µs at which `handle_timeout` must be called).
//! The world carries [`Req`] / [`Resp`] over its simulated network, which may delay, lose or
//! duplicate them; every request carries a correlation id so that the member ignores stale and
//! duplicated responses.
//!
//! Simplifications against real Kafka (each documented where it is made):
//! - The coordinator computes the assignment itself with [`sluice_core::assign::assign`] instead of
//!   the elected leader member; the JoinGroup response still names a leader, for the history.
//! - The offsets log replicates synchronously: a new coordinator after failover loads the committed
//!   offsets and the latest group metadata record (generation, members, assignments) at once, as
//!   Kafka's `GroupMetadataManager` does once the offsets partition has a new leader, and resumes
//!   the group Stable: members keep their partitions and only rediscover the coordinator (see
//!   [`coordinator::Coordinator::restore`]).
//! - Member ids are `(coordinator epoch, sequence)` pairs, not strings, so ids issued by different
//!   coordinator incarnations never collide.
//!
//! # How G1 is kept
//!
//! A partition is owned by at most one member at every instant, even with delayed, lost or
//! duplicated messages and coordinator failovers, because of three rules (each one is necessary:
//! the random-schedule test in `tests.rs` breaks G1 when any of them is switched off; without the
//! renewal of rule 3, at seed 27):
//! 1. *Withholding* (KIP-429, and harmless under eager, where members report nothing owned): the
//!    coordinator never gives a member a partition that another member reported owning in its
//!    latest JoinGroup; stale or duplicated JoinGroups (older correlation id) are dropped.
//! 2. *Leases* (member side): an acknowledged join, sync or heartbeat sent at `t` proves the
//!    coordinator cannot remove the member before `t + min(session, rebalance timeout)`; without a
//!    renewal by then the member declares its partitions `Lost`. Conservative: a cooperative member
//!    waiting in a join phase longer than that drops its partitions and gets them back afterwards.
//! 3. *Durable generations*: a generation's assignment is written to the offsets log before any
//!    member hears of it, and a restored coordinator renews every stored member's session from the
//!    restore, so it removes no member (and gives away none of its partitions) while a lease
//!    granted by its predecessor may still run.
//!
//! And two rules keep the group live under cooperative withholding (a partition withheld for its
//! owner's revoke must not wait for a revoke that cannot come): a member whose assignment lacks a
//! partition it reported owning but lost meanwhile rejoins at once, and a static member taking its
//! slot over while its old incarnation's partitions are withheld triggers a rebalance.
//! Zombies remain possible where Kafka has them too: a static member whose old incarnation is still
//! alive after a new one took over its slot.

use sluice_core::spec::Protocol;
use sluice_core::types::{Generation, MemberId, Offset, Tp};

pub mod coordinator;
pub mod member;
#[cfg(test)]
mod tests;

pub use coordinator::{Coordinator, CoordinatorConfig, CoordinatorEvent, GroupState, LogRecord, Outgoing};
pub use member::{Action, LostReason, Member, MemberConfig, MemberConfigError, MemberState};

/// A member id issued by a coordinator (Kafka's `member.id`). `epoch` is the issuing coordinator's
/// incarnation, so ids from a crashed coordinator are unknown to its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupMemberId {
    pub epoch: u32,
    pub seq: u32,
}

impl std::fmt::Display for GroupMemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m{}.{}", self.epoch, self.seq)
    }
}

/// A request from a member to the coordinator. `corr` is chosen by the member and echoed in the
/// response; `from` is the consumer (network address) that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Req {
    pub corr: u64,
    pub from: MemberId,
    pub body: Request,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    JoinGroup(JoinGroup),
    SyncGroup { generation: Generation, member_id: GroupMemberId },
    Heartbeat { generation: Generation, member_id: GroupMemberId },
    LeaveGroup { member_id: GroupMemberId },
    OffsetCommit { generation: Generation, member_id: GroupMemberId, offsets: Vec<(Tp, Offset)> },
    OffsetFetch { tps: Vec<Tp> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroup {
    /// `None` on a first join (the coordinator issues one).
    pub member_id: Option<GroupMemberId>,
    /// `group.instance.id` (KIP-345); `Some` makes the member static.
    pub group_instance_id: Option<u32>,
    pub protocol: Protocol,
    /// Topic indices the member subscribes to.
    pub topics: Vec<u16>,
    /// Partitions the member still owns (cooperative protocol; empty under eager).
    pub owned: Vec<Tp>,
    /// `max.poll.interval.ms`: how long the coordinator waits for this member to rejoin.
    pub rebalance_timeout_ms: u64,
    pub session_timeout_ms: u64,
}

/// A response from the coordinator; `corr` echoes the request's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resp {
    pub corr: u64,
    pub body: Response,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    JoinGroup(Result<JoinOk, ErrorCode>),
    /// The member's assignment for the generation it synced.
    SyncGroup(Result<Vec<Tp>, ErrorCode>),
    Heartbeat(Result<(), ErrorCode>),
    LeaveGroup(Result<(), ErrorCode>),
    /// All offsets of the request are applied, or none (the generation check is per request).
    OffsetCommit(Result<(), ErrorCode>),
    /// The committed offset of each requested partition (`None`: nothing committed).
    OffsetFetch(Result<Vec<(Tp, Option<Offset>)>, ErrorCode>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOk {
    pub generation: Generation,
    pub member_id: GroupMemberId,
    /// The member Kafka would have asked to compute the assignment (the lowest member id); here
    /// only informative: the coordinator assigns.
    pub leader: GroupMemberId,
    pub protocol: Protocol,
}

/// Kafka's error codes for the group APIs (the subset this model produces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum ErrorCode {
    #[error("UNKNOWN_MEMBER_ID")]
    UnknownMemberId,
    #[error("ILLEGAL_GENERATION")]
    IllegalGeneration,
    #[error("REBALANCE_IN_PROGRESS")]
    RebalanceInProgress,
    /// A static member's id was replaced by a newer incarnation with the same instance id.
    #[error("FENCED_INSTANCE_ID")]
    FencedInstanceId,
    /// The member's protocol differs from the group's.
    #[error("INCONSISTENT_GROUP_PROTOCOL")]
    InconsistentGroupProtocol,
    #[error("INVALID_SESSION_TIMEOUT")]
    InvalidSessionTimeout,
    #[error("GROUP_MAX_SIZE_REACHED")]
    GroupMaxSizeReached,
    /// A commit or fetch names a partition outside the coordinator's partition table.
    #[error("UNKNOWN_TOPIC_OR_PARTITION")]
    UnknownTopicOrPartition,
    /// Produced by the world, not by [`Coordinator`]: the broker asked does not host the group.
    #[error("NOT_COORDINATOR")]
    NotCoordinator,
    /// Produced by the world while a new coordinator is loading the offsets log.
    #[error("COORDINATOR_NOT_AVAILABLE")]
    CoordinatorNotAvailable,
}

/// Converts a millisecond setting to the µs time base of the state machines.
pub(crate) const fn ms(v: u64) -> u64 {
    v.saturating_mul(1_000)
}
