//! The command line: definitions, dispatch, signals, and exit codes
//! (decided here and nowhere else). What each command does lives in
//! [`crate::app`]; how its result is printed in [`render`].

mod client;
mod man;
pub mod render;
mod secret;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, App, SourceRequest};
use crate::cancel::Cancel;
use crate::config;
use crate::converge::{Log, Tee};
use crate::report::journal::Journal;
use render::{Report, Shape};

pub use crate::outcome::ExitCode;

/// driftless: pull-based GitOps for RHEL-family hosts.
#[derive(Debug, Parser)]
#[command(version = crate::VERSION, about, long_about = None)]
pub struct Cli {
    /// Agent config file (drop-ins are read from agent.d/ beside it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config repo without touching the host. Exit 0 valid, 1 invalid.
    Validate(ValidateArgs),
    /// Show what a converge would change. Exit 0 in sync, 1 error, 2 changes
    /// pending, 3 converge would hold (pinned, or the head quarantined).
    Plan(PlanArgs),
    /// Converge the host now, as a transaction: through the daemon when it
    /// runs (the run is in its journal), else in this process. Exit 0 in
    /// sync, 1 error before any change, 2 changed, 3 held at last good (head
    /// quarantined, host pinned, or held by the fleet's rollout gate), 4
    /// failed and rolled back, 5 rollback failed. In audit mode or with
    /// --dry-run nothing changes: 2 means drift found.
    Converge(ConvergeArgs),
    /// The agent: last good state, quarantined head, pin, last generation,
    /// and the daemon's state and next run when it runs.
    Status,
    /// The generations: what each converge applied and how it ended;
    /// `history N` shows generation N in full.
    History(HistoryArgs),
    /// Restore the host to its state before the last (or given) generation
    /// and pin it there until `driftless resume`. Exit 0 restored, 5 failed.
    Rollback(RollbackArgs),
    /// Lift the pin set by `driftless rollback`.
    Resume,
    /// What templates see for this host: `host`, `facts.*` and the `vars.*`
    /// of its host file and roles. Changes nothing.
    Facts(RepoArgs),
    /// Lift the quarantine of the current head so the next converge tries it.
    Retry,
    /// Freeze this host: every converge (the daemon's, `converge --now`
    /// from anyone) is refused with the reason, who paused and since when,
    /// until `driftless unpause`. Exit 0.
    Pause(PauseArgs),
    /// Lift `driftless pause`. Exit 0.
    Unpause,
    /// Reboot the host now, through the daemon (drain first, any window),
    /// or cancel a reboot asked for or due (docs/reboots.md). Exit 0.
    Reboot(RebootArgs),
    /// Roll back a converge that a crash left unfinished (every converge does
    /// this first). Exit 0 nothing to do or restored, 5 restore failed.
    Recover(RootArgs),
    /// The git source.
    #[command(subcommand)]
    Source(SourceCommand),
    /// The agent config: `check` (as `nginx -t`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run as the daemon (what driftless.service starts): converge on the
    /// schedule of the agent config's [schedule], heal drift at every tick,
    /// and answer `converge --now` and `status` on the control socket.
    Daemon(DaemonArgs),
    /// The fleet this host is in (`[fleet]`): `status [--commit REV]`
    /// (where a commit stands, wave by wave), `halt --reason TEXT` (no host
    /// applies a new commit), `resume`, `nudge` (every daemon runs now),
    /// `wait COMMIT` (until it landed), `serve` (the dashboard). Exit 0, 1
    /// error (etcd unreachable); `wait`: 3 timeout, 4 halted.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Host keys and secrets for the config repo: `keygen FILE`,
    /// `recipient`, `encrypt --to RECIPIENT FILE`. Exit 0 done, 1 failed.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Assets(AssetsArgs),
}

/// `daemon`
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Converge DIR as the host's `/` (tests and chroots).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Read the desired state from this directory instead of the git source.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Host name to look up (default: agent config `host`, else this machine's FQDN).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// `assets`
#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Write one man page per command into DIR.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into DIR.
    #[arg(long, value_name = "DIR")]
    pub completions: Option<PathBuf>,
}

