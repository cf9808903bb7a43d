//! Signature verification with real `git`, `ssh-keygen` and `gpg`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::common::*;
use driftless::source::git::{fetch, open_or_init_cache};
use driftless::source::verify::{
    SignatureFormat, SignaturePolicy, SignatureRejected, verify_commit, verify_update,
};
use gix::ObjectId;

/// Makes an ed25519 key pair `dir/name` (+ `.pub`), returning the private key path.
pub(super) fn ssh_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    key
}

pub(super) fn public_key(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn ssh_fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    // "256 SHA256:xxxx comment (ED25519)"
    String::from_utf8(out.stdout)
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Commits a change signed with the ssh `key`.
pub(super) fn ssh_signed_commit(repo: &Path, key: &Path, file: &str, msg: &str) -> ObjectId {
    std::fs::write(repo.join(file), msg).unwrap();
    git(repo, &["add", "-A"]);
    let signing_key = format!("user.signingkey={}", key.display());
    git(
        repo,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing_key,
            "commit",
            "-q",
            "-S",
            "-m",
            msg,
        ],
    );
    head(repo)
}

/// A throwaway GNUPGHOME with one signing key; stops its gpg-agent on drop.
struct GpgHome {
    dir: tempfile::TempDir,
    fingerprint: String,
}

