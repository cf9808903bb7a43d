//! The state of everything a converge will touch, captured and made durable
//! before the first change, and the way back to it.
//!
//! A snapshot records, for each path the plan (or a package) may change,
//! whether it existed, its content (in the object store, by SHA-256), mode,
//! owner, group and link target; the full installed package set when the
//! converge changes packages; and the enabled and active state of every
//! service it touches. Restoring is idempotent: it compares the host with
//! the snapshot and changes only what differs, so a restore interrupted by a
//! crash is finished by running it again.

use std::collections::BTreeMap;

use anyhow::Result;
use tracing::{info, warn};

use super::keep_rpms;
use crate::cancel::Cancel;
use crate::desired::kinds::{Domain, EditDecl};
use crate::desired::textedit::TextEdit;
use crate::fault;
use crate::plan::observed::Observed;
use crate::plan::rpmver::Nevra;
use crate::plan::services::UNIT_DIRS;
use crate::store::{Objects, PackageStore, Prior, ServicePrior, SettingPrior, Snapshot};
use crate::system::fsroot::FsRoot;
use crate::system::{dnf, rpm, settings, systemctl};

/// Where a snapshot is taken and restored.
pub(crate) struct Target<'a> {
    /// The root.
    pub root: &'a FsRoot,
    /// The object store for file contents.
    pub objects: &'a Objects,
    /// The package store.
    pub packages: &'a PackageStore,
    /// The run's cancellation (a restore shields itself from it).
    pub cancel: &'a Cancel,
}

impl Target<'_> {
    fn live(&self) -> bool {
        self.root.is_live()
    }
}

/// A unit whose state a snapshot keeps, with what a rollback needs to
/// restart it.
#[derive(Clone, Debug)]
pub(crate) struct UnitToKeep {
    /// The unit.
    pub unit: String,
    /// What it depends on (see [`ServicePrior::depends`]).
    pub depends: Vec<String>,
    /// Its own restart command, if declared.
    pub restart_command: Option<Vec<String>>,
}

/// How `path` is now, as a snapshot (and the inventory) keeps it: a file's
/// bytes go into `objects`. `None`: a device, FIFO or socket, which
/// driftless never changes.
pub fn prior_of(root: &FsRoot, objects: &Objects, path: &str) -> Result<Option<Prior>> {
    Ok(Some(match root.observe(path)? {
        Observed::Missing { .. } => Prior::Missing,
        Observed::File {
            meta,
            label,
            content,
            ..
        } => {
            let bytes = match content {
                Some(c) => c,
                None => root.read_file(path)?,
            };
            Prior::File {
                object: objects.put(&bytes)?,
                meta,
                label,
            }
        }
        // A tree driftless extracted is known by its marker.
        Observed::Dir { meta, label, .. } => match root.archive_marker(path)? {
            Some(marker) => Prior::Tree {
                marker,
                meta,
                label,
            },
            None => Prior::Dir { meta, label },
        },
        Observed::Symlink { target, label } => Prior::Symlink { target, label },
        Observed::Other { .. } => return Ok(None),
    }))
}

/// What puts back the part of its file that `edit` changes, as the file
/// is now (pruning's record of how it was, kept in plain text). A file
/// that cannot be read as text, that is larger than an edit takes, or
/// that holds what was once secret (`secret`) has nothing to put back.
pub fn edit_undo(
    root: &FsRoot,
    edit: &EditDecl<'_>,
    secret: &dyn Fn(&[u8; 32]) -> bool,
) -> Result<Option<TextEdit>> {
    let text = match root.observe(edit.path)? {
        Observed::Missing { .. } => String::new(),
        Observed::File { sha256, .. } if secret(&sha256) => return Ok(None),
        Observed::File { content, .. } => {
            let Some(bytes) = content else {
                return Ok(None);
            };
            match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => return Ok(None),
            }
        }
        Observed::Dir { .. } | Observed::Symlink { .. } | Observed::Other { .. } => {
            return Ok(None);
        }
    };
    edit.edit
        .undo(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", edit.path))
}

/// A setting a snapshot keeps: its domain, name and the facets the
/// converge changes.
#[derive(Clone, Debug)]
pub(crate) struct SettingToKeep {
    /// Who keeps it.
    pub domain: Domain,
    /// Its name in the domain.
    pub name: String,
    /// The facets the converge changes.
    pub facets: Vec<String>,
}

