//! The agent's loop as an explicit state machine: states, and transitions
//! named after the events that cause them. Pure: the clock comes in as
//! values, and what to do next comes out (which fetch policy to run a
//! converge with, when to wake up, the one-line status for systemd). The
//! runtime (`runtime`) owns the timers, the socket and the threads.
//!
//! ```text
//! Starting --configured--> Recovering --recovered--> Idle{next}
//! Idle --tick_due / converge_requested--> Converging{phase}
//! Converging --progress--> Converging   --finished--> Idle{next}
//! Idle --nudged--> Idle{sooner}   Converging --nudged--> (a tick soon after)
//! any --stop_requested--> Stopping (a converge in flight is cancelled and
//!                                   rolls back first)
//! ```
//!
//! Held (a quarantined head, a pinned host) and a failing fetch are not
//! states of their own: the loop goes on ticking, and they show in the
//! status line and in [`Machine::last`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::schedule;
use crate::agent::short;
use crate::app::{ConvergeResult, FetchPolicy};
use crate::config::ScheduleSettings;
use crate::converge::Event;
use crate::outcome::Outcome;

/// Where the loop stands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum State {
    /// Loading the config, binding the socket.
    Starting,
    /// Rolling back what a crash left unfinished, before the first tick.
    Recovering,
    /// Waiting for the next tick.
    Idle {
        /// When it is due.
        next: Instant,
    },
    /// A converge runs.
    Converging {
        /// The commit (or content key) being converged, once known.
        commit: Option<String>,
        /// What it does now.
        phase: Phase,
        /// Step `index` of `total`, while applying.
        step: Option<(usize, usize)>,
        /// Whether it fetches from the remote.
        fetching: bool,
    },
    /// Stopping; a converge in flight is rolled back first.
    Stopping {
        /// A converge is still finishing.
        converging: bool,
    },
}

/// What started a converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The schedule.
    Tick,
    /// A client (`converge --now`).
    Asked,
}

/// What a converge is doing, for the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Fetching and checking the git source.
    Fetching,
    /// Computing the desired state.
    Loading,
    /// Observing the host and planning.
    Planning,
    /// Applying steps.
    Applying,
    /// In the package transaction.
    Packages,
    /// Running the health checks.
    Checking,
    /// Restoring the snapshot.
    RollingBack,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Fetching => "fetching",
            Phase::Loading => "loading",
            Phase::Planning => "planning",
            Phase::Applying => "applying",
            Phase::Packages => "packages",
            Phase::Checking => "health checks",
            Phase::RollingBack => "rolling back",
        }
    }
}

/// The last converge, as the daemon remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastRun {
    /// When it ended.
    pub at: SystemTime,
    /// How.
    pub outcome: Outcome,
    /// The desired state's key (commit or content hash).
    pub key: Option<String>,
    /// The generation it recorded.
    pub generation: Option<u64>,
    /// Changes applied (or pending, in an audit).
    pub changes: usize,
    /// Drift found.
    pub drifted: usize,
    /// An audit: nothing was changed.
    pub audit: bool,
    /// How long it took.
    pub duration: Duration,
    /// What failed.
    pub error: Option<String>,
    /// Why it was held, when it was.
    #[serde(default)]
    pub held: Option<String>,
    /// It quarantined its key.
    pub quarantined: bool,
    /// Why the fleet's rollout gate held its new commit back.
    pub rollout_blocked: Option<String>,
}

/// Totals since the daemon started, for the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stats {
    /// Converges by outcome word.
    pub converges: BTreeMap<String, u64>,
    /// Converges rolled back.
    pub rollbacks: u64,
    /// Remote fetches that failed.
    pub fetch_failures: u64,
    /// When a converge last ended well.
    pub last_success: Option<SystemTime>,
    /// Resources healed (drift from a state already applied, put back).
    #[serde(default)]
    pub drift_healed: u64,
}

