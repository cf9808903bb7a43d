//! Applying a plan phase by phase, in the order `plan::Phase` writes once:
//! what the packages read (repo files), the one package transaction, the
//! accounts, directories, files and symlinks, removals, the commands (each
//! one's guards checked as it is about to run), the services. After the
//! package transaction, and after accounts that an owner waits for, what
//! remains is planned again from a fresh observation, since packages ship
//! paths and units.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use tracing::warn;

use super::commands;
use super::events::{Event, Sink};
use super::keep_rpms;
use super::observe::{Contents, hydrate, observe};
use crate::cancel::Cancel;
use crate::desired::DesiredState;
use crate::desired::kinds::Facets;
use crate::desired::model::ResourceId;
use crate::durable::{BATCH_MAX, Renaming};
use crate::fault;
use crate::plan::observed::{GuardRun, ObservedHost};
use crate::plan::rpmver::Evr;
use crate::plan::{
    self, Change, Op, PackageChange, Phase, Plan, PlanProblem, SecretContents, ServiceVerb,
};
use crate::store::PackageStore;
use crate::system::{
    accounts,
    archive::Extraction,
    dnf,
    fsroot::{FsRoot, NewFile},
    rpm, settings, systemctl,
};

/// What `apply` needs besides the plan.
pub(crate) struct ApplyContext<'a> {
    /// The root converged.
    pub root: &'a FsRoot,
    /// The desired state (steps after packages are re-planned from it).
    pub desired: &'a DesiredState,
    /// Where installed RPMs are kept for a rollback.
    pub packages: &'a PackageStore,
    /// The `latest` versions found when planning (not asked again).
    pub latest: BTreeMap<String, Evr>,
    /// The run's cancellation: checked before every step.
    pub cancel: &'a Cancel,
    /// Where the bytes of contents known by hash only are read from.
    pub contents: &'a Contents<'a>,
    /// Contents that were secret: never shown by a plan made again.
    pub secret_contents: &'a SecretContents,
}

/// Numbers the steps for events as they are applied.
struct Steps<'s> {
    sink: &'s mut dyn Sink,
    done: usize,
    total: usize,
}

impl Steps<'_> {
    fn started(&mut self, c: &Change) {
        self.sink.event(&Event::StepStarted {
            index: self.done + 1,
            total: self.total,
            resource: c.resource.to_string(),
            verb: c.op.verb().to_owned(),
        });
    }

    fn finished(&mut self, c: &Change) {
        self.done += 1;
        self.sink.event(&Event::StepFinished {
            index: self.done,
            total: self.total,
            resource: c.resource.to_string(),
            verb: c.op.verb().to_owned(),
        });
    }
}

/// Applies `plan`; stops at the first failure (the caller rolls back).
/// Returns the changes made. The dnf transaction ids go into
/// `dnf_transactions` as soon as they are known, so a converge that fails
/// later still records them.
pub(crate) fn apply(
    cx: &ApplyContext<'_>,
    plan: &Plan,
    dnf_transactions: &mut Vec<u64>,
    sink: &mut dyn Sink,
) -> Result<Vec<Change>> {
    let root = cx.root;
    let mut done: Vec<Change> = Vec::new();
    let mut rest: Vec<Change> = Vec::new();
    let mut packages: Vec<Change> = Vec::new();
    let mut files = 0;
    let mut latest = cx.latest.clone();
    let mut steps = Steps {
        sink,
        done: 0,
        total: plan.changes.len(),
    };
    // Repo files (and the directories they need) come before the package
    // transaction; everything else after it.
    for change in &plan.changes {
        match change.phase {
            Phase::Packages => packages.push(change.clone()),
            Phase::BeforePackages => {
                stop_point(cx, change)?;
                steps.started(change);
                apply_step(root, &change.op)
                    .with_context(|| format!("failed to converge {}", change.resource))?;
                steps.finished(change);
                files += 1;
                fault::point_n("after-file", files);
                done.push(change.clone());
            }
            _ => rest.push(change.clone()),
        }
    }
    // `latest` was decided before the repo files existed: ask again now.
    let latest_names = cx.desired.package_names(true);
    if !latest_names.is_empty() && done.iter().any(|c| matches!(c.op, Op::WriteFile { .. })) {
        latest = dnf::latest(root.path(), &latest_names, cx.cancel)
            .context("failed to query the repositories for the latest versions")?;
        packages = replan_packages(cx, &latest)?;
    }
    if !packages.is_empty() {
        steps.sink.event(&Event::PackagesStarted {
            resources: packages.iter().map(|c| c.resource.to_string()).collect(),
        });
        let ids = apply_packages(cx, &packages).context("failed to converge packages")?;
        dnf_transactions.extend(ids.iter().copied());
        steps
            .sink
            .event(&Event::PackagesFinished { transactions: ids });
        steps.done += packages.len();
        done.extend(packages.iter().cloned());
        fault::point("after-dnf");
        rest = replan(cx, &latest, &done)?;
        steps.total = steps.done + rest.len();
    }
    // Users and groups next: the files they own are planned again once
    // they exist (their uids and gids are known only then).
    apply_accounts(cx, &mut rest, &latest, &mut steps, &mut done)?;
    // Paths (and what else comes before the commands), then the commands,
    // each with its guards checked as it is about to run (after everything
    // ordered before it), then the services.
    let split = rest
        .iter()
        .position(|c| c.phase >= Phase::Commands)
        .unwrap_or(rest.len());
    let after = rest.split_off(split);
    apply_steps(cx, rest, &mut steps, &mut files, &mut done)?;
    let after = apply_commands(cx, after, &latest, &mut steps, &mut done)?;
    apply_steps(cx, after, &mut steps, &mut files, &mut done)?;
    Ok(done)
}

