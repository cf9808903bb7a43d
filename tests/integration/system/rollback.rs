//! System tests of the transactional converge (docs/rollback.md) on real,
//! disposable systemd hosts with the real rpm, dnf and systemd: snapshot,
//! health checks, automatic rollback, crash recovery at every step,
//! quarantine, and history / rollback / resume / retry.
//!
//! tests/integration/transactions.rs runs the same scenarios in temporary roots without
//! packages or services; these are their real-host versions. Each test boots
//! its own host (see tests/system/README.md), so they need root and are
//! ignored by default:
//!
//!     cargo test --test integration system::rollback -- --include-ignored

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use super::harness::{
    CONFIG_DIR, Host, commands, conf_sum, dnf_says, mutating, program, web_events,
};
use crate::util::Run;
use serde_json::Value;

/// The host file of every scenario; hosts are booted as `web1`.
const HOST_FILE: &str = "hosts/web1.toml";
/// The agent config the harness gives every host.
const AGENT_CONFIG: &str = "/srv/agent.toml";
/// Short settle and health timeouts, so a failing converge fails fast.
const AGENT_ROLLBACK: &str = "[rollback]\nsettle_time = \"1s\"\nhealth_timeout = \"20s\"\n";
/// The file dl-web reads, managed by every scenario and named in its
/// restart_on.
const CONF: &str = "/etc/dl-web/dl-web.conf";
/// What driftless writes for the `driftless-test` [[repo]].
const REPO_FILE: &str = "/etc/yum.repos.d/driftless-test.repo";
const REPOS_DIR: &str = "/etc/yum.repos.d";
/// A drop-in of dl-web: writing or removing it needs a daemon-reload.
const DROPIN_DIR: &str = "/etc/systemd/system/dl-web.service.d";
const DROPIN: &str = "/etc/systemd/system/dl-web.service.d/driftless.conf";
/// Where driftless keeps the RPMs a rollback may need (default state dir).
const STORE: &str = "/var/lib/driftless/packages";
const CONF_V1: &str = "greeting = hello\n";
const CONF_V2: &str = "greeting = bonjour\n";
const HELLO: &str = "dl-hello.service";
const WEB: &str = "dl-web.service";
/// Marker of the fault-injection log line driftless writes before it kills
/// itself.
const FAULT_MARK: &str = "fault injection: killing driftless";

/// The desired state of web1: the test repository, dl-hello pinned and in
/// `hello_state`, dl-web running and restarted when its config file
/// changes, the file with the given content and metadata, plus `extra`
/// TOML (more resources, checks).
struct Web1<'a> {
    hello: &'a str,
    hello_state: &'a str,
    conf: &'a str,
    mode: &'a str,
    group: &'a str,
    extra: String,
}

impl Default for Web1<'static> {
    fn default() -> Self {
        Web1 {
            hello: "1.0-1",
            hello_state: "running",
            conf: CONF_V1,
            mode: "0644",
            group: "root",
            extra: String::new(),
        }
    }
}

impl Web1<'_> {
    fn toml(&self) -> String {
        let Web1 {
            hello,
            hello_state,
            conf,
            mode,
            group,
            extra,
        } = self;
        // Debug quoting of these plain ASCII contents is a valid TOML string.
        format!(
            r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-hello"
version = "{hello}"

[[package]]
name = "dl-web"

[[file]]
path = "{CONF}"
content = {conf:?}
owner = "root"
group = "{group}"
mode = "{mode}"

[[service]]
name = "dl-hello"
enabled = true
state = "{hello_state}"

[[service]]
name = "dl-web"
enabled = true
state = "running"
restart_on = ["file:{CONF}"]
{extra}"#
        )
    }

    /// Makes this the config repo's desired state for the host.
    fn declare(&self, host: &Host) {
        host.write_config(&[(HOST_FILE, &self.toml())]);
    }
}

/// A fresh host whose agent config has short rollback timeouts.
fn boot() -> Host {
    let host = Host::boot("web1");
    fs::write(host.path(AGENT_CONFIG), AGENT_ROLLBACK).expect("write the agent config");
    host
}

/// Runs `driftless ARGS` in the host with `DRIFTLESS_FAULT=fault`. Through
/// a shell: `sandbox.sh exec` (nsenter) dies of the same signal as the
/// command, which the harness reports as no exit code at all (-1); the shell
/// turns a SIGKILL into the exit code 137.
fn driftless_with_fault(host: &Host, fault: &str, args: &[&str]) -> Run {
    let var = format!("DRIFTLESS_FAULT={fault}");
    let mut argv = vec![
        "sh",
        "-c",
        "\"$@\"; exit $?",
        "sh",
        "env",
        var.as_str(),
        "DRIFTLESS_LOG=debug",
        "NO_COLOR=1",
        "/usr/local/bin/driftless",
    ];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", AGENT_CONFIG]);
    host.exec(&argv)
}

