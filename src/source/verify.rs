//! Commit signature verification against the agent's own trust roots.
//!
//! The signature and the exact signed bytes come from the commit object in the
//! cache (gix's `Commit::signature()`); the cryptography is done by the same
//! programs git uses: `ssh-keygen -Y` for SSH signatures (namespace `git`),
//! `gpg` in a throwaway `GNUPGHOME` for OpenPGP. Nothing from the user's
//! `~/.gnupg`, git config or the repository itself is trusted.
//!
//! Acceptance is decided from explicit positive evidence only: for SSH the
//! key must be listed for a principal *and* `ssh-keygen -Y verify` must accept
//! it for that principal; for OpenPGP gpg must report `GOODSIG` and
//! `VALIDSIG` and none of the bad statuses. A "good" status alone is never
//! enough (field notes: an unlisted key can still yield a "good" signature).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::git::commits_between;
use crate::system::command::Cmd;

/// Bound on each verifier subprocess: they are local and quick, so a stuck
/// one (a gpg waiting for an agent, say) must not stall the agent.
const SUBPROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Which commits must carry an acceptable signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignaturePolicy {
    /// No verification.
    #[default]
    Off,
    /// Only the commit about to be applied (the fetched branch head).
    Head,
    /// Every commit between the last applied one and the new head.
    All,
}

/// Trust settings for fetched commits (from the agent config's `[verify]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifySettings {
    /// Which commits must carry a valid signature by an allowed signer.
    pub signatures: SignaturePolicy,
    /// ssh-keygen allowed-signers file for SSH signatures.
    pub allowed_signers: Option<std::path::PathBuf>,
    /// OpenPGP keyring for OpenPGP signatures.
    pub openpgp_keyring: Option<std::path::PathBuf>,
    /// Accept a head that does not descend from the last applied commit.
    pub allow_rewind: bool,
}

/// The kind of a commit signature, from its armor line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureFormat {
    /// `-----BEGIN SSH SIGNATURE-----`, checked with `ssh-keygen -Y`.
    Ssh,
    /// `-----BEGIN PGP SIGNATURE-----`, checked with `gpg`.
    OpenPgp,
    /// `-----BEGIN SIGNED MESSAGE-----` (gpgsm): not supported.
    X509,
}

impl std::fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureFormat::Ssh => "an SSH signature",
            SignatureFormat::OpenPgp => "an OpenPGP signature",
            SignatureFormat::X509 => "an X.509 signature",
        })
    }
}

/// Who signed an accepted commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The signature's format.
    pub format: SignatureFormat,
    /// SSH: `SHA256:…` key fingerprint. OpenPGP: the primary key's fingerprint.
    pub fingerprint: String,
    /// SSH: the principal from `allowed_signers`. OpenPGP: the user id gpg
    /// reported for the key.
    pub identity: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.identity, self.fingerprint)
    }
}

/// Why a commit's signature was not accepted. Every variant names the commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRejected {
    /// The commit carries no signature.
    #[error("commit {commit} is not signed")]
    Unsigned {
        /// The commit.
        commit: ObjectId,
    },
    /// The signature could not be parsed, or the commit object is unreadable.
    #[error("commit {commit} has a malformed signature: {detail}")]
    Malformed {
        /// The commit.
        commit: ObjectId,
        /// What was wrong.
        detail: String,
    },
    /// The signature is of a kind this agent does not verify.
    #[error("commit {commit} has {format}, which is not supported")]
    Unsupported {
        /// The commit.
        commit: ObjectId,
        /// Its signature's format.
        format: SignatureFormat,
    },
    /// No trust root is configured for this kind of signature.
    #[error("commit {commit} has {format}, but no {} is configured", trust_root_name(*format))]
    NoTrustRoot {
        /// The commit.
        commit: ObjectId,
        /// Its signature's format.
        format: SignatureFormat,
    },
    /// Signed by a key that is not allowed (unknown, expired or revoked).
    #[error("commit {commit} is signed by a key that is not allowed: {detail}")]
    NotAllowed {
        /// The commit.
        commit: ObjectId,
        /// The verifier's words.
        detail: String,
    },
    /// The signature does not match the commit's contents (tampered), though
    /// the key is known.
    #[error(
        "commit {commit} has a bad signature (contents do not match what was signed): {detail}"
    )]
    BadSignature {
        /// The commit.
        commit: ObjectId,
        /// The verifier's words.
        detail: String,
    },
    /// The verifier could not be run or gave an answer we cannot interpret;
    /// rejected because nothing positive was established.
    #[error("could not verify the signature of commit {commit}: {detail}")]
    VerifierFailed {
        /// The commit.
        commit: ObjectId,
        /// What went wrong.
        detail: String,
    },
}

