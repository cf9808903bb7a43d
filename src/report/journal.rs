//! The journal entries an operator queries: one fixed `MESSAGE_ID` per
//! kind of event (docs/journal.md lists them with example queries), with
//! `DRIFTLESS_*` fields where they apply.
//!
//! They are ordinary tracing events with a `message_id` field; the journald
//! layer (see `logging`) turns `message_id` into `MESSAGE_ID` and
//! `driftless_commit` into `DRIFTLESS_COMMIT`. A converge run by hand
//! emits the same entries as one run by the daemon.

use tracing::{error, info, warn};

use crate::converge::{Event, Sink};
use crate::outcome::Outcome;

/// A converge started.
pub(crate) const CONVERGE_STARTED: &str = "80bb4d2c63f34acbafc4ae97aa4ba861";
/// One resource was changed.
pub(crate) const RESOURCE_CHANGED: &str = "cdb9593af2314f06b2e2c49f6aedb627";
/// A converge applied changes and its health checks passed.
pub(crate) const CHANGES_APPLIED: &str = "fb700e086f6741d58a63f3d6a97f5712";
/// A converge found the host in sync.
pub(crate) const IN_SYNC: &str = "c9a3f281db9e401cbac0e3ebb276112b";
/// The host had drifted from a desired state already applied (healed, or
/// in audit mode only reported).
pub(crate) const DRIFT_DETECTED: &str = "ad9d4b3136914e43885bfe0d8b65855f";
/// A converge failed and the host was restored.
pub(crate) const ROLLED_BACK: &str = "7fe5dc99efd94429bfef0dbab5a6c65c";
/// A converge failed and restoring the host failed too.
pub(crate) const ROLLBACK_FAILED: &str = "15622bef251944cd80e1afbd5f544bbf";
/// A fetched commit was refused: a rewritten history or a bad signature.
pub(crate) const COMMIT_REFUSED: &str = "a709d471bb404b128820a0efa93b55d8";
/// A commit was quarantined: it is not applied again until the source
/// moves on or `driftless retry`.
pub(crate) const COMMIT_QUARANTINED: &str = "caa5ae5acbf54e06bb7d8c842a4c75ae";
/// The host is held: at the last good state (quarantined head) or where
/// it is (pinned).
pub(crate) const HELD: &str = "cf6a4cc40eec4945ab0465b2c1c9755b";
/// Fetching the git source failed.
pub(crate) const FETCH_FAILED: &str = "4a71abff8ffe44468dd8040596c71f59";
/// A converge ended with an error before any change (an invalid config
/// repo, a plan that cannot be made, an I/O error).
pub(crate) const CONVERGE_FAILED: &str = "54648584cf8d406c8d5ccb997ce9afcc";
/// A reboot became required (with the reasons).
pub(crate) const REBOOT_REQUIRED: &str = "eb26385a0c434da5b28b69a68dbac1df";
/// The host is being drained and rebooted.
pub(crate) const REBOOTING: &str = "aae2f8dd290d436791063d4479093786";
/// The host is back from the reboot driftless asked for, healthy (old and
/// new kernel).
pub(crate) const REBOOTED: &str = "d2aee250fbed4e11af5e08b778d2ca4b";
/// A reboot that was due waits: its drain failed, or it could not be
/// asked for.
pub(crate) const REBOOT_POSTPONED: &str = "f62ef42dc61d482bb61e275cd436ad3e";
/// Services that ran replaced programs or libraries were restarted
/// (`[reboot] restart_services`).
pub(crate) const SERVICES_RESTARTED: &str = "454c4c9c6f6a4ee5b7906b500c2b7819";
/// A service that ran replaced files could not be restarted.
pub(crate) const SERVICE_RESTART_FAILED: &str = "2b7745b8e7e3420181e833cfa379c80c";
/// The daemon started and is ready.
pub(crate) const DAEMON_STARTED: &str = "257396471c8d47f082a40e030d671646";
/// The daemon reloaded its agent config.
pub(crate) const DAEMON_RELOADED: &str = "6e496d8f3c9b41249a28c798cffbc2e5";
/// A reload was refused: the new agent config is invalid; the old one stays.
pub(crate) const RELOAD_FAILED: &str = "9f2a280591d74eb4b0f38306c443a155";
/// The daemon restarts into a new binary (its package was upgraded).
pub(crate) const DAEMON_RESTARTING: &str = "3734b8602989485b9ce82b00911acd04";
/// The daemon is stopping.
pub(crate) const DAEMON_STOPPING: &str = "34f4cf03123b435fac2177e7269231e9";
/// An operator paused the host (`driftless pause`).
pub(crate) const PAUSED: &str = "0d4a8e5f2b6c4f1e9a7d3c5b8e2f6a41";
/// An operator lifted the pause (`driftless unpause`).
pub(crate) const UNPAUSED: &str = "5e9c1b7d3a2f4e6c8b0d9a1f7e3c5b24";
/// A converge ran although the host is paused (`converge --now --force`).
pub(crate) const PAUSE_FORCED: &str = "b8f3d6a1c9e24b7f8d5a0e3c6f1b9d72";

/// The journal entry of `driftless pause` (`paused`) or `unpause`.
pub(crate) fn pause_changed(paused: bool, p: &crate::agent::Pause, by: &str) {
    if paused {
        warn!(
            message_id = PAUSED,
            driftless_paused_by = p.by.as_str(),
            driftless_reason = p.reason.as_str(),
            "host paused by {}: {}",
            p.by,
            p.reason
        );
    } else {
        warn!(
            message_id = UNPAUSED,
            driftless_paused_by = p.by.as_str(),
            driftless_reason = p.reason.as_str(),
            "host unpaused by {by} (paused by {} since {}: {})",
            p.by,
            p.at,
            p.reason
        );
    }
}

