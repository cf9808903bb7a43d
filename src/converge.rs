//! observe -> plan -> snapshot -> apply -> (on failure) restore.
//!
//! The one place that ties the config repo, the planner and the host
//! together. Nothing changes the host before the snapshot of every path the
//! plan touches has been taken; a failed step restores the snapshot.

use std::path::Path;

use anyhow::{Context, Result};
use tracing::{debug, info, warn};

use std::collections::BTreeMap;

use crate::desired::model::{Kind, Resource, Service};
use crate::desired::{self, ConfigTree, DesiredState, Diagnostic, Facts, LoadOptions};
use crate::plan::observed::{ObservedHost, UnitObs};
use crate::plan::{self, Change, Op, PackageChange, Plan, PlanProblem};
use crate::snapshot::Snapshot;
use crate::system::{accounts, dnf, fsroot::FsRoot, package_store, rpm, systemctl};

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
    /// The `latest` versions the repositories offered when planning.
    pub latest: BTreeMap<String, crate::plan::rpmver::Evr>,
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
        latest: observed.latest,
    })
}

/// Reads the current state of everything the desired state manages, with
/// read-only calls only: stat and hash of each path, one `rpm -q` for the
/// declared packages, one `systemctl show` for the declared units, and one
/// dnf metadata query only when a `latest` package is declared.
pub fn observe(root: &FsRoot, desired: &DesiredState) -> Result<ObservedHost> {
    observe_with(root, desired, None)
}

/// Like [`observe`], reusing `latest` versions already known instead of
/// asking the repositories again.
pub fn observe_with(
    root: &FsRoot,
    desired: &DesiredState,
    latest_known: Option<&BTreeMap<String, crate::plan::rpmver::Evr>>,
) -> Result<ObservedHost> {
    let mut host = ObservedHost {
        accounts: accounts::read(root)?,
        ..ObservedHost::default()
    };
    let mut names = Vec::new();
    let mut latest = Vec::new();
    for d in &desired.resources {
        if let Resource::Package(p) = &d.resource {
            names.push(p.name.clone());
            if p.state == crate::desired::model::PackageState::Latest {
                latest.push(p.name.clone());
            }
        }
    }
    host.packages = rpm::query(root.path(), &names)?;
    match latest_known {
        Some(known) => host.latest = known.clone(),
        None if !latest.is_empty() => host.latest = dnf::latest(root.path(), &latest)?,
        None => {}
    }
    host.units = observe_units(root, &declared_services(desired))?;
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
        /// The changes, in order (service steps as re-planned after the
        /// package transaction).
        changes: Vec<Change>,
        /// The dnf transactions recorded in `dnf history`.
        dnf_transactions: Vec<u64>,
    },
    /// A step failed; every change before it was put back.
    Restored {
        /// The step that failed and why.
        error: anyhow::Error,
        /// Steps that had succeeded before (and were undone).
        undone: usize,
    },
    /// A step failed and the host could not be put back entirely.
    RestoreFailed {
        /// The step that failed and why.
        error: anyhow::Error,
        /// What went wrong while restoring.
        restore_errors: Vec<anyhow::Error>,
        /// What still differs from before the converge.
        differences: Vec<String>,
    },
}

/// What `apply` needs besides the plan.
pub struct ApplyContext<'a> {
    /// The root converged.
    pub root: &'a FsRoot,
    /// The desired state (services are re-planned from it).
    pub desired: &'a DesiredState,
    /// The agent's state directory (package store).
    pub state_dir: &'a Path,
    /// The `latest` versions found when planning (not asked again).
    pub latest: BTreeMap<String, crate::plan::rpmver::Evr>,
}

