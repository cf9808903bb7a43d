//! Host settings ([`Prim::Setting`](crate::desired::kinds::Prim)): values
//! the system keeps that are not files driftless owns. One function per
//! domain reads a setting's facets, one sets them; [`read`] and [`set`]
//! are the one `match` over the domains.
//!
//! A kernel parameter ([`Domain::Sysctl`]) has two facets: its live value,
//! read and written under the running kernel's `/proc/sys` (no
//! subprocess: a no-op is one small read), and the content of the file
//! under `/etc/sysctl.d` that persists it, written atomically and labelled
//! through the root. With `--root`, the running kernel is not the root's:
//! the live value is left alone (the plan says so) and only the file is
//! managed; whether the kernel knows the parameter is still asked of the
//! running kernel (a name it lacks is most likely a typo).
//!
//! An alternative ([`Domain::Alternative`]) has one facet, its choice:
//! `auto`, or the path chosen by hand. It is read from the administrative
//! file (`/var/lib/alternatives/NAME` on RHEL, `/var/lib/dpkg/alternatives/
//! NAME` on Debian: its first line is the mode, and it lists the registered
//! paths) and the link `/etc/alternatives/NAME`, without a subprocess; it
//! is set with `alternatives` (RHEL, from chkconfig) or
//! `update-alternatives` (Debian), whichever the host has, `--set NAME
//! PATH` or `--auto NAME`. Both tools work on the running host only: with
//! `--root` an alternative is left alone, and the plan says so.

use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cancel::Cancel;
use crate::desired::kinds::alternative::{AUTO, CHOICE};
use crate::desired::kinds::sysctl::{FILE, LIVE, file_of};
use crate::desired::kinds::{Domain, Facets};
use crate::plan::observed::{Observed, SettingObs};
use crate::system::command::Cmd;
use crate::system::fsroot::FsRoot;

/// Where the running kernel's parameters are.
const PROC_SYS: &str = "/proc/sys";

/// Reads the facets `facets` of the setting `name` of `domain`.
pub(crate) fn read(
    root: &FsRoot,
    domain: Domain,
    name: &str,
    facets: &[&str],
) -> Result<SettingObs> {
    match domain {
        Domain::Sysctl => read_sysctl(root, name, facets),
        Domain::Alternative => read_alternative(root, name, facets),
        Domain::Mount => super::mounts::read(root, name, facets),
    }
    .with_context(|| format!("failed to read {}:{name}", domain.as_str()))
}

/// The setting `name` of `domain` on a root that does not exist yet (a
/// dry run into a fresh directory): every facet absent but what only the
/// running host has.
pub(crate) fn read_without_root(domain: Domain, name: &str, facets: &[&str]) -> SettingObs {
    match domain {
        Domain::Sysctl => {
            let mut obs = SettingObs::default();
            if !sysctl_exists(name) {
                obs.missing = Some(missing_sysctl(name));
                return obs;
            }
            for facet in facets {
                if *facet == LIVE {
                    obs.not_here.push((LIVE.to_owned(), NOT_LIVE.to_owned()));
                } else {
                    // Nothing is there: every directory above the file.
                    let path = file_of(name);
                    obs.missing_parents = path
                        .match_indices('/')
                        .skip(1)
                        .map(|(i, _)| path[..i].to_owned())
                        .collect();
                    obs.facets.push(((*facet).to_owned(), None));
                }
            }
            obs
        }
        Domain::Alternative => {
            let mut obs = SettingObs::default();
            for facet in facets {
                obs.not_here
                    .push(((*facet).to_owned(), NOT_LIVE_ALTERNATIVE.to_owned()));
            }
            obs
        }
        // No fstab yet; nothing mounted there on this root.
        Domain::Mount => {
            let mut obs = SettingObs::default();
            for facet in facets {
                if *facet == crate::desired::kinds::mount::MOUNTED {
                    obs.not_here
                        .push(((*facet).to_owned(), super::mounts::NOT_LIVE.to_owned()));
                } else {
                    obs.facets.push(((*facet).to_owned(), None));
                }
            }
            obs
        }
    }
}

/// Why an alternative is left alone with `--root`.
const NOT_LIVE_ALTERNATIVE: &str =
    "alternatives are switched on the running host only, not with --root";

