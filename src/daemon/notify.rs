//! Telling systemd how the daemon is (`Type=notify`): `READY=1` once the
//! config is loaded and the first state known, a live `STATUS=` line,
//! `WATCHDOG=1`, `RELOADING=1` around a reload, `STOPPING=1`. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "could not notify systemd");
    }
}

/// Ready, with a status line.
pub(super) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A new status line.
pub(super) fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Still alive (`WatchdogSec=`).
pub(super) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// A reload begins (systemd wants the monotonic time with it).
pub(super) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Stopping, and why it may take a while.
pub(super) fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// How often to ping the watchdog, when systemd asked for one.
pub(super) fn watchdog_period() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
