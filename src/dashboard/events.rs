//! Live updates: one etcd watch of the whole fleet prefix (records, halt,
//! rollbacks, slots; `fleet::watch`) counts changes here, and each open
//! page's server-sent event stream (`/events`) says `change` when the count
//! moved, after a short pause that gathers a burst (a wave of hosts
//! writing their records) into one event. The page then reads
//! `/api/status` again. Without a watch (etcd down) the stream still says
//! `change` every [`REFRESH`], and a comment every [`KEEPALIVE`] keeps
//! proxies from closing it; it ends after [`STREAM_MAX`] (the browser
//! opens it again), so that no connection is held without end.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::fleet::watch::Listener;

/// A comment sent when nothing else was for this long.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);
/// A `change` sent when none was for this long: the fallback when the
/// watch does not work.
pub(crate) const REFRESH: Duration = Duration::from_secs(60);
/// The pause after a change before the event, gathering a burst.
const GATHER: Duration = Duration::from_millis(250);
/// How long one stream lasts before it is ended (and opened again).
const STREAM_MAX: Duration = Duration::from_secs(30 * 60);
/// How often a waiting stream looks at the stop request.
const TICK: Duration = Duration::from_secs(1);

/// The count of changes the watch saw.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    count: Mutex<u64>,
    moved: Condvar,
}

impl Changes {
    /// The count now.
    pub(crate) fn now(&self) -> u64 {
        self.count.lock().map_or(0, |c| *c)
    }

    /// Waits up to `timeout` for the count to move past `seen`; the count
    /// then.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let Ok(count) = self.count.lock() else {
            return seen;
        };
        self.moved
            .wait_timeout_while(count, timeout, |c| *c == seen)
            .map_or(seen, |(c, _)| *c)
    }
}

impl Listener for Changes {
    fn changed(&self, _value: Option<&[u8]>) {
        if let Ok(mut c) = self.count.lock() {
            *c = c.wrapping_add(1);
        }
        self.moved.notify_all();
    }

    fn gone(&self) -> bool {
        // Stopped with its watcher, when `fleet serve` ends.
        false
    }
}

/// The head of an event stream's answer.
pub(crate) fn head() -> String {
    super::http::head_of(200, "text/event-stream; charset=utf-8", "")
}

/// Streams events to `w` until the client goes away, `cancel` is asked,
/// or [`STREAM_MAX`] passes. The first event is sent at once (the page
/// reads its first status on it).
pub(crate) fn stream<W: Write + ?Sized>(
    w: &mut W,
    changes: &Changes,
    cancel: &Cancel,
) -> io::Result<()> {
    let began = Instant::now();
    // The browser opens a stream that ended again after 3 s.
    w.write_all(b"retry: 3000\n\n")?;
    let mut seen = changes.now();
    let mut sent = 0u64;
    let mut event = |w: &mut W| -> io::Result<Instant> {
        sent += 1;
        w.write_all(format!("event: change\ndata: {sent}\n\n").as_bytes())?;
        w.flush()?;
        Ok(Instant::now())
    };
    let mut last_event = event(w)?;
    let mut last_write = last_event;
    while !cancel.is_cancelled() && began.elapsed() < STREAM_MAX {
        let now = changes.wait(seen, TICK);
        if now != seen {
            std::thread::sleep(GATHER);
            seen = changes.now();
            last_event = event(w)?;
            last_write = last_event;
        } else if last_event.elapsed() >= REFRESH {
            last_event = event(w)?;
            last_write = last_event;
        } else if last_write.elapsed() >= KEEPALIVE {
            w.write_all(b": keep-alive\n\n")?;
            w.flush()?;
            last_write = Instant::now();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test reads as they come.
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_change_sends_an_event_and_a_burst_sends_one() {
        let changes = Arc::new(Changes::default());
        let out = Arc::new(Mutex::new(Vec::new()));
        let cancel = Cancel::new();
        let (c, o, stop) = (Arc::clone(&changes), Arc::clone(&out), cancel.clone());
        let poke = std::thread::spawn(move || {
            let events = || {
                String::from_utf8_lossy(&o.lock().expect("lock"))
                    .matches("event: change")
                    .count()
            };
            std::thread::sleep(Duration::from_millis(300));
            for _ in 0..5 {
                c.changed(None);
            }
            let until = Instant::now() + Duration::from_secs(5);
            while events() < 2 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Long enough for a second event, had the burst made one.
            std::thread::sleep(Duration::from_millis(600));
            stop.cancel();
        });
        stream(&mut Shared(Arc::clone(&out)), &changes, &cancel).expect("stream");
        poke.join().expect("poke");
        let text = String::from_utf8(out.lock().expect("lock").clone()).expect("text");
        assert_eq!(
            text,
            "retry: 3000\n\nevent: change\ndata: 1\n\nevent: change\ndata: 2\n\n"
        );
    }

    #[test]
    fn a_cancelled_stream_ends() {
        let cancel = Cancel::new();
        cancel.cancel();
        let mut out = Vec::new();
        stream(&mut out, &Changes::default(), &cancel).expect("stream");
        assert_eq!(out, b"retry: 3000\n\nevent: change\ndata: 1\n\n");
    }
}
