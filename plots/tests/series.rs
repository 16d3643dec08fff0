//! The series layer: hand-written histories with known answers, and snapshots of every series of
//! a fixed generated history (so a change in what is drawn shows in review).

mod gen;

use sluice_core::history::{Bounds, Edge, Entry, Event, Phase, TierBound};
use sluice_plots::charts::{self, distribution, stem_for};
use sluice_plots::draw::{figure_legend, tick_label};
use sluice_plots::series::{self, Interval, Points};
use sluice_plots::PlotError;

fn meta(bounds: Bounds) -> Event {
    Event::Meta(Box::new(sluice_core::history::Meta {
        schema: 1,
        source: "sim".into(),
        scenario: "hand".into(),
        seed: 7,
        topics: Vec::new(),
        producers: Vec::new(),
        consumers: 2,
        strategy: "none".into(),
        bounds,
        expect: Vec::new(),
        settings: Default::default(),
    }))
}

/// A history: a `Meta` at t = 0, then `events` at their times (in µs).
fn h(events: Vec<(u64, Event)>) -> Vec<Entry> {
    let mut v = vec![Entry { t_us: 0, ev: meta(Bounds::default()) }];
    v.extend(events.into_iter().map(|(t_us, ev)| Entry { t_us, ev }));
    v
}

fn lag(tp: &str, hw: u64, committed: u64) -> Event {
    Event::Lag { tp: tp.into(), hw, committed }
}

fn fault(name: &str, target: &str, edge: Edge) -> Event {
    Event::Fault { fault: name.into(), target: target.into(), edge }
}

fn iv(start_s: f64, end_s: f64, label: &str) -> Interval {
    Interval { start_s, end_s, label: label.into() }
}

fn tps(v: &[&str]) -> Vec<sluice_core::history::TpName> {
    v.iter().map(|&s| s.into()).collect()
}

#[test]
fn total_lag_sums_latest_samples_per_instant() {
    fn check(events: Vec<(u64, Event)>, expect_total: Points, expect_tps: &[&str]) {
        let (total, by_tp) = series::lag(&h(events));
        assert_eq!(total, expect_total);
        assert_eq!(by_tp.iter().map(|n| n.label.as_str()).collect::<Vec<_>>(), expect_tps);
    }
    check(Vec::new(), vec![], &[]);
    check(
        vec![(1_000_000, lag("a/0", 10, 0)), (1_000_000, lag("a/1", 7, 2)), (2_000_000, lag("a/0", 10, 8))],
        // at 2 s: a/0 now 2, a/1 still 5.
        vec![(1.0, 15.0), (2.0, 7.0)],
        &["a/0", "a/1"],
    );
    // committed beyond hw (a stale hw) counts as 0, not a wrap-around.
    check(vec![(500_000, lag("a/0", 3, 9))], vec![(0.5, 0.0)], &["a/0"]);
}

