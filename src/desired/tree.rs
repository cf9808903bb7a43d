//! Read-only view of a config repo, wherever it lives.
//!
//! The desired-state loader never touches the filesystem or git itself: it
//! reads through [`ConfigTree`], which `source` implements for a directory on
//! disk and for a commit in the git cache, and which tests implement in memory
//! with [`MemTree`]. Paths are repo-relative, `/`-separated, without a leading
//! `/` (for example `hosts/web1.toml`); the empty string is the repo root.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// What one path inside the config repo is. A final symlink is reported as
/// such, never followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (executable or not).
    File {
        /// Its size in bytes.
        size: u64,
    },
    /// A directory (a git tree).
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target, exactly as stored.
        target: String,
    },
    /// Anything else: a device, a socket, a git submodule.
    Other,
}

/// A read-only config repo: a directory, a git commit, or an in-memory map.
pub trait ConfigTree {
    /// Where this tree comes from, for messages: `directory examples/config-repo`
    /// or `commit 1a2b3c4d5e6f`.
    fn describe(&self) -> String;
    /// The kind of the entry at `path`, or `None` when nothing is there.
    fn kind(&self, path: &str) -> Result<Option<EntryKind>>;
    /// The contents of the regular file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    /// The names (not paths) of the entries of directory `dir`, sorted.
    /// A missing directory is an empty list.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// After a load: the paths it looked at and a stamp of what they held,
    /// when the tree can tell later, without reading them, that they still
    /// hold the same (a directory; a commit is its own stamp).
    fn stamp(&self) -> Option<(Vec<String>, String)> {
        None
    }
}

/// An in-memory [`ConfigTree`] for tests and for callers that already hold the
/// files. Directories are implied by the paths of their entries.
#[derive(Clone, Debug, Default)]
pub struct MemTree {
    entries: BTreeMap<String, MemEntry>,
}

#[derive(Clone, Debug)]
enum MemEntry {
    File(Vec<u8>),
    Symlink(String),
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a regular file.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.entries
            .insert(path.to_owned(), MemEntry::File(contents.into()));
        self
    }

    /// Adds (or replaces) a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries
            .insert(path.to_owned(), MemEntry::Symlink(target.to_owned()));
        self
    }

    fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        let prefix = format!("{path}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

impl ConfigTree for MemTree {
    fn describe(&self) -> String {
        "in-memory tree".to_owned()
    }

    fn kind(&self, path: &str) -> Result<Option<EntryKind>> {
        Ok(match self.entries.get(path) {
            Some(MemEntry::File(data)) => Some(EntryKind::File {
                size: data.len() as u64,
            }),
            Some(MemEntry::Symlink(target)) => Some(EntryKind::Symlink {
                target: target.clone(),
            }),
            None if self.is_dir(path) => Some(EntryKind::Dir),
            None => None,
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self.entries.get(path) {
            Some(MemEntry::File(data)) => Ok(data.clone()),
            _ => bail!("{path}: not a regular file in the in-memory tree"),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names: Vec<String> = self
            .entries
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        Ok(names)
    }
}
