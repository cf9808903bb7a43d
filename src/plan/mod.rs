//! The planner: desired state x observed host -> an ordered list of changes.
//!
//! Pure: it takes values and returns values, so it can be tested with many
//! cases in milliseconds, and `plan` can never change the host. Each change
//! carries everything needed to apply it and why it is needed.
//!
//! Order: the changes come in the phases of [`Phase`], the one place the
//! engine's order is written; the kinds' order (which kind's resources are
//! planned first) is their list in `desired::kinds`.

mod accounts;
pub(crate) mod archive;
mod change;
mod commands;
mod content;
mod files;
pub(crate) mod observed;
pub(crate) mod packages;
pub(crate) mod rpmver;
pub(crate) mod services;
mod settings;

use std::collections::BTreeSet;

use crate::desired::DesiredState;
use crate::desired::diag::Origin;
use crate::desired::model::{
    Kind, Package, PackageState, PathDecl, PathForm, Prim, Resource, ResourceId, Service,
};
pub(crate) use change::{Change, Marker, Op, Phase, Plan, PlanProblem, Validator, differing};
pub(crate) use commands::decide as command_due;
pub(crate) use content::{SecretContents, sha256};
use files::Planner;
use observed::{GuardRun, ObservedHost};
pub(crate) use packages::PackageChange;
pub(crate) use services::{ServicePlan, ServiceVerb};

/// The host paths the planner needs observed for `desired`.
pub(crate) fn paths_to_observe(desired: &DesiredState) -> Vec<String> {
    desired
        .resources
        .iter()
        .filter_map(|d| d.resource.path())
        .collect()
}

/// Computes the changes that bring the observed host to the desired state.
/// Every problem is reported, not only the first.
pub(crate) fn plan(desired: &DesiredState, host: &ObservedHost) -> Result<Plan, Vec<PlanProblem>> {
    plan_after(desired, host, &[])
}

