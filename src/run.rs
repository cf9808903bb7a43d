//! What each command does: the application layer between the command line
//! (and, later, the daemon) and the converge engine. Results go into a
//! [`Report`]; exit codes are decided from it in `cli`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::agent_config::{Mode, Settings};
use crate::cli::RepoArgs;
use crate::converge::{self, Engine, Outcome as Transacted, PrepareError};
use crate::desired::{self, ConfigTree, Diagnostic, Facts, LoadOptions};
use crate::generations::{Generations, Status};
use crate::health;
use crate::lastgood;
use crate::report::{Outcome, Report, SourceStatus};
use crate::source::{self, dir::DirTree};
use crate::state::{self, AgentState, FetchRecord, Interrupted, Mark, StateLock};
use crate::system::{self, fsroot::FsRoot};

/// Quarantine after this many converges of one key in a row were cut short.
pub const MAX_INTERRUPTED: u32 = 3;

/// The config repo for one run: a directory, or a checked commit of the
/// git source (with the id to record once it is applied).
struct Source {
    tree: Box<dyn ConfigTree>,
    commit: Option<gix::ObjectId>,
}

/// `lock_held`: the caller holds the state lock; otherwise the fetch (which
/// writes the cache and the state file) takes it for its duration.
fn open_source(
    settings: &Settings,
    args: &RepoArgs,
    purpose: source::Purpose,
    lock_held: bool,
) -> Result<Source> {
    if let Some(dir) = &args.repo {
        return Ok(Source {
            tree: Box::new(DirTree::open(dir)?),
            commit: None,
        });
    }
    let Some(git) = &settings.source else {
        bail!("no config repo: pass --repo DIR, or configure [source] url in the agent config");
    };
    let _lock = if lock_held {
        None
    } else {
        Some(StateLock::acquire(&settings.state_dir)?)
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
        &system::command::SHUTDOWN,
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

/// `source status`: local state of the git source; never fetches.
pub fn source_status(settings: &Settings, report: &mut Report) -> Result<()> {
    let git = settings
        .source
        .as_ref()
        .context("no git source: configure [source] url in the agent config")?;
    let state = AgentState::load(&settings.state_dir)?;
    let cache = source::cache_status(&settings.state_dir)?;
    let fetched = cache.fetched.map(|c| c.to_string());
    report.result = Outcome::Done;
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

/// `validate`: loads the desired state of one host, or of every host file.
pub fn validate(
    settings: &Settings,
    repo: &RepoArgs,
    all_hosts: bool,
    report: &mut Report,
) -> Result<()> {
    let tree = open_source(settings, repo, source::Purpose::Preview, false)?.tree;
    report.source = Some(tree.describe());
    let facts = system::facts::gather();
    let opts = load_options(settings);
    let mut diags: Vec<Diagnostic> = Vec::new();
    if all_hosts {
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
        let host = host_name(settings, repo, &facts);
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

/// `plan`: what a converge would change. Changes nothing on the host.
pub fn plan(settings: &Settings, args: &RepoArgs, root: &Path, report: &mut Report) -> Result<()> {
    let Some(loaded) = load(settings, args, source::Purpose::Preview, false, report)? else {
        return Ok(());
    };
    let root = converge::open_root(root, false)?;
    report.root = Some(display_root(root.as_ref()));
    let Some(prepared) = prepare(loaded.desired, loaded.source, root.as_ref(), report)? else {
        return Ok(());
    };
    report.result = if prepared.plan.is_empty() {
        Outcome::InSync
    } else {
        Outcome::ChangesPending
    };
    report.notes.extend(prepared.plan.notes);
    report.changes = prepared.plan.changes;
    Ok(())
}

/// `converge --now`: recover, check the pin and the quarantine, then plan
/// and apply as a transaction, and record the result.
pub fn converge(
    settings: &Settings,
    args: &RepoArgs,
    root_path: &Path,
    dry_run: bool,
    report: &mut Report,
) -> Result<()> {
    let dry = dry_run || settings.mode == Mode::Audit;
    report.root = Some(root_path.display().to_string());
    // A git fetch writes the cache in the state directory, so it runs under
    // the lock; a directory source is read first, so that an invalid repo
    // changes nothing, not even the state directory.
    let early_lock = (!dry && args.repo.is_none())
        .then(|| StateLock::acquire(&settings.state_dir))
        .transpose()?;
    let Some(loaded) = load(
        settings,
        args,
        source::Purpose::Apply,
        early_lock.is_some(),
        report,
    )?
    else {
        return Ok(());
    };
    let root = converge::open_root(root_path, !dry)
        .with_context(|| format!("cannot use {} as the root", root_path.display()))?;
    let _lock = match early_lock {
        Some(lock) => Some(lock),
        None if !dry => Some(StateLock::acquire(&settings.state_dir)?),
        None => None,
    };
    let applying = !dry && root.is_some();
    // What a crash left unfinished is rolled back before anything else.
    if let (true, Some(root)) = (applying, root.as_ref())
        && !recover_into(settings, root, report)?
    {
        return Ok(());
    }
    let state = AgentState::load(&settings.state_dir)?;
    if let (true, Some(pin)) = (applying, &state.pinned) {
        report.result = Outcome::Held;
        report.error = Some(format!(
            "the host is pinned ({}, since {}): nothing is applied until `driftless resume`",
            pin.reason.as_deref().unwrap_or("driftless rollback"),
            pin.at
        ));
        return Ok(());
    }
    let key = loaded.key.clone();
    // A quarantined head is not applied again: hold at the last good state.
    let (desired, source_desc, held) = match state.quarantine.as_ref().filter(|q| q.key == key) {
        None => (loaded.desired, loaded.source.clone(), None),
        Some(q) => {
            let why = format!(
                "{} is quarantined ({}); the host is held at the last good state. Push a new commit, or run `driftless retry`",
                short(&q.key),
                q.reason.as_deref().unwrap_or("rolled back")
            );
            report.notes.push(why.clone());
            match lastgood::load(&settings.state_dir)? {
                Some(lg) => (
                    lg.desired,
                    format!("last good {} ({})", short(&lg.key), lg.source),
                    Some((why, lg.key)),
                ),
                None => {
                    report.result = Outcome::Held;
                    report.error =
                        Some(format!("{why}; there is no last good state to converge to"));
                    return Ok(());
                }
            }
        }
    };
    let Some(prepared) = prepare(desired, source_desc, root.as_ref(), report)? else {
        return Ok(());
    };
    let good_key = held.as_ref().map_or(key.clone(), |(_, k)| k.clone());
    let held_or = |normal| {
        if held.is_some() {
            Outcome::Held
        } else {
            normal
        }
    };
    // Only the head itself becomes last good, never the state held at.
    let record = || match held {
        Some(_) => Ok(()),
        None => record_good(
            settings,
            &good_key,
            &loaded.source,
            &prepared.desired,
            loaded.commit,
        ),
    };
    if prepared.plan.is_empty() || dry {
        if !prepared.plan.is_empty() {
            report.result = held_or(Outcome::ChangesPending);
            report.notes.extend(prepared.plan.notes.iter().cloned());
            report.changes = prepared.plan.changes;
            return Ok(());
        }
        report.result = held_or(Outcome::InSync);
        if !dry {
            record()?;
        }
        return Ok(());
    }
    let Some(root) = root else {
        bail!("the root directory {} is missing", root_path.display())
    };
    let engine = engine(settings, &root);
    // From here on the host may have changed: a failure to write agent
    // state is reported, but does not turn the outcome into "error before
    // any change" (exit 1).
    let note_failure = |report: &mut Report, what: &str, r: Result<()>| {
        if let Err(e) = r {
            tracing::error!(error = format!("{e:#}"), "{what}");
            report.notes.push(format!("{what}: {e:#}"));
        }
    };
    match converge::transact(&engine, &prepared, &good_key)? {
        Transacted::Applied {
            generation,
            changes,
            dnf_transactions,
        } => {
            report.generation = Some(generation);
            report.result = held_or(Outcome::Changed);
            report.changes = changes;
            report.dnf_transactions = dnf_transactions;
            note_failure(report, "could not record the last good state", record());
        }
        Transacted::RolledBack {
            generation,
            error,
            blame,
        } => {
            report.generation = Some(generation);
            report.result = Outcome::RolledBack;
            report.error = Some(format!("{error:#}"));
            if stopped() {
                // Like a crash, a stop request says nothing about the commit.
                report.notes.push("stopped by a signal: the converge was rolled back; the head is not quarantined".to_owned());
            } else if blame && held.is_none() {
                let reason = format!("generation {generation} rolled back: {error:#}");
                note_failure(
                    report,
                    "could not record the quarantine",
                    quarantine(settings, &key, &loaded.source, &reason),
                );
            }
        }
        Transacted::RestoreFailed {
            generation,
            error,
            blame,
            restore_errors,
            differences,
        } => {
            report.generation = Some(generation);
            report.result = Outcome::RollbackFailed;
            report.error = Some(format!(
                "{error:#}; still different from before: {}",
                differences.join("; ")
            ));
            report.restore_errors = restore_errors.iter().map(|e| format!("{e:#}")).collect();
            if blame && held.is_none() && !stopped() {
                let reason =
                    format!("generation {generation} failed and could not be restored: {error:#}");
                note_failure(
                    report,
                    "could not record the quarantine",
                    quarantine(settings, &key, &loaded.source, &reason),
                );
            }
        }
    }
    Ok(())
}

/// Rolls back what a crash left unfinished, and counts the interruption
/// against its key. `Ok(false)`: a restore failed; the report says so.
fn recover_into(settings: &Settings, root: &FsRoot, report: &mut Report) -> Result<bool> {
    let recovered = converge::recover(&engine(settings, root))?;
    if recovered.is_empty() {
        return Ok(true);
    }
    let mut state = AgentState::load(&settings.state_dir)?;
    let mut ok = true;
    for r in &recovered {
        let g = &r.generation;
        report.notes.push(format!(
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
            ok = false;
            report.result = Outcome::RollbackFailed;
            report.error = Some(format!(
                "recovery of generation {} failed; still different: {}",
                g.id,
                r.differences.join("; ")
            ));
        }
        if r.was_undo {
            // A `driftless rollback` that a crash cut short: finished now,
            // and the host is pinned as that command would have done.
            if state.pinned.is_none() {
                state.pinned = Some(Mark {
                    key: format!("before generation {}", g.id),
                    source: "driftless rollback".to_owned(),
                    at: state::now(),
                    reason: Some(format!(
                        "rolled back to before generation {} (finished after a crash)",
                        g.id
                    )),
                });
            }
            continue;
        }
        let count = match &state.interrupted {
            Some(i) if i.key == g.key => i.count + 1,
            _ => 1,
        };
        state.interrupted = Some(Interrupted {
            key: g.key.clone(),
            count,
        });
        // The last good state stays the fallback (see `quarantine`).
        let is_last_good = state.last_good.as_ref().is_some_and(|l| l.key == g.key);
        if count >= MAX_INTERRUPTED && !is_last_good {
            state.quarantine = Some(Mark {
                key: g.key.clone(),
                source: g.source.clone(),
                at: state::now(),
                reason: Some(format!("{count} converges in a row were interrupted")),
            });
        }
    }
    state.save(&settings.state_dir)?;
    Ok(ok)
}

fn engine<'a>(settings: &'a Settings, root: &'a FsRoot) -> Engine<'a> {
    Engine {
        root,
        state_dir: &settings.state_dir,
        limits: health::Limits {
            health_timeout: settings.rollback.health_timeout,
            settle: settings.rollback.settle_time,
        },
        keep_generations: settings.rollback.keep_generations,
    }
}

/// Records a good converge of `key`: last good state, applied commit, and
/// the end of any interruption streak.
fn record_good(
    settings: &Settings,
    key: &str,
    source_desc: &str,
    desired: &desired::DesiredState,
    commit: Option<gix::ObjectId>,
) -> Result<()> {
    let mut state = AgentState::load(&settings.state_dir)?;
    // A converge that finds the host as the same desired state left it
    // writes nothing: the state directory is not churned every run.
    let same_key = state.last_good.as_ref().is_some_and(|g| g.key == key);
    let same_commit =
        commit.is_none_or(|c| state.applied_commit.as_deref() == Some(c.to_string().as_str()));
    let streak = state.interrupted.as_ref().is_some_and(|i| i.key == key);
    if same_key && same_commit && !streak {
        return Ok(());
    }
    lastgood::save(&settings.state_dir, key, source_desc, desired)?;
    state.last_good = Some(Mark {
        key: key.to_owned(),
        source: source_desc.to_owned(),
        at: state::now(),
        reason: None,
    });
    if streak {
        state.interrupted = None;
    }
    state.save(&settings.state_dir)?;
    if let Some(c) = commit {
        record_applied(settings, c)?;
    }
    Ok(())
}

fn quarantine(settings: &Settings, key: &str, source_desc: &str, reason: &str) -> Result<()> {
    let mut state = AgentState::load(&settings.state_dir)?;
    // The last good state stays the fallback: quarantining it would leave
    // nothing to hold at (a drift repair of it failing is not its fault
    // alone). The failure is in the generation's record.
    if state.last_good.as_ref().is_some_and(|g| g.key == key) {
        tracing::warn!(
            key,
            reason,
            "the last good state failed to converge; it is not quarantined"
        );
        return Ok(());
    }
    tracing::warn!(
        key,
        reason,
        "quarantining the desired state: it is not applied again until the source moves on or `driftless retry`"
    );
    state.quarantine = Some(Mark {
        key: key.to_owned(),
        source: source_desc.to_owned(),
        at: state::now(),
        reason: Some(reason.to_owned()),
    });
    state.save(&settings.state_dir)
}

/// `status`: last good, quarantine, pin, applied commit, last generation.
pub fn status(settings: &Settings, report: &mut Report) -> Result<()> {
    let state = AgentState::load(&settings.state_dir)?;
    let last = Generations::open(&settings.state_dir)?.list()?.pop();
    report.result = Outcome::Done;
    report.status = Some(crate::report::AgentStatus {
        applied_commit: state.applied_commit,
        last_good: state.last_good,
        quarantine: state.quarantine,
        pinned: state.pinned,
        interrupted: state.interrupted.map(|i| i.count),
        last_generation: last,
    });
    Ok(())
}

/// `history`: every kept generation.
pub fn history(settings: &Settings, report: &mut Report) -> Result<()> {
    report.history = Some(Generations::open(&settings.state_dir)?.list()?);
    report.result = Outcome::Done;
    Ok(())
}

/// `rollback [--to N]`: undo generation N and every later applied one,
/// newest first, then pin the host.
pub fn rollback(
    settings: &Settings,
    to: Option<u64>,
    root_path: &Path,
    report: &mut Report,
) -> Result<()> {
    let root = FsRoot::open(root_path)?;
    let _lock = StateLock::acquire(&settings.state_dir)?;
    if !recover_into(settings, &root, report)? {
        return Ok(());
    }
    let gens = Generations::open(&settings.state_dir)?;
    // Only what was done to this root is undone in it.
    let root_name = root.path().display().to_string();
    let applied: Vec<_> = gens
        .list()?
        .into_iter()
        .filter(|g| g.status == Status::Applied && g.root == root_name)
        .collect();
    let from = match to {
        Some(n) => {
            if !gens.list()?.iter().any(|g| g.id == n) {
                bail!("there is no generation {n} (see `driftless history`)");
            }
            if !applied.iter().any(|g| g.id == n) {
                bail!(
                    "generation {n} is not an applied generation of root {root_name} (see `driftless history`): nothing to undo"
                );
            }
            n
        }
        None => applied
            .last()
            .map(|g| g.id)
            .context("no applied generation to roll back")?,
    };
    let engine = engine(settings, &root);
    let mut undone = Vec::new();
    for g in applied.into_iter().rev().filter(|g| g.id >= from) {
        match converge::undo(&engine, g)? {
            Transacted::RolledBack { generation, .. } => undone.push(generation),
            Transacted::RestoreFailed {
                generation,
                differences,
                ..
            } => {
                report.result = Outcome::RollbackFailed;
                report.error = Some(format!(
                    "restoring generation {generation} failed; still different: {}",
                    differences.join("; ")
                ));
                return Ok(());
            }
            Transacted::Applied { .. } => {}
        }
    }
    let mut state = AgentState::load(&settings.state_dir)?;
    state.pinned = Some(Mark {
        key: format!("before generation {from}"),
        source: "driftless rollback".to_owned(),
        at: state::now(),
        reason: Some(format!("rolled back to before generation {from}")),
    });
    state.save(&settings.state_dir)?;
    report.notes.push(format!(
        "undid generation(s) {}; the host is pinned until `driftless resume`",
        undone
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.result = Outcome::Done;
    Ok(())
}

/// `resume`: lift the pin.
pub fn resume(settings: &Settings, report: &mut Report) -> Result<()> {
    let _lock = StateLock::acquire(&settings.state_dir)?;
    let mut state = AgentState::load(&settings.state_dir)?;
    report.notes.push(match state.pinned.take() {
        Some(p) => format!("pin lifted ({})", p.reason.unwrap_or_default()),
        None => "the host was not pinned".to_owned(),
    });
    state.save(&settings.state_dir)?;
    report.result = Outcome::Done;
    Ok(())
}

/// `retry`: lift the quarantine.
pub fn retry(settings: &Settings, report: &mut Report) -> Result<()> {
    let _lock = StateLock::acquire(&settings.state_dir)?;
    let mut state = AgentState::load(&settings.state_dir)?;
    report.notes.push(match state.quarantine.take() {
        Some(q) => format!(
            "quarantine of {} lifted; the next converge tries it again",
            short(&q.key)
        ),
        None => "nothing was quarantined".to_owned(),
    });
    state.interrupted = None;
    state.save(&settings.state_dir)?;
    report.result = Outcome::Done;
    Ok(())
}

/// `recover`: only the crash recovery every converge starts with.
pub fn recover(settings: &Settings, root: &Path, report: &mut Report) -> Result<()> {
    let root = FsRoot::open(root)?;
    let _lock = StateLock::acquire(&settings.state_dir)?;
    if recover_into(settings, &root, report)? {
        report.result = Outcome::Done;
        if report.notes.is_empty() {
            report.notes.push("nothing to recover".to_owned());
        }
    }
    Ok(())
}

/// A loaded desired state and where it came from.
struct Loaded {
    desired: desired::DesiredState,
    source: String,
    commit: Option<gix::ObjectId>,
    key: String,
}

/// Opens the source and loads the host's desired state. `Ok(None)`: the
/// repo is invalid (in the report).
fn load(
    settings: &Settings,
    args: &RepoArgs,
    purpose: source::Purpose,
    lock_held: bool,
    report: &mut Report,
) -> Result<Option<Loaded>> {
    let Source { tree, commit } = open_source(settings, args, purpose, lock_held)?;
    let source = tree.describe();
    report.source = Some(source.clone());
    let facts = system::facts::gather();
    let host = host_name(settings, args, &facts);
    report.host = Some(host.clone());
    match converge::load(tree.as_ref(), &host, &facts, &load_options(settings)) {
        Ok(desired) => {
            report.host_file = Some(desired.host_file.clone());
            report.roles = desired.roles.clone();
            let key = commit.map_or_else(|| lastgood::content_key(&desired), |c| c.to_string());
            Ok(Some(Loaded {
                desired,
                source,
                commit,
                key,
            }))
        }
        Err(desired::LoadError::Invalid(d)) => {
            report.result = Outcome::Invalid;
            report.diagnostics = d;
            Ok(None)
        }
        Err(desired::LoadError::Read(e)) => Err(e),
    }
}

/// Plans against the host. `Ok(None)`: the plan cannot be made (in the report).
fn prepare(
    desired: desired::DesiredState,
    source_desc: String,
    root: Option<&FsRoot>,
    report: &mut Report,
) -> Result<Option<converge::Prepared>> {
    match converge::prepare(desired, source_desc, root) {
        Ok(p) => Ok(Some(p)),
        Err(PrepareError::Unplannable(p)) => {
            report.result = Outcome::Error;
            report.error = Some(format!(
                "cannot plan: {} problem(s); nothing was changed",
                p.len()
            ));
            report.plan_problems = p;
            Ok(None)
        }
        Err(PrepareError::Invalid(d)) => {
            report.result = Outcome::Invalid;
            report.diagnostics = d;
            Ok(None)
        }
        Err(PrepareError::Other(e)) => Err(e),
    }
}

fn display_root(root: Option<&FsRoot>) -> String {
    root.map_or_else(
        || "(missing: planned as empty)".to_owned(),
        |r| r.path().display().to_string(),
    )
}

/// Whether a SIGINT/SIGTERM asked driftless to stop during this run.
fn stopped() -> bool {
    system::command::SHUTDOWN.load(std::sync::atomic::Ordering::SeqCst)
}

/// The first 12 characters of a commit id or content key, for messages.
fn short(key: &str) -> &str {
    let key = key.strip_prefix("sha256:").unwrap_or(key);
    &key[..key.len().min(12)]
}
