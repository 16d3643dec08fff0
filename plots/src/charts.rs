//! From series to chart descriptions: which lines, bounds, bands and marks each picture shows, and
//! which pictures are skipped for lack of data (with the reason).

use statrs::statistics::{Data, OrderStatistics};

use crate::draw::{
    colour, Band, BandKind, Bar, BarChart, Figure, HistChart, Line, LineChart, LineStyle, Panel, VMark,
    BOUND_COLOUR, MARK_COLOUR, SIZE_ONE, SIZE_TWO, TOTAL_COLOUR,
};
use crate::series::{self, Named, Points, RunSeries, Summary};

/// A picture not drawn, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub chart: String,
    pub reason: String,
}

/// The pictures to draw for a set of series, and those left out.
#[derive(Debug, Default)]
pub struct Plan {
    pub figures: Vec<Figure>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    fn skip(&mut self, chart: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped { chart: chart.to_string(), reason: reason.into() });
    }
}

const TIME: &str = "time since start (s)";

fn one(stem: &str, chart: LineChart) -> Figure {
    Figure { stem: stem.to_string(), title: chart.title.clone(), size: SIZE_ONE, panels: vec![Panel::Line(chart)] }
}

fn bound_line(label: String, y: f64, x0: f64, x1: f64) -> Line {
    Line { label: Some(label), points: vec![(x0, y), (x1, y)], style: LineStyle::Dashed, colour: BOUND_COLOUR }
}

/// Pause, rebalance and fault bands and the liveness mark shared by every time chart of a run.
fn context(s: &RunSeries) -> (Vec<Band>, Vec<VMark>) {
    let mut bands = Vec::new();
    for p in &s.pauses {
        bands.push(Band { x0: p.start_s, x1: p.end_s, kind: BandKind::Pause, text: None });
    }
    for r in &s.rebalances {
        bands.push(Band { x0: r.start_s, x1: r.end_s, kind: BandKind::Rebalance, text: None });
    }
    for f in &s.faults {
        bands.push(Band { x0: f.start_s, x1: f.end_s, kind: BandKind::Fault, text: Some(f.label.clone()) });
    }
    let marks = s
        .liveness_start_s()
        .map(|t| VMark { x: t, label: format!("liveness phase starts ({t:.1} s)"), colour: MARK_COLOUR })
        .into_iter()
        .collect();
    (bands, marks)
}

/// Most stall bands drawn on the lag chart (each one a span shared by one or more partitions).
pub const STALL_BANDS_MAX: usize = 24;

/// One band per stalled span, the partitions stalled over the same span named together (a member
/// that stops stalls all its partitions at once), earliest first.
fn stall_bands(stalls: &[series::Interval]) -> Vec<Band> {
    let mut spans: Vec<(f64, f64, Vec<&str>)> = Vec::new();
    for st in stalls {
        match spans.iter_mut().find(|(a, b, _)| (a - st.start_s).abs() < 0.05 && (b - st.end_s).abs() < 0.05) {
            Some(span) => span.2.push(&st.label),
            None => spans.push((st.start_s, st.end_s, vec![&st.label])),
        }
    }
    spans.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let more = spans.len().saturating_sub(STALL_BANDS_MAX);
    let mut bands: Vec<Band> = spans
        .into_iter()
        .take(STALL_BANDS_MAX)
        .map(|(x0, x1, labels)| Band { x0, x1, kind: BandKind::Stall, text: Some(format!("stalled: {}", labels.join(", "))) })
        .collect();
    if more > 0 {
        if let Some(last) = bands.last_mut() {
            last.text = last.text.take().map(|t| format!("{t} (+{more} more spans not drawn)"));
        }
    }
    bands
}

fn per_consumer_lines(v: &[Named]) -> Vec<Line> {
    v.iter()
        .enumerate()
        .map(|(i, n)| Line {
            label: Some(n.label.clone()),
            points: n.points.clone(),
            style: LineStyle::Thick,
            colour: colour(i),
        })
        .collect()
}

/// Most points drawn per line; longer series are decimated keeping their peaks
/// ([`series::decimate`]), so pictures of long real runs stay small.
pub const LINE_POINTS_MAX: usize = 2000;

