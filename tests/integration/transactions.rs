//! Converge as a transaction, in temporary roots (no systemd needed):
//! generations, history, rollback and resume, failed health checks with
//! quarantine and retry, and crash recovery at every named step.
//! The package and service parts run in the system suite.

use std::path::{Path, PathBuf};

use crate::util::{Env, Fingerprint, Run, fingerprint, write_repo};

/// A config repo directory and a root, driven through the binary.
struct Host {
    env: Env,
    repo: PathBuf,
    root: PathBuf,
}

impl Host {
    fn new() -> Self {
        let env = Env::new();
        let repo = env.path().join("repo");
        let root = env.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/app.conf"), "original\n").expect("write");
        Self { env, repo, root }
    }

    /// Declares version `v` of the desired state: app.conf and a marker file
    /// whose content says `v`, plus `extra` TOML.
    fn declare(&self, v: &str, extra: &str) {
        std::fs::remove_dir_all(&self.repo).ok();
        write_repo(
            &self.repo,
            &[(
                "hosts/h.toml",
                &format!(
                    "[[file]]\npath = '/etc/app.conf'\ncontent = \"{v}\\n\"\nmode = '0640'\n[[directory]]\npath = '/srv/app'\n[[file]]\npath = '/srv/app/version'\ncontent = '{v}'\n{extra}"
                ),
            )],
        );
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let (repo, root) = (
            self.repo.to_str().expect("utf-8"),
            self.root.to_str().expect("utf-8"),
        );
        if args[0] == "converge" || args[0] == "plan" {
            all.extend(["--repo", repo, "--host", "h"]);
        }
        if matches!(args[0], "converge" | "plan" | "rollback" | "recover") {
            all.extend(["--root", root]);
        }
        self.env.run_env(&all, vars)
    }

    fn converge(&self) -> Run {
        self.run(&["converge", "--now"])
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let r = self.run(&a);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not json ({e}): {}\n{}", r.stdout, r.stderr))
    }

    /// The root's state without times and inodes (an atomic restore writes
    /// new inodes with the same bytes and metadata).
    fn state(&self) -> Vec<(PathBuf, String)> {
        strip(&fingerprint(&self.root))
    }
}

