//! The fleet's part of a converge, with `[fleet]` in the agent config: the
//! rollout gate before a new commit, a rollout slot while applying it
//! (`max_parallel`), and this host's record after every run, with its
//! inventory; plus `driftless fleet status`, `fleet halt`, `fleet resume`
//! and `fleet nudge` (`fleet wait` is [`super::fleet_wait`]'s).
//!
//! Fail safe: when etcd cannot be asked, no new commit is applied; the
//! host keeps healing drift towards the commit it runs.

use std::cell::Cell;
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::context::App;
use crate::agent::AgentState;
use crate::config::FleetSettings;
use crate::desired::DesiredState;
use crate::desired::fleet::FleetPolicy;
use crate::fleet::etcd::Etcd;
use crate::fleet::gate::{self, Gate};
use crate::fleet::reboot::{HALTS, RebootHalt, RebootSlot, Reboots, SLOTS};
use crate::fleet::record::{
    self, Drift, HostRecord, Member, NudgeValue, ROLLED_BACK_COMMITS_KEPT, Rollback,
};
use crate::outcome::Outcome;

/// Why a new commit is not applied now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// One word, for metrics (`driftless_rollout_blocked{reason}`): `soak`,
    /// `failed`, `halt`, `window`, `parallel` or `etcd_unreachable`.
    pub reason: String,
    /// In words.
    pub why: String,
}

/// The fleet-wide stop, as stored under `<prefix>/halt`. Whatever the
/// key holds halts the fleet: a value that is not this JSON (an
/// `etcdctl put <prefix>/halt 'INC-42: stop'`) is its own reason.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Halt {
    /// Why, as given to `fleet halt`.
    pub reason: String,
    /// When (RFC 3339); empty when the key was written by hand.
    pub at: String,
}

/// Longest reason taken from a hand-written halt value.
const HALT_REASON_MAX: usize = 200;

impl Halt {
    /// The halt a value of the halt key stands for: its JSON, else the
    /// value itself as the reason.
    fn read(value: &[u8]) -> Halt {
        serde_json::from_slice(value).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(value);
            let mut reason: String = text.trim().chars().take(HALT_REASON_MAX).collect();
            if reason.is_empty() {
                reason = "the halt key is set, empty".to_owned();
            } else if text.trim().chars().count() > HALT_REASON_MAX {
                reason.push('…');
            }
            Halt {
                reason,
                at: String::new(),
            }
        })
    }
}

/// Records read under a prefix: those that parse, and the keys of those
/// that do not (which hold the gate: see [`crate::fleet::gate`]).
pub(super) struct Read<T> {
    pub(super) ok: Vec<T>,
    pub(super) unreadable: Vec<String>,
}

/// A rollout slot held while a new commit is applied. Its lease is kept
/// alive from a thread of its own for as long as it is held (a converge
/// can outlast the lease's TTL: health checks wait), and it dies with the
/// process, so a host killed holding it frees it when its lease expires.
pub(crate) struct Slot {
    /// The slot's key.
    pub key: String,
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("key", &self.key).finish()
    }
}

impl Slot {
    /// Holds `key` on `lease`, renewing it every third of `ttl` from a
    /// thread of its own until the slot is dropped.
    pub(super) fn hold(key: String, etcd: Etcd, lease: i64, ttl: std::time::Duration) -> Slot {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let every = (ttl / 3).max(std::time::Duration::from_secs(1));
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                if let Err(e) = etcd.keep_alive(lease) {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "could not renew the lease of a slot held (rollout or reboot)"
                    );
                }
            }
        });
        Slot {
            key,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops renewing its lease.
    fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One host's view of its fleet for one converge.
pub(super) struct Rollout<'a> {
    app: &'a App,
    s: &'a FleetSettings,
    etcd: Etcd,
    host: String,
    /// This run's lease, once renewed or granted.
    lease: Cell<Option<i64>>,
}

