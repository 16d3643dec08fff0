//! Drawing: chart descriptions (plain data built from series) and the one place that turns them
//! into pictures with plotters, for PNG and SVG alike.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::series::Points;
use crate::PlotError;

/// Size of a one-panel picture, in pixels.
pub const SIZE_ONE: (u32, u32) = (1300, 500);
/// Size of a two-panel picture (panels side by side), in pixels.
pub const SIZE_TWO: (u32, u32) = (1750, 560);
/// Most thin lines given their own legend entry; the rest share one "…" entry.
pub const LEGEND_LINES_MAX: usize = 8;

/// Series colours, distinguishable and none of them red (red is reserved for bounds).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),  // blue
    RGBColor(255, 127, 14),  // orange
    RGBColor(44, 160, 44),   // green
    RGBColor(148, 103, 189), // purple
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(23, 190, 207),  // cyan
    RGBColor(188, 189, 34),  // olive
];
pub const TOTAL_COLOUR: RGBColor = RGBColor(20, 20, 20);
pub const BOUND_COLOUR: RGBColor = RGBColor(214, 39, 40);
pub const PAUSE_COLOUR: RGBColor = RGBColor(70, 130, 220);
pub const REBALANCE_COLOUR: RGBColor = RGBColor(240, 170, 20);
pub const FAULT_COLOUR: RGBColor = RGBColor(200, 40, 40);
pub const MARK_COLOUR: RGBColor = RGBColor(90, 90, 90);
pub const STALL_COLOUR: RGBColor = RGBColor(128, 60, 170);

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineStyle {
    /// The headline series of a chart.
    Thick,
    /// One of many (per partition).
    Thin,
    /// A declared bound.
    Dashed,
    /// One of several overlaid runs, with its own width (earlier runs wider, so identical
    /// stretches stay visible underneath later ones).
    Overlay(u32),
}

#[derive(Clone, Debug)]
pub struct Line {
    /// `None` keeps the line out of the legend.
    pub label: Option<String>,
    pub points: Points,
    pub style: LineStyle,
    pub colour: RGBColor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BandKind {
    Pause,
    Rebalance,
    Fault,
    /// A partition with records waiting that made no progress.
    Stall,
}

impl BandKind {
    /// Every kind, in drawing and legend order.
    pub const ALL: [BandKind; 4] = [BandKind::Pause, BandKind::Rebalance, BandKind::Fault, BandKind::Stall];

    fn legend(self) -> &'static str {
        match self {
            BandKind::Pause => "paused",
            BandKind::Rebalance => "rebalancing",
            BandKind::Fault => "fault",
            BandKind::Stall => "stalled partition",
        }
    }
    fn colour(self) -> RGBAColor {
        match self {
            BandKind::Pause => PAUSE_COLOUR.mix(0.13),
            BandKind::Rebalance => REBALANCE_COLOUR.mix(0.25),
            BandKind::Fault => FAULT_COLOUR.mix(0.14),
            BandKind::Stall => STALL_COLOUR.mix(0.16),
        }
    }
}

/// A shaded stretch of the x axis; faults carry their name as text.
#[derive(Clone, Debug)]
pub struct Band {
    pub x0: f64,
    pub x1: f64,
    pub kind: BandKind,
    pub text: Option<String>,
}

/// A labelled vertical line (liveness start, a percentile).
#[derive(Clone, Debug)]
pub struct VMark {
    pub x: f64,
    pub label: String,
    pub colour: RGBColor,
}

#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_range: (f64, f64),
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
    pub marks: Vec<VMark>,
}

#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub colour: RGBColor,
}

#[derive(Clone, Debug)]
pub struct BarChart {
    pub title: String,
    pub y_desc: String,
    pub bars: Vec<Bar>,
}

#[derive(Clone, Debug)]
pub struct HistChart {
    pub title: String,
    pub x_desc: String,
    /// `(lo, hi, count)` per bin.
    pub bins: Vec<(f64, f64, u64)>,
    pub marks: Vec<VMark>,
}

#[derive(Clone, Debug)]
pub enum Panel {
    Line(LineChart),
    Bars(BarChart),
    Hist(HistChart),
}

/// One picture: one or more panels side by side, under an overall title when there are several.
#[derive(Clone, Debug)]
pub struct Figure {
    /// File name without extension.
    pub stem: String,
    pub title: String,
    pub size: (u32, u32),
    pub panels: Vec<Panel>,
}

