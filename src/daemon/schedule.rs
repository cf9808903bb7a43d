//! When the daemon converges: a splay before the first run derived from
//! the machine id, ±10 % jitter on every wait, and a capped exponential
//! backoff between fetches while they fail. Pure arithmetic; the clock and
//! the randomness come from the caller.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// How much every wait varies, either way.
const JITTER: f64 = 0.10;

/// The delay before the first converge: the same for a machine on every
/// boot, spread evenly over `[0, splay)` across a fleet, so a fleet rebooted
/// at once does not hit the git server at once.
pub(crate) fn splay(machine_id: &str, splay: Duration) -> Duration {
    if splay.is_zero() {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(format!("driftless splay {machine_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let fraction = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    splay.mul_f64(fraction)
}

/// `d` varied by `unit * 10 %`, where `unit` is in `[-1, 1]`.
pub(crate) fn jitter(d: Duration, unit: f64) -> Duration {
    d.mul_f64(1.0 + JITTER * unit.clamp(-1.0, 1.0))
}

/// How long to wait before the next fetch after `failures` fetches failed
/// in a row: the interval, doubled for each failure, at most `max` (and
/// never less than the interval).
pub(crate) fn fetch_backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 2u32.saturating_pow(failures.min(30));
    interval
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(max)
        .max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splay_is_stable_per_machine_and_spread_over_the_range() {
        let max = Duration::from_secs(60);
        assert_eq!(splay("abc", max), splay("abc", max));
        assert_eq!(splay("abc", Duration::ZERO), Duration::ZERO);
        let delays: Vec<Duration> = (0..1000).map(|i| splay(&format!("m{i}"), max)).collect();
        assert!(delays.iter().all(|d| *d < max));
        let early = delays.iter().filter(|d| **d < max / 2).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        assert_eq!(jitter(d, 0.0), d);
        assert_eq!(jitter(d, 1.0), Duration::from_secs(110));
        assert_eq!(jitter(d, -7.0), Duration::from_secs(90));
        for _ in 0..1000 {
            let j = jitter(d, crate::random::unit());
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let i = Duration::from_secs(300);
        let max = Duration::from_secs(1800);
        let waits: Vec<u64> = (0..6).map(|n| fetch_backoff(i, n, max).as_secs()).collect();
        assert_eq!(waits, [300, 600, 1200, 1800, 1800, 1800]);
        assert_eq!(fetch_backoff(i, 1000, max), max);
        // A cap below the interval never makes fetches more frequent.
        assert_eq!(fetch_backoff(i, 3, Duration::from_secs(10)), i);
    }
}