/// The account steps at the head of `rest`; what remains of `rest` is
/// planned again when a step of it waits for an owner they created.
fn apply_accounts(
    cx: &ApplyContext<'_>,
    rest: &mut Vec<Change>,
    latest: &BTreeMap<String, Evr>,
    steps: &mut Steps<'_>,
    done: &mut Vec<Change>,
) -> Result<()> {
    let accounts: Vec<Change> = rest
        .iter()
        .take_while(|c| c.phase == Phase::Accounts)
        .cloned()
        .collect();
    if accounts.is_empty() {
        return Ok(());
    }
    for change in &accounts {
        stop_point(cx, change)?;
        steps.started(change);
        if let Op::Account {
            program,
            args,
            password,
            ..
        } = &change.op
        {
            accounts::apply(cx.root, program, args, password.as_deref(), cx.cancel)
                .with_context(|| format!("failed to converge {}", change.resource))?;
        }
        steps.finished(change);
        done.push(change.clone());
    }
    fault::point("after-accounts");
    // Planned again only when a step waits for an owner that exists now;
    // otherwise the rest of the plan stands as it is.
    if rest.iter().any(|c| deferred(&c.op)) {
        *rest = replan(cx, latest, done)?;
        steps.total = steps.done + rest.len();
    } else {
        rest.drain(..accounts.len());
    }
    Ok(())
}

