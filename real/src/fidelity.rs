//! Fidelity statistics: how closely a simulated history matches a real one of the same scenario.
//!
//! - Throughput: records processed successfully per second of the run (`ProcessEnd.ok` summed over
//!   the span from the first entry to the end of the run); relative error `|real − sim| / sim`.
//! - Lag curve: total lag over time, compared as two samples with the two-sample
//!   Kolmogorov–Smirnov statistic `D = sup_x |F_sim(x) − F_real(x)|` (0 = same distribution, 1 =
//!   disjoint). Lag is computed from the history itself — the end of the log is the highest
//!   acknowledged produce (`ProduceAck.offset + count`) and the consumer position is the highest
//!   acknowledged commit — because brokers do not all report watermarks faithfully (the in-memory
//!   Tansu broker reports a high watermark of 1 whatever the log holds).
//! - Rebalance duration: from a revocation (or a member crash, eviction or start) to the next
//!   assignment of any member; episodes are averaged.
//! - Recovery time: from the start of the liveness phase until total lag first falls to the
//!   declared `lag_ok_records`.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_core::history::{Entry, Event, MemberEvent, Phase};

/// Lag curve sampling step.
pub const LAG_STEP_US: u64 = 1_000_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Fidelity {
    pub throughput_sim_per_s: f64,
    pub throughput_real_per_s: f64,
    /// `|real − sim| / sim`; `None` when the simulator processed nothing.
    pub throughput_rel_error: Option<f64>,
    /// Two-sample KS statistic of the lag curves; `None` when either curve is empty.
    pub lag_ks: Option<f64>,
    pub rebalance_ms_sim: Option<f64>,
    pub rebalance_ms_real: Option<f64>,
    /// Real minus simulated mean rebalance duration.
    pub rebalance_ms_diff: Option<f64>,
    pub recovery_ms_sim: Option<u64>,
    pub recovery_ms_real: Option<u64>,
    /// Real minus simulated recovery time.
    pub recovery_ms_diff: Option<i64>,
}

/// Compares a simulated and a real history of the same scenario.
pub fn compare(sim: &[Entry], real: &[Entry]) -> Fidelity {
    let ts = throughput_per_s(sim);
    let tr = throughput_per_s(real);
    let ls: Vec<f64> = lag_curve(sim, LAG_STEP_US).into_iter().map(|(_, l)| l as f64).collect();
    let lr: Vec<f64> = lag_curve(real, LAG_STEP_US).into_iter().map(|(_, l)| l as f64).collect();
    let rs = mean(&rebalance_durations_us(sim)).map(|u| u / 1_000.0);
    let rr = mean(&rebalance_durations_us(real)).map(|u| u / 1_000.0);
    let vs = recovery_us(sim).map(|u| u / 1_000);
    let vr = recovery_us(real).map(|u| u / 1_000);
    Fidelity {
        throughput_sim_per_s: ts,
        throughput_real_per_s: tr,
        throughput_rel_error: (ts > 0.0).then(|| (tr - ts).abs() / ts),
        lag_ks: ks_statistic(&ls, &lr),
        rebalance_ms_sim: rs,
        rebalance_ms_real: rr,
        rebalance_ms_diff: rs.zip(rr).map(|(s, r)| r - s),
        recovery_ms_sim: vs,
        recovery_ms_real: vr,
        recovery_ms_diff: vs.zip(vr).map(|(s, r)| r as i64 - s as i64),
    }
}

fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64)
}

/// Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|x| x.is_nan()) {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        // Step past every sample equal to the smaller current value, in both, before comparing.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    Some(d)
}

/// End of the run: the `Phase::End` entry, else the last entry.
fn end_us(h: &[Entry]) -> u64 {
    h.iter()
        .find(|e| matches!(e.ev, Event::Phase { phase: Phase::End }))
        .or(h.last())
        .map(|e| e.t_us)
        .unwrap_or(0)
}

/// Records processed successfully per second over the run.
pub fn throughput_per_s(h: &[Entry]) -> f64 {
    let ok: u64 = h
        .iter()
        .map(|e| match e.ev {
            Event::ProcessEnd { ok, .. } => ok as u64,
            _ => 0,
        })
        .sum();
    let start = h.first().map(|e| e.t_us).unwrap_or(0);
    let span = end_us(h).saturating_sub(start);
    if span == 0 {
        0.0
    } else {
        ok as f64 / (span as f64 / 1e6)
    }
}