fn decimate_lines(plan: &mut Plan) {
    for f in &mut plan.figures {
        for p in &mut f.panels {
            if let Panel::Line(c) = p {
                for l in &mut c.lines {
                    l.points = series::decimate(&l.points, LINE_POINTS_MAX);
                }
            }
        }
    }
}

/// Every per-run picture of `s`.
pub fn run_plan(s: &RunSeries) -> Plan {
    let mut plan = run_plan_full(s);
    decimate_lines(&mut plan);
    plan
}

fn run_plan_full(s: &RunSeries) -> Plan {
    let mut plan = Plan::default();
    let cap = s.info.caption();
    let x = (0.0, s.end_s);
    let (bands, marks) = context(s);
    let chart = |title: &str, y_desc: &str, lines: Vec<Line>| LineChart {
        title: format!("{title} — {cap}"),
        x_desc: TIME.to_string(),
        y_desc: y_desc.to_string(),
        x_range: x,
        lines,
        bands: bands.clone(),
        marks: marks.clone(),
    };

    // Lag.
    if s.lag_total.is_empty() {
        plan.skip("lag", "no lag samples in the history");
    } else {
        let mut lines = vec![Line {
            label: Some("total lag".into()),
            points: s.lag_total.clone(),
            style: LineStyle::Thick,
            colour: TOTAL_COLOUR,
        }];
        for (i, n) in s.lag_by_tp.iter().enumerate() {
            lines.push(Line { label: Some(n.label.clone()), points: n.points.clone(), style: LineStyle::Thin, colour: colour(i) });
        }
        if let Some(live) = s.liveness_start_s() {
            let from = live + s.bounds.recovery_deadline_ms as f64 / 1000.0;
            if from < s.end_s {
                lines.push(bound_line(
                    format!(
                        "lag_ok_records = {} (from liveness + {} ms)",
                        s.bounds.lag_ok_records, s.bounds.recovery_deadline_ms
                    ),
                    s.bounds.lag_ok_records as f64,
                    from,
                    s.end_s,
                ));
            }
        }
        let mut c = chart("Consumer lag", "lag (records)", lines);
        c.bands.extend(stall_bands(&s.stalls));
        plan.figures.push(one("lag", c));
    }

    // Buffer occupancy.
    if s.buffer_by_consumer.is_empty() {
        plan.skip("buffer", "no buffer samples in the history");
    } else {
        let mut lines = per_consumer_lines(&s.buffer_by_consumer);
        if s.bounds.buffer_records_max > 0 {
            lines.push(bound_line(
                format!("bound buffer_records_max = {}", s.bounds.buffer_records_max),
                s.bounds.buffer_records_max as f64,
                0.0,
                s.end_s,
            ));
        }
        plan.figures.push(one("buffer", chart("Buffer occupancy per consumer", "buffered (records)", lines)));
    }
    if s.buffer_mib_by_consumer.is_empty() {
        plan.skip("buffer_bytes", "no buffer sample carries a byte count");
    } else {
        let mut lines = per_consumer_lines(&s.buffer_mib_by_consumer);
        if s.bounds.buffer_bytes_max > 0 {
            let mib = s.bounds.buffer_bytes_max as f64 / crate::series::MIB;
            lines.push(bound_line(format!("bound buffer_bytes_max = {mib:.1} MiB"), mib, 0.0, s.end_s));
        }
        plan.figures.push(one("buffer_bytes", chart("Buffer bytes per consumer", "buffered (MiB)", lines)));
    }

    // Throughput.
    if s.throughput_in.is_empty() && s.throughput_out.is_empty() {
        plan.skip("throughput", "no produce acks and no processing in the history");
    } else {
        let w = s.throughput_bucket_s;
        let lines = vec![
            Line { label: Some(format!("in: produced (acked), {w} s buckets")), points: s.throughput_in.clone(), style: LineStyle::Thick, colour: colour(0) },
            Line { label: Some(format!("out: processed ok, {w} s buckets")), points: s.throughput_out.clone(), style: LineStyle::Thick, colour: colour(2) },
        ];
        plan.figures.push(one("throughput", chart("Throughput in and out", "throughput (records/s)", lines)));
    }

    // Credits.
    let any_credit = s.credits_by_consumer.iter().any(|n| n.points.iter().any(|p| p.1 > 0.0));
    if s.credits_by_consumer.is_empty() || (s.bounds.credits_max == 0 && !any_credit) {
        plan.skip("credits", format!("no credits outstanding (strategy `{}`, credits_max = 0)", s.info.strategy));
    } else {
        let mut lines = per_consumer_lines(&s.credits_by_consumer);
        if s.bounds.credits_max > 0 {
            lines.push(bound_line(
                format!("bound credits_max = {}", s.bounds.credits_max),
                s.bounds.credits_max as f64,
                0.0,
                s.end_s,
            ));
        }
        plan.figures.push(one("credits", chart("Credits outstanding per consumer", "credits outstanding (records)", lines)));
    }

    // Tokens.
    if s.tiers.is_empty() {
        plan.skip("tokens", "no rate-limit tiers declared");
    } else if s.tiers.iter().all(|t| t.admitted_cumulative.is_empty() && t.refused_cumulative.is_empty()) {
        plan.skip("tokens", "rate-limit tiers declared but no token events in the history");
    } else {
        plan.figures.push(token_figure(s, &bands, &marks));
    }
    plan
}