/// The loop's state and what it remembers between ticks.
#[derive(Debug)]
pub(crate) struct Machine {
    /// Where it stands.
    state: State,
    /// The schedule in force (replaced by a reload).
    schedule: ScheduleSettings,
    /// The last converge.
    last: Option<LastRun>,
    /// Totals.
    stats: Stats,
    /// Fetches failed in a row.
    fetch_failures: u32,
    /// Since when the fetch fails, and the last error.
    fetch_failing: Option<(SystemTime, String)>,
    /// The commit applied and when (for the status line).
    applied: Option<(String, SystemTime)>,
    /// What the agent state says that holds every run, as last read: a
    /// pause (why, in words) or a pin (why).
    held_by_state: Option<String>,
    /// The agent state says the head is quarantined.
    quarantined: bool,
    /// The host is paused (`driftless pause`).
    paused: bool,
    /// When a fetch last succeeded (kept in the agent state).
    last_fetch_success: Option<SystemTime>,
    /// The next remote fetch is not before this (backoff).
    next_fetch: Option<Instant>,
    /// This tick's fetch: `None` not tried, `Some(ok)`.
    fetched: Option<bool>,
    /// A nudge came during a converge: the next tick comes this long after
    /// it ends (the run may have fetched before the push).
    nudged_during: Option<Duration>,
    /// A nudge asked for the next tick: it fetches, backoff or not (a
    /// nudge says the remote has something new).
    nudge_fetch: bool,
    /// What the status line says of a reboot (required, waiting, under
    /// way), as the daemon last checked.
    reboot: Option<String>,
}

impl Machine {
    /// A machine that is starting, with `schedule`.
    pub(crate) fn new(schedule: ScheduleSettings) -> Self {
        Self {
            state: State::Starting,
            schedule,
            last: None,
            stats: Stats::default(),
            fetch_failures: 0,
            fetch_failing: None,
            applied: None,
            held_by_state: None,
            quarantined: false,
            paused: false,
            last_fetch_success: None,
            next_fetch: None,
            fetched: None,
            nudged_during: None,
            nudge_fetch: false,
            reboot: None,
        }
    }

    /// The agent state was read (at start, after each run, and when a
    /// command changed it: `pause`, `rollback`, `resume`, `retry`): what it
    /// says shows in the status line and the metrics at once.
    pub(crate) fn state_read(&mut self, state: &crate::agent::AgentState) {
        self.applied = state.applied_commit.as_ref().map(|c| {
            let at = state
                .applied_at
                .as_deref()
                .and_then(|a| humantime::parse_rfc3339(a).ok())
                .unwrap_or_else(SystemTime::now);
            (c.clone(), at)
        });
        self.paused = state.paused.is_some();
        self.last_fetch_success = state
            .last_fetch_success
            .as_deref()
            .and_then(|a| humantime::parse_rfc3339(a).ok());
        self.quarantined = state.quarantine.is_some();
        self.held_by_state = match (&state.paused, &state.pinned) {
            (Some(p), _) => Some(format!(
                "paused by {} since {} ({}); `driftless unpause`",
                p.by, p.at, p.reason
            )),
            (None, Some(pin)) => Some(format!(
                "pinned since {} ({}); nothing is applied until `driftless resume`",
                pin.at,
                pin.reason.as_deref().unwrap_or("driftless rollback")
            )),
            (None, None) => None,
        };
    }

    /// The config is loaded: recover before anything else.
    pub(crate) fn configured(&mut self) {
        self.expect("configured", matches!(self.state, State::Starting));
        self.state = State::Recovering;
    }

    /// Recovery is done: the first tick comes after the splay.
    pub(crate) fn recovered(&mut self, now: Instant, splay: Duration) {
        if !matches!(self.state, State::Recovering) {
            // A stop during recovery stays a stop.
            self.expect("recovered", matches!(self.state, State::Stopping { .. }));
            return;
        }
        self.state = State::Idle { next: now + splay };
    }

    /// Checks that a transition starts from a state it may start from: a
    /// wrong one is a bug of the loop, caught by the tests and logged in a
    /// build that runs.
    fn expect(&self, transition: &str, from_allowed: bool) {
        debug_assert!(
            from_allowed,
            "{transition} from {} is not a transition of the daemon",
            self.state_word()
        );
        if !from_allowed {
            tracing::error!(
                transition,
                state = self.state_word(),
                "internal error: the daemon's state machine was asked for a transition its state does not allow"
            );
        }
    }

    /// The schedule in force.
    pub(crate) fn interval(&self) -> Duration {
        self.schedule.interval
    }

