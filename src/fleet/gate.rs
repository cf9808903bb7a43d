//! The rollout gate: may this host apply a new commit now? Pure: it takes
//! the policy the host has applied, the fleet's records and the time, and
//! says apply, wait (and for what), or halted (and why).
//!
//! Fail closed: a record that cannot be read might be the one holding a
//! rollback, so it holds the gate like a rollback would; and a rollback
//! counts whether it is read from the live record of the host that made
//! it or from the fleet's own memory of it (the host may be gone).
//!
//! Every host is put in its wave by the policy in force here (by its name
//! and roles), never by the wave its record names: a commit that deletes
//! `fleet.toml` would otherwise move the canaries that applied it out of
//! the canary wave, and an empty wave holds nothing back.

use std::collections::BTreeMap;

use crate::desired::fleet::{FleetPolicy, Threshold};

use super::record::{HostRecord, Rollback};

/// What the gate says about one candidate commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Apply it.
    Apply,
    /// Not yet: an earlier wave has not run it long enough, healthily, on
    /// enough hosts, the window is closed, or a record cannot be read.
    Wait(Reason, String),
    /// Not at all: the fleet is halted, or the rollout of this commit is.
    Halted(Reason, String),
}

/// Why the gate holds, in one word (`driftless_rollout_blocked{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Earlier waves have not run it healthily for their soak.
    Soak,
    /// Outside the maintenance window.
    Window,
    /// The fleet is halted.
    Halt,
    /// Rolled back by more hosts than allowed.
    Failed,
    /// A record of the fleet cannot be read.
    Unreadable,
}

impl Reason {
    /// The word for metrics and JSON.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Reason::Soak => "soak",
            Reason::Window => "window",
            Reason::Halt => "halt",
            Reason::Failed => "failed",
            Reason::Unreadable => "unreadable",
        }
    }
}

// The tests read a gate by its reason's word.
#[cfg(test)]
impl Gate {
    /// The word for metrics and JSON (`driftless_rollout_blocked{reason}`).
    pub(crate) fn reason_word(&self) -> Option<&'static str> {
        match self {
            Gate::Apply => None,
            Gate::Wait(r, _) | Gate::Halted(r, _) => Some(r.word()),
        }
    }
}

/// What the gate reads.
pub(crate) struct Input<'a> {
    /// The policy of the commit this host has applied.
    pub policy: &'a FleetPolicy,
    /// This host's wave.
    pub wave: usize,
    /// The commit it would apply.
    pub candidate: &'a str,
    /// The live hosts' records (this host's own among them or not).
    pub records: &'a [HostRecord],
    /// The fleet's own memory of the rollbacks of `candidate`, kept
    /// without a lease: they outlive the hosts that made them.
    pub rollbacks: &'a [Rollback],
    /// Keys of records that exist but cannot be read.
    pub unreadable: &'a [String],
    /// The fleet-wide stop, with its reason, when set.
    pub halt: Option<&'a str>,
    /// Now, in seconds since the epoch.
    pub now: u64,
    /// Whether a maintenance window is open for this host (or none is set).
    pub window_open: bool,
    /// Whether the first commit descends from the second (a host on a
    /// newer commit has applied the older one too).
    pub descends: &'a dyn Fn(&str, &str) -> bool,
}

