//! `<state_dir>/packages/`: a copy of every RPM driftless installs, so that
//! a rollback can reinstall a build the repository no longer carries.
//!
//! Kept: the builds installed now and the ones they replaced in the last
//! transaction (one step back). Generations will widen this window.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::{debug, info};

use super::command::Cmd;
use super::rpm::Installed;
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

/// Copies the builds of `after` that are new into the store, and removes
/// stored builds that are neither in `before` nor in `after`.
pub fn keep(root: &Path, state_dir: &Path, before: &Installed, after: &Installed) -> Result<()> {
    let store = dir(state_dir);
    crate::state::ensure_state_dir(state_dir)?;
    std::fs::create_dir_all(&store)
        .with_context(|| format!("failed to create {}", store.display()))?;
    let all = |m: &Installed| -> Vec<Nevra> { m.values().flatten().cloned().collect() };
    let mut missing = Vec::new();
    for n in all(after) {
        let name = file_name(&n);
        let dest = store.join(&name);
        if dest.exists() {
            continue;
        }
        match find_in_cache(root, &name) {
            Some(src) => copy(&src, &dest)?,
            None => missing.push(n),
        }
    }
    if !missing.is_empty() {
        // Packages from local (file://) repositories are not cached by dnf:
        // ask where they are, in one call.
        let specs: Vec<String> = missing
            .iter()
            .map(|n| format!("{}-{}.{}", n.name, n.evr, n.arch))
            .collect();
        let out = Cmd::new("dnf")
            .args(if root == Path::new("/") {
                vec![]
            } else {
                vec![format!("--installroot={}", root.display())]
            })
            .args(["-q", "repoquery", "--location"])
            .args(&specs)
            .run()
            .context("failed to locate the installed RPMs")?;
        for line in out.stdout.lines() {
            if let Some(path) = line.trim().strip_prefix("file://") {
                let src = Path::new(path);
                if let Some(name) = src.file_name() {
                    copy(src, &store.join(name))?;
                }
            }
        }
    }
    let keep: BTreeSet<String> = all(before)
        .iter()
        .chain(all(after).iter())
        .map(file_name)
        .collect();
    for entry in
        std::fs::read_dir(&store).with_context(|| format!("failed to list {}", store.display()))?
    {
        let entry = entry.with_context(|| format!("failed to list {}", store.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rpm") && !keep.contains(&name) {
            debug!(rpm = %name, "removing from the package store");
            std::fs::remove_file(entry.path())
                .with_context(|| format!("failed to remove {}", entry.path().display()))?;
        }
    }
    info!(store = %store.display(), kept = keep.len(), "package store updated");
    Ok(())
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
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("failed to sync {}", tmp.display()))?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("failed to rename {} to {}", tmp.display(), dest.display()))
}
