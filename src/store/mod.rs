//! Everything under the state directory (`/var/lib/driftless`), behind one
//! handle: the lock, the agent state (`state.json`), the generations with
//! their snapshots, the object store, the last good state, the package
//! store and the place of the git cache.
//!
//! Nothing else reads or writes the state directory. Every file here is
//! written atomically and durably ([`crate::durable`]), readable by root
//! only: the state directory holds the config repo, which may contain
//! secrets.

mod desired_cache;
pub(crate) mod generations;
pub(crate) mod inventory;
mod json;
pub(crate) mod lastgood;
pub(crate) mod objects;
pub(crate) mod packages;
mod secret_contents;
pub(crate) mod snapshot;

use std::path::{Path, PathBuf};

use crate::desired::model::{PathDecl, PathForm, Prim};
use anyhow::{Context, Result};

use crate::agent::AgentState;
use crate::durable;
use json::write_json;

pub(crate) use generations::{CheckRecord, Generation, Generations, NewGeneration, Status};
pub(crate) use objects::Objects;
pub(crate) use packages::PackageStore;
pub(crate) use snapshot::{Prior, ServicePrior, SettingPrior, Snapshot};

const STATE_FILE: &str = "state.json";
/// The stat cache of the managed files.
const STAT_CACHE_FILE: &str = "stat-cache.json";
/// The last converge's record.
const LAST_RUN_FILE: &str = "last-run.json";
/// This host's fleet membership: its lease and its published record.
const FLEET_FILE: &str = "fleet.json";

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store at `dir`. Nothing is read or created until it is used.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The state directory's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the state directory if missing, readable by root only.
    pub fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| {
                    format!("failed to create state directory {}", self.dir.display())
                })?;
        }
        Ok(())
    }

    /// Takes the state lock, waiting for another driftless to finish.
    pub fn lock(&self) -> Result<StateLock> {
        self.ensure()?;
        StateLock::acquire(&self.dir.join("lock"))
    }

    /// Reads the agent state; a missing file is the empty state. A file of
    /// another shape is an error, never an empty state: that would forget
    /// the applied commit the rewind check needs.
    pub fn load_state(&self) -> Result<AgentState> {
        let path = self.dir.join(STATE_FILE);
        let broken = |why: String| {
            anyhow::anyhow!(
                "agent state {} is not what driftless writes ({why}). \
                 Restore it from a backup, or move it aside to start afresh (the rewind check \
                 then only knows what the git cache remembers)",
                path.display()
            )
        };
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(json::readable(e, &path))
            }
            Ok(bytes) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| broken(e.to_string()))?;
                if !value.is_object() {
                    return Err(broken("not a JSON object".to_owned()));
                }
                serde_json::from_value(value).map_err(|e| broken(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => {
                Err(e).with_context(|| format!("failed to read agent state {}", path.display()))
            }
        }
    }

    /// Writes the agent state atomically, creating the state directory.
    pub fn save_state(&self, state: &AgentState) -> Result<()> {
        self.ensure()?;
        write_json(&self.dir, STATE_FILE, state)
    }

    /// The stat cache (`stat-cache.json`): empty when missing or
    /// unreadable, which only costs a read of every managed file.
    pub fn load_stat_cache(&self) -> crate::plan::observed::StatCache {
        match json::read_json(&self.dir.join(STAT_CACHE_FILE)) {
            Ok(Some(c)) => c,
            Ok(None) => crate::plan::observed::StatCache::default(),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "ignoring the stat cache: every managed file is read"
                );
                crate::plan::observed::StatCache::default()
            }
        }
    }

    /// Replaces the stat cache.
    pub fn save_stat_cache(&self, cache: &crate::plan::observed::StatCache) -> Result<()> {
        self.ensure()?;
        write_json(&self.dir, STAT_CACHE_FILE, cache)
    }

    /// The last converge's record (`last-run.json`), if any.
    pub fn load_last_run(&self) -> Result<Option<crate::agent::LastRun>> {
        json::read_json(&self.dir.join(LAST_RUN_FILE))
    }

    /// Records the last converge, changed or not: written on every run, so
    /// that `status` always says when driftless last looked (Puppet's
    /// `last_run_summary.yaml`). The no-op's one write.
    pub fn save_last_run(&self, run: &crate::agent::LastRun) -> Result<()> {
        self.ensure()?;
        write_json(&self.dir, LAST_RUN_FILE, run)
    }

    /// This host's fleet membership, if it has published a record.
    pub fn load_fleet_member(&self) -> Result<Option<crate::fleet::record::Member>> {
        json::read_json(&self.dir.join(FLEET_FILE))
    }

    /// Replaces this host's fleet membership.
    pub fn save_fleet_member(&self, m: &crate::fleet::record::Member) -> Result<()> {
        self.ensure()?;
        write_json(&self.dir, FLEET_FILE, m)
    }

    /// The inventory of managed resources (`inventory.json`); empty when
    /// there is none yet.
    pub fn load_inventory(&self) -> Result<inventory::Inventory> {
        Ok(json::read_json(&self.dir.join(inventory::FILE))?.unwrap_or_default())
    }

    /// Replaces the inventory.
    pub fn save_inventory(&self, inv: &inventory::Inventory) -> Result<()> {
        self.ensure()?;
        write_json(&self.dir, inventory::FILE, inv)
    }

    /// The generations for reading: nothing is created (`status`,
    /// `history`, `plan` never change the state directory).
    pub fn generations_read(&self) -> Generations {
        Generations::at(&self.dir.join("generations"))
    }

    /// The generations (`generations/`), created if missing.
    pub fn generations(&self) -> Result<Generations> {
        self.ensure()?;
        Generations::open(&self.dir.join("generations"))
    }

    /// The object store (`objects/`), created if missing.
    pub fn objects(&self) -> Result<Objects> {
        self.ensure()?;
        Objects::open(&self.dir.join("objects"))
    }

    /// The package store (`packages/`); created when first filled.
    pub fn packages(&self) -> PackageStore {
        PackageStore::new(&self.dir.join("packages"))
    }

    /// Where the bare git cache of the config repo lives (`repo.git`).
    pub fn git_cache(&self) -> PathBuf {
        self.dir.join("repo.git")
    }

    /// Stores `desired` as the last good state, with its file contents.
    pub fn save_last_good(
        &self,
        key: &str,
        source: &str,
        desired: &crate::desired::DesiredState,
    ) -> Result<()> {
        // What was secret in it stays hidden once it is applied, whatever
        // later generations declare.
        let secret: Vec<[u8; 32]> = desired
            .resources
            .iter()
            .filter_map(|d| match d.resource.lower() {
                Prim::Path(PathDecl {
                    form:
                        PathForm::File {
                            content,
                            sensitive: true,
                            ..
                        },
                    ..
                }) => Some(*content.sha256()),
                _ => None,
            })
            .collect();
        secret_contents::remember(&self.dir, &secret)?;
        lastgood::save(&self.dir, &self.objects()?, key, source, desired)
    }

    /// The contents that were secret (never shown).
    pub fn secret_contents(&self) -> crate::plan::SecretContents {
        secret_contents::load(&self.dir)
    }

    /// The last good state, if one was stored.
    pub fn load_last_good(&self) -> Result<Option<lastgood::LastGood>> {
        lastgood::load(&self.dir)
    }

    /// The bytes of a content by its hash, from the object store, checked
    /// against the hash (what a desired state read back from here lacks).
    /// Creates nothing.
    pub fn content(&self, sha256: &[u8; 32]) -> Result<Vec<u8>> {
        Objects::at(&self.dir.join("objects")).get(&hex::encode(sha256))
    }

    /// Whether the content `sha256` is in the object store.
    pub fn has_content(&self, sha256: &[u8; 32]) -> bool {
        Objects::at(&self.dir.join("objects")).has(sha256)
    }

    /// Where a download of the content `sha256` is kept while under way
    /// (`downloads/<sha256>.part`, created with its directory's parents):
    /// an interrupted one is resumed from there by the next run.
    pub fn download_part(&self, sha256: &[u8; 32]) -> Result<PathBuf> {
        self.ensure()?;
        let dir = self.dir.join("downloads");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(dir.join(format!("{}.part", hex::encode(sha256))))
    }

    /// Moves a finished, checked download into the object store.
    pub fn adopt_download(&self, part: &Path, sha256: &[u8; 32]) -> Result<()> {
        self.objects()?.adopt(part, sha256)
    }

    /// The desired state loaded last time, with its contents by hash, when
    /// `key_of` the stored state (what it depended on: the facts it read,
    /// as they are now) is the key it was stored under; `None` otherwise
    /// (or when it cannot be read: it is a cache, and a load from the
    /// source follows).
    pub fn load_desired_cache(
        &self,
        key_of: impl FnOnce(&crate::desired::DesiredState, &[String]) -> Option<String>,
    ) -> Option<crate::desired::DesiredState> {
        desired_cache::load(&self.dir, key_of)
    }

    /// Keeps `desired` as the one loaded under `key` (from the source
    /// `paths` of a directory, none for a commit), its contents in the
    /// object store.
    pub fn save_desired_cache(
        &self,
        key: &str,
        paths: &[String],
        desired: &crate::desired::DesiredState,
    ) -> Result<()> {
        desired_cache::save(&self.dir, &self.objects()?, key, paths, desired)
    }

    /// Removes what writes that a crash cut short left in the state
    /// directory (temporary files of the atomic-write recipe, partial RPMs),
    /// at its top, and with `deep` also in objects/, packages/ and each
    /// generation. Returns how many.
    pub fn remove_temporaries(&self, deep: bool) -> Result<usize> {
        let mut dirs = vec![self.dir.clone()];
        if deep {
            dirs.push(self.dir.join("objects"));
            dirs.push(self.dir.join("packages"));
            if let Ok(entries) = std::fs::read_dir(self.dir.join("generations")) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        let mut removed = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if durable::is_temp(&name) || name.ends_with(".rpm.tmp") {
                    std::fs::remove_file(e.path())
                        .with_context(|| format!("failed to remove {}", e.path().display()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Keeps the newest `keep` generations, and only the objects and RPMs
    /// that what is kept still needs (`installed`: the RPM file names of
    /// the current package set, which are kept too).
    pub fn collect_garbage(
        &self,
        keep: usize,
        installed: impl FnOnce() -> Result<Vec<String>>,
    ) -> Result<()> {
        let kept = self.generations()?.prune(keep)?;
        let (mut keep_objects, mut keep_rpms) = generations::referenced(&kept);
        keep_objects.extend(lastgood::objects(&self.dir)?);
        keep_objects.extend(desired_cache::objects(&self.dir));
        keep_objects.extend(self.load_inventory()?.objects());
        self.objects()?.retain(&keep_objects)?;
        let packages = self.packages();
        // The RPM database is asked only when there is a store to prune: a
        // host (or test root) without packages never runs rpm for this.
        if packages.has_any() {
            keep_rpms.extend(installed()?);
            packages.retain(&keep_rpms)?;
        }
        Ok(())
    }
}

/// An exclusive lock on the state directory, held for a converge, a
/// rollback or a recovery: two of them at once would each snapshot what
/// the other is changing. Released when dropped (or when the process dies).
pub struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl StateLock {
    fn acquire(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        use nix::fcntl::{Flock, FlockArg};
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                tracing::info!("another driftless holds {}; waiting", path.display());
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("failed to lock {}", path.display()))?
            }
            Err((_, e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()));
            }
        };
        Ok(Self { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{FetchRecord, Mark, now};

    #[test]
    fn state_round_trips_and_missing_is_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(&d.path().join("state"));
        assert_eq!(store.load_state().expect("load"), AgentState::default());
        let s = AgentState {
            applied_commit: Some("abc".into()),
            applied_at: Some(now()),
            last_fetch: Some(FetchRecord {
                at: now(),
                head: None,
                error: Some("down".into()),
            }),
            quarantine: Some(Mark {
                key: "abc".into(),
                source: "commit abc".into(),
                at: now(),
                reason: Some("check web failed".into()),
            }),
            ..AgentState::default()
        };
        store.save_state(&s).expect("save");
        assert_eq!(store.load_state().expect("load"), s);
        std::fs::write(store.dir().join("state.json"), "{not json").expect("corrupt");
        assert!(format!("{:#}", store.load_state().expect_err("corrupt")).contains("state.json"));
    }

    /// Regression: `[]`, unknown keys and wrongly typed values were read as
    /// an empty state, forgetting the applied commit.
    #[test]
    fn state_of_the_wrong_shape_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(d.path());
        for (text, why) in [
            ("[]", "not a JSON object"),
            ("{\"applied\": 5}", "unknown field `applied`"),
            ("{\"applied_commit\": 5}", "invalid type"),
            ("{\"last_good\": {\"key\": \"k\"}}", "missing field"),
        ] {
            std::fs::write(d.path().join("state.json"), text).expect("write");
            let err = format!("{:#}", store.load_state().expect_err(text));
            assert!(
                err.contains("state.json") && err.contains(why),
                "{text}: {err}"
            );
            assert!(err.contains("move it aside"), "{err}");
        }
        std::fs::write(d.path().join("state.json"), "{}").expect("write");
        assert_eq!(store.load_state().expect("{}"), AgentState::default());
    }
}
