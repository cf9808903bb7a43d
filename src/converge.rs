//! observe -> plan -> snapshot -> apply -> check -> commit, or roll back.
//!
//! The one place that ties the desired state, the planner and the host
//! together, as a transaction: nothing changes the host before a snapshot
//! of everything the plan (or a package) may touch is durable in a new
//! generation; any failed step or health check restores that snapshot; a
//! generation left unfinished by a crash is rolled back by [`recover`]
//! before anything else happens.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{debug, info, warn};

use std::collections::BTreeMap;

use crate::desired::model::{Kind, Service};
use crate::desired::{self, ConfigTree, DesiredState, Diagnostic, Facts, LoadOptions};
use crate::fault;
use crate::generations::{Generation, Generations, NewGeneration, Status};
use crate::health;
use crate::objects::Objects;
use crate::plan::observed::ObservedHost;
use crate::plan::{self, Change, Op, PackageChange, Plan, PlanProblem};
use crate::snapshot::{Snapshot, Target};
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

/// Computes the desired state for `host` from `tree`. Changes nothing.
pub fn load(
    tree: &dyn ConfigTree,
    host: &str,
    facts: &Facts,
    opts: &LoadOptions,
) -> Result<DesiredState, desired::LoadError> {
    match desired::load(tree, host, facts, opts) {
        Ok(d) => {
            info!(host, host_file = %d.host_file, roles = ?d.roles, "desired state loaded");
            Ok(d)
        }
        Err(e) => Err(e),
    }
}

