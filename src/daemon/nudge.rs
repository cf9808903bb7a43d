//! The fleet's nudge: with `[fleet]`, the daemon watches one key,
//! `<prefix>/nudge`, over an etcd watch stream on a thread of its own; a
//! put wakes the loop for a tick (after the host's own small random delay,
//! the loop's business). The host opens no port: CI writes the key
//! (`driftless fleet nudge`, or `etcdctl put`), every daemon hears it.
//!
//! The daemon never depends on the watch: its schedule ticks whatever
//! happens here. The watch itself (set up again when it ends, from the
//! revision after the last seen; backoff while it cannot be) is
//! `fleet::watch`'s, shared with the dashboard.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::fleet::etcd::{EtcdSettings, WatchOf};
use crate::fleet::record::NudgeValue;
use crate::fleet::watch::{self, Listener};

/// A nudge heard: the commit it names, when it names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Nudge {
    /// The commit `fleet nudge --commit` named (bounded, for the log).
    pub commit: Option<String>,
}

/// The watch of the nudge key (`fleet::watch`); stopped when dropped.
pub(crate) struct Watcher(watch::Watcher);

/// The loop's end of the watch: a nudge that comes while one is still
/// unread is the same nudge.
struct Wake(mpsc::Sender<Nudge>);

impl Listener for Wake {
    fn changed(&self, value: Option<&[u8]>) {
        let commit = value.and_then(|v| NudgeValue::read(v).commit);
        // Full: a nudge is waiting to be read already; this one is it.
        let _ = self.0.try_send(Nudge { commit });
    }

    fn gone(&self) -> bool {
        self.0.is_closed()
    }
}

impl Watcher {
    /// Starts watching `key` (puts only); each nudge goes to the receiver
    /// returned.
    pub(crate) fn start(
        etcd: EtcdSettings,
        key: String,
    ) -> Result<(Watcher, mpsc::Receiver<Nudge>)> {
        let (tx, rx) = mpsc::channel(1);
        let what = WatchOf {
            key,
            prefix: false,
            puts_only: true,
        };
        let w = watch::Watcher::start(
            etcd,
            what,
            "fleet-nudge",
            "the fleet's nudge key (the schedule goes on)",
            Arc::new(Wake(tx)),
        )?;
        Ok((Watcher(w), rx))
    }

    /// Since when the watch cannot be set up, and the last error; `None`
    /// while it works (for `status`).
    pub(crate) fn failing(&self) -> Option<(std::time::SystemTime, String)> {
        self.0.failing()
    }
}

/// The delay before the tick a nudge asks for: random in `[0, splay)`, so
/// that a fleet does not fetch in the same second.
pub(crate) fn delay(splay: Duration) -> Duration {
    splay.mul_f64((crate::random::unit() + 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
    fn the_delay_stays_within_the_splay() {
        let splay = Duration::from_secs(5);
        for _ in 0..1000 {
            assert!(delay(splay) <= splay);
        }
        assert_eq!(delay(Duration::ZERO), Duration::ZERO);
    }
}
