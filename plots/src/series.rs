//! Pure functions from a history to the data series the charts draw. Time is in seconds since the
//! start of the run on every x axis. Nothing here draws or touches the file system, so every series
//! can be snapshotted and checked on its own.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sluice_core::history::{Bounds, Edge, Entry, Event, Phase, TierBound};
use sluice_core::types::TimeUs;

use crate::PlotError;

/// `(x, y)` pairs in drawing order.
pub type Points = Vec<(f64, f64)>;

/// Most throughput buckets a run is cut into; the bucket width grows with the run's length.
pub const THROUGHPUT_BUCKETS_MAX: usize = 60;
/// Bucket widths tried in order, in seconds; the first giving at most
/// [`THROUGHPUT_BUCKETS_MAX`] buckets wins.
pub const THROUGHPUT_BUCKET_WIDTHS_S: [f64; 12] =
    [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0];
/// Window lengths at which the maximum admitted in any window is evaluated (token chart).
pub const WINDOW_POINTS: usize = 60;

pub fn seconds(t_us: TimeUs) -> f64 {
    t_us as f64 / 1e6
}

/// A labelled series (one partition, one consumer, one run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Named {
    pub label: String,
    pub points: Points,
}

/// A time interval `[start_s, end_s]`; intervals still open when the history ends close at its end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub start_s: f64,
    pub end_s: f64,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseMark {
    pub t_s: f64,
    pub phase: Phase,
}

/// Who the run was: from the `Meta` line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    pub source: String,
    pub scenario: String,
    pub seed: u64,
    pub strategy: String,
    pub consumers: u32,
}

impl RunInfo {
    /// `"scenario · strategy · seed N · source"`, used in chart titles.
    pub fn caption(&self) -> String {
        format!("{} · {} · seed {} · {}", self.scenario, self.strategy, self.seed, self.source)
    }
}

/// Admissions through one declared rate-limit tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierSeries {
    pub tier: String,
    pub rate_per_s: f64,
    pub burst: f64,
    /// Records admitted since the start, at every admission.
    pub admitted_cumulative: Points,
    /// Records refused since the start, at every refusal.
    pub refused_cumulative: Points,
    /// `(w, most records admitted in any window of length w)`: R1 holds iff this stays at or
    /// below `burst + rate_per_s · w`.
    pub window_max: Points,
}

/// The numbers a comparison bar chart shows for one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub peak_buffer_records: f64,
    pub max_lag_records: f64,
    pub rebalances: f64,
}

/// Every series of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSeries {
    pub info: RunInfo,
    pub bounds: Bounds,
    /// Time of the last entry.
    pub end_s: f64,
    pub lag_total: Points,
    pub lag_by_tp: Vec<Named>,
    pub buffer_by_consumer: Vec<Named>,
    /// MiB buffered per consumer; empty when no sample carries a byte count (a history written
    /// before record sizes).
    pub buffer_mib_by_consumer: Vec<Named>,
    pub credits_by_consumer: Vec<Named>,
    pub throughput_bucket_s: f64,
    /// Records acknowledged to producers per second.
    pub throughput_in: Points,
    /// Records processed successfully per second.
    pub throughput_out: Points,
    pub tiers: Vec<TierSeries>,
    pub pauses: Vec<Interval>,
    pub rebalances: Vec<Interval>,
    pub faults: Vec<Interval>,
    pub phases: Vec<PhaseMark>,
    /// Stalled partitions, labelled by partition (and owners): not read from the history but
    /// handed in by whoever judged it ([`crate::render_run_report_with`]); empty otherwise.
    pub stalls: Vec<Interval>,
}

impl RunSeries {
    /// When the liveness phase began, if it did.
    pub fn liveness_start_s(&self) -> Option<f64> {
        self.phases.iter().find(|p| p.phase == Phase::Liveness).map(|p| p.t_s)
    }
}

