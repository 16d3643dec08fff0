//! Runners: one run with its files and plots, a comparison of variants, a many-seed exploration
//! with shrinking, and checking a recorded history.
//!
//! Every simulation runs on its own fresh OS thread ([`on_fresh_thread`]): the simulator is
//! deterministic per seed only when each run starts on a new thread (FEASIBILITY.md, madsim note
//! 7), and a panic inside one run becomes an error for that run instead of ending the process.
//! Threads are used here only, outside the simulated path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sluice_core::bugs::Bugs;
use sluice_core::history::{self, Entry, Event};
use sluice_core::spec::{AssignorKind, Fault, Faults, Placement, Protocol, Scenario, SpecError, Strategy, SwarmWord};
use sluice_sim::{SimError, SimOptions};
use sluice_verification::{Online, Report, Violation};

use crate::catalogue;
use crate::load::to_toml;
use crate::summary::{judge, Judgement, RunSummary, Stats};

/// Stack for each simulation thread, bytes (the simulated world nests deep futures).
pub const SIM_THREAD_STACK_BYTES: usize = 64 << 20;
/// The most reruns one shrink may spend.
pub const SHRINK_RUNS_MAX: usize = 200;
/// The most seeds one exploration may run.
pub const EXPLORE_SEEDS_MAX: u64 = 1_000_000;

/// Why a run could not be carried out (as opposed to a run that found a violation).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid scenario {scenario}: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid { scenario: String, problems: Vec<SpecError> },
    #[error("simulation of {scenario} failed: {source}")]
    Sim { scenario: String, source: SimError },
    #[error("the simulation of {scenario} at seed {seed} panicked: {message}")]
    Panicked { scenario: String, seed: u64, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {source}")]
    History { path: String, source: history::HistoryError },
    #[error("{0}")]
    Options(String),
}

impl RunError {
    /// Whether the error is the caller's input (exit code 2) rather than a failure of the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RunError::Invalid { .. }
                | RunError::Sim { source: SimError::Invalid(_), .. }
                | RunError::Read { .. }
                | RunError::History { .. }
                | RunError::Options(_)
                | RunError::Write { .. }
        )
    }
}

/// Runs `f` on a new OS thread and waits for it; a panic becomes [`RunError::Panicked`].
pub fn on_fresh_thread<T: Send + 'static>(
    scenario: &str,
    seed: u64,
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    let panicked = |message: String| RunError::Panicked { scenario: scenario.to_string(), seed, message };
    let handle = std::thread::Builder::new()
        .name(format!("sim-{scenario}-{seed}"))
        .stack_size(SIM_THREAD_STACK_BYTES)
        .spawn(f)
        .map_err(|e| panicked(format!("cannot start a thread: {e}")))?;
    handle.join().map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        panicked(message)
    })?
}

/// One simulated run, checked.
#[derive(Clone, Debug)]
pub struct Simulated {
    pub history: Vec<Entry>,
    pub hash: u64,
    pub faults: Vec<Fault>,
    pub stopped_early: bool,
    pub first_online: Option<Violation>,
    pub report: Report,
    pub judgement: Judgement,
}

/// Set by the command line's Ctrl-C handler: a simulation in progress stops at its next history
/// entry (through the same stop-early path as an online violation), keeps what it recorded, and the
/// runners write it out as usual; explorations start no further seeds.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every run in progress to stop and keep what it recorded (Ctrl-C).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Simulates `scenario` at `seed` with the online checker watching, then checks the whole history.
/// With `stop_on_unexpected` the run stops at the first online violation the scenario does not
/// expect (exploration does this; single runs record the whole history for the plots). When the
/// online checker saw every entry of the history, its report is the whole history's (the offline
/// check is the same state machine folded over the same entries) and the history is not checked a
/// second time; a run stopped early or interrupted is checked over what it recorded.
pub fn simulate(scenario: &Scenario, seed: u64, bugs: Bugs, stop_on_unexpected: bool) -> Result<Simulated, RunError> {
    let sc = scenario.clone();
    on_fresh_thread(&scenario.name, seed, move || {
        let expected = sc.expect.anomalies.clone();
        let mut online = Online::new();
        let mut first: Option<Violation> = None;
        let mut observed = 0usize;
        let mut observer = |e: &Entry| -> bool {
            if interrupted() {
                return false;
            }
            observed += 1;
            match online.observe(e) {
                Some(v) if first.is_none() => {
                    let stop = stop_on_unexpected && !expected.contains(&v.anomaly);
                    first = Some(v);
                    !stop
                }
                _ => true,
            }
        };
        let out = sluice_sim::run(&sc, SimOptions { seed, bugs, observer: Some(&mut observer) })
            .map_err(|source| RunError::Sim { scenario: sc.name.clone(), source })?;
        let report = if observed == out.history.len() {
            online.finish()
        } else {
            drop(online);
            sluice_verification::check(&out.history)
        };
        let judgement = judge(&report, &sc.expect.anomalies, sc.expect.anomalies_may_be_absent);
        Ok(Simulated {
            hash: out.hash,
            faults: out.faults,
            stopped_early: out.stopped_early,
            first_online: first,
            history: out.history,
            report,
            judgement,
        })
    })
}

