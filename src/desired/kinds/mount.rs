//! `[[mount]]`: a filesystem mount, as Ansible's `mount` and Puppet's
//! `mount` manage it: its line in `/etc/fstab` (one line per mount point,
//! every other line untouched) and whether it is mounted now, with which
//! options. Both are facets of one setting ([`Prim::Setting`], domain
//! [`Domain::Mount`]): a hand edit of the line, an unmount or a remount
//! with other options is healed; rollback and pruning put both back.
//!
//! The live facet compares what the kernel keeps per mount and shows in
//! `/proc/self/mountinfo`: the filesystem type and the flags `ro`/`rw`,
//! `nosuid`, `nodev`, `noexec`, the atime flags, `nodiratime`,
//! `nosymfollow`. Options of the filesystem itself (`size=`, `mode=`) go
//! into the line and apply at a mount, but are not compared live: the
//! kernel shows them in its own units (`size=2G` is `size=2097152k`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    Decl, Domain, Facets, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, SettingDecl,
};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{self, Fields};

/// The facet of the fstab line (`None`: no line for the mount point).
pub(crate) const FSTAB: &str = "fstab";
/// The facet of the live mount: `FSTYPE FLAGS` (`None`: not mounted).
pub(crate) const MOUNTED: &str = "mounted";

/// Mount points never unmounted: the host would not survive it.
const VITAL: [&str; 3] = ["/", "/usr", "/var"];

/// One mount point's line and live state; a facet `None` is not managed
/// (`state = "present"` leaves the live state alone, `"unmounted"` the
/// line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The mount point (absolute).
    pub path: String,
    /// The fstab line, if managed: `Some(None)` is no line.
    pub fstab: Option<Option<String>>,
    /// The live state, if managed: `Some(None)` is not mounted, else
    /// `FSTYPE FLAGS` as [`live_of`] makes it.
    pub mounted: Option<Option<String>>,
}

impl Identity for Mount {
    fn key(&self) -> &str {
        &self.path
    }
}

/// What a `state` asks of the line and of the live mount.
#[derive(Clone, Copy)]
enum State {
    Mounted,
    Unmounted,
    Present,
    Absent,
}

impl KindDef for Mount {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "path", "device", "fstype", "options", "dump", "passno", "state", "prune",
    ];
    const PRIM: PrimKind = PrimKind::Setting;

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let path = f.required_string(p.cx, "path");
        let path = path.and_then(|s| p.checked(&s, checks::mount_point).map(|()| s.into_inner()));
        let state = state(p, f);
        let field = |key: &str, required: bool, default: &str| -> Option<String> {
            let Some(v) = f.string(p.cx, key) else {
                if required {
                    p.cx.error(
                        &f.span(),
                        format!(
                            "[[mount]] needs `{key}` unless `state = \"absent\"` or `\"unmounted\"`"
                        ),
                    );
                    return None;
                }
                return Some(default.to_owned());
            };
            let text = v.get_ref();
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c == '#') {
                p.cx.error(
                    &v.span(),
                    format!("`{key}` must be one word without spaces or `#` (an fstab field), not `{text}`"),
                );
                return None;
            }
            Some(text.clone())
        };
        let (path, state) = (path?, state?);
        let needs_line = matches!(state, State::Mounted | State::Present);
        let device = field("device", needs_line, "");
        let fstype = field("fstype", needs_line, "");
        let options = field("options", false, "defaults");
        let dump = number(p, f, "dump");
        let passno = number(p, f, "passno");
        if !needs_line && VITAL.contains(&path.as_str()) {
            p.cx.error(
                &f.span(),
                format!("refusing to unmount {path}: the host cannot run without it"),
            );
            return None;
        }
        let (device, fstype, options) = (device?, fstype?, options?);
        if matches!(state, State::Mounted) && fstype == "auto" {
            p.cx.error(
                &f.span(),
                "`fstype = \"auto\"` cannot be checked against the live mount (the kernel shows the type it found): name the type",
            );
            return None;
        }
        let line = format!(
            "{device} {} {fstype} {options} {} {}",
            escape(&path),
            dump?,
            passno?
        );
        let (fstab, mounted) = match state {
            State::Mounted => (Some(Some(line)), Some(Some(live_of(&fstype, &options)))),
            State::Present => (Some(Some(line)), None),
            State::Unmounted => (None, Some(None)),
            State::Absent => (Some(None), Some(None)),
        };
        Some(Parsed::plain(Mount {
            path,
            fstab,
            mounted,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Setting(SettingDecl {
            domain: Domain::Mount,
            name: &self.path,
            // The line first: a mount reads it.
            facets: [facet(FSTAB, &self.fstab), facet(MOUNTED, &self.mounted)]
                .into_iter()
                .flatten()
                .collect(),
            ignore_missing: false,
        })
    }

    fn from_facets(key: &str, facets: &Facets) -> Option<Self> {
        let get = |facet: &str| {
            facets
                .iter()
                .find(|(k, _)| k == facet)
                .map(|(_, v)| v.clone())
        };
        Some(Mount {
            path: key.to_owned(),
            fstab: get(FSTAB),
            mounted: get(MOUNTED),
        })
    }
}

/// A managed facet as a setting declares it.
fn facet<'a>(
    name: &'static str,
    value: &'a Option<Option<String>>,
) -> Option<(&'static str, Option<Cow<'a, str>>)> {
    value
        .as_ref()
        .map(|v| (name, v.as_deref().map(Cow::Borrowed)))
}