/// `converge --now` killed by the fault injection at `step`.
#[track_caller]
fn converge_killed_at(host: &Host, step: &str) -> Run {
    let run = driftless_with_fault(
        host,
        step,
        &["converge", "--now", "--repo", CONFIG_DIR, "--host", "web1"],
    );
    assert!(
        run.code == 137 && run.stderr.contains(FAULT_MARK),
        "{step}: driftless was not killed by the fault injection (exit {})\n--- stdout\n{}\n--- stderr\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// `driftless ARGS --json`, which must exit 0, parsed.
#[track_caller]
fn json(host: &Host, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = host.driftless(&all);
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        )
    })
}

/// The generations `history --json` lists, oldest first.
fn history(host: &Host) -> Vec<Value> {
    let h = json(host, &["history"]);
    h["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history array in {h}"))
        .clone()
}

/// The `status` object of `status --json`.
fn status(host: &Host) -> Value {
    json(host, &["status"])["status"].clone()
}

/// The status word of each generation, oldest first.
fn statuses(host: &Host) -> Vec<String> {
    history(host)
        .iter()
        .map(|g| g["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The logged commands of `run` that ran dnf (any verb).
fn dnf_commands(run: &Run) -> Vec<String> {
    commands(run)
        .into_iter()
        .filter(|c| program(c) == "dnf")
        .collect()
}

/// Whether `run` logged a dnf transaction installing `spec`.
fn dnf_installed(run: &Run, spec: &str) -> bool {
    dnf_commands(run).iter().any(|c| {
        c.split_whitespace()
            .any(|w| w == "install" || w == "--action=install")
            && c.contains(spec)
    })
}

/// Asserts that a converge that should be held changed nothing: no dnf at
/// all, no mutating command.
#[track_caller]
fn assert_held_without_changes(run: &Run) {
    let cmds = commands(run);
    assert!(
        !cmds.is_empty() || run.stderr.contains("pinned"),
        "no command logged (is DRIFTLESS_LOG=debug honoured?):\n{}",
        run.stderr
    );
    let dnf = dnf_commands(run);
    assert!(dnf.is_empty(), "a held converge ran dnf: {dnf:#?}");
    assert_eq!(
        mutating(&cmds),
        Vec::<String>::new(),
        "a held converge changed something"
    );
}

/// A path as the host has it: kind, mode, owner, group and content (or
/// link target), read from outside the host. Equal means byte for byte
/// and metadata equal (not necessarily the same inode).
fn path_state(host: &Host, path: &str) -> String {
    let full = host.path(path);
    let md = match fs::symlink_metadata(&full) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return "missing".to_owned(),
        Err(e) => panic!("stat {path} of the host: {e}"),
    };
    let meta = format!(
        "mode={:04o} uid={} gid={}",
        md.mode() & 0o7777,
        md.uid(),
        md.gid()
    );
    let kind = md.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(&full).expect("read a symlink of the host");
        format!("symlink -> {}", target.display())
    } else if kind.is_dir() {
        format!("dir {meta}")
    } else {
        let content = fs::read(&full).unwrap_or_else(|e| panic!("read {path}: {e}"));
        format!(
            "file {meta} content={:?}",
            String::from_utf8_lossy(&content)
        )
    }
}

/// Every entry of a host directory with its [`path_state`], by name.
fn dir_state(host: &Host, dir: &str) -> Vec<(String, String)> {
    let mut names: Vec<String> = fs::read_dir(host.path(dir))
        .unwrap_or_else(|e| panic!("list {dir}: {e}"))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let state = path_state(host, &format!("{dir}/{n}"));
            (n, state)
        })
        .collect()
}

/// The installed package set (`rpm -qa`), sorted.
fn packages(host: &Host) -> Vec<String> {
    let q = host.exec(&[
        "rpm",
        "-qa",
        "--qf",
        "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n",
    ]);
    q.expect_code(0);
    let mut all: Vec<String> = q.stdout.lines().map(str::to_owned).collect();
    all.sort();
    all
}

