//! The resource kinds, one module each: its keys, how a `[[kind]]` table
//! is parsed and checked, its identity, and what it becomes for the
//! engine. The list below is the only place that names them all, in the
//! order a converge applies them: the [`Kind`], [`Resource`] and [`Spec`]
//! enums and every dispatch over them are generated from it, so a kind
//! that is listed but not handled somewhere does not compile.
//!
//! Adding a kind: docs/adding-a-kind.md.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::diag::Origin;
use super::parser::Parser;
use super::schema::Fields;
pub(crate) use super::textedit::EditDecl;
use super::textedit::TextEdit;
use super::values::{Content, ContentRule, ContentSpec, Ensure, Meta, SelinuxParts};

/// The parts every edit kind (`[[line]]`, `[[block]]`, `[[ini]]`) has
/// alike: a newtype of [`Edited`](super::textedit::Edited) whose key is
/// its name, parsed by `$parse` (the kind's own keys around the common
/// ones), lowered to [`Prim::Edit`], put back by an undo.
macro_rules! edit_kind {
    ($ty:ident, $keys:expr, $parse:path) => {
        impl $crate::desired::kinds::Identity for $ty {
            fn key(&self) -> &str {
                &self.0.name
            }

            fn path(&self) -> Option<String> {
                Some(self.0.path.clone())
            }
        }

        impl $crate::desired::kinds::KindDef for $ty {
            type Spec = Self;
            const KEYS: &'static [&'static str] = $keys;

            fn parse(
                p: &$crate::desired::parser::Parser<'_, '_>,
                f: &$crate::desired::schema::Fields<'_, '_>,
            ) -> Option<$crate::desired::kinds::Parsed<Self>> {
                let edit = $parse(p, f);
                $crate::desired::textedit::Edited::parse(p, f, edit)
                    .map(|e| $crate::desired::kinds::Parsed::plain($ty(e)))
            }

            fn resolve(
                spec: &Self,
                _: &mut dyn $crate::desired::kinds::ReadContent,
                _: &$crate::desired::kinds::Decl,
            ) -> Option<Self> {
                Some(spec.clone())
            }

            const PRIM: $crate::desired::kinds::PrimKind = $crate::desired::kinds::PrimKind::Edit;

            fn lower(&self) -> $crate::desired::kinds::Prim<'_> {
                $crate::desired::kinds::Prim::Edit(self.0.decl())
            }

            fn from_undo(
                key: &str,
                path: &str,
                undo: &$crate::desired::textedit::TextEdit,
            ) -> Option<Self> {
                Some($ty($crate::desired::textedit::Edited::undone(
                    key, path, undo,
                )))
            }
        }
    };
}

pub(crate) mod alternative;
pub(crate) mod archive;
pub(crate) mod authorized_key;
pub(crate) mod block;
pub(crate) mod command;
pub(crate) mod directory;
pub(crate) mod dropin;
pub(crate) mod file;
pub(crate) mod firewalld;
pub(crate) mod group;
pub(crate) mod ini;
pub(crate) mod kernel_module;
pub(crate) mod line;
pub(crate) mod mount;
pub(crate) mod package;
pub(crate) mod repo;
pub(crate) mod service;
pub(crate) mod symlink;
pub(crate) mod sysctl;
pub(crate) mod sysctl_file;
pub(crate) mod user;

/// What identifies a resource, and the path it manages: the same for a
/// declaration and for the resource it becomes.
pub(crate) trait Identity {
    /// Its key in `kind:key`: a name, a path, a unit.
    fn key(&self) -> &str;
    /// The host path it manages, if it is a filesystem object.
    fn path(&self) -> Option<String> {
        None
    }
}