/// Applies `plan`: snapshot of every path first, then repos, one package
/// transaction, directories, files and symlinks, then the service steps
/// (re-planned against a fresh `systemctl show` when packages changed,
/// since a package can add or change units). On the first failure nothing
/// after it runs and the snapshot is restored. `Err` only when nothing was
/// changed (the snapshot could not be taken).
pub fn apply(cx: &ApplyContext<'_>, plan: &Plan) -> Result<Applied> {
    let plan_latest = &cx.latest;
    let root = cx.root;
    // A package can create or change any path, so with a package
    // transaction every declared path is captured, not only planned ones.
    let mut paths: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| c.op.path().map(str::to_owned))
        .collect();
    if plan
        .changes
        .iter()
        .any(|c| matches!(c.op, Op::Package { .. }))
    {
        paths.extend(plan::paths_to_observe(cx.desired));
    }
    let snapshot = Snapshot::capture(root, &paths)
        .context("failed to snapshot the host before changing it")?;
    let mut done: Vec<Change> = Vec::new();
    let mut dnf_transactions = Vec::new();
    // Packages and services are not in the snapshot yet: once one of them
    // changed, a failure cannot be fully undone.
    let mut irreversible: Vec<String> = Vec::new();
    let fail =
        |error: anyhow::Error, done: &[Change], irreversible: &[String]| -> Applied {
            warn!(
                error = format!("{error:#}"),
                undo = done.len(),
                "converge step failed; restoring the snapshot"
            );
            let restore_errors = snapshot.restore(root);
            let mut differences = snapshot
                .differences(root)
                .unwrap_or_else(|e| vec![format!("(could not verify: {e:#})")]);
            differences.extend(irreversible.iter().map(|c| {
                format!("{c} (packages and services are not rolled back by this version)")
            }));
            if restore_errors.is_empty() && differences.is_empty() {
                Applied::Restored {
                    error,
                    undone: done.len(),
                }
            } else {
                Applied::RestoreFailed {
                    error,
                    restore_errors,
                    differences,
                }
            }
        };
    // Repos first, then the package transaction.
    let mut rest: Vec<Change> = Vec::new();
    let mut packages: Vec<&Change> = Vec::new();
    for change in &plan.changes {
        match change.op {
            Op::Package { .. } => packages.push(change),
            _ if change.resource.kind == Kind::Repo && packages.is_empty() && rest.is_empty() => {
                info!(resource = %change.resource, action = change.op.verb(), path = change.op.path(), "applying");
                if let Err(error) = apply_step(root, &change.op) {
                    return Ok(fail(
                        error.context(format!("failed to converge {}", change.resource)),
                        &done,
                        &irreversible,
                    ));
                }
                done.push(change.clone());
            }
            _ => rest.push(change.clone()),
        }
    }
    if !packages.is_empty() {
        info!(count = packages.len(), "applying the package transaction");
        match apply_packages(cx, &packages) {
            Ok(ids) => {
                dnf_transactions = ids;
                irreversible.extend(packages.iter().map(|c| c.resource.to_string()));
                done.extend(packages.iter().map(|c| (*c).clone()));
            }
            Err(e) => {
                return Ok(fail(
                    e.context("failed to converge packages"),
                    &done,
                    &irreversible,
                ));
            }
        }
        // Packages ship files, directories and units, and their scriptlets
        // may start or restart services: what remains is planned again
        // from a fresh observation.
        rest = match replan(cx, plan_latest, &done) {
            Ok(rest) => rest,
            Err(e) => return Ok(fail(e, &done, &irreversible)),
        };
    }
    let live = root.path() == Path::new("/");
    for change in rest {
        info!(resource = %change.resource, action = change.op.verb(), path = change.op.path(), "applying");
        let result = match &change.op {
            Op::DaemonReload => systemctl::run(None, "daemon-reload", &[]),
            Op::Service { unit, verb } => systemctl::run(
                (!live).then(|| root.path()),
                verb.as_str(),
                std::slice::from_ref(unit),
            ),
            op => apply_step(root, op),
        };
        if let Err(error) = result {
            return Ok(fail(
                error.context(format!("failed to converge {}", change.resource)),
                &done,
                &irreversible,
            ));
        }
        if change.op.is_service() {
            irreversible.push(change.resource.to_string());
        }
        done.push(change);
    }
    Ok(Applied::Done {
        changes: done,
        dnf_transactions,
    })
}

/// Observes again after the package transaction and plans what remains.
/// A package or repo change in the new plan means the transaction did not
/// reach the declared state: that is a failure, not a loop.
fn replan(
    cx: &ApplyContext<'_>,
    latest: &BTreeMap<String, crate::plan::rpmver::Evr>,
    done: &[Change],
) -> Result<Vec<Change>> {
    let host = observe_with(cx.root, cx.desired, Some(latest))
        .context("failed to observe the host after the package transaction")?;
    let plan = plan::plan_after(cx.desired, &host, done).map_err(|problems| {
        let msgs: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("after the package transaction: {}", msgs.join("; "))
    })?;
    if let Some(c) = plan
        .changes
        .iter()
        .find(|c| matches!(c.resource.kind, Kind::Package | Kind::Repo))
    {
        anyhow::bail!(
            "after the package transaction {} still differs: {}",
            c.resource,
            c.reasons.join(", ")
        );
    }
    Ok(plan.changes)
}

fn declared_services(desired: &DesiredState) -> Vec<&Service> {
    desired
        .resources
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::Service(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn observe_units(root: &FsRoot, services: &[&Service]) -> Result<BTreeMap<String, UnitObs>> {
    let units: Vec<String> = services.iter().map(|s| s.unit.clone()).collect();
    if root.path() == Path::new("/") {
        systemctl::show(&units)
    } else {
        systemctl::is_enabled_in_root(root.path(), &units)
    }
}

/// One dnf transaction for every package change, then the installed RPMs
/// are kept in the package store.
fn apply_packages(cx: &ApplyContext<'_>, changes: &[&Change]) -> Result<Vec<u64>> {
    let mut tx = dnf::Transaction::default();
    let mut names = Vec::new();
    for c in changes {
        let Op::Package { name, change } = &c.op else {
            continue;
        };
        names.push(name.clone());
        match change {
            PackageChange::Install { spec }
            | PackageChange::Upgrade { spec, .. }
            | PackageChange::Downgrade { spec, .. } => {
                dnf::check_spec(spec)?;
                tx.install.push(spec.clone());
            }
            PackageChange::Remove { .. } => {
                dnf::check_spec(name)?;
                tx.remove.push(name.clone());
            }
        }
    }
    let root = cx.root.path();
    let before = rpm::query(root, &names)?;
    let ids = dnf::apply(root, &tx)?;
    let after = rpm::query(root, &names)?;
    // The store is for rollback; failing to fill it must not fail a
    // converge whose transaction succeeded.
    if let Err(e) = package_store::keep(root, cx.state_dir, &before, &after) {
        warn!(
            error = format!("{e:#}"),
            "could not keep the installed RPMs in the package store"
        );
    }
    Ok(ids)
}

fn apply_step(root: &FsRoot, op: &Op) -> Result<()> {
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
        Op::Package { .. } | Op::DaemonReload | Op::Service { .. } => Ok(()),
    }
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
