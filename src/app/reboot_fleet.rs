//! Reboots in a fleet (`[fleet]`, docs/reboots.md): before the drain, the
//! reboot gate ([`crate::fleet::reboot`]) and a reboot slot of the host's
//! wave, on a lease of `[reboot] back_within` kept alive while it drains;
//! when systemd is asked, the slot put again without a lease (a host that
//! never comes back keeps it); after the boot, the slot given back once a
//! converge is healthy, or kept, with the wave's reboots halted; `fleet
//! resume --reboots` for the operator; the reboot state for `fleet status`;
//! and the wave's `reboot_mode`/`reboot_windows` over the agent config's.
//!
//! Fail closed: when etcd cannot be asked, or a record cannot be read, the
//! host does not reboot.

use anyhow::{Context, Result};

use super::context::App;
use super::fleet::{Rollout, Slot, now_secs};
use crate::agent::AgentState;
use crate::agent::reboot::{HeldSlot, RebootMode, SlotStep};
use crate::desired::fleet::FleetPolicy;
use crate::fleet::etcd::{Etcd, Holding};
use crate::fleet::reboot::{self as gate, HALTS, RebootGate, RebootHalt, RebootSlot, SLOTS};

/// A reboot slot taken before the drain, its lease renewed until the
/// reboot is asked ([`hand_over`]) or it is given back (dropped).
pub(super) struct Taken {
    slot: Slot,
    value: RebootSlot,
}

impl Taken {
    /// What the host remembers of it in its state.
    pub(super) fn held(&self) -> HeldSlot {
        HeldSlot {
            key: self.value.key.clone(),
            wave: self.value.wave.clone(),
            at: self.value.since.clone(),
            kept: None,
        }
    }
}

/// The fleet's answer before a reboot.
pub(super) enum Ask {
    /// No `[fleet]`: the host decides alone.
    Alone,
    /// A slot is held: drain and reboot.
    Go(Taken),
    /// Not now: why (said in the reboot record's `waiting`).
    Wait(String),
}

/// Where the host stands in its fleet: its name and the policy of the
/// commit it has applied, and its wave by that policy.
struct Place {
    host: String,
    policy: FleetPolicy,
    wave: usize,
}

/// The host's place, from its last good state; `None` before it applied
/// anything (its wave is not known yet).
fn place(app: &App) -> Result<Option<Place>> {
    let Some(lg) = app.store.load_last_good()? else {
        return Ok(None);
    };
    let policy = lg.desired.fleet.clone().unwrap_or_default();
    let wave = policy.wave_of(&lg.desired.host, &lg.desired.roles);
    Ok(Some(Place {
        host: lg.desired.host,
        policy,
        wave,
    }))
}

/// The `[reboot]` mode and windows in force: the agent config's, with its
/// wave's `reboot_mode` and `reboot_windows` over them in a fleet (by the
/// policy of the commit applied).
pub(super) fn in_force(app: &App) -> (RebootMode, Vec<String>) {
    let s = &app.settings.reboot;
    let ours = (s.mode, s.windows.clone());
    if app.settings.fleet.is_none() {
        return ours;
    }
    match place(app) {
        Ok(Some(p)) => p
            .policy
            .waves
            .get(p.wave)
            .map_or(ours, |w| w.reboot_policy(s.mode, &s.windows)),
        Ok(None) => ours,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not read the wave's reboot policy; the agent config's is used"
            );
            ours
        }
    }
}

/// Asks the fleet whether the host may reboot now, and takes a reboot
/// slot of its wave if so.
pub(super) fn ask(app: &App) -> Ask {
    if app.settings.fleet.is_none() {
        return Ask::Alone;
    }
    try_ask(app).unwrap_or_else(|e| {
        Ask::Wait(format!(
            "the fleet's etcd cannot be asked, so the host does not reboot ({e:#})"
        ))
    })
}

