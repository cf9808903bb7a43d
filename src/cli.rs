//! The command line: definitions, dispatch, and exit codes (decided here
//! and nowhere else).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::agent_config::{self, Mode, Settings};
use crate::converge::{self, Applied, PrepareError};
use crate::desired::{self, ConfigTree, Diagnostic, Facts, LoadOptions};
use crate::report::SourceStatus;
use crate::report::{Outcome, Report};
use crate::source::{self, dir::DirTree};
use crate::state::{self, AgentState, FetchRecord};
use crate::system;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The exit codes: a contract with scripts and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Valid, or in sync: nothing to do.
    Ok = 0,
    /// Invalid input or an error before any change.
    Error = 1,
    /// Changes pending (plan) or applied (converge).
    Changes = 2,
    /// A step failed and the host was restored.
    RolledBack = 4,
    /// A step failed and the host could not be restored.
    RollbackFailed = 5,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Valid | Outcome::InSync => ExitCode::Ok,
            Outcome::ChangesPending | Outcome::Changed => ExitCode::Changes,
            Outcome::RolledBack => ExitCode::RolledBack,
            Outcome::RollbackFailed => ExitCode::RollbackFailed,
            Outcome::Invalid | Outcome::Error => ExitCode::Error,
        }
    }
}

/// driftless: pull-based GitOps for RHEL-family hosts.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Agent config file (drop-ins are read from agent.d/ beside it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config repo without touching the host. Exit 0 valid, 1 invalid.
    Validate(ValidateArgs),
    /// Show what a converge would change. Exit 0 in sync, 2 changes pending, 1 error.
    Plan(PlanArgs),
    /// Converge the host now. Exit 0 nothing to do, 2 changed, 1 error before
    /// any change, 4 failed and restored, 5 failed and not restored.
    Converge(ConvergeArgs),
    /// The git source.
    #[command(subcommand)]
    Source(SourceCommand),
}

/// `source …`
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Show URL, branch, fetched and applied commits, and the last fetch
    /// error. Reads local state only; never fetches.
    Status {
        /// Machine-readable output on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Where the desired state comes from, and for which host.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// Read the desired state from this directory instead of the git source.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Host name to look up (default: agent config `host`, else this machine's FQDN).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Apply this commit of the fetched branch (id or unique prefix) instead
    /// of its head. Not with --repo.
    #[arg(long, value_name = "REV", conflicts_with = "repo")]
    pub commit: Option<String>,
}

/// `validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Validate every hosts/*.toml (for the config repo's own CI).
    #[arg(long, conflicts_with = "host")]
    all_hosts: bool,
}

/// `plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Treat DIR as the host's `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

/// `converge`
#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// Converge immediately (required: the daemon converges on its schedule).
    #[arg(long, required = true)]
    now: bool,
    #[command(flatten)]
    repo: RepoArgs,
    /// Treat DIR as the host's `/` (created if missing).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Plan and print, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the parsed command line and returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    let json = match &cli.command {
        Command::Validate(a) => a.repo.json,
        Command::Plan(a) => a.repo.json,
        Command::Converge(a) => a.repo.json,
        Command::Source(SourceCommand::Status { json }) => *json,
    };
    let command = match &cli.command {
        Command::Validate(_) => "validate",
        Command::Plan(_) => "plan",
        Command::Converge(_) => "converge",
        Command::Source(_) => "source status",
    };
    let mut report = Report::new(command);
    if let Err(e) = dispatch(&cli, &mut report) {
        report.result = Outcome::Error;
        report.error = Some(format!("{e:#}"));
    }
    if let Err(e) = report.print(json) {
        // stdout closed (e.g. piped into `head`): the exit code still tells.
        tracing::debug!("failed to print the report: {e}");
    }
    report.result.into()
}

fn dispatch(cli: &Cli, report: &mut Report) -> Result<()> {
    let explicit = cli.config.is_some();
    let config = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(agent_config::DEFAULT_CONFIG));
    let settings = agent_config::load(&config, explicit)?;
    match &cli.command {
        Command::Validate(a) => validate(&settings, a, report),
        Command::Plan(a) => plan(&settings, &a.repo, &a.root, report),
        Command::Converge(a) => converge(&settings, a, report),
        Command::Source(SourceCommand::Status { .. }) => source_status(&settings, report),
    }
}

/// The config repo for one run: a directory, or a checked commit of the
/// git source (with the id to record once it is applied).
struct Source {
    tree: Box<dyn ConfigTree>,
    commit: Option<gix::ObjectId>,
}

