//! Fleet rollout safety on etcd: each host publishes what it runs under a
//! lease, and asks the gate before it applies a new commit (canary waves,
//! soak, a halted rollout after a canary rolled back, the fleet-wide stop,
//! maintenance windows), and before it reboots ([`reboot`]: a slot of its
//! wave, earlier waves back healthy). Coordination only: every host still converges
//! itself. The gate and the records are pure; only [`etcd`] talks to the
//! network, and [`watch`] keeps a watch of it going.

pub(crate) mod etcd;
pub(crate) mod gate;
pub(crate) mod reboot;
pub(crate) mod record;
pub(crate) mod watch;

/// Names shown in one message, at most.
pub(crate) const NAMED: usize = 5;

/// The first [`NAMED`] of `names`, joined, and `…` when there are more:
/// a message about many records stays one line.
pub(crate) fn first_few(names: &[&str]) -> String {
    let mut shown = names
        .iter()
        .take(NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        shown.push_str(", …");
    }
    shown
}
