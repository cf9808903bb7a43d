//! The use cases: what `validate`, `plan`, `converge`, `status`,
//! `history`, `rollback`, `resume`, `retry`, `recover` and `source status`
//! do, for the command line and the daemon alike.
//!
//! Each takes an [`App`] (the validated settings and the state directory),
//! a plain request, and for runs a [`Sink`] for progress and a [`Cancel`]
//! token, and returns a typed result; rendering is the caller's business.
//! The agent's rules live in [`crate::agent::policy`]; here they meet the
//! source, the store and the engine. Within one run the agent state is read
//! once and written once (and once more right after a crash recovery, so
//! that a second crash still counts).

mod context;
mod converge;
mod facts;
mod fleet;
mod fleet_wait;
mod hooks;
mod load;
mod manage;
mod plan;
mod prune;
mod reboot;
mod reboot_fleet;
mod recovery;
mod restarts;
mod status;
mod validate;

pub use context::{App, FetchPolicy, Run, SourceRequest, Subject};
pub use converge::{ConvergeRequest, ConvergeResult, converge};
pub use facts::{FactsResult, TemplateScope, facts};
pub use fleet::{
    Blocked, FleetStatus, HostFilter, WaveStatus, fleet_halt, fleet_nudge, fleet_resume,
    fleet_status,
};
pub use fleet_wait::{FleetWait, WaitRequest, fleet_wait, named as named_hosts};
pub use load::FetchFailed;
pub use manage::{ActionResult, pause, recover, resume, retry, rollback, unpause};
pub use plan::{PlanRequest, PlanResult, plan};
pub(crate) use reboot::{
    RebootStep, ask as reboot_ask, cancel as reboot_cancel, check as reboot_check, drain_and_reboot,
};
pub use reboot_fleet::fleet_resume_reboots;
pub(crate) use restarts::{Restarts, restart_stale_services};
pub use status::{
    AgentStatus, DaemonView, GenerationDetail, SourceRef, SourceStatus, generation, history,
    source_status, status,
};
pub use validate::{ValidateResult, validate};

pub use crate::outcome::Outcome;