    /// Whether a stop was asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        matches!(self.state, State::Stopping { .. })
    }

    /// The last converge, if any.
    pub(crate) fn last(&self) -> Option<&LastRun> {
        self.last.as_ref()
    }

    /// Totals since the daemon started.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Fetches failed in a row.
    pub(crate) fn fetch_failures(&self) -> u32 {
        self.fetch_failures
    }

    /// Since when the fetch fails, and its last error.
    pub(crate) fn fetch_failing(&self) -> Option<&(SystemTime, String)> {
        self.fetch_failing.as_ref()
    }

    /// The commit applied, as the agent state says.
    pub(crate) fn applied_commit(&self) -> Option<&str> {
        self.applied.as_ref().map(|(c, _)| c.as_str())
    }

    /// Whether the agent state says the head is quarantined.
    pub(crate) fn quarantined(&self) -> bool {
        self.quarantined
    }

    /// Whether the host is paused.
    pub(crate) fn paused(&self) -> bool {
        self.paused
    }

    /// When a fetch last succeeded.
    pub(crate) fn last_fetch_success(&self) -> Option<SystemTime> {
        self.last_fetch_success
    }

    /// The next remote fetch is not before this (backing off).
    pub(crate) fn next_fetch(&self) -> Option<Instant> {
        self.next_fetch
    }

    /// When the loop wants to wake up for a tick (`None`: not idle).
    pub(crate) fn next_tick(&self) -> Option<Instant> {
        match self.state {
            State::Idle { next } => Some(next),
            _ => None,
        }
    }

    /// A tick is due, or a converge was asked for: start one. Returns how
    /// it gets the source. A tick fetches from the remote unless backing
    /// off from failed fetches (then the cache is converged: self-healing
    /// goes on), and falls back to the cache when the fetch fails. A run
    /// asked for (`converge --now`) always fetches, and a failed fetch
    /// ends it, as it does in-process: "run now" means the newest commit.
    /// `None` when not idle.
    pub(crate) fn converge_started(
        &mut self,
        now: Instant,
        trigger: Trigger,
    ) -> Option<FetchPolicy> {
        if !matches!(self.state, State::Idle { .. }) {
            return None;
        }
        // Taken whatever asked: a nudge's fetch is for the next run only.
        let nudged = std::mem::take(&mut self.nudge_fetch);
        let fetching =
            trigger == Trigger::Asked || nudged || self.next_fetch.is_none_or(|t| now >= t);
        self.fetched = None;
        self.state = State::Converging {
            commit: None,
            phase: if fetching {
                Phase::Fetching
            } else {
                Phase::Loading
            },
            step: None,
            fetching,
        };
        Some(match (trigger, fetching) {
            (Trigger::Asked, _) => FetchPolicy::Remote,
            (Trigger::Tick, true) => FetchPolicy::RemoteOrCache,
            (Trigger::Tick, false) => FetchPolicy::Cache,
        })
    }

    /// An event of the converge in flight.
    pub(crate) fn progress(&mut self, event: &Event, wall: SystemTime) {
        let State::Converging {
            commit,
            phase,
            step,
            fetching,
        } = &mut self.state
        else {
            return;
        };
        match event {
            Event::FetchFailed { error, instead, .. } if *fetching => {
                self.fetched = Some(false);
                if let Some(c) = instead {
                    *commit = Some(c.clone());
                }
                if self.fetch_failing.is_none() {
                    self.fetch_failing = Some((wall, error.clone()));
                } else if let Some((_, e)) = &mut self.fetch_failing {
                    e.clone_from(error);
                }
            }
            Event::Fetched { commit: c } => {
                if *fetching && self.fetched.is_none() {
                    self.fetched = Some(true);
                }
                *commit = Some(c.clone());
                *phase = Phase::Loading;
            }
            Event::Loaded { .. } => *phase = Phase::Planning,
            Event::Began { changes, .. } => {
                *phase = Phase::Applying;
                *step = Some((0, *changes));
            }
            Event::StepStarted { index, total, .. } => {
                *phase = Phase::Applying;
                *step = Some((*index, *total));
            }
            Event::PackagesStarted { .. } => *phase = Phase::Packages,
            Event::CheckAttempt { .. } => *phase = Phase::Checking,
            Event::RollingBack { .. } => *phase = Phase::RollingBack,
            _ => {}
        }
    }

    /// The converge ended: remember it and schedule the next tick (the
    /// interval, jittered by `unit` in `[-1, 1]`).
    pub(crate) fn converge_finished(
        &mut self,
        r: &ConvergeResult,
        now: Instant,
        wall: SystemTime,
        unit: f64,
    ) {
        self.expect(
            "converge finished",
            matches!(
                self.state,
                State::Converging { .. } | State::Stopping { converging: true }
            ),
        );
        let outcome = r.run.outcome;
        *self
            .stats
            .converges
            .entry(outcome.as_str().to_owned())
            .or_insert(0) += 1;
        if matches!(outcome, Outcome::RolledBack | Outcome::RollbackFailed) {
            self.stats.rollbacks += 1;
        }
        if matches!(
            outcome,
            Outcome::InSync | Outcome::Changed | Outcome::ChangesPending
        ) {
            self.stats.last_success = Some(wall);
        }
        // Healed: the run changed the host back to a state already applied.
        if !r.audit && r.generation.is_some() && matches!(outcome, Outcome::Changed | Outcome::Held)
        {
            self.stats.drift_healed += r.drifted as u64;
        }
        match self.fetched.take() {
            Some(true) => {
                self.fetch_failures = 0;
                self.fetch_failing = None;
                self.next_fetch = None;
            }
            Some(false) => {
                self.fetch_failures += 1;
                self.stats.fetch_failures += 1;
                self.next_fetch = Some(
                    now + schedule::fetch_backoff(
                        self.schedule.interval,
                        self.fetch_failures,
                        self.schedule.backoff_max,
                    ),
                );
            }
            None => {}
        }
        self.last = Some(LastRun {
            at: wall,
            outcome,
            key: r.key.clone(),
            generation: r.generation,
            changes: r.run.changes.len(),
            drifted: r.drifted,
            audit: r.audit,
            duration: Duration::from_millis(r.duration_ms),
            error: r.run.error.clone(),
            held: r.held.clone(),
            quarantined: r.quarantined,
            rollout_blocked: r.rollout_blocked.as_ref().map(|b| b.reason.clone()),
        });
        let next = now + schedule::jitter(self.schedule.interval, unit);
        self.state = match self.state {
            State::Stopping { .. } => State::Stopping { converging: false },
            _ => State::Idle {
                next: match self.nudged_during.take() {
                    Some(delay) => next.min(now + delay),
                    None => next,
                },
            },
        };
    }

    /// The fleet's nudge key was written (a push): the next tick comes
    /// within `delay` (the host's own random share of the nudge splay),
    /// and fetches. The tick is an ordinary one: the rollout gate, the
    /// pause and the quarantine apply as at any tick. While a converge
    /// runs, the tick comes `delay` after it ends. Returns when it is due
    /// (`None`: after the run in flight, or not at all when stopping).
    pub(crate) fn nudged(&mut self, now: Instant, delay: Duration) -> Option<Instant> {
        match &mut self.state {
            State::Idle { next } => {
                *next = (*next).min(now + delay);
                self.nudge_fetch = true;
                Some(*next)
            }
            State::Converging { .. } => {
                self.nudged_during = Some(self.nudged_during.map_or(delay, |d| d.min(delay)));
                self.nudge_fetch = true;
                None
            }
            // Before the first tick (it fetches anyway) or stopping.
            State::Starting | State::Recovering | State::Stopping { .. } => None,
        }
    }

    /// SIGTERM: stop. Returns whether a converge in flight must be
    /// cancelled (it then rolls back, and the loop ends when it finished).
    pub(crate) fn stop_requested(&mut self) -> bool {
        let converging = matches!(
            self.state,
            State::Converging { .. } | State::Stopping { converging: true }
        );
        self.state = State::Stopping { converging };
        converging
    }

    /// Whether the loop may end now.
    pub(crate) fn stopped(&self) -> bool {
        matches!(self.state, State::Stopping { converging: false })
    }

    /// A reload brought a new schedule: the next tick keeps its time but
    /// is never later than one new interval from now.
    pub(crate) fn reloaded(&mut self, schedule: ScheduleSettings, now: Instant) {
        if let State::Idle { next } = &mut self.state {
            *next = (*next).min(now + schedule.interval);
        }
        self.schedule = schedule;
    }

    /// The state's name, for `status`.
    pub(crate) fn state_word(&self) -> &'static str {
        match self.state {
            State::Starting => "starting",
            State::Recovering => "recovering",
            State::Idle { .. } => "idle",
            State::Converging { .. } => "converging",
            State::Stopping { .. } => "stopping",
        }
    }

    /// What the daemon found about a reboot, for the status line.
    pub(crate) fn reboot_noted(&mut self, note: Option<String>) {
        self.reboot = note;
    }

    /// The one-line status systemd shows (`systemctl status driftless`):
    /// the loop's, then what is known of a reboot.
    pub(crate) fn status_line(&self, now: Instant, wall: SystemTime) -> String {
        let line = self.loop_line(now, wall);
        match &self.reboot {
            Some(r) if !matches!(self.state, State::Starting | State::Stopping { .. }) => {
                format!("{line}; {r}")
            }
            _ => line,
        }
    }

    /// The loop's own status: its state, the last run, the next.
    fn loop_line(&self, now: Instant, wall: SystemTime) -> String {
        let ago = |t: SystemTime| human(wall.duration_since(t).unwrap_or_default());
        let next = |next: Instant| human(next.saturating_duration_since(now));
        let applied = || {
            self.applied
                .as_ref()
                .map(|(c, at)| (short(c).to_owned(), *at))
        };
        match &self.state {
            State::Starting => "starting".to_owned(),
            State::Recovering => "recovering what a crash left unfinished".to_owned(),
            State::Stopping { converging: true } => {
                "stopping: rolling back the converge in flight".to_owned()
            }
            State::Stopping { .. } => "stopping".to_owned(),
            State::Converging {
                commit,
                phase,
                step,
                ..
            } => {
                let what = commit.as_deref().map(short).unwrap_or("the config repo");
                match (phase, step) {
                    (Phase::Applying, Some((i, n))) if *n > 0 => {
                        format!("converging {what}: applying ({i}/{n})")
                    }
                    _ => format!("converging {what}: {}", phase.word()),
                }
            }
            State::Idle { next: at } => {
                let next = format!("next run in {}", next(*at));
                if let Some(held) = &self.held_by_state {
                    return format!("{held}; {next}");
                }
                let healing = applied()
                    .map(|(c, _)| c)
                    .or_else(|| {
                        self.last
                            .as_ref()
                            .and_then(|l| l.key.as_deref().map(|k| short(k).to_owned()))
                    })
                    .unwrap_or_else(|| "the last good state".to_owned());
                if let Some((since, error)) = &self.fetch_failing {
                    let verb = if self.last.as_ref().is_some_and(|l| l.audit) {
                        "auditing"
                    } else {
                        "healing"
                    };
                    return format!(
                        "fetch failing for {} ({}); {verb} {healing}; {next}",
                        ago(*since),
                        first_line(error)
                    );
                }
                let Some(last) = &self.last else {
                    return format!("waiting for the first run; {next}");
                };
                let key = last.key.as_deref().map(short).unwrap_or("?").to_owned();
                match last.outcome {
                    Outcome::InSync | Outcome::Changed => match applied() {
                        Some((c, at)) => {
                            format!("in sync at {c} (applied {} ago); {next}", ago(at))
                        }
                        None => format!("in sync at {key}; {next}"),
                    },
                    Outcome::ChangesPending => format!(
                        "audit: {} drifted from {key}, nothing changed; {next}",
                        crate::words::count(last.changes, "resource")
                    ),
                    Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Held
                        if last.quarantined || last.outcome == Outcome::Held =>
                    {
                        let why = last
                            .held
                            .as_deref()
                            .or(last.error.as_deref())
                            .map(first_line)
                            .unwrap_or_default();
                        if last.outcome == Outcome::Held {
                            format!("held: {why}; {next}")
                        } else {
                            format!("rolled back {key}: {why}; holding {healing}; {next}")
                        }
                    }
                    Outcome::RolledBack => format!(
                        "rolled back {key}: {}; {next}",
                        last.error.as_deref().map(first_line).unwrap_or_default()
                    ),
                    Outcome::RollbackFailed => format!(
                        "ROLLBACK FAILED for {key}, the host needs attention: {}; {next}",
                        last.error.as_deref().map(first_line).unwrap_or_default()
                    ),
                    _ => format!(
                        "last run failed: {}; {next}",
                        last.error.as_deref().map(first_line).unwrap_or_default()
                    ),
                }
            }
        }
    }
}

