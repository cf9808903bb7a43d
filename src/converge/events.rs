//! What a converge reports while it runs: typed events into a [`Sink`].
//!
//! The command line logs them ([`Log`]); the daemon fans them out to
//! journald, metrics and the control socket; tests record them
//! (`Vec<Event>` is a sink). The engine never formats progress itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::outcome::Outcome;

/// One thing that happened during a run, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A converge begins.
    Started {
        /// The root it converges.
        root: String,
        /// It only reports (audit mode or a dry run).
        audit: bool,
    },
    /// Fetching or checking the git source failed.
    FetchFailed {
        /// Why.
        error: String,
        /// The fetched commit was refused (a rewritten history, a bad
        /// signature), not merely unreachable.
        refused: bool,
        /// The commit converged instead, from the cache (self-healing goes
        /// on while the source is away).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instead: Option<String>,
    },
    /// The git source was fetched; this commit passed every check.
    Fetched {
        /// The commit to converge (hex).
        commit: String,
    },
    /// The desired state of the host was computed.
    Loaded {
        /// The host name.
        host: String,
        /// The host file chosen.
        host_file: String,
        /// Resources declared, by kind (`file`, `package`, ...).
        resources: BTreeMap<String, usize>,
    },
    /// The loaded desired state is quarantined (or the host pinned): the
    /// host is held where it is, or converged to the last good state.
    Held {
        /// Why.
        why: String,
        /// The key of the state converged instead, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_good: Option<String>,
    },
    /// The host is paused, and this converge runs anyway (`--force`).
    PauseOverridden {
        /// The pause, in words.
        why: String,
    },
    /// The host was observed and the plan made.
    Planned {
        /// Changes planned, by kind.
        changes: BTreeMap<String, usize>,
    },
    /// A generation was recorded and its snapshot is durable: changes begin.
    Began {
        /// The generation.
        generation: u64,
        /// Changes planned.
        changes: usize,
    },
    /// One step starts (`index` from 1, of `total` known so far).
    StepStarted {
        /// Position in this converge.
        index: usize,
        /// Steps known now (the steps after the package transaction are
        /// planned again, so this can change once).
        total: usize,
        /// The resource (`file:/etc/motd`).
        resource: String,
        /// What is done to it (`write file`, `restart`).
        verb: String,
    },
    /// The step finished.
    StepFinished {
        /// Position in this converge.
        index: usize,
        /// Steps known now.
        total: usize,
        /// The resource.
        resource: String,
        /// What was done.
        verb: String,
    },
    /// The one package transaction starts.
    PackagesStarted {
        /// The package changes in it (`package:nginx`).
        resources: Vec<String>,
    },
    /// The package transaction finished.
    PackagesFinished {
        /// The transactions dnf recorded.
        transactions: Vec<u64>,
    },
    /// A health check attempt starts.
    CheckAttempt {
        /// The check's name.
        check: String,
        /// This attempt, from 1.
        attempt: u32,
        /// Attempts allowed.
        attempts: u32,
    },
    /// A health check passed, or failed for good.
    CheckResult {
        /// The check's name.
        check: String,
        /// Whether it passed.
        passed: bool,
        /// Why not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A step or check failed, or an operator asked (`driftless
    /// rollback`): the snapshot is being restored.
    RollingBack {
        /// The generation.
        generation: u64,
        /// What failed.
        reason: String,
        /// Asked for by `driftless rollback`, not a failure.
        #[serde(default)]
        requested: bool,
    },
    /// The host was restored to its snapshot and verified.
    Restored {
        /// The generation.
        generation: u64,
    },
    /// Restoring failed: the host needs attention.
    RestoreFailed {
        /// The generation.
        generation: u64,
        /// What still differs from before.
        differences: Vec<String>,
    },
    /// The run ended.
    Finished {
        /// How.
        outcome: Outcome,
        /// The generation it recorded, if it changed anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        /// Changes applied (or pending, for a dry run).
        changes: usize,
        /// How long the run took.
        duration_ms: u64,
        /// The key of the desired state it loaded (commit or content hash).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Resources that had drifted from a desired state already applied
        /// (healed, or in an audit only reported).
        #[serde(default)]
        drifted: usize,
        /// The first of them, by name.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        drifted_resources: Vec<String>,
        /// Who started the run.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        started_by: String,
        /// This run quarantined `key`.
        #[serde(default)]
        quarantined: bool,
        /// It only reported (audit mode or a dry run).
        #[serde(default)]
        audit: bool,
        /// What failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Receives the events of one run.
pub trait Sink {
    /// Called for each event, in order, on the thread that runs the
    /// converge.
    fn event(&mut self, event: &Event);
}

/// Records every event (tests).
impl Sink for Vec<Event> {
    fn event(&mut self, event: &Event) {
        self.push(event.clone());
    }
}

/// Hands every event to each of several sinks, in order.
pub struct Tee<'a>(pub Vec<&'a mut dyn Sink>);

impl Sink for Tee<'_> {
    fn event(&mut self, event: &Event) {
        for s in &mut self.0 {
            s.event(event);
        }
    }
}

