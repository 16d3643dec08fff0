//! Pictures of histories: lag, buffer occupancy against its bound, throughput, credits, token
//! admissions against b + r·t, pause/rebalance/fault bands; comparisons and sweeps.
//!
//! Three layers, each usable on its own:
//! - [`series`]: pure functions from a history to data series (time in seconds on x);
//! - [`charts`]: which pictures to draw from those series (lines, bounds, bands, marks), and which
//!   to skip for lack of data, with the reason;
//! - [`draw`]: the only code that calls plotters; every picture is written as PNG and SVG.
//!
//! PNG text uses DejaVu Sans, bundled through the `dejavu` crate and registered once as
//! plotters' "sans-serif".

use std::path::{Path, PathBuf};

use sluice_core::history::Entry;

pub mod charts;
pub mod draw;
pub mod series;

pub use charts::Skipped;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot write {path}: {message}")]
    Io { path: String, message: String },
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("cannot plot: {0}")]
    BadInput(String),
}

/// What a render call wrote and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Every file written (PNG and SVG per picture).
    pub files: Vec<PathBuf>,
    /// Pictures not drawn because their data is absent.
    pub skipped: Vec<Skipped>,
}

impl Rendered {
    /// An HTML list of the skipped pictures and why (empty when nothing was skipped), for
    /// [`write_index`]'s summary.
    pub fn skipped_html(&self) -> String {
        if self.skipped.is_empty() {
            return String::new();
        }
        let mut s = String::from("<p>Charts not drawn:</p>\n<ul>\n");
        for k in &self.skipped {
            s.push_str(&format!("<li><b>{}</b>: {}</li>\n", escape(&k.chart), escape(&k.reason)));
        }
        s.push_str("</ul>\n");
        s
    }

    fn append(&mut self, other: Rendered) {
        self.files.extend(other.files);
        self.skipped.extend(other.skipped);
    }
}

fn create_dir(dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| PlotError::Io { path: dir.display().to_string(), message: e.to_string() })
}

fn draw_plan(plan: charts::Plan, out_dir: &Path) -> Result<Rendered, PlotError> {
    create_dir(out_dir)?;
    let mut files = Vec::new();
    for fig in &plan.figures {
        files.extend(draw::write_figure(fig, out_dir)?);
    }
    Ok(Rendered { files, skipped: plan.skipped })
}

/// Draws every per-run plot of `history` into `out_dir` (PNG and SVG); returns the files written.
/// Pictures whose data is absent are not drawn; [`render_run_report`] says which and why.
pub fn render_run(history: &[Entry], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    Ok(render_run_report(history, out_dir)?.files)
}

/// [`render_run`], also listing the pictures skipped. Files: `lag`, `buffer`, `throughput`,
/// `credits`, `tokens` (`.png` and `.svg`).
pub fn render_run_report(history: &[Entry], out_dir: &Path) -> Result<Rendered, PlotError> {
    render_run_report_with(history, &[], out_dir)
}

/// [`render_run_report`], with the stalled partitions a checker found shaded on the lag chart
/// (each [`series::Interval`] labelled with its partition, and owners if any).
pub fn render_run_report_with(history: &[Entry], stalls: &[series::Interval], out_dir: &Path) -> Result<Rendered, PlotError> {
    let mut s = series::run_series(history)?;
    s.stalls = stalls.to_vec();
    draw_plan(charts::run_plan(&s), out_dir)
}

/// Draws comparison plots of several labelled histories of the same scenario (strategies,
/// protocols, settings, or sim vs real) into `out_dir`.
pub fn render_compare(runs: &[(String, Vec<Entry>)], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    Ok(render_compare_report(runs, out_dir)?.files)
}

