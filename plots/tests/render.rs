//! Rendering: pictures are written, are not blank, show their bound lines and fault bands, and the
//! SVGs carry the expected series, legend labels and titles. Charts without data are skipped.

mod gen;

use std::path::{Path, PathBuf};

use image::RgbImage;
use sluice_core::history::Entry;
use sluice_plots::{render_compare, render_run_report, render_sweep_report, write_index, PlotError};

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sluice-plots").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn history(strategy: &'static str, tiers: bool) -> Vec<Entry> {
    let mut o = gen::Options::new(strategy, 1);
    o.tiers = tiers;
    gen::history(&o)
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

fn load(path: &Path) -> RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

/// Pixels in rows `rows` matching `pred`.
fn count(img: &RgbImage, rows: std::ops::Range<u32>, pred: impl Fn([u8; 3]) -> bool) -> usize {
    img.enumerate_pixels().filter(|(_, y, p)| rows.contains(y) && pred(p.0)).count()
}

fn near(c: [u8; 3], target: [u8; 3], tol: i32) -> bool {
    c.iter().zip(target).all(|(a, b)| (*a as i32 - b as i32).abs() <= tol)
}

const WHITE: [u8; 3] = [255, 255, 255];
/// Dark, grey-ish pixels: text and axes (anti-aliased glyph cores).
fn ink(c: [u8; 3]) -> bool {
    c.iter().all(|v| *v < 110)
}
const BOUND_RED: [u8; 3] = [214, 39, 40];
/// The fault band: red (200, 40, 40) at 14 % over white.
const FAULT_BAND: [u8; 3] = [247, 225, 225];
/// The rebalance band: (240, 170, 20) at 25 % over white.
const REBALANCE_BAND: [u8; 3] = [251, 233, 196];
const MARK_GREY: [u8; 3] = [90, 90, 90];

/// A PNG is not blank: it has the stated size, ink in the title rows, and more than a background
/// and one series colour.
fn check_png(path: &Path, size: (u32, u32)) -> RgbImage {
    let img = load(path);
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let title_ink = count(&img, 0..40, ink);
    assert!(title_ink > 150, "{}: only {title_ink} text pixels in the title rows", path.display());
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).filter(|c| *c != WHITE).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 50, "{}: only {} distinct colours", path.display(), colours.len());
    let non_bg = img.pixels().filter(|p| p.0 != WHITE).count();
    assert!(non_bg > 5_000, "{}: {non_bg} non-background pixels", path.display());
    img
}

/// The contents of every `<text>` element, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text").skip(1).filter_map(|s| {
        let body = &s[s.find('>')? + 1..];
        Some(body[..body.find("</text>")?].trim().to_string())
    }).collect()
}

/// An SVG has at least `lines` polylines, and for every needle a `<text>` containing it (or, for
/// a needle starting with `=`, a `<text>` that is exactly the rest).
fn check_svg(path: &Path, lines: usize, texts: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap();
    let polylines = svg.matches("<polyline").count();
    assert!(polylines >= lines, "{}: {polylines} polylines, expected ≥ {lines}", path.display());
    let found = svg_texts(&svg);
    for t in texts {
        let ok = match t.strip_prefix('=') {
            Some(exact) => found.iter().any(|f| f == exact),
            None => found.iter().any(|f| f.contains(t)),
        };
        assert!(ok, "{}: no text {t:?} among {found:?}", path.display());
    }
}