/// Drops every event.
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn event(&mut self, _: &Event) {}
}

impl Event {
    /// What happened, in words: the one sentence the log, the journal and
    /// the progress display show for it (each may add its own fields or a
    /// step counter, never other words).
    pub fn words(&self) -> String {
        use crate::words::count;
        match self {
            Event::Started { root, audit } => format!(
                "converge of {root} started{}",
                if *audit {
                    " (it only reports: nothing is changed)"
                } else {
                    ""
                }
            ),
            Event::FetchFailed {
                error,
                refused,
                instead,
            } => format!(
                "{} {error}{}",
                if *refused {
                    "commit refused:"
                } else {
                    "fetch failed:"
                },
                instead
                    .as_deref()
                    .map(|c| format!("; converging the cached commit {c} instead"))
                    .unwrap_or_default()
            ),
            Event::Fetched { commit } => format!("fetched and checked {commit}"),
            Event::Loaded {
                host, host_file, ..
            } => format!("desired state of host {host} loaded from {host_file}"),
            Event::Held { why, .. } => format!("held: {why}"),
            Event::PauseOverridden { why } => format!("converge forced (--force) although {why}"),
            Event::Planned { changes } => {
                format!("{} planned", count(changes.values().sum(), "change"))
            }
            Event::Began {
                generation,
                changes,
            } => format!(
                "generation {generation}: snapshot taken; applying {}",
                count(*changes, "change")
            ),
            Event::StepStarted { resource, verb, .. }
            | Event::StepFinished { resource, verb, .. } => format!("{resource}: {verb}"),
            Event::PackagesStarted { resources } => {
                format!("package transaction: {}", resources.join(", "))
            }
            Event::PackagesFinished { transactions } => {
                let ids: Vec<String> = transactions.iter().map(u64::to_string).collect();
                format!("package transaction done (dnf: {})", ids.join(", "))
            }
            Event::CheckAttempt { .. }
            | Event::CheckResult { .. }
            | Event::RollingBack { .. }
            | Event::Restored { .. }
            | Event::RestoreFailed { .. } => self.check_and_rollback_words(),
            Event::Finished {
                outcome,
                generation,
                changes,
                key,
                error,
                ..
            } => finished_words(
                *outcome,
                *generation,
                *changes,
                key.as_deref(),
                error.as_deref(),
            ),
        }
    }

