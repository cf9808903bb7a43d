//! Disposable systemd hosts for the system tests.
//!
//! Each [`Host`] is booted by `tests/system/sandbox.sh` (a cached Debian root
//! with the real rpm, dnf and systemd, systemd as PID 1 in its own
//! namespaces: dnf 4 and rpm 4.18 from bookworm, or dnf 5 and rpm 6 from
//! forky, see [`on_suite`]), gets this build of driftless at /usr/local/bin/driftless and
//! the test RPM repository at /srv/repo, and is stopped and deleted when
//! dropped. The helpers read back what rpm, dnf and systemd say, and which
//! commands driftless ran (from its debug log).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::Run;

/// The tested script that builds, boots and stops hosts.
const SANDBOX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/system/sandbox.sh");

/// Where the host's agent config lives: an empty file, so that driftless
/// never reads the host's /etc/driftless.
pub(super) const AGENT_CONFIG: &str = "/srv/agent.toml";

/// The config repo inside the host, replaced by [`Host::write_config`].
pub(super) const CONFIG_DIR: &str = "/srv/config";

/// What every host shares, prepared once per test binary.
struct Prepared {
    /// The test RPMs and their repodata (`sandbox.sh rpms`).
    rpms: PathBuf,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// The Debian suite a host is built from, and with it its rpm and dnf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Suite {
    /// dnf 4.14 and rpm 4.18: RHEL 9's generation.
    Bookworm,
    /// dnf 5.4 and rpm 6.1: Fedora 41+ and EL 11's generation.
    Forky,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Forky => "forky",
        }
    }
}

thread_local! {
    /// The suite hosts booted on this thread (this test) come from.
    static SUITE: std::cell::Cell<Suite> = const { std::cell::Cell::new(Suite::Bookworm) };
}

/// Runs `test` with every host it boots built from `suite`: the same
/// test on dnf 4 and on dnf 5.
pub(super) fn on_suite(suite: Suite, test: fn()) {
    SUITE.set(suite);
    test();
}

/// The suite of the hosts this test boots.
pub(super) fn suite() -> Suite {
    SUITE.get()
}

/// What the dnf of this test's hosts says, in its own words.
pub(super) mod dnf_says {
    use super::{Suite, suite};

    /// No package matches `spec`.
    pub(crate) fn no_match(spec: &str) -> String {
        match suite() {
            Suite::Bookworm => format!("Unable to find a match: {spec}"),
            Suite::Forky => format!("No match for argument: {spec}"),
        }
    }

    /// A `%pre` scriptlet failed.
    pub(crate) fn pre_scriptlet_failed() -> &'static str {
        match suite() {
            Suite::Bookworm => "Error in PREIN scriptlet",
            Suite::Forky => "Error in %pre scriptlet",
        }
    }

    /// The metadata of `repo` could not be downloaded.
    pub(crate) fn repo_unreachable(repo: &str) -> String {
        match suite() {
            Suite::Bookworm => format!("Failed to download metadata for repo '{repo}'"),
            Suite::Forky => format!("for repository \"{repo}\""),
        }
    }
}

/// The forky root filesystem is built only when a test asks for it.
static FORKY: OnceLock<()> = OnceLock::new();

/// Checks for root, installs the tools, builds the cached root filesystem
/// and the test RPMs, once. A panic here leaves the cell empty, so every
/// test fails with the same reason instead of only the first.
fn prepared() -> &'static Prepared {
    PREPARED.get_or_init(|| {
        // Fail, never skip: a skipped system test looks like a passing one.
        assert!(
            nix::unistd::geteuid().is_root(),
            "the system tests must run as root (they boot sandbox hosts with \
             namespaces, mounts and cgroups); run them as root or do not \
             pass --include-ignored"
        );
        sandbox(&["deps"]).expect_code(0);
        sandbox(&["rootfs"]).expect_code(0);
        let rpms = rpms_dir();
        let built = sandbox(&["rpms", rpms.to_str().expect("utf-8 rpms dir")]);
        built.expect_code(0);
        assert!(
            rpms.join("repodata/repomd.xml").is_file(),
            "sandbox.sh rpms wrote no repodata into {}",
            rpms.display()
        );
        Prepared { rpms }
    })
}

