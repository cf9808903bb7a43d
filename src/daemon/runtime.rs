//! The daemon's process: a current-thread tokio runtime whose one task owns
//! the loop ([`Machine`]), the control socket, the signals and the
//! watchdog. The synchronous engine runs on a blocking thread with a
//! cancellation token of its own for each run; its events come back over a
//! channel, to the status line, the journal and the clients that asked.

use std::collections::VecDeque;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::machine::{Machine, Trigger};
use super::nudge::{self, Nudge, Watcher};
use super::protocol::{self, Request, Response};
use super::{notify, schedule};
use crate::app::{
    self, App, ConvergeRequest, ConvergeResult, DaemonView, FetchPolicy, SourceRequest,
};
use crate::cancel::Cancel;
use crate::config::{self, Settings};
use crate::converge::{Event, Log, Sink, Tee};
use crate::outcome::Outcome;
use crate::report::journal::{self, Journal};
use crate::report::metrics::Metrics;

/// How the daemon was started.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The agent config file.
    pub config: PathBuf,
    /// The config file was named on the command line (it must exist).
    pub explicit: bool,
    /// The root converged (`/`; another root for tests and chroots).
    pub root: PathBuf,
    /// A config repo directory instead of the git source.
    pub repo: Option<PathBuf>,
    /// The host name to look up.
    pub host: Option<String>,
}

/// How long the thread that ran a converge waits for another before it
/// ends.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// How long after a converge its memory is given back: time for the
/// connections waiting on it to write its result, and for its thread to
/// end.
const TRIM_DELAY: Duration = Duration::from_secs(2);

/// Requests waiting behind the converge in flight, at most.
const MAX_QUEUED: usize = 16;
/// Connections served at once, at most: each holds a descriptor, and
/// beyond this a new one is told "busy" and closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping daemon waits for its clients to be sent their last
/// lines.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between accepts after `accept` failed (out of
/// descriptors, say), and how often such a failure is logged.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(60);
/// How often the status line is refreshed while idle (its countdown).
const STATUS_REFRESH: Duration = Duration::from_secs(15);

/// Runs the daemon until SIGTERM. `Err` only when it cannot start.
pub(crate) fn run(opts: Options) -> Result<()> {
    let settings = config::load(&opts.config, opts.explicit)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // A converge's thread (its stack, its allocator cache) goes soon
        // after it: between ticks the daemon is one thread.
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
        .context("failed to start the daemon's runtime")?;
    runtime.block_on(Daemon::new(opts, settings).run())
}

/// A client waiting for a converge of its own.
struct Waiting {
    dry_run: bool,
    force: bool,
    /// Who asked, as the client says (only root may ask).
    by: String,
    client: mpsc::UnboundedSender<Vec<u8>>,
}

/// The converge in flight.
struct Running {
    cancel: Cancel,
    /// A client asked for it (`converge --now`), which never reboots.
    asked: bool,
    clients: Vec<mpsc::UnboundedSender<Vec<u8>>>,
}

/// What a connection asks of the loop.
enum Asked {
    Status(oneshot::Sender<DaemonView>),
    Refresh(oneshot::Sender<()>),
    Converge(Waiting),
}

/// What woke the loop up.
enum Wake {
    Stop,
    Reload,
    Watchdog,
    Refresh,
    Accepted(UnixStream),
    AcceptFailed(std::io::Error),
    Served,
    Asked(Asked),
    Progress(Event),
    Finished(Box<Result<ConvergeResult, tokio::task::JoinError>>),
    Rebooting(Result<Result<app::RebootStep>, tokio::task::JoinError>),
    Tick,
    Nudged(Nudge),
}

struct Daemon {
    opts: Options,
    /// Why the metrics could not be written last time (for `status`).
    metrics_error: Option<String>,
    /// The config file must be there at a reload: it was named on the
    /// command line, or the daemon runs on it. A file that went away is
    /// an invalid config (the one in force stays), never "the defaults".
    config_required: bool,
    app: App,
    machine: Machine,
    running: Option<Running>,
    queue: VecDeque<Waiting>,
    events: (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>),
    /// With `[fleet]`: the watch of the nudge key, and what it hears.
    nudges: Option<(Watcher, mpsc::Receiver<Nudge>)>,
    /// Why the watch of the nudge key could not start, when it could not.
    nudge_start_error: Option<String>,
    /// The core-package answer, kept while the rpm database is unchanged.
    probe: crate::system::reboot::Probe,
    /// The reboot record as last checked (metrics, status line).
    reboot: Option<crate::agent::reboot::RebootRecord>,
    /// Back from a reboot driftless asked for: the next converge runs the
    /// health checks even when in sync.
    check_after_boot: bool,
    /// The drain and reboot in flight.
    rebooting: Option<JoinHandle<Result<app::RebootStep>>>,
    /// Why the fleet last made a reboot wait (said once in the journal,
    /// not at every tick).
    reboot_waits: Option<String>,
    /// Cancels the drain and the reboot request when the daemon is told
    /// to stop (an operator stopping driftless does not want a reboot).
    reboot_cancel: Cancel,
}

