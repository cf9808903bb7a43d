//! `facts`: what a template sees for this host — the machine's facts, the
//! host name, and the `vars` its host file and roles set (Ansible's `setup`,
//! Puppet's `facter`). Nothing on the host is changed.
//!
//! Installed packages are looked up by name when a template reads one, so
//! `facts` cannot know which matter until it has the config repo: with one,
//! it shows the host's declared packages and those its templates read
//! (one rpm query); without one, none (the text output says how they are
//! read).

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::context::{App, SourceRequest, Subject};
use super::load::{LoadRequest, all_facts, host_name, load};
use crate::cancel::Cancel;
use crate::converge::Discard;
use crate::desired::Diagnostic;
use crate::desired::facts::Facts;
use crate::outcome::Outcome;
use crate::source;

/// What `facts` found.
#[derive(Debug)]
pub struct FactsResult {
    /// `Done`; `Invalid` when the config repo is (the facts are still
    /// shown); `Error` when it cannot be read or a custom fact failed
    /// (the other facts are still shown).
    pub outcome: Outcome,
    /// The host and what was loaded for it.
    pub subject: Subject,
    /// What templates see.
    pub scope: Option<TemplateScope>,
    /// Problems in the config repo.
    pub diagnostics: Vec<Diagnostic>,
    /// Why the config repo could not be read.
    pub error: Option<String>,
}

/// The names in scope of every template.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateScope {
    /// `host`: the host name looked up.
    pub host: String,
    /// `facts.*`: this machine.
    pub facts: Facts,
    /// `vars.*`: from the host file and its roles; `None` when no config
    /// repo was read.
    pub vars: Option<toml::Table>,
}

/// Gathers the facts and, when a config repo is configured or given, the
/// host's vars.
pub fn facts(app: &App, req: &SourceRequest, cancel: &Cancel) -> FactsResult {
    let mut r = FactsResult {
        outcome: Outcome::Done,
        subject: Subject::default(),
        scope: None,
        diagnostics: Vec::new(),
        error: None,
    };
    let facts = match all_facts(&app.settings, cancel) {
        Ok(f) => f,
        Err(e) => {
            r.outcome = Outcome::Error;
            r.error = Some(format!("{e:#}"));
            return r;
        }
    };
    let host = match host_name(&app.settings, req, &facts) {
        Ok(h) => h,
        Err(e) => {
            r.outcome = Outcome::Error;
            r.error = Some(format!("{e:#}"));
            return r;
        }
    };
    r.subject.host = Some(host.clone());
    let mut scope = TemplateScope {
        host,
        facts,
        vars: None,
    };
    let mut errors: Vec<String> = scope
        .facts
        .custom
        .errors()
        .into_iter()
        .map(|(name, e)| format!("custom fact `{name}`: {e}"))
        .collect();
    if req.repo.is_some() || app.settings.source.is_some() {
        match load_vars(app, req, &mut r, cancel) {
            Ok(Some((vars, packages))) => {
                scope.vars = Some(vars);
                let names: Vec<&str> = packages.iter().map(String::as_str).collect();
                scope.facts.packages.prefetch(&names);
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    errors.extend(
        scope
            .facts
            .packages
            .errors()
            .into_iter()
            .map(|(name, e)| format!("installed package `{name}`: {e}")),
    );
    // A broken custom fact (or rpm database) is shown here, loudly: it
    // fails every template that reads it.
    if !errors.is_empty() {
        r.outcome = Outcome::Error;
        r.error = Some(errors.join("; "));
    }
    r.scope = Some(scope);
    r
}

/// The host's vars, and the packages it declares or its templates read;
/// `None` when the repo is invalid.
fn load_vars(
    app: &App,
    req: &SourceRequest,
    r: &mut FactsResult,
    cancel: &Cancel,
) -> Result<Option<(toml::Table, BTreeSet<String>)>> {
    let loaded = load(
        app,
        &LoadRequest {
            source: req,
            purpose: source::Purpose::Preview,
            root: std::path::Path::new("/"),
        },
        None,
        &mut r.subject,
        &mut Discard,
        cancel,
    )?;
    Ok(match loaded {
        Ok(l) => {
            let mut packages: BTreeSet<String> =
                l.desired.package_names(false).into_iter().collect();
            packages.extend(
                l.desired
                    .facts_read
                    .packages()
                    .into_iter()
                    .map(str::to_owned),
            );
            Some((l.desired.vars, packages))
        }
        Err(invalid) => {
            r.outcome = Outcome::Invalid;
            r.diagnostics = invalid.diagnostics;
            None
        }
    })
}