/// What systemd says about a unit: running, enabled, which unit file and
/// drop-ins it loaded, whether it needs a daemon-reload.
fn unit_state(host: &Host, unit: &str) -> String {
    let show = host.exec(&[
        "systemctl",
        "show",
        "--property=ActiveState,SubState,UnitFileState,Description,DropInPaths,NeedDaemonReload",
        unit,
    ]);
    show.expect_code(0);
    let mut lines: Vec<&str> = show.stdout.lines().collect();
    lines.sort_unstable();
    lines.join(" ")
}

/// The version the running dl-hello wrote into /run/dl-hello.version
/// (`None` before it wrote one).
fn hello_version(host: &Host) -> Option<String> {
    // /run is a mount inside the host: read it there.
    let cat = host.exec(&["cat", "/run/dl-hello.version"]);
    (cat.code == 0).then(|| cat.stdout.trim().to_owned())
}

/// Waits until the running dl-hello has written `version`.
fn wait_for_hello(host: &Host, version: &str) {
    host.wait_until(&format!("dl-hello {version} runs"), 15, || {
        hello_version(host).as_deref() == Some(version)
    });
}

/// Forgets which dl-hello ran, so that the next version file proves a
/// start after this point.
fn forget_hello_version(host: &Host) {
    host.exec(&["rm", "-f", "/run/dl-hello.version"])
        .expect_code(0);
}

/// Everything a converge may touch, for "exactly as before" comparisons.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    packages: Vec<String>,
    paths: Vec<(String, String)>,
    units: Vec<(String, String)>,
    hello_runs: Option<String>,
}

fn host_state(host: &Host, paths: &[&str]) -> HostState {
    HostState {
        packages: packages(host),
        paths: paths
            .iter()
            .map(|p| ((*p).to_owned(), path_state(host, p)))
            .collect(),
        units: [HELLO, WEB]
            .iter()
            .map(|u| ((*u).to_owned(), unit_state(host, u)))
            .collect(),
        hello_runs: hello_version(host),
    }
}

