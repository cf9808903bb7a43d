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
    /// Since when the host needs a reboot (RFC 3339), as its daemon last
    /// found; absent: it does not, or records older than reboots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_required_since: Option<String>,
    /// When it was last seen back, healthy, from a reboot driftless asked
    /// for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebooted_at: Option<String>,
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
