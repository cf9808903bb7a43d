//! Mounts ([`Domain::Mount`](crate::desired::kinds::Domain)): a mount
//! point's line in the root's `/etc/fstab`, and on the running host its
//! live mount as `/proc/self/mountinfo` shows it (no subprocess: a no-op
//! is two small reads). Changes go through `mount` and `umount`; the line
//! is written with every other line of the file kept as it was.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cancel::Cancel;
use crate::desired::kinds::Facets;
use crate::desired::kinds::mount::{FSTAB, MOUNTED, escape, flags_in_order};
use crate::plan::observed::{FsMeta, SettingObs};
use crate::system::command::Cmd;
use crate::system::environment::Environment;
use crate::system::fsroot::FsRoot;

/// The file of static mounts.
const FSTAB_PATH: &str = "/etc/fstab";

/// The running host's mount table, as this process sees it (the host's
/// mount namespace: driftless runs in it).
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The most of the mount table read (tens of thousands of mounts).
const MOUNTINFO_MAX: u64 = 16 << 20;

/// The running host's mount table, bounded: a larger one is an error,
/// never a table cut short (a mount past the cut would look unmounted).
fn mountinfo() -> Result<String> {
    super::read_text_at_most(std::path::Path::new(MOUNTINFO), MOUNTINFO_MAX)
        .with_context(|| format!("failed to read {MOUNTINFO}"))
}

/// Why a live mount is left alone with `--root`.
pub(super) const NOT_LIVE: &str = "mounts are changed on the running host only, not with --root";

/// The facets `facets` of the mount point `path`.
pub(super) fn read(root: &FsRoot, path: &str, facets: &[&str]) -> Result<SettingObs> {
    let mut obs = SettingObs::default();
    for facet in facets {
        let value = match *facet {
            FSTAB => line_of(&fstab_text(root)?, path)?,
            MOUNTED if !root.is_live() => {
                obs.not_here.push((MOUNTED.to_owned(), NOT_LIVE.to_owned()));
                continue;
            }
            MOUNTED => mounted(&mountinfo()?, path),
            other => bail!("a mount has no facet `{other}` (internal error)"),
        };
        obs.facets.push(((*facet).to_owned(), value));
    }
    Ok(obs)
}

/// Sets the facets of the mount point `path`: the line first (a mount
/// reads it), then the live mount (on the running host only).
pub(super) fn set(root: &FsRoot, path: &str, facets: &Facets, cancel: &Cancel) -> Result<()> {
    for (facet, value) in facets {
        match facet.as_str() {
            FSTAB => write_line(root, path, value.as_deref())?,
            MOUNTED if !root.is_live() => {}
            MOUNTED => mount_as(root, path, value.as_deref(), cancel)?,
            other => bail!("a mount has no facet `{other}` (internal error)"),
        }
    }
    Ok(())
}

/// The root's fstab ("" when there is none).
fn fstab_text(root: &FsRoot) -> Result<String> {
    if !root.exists(FSTAB_PATH)? {
        return Ok(String::new());
    }
    let bytes = root.read_config(FSTAB_PATH)?;
    String::from_utf8(bytes).with_context(|| format!("{FSTAB_PATH} is not UTF-8 text"))
}

/// The mount point field of an fstab line (escaped as fstab writes it),
/// if the line is a mount and not a comment.
fn mount_point_of(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    line.split_whitespace().nth(1)
}

/// The line of `path` in `fstab`, its fields joined by one space and the
/// dump and pass fields filled in (`0`) when left out; an error when
/// several lines mount there (which one the host uses is unclear).
fn line_of(fstab: &str, path: &str) -> Result<Option<String>> {
    let want = escape(path);
    let lines: Vec<&str> = fstab
        .lines()
        .filter(|l| mount_point_of(l) == Some(want.as_str()))
        .collect();
    match lines.as_slice() {
        [] => Ok(None),
        [line] => {
            let mut fields: Vec<&str> = line.split_whitespace().collect();
            fields.resize(fields.len().max(6), "0");
            Ok(Some(fields.join(" ")))
        }
        several => bail!(
            "{FSTAB_PATH} has {} lines for {path}; keep one",
            several.len()
        ),
    }
}

