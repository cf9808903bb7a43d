//! The only code that reads the config repo from outside the process: a
//! directory tree (`--repo DIR`), or the git cache with fetch, signature
//! verification and rewind protection.

pub(crate) mod dir;
pub(crate) mod download;
pub mod git;
pub mod pinned;
pub mod verify;

use std::path::Path;

use anyhow::{Context, Result, bail};
use gix::ObjectId;
use tracing::{info, warn};

use crate::cancel::Cancel;
use git::{GitSourceSettings, GitTree};
use verify::{SignaturePolicy, VerifiedCommit, VerifySettings};

/// The ref in the cache that marks the last commit converged successfully.
/// The same id is kept in the agent's state file, which is authoritative.
pub const APPLIED_REF: &str = "refs/driftless/applied";

/// A commit of the git source that passed every check, ready to read.
pub struct Checked {
    /// The commit to apply (hex).
    pub commit: String,
    /// The fetched branch head (hex).
    pub head: String,
    /// The commits whose signatures were verified, with their signers.
    pub verified: Vec<VerifiedCommit>,
    /// The commit's tree.
    pub tree: GitTree,
}

/// What the caller will do with the commit, which decides the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Apply it: every check.
    Apply,
    /// Only look at it (`plan --commit` of an older commit is a preview, not
    /// a rewind): signatures are still checked, ancestry is not.
    Preview,
    /// Apply it as a trial on this host (`converge --now --branch` or
    /// `--commit`), pinned there until `driftless resume`: signatures are
    /// checked; ancestry is not, and the configured branch's rewind floor
    /// (the applied commit) does not move.
    Trial,
}

/// The fetched commit was refused by a check (a rewritten history, a bad
/// or missing signature), as opposed to a source that could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `e` is (or was caused by) a [`Refused`] commit.
pub fn is_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Refused>())
}

/// Where the commit to check comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Fetch the branch from the remote first.
    Remote,
    /// Use what the cache fetched last (no network).
    Cache,
}

/// Which commit of the git source a run wants, and what for.
#[derive(Clone, Copy, Debug)]
pub struct Want<'a> {
    /// The commit applied from the configured branch: the rewind floor.
    pub applied: Option<&'a str>,
    /// A commit (hex id or unique prefix) instead of the head.
    pub commit: Option<&'a str>,
    /// Another branch than the configured one (with [`Purpose::Trial`] or
    /// [`Purpose::Preview`]): fetched apart, into its own ref.
    pub branch: Option<&'a str>,
    /// What the caller does with it.
    pub purpose: Purpose,
    /// From the remote, or from what the cache holds.
    pub fetch: Fetch,
}

