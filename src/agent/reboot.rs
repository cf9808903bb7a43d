//! Whether the host needs a reboot, and whether now is the time: pure
//! rules over what `system::reboot` observed and what the agent state
//! remembers ([`RebootRecord`]). The daemon (through `app::reboot`) runs
//! them after every converge.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::plan::rpmver::rpmvercmp;

/// Packages whose update only takes effect after a reboot, as dnf's
/// `needs-restarting -r` lists them (the kernel's packages are matched by
/// prefix: `kernel`, `kernel-core`, `kernel-rt`, ...).
pub(crate) const CORE_PACKAGES: [&str; 8] = [
    "kernel",
    "kernel-core",
    "glibc",
    "systemd",
    "openssl-libs",
    "dbus",
    "dbus-broker",
    "linux-firmware",
];

/// What the host shows about a reboot, as `system::reboot` read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The running kernel's release (`uname -r`).
    pub running_kernel: String,
    /// Releases of the installed kernels (`/lib/modules/<release>` with a
    /// `vmlinuz`).
    pub installed_kernels: Vec<String>,
    /// Core packages and their install time (Unix seconds).
    pub core_installed: Vec<(String, i64)>,
    /// When this boot began (Unix seconds).
    pub boot_time: i64,
    /// What `needs-restarting -r` said (`Some(true)`: a reboot is
    /// needed), when the host has it; then it decides for the packages.
    pub needs_restarting: Option<bool>,
    /// Running services that map a deleted (replaced) library or program.
    pub stale_services: Vec<String>,
}

/// The verdict on one observation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Need {
    /// Why a reboot is needed; empty: it is not.
    pub reasons: Vec<String>,
    /// The newest installed kernel, when it is not the running one.
    pub newer_kernel: Option<String>,
    /// How the packages were judged: `needs-restarting` or `rpm`.
    pub method: &'static str,
}

/// Orders two kernel releases (`5.14.0-427.el9.x86_64`) as rpm orders
/// their packages: the version (before the first `-`), then the rest.
pub(crate) fn kernel_order(a: &str, b: &str) -> Ordering {
    let split = |k: &str| -> (String, String) {
        match k.split_once('-') {
            Some((v, r)) => (v.to_owned(), r.to_owned()),
            None => (k.to_owned(), String::new()),
        }
    };
    let ((va, ra), (vb, rb)) = (split(a), split(b));
    rpmvercmp(&va, &vb).then_with(|| rpmvercmp(&ra, &rb))
}

/// Whether `o` says the host needs a reboot, and why.
pub(crate) fn need(o: &Observed) -> Need {
    let mut reasons = Vec::new();
    let newest = o
        .installed_kernels
        .iter()
        .max_by(|a, b| kernel_order(a, b))
        .cloned();
    let newer_kernel = newest.filter(|n| kernel_order(n, &o.running_kernel) == Ordering::Greater);
    if let Some(n) = &newer_kernel {
        reasons.push(format!(
            "kernel {n} is installed, {} is running",
            o.running_kernel
        ));
    }
    let method = match o.needs_restarting {
        Some(true) => {
            reasons.push("needs-restarting -r: core packages were updated since boot".into());
            "needs-restarting"
        }
        Some(false) => "needs-restarting",
        None => {
            let mut updated: Vec<&str> = o
                .core_installed
                .iter()
                .filter(|(_, at)| *at > o.boot_time)
                .map(|(n, _)| n.as_str())
                .collect();
            updated.sort_unstable();
            updated.dedup();
            if !updated.is_empty() {
                reasons.push(format!("updated since boot: {}", updated.join(", ")));
            }
            "rpm"
        }
    };
    Need {
        reasons,
        newer_kernel,
        method,
    }
}

/// Who asked for something, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asked {
    /// Who (the user, and the user behind sudo).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A reboot driftless asked systemd for, until the host is back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// When it was asked for (RFC 3339).
    pub at: String,
    /// The kernel running then.
    pub kernel: String,
    /// The boot it was asked from (see `system::reboot::boot`): another
    /// boot means the reboot happened.
    pub boot: String,
    /// Why.
    pub reasons: Vec<String>,
}

/// The last reboot driftless asked for and saw happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebooted {
    /// When the host was found back and healthy (RFC 3339).
    pub at: String,
    /// When the reboot was asked for (RFC 3339).
    pub asked_at: String,
    /// The kernel before.
    pub old_kernel: String,
    /// The kernel after.
    pub new_kernel: String,
}

