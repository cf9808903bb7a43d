//! What the host looks like now, as plain values: the planner's input.
//! `system` fills these in; nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::rpmver::{Evr, Nevra};
use crate::desired::model::ResourceId;

impl Observed {
    /// What is there, in one word, for logs.
    pub fn kind_word(&self) -> &'static str {
        match self {
            Observed::Missing { .. } => "missing",
            Observed::File { .. } => "file",
            Observed::Dir { .. } => "directory",
            Observed::Symlink { .. } => "symlink",
            Observed::Other { what } => what,
        }
    }
}

/// Files up to this size keep their content in an observation, for diffs,
/// snapshots and edits without a second read.
pub(crate) const KEEP_CONTENT_MAX: u64 = 1024 * 1024;

/// Entry names kept per observed directory: enough to tell whether a plan
/// empties it, without listing huge directories in full on every run.
pub(crate) const DIR_LIST_MAX: usize = 64;

/// Everything observed about the host for one plan.
#[derive(Clone, Debug, Default)]
pub(crate) struct ObservedHost {
    /// Each managed path (and nothing else), by host path.
    pub paths: BTreeMap<String, Observed>,
    /// Users and groups of the target root.
    pub accounts: Accounts,
    /// Installed builds of each declared package (empty: not installed).
    pub packages: BTreeMap<String, Vec<Nevra>>,
    /// For a declared name no installed package is called by: the installed
    /// builds that provide it (a virtual provide), when any do.
    pub provided: BTreeMap<String, Vec<Nevra>>,
    /// Newest available EVR of each `latest` package (from one metadata
    /// query; names no repository offers are missing).
    pub latest: BTreeMap<String, Evr>,
    /// Why the metadata query failed, if it did (for example: the only
    /// repository is declared in this very converge and not written yet).
    pub latest_error: Option<String>,
    /// State of each declared unit.
    pub units: BTreeMap<String, UnitObs>,
    /// Resources whose unit runs a configuration other than the one they
    /// wrote (a firewalld zone changed at runtime only): their unit is
    /// reloaded ([`crate::desired::kinds::KindDef::runtime_probe`]).
    pub runtime_stale: BTreeSet<ResourceId>,
    /// Whether this is the running host (a live systemd), not a `--root`.
    pub live: bool,
    /// An image-mode host (bootc, rpm-ostree: `/run/ostree-booted`): `/usr`
    /// is read-only and packages come with the image, never from dnf.
    pub image_mode: bool,
    /// What the guards of each declared command found, by command name.
    pub guards: BTreeMap<String, Guards>,
    /// The regular files found with the desired content, with their stat:
    /// what the next run may trust without reading them ([`StatCache`]).
    pub verified: BTreeMap<String, CachedFile>,
    /// What dnf 5's override files (`/etc/dnf/repos.override.d/*.repo`,
    /// written by `dnf config-manager setopt`) set for repositories, by
    /// section (a repo id or a glob such as `*`): the file and the keys.
    /// They win over the repo files driftless writes.
    pub repo_overrides: Vec<RepoOverride>,
    /// The SELinux policy's context for each managed path (and each missing
    /// parent) as what it is declared to be; `None` for a path the policy
    /// gives no context. The map itself is `None` when the root has no
    /// policy: then no label is read, chosen or set.
    pub policy_labels: Option<BTreeMap<String, Option<String>>>,
    /// Which contents were secret when driftless applied them (from the
    /// state directory, not the host): a file found holding one is never
    /// shown in a diff.
    pub secret_contents: super::content::SecretContents,
    /// The marker of each declared archive whose directory holds one
    /// (what driftless extracted there), by host path.
    pub archive_markers: BTreeMap<String, String>,
    /// The declared packages with the rpm database's identity before they
    /// were queried, for the next run to trust; `None` when there is
    /// nothing to trust (no database, or one changed a moment ago).
    pub package_cache: Option<PackageCache>,
    /// Each declared setting as it is now, by `domain:name`.
    pub settings: BTreeMap<String, SettingObs>,
}