/// The exact command line that replays a run.
pub fn replay_command(target: &str, seed: u64, strategy: Option<Strategy>, bugs: Bugs) -> String {
    let mut s = format!("cargo sluice run {target} --seed {seed}");
    if let Some(st) = strategy {
        let _ = write!(s, " --strategy {}", st.name());
    }
    for b in bugs.iter() {
        let _ = write!(s, " --plant {}", b.name());
    }
    s
}

/// The catalogue name if `scenario` is exactly that catalogue entry.
fn catalogue_name(scenario: &Scenario) -> Option<&'static str> {
    let name = catalogue::names().find(|n| *n == scenario.name)?;
    let text = catalogue::text(name)?;
    let parsed: Scenario = toml::from_str(text).ok()?;
    (parsed == *scenario).then_some(name)
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|e| RunError::Write { path: path.display().to_string(), message: e.to_string() })
}

/// Streams a history to `path` as JSON Lines.
fn write_history(path: &Path, entries: &[Entry]) -> Result<(), RunError> {
    use std::io::Write as _;
    let err = |e: std::io::Error| RunError::Write { path: path.display().to_string(), message: e.to_string() };
    let mut f = std::fs::File::create(path).map_err(err)?;
    sluice_core::jsonl::write_lines(entries, |chunk| f.write_all(chunk)).map_err(err)
}

fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| RunError::Write { path: dir.display().to_string(), message: e.to_string() })
}

fn with_strategy(scenario: &Scenario, strategy: Option<Strategy>) -> Result<Scenario, RunError> {
    let mut sc = scenario.clone();
    if let Some(st) = strategy {
        sc.consumers.strategy = st;
    }
    sc.validate().map_err(|problems| RunError::Invalid { scenario: sc.name.clone(), problems })?;
    Ok(sc)
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Draws the per-run plots and the index; a failure (or a panic in the drawing code) is returned as
/// text, because the verdict does not depend on pictures.
fn draw_run(history: &[Entry], report: &Report, dir: &Path, title: &str, table: &str) -> Option<String> {
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let stalls = stall_spans(history, report);
        let images = sluice_plots::render_run_report_with(history, &stalls, dir).map_err(|e| e.to_string())?.files;
        let html = format!("<pre>{}</pre>", escape_html(table));
        sluice_plots::write_index(dir, title, &html, &images).map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    }));
    match drawn {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("the plotting code panicked".into()),
    }
}

/// The stalls a report lists, as spans for the lag chart: labelled with the partition and its
/// owners, a stall still open at the end drawn to the history's last entry.
pub fn stall_spans(history: &[Entry], report: &Report) -> Vec<sluice_plots::series::Interval> {
    let end_us = history.last().map_or(0, |e| e.t_us);
    report
        .liveness
        .stalls
        .iter()
        .map(|s| sluice_plots::series::Interval {
            start_s: s.from_us as f64 / 1e6,
            end_s: s.to_us.unwrap_or(end_us) as f64 / 1e6,
            label: if s.owners.is_empty() { s.tp.clone() } else { format!("{} ({})", s.tp, s.owners.join(", ")) },
        })
        .collect()
}

/// The full record of one run as written to `report.json`.
#[derive(Serialize)]
struct ReportFile<'a> {
    summary: &'a RunSummary,
    report: &'a Report,
}

