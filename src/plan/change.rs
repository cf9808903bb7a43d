//! The plan's vocabulary: one step ([`Op`]), one planned change with its
//! reasons ([`Change`]), the ordered [`Plan`], and why a plan cannot be
//! made ([`PlanProblem`]).

use serde::{Deserialize, Serialize};

use super::observed::FsMeta;
use super::packages::PackageChange;
use super::services::ServiceVerb;
use crate::desired::diag::Origin;
use crate::desired::kinds::Domain;
use crate::desired::model::{ArchiveFormat, Command, ResourceId};

/// The command that checks a file's new content before it replaces the
/// old: shown (and written in JSON) as its argv.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Validator {
    /// Program and arguments; the argument `%` is the staged file.
    pub argv: Vec<String>,
    /// The content is sensitive: what the validator prints (which may
    /// quote it) is not shown.
    #[serde(skip)]
    pub quiet: bool,
}

/// Metadata of directories driftless creates on its own as missing parents.
pub(super) const IMPLICIT_DIR_MODE: u32 = 0o755;

/// One step of a converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Op {
    /// Create a directory.
    CreateDir {
        /// Host path.
        path: String,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
    },
    /// Create or replace a regular file's content (atomically).
    WriteFile {
        /// Host path.
        path: String,
        /// New content (never shown: it may be secret).
        #[serde(skip)]
        content: Vec<u8>,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
        /// The command that checks the new content before it replaces the
        /// old.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validate: Option<Validator>,
    },
    /// Change owner, group or mode only.
    SetMeta {
        /// Host path.
        path: String,
        /// Owner, group, mode.
        #[serde(flatten)]
        meta: MetaView,
    },
    /// Create or retarget a symlink (atomically).
    Symlink {
        /// Host path of the link.
        path: String,
        /// Its target.
        target: String,
        /// SELinux context of the link (`None`: not managed here).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selinux: Option<String>,
    },
    /// Remove a file or symlink.
    RemoveFile {
        /// Host path.
        path: String,
    },
    /// Remove an empty directory.
    RemoveDir {
        /// Host path.
        path: String,
    },
    /// Extract an archive into a new directory that replaces the one at
    /// `path` whole (the old tree is kept beside it until the converge
    /// commits, so a rollback puts it back).
    Extract {
        /// Host path of the directory.
        path: String,
        /// Where the archive came from (a URL or a repo file), for people.
        source: String,
        /// The archive's SHA-256, hex: what the marker records.
        sha256: String,
        /// `tar.gz` or `tar`.
        format: ArchiveFormat,
        /// Leading components dropped from each entry.
        strip_components: u32,
        /// Owner, group, mode of the directory (its entries get the owner
        /// and group).
        #[serde(flatten)]
        meta: MetaView,
        /// The archive's bytes, checked while planning (never shown, never
        /// recorded).
        #[serde(skip)]
        archive: std::sync::Arc<Vec<u8>>,
    },
    /// Remove a tree driftless extracted (its directory holds the
    /// archive marker), with everything in it.
    RemoveTree {
        /// Host path.
        path: String,
    },
    /// Set the differing facets of a host setting (a kernel parameter's
    /// live value and persisting file).
    Set {
        /// Who keeps it.
        domain: Domain,
        /// Its name in the domain.
        name: String,
        /// Each facet that changes, from what to what.
        facets: Vec<FacetChange>,
    },
    /// Change a package. All package changes of a converge are applied in
    /// one dnf transaction.
    Package {
        /// Package name.
        name: String,
        /// What to do.
        #[serde(flatten)]
        change: PackageChange,
    },
    /// Create, change or remove a local user or group with shadow-utils.
    Account {
        /// What is done to what.
        step: AccountAction,
        /// The program (`useradd`, `usermod`, `userdel`, `groupadd`,
        /// `groupmod`, `groupdel`).
        program: String,
        /// Its arguments, the account's name last (a password hash is not
        /// among them: it is never shown).
        args: Vec<String>,
        /// The password hash to set (`-p`), kept out of every output.
        #[serde(skip)]
        password: Option<String>,
    },
    /// `systemctl daemon-reload`, once, before any other service step.
    DaemonReload,
    /// One systemctl verb on one unit.
    Service {
        /// Unit name.
        unit: String,
        /// What to do.
        verb: ServiceVerb,
    },
    /// Run a `[[command]]`. What it does is not undone by a rollback.
    RunCommand {
        /// Its name.
        name: String,
        /// What runs.
        argv: Vec<String>,
        /// Everything needed to run it (environment, user, ...); not shown,
        /// since its environment may hold what should not be.
        #[serde(skip)]
        command: Box<Command>,
    },
}

