//! Whether each `[[command]]` runs in this converge, and why: its guards
//! (observed before planning) and its refreshes (the changes planned or
//! applied before it in the same converge).

use std::collections::BTreeSet;

use super::change::{Change, Op};
use super::observed::{GuardRun, Guards};
use crate::desired::model::{Command, Kind, ResourceId};

/// The run of `c`, with its reasons, or `None` when it is not due.
/// `changed` holds every resource changed before it in this converge.
pub(crate) fn decide(
    c: &Command,
    guards: Option<&Guards>,
    changed: &BTreeSet<ResourceId>,
) -> Option<Change> {
    let g = guards.cloned().unwrap_or_default();
    let mut reasons = Vec::new();
    if !c.refresh_on.is_empty() {
        let hit: Vec<String> = c
            .refresh_on
            .iter()
            .filter(|r| changed.contains(r))
            .map(ToString::to_string)
            .collect();
        if hit.is_empty() {
            return None;
        }
        reasons.push(format!("{} changed", hit.join(", ")));
    }
    if let Some(path) = &c.creates {
        match g.creates_exists {
            Some(true) => return None,
            Some(false) => reasons.push(format!("{path} does not exist")),
            None => reasons.push(format!("{path} does not exist (the root does not yet)")),
        }
    }
    if c.unless.is_some() {
        match &g.unless {
            Some(GuardRun::Exited(0, _)) => return None,
            Some(GuardRun::Exited(code, out)) => {
                reasons.push(format!("`unless` failed (exit {code}){}", output(out)));
            }
            Some(GuardRun::NotRunnable(why)) => reasons.push(format!(
                "`unless` cannot run yet ({why}): it runs when the command is about to"
            )),
            None => reasons.push("`unless` was not run (the root does not exist yet)".into()),
        }
    }
    if c.onlyif.is_some() {
        match &g.onlyif {
            Some(GuardRun::Exited(0, out)) => {
                reasons.push(format!("`onlyif` succeeded{}", output(out)));
            }
            Some(GuardRun::Exited(..)) => return None,
            Some(GuardRun::NotRunnable(why)) => reasons.push(format!(
                "`onlyif` cannot run yet ({why}): it runs when the command is about to"
            )),
            None => reasons.push("`onlyif` was not run (the root does not exist yet)".into()),
        }
    }
    Some(Change::new(
        &ResourceId::new(Kind::Command, &c.name),
        Op::RunCommand {
            name: c.name.clone(),
            argv: c.argv.clone(),
            command: Box::new(c.clone()),
        },
        reasons,
    ))
}

/// What a guard printed, for its reason: `: LAST LINES`, or nothing.
fn output(out: &str) -> String {
    if out.is_empty() {
        String::new()
    } else {
        format!(": {out}")
    }
}

/// The runs of `commands`, in declaration order, after `before` (the
/// changes planned or applied ahead of them): a command refreshed by an
/// earlier command's run counts that run.
pub(super) fn plan_commands<'a, 'b>(
    commands: impl Iterator<Item = &'a Command>,
    host_guards: &std::collections::BTreeMap<String, Guards>,
    before: impl Iterator<Item = &'b Change>,
) -> Vec<Change> {
    let mut changed: BTreeSet<ResourceId> = before.map(|c| c.resource.clone()).collect();
    let mut out = Vec::new();
    for c in commands {
        if let Some(run) = decide(c, host_guards.get(&c.name), &changed) {
            changed.insert(run.resource.clone());
            out.push(run);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn command(name: &str) -> Command {
        Command {
            name: name.into(),
            argv: vec!["/usr/sbin/sysctl".into(), "--system".into()],
            timeout: Duration::from_secs(5),
            ..Command::default()
        }
    }

    fn file_change(path: &str) -> Change {
        Change::new(
            &ResourceId::new(Kind::File, path),
            Op::RemoveFile { path: path.into() },
            vec![],
        )
    }

    fn creates(exists: bool) -> Guards {
        Guards {
            creates_exists: Some(exists),
            ..Guards::default()
        }
    }

    fn unless(code: i32) -> Guards {
        Guards {
            unless: Some(GuardRun::Exited(code, String::new())),
            ..Guards::default()
        }
    }

    fn onlyif(code: i32) -> Guards {
        Guards {
            onlyif: Some(GuardRun::Exited(code, String::new())),
            ..Guards::default()
        }
    }

    fn runs(c: &Command, g: Guards, before: &[Change]) -> Option<Vec<String>> {
        let guards = BTreeMap::from([(c.name.clone(), g)]);
        plan_commands(std::iter::once(c), &guards, before.iter())
            .pop()
            .map(|ch| ch.reasons)
    }

    #[test]
    fn refresh_on_runs_once_when_a_named_resource_changed_and_never_otherwise() {
        let mut c = command("sysctl");
        c.refresh_on = vec![ResourceId::new(Kind::File, "/etc/sysctl.d/90-app.conf")];
        assert_eq!(runs(&c, Guards::default(), &[]), None);
        assert_eq!(
            runs(&c, Guards::default(), &[file_change("/etc/other")]),
            None
        );
        assert_eq!(
            runs(
                &c,
                Guards::default(),
                &[
                    file_change("/etc/sysctl.d/90-app.conf"),
                    file_change("/etc/sysctl.d/90-app.conf")
                ]
            ),
            Some(vec!["file:/etc/sysctl.d/90-app.conf changed".to_owned()])
        );
    }

    #[test]
    fn each_guard_can_hold_a_command_back() {
        let mut c = command("ca");
        c.creates = Some("/etc/pki/done".into());
        assert_eq!(runs(&c, creates(true), &[]), None);
        assert_eq!(
            runs(&c, creates(false), &[]),
            Some(vec!["/etc/pki/done does not exist".to_owned()])
        );
        let mut c = command("ca");
        c.unless = Some(vec!["/bin/true".into()]);
        assert_eq!(runs(&c, unless(0), &[]), None);
        assert_eq!(
            runs(&c, unless(1), &[]),
            Some(vec!["`unless` failed (exit 1)".to_owned()])
        );
        let mut c = command("ca");
        c.onlyif = Some(vec!["/bin/true".into()]);
        assert_eq!(runs(&c, onlyif(2), &[]), None);
        assert!(runs(&c, onlyif(0), &[]).is_some());
        // A refresh with a guard: both must say run.
        c.refresh_on = vec![ResourceId::new(Kind::File, "/etc/x")];
        assert_eq!(runs(&c, onlyif(0), &[]), None);
    }

    #[test]
    fn a_command_refreshed_by_an_earlier_command_runs_after_it() {
        let mut first = command("first");
        first.creates = Some("/var/lib/app/.migrated".into());
        let mut second = command("second");
        second.refresh_on = vec![ResourceId::new(Kind::Command, "first")];
        let guards = BTreeMap::from([("first".to_owned(), creates(false))]);
        let planned = plan_commands([&first, &second].into_iter(), &guards, [].iter());
        let names: Vec<String> = planned.iter().map(|c| c.resource.to_string()).collect();
        assert_eq!(names, ["command:first", "command:second"]);
    }
}
