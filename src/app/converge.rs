//! `converge`: recover, decide (apply, hold at last good, pinned), plan
//! and apply as a transaction, and record the result.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::context::{App, Run, SourceRequest, absolute};
use super::fleet;
use super::hooks;
use super::load::{FetchFailed, Invalid, Loaded, load};
use super::plan::{Chosen, prepare};
use super::prune;
use super::recovery::recover_into;
use crate::agent::policy::{self, Blame, Decision, Ended};
use crate::agent::{AgentState, now, short};
use crate::cancel::Cancel;
use crate::config::Mode;
use crate::converge::{self, Event, Outcome as Transacted, Prepared, Sink};
use crate::outcome::Outcome;
use crate::source;
use crate::store::StateLock;
use tracing::warn;

/// Drifted resources named in a run's result, its journal entry and its
/// record (the count is exact).
pub(super) const DRIFT_NAMED: usize = 10;

/// What to converge.
#[derive(Clone, Debug)]
pub struct ConvergeRequest {
    /// Source and host.
    pub source: SourceRequest,
    /// The host's root (`/`).
    pub root: PathBuf,
    /// Plan and report only.
    pub dry_run: bool,
    /// Create the root when it does not exist (`--create-root`): without
    /// it a missing root is refused, since a typo would make a new tree.
    pub create_root: bool,
    /// Apply a new commit whatever the fleet's rollout gate says
    /// (`--ignore-rollout`; logged).
    pub ignore_rollout: bool,
    /// Converge although the host is paused (`--force`; logged).
    pub force: bool,
    /// Who starts it, for the history and the journal (`schedule`,
    /// `converge --now by alice (via sudo as root)`).
    pub started_by: String,
}

/// What a converge did (also what the daemon sends a client at the end
/// of its run).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ConvergeResult {
    /// Outcome, what was loaded, the changes applied (or pending for a dry
    /// run), notes and errors.
    pub run: Run,
    /// The generation it recorded, if it changed anything.
    pub generation: Option<u64>,
    /// dnf transactions it recorded.
    pub dnf_transactions: Vec<u64>,
    /// Details of a failed restore.
    pub restore_errors: Vec<String>,
    /// The key of the desired state loaded (commit or content hash).
    pub key: Option<String>,
    /// The fetch failed; the run went on with a cached commit.
    pub fetch_failed: Option<FetchFailed>,
    /// This run quarantined the loaded key.
    pub quarantined: bool,
    /// Resources that had drifted from a desired state already applied
    /// (healed now, or in an audit only reported): how many; the steps that
    /// only follow from others (a restart on a changed file) do not count.
    pub drifted: usize,
    /// Which, the first [`DRIFT_NAMED`] of them.
    #[serde(default)]
    pub drifted_resources: Vec<String>,
    /// Who started the run (`schedule`, `converge --now by alice`).
    #[serde(default)]
    pub started_by: String,
    /// Through the daemon: the digest of the agent config it runs, so the
    /// client can say when the files differ (a reload is pending).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_fingerprint: String,
    /// It only reported: audit mode or a dry run.
    pub audit: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// Why the loaded commit was not applied: the fleet's rollout gate.
    #[serde(default)]
    pub rollout_blocked: Option<fleet::Blocked>,
    /// Why the host was held (pinned, paused, the head quarantined, the
    /// rollout gate): the run's one-line reason, also when it is not an
    /// error.
    #[serde(default)]
    pub held: Option<String>,
    /// The rollout slot held while applying (given back at the end).
    #[serde(skip)]
    pub(crate) rollout_slot: Option<fleet::Slot>,
}