fn run_inner(
    scenario: &Scenario,
    seed: u64,
    strategy: Option<Strategy>,
    bugs: Bugs,
    out_dir: Option<&Path>,
) -> Result<(RunSummary, Vec<Entry>), RunError> {
    let sc = with_strategy(scenario, strategy)?;
    let sim = simulate(&sc, seed, bugs, false)?;
    let target = match (catalogue_name(scenario), out_dir) {
        (Some(name), _) => name.to_string(),
        (None, Some(dir)) => dir.join("scenario.toml").display().to_string(),
        (None, None) => scenario.name.clone(),
    };
    let mut summary = RunSummary {
        scenario: sc.name.clone(),
        seed,
        strategy: sc.consumers.strategy.name().to_string(),
        bugs: bugs.iter().map(|b| b.name().to_string()).collect(),
        hash: hex(sim.hash),
        history_entries: sim.history.len(),
        first_online: sim.first_online.clone(),
        stopped_early: sim.stopped_early,
        expected: sc.expect.anomalies.clone(),
        judgement: sim.judgement.clone(),
        stats: Stats::of(&sim.history).with_report(&sim.report),
        replay: replay_command(&target, seed, strategy, bugs),
        out_dir: out_dir.map(|d| d.display().to_string()),
        plot_error: None,
    };
    if let Some(dir) = out_dir {
        create_dir(dir)?;
        write_history(&dir.join("history.jsonl"), &sim.history)?;
        let scenario_toml = to_toml(scenario).map_err(|e| RunError::Write { path: "scenario.toml".into(), message: e.to_string() })?;
        write(&dir.join("scenario.toml"), scenario_toml)?;
        summary.plot_error = draw_run(&sim.history, &sim.report, dir, &format!("{} seed {seed}", sc.name), &summary.table());
        let json = serde_json::to_string_pretty(&ReportFile { summary: &summary, report: &sim.report })
            .map_err(|e| RunError::Write { path: "report.json".into(), message: e.to_string() })?;
        write(&dir.join("report.json"), json)?;
    }
    Ok((summary, sim.history))
}

/// Runs `scenario` at `seed` (optionally overriding the backpressure strategy, with planted bugs),
/// and, when `out_dir` is given, writes `history.jsonl`, `report.json`, `scenario.toml`, the plots and
/// `index.html` there.
pub fn run_one(
    scenario: &Scenario,
    seed: u64,
    strategy: Option<Strategy>,
    bugs: Bugs,
    out_dir: Option<&Path>,
) -> Result<RunSummary, RunError> {
    run_inner(scenario, seed, strategy, bugs, out_dir).map(|(s, _)| s)
}

/// A named change to a scenario, compared against its siblings.
pub struct Variant {
    pub name: String,
    pub patch: Box<dyn Fn(&mut Scenario) + Send + Sync>,
}

impl Variant {
    pub fn new(name: &str, patch: impl Fn(&mut Scenario) + Send + Sync + 'static) -> Variant {
        Variant { name: name.to_string(), patch: Box::new(patch) }
    }
}

/// What a comparison varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareBy {
    /// none, pause, credit.
    Strategy,
    /// eager (range), cooperative (cooperative-sticky), static (cooperative + static membership).
    Protocol,
    /// hash, load-aware.
    Placement,
}

impl CompareBy {
    pub fn name(self) -> &'static str {
        match self {
            CompareBy::Strategy => "strategy",
            CompareBy::Protocol => "protocol",
            CompareBy::Placement => "placement",
        }
    }

    /// The variants this comparison runs.
    pub fn variants(self) -> Vec<Variant> {
        match self {
            CompareBy::Strategy => Strategy::ALL
                .into_iter()
                .map(|st| Variant::new(st.name(), move |s: &mut Scenario| s.consumers.strategy = st))
                .collect(),
            CompareBy::Protocol => vec![
                Variant::new("eager", |s: &mut Scenario| {
                    s.consumers.protocol = Protocol::Eager;
                    s.consumers.assignor = AssignorKind::Range;
                    s.consumers.static_membership = false;
                }),
                Variant::new("cooperative", |s: &mut Scenario| {
                    s.consumers.protocol = Protocol::Cooperative;
                    s.consumers.assignor = AssignorKind::CooperativeSticky;
                    s.consumers.static_membership = false;
                }),
                Variant::new("static", |s: &mut Scenario| {
                    s.consumers.protocol = Protocol::Cooperative;
                    s.consumers.assignor = AssignorKind::CooperativeSticky;
                    s.consumers.static_membership = true;
                }),
            ],
            CompareBy::Placement => [("hash", Placement::Hash), ("load-aware", Placement::LoadAware)]
                .into_iter()
                .map(|(name, pl)| {
                    Variant::new(name, move |s: &mut Scenario| {
                        for p in &mut s.producers {
                            p.placement = pl;
                        }
                    })
                })
                .collect(),
        }
    }
}

