//! One transaction: snapshot what the plan (or a package) may touch,
//! record the generation, apply, run the health checks, commit — or
//! restore the snapshot and verify the host against it.

use std::path::Path;

use anyhow::{Context, Result};
use tracing::warn;

use super::apply::{ApplyContext, apply};
use super::checks;
use super::events::{Event, Sink};
use super::observe::Prepared;
use super::snapshot::{self, Target};
use crate::agent::policy::Blame;
use crate::cancel::Cancel;
use crate::desired::DesiredState;
use crate::desired::model::{PrimKind, ResourceId, RunState, Service};
use crate::fault;
use crate::plan::{self, Change, Op, Plan, ServiceVerb};
use crate::store::{CheckRecord, Generation, Generations, NewGeneration, Snapshot, Status, Store};
use crate::system::{accounts, environment, fsroot::FsRoot, rpm};

/// How a converge transaction ended.
#[derive(Debug)]
pub enum Outcome {
    /// Applied, and the health checks passed.
    Applied {
        /// The generation recorded.
        generation: u64,
        /// The changes made, in order (steps after the package transaction
        /// as re-planned).
        changes: Vec<Change>,
        /// dnf transactions recorded in `dnf history`.
        dnf_transactions: Vec<u64>,
    },
    /// A step or a check failed; the host was restored and verified.
    RolledBack {
        /// The generation recorded.
        generation: u64,
        /// What failed.
        error: anyhow::Error,
        /// Whether the desired state is to blame (quarantine it), or a stop
        /// request or a failure to record.
        blame: Blame,
    },
    /// A step or a check failed, and restoring the host failed too.
    RestoreFailed {
        /// The generation recorded.
        generation: u64,
        /// What failed.
        error: anyhow::Error,
        /// See [`Outcome::RolledBack`].
        blame: Blame,
        /// What went wrong while restoring.
        restore_errors: Vec<anyhow::Error>,
        /// What still differs from before the converge.
        differences: Vec<String>,
    },
}

/// Where a transaction runs and with which limits.
pub struct Engine<'a> {
    /// The root converged.
    pub root: &'a FsRoot,
    /// The state directory (generations, objects, package store).
    pub store: &'a Store,
    /// Health-check limits.
    pub limits: checks::Limits,
    /// Generations kept.
    pub keep_generations: usize,
    /// Limits and trust of pinned downloads.
    pub downloads: &'a crate::source::pinned::DownloadSettings,
}

/// What a generation records of the run that makes it.
#[derive(Clone, Copy, Debug)]
pub struct RunInfo<'a> {
    /// The key of the desired state applied.
    pub key: &'a str,
    /// Resources the run heals (drift from a state already applied).
    pub healed: usize,
    /// Who started the run.
    pub started_by: &'a str,
}

/// The stores a transaction writes, opened once for it.
pub(super) struct Stores {
    pub(super) generations: Generations,
    objects: crate::store::Objects,
    packages: crate::store::PackageStore,
}

impl Engine<'_> {
    pub(super) fn stores(&self) -> Result<Stores> {
        Ok(Stores {
            generations: self.store.generations()?,
            objects: self.store.objects()?,
            packages: self.store.packages(),
        })
    }

    /// The canonical root, as generations record it.
    pub(super) fn root_name(&self) -> String {
        self.root.path().display().to_string()
    }
}

impl Stores {
    /// Where snapshots are taken and restored.
    pub(super) fn target<'b>(&'b self, root: &'b FsRoot, cancel: &'b Cancel) -> Target<'b> {
        Target {
            root,
            objects: &self.objects,
            packages: &self.packages,
            cancel,
        }
    }
}