/// Computes every series of `history`. The history must begin with (or at least contain) a `Meta`
/// line; an empty history or one without `Meta` is rejected.
pub fn run_series(history: &[Entry]) -> Result<RunSeries, PlotError> {
    let (info, bounds) = run_info(history)?;
    let end_s = end_s(history);
    let (lag_total, lag_by_tp) = lag(history);
    let (throughput_bucket_s, throughput_in, throughput_out) = throughput(history, end_s);
    Ok(RunSeries {
        tiers: token_tiers(history, &bounds.rate_tiers, end_s),
        info,
        bounds,
        end_s,
        lag_total,
        lag_by_tp,
        buffer_by_consumer: buffer(history),
        buffer_mib_by_consumer: buffer_mib(history),
        credits_by_consumer: credits(history),
        throughput_bucket_s,
        throughput_in,
        throughput_out,
        pauses: pause_intervals(history, end_s),
        rebalances: rebalance_intervals(history, end_s),
        faults: fault_intervals(history, end_s),
        stalls: Vec::new(),
        phases: phases(history),
    })
}

/// The run's identity and declared bounds, from its first `Meta` line.
pub fn run_info(history: &[Entry]) -> Result<(RunInfo, Bounds), PlotError> {
    if history.is_empty() {
        return Err(PlotError::BadInput("the history is empty".into()));
    }
    for e in history {
        if let Event::Meta(m) = &e.ev {
            let info = RunInfo {
                source: m.source.clone(),
                scenario: m.scenario.clone(),
                seed: m.seed,
                strategy: m.strategy.clone(),
                consumers: m.consumers,
            };
            return Ok((info, m.bounds.clone()));
        }
    }
    Err(PlotError::BadInput(format!("the history has no meta line ({} entries)", history.len())))
}

/// Time of the last entry, in seconds (0 for an empty history).
pub fn end_s(history: &[Entry]) -> f64 {
    seconds(history.iter().map(|e| e.t_us).max().unwrap_or(0))
}

/// Total lag (sum over partitions of each one's latest sample, one point per sampling instant) and
/// lag per partition, from `Lag` samples. Lag is `hw − committed`, clamped at 0.
pub fn lag(history: &[Entry]) -> (Points, Vec<Named>) {
    let mut latest: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_tp: BTreeMap<&str, Points> = BTreeMap::new();
    let mut total: Points = Vec::new();
    let mut pending: Option<TimeUs> = None;
    for e in history {
        let Event::Lag { tp, hw, committed } = &e.ev else { continue };
        if let Some(t) = pending {
            if t != e.t_us {
                total.push((seconds(t), latest.values().sum()));
            }
        }
        pending = Some(e.t_us);
        let lag = hw.saturating_sub(*committed) as f64;
        latest.insert(&**tp, lag);
        by_tp.entry(&**tp).or_default().push((seconds(e.t_us), lag));
    }
    if let Some(t) = pending {
        total.push((seconds(t), latest.values().sum()));
    }
    let named = by_tp.into_iter().map(|(tp, points)| Named { label: tp.to_string(), points }).collect();
    (total, named)
}

/// Records buffered per consumer over time, from `Buffer` samples.
pub fn buffer(history: &[Entry]) -> Vec<Named> {
    per_consumer(history, |ev| match ev {
        Event::Buffer { consumer, records, .. } => Some((*consumer, *records as f64)),
        _ => None,
    })
}

/// Bytes per MiB.
pub const MIB: f64 = (1u64 << 20) as f64;

/// MiB buffered per consumer over time, from `Buffer` samples; empty when none carries a byte count.
pub fn buffer_mib(history: &[Entry]) -> Vec<Named> {
    let sized = history.iter().any(|e| matches!(e.ev, Event::Buffer { bytes, .. } if bytes > 0));
    if !sized {
        return Vec::new();
    }
    per_consumer(history, |ev| match ev {
        Event::Buffer { consumer, bytes, .. } => Some((*consumer, *bytes as f64 / MIB)),
        _ => None,
    })
}

