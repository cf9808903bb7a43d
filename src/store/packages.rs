//! `<state_dir>/packages/`: a copy of every RPM driftless installs, and of
//! every installed RPM a transaction is about to replace, so that a rollback
//! can reinstall a build the repository no longer carries.
//!
//! Which files are kept is decided by the generations (see `generations`):
//! builds any kept snapshot or the current package set refers to. Where the
//! RPMs come from (dnf's cache, the repositories) is the engine's business;
//! this is only the directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::{debug, info};

use crate::plan::rpmver::Nevra;

/// The file name rpm and dnf give a build (no epoch in it).
pub(crate) fn file_name(n: &Nevra) -> String {
    format!(
        "{}-{}-{}.{}.rpm",
        n.name, n.evr.version, n.evr.release, n.arch
    )
}

/// The package store directory.
#[derive(Clone, Debug)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Where the RPM of `n` is (or would be) kept.
    pub fn path(&self, n: &Nevra) -> PathBuf {
        self.dir.join(file_name(n))
    }

    /// Whether the RPM file `name` is kept.
    pub fn contains(&self, name: &str) -> bool {
        self.dir.join(name).is_file()
    }

    /// Adds the RPM file `name`, written by `fill` into a temporary path
    /// first (flushed and renamed), so the store never holds a partial RPM.
    pub fn insert(&self, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        // Not recursive: the state directory itself is created by the
        // store, with its own mode.
        match std::fs::create_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("failed to create {}", self.dir.display()));
            }
            _ => {}
        }
        let dest = self.dir.join(name);
        let tmp = dest.with_extension("rpm.tmp");
        fill(&tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("failed to sync {}", tmp.display()))?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("failed to rename {} to {}", tmp.display(), dest.display()))
    }

    /// Whether the store holds any RPM.
    pub fn has_any(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".rpm")))
            })
            .unwrap_or(false)
    }

    /// Removes stored RPMs whose file name is not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<String>) -> Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", self.dir.display()))?;
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
}