fn strip(f: &Fingerprint) -> Vec<(PathBuf, String)> {
    f.iter()
        .map(|(p, v)| {
            (
                p.clone(),
                v.split(" mtime=").next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn each_changing_converge_is_a_generation_and_rollback_pins_the_host() {
    let h = Host::new();
    let before_all = h.state();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let v1 = h.state();
    h.declare("v2", "");
    let r = h.converge();
    r.expect_code(2);
    assert!(r.stdout.contains("(generation 2)"), "{}", r.stdout);
    let v2 = h.state();
    // A no-op converge changes nothing on the host, nor in the state dir
    // but the record of when it looked (`last-run.json`, for `status`) and,
    // the first time its files are old enough to trust, the stat cache
    // (tests/integration/statcache.rs shows a warm no-op writes none).
    let without_last_run = || {
        let mut f = fingerprint(&h.env.state_dir());
        f.remove(Path::new("last-run.json"));
        f.remove(Path::new("stat-cache.json"));
        f
    };
    let state_before = without_last_run();
    h.converge().expect_code(0);
    assert_eq!(
        without_last_run(),
        state_before,
        "a no-op converge rewrote agent state"
    );
    let status = h.json(&["status"]);
    assert_eq!(
        status["status"]["last_run"]["outcome"], "in_sync",
        "{status}"
    );
    assert_eq!(status["status"]["last_run"]["changes"], 0, "{status}");

    let history = h.json(&["history"]);
    let gens = history["history"].as_array().expect("generations");
    assert_eq!(gens.len(), 2, "an in-sync converge is not a generation");
    assert!(gens.iter().all(|g| g["status"] == "applied"), "{history}");
    assert_eq!(gens[1]["changes"], 2);

    // Roll back the last generation: v1 again, byte for byte, and pinned.
    h.run(&["rollback"]).expect_code(0);
    assert_eq!(h.state(), v1);
    let st = h.json(&["status"]);
    assert!(
        st["status"]["pinned"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("generation 2")),
        "{st}"
    );
    let r = h.converge();
    r.expect_code(3);
    assert!(r.stderr.contains("pinned"), "{}", r.stderr);
    assert_eq!(h.state(), v1, "a pinned host must not be converged");

    // Resume: the head (v2) applies again.
    h.run(&["resume"]).expect_code(0);
    h.converge().expect_code(2);
    assert_eq!(h.state(), v2);

    // Roll back to before generation 1: everything driftless did is undone.
    h.run(&["rollback", "--to", "1"]).expect_code(0);
    assert_eq!(h.state(), before_all);
    let statuses: Vec<String> = h.json(&["history"])["history"]
        .as_array()
        .expect("generations")
        .iter()
        .map(|g| g["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(statuses, ["undone", "undone", "undone"]);
    assert!(
        h.run(&["rollback", "--to", "99"])
            .stderr
            .contains("no generation 99")
    );
}

#[test]
fn a_failed_check_rolls_back_and_quarantines_until_the_head_moves_or_retry() {
    let h = Host::new();
    h.declare("v1", "[[check]]\nname = 'ok'\ncommand = ['true']\n");
    h.converge().expect_code(2);
    let v1 = h.state();

    // v2 breaks its check: restored, exit 4, quarantined.
    let bad =
        "[[check]]\nname = 'app-answers'\ncommand = ['false']\nretries = 1\ninterval = '10ms'\n";
    h.declare("v2", bad);
    let r = h.converge();
    r.expect_code(4);
    assert!(
        r.stderr.contains("check `app-answers` failed 2 times"),
        "{}",
        r.stderr
    );
    assert_eq!(h.state(), v1, "not restored byte for byte");
    let st = h.json(&["status"]);
    assert!(
        st["status"]["quarantine"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("app-answers")),
        "{st}"
    );
    assert_eq!(h.json(&["history"])["history"][1]["status"], "rolled-back");

    // The same head again: held at last good, not retried; drift is healed
    // towards the last good state meanwhile.
    std::fs::write(h.root.join("srv/app/version"), "tampered").expect("drift");
    let r = h.converge();
    r.expect_code(3);
    assert!(r.stdout.contains("quarantined"), "{}", r.stdout);
    assert_eq!(
        h.state(),
        v1,
        "held converge must heal drift towards last good"
    );
    h.converge().expect_code(3);

    // `retry` lifts the quarantine: tried again, fails again.
    h.run(&["retry"]).expect_code(0);
    h.converge().expect_code(4);
    h.converge().expect_code(3);

    // A new head is tried; once it is applied the quarantine is over (the
    // alert it raised clears); the history keeps the rolled-back generation.
    h.declare("v3", "");
    h.converge().expect_code(2);
    assert!(
        h.json(&["status"])["status"]["quarantine"].is_null(),
        "the quarantine of a commit nobody applies any more stays in status"
    );
    assert_eq!(h.json(&["history"])["history"][1]["status"], "rolled-back");
    h.converge().expect_code(0);
}

/// Kills driftless (SIGKILL, like a power loss) at every named step of a
/// converge, then proves that recovery puts back exactly the old state and
/// that the next converge reaches exactly the new one.
#[test]
fn a_crash_at_every_step_recovers_to_the_old_state_then_converges() {
    let steps: &[(&str, &str)] = &[
        ("after-snapshot", ""),
        ("after-file:1", ""),
        ("after-file:2", ""),
        ("after-file:3", ""),
        ("after-file:4", ""),
        // Killed inside a write: its temporary file is complete but not
        // renamed; recovery must remove it (and only it).
        ("mid-write:1", ""),
        ("mid-write:2", ""),
        (
            "during-checks",
            "[[check]]\nname = 'ok'\ncommand = ['true']\n",
        ),
        (
            "mid-rollback",
            "[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
        ),
    ];
    // v2 changes four paths: a new directory, two files, a new symlink.
    let more = "[[directory]]\npath = '/srv/app/data'\n[[symlink]]\npath = '/srv/app/current'\ntarget = 'version'\n";
    for (step, check) in steps {
        let check = format!("{more}{check}");
        let h = Host::new();
        h.declare("v1", "");
        h.converge().expect_code(2);
        let old = h.state();
        h.declare("v2", &check);
        let r = h.run_env(&["converge", "--now"], &[("DRIFTLESS_FAULT", step)]);
        assert_eq!(
            r.code, 137,
            "{step}: driftless was not killed\n{}\n{}",
            r.stdout, r.stderr
        );
        let r = h.run(&["recover"]);
        r.expect_code(0);
        assert!(
            r.stdout.contains("cut short by a crash"),
            "{step}: {}",
            r.stdout
        );
        assert_eq!(
            h.state(),
            old,
            "{step}: recovery did not restore the old state"
        );
        let left: Vec<String> = fingerprint(&h.root)
            .keys()
            .chain(fingerprint(&h.env.state_dir()).keys())
            .map(|p| p.display().to_string())
            .filter(|p| p.contains(".driftless-"))
            .collect();
        assert!(
            left.is_empty(),
            "{step}: temporaries left after recovery: {left:?}"
        );
        assert_eq!(
            h.json(&["history"])["history"][1]["status"],
            "interrupted",
            "{step}"
        );
        h.run(&["recover"]).expect_code(0);
        if check.contains("broken") {
            h.converge().expect_code(4);
            assert_eq!(h.state(), old, "{step}");
        } else {
            h.converge().expect_code(2);
            h.converge().expect_code(0);
            assert_eq!(
                std::fs::read_to_string(h.root.join("srv/app/version")).expect("read"),
                "v2",
                "{step}"
            );
            assert_eq!(
                std::fs::read_link(h.root.join("srv/app/current")).expect("link"),
                Path::new("version"),
                "{step}"
            );
        }
    }
}

/// Many files are written as one batch (temporaries, their flushes, the
/// renames, one flush per directory). Killed inside the batch, every target
/// is still exactly its old bytes or its new ones, the renames happened in
/// order, and what is left besides is complete temporaries, which recovery
/// removes.
#[test]
fn a_crash_inside_a_batch_of_writes_leaves_every_file_old_or_new() {
    const N: usize = 40;
    // Sizes differ between versions, so that a torn write would show.
    let files = |v: &str, size: usize| -> String {
        (0..N)
            .map(|i| {
                format!(
                    "[[file]]\npath = '/srv/app/f{i:02}'\ncontent = '{}'\n",
                    v.repeat(size + i)
                )
            })
            .collect()
    };
    let old_of = |i: usize| "a".repeat(10 + i);
    let new_of = |i: usize| "b".repeat(3000 + i);
    for (step, renamed) in [
        ("mid-write:1", 0),
        ("mid-write:20", 19),
        ("after-file:25", 25),
    ] {
        let h = Host::new();
        h.declare("v1", &files("a", 10));
        h.converge().expect_code(2);
        let old = h.state();
        h.declare("v1", &files("b", 3000));
        let r = h.run_env(&["converge", "--now"], &[("DRIFTLESS_FAULT", step)]);
        assert_eq!(r.code, 137, "{step}: not killed\n{}", r.stderr);
        let mut new = 0;
        for i in 0..N {
            let got =
                std::fs::read_to_string(h.root.join(format!("srv/app/f{i:02}"))).expect("read");
            if got == new_of(i) {
                new += 1;
            } else {
                assert_eq!(got, old_of(i), "{step}: f{i:02} is neither old nor new");
            }
        }
        assert_eq!(new, renamed, "{step}: files renamed before the kill");
        // The batch staged every file before the first rename: the rest
        // are complete temporaries, never partial ones.
        let temps: Vec<PathBuf> = std::fs::read_dir(h.root.join("srv/app"))
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains(".driftless-"))
            .collect();
        assert_eq!(temps.len(), N - renamed, "{step}: {temps:?}");
        for t in &temps {
            let name = t.file_name().expect("name").to_string_lossy().into_owned();
            let i: usize = name[2..4].parse().expect("index in the name");
            assert_eq!(
                std::fs::read_to_string(t).expect("read"),
                new_of(i),
                "{step}: {name}"
            );
        }
        h.run(&["recover"]).expect_code(0);
        assert_eq!(
            h.state(),
            old,
            "{step}: recovery did not restore the old state"
        );
        h.converge().expect_code(2);
        for i in 0..N {
            let got =
                std::fs::read_to_string(h.root.join(format!("srv/app/f{i:02}"))).expect("read");
            assert_eq!(got, new_of(i), "{step}: f{i:02} after the next converge");
        }
    }
}

#[test]
fn three_interrupted_converges_in_a_row_quarantine_the_head() {
    let h = Host::new();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let v1 = h.state();
    h.declare("v2", "");
    for n in 1..=3 {
        let r = h.run_env(
            &["converge", "--now"],
            &[("DRIFTLESS_FAULT", "after-file:1")],
        );
        assert_eq!(r.code, 137, "attempt {n}: {}", r.stderr);
    }
    // The next start recovers the third interrupted attempt, counts it,
    // and holds the host at the last good state.
    let r = h.converge();
    r.expect_code(3);
    assert_eq!(h.state(), v1);
    let st = h.json(&["status"]);
    assert!(
        st["status"]["quarantine"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 converges in a row were interrupted")),
        "{st}"
    );
}

#[test]
fn commands_report_clearly_when_there_is_nothing_to_do() {
    let h = Host::new();
    assert!(
        h.run(&["rollback"])
            .stderr
            .contains("no applied generation")
    );
    let r = h.run(&["recover"]);
    r.expect_code(0);
    assert!(r.stdout.contains("nothing to recover"));
    h.run(&["resume"]).expect_code(0);
    h.run(&["retry"]).expect_code(0);
    let st = h.json(&["status"]);
    assert!(st["status"]["last_good"].is_null());
    let _ = Path::new("/");
}

/// A dnf that outlived a killed driftless still holds the rpm database:
/// recovery waits for it before rolling back.
#[test]
fn recovery_waits_for_a_dnf_left_running_by_the_crash() {
    let h = Host::new();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let old = h.state();
    h.declare("v2", "");
    let r = h.run_env(
        &["converge", "--now"],
        &[("DRIFTLESS_FAULT", "after-file:1")],
    );
    assert_eq!(r.code, 137, "{}", r.stderr);
    // A process whose name is `dnf`: a copy of sleep.
    let fake = h.env.path().join("dnf");
    std::fs::copy("/bin/sleep", &fake).expect("copy sleep");
    let mut dnf = std::process::Command::new(&fake)
        .arg("2")
        .spawn()
        .expect("start the stand-in dnf");
    let r = h.run(&["recover", "-v"]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("waiting for a running dnf or rpm to finish"),
        "{}",
        r.stderr
    );
    assert!(
        dnf.try_wait().expect("poll the stand-in dnf").is_some(),
        "recovery did not wait for dnf to finish"
    );
    assert_eq!(h.state(), old);
}

/// SIGTERM during a converge: the running child (a long health check) is
/// killed, the converge is rolled back, driftless exits promptly, and the
/// head is not quarantined (a stop says nothing about the commit).
#[test]
fn sigterm_kills_the_running_child_and_rolls_back() {
    use std::time::{Duration, Instant};
    let h = Host::new();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let old = h.state();
    let marker = format!("driftless-test-marker-{}", std::process::id());
    h.declare(
        "v2",
        &format!("[[check]]\nname = 'slow'\ncommand = ['sh', '-c', 'sleep 60; : {marker}']\ntimeout = '120s'\n"),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args([
            "converge",
            "--now",
            "--repo",
            h.repo.to_str().expect("utf-8"),
            "--host",
            "h",
        ])
        .args(["--root", h.root.to_str().expect("utf-8"), "--config"])
        .arg(h.env.config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driftless");
    // Wait until the check runs, then ask driftless to stop.
    let running = |m: &str| {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(m))
            })
    };
    let started = Instant::now();
    while !running(&marker) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the check never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait for driftless");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "driftless did not stop promptly"
    );
    assert!(
        !running(&marker),
        "the health-check child outlived driftless"
    );
    assert_eq!(h.state(), old);
    assert!(
        h.json(&["status"])["status"]["quarantine"].is_null(),
        "a stop must not quarantine"
    );
    // Not quarantined: the next converge tries the head again.
    h.declare("v2", "");
    h.converge().expect_code(2);
}

/// Only the newest `keep_generations` generations are kept, and objects no
/// kept snapshot (nor the last-good state) needs are removed.
#[test]
fn old_generations_and_their_objects_are_garbage_collected() {
    let h = Host::new();
    h.env.set_config("[rollback]\nkeep_generations = 2\n");
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        h.declare(v, "");
        h.converge().expect_code(2);
    }
    let ids: Vec<u64> = h.json(&["history"])["history"]
        .as_array()
        .expect("generations")
        .iter()
        .filter_map(|g| g["id"].as_u64())
        .collect();
    assert_eq!(ids, [4, 5]);
    // Generation 4's snapshot holds v3's files, generation 5's v4's, the
    // last-good state v5's; contents of v1 and v2 are gone.
    let objects: Vec<Vec<u8>> = std::fs::read_dir(h.env.state_dir().join("objects"))
        .expect("objects")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read object"))
        .collect();
    for gone in ["v1\n", "v2\n"] {
        assert!(
            !objects.iter().any(|o| o == gone.as_bytes()),
            "{gone:?} was kept"
        );
    }
    for kept in ["v3\n", "v4\n", "v5\n"] {
        assert!(
            objects.iter().any(|o| o == kept.as_bytes()),
            "{kept:?} was dropped"
        );
    }
    // The kept generations still roll back.
    h.run(&["rollback", "--to", "4"]).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/app.conf")).expect("read"),
        "v3\n"
    );
}

/// Generations remember their root: a rollback (or recovery) in another
/// root with the same state directory touches nothing there.
#[test]
fn generations_are_only_undone_in_their_own_root() {
    let h = Host::new();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let other = h.env.path().join("other-root");
    std::fs::create_dir_all(other.join("etc")).expect("mkdir");
    std::fs::write(other.join("etc/app.conf"), "precious\n").expect("write");
    let before = fingerprint(&other);
    let r = h
        .env
        .run(&["rollback", "--root", other.to_str().expect("utf-8")]);
    r.expect_code(1);
    assert!(r.stderr.contains("no applied generation"), "{}", r.stderr);
    assert_eq!(
        fingerprint(&other),
        before,
        "a rollback touched another root"
    );
    // A relative --root is the same root as its absolute path.
    let rel = h
        .root
        .strip_prefix(std::env::current_dir().expect("cwd"))
        .map(Path::to_path_buf);
    if let Ok(rel) = rel {
        h.env
            .run(&["rollback", "--root", rel.to_str().expect("utf-8")])
            .expect_code(0);
    } else {
        h.run(&["rollback"]).expect_code(0);
    }
    assert_eq!(
        std::fs::read_to_string(h.root.join("etc/app.conf")).expect("read"),
        "original\n"
    );
}

/// With --root: a unit file written into the root plans no daemon-reload
/// of the machine's systemd, and a rolled-back converge also takes back the
/// enablement it made (`systemctl --root`).
#[test]
fn a_rollback_in_a_root_takes_back_unit_files_and_enablement() {
    let h = Host::new();
    let unit = "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";
    let declare = |check: &str| {
        std::fs::remove_dir_all(&h.repo).ok();
        write_repo(
            &h.repo,
            &[(
                "hosts/h.toml",
                &format!(
                    "[[file]]\npath = '/etc/systemd/system/demo.service'\ncontent = \"\"\"\n{unit}\"\"\"\n[[service]]\nname = 'demo'\nenabled = true\n{check}"
                ),
            )],
        );
    };
    declare("[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n");
    let before = h.state();
    let plan = h.run(&["plan"]);
    plan.expect_code(2);
    assert!(!plan.stdout.contains("daemon-reload"), "{}", plan.stdout);
    let r = h.converge();
    r.expect_code(4);
    assert!(!r.stderr.contains("daemon-reload"), "{}", r.stderr);
    assert_eq!(h.state(), before, "unit file or enablement left behind");
    assert!(
        !h.root
            .join("etc/systemd/system/multi-user.target.wants/demo.service")
            .exists()
    );
    // Without the broken check it applies, enabled in the root.
    declare("");
    h.run(&["retry"]).expect_code(0);
    h.converge().expect_code(2);
    assert!(
        std::fs::symlink_metadata(
            h.root
                .join("etc/systemd/system/multi-user.target.wants/demo.service")
        )
        .is_ok()
    );
}

/// A drift repair of the last good state that fails its check is rolled
/// back, but the last good state is not quarantined: it stays the state
/// to converge to.
#[test]
fn the_last_good_state_is_never_quarantined() {
    let h = Host::new();
    let marker = h.env.path().join("healthy");
    std::fs::write(&marker, "").expect("marker");
    h.declare(
        "v1",
        &format!(
            "[[check]]\nname = 'healthy'\ncommand = ['test', '-e', '{}']\nretries = 0\n",
            marker.display()
        ),
    );
    h.converge().expect_code(2);
    // Drift, while the check fails: the repair is rolled back...
    std::fs::write(h.root.join("srv/app/version"), "drifted").expect("drift");
    std::fs::remove_file(&marker).expect("rm marker");
    h.converge().expect_code(4);
    assert!(
        h.json(&["status"])["status"]["quarantine"].is_null(),
        "the last good state was quarantined"
    );
    // ...and tried again once the check passes.
    std::fs::write(&marker, "").expect("marker");
    h.converge().expect_code(2);
    assert_eq!(
        std::fs::read_to_string(h.root.join("srv/app/version")).expect("read"),
        "v1"
    );
}

/// `driftless rollback` killed in the middle: the next start finishes it as
/// an undo (not a crashed converge: nothing counts towards quarantine), and
/// the host ends up pinned as the command would have left it.
#[test]
fn an_interrupted_rollback_is_finished_and_pins_the_host() {
    let h = Host::new();
    h.declare("v1", "");
    h.converge().expect_code(2);
    let v1 = h.state();
    h.declare("v2", "");
    h.converge().expect_code(2);
    let r = h.run_env(&["rollback"], &[("DRIFTLESS_FAULT", "mid-rollback")]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    assert_eq!(h.json(&["history"])["history"][1]["status"], "undoing");
    // Any next start finishes it; this converge then finds the host pinned.
    let r = h.converge();
    r.expect_code(3);
    assert!(r.stderr.contains("pinned"), "{}", r.stderr);
    assert_eq!(h.state(), v1);
    let st = h.json(&["status"]);
    assert!(
        st["status"]["interrupted"].is_null(),
        "an undo counted as an interrupted converge: {st}"
    );
    assert_eq!(h.json(&["history"])["history"][1]["status"], "undone");
    h.run(&["resume"]).expect_code(0);
    h.converge().expect_code(2);
}
