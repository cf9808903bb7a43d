//! `driftless daemon`: the systemd service that converges the host on a
//! schedule, heals drift on every tick, and answers `driftless converge
//! --now` and `driftless status` on its control socket.
//!
//! [`machine`] is the loop as an explicit, pure state machine;
//! [`schedule`] the splay, jitter and backoff arithmetic; [`runtime`] the
//! process around them (tokio, signals, the socket, sd-notify);
//! [`protocol`] the socket's JSON lines, shared with the client in `cli`;
//! [`nudge`] the watch of the fleet's nudge key (with `[fleet]`).

pub(crate) mod machine;
mod notify;
mod nudge;
pub(crate) mod protocol;
pub(crate) mod runtime;
pub(crate) mod schedule;

pub(crate) use runtime::{Options, run};