/// Credits outstanding per consumer over time, from `Buffer` samples.
pub fn credits(history: &[Entry]) -> Vec<Named> {
    per_consumer(history, |ev| match ev {
        Event::Buffer { consumer, credits_outstanding, .. } => Some((*consumer, *credits_outstanding as f64)),
        _ => None,
    })
}

fn per_consumer(history: &[Entry], pick: impl Fn(&Event) -> Option<(u32, f64)>) -> Vec<Named> {
    let mut by: BTreeMap<u32, Points> = BTreeMap::new();
    for e in history {
        if let Some((c, v)) = pick(&e.ev) {
            by.entry(c).or_default().push((seconds(e.t_us), v));
        }
    }
    by.into_iter().map(|(c, points)| Named { label: format!("c{c}"), points }).collect()
}

/// The largest buffer of any consumer over time: at every sampling instant, the maximum over
/// consumers of each one's latest sample. Comparisons overlay this against `buffer_records_max`.
pub fn buffer_max_over_consumers(history: &[Entry]) -> Points {
    let mut latest: BTreeMap<u32, f64> = BTreeMap::new();
    let mut out: Points = Vec::new();
    let mut pending: Option<TimeUs> = None;
    let peak = |m: &BTreeMap<u32, f64>| m.values().copied().fold(0.0, f64::max);
    for e in history {
        let Event::Buffer { consumer, records, .. } = &e.ev else { continue };
        if let Some(t) = pending {
            if t != e.t_us {
                out.push((seconds(t), peak(&latest)));
            }
        }
        pending = Some(e.t_us);
        latest.insert(*consumer, *records as f64);
    }
    if let Some(t) = pending {
        out.push((seconds(t), peak(&latest)));
    }
    out
}

/// The bucket width (seconds) for a run lasting `end_s`.
pub fn bucket_width_s(end_s: f64) -> f64 {
    for w in THROUGHPUT_BUCKET_WIDTHS_S {
        if end_s / w <= THROUGHPUT_BUCKETS_MAX as f64 {
            return w;
        }
    }
    THROUGHPUT_BUCKET_WIDTHS_S[THROUGHPUT_BUCKET_WIDTHS_S.len() - 1]
}

/// Records in (acknowledged to producers) and out (processed successfully) per second, in buckets
/// of [`bucket_width_s`]; each point sits at its bucket's centre. A last bucket covering less than
/// half a width is left out (its rate would be noise); one covering more is divided by the time it
/// covers. Returns `(width, in, out)`; both series are empty when the history has neither acks nor
/// processing.
pub fn throughput(history: &[Entry], end_s: f64) -> (f64, Points, Points) {
    let width = bucket_width_s(end_s);
    let has_any = history
        .iter()
        .any(|e| matches!(e.ev, Event::ProduceAck { .. } | Event::ProcessEnd { .. }));
    if !has_any {
        return (width, Vec::new(), Vec::new());
    }
    // Bucket arithmetic in whole microseconds: 1.2 s / 0.1 s must be bucket 12, not 11.
    let width_us = (width * 1e6).round() as u64;
    let end_us = (end_s * 1e6).round() as u64;
    let full = (end_us / width_us) as usize;
    let rest_us = end_us % width_us;
    let n = if rest_us * 2 >= width_us { full + 1 } else { full.max(1) };
    let mut inn = vec![0.0; n];
    let mut out = vec![0.0; n];
    for e in history {
        let i = (e.t_us / width_us) as usize;
        if i >= n {
            continue;
        }
        match &e.ev {
            Event::ProduceAck { count, .. } => inn[i] += *count as f64,
            Event::ProcessEnd { ok, .. } => out[i] += *ok as f64,
            _ => {}
        }
    }
    let to_points = |v: Vec<f64>| -> Points {
        v.into_iter()
            .enumerate()
            .map(|(i, c)| {
                let lo = i as u64 * width_us;
                let hi = ((i as u64 + 1) * width_us).min(end_us.max(lo + width_us / 2));
                (seconds(lo + hi) / 2.0, c / seconds(hi - lo))
            })
            .collect()
    };
    (width, to_points(inn), to_points(out))
}

