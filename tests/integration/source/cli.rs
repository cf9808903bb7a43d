//! `driftless plan` / `converge` / `source status` on a git source, end to
//! end through the binary: applied-commit bookkeeping, rewind protection that
//! survives a deleted cache, and signature refusals that change nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;
use super::verify::{public_key, ssh_key, ssh_signed_commit};

struct Agent {
    dir: tempfile::TempDir,
    origin: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Agent {
    /// An origin repo with one commit that writes /motd, and an agent config
    /// pointing at it with `extra` appended.
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = new_repo(&dir.path().join("origin"));
        commit_file(
            &origin,
            "hosts/h.toml",
            "[[file]]\npath = '/motd'\ncontent = 'one'\n",
            "one",
        );
        let a = Self { dir, origin };
        a.config(extra);
        a
    }

    fn config(&self, extra: &str) {
        let text = format!(
            "host = 'h'\nstate_dir = '{}'\nfacts_dir = '{}'\n[source]\nurl = 'file://{}'\nbranch = 'main'\ntimeout = '20s'\n{extra}",
            self.state().display(),
            self.facts_dir().display(),
            self.origin.display()
        );
        std::fs::write(self.dir.path().join("agent.toml"), text).expect("write config");
    }

    fn facts_dir(&self) -> PathBuf {
        self.dir.path().join("facts.d")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("agent.toml"))
            .env("NO_COLOR", "1")
            .output()
            .expect("run driftless");
        let o = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        o
    }

    fn converge(&self) -> Out {
        let root = self.root();
        self.run(&[
            "converge",
            "--now",
            "--create-root",
            "--root",
            root.to_str().expect("utf-8"),
        ])
    }

    /// `converge` with debug logs, which say where the desired state came
    /// from (see [`from_cache`]).
    fn converge_logged(&self) -> Out {
        let root = self.root();
        self.run(&[
            "converge",
            "--now",
            "--create-root",
            "-vv",
            "--root",
            root.to_str().expect("utf-8"),
        ])
    }

    fn motd(&self) -> Option<String> {
        std::fs::read_to_string(self.root().join("motd")).ok()
    }

    fn status(&self) -> serde_json::Value {
        let o = self.run(&["source", "status", "--json"]);
        assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
        crate::json_schema::check(&o.stdout, o.code)["source_status"].clone()
    }

    fn commit(&self, content: &str) -> gix::ObjectId {
        commit_file(
            &self.origin,
            "hosts/h.toml",
            &format!("[[file]]\npath = '/motd'\ncontent = '{content}'\n"),
            content,
        )
    }
}

/// Whether a [`Agent::converge_logged`] took the desired state from the
/// state directory's cache.
fn from_cache(o: &Out) -> bool {
    o.stderr.contains("the commit was loaded before")
}

