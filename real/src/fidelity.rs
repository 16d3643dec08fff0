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
//!
//! What makes the two comparable ([`compare`] does both before measuring anything):
//! - One time base. A real run played with a time scale (`settings.time_scale` in its `Meta`,
//!   wall seconds per scenario second) has its times divided by it, so both histories are in
//!   scenario time.
//! - One window. Both are cut at the earlier of their two ends (a real run keeps going after the
//!   scenario: final reads, members leaving), so throughput is over the same span, both lag
//!   curves are sampled on the same grid (the same number of samples, at the same instants), and
//!   only rebalances inside the window count.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_core::history::{Entry, Event, MemberEvent, Phase};

/// Lag curve sampling step.
pub const LAG_STEP_US: u64 = 1_000_000;

/// Targets of the fidelity comparison (issue #6).
pub const THROUGHPUT_REL_ERROR_MAX: f64 = 0.10;
pub const LAG_KS_MAX: f64 = 0.15;
pub const REBALANCE_REL_ERROR_MAX: f64 = 0.20;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Fidelity {
    /// The common window both histories were cut to, in scenario seconds.
    pub window_s: f64,
    /// The real run's time scale (wall seconds per scenario second) that was undone.
    pub real_time_scale: f64,
    /// The simulator's calibration the figures were made with, from the simulated history's
    /// `Meta.settings` (see [`CALIBRATION_SETTINGS`]); empty when it records none.
    pub sim_calibration: BTreeMap<String, String>,
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
    /// `|real − sim| / sim` of the mean rebalance durations.
    pub rebalance_rel_error: Option<f64>,
    pub rebalances_sim: usize,
    pub rebalances_real: usize,
    pub recovery_ms_sim: Option<u64>,
    pub recovery_ms_real: Option<u64>,
    /// Real minus simulated recovery time.
    pub recovery_ms_diff: Option<i64>,
}

/// The `Meta.settings` keys of a simulated history that describe its calibration: the broker
/// profile, the join hold it used, and the consumers' client latency.
pub const CALIBRATION_SETTINGS: [&str; 3] = ["broker_profile", "rebalance_delay_ms", "client_latency_ms"];

