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

/// Writes events as log lines (`-v` shows them on the command line).
#[derive(Debug, Default)]
pub struct Log;

impl Sink for Log {
    // Each line names its subject in its text (the journal shows the text);
    // what the journal entries of `report::journal` already say, and the
    // stages of a run that changes nothing, are debug: a no-op tick of the
    // daemon writes one line (its `in sync` entry).
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started { .. } | Event::StepFinished { .. } => {}
            Event::FetchFailed { error, instead, .. } => match instead {
                Some(c) => debug!("fetch failed ({error}); converging the cached commit {c}"),
                None => debug!("fetch failed: {error}"),
            },
            Event::Held { why, .. } => debug!("held: {why}"),
            Event::PauseOverridden { why } => debug!("--force: converging although {why}"),
            Event::Fetched { commit } => debug!("fetched and checked {commit}"),
            Event::Loaded {
                host, host_file, ..
            } => debug!("desired state of host {host} loaded from {host_file}"),
            Event::Planned { changes } => debug!("planned: {changes:?}"),
            Event::Began {
                generation,
                changes,
            } => debug!(
                "generation {generation}: snapshot taken; applying {}",
                crate::words::count(*changes, "change")
            ),
            Event::StepStarted { resource, verb, .. } => debug!("applying {resource}: {verb}"),
            Event::PackagesStarted { resources } => {
                info!("package transaction: {}", resources.join(", "));
            }
            // dnf's own wrapper logs the transaction ids.
            Event::PackagesFinished { .. } | Event::CheckAttempt { .. } => {}
            Event::CheckResult {
                check,
                passed: true,
                ..
            } => info!(check, "health check {check} passed"),
            Event::CheckResult { check, error, .. } => {
                warn!(
                    check,
                    "health check {check} failed: {}",
                    error.as_deref().unwrap_or("")
                );
            }
            Event::RollingBack {
                generation,
                requested: true,
                ..
            } => {
                info!(
                    generation,
                    "generation {generation}: undoing it, as asked (driftless rollback)"
                );
            }
            Event::RollingBack {
                generation, reason, ..
            } => {
                warn!(
                    generation,
                    "generation {generation}: restoring the snapshot taken before it: {reason}"
                );
            }
            Event::Restored { generation } => {
                info!(
                    generation,
                    "generation {generation}: host restored to its state before the converge"
                );
            }
            Event::RestoreFailed {
                generation,
                differences,
            } => error!(
                generation,
                "generation {generation}: RESTORE FAILED: the host differs from its state before the converge and needs attention: {}",
                differences.join("; ")
            ),
            Event::Finished {
                outcome,
                generation,
                changes,
                duration_ms,
                ..
            } => debug!(
                "converge finished: {outcome}, {}, {duration_ms} ms{}",
                crate::words::count(*changes, "change"),
                generation
                    .map(|g| format!(", generation {g}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Counts by kind word, for [`Event::Loaded`] and [`Event::Planned`].
pub fn count_kinds(
    ids: impl IntoIterator<Item = crate::desired::model::ResourceId>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        *out.entry(id.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    out
}