/// One comparison: the same scenario and seed under each variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareSummary {
    pub scenario: String,
    pub seed: u64,
    pub by: String,
    /// `(variant name, its run)`.
    pub runs: Vec<(String, RunSummary)>,
    /// Whether no variant broke an invariant the scenario does not expect. Expected anomalies may be
    /// absent in some variants: showing which variant avoids them is what a comparison is for.
    pub pass: bool,
    pub plot_error: Option<String>,
}

impl CompareSummary {
    /// A side-by-side table, one row per variant.
    pub fn table(&self) -> String {
        let mut t = format!("{} (seed {}) by {}\n", self.scenario, self.seed, self.by);
        let _ = writeln!(
            t,
            "  {:<14} {:<6} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10}  {:<16} anomalies",
            "variant", "held", "processed/s", "buffer peak", "buffer bytes", "lag peak", "lag final", "rebalances", "hash"
        );
        for (name, r) in &self.runs {
            let held = if r.judgement.unexpected_anomalies.is_empty() { "yes" } else { "NO" };
            let s = &r.stats;
            let _ = writeln!(
                t,
                "  {name:<14} {held:<6} {:>10.1} {:>12} {:>12} {:>12} {:>10} {:>10}  {:<16} {}",
                s.throughput_per_s,
                s.buffer_peak_records,
                crate::summary::size(s.buffer_peak_bytes),
                s.lag_peak_records,
                s.lag_final_records,
                s.rebalances,
                r.hash,
                if r.judgement.observed.is_empty() { "-".to_string() } else { r.judgement.observed.join(",") }
            );
        }
        t
    }
}

/// Runs `scenario` at `seed` once per variant, writing each run under `out_dir/<variant>` and the
/// comparison plots and index into `out_dir`.
pub fn compare(
    scenario: &Scenario,
    seed: u64,
    by: CompareBy,
    variants: &[Variant],
    bugs: Bugs,
    out_dir: Option<&Path>,
) -> Result<CompareSummary, RunError> {
    let mut runs = Vec::new();
    let mut histories = Vec::new();
    for v in variants {
        let mut sc = scenario.clone();
        (v.patch)(&mut sc);
        let dir = out_dir.map(|d| d.join(&v.name));
        let (summary, history) = run_inner(&sc, seed, None, bugs, dir.as_deref())?;
        histories.push((v.name.clone(), history));
        runs.push((v.name.clone(), summary));
    }
    let pass = runs.iter().all(|(_, r)| r.judgement.unexpected_anomalies.is_empty());
    let mut summary =
        CompareSummary { scenario: scenario.name.clone(), seed, by: by.name().to_string(), runs, pass, plot_error: None };
    if let Some(dir) = out_dir {
        create_dir(dir)?;
        let table = summary.table();
        let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let images = sluice_plots::render_compare(&histories, dir).map_err(|e| e.to_string())?;
            let html = format!("<pre>{}</pre>", escape_html(&table));
            sluice_plots::write_index(dir, &format!("{} by {}", scenario.name, by.name()), &html, &images)
                .map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        }));
        summary.plot_error = match drawn {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the plotting code panicked".into()),
        };
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| RunError::Write { path: "compare.json".into(), message: e.to_string() })?;
        write(&dir.join("compare.json"), json)?;
    }
    Ok(summary)
}

/// How to explore.
#[derive(Clone, Debug)]
pub struct ExploreOptions {
    /// First seed; seeds `first_seed..first_seed + seeds` are run.
    pub first_seed: u64,
    pub seeds: u64,
    pub bugs: Bugs,
    /// Replace the scenario's fault schedule with swarm faults (the seed picks them).
    pub swarm: bool,
    /// Worker threads (each run still gets its own fresh thread).
    pub threads: usize,
    /// Shrink the first failure's fault schedule.
    pub shrink: bool,
    /// Where the explored scenario and the shrunk replay are written.
    pub out_dir: PathBuf,
}

/// Progress of an exploration, reported after every seed.
#[derive(Clone, Copy, Debug)]
pub struct ExploreProgress {
    pub done: u64,
    pub total: u64,
    pub failures: u64,
}

/// One failing seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedFailure {
    pub seed: u64,
    /// Unexpected anomaly names, or empty when the run itself failed (see `error`).
    pub anomalies: Vec<String>,
    pub first: Option<Violation>,
    pub error: Option<String>,
    pub replay: String,
}

