//! Observing the host and planning against it, with read-only calls only:
//! a stat (and hash) of each managed path, one `rpm -q` for the declared
//! packages, one `systemctl show` for the declared units (both beside the
//! stats, on threads of their own), one dnf metadata query only when a
//! `latest` package is declared, and the guards of declared commands.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use tracing::debug;

use super::commands;
use crate::cancel::Cancel;
use crate::desired::kinds::SettingDecl;
use crate::desired::model::{
    Ensure, Form, PackageState, PathDecl, PathForm, Prim, Resource, ResourceId,
};
use crate::desired::{DesiredState, Diagnostic};
use crate::plan::observed::{
    Accounts, CachedFile, Observed, ObservedHost, PackageCache, RepoOverride, SettingObs,
    StatCache, UnitObs, setting_key,
};
use crate::plan::rpmver::{Evr, Nevra};
use crate::plan::{self, Plan, PlanProblem, SecretContents};
use crate::system::fsroot::{FsRoot, Parents};
use crate::system::selinux::{self, FileKind};
use crate::system::{accounts, dnf, rpm, settings, systemctl};

/// Present on a host booted from an ostree image (bootc, rpm-ostree).
const IMAGE_MODE_MARKER: &str = "/run/ostree-booted";

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
    /// The managed files found with their desired content, with their
    /// stat: the stat cache the next run may trust.
    pub verified: StatCache,
    /// Whether `verified` differs from the cache this run was given (only
    /// then is it worth writing).
    pub cache_stale: bool,
    /// The declared units as observed before any change (what pruning
    /// puts back when a service is dropped).
    pub units: BTreeMap<String, UnitObs>,
    /// The declared packages installed before any change.
    pub installed: BTreeSet<String>,
    /// Contents that were secret (never shown): for the plans made again
    /// mid-converge.
    pub secret_contents: SecretContents,
    /// The declared settings as observed before any change (what pruning
    /// puts back when one is dropped), by `domain:name`.
    pub(crate) settings: BTreeMap<String, SettingObs>,
}

/// Plans `desired` against the host under `root` (`None`: a root that does
/// not exist yet, as for a dry run into a fresh directory). Changes nothing.
/// A file whose stat is the one `cache` recorded with its desired content
/// is not read (the no-op's hot path: a stat per file).
pub fn prepare(
    mut desired: DesiredState,
    source: String,
    root: Option<&FsRoot>,
    cache: &StatCache,
    contents: &Contents<'_>,
    secret_contents: SecretContents,
    cancel: &Cancel,
) -> Result<Prepared, PrepareError> {
    let mut observed = match root {
        Some(root) => observe_cached(root, &desired, None, cache, cancel)?,
        None => observe_empty(&desired),
    };
    observed.secret_contents = secret_contents;
    hydrate(&mut desired, &observed, contents)?;
    let plan = plan::plan(&desired, &observed).map_err(PrepareError::Unplannable)?;
    let verified = StatCache {
        root: root.map(root_name).unwrap_or_default(),
        labels: observed.policy_labels.is_some(),
        files: observed.verified,
        packages: observed.package_cache,
    };
    let installed = observed
        .packages
        .iter()
        .filter(|(_, builds)| !builds.is_empty())
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Prepared {
        desired,
        source,
        plan,
        latest: observed.latest,
        cache_stale: verified != *cache,
        verified,
        units: observed.units,
        installed,
        secret_contents: observed.secret_contents,
        settings: observed.settings,
    })
}

/// Where the bytes of a content known by its hash are read from (the
/// object store), for a desired state read back from the state directory
/// and for a pinned download, whose URL is given: the use case fetches it
/// into the store when the store lacks it (only `source` touches the
/// network).
pub(crate) type Contents<'a> = dyn Fn(&[u8; 32], Option<&str>) -> Result<Vec<u8>> + 'a;

