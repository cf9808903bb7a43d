//! The git source: a bare cache repository that is fetched into from the
//! configured URL, and a read-only [`ConfigTree`] view of one of its commits.
//!
//! Everything here is blocking (gix's network I/O is): callers run [`fetch`]
//! on a thread of their own (a daemon: a blocking task) and hand it the
//! same `AtomicBool` that their shutdown path sets.
//!
//! Design choices, in short:
//! - The cache is opened *isolated*: no system/global git config, no `GIT_*`
//!   environment. The agent's own settings are the only input, so a stray
//!   `~/.gitconfig` (insteadOf rewrites, proxies, credential helpers) on the
//!   host cannot change what is fetched.
//! - URL, branch and refspec come from [`GitSourceSettings`] on every fetch
//!   (an anonymous remote); nothing is stored in the cache's config.
//! - The fetched branch lands in one staging ref, [`STAGING_REF`], with a
//!   forced refspec: history rewrites are *fetched*, and the caller decides
//!   with [`is_ancestor`] / [`ensure_not_rewound`] whether to accept them.
//! - The fetch runs on a worker thread while the calling thread watches the
//!   deadline and the interrupt flag, because gix cannot interrupt a blocked
//!   handshake read. See [`fetch`] for how the abandoned worker is bounded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::desired::tree::{ConfigTree, EntryKind};

/// The ref in the cache that holds the most recently fetched branch head.
///
/// It lives outside `refs/heads` and `refs/remotes` so that no git tooling run
/// by hand on the cache mistakes it for a branch to check out or push.
pub const STAGING_REF: &str = "refs/driftless/fetched";

/// The ref that holds the head of a branch fetched for a trial
/// (`converge --now --branch NAME`), apart from [`STAGING_REF`]: the
/// configured branch's fetched head is never replaced by a trial.
pub const TRIAL_REF: &str = "refs/driftless/trial";

/// How often the caller thread looks at the interrupt flag and the deadline
/// while the worker thread fetches. Bounds how "prompt" an interrupt is.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Upper bound for establishing a connection (TCP + TLS / ssh handshake),
/// so a black-holed host fails fast even with a long overall timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Added to the caller's timeout for the transport-level limits. Those exist
/// to end an *abandoned* worker; if they fired at the same instant as the
/// caller's deadline, the caller would race and report a transport error
/// ("failed to fill whole buffer") instead of "timed out after 60s".
const TRANSPORT_GRACE: Duration = Duration::from_secs(5);

/// System CA bundles, RHEL first. The curl+rustls transport has no built-in
/// roots and ignores the platform store: without `http.sslCAInfo` every
/// https fetch fails with "no server certificate verifier was configured".
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Where and how to fetch the config repository, as given in the agent config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSourceSettings {
    /// `https://`, `http://`, `ssh://`, scp-like `user@host:path`, `file://`
    /// or a plain local path. `git://` is refused (see [`fetch`]).
    pub url: String,
    /// Branch name without `refs/heads/`.
    pub branch: String,
    /// Private key for ssh URLs (passed as `ssh -i`, with `IdentitiesOnly`).
    pub ssh_key: Option<PathBuf>,
    /// `known_hosts` file for ssh URLs; host keys are always checked strictly.
    pub known_hosts: Option<PathBuf>,
    /// PEM CA bundle for https URLs, replacing the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Bound on one whole fetch, connection included.
    pub timeout: Duration,
}

/// What [`fetch`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The branch head as now stored in [`STAGING_REF`].
    pub head: ObjectId,
    /// What [`STAGING_REF`] pointed to before this fetch, if anything.
    pub previous: Option<ObjectId>,
    /// `head != previous`. Informational only: decide what to apply by
    /// comparing `head` with the last *applied* commit, because an abandoned
    /// timed-out fetch may have moved the staging ref without anyone seeing it.
    pub changed: bool,
    /// Whether the server sent a pack. `false` when the remote head was
    /// already in the cache (unchanged remote, or a rewind to a known commit).
    pub pack_received: bool,
    /// Objects in the received pack (0 without a pack). Small for an
    /// incremental fetch: only what the cache did not have.
    pub objects_received: u64,
    /// Number of have/want negotiation rounds; 0 when gix saw from the ref
    /// advertisement alone that nothing had to be negotiated.
    pub negotiation_rounds: usize,
}

