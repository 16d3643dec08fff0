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
pub const SIZE_ONE: (u32, u32) = (1200, 500);
/// Size of a two-panel picture (panels side by side), in pixels.
pub const SIZE_TWO: (u32, u32) = (1500, 540);
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
}

impl BandKind {
    fn legend(self) -> &'static str {
        match self {
            BandKind::Pause => "paused",
            BandKind::Rebalance => "rebalancing",
            BandKind::Fault => "fault",
        }
    }
    fn colour(self) -> RGBAColor {
        match self {
            BandKind::Pause => PAUSE_COLOUR.mix(0.13),
            BandKind::Rebalance => REBALANCE_COLOUR.mix(0.25),
            BandKind::Fault => FAULT_COLOUR.mix(0.14),
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

pub fn draw_figure<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(err)?;
    if fig.panels.len() == 1 {
        return draw_panel(area, &fig.panels[0]);
    }
    let inner = area.titled(&fig.title, bold(24)).map_err(err)?;
    let cells = inner.split_evenly((1, fig.panels.len()));
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
    let headroom = if c.bands.iter().any(|b| b.kind == BandKind::Fault) { 1.3 } else { 1.12 };
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
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_labels(12)
        .y_labels(8)
        .draw()
        .map_err(err)?;

    for kind in [BandKind::Pause, BandKind::Rebalance, BandKind::Fault] {
        let bands: Vec<&Band> = c.bands.iter().filter(|b| b.kind == kind).collect();
        if bands.is_empty() {
            continue;
        }
        let fill = kind.colour();
        chart
            .draw_series(bands.iter().map(|b| Rectangle::new([(b.x0, y0), (b.x1.max(b.x0), y1)], fill.filled())))
            .map_err(err)?
            .label(kind.legend())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], fill.filled()));
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

    let mut thin_legends = 0usize;
    for line in &c.lines {
        if line.points.is_empty() {
            continue;
        }
        let col = line.colour;
        let anno = match line.style {
            LineStyle::Thick => chart
                .draw_series(LineSeries::new(line.points.iter().copied(), col.stroke_width(3)))
                .map_err(err)?,
            LineStyle::Thin => chart
                .draw_series(LineSeries::new(line.points.iter().copied(), col.mix(0.8).stroke_width(1)))
                .map_err(err)?,
            LineStyle::Dashed => chart
                .draw_series(DashedLineSeries::new(line.points.iter().copied(), 12, 7, col.stroke_width(3)))
                .map_err(err)?,
        };
        let Some(label) = &line.label else { continue };
        let label = if line.style == LineStyle::Thin {
            thin_legends += 1;
            match thin_legends.cmp(&(LEGEND_LINES_MAX + 1)) {
                std::cmp::Ordering::Less => label.clone(),
                std::cmp::Ordering::Equal => "… more".to_string(),
                std::cmp::Ordering::Greater => continue,
            }
        } else {
            label.clone()
        };
        let width = match line.style {
            LineStyle::Thin => 1,
            _ => 3,
        };
        anno.label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], col.stroke_width(width)));
    }

    for m in &c.marks {
        let col = m.colour;
        chart
            .draw_series(DashedLineSeries::new(vec![(m.x, y0), (m.x, y1)], 6, 5, col.stroke_width(2)))
            .map_err(err)?
            .label(m.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], col.stroke_width(2)));
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(160, 160, 160))
        .label_font(font(14))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_bar_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &BarChart) -> Result<(), PlotError> {
    let n = c.bars.len().max(1) as u32;
    let y_max = c.bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (y0, y1) = y_range(y_max, 1.18);
    let labels: Vec<String> = c.bars.iter().map(|b| b.label.clone()).collect();
    let fmt = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, bold(18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0u32..n).into_segmented(), y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("run")
        .y_desc(c.y_desc.as_str())
        .x_label_formatter(&fmt)
        .label_style(font(14))
        .axis_desc_style(font(15))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    for (i, b) in c.bars.iter().enumerate() {
        let i = i as u32;
        let col = b.colour;
        let mut rect = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.value)],
            col.filled(),
        );
        rect.set_margin(0, 0, 12, 12);
        chart
            .draw_series(std::iter::once(rect))
            .map_err(err)?
            .label(b.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], col.filled()));
        let text = format_value(b.value);
        let style = font(14).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(text, (SegmentValue::CenterOf(i), b.value), style)))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(160, 160, 160))
        .label_font(font(13))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_hist_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &HistChart) -> Result<(), PlotError> {
    let x0 = c.bins.first().map(|b| b.0).unwrap_or(0.0);
    let mut x1 = c.bins.last().map(|b| b.1).unwrap_or(1.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y_max = c.bins.iter().map(|b| b.2 as f64).fold(0.0, f64::max);
    let (y0, y1) = y_range(y_max, 1.15);
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
        .label_style(font(14))
        .axis_desc_style(font(15))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    let col = colour(0);
    chart
        .draw_series(c.bins.iter().map(|&(lo, hi, n)| {
            let mut r = Rectangle::new([(lo, 0.0), (hi, n as f64)], col.mix(0.75).filled());
            r.set_margin(0, 0, 1, 1);
            r
        }))
        .map_err(err)?
        .label("runs per bin")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], col.mix(0.75).filled()));
    for m in &c.marks {
        let mc = m.colour;
        chart
            .draw_series(DashedLineSeries::new(vec![(m.x, y0), (m.x, y1)], 6, 5, mc.stroke_width(2)))
            .map_err(err)?
            .label(m.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], mc.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(160, 160, 160))
        .label_font(font(14))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A number for a label: integers without decimals, others with up to 3 significant decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