static FONTS: Once = Once::new();

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" (normal and bold), once per process.
pub fn register_fonts() -> Result<(), PlotError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILED: AtomicBool = AtomicBool::new(false);
    FONTS.call_once(|| {
        let normal = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let bold = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
        if normal.is_err() || bold.is_err() {
            FAILED.store(true, Ordering::SeqCst);
        }
    });
    if FAILED.load(Ordering::SeqCst) {
        return Err(PlotError::Draw("the bundled DejaVu Sans font did not load".into()));
    }
    Ok(())
}

/// Writes `fig` as `dir/stem.png` and `dir/stem.svg`; returns both paths.
pub fn write_figure(fig: &Figure, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_fonts()?;
    let png = dir.join(format!("{}.png", fig.stem));
    let svg = dir.join(format!("{}.svg", fig.stem));
    {
        let area = BitMapBackend::new(&png, fig.size).into_drawing_area();
        draw_figure(&area, fig)?;
        area.present().map_err(|e| PlotError::Draw(format!("{}: {e}", png.display())))?;
    }
    {
        let area = SVGBackend::new(&svg, fig.size).into_drawing_area();
        draw_figure(&area, fig)?;
        area.present().map_err(|e| PlotError::Draw(format!("{}: {e}", svg.display())))?;
    }
    Ok(vec![png, svg])
}

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn font(size: u32) -> TextStyle<'static> {
    (FontFamily::SansSerif, size).into_font().color(&BLACK)
}

fn bold(size: u32) -> TextStyle<'static> {
    (FontFamily::SansSerif, size, FontStyle::Bold).into_font().color(&BLACK)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Swatch {
    Line { colour: RGBColor, width: u32, dashed: bool },
    Rect(RGBAColor),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LegendItem {
    pub label: String,
    pub swatch: Swatch,
}

fn line_width(style: LineStyle) -> u32 {
    match style {
        LineStyle::Thin => 1,
        LineStyle::Overlay(w) => w,
        LineStyle::Thick | LineStyle::Dashed => 3,
    }
}

/// The legend entries of one panel, in drawing order: bands, lines (at most
/// [`LEGEND_LINES_MAX`] thin ones, then one "… more"), marks.
pub fn legend_items(panel: &Panel) -> Vec<LegendItem> {
    let mut items = Vec::new();
    let mark = |m: &VMark| LegendItem { label: m.label.clone(), swatch: Swatch::Line { colour: m.colour, width: 2, dashed: true } };
    match panel {
        Panel::Line(c) => {
            for kind in BandKind::ALL {
                if c.bands.iter().any(|b| b.kind == kind) {
                    items.push(LegendItem { label: kind.legend().to_string(), swatch: Swatch::Rect(kind.colour()) });
                }
            }
            let mut thin = 0usize;
            for l in &c.lines {
                let Some(label) = &l.label else { continue };
                if l.points.is_empty() {
                    continue;
                }
                let label = if l.style == LineStyle::Thin {
                    thin += 1;
                    match thin.cmp(&(LEGEND_LINES_MAX + 1)) {
                        std::cmp::Ordering::Less => label.clone(),
                        std::cmp::Ordering::Equal => "… more (thin lines)".to_string(),
                        std::cmp::Ordering::Greater => continue,
                    }
                } else {
                    label.clone()
                };
                let swatch = Swatch::Line { colour: l.colour, width: line_width(l.style), dashed: l.style == LineStyle::Dashed };
                items.push(LegendItem { label, swatch });
            }
            items.extend(c.marks.iter().map(mark));
        }
        Panel::Bars(c) => {
            for b in &c.bars {
                items.push(LegendItem { label: b.label.clone(), swatch: Swatch::Rect(b.colour.mix(1.0)) });
            }
        }
        Panel::Hist(c) => {
            items.push(LegendItem { label: "runs per bin".into(), swatch: Swatch::Rect(colour(0).mix(0.75)) });
            items.extend(c.marks.iter().map(mark));
        }
    }
    items
}

/// The figure's legend: every panel's entries, each label once.
pub fn figure_legend(fig: &Figure) -> Vec<LegendItem> {
    let mut out: Vec<LegendItem> = Vec::new();
    for p in &fig.panels {
        for item in legend_items(p) {
            if !out.iter().any(|o| o.label == item.label) {
                out.push(item);
            }
        }
    }
    out
}

const LEGEND_ROW_PX: i32 = 22;
const LEGEND_SWATCH_PX: i32 = 28;

/// Draws the legend column at the right of the figure; returns the area left for the panels.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
    top_px: i32,
) -> Result<DrawingArea<DB, Shift>, PlotError> {
    if items.is_empty() {
        return Ok(area.clone());
    }
    let style = font(14);
    let mut text_w = 0u32;
    for i in items {
        let (w, _) = area.estimate_text_size(&i.label, &style).map_err(err)?;
        text_w = text_w.max(w);
    }
    let (width, _) = area.dim_in_pixel();
    let legend_w = (text_w as i32 + LEGEND_SWATCH_PX + 34).min(width as i32 / 3);
    let (main, side) = area.split_horizontally(width as i32 - legend_w);
    let x = 8;
    for (row, item) in items.iter().enumerate() {
        let y = top_px + row as i32 * LEGEND_ROW_PX;
        match item.swatch {
            Swatch::Line { colour, width, dashed } => {
                let stroke = colour.stroke_width(width);
                if dashed {
                    side.draw(&PathElement::new(vec![(x, y), (x + 10, y)], stroke)).map_err(err)?;
                    side.draw(&PathElement::new(vec![(x + 16, y), (x + LEGEND_SWATCH_PX - 2, y)], stroke)).map_err(err)?;
                } else {
                    side.draw(&PathElement::new(vec![(x, y), (x + LEGEND_SWATCH_PX - 2, y)], stroke)).map_err(err)?;
                }
            }
            Swatch::Rect(fill) => {
                side.draw(&Rectangle::new([(x, y - 7), (x + LEGEND_SWATCH_PX - 4, y + 7)], fill.filled())).map_err(err)?;
                side.draw(&Rectangle::new([(x, y - 7), (x + LEGEND_SWATCH_PX - 4, y + 7)], RGBColor(150, 150, 150).stroke_width(1)))
                    .map_err(err)?;
            }
        }
        let text_style = style.clone().pos(Pos::new(HPos::Left, VPos::Center));
        side.draw(&Text::new(item.label.clone(), (x + LEGEND_SWATCH_PX + 6, y), text_style)).map_err(err)?;
    }
    Ok(main)
}