impl SignatureRejected {
    /// The commit that was rejected.
    pub fn commit(&self) -> ObjectId {
        match self {
            SignatureRejected::Unsigned { commit }
            | SignatureRejected::Malformed { commit, .. }
            | SignatureRejected::Unsupported { commit, .. }
            | SignatureRejected::NoTrustRoot { commit, .. }
            | SignatureRejected::NotAllowed { commit, .. }
            | SignatureRejected::BadSignature { commit, .. }
            | SignatureRejected::VerifierFailed { commit, .. } => *commit,
        }
    }
}

fn trust_root_name(format: SignatureFormat) -> &'static str {
    match format {
        SignatureFormat::Ssh => "allowed_signers file",
        SignatureFormat::OpenPgp => "OpenPGP keyring",
        SignatureFormat::X509 => "X.509 trust store",
    }
}

/// Verifies the signature of `commit` against `allowed_signers` (SSH, the
/// `ssh-keygen` ALLOWED SIGNERS format) or `openpgp_keyring` (a file of
/// OpenPGP public keys, armored or binary; every key in it is trusted).
pub fn verify_commit(
    repo: &gix::Repository,
    commit: ObjectId,
    allowed_signers: Option<&Path>,
    openpgp_keyring: Option<&Path>,
) -> Result<Signer, SignatureRejected> {
    let object = repo
        .find_commit(commit)
        .map_err(|e| SignatureRejected::Malformed {
            commit,
            detail: format!("cannot read commit object: {e:#}"),
        })?;
    let (signature, signed) = match object.signature() {
        Ok(Some((sig, signed))) => (sig.into_owned(), signed.to_bstring()),
        Ok(None) => return Err(SignatureRejected::Unsigned { commit }),
        Err(e) => {
            return Err(SignatureRejected::Malformed {
                commit,
                detail: format!("cannot parse commit object: {e:#}"),
            });
        }
    };
    let format = match gix::objs::signature::Format::from_signature(signature.trim_start()) {
        Some(gix::objs::signature::Format::Ssh) => SignatureFormat::Ssh,
        Some(gix::objs::signature::Format::OpenPgp) => SignatureFormat::OpenPgp,
        Some(gix::objs::signature::Format::X509) => {
            return Err(SignatureRejected::Unsupported {
                commit,
                format: SignatureFormat::X509,
            });
        }
        None => {
            return Err(SignatureRejected::Malformed {
                commit,
                detail: "unknown signature armor".into(),
            });
        }
    };
    let failed = |e: anyhow::Error| SignatureRejected::VerifierFailed {
        commit,
        detail: format!("{e:#}"),
    };
    match format {
        SignatureFormat::Ssh => {
            let allowed =
                allowed_signers.ok_or(SignatureRejected::NoTrustRoot { commit, format })?;
            verify_ssh(commit, &signature, &signed, allowed, &failed)
        }
        SignatureFormat::OpenPgp => {
            let keyring =
                openpgp_keyring.ok_or(SignatureRejected::NoTrustRoot { commit, format })?;
            verify_openpgp(commit, &signature, &signed, keyring, &failed)
        }
        SignatureFormat::X509 => Err(SignatureRejected::Unsupported { commit, format }),
    }
}

/// A commit that passed verification, with its signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCommit {
    /// The commit.
    pub commit: ObjectId,
    /// Who signed it.
    pub signer: Signer,
}