/// Runs the commands that are due now (their planned runs in `after` are
/// only what the plan saw); returns what comes after them, planned again
/// when the commands that ran are not the ones planned.
fn apply_commands(
    cx: &ApplyContext<'_>,
    mut after: Vec<Change>,
    latest: &BTreeMap<String, Evr>,
    steps: &mut Steps<'_>,
    done: &mut Vec<Change>,
) -> Result<Vec<Change>> {
    let planned: Vec<String> = after
        .iter()
        .filter_map(|c| match &c.op {
            Op::RunCommand { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    after.retain(|c| !matches!(c.op, Op::RunCommand { .. }));
    let ran = run_commands(cx, steps, done)?;
    if ran != planned {
        // What the services do follows from the commands that ran.
        after = replan(cx, latest, done)?
            .into_iter()
            .filter(|c| !matches!(c.op, Op::RunCommand { .. }))
            .collect();
        steps.total = steps.done + after.len();
    }
    Ok(after)
}

/// Applies `changes` in order: consecutive files in one batch, consecutive
/// units with one verb in one systemctl.
fn apply_steps(
    cx: &ApplyContext<'_>,
    changes: Vec<Change>,
    steps: &mut Steps<'_>,
    files: &mut usize,
    done: &mut Vec<Change>,
) -> Result<()> {
    let mut rest = changes.into_iter().peekable();
    while let Some(change) = rest.next() {
        if matches!(change.op, Op::WriteFile { validate: None, .. }) {
            // Files written next to each other share their flushes; a file
            // with a validator is written on its own.
            let mut group = vec![change];
            while group.len() < BATCH_MAX
                && rest
                    .peek()
                    .is_some_and(|c| matches!(c.op, Op::WriteFile { validate: None, .. }))
            {
                group.extend(rest.next());
            }
            write_files(cx, &group, steps, files)?;
            done.extend(group);
            continue;
        }
        if let Op::Service { verb, .. } = &change.op {
            // One systemctl for consecutive units with the same verb: each
            // `enable` alone costs a reload of systemd (≈ 90 ms).
            let mut group = vec![change.clone()];
            while rest
                .peek()
                .is_some_and(|c| matches!(&c.op, Op::Service { verb: v, .. } if v == verb))
            {
                group.extend(rest.next());
            }
            service_steps(cx, &group, steps)?;
            done.extend(group);
            continue;
        }
        stop_point(cx, &change)?;
        steps.started(&change);
        let result = match &change.op {
            Op::DaemonReload => systemctl::run(None, "daemon-reload", &[], cx.cancel),
            Op::RunCommand { command, .. } => commands::run(command, cx.root, cx.cancel),
            Op::Set {
                domain,
                name,
                facets,
            } => {
                let to: Facets = facets
                    .iter()
                    .map(|f| (f.facet.clone(), f.to.clone()))
                    .collect();
                settings::set(cx.root, *domain, name, &to, cx.cancel)
            }
            Op::WriteFile {
                path,
                content,
                meta,
                validate: Some(v),
            } => owner_known(&change.op).and_then(|()| {
                cx.root.write_file_checked(
                    path,
                    content,
                    meta.ids,
                    meta.selinux.as_deref(),
                    &|staged| commands::validate(v, staged, cx.root, cx.cancel),
                )
            }),
            op => apply_step(cx.root, op),
        };
        result.with_context(|| format!("failed to converge {}", change.resource))?;
        steps.finished(&change);
        match change.op {
            Op::DaemonReload => fault::point("after-daemon-reload"),
            Op::RunCommand { .. } => {}
            _ => {
                *files += 1;
                fault::point_n("after-file", *files);
            }
        }
        done.push(change);
    }
    Ok(())
}

/// Runs each declared command that is due now: its guards are checked as
/// it is about to run, after everything before it was applied (a guard
/// reading a file this converge wrote sees the new file; a guard script it
/// installed is there), and its refreshes count what ran before it.
/// Returns the names of those that ran.
fn run_commands(
    cx: &ApplyContext<'_>,
    steps: &mut Steps<'_>,
    done: &mut Vec<Change>,
) -> Result<Vec<String>> {
    let mut changed: BTreeSet<ResourceId> = done.iter().map(|c| c.resource.clone()).collect();
    let mut ran = Vec::new();
    for c in cx.desired.commands() {
        let guards = commands::guards(c, cx.root, cx.cancel)?;
        for (key, g) in [("unless", &guards.unless), ("onlyif", &guards.onlyif)] {
            if let Some(GuardRun::NotRunnable(why)) = g {
                bail!(
                    "the `{key}` guard of command:{} could not run: {why}",
                    c.name
                );
            }
        }
        let Some(run) = plan::command_due(c, Some(&guards), &changed) else {
            continue;
        };
        stop_point(cx, &run)?;
        steps.started(&run);
        commands::run(c, cx.root, cx.cancel)
            .with_context(|| format!("failed to converge {}", run.resource))?;
        steps.finished(&run);
        changed.insert(run.resource.clone());
        ran.push(c.name.clone());
        done.push(run);
    }
    Ok(ran)
}

/// Runs one systemctl verb on consecutive units at once; each step's
/// events come around the one call.
fn service_steps(cx: &ApplyContext<'_>, group: &[Change], steps: &mut Steps<'_>) -> Result<()> {
    let Some(Op::Service { verb, .. }) = group.first().map(|c| &c.op) else {
        return Ok(());
    };
    let units: Vec<String> = group
        .iter()
        .filter_map(|c| match &c.op {
            Op::Service { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    for change in group {
        stop_point(cx, change)?;
    }
    for change in group {
        steps.started(change);
    }
    let root = (!cx.root.is_live()).then(|| cx.root.path());
    // A unit with its own restart command (one that refuses a manual
    // stop, as auditd) is restarted with it; the others in one systemctl.
    let own = |unit: &str| {
        matches!(verb, ServiceVerb::Restart | ServiceVerb::TryRestart)
            .then(|| {
                cx.desired
                    .services()
                    .into_iter()
                    .find(|s| s.unit == unit)
                    .and_then(|s| s.restart_command.clone())
            })
            .flatten()
    };
    let (by_command, units): (Vec<String>, Vec<String>) =
        units.into_iter().partition(|u| own(u).is_some());
    for unit in &by_command {
        let argv = own(unit).unwrap_or_default();
        systemctl::restart_with(unit, &argv, cx.cancel)
            .with_context(|| format!("failed to converge service:{unit}"))?;
    }
    if !units.is_empty() {
        systemctl::run(root, verb.as_str(), &units, cx.cancel).with_context(|| {
            let names: Vec<String> = group.iter().map(|c| c.resource.to_string()).collect();
            format!("failed to converge {}", names.join(", "))
        })?;
    }
    for change in group {
        steps.finished(change);
    }
    Ok(())
}

/// Writes consecutive files as one batch ([`FsRoot::write_files`]); each
/// step's events come as its file is renamed into place, and the crash
/// points fire as they do for single writes.
fn write_files(
    cx: &ApplyContext<'_>,
    group: &[Change],
    steps: &mut Steps<'_>,
    files: &mut usize,
) -> Result<()> {
    let mut batch = Vec::with_capacity(group.len());
    for change in group {
        stop_point(cx, change)?;
        owner_known(&change.op)
            .with_context(|| format!("failed to converge {}", change.resource))?;
        if let Op::WriteFile {
            path,
            content,
            meta,
            validate: None,
        } = &change.op
        {
            batch.push(NewFile {
                path: path.as_str(),
                content: content.as_slice(),
                meta: meta.ids,
                label: meta.selinux.as_deref(),
            });
        }
    }
    cx.root
        .write_files(&batch, &mut |step| {
            match step {
                Renaming::Before(i) => {
                    stop_point(cx, &group[i])?;
                    steps.started(&group[i]);
                }
                Renaming::After(i) => {
                    steps.finished(&group[i]);
                    *files += 1;
                    fault::point_n("after-file", *files);
                }
            }
            Ok(())
        })
        .map_err(|(i, e)| {
            let resource = group
                .get(i)
                .map_or(String::new(), |c| c.resource.to_string());
            e.context(format!("failed to converge {resource}"))
        })
}

/// A stop request ends forward work before the next step.
fn stop_point(cx: &ApplyContext<'_>, next: &Change) -> Result<()> {
    if cx.cancel.should_stop() {
        bail!("driftless was asked to stop before {}", next.resource);
    }
    Ok(())
}

/// Observes again after the package transaction and plans what remains.
/// A package or repo change in the new plan means the transaction did not
/// reach the declared state: that is a failure, not a loop.
fn replan(
    cx: &ApplyContext<'_>,
    latest: &BTreeMap<String, Evr>,
    done: &[Change],
) -> Result<Vec<Change>> {
    let (desired, host) = observe_again(cx, latest)
        .context("failed to observe the host after the package transaction")?;
    let plan = plan::plan_after(&desired, &host, done)
        .map_err(|p| problems("after the package transaction", &p))?;
    let applied_accounts = done.iter().any(|c| matches!(c.op, Op::Account { .. }));
    // What comes before the package transaction (repo files), packages,
    // and accounts once applied must all be as declared by now.
    if let Some(c) = plan
        .changes
        .iter()
        .find(|c| c.phase <= Phase::Packages || (applied_accounts && c.phase == Phase::Accounts))
    {
        bail!(
            "after the package transaction and account steps {} still differs: {}",
            c.resource,
            c.reasons.join(", ")
        );
    }
    Ok(plan.changes)
}

/// Observes the host again mid-converge, with the desired state's bytes
/// loaded for what now differs: a package may have put its own file where
/// a managed one was in place.
fn observe_again(
    cx: &ApplyContext<'_>,
    latest: &BTreeMap<String, Evr>,
) -> Result<(DesiredState, ObservedHost)> {
    let mut host = observe(cx.root, cx.desired, Some(latest), cx.cancel)?;
    host.secret_contents = cx.secret_contents.clone();
    let mut desired = cx.desired.clone();
    hydrate(&mut desired, &host, cx.contents)?;
    Ok((desired, host))
}

/// Plan problems met mid-converge, as one error.
fn problems(when: &str, problems: &[PlanProblem]) -> anyhow::Error {
    let msgs: Vec<String> = problems.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{when}: {}", msgs.join("; "))
}

/// The package changes, decided again with `latest` from the repositories
/// as they are now.
fn replan_packages(cx: &ApplyContext<'_>, latest: &BTreeMap<String, Evr>) -> Result<Vec<Change>> {
    let (desired, host) = observe_again(cx, latest)?;
    let plan =
        plan::plan(&desired, &host).map_err(|p| problems("after writing the repo files", &p))?;
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
    // A stop request lets the transaction finish: rpm must not be cut in
    // the middle of one. Forward work stops right after it.
    let ids = {
        let _whole_transaction = cx.cancel.shield();
        dnf::apply(root, &tx, cx.cancel)?
    };
    let after: Vec<_> = rpm::query(root, &names, cx.cancel)?
        .into_values()
        .flatten()
        .collect();
    // The store is for rollback; failing to fill it must not fail a
    // converge whose transaction succeeded.
    if let Err(e) = keep_rpms::keep(root, cx.packages, &after, cx.cancel) {
        warn!(
            error = format!("{e:#}"),
            "could not keep the installed RPMs in the package store"
        );
    }
    Ok(ids)
}

/// Whether the step's owner was left for the package transaction or the
/// account steps to create.
fn deferred(op: &Op) -> bool {
    matches!(
        op,
        Op::CreateDir { meta, .. }
            | Op::WriteFile { meta, .. }
            | Op::SetMeta { meta, .. }
            | Op::Extract { meta, .. }
            if meta.deferred
    )
}

/// An owner left for the package transaction to create must exist now.
fn owner_known(op: &Op) -> Result<()> {
    if let Op::CreateDir { meta, .. }
    | Op::WriteFile { meta, .. }
    | Op::SetMeta { meta, .. }
    | Op::Extract { meta, .. } = op
        && meta.deferred
    {
        bail!(
            "the owner {}:{} of {} does not exist after the package transaction",
            meta.owner,
            meta.group,
            op.path().unwrap_or("?")
        );
    }
    Ok(())
}

fn apply_step(root: &FsRoot, op: &Op) -> Result<()> {
    owner_known(op)?;
    match op {
        Op::CreateDir { path, meta } => root.create_dir(path, meta.ids, meta.selinux.as_deref()),
        Op::WriteFile {
            path,
            content,
            meta,
            validate: None,
        } => root.write_file(path, content, meta.ids, meta.selinux.as_deref()),
        // Only the forward path runs validators ([`apply_steps`]).
        Op::WriteFile {
            path,
            validate: Some(_),
            ..
        } => bail!("{path} has a validator and was not written by the path that runs it"),
        Op::SetMeta { path, meta } => root.set_meta(path, meta.ids, meta.selinux.as_deref()),
        Op::Symlink {
            path,
            target,
            selinux,
        } => root.symlink(path, target, selinux.as_deref()),
        Op::RemoveFile { path } => root.remove_file(path),
        Op::RemoveDir { path } => root.remove_dir(path),
        Op::Extract {
            path,
            sha256,
            format,
            strip_components,
            meta,
            archive,
            ..
        } => root.extract(
            path,
            &Extraction {
                bytes: archive,
                format: *format,
                strip_components: *strip_components,
                marker: &plan::archive::marker_text(sha256, *strip_components),
                meta: meta.ids,
                label: meta.selinux.as_deref(),
            },
        ),
        Op::RemoveTree { path } => root.remove_tree(path),
        // Applied with the run's cancellation ([`apply_steps`]).
        Op::Set { .. }
        | Op::Package { .. }
        | Op::Account { .. }
        | Op::DaemonReload
        | Op::Service { .. }
        | Op::RunCommand { .. } => Ok(()),
    }
}
