//! Crash recovery at the start of a run, and what it means for the agent.

use anyhow::Result;

use super::context::App;
use crate::agent::{AgentState, now, policy, short};
use crate::cancel::Cancel;
use crate::converge::{Cut, Recovered, Sink};
use crate::system::fsroot::FsRoot;

/// What a crash recovery found, for the result of the run it started.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// What was found and done, for the operator.
    pub(super) notes: Vec<String>,
    /// A restore that failed: the run must stop here.
    pub(super) failed: Option<String>,
    /// The agent state was written (with everything the run had put in it
    /// so far).
    pub(super) saved: bool,
}

/// Rolls back what a crash left unfinished under `root`, and records each
/// interruption in `state` (saved at once, so a second crash still counts).
pub(super) fn recover_into(
    app: &App,
    root: &FsRoot,
    state: &mut AgentState,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Recovery> {
    let recovered: Vec<Recovered> = crate::converge::recover(&app.engine(root), sink, cancel)?;
    let mut out = Recovery::default();
    if recovered.is_empty() {
        return Ok(out);
    }
    for r in &recovered {
        let g = &r.generation;
        let what = match r.cut {
            Cut::FailedRestore => "had failed to restore",
            _ => "was cut short by a crash",
        };
        out.notes.push(format!(
            "generation {} (of {}) {what}; {}",
            g.id,
            short(&g.key),
            if r.restored {
                "the host was restored to its state before it"
            } else {
                "RESTORING IT FAILED"
            }
        ));
        if !r.restored {
            out.failed = Some(format!(
                "recovery of generation {} failed; still different: {}",
                g.id,
                r.differences.join("; ")
            ));
        }
        // A restore tried again says nothing new about the desired state.
        if r.cut == Cut::FailedRestore {
            continue;
        }
        policy::interrupted(
            state,
            &policy::Interruption {
                generation: g.id,
                key: &g.key,
                source: &g.source,
                was_undo: r.cut == Cut::Undo,
            },
            &now(),
        );
    }
    app.store.save_state(state)?;
    out.saved = true;
    Ok(out)
}
