//! The agent's rules, as pure functions of its state: what a converge does
//! with the desired state it loaded (apply it, hold at the last good state,
//! or nothing while pinned), and what a converge's end, a crash recovery, a
//! `rollback`, `resume` or `retry` change in the state.
//!
//! - A paused host converges nothing until `driftless unpause`, unless a
//!   converge is forced (and says so).
//! - A pinned host applies nothing until `driftless resume`.
//! - A quarantined key is not applied again; the host converges to the last
//!   good state instead, until the source moves on or `driftless retry`.
//!   Once another key is applied (the fix), the quarantine is over: it
//!   stays in the history, not in `status` or the metrics.
//! - Only the desired state's own failures quarantine it. A stop request,
//!   a failure to record, an environment problem: the next run tries again.
//! - The last good state is never quarantined: it is what a host holds at.
//! - Only the loaded head becomes last good, never the state held at.
//! - [`MAX_INTERRUPTED`] converges of one key cut short in a row quarantine
//!   it (a converge that crashes the host is to blame).

use super::{AgentState, Interrupted, Mark, short};

/// Quarantine after this many converges of one key in a row were cut short.
pub(crate) const MAX_INTERRUPTED: u32 = 3;

/// What a converge does with the desired state it loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Apply it.
    Apply,
    /// The host is paused by `driftless pause`: converge nothing.
    Paused {
        /// Why, for the operator.
        why: String,
    },
    /// The host is pinned by `driftless rollback`: apply nothing.
    Pinned {
        /// Why, for the operator.
        why: String,
    },
    /// The key is quarantined: converge to the last good state instead.
    HoldAtLastGood {
        /// Why, for the operator.
        why: String,
    },
}

/// Decides what to do with the loaded `key`. A pin only holds a converge
/// that would change the host (`applying`); a dry run still shows what
/// would happen.
pub(crate) fn decide(state: &AgentState, key: &str, applying: bool) -> Decision {
    if let (true, Some(p)) = (applying, &state.paused) {
        return Decision::Paused { why: paused_why(p) };
    }
    if let (true, Some(pin)) = (applying, &state.pinned) {
        return Decision::Pinned {
            why: format!(
                "the host is pinned ({}, since {}): nothing is applied until `driftless resume`",
                pin.reason.as_deref().unwrap_or("driftless rollback"),
                pin.at
            ),
        };
    }
    match state.quarantine.as_ref().filter(|q| q.key == key) {
        None => Decision::Apply,
        Some(q) => Decision::HoldAtLastGood {
            why: format!(
                "{} is quarantined ({}); push a new commit, or run `driftless retry`",
                short(&q.key),
                q.reason.as_deref().unwrap_or("rolled back")
            ),
        },
    }
}

/// What a trial (`converge --now --branch NAME` or `--commit REV`) does:
/// only a pause holds it. It replaces a pin (the operator asks for this
/// commit on this host) and its commit is no head to quarantine.
pub(crate) fn decide_trial(state: &AgentState, applying: bool) -> Decision {
    match (applying, &state.paused) {
        (true, Some(p)) => Decision::Paused { why: paused_why(p) },
        _ => Decision::Apply,
    }
}

/// The source of the pin a trial sets.
pub(crate) const TRIAL_PIN: &str = "driftless converge --now (a trial)";

/// Pins the host at the trial it converged (`what`: `branch feature at
/// 3f2a9c1d0e4b`), until `driftless resume`: nothing else is applied, and
/// the configured branch's applied commit, last good state and rewind
/// floor are left as they were.
pub(crate) fn pin_trial(state: &mut AgentState, what: &str, key: &str, now: &str) {
    state.pinned = Some(Mark {
        key: key.to_owned(),
        source: TRIAL_PIN.to_owned(),
        at: now.to_owned(),
        reason: Some(format!("trying {what}")),
    });
}

/// A pause in words: who, since when, why, and how it ends.
pub(crate) fn paused_why(p: &super::Pause) -> String {
    format!(
        "the host is paused by {} since {} ({}): nothing is converged until `driftless unpause` (or `converge --now --force`)",
        p.by, p.at, p.reason
    )
}

/// `driftless pause`: sets (or replaces) the pause; returns the one it
/// replaced.
pub(crate) fn pause(
    state: &mut AgentState,
    reason: &str,
    by: &str,
    now: &str,
) -> Option<super::Pause> {
    state.paused.replace(super::Pause {
        reason: reason.to_owned(),
        by: by.to_owned(),
        at: now.to_owned(),
    })
}