/// Plans what remains after `done` (changes already applied in this
/// converge, such as the package transaction): they count for `restart_on`
/// and `reload_on` and for daemon-reload, as if planned together.
pub(crate) fn plan_after(
    desired: &DesiredState,
    host: &ObservedHost,
    done: &[Change],
) -> Result<Plan, Vec<PlanProblem>> {
    let mut p = Planner::new(
        desired,
        &host.accounts,
        host.policy_labels.as_ref(),
        &host.secret_contents,
    );
    let mut accounts = accounts::AccountSteps::default();
    for d in &desired.resources {
        let id = d.resource.id();
        let problem = |message: String| PlanProblem {
            resource: id.clone(),
            origin: d.origin.clone(),
            message,
        };
        let planned = match d.resource.lower() {
            Prim::Package(pkg) => plan_package(&mut p, pkg, &id, host),
            Prim::Group(g) => {
                accounts.group(g, &id, &host.accounts);
                Ok(())
            }
            Prim::User(u) => accounts.user(u, &id, &host.accounts, p.declared_groups()),
            Prim::Path(decl) => match host.paths.get(decl.path.as_ref()) {
                Some(observed) => p.path(&decl, &id, &d.origin, observed),
                None => Err(format!("{} was not observed (internal error)", decl.path)),
            },
            Prim::Edit(decl) => match host.paths.get(decl.path) {
                Some(observed) => p.edit(&decl, &id, observed),
                None => Err(format!("{} was not observed (internal error)", decl.path)),
            },
            Prim::Archive(a) => match host.paths.get(&a.path) {
                Some(observed) => {
                    let marker = host.archive_markers.get(&a.path).map(String::as_str);
                    p.archive(a, &id, observed, marker)
                }
                None => Err(format!("{} was not observed (internal error)", a.path)),
            },
            Prim::Setting(s) => p.setting_decl(&s, &id, host),
            // Planned after the paths, from the whole plan.
            Prim::Command(_) | Prim::Unit(_) => Ok(()),
        };
        if let Err(message) = planned {
            p.problem(problem(message));
        }
    }
    p.accounts(accounts.into_changes());
    let mut plan = p.finish()?;
    plan.notes.extend(repo_overrides(desired, host));
    // Commands run after the files and packages they may refresh on, and
    // before the services (which may restart on them).
    let runs = commands::plan_commands(
        desired.commands(),
        &host.guards,
        done.iter().chain(&plan.changes),
    );
    if !runs.is_empty() {
        plan.preview_notes.push(format!(
            "{} will run; what a command does is not undone if this converge rolls back",
            runs.iter()
                .map(|c| c.resource.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let unrunnable = unrunnable_guards(desired, host, &plan);
    if !unrunnable.is_empty() {
        return Err(unrunnable);
    }
    let guarded: Vec<String> = desired
        .commands()
        .filter(|c| c.creates.is_some() || c.unless.is_some() || c.onlyif.is_some())
        .map(|c| format!("command:{}", c.name))
        .collect();
    if !guarded.is_empty() {
        plan.preview_notes.push(format!(
            "the guards of {} are checked again when each is about to run, after what comes before it",
            guarded.join(", ")
        ));
    }
    plan.changes.extend(runs);
    let services = desired.services();
    let all: Vec<&Change> = done.iter().chain(&plan.changes).collect();
    let pending = plan
        .changes
        .iter()
        .any(|c| matches!(c.op, Op::Package { .. }));
    let sp = plan_services_for(&all, &services, host, pending);
    if !sp.problems.is_empty() {
        return Err(unit_problems(desired, sp.problems));
    }
    plan.notes.extend(sp.notes.iter().cloned());
    plan.preview_notes.extend(sp.preview_notes.iter().cloned());
    plan.changes.extend(service_changes(sp));
    Ok(plan)
}

/// What dnf 5's override files change in a declared repository: the
/// repo file driftless keeps is not what dnf uses, and nothing in it shows.
fn repo_overrides(desired: &DesiredState, host: &ObservedHost) -> Vec<String> {
    let mut notes = Vec::new();
    for d in &desired.resources {
        let Resource::Repo(repo) = &d.resource else {
            continue;
        };
        if repo.ensure != crate::desired::model::Ensure::Present {
            continue;
        }
        for o in host
            .repo_overrides
            .iter()
            .filter(|o| o.applies_to(&repo.name))
        {
            notes.push(format!(
                "repo:{} is overridden by dnf 5 in {} ([{}] {}): dnf uses that, not the declared {}; remove it with `dnf config-manager unsetopt {}.KEY` or declare the setting",
                repo.name,
                o.file,
                o.section,
                o.settings.join(", "),
                repo.path(),
                repo.name
            ));
        }
    }
    notes
}

/// The service planner's problems, each at the declaration of its unit.
fn unit_problems(desired: &DesiredState, problems: Vec<(String, String)>) -> Vec<PlanProblem> {
    problems
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
        .collect()
}

/// Guards that cannot be started now and that nothing this converge does
/// before them can provide: an absolute program that is not a file
/// declared for this host, with no package transaction to bring it. Those
/// are refused before any change; a guard script the converge installs
/// runs when its command is about to.
fn unrunnable_guards(desired: &DesiredState, host: &ObservedHost, plan: &Plan) -> Vec<PlanProblem> {
    let packages = plan
        .changes
        .iter()
        .any(|c| matches!(c.op, Op::Package { .. }));
    let declared: BTreeSet<String> = desired
        .prims()
        .filter_map(|p| match p {
            Prim::Path(PathDecl {
                path,
                ensure: crate::desired::model::Ensure::Present,
                form: PathForm::File { .. },
                ..
            }) => Some(path.into_owned()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for d in &desired.resources {
        let Prim::Command(c) = d.resource.lower() else {
            continue;
        };
        let Some(g) = host.guards.get(&c.name) else {
            continue;
        };
        for (key, run, argv) in [
            ("unless", &g.unless, &c.unless),
            ("onlyif", &g.onlyif, &c.onlyif),
        ] {
            let (Some(GuardRun::NotRunnable(why)), Some(program)) =
                (run, argv.as_ref().and_then(|a| a.first()))
            else {
                continue;
            };
            if packages || !program.starts_with('/') || declared.contains(program) {
                continue;
            }
            out.push(PlanProblem {
                resource: d.resource.id(),
                origin: d.origin.clone(),
                message: format!(
                    "the `{key}` guard of command:{} cannot run ({why}), and nothing declared for this host provides {program}",
                    c.name
                ),
            });
        }
    }
    out
}

/// Plans one declared package into `p`: a step of the one transaction, a
/// note, or the reason it cannot be planned.
fn plan_package(
    p: &mut Planner<'_>,
    pkg: &Package,
    id: &ResourceId,
    host: &ObservedHost,
) -> Result<(), String> {
    let installed = host.packages.get(&pkg.name).map_or(&[][..], Vec::as_slice);
    // A name an installed package provides counts as installed, as dnf,
    // Ansible and Puppet count it (versions and `latest` are about
    // packages by name).
    if installed.is_empty()
        && pkg.state == PackageState::Present(None)
        && host.provided.get(&pkg.name).is_some_and(|b| !b.is_empty())
    {
        return Ok(());
    }
    let decided = packages::decide(
        pkg,
        installed,
        host.latest.get(&pkg.name),
        p.repo_files_pending(),
        host.latest_error.as_deref(),
    );
    let step = |(change, reason): (PackageChange, String)| {
        Change::new(
            id,
            Op::Package {
                name: pkg.name.clone(),
                change,
            },
            vec![reason],
        )
    };
    match decided? {
        packages::Decision::AsDeclared => {}
        // An image-mode host gets its packages with its image: dnf cannot
        // change /usr there.
        packages::Decision::Change(..) | packages::Decision::AfterRepoFiles { .. }
            if host.image_mode =>
        {
            return Err(format!(
                "this is an image-mode host (bootc or rpm-ostree: /run/ostree-booted exists, /usr is read-only): package {} cannot be changed with dnf; build it into the image (bootc) or layer it with rpm-ostree",
                pkg.name
            ));
        }
        packages::Decision::Change(change, reason) => p.package(step((change, reason))),
        packages::Decision::AfterRepoFiles { install, note } => {
            if let Some(i) = install {
                p.package(step(i));
            }
            p.note(note);
        }
    }
    Ok(())
}

/// Plans the services against `units`, given the non-service changes.
/// `changes` are all changes of this converge (applied or planned);
/// `packages_pending` says whether a package transaction is still to come
/// (only that can explain a unit that does not exist yet).
pub(crate) fn plan_services_for(
    changes: &[&Change],
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
        &host.runtime_stale,
        &paths,
        packages_pending,
        host.live,
    )
}

/// The service plan as changes, in apply order.
pub(crate) fn service_changes(sp: ServicePlan) -> Vec<Change> {
    let reload = sp.daemon_reload.map(|why| {
        Change::new(
            &ResourceId::new(Kind::Service, "daemon-reload"),
            Op::DaemonReload,
            vec![why],
        )
    });
    reload
        .into_iter()
        .chain(sp.actions.into_iter().map(|(unit, verb, why)| {
            Change::new(
                &ResourceId::new(Kind::Service, &unit),
                Op::Service { unit, verb },
                vec![why],
            )
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::observed::{Accounts, FsMeta, Observed};
    use super::*;
    use crate::desired::model::{
        Declared, Directory, Ensure, File, Meta, Package, PackageState, SelinuxParts, Symlink,
    };

    fn origin() -> Origin {
        Origin {
            file: "hosts/h.toml".into(),
            line: 1,
            column: 1,
        }
    }

    fn meta(mode: u32) -> Meta {
        Meta::new("root", "root", mode)
    }

    fn desired(resources: Vec<Resource>) -> DesiredState {
        DesiredState {
            resources: resources
                .into_iter()
                .map(|resource| Declared {
                    resource,
                    prune: true,
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
            content: content.into(),
            meta: meta(0o644),
            sensitive: false,
            rule: crate::desired::model::ContentRule::Exact,
            validate: None,
            source_url: None,
        })
    }

    fn observed_file(content: &str, mode: u32) -> Observed {
        Observed::File {
            label: None,
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
        use crate::desired::kinds::repo::{Repo, RepoLocation};
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
            label: None,
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
            label: None,
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
            selinux: SelinuxParts::default(),
        });
        let d = desired(vec![link]);
        let same = host(&[(
            "/l",
            Observed::Symlink {
                target: "/new".into(),
                label: None,
            },
        )]);
        assert!(plan(&d, &same).expect("plan").is_empty());
        let old = host(&[(
            "/l",
            Observed::Symlink {
                target: "/old".into(),
                label: None,
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
