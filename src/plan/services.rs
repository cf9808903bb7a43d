//! Service decisions: daemon-reload, enablement, start/stop, and the
//! restarts and reloads that changes of other resources call for.
//!
//! Pure, and used twice per converge: once to show the plan, and again
//! after packages and files are applied, with a fresh `systemctl show`,
//! because installing a package can add or change units.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::observed::UnitObs;
use crate::desired::model::{ResourceId, RunState, Service};

/// Unit directories: a managed file under one of them makes systemd's view
/// stale until a daemon-reload.
pub(crate) const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system/",
    "/usr/lib/systemd/system/",
    "/lib/systemd/system/",
    "/usr/local/lib/systemd/system/",
];

/// A systemctl verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceVerb {
    /// `systemctl enable`
    Enable,
    /// `systemctl disable`
    Disable,
    /// `systemctl start`
    Start,
    /// `systemctl stop`
    Stop,
    /// `systemctl restart`
    Restart,
    /// `systemctl try-restart` (restart only if running)
    TryRestart,
    /// `systemctl reload`
    Reload,
    /// `systemctl mask`
    Mask,
    /// `systemctl unmask`
    Unmask,
}

impl ServiceVerb {
    /// The systemctl word.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceVerb::Enable => "enable",
            ServiceVerb::Disable => "disable",
            ServiceVerb::Start => "start",
            ServiceVerb::Stop => "stop",
            ServiceVerb::Restart => "restart",
            ServiceVerb::TryRestart => "try-restart",
            ServiceVerb::Reload => "reload",
            ServiceVerb::Mask => "mask",
            ServiceVerb::Unmask => "unmask",
        }
    }
}

/// The service part of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServicePlan {
    /// Whether to run daemon-reload first, and why.
    pub daemon_reload: Option<String>,
    /// (unit, verb, reason), in apply order: enablement, start/stop, then
    /// restarts and reloads.
    pub actions: Vec<(String, ServiceVerb, String)>,
    /// Problems that stop the plan: (unit, message).
    pub problems: Vec<(String, String)>,
    /// Things the operator should know (live state not applicable).
    pub notes: Vec<String>,
    /// Notes about what happens later in this converge (see
    /// [`super::Plan::preview_notes`]).
    pub preview_notes: Vec<String>,
}

/// Plans the services. `changed` holds every other resource this converge
/// changes; `stale` those whose unit runs another configuration than the
/// one written; `packages_pending` says whether a package transaction comes
/// first (a unit it installs cannot be seen yet, so not-found is not an
/// error until after it).
pub(crate) fn plan_services(
    services: &[&Service],
    units: &BTreeMap<String, UnitObs>,
    changed: &BTreeSet<ResourceId>,
    stale: &BTreeSet<ResourceId>,
    changed_paths: &[&str],
    packages_pending: bool,
    live: bool,
) -> ServicePlan {
    let mut plan = ServicePlan::default();
    let mut enablement = Vec::new();
    let mut runs = Vec::new();
    let mut restarts = Vec::new();
    // Without a live systemd (`--root`) there is nothing to reload.
    if let Some(p) = changed_paths
        .iter()
        .filter(|_| live)
        .find(|p| UNIT_DIRS.iter().any(|d| p.starts_with(d)))
    {
        plan.daemon_reload = Some(format!("unit file {p} changes"));
    }
    for s in services {
        let missing = UnitObs::default();
        let u = units.get(&s.unit).unwrap_or(&missing);
        if live && u.need_daemon_reload && plan.daemon_reload.is_none() {
            plan.daemon_reload = Some(format!("systemd reports that {} changed on disk", s.unit));
        }
        if s.state == Some(RunState::Masked) {
            enablement.extend(mask_step(s, u));
            runs.extend(masked_run_step(s, u, &mut plan));
            continue;
        }
        match unmask_step(s, u) {
            Some(unmask) => enablement.push(unmask),
            None if !u.loaded && !not_loaded(s, u, changed_paths, packages_pending, &mut plan) => {
                continue;
            }
            None => {}
        }
        enablement.extend(enable_step(s, u));
        if !u.live {
            if s.state.is_some() || !s.restart_on.is_empty() || !s.reload_on.is_empty() {
                plan.notes.push(format!(
                    "{}: live state is not applicable with --root; only enablement is managed",
                    s.unit
                ));
            }
            continue;
        }
        let Some((run, starting)) = run_step(s, u, &mut plan) else {
            continue;
        };
        runs.extend(run);
        if starting || s.state == Some(RunState::Stopped) {
            continue;
        }
        restarts.extend(refresh_step(s, u, changed, stale, &mut plan));
    }
    plan.actions = enablement.into_iter().chain(runs).chain(restarts).collect();
    plan
}

