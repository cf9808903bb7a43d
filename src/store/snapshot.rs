//! The record of a snapshot (`generations/<n>/snapshot.json`): what every
//! path, package and service a converge may touch was before it started.
//! Taking and restoring one is the engine's work (`converge::snapshot`);
//! this is the format it is kept in.

use serde::{Deserialize, Serialize};

use crate::desired::kinds::{Domain, Facets};
use crate::plan::observed::FsMeta;
use crate::plan::rpmver::Nevra;

/// What one path was before the converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Prior {
    /// Nothing was there.
    Missing,
    /// A regular file.
    File {
        /// Its content, in the object store.
        object: String,
        /// Owner, group, mode.
        meta: FsMeta,
        /// Its SELinux context (recorded where the root has a policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A directory.
    Dir {
        /// Owner, group, mode.
        meta: FsMeta,
        /// Its SELinux context (recorded where the root has a policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A directory holding a tree driftless extracted (`[[archive]]`):
    /// the tree itself is not copied; an extraction keeps it beside the
    /// new one until the converge commits, and a restore finds it there
    /// by its marker.
    Tree {
        /// The marker's text: which archive was extracted.
        marker: String,
        /// Owner, group, mode of the directory.
        meta: FsMeta,
        /// Its SELinux context (recorded where the root has a policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// A symlink.
    Symlink {
        /// Link target.
        target: String,
        /// The link's SELinux context (recorded where the root has a
        /// policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
}

/// A unit's state before the converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePrior {
    /// Unit name.
    pub unit: String,
    /// `UnitFileState` (`enabled`, `disabled`, `static`, ...).
    pub unit_file_state: String,
    /// Whether it was running.
    pub running: bool,
    /// What it depends on (`restart_on`/`reload_on`): host paths, and
    /// `package:NAME`. A rollback restarts it when one of them is restored.
    #[serde(default)]
    pub depends: Vec<String>,
    /// Its own restart command (`restart_command`), used by the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_command: Option<Vec<String>>,
}

/// Everything needed to put the host back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Each path, in the order the converge first touches it.
    pub paths: Vec<(String, Prior)>,
    /// The whole installed package set, when the converge changes packages.
    pub packages: Option<Vec<Nevra>>,
    /// Touched services (live roots only).
    pub services: Vec<ServicePrior>,
    /// The host settings the converge changes, as they were, in the order
    /// it changes them (absent from snapshots taken before settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingPrior>,
}

/// A host setting's facets before the converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingPrior {
    /// Who keeps it.
    pub domain: Domain,
    /// Its name in the domain.
    pub name: String,
    /// Each facet the converge changes, as it was (`None`: absent).
    pub facets: Facets,
}

impl Snapshot {
    /// Object ids the snapshot needs.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().filter_map(|(_, p)| match p {
            Prior::File { object, .. } => Some(object.as_str()),
            _ => None,
        })
    }
}