/// `fleet …`
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Per wave: live hosts, on the commit, rolled back (host, reason),
    /// waiting (for soak, a window, a slot), halted or progressing; and the
    /// hosts that disappeared.
    Status {
        /// The commit to show (default: the head fetched here).
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
        /// Only the hosts whose last run found drift.
        #[arg(long)]
        drifted: bool,
        /// Only the hosts whose last run failed (an error, a rollback).
        #[arg(long)]
        failing: bool,
        /// Only this wave.
        #[arg(long, value_name = "WAVE")]
        wave: Option<String>,
    },
    /// The big red button: no host applies a new commit (drift is still
    /// healed) until `fleet resume`.
    Halt {
        /// Why, shown on every host.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Lift `fleet halt`; with --reboots, lift the waves' reboot halts
    /// instead (docs/reboots.md).
    Resume {
        /// Clear the waves' reboot halts and the reboot slots kept by hosts
        /// that did not come back healthy from a reboot (after dealing with
        /// them); `fleet halt` stays.
        #[arg(long)]
        reboots: bool,
    },
    /// Wake every daemon of the fleet for a fetch and converge now (each
    /// after its own random delay below `[fleet] nudge_splay`; the rollout
    /// gate applies): writes `<prefix>/nudge`, which the daemons watch.
    /// For CI after a push: "merge, nudge, wait".
    Nudge {
        /// The commit pushed (shown in the daemons' logs).
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
    },
    /// Serve the fleet's read-only dashboard (an operator's command, never
    /// the daemon's): waves, hosts, the commit each runs, health, drift,
    /// rollbacks, halts, reboots pending, and one commit's progress across
    /// the waves, live from etcd. `/api/status` is `fleet status --json`.
    /// Beyond loopback it needs TLS and a token or client certificates.
    /// Runs until Ctrl-C (exit 0); exit 1 when it cannot start.
    Serve(ServeArgs),
    /// Block until every live host (or every host of --wave) runs COMMIT,
    /// or a later commit, healthily. Prints progress as hosts report. Exit
    /// 0 landed, 4 its rollout halted (the host that rolled it back and
    /// why), 3 the timeout passed (who has not), 1 etcd unreachable.
    Wait {
        /// The commit: its full id, or a prefix the git cache here knows.
        #[arg(value_name = "COMMIT")]
        commit: String,
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Only the hosts of this wave.
        #[arg(long, value_name = "WAVE")]
        wave: Option<String>,
    },
}

/// `fleet serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Any address outside 127.0.0.0/8 and
    /// ::1 needs --tls-cert, --tls-key and --token-file or --client-ca.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8430")]
    pub listen: std::net::SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file whose first line is the token clients must send
    /// (`Authorization: Bearer TOKEN`, or as the password of the
    /// browser's login prompt). Not readable by every user.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Let in only clients with a certificate signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the agent config (`--config FILE`, default
    /// /etc/driftless/agent.toml, and its agent.d/*.toml drop-ins) as the
    /// daemon would read it; every problem as FILE:LINE:COL. Exit 0 valid,
    /// 1 invalid. `systemctl reload driftless` runs it first.
    Check,
}

/// `source …`
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// URL, branch, fetched and applied commits, and the last fetch error.
    /// Reads local state only; never fetches.
    Status,
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
    /// Use this commit (id or unique prefix, reachable from the fetched
    /// branch or from --branch) instead of the head. With `converge`: a
    /// trial, pinned until `driftless resume`. Not with --repo.
    #[arg(long, value_name = "REV", conflicts_with = "repo")]
    pub commit: Option<String>,
    /// Use this branch of the git source instead of the configured one.
    /// With `converge`: a trial of its head on this host, pinned until
    /// `driftless resume`, which returns to the configured branch. Not
    /// with --repo.
    #[arg(long, value_name = "NAME", conflicts_with = "repo")]
    pub branch: Option<String>,
}

/// The host's root.
#[derive(Debug, Args)]
pub struct RootArgs {
    /// Treat DIR as the host's `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// `validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Source and host.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Validate every hosts/*.toml (for the config repo's own CI).
    #[arg(long, conflicts_with = "host")]
    pub all_hosts: bool,
}