impl Op {
    /// The host path the step changes, for filesystem steps.
    pub fn path(&self) -> Option<&str> {
        match self {
            Op::CreateDir { path, .. }
            | Op::WriteFile { path, .. }
            | Op::SetMeta { path, .. }
            | Op::Symlink { path, .. }
            | Op::RemoveFile { path }
            | Op::RemoveDir { path }
            | Op::Extract { path, .. }
            | Op::RemoveTree { path } => Some(path),
            Op::Set { .. }
            | Op::Package { .. }
            | Op::Account { .. }
            | Op::DaemonReload
            | Op::Service { .. }
            | Op::RunCommand { .. } => None,
        }
    }

    /// A short verb for humans.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::CreateDir { .. } => "create directory",
            Op::WriteFile { .. } => "write file",
            Op::SetMeta { .. } => "set owner/group/mode",
            Op::Symlink { .. } => "link",
            Op::RemoveFile { .. } => "remove",
            Op::RemoveDir { .. } => "remove directory",
            Op::Extract { .. } => "extract",
            Op::RemoveTree { .. } => "remove tree",
            Op::Set { .. } => "set",
            Op::Package { change, .. } => match change {
                PackageChange::Install { .. } => "install",
                PackageChange::Upgrade { .. } => "upgrade",
                PackageChange::Downgrade { .. } => "downgrade",
                PackageChange::Remove { .. } => "remove package",
            },
            Op::Account { step, .. } => step.as_str(),
            Op::DaemonReload => "daemon-reload",
            Op::Service { verb, .. } => verb.as_str(),
            Op::RunCommand { .. } => "run",
        }
    }

    /// Whether this is a service-phase step (re-planned after packages).
    pub fn is_service(&self) -> bool {
        matches!(self, Op::DaemonReload | Op::Service { .. })
    }
}

/// One facet of a setting as a step changes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetChange {
    /// The facet (`value`, `file`).
    pub facet: String,
    /// What it is now (`None`: absent); written with credentials masked.
    #[serde(serialize_with = "masked")]
    pub from: Option<String>,
    /// What it becomes (`None`: absent); written with credentials masked
    /// (applied from the plan in memory, never from its JSON).
    #[serde(serialize_with = "masked")]
    pub to: Option<String>,
}

/// A facet's value as JSON and the history hold it: a password in a
/// mount's options is masked (`password=********`).
fn masked<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    value.as_deref().map(without_credentials).serialize(s)
}

/// Mount options whose value is a credential (CIFS's `password=` and
/// `pass=`, and the like), written by hand into an fstab line that a
/// `[[mount]]` then manages.
const CREDENTIAL_OPTIONS: [&str; 3] = ["password", "pass", "passwd"];

/// `text` with the value of each credential option (`password=…`)
/// masked: a setting's current and desired values are shown in reasons,
/// JSON and the history, and a password never is.
pub(crate) fn without_credentials(text: &str) -> String {
    const SEPARATORS: [char; 3] = [',', ' ', '\t'];
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(SEPARATORS) {
        let (body, sep) = match piece.strip_suffix(SEPARATORS) {
            Some(body) => (body, &piece[body.len()..]),
            None => (piece, ""),
        };
        match body.split_once('=') {
            Some((key, _)) if CREDENTIAL_OPTIONS.contains(&key) => {
                out.push_str(key);
                out.push_str("=********");
            }
            _ => out.push_str(body),
        }
        out.push_str(sep);
    }
    out
}

/// What an account step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountAction {
    /// `groupadd`
    CreateGroup,
    /// `groupmod`
    ChangeGroup,
    /// `groupdel`
    RemoveGroup,
    /// `useradd`
    CreateUser,
    /// `usermod`
    ChangeUser,
    /// `userdel` (the home directory is left)
    RemoveUser,
}

impl AccountAction {
    /// The verb for humans.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountAction::CreateGroup => "create group",
            AccountAction::ChangeGroup => "change group",
            AccountAction::RemoveGroup => "remove group",
            AccountAction::CreateUser => "create user",
            AccountAction::ChangeUser => "change user",
            AccountAction::RemoveUser => "remove user",
        }
    }
}

/// Owner, group and mode, with names kept for people and ids for the
/// system calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaView {
    /// Owner name as declared.
    pub owner: String,
    /// Group name as declared.
    pub group: String,
    /// Mode as octal text.
    pub mode: String,
    /// SELinux context to set (`None`: labels are not managed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// Numbers to apply.
    #[serde(skip, default = "FsMeta::unknown")]
    pub ids: FsMeta,
    /// The owner or group does not exist yet; a package in this converge is
    /// expected to create it. Such a step is never applied as planned: the
    /// steps after the package transaction are planned again.
    #[serde(skip, default)]
    pub deferred: bool,
}

