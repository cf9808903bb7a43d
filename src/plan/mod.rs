//! The planner: desired state x observed host -> an ordered list of changes.
//!
//! Pure: it takes values and returns values, so it can be tested with many
//! cases in milliseconds, and `plan` can never change the host. Each change
//! carries everything needed to apply it and why it is needed.
//!
//! Order: parents of repo files, repo files, (packages), directories
//! (parents first), files and symlinks in declaration order, directory
//! removals (deepest first), (services).

pub mod observed;
pub mod packages;
pub mod rpmver;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::DesiredState;
use crate::desired::diag::Origin;
use crate::desired::model::{Ensure, Kind, Meta, Resource, ResourceId, Service};
use observed::{Accounts, FsMeta, Observed, ObservedHost};
pub use packages::PackageChange;
pub use services::{ServicePlan, ServiceVerb};

/// Metadata of directories driftless creates on its own as missing parents.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Text diffs are shown for files up to this size.
const DIFF_MAX: usize = 256 * 1024;

/// One step of a converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Op {
    /// Create a directory.
    CreateDir {
        /// Host path.
        path: String,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
    },
    /// Create or replace a regular file's content (atomically).
    WriteFile {
        /// Host path.
        path: String,
        /// New content.
        #[serde(skip)]
        content: Vec<u8>,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
    },
    /// Change owner, group or mode only.
    SetMeta {
        /// Host path.
        path: String,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
    },
    /// Create or retarget a symlink (atomically).
    Symlink {
        /// Host path of the link.
        path: String,
        /// Its target.
        target: String,
    },
    /// Remove a file or symlink.
    RemoveFile {
        /// Host path.
        path: String,
    },
    /// Remove an empty directory.
    RemoveDir {
        /// Host path.
        path: String,
    },
    /// Change a package. All package changes of a converge are applied in
    /// one dnf transaction.
    Package {
        /// Package name.
        name: String,
        /// What to do.
        #[serde(flatten)]
        change: PackageChange,
    },
    /// `systemctl daemon-reload`, once, before any other service step.
    DaemonReload,
    /// One systemctl verb on one unit.
    Service {
        /// Unit name.
        unit: String,
        /// What to do.
        verb: ServiceVerb,
    },
}

impl Op {
    /// The host path the step changes, for filesystem steps.
    pub fn path(&self) -> Option<&str> {
        match self {
            Op::CreateDir { path, .. }
            | Op::WriteFile { path, .. }
            | Op::SetMeta { path, .. }
            | Op::Symlink { path, .. }
            | Op::RemoveFile { path }
            | Op::RemoveDir { path } => Some(path),
            Op::Package { .. } | Op::DaemonReload | Op::Service { .. } => None,
        }
    }

    /// A short verb for humans.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::CreateDir { .. } => "create directory",
            Op::WriteFile { .. } => "write file",
            Op::SetMeta { .. } => "set owner/group/mode",
            Op::Symlink { .. } => "link",
            Op::RemoveFile { .. } => "remove",
            Op::RemoveDir { .. } => "remove directory",
            Op::Package { change, .. } => match change {
                PackageChange::Install { .. } => "install",
                PackageChange::Upgrade { .. } => "upgrade",
                PackageChange::Downgrade { .. } => "downgrade",
                PackageChange::Remove { .. } => "remove package",
            },
            Op::DaemonReload => "daemon-reload",
            Op::Service { verb, .. } => verb.as_str(),
        }
    }

    /// Whether this is a service-phase step (re-planned after packages).
    pub fn is_service(&self) -> bool {
        matches!(self, Op::DaemonReload | Op::Service { .. })
    }
}

/// Owner, group and mode, with names kept for people and ids for the
/// system calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetaView {
    /// Owner name as declared.
    pub owner: String,
    /// Group name as declared.
    pub group: String,
    /// Mode as octal text.
    pub mode: String,
    /// Numbers to apply.
    #[serde(skip)]
    pub ids: FsMeta,
    /// The owner or group does not exist yet; a package in this converge is
    /// expected to create it. Such a step is never applied as planned: the
    /// steps after the package transaction are planned again.
    #[serde(skip)]
    pub deferred: bool,
}