/// Now, in seconds since the epoch.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The policy in force on a host: the one of the commit it has applied,
/// else (a host that has applied nothing yet) the candidate's.
pub(super) fn policy_in_force(
    applied: Option<&DesiredState>,
    candidate: &DesiredState,
) -> FleetPolicy {
    applied
        .and_then(|d| d.fleet.clone())
        .or_else(|| candidate.fleet.clone())
        .unwrap_or_default()
}

impl<'a> Rollout<'a> {
    /// `None` without `[fleet]`: the host decides alone.
    pub(super) fn new(app: &'a App, host: &str) -> Option<Self> {
        let s = app.settings.fleet.as_ref()?;
        Some(Self {
            app,
            s,
            etcd: Etcd::new(s.etcd.clone()),
            host: host.to_owned(),
            lease: Cell::new(None),
        })
    }

    /// The key `rest` under the fleet's prefix.
    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.s.prefix)
    }

    /// This host's lease: renewed, or granted anew when it expired.
    pub(super) fn lease(&self, member: &mut Member) -> Result<i64> {
        if let Some(l) = self.lease.get() {
            return Ok(l);
        }
        let lease = match member.lease {
            Some(l) if self.etcd.keep_alive(l)? => l,
            _ => {
                let l = self.etcd.grant(self.s.lease_ttl)?;
                member.lease = Some(l);
                // A record of the same host from a lease that expired is
                // republished on the new one.
                member.record.at = 0;
                l
            }
        };
        self.lease.set(Some(lease));
        Ok(lease)
    }

    /// May `candidate` (key `key`) be applied now? `None`: yes (a rollout
    /// slot is then held in `slot`, if the wave limits them; without
    /// `slot`, as for `plan`, none is taken and a full wave does not show).
    fn gate(
        &self,
        key: &str,
        candidate: &DesiredState,
        applied: Option<&DesiredState>,
        slot: Option<&mut Option<Slot>>,
    ) -> Option<Blocked> {
        match self.try_gate(key, candidate, applied, slot) {
            Ok(b) => b,
            Err(e) => Some(Blocked {
                reason: "etcd_unreachable".into(),
                why: format!(
                    "the fleet's etcd cannot be asked, so no new commit is applied ({e:#})"
                ),
            }),
        }
    }

    fn try_gate(
        &self,
        key: &str,
        candidate: &DesiredState,
        applied: Option<&DesiredState>,
        slot: Option<&mut Option<Slot>>,
    ) -> Result<Option<Blocked>> {
        let policy = policy_in_force(applied, candidate);
        let roles = applied.map_or(&candidate.roles, |a| &a.roles);
        let wave = policy.wave_of(&self.host, roles);
        let records = self.records()?;
        let rollbacks = self.rollbacks(key)?;
        let unreadable: Vec<String> = records
            .unreadable
            .iter()
            .chain(&rollbacks.unreadable)
            .cloned()
            .collect();
        let halt = self.halt()?;
        let cache = self.app.store.git_cache();
        let descends = |a: &str, b: &str| crate::source::descends(&cache, a, b);
        let decided = gate::decide(&gate::Input {
            policy: &policy,
            wave,
            candidate: key,
            records: &records.ok,
            rollbacks: &rollbacks.ok,
            unreadable: &unreadable,
            halt: halt.as_ref().map(|h| h.reason.as_str()),
            now: now_secs(),
            window_open: self.window_open(&policy, wave),
            descends: &descends,
        });
        if let Gate::Wait(reason, why) | Gate::Halted(reason, why) = decided {
            return Ok(Some(Blocked {
                reason: reason.word().into(),
                why,
            }));
        }
        let (Some(max), Some(slot)) = (policy.waves.get(wave).and_then(|w| w.max_parallel), slot)
        else {
            return Ok(None);
        };
        let mut member = self.member()?;
        let lease = self.lease(&mut member)?;
        self.app.store.save_fleet_member(&member)?;
        let name = policy.wave_name(wave);
        let mut holders = Vec::new();
        for i in 0..max {
            let k = self.key(&format!("slots/{name}/{i}"));
            // Taken now, or still ours (a converge of this host cut short
            // on the same lease).
            let holder = if self.etcd.create(&k, self.host.as_bytes(), lease)? {
                self.host.as_bytes().to_vec()
            } else {
                self.etcd.get(&k)?.unwrap_or_default()
            };
            if holder == self.host.as_bytes() {
                let etcd = Etcd::new(self.s.etcd.clone());
                *slot = Some(Slot::hold(k, etcd, lease, self.s.lease_ttl));
                return Ok(None);
            }
            holders.push(String::from_utf8_lossy(&holder).into_owned());
        }
        Ok(Some(Blocked {
            reason: "parallel".into(),
            why: format!(
                "waiting for a rollout slot of wave {name}: all {max} are taken ({})",
                holders.join(", ")
            ),
        }))
    }

    /// The fleet's etcd.
    pub(super) fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Gives a rollout slot back.
    pub(super) fn release(&self, mut slot: Slot) -> Result<()> {
        slot.stop();
        self.etcd.delete(&slot.key)
    }

    fn window_open(&self, policy: &FleetPolicy, wave: usize) -> bool {
        let wave_windows = policy
            .waves
            .get(wave)
            .map_or(&[][..], |w| w.windows.as_slice());
        windows_open_now(wave_windows) && windows_open_now(&self.s.windows)
    }

    /// What this host keeps of its membership (`fleet.json`).
    pub(super) fn member(&self) -> Result<Member> {
        Ok(self.app.store.load_fleet_member()?.unwrap_or_default())
    }

    /// Every record under `rest`, parsed.
    pub(super) fn read<T: serde::de::DeserializeOwned>(&self, rest: &str) -> Result<Read<T>> {
        let mut read = Read {
            ok: Vec::new(),
            unreadable: Vec::new(),
        };
        for kv in self.etcd.list(&self.key(rest))? {
            match serde_json::from_slice(&kv.value) {
                Ok(r) => read.ok.push(r),
                Err(_) => read.unreadable.push(kv.key),
            }
        }
        Ok(read)
    }

    /// The live hosts' records.
    pub(super) fn records(&self) -> Result<Read<HostRecord>> {
        self.read("hosts/")
    }

    /// The fleet's memory of the rollbacks of `commit` (every host's: the
    /// keys are by host, so that etcd's RBAC can give each host write
    /// access to its own keys only), with the keys of the records about it
    /// that cannot be read.
    pub(super) fn rollbacks(&self, commit: &str) -> Result<Read<Rollback>> {
        let mut all = self.read::<Rollback>("rollbacks/")?;
        all.ok.retain(|r| r.commit == commit);
        let about = format!("/{commit}");
        all.unreadable.retain(|k| k.ends_with(&about));
        Ok(all)
    }

    /// Remembers this host's rollback for the fleet (no lease), under its
    /// own `rollbacks/<host>/`, keeping its newest
    /// [`ROLLED_BACK_COMMITS_KEPT`].
    fn remember_rollback(&self, rollback: &Rollback) -> Result<()> {
        let mine = format!("rollbacks/{}/", rollback.host);
        let key = self.key(&format!("{mine}{}", rollback.commit));
        self.etcd.put(&key, &serde_json::to_vec(rollback)?, None)?;
        let mut kept = self.read::<Rollback>(&mine)?.ok;
        kept.sort_by_key(|r| std::cmp::Reverse(r.at));
        for old in kept.iter().skip(ROLLED_BACK_COMMITS_KEPT) {
            self.etcd
                .delete(&self.key(&format!("{mine}{}", old.commit)))?;
        }
        Ok(())
    }

    /// The reboot slots held and the waves whose reboots are halted.
    pub(super) fn reboots(&self) -> Result<Reboots> {
        let mut slots = Read {
            ok: Vec::new(),
            unreadable: Vec::new(),
        };
        // A slot is where it is listed, whatever its value says (a value
        // naming another key must not make `fleet resume --reboots` delete
        // that one, nor leave this one held).
        for kv in self.etcd.list(&self.key(SLOTS))? {
            match serde_json::from_slice::<RebootSlot>(&kv.value) {
                Ok(mut s) => {
                    s.key = kv.key;
                    slots.ok.push(s);
                }
                Err(_) => slots.unreadable.push(kv.key),
            }
        }
        let prefix = self.key(HALTS);
        let halts = self
            .etcd
            .list(&prefix)?
            .into_iter()
            .map(|kv| RebootHalt::read(kv.key.strip_prefix(&prefix).unwrap_or(&kv.key), &kv.value))
            .collect();
        Ok(Reboots {
            slots: slots.ok,
            halts,
            unreadable: slots.unreadable,
        })
    }

    /// The fleet-wide stop, if set: any value of the key.
    pub(super) fn halt(&self) -> Result<Option<Halt>> {
        Ok(self.etcd.get(&self.key("halt"))?.map(|v| Halt::read(&v)))
    }

    /// Publishes this host's record after a converge: what it runs, since
    /// when, how the run ended, what it rolled back and what it waits for,
    /// and the inventory (OS, kernel, pause, drift, last error).
    /// Written only when something changed; the lease is renewed always.
    pub(super) fn publish(
        &self,
        state: &AgentState,
        applied: &dyn Fn() -> Option<DesiredState>,
        run: &RunSummary<'_>,
    ) -> Result<()> {
        let RunSummary {
            outcome,
            rolled_back,
            blocked,
            ..
        } = *run;
        let mut member = self.member()?;
        let lease = self.lease(&mut member)?;
        let before = member.record.clone();
        let mut rec = before.clone();
        rec.host.clone_from(&self.host);
        rec.version = crate::VERSION.to_owned();
        // As the daemon's last reboot check found (the one after the
        // previous converge): a tick late at most.
        rec.reboot_from(state.reboot.as_ref());
        let now = now_secs();
        let runs = state.last_good.as_ref().map(|g| g.key.clone());
        // The wave follows the applied commit's policy: read again only
        // when that commit changed (the no-op reads nothing).
        if runs != rec.applied || rec.wave.is_empty() {
            let applied = applied();
            let policy = applied
                .as_ref()
                .and_then(|a| a.fleet.clone())
                .unwrap_or_default();
            let roles = applied.map(|a| a.roles).unwrap_or_default();
            rec.wave = policy
                .wave_name(policy.wave_of(&self.host, &roles))
                .to_owned();
            rec.roles = roles;
        }
        if runs != rec.applied {
            rec.healthy_since = runs.as_ref().map(|_| now);
            rec.applied = runs;
        }
        rec.outcome = outcome.as_str().to_owned();
        // The run is over, however it ended.
        rec.applying = None;
        if let Some((commit, reason)) = rolled_back {
            rec.rolled_back(commit, reason, now);
            // The fleet remembers it apart from this host's record, which
            // is gone with its lease.
            self.remember_rollback(&Rollback {
                host: self.host.clone(),
                wave: rec.wave.clone(),
                roles: rec.roles.clone(),
                commit: commit.to_owned(),
                reason: reason.to_owned(),
                at: now,
            })
            .context("failed to record the rollback for the fleet")?;
        }
        rec.waiting = blocked.map(|b| b.why.clone());
        inventory(&mut rec, state, run);
        let republish = before.at == 0;
        rec.at = before.at;
        if rec != before || republish {
            rec.at = now;
            let value = serde_json::to_vec(&rec)?;
            self.etcd
                .put(
                    &self.key(&format!("hosts/{}", self.host)),
                    &value,
                    Some(lease),
                )
                .context("failed to publish this host's record")?;
            if republish {
                // Without a lease: who has been in the fleet, so that
                // status can name the hosts that disappeared.
                let seen = serde_json::to_vec(&serde_json::json!({"host": self.host, "at": now}))?;
                self.etcd
                    .put(&self.key(&format!("members/{}", self.host)), &seen, None)?;
            }
        }
        member.record = rec;
        // Every host's status says the fleet is halted, not only those
        // that wait for a new commit: one read of the halt key per run.
        match self.halt() {
            Ok(h) => member.halt = h.map(|h| h.reason),
            Err(e) => tracing::debug!(
                error = format!("{e:#}"),
                "could not read the fleet's halt key"
            ),
        }
        self.app.store.save_fleet_member(&member)
    }

    /// Marks this host's live record as applying `commit` (its
    /// `applying`, for the dashboard), before the run's health checks;
    /// the record [`Self::publish`] writes after the run clears it. A
    /// record not yet published on this lease is left to that publish
    /// (which also names the host among the members).
    fn announce(&self, commit: &str) -> Result<()> {
        let mut member = self.member()?;
        let lease = self.lease(&mut member)?;
        if member.record.at != 0 {
            let mut rec = member.record.clone();
            rec.applying = Some(commit.to_owned());
            rec.at = now_secs();
            self.etcd
                .put(
                    &self.key(&format!("hosts/{}", self.host)),
                    &serde_json::to_vec(&rec)?,
                    Some(lease),
                )
                .context("failed to publish that this host applies a new commit")?;
            member.record = rec;
        }
        self.app.store.save_fleet_member(&member)
    }

    /// The hosts ever seen, by name (`members/`).
    pub(super) fn members(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .etcd
            .list(&self.key("members/"))?
            .into_iter()
            .filter_map(|kv| {
                let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
                Some((v["host"].as_str()?.to_owned(), v["at"].as_u64()?))
            })
            .collect())
    }
}

