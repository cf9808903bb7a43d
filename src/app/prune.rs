//! Pruning: what the config repo no longer declares is put back as it was
//! before driftless managed it, or removed if driftless created it, as
//! part of the converge's transaction. The inventory of what is managed
//! (and how each thing was before) lives in the state directory.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::converge::{self, Prepared};
use crate::desired::DesiredState;
use crate::desired::diag::Origin;
use crate::desired::model::{
    Content, ContentRule, Declared, Directory, Ensure, File, Form, Meta, NO_LONGER_DECLARED,
    PathDecl, PathForm, Prim, PrimKind, Resource, ResourceId, RunState, SelinuxParts, Service,
    Symlink,
};
use crate::plan::Plan;
use crate::plan::observed::{FsMeta, setting_key};
use crate::store::Store;
use crate::store::inventory::{Before, Entry, Inventory};
use crate::store::snapshot::Prior;
use crate::system::fsroot::FsRoot;

/// What pruning adds to one converge.
#[derive(Default)]
pub(super) struct Pruning {
    /// The resources put back, with the reason shown first on their changes.
    reasons: BTreeMap<ResourceId, String>,
    /// What is only said (a package left installed, a resource handed back).
    pub(super) notes: Vec<String>,
}

/// Adds to `desired` what puts back each inventory entry it no longer
/// declares; packages driftless installed are removed only with
/// `prune_packages`.
pub(super) fn dropped(
    inv: &Inventory,
    desired: &mut DesiredState,
    prune_packages: bool,
) -> Pruning {
    let declared: std::collections::BTreeSet<ResourceId> =
        desired.resources.iter().map(|d| d.resource.id()).collect();
    // Each declared path, and whether edits (of part of it) own it.
    let paths: BTreeMap<String, bool> = desired
        .resources
        .iter()
        .filter_map(|d| {
            let is_edit = d.resource.id().kind.prim() == PrimKind::Edit;
            Some((d.resource.path()?, is_edit))
        })
        .collect();
    let mut out = Pruning::default();
    for e in inv.entries.values() {
        if declared.contains(&e.id) {
            continue;
        }
        // Its path is owned another way now (an edit that became a whole
        // file, or the reverse): the new owner keeps it, and putting this
        // one back would undo it. Edits of one file share it.
        let is_edit = e.id.kind.prim() == PrimKind::Edit;
        let path = match &e.before {
            Before::Edit { path, .. } => Some(path.clone()),
            _ => e.id.kind.path_of_key(&e.id.key),
        };
        if let Some(path) = path
            && paths
                .get(&path)
                .is_some_and(|owner_is_edit| *owner_is_edit != is_edit)
        {
            out.notes.push(format!(
                "{} is no longer declared; {path} is managed by another declaration now, which keeps it",
                e.id
            ));
            continue;
        }
        if !e.prune {
            out.notes.push(format!(
                "{} is no longer declared and has `prune = false`: driftless leaves it as it is",
                e.id
            ));
            continue;
        }
        let since = e.generation.map_or("found as declared".to_owned(), |g| {
            format!("generation {g}")
        });
        let (resource, reason) = match put_back(e, prune_packages) {
            Some(r) => r,
            None => {
                if matches!(e.before, Before::Package { installed: false }) {
                    out.notes.push(format!(
                        "{} is no longer declared; driftless installed it ({since}), and it stays installed ([prune] packages = false)",
                        e.id
                    ));
                }
                continue;
            }
        };
        let reason = match reason {
            Undo::Remove => format!("no longer declared; created by driftless ({since})"),
            Undo::Restore => {
                format!(
                    "no longer declared; put back as it was before driftless managed it ({since})"
                )
            }
        };
        // Keyed by what is planned (a repo file put back is a file).
        out.reasons.insert(resource.id(), reason);
        desired.resources.push(Declared {
            resource,
            prune: true,
            origin: Origin {
                file: NO_LONGER_DECLARED.to_owned(),
                line: 1,
                column: 1,
            },
        });
    }
    desired.resources.sort_by_key(|d| d.resource.id().kind);
    out
}

enum Undo {
    Remove,
    Restore,
}

