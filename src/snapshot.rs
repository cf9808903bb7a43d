//! The state of every path a plan touches, captured before the first change,
//! and the way back to it.
//!
//! Today the snapshot lives in memory for the duration of one converge, so a
//! failed step puts back what the earlier steps changed. It is built so that
//! it can be persisted (content keyed by SHA-256, metadata as numbers) for
//! crash recovery and generations.

use anyhow::{Context, Result};

use crate::plan::observed::{FsMeta, Observed};
use crate::system::fsroot::FsRoot;

/// What one path was before the converge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prior {
    /// Nothing was there.
    Missing,
    /// A regular file with these bytes and metadata.
    File {
        /// The exact content.
        content: Vec<u8>,
        /// Owner, group, mode.
        meta: FsMeta,
    },
    /// A directory with this metadata.
    Dir {
        /// Owner, group, mode.
        meta: FsMeta,
    },
    /// A symlink with this target.
    Symlink {
        /// Link target.
        target: String,
    },
}

/// The prior state of each touched path, in plan order.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// One entry per path, in the order the plan first touches it.
    pub entries: Vec<(String, Prior)>,
}

impl Snapshot {
    /// Captures `paths` (each once, in the order given).
    pub fn capture(root: &FsRoot, paths: &[String]) -> Result<Self> {
        let mut entries: Vec<(String, Prior)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            let path = path.as_str();
            if !seen.insert(path) {
                continue;
            }
            let prior = match root.observe(path)? {
                Observed::Missing { .. } => Prior::Missing,
                Observed::File { meta, content, .. } => Prior::File {
                    content: match content {
                        Some(c) => c,
                        None => root.read_file(path)?,
                    },
                    meta,
                },
                Observed::Dir { meta, .. } => Prior::Dir { meta },
                Observed::Symlink { target } => Prior::Symlink { target },
                Observed::Other { what } => {
                    anyhow::bail!("{} is {what}; refusing to change it", root.display(path))
                }
            };
            entries.push((path.to_owned(), prior));
        }
        Ok(Self { entries })
    }

    /// Puts every captured path back, last touched first, so directories
    /// created for files are removed after those files. Continues past
    /// failures and returns them all.
    pub fn restore(&self, root: &FsRoot) -> Vec<anyhow::Error> {
        let mut errors = Vec::new();
        for (path, prior) in self.entries.iter().rev() {
            if let Err(e) = restore_one(root, path, prior) {
                errors.push(e.context(format!("failed to restore {}", root.display(path))));
            }
        }
        errors
    }

    /// Paths whose current state differs from the snapshot.
    pub fn differences(&self, root: &FsRoot) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (path, prior) in &self.entries {
            let now = root.observe(path)?;
            let same = match (prior, &now) {
                (Prior::Missing, Observed::Missing { .. }) => true,
                (
                    Prior::File { content, meta },
                    Observed::File {
                        meta: m, sha256, ..
                    },
                ) => meta == m && *sha256 == crate::plan::sha256(content),
                (Prior::Dir { meta }, Observed::Dir { meta: m, .. }) => meta == m,
                (Prior::Symlink { target }, Observed::Symlink { target: t }) => target == t,
                _ => false,
            };
            if !same {
                out.push(path.clone());
            }
        }
        Ok(out)
    }
}

fn restore_one(root: &FsRoot, path: &str, prior: &Prior) -> Result<()> {
    let now = root.observe(path)?;
    match (prior, now) {
        (Prior::Missing, Observed::Missing { .. }) => Ok(()),
        (Prior::Missing, Observed::Dir { .. }) => root.remove_dir(path),
        (Prior::Missing, _) => root.remove_file(path),
        (Prior::File { content, meta }, _) => root.write_file(path, content, *meta),
        (Prior::Dir { meta }, Observed::Dir { .. }) => root.set_meta(path, *meta),
        (Prior::Dir { meta }, Observed::Missing { .. }) => root.create_dir(path, *meta),
        (Prior::Dir { meta }, _) => {
            root.remove_file(path)?;
            root.create_dir(path, *meta)
        }
        (Prior::Symlink { target }, _) => root.symlink(path, target),
    }
    .with_context(|| format!("while restoring {}", root.display(path)))
}
