//! driftless: a pull-based GitOps agent for RHEL-family hosts.
//!
//! Layers, from pure to effectful: [`desired`] (the config-repo model) and
//! [`plan`] (desired x observed -> changes) do no I/O; [`system`] is the only
//! code that touches the host and [`source`] the only code that reads the
//! config repo; [`converge`] ties them together; [`cli`] is the command line.

pub mod agent_config;
pub mod cli;
pub mod converge;
pub mod desired;
pub mod fault;
pub mod generations;
pub mod health;
pub mod lastgood;
pub mod logging;
pub mod objects;
pub mod plan;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod system;