/// Waits until dl-web has recorded `count` events, then a little longer so
/// that an unwanted extra one would show too; returns them.
fn wait_for_web_events(host: &Host, count: usize) -> Vec<(String, String)> {
    host.wait_until(&format!("dl-web records {count} event(s)"), 15, || {
        web_events(host).len() >= count
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    web_events(host)
}

fn start(conf: &str) -> (String, String) {
    ("start".to_owned(), conf_sum(conf))
}

/// Asserts that both services run and are enabled.
#[track_caller]
fn assert_services_up(host: &Host) {
    for unit in [HELLO, WEB] {
        assert!(
            host.is_active(unit) && host.is_enabled(unit),
            "{unit} is not active and enabled:\n{}",
            host.unit_status(unit)
        );
    }
}

/// Removes an RPM from the host's repository and rebuilds its metadata
/// (createrepo_c of this machine, as `sandbox.sh rpms` does), then drops
/// dnf's caches in the host so that nothing but driftless's package store
/// still has the build.
fn remove_from_repo(host: &Host, rpm_file: &str) {
    let repo = host.path("/srv/repo");
    fs::remove_file(repo.join(rpm_file)).unwrap_or_else(|e| panic!("remove {rpm_file}: {e}"));
    let out = Command::new("createrepo_c")
        .arg("--quiet")
        .arg(&repo)
        .output()
        .expect("run createrepo_c");
    assert!(out.status.success(), "createrepo_c failed: {out:?}");
    host.exec(&["dnf", "-q", "clean", "all"]).expect_code(0);
}

/// The builds of `name` the enabled repositories offer, as VERSION-RELEASE.
fn offered(host: &Host, name: &str) -> Vec<String> {
    let q = host.exec(&[
        "dnf",
        "-q",
        "repoquery",
        "--available",
        "--qf",
        "%{version}-%{release}\\n",
        name,
    ]);
    q.expect_code(0);
    let mut v: Vec<String> = q
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// A tiny HTTP server on 127.0.0.1 for `http` checks (the hosts share this
/// machine's network): `GET /ok` answers 200, anything else 503.
fn http_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an HTTP port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let status = if request.starts_with("GET /ok ") {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

/// Scenario 1: an upgrade whose new service fails is undone: the old build
/// is reinstalled from driftless's package store (the repository no longer
/// carries it), runs again, and the file gets back its bytes, mode and
/// group; the commit is quarantined and the next converge, held at the last
/// good state, runs no dnf at all.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn upgrade_to_a_failing_service_rolls_back_to_the_old_package() {
    let host = boot();
    let good = Web1 {
        hello: "2.0-1",
        mode: "0640",
        group: "daemon",
        ..Web1::default()
    };
    good.declare(&host);
    host.converge().expect_code(2);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    wait_for_hello(&host, "2.0");
    assert_services_up(&host);
    let conf_before = path_state(&host, CONF);
    let daemon_gid = fs::metadata(host.path(CONF)).expect("stat the conf").gid();
    assert!(
        conf_before.contains("mode=0640") && daemon_gid != 0,
        "the converged file is not 0640 root:daemon: {conf_before}"
    );
    let packages_before = packages(&host);
    wait_for_web_events(&host, 1);

    // From now on only the package store has dl-hello 2.0-1.
    remove_from_repo(&host, "dl-hello-2.0-1.noarch.rpm");
    assert_eq!(offered(&host, "dl-hello"), ["1.0-1", "3.0-1"]);
    assert!(
        host.path(&format!("{STORE}/dl-hello-2.0-1.noarch.rpm"))
            .is_file(),
        "the package store does not hold the installed build"
    );
    let hello_pid = host.main_pid(HELLO);
    let web_events_before = web_events(&host).len();
    forget_hello_version(&host);

    Web1 {
        hello: "3.0-1",
        conf: CONF_V2,
        mode: "0600",
        group: "root",
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(4);

    // 3.0 really was installed, then 2.0 reinstalled from the store.
    assert!(
        dnf_installed(&run, "dl-hello-3.0-1"),
        "the upgrade never ran: {:#?}",
        dnf_commands(&run)
    );
    assert!(
        dnf_installed(&run, &format!("{STORE}/dl-hello-2.0-1.noarch.rpm")),
        "2.0-1 was not reinstalled from the package store: {:#?}",
        dnf_commands(&run)
    );
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    assert_eq!(packages(&host), packages_before, "rpm -qa differs");
    // A fresh version file: 2.0 started again after the rollback, and
    // systemd runs 2.0's unit file.
    wait_for_hello(&host, "2.0");
    assert!(
        host.is_active(HELLO) && host.is_enabled(HELLO),
        "{}",
        host.unit_status(HELLO)
    );
    let hello_pid_after = host.main_pid(HELLO);
    assert!(
        hello_pid_after != 0 && hello_pid_after != hello_pid,
        "dl-hello was not restarted (MainPID {hello_pid} -> {hello_pid_after})"
    );
    let hello_unit = unit_state(&host, HELLO);
    assert!(
        hello_unit.contains("Description=driftless test service dl-hello 2.0")
            && hello_unit.contains("NeedDaemonReload=no"),
        "systemd does not run 2.0's unit: {hello_unit}"
    );
    // The file: old bytes, old mode, old owner and group; dl-web reads it.
    assert_eq!(path_state(&host, CONF), conf_before);
    assert!(host.is_active(WEB), "{}", host.unit_status(WEB));
    let events = web_events(&host);
    assert_eq!(
        events[web_events_before..].last(),
        Some(&start(CONF_V1)),
        "dl-web does not run with the restored file: {events:?}"
    );

    let gens = history(&host);
    assert_eq!(gens.len(), 2, "{gens:#?}");
    let failed = &gens[1];
    assert_eq!(failed["status"], "rolled-back", "{failed:#}");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("dl-hello")),
        "no reason naming dl-hello: {failed:#}"
    );
    let st = status(&host);
    let q = &st["quarantine"];
    assert_eq!(q["key"], failed["key"], "{st:#}");
    assert!(
        q["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rolled back") && r.contains("dl-hello")),
        "{st:#}"
    );
    assert_eq!(st["last_good"]["key"], gens[0]["key"], "{st:#}");

    // Same head again: held at the last good state, no dnf, no change.
    let conf_identity = host.identity(CONF);
    let pids = [HELLO, WEB].map(|u| host.main_pid(u));
    let run = host.converge();
    run.expect_code(3);
    assert!(run.stdout.contains("quarantined"), "{}", run.stdout);
    assert_held_without_changes(&run);
    assert_eq!(host.identity(CONF), conf_identity);
    assert_eq!([HELLO, WEB].map(|u| host.main_pid(u)), pids);
    assert_eq!(packages(&host), packages_before);
    assert_eq!(history(&host).len(), 2, "a held converge made a generation");

    // The record of the failed generation names the dnf transaction it
    // made (dnf history shows it), like an applied one does.
    assert!(
        failed["dnf_transactions"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "generation 2 ran `dnf install dl-hello-3.0-1` but records no dnf transaction: {failed:#}"
    );
}

/// Scenario 2: failing health checks after the apply roll back: a command
/// check after a config change (dl-web restarted on the bad file, then back
/// on the good one), a service check of a unit the change stopped, and an
/// http check answering 503.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn a_failing_check_after_a_config_change_rolls_back() {
    let host = boot();
    let port = http_server();
    let command_check = format!(
        r#"
[[check]]
name = "conf-is-good"
command = ["sh", "-c", "grep -q good {CONF}"]
retries = 0
"#
    );
    let http_check = |path: &str| {
        format!(
            r#"
[[check]]
name = "web-answers"
http = "http://127.0.0.1:{port}/{path}"
retries = 0
"#
        )
    };
    const GOOD: &str = "greeting = good\n";
    let checks = format!("{command_check}{}", http_check("ok"));
    Web1 {
        conf: GOOD,
        extra: checks.clone(),
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(2);
    for name in ["conf-is-good", "web-answers"] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("health check {name} passed"))),
            "check {name} did not pass:\n{}",
            run.stderr
        );
    }
    assert_services_up(&host);
    wait_for_web_events(&host, 1);
    let conf_good = path_state(&host, CONF);

    // 1. The command check fails on the new file.
    let web_pid = host.main_pid(WEB);
    let events_before = web_events(&host).len();
    const BAD: &str = "greeting = bad\n";
    Web1 {
        conf: BAD,
        extra: checks.clone(),
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("check `conf-is-good` failed 1 time"),
        "{}",
        run.stderr
    );
    assert_eq!(path_state(&host, CONF), conf_good, "the file is not back");
    assert!(host.is_active(WEB), "{}", host.unit_status(WEB));
    assert_ne!(host.main_pid(WEB), web_pid, "dl-web was not restarted");
    let events = wait_for_web_events(&host, events_before + 2);
    assert_eq!(
        events[events_before..],
        [start(BAD), start(GOOD)],
        "dl-web must have run the bad file, then be restarted back on the good one"
    );
    let last = history(&host).pop().expect("a generation");
    assert_eq!(last["status"], "rolled-back", "{last:#}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("conf-is-good")),
        "{last:#}"
    );

    // 2. A service check of dl-hello, which the change stops.
    let hello_pid = host.main_pid(HELLO);
    Web1 {
        conf: GOOD,
        hello_state: "stopped",
        extra: format!(
            "{checks}\n[[check]]\nname = \"hello-active\"\nservice = \"dl-hello\"\nretries = 0\n"
        ),
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("check `hello-active` failed"),
        "{}",
        run.stderr
    );
    assert!(
        commands(&run)
            .iter()
            .any(|c| program(c) == "systemctl" && c.contains("stop") && c.contains(HELLO)),
        "dl-hello was never stopped, so the check proved nothing:\n{}",
        run.stderr
    );
    assert_services_up(&host);
    let hello_pid_after = host.main_pid(HELLO);
    assert!(
        hello_pid_after != 0 && hello_pid_after != hello_pid,
        "dl-hello was not started again (MainPID {hello_pid} -> {hello_pid_after})"
    );
    assert_eq!(path_state(&host, CONF), conf_good);

    // 3. An http check answering 503.
    let events_before = web_events(&host).len();
    Web1 {
        conf: "greeting = good, but\n",
        extra: format!("{command_check}{}", http_check("broken")),
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains("check `web-answers` failed") && run.stderr.contains("503"),
        "{}",
        run.stderr
    );
    assert_eq!(path_state(&host, CONF), conf_good, "the file is not back");
    assert!(host.is_active(WEB), "{}", host.unit_status(WEB));
    let events = wait_for_web_events(&host, events_before + 2);
    assert_eq!(events.last(), Some(&start(GOOD)), "{events:?}");
    assert_eq!(
        statuses(&host),
        ["applied", "rolled-back", "rolled-back", "rolled-back"]
    );
}

