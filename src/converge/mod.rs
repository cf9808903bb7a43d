//! The converge engine: observe -> plan -> snapshot -> apply -> check ->
//! commit, or roll back.
//!
//! The one place that ties the desired state, the planner and the host
//! together, as a transaction: nothing changes the host before a snapshot
//! of everything the plan (or a package) may touch is durable in a new
//! generation; any failed step or health check restores that snapshot; a
//! generation left unfinished by a crash is rolled back by [`recover`]
//! before anything else happens.
//!
//! The engine is a library: it reports progress as typed [`events`] into a
//! [`Sink`] and stops forward work when the run's [`Cancel`] token asks,
//! so the command line and the daemon drive it the same way. What to do
//! with the desired state (hold, quarantine, pin) is decided above it
//! (`agent::policy`, `app`).

pub(crate) mod apply;
pub(crate) mod checks;
pub(crate) mod commands;
pub(crate) mod downloads;
pub(crate) mod events;
pub(crate) mod keep_rpms;
pub(crate) mod observe;
pub(crate) mod recover;
pub(crate) mod snapshot;
pub(crate) mod transaction;

pub use events::{Discard, Event, Log, Sink, Tee};
pub use observe::{PrepareError, Prepared, prepare};
pub use recover::{Cut, Recovered, recover, undo};
pub use snapshot::{edit_undo, prior_of};
pub use transaction::{Engine, Outcome, RunInfo, check_health, open_root, transact};