/// A fresh directory for this process's RPMs, under the test target dir.
///
/// Statics are never dropped, so a `TempDir` here would be left behind by
/// every run. Instead the directory is named after this process, and those
/// of processes that no longer exist are removed first.
fn rpms_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");
    for entry in fs::read_dir(base).expect("read CARGO_TARGET_TMPDIR") {
        let path = entry.expect("entry of CARGO_TARGET_TMPDIR").path();
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("system-rpms-"))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && (pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists())
        {
            fs::remove_dir_all(&path)
                .unwrap_or_else(|e| panic!("remove stale {}: {e}", path.display()));
        }
    }
    let dir = base.join(format!("system-rpms-{}", std::process::id()));
    fs::create_dir(&dir).expect("create the RPM directory");
    dir
}

/// Runs `sandbox.sh ARGS` on this machine.
fn sandbox(args: &[&str]) -> Run {
    sandbox_env(args, &[])
}

/// [`sandbox`] with these environment variables set.
fn sandbox_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    try_sandbox_env(args, env).unwrap_or_else(|e| panic!("cannot run {SANDBOX}: {e}"))
}

/// Like [`sandbox`], for `Drop`, which must not panic.
fn try_sandbox(args: &[&str]) -> std::io::Result<Run> {
    try_sandbox_env(args, &[])
}

