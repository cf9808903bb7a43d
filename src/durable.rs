//! The one recipe for writing a file so that a crash leaves the old bytes
//! or the new ones, never a mix: a temporary file in the same directory,
//! write, owner/group/mode, fsync, rename over the target, fsync of the
//! directory.
//!
//! Both the host side (`system::fsroot`, which resolves a directory inside
//! a root first) and the state directory (`store`) write through it.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};

/// Owner, group and permission bits of a file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Perms {
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
    pub(crate) fn private() -> Self {
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
pub(crate) const TEMP_MARKER: &str = ".driftless-";

/// Bytes of the target's name kept in a temporary name: with the dot, the
/// marker, a pid and a counter it stays within the 255-byte NAME_MAX.
const TEMP_STEM_MAX: usize = 200;

/// A temporary name next to `name`, unique within this process and across
/// processes (pid), hidden so that globbing services ignore it.
pub(crate) fn temp_name(name: &str) -> String {
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
pub(crate) fn is_temp(entry: &str) -> bool {
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
pub(crate) fn is_temp_of(entry: &str, name: &str) -> bool {
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

/// Writes a temporary file's content, then its owner, group and mode
/// (fchmod after fchown: chown clears setuid/setgid bits), then its SELinux
/// context when one is given: all before it is renamed into place.
fn fill(f: &mut File, content: &[u8], perms: Perms, label: Option<&str>) -> Result<()> {
    f.write_all(content)?;
    fchown(
        f.as_fd(),
        Some(Uid::from_raw(perms.uid)),
        Some(Gid::from_raw(perms.gid)),
    )?;
    fchmod(f.as_fd(), Mode::from_bits_truncate(perms.mode))?;
    if let Some(label) = label {
        set_label(f.as_fd(), label)?;
    }
    Ok(())
}

/// Sets the SELinux context of the open file or directory `fd` (the
/// `security.selinux` attribute, by descriptor: `setfscreatecon` would
/// need SELinux enabled in the running kernel).
pub(crate) fn set_label(fd: BorrowedFd<'_>, label: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let text = std::ffi::CString::new(label)
        .map_err(|_| anyhow::anyhow!("SELinux context `{label}` holds a NUL byte"))?;
    selinux::SecurityContext::from_c_str(&text, true)
        .set_for_file(&fd.as_raw_fd())
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("failed to set the SELinux context {label}"))
}

/// Atomically replaces (or creates) `name` in the open directory `dir`.
/// Owner, group and mode are set on the temporary file before the rename,
/// so the file never exists with the wrong permissions. `what` names the
/// file in errors.
pub(crate) fn write_at(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &[u8],
    perms: Perms,
    what: &dyn Fn() -> String,
) -> Result<()> {
    write_at_hooked(dir, name, content, perms, None, what, &|_| Ok(()))
}

/// [`write_at`], with the SELinux context `label` set on the temporary
/// file too, calling `before_rename` once the temporary file is written,
/// labelled and flushed, with its name in `dir` (the crash tests stop
/// there; a validator checks it there). An error from it leaves the target
/// as it was and removes the temporary.
pub(crate) fn write_at_hooked(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &[u8],
    perms: Perms,
    label: Option<&str>,
    what: &dyn Fn() -> String,
    before_rename: &dyn Fn(&str) -> Result<()>,
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
        fill(&mut f, content, perms, label)?;
        f.sync_all()?;
        before_rename(&tmp)?;
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

/// Files written together, each as [`write_at`] would, with the flushes
/// shared: every temporary is written first, then each is flushed, then
/// all are renamed over their targets, then each parent directory is
/// flushed once. A rename still comes only after its temporary is on disk,
/// so a crash at any point leaves every target old or new; what it can
/// leave besides is complete temporaries, which recovery removes.
///
/// Each staged file holds an open descriptor until [`Batch::commit`]:
/// callers bound a batch's size ([`BATCH_MAX`]). Dropping a batch that was
/// not committed removes the temporaries not yet renamed.
#[derive(Default)]
pub(crate) struct Batch {
    staged: Vec<Staged>,
}

/// Files a caller puts in one [`Batch`] at most: each holds a descriptor.
pub(crate) const BATCH_MAX: usize = 128;

/// Where [`Batch::commit`] stands, for its caller's progress: before or
/// after renaming the file staged `i`-th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renaming {
    /// About to rename it; an error here stops the batch.
    Before(usize),
    /// Renamed: the target holds the new content.
    After(usize),
}

/// One file of a [`Batch`]: its temporary, written, not yet flushed.
struct Staged {
    dir: OwnedFd,
    tmp: String,
    name: String,
    file: Option<File>,
    what: String,
}

impl Batch {
    /// Files staged so far.
    pub(crate) fn len(&self) -> usize {
        self.staged.len()
    }

    /// Writes `content` to a temporary next to `name` in `dir`, with its
    /// owner, group, mode and SELinux context (if any); nothing is renamed
    /// yet. `what` names the file in errors.
    pub(crate) fn stage(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &str,
        content: &[u8],
        perms: Perms,
        label: Option<&str>,
        what: String,
    ) -> Result<()> {
        let dir = dir
            .try_clone_to_owned()
            .with_context(|| format!("failed to keep the directory of {what} open"))?;
        let tmp = temp_name(name);
        let fd = openat(
            dir.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .with_context(|| format!("failed to create a temporary file for {what}"))?;
        let mut f = File::from(fd);
        let written =
            fill(&mut f, content, perms, label).with_context(|| format!("failed to write {what}"));
        // Kept even when the write failed, so that the drop removes it.
        self.staged.push(Staged {
            dir,
            tmp,
            name: name.to_owned(),
            file: Some(f),
            what,
        });
        written
    }

    /// Flushes every temporary, then renames each over its target in the
    /// order staged, telling `progress` before and after each rename (it
    /// may refuse before one, for a stop request: the rest stay old), then
    /// flushes each parent directory once.
    pub(crate) fn commit(mut self, progress: &mut dyn FnMut(Renaming) -> Result<()>) -> Result<()> {
        for s in &mut self.staged {
            if let Some(f) = s.file.take() {
                f.sync_all()
                    .with_context(|| format!("failed to write {}", s.what))?;
            }
        }
        let mut dirs: Vec<(u64, u64, usize)> = Vec::new();
        let mut result = Ok(());
        let mut done = 0;
        for (i, s) in self.staged.iter().enumerate() {
            if let Err(e) = progress(Renaming::Before(i)) {
                result = Err(e);
                break;
            }
            if let Err(e) = renameat(
                s.dir.as_fd(),
                s.tmp.as_str(),
                s.dir.as_fd(),
                s.name.as_str(),
            ) {
                result = Err(anyhow::Error::new(e).context(format!("failed to write {}", s.what)));
                break;
            }
            done = i + 1;
            let st = nix::sys::stat::fstat(s.dir.as_fd())
                .with_context(|| format!("failed to stat the directory of {}", s.what))?;
            if !dirs
                .iter()
                .any(|&(d, n, _)| (d, n) == (st.st_dev, st.st_ino))
            {
                dirs.push((st.st_dev, st.st_ino, i));
            }
            if let Err(e) = progress(Renaming::After(i)) {
                result = Err(e);
                break;
            }
        }
        // What was renamed is flushed even when a later file failed: it is
        // the new content, and must stay so.
        for &(_, _, i) in &dirs {
            let s = &self.staged[i];
            fsync(s.dir.as_fd())
                .with_context(|| format!("failed to sync the directory of {}", s.what))?;
        }
        self.staged.drain(..done);
        result
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for s in &self.staged {
            let _ = unlinkat(s.dir.as_fd(), s.tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Atomically replaces (or creates) the file `dir/name`, which is not
/// under a managed root (the state directory's own files).
pub(crate) fn write_file(dir: &Path, name: &str, content: &[u8], perms: Perms) -> Result<()> {
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

    fn names(d: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(d)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_batch_renames_in_order_and_a_refusal_leaves_the_rest_old_without_temporaries() {
        let d = tempfile::tempdir().expect("tempdir");
        for n in ["a", "b", "c"] {
            write_file(d.path(), n, b"old", Perms::private()).expect("write");
        }
        let dir = nix::fcntl::open(
            d.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open dir");
        let mut batch = Batch::default();
        for n in ["a", "b", "c"] {
            batch
                .stage(dir.as_fd(), n, b"new", Perms::private(), None, n.to_owned())
                .expect("stage");
        }
        assert_eq!(batch.len(), 3);
        // Nothing is renamed while staging.
        assert_eq!(std::fs::read(d.path().join("a")).expect("read"), b"old");
        let mut seen = Vec::new();
        let r = batch.commit(&mut |step| {
            seen.push(step);
            if step == Renaming::Before(2) {
                anyhow::bail!("asked to stop");
            }
            Ok(())
        });
        assert!(r.is_err());
        assert_eq!(
            seen,
            [
                Renaming::Before(0),
                Renaming::After(0),
                Renaming::Before(1),
                Renaming::After(1),
                Renaming::Before(2)
            ]
        );
        let read = |n: &str| std::fs::read(d.path().join(n)).expect("read");
        assert_eq!(
            (read("a"), read("b"), read("c")),
            (b"new".to_vec(), b"new".to_vec(), b"old".to_vec())
        );
        assert_eq!(names(d.path()), ["a", "b", "c"], "a temporary was left");
    }

    #[test]
    fn a_batch_dropped_uncommitted_removes_its_temporaries() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = nix::fcntl::open(
            d.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open dir");
        let mut batch = Batch::default();
        batch
            .stage(
                dir.as_fd(),
                "x",
                b"new",
                Perms::private(),
                None,
                "x".to_owned(),
            )
            .expect("stage");
        assert_eq!(names(d.path()).len(), 1);
        drop(batch);
        assert!(names(d.path()).is_empty());
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
