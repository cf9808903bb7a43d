//! Parsing one host or role file into declarations, collecting every error.

use std::time::Duration;

use toml::de::DeValue;

use super::checks;
use super::diag::Origin;
use super::model::{
    Check, Command, Directory, Ensure, Group, Meta, Package, PackageState, Probe, Repo,
    RepoLocation, ResourceId, RunState, SelinuxParts, Service, Symlink, User,
};
use super::schema::{Ctx, Fields, Sp, array_of_tables, parse_document};

/// Default mode of managed files.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Default mode of managed directories.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Default owner and group.
pub const DEFAULT_OWNER: &str = "root";
/// Default time limit of one health-check attempt.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default retries of a health check.
pub const DEFAULT_CHECK_RETRIES: u32 = 3;
/// Default pause between health-check attempts.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

const TOP_KEYS: &[&str] = &[
    "roles",
    "vars",
    "package",
    "repo",
    "group",
    "user",
    "file",
    "directory",
    "symlink",
    "command",
    "service",
    "check",
];
const PACKAGE_KEYS: &[&str] = &["name", "state", "version", "prune"];
const GROUP_KEYS: &[&str] = &["name", "gid", "system", "state"];
const USER_KEYS: &[&str] = &[
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
const REPO_KEYS: &[&str] = &[
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
const FILE_KEYS: &[&str] = &[
    "path",
    "source",
    "content",
    "template",
    "owner",
    "group",
    "mode",
    "state",
    "sensitive",
    "selinux",
    "prune",
];
const DIR_KEYS: &[&str] = &[
    "path", "owner", "group", "mode", "state", "selinux", "prune",
];
const SYMLINK_KEYS: &[&str] = &["path", "target", "state", "selinux", "prune"];
/// A name and its string value in an inline table, each with its span.
type Entry = (Sp<String>, Sp<String>);
/// The parts of `selinux = { ... }`.
const SELINUX_KEYS: &[&str] = &["user", "role", "type", "range"];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "enabled",
    "state",
    "restart_on",
    "reload_on",
    "restart_command",
    "prune",
];
const COMMAND_KEYS: &[&str] = &[
    "name",
    "command",
    "shell",
    "creates",
    "unless",
    "onlyif",
    "refresh_on",
    "timeout",
    "environment",
    "cwd",
    "user",
];
/// Default time limit of a `[[command]]` (and of each of its guards).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
const CHECK_KEYS: &[&str] = &[
    "name", "command", "service", "http", "timeout", "retries", "interval",
];

/// Where a file's bytes come from, before templates are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentSpec {
    /// Inline `content = "..."`.
    Inline(String),
    /// `source = "files/..."`, a repo-relative path.
    Source(String),
    /// Neither (only valid with `state = "absent"`).
    Nothing,
}

/// A `[[file]]` before its content is read and rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Host path.
    pub path: String,
    /// Present or absent.
    pub ensure: Ensure,
    /// Content source.
    pub content: ContentSpec,
    /// Render with minijinja.
    pub template: bool,
    /// Ownership and mode.
    pub meta: Meta,
    /// No diffs or content in logs.
    pub sensitive: bool,
}

/// What one declaration declares, compared for equality between roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `[[repo]]`
    Repo(Repo),
    /// `[[package]]`
    Package(Package),
    /// `[[group]]`
    Group(Group),
    /// `[[user]]`
    User(User),
    /// `[[directory]]`
    Directory(Directory),
    /// `[[file]]`
    File(FileSpec),
    /// `[[symlink]]`
    Symlink(Symlink),
    /// `[[command]]`
    Command(Command),
    /// `[[service]]`
    Service(Service),
}

impl Spec {
    /// The identity of the declared resource.
    pub fn id(&self) -> ResourceId {
        use super::model::Kind;
        match self {
            Spec::Repo(r) => ResourceId::new(Kind::Repo, &r.name),
            Spec::Package(p) => ResourceId::new(Kind::Package, &p.name),
            Spec::Group(g) => ResourceId::new(Kind::Group, &g.name),
            Spec::User(u) => ResourceId::new(Kind::User, &u.name),
            Spec::Directory(d) => ResourceId::new(Kind::Directory, &d.path),
            Spec::File(f) => ResourceId::new(Kind::File, &f.path),
            Spec::Symlink(s) => ResourceId::new(Kind::Symlink, &s.path),
            Spec::Command(c) => ResourceId::new(Kind::Command, &c.name),
            Spec::Service(s) => ResourceId::new(Kind::Service, &s.unit),
        }
    }

