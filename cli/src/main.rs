//! `cargo sluice <subcommand>`: the one entry point. Thin: parse flags, call the libraries, print,
//! choose the exit code. See cli/README.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_core::bugs::{Bug, Bugs};
use sluice_core::spec::{BrokerProfile, Strategy};
use sluice_scenarios::runner::{self, CompareBy, ExploreOptions, RunError};
use sluice_scenarios::{catalogue, load, ScenarioError};

/// Prints a line to stdout; a closed pipe (`sluice list | head`) is not an error worth a panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// As [`say!`] without the newline.
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

const EXIT_CODES: &str = "\
Exit codes:
  0    every invariant held (or every expected anomaly was seen)
  1    a violation (or an expected anomaly missing), or a run that could not finish
  2    bad input: malformed scenario file, bad flag, impossible configuration, unreadable history
       (for `check`, also a history that contradicts itself)
  130  interrupted (Ctrl-C)

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=sluice_sim=debug) to see them.";

/// Deterministic simulation and verification of Kafka consumer flow control.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Machine-readable output (one JSON document on stdout); hides progress bars.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The scenario catalogue: names and one-line descriptions.
    List,
    /// Simulate one scenario at one seed; print the summary, write history, report and plots.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// A catalogue name (see `list`) or a scenario TOML file.
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (default out/<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's backpressure strategy.
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Switch on a planted bug (repeatable).
        #[arg(long = "plant", value_name = "BUG", value_parser = parse_bug)]
        plant: Vec<Bug>,
    },
    /// Run one scenario at one seed under several strategies, protocols or placements.
    #[command(after_help = EXIT_CODES)]
    Compare {
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = ByArg::Strategy)]
        by: ByArg,
        /// Output directory (default out/<scenario>-<seed>-by-<by>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "plant", value_name = "BUG", value_parser = parse_bug)]
        plant: Vec<Bug>,
    },
    /// Run many seeds with swarm faults on every core; report failing seeds and shrink the first.
    #[command(after_help = EXIT_CODES)]
    Explore {
        /// A catalogue name or a scenario file (default: steady).
        scenario: Option<String>,
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        #[arg(long = "plant", value_name = "BUG", value_parser = parse_bug)]
        plant: Vec<Bug>,
        /// Keep the scenario's own fault schedule instead of swarm faults.
        #[arg(long)]
        schedule: bool,
        /// Do not shrink the first failure.
        #[arg(long)]
        no_shrink: bool,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Output directory (default out/explore-<scenario>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run every checker on a recorded history (from the simulator or real mode).
    #[command(after_help = EXIT_CODES)]
    Check {
        history: PathBuf,
    },
    /// Draw the plots and index.html of a history file or a run directory.
    Plot {
        path: PathBuf,
    },
    /// Play a scenario against a live Kafka-protocol cluster and check its history.
    #[command(after_help = EXIT_CODES)]
    Real {
        scenario: String,
        /// HOST:PORT[,HOST:PORT…]
        #[arg(long)]
        brokers: String,
        /// librdkafka key=value override (repeatable).
        #[arg(short = 'X', value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Wall seconds per scenario second.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (default out/real-<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also simulate the scenario at the same seed and print fidelity statistics.
        #[arg(long)]
        compare_sim: bool,
        /// With --compare-sim: the broker profile the simulator models for the comparison
        /// (default: the scenario's `cluster.broker_profile`, normally kafka); `tansu` models the
        /// in-memory Tansu broker's join hold (docs/fidelity.md, finding F1).
        #[arg(long, value_enum, requires = "compare_sim")]
        sim_profile: Option<ProfileArg>,
        #[arg(long = "plant", value_name = "BUG", value_parser = parse_bug)]
        plant: Vec<Bug>,
        /// Script that crashes and restarts the broker for broker faults (else they are skipped).
        #[arg(long)]
        broker_script: Option<PathBuf>,
        /// The broker script manages the durable broker.
        #[arg(long)]
        durable: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    None,
    Pause,
    Credit,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::None => Strategy::None,
            StrategyArg::Pause => Strategy::Pause,
            StrategyArg::Credit => Strategy::Credit,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProfileArg {
    Kafka,
    Tansu,
}

impl From<ProfileArg> for BrokerProfile {
    fn from(p: ProfileArg) -> BrokerProfile {
        match p {
            ProfileArg::Kafka => BrokerProfile::Kafka,
            ProfileArg::Tansu => BrokerProfile::Tansu,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ByArg {
    Strategy,
    Protocol,
    Placement,
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::from_name(s).ok_or_else(|| {
        format!("unknown bug {s:?}; planted bugs: {}", Bug::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "))
    })
}

fn bugs_of(v: &[Bug]) -> Bugs {
    v.iter().fold(Bugs::NONE, |acc, b| acc.with(*b))
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: e.into() }
}

impl From<ScenarioError> for Failure {
    fn from(e: ScenarioError) -> Self {
        bad_input(e)
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        let code = if e.is_bad_input() { 2 } else { 1 };
        Failure { code, error: e.into() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 2, error }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // Help and version exit 0, usage errors 2 (clap's own codes).
        Err(e) => e.exit(),
    };
    init_logging();
    // Ctrl-C: the first asks runs to stop and keep what they recorded (histories, reports and
    // plots are still written; exit 130); a second one ends the process at once. Real mode
    // handles the signal itself to delete its topics.
    let _ = ctrlc::set_handler(|| {
        if runner::interrupted() {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping; what was recorded is being written (Ctrl-C again to quit now)");
        runner::interrupt();
    });
    let json = cli.json;
    match run(cli) {
        Ok(_) if runner::interrupted() => ExitCode::from(130),
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            if json {
                say!("{}", serde_json::json!({ "error": format!("{error:#}"), "exit_code": code }));
            }
            ExitCode::from(code)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure { code: 1, error: e.into() })?;
    say!("{s}");
    Ok(())
}

fn verdict_code(pass: bool) -> u8 {
    if pass {
        0
    } else {
        1
    }
}

/// A spinner or bar on stderr, hidden when stderr is not a terminal or output is JSON.
fn progress(json: bool, len: Option<u64>, message: String) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if json || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    } else if len.is_some() {
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} seeds, {elapsed} elapsed, eta {eta}") {
            pb.set_style(style.progress_chars("=> "));
        }
    } else {
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    pb.set_message(message);
    pb
}

fn default_out(parts: &[&str]) -> PathBuf {
    let name: Vec<String> = parts.iter().map(|p| p.replace(['/', '\\'], "_")).collect();
    Path::new("out").join(name.join("-"))
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let json = cli.json;
    match cli.cmd {
        Cmd::List => {
            let mut rows = Vec::new();
            for name in catalogue::names() {
                let s = load(name)?;
                rows.push(serde_json::json!({ "name": name, "description": s.description, "source": s.source }));
            }
            if json {
                print_json(&rows)?;
            } else {
                let width = catalogue::names().map(str::len).max().unwrap_or(0);
                for r in &rows {
                    let desc = r["description"].as_str().unwrap_or_default();
                    let first = desc.split(". ").next().unwrap_or(desc).trim_end_matches('.');
                    say!("{:<width$}  {first}", r["name"].as_str().unwrap_or_default());
                }
            }
            Ok(0)
        }
        Cmd::Run { scenario, seed, out, strategy, plant } => {
            let sc = load(&scenario)?;
            let out = out.unwrap_or_else(|| default_out(&[&sc.name, &seed.to_string()]));
            let pb = progress(json, None, format!("simulating {} at seed {seed}", sc.name));
            let r = runner::run_one(&sc, seed, strategy.map(Into::into), bugs_of(&plant), Some(&out));
            pb.finish_and_clear();
            let mut r = r?;
            if catalogue::text(&scenario).is_none() {
                // Replay by the path the user gave (the runner names the copy it wrote otherwise).
                r.replay = runner::replay_command(&scenario, seed, strategy.map(Into::into), bugs_of(&plant));
            }
            if json {
                print_json(&r)?;
            } else {
                say!("{}", r.table());
                say!("  written to: {}", out.display());
                if let Some(e) = &r.plot_error {
                    eprintln!("warning: plots not drawn: {e}");
                }
            }
            Ok(verdict_code(r.pass()))
        }
        Cmd::Compare { scenario, seed, by, out, plant } => {
            let sc = load(&scenario)?;
            let by = match by {
                ByArg::Strategy => CompareBy::Strategy,
                ByArg::Protocol => CompareBy::Protocol,
                ByArg::Placement => CompareBy::Placement,
            };
            let out = out.unwrap_or_else(|| default_out(&[&sc.name, &seed.to_string(), "by", by.name()]));
            let pb = progress(json, None, format!("comparing {} by {}", sc.name, by.name()));
            let c = runner::compare(&sc, seed, by, &by.variants(), bugs_of(&plant), Some(&out));
            pb.finish_and_clear();
            let c = c?;
            if json {
                print_json(&c)?;
            } else {
                say_raw!("{}", c.table());
                say!("  written to: {}", out.display());
                for (name, r) in &c.runs {
                    say!("  replay {name}: {}", r.replay);
                }
                if let Some(e) = &c.plot_error {
                    eprintln!("warning: comparison plots not drawn: {e}");
                }
            }
            Ok(verdict_code(c.pass))
        }
        Cmd::Explore { scenario, seeds, first_seed, plant, schedule, no_shrink, threads, out } => {
            let name = scenario.unwrap_or_else(|| "steady".to_string());
            let sc = load(&name)?;
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            if threads == 0 {
                return Err(bad_input(anyhow::anyhow!("--threads must be at least 1")));
            }
            let opts = ExploreOptions {
                first_seed,
                seeds,
                bugs: bugs_of(&plant),
                swarm: !schedule,
                threads,
                shrink: !no_shrink,
                out_dir: out.unwrap_or_else(|| default_out(&["explore", &sc.name])),
            };
            let pb = progress(json, Some(seeds), format!("exploring {}", sc.name));
            let x = runner::explore(&sc, &opts, &|p| {
                pb.set_position(p.done);
                pb.set_message(format!("exploring {} ({} failing)", sc.name, p.failures));
            });
            pb.finish_and_clear();
            let x = x?;
            if json {
                print_json(&x)?;
            } else {
                say_raw!("{}", x.table());
            }
            Ok(verdict_code(x.pass()))
        }
        Cmd::Check { history } => {
            let c = runner::check_file(&history)?;
            if json {
                print_json(&c)?;
            } else {
                say!("{}", c.table());
            }
            // A history that contradicts itself is bad input: its verdict cannot be trusted.
            Ok(if c.judgement.input_errors.is_empty() { verdict_code(c.judgement.pass) } else { 2 })
        }
        Cmd::Plot { path } => {
            let (index, err) = runner::plot(&path)?;
            if json {
                print_json(&serde_json::json!({ "index": index, "plot_error": err }))?;
            } else if err.is_none() {
                say!("{}", index.display());
            }
            match err {
                None => Ok(0),
                Some(e) => Err(Failure { code: 1, error: anyhow::anyhow!("plots not drawn: {e}") }),
            }
        }
        Cmd::Real { scenario, brokers, overrides, time_scale, seed, out, compare_sim, sim_profile, plant, broker_script, durable } => {
            let sc = load(&scenario)?;
            let out = out.unwrap_or_else(|| default_out(&["real", &sc.name, &seed.to_string()]));
            let compare_sim = compare_sim.then(|| sim_profile.map(BrokerProfile::from).unwrap_or(sc.cluster.broker_profile));
            real(sc, brokers, overrides, time_scale, seed, out, compare_sim, bugs_of(&plant), broker_script, durable, json)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn real(
    sc: sluice_core::spec::Scenario,
    brokers: String,
    overrides: Vec<String>,
    time_scale: f64,
    seed: u64,
    out: PathBuf,
    compare_sim: Option<BrokerProfile>,
    bugs: Bugs,
    broker_script: Option<PathBuf>,
    durable: bool,
    json: bool,
) -> Result<u8, Failure> {
    use sluice_real::{BrokerControl, RealArgs, RealError};
    let mut args = RealArgs::new(sc.clone(), brokers, out.clone());
    args.overrides = overrides;
    args.time_scale = time_scale;
    args.seed = seed;
    args.compare_sim = compare_sim.is_some();
    args.bugs = bugs;
    args.broker_control = broker_script.map(|script| BrokerControl { script, durable });
    let pb = progress(json, None, format!("playing {} against the cluster", sc.name));
    let outcome = sluice_real::run_cli(args);
    pb.finish_and_clear();
    let outcome = outcome.map_err(|e: RealError| Failure { code: e.exit_code(), error: e.into() })?;
    let check = runner::check_file(&outcome.history_path)?;
    // The simulated side models the broker profile asked for; its history's `Meta.settings` (and
    // so the fidelity figures' `sim_calibration`) say which.
    let sim = match compare_sim {
        Some(profile) => {
            let mut sim_sc = sc.clone();
            sim_sc.cluster.broker_profile = profile;
            sim_sc.validate().map_err(|problems| {
                bad_input(anyhow::anyhow!(
                    "the scenario with broker profile {}: {}",
                    profile.name(),
                    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
                ))
            })?;
            Some(runner::simulate(&sim_sc, seed, bugs, false)?)
        }
        None => None,
    };
    let fidelity = sim.as_ref().map(|sim| sluice_real::fidelity::compare(&sim.history, &outcome.history));
    // The same pictures as a simulated run, plus the sim-vs-real overlay when both exist.
    let overlay: Vec<(String, Vec<sluice_core::history::Entry>)> = match &sim {
        Some(sim) => vec![("sim".to_string(), sim.history.clone()), ("real".to_string(), outcome.history.clone())],
        None => Vec::new(),
    };
    let plot_failure = |e: sluice_plots::PlotError| Failure { code: 1, error: anyhow::anyhow!("plots for {}: {e}", out.display()) };
    let stalls = runner::stall_spans(&outcome.history, &check.report);
    let rendered = sluice_plots::render_all_with(&outcome.history, &stalls, &overlay, &out).map_err(plot_failure)?;
    let mut html = format!("<pre>{}</pre>", check.table().replace('&', "&amp;").replace('<', "&lt;"));
    if let Some(f) = &fidelity {
        html.push_str(&format!("<h2>Fidelity vs the simulator</h2><pre>{}</pre>", serde_json::to_string_pretty(f).unwrap_or_default().replace('<', "&lt;")));
    }
    sluice_plots::write_index(&out, &format!("real {} (seed {seed})", sc.name), &html, &rendered.files).map_err(plot_failure)?;
    if json {
        print_json(&serde_json::json!({
            "check": check,
            "skipped_faults": outcome.skipped_faults,
            "cleanup_problems": outcome.cleanup_problems,
            "member_failures": outcome.member_failures,
            "fidelity": fidelity,
        }))?;
    } else {
        say!("{}", check.table());
        for s in &outcome.skipped_faults {
            say!("  skipped fault: {s}");
        }
        for s in outcome.cleanup_problems.iter().chain(&outcome.member_failures) {
            eprintln!("warning: {s}");
        }
        if let Some(f) = &fidelity {
            say!("  fidelity vs the simulator: {}", serde_json::to_string(f).context("fidelity").map_err(Failure::from)?);
        }
        say!("  history: {}", outcome.history_path.display());
    }
    Ok(verdict_code(check.judgement.pass && outcome.member_failures.is_empty()))
}
