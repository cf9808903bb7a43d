//! System tests on real, disposable systemd hosts (see tests/system/README.md):
//! packages, files and services (`host`), the transactional converge
//! (`rollback`), units as RHEL ships them (`units`), a firewalld zone in a
//! network namespace of its own (`firewall`), and the daemon
//! installed from its RPM (`daemon`); reboots, alone (`reboots`) and
//! coordinated through etcd (`fleet_reboots`); the package, rollback and blame
//! tests again on dnf 5 and rpm 6 (`dnf5`). They need root and are ignored by
//! default:
//!
//!     cargo test --test integration system:: -- --include-ignored

mod accounts;
mod blame;
mod daemon;
mod dnf5;
mod edits;
mod firewall;
mod fleet_reboots;
mod floor;
mod hardening;
mod harness;
mod host;
mod keys;
mod prune;
mod reboots;
mod resources;
mod restarts;
mod rollback;
mod units;