/// Decides.
pub(crate) fn decide(i: &Input<'_>) -> Gate {
    let wave_of = |host: &str, roles: &[String]| i.policy.wave_of(host, roles);
    if let Some(reason) = i.halt {
        return Gate::Halted(
            Reason::Halt,
            format!(
                "the fleet is halted ({reason}): no host applies a new commit until `driftless fleet resume`"
            ),
        );
    }
    let short = &i.candidate[..i.candidate.len().min(12)];
    if !i.unreadable.is_empty() {
        let keys: Vec<&str> = i.unreadable.iter().map(String::as_str).collect();
        return Gate::Wait(
            Reason::Unreadable,
            format!(
                "{} of the fleet cannot be read ({}): it may hold a rollback of {short}, so no new commit is applied until its host rewrites it or an operator deletes it",
                crate::words::count(i.unreadable.len(), "record"),
                super::first_few(&keys),
            ),
        );
    }
    let waves = i.policy.waves.len();
    for j in 0..=waves {
        let name = i.policy.wave_name(j);
        let live: Vec<&HostRecord> = i
            .records
            .iter()
            .filter(|r| wave_of(&r.host, &r.roles) == j)
            .collect();
        // Who rolled it back, by host: from the live records and from the
        // fleet's memory (a host whose record expired still counts).
        let mut failed: BTreeMap<&str, &str> = BTreeMap::new();
        for r in &live {
            if let Some(b) = r.rolled_back.iter().find(|b| b.commit == i.candidate) {
                failed.insert(&r.host, &b.reason);
            }
        }
        for b in i
            .rollbacks
            .iter()
            .filter(|b| b.wave == name && b.commit == i.candidate)
        {
            failed.entry(&b.host).or_insert(&b.reason);
        }
        let known = live
            .iter()
            .filter(|r| !failed.contains_key(r.host.as_str()))
            .count()
            + failed.len();
        let allowed = i
            .policy
            .waves
            .get(j)
            .map_or(Threshold::Count(0), |w| w.max_failed)
            .at_most(known);
        if failed.len() > allowed {
            let (host, reason) = failed.iter().next().map_or(("", ""), |(h, r)| (*h, *r));
            return Gate::Halted(
                Reason::Failed,
                format!(
                    "the rollout of {short} is halted: {} of {known} hosts of wave {name} rolled it back (allowed {allowed}), {host} first: {reason}",
                    failed.len(),
                ),
            );
        }
    }
    for (j, w) in i.policy.waves.iter().enumerate().take(i.wave) {
        let live: Vec<&HostRecord> = i
            .records
            .iter()
            .filter(|r| wave_of(&r.host, &r.roles) == j)
            .collect();
        let soaked = live
            .iter()
            .filter(|r| {
                r.applied
                    .as_deref()
                    .is_some_and(|a| a == i.candidate || (i.descends)(a, i.candidate))
                    && r.healthy_since
                        .is_some_and(|s| s + w.soak.as_secs() <= i.now)
            })
            .count();
        let need = w.min_healthy.at_least(live.len());
        if soaked < need {
            return Gate::Wait(
                Reason::Soak,
                format!(
                    "waiting for wave {} ({j}): {soaked} of {} live hosts run {short} healthy for {} (need {need}, min_healthy {})",
                    w.name,
                    live.len(),
                    humantime::format_duration(w.soak),
                    w.min_healthy
                ),
            );
        }
    }
    if !i.window_open {
        return Gate::Wait(
            Reason::Window,
            format!(
                "outside the maintenance window of wave {}: {short} waits for it",
                i.policy.wave_name(i.wave)
            ),
        );
    }
    Gate::Apply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fleet::parse;
    use crate::fleet::record::RolledBack;

    fn policy() -> FleetPolicy {
        parse(
            "[[wave]]\nname = \"canary\"\nhosts = [\"c*\"]\nmin_healthy = 2\nsoak = \"10m\"\n\n\
             [[wave]]\nname = \"web\"\nhosts = [\"w*\"]\nmin_healthy = \"50%\"\nmax_failed = 1\n",
        )
        .expect("policy")
    }

    fn host(name: &str, wave: &str, applied: Option<&str>, since: u64) -> HostRecord {
        HostRecord {
            host: name.into(),
            wave: wave.into(),
            applied: applied.map(str::to_owned),
            healthy_since: applied.map(|_| since),
            ..HostRecord::default()
        }
    }

    fn gate(wave: usize, records: &[HostRecord], now: u64) -> Gate {
        decide(&Input {
            policy: &policy(),
            wave,
            candidate: "c2",
            records,
            rollbacks: &[],
            unreadable: &[],
            halt: None,
            now,
            window_open: true,
            descends: &|a, b| a == "c3" && b == "c2",
        })
    }

    #[test]
    fn a_wave_waits_for_the_earlier_ones_to_soak() {
        let fleet = [
            host("c1", "canary", Some("c2"), 1000),
            host("c2", "canary", Some("c1"), 0),
            host("w1", "web", Some("c1"), 0),
        ];
        // The canaries always may.
        assert_eq!(gate(0, &fleet, 1000), Gate::Apply);
        // One of two canaries runs it: web waits.
        let Gate::Wait(Reason::Soak, why) = gate(1, &fleet, 5000) else {
            panic!("web should wait")
        };
        assert!(
            why.contains("1 of 2 live hosts run c2 healthy for 10m (need 2"),
            "{why}"
        );
        // Both run it (one on a newer commit), but not for 10 minutes yet.
        let fleet = [
            host("c1", "canary", Some("c2"), 1000),
            host("c2", "canary", Some("c3"), 1300),
            host("w1", "web", Some("c1"), 0),
        ];
        assert!(matches!(gate(1, &fleet, 1700), Gate::Wait(..)));
        assert_eq!(gate(1, &fleet, 1900), Gate::Apply);
        // The implicit last wave waits for web too: half of web (1 of 1).
        assert!(matches!(gate(2, &fleet, 1900), Gate::Wait(..)));
    }

    #[test]
    fn rollbacks_beyond_max_failed_halt_the_rollout_and_halt_stops_everything() {
        let mut c1 = host("c1", "canary", Some("c1"), 0);
        c1.rolled_back.push(RolledBack {
            commit: "c2".into(),
            reason: "check web failed".into(),
            at: 5,
        });
        let fleet = [c1, host("c2", "canary", Some("c2"), 0)];
        let Gate::Halted(Reason::Failed, why) = gate(0, &fleet, 10_000) else {
            panic!("halted")
        };
        assert!(
            why.contains(
                "1 of 2 hosts of wave canary rolled it back (allowed 0), c1 first: check web failed"
            ),
            "{why}"
        );
        let halted = decide(&Input {
            policy: &policy(),
            wave: 0,
            candidate: "c2",
            records: &[],
            rollbacks: &[],
            unreadable: &[],
            halt: Some("incident 42"),
            now: 0,
            window_open: true,
            descends: &|_, _| false,
        });
        assert_eq!(halted.reason_word(), Some("halt"));
        let closed = decide(&Input {
            policy: &policy(),
            wave: 0,
            candidate: "c2",
            records: &[],
            rollbacks: &[],
            unreadable: &[],
            halt: None,
            now: 0,
            window_open: false,
            descends: &|_, _| false,
        });
        assert_eq!(closed.reason_word(), Some("window"));
    }

    /// Regression: a canary rolled a commit back, then its record expired
    /// with its lease, and the next wave applied the commit. The fleet's
    /// own memory of the rollback holds it, with or without the record.
    #[test]
    fn a_rollback_holds_after_the_record_of_its_host_is_gone() {
        let memory = [Rollback {
            host: "c1".into(),
            wave: "canary".into(),
            roles: Vec::new(),
            commit: "c2".into(),
            reason: "check web failed".into(),
            at: 5,
        }];
        // c1's record expired; only c2 is live in the canary wave.
        let fleet = [host("c2", "canary", Some("c1"), 0)];
        let decided = decide(&Input {
            policy: &policy(),
            wave: 1,
            candidate: "c2",
            records: &fleet,
            rollbacks: &memory,
            unreadable: &[],
            halt: None,
            now: 10_000,
            window_open: true,
            descends: &|_, _| false,
        });
        let Gate::Halted(Reason::Failed, why) = decided else {
            panic!("{decided:?}")
        };
        assert!(
            why.contains(
                "1 of 2 hosts of wave canary rolled it back (allowed 0), c1 first: check web failed"
            ),
            "{why}"
        );
    }

    /// Regression: a record overwritten with garbage was skipped, so the
    /// rollback it held was forgotten. A record that cannot be read holds
    /// every new commit.
    #[test]
    fn an_unreadable_record_holds_the_gate() {
        let unreadable = ["/fleet/hosts/c1".to_owned()];
        let decided = decide(&Input {
            policy: &policy(),
            wave: 0,
            candidate: "c2",
            records: &[],
            rollbacks: &[],
            unreadable: &unreadable,
            halt: None,
            now: 0,
            window_open: true,
            descends: &|_, _| false,
        });
        assert_eq!(decided.reason_word(), Some("unreadable"));
        let Gate::Wait(_, why) = decided else {
            panic!("{decided:?}")
        };
        assert!(
            why.contains("1 record of the fleet cannot be read (/fleet/hosts/c1)"),
            "{why}"
        );
    }
}