/// Set by SIGINT/SIGTERM: a fetch in progress stops promptly and running
/// rpm/dnf/systemctl children are killed. One flag for both.
fn interrupt_flag() -> Arc<AtomicBool> {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    let flag = Arc::clone(&system::command::SHUTDOWN);
    REGISTERED.call_once(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&flag)) {
                tracing::warn!("cannot watch signal {sig}: {e}");
            }
        }
    });
    flag
}

fn open_source(settings: &Settings, args: &RepoArgs, purpose: source::Purpose) -> Result<Source> {
    if let Some(dir) = &args.repo {
        return Ok(Source {
            tree: Box::new(DirTree::open(dir)?),
            commit: None,
        });
    }
    let Some(git) = &settings.source else {
        bail!("no config repo: pass --repo DIR, or configure [source] url in the agent config");
    };
    let mut state = AgentState::load(&settings.state_dir)?;
    let applied = state
        .applied_commit
        .as_deref()
        .map(|h| gix::ObjectId::from_hex(h.as_bytes()))
        .transpose()
        .context("the applied commit in the agent state is not a commit id")?;
    let result = source::fetch_checked(
        git,
        &settings.verify,
        &settings.state_dir,
        applied,
        args.commit.as_deref(),
        purpose,
        &interrupt_flag(),
    );
    // Record the fetch outcome for `source status`, whatever it was.
    let fetch_error = result.as_ref().err().map(|e| format!("{e:#}"));
    let head = match &result {
        Ok(c) => Some(c.fetch.head.to_string()),
        Err(_) => source::cache_status(&settings.state_dir)
            .ok()
            .and_then(|s| s.fetched)
            .map(|h| h.to_string()),
    };
    state.last_fetch = Some(FetchRecord {
        at: state::now(),
        head,
        error: fetch_error,
    });
    state.save(&settings.state_dir)?;
    let checked = result?;
    Ok(Source {
        commit: Some(checked.commit),
        tree: Box::new(checked.tree),
    })
}

/// Records a converged commit: in the state file (authoritative) and as
/// the cache's applied ref.
fn record_applied(settings: &Settings, commit: gix::ObjectId) -> Result<()> {
    let mut state = AgentState::load(&settings.state_dir)?;
    state.applied_commit = Some(commit.to_string());
    state.applied_at = Some(state::now());
    state.save(&settings.state_dir)?;
    source::mark_applied(&settings.state_dir, commit)
}

fn source_status(settings: &Settings, report: &mut Report) -> Result<()> {
    let git = settings
        .source
        .as_ref()
        .context("no git source: configure [source] url in the agent config")?;
    let state = AgentState::load(&settings.state_dir)?;
    let cache = source::cache_status(&settings.state_dir)?;
    let fetched = cache.fetched.map(|c| c.to_string());
    report.result = Outcome::Valid;
    report.source_status = Some(SourceStatus {
        url: source::git::redact_url(&git.url),
        branch: git.branch.clone(),
        pending: fetched.is_some() && fetched != state.applied_commit,
        fetched_head: fetched,
        applied_commit: state.applied_commit,
        applied_at: state.applied_at,
        last_fetch: state.last_fetch,
    });
    Ok(())
}

fn load_options(settings: &Settings) -> LoadOptions {
    LoadOptions {
        state_dir: settings.state_dir.to_string_lossy().into_owned(),
        ..LoadOptions::default()
    }
}

fn host_name(settings: &Settings, args: &RepoArgs, facts: &Facts) -> String {
    args.host
        .clone()
        .or_else(|| settings.host.clone())
        .unwrap_or_else(|| facts.fqdn.clone())
}

fn validate(settings: &Settings, a: &ValidateArgs, report: &mut Report) -> Result<()> {
    let tree = open_source(settings, &a.repo, source::Purpose::Preview)?.tree;
    report.source = Some(tree.describe());
    let facts = system::facts::gather();
    let opts = load_options(settings);
    let mut diags: Vec<Diagnostic> = Vec::new();
    if a.all_hosts {
        let files = desired::load::list_host_files(tree.as_ref())?;
        if files.is_empty() {
            diags.push(Diagnostic::file(
                "hosts/",
                "no host files (hosts/*.toml) in the config repo",
            ));
        }
        for file in files {
            let name = file
                .trim_start_matches("hosts/")
                .trim_end_matches(".toml")
                .to_owned();
            let facts = facts.for_host(&name);
            if let Err(e) =
                desired::load::load_host_file(tree.as_ref(), &file, &name, &facts, &opts)
            {
                diags.extend(invalid(e)?);
            }
        }
    } else {
        let host = host_name(settings, &a.repo, &facts);
        let facts = facts.for_host(&host);
        report.host = Some(host.clone());
        match desired::load(tree.as_ref(), &host, &facts, &opts) {
            Ok(d) => {
                report.host_file = Some(d.host_file);
                report.roles = d.roles;
            }
            Err(e) => diags.extend(invalid(e)?),
        }
    }
    // Roles shared by several hosts would report the same problem again.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert(d.to_string()));
    report.result = if diags.is_empty() {
        Outcome::Valid
    } else {
        Outcome::Invalid
    };
    report.diagnostics = diags;
    Ok(())
}

