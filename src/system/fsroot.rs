//! The host filesystem, seen from a root directory.
//!
//! Every operation takes an absolute host path (`/etc/motd`) and resolves it
//! below the root handle with `*at` system calls, one component at a time:
//! symlinks in parent directories are followed but confined to the root (an
//! absolute link target restarts at the root, `..` stops at it), and the final
//! component is never followed. So the same code converges `/` and a test's
//! temporary directory, and a symlink planted at a managed path or in one of
//! its parents can never redirect a write outside the root.
//!
//! Writes are atomic and durable: temporary file in the same directory,
//! write, owner/group/mode, fsync, rename over the target, fsync the
//! directory (for many files at once, the temporaries first, then their
//! flushes, the renames, and one flush per directory). A crash at any point
//! leaves the old file or the new one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, readlinkat, renameat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, symlinkat, unlinkat};
use sha2::{Digest, Sha256};

use super::selinux;
use crate::{durable, fault};

/// Writes made by this process, for the `mid-write` crash point.
static WRITES: AtomicUsize = AtomicUsize::new(0);

pub(crate) use crate::plan::observed::{
    CachedFile, DIR_LIST_MAX, FsMeta, KEEP_CONTENT_MAX, Observed, StatKey,
};

/// Symlinks followed while resolving one path, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;
/// Bound of a configuration file read whole ([`FsRoot::read_config`]):
/// far above any fstab or passwd, far below what would hurt the host.
pub(crate) const CONFIG_MAX: u64 = 16 << 20;

/// A root directory that host paths are resolved under.
pub struct FsRoot {
    fd: OwnedFd,
    path: PathBuf,
    /// The host path of the root's SELinux `file_contexts`, found on first
    /// use (`None`: the root has no policy, so labels are neither read nor
    /// set); an unreadable configuration is kept as its error.
    policy: std::sync::OnceLock<std::result::Result<Option<String>, String>>,
}

/// A resolved parent directory and the final name in it.
pub(super) struct Parent {
    /// The directory.
    pub(super) dir: OwnedFd,
    /// The final component.
    pub(super) name: String,
}

/// Directories held at most by [`Parents`]: each is an open descriptor.
const PARENTS_MAX: usize = 256;

/// Parent directories resolved once for a whole pass of read-only
/// observations: files in one directory share its resolution, so a
/// file's observation is one `fstatat` when its stat is trusted. Only for
/// passes that change nothing (a directory created meanwhile would not be
/// seen), dropped when the pass ends.
#[derive(Default)]
pub struct Parents {
    dirs: HashMap<String, std::result::Result<OwnedFd, Vec<String>>>,
}

impl Parents {
    /// The open parent of `host_path` and its final name, or the missing
    /// ancestors.
    fn resolve<'p>(
        &'p mut self,
        root: &FsRoot,
        host_path: &'p str,
    ) -> Result<std::result::Result<(BorrowedFd<'p>, &'p str), Vec<String>>> {
        use std::collections::hash_map::Entry;
        let (dir_part, name) = split(host_path)?;
        if self.dirs.len() >= PARENTS_MAX && !self.dirs.contains_key(dir_part) {
            self.dirs.clear();
        }
        let resolved: &'p _ = match self.dirs.entry(dir_part.to_owned()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(root.parent(host_path)?.map(|p| p.dir)),
        };
        Ok(match resolved {
            Ok(fd) => Ok((fd.as_fd(), name)),
            Err(missing) => Err(missing.clone()),
        })
    }
}