/// `driftless unpause`: lifts the pause; returns it.
pub(crate) fn unpause(state: &mut AgentState) -> Option<super::Pause> {
    state.paused.take()
}

/// Who is to blame for a failed converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The desired state: a check, a unit, a scriptlet, a package failed.
    DesiredState,
    /// Not the desired state: a stop request, a failure to record, the
    /// environment. The next run tries again.
    Environment,
}

/// How a converge of the loaded key ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended<'a> {
    /// In sync, or applied and its checks passed.
    Good,
    /// A step or a check failed (the host restored or not).
    Failed {
        /// Why, as recorded with a quarantine.
        reason: &'a str,
        /// Who is to blame.
        blame: Blame,
    },
}

/// The converge being recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Converged<'a> {
    /// The key of the loaded desired state (commit id or content hash).
    pub key: &'a str,
    /// Where it came from.
    pub source: &'a str,
    /// The git commit, when the source is git.
    pub commit: Option<&'a str>,
    /// The host was held at the last good state instead of `key`.
    pub held: bool,
    /// Now (RFC 3339).
    pub now: &'a str,
}

/// What the caller must store besides the state itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Store the desired state as the last good state (its content).
    pub save_last_good: bool,
    /// Move the git cache's applied ref to the commit.
    pub mark_applied: bool,
    /// The key failed but is the last good state: not quarantined (said
    /// in the log).
    pub spared_last_good: bool,
}

/// Records how a converge ended in `state`.
pub(crate) fn record(state: &mut AgentState, c: &Converged<'_>, ended: Ended<'_>) -> Effects {
    if c.held {
        // Only the head itself becomes last good (or is quarantined),
        // never the state the host is held at.
        return Effects::default();
    }
    match ended {
        Ended::Good => record_good(state, c),
        Ended::Failed {
            blame: Blame::Environment,
            ..
        } => Effects::default(),
        Ended::Failed {
            reason,
            blame: Blame::DesiredState,
        } => {
            if is_last_good(state, c.key) {
                return Effects {
                    spared_last_good: true,
                    ..Effects::default()
                };
            }
            state.quarantine = Some(Mark {
                key: c.key.to_owned(),
                source: c.source.to_owned(),
                at: c.now.to_owned(),
                reason: Some(reason.to_owned()),
            });
            Effects::default()
        }
    }
}

fn record_good(state: &mut AgentState, c: &Converged<'_>) -> Effects {
    // The head moved on and converged: the quarantine of another key is
    // over (the alert it raised must clear).
    if state.quarantine.as_ref().is_some_and(|q| q.key != c.key) {
        state.quarantine = None;
    }
    // A converge that finds the host as the same desired state left it
    // writes nothing: the state directory is not churned every run.
    let same_key = is_last_good(state, c.key);
    let same_commit = c
        .commit
        .is_none_or(|commit| state.applied_commit.as_deref() == Some(commit));
    let streak = state.interrupted.as_ref().is_some_and(|i| i.key == c.key);
    if same_key && same_commit && !streak {
        return Effects::default();
    }
    state.last_good = Some(Mark {
        key: c.key.to_owned(),
        source: c.source.to_owned(),
        at: c.now.to_owned(),
        reason: None,
    });
    if streak {
        state.interrupted = None;
    }
    if let Some(commit) = c.commit {
        state.applied_commit = Some(commit.to_owned());
        state.applied_at = Some(c.now.to_owned());
    }
    Effects {
        save_last_good: true,
        mark_applied: c.commit.is_some(),
        spared_last_good: false,
    }
}

fn is_last_good(state: &AgentState, key: &str) -> bool {
    state.last_good.as_ref().is_some_and(|g| g.key == key)
}

/// A generation that a crash cut short, found and rolled back at startup.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interruption<'a> {
    /// Its generation.
    pub generation: u64,
    /// The key it was converging.
    pub key: &'a str,
    /// Where that came from.
    pub source: &'a str,
    /// It was a `driftless rollback`, not a converge.
    pub was_undo: bool,
}

