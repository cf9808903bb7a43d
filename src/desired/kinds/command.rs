//! `[[command]]`: a command run when its guards or refreshes say so.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::ResourceId;
use super::{Decl, Identity, KindDef, Parsed, Prim, PrimKind, ReadContent, Relations};
use crate::desired::checks;
use crate::desired::parser::{DEFAULT_COMMAND_TIMEOUT, Parser};
use crate::desired::schema::{Fields, Sp};

/// A command driftless runs (`[[command]]`) when its guards say the job is
/// not done yet, or when something it refreshes on changed. What it does is
/// neither observed nor undone by a rollback: the guards are its only
/// idempotence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique name (`command:NAME`).
    pub name: String,
    /// Program and arguments (`shell = true` became `/bin/sh -c …`).
    pub argv: Vec<String>,
    /// Runs only while this host path does not exist.
    pub creates: Option<String>,
    /// Runs only when this argv fails (exit code other than 0).
    pub unless: Option<Vec<String>>,
    /// Runs only when this argv succeeds.
    pub onlyif: Option<Vec<String>>,
    /// Runs only when one of these changed in the same converge, once,
    /// after them.
    pub refresh_on: Vec<ResourceId>,
    /// Limit of one run (guards included); then it is killed.
    #[serde(with = "crate::desired::values::humantime_serde_compat")]
    pub timeout: Duration,
    /// Extra environment variables.
    pub environment: std::collections::BTreeMap<String, String>,
    /// Working directory (a host path); default `/`.
    pub cwd: Option<String>,
    /// Run as this user (with `runuser`); default root.
    pub user: Option<String>,
}

impl Identity for Command {
    fn key(&self) -> &str {
        &self.name
    }
}

impl KindDef for Command {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
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

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let name = f.required_string(p.cx, "name");
        let name = name.and_then(|n| p.checked(&n, checks::command_name).map(|()| n.into_inner()));
        let shell = f.bool(p.cx, "shell").is_some_and(Sp::into_inner);
        let argv = match f.raw("command").map(|v| (v.span(), v.get_ref())) {
            None => {
                p.cx.error(
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
                    p.cx.error(
                        &span,
                        "`command` is a string: give a list (program and arguments), or add `shell = true` to run it with /bin/sh -c",
                    );
                    None
                }
            }
            Some((span, _)) if shell => {
                p.cx.error(
                    &span,
                    "with `shell = true`, `command` is one string: the script for /bin/sh -c",
                );
                None
            }
            Some(_) => p.argv(f, "command").flatten(),
        };
        let creates = match f.string(p.cx, "creates") {
            None => Some(None),
            Some(v) => p
                .checked(&v, |s| checks::host_path(s, p.state_dir))
                .map(|()| Some(v.into_inner())),
        };
        let unless = p.argv(f, "unless");
        let onlyif = p.argv(f, "onlyif");
        let mut origins = Vec::new();
        let mut refresh_on = Vec::new();
        for r in f.string_list(p.cx, "refresh_on").unwrap_or_default() {
            if let Some(id) = p.checked(&r, checks::reference) {
                refresh_on.push(id);
                origins.push(p.cx.origin(&r.span()));
            }
        }
        let timeout = match f.string(p.cx, "timeout") {
            None if f.raw("timeout").is_some() => None,
            None => Some(DEFAULT_COMMAND_TIMEOUT),
            Some(t) => p.checked(&t, |t| match humantime::parse_duration(t) {
                Ok(d) if d.is_zero() => Err("`timeout` must be more than 0s".to_owned()),
                Ok(d) => Ok(d),
                Err(e) => Err(format!(
                    "`timeout` = \"{t}\" is not a duration such as \"5m\": {e}"
                )),
            }),
        };
        let environment = environment(p, f);
        let cwd = match f.string(p.cx, "cwd") {
            None => Some(None),
            Some(v) => p
                .checked(&v, |s| checks::host_path(s, p.state_dir))
                .map(|()| Some(v.into_inner())),
        };
        let user = match f.string(p.cx, "user") {
            None => Some(None),
            Some(u) => p
                .checked(&u, checks::account_name)
                .map(|()| Some(u.into_inner())),
        };
        let (creates, unless, onlyif) = (creates?, unless?, onlyif?);
        // Without a guard a command would run on every converge, for ever:
        // the no-op would not be one.
        if creates.is_none() && unless.is_none() && onlyif.is_none() && refresh_on.is_empty() {
            p.cx.error(
                &f.span(),
                "[[command]] needs a guard: `creates`, `unless`, `onlyif` or `refresh_on` (without one it would run on every converge)",
            );
            return None;
        }
        Some(Parsed {
            spec: Command {
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
            },
            content_line: 0,
            ref_origins: origins,
        })
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn relations(c: &Self) -> Relations<'_> {
        Relations {
            runs_as: c.user.as_deref(),
            refers_to: c.refresh_on.iter().map(|r| ("refresh_on", r)).collect(),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Command;

    fn lower(&self) -> Prim<'_> {
        Prim::Command(self)
    }
}

/// `environment = { NAME = "value", ... }`.
fn environment(
    p: &Parser<'_, '_>,
    f: &Fields<'_, '_>,
) -> Option<std::collections::BTreeMap<String, String>> {
    let (entries, mut ok) =
        p.string_table(f, "environment", "a table of strings in [[command]]")?;
    let mut out = std::collections::BTreeMap::new();
    for (key, text) in entries {
        let good_name = !key.get_ref().is_empty()
            && !key.get_ref().starts_with(|c: char| c.is_ascii_digit())
            && key
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !good_name {
            p.cx.error(
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