/// Whether a declaration leaves a file's bytes alone (see
/// [`Entry::keeps_content`]).
fn keeps_content(prim: &Prim<'_>) -> bool {
    matches!(
        prim,
        Prim::Path(PathDecl {
            form: PathForm::File { rule, .. },
            ..
        }) if !rule.is_exact()
    )
}

/// The resource whose converge undoes `e`, if there is anything to undo.
/// A record of another shape than its kind's primitive (a device found
/// where a path was declared) is forgotten, as accounts and commands are.
fn put_back(e: &Entry, prune_packages: bool) -> Option<(Resource, Undo)> {
    let (kind, key) = (e.id.kind, e.id.key.as_str());
    match kind.prim() {
        PrimKind::Path(form) => match &e.before {
            // A file written once (`replace = false`) holds the
            // application's bytes now: it stays.
            Before::Path(Prior::Missing) if e.keeps_content => None,
            Before::Path(Prior::Missing) => Some((kind.absent(key)?, Undo::Remove)),
            Before::Path(prior) => Some((
                path_as_before(prior, form, kind.path_of_key(key)?, e.keeps_content)?,
                Undo::Restore,
            )),
            Before::Unit { .. }
            | Before::Package { .. }
            | Before::Edit { .. }
            | Before::Setting { .. }
            | Before::Untracked => None,
        },
        // What the edit replaced goes back; an edit that replaced nothing
        // it can put back (lines it removed) is forgotten.
        PrimKind::Edit => match &e.before {
            Before::Edit {
                path,
                undo: Some(undo),
            } => Some((kind.undoing(key, path, undo)?, Undo::Restore)),
            _ => None,
        },
        // An extracted tree is removed whatever was there before: an
        // empty directory it replaced is not made again, and a tree found
        // with a marker (extracted before the state directory knew it)
        // was driftless's.
        PrimKind::Archive => match &e.before {
            Before::Path(Prior::Missing | Prior::Dir { .. } | Prior::Tree { .. }) => {
                Some((kind.absent(key)?, Undo::Remove))
            }
            Before::Path(Prior::File { .. } | Prior::Symlink { .. })
            | Before::Unit { .. }
            | Before::Package { .. }
            | Before::Edit { .. }
            | Before::Setting { .. }
            | Before::Untracked => None,
        },
        PrimKind::Package => match e.before {
            Before::Package { installed: false } if prune_packages => {
                Some((kind.absent(key)?, Undo::Remove))
            }
            Before::Package { .. }
            | Before::Path(_)
            | Before::Unit { .. }
            | Before::Edit { .. }
            | Before::Setting { .. }
            | Before::Untracked => None,
        },
        PrimKind::Unit => unit_as_before(key, &e.before).map(|r| (r, Undo::Restore)),
        // A setting's facets go back to what they were.
        PrimKind::Setting => match &e.before {
            Before::Setting { facets } => Some((kind.restoring(key, facets)?, Undo::Restore)),
            Before::Path(_)
            | Before::Unit { .. }
            | Before::Package { .. }
            | Before::Edit { .. }
            | Before::Untracked => None,
        },
        PrimKind::Group | PrimKind::User | PrimKind::Command => None,
    }
}

/// The service that puts the unit `key` back as `before` recorded it:
/// its enablement and run state, masked again if it was masked (one
/// driftless masked is unmasked by declaring how it ran: see the service
/// plan). `None`: the unit did not exist then, nothing to go back to.
fn unit_as_before(key: &str, before: &Before) -> Option<Resource> {
    let Before::Unit {
        enabled,
        running,
        masked,
    } = *before
    else {
        return None;
    };
    if enabled.is_none() && running.is_none() && !masked {
        return None;
    }
    let state = if masked {
        Some(RunState::Masked)
    } else {
        running.map(|r| {
            if r {
                RunState::Running
            } else {
                RunState::Stopped
            }
        })
    };
    Some(Resource::Service(Service {
        unit: key.to_owned(),
        enabled,
        state,
        restart_on: Vec::new(),
        reload_on: Vec::new(),
        restart_command: None,
    }))
}

