//! Reboots: whether the host needs one (after every converge of the
//! daemon), whether now is the time (`[reboot]`), the drain and the
//! reboot itself, the host seen back healthy after it, and the operator's
//! `driftless reboot --now` / `--cancel` (docs/reboots.md).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::context::App;
use super::reboot_fleet::{self as fleet, Ask};
use crate::agent::reboot::{
    self as rules, Asked, Decision, HeldSlot, Pending, RebootMode, RebootRecord,
};
use crate::agent::{AgentState, now};
use crate::cancel::Cancel;
use crate::system::command::Cmd;
use crate::system::reboot::{self as host, Probe};

/// What one check found and decided.
#[derive(Clone, Debug, Default)]
pub(crate) struct RebootCheck {
    /// The record as saved.
    pub record: RebootRecord,
    /// The reasons, when a reboot has just become required.
    pub became_required: Option<Vec<String>>,
    /// The reboot seen through by this check: old and new kernel.
    pub rebooted: Option<(String, String)>,
    /// The host is back from a reboot driftless asked for, and its first
    /// converge has yet to run the health checks.
    pub back_unchecked: bool,
    /// The time to drain and reboot has come.
    pub reboot_now: bool,
}

/// Observes the host and updates the agent state's reboot record.
/// `healthy`: how the converge that ran just before ended (`None` at
/// start, before any): a reboot driftless asked for is seen through once
/// the host is in another boot and a converge there was healthy.
pub(crate) fn check(app: &App, probe: &mut Probe, healthy: Option<bool>) -> Result<RebootCheck> {
    let s = &app.settings.reboot;
    let observed = probe.observe(s.running_kernel_file.as_deref(), &Cancel::new())?;
    let need = rules::need(&observed);
    let (boot, _) = host::boot()?;
    let lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let before = state.reboot.clone();
    let mut rec = state.reboot.take().unwrap_or_default();
    let mut out = RebootCheck::default();
    if let Some(p) = rec.pending.clone()
        && p.boot != boot
    {
        if healthy == Some(true) {
            rec.rebooted = Some(rules::Rebooted {
                at: now(),
                asked_at: p.at.clone(),
                old_kernel: p.kernel.clone(),
                new_kernel: observed.running_kernel.clone(),
            });
            rec.pending = None;
            rec.asked = None;
            out.rebooted = Some((p.kernel, observed.running_kernel.clone()));
        } else {
            out.back_unchecked = true;
        }
    }
    let overdue = rec
        .pending
        .as_ref()
        .and_then(|p| rules::overdue(p, &boot, &now()));
    if overdue.is_some() {
        rec.pending = None;
    }
    out.became_required = rec.observed(&need, &observed.stale_services, &now());
    // A wave's own reboot policy (fleet.toml) counts only when there is
    // something to decide: it is read from the last good state.
    let (mode, windows) = if rec.required() || rec.asked.is_some() {
        fleet::in_force(app)
    } else {
        (s.mode, s.windows.clone())
    };
    let decision = rules::decide(
        &rec,
        mode,
        super::fleet::windows_open_now(&windows),
        state.paused.is_some(),
    );
    // A reboot that did not happen says so until the next decision that
    // waits for something else.
    rec.waiting = match &decision {
        Decision::Wait(why) => Some(why.clone()),
        Decision::Nothing | Decision::Reboot => overdue,
    };
    out.reboot_now = decision == Decision::Reboot;
    let step = rules::slot_step(&rec, &boot, healthy, &now(), s.back_within.as_secs());
    let held = rec.slot.clone();
    out.record = rec.clone();
    state.reboot = Some(rec);
    if state.reboot != before {
        app.store.save_state(&state)?;
    }
    // The fleet is told outside the state lock (etcd may be slow).
    drop(lock);
    if let Some(held) = held
        && let Some(slot) = fleet::settle(app, &step, &held)
        && let Some(record) = slot_changed(app, slot)
    {
        out.record = record;
    }
    Ok(out)
}

/// Saves the reboot slot the host holds now, and republishes its fleet
/// record; the reboot record as saved.
fn slot_changed(app: &App, slot: Option<HeldSlot>) -> Option<RebootRecord> {
    match update(app, |r| r.slot = slot) {
        Ok(state) => {
            fleet::publish(app, &state);
            state.reboot
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "could not save the agent state");
            None
        }
    }
}

/// The host does not reboot after all: its reboot slot, if it holds one,
/// is given back and forgotten.
fn abandon(app: &App, held: Option<HeldSlot>) {
    if let Some(h) = held
        && fleet::abandon(app, &h)
    {
        slot_changed(app, None);
    }
}

/// How a drain and reboot went, when not with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RebootStep {
    /// systemd was asked to reboot.
    Asked,
    /// The fleet says not now (no free reboot slot, halted, etcd down):
    /// why. Nothing was drained.
    Waits(String),
}

