//! Reading a tar archive's entries and deciding whether each may be
//! extracted: the one definition of a safe entry, used by the planner
//! (which reads the whole archive before anything changes, so a hostile
//! one is refused with nothing written) and by the extraction
//! (`system::archive`, which reads it again as it writes).
//!
//! Refused: absolute paths, `..` components, names that are not UTF-8,
//! symlinks whose target is absolute or leaves the directory (checked
//! lexically, and a target that passes through another symlink of the
//! archive is refused, since lexical checks cannot see through it),
//! entries under a symlink of the archive, hardlinks to anything but a
//! regular file the archive extracted before, devices, FIFOs, sparse
//! files, the marker's own name, a file twice; and archives over the entry
//! count or extracted size caps.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::desired::model::ArchiveFormat;

/// The file in an extracted directory that records what was extracted.
pub(crate) const MARKER: &str = ".driftless-archive";

/// The bounds of one extraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most entries an archive may have.
    pub entries: usize,
    /// Most bytes its regular files may hold, together.
    pub bytes: u64,
}

/// The default bounds: 100 000 entries, 4 GiB extracted. A gzip stream
/// can expand a thousandfold, so the download cap does not bound this.
pub(crate) const LIMITS: Limits = Limits {
    entries: 100_000,
    bytes: 4 << 30,
};

/// What one entry is, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A directory.
    Dir,
    /// A regular file of this many bytes.
    File(u64),
    /// A symlink with this target, verbatim.
    Symlink(String),
    /// A hard link to this entry (a path relative to the directory).
    Hardlink(String),
}

/// One entry that may be extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its path relative to the directory, components joined by `/`, with
    /// the stripped ones gone.
    pub path: String,
    /// What it is.
    pub item: Item,
    /// Its permission bits (setuid and setgid dropped: an archive from
    /// the network does not make privileged programs).
    pub mode: u32,
}

/// What a whole archive holds, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Entries extracted (those left out by `strip_components` not
    /// counted).
    pub entries: usize,
    /// Bytes of their regular files.
    pub bytes: u64,
}

/// What the marker of a directory holds: the archive extracted there
/// and how (a changed `strip_components` extracts again).
pub(crate) fn marker_text(sha256_hex: &str, strip: u32) -> String {
    format!(
        "# Extracted by driftless; it extracts again when this file is removed or changed.\nsha256 {sha256_hex}\nstrip_components {strip}\n"
    )
}

/// How the marker `have` differs from `want`, in words.
pub(crate) fn marker_difference(have: &str, want: &str) -> String {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    let (h, w) = (field(have, "sha256 "), field(want, "sha256 "));
    match (h, w) {
        (Some(h), Some(w)) if h != w => format!("holds archive sha256 {h}, should be {w}"),
        (Some(_), _) => match (
            field(have, "strip_components "),
            field(want, "strip_components "),
        ) {
            (Some(h), Some(w)) if h != w => {
                format!("was extracted with strip_components {h}, should be {w}")
            }
            _ => format!("its {MARKER} was changed"),
        },
        (None, _) => format!("its {MARKER} was changed"),
    }
}

/// The decompressed tar stream of `bytes`.
pub(crate) fn stream(bytes: &[u8], format: ArchiveFormat) -> Box<dyn Read + '_> {
    match format {
        ArchiveFormat::TarGz => Box::new(flate2::read::GzDecoder::new(bytes)),
        ArchiveFormat::Tar => Box::new(bytes),
    }
}

/// A reader that fails once it has given `left` bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other("the archive decompresses to more than its bounds allow")
        })?;
        Ok(n)
    }
}

/// Reads every entry of the archive `bytes`, checks it, and hands each
/// one that is extracted to `each` with its data (a regular file's bytes;
/// empty for the rest). Stops at the first problem, in words naming the
/// entry.
pub(crate) fn walk(
    bytes: &[u8],
    format: ArchiveFormat,
    strip: u32,
    limits: Limits,
    each: &mut dyn FnMut(&Entry, &mut dyn Read) -> Result<(), String>,
) -> Result<Listing, String> {
    // The whole decompressed stream is bounded, not only what the entries
    // say: a PAX record or a GNU long name is read whole by the tar crate.
    let bound = limits.bytes.saturating_add(
        u64::try_from(limits.entries)
            .unwrap_or(u64::MAX)
            .saturating_mul(4096),
    );
    let mut archive = tar::Archive::new(Bounded {
        inner: stream(bytes, format),
        left: bound,
    });
    let unreadable = |e: std::io::Error| format!("not a readable {} archive: {e}", format.as_str());
    let mut seen = Seen::default();
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let Some(checked) = check(&entry, strip)? else {
            continue;
        };
        seen.add(&checked, limits)?;
        each(&checked, &mut entry)?;
    }
    seen.finish()?;
    Ok(seen.listing)
}

