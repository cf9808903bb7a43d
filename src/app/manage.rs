//! `rollback`, `resume`, `retry` and `recover`: what an operator does by
//! hand to the agent's state and the host's generations.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, bail};

use super::context::App;
use super::recovery::recover_into;
use crate::agent::{now, policy, short};
use crate::cancel::Cancel;
use crate::converge::{self, Outcome as Transacted, Sink};
use crate::outcome::Outcome;
use crate::store::Generation;
use crate::store::Status;
use crate::system::fsroot::FsRoot;

/// What a management command did.
#[derive(Debug)]
pub struct ActionResult {
    /// `Done`, `RollbackFailed`, or `Error`.
    pub outcome: Outcome,
    /// What was done, for the operator.
    pub notes: Vec<String>,
    /// What failed.
    pub error: Option<String>,
}

impl ActionResult {
    /// Done, with what was done.
    pub fn done(note: String) -> Self {
        Self {
            outcome: Outcome::Done,
            notes: vec![note],
            error: None,
        }
    }

    fn failed(notes: Vec<String>, error: String) -> Self {
        Self {
            outcome: Outcome::RollbackFailed,
            notes,
            error: Some(error),
        }
    }
}

/// `rollback [--to N]`: undoes generation N (default: the last applied one
/// of this root) and every later applied one, newest first, then pins the
/// host until `driftless resume`.
pub fn rollback(
    app: &App,
    to: Option<u64>,
    root: &Path,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<ActionResult> {
    let root = FsRoot::open(root)?;
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let recovery = recover_into(app, &root, &mut state, sink, cancel)?;
    if let Some(failed) = recovery.failed {
        return Ok(ActionResult::failed(recovery.notes, failed));
    }
    let mut notes = recovery.notes;
    let gens = app.store.generations()?;
    let all = gens.list()?;
    // Only what was done to this root is undone in it.
    let root_name = root.path().display().to_string();
    let applied: Vec<_> = all
        .iter()
        .filter(|g| g.status == Status::Applied && g.root == root_name)
        .cloned()
        .collect();
    let from = first_to_undo(&all, &applied, to, &root_name)?;
    let engine = app.engine(&root);
    let mut undone = Vec::new();
    for g in applied.into_iter().rev().filter(|g| g.id >= from) {
        match converge::undo(&engine, g, sink, cancel)? {
            Transacted::RolledBack { generation, .. } => undone.push(generation),
            Transacted::RestoreFailed {
                generation,
                differences,
                ..
            } => {
                return Ok(ActionResult::failed(
                    notes,
                    format!(
                        "restoring generation {generation} failed; still different: {}",
                        differences.join("; ")
                    ),
                ));
            }
            Transacted::Applied { .. } => {}
        }
    }
    policy::pin(&mut state, from, &now());
    app.store.save_state(&state)?;
    notes.push(format!(
        "undid {} {}; the host is pinned until `driftless resume`",
        if undone.len() == 1 {
            "generation"
        } else {
            "generations"
        },
        undone
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(ActionResult {
        outcome: Outcome::Done,
        notes,
        error: None,
    })
}

/// The first generation `rollback` undoes (it undoes that one and every
/// applied one after it, in `root_name`): `--to N`, or the last applied;
/// an error says why there is none.
fn first_to_undo(
    all: &[Generation],
    applied: &[Generation],
    to: Option<u64>,
    root_name: &str,
) -> Result<u64> {
    Ok(match to {
        Some(n) => {
            let Some(g) = all.iter().find(|g| g.id == n) else {
                bail!("there is no generation {n} (see `driftless history`)");
            };
            if g.root != root_name {
                bail!(
                    "generation {n} changed root {}, not {root_name}: run `driftless rollback --to {n} --root {}`",
                    g.root,
                    g.root
                );
            }
            match g.status {
                Status::Applied => {}
                Status::Undone => bail!(
                    "generation {n} was undone already{}: nothing to undo",
                    g.finished_at
                        .as_deref()
                        .map(|at| format!(" (at {at})"))
                        .unwrap_or_default()
                ),
                Status::RolledBack => {
                    bail!("generation {n} failed and was rolled back when it ran: nothing to undo")
                }
                other => bail!(
                    "generation {n} is {other}, not applied (see `driftless history {n}`): nothing to undo"
                ),
            }
            n
        }
        None => match applied.last() {
            Some(g) => g.id,
            None => {
                // The generations may belong to another root (a demo
                // converged with --root): say which, not just "none".
                let others: BTreeSet<&str> = all
                    .iter()
                    .filter(|g| g.status == Status::Applied && g.root != root_name)
                    .map(|g| g.root.as_str())
                    .collect();
                match others.iter().next() {
                    Some(other) => bail!(
                        "no applied generation of root {root_name}; the applied generations belong to root {}: run `driftless rollback --root {other}`",
                        others.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                    None => bail!(
                        "no applied generation of root {root_name} to roll back (see `driftless history`)"
                    ),
                }
            }
        },
    })
}

/// `resume`: lifts the pin.
pub fn resume(app: &App) -> Result<ActionResult> {
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let back_to = match &app.settings.source {
        Some(g) => format!("the head of branch {}", g.branch),
        None => "the head of the config repo".to_owned(),
    };
    let note = match policy::resume(&mut state) {
        Some(p) => format!(
            "pin lifted ({}); the next converge applies {back_to}",
            p.reason.unwrap_or_default()
        ),
        None => "the host was not pinned".to_owned(),
    };
    app.store.save_state(&state)?;
    Ok(ActionResult::done(note))
}

/// `retry`: lifts the quarantine, so the next converge tries the head;
/// says what the next converge will really do (the head may have moved
/// on, the host may be pinned or paused).
pub fn retry(app: &App) -> Result<ActionResult> {
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let head = match &app.settings.source {
        Some(_) => crate::source::cache_status(&app.store.git_cache())
            .ok()
            .and_then(|s| s.fetched),
        None => None,
    };
    let mut note = match policy::retry(&mut state) {
        Some(q) => match head.as_deref().filter(|h| *h != q.key) {
            Some(h) => format!(
                "quarantine of {} lifted; the head has moved on to {}, which the next converge applies",
                short(&q.key),
                short(h)
            ),
            None => format!(
                "quarantine of {} lifted; the next converge tries it again",
                short(&q.key)
            ),
        },
        None => "nothing is quarantined: the next converge applies the head as usual".to_owned(),
    };
    if let Some(p) = &state.paused {
        note.push_str(&format!("; but {}", policy::paused_why(p)));
    } else if let Some(pin) = &state.pinned {
        note.push_str(&format!(
            "; but the host is pinned ({}): nothing is applied until `driftless resume`",
            pin.reason.as_deref().unwrap_or("driftless rollback")
        ));
    }
    app.store.save_state(&state)?;
    Ok(ActionResult::done(note))
}

/// `pause --reason TEXT`: every converge is refused (daemon ticks,
/// `converge --now` from anyone, in-process ones) until `unpause`.
/// Returns the pause set, for the journal.
pub fn pause(app: &App, reason: &str) -> Result<(ActionResult, crate::agent::Pause)> {
    let reason = reason.trim();
    if reason.is_empty() {
        bail!("say why with --reason TEXT: it is shown to everyone whose converge is refused");
    }
    let by = crate::system::facts::invoking_user();
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let before = policy::pause(&mut state, reason, &by, &now());
    app.store.save_state(&state)?;
    let mut note =
        format!("paused: every converge is refused until `driftless unpause` ({reason})");
    if let Some(b) = before {
        note.push_str(&format!(
            "; it was paused already by {} since {} ({}), reason replaced",
            b.by, b.at, b.reason
        ));
    }
    let set = state.paused.clone().unwrap_or_else(|| crate::agent::Pause {
        reason: reason.to_owned(),
        by: by.clone(),
        at: now(),
    });
    Ok((ActionResult::done(note), set))
}

/// `unpause`: lifts the pause. Returns the pause lifted (for the journal)
/// and who lifted it.
pub fn unpause(app: &App) -> Result<(ActionResult, Option<(crate::agent::Pause, String)>)> {
    let by = crate::system::facts::invoking_user();
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    match policy::unpause(&mut state) {
        Some(p) => {
            app.store.save_state(&state)?;
            let note = format!(
                "unpaused (paused by {} since {}: {}); the next converge runs",
                p.by, p.at, p.reason
            );
            Ok((ActionResult::done(note), Some((p, by))))
        }
        None => Ok((
            ActionResult::done("the host was not paused".to_owned()),
            None,
        )),
    }
}

/// `recover`: only the crash recovery every converge starts with.
pub fn recover(
    app: &App,
    root: &Path,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<ActionResult> {
    let root = FsRoot::open(root)?;
    let _lock = app.store.lock()?;
    let mut state = app.store.load_state()?;
    let mut recovery = recover_into(app, &root, &mut state, sink, cancel)?;
    if let Some(failed) = recovery.failed {
        return Ok(ActionResult::failed(recovery.notes, failed));
    }
    if recovery.notes.is_empty() {
        recovery.notes.push("nothing to recover".to_owned());
    }
    Ok(ActionResult {
        outcome: Outcome::Done,
        notes: recovery.notes,
        error: None,
    })
}