fn invalid(e: desired::LoadError) -> Result<Vec<Diagnostic>> {
    match e {
        desired::LoadError::Invalid(d) => Ok(d),
        desired::LoadError::Read(e) => Err(e),
    }
}

/// A plan ready to apply: the prepared state, the root (absent for a dry
/// run into a missing root), and the commit to record once applied.
type Ready = (
    converge::Prepared,
    Option<system::fsroot::FsRoot>,
    Option<gix::ObjectId>,
);

/// Loads, observes and plans; fills the report. `Ok(None)`: the repo or the
/// plan had problems, already in the report.
fn prepare(
    settings: &Settings,
    args: &RepoArgs,
    root_path: &Path,
    create_root: bool,
    purpose: source::Purpose,
    report: &mut Report,
) -> Result<Option<Ready>> {
    let Source { tree, commit } = open_source(settings, args, purpose)?;
    report.source = Some(tree.describe());
    report.root = Some(root_path.display().to_string());
    let facts = system::facts::gather();
    let host = host_name(settings, args, &facts);
    report.host = Some(host.clone());
    let root = converge::open_root(root_path, create_root)
        .with_context(|| format!("cannot use {} as the root", root_path.display()))?;
    match converge::prepare(
        tree.as_ref(),
        &host,
        &facts,
        &load_options(settings),
        root.as_ref(),
    ) {
        Ok(p) => {
            report.host_file = Some(p.desired.host_file.clone());
            report.roles = p.desired.roles.clone();
            Ok(Some((p, root, commit)))
        }
        Err(PrepareError::Invalid(d)) => {
            report.result = Outcome::Invalid;
            report.diagnostics = d;
            Ok(None)
        }
        Err(PrepareError::Unplannable(p)) => {
            report.result = Outcome::Error;
            report.error = Some(format!(
                "cannot plan: {} problem(s); nothing was changed",
                p.len()
            ));
            report.plan_problems = p;
            Ok(None)
        }
        Err(PrepareError::Other(e)) => Err(e),
    }
}

fn plan(settings: &Settings, args: &RepoArgs, root: &Path, report: &mut Report) -> Result<()> {
    let Some((prepared, _, _)) = prepare(
        settings,
        args,
        root,
        false,
        source::Purpose::Preview,
        report,
    )?
    else {
        return Ok(());
    };
    report.result = if prepared.plan.is_empty() {
        Outcome::InSync
    } else {
        Outcome::ChangesPending
    };
    report.notes = prepared.plan.notes;
    report.changes = prepared.plan.changes;
    Ok(())
}

fn converge(settings: &Settings, a: &ConvergeArgs, report: &mut Report) -> Result<()> {
    let dry = a.dry_run || settings.mode == Mode::Audit;
    let Some((prepared, root, commit)) = prepare(
        settings,
        &a.repo,
        &a.root,
        !dry,
        source::Purpose::Apply,
        report,
    )?
    else {
        return Ok(());
    };
    if prepared.plan.is_empty() {
        report.result = Outcome::InSync;
        if let (Some(c), false) = (commit, dry) {
            record_applied(settings, c)?;
        }
        return Ok(());
    }
    if dry {
        report.notes = prepared.plan.notes.clone();
        report.result = Outcome::ChangesPending;
        report.changes = prepared.plan.changes;
        return Ok(());
    }
    let root = root.context("the root directory is missing")?;
    let cx = converge::ApplyContext {
        root: &root,
        desired: &prepared.desired,
        state_dir: &settings.state_dir,
        latest: prepared.latest.clone(),
    };
    match converge::apply(&cx, &prepared.plan)? {
        Applied::Done {
            changes,
            dnf_transactions,
        } => {
            report.result = Outcome::Changed;
            report.changes = changes;
            report.dnf_transactions = dnf_transactions;
            if let Some(c) = commit {
                record_applied(settings, c)?;
            }
        }
        Applied::Restored { error, undone } => {
            report.result = Outcome::RolledBack;
            report.error = Some(format!("{error:#} ({undone} earlier change(s) undone)"));
        }
        Applied::RestoreFailed {
            error,
            restore_errors,
            differences,
        } => {
            report.result = Outcome::RollbackFailed;
            report.error = Some(format!(
                "{error:#}; still different from before: {}",
                differences.join(", ")
            ));
            report.restore_errors = restore_errors.iter().map(|e| format!("{e:#}")).collect();
        }
    }
    Ok(())
}