/// Loads the bytes of every desired file that `observed` shows is to
/// change and whose content is known by its hash only; a file found with
/// its desired content needs none (the no-op reads no content at all).
pub(crate) fn hydrate(
    desired: &mut DesiredState,
    observed: &ObservedHost,
    contents: &Contents<'_>,
) -> Result<()> {
    for d in &mut desired.resources {
        let path = d.resource.path();
        let url = d.resource.source_url().map(str::to_owned);
        // An archive whose directory holds the marker of what is declared
        // needs no bytes (no download, no extraction).
        let extracted = match d.resource.lower() {
            Prim::Archive(a) => observed.archive_markers.get(&a.path).is_some_and(|m| {
                *m == plan::archive::marker_text(
                    &hex::encode(a.content.sha256()),
                    a.strip_components,
                )
            }),
            _ => false,
        };
        let present = !matches!(
            d.resource.lower(),
            Prim::Path(PathDecl {
                ensure: Ensure::Absent,
                ..
            })
        );
        let (Some(path), Some(content)) = (path, d.resource.stored_content_mut()) else {
            continue;
        };
        if !present || content.bytes().is_some() {
            continue;
        }
        let in_place = extracted
            || matches!(
                observed.paths.get(&path),
                Some(Observed::File { sha256, .. }) if sha256 == content.sha256()
            );
        if !in_place {
            let bytes = contents(content.sha256(), url.as_deref()).with_context(|| match &url {
                // Nothing is written before every content is in hand.
                Some(_) => format!("cannot get the content of {path}; it was left as it is"),
                None => format!("failed to read the desired content of {path}"),
            })?;
            content
                .fill(bytes)
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        }
    }
    Ok(())
}

/// Seconds since the epoch, for the racily-clean checks.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The name a stat cache is kept under: the root's path.
pub(crate) fn root_name(root: &FsRoot) -> String {
    root.path().display().to_string()
}

/// Reads the current state of everything `desired` manages. `latest_known`
/// reuses `latest` versions already known instead of asking the
/// repositories again.
pub(crate) fn observe(
    root: &FsRoot,
    desired: &DesiredState,
    latest_known: Option<&BTreeMap<String, Evr>>,
    cancel: &Cancel,
) -> Result<ObservedHost> {
    observe_cached(root, desired, latest_known, &StatCache::default(), cancel)
}

/// [`observe`], trusting `cache` for files whose stat did not move since
/// they were found with the content desired now.
fn observe_cached(
    root: &FsRoot,
    desired: &DesiredState,
    latest_known: Option<&BTreeMap<String, Evr>>,
    cache: &StatCache,
    cancel: &Cancel,
) -> Result<ObservedHost> {
    let mut host = ObservedHost {
        accounts: accounts::read(root, desired.manages_passwords())?,
        live: root.is_live(),
        image_mode: root.exists(IMAGE_MODE_MARKER)?,
        ..ObservedHost::default()
    };
    let names = desired.package_names(false);
    let latest = desired.package_names(true);
    let units: Vec<String> = desired.services().iter().map(|s| s.unit.clone()).collect();
    // rpm and systemctl are processes that mostly wait (on the rpm
    // database, on D-Bus): they run beside the stats, so a no-op costs the
    // slowest of the three, not their sum.
    // The rpm database's identity is taken before its query: a transaction
    // during the query changes it, and the next run asks again.
    let now = unix_now();
    // A database that cannot be looked at is never trusted: rpm is asked.
    let db = if names.is_empty() {
        None
    } else {
        rpm::db_identity(root.path()).unwrap_or_else(|e| {
            tracing::debug!(
                error = format!("{e:#}"),
                "the rpm database's identity is unknown; querying rpm"
            );
            None
        })
    };
    let cached = (cache.root == root_name(root))
        .then_some(cache.packages.as_ref())
        .flatten()
        .zip(db.as_ref())
        .and_then(|(c, db)| c.reuse(&names, db, now));
    let query = !names.is_empty() && cached.is_none();
    std::thread::scope(|s| -> Result<()> {
        // Nothing declared, no thread: the files-only no-op stays as it was.
        let packages = query.then(|| s.spawn(|| rpm::query(root.path(), &names, cancel)));
        let services =
            (!units.is_empty()).then(|| s.spawn(|| systemctl::unit_states(root, &units, cancel)));
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
        let paths = observe_paths(root, desired, cache, &mut host)
            .and_then(|()| policy_labels(root, desired, &mut host));
        host.packages = match cached {
            Some(installed) => installed,
            None => joined(packages, "the rpm query")?,
        };
        host.provided = provides(root, desired, &host.packages, cancel)?;
        host.units = joined(services, "the systemctl query")?;
        paths
    })?;
    host.package_cache = PackageCache::of(db, &host.packages, now);
    host.archive_markers = archive_markers(root, desired, &host)?;
    host.settings = observe_settings(desired, |s, facets| {
        settings::read(root, s.domain, s.name, facets)
    })?;
    host.runtime_stale = runtime_stale(desired, &host, cancel)?;
    host.guards = commands::observe_guards(root, desired, cancel)?;
    host.repo_overrides = repo_overrides(root, desired)?;
    Ok(host)
}

