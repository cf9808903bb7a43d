//! `systemctl`: one `show` for every declared unit, and the mutating verbs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::command::Cmd;
use crate::cancel::Cancel;
use crate::plan::observed::UnitObs;

/// Properties read in one call.
const PROPERTIES: &str =
    "Id,LoadState,ActiveState,SubState,UnitFileState,FragmentPath,NeedDaemonReload";

/// Reads the live state of `units` from the running systemd.
pub fn show(units: &[String], cancel: &Cancel) -> Result<BTreeMap<String, UnitObs>> {
    if units.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = Cmd::new("systemctl")
        .args(["show", "--property", PROPERTIES])
        .args(units)
        .timeout(Duration::from_secs(60))
        .run(cancel)
        .context("failed to read unit states")?;
    let parsed = parse_show(&out.stdout);
    // `show` prints the blocks in argument order; pair them up by position
    // because `Id` is the unit's *main* name (an alias resolves to it).
    Ok(units.iter().cloned().zip(parsed).collect())
}

/// Enablement under `root` (`systemctl --root` reads unit files only).
/// One call per unit: for a unit that does not exist, `is-enabled` prints
/// nothing on stdout, so answers of a joint call could not be paired up.
pub fn is_enabled_in_root(
    root: &Path,
    units: &[String],
    cancel: &Cancel,
) -> Result<BTreeMap<String, UnitObs>> {
    let mut out = BTreeMap::new();
    for u in units {
        let answer = Cmd::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["is-enabled", u.as_str()])
            // Non-zero when the unit is not enabled: still an answer.
            .ok_codes(&[0, 1])
            .timeout(Duration::from_secs(60))
            .run(cancel)
            .with_context(|| format!("failed to read the enablement of {u}"))?;
        let file_state = answer.stdout.trim();
        let obs = UnitObs {
            loaded: !file_state.is_empty() && file_state != "not-found",
            unit_file_state: file_state.to_owned(),
            active_state: String::new(),
            need_daemon_reload: false,
            live: false,
        };
        out.insert(u.clone(), obs);
    }
    Ok(out)
}

/// The state of `units` under `root`: live from systemd for the running
/// host, enablement only (`systemctl --root`) for any other root.
pub fn unit_states(
    root: &crate::system::fsroot::FsRoot,
    units: &[String],
    cancel: &Cancel,
) -> Result<BTreeMap<String, UnitObs>> {
    if root.is_live() {
        show(units, cancel)
    } else {
        is_enabled_in_root(root.path(), units, cancel)
    }
}

/// Parses `systemctl show` blocks (separated by blank lines).
pub fn parse_show(stdout: &str) -> Vec<UnitObs> {
    let mut out = Vec::new();
    for block in stdout.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let prop = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_owned()
        };
        out.push(UnitObs {
            loaded: prop("LoadState") == "loaded",
            active_state: prop("ActiveState"),
            unit_file_state: prop("UnitFileState"),
            need_daemon_reload: prop("NeedDaemonReload") == "yes",
            live: true,
        });
    }
    out
}

/// Runs `systemctl [--root=R] VERB UNITS…`.
pub fn run(root: Option<&Path>, verb: &str, units: &[String], cancel: &Cancel) -> Result<()> {
    let mut cmd = Cmd::new("systemctl");
    if let Some(r) = root {
        cmd = cmd.arg(format!("--root={}", r.display()));
    }
    let cmd = cmd.arg(verb).args(units).timeout(Duration::from_secs(300));
    // The command error names the command line already.
    cmd.run(cancel)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_show_output() {
        let units = parse_show(include_str!(
            "../../tests/fixtures/commands/systemctl-show.txt"
        ));
        assert_eq!(units.len(), 3);
        assert!(units[0].loaded);
        assert_eq!(units[0].active_state, "inactive");
        assert_eq!(units[0].unit_file_state, "disabled");
        assert!(!units[1].loaded, "nosuch.service is not-found");
        assert!(!units[2].need_daemon_reload);
    }
}
