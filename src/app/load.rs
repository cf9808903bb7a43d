//! The first steps of a run: open the source (fetching and checking a git
//! commit) and compute the host's desired state.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::context::{App, FetchPolicy, SourceRequest, Subject};
use crate::agent::{AgentState, FetchRecord, now, policy};
use crate::cancel::Cancel;
use crate::config::Settings;
use crate::converge::{Event, Sink, events};
use crate::desired::secrets::{Keys, Secrets};
use crate::desired::{self, ConfigTree, Diagnostic, Facts, FactsRead, LoadOptions};
use crate::source::{self, dir::DirTree};
use crate::store::StateLock;
use crate::system;

/// The config repo for one run: a directory, or a checked commit of the
/// git source (with the id to record once it is applied).
pub(super) struct Opened {
    pub(super) tree: Box<dyn ConfigTree>,
    pub(super) commit: Option<String>,
    /// The fetch failed and a cached commit is converged instead.
    pub(super) fetch_failed: Option<FetchFailed>,
}

/// A failed fetch that a run went on without.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchFailed {
    /// Why it failed.
    pub error: String,
    /// The fetched commit was refused by a check, not unreachable.
    pub refused: bool,
}

/// Opens the source. A git fetch is recorded in `state` when the caller
/// holds the lock and the state (`Some`), else under a lock taken for the
/// fetch alone. A failed fetch is recorded too.
pub(super) fn open_source(
    app: &App,
    req: &SourceRequest,
    purpose: source::Purpose,
    state: Option<&mut AgentState>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Opened> {
    if let Some(dir) = &req.repo {
        return Ok(Opened {
            tree: Box::new(DirTree::open(dir)?),
            commit: None,
            fetch_failed: None,
        });
    }
    let Some(git) = &app.settings.source else {
        bail!("no config repo: pass --repo DIR, or configure [source] url in the agent config");
    };
    let mut own: Option<(StateLock, AgentState)> = None;
    let state: &mut AgentState = match state {
        Some(s) => s,
        None => {
            let lock = app.store.lock()?;
            let loaded = app.store.load_state()?;
            &mut own.insert((lock, loaded)).1
        }
    };
    app.store.ensure()?;
    let cache = app.store.git_cache();
    // The rewind floor is the newest commit applied from this very source;
    // another configured source (a branch changed in the agent config) is
    // no rewind of the one applied before.
    let applied = rewind_floor(state, &source_id(git));
    let check = |fetch: source::Fetch, commit: Option<&str>| {
        source::fetch_checked(
            git,
            &app.settings.verify,
            &cache,
            &source::Want {
                applied: applied.as_deref(),
                commit,
                branch: req.branch.as_deref(),
                purpose,
                fetch,
            },
            cancel,
        )
    };
    let first = match req.fetch {
        FetchPolicy::Cache => check(source::Fetch::Cache, req.commit.as_deref()),
        FetchPolicy::Remote | FetchPolicy::RemoteOrCache => {
            let result = check(source::Fetch::Remote, req.commit.as_deref());
            record_fetch(state, &cache, &result);
            result
        }
    };
    if let Some((_lock, s)) = &own {
        app.store.save_state(s)?;
    }
    let (checked, fetch_failed) = match first {
        Ok(c) => (c, None),
        Err(e) => {
            let failed = FetchFailed {
                error: format!("{e:#}"),
                refused: source::is_refused(&e),
            };
            // While the source is away, the last fetched commit still holds;
            // when it is refused, the applied one does.
            let fallback = match req.fetch {
                FetchPolicy::RemoteOrCache if !failed.refused => check(source::Fetch::Cache, None)
                    .or_else(|_| match &applied {
                        Some(a) => check(source::Fetch::Cache, Some(a)),
                        None => Err(anyhow::anyhow!("no commit was applied yet")),
                    }),
                FetchPolicy::RemoteOrCache => match &applied {
                    Some(a) => check(source::Fetch::Cache, Some(a)),
                    None => Err(anyhow::anyhow!("no commit was applied yet")),
                },
                _ => Err(anyhow::anyhow!("no fallback")),
            };
            sink.event(&Event::FetchFailed {
                error: failed.error.clone(),
                refused: failed.refused,
                instead: fallback.as_ref().ok().map(|c| c.commit.clone()),
            });
            match fallback {
                Ok(c) => (c, Some(failed)),
                Err(_) => return Err(e),
            }
        }
    };
    sink.event(&Event::Fetched {
        commit: checked.commit.clone(),
    });
    Ok(Opened {
        commit: Some(checked.commit),
        tree: Box::new(checked.tree),
        fetch_failed,
    })
}

/// The newest commit applied from the source `id`: what a fetched head
/// must descend from. Another source configured since (a branch changed in
/// the agent config) has none yet: that is no rewind.
fn rewind_floor(state: &AgentState, id: &str) -> Option<String> {
    match (state.floors.get(id), &state.applied_source) {
        (Some(floor), _) => Some(floor.clone()),
        (None, Some(was)) if was != id => {
            tracing::info!(
                "the configured git source is now {id} (was {was}): nothing was applied from it yet, so there is no floor to check a rewind against"
            );
            None
        }
        (None, _) => state.applied_commit.clone(),
    }
}

/// Records a remote fetch's outcome for `source status`, whatever it was.
fn record_fetch(state: &mut AgentState, cache: &std::path::Path, result: &Result<source::Checked>) {
    let head = match result {
        Ok(c) => Some(c.head.clone()),
        Err(_) => source::cache_status(cache).ok().and_then(|s| s.fetched),
    };
    let at = now();
    policy::fetched(state, result.is_ok(), &at);
    state.last_fetch = Some(FetchRecord {
        at,
        head,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    });
}

/// The identity of a git source, as the agent state records it: the URL
/// without a password, and the branch.
pub(super) fn source_id(git: &source::git::GitSourceSettings) -> String {
    format!("{} ({})", source::git::redact_url(&git.url), git.branch)
}

/// A loaded desired state and where it came from.
pub(super) struct Loaded {
    pub(super) desired: desired::DesiredState,
    pub(super) source: String,
    pub(super) commit: Option<String>,
    pub(super) key: String,
    pub(super) fetch_failed: Option<FetchFailed>,
    /// To keep in the desired-state cache once the state lock is held.
    pub(super) to_cache: Option<CacheEntry>,
}

/// A loaded desired state's place in the cache: its key and the source
/// paths it was loaded from (a directory's; none for a commit).
pub(super) struct CacheEntry {
    key: String,
    paths: Vec<String>,
}

impl CacheEntry {
    /// Keeps `desired` under this entry; the caller holds the state lock.
    /// A failure costs the next run a load, nothing else.
    pub(super) fn save(&self, app: &App, desired: &desired::DesiredState) {
        if let Err(e) = app
            .store
            .save_desired_cache(&self.key, &self.paths, desired)
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not keep the loaded desired state for the next run"
            );
        }
    }
}

