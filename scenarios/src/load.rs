//! Loading a scenario from the catalogue or a TOML file, with errors that point at the file, line
//! and column, and every validation problem with its field path.

use std::fmt;
use std::path::Path;

use sluice_core::spec::{Faults, Scenario};

use crate::catalogue;

/// One validation problem: the dotted field path, what is wrong, and where in the file the field
/// (or the nearest enclosing table that is written out) sits, when the scenario came from text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    /// 1-based line of the field, or of its nearest written ancestor.
    pub line: Option<usize>,
}

/// A position in a text file, 1-based, with the offending line for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The text of the offending line (without its newline).
    pub text: String,
}

impl fmt::Display for Location {
    /// Renders the line with a caret under the column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gutter = self.line.to_string();
        writeln!(f, "{} |", " ".repeat(gutter.len()))?;
        writeln!(f, "{gutter} | {}", self.text)?;
        write!(f, "{} | {}^", " ".repeat(gutter.len()), " ".repeat(self.column.saturating_sub(1)))
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Neither a catalogue name nor an existing file.
    #[error("unknown scenario {name:?}: not a catalogue name and no such file (catalogue: {})", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    /// The file exists (or was named as a path) but cannot be read.
    #[error("cannot read {file}: {message}")]
    Io { file: String, message: String },
    /// The TOML does not parse or does not fit the spec (unknown field, wrong type, missing field).
    #[error("{file}:{}: {message}{}", position(location), snippet(location))]
    Parse { file: String, message: String, location: Option<Location> },
    /// The scenario parses but describes an impossible configuration.
    #[error("{file}: invalid scenario ({} problem{}):{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, list(file, problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

fn position(l: &Option<Location>) -> String {
    match l {
        Some(l) => format!("{}:{}", l.line, l.column),
        None => "?:?".into(),
    }
}

fn snippet(l: &Option<Location>) -> String {
    match l {
        Some(l) => format!("\n{l}"),
        None => String::new(),
    }
}

fn list(file: &str, problems: &[Problem]) -> String {
    let mut s = String::new();
    for p in problems {
        match p.line {
            Some(line) => s.push_str(&format!("\n  {file}:{line}: {}: {}", p.path, p.message)),
            None => s.push_str(&format!("\n  {}: {}", p.path, p.message)),
        }
    }
    s
}

/// Loads a scenario by catalogue name, or from a TOML file path, and validates it.
///
/// A catalogue name wins over a file of the same name in the working directory; anything that is
/// not a catalogue name is read as a path.
pub fn load(path_or_name: &str) -> Result<Scenario, ScenarioError> {
    if let Some(text) = catalogue::text(path_or_name) {
        return parse_str(text, &format!("catalogue/{path_or_name}.toml"));
    }
    let path = Path::new(path_or_name);
    let looks_like_path = path_or_name.contains(['/', '\\']) || path_or_name.ends_with(".toml");
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, path_or_name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !looks_like_path => Err(ScenarioError::Unknown {
            name: path_or_name.to_string(),
            known: catalogue::names().map(String::from).collect(),
        }),
        Err(e) => Err(ScenarioError::Io { file: path_or_name.to_string(), message: e.to_string() }),
    }
}

/// Parses and validates scenario TOML. `file` names the source in error messages.
pub fn parse_str(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| {
        let explained = if e.message().contains("untagged enum Faults") { explain_faults(text) } else { None };
        let (message, span) = explained.unwrap_or_else(|| (e.message().to_string(), e.span()));
        ScenarioError::Parse {
            file: file.to_string(),
            message: message.trim_end().to_string(),
            location: span.map(|s| locate(text, s.start)),
        }
    })?;
    if let Some((index, key, offset, known)) = unknown_fault_field(text, &scenario) {
        return Err(ScenarioError::Parse {
            file: file.to_string(),
            message: format!("unknown field `{key}` in faults[{index}], expected one of {}", known.join(", ")),
            location: Some(locate(text, offset)),
        });
    }
    scenario.validate().map_err(|errs| ScenarioError::Invalid {
        file: file.to_string(),
        problems: errs
            .into_iter()
            .map(|e| Problem { line: line_of_path(text, &e.path), path: e.path, message: e.message })
            .collect(),
    })?;
    Ok(scenario)
}

