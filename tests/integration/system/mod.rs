//! System tests on real, disposable systemd hosts (see tests/system/README.md):
//! packages, files and services (`host`), and the transactional converge
//! (`rollback`). They need root and are ignored by default:
//!
//!     cargo test --test integration system:: -- --include-ignored

mod harness;
mod host;
mod rollback;
