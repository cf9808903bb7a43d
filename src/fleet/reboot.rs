//! The reboot gate: may this host take a reboot slot of its wave now?
//! Pure, like the rollout gate ([`super::gate`]): it takes the policy the
//! host has applied, what etcd holds about reboots and the time, and says
//! go, wait (and for whom) or halted (and why). The slot itself is then
//! taken by a create-if-absent of one of the wave's `max_parallel` keys.
//!
//! A reboot is the one change an agent cannot roll back, so every doubt
//! holds it: the fleet halted, a record that cannot be read, reboots halted
//! in this wave or an earlier one, a host of this wave or an earlier one
//! that went down to reboot and is not back healthy in time, and, for a
//! later wave, any earlier-wave host that still holds a reboot slot or
//! still needs a reboot (canaries reboot into a new kernel first).
//!
//! Hosts are placed in waves by the policy in force here, from their name
//! and the roles of their live record, and by the wave a slot or a halt
//! names: whichever is earlier, so that a host whose record expired while
//! it rebooted still holds the waves after its own.

use serde::{Deserialize, Serialize};

use crate::desired::fleet::{FleetPolicy, REST};

use super::record::HostRecord;

/// A reboot slot as stored under `<prefix>/reboot-slots/<wave>/<i>` (or
/// `/<host>` for a wave without `max_parallel`). Taken on a lease of
/// `[reboot] back_within` kept alive while the host drains, so that a host
/// that dies before its reboot frees it; put again without a lease when
/// systemd is asked to reboot, so that a host that never comes back keeps
/// it (and, past `back_within`, halts its wave's reboots for the others).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootSlot {
    /// The slot's key.
    pub key: String,
    /// The host that holds it.
    pub host: String,
    /// The holder's wave (by the policy it has applied).
    pub wave: String,
    /// When it was taken (RFC 3339).
    pub since: String,
    /// When systemd was asked to reboot (seconds since the epoch).
    #[serde(default)]
    pub rebooting_at: Option<u64>,
    /// Seconds the holder may take, from `rebooting_at`, to be back
    /// healthy.
    #[serde(default)]
    pub back_within: u64,
    /// Why it is kept after the reboot (the host came back unhealthy, or
    /// not in time): its wave's reboots are halted.
    #[serde(default)]
    pub kept: Option<String>,
}

/// The reboots of a wave halted, under `<prefix>/reboot-halt/<wave>`,
/// without a lease: written by a host that came back unhealthy from its
/// reboot, cleared by `driftless fleet resume --reboots`. Any value halts
/// (an `etcdctl put` by hand is its own reason).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootHalt {
    /// The wave whose reboots (and the later waves') are halted.
    pub wave: String,
    /// The host that halted them (empty when written by hand).
    pub host: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339; empty when written by hand).
    pub at: String,
}

/// The reboot slots, under the fleet's prefix (`<wave>/<i>`).
pub(crate) const SLOTS: &str = "reboot-slots/";
/// The waves' reboot halts, under the fleet's prefix (`<wave>`).
pub(crate) const HALTS: &str = "reboot-halt/";

/// What etcd holds about reboots.
pub(crate) struct Reboots {
    /// The slots held.
    pub slots: Vec<RebootSlot>,
    /// The waves halted.
    pub halts: Vec<RebootHalt>,
    /// Keys of slots that cannot be read.
    pub unreadable: Vec<String>,
}

/// Longest reason taken from a hand-written halt value.
const HALT_REASON_MAX: usize = 200;

impl RebootHalt {
    /// The halt the value of key `<…>/reboot-halt/<wave>` stands for: its
    /// JSON, else the text itself as the reason.
    pub(crate) fn read(wave: &str, value: &[u8]) -> RebootHalt {
        let json = serde_json::from_slice::<RebootHalt>(value).map(|mut h| {
            // The wave is the key's, whatever the value says; the reason is
            // bounded as a text one is.
            h.wave = wave.to_owned();
            h.reason = h.reason.chars().take(HALT_REASON_MAX).collect();
            h
        });
        json.unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(value);
            let mut reason: String = text.trim().chars().take(HALT_REASON_MAX).collect();
            if reason.is_empty() {
                reason = "the reboot halt key is set, empty".to_owned();
            }
            RebootHalt {
                wave: wave.to_owned(),
                reason,
                ..RebootHalt::default()
            }
        })
    }
}