/// What a converge tells the fleet about itself.
pub(super) struct RunSummary<'a> {
    /// How it ended.
    pub outcome: Outcome,
    /// The commit it rolled back, and why.
    pub rolled_back: Option<(&'a str, &'a str)>,
    /// Why the gate held a new commit back.
    pub blocked: Option<&'a Blocked>,
    /// Drift found: how many resources, and the first ones.
    pub drifted: usize,
    /// The drifted resources it named.
    pub drifted_resources: &'a [String],
    /// Its error, when it failed.
    pub error: Option<&'a str>,
}

/// Fills the inventory of `rec` in: OS and kernel, the pause, the drift
/// and the error of the run. Each text is bounded, so the record stays
/// small.
fn inventory(rec: &mut HostRecord, state: &AgentState, run: &RunSummary<'_>) {
    let (os, kernel) = crate::system::facts::os_and_kernel();
    rec.os = record::bounded(&os);
    rec.kernel = record::bounded(&kernel);
    rec.paused = state
        .paused
        .as_ref()
        .map(|p| record::bounded(&format!("{} (by {} since {})", p.reason, p.by, p.at)));
    rec.drift = Drift {
        count: run.drifted,
        resources: run
            .drifted_resources
            .iter()
            .take(record::DRIFT_SHOWN)
            .map(|r| record::bounded(r))
            .collect(),
    };
    let failed = matches!(
        run.outcome,
        Outcome::Error | Outcome::Invalid | Outcome::RolledBack | Outcome::RollbackFailed
    );
    rec.last_error = run.error.filter(|_| failed).map(record::bounded);
}

