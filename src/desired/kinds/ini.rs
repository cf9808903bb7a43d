//! `[[ini]]`: one `key = value` setting in a section of an ini-style file
//! something else owns (`/etc/dnf/dnf.conf`, a `.repo`, `sssd.conf`), as
//! Ansible's `ini_file` and Puppet's `ini_setting`. A value already set,
//! whatever its spacing (`gpgcheck=1` for `gpgcheck = 1`), is left as it
//! is.

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use crate::desired::parser::Parser;
use crate::desired::schema::Fields;
use crate::desired::textedit::{self, Edited, IniEdit, TextEdit};

/// A setting in an ini file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ini(pub Edited);

/// A value as an ini file writes it: a string, an integer or a boolean.
fn value(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Option<String>> {
    let Some(v) = f.raw("value") else {
        return Some(None);
    };
    match v.get_ref() {
        DeValue::String(s) if !s.contains('\n') => Some(Some(s.to_string())),
        DeValue::Integer(i) => Some(Some(i.to_string())),
        DeValue::Boolean(b) => Some(Some(b.to_string())),
        _ => {
            p.cx.error(
                &v.span(),
                "`value` must be one line of text, an integer or a boolean",
            );
            None
        }
    }
}

const KEYS: &[&str] = &[
    "name",
    "path",
    "section",
    "key",
    "value",
    "separator",
    "state",
    "create",
    "validate",
    "prune",
];

edit_kind!(Ini, KEYS, ini_edit);

/// The ini's own keys, as the edit it makes; `None` when they had errors.
fn ini_edit(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<TextEdit> {
    let present = textedit::present(p, f);
    let section = f.string(p.cx, "section").map(|s| s.into_inner());
    let key = match f.required_string(p.cx, "key") {
        Some(k) if k.get_ref().trim().is_empty() || k.get_ref().contains(['=', ':', '\n']) => {
            p.cx.error(
                &k.span(),
                "`key` must be a name without `=`, `:` or a newline",
            );
            None
        }
        k => k.map(|k| k.into_inner()),
    };
    let value = match (value(p, f), present) {
        (Some(Some(v)), _) => Some(v),
        (Some(None), Some(false)) => Some(String::new()),
        (Some(None), _) => {
            p.cx.error(&f.span(), "[[ini]] is missing the required key `value`");
            None
        }
        (None, _) => None,
    };
    let separator = f
        .string(p.cx, "separator")
        .map_or_else(|| " = ".to_owned(), |s| s.into_inner());
    (|| {
        Some(TextEdit::Ini(IniEdit {
            section,
            key: key?,
            value: value?,
            separator,
            present: present?,
        }))
    })()
}
