//! `[[command]]` on the host: its guards (they must only look), run while
//! observing and again when the command is about to run, and the command
//! itself, run as a step of the converge.
//!
//! With `--root DIR` other than `/`, a command still runs on this machine:
//! it gets `DRIFTLESS_ROOT=DIR`, runs in the root's `cwd`, and `creates` is
//! looked up inside the root.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cancel::Cancel;
use crate::desired::model::{Command, ResourceId};
use crate::desired::{DesiredState, VALIDATE_PLACEHOLDER};
use crate::plan::Validator;
use crate::plan::observed::{GuardRun, Guards};
use crate::system::command::{Cmd, CommandError, tail};
use crate::system::fsroot::FsRoot;

/// `argv` run as `c` says: its user (through `runuser`), environment,
/// working directory and timeout.
fn cmd_for(c: &Command, argv: &[String], root: &FsRoot) -> Option<Cmd> {
    let (program, args) = argv.split_first()?;
    let mut cmd = match &c.user {
        Some(user) => Cmd::new("runuser").args(["-u", user.as_str(), "--", program.as_str()]),
        None => Cmd::new(program),
    };
    // Its output is only logged: the last of it is kept, however much.
    cmd = cmd
        .args(args)
        .timeout(c.timeout)
        .tail_only(crate::system::command::REPORTED_TAIL);
    for (k, v) in &c.environment {
        cmd = cmd.env(k, v);
    }
    if !root.is_live() {
        cmd = cmd.env("DRIFTLESS_ROOT", root.path());
    }
    let cwd = c.cwd.as_deref().unwrap_or("/").trim_start_matches('/');
    Some(cmd.current_dir(root.path().join(cwd)))
}

/// How long a validator may take: it reads one file.
const VALIDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the validator `v` on `staged`, the new content written next to
/// its target (the argument `%`). A rejection is the new content's fault
/// (the converge fails and is rolled back), with what the validator
/// printed unless the content is sensitive; a validator that cannot run or
/// does not finish is the host's.
pub(crate) fn validate(
    v: &Validator,
    staged: &std::path::Path,
    root: &FsRoot,
    cancel: &Cancel,
) -> Result<()> {
    let argv: Vec<std::ffi::OsString> = v
        .argv
        .iter()
        .map(|a| match a.as_str() {
            VALIDATE_PLACEHOLDER => staged.as_os_str().to_owned(),
            a => a.into(),
        })
        .collect();
    let Some(program) = v.argv.first() else {
        anyhow::bail!("`validate` is empty");
    };
    let mut cmd = Cmd::new(program)
        .args(argv.iter().skip(1))
        .timeout(VALIDATE_TIMEOUT)
        .tail_only(crate::system::command::REPORTED_TAIL);
    if !root.is_live() {
        cmd = cmd.env("DRIFTLESS_ROOT", root.path());
    }
    match cmd.run(cancel) {
        Ok(_) => Ok(()),
        Err(CommandError::Failed { code, tail, .. }) => {
            let said = if v.quiet {
                "its output is hidden: the file is sensitive".to_owned()
            } else if tail.trim().is_empty() {
                "it printed nothing".to_owned()
            } else {
                tail
            };
            anyhow::bail!(
                "`{}` rejected the new content (exit {code}), which was not written: {said}",
                v.argv.join(" ")
            )
        }
        Err(e) => Err(e).context("the validator could not check the new content"),
    }
}

/// Limit of one runtime probe ([`probe`]).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the unit reading `what` runs it as written: its runtime probe
/// `argv` (a kind's [`runtime_probe`](crate::desired::kinds::KindDef::runtime_probe))
/// exits 0, or 1 when it does not; any other exit is an error (the probe
/// could not tell). It only looks: whatever it leaves running is stopped.
pub(crate) fn probe(argv: &[String], what: &ResourceId, cancel: &Cancel) -> Result<bool> {
    let Some(program) = argv.first() else {
        return Ok(true);
    };
    let out = Cmd::new(program)
        .args(argv.iter().skip(1))
        .timeout(PROBE_TIMEOUT)
        .tail_only(crate::system::command::REPORTED_TAIL)
        .any_code()
        .kill_leftovers()
        .run(cancel)
        .with_context(|| format!("failed to ask whether {what} runs as written"))?;
    tracing::debug!(resource = %what, code = out.code, "runtime probe ran");
    match out.code {
        0 => Ok(true),
        1 => Ok(false),
        code => bail!(
            "could not ask whether {what} runs as written: the probe exited {code}: {}",
            out.stderr.trim()
        ),
    }
}