/// Scenario 3: a dnf transaction that fails (a new repo file, an unknown
/// package) leaves the host exactly as it was: the package set, the repo
/// directory (the new file is gone), every managed file (not even
/// rewritten), and the services, not restarted.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn a_dnf_failure_leaves_the_host_exactly_as_before() {
    let host = boot();
    Web1::default().declare(&host);
    host.converge().expect_code(2);
    wait_for_hello(&host, "1.0");
    wait_for_web_events(&host, 1);
    assert_services_up(&host);

    let packages_before = packages(&host);
    let repos_before = dir_state(&host, REPOS_DIR);
    let files_before = [CONF, REPO_FILE].map(|p| host.identity(p));
    let units_before = [HELLO, WEB].map(|u| unit_state(&host, u));
    let pids_before = [HELLO, WEB].map(|u| host.main_pid(u));
    let events_before = web_events(&host);
    let dnf_history = host.dnf_history_count();

    Web1 {
        conf: CONF_V2,
        mode: "0600",
        extra: r#"
[[repo]]
name = "driftless-extra"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-nonexist"
"#
        .to_owned(),
        ..Web1::default()
    }
    .declare(&host);
    let run = host.converge();
    run.expect_code(4);
    assert!(
        run.stderr.contains(&dnf_says::no_match("dl-nonexist")),
        "dnf's message is missing:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("applying") && l.contains("repo:driftless-extra")),
        "the new repo file was never written, so its removal proves nothing:\n{}",
        run.stderr
    );

    assert_eq!(packages(&host), packages_before, "rpm -qa differs");
    assert_eq!(
        dir_state(&host, REPOS_DIR),
        repos_before,
        "{REPOS_DIR} differs"
    );
    assert_eq!(
        [CONF, REPO_FILE].map(|p| host.identity(p)),
        files_before,
        "a managed file was changed or rewritten"
    );
    assert_eq!([HELLO, WEB].map(|u| unit_state(&host, u)), units_before);
    assert_eq!(
        [HELLO, WEB].map(|u| host.main_pid(u)),
        pids_before,
        "a service was restarted"
    );
    assert_eq!(
        web_events(&host),
        events_before,
        "dl-web restarted/reloaded"
    );
    assert_eq!(host.dnf_history_count(), dnf_history);
    assert_eq!(hello_version(&host).as_deref(), Some("1.0"));
    assert_eq!(statuses(&host), ["applied", "rolled-back"]);
}

