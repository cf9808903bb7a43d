//! Cancellation of one run: a token handed down through fetch, load,
//! render, plan, apply, health checks and rollback.
//!
//! Each run gets a fresh token, so a daemon whose converge was stopped
//! starts the next one clean. Cancelling asks forward work to stop: the
//! running child (dnf, a check command) is killed and the converge rolls
//! back. A rollback [shields](Cancel::shield) itself: its steps run to
//! completion (each has its timeout), because a half-restored host is worse
//! than a late stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A cloneable cancellation token; clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    requested: Arc<AtomicBool>,
    shields: Arc<AtomicUsize>,
}

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token whose cancellation is the given flag, for signal handlers
    /// that can only set an `AtomicBool` (signal-hook's `flag::register`).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Self {
            requested: flag,
            shields: Arc::default(),
        }
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for during this run, shielded or not: a
    /// stopped converge says nothing about its desired state.
    pub fn is_cancelled(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Whether forward work must end now: cancelled, and not inside a
    /// rollback.
    pub fn should_stop(&self) -> bool {
        self.is_cancelled() && self.shields.load(Ordering::SeqCst) == 0
    }

    /// The flag itself, for code that polls an `AtomicBool` (gix's fetch).
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }

    /// Shields what follows from the stop request until the guard is
    /// dropped: used by rollbacks, which must finish.
    pub fn shield(&self) -> Shield {
        self.shields.fetch_add(1, Ordering::SeqCst);
        Shield {
            shields: Arc::clone(&self.shields),
        }
    }
}

/// While alive, [`Cancel::should_stop`] is false (see [`Cancel::shield`]).
#[derive(Debug)]
pub struct Shield {
    shields: Arc<AtomicUsize>,
}

impl Drop for Shield {
    fn drop(&mut self) {
        self.shields.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_request_and_shields_nest() {
        let c = Cancel::new();
        let other = c.clone();
        assert!(!c.should_stop() && !c.is_cancelled());
        other.cancel();
        assert!(c.should_stop() && c.is_cancelled());
        let outer = c.shield();
        let inner = other.shield();
        assert!(!c.should_stop() && c.is_cancelled());
        drop(outer);
        assert!(!c.should_stop());
        drop(inner);
        assert!(c.should_stop());
    }

    #[test]
    fn a_new_token_is_not_cancelled_by_an_old_one() {
        let first = Cancel::new();
        first.cancel();
        assert!(!Cancel::new().is_cancelled());
    }

    #[test]
    fn a_flag_set_by_a_signal_handler_cancels() {
        let flag = Arc::new(AtomicBool::new(false));
        let c = Cancel::from_flag(Arc::clone(&flag));
        flag.store(true, Ordering::SeqCst);
        assert!(c.should_stop());
    }
}