/// Checks one entry on its own; `None` for one `strip_components` leaves
/// out (or the directory itself, `./`).
fn check<R: Read>(entry: &tar::Entry<'_, R>, strip: u32) -> Result<Option<Entry>, String> {
    let raw = entry.path_bytes();
    let name = std::str::from_utf8(&raw).map_err(|_| {
        format!(
            "entry `{}` has a name that is not UTF-8",
            raw.escape_ascii()
        )
    })?;
    let Some(path) = relative(name, strip)? else {
        return Ok(None);
    };
    let refuse = |why: &str| Err(format!("entry `{name}` {why}"));
    if path == MARKER {
        return refuse("has the name of driftless's own marker");
    }
    let header = entry.header();
    let item = match header.entry_type() {
        // The size the data has, a PAX `size` record's if there is one
        // (the header's may say 0): what is counted is what is read.
        tar::EntryType::Regular | tar::EntryType::Continuous => Item::File(entry.size()),
        tar::EntryType::Directory => Item::Dir,
        tar::EntryType::Symlink => Item::Symlink(link_target(entry, name)?),
        tar::EntryType::Link => {
            let target = link_target(entry, name)?;
            let within = relative(&target, strip)
                .map_err(|why| format!("entry `{name}` is a hard link outside: {why}"))?;
            match within {
                Some(t) => Item::Hardlink(t),
                None => {
                    return refuse(&format!(
                        "is a hard link to `{target}`, which is not extracted"
                    ));
                }
            }
        }
        tar::EntryType::Char | tar::EntryType::Block => return refuse("is a device"),
        tar::EntryType::Fifo => return refuse("is a FIFO"),
        tar::EntryType::GNUSparse => return refuse("is a sparse file"),
        other => {
            return refuse(&format!(
                "is of a type driftless does not extract ({other:?})"
            ));
        }
    };
    let mode = header.mode().map_err(|e| format!("entry `{name}`: {e}"))? & 0o1777;
    if let Item::Symlink(target) = &item {
        inside(&path, target)
            .map_err(|why| format!("entry `{name}` is a symlink to `{target}`, {why}"))?;
    }
    Ok(Some(Entry { path, item, mode }))
}

/// A link's target, as written.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<String, String> {
    let raw = entry
        .link_name_bytes()
        .ok_or_else(|| format!("entry `{name}` is a link without a target"))?;
    let target = std::str::from_utf8(&raw)
        .map_err(|_| format!("entry `{name}` links to a name that is not UTF-8"))?;
    if target.is_empty() || target.contains('\0') {
        return Err(format!("entry `{name}` is a link without a target"));
    }
    Ok(target.to_owned())
}

/// An entry's name as a path relative to the directory, `strip` leading
/// components dropped; `None` when nothing is left. Absolute names and
/// `..` are refused before anything is stripped.
fn relative(name: &str, strip: u32) -> Result<Option<String>, String> {
    if name.starts_with('/') {
        return Err(format!("entry `{name}` has an absolute path"));
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("entry `{name}` has a `..` component"));
    }
    let kept = parts.get(strip as usize..).unwrap_or_default();
    Ok((!kept.is_empty()).then(|| kept.join("/")))
}

/// Whether the symlink at `path` with `target` stays inside the directory
/// (read lexically from the link's own directory).
fn inside(path: &str, target: &str) -> Result<(), String> {
    if target.starts_with('/') {
        return Err("an absolute path outside the directory".to_owned());
    }
    let mut depth = path.split('/').count() - 1;
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "which leaves the directory".to_owned())?;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// What the entries so far hold, for the checks across entries.
#[derive(Default)]
struct Seen {
    listing: Listing,
    /// Every path extracted, and whether it is a directory.
    paths: BTreeMap<String, bool>,
    /// Regular files (what a hard link may point to).
    files: BTreeSet<String>,
    /// Symlinks, with their targets.
    links: BTreeMap<String, String>,
}

