//! `driftless fleet wait COMMIT [--timeout D] [--wave W]`: for CI, "merge,
//! nudge, wait". Blocks until every live host (of the wave) runs the
//! commit, or a later one, healthily; or the rollout of the commit halts
//! (a host rolled it back beyond its wave's `max_failed`); or the timeout
//! passes. It reads the same records as `fleet status`, once a second.
//!
//! "Runs it healthily" is the host's record: `applied` is its last good
//! state, which a converge sets only after its health checks passed. "A
//! later one" is decided with this machine's git cache (the records hold
//! commit ids, not history): a host on a commit the cache does not hold
//! counts only once it does. A `fleet halt` is not the end of the rollout:
//! the wait goes on (and says so), until `fleet resume` or the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::context::App;
use super::fleet::{FleetStatus, read_fleet};
use crate::cancel::Cancel;
use crate::outcome::Outcome;

/// How often the records are read.
const POLL: Duration = Duration::from_secs(1);
/// How long etcd may stay unreachable during a wait (it must answer at
/// the start) before the wait gives up.
const UNREACHABLE_MAX: Duration = Duration::from_secs(30);
/// Hosts named in a message, at most.
const NAMED: usize = 20;

/// What `fleet wait` is asked.
#[derive(Clone, Debug)]
pub struct WaitRequest {
    /// The commit (a full id, or a unique prefix the git cache here knows).
    pub commit: String,
    /// Only the hosts of this wave.
    pub wave: Option<String>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// How a wait ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetWait {
    /// The fleet's key prefix.
    pub prefix: String,
    /// The commit waited for (its full id).
    pub commit: String,
    /// The wave waited for, or null for every live host.
    pub wave: Option<String>,
    /// `landed`, `halted` or `timeout`.
    pub state: String,
    /// Hosts that run the commit (or a later one) healthily.
    pub landed: Vec<String>,
    /// Hosts that do not (yet), each with what it runs or waits for.
    pub missing: Vec<(String, String)>,
    /// When halted: the host that rolled the commit back, and why.
    pub halted_by: Option<(String, String)>,
    /// The fleet-wide stop, when set at the end (the wait goes on through
    /// it: it is lifted by `fleet resume`).
    pub fleet_halt: Option<String>,
    /// How long it waited, in seconds.
    pub waited_s: u64,
}

impl FleetWait {
    /// The run's outcome word, and so the exit code: landed 0 (`done`),
    /// halted 4 (`rolled_back`), timeout 3 (`held`).
    pub fn outcome(&self) -> Outcome {
        match self.state.as_str() {
            "landed" => Outcome::Done,
            "halted" => Outcome::RolledBack,
            _ => Outcome::Held,
        }
    }
}

/// Where one reading of the fleet leaves the wait.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Landed,
    Halted(String, String),
    Pending,
}

/// Reads what one reading of the fleet says about the wait: its verdict,
/// and the hosts in scope that run the commit and those that do not.
fn judge(s: &FleetStatus, wave: Option<&str>) -> (Verdict, Vec<String>, Vec<(String, String)>) {
    let mut landed = Vec::new();
    let mut missing = Vec::new();
    for w in s.waves.iter().filter(|w| wave.is_none_or(|x| x == w.name)) {
        for h in &w.hosts {
            if w.on_commit.contains(&h.host) && h.outcome != "rollback_failed" {
                landed.push(h.host.clone());
                continue;
            }
            let runs = h
                .applied
                .as_deref()
                .map_or("nothing".to_owned(), |c| crate::agent::short(c).to_owned());
            let why = match (&h.waiting, &h.last_error) {
                (Some(w), _) => format!("runs {runs}, waits: {w}"),
                (None, Some(e)) => format!("runs {runs}, last {}: {e}", h.outcome),
                (None, None) => format!("runs {runs}, last {}", h.outcome),
            };
            missing.push((h.host.clone(), why));
        }
    }
    if let Some(w) = s.waves.iter().find(|w| w.failed)
        && let Some((host, why)) = w.rolled_back.first()
    {
        return (Verdict::Halted(host.clone(), why.clone()), landed, missing);
    }
    let verdict = if missing.is_empty() && !landed.is_empty() {
        Verdict::Landed
    } else {
        Verdict::Pending
    };
    (verdict, landed, missing)
}

/// The full id of `rev`: as given when it is one, else by the git cache.
fn full_commit(app: &App, rev: &str) -> Result<String> {
    let rev = rev.trim().to_ascii_lowercase();
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(rev);
    }
    crate::source::resolve(&app.store.git_cache(), &rev).with_context(|| {
        format!("COMMIT `{rev}`: give its full id, or fetch here first so that a prefix resolves")
    })
}

