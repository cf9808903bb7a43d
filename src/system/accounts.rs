//! Users and groups of the target root, read from its `/etc/passwd` and
//! `/etc/group` (not from NSS: with `--root` the names must be the target's),
//! and changed with shadow-utils (`useradd` and friends, `-R` for a root
//! other than `/`).

use std::time::Duration;

use anyhow::{Context, Result};

pub(crate) use crate::plan::observed::Accounts;

use super::command::Cmd;
use super::fsroot::{FsRoot, Observed};
use crate::cancel::Cancel;

/// The account databases shadow-utils may rewrite: what a snapshot keeps
/// before an account step, and a rollback puts back byte for byte.
pub(crate) const DATABASES: [&str; 6] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
];

/// Reads the accounts of `root`; missing files mean only `root` exists.
/// `/etc/shadow` is read only `with_shadow` (a declared password).
pub(crate) fn read(root: &FsRoot, with_shadow: bool) -> Result<Accounts> {
    let read = |p: &str| -> Result<String> {
        Ok(match root.observe(p)? {
            Observed::File { .. } => String::from_utf8_lossy(&root.read_config(p)?).into_owned(),
            _ => String::new(),
        })
    };
    let accounts = Accounts::parse(&read("/etc/passwd")?, &read("/etc/group")?);
    Ok(if with_shadow {
        accounts.with_shadow(&read("/etc/shadow")?)
    } else {
        accounts
    })
}

/// The names of this machine's groups (its `/etc/group`; none when it
/// has no such file).
pub(crate) fn local_group_names() -> Result<std::collections::BTreeSet<String>> {
    let text = match std::fs::read_to_string("/etc/group") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("failed to read /etc/group"),
    };
    Ok(Accounts::parse("", &text).group_names().cloned().collect())
}

/// Runs one account step: `program args…` (the account's name last), then
/// `chpasswd -e` with the hash on its standard input, never in an argv.
pub(crate) fn apply(
    root: &FsRoot,
    program: &str,
    args: &[String],
    password: Option<&str>,
    cancel: &Cancel,
) -> Result<()> {
    let chroot: Vec<String> = if root.is_live() {
        Vec::new()
    } else {
        vec!["-R".into(), root.path().display().to_string()]
    };
    let name = args.last().map_or("", String::as_str);
    // `usermod NAME` with nothing else to change is an error to usermod.
    // Exit 6 of groupdel and userdel: the account is already gone (userdel
    // removes a user's private group with it), which is what was asked.
    let ok: &[i32] = if matches!(program, "groupdel" | "userdel") {
        &[0, 6]
    } else {
        &[0]
    };
    if !(program == "usermod" && args.len() == 1) {
        Cmd::new(program)
            .args(&chroot)
            .args(args)
            .ok_codes(ok)
            .timeout(Duration::from_secs(120))
            .run(cancel)
            .with_context(|| format!("{program} failed for `{name}`"))?;
    }
    if let Some(hash) = password {
        Cmd::new("chpasswd")
            .arg("-e")
            .args(&chroot)
            .stdin(format!("{name}:{hash}\n").as_bytes())
            .timeout(Duration::from_secs(60))
            .run(cancel)
            .with_context(|| format!("chpasswd failed to set the password of `{name}`"))?;
    }
    Ok(())
}
