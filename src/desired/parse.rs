//! Parsing one host or role file into declarations, collecting every error.

use std::time::Duration;

use toml::de::DeValue;

use super::checks;
use super::diag::Origin;
use super::kinds::{Decl, Kind, SECTIONS};
use super::model::{Check, Probe};
use super::parser::{DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_RETRIES, DEFAULT_CHECK_TIMEOUT, Parser};
use super::schema::{Ctx, Fields, Sp, array_of_tables, parse_document};

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
    /// Resource declarations in file order.
    pub decls: Vec<Decl>,
    /// Health checks in file order.
    pub checks: Vec<CheckDecl>,
}

/// Parses one host or role file. Problems are recorded in `cx`; the result
/// holds whatever was valid, so later stages can find more problems.
pub(crate) fn parse_file(cx: &Ctx<'_>, text: &str, state_dir: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let Some(doc) = parse_document(cx, text) else {
        return out;
    };
    let top = Fields::new(doc.get_ref(), doc.span(), "the top level", SECTIONS);
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
    for &kind in Kind::ALL {
        let Some(v) = top.raw(kind.as_str()) else {
            continue;
        };
        let allowed = kind.keys();
        for f in array_of_tables(cx, v, kind.section(), allowed) {
            let origin = cx.origin(&f.span());
            let prune =
                !allowed.contains(&"prune") || f.bool(cx, "prune").is_none_or(Sp::into_inner);
            let parsed = kind.parse_table(&p, &f);
            f.finish(cx);
            if let Some(parsed) = parsed {
                out.decls.push(Decl {
                    spec: parsed.spec,
                    prune,
                    origin,
                    content_line: parsed.content_line,
                    ref_origins: parsed.ref_origins,
                });
            }
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
    top.finish(cx);
    out
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
