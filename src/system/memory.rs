//! This process's own memory: what a long-running daemon hands back to the
//! system after a converge.

/// Returns the heap's free pages to the system. glibc keeps what a converge
/// freed (a heap shrinks only from its top, and the arena of the thread
/// that ran the converge not at all), so an idle daemon would hold the peak
/// of its largest converge for ever; `malloc_trim(0)` releases every whole
/// free page of every arena. Called once per converge, after it, from a
/// quiet point (it walks and locks each arena in turn).
#[cfg(target_env = "gnu")]
#[expect(unsafe_code, reason = "malloc_trim has no safe binding")]
pub(crate) fn give_back_free_memory() {
    // SAFETY: malloc_trim takes no pointer and has no caller-side
    // invariant; glibc serialises it with every other allocator call.
    let released = unsafe { nix::libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "free memory given back to the system");
}

/// Elsewhere (musl) the allocator gives memory back by itself.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn give_back_free_memory() {}
