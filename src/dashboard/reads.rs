//! One read of the fleet shared by every open page: when a change event
//! makes ten pages ask for `/api/status` at once, etcd is read once. A read
//! is reused while the watch saw no change since it began and it is
//! younger than [`FRESH`] (a page's periodic refresh still reads anew when
//! the watch does not work); reads are made one at a time, and a failed
//! read is not kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

/// How long a read is reused while nothing changed.
pub(crate) const FRESH: Duration = Duration::from_secs(5);
/// Reads kept (one per commit asked about).
const KEPT: usize = 8;

/// One read: for which commit, at which count of changes, when, and its
/// JSON.
struct Read {
    commit: Option<String>,
    count: u64,
    at: Instant,
    body: Arc<Vec<u8>>,
}

/// The reads kept.
#[derive(Default)]
pub(crate) struct Reads {
    kept: Mutex<Vec<Read>>,
    /// Held while reading, so that pages asking together share one read.
    reading: Mutex<()>,
}

impl Reads {
    /// The fleet's JSON for `commit`: a kept read made at change count
    /// `count` (taken before asking), else what `read` returns.
    pub(crate) fn get(
        &self,
        commit: Option<&str>,
        count: u64,
        read: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(body) = self.kept(commit, count) {
            return Ok(body);
        }
        // A poisoned lock only means a read panicked: read anyway.
        let _reading = self.reading.lock();
        if let Some(body) = self.kept(commit, count) {
            return Ok(body);
        }
        let body = Arc::new(read()?);
        if let Ok(mut kept) = self.kept.lock() {
            kept.retain(|r| r.commit.as_deref() != commit);
            kept.insert(
                0,
                Read {
                    commit: commit.map(str::to_owned),
                    count,
                    at: Instant::now(),
                    body: Arc::clone(&body),
                },
            );
            kept.truncate(KEPT);
        }
        Ok(body)
    }

    /// The kept read for `commit` at `count`, while fresh.
    fn kept(&self, commit: Option<&str>, count: u64) -> Option<Arc<Vec<u8>>> {
        let kept = self.kept.lock().ok()?;
        kept.iter()
            .find(|r| r.commit.as_deref() == commit && r.count == count && r.at.elapsed() < FRESH)
            .map(|r| Arc::clone(&r.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_read_is_shared_until_something_changed() {
        let reads = Reads::default();
        let made = Cell::new(0);
        let read = || {
            made.set(made.get() + 1);
            Ok(format!("read {}", made.get()).into_bytes())
        };
        assert_eq!(*reads.get(None, 1, read).expect("read"), b"read 1");
        assert_eq!(*reads.get(None, 1, read).expect("kept"), b"read 1");
        assert_eq!(
            *reads.get(Some("abc"), 1, read).expect("other commit"),
            b"read 2"
        );
        assert_eq!(*reads.get(None, 2, read).expect("changed"), b"read 3");
        assert!(reads.get(None, 3, || anyhow::bail!("etcd down")).is_err());
        assert_eq!(*reads.get(None, 3, read).expect("not kept"), b"read 4");
        assert_eq!(made.get(), 4);
    }
}