fn token_figure(s: &RunSeries, bands: &[Band], marks: &[VMark]) -> Figure {
    let mut over_time = Vec::new();
    let mut windows = Vec::new();
    let w_max = s.tiers.iter().flat_map(|t| t.window_max.last().map(|p| p.0)).fold(0.0, f64::max);
    for (i, t) in s.tiers.iter().enumerate() {
        let col = colour(i);
        let total = t.admitted_cumulative.last().map(|p| p.1).unwrap_or(0.0);
        over_time.push(Line {
            label: Some(format!("{}: admitted ({total:.0})", t.tier)),
            points: t.admitted_cumulative.clone(),
            style: LineStyle::Thick,
            colour: col,
        });
        if let Some(last) = t.refused_cumulative.last() {
            over_time.push(Line {
                label: Some(format!("{}: refused ({:.0})", t.tier, last.1)),
                points: t.refused_cumulative.clone(),
                style: LineStyle::Thin,
                colour: col,
            });
        }
        windows.push(Line {
            label: Some(format!("{}: most admitted in a window", t.tier)),
            points: t.window_max.clone(),
            style: LineStyle::Thick,
            colour: col,
        });
        windows.push(Line {
            label: Some(format!("{} bound b + r·w = {} + {}·w", t.tier, t.burst, t.rate_per_s)),
            points: vec![(0.0, t.burst), (w_max, t.burst + t.rate_per_s * w_max)],
            style: LineStyle::Dashed,
            colour: if i == 0 { BOUND_COLOUR } else { col },
        });
    }
    let left = LineChart {
        title: "Cumulative admissions per tier".into(),
        x_desc: TIME.into(),
        y_desc: "records since start".into(),
        x_range: (0.0, s.end_s),
        lines: over_time,
        bands: bands.to_vec(),
        marks: marks.to_vec(),
    };
    let right = LineChart {
        title: "R1: most admitted in any window vs b + r·w".into(),
        x_desc: "window length w (s)".into(),
        y_desc: "records admitted in window".into(),
        x_range: (0.0, w_max),
        lines: windows,
        bands: Vec::new(),
        marks: Vec::new(),
    };
    Figure {
        stem: "tokens".into(),
        title: format!("Token admissions against the rate bound — {}", s.info.caption()),
        size: SIZE_TWO,
        panels: vec![Panel::Line(left), Panel::Line(right)],
    }
}

/// One labelled run prepared for comparison.
pub struct CompareRun {
    pub label: String,
    pub series: RunSeries,
    pub buffer_max: Points,
    pub summary: Summary,
}

/// Run `i` of an overlay: 6 px for the first, 1 px narrower for each next, at least 2.
fn overlay_style(i: usize) -> LineStyle {
    LineStyle::Overlay(6u32.saturating_sub(i as u32).max(2))
}

