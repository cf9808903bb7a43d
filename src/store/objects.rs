//! `<state_dir>/objects/`: file contents keyed by SHA-256, each stored once.
//!
//! Snapshots and the last-good desired state refer to contents by hash, so
//! ten generations of an unchanged 1 MiB file cost 1 MiB. Objects are
//! written atomically (temporary file, fsync, rename, fsync of the
//! directory) and verified on read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::plan::sha256;

/// The object store of a state directory.
pub struct Objects {
    dir: PathBuf,
}

impl Objects {
    /// The object directory `dir` for reading; nothing is created.
    pub(super) fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Opens (creating) the object directory `dir`.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Stores `bytes`; returns their hex SHA-256.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let sha = sha256(bytes);
        let ids = self.put_all([(&sha, Some(bytes))])?;
        ids.into_iter()
            .next()
            .with_context(|| format!("failed to store object {}", hex::encode(sha)))
    }

    /// Stores many contents, given with their SHA-256, with the writes
    /// batched ([`crate::durable::Batch`]); returns their hex ids in order.
    /// A content already stored, or twice in `items`, is written once; one
    /// given without its bytes (read back from this store) must be here.
    pub fn put_all<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a [u8; 32], Option<&'a [u8]>)>,
    ) -> Result<Vec<String>> {
        use crate::durable::{BATCH_MAX, Batch, Perms};
        use std::os::fd::AsFd;
        let dir = nix::fcntl::open(
            &self.dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("failed to open {}", self.dir.display()))?;
        let mut ids = Vec::new();
        let mut staged = BTreeSet::new();
        let mut batch = Batch::default();
        for (sha, bytes) in items {
            let id = hex::encode(sha);
            if !staged.contains(&id) && !self.dir.join(&id).is_file() {
                let Some(bytes) = bytes else {
                    bail!("object {id} is missing from {}", self.dir.display());
                };
                let what = format!("object {id}");
                batch.stage(dir.as_fd(), &id, bytes, Perms::private(), None, what)?;
                staged.insert(id.clone());
                if batch.len() >= BATCH_MAX {
                    std::mem::take(&mut batch).commit(&mut |_| Ok(()))?;
                }
            }
            ids.push(id);
        }
        batch.commit(&mut |_| Ok(()))?;
        Ok(ids)
    }

    /// Whether the content `sha256` is stored (not read, not verified:
    /// [`Objects::get`] verifies).
    pub fn has(&self, sha256: &[u8; 32]) -> bool {
        self.dir.join(hex::encode(sha256)).is_file()
    }

    /// Makes the finished download `part` (on the same filesystem) the
    /// object `sha256`: private, renamed into place, the directory synced.
    /// The caller checked its hash; a read checks it again.
    pub fn adopt(&self, part: &Path, sha256: &[u8; 32]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let id = hex::encode(sha256);
        let dest = self.dir.join(&id);
        std::fs::set_permissions(part, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("failed to make {} private", part.display()))?;
        std::fs::rename(part, &dest)
            .with_context(|| format!("failed to move {} to {}", part.display(), dest.display()))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("failed to sync {}", self.dir.display()))
    }

    /// The hash an object id names. Not a look at the store: a missing
    /// object shows when it is read.
    pub fn parse_id(id: &str) -> Result<[u8; 32]> {
        hex::decode(id)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .with_context(|| format!("`{id}` is not an object id"))
    }

    /// Reads an object, checking that its content still has its hash.
    pub fn get(&self, id: &str) -> Result<Vec<u8>> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("`{id}` is not an object id");
        }
        let path = self.dir.join(id);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("failed to read object {}", path.display()))?;
        if hex::encode(sha256(&bytes)) != id {
            bail!(
                "object {} is corrupt (its content does not match its name)",
                path.display()
            );
        }
        Ok(bytes)
    }

    /// Removes every object not in `keep`; returns how many were removed.
    pub fn retain(&self, keep: &BTreeSet<String>) -> Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("failed to list {}", self.dir.display()))?
        {
            let entry = entry.with_context(|| format!("failed to list {}", self.dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("failed to remove {}", entry.path().display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_verifies_and_collects_garbage() {
        let d = tempfile::tempdir().expect("tempdir");
        let o = Objects::open(&d.path().join("objects")).expect("open");
        let a = o.put(b"alpha").expect("put");
        assert_eq!(o.put(b"alpha").expect("put again"), a);
        let b = o.put(b"beta").expect("put");
        assert_eq!(o.get(&a).expect("get"), b"alpha");
        std::fs::write(d.path().join("objects").join(&b), "tampered").expect("tamper");
        assert!(o.get(&b).is_err());
        assert!(o.get("../etc/passwd").is_err());
        assert_eq!(o.retain(&BTreeSet::from([a.clone()])).expect("gc"), 1);
        assert!(o.get(&a).is_ok());
    }
}