/// The engine's steps, in the order a converge applies them: the one place
/// that order is written. The planner emits its changes by it, and the
/// apply runs each phase in turn, with what is particular to it (one
/// package transaction; the steps after it and after the accounts planned
/// again; each command's guards checked as it is about to run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// What the package transaction reads: repo files and their parents.
    BeforePackages,
    /// The one package transaction.
    Packages,
    /// Users and groups: after the packages that may create them, before
    /// what they own.
    Accounts,
    /// Directories, created outermost first, and changed.
    Directories,
    /// Files and symlinks, in declaration order.
    #[default]
    Files,
    /// What is removed, deepest first.
    Removals,
    /// Host settings (kernel parameters), after the files and packages
    /// they may need, before the commands and services that read them.
    Settings,
    /// Commands, in declaration order.
    Commands,
    /// daemon-reload, then units: enablement, start and stop, restarts and
    /// reloads.
    Services,
}

impl Phase {
    /// Every phase, in order.
    pub(crate) const ALL: [Phase; 9] = [
        Phase::BeforePackages,
        Phase::Packages,
        Phase::Accounts,
        Phase::Directories,
        Phase::Files,
        Phase::Removals,
        Phase::Settings,
        Phase::Commands,
        Phase::Services,
    ];

    /// The phase a step of `op` belongs to, unless its planner says
    /// otherwise (a repo file is written before the packages; a change of
    /// a directory's metadata is a directory's).
    fn of(op: &Op) -> Phase {
        match op {
            Op::Package { .. } => Phase::Packages,
            Op::Account { .. } => Phase::Accounts,
            Op::CreateDir { .. } => Phase::Directories,
            Op::WriteFile { .. } | Op::SetMeta { .. } | Op::Symlink { .. } | Op::Extract { .. } => {
                Phase::Files
            }
            Op::RemoveFile { .. } | Op::RemoveDir { .. } | Op::RemoveTree { .. } => Phase::Removals,
            Op::Set { .. } => Phase::Settings,
            Op::RunCommand { .. } => Phase::Commands,
            Op::DaemonReload | Op::Service { .. } => Phase::Services,
        }
    }
}

/// One planned change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChangeWire")]
pub struct Change {
    /// The phase of the converge it is applied in (not written: one read
    /// back is in the phase of what it does).
    #[serde(skip_serializing)]
    pub(crate) phase: Phase,
    /// The resource it converges (for implicit parents, the directory).
    pub resource: ResourceId,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
    /// Why, in words: each difference found.
    pub reasons: Vec<String>,
    /// Unified diff of text content, when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The step creates what did not exist (a file, link, directory or
    /// package), as opposed to changing or removing it.
    #[serde(default)]
    pub creates: bool,
}

/// A [`Change`] as JSON holds it.
#[derive(Deserialize)]
struct ChangeWire {
    /// The resource it converges (for implicit parents, the directory).
    resource: ResourceId,
    /// What to do.
    #[serde(flatten)]
    op: Op,
    /// Why, in words: each difference found.
    reasons: Vec<String>,
    /// Unified diff of text content, when shown.
    #[serde(default)]
    diff: Option<String>,
    /// The step creates what did not exist (a file, link, directory or
    /// package), as opposed to changing or removing it.
    #[serde(default)]
    creates: bool,
}

impl From<ChangeWire> for Change {
    fn from(w: ChangeWire) -> Self {
        Change {
            phase: Phase::of(&w.op),
            resource: w.resource,
            op: w.op,
            reasons: w.reasons,
            diff: w.diff,
            creates: w.creates,
        }
    }
}

/// How a change shows in a list: `+` created, `~` changed, `-` removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// Something that did not exist is created.
    Created,
    /// Something that exists is changed.
    Changed,
    /// Something that exists is removed.
    Removed,
}

impl Marker {
    /// The sign shown before the resource.
    pub fn sign(self) -> &'static str {
        match self {
            Marker::Created => "+",
            Marker::Changed => "~",
            Marker::Removed => "-",
        }
    }
}

