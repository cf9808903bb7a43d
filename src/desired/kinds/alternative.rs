//! `[[alternative]]`: which of the registered alternatives a name points
//! at (`editor`, `java`), as RHEL's `alternatives` and Debian's
//! `update-alternatives` keep it: a host setting ([`Prim::Setting`],
//! domain [`Domain::Alternative`]) with one facet, the choice: `auto`, or
//! the path chosen by hand. A declaration chooses a path (manual mode);
//! pruning puts back what was there before (auto mode, or the earlier
//! manual choice).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    Decl, Domain, Facets, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, SettingDecl,
};
use crate::desired::parser::Parser;
use crate::desired::schema::Fields;

/// The facet: `auto`, or the path chosen by hand.
pub(crate) const CHOICE: &str = "choice";
/// The choice of automatic mode (the highest priority wins).
pub(crate) const AUTO: &str = "auto";

/// One alternative's choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    /// The alternative's name (`editor`).
    pub name: String,
    /// `auto`, or the chosen path; `None`: not managed (what pruning
    /// declares for one that was not registered before).
    pub choice: Option<String>,
}

impl Identity for Alternative {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for Alternative {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "path", "prune"];
    const PRIM: PrimKind = PrimKind::Setting;

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, alternative_name).map(|()| n.into_inner()));
        let path = p.path(f);
        Some(Parsed::plain(Alternative {
            name: name?,
            choice: Some(path?),
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Setting(SettingDecl {
            domain: Domain::Alternative,
            name: &self.name,
            facets: vec![(CHOICE, self.choice.as_deref().map(Cow::Borrowed))],
            ignore_missing: false,
        })
    }

    fn from_facets(key: &str, facets: &Facets) -> Option<Self> {
        let choice = facets
            .iter()
            .find(|(k, _)| k == CHOICE)
            .and_then(|(_, v)| v.clone());
        Some(Alternative {
            name: key.to_owned(),
            choice,
        })
    }
}

/// A name as the alternatives tools take it: one file name under
/// `/etc/alternatives`.
fn alternative_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "alternative name `{name}` is malformed (letters, digits and - _ . + only, as under /etc/alternatives)"
        ))
    }
}