/// The rollout gate's answer for the loaded `key`, when it is a new commit
/// (not the host's last good state) and the host is in a fleet; `None`:
/// go. With `slot`, a rollout slot is taken when the wave limits them;
/// without (`plan`), nothing is taken.
pub(super) fn gated(
    app: &App,
    state: &AgentState,
    key: &str,
    candidate: &DesiredState,
    slot: Option<&mut Option<Slot>>,
) -> Result<Option<Blocked>> {
    if state.last_good.as_ref().is_some_and(|g| g.key == key) {
        return Ok(None);
    }
    let Some(rollout) = Rollout::new(app, &candidate.host) else {
        return Ok(None);
    };
    let applied = app.store.load_last_good()?.map(|lg| lg.desired);
    Ok(rollout.gate(key, candidate, applied.as_ref(), slot))
}

/// Tells the fleet that this host applies `key` now, when it is a new
/// commit (not the host's last good state) and the host is in a fleet. A
/// failure is logged only: the record written after the run is what
/// counts.
pub(super) fn announce(app: &App, state: &AgentState, host: &str, key: &str) {
    if state.last_good.as_ref().is_some_and(|g| g.key == key) {
        return;
    }
    let Some(rollout) = Rollout::new(app, host) else {
        return;
    };
    if let Err(e) = rollout.announce(key) {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not tell the fleet that this host applies {key}"
        );
    }
}

