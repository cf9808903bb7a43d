//! `[[repo]]`: a dnf repository, kept as its file under `/etc/yum.repos.d`.

use serde::{Deserialize, Serialize};

use super::{Decl, Form, Identity, KindDef, Parsed, PathDecl, Prim, PrimKind, ReadContent};
use crate::desired::checks;
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::Ensure;

/// A dnf repository, written as `/etc/yum.repos.d/<name>.repo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Repository id, also the file name.
    pub name: String,
    /// Where packages come from.
    pub location: RepoLocation,
    /// `enabled=` in the repo file.
    pub enabled: bool,
    /// `gpgcheck=` in the repo file.
    pub gpgcheck: bool,
    /// `gpgkey=` in the repo file.
    pub gpgkey: Option<String>,
    /// `name=` in the repo file (a human description).
    pub description: Option<String>,
    /// `metadata_expire=`: how long dnf trusts cached metadata (dnf's
    /// default is 48h, too long for a freshly pinned version to be seen).
    #[serde(default)]
    pub metadata_expire: Option<String>,
    /// Present or absent.
    pub ensure: Ensure,
}

/// The one source of a repository's packages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoLocation {
    /// `baseurl=`
    Baseurl(String),
    /// `metalink=`
    Metalink(String),
    /// `mirrorlist=`
    Mirrorlist(String),
}

/// The host path of repo `name`'s file.
pub(crate) fn repo_path(name: &str) -> String {
    format!("/etc/yum.repos.d/{name}.repo")
}

impl Repo {
    /// The path of the repo file on the host.
    pub fn path(&self) -> String {
        repo_path(&self.name)
    }

    /// The exact bytes of the repo file.
    pub fn render(&self) -> Vec<u8> {
        let (key, url) = match &self.location {
            RepoLocation::Baseurl(u) => ("baseurl", u),
            RepoLocation::Metalink(u) => ("metalink", u),
            RepoLocation::Mirrorlist(u) => ("mirrorlist", u),
        };
        let mut s = String::from("# Managed by driftless: local changes are overwritten.\n");
        s.push_str(&format!("[{}]\n", self.name));
        s.push_str(&format!(
            "name={}\n",
            self.description.as_deref().unwrap_or(&self.name)
        ));
        s.push_str(&format!("{key}={url}\n"));
        s.push_str(&format!("enabled={}\n", u8::from(self.enabled)));
        s.push_str(&format!("gpgcheck={}\n", u8::from(self.gpgcheck)));
        if let Some(k) = &self.gpgkey {
            s.push_str(&format!("gpgkey={k}\n"));
        }
        if let Some(m) = &self.metadata_expire {
            s.push_str(&format!("metadata_expire={m}\n"));
        }
        s.into_bytes()
    }
}

impl Identity for Repo {
    fn key(&self) -> &str {
        &self.name
    }

    fn path(&self) -> Option<String> {
        Some(repo_path(&self.name))
    }
}

impl KindDef for Repo {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "name",
        "baseurl",
        "metalink",
        "mirrorlist",
        "enabled",
        "gpgcheck",
        "gpgkey",
        "description",
        "metadata_expire",
        "state",
        "prune",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, checks::repo_name).map(|()| n.into_inner()));
        let ensure = p.ensure(f);
        let locations: Vec<(&str, Sp<String>)> = ["baseurl", "metalink", "mirrorlist"]
            .into_iter()
            .filter_map(|k| f.string(p.cx, k).map(|v| (k, v)))
            .collect();
        let location = match (locations.as_slice(), ensure) {
            ([(k, v)], _) => {
                let url = v.get_ref().clone();
                if url.is_empty() || url.contains(['\n', '\r']) {
                    p.cx.error(&v.span(), format!("`{k}` must be a URL on one line"));
                    None
                } else {
                    Some(match *k {
                        "baseurl" => RepoLocation::Baseurl(url),
                        "metalink" => RepoLocation::Metalink(url),
                        _ => RepoLocation::Mirrorlist(url),
                    })
                }
            }
            ([], Some(Ensure::Absent)) => Some(RepoLocation::Baseurl(String::new())),
            ([], _) => {
                p.cx.error(
                    &f.span(),
                    "[[repo]] needs exactly one of `baseurl`, `metalink` or `mirrorlist`",
                );
                None
            }
            (many, _) => {
                p.cx.error(
                    &many[1].1.span(),
                    "[[repo]] takes only one of `baseurl`, `metalink` or `mirrorlist`",
                );
                None
            }
        };
        let one_line = |key: &str| -> Option<Option<String>> {
            match f.string(p.cx, key) {
                Some(v) if v.get_ref().contains(['\n', '\r']) => {
                    p.cx.error(&v.span(), format!("`{key}` must be on one line"));
                    None
                }
                v => Some(v.map(Sp::into_inner)),
            }
        };
        let gpgkey = one_line("gpgkey");
        let description = one_line("description");
        let metadata_expire = match f.string(p.cx, "metadata_expire") {
            Some(v)
                if v.get_ref().is_empty()
                    || !v.get_ref().chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                p.cx.error(&v.span(), "`metadata_expire` must be a number of seconds or a duration such as \"1h\" or \"never\"");
                None
            }
            v => Some(v.map(Sp::into_inner)),
        };
        Some(Parsed::plain(Repo {
            name: name?,
            location: location?,
            enabled: f.bool(p.cx, "enabled").is_none_or(Sp::into_inner),
            gpgcheck: f.bool(p.cx, "gpgcheck").is_none_or(Sp::into_inner),
            gpgkey: gpgkey?,
            description: description?,
            metadata_expire: metadata_expire?,
            ensure: ensure?,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    const PRIM: PrimKind = PrimKind::Path(Form::File);

    fn lower(&self) -> Prim<'_> {
        let mut decl = PathDecl::generated(repo_path(&self.name), self.ensure, self.render(), None);
        // dnf reads it in the package transaction.
        decl.before_packages = true;
        Prim::Path(decl)
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(repo_path(key))
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Repo {
            name: key.to_owned(),
            location: RepoLocation::Baseurl(String::new()),
            enabled: false,
            gpgcheck: false,
            gpgkey: None,
            description: None,
            metadata_expire: None,
            ensure: Ensure::Absent,
        })
    }
}