/// What one kind module provides.
pub(crate) trait KindDef: Identity + Sized {
    /// What a declaration holds before it is resolved (a file's `source`
    /// not read yet); compared between roles for conflicts. `Self` for
    /// most kinds.
    type Spec: Identity + Clone + PartialEq + fmt::Debug;
    /// The keys its tables take (`prune` among them when pruning applies).
    const KEYS: &'static [&'static str];
    /// Parses one table; problems are reported to the parser's context.
    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>>;
    /// The resource a declaration stands for (a file's content read and
    /// rendered); `None` when that failed (reported to `r`).
    fn resolve(spec: &Self::Spec, r: &mut dyn ReadContent, decl: &Decl) -> Option<Self>;
    /// What it is to the engine.
    fn lower(&self) -> Prim<'_>;
    /// Content it holds that cannot be made again from its fields (a
    /// file's bytes, read from the repo): kept in the object store with a
    /// desired state, and filled in by hash when one is read back.
    fn stored_content(&self) -> Option<&Content> {
        None
    }
    /// [`KindDef::stored_content`], to fill in.
    fn stored_content_mut(&mut self) -> Option<&mut Content> {
        None
    }
    /// Where the bytes of [`KindDef::stored_content`] are downloaded from
    /// when neither the host nor the object store has them (a `[[file]]`
    /// whose `source` is a URL).
    fn source_url(&self) -> Option<&str> {
        None
    }
    /// The host path a resource of this kind with `key` manages, for what
    /// is known by its id only (an inventory entry).
    fn path_of_key(_key: &str) -> Option<String> {
        None
    }
    /// A resource of this kind with `key` that must not exist: what
    /// pruning plans for one driftless created and the repo dropped.
    /// `None`: such a resource is forgotten, never removed (an account, a
    /// command, a unit).
    fn absent(_key: &str) -> Option<Self> {
        None
    }
    /// A resource of this kind with `key` that makes the edit `undo` of
    /// the file at `path`: what pruning plans to put back what an edit
    /// replaced. `None` for every kind but the edits.
    fn from_undo(_key: &str, _path: &str, _undo: &TextEdit) -> Option<Self> {
        None
    }
    /// A resource of this kind with `key` that puts the facets `facets`
    /// of its setting back: what pruning plans for a dropped setting.
    /// `None` for every kind but the settings.
    fn from_facets(_key: &str, _facets: &Facets) -> Option<Self> {
        None
    }
    /// The key a reference (`kind:key` in `restart_on`, `refresh_on`)
    /// means, as its own declarations would write it; or why it is not one.
    fn reference_key(key: &str) -> Result<String, String> {
        Ok(key.to_owned())
    }
    /// What a declaration says of other declarations (the accounts it
    /// declares or uses, what it refers to), for the checks that span
    /// declarations. Nothing, for a kind that says none of it.
    fn relations(_spec: &Self::Spec) -> Relations<'_> {
        Relations::default()
    }
    /// Which primitive it is, without a resource at hand.
    const PRIM: PrimKind;
    /// The unit that reads what this kind writes: a declared `[[service]]`
    /// of that unit is reloaded when a resource of this kind changes (or is
    /// pruned), as if its `reload_on` named it, and restarted by a rollback
    /// that puts one back. A firewalld zone reloads `firewalld.service`.
    const RELOADS: Option<&'static str> = None;
    /// With [`KindDef::RELOADS`]: the argv that asks the running unit
    /// whether it runs what this resource wrote. Exit 0: it does (or
    /// nothing runs to ask); 1: its running configuration differs (a
    /// change made at runtime only), which the reload of that unit undoes;
    /// any other code: the unit could not tell (an error of the run, never
    /// read as "no drift"). `None`: the running configuration is not
    /// observed.
    fn runtime_probe(&self) -> Option<Vec<String>> {
        None
    }
}

/// What one declaration says of others ([`KindDef::relations`]).
#[derive(Debug, Default)]
pub(crate) struct Relations<'a> {
    /// The account it declares.
    pub account: Option<AccountDecl<'a>>,
    /// The owner and group of what it creates (a present path).
    pub owned_by: Option<&'a Meta>,
    /// The user it runs as.
    pub runs_as: Option<&'a str>,
    /// The groups it puts its account in (a present user), in the order
    /// of its reference positions.
    pub member_of: Vec<&'a str>,
    /// What it refers to, with the key that says so, in the order of its
    /// reference positions.
    pub refers_to: Vec<(&'static str, &'a ResourceId)>,
    /// A path it chose under a user's home by the usual layout (the user,
    /// the path): a declared user's `home` must hold it.
    pub in_home_of: Option<(&'a str, &'a str)>,
}

/// A declared user or group.
#[derive(Debug)]
pub(crate) struct AccountDecl<'a> {
    /// User or group.
    pub kind: AccountKind,
    /// Its name.
    pub name: &'a str,
    /// Present or absent.
    pub ensure: Ensure,
    /// Its fixed uid or gid, if declared.
    pub id: Option<u32>,
    /// A user's home, if declared.
    pub home: Option<&'a str>,
}

