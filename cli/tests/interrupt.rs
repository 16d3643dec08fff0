//! Ctrl-C during a simulated run: the run stops, what it recorded is written (the history ends with
//! a `phase: end` line), and the exit code is 130.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ctrl_c_keeps_the_recorded_history_and_exits_130() {
    let dir = std::env::temp_dir().join(format!("sluice-interrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // s0 simulates an hour: long enough to be interrupted mid-run.
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "s0", "--seed", "1", "--out"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    std::thread::sleep(Duration::from_secs(3));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).expect("the history was written");
    let last = history.lines().last().expect("a non-empty history");
    assert!(last.contains(r#""kind":"phase","phase":"end""#), "last line: {last}");
    assert!(history.lines().count() > 1_000, "the run had recorded something before the interrupt");
    let _ = std::fs::remove_dir_all(&dir);
}
