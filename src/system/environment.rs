//! Whether a failure is the host's fault rather than the desired state's.
//!
//! Only what the desired state is to blame for is quarantined (a check that
//! fails, a unit that does not start, a scriptlet that fails, a package
//! that conflicts or does not exist even after a fresh metadata refresh).
//! A converge that fails because of the environment (not root, permission
//! denied, a full disk, a read-only filesystem, dnf's lock held too long, a
//! repository out of reach, a command that could not run or timed out) is
//! rolled back and tried again on the next run: holding a good commit
//! against it would teach operators to switch driftless off.
//! docs/rollback.md has the table.

use nix::errno::Errno;

use super::command::CommandError;

/// A failure the host is to blame for, with the words to show for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Environment(pub String);

/// What dnf, rpm and systemctl say when the machine, not the request, is
/// the problem.
const ENVIRONMENT_SAYS: &[&str] = &[
    // A repository out of reach.
    "Failed to download metadata",
    "Cannot download repomd.xml",
    "Errors during downloading metadata",
    "Cannot retrieve repository metadata",
    "Failed to synchronize cache",
    "Curl error",
    "Could not resolve host",
    "Couldn't resolve host",
    "Failed to connect to",
    "Connection refused",
    "Operation timed out",
    // The disk, the permissions, the database.
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
    "[Errno 13]",
    "[Errno 28]",
    "cannot open Packages database",
    "Failed to obtain the transaction lock",
    "waiting for process with pid",
    // systemd itself.
    "Failed to connect to bus",
    "Access denied",
];

fn errno_is_environment(e: Errno) -> bool {
    matches!(
        e,
        Errno::EACCES
            | Errno::EPERM
            | Errno::ENOSPC
            | Errno::EDQUOT
            | Errno::EROFS
            | Errno::EIO
            | Errno::EBUSY
            | Errno::ETXTBSY
    )
}

/// Whether the environment is to blame for `error` (anywhere in its chain).
pub(crate) fn is_to_blame(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if cause.is::<Environment>() {
            return true;
        }
        if let Some(e) = cause.downcast_ref::<Errno>() {
            return errno_is_environment(*e);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return e
                .raw_os_error()
                .is_some_and(|n| errno_is_environment(Errno::from_raw(n)));
        }
        match cause.downcast_ref::<CommandError>() {
            Some(CommandError::Failed { tail, .. }) => {
                ENVIRONMENT_SAYS.iter().any(|s| tail.contains(s))
            }
            Some(
                CommandError::Spawn { .. }
                | CommandError::Timeout { .. }
                | CommandError::Interrupted { .. }
                | CommandError::TooMuchOutput { .. },
            ) => true,
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn failed(tail: &str) -> anyhow::Error {
        anyhow::Error::new(CommandError::Failed {
            argv: "dnf -y install x".into(),
            code: 1,
            tail: tail.into(),
        })
        .context("dnf transaction failed")
    }

    #[test]
    fn the_environment_and_the_desired_state_are_told_apart() {
        // The environment's fault: tried again next run.
        for e in [
            failed(
                "Error: Failed to download metadata for repo 'internal': Cannot download repomd.xml",
            ),
            failed("Error: [Errno 28] No space left on device"),
            // dnf 5.4's words.
            failed(
                ">>> Curl error (37): Could not read a file:// file for file:///srv/no-such-repo/repodata/repomd.xml | >>> Usable URL not found | Failed to download metadata (baseurl: \"file:///srv/no-such-repo\") for repository \"gone\": Usable URL not found",
            ),
            anyhow::Error::new(Errno::EACCES).context("failed to write /etc/motd"),
            anyhow::Error::new(std::io::Error::from_raw_os_error(28))
                .context("failed to write /etc/x"),
            anyhow::Error::new(Environment("dnf is busy".into())),
            anyhow::Error::new(CommandError::Timeout {
                argv: "dnf".into(),
                timeout: std::time::Duration::from_secs(1),
            }),
        ] {
            assert!(is_to_blame(&e), "{e:#}");
        }
        // The desired state's: quarantined.
        for e in [
            failed("Error: Unable to find a match: dl-nonexist"),
            failed("Error in PREIN scriptlet in rpm package dl-failpre"),
            // dnf 5.4's words.
            failed("Failed to resolve the transaction: | No match for argument: dl-nonexist"),
            failed(
                ">>> Error in %pre scriptlet: dl-failpre-0:1.0-1.noarch | >>> Scriptlet output:",
            ),
            failed(
                "Problem: problem with installed package | - installed package dl-conflict-a-1.0-1.noarch conflicts with dl-conflict-a provided by dl-conflict-b-1.0-1.noarch from driftless-test",
            ),
            failed("Error: Transaction test error: file /x conflicts between attempted installs"),
            anyhow::anyhow!("health check failed: check `web` failed 3 time(s)"),
            anyhow::Error::new(Errno::EISDIR).context("failed to write /etc/motd"),
        ] {
            assert!(!is_to_blame(&e), "{e:#}");
        }
        // Context on top of an environment cause does not hide it.
        let deep: anyhow::Result<()> = Err(anyhow::Error::new(Errno::ENOSPC));
        let deep = deep.context("a").context("b").unwrap_err();
        assert!(is_to_blame(&deep));
    }
}
