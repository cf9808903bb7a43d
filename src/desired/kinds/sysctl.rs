//! `[[sysctl]]`: one kernel parameter, applied live (`/proc/sys`) and
//! persisted in a file of its own that driftless owns,
//! `/etc/sysctl.d/90-driftless-NAME.conf`, so that the next boot keeps it.
//! Both are facets of one setting ([`Prim::Setting`], domain
//! [`Domain::Sysctl`]): drift of either (`sysctl -w`, an edited file) is
//! healed, and rollback and pruning put both back.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::{
    Decl, Domain, Facets, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, SettingDecl,
};
use crate::desired::parser::Parser;
use crate::desired::schema::{self, Fields};

/// Where the persisting files live.
pub(crate) const DIR: &str = "/etc/sysctl.d";

/// The facet of the live value (`/proc/sys/...`).
pub(crate) const LIVE: &str = "value";
/// The facet of the persisting file's content (`None`: no file).
pub(crate) const FILE: &str = "file";

/// One kernel parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    /// The parameter as written (`kernel.domainname`, or with slashes).
    pub name: String,
    /// The live value, normalised (words joined by one space); `None`:
    /// not managed (what pruning puts back for a key the kernel lacked).
    pub value: Option<String>,
    /// The persisting file's content; `None`: no file.
    pub file: Option<String>,
    /// A parameter this kernel does not have is skipped with a note.
    #[serde(default)]
    pub ignore_missing: bool,
}

/// The persisting file of `name`.
pub(crate) fn file_of(name: &str) -> String {
    format!("{DIR}/90-driftless-{}.conf", name.replace('/', "."))
}

/// A parameter's one name: with dots, as `sysctl -a` prints it. Written
/// with slashes (`net/ipv4/conf/eth0.1/rp_filter`), dots and slashes
/// swap (`net.ipv4.conf.eth0/1.rp_filter`, which `sysctl` and
/// `systemd-sysctl` read the same): `kernel/domainname` and
/// `kernel.domainname` are one resource, never two that fight.
///
/// As procps decides, the first separator tells the form: a name whose
/// first separator is a slash is written with slashes; any other is
/// dotted already (a slash in it belongs to a component). So a canonical
/// name is its own canonical name.
pub(crate) fn canonical(name: &str) -> String {
    if slashed(name) {
        swapped(name)
    } else {
        name.to_owned()
    }
}

/// Whether `name` is written with slashes: its first separator is one.
fn slashed(name: &str) -> bool {
    name.find(['.', '/'])
        .is_some_and(|i| name[i..].starts_with('/'))
}

/// A parameter's path under `/proc/sys`, whichever way its name is written
/// (a name recorded by an older version may be slashed).
pub(crate) fn proc_relative(name: &str) -> String {
    swapped(&canonical(name))
}

/// `name` with its dots and slashes swapped: a canonical name's path
/// under `/proc/sys`, and back.
pub(crate) fn swapped(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

/// The value as the kernel compares it: whitespace-separated words
/// (`32768\t60999` is `32768 60999`).
pub(crate) fn normalise(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The persisting file's content for `name = value`.
pub(crate) fn render(name: &str, value: &str) -> String {
    format!("# Managed by driftless: local changes are overwritten.\n{name} = {value}\n")
}

impl Identity for Sysctl {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for Sysctl {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "value", "ignore_missing", "prune"];
    const PRIM: PrimKind = PrimKind::Setting;

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| {
            p.checked(&n, parameter_name)
                .map(|()| canonical(&n.into_inner()))
        });
        let value = value(p, f);
        let ignore_missing = f.bool(p.cx, "ignore_missing").map(|b| *b.get_ref());
        let (name, value) = (name?, value?);
        Some(Parsed::plain(Sysctl {
            file: Some(render(&name, &value)),
            value: Some(value),
            name,
            ignore_missing: ignore_missing.unwrap_or(false),
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Setting(SettingDecl {
            domain: Domain::Sysctl,
            name: &self.name,
            facets: vec![
                (LIVE, self.value.as_deref().map(Cow::Borrowed)),
                (FILE, self.file.as_deref().map(Cow::Borrowed)),
            ],
            ignore_missing: self.ignore_missing,
        })
    }

    fn from_facets(key: &str, facets: &Facets) -> Option<Self> {
        let get = |facet: &str| {
            facets
                .iter()
                .find(|(k, _)| k == facet)
                .and_then(|(_, v)| v.clone())
        };
        Some(Sysctl {
            name: canonical(key),
            value: get(LIVE),
            file: get(FILE),
            // What was recorded is put back where it can be.
            ignore_missing: true,
        })
    }

    fn reference_key(key: &str) -> Result<String, String> {
        parameter_name(key)?;
        Ok(canonical(key))
    }
}

/// A parameter name as sysctl takes it: dotted (`kernel.domainname`) or
/// with slashes (`net/ipv4/conf/eth0.1/rp_filter`); no empty component,
/// no `.` or `..` component, no space.
fn parameter_name(name: &str) -> Result<(), String> {
    let sep = if name.contains('/') { '/' } else { '.' };
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
        && name
            .split(sep)
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a kernel parameter name (such as `kernel.domainname` or `kernel/domainname`: letters, digits, - _ . and /, no empty, `.` or `..` component)"
        ))
    }
}