fn try_ask(app: &App) -> Result<Ask> {
    let Some(p) = place(app)? else {
        return Ok(Ask::Wait(
            "this host has applied no commit yet, so its wave is not known: the reboot waits for its first converge".into(),
        ));
    };
    let Some(rollout) = Rollout::new(app, &p.host) else {
        return Ok(Ask::Alone);
    };
    let records = rollout.records()?;
    let read = rollout.reboots()?;
    let halt = rollout.halt()?;
    let unreadable: Vec<String> = records
        .unreadable
        .iter()
        .chain(&read.unreadable)
        .cloned()
        .collect();
    let decided = gate::decide(&gate::Input {
        policy: &p.policy,
        host: &p.host,
        wave: p.wave,
        records: &records.ok,
        unreadable: &unreadable,
        halt: halt.as_ref().map(|h| h.reason.as_str()),
        halts: &read.halts,
        slots: &read.slots,
        now: now_secs(),
    });
    if let RebootGate::Wait(why) | RebootGate::Halted(why) = decided {
        return Ok(Ask::Wait(why));
    }
    take(app, &rollout, &p, &read.slots)
}

/// Takes a free reboot slot of the host's wave (one of its
/// `max_parallel`; without it, one of its own), or says who holds them.
fn take(app: &App, rollout: &Rollout<'_>, p: &Place, held: &[RebootSlot]) -> Result<Ask> {
    let settings = app
        .settings
        .fleet
        .as_ref()
        .context("the agent config has no [fleet]")?;
    let name = p.policy.wave_name(p.wave).to_owned();
    let keys: Vec<String> = match p.policy.waves.get(p.wave).and_then(|w| w.max_parallel) {
        Some(n) => (0..n)
            .map(|i| rollout.key(&format!("{SLOTS}{name}/{i}")))
            .collect(),
        None => vec![rollout.key(&format!("{SLOTS}{name}/{}", p.host))],
    };
    // One of its own already (a drain cut short by a restart): taken over.
    let mine = held
        .iter()
        .find(|s| s.host == p.host && keys.contains(&s.key))
        .map(|s| s.key.clone());
    let free = mine.clone().or_else(|| {
        keys.iter()
            .find(|k| !held.iter().any(|s| &s.key == *k))
            .cloned()
    });
    let Some(key) = free else {
        let holders: Vec<&str> = held
            .iter()
            .filter(|s| keys.contains(&s.key))
            .map(|s| s.host.as_str())
            .collect();
        return Ok(Ask::Wait(format!(
            "waiting for a reboot slot of wave {name}: all {} are taken ({})",
            keys.len(),
            holders.join(", ")
        )));
    };
    let ttl = app.settings.reboot.back_within;
    let value = RebootSlot {
        key: key.clone(),
        host: p.host.clone(),
        wave: name.clone(),
        since: crate::agent::now(),
        rebooting_at: None,
        back_within: ttl.as_secs(),
        kept: None,
    };
    let etcd = rollout.etcd();
    let lease = etcd.grant(ttl)?;
    let bytes = serde_json::to_vec(&value)?;
    // Its own slot is taken over only while it still holds what was read
    // (its old lease may end meanwhile, and another host take it).
    let taken = match &mine {
        Some(_) => {
            let was = held
                .iter()
                .find(|s| s.key == key)
                .map(serde_json::to_vec)
                .transpose()?;
            match was {
                Some(was) => etcd.put_if(&key, Holding::Bytes(&was), &bytes, Some(lease))?,
                None => false,
            }
        }
        None => etcd.create(&key, &bytes, lease)?,
    };
    if !taken {
        return Ok(Ask::Wait(format!(
            "waiting for a reboot slot of wave {name}: another host took the last free one"
        )));
    }
    let slot = Slot::hold(key, Etcd::new(settings.etcd.clone()), lease, ttl);
    Ok(Ask::Go(Taken { slot, value }))
}

