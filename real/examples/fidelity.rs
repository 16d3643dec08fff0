//! Compares a simulated and a real history of the same scenario and prints the fidelity table
//! (markdown) against the targets of `sluice_real::fidelity`.
//!
//! ```text
//! cargo run --release -p sluice-real --example fidelity -- SIM.jsonl REAL.jsonl [LABEL]
//! ```
//!
//! The histories come from `cargo sluice run <scenario> --seed N --out DIR` and
//! `cargo sluice real <scenario> --brokers HOST:PORT --seed N --out DIR` (each writes
//! `DIR/history.jsonl`). Exit codes: 0 printed, 2 bad arguments or unreadable histories.

use std::process::ExitCode;

use sluice_core::history;
use sluice_real::fidelity;

fn load(path: &str) -> Result<Vec<history::Entry>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    history::parse_jsonl(&text).map_err(|e| format!("{path}: line {}: {}", e.line, e.message))
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        eprintln!("usage: fidelity SIM.jsonl REAL.jsonl [LABEL]");
        return ExitCode::from(2);
    }
    let (sim, real) = match (load(&args[0]), load(&args[1])) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("fidelity: {e}");
            return ExitCode::from(2);
        }
    };
    let label = args.get(2).cloned().unwrap_or_default();
    let f = fidelity::compare(&sim, &real);
    let calibration: Vec<String> = f.sim_calibration.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "<!-- {label}: window {:.1} s, real time scale {}, rebalances sim {} / real {}, sim calibration: {} -->",
        f.window_s,
        f.real_time_scale,
        f.rebalances_sim,
        f.rebalances_real,
        if calibration.is_empty() { "not recorded".to_string() } else { calibration.join(" ") }
    );
    for v in f.verdicts() {
        let verdict = match v.pass {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "—",
        };
        println!("| {label} | {} | {} | {} | {} | {} | {verdict} |", v.metric, num(v.sim), num(v.real), num(v.error), v.target);
    }
    ExitCode::SUCCESS
}
