//! Merging the layers of a host's desired state (its roles in order, then
//! the host file): later roles may not contradict earlier ones, the host
//! file overrides any role; then the cross-checks of the merged result.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::diag::Diagnostic;
use super::kinds::{AccountKind, Decl, PrimKind};
use super::model::{Check, Ensure, ResourceId};
use super::parse::{CheckDecl, ParsedFile};

/// One merged resource: the winning declaration and the file it came from.
pub(super) struct Winner {
    pub(super) decl: Decl,
    pub(super) file: String,
}

/// Merges declarations: later roles may not contradict earlier ones, the
/// host file overrides any role. Returns the winners in first-declared
/// order.
/// `host_groups`: the groups of the host the state is for, when known
/// (to tell a user in a group that exists nowhere).
pub(super) fn merge(
    layers: &mut [(String, ParsedFile)],
    host_groups: Option<&BTreeSet<String>>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Winner> {
    let host_file = layers.last().map(|(f, _)| f.clone()).unwrap_or_default();
    let mut index: HashMap<ResourceId, usize> = HashMap::new();
    let mut winners: Vec<Winner> =
        Vec::with_capacity(layers.iter().map(|(_, p)| p.decls.len()).sum());
    let mut conflicts: BTreeMap<ResourceId, Diagnostic> = BTreeMap::new();
    for (file, parsed) in layers {
        let is_host = *file == host_file;
        // Moved, not copied: a host file's declarations are most of a
        // load's memory, and the layers do not need them after this.
        for decl in std::mem::take(&mut parsed.decls) {
            let id = decl.spec.id();
            let Some(&i) = index.get(&id) else {
                index.insert(id, winners.len());
                winners.push(Winner {
                    decl,
                    file: file.clone(),
                });
                continue;
            };
            let prev = &winners[i];
            if is_host && prev.file != *file {
                // The host file decides, even a conflict between roles,
                // and even when it agrees with one of them.
                conflicts.remove(&id);
                winners[i] = Winner {
                    decl,
                    file: file.clone(),
                };
            } else if prev.decl.spec == decl.spec {
                continue;
            } else if prev.file == *file {
                diags.push(decl.origin.diag(format!(
                    "{id} is declared twice in this file, differently (first at line {})",
                    prev.decl.origin.line
                )));
            } else {
                conflicts.entry(id.clone()).or_insert_with(|| {
                    decl.origin.diag(format!(
                        "{id} is declared differently by {} and {} (declare it in the host file to choose)",
                        prev.decl.origin, decl.origin
                    ))
                });
            }
        }
    }
    diags.extend(conflicts.into_values());
    check_paths(&winners, diags);
    check_references(&winners, diags);
    check_accounts(&winners, host_groups, diags);
    check_owners(&winners, diags);
    check_homes(&winners, diags);
    winners
}

/// A path a kind chose under a user's home by the usual layout
/// (`/home/USER/...`) must be in the home a declared user has: else the
/// file would go where nobody reads it (the host's /etc/passwd is checked
/// when planning).
fn check_homes(winners: &[Winner], diags: &mut Vec<Diagnostic>) {
    let homes: HashMap<&str, (&str, &Winner)> = winners
        .iter()
        .filter_map(|w| {
            let a = w.decl.spec.relations().account?;
            let home = a.home.filter(|_| a.ensure == Ensure::Present)?;
            Some((a.name, (home, w)))
        })
        .collect();
    for w in winners {
        let Some((user, path)) = w.decl.spec.relations().in_home_of else {
            continue;
        };
        if let Some((home, declared)) = homes.get(user)
            && !path.starts_with(&format!("{}/", home.trim_end_matches('/')))
        {
            diags.push(w.decl.origin.diag(format!(
                "{} is in {path}, not in {user}'s home {home} (declared at {}): set `path`",
                w.decl.spec.id(),
                declared.decl.origin
            )));
        }
    }
}

/// Nothing may belong to, or run as, an account the same state removes:
/// the converge would delete the account and leave its files to an
/// orphaned id, and every later plan would fail on the unknown owner.
fn check_owners(winners: &[Winner], diags: &mut Vec<Diagnostic>) {
    let mut users = HashSet::new();
    let mut groups = HashSet::new();
    for w in winners {
        if let Some(a) = w.decl.spec.relations().account
            && a.ensure == Ensure::Absent
        {
            match a.kind {
                AccountKind::User => users.insert(a.name),
                AccountKind::Group => groups.insert(a.name),
            };
        }
    }
    if users.is_empty() && groups.is_empty() {
        return;
    }
    for w in winners {
        let rel = w.decl.spec.relations();
        let id = w.decl.spec.id();
        let mut problem = |account: &str, name: &str, key: &str, left: &str| {
            diags.push(w.decl.origin.diag(format!(
                "{id} {left} {account} `{name}`, which is declared absent: removing the {account} would leave it to an orphaned id (declare the {account} present, or change `{key}`)"
            )));
        };
        if let Some(m) = rel.owned_by {
            if users.contains(m.owner.as_str()) {
                problem("user", &m.owner, "owner", "is owned by");
            }
            if groups.contains(m.group.as_str()) {
                problem("group", &m.group, "group", "belongs to");
            }
        }
        if let Some(u) = rel.runs_as.filter(|u| users.contains(u)) {
            problem("user", u, "user", "runs as");
        }
    }
}

/// Users and groups: no two share an id, and every group a user is in is
/// declared present or (when the host's groups are known) exists there.
fn check_accounts(
    winners: &[Winner],
    host_groups: Option<&BTreeSet<String>>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut uids: HashMap<u32, &Winner> = HashMap::new();
    let mut gids: HashMap<u32, &Winner> = HashMap::new();
    let mut groups: HashMap<&str, Ensure> = HashMap::new();
    for w in winners {
        let Some(a) = w.decl.spec.relations().account else {
            continue;
        };
        let (what, seen) = match a.kind {
            AccountKind::User => ("uid", &mut uids),
            AccountKind::Group => {
                groups.insert(a.name, a.ensure);
                ("gid", &mut gids)
            }
        };
        let Some(id) = a.id.filter(|_| a.ensure == Ensure::Present) else {
            continue;
        };
        if let Some(other) = seen.get(&id) {
            diags.push(w.decl.origin.diag(format!(
                "{what} {id} of {} is also the {what} of {} ({})",
                w.decl.spec.id(),
                other.decl.spec.id(),
                other.decl.origin
            )));
        } else {
            seen.insert(id, w);
        }
    }
    for w in winners {
        let rel = w.decl.spec.relations();
        for (g, origin) in rel.member_of.into_iter().zip(&w.decl.ref_origins) {
            if g.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let who = w.decl.spec.id();
            match groups.get(g) {
                Some(Ensure::Present) => {}
                Some(Ensure::Absent) => diags.push(
                    origin.diag(format!("{who} is in group `{g}`, which is declared absent")),
                ),
                None if host_groups.is_some_and(|h| !h.contains(g)) => {
                    diags.push(origin.diag(format!(
                        "{who} is in group `{g}`, which does not exist on this host and is not declared (add a [[group]] named `{g}`)"
                    )));
                }
                None => {}
            }
        }
    }
}

/// One path is one kind: a file and a directory cannot share a path,
/// nor a `[[file]]` and a `[[repo]]`'s repo file, nor a whole file and an
/// edit of part of it. Edits of parts of one file may share it.
fn check_paths(winners: &[Winner], diags: &mut Vec<Diagnostic>) {
    let mut by_path: HashMap<String, &Winner> = HashMap::new();
    let is_edit = |w: &Winner| w.decl.spec.id().kind.prim() == PrimKind::Edit;
    for w in winners {
        let Some(path) = w.decl.spec.path() else {
            continue;
        };
        if let Some(other) = by_path.get(&path) {
            if is_edit(w) && is_edit(other) {
                continue;
            }
            diags.push(w.decl.origin.diag(format!(
                "{} and {} ({}) both manage the path {path}",
                w.decl.spec.id(),
                other.decl.spec.id(),
                other.decl.origin
            )));
        } else {
            by_path.insert(path, w);
        }
    }
}

fn check_references(winners: &[Winner], diags: &mut Vec<Diagnostic>) {
    let declared: HashMap<ResourceId, ()> =
        winners.iter().map(|w| (w.decl.spec.id(), ())).collect();
    for w in winners {
        let refs = w.decl.spec.relations().refers_to;
        let own = w.decl.spec.id();
        let owner = &own.key;
        for ((key, r), origin) in refs.into_iter().zip(&w.decl.ref_origins) {
            if !declared.contains_key(r) {
                diags.push(origin.diag(format!(
                    "`{key}` of {owner} refers to {r}, which is not declared for this host"
                )));
            } else if *r == own {
                diags.push(origin.diag(format!("`{key}` of {owner} refers to itself")));
            }
        }
    }
}

pub(super) fn merge_checks(
    layers: &[(String, ParsedFile)],
    diags: &mut Vec<Diagnostic>,
) -> Vec<Check> {
    let host_file = layers.last().map(|(f, _)| f.clone()).unwrap_or_default();
    let mut out: Vec<(String, CheckDecl)> = Vec::new();
    let mut conflicts: BTreeMap<String, Diagnostic> = BTreeMap::new();
    for (file, parsed) in layers {
        let is_host = *file == host_file;
        for c in &parsed.checks {
            let name = &c.check.name;
            match out.iter_mut().find(|(_, o)| o.check.name == *name) {
                None => out.push((file.clone(), c.clone())),
                // As for resources, the host file decides.
                Some((f, o)) if is_host && *f != host_file => {
                    conflicts.remove(name);
                    *f = file.clone();
                    *o = c.clone();
                }
                Some((_, o)) if o.check == c.check => {}
                Some((_, o)) => {
                    conflicts.entry(name.clone()).or_insert_with(|| {
                        c.origin.diag(format!(
                            "check `{name}` is declared differently at {} and here (declare it in the host file to choose)",
                            o.origin
                        ))
                    });
                }
            }
        }
    }
    diags.extend(conflicts.into_values());
    out.into_iter().map(|(_, c)| c.check).collect()
}
