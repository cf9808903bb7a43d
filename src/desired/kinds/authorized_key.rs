//! `[[authorized_key]]`: the SSH keys of a user in its
//! `~/.ssh/authorized_keys`, as Ansible's `authorized_key` and Puppet's
//! `ssh_authorized_key`: each declared key line (options, type, blob,
//! comment) present, replacing the line of the same key (type and blob)
//! when its options or comment differ; keys listed in `absent` removed;
//! with `exclusive = true`, the file is exactly the declared keys.
//!
//! An edit of the file ([`Prim::Edit`]), so lines that are not driftless's
//! stay unless `exclusive`, and pruning puts back what the file held. A
//! missing file is created owned by the user, mode 0600, in a `~/.ssh` of
//! mode 0700 when that is missing too (sshd's StrictModes), labelled as
//! the policy says (`ssh_home_t`).
//!
//! The path is `/home/USER/.ssh/authorized_keys` (`/root/...` for root)
//! unless `path` says otherwise; the planner checks that default against
//! the user's home in /etc/passwd and asks for `path` when it differs
//! (the path must be known before the host is observed).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, Relations};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::sshkey;
use crate::desired::textedit::{CreateAs, EditDecl, KeysEdit, TextEdit};
use crate::desired::values::Meta;

/// The file's mode when driftless creates it: sshd refuses a file others
/// can write, and the keys are the user's own business.
const FILE_MODE: u32 = 0o600;
/// `~/.ssh`'s mode when driftless creates it.
const DIR_MODE: u32 = 0o700;

/// A user's authorized keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedKey {
    /// The user (the key of `authorized_key:USER`).
    pub user: String,
    /// The `authorized_keys` file.
    pub path: String,
    /// What is changed in it.
    pub edit: TextEdit,
    /// Owner and modes of the file and `~/.ssh` when they are created
    /// (`None`: an undo, which never creates the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_as: Option<CreateAs>,
    /// The path is the default under the user's home (checked against
    /// /etc/passwd when planned).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_home: bool,
}

impl Identity for AuthorizedKey {
    fn key(&self) -> &str {
        &self.user
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

/// The default file of `user`.
fn default_path(user: &str) -> String {
    match user {
        "root" => "/root/.ssh/authorized_keys".to_owned(),
        u => format!("/home/{u}/.ssh/authorized_keys"),
    }
}

/// Each key line of `key`, checked where it is written; `None` when one
/// does not parse or names a key already in `seen` (each is reported: a
/// key listed twice would have its two lines replace each other on every
/// converge).
fn key_lines(
    p: &Parser<'_, '_>,
    f: &Fields<'_, '_>,
    key: &str,
    seen: &mut HashSet<String>,
) -> Option<Vec<String>> {
    let list = match f.string_list(p.cx, key) {
        None if f.raw(key).is_some() => return None,
        None => Vec::new(),
        Some(list) => list,
    };
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for k in list {
        let fresh = |s: &str| {
            let line = sshkey::parse(s)?;
            if seen.insert(line.identity()) {
                Ok(())
            } else {
                Err(format!(
                    "the key {} is listed twice (in `keys` or `absent`): a key is one line, with its options",
                    line.short()
                ))
            }
        };
        match p.checked(&k, fresh) {
            Some(()) => out.push(k.get_ref().trim().to_owned()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl KindDef for AuthorizedKey {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "user",
        "keys",
        "absent",
        "exclusive",
        "group",
        "path",
        "prune",
    ];
    const PRIM: PrimKind = PrimKind::Edit;

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let user = f
            .required_string(p.cx, "user")
            .and_then(|u| p.checked(&u, checks::account_name).map(|()| u.into_inner()));
        let group = match f.string(p.cx, "group") {
            None => Some(None),
            Some(g) => p
                .checked(&g, checks::group_ref)
                .map(|()| Some(g.into_inner())),
        };
        let path = match f.string(p.cx, "path") {
            None => Some(None),
            Some(v) => p
                .checked(&v, |s| checks::host_path(s, p.state_dir))
                .map(|()| Some(v.into_inner())),
        };
        let mut seen = HashSet::new();
        let keys = key_lines(p, f, "keys", &mut seen);
        let absent = key_lines(p, f, "absent", &mut seen);
        let exclusive = f.bool(p.cx, "exclusive").is_some_and(Sp::into_inner);
        if let Some(a) = f.raw("absent")
            && exclusive
        {
            p.cx.error(
                &a.span(),
                "`absent` goes without `exclusive = true`, which removes every key not in `keys`",
            );
            return None;
        }
        if f.raw("keys").is_none() && f.raw("absent").is_none() {
            p.cx.error(
                &f.span(),
                "[[authorized_key]] needs `keys` (the keys present) or `absent` (keys removed)",
            );
            return None;
        }
        let user = user?;
        let group = group?.unwrap_or_else(|| user.clone());
        let (path, in_home) = match path? {
            Some(path) => (path, false),
            None => (default_path(&user), true),
        };
        Some(Parsed::plain(AuthorizedKey {
            path,
            edit: TextEdit::Keys(KeysEdit {
                keys: keys?,
                absent: absent?,
                exclusive,
            }),
            create_as: Some(CreateAs {
                file: Meta::new(user.clone(), group, FILE_MODE),
                dir_mode: DIR_MODE,
            }),
            in_home,
            user,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Edit(EditDecl {
            path: &self.path,
            edit: &self.edit,
            create: self.create_as.is_some(),
            validate: None,
            create_as: self.create_as.as_ref(),
            in_home_of: self.in_home.then_some(self.user.as_str()),
        })
    }

    fn from_undo(key: &str, path: &str, undo: &TextEdit) -> Option<Self> {
        Some(AuthorizedKey {
            user: key.to_owned(),
            path: path.to_owned(),
            edit: undo.clone(),
            create_as: None,
            in_home: false,
        })
    }

    fn relations(spec: &Self) -> Relations<'_> {
        Relations {
            owned_by: spec.create_as.as_ref().map(|c| &c.file),
            in_home_of: spec
                .in_home
                .then_some((spec.user.as_str(), spec.path.as_str())),
            ..Relations::default()
        }
    }
}