/// `plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Source and host.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Root.
    #[command(flatten)]
    pub root: RootArgs,
}

/// `converge`
#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// Converge immediately (required: the daemon converges on its own
    /// schedule; this asks for a run now).
    #[arg(long, required = true)]
    pub now: bool,
    /// Source and host. `--repo`, `--host` and `--commit` make an ad hoc
    /// run in this process, never through the daemon.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Root. Another root than `/` is an ad hoc run.
    #[command(flatten)]
    pub root: RootArgs,
    /// Create the root if it does not exist (without it a missing root is
    /// refused: a typo would make a new tree).
    #[arg(long)]
    pub create_root: bool,
    /// Plan and print, change nothing (exit 2: drift found).
    #[arg(long)]
    pub dry_run: bool,
    /// Show the diff of every file changed (also with -v). Sensitive files
    /// never show one.
    #[arg(long)]
    pub diff: bool,
    /// Apply a new commit whatever the fleet's rollout gate says (waves,
    /// soak, halt, windows); logged. Runs in this process.
    #[arg(long)]
    pub ignore_rollout: bool,
    /// Converge although the host is paused (`driftless pause`); logged.
    #[arg(long)]
    pub force: bool,
}

/// `pause`
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why: shown to everyone whose converge is refused, in `status`, the
    /// journal and `systemctl status driftless`.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
}

/// `reboot`
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RebootArgs {
    /// Ask the daemon to drain and reboot the host now.
    #[arg(long)]
    pub now: bool,
    /// Forget a `reboot --now`, and hold off the automatic reboot for
    /// what is required now.
    #[arg(long)]
    pub cancel: bool,
}

/// `history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show this generation in full: changes, reasons, checks, outcome,
    /// durations, what was restored.
    #[arg(value_name = "GENERATION")]
    pub generation: Option<u64>,
}

/// `rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Undo this generation and every later one (default: the last applied).
    #[arg(long, value_name = "GENERATION")]
    pub to: Option<u64>,
    /// Root.
    #[command(flatten)]
    pub root: RootArgs,
}

impl RepoArgs {
    fn request(&self) -> SourceRequest {
        SourceRequest {
            repo: self.repo.clone(),
            host: self.host.clone(),
            commit: self.commit.clone(),
            branch: self.branch.clone(),
            fetch: app::FetchPolicy::Remote,
        }
    }
}

/// A cancellation token for this process's one run, cancelled by the first
/// SIGINT or SIGTERM (the running child is killed, the converge stops and
/// rolls back); a second signal exits at once with status 130, and the
/// next start finishes the rollback.
pub fn cancel_on_signals() -> Cancel {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let flag = FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so that it sees the flag before this
            // signal sets it: only a second signal exits.
            let hard =
                signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let soft = signal_hook::flag::register(sig, Arc::clone(&flag));
            if let Err(e) = hard.and(soft) {
                tracing::warn!("cannot watch signal {sig}: {e}");
            }
        }
        flag
    });
    Cancel::from_flag(Arc::clone(flag))
}

/// Runs the parsed command line and returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Daemon(a) => return daemon(&cli, a),
        Command::Assets(a) => return assets(a),
        Command::Secret(s) => return secret::run(s, cli.config.as_deref()),
        _ => {}
    }
    let cancel = cancel_on_signals();
    let started = std::time::Instant::now();
    let report = dispatch(&cli, &cancel).unwrap_or_else(|(command, e)| Report::error(command, &e));
    if changes_agent_state(&cli.command) {
        // The daemon shows what the state says now, not at its next run.
        let socket = cli.config.as_deref().map_or_else(
            || config::load(std::path::Path::new(config::DEFAULT_CONFIG), false),
            |c| config::load(c, true),
        );
        if let Ok(settings) = socket {
            client::refresh(&settings.socket);
        }
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(e) = report.print(cli.json, duration_ms) {
        // stdout closed (e.g. piped into `head`): the exit code still tells.
        tracing::debug!("failed to print the report: {e}");
    }
    report.result.into()
}