/// Which kind of account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccountKind {
    /// A user (its id is a uid).
    User,
    /// A group (its id is a gid).
    Group,
}

/// What a resource is to the engine: one of a few primitives, each with
/// its observation, plan, apply, snapshot and pruning. A kind is one of
/// them, whatever its keys.
#[derive(Debug)]
// A view made and dropped on the spot, never kept in bulk: a path's
// owned parts (a repo file's rendered content) stay inline.
#[allow(clippy::large_enum_variant)]
pub enum Prim<'a> {
    /// A path on the host: a file, a directory or a symlink.
    Path(PathDecl<'a>),
    /// An RPM package (in the one transaction of a converge).
    Package(&'a package::Package),
    /// A local group.
    Group(&'a group::Group),
    /// A local user.
    User(&'a user::User),
    /// A command run when its guards or refreshes say so.
    Command(&'a command::Command),
    /// A systemd unit.
    Unit(&'a service::Service),
    /// An edit of part of a file something else owns.
    Edit(EditDecl<'a>),
    /// An archive extracted into a directory, idempotent by its checksum.
    Archive(&'a archive::Archive),
    /// A value the system keeps that is not a file driftless owns (a live
    /// sysctl, the choice of an alternative).
    Setting(SettingDecl<'a>),
}

/// Which primitive a kind is, without a resource at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimKind {
    /// A path of this form.
    Path(Form),
    /// A package.
    Package,
    /// A local group.
    Group,
    /// A local user.
    User,
    /// A command.
    Command,
    /// A systemd unit.
    Unit,
    /// An edit of part of a file.
    Edit,
    /// An archive extracted into a directory.
    Archive,
    /// A host setting.
    Setting,
}

/// The facets of a setting, by name: each a string, or `None` for absent
/// (unset, removed); what `None` means is the domain's.
pub(crate) type Facets = Vec<(String, Option<String>)>;

/// A host setting the desired state declares (see [`Prim::Setting`]): a
/// few named facets, each a string or `None`; only the declared facets
/// are managed.
#[derive(Debug)]
pub struct SettingDecl<'a> {
    /// Who keeps it: the kernel, the alternatives system.
    pub domain: Domain,
    /// Its name in the domain (`kernel.domainname`, `editor`).
    pub name: &'a str,
    /// The declared facets.
    pub facets: Vec<(&'static str, Option<Cow<'a, str>>)>,
    /// A setting the host does not have is skipped with a note, not an
    /// error.
    pub ignore_missing: bool,
}

impl SettingDecl<'_> {
    /// The facets, owned.
    pub fn owned_facets(&self) -> Facets {
        self.facets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_deref().map(str::to_owned)))
            .collect()
    }
}

/// Who keeps a setting. The code per domain is one `match` per layer:
/// `system::settings` (read and set) and `plan::settings` (the words);
/// a new domain (an alternative's choice, a mount) is a variant here and
/// an arm in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// A kernel parameter: its live value under `/proc/sys` and the file
    /// under `/etc/sysctl.d` that persists it.
    Sysctl,
    /// The choice of an alternative (`alternatives`, `update-alternatives`).
    Alternative,
    /// A mount point: its line in `/etc/fstab` and its live mount.
    Mount,
}

impl Domain {
    /// Its word, as in `sysctl:NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Sysctl => "sysctl",
            Domain::Alternative => "alternative",
            Domain::Mount => "mount",
        }
    }
}

/// The form of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// A path the desired state declares, whatever kind declared it.
#[derive(Debug)]
pub struct PathDecl<'a> {
    /// Absolute, normalised host path.
    pub path: Cow<'a, str>,
    /// Present or absent.
    pub ensure: Ensure,
    /// What is to be there.
    pub form: PathForm<'a>,
    /// Written before the package transaction, which reads it (a repo
    /// file); every other path comes after packages and accounts.
    pub before_packages: bool,
}

impl<'a> PathDecl<'a> {
    /// A file a kind writes whole from its table (a repo file, a sysctl
    /// file, a zone): root's, mode 0644, exactly these bytes, after the
    /// package transaction; `validate` checks new bytes before they replace
    /// the old.
    pub(crate) fn generated(
        path: String,
        ensure: Ensure,
        bytes: Vec<u8>,
        validate: Option<&'a [String]>,
    ) -> Self {
        PathDecl {
            path: Cow::Owned(path),
            ensure,
            form: PathForm::File {
                content: Cow::Owned(Content::new(bytes)),
                meta: Cow::Owned(Meta::new("root", "root", 0o644)),
                sensitive: false,
                rule: ContentRule::Exact,
                validate,
                source_url: None,
            },
            before_packages: false,
        }
    }
}

