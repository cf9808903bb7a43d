//! A config repo read from a directory (`--repo DIR`): no git needed.
//!
//! Every load of a repo of N files looks at N sources, so the syscalls per
//! source are what a no-op pays: a directory found real is remembered for
//! the rest of the load, and a file is read through one `open(O_NOFOLLOW)`
//! and the `fstat` of what was opened, not a second look by name.
//!
//! A load also records what it looked at — every path, with the identity
//! of what was there (device, inode, type and mode, size, mtime, ctime) or
//! that nothing was — as a stamp ([`ConfigTree::stamp`]): while a new look
//! at the same paths finds the same, the directory holds what the last load
//! read, and its cached result stands (a no-op then reads no source). A
//! file changed in place changes its mtime and ctime; one added, removed or
//! renamed changes its directory's. Anything changed in the last
//! [`RACY_S`] seconds is not trusted (a write later in the same timestamp
//! tick would keep them), as the host's stat cache does.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sha2::Digest;

use crate::desired::tree::{ConfigTree, EntryKind};

/// Seconds within which a change is too recent to trust its stat.
pub(crate) const RACY_S: i64 = 2;

/// The identity of what a path held: device, inode, type and mode, size,
/// and mtime and ctime to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity([i64; 8]);

impl Identity {
    fn of(md: &std::fs::Metadata) -> Self {
        // The raw numbers as they are; only compared and hashed.
        #[allow(clippy::cast_possible_wrap)]
        Identity([
            md.dev() as i64,
            md.ino() as i64,
            i64::from(md.mode()),
            md.size() as i64,
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
        ])
    }

    /// Whether it changed at or after `since` (nanoseconds since the
    /// epoch).
    fn changed_since(&self, since: i128) -> bool {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.0[4], self.0[5]) >= since || ns(self.0[6], self.0[7]) >= since
    }
}

/// What a path held, for a stamp: its identity, or nothing.
type Seen = Option<Identity>;

/// The stamp of `seen` under `root`: a hash of every path and what it
/// held; `None` when something changed too recently to trust (at or after
/// `racy_from`).
fn stamp_of<'a>(
    root: &Path,
    seen: impl Iterator<Item = (&'a str, Seen)>,
    racy_from: i128,
) -> Option<String> {
    let mut h = sha2::Sha256::new();
    h.update(root.as_os_str().as_encoded_bytes());
    for (path, id) in seen {
        if id.is_some_and(|i| i.changed_since(racy_from)) {
            return None;
        }
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        match id {
            None => h.update([0]),
            Some(Identity(n)) => {
                h.update([1]);
                for x in n {
                    h.update(x.to_le_bytes());
                }
            }
        }
    }
    Some(hex::encode(h.finalize()))
}

/// Nanoseconds since the epoch, [`RACY_S`] before `now`.
fn racy_from(now: SystemTime) -> i128 {
    let ns = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    ns - i128::from(RACY_S) * 1_000_000_000
}

/// The stamp the directory `root` has now for the repo paths `paths` (as
/// [`ConfigTree::stamp`] gave them): equal to that one while nothing there
/// changed. `None` when a path cannot be looked at, or changed too recently.
pub(crate) fn stamp_now(root: &Path, paths: &[String]) -> Option<String> {
    stamp_at(root, paths, SystemTime::now())
}