/// A host setting as observed (`system::settings` reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SettingObs {
    /// The facets read, each a string or `None` (absent).
    pub facets: crate::desired::kinds::Facets,
    /// Why the host has no such setting (a kernel parameter this kernel
    /// lacks), if it has none.
    pub missing: Option<String>,
    /// Declared facets that cannot be managed on this root (the live
    /// value with `--root`), each with why.
    pub not_here: Vec<(String, String)>,
    /// The missing directories above the file a facet is kept in,
    /// outermost first: created by the plan (and so snapshotted and
    /// removed again by a rollback) when the facet is written.
    pub missing_parents: Vec<String>,
    /// The values the host allows (an alternative's registered paths);
    /// empty when it does not say.
    pub choices: Vec<String>,
}

impl SettingObs {
    /// The facet `name` as read (`None`: absent, or not read).
    pub(crate) fn facet(&self, name: &str) -> Option<&str> {
        self.facets
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The key settings are observed under: `domain:name`.
pub(crate) fn setting_key(domain: crate::desired::kinds::Domain, name: &str) -> String {
    format!("{}:{name}", domain.as_str())
}

/// One section of a dnf 5 repo override file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RepoOverride {
    /// The file (host path).
    pub file: String,
    /// The section: a repo id, or a glob of them (`*`, `epel*`).
    pub section: String,
    /// `key=value` lines it sets.
    pub settings: Vec<String>,
}

impl RepoOverride {
    /// Whether it applies to the repository `id` (dnf's globs: `*`, `?`).
    pub(crate) fn applies_to(&self, id: &str) -> bool {
        glob(self.section.as_bytes(), id.as_bytes())
    }

    /// The sections of a repo override file's `text`.
    pub(crate) fn parse(file: &str, text: &str) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                out.push(Self {
                    file: file.to_owned(),
                    section: section.trim().to_owned(),
                    settings: Vec::new(),
                });
            } else if let Some(cur) = out.last_mut() {
                cur.settings.push(line.to_owned());
            }
        }
        out.retain(|o| !o.settings.is_empty());
        out
    }
}

/// `*` and `?` matching, as dnf matches repo ids.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// What a command's guards found (each `None` when not declared or not
/// evaluated: a root that does not exist yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Guards {
    /// Whether the `creates` path exists.
    pub creates_exists: Option<bool>,
    /// What `unless` did.
    pub unless: Option<GuardRun>,
    /// What `onlyif` did.
    pub onlyif: Option<GuardRun>,
}

/// What one guard command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GuardRun {
    /// It ran and exited with this code; the tail of its output.
    Exited(i32, String),
    /// It could not be started (not there yet: a script this converge
    /// installs), with why; it is run again when the command is due.
    NotRunnable(String),
}

/// What identifies one version of a file without reading it, as git's
/// index does: a content change always moves `ctime` (which no user can set
/// back), a replacement moves the inode, and the rest is checked too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatKey {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Status change time, seconds and nanoseconds.
    pub ctime: (i64, i64),
    /// `st_mode`, file type included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A regular file driftless read and found with a content hash, and the
/// stat it had then.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedFile {
    /// The stat when it was hashed.
    pub stat: StatKey,
    /// SHA-256 of the content then, hex.
    pub sha256: String,
    /// Its SELinux context then, in a cache that keeps labels (setting one
    /// moves ctime, so the stat vouches for it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The stat cache of one root: for each managed file last found in sync,
/// its stat and hash. A file whose stat is exactly the recorded one is not
/// read again; any difference, and it is read and hashed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatCache {
    /// The root the entries belong to (canonical); another root's cache is
    /// never used.
    pub root: String,
    /// Entries by host path.
    pub files: BTreeMap<String, CachedFile>,
    /// Whether the entries carry SELinux contexts (the root had a policy
    /// when they were made): a cache without them is not trusted on a root
    /// with a policy, where each file's label must be known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub labels: bool,
    /// The declared packages as last found, with the rpm database's
    /// identity then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageCache>,
}