/// Applies `policy` to an update from `from` (last applied, if any) to `to`.
///
/// `Head` verifies `to`; `All` verifies every commit in `from..to` (all of
/// `to`'s history when `from` is `None`). The first rejection is returned as
/// a [`SignatureRejected`] inside the `anyhow::Error` (downcast to branch).
pub fn verify_update(
    repo: &gix::Repository,
    policy: SignaturePolicy,
    from: Option<ObjectId>,
    to: ObjectId,
    allowed_signers: Option<&Path>,
    openpgp_keyring: Option<&Path>,
) -> Result<Vec<VerifiedCommit>> {
    let commits = match policy {
        SignaturePolicy::Off => return Ok(Vec::new()),
        SignaturePolicy::Head => vec![to],
        SignaturePolicy::All => commits_between(repo, from, to)?,
    };
    let mut out = Vec::with_capacity(commits.len());
    for commit in commits {
        let signer = verify_commit(repo, commit, allowed_signers, openpgp_keyring)?;
        out.push(VerifiedCommit { commit, signer });
    }
    Ok(out)
}

fn verify_ssh(
    commit: ObjectId,
    signature: &[u8],
    signed: &[u8],
    allowed_signers: &Path,
    failed: &dyn Fn(anyhow::Error) -> SignatureRejected,
) -> Result<Signer, SignatureRejected> {
    if !allowed_signers.is_file() {
        return Err(failed(anyhow::anyhow!(
            "allowed signers file {} does not exist",
            allowed_signers.display()
        )));
    }
    let dir = tempfile::tempdir()
        .context("failed to create a temporary directory for the signature")
        .map_err(failed)?;
    let sig_path = dir.path().join("commit.sig");
    std::fs::write(&sig_path, signature)
        .with_context(|| format!("failed to write {}", sig_path.display()))
        .map_err(failed)?;

    // Step 1: which principal does allowed_signers list for the signing key?
    // This checks listing (and validity dates) only, not the signature.
    let find = Cmd::new("ssh-keygen")
        .args(["-Y", "find-principals", "-f"])
        .arg(allowed_signers)
        .arg("-s")
        .arg(&sig_path);
    let found = run(find)
        .context("failed to run ssh-keygen -Y find-principals")
        .map_err(failed)?;
    if !found.success {
        let detail = found.stderr_line();
        // ssh-keygen says "Couldn't parse signature" for garbage armor.
        if detail.contains("parse signature") || detail.contains("sshsig_") {
            return Err(SignatureRejected::Malformed { commit, detail });
        }
        // Who signed, for the log: the key is not trusted, but its
        // fingerprint tells an operator which key it was.
        let signer = run(Cmd::new("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", "git", "-s"])
            .arg(&sig_path)
            .stdin(signed))
        .ok()
        .and_then(|o| {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.split_whitespace()
                .find(|w| w.starts_with("SHA256:"))
                .map(str::to_owned)
        });
        let listed = if detail.is_empty() {
            format!("not listed in {}", allowed_signers.display())
        } else {
            detail
        };
        return Err(SignatureRejected::NotAllowed {
            commit,
            detail: match signer {
                Some(fp) => format!("signer key {fp}: {listed}"),
                None => listed,
            },
        });
    }
    let principal = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| SignatureRejected::NotAllowed {
            commit,
            detail: format!("no principal in {} for this key", allowed_signers.display()),
        })?;

    // Step 2: the cryptographic check, for that principal, in git's namespace.
    let verify = Cmd::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed_signers)
        .arg("-I")
        .arg(&principal)
        .args(["-n", "git", "-s"])
        .arg(&sig_path)
        .stdin(signed);
    let verified = run(verify)
        .context("failed to run ssh-keygen -Y verify")
        .map_err(failed)?;
    let out = String::from_utf8_lossy(&verified.stdout).into_owned();
    // ssh-keygen: `Good "git" signature for PRINCIPAL with ED25519 key SHA256:...`
    let good = out
        .lines()
        .find(|l| l.starts_with("Good \"git\" signature for "))
        .map(str::to_owned);
    match (verified.success, good) {
        (true, Some(line)) => {
            let fingerprint = line
                .rsplit(' ')
                .next()
                .filter(|f| f.starts_with("SHA256:"))
                .map(str::to_owned)
                .ok_or_else(|| failed(anyhow::anyhow!("unexpected ssh-keygen output: {line}")))?;
            Ok(Signer {
                format: SignatureFormat::Ssh,
                fingerprint,
                identity: principal,
            })
        }
        (true, None) => Err(failed(anyhow::anyhow!(
            "ssh-keygen -Y verify succeeded without a \"Good\" line: {}",
            out.trim()
        ))),
        (false, _) => {
            let detail = verified.stderr_line();
            // The key was found in step 1, so a failure here means the bytes
            // do not match the signature (or a wrong namespace).
            Err(SignatureRejected::BadSignature { commit, detail })
        }
    }
}

