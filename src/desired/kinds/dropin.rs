//! `[[dropin]]`: a drop-in of a systemd unit,
//! `/etc/systemd/system/UNIT.d/NAME.conf`, that changes part of a unit a
//! package ships (limits, environment, `Restart=`) without copying it, as
//! Puppet's `systemd::dropin_file` and Ansible's `copy` into `UNIT.d`. A
//! changed drop-in brings one `daemon-reload` per converge (every file
//! under /etc/systemd/system does); `restart_on = ["dropin:UNIT/NAME"]`
//! restarts the unit.

use serde::{Deserialize, Serialize};

use super::{Decl, Form, Identity, KindDef, Parsed, PathDecl, Prim, PrimKind, ReadContent};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::Fields;
use crate::desired::values::Ensure;

/// A drop-in of a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropin {
    /// Its key: `UNIT/NAME` (`dl-web.service/10-limits`).
    pub key: String,
    /// What it says (a unit file's sections).
    pub content: String,
    /// Present or absent.
    pub ensure: Ensure,
}

impl Dropin {
    fn path(&self) -> String {
        path_of(&self.key)
    }
}

/// `UNIT/NAME` -> `/etc/systemd/system/UNIT.d/NAME.conf`.
fn path_of(key: &str) -> String {
    let (unit, name) = key.split_once('/').unwrap_or((key, "driftless"));
    format!("/etc/systemd/system/{unit}.d/{name}.conf")
}

impl Identity for Dropin {
    fn key(&self) -> &str {
        &self.key
    }

    fn path(&self) -> Option<String> {
        Some(Dropin::path(self))
    }
}

impl KindDef for Dropin {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["unit", "name", "content", "state", "prune"];
    const PRIM: PrimKind = PrimKind::Path(Form::File);

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let unit = f
            .required_string(p.cx, "unit")
            .and_then(|u| p.checked(&u, checks::unit_name));
        let name = f
            .required_string(p.cx, "name")
            .and_then(|n| p.checked(&n, dropin_name).map(|()| n.into_inner()));
        let ensure = p.ensure(f);
        let content = match (f.string(p.cx, "content"), ensure) {
            (Some(c), _) => Some(c.into_inner()),
            (None, Some(Ensure::Absent)) => Some(String::new()),
            (None, _) => {
                p.cx.error(
                    &f.span(),
                    "[[dropin]] is missing the required key `content`",
                );
                None
            }
        };
        Some(Parsed::plain(Dropin {
            key: format!("{}/{}", unit?, name?),
            content: content?,
            ensure: ensure?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        let mut content = self.content.clone();
        if !content.is_empty() && !content.ends_with('\n') {
            content.push('\n');
        }
        Prim::Path(PathDecl::generated(
            self.path(),
            self.ensure,
            content.into_bytes(),
            None,
        ))
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Dropin {
            key: key.to_owned(),
            content: String::new(),
            ensure: Ensure::Absent,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(path_of(key))
    }

    /// `dropin:dl-web/10-limits` means `dl-web.service/10-limits`.
    fn reference_key(key: &str) -> Result<String, String> {
        let (unit, name) = key.split_once('/').ok_or_else(|| {
            format!("a drop-in is named UNIT/NAME, as \"dropin:nginx/10-limits\", not `{key}`")
        })?;
        dropin_name(name)?;
        Ok(format!("{}/{name}", checks::unit_name(unit)?))
    }
}

/// A drop-in's file name without `.conf`: letters, digits, `-`, `_`, `.`.
fn dropin_name(name: &str) -> Result<(), String> {
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
            "drop-in name `{name}` is malformed (letters, digits and - _ . only; the file is UNIT.d/NAME.conf)"
        ))
    }
}
