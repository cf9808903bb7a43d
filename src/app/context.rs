//! What every use case is given and shares: the agent ([`App`]), where the
//! desired state comes from ([`SourceRequest`]), what was loaded
//! ([`Subject`]) and what a run against the host found or did ([`Run`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::converge::{Engine, checks};
use crate::desired::Diagnostic;
use crate::outcome::Outcome;
use crate::store::Store;
use crate::system::fsroot::FsRoot;

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

    pub(super) fn engine<'a>(&'a self, root: &'a FsRoot) -> Engine<'a> {
        Engine {
            root,
            store: &self.store,
            limits: checks::Limits {
                health_timeout: self.settings.rollback.health_timeout,
                settle: self.settings.rollback.settle_time,
            },
            keep_generations: self.settings.rollback.keep_generations,
            downloads: &self.settings.download,
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
    /// A commit (id or unique prefix) reachable from the fetched branch,
    /// or from `branch`, instead of the head. Not with `repo`.
    pub commit: Option<String>,
    /// Another branch of the git source than the configured one. Not
    /// with `repo`.
    pub branch: Option<String>,
    /// How the git source's commit is obtained.
    pub fetch: FetchPolicy,
}

impl SourceRequest {
    /// A trial, in words (`branch feature`, `commit 3f2a9c1`), when the
    /// request names another commit or branch than the configured head.
    pub fn trial(&self) -> Option<String> {
        match (&self.branch, &self.commit) {
            (Some(b), Some(c)) => Some(format!("commit {c} of branch {b}")),
            (Some(b), None) => Some(format!("branch {b}")),
            (None, Some(c)) => Some(format!("commit {c}")),
            (None, None) => None,
        }
    }
}

/// How a run obtains the git source's commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FetchPolicy {
    /// Fetch; a failure ends the run (the command line: the operator sees
    /// the error at once).
    #[default]
    Remote,
    /// Fetch; when that fails, converge the last fetched commit from the
    /// cache (checked again), or else the applied one: self-healing goes on
    /// while the source is away or refused (the daemon).
    RemoteOrCache,
    /// Do not fetch: the last fetched commit, checked again (the daemon
    /// while it backs off from a failing source).
    Cache,
}

/// Which desired state a run loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Serialize, Deserialize)]
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

/// Causes named in [`Run::what_failed`], at most.
const CAUSES_NAMED: usize = 10;

impl Run {
    /// Ends the run with an error.
    pub(super) fn fail(&mut self, e: anyhow::Error) {
        self.outcome = Outcome::Error;
        self.error = Some(format!("{e:#}"));
    }

    /// What failed, with its causes (the config repo's problems, the plan's
    /// problems; the first few), for a hook: `None` when nothing did.
    pub(super) fn what_failed(&self) -> Option<String> {
        let causes: Vec<String> = self
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .chain(self.plan_problems.iter().map(ToString::to_string))
            .collect();
        let head = match (&self.error, self.outcome) {
            (Some(e), _) => e.clone(),
            (None, Outcome::Invalid) => format!(
                "the config repo is invalid ({})",
                crate::words::count(causes.len(), "problem")
            ),
            (None, _) if !causes.is_empty() => "the plan cannot be made".to_owned(),
            (None, _) => return None,
        };
        if causes.is_empty() {
            return Some(head);
        }
        let more = causes.len().saturating_sub(CAUSES_NAMED);
        let mut text = format!("{head}: {}", causes[..causes.len() - more].join("; "));
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        Some(text)
    }
}

/// `path` made absolute against the working directory, for messages: a
/// relative `--root` is shown as the tree it names. Falls back to the path
/// as given when the working directory is unknown.
pub(super) fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
