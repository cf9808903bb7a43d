//! SELinux file labels: the context the root's own policy gives a path
//! (libselinux's `selabel_lookup`, the lookup `restorecon`, `matchpathcon`
//! and rpm make), and the `security.selinux` attribute of a file,
//! directory or symlink, read and set by descriptor.
//!
//! The lookup is libselinux's, not ours: its matching rules (the last
//! matching line wins, except that a line without regular expression
//! characters beats every pattern; `.local` and `.homedirs` files; the
//! `.subs` and `.subs_dist` path equivalences; compiled `.bin` files) are
//! what every other tool on the host follows, and a second matcher would
//! disagree with them somewhere.
//!
//! Labels are set with `fsetxattr` on an open descriptor (or on the entry
//! through `/proc/self/fd/DIR/NAME` for a symlink, which has no descriptor
//! one can write through), never with `setfscreatecon`: that needs SELinux
//! enabled in the running kernel, and the descriptor way also works on a
//! root converged from a host without SELinux (an image being built).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use selinux::SecurityContext;
use selinux::label::{Labeler, back_end};

/// The root's SELinux configuration: which policy is in force.
pub(crate) const CONFIG: &str = "/etc/selinux/config";

/// What a label is looked up for: the policy's lines may depend on it
/// (`--` regular files only, `-d` directories, `-l` symlinks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

impl FileKind {
    fn mode(self) -> i32 {
        let m = match self {
            FileKind::File => nix::sys::stat::SFlag::S_IFREG,
            FileKind::Dir => nix::sys::stat::SFlag::S_IFDIR,
            FileKind::Symlink => nix::sys::stat::SFlag::S_IFLNK,
        };
        i32::try_from(m.bits()).unwrap_or(0)
    }
}

/// The file contexts of a root's SELinux policy, opened for lookups.
pub(crate) struct Policy {
    labeler: Labeler<back_end::File>,
    file_contexts: PathBuf,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("file_contexts", &self.file_contexts)
            .finish()
    }
}

/// The host path of the `file_contexts` that the root SELinux
/// configuration `config` (the text of `/etc/selinux/config`) puts in
/// force, or `None` when it says `SELINUX=disabled`.
pub(crate) fn policy_file(config: &str) -> Result<Option<String>, String> {
    Ok(policy_type(config)?.map(|t| format!("/etc/selinux/{t}/contexts/files/file_contexts")))
}

impl Policy {
    /// Opens the policy whose `file_contexts` is at `file_contexts` (a
    /// real path, the root's included).
    pub(crate) fn open(file_contexts: &Path) -> Result<Self> {
        Ok(Self {
            labeler: open_labeler(file_contexts)?,
            file_contexts: file_contexts.to_owned(),
        })
    }

    /// The `file_contexts` file the lookups read (with its `.local`,
    /// `.homedirs`, `.subs` and `.subs_dist` companions).
    pub(crate) fn file_contexts(&self) -> &Path {
        &self.file_contexts
    }

    /// The policy's context for `host_path` as a `kind`; `None` when the
    /// policy has no context for it (no line matches, or `<<none>>`: such
    /// paths are left as they are).
    pub(crate) fn default_for(&self, host_path: &str, kind: FileKind) -> Result<Option<String>> {
        let key = CString::new(host_path)
            .with_context(|| format!("{host_path} cannot be looked up in the SELinux policy"))?;
        match self.labeler.look_up(&key, kind.mode()) {
            Ok(ctx) => Ok(Some(text_of(ctx.as_bytes())).filter(|t| !t.is_empty())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow!(e)).with_context(|| {
                format!(
                    "failed to look up the SELinux context of {host_path} in {}",
                    self.file_contexts.display()
                )
            }),
        }
    }
}

