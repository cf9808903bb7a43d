//! `<state_dir>/inventory.json`: what driftless manages, each thing with
//! the state it had before driftless first managed it, so that a resource
//! dropped from the config repo can be put back (or removed, if driftless
//! created it) instead of being forgotten on the host.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::snapshot::Prior;
use crate::desired::model::ResourceId;
use crate::desired::textedit::TextEdit;
use crate::plan::observed::FsMeta;

/// The inventory file's name.
pub(super) const FILE: &str = "inventory.json";

/// Everything managed, by resource id (`file:/etc/motd`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The managed resources.
    pub entries: BTreeMap<String, Entry>,
}

/// One managed resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub id: ResourceId,
    /// The generation that first managed it (`None`: it was found as
    /// declared, so no generation changed it).
    pub generation: Option<u64>,
    /// `false`: when it is dropped from the repo, driftless forgets it and
    /// leaves it as it is (`prune = false`).
    pub prune: bool,
    /// How it was before driftless managed it.
    pub before: Before,
    /// A file whose bytes driftless does not own (`replace = false`, or a
    /// `[[file]]` without content): pruning puts back only its owner,
    /// group, mode and label, never the bytes it had then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keeps_content: bool,
}

/// The state of a resource before driftless first managed it. A path's is
/// the same record a snapshot keeps ([`Prior`]): one model of "how it was"
/// for rollback and pruning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Wire", into = "Wire")]
pub enum Before {
    /// A path: nothing, a file (its bytes in the object store), a
    /// directory, a symlink.
    Path(Prior),
    /// A unit: whether it was enabled and running (`None`: it did not
    /// exist, so there is nothing to go back to).
    Unit {
        /// Enabled at boot.
        enabled: Option<bool>,
        /// Active.
        running: Option<bool>,
        /// Masked (then neither enabled nor running is known).
        masked: bool,
    },
    /// A package: whether it was installed already.
    Package {
        /// Installed before driftless managed it.
        installed: bool,
    },
    /// An edit of part of a file: the edit that puts back what it
    /// replaced (`None`: nothing to put back).
    Edit {
        /// The file.
        path: String,
        /// The edit that undoes it.
        undo: Option<TextEdit>,
    },
    /// A host setting: the facets it had before driftless managed it.
    Setting {
        /// Each declared facet, as it was (`None`: absent).
        facets: crate::desired::kinds::Facets,
    },
    /// Something pruning does not undo (a device where a path was
    /// declared, an account, a command): forgotten when dropped.
    Untracked,
}

/// How `inventory.json` writes a [`Before`] (its shape since the first
/// release: a path's owner, group and mode side by side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Wire {
    Missing,
    File {
        object: String,
        uid: u32,
        gid: u32,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    Dir {
        uid: u32,
        gid: u32,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    Symlink {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    Tree {
        marker: String,
        uid: u32,
        gid: u32,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    Unit {
        enabled: Option<bool>,
        running: Option<bool>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        masked: bool,
    },
    Package {
        installed: bool,
    },
    Edit {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<TextEdit>,
    },
    Setting {
        facets: crate::desired::kinds::Facets,
    },
    Untracked,
}

impl From<Wire> for Before {
    fn from(w: Wire) -> Self {
        let meta = |uid, gid, mode| FsMeta { uid, gid, mode };
        match w {
            Wire::Missing => Before::Path(Prior::Missing),
            Wire::File {
                object,
                uid,
                gid,
                mode,
                label,
            } => Before::Path(Prior::File {
                object,
                meta: meta(uid, gid, mode),
                label,
            }),
            Wire::Dir {
                uid,
                gid,
                mode,
                label,
            } => Before::Path(Prior::Dir {
                meta: meta(uid, gid, mode),
                label,
            }),
            Wire::Symlink { target, label } => Before::Path(Prior::Symlink { target, label }),
            Wire::Tree {
                marker,
                uid,
                gid,
                mode,
                label,
            } => Before::Path(Prior::Tree {
                marker,
                meta: meta(uid, gid, mode),
                label,
            }),
            Wire::Unit {
                enabled,
                running,
                masked,
            } => Before::Unit {
                enabled,
                running,
                masked,
            },
            Wire::Package { installed } => Before::Package { installed },
            Wire::Edit { path, undo } => Before::Edit { path, undo },
            Wire::Setting { facets } => Before::Setting { facets },
            Wire::Untracked => Before::Untracked,
        }
    }
}

impl From<Before> for Wire {
    fn from(b: Before) -> Self {
        match b {
            Before::Path(Prior::Missing) => Wire::Missing,
            Before::Path(Prior::File {
                object,
                meta,
                label,
            }) => Wire::File {
                object,
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                label,
            },
            Before::Path(Prior::Dir { meta, label }) => Wire::Dir {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                label,
            },
            Before::Path(Prior::Symlink { target, label }) => Wire::Symlink { target, label },
            Before::Path(Prior::Tree {
                marker,
                meta,
                label,
            }) => Wire::Tree {
                marker,
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                label,
            },
            Before::Unit {
                enabled,
                running,
                masked,
            } => Wire::Unit {
                enabled,
                running,
                masked,
            },
            Before::Package { installed } => Wire::Package { installed },
            Before::Edit { path, undo } => Wire::Edit { path, undo },
            Before::Setting { facets } => Wire::Setting { facets },
            Before::Untracked => Wire::Untracked,
        }
    }
}

impl Inventory {
    /// The objects the inventory refers to (kept by garbage collection).
    pub fn objects(&self) -> BTreeSet<String> {
        self.entries
            .values()
            .filter_map(|e| match &e.before {
                Before::Path(Prior::File { object, .. }) => Some(object.clone()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `inventory.json` keeps the shape it has had since the first release.
    #[test]
    fn a_path_before_is_written_as_it_always_was() {
        let before = Before::Path(Prior::File {
            object: "ab".into(),
            meta: FsMeta {
                uid: 7,
                gid: 8,
                mode: 0o640,
            },
            label: None,
        });
        let json = serde_json::to_value(&before).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"state": "file", "object": "ab", "uid": 7, "gid": 8, "mode": 416})
        );
        let back: Before = serde_json::from_value(json).expect("read");
        assert_eq!(back, before);
        let missing: Before = serde_json::from_str(r#"{"state":"missing"}"#).expect("read");
        assert_eq!(missing, Before::Path(Prior::Missing));
    }
}