/// Sends the engine's events from its blocking thread to the loop.
struct Channel(mpsc::UnboundedSender<Event>);

impl Sink for Channel {
    fn event(&mut self, event: &Event) {
        // The loop outlives every run; a send can only fail at exit.
        let _ = self.0.send(event.clone());
    }
}

impl Daemon {
    fn new(opts: Options, settings: Settings) -> Self {
        let machine = Machine::new(settings.schedule.clone());
        Self {
            metrics_error: None,
            config_required: opts.explicit || opts.config.exists(),
            opts,
            app: App::new(settings),
            machine,
            running: None,
            queue: VecDeque::new(),
            events: mpsc::unbounded_channel(),
            nudges: None,
            nudge_start_error: None,
            probe: crate::system::reboot::Probe::default(),
            reboot: None,
            check_after_boot: false,
            rebooting: None,
            reboot_waits: None,
            reboot_cancel: Cancel::new(),
        }
    }

    async fn run(mut self) -> Result<()> {
        notify::status("starting");
        let listener = bind(&self.app.settings.socket)?;
        let mut sigterm = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
        let mut sighup = signal(SignalKind::hangup()).context("failed to watch SIGHUP")?;
        let (asked_tx, mut asked_rx) = mpsc::channel::<Asked>(64);
        let watchdog_period = notify::watchdog_period();
        let mut watchdog =
            tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
        let mut refresh = tokio::time::interval(STATUS_REFRESH);

        self.machine.configured();
        notify::status(&self.status_line());
        self.recover().await;
        let machine_id = crate::system::facts::gather().machine_id;
        let splay = schedule::splay(&machine_id, self.app.settings.schedule.splay);
        self.machine.recovered(Instant::now(), splay);
        self.watch_nudges();
        self.refresh_state();
        self.check_reboot(None, true);
        notify::ready(&self.status_line());
        info!(
            message_id = journal::DAEMON_STARTED,
            driftless_version = crate::VERSION,
            "driftless {} started; first run in {}s",
            crate::VERSION,
            splay.as_secs()
        );

        let mut handle: Option<JoinHandle<ConvergeResult>> = None;
        let mut connections = Connections::default();
        while !self.machine.stopped() {
            let next = self.machine.next_tick();
            let accepting = connections.resume_at;
            let wake = tokio::select! {
                _ = sigterm.recv() => Wake::Stop,
                _ = sigint.recv() => Wake::Stop,
                _ = sighup.recv() => Wake::Reload,
                _ = watchdog.tick(), if watchdog_period.is_some() => Wake::Watchdog,
                _ = refresh.tick() => Wake::Refresh,
                accepted = listener.accept(), if accepting.is_none() => match accepted {
                    Ok((stream, _)) => Wake::Accepted(stream),
                    Err(e) => Wake::AcceptFailed(e),
                },
                _ = sleep_until(accepting), if accepting.is_some() => {
                    connections.resume_at = None;
                    Wake::Served
                }
                Some(_) = connections.tasks.join_next(), if !connections.tasks.is_empty() => Wake::Served,
                Some(asked) = asked_rx.recv() => Wake::Asked(asked),
                Some(event) = self.events.1.recv() => Wake::Progress(event),
                result = async { handle.as_mut().expect("guarded").await }, if handle.is_some() => {
                    handle = None;
                    Wake::Finished(Box::new(result))
                }
                result = async { self.rebooting.as_mut().expect("guarded").await }, if self.rebooting.is_some() => {
                    self.rebooting = None;
                    Wake::Rebooting(result)
                }
                _ = sleep_until(next), if next.is_some() && handle.is_none() && self.rebooting.is_none() => Wake::Tick,
                Some(n) = next_nudge(&mut self.nudges), if self.rebooting.is_none() => Wake::Nudged(n),
            };
            match wake {
                Wake::Stop => self.stop(),
                Wake::Reload => self.reload(),
                Wake::Watchdog => notify::watchdog(),
                Wake::Refresh => notify::status(&self.status_line()),
                Wake::Accepted(stream) => connections.serve(stream, &asked_tx),
                Wake::AcceptFailed(e) => connections.accept_failed(&e),
                Wake::Served => {}
                Wake::Asked(Asked::Status(reply)) => {
                    let _ = reply.send(self.view());
                }
                Wake::Asked(Asked::Refresh(reply)) => {
                    self.refreshed(handle.is_some());
                    let _ = reply.send(());
                }
                Wake::Asked(Asked::Converge(w)) => {
                    if handle.is_none() && !self.machine.is_stopping() {
                        handle = self.start(Some(w));
                    } else if self.machine.is_stopping() {
                        refuse(&w.client, "the daemon is stopping");
                    } else if self.queue.len() >= MAX_QUEUED {
                        refuse(
                            &w.client,
                            &format!(
                                "busy: {} converges are waiting already; try again later",
                                self.queue.len()
                            ),
                        );
                    } else {
                        let ahead = self.queue.len() + 1;
                        let _ = w.client.send(protocol::line(&Response::Queued { ahead }));
                        self.queue.push_back(w);
                    }
                }
                Wake::Progress(event) => self.progress(&event),
                Wake::Rebooting(result) => self.reboot_ended(result),
                Wake::Finished(result) => {
                    self.finished(*result);
                    if let Some(exe) = replaced_binary() {
                        self.restart_into(&exe);
                    }
                    if let Some(w) = self.queue.pop_front() {
                        handle = self.start(Some(w));
                    }
                }
                Wake::Tick => handle = self.start(None),
                Wake::Nudged(n) => self.nudged(&n),
            }
        }
        for w in self.queue.drain(..) {
            refuse(&w.client, "the daemon stopped");
        }
        // Every client is sent its last line (the run's result, or the
        // refusal above) before the process ends; requests not yet read
        // find the loop gone.
        drop(asked_rx);
        connections.flush().await;
        notify::stopping("stopping");
        info!(message_id = journal::DAEMON_STOPPING, "driftless stopping");
        let _ = std::fs::remove_file(&self.app.settings.socket);
        Ok(())
    }