/// A unit step: the unit, the verb, why.
type Action = (String, ServiceVerb, String);

/// A unit systemd does not know: a problem (masked; missing with nothing
/// in this converge to bring it), or a note that it is checked again once
/// its unit file or package is there. Whether to plan it further.
fn not_loaded(
    s: &Service,
    u: &UnitObs,
    changed_paths: &[&str],
    packages_pending: bool,
    plan: &mut ServicePlan,
) -> bool {
    match u.unit_file_state.as_str() {
        "masked" => {
            plan.problems
                .push((s.unit.clone(), format!("unit {} is masked", s.unit)));
            return false;
        }
        "masked-runtime" => {
            plan.problems.push((
                s.unit.clone(),
                format!(
                    "unit {} is masked for this boot (`systemctl mask --runtime`), which driftless leaves alone",
                    s.unit
                ),
            ));
            return false;
        }
        _ => {}
    }
    // Its unit file may be written by this converge.
    let file_here = changed_paths.iter().any(|p| {
        UNIT_DIRS
            .iter()
            .any(|d| p.strip_prefix(d) == Some(s.unit.as_str()))
    });
    if !packages_pending && !file_here {
        plan.problems.push((
            s.unit.clone(),
            format!("unit {} does not exist on the host", s.unit),
        ));
        return false;
    }
    plan.preview_notes.push(format!(
        "{} is not known yet; it is checked again after {}",
        s.unit,
        if packages_pending {
            "the package transaction"
        } else {
            "its unit file is written"
        }
    ));
    true
}

/// Masking a unit that is not masked (whether it exists or not: a mask
/// also keeps a unit a later package brings from ever starting).
fn mask_step(s: &Service, u: &UnitObs) -> Option<Action> {
    if u.unit_file_state == "masked" {
        return None;
    }
    let was = match u.unit_file_state.as_str() {
        "" if u.loaded => "loaded".to_owned(),
        "" => "not found".to_owned(),
        other => other.to_owned(),
    };
    Some((
        s.unit.clone(),
        ServiceVerb::Mask,
        format!("{was}, should be masked"),
    ))
}

/// Stopping a unit that should be masked and still runs (a mask alone
/// does not stop it).
fn masked_run_step(s: &Service, u: &UnitObs, plan: &mut ServicePlan) -> Option<Action> {
    if !u.live || !u.running() {
        return None;
    }
    if u.refuse_manual_stop {
        plan.problems
            .push((s.unit.clone(), refused(s, "stop", "RefuseManualStop")));
        return None;
    }
    Some((
        s.unit.clone(),
        ServiceVerb::Stop,
        "running, should be masked".to_owned(),
    ))
}

