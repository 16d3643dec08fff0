//! Property tests for the assignors and rebalance plans (rules G1, G3).
//!
//! Every property body is a plain function so that the same body also runs, through proptest's
//! `TestRunner`, against a deliberately broken variant; those `*_catches_*` tests assert that a
//! failure IS found (a property that cannot fail is a defect). Seeds are fixed: runs are
//! reproducible.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
mod common;

use proptest::test_runner::{Config, TestCaseError};

use sluice_core::assign::{assign, assign_with_bugs, plan, Assignment, MemberInfo, Plan, Step};
use sluice_core::bugs::{Bug, Bugs};
use sluice_core::spec::{AssignorKind, Protocol};
use sluice_core::{MemberId, Tp};

const KINDS: [AssignorKind; 4] = [
    AssignorKind::Range,
    AssignorKind::RoundRobin,
    AssignorKind::Sticky,
    AssignorKind::CooperativeSticky,
];

/// Member id slots the generators draw from.
const MEMBER_SLOTS: usize = 7;

const SEED: u64 = 0x5EED_0001;

fn config(cases: u32) -> Config {
    common::config(cases, SEED)
}

/// [`common::assert_caught`] on this file's seed.
fn assert_caught<S: Strategy>(strategy: S, rule: &str, body: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    common::assert_caught(SEED, strategy, rule, body)
}

fn partitions_of(topics: &[u32]) -> Vec<Tp> {
    topics
        .iter()
        .enumerate()
        .flat_map(|(t, &n)| (0..n).map(move |p| Tp::new(t as u16, p)))
        .collect()
}

fn ids_of(mask: &[bool]) -> Vec<MemberId> {
    mask.iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| MemberId(i as u32))
        .collect()
}

/// Owner per partition → assignment over `members` (every member present). Slot `k` picks
/// `members[k]`; slots past the end leave the partition unowned.
fn assignment_from_slots(members: &[MemberId], parts: &[Tp], slots: &[usize]) -> Assignment {
    let mut a: Assignment = members.iter().map(|&m| (m, Vec::new())).collect();
    for (tp, &s) in parts.iter().zip(slots) {
        if let Some(m) = members.get(s) {
            a.get_mut(m).unwrap().push(*tp);
        }
    }
    a
}

// ---------------------------------------------------------------------------------------------
// G1: executing a plan never gives a partition two owners.

#[derive(Clone, Debug)]
struct PlanCase {
    protocol: Protocol,
    current: Assignment,
    target: Assignment,
}

