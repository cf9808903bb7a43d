//! `[[package]]`: an RPM package, installed, pinned, kept at the newest build, or removed.

use serde::{Deserialize, Serialize};

use super::{Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{self, Fields};

/// The state a package should be in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "version")]
pub enum PackageState {
    /// Installed, any version (or exactly `Some(evr)`).
    Present(Option<String>),
    /// Not installed.
    Absent,
    /// Installed at the newest version the repositories offer.
    Latest,
}

/// An RPM package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// What should be installed.
    pub state: PackageState,
}

impl Identity for Package {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for Package {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "state", "version", "prune"];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, checks::package_name).map(|()| n.into_inner()));
        let version = f.string(p.cx, "version");
        let state = f.string(p.cx, "state");
        let word = state.as_ref().map_or("present", |s| s.get_ref().as_str());
        let state = match word {
            "present" => {
                let v = match &version {
                    Some(v) => Some(p.checked(v, checks::evr).map(|()| v.get_ref().clone())?),
                    None => None,
                };
                Some(PackageState::Present(v))
            }
            "absent" | "latest" => {
                if let Some(v) = &version {
                    p.cx.error(
                        &v.span(),
                        format!(
                            "`version` can only be used with state = \"present\", not \"{word}\""
                        ),
                    );
                    None
                } else if word == "absent" {
                    Some(PackageState::Absent)
                } else {
                    Some(PackageState::Latest)
                }
            }
            other => {
                if let Some(s) = &state {
                    p.cx.error(
                        &s.span(),
                        schema::unknown_state(other, &["present", "absent", "latest"]),
                    );
                }
                None
            }
        };
        Some(Parsed::plain(Package {
            name: name?,
            state: state?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    const PRIM: PrimKind = PrimKind::Package;

    fn lower(&self) -> Prim<'_> {
        Prim::Package(self)
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Package {
            name: key.to_owned(),
            state: PackageState::Absent,
        })
    }
}
