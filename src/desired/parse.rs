//! Parsing one host or role file into declarations, collecting every error.

use std::time::Duration;

use toml::de::DeValue;

use super::checks;
use super::diag::Origin;
use super::kinds::{Decl, Kind, SECTIONS};
use super::model::{Check, Probe};
use super::parser::{DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_RETRIES, DEFAULT_CHECK_TIMEOUT, Parser};
use super::schema::{Ctx, Fields, Sp, array_of_tables, parse_document};
use super::template::Scope;

const CHECK_KEYS: &[&str] = &[
    "name", "command", "service", "http", "timeout", "retries", "interval",
];

/// A `[[check]]` with its position.
#[derive(Clone, Debug)]
pub(crate) struct CheckDecl {
    /// The check.
    pub check: Check,
    /// Where it is declared.
    pub origin: Origin,
}

/// Everything one host or role file says.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedFile {
    /// `roles = [...]`, with positions.
    pub roles: Vec<(String, Origin)>,
    /// `[vars]`.
    pub vars: toml::Table,
    /// Where each of `vars` is set.
    pub var_origins: std::collections::BTreeMap<String, Origin>,
    /// What is probably not meant as written, but valid.
    pub warnings: Vec<super::diag::Diagnostic>,
    /// Resource declarations in file order.
    pub decls: Vec<Decl>,
    /// Health checks in file order.
    pub checks: Vec<CheckDecl>,
}

/// Keys every resource table takes besides its kind's.
const RESOURCE_KEYS: &[&str] = &["when", "for_each"];

/// What a pass over a host or role file reads.
pub(crate) enum Stage<'a> {
    /// `roles` and `[vars]`, and the file's shape: what the values of its
    /// resources are computed from.
    Top,
    /// The resources and checks, their `when`, `for_each` and `{{ … }}`
    /// computed in `scope`.
    Resources(&'a Scope),
}

/// Parses one host or role file, the part `stage` says. Problems are
/// recorded in `cx`; the result holds whatever was valid, so later stages
/// can find more problems.
pub(crate) fn parse_file(
    cx: &Ctx<'_>,
    text: &str,
    state_dir: &str,
    stage: Stage<'_>,
) -> ParsedFile {
    let mut out = ParsedFile::default();
    let Some(doc) = parse_document(cx, text) else {
        return out;
    };
    let top = Fields::new(doc.get_ref(), doc.span(), "the top level", SECTIONS);
    let p = Parser { cx, state_dir };
    let Stage::Resources(scope) = stage else {
        top_level(cx, &top, &mut out);
        top.finish(cx);
        return out;
    };
    for &kind in Kind::ALL {
        let Some(v) = top.raw(kind.as_str()) else {
            continue;
        };
        for f in array_of_tables(cx, v, kind.section(), kind.keys()) {
            let f = f.also(RESOURCE_KEYS);
            out.decls.extend(resources(&p, kind, &f, scope));
            f.finish(cx);
        }
    }
    if let Some(v) = top.raw("check") {
        for f in array_of_tables(cx, v, "[[check]]", CHECK_KEYS) {
            let origin = cx.origin(&f.span());
            if let Some(check) = check(&p, &f) {
                out.checks.push(CheckDecl { check, origin });
            }
            f.finish(cx);
        }
    }
    out
}

/// The declarations one `[[kind]]` table makes: one, or one per item of
/// its `for_each`, each with its string values rendered (`item` in scope)
/// and its `when` decided. A table whose `when` is false still declares
/// what it names (so a host file's `when = "false"` overrides a role's
/// declaration), when its keys can be read; its problems are not this
/// host's.
fn resources(p: &Parser<'_, '_>, kind: Kind, f: &Fields<'_, '_>, scope: &Scope) -> Vec<Decl> {
    let cx = p.cx;
    let items = match f.string(cx, "for_each") {
        None => vec![None],
        Some(e) => match scope.items(e.get_ref()) {
            Ok(items) => items.into_iter().map(Some).collect(),
            Err(m) => {
                cx.error(&e.span(), format!("`for_each`: {m}"));
                return Vec::new();
            }
        },
    };
    let when = f.string(cx, "when");
    let mut out = Vec::new();
    for item in &items {
        let applies = match &when {
            None => true,
            Some(w) => match scope.condition(w.get_ref(), item.as_ref()) {
                Ok(b) => b,
                Err(m) => {
                    cx.error(&w.span(), format!("`when`: {m}"));
                    continue;
                }
            },
        };
        let expand = |s: &str| scope.expand(s, item.as_ref());
        let g = f.expanding(&expand);
        // What a table that does not apply gets wrong is not reported.
        // (Made only then: indexing the file again for every table made a
        // load quadratic in the host file's size.)
        let scratch;
        let p = Parser {
            cx: if applies {
                cx
            } else {
                scratch = cx.quiet();
                &scratch
            },
            state_dir: p.state_dir,
        };
        let prune =
            !kind.keys().contains(&"prune") || g.bool(p.cx, "prune").is_none_or(Sp::into_inner);
        if let Some(parsed) = kind.parse_table(&p, &g) {
            out.push(Decl {
                spec: parsed.spec,
                prune,
                origin: cx.origin(&f.span()),
                content_line: parsed.content_line,
                ref_origins: parsed.ref_origins,
                applies,
                item: item.clone(),
            });
        }
    }
    out
}

