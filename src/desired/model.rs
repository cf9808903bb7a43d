//! The desired state of one host, as the planner consumes it.
//!
//! Everything here is already validated: paths are absolute and normalised,
//! modes are in range, file contents are read and templates rendered. Types
//! downstream never re-check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diag::Origin;
pub(crate) use super::kinds::archive::{Archive, ArchiveFormat};
pub(crate) use super::kinds::command::Command;
pub(crate) use super::kinds::directory::Directory;
pub(crate) use super::kinds::file::File;
pub(crate) use super::kinds::group::Group;
pub(crate) use super::kinds::package::{Package, PackageState};
pub(crate) use super::kinds::service::{RunState, Service};
pub(crate) use super::kinds::symlink::Symlink;
pub(crate) use super::kinds::user::User;
pub(crate) use super::kinds::{
    EditDecl, Form, Kind, PathDecl, PathForm, Prim, PrimKind, Resource, ResourceId,
};
pub(crate) use super::values::{Content, ContentRule, Ensure, Meta, SelinuxParts};

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Run this argv; exit 0 is healthy.
    Command(Vec<String>),
    /// This unit must be active.
    Service(String),
    /// This URL must answer 2xx.
    Http(String),
}

/// A health check that gates a converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Unique name.
    pub name: String,
    /// What to probe.
    pub probe: Probe,
    /// Limit of one attempt.
    #[serde(with = "super::values::humantime_serde_compat")]
    pub timeout: Duration,
    /// Attempts after the first failure.
    pub retries: u32,
    /// Pause between attempts.
    #[serde(with = "super::values::humantime_serde_compat")]
    pub interval: Duration,
}

/// A resource with where it was declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// The resource.
    pub resource: Resource,
    /// `false` (`prune = false`): once dropped from the repo, driftless
    /// forgets it and leaves it as it is.
    #[serde(default = "yes")]
    pub prune: bool,
    /// The file and line that declared it (the winner, when a host overrides
    /// a role).
    pub origin: Origin,
}

fn yes() -> bool {
    true
}

/// The origin of what driftless puts back because the repo no longer
/// declares it (pruning): there is no line to point at.
pub(crate) const NO_LONGER_DECLARED: &str = "(no longer declared)";

/// Everything one host should be.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DesiredState {
    /// Host name the state was computed for.
    pub host: String,
    /// The repo file chosen for the host (`hosts/web1.toml`).
    pub host_file: String,
    /// Roles applied, in order.
    pub roles: Vec<String>,
    /// Resources in apply order (repos, packages, directories, files and
    /// symlinks, services).
    pub resources: Vec<Declared>,
    /// Health checks.
    pub checks: Vec<Check>,
    /// The `vars` its templates saw (roles', then the host file's).
    #[serde(default)]
    pub vars: toml::Table,
    /// The rollout policy of the commit (`fleet.toml`), when it has one.
    #[serde(default)]
    pub fleet: Option<super::fleet::FleetPolicy>,
    /// The facts its templates read: what a cached copy of it depends on.
    #[serde(default)]
    pub facts_read: super::facts::FactsRead,
    /// What its files probably do not mean as written, though valid
    /// (`validate` shows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<super::diag::Diagnostic>,
}

impl DesiredState {
    /// A key for a desired state that has no commit (`--repo DIR`): a hash
    /// of everything in it, file contents included.
    pub fn content_key(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        // Origins say where things were declared, not what: leave them out.
        for d in &self.resources {
            h.update(serde_json::to_vec(&d.resource).unwrap_or_default());
            if let Some(content) = d.resource.stored_content() {
                h.update(content.sha256());
            }
        }
        h.update(serde_json::to_vec(&self.checks).unwrap_or_default());
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// What each resource is to the engine, in apply order.
    pub fn prims(&self) -> impl Iterator<Item = Prim<'_>> {
        self.resources.iter().map(|d| d.resource.lower())
    }

    /// The declared commands, in order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.prims().filter_map(|p| match p {
            Prim::Command(c) => Some(c),
            _ => None,
        })
    }

    /// Whether a user or group is declared.
    pub fn declares_accounts(&self) -> bool {
        self.prims()
            .any(|p| matches!(p, Prim::User(_) | Prim::Group(_)))
    }

    /// Whether a declared user manages its password (then /etc/shadow is
    /// read to compare).
    pub fn manages_passwords(&self) -> bool {
        self.prims()
            .any(|p| matches!(p, Prim::User(u) if u.password.is_some()))
    }

    /// The declared services, in order.
    pub fn services(&self) -> Vec<&Service> {
        self.prims()
            .filter_map(|p| match p {
                Prim::Unit(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The names of the declared packages; with `only_latest`, of those
    /// declared `state = "latest"`.
    pub fn package_names(&self, only_latest: bool) -> Vec<String> {
        self.prims()
            .filter_map(|p| match p {
                Prim::Package(p) if !only_latest || p.state == PackageState::Latest => {
                    Some(p.name.clone())
                }
                _ => None,
            })
            .collect()
    }
}
