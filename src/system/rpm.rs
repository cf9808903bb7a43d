//! `rpm`: which builds of the declared packages are installed. One query
//! per converge, for the declared names only (a full `rpm -qa` on a real
//! RHEL host is much slower).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::command::Cmd;
use super::fsroot;
use crate::cancel::Cancel;
use crate::plan::observed::DbIdentity;
use crate::plan::rpmver::{Evr, Nevra};

/// The query format: one tab-separated line per installed build.
const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n";

/// `rpm`, with `--root` for any root but the running host.
fn base(root: &Path) -> Cmd {
    let cmd = Cmd::new("rpm");
    if root == Path::new("/") {
        cmd
    } else {
        cmd.arg("--root").arg(root)
    }
}

/// Installed builds of each queried name; a name that is not installed maps
/// to an empty list. Several builds may be installed at once (kernels).
pub(crate) type Installed = BTreeMap<String, Vec<Nevra>>;

/// Where rpm keeps its database: `/usr/lib/sysimage/rpm` since rpm 4.17
/// (Fedora, RHEL 10; `/var/lib/rpm` is then a link to it), `/var/lib/rpm`
/// before.
const DB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

/// The files a transaction writes, whatever the backend: sqlite and its
/// write-ahead log (RHEL 9 and later), ndb, BerkeleyDB (RHEL 8). Not the
/// sqlite `-shm` file, which readers touch.
const DB_FILES: [&str; 4] = [
    "rpmdb.sqlite",
    "rpmdb.sqlite-wal",
    "Packages.db",
    "Packages",
];

/// The identity of the rpm database under `root`: the stat of each of its
/// directories and files (`None` where one is missing). Every rpm or dnf
/// transaction, and a database rebuilt in place, changes it. `None` when
/// there is no database there at all (nothing to trust).
pub(crate) fn db_identity(root: &Path) -> Result<Option<DbIdentity>> {
    let mut out = Vec::new();
    let mut any = false;
    for dir in DB_DIRS {
        let at = root.join(dir);
        out.push((dir.to_owned(), fsroot::stat_key_of(&at)?));
        for file in DB_FILES {
            let mut key = fsroot::stat_key_of(&at.join(file))?;
            // rpm changes the write-ahead log's inode (not its bytes) on
            // every read: its ctime moves with each `rpm -q`. A write
            // moves its size or mtime, which are kept.
            if file == "rpmdb.sqlite-wal"
                && let Some(k) = key.as_mut()
            {
                k.ctime = (0, 0);
            }
            any |= key.is_some() && file != "rpmdb.sqlite-wal";
            out.push((format!("{dir}/{file}"), key));
        }
    }
    Ok(any.then_some(out))
}

/// Queries the rpm database under `root` (`/` for the running host).
pub(crate) fn query(root: &Path, names: &[String], cancel: &Cancel) -> Result<Installed> {
    if names.is_empty() {
        return Ok(Installed::new());
    }
    // `--`: a name is never an option.
    let cmd = base(root)
        .args(["-q", "--qf", QUERY_FORMAT, "--"])
        .args(names)
        .timeout(Duration::from_secs(120));
    let out = cmd
        .clone()
        .any_code()
        .run(cancel)
        .context("failed to query installed packages")?;
    check_exit(out.code, &out.stderr).with_context(|| format!("`{}` failed", cmd.argv()))?;
    Ok(parse_query(&out.stdout, names))
}

/// The installed builds that provide the capability `name` (`rpm -q
/// --whatprovides`): a name no package is called by can still be
/// installed, as a virtual provide (`module-init-tools` is kmod's).
pub(crate) fn what_provides(root: &Path, name: &str, cancel: &Cancel) -> Result<Vec<Nevra>> {
    let cmd = base(root)
        .args(["-q", "--whatprovides", "--qf", QUERY_FORMAT, "--"])
        .arg(name)
        .timeout(Duration::from_secs(120));
    let out = cmd
        .clone()
        .any_code()
        .run(cancel)
        .with_context(|| format!("failed to ask which package provides {name}"))?;
    check_exit(out.code, &out.stderr).with_context(|| format!("`{}` failed", cmd.argv()))?;
    Ok(parse_lines(&out.stdout).collect())
}