/// Converges the host: the one entry point of a transaction for the
/// command line and the daemon. Events go to `sink` as they happen, the
/// last one [`Event::Finished`]; `cancel` stops forward work (the converge
/// then rolls back).
pub fn converge(
    app: &App,
    req: &ConvergeRequest,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> ConvergeResult {
    let started = Instant::now();
    let mut r = ConvergeResult {
        audit: req.dry_run || app.settings.mode == Mode::Audit,
        started_by: req.started_by.clone(),
        ..ConvergeResult::default()
    };
    r.run.root = Some(absolute(&req.root).display().to_string());
    sink.event(&Event::Started {
        root: absolute(&req.root).display().to_string(),
        audit: r.audit,
    });
    let mut locked = None;
    if let Err(e) = converge_into(app, req, sink, cancel, &mut r, &mut locked) {
        r.run.fail(e);
    }
    r.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(l) = locked.as_mut() {
        save_state(app, l, &mut r);
        if !r.audit {
            tell_the_fleet(app, &l.state, &mut r);
        }
    }
    // What this run found, changed or not, for `status`; a run that did not
    // get to the host (another one held the lock, the fetch failed) leaves
    // the record of the one that did, except that an invalid repo is news.
    if !req.dry_run && (locked.is_some() || r.run.outcome == Outcome::Invalid) {
        record_last_run(app, &r);
    }
    // Hooks may run `driftless` themselves: the lock is let go first.
    drop(locked);
    sink.event(&Event::Finished {
        outcome: r.run.outcome,
        generation: r.generation,
        changes: r.run.changes.len(),
        duration_ms: r.duration_ms,
        key: r.key.clone(),
        drifted: r.drifted,
        drifted_resources: r.drifted_resources.clone(),
        started_by: r.started_by.clone(),
        quarantined: r.quarantined,
        audit: r.audit,
        error: r.run.error.clone(),
    });
    if !req.dry_run {
        hooks::run_hooks(&app.settings.hooks, &hook_env(&r));
    }
    r
}

/// Gives back the rollout slot and publishes this host's record.
fn tell_the_fleet(app: &App, state: &AgentState, r: &mut ConvergeResult) {
    let Some(host) = r.run.subject.host.clone() else {
        return;
    };
    let Some(rollout) = fleet::Rollout::new(app, &host) else {
        return;
    };
    if let Some(slot) = r.rollout_slot.take() {
        let key = slot.key.clone();
        if let Err(e) = rollout.release(slot) {
            // Its lease frees it in the end.
            warn!(
                error = format!("{e:#}"),
                key, "could not give the rollout slot back"
            );
        }
    }
    let rolled_back = match (&r.key, r.quarantined) {
        (Some(k), true) => Some((k.as_str(), r.run.error.as_deref().unwrap_or("rolled back"))),
        _ => None,
    };
    let applied = || {
        app.store
            .load_last_good()
            .ok()
            .flatten()
            .map(|lg| lg.desired)
    };
    if let Err(e) = rollout.publish(
        state,
        &applied,
        r.run.outcome,
        rolled_back,
        r.rollout_blocked.as_ref(),
    ) {
        warn!(
            error = format!("{e:#}"),
            "could not publish this host's fleet record"
        );
        r.run.notes.push(format!(
            "fleet: this host's record could not be published: {e:#}"
        ));
    }
}

/// What the hooks are told of a finished converge.
fn hook_env(r: &ConvergeResult) -> hooks::HookEnv {
    hooks::HookEnv {
        outcome: r.run.outcome,
        quarantined: r.quarantined,
        commit: r.key.clone().unwrap_or_default(),
        generation: r.generation.map(|g| g.to_string()).unwrap_or_default(),
        changes: r.run.changes.len(),
        drifted: r.drifted,
        host: r.run.subject.host.clone().unwrap_or_default(),
        error: r.run.what_failed().unwrap_or_default(),
    }
}

/// The one write of the agent state (the fetch record, the outcome),
/// whatever happened, and only when it changed: a converge that finds the
/// host in sync writes nothing. Once the host may have changed, a failure
/// to write it is reported but does not turn the outcome into "error before
/// any change" (exit 1).
fn save_state(app: &App, l: &mut Locked, r: &mut ConvergeResult) {
    if let Err(e) = l.save(app) {
        if r.generation.is_some() {
            note_failure(r, "could not record the agent state", e);
        } else if r.run.outcome == Outcome::Error {
            tracing::error!(error = format!("{e:#}"), "could not record the agent state");
        } else {
            r.run.fail(e);
        }
    }
}

/// Saves the stat cache when this run verified something new (the no-op
/// with every file a cache hit writes nothing). Entries stay exact
/// whatever the converge does next: any write to a file moves its stat.
fn remember_verified(app: &App, prepared: &Prepared) {
    if !prepared.cache_stale {
        return;
    }
    if let Err(e) = app.store.save_stat_cache(&prepared.verified) {
        tracing::warn!(error = format!("{e:#}"), "could not save the stat cache");
    }
}

/// Writes `last-run.json`; a failure is worth a warning, not the run.
fn record_last_run(app: &App, r: &ConvergeResult) {
    let run = crate::agent::LastRun {
        at: now(),
        outcome: r.run.outcome,
        duration_ms: r.duration_ms,
        changes: r.run.changes.len(),
        drifted: r.drifted,
        key: r.key.clone(),
        error: r.run.error.clone(),
        generation: r.generation,
        audit: r.audit,
    };
    if let Err(e) = app.store.save_last_run(&run) {
        tracing::warn!(error = format!("{e:#}"), "could not record the last run");
    }
}

/// The lock and the agent state, read once under it, with what it was
/// when read (so it is written only when it changed).
struct Locked {
    _lock: StateLock,
    state: AgentState,
    saved: AgentState,
}

impl Locked {
    fn take(app: &App) -> Result<Self> {
        let lock = app.store.lock()?;
        let state = app.store.load_state()?;
        Ok(Self {
            _lock: lock,
            saved: state.clone(),
            state,
        })
    }

    /// Writes the state if it changed.
    fn save(&mut self, app: &App) -> Result<()> {
        if self.state != self.saved {
            app.store.save_state(&self.state)?;
            self.saved = self.state.clone();
        }
        Ok(())
    }
}

fn converge_into(
    app: &App,
    req: &ConvergeRequest,
    sink: &mut dyn Sink,
    cancel: &Cancel,
    r: &mut ConvergeResult,
    held: &mut Option<Locked>,
) -> Result<()> {
    let git = req.source.repo.is_none();
    // Converging the host itself needs root: refused before anything, so
    // that failing chowns are never mistaken for a bad desired state.
    let live = std::fs::canonicalize(&req.root).is_ok_and(|r| r == std::path::Path::new("/"));
    if live && !r.audit && !nix::unistd::geteuid().is_root() {
        bail!(
            "must run as root to converge this host (uid {}): it sets owners, installs packages and starts services; nothing was changed",
            nix::unistd::geteuid()
        );
    }
    // A git fetch writes the cache in the state directory, so it runs under
    // the lock; a directory source is read first, so that an invalid repo
    // changes nothing, not even the state directory. A dry run takes no
    // lock and records nothing; an audit records its run.
    if !req.dry_run && git {
        *held = Some(Locked::take(app)?);
    }
    let purpose = match req.source.trial() {
        Some(_) => source::Purpose::Trial,
        None => source::Purpose::Apply,
    };
    let loaded = load(
        app,
        &req.source,
        purpose,
        held.as_mut().map(|h| &mut h.state),
        &mut r.run.subject,
        sink,
        cancel,
    )?;
    match loaded {
        Ok(loaded) => locked(app, req, loaded, held, sink, cancel, r),
        Err(invalid) => invalid_commit(app, req, invalid, held, sink, cancel, r),
    }
}

/// A commit of the git source that does not validate is the desired
/// state's own fault: it is quarantined, so that the runs after this one
/// hold the host at the last good state and go on healing its drift
/// instead of stopping at the same errors. This run reports them (exit 1).
#[allow(clippy::too_many_arguments)]
fn invalid_commit(
    app: &App,
    req: &ConvergeRequest,
    invalid: Invalid,
    held: &mut Option<Locked>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
    r: &mut ConvergeResult,
) -> Result<()> {
    let (Some(commit), Some(h), false) = (invalid.commit.clone(), held.as_mut(), r.audit) else {
        r.run.outcome = Outcome::Invalid;
        r.run.diagnostics = invalid.diagnostics;
        return Ok(());
    };
    if h.state.quarantine.as_ref().is_some_and(|q| q.key == commit) {
        // Quarantined already: held at the last good state, like any other
        // quarantined head (what the invalid commit declares is not used).
        let loaded = Loaded {
            desired: crate::desired::DesiredState::default(),
            source: invalid.source,
            commit: Some(commit.clone()),
            key: commit,
            fetch_failed: invalid.fetch_failed,
        };
        return locked(app, req, loaded, held, sink, cancel, r);
    }
    let first = invalid
        .diagnostics
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let reason = format!(
        "the config repo is invalid ({}; first: {first})",
        crate::words::count(invalid.diagnostics.len(), "problem")
    );
    r.key = Some(commit.clone());
    r.quarantined = Recorded {
        key: &commit,
        source: &invalid.source,
        commit: Some(&commit),
        held: false,
        trial: req.source.trial().as_deref(),
    }
    .failed(h, &reason, Blame::DesiredState);
    r.run.outcome = Outcome::Invalid;
    r.run.diagnostics = invalid.diagnostics;
    if r.quarantined {
        r.run.notes.push(format!(
            "{} is quarantined: until a new commit (or `driftless retry`), the host is held at its last good state",
            short(&commit)
        ));
    }
    Ok(())
}

/// The converge of a loaded desired state, in its stages: the root, the
/// recovery of a crashed converge, the decision (policy, pause, fleet
/// gate), what to apply, the plan (with pruning), then either the record
/// of a host already in sync (or of an audit) or the transaction and its
/// record.
#[allow(clippy::too_many_arguments)]
fn locked(
    app: &App,
    req: &ConvergeRequest,
    loaded: Loaded,
    held: &mut Option<Locked>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
    r: &mut ConvergeResult,
) -> Result<()> {
    let root = open_target(app, req, r.audit, held)?;
    let applying = !r.audit && root.is_some();
    // What a crash left unfinished is rolled back before anything else.
    if let (true, Some(root), Some(h)) = (applying, root.as_ref(), held.as_mut())
        && !recovered(app, root, h, sink, cancel, r)?
    {
        return Ok(());
    }
    let state = match held.as_ref() {
        Some(h) => h.state.clone(),
        // A dry run takes no lock: it reads the state as it is.
        None => app.store.load_state()?,
    };
    let Loaded {
        desired: loaded_desired,
        source: loaded_source,
        commit,
        key,
        fetch_failed,
    } = loaded;
    r.key = Some(key.clone());
    r.fetch_failed = fetch_failed;
    let decision = decide(app, req, &state, &key, &loaded_desired, applying, sink, r)?;
    let Some((desired, source_desc, held_at)) =
        what_to_apply(app, decision, loaded_desired, &loaded_source, sink, r)?
    else {
        return Ok(());
    };
    // What the repo no longer declares is put back (or removed), in the
    // same transaction.
    let inventory = app.store.load_inventory()?;
    let prepared = match prepare(
        app,
        desired,
        &inventory,
        source_desc,
        root.as_ref(),
        sink,
        cancel,
    )? {
        Ok(p) => p,
        Err(failed) => {
            failed.fill(&mut r.run);
            return Ok(());
        }
    };
    // What this run verified, for the next one; under the lock only (a dry
    // run writes nothing).
    if held.is_some() {
        remember_verified(app, &prepared);
    }
    // Changes found for a state that was applied already are drift (made by
    // hand, or by something else); in an audit everything pending is.
    let applied_before = held_at || state.last_good.as_ref().is_some_and(|g| g.key == key);
    if r.audit || applied_before {
        count_drift(&prepared, r);
    }
    let trial = req.source.trial();
    let subject = Recorded {
        key: &key,
        source: &loaded_source,
        commit: commit.as_deref(),
        held: held_at,
        trial: trial.as_deref(),
    };
    let outcome = Stage {
        app,
        subject: &subject,
        prepared: &prepared,
        held_at,
    };
    if prepared.plan.is_empty() || r.audit {
        return outcome.without_changes(root.as_ref(), held.as_mut(), inventory, r);
    }
    let Some(root) = root else {
        bail!("the root directory {} is missing", req.root.display())
    };
    let Some(h) = held.as_mut() else {
        bail!("internal error: a converge that changes the host must hold the state lock");
    };
    outcome.transact(req, &root, h, inventory, sink, cancel, r)
}

/// Opens the root of a converge (created when a real converge is told
/// to), and takes the state lock if the run did not take it already (a
/// directory source is read before it). `None`: a root that does not
/// exist, for a dry run.
fn open_target(
    app: &App,
    req: &ConvergeRequest,
    dry: bool,
    held: &mut Option<Locked>,
) -> Result<Option<crate::system::fsroot::FsRoot>> {
    if !dry && !req.create_root && !req.root.exists() {
        bail!(
            "the root {} does not exist; nothing was changed. Pass --create-root to converge into a new tree",
            absolute(&req.root).display()
        );
    }
    let root = converge::open_root(&req.root, !dry)
        .with_context(|| format!("cannot use {} as the root", absolute(&req.root).display()))?;
    if held.is_none() && !req.dry_run {
        *held = Some(Locked::take(app)?);
    }
    Ok(root)
}

/// Rolls back what a crash left unfinished. `false`: that restore failed,
/// and the run ends here.
fn recovered(
    app: &App,
    root: &crate::system::fsroot::FsRoot,
    h: &mut Locked,
    sink: &mut dyn Sink,
    cancel: &Cancel,
    r: &mut ConvergeResult,
) -> Result<bool> {
    let recovery = recover_into(app, root, &mut h.state, sink, cancel)?;
    if recovery.saved {
        h.saved = h.state.clone();
    }
    r.run.notes.extend(recovery.notes);
    if let Some(failed) = recovery.failed {
        r.run.outcome = Outcome::RollbackFailed;
        r.run.error = Some(failed);
        return Ok(false);
    }
    Ok(true)
}

/// What the policy says of the loaded key: apply it, hold at the last good
/// state (quarantined, or the fleet's rollout gate says wait), or nothing
/// (paused, pinned). `--force` overrides a pause; a trial on one host and
/// `--ignore-rollout` do not ask the fleet.
#[allow(clippy::too_many_arguments)]
fn decide(
    app: &App,
    req: &ConvergeRequest,
    state: &AgentState,
    key: &str,
    loaded: &crate::desired::DesiredState,
    applying: bool,
    sink: &mut dyn Sink,
    r: &mut ConvergeResult,
) -> Result<Decision> {
    // A quarantined head is not applied again: hold at the last good state.
    // A trial is held by a pause only.
    let trial = req.source.trial();
    let decide = |state: &AgentState| match trial {
        Some(_) => policy::decide_trial(state, applying),
        None => policy::decide(state, key, applying),
    };
    let mut decision = decide(state);
    if let (Decision::Paused { why }, true) = (&decision, req.force) {
        sink.event(&Event::PauseOverridden { why: why.clone() });
        r.run
            .notes
            .push(format!("--force: converged although {why}"));
        let unpaused = AgentState {
            paused: None,
            ..state.clone()
        };
        decision = decide(&unpaused);
    }
    // A new commit waits for the fleet's rollout gate, if there is a fleet;
    // a trial on one host is the operator's own canary.
    if !matches!(decision, Decision::Apply) || !applying {
        return Ok(decision);
    }
    if let (Some(t), Some(_)) = (&trial, &app.settings.fleet) {
        r.run.notes.push(format!(
            "a trial of {t} on this host: the fleet's rollout gate was not asked"
        ));
    } else if req.ignore_rollout {
        if app.settings.fleet.is_some() {
            warn!(
                key,
                "--ignore-rollout: the fleet's rollout gate is not asked for this commit"
            );
            r.run
                .notes
                .push("--ignore-rollout: the fleet's rollout gate was not asked".to_owned());
        }
    } else if let Some(b) = fleet::gated(app, state, key, loaded, Some(&mut r.rollout_slot))? {
        warn!(reason = b.reason, "{}", b.why);
        decision = Decision::HoldAtLastGood { why: b.why.clone() };
        r.rollout_blocked = Some(b);
    }
    Ok(decision)
}

/// The desired state a decision applies, where it came from, and whether
/// the host is held at its last good state; `None` when nothing is
/// applied (the run's outcome and reason are set).
fn what_to_apply(
    app: &App,
    decision: Decision,
    loaded: crate::desired::DesiredState,
    loaded_source: &str,
    sink: &mut dyn Sink,
    r: &mut ConvergeResult,
) -> Result<Option<(crate::desired::DesiredState, String, bool)>> {
    Ok(match super::plan::choose(app, decision)? {
        Chosen::Loaded => Some((loaded, loaded_source.to_owned(), false)),
        Chosen::Nothing { why } => {
            sink.event(&Event::Held {
                why: why.clone(),
                last_good: None,
            });
            r.run.outcome = Outcome::Held;
            r.held = Some(why.clone());
            r.run.error = Some(why);
            None
        }
        Chosen::NoLastGood { why } => {
            sink.event(&Event::Held {
                why: why.clone(),
                last_good: None,
            });
            r.held = Some(why.clone());
            r.run.outcome = Outcome::Held;
            r.run.error = Some(format!(
                "{why}; there is no last good state yet, so nothing is applied"
            ));
            None
        }
        Chosen::LastGood { last_good, why } => {
            // Never claim a last good state that is not there.
            let why = format!(
                "{why}; the host is held at the last good state {}",
                short(&last_good.key)
            );
            r.run.notes.push(why.clone());
            sink.event(&Event::Held {
                why: why.clone(),
                last_good: Some(last_good.key.clone()),
            });
            r.held = Some(why);
            let source = format!("last good {} ({})", short(&last_good.key), last_good.source);
            Some((last_good.desired, source, true))
        }
    })
}

/// Counts (and names the first of) the resources that differ from a
/// desired state already applied: drift.
fn count_drift(prepared: &Prepared, r: &mut ConvergeResult) {
    let differing = crate::plan::differing(&prepared.plan.changes);
    r.drifted = differing.len();
    r.drifted_resources = differing
        .iter()
        .take(DRIFT_NAMED)
        .map(ToString::to_string)
        .collect();
}

/// The end of a converge whose plan is made: what is recorded of it.
struct Stage<'s> {
    app: &'s App,
    subject: &'s Recorded<'s>,
    prepared: &'s Prepared,
    /// Held at the last good state: the outcome is "held" whatever it did.
    held_at: bool,
}

