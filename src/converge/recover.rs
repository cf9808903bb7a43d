//! Finishing what a crash left unfinished, and undoing an applied
//! generation on request (`driftless rollback`).

use std::time::Duration;

use anyhow::Result;
use tracing::{info, warn};

use super::events::Sink;
use super::transaction::{Engine, Outcome, rollback};
use crate::agent::policy::Blame;
use crate::cancel::Cancel;
use crate::store::{Generation, Status};
use crate::system::process;

/// How long recovery waits for a dnf or rpm left running by a crash.
const PACKAGE_MANAGER_WAIT: Duration = Duration::from_secs(300);

/// Undoes an applied generation (`driftless rollback`): restores its
/// snapshot and marks it undone.
pub fn undo(
    engine: &Engine<'_>,
    mut generation: Generation,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Outcome> {
    let stores = engine.stores()?;
    let target = stores.target(engine.root, cancel);
    let snapshot = stores.generations.snapshot(generation.id)?;
    info!(generation = generation.id, "undoing generation on request");
    rollback(
        &stores.generations,
        &mut generation,
        &snapshot,
        &target,
        anyhow::anyhow!("undone by `driftless rollback`"),
        Status::Undone,
        Blame::Environment,
        sink,
    )
}

/// What a recovered generation was doing when it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A converge (or its rollback), cut short by a crash.
    Converge,
    /// A `driftless rollback`, cut short by a crash.
    Undo,
    /// A restore that failed (exit 5), tried again.
    FailedRestore,
}

/// A generation that recovery restored (or tried to), and how it ended.
#[derive(Debug)]
pub struct Recovered {
    /// The generation.
    pub generation: Generation,
    /// Whether the host was restored and verified.
    pub restored: bool,
    /// What still differs, when not.
    pub differences: Vec<String>,
    /// What it was doing.
    pub cut: Cut,
}

/// Rolls back every generation of this root that a crash left unfinished
/// (converging or rolling back), newest first, and tries again to restore
/// those whose restore failed. Waits first, within a bound, for dnf or rpm
/// processes that outlived a crash.
pub fn recover(
    engine: &Engine<'_>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Vec<Recovered>> {
    let stores = engine.stores()?;
    let root_name = engine.root_name();
    let (unfinished, elsewhere): (Vec<Generation>, Vec<Generation>) = stores
        .generations
        .list()?
        .into_iter()
        .filter(|g| g.status.needs_recovery())
        .partition(|g| g.root == root_name);
    for g in &elsewhere {
        warn!(generation = g.id, root = %g.root, "an unfinished generation belongs to another root; it is recovered only with --root {}", g.root);
    }
    // A crash during a write of the state directory's own files leaves a
    // temporary at its top; mid-converge ones are deeper.
    let removed = engine.store.remove_temporaries(!unfinished.is_empty())?;
    if removed > 0 {
        info!(
            removed,
            "removed temporary files a crash left in the state directory"
        );
    }
    if unfinished.is_empty() {
        return Ok(Vec::new());
    }
    process::wait_for_package_managers(PACKAGE_MANAGER_WAIT, cancel)?;
    let target = stores.target(engine.root, cancel);
    let mut out = Vec::new();
    for mut g in unfinished.into_iter().rev() {
        let cut = match g.status {
            Status::Undoing => Cut::Undo,
            Status::RestoreFailed => Cut::FailedRestore,
            _ => Cut::Converge,
        };
        if cut == Cut::FailedRestore {
            warn!(
                generation = g.id,
                "trying again to restore a generation whose restore failed"
            );
        } else {
            warn!(generation = g.id, status = ?g.status, "found a converge cut short by a crash; rolling it back");
        }
        let snapshot = stores.generations.snapshot(g.id)?;
        // Writes the crash cut short left temporaries next to their
        // targets: only those driftless names so, only next to paths the
        // converge could touch.
        for (path, _) in &snapshot.paths {
            let names = engine.root.remove_temporaries(path)?;
            if !names.is_empty() {
                info!(path, removed = ?names, "removed temporary files of an interrupted write");
            }
        }
        // A `driftless rollback` cut short is finished as what it was; a
        // failed restore keeps the reason of the failure it restores from.
        let (reason, status) = match cut {
            Cut::Undo => (
                "undone by `driftless rollback` (finished after a crash)".to_owned(),
                Status::Undone,
            ),
            Cut::FailedRestore => (
                format!(
                    "{}; restored later by recovery",
                    g.reason.as_deref().unwrap_or("the converge failed")
                ),
                Status::RolledBack,
            ),
            Cut::Converge => (
                "interrupted (driftless was stopped mid-converge)".to_owned(),
                Status::Interrupted,
            ),
        };
        let outcome = rollback(
            &stores.generations,
            &mut g,
            &snapshot,
            &target,
            anyhow::anyhow!(reason),
            status,
            Blame::Environment,
            sink,
        )?;
        let (restored, differences) = match outcome {
            Outcome::RestoreFailed { differences, .. } => (false, differences),
            Outcome::RolledBack { .. } | Outcome::Applied { .. } => (true, Vec::new()),
        };
        out.push(Recovered {
            generation: g,
            restored,
            differences,
            cut,
        });
    }
    Ok(out)
}
