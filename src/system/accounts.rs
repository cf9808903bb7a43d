//! Users and groups of the target root, read from its `/etc/passwd` and
//! `/etc/group` (not from NSS: with `--root` the names must be the target's).

use anyhow::Result;

pub use crate::plan::observed::Accounts;

use super::fsroot::{FsRoot, Observed};

/// Reads the accounts of `root`; missing files mean only `root` exists.
pub fn read(root: &FsRoot) -> Result<Accounts> {
    let read = |p: &str| -> Result<String> {
        Ok(match root.observe(p)? {
            Observed::File { .. } => String::from_utf8_lossy(&root.read_file(p)?).into_owned(),
            _ => String::new(),
        })
    };
    Ok(Accounts::parse(&read("/etc/passwd")?, &read("/etc/group")?))
}