/// One planned change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The resource it converges (for implicit parents, the directory).
    pub resource: ResourceId,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
    /// Why, in words: each difference found.
    pub reasons: Vec<String>,
    /// Unified diff of text content, when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// The ordered changes for one host.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Changes in apply order.
    pub changes: Vec<Change>,
    /// What the operator should know that is not a change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How many leading changes are the repo phase (repo files and the
    /// directories they need), applied before the package transaction.
    #[serde(skip)]
    pub repo_phase: usize,
}

impl Plan {
    /// Whether the host is already converged.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A reason the plan cannot be made; the host is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{resource} ({origin}): {message}")]
pub struct PlanProblem {
    /// The resource concerned.
    pub resource: ResourceId,
    /// Where it is declared.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// The host paths the planner needs observed for `desired`.
pub fn paths_to_observe(desired: &DesiredState) -> Vec<String> {
    desired
        .resources
        .iter()
        .filter_map(|d| d.resource.path())
        .collect()
}

/// Computes the changes that bring the observed host to the desired state.
/// Every problem is reported, not only the first.
pub fn plan(desired: &DesiredState, host: &ObservedHost) -> Result<Plan, Vec<PlanProblem>> {
    plan_after(desired, host, &[])
}

/// Plans what remains after `done` (changes already applied in this
/// converge, such as the package transaction): they count for `restart_on`
/// and `reload_on` and for daemon-reload, as if planned together.
pub fn plan_after(
    desired: &DesiredState,
    host: &ObservedHost,
    done: &[Change],
) -> Result<Plan, Vec<PlanProblem>> {
    let mut p = Planner {
        accounts: &host.accounts,
        problems: Vec::new(),
        declared_dirs: BTreeMap::new(),
        dir_creates: BTreeMap::new(),
        early: Vec::new(),
        repos: Vec::new(),
        dirs: Vec::new(),
        files: Vec::new(),
        removals: Vec::new(),
        rmdirs: Vec::new(),
        packages: Vec::new(),
        notes: Vec::new(),
    };
    for d in &desired.resources {
        if let Resource::Directory(dir) = &d.resource
            && dir.ensure == Ensure::Present
        {
            p.declared_dirs
                .insert(dir.path.clone(), (dir.meta.clone(), d.origin.clone()));
        }
    }
    for d in &desired.resources {
        let id = d.resource.id();
        let problem = |message: String| PlanProblem {
            resource: id.clone(),
            origin: d.origin.clone(),
            message,
        };
        if let Resource::Package(pkg) = &d.resource {
            let installed = host.packages.get(&pkg.name).map_or(&[][..], Vec::as_slice);
            let available = host.latest.get(&pkg.name);
            // Repo files written in this converge may offer it: decide for
            // now, and look again once they are written (see converge).
            if pkg.state == crate::desired::model::PackageState::Latest
                && available.is_none()
                && !p.repos.is_empty()
            {
                if installed.is_empty() {
                    p.packages.push(Change {
                        resource: id.clone(),
                        op: Op::Package {
                            name: pkg.name.clone(),
                            change: PackageChange::Install { spec: pkg.name.clone() },
                        },
                        reasons: vec!["not installed; the newest build is looked up after the repo files are written".to_owned()],
                        diff: None,
                    });
                }
                p.notes.push(format!(
                    "package {}: the latest version is checked after the repo files are written",
                    pkg.name
                ));
                continue;
            }
            match packages::plan_package(pkg, installed, available) {
                Ok(Some((change, reason))) => p.packages.push(Change {
                    resource: id.clone(),
                    op: Op::Package {
                        name: pkg.name.clone(),
                        change,
                    },
                    reasons: vec![reason],
                    diff: None,
                }),
                Ok(None) => {}
                Err(message) => p.problems.push(problem(match &host.latest_error {
                    Some(e) => format!("{message} (the repository query failed: {e})"),
                    None => message,
                })),
            }
            continue;
        }
        let Some(path) = d.resource.path() else {
            continue;
        };
        let Some(observed) = host.paths.get(&path) else {
            p.problems
                .push(problem(format!("{path} was not observed (internal error)")));
            continue;
        };
        if let Err(message) = p.resource(&d.resource, &id, &d.origin, observed) {
            p.problems.push(problem(message));
        }
    }
    let mut plan = p.finish()?;
    let services = desired.services();
    let all: Vec<Change> = done.iter().chain(&plan.changes).cloned().collect();
    let pending = plan
        .changes
        .iter()
        .any(|c| matches!(c.op, Op::Package { .. }));
    let sp = plan_services_for(&all, &services, host, pending);
    if !sp.problems.is_empty() {
        return Err(sp
            .problems
            .into_iter()
            .map(|(unit, message)| PlanProblem {
                origin: desired
                    .resources
                    .iter()
                    .find(|d| d.resource.id() == ResourceId::new(Kind::Service, &unit))
                    .map(|d| d.origin.clone())
                    .unwrap_or_else(|| Origin {
                        file: desired.host_file.clone(),
                        line: 1,
                        column: 1,
                    }),
                resource: ResourceId::new(Kind::Service, unit),
                message,
            })
            .collect());
    }
    plan.notes.extend(sp.notes.iter().cloned());
    plan.changes.extend(service_changes(sp));
    Ok(plan)
}

/// Plans the services against `units`, given the non-service changes.
/// `changes` are all changes of this converge (applied or planned);
/// `packages_pending` says whether a package transaction is still to come
/// (only that can explain a unit that does not exist yet).
pub fn plan_services_for(
    changes: &[Change],
    services: &[&Service],
    host: &ObservedHost,
    packages_pending: bool,
) -> ServicePlan {
    let changed: BTreeSet<ResourceId> = changes.iter().map(|c| c.resource.clone()).collect();
    let paths: Vec<&str> = changes.iter().filter_map(|c| c.op.path()).collect();
    services::plan_services(
        services,
        &host.units,
        &changed,
        &paths,
        packages_pending,
        host.live,
    )
}

/// The service plan as changes, in apply order.
pub fn service_changes(sp: ServicePlan) -> Vec<Change> {
    let reload = sp.daemon_reload.map(|why| Change {
        resource: ResourceId::new(Kind::Service, "daemon-reload"),
        op: Op::DaemonReload,
        reasons: vec![why],
        diff: None,
    });
    reload
        .into_iter()
        .chain(sp.actions.into_iter().map(|(unit, verb, why)| Change {
            resource: ResourceId::new(Kind::Service, &unit),
            op: Op::Service { unit, verb },
            reasons: vec![why],
            diff: None,
        }))
        .collect()
}

struct Planner<'a> {
    accounts: &'a Accounts,
    problems: Vec<PlanProblem>,
    /// Declared present directories: used when one is also a missing parent.
    declared_dirs: BTreeMap<String, (Meta, Origin)>,
    /// Directories to create, by path (so parents sort first).
    dir_creates: BTreeMap<String, Change>,
    /// Directory creations that repo files need before the repo phase.
    early: Vec<String>,
    repos: Vec<Change>,
    dirs: Vec<Change>,
    files: Vec<Change>,
    removals: Vec<Change>,
    /// Absent directories that exist: (id, origin, path, entry names).
    rmdirs: Vec<(ResourceId, Origin, String, Vec<String>)>,
    packages: Vec<Change>,
    notes: Vec<String>,
}

impl Planner<'_> {
    fn meta(&self, m: &Meta) -> Result<MetaView, String> {
        let (uid, gid) = (self.accounts.uid(&m.owner), self.accounts.gid(&m.group));
        // A user or group a package creates (nginx for the nginx package)
        // is known only after the transaction, which comes first.
        if (uid.is_none() || gid.is_none()) && !self.packages.is_empty() {
            return Ok(MetaView {
                owner: m.owner.clone(),
                group: m.group.clone(),
                mode: format!("{:04o}", m.mode),
                ids: FsMeta {
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                    mode: m.mode,
                },
                deferred: true,
            });
        }
        let uid = uid.ok_or_else(|| {
            format!(
                "owner `{}` does not exist on the host (not in /etc/passwd)",
                m.owner
            )
        })?;
        let gid = gid.ok_or_else(|| {
            format!(
                "group `{}` does not exist on the host (not in /etc/group)",
                m.group
            )
        })?;
        Ok(MetaView {
            owner: m.owner.clone(),
            group: m.group.clone(),
            mode: format!("{:04o}", m.mode),
            ids: FsMeta {
                uid,
                gid,
                mode: m.mode,
            },
            deferred: false,
        })
    }

