//! What each host publishes under `<prefix>/hosts/<host>`, on a lease: gone
//! with its host.

use serde::{Deserialize, Serialize};

/// Rollbacks remembered per host (the newest first).
pub(crate) const ROLLBACKS_KEPT: usize = 5;

/// One host's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Host name.
    pub host: String,
    /// Its wave (by the policy it has applied; shown, never used by the
    /// gate of another host, which places it by its own policy).
    pub wave: String,
    /// Its roles (by the commit it has applied), so that another host's
    /// policy can place it in a wave.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The commit it runs, applied and healthy (its last good state).
    pub applied: Option<String>,
    /// Since when it runs `applied` healthily (seconds since the epoch).
    pub healthy_since: Option<u64>,
    /// The last converge's outcome word (`changed`, `in_sync`, `held`,
    /// `rolled_back`, …).
    pub outcome: String,
    /// When the record was written (seconds since the epoch).
    pub at: u64,
    /// Commits it rolled back, the newest first.
    pub rolled_back: Vec<RolledBack>,
    /// What a new commit waits for on this host, if it waits.
    pub waiting: Option<String>,
    /// driftless's version.
    pub version: String,
    /// The inventory: the OS (`ID VERSION_ID` of os-release).
    #[serde(default)]
    pub os: String,
    /// The running kernel's release.
    #[serde(default)]
    pub kernel: String,
    /// Why the host is paused (`driftless pause`), by whom and since when.
    #[serde(default)]
    pub paused: Option<String>,
    /// Drift found (and healed) at the last run.
    #[serde(default)]
    pub drift: Drift,
    /// The last run's error (its first line, cut), when it failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Since when the host needs a reboot (RFC 3339), as its daemon last
    /// found; absent: it does not, or records older than reboots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_required_since: Option<String>,
    /// When it was last seen back, healthy, from a reboot driftless asked
    /// for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebooted_at: Option<String>,
    /// The new commit it is applying now (written when the gate let it
    /// through, cleared by the record written after the run, whatever its
    /// end): the dashboard's "applying". Absent otherwise, and in records
    /// older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applying: Option<String>,
    /// Since when it holds a reboot slot (RFC 3339): taken before the
    /// drain, given back once it is back healthy; absent: not rebooting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebooting_since: Option<String>,
}

/// Drift a run found: how much, and the first few resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Resources that had drifted.
    pub count: usize,
    /// The first [`DRIFT_SHOWN`] of them (`file:/etc/motd`).
    pub resources: Vec<String>,
}

/// Drifted resources a record names, at most.
pub(crate) const DRIFT_SHOWN: usize = 5;
/// Longest text of one field of the inventory (an error, a reason, a
/// resource): a record stays a few hundred bytes, whatever happens.
pub(crate) const TEXT_MAX: usize = 240;

/// `text`, cut to its first line and [`TEXT_MAX`] characters.
pub(crate) fn bounded(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(TEXT_MAX).collect();
    if line.chars().count() > TEXT_MAX || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// What a host keeps of its own membership (`fleet.json` in its state
/// directory): its lease and the record it last published.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The etcd lease its record (and any rollout slot) is attached to.
    pub lease: Option<i64>,
    /// The record as last published.
    pub record: HostRecord,
    /// The fleet-wide stop as this host last read it (its reason), for
    /// `status` on every host, also those that wait for nothing.
    #[serde(default)]
    pub halt: Option<String>,
}

/// A commit a host rolled back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The commit.
    pub commit: String,
    /// Why (the converge's error).
    pub reason: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

/// A rollback as the fleet remembers it: `<prefix>/rollbacks/<host>/<commit>`,
/// written by the host that rolled the commit back, without a lease, so
/// that the rollout stays halted after that host (and its record) is gone.
/// Each host keeps its newest [`ROLLED_BACK_COMMITS_KEPT`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rollback {
    /// The host that rolled it back.
    pub host: String,
    /// Its wave then.
    pub wave: String,
    /// Its roles then.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The commit.
    pub commit: String,
    /// Why (the converge's error).
    pub reason: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

