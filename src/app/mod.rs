//! The use cases: what `validate`, `plan`, `converge`, `status`,
//! `history`, `rollback`, `resume`, `retry`, `recover` and `source status`
//! do, for the command line and the daemon alike.
//!
//! Each takes an [`App`] (the validated settings and the state directory),
//! a plain request, and for runs a [`Sink`] for progress and a [`Cancel`]
//! token, and returns a typed result; rendering is the caller's business.
//! The agent's rules live in [`crate::agent::policy`]; here they meet the
//! source, the store and the engine. Within one run the agent state is read
//! once and written once (and once more right after a crash recovery, so
//! that a second crash still counts).

mod converge;
mod manage;
mod plan;
mod status;
mod validate;

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

pub use converge::{ConvergeRequest, ConvergeResult, converge};
pub use manage::{ActionResult, recover, resume, retry, rollback};
pub use plan::{PlanRequest, PlanResult, plan};
pub use status::{AgentStatus, SourceStatus, history, source_status, status};
pub use validate::{ValidateResult, validate};

pub use crate::outcome::Outcome;

use crate::agent::{AgentState, FetchRecord, now, policy, short};
use crate::cancel::Cancel;
use crate::config::Settings;
use crate::converge::{Engine, Event, Recovered, Sink, checks, events};
use crate::desired::{self, ConfigTree, Diagnostic, Facts, LoadOptions};
use crate::source::{self, dir::DirTree};
use crate::store::{StateLock, Store};
use crate::system::{self, fsroot::FsRoot};

/// The agent as one run sees it: its settings and its state directory.
#[derive(Clone, Debug)]
pub struct App {
    /// Validated agent settings.
    pub settings: Settings,
    /// The state directory.
    pub store: Store,
}

impl App {
    /// The agent with `settings`.
    pub fn new(settings: Settings) -> Self {
        let store = Store::new(&settings.state_dir);
        Self { settings, store }
    }

    fn engine<'a>(&'a self, root: &'a FsRoot) -> Engine<'a> {
        Engine {
            root,
            store: &self.store,
            limits: checks::Limits {
                health_timeout: self.settings.rollback.health_timeout,
                settle: self.settings.rollback.settle_time,
            },
            keep_generations: self.settings.rollback.keep_generations,
        }
    }
}

/// Where the desired state comes from, and for which host.
#[derive(Clone, Debug, Default)]
pub struct SourceRequest {
    /// Read the desired state from this directory instead of the git source.
    pub repo: Option<PathBuf>,
    /// The host name to look up (default: agent config `host`, else the
    /// machine's FQDN).
    pub host: Option<String>,
    /// A commit of the fetched branch (id or unique prefix) instead of its
    /// head. Not with `repo`.
    pub commit: Option<String>,
}

/// Which desired state a run loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// Where it came from (`directory …`, `commit …`).
    pub source: Option<String>,
    /// The host name used.
    pub host: Option<String>,
    /// The host file chosen.
    pub host_file: Option<String>,
    /// Roles applied, in order.
    pub roles: Vec<String>,
}

/// What a run against the host (`plan`, `converge`) found or did.
#[derive(Debug)]
pub struct Run {
    /// How it ended.
    pub outcome: Outcome,
    /// What was loaded.
    pub subject: Subject,
    /// The root, as given or canonical.
    pub root: Option<String>,
    /// The changes planned (plan, dry run) or applied (converge), in order.
    pub changes: Vec<crate::plan::Change>,
    /// What the operator should know that is not a change.
    pub notes: Vec<String>,
    /// Problems in the config repo.
    pub diagnostics: Vec<Diagnostic>,
    /// Problems planning against this host.
    pub plan_problems: Vec<crate::plan::PlanProblem>,
    /// What stopped it, or what failed.
    pub error: Option<String>,
}

impl Default for Run {
    fn default() -> Self {
        Self {
            outcome: Outcome::Error,
            subject: Subject::default(),
            root: None,
            changes: Vec::new(),
            notes: Vec::new(),
            diagnostics: Vec::new(),
            plan_problems: Vec::new(),
            error: None,
        }
    }
}

impl Run {
    /// Ends the run with an error.
    fn fail(&mut self, e: anyhow::Error) {
        self.outcome = Outcome::Error;
        self.error = Some(format!("{e:#}"));
    }
}

/// The config repo for one run: a directory, or a checked commit of the
/// git source (with the id to record once it is applied).
struct Opened {
    tree: Box<dyn ConfigTree>,
    commit: Option<String>,
}

/// Opens the source. A git fetch is recorded in `state` when the caller
/// holds the lock and the state (`Some`), else under a lock taken for the
/// fetch alone. A failed fetch is recorded too.
fn open_source(
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
struct Loaded {
    desired: desired::DesiredState,
    source: String,
    commit: Option<String>,
    key: String,
}

fn load_options(settings: &Settings) -> LoadOptions {
    LoadOptions {
        state_dir: settings.state_dir.to_string_lossy().into_owned(),
        ..LoadOptions::default()
    }
}

fn host_name(settings: &Settings, req: &SourceRequest, facts: &Facts) -> String {
    req.host
        .clone()
        .or_else(|| settings.host.clone())
        .unwrap_or_else(|| facts.fqdn.clone())
}

/// Opens the source and loads the host's desired state, filling `subject`.
/// `Ok(Err(diagnostics))`: the repo is invalid.
fn load(
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
    match desired::load(tree.as_ref(), &host, &facts, &load_options(&app.settings)) {
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

/// What a crash recovery found, for the result of the run it started.
#[derive(Debug, Default)]
struct Recovery {
    /// What was found and done, for the operator.
    notes: Vec<String>,
    /// A restore that failed: the run must stop here.
    failed: Option<String>,
}

/// Rolls back what a crash left unfinished under `root`, and records each
/// interruption in `state` (saved at once, so a second crash still counts).
fn recover_into(
    app: &App,
    root: &FsRoot,
    state: &mut AgentState,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Recovery> {
    let recovered: Vec<Recovered> = crate::converge::recover(&app.engine(root), sink, cancel)?;
    let mut out = Recovery::default();
    if recovered.is_empty() {
        return Ok(out);
    }
    for r in &recovered {
        let g = &r.generation;
        out.notes.push(format!(
            "generation {} (of {}) was cut short by a crash; {}",
            g.id,
            short(&g.key),
            if r.restored {
                "the host was restored to its state before it"
            } else {
                "RESTORING IT FAILED"
            }
        ));
        if !r.restored {
            out.failed = Some(format!(
                "recovery of generation {} failed; still different: {}",
                g.id,
                r.differences.join("; ")
            ));
        }
        policy::interrupted(
            state,
            &policy::Interruption {
                generation: g.id,
                key: &g.key,
                source: &g.source,
                was_undo: r.was_undo,
            },
            &now(),
        );
    }
    app.store.save_state(state)?;
    Ok(out)
}

/// The root as results show it.
fn display_root(root: Option<&FsRoot>) -> String {
    root.map_or_else(
        || "(missing: planned as empty)".to_owned(),
        |r| r.path().display().to_string(),
    )
}
