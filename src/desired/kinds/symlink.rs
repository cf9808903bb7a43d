//! `[[symlink]]`: a symbolic link and its target.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    Decl, Form, Identity, KindDef, Parsed, PathDecl, PathForm, Prim, PrimKind, ReadContent,
};
use crate::desired::parser::Parser;
use crate::desired::schema::Fields;
use crate::desired::values::{Ensure, SelinuxParts};

/// A symbolic link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symlink {
    /// Absolute, normalised path of the link itself.
    pub path: String,
    /// What the link points to, stored verbatim.
    pub target: String,
    /// Present or absent.
    pub ensure: Ensure,
    /// SELinux context parts that replace the policy's.
    #[serde(default, skip_serializing_if = "SelinuxParts::is_empty")]
    pub selinux: SelinuxParts,
}

impl Identity for Symlink {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl KindDef for Symlink {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["path", "target", "state", "selinux", "prune"];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let path = p.path(f);
        let ensure = p.ensure(f);
        let target = match (f.string(p.cx, "target"), ensure) {
            (Some(t), _) if t.get_ref().is_empty() || t.get_ref().contains('\0') => {
                p.cx.error(&t.span(), "symlink `target` must be a non-empty path");
                None
            }
            (Some(t), _) => Some(t.into_inner()),
            (None, Some(Ensure::Absent)) => Some(String::new()),
            (None, _) => {
                p.cx.error(
                    &f.span(),
                    "[[symlink]] is missing the required key `target`",
                );
                None
            }
        };
        let selinux = p.selinux(f);
        Some(Parsed::plain(Symlink {
            path: path?,
            target: target?,
            ensure: ensure?,
            selinux: selinux?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    const PRIM: PrimKind = PrimKind::Path(Form::Symlink);

    fn lower(&self) -> Prim<'_> {
        Prim::Path(PathDecl {
            path: Cow::Borrowed(&self.path),
            ensure: self.ensure,
            form: PathForm::Symlink {
                target: &self.target,
                selinux: &self.selinux,
            },
            before_packages: false,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(key.to_owned())
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Symlink {
            path: key.to_owned(),
            target: String::new(),
            ensure: Ensure::Absent,
            selinux: SelinuxParts::default(),
        })
    }
}