/// Total lag sampled every `step_us`: Σ over partitions of (highest acknowledged produce end −
/// highest acknowledged commit), never below 0.
pub fn lag_curve(h: &[Entry], step_us: u64) -> Vec<(u64, u64)> {
    assert!(step_us > 0);
    let end = end_us(h);
    let mut log_end: BTreeMap<&str, u64> = BTreeMap::new();
    let mut committed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = Vec::new();
    let mut next = h.first().map(|e| e.t_us).unwrap_or(0);
    let total = |le: &BTreeMap<&str, u64>, c: &BTreeMap<&str, u64>| -> u64 {
        le.iter().map(|(tp, e)| e.saturating_sub(c.get(tp).copied().unwrap_or(0))).sum()
    };
    for e in h {
        while e.t_us >= next && next <= end {
            out.push((next, total(&log_end, &committed)));
            next += step_us;
        }
        match &e.ev {
            Event::ProduceAck { tp, offset, count, .. } => {
                let v = log_end.entry(tp.as_str()).or_insert(0);
                *v = (*v).max(offset + *count as u64);
            }
            Event::CommitAck { tp, offset, .. } => {
                let v = committed.entry(tp.as_str()).or_insert(0);
                *v = (*v).max(*offset);
            }
            _ => {}
        }
    }
    if next <= end {
        out.push((next, total(&log_end, &committed)));
    }
    out
}

/// Durations of rebalance episodes: each starts at a revocation, crash, eviction or member start
/// that follows the last assignment, and ends at the next assignment.
pub fn rebalance_durations_us(h: &[Entry]) -> Vec<u64> {
    let mut open: Option<u64> = None;
    let mut out = Vec::new();
    for e in h {
        match &e.ev {
            Event::Revoke { .. }
            | Event::Member { event: MemberEvent::Crash | MemberEvent::Evicted | MemberEvent::Start | MemberEvent::Leave, .. } => {
                open.get_or_insert(e.t_us);
            }
            Event::Assign { .. } => {
                if let Some(s) = open.take() {
                    out.push(e.t_us - s);
                }
            }
            _ => {}
        }
    }
    out
}

