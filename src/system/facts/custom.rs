//! Custom facts, as Ansible's `facts.d` and Puppet's external facts: the
//! facts directory (`facts_dir` in the agent config) holds data files and
//! programs, each one fact, `facts.custom.<file stem>`:
//!
//! - `NAME.toml` and `NAME.json`: the file's data;
//! - any other file with an execute bit: a program run without arguments
//!   whose output is the data: JSON, or else `key=value` lines (Puppet's
//!   form, a map of strings). It runs through the one subprocess helper,
//!   bounded as hooks are (a timeout, killed with its process group, what
//!   it leaves running killed too) with its output capped and a clean
//!   environment, and only if it could only have been written by root
//!   (as hooks).
//!
//! Hidden files and files that are neither are ignored (a README, an
//! editor's backup). A fact that cannot be read is that fact's failure,
//! naming its file: a template that reads it fails; the others render.
//!
//! A program runs only when its fact is needed: on a converge whose cached
//! desired state read no custom fact, none runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cancel::Cancel;
use crate::desired::{CustomFact, CustomFacts, Facts};
use crate::system::command::Cmd;

/// How long a fact's program may run.
pub(crate) const PROGRAM_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a fact (a file, or a program's output) may hold.
pub(crate) const FACT_MAX: usize = 1 << 20;

/// The facts directory, listed.
#[derive(Debug)]
pub(crate) struct FactsDir {
    /// Each fact's files by name (more than one is an error of that fact),
    /// or why the directory could not be listed.
    listing: Result<BTreeMap<String, Vec<PathBuf>>, String>,
}

impl FactsDir {
    /// Lists `dir`. A missing directory holds no facts.
    pub(crate) fn open(dir: &Path) -> Self {
        Self { listing: list(dir) }
    }

    /// Reads into `facts.custom` the facts `names` (`None`: all) that are
    /// not there yet.
    pub(crate) fn fill(&self, facts: &mut Facts, names: Option<&[&str]>, cancel: &Cancel) {
        let listing = match &self.listing {
            Ok(l) => l,
            Err(e) => {
                facts.custom = CustomFacts::Unreadable(e.clone());
                return;
            }
        };
        let CustomFacts::Read(read) = &mut facts.custom else {
            return;
        };
        for (name, files) in listing {
            if names.is_some_and(|n| !n.contains(&name.as_str())) || read.contains_key(name) {
                continue;
            }
            read.insert(name.clone(), read_fact(files, cancel));
        }
    }
}

/// What a directory entry is to the facts.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Toml,
    Json,
    Program,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Some(Kind::Toml),
        Some("json") => Some(Kind::Json),
        _ if meta.permissions().mode() & 0o111 != 0 => Some(Kind::Program),
        _ => None,
    }
}

fn list(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(format!(
                "failed to list the facts directory {}: {e}",
                dir.display()
            ));
        }
    };
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("failed to list the facts directory {}: {e}", dir.display()))?
            .path();
        if kind_of(&path).is_none() {
            tracing::debug!(path = %path.display(), "not a custom fact: ignored");
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        out.entry(stem.to_owned()).or_default().push(path);
    }
    for files in out.values_mut() {
        files.sort();
    }
    Ok(out)
}

fn read_fact(files: &[PathBuf], cancel: &Cancel) -> CustomFact {
    let result = match files {
        [one] => read_file(one, cancel),
        more => Err(format!(
            "{} define the same fact: keep one",
            more.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        )),
    };
    match result {
        Ok(v) => CustomFact::Value(v),
        Err(e) => {
            tracing::warn!(error = %e, "custom fact failed: {e}");
            CustomFact::Failed(e)
        }
    }
}

fn read_file(path: &Path, cancel: &Cancel) -> Result<serde_json::Value, String> {
    let shown = path.display();
    match kind_of(path) {
        Some(Kind::Program) => run(path, cancel),
        Some(kind) => {
            // Its data steers `when` and templates as a program's output
            // does: root's alone, as a program must be.
            crate::system::trust::check_program(path)
                .map_err(|e| format!("custom fact file {shown} refused: {e:#}"))?;
            let bytes = read_capped(path).map_err(|e| format!("failed to read {shown}: {e}"))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8"))?;
            if kind == Kind::Toml {
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| format!("{shown}: invalid TOML: {e}"))?;
                serde_json::to_value(table).map_err(|e| format!("{shown}: {e}"))
            } else {
                serde_json::from_str(&text).map_err(|e| format!("{shown}: invalid JSON: {e}"))
            }
        }
        None => Err(format!("{shown} is no longer a custom fact file")),
    }
}