/// The most records admitted in any window `[t, t + w]`, given admissions `(t_s, n)` sorted by time.
/// With `w = 0` this is the largest total admitted at a single instant.
pub fn window_max(admissions: &[(f64, f64)], w: f64) -> f64 {
    let mut best = 0.0f64;
    let mut sum = 0.0;
    let mut hi = 0;
    for lo in 0..admissions.len() {
        while hi < admissions.len() && admissions[hi].0 - admissions[lo].0 <= w {
            sum += admissions[hi].1;
            hi += 1;
        }
        best = best.max(sum);
        sum -= admissions[lo].1;
    }
    best
}

/// Window lengths from 0 to `span_s`, denser near 0 where the burst shows.
pub fn window_grid(span_s: f64) -> Vec<f64> {
    (0..=WINDOW_POINTS)
        .map(|k| {
            let f = k as f64 / WINDOW_POINTS as f64;
            span_s * f * f
        })
        .collect()
}

/// Admissions per declared tier: cumulative admitted and refused over time, and the maximum
/// admitted in any window of each length. Token events for tiers not declared in the bounds are
/// ignored (there is no bound to draw them against).
pub fn token_tiers(history: &[Entry], tiers: &[TierBound], end_s: f64) -> Vec<TierSeries> {
    tiers
        .iter()
        .map(|tb| {
            let mut admitted: Vec<(f64, f64)> = Vec::new();
            let (mut cum_a, mut cum_r) = (0.0, 0.0);
            let (mut admitted_cumulative, mut refused_cumulative) = (Vec::new(), Vec::new());
            for e in history {
                let Event::Token { tier, n, admitted: ok, .. } = &e.ev else { continue };
                if tier != &tb.tier {
                    continue;
                }
                let t = seconds(e.t_us);
                if *ok {
                    cum_a += *n as f64;
                    admitted.push((t, *n as f64));
                    admitted_cumulative.push((t, cum_a));
                } else {
                    cum_r += *n as f64;
                    refused_cumulative.push((t, cum_r));
                }
            }
            let window_max = if admitted.is_empty() {
                Vec::new()
            } else {
                window_grid(end_s).into_iter().map(|w| (w, window_max(&admitted, w))).collect()
            };
            TierSeries {
                tier: tb.tier.clone(),
                rate_per_s: tb.rate_per_s,
                burst: tb.burst,
                admitted_cumulative,
                refused_cumulative,
                window_max,
            }
        })
        .collect()
}

/// Intervals during which a consumer had at least one partition paused (label `cN`).
pub fn pause_intervals(history: &[Entry], end_s: f64) -> Vec<Interval> {
    let mut paused: BTreeMap<u32, (f64, BTreeSet<&str>)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in history {
        let t = seconds(e.t_us);
        match &e.ev {
            Event::Pause { consumer, tps } => {
                let entry = paused.entry(*consumer).or_insert_with(|| (t, BTreeSet::new()));
                if entry.1.is_empty() {
                    entry.0 = t;
                }
                entry.1.extend(tps.iter().map(|s| &**s));
            }
            Event::Resume { consumer, tps } => {
                if let Some((start, set)) = paused.get_mut(consumer) {
                    let was_paused = !set.is_empty();
                    for tp in tps {
                        set.remove(&**tp);
                    }
                    if was_paused && set.is_empty() {
                        out.push(Interval { start_s: *start, end_s: t, label: format!("c{consumer}") });
                    }
                }
            }
            _ => {}
        }
    }
    for (c, (start, set)) in paused {
        if !set.is_empty() {
            out.push(Interval { start_s: start, end_s, label: format!("c{c}") });
        }
    }
    sort_intervals(&mut out);
    out
}