/// Writes the journal entries of one converge, from its events.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    generation: Option<u64>,
    root: Option<String>,
}

impl Sink for Journal {
    fn event(&mut self, event: &Event) {
        let words = event.words();
        match event {
            // Written when the run begins to change the host: a run that
            // changes nothing writes one entry (in sync, held or failed).
            Event::Started { root, .. } => self.root = Some(root.clone()),
            Event::Began { generation, .. } => {
                self.generation = Some(*generation);
                let root = self.root.as_deref().unwrap_or("/");
                info!(
                    message_id = CONVERGE_STARTED,
                    driftless_root = root,
                    driftless_generation = *generation,
                    "converge of {root} started changing it: {words}"
                );
            }
            Event::FetchFailed {
                refused, instead, ..
            } => {
                let commit = instead.as_deref();
                if *refused {
                    error!(
                        message_id = COMMIT_REFUSED,
                        driftless_commit = commit,
                        "{words}"
                    );
                } else {
                    warn!(
                        message_id = FETCH_FAILED,
                        driftless_commit = commit,
                        "{words}"
                    );
                }
            }
            Event::PauseOverridden { .. } => warn!(message_id = PAUSE_FORCED, "{words}"),
            Event::Held { last_good, .. } => warn!(
                message_id = HELD,
                driftless_commit = last_good.as_deref(),
                "{words}"
            ),
            Event::StepFinished { resource, .. } => info!(
                message_id = RESOURCE_CHANGED,
                driftless_resource = resource.as_str(),
                driftless_generation = self.generation,
                "{words}"
            ),
            Event::Finished {
                outcome,
                generation,
                changes,
                duration_ms,
                key,
                drifted,
                drifted_resources,
                started_by,
                quarantined,
                audit,
                ..
            } => {
                let key = key.as_deref();
                let run = RunFields {
                    key,
                    outcome: outcome.as_str(),
                    duration_ms: *duration_ms,
                    started_by: started_by.as_str(),
                };
                if *drifted > 0 {
                    drift_entry(&run, *drifted, drifted_resources, *audit);
                }
                finished_entry(&run, *outcome, *generation, *changes, &words);
                if *quarantined {
                    error!(
                        message_id = COMMIT_QUARANTINED,
                        driftless_commit = key,
                        driftless_generation = *generation,
                        "{} quarantined: it is not applied again until the source moves on or `driftless retry`",
                        key.unwrap_or("the desired state")
                    );
                }
            }
            // Log lines only (`Log`), or not for the journal at all.
            Event::Fetched { .. }
            | Event::Loaded { .. }
            | Event::Planned { .. }
            | Event::StepStarted { .. }
            | Event::PackagesStarted { .. }
            | Event::PackagesFinished { .. }
            | Event::CheckAttempt { .. }
            | Event::CheckResult { .. }
            | Event::RollingBack { .. }
            | Event::Restored { .. }
            | Event::RestoreFailed { .. } => {}
        }
    }
}

/// The fields every entry of a finished run carries.
struct RunFields<'a> {
    key: Option<&'a str>,
    outcome: &'a str,
    duration_ms: u64,
    started_by: &'a str,
}

/// The entry that says what drifted (healed, or in an audit reported).
fn drift_entry(run: &RunFields<'_>, drifted: usize, named: &[String], audit: bool) {
    let listed = named.join(", ");
    let more = drifted.saturating_sub(named.len());
    warn!(
        message_id = DRIFT_DETECTED,
        driftless_commit = run.key,
        driftless_changes = drifted,
        driftless_resources = listed.as_str(),
        driftless_outcome = run.outcome,
        driftless_started_by = run.started_by,
        "{} drifted from the desired state: {listed}{}{}",
        crate::words::count(drifted, "resource"),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        if audit {
            "; audit mode: nothing was changed"
        } else {
            "; healed"
        }
    );
}

/// The one entry of how a run ended, with the message id of its outcome.
fn finished_entry(
    run: &RunFields<'_>,
    outcome: Outcome,
    generation: Option<u64>,
    changes: usize,
    words: &str,
) {
    let (key, outcome_word, duration_ms, by) =
        (run.key, run.outcome, run.duration_ms, run.started_by);
    match outcome {
        Outcome::Changed => info!(
            message_id = CHANGES_APPLIED,
            driftless_commit = key,
            driftless_generation = generation,
            driftless_changes = changes,
            driftless_outcome = outcome_word,
            driftless_duration_ms = duration_ms,
            driftless_started_by = by,
            "{words}"
        ),
        Outcome::InSync | Outcome::ChangesPending | Outcome::Held => info!(
            message_id = IN_SYNC,
            driftless_commit = key,
            driftless_changes = changes,
            driftless_outcome = outcome_word,
            driftless_duration_ms = duration_ms,
            driftless_started_by = by,
            "{words}"
        ),
        Outcome::RolledBack => error!(
            message_id = ROLLED_BACK,
            driftless_commit = key,
            driftless_generation = generation,
            driftless_outcome = outcome_word,
            driftless_duration_ms = duration_ms,
            driftless_started_by = by,
            "{words}"
        ),
        Outcome::RollbackFailed => error!(
            message_id = ROLLBACK_FAILED,
            driftless_commit = key,
            driftless_generation = generation,
            driftless_outcome = outcome_word,
            driftless_duration_ms = duration_ms,
            driftless_started_by = by,
            "{words}"
        ),
        Outcome::Error | Outcome::Invalid | Outcome::Valid | Outcome::Done => error!(
            message_id = CONVERGE_FAILED,
            driftless_commit = key,
            driftless_outcome = outcome_word,
            driftless_duration_ms = duration_ms,
            driftless_started_by = by,
            "{words}"
        ),
    }
}
