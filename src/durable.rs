//! The one recipe for writing a file so that a crash leaves the old bytes
//! or the new ones, never a mix: a temporary file in the same directory,
//! write, owner/group/mode, fsync, rename over the target, fsync of the
//! directory.
//!
//! Both the host side (`system::fsroot`, which resolves a directory inside
//! a root first) and the state directory (`store`) write through it.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};

/// Owner, group and permission bits of a file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
}

impl Perms {
    /// Owned by the running process, readable and writable by it only:
    /// what the state directory holds.
    pub fn private() -> Self {
        Self {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: 0o600,
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The marker in every temporary name driftless makes: recovery removes
/// what a crash left behind by it, and only that.
pub const TEMP_MARKER: &str = ".driftless-";

/// Bytes of the target's name kept in a temporary name: with the dot, the
/// marker, a pid and a counter it stays within the 255-byte NAME_MAX.
const TEMP_STEM_MAX: usize = 200;

/// A temporary name next to `name`, unique within this process and across
/// processes (pid), hidden so that globbing services ignore it.
pub fn temp_name(name: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    // Cut by bytes (NAME_MAX counts bytes), at a character boundary.
    let mut cut = name.len().min(TEMP_STEM_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{TEMP_MARKER}{}-{n}", &name[..cut], std::process::id())
}

/// Whether `entry` is a temporary name made by [`temp_name`], for any file,
/// by any process.
pub fn is_temp(entry: &str) -> bool {
    let Some(rest) = entry.strip_prefix('.') else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once(TEMP_MARKER) else {
        return false;
    };
    let mut parts = tail.splitn(2, '-');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next())
}

/// Whether `entry` is a temporary name made by [`temp_name`] for a file
/// named `name`, by any process.
pub fn is_temp_of(entry: &str, name: &str) -> bool {
    let mut cut = name.len().min(TEMP_STEM_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(&name[..cut]))
        .and_then(|e| e.strip_prefix(TEMP_MARKER))
    else {
        return false;
    };
    let mut parts = rest.splitn(2, '-');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next())
}

/// Atomically replaces (or creates) `name` in the open directory `dir`.
/// Owner, group and mode are set on the temporary file before the rename,
/// so the file never exists with the wrong permissions. `what` names the
/// file in errors.
pub fn write_at(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &[u8],
    perms: Perms,
    what: &dyn Fn() -> String,
) -> Result<()> {
    write_at_hooked(dir, name, content, perms, what, &|| {})
}

/// [`write_at`], calling `before_rename` once the temporary file is written
/// and flushed (the crash tests stop there).
pub fn write_at_hooked(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &[u8],
    perms: Perms,
    what: &dyn Fn() -> String,
    before_rename: &dyn Fn(),
) -> Result<()> {
    let tmp = temp_name(name);
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("failed to create a temporary file for {}", what()))?;
    let result = (|| -> Result<()> {
        let mut f = File::from(fd);
        f.write_all(content)?;
        fchown(
            f.as_fd(),
            Some(Uid::from_raw(perms.uid)),
            Some(Gid::from_raw(perms.gid)),
        )?;
        // fchmod after fchown: chown clears setuid/setgid bits.
        fchmod(f.as_fd(), Mode::from_bits_truncate(perms.mode))?;
        f.sync_all()?;
        before_rename();
        renameat(dir, tmp.as_str(), dir, name)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e).with_context(|| format!("failed to write {}", what()));
    }
    fsync(dir).with_context(|| format!("failed to sync the directory of {}", what()))?;
    Ok(())
}

/// Atomically replaces (or creates) the file `dir/name`, which is not
/// under a managed root (the state directory's own files).
pub fn write_file(dir: &Path, name: &str, content: &[u8], perms: Perms) -> Result<()> {
    let what = || dir.join(name).display().to_string();
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("failed to open directory {}", dir.display()))?;
    write_at(fd.as_fd(), name, content, perms, &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replace_atomically_and_leave_no_temporary() {
        let d = tempfile::tempdir().expect("tempdir");
        write_file(d.path(), "f", b"one", Perms::private()).expect("write");
        write_file(d.path(), "f", b"two", Perms::private()).expect("replace");
        assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"two");
        let mode = std::fs::metadata(d.path().join("f"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }

    /// Regression: a 240-byte name (120 × "é") got a temporary name cut by
    /// characters, 200 characters = 400 bytes, over NAME_MAX.
    #[test]
    fn long_utf8_names_get_temporaries_within_name_max() {
        let name = "é".repeat(120);
        assert_eq!(name.len(), 240);
        let tmp = temp_name(&name);
        assert!(tmp.len() <= 255, "{} bytes", tmp.len());
        assert!(is_temp_of(&tmp, &name));
        let d = tempfile::tempdir().expect("tempdir");
        write_file(d.path(), &name, b"x", Perms::private()).expect("write a 240-byte name");
        assert!(!is_temp_of(&name, &name));
        assert!(!is_temp_of(".motd.driftless-x-1", "motd"));
        assert!(is_temp_of(".motd.driftless-12-3", "motd"));
        assert!(is_temp(".state.json.driftless-12-3") && !is_temp("state.json"));
        assert!(!is_temp_of(".motd.driftless-12-3", "mot"));
    }
}
