//! Observing the host and planning against it, with read-only calls only:
//! a stat (and hash) of each managed path, one `rpm -q` for the declared
//! packages, one `systemctl show` for the declared units, and one dnf
//! metadata query only when a `latest` package is declared.

use std::collections::BTreeMap;

use anyhow::Result;
use tracing::debug;

use crate::cancel::Cancel;
use crate::desired::{DesiredState, Diagnostic};
use crate::plan::observed::{Accounts, Observed, ObservedHost};
use crate::plan::rpmver::Evr;
use crate::plan::{self, Plan, PlanProblem};
use crate::system::{accounts, dnf, fsroot::FsRoot, rpm, systemctl};

/// Why nothing was changed: the desired state or plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The config repo is invalid.
    #[error("the config repo is invalid")]
    Invalid(Vec<Diagnostic>),
    /// The plan cannot be made against this host.
    #[error("cannot plan")]
    Unplannable(Vec<PlanProblem>),
    /// Anything else (I/O).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A desired state with its plan against the host, ready to apply.
pub struct Prepared {
    /// What the host should be.
    pub desired: DesiredState,
    /// Where the desired state came from (`directory …`, `commit …`).
    pub source: String,
    /// The plan.
    pub plan: Plan,
    /// The `latest` versions the repositories offered when planning.
    pub latest: BTreeMap<String, Evr>,
}

/// Plans `desired` against the host under `root` (`None`: a root that does
/// not exist yet, as for a dry run into a fresh directory). Changes nothing.
pub fn prepare(
    desired: DesiredState,
    source: String,
    root: Option<&FsRoot>,
    cancel: &Cancel,
) -> Result<Prepared, PrepareError> {
    let observed = match root {
        Some(root) => observe(root, &desired, None, cancel)?,
        None => observe_empty(&desired),
    };
    let plan = plan::plan(&desired, &observed).map_err(PrepareError::Unplannable)?;
    Ok(Prepared {
        desired,
        source,
        plan,
        latest: observed.latest,
    })
}

/// Reads the current state of everything `desired` manages. `latest_known`
/// reuses `latest` versions already known instead of asking the
/// repositories again.
pub fn observe(
    root: &FsRoot,
    desired: &DesiredState,
    latest_known: Option<&BTreeMap<String, Evr>>,
    cancel: &Cancel,
) -> Result<ObservedHost> {
    let mut host = ObservedHost {
        accounts: accounts::read(root)?,
        live: root.is_live(),
        ..ObservedHost::default()
    };
    let names = desired.package_names(false);
    let latest = desired.package_names(true);
    host.packages = rpm::query(root.path(), &names, cancel)?;
    match latest_known {
        Some(known) => host.latest = known.clone(),
        // A failure is kept for the planner: the repository may be
        // declared in this converge and exist only after its repo step.
        None if !latest.is_empty() => match dnf::latest(root.path(), &latest, cancel) {
            Ok(l) => host.latest = l,
            Err(e) => host.latest_error = Some(format!("{e:#}")),
        },
        None => {}
    }
    let units: Vec<String> = desired.services().iter().map(|s| s.unit.clone()).collect();
    host.units = systemctl::unit_states(root, &units, cancel)?;
    for path in plan::paths_to_observe(desired) {
        let o = root.observe(&path)?;
        debug!(path, observed = o.kind_word(), "observed");
        host.paths.insert(path, o);
    }
    Ok(host)
}

/// What an empty root looks like: every path missing, with all ancestors.
fn observe_empty(desired: &DesiredState) -> ObservedHost {
    let mut host = ObservedHost {
        accounts: Accounts::parse("", ""),
        ..ObservedHost::default()
    };
    for path in plan::paths_to_observe(desired) {
        let missing_parents = path
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| path[..i].to_owned())
            .collect();
        host.paths
            .insert(path, Observed::Missing { missing_parents });
    }
    host
}
