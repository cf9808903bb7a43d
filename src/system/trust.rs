//! Files driftless trusts only when nobody else could have changed them,
//! the way sshd does: a private key that anyone but its owner could read
//! or change, and a program (a hook) that anyone but root could replace,
//! are refused.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The text of the private key file `path`: a regular file owned by the
/// user driftless runs as, with no permission bits for group or others.
pub(crate) fn read_private(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("failed to read key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("key file {} is not a regular file", path.display());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "key file {} is owned by uid {}, not by uid {me} that driftless runs as; chown it",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {mode:04o}: group and others must have no access (chmod 0600 {})",
            path.display(),
            path.display()
        );
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("failed to read key file {}", path.display()))
}

/// Checks that only root (or the user driftless runs as) could have
/// written the program `path`: the file, what it links to, and every
/// directory above it are owned by one of them and not writable by group
/// or others (a directory with the sticky bit, such as /tmp, excepted:
/// there nobody else may replace a file they do not own).
pub(crate) fn check_program(path: &Path) -> Result<()> {
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot find the program {}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    let mut checked = Some(real.as_path());
    let mut first = true;
    while let Some(p) = checked {
        let meta =
            std::fs::metadata(p).with_context(|| format!("failed to inspect {}", p.display()))?;
        let mode = meta.mode() & 0o7777;
        let what = if first {
            "the program"
        } else {
            "the directory"
        };
        if meta.uid() != 0 && meta.uid() != me {
            bail!(
                "{what} {} is owned by uid {}: only root may own a program driftless runs as root (and the directories above it)",
                p.display(),
                meta.uid()
            );
        }
        let sticky_dir = !first && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_dir {
            bail!(
                "{what} {} has mode {mode:04o}: group or others could change what driftless runs as root (chmod go-w {})",
                p.display(),
                p.display()
            );
        }
        if first && !meta.is_file() {
            bail!("the program {} is not a regular file", p.display());
        }
        first = false;
        checked = p.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_program_others_could_change_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let hook = d.path().join("hook.sh");
        std::fs::write(&hook, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        check_program(&hook).expect("a root-owned 0755 program in a 0700 dir");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o757)).expect("chmod");
        let err = format!("{:#}", check_program(&hook).expect_err("others may write"));
        assert!(err.contains("the program") && err.contains("0757"), "{err}");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = format!(
            "{:#}",
            check_program(&hook).expect_err("others may replace")
        );
        assert!(
            err.contains("the directory") && err.contains("0777"),
            "{err}"
        );
        // Sticky, as /tmp: others cannot replace root's file.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        check_program(&hook).expect("a sticky directory");
        assert!(check_program(&d.path().join("missing")).is_err());
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let key = d.path().join("age.key");
        std::fs::write(&key, "AGE-SECRET-KEY-1\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_private(&key).expect_err("0644 refused").to_string();
        assert!(err.contains("has mode 0644"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_private(&key).expect("0600 read"), "AGE-SECRET-KEY-1\n");
        assert!(read_private(&d.path().join("missing")).is_err());
        assert!(read_private(d.path()).is_err());
    }
}