/// Why a kernel parameter's live value is left alone with `--root`.
const NOT_LIVE: &str = "the live value is applied on the running host only, not with --root";

/// Why the setting of a kernel parameter the kernel lacks cannot be made.
fn missing_sysctl(name: &str) -> String {
    format!(
        "the running kernel has no parameter `{name}` ({} does not exist)",
        proc_path(name).display()
    )
}

/// Sets the facets `facets` of the setting `name` of `domain`; a facet the
/// root cannot hold (the live value with `--root`) is left alone.
pub(crate) fn set(
    root: &FsRoot,
    domain: Domain,
    name: &str,
    facets: &Facets,
    cancel: &Cancel,
) -> Result<()> {
    match domain {
        Domain::Sysctl => set_sysctl(root, name, facets),
        Domain::Alternative => set_alternative(root, name, facets, cancel),
        Domain::Mount => super::mounts::set(root, name, facets, cancel),
    }
    .with_context(|| format!("failed to set {}:{name}", domain.as_str()))
}

/// Whether the running kernel has the parameter `name`.
pub(crate) fn sysctl_exists(name: &str) -> bool {
    proc_path(name).exists()
}

/// The `/proc/sys` file of a parameter, by its canonical name (dotted, a
/// dot inside a component written as a slash: `net.ipv4.conf.eth0/1.rp_filter`
/// is `net/ipv4/conf/eth0.1/rp_filter`) or a slashed one an older version
/// recorded.
fn proc_path(name: &str) -> PathBuf {
    Path::new(PROC_SYS).join(crate::desired::kinds::sysctl::proc_relative(name))
}

/// The facets of the kernel parameter `name`: its live value (on the
/// running host) and its persisting file's content.
fn read_sysctl(root: &FsRoot, name: &str, facets: &[&str]) -> Result<SettingObs> {
    let mut obs = SettingObs::default();
    let proc = proc_path(name);
    if !proc.exists() {
        obs.missing = Some(missing_sysctl(name));
        return Ok(obs);
    }
    for facet in facets {
        let value = match *facet {
            LIVE if !root.is_live() => {
                obs.not_here.push((LIVE.to_owned(), NOT_LIVE.to_owned()));
                continue;
            }
            LIVE => {
                let text = super::read_text_at_most(&proc, super::SMALL_FILE_MAX)
                    .with_context(|| format!("failed to read {}", proc.display()))?;
                Some(crate::desired::kinds::sysctl::normalise(&text))
            }
            FILE => {
                let path = file_of(name);
                match root.observe(&path)? {
                    Observed::Missing { missing_parents } => {
                        obs.missing_parents = missing_parents;
                        None
                    }
                    Observed::File { content, .. } => {
                        let bytes = match content {
                            Some(c) => c,
                            None => root.read_config(&path)?,
                        };
                        Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    other => bail!(
                        "{} is {}; refusing to replace it",
                        root.display(&path),
                        other.kind_word()
                    ),
                }
            }
            other => bail!("a kernel parameter has no facet `{other}` (internal error)"),
        };
        obs.facets.push(((*facet).to_owned(), value));
    }
    Ok(obs)
}

/// Writes the facets of the kernel parameter `name`: the file (written or
/// removed) and the live value (on the running host only).
fn set_sysctl(root: &FsRoot, name: &str, facets: &Facets) -> Result<()> {
    for (facet, value) in facets {
        match (facet.as_str(), value) {
            // A value not recorded (the kernel lacked the parameter) is
            // left alone; so is the live value of another root.
            (LIVE, None) => {}
            (LIVE, Some(_)) if !root.is_live() => {}
            (LIVE, Some(v)) => {
                let proc = proc_path(name);
                std::fs::write(&proc, format!("{v}\n"))
                    .with_context(|| format!("failed to write {v:?} to {}", proc.display()))?;
            }
            (FILE, None) => root.remove_file(&file_of(name))?,
            (FILE, Some(text)) => root.write_labelled(&file_of(name), text.as_bytes())?,
            (other, _) => bail!("a kernel parameter has no facet `{other}` (internal error)"),
        }
    }
    Ok(())
}

/// The administrative directories of the alternatives tools: RHEL's, then
/// Debian's.
const ALTERNATIVES_ADMIN: [&str; 2] = ["/var/lib/alternatives", "/var/lib/dpkg/alternatives"];

/// Where the alternatives' links are.
const ALTERNATIVES_LINKS: &str = "/etc/alternatives";

/// The choice of the alternative `name` (on the running host only).
fn read_alternative(root: &FsRoot, name: &str, facets: &[&str]) -> Result<SettingObs> {
    if !root.is_live() {
        return Ok(read_without_root(Domain::Alternative, name, facets));
    }
    let mut obs = SettingObs::default();
    let mut admin = None;
    for dir in ALTERNATIVES_ADMIN {
        let path = format!("{dir}/{name}");
        if let Observed::File { .. } = root.observe(&path)? {
            admin = Some(path);
            break;
        }
    }
    let Some(admin) = admin else {
        obs.missing = Some(format!(
            "no alternative `{name}` is registered on this host (neither {} exists)",
            ALTERNATIVES_ADMIN
                .map(|d| format!("{d}/{name}"))
                .join(" nor ")
        ));
        return Ok(obs);
    };
    let text = String::from_utf8_lossy(&root.read_config(&admin)?).into_owned();
    let (mode, choices) = parse_admin(&text);
    obs.choices = choices;
    for facet in facets {
        if *facet != CHOICE {
            bail!("an alternative has no facet `{facet}` (internal error)");
        }
        let choice = if mode == AUTO {
            Some(AUTO.to_owned())
        } else {
            match root.observe(&format!("{ALTERNATIVES_LINKS}/{name}"))? {
                Observed::Symlink { target, .. } => Some(target),
                _ => None,
            }
        };
        obs.facets.push((CHOICE.to_owned(), choice));
    }
    Ok(obs)
}

/// The mode (first line) of an alternatives administrative file and the
/// paths registered in it: after the first empty line, each alternative
/// is its path followed by its priority (a number, on RHEL possibly with
/// a family), then the paths of its followers.
fn parse_admin(text: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mode = lines.first().copied().unwrap_or_default().to_owned();
    let start = lines
        .iter()
        .position(|l| l.is_empty())
        .map_or(lines.len(), |i| i + 1);
    let is_priority = |l: &str| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.trim_start_matches('-').parse::<i64>().is_ok())
    };
    let mut choices = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start) {
        if line.starts_with('/') && lines.get(i + 1).is_some_and(|next| is_priority(next)) {
            choices.push((*line).to_owned());
        }
    }
    (mode, choices)
}