fn verify_openpgp(
    commit: ObjectId,
    signature: &[u8],
    signed: &[u8],
    keyring: &Path,
    failed: &dyn Fn(anyhow::Error) -> SignatureRejected,
) -> Result<Signer, SignatureRejected> {
    if !keyring.is_file() {
        return Err(failed(anyhow::anyhow!(
            "OpenPGP keyring {} does not exist",
            keyring.display()
        )));
    }
    // A fresh GNUPGHOME holding only the configured keys: no user trust db,
    // no gpg.conf, no key servers.
    let home = tempfile::tempdir()
        .context("failed to create a temporary GNUPGHOME")
        .map_err(failed)?;
    let sig_path = home.path().join("commit.sig");
    std::fs::write(&sig_path, signature)
        .with_context(|| format!("failed to write {}", sig_path.display()))
        .map_err(failed)?;

    let gpg = |args: &[&std::ffi::OsStr]| {
        Cmd::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--no-tty", "--no-options"])
            // gpg 2.2 otherwise starts a gpg-agent even for --import of public
            // keys, one per verification, lingering until its home vanishes.
            .args(["--no-autostart", "--no-auto-key-retrieve"])
            // The keyring file is the allow-list: its keys need no web of trust.
            .args(["--trust-model", "always"])
            .args(args)
    };
    let import = run(gpg(&["--import".as_ref(), keyring.as_os_str()]))
        .with_context(|| format!("failed to import OpenPGP keyring {}", keyring.display()))
        .map_err(failed)?;
    if !import.success {
        return Err(failed(anyhow::anyhow!(
            "importing OpenPGP keyring {}: {}",
            keyring.display(),
            import.stderr_line()
        )));
    }

    let verified = run(gpg(&[
        "--status-fd".as_ref(),
        "1".as_ref(),
        "--verify".as_ref(),
        sig_path.as_os_str(),
        "-".as_ref(),
    ])
    .stdin(signed))
    .context("failed to run gpg --verify")
    .map_err(failed)?;
    let status = String::from_utf8_lossy(&verified.stdout).into_owned();
    judge_gpg_status(commit, verified.success, &status, &verified.stderr_line())
}

