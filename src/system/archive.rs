//! Extracting an archive into a directory under a root, and the trees
//! that makes: put into place whole, kept until the converge commits,
//! put back or removed.
//!
//! An extraction never writes into the directory it replaces. The entries
//! go into a new sibling, `.NAME.driftless-new` (each checked again by
//! `plan::archive`, created with `*at` calls below it that never follow a
//! symlink, owned by the declared owner and group), with the marker
//! recording what was extracted; it is flushed, then the old directory
//! moves aside to `.NAME.driftless-old` and the new one takes its name.
//! The old tree stays there until the converge commits ([`FsRoot::drop_kept_tree`]),
//! so a rollback (or the recovery after a crash) can put it back
//! ([`FsRoot::restore_kept_tree`]): it finds it by its marker.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, fsync, linkat, symlinkat, unlinkat};

use super::fsroot::{FsRoot, set_fd_meta};
use crate::desired::model::ArchiveFormat;
use crate::plan::archive::{self, Entry, Item, LIMITS, MARKER};
use crate::plan::observed::FsMeta;

/// Largest marker read: it is a few lines driftless writes.
const MARKER_MAX: i64 = 4096;
/// Deepest tree removed (an extracted tree is bounded by path length).
const DEPTH_MAX: usize = 1024;

/// What to extract where ([`FsRoot::extract`]).
pub(crate) struct Extraction<'a> {
    /// The archive's bytes.
    pub bytes: &'a [u8],
    /// How they are packed.
    pub format: ArchiveFormat,
    /// Leading components dropped.
    pub strip_components: u32,
    /// The marker's text.
    pub marker: &'a str,
    /// Owner, group, mode of the directory; its entries get the owner and
    /// group.
    pub meta: FsMeta,
    /// The directory's SELinux context, when the root has a policy.
    pub label: Option<&'a str>,
}

/// The sibling a new tree is extracted into.
fn new_name(name: &str) -> String {
    format!(".{name}.driftless-new")
}

/// The sibling the replaced tree is kept in until the converge commits.
fn kept_name(name: &str) -> String {
    format!(".{name}.driftless-old")
}

impl FsRoot {
    /// The marker of the directory at `host_path`, if it is a directory
    /// holding one (a regular file, read up to a few KiB).
    pub fn archive_marker(&self, host_path: &str) -> Result<Option<String>> {
        let p = self.require_parent(host_path)?;
        marker_at(p.dir.as_fd(), &p.name).with_context(|| {
            format!(
                "failed to read the archive marker of {}",
                self.display(host_path)
            )
        })
    }

    /// Extracts `x` into a new directory that then replaces `host_path`
    /// (kept aside until [`FsRoot::drop_kept_tree`]); its parent must
    /// exist. Nothing at `host_path` changes until the whole tree is
    /// written and flushed.
    pub(crate) fn extract(&self, host_path: &str, x: &Extraction<'_>) -> Result<()> {
        let p = self.require_parent(host_path)?;
        let what = || self.display(host_path);
        let (dir, name) = (p.dir.as_fd(), p.name.as_str());
        let new = new_name(name);
        remove_tree_at(dir, &new, 0)
            .with_context(|| format!("failed to clear {new} beside {}", what()))?;
        mkdirat(dir, new.as_str(), Mode::from_bits_truncate(0o700))
            .with_context(|| format!("failed to create {new} beside {}", what()))?;
        let written = write_tree(dir, &new, x).and_then(|top| {
            set_fd_meta(top.as_fd(), x.meta, x.label, &what)?;
            // One flush for the whole tree rather than one per file.
            nix::unistd::syncfs(top.as_fd()).context("failed to flush the extracted tree")
        });
        if let Err(e) = written {
            let _ = remove_tree_at(dir, &new, 0);
            return Err(e.context(format!("failed to extract into {}", what())));
        }
        let kept = kept_name(name);
        if exists_at(dir, name)? {
            remove_tree_at(dir, &kept, 0)
                .with_context(|| format!("failed to clear {kept} beside {}", what()))?;
            renameat(dir, name, dir, kept.as_str())
                .with_context(|| format!("failed to move {} aside", what()))?;
        }
        renameat2(dir, new.as_str(), dir, name, RenameFlags::RENAME_NOREPLACE)
            .or_else(|e| match e {
                // A filesystem without the flag: the name was just freed.
                Errno::EINVAL => renameat(dir, new.as_str(), dir, name),
                e => Err(e),
            })
            .with_context(|| format!("failed to put the extracted tree at {}", what()))?;
        fsync(dir).with_context(|| format!("failed to sync the directory of {}", what()))
    }

    /// Removes the tree at `host_path` with everything in it; only a tree
    /// driftless extracted (its directory holds the marker). Missing is
    /// success.
    pub fn remove_tree(&self, host_path: &str) -> Result<()> {
        let Ok(p) = self.require_parent(host_path) else {
            return Ok(());
        };
        let (dir, name) = (p.dir.as_fd(), p.name.as_str());
        if !exists_at(dir, name)? {
            return Ok(());
        }
        if marker_at(dir, name)?.is_none() {
            bail!(
                "refusing to remove {}: it holds no {MARKER}, so driftless did not extract it",
                self.display(host_path)
            );
        }
        remove_tree_at(dir, name, 0)
            .and_then(|()| fsync(dir).map_err(anyhow::Error::from))
            .with_context(|| format!("failed to remove {}", self.display(host_path)))
    }