/// What a declared path is to hold.
// A `PathForm` lives on the stack for one planning step; boxing the file
// variant would cost an allocation per declared file on every no-op.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PathForm<'a> {
    /// A regular file.
    File {
        /// Its bytes.
        content: Cow<'a, Content>,
        /// Owner, group, mode, SELinux parts.
        meta: Cow<'a, Meta>,
        /// Never shown in diffs or logs.
        sensitive: bool,
        /// Whether the bytes are managed, written once, or left alone.
        rule: ContentRule,
        /// The command that checks new bytes before they replace the old.
        validate: Option<&'a [String]>,
        /// Where the bytes are downloaded from, for a pinned download.
        source_url: Option<&'a str>,
    },
    /// A directory.
    Dir {
        /// Owner, group, mode, SELinux parts.
        meta: &'a Meta,
    },
    /// A symbolic link.
    Symlink {
        /// Its target, verbatim.
        target: &'a str,
        /// SELinux parts.
        selinux: &'a SelinuxParts,
    },
}

impl PathForm<'_> {
    /// Which form it is.
    pub fn form(&self) -> Form {
        match self {
            PathForm::File { .. } => Form::File,
            PathForm::Dir { .. } => Form::Dir,
            PathForm::Symlink { .. } => Form::Symlink,
        }
    }
}

/// The identity of a resource: one package by name, one path by path, one
/// unit by unit name. Written `kind:key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    /// What kind of thing.
    pub kind: Kind,
    /// Its key: a name, an absolute path or a unit name.
    pub key: String,
}

impl ResourceId {
    /// Builds an identity.
    pub fn new(kind: Kind, key: impl Into<String>) -> Self {
        Self {
            kind,
            key: key.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.key)
    }
}

/// One declaration with its positions (kept out of [`Spec`] so that equal
/// declarations in two files compare equal).
#[derive(Clone, Debug)]
pub(crate) struct Decl {
    /// What is declared.
    pub spec: Spec,
    /// Where the declaration starts.
    pub origin: Origin,
    /// Repo line of the first line of inline content (for template errors).
    pub content_line: usize,
    /// `prune = false`: once dropped from the repo, left as it is.
    pub prune: bool,
    /// Its `when` holds on this host (without one, it does). One that
    /// does not still takes part in merging (a host file's declaration
    /// that does not apply overrides a role's), then is not managed.
    pub applies: bool,
    /// The `for_each` item it was declared for: in scope of its content
    /// template too.
    pub item: Option<minijinja::Value>,
    /// Positions of the service's `restart_on` then `reload_on` entries, of
    /// the command's `refresh_on` entries, or of the user's `group` then
    /// `groups` entries.
    pub ref_origins: Vec<Origin>,
}

/// What a kind reads content with when it is resolved
/// ([`KindDef::resolve`]): the repo's files, secrets and templates.
pub(crate) trait ReadContent {
    /// The bytes `content` says, read (or decrypted) and, with `template`,
    /// rendered; and whether they are sensitive (a secret, or a template
    /// that read one). `None` when that failed (the problem is reported).
    /// `what` names the resource in messages; `present`: only a present
    /// resource's template is rendered.
    fn read(
        &mut self,
        content: &ContentSpec,
        template: bool,
        present: bool,
        what: &ResourceId,
        decl: &Decl,
    ) -> Option<(Content, bool)>;

    /// Reports a problem with the declaration `decl` found while resolving
    /// it (a repo file that is not what its `sha256` pins).
    fn problem(&mut self, decl: &Decl, message: String);
}

/// A parsed declaration and what it says of its own positions.
pub(crate) struct Parsed<S> {
    /// What is declared.
    pub spec: S,
    /// Repo line of the first line of inline content (for template errors).
    pub content_line: usize,
    /// Positions of its references (`restart_on`, `refresh_on`, a user's
    /// groups), in the order the checks visit them.
    pub ref_origins: Vec<Origin>,
}

impl<S> Parsed<S> {
    /// A declaration with no positions of its own.
    pub(crate) fn plain(spec: S) -> Self {
        Self {
            spec,
            content_line: 0,
            ref_origins: Vec::new(),
        }
    }
}

