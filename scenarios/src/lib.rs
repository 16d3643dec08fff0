//! The scenario catalogue, TOML loading with precise errors, and the runners.
//!
//! - [`load`] / [`parse_str`]: a catalogue name or a TOML file to a validated
//!   [`Scenario`](sluice_core::spec::Scenario); errors carry file, line, column and field paths.
//! - [`catalogue`]: the named scenarios, embedded in the binary.
//! - [`runner`]: one run (files, plots, verdict), comparisons, many-seed exploration with shrinking,
//!   and checking recorded histories.
//! - [`summary`]: statistics read off a history, the verdict, the printed tables.

pub mod catalogue;
mod load;
pub mod runner;
pub mod summary;

pub use load::{load, locate, parse_str, to_toml, Location, Problem, ScenarioError};
