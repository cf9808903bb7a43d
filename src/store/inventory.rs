//! `<state_dir>/inventory.json`: what driftless manages, each thing with
//! the state it had before driftless first managed it, so that a resource
//! dropped from the config repo can be put back (or removed, if driftless
//! created it) instead of being forgotten on the host.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::desired::model::ResourceId;

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
}

/// The state of a resource before driftless first managed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Before {
    /// Nothing was there: driftless created it.
    Missing,
    /// A regular file: its bytes (an object of the store) and metadata.
    File {
        /// Hex SHA-256 of its content in the object store.
        object: String,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Permission bits.
        mode: u32,
        /// SELinux context (recorded where the root has a policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A directory and its metadata.
    Dir {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Permission bits.
        mode: u32,
        /// SELinux context (recorded where the root has a policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A symlink and its target.
    Symlink {
        /// Target, verbatim.
        target: String,
        /// The link's SELinux context (recorded where the root has a
        /// policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A unit: whether it was enabled and running (`None`: it did not
    /// exist, so there is nothing to go back to).
    Unit {
        /// Enabled at boot.
        enabled: Option<bool>,
        /// Active.
        running: Option<bool>,
    },
    /// A package: whether it was installed already.
    Package {
        /// Installed before driftless managed it.
        installed: bool,
    },
    /// Something pruning does not undo (a device where a path was
    /// declared, an account, a command): forgotten when dropped.
    Untracked,
}

impl Inventory {
    /// The objects the inventory refers to (kept by garbage collection).
    pub fn objects(&self) -> BTreeSet<String> {
        self.entries
            .values()
            .filter_map(|e| match &e.before {
                Before::File { object, .. } => Some(object.clone()),
                _ => None,
            })
            .collect()
    }
}