/// The calibration settings a history's `Meta` records.
pub fn calibration(h: &[Entry]) -> BTreeMap<String, String> {
    h.iter()
        .find_map(|e| match &e.ev {
            Event::Meta(m) => Some(
                CALIBRATION_SETTINGS
                    .iter()
                    .filter_map(|k| m.settings.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Compares a simulated and a real history of the same scenario (see the module docs for how
/// they are brought to one time base and one window first).
pub fn compare(sim: &[Entry], real: &[Entry]) -> Fidelity {
    let scale_sim = time_scale(sim);
    let scale_real = time_scale(real);
    let sim_calibration = calibration(sim);
    let window = end_us(sim).div_f(scale_sim).min(end_us(real).div_f(scale_real));
    let sim = normalize(sim, scale_sim, window);
    let real = normalize(real, scale_real, window);
    let (sim, real) = (&sim[..], &real[..]);
    let ts = throughput_per_s(sim);
    let tr = throughput_per_s(real);
    let ls: Vec<f64> = lag_curve(sim, LAG_STEP_US).into_iter().map(|(_, l)| l as f64).collect();
    let lr: Vec<f64> = lag_curve(real, LAG_STEP_US).into_iter().map(|(_, l)| l as f64).collect();
    let (ds, dr) = (rebalance_durations_us(sim), rebalance_durations_us(real));
    let rs = mean(&ds).map(|u| u / 1_000.0);
    let rr = mean(&dr).map(|u| u / 1_000.0);
    let vs = recovery_us(sim).map(|u| u / 1_000);
    let vr = recovery_us(real).map(|u| u / 1_000);
    Fidelity {
        window_s: window as f64 / 1e6,
        real_time_scale: scale_real,
        sim_calibration,
        throughput_sim_per_s: ts,
        throughput_real_per_s: tr,
        throughput_rel_error: (ts > 0.0).then(|| (tr - ts).abs() / ts),
        lag_ks: ks_statistic(&ls, &lr),
        rebalance_ms_sim: rs,
        rebalance_ms_real: rr,
        rebalance_ms_diff: rs.zip(rr).map(|(s, r)| r - s),
        rebalance_rel_error: rs.zip(rr).filter(|(s, _)| *s > 0.0).map(|(s, r)| (r - s).abs() / s),
        rebalances_sim: ds.len(),
        rebalances_real: dr.len(),
        recovery_ms_sim: vs,
        recovery_ms_real: vr,
        recovery_ms_diff: vs.zip(vr).map(|(s, r)| r as i64 - s as i64),
    }
}

/// One line of a fidelity table: a metric, both values, the error, the target, and whether the
/// target was met (`None`: not measurable in this pair of runs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub metric: &'static str,
    pub sim: Option<f64>,
    pub real: Option<f64>,
    pub error: Option<f64>,
    pub target: &'static str,
    pub pass: Option<bool>,
}

impl Fidelity {
    /// The comparison against the targets: throughput within 10 %, lag KS ≤ 0.15,
    /// rebalance duration within 20 %; recovery time is reported without a target.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let within = |e: Option<f64>, max: f64| e.map(|e| e <= max);
        vec![
            Verdict {
                metric: "throughput (records/s)",
                sim: Some(self.throughput_sim_per_s),
                real: Some(self.throughput_real_per_s),
                error: self.throughput_rel_error,
                target: "rel. error <= 0.10",
                pass: within(self.throughput_rel_error, THROUGHPUT_REL_ERROR_MAX),
            },
            Verdict { metric: "lag curve (records)", sim: None, real: None, error: self.lag_ks, target: "KS D <= 0.15", pass: within(self.lag_ks, LAG_KS_MAX) },
            Verdict {
                metric: "rebalance duration (ms)",
                sim: self.rebalance_ms_sim,
                real: self.rebalance_ms_real,
                error: self.rebalance_rel_error,
                target: "rel. error <= 0.20",
                pass: within(self.rebalance_rel_error, REBALANCE_REL_ERROR_MAX),
            },
            Verdict {
                metric: "recovery time (ms)",
                sim: self.recovery_ms_sim.map(|v| v as f64),
                real: self.recovery_ms_real.map(|v| v as f64),
                error: self.recovery_ms_diff.map(|d| d as f64),
                target: "none (difference in ms)",
                pass: None,
            },
        ]
    }
}

/// A history's time scale: `settings.time_scale` of its `Meta` (real runs), else 1.
fn time_scale(h: &[Entry]) -> f64 {
    h.iter()
        .find_map(|e| match &e.ev {
            Event::Meta(m) => m.settings.get("time_scale").and_then(|s| s.parse::<f64>().ok()),
            _ => None,
        })
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

/// Microseconds of one time base divided by a scale (wall → scenario time).
trait DivF {
    fn div_f(self, scale: f64) -> u64;
}
impl DivF for u64 {
    fn div_f(self, scale: f64) -> u64 {
        (self as f64 / scale).round() as u64
    }
}

/// The history in scenario time, cut at `window_us`, ending with a `Phase::End` there.
fn normalize(h: &[Entry], scale: f64, window_us: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = h
        .iter()
        .filter(|e| !matches!(e.ev, Event::Phase { phase: Phase::End }))
        .map(|e| Entry { t_us: e.t_us.div_f(scale), ev: e.ev.clone() })
        .take_while(|e| e.t_us <= window_us)
        .collect();
    out.push(Entry { t_us: window_us, ev: Event::Phase { phase: Phase::End } });
    out
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
                let v = log_end.entry(&**tp).or_insert(0);
                *v = (*v).max(offset + *count as u64);
            }
            Event::CommitAck { tp, offset, .. } => {
                let v = committed.entry(&**tp).or_insert(0);
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
        Event::Meta(m) => Some(m.bounds.lag_ok_records),
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
        E::Meta(Box::new(sluice_core::history::Meta {
            schema: 1,
            source: "test".into(),
            scenario: "s".into(),
            seed: 0,
            topics: vec![],
            producers: vec![],
            consumers: 1,
            strategy: "pause".into(),
            bounds: Bounds { lag_ok_records: lag_ok, ..Bounds::default() },
            expect: vec![],
            settings: Default::default(),
        }))
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

    fn with_scale(h: &[Entry], scale: f64) -> Vec<Entry> {
        h.iter()
            .map(|x| match &x.ev {
                E::Meta(_) => {
                    let mut m = meta(0);
                    if let E::Meta(m) = &mut m {
                        m.settings.insert("time_scale".into(), scale.to_string());
                    }
                    Entry { t_us: 0, ev: m }
                }
                ev => Entry { t_us: (x.t_us as f64 * scale) as u64, ev: ev.clone() },
            })
            .collect()
    }

    #[test]
    fn one_time_base_and_one_window() {
        let sim = vec![
            e(0, meta(0)),
            e(200_000, ack("t/0", 0, 100)),
            e(1_000_000, done(100)),
            e(1_500_000, commit("t/0", 60)),
            e(3_000_000, commit("t/0", 100)),
            e(4_000_000, E::Phase { phase: Phase::End }),
        ];
        // (real history, expected throughput error, expected KS)
        let cases: Vec<(Vec<Entry>, f64, f64)> = vec![
            // The same run played twice as fast: identical once the scale is undone.
            (with_scale(&sim, 0.5), 0.0, 0.0),
            (with_scale(&sim, 2.0), 0.0, 0.0),
            // A real run that goes on past the scenario (final reads): what follows the common
            // window changes nothing.
            (
                {
                    let mut r = sim.clone();
                    r.pop();
                    r.push(e(5_000_000, done(400)));
                    r.push(e(9_000_000, E::Phase { phase: Phase::End }));
                    r
                },
                0.0,
                0.0,
            ),
            // Half the records processed: error 0.5.
            (
                {
                    let mut r = sim.clone();
                    r[2] = e(1_000_000, done(50));
                    r
                },
                0.5,
                0.0,
            ),
        ];
        for (i, (real, err, ks)) in cases.iter().enumerate() {
            let f = compare(&sim, real);
            assert!((f.window_s - 4.0).abs() < 1e-9, "case {i}: window {}", f.window_s);
            assert!((f.throughput_rel_error.unwrap() - err).abs() < 1e-9, "case {i}: {f:?}");
            assert!((f.lag_ks.unwrap() - ks).abs() < 1e-9, "case {i}: {f:?}");
        }
        // A commit that comes later in real time shows in the lag distance.
        let mut late = sim.clone();
        late[3] = e(2_900_000, commit("t/0", 60));
        assert!(compare(&sim, &late).lag_ks.unwrap() > 0.0);
    }

    #[test]
    fn the_simulators_calibration_is_carried_into_the_figures() {
        let mut m = meta(0);
        if let E::Meta(m) = &mut m {
            for (k, v) in [("broker_profile", "tansu"), ("rebalance_delay_ms", "22500"), ("client_latency_ms", "50"), ("assignor", "range")] {
                m.settings.insert(k.into(), v.into());
            }
        }
        let sim = vec![e(0, m), e(1_000_000, E::Phase { phase: Phase::End })];
        let real = vec![e(0, meta(0)), e(1_000_000, E::Phase { phase: Phase::End })];
        let want: BTreeMap<String, String> =
            [("broker_profile", "tansu"), ("client_latency_ms", "50"), ("rebalance_delay_ms", "22500")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        assert_eq!(compare(&sim, &real).sim_calibration, want, "only the calibration keys, from the simulated side");
        assert!(compare(&real, &sim).sim_calibration.is_empty(), "a history without them has none");
    }

    #[test]
    fn verdicts_hold_the_targets() {
        let f = Fidelity {
            throughput_rel_error: Some(0.05),
            lag_ks: Some(0.2),
            rebalance_ms_sim: Some(1_000.0),
            rebalance_ms_real: Some(1_300.0),
            rebalance_rel_error: Some(0.3),
            ..Fidelity::default()
        };
        let got: Vec<(&str, Option<bool>)> = f.verdicts().iter().map(|v| (v.metric, v.pass)).collect();
        assert_eq!(
            got,
            vec![
                ("throughput (records/s)", Some(true)),
                ("lag curve (records)", Some(false)),
                ("rebalance duration (ms)", Some(false)),
                ("recovery time (ms)", None),
            ]
        );
        let none = Fidelity::default().verdicts();
        assert_eq!(none[0].pass, None);
        assert_eq!(none[2].pass, None);
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