#[test]
fn run_pictures_are_drawn_and_readable() {
    let dir = out_dir("run-credit");
    let r = render_run_report(&history("credit", true), &dir).unwrap();
    let stems = ["lag", "buffer", "buffer_bytes", "throughput", "credits", "tokens"];
    let expect: Vec<String> = stems.iter().flat_map(|s| [format!("{s}.png"), format!("{s}.svg")]).collect();
    assert_eq!(names(&r.files), expect);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);

    // (stem, size, colour that must appear, how often, what it is)
    type Case = (&'static str, (u32, u32), [u8; 3], usize, &'static str);
    let table: &[Case] = &[
        ("lag", (1300, 500), FAULT_BAND, 5_000, "fault band"),
        ("lag", (1300, 500), REBALANCE_BAND, 2_000, "rebalance band"),
        ("lag", (1300, 500), MARK_GREY, 300, "liveness mark"),
        ("lag", (1300, 500), BOUND_RED, 300, "lag_ok bound"),
        ("buffer", (1300, 500), BOUND_RED, 1_000, "buffer bound"),
        ("buffer", (1300, 500), FAULT_BAND, 5_000, "fault band"),
        ("buffer_bytes", (1300, 500), BOUND_RED, 1_000, "byte bound"),
        ("credits", (1300, 500), BOUND_RED, 1_000, "credits bound"),
        ("throughput", (1300, 500), FAULT_BAND, 5_000, "fault band"),
        ("tokens", (1750, 560), BOUND_RED, 1_000, "b + r·w bound"),
    ];
    for &(stem, size, colour, at_least, what) in table {
        let img = check_png(&dir.join(format!("{stem}.png")), size);
        let n = count(&img, 0..size.1, |c| near(c, colour, 3));
        assert!(n >= at_least, "{stem}.png: {n} pixels of the {what}, expected ≥ {at_least}");
    }

    let title = "gen-slow-and-partition · credit · seed 1 · sim";
    check_svg(&dir.join("lag.svg"), 6, &["Consumer lag", title, "lag (records)", "time since start (s)", "=total lag", "=orders/0", "=orders/3", "lag_ok_records = 100", "liveness phase starts (11.0 s)", "=fault", "=slow-processing c0", "=partition c1", "=rebalancing"]);
    check_svg(&dir.join("buffer.svg"), 3, &["Buffer occupancy per consumer", title, "buffered (records)", "=c0", "=c1", "bound buffer_records_max = 300"]);
    check_svg(&dir.join("buffer_bytes.svg"), 3, &["Buffer bytes per consumer", title, "buffered (MiB)", "=c0", "=c1", "bound buffer_bytes_max = 0.3 MiB"]);
    check_svg(&dir.join("throughput.svg"), 2, &["Throughput in and out", "throughput (records/s)", "in: produced (acked), 0.5 s buckets", "out: processed ok"]);
    check_svg(&dir.join("credits.svg"), 3, &["Credits outstanding per consumer", "credits outstanding (records)", "bound credits_max = 300"]);
    check_svg(&dir.join("tokens.svg"), 6, &["Token admissions against the rate bound", "Cumulative admissions per tier", "R1: most admitted in any window vs b + r·w", "window length w (s)", "global: admitted", "consumer:c0: refused", "global bound b + r·w = 150 + 520·w"]);
}

#[test]
fn charts_without_data_are_skipped_not_drawn_empty() {
    // No rate tiers, no credits: no token chart, no credit chart.
    let dir = out_dir("run-none");
    let r = render_run_report(&history("none", false), &dir).unwrap();
    assert_eq!(
        names(&r.files),
        ["lag.png", "lag.svg", "buffer.png", "buffer.svg", "buffer_bytes.png", "buffer_bytes.svg", "throughput.png", "throughput.svg"]
    );
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.chart.as_str()).collect();
    assert_eq!(skipped, ["credits", "tokens"]);
    assert!(r.skipped[1].reason.contains("no rate-limit tiers"), "{:?}", r.skipped);
    assert!(r.skipped_html().contains("<b>tokens</b>"));
    assert!(!dir.join("tokens.png").exists());

    // Only a meta line: nothing at all is drawn, and each picture says why.
    let dir = out_dir("run-meta-only");
    let only_meta = vec![history("credit", true).remove(0)];
    let r = render_run_report(&only_meta, &dir).unwrap();
    assert!(r.files.is_empty(), "{:?}", r.files);
    assert_eq!(r.skipped.len(), 6);
}

#[test]
fn comparisons_overlay_runs_against_the_bound() {
    let dir = out_dir("compare");
    let runs: Vec<(String, Vec<Entry>)> =
        ["none", "pause", "credit"].iter().map(|s| (s.to_string(), history(s, true))).collect();
    let files = render_compare(&runs, &dir).unwrap();
    assert_eq!(
        names(&files),
        ["compare_buffer.png", "compare_buffer.svg", "compare_lag.png", "compare_lag.svg", "compare_throughput.png", "compare_throughput.svg", "compare_summary.png", "compare_summary.svg"]
    );
    let img = check_png(&dir.join("compare_buffer.png"), (1300, 500));
    assert!(count(&img, 0..500, |c| near(c, BOUND_RED, 3)) > 1_000);
    check_png(&dir.join("compare_summary.png"), (1750, 560));
    check_svg(&dir.join("compare_buffer.svg"), 3, &["Largest consumer buffer per run", "=none", "=pause", "=credit", "bound buffer_records_max = 300"]);
    check_svg(&dir.join("compare_summary.svg"), 0, &["Summary per run", "Peak buffer", "Max total lag", "Rebalances", "rebalances (count)", "=496", "=none", "=pause", "=credit"]);

    // Sim against real goes through the same function.
    let dir = out_dir("sim-vs-real");
    let mut real = gen::Options::new("credit", 2);
    real.source = "real";
    let runs = vec![("sim".to_string(), history("credit", true)), ("real".to_string(), gen::history(&real))];
    let files = render_compare(&runs, &dir).unwrap();
    assert_eq!(files.len(), 8);
    check_svg(&dir.join("compare_lag.svg"), 2, &["Total lag per run", "=sim", "=real"]);

    let e = render_compare(&[], &dir).unwrap_err();
    assert!(matches!(e, PlotError::BadInput(_)), "{e}");
    let e = render_compare(&[("empty".to_string(), Vec::new())], &dir).unwrap_err();
    assert!(e.to_string().contains("run `empty`"), "{e}");
}

