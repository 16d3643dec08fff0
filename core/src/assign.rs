//! Partition assignors (range, round-robin, sticky, cooperative-sticky) as pure functions, and the
//! eager / cooperative (KIP-429) revoke-assign planning (rules G1, G3).
//!
//! STUB: signatures fixed; implementation and property tests pending.

use std::collections::BTreeMap;

use crate::spec::{AssignorKind, Protocol};
use crate::types::{MemberId, Tp};

/// What the coordinator knows of one member when it computes an assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: MemberId,
    /// Topic indices the member subscribes to.
    pub topics: Vec<u16>,
    /// Partitions the member owned in the previous generation (sticky assignors use this).
    pub owned: Vec<Tp>,
}

pub type Assignment = BTreeMap<MemberId, Vec<Tp>>;

/// Computes the target assignment of `partitions` to `members`. Deterministic: the same input
/// gives the same output. Every partition subscribed by at least one member is assigned to exactly
/// one member that subscribes to its topic.
pub fn assign(_kind: AssignorKind, _members: &[MemberInfo], _partitions: &[Tp]) -> Assignment {
    todo!()
}

/// One step of a rebalance as members observe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The member stops processing and gives up these partitions (after committing them).
    Revoke { member: MemberId, tps: Vec<Tp> },
    /// The member starts owning these partitions.
    Assign { member: MemberId, tps: Vec<Tp> },
}

/// A plan from `current` ownership to `target`, in execution order. Eager: every member revokes all
/// it owns, then the target is assigned. Cooperative: round 1 revokes only partitions that move
/// (members keep the rest and are assigned nothing new), round 2 assigns the freed partitions.
/// Executing the steps in order never gives a partition two owners (G1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Number of join/sync rounds the plan needs (1 for eager, 1 or 2 for cooperative).
    pub rounds: u32,
}

pub fn plan(_protocol: Protocol, _current: &Assignment, _target: &Assignment) -> Plan {
    todo!()
}
