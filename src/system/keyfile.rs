//! Reading a private key file the way ssh does: refused when anyone but
//! its owner could read it or change it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The text of the private key file `path`: a regular file owned by the
/// user driftless runs as, with no permission bits for group or others.
pub fn read_private(path: &Path) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