    /// With `[fleet]`, watches its nudge key (again, after a reload that
    /// changed `[fleet]`); without, stops watching.
    fn watch_nudges(&mut self) {
        self.nudges = None;
        let Some(f) = &self.app.settings.fleet else {
            return;
        };
        self.nudge_start_error = None;
        match Watcher::start(f.etcd.clone(), format!("{}/nudge", f.prefix)) {
            Ok(w) => self.nudges = Some(w),
            // The schedule goes on without it; `status` says so.
            Err(e) => {
                let e = format!("{e:#}");
                error!(error = e.as_str(), "cannot watch the fleet's nudge key");
                self.nudge_start_error = Some(format!("not watching: {e}"));
            }
        }
    }

    /// A nudge: a tick soon, after this host's share of the nudge splay.
    fn nudged(&mut self, n: &Nudge) {
        if self.machine.is_stopping() {
            return;
        }
        let splay = self
            .app
            .settings
            .fleet
            .as_ref()
            .map_or(Duration::ZERO, |f| f.nudge_splay);
        let delay = nudge::delay(splay);
        let commit = n.commit.as_deref().unwrap_or("any");
        match self.machine.nudged(Instant::now(), delay) {
            Some(at) => info!(
                commit,
                "nudged by the fleet (commit {commit}): next run in {} ms",
                at.saturating_duration_since(Instant::now()).as_millis()
            ),
            None => info!(
                commit,
                "nudged by the fleet (commit {commit}): a run follows the one in flight"
            ),
        }
        notify::status(&self.status_line());
    }

    fn status_line(&self) -> String {
        self.machine.status_line(Instant::now(), SystemTime::now())
    }

    /// Rolls back what a crash left unfinished, before the first tick.
    async fn recover(&mut self) {
        let app = self.app.clone();
        let root = self.opts.root.clone();
        let done = tokio::task::spawn_blocking(move || {
            app::recover(&app, &root, &mut Log, &Cancel::new())
        })
        .await;
        match done {
            Ok(Ok(r)) if r.outcome == Outcome::Done => {
                for n in r.notes.iter().filter(|n| *n != "nothing to recover") {
                    warn!("{n}");
                }
            }
            Ok(Ok(r)) => error!(
                error = r.error.unwrap_or_default(),
                "recovery at start failed; every converge tries again"
            ),
            Ok(Err(e)) => error!(error = format!("{e:#}"), "recovery at start failed"),
            Err(e) => error!(error = %e, "recovery at start panicked"),
        }
    }