/// `value`: a string or an integer on one line, normalised.
fn value(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<String> {
    let Some(v) = f.raw("value") else {
        p.cx.error(
            &f.span(),
            "[[sysctl]] needs `value`, a string or an integer (value = 1)",
        );
        return None;
    };
    let text = match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(n) => n.to_string(),
        other => {
            p.cx.error(
                &v.span(),
                format!(
                    "`value` must be a string or an integer, found {}",
                    schema::type_name(other)
                ),
            );
            return None;
        }
    };
    let value = normalise(&text);
    if value.is_empty() || text.contains(['\n', '\r']) {
        p.cx.error(&v.span(), "`value` must be one non-empty line");
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_has_one_name_whichever_way_it_is_written() {
        assert_eq!(canonical("kernel/domainname"), "kernel.domainname");
        assert_eq!(canonical("kernel.domainname"), "kernel.domainname");
        assert_eq!(
            canonical("net/ipv4/conf/eth0.1/rp_filter"),
            "net.ipv4.conf.eth0/1.rp_filter"
        );
        assert_eq!(
            swapped("net.ipv4.conf.eth0/1.rp_filter"),
            "net/ipv4/conf/eth0.1/rp_filter"
        );
        // A canonical name is its own canonical name, and both spellings
        // reach the same /proc/sys file.
        for name in [
            "kernel.domainname",
            "kernel/domainname",
            "net.ipv4.conf.eth0/1.rp_filter",
            "net/ipv4/conf/eth0.1/rp_filter",
        ] {
            assert_eq!(canonical(&canonical(name)), canonical(name), "{name}");
        }
        assert_eq!(
            proc_relative("net.ipv4.conf.eth0/1.rp_filter"),
            "net/ipv4/conf/eth0.1/rp_filter"
        );
        assert_eq!(
            proc_relative("net/ipv4/conf/eth0.1/rp_filter"),
            "net/ipv4/conf/eth0.1/rp_filter"
        );
        assert_eq!(proc_relative("kernel/domainname"), "kernel/domainname");
        assert_eq!(
            <Sysctl as KindDef>::reference_key("kernel/domainname").as_deref(),
            Ok("kernel.domainname")
        );
    }

    #[test]
    fn names_and_values_are_checked_and_normalised() {
        assert!(parameter_name("kernel.domainname").is_ok());
        assert!(parameter_name("net/ipv4/conf/eth0.1/rp_filter").is_ok());
        for bad in ["", "kernel..x", "kernel/../x", "a b", "x.", "/x"] {
            assert!(parameter_name(bad).is_err(), "{bad}");
        }
        assert_eq!(normalise(" 32768\t60999 "), "32768 60999");
        assert_eq!(file_of("a/b/c"), "/etc/sysctl.d/90-driftless-a.b.c.conf");
    }
}