impl FsRoot {
    /// Opens `path` as the root. It must be a directory. The path is made
    /// canonical (absolute, no symlinks), so that `--root root`,
    /// `--root /mnt/..` and `/` are recognised for what they are.
    pub fn open(path: &Path) -> Result<Self> {
        let path = &std::fs::canonicalize(path)
            .with_context(|| format!("failed to resolve root directory {}", path.display()))?;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open root directory {}", path.display()))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
            policy: std::sync::OnceLock::new(),
        })
    }

    /// The host path of the root's SELinux file contexts, `None` when the
    /// root has no policy (or `SELINUX=disabled`).
    pub fn selinux_policy(&self) -> Result<Option<&str>> {
        self.policy
            .get_or_init(|| self.find_policy().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map(Option::as_deref)
            .map_err(|e| anyhow!("{e}"))
    }

    /// [`FsRoot::selinux_policy`], looked for: a root without
    /// `/etc/selinux/config` costs one stat.
    fn find_policy(&self) -> Result<Option<String>> {
        if !self.exists(selinux::CONFIG)? {
            return Ok(None);
        }
        let config = self.read_config(selinux::CONFIG)?;
        let Some(file_contexts) = selinux::policy_file(&String::from_utf8_lossy(&config))
            .map_err(|e| anyhow!("{}: {e}", self.display(selinux::CONFIG)))?
        else {
            return Ok(None);
        };
        Ok(self.exists(&file_contexts)?.then_some(file_contexts))
    }

    /// Whether the root has an SELinux policy: then every path driftless
    /// observes has its label read, and every path it writes is labelled.
    pub fn labelled(&self) -> Result<bool> {
        Ok(self.selinux_policy()?.is_some())
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the running host's own `/`: only then is there a
    /// live systemd to ask and to command.
    pub fn is_live(&self) -> bool {
        self.path == Path::new("/")
    }

    /// Where a host path lives on the real filesystem, for messages only
    /// (never used to open anything).
    pub fn display(&self, host_path: &str) -> String {
        if self.path == Path::new("/") {
            host_path.to_owned()
        } else {
            format!("{}{host_path}", self.path.display())
        }
    }

    /// Resolves the parent directory of `host_path`. `Ok(Err(missing))`
    /// when an ancestor does not exist, with the missing ancestors.
    fn parent(&self, host_path: &str) -> Result<std::result::Result<Parent, Vec<String>>> {
        let (dir_part, name) = split(host_path)?;
        let logical: Vec<&str> = dir_part.split('/').filter(|c| !c.is_empty()).collect();
        // Components still to walk, in reverse so pop() yields the next one.
        let mut pending: Vec<String> = logical.iter().rev().map(|c| (*c).to_owned()).collect();
        // Directories walked so far; the first is the root.
        let mut stack: Vec<OwnedFd> = vec![self.fd.try_clone().context("failed to dup root fd")?];
        let mut links = 0;
        let mut followed_link = false;
        // The last link followed, to say why its target is not there.
        let mut last_link: Option<(String, String)> = None;
        let mut walked = 0; // logical components fully walked without links
        while let Some(comp) = pending.pop() {
            if comp == "." || comp.is_empty() {
                continue;
            }
            if comp == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let top = stack
                .last()
                .ok_or_else(|| anyhow!("empty directory stack"))?;
            match openat(
                top.as_fd(),
                comp.as_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    stack.push(fd);
                    if !followed_link {
                        walked += 1;
                    }
                }
                Err(Errno::ENOENT) => {
                    if followed_link {
                        match last_link.as_ref().filter(|(_, t)| t.starts_with('/')) {
                            // A link made on the machine, into its own tree: in
                            // a root it means the same path inside the root.
                            Some((link, target)) if self.path != Path::new("/") => bail!(
                                "a parent of {} is a symlink ({link} -> {target}) that points outside the root: links resolve inside the root {}, where {target} does not exist",
                                self.display(host_path),
                                self.path.display()
                            ),
                            _ => bail!(
                                "a parent of {} is a symlink to a directory that does not exist",
                                self.display(host_path)
                            ),
                        }
                    }
                    let missing = (walked..logical.len())
                        .map(|i| format!("/{}", logical[..=i].join("/")))
                        .collect();
                    return Ok(Err(missing));
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let st = fstatat(top.as_fd(), comp.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .with_context(|| {
                            format!("failed to stat a parent of {}", self.display(host_path))
                        })?;
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                        bail!(
                            "a parent of {} is not a directory ({comp})",
                            self.display(host_path)
                        );
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        bail!("too many symlinks resolving {}", self.display(host_path));
                    }
                    followed_link = true;
                    let target = readlinkat(top.as_fd(), comp.as_str()).with_context(|| {
                        format!(
                            "failed to read symlink {comp} above {}",
                            self.display(host_path)
                        )
                    })?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        stack.truncate(1);
                    }
                    last_link = Some((comp.clone(), target.clone()));
                    pending.extend(target.split('/').rev().map(str::to_owned));
                }
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!(
                            "failed to open a parent directory of {}",
                            self.display(host_path)
                        )
                    });
                }
            }
        }
        let dir = stack
            .pop()
            .ok_or_else(|| anyhow!("empty directory stack"))?;
        Ok(Ok(Parent {
            dir,
            name: name.to_owned(),
        }))
    }

    /// Resolves the parent directory of `host_path`, which must exist.
    pub(super) fn require_parent(&self, host_path: &str) -> Result<Parent> {
        self.parent(host_path)?.map_err(|missing| {
            anyhow!(
                "cannot change {}: its parent directory {} does not exist",
                self.display(host_path),
                missing.first().map_or("?", String::as_str)
            )
        })
    }

    /// Looks at `host_path` without following a final symlink and without
    /// changing anything.
    pub fn observe(&self, host_path: &str) -> Result<Observed> {
        Ok(self
            .observe_hinted(host_path, None, &mut Parents::default())?
            .0)
    }

    /// Whether something (of any type; a symlink is not followed) is at
    /// `host_path`: a stat, nothing read.
    pub fn exists(&self, host_path: &str) -> Result<bool> {
        let mut parents = Parents::default();
        let Ok((dir, name)) = parents.resolve(self, host_path)? else {
            return Ok(false);
        };
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(anyhow!(e))
                .with_context(|| format!("failed to stat {}", self.display(host_path))),
        }
    }

    /// [`FsRoot::observe`], trusting `hint` for a regular file whose stat is
    /// exactly the hint's: then the file is not opened, and its hash and
    /// label are the hint's (its content is not kept). Also returns the
    /// stat of a regular file as it was before it was read, for the next
    /// run's hint.
    pub fn observe_hinted(
        &self,
        host_path: &str,
        hint: Option<&CachedFile>,
        parents: &mut Parents,
    ) -> Result<(Observed, Option<StatKey>)> {
        let labels = self.labelled()?;
        let (dir, name) = match parents.resolve(self, host_path)? {
            Ok(p) => p,
            Err(missing_parents) => return Ok((Observed::Missing { missing_parents }, None)),
        };
        let what = || self.display(host_path);
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Ok((
                    Observed::Missing {
                        missing_parents: Vec::new(),
                    },
                    None,
                ));
            }
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("failed to stat {}", what())),
        };
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if fmt == SFlag::S_IFREG
            && let Some(hint) = hint
            && hint.stat == stat_key(&st)
            && let Some(sha256) = hex::decode(&hint.sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            let observed = Observed::File {
                meta: meta_of(&st),
                label: if labels { hint.label.clone() } else { None },
                size: u64::try_from(st.st_size).unwrap_or(0),
                sha256,
                content: None,
            };
            return Ok((observed, Some(hint.stat)));
        }
        let observed = match fmt {
            SFlag::S_IFREG => {
                let (observed, key) = self.read_observed(dir, name, host_path, labels)?;
                return Ok((observed, Some(key)));
            }
            SFlag::S_IFDIR => self.list_observed(dir, name, host_path, labels, &st)?,
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, name)
                    .with_context(|| format!("failed to read symlink {}", what()))?;
                let label = if labels {
                    selinux::of_entry(dir, name).with_context(|| {
                        format!("failed to read the SELinux context of {}", what())
                    })?
                } else {
                    None
                };
                Observed::Symlink {
                    target: target.to_string_lossy().into_owned(),
                    label,
                }
            }
            SFlag::S_IFIFO => Observed::Other { what: "a FIFO" },
            SFlag::S_IFSOCK => Observed::Other { what: "a socket" },
            SFlag::S_IFCHR | SFlag::S_IFBLK => Observed::Other { what: "a device" },
            _ => Observed::Other {
                what: "an unknown file type",
            },
        };
        Ok((observed, None))
    }

    /// A regular file, read and hashed (its content kept when small), with
    /// the stat from before the read: a write during it moves ctime past
    /// that, so the next run hashes again.
    fn read_observed(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        host_path: &str,
        labels: bool,
    ) -> Result<(Observed, StatKey)> {
        let what = || self.display(host_path);
        // O_NONBLOCK: if a FIFO was swapped in since the stat, do not hang.
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open {}", what()))?;
        let st = fstat(fd.as_fd()).with_context(|| format!("failed to stat {}", what()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            bail!("{} changed type while being read", what());
        }
        let key = stat_key(&st);
        let label = self.label_of(labels, fd.as_fd(), host_path)?;
        let (size, sha256, content) =
            hash_reader(File::from(fd)).with_context(|| format!("failed to read {}", what()))?;
        let observed = Observed::File {
            meta: meta_of(&st),
            label,
            size,
            sha256,
            content,
        };
        Ok((observed, key))
    }

    /// A directory, with its first entries (enough to tell whether a plan
    /// empties it).
    fn list_observed(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        host_path: &str,
        labels: bool,
        st: &FileStat,
    ) -> Result<Observed> {
        let what = || self.display(host_path);
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open directory {}", what()))?;
        let label = self.label_of(labels, fd.as_fd(), host_path)?;
        let mut listing = nix::dir::Dir::from_fd(fd)
            .with_context(|| format!("failed to list directory {}", what()))?;
        let mut entries = Vec::new();
        for entry in listing.iter() {
            let entry = entry.with_context(|| format!("failed to list directory {}", what()))?;
            let n = entry.file_name().to_string_lossy();
            if n != "." && n != ".." {
                entries.push(n.into_owned());
                if entries.len() > DIR_LIST_MAX {
                    break;
                }
            }
        }
        Ok(Observed::Dir {
            meta: meta_of(st),
            label,
            entries,
        })
    }

    /// Reads a whole regular file (for snapshots of files larger than an
    /// observation keeps). Never follows a final symlink.
    pub fn read_file(&self, host_path: &str) -> Result<Vec<u8>> {
        self.read_at_most(host_path, u64::MAX)
    }

    /// Reads a configuration file the host keeps (fstab, the accounts
    /// files, a settings file): [`CONFIG_MAX`] at most, an error beyond
    /// (what is read from outside is bounded).
    pub fn read_config(&self, host_path: &str) -> Result<Vec<u8>> {
        self.read_at_most(host_path, CONFIG_MAX)
    }

    /// Reads a whole regular file, refusing one larger than `max` bytes.
    fn read_at_most(&self, host_path: &str, max: u64) -> Result<Vec<u8>> {
        let p = self.require_parent(host_path)?;
        let fd = openat(
            p.dir.as_fd(),
            p.name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open {}", self.display(host_path)))?;
        let mut buf = Vec::new();
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .with_context(|| format!("failed to read {}", self.display(host_path)))?;
        if buf.len() as u64 > max {
            bail!(
                "{} is larger than {max} bytes: not read",
                self.display(host_path)
            );
        }
        Ok(buf)
    }

    /// The SELinux context of the open `fd` at `host_path`, when `labels`.
    fn label_of(
        &self,
        labels: bool,
        fd: BorrowedFd<'_>,
        host_path: &str,
    ) -> Result<Option<String>> {
        if !labels {
            return Ok(None);
        }
        selinux::of_fd(fd).with_context(|| {
            format!(
                "failed to read the SELinux context of {}",
                self.display(host_path)
            )
        })
    }

    /// Atomically replaces (or creates) the regular file at `host_path`.
    /// Owner, group, mode and SELinux context (`label`, when given) are set
    /// on the temporary file before the rename, so the file never exists
    /// with the wrong permissions or label.
    pub fn write_file(
        &self,
        host_path: &str,
        content: &[u8],
        meta: FsMeta,
        label: Option<&str>,
    ) -> Result<()> {
        self.write_file_checked(host_path, content, meta, label, &|_| Ok(()))
    }

    /// [`FsRoot::write_file`], with `check` given the staged temporary
    /// file (its path on this machine: written, owned, labelled and
    /// flushed) before it replaces the target: an error from `check` leaves
    /// the target as it was.
    pub fn write_file_checked(
        &self,
        host_path: &str,
        content: &[u8],
        meta: FsMeta,
        label: Option<&str>,
        check: &dyn Fn(&Path) -> Result<()>,
    ) -> Result<()> {
        let p = self.require_parent(host_path)?;
        let staged = |tmp: &str| {
            self.path()
                .join(host_path.trim_start_matches('/'))
                .with_file_name(tmp)
        };
        durable::write_at_hooked(
            p.dir.as_fd(),
            &p.name,
            content,
            durable::Perms {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
            },
            label,
            &|| self.display(host_path),
            &|tmp| {
                check(&staged(tmp))?;
                fault::point_n("mid-write", WRITES.fetch_add(1, Ordering::Relaxed) + 1);
                Ok(())
            },
        )
    }

    /// Atomically replaces (or creates) several regular files, with the
    /// flushes shared ([`durable::Batch`]): every target ends old or new
    /// even under a crash. `progress` hears before and after each rename.
    /// An error carries the index of the file it is about.
    pub fn write_files(
        &self,
        files: &[NewFile<'_>],
        progress: &mut dyn FnMut(durable::Renaming) -> Result<()>,
    ) -> Result<(), (usize, anyhow::Error)> {
        let mut batch = durable::Batch::default();
        for (i, f) in files.iter().enumerate() {
            let p = self.require_parent(f.path).map_err(|e| (i, e))?;
            let perms = durable::Perms {
                uid: f.meta.uid,
                gid: f.meta.gid,
                mode: f.meta.mode,
            };
            batch
                .stage(
                    p.dir.as_fd(),
                    &p.name,
                    f.content,
                    perms,
                    f.label,
                    self.display(f.path),
                )
                .map_err(|e| (i, e))?;
        }
        let mut at = 0;
        batch
            .commit(&mut |step| {
                if let durable::Renaming::Before(i) = step {
                    at = i;
                    fault::point_n("mid-write", WRITES.fetch_add(1, Ordering::Relaxed) + 1);
                }
                progress(step)
            })
            .map_err(|e| (at, e))
    }

    /// Removes what writes to `host_path` that a crash cut short left next
    /// to it: the temporary files driftless names `.NAME.driftless-PID-N`,
    /// and nothing else. Returns the names removed.
    pub fn remove_temporaries(&self, host_path: &str) -> Result<Vec<String>> {
        let p = match self.parent(host_path)? {
            Ok(p) => p,
            Err(_) => return Ok(Vec::new()),
        };
        let fd = p.dir.try_clone().context("failed to dup a directory fd")?;
        let mut dir = nix::dir::Dir::from_fd(fd).with_context(|| {
            format!(
                "failed to list the directory of {}",
                self.display(host_path)
            )
        })?;
        let names: Vec<String> = dir
            .iter()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|e| durable::is_temp_of(e, &p.name))
            .collect();
        for n in &names {
            // A directory being made ([`FsRoot::create_dir`]) is empty
            // until it is renamed into place.
            let removed = match unlinkat(p.dir.as_fd(), n.as_str(), UnlinkatFlags::NoRemoveDir) {
                Err(Errno::EISDIR) => unlinkat(p.dir.as_fd(), n.as_str(), UnlinkatFlags::RemoveDir),
                other => other,
            };
            match removed {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!(
                            "failed to remove the temporary {n} of {}",
                            self.display(host_path)
                        )
                    });
                }
            }
        }
        Ok(names)
    }

    /// Sets owner, group, mode and (when given) SELinux context of an
    /// existing file or directory, without following a symlink.
    pub fn set_meta(&self, host_path: &str, meta: FsMeta, label: Option<&str>) -> Result<()> {
        let p = self.require_parent(host_path)?;
        let what = || self.display(host_path);
        let fd = openat(
            p.dir.as_fd(),
            p.name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open {}", what()))?;
        set_fd_meta(fd.as_fd(), meta, label, &what)?;
        fsync(fd.as_fd()).with_context(|| format!("failed to sync {}", what()))?;
        Ok(())
    }

    /// Creates a directory with the given owner, group, mode and SELinux
    /// context. Its parent must exist. It is made under a temporary name
    /// and renamed into place once all of them are set, so nobody can slip
    /// into it while it has the wrong owner, and a crash never leaves it
    /// at its path with the wrong label.
    pub fn create_dir(&self, host_path: &str, meta: FsMeta, label: Option<&str>) -> Result<()> {
        let p = self.require_parent(host_path)?;
        let what = || self.display(host_path);
        let tmp = durable::temp_name(&p.name);
        mkdirat(p.dir.as_fd(), tmp.as_str(), Mode::from_bits_truncate(0o700))
            .with_context(|| format!("failed to create directory {}", what()))?;
        let made = (|| -> Result<()> {
            let fd = openat(
                p.dir.as_fd(),
                tmp.as_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("failed to open the new directory {}", what()))?;
            set_fd_meta(fd.as_fd(), meta, label, &what)?;
            fsync(fd.as_fd()).with_context(|| format!("failed to sync {}", what()))?;
            // Never over something that appeared meanwhile: that is an
            // error, as mkdir's would be.
            let placed = match renameat2(
                p.dir.as_fd(),
                tmp.as_str(),
                p.dir.as_fd(),
                p.name.as_str(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                // A filesystem without the flag: a rename can still only
                // replace an empty directory, never a file or contents.
                Err(Errno::EINVAL) => {
                    renameat(p.dir.as_fd(), tmp.as_str(), p.dir.as_fd(), p.name.as_str())
                }
                other => other,
            };
            placed.with_context(|| format!("failed to create directory {}", what()))?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = unlinkat(p.dir.as_fd(), tmp.as_str(), UnlinkatFlags::RemoveDir);
            return Err(e);
        }
        fsync(p.dir.as_fd())
            .with_context(|| format!("failed to sync the directory of {}", what()))?;
        Ok(())
    }

    /// Atomically creates or replaces a symlink at `host_path`, with its
    /// SELinux context (when given) set before it appears.
    pub fn symlink(&self, host_path: &str, target: &str, label: Option<&str>) -> Result<()> {
        let p = self.require_parent(host_path)?;
        let what = || self.display(host_path);
        let tmp = durable::temp_name(&p.name);
        symlinkat(target, p.dir.as_fd(), tmp.as_str())
            .with_context(|| format!("failed to create a temporary symlink for {}", what()))?;
        let placed = (|| -> Result<()> {
            if let Some(label) = label {
                selinux::set_entry(p.dir.as_fd(), &tmp, label)
                    .with_context(|| format!("failed to label {}", what()))?;
            }
            renameat(p.dir.as_fd(), tmp.as_str(), p.dir.as_fd(), p.name.as_str())
                .with_context(|| format!("failed to replace {}", what()))?;
            Ok(())
        })();
        if let Err(e) = placed {
            let _ = unlinkat(p.dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        fsync(p.dir.as_fd())
            .with_context(|| format!("failed to sync the directory of {}", what()))?;
        Ok(())
    }

    /// Writes a file driftless owns, root's and 0644, atomically and with
    /// the policy's label (a sysctl.d file, fstab). The plan creates
    /// missing directories above it; they are made here too when a restore
    /// or pruning writes it without one.
    pub fn write_labelled(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let policy = match self.selinux_policy()? {
            Some(fc) => Some(selinux::Policy::open(
                &self.path().join(fc.trim_start_matches('/')),
            )?),
            None => None,
        };
        let label = |p: &str, kind| match &policy {
            Some(policy) => policy.default_for(p, kind),
            None => Ok(None),
        };
        let mut missing = Vec::new();
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.and_then(Path::to_str).filter(|d| *d != "/") {
            if self.exists(d)? {
                break;
            }
            missing.push(d.to_owned());
            dir = Path::new(d).parent();
        }
        let dir_meta = FsMeta {
            uid: 0,
            gid: 0,
            mode: 0o755,
        };
        for d in missing.iter().rev() {
            self.create_dir(d, dir_meta, label(d, selinux::FileKind::Dir)?.as_deref())?;
        }
        let meta = FsMeta {
            uid: 0,
            gid: 0,
            mode: 0o644,
        };
        self.write_file(
            path,
            bytes,
            meta,
            label(path, selinux::FileKind::File)?.as_deref(),
        )
    }

    /// Removes a file or symlink (never what a symlink points to). Missing
    /// is success.
    pub fn remove_file(&self, host_path: &str) -> Result<()> {
        self.remove(host_path, UnlinkatFlags::NoRemoveDir)
    }

    /// Removes an empty directory. Missing is success.
    pub fn remove_dir(&self, host_path: &str) -> Result<()> {
        self.remove(host_path, UnlinkatFlags::RemoveDir)
    }

    fn remove(&self, host_path: &str, flags: UnlinkatFlags) -> Result<()> {
        let p = match self.parent(host_path)? {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        match unlinkat(p.dir.as_fd(), p.name.as_str(), flags) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(anyhow!(e))
                    .with_context(|| format!("failed to remove {}", self.display(host_path)));
            }
        }
        fsync(p.dir.as_fd()).with_context(|| {
            format!(
                "failed to sync the directory of {}",
                self.display(host_path)
            )
        })?;
        Ok(())
    }
}

/// One regular file of [`FsRoot::write_files`].
pub struct NewFile<'a> {
    /// Host path.
    pub path: &'a str,
    /// Its bytes.
    pub content: &'a [u8],
    /// Owner, group, mode.
    pub meta: FsMeta,
    /// SELinux context, when the root has a policy.
    pub label: Option<&'a str>,
}

/// Sets owner, group, mode (after the owner: chown clears setuid/setgid
/// bits) and the SELinux context of an open file or directory.
pub(super) fn set_fd_meta(
    fd: BorrowedFd<'_>,
    meta: FsMeta,
    label: Option<&str>,
    what: &dyn Fn() -> String,
) -> Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .with_context(|| format!("failed to change owner of {}", what()))?;
    fchmod(fd, Mode::from_bits_truncate(meta.mode))
        .with_context(|| format!("failed to change mode of {}", what()))?;
    if let Some(label) = label {
        durable::set_label(fd, label).with_context(|| format!("failed to label {}", what()))?;
    }
    Ok(())
}

/// The stat of `path` (followed if a link) as a [`StatKey`]; `None` when
/// nothing is there. For files driftless watches but never writes (the rpm
/// database).
pub(crate) fn stat_key_of(path: &Path) -> Result<Option<StatKey>> {
    match nix::sys::stat::stat(path) {
        Ok(st) => Ok(Some(stat_key(&st))),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to stat {}", path.display())),
    }
}

/// The parts of a stat that identify one version of a file.
fn stat_key(st: &FileStat) -> StatKey {
    StatKey {
        dev: st.st_dev,
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

fn meta_of(st: &FileStat) -> FsMeta {
    FsMeta {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
    }
}

/// Splits an absolute host path into its directory part and final name.
fn split(host_path: &str) -> Result<(&str, &str)> {
    let (dir, name) = host_path
        .rsplit_once('/')
        .filter(|_| host_path.starts_with('/'))
        .ok_or_else(|| anyhow!("`{host_path}` is not an absolute path"))?;
    if name.is_empty() || name == "." || name == ".." {
        bail!("`{host_path}` does not name a file");
    }
    Ok((dir, name))
}

/// Hashes a reader, keeping the bytes when they are few enough.
fn hash_reader(mut r: impl Read) -> std::io::Result<(u64, [u8; 32], Option<Vec<u8>>)> {
    let mut hasher = Sha256::new();
    let mut kept = Some(Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if size > KEEP_CONTENT_MAX {
            kept = None;
        } else if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
    }
    Ok((size, hasher.finalize().into(), kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sha256;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn root() -> (tempfile::TempDir, FsRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = FsRoot::open(dir.path()).expect("open root");
        (dir, r)
    }

    /// A configuration file is read whole up to its bound, refused past
    /// it (never cut short); a snapshot reads any size.
    #[test]
    fn a_config_file_past_its_bound_is_refused_not_cut() {
        let (dir, r) = root();
        std::fs::write(dir.path().join("fstab"), "0123456789").expect("write");
        assert_eq!(
            r.read_at_most("/fstab", 10).expect("at the bound"),
            b"0123456789"
        );
        let e = format!("{:#}", r.read_at_most("/fstab", 9).expect_err("past it"));
        assert!(e.contains("is larger than 9 bytes: not read"), "{e}");
        assert_eq!(r.read_file("/fstab").expect("whole").len(), 10);
        assert_eq!(r.read_config("/fstab").expect("config").len(), 10);
    }

    /// Observations sharing one [`Parents`] see exactly what fresh ones
    /// see: files in one directory, a missing parent, a parent reached
    /// through a symlink, and a symlink leaving the root (confined).
    #[test]
    fn observations_sharing_parents_match_fresh_ones() {
        let (dir, r) = root();
        let d = dir.path();
        std::fs::create_dir_all(d.join("etc/app")).expect("mkdir");
        std::fs::write(d.join("etc/app/a"), "a").expect("write");
        std::fs::write(d.join("etc/app/b"), "bb").expect("write");
        symlink("etc/app", d.join("via")).expect("symlink");
        symlink("/etc", d.join("abs")).expect("symlink");
        let paths = [
            "/etc/app/a",
            "/etc/app/b",
            "/etc/app/none",
            "/missing/deeper/x",
            "/missing/deeper/y",
            "/via/a",
            "/abs/app/b",
        ];
        let mut parents = Parents::default();
        for p in paths {
            let shared = r.observe_hinted(p, None, &mut parents).expect("observe").0;
            let fresh = r.observe(p).expect("observe");
            assert_eq!(format!("{shared:?}"), format!("{fresh:?}"), "{p}");
        }
        assert!(matches!(
            r.observe_hinted("/missing/deeper/y", None, &mut parents).expect("observe").0,
            Observed::Missing { ref missing_parents } if !missing_parents.is_empty()
        ));
    }

    const META: FsMeta = FsMeta {
        uid: 0,
        gid: 0,
        mode: 0o640,
    };

    fn me() -> FsMeta {
        FsMeta {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mode: 0o640,
        }
    }

    #[test]
    fn missing_parents_are_listed_outermost_first() {
        let (_d, r) = root();
        assert_eq!(
            r.observe("/a/b/c").expect("observe"),
            Observed::Missing {
                missing_parents: vec!["/a".into(), "/a/b".into()]
            }
        );
    }

    #[test]
    fn write_is_atomic_and_sets_metadata() {
        let (d, r) = root();
        r.write_file("/f", b"hello\n", me(), None).expect("write");
        let md = std::fs::metadata(d.path().join("f")).expect("stat");
        assert_eq!(md.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"hello\n");
        match r.observe("/f").expect("observe") {
            Observed::File {
                size,
                sha256: h,
                content,
                ..
            } => {
                assert_eq!(size, 6);
                assert_eq!(h, sha256(b"hello\n"));
                assert_eq!(content.as_deref(), Some(&b"hello\n"[..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path()).expect("ls").collect();
        assert_eq!(names.len(), 1);
        let _ = META;
    }

    #[test]
    fn final_symlink_is_replaced_not_followed() {
        let (d, r) = root();
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "precious").expect("write victim");
        symlink(&victim, d.path().join("f")).expect("plant symlink");
        assert!(matches!(
            r.observe("/f").expect("observe"),
            Observed::Symlink { .. }
        ));
        r.write_file("/f", b"new", me(), None).expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert!(
            !std::fs::symlink_metadata(d.path().join("f"))
                .expect("stat")
                .is_symlink()
        );
    }

    #[test]
    fn parent_symlinks_stay_inside_the_root() {
        let (d, r) = root();
        let outside = tempfile::tempdir().expect("tempdir");
        // An absolute link and a relative one that climbs above the root.
        symlink(outside.path(), d.path().join("abs")).expect("symlink");
        symlink("../../../../../../..", d.path().join("rel")).expect("symlink");
        std::fs::create_dir_all(
            d.path()
                .join(outside.path().strip_prefix("/").expect("abs")),
        )
        .expect("mirror dir inside root");
        r.write_file("/abs/x", b"1", me(), None)
            .expect("write through abs");
        r.write_file("/rel/y", b"2", me(), None)
            .expect("write through rel");
        assert!(
            !outside.path().join("x").exists(),
            "escaped through absolute link"
        );
        assert!(
            d.path()
                .join(outside.path().strip_prefix("/").expect("abs"))
                .join("x")
                .exists()
        );
        assert!(d.path().join("y").exists(), "`..` must stop at the root");
    }

    #[test]
    fn dangling_parent_symlink_is_an_error() {
        let (d, r) = root();
        symlink("/nowhere", d.path().join("p")).expect("symlink");
        let err = r.observe("/p/f").expect_err("dangling");
        assert!(err.to_string().contains("does not exist"), "{err:#}");
    }

    #[test]
    fn directories_and_symlinks() {
        let (d, r) = root();
        r.create_dir(
            "/d",
            FsMeta {
                mode: 0o750,
                ..me()
            },
            None,
        )
        .expect("mkdir");
        let md = std::fs::metadata(d.path().join("d")).expect("stat");
        assert_eq!(md.permissions().mode() & 0o7777, 0o750);
        assert_eq!(md.uid(), me().uid);
        assert!(matches!(
            r.observe("/d").expect("obs"),
            Observed::Dir { ref entries, .. } if entries.is_empty()
        ));
        r.symlink("/d/l", "/etc/target", None).expect("symlink");
        r.symlink("/d/l", "/etc/other", None)
            .expect("replace symlink");
        assert_eq!(
            r.observe("/d/l").expect("obs"),
            Observed::Symlink {
                target: "/etc/other".into(),
                label: None,
            }
        );
        assert!(matches!(
            r.observe("/d").expect("obs"),
            Observed::Dir { ref entries, .. } if !entries.is_empty()
        ));
        r.remove_file("/d/l").expect("rm");
        r.remove_dir("/d").expect("rmdir");
        r.remove_dir("/d").expect("rmdir twice is fine");
        assert!(matches!(
            r.observe("/d").expect("obs"),
            Observed::Missing { .. }
        ));
    }

    /// Random mazes of directories and symlinks (absolute, relative,
    /// climbing, pointing outside): whatever path is written, nothing
    /// outside the root is ever created or changed.
    #[test]
    fn no_symlink_maze_leads_a_write_out_of_the_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("victim"), "precious").expect("write");
        let out = outside.path().to_str().expect("utf-8").to_owned();
        let targets = [
            "/".to_owned(),
            "..".to_owned(),
            "../..".to_owned(),
            "../../../../..".to_owned(),
            out.clone(),
            format!("{out}/victim"),
            "/a".to_owned(),
            "a/b".to_owned(),
            "/etc/../..".to_owned(),
            ".".to_owned(),
            "/nowhere".to_owned(),
        ];
        let names = ["a", "b", "etc", "x"];
        // A small deterministic PRNG: the test is the same every run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut written = 0;
        for _ in 0..200 {
            let (d, r) = root();
            for _ in 0..6 {
                let depth = 1 + next(3);
                let dirs: Vec<&str> = (0..depth).map(|_| names[next(names.len())]).collect();
                // The maze is built with plain std::fs, which follows
                // symlinks: never build through one (only driftless's own
                // calls are under test).
                let mut parent = d.path().to_path_buf();
                let mut through_link = false;
                for c in &dirs[..depth - 1] {
                    parent.push(c);
                    match std::fs::symlink_metadata(&parent) {
                        Ok(m) if m.file_type().is_symlink() => through_link = true,
                        Ok(_) => {}
                        Err(_) => {
                            let _ = std::fs::create_dir(&parent);
                        }
                    }
                    if through_link {
                        break;
                    }
                }
                if through_link {
                    continue;
                }
                let leaf = parent.join(dirs[depth - 1]);
                if next(2) == 0 {
                    let _ = symlink(&targets[next(targets.len())], &leaf);
                } else {
                    let _ = std::fs::create_dir(&leaf);
                }
            }
            for _ in 0..6 {
                let depth = 1 + next(4);
                let path: String = (0..depth)
                    .map(|_| format!("/{}", names[next(names.len())]))
                    .collect();
                written +=
                    usize::from(r.write_file(&format!("{path}/f"), b"x", me(), None).is_ok());
                let _ = r.symlink(&format!("{path}/l"), "/x", None);
                let _ = r.create_dir(&format!("{path}/d"), me(), None);
                let _ = r.remove_file(&format!("{path}/victim"));
            }
            let entries: Vec<_> = std::fs::read_dir(outside.path()).expect("ls").collect();
            assert_eq!(entries.len(), 1, "something was created outside the root");
            assert_eq!(
                std::fs::read_to_string(outside.path().join("victim")).expect("read"),
                "precious"
            );
        }
        // Many writes went through links, so the mazes were walked.
        assert!(
            written > 100,
            "only {written} writes succeeded: the test proves little"
        );
    }
}