/// Fetches the branch (the configured one, or [`Want::branch`]; with [`Fetch::Cache`], takes the head fetched
/// last), picks the commit to apply (`commit`, a hex id or unique prefix of
/// a fetched commit, else the head), refuses a rewound history unless
/// allowed, and verifies signatures by policy. `cache` is the bare git
/// cache (created if missing). Nothing here touches the host.
pub fn fetch_checked(
    git: &GitSourceSettings,
    verify: &VerifySettings,
    cache: &Path,
    want: &Want<'_>,
    cancel: &Cancel,
) -> Result<Checked> {
    let Want {
        applied,
        commit,
        branch,
        purpose,
        fetch,
    } = *want;
    let applied = applied
        .map(|h| ObjectId::from_hex(h.as_bytes()))
        .transpose()
        .context("the applied commit in the agent state is not a commit id")?;
    let repo = match fetch {
        Fetch::Remote => open_or_renew_cache(cache)?,
        Fetch::Cache => git::open_or_init_cache(cache)?,
    };
    // Another branch is fetched into its own ref: the configured branch's
    // fetched head stays what the daemon converges.
    let (settings, target_ref) = match branch {
        Some(b) if b != git.branch => (
            GitSourceSettings {
                branch: b.to_owned(),
                ..git.clone()
            },
            git::TRIAL_REF,
        ),
        _ => (git.clone(), git::STAGING_REF),
    };
    let head = match fetch {
        Fetch::Remote => {
            let fetched = git::fetch_into(&repo, &settings, target_ref, cancel.flag())?;
            // Debug: a no-op tick says one line, and this is not it.
            tracing::debug!(
                head = %fetched.head,
                pack = fetched.pack_received,
                objects = fetched.objects_received,
                "fetched branch {} of {} at {}",
                settings.branch,
                git::redact_url(&git.url),
                fetched.head
            );
            fetched.head
        }
        Fetch::Cache => git::head_of(&repo, target_ref)?.context(
            "nothing was fetched from the git source yet, so there is no commit to fall back to",
        )?,
    };
    let target = match commit {
        // Falling back to the applied commit from the cache: it may not be
        // in the history of a head that was refused for rewriting it.
        Some(rev)
            if fetch == Fetch::Cache
                && applied.is_some_and(|a| {
                    ObjectId::from_hex(rev.as_bytes()).ok() == Some(a) && repo.has_object(a)
                }) =>
        {
            applied.unwrap_or(head)
        }
        Some(rev) => resolve_commit(&repo, head, rev)?,
        None => head,
    };
    // A preview of another commit, or a trial, is no rewind of the
    // configured branch: its floor is not checked (nor moved).
    let other = match purpose {
        Purpose::Apply => false,
        Purpose::Preview => commit.is_some() || target_ref == git::TRIAL_REF,
        Purpose::Trial => true,
    };
    if let Some(applied) = applied.filter(|_| !other)
        && let Err(e) = git::ensure_not_rewound(&repo, applied, target)
    {
        if !verify.allow_rewind {
            warn!(%applied, %target, "refusing a rewritten history");
            return Err(anyhow::Error::new(Refused(format!("{e:#}")))
                .context("refused: set [verify] allow_rewind = true to accept it"));
        }
        warn!(%applied, %target, "history was rewritten; applying anyway because allow_rewind = true");
    }
    // `all` checks what is new since the last applied commit; a target that
    // does not descend from it (an allowed rewind, a preview of an older
    // commit) has no such range: then its whole history is checked.
    let since = applied.filter(|a| {
        repo.has_object(*a)
            && (*a == target || git::is_ancestor(&repo, *a, target).unwrap_or(false))
    });
    let verified = verify::verify_update(
        &repo,
        verify.signatures,
        since,
        target,
        verify.allowed_signers.as_deref(),
        verify.openpgp_keyring.as_deref(),
    )
    .map_err(|e| {
        warn!(commit = %target, error = format!("{e:#}"), "refusing a commit that failed signature verification");
        anyhow::Error::new(Refused(format!("{e:#}")))
    })?;
    if verify.signatures != SignaturePolicy::Off {
        for v in &verified {
            info!(commit = %v.commit, signer = %v.signer, "signature verified");
        }
    }
    let tree = GitTree::new(&repo, target)?;
    Ok(Checked {
        commit: target.to_string(),
        head: head.to_string(),
        verified,
        tree,
    })
}