/// `fstab` with the line of `path` replaced by `line` (in its place),
/// added at the end, or removed (`None`).
fn with_line(fstab: &str, path: &str, line: Option<&str>) -> String {
    let want = escape(path);
    let mut out = String::with_capacity(fstab.len() + 128);
    let mut placed = false;
    for l in fstab.lines() {
        if mount_point_of(l) == Some(want.as_str()) {
            if let (Some(new), false) = (line, placed) {
                out.push_str(new);
                out.push('\n');
                placed = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if let (Some(new), false) = (line, placed) {
        out.push_str(new);
        out.push('\n');
    }
    out
}

/// Writes the line of `path` (or removes it): the whole file, atomically,
/// root's, 0644 and with the policy's label, as fstab is.
fn write_line(root: &FsRoot, path: &str, line: Option<&str>) -> Result<()> {
    let old = fstab_text(root)?;
    let new = with_line(&old, path, line);
    if new == old {
        return Ok(());
    }
    root.write_labelled(FSTAB_PATH, new.as_bytes())
}

/// Undoes fstab's and mountinfo's octal escapes: the kernel writes a
/// space, tab, newline and backslash in paths as `\040`, `\011`, `\012`,
/// `\134`.
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The live facet of `path` from `mountinfo`: `FSTYPE FLAGS` of the mount
/// on top there (the last one listed), `None` when nothing is mounted.
fn mounted(mountinfo: &str, path: &str) -> Option<String> {
    mountinfo.lines().rev().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (mount, rest) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        if unescape(fields.get(4)?) != path {
            return None;
        }
        let flags: Vec<&str> = fields.get(5)?.split(',').collect();
        let fstype = rest.split(' ').next()?;
        Some(flags_in_order(fstype, &flags))
    })
}

/// Mounts `path` as `want` says (`FSTYPE FLAGS`), remounts it with other
/// flags, or unmounts it (`None`).
fn mount_as(root: &FsRoot, path: &str, want: Option<&str>, cancel: &Cancel) -> Result<()> {
    let have = mounted(&mountinfo()?, path);
    let run = |args: &[&str]| -> Result<()> {
        Cmd::new(args[0])
            .args(&args[1..])
            .timeout(Duration::from_secs(120))
            .run(cancel)
            .map(|_| ())
            .map_err(anyhow::Error::from)
    };
    match (have.as_deref(), want) {
        (None, None) => Ok(()),
        (Some(_), None) => unmount(path, &run),
        (None, Some(_)) => {
            if !root.exists(path)? {
                root.create_dir(
                    path,
                    FsMeta {
                        uid: 0,
                        gid: 0,
                        mode: 0o755,
                    },
                    None,
                )?;
            }
            run(&["mount", "--", path])
        }
        (Some(h), Some(w)) if h == w => Ok(()),
        (Some(h), Some(w)) => {
            let (have_type, _) = h.split_once(' ').unwrap_or((h, ""));
            let (want_type, flags) = w.split_once(' ').unwrap_or((w, ""));
            if have_type != want_type {
                // Another filesystem there: mounted again from the line.
                unmount(path, &run)?;
                return run(&["mount", "--", path]);
            }
            // The flags the kernel keeps change in place, without an
            // unmount: what is open there stays open.
            run(&["mount", "-o", &format!("remount,{flags}"), "--", path])
        }
    }
}

/// Unmounts `path`, refusing while a process has a file open there or
/// works in it (an unmount would fail, or a lazy one hide the files).
fn unmount(path: &str, run: &dyn Fn(&[&str]) -> Result<()>) -> Result<()> {
    // The host's state, not the desired one, is to blame: tried again on
    // the next run, never quarantined.
    if let Some(user) = user_of(path) {
        return Err(
            Environment(format!("refusing to unmount {path}: it is in use ({user})")).into(),
        );
    }
    run(&["umount", "--", path])
}

/// A process with a file open under `path`, or its working directory or
/// root there: `PID (COMMAND)`.
fn user_of(path: &str) -> Option<String> {
    let under = |target: &std::path::Path| {
        target == std::path::Path::new(path) || target.starts_with(format!("{path}/"))
    };
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = entry.path();
        let links = ["cwd", "root"].into_iter().map(|l| dir.join(l)).chain(
            std::fs::read_dir(dir.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|fd| fd.path()),
        );
        let busy = links
            .filter_map(|l| std::fs::read_link(l).ok())
            .any(|t| under(&t));
        if busy {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            return Some(format!("process {pid} ({})", comm.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_a_mount_point_is_found_replaced_added_and_removed() {
        let fstab = "# static\nUUID=1 / xfs defaults 0 0\ntmpfs /srv/a\\040b tmpfs nodev\n/dev/sdb1 /data ext4 defaults 0 2\n";
        assert_eq!(
            line_of(fstab, "/srv/a b").unwrap().as_deref(),
            Some("tmpfs /srv/a\\040b tmpfs nodev 0 0")
        );
        assert_eq!(line_of(fstab, "/srv").unwrap(), None);
        let replaced = with_line(
            fstab,
            "/srv/a b",
            Some("tmpfs /srv/a\\040b tmpfs noexec 0 0"),
        );
        assert_eq!(
            replaced,
            "# static\nUUID=1 / xfs defaults 0 0\ntmpfs /srv/a\\040b tmpfs noexec 0 0\n/dev/sdb1 /data ext4 defaults 0 2\n"
        );
        assert_eq!(
            with_line(fstab, "/srv/a b", None),
            "# static\nUUID=1 / xfs defaults 0 0\n/dev/sdb1 /data ext4 defaults 0 2\n"
        );
        assert!(with_line("", "/tmp", Some("tmpfs /tmp tmpfs defaults 0 0")).ends_with("0 0\n"));
        assert!(line_of("a /x t o\nb /x t o\n", "/x").is_err());
    }

    #[test]
    fn the_mount_on_top_of_a_point_is_read_from_mountinfo() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - xfs /dev/sda1 rw\n\
                    40 22 0:33 / /srv/a\\040b rw,nosuid,nodev,relatime shared:2 - tmpfs tmpfs rw,size=16384k\n\
                    41 40 0:34 / /srv/a\\040b rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw\n";
        assert_eq!(
            mounted(info, "/srv/a b").as_deref(),
            Some("tmpfs rw,nosuid,nodev,noexec,relatime")
        );
        assert_eq!(mounted(info, "/srv"), None);
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
    }
}