/// Unmasking a masked unit whose declaration says how it should run or
/// start at boot, as Puppet's and Ansible's service resources do; the
/// unit's enablement and state are then planned as for any other. A
/// runtime mask (`masked-runtime`, under /run) is not undone: whoever set
/// it meant it for this boot.
fn unmask_step(s: &Service, u: &UnitObs) -> Option<Action> {
    if u.unit_file_state != "masked" {
        return None;
    }
    let should = match (s.state, s.enabled) {
        (Some(RunState::Running), _) => "running",
        (Some(RunState::Stopped), _) => "stopped",
        (None, Some(true)) => "enabled",
        (None, Some(false)) => "disabled",
        (Some(RunState::Masked), _) | (None, None) => return None,
    };
    Some((
        s.unit.clone(),
        ServiceVerb::Unmask,
        format!("masked, should be {should}"),
    ))
}

/// Enabling or disabling, when `enabled` differs.
fn enable_step(s: &Service, u: &UnitObs) -> Option<Action> {
    let (verb, why) = match (s.enabled, u.enabled()) {
        (Some(true), Some(false)) => (ServiceVerb::Enable, "disabled, should be enabled"),
        (Some(false), Some(true)) => (ServiceVerb::Disable, "enabled, should be disabled"),
        (Some(true), None) if !u.loaded => (ServiceVerb::Enable, "should be enabled"),
        _ => return None,
    };
    Some((s.unit.clone(), verb, why.to_owned()))
}

/// Why systemctl refuses `verb` on the unit (`property=yes`).
fn refused(s: &Service, verb: &str, property: &str) -> String {
    format!(
        "unit {} refuses a manual {verb} ({property}=yes): systemctl cannot {verb} it",
        s.unit
    )
}

/// Starting or stopping, when `state` differs, and whether it starts.
/// `None`: the unit refuses it (a problem is recorded).
fn run_step(s: &Service, u: &UnitObs, plan: &mut ServicePlan) -> Option<(Option<Action>, bool)> {
    // Units that refuse a manual start or stop (auditd): systemctl cannot
    // do it, so say so before anything changes.
    Some(match (s.state, u.running()) {
        (Some(RunState::Running), false) if u.refuse_manual_start => {
            plan.problems
                .push((s.unit.clone(), refused(s, "start", "RefuseManualStart")));
            return None;
        }
        (Some(RunState::Stopped), true) if u.refuse_manual_stop => {
            plan.problems
                .push((s.unit.clone(), refused(s, "stop", "RefuseManualStop")));
            return None;
        }
        (Some(RunState::Running), false) => (
            Some((
                s.unit.clone(),
                ServiceVerb::Start,
                format!("{}, should be running", state_word(u)),
            )),
            true,
        ),
        (Some(RunState::Stopped), true) => (
            Some((
                s.unit.clone(),
                ServiceVerb::Stop,
                "running, should be stopped".to_owned(),
            )),
            false,
        ),
        _ => (None, false),
    })
}

/// A restart (or reload) because something it depends on changed.
fn refresh_step(
    s: &Service,
    u: &UnitObs,
    changed: &BTreeSet<ResourceId>,
    stale: &BTreeSet<ResourceId>,
    plan: &mut ServicePlan,
) -> Option<Action> {
    let hit = |refs: &[ResourceId]| refs.iter().find(|r| changed.contains(*r)).cloned();
    if let Some(r) = hit(&s.restart_on) {
        let verb = if s.state == Some(RunState::Running) {
            ServiceVerb::Restart
        } else {
            ServiceVerb::TryRestart
        };
        let why = match &s.restart_command {
            Some(argv) => format!("{r} changes (restarted with {})", argv.join(" ")),
            None if u.refuse_manual_stop => {
                plan.problems.push((
                    s.unit.clone(),
                    format!(
                        "{}; restart_on needs `restart_command` (for auditd: [\"/usr/sbin/service\", \"auditd\", \"restart\"])",
                        refused(s, "restart", "RefuseManualStop")
                    ),
                ));
                return None;
            }
            None => format!("{r} changes"),
        };
        return Some((s.unit.clone(), verb, why));
    }
    // A kind whose resources this unit reads (a firewalld zone) reloads it
    // as `reload_on` would, also for one pruning takes away, which no
    // declaration can name any more; and when the unit runs another
    // configuration than the one written (changed at runtime only).
    let reads = |r: &&ResourceId| r.kind.reloads() == Some(s.unit.as_str());
    let why = hit(&s.reload_on)
        .or_else(|| changed.iter().find(reads).cloned())
        .map(|r| format!("{r} changes"))
        .or_else(|| {
            stale
                .iter()
                .find(reads)
                .map(|r| format!("{r}: the running configuration differs from the one written"))
        })?;
    u.running()
        .then(|| (s.unit.clone(), ServiceVerb::Reload, why))
}

