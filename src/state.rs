//! The agent's own durable state: `<state_dir>/state.json`.
//!
//! It records the last applied commit *outside* the git cache, so deleting
//! `repo.git` cannot reopen the door to a rewound history, and the outcome
//! of the last fetch for `source status`. Written atomically (temporary
//! file, fsync, rename, fsync of the directory) like every managed file.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::plan::observed::FsMeta;
use crate::system::fsroot::FsRoot;

const STATE_FILE: &str = "/state.json";

/// What the agent remembers between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The commit last converged successfully (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// When it was applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The last fetch attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch: Option<FetchRecord>,
    /// The last desired state that converged and passed its checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<Mark>,
    /// A desired state (commit or content hash) that is not applied again
    /// until the source moves on or `driftless retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Mark>,
    /// Consecutive converges of one key cut short by a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
    /// Set by `driftless rollback`: hold the host, apply nothing, until
    /// `driftless resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Mark>,
}

/// A desired state by key, with when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Commit id, or `sha256:…` of a `--repo` desired state.
    pub key: String,
    /// Where it came from (`commit …`, `directory …`).
    pub source: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why (for quarantine and pins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Consecutive interrupted converges of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// The key.
    pub key: String,
    /// How many in a row.
    pub count: u32,
}

/// The outcome of one fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// When (RFC 3339).
    pub at: String,
    /// The fetched head, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl AgentState {
    /// Reads the state; a missing file is the empty state.
    pub fn load(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(STATE_FILE.trim_start_matches('/'));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("failed to parse agent state {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => {
                Err(e).with_context(|| format!("failed to read agent state {}", path.display()))
            }
        }
    }

    /// Writes the state atomically, creating the state directory (0700).
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        ensure_state_dir(state_dir)?;
        write_json(state_dir, STATE_FILE.trim_start_matches('/'), self)
    }
}

/// Writes `value` as pretty JSON to `dir/name`, atomically and durably, 0600.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).with_context(|| format!("failed to encode {name}"))?;
    bytes.push(b'\n');
    write_private(dir, name, &bytes)
}

/// Writes `dir/name` atomically and durably, owned by the agent, 0600.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let root = FsRoot::open(dir)?;
    let meta = FsMeta {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mode: 0o600,
    };
    root.write_file(&format!("/{name}"), bytes, meta)
}

/// Reads JSON from `path`; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("failed to parse {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// An exclusive lock on the state directory, held for a converge, a
/// rollback or a recovery: two of them at once would each snapshot what
/// the other is changing. Released when dropped (or when the process dies).
pub struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl StateLock {
    /// Takes the lock, waiting for another driftless to finish.
    pub fn acquire(state_dir: &Path) -> Result<Self> {
        ensure_state_dir(state_dir)?;
        let path = state_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
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

/// Creates the state directory if missing, readable by root only: it holds
/// the config repo, which may contain secrets.
pub fn ensure_state_dir(state_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !state_dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .with_context(|| format!("failed to create state directory {}", state_dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("state");
        assert_eq!(AgentState::load(&dir).expect("load"), AgentState::default());
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
        s.save(&dir).expect("save");
        assert_eq!(AgentState::load(&dir).expect("load"), s);
        std::fs::write(dir.join("state.json"), "{not json").expect("corrupt");
        assert!(
            format!("{:#}", AgentState::load(&dir).expect_err("corrupt")).contains("state.json")
        );
    }
}