/// Generates, from the one list of kinds, the enums and their dispatch.
macro_rules! kinds {
    ($($variant:ident = $name:literal => $module:ident::$ty:ident,)*) => {
        /// The kinds of resource, in the order a converge applies them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Kind {
            $(
                #[doc = concat!("`[[", $name, "]]`: see [`", stringify!($module), "`].")]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        /// The sections a host or role file may hold.
        pub(crate) const SECTIONS: &[&str] = &["roles", "vars", "check", $($name,)*];

        impl Kind {
            /// Every kind, in apply order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The word used in sections (`[[file]]`), references
            /// (`file:/etc/motd`) and messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// The section's name in messages: `[[file]]`.
            pub fn section(self) -> &'static str {
                match self {
                    $(Kind::$variant => concat!("[[", $name, "]]"),)*
                }
            }

            /// The keys a table of this kind takes.
            pub fn keys(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$variant => <$module::$ty as KindDef>::KEYS,)*
                }
            }

            /// Which primitive this kind is.
            pub fn prim(self) -> PrimKind {
                match self {
                    $(Kind::$variant => <$module::$ty as KindDef>::PRIM,)*
                }
            }

            /// The host path a resource of this kind with `key` manages,
            /// if it is a path.
            pub fn path_of_key(self, key: &str) -> Option<String> {
                match self {
                    $(Kind::$variant => <$module::$ty as KindDef>::path_of_key(key),)*
                }
            }

            /// A resource of this kind with `key` that must not exist, if
            /// such a one can be removed ([`KindDef::absent`]).
            pub fn absent(self, key: &str) -> Option<Resource> {
                match self {
                    $(Kind::$variant => {
                        <$module::$ty as KindDef>::absent(key).map(Resource::$variant)
                    })*
                }
            }

            /// A resource of this kind with `key` that puts back what an
            /// edit replaced ([`KindDef::from_undo`]).
            pub fn undoing(self, key: &str, path: &str, undo: &TextEdit) -> Option<Resource> {
                match self {
                    $(Kind::$variant => {
                        <$module::$ty as KindDef>::from_undo(key, path, undo).map(Resource::$variant)
                    })*
                }
            }

            /// A resource of this kind with `key` that puts a setting's
            /// `facets` back ([`KindDef::from_facets`]).
            pub fn restoring(self, key: &str, facets: &Facets) -> Option<Resource> {
                match self {
                    $(Kind::$variant => {
                        <$module::$ty as KindDef>::from_facets(key, facets).map(Resource::$variant)
                    })*
                }
            }

            /// The key a reference to this kind means
            /// ([`KindDef::reference_key`]).
            pub fn reference_key(self, key: &str) -> Result<String, String> {
                match self {
                    $(Kind::$variant => <$module::$ty as KindDef>::reference_key(key),)*
                }
            }

            /// The unit a change of this kind reloads
            /// ([`KindDef::RELOADS`]).
            pub fn reloads(self) -> Option<&'static str> {
                match self {
                    $(Kind::$variant => <$module::$ty as KindDef>::RELOADS,)*
                }
            }

            /// Parses the word of a reference or section.
            pub fn parse(word: &str) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.as_str() == word)
            }

            /// Parses one `[[kind]]` table.
            pub(crate) fn parse_table(
                self,
                p: &Parser<'_, '_>,
                f: &Fields<'_, '_>,
            ) -> Option<Parsed<Spec>> {
                match self {
                    $(Kind::$variant => {
                        let parsed = <$module::$ty as KindDef>::parse(p, f)?;
                        Some(Parsed {
                            spec: Spec::$variant(parsed.spec),
                            content_line: parsed.content_line,
                            ref_origins: parsed.ref_origins,
                        })
                    })*
                }
            }
        }

        /// One declared resource.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum Resource {
            $(
                #[doc = concat!("See [`", stringify!($module), "`].")]
                #[serde(rename = $name)]
                $variant($module::$ty),
            )*
        }

        impl Resource {
            /// The identity of this resource.
            pub fn id(&self) -> ResourceId {
                match self {
                    $(Resource::$variant(r) => ResourceId::new(Kind::$variant, r.key()),)*
                }
            }

            /// The host path this resource manages, if it is a filesystem
            /// object.
            pub fn path(&self) -> Option<String> {
                match self {
                    $(Resource::$variant(r) => Identity::path(r),)*
                }
            }

            /// What it is to the engine.
            pub fn lower(&self) -> Prim<'_> {
                match self {
                    $(Resource::$variant(r) => r.lower(),)*
                }
            }

            /// Its content that is kept in the object store (a file's
            /// bytes), if any.
            pub fn stored_content(&self) -> Option<&Content> {
                match self {
                    $(Resource::$variant(r) => r.stored_content(),)*
                }
            }

            /// [`Resource::stored_content`], to fill in.
            pub fn stored_content_mut(&mut self) -> Option<&mut Content> {
                match self {
                    $(Resource::$variant(r) => r.stored_content_mut(),)*
                }
            }

            /// The argv that asks whether the unit reading it runs it
            /// as written ([`KindDef::runtime_probe`]).
            pub fn runtime_probe(&self) -> Option<Vec<String>> {
                match self {
                    $(Resource::$variant(r) => r.runtime_probe(),)*
                }
            }

            /// Where its stored content is downloaded from, if it is a
            /// pinned download ([`KindDef::source_url`]).
            pub fn source_url(&self) -> Option<&str> {
                match self {
                    $(Resource::$variant(r) => r.source_url(),)*
                }
            }
        }

        /// One declaration, before it is resolved into a [`Resource`].
        #[derive(Clone, Debug, PartialEq)]
        pub(crate) enum Spec {
            $(
                #[doc = concat!("See [`", stringify!($module), "`].")]
                $variant(<$module::$ty as KindDef>::Spec),
            )*
        }

        impl Spec {
            /// The identity of the declared resource.
            pub(crate) fn id(&self) -> ResourceId {
                match self {
                    $(Spec::$variant(s) => ResourceId::new(Kind::$variant, s.key()),)*
                }
            }

            /// The host path the declaration manages, if it is a
            /// filesystem object.
            pub(crate) fn path(&self) -> Option<String> {
                match self {
                    $(Spec::$variant(s) => Identity::path(s),)*
                }
            }

            /// What it says of other declarations.
            pub(crate) fn relations(&self) -> Relations<'_> {
                match self {
                    $(Spec::$variant(s) => <$module::$ty as KindDef>::relations(s),)*
                }
            }

            /// The resource it stands for; `None` when resolving failed.
            pub(crate) fn resolve(
                &self,
                r: &mut dyn ReadContent,
                decl: &Decl,
            ) -> Option<Resource> {
                match self {
                    $(Spec::$variant(s) => {
                        <$module::$ty as KindDef>::resolve(s, r, decl).map(Resource::$variant)
                    })*
                }
            }
        }
    };
}