/// What was at `path` before driftless managed it, as a resource that puts
/// it back: a file with its bytes, owner, mode and label (a repo file put
/// back is a file), a directory, a symlink. `None` when what was there is
/// not of the path's form.
fn path_as_before(
    prior: &Prior,
    form: Form,
    path: String,
    keeps_content: bool,
) -> Option<Resource> {
    // What was there is put back with its own label, exactly.
    let parts = |label: &Option<String>| {
        label
            .as_deref()
            .map(SelinuxParts::of_context)
            .unwrap_or_default()
    };
    let meta = |m: &FsMeta, label: &Option<String>| Meta {
        owner: m.uid.to_string(),
        group: m.gid.to_string(),
        mode: m.mode,
        selinux: parts(label),
    };
    Some(match form {
        Form::File => {
            let Prior::File {
                object,
                meta: m,
                label,
            } = prior
            else {
                return None;
            };
            // Bytes driftless never owned are left as they are now.
            let (content, rule) = if keeps_content {
                (Content::default(), ContentRule::Untouched)
            } else {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(object, &mut sha).ok()?;
                (Content::stored(sha), ContentRule::Exact)
            };
            Resource::File(File {
                path,
                ensure: Ensure::Present,
                content,
                meta: meta(m, label),
                sensitive: false,
                rule,
                validate: None,
                source_url: None,
            })
        }
        Form::Dir => {
            let Prior::Dir { meta: m, label } = prior else {
                return None;
            };
            Resource::Directory(Directory {
                path,
                ensure: Ensure::Present,
                meta: meta(m, label),
            })
        }
        Form::Symlink => {
            let Prior::Symlink { target, label } = prior else {
                return None;
            };
            Resource::Symlink(Symlink {
                path,
                target: target.clone(),
                ensure: Ensure::Present,
                selinux: parts(label),
            })
        }
    })
}

impl Pruning {
    /// Puts each pruned resource's reason first on its changes, and the
    /// notes on the plan.
    pub(super) fn annotate(&self, plan: &mut Plan) {
        for c in &mut plan.changes {
            if let Some(why) = self.reasons.get(&c.resource) {
                c.reasons.insert(0, why.clone());
            }
        }
        plan.notes.extend(self.notes.iter().cloned());
    }
}

/// How each declared resource that the inventory does not hold yet is now,
/// before this converge changes it: the inventory's new entries, recorded
/// once the converge succeeds. Reads only what is new (nothing on a no-op).
pub(super) fn capture(
    store: &Store,
    root: &FsRoot,
    inv: &Inventory,
    prepared: &Prepared,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    // What was secret is never written down in plain text (read only
    // when an edit is first managed: the no-op reads nothing here).
    let secret = std::cell::OnceCell::new();
    for d in &prepared.desired.resources {
        if d.origin.file == NO_LONGER_DECLARED {
            continue;
        }
        let id = d.resource.id();
        if inv.entries.contains_key(&id.to_string()) {
            continue;
        }
        let prim = d.resource.lower();
        let keeps_content = keeps_content(&prim);
        let before = match prim {
            // Captured as a snapshot captures it: the engine's one record.
            Prim::Path(PathDecl { path, .. }) => before_path(store, root, &path)?,
            Prim::Archive(a) => before_path(store, root, &a.path)?,
            Prim::Unit(s) => match prepared.units.get(&s.unit) {
                Some(u) if u.loaded => Before::Unit {
                    enabled: Some(u.unit_file_state == "enabled"),
                    running: u.live.then(|| u.active_state == "active"),
                    masked: false,
                },
                found => Before::Unit {
                    enabled: None,
                    running: None,
                    masked: found.is_some_and(|u| u.unit_file_state == "masked"),
                },
            },
            Prim::Package(p) => Before::Package {
                installed: prepared.installed.contains(&p.name),
            },
            Prim::Edit(decl) => Before::Edit {
                path: decl.path.to_owned(),
                undo: converge::edit_undo(root, &decl, &|sha| {
                    secret.get_or_init(|| store.secret_contents()).contains(sha)
                })
                .with_context(|| format!("failed to read {} before editing it", decl.path))?,
            },
            // As observed before this converge changed anything.
            Prim::Setting(s) => match prepared.settings.get(&setting_key(s.domain, s.name)) {
                Some(obs) if obs.missing.is_none() => Before::Setting {
                    facets: obs.facets.clone(),
                },
                _ => Before::Untracked,
            },
            Prim::Group(_) | Prim::User(_) | Prim::Command(_) => Before::Untracked,
        };
        out.push(Entry {
            id,
            generation: None,
            prune: d.prune,
            before,
            keeps_content,
        });
    }
    Ok(out)
}