    /// Starts a converge on a blocking thread: the schedule's (`None`), or
    /// the one a client asked for.
    fn start(&mut self, asked: Option<Waiting>) -> Option<JoinHandle<ConvergeResult>> {
        let trigger = if asked.is_some() {
            Trigger::Asked
        } else {
            Trigger::Tick
        };
        let policy = self.machine.converge_started(Instant::now(), trigger)?;
        let cancel = Cancel::new();
        let (dry_run, force, started_by) = match &asked {
            Some(w) => (w.dry_run, w.force, format!("converge --now by {}", w.by)),
            None => (false, false, "schedule".to_owned()),
        };
        self.running = Some(Running {
            cancel: cancel.clone(),
            asked: asked.is_some(),
            clients: asked.into_iter().map(|w| w.client).collect(),
        });
        notify::status(&self.status_line());
        let app = self.app.clone();
        let req = ConvergeRequest {
            source: SourceRequest {
                repo: self.opts.repo.clone(),
                host: self.opts.host.clone(),
                commit: None,
                branch: None,
                fetch: if self.opts.repo.is_some() {
                    FetchPolicy::Remote
                } else {
                    policy
                },
            },
            root: self.opts.root.clone(),
            dry_run,
            create_root: false,
            ignore_rollout: false,
            force,
            started_by,
            check_in_sync: std::mem::take(&mut self.check_after_boot),
        };
        let events = self.events.0.clone();
        let restart = app.settings.reboot.restart_services && self.opts.root == Path::new("/");
        Some(tokio::task::spawn_blocking(move || {
            let (mut log, mut journal, mut channel) = (Log, Journal::default(), Channel(events));
            let mut sink = Tee(vec![&mut log, &mut journal, &mut channel]);
            let result = app::converge(&app, &req, &mut sink, &cancel);
            // Off the daemon's loop: a restart waits for its job.
            if restart && !req.dry_run && healthy(&result) {
                restarted(&app::restart_stale_services(&app, &cancel));
            }
            result
        }))
    }

    fn progress(&mut self, event: &Event) {
        self.machine.progress(event, SystemTime::now());
        if let Some(r) = &mut self.running {
            let line = protocol::line(&Response::Event {
                event: event.clone(),
            });
            r.clients.retain(|c| c.send(line.clone()).is_ok());
        }
        notify::status(&self.status_line());
    }

    /// A command changed the agent state: read it again, and check for a
    /// reboot (`reboot --now`) unless a converge runs (its end checks).
    fn refreshed(&mut self, converging: bool) {
        self.refresh_state();
        if !converging {
            self.check_reboot(None, true);
        }
        self.write_metrics();
        notify::status(&self.status_line());
    }

    /// A converge ended: its clients hear, and the host is checked for a
    /// reboot (a healthy run, in sync or changed with its checks passed,
    /// sees a reboot through).
    fn finished(&mut self, result: Result<ConvergeResult, tokio::task::JoinError>) {
        // Events still queued belong to this run: hand them on first.
        while let Ok(event) = self.events.1.try_recv() {
            self.progress(&event);
        }
        let running = self.running.take();
        let asked = running.as_ref().is_some_and(|r| r.asked);
        let result = result.unwrap_or_else(|e| {
            error!(error = %e, "the converge thread panicked");
            let mut r = ConvergeResult::default();
            r.run.error = Some(format!("the converge thread panicked: {e}"));
            r
        });
        let healthy = healthy(&result);
        self.machine.converge_finished(
            &result,
            Instant::now(),
            SystemTime::now(),
            crate::random::unit(),
        );
        self.refresh_state();
        // `converge --now` never reboots by itself; the next tick may.
        self.check_reboot(Some(healthy), !asked);
        self.write_metrics();
        if let Some(running) = running {
            let mut result = result;
            result.config_fingerprint = self.app.settings.fingerprint.clone();
            let line = protocol::line(&Response::Finished {
                exit_code: crate::outcome::ExitCode::from(result.run.outcome) as u8,
                result: Box::new(result),
            });
            for c in running.clients {
                let _ = c.send(line.clone());
            }
        }
        notify::status(&self.status_line());
        // Once the clients' connections have written the result and freed
        // it (the converge's own desired state, observations and plan are
        // gone already), the free memory goes back: without this the idle
        // daemon would keep the peak of its largest converge.
        tokio::spawn(async {
            tokio::time::sleep(TRIM_DELAY).await;
            crate::system::memory::give_back_free_memory();
        });
    }