/// Records a recovered interruption: a `driftless rollback` cut short is
/// finished and pins the host as that command would have; a converge cut
/// short counts against its key, and [`MAX_INTERRUPTED`] in a row
/// quarantine it (unless it is the last good state).
pub(crate) fn interrupted(state: &mut AgentState, i: &Interruption<'_>, now: &str) {
    if i.was_undo {
        if state.pinned.is_none() {
            state.pinned = Some(Mark {
                key: format!("before generation {}", i.generation),
                source: "driftless rollback".to_owned(),
                at: now.to_owned(),
                reason: Some(format!(
                    "rolled back to before generation {} (finished after a crash)",
                    i.generation
                )),
            });
        }
        return;
    }
    let count = match &state.interrupted {
        Some(prev) if prev.key == i.key => prev.count + 1,
        _ => 1,
    };
    state.interrupted = Some(Interrupted {
        key: i.key.to_owned(),
        count,
    });
    if count >= MAX_INTERRUPTED && !is_last_good(state, i.key) {
        state.quarantine = Some(Mark {
            key: i.key.to_owned(),
            source: i.source.to_owned(),
            at: now.to_owned(),
            reason: Some(format!("{count} converges in a row were interrupted")),
        });
    }
}

/// Pins the host after `driftless rollback` undid generation `from` and
/// every later one.
pub(crate) fn pin(state: &mut AgentState, from: u64, now: &str) {
    state.pinned = Some(Mark {
        key: format!("before generation {from}"),
        source: "driftless rollback".to_owned(),
        at: now.to_owned(),
        reason: Some(format!("rolled back to before generation {from}")),
    });
}

/// Records a fetch: a failure counts, a success ends the streak.
pub(crate) fn fetched(state: &mut AgentState, ok: bool, now: &str) {
    if ok {
        state.fetch_failures = 0;
        state.last_fetch_success = Some(now.to_owned());
    } else {
        state.fetch_failures += 1;
    }
}

/// `driftless resume`: lifts the pin; returns it.
pub(crate) fn resume(state: &mut AgentState) -> Option<Mark> {
    state.pinned.take()
}

