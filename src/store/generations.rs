//! `<state_dir>/generations/<n>/`: one per converge that changes something.
//!
//! A generation is written *before* the first change (`generation.json`
//! with status `in-progress`, its `snapshot.json` and `plan.json`, all
//! fsynced), and updated as the converge ends. A generation still
//! `in-progress` or `rolling-back` at startup is a converge that was cut
//! short: recovery rolls it back before anything else happens.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::json::{read_json, write_json};
use super::snapshot::Snapshot;
use crate::agent::now;

/// Default number of generations kept.
pub(crate) const DEFAULT_KEEP: usize = 10;

/// How a generation ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Changes are being applied.
    InProgress,
    /// The snapshot is being restored.
    RollingBack,
    /// `driftless rollback` is restoring the snapshot.
    Undoing,
    /// Applied, and the health checks passed.
    Applied,
    /// A step or a check failed; the host was restored.
    RolledBack,
    /// Cut short by a crash; restored at the next start.
    Interrupted,
    /// Undone by `driftless rollback`.
    Undone,
    /// Restoring failed; the host needs attention.
    RestoreFailed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::InProgress => "in-progress",
            Status::RollingBack => "rolling-back",
            Status::Undoing => "undoing",
            Status::Applied => "applied",
            Status::RolledBack => "rolled-back",
            Status::Interrupted => "interrupted",
            Status::Undone => "undone",
            Status::RestoreFailed => "restore-failed",
        })
    }
}

impl Status {
    /// Whether recovery must (try to) restore its snapshot: it did not
    /// finish, or its restore failed and may succeed once the cause is
    /// fixed. Such a generation is never pruned.
    pub fn needs_recovery(self) -> bool {
        self.unfinished() || self == Status::RestoreFailed
    }

    /// Whether the generation's converge (or its rollback) did not finish.
    pub fn unfinished(self) -> bool {
        matches!(
            self,
            Status::InProgress | Status::RollingBack | Status::Undoing
        )
    }
}

/// One generation's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Number, from 1, increasing.
    pub id: u64,
    /// Key of the desired state (commit id or `sha256:…`).
    pub key: String,
    /// Where the desired state came from.
    pub source: String,
    /// The host file used.
    pub host_file: String,
    /// The root it changed (canonical; `/` for the host itself). Only ever
    /// restored into that same root.
    /// A record without one (unknown root) is never restored anywhere.
    #[serde(default)]
    pub root: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Why it was rolled back, or what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Number of planned changes.
    pub changes: usize,
    /// dnf transactions it made.
    #[serde(default)]
    pub dnf_transactions: Vec<u64>,
    /// dnf transactions its rollback made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_dnf_transactions: Vec<u64>,
    /// The health checks run after its changes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRecord>,
    /// Resources it healed: they had drifted from a desired state already
    /// applied (a hand edit undone), as opposed to a new commit's changes.
    #[serde(default)]
    pub healed: usize,
    /// Who started the run (`schedule`, `converge --now by alice`; empty in
    /// records older than this field).
    #[serde(default)]
    pub started_by: String,
}

/// How one health check of a generation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What identifies a new generation.
pub struct NewGeneration<'a> {
    /// Key of the desired state.
    pub key: &'a str,
    /// Where it came from.
    pub source: &'a str,
    /// The host file used.
    pub host_file: &'a str,
    /// The canonical root.
    pub root: &'a str,
    /// Resources it heals (drift from a desired state already applied).
    pub healed: usize,
    /// Who started the run.
    pub started_by: &'a str,
}

/// The generations of a state directory.
pub struct Generations {
    dir: PathBuf,
}

