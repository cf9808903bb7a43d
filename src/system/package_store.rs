//! `<state_dir>/packages/`: a copy of every RPM driftless installs, and of
//! every installed RPM a transaction is about to replace, so that a rollback
//! can reinstall a build the repository no longer carries.
//!
//! Which files are kept is decided by the generations (see `generations`):
//! builds any kept snapshot or the current package set refers to.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tracing::{debug, info, warn};

use crate::plan::rpmver::Nevra;

/// Where dnf 4 and dnf 5 keep downloaded packages (with `keepcache`).
const CACHE_DIRS: [&str; 2] = ["var/cache/dnf", "var/cache/libdnf5"];

/// The file name rpm and dnf give a build (no epoch in it).
pub fn file_name(n: &Nevra) -> String {
    format!(
        "{}-{}-{}.{}.rpm",
        n.name, n.evr.version, n.evr.release, n.arch
    )
}

/// The package store inside `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("packages")
}

/// Makes sure the store holds the RPM of each build in `builds`: from the
/// store itself, dnf's cache, or the location the repositories report
/// (`file://` copied, `http(s)://` downloaded). A build that cannot be found
/// anywhere is a warning: rollback to it will then need the repository.
pub fn save(root: &Path, state_dir: &Path, builds: &[Nevra]) -> Result<()> {
    let store = dir(state_dir);
    crate::state::ensure_state_dir(state_dir)?;
    std::fs::create_dir_all(&store)
        .with_context(|| format!("failed to create {}", store.display()))?;
    let mut missing = Vec::new();
    for n in builds {
        let dest = store.join(file_name(n));
        if dest.is_file() {
            continue;
        }
        match find_in_cache(root, &file_name(n)) {
            Some(src) => copy(&src, &dest)?,
            None => missing.push(n),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // One query for all the rest.
    let specs: Vec<String> = missing
        .iter()
        .map(|n| format!("{}-{}.{}", n.name, n.evr, n.arch))
        .collect();
    let out = super::dnf::base(root)
        .args(["-q", "repoquery", "--location"])
        .args(&specs)
        .timeout(Duration::from_secs(300))
        .run()
        .context("failed to locate RPMs for the package store")?;
    for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some(name) = line.rsplit('/').next().filter(|n| n.ends_with(".rpm")) else {
            continue;
        };
        let dest = store.join(name);
        if dest.is_file() {
            continue;
        }
        let result = match line.strip_prefix("file://") {
            Some(path) => copy(Path::new(path), &dest),
            None if line.starts_with("https://") || line.starts_with("http://") => {
                download(line, &dest)
            }
            None => continue,
        };
        if let Err(e) = result {
            warn!(
                rpm = name,
                error = format!("{e:#}"),
                "could not keep an RPM in the package store"
            );
        }
    }
    for n in missing {
        if !store.join(file_name(n)).is_file() {
            warn!(package = %n, "no RPM found for the package store; a rollback to it needs the repository");
        }
    }
    Ok(())
}

/// Whether the store holds any RPM.
pub fn has_any(state_dir: &Path) -> bool {
    std::fs::read_dir(dir(state_dir))
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".rpm"))))
        .unwrap_or(false)
}

/// Removes stored RPMs whose file name is not in `keep`.
pub fn retain(state_dir: &Path, keep: &BTreeSet<String>) -> Result<usize> {
    let store = dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&store) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", store.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rpm") && !keep.contains(&name) {
            debug!(rpm = %name, "removing from the package store");
            std::fs::remove_file(entry.path())
                .with_context(|| format!("failed to remove {}", entry.path().display()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        info!(removed, "package store garbage-collected");
    }
    Ok(removed)
}

fn find_in_cache(root: &Path, name: &str) -> Option<PathBuf> {
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

/// Copies through a temporary name, so the store never holds a partial RPM.
fn copy(src: &Path, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("rpm.tmp");
    std::fs::copy(src, &tmp)
        .with_context(|| format!("failed to copy {} to {}", src.display(), tmp.display()))?;
    finish(&tmp, dest)
}

fn download(url: &str, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("rpm.tmp");
    let mut file = std::fs::File::create(&tmp)
        .with_context(|| format!("failed to create {}", tmp.display()))?;
    let mut easy = curl::easy::Easy::new();
    easy.url(url)?;
    easy.follow_location(true)?;
    easy.fail_on_error(true)?;
    easy.timeout(Duration::from_secs(300))?;
    let mut write_error = None;
    {
        let mut transfer = easy.transfer();
        transfer.write_function(|data| match file.write_all(data) {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                write_error = Some(e);
                Ok(0)
            }
        })?;
        transfer
            .perform()
            .with_context(|| format!("failed to download {url}"))?;
    }
    if let Some(e) = write_error {
        bail!("failed to write {}: {e}", tmp.display());
    }
    finish(&tmp, dest)
}

fn finish(tmp: &Path, dest: &Path) -> Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("failed to sync {}", tmp.display()))?;
    std::fs::rename(tmp, dest)
        .with_context(|| format!("failed to rename {} to {}", tmp.display(), dest.display()))
}