#[track_caller]
fn expect(o: &Out, code: i32) {
    assert_eq!(o.code, code, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
}

/// A commit converged before is not read again: the tick of a daemon on
/// an unchanged commit loads its desired state from the state directory
/// (no tree, no blob, no template), and reads back from the object store
/// only the bytes of a file that is to change. A new commit is always read.
#[test]
fn an_unchanged_commit_is_not_read_again_and_a_new_one_always_is() {
    let a = Agent::new("");
    let host_file = |motd: &str| {
        format!(
            "[vars]\nwho = 'ops'\n[[file]]\npath = '/motd'\ncontent = '{motd}'\n[[file]]\npath = '/banner'\ntemplate = true\ncontent = '{{{{ vars.who }}}} on {{{{ facts.os_id }}}}'\n"
        )
    };
    commit_file(&a.origin, "hosts/h.toml", &host_file("two"), "two");
    let root = a.root();
    let converge = || a.converge_logged();
    let read_from_git = |o: &Out| o.stderr.contains("read from the commit");

    let cold = converge();
    expect(&cold, 2);
    assert!(
        read_from_git(&cold) && !from_cache(&cold),
        "{}",
        cold.stderr
    );
    let banner = std::fs::read_to_string(root.join("banner")).expect("banner");
    assert!(banner.starts_with("ops on "), "{banner}");

    let warm = converge();
    expect(&warm, 0);
    assert!(from_cache(&warm), "{}", warm.stderr);
    assert!(
        !read_from_git(&warm),
        "an unchanged commit was read: {}",
        warm.stderr
    );

    // Drift by hand: healed with the desired bytes, read back from the
    // object store, still without reading the commit.
    std::fs::write(root.join("motd"), "edited").expect("edit");
    std::fs::remove_file(root.join("banner")).expect("remove");
    let heal = converge();
    expect(&heal, 2);
    assert!(
        from_cache(&heal) && !read_from_git(&heal),
        "{}",
        heal.stderr
    );
    assert_eq!(a.motd().as_deref(), Some("two"));
    assert_eq!(
        std::fs::read_to_string(root.join("banner")).expect("banner"),
        banner
    );

    // A new commit is read and applied.
    commit_file(&a.origin, "hosts/h.toml", &host_file("three"), "three");
    let next = converge();
    expect(&next, 2);
    assert!(
        read_from_git(&next) && !from_cache(&next),
        "{}",
        next.stderr
    );
    assert_eq!(a.motd().as_deref(), Some("three"));

    // Read-only commands use the cache but never write one.
    let cache = a.state().join("desired-cache.json");
    std::fs::remove_file(&cache).expect("remove the cache");
    let plan = a.run(&["plan", "--root", root.to_str().expect("utf-8")]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(!cache.exists(), "plan wrote the desired-state cache");
}

/// The cached desired state is kept under the facts its templates read,
/// not all of them: a fact that changes and that no template reads (a
/// mount, an interface, here a custom fact) keeps a no-op a cache hit, and
/// the program of an unread custom fact does not run on it; a change of a
/// fact a template reads is loaded and applied.
#[test]
fn a_changed_fact_no_template_reads_keeps_the_cache_and_a_read_one_does_not() {
    use std::os::unix::fs::PermissionsExt;
    let a = Agent::new("");
    let facts = a.facts_dir();
    std::fs::create_dir_all(&facts).expect("mkdir");
    std::fs::write(facts.join("rack.toml"), "row = 3\n").expect("write");
    std::fs::write(facts.join("noise.toml"), "n = 1\n").expect("write");
    let ran = a.dir.path().join("probe-ran");
    let probe = facts.join("probe");
    std::fs::write(
        &probe,
        format!(
            "#!/bin/sh\necho ran >> {}\necho '{{\"x\": 1}}'\n",
            ran.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    commit_file(
        &a.origin,
        "hosts/h.toml",
        "[[file]]\npath = '/rack'\ntemplate = true\ncontent = 'row {{ facts.custom.rack.row }} on {{ facts.os_family }}'\n",
        "rack",
    );
    let root = a.root();
    let converge = || a.converge_logged();
    let runs = || {
        std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .count()
    };

    let cold = converge();
    expect(&cold, 2);
    assert!(!from_cache(&cold), "{}", cold.stderr);
    let rack = std::fs::read_to_string(root.join("rack")).expect("rack");
    assert!(rack.starts_with("row 3 on "), "{rack}");
    // A load reads every custom fact: its templates may read any.
    assert_eq!(runs(), 1);

    std::fs::write(facts.join("noise.toml"), "n = 2\n").expect("write");
    let warm = converge();
    expect(&warm, 0);
    assert!(from_cache(&warm), "{}", warm.stderr);
    assert_eq!(runs(), 1, "an unread custom fact's program ran on a no-op");

    std::fs::write(facts.join("rack.toml"), "row = 4\n").expect("write");
    let changed = converge();
    expect(&changed, 2);
    assert!(!from_cache(&changed), "{}", changed.stderr);
    let rack = std::fs::read_to_string(root.join("rack")).expect("rack");
    assert!(rack.starts_with("row 4 on "), "{rack}");
    expect(&converge(), 0);
}

#[test]
fn converges_from_git_and_records_the_applied_commit() {
    let a = Agent::new("");
    let first = head(&a.origin);
    let o = a.converge();
    expect(&o, 2);
    assert!(
        o.stdout
            .contains(&format!("commit {}", &first.to_string()[..12])),
        "{}",
        o.stdout
    );
    assert_eq!(a.motd().as_deref(), Some("one"));
    let st = a.status();
    assert_eq!(st["applied_commit"], first.to_string());
    assert_eq!(st["fetched_head"], first.to_string());
    assert_eq!(st["pending"], false);
    // The applied ref in the cache follows the state file.
    let cache = a.state().join("repo.git");
    assert_eq!(
        git(&cache, &["rev-parse", "refs/driftless/applied"]),
        first.to_string()
    );

    let second = a.commit("two");
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("two"));
    assert_eq!(a.status()["applied_commit"], second.to_string());
    expect(&a.converge(), 0);

    // --commit plans an older commit of the fetched branch.
    let root = a.root();
    let o = a.run(&[
        "plan",
        "--root",
        root.to_str().expect("utf-8"),
        "--commit",
        &first.to_string()[..10],
    ]);
    expect(&o, 2);
    assert!(
        o.stdout.contains("-two") && o.stdout.contains("+one"),
        "{}",
        o.stdout
    );
}

/// Regression: a converge that found the host in sync skipped writing the
/// agent state, and with it the record of its fetch (`source status` then
/// showed an old fetch).
#[test]
fn an_in_sync_converge_records_its_fetch() {
    let a = Agent::new("");
    expect(&a.converge(), 2);
    let first = a.status()["last_fetch"]["at"].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    expect(&a.converge(), 0);
    let st = a.status();
    assert_ne!(st["last_fetch"]["at"], first, "{st}");
    assert!(st["last_fetch"]["error"].is_null(), "{st}");
}

/// An invalid commit is the desired state's fault: reported (exit 1) and
/// quarantined, so the next runs hold the host at the last good state and
/// go on healing drift instead of stopping at the same errors.
#[test]
fn an_invalid_commit_is_quarantined_and_drift_is_still_healed() {
    let a = Agent::new("");
    expect(&a.converge(), 2);
    let bad = commit_file(
        &a.origin,
        "hosts/h.toml",
        "[[file]]\npath = 'relative'\ncontent = 'x'\n",
        "invalid",
    );
    let o = a.converge();
    expect(&o, 1);
    assert!(o.stderr.contains("hosts/h.toml:2:8"), "{}", o.stderr);
    assert!(o.stdout.contains("is quarantined"), "{}", o.stdout);
    std::fs::write(a.root().join("motd"), "edited by hand").unwrap();
    let o = a.converge();
    expect(&o, 3);
    assert_eq!(a.motd().as_deref(), Some("one"), "drift was not healed");
    let st = a.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["status"]["quarantine"]["key"], bad.to_string(), "{st}");
    // A fixed commit moves on.
    a.commit("three");
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("three"));
}

/// Regression: a damaged git cache (`repo.git`) failed every run until
/// someone deleted it by hand.
#[test]
fn a_corrupt_git_cache_is_moved_aside_and_fetched_afresh() {
    for damage in ["objects", "ref", "config"] {
        let a = Agent::new("");
        expect(&a.converge(), 2);
        let cache = a.state().join("repo.git");
        match damage {
            "config" => std::fs::write(cache.join("config"), "[core\n\tgarbage = =\n").unwrap(),
            "objects" => {
                std::fs::remove_dir_all(cache.join("objects")).unwrap();
                std::fs::create_dir_all(cache.join("objects/pack")).unwrap();
            }
            _ => {
                let staging = cache.join("refs/driftless/fetched");
                std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
                std::fs::write(&staging, "0123456789012345678901234567890123456789\n").unwrap();
            }
        }
        let two = a.commit("two");
        let o = a.converge();
        expect(&o, 2);
        assert!(
            o.stderr.contains("moved it aside"),
            "{damage}: {}",
            o.stderr
        );
        assert_eq!(a.motd().as_deref(), Some("two"), "{damage}");
        assert_eq!(a.status()["applied_commit"], two.to_string(), "{damage}");
        let aside = std::fs::read_dir(a.state())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("repo.git.corrupt-")
            });
        assert!(aside, "{damage}: the damaged cache was not kept for a look");
        expect(&a.converge(), 0);
    }
}

