//! How a run ended, as one word that scripts, journald, metrics and the
//! exit code all read (`result` in `--json`).

use serde::{Deserialize, Serialize};

/// The outcome word of a run, stable for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The config repo is valid.
    Valid,
    /// The config repo is invalid.
    Invalid,
    /// Nothing to change.
    InSync,
    /// Changes pending (plan, dry run, audit).
    ChangesPending,
    /// Changes applied.
    Changed,
    /// A command other than validate/plan/converge did its job.
    Done,
    /// The head is quarantined or the host pinned: held where it is.
    Held,
    /// A step failed and the host was restored.
    RolledBack,
    /// A step failed and the restore failed too.
    RollbackFailed,
    /// Stopped by an error before any change.
    Error,
}

impl Outcome {
    /// The word itself (`in_sync`, `rolled_back`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::InSync => "in_sync",
            Outcome::ChangesPending => "changes_pending",
            Outcome::Changed => "changed",
            Outcome::Done => "done",
            Outcome::Held => "held",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::Error => "error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_is_the_json_word() {
        for o in [
            Outcome::Valid,
            Outcome::Invalid,
            Outcome::InSync,
            Outcome::ChangesPending,
            Outcome::Changed,
            Outcome::Done,
            Outcome::Held,
            Outcome::RolledBack,
            Outcome::RollbackFailed,
            Outcome::Error,
        ] {
            assert_eq!(
                serde_json::to_value(o).expect("serialize"),
                serde_json::Value::String(o.as_str().to_owned())
            );
        }
    }
}