/// What the reboot gate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RebootGate {
    /// Take a slot of the wave (if one is free) and reboot.
    Go,
    /// Not now: why.
    Wait(String),
    /// Not until an operator acts: why.
    Halted(String),
}

/// What the reboot gate reads.
pub(crate) struct Input<'a> {
    /// The policy of the commit this host has applied.
    pub policy: &'a FleetPolicy,
    /// This host.
    pub host: &'a str,
    /// Its wave.
    pub wave: usize,
    /// The live hosts' records.
    pub records: &'a [HostRecord],
    /// Keys of records (hosts, slots) that exist but cannot be read.
    pub unreadable: &'a [String],
    /// The fleet-wide stop (`fleet halt`), with its reason.
    pub halt: Option<&'a str>,
    /// The waves whose reboots are halted.
    pub halts: &'a [RebootHalt],
    /// Every reboot slot held, in any wave.
    pub slots: &'a [RebootSlot],
    /// Now, in seconds since the epoch.
    pub now: u64,
}

impl Input<'_> {
    /// The index of the wave called `name` in the policy; a name it does
    /// not know holds every wave (index 0), failing closed.
    fn wave_named(&self, name: &str) -> usize {
        if name == REST {
            return self.policy.waves.len();
        }
        self.policy
            .waves
            .iter()
            .position(|w| w.name == name)
            .unwrap_or(0)
    }

    /// The wave of the holder of `slot`: the earlier of the one it names
    /// and the one its host is in by this policy.
    fn slot_wave(&self, slot: &RebootSlot) -> usize {
        let roles = self
            .records
            .iter()
            .find(|r| r.host == slot.host)
            .map_or(&[][..], |r| r.roles.as_slice());
        self.wave_named(&slot.wave)
            .min(self.policy.wave_of(&slot.host, roles))
    }

    /// Why a slot of this wave or an earlier one halts the reboots: kept
    /// by its host, or its host not back healthy within its bound.
    fn stuck(&self, slot: &RebootSlot) -> Option<String> {
        if let Some(why) = &slot.kept {
            return Some(format!("{} keeps its reboot slot: {why}", slot.host));
        }
        let at = slot.rebooting_at?;
        overdue(at, slot.back_within, self.now).then(|| {
            format!(
                "{} went down to reboot {} ago and is not back healthy (back_within {})",
                slot.host,
                humantime::format_duration(std::time::Duration::from_secs(
                    self.now.saturating_sub(at)
                )),
                humantime::format_duration(std::time::Duration::from_secs(slot.back_within)),
            )
        })
    }
}

/// Decides.
pub(crate) fn decide(i: &Input<'_>) -> RebootGate {
    if let Some(reason) = i.halt {
        return RebootGate::Halted(format!(
            "the fleet is halted ({reason}): no host reboots until `driftless fleet resume`"
        ));
    }
    if !i.unreadable.is_empty() {
        let keys: Vec<&str> = i.unreadable.iter().map(String::as_str).collect();
        return RebootGate::Wait(format!(
            "{} of the fleet cannot be read ({}): it may be a host rebooting, so this host does not reboot until its host rewrites it or an operator deletes it",
            crate::words::count(keys.len(), "record"),
            super::first_few(&keys)
        ));
    }
    if let Some(h) = i.halts.iter().find(|h| i.wave_named(&h.wave) <= i.wave) {
        let by = if h.host.is_empty() {
            String::new()
        } else {
            format!(" by {}", h.host)
        };
        return RebootGate::Halted(format!(
            "reboots of wave {} are halted{by}: {} (`driftless fleet resume --reboots` when it is dealt with)",
            h.wave, h.reason
        ));
    }
    let before: Vec<&RebootSlot> = i
        .slots
        .iter()
        .filter(|s| s.host != i.host && i.slot_wave(s) <= i.wave)
        .collect();
    // Its own kept slot holds this host too: only an operator clears it.
    let own_kept = i
        .slots
        .iter()
        .filter(|s| s.host == i.host && s.kept.is_some());
    if let Some(why) = before
        .iter()
        .copied()
        .chain(own_kept)
        .find_map(|s| i.stuck(s))
    {
        return RebootGate::Halted(format!(
            "{why}: no host of its wave or a later one reboots (`driftless fleet resume --reboots` when it is dealt with)"
        ));
    }
    for j in 0..i.wave {
        let name = i.policy.wave_name(j);
        let rebooting: Vec<&str> = before
            .iter()
            .filter(|s| i.slot_wave(s) == j)
            .map(|s| s.host.as_str())
            .collect();
        if !rebooting.is_empty() {
            return RebootGate::Wait(format!(
                "waiting for wave {name}'s hosts to be back healthy from their reboot: {}",
                super::first_few(&rebooting)
            ));
        }
        let due: Vec<&str> = i
            .records
            .iter()
            .filter(|r| {
                r.host != i.host
                    && i.policy.wave_of(&r.host, &r.roles) == j
                    && (r.reboot_required_since.is_some() || r.rebooting_since.is_some())
            })
            .map(|r| r.host.as_str())
            .collect();
        if !due.is_empty() {
            return RebootGate::Wait(format!(
                "waiting for wave {name} to reboot first: {} still need a reboot",
                super::first_few(&due)
            ));
        }
    }
    RebootGate::Go
}

