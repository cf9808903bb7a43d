//! The first steps of a run: open the source (fetching and checking a git
//! commit) and compute the host's desired state.

use anyhow::{Result, bail};

use super::context::{App, SourceRequest, Subject};
use crate::agent::{AgentState, FetchRecord, now};
use crate::cancel::Cancel;
use crate::config::Settings;
use crate::converge::{Event, Sink, events};
use crate::desired::{self, ConfigTree, Diagnostic, Facts, LoadOptions};
use crate::source::{self, dir::DirTree};
use crate::store::StateLock;
use crate::system;

/// The config repo for one run: a directory, or a checked commit of the
/// git source (with the id to record once it is applied).
pub(super) struct Opened {
    pub(super) tree: Box<dyn ConfigTree>,
    pub(super) commit: Option<String>,
}

/// Opens the source. A git fetch is recorded in `state` when the caller
/// holds the lock and the state (`Some`), else under a lock taken for the
/// fetch alone. A failed fetch is recorded too.
pub(super) fn open_source(
    app: &App,
    req: &SourceRequest,
    purpose: source::Purpose,
    state: Option<&mut AgentState>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Opened> {
    if let Some(dir) = &req.repo {
        return Ok(Opened {
            tree: Box::new(DirTree::open(dir)?),
            commit: None,
        });
    }
    let Some(git) = &app.settings.source else {
        bail!("no config repo: pass --repo DIR, or configure [source] url in the agent config");
    };
    let mut own: Option<(StateLock, AgentState)> = None;
    let state: &mut AgentState = match state {
        Some(s) => s,
        None => {
            let lock = app.store.lock()?;
            let loaded = app.store.load_state()?;
            &mut own.insert((lock, loaded)).1
        }
    };
    app.store.ensure()?;
    let result = source::fetch_checked(
        git,
        &app.settings.verify,
        &app.store.git_cache(),
        state.applied_commit.as_deref(),
        req.commit.as_deref(),
        purpose,
        cancel,
    );
    // Record the fetch outcome for `source status`, whatever it was.
    let head = match &result {
        Ok(c) => Some(c.head.clone()),
        Err(_) => source::cache_status(&app.store.git_cache())
            .ok()
            .and_then(|s| s.fetched),
    };
    state.last_fetch = Some(FetchRecord {
        at: now(),
        head,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    });
    if let Some((_lock, s)) = &own {
        app.store.save_state(s)?;
    }
    let checked = result?;
    sink.event(&Event::Fetched {
        commit: checked.commit.clone(),
    });
    Ok(Opened {
        commit: Some(checked.commit),
        tree: Box::new(checked.tree),
    })
}

/// A loaded desired state and where it came from.
pub(super) struct Loaded {
    pub(super) desired: desired::DesiredState,
    pub(super) source: String,
    pub(super) commit: Option<String>,
    pub(super) key: String,
}

pub(super) fn load_options(settings: &Settings, cancel: &Cancel) -> LoadOptions {
    LoadOptions {
        state_dir: settings.state_dir.to_string_lossy().into_owned(),
        cancel: cancel.clone(),
        ..LoadOptions::default()
    }
}

pub(super) fn host_name(settings: &Settings, req: &SourceRequest, facts: &Facts) -> String {
    req.host
        .clone()
        .or_else(|| settings.host.clone())
        .unwrap_or_else(|| facts.fqdn.clone())
}

/// Opens the source and loads the host's desired state, filling `subject`.
/// `Ok(Err(diagnostics))`: the repo is invalid.
pub(super) fn load(
    app: &App,
    req: &SourceRequest,
    purpose: source::Purpose,
    state: Option<&mut AgentState>,
    subject: &mut Subject,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Result<Loaded, Vec<Diagnostic>>> {
    let Opened { tree, commit } = open_source(app, req, purpose, state, sink, cancel)?;
    let source = tree.describe();
    subject.source = Some(source.clone());
    let facts = system::facts::gather();
    let host = host_name(&app.settings, req, &facts);
    subject.host = Some(host.clone());
    match desired::load(
        tree.as_ref(),
        &host,
        &facts,
        &load_options(&app.settings, cancel),
    ) {
        Ok(desired) => {
            subject.host_file = Some(desired.host_file.clone());
            subject.roles = desired.roles.clone();
            sink.event(&Event::Loaded {
                host,
                host_file: desired.host_file.clone(),
                resources: events::count_kinds(desired.resources.iter().map(|d| d.resource.id())),
            });
            let key = commit.clone().unwrap_or_else(|| desired.content_key());
            Ok(Ok(Loaded {
                desired,
                source,
                commit,
                key,
            }))
        }
        Err(desired::LoadError::Invalid(d)) => Ok(Err(d)),
        Err(desired::LoadError::Read(e)) => Err(e),
    }
}