/// Turns gpg's `--status-fd` lines into a verdict. Separate so the decision
/// table can be read (and tested) in one place.
fn judge_gpg_status(
    commit: ObjectId,
    exit_ok: bool,
    status: &str,
    stderr: &str,
) -> Result<Signer, SignatureRejected> {
    let mut goodsig = Vec::new();
    let mut validsig = Vec::new();
    let mut errors = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut words = rest.split(' ');
        let keyword = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        match keyword {
            "GOODSIG" => goodsig.push(args.get(1..).map(|a| a.join(" ")).unwrap_or_default()),
            "VALIDSIG" => validsig.push(args),
            "BADSIG" | "ERRSIG" | "EXPSIG" | "EXPKEYSIG" | "REVKEYSIG" | "NO_PUBKEY" | "NODATA"
            | "BADARMOR" | "UNEXPECTED" | "KEYREVOKED" | "KEYEXPIRED" | "FAILURE" => {
                errors.push((keyword, rest.to_owned()));
            }
            _ => {}
        }
    }
    let detail_of = |k: &str| {
        errors
            .iter()
            .find(|(kw, _)| *kw == k)
            .map(|(_, line)| line.clone())
    };
    if let Some(d) = detail_of("BADSIG") {
        return Err(SignatureRejected::BadSignature { commit, detail: d });
    }
    for k in [
        "EXPKEYSIG",
        "REVKEYSIG",
        "EXPSIG",
        "KEYREVOKED",
        "KEYEXPIRED",
        "NO_PUBKEY",
    ] {
        if let Some(d) = detail_of(k) {
            return Err(SignatureRejected::NotAllowed { commit, detail: d });
        }
    }
    for k in ["NODATA", "BADARMOR", "UNEXPECTED"] {
        if let Some(d) = detail_of(k) {
            return Err(SignatureRejected::Malformed { commit, detail: d });
        }
    }
    if let Some((_, d)) = errors.first() {
        return Err(SignatureRejected::VerifierFailed {
            commit,
            detail: d.clone(),
        });
    }
    // Exactly one good, valid signature: several would mean several signature
    // packets, which git never writes.
    match (exit_ok, goodsig.as_slice(), validsig.as_slice()) {
        (true, [uid], [valid]) => {
            // VALIDSIG <sig-key-fpr> <date> <ts> <expire> <ver> <rsvd> <pk-algo> <hash-algo> <class> <primary-fpr>
            let fingerprint = valid
                .get(9)
                .or_else(|| valid.first())
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
            if fingerprint.is_empty() {
                return Err(SignatureRejected::VerifierFailed {
                    commit,
                    detail: "gpg reported VALIDSIG without a fingerprint".into(),
                });
            }
            Ok(Signer {
                format: SignatureFormat::OpenPgp,
                fingerprint,
                identity: uid.clone(),
            })
        }
        _ => Err(SignatureRejected::VerifierFailed {
            commit,
            detail: format!(
                "gpg gave no single good and valid signature (exit ok: {exit_ok}): {}",
                if stderr.is_empty() {
                    status.trim()
                } else {
                    stderr
                }
            ),
        }),
    }
}

/// What a finished subprocess produced.
struct Output {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    /// stderr as one trimmed line for messages.
    fn stderr_line(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs a verifier through the one subprocess helper; its exit code is a
/// verdict to judge, not a failure to report.
fn run(cmd: Cmd) -> Result<Output> {
    // Verification is short and bounded by its timeout; a stop request is
    // honoured right after it, before anything is applied.
    let out = cmd
        .timeout(SUBPROCESS_TIMEOUT)
        .any_code()
        .run(&crate::cancel::Cancel::new())?;
    Ok(Output {
        success: out.code == 0,
        stdout: out.stdout.into_bytes(),
        stderr: out.stderr.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ObjectId {
        ObjectId::null(gix::hash::Kind::Sha1)
    }

    #[test]
    fn gpg_status_table() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AAAA Test <t@example>\n[GNUPG:] VALIDSIG SUBFPR 2024-01-01 1 0 4 0 22 10 00 PRIMFPR\n";
        let s = judge_gpg_status(id(), true, good, "").expect("good");
        assert_eq!(s.fingerprint, "PRIMFPR");
        assert_eq!(s.identity, "Test <t@example>");
        // "Good" but the key is expired: rejected.
        let exp = "[GNUPG:] EXPKEYSIG AAAA Test\n[GNUPG:] VALIDSIG X 1 1 0 4 0 22 10 00 X\n";
        assert!(matches!(
            judge_gpg_status(id(), true, exp, ""),
            Err(SignatureRejected::NotAllowed { .. })
        ));
        // GOODSIG without VALIDSIG is not enough.
        let half = "[GNUPG:] GOODSIG AAAA Test\n";
        assert!(matches!(
            judge_gpg_status(id(), true, half, ""),
            Err(SignatureRejected::VerifierFailed { .. })
        ));
        // Non-zero exit overrides good status lines.
        assert!(judge_gpg_status(id(), false, good, "").is_err());
        let bad = "[GNUPG:] BADSIG AAAA Test\n";
        assert!(matches!(
            judge_gpg_status(id(), false, bad, ""),
            Err(SignatureRejected::BadSignature { .. })
        ));
    }
}