/// Plans `desired` against the host under `root` (`None`: a root that does
/// not exist yet, as for a dry run into a fresh directory). Changes nothing.
pub fn prepare(
    desired: DesiredState,
    source: String,
    root: Option<&FsRoot>,
) -> Result<Prepared, PrepareError> {
    let observed = match root {
        Some(root) => observe(root, &desired)?,
        None => observe_empty(&desired),
    };
    let plan = plan::plan(&desired, &observed).map_err(PrepareError::Unplannable)?;
    Ok(Prepared {
        desired,
        source,
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
        live: root.is_live(),
        ..ObservedHost::default()
    };
    let names = desired.package_names(false);
    let latest = desired.package_names(true);
    host.packages = rpm::query(root.path(), &names)?;
    match latest_known {
        Some(known) => host.latest = known.clone(),
        // A failure is kept for the planner: the repository may be
        // declared in this converge and exist only after its repo step.
        None if !latest.is_empty() => match dnf::latest(root.path(), &latest) {
            Ok(l) => host.latest = l,
            Err(e) => host.latest_error = Some(format!("{e:#}")),
        },
        None => {}
    }
    host.units = systemctl::unit_states(root, &units_of(&desired.services()))?;
    for path in plan::paths_to_observe(desired) {
        let o = root.observe(&path)?;
        debug!(path, observed = o.kind_word(), "observed");
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
        /// Whether the desired state is to blame (quarantine it), not a
        /// stop request or a failure to record.
        blame: bool,
    },
    /// A step or a check failed, and restoring the host failed too.
    RestoreFailed {
        /// The generation recorded.
        generation: u64,
        /// What failed.
        error: anyhow::Error,
        /// See [`Outcome::RolledBack`].
        blame: bool,
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
    /// The agent's state directory (generations, objects, package store).
    pub state_dir: &'a Path,
    /// Health-check limits.
    pub limits: health::Limits,
    /// Generations kept.
    pub keep_generations: usize,
}

impl Engine<'_> {
    fn live(&self) -> bool {
        self.root.is_live()
    }

    /// The generations and the object store of the state directory.
    fn stores(&self) -> Result<(Generations, Objects)> {
        Ok((
            Generations::open(self.state_dir)?,
            Objects::open(self.state_dir)?,
        ))
    }

    /// Where snapshots are taken and restored.
    fn target<'b>(&'b self, objects: &'b Objects) -> Target<'b> {
        Target {
            root: self.root,
            objects,
            state_dir: self.state_dir,
        }
    }
}

/// Runs `prepared` (a non-empty plan) as a transaction under generation
/// bookkeeping; `key` identifies the desired state (commit or hash).
/// `Err` only when nothing was changed (the snapshot could not be taken or
/// recorded).
pub fn transact(engine: &Engine<'_>, prepared: &Prepared, key: &str) -> Result<Outcome> {
    let (gens, objects) = engine.stores()?;
    let target = engine.target(&objects);
    let plan = &prepared.plan;
    let desired = &prepared.desired;
    // A `latest` package is decided again once new repo files are written,
    // so it may change even when the plan shows no package step yet.
    let packages_change = plan
        .changes
        .iter()
        .any(|c| matches!(c.op, Op::Package { .. }))
        || (!desired.package_names(true).is_empty()
            && plan.changes.iter().any(|c| c.resource.kind == Kind::Repo));
    // A package can create or change any path and restart any unit: with a
    // package transaction, every declared path and service is captured.
    let mut paths: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| c.op.path().map(str::to_owned))
        .collect();
    let mut touched: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::Service { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    let package_names = desired.package_names(false);
    if packages_change {
        paths.extend(plan::paths_to_observe(desired));
        touched = desired.services().iter().map(|s| s.unit.clone()).collect();
    }
    touched.sort();
    touched.dedup();
    let services = desired.services();
    let units: Vec<(String, Vec<String>)> = touched
        .into_iter()
        .map(|u| {
            let depends = services
                .iter()
                .find(|s| s.unit == u)
                .map(|s| dependency_keys(desired, s))
                .unwrap_or_default();
            (u, depends)
        })
        .collect();
    let snapshot = Snapshot::capture(
        &target,
        &paths,
        packages_change.then_some(&package_names[..]),
        &units,
    )
    .context("failed to snapshot the host before changing it")?;
    let root_name = engine.root.path().display().to_string();
    let mut generation = gens
        .begin(
            NewGeneration {
                key,
                source: &prepared.source,
                host_file: &desired.host_file,
                root: &root_name,
            },
            &snapshot,
            &plan.changes,
            plan.changes.len(),
        )
        .context("failed to record the generation before changing the host")?;
    info!(
        generation = generation.id,
        changes = plan.changes.len(),
        "snapshot taken; applying"
    );
    fault::point("after-snapshot");

    let cx = ApplyContext {
        root: engine.root,
        desired,
        state_dir: engine.state_dir,
        latest: prepared.latest.clone(),
    };
    let mut dnf_ids = Vec::new();
    let result = apply(&cx, plan, &mut dnf_ids).and_then(|changes| {
        let running: Vec<String> = desired
            .services()
            .iter()
            .filter(|s| s.state == Some(crate::desired::model::RunState::Running))
            .map(|s| s.unit.clone())
            .collect();
        health::run(&desired.checks, &running, engine.limits, engine.live())
            .context("health check failed")?;
        // A stop that came in during the checks is not a commit.
        if crate::system::command::stop_requested() {
            anyhow::bail!("driftless was asked to stop before the converge was committed");
        }
        Ok(changes)
    });
    generation.dnf_transactions = dnf_ids.clone();
    let outcome = match result {
        Ok(changes) => match gens.finish(&mut generation, Status::Applied, None) {
            Ok(()) => {
                info!(
                    generation = generation.id,
                    "converge applied; health checks passed"
                );
                Outcome::Applied {
                    generation: generation.id,
                    changes,
                    dnf_transactions: dnf_ids,
                }
            }
            // A transaction that cannot record its commit aborts: left as
            // it is, the next start would take it for a crash anyway.
            Err(e) => rollback(
                &gens,
                &mut generation,
                &snapshot,
                &target,
                e.context("could not record the converge as applied"),
                Status::RolledBack,
                false,
            )?,
        },
        Err(error) => {
            warn!(
                generation = generation.id,
                error = format!("{error:#}"),
                "converge failed; rolling back"
            );
            rollback(
                &gens,
                &mut generation,
                &snapshot,
                &target,
                error,
                Status::RolledBack,
                !crate::system::command::stop_requested_at_all(),
            )?
        }
    };
    if let Err(e) = collect_garbage(engine, &gens, &objects) {
        warn!(
            error = format!("{e:#}"),
            "garbage collection of old generations failed"
        );
    }
    Ok(outcome)
}

/// Restores `snapshot`, verifies the host against it, and records the
/// result in `generation` (`ok_status` when restored).
fn rollback(
    gens: &Generations,
    generation: &mut Generation,
    snapshot: &Snapshot,
    target: &Target<'_>,
    error: anyhow::Error,
    ok_status: Status,
    blame: bool,
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
    record(generation, running, Some(format!("{error:#}")));
    let _finish_even_when_stopping = crate::system::command::RollbackGuard::enter();
    let report = snapshot.restore(target);
    generation.rollback_dnf_transactions = report.dnf_transactions;
    let restore_errors = report.errors;
    let differences = snapshot
        .differences(target)
        .unwrap_or_else(|e| vec![format!("(could not verify: {e:#})")]);
    if restore_errors.is_empty() && differences.is_empty() {
        record(generation, ok_status, None);
        info!(
            generation = generation.id,
            "host restored to its state before the converge"
        );
        Ok(Outcome::RolledBack {
            generation: generation.id,
            error,
            blame,
        })
    } else {
        record(generation, Status::RestoreFailed, None);
        tracing::error!(
            generation = generation.id,
            differences = ?differences,
            errors = ?restore_errors.iter().map(|e| format!("{e:#}")).collect::<Vec<_>>(),
            "RESTORE FAILED: the host differs from its state before the converge and needs attention"
        );
        Ok(Outcome::RestoreFailed {
            generation: generation.id,
            error,
            blame,
            restore_errors,
            differences,
        })
    }
}

/// Keeps the newest generations and what their snapshots need.
fn collect_garbage(engine: &Engine<'_>, gens: &Generations, objects: &Objects) -> Result<()> {
    let kept = gens.prune(engine.keep_generations)?;
    let (mut keep_objects, mut keep_rpms) = crate::generations::referenced(&kept);
    keep_objects.extend(crate::lastgood::objects(engine.state_dir)?);
    objects.retain(&keep_objects)?;
    // The RPM database is asked only when there is a store to prune: a host
    // (or test root) without packages never runs rpm for this.
    if package_store::has_any(engine.state_dir) {
        for n in rpm::query_all(engine.root.path())? {
            keep_rpms.insert(package_store::file_name(&n));
        }
        package_store::retain(engine.state_dir, &keep_rpms)?;
    }
    Ok(())
}

/// Undoes an applied generation (`driftless rollback`): restores its
/// snapshot and marks it undone.
pub fn undo(engine: &Engine<'_>, mut generation: Generation) -> Result<Outcome> {
    let (gens, objects) = engine.stores()?;
    let target = engine.target(&objects);
    let snapshot = gens.snapshot(generation.id)?;
    info!(generation = generation.id, "undoing generation on request");
    rollback(
        &gens,
        &mut generation,
        &snapshot,
        &target,
        anyhow::anyhow!("undone by `driftless rollback`"),
        Status::Undone,
        false,
    )
}

/// A generation that a crash left unfinished, and how its recovery ended.
#[derive(Debug)]
pub struct Recovered {
    /// The generation.
    pub generation: Generation,
    /// Whether the host was restored and verified.
    pub restored: bool,
    /// What still differs, when not.
    pub differences: Vec<String>,
    /// It was a `driftless rollback`, not a converge.
    pub was_undo: bool,
}

/// Rolls back every generation a crash left unfinished (converging or
/// rolling back), oldest last. Waits first, within a bound, for dnf or rpm
/// processes that outlived the crash.
pub fn recover(engine: &Engine<'_>) -> Result<Vec<Recovered>> {
    let gens = Generations::open(engine.state_dir)?;
    let root_name = engine.root.path().display().to_string();
    let (unfinished, elsewhere): (Vec<Generation>, Vec<Generation>) = gens
        .list()?
        .into_iter()
        .filter(|g| g.status.unfinished())
        .partition(|g| g.root == root_name);
    for g in &elsewhere {
        warn!(generation = g.id, root = %g.root, "an unfinished generation belongs to another root; it is recovered only with --root {}", g.root);
    }
    if unfinished.is_empty() {
        return Ok(Vec::new());
    }
    wait_for_package_managers(PACKAGE_MANAGER_WAIT)?;
    let objects = Objects::open(engine.state_dir)?;
    let target = engine.target(&objects);
    let mut out = Vec::new();
    for mut g in unfinished.into_iter().rev() {
        warn!(generation = g.id, status = ?g.status, "found a converge cut short by a crash; rolling it back");
        let snapshot = gens.snapshot(g.id)?;
        // A `driftless rollback` cut short is finished as what it was.
        let was_undo = g.status == Status::Undoing;
        let (reason, status) = if was_undo {
            (
                "undone by `driftless rollback` (finished after a crash)",
                Status::Undone,
            )
        } else {
            (
                "interrupted (driftless was stopped mid-converge)",
                Status::Interrupted,
            )
        };
        let outcome = rollback(
            &gens,
            &mut g,
            &snapshot,
            &target,
            anyhow::anyhow!(reason),
            status,
            false,
        )?;
        let (restored, differences) = match outcome {
            Outcome::RolledBack { .. } => (true, Vec::new()),
            Outcome::RestoreFailed { differences, .. } => (false, differences),
            Outcome::Applied { .. } => (true, Vec::new()),
        };
        out.push(Recovered {
            generation: g,
            restored,
            differences,
            was_undo,
        });
    }
    Ok(out)
}

/// How long recovery waits for a dnf or rpm left running by a crash.
const PACKAGE_MANAGER_WAIT: Duration = Duration::from_secs(300);

/// Waits until no dnf or rpm process runs (a dnf child can outlive a killed
/// driftless and still hold the rpm database).
fn wait_for_package_managers(bound: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        let busy = package_manager_pids();
        if busy.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "dnf or rpm is still running (pids {busy:?}) after {}s; not rolling back under it",
                bound.as_secs()
            );
        }
        info!(pids = ?busy, "waiting for a running dnf or rpm to finish before recovery");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn package_manager_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            // `/proc/PID/stat` is "PID (COMM) STATE ...". A zombie has
            // exited and holds no lock, even while nobody has reaped it.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let comm = &stat[open + 1..close];
            let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
            state != "Z" && matches!(comm, "dnf" | "dnf-3" | "dnf5" | "rpm" | "yum")
        })
        .collect()
}