/// Captures `paths` (each once), the package set when `packages`, the
/// state of `units` and the facets of `settings`. With `packages`, the installed RPMs that the
/// transaction may replace are copied into the package store first, so
/// a rollback does not depend on the repository still carrying them.
pub(crate) fn capture(
    t: &Target<'_>,
    paths: &[String],
    packages: Option<&[String]>,
    units: &[UnitToKeep],
    to_keep: &[SettingToKeep],
) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    for s in to_keep {
        let facets: Vec<&str> = s.facets.iter().map(String::as_str).collect();
        let now = settings::read(t.root, s.domain, &s.name, &facets)?;
        snap.settings.push(SettingPrior {
            domain: s.domain,
            name: s.name.clone(),
            facets: now.facets,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        if !seen.insert(path.as_str()) {
            continue;
        }
        let Some(prior) = prior_of(t.root, t.objects, path)? else {
            let what = t.root.observe(path)?.kind_word();
            anyhow::bail!("{} is {what}; refusing to change it", t.root.display(path))
        };
        snap.paths.push((path.clone(), prior));
    }
    if let Some(names) = packages {
        let all = rpm::query_all(t.root.path(), t.cancel)?;
        let affected: Vec<Nevra> = all
            .iter()
            .filter(|n| names.contains(&n.name))
            .cloned()
            .collect();
        // Not fatal: a broken repository must not block the very
        // converge that fixes it. A rollback then needs the repository
        // (or the builds already in the store), and says so if it fails.
        if let Err(e) = keep_rpms::keep(t.root.path(), t.packages, &affected, t.cancel) {
            warn!(
                error = format!("{e:#}"),
                "could not keep the installed RPMs for a rollback"
            );
        }
        snap.packages = Some(all);
    }
    if !units.is_empty() {
        let names: Vec<String> = units.iter().map(|u| u.unit.clone()).collect();
        let states = systemctl::unit_states(t.root, &names, t.cancel)?;
        for u in units {
            let Some(obs) = states.get(&u.unit) else {
                continue;
            };
            snap.services.push(ServicePrior {
                unit: u.unit.clone(),
                unit_file_state: obs.unit_file_state.clone(),
                running: obs.running(),
                depends: u.depends.clone(),
                restart_command: u.restart_command.clone(),
            });
        }
    }
    Ok(snap)
}

/// Puts the host back: paths (last touched first, so directories come
/// after what they contained), then the package set in one dnf
/// transaction from the package store, then daemon-reload, then each
/// service's enablement and running state (running ones are restarted,
/// so they run the restored files and packages). Continues past
/// failures and returns them all.
pub(crate) fn restore(snap: &Snapshot, t: &Target<'_>) -> RestoreReport {
    let mut errors = Vec::new();
    let mut dnf_transactions = Vec::new();
    let mut unit_files = false;
    // Settings were changed last: they go back first.
    for s in snap.settings.iter().rev() {
        if let Err(e) = restore_setting(t, s) {
            errors.push(e);
        }
    }
    // Enablement that the converge added is taken back first, while the
    // unit files it needs (and the links it made) are still there.
    if let Err(e) = disable_added(snap, t) {
        errors.push(e);
    }
    // A directory a package created cannot be removed while the package
    // still has files in it: such paths get a second try after the
    // package set is restored.
    let mut retry = Vec::new();
    let mut restored: Vec<&str> = Vec::new();
    for (i, (path, prior)) in snap.paths.iter().rev().enumerate() {
        match restore_path(t, path, prior) {
            Ok(changed) => {
                unit_files |= changed && UNIT_DIRS.iter().any(|d| path.starts_with(d));
                if changed {
                    restored.push(path);
                }
            }
            Err(e) => retry.push((path, prior, e)),
        }
        if i == 0 {
            fault::point("mid-rollback");
        }
    }
    let mut packages = std::collections::BTreeSet::new();
    if let Some(want) = &snap.packages {
        match restore_packages(t, want) {
            Ok(Some((names, ids))) => {
                packages = names;
                dnf_transactions = ids;
            }
            Ok(None) => {}
            Err(e) => errors.push(e.context("failed to restore the package set")),
        }
    }
    let packages_changed = !packages.is_empty();
    for (path, prior, first) in retry {
        match restore_path(t, path, prior) {
            Ok(changed) => {
                unit_files |= changed && UNIT_DIRS.iter().any(|d| path.starts_with(d));
                if changed {
                    restored.push(path);
                }
            }
            Err(e) => errors.push(e.context(format!(
                "failed to restore {} (first try: {first:#})",
                t.root.display(path)
            ))),
        }
    }
    if t.live()
        && (unit_files || packages_changed)
        && let Err(e) = systemctl::run(None, "daemon-reload", &[], t.cancel)
    {
        errors.push(e);
    }
    let changed = Restored {
        paths: restored,
        packages,
    };
    if let Err(e) = restore_services(snap, t, &changed) {
        errors.push(e);
    }
    RestoreReport {
        errors,
        dnf_transactions,
    }
}

/// Disables units that are enabled now but were not before.
fn disable_added(snap: &Snapshot, t: &Target<'_>) -> Result<()> {
    let was_off: Vec<String> = snap
        .services
        .iter()
        .filter(|s| !s.unit_file_state.starts_with("enabled"))
        .map(|s| s.unit.clone())
        .collect();
    if was_off.is_empty() {
        return Ok(());
    }
    let now = systemctl::unit_states(t.root, &was_off, t.cancel)?;
    let on = (!t.live()).then(|| t.root.path());
    for unit in was_off {
        if now
            .get(&unit)
            .is_some_and(|o| o.unit_file_state == "enabled")
        {
            systemctl::run(on, "disable", std::slice::from_ref(&unit), t.cancel)?;
        }
    }
    Ok(())
}

fn restore_services(snap: &Snapshot, t: &Target<'_>, changed: &Restored<'_>) -> Result<()> {
    if snap.services.is_empty() {
        return Ok(());
    }
    let units: Vec<String> = snap.services.iter().map(|s| s.unit.clone()).collect();
    let now = systemctl::unit_states(t.root, &units, t.cancel)?;
    // With --root, only enablement exists (systemctl --root).
    let on = (!t.live()).then(|| t.root.path());
    let mut failures = Vec::new();
    for s in &snap.services {
        let Some(cur) = now.get(&s.unit) else {
            continue;
        };
        let mut run = |verb: &str| {
            let done = match (&s.restart_command, verb) {
                (Some(argv), "restart") if on.is_none() => {
                    systemctl::restart_with(&s.unit, argv, t.cancel)
                }
                _ => systemctl::run(on, verb, std::slice::from_ref(&s.unit), t.cancel),
            };
            if let Err(e) = done {
                failures.push(format!("{e:#}"));
            }
        };
        // A unit the converge masked is unmasked (its enablement links
        // were left in place), one it unmasked is masked again.
        let (was_masked, is_masked) = (
            s.unit_file_state == "masked",
            cur.unit_file_state == "masked",
        );
        if was_masked && !is_masked {
            run("mask");
        } else if is_masked && !was_masked {
            run("unmask");
        }
        if s.unit_file_state == "enabled"
            && matches!(cur.unit_file_state.as_str(), "disabled" | "masked")
        {
            run("enable");
        }
        // A running service is restarted when it stopped, or when what
        // it runs or reads was put back; otherwise it is left alone.
        if s.running && (!cur.running() || changed.affects(s)) {
            run("restart");
        } else if !s.running && cur.running() {
            run("stop");
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("failed to restore services: {}", failures.join("; "))
    }
}

/// The facets of `s` that differ from what the host has now.
fn setting_differs(t: &Target<'_>, s: &SettingPrior) -> Result<Vec<String>> {
    let names: Vec<&str> = s.facets.iter().map(|(k, _)| k.as_str()).collect();
    let now = settings::read(t.root, s.domain, &s.name, &names)?;
    Ok(s.facets
        .iter()
        .filter(|(k, v)| now.facet(k) != v.as_deref())
        .map(|(k, _)| k.clone())
        .collect())
}

/// Puts the facets of one setting back, when they differ.
fn restore_setting(t: &Target<'_>, s: &SettingPrior) -> Result<()> {
    if setting_differs(t, s)?.is_empty() {
        return Ok(());
    }
    settings::set(t.root, s.domain, &s.name, &s.facets, t.cancel)
}

/// What still differs from `snap`, in words (empty: restored).
pub(crate) fn differences(snap: &Snapshot, t: &Target<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in &snap.settings {
        let differ = setting_differs(t, s)?;
        if !differ.is_empty() {
            out.push(format!(
                "{}:{} differs from before ({})",
                s.domain.as_str(),
                s.name,
                differ.join(", ")
            ));
        }
    }
    for (path, prior) in &snap.paths {
        if !matches_prior(t, path, prior)? {
            out.push(format!("{path} differs from before"));
        }
    }
    if let Some(want) = &snap.packages {
        let now = rpm::query_all(t.root.path(), t.cancel)?;
        let (missing, extra) = package_diff(want, &now);
        out.extend(
            missing
                .iter()
                .map(|n| format!("package {n} is not installed again")),
        );
        out.extend(
            extra
                .iter()
                .map(|n| format!("package {n} is still installed")),
        );
    }
    if !snap.services.is_empty() {
        let units: Vec<String> = snap.services.iter().map(|s| s.unit.clone()).collect();
        let now = systemctl::unit_states(t.root, &units, t.cancel)?;
        for s in &snap.services {
            let Some(cur) = now.get(&s.unit) else {
                continue;
            };
            if s.running != cur.running() {
                out.push(format!(
                    "{} is {}, was {}",
                    s.unit,
                    if cur.active_state.is_empty() {
                        "unknown"
                    } else {
                        &cur.active_state
                    },
                    if s.running { "running" } else { "not running" }
                ));
            }
            if s.unit_file_state != cur.unit_file_state
                && (matches!(
                    s.unit_file_state.as_str(),
                    "enabled" | "disabled" | "masked"
                ) || cur.unit_file_state == "masked")
            {
                out.push(format!(
                    "{} is {}, was {}",
                    s.unit, cur.unit_file_state, s.unit_file_state
                ));
            }
        }
    }
    Ok(out)
}

/// What a restore actually changed, to decide which services to restart.
struct Restored<'a> {
    paths: Vec<&'a str>,
    /// Names of the packages the restore installed, changed or removed.
    packages: std::collections::BTreeSet<String>,
}

impl Restored<'_> {
    /// Whether `s` must be restarted to run the restored state: its own
    /// unit file, or one of its dependencies (a file, `package:NAME`), was
    /// put back. Nothing else: a unit the restore did not concern (a
    /// socket-activated unit, one that refuses a manual restart) is left
    /// as it is, and a restored package's scriptlets restart what they run.
    fn affects(&self, s: &ServicePrior) -> bool {
        let own_file = self.paths.iter().any(|p| {
            UNIT_DIRS
                .iter()
                .any(|d| p.strip_prefix(d) == Some(s.unit.as_str()))
        });
        own_file
            || s.depends.iter().any(|d| {
                self.paths.iter().any(|p| p == d)
                    || d.strip_prefix("package:")
                        .is_some_and(|n| self.packages.contains(n))
            })
    }
}