/// The declared resources whose unit runs a configuration other than
/// theirs (a firewalld zone changed at runtime only), by each kind's
/// runtime probe: asked only on a live root, and only where that unit runs
/// (a unit that is stopped runs nothing; one being started reads it anew).
fn runtime_stale(
    desired: &DesiredState,
    host: &ObservedHost,
    cancel: &Cancel,
) -> Result<BTreeSet<ResourceId>> {
    let mut out = BTreeSet::new();
    if !host.live {
        return Ok(out);
    }
    for d in &desired.resources {
        let id = d.resource.id();
        let (Some(unit), Some(argv)) = (id.kind.reloads(), d.resource.runtime_probe()) else {
            continue;
        };
        if host.units.get(unit).is_some_and(UnitObs::running)
            && !commands::probe(&argv, &id, cancel)?
        {
            out.insert(id);
        }
    }
    Ok(out)
}

/// The marker in the directory of each declared archive that has one:
/// one small read per archive, the whole of what a no-op reads of it.
fn archive_markers(
    root: &FsRoot,
    desired: &DesiredState,
    host: &ObservedHost,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for prim in desired.prims() {
        let Prim::Archive(a) = prim else {
            continue;
        };
        if let Some(Observed::Dir { .. }) = host.paths.get(&a.path)
            && let Some(marker) = root.archive_marker(&a.path)?
        {
            out.insert(a.path.clone(), marker);
        }
    }
    Ok(out)
}

/// Each declared setting, read by `read` with its declared facets: for a
/// kernel parameter one small read under `/proc/sys` and one stat of its
/// file (no subprocess).
fn observe_settings(
    desired: &DesiredState,
    read: impl Fn(&SettingDecl<'_>, &[&str]) -> Result<SettingObs>,
) -> Result<BTreeMap<String, SettingObs>> {
    let mut out = BTreeMap::new();
    for prim in desired.prims() {
        let Prim::Setting(s) = prim else {
            continue;
        };
        let facets: Vec<&str> = s.facets.iter().map(|(k, _)| *k).collect();
        out.insert(setting_key(s.domain, s.name), read(&s, &facets)?);
    }
    Ok(out)
}

/// Where dnf 5 keeps `config-manager setopt`'s repository settings.
const REPO_OVERRIDES: &str = "/etc/dnf/repos.override.d";

/// The sections of dnf 5's repo override files, when a repository is
/// declared (otherwise nothing is looked at).
fn repo_overrides(root: &FsRoot, desired: &DesiredState) -> Result<Vec<RepoOverride>> {
    if !desired
        .resources
        .iter()
        .any(|d| matches!(d.resource, Resource::Repo(_)))
    {
        return Ok(Vec::new());
    }
    let Observed::Dir { entries, .. } = root.observe(REPO_OVERRIDES)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in entries.iter().filter(|e| e.ends_with(".repo")) {
        let path = format!("{REPO_OVERRIDES}/{name}");
        if let Observed::File { .. } = root.observe(&path)? {
            let text = root.read_config(&path)?;
            out.extend(RepoOverride::parse(&path, &String::from_utf8_lossy(&text)));
        }
    }
    Ok(out)
}

/// For each declared name to be installed (any version) that no installed
/// package is called by: the packages that provide it, if any. Only names
/// missing by name are asked, one `rpm -q --whatprovides` each.
fn provides(
    root: &FsRoot,
    desired: &DesiredState,
    installed: &BTreeMap<String, Vec<Nevra>>,
    cancel: &Cancel,
) -> Result<BTreeMap<String, Vec<Nevra>>> {
    let mut out = BTreeMap::new();
    for p in desired.prims() {
        let Prim::Package(p) = p else {
            continue;
        };
        if p.state != PackageState::Present(None)
            || installed.get(&p.name).is_some_and(|b| !b.is_empty())
        {
            continue;
        }
        let by = rpm::what_provides(root.path(), &p.name, cancel)?;
        if !by.is_empty() {
            out.insert(p.name.clone(), by);
        }
    }
    Ok(out)
}

/// The result of a query thread (none started: nothing to ask); a panic
/// there is an error here.
fn joined<T: Default>(
    h: Option<std::thread::ScopedJoinHandle<'_, Result<T>>>,
    what: &str,
) -> Result<T> {
    match h {
        None => Ok(T::default()),
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("{what} failed unexpectedly (its thread panicked)"))?,
    }
}

