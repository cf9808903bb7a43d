//! `converge`: recover, decide (apply, hold at last good, pinned), plan
//! and apply as a transaction, and record the result.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::context::{App, Run, SourceRequest, absolute};
use super::fleet;
use super::hooks;
use super::load::{FetchFailed, Invalid, LoadRequest, Loaded, load};
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
    /// Run the health checks even when the host is in sync (the first
    /// converge after a reboot driftless asked for); a failure is an
    /// error, with nothing to roll back.
    pub check_in_sync: bool,
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
    let mut run = Converging::start(app, req, sink, cancel);
    if let Err(e) = run.stages() {
        run.r.run.fail(e);
    }
    run.finish(started)
}

/// One converge under way: what it was asked, the state lock and the agent
/// state read under it, and what it found so far. Its stages fill the
/// result in; [`Converging::finish`] records it, whichever stage it ended
/// at.
struct Converging<'a> {
    app: &'a App,
    req: &'a ConvergeRequest,
    sink: &'a mut dyn Sink,
    cancel: &'a Cancel,
    /// Taken before a git fetch (it writes the cache), else before the
    /// root is opened; never by a dry run.
    locked: Option<Locked>,
    r: ConvergeResult,
}

impl<'a> Converging<'a> {
    fn start(
        app: &'a App,
        req: &'a ConvergeRequest,
        sink: &'a mut dyn Sink,
        cancel: &'a Cancel,
    ) -> Self {
        let mut r = ConvergeResult {
            audit: req.dry_run || app.settings.mode == Mode::Audit,
            started_by: req.started_by.clone(),
            ..ConvergeResult::default()
        };
        let root = absolute(&req.root).display().to_string();
        r.run.root = Some(root.clone());
        sink.event(&Event::Started {
            root,
            audit: r.audit,
        });
        Self {
            app,
            req,
            sink,
            cancel,
            locked: None,
            r,
        }
    }

    /// The stages of a converge: refuse what cannot be done, load the
    /// desired state (an invalid commit is quarantined), then converge it.
    fn stages(&mut self) -> Result<()> {
        let (app, req) = (self.app, self.req);
        let git = req.source.repo.is_none();
        // Converging the host itself needs root: refused before anything, so
        // that failing chowns are never mistaken for a bad desired state.
        let live = std::fs::canonicalize(&req.root).is_ok_and(|r| r == std::path::Path::new("/"));
        if live && !self.r.audit && !nix::unistd::geteuid().is_root() {
            bail!(
                "must run as root to converge this host (uid {}): it sets owners, installs packages and starts services; nothing was changed",
                nix::unistd::geteuid()
            );
        }
        // A git fetch writes the cache in the state directory, so it runs
        // under the lock; a directory source is read first, so that an
        // invalid repo changes nothing, not even the state directory. A dry
        // run takes no lock and records nothing; an audit records its run.
        if !req.dry_run && git {
            self.locked = Some(Locked::take(app)?);
        }
        let purpose = match req.source.trial() {
            Some(_) => source::Purpose::Trial,
            None => source::Purpose::Apply,
        };
        let loaded = load(
            app,
            &LoadRequest {
                source: &req.source,
                purpose,
                root: &req.root,
            },
            self.locked.as_mut().map(|h| &mut h.state),
            &mut self.r.run.subject,
            self.sink,
            self.cancel,
        )?;
        match loaded {
            Ok(loaded) => self.loaded(loaded),
            Err(invalid) => self.invalid_commit(invalid),
        }
    }