/// Runs `sandbox.sh ARGS` with these environment variables set.
fn try_sandbox_env(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Run> {
    let out = Command::new(SANDBOX)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A running sandbox host. Dropping it stops the host and deletes its disk,
/// also when the test panicked.
pub(super) struct Host {
    /// WORKDIR of `sandbox.sh`; `None` once dropped or kept for inspection.
    workdir: Option<tempfile::TempDir>,
    /// The host's systemd, as seen from this machine.
    pid: u32,
    /// The host name it was booted with (and the host file's name).
    name: String,
    /// Held while the host lives: one test's hosts at a time per test
    /// binary, so dnf runs and health-check timings do not depend on
    /// `--test-threads`. A host booted beside another ([`Host::boot_beside`])
    /// holds none: it runs in the first one's turn (declared after it, it
    /// is dropped before it). Declared last, so it is released after Drop
    /// has stopped the host.
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

/// See [`Host::_serial`].
static ONE_HOST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Host {
    /// Boots a fresh host named `hostname` with driftless installed, the
    /// test repository at /srv/repo and an empty agent config.
    pub(super) fn boot(hostname: &str) -> Host {
        Host::boot_on(hostname, "shared")
    }

    /// [`Host::boot`], in a network namespace of its own with only `lo`:
    /// for a test that runs a firewall, which must never reach this
    /// machine's.
    pub(super) fn boot_in_own_network(hostname: &str) -> Host {
        Host::boot_on(hostname, "private")
    }

    /// Another host for the same test, booted as [`Host::boot`] does, beside
    /// this one (a fleet of two): in this machine's network namespace too,
    /// so both reach a server on 127.0.0.1.
    pub(super) fn boot_beside(&self, hostname: &str) -> Host {
        assert!(
            self._serial.is_some(),
            "boot a host beside the test's first one"
        );
        Host::boot_with(hostname, "shared", None)
    }

    /// [`Host::boot`] on `net` (`DRIFTLESS_SANDBOX_NET` of sandbox.sh).
    fn boot_on(hostname: &str, net: &str) -> Host {
        // A test that panicked while holding it poisons nothing we need.
        let serial = ONE_HOST_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Host::boot_with(hostname, net, Some(serial))
    }

    /// Boots a host on `net`, holding the test's turn `serial`.
    fn boot_with(
        hostname: &str,
        net: &str,
        serial: Option<std::sync::MutexGuard<'static, ()>>,
    ) -> Host {
        let prepared = prepared();
        let suite = suite();
        if suite == Suite::Forky {
            FORKY.get_or_init(|| {
                sandbox(&["rootfs", "forky"]).expect_code(0);
            });
        }
        let workdir = tempfile::Builder::new()
            .prefix("driftless-host-")
            .tempdir()
            .expect("create a host WORKDIR");
        let wd = workdir.path().to_str().expect("utf-8 WORKDIR").to_owned();
        // boot cleans up after itself when it fails, so nothing to stop yet.
        let booted = sandbox_env(
            &["boot", &wd, hostname, suite.name()],
            &[("DRIFTLESS_SANDBOX_NET", net)],
        );
        booted.expect_code(0);
        let pid = booted
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("boot printed no pid ({e}): {:?}", booted.stdout));
        // From here on, Drop stops the host whatever fails below.
        let host = Host {
            workdir: Some(workdir),
            pid,
            name: hostname.to_owned(),
            _serial: serial,
        };
        let bin = host.path("/usr/local/bin/driftless");
        fs::copy(env!("CARGO_BIN_EXE_driftless"), &bin).expect("copy driftless into the host");
        sandbox(&["repo", &wd, prepared.rpms.to_str().expect("utf-8")]).expect_code(0);
        // `repo` also writes /etc/yum.repos.d/driftless-test.repo, the very
        // file the tests' [[repo]] "driftless-test" declares. Removed, so that
        // dnf sees only what driftless writes and the tests can prove it did.
        fs::remove_file(host.path("/etc/yum.repos.d/driftless-test.repo"))
            .expect("remove the .repo file written by sandbox.sh repo");
        fs::write(host.path(AGENT_CONFIG), "").expect("write the agent config");
        host
    }

    /// Waits (at most `bound`) for the host's PID 1 to exit, as it does
    /// when the host reboots (`systemctl reboot` in a sandbox), cleans up
    /// after it (`sandbox.sh stop`), runs `between` on the host's disk
    /// while it is down, and boots the same root again (its overlay or
    /// copied tree, machine id and suite kept).
    pub(super) fn reboot(&mut self, bound: Duration, between: impl FnOnce(&Path)) {
        let wd = self
            .workdir
            .as_ref()
            .expect("host already dropped")
            .path()
            .to_owned();
        let deadline = Instant::now() + bound;
        while Path::new(&format!("/proc/{}", self.pid)).exists() && !self.pid_is_zombie() {
            assert!(
                Instant::now() < deadline,
                "the host's PID 1 ({}) did not exit within {bound:?}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        sandbox(&["stop", wd.to_str().expect("utf-8 WORKDIR")]).expect_code(0);
        // The disk, as the next boot finds it: the overlay is mounted again
        // by boot, so the change goes into its upper (or copied) tree.
        let disk = match fs::read_to_string(wd.join("mode"))
            .as_deref()
            .map(str::trim)
        {
            Ok("overlay") => wd.join("upper"),
            _ => wd.join("root"),
        };
        between(&disk);
        let booted = sandbox(&["boot", wd.to_str().expect("utf-8"), &self.name]);
        booted.expect_code(0);
        self.pid = booted
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("boot printed no pid ({e}): {:?}", booted.stdout));
    }

    /// Kills the host at once, as a machine that loses its power: no unit is
    /// stopped, its processes die with its PID 1 (`sandbox.sh stop`); its
    /// disk stays, and [`Host::reboot`] boots it again.
    pub(super) fn power_off(&self) {
        let wd = self.workdir.as_ref().expect("host already dropped").path();
        sandbox(&["stop", wd.to_str().expect("utf-8 WORKDIR")]).expect_code(0);
    }

    /// Whether the host's PID 1, as seen from here, has exited and waits
    /// to be reaped by its launcher.
    fn pid_is_zombie(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// The host's `/`, writable from outside while it runs. Mounts made
    /// inside (/run, /tmp, /proc) are not visible here.
    pub(super) fn root(&self) -> PathBuf {
        let wd = self.workdir.as_ref().expect("host already dropped");
        wd.path().join("root")
    }

    /// `path` (absolute, as the host sees it) as seen from outside.
    pub(super) fn path(&self, path: &str) -> PathBuf {
        let relative = path.strip_prefix('/').expect("an absolute host path");
        self.root().join(relative)
    }

    /// Runs `argv` inside the host (its namespaces, root and a clean
    /// environment); the exit code passes through.
    pub(super) fn exec(&self, argv: &[&str]) -> Run {
        let pid = self.pid.to_string();
        let mut args = vec!["exec", pid.as_str()];
        args.extend_from_slice(argv);
        sandbox(&args)
    }

    /// Starts `argv` inside the host and returns at once (its output piped):
    /// for a client that must be running while the test does something else.
    pub(super) fn spawn(&self, argv: &[&str]) -> std::process::Child {
        Command::new(SANDBOX)
            .args(["exec", &self.pid.to_string()])
            .args(argv)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SANDBOX}: {e}"))
    }

    /// `path` as the running host sees it (its own mounts included: /run,
    /// /tmp), from outside, through its PID 1's root.
    pub(super) fn live_path(&self, path: &str) -> PathBuf {
        let relative = path.strip_prefix('/').expect("an absolute host path");
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(relative)
    }

    /// Runs `driftless ARGS --config /srv/agent.toml` inside the host, with
    /// debug logging so that [`commands`] can see every subprocess.
    pub(super) fn driftless(&self, args: &[&str]) -> Run {
        let mut argv = vec![
            "env",
            "DRIFTLESS_LOG=debug",
            "NO_COLOR=1",
            "/usr/local/bin/driftless",
        ];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--config", AGENT_CONFIG]);
        self.exec(&argv)
    }

    /// `converge --now` of the config repo at /srv/config for this host.
    pub(super) fn converge(&self) -> Run {
        self.driftless(&[
            "converge", "--now", "--repo", CONFIG_DIR, "--host", &self.name,
        ])
    }

    /// `plan --json` of the config repo at /srv/config, and its parsed output.
    pub(super) fn plan_json(&self) -> (Run, serde_json::Value) {
        let run = self.driftless(&["plan", "--repo", CONFIG_DIR, "--host", &self.name, "--json"]);
        let json = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "plan --json printed no JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                run.stdout, run.stderr
            )
        });
        (run, json)
    }

    /// The `status` object of `driftless status --json`.
    pub(super) fn status(&self) -> serde_json::Value {
        let run = self.driftless(&["status", "--json"]);
        run.expect_code(0);
        let json: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {}", run.stdout));
        json["status"].clone()
    }

    /// The key of the desired state that is quarantined, if any.
    pub(super) fn quarantined(&self) -> Option<String> {
        self.status()["quarantine"]["key"]
            .as_str()
            .map(str::to_owned)
    }

    /// Replaces the config repo at /srv/config with exactly these
    /// (relative path, content) files.
    pub(super) fn write_config(&self, files: &[(&str, &str)]) {
        let dir = self.path(CONFIG_DIR);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", dir.display()),
        }
        for (relative, content) in files {
            let full = dir.join(relative);
            fs::create_dir_all(full.parent().expect("a parent")).expect("create config dirs");
            fs::write(&full, content).expect("write a config file");
        }
    }

    /// The content of a host file, `None` if it does not exist. Only for
    /// the host's disk: /run and /tmp are inside mounts (use [`Host::exec`]).
    pub(super) fn read(&self, path: &str) -> Option<String> {
        match fs::read_to_string(self.path(path)) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {path} of the host: {e}"),
        }
    }

    /// Identity of a host file: content, inode, mtime and mode. Equal
    /// before and after means the file was not rewritten, not even with
    /// the same content (an atomic replace changes the inode).
    pub(super) fn identity(&self, path: &str) -> String {
        let full = self.path(path);
        let md = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("stat {path}: {e}"));
        let content = fs::read(&full).unwrap_or_else(|e| panic!("read {path}: {e}"));
        format!(
            "ino={} mtime={}.{:09} mode={:o} content={:?}",
            md.ino(),
            md.mtime(),
            md.mtime_nsec(),
            md.mode(),
            String::from_utf8_lossy(&content)
        )
    }

    /// The installed VERSION-RELEASE of a package, `None` if not installed.
    pub(super) fn rpm_q(&self, name: &str) -> Option<String> {
        let q = self.exec(&["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}\\n", name]);
        match q.code {
            0 => Some(q.stdout.trim().to_owned()),
            1 if q.stdout.contains("is not installed") => None,
            _ => panic!("rpm -q {name} failed: {q:?}"),
        }
    }

    /// Whether systemd says the unit is active.
    pub(super) fn is_active(&self, unit: &str) -> bool {
        self.exec(&["systemctl", "is-active", unit]).stdout.trim() == "active"
    }

    /// Whether the unit is enabled.
    pub(super) fn is_enabled(&self, unit: &str) -> bool {
        self.exec(&["systemctl", "is-enabled", unit]).stdout.trim() == "enabled"
    }

    /// The unit's main pid (0 when it does not run). A restart changes it,
    /// a reload does not.
    pub(super) fn main_pid(&self, unit: &str) -> u32 {
        let show = self.exec(&["systemctl", "show", "-P", "MainPID", unit]);
        show.expect_code(0);
        show.stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("MainPID of {unit} is not a number ({e}): {show:?}"))
    }

    /// `systemctl status` and the unit's last journal lines, for messages.
    pub(super) fn unit_status(&self, unit: &str) -> String {
        let status = self.exec(&["systemctl", "status", "--no-pager", "-n", "15", unit]);
        format!("{}{}", status.stdout, status.stderr)
    }

    /// The number of transactions `dnf history list` shows.
    pub(super) fn dnf_history_count(&self) -> usize {
        let history = self.exec(&["dnf", "history", "list"]);
        history.expect_code(0);
        // Rows start with the transaction id: dnf 4's look like
        // "     3 | install dl-hello | 2026-... | Install | 1", dnf 5's like
        // " 1 dnf -y install dl-hello 2026-12-07 13:41:58  1".
        history
            .stdout
            .lines()
            .filter(|line| {
                let id = line.split_whitespace().next().unwrap_or("");
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
            })
            .count()
    }

    /// Polls `ready` every 50 ms until it returns true; panics after
    /// `seconds` with `what`. For effects of services that run on their own
    /// after `systemctl` returned (a started script writing a file).
    pub(super) fn wait_until(&self, what: &str, seconds: u64, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "timed out after {seconds} s: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let Some(workdir) = self.workdir.take() else {
            return;
        };
        if std::thread::panicking() {
            // The failing test's evidence, before the host disappears.
            if let Ok(failed) = try_sandbox(&[
                "exec",
                &self.pid.to_string(),
                "sh",
                "-c",
                "systemctl --no-pager --failed; journalctl --no-pager -n 30",
            ]) {
                eprintln!("--- host {} at panic:\n{}", self.name, failed.stdout);
            }
        }
        let wd = workdir.path().to_owned();
        let stopped = try_sandbox(&["stop", &wd.to_string_lossy()]);
        // Never delete a tree that is still mounted: it would reach into
        // the running host's disk (or, in copy mode, nothing worse, but the
        // caller should see the leak either way).
        let clean = matches!(&stopped, Ok(run) if run.code == 0) && !is_mounted(&wd.join("root"));
        if clean {
            if let Err(e) = workdir.close() {
                eprintln!(
                    "warning: could not delete host WORKDIR {}: {e}",
                    wd.display()
                );
            }
        } else {
            let kept = workdir.keep();
            eprintln!(
                "warning: sandbox.sh stop failed for {} ({stopped:?}); kept {}",
                self.name,
                kept.display()
            );
        }
    }
}

