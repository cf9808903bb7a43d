//! Processes on the host: waiting for a dnf or rpm that outlived a crash
//! of driftless (it may still hold the rpm database).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tracing::info;

use crate::cancel::Cancel;

/// How often the process table is looked at while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Waits until no dnf or rpm process runs, at most `bound`. A stop request
/// ends the wait with an error: nothing is restored under a running dnf.
pub(crate) fn wait_for_package_managers(bound: Duration, cancel: &Cancel) -> Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        let busy = package_manager_pids();
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow::Error::new(super::environment::Environment(
                format!(
                    "dnf or rpm is still running (pids {busy:?}) after {}s; not working under it, the next run tries again",
                    bound.as_secs()
                ),
            )));
        }
        if cancel.should_stop() {
            bail!("stopped while waiting for dnf or rpm (pids {busy:?}) to finish");
        }
        info!(pids = ?busy, "waiting for a running dnf or rpm to finish");
        std::thread::sleep(POLL);
    }
}

/// The pids of running (not zombie) dnf, rpm and yum processes, but ours.
pub(crate) fn package_manager_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // A zombie has exited and holds no lock, even while nobody has
            // reaped it.
            parse_stat(&stat).is_some_and(|(comm, state)| {
                state != "Z" && matches!(comm, "dnf" | "dnf-3" | "dnf5" | "rpm" | "yum")
            })
        })
        .collect()
}

/// `(comm, state)` from `/proc/PID/stat`, which is "PID (COMM) STATE ...";
/// COMM may itself hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(&str, &str)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.split_whitespace().next()?;
    Some((comm, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(parse_stat("42 (dnf) S 1 42"), Some(("dnf", "S")));
        assert_eq!(parse_stat("7 (a (b) c) Z 1"), Some(("a (b) c", "Z")));
        assert_eq!(parse_stat("garbage"), None);
    }
}
