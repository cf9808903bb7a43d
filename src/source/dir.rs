//! A config repo read from a directory (`--repo DIR`): no git needed.
//!
//! Every load of a repo of N files looks at N sources, so the syscalls per
//! source are what a no-op pays: a directory found real is remembered for
//! the rest of the load, and a file is read through one `open(O_NOFOLLOW)`
//! and the `fstat` of what was opened, not a second look by name.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::desired::tree::{ConfigTree, EntryKind};

/// A config repo in a directory on disk. Symlinks are reported, never
/// followed here: the loader decides whether they stay in the repo.
pub(crate) struct DirTree {
    root: PathBuf,
    /// Repo paths found to be real directories (not symlinks) during this
    /// load: the parents of the next source are not looked at again.
    real_dirs: RefCell<HashSet<String>>,
}

impl DirTree {
    /// Opens the directory `root`.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let md = std::fs::metadata(root)
            .with_context(|| format!("failed to open config repo {}", root.display()))?;
        if !md.is_dir() {
            bail!("config repo {} is not a directory", root.display());
        }
        Ok(Self {
            root: root.to_owned(),
            real_dirs: RefCell::default(),
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
        let mut repo_path = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            at.push(c);
            if !repo_path.is_empty() {
                repo_path.push('/');
            }
            repo_path.push_str(c);
            if self.real_dirs.borrow().contains(&repo_path) {
                continue;
            }
            match std::fs::symlink_metadata(&at) {
                Ok(md) if md.is_dir() => {
                    self.real_dirs.borrow_mut().insert(repo_path.clone());
                }
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
        if self.real_dirs.borrow().contains(path) {
            return Ok(Some(EntryKind::Dir));
        }
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
            self.real_dirs.borrow_mut().insert(path.to_owned());
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
        let full = self.full(path)?;
        let not_a_file = || format!("{} is not a regular file", full.display());
        if !self.parents_are_real(path)? {
            bail!(not_a_file());
        }
        // O_NOFOLLOW: a final symlink fails to open (ELOOP), and what is
        // opened is what fstat describes, so no second look by name.
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&full)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => bail!(not_a_file()),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", full.display())),
        };
        let md = f
            .metadata()
            .with_context(|| format!("failed to stat {}", full.display()))?;
        if !md.is_file() {
            bail!(not_a_file());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0));
        // Through `Take`: `File`'s own read_to_end would stat and seek again
        // to size its buffer. A file growing meanwhile is not followed far:
        // the loader's size cap applies to what was read.
        (&mut f)
            .take(md.len().saturating_add(1))
            .read_to_end(&mut bytes)
            .with_context(|| format!("failed to read {}", full.display()))?;
        Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A file is read only where git would see one: not through a final
    /// symlink, not below a symlinked directory, even once that
    /// directory's real twin was remembered as real.
    #[test]
    fn reads_only_regular_files_of_the_repo_itself() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("files")).expect("mkdir");
        std::fs::write(d.path().join("files/motd"), "hello").expect("write");
        symlink("motd", d.path().join("files/link")).expect("symlink");
        symlink("files", d.path().join("alias")).expect("symlink");
        let t = DirTree::open(d.path()).expect("open");
        assert_eq!(t.read("files/motd").expect("read"), b"hello");
        assert_eq!(t.kind("files").expect("kind"), Some(EntryKind::Dir));
        let refused = |p: &str| {
            let e = t.read(p).expect_err(p);
            assert!(
                format!("{e:#}").contains("is not a regular file"),
                "{p}: {e:#}"
            );
        };
        refused("files/link");
        refused("alias/motd");
        refused("files");
        assert_eq!(t.kind("alias/motd").expect("kind"), None);
        assert!(matches!(
            t.kind("files/link").expect("kind"),
            Some(EntryKind::Symlink { .. })
        ));
        assert!(t.read("files/none").is_err());
    }
}