/// `driftless retry`: lifts the quarantine (and forgets an interruption
/// streak), so the next converge tries the head again; returns it.
pub(crate) fn retry(state: &mut AgentState) -> Option<Mark> {
    state.interrupted = None;
    state.quarantine.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-01T12:00:00Z";

    fn converged(key: &str) -> Converged<'_> {
        Converged {
            key,
            source: "commit x",
            commit: Some(key),
            held: false,
            now: NOW,
        }
    }

    fn mark(key: &str) -> Mark {
        Mark {
            key: key.into(),
            source: "commit x".into(),
            at: "2026-11-30T00:00:00Z".into(),
            reason: None,
        }
    }

    fn failed(blame: Blame) -> Ended<'static> {
        Ended::Failed {
            reason: "generation 3 rolled back: check web failed",
            blame,
        }
    }

    #[test]
    fn applied_becomes_last_good_and_the_applied_commit() {
        let mut s = AgentState::default();
        let e = record(&mut s, &converged("c1"), Ended::Good);
        assert_eq!(
            e,
            Effects {
                save_last_good: true,
                mark_applied: true,
                spared_last_good: false
            }
        );
        assert_eq!(s.last_good.as_ref().map(|m| m.key.as_str()), Some("c1"));
        assert_eq!(s.applied_commit.as_deref(), Some("c1"));
        assert_eq!(s.applied_at.as_deref(), Some(NOW));
        // The same state found again writes nothing.
        let before = s.clone();
        assert_eq!(
            record(&mut s, &converged("c1"), Ended::Good),
            Effects::default()
        );
        assert_eq!(s, before);
    }

    #[test]
    fn rolled_back_by_its_own_fault_is_quarantined() {
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            ..AgentState::default()
        };
        record(&mut s, &converged("c2"), failed(Blame::DesiredState));
        let q = s.quarantine.as_ref().expect("quarantined");
        assert_eq!(q.key, "c2");
        assert_eq!(
            q.reason.as_deref(),
            Some("generation 3 rolled back: check web failed")
        );
        assert!(matches!(
            decide(&s, "c2", true),
            Decision::HoldAtLastGood { why } if why.contains("c2 is quarantined (generation 3 rolled back")
        ));
        // A new head is tried.
        assert_eq!(decide(&s, "c3", true), Decision::Apply);
    }

    #[test]
    fn an_environment_failure_is_not_quarantined() {
        let mut s = AgentState::default();
        let before = s.clone();
        let e = record(&mut s, &converged("c2"), failed(Blame::Environment));
        assert_eq!(e, Effects::default());
        assert_eq!(s, before);
        assert_eq!(decide(&s, "c2", true), Decision::Apply);
    }

    #[test]
    fn the_last_good_state_is_never_quarantined() {
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            ..AgentState::default()
        };
        let e = record(&mut s, &converged("c1"), failed(Blame::DesiredState));
        assert!(e.spared_last_good);
        assert_eq!(s.quarantine, None);
    }

    /// Regression: a bad commit was rolled back and quarantined, the fix
    /// applied, and `status` and `driftless_quarantined` kept naming the
    /// bad commit until someone ran `retry`.
    #[test]
    fn applying_another_key_ends_the_quarantine() {
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            quarantine: Some(mark("c2")),
            ..AgentState::default()
        };
        let e = record(&mut s, &converged("c3"), Ended::Good);
        assert!(e.save_last_good);
        assert_eq!(s.quarantine, None);
        // Also when the head is back at the last good state.
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            applied_commit: Some("c1".into()),
            quarantine: Some(mark("c2")),
            ..AgentState::default()
        };
        record(&mut s, &converged("c1"), Ended::Good);
        assert_eq!(s.quarantine, None);
    }

    #[test]
    fn held_at_last_good_records_nothing_for_either_key() {
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            quarantine: Some(mark("c2")),
            ..AgentState::default()
        };
        let before = s.clone();
        let held = Converged {
            held: true,
            ..converged("c2")
        };
        assert_eq!(record(&mut s, &held, Ended::Good), Effects::default());
        record(&mut s, &held, failed(Blame::DesiredState));
        assert_eq!(s, before);
    }

    fn interruption(key: &str) -> Interruption<'_> {
        Interruption {
            generation: 7,
            key,
            source: "commit x",
            was_undo: false,
        }
    }

    #[test]
    fn one_interruption_counts_and_a_good_converge_ends_the_streak() {
        let mut s = AgentState::default();
        interrupted(&mut s, &interruption("c2"), NOW);
        assert_eq!(
            s.interrupted,
            Some(Interrupted {
                key: "c2".into(),
                count: 1
            })
        );
        assert_eq!(s.quarantine, None);
        // Another key starts a new streak.
        interrupted(&mut s, &interruption("c3"), NOW);
        assert_eq!(s.interrupted.as_ref().map(|i| i.count), Some(1));
        let e = record(&mut s, &converged("c3"), Ended::Good);
        assert!(e.save_last_good);
        assert_eq!(s.interrupted, None);
    }

    #[test]
    fn three_interruptions_in_a_row_quarantine_unless_last_good() {
        let mut s = AgentState::default();
        for _ in 0..MAX_INTERRUPTED {
            interrupted(&mut s, &interruption("c2"), NOW);
        }
        let q = s.quarantine.as_ref().expect("quarantined");
        assert_eq!(
            q.reason.as_deref(),
            Some("3 converges in a row were interrupted")
        );
        let mut s = AgentState {
            last_good: Some(mark("c1")),
            ..AgentState::default()
        };
        for _ in 0..MAX_INTERRUPTED + 1 {
            interrupted(&mut s, &interruption("c1"), NOW);
        }
        assert_eq!(s.quarantine, None);
    }

    #[test]
    fn an_interrupted_rollback_pins_the_host() {
        let mut s = AgentState::default();
        interrupted(
            &mut s,
            &Interruption {
                was_undo: true,
                ..interruption("c2")
            },
            NOW,
        );
        let pin = s.pinned.as_ref().expect("pinned");
        assert_eq!(pin.key, "before generation 7");
        assert_eq!(s.interrupted, None);
    }

    #[test]
    fn pinned_holds_only_converges_that_would_change_the_host() {
        let mut s = AgentState::default();
        pin(&mut s, 4, NOW);
        assert!(matches!(
            decide(&s, "c1", true),
            Decision::Pinned { why } if why.contains("rolled back to before generation 4")
        ));
        assert_eq!(decide(&s, "c1", false), Decision::Apply);
    }

    #[test]
    fn resume_lifts_the_pin() {
        let mut s = AgentState::default();
        pin(&mut s, 4, NOW);
        assert!(resume(&mut s).is_some());
        assert_eq!(decide(&s, "c1", true), Decision::Apply);
        assert!(resume(&mut s).is_none());
    }

    #[test]
    fn retry_lifts_the_quarantine_and_the_streak() {
        let mut s = AgentState::default();
        for _ in 0..MAX_INTERRUPTED {
            interrupted(&mut s, &interruption("c2"), NOW);
        }
        assert!(retry(&mut s).is_some());
        assert_eq!(s.interrupted, None);
        assert_eq!(decide(&s, "c2", true), Decision::Apply);
        assert!(retry(&mut s).is_none());
    }

    #[test]
    fn fetch_failures_count_in_a_row() {
        let mut s = AgentState::default();
        fetched(&mut s, false, NOW);
        fetched(&mut s, false, NOW);
        assert_eq!(s.fetch_failures, 2);
        fetched(&mut s, true, NOW);
        assert_eq!(s.fetch_failures, 0);
    }
}