/// The first parts of kernel parameter names (`/proc/sys/<part>`).
const SYSCTL_ROOTS: &[&str] = &[
    "abi", "crypto", "debug", "dev", "fs", "kernel", "net", "sunrpc", "user", "vm",
];

/// A warning for a var written as an unquoted dotted key whose name reads
/// as a kernel parameter (`fs.protected_hardlinks = 1`): TOML makes it a
/// table `fs` holding `protected_hardlinks`, which a template looping over
/// sysctl settings does not expect.
fn dotted_sysctl(
    cx: &Ctx<'_>,
    key: &Sp<std::borrow::Cow<'_, str>>,
    value: &Sp<DeValue<'_>>,
) -> Option<super::diag::Diagnostic> {
    let dotted = cx
        .text()
        .get(key.span().end..)
        .is_some_and(|rest| rest.trim_start().starts_with('.'));
    let DeValue::Table(inner) = value.get_ref() else {
        return None;
    };
    if !dotted || !SYSCTL_ROOTS.contains(&key.get_ref().as_ref()) {
        return None;
    }
    let (sub, _) = inner.iter().next()?;
    let name = format!("{}.{}", key.get_ref(), sub.get_ref());
    Some(cx.origin(&key.span()).diag(format!(
        "`{name}` is a dotted key, so TOML makes `vars.{}` a table; if `{name}` is one name \
         (a kernel parameter), quote it: \"{name}\" = …",
        key.get_ref()
    )))
}

/// `roles = [...]` and `[vars]`.
fn top_level(cx: &Ctx<'_>, top: &Fields<'_, '_>, out: &mut ParsedFile) {
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
            DeValue::Table(t) => {
                for (key, value) in t.iter() {
                    out.var_origins
                        .insert(key.get_ref().to_string(), cx.origin(&key.span()));
                    out.warnings.extend(dotted_sysctl(cx, key, value));
                }
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
}

fn check(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Check> {
    let name = f.required_string(p.cx, "name").map(Sp::into_inner);
    let mut probes = Vec::new();
    if let Some(argv) = f.string_list(p.cx, "command") {
        let span = f
            .raw("command")
            .map(toml::Spanned::span)
            .unwrap_or_default();
        if argv.is_empty() || argv[0].get_ref().is_empty() {
            p.cx.error(&span, "`command` must list a program and its arguments");
        } else {
            probes.push(Probe::Command(
                argv.into_iter().map(Sp::into_inner).collect(),
            ));
        }
    }
    if let Some(unit) = f.string(p.cx, "service")
        && let Some(u) = p.checked(&unit, checks::unit_name)
    {
        probes.push(Probe::Service(u));
    }
    if let Some(url) = f.string(p.cx, "http")
        && p.checked(&url, |u| {
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
            p.cx.error(
                &f.span(),
                "[[check]] needs one of `command`, `service` or `http`",
            );
            None
        }
        _ => {
            p.cx.error(
                &f.span(),
                "[[check]] takes only one of `command`, `service` or `http`",
            );
            None
        }
    };
    let duration = |key: &str, default: Duration| -> Option<Duration> {
        match f.string(p.cx, key) {
            None if f.raw(key).is_some() => None,
            None => Some(default),
            Some(s) => p.checked(&s, |t| {
                humantime::parse_duration(t).map_err(|e| {
                    format!("`{key}` = \"{t}\" is not a duration such as \"30s\": {e}")
                })
            }),
        }
    };
    let timeout = duration("timeout", DEFAULT_CHECK_TIMEOUT);
    let interval = duration("interval", DEFAULT_CHECK_INTERVAL);
    let retries = match f.unsigned(p.cx, "retries") {
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
