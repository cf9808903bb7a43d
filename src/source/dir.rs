//! A config repo read from a directory (`--repo DIR`): no git needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::desired::tree::{ConfigTree, EntryKind};

/// A config repo in a directory on disk. Symlinks are reported, never
/// followed here: the loader decides whether they stay in the repo.
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    /// Opens the directory `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let md = std::fs::metadata(root)
            .with_context(|| format!("failed to open config repo {}", root.display()))?;
        if !md.is_dir() {
            bail!("config repo {} is not a directory", root.display());
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            bail!("`{path}` is not a path inside the config repo");
        }
        Ok(if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        })
    }

    /// Whether no intermediate component of `path` is a symlink: `kind` and
    /// `read` must see the repo's own tree, as git would, not a link target.
    fn parents_are_real(&self, path: &str) -> Result<bool> {
        let mut at = self.root.clone();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to stat {}", at.display()));
                }
            }
        }
        Ok(true)
    }
}

impl ConfigTree for DirTree {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn kind(&self, path: &str) -> Result<Option<EntryKind>> {
        let full = self.full(path)?;
        if !path.is_empty() && !self.parents_are_real(path)? {
            return Ok(None);
        }
        let md = match std::fs::symlink_metadata(&full) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to stat {}", full.display())),
        };
        let ft = md.file_type();
        Ok(Some(if ft.is_file() {
            EntryKind::File { size: md.len() }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full)
                .with_context(|| format!("failed to read symlink {}", full.display()))?;
            EntryKind::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else {
            EntryKind::Other
        }))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        if !matches!(self.kind(path)?, Some(EntryKind::File { .. })) {
            bail!("{}/{path} is not a regular file", self.root.display());
        }
        let full = self.full(path)?;
        std::fs::read(&full).with_context(|| format!("failed to read {}", full.display()))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        if !matches!(self.kind(dir)?, Some(EntryKind::Dir)) {
            return Ok(Vec::new());
        }
        let full = self.full(dir)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&full)
            .with_context(|| format!("failed to list {}", full.display()))?
        {
            let entry = entry.with_context(|| format!("failed to list {}", full.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}
