//! Facts about the host that templates may use. Gathered by
//! `system::facts`; here only the value type, so rendering stays pure.

use serde::Serialize;

/// What templates see as `facts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Short host name (`web1`).
    pub hostname: String,
    /// Fully qualified name (`web1.example.com`), or the short name.
    pub fqdn: String,
    /// `ID` from os-release (`rhel`, `rocky`, `almalinux`).
    pub os_id: String,
    /// `VERSION_ID` from os-release (`9.4`).
    pub os_version_id: String,
    /// Machine architecture (`x86_64`).
    pub arch: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// Online CPUs.
    pub cpus: u64,
    /// Total memory in MiB.
    pub memory_mb: u64,
}

impl Facts {
    /// The same facts as seen by another host name: used to validate other
    /// hosts' files on one machine (the config repo's CI).
    pub fn for_host(&self, name: &str) -> Facts {
        Facts {
            hostname: name.split('.').next().unwrap_or(name).to_owned(),
            fqdn: name.to_owned(),
            ..self.clone()
        }
    }
}
