//! JSON files of the state directory, written atomically and durably.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::durable::{self, Perms};

/// Writes `value` as pretty JSON to `dir/name`, atomically and durably, 0600.
pub(super) fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).with_context(|| format!("failed to encode {name}"))?;
    bytes.push(b'\n');
    durable::write_file(dir, name, &bytes, Perms::private())
}

/// Reads JSON from `path`; `None` when it does not exist.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("failed to parse {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(readable(e, path)),
    }
}

/// An error reading `path`, with what to do when it is a permission
/// problem: the state directory is root's alone.
pub(super) fn readable(e: std::io::Error, path: &Path) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "cannot read {}: permission denied. The state directory is readable by root only: run as root (sudo driftless …)",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("failed to read {}", path.display()))
    }
}
