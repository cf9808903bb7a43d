//! `[[group]]`: a local group (groupadd, groupmod, groupdel).

use serde::{Deserialize, Serialize};

use super::{
    AccountDecl, AccountKind, Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent,
    Relations,
};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::Ensure;

/// A local group (`[[group]]`), managed with groupadd, groupmod and
/// groupdel. Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric id, if managed.
    pub gid: Option<u32>,
    /// A system group (`groupadd -r`: a gid from the system range), when
    /// created.
    pub system: bool,
    /// Present or absent.
    pub ensure: Ensure,
}

impl Identity for Group {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for Group {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &["name", "gid", "system", "state"];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, checks::account_name).map(|()| n.into_inner()));
        let gid = f.unsigned(p.cx, "gid").map(Sp::into_inner);
        let system = f.bool(p.cx, "system").is_some_and(Sp::into_inner);
        let ensure = p.ensure(f);
        Some(Parsed::plain(Group {
            name: name?,
            gid,
            system,
            ensure: ensure?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn relations(g: &Self) -> Relations<'_> {
        Relations {
            account: Some(AccountDecl {
                kind: AccountKind::Group,
                name: &g.name,
                ensure: g.ensure,
                id: g.gid,
                home: None,
            }),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Group;

    fn lower(&self) -> Prim<'_> {
        Prim::Group(self)
    }
}