// The kinds, in apply order: repo files before the package transaction,
// packages before the accounts they may create, groups before their
// users, accounts before the paths they own, directories before what is
// in them (an archive is extracted into a directory of its own, after the
// directories above it), paths before the commands and services that read them;
// settings after the packages that bring them (an alternative's targets).
kinds! {
    Repo = "repo" => repo::Repo,
    Package = "package" => package::Package,
    Group = "group" => group::Group,
    User = "user" => user::User,
    Directory = "directory" => directory::Directory,
    Archive = "archive" => archive::Archive,
    File = "file" => file::File,
    SysctlFile = "sysctl_file" => sysctl_file::SysctlFile,
    KernelModule = "kernel_module" => kernel_module::KernelModule,
    Firewalld = "firewalld" => firewalld::Firewalld,
    Dropin = "dropin" => dropin::Dropin,
    Symlink = "symlink" => symlink::Symlink,
    Line = "line" => line::Line,
    Block = "block" => block::Block,
    Ini = "ini" => ini::Ini,
    AuthorizedKey = "authorized_key" => authorized_key::AuthorizedKey,
    Sysctl = "sysctl" => sysctl::Sysctl,
    Alternative = "alternative" => alternative::Alternative,
    Mount = "mount" => mount::Mount,
    Command = "command" => command::Command,
    Service = "service" => service::Service,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_alike_everywhere() {
        for &k in Kind::ALL {
            assert_eq!(
                serde_json::to_value(k).expect("json"),
                serde_json::Value::String(k.as_str().to_owned())
            );
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert!(!k.keys().is_empty());
        }
    }

    #[test]
    fn the_order_is_the_apply_order() {
        let mut sorted = Kind::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, Kind::ALL);
        assert_eq!(Kind::ALL.first(), Some(&Kind::Repo));
        assert_eq!(Kind::ALL.last(), Some(&Kind::Service));
    }
}