/// The ordered changes for one host.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Changes in apply order.
    pub changes: Vec<Change>,
    /// What the operator should know that is not a change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the operator should know before the plan is applied, and
    /// nothing after (`command:x will run`, a unit checked again after the
    /// package transaction): shown by `plan` and a dry run, not by the
    /// summary of a converge that applied it.
    #[serde(skip)]
    pub preview_notes: Vec<String>,
    /// How many leading changes are the repo phase (repo files and the
    /// directories they need), applied before the package transaction.
    #[serde(skip)]
    pub repo_phase: usize,
}

impl Plan {
    /// Whether the host is already converged.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A reason the plan cannot be made; the host is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{resource} ({origin}): {message}")]
pub struct PlanProblem {
    /// The resource concerned.
    pub resource: ResourceId,
    /// Where it is declared.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// The resources that differ from the desired state among `changes`:
/// each once, in order, leaving out the steps that only follow from others
/// (a restart or reload on a change, daemon-reload, a command's run).
pub(crate) fn differing(changes: &[Change]) -> Vec<&ResourceId> {
    let mut seen = std::collections::BTreeSet::new();
    changes
        .iter()
        .filter(|c| !c.is_consequence())
        .map(|c| &c.resource)
        .filter(|r| seen.insert(*r))
        .collect()
}

impl Change {
    /// Whether the step only follows from others (a restart or reload on a
    /// change, daemon-reload, a command's run): no drift of its own.
    pub fn is_consequence(&self) -> bool {
        use super::services::ServiceVerb;
        match &self.op {
            Op::DaemonReload | Op::RunCommand { .. } => true,
            Op::Service { verb, .. } => matches!(
                verb,
                ServiceVerb::Restart | ServiceVerb::TryRestart | ServiceVerb::Reload
            ),
            _ => false,
        }
    }

    /// A change without a diff. Creating a directory or installing a
    /// package always creates; [`Change::creating`] says so for the rest.
    pub fn new(id: &ResourceId, op: Op, reasons: Vec<String>) -> Self {
        let creates = matches!(
            op,
            Op::CreateDir { .. }
                | Op::Package {
                    change: PackageChange::Install { .. },
                    ..
                }
        );
        Change {
            phase: Phase::of(&op),
            resource: id.clone(),
            op,
            reasons,
            diff: None,
            creates,
        }
    }

    /// The same change, in `phase`.
    pub(crate) fn in_phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// The same change, marked as creating what did not exist.
    pub fn creating(mut self) -> Self {
        self.creates = true;
        self
    }

    /// How the change shows in a list.
    pub fn marker(&self) -> Marker {
        match &self.op {
            Op::RemoveFile { .. }
            | Op::RemoveDir { .. }
            | Op::RemoveTree { .. }
            | Op::Package {
                change: PackageChange::Remove { .. },
                ..
            } => Marker::Removed,
            _ if self.creates => Marker::Created,
            _ => Marker::Changed,
        }
    }

    /// The same change, with a diff of its content.
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;

    #[test]
    fn changes_read_back_from_json_keep_their_words_not_their_content() {
        let meta = MetaView {
            owner: "root".into(),
            group: "root".into(),
            mode: "0644".into(),
            selinux: None,
            ids: FsMeta {
                uid: 0,
                gid: 0,
                mode: 0o644,
            },
            deferred: false,
        };
        let changes = vec![
            Change::new(
                &ResourceId::new(Kind::File, "/etc/motd"),
                Op::WriteFile {
                    path: "/etc/motd".into(),
                    content: b"secret".to_vec(),
                    meta,
                    validate: None,
                },
                vec!["content differs".into()],
            )
            .with_diff(Some("-a\n+b\n".into())),
            Change::new(
                &ResourceId::new(Kind::Package, "nginx"),
                Op::Package {
                    name: "nginx".into(),
                    change: PackageChange::Upgrade {
                        spec: "nginx-1.2-1".into(),
                        from: "nginx-1.1-1.x86_64".into(),
                    },
                },
                vec!["1.1-1 installed, pinned to 1.2-1".into()],
            ),
            Change::new(
                &ResourceId::new(Kind::Service, "nginx.service"),
                Op::Service {
                    unit: "nginx.service".into(),
                    verb: ServiceVerb::Restart,
                },
                vec!["restart_on file:/etc/nginx.conf changed".into()],
            ),
        ];
        let json = serde_json::to_string(&changes).expect("serialize");
        assert!(!json.contains("secret"), "{json}");
        let back: Vec<Change> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].reasons, changes[0].reasons);
        assert_eq!(back[0].diff, changes[0].diff);
        assert!(
            matches!(&back[0].op, Op::WriteFile { content, meta, .. } if content.is_empty() && meta.mode == "0644")
        );
        assert_eq!(back[1], changes[1]);
        assert_eq!(back[2], changes[2]);
    }
}