/// Serializes a scenario back to TOML that [`parse_str`] reads to an equal scenario.
pub fn to_toml(s: &Scenario) -> Result<String, ScenarioError> {
    toml::to_string(s).map_err(|e| ScenarioError::Io { file: s.name.clone(), message: format!("cannot serialize: {e}") })
}

/// The 1-based line and column of byte `offset` in `text` (clamped to the text; columns count
/// characters, not bytes).
pub fn locate(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    Location { line, column, text: text[line_start..line_end].trim_end_matches('\r').to_string() }
}

/// `faults` is either the word "swarm" or a schedule, and serde's answer for an untagged enum says
/// only that neither fits. Parsing the schedule alone gives the real reason (an unknown fault kind,
/// a missing field) with its position.
fn explain_faults(text: &str) -> Option<(String, Option<std::ops::Range<usize>>)> {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Schedule {
        faults: Vec<sluice_core::spec::Fault>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Word {
        faults: String,
    }
    let e = toml::from_str::<Schedule>(text).err()?;
    if toml::from_str::<Word>(text).is_ok() {
        return Some(("faults must be \"swarm\" or a schedule of [[faults]] tables".into(), e.span()));
    }
    Some((e.message().to_string(), e.span()))
}

/// The first key written in a `[[faults]]` entry that its fault kind does not have: `(index, key,
/// byte offset of the key, the kind's keys)`. Needed because the spec's `Fault` flattens its kind,
/// and serde's `deny_unknown_fields` does not work across `flatten`; a parsed fault serializes every
/// field it has, so any other written key is unknown.
fn unknown_fault_field(text: &str, scenario: &Scenario) -> Option<(usize, String, usize, Vec<String>)> {
    let Faults::Schedule(faults) = &scenario.faults else { return None };
    let root = toml::de::DeTable::parse(text).ok()?;
    let written = root.get_ref().get("faults")?.get_ref().as_array()?;
    for (i, (entry, fault)) in written.iter().zip(faults).enumerate() {
        let Some(table) = entry.get_ref().as_table() else { continue };
        let Ok(toml::Value::Table(known)) = toml::Value::try_from(fault) else { continue };
        for (key, _) in table.iter() {
            if !known.contains_key(key.get_ref().as_ref()) {
                let names = known.keys().cloned().collect();
                return Some((i, key.get_ref().to_string(), key.span().start, names));
            }
        }
    }
    None
}

/// Splits `consumers.rate_limits[0].burst` into `["consumers", "rate_limits", 0, "burst"]`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(Segment::Key(&rest[..i]));
            rest = &rest[i..];
            while let Some(close) = rest.find(']') {
                if let Ok(n) = rest[1..close].parse() {
                    out.push(Segment::Index(n));
                }
                rest = &rest[close + 1..];
                if !rest.starts_with('[') {
                    break;
                }
            }
        } else {
            out.push(Segment::Key(rest));
        }
    }
    out
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The line of the deepest written element on `path` (the field itself when it is written out, else
/// the table that would hold it). `None` when the text does not parse or nothing on the path is
/// written.
fn line_of_path(text: &str, path: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut cur = toml::de::DeValue::Table(root.into_inner());
    for seg in segments(path) {
        let next = match seg {
            Segment::Key(k) => cur.get(k),
            Segment::Index(i) => cur.get(i),
        };
        let Some(next) = next else { break };
        best = Some(next.span().start);
        let owned = next.get_ref().clone();
        cur = owned;
    }
    best.map(|off| locate(text, off).line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        for (offset, line, column) in [(0, 1, 1), (4, 1, 5), (6, 2, 1), (10, 2, 4), (999, 3, 1)] {
            let l = locate(text, offset);
            assert_eq!((l.line, l.column), (line, column), "offset {offset}");
        }
    }

    #[test]
    fn paths_resolve_to_the_line_of_the_field_or_its_table() {
        let text = "name = \"x\"\n[cluster]\nbrokers = 2\n\n[[producers]]\ntopic = \"t\"\n\n[[producers]]\nrate_per_s = 0\n";
        for (path, line) in [
            ("cluster.brokers", Some(3)),
            ("cluster.replication_factor", Some(2)),
            ("producers[1].rate_per_s", Some(9)),
            ("producers[0].topic", Some(6)),
            ("consumers.count", None),
        ] {
            assert_eq!(line_of_path(text, path), line, "{path}");
        }
    }
}