/// Builds in `want` that are not installed, and installed builds not in
/// `want`, by NEVRA.
fn package_diff(want: &[Nevra], now: &[Nevra]) -> (Vec<Nevra>, Vec<Nevra>) {
    let missing = want.iter().filter(|n| !now.contains(n)).cloned().collect();
    let extra = now.iter().filter(|n| !want.contains(n)).cloned().collect();
    (missing, extra)
}

/// How a restore went.
#[derive(Debug, Default)]
pub(crate) struct RestoreReport {
    /// Everything that failed (empty: every step succeeded).
    pub errors: Vec<anyhow::Error>,
    /// The dnf transactions the restore made.
    pub dnf_transactions: Vec<u64>,
}

/// One transaction from the current package set to `want`: builds to put
/// back come from the package store when it has them (the repository may
/// no longer carry them), else by exact spec; names that were not installed
/// are removed. `Ok(Some(ids))` when something changed.
/// Puts the package set back; returns the names it changed and dnf's
/// transaction ids (`None`: nothing to change).
fn restore_packages(
    t: &Target<'_>,
    want: &[Nevra],
) -> Result<Option<(std::collections::BTreeSet<String>, Vec<u64>)>> {
    let now = rpm::query_all(t.root.path(), t.cancel)?;
    let (missing, extra) = package_diff(want, &now);
    if missing.is_empty() && extra.is_empty() {
        return Ok(None);
    }
    let names = missing
        .iter()
        .chain(&extra)
        .map(|n| n.name.clone())
        .collect();
    let wanted_names: BTreeMap<&str, ()> = want.iter().map(|n| (n.name.as_str(), ())).collect();
    let mut tx = dnf::Transaction::default();
    for n in &missing {
        let stored = t.packages.path(n);
        tx.install.push(if stored.is_file() {
            stored.display().to_string()
        } else {
            warn!(package = %n, "not in the package store; asking the repositories for it");
            format!("{}-{}.{}", n.name, n.evr, n.arch)
        });
    }
    for n in &extra {
        // A build replaced by an up- or downgrade goes with the install; a
        // package that was not installed at all is removed.
        if !wanted_names.contains_key(n.name.as_str()) && !tx.remove.contains(&n.name) {
            tx.remove.push(n.name.clone());
        }
    }
    info!(install = ?tx.install, remove = ?tx.remove, "restoring the package set");
    Ok(Some((names, dnf::apply(t.root.path(), &tx, t.cancel)?)))
}