/// `state`: `mounted` (the default), `unmounted`, `present`, `absent`.
fn state(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<State> {
    let Some(s) = f.string(p.cx, "state") else {
        return Some(State::Mounted);
    };
    Some(match s.get_ref().as_str() {
        "mounted" => State::Mounted,
        "unmounted" => State::Unmounted,
        "present" => State::Present,
        "absent" => State::Absent,
        other => {
            p.cx.error(
                &s.span(),
                schema::unknown_state(other, &["mounted", "unmounted", "present", "absent"]),
            );
            return None;
        }
    })
}

/// `dump` or `passno`: 0 (the default) to 9.
fn number(p: &Parser<'_, '_>, f: &Fields<'_, '_>, key: &str) -> Option<u8> {
    let Some(n) = f.unsigned(p.cx, key) else {
        return Some(0);
    };
    match u8::try_from(*n.get_ref()) {
        Ok(v) if v <= 9 => Some(v),
        _ => {
            p.cx.error(&n.span(), format!("`{key}` must be 0 to 9"));
            None
        }
    }
}

/// A path as an fstab field: a space, a tab, a newline and a backslash
/// written in octal, as fstab(5) says.
pub(crate) fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// The per-mount flags the kernel keeps, in the order mountinfo shows
/// them (fs/proc_namespace.c).
const FLAG_ORDER: [&str; 9] = [
    "ro",
    "rw",
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
    "nodiratime",
    "relatime",
    "nosymfollow",
];

/// The live facet a mount with `fstype` and fstab `options` has:
/// `FSTYPE FLAGS`, the flags as the kernel keeps them (mount(8)'s
/// defaults: `rw`, `relatime`).
pub(crate) fn live_of(fstype: &str, options: &str) -> String {
    let mut flags: Vec<&str> = vec!["rw", "relatime"];
    for option in options.split(',') {
        let (add, drop): (Option<&str>, &[&str]) = match option {
            "ro" => (Some("ro"), &["rw"]),
            "rw" => (Some("rw"), &["ro"]),
            "nosuid" | "nodev" | "noexec" | "nodiratime" | "nosymfollow" => {
                (FLAG_ORDER.iter().copied().find(|f| *f == option), &[])
            }
            "suid" => (None, &["nosuid"]),
            "dev" => (None, &["nodev"]),
            "exec" => (None, &["noexec"]),
            "diratime" => (None, &["nodiratime"]),
            "symfollow" => (None, &["nosymfollow"]),
            "defaults" => (Some("rw"), &["ro", "nosuid", "nodev", "noexec"]),
            "noatime" => (Some("noatime"), &["relatime"]),
            "relatime" => (Some("relatime"), &["noatime"]),
            "strictatime" => (None, &["noatime", "relatime"]),
            _ => (None, &[]),
        };
        flags.retain(|f| !drop.contains(f));
        flags.extend(add);
    }
    flags_in_order(fstype, &flags)
}

/// `FSTYPE FLAGS`: the known flags among `flags`, once each, in
/// mountinfo's order.
pub(crate) fn flags_in_order(fstype: &str, flags: &[&str]) -> String {
    // fstab's `nfs` mounts as version 4 where the server speaks it, which
    // the kernel shows as `nfs4`: one type, or every run would remount.
    let fstype = if fstype == "nfs4" { "nfs" } else { fstype };
    let ordered: Vec<&str> = FLAG_ORDER
        .into_iter()
        .filter(|f| flags.contains(f))
        .collect();
    format!("{fstype} {}", ordered.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_flags_the_kernel_shows() {
        assert_eq!(
            live_of("tmpfs", "nodev,nosuid,noexec,size=16m"),
            "tmpfs rw,nosuid,nodev,noexec,relatime"
        );
        assert_eq!(live_of("xfs", "defaults"), "xfs rw,relatime");
        assert_eq!(live_of("ext4", "ro,noatime,nodev"), "ext4 ro,nodev,noatime");
        assert_eq!(live_of("ext4", "nodev,dev,strictatime"), "ext4 rw");
        assert_eq!(escape("/srv/my data"), "/srv/my\\040data");
        assert_eq!(
            flags_in_order("nfs4", &["rw", "relatime"]),
            live_of("nfs", "rw")
        );
    }
}