    /// Forgets the tree an extraction at `host_path` replaced (the
    /// converge committed). Missing is success.
    pub fn drop_kept_tree(&self, host_path: &str) -> Result<()> {
        let Ok(p) = self.require_parent(host_path) else {
            return Ok(());
        };
        let kept = kept_name(&p.name);
        remove_tree_at(p.dir.as_fd(), &kept, 0).with_context(|| {
            format!(
                "failed to remove {kept}, the tree {} had before",
                self.display(host_path)
            )
        })
    }

    /// Puts back the directory that an extraction at `host_path` kept
    /// aside: the tree with the marker `marker`, or with `None` a
    /// directory without one; what is there now is removed. `false` when
    /// no such directory was kept.
    pub fn restore_kept_tree(&self, host_path: &str, marker: Option<&str>) -> Result<bool> {
        let p = self.require_parent(host_path)?;
        let (dir, name) = (p.dir.as_fd(), p.name.as_str());
        let kept = kept_name(name);
        let is_kept = match fstatat(dir, kept.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => is_dir(&st) && marker_at(dir, &kept)?.as_deref() == marker,
            Err(Errno::ENOENT) => false,
            Err(e) => return Err(anyhow!(e).context(format!("failed to stat {kept}"))),
        };
        if !is_kept {
            return Ok(false);
        }
        if exists_at(dir, name)? {
            self.remove_tree(host_path)?;
        }
        renameat(dir, kept.as_str(), dir, name).with_context(|| {
            format!("failed to put back the tree of {}", self.display(host_path))
        })?;
        fsync(dir).with_context(|| {
            format!(
                "failed to sync the directory of {}",
                self.display(host_path)
            )
        })?;
        Ok(true)
    }
}

/// Whether something is at `name` in `dir` (a symlink is not followed).
fn exists_at(dir: BorrowedFd<'_>, name: &str) -> Result<bool> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(anyhow!(e).context(format!("failed to stat {name}"))),
    }
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// The marker inside the directory `name` of `dir`, if it is a
/// directory holding a regular-file marker.
fn marker_at(dir: BorrowedFd<'_>, name: &str) -> Result<Option<String>> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let tree = match openat(dir, name, flags | OFlag::O_DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(anyhow!(e).context(format!("failed to open {name}"))),
    };
    let fd = match openat(
        tree.as_fd(),
        MARKER,
        flags | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(anyhow!(e).context(format!("failed to open {name}/{MARKER}"))),
    };
    let st = fstat(fd.as_fd()).context("failed to stat the marker")?;
    let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || st.st_size > MARKER_MAX {
        return Ok(None);
    }
    let mut text = String::new();
    match std::fs::File::from(fd).read_to_string(&mut text) {
        Ok(_) => Ok(Some(text)),
        // Not driftless's words: no marker.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context("failed to read the marker")),
    }
}

/// Removes `name` in `dir` and, when it is a directory, everything in it,
/// never following a symlink. Missing is success.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &str, depth: usize) -> Result<()> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(anyhow!(e).context(format!("failed to stat {name}"))),
    };
    if !is_dir(&st) {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("failed to remove {name}"));
    }
    // As `rm --one-file-system`: a volume mounted in the tree is not the
    // tree's to empty.
    let parent = fstat(dir).with_context(|| format!("failed to stat the directory of {name}"))?;
    if st.st_dev != parent.st_dev {
        bail!("{name} is a mount point; driftless does not remove what another filesystem holds");
    }
    if depth > DEPTH_MAX {
        bail!("{name} is nested deeper than {DEPTH_MAX} directories");
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("failed to open {name}"))?;
    // A directory of mode 0500 (kept from an archive) must be writable to
    // be emptied.
    fchmod(fd.as_fd(), Mode::from_bits_truncate(0o700))
        .with_context(|| format!("failed to make {name} writable"))?;
    let listing = fd.try_clone().context("failed to dup a directory fd")?;
    let names: Vec<String> = nix::dir::Dir::from_fd(listing)
        .with_context(|| format!("failed to list {name}"))?
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in &names {
        remove_tree_at(fd.as_fd(), n, depth + 1).with_context(|| format!("in {name}"))?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
        .with_context(|| format!("failed to remove {name}"))
}

