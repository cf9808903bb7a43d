//! The desired state of one host, as the planner consumes it.
//!
//! Everything here is already validated: paths are absolute and normalised,
//! modes are in range, file contents are read and templates rendered. Types
//! downstream never re-check.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diag::Origin;

/// The kinds of resource, in the order a converge applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A dnf repository file under `/etc/yum.repos.d`.
    Repo,
    /// An RPM package.
    Package,
    /// A local group (after packages, which may create it; before the
    /// users in it).
    Group,
    /// A local user (before the files it owns).
    User,
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A command run when its guards or refreshes say so.
    Command,
    /// A systemd unit.
    Service,
}

impl Kind {
    /// The word used in references (`file:/etc/motd`) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repo => "repo",
            Kind::Package => "package",
            Kind::Group => "group",
            Kind::User => "user",
            Kind::Directory => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Command => "command",
            Kind::Service => "service",
        }
    }

    /// Every kind, in apply order.
    pub const ALL: [Kind; 9] = [
        Kind::Repo,
        Kind::Package,
        Kind::Group,
        Kind::User,
        Kind::Directory,
        Kind::File,
        Kind::Symlink,
        Kind::Command,
        Kind::Service,
    ];

    /// Parses the word of a reference.
    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// The identity of a resource: one package by name, one path by path, one
/// unit by unit name. Written `kind:key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    /// What kind of thing.
    pub kind: Kind,
    /// Its key: a name, an absolute path or a unit name.
    pub key: String,
}

impl ResourceId {
    /// Builds an identity.
    pub fn new(kind: Kind, key: impl Into<String>) -> Self {
        Self {
            kind,
            key: key.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.key)
    }
}

/// Present or absent, for resources that can be removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// The resource must exist as declared.
    Present,
    /// The resource must not exist.
    Absent,
}

/// The state a package should be in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "version")]
pub enum PackageState {
    /// Installed, any version (or exactly `Some(evr)`).
    Present(Option<String>),
    /// Not installed.
    Absent,
    /// Installed at the newest version the repositories offer.
    Latest,
}

/// A dnf repository, written as `/etc/yum.repos.d/<name>.repo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Repository id, also the file name.
    pub name: String,
    /// Where packages come from.
    pub location: RepoLocation,
    /// `enabled=` in the repo file.
    pub enabled: bool,
    /// `gpgcheck=` in the repo file.
    pub gpgcheck: bool,
    /// `gpgkey=` in the repo file.
    pub gpgkey: Option<String>,
    /// `name=` in the repo file (a human description).
    pub description: Option<String>,
    /// `metadata_expire=`: how long dnf trusts cached metadata (dnf's
    /// default is 48h, too long for a freshly pinned version to be seen).
    #[serde(default)]
    pub metadata_expire: Option<String>,
    /// Present or absent.
    pub ensure: Ensure,
}

/// The one source of a repository's packages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoLocation {
    /// `baseurl=`
    Baseurl(String),
    /// `metalink=`
    Metalink(String),
    /// `mirrorlist=`
    Mirrorlist(String),
}

/// The host path of repo `name`'s file.
pub fn repo_path(name: &str) -> String {
    format!("/etc/yum.repos.d/{name}.repo")
}

impl Repo {
    /// The path of the repo file on the host.
    pub fn path(&self) -> String {
        repo_path(&self.name)
    }

    /// The exact bytes of the repo file.
    pub fn render(&self) -> Vec<u8> {
        let (key, url) = match &self.location {
            RepoLocation::Baseurl(u) => ("baseurl", u),
            RepoLocation::Metalink(u) => ("metalink", u),
            RepoLocation::Mirrorlist(u) => ("mirrorlist", u),
        };
        let mut s = String::from("# Managed by driftless: local changes are overwritten.\n");
        s.push_str(&format!("[{}]\n", self.name));
        s.push_str(&format!(
            "name={}\n",
            self.description.as_deref().unwrap_or(&self.name)
        ));
        s.push_str(&format!("{key}={url}\n"));
        s.push_str(&format!("enabled={}\n", u8::from(self.enabled)));
        s.push_str(&format!("gpgcheck={}\n", u8::from(self.gpgcheck)));
        if let Some(k) = &self.gpgkey {
            s.push_str(&format!("gpgkey={k}\n"));
        }
        if let Some(m) = &self.metadata_expire {
            s.push_str(&format!("metadata_expire={m}\n"));
        }
        s.into_bytes()
    }
}

