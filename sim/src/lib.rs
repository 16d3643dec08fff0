//! The simulated world: a seeded Kafka cluster on madsim (brokers with partition replicas, leaders
//! and ISR, acks, a group coordinator, producers with load shapes, consumers running the core
//! pipeline, faults) and a thin driver. One seed decides everything.
//!
//! STUB: entry point fixed; the world is being built.

pub mod group;

use sluice_core::bugs::Bugs;
use sluice_core::history::Entry;
use sluice_core::spec::Scenario;

/// What one simulated run is asked to do.
pub struct SimOptions<'a> {
    pub seed: u64,
    /// Planted bugs switched on in every consumer (empty by default).
    pub bugs: Bugs,
    /// Called with every history entry as it is recorded (online checking). Returning `false` stops
    /// the run at that entry (the history then ends there, with a `phase: end` line).
    pub observer: Option<&'a mut dyn FnMut(&Entry) -> bool>,
}

/// The result of one simulated run.
pub struct SimOutcome {
    pub history: Vec<Entry>,
    /// `history::hash_entries(&history)`.
    pub hash: u64,
    /// Whether the observer stopped the run early.
    pub stopped_early: bool,
    /// The faults the run injected (the scenario's schedule, or what the seed chose under swarm),
    /// as a schedule that replays them.
    pub faults: Vec<sluice_core::spec::Fault>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("the simulation exceeded a bound: {0}")]
    Bound(String),
}

/// Runs `spec` in a fresh madsim runtime seeded with `opts.seed`. Requires a `--cfg madsim` build
/// (the workspace's default).
pub fn run(_spec: &Scenario, _opts: SimOptions<'_>) -> Result<SimOutcome, SimError> {
    todo!()
}