impl Generations {
    /// The generations directory `dir` for reading: nothing is created, and
    /// a missing directory has no generations.
    pub(super) fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Opens (creating) the generations directory `dir`.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// All generations, oldest first. Unreadable ones are skipped with a
    /// warning rather than blocking every converge.
    pub fn list(&self) -> Result<Vec<Generation>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // Read-only callers open a store that may have no generations.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(super::json::readable(e, &self.dir));
            }
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", self.dir.display()))?;
            if entry.file_name().to_string_lossy().parse::<u64>().is_err() {
                continue;
            }
            match read_json::<Generation>(&entry.path().join("generation.json")) {
                Ok(Some(g)) => out.push(g),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "skipping an unreadable generation"
                ),
            }
        }
        out.sort_by_key(|g| g.id);
        Ok(out)
    }

    /// Records a new generation, durably, before its first change.
    pub fn begin(
        &self,
        new: NewGeneration<'_>,
        snapshot: &Snapshot,
        plan: &impl Serialize,
        changes: usize,
    ) -> Result<Generation> {
        // From the directories, not the readable records: a corrupt record
        // must never have its id (and its snapshot) taken over.
        let id = self.highest_id()? + 1;
        let dir = self.path(id);
        // Not create_dir_all: a snapshot is never overwritten.
        std::fs::create_dir(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        write_json(&dir, "snapshot.json", snapshot)?;
        write_json(&dir, "plan.json", plan)?;
        let g = Generation {
            id,
            key: new.key.to_owned(),
            source: new.source.to_owned(),
            host_file: new.host_file.to_owned(),
            root: new.root.to_owned(),
            started_at: now(),
            finished_at: None,
            status: Status::InProgress,
            reason: None,
            changes,
            dnf_transactions: Vec::new(),
            rollback_dnf_transactions: Vec::new(),
            checks: Vec::new(),
            healed: new.healed,
            started_by: new.started_by.to_owned(),
        };
        // The record last: a generation without it never began.
        write_json(&dir, "generation.json", &g)?;
        Ok(g)
    }

    /// The highest generation number in use, readable or not (0: none).
    fn highest_id(&self) -> Result<u64> {
        let mut highest = 0;
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("failed to list {}", self.dir.display()))?
        {
            let entry = entry.with_context(|| format!("failed to list {}", self.dir.display()))?;
            if let Ok(n) = entry.file_name().to_string_lossy().parse::<u64>() {
                highest = highest.max(n);
            }
        }
        Ok(highest)
    }

    /// Saves an updated record.
    pub fn save(&self, g: &Generation) -> Result<()> {
        write_json(&self.path(g.id), "generation.json", g)
    }

    /// Sets the status (and end time and reason) and saves.
    pub fn finish(&self, g: &mut Generation, status: Status, reason: Option<String>) -> Result<()> {
        g.status = status;
        if !status.unfinished() {
            g.finished_at = Some(now());
        }
        if reason.is_some() {
            g.reason = reason;
        }
        self.save(g)
    }

    /// Generation `id`'s record, if it exists.
    pub fn get(&self, id: u64) -> Result<Option<Generation>> {
        read_json(&self.path(id).join("generation.json"))
    }

    /// The changes generation `id` planned (`plan.json`), if recorded.
    pub fn planned<T: serde::de::DeserializeOwned>(&self, id: u64) -> Result<Option<T>> {
        read_json(&self.path(id).join("plan.json"))
    }

    /// The snapshot taken before generation `id`.
    pub fn snapshot(&self, id: u64) -> Result<Snapshot> {
        let path = self.path(id).join("snapshot.json");
        read_json(&path)?.with_context(|| format!("{} is missing", path.display()))
    }

    /// Keeps the newest `keep` generations (and any unfinished one);
    /// returns the snapshots of those kept, for garbage collection.
    pub fn prune(&self, keep: usize) -> Result<Vec<Snapshot>> {
        let all = self.list()?;
        let cut = all.len().saturating_sub(keep);
        let mut kept = Vec::new();
        for (i, g) in all.iter().enumerate() {
            if i < cut && !g.status.needs_recovery() {
                let dir = self.path(g.id);
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("failed to remove {}", dir.display()))?;
            } else {
                kept.push(self.snapshot(g.id)?);
            }
        }
        Ok(kept)
    }
}

/// Object ids and RPM file names that kept snapshots need.
pub(crate) fn referenced(snapshots: &[Snapshot]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut objects = BTreeSet::new();
    let mut rpms = BTreeSet::new();
    for s in snapshots {
        objects.extend(s.objects().map(str::to_owned));
        for n in s.packages.iter().flatten() {
            rpms.insert(super::packages::file_name(n));
        }
    }
    (objects, rpms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(key: &str) -> NewGeneration<'_> {
        NewGeneration {
            key,
            source: "directory x",
            host_file: "hosts/h.toml",
            root: "/",
            healed: 0,
            started_by: "schedule",
        }
    }

    #[test]
    fn begin_finish_list_and_prune() {
        let d = tempfile::tempdir().expect("tempdir");
        let g = Generations::open(&d.path().join("generations")).expect("open");
        for i in 0..4 {
            let mut gen_ = g
                .begin(
                    new(&format!("k{i}")),
                    &Snapshot::default(),
                    &Vec::<u8>::new(),
                    1,
                )
                .expect("begin");
            assert_eq!(gen_.id, i + 1);
            g.finish(&mut gen_, Status::Applied, None).expect("finish");
        }
        let mut open = g
            .begin(new("k5"), &Snapshot::default(), &Vec::<u8>::new(), 1)
            .expect("begin");
        assert_eq!(
            g.list()
                .expect("list")
                .iter()
                .filter(|x| x.status.unfinished())
                .count(),
            1
        );
        g.prune(2).expect("prune");
        let ids: Vec<u64> = g.list().expect("list").iter().map(|x| x.id).collect();
        assert_eq!(ids, [4, 5]);
        g.finish(&mut open, Status::RolledBack, Some("check failed".into()))
            .expect("finish");
        let last = g.list().expect("list").pop().expect("one");
        assert_eq!(last.status, Status::RolledBack);
        assert_eq!(last.reason.as_deref(), Some("check failed"));
        assert!(last.finished_at.is_some());
    }

    /// Regression: a corrupt newest `generation.json` was skipped and its id
    /// reused, overwriting that generation's snapshot.
    #[test]
    fn a_corrupt_record_keeps_its_id() {
        let d = tempfile::tempdir().expect("tempdir");
        let g = Generations::open(&d.path().join("generations")).expect("open");
        let mut first = g
            .begin(new("k1"), &Snapshot::default(), &Vec::<u8>::new(), 1)
            .expect("begin");
        g.finish(&mut first, Status::Applied, None).expect("finish");
        let second = g
            .begin(new("k2"), &Snapshot::default(), &Vec::<u8>::new(), 1)
            .expect("begin");
        let dir = d.path().join("generations/2");
        std::fs::write(dir.join("generation.json"), "{garbage").expect("corrupt");
        let snapshot_before = std::fs::read(dir.join("snapshot.json")).expect("snapshot");
        let third = g
            .begin(new("k3"), &Snapshot::default(), &Vec::<u8>::new(), 1)
            .expect("begin");
        assert_eq!((second.id, third.id), (2, 3));
        assert_eq!(
            std::fs::read(dir.join("snapshot.json")).expect("kept"),
            snapshot_before
        );
    }
}
