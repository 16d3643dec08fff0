//! Partition assignors (range, round-robin, sticky, cooperative-sticky) as pure functions, and the
//! eager / cooperative (KIP-429) revoke-assign planning (rules G1, G3).
//!
//! Input normalisation (all assignors): partitions are deduplicated and sorted by (topic,
//! partition); members are sorted by id, and of two entries with the same id the first one counts.
//! A partition whose topic no member subscribes to is left unassigned. Every member appears in the
//! result, possibly with an empty list; each list is sorted.
//!
//! - **range** (Kafka's RangeAssignor): per topic, the members subscribed to it sorted by id; the
//!   topic's `n` partitions are split into contiguous ranges of `n / m`, the first `n % m` members
//!   getting one extra.
//! - **round-robin** (Kafka's RoundRobinAssignor): all partitions sorted by (topic, partition),
//!   dealt to the members sorted by id in a circle, skipping members not subscribed to the
//!   partition's topic.
//! - **sticky** and **cooperative-sticky** compute the same target (they differ in the protocol
//!   that moves to it, see [`plan`]):
//!   1. *Keep*: each member, in id order, keeps the partitions in its `owned` that still exist and
//!      whose topic it still subscribes to; a partition claimed by two members stays with the lower
//!      id.
//!   2. *Fill*: each partition nobody kept, in (topic, partition) order, goes to the subscribed
//!      member with the fewest partitions (ties: lowest id).
//!   3. *Balance*: while some member `a` holds at least two partitions more than some member `b`
//!      that could take one of them, one partition moves from `a` to `b`: `a` is the member with the
//!      most partitions (ties: lowest id) that has such a `b`, `b` the eligible member with the
//!      fewest (ties: lowest id), and the partition is the highest one of `a` that `b`
//!      subscribes to, preferring one `a` did not own before. Each move lowers the sum of squared
//!      counts, so the loop ends; it is also bounded by the number of partitions squared.
//!
//!   With equal subscriptions this ends with counts that differ by at most one (G3), and it moves
//!   the fewest kept partitions possible: moves come only from the members with the most
//!   partitions, and only while someone is two below them.
//!
//! Planted bug [`Bug::UnbalancedAssignor`] (via [`assign_with_bugs`]): round-robin gives every
//! partition to the first member (by id) that subscribes to its topic.

use std::collections::{BTreeMap, BTreeSet};

use crate::bugs::{Bug, Bugs};
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
pub fn assign(kind: AssignorKind, members: &[MemberInfo], partitions: &[Tp]) -> Assignment {
    assign_with_bugs(kind, members, partitions, Bugs::NONE)
}

/// [`assign`] with planted bugs; only [`Bug::UnbalancedAssignor`] affects assignment.
pub fn assign_with_bugs(
    kind: AssignorKind,
    members: &[MemberInfo],
    partitions: &[Tp],
    bugs: Bugs,
) -> Assignment {
    let input = Input::new(members, partitions);
    let out = match kind {
        AssignorKind::Range => range(&input),
        AssignorKind::RoundRobin if bugs.has(Bug::UnbalancedAssignor) => {
            first_member_takes_all(&input)
        }
        AssignorKind::RoundRobin => round_robin(&input),
        AssignorKind::Sticky | AssignorKind::CooperativeSticky => sticky(&input),
    };
    debug_assert!(input.is_total(&out));
    out
}

/// Normalised assignor input.
struct Input<'a> {
    /// Members sorted by id, first entry per id.
    members: Vec<&'a MemberInfo>,
    /// Subscriptions per member, in the same order as `members`.
    subs: Vec<BTreeSet<u16>>,
    /// Partitions, deduplicated and sorted.
    partitions: Vec<Tp>,
}

impl<'a> Input<'a> {
    fn new(members: &'a [MemberInfo], partitions: &[Tp]) -> Self {
        let mut by_id: BTreeMap<MemberId, &MemberInfo> = BTreeMap::new();
        for m in members {
            by_id.entry(m.id).or_insert(m);
        }
        let members: Vec<&MemberInfo> = by_id.into_values().collect();
        let subs = members
            .iter()
            .map(|m| m.topics.iter().copied().collect())
            .collect();
        let partitions = partitions
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Input {
            members,
            subs,
            partitions,
        }
    }

    fn empty(&self) -> Assignment {
        self.members.iter().map(|m| (m.id, Vec::new())).collect()
    }