/// The stat of each file and directory of the rpm database (`None`: not
/// there), by path under the root.
pub(crate) type DbIdentity = Vec<(String, Option<StatKey>)>;

/// The declared packages as a run found them, and the identity of the rpm
/// database when it asked: while the database keeps that identity (no rpm
/// or dnf transaction since, no rebuild), a query would find the same, so
/// the no-op runs no `rpm -q`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageCache {
    /// The database's identity before the query.
    pub db: DbIdentity,
    /// The installed builds of each queried name (empty: not installed).
    pub installed: BTreeMap<String, Vec<Nevra>>,
}

impl PackageCache {
    /// What it says of `names`, if it may be trusted with the database as
    /// `db` is now (`now`: seconds since the epoch): the same names, the
    /// same identity, none of it racily recent.
    pub fn reuse(
        &self,
        names: &[String],
        db: &DbIdentity,
        now: i64,
    ) -> Option<BTreeMap<String, Vec<Nevra>>> {
        let same_names = self.installed.len() == names.len()
            && names.iter().all(|n| self.installed.contains_key(n));
        (same_names && self.db == *db && !racy(db, now)).then(|| self.installed.clone())
    }

    /// A cache of `installed`, found with the database as `db` was before
    /// the query; `None` if `db` is too recent to trust later.
    pub fn of(
        db: Option<DbIdentity>,
        installed: &BTreeMap<String, Vec<Nevra>>,
        now: i64,
    ) -> Option<Self> {
        let db = db.filter(|db| !racy(db, now))?;
        Some(Self {
            db,
            installed: installed.clone(),
        })
    }
}

/// Whether any part of `db` changed within the racily-clean window.
fn racy(db: &DbIdentity, now: i64) -> bool {
    db.iter().flat_map(|(_, k)| k).any(|k| k.is_racy(now))
}

/// A stat this close to the time of looking (seconds) is not trusted: a
/// write within the same timestamp tick would leave it unchanged (git's
/// "racily clean" entries).
pub(crate) const RACY_SECONDS: i64 = 2;

impl StatKey {
    /// Whether the file changed so recently before `now` (seconds since
    /// the epoch) that a later write could share its timestamps.
    pub fn is_racy(&self, now: i64) -> bool {
        now - self.ctime.0 < RACY_SECONDS || now - self.mtime.0 < RACY_SECONDS
    }
}

/// What systemd says about one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitObs {
    /// `LoadState=loaded` (false: not-found, masked, error).
    pub loaded: bool,
    /// `ActiveState` (`active`, `inactive`, `failed`, ...); empty when not live.
    pub active_state: String,
    /// `UnitFileState` (`enabled`, `disabled`, `static`, `masked`, ...).
    pub unit_file_state: String,
    /// `NeedDaemonReload=yes`: its unit file changed on disk.
    pub need_daemon_reload: bool,
    /// Whether the live state is known (false with `--root`, where only
    /// unit files can be read).
    pub live: bool,
    /// `RefuseManualStart=yes`: `systemctl start` is refused.
    pub refuse_manual_start: bool,
    /// `RefuseManualStop=yes`: `systemctl stop` and `restart` are refused
    /// (auditd).
    pub refuse_manual_stop: bool,
}

impl UnitObs {
    /// Enabled at boot, as far as `enabled = true/false` is concerned.
    /// `static`, `indirect`, `generated` and `alias` units cannot be
    /// enabled or disabled, so they count as whatever is wanted.
    pub fn enabled(&self) -> Option<bool> {
        match self.unit_file_state.as_str() {
            "enabled" | "enabled-runtime" => Some(true),
            "disabled" => Some(false),
            _ => None,
        }
    }