/// Every installed build under `root` (`rpm -qa`): the package set a
/// snapshot records and a rollback restores. Sorted.
pub(crate) fn query_all(root: &Path, cancel: &Cancel) -> Result<Vec<Nevra>> {
    let out = base(root)
        .args(["-qa", "--qf", QUERY_FORMAT])
        .timeout(Duration::from_secs(300))
        .run(cancel)
        .context("failed to list installed packages")?;
    let mut all: Vec<Nevra> = parse_lines(&out.stdout).collect();
    all.sort_by_key(ToString::to_string);
    Ok(all)
}

fn parse_lines(stdout: &str) -> impl Iterator<Item = Nevra> + '_ {
    stdout.lines().filter_map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch] = f.as_slice() else {
            return None;
        };
        Some(Nevra {
            name: (*name).to_owned(),
            evr: Evr {
                epoch: epoch.parse().ok()?,
                version: (*version).to_owned(),
                release: (*release).to_owned(),
            },
            arch: (*arch).to_owned(),
        })
    })
}

/// `rpm -q` exits with the number of queried packages that are not
/// installed ("package x is not installed" on stdout): that is an answer.
/// A real failure (a broken database) says so on stderr.
pub(crate) fn check_exit(code: i32, stderr: &str) -> Result<()> {
    if code != 0 && !stderr.trim().is_empty() {
        anyhow::bail!("exit code {code}: {}", super::command::tail(stderr, 12));
    }
    Ok(())
}

/// Parses `rpm -q --qf QUERY_FORMAT` output. Lines of other shapes ("package
/// x is not installed") are skipped; builds are kept only for the names
/// asked for (`rpm -q foo-1` would also match package `foo` version 1).
pub(crate) fn parse_query(stdout: &str, names: &[String]) -> Installed {
    let mut out: Installed = names.iter().map(|n| (n.clone(), Vec::new())).collect();
    for nevra in parse_lines(stdout) {
        if let Some(list) = out.get_mut(&nevra.name)
            && !list.contains(&nevra)
        {
            list.push(nevra);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_rpm_output() {
        let names: Vec<String> = ["dl-hello", "dl-tool", "dl-web"].map(String::from).to_vec();
        let out = parse_query(
            include_str!("../../tests/fixtures/commands/rpm-q-dnf4.txt"),
            &names,
        );
        assert_eq!(out["dl-hello"].len(), 1);
        assert_eq!(out["dl-hello"][0].to_string(), "dl-hello-1.0-1.noarch");
        assert!(out["dl-tool"].is_empty());
        assert_eq!(out["dl-web"][0].evr.to_string(), "1.0-1");
    }

    /// Regression: rpm exits with the count of missing packages (3 here),
    /// not 1, and that must not fail the observation.
    #[test]
    fn missing_packages_are_an_answer_and_stderr_is_a_failure() {
        assert!(check_exit(3, "").is_ok());
        assert!(check_exit(0, "").is_ok());
        let err = check_exit(1, "error: cannot open Packages database in /var/lib/rpm\n")
            .expect_err("db error");
        assert!(err.to_string().contains("cannot open Packages database"));
    }

    #[test]
    fn several_builds_epochs_and_foreign_names() {
        let names = vec!["kernel".to_owned(), "foo".to_owned()];
        let text = "kernel\t0\t5.14.0\t362.el9\tx86_64\nkernel\t0\t5.14.0\t427.el9\tx86_64\nfoo-1\t0\t2\t1\tnoarch\nfoo\t2\t1.0\t1\tnoarch\n";
        let out = parse_query(text, &names);
        assert_eq!(out["kernel"].len(), 2);
        assert_eq!(out["foo"].len(), 1);
        assert_eq!(out["foo"][0].evr.to_string(), "2:1.0-1");
    }
}