/// The old state of the crash scenario: dl-hello 1.0-1, the file "v1", no
/// drop-in.
fn crash_v1() -> String {
    Web1 {
        conf: "v1\n",
        extra: format!(
            r#"
[[file]]
path = "{DROPIN}"
state = "absent"

[[directory]]
path = "{DROPIN_DIR}"
state = "absent"
"#
        ),
        ..Web1::default()
    }
    .toml()
}

/// The new state: dl-hello 2.0-1, the file "v2", a drop-in for dl-web (so
/// daemon-reload runs), plus `check`. After dnf, the file steps are the
/// directory (1), the file (2) and the drop-in (3).
fn crash_v2(check: &str) -> String {
    Web1 {
        hello: "2.0-1",
        conf: "v2\n",
        extra: format!(
            r#"
[[directory]]
path = "{DROPIN_DIR}"

[[file]]
path = "{DROPIN}"
content = "[Service]\nEnvironment=DL_WEB=v2\n"
{check}"#
        ),
        ..Web1::default()
    }
    .toml()
}

/// Scenario 4: driftless killed (SIGKILL) at every step of a converge that
/// upgrades a package, writes files and a unit drop-in: `recover` puts the
/// host back exactly as before (packages, files with metadata, units as
/// systemd loaded them, the dl-hello that runs), never a mix; the next
/// converge reaches exactly the new state. A crash in the middle of a
/// rollback is finished by `recover` too. One host, back at v1 before each
/// step.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn a_crash_at_every_step_leaves_old_or_new_never_a_mix() {
    const FAILING: &str = "\n[[check]]\nname = \"broken\"\ncommand = [\"false\"]\nretries = 0\n";
    let steps: &[(&str, &str)] = &[
        ("after-snapshot", ""),
        ("after-dnf", ""),
        ("after-file:1", ""),
        ("after-file:2", ""),
        ("after-file:3", ""),
        ("after-daemon-reload", ""),
        ("during-checks", ""),
        ("mid-rollback", FAILING),
    ];
    let paths = [CONF, DROPIN_DIR, DROPIN, REPO_FILE];
    let host = boot();
    for (step, check) in steps {
        host.write_config(&[(HOST_FILE, &crash_v1())]);
        let run = host.converge();
        assert!(
            run.code == 0 || run.code == 2,
            "{step}: converging v1 failed\n{}\n{}",
            run.stdout,
            run.stderr
        );
        wait_for_hello(&host, "1.0");
        assert_services_up(&host);
        let old = host_state(&host, &paths);
        assert_eq!(old.paths[2].1, "missing", "{step}: {old:#?}");

        host.write_config(&[(HOST_FILE, &crash_v2(check))]);
        converge_killed_at(&host, step);
        // The crash struck where it says, and (but right after the
        // snapshot) left a mix for recovery to undo.
        let killed = host_state(&host, &paths);
        assert_eq!(
            *step == "after-snapshot",
            killed == old,
            "{step}: {killed:#?}"
        );
        let (dir, conf, dropin) = (
            path_state(&host, DROPIN_DIR),
            host.read(CONF),
            host.read(DROPIN),
        );
        let v2 = Some("v2\n".to_owned());
        match *step {
            "after-dnf" => {
                assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"), "{step}");
                assert_eq!(dir, "missing", "{step}");
            }
            "after-file:1" => assert!(
                dir.starts_with("dir ") && conf.as_deref() == Some("v1\n"),
                "{step}: {killed:#?}"
            ),
            "after-file:2" => assert!(conf == v2 && dropin.is_none(), "{step}: {killed:#?}"),
            "after-file:3" => assert!(dropin.is_some(), "{step}: {killed:#?}"),
            "after-daemon-reload" => assert!(
                unit_state(&host, WEB).contains(&format!("DropInPaths={DROPIN}")),
                "{step}: {killed:#?}"
            ),
            _ => {}
        }
        let before_recover = statuses(&host);
        assert!(
            before_recover
                .last()
                .is_some_and(|s| s == "in-progress" || s == "rolling-back"),
            "{step}: the killed converge left no unfinished generation: {before_recover:?}"
        );

        let run = host.driftless(&["recover"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("cut short by a crash"),
            "{step}: {}",
            run.stdout
        );
        wait_for_hello(&host, "1.0");
        assert_eq!(
            host_state(&host, &paths),
            old,
            "{step}: recovery did not restore the old state exactly"
        );
        let after = statuses(&host);
        assert_eq!(after.len(), before_recover.len(), "{step}");
        assert_eq!(
            after.last().map(String::as_str),
            Some("interrupted"),
            "{step}"
        );
        host.driftless(&["recover"]).expect_code(0);

        if check.is_empty() {
            host.converge().expect_code(2);
            wait_for_hello(&host, "2.0");
            assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"), "{step}");
            assert_eq!(host.read(CONF).as_deref(), Some("v2\n"), "{step}");
            assert!(host.read(DROPIN).is_some(), "{step}: no drop-in");
            assert_services_up(&host);
            let web = unit_state(&host, WEB);
            assert!(
                web.contains(&format!("DropInPaths={DROPIN}"))
                    && web.contains("NeedDaemonReload=no"),
                "{step}: systemd did not load the drop-in: {web}"
            );
            let run = host.converge();
            run.expect_code(0);
        } else {
            // The failing head is tried again and rolled back.
            host.converge().expect_code(4);
            wait_for_hello(&host, "1.0");
            assert_eq!(host_state(&host, &paths), old, "{step}");
        }
    }
}

