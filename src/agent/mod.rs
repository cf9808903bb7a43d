//! What the agent remembers between runs, and the rules that decide what a
//! converge does with it.
//!
//! [`AgentState`] is kept in `<state_dir>/state.json` (by `store`). It
//! records the last applied commit *outside* the git cache, so deleting
//! `repo.git` cannot reopen the door to a rewound history; the last good
//! state, a quarantined head, a pin, an interruption streak, and the
//! outcome of the last fetch. [`policy`] holds the rules, as pure functions.

pub(crate) mod policy;
pub(crate) mod reboot;

use serde::{Deserialize, Serialize};

/// What the agent remembers between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentState {
    /// The commit last converged successfully (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// When it was applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The git source it was applied from (`URL (branch)`, no password).
    /// Absent in states written before it existed: the same source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_source: Option<String>,
    /// The newest commit applied from each git source: the floor a fetched
    /// head must descend from (rewind protection), per source, so that a
    /// branch changed in the agent config is a new source, not a rewind,
    /// and changing it back keeps the old branch's floor.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub floors: std::collections::BTreeMap<String, String>,
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
    /// Fetches that failed in a row (0 after a good one). Recorded with
    /// each fetch, so a converge that finds the host in sync still writes
    /// nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fetch_failures: u32,
    /// When a fetch last succeeded (RFC 3339), for the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_success: Option<String>,
    /// Set by `driftless pause`: every converge is refused until
    /// `driftless unpause` (or `converge --now --force`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Whether the host needs a reboot, a reboot asked for or cancelled,
    /// and the last one seen through. Absent in states written before it
    /// existed: nothing known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<reboot::RebootRecord>,
}

/// Who paused the host, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// Why, as given to `driftless pause --reason`.
    pub reason: String,
    /// Who (the user, and the user behind sudo).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A desired state by key, with when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct Interrupted {
    /// The key.
    pub key: String,
    /// How many in a row.
    pub count: u32,
}

/// The outcome of one fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A converge as `status` shows it: the daemon's last run, and the last
/// run of any converge (`last-run.json`), changed or in sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it ended (RFC 3339).
    pub at: String,
    /// How.
    pub outcome: crate::outcome::Outcome,
    /// How long it took.
    pub duration_ms: u64,
    /// Changes applied (or pending, in an audit).
    pub changes: usize,
    /// Resources found drifted.
    pub drifted: usize,
    /// The desired state's key.
    pub key: Option<String>,
    /// What failed, or why it is held.
    pub error: Option<String>,
    /// The generation it recorded, when it changed something.
    #[serde(default)]
    pub generation: Option<u64>,
    /// An audit (or dry run): nothing was changed.
    #[serde(default)]
    pub audit: bool,
}

/// Seconds from `start` to `end` (both as [`now`] writes them); `None`
/// when either does not parse or the clock went backwards.
pub(crate) fn seconds_between(start: &str, end: &str) -> Option<u64> {
    let start = humantime::parse_rfc3339(start).ok()?;
    let end = humantime::parse_rfc3339(end).ok()?;
    end.duration_since(start).ok().map(|d| d.as_secs())
}

/// The first 12 characters of a commit id or content key, for messages.
pub(crate) fn short(key: &str) -> &str {
    let key = key.strip_prefix("sha256:").unwrap_or(key);
    &key[..key.len().min(12)]
}