/// The first failure reduced to a minimal fault schedule that still fails.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shrunk {
    pub seed: u64,
    pub faults_before: usize,
    pub faults_after: usize,
    /// Whether the shrunk schedule still fails (false: the failure did not reproduce from the
    /// schedule alone, and the file holds the unshrunk schedule).
    pub reproduced: bool,
    pub file: String,
    pub replay: String,
    pub runs: usize,
}

/// What an exploration found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExploreSummary {
    pub scenario: String,
    pub seeds_run: u64,
    /// Seeds on which every expected anomaly appeared.
    pub expected_seen: u64,
    /// Failing seeds in seed order.
    pub failures: Vec<SeedFailure>,
    pub shrunk: Option<Shrunk>,
}

impl ExploreSummary {
    pub fn pass(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn table(&self) -> String {
        let mut t = format!(
            "{}: {} seeds, {} failing, expected anomalies seen on {}\n",
            self.scenario,
            self.seeds_run,
            self.failures.len(),
            self.expected_seen
        );
        for f in self.failures.iter().take(20) {
            let what = match (&f.error, f.anomalies.is_empty()) {
                (Some(e), _) => e.clone(),
                (None, false) => f.anomalies.join(", "),
                (None, true) => "?".into(),
            };
            let _ = writeln!(t, "  seed {:<8} {what}\n    replay: {}", f.seed, f.replay);
        }
        if self.failures.len() > 20 {
            let _ = writeln!(t, "  … and {} more failing seeds", self.failures.len() - 20);
        }
        if let Some(s) = &self.shrunk {
            let _ = writeln!(
                t,
                "  shrunk seed {}: {} -> {} faults in {} runs{}\n    {}\n    replay: {}",
                s.seed,
                s.faults_before,
                s.faults_after,
                s.runs,
                if s.reproduced { "" } else { " (did NOT reproduce from the schedule alone)" },
                s.file,
                s.replay
            );
        }
        t
    }
}

/// Anomalies Kafka documents as possible under the scenario's settings whatever the faults: with
/// `enable.idempotence=false` a retried batch may be written twice (`duplicate`) and, with more
/// than one request in flight, out of order (`nonmonotonic-send`).
fn licensed_anomalies(sc: &Scenario) -> Vec<&'static str> {
    if sc.producers.iter().any(|p| !p.idempotent) {
        vec!["duplicate", "nonmonotonic-send"]
    } else {
        Vec::new()
    }
}

/// How many times the scenario's liveness phase and recovery deadline a swarm run gets.
///
/// A scenario sizes both for its own faults. Swarm faults are up to [`sluice_sim::faults::SWARM_FAULTS_MAX`]
/// at once, each up to a quarter of the safety phase, and a consumer crash during a coordinator
/// failover keeps its partitions unowned for the crash, the failover and then a whole session
/// timeout (the new coordinator renews every loaded member's session, as Kafka's does). The backlog
/// that builds drains only at the owning consumer's headroom, so with the scenario's own deadline a
/// group that is draining steadily was reported as not recovered (seen at about 1 seed in 25 on
/// `hot-partition` and `pause-across-rebalance`, each a few seconds short). Twice the time keeps
/// those apart from a group that is stuck: a partition left paused, unowned or not committing
/// still fails at the longer deadline.
pub const SWARM_LIVENESS_FACTOR: u64 = 2;

/// Swarm faults replace the schedule the scenario's expectations were written for: what it expects
/// may not happen (so it may be absent), what its settings license may happen under other faults,
/// and recovery from the heavier faults gets [`SWARM_LIVENESS_FACTOR`] times the time. Written into
/// the swarm scenario file, so a replay judges exactly as the exploration did.
fn swarm_expectations(sc: &mut Scenario) {
    sc.liveness_s = sc.liveness_s.saturating_mul(SWARM_LIVENESS_FACTOR);
    sc.expect.recovery_deadline_ms = sc
        .expect
        .recovery_deadline_ms
        .saturating_mul(SWARM_LIVENESS_FACTOR);
    sc.expect.anomalies_may_be_absent = true;
    for a in licensed_anomalies(sc) {
        if !sc.expect.anomalies.iter().any(|e| e == a) {
            sc.expect.anomalies.push(a.to_string());
        }
    }
}

/// Whether a finished run counts as a failure in exploration: an anomaly the scenario does not
/// expect (expected anomalies may be absent on some seeds), or a run that could not finish.
fn unexpected_names(sim: &Simulated) -> Vec<String> {
    sim.judgement.unexpected_anomalies.clone()
}

