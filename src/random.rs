//! A random number for spreading timers (the daemon's jitter, the fleet
//! watch's backoff): a leaf, so that every room may spread its own.

use std::hash::{BuildHasher, Hasher};

/// A random number in `[-1, 1]`, from the standard library's per-process
/// random hash keys (good enough to spread timers; not for secrets).
pub(crate) fn unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let x = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    x * 2.0 - 1.0
}