/// Random current ownership over one member set and a target over another (members join and
/// leave), the target either computed by an assignor from the current ownership or arbitrary.
fn plan_case() -> impl Strategy<Value = PlanCase> {
    (
        prop::collection::vec(1..=6u32, 1..=3),
        prop::collection::vec(any::<bool>(), MEMBER_SLOTS),
        prop::collection::vec(any::<bool>(), MEMBER_SLOTS),
        0..KINDS.len(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(topics, before, after, kind, arbitrary_target, eager)| {
            let n = partitions_of(&topics).len();
            (
                Just((topics, before, after, kind, arbitrary_target, eager)),
                prop::collection::vec(0..MEMBER_SLOTS + 1, n),
                prop::collection::vec(0..MEMBER_SLOTS + 1, n),
            )
        })
        .prop_map(
            |((topics, before, after, kind, arbitrary_target, eager), cur_slots, tgt_slots)| {
                let parts = partitions_of(&topics);
                let (before, after) = (ids_of(&before), ids_of(&after));
                let current = assignment_from_slots(&before, &parts, &cur_slots);
                let target = if arbitrary_target {
                    assignment_from_slots(&after, &parts, &tgt_slots)
                } else {
                    let members: Vec<MemberInfo> = after
                        .iter()
                        .map(|&id| MemberInfo {
                            id,
                            topics: (0..topics.len() as u16).collect(),
                            owned: current.get(&id).cloned().unwrap_or_default(),
                        })
                        .collect();
                    assign(KINDS[kind], &members, &parts)
                };
                let protocol = if eager {
                    Protocol::Eager
                } else {
                    Protocol::Cooperative
                };
                PlanCase {
                    protocol,
                    current,
                    target,
                }
            },
        )
}

type Planner = fn(Protocol, &Assignment, &Assignment) -> Plan;

fn owners_of(a: &Assignment) -> BTreeMap<Tp, BTreeSet<MemberId>> {
    let mut o: BTreeMap<Tp, BTreeSet<MemberId>> = BTreeMap::new();
    for (&m, tps) in a {
        for &tp in tps {
            o.entry(tp).or_default().insert(m);
        }
    }
    o
}

fn g1_body(planner: Planner, case: &PlanCase) -> Result<(), TestCaseError> {
    let p = planner(case.protocol, &case.current, &case.target);
    let mut owners = owners_of(&case.current);
    for step in &p.steps {
        match step {
            Step::Revoke { member, tps } => {
                for tp in tps {
                    let owned = owners.get_mut(tp).is_some_and(|s| s.remove(member));
                    prop_assert!(owned, "{member} revokes {tp} it does not own ({step:?})");
                }
            }
            Step::Assign { member, tps } => {
                for tp in tps {
                    let s = owners.entry(*tp).or_default();
                    s.insert(*member);
                    prop_assert!(s.len() <= 1, "G1: {tp} owned by {s:?} after {step:?}");
                }
            }
        }
    }
    owners.retain(|_, s| !s.is_empty());
    prop_assert_eq!(
        &owners,
        &owners_of(&case.target),
        "plan does not end at the target"
    );
    let revoked: Vec<&Step> = p
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Revoke { .. }))
        .collect();
    match case.protocol {
        Protocol::Eager => {
            prop_assert_eq!(p.rounds, 1);
            // G2: every member revokes everything it owns.
            prop_assert_eq!(revoked.len(), case.current.len());
        }
        Protocol::Cooperative => {
            prop_assert_eq!(p.rounds, if revoked.is_empty() { 1 } else { 2 });
            // G2: only partitions that leave their member are revoked.
            for s in revoked {
                if let Step::Revoke { member, tps } = s {
                    let keep = case.target.get(member).cloned().unwrap_or_default();
                    prop_assert!(
                        tps.iter().all(|tp| !keep.contains(tp)),
                        "{member} revokes a partition it keeps"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Broken planner: cooperative without the revoke round — new owners are assigned before the old
/// owners revoke.
fn plan_without_revoke_round(
    _protocol: Protocol,
    current: &Assignment,
    target: &Assignment,
) -> Plan {
    let mut steps = Vec::new();
    for (&member, tgt) in target {
        let cur = current.get(&member).cloned().unwrap_or_default();
        let tps: Vec<Tp> = tgt.iter().filter(|tp| !cur.contains(tp)).copied().collect();
        if !tps.is_empty() {
            steps.push(Step::Assign { member, tps });
        }
    }
    for (&member, cur) in current {
        let tgt = target.get(&member).cloned().unwrap_or_default();
        let tps: Vec<Tp> = cur.iter().filter(|tp| !tgt.contains(tp)).copied().collect();
        if !tps.is_empty() {
            steps.push(Step::Revoke { member, tps });
        }
    }
    Plan { steps, rounds: 1 }
}

// ---------------------------------------------------------------------------------------------
// G3: balance and stickiness with equal subscriptions.

#[derive(Clone, Debug)]
struct EqualCase {
    members: Vec<MemberInfo>,
    partitions: Vec<Tp>,
}

/// Members (1..=MEMBER_SLOTS) all subscribed to the same topics, with random — possibly stale,
/// overlapping or invalid — previous ownership; plus a topic nobody subscribes to.
fn equal_case() -> impl Strategy<Value = EqualCase> {
    let owned = prop::collection::vec((0..4u16, 0..10u32), 0..8);
    (
        prop::collection::vec(1..=8u32, 1..=3),
        prop::collection::vec(any::<bool>(), MEMBER_SLOTS),
        prop::collection::vec(owned, MEMBER_SLOTS),
        0..3u32,
    )
        .prop_map(|(topics, mask, owned, orphan)| {
            let mut ids = ids_of(&mask);
            if ids.is_empty() {
                ids.push(MemberId(3));
            }
            let subs: Vec<u16> = (0..topics.len() as u16).collect();
            let members = ids
                .iter()
                .map(|&id| MemberInfo {
                    id,
                    topics: subs.clone(),
                    owned: owned[id.0 as usize]
                        .iter()
                        .map(|&(t, p)| Tp::new(t, p))
                        .collect(),
                })
                .collect();
            let mut partitions = partitions_of(&topics);
            partitions.extend((0..orphan).map(|p| Tp::new(9, p)));
            EqualCase {
                members,
                partitions,
            }
        })
}

type Assigner = fn(AssignorKind, &[MemberInfo], &[Tp]) -> Assignment;

fn assign_unbalanced(kind: AssignorKind, members: &[MemberInfo], partitions: &[Tp]) -> Assignment {
    assign_with_bugs(
        kind,
        members,
        partitions,
        Bugs::only(Bug::UnbalancedAssignor),
    )
}

fn g3_balance_body(assigner: Assigner, case: &EqualCase) -> Result<(), TestCaseError> {
    for kind in [
        AssignorKind::RoundRobin,
        AssignorKind::Sticky,
        AssignorKind::CooperativeSticky,
    ] {
        let a = assigner(kind, &case.members, &case.partitions);
        let counts: Vec<usize> = a.values().map(Vec::len).collect();
        let (lo, hi) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        prop_assert!(
            hi - lo <= 1,
            "G3: {} counts {counts:?} differ by more than 1",
            kind.name()
        );
    }
    Ok(())
}

/// What each member may keep of its `owned` (reference, written independently of the assignor):
/// existing, subscribed partitions, a double claim going to the lower id.
fn valid_owned(case: &EqualCase) -> BTreeMap<MemberId, BTreeSet<Tp>> {
    let exists: BTreeSet<Tp> = case.partitions.iter().copied().collect();
    let mut sorted = case.members.clone();
    sorted.sort_by_key(|m| m.id);
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in &sorted {
        let mine: BTreeSet<Tp> = m
            .owned
            .iter()
            .filter(|tp| {
                exists.contains(tp) && m.topics.contains(&tp.topic) && !taken.contains(*tp)
            })
            .copied()
            .collect();
        taken.extend(mine.iter().copied());
        out.insert(m.id, mine);
    }
    out
}

fn g3_sticky_body(assigner: Assigner, case: &EqualCase) -> Result<(), TestCaseError> {
    let valid = valid_owned(case);
    let subscribed = &case.members[0].topics;
    let n = case
        .partitions
        .iter()
        .filter(|tp| subscribed.contains(&tp.topic))
        .count();
    let m = case.members.len();
    let (q, r) = (n / m, n % m);
    // Any assignment with counts in {q, q+1} keeps at most q+1 per member and at most r members at
    // q+1: the fewest moves of kept partitions any balanced assignment needs.
    let over: usize = valid.values().map(|v| v.len().saturating_sub(q + 1)).sum();
    let at_ceiling = valid.values().filter(|v| v.len() > q).count();
    let moves_min = over + at_ceiling.saturating_sub(r);
    for kind in [AssignorKind::Sticky, AssignorKind::CooperativeSticky] {
        let a = assigner(kind, &case.members, &case.partitions);
        let mut moved = 0;
        for (id, kept) in &valid {
            let now: BTreeSet<Tp> = a[id].iter().copied().collect();
            let lost = kept.difference(&now).count();
            if kept.len() <= q {
                prop_assert_eq!(
                    lost,
                    0,
                    "G3: {} took partitions from {} at or below the floor",
                    kind.name(),
                    id
                );
            }
            moved += lost;
        }
        prop_assert!(
            moved <= moves_min,
            "G3: {} moved {moved} owned partitions, {moves_min} needed",
            kind.name()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Totality and determinism, any subscriptions.

#[derive(Clone, Debug)]
struct AnyCase {
    members: Vec<MemberInfo>,
    partitions: Vec<Tp>,
    rotate: usize,
}

fn any_case() -> impl Strategy<Value = AnyCase> {
    let member = (
        prop::collection::btree_set(0..4u16, 0..=3),
        prop::collection::vec((0..4u16, 0..8u32), 0..6),
    );
    (
        prop::collection::vec(0..=7u32, 1..=4),
        prop::collection::btree_map(0..20u32, member, 0..=6),
        0..16usize,
    )
        .prop_map(|(topics, members, rotate)| AnyCase {
            members: members
                .into_iter()
                .map(|(id, (subs, owned))| MemberInfo {
                    id: MemberId(id),
                    topics: subs.into_iter().collect(),
                    owned: owned.into_iter().map(|(t, p)| Tp::new(t, p)).collect(),
                })
                .collect(),
            partitions: partitions_of(&topics),
            rotate,
        })
}

fn total_body(case: &AnyCase) -> Result<(), TestCaseError> {
    for kind in KINDS {
        let a = assign(kind, &case.members, &case.partitions);
        let ids: BTreeSet<MemberId> = case.members.iter().map(|m| m.id).collect();
        prop_assert_eq!(
            a.keys().copied().collect::<BTreeSet<_>>(),
            ids,
            "every member is in the result"
        );
        let mut owner: BTreeMap<Tp, MemberId> = BTreeMap::new();
        for (id, tps) in &a {
            prop_assert!(
                tps.windows(2).all(|w| w[0] < w[1]),
                "{} list not sorted",
                kind.name()
            );
            let subs = &case.members.iter().find(|m| m.id == *id).unwrap().topics;
            for tp in tps {
                prop_assert!(
                    subs.contains(&tp.topic),
                    "{} gave {tp} to unsubscribed {id}",
                    kind.name()
                );
                prop_assert!(
                    owner.insert(*tp, *id).is_none(),
                    "{} gave {tp} twice",
                    kind.name()
                );
            }
        }
        for tp in &case.partitions {
            let wanted = case.members.iter().any(|m| m.topics.contains(&tp.topic));
            prop_assert_eq!(
                owner.contains_key(tp),
                wanted,
                "{} {}: assigned iff subscribed",
                kind.name(),
                tp
            );
        }
        let known: BTreeSet<Tp> = case.partitions.iter().copied().collect();
        prop_assert!(
            owner.keys().all(|tp| known.contains(tp)),
            "{} assigned an unknown partition",
            kind.name()
        );
        // Deterministic, and independent of input order.
        prop_assert_eq!(&assign(kind, &case.members, &case.partitions), &a);
        let mut members = case.members.clone();
        members.reverse();
        let k = case.rotate % members.len().max(1);
        members.rotate_left(k);
        let mut partitions = case.partitions.clone();
        partitions.reverse();
        let k = case.rotate % partitions.len().max(1);
        partitions.rotate_left(k);
        prop_assert_eq!(
            &assign(kind, &members, &partitions),
            &a,
            "{} depends on input order",
            kind.name()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn g1_plan_never_two_owners(case in plan_case()) {
        g1_body(plan, &case)?;
    }

    #[test]
    fn g3_balance_within_one(case in equal_case()) {
        g3_balance_body(assign, &case)?;
    }

    #[test]
    fn g3_sticky_keeps_ownership(case in equal_case()) {
        g3_sticky_body(assign, &case)?;
    }

    #[test]
    fn assign_is_total_and_deterministic(case in any_case()) {
        total_body(&case)?;
    }
}

#[test]
fn g1_catches_cooperative_without_revoke_round() {
    assert_caught(plan_case(), "G1", |case| {
        g1_body(plan_without_revoke_round, &case)
    });
}

#[test]
fn g3_catches_unbalanced_assignor() {
    assert_caught(equal_case(), "G3", |case| {
        g3_balance_body(assign_unbalanced, &case)
    });
}

/// Round-robin ignores previous ownership: run as if it were the sticky assignor, the stickiness
/// property must reject it.
fn assign_forgetting_ownership(
    _kind: AssignorKind,
    members: &[MemberInfo],
    partitions: &[Tp],
) -> Assignment {
    assign(AssignorKind::RoundRobin, members, partitions)
}

#[test]
fn g3_sticky_catches_an_assignor_that_forgets_ownership() {
    assert_caught(equal_case(), "G3", |case| {
        g3_sticky_body(assign_forgetting_ownership, &case)
    });
}