/// Whether `path` is a mount point on this machine.
fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return true; // Unknown: assume the worst, keep the directory.
    };
    let target = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point == target)
}

/// The argv of every subprocess driftless logged, in order: the values of
/// `running argv="..."` in its debug log on stderr.
pub(super) fn commands(run: &Run) -> Vec<String> {
    const MARK: &str = "running argv=";
    run.stderr
        .lines()
        .map(strip_ansi)
        .filter_map(|line| {
            let at = line.find(MARK)?;
            Some(field_value(&line[at + MARK.len()..]))
        })
        .collect()
}

/// A tracing field value: a Debug-quoted string (unescaped here) or, if
/// unquoted, the rest of the line.
fn field_value(text: &str) -> String {
    let Some(quoted) = text.strip_prefix('"') else {
        return text.trim_end().to_owned();
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            _ => out.push(c),
        }
    }
    out
}

/// Removes terminal colour sequences, in case the log ignores NO_COLOR.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// systemctl verbs that only read.
const SYSTEMCTL_READ: &[&str] = &[
    "show",
    "is-enabled",
    "is-active",
    "is-failed",
    "is-system-running",
    "status",
    "cat",
    "list-units",
    "list-unit-files",
    "list-dependencies",
    "get-default",
];

/// systemctl verbs that change the host (the ones a converge may run, and
/// their relatives).
const SYSTEMCTL_WRITE: &[&str] = &[
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "try-reload-or-restart",
    "enable",
    "disable",
    "reenable",
    "preset",
    "mask",
    "unmask",
    "daemon-reload",
    "daemon-reexec",
    "reset-failed",
    "kill",
    "set-property",
    "isolate",
    "link",
    "revert",
];

