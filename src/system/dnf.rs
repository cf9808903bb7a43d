//! `dnf`: the one package transaction of a converge, the `latest` metadata
//! check, and the transaction id for the record.
//!
//! Both dnf 4 (RHEL 8/9/10) and dnf 5 (Fedora 41+, EL 11) are exercised
//! for real by the system tests (`system::dnf5` runs the package, rollback
//! and blame tests on dnf 5.4 and rpm 6.1); docs/packages-and-services.md
//! says where they differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tracing::info;

use super::command::{Cmd, CommandError};
use crate::cancel::Cancel;
use crate::plan::rpmver::Evr;

/// Which dnf is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// dnf 4 (Python).
    Dnf4,
    /// dnf 5 (C++).
    Dnf5,
}

/// One transaction's worth of requests. `install` holds specs (`name` or
/// `name-evr`): an exact spec installs, upgrades or downgrades to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Transaction {
    /// Specs to install at exactly that version (or any, for a bare name).
    pub install: Vec<String>,
    /// Names to remove.
    pub remove: Vec<String>,
}

impl Transaction {
    /// Whether there is nothing to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.install.is_empty() && self.remove.is_empty()
    }
}

/// The dnf of the target (only asked when a transaction or a `latest`
/// check is needed: a converged host runs no dnf at all).
pub(crate) fn detect(root: &Path, cancel: &Cancel) -> Result<Flavor> {
    let out = base(root)
        .arg("--version")
        .run(cancel)
        .context("failed to run dnf --version")?;
    parse_version(&out.stdout).with_context(|| {
        format!(
            "unrecognised `dnf --version` output: {}",
            out.stdout.lines().next().unwrap_or("")
        )
    })
}

/// dnf 5 prints `dnf5 version 5.2.x` (and newer releases a table starting
/// with `dnf5 version`); dnf 4 prints its bare version (`4.14.0`) first.
pub(crate) fn parse_version(stdout: &str) -> Option<Flavor> {
    let first = stdout.lines().next()?.trim();
    if first.starts_with("dnf5") {
        Some(Flavor::Dnf5)
    } else if first.starts_with("4.") {
        Some(Flavor::Dnf4)
    } else if first.starts_with("5.") {
        Some(Flavor::Dnf5)
    } else {
        None
    }
}

/// `dnf`, with `--installroot` for any root but the running host.
pub(crate) fn base(root: &Path) -> Cmd {
    let cmd = Cmd::new("dnf");
    if root == Path::new("/") {
        cmd
    } else {
        cmd.arg(format!("--installroot={}", root.display()))
    }
}

/// The command lines that carry out `tx`. dnf 5's `do` does removals and
/// installs in one transaction. dnf 4 has no such command (`dnf shell`
/// skips unknown packages and exits 0 on a failed transaction, so it cannot
/// be trusted): installs, upgrades and downgrades go in one `install`, and
/// removals, when there are any, in one `remove` before it.
pub(crate) fn command_lines(flavor: Flavor, tx: &Transaction) -> Vec<Vec<String>> {
    // An unreachable repository fails the transaction (RHEL's default, not
    // every distribution's): a declared repository is never skipped quietly.
    let common = [
        "-y",
        "--setopt=keepcache=True",
        "--setopt=skip_if_unavailable=False",
    ]
    .map(String::from);
    match flavor {
        Flavor::Dnf5 => {
            let mut argv: Vec<String> = common.to_vec();
            argv.push("do".into());
            if !tx.remove.is_empty() {
                argv.push("--action=remove".into());
                argv.extend(tx.remove.iter().cloned());
            }
            if !tx.install.is_empty() {
                argv.push("--action=install".into());
                argv.extend(tx.install.iter().cloned());
            }
            vec![argv]
        }
        Flavor::Dnf4 => {
            let mut out = Vec::new();
            if !tx.remove.is_empty() {
                let mut argv = common.to_vec();
                argv.push("remove".into());
                argv.extend(tx.remove.iter().cloned());
                out.push(argv);
            }
            if !tx.install.is_empty() {
                let mut argv = common.to_vec();
                argv.push("install".into());
                argv.extend(tx.install.iter().cloned());
                out.push(argv);
            }
            out
        }
    }
}