/// Puts one path back, with the label it had. `Ok(true)` when it changed
/// anything.
fn restore_path(t: &Target<'_>, path: &str, prior: &Prior) -> Result<bool> {
    if matches_prior(t, path, prior)? {
        return Ok(false);
    }
    let root = t.root;
    let now = root.observe(path)?;
    // A tree an extraction made goes whole, whatever comes back.
    let extracted = matches!(now, Observed::Dir { .. }) && root.archive_marker(path)?.is_some();
    match (prior, now) {
        (
            Prior::Tree {
                marker,
                meta,
                label,
            },
            now,
        ) => {
            restore_tree(t, path, marker, &now)?;
            root.set_meta(path, *meta, label.as_deref())?;
        }
        // The directory an extraction replaced was kept beside it.
        (Prior::Dir { meta, label }, Observed::Dir { .. })
            if extracted && root.restore_kept_tree(path, None)? =>
        {
            root.set_meta(path, *meta, label.as_deref())?;
        }
        (_, Observed::Dir { .. }) if extracted => {
            root.remove_tree(path)?;
            return restore_path(t, path, prior).map(|_| true);
        }
        (Prior::Missing, Observed::Missing { .. }) => {}
        (Prior::Missing, Observed::Dir { .. }) => root.remove_dir(path)?,
        (Prior::Missing, _) => root.remove_file(path)?,
        (
            Prior::File {
                object,
                meta,
                label,
            },
            now,
        ) => {
            if matches!(now, Observed::Dir { .. }) {
                root.remove_dir(path)?;
            }
            root.write_file(path, &t.objects.get(object)?, *meta, label.as_deref())?;
        }
        (Prior::Dir { meta, label }, Observed::Dir { .. }) => {
            root.set_meta(path, *meta, label.as_deref())?;
        }
        (Prior::Dir { meta, label }, now) => {
            if !matches!(now, Observed::Missing { .. }) {
                root.remove_file(path)?;
            }
            root.create_dir(path, *meta, label.as_deref())?;
        }
        (Prior::Symlink { target, label }, now) => {
            if matches!(now, Observed::Dir { .. }) {
                root.remove_dir(path)?;
            }
            root.symlink(path, target, label.as_deref())?;
        }
    }
    Ok(true)
}