    fn meta_reasons(&self, have: FsMeta, want: &MetaView) -> Vec<String> {
        let mut r = Vec::new();
        if want.deferred {
            r.push(format!(
                "owner {}:{} is set after the package transaction creates it",
                want.owner, want.group
            ));
            return r;
        }
        if have.uid != want.ids.uid {
            r.push(format!(
                "owner is {}, should be {}",
                self.accounts.user_name(have.uid),
                want.owner
            ));
        }
        if have.gid != want.ids.gid {
            r.push(format!(
                "group is {}, should be {}",
                self.accounts.group_name(have.gid),
                want.group
            ));
        }
        if have.mode != want.ids.mode {
            r.push(format!(
                "mode is {:04o}, should be {}",
                have.mode, want.mode
            ));
        }
        r
    }

    /// Queues creation of missing parents of `path`.
    fn parents(&mut self, path: &str, observed: &Observed, early: bool) -> Result<(), String> {
        let Observed::Missing { missing_parents } = observed else {
            return Ok(());
        };
        for parent in missing_parents {
            let (meta, reason) = match self.declared_dirs.get(parent) {
                Some((m, _)) => (self.meta(&m.clone())?, "does not exist".to_owned()),
                None => (
                    self.meta(&Meta {
                        owner: "root".into(),
                        group: "root".into(),
                        mode: IMPLICIT_DIR_MODE,
                    })?,
                    format!("missing parent directory of {path}"),
                ),
            };
            self.dir_creates
                .entry(parent.clone())
                .or_insert_with(|| Change {
                    resource: ResourceId::new(Kind::Directory, parent),
                    op: Op::CreateDir {
                        path: parent.clone(),
                        meta,
                    },
                    reasons: vec![reason],
                    diff: None,
                });
            if early && !self.early.contains(parent) {
                self.early.push(parent.clone());
            }
        }
        Ok(())
    }

