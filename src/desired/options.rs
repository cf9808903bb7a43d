//! What the loader is told by the agent, and how loading fails.

use super::diag::Diagnostic;
use super::secrets::Secrets;
use crate::cancel::Cancel;

/// Largest file a config repo may hand to a host, unless configured.
pub(super) const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Settings of the loader that come from the agent, not the repo.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The agent's state directory, which no resource may touch.
    pub state_dir: String,
    /// Size cap of one managed file's content.
    pub max_file_size: u64,
    /// The run's cancellation: loading stops between files and templates.
    pub cancel: Cancel,
    /// How `.age` sources and secret vars are opened.
    pub secrets: Secrets,
    /// The groups of the host the state is for, when known: a user in a
    /// group neither declared nor there is then an error at load time
    /// (else the planner finds it against the converged root).
    pub host_groups: Option<std::collections::BTreeSet<String>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/driftless".to_owned(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            cancel: Cancel::new(),
            secrets: Secrets::default(),
            host_groups: None,
        }
    }
}

impl LoadOptions {
    /// `Err` once the run was asked to stop.
    pub(super) fn check_stop(&self) -> Result<(), LoadError> {
        if self.cancel.should_stop() {
            return Err(LoadError::Read(anyhow::anyhow!(
                "driftless was asked to stop while loading the desired state"
            )));
        }
        Ok(())
    }
}

/// Why a desired state could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The repo is invalid; all problems found are listed.
    #[error("the config repo is invalid ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<Diagnostic>),
    /// The repo could not be read at all.
    #[error(transparent)]
    Read(#[from] anyhow::Error),
}