    /// Running or about to be (`active`, `reloading`, `activating`).
    pub fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating"
        )
    }
}

/// Owner, group and permission bits as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsMeta {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl FsMeta {
    /// No owner and no permissions: what a change read back from JSON
    /// carries (only its words are shown; it is never applied).
    pub fn unknown() -> Self {
        Self {
            uid: u32::MAX,
            gid: u32::MAX,
            mode: 0,
        }
    }
}

/// What is at a host path now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing. `missing_parents` lists the ancestors that do not exist
    /// either, outermost first.
    Missing {
        /// Ancestors that would have to be created first.
        missing_parents: Vec<String>,
    },
    /// A regular file.
    File {
        /// Ownership and mode.
        meta: FsMeta,
        /// SELinux context (read only where the root has a policy).
        label: Option<String>,
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content.
        sha256: [u8; 32],
        /// The content, when small enough to diff.
        content: Option<Vec<u8>>,
    },
    /// A directory.
    Dir {
        /// Ownership and mode.
        meta: FsMeta,
        /// SELinux context (read only where the root has a policy).
        label: Option<String>,
        /// Names of its entries, at most [`DIR_LIST_MAX`] + 1 (more than
        /// the cap means "too many to remove as part of a plan").
        entries: Vec<String>,
    },
    /// A symbolic link (not followed).
    Symlink {
        /// The link's target, verbatim.
        target: String,
        /// SELinux context of the link itself (read only where the root
        /// has a policy).
        label: Option<String>,
    },
    /// A device, FIFO or socket: never touched.
    Other {
        /// What it is, in words.
        what: &'static str,
    },
}

/// Name <-> id maps of one root. `root` is uid and gid 0 even when the root
/// has no `/etc/passwd` yet (a fresh tree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accounts {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
    /// The /etc/passwd entry of each user.
    pub passwd: HashMap<String, PasswdEntry>,
    /// The members of each group (the fourth field of /etc/group).
    pub members: HashMap<String, Vec<String>>,
    /// The password hash of each user in /etc/shadow; read only when a
    /// declared user manages its password (`None`: not read).
    pub shadow: Option<HashMap<String, String>>,
}

/// One user's line of /etc/passwd, past its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// GECOS comment.
    pub comment: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

impl Accounts {
    /// Builds the maps from the text of `passwd` and `group`.
    pub(crate) fn parse(passwd: &str, group: &str) -> Self {
        let mut a = Self::default();
        for (name, id) in entries(passwd) {
            a.user_names.entry(id).or_insert_with(|| name.clone());
            a.users.entry(name).or_insert(id);
        }
        for (name, id) in entries(group) {
            a.group_names.entry(id).or_insert_with(|| name.clone());
            a.groups.entry(name).or_insert(id);
        }
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, gid, comment, home, shell] = f[..]
                && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
            {
                a.passwd.entry(name.to_owned()).or_insert(PasswdEntry {
                    uid,
                    gid,
                    comment: comment.to_owned(),
                    home: home.to_owned(),
                    shell: shell.to_owned(),
                });
            }
        }
        for line in group.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let [name, _, _, members] = f[..] {
                let members = members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                a.members.entry(name.to_owned()).or_insert(members);
            }
        }
        a.users.entry("root".into()).or_insert(0);
        a.groups.entry("root".into()).or_insert(0);
        a.user_names.entry(0).or_insert_with(|| "root".into());
        a.group_names.entry(0).or_insert_with(|| "root".into());
        a
    }

    /// The uid of a user name or numeric string.
    pub(crate) fn uid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.users.get(name).copied())
    }

    /// The gid of a group name or numeric string.
    pub(crate) fn gid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.groups.get(name).copied())
    }

    /// The name of a uid, or the number.
    pub(crate) fn user_name(&self, uid: u32) -> String {
        self.user_names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The name of a gid, or the number.
    pub(crate) fn group_name(&self, gid: u32) -> String {
        self.group_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    /// Whether a group of this name exists.
    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// The names of all groups.
    pub(crate) fn group_names(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// The supplementary groups of `user` (the groups listing it), sorted.
    pub(crate) fn groups_of(&self, user: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.iter().any(|u| u == user))
            .map(|(g, _)| g.clone())
            .collect();
        out.sort();
        out
    }

    /// Adds the hashes of /etc/shadow's text.
    pub(crate) fn with_shadow(mut self, shadow: &str) -> Self {
        self.shadow = Some(
            shadow
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    Some((f.next()?.to_owned(), f.next()?.to_owned()))
                })
                .collect(),
        );
        self
    }
}

