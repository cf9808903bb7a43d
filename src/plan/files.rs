//! Planning paths, whatever kind declared them (files, directories,
//! symlinks, repo files), with the missing parents they need, in apply
//! order.

use std::collections::{BTreeMap, BTreeSet};

mod extract;

use super::change::{Change, IMPLICIT_DIR_MODE, MetaView, Op, Phase, Plan, PlanProblem, Validator};
use super::content::{SecretContents, text_diff};
use super::observed::{Accounts, FsMeta, Observed};
use crate::desired::DesiredState;
use crate::desired::diag::Origin;
use crate::desired::model::{
    Content, ContentRule, EditDecl, Ensure, Kind, Meta, NO_LONGER_DECLARED, PathDecl, PathForm,
    Prim, ResourceId, SelinuxParts,
};

/// The path planner's state while one plan is made.
pub(super) struct Planner<'a> {
    accounts: &'a Accounts,
    /// The policy's SELinux context of each path (`None`: no policy, so
    /// labels are not managed).
    policy_labels: Option<&'a BTreeMap<String, Option<String>>>,
    /// Contents that were secret: never the old side of a diff.
    secret_contents: &'a SecretContents,
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
    /// Host settings to set.
    settings: Vec<Change>,
    /// Absent directories that exist: (id, origin, path, entry names).
    rmdirs: Vec<(ResourceId, Origin, String, Vec<String>)>,
    packages: Vec<Change>,
    /// User and group steps (after packages, before directories).
    account_steps: Vec<Change>,
    /// Users and groups declared present: a file may be owned by one that
    /// is only created in this converge.
    declared_users: BTreeSet<String>,
    declared_groups: BTreeSet<String>,
    notes: Vec<String>,
    /// Each file edited so far: its text after the edits planned, and the
    /// metadata it keeps.
    edited: BTreeMap<String, (String, MetaView)>,
}

impl<'a> Planner<'a> {
    /// A planner for `desired` against a host with `accounts`.
    pub(super) fn new(
        desired: &DesiredState,
        accounts: &'a Accounts,
        policy_labels: Option<&'a BTreeMap<String, Option<String>>>,
        secret_contents: &'a SecretContents,
    ) -> Self {
        let mut declared_dirs = BTreeMap::new();
        let mut declared_users = BTreeSet::new();
        let mut declared_groups = BTreeSet::new();
        for d in &desired.resources {
            match d.resource.lower() {
                Prim::Path(p) => {
                    if let (Ensure::Present, PathForm::Dir { meta }) = (p.ensure, &p.form) {
                        declared_dirs
                            .insert(p.path.into_owned(), ((*meta).clone(), d.origin.clone()));
                    }
                }
                Prim::User(u) => {
                    if u.ensure == Ensure::Present {
                        declared_users.insert(u.name.clone());
                    }
                }
                Prim::Group(g) => {
                    if g.ensure == Ensure::Present {
                        declared_groups.insert(g.name.clone());
                    }
                }
                Prim::Package(_)
                | Prim::Command(_)
                | Prim::Unit(_)
                | Prim::Edit(_)
                | Prim::Archive(_)
                | Prim::Setting(_) => {}
            }
        }
        Planner {
            accounts,
            policy_labels,
            secret_contents,
            problems: Vec::new(),
            declared_dirs,
            dir_creates: BTreeMap::new(),
            early: Vec::new(),
            repos: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            removals: Vec::new(),
            settings: Vec::new(),
            rmdirs: Vec::new(),
            packages: Vec::new(),
            account_steps: Vec::new(),
            declared_users,
            declared_groups,
            notes: Vec::new(),
            edited: BTreeMap::new(),
        }
    }

    /// The groups declared present.
    pub(super) fn declared_groups(&self) -> &BTreeSet<String> {
        &self.declared_groups
    }

    /// Adds the user and group steps.
    pub(super) fn accounts(&mut self, changes: Vec<Change>) {
        self.account_steps = changes;
    }

    /// Whether repo files are written before the package transaction (so
    /// far: resources are planned in apply order, repos first).
    pub(super) fn repo_files_pending(&self) -> bool {
        !self.repos.is_empty()
    }

    /// Adds a package change (the transaction comes before the paths).
    pub(super) fn package(&mut self, c: Change) {
        self.packages.push(c);
    }

    /// Adds a setting's change (after the files and removals).
    pub(super) fn setting(&mut self, c: Change) {
        self.settings.push(c);
    }