pub fn draw_figure<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(err)?;
    let legend = figure_legend(fig);
    if fig.panels.len() == 1 {
        let main = draw_legend(area, &legend, 60)?;
        return draw_panel(&main, &fig.panels[0]);
    }
    let inner = area.titled(&fig.title, bold(24)).map_err(err)?;
    let main = draw_legend(&inner, &legend, 50)?;
    let cells = main.split_evenly((1, fig.panels.len()));
    for (cell, panel) in cells.iter().zip(&fig.panels) {
        draw_panel(cell, panel)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<(), PlotError> {
    match panel {
        Panel::Line(c) => draw_line_chart(area, c),
        Panel::Bars(c) => draw_bar_chart(area, c),
        Panel::Hist(c) => draw_hist_chart(area, c),
    }
}

/// `(lo, hi)` for a y axis starting at 0 that shows every value with headroom.
fn y_range(max: f64, headroom: f64) -> (f64, f64) {
    let top = if max.is_finite() && max > 0.0 { max * headroom } else { 1.0 };
    (0.0, top)
}

fn draw_line_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &LineChart) -> Result<(), PlotError> {
    let y_max = c.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let headroom = if c.bands.iter().any(|b| b.kind == BandKind::Fault) { 1.25 } else { 1.08 };
    let (y0, y1) = y_range(y_max, headroom);
    let (x0, mut x1) = c.x_range;
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, bold(20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .label_style(font(14))
        .axis_desc_style(font(16))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_labels(12)
        .y_labels(8)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .draw()
        .map_err(err)?;

    for kind in BandKind::ALL {
        let fill = kind.colour();
        chart
            .draw_series(
                c.bands
                    .iter()
                    .filter(|b| b.kind == kind)
                    .map(|b| Rectangle::new([(b.x0, y0), (b.x1.max(b.x0), y1)], fill.filled())),
            )
            .map_err(err)?;
    }
    // Fault names along the top, staggered so overlapping faults stay readable.
    let faults: Vec<&Band> = c.bands.iter().filter(|b| b.kind == BandKind::Fault).collect();
    for (i, b) in faults.iter().enumerate() {
        if let Some(text) = &b.text {
            let lane = (i % 3) as f64;
            let y = y1 - (y1 - y0) * (0.03 + 0.065 * lane);
            chart
                .draw_series(std::iter::once(Text::new(text.clone(), (b.x0, y), font(13).color(&FAULT_COLOUR))))
                .map_err(err)?;
        }
    }
    // Stalled partitions along the bottom, staggered likewise.
    let stalls: Vec<&Band> = c.bands.iter().filter(|b| b.kind == BandKind::Stall).collect();
    for (i, b) in stalls.iter().enumerate() {
        if let Some(text) = &b.text {
            let lane = (i % 3) as f64;
            let y = y0 + (y1 - y0) * (0.10 + 0.065 * lane);
            chart
                .draw_series(std::iter::once(Text::new(text.clone(), (b.x0, y), font(13).color(&STALL_COLOUR))))
                .map_err(err)?;
        }
    }
    for line in &c.lines {
        let col = line.colour;
        if let [only] = line.points.as_slice() {
            // One sample is a dot, not an invisible zero-length line.
            chart.draw_series(std::iter::once(Circle::new(*only, 5, col.filled()))).map_err(err)?;
            continue;
        }
        let pts = line.points.iter().copied();
        match line.style {
            LineStyle::Thin => chart.draw_series(LineSeries::new(pts, col.mix(0.8).stroke_width(1))).map_err(err)?,
            LineStyle::Thick | LineStyle::Overlay(_) => {
                chart.draw_series(LineSeries::new(pts, col.stroke_width(line_width(line.style)))).map_err(err)?
            }
            LineStyle::Dashed => chart.draw_series(DashedLineSeries::new(pts, 12, 7, col.stroke_width(3))).map_err(err)?,
        };
    }
    for m in &c.marks {
        chart
            .draw_series(DashedLineSeries::new(vec![(m.x, y0), (m.x, y1)], 6, 5, m.colour.stroke_width(2)))
            .map_err(err)?;
    }
    Ok(())
}

fn draw_bar_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &BarChart) -> Result<(), PlotError> {
    let n = c.bars.len().max(1) as u32;
    let y_max = c.bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (y0, y1) = y_range(y_max, 1.12);
    let labels: Vec<String> = c.bars.iter().map(|b| b.label.clone()).collect();
    // Counts (all values whole) get whole ticks only: "1.5 rebalances" means nothing.
    let whole = c.bars.iter().all(|b| b.value.fract() == 0.0);
    let y_fmt = |v: &f64| if whole && v.fract() != 0.0 { String::new() } else { tick_label(v) };
    let fmt = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, bold(18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // plotters' integer ranges include their end: `0..n-1` gives exactly n segments.
        .build_cartesian_2d((0u32..n - 1).into_segmented(), y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("run")
        .y_desc(c.y_desc.as_str())
        .x_label_formatter(&fmt)
        .y_label_formatter(&y_fmt)
        .label_style(font(14))
        .axis_desc_style(font(15))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(err)?;
    for (i, b) in c.bars.iter().enumerate() {
        let i = i as u32;
        let mut rect = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.value)], b.colour.filled());
        rect.set_margin(0, 0, 12, 12);
        chart.draw_series(std::iter::once(rect)).map_err(err)?;
        let style = font(14).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(format_value(b.value), (SegmentValue::CenterOf(i), b.value), style)))
            .map_err(err)?;
    }
    Ok(())
}

