//! `validate`: the desired state of one host, or of every host file, is
//! computed and checked; the host is changed in nothing. Validated for the
//! host itself, its groups and its kernel's parameters are looked at.

use std::collections::HashSet;

use anyhow::Result;

use super::context::{App, SourceRequest, Subject};
use super::load::{all_facts, host_name, load_options, open_source};
use crate::cancel::Cancel;
use crate::converge::Discard;
use crate::desired::secrets::Secrets;
use crate::desired::{self, Diagnostic};
use crate::outcome::Outcome;
use crate::source;
use crate::system;

/// What `validate` found.
#[derive(Debug)]
pub struct ValidateResult {
    /// `Valid`, `Invalid`, or `Error` (the repo could not be read).
    pub outcome: Outcome,
    /// What was loaded (for one host).
    pub subject: Subject,
    /// Every problem, located.
    pub diagnostics: Vec<Diagnostic>,
    /// What is valid but probably not meant as written, located.
    pub warnings: Vec<Diagnostic>,
    /// Why it could not be validated at all.
    pub error: Option<String>,
    /// With `--all-hosts`: the host names validated (from `hosts/*.toml`).
    pub hosts: Option<Vec<String>>,
}

/// Validates the host's desired state, or every `hosts/*.toml` with
/// `all_hosts` (for the config repo's own CI).
pub fn validate(
    app: &App,
    req: &SourceRequest,
    all_hosts: bool,
    cancel: &Cancel,
) -> ValidateResult {
    let mut r = ValidateResult {
        outcome: Outcome::Error,
        subject: Subject::default(),
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        error: None,
        hosts: None,
    };
    if let Err(e) = validate_into(app, req, all_hosts, cancel, &mut r) {
        r.outcome = Outcome::Error;
        r.error = Some(format!("{e:#}"));
    }
    r
}

fn validate_into(
    app: &App,
    req: &SourceRequest,
    all_hosts: bool,
    cancel: &Cancel,
    r: &mut ValidateResult,
) -> Result<()> {
    let tree = open_source(
        app,
        req,
        source::Purpose::Preview,
        None,
        &mut Discard,
        cancel,
    )?
    .tree;
    r.subject.source = Some(tree.describe());
    // Another host's custom facts are not this machine's: they are
    // placeholders there (Facts::for_host); this host's are read.
    let facts = if all_hosts {
        system::facts::gather_checked()?
    } else {
        all_facts(&app.settings, cancel)?
    };
    let mut opts = load_options(&app.settings, cancel)?;
    // Every host's secrets are encrypted to its own key: checked here as
    // well-formed age files only. One host's are decrypted with its key
    // when this machine has one, else checked too.
    if all_hosts || matches!(opts.secrets, Secrets::NoIdentity) {
        opts.secrets = Secrets::CheckOnly;
    }
    let mut diags: Vec<Diagnostic> = Vec::new();
    if all_hosts {
        let files = desired::load::list_host_files(tree.as_ref())?;
        if files.is_empty() {
            diags.push(Diagnostic::file(
                "hosts/",
                "no host files (hosts/*.toml) in the config repo",
            ));
        }
        let mut hosts = Vec::new();
        // Each problem once, with the hosts it fails for.
        let mut found: Vec<(Diagnostic, Vec<String>)> = Vec::new();
        for file in files {
            let name = file
                .trim_start_matches("hosts/")
                .trim_end_matches(".toml")
                .to_owned();
            let facts = facts.for_host(&name);
            match desired::load::load_host_file(tree.as_ref(), &file, &name, &facts, &opts) {
                Ok(d) => r.warnings.extend(d.warnings),
                Err(e) => {
                    for d in invalid(e)? {
                        match found.iter_mut().find(|(seen, _)| *seen == d) {
                            Some((_, names)) => names.push(name.clone()),
                            None => found.push((d, vec![name.clone()])),
                        }
                    }
                }
            }
            hosts.push(name);
        }
        diags.extend(found.into_iter().map(with_hosts));
        r.hosts = Some(hosts);
    } else {
        // Validated on the host itself: a user's group must exist here
        // when the repo does not declare it.
        opts.host_groups = Some(system::accounts::local_group_names()?);
        let host = host_name(&app.settings, req, &facts)?;
        let facts = facts.named(&host);
        r.subject.host = Some(host.clone());
        match desired::load(tree.as_ref(), &host, &facts, &opts) {
            Ok(d) => {
                diags.extend(unknown_settings(&d));
                r.subject.host_file = Some(d.host_file);
                r.subject.roles = d.roles;
                r.warnings = d.warnings;
            }
            Err(e) => diags.extend(invalid(e)?),
        }
    }
    // Roles shared by several hosts would report the same problem again.
    let mut seen = HashSet::new();
    diags.retain(|d| seen.insert(d.to_string()));
    let mut seen = HashSet::new();
    r.warnings.retain(|d| seen.insert(d.to_string()));
    r.outcome = if diags.is_empty() {
        Outcome::Valid
    } else {
        Outcome::Invalid
    };
    r.diagnostics = diags;
    Ok(())
}

/// Each declared setting this host does not have (a kernel parameter the
/// running kernel lacks), at its declaration, unless it says
/// `ignore_missing = true`.
fn unknown_settings(d: &desired::DesiredState) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in &d.resources {
        let desired::model::Prim::Setting(s) = r.resource.lower() else {
            continue;
        };
        if s.ignore_missing {
            continue;
        }
        if let Some(why) = system::settings::read_without_root(s.domain, s.name, &[]).missing {
            out.push(r.origin.diag(format!(
                "{}: {why}; check the name, or set `ignore_missing = true` for a parameter only some kernels have",
                r.resource.id()
            )));
        }
    }
    out
}

/// A problem found for `names`, saying so unless it is in the one host's
/// own file.
fn with_hosts((mut d, names): (Diagnostic, Vec<String>)) -> Diagnostic {
    let own = names.len() == 1 && d.file == format!("hosts/{}.toml", names[0]);
    if !own {
        let s = if names.len() == 1 { "" } else { "s" };
        d.message = format!("{} [host{s}: {}]", d.message, names.join(", "));
    }
    d
}

fn invalid(e: desired::LoadError) -> Result<Vec<Diagnostic>> {
    match e {
        desired::LoadError::Invalid(d) => Ok(d),
        desired::LoadError::Read(e) => Err(e),
    }
}