/// Whether a host that went down at `at` (seconds, from a slot's value in
/// etcd) is past `back_within` at `now`. Numbers no host would write (an
/// end past the clock's range) count as past: the gate holds.
pub(crate) fn overdue(at: u64, back_within: u64, now: u64) -> bool {
    at.checked_add(back_within).is_none_or(|end| end < now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_holds_the_wave_of_its_key_whatever_its_value_says() {
        let long = "x".repeat(1000);
        let value = format!(r#"{{"wave":"rest","host":"h1","reason":"{long}","at":"t"}}"#);
        let h = RebootHalt::read("canary", value.as_bytes());
        assert_eq!(h.wave, "canary");
        assert_eq!(h.reason.chars().count(), HALT_REASON_MAX);
        assert_eq!(RebootHalt::read("canary", b"stop it").reason, "stop it");
    }

    #[test]
    fn a_slots_numbers_from_etcd_never_overflow_and_absurd_ones_hold() {
        assert!(!overdue(100, 60, 150));
        assert!(overdue(100, 60, 161));
        assert!(overdue(u64::MAX, 1, 0));
        assert!(overdue(1, u64::MAX, 0));
    }
    use crate::desired::fleet::parse;

    fn policy() -> FleetPolicy {
        parse(
            "[[wave]]\nname = \"canary\"\nhosts = [\"c*\"]\nmax_parallel = 1\n\n\
             [[wave]]\nname = \"web\"\nhosts = [\"w*\"]\nmax_parallel = 2\n",
        )
        .expect("policy")
    }

    fn host(name: &str, needs: bool) -> HostRecord {
        HostRecord {
            host: name.into(),
            reboot_required_since: needs.then(|| "2026-01-01T00:00:00Z".to_owned()),
            ..HostRecord::default()
        }
    }

    fn slot(host: &str, wave: &str, rebooting_at: Option<u64>) -> RebootSlot {
        RebootSlot {
            key: format!("/f/reboot-slots/{wave}/0"),
            host: host.into(),
            wave: wave.into(),
            since: "2026-01-01T00:00:00Z".into(),
            rebooting_at,
            back_within: 600,
            kept: None,
        }
    }

    fn gate(
        me: &str,
        wave: usize,
        records: &[HostRecord],
        halts: &[RebootHalt],
        slots: &[RebootSlot],
        now: u64,
    ) -> RebootGate {
        decide(&Input {
            policy: &policy(),
            host: me,
            wave,
            records,
            unreadable: &[],
            halt: None,
            halts,
            slots,
            now,
        })
    }

    #[test]
    fn a_later_wave_waits_for_the_earlier_waves_reboots() {
        let fleet = [host("c1", true), host("w1", true), host("w2", true)];
        // The canary goes; the web hosts wait for it to reboot first.
        assert_eq!(gate("c1", 0, &fleet, &[], &[], 0), RebootGate::Go);
        let RebootGate::Wait(why) = gate("w1", 1, &fleet, &[], &[], 0) else {
            panic!("web waits")
        };
        assert_eq!(
            why,
            "waiting for wave canary to reboot first: c1 still need a reboot"
        );
        // The canary is rebooting (it holds a slot; its record expired).
        let fleet = [host("w1", true), host("w2", true)];
        let slots = [slot("c1", "canary", Some(1000))];
        let RebootGate::Wait(why) = gate("w1", 1, &fleet, &[], &slots, 1100) else {
            panic!("web waits")
        };
        assert!(
            why.contains("wave canary's hosts to be back healthy"),
            "{why}"
        );
        // Back healthy, slot given back: web goes, both of its hosts (the
        // wave's own slots are counted when one is taken).
        let slots = [slot("w2", "web", Some(1000))];
        assert_eq!(gate("w1", 1, &fleet, &[], &slots, 1100), RebootGate::Go);
    }

    #[test]
    fn a_host_not_back_healthy_halts_its_wave_and_the_later_ones() {
        let fleet = [host("c2", true), host("w1", true)];
        // Went down at 1000 with back_within 600; at 1700 it is overdue.
        let slots = [slot("c1", "canary", Some(1000))];
        // Before that, the canary wave's own slot count decides (c2 finds
        // its one slot taken when it tries to create it).
        assert_eq!(gate("c2", 0, &fleet, &[], &slots, 1500), RebootGate::Go);
        let RebootGate::Halted(why) = gate("c2", 0, &fleet, &[], &slots, 1700) else {
            panic!("halted")
        };
        assert!(
            why.starts_with("c1 went down to reboot 11m 40s ago and is not back healthy"),
            "{why}"
        );
        assert!(matches!(
            gate("w1", 1, &fleet, &[], &slots, 1700),
            RebootGate::Halted(_)
        ));
        // Kept by its host, and the halt it wrote.
        let kept = [RebootSlot {
            kept: Some("its checks failed".into()),
            ..slot("c1", "canary", Some(1000))
        }];
        let RebootGate::Halted(why) = gate("c2", 0, &fleet, &[], &kept, 1100) else {
            panic!("halted")
        };
        assert!(
            why.starts_with("c1 keeps its reboot slot: its checks failed"),
            "{why}"
        );
        // Its own kept slot holds the host that keeps it as well.
        assert!(matches!(
            gate("c1", 0, &fleet, &[], &kept, 1100),
            RebootGate::Halted(_)
        ));
        let halts = [RebootHalt {
            wave: "canary".into(),
            host: "c1".into(),
            reason: "its checks failed".into(),
            at: String::new(),
        }];
        let RebootGate::Halted(why) = gate("w1", 1, &fleet, &halts, &[], 0) else {
            panic!("halted")
        };
        assert!(
            why.starts_with("reboots of wave canary are halted by c1: its checks failed"),
            "{why}"
        );
        // A halt of a later wave does not hold an earlier one.
        let web = [RebootHalt {
            wave: "web".into(),
            ..halts[0].clone()
        }];
        assert_eq!(gate("c2", 0, &[], &web, &[], 0), RebootGate::Go);
        // A wave this policy does not know holds every wave.
        let unknown = [RebootHalt {
            wave: "old".into(),
            ..halts[0].clone()
        }];
        assert!(matches!(
            gate("c2", 0, &[], &unknown, &[], 0),
            RebootGate::Halted(_)
        ));
    }

    #[test]
    fn the_fleet_halt_and_an_unreadable_record_hold_every_reboot() {
        let halted = decide(&Input {
            policy: &policy(),
            host: "c1",
            wave: 0,
            records: &[],
            unreadable: &[],
            halt: Some("INC-42"),
            halts: &[],
            slots: &[],
            now: 0,
        });
        assert_eq!(
            halted,
            RebootGate::Halted(
                "the fleet is halted (INC-42): no host reboots until `driftless fleet resume`"
                    .into()
            )
        );
        let unreadable = ["/f/reboot-slots/canary/0".to_owned()];
        let held = decide(&Input {
            policy: &policy(),
            host: "c1",
            wave: 0,
            records: &[],
            unreadable: &unreadable,
            halt: None,
            halts: &[],
            slots: &[],
            now: 0,
        });
        let RebootGate::Wait(why) = held else {
            panic!("{held:?}")
        };
        assert!(
            why.starts_with("1 record of the fleet cannot be read (/f/reboot-slots/canary/0)"),
            "{why}"
        );
    }

    #[test]
    fn a_slot_is_placed_in_the_earlier_of_its_named_wave_and_its_hosts() {
        // c9's slot names wave web (a policy of its own), but this policy
        // puts c9 in the canaries: it holds web.
        let slots = [slot("c9", "web", None)];
        assert!(matches!(
            gate("w1", 1, &[], &[], &slots, 0),
            RebootGate::Wait(_)
        ));
        // A hand-written halt value is its own reason.
        let h = RebootHalt::read("web", b"  INC-7: hold reboots ");
        assert_eq!(
            (h.wave.as_str(), h.reason.as_str()),
            ("web", "INC-7: hold reboots")
        );
    }
}
