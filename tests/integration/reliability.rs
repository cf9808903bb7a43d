//! Regressions found by trying driftless as a hostile user and as a real
//! admin would use it (each was seen to fail before its fix).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Env, converge_args, fingerprint, write_repo};

/// An agent with a `--repo` config repo for host `h` and a root.
struct Agent {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Agent {
    fn new(host_file: &str) -> Self {
        let env = Env::new();
        let repo = env.path().join("repo");
        let root = env.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/app.conf"), "original\n").unwrap();
        write_repo(&repo, &[("hosts/h.toml", host_file)]);
        Self { env, repo, root }
    }

    fn converge(&self) -> crate::util::Run {
        self.env.run(&converge_args(&self.repo, &self.root, "h"))
    }

    fn run(&self, args: &[&str]) -> crate::util::Run {
        let mut all = args.to_vec();
        let root = self.root.to_str().unwrap();
        if matches!(args[0], "recover" | "rollback") {
            all.extend(["--root", root]);
        }
        self.env.run(&all)
    }
}

fn chattr(flag: &str, path: &Path) {
    let ok = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("chattr (e2fsprogs)");
    assert!(ok.success(), "chattr {flag} {}", path.display());
}

/// Regression: a first converge whose restore also failed (exit 5) could
/// not be finished once the cause was fixed: `recover` said there was
/// nothing to recover, and `converge` claimed a last good state that did
/// not exist.
#[test]
fn a_failed_restore_is_finished_once_the_cause_is_fixed() {
    let a = Agent::new("");
    let conf = a.root.join("etc/app.conf");
    // The check makes the file immutable and fails: the rollback cannot
    // put the old bytes back.
    let host_file = format!(
        "[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\n[[check]]\nname = 'locks-it'\ncommand = ['sh', '-c', 'chattr +i {} && false']\nretries = 0\n",
        conf.display()
    );
    write_repo(&a.repo, &[("hosts/h.toml", &host_file)]);
    // A hook hears of the failed restore, with the documented environment.
    let log = a.env.path().join("hooks.log");
    a.env.set_config(&format!(
        "[[hook]]\ncommand = ['/bin/sh', '-c', 'env | grep ^DRIFTLESS_ | sort >> {0}; echo --- >> {0}']\non = ['rollback_failed']\n",
        log.display()
    ));
    let r = a.converge();
    chattr("-i", &conf);
    r.expect_code(5);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "new\n");
    let heard = crate::util::hook_records(&std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0]["DRIFTLESS_OUTCOME"], "rollback_failed");
    assert_eq!(heard[0]["DRIFTLESS_HOST"], "h");
    assert_eq!(heard[0]["DRIFTLESS_GENERATION"], "1");
    assert!(
        heard[0]["DRIFTLESS_ERROR"].contains("locks-it"),
        "{heard:?}"
    );

    // Fixed by hand (the flag is gone): recover restores the snapshot.
    let r = a.run(&["recover"]);
    r.expect_code(0);
    assert!(r.stdout.contains("had failed to restore"), "{}", r.stdout);
    assert!(
        r.stdout.contains("restored to its state before it"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "original\n");
    let history = a.env.run(&["history", "--json"]);
    let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(h["history"][0]["status"], "rolled-back", "{h}");

    // The commit stays quarantined; with no last good state, nothing is
    // applied and no message pretends otherwise.
    let r = a.converge();
    r.expect_code(3);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains("held at the last good state"), "{all}");
    assert!(all.contains("there is no last good state yet"), "{all}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "original\n");
}

/// Regression: `--host ""` and `--host /abs/path` fell back to
/// `hosts/default.toml` without a word.
#[test]
fn host_names_that_are_no_host_names_are_refused() {
    let a = Agent::new("");
    write_repo(
        &a.repo,
        &[(
            "hosts/default.toml",
            "[[file]]\npath = '/x'\ncontent = ''\n",
        )],
    );
    let before = fingerprint(&a.root);
    for bad in ["", "/abs/path"] {
        let r = a.env.run(&[
            "converge",
            "--now",
            "--repo",
            a.repo.to_str().unwrap(),
            "--root",
            a.root.to_str().unwrap(),
            "--host",
            bad,
        ]);
        r.expect_code(1);
        assert!(
            r.stderr.contains(&format!("host name `{bad}`")),
            "{}",
            r.stderr
        );
    }
    assert_eq!(fingerprint(&a.root), before);
}

