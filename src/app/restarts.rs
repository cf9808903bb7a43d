//! `[reboot] restart_services` (docs/reboots.md): after a healthy converge
//! of the daemon, the services that still run a program or library
//! replaced since they started (an update) are restarted, one at a time,
//! as `restart_on` restarts them (`systemctl restart`, which waits for the
//! job and reports the unit's own last words), except the built-in
//! [`RESTART_DENIED`] and what `restart_deny` names.

use crate::cancel::Cancel;
use crate::config::RESTART_DENIED;
use crate::desired::fleet::glob;
use crate::system::{reboot as host, systemctl};

use super::context::App;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Restarts {
    /// Units restarted.
    pub restarted: Vec<String>,
    /// Units whose restart failed, with why (their last journal lines).
    pub failed: Vec<(String, String)>,
    /// Units that need a restart and are left running: denied.
    pub denied: Vec<String>,
}

/// Restarts the services that map replaced files, but the denied ones.
/// Nothing to do (the usual tick) costs a read of the cgroup tree and the
/// services' maps, no process.
pub(crate) fn restart_stale_services(app: &App, cancel: &Cancel) -> Restarts {
    let (due, denied) = split(host::stale_services(), &app.settings.reboot.restart_deny);
    let mut out = Restarts {
        denied,
        ..Restarts::default()
    };
    for unit in due {
        if cancel.should_stop() {
            break;
        }
        match systemctl::run(None, "restart", std::slice::from_ref(&unit), cancel) {
            Ok(()) => out.restarted.push(unit),
            Err(e) => out.failed.push((unit, format!("{e:#}"))),
        }
    }
    out
}

/// The stale units, split into those to restart and those denied (by the
/// built-in list or by `deny`).
fn split(stale: Vec<String>, deny: &[String]) -> (Vec<String>, Vec<String>) {
    stale.into_iter().partition(|unit| {
        !RESTART_DENIED
            .into_iter()
            .chain(deny.iter().map(String::as_str))
            .any(|p| glob(p, unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_and_the_configured_deny_lists_keep_their_units_running() {
        let stale = [
            "sshd.service",
            "dbus-broker.service",
            "systemd-journald.service",
            "driftless.service",
            "httpd.service",
            "java-app.service",
            "postfix.service",
        ]
        .map(str::to_owned)
        .to_vec();
        let (due, denied) = split(stale, &["java-*.service".to_owned()]);
        assert_eq!(due, ["httpd.service", "postfix.service"]);
        assert_eq!(
            denied,
            [
                "sshd.service",
                "dbus-broker.service",
                "systemd-journald.service",
                "driftless.service",
                "java-app.service"
            ]
        );
    }
}