/// An RPM package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// What should be installed.
    pub state: PackageState,
}

/// A local group (`[[group]]`), managed with groupadd, groupmod and
/// groupdel. Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric id, if managed.
    pub gid: Option<u32>,
    /// A system group (`groupadd -r`: a gid from the system range), when
    /// created.
    pub system: bool,
    /// Present or absent.
    pub ensure: Ensure,
}

/// A local user (`[[user]]`), managed with useradd, usermod and userdel.
/// Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User name.
    pub name: String,
    /// Numeric id, if managed.
    pub uid: Option<u32>,
    /// Primary group (name or number), if managed.
    pub group: Option<String>,
    /// Supplementary groups, exactly these, if managed.
    pub groups: Option<Vec<String>>,
    /// Home directory, if managed.
    pub home: Option<String>,
    /// Whether useradd creates the home directory (only when the user is
    /// created; its contents are never managed or rolled back).
    pub create_home: bool,
    /// Login shell, if managed.
    pub shell: Option<String>,
    /// GECOS comment, if managed.
    pub comment: Option<String>,
    /// A system account (`useradd -r`), when created.
    pub system: bool,
    /// The password hash for /etc/shadow, if managed (sensitive: never
    /// shown, only said to differ).
    pub password: Option<String>,
    /// Present or absent.
    pub ensure: Ensure,
}

/// Owner, group and permission bits of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// User name or numeric uid.
    pub owner: String,
    /// Group name or numeric gid.
    pub group: String,
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    /// SELinux context parts that replace the policy's.
    #[serde(default, skip_serializing_if = "SelinuxParts::is_empty")]
    pub selinux: SelinuxParts,
}

impl Meta {
    /// `owner`, `group` and `mode`, with the policy's SELinux context.
    pub fn new(owner: impl Into<String>, group: impl Into<String>, mode: u32) -> Self {
        Self {
            owner: owner.into(),
            group: group.into(),
            mode,
            selinux: SelinuxParts::default(),
        }
    }
}

/// Parts of an SELinux context declared on a path (`selinux = { type =
/// "httpd_sys_content_t" }`): each part given replaces that part of the
/// context the policy gives the path, as Puppet's `seluser`, `selrole`,
/// `seltype` and `selrange` do. None given: the policy's context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxParts {
    /// SELinux user (`system_u`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Role (`object_r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Type (`httpd_sys_content_t`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// MLS/MCS range (`s0`, `s0:c1,c2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

impl SelinuxParts {
    /// Whether no part is declared.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.role.is_none() && self.type_.is_none() && self.range.is_none()
    }

    /// Every part of `context` (`user:role:type:range`), as declared parts:
    /// what puts a recorded label back exactly.
    pub fn of_context(context: &str) -> Self {
        let mut it = context.splitn(4, ':');
        let mut part = || it.next().filter(|p| !p.is_empty()).map(str::to_owned);
        Self {
            user: part(),
            role: part(),
            type_: part(),
            range: part(),
        }
    }

    /// The context these parts make of `base` (the policy's context for
    /// the path, or the label it has now); without a base, every part must
    /// be declared (the range may be left out, for a policy without MLS).
    pub fn apply(&self, base: Option<&str>) -> Result<String, String> {
        let base = match base {
            Some(b) => Self::of_context(b),
            None if self.user.is_some() && self.role.is_some() && self.type_.is_some() => {
                Self::default()
            }
            None => {
                return Err(
                    "the SELinux policy has no context for it, so `selinux` must give user, role and type (and range)"
                        .into(),
                );
            }
        };
        let pick = |mine: &Option<String>, theirs: Option<String>| mine.clone().or(theirs);
        let parts = [
            pick(&self.user, base.user),
            pick(&self.role, base.role),
            pick(&self.type_, base.type_),
            pick(&self.range, base.range),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        if parts.len() < 3 {
            return Err(format!(
                "`{}` is not a whole SELinux context (user:role:type[:range])",
                parts.join(":")
            ));
        }
        Ok(parts.join(":"))
    }
}

/// The bytes a file must hold, hashed once when they are made: every run
/// compares them with the host by hash, and the hash is all a no-op needs.
/// A desired state read back from the state directory carries the hash
/// only ([`Content::stored`]); the bytes of the files that are to change
/// are filled in before planning (`converge::hydrate`), from the object
/// store that holds every content by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    sha256: [u8; 32],
    bytes: Option<Vec<u8>>,
}