/// Regression: a `state.json` of the wrong shape (`[]`, unknown keys, a
/// wrongly typed value) was read as an empty state, forgetting the applied
/// commit the rewind check needs.
#[test]
fn a_state_file_of_the_wrong_shape_is_refused() {
    let a = Agent::new("[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\n");
    std::fs::create_dir_all(a.env.state_dir()).unwrap();
    for bad in ["[]", "{\"applied\": 5}", "{\"applied_commit\": 5}"] {
        std::fs::write(a.env.state_dir().join("state.json"), bad).unwrap();
        let before = fingerprint(&a.root);
        let r = a.converge();
        r.expect_code(1);
        assert!(
            r.stderr.contains("state.json") && r.stderr.contains("is not what driftless writes"),
            "{bad}: {}",
            r.stderr
        );
        assert_eq!(fingerprint(&a.root), before, "{bad}: the host changed");
        assert_eq!(
            std::fs::read_to_string(a.env.state_dir().join("state.json")).unwrap(),
            bad,
            "the broken file was rewritten"
        );
    }
}

/// Regression: SIGTERM while loading or rendering was ignored until the
/// converge began applying. The first signal must stop every phase.
#[test]
fn sigterm_while_rendering_stops_at_once() {
    let a = Agent::new("");
    // Many templates, each a good deal of work: loading takes long enough
    // to be caught in the middle.
    let slow = "{% for a in range(400) %}{% for b in range(400) %}{% endfor %}{% endfor %}done\n";
    let mut files = vec![];
    let mut host = String::new();
    for i in 0..1000 {
        files.push((format!("files/t{i}.j2"), slow.to_owned()));
        host.push_str(&format!(
            "[[file]]\npath = '/srv/t{i}'\nsource = 'files/t{i}.j2'\ntemplate = true\n"
        ));
    }
    files.push(("hosts/h.toml".to_owned(), host));
    let pairs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    write_repo(&a.repo, &pairs);
    let before = fingerprint(&a.root);
    let child = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(converge_args(&a.repo, &a.root, "h"))
        .arg("--config")
        .arg(a.env.config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        stopped.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("asked to stop while loading"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fingerprint(&a.root), before, "the host changed");
}

/// Runs the binary as `nobody`, with `config`.
fn as_nobody(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_driftless"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv (util-linux)")
}