/// Runs many seeds on `opts.threads` workers, reports failing seeds with their replay command, and
/// shrinks the first failure's fault schedule to a minimal one written as a scenario file.
pub fn explore(
    scenario: &Scenario,
    opts: &ExploreOptions,
    progress: &(dyn Fn(ExploreProgress) + Sync),
) -> Result<ExploreSummary, RunError> {
    if opts.seeds == 0 || opts.seeds > EXPLORE_SEEDS_MAX {
        return Err(RunError::Options(format!("--seeds must be within 1..={EXPLORE_SEEDS_MAX}, got {}", opts.seeds)));
    }
    let Some(_) = opts.first_seed.checked_add(opts.seeds) else {
        return Err(RunError::Options("the seed range overflows u64".into()));
    };
    let mut sc = scenario.clone();
    if opts.swarm {
        sc.faults = Faults::Swarm(SwarmWord::Swarm);
        sc.name = format!("{}-swarm", scenario.name);
        swarm_expectations(&mut sc);
    }
    sc.validate().map_err(|problems| RunError::Invalid { scenario: sc.name.clone(), problems })?;
    create_dir(&opts.out_dir)?;
    let explored_file = opts.out_dir.join(format!("{}.toml", sc.name));
    let target = if !opts.swarm && catalogue_name(&sc).is_some() {
        sc.name.clone()
    } else {
        let text = to_toml(&sc).map_err(|e| RunError::Write { path: explored_file.display().to_string(), message: e.to_string() })?;
        write(&explored_file, text)?;
        explored_file.display().to_string()
    };

    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Result<Simulated, String>)>> = Mutex::new(Vec::new());
    let threads = opts.threads.clamp(1, 256);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.seeds || interrupted() {
                    break;
                }
                let seed = opts.first_seed + i;
                let r = simulate(&sc, seed, opts.bugs, true);
                let is_failure = match &r {
                    Ok(sim) => !unexpected_names(sim).is_empty(),
                    Err(_) => true,
                };
                // Keep only what the report needs: histories of passing seeds are dropped at once.
                let kept = match r {
                    Ok(sim) if is_failure => Ok(Simulated { history: Vec::new(), ..sim }),
                    Ok(sim) => Ok(Simulated { history: Vec::new(), faults: Vec::new(), ..sim }),
                    Err(e) => Err(e.to_string()),
                };
                if is_failure {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).push((seed, kept));
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(ExploreProgress { done: d, total: opts.seeds, failures: failed.load(Ordering::Relaxed) });
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(seed, _)| *seed);

    let mut failures = Vec::new();
    let mut expected_seen = 0;
    let mut first_failure: Option<(u64, Simulated)> = None;
    // Distributions across seeds for the sweep plots (runs that went to the end only: a run
    // stopped at its first violation has no meaningful peaks).
    let mut max_lag = Vec::new();
    let mut recovery_s = Vec::new();
    let mut buffer_peak = Vec::new();
    for (seed, r) in results {
        let replay = replay_command(&target, seed, None, opts.bugs);
        match r {
            Ok(sim) => {
                if !sim.stopped_early {
                    let sm = &sim.report.summary;
                    max_lag.push(sm.max_lag_records as f64);
                    if let Some(ms) = sm.recovery_time_ms {
                        recovery_s.push(ms as f64 / 1_000.0);
                    }
                    buffer_peak.push(sm.buffer_peak_records.values().copied().max().unwrap_or(0) as f64);
                }
                // The scenario's own expectations (not the ones the settings license in a swarm).
                let own = &scenario.expect.anomalies;
                if !own.is_empty() && own.iter().all(|a| !sim.judgement.missing.contains(a)) {
                    expected_seen += 1;
                }
                let names = unexpected_names(&sim);
                if !names.is_empty() {
                    failures.push(SeedFailure { seed, anomalies: names, first: sim.judgement.unexpected.first().cloned(), error: None, replay });
                    if first_failure.is_none() {
                        first_failure = Some((seed, sim));
                    }
                }
            }
            Err(e) => failures.push(SeedFailure { seed, anomalies: Vec::new(), first: None, error: Some(e), replay }),
        }
    }
    let shrunk = match first_failure {
        Some((seed, sim)) if opts.shrink => Some(shrink_failure(&sc, seed, opts.bugs, &sim, &opts.out_dir)?),
        _ => None,
    };
    let metrics: Vec<(String, Vec<f64>)> = [
        ("max lag (records)", max_lag),
        ("recovery time (s)", recovery_s),
        ("peak buffer (records)", buffer_peak),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    if !metrics.is_empty() {
        let images = sluice_plots::render_sweep(&metrics, &opts.out_dir).map_err(|e| RunError::Write { path: opts.out_dir.display().to_string(), message: e.to_string() })?;
        let html = format!(
            "<p>{} seeds of <code>{}</code>, {} failing. Distributions over the seeds that ran to the end.</p>",
            opts.seeds,
            html_escape(&sc.name),
            failures.len()
        );
        sluice_plots::write_index(&opts.out_dir, &format!("explore {}", sc.name), &html, &images)
            .map_err(|e| RunError::Write { path: opts.out_dir.display().to_string(), message: e.to_string() })?;
    }
    Ok(ExploreSummary { scenario: sc.name.clone(), seeds_run: opts.seeds, expected_seen, failures, shrunk })
}