/// `fleet halt`: sets the fleet-wide stop.
pub fn fleet_halt(app: &App, reason: &str) -> Result<String> {
    let (s, etcd) = client(app)?;
    let halt = Halt {
        reason: reason.to_owned(),
        at: crate::agent::now(),
    };
    etcd.put(
        &format!("{}/halt", s.prefix),
        &serde_json::to_vec(&halt)?,
        None,
    )?;
    tracing::warn!(reason, prefix = s.prefix, "fleet halted");
    Ok(format!(
        "fleet {} halted ({reason}): no host applies a new commit until `driftless fleet resume`",
        s.prefix
    ))
}

/// `fleet resume`: lifts the fleet-wide stop.
pub fn fleet_resume(app: &App) -> Result<String> {
    let (s, etcd) = client(app)?;
    etcd.delete(&format!("{}/halt", s.prefix))?;
    tracing::warn!(prefix = s.prefix, "fleet resumed");
    Ok(format!("fleet {} resumed: rollouts go on", s.prefix))
}

/// `fleet nudge`: writes `<prefix>/nudge`, which every daemon of the fleet
/// watches: each runs a tick within its `nudge_splay` (the rollout gate
/// applies as at any tick).
pub fn fleet_nudge(app: &App, commit: Option<&str>) -> Result<String> {
    let (s, etcd) = client(app)?;
    let commit = commit.map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = commit
        && (c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)))
    {
        anyhow::bail!("--commit `{c}` must be a commit id or a name of at most 64 characters");
    }
    let value = NudgeValue {
        commit: commit.map(str::to_owned),
        at: crate::agent::now(),
        by: crate::system::facts::invoking_user(),
    };
    etcd.put(
        &format!("{}/nudge", s.prefix),
        &serde_json::to_vec(&value)?,
        None,
    )?;
    tracing::info!(
        commit = commit.unwrap_or(""),
        prefix = s.prefix,
        "fleet nudged"
    );
    Ok(format!(
        "fleet {} nudged{}: every daemon runs within its nudge_splay (the rollout gate applies)",
        s.prefix,
        commit.map(|c| format!(" for {c}")).unwrap_or_default()
    ))
}