/// `fleet wait`: reads the fleet every second until the commit landed,
/// its rollout halted, or the timeout passed; `progress` is told each
/// host that reports it, and what the others wait for when that changes.
/// `Err` when etcd cannot be read (at the start, or for
/// [`UNREACHABLE_MAX`] on end), or when stopped by a signal.
pub fn fleet_wait(
    app: &App,
    req: &WaitRequest,
    progress: &mut dyn FnMut(&str),
    cancel: &Cancel,
) -> Result<FleetWait> {
    let commit = full_commit(app, &req.commit)?;
    let short = crate::agent::short(&commit).to_owned();
    let started = Instant::now();
    let mut status = read_fleet(app, Some(&commit))?;
    status.has_wave(req.wave.as_deref())?;
    let mut told: BTreeMap<String, String> = BTreeMap::new();
    let mut failing_since: Option<Instant> = None;
    loop {
        let (verdict, landed, missing) = judge(&status, req.wave.as_deref());
        for h in &landed {
            if told.get(h).is_none_or(|t| t != "landed") {
                progress(&format!(
                    "{h} runs {short} ({} of {} hosts)",
                    landed.len(),
                    landed.len() + missing.len()
                ));
                told.insert(h.clone(), "landed".into());
            }
        }
        for (h, why) in &missing {
            if told.get(h) != Some(why) {
                progress(&format!("{h} {why}"));
                told.insert(h.clone(), why.clone());
            }
        }
        let waited = started.elapsed();
        let end = |state: &str, halted_by| FleetWait {
            prefix: status.prefix.clone(),
            commit: commit.clone(),
            wave: req.wave.clone(),
            state: state.to_owned(),
            landed: landed.clone(),
            missing: missing.clone(),
            halted_by,
            fleet_halt: status.halt.as_ref().map(|h| h.reason.clone()),
            waited_s: waited.as_secs(),
        };
        match verdict {
            Verdict::Landed => return Ok(end("landed", None)),
            Verdict::Halted(host, why) => return Ok(end("halted", Some((host, why)))),
            Verdict::Pending if waited >= req.timeout => return Ok(end("timeout", None)),
            Verdict::Pending => {}
        }
        std::thread::sleep(POLL.min(req.timeout.saturating_sub(waited)));
        if cancel.is_cancelled() {
            bail!("stopped by a signal while waiting for {short}");
        }
        match read_fleet(app, Some(&commit)) {
            Ok(s) => {
                status = s;
                failing_since = None;
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNREACHABLE_MAX {
                    return Err(e.context(format!(
                        "etcd could not be read for {}s while waiting for {short}",
                        UNREACHABLE_MAX.as_secs()
                    )));
                }
            }
        }
    }
}

/// The hosts of a list, for a message: at most [`NAMED`], then a count.
pub fn named(hosts: &[(String, String)]) -> String {
    let mut out: Vec<String> = hosts
        .iter()
        .take(NAMED)
        .map(|(h, why)| format!("{h} ({why})"))
        .collect();
    if hosts.len() > NAMED {
        out.push(format!("and {} more", hosts.len() - NAMED));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::WaveStatus;
    use crate::fleet::record::HostRecord;

    fn host(name: &str, applied: &str, outcome: &str) -> HostRecord {
        HostRecord {
            host: name.into(),
            applied: Some(applied.into()),
            outcome: outcome.into(),
            ..HostRecord::default()
        }
    }

    fn wave(name: &str, hosts: Vec<HostRecord>, on: &[&str]) -> WaveStatus {
        WaveStatus {
            name: name.into(),
            live: hosts.len(),
            hosts,
            on_commit: on.iter().map(|h| (*h).to_owned()).collect(),
            ..WaveStatus::default()
        }
    }

    #[test]
    fn a_commit_lands_when_every_host_in_scope_runs_it() {
        let mut s = FleetStatus {
            waves: vec![
                wave("canary", vec![host("c1", "b2", "changed")], &["c1"]),
                wave(
                    "rest",
                    vec![host("r1", "a1", "held"), host("r2", "b2", "in_sync")],
                    &["r2"],
                ),
            ],
            ..FleetStatus::default()
        };
        let (v, landed, missing) = judge(&s, Some("canary"));
        assert_eq!((v, landed.len(), missing.len()), (Verdict::Landed, 1, 0));
        let (v, _, missing) = judge(&s, None);
        assert_eq!(v, Verdict::Pending);
        assert_eq!(missing[0].0, "r1");
        assert!(
            missing[0].1.starts_with("runs a1, last held"),
            "{missing:?}"
        );
        // No host at all in scope is not "landed".
        s.waves[0].hosts.clear();
        s.waves[0].on_commit.clear();
        assert_eq!(judge(&s, Some("canary")).0, Verdict::Pending);
        // A rollback beyond max_failed halts, whatever else.
        s.waves[1].failed = true;
        s.waves[1].rolled_back = vec![("r1".into(), "check web failed".into())];
        assert_eq!(
            judge(&s, Some("canary")).0,
            Verdict::Halted("r1".into(), "check web failed".into())
        );
    }
}