/// How long a transaction waits for another dnf or rpm (dnf-automatic, an
/// admin) to finish before giving up for this run.
pub(crate) const BUSY_WAIT: Duration = Duration::from_secs(300);

/// What dnf says when a package or build is not in the metadata it has.
const NOT_FOUND: [&str; 3] = [
    "Unable to find a match",
    "No match for argument",
    "No package matches",
];

/// Runs `tx`; the error carries dnf's own message. Returns the ids of the
/// transactions recorded in `dnf history`. Another dnf or rpm at work is
/// waited for (up to [`BUSY_WAIT`]). A package or build missing from the
/// cached metadata (published since dnf last looked) gets one retry with
/// the metadata refreshed.
pub(crate) fn apply(root: &Path, tx: &Transaction, cancel: &Cancel) -> Result<Vec<u64>> {
    if tx.is_empty() {
        return Ok(Vec::new());
    }
    super::process::wait_for_package_managers(BUSY_WAIT, cancel)?;
    let flavor = detect(root, cancel)?;
    let before = last_transaction_id(root, cancel)?;
    for argv in command_lines(flavor, tx) {
        let run = base(root).args(&argv).run(cancel);
        match run {
            Err(CommandError::Failed { tail, .. })
                if NOT_FOUND.iter().any(|s| tail.contains(s)) =>
            {
                info!(
                    "dnf found no match in its cached metadata; refreshing the metadata and trying once more"
                );
                base(root)
                    .arg("--refresh")
                    .args(&argv)
                    .run(cancel)
                    .context("dnf transaction failed (also with freshly downloaded metadata)")?;
            }
            other => {
                other.context("dnf transaction failed")?;
            }
        }
    }
    let after = last_transaction_id(root, cancel)?;
    let ids: Vec<u64> = match (before, after) {
        (Some(b), Some(a)) => (b + 1..=a).collect(),
        (None, Some(a)) => vec![a],
        _ => Vec::new(),
    };
    info!(transactions = ?ids, "dnf transaction done");
    Ok(ids)
}

/// The newest transaction id in `dnf history`, if any.
pub(crate) fn last_transaction_id(root: &Path, cancel: &Cancel) -> Result<Option<u64>> {
    let out = base(root)
        .args(["history", "list"])
        .run(cancel)
        .context("failed to read dnf history")?;
    Ok(parse_history_last_id(&out.stdout))
}

/// The first data row's id: dnf 4 prints `     7 | -y install … | …`, dnf 5
/// `      7 dnf5 install …` (newest first in both).
pub(crate) fn parse_history_last_id(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()
}

/// The newest available EVR of each name, from the enabled repositories: one
/// metadata query for all `latest` packages. Names no repository offers are
/// missing from the map.
pub(crate) fn latest(
    root: &Path,
    names: &[String],
    cancel: &Cancel,
) -> Result<BTreeMap<String, Evr>> {
    // dnf 5's --qf does not end records with a newline of its own; dnf 4's
    // does, and then prints an empty line too, which the parser skips. So
    // one format serves both and no `dnf --version` call is needed.
    let qf = "%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}\n";
    let out = base(root)
        .args([
            "-q",
            "repoquery",
            "--available",
            "--latest-limit=1",
            "--qf",
            qf,
        ])
        .args(names)
        .run(cancel)
        .context("failed to query the repositories for the latest versions")?;
    Ok(parse_latest(&out.stdout))
}

/// Parses the repoquery lines; for a name offered for several
/// architectures, keeps the newest EVR.
pub(crate) fn parse_latest(stdout: &str) -> BTreeMap<String, Evr> {
    let mut out: BTreeMap<String, Evr> = BTreeMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, _arch] = f.as_slice() else {
            continue;
        };
        let Ok(epoch) = epoch.parse() else { continue };
        let evr = Evr {
            epoch,
            version: (*version).to_owned(),
            release: (*release).to_owned(),
        };
        match out.get(*name) {
            Some(have) if *have >= evr => {}
            _ => {
                out.insert((*name).to_owned(), evr);
            }
        }
    }
    out
}