fn entries(text: &str) -> impl Iterator<Item = (String, u32)> + '_ {
    text.lines().filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?.trim();
        let id = f.nth(1)?.trim().parse().ok()?;
        (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_owned(), id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ctime: i64) -> StatKey {
        StatKey {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (ctime, 0),
            ctime: (ctime, 0),
            mode: 0o100644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn a_package_cache_is_trusted_only_for_the_same_names_and_database_and_never_racily() {
        let db: DbIdentity = vec![
            ("var/lib/rpm/rpmdb.sqlite".into(), Some(key(100))),
            ("var/lib/rpm/rpmdb.sqlite-wal".into(), None),
        ];
        let installed = BTreeMap::from([("a".to_owned(), Vec::new())]);
        let names = ["a".to_owned()];
        // Recorded a moment after the database changed: not kept at all.
        assert_eq!(PackageCache::of(Some(db.clone()), &installed, 101), None);
        let cache = PackageCache::of(Some(db.clone()), &installed, 200).expect("settled");
        assert_eq!(cache.reuse(&names, &db, 300), Some(installed.clone()));
        // Another name set, a moved database, a write-ahead log appearing.
        assert_eq!(cache.reuse(&["b".to_owned()], &db, 300), None);
        assert_eq!(cache.reuse(&[], &db, 300), None);
        let mut moved = db.clone();
        moved[0].1 = Some(StatKey { ino: 9, ..key(100) });
        assert_eq!(cache.reuse(&names, &moved, 300), None);
        let mut wal = db.clone();
        wal[1].1 = Some(key(100));
        assert_eq!(cache.reuse(&names, &wal, 300), None);
        // No database: nothing to trust.
        assert_eq!(PackageCache::of(None, &installed, 300), None);
    }

    #[test]
    fn dnf5_repo_overrides_and_their_globs() {
        let text = "# Generated by dnf5 config-manager.\n[epel]\nenabled=0\n\n[*-debuginfo]\nenabled=1\n[empty]\n";
        let o = RepoOverride::parse("/etc/dnf/repos.override.d/99-config_manager.repo", text);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].settings, ["enabled=0"]);
        assert!(o[0].applies_to("epel") && !o[0].applies_to("epel-next"));
        assert!(o[1].applies_to("fedora-debuginfo") && !o[1].applies_to("fedora"));
        let all = RepoOverride {
            section: "*".into(),
            ..RepoOverride::default()
        };
        assert!(all.applies_to("anything"));
    }

    #[test]
    fn parses_passwd_and_group() {
        let a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/bash\nnginx:x:990:985::/var/lib/nginx:/sbin/nologin\nbroken\n",
            "root:x:0:\nnginx:x:985:\n",
        );
        assert_eq!(a.uid("nginx"), Some(990));
        assert_eq!(a.gid("nginx"), Some(985));
        assert_eq!(a.uid("1234"), Some(1234));
        assert_eq!(a.uid("nobody"), None);
        assert_eq!(a.user_name(990), "nginx");
        assert_eq!(a.user_name(7), "7");
    }

    #[test]
    fn root_exists_in_an_empty_tree() {
        let a = Accounts::parse("", "");
        assert_eq!(a.uid("root"), Some(0));
        assert_eq!(a.gid("root"), Some(0));
    }
}