/// The commands among `cmds` that may change the host. Read-only are
/// rpm queries, read verbs of systemctl, and `dnf repoquery`, `dnf history
/// list|info` and `dnf --version`; anything unrecognised counts as
/// mutating, so a no-op check cannot pass by misreading a command.
pub(super) fn mutating(cmds: &[String]) -> Vec<String> {
    cmds.iter().filter(|c| !is_read_only(c)).cloned().collect()
}

/// The program of a logged argv, without its directory (`/usr/bin/dnf`).
pub(super) fn program(cmd: &str) -> &str {
    let first = cmd.split_whitespace().next().unwrap_or("");
    first.rsplit('/').next().unwrap_or(first)
}

/// The systemctl verb of a logged argv, if it names a known one.
pub(super) fn systemctl_verb(cmd: &str) -> Option<&str> {
    cmd.split_whitespace()
        .skip(1)
        .find(|w| SYSTEMCTL_READ.contains(w) || SYSTEMCTL_WRITE.contains(w))
}

fn is_read_only(cmd: &str) -> bool {
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    match program(cmd) {
        "rpm" => args.iter().any(|a| {
            // -q, -qa, -qf ...; -V, -Va: query and verify modes.
            a.starts_with("-q")
                || a.starts_with("-V")
                || ["--query", "--eval", "-E", "--version", "--verify"].contains(a)
        }),
        "systemctl" => match systemctl_verb(cmd) {
            Some(verb) => SYSTEMCTL_READ.contains(&verb),
            None => args == ["--version"],
        },
        "dnf" => {
            // The verb is the first word that is not an option; dnf's own
            // options here come as `--opt=value`. history is read-only only
            // when listing: `history undo` is a transaction.
            let mut words = args.iter().filter(|a| !a.starts_with('-'));
            match (words.next(), words.next()) {
                (Some(&"repoquery"), _) => true,
                (Some(&"history"), None | Some(&"list" | &"info")) => true,
                (None, _) => args == ["--version"],
                _ => false,
            }
        }
        _ => false,
    }
}

/// First 16 hex digits of the SHA-256 of `text`: what the dl-web test
/// service records as the config it read.
pub(super) fn conf_sum(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16].to_owned()
}

/// dl-web's events as (start|reload, config sum), oldest first: one line
/// per start (a restart too: a new process) and per reload.
pub(super) fn web_events(host: &Host) -> Vec<(String, String)> {
    // /run is a mount inside the host, invisible from outside: read it there.
    let cat = host.exec(&["sh", "-c", "cat /run/dl-web.events 2>/dev/null || true"]);
    cat.expect_code(0);
    cat.stdout
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let kind = words.next().unwrap_or_default().to_owned();
            let sum = words.next().unwrap_or_default().to_owned();
            (kind, sum)
        })
        .collect()
}
