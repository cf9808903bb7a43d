//! A watch of etcd that never gives up, on a thread of its own: the
//! daemon's nudge key (`daemon::nudge`) and the dashboard's whole fleet
//! prefix (`dashboard`) are both watched with it.
//!
//! Whoever listens never depends on the watch: a stream that ends is set
//! up again at once, from the revision after the last one seen, so a
//! change written while it was down is still heard; one that cannot be
//! set up is tried again after a backoff (doubling, at most
//! [`BACKOFF_MAX`], jittered so that a fleet does not reconnect in step
//! when etcd comes back). One connection, one thread, and messages bounded
//! in size (`fleet::etcd`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::etcd::{Etcd, EtcdSettings, WatchOf, Watched};

/// Longest wait before setting a watch up again.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A stream that ends sooner than this after it was set up counts as a
/// failure (backoff), so that an endpoint that ends every stream at once
/// is not asked in a tight loop.
const SHORT_STREAM: Duration = Duration::from_secs(5);
/// How often a watch that keeps failing is logged again.
const LOG_EVERY: Duration = Duration::from_secs(600);

/// Who hears what the watch sees. Called from the watch's thread.
pub(crate) trait Listener: Send + Sync + 'static {
    /// Something changed: the newest value when the message said it
    /// (`None`: a change that was not read, such as history compacted
    /// away or a message over the bound).
    fn changed(&self, value: Option<&[u8]>);
    /// Whether nobody listens any more (the watch then ends).
    fn gone(&self) -> bool;
}

/// The watch's thread; stopped when dropped (it ends within about a
/// second, on its own).
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
    /// Since when the watch cannot be set up, and why (`None`: it works).
    failing: Arc<Mutex<Option<(SystemTime, String)>>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Watcher {
    /// Starts watching `what` on a thread named `name`, telling
    /// `listener`; `about` names the watch in the log ("the fleet's nudge
    /// key").
    pub(crate) fn start(
        etcd: EtcdSettings,
        what: WatchOf,
        name: &str,
        about: &'static str,
        listener: Arc<dyn Listener>,
    ) -> Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let failing = Arc::new(Mutex::new(None));
        let (flag, health) = (Arc::clone(&stop), Arc::clone(&failing));
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let loop_ = Loop {
                    etcd: &Etcd::new(etcd),
                    what: &what,
                    about,
                    listener: listener.as_ref(),
                    stop: &flag,
                    failing: &health,
                };
                loop_.run();
            })
            .with_context(|| format!("failed to start the thread that watches {about}"))?;
        Ok(Watcher { stop, failing })
    }

    /// Since when the watch cannot be set up, and the last error; `None`
    /// while it works (for `status`).
    pub(crate) fn failing(&self) -> Option<(SystemTime, String)> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }
}

/// One watch's loop and what it shares with its [`Watcher`].
struct Loop<'a> {
    etcd: &'a Etcd,
    what: &'a WatchOf,
    about: &'static str,
    listener: &'a dyn Listener,
    stop: &'a AtomicBool,
    failing: &'a Mutex<Option<(SystemTime, String)>>,
}

impl Loop<'_> {
    /// Stopped from outside, or nobody listens any more.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.listener.gone()
    }

    /// Until stopped, or until nobody listens.
    fn run(&self) {
        let mut next: Option<i64> = None;
        let mut failures: u32 = 0;
        let mut logged: Option<Instant> = None;
        while !self.stopped() {
            let began = Instant::now();
            let start = next;
            let mut on = |m: Watched| self.heard(m, &mut next);
            let stopped = || self.stopped();
            let pause = match self.etcd.watch(self.what, start, &mut on, &stopped) {
                Ok(false) => return,
                Ok(true) if began.elapsed() >= SHORT_STREAM => {
                    if failures > 0 {
                        info!("the watch of {} works again", self.about);
                    }
                    failures = 0;
                    logged = None;
                    Duration::ZERO
                }
                Ok(true) => {
                    failures = failures.saturating_add(1);
                    backoff(failures)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(failures);
                    self.failed(&e, failures, pause, &mut logged);
                    pause
                }
            };
            let until = Instant::now() + pause;
            while !self.stopped() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
            }
        }
    }

    /// One message of the stream; whether the stream goes on.
    fn heard(&self, m: Watched, next: &mut Option<i64>) -> bool {
        match m {
            Watched::Created { revision } => {
                if let Ok(mut f) = self.failing.lock() {
                    *f = None;
                }
                if next.is_some_and(|n| revision + 1 < n) {
                    // The store is behind what was seen (etcd restored or
                    // rebuilt): what changed is not known; tell anyway.
                    *next = Some(revision + 1);
                    self.listener.changed(None);
                } else if next.is_none() {
                    *next = Some(revision + 1);
                }
                true
            }
            Watched::Changed { next: n, value } => {
                *next = Some(n);
                self.listener.changed(Some(&value));
                true
            }
            Watched::Oversized => {
                self.listener.changed(None);
                true
            }
            Watched::Canceled { compacted, reason } => {
                if compacted.is_some() {
                    // History before the compaction is gone: something
                    // may have changed in it; watch from now on.
                    *next = None;
                    self.listener.changed(None);
                } else {
                    warn!(reason, "etcd ended the watch of {}", self.about);
                }
                false
            }
            Watched::Other => true,
        }
    }

    /// Notes a watch that could not be set up (for `status`), and logs it
    /// now and then.
    fn failed(
        &self,
        e: &anyhow::Error,
        failures: u32,
        pause: Duration,
        logged: &mut Option<Instant>,
    ) {
        if let Ok(mut f) = self.failing.lock() {
            let since = f.as_ref().map_or_else(SystemTime::now, |(t, _)| *t);
            *f = Some((since, format!("{e:#}")));
        }
        if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            warn!(
                error = format!("{e:#}"),
                failures,
                "cannot watch {}; trying again in {}s",
                self.about,
                pause.as_secs()
            );
            *logged = Some(Instant::now());
        }
    }
}

/// The wait after `failures` failures in a row: 1 s doubled each time, at
/// most [`BACKOFF_MAX`], varied by ±50 % so that a fleet spreads out.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(10)))
        .min(BACKOFF_MAX);
    base.mul_f64(1.0 + 0.5 * crate::random::unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap() {
        for n in 1..20 {
            let b = backoff(n);
            let base = Duration::from_secs(1 << (n - 1).min(10)).min(BACKOFF_MAX);
            assert!(b >= base / 2 && b <= base.mul_f64(1.5), "{n}: {b:?}");
        }
    }
}