/// How the path `path` is before driftless manages it, as a snapshot
/// records it.
fn before_path(store: &Store, root: &FsRoot, path: &str) -> Result<Before> {
    Ok(
        match converge::prior_of(root, &store.objects()?, path)
            .with_context(|| format!("failed to read {path} before managing it"))?
        {
            Some(prior) => Before::Path(prior),
            None => Before::Untracked,
        },
    )
}

/// After a converge that succeeded: what it dropped is forgotten, what it
/// started managing is added (first managed by `generation`), and each
/// entry's `prune` follows its declaration.
pub(super) fn record(
    store: &Store,
    mut inv: Inventory,
    new: Vec<Entry>,
    desired: &DesiredState,
    generation: Option<u64>,
) -> Result<()> {
    let declared: BTreeMap<String, (bool, bool)> = desired
        .resources
        .iter()
        .filter(|d| d.origin.file != NO_LONGER_DECLARED)
        .map(|d| {
            let keeps = keeps_content(&d.resource.lower());
            (d.resource.id().to_string(), (d.prune, keeps))
        })
        .collect();
    let before = inv.clone();
    inv.entries.retain(|k, _| declared.contains_key(k));
    for e in new {
        inv.entries.insert(
            e.id.to_string(),
            Entry {
                generation: generation.or(e.generation),
                ..e
            },
        );
    }
    for (k, e) in &mut inv.entries {
        if let Some((prune, keeps)) = declared.get(k) {
            e.prune = *prune;
            e.keeps_content = *keeps;
        }
    }
    // The no-op writes nothing here.
    if inv != before {
        store.save_inventory(&inv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;

    fn entry(kind: Kind, key: &str, before: Before) -> Entry {
        Entry {
            id: ResourceId::new(kind, key),
            generation: Some(3),
            prune: true,
            before,
            keeps_content: false,
        }
    }

    #[test]
    fn what_was_there_is_put_back_and_what_driftless_made_is_removed() {
        let sha = hex::encode([7u8; 32]);
        let mut inv = Inventory::default();
        for e in [
            entry(Kind::File, "/etc/new", Before::Path(Prior::Missing)),
            entry(
                Kind::Repo,
                "base",
                Before::Path(Prior::File {
                    object: sha,
                    meta: FsMeta {
                        uid: 0,
                        gid: 0,
                        mode: 0o644,
                    },
                    label: None,
                }),
            ),
            entry(Kind::Package, "tool", Before::Package { installed: false }),
            entry(Kind::Package, "old", Before::Package { installed: true }),
        ] {
            inv.entries.insert(e.id.to_string(), e);
        }
        let mut desired = DesiredState::default();
        let p = dropped(&inv, &mut desired, false);
        let ids: Vec<String> = desired
            .resources
            .iter()
            .map(|d| d.resource.id().to_string())
            .collect();
        assert_eq!(ids, ["file:/etc/new", "file:/etc/yum.repos.d/base.repo"]);
        assert!(matches!(
            &desired.resources[1].resource,
            Resource::File(f) if f.ensure == Ensure::Present && f.content.sha256() == &[7u8; 32]
        ));
        assert_eq!(
            p.reasons[&ResourceId::new(Kind::File, "/etc/yum.repos.d/base.repo")],
            "no longer declared; put back as it was before driftless managed it (generation 3)"
        );
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].contains("package:tool is no longer declared"));
        let mut desired = DesiredState::default();
        dropped(&inv, &mut desired, true);
        assert!(
            desired
                .resources
                .iter()
                .any(|d| d.resource.id().to_string() == "package:tool")
        );
    }
}