/// Errors of the git source that callers branch on. They travel inside
/// `anyhow::Error`; find them with `err.downcast_ref::<SourceError>()`.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The fetch did not finish within [`GitSourceSettings::timeout`].
    #[error("fetching {url} timed out after {}", fmt_duration(*after))]
    Timeout {
        /// The URL, with any password removed.
        url: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The caller's interrupt flag was set (shutdown).
    #[error("fetching {url} was interrupted")]
    Interrupted {
        /// The URL, with any password removed.
        url: String,
    },
    /// The remote has no such branch: a configuration error, not a transient one.
    #[error("branch {branch:?} does not exist at {url}")]
    BranchNotFound {
        /// The URL, with any password removed.
        url: String,
        /// The configured branch.
        branch: String,
    },
    /// The fetched head does not contain the last applied commit: the branch
    /// was force-pushed (rewound or rewritten).
    #[error(
        "history was rewritten: fetched commit {fetched} does not descend from last applied commit {applied}"
    )]
    Rewind {
        /// The commit last applied to the host.
        applied: ObjectId,
        /// The newly fetched branch head.
        fetched: ObjectId,
    },
}

/// Renders `60s` or `1500ms`: the unit people wrote in the config.
fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Opens the bare cache repository at `path`, creating it first if `path` does
/// not exist or is an empty directory.
///
/// The repository is opened isolated from system/global git configuration and
/// from `GIT_*` environment variables, so only the agent's settings apply.
pub fn open_or_init_cache(path: &Path) -> Result<gix::Repository> {
    let is_empty_dir = path.is_dir()
        && path
            .read_dir()
            .with_context(|| format!("failed to read git cache directory {}", path.display()))?
            .next()
            .is_none();
    if !path.exists() || is_empty_dir {
        std::fs::create_dir_all(path)
            .with_context(|| format!("failed to create git cache directory {}", path.display()))?;
        gix::init_bare(path).with_context(|| {
            format!(
                "failed to create bare git cache repository at {}",
                path.display()
            )
        })?;
    }
    gix::open_opts(path, gix::open::Options::isolated())
        .with_context(|| format!("failed to open git cache repository at {}", path.display()))
}

/// The commit [`STAGING_REF`] points to, if a fetch ever succeeded.
pub fn fetched_head(repo: &gix::Repository) -> Result<Option<ObjectId>> {
    head_of(repo, STAGING_REF)
}

/// The commit `name` (one of the cache's own refs) points to, if any.
pub fn head_of(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    let reference = repo
        .try_find_reference(name)
        .with_context(|| format!("failed to read {name} in the git cache"))?;
    match reference {
        None => Ok(None),
        Some(mut r) => {
            let id = r
                .peel_to_id()
                .with_context(|| format!("failed to resolve {name} in the git cache"))?;
            Ok(Some(id.detach()))
        }
    }
}

/// Fetches `settings.branch` from `settings.url` into [`STAGING_REF`] of the
/// cache `repo`.
///
/// Blocking: call it from `spawn_blocking`. It returns at the latest
/// ~50 ms after `settings.timeout` ([`SourceError::Timeout`]) or after
/// `interrupt` was set ([`SourceError::Interrupted`]), even when the server
/// accepted the connection and then never answers.
///
/// How: the gix work runs on a worker thread; this thread polls the deadline
/// and `interrupt`. gix checks its interrupt flag only while receiving the
/// pack, and a read blocked in the handshake cannot be interrupted at all, so
/// on timeout/interrupt the worker is told to stop and then abandoned. The
/// worker itself is bounded by transport limits set to the timeout plus 5 s
/// (so they never beat the caller's deadline): curl's low-speed limit
/// (< 1 byte/s) and connect timeout for http(s); for ssh, the ssh process
/// runs under `timeout(1)` with `ConnectTimeout`/`ServerAliveInterval`. An
/// abandoned worker may still finish and move [`STAGING_REF`]; a fetch
/// started meanwhile can fail on the ref lock and should simply be retried. `git://` is refused because gix's
/// plain-TCP transport has no timeout at all and the protocol is
/// unauthenticated.
pub fn fetch(
    repo: &gix::Repository,
    settings: &GitSourceSettings,
    interrupt: &AtomicBool,
) -> Result<FetchOutcome> {
    fetch_into(repo, settings, STAGING_REF, interrupt)
}

