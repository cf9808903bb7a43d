//! `plan`: what a converge would change. Changes nothing on the host (a git
//! source fetches into the state directory's cache).

use std::path::PathBuf;

use anyhow::Result;

use super::context::{App, Run, SourceRequest, absolute};
use super::load::{LoadRequest, load};
use crate::agent::policy::{self, Decision};
use crate::agent::reboot::{CORE_PACKAGES, RebootMode, RebootRecord};
use crate::agent::short;
use crate::cancel::Cancel;
use crate::converge::{self, Event, PrepareError, Prepared, Sink, events};
use crate::desired::{DesiredState, Diagnostic};
use crate::outcome::Outcome;
use crate::plan::packages::PackageChange;
use crate::plan::{Op, PlanProblem};
use crate::source;
use crate::store::inventory::Inventory;
use crate::system::fsroot::FsRoot;

/// What to plan.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Source and host.
    pub source: SourceRequest,
    /// The host's root (`/`).
    pub root: PathBuf,
}

/// What `plan` found: the changes a converge would make.
pub type PlanResult = Run;

/// Plans the host's desired state against `req.root`.
pub fn plan(app: &App, req: &PlanRequest, sink: &mut dyn Sink, cancel: &Cancel) -> PlanResult {
    let mut r = Run::default();
    if let Err(e) = plan_into(app, req, sink, cancel, &mut r) {
        r.fail(e);
    }
    r
}

fn plan_into(
    app: &App,
    req: &PlanRequest,
    sink: &mut dyn Sink,
    cancel: &Cancel,
    r: &mut Run,
) -> Result<()> {
    let loaded = match load(
        app,
        &LoadRequest {
            source: &req.source,
            purpose: source::Purpose::Preview,
            root: &req.root,
        },
        None,
        &mut r.subject,
        sink,
        cancel,
    )? {
        Ok(l) => l,
        Err(invalid) => {
            r.outcome = Outcome::Invalid;
            r.diagnostics = invalid.diagnostics;
            return Ok(());
        }
    };
    let root = converge::open_root(&req.root, false)?;
    r.root = Some(display_root(&req.root, root.as_ref()));
    // What a converge would do with this desired state: the plan says it
    // would hold, and its exit code agrees (3).
    let state = app.store.load_state()?;
    let mut decision = policy::decide(&state, &loaded.key, true);
    // A new commit the fleet's rollout gate holds back (asked read-only:
    // no rollout slot is taken).
    if matches!(decision, Decision::Apply)
        && let Some(b) = super::fleet::gated(app, &state, &loaded.key, &loaded.desired, None)?
    {
        decision = Decision::HoldAtLastGood { why: b.why };
    }
    let (desired, source_desc, held) = match choose(app, decision)? {
        Chosen::Loaded => (loaded.desired, loaded.source, false),
        Chosen::Nothing { why } => {
            r.outcome = Outcome::Held;
            r.error = Some(format!("{why}; `converge` would apply nothing"));
            return Ok(());
        }
        Chosen::NoLastGood { why } => {
            r.outcome = Outcome::Held;
            r.error = Some(format!(
                "{why}; there is no last good state yet, so `converge` would apply nothing"
            ));
            return Ok(());
        }
        Chosen::LastGood { last_good, why } => {
            r.notes.push(format!(
                "{why}; `converge` would hold the host at the last good state {}: these are its changes",
                short(&last_good.key)
            ));
            (
                last_good.desired,
                format!("last good {} ({})", short(&last_good.key), last_good.source),
                true,
            )
        }
    };
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
            failed.fill(r);
            return Ok(());
        }
    };
    r.outcome = if held {
        Outcome::Held
    } else if prepared.plan.is_empty() {
        Outcome::InSync
    } else {
        Outcome::ChangesPending
    };
    r.notes.extend(prepared.plan.preview_notes);
    r.notes.extend(prepared.plan.notes);
    r.notes.extend(reboot_notes(
        &prepared.plan.changes,
        state.reboot.as_ref(),
        app.settings.reboot.mode,
    ));
    r.changes = prepared.plan.changes;
    Ok(())
}

