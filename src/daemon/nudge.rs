//! The fleet's nudge: with `[fleet]`, the daemon watches one key,
//! `<prefix>/nudge`, over an etcd watch stream on a thread of its own; a
//! put wakes the loop for a tick (after the host's own small random delay,
//! the loop's business). The host opens no port: CI writes the key
//! (`driftless fleet nudge`, or `etcdctl put`), every daemon hears it.
//!
//! The daemon never depends on the watch: its schedule ticks whatever
//! happens here. A stream that ends is set up again at once, from the
//! revision after the last one seen, so a nudge written while it was down
//! is still heard; one that cannot be set up is tried again after a
//! backoff (doubling, at most [`BACKOFF_MAX`], jittered so that a fleet
//! does not reconnect in step when etcd comes back). One connection, one
//! thread, and messages bounded in size (`fleet::etcd`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::schedule;
use crate::fleet::etcd::{Etcd, EtcdSettings, Watched};
use crate::fleet::record::NudgeValue;

/// Longest wait before setting a watch up again.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A stream that ends sooner than this after it was set up counts as a
/// failure (backoff), so that an endpoint that ends every stream at once
/// is not asked in a tight loop.
const SHORT_STREAM: Duration = Duration::from_secs(5);
/// How often a watch that keeps failing is logged again.
const LOG_EVERY: Duration = Duration::from_secs(600);

/// A nudge heard: the commit it names, when it names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Nudge {
    /// The commit `fleet nudge --commit` named (bounded, for the log).
    pub commit: Option<String>,
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
    /// Starts watching `key`; each nudge goes to the receiver returned. A
    /// nudge that comes while one is still unread is the same nudge.
    pub(crate) fn start(
        etcd: EtcdSettings,
        key: String,
    ) -> Result<(Watcher, mpsc::Receiver<Nudge>)> {
        let stop = Arc::new(AtomicBool::new(false));
        let failing = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::channel(1);
        let (flag, health) = (Arc::clone(&stop), Arc::clone(&failing));
        std::thread::Builder::new()
            .name("fleet-nudge".into())
            .spawn(move || watch(&Etcd::new(etcd), &key, &tx, &flag, &health))
            .context("failed to start the thread that watches the fleet's nudge key")?;
        Ok((Watcher { stop, failing }, rx))
    }

    /// Since when the watch cannot be set up, and the last error; `None`
    /// while it works (for `status`).
    pub(crate) fn failing(&self) -> Option<(SystemTime, String)> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }
}

/// The watch loop: until stopped, or until the loop is gone.
fn watch(
    etcd: &Etcd,
    key: &str,
    tx: &mpsc::Sender<Nudge>,
    stop: &AtomicBool,
    failing: &Mutex<Option<(SystemTime, String)>>,
) {
    let mut next: Option<i64> = None;
    let mut failures: u32 = 0;
    let mut logged: Option<Instant> = None;
    let stopped = || stop.load(Ordering::SeqCst) || tx.is_closed();
    let wake = |commit: Option<String>| {
        // Full: a nudge is waiting to be read already; this one is it.
        let _ = tx.try_send(Nudge { commit });
    };
    while !stopped() {
        let began = Instant::now();
        let start = next;
        let mut on = |m: Watched| match m {
            Watched::Created { revision } => {
                if let Ok(mut f) = failing.lock() {
                    *f = None;
                }
                if next.is_some_and(|n| revision + 1 < n) {
                    // The store is behind what was seen (etcd restored or
                    // rebuilt): what changed is not known; wake anyway.
                    next = Some(revision + 1);
                    wake(None);
                } else if next.is_none() {
                    next = Some(revision + 1);
                }
                true
            }
            Watched::Changed { next: n, value } => {
                next = Some(n);
                wake(NudgeValue::read(&value).commit);
                true
            }
            Watched::Oversized => {
                wake(None);
                true
            }
            Watched::Canceled { compacted, reason } => {
                if compacted.is_some() {
                    // History before the compaction is gone: something
                    // may have changed in it; watch from now on.
                    next = None;
                    wake(None);
                } else {
                    warn!(reason, "etcd ended the watch of the fleet's nudge key");
                }
                false
            }
            Watched::Other => true,
        };
        let pause = match etcd.watch(key, start, &mut on, &stopped) {
            Ok(false) => return,
            Ok(true) if began.elapsed() >= SHORT_STREAM => {
                if failures > 0 {
                    info!("the watch of the fleet's nudge key works again");
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
                if let Ok(mut f) = failing.lock() {
                    let since = f.as_ref().map_or_else(SystemTime::now, |(t, _)| *t);
                    *f = Some((since, format!("{e:#}")));
                }
                if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    warn!(
                        error = format!("{e:#}"),
                        failures,
                        "cannot watch the fleet's nudge key; trying again in {}s (the schedule goes on)",
                        pause.as_secs()
                    );
                    logged = Some(Instant::now());
                }
                pause
            }
        };
        let until = Instant::now() + pause;
        while !stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }
}