/// Rebalance intervals, from each `Rebalance` start to the next end (label `gen N`).
pub fn rebalance_intervals(history: &[Entry], end_s: f64) -> Vec<Interval> {
    let mut open: Option<(f64, u32)> = None;
    let mut out = Vec::new();
    for e in history {
        let Event::Rebalance { generation, edge, .. } = &e.ev else { continue };
        let t = seconds(e.t_us);
        match (edge, open) {
            (Edge::Start, None) => open = Some((t, *generation)),
            (Edge::Start, Some(_)) => {}
            (Edge::End, Some((start, _))) => {
                out.push(Interval { start_s: start, end_s: t, label: format!("gen {generation}") });
                open = None;
            }
            (Edge::End, None) => {}
        }
    }
    if let Some((start, g)) = open {
        out.push(Interval { start_s: start, end_s, label: format!("gen {g}") });
    }
    out
}

/// Fault intervals, matching each start to the next end of the same fault on the same target
/// (label `"fault target"`).
pub fn fault_intervals(history: &[Entry], end_s: f64) -> Vec<Interval> {
    let mut open: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut out = Vec::new();
    let label = |f: &str, tgt: &str| if tgt.is_empty() { f.to_string() } else { format!("{f} {tgt}") };
    for e in history {
        let Event::Fault { fault, target, edge } = &e.ev else { continue };
        let t = seconds(e.t_us);
        let key = (fault.as_str(), target.as_str());
        match edge {
            Edge::Start => {
                open.entry(key).or_insert(t);
            }
            Edge::End => {
                if let Some(start) = open.remove(&key) {
                    out.push(Interval { start_s: start, end_s: t, label: label(fault, target) });
                }
            }
        }
    }
    for ((f, tgt), start) in open {
        out.push(Interval { start_s: start, end_s, label: label(f, tgt) });
    }
    sort_intervals(&mut out);
    out
}

fn sort_intervals(v: &mut [Interval]) {
    v.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then_with(|| a.label.cmp(&b.label)));
}

/// At most about `max_points` points that keep the shape of `points` (sorted by x): the x span
/// is cut into `max_points / 2` equal slices and each slice keeps its lowest and highest point, in
/// x order, so peaks and troughs survive. Shorter series come back unchanged.
pub fn decimate(points: &[(f64, f64)], max_points: usize) -> Points {
    if points.len() <= max_points || max_points < 4 {
        return points.to_vec();
    }
    let slices = max_points / 2;
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let span = (x1 - x0).max(f64::MIN_POSITIVE);
    let mut out: Points = Vec::with_capacity(max_points + 2);
    let mut i = 0;
    while i < points.len() {
        let slice = (((points[i].0 - x0) / span * slices as f64) as usize).min(slices - 1);
        let (mut lo, mut hi) = (i, i);
        let mut j = i;
        while j < points.len() && (((points[j].0 - x0) / span * slices as f64) as usize).min(slices - 1) == slice {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(points[a]);
        if b != a {
            out.push(points[b]);
        }
        i = j;
    }
    out
}

/// Every `Phase` line, in order.
pub fn phases(history: &[Entry]) -> Vec<PhaseMark> {
    history
        .iter()
        .filter_map(|e| match e.ev {
            Event::Phase { phase } => Some(PhaseMark { t_s: seconds(e.t_us), phase }),
            _ => None,
        })
        .collect()
}

/// Peak buffer of any consumer, largest total lag, number of rebalances started.
pub fn summary(history: &[Entry]) -> Summary {
    let peak_buffer_records = buffer(history)
        .iter()
        .flat_map(|n| n.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let max_lag_records = lag(history).0.iter().map(|p| p.1).fold(0.0, f64::max);
    let rebalances = history
        .iter()
        .filter(|e| matches!(e.ev, Event::Rebalance { edge: Edge::Start, .. }))
        .count() as f64;
    Summary { peak_buffer_records, max_lag_records, rebalances }
}