/// Whether installing or updating the package `name` makes a reboot
/// required: the core packages, and the kernel's own flavours
/// (`kernel-rt`, `kernel-64k-core`), not its headers or tools.
fn needs_reboot(name: &str) -> bool {
    CORE_PACKAGES.contains(&name)
        || name == "kernel-rt"
        || (name.starts_with("kernel-") && name.ends_with("-core"))
}

/// What `plan` says about reboots (docs/reboots.md): the host's state as
/// its daemon last found it, and whether these changes will make a reboot
/// required (a kernel or another core package installed or updated).
fn reboot_notes(
    changes: &[crate::plan::Change],
    record: Option<&RebootRecord>,
    mode: RebootMode,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(r) = record {
        if let Some(since) = &r.required_since {
            let mut n = format!(
                "the host needs a reboot (since {since}, as its daemon last found): {}",
                r.reasons.join("; ")
            );
            if let Some(w) = &r.waiting {
                n.push_str(&format!("; waiting: {w}"));
            }
            notes.push(n);
        }
        if !r.services.is_empty() {
            notes.push(format!(
                "services that need a restart (they map replaced files): {}",
                r.services.join(", ")
            ));
        }
    }
    let core: Vec<&str> = changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::Package {
                name,
                change:
                    PackageChange::Install { .. }
                    | PackageChange::Upgrade { .. }
                    | PackageChange::Downgrade { .. },
            } if needs_reboot(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !core.is_empty() {
        let then = match mode {
            RebootMode::Never => "driftless will not reboot it ([reboot] mode = \"never\")",
            RebootMode::Report => {
                "`driftless reboot --now` reboots it ([reboot] mode = \"report\")"
            }
            RebootMode::WhenRequired => "the daemon reboots it in a [reboot] window",
        };
        notes.push(format!(
            "after this converge the host will need a reboot ({} changed): {then}",
            core.join(", ")
        ));
    }
    notes
}

/// What a run applies, once the policy (and the fleet's gate) decided: the
/// one answer `plan` and `converge` both word.
pub(super) enum Chosen {
    /// The desired state loaded from the source.
    Loaded,
    /// The last good state, which the host is held at, and why.
    LastGood {
        /// The state to apply.
        last_good: Box<crate::store::lastgood::LastGood>,
        /// Why the loaded one is not applied.
        why: String,
    },
    /// Nothing: the host is paused or pinned.
    Nothing {
        /// Why.
        why: String,
    },
    /// Nothing: the host is to be held at its last good state, and there
    /// is none yet.
    NoLastGood {
        /// Why it is held.
        why: String,
    },
}

/// What `decision` applies.
pub(super) fn choose(app: &App, decision: Decision) -> Result<Chosen> {
    Ok(match decision {
        Decision::Apply => Chosen::Loaded,
        Decision::Paused { why } | Decision::Pinned { why } => Chosen::Nothing { why },
        Decision::HoldAtLastGood { why } => match app.store.load_last_good()? {
            Some(last_good) => Chosen::LastGood {
                last_good: Box::new(last_good),
                why,
            },
            None => Chosen::NoLastGood { why },
        },
    })
}

/// Why a plan could not be made, for a result.
pub(super) enum Unprepared {
    /// The plan cannot be made against this host.
    Unplannable(Vec<PlanProblem>),
    /// The desired state is invalid.
    Invalid(Vec<Diagnostic>),
}

impl Unprepared {
    /// Puts it into a run's result.
    pub(super) fn fill(self, r: &mut Run) {
        match self {
            Unprepared::Unplannable(p) => {
                r.outcome = Outcome::Error;
                r.error = Some(format!(
                    "cannot plan: {}",
                    crate::words::count(p.len(), "problem")
                ));
                r.plan_problems = p;
            }
            Unprepared::Invalid(d) => {
                r.outcome = Outcome::Invalid;
                r.diagnostics = d;
            }
        }
    }
}

/// Plans against the host. `Ok(Err(_))`: the plan cannot be made.
/// What the repo no longer declares (by `inventory`) is planned too, put
/// back or removed, with its reason on each change.
pub(super) fn prepare(
    app: &App,
    mut desired: DesiredState,
    inventory: &Inventory,
    source_desc: String,
    root: Option<&FsRoot>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Result<Prepared, Unprepared>> {
    let cache = app.store.load_stat_cache();
    // A download the host lacks is fetched here, before anything changes
    // (`plan` and a dry run fetch too, into the object store, as a git
    // source fetches into its cache).
    let contents = |sha: &[u8; 32], url: Option<&str>| {
        converge::downloads::content(&app.store, &app.settings.download, sha, url, cancel)
    };
    let pruning = super::prune::dropped(inventory, &mut desired, app.settings.prune_packages);
    let secrets = app.store.secret_contents();
    match converge::prepare(
        desired,
        source_desc,
        root,
        &cache,
        &contents,
        secrets,
        cancel,
    ) {
        Ok(mut p) => {
            pruning.annotate(&mut p.plan);
            sink.event(&Event::Planned {
                changes: events::count_kinds(p.plan.changes.iter().map(|c| c.resource.clone())),
            });
            Ok(Ok(p))
        }
        Err(PrepareError::Unplannable(p)) => Ok(Err(Unprepared::Unplannable(p))),
        Err(PrepareError::Invalid(d)) => Ok(Err(Unprepared::Invalid(d))),
        Err(PrepareError::Other(e)) => Err(e),
    }
}

/// The root as given, made absolute, and whether it is missing.
fn display_root(asked: &std::path::Path, root: Option<&FsRoot>) -> String {
    let shown = absolute(asked).display().to_string();
    if root.is_some() {
        shown
    } else {
        format!("{shown} (missing: planned as empty)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::{Kind, ResourceId};

    fn package(name: &str, change: PackageChange) -> crate::plan::Change {
        crate::plan::Change::new(
            &ResourceId::new(Kind::Package, name),
            Op::Package {
                name: name.into(),
                change,
            },
            Vec::new(),
        )
    }

    #[test]
    fn a_plan_says_a_reboot_is_needed_now_and_after_a_kernel_update() {
        let install = |n: &str| package(n, PackageChange::Install { spec: n.into() });
        // Tools and headers of the kernel, or removing a core package, do
        // not make a reboot required.
        let quiet = [
            install("kernel-headers"),
            install("kernel-tools"),
            install("nginx"),
            package(
                "glibc",
                PackageChange::Remove {
                    installed: vec!["glibc-2.34-1.x86_64".into()],
                },
            ),
        ];
        assert!(reboot_notes(&quiet, None, RebootMode::Report).is_empty());
        let notes = reboot_notes(
            &[install("kernel-core"), install("nginx"), install("glibc")],
            None,
            RebootMode::WhenRequired,
        );
        assert_eq!(
            notes,
            [
                "after this converge the host will need a reboot (kernel-core, glibc changed): the daemon reboots it in a [reboot] window"
            ]
        );
        let record = RebootRecord {
            required_since: Some("2026-12-07T10:00:00Z".into()),
            reasons: vec!["kernel 9.9 is installed, 1.0 is running".into()],
            waiting: Some("outside the reboot window".into()),
            services: vec!["httpd.service".into()],
            ..RebootRecord::default()
        };
        let notes = reboot_notes(&[], Some(&record), RebootMode::Never);
        assert_eq!(
            notes,
            [
                "the host needs a reboot (since 2026-12-07T10:00:00Z, as its daemon last found): kernel 9.9 is installed, 1.0 is running; waiting: outside the reboot window",
                "services that need a restart (they map replaced files): httpd.service"
            ]
        );
        assert!(
            reboot_notes(&[install("kernel-rt")], None, RebootMode::Never)[0]
                .ends_with("driftless will not reboot it ([reboot] mode = \"never\")")
        );
    }
}