#[test]
fn a_rewritten_history_is_refused_even_after_the_cache_is_deleted() {
    let a = Agent::new("");
    let base = head(&a.origin);
    a.commit("two");
    expect(&a.converge(), 2);
    let applied = a.status()["applied_commit"].clone();
    // Force-push: drop "two", commit something else on top of "one".
    git(&a.origin, &["reset", "-q", "--hard", &base.to_string()]);
    a.commit("evil");
    for attempt in ["with the cache", "after rm -rf repo.git"] {
        let o = a.converge();
        expect(&o, 1);
        assert!(
            o.stderr.contains("history was rewritten"),
            "{attempt}: {}",
            o.stderr
        );
        assert_eq!(
            a.motd().as_deref(),
            Some("two"),
            "{attempt}: the host changed"
        );
        assert_eq!(a.status()["applied_commit"], applied, "{attempt}");
        std::fs::remove_dir_all(a.state().join("repo.git")).expect("rm -rf repo.git");
    }
    a.config("[verify]\nallow_rewind = true\n");
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("evil"));
}

#[test]
fn unsigned_and_wrongly_signed_commits_are_refused_and_change_nothing() {
    let keys = tempfile::tempdir().expect("tempdir");
    let good = ssh_key(keys.path(), "good");
    let evil = ssh_key(keys.path(), "evil");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("ops@example.com namespaces=\"git\" {}\n", public_key(&good)),
    )
    .expect("write");
    let a = Agent::new(&format!(
        "[verify]\nsignatures = 'head'\nallowed_signers = '{}'\n",
        signers.display()
    ));

    // The initial commit is unsigned.
    let o = a.converge();
    expect(&o, 1);
    assert!(
        o.stderr.to_lowercase().contains("not signed") || o.stderr.contains("unsigned"),
        "{}",
        o.stderr
    );
    assert_eq!(a.motd(), None);
    assert!(a.status()["last_fetch"]["error"].is_string());

    std::fs::write(
        a.origin.join("hosts/h.toml"),
        "[[file]]\npath = '/motd'\ncontent = 'signed'\n",
    )
    .expect("write");
    ssh_signed_commit(
        &a.origin,
        &good,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'signed'\n",
    );
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("signed"));

    ssh_signed_commit(
        &a.origin,
        &evil,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'evil'\n",
    );
    let o = a.converge();
    expect(&o, 1);
    assert!(
        o.stderr.contains(&head(&a.origin).to_string()),
        "the refusal names the commit: {}",
        o.stderr
    );
    assert_eq!(a.motd().as_deref(), Some("signed"));

    // `all`: a good head on top of an unsigned commit is still refused.
    a.config(&format!(
        "[verify]\nsignatures = 'all'\nallowed_signers = '{}'\nallow_rewind = true\n",
        signers.display()
    ));
    git(&a.origin, &["reset", "-q", "--hard", "HEAD~1"]);
    a.commit("unsigned-middle");
    ssh_signed_commit(
        &a.origin,
        &good,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'good-head'\n",
    );
    let o = a.converge();
    expect(&o, 1);
    assert_eq!(a.motd().as_deref(), Some("signed"));
}