#[test]
fn window_max_is_the_densest_window() {
    fn check(adm: &[(f64, f64)], w: f64, expect: f64) {
        assert_eq!(series::window_max(adm, w), expect, "admissions {adm:?}, w = {w}");
    }
    check(&[], 1.0, 0.0);
    check(&[(0.0, 5.0)], 0.0, 5.0);
    // Two admissions at one instant count together even at w = 0.
    check(&[(1.0, 5.0), (1.0, 4.0), (3.0, 20.0)], 0.0, 20.0);
    check(&[(1.0, 5.0), (1.0, 4.0), (2.0, 3.0)], 0.0, 9.0);
    // The window is closed: [t, t + w].
    check(&[(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (2.5, 10.0)], 1.0, 11.0);
    check(&[(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (2.5, 10.0)], 0.4, 10.0);
    check(&[(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (2.5, 10.0)], 10.0, 13.0);
}

#[test]
fn intervals_from_edges() {
    let end = 10.0;
    // Pauses: a consumer is paused while any of its partitions is.
    let hist = h(vec![
        (1_000_000, Event::Pause { consumer: 0, tps: tps(&["a/0", "a/1"]) }),
        (2_000_000, Event::Resume { consumer: 0, tps: tps(&["a/0"]) }),
        (3_000_000, Event::Resume { consumer: 0, tps: tps(&["a/1"]) }),
        (4_000_000, Event::Pause { consumer: 1, tps: tps(&["a/2"]) }),
        (5_000_000, Event::Resume { consumer: 0, tps: tps(&["a/0"]) }),
    ]);
    assert_eq!(series::pause_intervals(&hist, end), vec![iv(1.0, 3.0, "c0"), iv(4.0, 10.0, "c1")]);

    // Faults: matched per (fault, target); one never healed closes at the end.
    let hist = h(vec![
        (1_000_000, fault("partition", "c1", Edge::Start)),
        (2_000_000, fault("crash", "c0", Edge::Start)),
        (2_500_000, fault("partition", "c0", Edge::End)),
        (3_000_000, fault("partition", "c1", Edge::End)),
        (4_000_000, fault("clock-skew", "", Edge::Start)),
    ]);
    assert_eq!(
        series::fault_intervals(&hist, end),
        vec![iv(1.0, 3.0, "partition c1"), iv(2.0, 10.0, "crash c0"), iv(4.0, 10.0, "clock-skew")]
    );

    // Rebalances: start to the next end; a stray end is ignored.
    let reb = |generation, edge| Event::Rebalance { generation, edge, protocol: "eager".into() };
    let hist = h(vec![
        (500_000, reb(1, Edge::End)),
        (1_000_000, reb(1, Edge::Start)),
        (1_500_000, reb(1, Edge::End)),
        (6_000_000, reb(2, Edge::Start)),
    ]);
    assert_eq!(series::rebalance_intervals(&hist, end), vec![iv(1.0, 1.5, "gen 1"), iv(6.0, 10.0, "gen 2")]);
}

#[test]
fn throughput_buckets_and_rates() {
    let ack = |count| Event::ProduceAck { producer: 0, tp: "a/0".into(), seq: 0, count, offset: 0 };
    let end = |ok| Event::ProcessEnd { consumer: 0, tp: "a/0".into(), offset: 0, count: 10, ok };
    let hist = h(vec![
        (100_000, ack(10)),
        (900_000, ack(10)),
        (1_200_000, end(6)),
        (2_000_000, Event::Phase { phase: Phase::End }),
    ]);
    let (w, inn, out) = series::throughput(&hist, series::end_s(&hist));
    assert_eq!(w, 0.1);
    assert_eq!(inn.len(), 20);
    // 10 records in the 0.1–0.2 s bucket is 100 records/s, centred at 0.15 s.
    assert!((inn[1].0 - 0.15).abs() < 1e-12 && (inn[1].1 - 100.0).abs() < 1e-9, "{:?}", inn[1]);
    assert!((out[12].1 - 60.0).abs() < 1e-9, "{:?}", out[12]);
    let total_in: f64 = inn.iter().map(|p| p.1 * w).sum();
    assert!((total_in - 20.0).abs() < 1e-9);
    // Nothing to count: no series at all (the chart is skipped, not drawn empty).
    let (_, inn, out) = series::throughput(&h(vec![]), 0.0);
    assert!(inn.is_empty() && out.is_empty());

    for (end_s, expect) in [(0.0, 0.1), (6.0, 0.1), (6.1, 0.2), (20.0, 0.5), (59.0, 1.0), (3600.0, 60.0)] {
        assert_eq!(series::bucket_width_s(end_s), expect, "end {end_s}");
    }
}

#[test]
fn bad_histories_are_rejected_with_a_reason() {
    fn check(history: Vec<Entry>, expect: &str) {
        let e = series::run_series(&history).unwrap_err();
        assert!(matches!(e, PlotError::BadInput(_)), "{e:?}");
        assert!(e.to_string().contains(expect), "{e}");
    }
    check(Vec::new(), "empty");
    check(vec![Entry { t_us: 0, ev: lag("a/0", 1, 0) }], "no meta line");
}

#[test]
fn distributions_and_labels() {
    let vals: Vec<f64> = (1..=100).map(|i| i as f64).collect();
    let d = distribution("lag", &vals).unwrap();
    assert_eq!((d.n, d.min, d.max), (100, 1.0, 100.0));
    assert!(d.p50 >= 50.0 && d.p50 <= 51.0, "{}", d.p50);
    assert!(d.p90 >= 90.0 && d.p90 <= 91.0, "{}", d.p90);
    assert!(d.p99 >= 99.0 && d.p99 <= 100.0, "{}", d.p99);
    assert_eq!(d.bins.len(), 10);
    assert_eq!(d.bins.iter().map(|b| b.2).sum::<u64>(), 100);
    assert_eq!(d.ecdf.last(), Some(&(100.0, 1.0)));
    // NaN is dropped; all-equal values still make one sensible bin range.
    let d = distribution("x", &[3.0, f64::NAN, 3.0]).unwrap();
    assert_eq!(d.n, 2);
    assert!(d.bins[0].0 < 3.0 && d.bins.last().unwrap().1 > 3.0);
    assert_eq!(distribution("x", &[f64::NAN]), None);

    for (v, expect) in [(0.0, "0"), (2.0, "2"), (0.25, "0.25"), (1.5, "1.5"), (1234.0, "1234"), (0.1 + 0.2, "0.3")] {
        assert_eq!(tick_label(&v), expect);
    }
    for (m, expect) in [("max lag (records)", "sweep_max_lag__records_"), ("p99-ms", "sweep_p99-ms")] {
        assert_eq!(stem_for(m), expect);
    }
}

#[test]
fn generated_histories_keep_their_token_bound_and_show_the_strategies() {
    for seed in 1..=4 {
        for strategy in ["none", "pause", "credit"] {
            let hist = gen::history(&gen::Options::new(strategy, seed));
            let s = series::run_series(&hist).unwrap();
            for t in &s.tiers {
                assert!(!t.window_max.is_empty(), "{strategy}/{seed}: tier {} has no admissions", t.tier);
                for &(w, m) in &t.window_max {
                    assert!(m <= t.burst + t.rate_per_s * w + 1e-6, "{strategy}/{seed} {}: {m} in {w} s", t.tier);
                }
            }
            let peak = series::summary(&hist).peak_buffer_records;
            let bound = gen::BUFFER_RECORDS_MAX as f64;
            match strategy {
                "none" => assert!(peak > bound, "none/{seed}: peak {peak} should overrun {bound}"),
                _ => assert!(peak <= bound, "{strategy}/{seed}: peak {peak} over {bound}"),
            }
        }
    }
}

/// One block per series: its name, then `x:y` pairs ten to a line (3 decimals at most).
fn describe_series(s: &series::RunSeries) -> String {
    fn num(v: f64) -> String {
        sluice_plots::draw::tick_label(&v)
    }
    fn block(out: &mut String, name: &str, pts: &Points) {
        out.push_str(&format!("{name} ({} points)\n", pts.len()));
        for chunk in pts.chunks(10) {
            let line: Vec<String> = chunk.iter().map(|(x, y)| format!("{}:{}", num(*x), num(*y))).collect();
            out.push_str(&format!("  {}\n", line.join(" ")));
        }
    }
    let mut out = format!("{}\nend_s {}\nbounds {}\n", s.info.caption(), s.end_s, serde_json::to_string(&s.bounds).unwrap());
    block(&mut out, "lag total", &s.lag_total);
    for n in &s.lag_by_tp {
        block(&mut out, &format!("lag {}", n.label), &n.points);
    }
    for n in &s.buffer_by_consumer {
        block(&mut out, &format!("buffer {}", n.label), &n.points);
    }
    for n in &s.credits_by_consumer {
        block(&mut out, &format!("credits {}", n.label), &n.points);
    }
    block(&mut out, &format!("throughput in ({} s buckets)", s.throughput_bucket_s), &s.throughput_in);
    block(&mut out, "throughput out", &s.throughput_out);
    for t in &s.tiers {
        out.push_str(&format!("tier {} r={} b={}\n", t.tier, t.rate_per_s, t.burst));
        // Cumulative series have a point per admission: every tenth keeps the shape reviewable.
        let every_tenth: Points = t.admitted_cumulative.iter().step_by(10).copied().collect();
        block(&mut out, "  admitted (every 10th)", &every_tenth);
        block(&mut out, "  refused", &t.refused_cumulative);
        block(&mut out, "  window max", &t.window_max);
    }
    for (name, v) in [("pauses", &s.pauses), ("rebalances", &s.rebalances), ("faults", &s.faults)] {
        let items: Vec<String> = v.iter().map(|i| format!("[{}, {}] {}", num(i.start_s), num(i.end_s), i.label)).collect();
        out.push_str(&format!("{name}: {}\n", items.join("; ")));
    }
    let phases: Vec<String> = s.phases.iter().map(|p| format!("{:?}@{}", p.phase, num(p.t_s))).collect();
    out.push_str(&format!("phases: {}\n", phases.join(" ")));
    out
}

#[test]
fn snapshot_run_series() {
    for strategy in ["credit", "pause"] {
        let hist = gen::history(&gen::Options::new(strategy, 1));
        let s = series::run_series(&hist).unwrap();
        insta::assert_snapshot!(format!("run_series_{strategy}_seed1"), describe_series(&s));
    }
}

/// What each picture shows: title, panels and legend entries, and what was skipped and why.
fn describe(plan: &charts::Plan) -> Vec<String> {
    let mut out = Vec::new();
    for f in &plan.figures {
        let legend: Vec<String> = figure_legend(f).into_iter().map(|i| i.label).collect();
        out.push(format!("{} [{} panel(s)] {} | {}", f.stem, f.panels.len(), f.title, legend.join("; ")));
    }
    for s in &plan.skipped {
        out.push(format!("skipped {}: {}", s.chart, s.reason));
    }
    out
}

#[test]
fn snapshot_chart_plans() {
    let mut all = Vec::new();
    let mut runs = Vec::new();
    for (strategy, tiers) in [("none", false), ("pause", true), ("credit", true)] {
        let mut o = gen::Options::new(strategy, 1);
        o.tiers = tiers;
        let hist = gen::history(&o);
        all.push(format!("== run {strategy} (tiers: {tiers})"));
        all.extend(describe(&charts::run_plan(&series::run_series(&hist).unwrap())));
        runs.push(charts::compare_run(strategy, &hist).unwrap());
    }
    all.push("== compare".into());
    all.extend(describe(&charts::compare_plan(&runs)));
    all.push("== sweep".into());
    let sweep = vec![
        ("max lag (records)".to_string(), (0..50).map(|i| (i * 37 % 50) as f64).collect()),
        ("nothing".to_string(), vec![f64::NAN]),
    ];
    all.extend(describe(&charts::sweep_plan(&sweep)));
    insta::assert_snapshot!("chart_plans", all.join("\n"));
}

#[test]
fn snapshot_summaries() {
    let s: Vec<(String, series::Summary)> = ["none", "pause", "credit"]
        .iter()
        .map(|st| (st.to_string(), series::summary(&gen::history(&gen::Options::new(st, 1)))))
        .collect();
    insta::assert_compact_json_snapshot!("summaries_seed1", s);
}

#[test]
fn token_series_follow_declared_tiers_only() {
    let mut hist = h(vec![
        (1_000_000, Event::Token { consumer: 0, tier: "global".into(), n: 5, admitted: true }),
        (1_000_000, Event::Token { consumer: 0, tier: "undeclared".into(), n: 9, admitted: true }),
        (2_000_000, Event::Token { consumer: 1, tier: "global".into(), n: 3, admitted: false }),
        (3_000_000, Event::Token { consumer: 1, tier: "global".into(), n: 4, admitted: true }),
    ]);
    let tiers = vec![TierBound { tier: "global".into(), rate_per_s: 1.0, burst: 5.0 }];
    hist[0].ev = meta(Bounds { rate_tiers: tiers.clone(), ..Bounds::default() });
    let t = series::token_tiers(&hist, &tiers, 4.0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].admitted_cumulative, vec![(1.0, 5.0), (3.0, 9.0)]);
    assert_eq!(t[0].refused_cumulative, vec![(2.0, 3.0)]);
    assert_eq!(t[0].window_max.first(), Some(&(0.0, 5.0)));
    assert_eq!(t[0].window_max.last(), Some(&(4.0, 9.0)));
}

#[test]
fn decimation_keeps_peaks_and_short_series() {
    fn check(n: usize, max: usize, expect_len_at_most: usize) {
        // A sawtooth with one spike: the spike must survive.
        let mut pts: Points = (0..n).map(|i| (i as f64, (i % 10) as f64)).collect();
        if n > 0 {
            pts[n / 2].1 = 1000.0;
        }
        let d = series::decimate(&pts, max);
        assert!(d.len() <= expect_len_at_most, "n={n} max={max}: {} points", d.len());
        if n <= max {
            assert_eq!(d, pts);
        }
        if n > 0 {
            assert!(d.iter().any(|p| p.1 == 1000.0), "n={n}: the spike was lost");
            assert!(d.windows(2).all(|w| w[0].0 <= w[1].0), "x order broken");
        }
    }
    check(0, 100, 0);
    check(50, 100, 50);
    check(100_000, 2000, 2000);
    check(100_001, 100, 100);
}

/// Stalls handed in by a checker shade the lag chart only: partitions stalled over the same span
/// share one band naming them all, a different span is its own band, and the legend names them.
#[test]
fn stalls_shade_the_lag_chart_one_band_per_span() {
    let hist = h(vec![
        (1_000_000, lag("a/0", 10, 0)),
        (1_000_000, lag("a/1", 10, 0)),
        (60_000_000, lag("a/0", 900, 0)),
        (60_000_000, lag("a/1", 900, 900)),
    ]);
    let mut s = series::run_series(&hist).unwrap();
    let bands_of = |plan: &charts::Plan, stem: &str| -> Vec<(f64, f64, Option<String>)> {
        let f = plan.figures.iter().find(|f| f.stem == stem).expect("figure drawn");
        let sluice_plots::draw::Panel::Line(c) = &f.panels[0] else { panic!("a line chart") };
        c.bands
            .iter()
            .filter(|b| b.kind == sluice_plots::draw::BandKind::Stall)
            .map(|b| (b.x0, b.x1, b.text.clone()))
            .collect()
    };
    assert!(bands_of(&charts::run_plan(&s), "lag").is_empty(), "no stalls handed in, none drawn");
    s.stalls = vec![iv(30.0, 91.0, "a/0 (c1)"), iv(12.0, 20.0, "a/2"), iv(30.0, 91.0, "a/1 (c1)")];
    let plan = charts::run_plan(&s);
    assert_eq!(
        bands_of(&plan, "lag"),
        vec![
            (12.0, 20.0, Some("stalled: a/2".to_string())),
            (30.0, 91.0, Some("stalled: a/0 (c1), a/1 (c1)".to_string())),
        ]
    );
    for f in &plan.figures {
        if f.stem != "lag" {
            if let sluice_plots::draw::Panel::Line(c) = &f.panels[0] {
                assert!(c.bands.iter().all(|b| b.kind != sluice_plots::draw::BandKind::Stall), "{}", f.stem);
            }
        }
    }
    let lag_fig = plan.figures.iter().find(|f| f.stem == "lag").unwrap();
    assert!(figure_legend(lag_fig).iter().any(|i| i.label == "stalled partition"));
}