    /// Indices of the members subscribed to `topic`, in id order.
    fn subscribers(&self, topic: u16) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(move |&i| self.subs[i].contains(&topic))
    }

    fn is_total(&self, out: &Assignment) -> bool {
        let mut seen = BTreeSet::new();
        for (id, tps) in out {
            let Some(i) = self.members.iter().position(|m| m.id == *id) else {
                return false;
            };
            for tp in tps {
                if !seen.insert(*tp) || !self.subs[i].contains(&tp.topic) {
                    return false;
                }
            }
        }
        self.partitions
            .iter()
            .all(|tp| seen.contains(tp) || self.subscribers(tp.topic).next().is_none())
    }
}

fn range(input: &Input) -> Assignment {
    let mut out = input.empty();
    let mut by_topic: BTreeMap<u16, Vec<Tp>> = BTreeMap::new();
    for tp in &input.partitions {
        by_topic.entry(tp.topic).or_default().push(*tp);
    }
    for (topic, tps) in by_topic {
        let subs: Vec<usize> = input.subscribers(topic).collect();
        if subs.is_empty() {
            continue;
        }
        let (n, m) = (tps.len(), subs.len());
        let (base, extra) = (n / m, n % m);
        let mut at = 0;
        for (k, &i) in subs.iter().enumerate() {
            let len = base + usize::from(k < extra);
            out.get_mut(&input.members[i].id)
                .expect("member present")
                .extend_from_slice(&tps[at..at + len]);
            at += len;
        }
        debug_assert_eq!(at, n);
    }
    out
}

fn round_robin(input: &Input) -> Assignment {
    let mut out = input.empty();
    let m = input.members.len();
    let mut cursor = 0usize;
    for tp in &input.partitions {
        // At most one full turn of the circle: no subscriber means the partition stays unassigned.
        let Some(step) = (0..m).find(|s| input.subs[(cursor + s) % m].contains(&tp.topic)) else {
            continue;
        };
        let i = (cursor + step) % m;
        out.get_mut(&input.members[i].id)
            .expect("member present")
            .push(*tp);
        cursor = (i + 1) % m;
    }
    out
}

fn first_member_takes_all(input: &Input) -> Assignment {
    let mut out = input.empty();
    for tp in &input.partitions {
        if let Some(i) = input.subscribers(tp.topic).next() {
            out.get_mut(&input.members[i].id)
                .expect("member present")
                .push(*tp);
        }
    }
    out
}

fn sticky(input: &Input) -> Assignment {
    let m = input.members.len();
    let valid: BTreeSet<Tp> = input.partitions.iter().copied().collect();
    let mut held: Vec<BTreeSet<Tp>> = vec![BTreeSet::new(); m];
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // 1. Keep.
    for (i, member) in input.members.iter().enumerate() {
        for tp in &member.owned {
            if valid.contains(tp) && input.subs[i].contains(&tp.topic) && taken.insert(*tp) {
                held[i].insert(*tp);
            }
        }
    }
    let kept: Vec<BTreeSet<Tp>> = held.clone();
    // 2. Fill.
    for tp in &input.partitions {
        if taken.contains(tp) {
            continue;
        }
        if let Some(i) = input
            .subscribers(tp.topic)
            .min_by_key(|&i| (held[i].len(), i))
        {
            held[i].insert(*tp);
            taken.insert(*tp);
        }
    }
    // 3. Balance.
    let moves_max = input
        .partitions
        .len()
        .saturating_mul(input.partitions.len())
        .max(1);
    for _ in 0..moves_max {
        let Some((a, b, tp)) = best_move(input, &held, &kept) else {
            break;
        };
        held[a].remove(&tp);
        held[b].insert(tp);
    }
    input
        .members
        .iter()
        .zip(held)
        .map(|(mi, h)| (mi.id, h.into_iter().collect()))
        .collect()
}