#[test]
fn an_unreachable_server_is_a_clear_error_that_keeps_the_applied_state() {
    let a = Agent::new("");
    expect(&a.converge(), 2);
    let applied = a.status()["applied_commit"].clone();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let text = std::fs::read_to_string(a.dir.path().join("agent.toml")).expect("read");
    let text = text.replace(
        &format!("file://{}", a.origin.display()),
        &format!("https://127.0.0.1:{port}/fleet.git"),
    );
    std::fs::write(a.dir.path().join("agent.toml"), text).expect("write");
    let before = std::fs::read(a.root().join("motd")).expect("motd");
    let o = a.converge();
    expect(&o, 1);
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read(a.root().join("motd")).expect("motd"), before);
    let st = a.status();
    assert_eq!(st["applied_commit"], applied);
    assert!(
        st["last_fetch"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(st["pending"], false);
}

/// Keep the helper from looking unused when tests are filtered.
#[allow(dead_code)]
fn _uses(_: &Path) {}

/// `all` is never weaker than `head`: an (allowed) rewind to an older
/// commit has no "new" range, so the whole history of the target is
/// checked, and an unsigned target is refused.
#[test]
fn a_rewind_to_an_unsigned_commit_is_refused_under_all() {
    let keys = tempfile::tempdir().expect("tempdir");
    let good = ssh_key(keys.path(), "good");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("ops@example.com namespaces=\"git\" {}\n", public_key(&good)),
    )
    .expect("write");
    let a = Agent::new("");
    let unsigned = head(&a.origin);
    ssh_signed_commit(
        &a.origin,
        &good,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'signed'\n",
    );
    a.config(&format!(
        "[verify]\nsignatures = 'head'\nallowed_signers = '{}'\nallow_rewind = true\n",
        signers.display()
    ));
    expect(&a.converge(), 2);
    a.config(&format!(
        "[verify]\nsignatures = 'all'\nallowed_signers = '{}'\nallow_rewind = true\n",
        signers.display()
    ));
    git(&a.origin, &["reset", "-q", "--hard", &unsigned.to_string()]);
    let o = a.converge();
    expect(&o, 1);
    assert!(o.stderr.contains(&unsigned.to_string()), "{}", o.stderr);
    assert_eq!(a.motd().as_deref(), Some("signed"));
}

