//! The consumer group in the simulator: slow consumers under each backpressure strategy, stalls past
//! `max.poll.interval.ms`, and rebalance storms.

mod common;

use common::*;
use serde_json::json;
use sluice_core::history::{Edge, Event};

/// Total lag (sum over partitions of hw − committed) of the last sample at or before `t_s`.
fn total_lag_at(out: &sluice_sim::SimOutcome, t_s: u64) -> u64 {
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for e in &out.history {
        if e.t_us > t_s * 1_000_000 {
            break;
        }
        if let Event::Lag { tp, hw, committed } = &e.ev {
            last.insert(tp.to_string(), hw.saturating_sub(*committed));
        }
    }
    last.values().sum()
}

fn buffer_peak(out: &sluice_sim::SimOutcome) -> u64 {
    out.history
        .iter()
        .filter_map(|e| match &e.ev {
            Event::Buffer { records, .. } => Some(*records),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// One consumer, arrival 1 000/s, service 800/s (1.25 ms per record, one worker).
fn slow(strategy: &str) -> sluice_core::spec::Scenario {
    let v = base(4, 1_000.0, 1);
    let v = set(v, "duration_s", json!(60));
    let v = set(v, "liveness_s", json!(1));
    let v = set(v, "consumers.strategy", json!(strategy));
    let v = set(
        v,
        "consumers.processing",
        json!({"kind": "constant", "ms": 1.25}),
    );
    let v = set(v, "consumers.buffer_records_max", json!(400));
    let v = set(v, "consumers.max_poll_records", json!(50));
    scenario(v)
}

#[test]
fn slow_consumer_lag_grows_at_arrival_minus_service_and_buffers_stay_bounded() {
    // (strategy, buffer must stay within buffer_records_max)
    let table = [("credit", true), ("pause", true), ("none", false)];
    for (strategy, bounded) in table {
        let out = run_seed(&slow(strategy), 5, true);
        let (l10, l60) = (total_lag_at(&out, 10), total_lag_at(&out, 60));
        let rate = (l60 as f64 - l10 as f64) / 50.0;
        eprintln!(
            "{strategy}: lag {l10} at 10 s, {l60} at 60 s: {rate:.0}/s; buffer peak {}",
            buffer_peak(&out)
        );
        assert!(
            (140.0..=260.0).contains(&rate),
            "{strategy}: lag grows at {rate:.0}/s, expected about 200/s"
        );
        assert_eq!(
            buffer_peak(&out) <= 400,
            bounded,
            "{strategy}: buffer peak {} vs bound 400",
            buffer_peak(&out)
        );
    }
}

fn rebalances(out: &sluice_sim::SimOutcome) -> usize {
    count(out, |e| {
        matches!(
            e,
            Event::Rebalance {
                edge: Edge::Start,
                ..
            }
        )
    })
}

#[test]
fn a_stall_past_max_poll_interval_triggers_a_rebalance() {
    let v = base(4, 500.0, 2);
    let v = set(v, "duration_s", json!(40));
    let v = set(v, "liveness_s", json!(20));
    let v = set(v, "consumers.max_poll_interval_ms", json!(5_000));
    let with = set(
        v.clone(),
        "faults",
        json!([{"at_s": 10.0, "for_s": 15.0, "kind": "consumer-stall", "consumer": 0}]),
    );
    let quiet = run_seed(&scenario(v), 3, true);
    let stalled = run_seed(&scenario(with), 3, true);
    let during = stalled
        .history
        .iter()
        .filter(|e| e.t_us > 10_000_000 && e.t_us < 30_000_000)
        .filter(|e| {
            matches!(
                e.ev,
                Event::Rebalance {
                    edge: Edge::Start,
                    ..
                }
            )
        })
        .count();
    eprintln!(
        "rebalances: quiet {}, stalled {} ({during} during the stall)",
        rebalances(&quiet),
        rebalances(&stalled)
    );
    assert_eq!(
        rebalances(&quiet),
        1,
        "without the stall only the initial rebalance happens"
    );
    assert!(
        during >= 1,
        "the stall past max.poll.interval.ms caused a rebalance"
    );
}

/// Slow handlers: a poll's worth of records takes longer than max.poll.interval.ms now and then.
fn storm(protocol: &str, assignor: &str, static_membership: bool) -> sluice_core::spec::Scenario {
    let v = base(8, 400.0, 4);
    let v = set(v, "duration_s", json!(120));
    let v = set(v, "liveness_s", json!(10));
    let v = set(v, "consumers.protocol", json!(protocol));
    let v = set(v, "consumers.assignor", json!(assignor));
    let v = set(v, "consumers.static_membership", json!(static_membership));
    let v = set(v, "consumers.max_poll_interval_ms", json!(4_000));
    let v = set(v, "consumers.session_timeout_ms", json!(10_000));
    let v = set(v, "consumers.heartbeat_interval_ms", json!(1_000));
    let v = set(v, "consumers.max_poll_records", json!(200));
    let v = set(
        v,
        "consumers.processing",
        json!({"kind": "log-normal", "mean_ms": 18.0, "cv": 2.0}),
    );
    scenario(v)
}

/// Partitions given up over the run: what a rebalance costs the group (processing of a revoked
/// partition stops until its next owner has it).
fn revoked_partitions(out: &sluice_sim::SimOutcome) -> usize {
    out.history
        .iter()
        .map(|e| match &e.ev {
            Event::Revoke { tps, .. } => tps.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn eager_slow_handlers_storm_and_cooperative_or_static_damp_it() {
    let seeds_n = seeds(2, 10);
    let mut counts = Vec::new();
    let mut revokes = Vec::new();
    for (name, protocol, assignor, stat) in [
        ("eager", "eager", "range", false),
        ("cooperative", "cooperative", "cooperative-sticky", false),
        ("eager+static", "eager", "range", true),
    ] {
        let outs: Vec<_> = (0..seeds_n).map(|seed| run_seed(&storm(protocol, assignor, stat), seed, true)).collect();
        let total: usize = outs.iter().map(rebalances).sum();
        let revoked: usize = outs.iter().map(revoked_partitions).sum();
        eprintln!("{name}: {total} rebalances, {revoked} partitions revoked over {seeds_n} seeds");
        counts.push(total);
        revokes.push(revoked);
    }
    assert!(
        counts[0] > 2 * seeds_n as usize,
        "eager + slow handlers rebalance repeatedly: {counts:?}"
    );
    // Cooperative rebalances come in two rounds, so they are counted more often; what they save is
    // the stop-the-world: only the partitions that move are revoked.
    assert!(
        revokes[1] < revokes[0],
        "cooperative revokes fewer partitions than eager: {revokes:?}"
    );
    assert!(
        counts[2] < counts[0] && revokes[2] < revokes[0],
        "static membership damps the storm: {counts:?} {revokes:?}"
    );
}

/// Start and end (µs) of every join phase, in order (the coordinator's `Rebalance` edges).
fn join_phases(out: &sluice_sim::SimOutcome) -> Vec<(u64, u64)> {
    let mut open = None;
    let mut phases = Vec::new();
    for e in &out.history {
        match e.ev {
            Event::Rebalance { edge: Edge::Start, .. } => open = Some(e.t_us),
            Event::Rebalance { edge: Edge::End, .. } => {
                if let Some(s) = open.take() {
                    phases.push((s, e.t_us));
                }
            }
            _ => {}
        }
    }
    phases
}

/// (profile, initial_rebalance_delay_ms, first phase duration ms, second phase duration ms)
type HoldCase = (&'static str, Option<u64>, std::ops::Range<u64>, std::ops::Range<u64>);

#[test]
fn the_broker_profile_decides_which_join_phases_are_held() {
    // Two members, 6 s session; c1 crashes for good at 10 s and is evicted at ~16 s, so the group
    // has two join phases: the first (from empty) and the one after the eviction.
    let cases: [HoldCase; 4] = [
        ("kafka", None, 3_000..3_400, 0..1_500),
        ("tansu", None, 3_000..3_400, 3_000..4_500),
        ("kafka", Some(1_000), 1_000..1_400, 0..1_500),
        ("tansu", Some(1_000), 1_000..1_400, 2_000..2_500),
    ];
    for (profile, delay, first, second) in cases {
        let v = base(4, 200.0, 2);
        let v = set(v, "duration_s", json!(30));
        let v = set(v, "liveness_s", json!(5));
        let v = set(v, "consumers.session_timeout_ms", json!(6_000));
        let v = set(v, "consumers.heartbeat_interval_ms", json!(1_000));
        let v = set(v, "cluster.broker_profile", json!(profile));
        let v = match delay {
            Some(d) => set(v, "cluster.initial_rebalance_delay_ms", json!(d)),
            None => v,
        };
        let v = set(v, "faults", json!([{"at_s": 10.0, "for_s": 0.0, "kind": "consumer-crash", "consumer": 1}]));
        let out = run_seed(&scenario(v), 2, true);
        let phases = join_phases(&out);
        let ms: Vec<u64> = phases.iter().map(|(s, e)| (e - s) / 1_000).collect();
        eprintln!("{profile} {delay:?}: join phases {ms:?} ms");
        assert_eq!(phases.len(), 2, "{profile} {delay:?}: {ms:?}");
        assert!(first.contains(&ms[0]), "{profile} {delay:?}: first phase {} ms, want {first:?}", ms[0]);
        assert!(second.contains(&ms[1]), "{profile} {delay:?}: second phase {} ms, want {second:?}", ms[1]);
    }
}

/// One broker (so each fetch response is one request's reply), 4 partitions, 10 000-byte
/// records, strategy none (only the fetch limits bound what a fetch returns).
fn sized(max_partition_fetch_bytes: u64, fetch_max_bytes: u64) -> sluice_core::spec::Scenario {
    let v = base(4, 400.0, 1);
    let v = set(v, "cluster.brokers", json!(1));
    let v = set(v, "cluster.replication_factor", json!(1));
    let v = set(v, "cluster.min_insync_replicas", json!(1));
    let v = set(v, "producers.0.record_bytes", json!(10_000));
    let v = set(v, "consumers.strategy", json!("none"));
    let v = set(v, "consumers.max_partition_fetch_bytes", json!(max_partition_fetch_bytes));
    let v = set(v, "consumers.fetch_max_bytes", json!(fetch_max_bytes));
    scenario(v)
}

/// Per fetch reply (one consumer, one broker: the entries of one instant), the records and bytes
/// of each partition that returned some.
fn replies(out: &sluice_sim::SimOutcome) -> Vec<Vec<(String, u64, u64)>> {
    let mut by_t: std::collections::BTreeMap<u64, Vec<(String, u64, u64)>> = Default::default();
    for e in &out.history {
        if let Event::Fetch { tp, runs, bytes, .. } = &e.ev {
            let n: u64 = runs.iter().map(|r| r.count as u64).sum();
            by_t.entry(e.t_us).or_default().push((tp.to_string(), n, *bytes));
        }
    }
    by_t.into_values().collect()
}

/// `max.partition.fetch.bytes` and `fetch.max.bytes` (KIP-74): a partition returns whole records
/// within its limit, a reply within the request's; the served order rotates, so every partition
/// gets its share when the request's budget runs out; and the fetch limits cap throughput (five
/// records a round trip cannot keep up with 400 records/s).
#[test]
fn fetches_return_whole_records_within_the_partition_and_request_byte_limits() {
    let out = run_seed(&sized(25_000, 50_000), 3, true);
    let rs = replies(&out);
    assert!(rs.len() > 50, "{} replies", rs.len());
    let mut per_tp: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &rs {
        let total: u64 = r.iter().map(|(_, _, b)| b).sum();
        assert!(total <= 50_000, "a reply of {total} bytes: {r:?}");
        for (tp, n, b) in r {
            assert_eq!(*b, n * 10_000, "bytes of {tp}");
            assert!(*n <= 2, "{tp}: {n} records of 10 000 bytes within 25 000");
            *per_tp.entry(tp.clone()).or_default() += n;
        }
    }
    let (lo, hi) = (per_tp.values().min().copied().unwrap_or(0), per_tp.values().max().copied().unwrap_or(0));
    assert_eq!(per_tp.len(), 4, "{per_tp:?}");
    assert!(lo * 10 >= hi * 7, "every partition gets its share: {per_tp:?}");
    // With the default limits (1 MiB a partition, 50 MiB a request) the lag holds at what the
    // 5 s commit interval leaves (400 records/s: about 2 000).
    let roomy = run_seed(&sized(1 << 20, 50 << 20), 3, true);
    let (capped, free) = (total_lag_at(&out, 20), total_lag_at(&roomy, 20));
    eprintln!("lag at 20 s: {capped} with the limits, {free} without");
    assert!(free <= 2_500, "lag {free} under the default limits");
    assert!(capped >= free + 3_000, "the fetch limits cap throughput: lag {capped} against {free}");
}

/// Records larger than `max.partition.fetch.bytes`: the first partition served with data returns
/// its first record anyway (a consumer always makes progress), the others none.
#[test]
fn a_record_larger_than_the_partition_limit_comes_one_per_reply() {
    let out = run_seed(&sized(5_000, 50_000), 3, true);
    let rs = replies(&out);
    assert!(rs.len() > 50, "{} replies", rs.len());
    for r in &rs {
        assert_eq!(r.len(), 1, "one partition with data per reply: {r:?}");
        assert_eq!((r[0].1, r[0].2), (1, 10_000), "{r:?}");
    }
    let tps: std::collections::BTreeSet<&str> = rs.iter().map(|r| r[0].0.as_str()).collect();
    assert_eq!(tps.len(), 4, "the served order rotates: {tps:?}");
}

/// `fetch.min.bytes`: the broker holds a fetch until its reply carries that many bytes (or
/// `fetch.wait.max.ms` passes), so replies come fewer and larger; at the default of 1 byte a reply
/// goes as soon as anything is there.
#[test]
fn fetch_min_bytes_holds_a_fetch_until_its_reply_is_large_enough() {
    let at = |min: u64| {
        let v = base(4, 100.0, 1);
        let v = set(v, "cluster.brokers", json!(1));
        let v = set(v, "cluster.replication_factor", json!(1));
        let v = set(v, "cluster.min_insync_replicas", json!(1));
        let v = set(v, "producers.0.record_bytes", json!(1_000));
        let v = set(v, "consumers.fetch_min_bytes", json!(min));
        // Fetches sized by max.poll.records alone (a credit-sized fetch may ask for less than
        // fetch.min.bytes and then waits out fetch.wait.max.ms, as it would against Kafka).
        let v = set(v, "consumers.strategy", json!("none"));
        let v = set(v, "consumers.fetch_wait_max_ms", json!(1_000));
        let out = run_seed(&scenario(v), 4, true);
        let mut sizes: Vec<u64> = replies(&out).iter().map(|r| r.iter().map(|(_, _, b)| b).sum()).collect();
        sizes.sort_unstable();
        sizes
    };
    let (eager, held) = (at(1), at(20_000));
    let median = |s: &[u64]| s[s.len() / 2];
    eprintln!("replies: {} of median {} bytes at 1; {} of median {} bytes at 20 000", eager.len(), median(&eager), held.len(), median(&held));
    assert!(median(&eager) < 10_000, "at fetch.min.bytes 1 a reply goes at once: median {}", median(&eager));
    // 100 records/s of 1 000 bytes reach 20 000 bytes in about 200 ms, within the 1 s wait: every
    // reply but those of the start (a single backlogged reply, the assignment's first fetches) holds
    // at least that much.
    let small = held.iter().filter(|b| **b < 20_000).count();
    assert!(small * 20 <= held.len(), "{small} of {} replies below fetch.min.bytes", held.len());
    // Fewer replies for the same records: about 20 records each instead of the 9 one client round
    // trip gathers at 100 records/s.
    assert!(held.len() * 2 < eager.len(), "replies: {} held against {} eager", held.len(), eager.len());
}