    /// Whether the host needs a reboot (after each converge, at start and
    /// when a command changed the state): the journal hears when one
    /// becomes required and when one was seen through; a reboot due
    /// starts its drain when `may_reboot`.
    fn check_reboot(&mut self, healthy: Option<bool>, may_reboot: bool) {
        if self.opts.root != Path::new("/") || self.rebooting.is_some() {
            return;
        }
        let check = match app::reboot_check(&self.app, &mut self.probe, healthy) {
            Ok(c) => c,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "could not tell whether the host needs a reboot"
                );
                return;
            }
        };
        if let Some(reasons) = &check.became_required {
            warn!(
                message_id = journal::REBOOT_REQUIRED,
                driftless_reasons = reasons.join("; "),
                "the host needs a reboot: {}",
                reasons.join("; ")
            );
        }
        if let Some((old, new)) = &check.rebooted {
            info!(
                message_id = journal::REBOOTED,
                driftless_old_kernel = old.as_str(),
                driftless_new_kernel = new.as_str(),
                "rebooted: back healthy, kernel {old} -> {new}"
            );
        }
        self.check_after_boot = check.back_unchecked;
        self.machine.reboot_noted(reboot_note(&check.record));
        let due = check.reboot_now && may_reboot;
        self.reboot = Some(check.record);
        if !check.reboot_now {
            self.reboot_waits = None;
        }
        if due {
            let reasons = self
                .reboot
                .as_ref()
                .map(|r| r.reasons.join("; "))
                .unwrap_or_default();
            if self.reboot_waits.is_none() {
                self.machine.reboot_noted(Some(
                    "rebooting: draining, then systemctl reboot".to_owned(),
                ));
            }
            let app = self.app.clone();
            let cancel = self.reboot_cancel.clone();
            // Said when the drain starts: with [fleet], only once the
            // host has its reboot slot.
            let started = move || {
                info!(
                    message_id = journal::REBOOTING,
                    driftless_reasons = reasons.as_str(),
                    "rebooting the host: draining first"
                );
            };
            self.rebooting = Some(tokio::task::spawn_blocking(move || {
                app::drain_and_reboot(&app, &cancel, &started)
            }));
        }
        notify::status(&self.status_line());
    }

    /// The drain and reboot request ended: systemd stops the daemon next,
    /// or it failed and the reboot waits for the next run.
    fn reboot_ended(&mut self, result: Result<Result<app::RebootStep>, tokio::task::JoinError>) {
        let failed = match result {
            Ok(Ok(app::RebootStep::Asked)) => None,
            Ok(Ok(app::RebootStep::Waits(why))) => {
                self.reboot_waits_for(why);
                return;
            }
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(format!("the reboot's thread panicked: {e}")),
        };
        self.reboot_waits = None;
        match failed {
            None => self
                .machine
                .reboot_noted(Some("rebooting: asked systemd".to_owned())),
            Some(why) => {
                warn!(
                    message_id = journal::REBOOT_POSTPONED,
                    driftless_error = why.as_str(),
                    "the reboot is postponed: {why}"
                );
                self.machine.reboot_noted(Some(format!(
                    "reboot postponed: {}",
                    why.lines().next().unwrap_or("")
                )));
            }
        }
        notify::status(&self.status_line());
    }

    /// The fleet made the reboot wait: the status line says why, and the
    /// journal too when the reason is new.
    fn reboot_waits_for(&mut self, why: String) {
        if self.reboot_waits.as_deref() != Some(why.as_str()) {
            warn!(
                message_id = journal::REBOOT_POSTPONED,
                driftless_error = why.as_str(),
                "the reboot waits for the fleet: {why}"
            );
        }
        self.machine
            .reboot_noted(Some(format!("reboot required, waiting: {why}")));
        self.reboot_waits = Some(why);
        notify::status(&self.status_line());
    }

    /// Reads the agent state again: what it says (applied, paused, pinned,
    /// quarantined) shows in the status line and the metrics.
    fn refresh_state(&mut self) {
        match self.app.store.load_state() {
            Ok(state) => self.machine.state_read(&state),
            Err(e) => warn!(error = format!("{e:#}"), "could not read the agent state"),
        }
    }

    fn write_metrics(&mut self) {
        let Some(path) = &self.app.settings.metrics_textfile else {
            return;
        };
        let quarantined = self.machine.quarantined();
        let last = self.machine.last();
        let healthy = last
            .is_some_and(|l| !l.audit && matches!(l.outcome, Outcome::InSync | Outcome::Changed));
        let m = Metrics {
            last_run: last.map(|l| l.at),
            last_success: self.machine.stats().last_success,
            in_sync: healthy,
            drifted: match last {
                Some(_) if healthy => 0,
                Some(l) if l.audit => l.changes,
                Some(l) => l.drifted,
                None => 0,
            },
            duration: last.map(|l| l.duration).unwrap_or_default(),
            converges: self.machine.stats().converges.clone(),
            rollbacks: self.machine.stats().rollbacks,
            fetch_failures: self.machine.stats().fetch_failures,
            fetch_failing: self.machine.fetch_failing().is_some(),
            last_fetch_success: self.machine.last_fetch_success(),
            drift_found: last.map_or(0, |l| l.drifted),
            drift_healed: self.machine.stats().drift_healed,
            paused: self.machine.paused(),
            interval: self.machine.interval(),
            quarantined,
            applied_commit: self.machine.applied_commit().map(str::to_owned),
            version: crate::VERSION.to_owned(),
            reboot_required: self.reboot.as_ref().is_some_and(|r| r.required()),
            reboot_required_since: self
                .reboot
                .as_ref()
                .and_then(|r| r.required_since.as_deref())
                .and_then(|t| humantime::parse_rfc3339(t).ok()),
            services_need_restart: self.reboot.as_ref().map_or(0, |r| r.services.len()),
            rollout_blocked: self
                .app
                .settings
                .fleet
                .as_ref()
                .map(|_| last.and_then(|l| l.rollout_blocked.clone())),
        };
        match m.write(path) {
            Ok(()) => self.metrics_error = None,
            Err(e) => {
                let why = format!("{e:#}");
                // Said once per cause, not at every run.
                if self.metrics_error.as_deref() != Some(why.as_str()) {
                    warn!(error = why.as_str(), "could not write the metrics: {why}");
                }
                self.metrics_error = Some(why);
            }
        }
    }

    fn stop(&mut self) {
        if self.machine.stop_requested()
            && let Some(r) = &self.running
        {
            // Forward work stops; the converge rolls back, never cut
            // mid-write or mid-transaction, and the loop ends after it.
            r.cancel.cancel();
        }
        self.reboot_cancel.cancel();
        notify::stopping(&self.status_line());
    }

    /// SIGHUP: a new agent config, or the old one when the new is invalid.
    fn reload(&mut self) {
        notify::reloading();
        match config::load(&self.opts.config, self.config_required) {
            Ok(settings) => {
                self.config_required |= self.opts.config.exists();
                if settings.socket != self.app.settings.socket {
                    warn!(
                        "[daemon] socket changed; the daemon keeps {} until it is restarted",
                        self.app.settings.socket.display()
                    );
                }
                let mut settings = settings;
                settings.socket = self.app.settings.socket.clone();
                self.machine
                    .reloaded(settings.schedule.clone(), Instant::now());
                let fleet_changed = settings.fleet != self.app.settings.fleet;
                self.app = App::new(settings);
                if fleet_changed {
                    self.watch_nudges();
                }
                info!(
                    message_id = journal::DAEMON_RELOADED,
                    "agent config reloaded; interval {}",
                    humantime::format_duration(self.machine.interval())
                );
            }
            Err(e) => error!(
                message_id = journal::RELOAD_FAILED,
                error = format!("{e:#}"),
                "reload refused, the agent config in force stays: {e:#}"
            ),
        }
        notify::ready(&self.status_line());
    }

    /// After a converge replaced the binary (its package was upgraded):
    /// continue as the new program, with the same pid, between runs.
    fn restart_into(&self, exe: &Path) {
        use std::os::unix::process::CommandExt;
        info!(
            message_id = journal::DAEMON_RESTARTING,
            "the driftless binary was replaced; restarting into {}",
            exe.display()
        );
        notify::status("restarting into the new driftless");
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec();
        error!(error = %err, "could not restart into the new binary; going on with this one");
    }

    fn view(&self) -> DaemonView {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let rfc = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        DaemonView {
            pid: std::process::id(),
            version: crate::VERSION.to_owned(),
            state: self.machine.state_word().to_owned(),
            status_line: self.machine.status_line(now, wall),
            next_run: self
                .machine
                .next_tick()
                .map(|t| rfc(wall + t.saturating_duration_since(now))),
            interval_s: self.machine.interval().as_secs(),
            last_run: self.machine.last().map(|l| crate::agent::LastRun {
                at: rfc(l.at),
                outcome: l.outcome,
                duration_ms: u64::try_from(l.duration.as_millis()).unwrap_or(u64::MAX),
                changes: l.changes,
                drifted: l.drifted,
                key: l.key.clone(),
                error: l.error.clone(),
                generation: l.generation,
                audit: l.audit,
            }),
            fetch_failures: self.machine.fetch_failures(),
            fetch_failing_since: self.machine.fetch_failing().map(|(t, _)| rfc(*t)),
            fetch_error: self.machine.fetch_failing().map(|(_, e)| e.clone()),
            next_fetch: self
                .machine
                .next_fetch()
                .map(|t| rfc(wall + t.saturating_duration_since(now))),
            converges: self.machine.stats().converges.clone(),
            metrics_error: self.metrics_error.clone(),
            config_files: self
                .app
                .settings
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            config_fingerprint: self.app.settings.fingerprint.clone(),
            nudge_error: self
                .nudges
                .as_ref()
                .and_then(|(w, _)| w.failing())
                .map(|(since, e)| format!("failing since {}: {e}", rfc(since)))
                .or_else(|| self.nudge_start_error.clone()),
        }
    }
}