/// Converging the live host as a non-root user is refused up front (exit
/// 1, nothing changed, "must run as root"); with `--root`, a chown that
/// fails for want of permission rolls back and quarantines nothing.
#[test]
fn not_root_is_refused_up_front_and_never_held_against_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("state_dir = '{}'\n", state.display())).unwrap();
    let repo = dir.path().join("repo");
    write_repo(
        &repo,
        &[(
            "hosts/h.toml",
            "[[file]]\npath = '/srv/plain'\ncontent = 'x'\nowner = 'nobody'\n[[file]]\npath = '/srv/rooted'\ncontent = 'y'\nowner = 'root'\n",
        )],
    );
    // A root of nobody's own, with the accounts to resolve owners.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
    for p in [&root, &root.join("srv")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let repo_s = repo.to_str().unwrap();

    let live = as_nobody(
        &config,
        &["converge", "--now", "--repo", repo_s, "--host", "h"],
    );
    assert_eq!(
        live.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert!(
        String::from_utf8_lossy(&live.stderr).contains("must run as root"),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert!(
        !state.exists(),
        "the refused run created the state directory"
    );

    // What a restore can put back: kinds, contents, modes, owners (not the
    // times and inodes of a directory that was written into).
    let contents = |root: &Path| -> Vec<(PathBuf, String)> {
        fingerprint(root)
            .into_iter()
            .map(|(p, v)| (p, v.split(" mtime=").next().unwrap_or("").to_owned()))
            .collect()
    };
    let before = contents(&root);
    let run = as_nobody(
        &config,
        &[
            "converge",
            "--now",
            "--repo",
            repo_s,
            "--host",
            "h",
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("Operation not permitted") || stderr.contains("EPERM"),
        "{stderr}"
    );
    assert_eq!(contents(&root), before, "not restored");
    let status = as_nobody(&config, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        st["status"]["quarantine"].is_null(),
        "a permission problem was quarantined: {st}"
    );
}

/// A full disk is the environment's fault: rolled back, not quarantined.
#[test]
fn a_full_disk_rolls_back_and_quarantines_nothing() {
    let a = Agent::new("");
    let small = a.root.join("srv");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mounting a small tmpfs needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let big = "x".repeat(200 * 1024);
    write_repo(
        &a.repo,
        &[(
            "hosts/h.toml",
            &format!(
                "[[file]]\npath = '/etc/app.conf'\ncontent = \"new\\n\"\n[[file]]\npath = '/srv/big'\ncontent = '{big}'\n"
            ),
        )],
    );
    let r = a.converge();
    r.expect_code(4);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(a.root.join("etc/app.conf")).unwrap(),
        "original\n"
    );
    let st = a.env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert!(
        st["status"]["quarantine"].is_null(),
        "a full disk was quarantined: {st}"
    );
}

/// Lifts `chattr +i` from a file when dropped, so that a failed assertion
/// does not leave an undeletable temporary directory.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: PathBuf) -> Self {
        chattr("+i", &path);
        Self(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// The one failure policy for the state directory: a record that cannot
/// be written after the host changed leaves the outcome as what happened
/// to the host (changed, exit 2) with a note; before any change, the run
/// is an error (exit 1) that changed nothing; once it can be written
/// again, the next run records it.
#[test]
fn a_state_write_that_fails_is_a_note_after_a_change_and_an_error_before_one() {
    let file = |path: &str, content: &str| {
        format!("[[file]]\npath = \"{path}\"\ncontent = \"{content}\\n\"\n")
    };
    let a = Agent::new(&file("/etc/app.conf", "one"));
    a.converge().expect_code(2);
    let inventory = a.env.state_dir().join("inventory.json");
    assert!(inventory.exists());

    // After a change: the file is written, the inventory is not.
    let guard = Immutable::set(inventory.clone());
    let host = [file("/etc/app.conf", "one"), file("/etc/new.conf", "new")].concat();
    write_repo(&a.repo, &[("hosts/h.toml", &host)]);
    let mut args = converge_args(&a.repo, &a.root, "h");
    args.push("--json".into());
    let r = a.env.run(&args);
    r.expect_code(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"], "changed", "{v:#}");
    let notices = v["notices"].to_string();
    assert!(notices.contains("could not record the inventory"), "{v:#}");
    assert_eq!(
        std::fs::read_to_string(a.root.join("etc/new.conf")).unwrap(),
        "new\n"
    );

    // Before any change: a file already as declared is new to the
    // inventory; the run fails and changes nothing.
    std::fs::write(a.root.join("etc/same.conf"), "same\n").unwrap();
    let host = [host, file("/etc/same.conf", "same")].concat();
    write_repo(&a.repo, &[("hosts/h.toml", &host)]);
    let before = fingerprint(&a.root);
    let r = a.env.run(&args);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"], "error", "{v:#}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("could not record the inventory: "),
        "{error}"
    );
    assert_eq!(fingerprint(&a.root), before);

    // Writable again: the next run records what it manages.
    drop(guard);
    a.converge().expect_code(0);
    let inv = std::fs::read_to_string(&inventory).unwrap();
    for id in [
        "file:/etc/app.conf",
        "file:/etc/new.conf",
        "file:/etc/same.conf",
    ] {
        assert!(inv.contains(id), "{id} not in {inv}");
    }
}