/// The reboot is asked of systemd next: the slot is put again without a
/// lease, saying since when the host is down, so that it stays held
/// until the host is back healthy (or an operator clears it).
pub(super) fn hand_over(app: &App, taken: Taken) -> Result<HeldSlot> {
    let held = taken.held();
    let Taken { slot, mut value } = taken;
    let rollout = Rollout::new(app, &value.host).context("the agent config has no [fleet]")?;
    let before = serde_json::to_vec(&value)?;
    value.rebooting_at = Some(now_secs());
    // Only over what this host put: if its lease ended while etcd could not
    // be reached (and another host may hold the slot now), no reboot.
    let kept = rollout
        .etcd()
        .put_if(
            &value.key,
            Holding::Bytes(&before),
            &serde_json::to_vec(&value)?,
            None,
        )
        .with_context(|| {
            format!(
                "failed to keep the reboot slot {} for the reboot",
                value.key
            )
        })?;
    drop(slot);
    if !kept {
        anyhow::bail!(
            "the reboot slot {} is no longer this host's (its lease ended while etcd could not be reached): no reboot now",
            value.key
        );
    }
    Ok(held)
}

/// The host does not reboot after all (the drain failed, a cancel, systemd
/// refused): its slot is given back. Whether it was (else its lease, or
/// the next check, frees it).
pub(super) fn abandon(app: &App, held: &HeldSlot) -> bool {
    match release(app, held) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                key = held.key,
                "could not give the reboot slot back"
            );
            false
        }
    }
}

/// Deletes the slot if this host still holds it.
fn release(app: &App, held: &HeldSlot) -> Result<()> {
    let Some(p) = place(app)? else {
        return Ok(());
    };
    let Some(rollout) = Rollout::new(app, &p.host) else {
        return Ok(());
    };
    let etcd = rollout.etcd();
    if let Some(value) = etcd.get(&held.key)?
        && holder(&value).as_deref() == Some(p.host.as_str())
    {
        etcd.delete_if(&held.key, &value)?;
    }
    Ok(())
}

/// The host a slot's value names, if it can be read.
fn holder(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<RebootSlot>(value)
        .ok()
        .map(|s| s.host)
}

/// After a check: gives the slot back (the host is back healthy), keeps
/// it and halts the wave's reboots (not healthy, or not in time), or sees
/// whether an operator cleared a kept one. The slot the host holds now,
/// when that changed; `None` when nothing did (failures are retried at the
/// next check).
pub(super) fn settle(app: &App, step: &SlotStep, held: &HeldSlot) -> Option<Option<HeldSlot>> {
    let slot = match step {
        SlotStep::Nothing => return None,
        SlotStep::Release => release(app, held).map(|()| None),
        SlotStep::Keep(why) => keep(app, held, why).map(|reason| {
            Some(HeldSlot {
                kept: Some(reason),
                ..held.clone()
            })
        }),
        SlotStep::CheckKept => match kept_still(app, held) {
            Ok(true) => return None,
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        },
    };
    match slot {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                key = held.key,
                "could not settle the reboot slot with the fleet"
            );
            None
        }
    }
}

/// Keeps the slot without a lease, saying why, and halts the reboots of
/// its wave (`<prefix>/reboot-halt/<wave>`, unless already halted).
/// Returns the reason given.
fn keep(app: &App, held: &HeldSlot, why: &str) -> Result<String> {
    let Some(p) = place(app)? else {
        anyhow::bail!("this host has applied nothing: its fleet is not known");
    };
    let rollout = Rollout::new(app, &p.host).context("the agent config has no [fleet]")?;
    let etcd = rollout.etcd();
    let error = app
        .store
        .load_last_run()
        .ok()
        .flatten()
        .and_then(|r| r.error)
        .map(|e| format!(": {}", crate::fleet::record::bounded(&e)))
        .unwrap_or_default();
    let reason = format!("{why}{error}");
    let now = crate::agent::now();
    let current = etcd.get(&held.key)?;
    let theirs = current
        .as_deref()
        .and_then(holder)
        .is_some_and(|h| h != p.host);
    if !theirs {
        let mut value: RebootSlot = current
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_else(|| RebootSlot {
                key: held.key.clone(),
                host: p.host.clone(),
                wave: held.wave.clone(),
                since: held.at.clone(),
                ..RebootSlot::default()
            });
        value.kept = Some(reason.clone());
        // Over what was read only: a slot another host took meanwhile is
        // theirs (the halt below still stops the wave).
        let now = match current.as_deref() {
            Some(bytes) => Holding::Bytes(bytes),
            None => Holding::Nothing,
        };
        etcd.put_if(&held.key, now, &serde_json::to_vec(&value)?, None)?;
    }
    let halt_key = rollout.key(&format!("{HALTS}{}", held.wave));
    if etcd.get(&halt_key)?.is_none() {
        let halt = RebootHalt {
            wave: held.wave.clone(),
            host: p.host.clone(),
            reason: reason.clone(),
            at: now,
        };
        etcd.put(&halt_key, &serde_json::to_vec(&halt)?, None)?;
    }
    tracing::error!(
        wave = held.wave,
        "reboots of wave {} are halted: this host is {reason}",
        held.wave
    );
    Ok(reason)
}