/// What `apply` needs besides the plan.
pub struct ApplyContext<'a> {
    /// The root converged.
    pub root: &'a FsRoot,
    /// The desired state (steps after packages are re-planned from it).
    pub desired: &'a DesiredState,
    /// The agent's state directory (package store).
    pub state_dir: &'a Path,
    /// The `latest` versions found when planning (not asked again).
    pub latest: BTreeMap<String, crate::plan::rpmver::Evr>,
}

/// Applies `plan` in order: repos, one package transaction, directories,
/// files and symlinks, then the service steps. After the package
/// transaction, what remains is planned again from a fresh observation,
/// since packages ship paths and units. Stops at the first failure (the
/// caller rolls back). Returns the changes made and the dnf transactions.
/// The dnf transaction ids go into `dnf_transactions` as soon as they are
/// known, so a converge that fails later still records them.
pub fn apply(
    cx: &ApplyContext<'_>,
    plan: &Plan,
    dnf_transactions: &mut Vec<u64>,
) -> Result<Vec<Change>> {
    let root = cx.root;
    let mut done: Vec<Change> = Vec::new();
    let mut rest: Vec<Change> = Vec::new();
    let mut packages: Vec<Change> = Vec::new();
    let mut files = 0;
    let mut latest = cx.latest.clone();
    // Repo files (and the directories they need) come before the package
    // transaction; everything else after it.
    for (i, change) in plan.changes.iter().enumerate() {
        match change.op {
            Op::Package { .. } => packages.push(change.clone()),
            _ if i < plan.repo_phase => {
                if crate::system::command::stop_requested() {
                    anyhow::bail!("driftless was asked to stop before {}", change.resource);
                }
                info!(resource = %change.resource, action = change.op.verb(), path = change.op.path(), "applying");
                apply_step(root, &change.op)
                    .with_context(|| format!("failed to converge {}", change.resource))?;
                files += 1;
                fault::point_n("after-file", files);
                done.push(change.clone());
            }
            _ => rest.push(change.clone()),
        }
    }
    // `latest` was decided before the repo files existed: ask again now.
    let latest_names = cx.desired.package_names(true);
    if !latest_names.is_empty() && done.iter().any(|c| c.resource.kind == Kind::Repo) {
        latest = dnf::latest(root.path(), &latest_names)
            .context("failed to query the repositories for the latest versions")?;
        packages = replan_packages(cx, &latest)?;
    }
    if !packages.is_empty() {
        info!(count = packages.len(), "applying the package transaction");
        dnf_transactions
            .extend(apply_packages(cx, &packages).context("failed to converge packages")?);
        done.extend(packages.iter().cloned());
        fault::point("after-dnf");
        rest = replan(cx, &latest, &done)?;
    }
    let live = root.is_live();
    for change in rest {
        if crate::system::command::stop_requested() {
            anyhow::bail!("driftless was asked to stop before {}", change.resource);
        }
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
        result.with_context(|| format!("failed to converge {}", change.resource))?;
        match change.op {
            Op::DaemonReload => fault::point("after-daemon-reload"),
            Op::Service { .. } => {}
            _ => {
                files += 1;
                fault::point_n("after-file", files);
            }
        }
        done.push(change);
    }
    Ok(done)
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
    let plan = plan::plan_after(cx.desired, &host, done)
        .map_err(|p| problems("after the package transaction", &p))?;
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

/// What a service's `restart_on`/`reload_on` point at, as a rollback sees
/// it: host paths, and `package:NAME`.
fn dependency_keys(desired: &DesiredState, s: &Service) -> Vec<String> {
    s.restart_on
        .iter()
        .chain(&s.reload_on)
        .filter_map(|id| match id.kind {
            Kind::Package => Some(id.to_string()),
            _ => desired
                .resources
                .iter()
                .find(|d| d.resource.id() == *id)
                .and_then(|d| d.resource.path()),
        })
        .collect()
}

/// The unit names of `services`.
fn units_of(services: &[&Service]) -> Vec<String> {
    services.iter().map(|s| s.unit.clone()).collect()
}

/// Plan problems met mid-converge, as one error.
fn problems(when: &str, problems: &[PlanProblem]) -> anyhow::Error {
    let msgs: Vec<String> = problems.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{when}: {}", msgs.join("; "))
}

/// The package changes, decided again with `latest` from the repositories
/// as they are now.
fn replan_packages(
    cx: &ApplyContext<'_>,
    latest: &BTreeMap<String, crate::plan::rpmver::Evr>,
) -> Result<Vec<Change>> {
    let host = observe_with(cx.root, cx.desired, Some(latest))?;
    let plan =
        plan::plan(cx.desired, &host).map_err(|p| problems("after writing the repo files", &p))?;
    Ok(plan
        .changes
        .into_iter()
        .filter(|c| matches!(c.op, Op::Package { .. }))
        .collect())
}

/// One dnf transaction for every package change, then the installed RPMs
/// are kept in the package store.
fn apply_packages(cx: &ApplyContext<'_>, changes: &[Change]) -> Result<Vec<u64>> {
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
    let ids = dnf::apply(root, &tx)?;
    let after: Vec<_> = rpm::query(root, &names)?.into_values().flatten().collect();
    // The store is for rollback; failing to fill it must not fail a
    // converge whose transaction succeeded.
    if let Err(e) = package_store::save(root, cx.state_dir, &after) {
        warn!(
            error = format!("{e:#}"),
            "could not keep the installed RPMs in the package store"
        );
    }
    Ok(ids)
}

fn apply_step(root: &FsRoot, op: &Op) -> Result<()> {
    if let Op::CreateDir { meta, .. } | Op::WriteFile { meta, .. } | Op::SetMeta { meta, .. } = op
        && meta.deferred
    {
        anyhow::bail!(
            "the owner {}:{} of {} does not exist after the package transaction",
            meta.owner,
            meta.group,
            op.path().unwrap_or("?")
        );
    }
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