/// Where the repositories offer each of `specs` (`name-evr.arch`): one
/// `repoquery --location` line per build, a `file://` path or an http(s)
/// URL.
pub(crate) fn locations(root: &Path, specs: &[String], cancel: &Cancel) -> Result<Vec<String>> {
    let out = base(root)
        .args(["-q", "repoquery", "--location"])
        .args(specs)
        .timeout(Duration::from_secs(300))
        .run(cancel)
        .context("failed to locate RPMs for the package store")?;
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Where dnf 4 and dnf 5 keep downloaded packages (with `keepcache`).
const CACHE_DIRS: [&str; 2] = ["var/cache/dnf", "var/cache/libdnf5"];

/// The RPM file `name` in dnf's package cache under `root`, if there.
pub(crate) fn cached_rpm(root: &Path, name: &str) -> Option<PathBuf> {
    for cache in CACHE_DIRS {
        let Ok(repos) = std::fs::read_dir(root.join(cache)) else {
            continue;
        };
        for repo in repos.flatten() {
            let candidate = repo.path().join("packages").join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Refuses specs that dnf would read as options or globs: they come from
/// validated names and EVRs, so this is a last line of defence.
pub(crate) fn check_spec(spec: &str) -> Result<()> {
    if spec.starts_with('-') || spec.contains(['*', '?', '[', ' ']) {
        bail!("refusing package spec `{spec}`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/commands/");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIX}{name}")).expect("fixture")
    }

    #[test]
    fn detects_dnf4_and_dnf5() {
        assert_eq!(
            parse_version(&fixture("dnf4-version.txt")),
            Some(Flavor::Dnf4)
        );
        // dnf5 --version, as documented and shipped in Fedora 41 / RHEL 10.
        assert_eq!(
            parse_version("dnf5 version 5.2.8.1\ndnf5 plugin API version 2.0\n"),
            Some(Flavor::Dnf5)
        );
        assert_eq!(parse_version("yum 3.4.3\n"), None);
    }

    #[test]
    fn dnf4_history_and_repoquery() {
        assert_eq!(
            parse_history_last_id(&fixture("dnf4-history-list.txt")),
            Some(5)
        );
        let latest = parse_latest(&fixture("dnf4-repoquery.txt"));
        assert_eq!(latest["dl-hello"].to_string(), "3.0-1");
        assert_eq!(latest.len(), 2);
        assert_eq!(
            parse_history_last_id("ID     | Command line | Date\n----\n"),
            None
        );
    }

    #[test]
    fn dnf5_history_as_documented() {
        let text = "ID Command line                       Date and time       Action(s) Altered\n 3 dnf5 install dl-hello-2.0-1       2025-01-10 10:00:00                   1\n 2 dnf5 do --action=remove dl-tool    2025-01-10 09:00:00                   1\n";
        assert_eq!(parse_history_last_id(text), Some(3));
    }

    #[test]
    fn one_transaction_on_dnf5_and_remove_then_install_on_dnf4() {
        let tx = Transaction {
            install: vec!["dl-hello-1.0-1".into(), "dl-web".into()],
            remove: vec!["dl-tool".into()],
        };
        assert_eq!(
            command_lines(Flavor::Dnf5, &tx),
            vec![vec![
                "-y",
                "--setopt=keepcache=True",
                "--setopt=skip_if_unavailable=False",
                "do",
                "--action=remove",
                "dl-tool",
                "--action=install",
                "dl-hello-1.0-1",
                "dl-web"
            ]]
        );
        assert_eq!(
            command_lines(Flavor::Dnf4, &tx),
            vec![
                vec![
                    "-y",
                    "--setopt=keepcache=True",
                    "--setopt=skip_if_unavailable=False",
                    "remove",
                    "dl-tool"
                ],
                vec![
                    "-y",
                    "--setopt=keepcache=True",
                    "--setopt=skip_if_unavailable=False",
                    "install",
                    "dl-hello-1.0-1",
                    "dl-web"
                ],
            ]
        );
        let only_install = Transaction {
            install: vec!["a".into()],
            remove: vec![],
        };
        assert_eq!(command_lines(Flavor::Dnf4, &only_install).len(), 1);
    }

    #[test]
    fn specs_that_look_like_options_are_refused() {
        assert!(check_spec("--nogpgcheck").is_err());
        assert!(check_spec("ng*").is_err());
        assert!(check_spec("nginx-1:1.20.1-14.el9").is_ok());
    }
}