    fn resource(
        &mut self,
        r: &Resource,
        id: &ResourceId,
        origin: &Origin,
        observed: &Observed,
    ) -> Result<(), String> {
        match r {
            Resource::Repo(repo) => {
                let content = repo.render();
                let meta = Meta {
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o644,
                };
                let change = self.file_like(
                    id,
                    &repo.path(),
                    repo.ensure,
                    &content,
                    &meta,
                    false,
                    observed,
                    true,
                )?;
                self.repos.extend(change);
            }
            Resource::File(f) => {
                let change = self.file_like(
                    id,
                    &f.path,
                    f.ensure,
                    &f.content,
                    &f.meta,
                    f.sensitive,
                    observed,
                    false,
                )?;
                self.files.extend(change);
            }
            Resource::Symlink(s) => {
                let change = match (s.ensure, observed) {
                    (Ensure::Present, Observed::Symlink { target }) if *target == s.target => None,
                    (Ensure::Present, Observed::Dir { .. } | Observed::Other { .. }) => {
                        return Err(format!(
                            "{} exists as {}; driftless will not replace it with a symlink",
                            s.path,
                            describe(observed)
                        ));
                    }
                    (Ensure::Present, _) => {
                        self.parents(&s.path, observed, false)?;
                        let reason = match observed {
                            Observed::Symlink { target } => {
                                format!("points to {target}, should point to {}", s.target)
                            }
                            Observed::File { .. } => {
                                format!("is a regular file, should be a symlink to {}", s.target)
                            }
                            _ => "does not exist".to_owned(),
                        };
                        Some(change(
                            id,
                            Op::Symlink {
                                path: s.path.clone(),
                                target: s.target.clone(),
                            },
                            vec![reason],
                        ))
                    }
                    (Ensure::Absent, Observed::Symlink { .. }) => Some(change(
                        id,
                        Op::RemoveFile {
                            path: s.path.clone(),
                        },
                        vec!["exists, should be absent".into()],
                    )),
                    (Ensure::Absent, _) => None,
                };
                self.files.extend(change);
            }
            Resource::Directory(d) => match (d.ensure, observed) {
                (Ensure::Present, Observed::Missing { .. }) => {
                    self.parents(&d.path, observed, false)?;
                    let meta = self.meta(&d.meta)?;
                    self.dir_creates.entry(d.path.clone()).or_insert_with(|| {
                        change(
                            id,
                            Op::CreateDir {
                                path: d.path.clone(),
                                meta,
                            },
                            vec!["does not exist".into()],
                        )
                    });
                }
                (Ensure::Present, Observed::Dir { meta: have, .. }) => {
                    let want = self.meta(&d.meta)?;
                    let reasons = self.meta_reasons(*have, &want);
                    if !reasons.is_empty() {
                        self.dirs.push(change(
                            id,
                            Op::SetMeta {
                                path: d.path.clone(),
                                meta: want,
                            },
                            reasons,
                        ));
                    }
                }
                (Ensure::Present, other) => {
                    return Err(format!(
                        "{} exists as {}; driftless will not replace it with a directory",
                        d.path,
                        describe(other)
                    ));
                }
                (Ensure::Absent, Observed::Dir { entries, .. }) => {
                    // Whether the plan empties it is known only at the end.
                    self.rmdirs
                        .push((id.clone(), origin.clone(), d.path.clone(), entries.clone()));
                }
                (Ensure::Absent, _) => {}
            },
            Resource::Package(_) | Resource::Service(_) => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn file_like(
        &mut self,
        id: &ResourceId,
        path: &str,
        ensure: Ensure,
        content: &[u8],
        meta: &Meta,
        sensitive: bool,
        observed: &Observed,
        early: bool,
    ) -> Result<Option<Change>, String> {
        if ensure == Ensure::Absent {
            return Ok(match observed {
                Observed::File { .. } | Observed::Symlink { .. } => Some(change(
                    id,
                    Op::RemoveFile {
                        path: path.to_owned(),
                    },
                    vec!["exists, should be absent".into()],
                )),
                _ => None,
            });
        }
        let want = self.meta(meta)?;
        let write = |reasons: Vec<String>, old: Option<&[u8]>| {
            let diff = (!sensitive)
                .then(|| text_diff(path, old, content))
                .flatten();
            let mut reasons = reasons;
            if sensitive {
                reasons.push("content hidden: the file is sensitive".into());
            }
            change(
                id,
                Op::WriteFile {
                    path: path.to_owned(),
                    content: content.to_vec(),
                    meta: want.clone(),
                },
                reasons,
            )
            .with_diff(diff)
        };
        Ok(match observed {
            Observed::Missing { .. } => {
                self.parents(path, observed, early)?;
                Some(write(vec!["does not exist".into()], Some(b"")))
            }
            Observed::File {
                meta: have,
                sha256,
                content: old,
                ..
            } => {
                let meta_reasons = self.meta_reasons(*have, &want);
                if *sha256 != crate::plan::sha256(content) {
                    let mut reasons = vec!["content differs".to_owned()];
                    reasons.extend(meta_reasons);
                    Some(write(reasons, old.as_deref()))
                } else if !meta_reasons.is_empty() {
                    Some(change(
                        id,
                        Op::SetMeta {
                            path: path.to_owned(),
                            meta: want.clone(),
                        },
                        meta_reasons,
                    ))
                } else {
                    None
                }
            }
            Observed::Symlink { target } => Some(write(
                vec![format!(
                    "is a symlink to {target}, should be a regular file"
                )],
                None,
            )),
            other => {
                return Err(format!(
                    "{path} exists as {}; driftless will not replace it with a file",
                    describe(other)
                ));
            }
        })
    }

    /// An absent directory is removed only when empty, or when this plan
    /// removes everything in it. Deepest first, so nested absent
    /// directories count as removed for their parents.
    fn plan_rmdirs(&mut self) {
        let mut removed: BTreeSet<String> = self
            .files
            .iter()
            .chain(&self.removals)
            .filter(|c| matches!(c.op, Op::RemoveFile { .. } | Op::RemoveDir { .. }))
            .filter_map(|c| c.op.path().map(str::to_owned))
            .collect();
        let mut rmdirs = std::mem::take(&mut self.rmdirs);
        rmdirs.sort_by(|a, b| b.2.cmp(&a.2));
        for (id, origin, path, entries) in rmdirs {
            let left: Vec<&String> = entries
                .iter()
                .filter(|e| !removed.contains(&format!("{path}/{e}")))
                .collect();
            if left.is_empty() {
                removed.insert(path.clone());
                self.removals.push(change(
                    &id,
                    Op::RemoveDir { path },
                    vec!["exists, should be absent".into()],
                ));
            } else {
                let shown: Vec<&str> = left.iter().take(5).map(|s| s.as_str()).collect();
                self.problems.push(PlanProblem {
                    resource: id,
                    origin,
                    message: format!(
                        "{path} should be absent but is not empty ({}{}); driftless removes a directory only when it is empty or the plan removes everything in it",
                        shown.join(", "),
                        if left.len() > shown.len() { ", ..." } else { "" }
                    ),
                });
            }
        }
    }

    fn finish(mut self) -> Result<Plan, Vec<PlanProblem>> {
        self.plan_rmdirs();
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        let mut changes = Vec::new();
        // Parents of repo files first, outermost first.
        let mut early = self.early.clone();
        early.sort();
        for p in early {
            changes.extend(self.dir_creates.remove(&p));
        }
        changes.append(&mut self.repos);
        let repo_phase = changes.len();
        changes.append(&mut self.packages);
        changes.extend(std::mem::take(&mut self.dir_creates).into_values());
        changes.append(&mut self.dirs);
        changes.append(&mut self.files);
        // Deepest first, so a directory is removed after what it contained.
        self.removals.sort_by(|a, b| b.op.path().cmp(&a.op.path()));
        changes.append(&mut self.removals);
        Ok(Plan {
            changes,
            notes: std::mem::take(&mut self.notes),
            repo_phase,
        })
    }
}

fn change(id: &ResourceId, op: Op, reasons: Vec<String>) -> Change {
    Change {
        resource: id.clone(),
        op,
        reasons,
        diff: None,
    }
}

impl Change {
    fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }
}

fn describe(o: &Observed) -> &'static str {
    match o {
        Observed::Missing { .. } => "nothing",
        Observed::File { .. } => "a regular file",
        Observed::Dir { .. } => "a directory",
        Observed::Symlink { .. } => "a symlink",
        Observed::Other { what } => what,
    }
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// A unified diff of two texts, or a one-line note for binary or large
/// content; `None` when the old content is unknown.
fn text_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> Option<String> {
    let old = old?;
    let is_text = |b: &[u8]| !b.contains(&0) && std::str::from_utf8(b).is_ok();
    if !is_text(old) || !is_text(new) {
        return Some(format!(
            "binary content differs ({} -> {} bytes)\n",
            old.len(),
            new.len()
        ));
    }
    if old.len() > DIFF_MAX || new.len() > DIFF_MAX {
        return Some(format!(
            "content differs ({} -> {} bytes; too large to show)\n",
            old.len(),
            new.len()
        ));
    }
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(path, path)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::{Declared, Directory, File, Package, PackageState, Symlink};

    fn origin() -> Origin {
        Origin {
            file: "hosts/h.toml".into(),
            line: 1,
            column: 1,
        }
    }

    fn meta(mode: u32) -> Meta {
        Meta {
            owner: "root".into(),
            group: "root".into(),
            mode,
        }
    }

    fn desired(resources: Vec<Resource>) -> DesiredState {
        DesiredState {
            resources: resources
                .into_iter()
                .map(|resource| Declared {
                    resource,
                    origin: origin(),
                })
                .collect(),
            ..DesiredState::default()
        }
    }

    fn file(path: &str, content: &str) -> Resource {
        Resource::File(File {
            path: path.into(),
            ensure: Ensure::Present,
            content: content.as_bytes().to_vec(),
            meta: meta(0o644),
            sensitive: false,
        })
    }

    fn observed_file(content: &str, mode: u32) -> Observed {
        Observed::File {
            meta: FsMeta {
                uid: 0,
                gid: 0,
                mode,
            },
            size: content.len() as u64,
            sha256: sha256(content.as_bytes()),
            content: Some(content.as_bytes().to_vec()),
        }
    }

    fn host(paths: &[(&str, Observed)]) -> ObservedHost {
        ObservedHost {
            paths: paths
                .iter()
                .map(|(p, o)| ((*p).to_owned(), o.clone()))
                .collect(),
            accounts: Accounts::parse("nginx:x:990:990::/:/sbin/nologin\n", "nginx:x:990:\n"),
            ..ObservedHost::default()
        }
    }

    fn missing(parents: &[&str]) -> Observed {
        Observed::Missing {
            missing_parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn ops(p: &Plan) -> Vec<String> {
        p.changes
            .iter()
            .map(|c| format!("{} {}", c.op.verb(), c.op.path().unwrap_or("-")))
            .collect()
    }

    #[test]
    fn converged_host_plans_nothing() {
        let d = desired(vec![file("/etc/motd", "hi\n")]);
        let p = plan(&d, &host(&[("/etc/motd", observed_file("hi\n", 0o644))])).expect("plan");
        assert!(p.is_empty());
    }

    #[test]
    fn content_change_has_a_diff_and_metadata_only_change_does_not_rewrite() {
        let d = desired(vec![file("/etc/motd", "new\n")]);
        let p = plan(&d, &host(&[("/etc/motd", observed_file("old\n", 0o600))])).expect("plan");
        assert_eq!(ops(&p), ["write file /etc/motd"]);
        assert_eq!(
            p.changes[0].reasons,
            ["content differs", "mode is 0600, should be 0644"]
        );
        assert!(
            p.changes[0]
                .diff
                .as_deref()
                .is_some_and(|d| d.contains("-old\n+new"))
        );

        let d = desired(vec![file("/etc/motd", "same\n")]);
        let p = plan(&d, &host(&[("/etc/motd", observed_file("same\n", 0o600))])).expect("plan");
        assert_eq!(ops(&p), ["set owner/group/mode /etc/motd"]);
    }

    #[test]
    fn repo_files_and_their_directories_come_before_packages() {
        use crate::desired::model::{Repo, RepoLocation};
        let d = desired(vec![
            Resource::Repo(Repo {
                name: "internal".into(),
                location: RepoLocation::Baseurl("file:///srv/repo".into()),
                enabled: true,
                gpgcheck: false,
                gpgkey: None,
                description: None,
                metadata_expire: None,
                ensure: Ensure::Present,
            }),
            Resource::Package(Package {
                name: "dl-tool".into(),
                state: PackageState::Present(None),
            }),
            file("/etc/motd", "x"),
        ]);
        let h = host(&[
            (
                "/etc/yum.repos.d/internal.repo",
                missing(&["/etc/yum.repos.d"]),
            ),
            ("/etc/motd", missing(&[])),
        ]);
        let p = plan(&d, &h).expect("plan");
        assert_eq!(
            ops(&p),
            [
                "create directory /etc/yum.repos.d",
                "write file /etc/yum.repos.d/internal.repo",
                "install -",
                "write file /etc/motd"
            ]
        );
        assert_eq!(
            p.repo_phase, 2,
            "the directory and the repo file go before the transaction"
        );
    }

    #[test]
    fn binary_content_is_said_to_differ_not_diffed() {
        let d = desired(vec![file("/usr/bin/tool", "\u{0}new")]);
        let p = plan(
            &d,
            &host(&[("/usr/bin/tool", observed_file("\u{0}old", 0o644))]),
        )
        .expect("plan");
        assert_eq!(
            p.changes[0].diff.as_deref(),
            Some("binary content differs (4 -> 4 bytes)\n")
        );
    }

    #[test]
    fn sensitive_files_have_no_diff() {
        let Resource::File(mut f) = file("/etc/secret", "new") else {
            unreachable!()
        };
        f.sensitive = true;
        let d = desired(vec![Resource::File(f)]);
        let p = plan(&d, &host(&[("/etc/secret", observed_file("old", 0o644))])).expect("plan");
        assert_eq!(p.changes[0].diff, None);
    }

    #[test]
    fn missing_parents_are_created_first_and_once() {
        let d = desired(vec![
            Resource::Directory(Directory {
                path: "/srv/www".into(),
                ensure: Ensure::Present,
                meta: meta(0o750),
            }),
            file("/srv/www/a", "a"),
            file("/srv/www/b", "b"),
        ]);
        let h = host(&[
            ("/srv/www", missing(&["/srv"])),
            ("/srv/www/a", missing(&["/srv", "/srv/www"])),
            ("/srv/www/b", missing(&["/srv", "/srv/www"])),
        ]);
        let p = plan(&d, &h).expect("plan");
        assert_eq!(
            ops(&p),
            [
                "create directory /srv",
                "create directory /srv/www",
                "write file /srv/www/a",
                "write file /srv/www/b"
            ]
        );
        // The declared directory keeps its declared mode even when it is
        // also a missing parent.
        assert!(matches!(&p.changes[1].op, Op::CreateDir { meta, .. } if meta.ids.mode == 0o750));
    }

    #[test]
    fn removals_come_last_deepest_first() {
        let absent_dir = |p: &str| {
            Resource::Directory(Directory {
                path: p.into(),
                ensure: Ensure::Absent,
                meta: meta(0o755),
            })
        };
        let d = desired(vec![absent_dir("/a"), absent_dir("/a/b"), file("/z", "z")]);
        let empty = Observed::Dir {
            meta: FsMeta {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
            entries: Vec::new(),
        };
        let p = plan(
            &d,
            &host(&[("/a", empty.clone()), ("/a/b", empty), ("/z", missing(&[]))]),
        )
        .expect("plan");
        assert_eq!(
            ops(&p),
            [
                "write file /z",
                "remove directory /a/b",
                "remove directory /a"
            ]
        );
    }

    #[test]
    fn refusals_are_problems_not_changes() {
        let d = desired(vec![
            file("/etc/dir", "x"),
            Resource::Directory(Directory {
                path: "/full".into(),
                ensure: Ensure::Absent,
                meta: meta(0o755),
            }),
            Resource::File(File {
                meta: Meta {
                    owner: "ghost".into(),
                    ..meta(0o644)
                },
                ..match file("/etc/ghost", "x") {
                    Resource::File(f) => f,
                    _ => unreachable!(),
                }
            }),
            Resource::Package(Package {
                name: "nginx".into(),
                state: PackageState::Present(None),
            }),
        ]);
        let dir = |entries: &[&str]| Observed::Dir {
            meta: FsMeta {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
            entries: entries.iter().map(|e| (*e).to_owned()).collect(),
        };
        let h = host(&[
            ("/etc/dir", dir(&[])),
            ("/full", dir(&["data"])),
            ("/etc/ghost", missing(&[])),
        ]);
        let problems = plan(&d, &h).expect_err("refused");
        let msgs: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        for want in [
            "will not replace it with a file",
            "not empty (data)",
            "owner `ghost` does not exist",
        ] {
            assert!(msgs.iter().any(|m| m.contains(want)), "{want}: {msgs:?}");
        }
    }

    #[test]
    fn symlinks_are_retargeted_and_replace_files() {
        let link = Resource::Symlink(Symlink {
            path: "/l".into(),
            target: "/new".into(),
            ensure: Ensure::Present,
        });
        let d = desired(vec![link]);
        let same = host(&[(
            "/l",
            Observed::Symlink {
                target: "/new".into(),
            },
        )]);
        assert!(plan(&d, &same).expect("plan").is_empty());
        let old = host(&[(
            "/l",
            Observed::Symlink {
                target: "/old".into(),
            },
        )]);
        assert_eq!(
            plan(&d, &old).expect("plan").changes[0].reasons,
            ["points to /old, should point to /new"]
        );
        let file = host(&[("/l", observed_file("x", 0o644))]);
        assert_eq!(ops(&plan(&d, &file).expect("plan")), ["link /l"]);
    }

    #[test]
    fn owners_a_package_creates_are_resolved_after_its_transaction() {
        let Resource::File(mut f) = file("/etc/nginx/nginx.conf", "x") else {
            unreachable!()
        };
        f.meta.owner = "www".into();
        let pkg = Resource::Package(Package {
            name: "nginx".into(),
            state: PackageState::Present(None),
        });
        let h = host(&[("/etc/nginx/nginx.conf", missing(&[]))]);
        // Without a package to create it, an unknown owner is a problem...
        assert!(plan(&desired(vec![Resource::File(f.clone())]), &h).is_err());
        // ...with one, the step is planned and marked for the re-plan.
        let p = plan(&desired(vec![pkg, Resource::File(f)]), &h).expect("plan");
        assert!(matches!(&p.changes[1].op, Op::WriteFile { meta, .. } if meta.deferred));
    }

    #[test]
    fn numeric_owners_and_named_accounts_resolve() {
        let Resource::File(mut f) = file("/etc/n", "x") else {
            unreachable!()
        };
        f.meta.owner = "nginx".into();
        f.meta.group = "1234".into();
        let d = desired(vec![Resource::File(f)]);
        let p = plan(&d, &host(&[("/etc/n", observed_file("x", 0o644))])).expect("plan");
        assert_eq!(
            p.changes[0].reasons,
            [
                "owner is root, should be nginx",
                "group is root, should be 1234"
            ]
        );
        assert!(
            matches!(&p.changes[0].op, Op::SetMeta { meta, .. } if meta.ids.uid == 990 && meta.ids.gid == 1234)
        );
    }
}