/// Runs `prepared` (a non-empty plan) as a transaction under generation
/// bookkeeping; `key` identifies the desired state (commit or hash).
/// `Err` only when nothing was changed (the snapshot could not be taken or
/// recorded).
pub fn transact(
    engine: &Engine<'_>,
    prepared: &Prepared,
    run: &RunInfo<'_>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Outcome> {
    let key = run.key;
    let stores = engine.stores()?;
    let target = stores.target(engine.root, cancel);
    let (plan, desired) = (&prepared.plan, &prepared.desired);
    let (paths, packages, units) = what_to_snapshot(desired, plan);
    let settings = settings_to_snapshot(plan);
    let snapshot = snapshot::capture(&target, &paths, packages.as_deref(), &units, &settings)
        .context("failed to snapshot the host before changing it")?;
    let mut generation = stores
        .generations
        .begin(
            NewGeneration {
                key,
                source: &prepared.source,
                host_file: &desired.host_file,
                root: &engine.root_name(),
                healed: run.healed,
                started_by: run.started_by,
            },
            &snapshot,
            &plan.changes,
            plan.changes.len(),
        )
        .context("failed to record the generation before changing the host")?;
    sink.event(&Event::Began {
        generation: generation.id,
        changes: plan.changes.len(),
    });
    fault::point("after-snapshot");

    // Every download the plan needed was fetched before the snapshot; a
    // plan made again after packages may need one that was in place then.
    let contents = |sha: &[u8; 32], url: Option<&str>| match url {
        Some(_) => super::downloads::content(engine.store, engine.downloads, sha, url, cancel),
        None => stores.objects.get(&hex::encode(sha)),
    };
    let cx = ApplyContext {
        root: engine.root,
        desired,
        packages: &stores.packages,
        latest: prepared.latest.clone(),
        cancel,
        contents: &contents,
        secret_contents: &prepared.secret_contents,
    };
    let mut dnf_ids = Vec::new();
    let result = apply(&cx, plan, &mut dnf_ids, sink).and_then(|changes| {
        checked(engine, desired, &changes, &mut generation, sink, cancel).map(|()| changes)
    });
    generation.dnf_transactions = dnf_ids.clone();
    let gens = &stores.generations;
    let outcome = match result {
        Ok(changes) => match gens.finish(&mut generation, Status::Applied, None) {
            Ok(()) => {
                drop_kept_trees(engine.root, &changes);
                Outcome::Applied {
                    generation: generation.id,
                    changes,
                    dnf_transactions: dnf_ids,
                }
            }
            // A transaction that cannot record its commit aborts: left as
            // it is, the next start would take it for a crash anyway.
            Err(e) => rollback(
                gens,
                &mut generation,
                &snapshot,
                &target,
                e.context("could not record the converge as applied"),
                Status::RolledBack,
                Blame::Environment,
                sink,
            )?,
        },
        Err(error) => {
            // Like a crash, a stop request says nothing about the commit;
            // neither does a host that is not fit to converge.
            let blame = if cancel.is_cancelled() || environment::is_to_blame(&error) {
                Blame::Environment
            } else {
                Blame::DesiredState
            };
            rollback(
                gens,
                &mut generation,
                &snapshot,
                &target,
                error,
                Status::RolledBack,
                blame,
                sink,
            )?
        }
    };
    collect_garbage(engine, cancel);
    Ok(outcome)
}

/// The health checks of `desired` (the declared ones, and every service
/// declared running) on a host in sync with it: after a reboot, where
/// nothing changed and nothing would be rolled back.
pub fn check_health(
    engine: &Engine<'_>,
    desired: &DesiredState,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<()> {
    let running = running_units(desired);
    checks::run(
        &desired.checks,
        &running,
        engine.limits,
        engine.root.is_live(),
        true,
        sink,
        cancel,
    )
    .context("health check failed")
}

/// The services `desired` declares running: the implicit health check.
fn running_units(desired: &DesiredState) -> Vec<String> {
    desired
        .services()
        .iter()
        .filter(|s| s.state == Some(RunState::Running))
        .map(|s| s.unit.clone())
        .collect()
}

/// The health checks after the last change (the declared ones, and every
/// service declared running); their results go into `generation`. A stop
/// asked for meanwhile is no commit either.
fn checked(
    engine: &Engine<'_>,
    desired: &DesiredState,
    changes: &[Change],
    generation: &mut Generation,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<()> {
    let running = running_units(desired);
    let mut recorded = Checks {
        inner: sink,
        checks: Vec::new(),
    };
    let result = checks::run(
        &desired.checks,
        &running,
        engine.limits,
        engine.root.is_live(),
        needs_settling(changes),
        &mut recorded,
        cancel,
    );
    generation.checks = recorded.checks;
    result.context("health check failed")?;
    if cancel.should_stop() {
        anyhow::bail!("driftless was asked to stop before the converge was committed");
    }
    Ok(())
}

/// Once a converge committed, the trees its extractions replaced are no
/// longer needed for a rollback; one that cannot be removed is a warning
/// (the next extraction there clears it).
fn drop_kept_trees(root: &FsRoot, changes: &[Change]) {
    for c in changes {
        if let Op::Extract { path, .. } = &c.op
            && let Err(e) = root.drop_kept_tree(path)
        {
            warn!(error = format!("{e:#}"), "could not remove a replaced tree");
        }
    }
}

/// Removes old generations and the objects and RPMs nothing needs any
/// more; a failure is a warning, never the converge's.
fn collect_garbage(engine: &Engine<'_>, cancel: &Cancel) {
    let installed = || {
        Ok(rpm::query_all(engine.root.path(), cancel)?
            .iter()
            .map(crate::store::packages::file_name)
            .collect())
    };
    if let Err(e) = engine
        .store
        .collect_garbage(engine.keep_generations, installed)
    {
        warn!(
            error = format!("{e:#}"),
            "garbage collection of old generations failed"
        );
    }
}

/// Whether the services need `settle_time` before they are checked: only
/// when one was started, restarted or reloaded, or a package changed (its
/// scriptlets may restart anything). Otherwise they run as they did before
/// this converge, and a look at their state is enough.
fn needs_settling(changes: &[Change]) -> bool {
    changes.iter().any(|c| match &c.op {
        Op::Package { .. } => true,
        Op::Service { verb, .. } => matches!(
            verb,
            ServiceVerb::Start
                | ServiceVerb::Restart
                | ServiceVerb::TryRestart
                | ServiceVerb::Reload
        ),
        _ => false,
    })
}

/// Passes events on and keeps the health checks' results for the
/// generation's record (`history N`).
struct Checks<'a> {
    inner: &'a mut dyn Sink,
    checks: Vec<CheckRecord>,
}

impl Sink for Checks<'_> {
    fn event(&mut self, event: &Event) {
        if let Event::CheckResult {
            check,
            passed,
            error,
        } = event
        {
            self.checks.push(CheckRecord {
                name: check.clone(),
                passed: *passed,
                error: error.clone(),
            });
        }
        self.inner.event(event);
    }
}