/// The next nudge heard, when the fleet's nudge key is watched.
async fn next_nudge(nudges: &mut Option<(Watcher, mpsc::Receiver<Nudge>)>) -> Option<Nudge> {
    match nudges {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the status line says of reboots: one required (and why it
/// waits), asked for, or nothing.
fn reboot_note(r: &crate::agent::reboot::RebootRecord) -> Option<String> {
    if let Some(why) = r.slot.as_ref().and_then(|s| s.kept.as_ref()) {
        return Some(format!(
            "reboot slot kept, its wave's reboots are halted: {why}"
        ));
    }
    if r.pending.is_some() {
        return Some("back from a reboot, health checks next".to_owned());
    }
    let first = r.reasons.first().map(String::as_str).unwrap_or("");
    match (&r.required_since, &r.waiting, &r.asked) {
        (_, _, Some(a)) => Some(format!("reboot asked by {}", a.by)),
        (Some(_), Some(w), None) => Some(format!("reboot required ({first}), waiting: {w}")),
        (Some(_), None, None) => Some(format!("reboot required ({first})")),
        (None, _, None) => None,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn refuse(client: &mpsc::UnboundedSender<Vec<u8>>, message: &str) {
    let _ = client.send(protocol::line(&Response::Refused {
        message: message.to_owned(),
    }));
}

/// The binary this process runs, when it was replaced on disk since.
fn replaced_binary() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe").ok()?;
    let text = link.to_str()?;
    let path = PathBuf::from(text.strip_suffix(" (deleted)")?);
    path.is_file().then_some(path)
}

/// Binds the control socket, readable and writable by root only. A socket
/// file nobody listens on is left from a crash and replaced; one somebody
/// listens on belongs to a daemon already running.
fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another driftless daemon listens on {}; stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("failed to remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("failed to bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("failed to restrict {}", path.display()))?;
    Ok(listener)
}

/// The control socket's connections: bounded in number, each served on a
/// task of its own, and waited for at the end so that no client loses its
/// last line.
#[derive(Default)]
struct Connections {
    tasks: tokio::task::JoinSet<()>,
    /// While `accept` fails: when to try again.
    resume_at: Option<Instant>,
    /// `accept` failures in a row (for the backoff).
    failures: u32,
    /// When a failure was last logged, and how many were not since.
    logged: Option<Instant>,
    unlogged: u64,
}

impl Connections {
    fn serve(&mut self, stream: UnixStream, asked: &mpsc::Sender<Asked>) {
        self.failures = 0;
        if self.tasks.len() >= MAX_CONNECTIONS {
            // Told why, without waiting for its request: the answer is
            // small, and a client that does not read it loses nothing.
            let line = protocol::line(&Response::Refused {
                message: format!("busy: {MAX_CONNECTIONS} connections are open; try again later"),
            });
            self.tasks.spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&line)).await;
            });
            return;
        }
        self.tasks.spawn(serve(stream, asked.clone()));
    }

    /// `accept` failed (out of descriptors, say): wait a little before
    /// the next one, longer each time, and log it at most once a minute.
    fn accept_failed(&mut self, e: &std::io::Error) {
        self.failures = self.failures.saturating_add(1);
        let pause = (Duration::from_millis(10) * 2u32.saturating_pow(self.failures.min(10)))
            .min(ACCEPT_BACKOFF_MAX);
        let now = Instant::now();
        self.resume_at = Some(now + pause);
        if self.logged.is_some_and(|t| now < t + ACCEPT_LOG_EVERY) {
            self.unlogged += 1;
            return;
        }
        warn!(
            error = %e,
            "control socket: accept failed ({} more since the last report); accepting again in {} ms",
            self.unlogged,
            pause.as_millis()
        );
        self.logged = Some(now);
        self.unlogged = 0;
    }

    /// Waits for the clients to be sent what they are owed, at most
    /// [`FLUSH_TIMEOUT`].
    async fn flush(&mut self) {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(FLUSH_TIMEOUT, all).await.is_err() {
            warn!(
                "control socket: {} clients were not answered before the daemon stopped",
                self.tasks.len()
            );
            self.tasks.abort_all();
        }
    }
}

