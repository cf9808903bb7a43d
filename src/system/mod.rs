//! The only code that touches the host: the filesystem under a root,
//! accounts, facts, processes, and the programs that change packages and
//! services (rpm, dnf, systemctl), all run through one subprocess helper
//! ([`command`]); and the probes of health checks.

pub mod accounts;
pub mod command;
pub mod dnf;
pub mod environment;
pub mod facts;
pub mod fsroot;
pub mod probes;
pub mod process;
pub mod rpm;
pub mod selinux;
pub mod systemctl;
pub mod trust;