/// Units to snapshot, each with what it depends on.
type UnitDeps = Vec<snapshot::UnitToKeep>;

/// The paths, package names and units a snapshot before `changes` must
/// hold. A package can create or change any path and restart any unit:
/// with a package transaction, every declared path and service is captured.
fn what_to_snapshot(
    desired: &DesiredState,
    plan: &Plan,
) -> (Vec<String>, Option<Vec<String>>, UnitDeps) {
    let changes = &plan.changes;
    // A `latest` package is decided again once new repo files are written,
    // so it may change even when the plan shows no package step yet.
    let packages_change = changes.iter().any(|c| matches!(c.op, Op::Package { .. }))
        || (!desired.package_names(true).is_empty() && plan.repo_phase > 0);
    let mut paths: Vec<String> = changes
        .iter()
        .filter_map(|c| c.op.path().map(str::to_owned))
        .collect();
    let services = desired.services();
    let mut touched: Vec<String> = changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::Service { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    if packages_change {
        paths.extend(plan::paths_to_observe(desired));
        touched = services.iter().map(|s| s.unit.clone()).collect();
    }
    // Account steps rewrite the account databases (and so may a package's
    // scriptlets, for the accounts declared here): kept whole, restored
    // byte for byte.
    let accounts_declared = desired.declares_accounts();
    if changes.iter().any(|c| matches!(c.op, Op::Account { .. }))
        || (packages_change && accounts_declared)
    {
        paths.extend(accounts::DATABASES.iter().map(|p| (*p).to_owned()));
    }
    paths.sort();
    paths.dedup();
    touched.sort();
    touched.dedup();
    let units = touched
        .into_iter()
        .map(|u| {
            let declared = services.iter().find(|s| s.unit == u);
            snapshot::UnitToKeep {
                depends: declared
                    .map(|s| dependency_keys(desired, s))
                    .unwrap_or_default(),
                restart_command: declared.and_then(|s| s.restart_command.clone()),
                unit: u,
            }
        })
        .collect();
    let packages = packages_change.then(|| desired.package_names(false));
    (paths, packages, units)
}

/// The settings the plan changes, each with the facets it changes.
fn settings_to_snapshot(plan: &Plan) -> Vec<snapshot::SettingToKeep> {
    plan.changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::Set {
                domain,
                name,
                facets,
            } => Some(snapshot::SettingToKeep {
                domain: *domain,
                name: name.clone(),
                facets: facets.iter().map(|f| f.facet.clone()).collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Restores `snapshot`, verifies the host against it, and records the
/// result in `generation` (`ok_status` when restored).
#[allow(clippy::too_many_arguments)]
pub(super) fn rollback(
    gens: &Generations,
    generation: &mut Generation,
    snapshot: &Snapshot,
    target: &Target<'_>,
    error: anyhow::Error,
    ok_status: Status,
    blame: Blame,
    sink: &mut dyn Sink,
) -> Result<Outcome> {
    // The host comes first: a record that cannot be written (a full disk)
    // must not keep the restore from running.
    let record = |generation: &mut Generation, status: Status, reason: Option<String>| {
        if let Err(e) = gens.finish(generation, status, reason) {
            tracing::error!(
                generation = generation.id,
                error = format!("{e:#}"),
                "could not record the generation's status"
            );
        }
    };
    let running = if ok_status == Status::Undone {
        Status::Undoing
    } else {
        Status::RollingBack
    };
    sink.event(&Event::RollingBack {
        generation: generation.id,
        reason: format!("{error:#}"),
        requested: ok_status == Status::Undone,
    });
    record(generation, running, Some(format!("{error:#}")));
    // A stop request must not leave the host half restored: the restore
    // runs to completion (each step has its timeout).
    let _finish_even_when_stopping = target.cancel.shield();
    let report = snapshot::restore(snapshot, target);
    generation.rollback_dnf_transactions = report.dnf_transactions;
    let restore_errors = report.errors;
    let differences = snapshot::differences(snapshot, target)
        .unwrap_or_else(|e| vec![format!("(could not verify: {e:#})")]);
    if restore_errors.is_empty() && differences.is_empty() {
        record(generation, ok_status, None);
        sink.event(&Event::Restored {
            generation: generation.id,
        });
        Ok(Outcome::RolledBack {
            generation: generation.id,
            error,
            blame,
        })
    } else {
        record(generation, Status::RestoreFailed, None);
        tracing::error!(
            generation = generation.id,
            errors = ?restore_errors.iter().map(|e| format!("{e:#}")).collect::<Vec<_>>(),
            "restore errors"
        );
        sink.event(&Event::RestoreFailed {
            generation: generation.id,
            differences: differences.clone(),
        });
        Ok(Outcome::RestoreFailed {
            generation: generation.id,
            error,
            blame,
            restore_errors,
            differences,
        })
    }
}

/// What a service's `restart_on`/`reload_on` point at, as a rollback sees
/// it: host paths, and `package:NAME`.
fn dependency_keys(desired: &DesiredState, s: &Service) -> Vec<String> {
    // What it reads without naming it: every resource of a kind that
    // reloads it (a firewalld zone, firewalld.service).
    let implied: Vec<ResourceId> = desired
        .resources
        .iter()
        .map(|d| d.resource.id())
        .filter(|id| id.kind.reloads() == Some(s.unit.as_str()))
        .collect();
    s.restart_on
        .iter()
        .chain(&s.reload_on)
        .chain(&implied)
        .filter_map(|id| match id.kind.prim() {
            PrimKind::Package => Some(id.to_string()),
            PrimKind::Path(_) | PrimKind::Edit | PrimKind::Archive => desired
                .resources
                .iter()
                .find(|d| d.resource.id() == *id)
                .and_then(|d| d.resource.path()),
            // A rollback puts back paths and packages only (a restored
            // setting restarts nothing).
            PrimKind::Group
            | PrimKind::User
            | PrimKind::Command
            | PrimKind::Unit
            | PrimKind::Setting => None,
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;
    use crate::desired::model::ResourceId;
    use crate::plan::PackageChange;

    fn service(verb: ServiceVerb) -> Change {
        Change::new(
            &ResourceId::new(Kind::Service, "web.service"),
            Op::Service {
                unit: "web.service".into(),
                verb,
            },
            vec![],
        )
    }

    #[test]
    fn settle_time_is_waited_only_after_something_could_have_restarted_a_service() {
        let file = Change::new(
            &ResourceId::new(Kind::File, "/etc/motd"),
            Op::RemoveFile {
                path: "/etc/motd".into(),
            },
            vec![],
        );
        assert!(!needs_settling(std::slice::from_ref(&file)));
        assert!(!needs_settling(&[
            file.clone(),
            service(ServiceVerb::Enable),
            service(ServiceVerb::Stop),
        ]));
        for verb in [
            ServiceVerb::Start,
            ServiceVerb::Restart,
            ServiceVerb::TryRestart,
            ServiceVerb::Reload,
        ] {
            assert!(needs_settling(&[file.clone(), service(verb)]), "{verb:?}");
        }
        let package = Change::new(
            &ResourceId::new(Kind::Package, "nginx"),
            Op::Package {
                name: "nginx".into(),
                change: PackageChange::Install {
                    spec: "nginx".into(),
                },
            },
            vec![],
        );
        assert!(needs_settling(&[package]));
    }
}