/// Moving from `head` to `all` on a repo with older unsigned history: only
/// what is new since the applied commit is checked, in steady state too.
#[test]
fn all_checks_only_what_is_new_since_the_applied_commit() {
    let keys = tempfile::tempdir().expect("tempdir");
    let good = ssh_key(keys.path(), "good");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("ops@example.com namespaces=\"git\" {}\n", public_key(&good)),
    )
    .expect("write");
    let a = Agent::new("");
    ssh_signed_commit(
        &a.origin,
        &good,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'signed'\n",
    );
    a.config(&format!(
        "[verify]\nsignatures = 'head'\nallowed_signers = '{}'\n",
        signers.display()
    ));
    expect(&a.converge(), 2);
    a.config(&format!(
        "[verify]\nsignatures = 'all'\nallowed_signers = '{}'\n",
        signers.display()
    ));
    // No new commit: nothing to verify, drift is healed.
    std::fs::write(a.root().join("motd"), "drifted").expect("drift");
    expect(&a.converge(), 2);
    expect(&a.converge(), 0);
    ssh_signed_commit(
        &a.origin,
        &good,
        "hosts/h.toml",
        "[[file]]\npath = '/motd'\ncontent = 'next'\n",
    );
    expect(&a.converge(), 2);
    expect(&a.converge(), 0);
    assert_eq!(a.motd().as_deref(), Some("next"));
}

/// Regression (issue 20, 4): trying a branch on one host stranded it.
/// A drop-in with `branch = "feature"` applied the feature commit; once
/// removed, `main` was refused as "history was rewritten" and the host
/// stayed on the feature commit; `--commit feature` was refused. Now a
/// trial (`--branch`, `--commit`) applies and pins the host until
/// `resume`, which returns to the configured branch; a force-push to that
/// branch is still refused; a branch changed in the agent config is a new
/// source, and changing it back is no rewind either.
#[test]
fn a_branch_or_commit_is_tried_on_one_host_and_resume_returns_to_the_branch() {
    let a = Agent::new("");
    let base = head(&a.origin);
    a.commit("two");
    expect(&a.converge(), 2);
    let two = head(&a.origin);
    // A feature branch from `one`: not a descendant of what runs.
    git(
        &a.origin,
        &["checkout", "-q", "-b", "feature", &base.to_string()],
    );
    let feature = a.commit("feature");
    git(&a.origin, &["checkout", "-q", "main"]);
    let root = a.root();
    let root = root.to_str().unwrap();
    let o = a.run(&["converge", "--now", "--root", root, "--branch", "feature"]);
    expect(&o, 2);
    assert_eq!(a.motd().as_deref(), Some("feature"));
    let st = a.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["status"]["pinned"]["key"], feature.to_string(), "{st}");
    assert!(
        st["status"]["pinned"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("trying branch feature")),
        "{st}"
    );
    // The configured branch's floor did not move.
    assert_eq!(st["status"]["applied_commit"], two.to_string(), "{st}");
    // Pinned: the usual converge applies nothing; main moves on meanwhile.
    expect(&a.converge(), 3);
    assert_eq!(a.motd().as_deref(), Some("feature"));
    let three = a.commit("three");
    expect(&a.run(&["resume"]), 0);
    let o = a.converge();
    expect(&o, 2);
    assert_eq!(a.motd().as_deref(), Some("three"));
    assert_eq!(a.status()["applied_commit"], three.to_string());

    // An older commit of main, as a trial: applied, pinned; resume: back.
    let o = a.run(&[
        "converge",
        "--now",
        "--root",
        root,
        "--commit",
        &two.to_string()[..10],
    ]);
    expect(&o, 2);
    assert_eq!(a.motd().as_deref(), Some("two"));
    expect(&a.converge(), 3);
    expect(&a.run(&["resume"]), 0);
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("three"));
    // A branch name given as a commit says what to use instead.
    let o = a.run(&["converge", "--now", "--root", root, "--commit", "feature"]);
    expect(&o, 1);
    assert!(o.stderr.contains("use --branch feature"), "{}", o.stderr);

    // The configured branch's own rewind protection is as strong as ever.
    git(&a.origin, &["reset", "-q", "--hard", &two.to_string()]);
    a.commit("evil");
    let o = a.converge();
    expect(&o, 1);
    assert!(o.stderr.contains("history was rewritten"), "{}", o.stderr);
    assert_eq!(a.motd().as_deref(), Some("three"));
    git(&a.origin, &["reset", "-q", "--hard", &three.to_string()]);

    // Another branch in the agent config: a new source, not a rewind; and
    // back to main: main's own floor holds again, no refusal.
    a.config("");
    let text = std::fs::read_to_string(a.dir.path().join("agent.toml")).unwrap();
    std::fs::write(
        a.dir.path().join("agent.toml"),
        text.replace("branch = 'main'", "branch = 'feature'"),
    )
    .unwrap();
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("feature"));
    a.config("");
    expect(&a.converge(), 2);
    assert_eq!(a.motd().as_deref(), Some("three"));
    expect(&a.converge(), 0);
}