/// The wait after `failures` failures in a row: 1 s doubled each time, at
/// most [`BACKOFF_MAX`], varied by ±50 % so that a fleet spreads out.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(10)))
        .min(BACKOFF_MAX);
    base.mul_f64(1.0 + 0.5 * schedule::random_unit())
}

/// The delay before the tick a nudge asks for: random in `[0, splay)`, so
/// that a fleet does not fetch in the same second.
pub(crate) fn delay(splay: Duration) -> Duration {
    splay.mul_f64((schedule::random_unit() + 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next nudge within `secs`, or `None`.
    fn heard(rx: &mut mpsc::Receiver<Nudge>, secs: u64) -> Option<Nudge> {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            if let Ok(n) = rx.try_recv() {
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A stream that etcd cancels because its revision was compacted away
    /// wakes the loop (something may have changed) and is set up again
    /// from now on; the next stream's put wakes it with its commit. The
    /// watch asks for puts only, from the revision after the last seen.
    #[test]
    fn a_compacted_watch_wakes_and_watches_again() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (bodies_tx, bodies) = std::sync::mpsc::channel::<String>();
        let server = std::thread::spawn(move || {
            let answers = [
                concat!(
                    r#"{"result":{"header":{"revision":"9"},"created":true}}"#,
                    "\n",
                    r#"{"result":{"header":{},"canceled":true,"compact_revision":"7"}}"#,
                    "\n"
                ),
                concat!(
                    r#"{"result":{"header":{"revision":"9"},"created":true}}"#,
                    "\n",
                    r#"{"result":{"header":{"revision":"10"},"events":[{"kv":{"key":"","mod_revision":"10","value":"eyJjb21taXQiOiJhYmMxMjM0In0="}}]}}"#,
                    "\n"
                ),
            ];
            let mut held = Vec::new();
            for answer in answers {
                let (s, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("header");
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().expect("length");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                let _ = bodies_tx.send(String::from_utf8_lossy(&body).into_owned());
                let mut s = s;
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
                    .expect("write");
                s.write_all(answer.as_bytes()).expect("write");
                // The first stream ends when the client ends it; the
                // second stays open.
                held.push(s);
            }
            held
        });
        let settings = EtcdSettings {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        let (watcher, mut rx) = Watcher::start(settings, "/f/nudge".into()).expect("start");
        assert_eq!(
            heard(&mut rx, 10),
            Some(Nudge { commit: None }),
            "compacted"
        );
        assert_eq!(
            heard(&mut rx, 10),
            Some(Nudge {
                commit: Some("abc1234".into())
            })
        );
        let first = bodies.recv().expect("first request");
        let second = bodies.recv().expect("second request");
        assert!(
            first.contains("NODELETE") && !first.contains("start_revision"),
            "{first}"
        );
        assert!(
            !second.contains("start_revision"),
            "after a compaction: {second}"
        );
        drop(watcher);
        drop(server.join().expect("server"));
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_the_delay_stays_within_the_splay() {
        for n in 1..20 {
            let b = backoff(n);
            let base = Duration::from_secs(1 << (n - 1).min(10)).min(BACKOFF_MAX);
            assert!(b >= base / 2 && b <= base.mul_f64(1.5), "{n}: {b:?}");
        }
        let splay = Duration::from_secs(5);
        for _ in 0..1000 {
            assert!(delay(splay) <= splay);
        }
        assert_eq!(delay(Duration::ZERO), Duration::ZERO);
    }
}
