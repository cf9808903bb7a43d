//! Fault injection for the crash-recovery tests: `DRIFTLESS_FAULT=STEP`
//! makes driftless kill itself with SIGKILL when it reaches STEP, as a power
//! loss would. Read only in debug builds (what `cargo test` builds); release
//! builds compile it to nothing.
//!
//! Steps: `after-snapshot`, `after-dnf`, `after-file` (after each file,
//! directory or symlink step; `after-file:N` after the N-th, from 1),
//! `mid-write:N` (the N-th file write of the process, its temporary file
//! written but not yet renamed), `after-daemon-reload`, `during-checks`,
//! `mid-rollback`.

/// Dies here if the environment asks for it.
pub(crate) fn point(step: &str) {
    point_n(step, 1);
}

/// Dies at the `n`-th occurrence of `step` (for `after-file:N`).
pub(crate) fn point_n(step: &str, n: usize) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(want) = std::env::var("DRIFTLESS_FAULT") else {
        return;
    };
    let (name, count) = match want.split_once(':') {
        Some((name, c)) => (name.to_owned(), c.parse().unwrap_or(1)),
        None => (want.clone(), 1),
    };
    if name == step && count == n {
        tracing::warn!(step, n, "fault injection: killing driftless");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