/// The bytes of `path`, refused over [`FACT_MAX`].
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(FACT_MAX as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > FACT_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {FACT_MAX} bytes"
        )));
    }
    Ok(bytes)
}

fn run(path: &Path, cancel: &Cancel) -> Result<serde_json::Value, String> {
    let shown = path.display();
    // Run as root: nobody else may be able to change it (as a hook).
    crate::system::trust::check_program(path)
        .map_err(|e| format!("custom fact program {shown} refused: {e:#}"))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let out = Cmd::new(&path.to_string_lossy())
        .timeout(PROGRAM_TIMEOUT)
        .output_max(FACT_MAX)
        .clear_env()
        .kill_leftovers()
        .current_dir(dir)
        .run(cancel)
        .map_err(|e| e.to_string())?;
    parse_output(&out.stdout).map_err(|e| format!("{shown} printed {e}"))
}

/// A program's output: JSON, or else `key=value` lines (a map of
/// strings; blank lines and `#` comments skipped).
pub(super) fn parse_output(stdout: &str) -> Result<serde_json::Value, String> {
    let json_error = match serde_json::from_str(stdout) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let mut map = serde_json::Map::new();
    for line in stdout.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(k.trim().to_owned(), v.trim().into());
            }
            _ => {
                return Err(format!(
                    "neither JSON ({json_error}) nor key=value lines (`{}`)",
                    crate::system::command::first_bytes(line, 80)
                ));
            }
        }
    }
    if map.is_empty() {
        return Err("nothing (a fact's program prints JSON or key=value lines)".to_owned());
    }
    Ok(serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_prints_json_or_key_value_lines() {
        assert_eq!(
            parse_output("{\"rack\": \"r12\", \"slots\": [1, 2]}\n"),
            Ok(serde_json::json!({"rack": "r12", "slots": [1, 2]}))
        );
        assert_eq!(parse_output("42"), Ok(serde_json::json!(42)));
        assert_eq!(
            parse_output("# puppet style\nrack=r12\nrole = db\n\n"),
            Ok(serde_json::json!({"rack": "r12", "role": "db"}))
        );
        let e = parse_output("{\"rack\": ").expect_err("broken");
        assert!(e.starts_with("neither JSON"), "{e}");
        assert!(parse_output("").is_err());
        assert!(parse_output("=x\n").is_err());
    }

    #[test]
    fn files_are_facts_by_stem_and_others_are_ignored() {
        let d = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(d.path().join(name), text).expect("write");
        };
        write("rack.toml", "row = 3\n[pdu]\nid = \"p1\"\n");
        write("owner.json", "{\"team\": \"db\"}");
        write("README", "not a fact");
        write(".hidden.toml", "x = 1");
        write("twice.toml", "a = 1");
        write("twice.json", "{}");
        write("bad.json", "{");
        let dir = FactsDir::open(d.path());
        let mut facts = Facts::default();
        dir.fill(&mut facts, Some(&["rack"]), &Cancel::new());
        let CustomFacts::Read(read) = &facts.custom else {
            panic!("{:?}", facts.custom);
        };
        assert_eq!(read.keys().collect::<Vec<_>>(), vec!["rack"]);
        dir.fill(&mut facts, None, &Cancel::new());
        let CustomFacts::Read(read) = &facts.custom else {
            panic!("{:?}", facts.custom);
        };
        assert_eq!(
            read.keys().collect::<Vec<_>>(),
            vec!["bad", "owner", "rack", "twice"]
        );
        assert_eq!(
            read["rack"],
            CustomFact::Value(serde_json::json!({"row": 3, "pdu": {"id": "p1"}}))
        );
        assert_eq!(
            read["owner"],
            CustomFact::Value(serde_json::json!({"team": "db"}))
        );
        for (name, says) in [("bad", "bad.json: invalid JSON"), ("twice", "same fact")] {
            match &read[name] {
                CustomFact::Failed(e) => assert!(e.contains(says), "{e}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let none = FactsDir::open(&d.path().join("missing"));
        let mut facts = Facts::default();
        none.fill(&mut facts, None, &Cancel::new());
        assert_eq!(facts.custom, CustomFacts::default());
    }
}