/// [`stamp_now`], as of `now`.
fn stamp_at(root: &Path, paths: &[String], now: SystemTime) -> Option<String> {
    let mut seen = Vec::with_capacity(paths.len());
    for p in paths {
        let full = if p.is_empty() {
            root.to_owned()
        } else {
            root.join(p)
        };
        // The root as `open` looked at it (following a link to it).
        let looked = if p.is_empty() {
            std::fs::metadata(&full)
        } else {
            std::fs::symlink_metadata(&full)
        };
        let id = match looked {
            Ok(md) => Some(Identity::of(&md)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        seen.push((p.as_str(), id));
    }
    stamp_of(root, seen.into_iter(), racy_from(now))
}

/// A config repo in a directory on disk. Symlinks are reported, never
/// followed here: the loader decides whether they stay in the repo.
pub(crate) struct DirTree {
    root: PathBuf,
    /// Repo paths found to be real directories (not symlinks) during this
    /// load: the parents of the next source are not looked at again.
    real_dirs: RefCell<HashSet<String>>,
    /// Every path looked at, and what it held (the first look).
    seen: RefCell<BTreeMap<String, Seen>>,
    /// A path held something else at a later look: no stamp.
    moved: Cell<bool>,
    /// When the load began: what changed since is too recent for a stamp.
    opened: SystemTime,
}

impl DirTree {
    /// Opens the directory `root`.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let md = std::fs::metadata(root)
            .with_context(|| format!("failed to open config repo {}", root.display()))?;
        if !md.is_dir() {
            bail!("config repo {} is not a directory", root.display());
        }
        let tree = Self {
            root: root.to_owned(),
            real_dirs: RefCell::default(),
            seen: RefCell::default(),
            moved: Cell::new(false),
            opened: SystemTime::now(),
        };
        tree.saw("", Some(&md));
        Ok(tree)
    }

    /// Records what `path` held at a look.
    fn saw(&self, path: &str, md: Option<&std::fs::Metadata>) {
        let id = md.map(Identity::of);
        let mut seen = self.seen.borrow_mut();
        match seen.get(path) {
            Some(first) if *first != id => self.moved.set(true),
            Some(_) => {}
            None => {
                seen.insert(path.to_owned(), id);
            }
        }
    }

    /// Records a failed look: gone is nothing there; another error is no
    /// stamp for this load.
    fn saw_error(&self, path: &str, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            self.saw(path, None);
        } else {
            self.moved.set(true);
        }
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
            let looked = std::fs::symlink_metadata(&at);
            match &looked {
                Ok(md) => self.saw(&repo_path, Some(md)),
                Err(e) => self.saw_error(&repo_path, e),
            }
            match looked {
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

    fn stamp(&self) -> Option<(Vec<String>, String)> {
        if self.moved.get() {
            return None;
        }
        let seen = self.seen.borrow();
        let stamp = stamp_of(
            &self.root,
            seen.iter().map(|(p, id)| (p.as_str(), *id)),
            racy_from(self.opened),
        )?;
        Some((seen.keys().cloned().collect(), stamp))
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
            Err(e) => {
                self.saw_error(path, &e);
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(e).with_context(|| format!("failed to stat {}", full.display()));
            }
        };
        self.saw(path, Some(&md));
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
            Err(e) => {
                // A symlink (ELOOP) holds something other than a file: no
                // stamp, rather than one that could miss its target change.
                self.saw_error(path, &e);
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    bail!(not_a_file());
                }
                return Err(e).with_context(|| format!("failed to read {}", full.display()));
            }
        };
        let md = f
            .metadata()
            .with_context(|| format!("failed to stat {}", full.display()))?;
        self.saw(path, Some(&md));
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

    /// A stamp covers every path a load looked at, found or not, and
    /// changes with any of them; a load that saw a path change, or anything
    /// changed within the racy window, has none.
    #[test]
    fn a_stamp_changes_with_anything_the_load_looked_at() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("files")).expect("mkdir");
        std::fs::write(d.path().join("files/motd"), "aaaa").expect("write");
        // As if all of it were older than the racy window.
        let later = SystemTime::now() + std::time::Duration::from_secs(3);
        let mut t = DirTree::open(d.path()).expect("open");
        t.opened = later;
        assert_eq!(t.kind("files/none").expect("kind"), None);
        assert_eq!(t.read("files/motd").expect("read"), b"aaaa");
        let (paths, stamp) = t.stamp().expect("a stamp");
        assert_eq!(paths, ["", "files", "files/motd", "files/none"]);
        let again = || stamp_at(d.path(), &paths, later);
        assert_eq!(again().as_deref(), Some(stamp.as_str()));
        // Racy now: no stamp, however equal.
        assert_eq!(stamp_now(d.path(), &paths), None);
        std::fs::write(d.path().join("files/none"), "").expect("write");
        let with_new = again().expect("stamp");
        assert_ne!(with_new, stamp);
        std::fs::remove_file(d.path().join("files/none")).expect("rm");
        std::fs::write(d.path().join("files/motd"), "bbbb").expect("write");
        assert_ne!(again().expect("stamp"), stamp);

        // A path that held something else at a second look.
        let t = DirTree::open(d.path()).expect("open");
        t.read("files/motd").expect("read");
        std::fs::rename(d.path().join("files/motd"), d.path().join("files/old")).expect("rename");
        std::fs::write(d.path().join("files/motd"), "cccc").expect("write");
        t.read("files/motd").expect("read");
        assert!(t.stamp().is_none());
        // Just written: no stamp.
        let t = DirTree::open(d.path()).expect("open");
        t.read("files/motd").expect("read");
        assert!(t.stamp().is_none());
    }
}