/// Reduces the failing run's injected faults to a minimal schedule that, replayed at the same seed,
/// still shows the same first unexpected anomaly; writes it as a scenario file.
fn shrink_failure(sc: &Scenario, seed: u64, bugs: Bugs, sim: &Simulated, out_dir: &Path) -> Result<Shrunk, RunError> {
    let anomaly = sim
        .judgement
        .unexpected
        .first()
        .map(|v| v.anomaly.clone())
        .or_else(|| sim.judgement.unexpected_anomalies.first().cloned())
        .unwrap_or_default();
    let mut base = sc.clone();
    base.name = format!("{}-seed{seed}-shrunk", sc.name.trim_end_matches("-swarm"));
    base.description = format!(
        "Minimal fault schedule that reproduces {anomaly} at seed {seed}, shrunk from {} faults. {}",
        sim.faults.len(),
        sc.description
    );
    let runs = std::cell::Cell::new(0usize);
    let fails = |faults: &[Fault]| -> bool {
        runs.set(runs.get() + 1);
        let mut s = base.clone();
        s.faults = Faults::Schedule(faults.to_vec());
        match simulate(&s, seed, bugs, true) {
            Ok(r) => r.judgement.unexpected_anomalies.contains(&anomaly),
            Err(_) => false,
        }
    };
    let before = sim.faults.clone();
    let (minimal, reproduced) = match sluice_verification::shrink::shrink(&before, SHRINK_RUNS_MAX, |fs| fails(fs)) {
        Ok(s) => (s.events, true),
        Err(_) => (before.clone(), false),
    };
    base.faults = Faults::Schedule(minimal.clone());
    let file = out_dir.join(format!("{}.toml", base.name));
    let text = to_toml(&base).map_err(|e| RunError::Write { path: file.display().to_string(), message: e.to_string() })?;
    write(&file, text)?;
    Ok(Shrunk {
        seed,
        faults_before: before.len(),
        faults_after: minimal.len(),
        reproduced,
        file: file.display().to_string(),
        replay: replay_command(&file.display().to_string(), seed, None, bugs),
        runs: runs.get(),
    })
}

/// The result of checking a recorded history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckSummary {
    pub file: String,
    pub scenario: String,
    pub seed: u64,
    pub source: String,
    pub entries: usize,
    pub hash: String,
    pub expected: Vec<String>,
    pub judgement: Judgement,
    pub stats: Stats,
    pub report: Report,
}

impl CheckSummary {
    pub fn table(&self) -> String {
        let j = &self.judgement;
        let mut t = format!("{} ({} history of {}, seed {})\n", self.file, self.source, self.scenario, self.seed);
        let verdict = if j.pass { "PASS" } else { "FAIL" };
        let seen = if j.observed.is_empty() { "all invariants held".to_string() } else { format!("anomalies seen: {}", j.observed.join(", ")) };
        let _ = writeln!(t, "  verdict: {verdict} ({seen})");
        if !j.missing.is_empty() {
            let _ = writeln!(t, "  expected but missing: {}", j.missing.join(", "));
        }
        for v in j.unexpected.iter().take(10) {
            let _ = writeln!(t, "  violation: {} [{}]: {}", v.anomaly, v.rule, v.detail);
        }
        for line in crate::summary::input_error_lines(j) {
            let _ = writeln!(t, "  input error: {line}");
        }
        if let Some(longest) = &self.stats.stall_longest {
            let _ = writeln!(t, "  stalls: {} (longest {longest})", self.stats.stalls);
        }
        let _ = write!(t, "  {} entries, hash {}", self.entries, self.hash);
        t
    }
}