/// What the guards of each declared command find now.
pub(crate) fn observe_guards(
    root: &FsRoot,
    desired: &DesiredState,
    cancel: &Cancel,
) -> Result<BTreeMap<String, Guards>> {
    desired
        .commands()
        .map(|c| Ok((c.name.clone(), guards(c, root, cancel)?)))
        .collect()
}

/// What the guards of `c` find now: while observing, and again when the
/// command is about to run (after everything ordered before it).
pub(crate) fn guards(c: &Command, root: &FsRoot, cancel: &Cancel) -> Result<Guards> {
    let creates_exists = c
        .creates
        .as_deref()
        .map(|p| root.exists(p))
        .transpose()
        .with_context(|| format!("failed to check `creates` of command:{}", c.name))?;
    let run = |key: &str, argv: &Option<Vec<String>>| -> Result<Option<GuardRun>> {
        let Some(argv) = argv else { return Ok(None) };
        let Some(cmd) = cmd_for(c, argv, root) else {
            return Ok(None);
        };
        // A guard only looks: whatever it leaves running is stopped.
        match cmd.any_code().kill_leftovers().run(cancel) {
            Ok(out) => {
                tracing::debug!(command = %c.name, guard = key, code = out.code, "guard ran");
                let text = format!("{}{}", out.stdout, out.stderr);
                let tail = if text.trim().is_empty() {
                    String::new()
                } else {
                    tail(&text, GUARD_LINES)
                };
                Ok(Some(GuardRun::Exited(out.code, tail)))
            }
            // Not there yet (a script this converge installs): it is run
            // again when the command is about to run.
            Err(CommandError::Spawn { source, .. }) => {
                Ok(Some(GuardRun::NotRunnable(source.to_string())))
            }
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("the `{key}` guard of command:{} could not run", c.name)),
        }
    };
    Ok(Guards {
        creates_exists,
        unless: run("unless", &c.unless)?,
        onlyif: run("onlyif", &c.onlyif)?,
    })
}

/// Lines of a guard's output shown in the plan.
const GUARD_LINES: usize = 3;

/// Runs `c`; a failure (exit code other than 0, timeout, not startable)
/// fails the converge, which then rolls back everything else.
pub(crate) fn run(c: &Command, root: &FsRoot, cancel: &Cancel) -> Result<()> {
    let cmd =
        cmd_for(c, &c.argv, root).with_context(|| format!("command:{} has no program", c.name))?;
    let started = Instant::now();
    let out = cmd.run(cancel)?;
    tracing::info!(
        command = %c.name,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "command ran"
    );
    if !out.stdout.trim().is_empty() {
        tracing::debug!(command = %c.name, stdout = %tail(&out.stdout, 20), "command output");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;

    #[test]
    fn a_probe_that_cannot_tell_is_an_error_never_no_drift() {
        let id = ResourceId::new(Kind::Firewalld, "public");
        let sh = |script: &str| ["/bin/sh", "-c", script].map(str::to_owned).to_vec();
        let cancel = Cancel::new();
        assert!(probe(&sh("exit 0"), &id, &cancel).expect("as written"));
        assert!(!probe(&sh("exit 1"), &id, &cancel).expect("differs"));
        let e = format!(
            "{:#}",
            probe(
                &sh("echo 'firewalld is not answering' >&2; exit 3"),
                &id,
                &cancel
            )
            .expect_err("could not tell")
        );
        assert!(
            e.contains("the probe exited 3: firewalld is not answering"),
            "{e}"
        );
    }
}