impl Stage<'_> {
    fn or_held(&self, normal: Outcome) -> Outcome {
        if self.held_at { Outcome::Held } else { normal }
    }

    /// Nothing to change (in sync), or an audit or dry run that only
    /// reports: a good end is recorded, except for an audit, which makes
    /// nothing the last good state.
    fn without_changes(
        &self,
        root: Option<&crate::system::fsroot::FsRoot>,
        held: Option<&mut Locked>,
        inventory: crate::store::inventory::Inventory,
        r: &mut ConvergeResult,
    ) -> Result<()> {
        let plan = &self.prepared.plan;
        if !plan.is_empty() {
            r.run.outcome = self.or_held(Outcome::ChangesPending);
            r.run.notes.extend(plan.preview_notes.iter().cloned());
            r.run.notes.extend(plan.notes.iter().cloned());
            r.run.changes = plan.changes.clone();
            return Ok(());
        }
        r.run.outcome = self.or_held(Outcome::InSync);
        r.run.notes.extend(plan.notes.iter().cloned());
        if let (false, Some(h)) = (r.audit, held) {
            self.subject
                .record(self.app, h, self.prepared, Ended::Good)?;
            if let Some(root) = root {
                let new = prune::capture(&self.app.store, root, &inventory, self.prepared)?;
                if let Err(e) = prune::record(
                    &self.app.store,
                    inventory,
                    new,
                    &self.prepared.desired,
                    None,
                ) {
                    note_failure(r, "could not record the inventory", e);
                }
            }
        }
        Ok(())
    }

    /// Applies the plan as a transaction and records how it ended: the
    /// new generation and the last good state, or the rollback and, when
    /// the desired state is to blame, its quarantine.
    #[allow(clippy::too_many_arguments)]
    fn transact(
        &self,
        req: &ConvergeRequest,
        root: &crate::system::fsroot::FsRoot,
        h: &mut Locked,
        inventory: crate::store::inventory::Inventory,
        sink: &mut dyn Sink,
        cancel: &Cancel,
        r: &mut ConvergeResult,
    ) -> Result<()> {
        let (app, prepared) = (self.app, self.prepared);
        // How what is managed for the first time was, before it changes.
        let new_entries = prune::capture(&app.store, root, &inventory, prepared)?;
        let run = converge::RunInfo {
            key: self.subject.key,
            healed: if r.audit { 0 } else { r.drifted },
            started_by: &req.started_by,
        };
        match converge::transact(&app.engine(root), prepared, &run, sink, cancel)? {
            Transacted::Applied {
                generation,
                changes,
                dnf_transactions,
            } => {
                r.generation = Some(generation);
                r.run.notes.extend(prepared.plan.notes.iter().cloned());
                if let Err(e) = prune::record(
                    &app.store,
                    inventory,
                    new_entries,
                    &prepared.desired,
                    Some(generation),
                ) {
                    note_failure(r, "could not record the inventory", e);
                }
                r.run.outcome = self.or_held(Outcome::Changed);
                r.run.changes = changes;
                r.dnf_transactions = dnf_transactions;
                if let Err(e) = self.subject.record(app, h, prepared, Ended::Good) {
                    note_failure(r, "could not record the last good state", e);
                }
            }
            Transacted::RolledBack {
                generation,
                error,
                blame,
            } => {
                r.generation = Some(generation);
                r.run.outcome = Outcome::RolledBack;
                r.run.error = Some(format!("{error:#}"));
                if cancel.is_cancelled() {
                    // Like a crash, a stop request says nothing about the commit.
                    r.run.notes.push(
                        "stopped by a signal: the converge was rolled back; the head is not quarantined"
                            .to_owned(),
                    );
                }
                let reason = format!("generation {generation} rolled back: {error:#}");
                r.quarantined = self.subject.failed(h, &reason, blame);
            }
            Transacted::RestoreFailed {
                generation,
                error,
                blame,
                restore_errors,
                differences,
            } => {
                r.generation = Some(generation);
                r.run.outcome = Outcome::RollbackFailed;
                r.run.error = Some(format!(
                    "{error:#}; still different from before: {}",
                    differences.join("; ")
                ));
                r.restore_errors = restore_errors.iter().map(|e| format!("{e:#}")).collect();
                let reason =
                    format!("generation {generation} failed and could not be restored: {error:#}");
                r.quarantined = self.subject.failed(h, &reason, blame);
            }
        }
        Ok(())
    }
}

