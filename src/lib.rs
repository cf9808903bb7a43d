//! driftless: a pull-based GitOps agent for RHEL-family hosts.
//!
//! From pure to effectful, and the direction of every import:
//!
//! - [`desired`] (the config-repo model) and [`plan`] (desired x observed
//!   -> changes) do no I/O; [`agent`] holds the agent's state and its rules
//!   as pure functions. Each resource kind has one home,
//!   `desired/kinds/<kind>.rs`, which imports no other kind; the engine
//!   knows the few primitives they lower to, not the kinds.
//! - [`system`] is the only code that touches the host, [`source`] the only
//!   code that reads the config repo from git or the network, and [`store`]
//!   the only code that touches the state directory. None of them knows the
//!   engine or the use cases. [`fleet`] is the rollout coordination: a pure
//!   gate and the one client of etcd.
//! - [`converge`] is the engine: one transaction, with typed events into a
//!   sink and a per-run [`cancel`] token.
//! - [`app`] holds the use cases (validate, plan, converge, status, ...)
//!   with typed results; [`cli`] parses, dispatches and renders them and
//!   decides exit codes. Only `main` imports `cli`.
//! - [`dashboard`] is `driftless fleet serve`, the operator's read-only web
//!   page of the fleet: it serves what [`app`] reads from etcd, and is
//!   never the daemon (hosts open no port).
//!
//! Small leaves used across the layers: [`cancel`], [`durable`] (the one
//! atomic-write recipe), [`fault`] (crash injection in tests), [`outcome`],
//! [`random`] (jitter).

/// This driftless's version: the package's (`0.1.0-2` from an RPM build,
/// which sets `DRIFTLESS_VERSION`), else the crate's.
pub const VERSION: &str = match option_env!("DRIFTLESS_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

pub(crate) mod agent;
pub mod app;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod converge;
pub(crate) mod daemon;
pub(crate) mod dashboard;
pub mod desired;
pub(crate) mod durable;
pub(crate) mod fault;
pub(crate) mod fleet;
pub mod logging;
pub(crate) mod outcome;
pub(crate) mod plan;
pub(crate) mod random;
pub(crate) mod report;
pub mod source;
pub(crate) mod store;
pub(crate) mod system;
pub(crate) mod words;
