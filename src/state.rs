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
        let root = FsRoot::open(state_dir)?;
        let mut bytes = serde_json::to_vec_pretty(self).context("failed to encode agent state")?;
        bytes.push(b'\n');
        let meta = FsMeta {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: 0o600,
        };
        root.write_file(STATE_FILE, &bytes, meta)
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
        };
        s.save(&dir).expect("save");
        assert_eq!(AgentState::load(&dir).expect("load"), s);
        std::fs::write(dir.join("state.json"), "{not json").expect("corrupt");
        assert!(
            format!("{:#}", AgentState::load(&dir).expect_err("corrupt")).contains("state.json")
        );
    }
}
