//! Coordinator failover while a rebalance is open: members waiting for a JoinGroup answer from the
//! crashed coordinator must find its successor at once (the connection reset fails the join), and
//! the group must form again and drain its lag before the run ends.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::json;
use sluice_core::history::{Event, MemberEvent};

/// Six partitions, three consumers, 1 000 records/s; session timeout 10 s, max.poll.interval 300 s
/// (the JoinGroup wait), run 40 s + 30 s liveness.
fn failover(faults: serde_json::Value) -> sluice_core::spec::Scenario {
    let v = base(6, 1_000.0, 3);
    let v = set(v, "duration_s", json!(40));
    let v = set(v, "liveness_s", json!(30));
    let v = set(v, "consumers.protocol", json!("cooperative"));
    let v = set(v, "consumers.assignor", json!("cooperative-sticky"));
    let v = set(v, "consumers.session_timeout_ms", json!(10_000));
    let v = set(v, "consumers.heartbeat_interval_ms", json!(1_000));
    let v = set(v, "consumers.max_poll_interval_ms", json!(300_000));
    scenario(set(v, "faults", faults))
}

/// Owner of each partition at the end of the run, from the Assign / Revoke entries (a crash ends
/// every ownership of the crashed consumer).
fn final_owners(out: &sluice_sim::SimOutcome) -> BTreeMap<String, BTreeSet<u32>> {
    let mut owners: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for e in &out.history {
        match &e.ev {
            Event::Assign { consumer, tps, .. } => {
                for tp in tps {
                    owners.entry(tp.to_string()).or_default().insert(*consumer);
                }
            }
            Event::Revoke { consumer, tps, .. } => {
                for tp in tps {
                    owners.entry(tp.to_string()).or_default().remove(consumer);
                }
            }
            Event::Member {
                consumer,
                event: MemberEvent::Crash,
            } => {
                for o in owners.values_mut() {
                    o.remove(consumer);
                }
            }
            _ => {}
        }
    }
    owners
}

/// Total lag (hw − committed, summed over partitions) of the last samples.
fn final_lag(out: &sluice_sim::SimOutcome) -> u64 {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for e in &out.history {
        if let Event::Lag { tp, hw, committed } = &e.ev {
            last.insert(tp.to_string(), hw.saturating_sub(*committed));
        }
    }
    last.values().sum()
}

/// Partitions with an acknowledged commit at or after `t_us`.
fn committed_since(out: &sluice_sim::SimOutcome, t_us: u64) -> BTreeSet<String> {
    out.history
        .iter()
        .filter(|e| e.t_us >= t_us)
        .filter_map(|e| match &e.ev {
            Event::CommitAck { tp, .. } => Some(tp.to_string()),
            _ => None,
        })
        .collect()
}

fn first_assign_after(out: &sluice_sim::SimOutcome, t_us: u64) -> Option<u64> {
    out.history
        .iter()
        .find(|e| e.t_us >= t_us && matches!(e.ev, Event::Assign { .. }))
        .map(|e| e.t_us)
}

