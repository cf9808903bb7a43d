//! `[[directory]]`: a directory, its owner, group, mode and SELinux context.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    Decl, Form, Identity, KindDef, Parsed, PathDecl, PathForm, Prim, PrimKind, ReadContent,
    Relations,
};
use crate::desired::parser::{DEFAULT_DIR_MODE, Parser};
use crate::desired::schema::Fields;
use crate::desired::values::{Ensure, Meta};

/// A directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Absolute, normalised path.
    pub path: String,
    /// Present or absent (only an empty directory is removed).
    pub ensure: Ensure,
    /// Ownership and mode.
    pub meta: Meta,
}

impl Identity for Directory {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl KindDef for Directory {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "path", "owner", "group", "mode", "state", "selinux", "prune",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let path = p.path(f);
        let meta = p.meta(f, DEFAULT_DIR_MODE);
        let ensure = p.ensure(f);
        Some(Parsed::plain(Directory {
            path: path?,
            ensure: ensure?,
            meta: meta?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn relations(d: &Self) -> Relations<'_> {
        Relations {
            owned_by: (d.ensure == Ensure::Present).then_some(&d.meta),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Path(Form::Dir);

    fn lower(&self) -> Prim<'_> {
        Prim::Path(PathDecl {
            path: Cow::Borrowed(&self.path),
            ensure: self.ensure,
            form: PathForm::Dir { meta: &self.meta },
            before_packages: false,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(key.to_owned())
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Directory {
            path: key.to_owned(),
            ensure: Ensure::Absent,
            meta: Meta::new("0", "0", 0o755),
        })
    }
}