/// Time from the start of the liveness phase until total lag first falls to the declared
/// `lag_ok_records`; `None` if it never does (or the history has no liveness phase).
pub fn recovery_us(h: &[Entry]) -> Option<u64> {
    let ok = h.iter().find_map(|e| match &e.ev {
        Event::Meta { bounds, .. } => Some(bounds.lag_ok_records),
        _ => None,
    })?;
    let live = h.iter().find(|e| matches!(e.ev, Event::Phase { phase: Phase::Liveness }))?.t_us;
    let curve = lag_curve(h, LAG_STEP_US / 10);
    curve.into_iter().find(|(t, l)| *t >= live && *l <= ok).map(|(t, _)| t - live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::history::{Bounds, Event as E};

    fn ks(a: &[f64], b: &[f64], want: Option<f64>) {
        let got = ks_statistic(a, b);
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "ks({a:?}, {b:?}) = {g}, want {w}"),
            _ => assert_eq!(got, want, "ks({a:?}, {b:?})"),
        }
    }

    #[test]
    fn ks_statistic_table() {
        ks(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], Some(0.0));
        ks(&[1.0, 2.0, 3.0], &[3.0, 1.0, 2.0], Some(0.0));
        ks(&[1.0, 2.0], &[3.0, 4.0], Some(1.0));
        // F_a jumps to 1/2 at 1; F_b is 0 until 2: gap 1/2 … then at 2 both 1/2 vs 1/2 …
        ks(&[1.0, 3.0], &[2.0, 3.0], Some(0.5));
        // Ties across samples are stepped together.
        ks(&[0.0, 0.0, 1.0, 1.0], &[0.0, 1.0, 1.0, 1.0], Some(0.25));
        ks(&[], &[1.0], None);
        ks(&[f64::NAN], &[1.0], None);
    }

    #[test]
    fn ks_of_shifted_uniform_curves_matches_the_shift() {
        let a: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..1000).map(|i| i as f64 + 250.0).collect();
        ks(&a, &b, Some(0.25));
    }

    fn e(t_us: u64, ev: E) -> Entry {
        Entry { t_us, ev }
    }
    fn meta(lag_ok: u64) -> E {
        E::Meta {
            schema: 1,
            source: "test".into(),
            scenario: "s".into(),
            seed: 0,
            topics: vec![],
            consumers: 1,
            strategy: "pause".into(),
            bounds: Bounds { lag_ok_records: lag_ok, ..Bounds::default() },
            expect: vec![],
            settings: Default::default(),
        }
    }
    fn ack(tp: &str, offset: u64, count: u32) -> E {
        E::ProduceAck { producer: 0, tp: tp.into(), seq: offset, count, offset }
    }
    fn commit(tp: &str, offset: u64) -> E {
        E::CommitAck { consumer: 0, generation: 1, tp: tp.into(), offset }
    }
    fn done(ok: u32) -> E {
        E::ProcessEnd { consumer: 0, tp: "t/0".into(), offset: 0, count: ok, ok }
    }

    #[test]
    fn throughput_counts_ok_records_over_the_span() {
        let h = vec![e(0, meta(0)), e(500_000, done(100)), e(1_500_000, done(200)), e(2_000_000, E::Phase { phase: Phase::End })];
        assert!((throughput_per_s(&h) - 150.0).abs() < 1e-9);
        let h2 = vec![e(0, meta(0)), e(1_000_000, done(150)), e(2_000_000, E::Phase { phase: Phase::End })];
        let f = compare(&h2, &h);
        assert!((f.throughput_rel_error.unwrap() - (150.0 - 75.0) / 75.0).abs() < 1e-9);
        assert_eq!(compare(&[], &h).throughput_rel_error, None);
    }

    #[test]
    fn lag_curve_follows_acks_and_commits() {
        let h = vec![
            e(0, meta(5)),
            e(100_000, ack("t/0", 0, 10)),
            e(200_000, ack("t/1", 0, 4)),
            e(1_200_000, commit("t/0", 8)),
            e(2_500_000, commit("t/1", 4)),
            e(3_000_000, E::Phase { phase: Phase::End }),
        ];
        assert_eq!(lag_curve(&h, 1_000_000), vec![(0, 0), (1_000_000, 14), (2_000_000, 6), (3_000_000, 2)]);
    }

    #[test]
    fn rebalance_episodes_and_recovery() {
        let assign = |c| E::Assign { consumer: c, generation: 1, tps: vec![] };
        let revoke = |c| E::Revoke { consumer: c, generation: 1, tps: vec![] };
        let h = vec![
            e(0, meta(3)),
            e(0, E::Member { consumer: 0, event: MemberEvent::Start }),
            e(3_000_000, assign(0)),
            e(10_000_000, revoke(0)),
            e(10_500_000, E::Member { consumer: 1, event: MemberEvent::Crash }),
            e(14_000_000, assign(0)),
            e(14_100_000, assign(1)),
            e(15_000_000, ack("t/0", 0, 20)),
            e(20_000_000, E::Phase { phase: Phase::Liveness }),
            e(21_000_000, commit("t/0", 10)),
            e(22_550_000, commit("t/0", 18)),
            e(30_000_000, E::Phase { phase: Phase::End }),
        ];
        assert_eq!(rebalance_durations_us(&h), vec![3_000_000, 4_000_000]);
        assert_eq!(recovery_us(&h), Some(2_600_000));
        let mut slower = h.clone();
        slower[10] = e(25_050_000, commit("t/0", 18));
        let f = compare(&h, &slower);
        assert_eq!(f.recovery_ms_diff, Some(2_500));
        assert_eq!(f.rebalance_ms_diff, Some(0.0));
        assert_eq!(f.lag_ks.map(|d| d > 0.0), Some(true));
        // Never recovering is None, not a number.
        let stuck: Vec<Entry> = h.iter().filter(|x| !matches!(x.ev, E::CommitAck { .. })).cloned().collect();
        assert_eq!(recovery_us(&stuck), None);
    }
}
