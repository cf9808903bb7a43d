//! `status`, `history` and `source status`: read the state directory only.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::context::App;
use crate::agent::{FetchRecord, LastRun, Mark};
use crate::config::Mode;
use crate::plan::Change;
use crate::source;
use crate::store::Generation;
use crate::system;

/// The agent as `status` shows it.
#[derive(Debug, Serialize)]
pub struct AgentStatus {
    /// The host name looked up in the config repo.
    pub host: String,
    /// The git source, when configured.
    pub source: Option<SourceRef>,
    /// The head fetched last.
    pub fetched_head: Option<String>,
    /// Enforce or audit.
    pub mode: Mode,
    /// Fetches that failed in a row.
    pub fetch_failures: u32,
    /// This driftless.
    pub version: String,
    /// The daemon, when it runs and answered (`None`: not running, or see
    /// `daemon_error`).
    pub daemon: Option<DaemonView>,
    /// A daemon listens but did not answer (busy, hung, refused): why.
    /// What is shown is then read from the state directory only.
    pub daemon_error: Option<String>,
    /// The agent config files cannot be read or are invalid: why. Status
    /// still answers (with the defaults for what it reads); a daemon runs
    /// the config it loaded last.
    pub config_error: Option<String>,
    /// The agent config files differ from those the daemon runs: it needs
    /// `systemctl reload driftless` for them to take effect.
    pub reload_pending: bool,
    /// The last applied commit (git source).
    pub applied_commit: Option<String>,
    /// The last state that converged and passed its checks.
    pub last_good: Option<Mark>,
    /// The quarantined desired state, and why.
    pub quarantine: Option<Mark>,
    /// The pin set by `driftless rollback`.
    pub pinned: Option<Mark>,
    /// The pause set by `driftless pause`: every converge is refused.
    pub paused: Option<crate::agent::Pause>,
    /// Consecutive interrupted converges of one key.
    pub interrupted: Option<u32>,
    /// The newest generation.
    pub last_generation: Option<Generation>,
    /// The last converge, changed or not (`last-run.json`): when
    /// driftless last looked and what it found.
    pub last_run: Option<LastRun>,
    /// With `[fleet]`: this host's record as it last published it (what
    /// `fleet status` shows for it), with what a new commit waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::record::HostRecord>,
    /// With `[fleet]`: the fleet-wide stop's reason, as this host last read
    /// it (at its last run), whether or not it waits for a new commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_halt: Option<String>,
    /// Whether the host needs a reboot, and the last one driftless saw
    /// through (docs/reboots.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<crate::agent::reboot::RebootRecord>,
}

/// `status`: last good, quarantine, pin, applied commit, last generation.
pub fn status(app: &App) -> Result<AgentStatus> {
    let state = app.store.load_state()?;
    let last = app.store.generations_read().list()?.pop();
    let fleet = match app.settings.fleet {
        Some(_) => app.store.load_fleet_member()?,
        None => None,
    };
    let fetched_head = match &app.settings.source {
        Some(_) => source::cache_status(&app.store.git_cache())?.fetched,
        None => None,
    };
    Ok(AgentStatus {
        host: app
            .settings
            .host
            .clone()
            .unwrap_or_else(|| system::facts::gather().fqdn),
        source: app.settings.source.as_ref().map(|g| SourceRef {
            url: source::git::redact_url(&g.url),
            branch: g.branch.clone(),
        }),
        fetched_head,
        mode: app.settings.mode,
        fetch_failures: state.fetch_failures,
        version: crate::VERSION.to_owned(),
        daemon: None,
        daemon_error: None,
        config_error: None,
        reload_pending: false,
        applied_commit: state.applied_commit,
        last_good: state.last_good,
        quarantine: state.quarantine,
        pinned: state.pinned,
        paused: state.paused,
        interrupted: state.interrupted.map(|i| i.count),
        last_generation: last,
        last_run: app.store.load_last_run()?,
        fleet: fleet.as_ref().map(|m| m.record.clone()),
        fleet_halt: fleet.and_then(|m| m.halt),
        reboot: state.reboot,
    })
}

/// The git source a status names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// Remote URL (password removed).
    pub url: String,
    /// Branch.
    pub branch: String,
}

/// The daemon as it answers `status` on its control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    /// Its pid.
    pub pid: u32,
    /// Its version (after a self-upgrade, the new one).
    pub version: String,
    /// `starting`, `recovering`, `idle`, `converging`, `stopping`.
    pub state: String,
    /// The line `systemctl status` shows.
    pub status_line: String,
    /// When the next run is due (RFC 3339), while idle.
    pub next_run: Option<String>,
    /// The interval between runs in force, in seconds.
    pub interval_s: u64,
    /// The last run it made.
    pub last_run: Option<LastRun>,
    /// Fetches failed in a row.
    pub fetch_failures: u32,
    /// Since when the fetch fails (RFC 3339), and the last error.
    pub fetch_failing_since: Option<String>,
    /// The last fetch error while it fails.
    pub fetch_error: Option<String>,
    /// While fetches fail: the next one is not before this (RFC 3339);
    /// ticks in between heal from the cache.
    pub next_fetch: Option<String>,
    /// Converges since it started, by outcome.
    pub converges: BTreeMap<String, u64>,
    /// Why the metrics textfile could not be written at the last run.
    #[serde(default)]
    pub metrics_error: Option<String>,
    /// The agent config files it runs, and their digest when it read them.
    #[serde(default)]
    pub config_files: Vec<String>,
    /// See [`crate::config::Settings::fingerprint`].
    #[serde(default)]
    pub config_fingerprint: String,
    /// With `[fleet]`: why the watch of the fleet's nudge key cannot be
    /// set up, and since when (nudges do not reach this host; its
    /// schedule goes on). `None` while it works, and without `[fleet]`.
    #[serde(default)]
    pub nudge_error: Option<String>,
}

/// `history`: every kept generation, oldest first.
pub fn history(app: &App) -> Result<Vec<Generation>> {
    app.store.generations_read().list()
}

/// One generation in full (`history N`).
#[derive(Debug, Serialize)]
pub struct GenerationDetail {
    /// Its record: source, root, status, reason, checks, dnf transactions.
    #[serde(flatten)]
    pub record: Generation,
    /// How long it took in seconds (the records' resolution), when it
    /// finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// The changes it planned, with their reasons (and diffs, but never of
    /// a sensitive file).
    pub planned: Vec<Change>,
}

/// `history N`: generation `id` in full; an error when it is not kept.
pub fn generation(app: &App, id: u64) -> Result<GenerationDetail> {
    let gens = app.store.generations_read();
    let Some(record) = gens.get(id)? else {
        let kept = gens.list()?;
        let range = match (kept.first(), kept.last()) {
            (Some(a), Some(b)) => format!("generations {} to {} are kept", a.id, b.id),
            _ => "no generations yet".to_owned(),
        };
        anyhow::bail!(
            "no generation {id} in {}: {range}",
            app.store.dir().display()
        );
    };
    let planned = gens.planned(id)?.unwrap_or_default();
    let duration_s = record
        .finished_at
        .as_deref()
        .and_then(|end| crate::agent::seconds_between(&record.started_at, end));
    Ok(GenerationDetail {
        record,
        duration_s,
        planned,
    })
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
