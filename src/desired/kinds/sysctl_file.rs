//! `[[sysctl_file]]`: kernel parameters kept in a file of their own under
//! `/etc/sysctl.d`, written from a table, as the hardening roles of
//! Ansible and Puppet keep them (`sysctl.d/90-hardening.conf`). The file is
//! applied at boot by systemd-sysctl; to apply it now, a `[[command]]`
//! with `refresh_on = ["sysctl_file:NAME"]` runs `sysctl --system`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::{Decl, Form, Identity, KindDef, Parsed, PathDecl, Prim, PrimKind, ReadContent};
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::Ensure;

/// Where the files live.
const DIR: &str = "/etc/sysctl.d";

/// A file of kernel parameters, `/etc/sysctl.d/NAME.conf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlFile {
    /// The file's name without `.conf` (`90-hardening`).
    pub name: String,
    /// Each parameter (`net.ipv4.ip_forward`) and its value, in key order.
    pub settings: BTreeMap<String, String>,
    /// Present or absent.
    pub ensure: Ensure,
}

impl SysctlFile {
    /// The file's bytes: one `key = value` line per parameter, sorted.
    pub fn render(&self) -> Vec<u8> {
        let mut s = String::from("# Managed by driftless: local changes are overwritten.\n");
        for (key, value) in &self.settings {
            s.push_str(&format!("{key} = {value}\n"));
        }
        s.into_bytes()
    }
}

fn path_of(name: &str) -> String {
    format!("{DIR}/{name}.conf")
}

impl Identity for SysctlFile {
    fn key(&self) -> &str {
        &self.name
    }

    fn path(&self) -> Option<String> {
        Some(path_of(&self.name))
    }
}

impl KindDef for SysctlFile {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "settings", "state", "prune"];
    const PRIM: PrimKind = PrimKind::Path(Form::File);

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, file_name).map(|()| n.into_inner()));
        let ensure = p.ensure(f);
        let settings = settings(p, f, ensure);
        Some(Parsed::plain(SysctlFile {
            name: name?,
            settings: settings?,
            ensure: ensure?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Path(PathDecl::generated(
            path_of(&self.name),
            self.ensure,
            self.render(),
            None,
        ))
    }

    fn absent(key: &str) -> Option<Self> {
        Some(SysctlFile {
            name: key.to_owned(),
            settings: BTreeMap::new(),
            ensure: Ensure::Absent,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(path_of(key))
    }
}

/// A name systemd-sysctl reads: letters, digits, `-`, `_`, `.`; no `/`.
fn file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sysctl_file name `{name}` is malformed (letters, digits and - _ . only; the file is {DIR}/NAME.conf)"
        ))
    }
}

/// `settings = { "net.ipv4.ip_forward" = 0, ... }`: parameter names as
/// sysctl writes them (with `.` or `/`), values as strings or integers on
/// one line. Required unless the file is to be absent.
fn settings(
    p: &Parser<'_, '_>,
    f: &Fields<'_, '_>,
    ensure: Option<Ensure>,
) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(v) = f.raw("settings") else {
        if ensure == Some(Ensure::Absent) {
            return Some(out);
        }
        p.cx.error(
            &f.span(),
            "[[sysctl_file]] needs `settings`, a table such as { \"net.ipv4.ip_forward\" = 0 }",
        );
        return None;
    };
    let DeValue::Table(t) = v.get_ref() else {
        p.cx.error(
            &v.span(),
            format!(
                "`settings` must be a table such as {{ \"net.ipv4.ip_forward\" = 0 }}, found {}",
                crate::desired::schema::type_name(v.get_ref())
            ),
        );
        return None;
    };
    let mut ok = true;
    for (k, val) in t.iter() {
        let key: Sp<String> = Sp::new(k.span(), k.get_ref().to_string());
        let good_key = !key.get_ref().is_empty()
            && key
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/*".contains(c));
        if !good_key {
            p.cx.error(
                &key.span(),
                format!("`{}` is not a kernel parameter name", key.get_ref()),
            );
            ok = false;
            continue;
        }
        let value = match val.get_ref() {
            DeValue::String(text) => text.to_string(),
            DeValue::Integer(n) => n.to_string(),
            other => {
                // `fs.protected_hardlinks = 1` unquoted is TOML's dotted
                // key: a table `fs` holding `protected_hardlinks`.
                let hint = match other {
                    DeValue::Table(t) => t
                        .iter()
                        .next()
                        .map(|(inner, _)| {
                            format!(
                                " (an unquoted dotted key is a table in TOML: write \"{}.{}\" = …)",
                                key.get_ref(),
                                inner.get_ref()
                            )
                        })
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                p.cx.error(
                    &val.span(),
                    format!(
                        "`settings.{}` must be a string or an integer, found {}{hint}",
                        key.get_ref(),
                        crate::desired::schema::type_name(other)
                    ),
                );
                ok = false;
                continue;
            }
        };
        if value.contains(['\n', '\r']) || value.trim().is_empty() {
            p.cx.error(
                &val.span(),
                format!("`settings.{}` must be one non-empty line", key.get_ref()),
            );
            ok = false;
            continue;
        }
        out.insert(key.into_inner(), value);
    }
    ok.then_some(out)
}