#[test]
fn sweeps_show_histogram_cdf_and_percentiles() {
    let dir = out_dir("sweep");
    let lag: Vec<f64> = (0..200).map(|i| ((i * 7919) % 101) as f64 * 0.37 + (i as f64).sqrt()).collect();
    let values = vec![("max lag (records)".to_string(), lag), ("nothing".to_string(), vec![f64::NAN])];
    let r = render_sweep_report(&values, &dir).unwrap();
    assert_eq!(names(&r.files), ["sweep_max_lag__records_.png", "sweep_max_lag__records_.svg"]);
    assert_eq!(r.skipped.len(), 1);
    check_png(&dir.join("sweep_max_lag__records_.png"), (1750, 560));
    check_svg(&dir.join("sweep_max_lag__records_.svg"), 1, &["Distribution of max lag (records) across 200 runs", "Histogram", "Empirical CDF", "p50 = ", "p90 = ", "p99 = ", "runs (count)", "ECDF (200 runs)"]);
    assert!(matches!(render_sweep_report(&[], &dir), Err(PlotError::BadInput(_))));
}

#[test]
fn index_links_every_picture_relatively() {
    let dir = out_dir("index");
    let r = render_run_report(&history("pause", true), &dir).unwrap();
    let table = sluice_plots::run_summary_html(&history("pause", true)).unwrap();
    for needle in [
        "<th>run</th><td>gen-slow-and-partition · pause · seed 1 · sim</td>",
        "<th>peak buffer (records)</th><td>270 of buffer_records_max = 300</td>",
        "<th>max total lag (records)</th><td>1184</td>",
        "<th>rebalances</th><td>2</td>",
        "slow-processing c0 [5–8 s]; partition c1 [6.5–9 s]",
        "<th>tier global</th><td>7166 admitted, 154 refused",
    ] {
        assert!(table.contains(needle), "summary lacks {needle:?}:\n{table}");
    }
    let runs: Vec<(String, Vec<Entry>)> = ["none", "credit"].iter().map(|s| (s.to_string(), history(s, false))).collect();
    let cmp = sluice_plots::compare_summary_html(&runs).unwrap();
    assert!(cmp.contains("<td>none</td><td>sim</td><td>none</td><td>496</td>"), "{cmp}");
    assert_eq!(cmp.matches("<tr>").count(), 3);
    let summary = format!("<p>all hold</p>{table}{}", r.skipped_html());
    let path = write_index(&dir, "Run <pause> & co", &summary, &r.files).unwrap();
    assert_eq!(path, dir.join("index.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "<title>Run &lt;pause&gt; &amp; co</title>",
        "<p>all hold</p>",
        "<b>credits</b>",
        "<img src=\"lag.png\"",
        "<img src=\"tokens.png\"",
        "<a href=\"lag.svg\">SVG</a>",
        "<style>",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    assert_eq!(html.matches("<img ").count(), r.files.len() / 2, "one <img> per picture");
    assert!(!html.contains("http"), "the index must not load anything from outside");
    assert!(!html.contains(dir.to_str().unwrap()), "paths must be relative");

    let e = write_index(&dir, "t", "", &[PathBuf::from("/elsewhere/x.png")]).unwrap_err();
    assert!(matches!(e, PlotError::BadInput(_)), "{e}");
}

#[test]
fn bad_histories_are_errors() {
    let dir = out_dir("bad");
    assert!(matches!(sluice_plots::render_run(&[], &dir), Err(PlotError::BadInput(_))));
}

#[test]
fn one_instant_histories_still_draw_sensible_axes() {
    // Everything at t = 0 and all zero: no zero-width axis, no NaN, pictures still titled.
    use sluice_core::history::Event;
    let mut hist = vec![history("credit", true).remove(0)];
    hist.push(Entry { t_us: 0, ev: Event::Lag { tp: "orders/0".into(), hw: 0, committed: 0 } });
    hist.push(Entry { t_us: 0, ev: Event::Buffer { consumer: 0, records: 0, bytes: 0, credits_outstanding: 0 } });
    let dir = out_dir("one-instant");
    let r = render_run_report(&hist, &dir).unwrap();
    assert_eq!(names(&r.files), ["lag.png", "lag.svg", "buffer.png", "buffer.svg", "credits.png", "credits.svg"]);
    // No sample carries bytes (as in a history written before record sizes): no byte chart.
    assert!(r.skipped.iter().any(|s| s.chart == "buffer_bytes" && s.reason.contains("byte count")), "{:?}", r.skipped);
    for stem in ["lag", "buffer", "credits"] {
        let img = load(&dir.join(format!("{stem}.png")));
        assert!(count(&img, 0..40, ink) > 150, "{stem}.png has no title");
        check_svg(&dir.join(format!("{stem}.svg")), 1, &["time since start (s)"]);
    }
}