/// The next balancing move of the sticky assignor, if any: (from, to, partition).
fn best_move(
    input: &Input,
    held: &[BTreeSet<Tp>],
    kept: &[BTreeSet<Tp>],
) -> Option<(usize, usize, Tp)> {
    let m = held.len();
    let mut donors: Vec<usize> = (0..m).collect();
    donors.sort_by_key(|&i| (std::cmp::Reverse(held[i].len()), i));
    let mut takers: Vec<usize> = (0..m).collect();
    takers.sort_by_key(|&i| (held[i].len(), i));
    for &a in &donors {
        for &b in &takers {
            if held[a].len() < held[b].len() + 2 {
                break;
            }
            let movable = |tp: &&Tp| input.subs[b].contains(&tp.topic);
            let fresh = held[a]
                .iter()
                .rev()
                .filter(movable)
                .find(|tp| !kept[a].contains(tp));
            if let Some(tp) = fresh.or_else(|| held[a].iter().rev().find(movable)) {
                return Some((a, b, *tp));
            }
        }
    }
    None
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
/// (members keep the rest) and assigns only partitions nobody owned; round 2 assigns the freed
/// partitions to their new owners.
/// Executing the steps in order never gives a partition two owners (G1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Number of join/sync rounds the plan needs (1 for eager, 1 or 2 for cooperative).
    pub rounds: u32,
}

/// The plan from `current` to `target` (see [`plan_rounds`]), flattened.
pub fn plan(protocol: Protocol, current: &Assignment, target: &Assignment) -> Plan {
    let rounds = plan_rounds(protocol, current, target);
    Plan {
        rounds: rounds.len() as u32,
        steps: rounds.into_iter().flatten().collect(),
    }
}

/// The plan from `current` to `target`, one `Vec<Step>` per join/sync round, steps by member id.
/// Precondition: `target` gives each partition to at most one member (as [`assign`] does).
///
/// - Eager (one round): every member of `current` revokes everything it owns (possibly nothing),
///   then every member of `target` is assigned its whole target.
/// - Cooperative (KIP-429): round 1 — each member revokes the partitions it owns that its target
///   does not hold (they move to someone else or disappear), then each member is assigned the
///   partitions of its target that nobody owns in `current`; members keep the rest. Round 2, only
///   if round 1 revoked something — the revoked partitions are assigned to their new owners.
///   Cooperative `Assign` steps are increments: the member owns them in addition to what it kept.
///   Empty steps are left out.
pub fn plan_rounds(
    protocol: Protocol,
    current: &Assignment,
    target: &Assignment,
) -> Vec<Vec<Step>> {
    match protocol {
        Protocol::Eager => {
            let mut steps: Vec<Step> = current
                .iter()
                .map(|(&member, tps)| Step::Revoke {
                    member,
                    tps: sorted(tps.iter().copied()),
                })
                .collect();
            steps.extend(target.iter().map(|(&member, tps)| Step::Assign {
                member,
                tps: sorted(tps.iter().copied()),
            }));
            vec![steps]
        }
        Protocol::Cooperative => {
            let owned: BTreeSet<Tp> = current.values().flatten().copied().collect();
            let empty = Vec::new();
            let members: BTreeSet<MemberId> =
                current.keys().chain(target.keys()).copied().collect();
            let mut revokes = Vec::new();
            let mut fresh = Vec::new();
            let mut freed_for = Vec::new();
            let mut revoked_any: BTreeSet<Tp> = BTreeSet::new();
            for &member in &members {
                let cur: BTreeSet<Tp> = current
                    .get(&member)
                    .unwrap_or(&empty)
                    .iter()
                    .copied()
                    .collect();
                let tgt: BTreeSet<Tp> = target
                    .get(&member)
                    .unwrap_or(&empty)
                    .iter()
                    .copied()
                    .collect();
                let revoke: Vec<Tp> = cur.difference(&tgt).copied().collect();
                revoked_any.extend(revoke.iter().copied());
                if !revoke.is_empty() {
                    revokes.push(Step::Revoke {
                        member,
                        tps: revoke,
                    });
                }
                let new: Vec<Tp> = tgt
                    .iter()
                    .filter(|tp| !owned.contains(tp))
                    .copied()
                    .collect();
                if !new.is_empty() {
                    fresh.push(Step::Assign { member, tps: new });
                }
            }
            for &member in &members {
                let cur = current.get(&member).unwrap_or(&empty);
                let moved: Vec<Tp> = sorted(
                    target
                        .get(&member)
                        .unwrap_or(&empty)
                        .iter()
                        .filter(|tp| owned.contains(tp) && !cur.contains(tp))
                        .copied(),
                );
                if !moved.is_empty() {
                    freed_for.push(Step::Assign { member, tps: moved });
                }
            }
            revokes.extend(fresh);
            if revoked_any.is_empty() {
                debug_assert!(freed_for.is_empty());
                vec![revokes]
            } else {
                vec![revokes, freed_for]
            }
        }
    }
}