impl Content {
    /// Takes the bytes and hashes them.
    pub fn new(bytes: Vec<u8>) -> Self {
        use sha2::Digest;
        let sha256 = sha2::Sha256::digest(&bytes).into();
        Self {
            sha256,
            bytes: Some(bytes),
        }
    }

    /// A content known by its hash, its bytes kept elsewhere.
    pub fn stored(sha256: [u8; 32]) -> Self {
        Self {
            sha256,
            bytes: None,
        }
    }

    /// The bytes, when they are loaded.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.bytes.as_deref()
    }

    /// Their SHA-256.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Loads the bytes of a stored content; they must have its hash.
    pub fn fill(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let loaded = Self::new(bytes);
        if loaded.sha256 != self.sha256 {
            return Err(format!(
                "content {} came back with another hash",
                hex::encode(self.sha256)
            ));
        }
        *self = loaded;
        Ok(())
    }
}

impl Default for Content {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes().to_vec())
    }
}

/// A regular file with its final (read and rendered) content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Absolute, normalised path on the host.
    pub path: String,
    /// Present (with content and metadata) or absent.
    pub ensure: Ensure,
    /// The exact bytes the file must hold (empty when absent).
    #[serde(skip)]
    pub content: Content,
    /// Ownership and mode.
    pub meta: Meta,
    /// Never show the content in diffs or logs.
    pub sensitive: bool,
}

/// A directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Absolute, normalised path.
    pub path: String,
    /// Present or absent (only an empty directory is removed).
    pub ensure: Ensure,
    /// Ownership and mode.
    pub meta: Meta,
}

/// A symbolic link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symlink {
    /// Absolute, normalised path of the link itself.
    pub path: String,
    /// What the link points to, stored verbatim.
    pub target: String,
    /// Present or absent.
    pub ensure: Ensure,
    /// SELinux context parts that replace the policy's.
    #[serde(default, skip_serializing_if = "SelinuxParts::is_empty")]
    pub selinux: SelinuxParts,
}

/// Whether a unit should run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Active.
    Running,
    /// Inactive.
    Stopped,
}

/// A systemd unit. Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Full unit name (`nginx.service`).
    pub unit: String,
    /// Enabled at boot, if managed.
    pub enabled: Option<bool>,
    /// Running or stopped, if managed.
    pub state: Option<RunState>,
    /// Restart the unit when any of these changed in a converge.
    pub restart_on: Vec<ResourceId>,
    /// Reload the unit when any of these changed in a converge.
    pub reload_on: Vec<ResourceId>,
    /// How to restart it instead of `systemctl restart` (for units that
    /// refuse a manual stop, as auditd: `["/usr/sbin/service", "auditd",
    /// "restart"]`); also what a rollback restarts it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_command: Option<Vec<String>>,
}

/// A command driftless runs (`[[command]]`) when its guards say the job is
/// not done yet, or when something it refreshes on changed. What it does is
/// neither observed nor undone by a rollback: the guards are its only
/// idempotence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique name (`command:NAME`).
    pub name: String,
    /// Program and arguments (`shell = true` became `/bin/sh -c …`).
    pub argv: Vec<String>,
    /// Runs only while this host path does not exist.
    pub creates: Option<String>,
    /// Runs only when this argv fails (exit code other than 0).
    pub unless: Option<Vec<String>>,
    /// Runs only when this argv succeeds.
    pub onlyif: Option<Vec<String>>,
    /// Runs only when one of these changed in the same converge, once,
    /// after them.
    pub refresh_on: Vec<ResourceId>,
    /// Limit of one run (guards included); then it is killed.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Extra environment variables.
    pub environment: std::collections::BTreeMap<String, String>,
    /// Working directory (a host path); default `/`.
    pub cwd: Option<String>,
    /// Run as this user (with `runuser`); default root.
    pub user: Option<String>,
}

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
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Attempts after the first failure.
    pub retries: u32,
    /// Pause between attempts.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// One declared resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Resource {
    /// See [`Repo`].
    Repo(Repo),
    /// See [`Package`].
    Package(Package),
    /// See [`Group`].
    Group(Group),
    /// See [`User`].
    User(User),
    /// See [`Directory`].
    Directory(Directory),
    /// See [`File`].
    File(File),
    /// See [`Symlink`].
    Symlink(Symlink),
    /// See [`Command`].
    Command(Command),
    /// See [`Service`].
    Service(Service),
}