/// Puts back the extracted tree with `marker` at `path`, now observed as
/// `now`: it is there already, or kept aside by the extraction.
fn restore_tree(t: &Target<'_>, path: &str, marker: &str, now: &Observed) -> Result<()> {
    let root = t.root;
    if matches!(now, Observed::Dir { .. }) && root.archive_marker(path)?.as_deref() == Some(marker)
    {
        return Ok(());
    }
    if !root.restore_kept_tree(path, Some(marker))? {
        anyhow::bail!(
            "the tree extracted at {} before this converge was not kept beside it; it cannot be put back (extract it again)",
            root.display(path)
        );
    }
    Ok(())
}

fn matches_prior(t: &Target<'_>, path: &str, prior: &Prior) -> Result<bool> {
    let now = t.root.observe(path)?;
    let marker = match &now {
        Observed::Dir { .. } => t.root.archive_marker(path)?,
        _ => None,
    };
    // A directory holding an extracted tree is that tree, not any other.
    if let Prior::Tree {
        marker: was,
        meta,
        label,
    } = prior
    {
        let same_label =
            label.is_none() || matches!(&now, Observed::Dir { label: l, .. } if l == label);
        return Ok(matches!(&now, Observed::Dir { meta: m, .. } if m == meta)
            && marker.as_ref() == Some(was)
            && same_label);
    }
    if marker.is_some() {
        return Ok(false);
    }
    // A label not recorded (a root without a policy) is not compared.
    let same_label = |was: &Option<String>, is: &Option<String>| was.is_none() || was == is;
    Ok(match (prior, &now) {
        (Prior::Missing, Observed::Missing { .. }) => true,
        (
            Prior::File {
                object,
                meta,
                label,
            },
            Observed::File {
                meta: m,
                label: l,
                sha256,
                ..
            },
        ) => meta == m && hex::encode(sha256) == *object && same_label(label, l),
        (
            Prior::Dir { meta, label },
            Observed::Dir {
                meta: m, label: l, ..
            },
        ) => meta == m && same_label(label, l),
        (
            Prior::Symlink { target, label },
            Observed::Symlink {
                target: now,
                label: l,
            },
        ) => target == now && same_label(label, l),
        _ => false,
    })
}
