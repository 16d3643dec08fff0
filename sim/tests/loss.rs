//! Data loss happens exactly in Kafka's cases. A loss is an acknowledged record that is not in the
//! final log of its partition at its acknowledged offset (checked over the run's final state).

mod common;

use common::*;
use serde_json::{json, Value};
use sluice_sim::dist::Stream;

#[derive(Clone, Copy, Debug)]
enum Prelude {
    /// Nothing before the crash.
    None,
    /// Followers' disks are 30x slower from 1 s on: they lag, but stay in the ISR.
    SlowFollowers,
    /// The leader of orders/0 (b0) is cut off from its followers for 3 s before the crash: the ISR
    /// shrinks to the leader alone.
    IsolatedLeader,
    /// The crash takes every broker at once (a correlated outage: every ISR member dies), with
    /// writes only in the page cache (`fsync_on_append = false`, Kafka's default).
    WholeCluster,
    /// The same outage with `fsync_on_append = true`: every acknowledged write is on disk.
    WholeClusterFsync,
}

/// One cluster-only run (no consumers: loss is a property of the cluster) with a crash the seed
/// places: `(acknowledged records, lost records)`.
fn crash_run(
    acks: &str,
    min_isr: u32,
    unclean: bool,
    prelude: Prelude,
    kind: &str,
    seed: u64,
) -> (u64, u64) {
    let mut r = Stream::new(seed, "test-fault");
    let at_s = 5.0 + (r.f64() * 30.0).round() / 10.0;
    let for_s = (r.f64() * 30.0).round() / 10.0;
    let crash = match kind {
        "broker" => {
            json!({"at_s": at_s, "for_s": for_s, "kind": "broker-crash", "broker": r.below(3)})
        }
        _ => {
            json!({"at_s": at_s, "for_s": for_s, "kind": "leader-crash", "topic": "orders", "partition": 0})
        }
    };
    let mut faults: Vec<Value> = match prelude {
        Prelude::None => vec![],
        Prelude::SlowFollowers => vec![
            json!({"at_s": 1.0, "for_s": 11.0, "kind": "slow-disk", "broker": 1, "factor": 30.0}),
            json!({"at_s": 1.0, "for_s": 11.0, "kind": "slow-disk", "broker": 2, "factor": 30.0}),
        ],
        Prelude::IsolatedLeader => {
            vec![
                json!({"at_s": at_s - 3.0, "for_s": 3.0, "kind": "partition", "from": ["b0"], "to": ["b1", "b2"]}),
            ]
        }
        Prelude::WholeCluster | Prelude::WholeClusterFsync => (0..3)
            .map(|b| json!({"at_s": at_s, "for_s": for_s, "kind": "broker-crash", "broker": b}))
            .collect(),
    };
    if !matches!(prelude, Prelude::WholeCluster | Prelude::WholeClusterFsync) {
        faults.push(crash);
    }
    let v = base(4, 2_000.0, 1);
    let v = set(v, "duration_s", json!(12));
    let v = set(v, "liveness_s", json!(3));
    let v = set(v, "producers.0.acks", json!(acks));
    let v = set(v, "producers.0.idempotent", json!(acks == "all"));
    let v = set(v, "cluster.min_insync_replicas", json!(min_isr));
    let v = set(v, "cluster.unclean_leader_election", json!(unclean));
    let v = set(v, "cluster.replica_lag_time_max_ms", json!(1_000));
    let v = set(v, "faults", Value::Array(faults));
    let v = set(
        v,
        "cluster.fsync_on_append",
        json!(matches!(prelude, Prelude::WholeClusterFsync)),
    );
    let s = scenario(v.clone());
    let out = run_seed(&s, seed, false);
    let (acked, lost) = lost_acked(&out);
    if lost > 0 && std::env::var("SLUICE_SHOW_LOSS").is_ok() {
        eprintln!(
            "seed {seed} lost {lost}: {}",
            serde_json::to_string(&v).unwrap_or_default()
        );
    }
    (acked, lost)
}

#[test]
fn acks_all_min_isr_2_rf_3_never_loses_with_one_broker_crash() {
    let n = seeds(200, 2_000);
    let mut acked_total = 0;
    for seed in 0..n {
        for kind in ["broker", "leader"] {
            let (acked, lost) = crash_run("all", 2, false, Prelude::None, kind, seed);
            assert_eq!(
                lost, 0,
                "seed {seed} ({kind} crash): {lost} of {acked} acknowledged records lost"
            );
            assert!(
                acked > 10_000,
                "seed {seed}: the producer made progress ({acked} acked)"
            );
            acked_total += acked;
        }
    }
    eprintln!("{n} seeds x 2 fault kinds: {acked_total} acknowledged records, none lost");
}

#[test]
fn acks_1_with_unclean_election_loses_acknowledged_records_in_some_seeds() {
    let n = seeds(20, 400);
    let mut losing = 0;
    for seed in 0..n {
        let (acked, lost) = crash_run("1", 1, true, Prelude::IsolatedLeader, "leader", seed);
        assert!(acked > 0);
        if lost > 0 {
            losing += 1;
        }
    }
    eprintln!("acks=1 + unclean + leader crash: {losing} of {n} seeds lost acknowledged records");
    assert!(losing > 0, "no seed of {n} lost a record");
}

/// The loss cases side by side: (acks, min.insync, unclean, prelude, loss expected in some seed).
#[test]
fn loss_only_in_kafkas_cases() {
    let n = seeds(12, 200);
    let table = [
        // acks=all + min.insync=2: a lagging follower or a shrunk ISR never costs an acked record.
        ("all", 2, false, Prelude::SlowFollowers, false),
        ("all", 2, true, Prelude::SlowFollowers, false),
        ("all", 2, true, Prelude::IsolatedLeader, false),
        // acks=1 / acks=0 across a failover while followers lag.
        ("1", 1, false, Prelude::SlowFollowers, true),
        ("0", 1, false, Prelude::SlowFollowers, true),
        // The ISR shrank to the leader, which then fails: unclean election, or its own unflushed
        // tail when it comes back.
        ("1", 1, true, Prelude::IsolatedLeader, true),
        ("all", 1, false, Prelude::IsolatedLeader, true),
        // Every ISR member dies at once: acks=all + min.insync=2 acknowledged writes that were only
        // in the page cache of every replica are gone; with an fsync on every append, none are.
        ("all", 2, false, Prelude::WholeCluster, true),
        ("all", 2, false, Prelude::WholeClusterFsync, false),
    ];
    for (acks, min_isr, unclean, prelude, expect_loss) in table {
        let losing = (0..n)
            .filter(|&seed| crash_run(acks, min_isr, unclean, prelude, "leader", seed).1 > 0)
            .count();
        assert_eq!(
            losing > 0,
            expect_loss,
            "acks={acks} min_isr={min_isr} unclean={unclean} {prelude:?}: {losing} of {n} seeds lost records"
        );
    }
}
