//! observe -> plan -> snapshot -> apply -> (on failure) restore.
//!
//! The one place that ties the config repo, the planner and the host
//! together. Nothing changes the host before the snapshot of every path the
//! plan touches has been taken; a failed step restores the snapshot.

use std::path::Path;

use anyhow::{Context, Result};
use tracing::{debug, info, warn};

use crate::desired::{self, ConfigTree, DesiredState, Diagnostic, Facts, LoadOptions};
use crate::plan::observed::ObservedHost;
use crate::plan::{self, Change, Op, Plan, PlanProblem};
use crate::snapshot::Snapshot;
use crate::system::{accounts, fsroot::FsRoot};

/// Why nothing was changed: the desired state or plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The config repo is invalid.
    #[error("the config repo is invalid")]
    Invalid(Vec<Diagnostic>),
    /// The plan cannot be made against this host.
    #[error("cannot plan")]
    Unplannable(Vec<PlanProblem>),
    /// Anything else (I/O).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A desired state with its plan against the host, ready to apply.
pub struct Prepared {
    /// What the host should be.
    pub desired: DesiredState,
    /// Where the desired state came from (`directory …`, `commit …`).
    pub source: String,
    /// The plan.
    pub plan: Plan,
}

/// Computes the desired state for `host` from `tree` and plans it against
/// the host under `root` (`None`: a root that does not exist yet, as for a
/// dry run into a fresh directory). Changes nothing.
pub fn prepare(
    tree: &dyn ConfigTree,
    host: &str,
    facts: &Facts,
    opts: &LoadOptions,
    root: Option<&FsRoot>,
) -> Result<Prepared, PrepareError> {
    let desired = match desired::load(tree, host, facts, opts) {
        Ok(d) => d,
        Err(desired::LoadError::Invalid(diags)) => return Err(PrepareError::Invalid(diags)),
        Err(desired::LoadError::Read(e)) => return Err(PrepareError::Other(e)),
    };
    info!(host, host_file = %desired.host_file, roles = ?desired.roles, "desired state loaded");
    let observed = match root {
        Some(root) => observe(root, &desired)?,
        None => observe_empty(&desired),
    };
    let plan = plan::plan(&desired, &observed).map_err(PrepareError::Unplannable)?;
    Ok(Prepared {
        desired,
        source: tree.describe(),
        plan,
    })
}

/// Reads the current state of every path the desired state manages.
pub fn observe(root: &FsRoot, desired: &DesiredState) -> Result<ObservedHost> {
    let mut host = ObservedHost {
        accounts: accounts::read(root)?,
        ..ObservedHost::default()
    };
    for path in plan::paths_to_observe(desired) {
        let o = root.observe(&path)?;
        debug!(path, observed = ?std::mem::discriminant(&o), "observed");
        host.paths.insert(path, o);
    }
    Ok(host)
}

/// What an empty root looks like: every path missing, with all ancestors.
fn observe_empty(desired: &DesiredState) -> ObservedHost {
    let mut host = ObservedHost {
        accounts: crate::plan::observed::Accounts::parse("", ""),
        ..ObservedHost::default()
    };
    for path in plan::paths_to_observe(desired) {
        let missing_parents = path
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| path[..i].to_owned())
            .collect();
        host.paths.insert(
            path,
            crate::plan::observed::Observed::Missing { missing_parents },
        );
    }
    host
}

/// How applying a plan ended.
#[derive(Debug)]
pub enum Applied {
    /// Every change was applied.
    Done {
        /// The changes, in order.
        changes: Vec<Change>,
    },
    /// A step failed; every path was put back as it was.
    Restored {
        /// The step that failed and why.
        error: anyhow::Error,
        /// Steps that had succeeded before (and were undone).
        undone: usize,
    },
    /// A step failed and putting the host back failed too.
    RestoreFailed {
        /// The step that failed and why.
        error: anyhow::Error,
        /// What went wrong while restoring.
        restore_errors: Vec<anyhow::Error>,
        /// Paths that still differ from their prior state.
        differences: Vec<String>,
    },
}

/// Applies `plan` under `root`: snapshot first, then each change in order;
/// on the first failure, restore the snapshot. `Err` only when nothing was
/// changed (the snapshot could not be taken).
pub fn apply(root: &FsRoot, plan: &Plan) -> Result<Applied> {
    let snapshot =
        Snapshot::capture(root, plan).context("failed to snapshot the host before changing it")?;
    let mut done = Vec::new();
    for change in &plan.changes {
        info!(resource = %change.resource, action = change.op.verb(), path = change.op.path(), "applying");
        if let Err(error) = apply_one(root, &change.op) {
            let error = error.context(format!("failed to converge {}", change.resource));
            warn!(
                error = format!("{error:#}"),
                undo = done.len(),
                "converge step failed; restoring the snapshot"
            );
            let restore_errors = snapshot.restore(root);
            let differences = snapshot
                .differences(root)
                .unwrap_or_else(|e| vec![format!("(could not verify: {e:#})")]);
            if restore_errors.is_empty() && differences.is_empty() {
                return Ok(Applied::Restored {
                    error,
                    undone: done.len(),
                });
            }
            return Ok(Applied::RestoreFailed {
                error,
                restore_errors,
                differences,
            });
        }
        done.push(change.clone());
    }
    Ok(Applied::Done { changes: done })
}

fn apply_one(root: &FsRoot, op: &Op) -> Result<()> {
    fault_point(op.path())?;
    match op {
        Op::CreateDir { path, meta } => root.create_dir(path, meta.ids),
        Op::WriteFile {
            path,
            content,
            meta,
        } => root.write_file(path, content, meta.ids),
        Op::SetMeta { path, meta } => root.set_meta(path, meta.ids),
        Op::Symlink { path, target } => root.symlink(path, target),
        Op::RemoveFile { path } => root.remove_file(path),
        Op::RemoveDir { path } => root.remove_dir(path),
    }
}

/// Test builds only: `DRIFTLESS_FAULT_PATH=/etc/x` makes the step that
/// changes that path fail, to prove that a failure mid-way restores the host.
#[cfg(feature = "fault-injection")]
fn fault_point(path: &str) -> Result<()> {
    if std::env::var("DRIFTLESS_FAULT_PATH").is_ok_and(|p| p == path) {
        anyhow::bail!("fault injected at {path}");
    }
    Ok(())
}

#[cfg(not(feature = "fault-injection"))]
fn fault_point(_path: &str) -> Result<()> {
    Ok(())
}

/// Opens the root directory of a converge. A missing root is created when
/// `create` (a real converge into a fresh demo path), else `None`.
pub fn open_root(path: &Path, create: bool) -> Result<Option<FsRoot>> {
    if !path.exists() {
        if !create {
            return Ok(None);
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("failed to create root directory {}", path.display()))?;
    }
    FsRoot::open(path).map(Some)
}