/// [`fetch`] into another of the cache's refs (`target`): [`TRIAL_REF`].
pub fn fetch_into(
    repo: &gix::Repository,
    settings: &GitSourceSettings,
    target: &'static str,
    interrupt: &AtomicBool,
) -> Result<FetchOutcome> {
    let shown_url = redact_url(&settings.url);
    let scheme = check_url_scheme(&settings.url, &shown_url)?;
    let branch_ref = branch_ref_name(&settings.branch)?;
    if interrupt.load(Ordering::Relaxed) {
        return Err(SourceError::Interrupted { url: shown_url }.into());
    }

    // gix passes ssh's stderr through to ours and turns only a few lines
    // into errors ("Permission denied"); a refused host key would just read
    // "failed to fill whole buffer". So ssh logs to a file (`ssh -E`) whose
    // last lines are added to the error. Owned by the worker: an abandoned
    // worker removes it when it finally ends.
    let ssh_log_dir = match scheme {
        gix::url::Scheme::Ssh => Some(
            tempfile::Builder::new()
                .prefix("driftless-ssh")
                .tempdir()
                .context("failed to create a temporary directory for the ssh log")?,
        ),
        _ => None,
    };
    let ssh_log = ssh_log_dir.as_ref().map(|d| d.path().join("ssh.log"));

    let mut worker_repo = repo.clone();
    configure_transport(&mut worker_repo, settings, &scheme, ssh_log.as_deref())
        .with_context(|| format!("failed to configure the git transport for {shown_url}"))?;

    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(1);
    let worker = {
        let cancel = Arc::clone(&cancel);
        let settings = settings.clone();
        let shown_url = shown_url.clone();
        std::thread::Builder::new()
            .name("driftless-git-fetch".into())
            .spawn(move || {
                let result = fetch_blocking(
                    &worker_repo,
                    &settings,
                    &shown_url,
                    &branch_ref,
                    target,
                    &cancel,
                )
                .map_err(|e| {
                    match ssh_log.as_deref().and_then(|l| last_log_lines(l, 2)) {
                        Some(said) => e.context(format!("ssh said: {said}")),
                        None => e,
                    }
                });
                drop(ssh_log_dir);
                // The receiver is gone when the caller gave up: nothing to report to.
                let _ = tx.send(result);
            })
            .context("failed to start the git fetch thread")?
    };

    let deadline = Instant::now() + settings.timeout;
    loop {
        match rx.recv_timeout(POLL_INTERVAL) {
            Ok(result) => {
                // The worker has sent its result and is about to exit.
                let _ = worker.join();
                return result;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                bail!("the git fetch thread for {shown_url} died without a result");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupt.load(Ordering::Relaxed) {
                    cancel.store(true, Ordering::Relaxed);
                    return Err(SourceError::Interrupted { url: shown_url }.into());
                }
                if Instant::now() >= deadline {
                    cancel.store(true, Ordering::Relaxed);
                    return Err(SourceError::Timeout {
                        url: shown_url,
                        after: settings.timeout,
                    }
                    .into());
                }
            }
        }
    }
}

