//! The probes of health checks, one attempt each: run a command, ask
//! systemd whether a unit is active, GET a URL. Retries, deadlines and the
//! settle time are the engine's (`converge::checks`).

use std::time::Duration;

use anyhow::{Result, bail};

use super::command::Cmd;
use super::systemctl;
use crate::cancel::Cancel;

/// Runs `argv` (no shell) within `timeout`; success is exit code 0. What it
/// leaves running in its process group is killed: a `cmd &` must not
/// outlive the check.
pub(crate) fn command(argv: &[String], timeout: Duration, cancel: &Cancel) -> Result<()> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    Cmd::new(program)
        .args(args)
        .timeout(timeout)
        .kill_leftovers()
        .tail_only(super::command::REPORTED_TAIL)
        .run(cancel)?;
    Ok(())
}

/// Whether the running systemd says `unit` is active.
pub(crate) fn unit_active(unit: &str, cancel: &Cancel) -> Result<()> {
    let states = systemctl::show(std::slice::from_ref(&unit.to_owned()), cancel)?;
    match states.get(unit).map(|o| o.active_state.as_str()) {
        Some("active") => Ok(()),
        Some(other) => bail!("{unit} is {other}"),
        None => bail!("{unit} is unknown"),
    }
}

/// GET `url`; success is a 2xx status. Redirects are not followed: a
/// health endpoint that redirects is answering something else.
pub(crate) fn http_get(url: &str, timeout: Duration, cancel: &Cancel) -> Result<()> {
    let mut easy = curl::easy::Easy::new();
    easy.url(url)?;
    easy.timeout(timeout)?;
    easy.connect_timeout(timeout)?;
    easy.follow_location(false)?;
    easy.progress(true)?;
    {
        let mut t = easy.transfer();
        t.write_function(|d| Ok(d.len()))?;
        t.progress_function(|_, _, _, _| !cancel.should_stop())?;
        t.perform().map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    }
    let code = easy.response_code()?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        bail!("GET {url} answered {code}")
    }
}
