//! Filling the package store: the RPM of every build a transaction installs
//! or may replace, so a rollback can reinstall it when the repository no
//! longer carries it.

use std::path::Path;

use anyhow::{Context, Result};
use tracing::warn;

use crate::cancel::Cancel;
use crate::plan::rpmver::Nevra;
use crate::source::download;
use crate::store::PackageStore;
use crate::store::packages::file_name;
use crate::system::dnf;

/// Makes sure the store holds the RPM of each build in `builds`: from the
/// store itself, dnf's cache under `root`, or the location the repositories
/// report (`file://` copied, `http(s)://` downloaded). A build that cannot
/// be found anywhere is a warning: rollback to it will then need the
/// repository.
pub(crate) fn keep(
    root: &Path,
    store: &PackageStore,
    builds: &[Nevra],
    cancel: &Cancel,
) -> Result<()> {
    let mut missing = Vec::new();
    for n in builds {
        let name = file_name(n);
        if store.contains(&name) {
            continue;
        }
        match dnf::cached_rpm(root, &name) {
            Some(src) => store.insert(&name, |tmp| copy(&src, tmp))?,
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
    for line in dnf::locations(root, &specs, cancel)? {
        let Some(name) = line.rsplit('/').next().filter(|n| n.ends_with(".rpm")) else {
            continue;
        };
        if store.contains(name) {
            continue;
        }
        let result = match line.strip_prefix("file://") {
            Some(path) => store.insert(name, |tmp| copy(Path::new(path), tmp)),
            None if line.starts_with("https://") || line.starts_with("http://") => {
                store.insert(name, |tmp| download::to_file(&line, tmp, cancel))
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
        if !store.contains(&file_name(n)) {
            warn!(package = %n, "no RPM found for the package store; a rollback to it needs the repository");
        }
    }
    Ok(())
}

fn copy(src: &Path, dest: &Path) -> Result<()> {
    std::fs::copy(src, dest)
        .map(|_| ())
        .with_context(|| format!("failed to copy {} to {}", src.display(), dest.display()))
}