fn state_word(u: &UnitObs) -> String {
    if u.active_state.is_empty() {
        "not running".to_owned()
    } else {
        u.active_state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;

    fn svc(
        unit: &str,
        enabled: Option<bool>,
        state: Option<RunState>,
        restart_on: &[&str],
    ) -> Service {
        Service {
            unit: unit.into(),
            enabled,
            state,
            restart_on: restart_on
                .iter()
                .map(|p| ResourceId::new(Kind::File, *p))
                .collect(),
            reload_on: Vec::new(),
            restart_command: None,
        }
    }

    fn unit(active: &str, file: &str) -> UnitObs {
        UnitObs {
            loaded: true,
            active_state: active.into(),
            unit_file_state: file.into(),
            need_daemon_reload: false,
            live: true,
            refuse_manual_start: false,
            refuse_manual_stop: false,
        }
    }

    /// [`super::plan_services`] with nothing running another
    /// configuration than the one written.
    fn plan_services(
        services: &[&Service],
        units: &BTreeMap<String, UnitObs>,
        changed: &BTreeSet<ResourceId>,
        changed_paths: &[&str],
        packages_pending: bool,
        live: bool,
    ) -> ServicePlan {
        super::plan_services(
            services,
            units,
            changed,
            &BTreeSet::new(),
            changed_paths,
            packages_pending,
            live,
        )
    }

    fn verbs(p: &ServicePlan) -> Vec<String> {
        p.actions
            .iter()
            .map(|(u, v, _)| format!("{} {u}", v.as_str()))
            .collect()
    }

    #[test]
    fn converged_services_need_nothing() {
        let s = svc(
            "a.service",
            Some(true),
            Some(RunState::Running),
            &["/etc/a.conf"],
        );
        let units = BTreeMap::from([("a.service".to_owned(), unit("active", "enabled"))]);
        let p = plan_services(&[&s], &units, &BTreeSet::new(), &[], false, true);
        assert_eq!(p, ServicePlan::default());
    }

    #[test]
    fn order_is_enablement_then_start_stop_then_restarts() {
        let a = svc("a.service", Some(true), Some(RunState::Running), &[]);
        let b = svc("b.service", Some(false), Some(RunState::Stopped), &[]);
        let c = svc("c.service", None, Some(RunState::Running), &["/etc/c.conf"]);
        let units = BTreeMap::from([
            ("a.service".to_owned(), unit("inactive", "disabled")),
            ("b.service".to_owned(), unit("active", "enabled")),
            ("c.service".to_owned(), unit("active", "static")),
        ]);
        let changed = BTreeSet::from([ResourceId::new(Kind::File, "/etc/c.conf")]);
        let p = plan_services(
            &[&a, &b, &c],
            &units,
            &changed,
            &["/etc/c.conf"],
            false,
            true,
        );
        assert_eq!(
            verbs(&p),
            [
                "enable a.service",
                "disable b.service",
                "start a.service",
                "stop b.service",
                "restart c.service"
            ]
        );
        assert_eq!(p.daemon_reload, None);
    }

    #[test]
    fn a_masked_unit_is_stopped_and_masked_and_unmasked_when_declared_to_run() {
        let m = svc("m.service", None, Some(RunState::Masked), &[]);
        let units = BTreeMap::from([("m.service".to_owned(), unit("active", "enabled"))]);
        let p = plan_services(&[&m], &units, &BTreeSet::new(), &[], false, true);
        assert_eq!(verbs(&p), ["mask m.service", "stop m.service"]);
        assert_eq!(p.actions[0].2, "enabled, should be masked");
        // Masked already and stopped: nothing; a unit that does not exist
        // is masked too (nothing may bring it later).
        let done = BTreeMap::from([("m.service".to_owned(), masked())]);
        assert!(
            plan_services(&[&m], &done, &BTreeSet::new(), &[], false, true)
                .actions
                .is_empty()
        );
        let p = plan_services(&[&m], &BTreeMap::new(), &BTreeSet::new(), &[], false, true);
        assert_eq!(p.actions[0].2, "not found, should be masked");

        // Declared to run: unmasked, enabled and started; declaring only
        // restarts of a masked unit is still a problem.
        let r = svc("m.service", Some(true), Some(RunState::Running), &[]);
        let p = plan_services(&[&r], &done, &BTreeSet::new(), &[], false, true);
        assert_eq!(
            verbs(&p),
            ["unmask m.service", "enable m.service", "start m.service"]
        );
        assert_eq!(p.actions[0].2, "masked, should be running");
        let only_refresh = svc("m.service", None, None, &["/etc/m.conf"]);
        let p = plan_services(&[&only_refresh], &done, &BTreeSet::new(), &[], false, true);
        assert_eq!(p.problems.len(), 1, "{p:?}");
    }

    fn masked() -> UnitObs {
        UnitObs {
            loaded: false,
            ..unit("inactive", "masked")
        }
    }

    #[test]
    fn a_service_being_started_is_not_also_restarted() {
        let a = svc("a.service", None, Some(RunState::Running), &["/etc/a.conf"]);
        let units = BTreeMap::from([("a.service".to_owned(), unit("failed", "disabled"))]);
        let changed = BTreeSet::from([ResourceId::new(Kind::File, "/etc/a.conf")]);
        assert_eq!(
            verbs(&plan_services(&[&a], &units, &changed, &[], false, true)),
            ["start a.service"]
        );
    }

    #[test]
    fn unmanaged_state_uses_try_restart_and_reload_needs_a_running_unit() {
        let a = svc("a.service", None, None, &["/etc/a.conf"]);
        let mut b = svc("b.service", None, None, &[]);
        b.reload_on = vec![ResourceId::new(Kind::File, "/etc/b.conf")];
        let units = BTreeMap::from([
            ("a.service".to_owned(), unit("active", "enabled")),
            ("b.service".to_owned(), unit("inactive", "enabled")),
        ]);
        let changed = BTreeSet::from([
            ResourceId::new(Kind::File, "/etc/a.conf"),
            ResourceId::new(Kind::File, "/etc/b.conf"),
        ]);
        assert_eq!(
            verbs(&plan_services(
                &[&a, &b],
                &units,
                &changed,
                &[],
                false,
                true
            )),
            ["try-restart a.service"]
        );
    }

    /// A firewalld zone reloads firewalld without a `reload_on`, and
    /// nothing else.
    #[test]
    fn a_kind_that_names_its_unit_reloads_it_without_reload_on() {
        let fw = svc("firewalld.service", None, Some(RunState::Running), &[]);
        let other = svc("b.service", None, Some(RunState::Running), &[]);
        let units = BTreeMap::from([
            ("firewalld.service".to_owned(), unit("active", "enabled")),
            ("b.service".to_owned(), unit("active", "enabled")),
        ]);
        let changed = BTreeSet::from([ResourceId::new(Kind::Firewalld, "public")]);
        let p = plan_services(&[&fw, &other], &units, &changed, &[], false, true);
        assert_eq!(verbs(&p), ["reload firewalld.service"]);
        assert_eq!(p.actions[0].2, "firewalld:public changes");
        // Nothing changes, but firewalld runs a zone changed at runtime.
        let p = super::plan_services(
            &[&fw, &other],
            &units,
            &BTreeSet::new(),
            &changed,
            &[],
            false,
            true,
        );
        assert_eq!(verbs(&p), ["reload firewalld.service"]);
        assert_eq!(
            p.actions[0].2,
            "firewalld:public: the running configuration differs from the one written"
        );
    }

    #[test]
    fn missing_units_are_errors_unless_a_package_transaction_comes_first() {
        let a = svc("a.service", Some(true), Some(RunState::Running), &[]);
        let units = BTreeMap::from([(
            "a.service".to_owned(),
            UnitObs {
                live: true,
                ..UnitObs::default()
            },
        )]);
        let p = plan_services(&[&a], &units, &BTreeSet::new(), &[], false, true);
        assert_eq!(
            p.problems,
            vec![(
                "a.service".to_owned(),
                "unit a.service does not exist on the host".to_owned()
            )]
        );
        let p = plan_services(&[&a], &units, &BTreeSet::new(), &[], true, true);
        assert!(p.problems.is_empty());
        assert_eq!(verbs(&p), ["enable a.service", "start a.service"]);
    }

    #[test]
    fn unit_files_and_need_daemon_reload_trigger_one_reload() {
        let a = svc("a.service", None, None, &[]);
        let mut u = unit("active", "enabled");
        let units = BTreeMap::from([("a.service".to_owned(), u.clone())]);
        let p = plan_services(
            &[&a],
            &units,
            &BTreeSet::new(),
            &["/etc/systemd/system/a.service.d/x.conf"],
            false,
            true,
        );
        assert!(p.daemon_reload.is_some());
        // With --root there is no live systemd to reload.
        let p = plan_services(
            &[&a],
            &units,
            &BTreeSet::new(),
            &["/etc/systemd/system/a.service"],
            false,
            false,
        );
        assert!(p.daemon_reload.is_none());
        u.need_daemon_reload = true;
        let units = BTreeMap::from([("a.service".to_owned(), u)]);
        assert!(
            plan_services(&[&a], &units, &BTreeSet::new(), &[], false, true)
                .daemon_reload
                .is_some()
        );
    }

    #[test]
    fn without_live_state_only_enablement_is_managed() {
        let a = svc("a.service", Some(true), Some(RunState::Running), &[]);
        let units = BTreeMap::from([(
            "a.service".to_owned(),
            UnitObs {
                loaded: true,
                unit_file_state: "disabled".into(),
                ..UnitObs::default()
            },
        )]);
        let p = plan_services(&[&a], &units, &BTreeSet::new(), &[], false, true);
        assert_eq!(verbs(&p), ["enable a.service"]);
        assert_eq!(p.notes.len(), 1);
    }

    /// Regression: a unit whose file this converge writes was said to be
    /// "checked again after the package transaction" when no package was
    /// involved; the note names the real cause, and is a preview note
    /// (not repeated after the converge ran).
    #[test]
    fn a_unit_not_known_yet_says_what_it_waits_for() {
        let a = svc("a.service", Some(true), Some(RunState::Running), &[]);
        let units = BTreeMap::from([(
            "a.service".to_owned(),
            UnitObs {
                live: true,
                ..UnitObs::default()
            },
        )]);
        let written = ["/etc/systemd/system/a.service"];
        let p = plan_services(&[&a], &units, &BTreeSet::new(), &written, false, true);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(
            p.preview_notes,
            ["a.service is not known yet; it is checked again after its unit file is written"]
        );
        let p = plan_services(&[&a], &units, &BTreeSet::new(), &[], true, true);
        assert!(
            p.preview_notes[0].ends_with("after the package transaction"),
            "{:?}",
            p.preview_notes
        );
    }
}
