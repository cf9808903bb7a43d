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

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::desired::kinds::sysctl::{FILE, LIVE, file_of};
use crate::desired::kinds::{Domain, Facets};
use crate::plan::observed::{FsMeta, Observed, SettingObs};
use crate::system::fsroot::FsRoot;
use crate::system::selinux::{FileKind, Policy};

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
    }
}

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
pub(crate) fn set(root: &FsRoot, domain: Domain, name: &str, facets: &Facets) -> Result<()> {
    match domain {
        Domain::Sysctl => set_sysctl(root, name, facets),
    }
    .with_context(|| format!("failed to set {}:{name}", domain.as_str()))
}

/// Whether the running kernel has the parameter `name`.
pub(crate) fn sysctl_exists(name: &str) -> bool {
    proc_path(name).exists()
}

/// The `/proc/sys` file of a parameter written with dots
/// (`kernel.domainname`) or slashes (`net/ipv4/conf/eth0.1/rp_filter`:
/// then a dot belongs to a component, as sysctl reads it).
fn proc_path(name: &str) -> PathBuf {
    let rel = if name.contains('/') {
        name.to_owned()
    } else {
        name.replace('.', "/")
    };
    Path::new(PROC_SYS).join(rel)
}

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
                let text = std::fs::read_to_string(&proc)
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
                            None => root.read_file(&path)?,
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
            (FILE, Some(text)) => write_labelled(root, &file_of(name), text.as_bytes())?,
            (other, _) => bail!("a kernel parameter has no facet `{other}` (internal error)"),
        }
    }
    Ok(())
}

/// Writes a file driftless owns, root's and 0644, atomically and with the
/// policy's label. The plan creates missing directories above it; they
/// are made here too when a restore or pruning writes it without one.
fn write_labelled(root: &FsRoot, path: &str, bytes: &[u8]) -> Result<()> {
    let policy = match root.selinux_policy()? {
        Some(fc) => Some(Policy::open(&root.path().join(fc.trim_start_matches('/')))?),
        None => None,
    };
    let label = |p: &str, kind| match &policy {
        Some(policy) => policy.default_for(p, kind),
        None => Ok(None),
    };
    let mut missing = Vec::new();
    let mut dir = Path::new(path).parent();
    while let Some(d) = dir.and_then(Path::to_str).filter(|d| *d != "/") {
        if root.exists(d)? {
            break;
        }
        missing.push(d.to_owned());
        dir = Path::new(d).parent();
    }
    let dir_meta = FsMeta {
        uid: 0,
        gid: 0,
        mode: 0o755,
    };
    for d in missing.iter().rev() {
        root.create_dir(d, dir_meta, label(d, FileKind::Dir)?.as_deref())?;
    }
    let meta = FsMeta {
        uid: 0,
        gid: 0,
        mode: 0o644,
    };
    root.write_file(path, bytes, meta, label(path, FileKind::File)?.as_deref())
}