/// Chooses for the alternative `name` (on the running host only).
fn set_alternative(root: &FsRoot, name: &str, facets: &Facets, cancel: &Cancel) -> Result<()> {
    if !root.is_live() {
        return Ok(());
    }
    // RHEL's chkconfig `alternatives`, else Debian's `update-alternatives`
    // (RHEL has both names; they take the same verbs).
    let program = if root.exists("/usr/sbin/alternatives")? {
        "alternatives"
    } else {
        "update-alternatives"
    };
    for (facet, value) in facets {
        let args: Vec<&str> = match (facet.as_str(), value.as_deref()) {
            (CHOICE, None) => continue,
            (CHOICE, Some(AUTO)) => vec!["--auto", name],
            (CHOICE, Some(path)) => vec!["--set", name, path],
            (other, _) => bail!("an alternative has no facet `{other}` (internal error)"),
        };
        Cmd::new(program)
            .args(args)
            .timeout(Duration::from_secs(60))
            .run(cancel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_files_of_both_tools_give_the_mode_and_the_registered_paths() {
        // Debian's update-alternatives, with a follower.
        let debian = "manual\n/usr/local/bin/dl-pager\ndl-pager.1\n/usr/local/man/dl-pager.1\n\n/usr/bin/cat\n10\n/usr/share/man/man1/cat.1.gz\n/usr/bin/tac\n20\n\n\n";
        assert_eq!(
            parse_admin(debian),
            (
                "manual".to_owned(),
                vec!["/usr/bin/cat".to_owned(), "/usr/bin/tac".to_owned()]
            )
        );
        // RHEL's alternatives (chkconfig), without followers.
        let rhel = "auto\n/usr/bin/editor\n\n/usr/bin/vi\n50\n/usr/bin/nano\n40 @fam\n";
        assert_eq!(
            parse_admin(rhel),
            (
                "auto".to_owned(),
                vec!["/usr/bin/vi".to_owned(), "/usr/bin/nano".to_owned()]
            )
        );
    }
}
