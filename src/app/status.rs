//! `status`, `history` and `source status`: read the state directory only.

use anyhow::{Context, Result};
use serde::Serialize;

use super::context::App;
use crate::agent::{FetchRecord, Mark};
use crate::source;
use crate::store::Generation;

/// The agent as `status` shows it.
#[derive(Debug, Serialize)]
pub struct AgentStatus {
    /// The last applied commit (git source).
    pub applied_commit: Option<String>,
    /// The last state that converged and passed its checks.
    pub last_good: Option<Mark>,
    /// The quarantined desired state, and why.
    pub quarantine: Option<Mark>,
    /// The pin set by `driftless rollback`.
    pub pinned: Option<Mark>,
    /// Consecutive interrupted converges of one key.
    pub interrupted: Option<u32>,
    /// The newest generation.
    pub last_generation: Option<Generation>,
}

/// `status`: last good, quarantine, pin, applied commit, last generation.
pub fn status(app: &App) -> Result<AgentStatus> {
    let state = app.store.load_state()?;
    let last = app.store.generations()?.list()?.pop();
    Ok(AgentStatus {
        applied_commit: state.applied_commit,
        last_good: state.last_good,
        quarantine: state.quarantine,
        pinned: state.pinned,
        interrupted: state.interrupted.map(|i| i.count),
        last_generation: last,
    })
}

/// `history`: every kept generation, oldest first.
pub fn history(app: &App) -> Result<Vec<Generation>> {
    app.store.generations()?.list()
}

/// The git source as `source status` shows it.
#[derive(Debug, Serialize)]
pub struct SourceStatus {
    /// Remote URL (password removed).
    pub url: String,
    /// Branch.
    pub branch: String,
    /// The last fetched head.
    pub fetched_head: Option<String>,
    /// The last applied commit.
    pub applied_commit: Option<String>,
    /// When it was applied.
    pub applied_at: Option<String>,
    /// Whether the fetched head is not applied yet.
    pub pending: bool,
    /// The last fetch attempt.
    pub last_fetch: Option<FetchRecord>,
}

/// `source status`: local state of the git source; never fetches.
pub fn source_status(app: &App) -> Result<SourceStatus> {
    let git = app
        .settings
        .source
        .as_ref()
        .context("no git source: configure [source] url in the agent config")?;
    let state = app.store.load_state()?;
    let fetched = source::cache_status(&app.store.git_cache())?.fetched;
    Ok(SourceStatus {
        url: source::git::redact_url(&git.url),
        branch: git.branch.clone(),
        pending: fetched.is_some() && fetched != state.applied_commit,
        fetched_head: fetched,
        applied_commit: state.applied_commit,
        applied_at: state.applied_at,
        last_fetch: state.last_fetch,
    })
}
