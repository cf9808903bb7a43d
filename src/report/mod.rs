//! What the world outside sees of a run: journald entries with fixed
//! `MESSAGE_ID`s ([`journal`]) and the Prometheus textfile ([`metrics`]).
//! Fed by the engine's events and the use cases' results; it changes
//! nothing on the host and decides nothing.

pub(crate) mod journal;
pub(crate) mod metrics;