/// (name, faults, the failover's start in s, when the successor takes over in s). In each case a
/// consumer restart opens a join phase that the crashed consumer's old slot holds open until its
/// session expires; the coordinator fails inside that window, with every live member's JoinGroup
/// in flight to it. The successor takes over when the controller fences the crashed broker: its
/// broker session (9 s) runs out, or it restarts and registers anew, whichever comes first.
fn check(name: &str, faults: serde_json::Value, failover_at_s: u64, takeover_at_s: u64) {
    let s = failover(faults);
    for seed in 0..seeds(2, 8) {
        let out = run_seed(&s, seed, true);
        let owners = final_owners(&out);
        let unowned: Vec<&String> = owners
            .iter()
            .filter(|(_, o)| o.len() != 1)
            .map(|(tp, _)| tp)
            .collect();
        assert_eq!(
            owners.len(),
            6,
            "{name} seed {seed}: every partition was assigned once"
        );
        assert!(
            unowned.is_empty(),
            "{name} seed {seed}: partitions without exactly one owner at the end: {unowned:?}"
        );
        // The restored coordinator resumes the stored generation, the crashed consumer's old slot
        // included, with sessions renewed (10 s) from the takeover; the rejoins form the next
        // generation once that slot expires, not after the 300 s JoinGroup wait.
        let reassigned = first_assign_after(&out, failover_at_s * 1_000_000)
            .expect("an assignment after the failover");
        assert!(
            reassigned <= (takeover_at_s + 10 + 5) * 1_000_000,
            "{name} seed {seed}: first assignment after the failover at {reassigned} µs"
        );
        // …and not before: nobody answers for the group until the controller has fenced the
        // crashed coordinator, and the old slot's renewed session then runs its full 10 s.
        assert!(
            // (less the controller's 250 ms tick: it may see the crash at the tick before)
            reassigned >= (takeover_at_s + 10) * 1_000_000 - 500_000,
            "{name} seed {seed}: an assignment at {reassigned} µs, before the takeover at {takeover_at_s} s plus the 10 s session"
        );
        // Consumption resumed everywhere: every partition commits in the last 10 s, and the lag
        // (hw − committed) is what the periodic commit leaves: at most one commit interval of
        // arrivals (5 s × 1 000 records/s) plus slack, against ~50 000 if the group stayed down.
        let end_us = (s.duration_s + s.liveness_s) * 1_000_000;
        let recent = committed_since(&out, end_us - 10_000_000);
        assert_eq!(
            recent.len(),
            6,
            "{name} seed {seed}: partitions committing in the last 10 s: {recent:?}"
        );
        let lag = final_lag(&out);
        let commit_s = s.consumers.commit_interval_ms / 1_000;
        assert!(
            lag < 1_000 * (commit_s + 2),
            "{name} seed {seed}: lag {lag} records at the end of the run"
        );
    }
}

#[test]
fn the_group_reforms_after_a_coordinator_failover_during_a_rebalance() {
    check(
        "consumer crash then failover",
        json!([
            {"at_s": 5.0, "for_s": 3.0, "kind": "consumer-crash", "consumer": 0},
            {"at_s": 10.0, "for_s": 8.0, "kind": "coordinator-failover"},
        ]),
        10,
        18,
    );
    check(
        "failover, coordinator back quickly",
        json!([
            {"at_s": 5.0, "for_s": 2.0, "kind": "consumer-crash", "consumer": 1},
            {"at_s": 9.0, "for_s": 1.0, "kind": "coordinator-failover"},
        ]),
        9,
        10,
    );
    check(
        "failover, coordinator down past its broker session",
        json!([
            {"at_s": 5.0, "for_s": 3.0, "kind": "consumer-crash", "consumer": 2},
            {"at_s": 10.0, "for_s": 20.0, "kind": "coordinator-failover"},
        ]),
        10,
        19,
    );
}

/// A coordinator failover in a settled group, with no other fault: the successor loads the group
/// metadata with the offsets (as Kafka's `GroupMetadataManager` does), so the members only
/// rediscover it. No rebalance, no revoke, no fenced member, and every partition keeps committing.
#[test]
fn a_failover_in_a_stable_group_moves_nothing() {
    let s = failover(json!([{"at_s": 15.0, "for_s": 10.0, "kind": "coordinator-failover"}]));
    for seed in 0..seeds(2, 8) {
        let out = run_seed(&s, seed, true);
        let after = |e: &&sluice_core::history::Entry| e.t_us >= 15_000_000;
        let moved: Vec<String> = out
            .history
            .iter()
            .filter(after)
            .filter_map(|e| match &e.ev {
                Event::Rebalance { .. } | Event::Assign { .. } | Event::Revoke { .. } => Some(format!("{} {:?}", e.t_us, e.ev)),
                Event::Member { event: MemberEvent::Fenced | MemberEvent::Evicted, .. } => Some(format!("{} {:?}", e.t_us, e.ev)),
                _ => None,
            })
            .collect();
        assert!(moved.is_empty(), "seed {seed}: the group changed after the failover: {moved:?}");
        let faults = out.history.iter().filter(|e| matches!(e.ev, Event::Fault { .. })).count();
        assert_eq!(faults, 2, "seed {seed}: the failover happened (start and end)");
        let recent = committed_since(&out, 20_000_000);
        assert_eq!(recent.len(), 6, "seed {seed}: partitions committing after the failover: {recent:?}");
    }
}