    /// The host path, for filesystem resources.
    pub fn path(&self) -> Option<String> {
        match self {
            Spec::Repo(r) => Some(r.path()),
            Spec::Directory(d) => Some(d.path.clone()),
            Spec::File(f) => Some(f.path.clone()),
            Spec::Symlink(s) => Some(s.path.clone()),
            Spec::Package(_)
            | Spec::Group(_)
            | Spec::User(_)
            | Spec::Command(_)
            | Spec::Service(_) => None,
        }
    }
}

/// One declaration with its positions (kept out of [`Spec`] so that equal
/// declarations in two files compare equal).
#[derive(Clone, Debug)]
pub struct Decl {
    /// What is declared.
    pub spec: Spec,
    /// Where the declaration starts.
    pub origin: Origin,
    /// Repo line of the first line of inline content (for template errors).
    pub content_line: usize,
    /// `prune = false`: once dropped from the repo, left as it is.
    pub prune: bool,
    /// Positions of the service's `restart_on` then `reload_on` entries, of
    /// the command's `refresh_on` entries, or of the user's `group` then
    /// `groups` entries.
    pub ref_origins: Vec<Origin>,
}

/// A `[[check]]` with its position.
#[derive(Clone, Debug)]
pub struct CheckDecl {
    /// The check.
    pub check: Check,
    /// Where it is declared.
    pub origin: Origin,
}

/// Everything one host or role file says.
#[derive(Clone, Debug, Default)]
pub struct ParsedFile {
    /// `roles = [...]`, with positions.
    pub roles: Vec<(String, Origin)>,
    /// `[vars]`.
    pub vars: toml::Table,
    /// Resource declarations in file order.
    pub decls: Vec<Decl>,
    /// Health checks in file order.
    pub checks: Vec<CheckDecl>,
}