/// Whether the kept slot is still there, this host's (an operator's
/// `fleet resume --reboots` deletes it).
fn kept_still(app: &App, held: &HeldSlot) -> Result<bool> {
    let Some(p) = place(app)? else {
        return Ok(false);
    };
    let rollout = Rollout::new(app, &p.host).context("the agent config has no [fleet]")?;
    let value = rollout.etcd().get(&held.key)?;
    Ok(value.as_deref().and_then(holder).as_deref() == Some(p.host.as_str()))
}

/// Rewrites this host's record with its reboot fields now (a reboot slot
/// taken or given back shows at once, not at the next converge). Best
/// effort: the next converge publishes the record whole.
pub(super) fn publish(app: &App, state: &AgentState) {
    if let Err(e) = try_publish(app, state) {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not publish this host's fleet record"
        );
    }
}

fn try_publish(app: &App, state: &AgentState) -> Result<()> {
    let Some(p) = place(app)? else {
        return Ok(());
    };
    let Some(rollout) = Rollout::new(app, &p.host) else {
        return Ok(());
    };
    let mut member = rollout.member()?;
    if member.record.host.is_empty() {
        // Never published: its first converge does.
        return Ok(());
    }
    let lease = rollout.lease(&mut member)?;
    let before = member.record.clone();
    member.record.reboot_from(state.reboot.as_ref());
    if member.record == before && before.at != 0 {
        return Ok(());
    }
    member.record.at = now_secs();
    let key = rollout.key(&format!("hosts/{}", member.record.host));
    rollout
        .etcd()
        .put(&key, &serde_json::to_vec(&member.record)?, Some(lease))
        .context("failed to publish this host's record")?;
    app.store.save_fleet_member(&member)
}

/// `fleet resume --reboots`: clears every wave's reboot halt, and the
/// slots kept by hosts that did not come back healthy (or not in time).
/// Slots of hosts draining or rebooting now stay.
pub fn fleet_resume_reboots(app: &App) -> Result<String> {
    let rollout = Rollout::new(app, "")
        .context("the agent config has no [fleet]: this host is in no fleet")?;
    let read = rollout.reboots()?;
    let etcd = rollout.etcd();
    let now = now_secs();
    let mut waves = Vec::new();
    for h in &read.halts {
        etcd.delete(&rollout.key(&format!("{HALTS}{}", h.wave)))?;
        waves.push(h.wave.as_str());
    }
    let mut hosts = Vec::new();
    for s in &read.slots {
        let overdue = s
            .rebooting_at
            .is_some_and(|at| gate::overdue(at, s.back_within, now));
        if s.kept.is_some() || overdue {
            etcd.delete(&s.key)?;
            hosts.push(s.host.as_str());
        }
    }
    tracing::warn!(
        halts = waves.join(", "),
        slots = hosts.join(", "),
        "fleet reboots resumed"
    );
    if waves.is_empty() && hosts.is_empty() {
        return Ok("no reboots were halted and no reboot slot was kept".to_owned());
    }
    Ok(format!(
        "reboots resumed: halts of wave(s) [{}] cleared, slots kept by [{}] given back",
        waves.join(", "),
        hosts.join(", ")
    ))
}