/// The actual gix fetch, run on the worker thread.
fn fetch_blocking(
    repo: &gix::Repository,
    settings: &GitSourceSettings,
    shown_url: &str,
    branch_ref: &str,
    target: &str,
    cancel: &AtomicBool,
) -> Result<FetchOutcome> {
    use gix::remote::Direction;

    let previous = head_of(repo, target)?;
    let refspec = format!("+{branch_ref}:{target}");
    // Without url rewriting: `url.*.insteadOf` must not redirect the agent.
    let remote = repo
        .remote_at_without_url_rewrite(settings.url.as_str())
        .with_context(|| format!("failed to parse git URL {shown_url}"))?
        .with_refspecs(Some(refspec.as_str()), Direction::Fetch)
        .with_context(|| format!("failed to set refspec {refspec}"))?
        // Tags would add refs (and objects) the agent never looks at.
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let connection = remote
        .connect(Direction::Fetch)
        .with_context(|| format!("failed to connect to {shown_url}"))?
        // Never ask a credential helper or a terminal: a daemon has no one to ask.
        .with_credentials(|_| Ok(None));
    let prepare = connection
        .prepare_fetch(
            gix::progress::Discard,
            gix::remote::ref_map::Options::default(),
        )
        .with_context(|| format!("failed to list refs of {shown_url}"))?;

    let remote_head = prepare
        .ref_map()
        .mappings
        .iter()
        .find_map(|m| m.remote.as_id().map(ToOwned::to_owned));
    let Some(remote_head) = remote_head else {
        return Err(SourceError::BranchNotFound {
            url: shown_url.to_owned(),
            branch: settings.branch.clone(),
        }
        .into());
    };

    let outcome = prepare
        .receive(gix::progress::Discard, cancel)
        .with_context(|| {
            format!(
                "failed to fetch branch {} from {shown_url}",
                settings.branch
            )
        })?;

    let (pack_received, objects_received, negotiation_rounds) = match &outcome.status {
        gix::remote::fetch::Status::NoPackReceived { negotiate, .. } => {
            (false, 0, negotiate.as_ref().map_or(0, |n| n.rounds.len()))
        }
        gix::remote::fetch::Status::Change {
            negotiate,
            write_pack_bundle,
            ..
        } => (
            true,
            u64::from(write_pack_bundle.index.num_objects),
            negotiate.rounds.len(),
        ),
    };

    let head = head_of(repo, target)?
        .ok_or_else(|| anyhow!("{target} is missing after fetching from {shown_url}"))?;
    // A ref update gix skipped (it reports rather than fails) must not pass
    // as success: the caller would apply a stale head.
    if head != remote_head {
        bail!(
            "{target} is at {head} after fetching, but {shown_url} advertised {remote_head} for branch {}",
            settings.branch
        );
    }
    Ok(FetchOutcome {
        head,
        previous,
        changed: previous != Some(head),
        pack_received,
        objects_received,
        negotiation_rounds,
    })
}

/// Refuses URL kinds this module cannot bound in time or does not support.
fn check_url_scheme(url: &str, shown_url: &str) -> Result<gix::url::Scheme> {
    let parsed = gix::url::parse(url.as_bytes().as_bstr())
        .with_context(|| format!("failed to parse git URL {shown_url}"))?;
    match parsed.scheme {
        scheme @ (gix::url::Scheme::File
        | gix::url::Scheme::Ssh
        | gix::url::Scheme::Http
        | gix::url::Scheme::Https) => Ok(scheme),
        gix::url::Scheme::Git => bail!(
            "git URL {shown_url}: git:// is not supported (unauthenticated, and its transport cannot time out); use https:// or ssh://"
        ),
        other => bail!("git URL {shown_url}: unsupported scheme {other:?}"),
    }
}

/// `refs/heads/<branch>`, validated so a branch name cannot smuggle refspec
/// syntax (`:`, `*`, `+`) into the fetch.
fn branch_ref_name(branch: &str) -> Result<String> {
    let full = format!("refs/heads/{branch}");
    gix::refs::FullName::try_from(full.as_str())
        .with_context(|| format!("invalid branch name {branch:?}"))?;
    if branch.is_empty() || branch.starts_with('-') {
        bail!("invalid branch name {branch:?}");
    }
    Ok(full)
}

/// The URL with any password removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match gix::url::parse(url.as_bytes().as_bstr()) {
        Ok(mut parsed) if parsed.password().is_some() => {
            parsed.set_password(Some("***".into()));
            parsed.to_bstring().to_string()
        }
        _ => url.to_owned(),
    }
}