fn draw_hist_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &HistChart) -> Result<(), PlotError> {
    let x0 = c.bins.first().map(|b| b.0).unwrap_or(0.0);
    let mut x1 = c.bins.last().map(|b| b.1).unwrap_or(1.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y_max = c.bins.iter().map(|b| b.2 as f64).fold(0.0, f64::max);
    let (y0, y1) = y_range(y_max, 1.1);
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, bold(18))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc("runs (count)")
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .label_style(font(14))
        .axis_desc_style(font(15))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(err)?;
    let col = colour(0);
    chart
        .draw_series(c.bins.iter().map(|&(lo, hi, n)| {
            let mut r = Rectangle::new([(lo, 0.0), (hi, n as f64)], col.mix(0.75).filled());
            r.set_margin(0, 0, 1, 1);
            r
        }))
        .map_err(err)?;
    for m in &c.marks {
        chart
            .draw_series(DashedLineSeries::new(vec![(m.x, y0), (m.x, y1)], 6, 5, m.colour.stroke_width(2)))
            .map_err(err)?;
    }
    Ok(())
}

/// An axis tick label: as few decimals as the value needs (at most 3), no trailing zeros.
pub fn tick_label(v: &f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r == r.trunc() {
        return format!("{r:.0}");
    }
    let s = format!("{r:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A number for a label: up to 1 decimal from 100 up, up to 3 below, no trailing zeros.
pub fn format_value(v: f64) -> String {
    let s = if v.abs() >= 100.0 { format!("{v:.1}") } else { format!("{v:.3}") };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