fn client(app: &App) -> Result<(&FleetSettings, Etcd)> {
    let s = app
        .settings
        .fleet
        .as_ref()
        .context("the agent config has no [fleet]: this host is in no fleet")?;
    Ok((s, Etcd::new(s.etcd.clone())))
}

/// `fleet status`: where one commit stands on every live host, wave by
/// wave, and the hosts that disappeared.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet's key prefix.
    pub prefix: String,
    /// The commit asked about (`--commit`, else the fetched head here).
    pub commit: Option<String>,
    /// The fleet-wide stop, when set.
    pub halt: Option<Halt>,
    /// Keys of records that cannot be read: each holds every new commit
    /// until its host rewrites it or an operator deletes it.
    pub unreadable: Vec<String>,
    /// Each wave, in rollout order (the policy this host runs, else by the
    /// records' wave names).
    pub waves: Vec<WaveStatus>,
    /// Hosts seen before that have no live record now.
    pub disappeared: Vec<String>,
    /// When this was read (seconds since the epoch): a record's age is
    /// this minus its `at` (when its host last wrote it: records are
    /// rewritten only when something in them changed; its lease says that
    /// the host is alive).
    #[serde(default)]
    pub read_at: u64,
    /// The reboot slots held (hosts draining, rebooting, or kept after a
    /// reboot they did not come back healthy from).
    #[serde(default)]
    pub reboot_slots: Vec<RebootSlot>,
    /// The waves whose reboots are halted.
    #[serde(default)]
    pub reboot_halts: Vec<RebootHalt>,
}