/// Overlays of several runs and a bar chart of their summary numbers.
pub fn compare_plan(runs: &[CompareRun]) -> Plan {
    let mut plan = compare_plan_full(runs);
    decimate_lines(&mut plan);
    plan
}

fn compare_plan_full(runs: &[CompareRun]) -> Plan {
    let mut plan = Plan::default();
    let end = runs.iter().map(|r| r.series.end_s).fold(0.0, f64::max);
    let scenarios: Vec<&str> = {
        let mut v: Vec<&str> = runs.iter().map(|r| r.series.info.scenario.as_str()).collect();
        v.dedup();
        v
    };
    let about = scenarios.join(", ");
    let overlay = |title: &str, y_desc: &str, lines: Vec<Line>| LineChart {
        title: format!("{title} — {about}"),
        x_desc: TIME.into(),
        y_desc: y_desc.into(),
        x_range: (0.0, end),
        lines,
        bands: Vec::new(),
        marks: Vec::new(),
    };

    // Buffer occupancy against the bound(s).
    let mut lines: Vec<Line> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if !r.buffer_max.is_empty() {
            lines.push(Line { label: Some(r.label.clone()), points: r.buffer_max.clone(), style: overlay_style(i), colour: colour(i) });
        }
    }
    if lines.is_empty() {
        plan.skip("compare_buffer", "no run has buffer samples");
    } else {
        let mut bounds: Vec<u64> = runs.iter().map(|r| r.series.bounds.buffer_records_max).filter(|b| *b > 0).collect();
        bounds.sort_unstable();
        bounds.dedup();
        for b in bounds {
            lines.push(bound_line(format!("bound buffer_records_max = {b}"), b as f64, 0.0, end));
        }
        plan.figures.push(one("compare_buffer", overlay("Largest consumer buffer per run", "buffered (records, max over consumers)", lines)));
    }

    // Total lag.
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.series.lag_total.is_empty())
        .map(|(i, r)| Line { label: Some(r.label.clone()), points: r.series.lag_total.clone(), style: overlay_style(i), colour: colour(i) })
        .collect();
    if lines.is_empty() {
        plan.skip("compare_lag", "no run has lag samples");
    } else {
        plan.figures.push(one("compare_lag", overlay("Total lag per run", "lag (records)", lines)));
    }

    // Processing throughput.
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.series.throughput_out.is_empty())
        .map(|(i, r)| Line {
            label: Some(format!("{} ({} s buckets)", r.label, r.series.throughput_bucket_s)),
            points: r.series.throughput_out.clone(),
            style: overlay_style(i),
            colour: colour(i),
        })
        .collect();
    if lines.is_empty() {
        plan.skip("compare_throughput", "no run processed anything");
    } else {
        plan.figures.push(one("compare_throughput", overlay("Records processed per second per run", "throughput out (records/s)", lines)));
    }

    // Summary bars: one panel per number, one bar per run.
    let bars = |f: &dyn Fn(&Summary) -> f64| -> Vec<Bar> {
        runs.iter().enumerate().map(|(i, r)| Bar { label: r.label.clone(), value: f(&r.summary), colour: colour(i) }).collect()
    };
    plan.figures.push(Figure {
        stem: "compare_summary".into(),
        title: format!("Summary per run — {about}"),
        size: SIZE_TWO,
        panels: vec![
            Panel::Bars(BarChart { title: "Peak buffer".into(), y_desc: "records".into(), bars: bars(&|s| s.peak_buffer_records) }),
            Panel::Bars(BarChart { title: "Max total lag".into(), y_desc: "records".into(), bars: bars(&|s| s.max_lag_records) }),
            Panel::Bars(BarChart { title: "Rebalances".into(), y_desc: "rebalances (count)".into(), bars: bars(&|s| s.rebalances) }),
        ],
    });
    plan
}

/// Distribution of one metric across runs (e.g. seeds): percentiles and histogram bins.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Distribution {
    pub metric: String,
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// `(lo, hi, count)`.
    pub bins: Vec<(f64, f64, u64)>,
    /// Empirical CDF as a step line: `(x, fraction of values ≤ x)`.
    pub ecdf: Points,
}