/// [`render_compare`], also listing the pictures skipped. Files: `compare_buffer`, `compare_lag`,
/// `compare_throughput`, `compare_summary` (`.png` and `.svg`).
pub fn render_compare_report(runs: &[(String, Vec<Entry>)], out_dir: &Path) -> Result<Rendered, PlotError> {
    if runs.is_empty() {
        return Err(PlotError::BadInput("no runs to compare".into()));
    }
    let prepared = runs
        .iter()
        .map(|(label, h)| {
            charts::compare_run(label, h).map_err(|e| PlotError::BadInput(format!("run `{label}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    draw_plan(charts::compare_plan(&prepared), out_dir)
}

/// Draws, per `(metric, values)` (one value per run, e.g. per seed), a histogram and an empirical
/// CDF with p50/p90/p99 marked, as `sweep_<metric>.png`/`.svg`.
pub fn render_sweep(values: &[(String, Vec<f64>)], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    Ok(render_sweep_report(values, out_dir)?.files)
}

/// [`render_sweep`], also listing metrics skipped for having no finite values.
pub fn render_sweep_report(values: &[(String, Vec<f64>)], out_dir: &Path) -> Result<Rendered, PlotError> {
    if values.is_empty() {
        return Err(PlotError::BadInput("no metrics to plot".into()));
    }
    draw_plan(charts::sweep_plan(values), out_dir)
}

/// Everything for one run and (optionally) its comparisons, in one call.
pub fn render_all(history: &[Entry], compare: &[(String, Vec<Entry>)], out_dir: &Path) -> Result<Rendered, PlotError> {
    render_all_with(history, &[], compare, out_dir)
}

/// [`render_all`], with stalled partitions shaded as in [`render_run_report_with`].
pub fn render_all_with(
    history: &[Entry],
    stalls: &[series::Interval],
    compare: &[(String, Vec<Entry>)],
    out_dir: &Path,
) -> Result<Rendered, PlotError> {
    let mut r = render_run_report_with(history, stalls, out_dir)?;
    if !compare.is_empty() {
        r.append(render_compare_report(compare, out_dir)?);
    }
    Ok(r)
}

fn row(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(name), escape(value)));
}

/// A small HTML table describing one run for [`write_index`]: who it was, peak buffer against its
/// bound, lag, rebalances, faults, pauses, and per rate tier the admissions and the highest share
/// of `b + r·w` any window reached (above 100 % means R1 was broken).
pub fn run_summary_html(history: &[Entry]) -> Result<String, PlotError> {
    let s = series::run_series(history)?;
    let sum = series::summary(history);
    let f = draw::format_value;
    let mut t = String::from("<table>\n");
    row(&mut t, "run", &s.info.caption());
    row(&mut t, "duration (s)", &f(s.end_s));
    row(&mut t, "consumers", &s.info.consumers.to_string());
    let bound = s.bounds.buffer_records_max;
    let peak = if bound > 0 {
        format!("{} of buffer_records_max = {bound}", f(sum.peak_buffer_records))
    } else {
        f(sum.peak_buffer_records)
    };
    row(&mut t, "peak buffer (records)", &peak);
    row(&mut t, "max total lag (records)", &f(sum.max_lag_records));
    row(&mut t, "rebalances", &f(sum.rebalances));
    let faults: Vec<String> =
        s.faults.iter().map(|i| format!("{} [{}–{} s]", i.label, f(i.start_s), f(i.end_s))).collect();
    row(&mut t, "faults", &if faults.is_empty() { "none".to_string() } else { faults.join("; ") });
    row(&mut t, "pause intervals", &s.pauses.len().to_string());
    for tier in &s.tiers {
        let admitted = tier.admitted_cumulative.last().map(|p| p.1).unwrap_or(0.0);
        let refused = tier.refused_cumulative.last().map(|p| p.1).unwrap_or(0.0);
        let share = tier
            .window_max
            .iter()
            .map(|(w, m)| m / (tier.burst + tier.rate_per_s * w).max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        row(
            &mut t,
            &format!("tier {}", tier.tier),
            &format!(
                "{} admitted, {} refused; most of b + r·w reached: {} %",
                f(admitted),
                f(refused),
                f(share * 100.0)
            ),
        );
    }
    t.push_str("</table>\n");
    Ok(t)
}

/// An HTML table with one row per labelled run: source, strategy, peak buffer, max lag,
/// rebalances.
pub fn compare_summary_html(runs: &[(String, Vec<Entry>)]) -> Result<String, PlotError> {
    let mut t = String::from(
        "<table>\n<tr><th>run</th><th>source</th><th>strategy</th><th>peak buffer (records)</th>\
         <th>max total lag (records)</th><th>rebalances</th></tr>\n",
    );
    for (label, h) in runs {
        let (info, _) = series::run_info(h).map_err(|e| PlotError::BadInput(format!("run `{label}`: {e}")))?;
        let sum = series::summary(h);
        let cells = [
            label.clone(),
            info.source,
            info.strategy,
            draw::format_value(sum.peak_buffer_records),
            draw::format_value(sum.max_lag_records),
            draw::format_value(sum.rebalances),
        ];
        t.push_str("<tr>");
        for c in cells {
            t.push_str(&format!("<td>{}</td>", escape(&c)));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    Ok(t)
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `image` as a relative URL from `out_dir`: paths inside `out_dir` lose that prefix; relative
/// paths are taken as already relative to it; absolute paths elsewhere are refused.
fn relative_url(out_dir: &Path, image: &Path) -> Result<String, PlotError> {
    let rel = if let Ok(r) = image.strip_prefix(out_dir) {
        r.to_path_buf()
    } else if image.is_relative() {
        image.to_path_buf()
    } else {
        return Err(PlotError::BadInput(format!(
            "image {} is not inside {}; the index links images by relative path",
            image.display(),
            out_dir.display()
        )));
    };
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(parts.join("/"))
}

const INDEX_CSS: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1800px;\
margin:2em auto;padding:0 1.5em;color:#222;background:#fafafa}h1{font-size:1.6em;margin-bottom:.3em}\
section.summary{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1.2em;margin:1em 0}\
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1.2em 0;padding:.8em}\
figure img{max-width:100%;height:auto;display:block;margin:0 auto}\
figcaption{font-size:.9em;color:#555;margin-top:.4em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}";

/// Writes `out_dir/index.html` showing `summary_html` and every image in `images`. The page has
/// no external assets: styles are inline and images are linked by relative path. PNGs are shown;
/// an SVG whose PNG is also listed becomes a link beside it; an SVG alone is shown itself.
pub fn write_index(out_dir: &Path, title: &str, summary_html: &str, images: &[PathBuf]) -> Result<PathBuf, PlotError> {
    create_dir(out_dir)?;
    let ext = |p: &Path| p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let mut figures = String::new();
    for img in images {
        let e = ext(img);
        let url = relative_url(out_dir, img)?;
        let name = img.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match e.as_str() {
            "png" => {
                let svg = img.with_extension("svg");
                let svg_link = if images.contains(&svg) {
                    format!(" · <a href=\"{}\">SVG</a>", escape(&relative_url(out_dir, &svg)?))
                } else {
                    String::new()
                };
                figures.push_str(&format!(
                    "<figure id=\"{n}\"><img src=\"{u}\" alt=\"{n}\" loading=\"lazy\">\
                     <figcaption><a href=\"{u}\">{n}</a>{svg_link}</figcaption></figure>\n",
                    n = escape(&name),
                    u = escape(&url)
                ));
            }
            "svg" if images.contains(&img.with_extension("png")) => {}
            "svg" | "jpg" | "jpeg" | "gif" | "webp" => {
                figures.push_str(&format!(
                    "<figure id=\"{n}\"><img src=\"{u}\" alt=\"{n}\" loading=\"lazy\">\
                     <figcaption><a href=\"{u}\">{n}</a></figcaption></figure>\n",
                    n = escape(&name),
                    u = escape(&url)
                ));
            }
            _ => {
                figures.push_str(&format!("<p><a href=\"{u}\">{u}</a></p>\n", u = escape(&url)));
            }
        }
    }
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{INDEX_CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <section class=\"summary\">\n{summary_html}\n</section>\n{figures}</body>\n</html>\n",
        t = escape(title)
    );
    let path = out_dir.join("index.html");
    std::fs::write(&path, html).map_err(|e| PlotError::Io { path: path.display().to_string(), message: e.to_string() })?;
    Ok(path)
}
