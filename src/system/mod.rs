//! The only code that touches the host: the filesystem under a root,
//! accounts, facts, processes, and the programs that change packages and
//! services (rpm, dnf, systemctl), all run through one subprocess helper
//! ([`command`]); and the probes of health checks.

pub(crate) mod accounts;
pub(crate) mod archive;
pub(crate) mod command;
pub(crate) mod dnf;
pub(crate) mod environment;
pub(crate) mod facts;
pub(crate) mod fsroot;
pub(crate) mod memory;
pub(crate) mod mounts;
pub(crate) mod probes;
pub(crate) mod process;
pub(crate) mod reboot;
pub(crate) mod rpm;
pub(crate) mod selinux;
pub(crate) mod settings;
pub(crate) mod systemctl;
pub(crate) mod systemd_bus;
pub(crate) mod trust;