    /// A commit of the git source that does not validate is the desired
    /// state's own fault: it is quarantined, so that the runs after this
    /// one hold the host at the last good state and go on healing its
    /// drift instead of stopping at the same errors. This run reports them
    /// (exit 1).
    fn invalid_commit(&mut self, invalid: Invalid) -> Result<()> {
        let r = &mut self.r;
        let (Some(commit), Some(h), false) =
            (invalid.commit.clone(), self.locked.as_mut(), r.audit)
        else {
            r.run.outcome = Outcome::Invalid;
            r.run.diagnostics = invalid.diagnostics;
            return Ok(());
        };
        if h.state.quarantine.as_ref().is_some_and(|q| q.key == commit) {
            // Quarantined already: held at the last good state, like any
            // other quarantined head (what the invalid commit declares is
            // not used).
            let loaded = Loaded {
                desired: crate::desired::DesiredState::default(),
                source: invalid.source,
                commit: Some(commit.clone()),
                key: commit,
                fetch_failed: invalid.fetch_failed,
                to_cache: None,
            };
            return self.loaded(loaded);
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
            trial: self.req.source.trial().as_deref(),
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

    /// The converge of a loaded desired state, in its stages: the root,
    /// the recovery of a crashed converge, the decision (policy, pause,
    /// fleet gate), what to apply, the plan (with pruning), then either
    /// the record of a host already in sync (or of an audit) or the
    /// transaction and its record.
    fn loaded(&mut self, loaded: Loaded) -> Result<()> {
        let (app, req) = (self.app, self.req);
        let root = self.open_target()?;
        let applying = !self.r.audit && root.is_some();
        // What a crash left unfinished is rolled back before anything else.
        if let (true, Some(root)) = (applying, root.as_ref())
            && !self.recovered(root)?
        {
            return Ok(());
        }
        let state = match self.locked.as_ref() {
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
            to_cache,
        } = loaded;
        if let (Some(entry), Some(_)) = (to_cache, self.locked.as_ref()) {
            entry.save(app, &loaded_desired);
        }
        self.r.key = Some(key.clone());
        self.r.fetch_failed = fetch_failed;
        let decision = self.decide(&state, &key, &loaded_desired, applying)?;
        let Some((desired, source_desc, held_at)) =
            self.what_to_apply(decision, loaded_desired, &loaded_source)?
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
            self.sink,
            self.cancel,
        )? {
            Ok(p) => p,
            Err(failed) => {
                failed.fill(&mut self.r.run);
                return Ok(());
            }
        };
        self.remember_verified(&prepared);
        // Changes found for a state that was applied already are drift
        // (made by hand, or by something else); in an audit everything
        // pending is.
        let applied_before = held_at || state.last_good.as_ref().is_some_and(|g| g.key == key);
        if self.r.audit || applied_before {
            self.count_drift(&prepared);
        }
        let trial = req.source.trial();
        let subject = Recorded {
            key: &key,
            source: &loaded_source,
            commit: commit.as_deref(),
            held: held_at,
            trial: trial.as_deref(),
        };
        let stage = Stage {
            subject: &subject,
            prepared: &prepared,
            held_at,
        };
        if prepared.plan.is_empty() || self.r.audit {
            return self.without_changes(&stage, root.as_ref(), inventory);
        }
        let Some(root) = root else {
            bail!("the root directory {} is missing", req.root.display())
        };
        self.transact(&stage, &root, inventory)
    }

    /// Opens the root of a converge (created when a real converge is told
    /// to), and takes the state lock if the run did not take it already (a
    /// directory source is read before it). `None`: a root that does not
    /// exist, for a dry run.
    fn open_target(&mut self) -> Result<Option<crate::system::fsroot::FsRoot>> {
        let (req, dry) = (self.req, self.r.audit);
        if !dry && !req.create_root && !req.root.exists() {
            bail!(
                "the root {} does not exist; nothing was changed. Pass --create-root to converge into a new tree",
                absolute(&req.root).display()
            );
        }
        let root = converge::open_root(&req.root, !dry)
            .with_context(|| format!("cannot use {} as the root", absolute(&req.root).display()))?;
        if self.locked.is_none() && !req.dry_run {
            self.locked = Some(Locked::take(self.app)?);
        }
        Ok(root)
    }

    /// Rolls back what a crash left unfinished. `false`: that restore
    /// failed, and the run ends here.
    fn recovered(&mut self, root: &crate::system::fsroot::FsRoot) -> Result<bool> {
        let Some(h) = self.locked.as_mut() else {
            bail!("internal error: recovering a crashed converge needs the state lock");
        };
        let recovery = recover_into(self.app, root, &mut h.state, self.sink, self.cancel)?;
        if recovery.saved {
            h.saved = h.state.clone();
        }
        self.r.run.notes.extend(recovery.notes);
        if let Some(failed) = recovery.failed {
            self.r.run.outcome = Outcome::RollbackFailed;
            self.r.run.error = Some(failed);
            return Ok(false);
        }
        Ok(true)
    }

    /// What the policy says of the loaded key: apply it, hold at the last
    /// good state (quarantined, or the fleet's rollout gate says wait), or
    /// nothing (paused, pinned). `--force` overrides a pause; a trial on
    /// one host and `--ignore-rollout` do not ask the fleet.
    fn decide(
        &mut self,
        state: &AgentState,
        key: &str,
        loaded: &crate::desired::DesiredState,
        applying: bool,
    ) -> Result<Decision> {
        let (app, req, r) = (self.app, self.req, &mut self.r);
        // A quarantined head is not applied again: hold at the last good
        // state. A trial is held by a pause only.
        let trial = req.source.trial();
        let decide = |state: &AgentState| match trial {
            Some(_) => policy::decide_trial(state, applying),
            None => policy::decide(state, key, applying),
        };
        let mut decision = decide(state);
        if let (Decision::Paused { why }, true) = (&decision, req.force) {
            self.sink
                .event(&Event::PauseOverridden { why: why.clone() });
            r.run
                .notes
                .push(format!("--force: converged although {why}"));
            let unpaused = AgentState {
                paused: None,
                ..state.clone()
            };
            decision = decide(&unpaused);
        }
        // A new commit waits for the fleet's rollout gate, if there is a
        // fleet; a trial on one host is the operator's own canary.
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
        if matches!(decision, Decision::Apply) {
            fleet::announce(app, state, &loaded.host, key);
        }
        Ok(decision)
    }

    /// The desired state a decision applies, where it came from, and
    /// whether the host is held at its last good state; `None` when
    /// nothing is applied (the run's outcome and reason are set).
    fn what_to_apply(
        &mut self,
        decision: Decision,
        loaded: crate::desired::DesiredState,
        loaded_source: &str,
    ) -> Result<Option<(crate::desired::DesiredState, String, bool)>> {
        let r = &mut self.r;
        Ok(match super::plan::choose(self.app, decision)? {
            Chosen::Loaded => Some((loaded, loaded_source.to_owned(), false)),
            Chosen::Nothing { why } => {
                self.sink.event(&Event::Held {
                    why: why.clone(),
                    last_good: None,
                });
                r.run.outcome = Outcome::Held;
                r.held = Some(why.clone());
                r.run.error = Some(why);
                None
            }
            Chosen::NoLastGood { why } => {
                self.sink.event(&Event::Held {
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
                self.sink.event(&Event::Held {
                    why: why.clone(),
                    last_good: Some(last_good.key.clone()),
                });
                r.held = Some(why);
                let source = format!("last good {} ({})", short(&last_good.key), last_good.source);
                Some((last_good.desired, source, true))
            }
        })
    }

    /// Saves the stat cache when this run verified something new (the
    /// no-op with every file a cache hit writes nothing), under the lock
    /// only (a dry run writes nothing). Entries stay exact whatever the
    /// converge does next: any write to a file moves its stat.
    fn remember_verified(&mut self, prepared: &Prepared) {
        if self.locked.is_none() || !prepared.cache_stale {
            return;
        }
        let written = self.app.store.save_stat_cache(&prepared.verified);
        self.r.recorded(Record::StatCache, written);
    }

    /// Counts (and names the first of) the resources that differ from a
    /// desired state already applied: drift.
    fn count_drift(&mut self, prepared: &Prepared) {
        let differing = crate::plan::differing(&prepared.plan.changes);
        self.r.drifted = differing.len();
        self.r.drifted_resources = differing
            .iter()
            .take(DRIFT_NAMED)
            .map(ToString::to_string)
            .collect();
    }

    /// Nothing to change (in sync), or an audit or dry run that only
    /// reports: a good end is recorded, except for an audit, which makes
    /// nothing the last good state.
    fn without_changes(
        &mut self,
        stage: &Stage<'_>,
        root: Option<&crate::system::fsroot::FsRoot>,
        inventory: crate::store::inventory::Inventory,
    ) -> Result<()> {
        let (app, r) = (self.app, &mut self.r);
        let plan = &stage.prepared.plan;
        if !plan.is_empty() {
            r.run.outcome = stage.or_held(Outcome::ChangesPending);
            r.run.notes.extend(plan.preview_notes.iter().cloned());
            r.run.notes.extend(plan.notes.iter().cloned());
            r.run.changes = plan.changes.clone();
            return Ok(());
        }
        r.run.outcome = stage.or_held(Outcome::InSync);
        r.run.notes.extend(plan.notes.iter().cloned());
        if let (true, false, Some(root)) = (self.req.check_in_sync, r.audit, root)
            && r.run.outcome == Outcome::InSync
            && let Err(e) = converge::check_health(
                &app.engine(root),
                &stage.prepared.desired,
                self.sink,
                self.cancel,
            )
        {
            r.run.outcome = Outcome::Error;
            r.run.error = Some(format!("after the reboot: {e:#}"));
            return Ok(());
        }
        let (false, Some(h)) = (r.audit, self.locked.as_mut()) else {
            return Ok(());
        };
        let written = stage.subject.record(app, h, stage.prepared, Ended::Good);
        if !r.recorded(Record::LastGood, written) {
            return Ok(());
        }
        if let Some(root) = root {
            let new = prune::capture(&app.store, root, &inventory, stage.prepared)?;
            let written = prune::record(&app.store, inventory, new, &stage.prepared.desired, None);
            r.recorded(Record::Inventory, written);
        }
        Ok(())
    }

    /// Applies the plan as a transaction and records how it ended: the
    /// new generation and the last good state, or the rollback and, when
    /// the desired state is to blame, its quarantine.
    fn transact(
        &mut self,
        stage: &Stage<'_>,
        root: &crate::system::fsroot::FsRoot,
        inventory: crate::store::inventory::Inventory,
    ) -> Result<()> {
        let (app, prepared, r) = (self.app, stage.prepared, &mut self.r);
        let Some(h) = self.locked.as_mut() else {
            bail!("internal error: a converge that changes the host must hold the state lock");
        };
        // How what is managed for the first time was, before it changes.
        let new_entries = prune::capture(&app.store, root, &inventory, prepared)?;
        let run = converge::RunInfo {
            key: stage.subject.key,
            healed: if r.audit { 0 } else { r.drifted },
            started_by: &self.req.started_by,
        };
        match converge::transact(&app.engine(root), prepared, &run, self.sink, self.cancel)? {
            Transacted::Applied {
                generation,
                changes,
                dnf_transactions,
            } => {
                r.generation = Some(generation);
                r.run.notes.extend(prepared.plan.notes.iter().cloned());
                let written = prune::record(
                    &app.store,
                    inventory,
                    new_entries,
                    &prepared.desired,
                    Some(generation),
                );
                r.recorded(Record::Inventory, written);
                r.run.outcome = stage.or_held(Outcome::Changed);
                r.run.changes = changes;
                r.dnf_transactions = dnf_transactions;
                let written = stage.subject.record(app, h, prepared, Ended::Good);
                r.recorded(Record::LastGood, written);
            }
            Transacted::RolledBack {
                generation,
                error,
                blame,
            } => {
                r.generation = Some(generation);
                r.run.outcome = Outcome::RolledBack;
                r.run.error = Some(format!("{error:#}"));
                if self.cancel.is_cancelled() {
                    // Like a crash, a stop request says nothing about the commit.
                    r.run.notes.push(
                        "stopped by a signal: the converge was rolled back; the head is not quarantined"
                            .to_owned(),
                    );
                }
                let reason = format!("generation {generation} rolled back: {error:#}");
                r.quarantined = stage.subject.failed(h, &reason, blame);
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
                r.quarantined = stage.subject.failed(h, &reason, blame);
            }
        }
        Ok(())
    }

    /// Records the run, whichever stage it ended at: the agent state, the
    /// fleet record, the last run; then the last event and the hooks.
    fn finish(mut self, started: Instant) -> ConvergeResult {
        let (app, req) = (self.app, self.req);
        self.r.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(l) = self.locked.as_mut() {
            let written = l.save(app);
            self.r.recorded(Record::AgentState, written);
            if !self.r.audit {
                self.r.tell_the_fleet(app, &l.state);
            }
        }
        // What this run found, changed or not, for `status`; a run that did
        // not get to the host (another one held the lock, the fetch failed)
        // leaves the record of the one that did, except that an invalid
        // repo is news.
        if !req.dry_run && (self.locked.is_some() || self.r.run.outcome == Outcome::Invalid) {
            let written = app.store.save_last_run(&self.r.last_run());
            self.r.recorded(Record::LastRun, written);
        }
        // Hooks may run `driftless` themselves: the lock is let go first.
        drop(self.locked.take());
        let r = self.r;
        self.sink.event(&Event::Finished {
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
            hooks::run_hooks(&app.settings.hooks, &r.hook_env());
        }
        r
    }
}

/// What a converge writes to the state directory, each with what a failure
/// to write it means ([`ConvergeResult::recorded`]).
#[derive(Clone, Copy, Debug)]
enum Record {
    /// The agent state: the fetch record, the quarantine, the floors.
    AgentState,
    /// The last good state and the applied commit.
    LastGood,
    /// What driftless manages and how each thing was before (pruning).
    Inventory,
    /// The summary `status` shows.
    LastRun,
    /// The stat cache of files verified.
    StatCache,
}

impl Record {
    fn what(self) -> &'static str {
        match self {
            Record::AgentState => "could not record the agent state",
            Record::LastGood => "could not record the last good state",
            Record::Inventory => "could not record the inventory",
            Record::LastRun => "could not record the last run",
            Record::StatCache => "could not save the stat cache",
        }
    }

    /// A summary or a cache: the next run does without it (it verifies
    /// again; `status` shows the run before).
    fn advisory(self) -> bool {
        match self {
            Record::LastRun | Record::StatCache => true,
            Record::AgentState | Record::LastGood | Record::Inventory => false,
        }
    }
}

impl ConvergeResult {
    /// The one failure policy for what a converge writes to the state
    /// directory. An advisory record is a warning. Any other fails the run
    /// while the host has not changed (exit 1: nothing was changed, the
    /// next run tries again); once it may have (a generation exists), the
    /// outcome stays what happened to the host, and the failure is an
    /// error in the journal and a note in the result. A run that failed
    /// already keeps its first error. Whether it was written.
    fn recorded(&mut self, record: Record, written: Result<()>) -> bool {
        let Err(e) = written else {
            return true;
        };
        let what = record.what();
        if record.advisory() {
            warn!(error = format!("{e:#}"), "{what}");
        } else if self.generation.is_some() {
            tracing::error!(error = format!("{e:#}"), "{what}");
            self.run.notes.push(format!("{what}: {e:#}"));
        } else if self.run.outcome == Outcome::Error {
            tracing::error!(error = format!("{e:#}"), "{what}");
        } else {
            self.run.fail(e.context(what));
        }
        false
    }

    /// Gives back the rollout slot and publishes this host's record.
    fn tell_the_fleet(&mut self, app: &App, state: &AgentState) {
        let Some(host) = self.run.subject.host.clone() else {
            return;
        };
        let Some(rollout) = fleet::Rollout::new(app, &host) else {
            return;
        };
        if let Some(slot) = self.rollout_slot.take() {
            let key = slot.key.clone();
            if let Err(e) = rollout.release(slot) {
                // Its lease frees it in the end.
                warn!(
                    error = format!("{e:#}"),
                    key, "could not give the rollout slot back"
                );
            }
        }
        let rolled_back = match (&self.key, self.quarantined) {
            (Some(k), true) => Some((
                k.as_str(),
                self.run.error.as_deref().unwrap_or("rolled back"),
            )),
            _ => None,
        };
        let applied = || {
            app.store
                .load_last_good()
                .ok()
                .flatten()
                .map(|lg| lg.desired)
        };
        let run = fleet::RunSummary {
            outcome: self.run.outcome,
            rolled_back,
            blocked: self.rollout_blocked.as_ref(),
            drifted: self.drifted,
            drifted_resources: &self.drifted_resources,
            error: self.run.error.as_deref(),
        };
        if let Err(e) = rollout.publish(state, &applied, &run) {
            warn!(
                error = format!("{e:#}"),
                "could not publish this host's fleet record"
            );
            self.run.notes.push(format!(
                "fleet: this host's record could not be published: {e:#}"
            ));
        }
    }

    /// What the hooks are told of a finished converge.
    fn hook_env(&self) -> hooks::HookEnv {
        hooks::HookEnv {
            outcome: self.run.outcome,
            quarantined: self.quarantined,
            commit: self.key.clone().unwrap_or_default(),
            generation: self.generation.map(|g| g.to_string()).unwrap_or_default(),
            changes: self.run.changes.len(),
            drifted: self.drifted,
            host: self.run.subject.host.clone().unwrap_or_default(),
            error: self.run.what_failed().unwrap_or_default(),
        }
    }

    /// The summary of this run that `status` shows.
    fn last_run(&self) -> crate::agent::LastRun {
        crate::agent::LastRun {
            at: now(),
            outcome: self.run.outcome,
            duration_ms: self.duration_ms,
            changes: self.run.changes.len(),
            drifted: self.drifted,
            key: self.key.clone(),
            error: self.run.error.clone(),
            generation: self.generation,
            audit: self.audit,
        }
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

    /// Writes the state if it changed: a converge that finds the host in
    /// sync writes nothing.
    fn save(&mut self, app: &App) -> Result<()> {
        if self.state != self.saved {
            app.store.save_state(&self.state)?;
            self.saved = self.state.clone();
        }
        Ok(())
    }
}

/// What the stages after the plan know of it.
struct Stage<'s> {
    subject: &'s Recorded<'s>,
    prepared: &'s Prepared,
    /// Held at the last good state: the outcome is "held" whatever it did.
    held_at: bool,
}

impl Stage<'_> {
    fn or_held(&self, normal: Outcome) -> Outcome {
        if self.held_at { Outcome::Held } else { normal }
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