impl GpgHome {
    fn new(uid: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("gpg")
                .env("GNUPGHOME", dir.path())
                .args(["--batch", "--no-tty"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        let listing = run(&["--with-colons", "--list-keys", uid]);
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_owned();
        GpgHome { dir, fingerprint }
    }

    fn export_armored(&self, to: &Path) {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.dir.path())
            .args(["--batch", "--armor", "--export", &self.fingerprint])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(to, out.stdout).unwrap();
    }

    fn signed_commit(&self, repo: &Path, file: &str, msg: &str) -> ObjectId {
        std::fs::write(repo.join(file), msg).unwrap();
        git(repo, &["add", "-A"]);
        let signing_key = format!("user.signingkey={}", self.fingerprint);
        git_env(
            repo,
            &[
                "-c",
                "gpg.format=openpgp",
                "-c",
                &signing_key,
                "commit",
                "-q",
                "-S",
                "-m",
                msg,
            ],
            &[("GNUPGHOME", self.dir.path())],
        );
        head(repo)
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // The agent that signing started belongs to this home only.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.dir.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// Rewrites commit `id`'s message in `repo`, keeping its signature header,
/// and returns the forged commit's id.
fn tamper(repo: &Path, id: ObjectId, from: &str, to: &str) -> ObjectId {
    let raw = git(repo, &["cat-file", "commit", &id.to_string()]);
    assert!(raw.contains("gpgsig"), "{raw}");
    let forged = raw.replace(from, to) + "\n";
    let path = repo.join("forged-commit");
    std::fs::write(&path, forged).unwrap();
    let new = git(
        repo,
        &["hash-object", "-w", "-t", "commit", path.to_str().unwrap()],
    );
    std::fs::remove_file(path).unwrap();
    ObjectId::from_hex(new.as_bytes()).unwrap()
}

/// Fetches `src`'s main into a fresh cache under `dir`.
fn cache_of(dir: &Path, src: &Path) -> gix::Repository {
    let repo = open_or_init_cache(&dir.join("cache")).unwrap();
    fetch(
        &repo,
        &settings(&src.display().to_string(), Duration::from_secs(30)),
        &AtomicBool::new(false),
    )
    .unwrap();
    repo
}

#[test]
fn ssh_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = ssh_key(tmp.path(), "alice");
    let mallory = ssh_key(tmp.path(), "mallory");
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!(
            "alice@example.com namespaces=\"git\" {}\n",
            public_key(&alice)
        ),
    )
    .unwrap();

    let src = new_repo(&tmp.path().join("src"));
    let unsigned = commit_file(&src, "a", "0", "unsigned");
    let good = ssh_signed_commit(&src, &alice, "a", "by alice");
    let evil = ssh_signed_commit(&src, &mallory, "a", "by mallory");
    let forged = tamper(&src, good, "by alice", "by alice, and more");
    git(&src, &["branch", "forged", &forged.to_string()]);
    let repo = cache_of(tmp.path(), &src);
    // The forged commit must be in the cache for the test to mean anything.
    fetch(
        &repo,
        &driftless::source::git::GitSourceSettings {
            branch: "forged".into(),
            ..settings(&src.display().to_string(), Duration::from_secs(30))
        },
        &AtomicBool::new(false),
    )
    .unwrap();

    // Allowed signer: accepted, with principal and fingerprint.
    let signer = verify_commit(&repo, good, Some(&allowed), None).unwrap();
    assert_eq!(signer.format, SignatureFormat::Ssh);
    assert_eq!(signer.identity, "alice@example.com");
    assert_eq!(signer.fingerprint, ssh_fingerprint(&alice));

    // Valid signature by a key that is not listed: rejected.
    let err = verify_commit(&repo, evil, Some(&allowed), None).unwrap_err();
    assert!(
        matches!(err, SignatureRejected::NotAllowed { commit, .. } if commit == evil),
        "{err}"
    );
    assert!(err.to_string().contains(&evil.to_string()));
    // The rejection names the key that signed, for the log.
    assert!(
        err.to_string().contains(&ssh_fingerprint(&mallory)),
        "{err}"
    );

    // Unsigned: rejected.
    assert_eq!(
        verify_commit(&repo, unsigned, Some(&allowed), None).unwrap_err(),
        SignatureRejected::Unsigned { commit: unsigned }
    );

    // Message changed after signing: key is listed, signature does not match.
    let err = verify_commit(&repo, forged, Some(&allowed), None).unwrap_err();
    assert!(
        matches!(err, SignatureRejected::BadSignature { commit, .. } if commit == forged),
        "{err}"
    );

    // No allowed_signers configured: says so.
    let err = verify_commit(&repo, good, None, Some(Path::new("/nonexistent"))).unwrap_err();
    assert!(
        matches!(
            err,
            SignatureRejected::NoTrustRoot {
                format: SignatureFormat::Ssh,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("allowed_signers"), "{err}");

    // An allowed_signers entry for another namespace does not allow git commits.
    let other_ns = tmp.path().join("allowed_other_ns");
    std::fs::write(
        &other_ns,
        format!(
            "alice@example.com namespaces=\"file\" {}\n",
            public_key(&alice)
        ),
    )
    .unwrap();
    assert!(verify_commit(&repo, good, Some(&other_ns), None).is_err());
}

#[test]
fn openpgp_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = GpgHome::new("Trusted Signer <trusted@example.com>");
    let stranger = GpgHome::new("Stranger <stranger@example.com>");
    let keyring = tmp.path().join("keyring.asc");
    trusted.export_armored(&keyring);

    let src = new_repo(&tmp.path().join("src"));
    let good = trusted.signed_commit(&src, "a", "by trusted");
    let strange = stranger.signed_commit(&src, "a", "by stranger");
    let forged = tamper(&src, good, "by trusted", "by trusted!");
    git(&src, &["branch", "forged", &forged.to_string()]);
    let repo = cache_of(tmp.path(), &src);
    fetch(
        &repo,
        &driftless::source::git::GitSourceSettings {
            branch: "forged".into(),
            ..settings(&src.display().to_string(), Duration::from_secs(30))
        },
        &AtomicBool::new(false),
    )
    .unwrap();

    let signer = verify_commit(&repo, good, None, Some(&keyring)).unwrap();
    assert_eq!(signer.format, SignatureFormat::OpenPgp);
    assert_eq!(signer.fingerprint, trusted.fingerprint);
    assert_eq!(signer.identity, "Trusted Signer <trusted@example.com>");

    let err = verify_commit(&repo, strange, None, Some(&keyring)).unwrap_err();
    assert!(
        matches!(err, SignatureRejected::NotAllowed { commit, .. } if commit == strange),
        "{err}"
    );

    let err = verify_commit(&repo, forged, None, Some(&keyring)).unwrap_err();
    assert!(
        matches!(err, SignatureRejected::BadSignature { commit, .. } if commit == forged),
        "{err}"
    );

    let err = verify_commit(&repo, good, Some(&keyring), None).unwrap_err();
    assert!(
        matches!(
            err,
            SignatureRejected::NoTrustRoot {
                format: SignatureFormat::OpenPgp,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn policy_all_rejects_an_unsigned_commit_in_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = ssh_key(tmp.path(), "alice");
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("alice@example.com {}\n", public_key(&alice)),
    )
    .unwrap();

    let src = new_repo(&tmp.path().join("src"));
    let c0 = ssh_signed_commit(&src, &alice, "a", "base");
    let c1 = ssh_signed_commit(&src, &alice, "a", "one");
    let c2 = commit_file(&src, "a", "two", "unsigned in the middle");
    let c3 = ssh_signed_commit(&src, &alice, "a", "three");
    let repo = cache_of(tmp.path(), &src);

    let list = driftless::source::git::commits_between(&repo, Some(c0), c3).unwrap();
    assert_eq!(list, vec![c3, c2, c1]);

    // Head only: the tip is fine.
    let head_only = verify_update(
        &repo,
        SignaturePolicy::Head,
        Some(c0),
        c3,
        Some(&allowed),
        None,
    )
    .unwrap();
    assert_eq!(head_only.len(), 1);
    assert_eq!(head_only[0].commit, c3);

    // All: the unsigned commit in the middle is found and named.
    let err = verify_update(
        &repo,
        SignaturePolicy::All,
        Some(c0),
        c3,
        Some(&allowed),
        None,
    )
    .unwrap_err();
    let rejected = err
        .downcast_ref::<SignatureRejected>()
        .expect("typed rejection");
    assert_eq!(rejected, &SignatureRejected::Unsigned { commit: c2 });
    assert_eq!(rejected.commit(), c2);

    // All, over the signed part only: every commit verified.
    let ok = verify_update(
        &repo,
        SignaturePolicy::All,
        Some(c2),
        c3,
        Some(&allowed),
        None,
    )
    .unwrap();
    assert_eq!(ok.iter().map(|v| v.commit).collect::<Vec<_>>(), vec![c3]);
    let ok = verify_update(&repo, SignaturePolicy::All, None, c1, Some(&allowed), None).unwrap();
    assert_eq!(ok.len(), 2);

    // Off: nothing checked, even with no trust roots.
    assert!(
        verify_update(&repo, SignaturePolicy::Off, None, c3, None, None)
            .unwrap()
            .is_empty()
    );
}
