//! `facts.packages`: the rpm database answers the names templates read
//! (see `desired::package_facts` for why nothing is gathered up front).
//!
//! The database asked is the one under the root being converged, as the
//! planner's own package queries: a template that reads
//! `facts.packages.nginx` sees the nginx that `[[package]]` would see. A
//! root that does not exist has no packages (and `rpm --root` is not run
//! there: it would create the directory and a database in it); a host
//! without rpm has none either. A database rpm cannot read is a failure of
//! each name asked, which fails the template reading it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::desired::facts::{InstalledPackage, PackageBuild, PackageFact, PackageLookup, Packages};
use crate::plan::rpmver::Nevra;
use crate::system::command::CommandError;
use crate::system::rpm;

/// Looks packages up in the rpm database under a root.
#[derive(Debug)]
struct RpmLookup {
    root: PathBuf,
    /// The machine's architecture, preferred among builds of one EVR.
    arch: String,
    cancel: Cancel,
}

/// The packages of `root` (`/` for this host) for templates; `arch` is
/// the machine's (`facts.arch`).
pub(crate) fn under(root: &Path, arch: &str, cancel: &Cancel) -> Packages {
    Packages::lookup(Arc::new(RpmLookup {
        root: root.to_owned(),
        arch: arch.to_owned(),
        cancel: cancel.clone(),
    }))
}

impl PackageLookup for RpmLookup {
    fn lookup(&self, names: &[&str]) -> BTreeMap<String, PackageFact> {
        if !self.root.is_dir() {
            return BTreeMap::new();
        }
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        match rpm::query(&self.root, &names, &self.cancel) {
            Ok(installed) => installed
                .into_iter()
                .map(|(name, builds)| {
                    let fact = fact_of(builds, &self.arch);
                    (name, fact)
                })
                .collect(),
            Err(e) if no_rpm(&e) => {
                tracing::debug!("no rpm on this host: facts.packages is empty");
                BTreeMap::new()
            }
            Err(e) => {
                let e = format!("{e:#}");
                tracing::warn!(error = %e, "could not look up installed packages");
                names
                    .into_iter()
                    .map(|n| (n, PackageFact::Failed(e.clone())))
                    .collect()
            }
        }
    }
}

/// Whether `e` says there is no `rpm` program to run.
fn no_rpm(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<CommandError>(),
            Some(CommandError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
        )
    })
}

/// The fact of one name from its installed builds (none: not installed).
fn fact_of(mut builds: Vec<Nevra>, arch: &str) -> PackageFact {
    builds.sort_by(|a, b| a.evr.cmp(&b.evr).then_with(|| a.arch.cmp(&b.arch)));
    // The highest EVR; at the same EVR the machine's architecture, then
    // noarch, then the first by name (the sort put it first).
    let rank = |n: &Nevra| (n.arch == arch, n.arch == "noarch");
    let Some(chosen) = builds.iter().reduce(|best, n| {
        let better = n.evr > best.evr || (n.evr == best.evr && rank(n) > rank(best));
        if better { n } else { best }
    }) else {
        return PackageFact::NotInstalled;
    };
    PackageFact::Installed(InstalledPackage {
        chosen: build(chosen),
        builds: builds.iter().map(build).collect(),
    })
}

fn build(n: &Nevra) -> PackageBuild {
    PackageBuild {
        name: n.name.clone(),
        epoch: n.evr.epoch.to_string(),
        version: n.evr.version.clone(),
        release: n.evr.release.clone(),
        arch: n.arch.clone(),
        evr: n.evr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture is rpm 4.18's real output for these names, from a
    /// scratch database (`rpm --root DIR --initdb`) into which empty
    /// packages built with rpmbuild (`--target x86_64`/`i686`/`noarch`)
    /// were installed with `--justdb`: a multilib pair, two kernels, an
    /// epoch, and a name not installed.
    fn parsed(names: &[&str]) -> rpm::Installed {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        rpm::parse_query(
            include_str!("../../../tests/fixtures/commands/rpm-q-facts.txt"),
            &names,
        )
    }

    /// One field of every build.
    fn listed(p: &InstalledPackage, field: fn(&PackageBuild) -> &String) -> Vec<&str> {
        p.builds.iter().map(|b| field(b).as_str()).collect()
    }

    fn installed(fact: &PackageFact) -> &InstalledPackage {
        match fact {
            PackageFact::Installed(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn real_rpm_output_becomes_ansible_shaped_facts() {
        let mut q = parsed(&["nginx", "dl-hello", "httpd"]);
        let nginx = fact_of(q.remove("nginx").unwrap_or_default(), "x86_64");
        let nginx = installed(&nginx);
        assert_eq!(nginx.chosen.epoch, "2");
        assert_eq!(nginx.chosen.version, "1.20.1");
        assert_eq!(nginx.chosen.release, "14.el9_2.1");
        assert_eq!(nginx.chosen.arch, "x86_64");
        assert_eq!(nginx.chosen.evr, "2:1.20.1-14.el9_2.1");
        let hello = fact_of(q.remove("dl-hello").unwrap_or_default(), "x86_64");
        assert_eq!(installed(&hello).chosen.epoch, "0");
        assert_eq!(installed(&hello).chosen.evr, "2.0-1");
        // "package httpd is not installed"
        assert_eq!(
            fact_of(q.remove("httpd").unwrap_or_default(), "x86_64"),
            PackageFact::NotInstalled
        );
    }

    #[test]
    fn of_several_builds_the_newest_and_then_the_machines_arch_is_chosen() {
        let q = parsed(&["glibc", "kernel-core"]);
        let glibc = fact_of(q["glibc"].clone(), "x86_64");
        let glibc = installed(&glibc);
        assert_eq!(glibc.chosen.arch, "x86_64");
        assert_eq!(listed(glibc, |b| &b.arch), vec!["i686", "x86_64"]);
        // On a 32-bit machine the same pair gives the other one.
        let on_i686 = fact_of(q["glibc"].clone(), "i686");
        assert_eq!(installed(&on_i686).chosen.arch, "i686");
        // Kernels: the newest by rpm's ordering (10 > 9), all listed oldest
        // first.
        let kernel = fact_of(q["kernel-core"].clone(), "x86_64");
        let kernel = installed(&kernel);
        assert_eq!(kernel.chosen.evr, "5.14.0-427.10.1.el9_4");
        assert_eq!(
            listed(kernel, |b| &b.evr),
            vec!["5.14.0-427.9.1.el9_4", "5.14.0-427.10.1.el9_4"]
        );
    }

    #[test]
    fn a_missing_root_has_no_packages_and_creates_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("missing");
        let p = under(&root, "x86_64", &Cancel::new());
        assert_eq!(p.get("bash"), PackageFact::NotInstalled);
        assert!(!root.exists());
    }

    #[test]
    fn no_rpm_is_told_from_a_failing_rpm() {
        let spawn = anyhow::Error::new(CommandError::Spawn {
            argv: "rpm -q x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
        .context("failed to query installed packages");
        assert!(no_rpm(&spawn));
        let failed = anyhow::Error::new(CommandError::Failed {
            argv: "rpm -q x".into(),
            code: 1,
            tail: "error: cannot open Packages database".into(),
        });
        assert!(!no_rpm(&failed));
    }
}