    /// The words of the health checks and of a rollback.
    fn check_and_rollback_words(&self) -> String {
        match self {
            Event::CheckAttempt {
                check,
                attempt,
                attempts,
            } => format!("health check {check}: attempt {attempt}/{attempts}"),
            Event::CheckResult {
                check,
                passed: true,
                ..
            } => format!("health check {check} passed"),
            Event::CheckResult { check, error, .. } => format!(
                "health check {check} failed: {}",
                error.as_deref().unwrap_or("")
            ),
            Event::RollingBack {
                generation,
                requested: true,
                ..
            } => format!("generation {generation}: undoing it, as asked (driftless rollback)"),
            Event::RollingBack {
                generation, reason, ..
            } => {
                format!("generation {generation}: restoring the snapshot taken before it: {reason}")
            }
            Event::Restored { generation } => {
                format!("generation {generation}: host restored to its state before the converge")
            }
            Event::RestoreFailed {
                generation,
                differences,
            } => format!(
                "generation {generation}: RESTORE FAILED: the host differs from its state before the converge and needs attention: {}",
                differences.join("; ")
            ),
            _ => String::new(),
        }
    }
}

/// How a run ended, in words.
fn finished_words(
    outcome: Outcome,
    generation: Option<u64>,
    changes: usize,
    key: Option<&str>,
    error: Option<&str>,
) -> String {
    use crate::words::count;
    let state = key.map_or("the desired state", crate::agent::short);
    let error = error.unwrap_or("");
    match outcome {
        Outcome::Changed => format!(
            "{} of {state} applied (generation {})",
            count(changes, "change"),
            generation.unwrap_or_default()
        ),
        Outcome::InSync => format!("in sync at {state}: nothing to change"),
        Outcome::Held => "held: converged towards the last good state".to_owned(),
        Outcome::ChangesPending => format!(
            "audit: {} pending, nothing changed",
            count(changes, "change")
        ),
        Outcome::RolledBack => format!("converge failed and was rolled back: {error}"),
        Outcome::RollbackFailed => format!(
            "converge failed AND restoring the host failed; the host needs attention: {error}"
        ),
        Outcome::Error | Outcome::Invalid | Outcome::Valid | Outcome::Done => format!(
            "converge failed before any change: {}",
            if error.is_empty() {
                "the config repo is invalid"
            } else {
                error
            }
        ),
    }
}

/// Writes events as log lines (`-v` shows them on the command line).
#[derive(Debug, Default)]
pub struct Log;

impl Sink for Log {
    // Each line is the event's words. What the journal entries of
    // `report::journal` already say, and the stages of a run that changes
    // nothing, are debug: a no-op tick of the daemon writes one line (its
    // `in sync` entry).
    fn event(&mut self, event: &Event) {
        let words = event.words();
        match event {
            Event::Started { .. }
            | Event::StepFinished { .. }
            // dnf's own wrapper logs the transaction ids.
            | Event::PackagesFinished { .. }
            | Event::CheckAttempt { .. } => {}
            Event::FetchFailed { .. }
            | Event::Held { .. }
            | Event::PauseOverridden { .. }
            | Event::Fetched { .. }
            | Event::Loaded { .. }
            | Event::Planned { .. }
            | Event::Began { .. }
            | Event::Finished { .. } => debug!("{words}"),
            Event::StepStarted { .. } => debug!("applying {words}"),
            Event::PackagesStarted { .. } => info!("{words}"),
            Event::RollingBack {
                generation,
                requested: true,
                ..
            } => info!(generation, "{words}"),
            Event::CheckResult {
                check,
                passed: true,
                ..
            } => info!(check, "{words}"),
            Event::CheckResult { check, .. } => warn!(check, "{words}"),
            Event::RollingBack { generation, .. } => warn!(generation, "{words}"),
            Event::Restored { generation } => info!(generation, "{words}"),
            Event::RestoreFailed { generation, .. } => error!(generation, "{words}"),
        }
    }
}

/// Counts by kind word, for [`Event::Loaded`] and [`Event::Planned`].
pub(crate) fn count_kinds(
    ids: impl IntoIterator<Item = crate::desired::model::ResourceId>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        *out.entry(id.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    out
}
