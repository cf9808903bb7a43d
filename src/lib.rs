//! driftless: a pull-based GitOps agent for RHEL-family hosts.

pub mod desired;
pub mod system;