/// What the agent remembers about reboots (`state.json`'s `reboot`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootRecord {
    /// Since when a reboot is needed (RFC 3339); `None`: it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_since: Option<String>,
    /// Why it is needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// How core packages were judged: `needs-restarting` or `rpm`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Running services that map a deleted library: they need a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// `driftless reboot --now`: reboot at the next chance, window or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<Asked>,
    /// `driftless reboot --cancel`: no automatic reboot for what is
    /// required now (a new requirement, or `reboot --now`, lifts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Asked>,
    /// Why the reboot due waits (outside its window, a drain failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Asked of systemd; the host has not been seen back yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The last reboot seen through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebooted: Option<Rebooted>,
    /// With `[fleet]`: the reboot slot this host holds, from before the
    /// drain until it is back healthy (or kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<HeldSlot>,
}

/// A reboot slot of the fleet (`<prefix>/reboot-slots/<wave>/…`) as the
/// host that holds it remembers it, so that the daemon after the boot
/// gives it back, or keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldSlot {
    /// Its key in etcd.
    pub key: String,
    /// The wave it is a slot of.
    pub wave: String,
    /// When it was taken (RFC 3339).
    pub at: String,
    /// Why it is kept: the host came back unhealthy, or not in time, and
    /// its wave's reboots are halted until an operator resumes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

/// What a check does about the reboot slot the host holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotStep {
    /// Nothing now.
    Nothing,
    /// Give it back: the host is back healthy, or no reboot is in flight
    /// any more (a drain cut short, a reboot systemd never did).
    Release,
    /// Keep it and halt the wave's reboots, for this reason.
    Keep(String),
    /// It is kept: look whether an operator has cleared it.
    CheckKept,
}

/// What to do about the held slot at a check in `boot`, after a converge
/// that was `healthy` (`None`: none ran yet), at `now`, when a host must
/// be back healthy within `back_within` seconds of asking for the reboot.
/// A host back from its reboot that is not healthy keeps the slot at once:
/// its wave's next host would reboot into the same trouble.
pub(crate) fn slot_step(
    rec: &RebootRecord,
    boot: &str,
    healthy: Option<bool>,
    now: &str,
    back_within: u64,
) -> SlotStep {
    let Some(slot) = &rec.slot else {
        return SlotStep::Nothing;
    };
    if slot.kept.is_some() {
        return SlotStep::CheckKept;
    }
    let Some(p) = &rec.pending else {
        return SlotStep::Release;
    };
    if p.boot == boot {
        return SlotStep::Nothing;
    }
    if healthy == Some(false) {
        return SlotStep::Keep(format!(
            "back from the reboot asked at {} (kernel {} before), but its first converge after the boot was not healthy",
            p.at, p.kernel
        ));
    }
    match crate::agent::seconds_between(&p.at, now) {
        Some(waited) if waited > back_within => SlotStep::Keep(format!(
            "not back healthy within {} of the reboot asked at {}",
            humantime::format_duration(std::time::Duration::from_secs(back_within)),
            p.at
        )),
        _ => SlotStep::Nothing,
    }
}

impl RebootRecord {
    /// Whether a reboot is needed.
    pub fn required(&self) -> bool {
        self.required_since.is_some()
    }

    /// Takes a new verdict at `now`. Returns the reasons when the reboot
    /// has just become required (for the journal's one entry), `None`
    /// otherwise. A cancel is lifted when the reasons change.
    pub(crate) fn observed(
        &mut self,
        need: &Need,
        services: &[String],
        now: &str,
    ) -> Option<Vec<String>> {
        self.method = need.method.to_owned();
        self.services = services.to_vec();
        if need.reasons.is_empty() {
            self.required_since = None;
            self.reasons.clear();
            self.cancelled = None;
            self.waiting = None;
            return None;
        }
        let changed = self.reasons != need.reasons;
        self.reasons.clone_from(&need.reasons);
        if changed {
            self.cancelled = None;
        }
        if self.required_since.is_none() {
            self.required_since = Some(now.to_owned());
            return Some(need.reasons.clone());
        }
        None
    }
}

/// How long a reboot asked of systemd may take before the next check in
/// the same boot calls it failed (and lets the policy ask again).
pub(crate) const PENDING_BOUND_S: u64 = 600;

/// A reboot asked for at `pending.at` that has not happened (`boot` is
/// still the boot it was asked from) by `now`, longer than
/// [`PENDING_BOUND_S`]: why, for the record's `waiting`.
pub(crate) fn overdue(pending: &Pending, boot: &str, now: &str) -> Option<String> {
    // A clock set back after the request puts it in the future: as far
    // from now is as long ago, or a reboot asked in a boot that never ends
    // would wait for ever.
    let waited = crate::agent::seconds_between(&pending.at, now)
        .or_else(|| crate::agent::seconds_between(now, &pending.at))?;
    (pending.boot == boot && waited > PENDING_BOUND_S).then(|| {
        format!(
            "the reboot asked of systemd at {} did not happen within {PENDING_BOUND_S}s; asking again",
            pending.at
        )
    })
}