/// Most histogram bins.
pub const BINS_MAX: usize = 30;
/// Fewest histogram bins (when there are at least this many values).
pub const BINS_MIN: usize = 5;

/// Percentiles (statrs' order statistics), √n bins clamped to `BINS_MIN..=BINS_MAX`, and the
/// empirical CDF. Non-finite values are dropped; `None` when nothing is left.
pub fn distribution(metric: &str, values: &[f64]) -> Option<Distribution> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let (min, max) = (v[0], v[n - 1]);
    let mut data = Data::new(v.clone());
    let (p50, p90, p99) = (data.percentile(50), data.percentile(90), data.percentile(99));
    let bins_n = ((n as f64).sqrt().ceil() as usize).clamp(BINS_MIN.min(n), BINS_MAX);
    let (lo, width) = if max > min {
        (min, (max - min) / bins_n as f64)
    } else {
        (min - 0.5, 1.0 / bins_n as f64)
    };
    let mut counts = vec![0u64; bins_n];
    for x in &v {
        let i = (((x - lo) / width).floor() as usize).min(bins_n - 1);
        counts[i] += 1;
    }
    let bins = counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (lo + width * i as f64, lo + width * (i + 1) as f64, c))
        .collect();
    let mut ecdf: Points = vec![(min, 0.0)];
    for (i, x) in v.iter().enumerate() {
        let before = i as f64 / n as f64;
        let after = (i + 1) as f64 / n as f64;
        ecdf.push((*x, before));
        ecdf.push((*x, after));
    }
    Some(Distribution { metric: metric.to_string(), n, min, max, p50, p90, p99, bins, ecdf })
}

/// A file-name-safe form of a metric name.
pub fn stem_for(metric: &str) -> String {
    let s: String = metric
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    format!("sweep_{s}")
}

/// Histogram and empirical CDF per metric, percentiles marked.
pub fn sweep_plan(values: &[(String, Vec<f64>)]) -> Plan {
    let mut plan = sweep_plan_full(values);
    decimate_lines(&mut plan);
    plan
}

fn sweep_plan_full(values: &[(String, Vec<f64>)]) -> Plan {
    let mut plan = Plan::default();
    for (metric, vals) in values {
        let stem = stem_for(metric);
        let Some(d) = distribution(metric, vals) else {
            plan.skip(&stem, format!("no finite values for `{metric}`"));
            continue;
        };
        let marks = |_: ()| {
            vec![
                VMark { x: d.p50, label: format!("p50 = {}", crate::draw::format_value(d.p50)), colour: colour(2) },
                VMark { x: d.p90, label: format!("p90 = {}", crate::draw::format_value(d.p90)), colour: colour(1) },
                VMark { x: d.p99, label: format!("p99 = {}", crate::draw::format_value(d.p99)), colour: BOUND_COLOUR },
            ]
        };
        let hist = HistChart { title: "Histogram".into(), x_desc: metric.clone(), bins: d.bins.clone(), marks: marks(()) };
        let pad = if d.max > d.min { (d.max - d.min) * 0.02 } else { 0.5 };
        let cdf = LineChart {
            title: "Empirical CDF".into(),
            x_desc: metric.clone(),
            y_desc: "fraction of runs ≤ x".into(),
            x_range: (d.min - pad, d.max + pad),
            lines: vec![Line { label: Some(format!("ECDF ({} runs)", d.n)), points: d.ecdf.clone(), style: LineStyle::Thick, colour: colour(0) }],
            bands: Vec::new(),
            marks: marks(()),
        };
        plan.figures.push(Figure {
            stem,
            title: format!("Distribution of {metric} across {} runs", d.n),
            size: SIZE_TWO,
            panels: vec![Panel::Hist(hist), Panel::Line(cdf)],
        });
    }
    plan
}

pub fn compare_run(label: &str, history: &[sluice_core::history::Entry]) -> Result<CompareRun, crate::PlotError> {
    Ok(CompareRun {
        label: label.to_string(),
        series: series::run_series(history)?,
        buffer_max: series::buffer_max_over_consumers(history),
        summary: series::summary(history),
    })
}
