//! Swarm mode and the observer: the seed picks the faults, the outcome replays them as a schedule,
//! and an observer can stop a run at any entry.

mod common;

use common::*;
use serde_json::json;
use sluice_core::bugs::Bugs;
use sluice_core::history::{Entry, Event, Phase};
use sluice_core::spec::Faults;
use sluice_sim::{run_with, RunConfig, SimOptions};

fn swarm_scenario() -> sluice_core::spec::Scenario {
    let v = base(4, 500.0, 2);
    let v = set(v, "duration_s", json!(20));
    let v = set(v, "consumers.session_timeout_ms", json!(6_000));
    let v = set(v, "consumers.heartbeat_interval_ms", json!(1_000));
    scenario(set(v, "faults", json!("swarm")))
}

#[test]
fn swarm_faults_lie_in_the_safety_phase_and_replay_as_a_schedule() {
    let s = swarm_scenario();
    let mut kinds_seen = std::collections::BTreeSet::new();
    let mut nonempty = 0;
    for seed in 0..seeds(6, 40) {
        let out = run_seed(&s, seed, true);
        assert!(
            out.faults.len() <= 4,
            "seed {seed}: {} faults",
            out.faults.len()
        );
        for f in &out.faults {
            assert!(
                f.at_s >= 0.0 && f.at_s + 0.0 <= s.duration_s as f64,
                "seed {seed}: {f:?} outside the safety phase"
            );
            kinds_seen.insert(f.kind.name());
        }
        if out.faults.is_empty() {
            continue;
        }
        nonempty += 1;
        let started = count(&out, |e| {
            matches!(
                e,
                Event::Fault {
                    edge: sluice_core::history::Edge::Start,
                    ..
                }
            )
        });
        let notes = count(&out, |e| matches!(e, Event::Note { .. }));
        assert_eq!(
            started + notes,
            out.faults.len(),
            "seed {seed}: every fault started or was noted as skipped"
        );
        let mut replay = s.clone();
        replay.faults = Faults::Schedule(out.faults.clone());
        assert_eq!(
            run_seed(&replay, seed, true).hash,
            out.hash,
            "seed {seed}: the schedule replays the swarm run"
        );
    }
    assert!(
        nonempty > 0 && kinds_seen.len() > 1,
        "swarm picked faults: {kinds_seen:?}"
    );
}

#[test]
fn an_observer_sees_every_entry_and_can_stop_the_run() {
    let s = swarm_scenario();
    let full = run_seed(&s, 4, true);
    // (stop after this many entries, expect stopped early)
    for (stop_at, early) in [(1usize, true), (500, true), (usize::MAX, false)] {
        let mut seen: Vec<Entry> = Vec::new();
        let mut obs = |e: &Entry| {
            seen.push(e.clone());
            seen.len() < stop_at
        };
        let out = run_with(
            &s,
            SimOptions {
                seed: 4,
                bugs: Bugs::NONE,
                observer: Some(&mut obs),
            },
            RunConfig::default(),
        )
        .expect("run");
        assert_eq!(out.stopped_early, early);
        if early {
            assert_eq!(seen.len(), stop_at);
            assert_eq!(out.history.len(), stop_at + 1);
            assert_eq!(out.history[..stop_at], full.history[..stop_at]);
            assert_eq!(
                out.history.last().map(|e| &e.ev),
                Some(&Event::Phase { phase: Phase::End })
            );
        } else {
            assert_eq!(out.history, full.history);
            assert_eq!(seen, full.history);
        }
        assert_eq!(out.hash, sluice_core::history::hash_entries(&out.history));
    }
}

#[test]
fn bad_fault_targets_are_refused_with_a_clear_error() {
    // (fault, words the error must contain)
    let table = [
        (
            json!({"at_s": 1.0, "kind": "partition", "from": ["b9"], "to": ["b0"]}),
            "unknown node",
        ),
        (
            json!({"at_s": 1.0, "kind": "latency", "node": "zz", "ms": 5}),
            "unknown node",
        ),
        (
            json!({"at_s": 1.0, "kind": "slow-disk", "broker": 0, "factor": 0.5}),
            "factor",
        ),
    ];
    for (fault, words) in table {
        let s = scenario(set(base(2, 100.0, 1), "faults", json!([fault])));
        let err = run_with(
            &s,
            SimOptions {
                seed: 1,
                bugs: Bugs::NONE,
                observer: None,
            },
            RunConfig::default(),
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains(words), "{err}");
    }
}

/// A consumer whose broker is down backs off before connecting again (librdkafka's
/// `reconnect.backoff.ms`, doubling to `reconnect.backoff.max.ms`) instead of sending a fetch every
/// millisecond until the controller moves the leaderships away. Each broker crashed in turn for
/// 15 s: every member sees refusals, a handful each, never one per millisecond.
#[test]
fn consumers_back_off_from_a_broker_that_is_down() {
    let consumers = 3;
    for broker in 0..3u32 {
        let v = base(6, 300.0, consumers);
        let v = set(
            v,
            "faults",
            json!([{"at_s": 3.0, "for_s": 15.0, "kind": "broker-crash", "broker": broker}]),
        );
        let out = run_seed(&scenario(v), 1, true);
        let n = out.stats.consumer_disconnects;
        // 100 ms doubling to 10 s: ~8 attempts in the 15 s; leaderships move after 9 s.
        let bound = consumers as u64 * 12;
        assert!(n >= 1, "broker {broker}: the crash refused no consumer connection");
        assert!(n <= bound, "broker {broker}: {n} consumer disconnects (bound {bound})");
    }
}