/// Sets the in-memory configuration of the worker's repository handle; the
/// cache's config file on disk is never touched.
fn configure_transport(
    repo: &mut gix::Repository,
    settings: &GitSourceSettings,
    scheme: &gix::url::Scheme,
    ssh_log: Option<&Path>,
) -> Result<()> {
    use gix::config::tree::{Core, Http, Ssh, gitoxide};

    let secs = (settings.timeout + TRANSPORT_GRACE).as_secs();
    let connect = (settings.timeout + TRANSPORT_GRACE).min(MAX_CONNECT_TIMEOUT);
    let ca_file = match (&settings.ca_file, scheme) {
        (Some(ca), _) => Some(ca.clone()),
        (None, gix::url::Scheme::Https) => Some(
            SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .context("no system CA bundle found; set the source's CA file")?,
        ),
        (None, _) => None,
    };

    let mut config = repo.config_snapshot_mut();
    // http(s): abort when less than 1 byte/s flows for the whole timeout (plus
    // grace), so a silent server ends the (possibly abandoned) worker too.
    config.set_value(&Http::LOW_SPEED_LIMIT, "1")?;
    config.set_value(&Http::LOW_SPEED_TIME, secs.to_string().as_str())?;
    config.set_value(
        &gitoxide::Http::CONNECT_TIMEOUT,
        connect.as_millis().to_string().as_str(),
    )?;
    if let Some(ca) = &ca_file {
        let ca = ca
            .to_str()
            .with_context(|| format!("CA file path {} is not UTF-8", ca.display()))?;
        config.set_value(&Http::SSL_CA_INFO, ca)?;
    }

    // ssh: with `timeout` in front, gix could not guess the ssh flavour from
    // the command name and would probe it with `-G`; say it is OpenSSH.
    config.set_value(&Ssh::VARIANT, "ssh")?;
    let mut cmd = format!(
        "timeout -k 5 {secs} ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout={} -o ServerAliveInterval=15 -o ServerAliveCountMax=3",
        connect.as_secs()
    );
    if let Some(key) = &settings.ssh_key {
        cmd.push_str(" -o IdentitiesOnly=yes -i ");
        cmd.push_str(&shell_quote(key)?);
    }
    if let Some(kh) = &settings.known_hosts {
        cmd.push_str(" -o UserKnownHostsFile=");
        cmd.push_str(&shell_quote(kh)?);
    }
    if let Some(log) = ssh_log {
        cmd.push_str(" -E ");
        cmd.push_str(&shell_quote(log)?);
    }
    config.set_value(&Core::SSH_COMMAND, cmd.as_str())?;
    config.commit()?;
    Ok(())
}

/// The last `n` non-empty lines of the log file at `path`, joined; `None`
/// when there is nothing to say.
fn last_log_lines(path: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(n)..].join(" / "))
}

