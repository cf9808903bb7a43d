//! `[[user]]`: a local user (useradd, usermod, userdel).

use serde::{Deserialize, Serialize};

use super::{
    AccountDecl, AccountKind, Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent,
    Relations,
};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::Ensure;

/// A local user (`[[user]]`), managed with useradd, usermod and userdel.
/// Unset fields are not managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User name.
    pub name: String,
    /// Numeric id, if managed.
    pub uid: Option<u32>,
    /// Primary group (name or number), if managed.
    pub group: Option<String>,
    /// Supplementary groups, exactly these, if managed.
    pub groups: Option<Vec<String>>,
    /// Home directory, if managed.
    pub home: Option<String>,
    /// Whether useradd creates the home directory (only when the user is
    /// created; its contents are never managed or rolled back).
    pub create_home: bool,
    /// Login shell, if managed.
    pub shell: Option<String>,
    /// GECOS comment, if managed.
    pub comment: Option<String>,
    /// A system account (`useradd -r`), when created.
    pub system: bool,
    /// The password hash for /etc/shadow, if managed (sensitive: never
    /// shown, only said to differ).
    pub password: Option<String>,
    /// Present or absent.
    pub ensure: Ensure,
}

impl Identity for User {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for User {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "name",
        "uid",
        "group",
        "groups",
        "home",
        "create_home",
        "shell",
        "comment",
        "system",
        "password",
        "state",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, checks::account_name).map(|()| n.into_inner()));
        let uid = f.unsigned(p.cx, "uid").map(Sp::into_inner);
        let mut origins = Vec::new();
        let group = match f.string(p.cx, "group") {
            None => Some(None),
            Some(g) => p.checked(&g, checks::group_ref).map(|()| {
                origins.push(p.cx.origin(&g.span()));
                Some(g.into_inner())
            }),
        };
        let groups = match f.string_list(p.cx, "groups") {
            None if f.raw("groups").is_some() => None,
            None => Some(None),
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for g in list {
                    match p.checked(&g, checks::group_ref) {
                        Some(()) => {
                            origins.push(p.cx.origin(&g.span()));
                            out.push(g.into_inner());
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Some(out))
            }
        };
        let path = |key: &str| match f.string(p.cx, key) {
            None => Some(None),
            Some(v) => p
                .checked(&v, |s| checks::host_path(s, p.state_dir))
                .map(|()| Some(v.into_inner())),
        };
        let home = path("home");
        let shell = path("shell");
        let comment = match f.string(p.cx, "comment") {
            None => Some(None),
            Some(c) => p.checked(&c, checks::gecos).map(|()| Some(c.into_inner())),
        };
        let password = match f.string(p.cx, "password") {
            None => Some(None),
            Some(v) => p
                .checked(&v, checks::password_hash)
                .map(|()| Some(v.into_inner())),
        };
        let system = f.bool(p.cx, "system").is_some_and(Sp::into_inner);
        // As useradd on RHEL (CREATE_HOME yes), but not for system accounts.
        let create_home = f.bool(p.cx, "create_home").map_or(!system, Sp::into_inner);
        let ensure = p.ensure(f);
        Some(Parsed {
            spec: User {
                name: name?,
                uid,
                group: group?,
                groups: groups?,
                home: home?,
                create_home,
                shell: shell?,
                comment: comment?,
                system,
                password: password?,
                ensure: ensure?,
            },
            content_line: 0,
            ref_origins: origins,
        })
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn relations(u: &Self) -> Relations<'_> {
        Relations {
            account: Some(AccountDecl {
                kind: AccountKind::User,
                name: &u.name,
                ensure: u.ensure,
                id: u.uid,
                home: u.home.as_deref(),
            }),
            member_of: match u.ensure {
                Ensure::Present => u
                    .group
                    .iter()
                    .chain(u.groups.iter().flatten())
                    .map(String::as_str)
                    .collect(),
                Ensure::Absent => Vec::new(),
            },
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::User;

    fn lower(&self) -> Prim<'_> {
        Prim::User(self)
    }
}
