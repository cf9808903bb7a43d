//! How a run ended, as one word that scripts, journald, metrics and the
//! exit code all read (`result` in `--json`), and the exit codes: decided
//! here and nowhere else.

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

/// The exit codes: a contract with scripts and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Valid, in sync, or done: nothing more to do.
    Ok = 0,
    /// Invalid input or an error before any change.
    Error = 1,
    /// Changes pending (plan) or applied (converge).
    Changes = 2,
    /// The head is quarantined (or the host pinned): held at last good.
    /// `fleet wait`: the timeout passed before the commit landed.
    Held = 3,
    /// A step or a health check failed and the host was restored.
    /// `fleet wait`: the rollout of the commit halted (a host rolled it
    /// back).
    RolledBack = 4,
    /// A step failed and the host could not be restored: needs attention.
    RollbackFailed = 5,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Valid | Outcome::InSync | Outcome::Done => ExitCode::Ok,
            Outcome::ChangesPending | Outcome::Changed => ExitCode::Changes,
            Outcome::Held => ExitCode::Held,
            Outcome::RolledBack => ExitCode::RolledBack,
            Outcome::RollbackFailed => ExitCode::RollbackFailed,
            Outcome::Invalid | Outcome::Error => ExitCode::Error,
        }
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

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let code = |o| ExitCode::from(o) as u8;
        assert_eq!(code(Outcome::InSync), 0);
        assert_eq!(code(Outcome::Error), 1);
        assert_eq!(code(Outcome::Invalid), 1);
        assert_eq!(code(Outcome::Changed), 2);
        assert_eq!(code(Outcome::ChangesPending), 2);
        assert_eq!(code(Outcome::Held), 3);
        assert_eq!(code(Outcome::RolledBack), 4);
        assert_eq!(code(Outcome::RollbackFailed), 5);
    }
}