/// Rollbacks each host keeps in the fleet's memory: a commit older than
/// its newest this many rolled-back ones is long superseded.
pub(crate) const ROLLED_BACK_COMMITS_KEPT: usize = 32;

impl HostRecord {
    /// Sets the reboot fields from the host's reboot record: since when a
    /// reboot is required, the last one seen through, and since when it
    /// holds a reboot slot.
    pub(crate) fn reboot_from(&mut self, r: Option<&crate::agent::reboot::RebootRecord>) {
        self.reboot_required_since = r.and_then(|r| r.required_since.clone());
        self.rebooted_at = r.and_then(|r| r.rebooted.as_ref().map(|b| b.at.clone()));
        self.rebooting_since = r.and_then(|r| r.slot.as_ref().map(|s| s.at.clone()));
    }

    /// Notes a rollback of `commit`, keeping the newest few.
    pub fn rolled_back(&mut self, commit: &str, reason: &str, at: u64) {
        self.rolled_back.retain(|r| r.commit != commit);
        self.rolled_back.insert(
            0,
            RolledBack {
                commit: commit.to_owned(),
                reason: reason.to_owned(),
                at,
            },
        );
        self.rolled_back.truncate(ROLLBACKS_KEPT);
    }
}

/// What `driftless fleet nudge` writes under `<prefix>/nudge`: any put of
/// the key wakes the daemons (an `etcdctl put <prefix>/nudge x` too);
/// this says who asked and for which commit, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NudgeValue {
    /// The commit pushed, when given.
    #[serde(default)]
    pub commit: Option<String>,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: String,
    /// Who (the user that ran `fleet nudge`).
    #[serde(default)]
    pub by: String,
}

/// Longest commit text taken from a nudge.
const NUDGE_COMMIT_MAX: usize = 64;

impl NudgeValue {
    /// The nudge a value stands for: its JSON, else (written by hand) one
    /// that names nothing. The commit is cut to a length a log line takes.
    pub(crate) fn read(value: &[u8]) -> NudgeValue {
        let mut v: NudgeValue = serde_json::from_slice(value).unwrap_or_default();
        v.commit = v
            .commit
            .map(|c| c.chars().take(NUDGE_COMMIT_MAX).collect::<String>())
            .filter(|c| !c.is_empty());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written before the inventory (and a host's `fleet.json`
    /// holding one) still reads: the new fields take their defaults.
    #[test]
    fn a_record_of_the_old_shape_reads() {
        let old = r#"{"host":"web01","wave":"canary","roles":[],"applied":"a1","healthy_since":5,"outcome":"changed","at":7,"rolled_back":[],"waiting":null,"version":"0.1.0"}"#;
        let r: HostRecord = serde_json::from_str(old).expect("old record");
        assert_eq!(r.host, "web01");
        assert_eq!(
            (r.drift.count, r.os.as_str(), r.paused.as_deref()),
            (0, "", None)
        );
        assert_eq!(r.applying, None);
        let member = format!(r#"{{"lease":42,"record":{old}}}"#);
        let m: Member = serde_json::from_str(&member).expect("old fleet.json");
        assert_eq!(m.record, r);
    }

    #[test]
    fn inventory_texts_are_bounded_and_nudges_read_leniently() {
        let long = "x".repeat(1000);
        assert_eq!(bounded(&long).chars().count(), TEXT_MAX + 1);
        assert_eq!(bounded("first\nsecond"), "first…");
        assert_eq!(NudgeValue::read(b"x").commit, None);
        let v = NudgeValue::read(br#"{"commit":"abc","at":"now","by":"ci"}"#);
        assert_eq!(v.commit.as_deref(), Some("abc"));
    }
}