/// One connection: root only, one request, the answer streamed back.
async fn serve(stream: UnixStream, asked: mpsc::Sender<Asked>) {
    let uid = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let refused = |message: String| protocol::line(&Response::Refused { message });
    match uid {
        Ok(0) => {}
        Ok(uid) => {
            let _ = write
                .write_all(&refused(format!(
                    "refused: uid {uid} is not root; only root may use the driftless control socket (try `sudo driftless …`)"
                )))
                .await;
            return;
        }
        Err(e) => {
            let _ = write
                .write_all(&refused(format!("refused: cannot tell who you are: {e}")))
                .await;
            return;
        }
    }
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(protocol::MAX_REQUEST as u64));
    let request =
        match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Err(_) => Err(format!("no request within {} s", REQUEST_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(format!("cannot read the request: {e}")),
            Ok(Ok(_)) => std::str::from_utf8(&line)
                .map_err(|_| "the request is not UTF-8".to_owned())
                .and_then(|text| {
                    serde_json::from_str::<Request>(text.trim()).map_err(|e| e.to_string())
                }),
        };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::time::timeout(
                REQUEST_TIMEOUT,
                write.write_all(&refused(format!(
                    "bad request: {e} (see docs/control-socket.md)"
                ))),
            )
            .await;
            return;
        }
    };
    match request {
        Request::Status => {
            let (tx, rx) = oneshot::channel();
            if asked.send(Asked::Status(tx)).await.is_ok()
                && let Ok(daemon) = rx.await
            {
                let _ = write
                    .write_all(&protocol::line(&Response::Status {
                        daemon: Box::new(daemon),
                    }))
                    .await;
            }
        }
        Request::Refresh => {
            let (tx, rx) = oneshot::channel();
            if asked.send(Asked::Refresh(tx)).await.is_ok() && rx.await.is_ok() {
                let _ = write.write_all(&protocol::line(&Response::Refreshed)).await;
            }
        }
        Request::Converge { dry_run, force, by } => {
            let (tx, mut rx) = mpsc::unbounded_channel();
            if asked
                .send(Asked::Converge(Waiting {
                    dry_run,
                    force,
                    by: by.map_or_else(
                        || "root".to_owned(),
                        |b| crate::system::command::first_bytes(&b, 200),
                    ),
                    client: tx,
                }))
                .await
                .is_err()
            {
                return;
            }
            // A client that goes away does not stop the run it asked for.
            while let Some(line) = rx.recv().await {
                if write.write_all(&line).await.is_err() {
                    break;
                }
            }
            // The result (every change of a large converge) was held for
            // this client until now: what it took goes back too.
            drop(rx);
            crate::system::memory::give_back_free_memory();
        }
    }
    let _ = write.shutdown().await;
}

/// Whether a converge ended healthy: in sync, or changed with its checks
/// passed (an audit only reports).
fn healthy(result: &ConvergeResult) -> bool {
    !result.audit && matches!(result.run.outcome, Outcome::InSync | Outcome::Changed)
}

/// The journal hears what `[reboot] restart_services` did (nothing when
/// nothing was due: denied services alone are in `status`).
fn restarted(r: &app::Restarts) {
    if !r.restarted.is_empty() {
        info!(
            message_id = journal::SERVICES_RESTARTED,
            driftless_units = r.restarted.join(" "),
            driftless_denied = r.denied.join(" "),
            "restarted services that ran replaced files: {}{}",
            r.restarted.join(", "),
            if r.denied.is_empty() {
                String::new()
            } else {
                format!("; left running (restart_deny): {}", r.denied.join(", "))
            }
        );
    }
    for (unit, why) in &r.failed {
        error!(
            message_id = journal::SERVICE_RESTART_FAILED,
            driftless_unit = unit.as_str(),
            driftless_error = why.as_str(),
            "could not restart {unit}, which ran replaced files: {why}"
        );
    }
}
