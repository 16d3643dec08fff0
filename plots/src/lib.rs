//! Pictures of histories: lag, buffer occupancy against its bound, throughput, credits, token
//! admissions against b + r·t, pause/rebalance/fault bands; comparisons and sweeps.
//!
//! STUB: entry points fixed; the plots are being built.

use std::path::{Path, PathBuf};

use sluice_core::history::Entry;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot write {path}: {message}")]
    Io { path: String, message: String },
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// Draws every per-run plot of `history` into `out_dir` (PNG and SVG); returns the files written.
pub fn render_run(_history: &[Entry], _out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    todo!()
}

/// Draws comparison plots of several labelled histories of the same scenario (strategies,
/// protocols, settings, or sim vs real) into `out_dir`.
pub fn render_compare(_runs: &[(String, Vec<Entry>)], _out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    todo!()
}

/// Writes `out_dir/index.html` showing `summary_html` and every image in `images`.
pub fn write_index(_out_dir: &Path, _title: &str, _summary_html: &str, _images: &[PathBuf]) -> Result<PathBuf, PlotError> {
    todo!()
}