fn sorted(tps: impl Iterator<Item = Tp>) -> Vec<Tp> {
    let s: BTreeSet<Tp> = tps.collect();
    s.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: u16, partition: u32) -> Tp {
        Tp::new(topic, partition)
    }

    fn member(id: u32, topics: &[u16], owned: &[(u16, u32)]) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            topics: topics.to_vec(),
            owned: owned.iter().map(|&(t, p)| tp(t, p)).collect(),
        }
    }

    fn parts(spec: &[(u16, u32)]) -> Vec<Tp> {
        spec.iter()
            .flat_map(|&(t, n)| (0..n).map(move |p| tp(t, p)))
            .collect()
    }

    /// Renders an assignment as `c0: 0/0 0/1; c1: …` for compact expectations.
    fn render(a: &Assignment) -> String {
        a.iter()
            .map(|(id, tps)| {
                let list: Vec<String> = tps
                    .iter()
                    .map(|t| format!("{}/{}", t.topic, t.partition))
                    .collect();
                format!("{id}: {}", list.join(" "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn check(
        kind: AssignorKind,
        bugs: Bugs,
        members: &[MemberInfo],
        partitions: &[Tp],
        expect: &str,
    ) {
        let got = assign_with_bugs(kind, members, partitions, bugs);
        assert_eq!(render(&got), expect, "{} {members:?}", kind.name());
        // Same input in another order: same output.
        let mut rev_m = members.to_vec();
        rev_m.reverse();
        let mut rev_p = partitions.to_vec();
        rev_p.reverse();
        assert_eq!(assign_with_bugs(kind, &rev_m, &rev_p, bugs), got);
    }

    /// (assignor, planted bugs, members, partitions, expected rendering)
    type Case = (AssignorKind, Bugs, Vec<MemberInfo>, Vec<Tp>, &'static str);

    #[test]
    fn assignor_table() {
        use AssignorKind::*;
        let n = Bugs::NONE;
        let three = [
            member(0, &[0], &[]),
            member(1, &[0], &[]),
            member(2, &[0], &[]),
        ];
        let cases: Vec<Case> = vec![
            // Range, 3 members × 7 partitions: 3, 2, 2 contiguous.
            (
                Range,
                n,
                three.to_vec(),
                parts(&[(0, 7)]),
                "c0: 0/0 0/1 0/2; c1: 0/3 0/4; c2: 0/5 0/6",
            ),
            // Range per topic: the first member gets the extra of both topics.
            (
                Range,
                n,
                vec![member(0, &[0, 1], &[]), member(1, &[0, 1], &[])],
                parts(&[(0, 3), (1, 3)]),
                "c0: 0/0 0/1 1/0 1/1; c1: 0/2 1/2",
            ),
            // Range only over each topic's subscribers.
            (
                Range,
                n,
                vec![
                    member(0, &[0], &[]),
                    member(1, &[0, 1], &[]),
                    member(2, &[1], &[]),
                ],
                parts(&[(0, 2), (1, 3)]),
                "c0: 0/0; c1: 0/1 1/0 1/1; c2: 1/2",
            ),
            // Round-robin across two topics, dealt in (topic, partition) order.
            (
                RoundRobin,
                n,
                vec![member(0, &[0, 1], &[]), member(1, &[0, 1], &[])],
                parts(&[(0, 3), (1, 3)]),
                "c0: 0/0 0/2 1/1; c1: 0/1 1/0 1/2",
            ),
            // Round-robin skips members not subscribed.
            (
                RoundRobin,
                n,
                vec![
                    member(0, &[0], &[]),
                    member(1, &[0, 1], &[]),
                    member(2, &[1], &[]),
                ],
                parts(&[(0, 3), (1, 3)]),
                "c0: 0/0 0/2; c1: 0/1 1/0 1/2; c2: 1/1",
            ),
            // Unsubscribed topic: unassigned; member with nothing: present, empty.
            (
                RoundRobin,
                n,
                vec![member(0, &[0], &[]), member(5, &[0], &[])],
                parts(&[(0, 1), (3, 2)]),
                "c0: 0/0; c5: ",
            ),
            (
                RoundRobin,
                Bugs::only(Bug::UnbalancedAssignor),
                three.to_vec(),
                parts(&[(0, 4)]),
                "c0: 0/0 0/1 0/2 0/3; c1: ; c2: ",
            ),
            // The bug does not touch the other assignors.
            (
                Range,
                Bugs::only(Bug::UnbalancedAssignor),
                three.to_vec(),
                parts(&[(0, 3)]),
                "c0: 0/0; c1: 0/1; c2: 0/2",
            ),
            // Sticky from scratch: fill to the fewest.
            (
                Sticky,
                n,
                three.to_vec(),
                parts(&[(0, 7)]),
                "c0: 0/0 0/3 0/6; c1: 0/1 0/4; c2: 0/2 0/5",
            ),
            // Sticky: a joiner takes from the most loaded; the rest stays.
            (
                Sticky,
                n,
                vec![
                    member(0, &[0], &[(0, 0), (0, 1), (0, 2)]),
                    member(1, &[0], &[(0, 3), (0, 4), (0, 5)]),
                    member(2, &[0], &[]),
                ],
                parts(&[(0, 6)]),
                "c0: 0/0 0/1; c1: 0/3 0/4; c2: 0/2 0/5",
            ),
            // Sticky: a leaver's partitions go to the fewest; a double claim stays with the lower id;
            // a partition of an unsubscribed topic is dropped.
            (
                CooperativeSticky,
                n,
                vec![
                    member(1, &[0], &[(0, 0), (0, 1), (1, 0)]),
                    member(2, &[0], &[(0, 1), (0, 2)]),
                ],
                parts(&[(0, 5), (1, 1)]),
                "c1: 0/0 0/1 0/4; c2: 0/2 0/3",
            ),
        ];
        for (kind, bugs, members, partitions, expect) in cases {
            check(kind, bugs, &members, &partitions, expect);
        }
    }

    fn a(spec: &[(u32, &[(u16, u32)])]) -> Assignment {
        spec.iter()
            .map(|&(id, tps)| (MemberId(id), tps.iter().map(|&(t, p)| tp(t, p)).collect()))
            .collect()
    }

    fn render_plan(p: &Plan) -> String {
        let steps: Vec<String> = p
            .steps
            .iter()
            .map(|s| {
                let (verb, m, tps) = match s {
                    Step::Revoke { member, tps } => ("-", member, tps),
                    Step::Assign { member, tps } => ("+", member, tps),
                };
                let list: Vec<String> = tps
                    .iter()
                    .map(|t| format!("{}/{}", t.topic, t.partition))
                    .collect();
                format!("{m}{verb}[{}]", list.join(" "))
            })
            .collect();
        format!("{} round(s): {}", p.rounds, steps.join(" "))
    }

    #[test]
    fn plan_table() {
        let current = a(&[(0, &[(0, 0), (0, 1)]), (1, &[(0, 2)])]);
        let target = a(&[(0, &[(0, 0)]), (1, &[(0, 2), (0, 3)]), (2, &[(0, 1)])]);
        let cases: Vec<(Protocol, Assignment, Assignment, &str)> = vec![
            (
                Protocol::Eager,
                current.clone(),
                target.clone(),
                "1 round(s): c0-[0/0 0/1] c1-[0/2] c0+[0/0] c1+[0/2 0/3] c2+[0/1]",
            ),
            (
                Protocol::Cooperative,
                current.clone(),
                target.clone(),
                "2 round(s): c0-[0/1] c1+[0/3] c2+[0/1]",
            ),
            (
                Protocol::Cooperative,
                current.clone(),
                current.clone(),
                "1 round(s): ",
            ),
            (
                Protocol::Cooperative,
                a(&[]),
                current.clone(),
                "1 round(s): c0+[0/0 0/1] c1+[0/2]",
            ),
            (
                Protocol::Cooperative,
                current.clone(),
                a(&[(1, &[(0, 0), (0, 1), (0, 2)])]),
                "2 round(s): c0-[0/0 0/1] c1+[0/0 0/1]",
            ),
        ];
        for (protocol, cur, tgt, expect) in cases {
            assert_eq!(
                render_plan(&plan(protocol, &cur, &tgt)),
                expect,
                "{protocol:?}"
            );
        }
        let rounds = plan_rounds(Protocol::Cooperative, &current, &target);
        assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    }
}