/// The agent config files, for a message.
fn files_of(s: &config::Settings) -> String {
    if s.sources.is_empty() {
        return "the defaults".to_owned();
    }
    s.sources
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Commands that change the agent state a daemon shows.
fn changes_agent_state(command: &Command) -> bool {
    matches!(
        command,
        Command::Rollback(_)
            | Command::Resume
            | Command::Retry
            | Command::Pause(_)
            | Command::Unpause
            | Command::Reboot(_)
            | Command::Recover(_)
    )
}

/// What `command` reports: its result's shape, and its name.
fn shape(command: &Command) -> Shape {
    match command {
        Command::Validate(_) => Shape::Validate,
        Command::Plan(_) => Shape::Plan,
        Command::Converge(_) => Shape::Converge,
        Command::Status => Shape::Status,
        Command::History(_) => Shape::History,
        Command::Facts(_) => Shape::Facts,
        Command::Source(_) => Shape::SourceStatus,
        Command::Fleet(FleetCommand::Status { .. }) => Shape::FleetStatus,
        Command::Rollback(_) => Shape::Action("rollback"),
        Command::Resume => Shape::Action("resume"),
        Command::Retry => Shape::Action("retry"),
        Command::Pause(_) => Shape::Action("pause"),
        Command::Unpause => Shape::Action("unpause"),
        Command::Reboot(_) => Shape::Action("reboot"),
        Command::Recover(_) => Shape::Action("recover"),
        Command::Config(ConfigCommand::Check) => Shape::Action("config check"),
        Command::Daemon(_) => Shape::Action("daemon"),
        Command::Assets(_) => Shape::Action("assets"),
        Command::Secret(_) => Shape::Action("secret"),
        Command::Fleet(FleetCommand::Halt { .. }) => Shape::Action("fleet halt"),
        Command::Fleet(FleetCommand::Resume { .. }) => Shape::Action("fleet resume"),
        Command::Fleet(FleetCommand::Nudge { .. }) => Shape::Action("fleet nudge"),
        Command::Fleet(FleetCommand::Wait { .. }) => Shape::FleetWait,
        Command::Fleet(FleetCommand::Serve(_)) => Shape::Action("fleet serve"),
    }
}

fn dispatch(cli: &Cli, cancel: &Cancel) -> Result<Report, (Shape, anyhow::Error)> {
    let shape = shape(&cli.command);
    let command = shape.command();
    let fail = |e| (shape, e);
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let loaded = config::load(&path, explicit);
    if let Command::Config(ConfigCommand::Check) = &cli.command {
        let s = loaded.map_err(fail)?;
        let files: Vec<String> = s.sources.iter().map(|p| p.display().to_string()).collect();
        return Ok(Report::action(
            command,
            app::ActionResult::done(if files.is_empty() {
                format!("no agent config at {}: the defaults apply", path.display())
            } else {
                format!("agent config valid: {}", files.join(" + "))
            }),
        ));
    }
    // Status always answers: with an agent config that cannot be read, it
    // says so and shows what it can (a daemon runs the config it loaded).
    let (settings, config_error) = match (loaded, &cli.command) {
        (Ok(s), _) => (s, None),
        (Err(e), Command::Status) => (config::Settings::default(), Some(format!("{e:#}"))),
        (Err(e), _) => return Err((shape, e)),
    };
    let app = App::new(settings);
    let mut log = Log;
    Ok(match &cli.command {
        Command::Validate(a) => {
            Report::validate(app::validate(&app, &a.repo.request(), a.all_hosts, cancel))
        }
        Command::Plan(a) => {
            let req = app::PlanRequest {
                source: a.repo.request(),
                root: a.root.root.clone(),
            };
            let mut report = Report::plan(app::plan(&app, &req, &mut log, cancel));
            report.mode = Some(app.settings.mode);
            report
        }
        Command::Converge(a) => converge(cli, a, &app, &mut log, cancel).map_err(fail)?,
        Command::Status => Report::status(status(&app, config_error).map_err(fail)?),
        Command::History(a) => match a.generation {
            None => Report::history(app::history(&app).map_err(fail)?),
            Some(id) => Report::generation(app::generation(&app, id).map_err(fail)?),
        },
        Command::Rollback(a) => Report::action(
            command,
            app::rollback(&app, a.to, &a.root.root, &mut log, cancel).map_err(fail)?,
        ),
        Command::Resume => Report::action(command, app::resume(&app).map_err(fail)?),
        Command::Facts(a) => Report::facts(app::facts(&app, &a.request(), cancel)),
        Command::Retry => Report::action(command, app::retry(&app).map_err(fail)?),
        Command::Pause(a) => {
            let (done, pause) = app::pause(&app, &a.reason).map_err(fail)?;
            crate::report::journal::pause_changed(true, &pause, &pause.by);
            Report::action(command, done)
        }
        Command::Unpause => {
            let (done, lifted) = app::unpause(&app).map_err(fail)?;
            if let Some((pause, by)) = lifted {
                crate::report::journal::pause_changed(false, &pause, &by);
            }
            Report::action(command, done)
        }
        Command::Reboot(a) => {
            let note = if a.now {
                app::reboot_ask(&app)
            } else {
                app::reboot_cancel(&app)
            };
            Report::action(command, app::ActionResult::done(note.map_err(fail)?))
        }
        Command::Recover(a) => Report::action(
            command,
            app::recover(&app, &a.root, &mut log, cancel).map_err(fail)?,
        ),
        Command::Config(ConfigCommand::Check) => {
            return Err((shape, anyhow::anyhow!("internal error: dispatched twice")));
        }
        Command::Source(SourceCommand::Status) => {
            Report::source_status(app::source_status(&app).map_err(fail)?)
        }
        Command::Fleet(f) => fleet(&app, f, command, cancel).map_err(fail)?,
        Command::Daemon(_) | Command::Assets(_) | Command::Secret(_) => {
            return Err((shape, anyhow::anyhow!("internal error: dispatched twice")));
        }
    })
}

/// `fleet …`: the fleet's commands, each a read or a write of etcd.
fn fleet(
    app: &App,
    f: &FleetCommand,
    command: &'static str,
    cancel: &Cancel,
) -> anyhow::Result<Report> {
    let done = |message| Report::action(command, app::ActionResult::done(message));
    Ok(match f {
        FleetCommand::Status {
            commit,
            drifted,
            failing,
            wave,
        } => {
            let filter = app::HostFilter {
                drifted: *drifted,
                failing: *failing,
                wave: wave.clone(),
            };
            Report::fleet_status(app::fleet_status(app, commit.as_deref(), &filter)?)
        }
        FleetCommand::Halt { reason } => done(app::fleet_halt(app, reason)?),
        FleetCommand::Resume { reboots: false } => done(app::fleet_resume(app)?),
        FleetCommand::Resume { reboots: true } => done(app::fleet_resume_reboots(app)?),
        FleetCommand::Nudge { commit } => done(app::fleet_nudge(app, commit.as_deref())?),
        FleetCommand::Serve(a) => {
            let opts = crate::dashboard::Options {
                listen: a.listen,
                tls_cert: a.tls_cert.clone(),
                tls_key: a.tls_key.clone(),
                token_file: a.token_file.clone(),
                client_ca: a.client_ca.clone(),
            };
            // Where it listens goes to stderr at once (stdout is the
            // result, at the end).
            let mut ready = |url: &str| {
                let _ = writeln!(
                    std::io::stderr(),
                    "driftless fleet serve: the dashboard is at {url} (Ctrl-C stops it)"
                );
            };
            crate::dashboard::serve(app, &opts, cancel, &mut ready)?;
            done("the dashboard stopped".to_owned())
        }
        FleetCommand::Wait {
            commit,
            timeout,
            wave,
        } => {
            let req = app::WaitRequest {
                commit: commit.clone(),
                wave: wave.clone(),
                timeout: *timeout,
            };
            // Progress goes to stderr: stdout is the result (or its JSON).
            let mut progress = |line: &str| {
                let _ = writeln!(std::io::stderr(), "{line}");
            };
            Report::fleet_wait(app::fleet_wait(app, &req, &mut progress, cancel)?)
        }
    })
}

/// `converge --now`: through the daemon when one runs (and nothing ad hoc
/// is asked: another repo, root, host, commit or branch), else in this
/// process, with the same journal entries.
fn converge(
    cli: &Cli,
    a: &ConvergeArgs,
    app: &App,
    log: &mut Log,
    cancel: &Cancel,
) -> anyhow::Result<Report> {
    let ad_hoc = a.repo.repo.is_some()
        || a.ignore_rollout
        || a.repo.host.is_some()
        || a.repo.commit.is_some()
        || a.repo.branch.is_some()
        || a.root.root != std::path::Path::new("/");
    let daemon = if ad_hoc {
        None
    } else {
        client::connect(&app.settings.socket)?
    };
    let result = match daemon {
        Some(stream) => {
            let mut result = client::converge(stream, a.dry_run, a.force, cli.json)?;
            if !result.config_fingerprint.is_empty()
                && result.config_fingerprint != app.settings.fingerprint
            {
                result.run.notes.push(format!(
                    "the daemon runs an older agent config than {}: `systemctl reload driftless` to use it",
                    files_of(&app.settings)
                ));
            }
            result
        }
        None => {
            let req = app::ConvergeRequest {
                source: a.repo.request(),
                root: a.root.root.clone(),
                dry_run: a.dry_run,
                create_root: a.create_root,
                ignore_rollout: a.ignore_rollout,
                force: a.force,
                started_by: format!(
                    "converge --now by {}, in its own process",
                    crate::system::facts::invoking_user()
                ),
                check_in_sync: false,
            };
            let mut journal = Journal::default();
            let mut sink = Tee(vec![log, &mut journal]);
            app::converge(app, &req, &mut sink, cancel)
        }
    };
    let mut report = Report::converge(result);
    report.show_diffs = a.diff || cli.verbose > 0;
    report.dry_run = a.dry_run;
    Ok(report)
}

/// `status`: the state files, and the daemon's own view when it answers;
/// it always answers, also with an agent config it cannot read.
fn status(app: &App, config_error: Option<String>) -> anyhow::Result<app::AgentStatus> {
    let mut status = app::status(app)?;
    // A daemon that does not answer (hung, busy, refusing) is reported
    // beside what the state files say.
    match client::connect(&app.settings.socket).and_then(|s| match s {
        Some(stream) => client::status(stream).map(Some),
        None => Ok(None),
    }) {
        Ok(daemon) => status.daemon = daemon,
        Err(e) => status.daemon_error = Some(format!("{e:#}")),
    }
    status.reload_pending = config_error.is_none()
        && status.daemon.as_ref().is_some_and(|d| {
            !d.config_fingerprint.is_empty() && d.config_fingerprint != app.settings.fingerprint
        });
    status.config_error = config_error;
    Ok(status)
}

/// `daemon`: runs until SIGTERM; exit 0 after a clean stop, 1 when it
/// cannot start.
fn daemon(cli: &Cli, a: &DaemonArgs) -> ExitCode {
    let opts = crate::daemon::Options {
        explicit: cli.config.is_some(),
        config: cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG)),
        root: a.root.clone(),
        repo: a.repo.clone(),
        host: a.host.clone(),
    };
    match crate::daemon::run(opts) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the daemon cannot run");
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::Error
        }
    }
}

/// `assets`: man pages (one per command) and completions, for the RPM.
fn assets(a: &AssetsArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        use clap::CommandFactory;
        if let Some(dir) = &a.man {
            man::write_pages(Cli::command(), dir)?;
        }
        if let Some(dir) = &a.completions {
            std::fs::create_dir_all(dir)?;
            // Completions offer no hidden command (`assets` itself).
            let mut shown = man::without_hidden(&Cli::command());
            for shell in [
                clap_complete::Shell::Bash,
                clap_complete::Shell::Zsh,
                clap_complete::Shell::Fish,
            ] {
                clap_complete::generate_to(shell, &mut shown, "driftless", dir)?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::Error
        }
    }
}