/// Writes every entry of `x` below the new directory `top` of `dir`, then
/// the marker, then the directories' modes; returns `top`, opened.
fn write_tree(dir: BorrowedFd<'_>, top: &str, x: &Extraction<'_>) -> Result<OwnedFd> {
    let top = openat(
        dir,
        top,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("failed to open {top}"))?;
    let owner = (Uid::from_raw(x.meta.uid), Gid::from_raw(x.meta.gid));
    // Directories are made writable, and get their modes once full.
    let mut dirs: BTreeMap<String, u32> = BTreeMap::new();
    let mut each = |e: &Entry, data: &mut dyn Read| {
        write_entry(top.as_fd(), e, data, owner, &mut dirs).map_err(|err| format!("{err:#}"))
    };
    archive::walk(x.bytes, x.format, x.strip_components, LIMITS, &mut each)
        .map_err(|e| anyhow!("{e}"))?;
    let mut marker = create_file(top.as_fd(), MARKER, owner)?;
    marker
        .write_all(x.marker.as_bytes())
        .context("failed to write the marker")?;
    fchmod(marker.as_fd(), Mode::from_bits_truncate(0o644))
        .context("failed to set the marker's mode")?;
    // Deepest first: a read-only directory is set once nothing is left
    // to write below it.
    for (path, mode) in dirs.iter().rev() {
        let fd = open_dir(top.as_fd(), path, None)?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(*mode))
            .with_context(|| format!("failed to set the mode of {path}"))?;
    }
    Ok(top)
}

/// Writes one checked entry below `top`.
fn write_entry(
    top: BorrowedFd<'_>,
    e: &Entry,
    data: &mut dyn Read,
    owner: (Uid, Gid),
    dirs: &mut BTreeMap<String, u32>,
) -> Result<()> {
    let (parent_path, name) = match e.path.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, e.path.as_str()),
    };
    let parent = match parent_path {
        Some(p) => open_dir(top, p, Some((owner, &mut *dirs)))?,
        None => top
            .try_clone_to_owned()
            .context("failed to dup a directory fd")?,
    };
    let at = parent.as_fd();
    let path = &e.path;
    match &e.item {
        Item::Dir => {
            match mkdirat(at, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => fchownat(
                    at,
                    name,
                    Some(owner.0),
                    Some(owner.1),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("failed to change the owner of {path}"))?,
                // Made already as the parent of an earlier entry.
                Err(Errno::EEXIST) => {}
                Err(err) => return Err(anyhow!(err).context(format!("failed to create {path}"))),
            }
            dirs.insert(path.clone(), e.mode);
        }
        Item::File(size) => {
            let mut f = create_file(at, name, owner).with_context(|| format!("entry {path}"))?;
            // No more than the size the plan counted.
            std::io::copy(&mut data.take(*size), &mut f)
                .with_context(|| format!("failed to write {path}"))?;
            fchmod(f.as_fd(), Mode::from_bits_truncate(e.mode))
                .with_context(|| format!("failed to set the mode of {path}"))?;
        }
        Item::Symlink(target) => {
            symlinkat(target.as_str(), at, name)
                .with_context(|| format!("failed to create symlink {path}"))?;
            fchownat(
                at,
                name,
                Some(owner.0),
                Some(owner.1),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("failed to change the owner of {path}"))?;
        }
        Item::Hardlink(target) => {
            // The target is a regular file extracted before, below `top`
            // (checked by the planner: no symlink on its way).
            linkat(top, target.as_str(), at, name, AtFlags::empty())
                .with_context(|| format!("failed to link {path} to {target}"))?;
        }
    }
    Ok(())
}

/// Creates the new regular file `name` in `dir`, owned by `owner`.
fn create_file(dir: BorrowedFd<'_>, name: &str, owner: (Uid, Gid)) -> Result<std::fs::File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("failed to create {name}"))?;
    fchown(fd.as_fd(), Some(owner.0), Some(owner.1))
        .with_context(|| format!("failed to change the owner of {name}"))?;
    Ok(std::fs::File::from(fd))
}

/// Where missing directories on the way to an entry are made: their
/// owner, and the modes to give directories once the tree is written.
type Making<'d> = ((Uid, Gid), &'d mut BTreeMap<String, u32>);

/// Opens the directory `rel` below `top`, never through a symlink; with
/// `create`, missing directories on the way are made (owned by the owner,
/// mode 0755 unless an entry of their own says otherwise).
fn open_dir(top: BorrowedFd<'_>, rel: &str, mut create: Option<Making<'_>>) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = top
        .try_clone_to_owned()
        .context("failed to dup a directory fd")?;
    let mut walked = String::new();
    for comp in rel.split('/') {
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(comp);
        let next = match (
            openat(fd.as_fd(), comp, flags, Mode::empty()),
            create.as_mut(),
        ) {
            (Err(Errno::ENOENT), Some((owner, dirs))) => {
                mkdirat(fd.as_fd(), comp, Mode::from_bits_truncate(0o700))
                    .with_context(|| format!("failed to create {walked}"))?;
                fchownat(
                    fd.as_fd(),
                    comp,
                    Some(owner.0),
                    Some(owner.1),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("failed to change the owner of {walked}"))?;
                dirs.entry(walked.clone()).or_insert(0o755);
                openat(fd.as_fd(), comp, flags, Mode::empty())
            }
            (r, _) => r,
        };
        fd = next
            .with_context(|| format!("failed to open {walked} (not a directory, or a symlink)"))?;
    }
    Ok(fd)
}