/// The loader's options for a plan or converge: secrets are decrypted with
/// the host's key, when one is configured.
pub(super) fn load_options(settings: &Settings, cancel: &Cancel) -> Result<LoadOptions> {
    let secrets = match &settings.secrets_identity {
        Some(path) => Secrets::Decrypt(Arc::new(host_keys(path)?)),
        None => Secrets::NoIdentity,
    };
    Ok(LoadOptions {
        state_dir: settings.state_dir.to_string_lossy().into_owned(),
        cancel: cancel.clone(),
        secrets,
        ..LoadOptions::default()
    })
}

/// The host's age identities from `[secrets] identity`.
fn host_keys(path: &std::path::Path) -> Result<Keys> {
    let text = system::trust::read_private(path).context("[secrets] identity")?;
    Keys::parse(&path.display().to_string(), &text)
        .map_err(|e| anyhow::anyhow!("[secrets] identity: {e}"))
}

/// The host name to look up: `--host`, else the agent config's, else the
/// machine's FQDN. A name that is no host name is an error: it would fall
/// back to `hosts/default.toml` without a word.
pub(super) fn host_name(settings: &Settings, req: &SourceRequest, facts: &Facts) -> Result<String> {
    let name = req
        .host
        .clone()
        .or_else(|| settings.host.clone())
        .unwrap_or_else(|| facts.fqdn.clone());
    desired::checks::host_name(&name).map_err(|e| anyhow::anyhow!("{e}: pass --host NAME"))?;
    Ok(name)
}