/// When reboots happen (`[reboot] mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootMode {
    /// Never: not even `driftless reboot --now`.
    Never,
    /// Detect and report; reboot only when an operator asks.
    Report,
    /// Reboot when one is required, in a window.
    WhenRequired,
}

/// What to do about a reboot now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing is due.
    Nothing,
    /// Due, but not now: why.
    Wait(String),
    /// Drain and reboot.
    Reboot,
}

/// Whether to reboot now: an operator's `reboot --now` goes at once (but
/// not with mode `never`); a required reboot goes with `when-required`,
/// unless cancelled or paused, when a window is open.
pub(crate) fn decide(
    record: &RebootRecord,
    mode: RebootMode,
    window_open: bool,
    paused: bool,
) -> Decision {
    if record.pending.is_some() || mode == RebootMode::Never {
        return Decision::Nothing;
    }
    if record.asked.is_some() {
        return Decision::Reboot;
    }
    if !record.required() || mode != RebootMode::WhenRequired {
        return Decision::Nothing;
    }
    if let Some(c) = &record.cancelled {
        return Decision::Wait(format!(
            "cancelled by {} at {}: `driftless reboot --now` reboots",
            c.by, c.at
        ));
    }
    if paused {
        return Decision::Wait("the host is paused".into());
    }
    if !window_open {
        return Decision::Wait("outside the reboot window".into());
    }
    Decision::Reboot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(running: &str, kernels: &[&str]) -> Observed {
        Observed {
            running_kernel: running.into(),
            installed_kernels: kernels.iter().map(|k| (*k).to_owned()).collect(),
            boot_time: 1000,
            ..Observed::default()
        }
    }

    #[test]
    fn a_newer_installed_kernel_or_a_core_update_since_boot_needs_a_reboot() {
        let o = observed(
            "5.14.0-427.el9.x86_64",
            &["5.14.0-427.el9.x86_64", "5.14.0-70.el9.x86_64"],
        );
        assert_eq!(need(&o).reasons, Vec::<String>::new());
        let o = observed(
            "5.14.0-70.el9.x86_64",
            &["5.14.0-427.el9.x86_64", "5.14.0-70.el9.x86_64"],
        );
        let n = need(&o);
        assert_eq!(n.newer_kernel.as_deref(), Some("5.14.0-427.el9.x86_64"));
        assert_eq!(
            n.reasons,
            ["kernel 5.14.0-427.el9.x86_64 is installed, 5.14.0-70.el9.x86_64 is running"]
        );
        // No modules at all (a container): nothing to say.
        assert!(need(&observed("6.1.0-13-amd64", &[])).reasons.is_empty());
        let mut o = observed("1.0-1", &["1.0-1"]);
        o.core_installed = vec![("glibc".into(), 999), ("systemd".into(), 1001)];
        let n = need(&o);
        assert_eq!(n.reasons, ["updated since boot: systemd"]);
        assert_eq!(n.method, "rpm");
        // needs-restarting decides for the packages when present.
        o.needs_restarting = Some(false);
        assert!(need(&o).reasons.is_empty());
        assert_eq!(need(&o).method, "needs-restarting");
    }

    #[test]
    fn the_record_says_once_when_it_becomes_required_and_forgets_a_cancel() {
        let mut r = RebootRecord::default();
        let need = Need {
            reasons: vec!["a".into()],
            newer_kernel: None,
            method: "rpm",
        };
        assert_eq!(r.observed(&need, &[], "t1"), Some(vec!["a".to_owned()]));
        assert_eq!(r.observed(&need, &[], "t2"), None);
        assert_eq!(r.required_since.as_deref(), Some("t1"));
        r.cancelled = Some(Asked {
            by: "root".into(),
            at: "t2".into(),
        });
        assert!(matches!(
            decide(&r, RebootMode::WhenRequired, true, false),
            Decision::Wait(_)
        ));
        let other = Need {
            reasons: vec!["b".into()],
            ..need.clone()
        };
        assert_eq!(r.observed(&other, &[], "t3"), None);
        assert_eq!(r.cancelled, None);
        assert_eq!(
            decide(&r, RebootMode::WhenRequired, true, false),
            Decision::Reboot
        );
        assert_eq!(r.observed(&Need::default(), &[], "t4"), None);
        assert!(!r.required());
    }

    #[test]
    fn the_policy_waits_for_a_window_and_an_operator_overrides_it() {
        let mut r = RebootRecord {
            required_since: Some("t".into()),
            reasons: vec!["k".into()],
            ..RebootRecord::default()
        };
        assert_eq!(
            decide(&r, RebootMode::Report, true, false),
            Decision::Nothing
        );
        assert_eq!(
            decide(&r, RebootMode::WhenRequired, false, false),
            Decision::Wait("outside the reboot window".into())
        );
        assert_eq!(
            decide(&r, RebootMode::WhenRequired, true, true),
            Decision::Wait("the host is paused".into())
        );
        r.asked = Some(Asked {
            by: "root".into(),
            at: "t".into(),
        });
        assert_eq!(
            decide(&r, RebootMode::Report, false, false),
            Decision::Reboot
        );
        assert_eq!(
            decide(&r, RebootMode::Never, true, false),
            Decision::Nothing
        );
        r.pending = Some(Pending {
            at: "t".into(),
            kernel: "k".into(),
            boot: "b".into(),
            reasons: vec![],
        });
        assert_eq!(
            decide(&r, RebootMode::WhenRequired, true, false),
            Decision::Nothing
        );
    }

    #[test]
    fn a_reboot_that_did_not_happen_is_overdue_after_its_bound() {
        let p = Pending {
            at: "2026-01-01T00:00:00Z".into(),
            kernel: "k".into(),
            boot: "b1".into(),
            reasons: vec![],
        };
        assert_eq!(overdue(&p, "b1", "2026-01-01T00:05:00Z"), None);
        assert!(overdue(&p, "b1", "2026-01-01T00:11:00Z").is_some());
        assert_eq!(overdue(&p, "b2", "2026-01-01T00:11:00Z"), None);
        // The clock was set back an hour after the request.
        assert!(overdue(&p, "b1", "2025-12-31T23:00:00Z").is_some());
        assert_eq!(overdue(&p, "b1", "2025-12-31T23:58:00Z"), None);
    }

    #[test]
    fn the_slot_is_given_back_when_healthy_and_kept_when_not_back_healthy_in_time() {
        let slot = HeldSlot {
            key: "/f/reboot-slots/all/0".into(),
            wave: "all".into(),
            at: "2026-01-01T00:00:00Z".into(),
            kept: None,
        };
        let mut r = RebootRecord {
            slot: Some(slot.clone()),
            ..RebootRecord::default()
        };
        let at = |m: u32| format!("2026-01-01T00:{m:02}:00Z");
        // No reboot in flight (seen through, or a drain cut short).
        assert_eq!(slot_step(&r, "b1", None, &at(1), 600), SlotStep::Release);
        r.pending = Some(Pending {
            at: at(0),
            kernel: "k1".into(),
            boot: "b1".into(),
            reasons: vec![],
        });
        // Still in the boot it was asked from: systemd has not rebooted yet.
        assert_eq!(
            slot_step(&r, "b1", Some(true), &at(30), 600),
            SlotStep::Nothing
        );
        // Back, no converge yet, within the bound: wait.
        assert_eq!(slot_step(&r, "b2", None, &at(5), 600), SlotStep::Nothing);
        // Back, and the first converge failed: kept at once.
        let SlotStep::Keep(why) = slot_step(&r, "b2", Some(false), &at(5), 600) else {
            panic!("kept")
        };
        assert!(why.contains("not healthy"), "{why}");
        // Back, but never healthy within the bound.
        let SlotStep::Keep(why) = slot_step(&r, "b2", None, &at(11), 600) else {
            panic!("kept")
        };
        assert!(why.contains("not back healthy within 10m"), "{why}");
        // Kept: only an operator clears it.
        r.slot = Some(HeldSlot {
            kept: Some(why),
            ..slot
        });
        assert_eq!(
            slot_step(&r, "b2", Some(true), &at(12), 600),
            SlotStep::CheckKept
        );
        r.slot = None;
        assert_eq!(
            slot_step(&r, "b2", Some(false), &at(12), 600),
            SlotStep::Nothing
        );
    }

    #[test]
    fn kernels_order_as_rpm_orders_them() {
        assert_eq!(
            kernel_order("5.14.0-427.el9.x86_64", "5.14.0-70.el9.x86_64"),
            Ordering::Greater
        );
        assert_eq!(kernel_order("6.1", "5.99-1"), Ordering::Greater);
        assert_eq!(kernel_order("1.0-1.test", "1.0-1.test"), Ordering::Equal);
    }
}