/// Scenario 5: three changing converges are three generations; `rollback`
/// undoes the last, `rollback --to 2` the one before too (the package is
/// downgraded); the host is pinned (converge exits 3 and runs no dnf) until
/// `resume`, then the head applies again. A failing head is quarantined
/// until `retry`, which tries it again.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn history_rollback_to_resume_and_retry() {
    const ONE: &str = "greeting = one\n";
    const TWO: &str = "greeting = two\n";
    const THREE: &str = "greeting = three\n";
    let host = boot();
    let states = [("1.0-1", ONE), ("2.0-1", TWO), ("2.0-1", THREE)];
    for (hello, conf) in states {
        Web1 {
            hello,
            conf,
            ..Web1::default()
        }
        .declare(&host);
        host.converge().expect_code(2);
    }
    wait_for_hello(&host, "2.0");
    let gens = history(&host);
    let ids: Vec<u64> = gens.iter().filter_map(|g| g["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3], "{gens:#?}");
    assert_eq!(statuses(&host), ["applied", "applied", "applied"]);
    for g in &gens[..2] {
        assert!(
            g["dnf_transactions"]
                .as_array()
                .is_some_and(|t| t.len() == 1),
            "{g:#}"
        );
    }
    assert!(gens.iter().all(|g| g["changes"].as_u64() > Some(0)));

    // Undo generation 3: the file of generation 2 again.
    let run = host.driftless(&["rollback"]);
    run.expect_code(0);
    assert_eq!(host.read(CONF).as_deref(), Some(TWO));
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    assert_eq!(statuses(&host), ["applied", "applied", "undone"]);
    assert!(status(&host)["pinned"].is_object());

    // Undo generation 2 too: dl-hello 1.0-1 runs again.
    forget_hello_version(&host);
    let run = host.driftless(&["rollback", "--to", "2"]);
    run.expect_code(0);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));
    assert_eq!(host.read(CONF).as_deref(), Some(ONE));
    wait_for_hello(&host, "1.0");
    assert_services_up(&host);
    assert_eq!(statuses(&host), ["applied", "undone", "undone"]);
    let st = status(&host);
    assert!(
        st["pinned"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("generation 2")),
        "{st:#}"
    );

    // Pinned: nothing is applied.
    let conf_identity = host.identity(CONF);
    let pids = [HELLO, WEB].map(|u| host.main_pid(u));
    let run = host.converge();
    run.expect_code(3);
    assert!(run.stderr.contains("pinned"), "{}", run.stderr);
    assert_held_without_changes(&run);
    assert_eq!(host.identity(CONF), conf_identity);
    assert_eq!([HELLO, WEB].map(|u| host.main_pid(u)), pids);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));

    // Resume: back to the head.
    host.driftless(&["resume"]).expect_code(0);
    assert!(status(&host)["pinned"].is_null());
    let run = host.converge();
    run.expect_code(2);
    assert!(dnf_installed(&run, "dl-hello-2.0-1"), "{}", run.stderr);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    assert_eq!(host.read(CONF).as_deref(), Some(THREE));
    wait_for_hello(&host, "2.0");
    assert_services_up(&host);
    host.converge().expect_code(0);

    // A failing head: rolled back, then held until `retry`.
    Web1 {
        hello: "3.0-1",
        conf: THREE,
        ..Web1::default()
    }
    .declare(&host);
    host.converge().expect_code(4);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    wait_for_hello(&host, "2.0");
    assert_services_up(&host);
    assert!(status(&host)["quarantine"].is_object());
    let run = host.converge();
    run.expect_code(3);
    assert_held_without_changes(&run);

    host.driftless(&["retry"]).expect_code(0);
    assert!(status(&host)["quarantine"].is_null());
    let run = host.converge();
    run.expect_code(4);
    assert!(
        dnf_installed(&run, "dl-hello-3.0-1"),
        "retry did not try the head again: {:#?}",
        dnf_commands(&run)
    );
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("2.0-1"));
    assert_services_up(&host);
    host.converge().expect_code(3);
    assert_eq!(
        statuses(&host),
        [
            "applied",
            "undone",
            "undone",
            "applied",
            "rolled-back",
            "rolled-back"
        ]
    );
}