impl FleetStatus {
    /// `Err` naming the waves there are when `wave` is given and is not
    /// one of them (a typo would otherwise select nobody).
    pub(super) fn has_wave(&self, wave: Option<&str>) -> Result<()> {
        match wave {
            Some(w) if !self.waves.iter().any(|x| x.name == w) => anyhow::bail!(
                "no wave `{w}` in this fleet (waves: {})",
                self.waves
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => Ok(()),
        }
    }
}

/// Which host records `fleet status` shows (`--drifted`, `--failing`,
/// `--wave`); the waves' states and counts are the whole fleet's.
#[derive(Clone, Debug, Default)]
pub struct HostFilter {
    /// Only hosts whose last run found drift.
    pub drifted: bool,
    /// Only hosts whose last run failed (error, rolled back).
    pub failing: bool,
    /// Only this wave.
    pub wave: Option<String>,
}

impl HostFilter {
    /// Whether `r` is shown.
    fn shows(&self, r: &HostRecord) -> bool {
        (!self.drifted || r.drift.count > 0)
            && (!self.failing
                || r.last_error.is_some()
                || matches!(
                    r.outcome.as_str(),
                    "error" | "invalid" | "rolled_back" | "rollback_failed"
                ))
    }
}

/// One wave of [`FleetStatus`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WaveStatus {
    /// Its name.
    pub name: String,
    /// How many live hosts it has (`hosts` may show fewer, filtered).
    #[serde(default)]
    pub live: usize,
    /// The rollout of the commit is halted in it: more of its hosts rolled
    /// the commit back than its `max_failed` allows (not `fleet halt`).
    #[serde(default)]
    pub failed: bool,
    /// `done` (every live host runs the commit), `progressing`, `waiting`
    /// (none does yet) or `halted` (a rollback halted it, or the fleet is
    /// halted).
    pub state: String,
    /// Its live hosts' records, as each host published it.
    pub hosts: Vec<HostRecord>,
    /// Hosts that run the commit (or one after it).
    pub on_commit: Vec<String>,
    /// Hosts that rolled the commit back, with why.
    pub rolled_back: Vec<(String, String)>,
    /// Hosts waiting to apply a new commit, with what for.
    pub waiting: Vec<(String, String)>,
}

/// Reads the fleet's state for `commit` (else the fetched head), showing
/// the host records `filter` lets through.
pub fn fleet_status(app: &App, commit: Option<&str>, filter: &HostFilter) -> Result<FleetStatus> {
    let mut status = read_fleet(app, commit)?;
    status.has_wave(filter.wave.as_deref())?;
    status
        .waves
        .retain(|x| filter.wave.as_ref().is_none_or(|w| x.name == *w));
    for w in &mut status.waves {
        w.hosts.retain(|r| filter.shows(r));
    }
    Ok(status)
}

