//! Health checks that gate a converge: the `[[check]]`s of the desired
//! state, plus an implicit one that every service declared
//! `state = "running"` is active (not activating, not failed) after a
//! settle time. All of it within `[rollback] health_timeout`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tracing::info;

use super::events::{Event, Sink};
use crate::cancel::Cancel;
use crate::desired::model::{Check, Probe};
use crate::fault;
use crate::system::{probes, systemctl};

/// Limits of one health-check round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Everything must pass within this.
    pub health_timeout: Duration,
    /// Wait before judging services, so a unit that crashes right after
    /// starting is caught.
    pub settle: Duration,
}

/// The name of the implicit check that declared running services are
/// active, in events.
pub(crate) const SERVICES_RUNNING: &str = "services-running";

/// Runs the checks; `Err` names the first check that did not pass and why.
/// With `settle`, declared running services are given `settle_time` first
/// (something started or restarted them). Without a live systemd (`--root`), unit probes are skipped: the units
/// of the machine running driftless say nothing about the root.
pub(crate) fn run(
    checks: &[Check],
    running_units: &[String],
    limits: Limits,
    live: bool,
    settle: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<()> {
    let deadline = Instant::now() + limits.health_timeout;
    fault::point("during-checks");
    if live && !running_units.is_empty() {
        sink.event(&Event::CheckAttempt {
            check: SERVICES_RUNNING.to_owned(),
            attempt: 1,
            attempts: 1,
        });
        if settle {
            sleep(limits.settle.min(remaining(deadline)), cancel);
        }
        let result = services_active(running_units, deadline, cancel);
        sink.event(&Event::CheckResult {
            check: SERVICES_RUNNING.to_owned(),
            passed: result.is_ok(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        });
        result?;
    }
    for c in checks {
        if !live && matches!(c.probe, Probe::Service(_)) {
            info!(check = %c.name, "service check skipped: no live systemd with --root");
            continue;
        }
        let result = run_check(c, deadline, sink, cancel);
        sink.event(&Event::CheckResult {
            check: c.name.clone(),
            passed: result.is_ok(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        });
        result?;
    }
    Ok(())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Sleeps `d`, waking early when the run is cancelled.
fn sleep(d: Duration, cancel: &Cancel) {
    let until = Instant::now() + d;
    while !cancel.should_stop() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Every unit must be `active`; `activating` and `reloading` are waited for
/// until the deadline.
fn services_active(units: &[String], deadline: Instant, cancel: &Cancel) -> Result<()> {
    loop {
        let states = systemctl::show(units, cancel)?;
        let mut waiting = None;
        for (unit, obs) in &states {
            match obs.active_state.as_str() {
                "active" => {}
                "activating" | "reloading" => waiting = Some(unit.clone()),
                other => {
                    // What `systemctl status` would show: a unit that
                    // started and then died says why only in its journal.
                    let lines = systemctl::last_journal_lines(unit, cancel)
                        .map(|l| format!(" (the unit's last journal lines: {l})"))
                        .unwrap_or_default();
                    bail!("service {unit} is {other} after the converge, should be running{lines}")
                }
            }
        }
        let Some(unit) = waiting else { return Ok(()) };
        if Instant::now() >= deadline {
            bail!("service {unit} is still activating when the health timeout ran out");
        }
        if cancel.should_stop() {
            bail!("stopped while waiting for service {unit}: driftless was asked to stop");
        }
        sleep(Duration::from_millis(250).min(remaining(deadline)), cancel);
    }
}

fn run_check(c: &Check, deadline: Instant, sink: &mut dyn Sink, cancel: &Cancel) -> Result<()> {
    let attempts = c.retries.saturating_add(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let budget = c.timeout.min(remaining(deadline));
        if budget.is_zero() {
            bail!(
                "check `{}` did not pass before the health timeout ran out (last: {last})",
                c.name
            );
        }
        sink.event(&Event::CheckAttempt {
            check: c.name.clone(),
            attempt,
            attempts,
        });
        match probe(&c.probe, budget, cancel) {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = format!("{e:#}");
                tracing::warn!(check = %c.name, attempt, attempts, error = %last, "health check failed");
            }
        }
        if cancel.should_stop() {
            bail!(
                "check `{}` stopped: driftless was asked to stop (last: {last})",
                c.name
            );
        }
        if attempt < attempts {
            sleep(c.interval.min(remaining(deadline)), cancel);
        }
    }
    bail!(
        "check `{}` failed {}: {last}",
        c.name,
        crate::words::count(attempts as usize, "time")
    )
}

fn probe(p: &Probe, timeout: Duration, cancel: &Cancel) -> Result<()> {
    match p {
        Probe::Command(argv) => probes::command(argv, timeout, cancel),
        Probe::Service(unit) => probes::unit_active(unit, cancel),
        Probe::Http(url) => probes::http_get(url, timeout, cancel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The checks as they run with `--root` (no unit probes).
    fn run(checks: &[Check], units: &[String], limits: Limits) -> Result<()> {
        super::run(
            checks,
            units,
            limits,
            false,
            true,
            &mut crate::converge::events::Discard,
            &Cancel::new(),
        )
    }

    fn check(name: &str, probe: Probe, retries: u32) -> Check {
        Check {
            name: name.into(),
            probe,
            timeout: Duration::from_secs(2),
            retries,
            interval: Duration::from_millis(10),
        }
    }

    const LIMITS: Limits = Limits {
        health_timeout: Duration::from_secs(10),
        settle: Duration::ZERO,
    };

    #[test]
    fn command_checks_pass_fail_and_retry() {
        assert!(
            run(
                &[check("ok", Probe::Command(vec!["true".into()]), 0)],
                &[],
                LIMITS
            )
            .is_ok()
        );
        let err = run(
            &[check("bad", Probe::Command(vec!["false".into()]), 2)],
            &[],
            LIMITS,
        )
        .expect_err("fails");
        assert!(
            err.to_string().contains("check `bad` failed 3 times"),
            "{err}"
        );
        // Passes on the third attempt.
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("n");
        let script = format!("echo x >> {0}; [ $(wc -l < {0}) -ge 3 ]", f.display());
        assert!(
            run(
                &[check(
                    "flaky",
                    Probe::Command(vec!["sh".into(), "-c".into(), script]),
                    3
                )],
                &[],
                LIMITS
            )
            .is_ok()
        );
    }

    #[test]
    fn the_health_timeout_bounds_everything() {
        let slow = Check {
            timeout: Duration::from_secs(30),
            ..check("slow", Probe::Command(vec!["sleep".into(), "20".into()]), 5)
        };
        let started = Instant::now();
        let limits = Limits {
            health_timeout: Duration::from_millis(500),
            settle: Duration::ZERO,
        };
        assert!(run(&[slow], &[], limits).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    /// A one-shot HTTP server on 127.0.0.1 answering with `status`.
    fn serve(status: &'static str) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        format!("http://{addr}/health")
    }

    #[test]
    fn http_checks_need_a_2xx() {
        assert!(run(&[check("up", Probe::Http(serve("200 OK")), 0)], &[], LIMITS).is_ok());
        let err = run(
            &[check(
                "down",
                Probe::Http(serve("503 Service Unavailable")),
                0,
            )],
            &[],
            LIMITS,
        )
        .expect_err("503");
        assert!(err.to_string().contains("503"), "{err}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        assert!(
            run(
                &[check(
                    "refused",
                    Probe::Http(format!("http://127.0.0.1:{port}/")),
                    0
                )],
                &[],
                LIMITS
            )
            .is_err()
        );
    }
}