    /// Adds something the operator should know.
    pub(super) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Adds a reason the plan cannot be made.
    pub(super) fn problem(&mut self, p: PlanProblem) {
        self.problems.push(p);
    }

    /// The SELinux context `path` should have: the policy's, with the
    /// declared parts put in; `None` where labels are not managed (no
    /// policy) or the policy has no context for it and none is declared.
    /// `current` is what it has now (a base for declared parts when the
    /// policy has none).
    fn label(
        &self,
        path: &str,
        parts: &SelinuxParts,
        current: Option<&str>,
    ) -> Result<Option<String>, String> {
        let Some(defaults) = self.policy_labels else {
            return Ok(None);
        };
        let default = defaults.get(path).cloned().flatten();
        if parts.is_empty() {
            return Ok(default);
        }
        parts
            .apply(default.as_deref().or(current))
            .map(Some)
            .map_err(|e| format!("{path}: {e}"))
    }

    fn meta(&self, m: &Meta, path: &str, current: Option<&str>) -> Result<MetaView, String> {
        let selinux = self.label(path, &m.selinux, current)?;
        let (uid, gid) = (self.accounts.uid(&m.owner), self.accounts.gid(&m.group));
        // A user or group a package creates (nginx for the nginx package),
        // or one declared here and created in this converge, is known only
        // after those steps, which come first.
        let created_here = (uid.is_none() && self.declared_users.contains(&m.owner))
            || (gid.is_none() && self.declared_groups.contains(&m.group));
        if (uid.is_none() || gid.is_none()) && (!self.packages.is_empty() || created_here) {
            return Ok(MetaView {
                owner: m.owner.clone(),
                group: m.group.clone(),
                mode: format!("{:04o}", m.mode),
                selinux,
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
            selinux,
            ids: FsMeta {
                uid,
                gid,
                mode: m.mode,
            },
            deferred: false,
        })
    }

    fn meta_reasons(&self, have: FsMeta, have_label: Option<&str>, want: &MetaView) -> Vec<String> {
        let mut r = Vec::new();
        if want.deferred {
            r.push(format!(
                "owner {}:{} is set once the package transaction or the account steps create it",
                want.owner, want.group
            ));
            return r;
        }
        r.extend(label_reason(have_label, want.selinux.as_deref()));
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

    /// Checks that `path` is under the home /etc/passwd gives `user` (a
    /// path the kind chose by the usual layout); a user not there yet is
    /// checked again once the account steps have made it.
    fn in_home(&self, path: &str, user: &str) -> Result<(), String> {
        match self.accounts.passwd.get(user) {
            Some(entry) if !path.starts_with(&format!("{}/", entry.home.trim_end_matches('/'))) => {
                Err(format!(
                    "{path} is not in {user}'s home {} (in /etc/passwd): set `path`",
                    entry.home
                ))
            }
            _ => Ok(()),
        }
    }

    /// Queues creation of missing parents of `path`.
    pub(super) fn parents(
        &mut self,
        path: &str,
        observed: &Observed,
        early: bool,
    ) -> Result<(), String> {
        self.parents_owned(path, observed, early, None)
    }

    /// Queues creation of missing parents of `path`, its own directory
    /// with `own_dir` when given (`~/.ssh`, the user's, 0700).
    fn parents_owned(
        &mut self,
        path: &str,
        observed: &Observed,
        early: bool,
        own_dir: Option<&Meta>,
    ) -> Result<(), String> {
        let Observed::Missing { missing_parents } = observed else {
            return Ok(());
        };
        let dir_of_path = path.rsplit_once('/').map(|(d, _)| d);
        for parent in missing_parents {
            let (meta, reason) = match (self.declared_dirs.get(parent), own_dir) {
                (Some((m, _)), _) => (
                    self.meta(&m.clone(), parent, None)?,
                    "does not exist".to_owned(),
                ),
                (None, Some(m)) if dir_of_path == Some(parent.as_str()) => (
                    self.meta(m, parent, None)?,
                    format!("missing directory of {path}"),
                ),
                (None, _) => (
                    self.meta(&Meta::new("root", "root", IMPLICIT_DIR_MODE), parent, None)?,
                    format!("missing parent directory of {path}"),
                ),
            };
            self.dir_creates.entry(parent.clone()).or_insert_with(|| {
                Change::new(
                    &ResourceId::new(Kind::Directory, parent),
                    Op::CreateDir {
                        path: parent.clone(),
                        meta,
                    },
                    vec![reason],
                )
            });
            if early && !self.early.contains(parent) {
                self.early.push(parent.clone());
            }
        }
        Ok(())
    }

    /// Plans an edit of part of a file: applied to what the file holds
    /// after the edits of it planned before (in declaration order); a
    /// change writes the whole file, keeping its owner, group, mode and
    /// label, with a diff of the whole file.
    pub(super) fn edit(
        &mut self,
        decl: &EditDecl<'_>,
        id: &ResourceId,
        observed: &Observed,
    ) -> Result<(), String> {
        let path = decl.path;
        if let Some(user) = decl.in_home_of {
            self.in_home(path, user)?;
        }
        let first = !self.edited.contains_key(path);
        let (text, meta, meta_reasons) = match self.edited.get(path) {
            Some((text, meta)) => (text.clone(), meta.clone(), Vec::new()),
            None => match self.edit_base(decl, observed)? {
                Some((text, kept)) => {
                    let (meta, reasons) = self.edit_meta(decl, observed, kept)?;
                    (text, meta, reasons)
                }
                None => return Ok(()),
            },
        };
        let Some((new, reason)) = decl.edit.apply(&text).map_err(|e| format!("{path}: {e}"))?
        else {
            if !meta_reasons.is_empty() {
                let op = Op::SetMeta {
                    path: path.to_owned(),
                    meta: meta.clone(),
                };
                self.files.push(change(id, op, meta_reasons));
            }
            self.edited.insert(path.to_owned(), (text, meta));
            return Ok(());
        };
        let was_secret = match observed {
            Observed::File { sha256, .. } => self.secret_contents.contains(sha256),
            _ => false,
        };
        // The edit's reason quotes what the file holds now.
        let reason = if was_secret {
            "its part differs".to_owned()
        } else {
            reason
        };
        let writing = Write {
            id,
            path,
            bytes: Some(new.as_bytes()),
            meta: &meta,
            sensitive: false,
            was_secret,
            validate: decl.validate,
            download: None,
        };
        let mut reasons = vec![reason];
        reasons.extend(meta_reasons);
        let mut change = writing.change(reasons, Some(text.as_bytes()))?;
        if first && matches!(observed, Observed::Missing { .. }) {
            change = change.creating();
        }
        self.files.push(change);
        self.edited.insert(path.to_owned(), (new, meta));
        Ok(())
    }

    /// The metadata an edited file that exists is to have, and why it
    /// differs: what it has (`kept`), unless the edit owns the file's
    /// metadata (`create_as`: `authorized_keys` is the user's, 0600, with
    /// the policy's context, or sshd refuses it).
    fn edit_meta(
        &self,
        decl: &EditDecl<'_>,
        observed: &Observed,
        kept: MetaView,
    ) -> Result<(MetaView, Vec<String>), String> {
        match (decl.create_as, observed) {
            (
                Some(c),
                Observed::File {
                    meta: have, label, ..
                },
            ) => {
                let want = self.meta(&c.file, decl.path, label.as_deref())?;
                let reasons = self.meta_reasons(*have, label.as_deref(), &want);
                Ok((want, reasons))
            }
            _ => Ok((kept, Vec::new())),
        }
    }

    /// What the first edit of a file starts from: its text and the
    /// metadata it keeps; an empty root-owned file where it is missing and
    /// may be created; `None` when the package transaction is to bring it
    /// (the edits are planned again after it).
    fn edit_base(
        &mut self,
        decl: &EditDecl<'_>,
        observed: &Observed,
    ) -> Result<Option<(String, MetaView)>, String> {
        let path = decl.path;
        match observed {
            Observed::File {
                meta,
                label,
                content: Some(bytes),
                ..
            } => {
                let text = String::from_utf8(bytes.clone())
                    .map_err(|_| format!("{path} is not UTF-8 text; driftless edits text files"))?;
                let selinux = match label {
                    Some(l) => Some(l.clone()),
                    None => self.label(path, &SelinuxParts::default(), None)?,
                };
                let view = MetaView {
                    owner: meta.uid.to_string(),
                    group: meta.gid.to_string(),
                    mode: format!("{:04o}", meta.mode),
                    selinux,
                    ids: *meta,
                    deferred: false,
                };
                Ok(Some((text, view)))
            }
            Observed::File { size, .. } => Err(format!(
                "{path} is {size} bytes, larger than driftless edits ({} bytes)",
                super::observed::KEEP_CONTENT_MAX
            )),
            Observed::Missing { .. } if decl.create => {
                let (file, own_dir) = match decl.create_as {
                    Some(c) => (c.file.clone(), Some(c.dir())),
                    None => (Meta::new("root", "root", 0o644), None),
                };
                self.parents_owned(path, observed, false, own_dir.as_ref())?;
                let meta = self.meta(&file, path, None)?;
                Ok(Some((String::new(), meta)))
            }
            Observed::Missing { .. } if !self.packages.is_empty() => {
                self.notes.push(format!(
                    "{path} does not exist yet: its edits are planned after the package transaction"
                ));
                Ok(None)
            }
            Observed::Missing { .. } => Err(format!(
                "{path} does not exist; an edit changes part of a file that is there \
                 (`create = true` starts from an empty file)"
            )),
            other => Err(format!("{path} is {}, not a file to edit", describe(other))),
        }
    }

    /// Plans the declared path `decl`, observed as `observed`.
    pub(super) fn path(
        &mut self,
        decl: &PathDecl<'_>,
        id: &ResourceId,
        origin: &Origin,
        observed: &Observed,
    ) -> Result<(), String> {
        let path = decl.path.as_ref();
        match &decl.form {
            PathForm::File {
                content,
                meta,
                sensitive,
                rule,
                validate,
                source_url,
            } => {
                let want = WantedFile {
                    content,
                    meta,
                    sensitive: *sensitive,
                    rule: *rule,
                    validate: *validate,
                    source_url: *source_url,
                };
                let change =
                    self.file_like(id, path, decl.ensure, &want, observed, decl.before_packages)?;
                if decl.before_packages {
                    self.repos.extend(change);
                } else {
                    self.files.extend(change);
                }
            }
            PathForm::Symlink { target, selinux } => {
                let change = self.symlink(id, path, decl.ensure, target, selinux, observed)?;
                self.files.extend(change);
            }
            PathForm::Dir { meta } => {
                self.directory(id, origin, path, decl.ensure, meta, observed)?;
            }
        }
        Ok(())
    }

    /// Plans a symlink at `path` that should point to `want`.
    fn symlink(
        &mut self,
        id: &ResourceId,
        path: &str,
        ensure: Ensure,
        want: &str,
        selinux: &SelinuxParts,
        observed: &Observed,
    ) -> Result<Option<Change>, String> {
        let current = match observed {
            Observed::Symlink { label, .. } => label.as_deref(),
            _ => None,
        };
        let label = match ensure {
            Ensure::Present => self.label(path, selinux, current)?,
            Ensure::Absent => None,
        };
        Ok(match (ensure, observed) {
            (Ensure::Present, Observed::Symlink { target, .. })
                if *target == want && label_reason(current, label.as_deref()).is_none() =>
            {
                None
            }
            (Ensure::Present, Observed::Dir { .. } | Observed::Other { .. }) => {
                return Err(format!(
                    "{} exists as {}; driftless will not replace it with a symlink",
                    path,
                    describe(observed)
                ));
            }
            (Ensure::Present, _) => {
                self.parents(path, observed, false)?;
                let reason = match observed {
                    Observed::Symlink { target, .. } if *target == want => {
                        label_reason(current, label.as_deref()).unwrap_or_default()
                    }
                    Observed::Symlink { target, .. } => {
                        format!("points to {target}, should point to {}", want)
                    }
                    Observed::File { .. } => {
                        format!("is a regular file, should be a symlink to {}", want)
                    }
                    _ => "does not exist".to_owned(),
                };
                let link = change(
                    id,
                    Op::Symlink {
                        path: path.to_owned(),
                        target: want.to_owned(),
                        selinux: label,
                    },
                    vec![reason],
                );
                Some(if matches!(observed, Observed::Missing { .. }) {
                    link.creating()
                } else {
                    link
                })
            }
            (Ensure::Absent, Observed::Symlink { .. }) => Some(change(
                id,
                Op::RemoveFile {
                    path: path.to_owned(),
                },
                vec!["exists, should be absent".into()],
            )),
            (Ensure::Absent, _) => None,
        })
    }

    /// Plans a directory at `path`.
    fn directory(
        &mut self,
        id: &ResourceId,
        origin: &Origin,
        path: &str,
        ensure: Ensure,
        meta: &Meta,
        observed: &Observed,
    ) -> Result<(), String> {
        match (ensure, observed) {
            (Ensure::Present, Observed::Missing { .. }) => {
                self.parents(path, observed, false)?;
                let meta = self.meta(meta, path, None)?;
                self.dir_creates.entry(path.to_owned()).or_insert_with(|| {
                    change(
                        id,
                        Op::CreateDir {
                            path: path.to_owned(),
                            meta,
                        },
                        vec!["does not exist".into()],
                    )
                });
            }
            (
                Ensure::Present,
                Observed::Dir {
                    meta: have, label, ..
                },
            ) => {
                let want = self.meta(meta, path, label.as_deref())?;
                let reasons = self.meta_reasons(*have, label.as_deref(), &want);
                if !reasons.is_empty() {
                    self.dirs.push(change(
                        id,
                        Op::SetMeta {
                            path: path.to_owned(),
                            meta: want,
                        },
                        reasons,
                    ));
                }
            }
            (Ensure::Present, other) => {
                return Err(format!(
                    "{} exists as {}; driftless will not replace it with a directory",
                    path,
                    describe(other)
                ));
            }
            (Ensure::Absent, Observed::Dir { entries, .. }) => {
                // Whether the plan empties it is known only at the end.
                self.rmdirs
                    .push((id.clone(), origin.clone(), path.to_owned(), entries.clone()));
            }
            (Ensure::Absent, _) => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn file_like(
        &mut self,
        id: &ResourceId,
        path: &str,
        ensure: Ensure,
        wanted: &WantedFile<'_>,
        observed: &Observed,
        early: bool,
    ) -> Result<Option<Change>, String> {
        let (content, rule) = (wanted.content, wanted.rule);
        if ensure == Ensure::Absent {
            return Ok(removal(id, path, observed));
        }
        let current = match observed {
            Observed::File { label, .. } => label.as_deref(),
            _ => None,
        };
        let want = self.meta(wanted.meta, path, current)?;
        // The bytes are loaded for every file that is to change (hydrate);
        // a no-op plans with hashes only.
        let bytes = content.bytes();
        // Hidden: what the file is to become, if it is secret, and what it
        // holds now, if that ever was (a secret written by an earlier
        // generation, then declared in plain or dropped).
        let was_secret = match observed {
            Observed::File { sha256, .. } => self.secret_contents.contains(sha256),
            _ => false,
        };
        let writing = Write {
            id,
            path,
            bytes,
            meta: &want,
            sensitive: wanted.sensitive,
            was_secret,
            validate: wanted.validate,
            download: wanted.source_url.map(|url| (url, content.sha256())),
        };
        let write = |reasons, old| writing.change(reasons, old);
        Ok(match observed {
            Observed::Missing { .. } if rule == ContentRule::Untouched => {
                return Err(format!(
                    "{path} does not exist; a [[file]] without `content` or `source` sets \
                     only the owner, group and mode of a file that exists"
                ));
            }
            Observed::Missing { .. } => {
                self.parents(path, observed, early)?;
                Some(write(vec!["does not exist".into()], Some(b""))?.creating())
            }
            Observed::File {
                meta: have,
                label,
                sha256,
                content: old,
                ..
            } => {
                let meta_reasons = self.meta_reasons(*have, label.as_deref(), &want);
                // Only exact content is compared: `replace = false` and a
                // file without content leave the bytes as they are.
                if rule.is_exact() && sha256 != content.sha256() {
                    let mut reasons = vec!["content differs".to_owned()];
                    reasons.extend(meta_reasons);
                    Some(write(reasons, old.as_deref())?)
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
            Observed::Symlink { target, .. } if !rule.is_exact() => {
                return Err(format!(
                    "{path} is a symlink to {target}; driftless will not replace it with a \
                     file it does not write the content of"
                ));
            }
            Observed::Symlink { target, .. } => Some(write(
                vec![format!(
                    "is a symlink to {target}, should be a regular file"
                )],
                None,
            )?),
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
            } else if origin.file == NO_LONGER_DECLARED {
                // Dropped from the repo: what driftless does not manage
                // in it is not driftless's to remove.
                let shown: Vec<&str> = left.iter().take(5).map(|s| s.as_str()).collect();
                self.notes.push(format!(
                    "{path} is no longer declared and was created by driftless, but is left in place: it holds what driftless does not manage ({}{})",
                    shown.join(", "),
                    if left.len() > shown.len() { ", ..." } else { "" }
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

    /// The ordered plan, or every problem found: each change in its
    /// phase, the phases in their order.
    pub(super) fn finish(mut self) -> Result<Plan, Vec<PlanProblem>> {
        self.plan_rmdirs();
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        // Parents of repo files first, outermost first.
        let mut early = self.early.clone();
        early.sort();
        let mut before_packages: Vec<Change> = early
            .iter()
            .filter_map(|p| self.dir_creates.remove(p))
            .collect();
        before_packages.append(&mut self.repos);
        // Created outermost first (by path), then the declared ones changed.
        let mut directories: Vec<Change> = std::mem::take(&mut self.dir_creates)
            .into_values()
            .collect();
        directories.append(&mut self.dirs);
        // Deepest first, so a directory is removed after what it contained.
        self.removals.sort_by(|a, b| b.op.path().cmp(&a.op.path()));
        let mut by_phase = BTreeMap::from([
            (Phase::BeforePackages, before_packages),
            (Phase::Packages, std::mem::take(&mut self.packages)),
            (Phase::Accounts, std::mem::take(&mut self.account_steps)),
            (Phase::Directories, directories),
            (Phase::Files, std::mem::take(&mut self.files)),
            (Phase::Removals, std::mem::take(&mut self.removals)),
            (Phase::Settings, std::mem::take(&mut self.settings)),
        ]);
        let repo_phase = by_phase[&Phase::BeforePackages].len();
        let changes = Phase::ALL
            .iter()
            .flat_map(|phase| {
                by_phase
                    .remove(phase)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.in_phase(*phase))
            })
            .collect();
        Ok(Plan {
            changes,
            notes: std::mem::take(&mut self.notes),
            preview_notes: Vec::new(),
            repo_phase,
        })
    }
}

/// The write of a file's content, as a change: its diff, unless what is
/// written or what is replaced is secret.
struct Write<'w> {
    id: &'w ResourceId,
    path: &'w str,
    /// The desired bytes (loaded for every file that is to change).
    bytes: Option<&'w [u8]>,
    meta: &'w MetaView,
    sensitive: bool,
    /// What the file holds now was secret once.
    was_secret: bool,
    /// Its validator, if it has one.
    validate: Option<&'w [String]>,
    /// Where the bytes were downloaded from, and their pinned hash (a
    /// download).
    download: Option<(&'w str, &'w [u8; 32])>,
}

impl Write<'_> {
    fn change(&self, mut reasons: Vec<String>, old: Option<&[u8]>) -> Result<Change, String> {
        let path = self.path;
        let bytes = self
            .bytes
            .ok_or_else(|| format!("{path}: its desired content was not loaded (this is a bug)"))?;
        let hidden = self.sensitive || self.was_secret;
        let diff = (!hidden).then(|| text_diff(path, old, bytes)).flatten();
        if let Some((url, sha256)) = self.download {
            reasons.push(format!(
                "downloaded from {url}, sha256 {}",
                hex::encode(sha256)
            ));
        }
        if self.sensitive {
            reasons.push("content hidden: the file is sensitive".into());
        } else if self.was_secret {
            reasons.push("content hidden: what the file holds now was secret".into());
        }
        Ok(change(
            self.id,
            Op::WriteFile {
                path: path.to_owned(),
                content: bytes.to_vec(),
                meta: self.meta.clone(),
                validate: self.validate.map(|argv| Validator {
                    argv: argv.to_vec(),
                    // What a validator prints may quote the file.
                    quiet: self.sensitive || self.was_secret,
                }),
            },
            reasons,
        )
        .with_diff(diff))
    }
}

/// Why a label is to change, if it is: `want` is `None` where labels are
/// not managed.
fn label_reason(have: Option<&str>, want: Option<&str>) -> Option<String> {
    let want = want?;
    (have != Some(want)).then(|| match have {
        Some(have) => format!("SELinux context is {have}, should be {want}"),
        None => format!("has no SELinux context, should be {want}"),
    })
}

fn change(id: &ResourceId, op: Op, reasons: Vec<String>) -> Change {
    Change::new(id, op, reasons)
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
/// The removal of a file (or a symlink where a file was declared) that
/// is to be absent, if there is one.
fn removal(id: &ResourceId, path: &str, observed: &Observed) -> Option<Change> {
    match observed {
        Observed::File { .. } | Observed::Symlink { .. } => Some(change(
            id,
            Op::RemoveFile {
                path: path.to_owned(),
            },
            vec!["exists, should be absent".into()],
        )),
        _ => None,
    }
}

/// What a regular file is to hold, as [`Planner::file_like`] compares it.
#[derive(Clone, Copy)]
struct WantedFile<'a> {
    content: &'a Content,
    meta: &'a Meta,
    sensitive: bool,
    rule: ContentRule,
    validate: Option<&'a [String]>,
    /// Where its bytes were downloaded from, for a pinned download.
    source_url: Option<&'a str>,
}