/// Single-quotes `path` for `sh`, because gix runs `core.sshCommand` through
/// the shell.
fn shell_quote(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

/// Whether `ancestor` is reachable from `descendant` (a commit is its own
/// ancestor).
///
/// Walks from `ancestor` with `descendant` hidden: the walk yields nothing
/// exactly when `ancestor` is hidden, i.e. reachable from `descendant`
/// (the same test as `git rev-list descendant..ancestor` being empty).
pub fn is_ancestor(
    repo: &gix::Repository,
    ancestor: ObjectId,
    descendant: ObjectId,
) -> Result<bool> {
    if ancestor == descendant {
        return Ok(true);
    }
    let mut walk = repo
        .rev_walk([ancestor])
        .with_hidden([descendant])
        .all()
        .with_context(|| {
            format!("failed to walk history of commit {ancestor} hiding {descendant}")
        })?;
    match walk.next() {
        None => Ok(true),
        Some(Ok(_)) => Ok(false),
        Some(Err(e)) => Err(anyhow::Error::from(e)).with_context(|| {
            format!("failed to walk history of commit {ancestor} hiding {descendant}")
        }),
    }
}

/// Fails with [`SourceError::Rewind`] unless `fetched` descends from `applied`.
pub fn ensure_not_rewound(
    repo: &gix::Repository,
    applied: ObjectId,
    fetched: ObjectId,
) -> Result<()> {
    // A cache rebuilt after `rm -rf repo.git` holds only what the remote has
    // now: if the applied commit is not among it, the remote dropped it.
    if repo.has_object(applied) && is_ancestor(repo, applied, fetched)? {
        Ok(())
    } else {
        Err(SourceError::Rewind { applied, fetched }.into())
    }
}

/// All commits reachable from `to` but not from `from` (`from..to`), merges'
/// other parents included; every reachable commit when `from` is `None`.
/// Newest first (breadth-first from `to`); `to` itself comes first unless it
/// is reachable from `from`.
pub fn commits_between(
    repo: &gix::Repository,
    from: Option<ObjectId>,
    to: ObjectId,
) -> Result<Vec<ObjectId>> {
    let context = || match from {
        Some(from) => format!("listing commits {from}..{to}"),
        None => format!("listing commits reachable from {to}"),
    };
    let walk = repo
        .rev_walk([to])
        .with_hidden(from)
        .all()
        .with_context(context)?;
    let mut out = Vec::new();
    for info in walk {
        let info = info.map_err(anyhow::Error::from).with_context(context)?;
        out.push(info.id);
    }
    Ok(out)
}

/// A [`ConfigTree`] over one commit in the cache, read straight from the
/// object database (no worktree, no checkout).
///
/// Paths never pass through symlinks: a path whose parent component is a
/// symlink is absent, as in the in-memory tree.
pub struct GitTree {
    repo: gix::Repository,
    commit: ObjectId,
    tree: ObjectId,
    /// Trees decoded so far, by id: a load looks up every source below one
    /// `files/` tree, which would otherwise be inflated again per path.
    trees: RefCell<HashMap<ObjectId, Entries>>,
}

/// A decoded tree: each entry's mode and object id, by name.
type Entries = HashMap<Vec<u8>, (gix::objs::tree::EntryKind, ObjectId)>;

impl GitTree {
    /// The tree of `commit` in `repo`.
    pub fn new(repo: &gix::Repository, commit: ObjectId) -> Result<Self> {
        let tree = repo
            .find_commit(commit)
            .with_context(|| format!("failed to read commit {commit}"))?
            .tree_id()
            .with_context(|| format!("failed to read the tree of commit {commit}"))?
            .detach();
        Ok(Self {
            repo: repo.clone(),
            commit,
            tree,
            trees: RefCell::default(),
        })
    }

    /// The commit this tree belongs to.
    pub fn commit(&self) -> ObjectId {
        self.commit
    }

    /// Splits `path` into components, refusing `.`/`..`/empty components so a
    /// caller cannot address something the tree does not literally contain.
    fn components<'p>(&self, path: &'p str) -> Result<Vec<&'p str>> {
        if path.is_empty() {
            return Ok(Vec::new());
        }
        let parts: Vec<&str> = path.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            bail!("invalid path {path:?} in {}", self.describe());
        }
        Ok(parts)
    }

    /// Mode and object id of the entry at `path`; root is a tree.
    fn lookup(&self, path: &str) -> Result<Option<(gix::objs::tree::EntryKind, ObjectId)>> {
        use gix::objs::tree::EntryKind as Mode;
        let parts = self.components(path)?;
        let mut current = (Mode::Tree, self.tree);
        for part in parts {
            if current.0 != Mode::Tree {
                // A file, symlink or submodule cannot have children here.
                return Ok(None);
            }
            let found = self.with_entries(current.1, path, |e| e.get(part.as_bytes()).copied())?;
            match found {
                Some(entry) => current = entry,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// Calls `f` with the decoded entries of tree `id` (decoded once per
    /// load); `path` is what was looked up, for errors.
    fn with_entries<T>(
        &self,
        id: ObjectId,
        path: &str,
        f: impl FnOnce(&Entries) -> T,
    ) -> Result<T> {
        if let Some(e) = self.trees.borrow().get(&id) {
            return Ok(f(e));
        }
        let tree = self
            .repo
            .find_tree(id)
            .with_context(|| format!("reading tree {id} for {path:?} in {}", self.describe()))?;
        let mut entries = Entries::new();
        for entry in tree.iter() {
            let entry = entry.map_err(anyhow::Error::from).with_context(|| {
                format!("decoding tree {id} for {path:?} in {}", self.describe())
            })?;
            entries.insert(
                entry.filename().to_vec(),
                (entry.mode().kind(), entry.object_id()),
            );
        }
        let out = f(&entries);
        self.trees.borrow_mut().insert(id, entries);
        Ok(out)
    }

    fn blob(&self, id: ObjectId, path: &str) -> Result<Vec<u8>> {
        tracing::debug!(path, "read from the commit");
        let mut blob = self.repo.find_blob(id).with_context(|| {
            format!(
                "failed to read blob {id} for {path:?} in {}",
                self.describe()
            )
        })?;
        let mut data = blob.take_data();
        // A blob decoded from a delta comes in a buffer sized for the delta
        // base and the result; the desired state keeps every file's bytes
        // for the whole run, so keep only what they need.
        data.shrink_to_fit();
        Ok(data)
    }
}

impl ConfigTree for GitTree {
    fn describe(&self) -> String {
        let hex = self.commit.to_hex().to_string();
        format!("commit {}", &hex[..12.min(hex.len())])
    }

    fn kind(&self, path: &str) -> Result<Option<EntryKind>> {
        use gix::objs::tree::EntryKind as Mode;
        let Some((mode, id)) = self.lookup(path)? else {
            return Ok(None);
        };
        Ok(Some(match mode {
            Mode::Tree => EntryKind::Dir,
            Mode::Blob | Mode::BlobExecutable => {
                let header = self.repo.find_header(id).with_context(|| {
                    format!("reading object {id} for {path:?} in {}", self.describe())
                })?;
                EntryKind::File {
                    size: header.size(),
                }
            }
            Mode::Link => {
                let target = String::from_utf8(self.blob(id, path)?).with_context(|| {
                    format!(
                        "symlink {path:?} in {} has a non-UTF-8 target",
                        self.describe()
                    )
                })?;
                EntryKind::Symlink { target }
            }
            // A submodule: a commit of another repository we do not have.
            Mode::Commit => EntryKind::Other,
        }))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        use gix::objs::tree::EntryKind as Mode;
        match self.lookup(path)? {
            Some((Mode::Blob | Mode::BlobExecutable, id)) => self.blob(id, path),
            Some(_) => bail!("{path}: not a regular file in {}", self.describe()),
            None => bail!("{path}: no such file in {}", self.describe()),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        use gix::objs::tree::EntryKind as Mode;
        let id = match self.lookup(dir)? {
            None => return Ok(Vec::new()),
            Some((Mode::Tree, id)) => id,
            Some(_) => bail!("{dir}: not a directory in {}", self.describe()),
        };
        let names: Result<Vec<String>> = self.with_entries(id, dir, |entries| {
            entries
                .keys()
                .map(|name| {
                    std::str::from_utf8(name)
                        .map(str::to_owned)
                        .with_context(|| {
                            format!(
                                "non-UTF-8 name {:?} in {dir:?} in {}",
                                String::from_utf8_lossy(name),
                                self.describe()
                            )
                        })
                })
                .collect()
        })?;
        let mut names = names?;
        // Git orders trees with directories as if suffixed by '/'; the trait wants plain sorting.
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent moves the cache handle into `spawn_blocking`: that needs
    /// `Send`, which gix only provides with its `parallel` feature.
    #[test]
    fn handles_are_send() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<gix::Repository>();
        assert_send::<GitTree>();
    }

    #[test]
    fn accepted_and_refused_url_kinds() {
        for ok in [
            "https://git.example.com/fleet.git",
            "ssh://git@git.example.com:2222/fleet.git",
            "git@git.example.com:fleet.git",
            "file:///srv/git/fleet.git",
            "/srv/git/fleet.git",
        ] {
            check_url_scheme(ok, ok).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        assert!(check_url_scheme("git://git.example.com/fleet.git", "x").is_err());
        assert!(matches!(
            check_url_scheme("git@git.example.com:fleet.git", "x"),
            Ok(gix::url::Scheme::Ssh)
        ));
    }

    #[test]
    fn branch_names_cannot_inject_refspecs() {
        assert_eq!(branch_ref_name("main").unwrap(), "refs/heads/main");
        assert_eq!(branch_ref_name("env/prod").unwrap(), "refs/heads/env/prod");
        for bad in ["", "a:b", "a*", "-x", "a..b", "a b", "main/"] {
            assert!(branch_ref_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_redacted_and_paths_quoted() {
        assert_eq!(
            redact_url("https://u:pw@h.example/r.git"),
            "https://u:***@h.example/r.git"
        );
        assert_eq!(
            redact_url("https://h.example/r.git"),
            "https://h.example/r.git"
        );
        assert_eq!(
            shell_quote(Path::new("/a b/it's")).unwrap(),
            r"'/a b/it'\''s'"
        );
        assert_eq!(fmt_duration(Duration::from_secs(60)), "60s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }
}