/// Observes every managed path into `host`, trusting `cache` where the
/// stat did not move.
fn observe_paths(
    root: &FsRoot,
    desired: &DesiredState,
    cache: &StatCache,
    host: &mut ObservedHost,
) -> Result<()> {
    // A cache made without labels cannot vouch for a label.
    let cached = (cache.root == root_name(root) && (cache.labels || !root.labelled()?))
        .then_some(&cache.files);
    let wanted = desired_hashes(desired);
    let now = unix_now();
    let mut parents = Parents::default();
    for path in plan::paths_to_observe(desired) {
        let want = wanted.get(path.as_str());
        // Only an entry with the content wanted now saves the read: a file
        // that is to change is read, for its diff. A file whose bytes are
        // not managed wants whatever it holds.
        let hint = cached.and_then(|c| c.get(&path)).filter(|h| match want {
            Some(Some(w)) => *w == h.sha256,
            Some(None) => true,
            None => false,
        });
        let (o, key) = root.observe_hinted(&path, hint, &mut parents)?;
        debug!(
            path,
            observed = o.kind_word(),
            cached = hint.is_some(),
            "observed"
        );
        if let (Observed::File { sha256, label, .. }, Some(key), Some(want)) = (&o, key, want) {
            let have = hex::encode(sha256);
            if want.as_ref().is_none_or(|w| *w == have) && !key.is_racy(now) {
                host.verified.insert(
                    path.clone(),
                    CachedFile {
                        stat: key,
                        sha256: have,
                        label: label.clone(),
                    },
                );
            }
        }
        host.paths.insert(path, o);
    }
    Ok(())
}

/// Where the root has an SELinux policy: the context it gives each
/// declared path as what it is to be, and each missing parent as a
/// directory (libselinux's lookup, on the final path). Nothing is opened
/// or looked up on a root without a policy.
fn policy_labels(root: &FsRoot, desired: &DesiredState, host: &mut ObservedHost) -> Result<()> {
    let Some(file_contexts) = root.selinux_policy()? else {
        return Ok(());
    };
    let policy = selinux::Policy::open(&root.path().join(file_contexts.trim_start_matches('/')))?;
    let mut labels = BTreeMap::new();
    for prim in desired.prims() {
        // An archive's directory is labelled as a directory; what is
        // extracted into it gets the context new files there get.
        let (path, kind) = match prim {
            Prim::Path(decl) => (
                decl.path.into_owned(),
                match decl.form.form() {
                    Form::File => FileKind::File,
                    Form::Dir => FileKind::Dir,
                    Form::Symlink => FileKind::Symlink,
                },
            ),
            Prim::Archive(a) => (a.path.clone(), FileKind::Dir),
            // A file an edit may create is labelled as the policy says
            // (`~/.ssh/authorized_keys`: ssh_home_t, or sshd refuses it).
            Prim::Edit(e) if e.create => (e.path.to_owned(), FileKind::File),
            _ => continue,
        };
        let label = policy.default_for(&path, kind)?;
        if let Some(Observed::Missing { missing_parents }) = host.paths.get(&path) {
            for parent in missing_parents {
                if !labels.contains_key(parent) {
                    let l = policy.default_for(parent, FileKind::Dir)?;
                    labels.insert(parent.clone(), l);
                }
            }
        }
        labels.insert(path, label);
    }
    debug!(
        file_contexts = %policy.file_contexts().display(),
        paths = labels.len(),
        "SELinux contexts looked up"
    );
    host.policy_labels = Some(labels);
    Ok(())
}

/// The content hash (hex) each declared regular file should have; `None`
/// for a file whose bytes are not managed (any content will do).
fn desired_hashes(desired: &DesiredState) -> BTreeMap<String, Option<String>> {
    desired
        .prims()
        .filter_map(|p| match p {
            Prim::Path(PathDecl {
                path,
                ensure: Ensure::Present,
                form: PathForm::File { content, rule, .. },
                ..
            }) => Some((
                path.into_owned(),
                rule.is_exact().then(|| hex::encode(content.sha256())),
            )),
            _ => None,
        })
        .collect()
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
    // Infallible without a root: nothing but the running kernel is read.
    host.settings = observe_settings(desired, |s, facets| {
        Ok(settings::read_without_root(s.domain, s.name, facets))
    })
    .unwrap_or_default();
    host
}