/// Records the end of a converge of the loaded key in the agent state.
struct Recorded<'a> {
    key: &'a str,
    source: &'a str,
    commit: Option<&'a str>,
    held: bool,
    /// A trial (`branch feature`): it pins the host, and touches neither
    /// the last good state nor the applied commit.
    trial: Option<&'a str>,
}

impl Recorded<'_> {
    fn converged<'b>(&'b self, now: &'b str) -> policy::Converged<'b> {
        policy::Converged {
            key: self.key,
            source: self.source,
            commit: self.commit,
            held: self.held,
            now,
        }
    }

    /// A good end: last good state, applied commit, end of a streak. The
    /// state changes only once what it points at is stored.
    fn record(
        &self,
        app: &App,
        h: &mut Locked,
        prepared: &Prepared,
        ended: Ended<'_>,
    ) -> Result<()> {
        let now = now();
        if let Some(what) = self.trial {
            if matches!(ended, Ended::Good) {
                policy::pin_trial(
                    &mut h.state,
                    &format!("{what} at {}", short(self.key)),
                    self.key,
                    &now,
                );
            }
            return Ok(());
        }
        let mut next = h.state.clone();
        let effects = policy::record(&mut next, &self.converged(&now), ended);
        if effects.save_last_good {
            app.store
                .save_last_good(self.key, self.source, &prepared.desired)?;
        }
        h.state = next;
        if let (true, Some(git), Some(commit)) =
            (effects.mark_applied, &app.settings.source, self.commit)
        {
            let id = super::load::source_id(git);
            h.state.floors.insert(id.clone(), commit.to_owned());
            h.state.applied_source = Some(id);
        }
        if effects.mark_applied
            && let Some(commit) = self.commit
        {
            // The state file is authoritative; the ref follows it.
            h.save(app)?;
            source::mark_applied(&app.store.git_cache(), commit)?;
        }
        Ok(())
    }

    /// A failed end: quarantine when the desired state is to blame.
    /// Whether it was quarantined now.
    fn failed(&self, h: &mut Locked, reason: &str, blame: Blame) -> bool {
        if self.trial.is_some() {
            // Only the configured branch's head is ever quarantined.
            return false;
        }
        let before = h.state.quarantine.clone();
        let now = now();
        let effects = policy::record(
            &mut h.state,
            &self.converged(&now),
            Ended::Failed { reason, blame },
        );
        if effects.spared_last_good {
            tracing::warn!(
                key = self.key,
                reason,
                "the last good state failed to converge; it is not quarantined"
            );
        } else if h.state.quarantine != before {
            tracing::warn!(
                key = self.key,
                reason,
                "quarantining the desired state: it is not applied again until the source moves on or `driftless retry`"
            );
            return true;
        }
        false
    }
}

fn note_failure(r: &mut ConvergeResult, what: &str, e: anyhow::Error) {
    tracing::error!(error = format!("{e:#}"), "{what}");
    r.run.notes.push(format!("{what}: {e:#}"));
}