impl Seen {
    /// Counts `e` against `limits` and checks it against what came before.
    fn add(&mut self, e: &Entry, limits: Limits) -> Result<(), String> {
        self.listing.entries += 1;
        if self.listing.entries > limits.entries {
            return Err(format!(
                "it has more than {} entries, the most driftless extracts",
                limits.entries
            ));
        }
        let is_dir = e.item == Item::Dir;
        match self.paths.insert(e.path.clone(), is_dir) {
            Some(true) if is_dir => {}
            Some(_) => return Err(format!("entry `{}` appears twice", e.path)),
            None => {}
        }
        match &e.item {
            Item::File(size) => {
                self.listing.bytes = self.listing.bytes.saturating_add(*size);
                if self.listing.bytes > limits.bytes {
                    return Err(format!(
                        "its files hold more than {} bytes, the most driftless extracts",
                        limits.bytes
                    ));
                }
                self.files.insert(e.path.clone());
            }
            Item::Hardlink(target) if !self.files.contains(target) => {
                return Err(format!(
                    "entry `{}` is a hard link to `{target}`, which is not a file extracted before it",
                    e.path
                ));
            }
            Item::Symlink(target) => {
                self.links.insert(e.path.clone(), target.clone());
            }
            Item::Hardlink(_) | Item::Dir => {}
        }
        Ok(())
    }

    /// The checks that need every entry: nothing is extracted under a
    /// symlink, and no symlink's target passes through another one.
    fn finish(&self) -> Result<(), String> {
        let under_link = |path: &str| {
            path.match_indices('/')
                .map(|(i, _)| &path[..i])
                .find(|prefix| self.links.contains_key(*prefix))
                .map(str::to_owned)
        };
        for path in self.paths.keys() {
            if let Some(link) = under_link(path) {
                return Err(format!(
                    "entry `{path}` is under `{link}`, a symlink of the archive"
                ));
            }
        }
        for (path, target) in &self.links {
            let mut at: Vec<&str> = path.split('/').collect();
            at.pop();
            for comp in target.split('/') {
                match comp {
                    "" | "." => continue,
                    ".." => {
                        at.pop();
                    }
                    c => at.push(c),
                }
                let through = at.join("/");
                if through != *path && self.links.contains_key(&through) {
                    return Err(format!(
                        "entry `{path}` is a symlink to `{target}`, which passes through `{through}`, another symlink of the archive"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar archive of `(name, type, data or link target)`.
    fn tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_old();
            h.set_entry_type(*kind);
            h.set_mode(0o4755);
            // Names are written raw: the builder itself refuses `..`.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if matches!(kind, L | Link) {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).expect("append");
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).expect("append");
            }
        }
        b.into_inner().expect("finish")
    }

    fn listed(bytes: &[u8], strip: u32, limits: Limits) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        walk(bytes, ArchiveFormat::Tar, strip, limits, &mut |e, _| {
            out.push(e.clone());
            Ok(())
        })?;
        Ok(out)
    }

    use tar::EntryType::{Block, Directory as D, Fifo, Link, Regular as F, Symlink as L};

    #[test]
    fn a_release_tarball_is_stripped_and_kept_to_its_modes() {
        let t = tar(&[
            ("app-1.0/", D, ""),
            ("app-1.0/bin/app", F, "binary"),
            ("app-1.0/LICENSE", F, "text"),
            ("app-1.0/current", L, "bin/app"),
            ("app-1.0/same", Link, "app-1.0/LICENSE"),
        ]);
        let e = listed(&t, 1, LIMITS).expect("safe");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["bin/app", "LICENSE", "current", "same"]);
        assert_eq!(e[0].mode, 0o755, "setuid dropped");
        assert_eq!(e[3].item, Item::Hardlink("LICENSE".into()));
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        for (entries, word) in [
            (vec![("../evil", F, "x")], "`..`"),
            (vec![("/etc/passwd", F, "x")], "absolute"),
            (vec![("a/../../b", F, "x")], "`..`"),
            (vec![("out", L, "/etc")], "absolute"),
            (vec![("d/out", L, "../../etc")], "leaves"),
            (vec![("dev", Block, "")], "device"),
            (vec![("fifo", Fifo, "")], "FIFO"),
            (vec![("link", L, "."), ("link/x", F, "y")], "under `link`"),
            (vec![("x", F, "1"), ("x", F, "2")], "twice"),
            (vec![("h", Link, "nothing")], "hard link"),
            (vec![(MARKER, F, "sha256 0")], "marker"),
            (
                vec![("d/up", L, ".."), ("esc", L, "d/up/..")],
                "passes through",
            ),
        ] {
            let e = listed(&tar(&entries), 0, LIMITS).expect_err(word);
            assert!(e.contains(word), "{word}: {e}");
        }
    }

    #[test]
    fn the_caps_bound_entries_and_bytes() {
        let t = tar(&[("a", F, "1234"), ("b", F, "5678")]);
        let few = Limits {
            entries: 1,
            bytes: 100,
        };
        assert!(listed(&t, 0, few).expect_err("count").contains("entries"));
        let small = Limits {
            entries: 10,
            bytes: 6,
        };
        assert!(listed(&t, 0, small).expect_err("size").contains("bytes"));
        assert!(listed(b"not a tar at all, not even close......", 0, LIMITS).is_err());
    }
}