/// Reads a JSON Lines history.
pub fn read_history(path: &Path) -> Result<Vec<Entry>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::Read { path: path.display().to_string(), message: e.to_string() })?;
    history::parse_jsonl(&text).map_err(|source| RunError::History { path: path.display().to_string(), source })
}

/// Runs every checker over a recorded history (simulated or real) and judges it against the
/// expectations its meta line declares.
pub fn check_file(path: &Path) -> Result<CheckSummary, RunError> {
    let h = read_history(path)?;
    let Some(Entry { ev: Event::Meta(m), .. }) = h.first() else {
        return Err(RunError::History {
            path: path.display().to_string(),
            source: history::HistoryError { line: 1, message: "the first line must be the meta line".into() },
        });
    };
    let history::Meta { scenario, seed, source, expect, settings, .. } = &**m;
    let may_be_absent = settings.get("anomalies_may_be_absent").is_some_and(|v| v == "true");
    let report = sluice_verification::check(&h);
    let judgement = judge(&report, expect, may_be_absent);
    Ok(CheckSummary {
        file: path.display().to_string(),
        scenario: scenario.clone(),
        seed: *seed,
        source: source.clone(),
        entries: h.len(),
        hash: hex(history::hash_entries(&h)),
        expected: expect.clone(),
        judgement,
        stats: Stats::of(&h).with_report(&report),
        report,
    })
}

/// Draws the plots of a history file, or of `dir/history.jsonl` for a run directory, next to it.
pub fn plot(path: &Path) -> Result<(PathBuf, Option<String>), RunError> {
    let (file, dir) = if path.is_dir() {
        (path.join("history.jsonl"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.parent().map_or_else(|| PathBuf::from("."), |p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() }))
    };
    let h = read_history(&file)?;
    let report = sluice_verification::check(&h);
    let table = Stats::of(&h).with_report(&report);
    let title = match h.first().map(|e| &e.ev) {
        Some(Event::Meta(m)) => format!("{} seed {}", m.scenario, m.seed),
        _ => file.display().to_string(),
    };
    let text = serde_json::to_string_pretty(&table).unwrap_or_default();
    Ok((dir.join("index.html"), draw_run(&h, &report, &dir, &title, &text)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_commands_name_every_choice() {
        use sluice_core::bugs::Bug;
        let cases = [
            (None, Bugs::NONE, "cargo sluice run s0 --seed 7"),
            (Some(Strategy::Pause), Bugs::NONE, "cargo sluice run s0 --seed 7 --strategy pause"),
            (
                None,
                Bugs::only(Bug::IgnoreCredits).with(Bug::TierLeak),
                "cargo sluice run s0 --seed 7 --plant ignore-credits --plant tier-leak",
            ),
        ];
        for (st, bugs, want) in cases {
            assert_eq!(replay_command("s0", 7, st, bugs), want);
        }
    }

    #[test]
    fn swarm_expectations_license_what_the_settings_allow() {
        // (scenario, expected anomalies of its swarm variant)
        let cases: [(&str, &[&str]); 3] = [
            ("steady", &[]),
            ("broker-crash-acks-all", &[]),
            ("unclean-election", &["lost-write", "inconsistent-offsets", "nonmonotonic-send", "duplicate"]),
        ];
        for (name, want) in cases {
            let mut sc = crate::load(name).unwrap();
            let base = sc.clone();
            swarm_expectations(&mut sc);
            assert!(sc.expect.anomalies_may_be_absent, "{name}");
            assert_eq!(sc.liveness_s, 2 * base.liveness_s, "{name}");
            assert_eq!(
                sc.expect.recovery_deadline_ms,
                2 * base.expect.recovery_deadline_ms,
                "{name}"
            );
            assert_eq!(sc.expect.anomalies, want, "{name}");
        }
    }

    #[test]
    fn every_comparison_variant_keeps_a_valid_scenario() {
        for by in [CompareBy::Strategy, CompareBy::Protocol, CompareBy::Placement] {
            for name in catalogue::names() {
                let base = crate::load(name).unwrap();
                for v in by.variants() {
                    let mut s = base.clone();
                    (v.patch)(&mut s);
                    assert!(s.validate().is_ok(), "{name} by {} / {}: {:?}", by.name(), v.name, s.validate());
                }
            }
        }
    }
}
