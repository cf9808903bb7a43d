//! `[[hook]]`: commands the admin wires to a converge's outcome (mail,
//! chat, a ticket) so that driftless needs no integrations of its own.
//!
//! A hook runs after the converge has recorded its result and let go of
//! the state lock (a hook may call `driftless status`), with what happened
//! in `DRIFTLESS_*` variables. It is bounded by its timeout, and whatever
//! it does (fails, hangs, is killed) is logged and never changes the
//! outcome or the exit code: the host's state was decided before it ran.

use std::time::Instant;

use crate::cancel::Cancel;
use crate::config::{Hook, HookOn};
use crate::outcome::Outcome;
use crate::system::command::{Cmd, REPORTED_TAIL, first_bytes};

/// Longest value of a hook's variable, in bytes.
pub(super) const ENV_VALUE_MAX: usize = 8192;

/// What a hook sees of the converge, as its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HookEnv {
    /// `DRIFTLESS_OUTCOME`: the outcome word (`changed`, `rolled_back`, ...).
    pub outcome: Outcome,
    /// `DRIFTLESS_QUARANTINED`: `1` when this converge quarantined the commit.
    pub quarantined: bool,
    /// `DRIFTLESS_COMMIT`: the commit loaded (for `--repo DIR`, the hash of
    /// the directory's content); empty when nothing was loaded.
    pub commit: String,
    /// `DRIFTLESS_GENERATION`: the generation recorded; empty if none.
    pub generation: String,
    /// `DRIFTLESS_CHANGES`: how many changes were applied (or, rolled
    /// back, attempted).
    pub changes: usize,
    /// `DRIFTLESS_DRIFTED`: resources found drifted from the applied state.
    pub drifted: usize,
    /// `DRIFTLESS_HOST`: the host name the config repo was read for.
    pub host: String,
    /// `DRIFTLESS_ERROR`: what failed; empty when nothing did.
    pub error: String,
}

impl HookEnv {
    fn vars(&self) -> [(&'static str, String); 8] {
        [
            ("DRIFTLESS_OUTCOME", self.outcome.as_str().to_owned()),
            (
                "DRIFTLESS_QUARANTINED",
                u8::from(self.quarantined).to_string(),
            ),
            ("DRIFTLESS_COMMIT", self.commit.clone()),
            ("DRIFTLESS_GENERATION", self.generation.clone()),
            ("DRIFTLESS_CHANGES", self.changes.to_string()),
            ("DRIFTLESS_DRIFTED", self.drifted.to_string()),
            ("DRIFTLESS_HOST", self.host.clone()),
            ("DRIFTLESS_ERROR", self.error.clone()),
        ]
    }
}

/// Whether `hook` runs for a converge that ended so.
pub(super) fn wanted(hook: &Hook, env: &HookEnv) -> bool {
    hook.on.iter().any(|on| match on {
        HookOn::Quarantined => env.quarantined,
        HookOn::Changed => env.outcome == Outcome::Changed,
        HookOn::InSync => env.outcome == Outcome::InSync,
        HookOn::ChangesPending => env.outcome == Outcome::ChangesPending,
        HookOn::Held => env.outcome == Outcome::Held,
        HookOn::RolledBack => env.outcome == Outcome::RolledBack,
        HookOn::RollbackFailed => env.outcome == Outcome::RollbackFailed,
        HookOn::Invalid => env.outcome == Outcome::Invalid,
        HookOn::Error => env.outcome == Outcome::Error,
    })
}

/// Runs, in order, the hooks that want this outcome. Each failure is a
/// warning in the journal; nothing is returned because nothing may depend
/// on it.
pub(super) fn run_hooks(hooks: &[Hook], env: &HookEnv) {
    // Not the run's own token: a converge rolled back because the daemon
    // is stopping is exactly what a hook should still report; each hook is
    // bounded by its timeout instead.
    let cancel = Cancel::new();
    for hook in hooks.iter().filter(|h| wanted(h, env)) {
        let Some((program, args)) = hook.argv.split_first() else {
            continue;
        };
        // As sshd refuses an authorized_keys others could write: a hook
        // runs as root, so nobody else may be able to change it.
        if let Err(e) = crate::system::trust::check_program(std::path::Path::new(program)) {
            tracing::warn!(
                hook = %hook.name,
                error = format!("{e:#}"),
                "hook {} refused: {e:#}",
                hook.name
            );
            continue;
        }
        let mut cmd = Cmd::new(program)
            .args(args)
            .timeout(hook.timeout)
            .kill_leftovers()
            .tail_only(REPORTED_TAIL);
        for (k, v) in env.vars() {
            // Bounded: one value over the kernel's limit for an argument or
            // variable (128 KiB) and the hook would not start at all.
            cmd = cmd.env(k, first_bytes(&v, ENV_VALUE_MAX));
        }
        let started = Instant::now();
        let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match cmd.run(&cancel) {
            Ok(_) => tracing::info!(
                hook = %hook.name,
                outcome = env.outcome.as_str(),
                elapsed_ms = elapsed_ms(),
                "hook ran"
            ),
            Err(e) => tracing::warn!(
                hook = %hook.name,
                outcome = env.outcome.as_str(),
                elapsed_ms = elapsed_ms(),
                error = %e,
                "hook failed; the outcome stands"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hook(on: &[HookOn]) -> Hook {
        Hook {
            name: "h".into(),
            argv: vec!["/bin/true".into()],
            on: on.to_vec(),
            timeout: Duration::from_secs(1),
        }
    }

    fn env(outcome: Outcome, quarantined: bool) -> HookEnv {
        HookEnv {
            outcome,
            quarantined,
            commit: String::new(),
            generation: String::new(),
            changes: 0,
            drifted: 0,
            host: String::new(),
            error: String::new(),
        }
    }

    #[test]
    fn a_hook_runs_on_the_outcomes_it_names_and_on_a_quarantine() {
        let h = hook(&[HookOn::RolledBack, HookOn::Quarantined]);
        assert!(wanted(&h, &env(Outcome::RolledBack, false)));
        assert!(wanted(&h, &env(Outcome::Invalid, true)));
        assert!(!wanted(&h, &env(Outcome::Invalid, false)));
        assert!(!wanted(&h, &env(Outcome::Changed, false)));
        let h = hook(&[HookOn::Changed, HookOn::Held]);
        assert!(wanted(&h, &env(Outcome::Changed, false)));
        assert!(wanted(&h, &env(Outcome::Held, false)));
        assert!(!wanted(&h, &env(Outcome::InSync, false)));
        assert!(!wanted(&h, &env(Outcome::RollbackFailed, false)));
    }
}