/// Opens the cache; one that is damaged (it does not open, or what it
/// fetched last is not there) is moved aside, kept for a look, and a fresh
/// one is created: the next fetch fills it. The rewind protection lives in
/// the agent state, outside the cache, and holds all the same.
fn open_or_renew_cache(cache: &Path) -> Result<gix::Repository> {
    let healthy = git::open_or_init_cache(cache).and_then(|repo| {
        check_cache(&repo)?;
        Ok(repo)
    });
    let damage = match healthy {
        Ok(repo) => return Ok(repo),
        Err(e) => e,
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let aside = cache.with_file_name(format!(
        "{}.corrupt-{stamp}",
        cache
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("repo.git")
    ));
    std::fs::rename(cache, &aside).with_context(|| {
        format!(
            "the git cache {} is damaged ({damage:#}), and moving it aside failed",
            cache.display()
        )
    })?;
    warn!(
        error = format!("{damage:#}"),
        "the git cache {} is damaged; moved it aside to {} and fetching afresh",
        cache.display(),
        aside.display()
    );
    git::open_or_init_cache(cache)
}

/// What the cache fetched last must be readable: the commit and its tree.
fn check_cache(repo: &gix::Repository) -> Result<()> {
    if let Some(head) = git::fetched_head(repo)? {
        let commit = repo
            .find_object(head)
            .with_context(|| format!("the fetched commit {head} is missing"))?
            .try_into_commit()
            .with_context(|| format!("{head} is not a commit"))?;
        commit
            .tree()
            .with_context(|| format!("the tree of {head} is missing"))?;
    }
    Ok(())
}

/// Finds a commit of the fetched branch by full id or unique prefix (at
/// least 7 hex digits). Only commits reachable from the fetched head count:
/// `--commit` picks from the branch's history, nothing else in the cache.
fn resolve_commit(repo: &gix::Repository, head: ObjectId, rev: &str) -> Result<ObjectId> {
    let rev = rev.trim().to_ascii_lowercase();
    if rev.len() < 7 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "--commit `{rev}` must be a commit id (at least 7 hex digits); to try a branch, use --branch {rev}"
        );
    }
    let mut found = Vec::new();
    for c in git::commits_between(repo, None, head)? {
        if c.to_hex().to_string().starts_with(&rev) {
            found.push(c);
        }
    }
    // Also a commit of the branch fetched for the last trial.
    if found.is_empty()
        && let Some(trial) = git::head_of(repo, git::TRIAL_REF)?
        && trial != head
    {
        for c in git::commits_between(repo, None, trial)? {
            if c.to_hex().to_string().starts_with(&rev) {
                found.push(c);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("--commit {rev}: no such commit in the history of the fetched branch"),
        _ => bail!("--commit {rev}: ambiguous, {} commits match", found.len()),
    }
}

/// The full id of `rev`, a unique prefix of a commit of the fetched
/// branch, by the cache (`fleet wait`).
pub fn resolve(cache: &Path, rev: &str) -> Result<String> {
    let repo = gix::open_opts(cache, gix::open::Options::isolated())
        .with_context(|| format!("failed to open the git cache {}", cache.display()))?;
    let head = git::fetched_head(&repo)?.context("nothing was fetched here yet")?;
    Ok(resolve_commit(&repo, head, rev)?.to_string())
}

/// Moves [`APPLIED_REF`] in the cache to `commit` (after a successful converge).
pub fn mark_applied(cache: &Path, commit: &str) -> Result<()> {
    let commit = ObjectId::from_hex(commit.as_bytes())
        .with_context(|| format!("`{commit}` is not a commit id"))?;
    let repo = git::open_or_init_cache(cache)?;
    repo.reference(
        APPLIED_REF,
        commit,
        gix::refs::transaction::PreviousValue::Any,
        "driftless: applied",
    )
    .with_context(|| format!("failed to move {APPLIED_REF} to {commit}"))?;
    Ok(())
}

/// Read-only facts about the cache for `source status` (hex ids).
pub struct CacheStatus {
    /// The fetched branch head, if any fetch succeeded.
    pub fetched: Option<String>,
    /// What [`APPLIED_REF`] says.
    pub applied_ref: Option<String>,
}

/// Reads the cache without fetching; a missing cache is empty.
pub fn cache_status(path: &Path) -> Result<CacheStatus> {
    if !path.exists() {
        return Ok(CacheStatus {
            fetched: None,
            applied_ref: None,
        });
    }
    let repo = gix::open_opts(path, gix::open::Options::isolated())
        .with_context(|| format!("failed to open git cache {}", path.display()))?;
    let applied_ref = match repo.try_find_reference(APPLIED_REF) {
        Ok(Some(mut r)) => Some(
            r.peel_to_id()
                .context("failed to resolve the applied ref")?
                .detach()
                .to_string(),
        ),
        Ok(None) => None,
        Err(e) => return Err(e).context("failed to read the applied ref"),
    };
    Ok(CacheStatus {
        fetched: git::fetched_head(&repo)?.map(|c| c.to_string()),
        applied_ref,
    })
}

/// Whether commit `descendant` has `ancestor` in its history, by the cache
/// (`false` for ids the cache does not hold, or that are no commit ids,
/// such as the `sha256:…` keys of a directory source).
pub fn descends(cache: &Path, descendant: &str, ancestor: &str) -> bool {
    let ids = (
        ObjectId::from_hex(descendant.as_bytes()),
        ObjectId::from_hex(ancestor.as_bytes()),
    );
    let (Ok(descendant), Ok(ancestor)) = ids else {
        return false;
    };
    gix::open_opts(cache, gix::open::Options::isolated())
        .ok()
        .and_then(|repo| git::is_ancestor(&repo, ancestor, descendant).ok())
        .unwrap_or(false)
}