/// Parses one host or role file. Problems are recorded in `cx`; the result
/// holds whatever was valid, so later stages can find more problems.
pub fn parse_file(cx: &Ctx<'_>, text: &str, state_dir: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let Some(doc) = parse_document(cx, text) else {
        return out;
    };
    let top = Fields::new(doc.get_ref(), doc.span(), "the top level", TOP_KEYS);
    let p = Parser { cx, state_dir };

    if let Some(roles) = top.string_list(cx, "roles") {
        for r in roles {
            if r.get_ref().is_empty()
                || !r
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || r.get_ref().starts_with('.')
            {
                cx.error(
                    &r.span(),
                    format!(
                        "role name `{}` is malformed (letters, digits and - _ . only)",
                        r.get_ref()
                    ),
                );
            } else {
                out.roles.push((r.get_ref().clone(), cx.origin(&r.span())));
            }
        }
    }
    if let Some(v) = top.raw("vars") {
        match v.get_ref() {
            DeValue::Table(_) => {
                match <toml::Table as serde::Deserialize>::deserialize(
                    toml::de::ValueDeserializer::from(v.clone()),
                ) {
                    Ok(t) => out.vars = t,
                    Err(e) => cx.error(&v.span(), format!("[vars]: {}", e.message())),
                }
            }
            other => cx.error(
                &v.span(),
                format!(
                    "`vars` must be a table, found {}",
                    super::schema::type_name(other)
                ),
            ),
        }
    }
    let sections: [(&str, &'static str, &'static [&'static str]); 9] = [
        ("repo", "[[repo]]", REPO_KEYS),
        ("package", "[[package]]", PACKAGE_KEYS),
        ("group", "[[group]]", GROUP_KEYS),
        ("user", "[[user]]", USER_KEYS),
        ("directory", "[[directory]]", DIR_KEYS),
        ("file", "[[file]]", FILE_KEYS),
        ("symlink", "[[symlink]]", SYMLINK_KEYS),
        ("command", "[[command]]", COMMAND_KEYS),
        ("service", "[[service]]", SERVICE_KEYS),
    ];
    for (key, what, allowed) in sections {
        let Some(v) = top.raw(key) else { continue };
        for f in array_of_tables(cx, v, what, allowed) {
            let origin = cx.origin(&f.span());
            let prune =
                !allowed.contains(&"prune") || f.bool(cx, "prune").is_none_or(Sp::into_inner);
            let parsed = match key {
                "repo" => p.repo(&f).map(|s| (s, 0, Vec::new())),
                "package" => p.package(&f).map(|s| (s, 0, Vec::new())),
                "group" => p.group(&f).map(|s| (s, 0, Vec::new())),
                "user" => p.user(&f).map(|(s, refs)| (s, 0, refs)),
                "directory" => p.directory(&f).map(|s| (s, 0, Vec::new())),
                "file" => p.file(&f).map(|(s, line)| (s, line, Vec::new())),
                "symlink" => p.symlink(&f).map(|s| (s, 0, Vec::new())),
                "command" => p.command(&f).map(|(s, refs)| (s, 0, refs)),
                _ => p.service(&f).map(|(s, refs)| (s, 0, refs)),
            };
            f.finish(cx);
            if let Some((spec, content_line, ref_origins)) = parsed {
                out.decls.push(Decl {
                    spec,
                    prune,
                    origin,
                    content_line,
                    ref_origins,
                });
            }
        }
    }
    if let Some(v) = top.raw("check") {
        for f in array_of_tables(cx, v, "[[check]]", CHECK_KEYS) {
            let origin = cx.origin(&f.span());
            if let Some(check) = p.check(&f) {
                out.checks.push(CheckDecl { check, origin });
            }
            f.finish(cx);
        }
    }
    top.finish(cx);
    out
}

struct Parser<'c, 'a> {
    cx: &'c Ctx<'a>,
    state_dir: &'c str,
}

impl Parser<'_, '_> {
    /// Runs a value check and reports its error at the value's span.
    fn checked<T>(
        &self,
        v: &Sp<String>,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        check(v.get_ref())
            .map_err(|msg| self.cx.error(&v.span(), msg))
            .ok()
    }

    fn path(&self, f: &Fields<'_, '_>) -> Option<String> {
        let p = f.required_string(self.cx, "path")?;
        self.checked(&p, |s| checks::host_path(s, self.state_dir))?;
        Some(p.into_inner())
    }

    fn ensure(&self, f: &Fields<'_, '_>) -> Option<Ensure> {
        match f.string(self.cx, "state") {
            None => Some(Ensure::Present),
            Some(s) => match s.get_ref().as_str() {
                "present" => Some(Ensure::Present),
                "absent" => Some(Ensure::Absent),
                other => {
                    self.cx.error(
                        &s.span(),
                        format!("state `{other}` is not one of \"present\", \"absent\""),
                    );
                    None
                }
            },
        }
    }

    fn meta(&self, f: &Fields<'_, '_>, default_mode: u32) -> Option<Meta> {
        let name = |key: &str| -> Option<String> {
            match f.string(self.cx, key) {
                None => Some(DEFAULT_OWNER.to_owned()),
                Some(s) => {
                    let text = s.get_ref();
                    let numeric = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    // (uid_t)-1 means "leave unchanged" to chown: such an
                    // owner would be "changed" on every run, forever.
                    if numeric && text.parse::<u32>().map_or(true, |n| n == u32::MAX) {
                        self.cx.error(
                            &s.span(),
                            format!(
                                "{key} `{text}` is not a usable id (ids go up to 4294967294; 4294967295 means \"unchanged\" to chown)"
                            ),
                        );
                        return None;
                    }
                    let ok = !text.is_empty()
                        && text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
                    if ok {
                        Some(s.into_inner())
                    } else {
                        self.cx.error(
                            &s.span(),
                            format!("{key} `{}` is not a valid user or group name", s.get_ref()),
                        );
                        None
                    }
                }
            }
        };
        let owner = name("owner");
        let group = name("group");
        let mode = match f.string(self.cx, "mode") {
            None if f.raw("mode").is_some() => None,
            None => Some(default_mode),
            Some(m) => self.checked(&m, checks::mode),
        };
        let selinux = self.selinux(f);
        Some(Meta {
            owner: owner?,
            group: group?,
            mode: mode?,
            selinux: selinux?,
        })
    }

    /// The entries of an inline table of strings `key = { name = "value" }`:
    /// each name with its span, and its value with the value's span, and
    /// whether every value was a string (each one that is not is reported
    /// and left out). `None` when `key` is not a table (reported; `shape`
    /// says what it should look like). A missing `key` has no entries.
    fn string_table(
        &self,
        f: &Fields<'_, '_>,
        key: &str,
        shape: &str,
    ) -> Option<(Vec<Entry>, bool)> {
        let Some(v) = f.raw(key) else {
            return Some((Vec::new(), true));
        };
        let DeValue::Table(t) = v.get_ref() else {
            self.cx.error(
                &v.span(),
                format!(
                    "`{key}` must be {shape}, found {}",
                    super::schema::type_name(v.get_ref())
                ),
            );
            return None;
        };
        let mut ok = true;
        let mut out = Vec::new();
        for (k, val) in t.iter() {
            let name = Sp::new(k.span(), k.get_ref().to_string());
            match val.get_ref() {
                DeValue::String(text) => out.push((name, Sp::new(val.span(), text.to_string()))),
                other => {
                    self.cx.error(
                        &val.span(),
                        format!(
                            "`{key}.{}` must be a string, found {}",
                            name.get_ref(),
                            super::schema::type_name(other)
                        ),
                    );
                    ok = false;
                }
            }
        }
        Some((out, ok))
    }

    /// `selinux = { user = "...", role = "...", type = "...", range = "..." }`.
    fn selinux(&self, f: &Fields<'_, '_>) -> Option<SelinuxParts> {
        let mut parts = SelinuxParts::default();
        let (entries, mut ok) = self.string_table(
            f,
            "selinux",
            "a table such as { type = \"httpd_sys_content_t\" }",
        )?;
        for (key, text) in entries {
            let key_span = key.span();
            let key = key.into_inner();
            let key = key.as_str();
            let slot = match key {
                "user" => &mut parts.user,
                "role" => &mut parts.role,
                "type" => &mut parts.type_,
                "range" => &mut parts.range,
                other => {
                    let hint = crate::words::suggest(other, SELINUX_KEYS)
                        .map(|h| format!(" (did you mean `{h}`?)"))
                        .unwrap_or_default();
                    self.cx.error(
                        &key_span,
                        format!(
                            "`selinux.{other}` is not a part of an SELinux context: use user, role, type or range{hint}"
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            // A range holds `:`, `,`, `.` and `-` (s0-s0:c0.c1023); the
            // other parts are identifiers.
            let allowed = |c: char| {
                c.is_ascii_alphanumeric()
                    || c == '_'
                    || (key == "range" && ":,.-".contains(c))
                    || (key != "range" && ".-".contains(c))
            };
            if text.get_ref().is_empty() || !text.get_ref().chars().all(allowed) {
                self.cx.error(
                    &text.span(),
                    format!(
                        "`selinux.{key}` `{}` is not a valid SELinux {key}",
                        text.get_ref()
                    ),
                );
                ok = false;
                continue;
            }
            *slot = Some(text.into_inner());
        }
        ok.then_some(parts)
    }

    fn repo(&self, f: &Fields<'_, '_>) -> Option<Spec> {
        let name = f.required_string(self.cx, "name");
        let name = name.and_then(|n| self.checked(&n, checks::repo_name).map(|()| n.into_inner()));
        let ensure = self.ensure(f);
        let locations: Vec<(&str, Sp<String>)> = ["baseurl", "metalink", "mirrorlist"]
            .into_iter()
            .filter_map(|k| f.string(self.cx, k).map(|v| (k, v)))
            .collect();
        let location = match (locations.as_slice(), ensure) {
            ([(k, v)], _) => {
                let url = v.get_ref().clone();
                if url.is_empty() || url.contains(['\n', '\r']) {
                    self.cx
                        .error(&v.span(), format!("`{k}` must be a URL on one line"));
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
                self.cx.error(
                    &f.span(),
                    "[[repo]] needs exactly one of `baseurl`, `metalink` or `mirrorlist`",
                );
                None
            }
            (many, _) => {
                self.cx.error(
                    &many[1].1.span(),
                    "[[repo]] takes only one of `baseurl`, `metalink` or `mirrorlist`",
                );
                None
            }
        };
        let one_line = |key: &str| -> Option<Option<String>> {
            match f.string(self.cx, key) {
                Some(v) if v.get_ref().contains(['\n', '\r']) => {
                    self.cx
                        .error(&v.span(), format!("`{key}` must be on one line"));
                    None
                }
                v => Some(v.map(Sp::into_inner)),
            }
        };
        let gpgkey = one_line("gpgkey");
        let description = one_line("description");
        let metadata_expire = match f.string(self.cx, "metadata_expire") {
            Some(v)
                if v.get_ref().is_empty()
                    || !v.get_ref().chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                self.cx.error(&v.span(), "`metadata_expire` must be a number of seconds or a duration such as \"1h\" or \"never\"");
                None
            }
            v => Some(v.map(Sp::into_inner)),
        };
        Some(Spec::Repo(Repo {
            name: name?,
            location: location?,
            enabled: f.bool(self.cx, "enabled").is_none_or(Sp::into_inner),
            gpgcheck: f.bool(self.cx, "gpgcheck").is_none_or(Sp::into_inner),
            gpgkey: gpgkey?,
            description: description?,
            metadata_expire: metadata_expire?,
            ensure: ensure?,
        }))
    }

    fn package(&self, f: &Fields<'_, '_>) -> Option<Spec> {
        let name = f.required_string(self.cx, "name");
        let name = name.and_then(|n| {
            self.checked(&n, checks::package_name)
                .map(|()| n.into_inner())
        });
        let version = f.string(self.cx, "version");
        let state = f.string(self.cx, "state");
        let word = state.as_ref().map_or("present", |s| s.get_ref().as_str());
        let state = match word {
            "present" => {
                let v = match &version {
                    Some(v) => Some(self.checked(v, checks::evr).map(|()| v.get_ref().clone())?),
                    None => None,
                };
                Some(PackageState::Present(v))
            }
            "absent" | "latest" => {
                if let Some(v) = &version {
                    self.cx.error(
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
                    self.cx.error(
                        &s.span(),
                        format!(
                            "state `{other}` is not one of \"present\", \"absent\", \"latest\""
                        ),
                    );
                }
                None
            }
        };
        Some(Spec::Package(Package {
            name: name?,
            state: state?,
        }))
    }

    fn directory(&self, f: &Fields<'_, '_>) -> Option<Spec> {
        let path = self.path(f);
        let meta = self.meta(f, DEFAULT_DIR_MODE);
        let ensure = self.ensure(f);
        Some(Spec::Directory(Directory {
            path: path?,
            ensure: ensure?,
            meta: meta?,
        }))
    }

    fn file(&self, f: &Fields<'_, '_>) -> Option<(Spec, usize)> {
        let path = self.path(f);
        let meta = self.meta(f, DEFAULT_FILE_MODE);
        let ensure = self.ensure(f);
        let source = f.string(self.cx, "source");
        let content = f.string(self.cx, "content");
        let mut content_line = 0;
        let spec = match (source, content) {
            (Some(s), Some(c)) => {
                self.cx
                    .error(&c.span(), "[[file]] takes `source` or `content`, not both");
                let _ = s;
                None
            }
            (Some(s), None) => self
                .checked(&s, repo_relative_path)
                .map(|()| ContentSpec::Source(s.into_inner())),
            (None, Some(c)) => {
                content_line = inline_first_line(self.cx, &c.span());
                Some(ContentSpec::Inline(c.into_inner()))
            }
            (None, None) if ensure == Some(Ensure::Absent) => Some(ContentSpec::Nothing),
            (None, None) => {
                self.cx.error(
                    &f.span(),
                    "[[file]] needs `source` (a file in the config repo) or `content` (a string)",
                );
                None
            }
        };
        let template = f.bool(self.cx, "template").is_some_and(Sp::into_inner);
        let sensitive = f.bool(self.cx, "sensitive").is_some_and(Sp::into_inner);
        Some((
            Spec::File(FileSpec {
                path: path?,
                ensure: ensure?,
                content: spec?,
                template,
                meta: meta?,
                sensitive,
            }),
            content_line,
        ))
    }

    fn symlink(&self, f: &Fields<'_, '_>) -> Option<Spec> {
        let path = self.path(f);
        let ensure = self.ensure(f);
        let target = match (f.string(self.cx, "target"), ensure) {
            (Some(t), _) if t.get_ref().is_empty() || t.get_ref().contains('\0') => {
                self.cx
                    .error(&t.span(), "symlink `target` must be a non-empty path");
                None
            }
            (Some(t), _) => Some(t.into_inner()),
            (None, Some(Ensure::Absent)) => Some(String::new()),
            (None, _) => {
                self.cx.error(
                    &f.span(),
                    "[[symlink]] is missing the required key `target`",
                );
                None
            }
        };
        let selinux = self.selinux(f);
        Some(Spec::Symlink(Symlink {
            path: path?,
            target: target?,
            ensure: ensure?,
            selinux: selinux?,
        }))
    }

    fn group(&self, f: &Fields<'_, '_>) -> Option<Spec> {
        let name = f.required_string(self.cx, "name");
        let name = name.and_then(|n| {
            self.checked(&n, checks::account_name)
                .map(|()| n.into_inner())
        });
        let gid = f.unsigned(self.cx, "gid").map(Sp::into_inner);
        let system = f.bool(self.cx, "system").is_some_and(Sp::into_inner);
        let ensure = self.ensure(f);
        Some(Spec::Group(Group {
            name: name?,
            gid,
            system,
            ensure: ensure?,
        }))
    }

    fn user(&self, f: &Fields<'_, '_>) -> Option<(Spec, Vec<Origin>)> {
        let name = f.required_string(self.cx, "name");
        let name = name.and_then(|n| {
            self.checked(&n, checks::account_name)
                .map(|()| n.into_inner())
        });
        let uid = f.unsigned(self.cx, "uid").map(Sp::into_inner);
        let mut origins = Vec::new();
        let group = match f.string(self.cx, "group") {
            None => Some(None),
            Some(g) => self.checked(&g, checks::group_ref).map(|()| {
                origins.push(self.cx.origin(&g.span()));
                Some(g.into_inner())
            }),
        };
        let groups = match f.string_list(self.cx, "groups") {
            None if f.raw("groups").is_some() => None,
            None => Some(None),
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for g in list {
                    match self.checked(&g, checks::group_ref) {
                        Some(()) => {
                            origins.push(self.cx.origin(&g.span()));
                            out.push(g.into_inner());
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Some(out))
            }
        };
        let path = |key: &str| match f.string(self.cx, key) {
            None => Some(None),
            Some(p) => self
                .checked(&p, |s| checks::host_path(s, self.state_dir))
                .map(|()| Some(p.into_inner())),
        };
        let home = path("home");
        let shell = path("shell");
        let comment = match f.string(self.cx, "comment") {
            None => Some(None),
            Some(c) => self
                .checked(&c, checks::gecos)
                .map(|()| Some(c.into_inner())),
        };
        let password = match f.string(self.cx, "password") {
            None => Some(None),
            Some(p) => self
                .checked(&p, checks::password_hash)
                .map(|()| Some(p.into_inner())),
        };
        let system = f.bool(self.cx, "system").is_some_and(Sp::into_inner);
        // As useradd on RHEL (CREATE_HOME yes), but not for system accounts.
        let create_home = f
            .bool(self.cx, "create_home")
            .map_or(!system, Sp::into_inner);
        let ensure = self.ensure(f);
        Some((
            Spec::User(User {
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
            }),
            origins,
        ))
    }

    fn service(&self, f: &Fields<'_, '_>) -> Option<(Spec, Vec<Origin>)> {
        let unit = f.required_string(self.cx, "name");
        let unit = unit.and_then(|u| self.checked(&u, checks::unit_name));
        let state = match f.string(self.cx, "state") {
            None => Some(None),
            Some(s) => match s.get_ref().as_str() {
                "running" => Some(Some(RunState::Running)),
                "stopped" => Some(Some(RunState::Stopped)),
                other => {
                    self.cx.error(
                        &s.span(),
                        format!("state `{other}` is not one of \"running\", \"stopped\""),
                    );
                    None
                }
            },
        };
        let mut origins = Vec::new();
        let mut refs = |key: &str| -> Vec<ResourceId> {
            let mut ids = Vec::new();
            for r in f.string_list(self.cx, key).unwrap_or_default() {
                if let Some(id) = self.checked(&r, checks::reference) {
                    ids.push(id);
                    origins.push(self.cx.origin(&r.span()));
                }
            }
            ids
        };
        let restart_on = refs("restart_on");
        let reload_on = refs("reload_on");
        let restart_command = self.argv(f, "restart_command")?;
        if let Some(program) = restart_command.as_ref().and_then(|a| a.first())
            && !program.starts_with('/')
        {
            let span = f
                .raw("restart_command")
                .map(toml::Spanned::span)
                .unwrap_or_default();
            self.cx.error(
                &span,
                format!("`restart_command` must start with an absolute program, not `{program}`"),
            );
            return None;
        }
        Some((
            Spec::Service(Service {
                unit: unit?,
                enabled: f.bool(self.cx, "enabled").map(Sp::into_inner),
                state: state?,
                restart_on,
                reload_on,
                restart_command,
            }),
            origins,
        ))
    }

    /// A list of strings that must hold a program (`command`, `unless`,
    /// `onlyif`).
    fn argv(&self, f: &Fields<'_, '_>, key: &str) -> Option<Option<Vec<String>>> {
        let Some(argv) = f.string_list(self.cx, key) else {
            return if f.raw(key).is_some() {
                None
            } else {
                Some(None)
            };
        };
        if argv.first().is_none_or(|a| a.get_ref().is_empty()) {
            let span = f.raw(key).map(toml::Spanned::span).unwrap_or_default();
            self.cx.error(
                &span,
                format!("`{key}` must list a program and its arguments, as [\"/usr/sbin/sysctl\", \"--system\"]"),
            );
            return None;
        }
        Some(Some(argv.into_iter().map(Sp::into_inner).collect()))
    }

    fn command(&self, f: &Fields<'_, '_>) -> Option<(Spec, Vec<Origin>)> {
        let name = f.required_string(self.cx, "name");
        let name = name.and_then(|n| {
            self.checked(&n, checks::command_name)
                .map(|()| n.into_inner())
        });
        let shell = f.bool(self.cx, "shell").is_some_and(Sp::into_inner);
        let argv = match f.raw("command").map(|v| (v.span(), v.get_ref())) {
            None => {
                self.cx.error(
                    &f.span(),
                    "[[command]] is missing the required key `command`",
                );
                None
            }
            // A script: only with `shell = true`, said out loud.
            Some((span, DeValue::String(script))) => {
                if shell {
                    Some(vec!["/bin/sh".into(), "-c".into(), script.to_string()])
                } else {
                    self.cx.error(
                        &span,
                        "`command` is a string: give a list (program and arguments), or add `shell = true` to run it with /bin/sh -c",
                    );
                    None
                }
            }
            Some((span, _)) if shell => {
                self.cx.error(
                    &span,
                    "with `shell = true`, `command` is one string: the script for /bin/sh -c",
                );
                None
            }
            Some(_) => self.argv(f, "command").flatten(),
        };
        let creates = match f.string(self.cx, "creates") {
            None => Some(None),
            Some(p) => self
                .checked(&p, |s| checks::host_path(s, self.state_dir))
                .map(|()| Some(p.into_inner())),
        };
        let unless = self.argv(f, "unless");
        let onlyif = self.argv(f, "onlyif");
        let mut origins = Vec::new();
        let mut refresh_on = Vec::new();
        for r in f.string_list(self.cx, "refresh_on").unwrap_or_default() {
            if let Some(id) = self.checked(&r, checks::reference) {
                refresh_on.push(id);
                origins.push(self.cx.origin(&r.span()));
            }
        }
        let timeout = match f.string(self.cx, "timeout") {
            None if f.raw("timeout").is_some() => None,
            None => Some(DEFAULT_COMMAND_TIMEOUT),
            Some(t) => self.checked(&t, |t| match humantime::parse_duration(t) {
                Ok(d) if d.is_zero() => Err("`timeout` must be more than 0s".to_owned()),
                Ok(d) => Ok(d),
                Err(e) => Err(format!(
                    "`timeout` = \"{t}\" is not a duration such as \"5m\": {e}"
                )),
            }),
        };
        let environment = self.environment(f);
        let cwd = match f.string(self.cx, "cwd") {
            None => Some(None),
            Some(p) => self
                .checked(&p, |s| checks::host_path(s, self.state_dir))
                .map(|()| Some(p.into_inner())),
        };
        let user = match f.string(self.cx, "user") {
            None => Some(None),
            Some(u) => self
                .checked(&u, checks::account_name)
                .map(|()| Some(u.into_inner())),
        };
        let (creates, unless, onlyif) = (creates?, unless?, onlyif?);
        // Without a guard a command would run on every converge, for ever:
        // the no-op would not be one.
        if creates.is_none() && unless.is_none() && onlyif.is_none() && refresh_on.is_empty() {
            self.cx.error(
                &f.span(),
                "[[command]] needs a guard: `creates`, `unless`, `onlyif` or `refresh_on` (without one it would run on every converge)",
            );
            return None;
        }
        Some((
            Spec::Command(Command {
                name: name?,
                argv: argv?,
                creates,
                unless,
                onlyif,
                refresh_on,
                timeout: timeout?,
                environment: environment?,
                cwd: cwd?,
                user: user?,
            }),
            origins,
        ))
    }

    /// `environment = { NAME = "value", ... }`.
    fn environment(
        &self,
        f: &Fields<'_, '_>,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let (entries, mut ok) =
            self.string_table(f, "environment", "a table of strings in [[command]]")?;
        let mut out = std::collections::BTreeMap::new();
        for (key, text) in entries {
            let good_name = !key.get_ref().is_empty()
                && !key.get_ref().starts_with(|c: char| c.is_ascii_digit())
                && key
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !good_name {
                self.cx.error(
                    &key.span(),
                    format!(
                        "`{}` is not an environment variable name (letters, digits and _)",
                        key.get_ref()
                    ),
                );
                ok = false;
                continue;
            }
            out.insert(key.into_inner(), text.into_inner());
        }
        ok.then_some(out)
    }

    fn check(&self, f: &Fields<'_, '_>) -> Option<Check> {
        let name = f.required_string(self.cx, "name").map(Sp::into_inner);
        let mut probes = Vec::new();
        if let Some(argv) = f.string_list(self.cx, "command") {
            let span = f
                .raw("command")
                .map(toml::Spanned::span)
                .unwrap_or_default();
            if argv.is_empty() || argv[0].get_ref().is_empty() {
                self.cx
                    .error(&span, "`command` must list a program and its arguments");
            } else {
                probes.push(Probe::Command(
                    argv.into_iter().map(Sp::into_inner).collect(),
                ));
            }
        }
        if let Some(unit) = f.string(self.cx, "service")
            && let Some(u) = self.checked(&unit, checks::unit_name)
        {
            probes.push(Probe::Service(u));
        }
        if let Some(url) = f.string(self.cx, "http")
            && self
                .checked(&url, |u| {
                    if u.starts_with("http://") || u.starts_with("https://") {
                        Ok(())
                    } else {
                        Err(format!(
                            "`http` must be an http:// or https:// URL, not `{u}`"
                        ))
                    }
                })
                .is_some()
        {
            probes.push(Probe::Http(url.into_inner()));
        }
        let probe = match probes.len() {
            1 => probes.pop(),
            0 if ["command", "service", "http"]
                .iter()
                .any(|k| f.raw(k).is_some()) =>
            {
                None
            }
            0 => {
                self.cx.error(
                    &f.span(),
                    "[[check]] needs one of `command`, `service` or `http`",
                );
                None
            }
            _ => {
                self.cx.error(
                    &f.span(),
                    "[[check]] takes only one of `command`, `service` or `http`",
                );
                None
            }
        };
        let duration = |key: &str, default: Duration| -> Option<Duration> {
            match f.string(self.cx, key) {
                None if f.raw(key).is_some() => None,
                None => Some(default),
                Some(s) => self.checked(&s, |t| {
                    humantime::parse_duration(t).map_err(|e| {
                        format!("`{key}` = \"{t}\" is not a duration such as \"30s\": {e}")
                    })
                }),
            }
        };
        let timeout = duration("timeout", DEFAULT_CHECK_TIMEOUT);
        let interval = duration("interval", DEFAULT_CHECK_INTERVAL);
        let retries = match f.unsigned(self.cx, "retries") {
            None if f.raw("retries").is_some() => None,
            None => Some(DEFAULT_CHECK_RETRIES),
            Some(r) => Some(r.into_inner()),
        };
        Some(Check {
            name: name?,
            probe: probe?,
            timeout: timeout?,
            retries: retries?,
            interval: interval?,
        })
    }
}

/// Checks a repo-relative path (`files/nginx.conf`): relative, normalised,
/// never climbing out of the repo.
pub fn repo_relative_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        return Err(format!(
            "source `{p}` must be a path relative to the config repo root, such as \"files/motd\""
        ));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!(
            "source `{p}` must be normalised (no empty, `.` or `..` components)"
        ));
    }
    Ok(())
}

/// The repo line where inline content's first line is. TOML drops a newline
/// right after an opening `"""` or `'''`, so the text starts a line later.
fn inline_first_line(cx: &Ctx<'_>, span: &std::ops::Range<usize>) -> usize {
    let line = cx.origin(span).line;
    let raw = cx.text_at(span);
    let multi = raw.starts_with("\"\"\"") || raw.starts_with("'''");
    let after = raw.get(3..).unwrap_or("");
    if multi && (after.starts_with('\n') || after.starts_with("\r\n")) {
        line + 1
    } else {
        line
    }
}