/// With `[fleet]`, first asks the fleet and takes a reboot slot of the
/// host's wave (`Waits` when it may not). Then drains (the `[reboot] drain`
/// command, bounded by its timeout; `started` is called before it) and
/// asks systemd to reboot, having recorded the reboot as pending. A drain
/// that fails postpones the reboot to the next check, gives the slot back
/// and says why in the record; `Err` then carries the same reason.
pub(crate) fn drain_and_reboot(
    app: &App,
    cancel: &Cancel,
    started: &dyn Fn(),
) -> Result<RebootStep> {
    let s = &app.settings.reboot;
    // A `reboot --cancel` while the drain runs stops the reboot: what was
    // decided before the drain is checked again after it, under the lock.
    let cancelled_before = app.store.load_state()?.reboot.and_then(|r| r.cancelled);
    let taken = match fleet::ask(app) {
        Ask::Alone => None,
        Ask::Wait(why) => {
            update(app, |r| r.waiting = Some(why.clone()))?;
            return Ok(RebootStep::Waits(why));
        }
        Ask::Go(t) => {
            let state = update(app, |r| {
                r.slot = Some(t.held());
                r.waiting = None;
            })?;
            fleet::publish(app, &state);
            Some(t)
        }
    };
    started();
    if let Some(argv) = &s.drain
        && let Err(e) = drain(argv, s.drain_timeout, cancel)
    {
        let why = format!("the drain failed, the reboot waits for the next run: {e:#}");
        let held = taken.as_ref().map(fleet::Taken::held);
        drop(taken);
        abandon(app, held);
        update(app, |r| r.waiting = Some(why.clone()))?;
        bail!(why);
    }
    let held = match taken.map(|t| fleet::hand_over(app, t)).transpose() {
        Ok(h) => h,
        Err(e) => {
            let why = format!("{e:#}");
            update(app, |r| r.waiting = Some(why.clone()))?;
            bail!(why);
        }
    };
    let kernel = host::running_kernel(s.running_kernel_file.as_deref())?;
    let (boot, _) = host::boot()?;
    let mut cancelled = false;
    update(app, |r| {
        if r.cancelled != cancelled_before {
            cancelled = true;
            return;
        }
        r.pending = Some(Pending {
            at: now(),
            kernel: kernel.clone(),
            boot: boot.clone(),
            reasons: r.reasons.clone(),
        });
        r.waiting = None;
    })?;
    if cancelled || cancel.is_cancelled() {
        update(app, |r| r.pending = None)?;
        abandon(app, held);
        bail!("the reboot was cancelled while the drain ran");
    }
    // Once `systemctl reboot` runs, systemd stops this daemon, which
    // cancels the token, maybe before `systemctl` has returned: the request
    // is seen through, never cut short and taken for a failure.
    let shield = cancel.shield();
    let asked = host::reboot(cancel);
    drop(shield);
    if let Err(e) = asked {
        let why = format!("{e:#}");
        update(app, |r| {
            r.pending = None;
            r.waiting = Some(why.clone());
        })?;
        abandon(app, held);
        return Err(e);
    }
    Ok(RebootStep::Asked)
}

/// Runs the drain command, as root, without a shell; like a hook, it must
/// be a program nobody else can change.
fn drain(argv: &[String], timeout: std::time::Duration, cancel: &Cancel) -> Result<()> {
    let Some((program, args)) = argv.split_first() else {
        bail!("[reboot] drain is empty");
    };
    crate::system::trust::check_program(Path::new(program))?;
    Cmd::new(program)
        .args(args)
        .timeout(timeout)
        .run(cancel)
        .with_context(|| format!("drain `{program}`"))?;
    Ok(())
}

/// Changes the reboot record under the state lock.
fn update(app: &App, change: impl FnOnce(&mut RebootRecord)) -> Result<AgentState> {
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    change(state.reboot.get_or_insert_with(RebootRecord::default));
    app.store.save_state(&state)?;
    Ok(state)
}

/// `driftless reboot --now`: the daemon reboots at its next check (at
/// once, when told), draining first, whatever the window; refused with
/// `[reboot] mode = "never"`. Returns what to tell the operator.
pub(crate) fn ask(app: &App) -> Result<String> {
    if app.settings.reboot.mode == RebootMode::Never {
        bail!(
            "[reboot] mode is \"never\" in the agent config: driftless does not reboot this host"
        );
    }
    if fleet::in_force(app).0 == RebootMode::Never {
        bail!(
            "reboot_mode is \"never\" for this host's wave in fleet.toml: driftless does not reboot this host"
        );
    }
    let by = crate::system::facts::invoking_user();
    update(app, |r| {
        r.asked = Some(Asked {
            by: by.clone(),
            at: now(),
        });
        r.cancelled = None;
    })?;
    Ok(format!(
        "reboot asked by {by}: the daemon drains and reboots the host{}",
        if app.settings.fleet.is_some() {
            " once the fleet gives it a reboot slot of its wave"
        } else {
            ""
        }
    ))
}

/// `driftless reboot --cancel`: forgets a `reboot --now`, and holds off
/// the automatic reboot for what is required now.
pub(crate) fn cancel(app: &App) -> Result<String> {
    let by = crate::system::facts::invoking_user();
    let state = update(app, |r| {
        r.asked = None;
        if r.required() {
            r.cancelled = Some(Asked {
                by: by.clone(),
                at: now(),
            });
        }
    })?;
    Ok(match state.reboot.as_ref().filter(|r| r.required()) {
        Some(_) => format!(
            "reboot cancelled by {by}: none happens for the reasons known now; `driftless reboot --now` asks again"
        ),
        None => "no reboot is required; nothing was asked".to_owned(),
    })
}