/// Scenario 6: three converges in a row killed after their dnf transaction
/// (each next one first recovers the previous) quarantine the head: the
/// fourth recovers the third, holds the host at the last good state and
/// exits 3.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn three_interrupted_converges_quarantine_the_head() {
    let host = boot();
    Web1::default().declare(&host);
    host.converge().expect_code(2);
    wait_for_hello(&host, "1.0");
    let paths = [CONF, REPO_FILE];
    let good = host_state(&host, &paths);

    Web1 {
        hello: "2.0-1",
        conf: CONF_V2,
        ..Web1::default()
    }
    .declare(&host);
    for n in 1..=3usize {
        converge_killed_at(&host, "after-dnf");
        assert_eq!(
            host.rpm_q("dl-hello").as_deref(),
            Some("2.0-1"),
            "attempt {n}: dnf did not run before the crash"
        );
        let mut want = vec!["applied"];
        want.extend(std::iter::repeat_n("interrupted", n - 1));
        want.push("in-progress");
        assert_eq!(statuses(&host), want, "attempt {n}");
        let st = status(&host);
        assert!(st["quarantine"].is_null(), "attempt {n}: {st:#}");
    }

    let run = host.converge();
    run.expect_code(3);
    assert!(run.stdout.contains("quarantined"), "{}", run.stdout);
    assert!(
        !dnf_installed(&run, "dl-hello-2.0-1"),
        "the quarantined head was applied again"
    );
    wait_for_hello(&host, "1.0");
    assert_eq!(host_state(&host, &paths), good);
    assert_services_up(&host);
    assert_eq!(
        statuses(&host),
        ["applied", "interrupted", "interrupted", "interrupted"]
    );
    let st = status(&host);
    let gens = history(&host);
    assert_eq!(st["quarantine"]["key"], gens[3]["key"], "{st:#}");
    assert!(
        st["quarantine"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 converges in a row were interrupted")),
        "{st:#}"
    );

    let run = host.converge();
    run.expect_code(3);
    assert_held_without_changes(&run);
}