/// The fleet's state for `commit` (else the fetched head), every host.
pub(super) fn read_fleet(app: &App, commit: Option<&str>) -> Result<FleetStatus> {
    let (s, etcd) = client(app)?;
    let rollout = Rollout {
        app,
        s,
        etcd,
        host: String::new(),
        lease: Cell::new(None),
    };
    let commit = match commit {
        Some(c) => Some(c.to_owned()),
        None => crate::source::cache_status(&app.store.git_cache())?.fetched,
    };
    let read = rollout.records()?;
    let records = read.ok;
    let mut unreadable = read.unreadable;
    let remembered = match &commit {
        Some(c) => {
            let r = rollout.rollbacks(c)?;
            unreadable.extend(r.unreadable);
            r.ok
        }
        None => Vec::new(),
    };
    let halt = rollout.halt()?;
    let reboots = rollout.reboots()?;
    unreadable.extend(reboots.unreadable);
    let members = rollout.members()?;
    let policy = app
        .store
        .load_last_good()?
        .and_then(|lg| lg.desired.fleet)
        .unwrap_or_default();
    let mut names: Vec<String> = policy.waves.iter().map(|w| w.name.clone()).collect();
    for r in &records {
        if !names.contains(&r.wave) {
            names.push(r.wave.clone());
        }
    }
    let cache = app.store.git_cache();
    let on = |r: &HostRecord| match (&commit, &r.applied) {
        (Some(c), Some(a)) => a == c || crate::source::descends(&cache, a, c),
        _ => false,
    };
    let fleet = Fleet {
        records: &records,
        remembered: &remembered,
        policy: &policy,
        commit: commit.as_deref(),
        halted: halt.is_some(),
    };
    let waves = names
        .into_iter()
        .map(|name| fleet.wave(name, &on))
        .collect();
    let live: std::collections::BTreeSet<&str> = records.iter().map(|r| r.host.as_str()).collect();
    let disappeared = members
        .into_keys()
        .filter(|h| !live.contains(h.as_str()))
        .collect();
    Ok(FleetStatus {
        prefix: s.prefix.clone(),
        commit,
        halt,
        unreadable,
        waves,
        disappeared,
        read_at: now_secs(),
        reboot_slots: reboots.slots,
        reboot_halts: reboots.halts,
    })
}

/// What `fleet status` reads, for the status of each wave.
struct Fleet<'f> {
    records: &'f [HostRecord],
    remembered: &'f [Rollback],
    policy: &'f FleetPolicy,
    commit: Option<&'f str>,
    halted: bool,
}

impl Fleet<'_> {
    /// The wave `name`: its hosts, those on the commit, those that rolled
    /// it back (live records, and the fleet's memory for hosts whose record
    /// is gone), those waiting, and where it stands.
    fn wave(&self, name: String, on: &dyn Fn(&HostRecord) -> bool) -> WaveStatus {
        let hosts: Vec<HostRecord> = self
            .records
            .iter()
            .filter(|r| r.wave == name)
            .cloned()
            .collect();
        let on_commit: Vec<String> = hosts
            .iter()
            .filter(|r| on(r))
            .map(|r| r.host.clone())
            .collect();
        let mut rolled_back: Vec<(String, String)> = hosts
            .iter()
            .filter_map(|r| {
                let c = self.commit?;
                let b = r.rolled_back.iter().find(|b| b.commit == c)?;
                Some((r.host.clone(), b.reason.clone()))
            })
            .collect();
        for b in self.remembered.iter().filter(|b| b.wave == name) {
            if !rolled_back.iter().any(|(h, _)| *h == b.host) {
                rolled_back.push((b.host.clone(), b.reason.clone()));
            }
        }
        let waiting = hosts
            .iter()
            .filter_map(|r| Some((r.host.clone(), r.waiting.clone()?)))
            .collect();
        let allowed = self
            .policy
            .waves
            .iter()
            .find(|w| w.name == name)
            .map_or(0, |w| {
                let gone = rolled_back
                    .iter()
                    .filter(|(h, _)| !hosts.iter().any(|r| r.host == *h))
                    .count();
                w.max_failed.at_most(hosts.len() + gone)
            });
        let failed = rolled_back.len() > allowed;
        let state = if self.halted || failed {
            "halted"
        } else if !hosts.is_empty() && on_commit.len() == hosts.len() {
            "done"
        } else if on_commit.is_empty() {
            "waiting"
        } else {
            "progressing"
        };
        WaveStatus {
            name,
            live: hosts.len(),
            failed,
            state: state.to_owned(),
            hosts,
            on_commit,
            rolled_back,
            waiting,
        }
    }
}

/// Whether any of `windows` is open now, in the host's time zone (none:
/// always open).
pub(crate) fn windows_open_now(windows: &[String]) -> bool {
    use chrono::{Datelike, Timelike};
    let now = chrono::Local::now();
    let day = u8::try_from(now.weekday().num_days_from_monday()).unwrap_or(0);
    let minute = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
    crate::desired::fleet::any_open(windows, day, minute)
}