/// `SELINUXTYPE` of a config, or `None` when `SELINUX=disabled`.
fn policy_type(config: &str) -> Result<Option<String>, String> {
    let mut policy_type = "targeted".to_owned();
    for line in config.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim() {
            "SELINUX" if value.eq_ignore_ascii_case("disabled") => return Ok(None),
            "SELINUXTYPE" => {
                let usable = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                    && value != "."
                    && value != "..";
                if !usable {
                    return Err(format!("SELINUXTYPE `{value}` is not a policy name"));
                }
                value.clone_into(&mut policy_type);
            }
            _ => {}
        }
    }
    Ok(Some(policy_type))
}

fn open_labeler(file_contexts: &Path) -> Result<Labeler<back_end::File>> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(file_contexts.as_os_str().as_bytes())
        .with_context(|| format!("unusable path {}", file_contexts.display()))?;
    // Raw contexts: what file_contexts holds and the attribute stores,
    // without mcstrans translating the range.
    Labeler::new(
        &[(selinux_sys::SELABEL_OPT_PATH, path.as_ptr().cast())],
        true,
    )
    .map_err(|e| anyhow!(e))
    .with_context(|| {
        format!(
            "failed to open the SELinux file contexts {}",
            file_contexts.display()
        )
    })
}

fn is_not_found(e: &selinux::errors::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(nix::libc::ENOENT))
}

/// A context as text: the attribute ends with a NUL that is not part of it.
fn text_of(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The label of the open file or directory `fd` (`None`: it has none).
pub(crate) fn of_fd(fd: BorrowedFd<'_>) -> Result<Option<String>> {
    SecurityContext::of_file(&fd.as_raw_fd(), true)
        .map(|c| c.map(|c| text_of(c.as_bytes())))
        .map_err(|e| anyhow!(e))
}

/// The path of `name` in the open directory `dir`, through `/proc`: the
/// directory is the one already resolved inside the root, and the final
/// name is not followed by the `l*` calls.
fn entry_path(dir: BorrowedFd<'_>, name: &str) -> Result<PathBuf> {
    if name.contains('/') || name == "." || name == ".." {
        bail!("`{name}` is not a single name");
    }
    Ok(PathBuf::from(format!(
        "/proc/self/fd/{}/{name}",
        dir.as_raw_fd()
    )))
}

/// The label of the entry `name` in `dir`, without following it (for a
/// symlink: the link's own label).
pub(crate) fn of_entry(dir: BorrowedFd<'_>, name: &str) -> Result<Option<String>> {
    SecurityContext::of_path(entry_path(dir, name)?, false, true)
        .map(|c| c.map(|c| text_of(c.as_bytes())))
        .map_err(|e| anyhow!(e))
}

/// Sets the label of the entry `name` in `dir`, without following it.
pub(crate) fn set_entry(dir: BorrowedFd<'_>, name: &str, label: &str) -> Result<()> {
    let text = c_label(label)?;
    SecurityContext::from_c_str(&text, true)
        .set_for_path(entry_path(dir, name)?, false, true)
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("failed to set the SELinux context {label}"))
}

fn c_label(label: &str) -> Result<CString> {
    CString::new(label).map_err(|_| anyhow!("SELinux context `{label}` holds a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_policy_or_disables_it() {
        assert_eq!(
            policy_type("SELINUX=enforcing\nSELINUXTYPE=targeted\n"),
            Ok(Some("targeted".into()))
        );
        assert_eq!(
            policy_type("# no type\nSELINUX=permissive\n"),
            Ok(Some("targeted".into()))
        );
        assert_eq!(
            policy_type("SELINUX=enforcing\nSELINUXTYPE=\"mls\"\n"),
            Ok(Some("mls".into()))
        );
        assert_eq!(
            policy_type("SELINUX=disabled\nSELINUXTYPE=targeted\n"),
            Ok(None)
        );
        assert!(policy_type("SELINUXTYPE=../../tmp\n").is_err());
    }

    #[test]
    fn a_label_is_its_text_without_the_nul() {
        assert_eq!(
            text_of(b"system_u:object_r:etc_t:s0\0"),
            "system_u:object_r:etc_t:s0"
        );
        assert_eq!(
            text_of(b"system_u:object_r:etc_t:s0"),
            "system_u:object_r:etc_t:s0"
        );
    }
}