/// The first line of a message, cut to a length a status line can carry.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(120).collect();
    if line.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// A duration as people say it: `45s`, `4m`, `2h 5m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Run;

    fn schedule() -> ScheduleSettings {
        ScheduleSettings {
            interval: Duration::from_secs(300),
            splay: Duration::from_secs(60),
            backoff_max: Duration::from_secs(1800),
        }
    }

    fn result(outcome: Outcome, key: &str) -> ConvergeResult {
        ConvergeResult {
            run: Run {
                outcome,
                ..Run::default()
            },
            key: Some(key.to_owned()),
            ..ConvergeResult::default()
        }
    }

    const C1: &str = "3f2a9c1d0000000000000000000000000000abcd";
    const C2: &str = "9b1e02d50000000000000000000000000000abcd";

    #[test]
    fn the_happy_path_ticks_every_interval() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = Machine::new(schedule());
        assert_eq!(m.status_line(t0, wall), "starting");
        m.configured();
        assert_eq!(m.state, State::Recovering);
        m.recovered(t0, Duration::from_secs(42));
        assert_eq!(m.next_tick(), Some(t0 + Duration::from_secs(42)));
        assert_eq!(
            m.status_line(t0, wall),
            "waiting for the first run; next run in 42s"
        );
        let t1 = t0 + Duration::from_secs(42);
        assert_eq!(
            m.converge_started(t1, Trigger::Tick),
            Some(FetchPolicy::RemoteOrCache)
        );
        assert_eq!(
            m.converge_started(t1, Trigger::Tick),
            None,
            "one converge at a time"
        );
        assert_eq!(
            m.status_line(t1, wall),
            "converging the config repo: fetching"
        );
        m.progress(&Event::Fetched { commit: C1.into() }, wall);
        m.progress(
            &Event::Began {
                generation: 1,
                changes: 5,
            },
            wall,
        );
        m.progress(
            &Event::StepStarted {
                index: 2,
                total: 5,
                resource: "file:/etc/motd".into(),
                verb: "write file".into(),
            },
            wall,
        );
        assert_eq!(
            m.status_line(t1, wall),
            "converging 3f2a9c1d0000: applying (2/5)"
        );
        m.progress(&Event::PackagesStarted { resources: vec![] }, wall);
        assert_eq!(m.status_line(t1, wall), "converging 3f2a9c1d0000: packages");
        m.converge_finished(&result(Outcome::Changed, C1), t1, wall, 0.0);
        m.applied = Some((C1.to_owned(), wall - Duration::from_secs(240)));
        assert_eq!(m.next_tick(), Some(t1 + Duration::from_secs(300)));
        assert_eq!(
            m.status_line(t1 + Duration::from_secs(120), wall),
            "in sync at 3f2a9c1d0000 (applied 4m ago); next run in 3m"
        );
        assert_eq!(m.stats.converges.get("changed"), Some(&1));
        assert!(m.stats.last_success.is_some());
    }

    #[test]
    fn a_failing_fetch_backs_off_and_heals_from_the_cache() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::ZERO);
        m.applied = Some((C1.to_owned(), wall));
        // The fetch fails; the cached commit is converged instead.
        assert_eq!(
            m.converge_started(t0, Trigger::Tick),
            Some(FetchPolicy::RemoteOrCache)
        );
        m.progress(
            &Event::FetchFailed {
                error: "connection refused".into(),
                refused: false,
                instead: Some(C1.into()),
            },
            wall,
        );
        m.converge_finished(&result(Outcome::InSync, C1), t0, wall, 0.0);
        assert_eq!(m.fetch_failures, 1);
        // The next tick comes after one interval and heals from the cache:
        // the remote is not asked again before the backoff (600 s).
        let t1 = m.next_tick().expect("idle");
        assert_eq!(t1, t0 + Duration::from_secs(300));
        assert_eq!(
            m.status_line(t1, wall + Duration::from_secs(720)),
            "fetch failing for 12m (connection refused); healing 3f2a9c1d0000; next run in 0s"
        );
        assert_eq!(
            m.converge_started(t1, Trigger::Tick),
            Some(FetchPolicy::Cache)
        );
        m.converge_finished(&result(Outcome::InSync, C1), t1, wall, 0.0);
        // After the backoff the remote is tried again; a success ends it.
        let t2 = m.next_tick().expect("idle");
        assert_eq!(t2, t0 + Duration::from_secs(600));
        assert_eq!(
            m.converge_started(t2, Trigger::Tick),
            Some(FetchPolicy::RemoteOrCache)
        );
        m.progress(&Event::Fetched { commit: C2.into() }, wall);
        m.converge_finished(&result(Outcome::Changed, C2), t2, wall, 0.0);
        assert_eq!(m.fetch_failures, 0);
        assert_eq!(m.fetch_failing, None);
        assert_eq!(m.stats.fetch_failures, 1);
    }

    #[test]
    fn backoff_waits_grow_between_remote_fetches() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::ZERO);
        let fail = |m: &mut Machine, now: Instant| {
            assert_eq!(
                m.converge_started(now, Trigger::Tick),
                Some(FetchPolicy::RemoteOrCache)
            );
            m.progress(
                &Event::FetchFailed {
                    error: "down".into(),
                    refused: false,
                    instead: None,
                },
                wall,
            );
            m.converge_finished(&result(Outcome::Error, C1), now, wall, 0.0);
        };
        fail(&mut m, t0);
        // 600 s after one failure: a tick at 300 s converges the cache.
        m.state = State::Idle {
            next: t0 + Duration::from_secs(300),
        };
        assert_eq!(
            m.converge_started(t0 + Duration::from_secs(300), Trigger::Tick),
            Some(FetchPolicy::Cache)
        );
        m.converge_finished(
            &result(Outcome::InSync, C1),
            t0 + Duration::from_secs(300),
            wall,
            0.0,
        );
        m.state = State::Idle {
            next: t0 + Duration::from_secs(600),
        };
        fail(&mut m, t0 + Duration::from_secs(600));
        // Two failures: the next fetch is 1200 s later.
        m.state = State::Idle {
            next: t0 + Duration::from_secs(1500),
        };
        assert_eq!(
            m.converge_started(t0 + Duration::from_secs(1500), Trigger::Tick),
            Some(FetchPolicy::Cache)
        );
    }

    #[test]
    fn a_reboot_required_follows_the_loop_s_own_line() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = Machine::new(schedule());
        m.reboot_noted(Some(
            "reboot required (kernel 2 is installed, 1 is running)".into(),
        ));
        // Starting: the loop's word alone.
        assert_eq!(m.status_line(t0, wall), "starting");
        m.configured();
        m.recovered(t0, Duration::ZERO);
        m.applied = Some((C1.to_owned(), wall));
        m.converge_started(t0, Trigger::Tick);
        m.converge_finished(&result(Outcome::InSync, C1), t0, wall, 0.0);
        let line = m.status_line(t0, wall);
        assert!(line.starts_with("in sync at 3f2a9c1d0000"), "{line}");
        assert!(
            line.ends_with("; reboot required (kernel 2 is installed, 1 is running)"),
            "{line}"
        );
        m.reboot_noted(None);
        assert!(!m.status_line(t0, wall).contains("reboot"));
    }

    #[test]
    fn a_rollback_and_a_quarantine_show_what_is_held() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::ZERO);
        m.applied = Some((C1.to_owned(), wall));
        m.converge_started(t0, Trigger::Tick);
        m.progress(
            &Event::RollingBack {
                generation: 4,
                reason: "health check failed".into(),
                requested: false,
            },
            wall,
        );
        assert_eq!(
            m.status_line(t0, wall),
            "converging the config repo: rolling back"
        );
        let mut r = result(Outcome::RolledBack, C2);
        r.quarantined = true;
        r.run.error = Some("check `nginx-http` failed 1 time".into());
        m.converge_finished(&r, t0, wall, 0.0);
        assert_eq!(
            m.status_line(t0, wall),
            "rolled back 9b1e02d50000: check `nginx-http` failed 1 time; holding 3f2a9c1d0000; next run in 5m"
        );
        assert_eq!(m.stats.rollbacks, 1);
        let now = m.next_tick().expect("idle");
        m.converge_started(now, Trigger::Tick);
        let mut held = result(Outcome::Held, C2);
        held.run.error = Some("9b1e02d50000 is quarantined (generation 4 rolled back)".into());
        m.converge_finished(&held, now, wall, 0.0);
        assert!(
            m.status_line(now, wall)
                .starts_with("held: 9b1e02d50000 is quarantined")
        );
    }

    #[test]
    fn a_stop_cancels_the_converge_and_waits_for_its_rollback() {
        let t0 = Instant::now();
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::ZERO);
        // Idle: stop at once.
        let mut idle = Machine::new(schedule());
        idle.configured();
        idle.recovered(t0, Duration::ZERO);
        assert!(!idle.stop_requested());
        assert!(idle.stopped());
        // Converging: cancel, then stop once it finished.
        m.converge_started(t0, Trigger::Tick);
        assert!(m.stop_requested());
        assert!(!m.stopped());
        assert_eq!(
            m.status_line(t0, SystemTime::UNIX_EPOCH),
            "stopping: rolling back the converge in flight"
        );
        m.converge_finished(
            &result(Outcome::RolledBack, C1),
            t0,
            SystemTime::UNIX_EPOCH,
            0.0,
        );
        assert!(m.stopped());
        assert_eq!(m.next_tick(), None, "no tick after a stop");
    }

    /// Issue 26: a nudge brings the next tick within its delay and makes
    /// it fetch, also while backing off; one during a converge brings the
    /// tick after it; the tick is an ordinary one (a `Tick`, gated).
    #[test]
    fn a_nudge_brings_the_next_tick_and_a_fetch() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut m = Machine::new(schedule());
        m.configured();
        assert_eq!(m.nudged(t0, Duration::from_secs(1)), None, "recovering");
        m.recovered(t0, Duration::ZERO);
        // A failed fetch: the remote is not asked before the backoff.
        m.converge_started(t0, Trigger::Tick);
        m.progress(
            &Event::FetchFailed {
                error: "down".into(),
                refused: false,
                instead: Some(C1.into()),
            },
            wall,
        );
        m.converge_finished(&result(Outcome::InSync, C1), t0, wall, 0.0);
        assert_eq!(m.next_tick(), Some(t0 + Duration::from_secs(300)));
        // Nudged: the tick comes in 3 s, and it fetches.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            m.nudged(t1, Duration::from_secs(3)),
            Some(t1 + Duration::from_secs(3))
        );
        // A second nudge never pushes the tick later.
        assert_eq!(
            m.nudged(t1, Duration::from_secs(4)),
            Some(t1 + Duration::from_secs(3))
        );
        let t2 = t1 + Duration::from_secs(3);
        assert_eq!(
            m.converge_started(t2, Trigger::Tick),
            Some(FetchPolicy::RemoteOrCache)
        );
        // Nudged while converging: the next tick follows the run.
        assert_eq!(m.nudged(t2, Duration::from_secs(2)), None);
        m.converge_finished(&result(Outcome::InSync, C1), t2, wall, 0.0);
        assert_eq!(m.next_tick(), Some(t2 + Duration::from_secs(2)));
        let t3 = t2 + Duration::from_secs(2);
        assert_eq!(
            m.converge_started(t3, Trigger::Tick),
            Some(FetchPolicy::RemoteOrCache),
            "a nudged tick fetches in the backoff"
        );
        m.converge_finished(&result(Outcome::InSync, C1), t3, wall, 0.0);
        // Without a nudge, the backoff holds again and the interval rules.
        assert_eq!(m.next_tick(), Some(t3 + Duration::from_secs(300)));
    }

    #[test]
    fn a_reload_brings_the_next_tick_within_the_new_interval() {
        let t0 = Instant::now();
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::from_secs(60));
        m.reloaded(
            ScheduleSettings {
                interval: Duration::from_secs(10),
                ..schedule()
            },
            t0,
        );
        assert_eq!(m.next_tick(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(m.schedule.interval, Duration::from_secs(10));
    }

    /// Issue 20, 1 and 9: a run asked for always fetches (even in the
    /// backoff) and a failed fetch ends it; the status line follows the
    /// agent state (paused, pinned) and says "auditing" in audit mode.
    #[test]
    fn asked_runs_fetch_and_the_status_line_follows_the_state() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = Machine::new(schedule());
        m.configured();
        m.recovered(t0, Duration::ZERO);
        m.converge_started(t0, Trigger::Tick);
        m.progress(
            &Event::FetchFailed {
                error: "connection refused".into(),
                refused: false,
                instead: Some(C1.into()),
            },
            wall,
        );
        let mut audit = result(Outcome::ChangesPending, C1);
        audit.audit = true;
        m.converge_finished(&audit, t0, wall, 0.0);
        assert!(
            m.status_line(t0, wall).contains("; auditing "),
            "{}",
            m.status_line(t0, wall)
        );
        // Backing off: a tick converges the cache, an asked run fetches.
        let soon = t0 + Duration::from_secs(1);
        let mut ticked = Machine::new(schedule());
        ticked.next_fetch = m.next_fetch;
        ticked.state = State::Idle { next: soon };
        assert_eq!(
            ticked.converge_started(soon, Trigger::Tick),
            Some(FetchPolicy::Cache)
        );
        m.state = State::Idle { next: soon };
        assert_eq!(
            m.converge_started(soon, Trigger::Asked),
            Some(FetchPolicy::Remote)
        );
        m.progress(&Event::Fetched { commit: C2.into() }, wall);
        m.converge_finished(&result(Outcome::Changed, C2), soon, wall, 0.0);
        assert_eq!(
            m.next_fetch, None,
            "the backoff ends with a fetch that worked"
        );
        assert!(m.fetch_failing.is_none());

        let mut state = crate::agent::AgentState {
            paused: Some(crate::agent::Pause {
                reason: "INC-42".into(),
                by: "alice".into(),
                at: "2026-12-07T10:00:00Z".into(),
            }),
            ..crate::agent::AgentState::default()
        };
        m.state_read(&state);
        assert!(
            m.status_line(soon, wall)
                .starts_with("paused by alice since 2026-12-07T10:00:00Z (INC-42)"),
            "{}",
            m.status_line(soon, wall)
        );
        state.paused = None;
        state.pinned = Some(crate::agent::Mark {
            key: "before generation 4".into(),
            source: "driftless rollback".into(),
            at: "2026-12-07T11:00:00Z".into(),
            reason: Some("rolled back to before generation 4".into()),
        });
        m.state_read(&state);
        assert!(
            m.status_line(soon, wall)
                .starts_with("pinned since 2026-12-07T11:00:00Z (rolled back"),
            "{}",
            m.status_line(soon, wall)
        );
    }
}