/// A directory's stamp as the cache keys it, apart from any commit id.
fn dir_stamp(stamp: &str) -> String {
    format!("dir:{stamp}")
}

/// What the cached desired state of a commit is kept under: everything
/// its load depended on besides the commit — the host, the facts its
/// templates read (`read`, with their values now), the loader's options
/// and its version. Facts no template read are not part of it: a mount
/// that comes and goes does not make every converge load the commit again.
fn desired_cache_key(
    commit: &str,
    host: &str,
    facts: &Facts,
    read: &FactsRead,
    opts: &LoadOptions,
) -> String {
    use sha2::Digest;
    /// Bumped when what a load produces changes within one version.
    const FORMAT: u32 = 2;
    let mut h = sha2::Sha256::new();
    let facts = serde_json::to_vec(&facts.key_of(read)).unwrap_or_default();
    for part in [
        FORMAT.to_string().as_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
        commit.as_bytes(),
        host.as_bytes(),
        &facts,
        opts.state_dir.as_bytes(),
        opts.max_file_size.to_string().as_bytes(),
        opts.secrets.fingerprint().as_bytes(),
    ] {
        // Length-prefixed, so that no two different inputs run together.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// This machine's facts with every custom fact read, and its packages
/// looked up in its own rpm database when read: for a load whose
/// templates may read any of them.
pub(super) fn all_facts(settings: &Settings, cancel: &Cancel) -> Result<Facts> {
    let mut facts = system::facts::gather_checked()?;
    system::facts::custom::FactsDir::open(&settings.facts_dir).fill(&mut facts, None, cancel);
    facts.packages = system::facts::packages::under(std::path::Path::new("/"), &facts.arch, cancel);
    Ok(facts)
}

/// What to load: from which source, why, and for which root.
pub(super) struct LoadRequest<'a> {
    /// The source and host.
    pub(super) source: &'a SourceRequest,
    /// Why the source is opened.
    pub(super) purpose: source::Purpose,
    /// The root the desired state is for (`/`, or a converge's `--root`):
    /// `facts.packages` are its installed packages, as the planner sees
    /// them.
    pub(super) root: &'a std::path::Path,
}

/// Opens the source and loads the host's desired state, filling `subject`.
/// `Ok(Err(diagnostics))`: the repo is invalid.
pub(super) fn load(
    app: &App,
    req: &LoadRequest<'_>,
    state: Option<&mut AgentState>,
    subject: &mut Subject,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Result<Loaded, Invalid>> {
    // The caller holds the lock (a converge): the state directory may be
    // written, here the cache of the loaded desired state.
    let may_write = state.is_some();
    let Opened {
        tree,
        commit,
        fetch_failed,
    } = open_source(app, req.source, req.purpose, state, sink, cancel)?;
    let source = tree.describe();
    subject.source = Some(source.clone());
    let mut facts = system::facts::gather_checked()?;
    facts.packages = system::facts::packages::under(req.root, &facts.arch, cancel);
    let custom = system::facts::custom::FactsDir::open(&app.settings.facts_dir);
    let host = host_name(&app.settings, req.source, &facts)?;
    subject.host = Some(host.clone());
    let opts = load_options(&app.settings, cancel)?;
    let dir = req.source.repo.as_deref();
    let cached = from_cache(
        app,
        commit.as_deref(),
        dir,
        &host,
        &mut facts,
        &custom,
        &opts,
    );
    let was_cached = cached.is_some();
    let result = match cached {
        Some(desired) => Ok(desired),
        None => {
            // Every custom fact is read; packages are looked up as the
            // templates read them (never all of them).
            custom.fill(&mut facts, None, cancel);
            desired::load(tree.as_ref(), &host, &facts, &opts)
        }
    };
    let stamp = match &commit {
        Some(c) => Some((Vec::new(), c.clone())),
        None => tree.stamp().map(|(paths, s)| (paths, dir_stamp(&s))),
    };
    let mut to_cache = None;
    if let (Ok(desired), Some((paths, stamp)), false) = (&result, stamp, was_cached) {
        let entry = CacheEntry {
            key: desired_cache_key(&stamp, &host, &facts, &desired.facts_read, &opts),
            paths,
        };
        // Without the lock (a directory is read before it is taken), the
        // converge keeps it once it holds the lock.
        if may_write {
            entry.save(app, desired);
        } else {
            to_cache = Some(entry);
        }
    }
    match result {
        Ok(desired) => {
            subject.host_file = Some(desired.host_file.clone());
            subject.roles = desired.roles.clone();
            sink.event(&Event::Loaded {
                host,
                host_file: desired.host_file.clone(),
                resources: events::count_kinds(desired.resources.iter().map(|d| d.resource.id())),
            });
            let key = commit.clone().unwrap_or_else(|| desired.content_key());
            Ok(Ok(Loaded {
                desired,
                source,
                commit,
                key,
                fetch_failed,
                to_cache,
            }))
        }
        Err(desired::LoadError::Invalid(diagnostics)) => Ok(Err(Invalid {
            diagnostics,
            commit,
            source,
            fetch_failed,
        })),
        Err(desired::LoadError::Read(e)) => Err(e),
    }
}

/// The desired state kept in the cache for this load's inputs, if any.
/// A commit is immutable: loaded once for this host and the facts its
/// templates read, it is not read again. A directory is not read again
/// while every path its last load looked at holds the same (its stamp: a
/// stat of each, no read). Only the custom facts the cached state read are
/// read now: no other fact's program runs; and only the packages it read
/// are looked up, in one rpm query.
fn from_cache(
    app: &App,
    commit: Option<&str>,
    dir: Option<&std::path::Path>,
    host: &str,
    facts: &mut Facts,
    custom: &system::facts::custom::FactsDir,
    opts: &LoadOptions,
) -> Option<desired::DesiredState> {
    if commit.is_none() && dir.is_none() {
        return None;
    }
    let cached = app.store.load_desired_cache(|d, paths| {
        let stamp = match (commit, dir) {
            (Some(c), _) => c.to_owned(),
            (None, Some(dir)) => dir_stamp(&source::dir::stamp_now(dir, paths)?),
            (None, None) => return None,
        };
        custom.fill(facts, d.facts_read.custom().as_deref(), &opts.cancel);
        facts.packages.prefetch(&d.facts_read.packages());
        Some(desired_cache_key(&stamp, host, facts, &d.facts_read, opts))
    })?;
    match commit {
        Some(c) => tracing::debug!(
            commit = c,
            "desired state from the state directory: the commit was loaded before"
        ),
        None => tracing::debug!(
            "desired state from the state directory: the directory holds what its last load read"
        ),
    }
    Some(cached)
}

/// A config repo that does not validate, and where it came from.
pub(super) struct Invalid {
    /// Every problem, located.
    pub(super) diagnostics: Vec<Diagnostic>,
    /// The git commit, when the source is git.
    pub(super) commit: Option<String>,
    /// Where it came from.
    pub(super) source: String,
    /// The fetch failed and a cached commit was loaded instead.
    pub(super) fetch_failed: Option<FetchFailed>,
}
