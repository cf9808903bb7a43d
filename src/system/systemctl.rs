//! `systemctl`: one `show` for every declared unit, and the mutating verbs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::command::Cmd;
use crate::cancel::Cancel;
use crate::plan::observed::UnitObs;

/// Properties read in one call.
const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState,FragmentPath,NeedDaemonReload,RefuseManualStart,RefuseManualStop";

/// Reads the live state of `units` from the running systemd.
pub(crate) fn show(units: &[String], cancel: &Cancel) -> Result<BTreeMap<String, UnitObs>> {
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
pub(crate) fn is_enabled_in_root(
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
            refuse_manual_start: false,
            refuse_manual_stop: false,
        };
        out.insert(u.clone(), obs);
    }
    Ok(out)
}

/// The state of `units` under `root`: live from systemd for the running
/// host, enablement only (`systemctl --root`) for any other root.
pub(crate) fn unit_states(
    root: &crate::system::fsroot::FsRoot,
    units: &[String],
    cancel: &Cancel,
) -> Result<BTreeMap<String, UnitObs>> {
    if !root.is_live() {
        return is_enabled_in_root(root.path(), units, cancel);
    }
    let (states, via) = match bus_states(units) {
        Some(states) => (states, "dbus"),
        None => (show(units, cancel)?, "systemctl"),
    };
    for (unit, u) in &states {
        tracing::debug!(
            unit = unit.as_str(),
            via,
            loaded = u.loaded,
            active = u.active_state.as_str(),
            file = u.unit_file_state.as_str(),
            need_daemon_reload = u.need_daemon_reload,
            refuse_manual_start = u.refuse_manual_start,
            refuse_manual_stop = u.refuse_manual_stop,
            "unit observed"
        );
    }
    Ok(states)
}

/// The states of `units` over D-Bus; `None` when systemd cannot be asked
/// that way (then `systemctl show` is), or when
/// `DRIFTLESS_UNITS_VIA=systemctl` says not to (to compare the two, or to
/// step around a bus that misbehaves).
fn bus_states(units: &[String]) -> Option<BTreeMap<String, UnitObs>> {
    if std::env::var_os("DRIFTLESS_UNITS_VIA").is_some_and(|v| v == "systemctl") {
        return None;
    }
    let conn = super::systemd_bus::connect()?;
    super::systemd_bus::unit_states(&conn, units)
        .inspect_err(|e| {
            tracing::debug!(
                error = format!("{e:#}"),
                "D-Bus read failed; reading units with systemctl"
            );
        })
        .ok()
}

/// Parses `systemctl show` blocks (separated by blank lines).
pub(crate) fn parse_show(stdout: &str) -> Vec<UnitObs> {
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
            refuse_manual_start: prop("RefuseManualStart") == "yes",
            refuse_manual_stop: prop("RefuseManualStop") == "yes",
        });
    }
    out
}

/// Runs `systemctl [--root=R] VERB UNITS…`. When a unit fails to start,
/// restart or reload on the running host, the error carries its last
/// journal lines: what `systemctl status` would show (sshd's "Bad
/// configuration option", say), not only that systemctl failed.
pub(crate) fn run(
    root: Option<&Path>,
    verb: &str,
    units: &[String],
    cancel: &Cancel,
) -> Result<()> {
    let mut cmd = Cmd::new("systemctl");
    if let Some(r) = root {
        cmd = cmd.arg(format!("--root={}", r.display()));
    }
    let cmd = cmd.arg(verb).args(units).timeout(Duration::from_secs(300));
    // The command error names the command line already.
    match cmd.run(cancel) {
        Ok(_) => Ok(()),
        Err(e) if root.is_none() && VERBS_THAT_RUN.contains(&verb) => {
            let said: Vec<String> = units
                .iter()
                .filter_map(|u| last_journal_lines(u, cancel).map(|l| format!("{u}: {l}")))
                .collect();
            if said.is_empty() {
                Err(e.into())
            } else {
                Err(anyhow::Error::new(e).context(format!(
                    "the unit's last journal lines: {}",
                    said.join("; ")
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Restarts `unit` with its own command (`restart_command`: a unit that
/// refuses a manual stop); a failure carries the unit's last journal lines.
pub(crate) fn restart_with(unit: &str, argv: &[String], cancel: &Cancel) -> Result<()> {
    let (program, args) = argv
        .split_first()
        .with_context(|| format!("the restart_command of {unit} is empty"))?;
    let run = Cmd::new(program)
        .args(args)
        .timeout(Duration::from_secs(300))
        .tail_only(super::command::REPORTED_TAIL)
        .run(cancel);
    match run {
        Ok(_) => Ok(()),
        Err(e) => match last_journal_lines(unit, cancel) {
            Some(lines) => Err(anyhow::Error::new(e)
                .context(format!("the unit's last journal lines: {unit}: {lines}"))),
            None => Err(e.into()),
        },
    }
}

/// Verbs after whose failure the unit's own words are worth reading.
const VERBS_THAT_RUN: [&str; 4] = ["start", "restart", "try-restart", "reload"];

/// Lines of a unit's journal put into an error, at most.
const JOURNAL_LINES: &str = "10";

/// The unit's last journal lines, joined (bounded by the command helper's
/// tail), or `None` when there are none or journalctl cannot say.
pub(crate) fn last_journal_lines(unit: &str, cancel: &Cancel) -> Option<String> {
    let out = Cmd::new("journalctl")
        .args(["--no-pager", "-o", "cat", "-n", JOURNAL_LINES, "-u", unit])
        .timeout(Duration::from_secs(10))
        .tail_only(super::command::REPORTED_TAIL)
        .run(cancel)
        .ok()?;
    let text = out.stdout.trim();
    if text.is_empty() || text.starts_with("-- No entries --") {
        return None;
    }
    Some(super::command::tail(text, 10))
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