impl Resource {
    /// The identity of this resource.
    pub fn id(&self) -> ResourceId {
        match self {
            Resource::Repo(r) => ResourceId::new(Kind::Repo, &r.name),
            Resource::Package(p) => ResourceId::new(Kind::Package, &p.name),
            Resource::Group(g) => ResourceId::new(Kind::Group, &g.name),
            Resource::User(u) => ResourceId::new(Kind::User, &u.name),
            Resource::Directory(d) => ResourceId::new(Kind::Directory, &d.path),
            Resource::File(f) => ResourceId::new(Kind::File, &f.path),
            Resource::Symlink(s) => ResourceId::new(Kind::Symlink, &s.path),
            Resource::Command(c) => ResourceId::new(Kind::Command, &c.name),
            Resource::Service(s) => ResourceId::new(Kind::Service, &s.unit),
        }
    }

    /// The host path this resource manages, if it is a filesystem object.
    pub fn path(&self) -> Option<String> {
        match self {
            Resource::Repo(r) => Some(r.path()),
            Resource::Directory(d) => Some(d.path.clone()),
            Resource::File(f) => Some(f.path.clone()),
            Resource::Symlink(s) => Some(s.path.clone()),
            Resource::Package(_)
            | Resource::Group(_)
            | Resource::User(_)
            | Resource::Command(_)
            | Resource::Service(_) => None,
        }
    }
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
pub const NO_LONGER_DECLARED: &str = "(no longer declared)";

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
            if let Resource::File(f) = &d.resource {
                h.update(f.content.sha256());
            }
        }
        h.update(serde_json::to_vec(&self.checks).unwrap_or_default());
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Whether the state declares any package or service.
    pub fn has_kind(&self, kind: Kind) -> bool {
        self.resources.iter().any(|d| d.resource.id().kind == kind)
    }

    /// The declared commands, in order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.resources.iter().filter_map(|d| match &d.resource {
            Resource::Command(c) => Some(c),
            _ => None,
        })
    }

    /// Whether a declared user manages its password (then /etc/shadow is
    /// read to compare).
    pub fn manages_passwords(&self) -> bool {
        self.resources
            .iter()
            .any(|d| matches!(&d.resource, Resource::User(u) if u.password.is_some()))
    }

    /// The declared services, in order.
    pub fn services(&self) -> Vec<&Service> {
        self.resources
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Service(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The names of the declared packages; with `only_latest`, of those
    /// declared `state = "latest"`.
    pub fn package_names(&self, only_latest: bool) -> Vec<String> {
        self.resources
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Package(p) if !only_latest || p.state == PackageState::Latest => {
                    Some(p.name.clone())
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::SelinuxParts;

    fn parts(
        user: Option<&str>,
        role: Option<&str>,
        t: Option<&str>,
        range: Option<&str>,
    ) -> SelinuxParts {
        SelinuxParts {
            user: user.map(str::to_owned),
            role: role.map(str::to_owned),
            type_: t.map(str::to_owned),
            range: range.map(str::to_owned),
        }
    }

    #[test]
    fn declared_parts_replace_the_policys_and_keep_the_rest() {
        let base = Some("system_u:object_r:httpd_sys_content_t:s0");
        assert_eq!(
            parts(None, None, Some("httpd_cache_t"), None).apply(base),
            Ok("system_u:object_r:httpd_cache_t:s0".into())
        );
        // A range holds colons of its own.
        assert_eq!(
            parts(Some("unconfined_u"), None, None, Some("s0-s0:c0.c1023")).apply(base),
            Ok("unconfined_u:object_r:httpd_sys_content_t:s0-s0:c0.c1023".into())
        );
        assert_eq!(
            parts(None, None, Some("etc_t"), None).apply(Some("system_u:object_r:x_t:s0:c1,c2")),
            Ok("system_u:object_r:etc_t:s0:c1,c2".into())
        );
    }

    #[test]
    fn without_a_base_every_part_but_the_range_is_needed() {
        assert!(parts(None, None, Some("etc_t"), None).apply(None).is_err());
        assert_eq!(
            parts(Some("system_u"), Some("object_r"), Some("etc_t"), None).apply(None),
            Ok("system_u:object_r:etc_t".into())
        );
    }

    #[test]
    fn a_recorded_context_is_put_back_as_it_was() {
        for c in [
            "unconfined_u:object_r:user_tmp_t:s0",
            "system_u:object_r:etc_t:s0:c1,c2",
        ] {
            assert_eq!(SelinuxParts::of_context(c).apply(None), Ok(c.to_owned()));
        }
    }
}
