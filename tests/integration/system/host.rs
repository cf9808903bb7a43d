//! System tests: driftless converging packages (rpm/dnf), files and
//! services (systemd) on real, disposable systemd hosts.
//!
//! Each test boots its own sandbox host (see tests/system/README.md), so
//! they need root and are ignored by default:
//!
//!     cargo test --test integration system::host -- --include-ignored

use std::collections::BTreeSet;
use std::time::Duration;

use super::harness::{
    Host, commands, conf_sum, dnf_says, mutating, program, systemctl_verb, web_events,
};
use crate::util::Run;

/// The host file of every scenario; hosts are booted as `web1`.
const HOST_FILE: &str = "hosts/web1.toml";
/// The file dl-web reads, managed by the config and named in its restart_on.
const CONF: &str = "/etc/dl-web/dl-web.conf";
/// What driftless writes for the `driftless-test` [[repo]].
const REPO_FILE: &str = "/etc/yum.repos.d/driftless-test.repo";
const CONF_V1: &str = "greeting = hello\n";
const CONF_V2: &str = "greeting = bonjour\n";
const HELLO: &str = "dl-hello.service";
const WEB: &str = "dl-web.service";

/// The desired state of web1: the test repository, dl-hello pinned to
/// `hello`, dl-web and dl-tool, dl-web's config file with `conf`, both
/// services enabled and running, dl-web restarted when its file changes;
/// plus `extra` packages.
fn web1(hello: &str, conf: &str, extra: &[&str]) -> String {
    let mut text = format!(
        r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-hello"
version = "{hello}"

[[package]]
name = "dl-web"

[[package]]
name = "dl-tool"
"#
    );
    for name in extra {
        text.push_str(&format!("\n[[package]]\nname = \"{name}\"\n"));
    }
    // Debug quoting of these plain ASCII contents is a valid TOML string.
    text.push_str(&format!(
        r#"
[[file]]
path = "{CONF}"
content = {conf:?}

[[service]]
name = "dl-hello"
enabled = true
state = "running"

[[service]]
name = "dl-web"
enabled = true
state = "running"
restart_on = ["file:{CONF}"]
"#
    ));
    text
}

/// A host converged to `web1("1.0-1", CONF_V1, [])`, with dl-web's first
/// start recorded, so later scenarios start from the steady state.
fn converged_host() -> Host {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V1, &[]))]);
    host.converge().expect_code(2);
    wait_for_web_starts(&host, 1);
    host
}

/// Waits until dl-web has recorded `starts` starts, then a little longer so
/// that an unwanted extra start or reload would show too; returns the events.
/// Needed because systemctl returns once the process is forked, before the
/// script writes its line.
fn wait_for_web_starts(host: &Host, starts: usize) -> Vec<(String, String)> {
    host.wait_until(&format!("dl-web records {starts} start(s)"), 10, || {
        web_events(host)
            .iter()
            .filter(|(k, _)| k == "start")
            .count()
            >= starts
    });
    std::thread::sleep(Duration::from_millis(300));
    web_events(host)
}

/// The `kind:key` of each change in `plan --json` output.
fn change_keys(plan: &serde_json::Value) -> BTreeSet<String> {
    plan["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes array in {plan}"))
        .iter()
        .map(|c| {
            let r = &c["resource"];
            format!(
                "{}:{}",
                r["kind"].as_str().expect("resource.kind"),
                r["key"].as_str().expect("resource.key")
            )
        })
        .collect()
}

/// The systemctl commands among `cmds` that act on `unit`.
fn on_unit<'a>(cmds: &'a [String], unit: &str) -> Vec<&'a String> {
    let bare = unit.trim_end_matches(".service");
    cmds.iter()
        .filter(|c| program(c) == "systemctl")
        .filter(|c| c.split_whitespace().any(|w| w == unit || w == bare))
        .collect()
}

/// Asserts that both services run and are enabled.
#[track_caller]
fn assert_services_up(host: &Host) {
    for unit in [HELLO, WEB] {
        assert!(
            host.is_active(unit),
            "{unit} is not active:\n{}",
            host.unit_status(unit)
        );
        assert!(
            host.is_enabled(unit),
            "{unit} is not enabled:\n{}",
            host.unit_status(unit)
        );
    }
}

/// Asserts that `run` logged no mutating systemctl command at all.
#[track_caller]
fn assert_no_systemctl_change(run: &Run) {
    let changed: Vec<_> = mutating(&commands(run))
        .into_iter()
        .filter(|c| program(c) == "systemctl")
        .collect();
    assert!(
        changed.is_empty(),
        "systemctl changed something: {changed:?}"
    );
}

/// The command-log reader itself: without it the no-op assertions below
/// could pass by reading nothing. Needs no host.
#[test]
fn command_log_is_parsed_and_classified() {
    let run = Run {
        code: 0,
        stdout: String::new(),
        stderr: [
            "2026-01-01T00:00:00Z DEBUG converge: running argv=\"rpm -q --qf %{NAME} dl-hello\"",
            "2026-01-01T00:00:00Z DEBUG running argv=\"/usr/bin/systemctl show -p MainPID dl-web.service\"",
            "\u{1b}[2m2026\u{1b}[0m DEBUG running \u{1b}[3margv\u{1b}[0m=\"systemctl is-enabled dl-hello.service\"",
            "DEBUG running argv=\"dnf -q repoquery dl-hello\"",
            "DEBUG running argv=\"dnf -y install dl-hello-1.0-1 \\\"quoted\\\"\"",
            "DEBUG running argv=\"systemctl --no-ask-password try-restart dl-web.service\"",
            "DEBUG running argv=\"systemctl daemon-reload\"",
            "DEBUG running argv=\"rpm -e dl-tool\"",
            "DEBUG running argv=dnf history list",
            "DEBUG running argv=dnf --version",
            "DEBUG running argv=dnf history undo 3",
            "INFO something else entirely",
        ]
        .join("\n"),
    };
    let cmds = commands(&run);
    assert_eq!(cmds.len(), 11, "{cmds:#?}");
    assert_eq!(cmds[0], "rpm -q --qf %{NAME} dl-hello");
    assert_eq!(cmds[4], "dnf -y install dl-hello-1.0-1 \"quoted\"");
    assert_eq!(
        mutating(&cmds),
        [
            "dnf -y install dl-hello-1.0-1 \"quoted\"",
            "systemctl --no-ask-password try-restart dl-web.service",
            "systemctl daemon-reload",
            "rpm -e dl-tool",
            "dnf history undo 3",
        ]
    );
    // Unquoted (Display) values are read to the end of the line.
    assert_eq!(cmds[8], "dnf history list");
    assert_eq!(systemctl_verb(&cmds[5]), Some("try-restart"));
    assert_eq!(on_unit(&cmds, WEB).len(), 2);
}

/// Scenario 0: the harness itself: the host boots with its own name, driftless
/// runs inside it and converges a file-only config into the host's root (not
/// this machine's), and the rpm/dnf/systemd helpers read real state.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn harness_runs_driftless_inside_the_host() {
    let host = Host::boot("web1");
    let hostname = host.exec(&["hostname"]);
    hostname.expect_code(0);
    assert_eq!(hostname.stdout.trim(), "web1");
    assert_eq!(
        host.read(REPO_FILE),
        None,
        "the harness must leave the .repo file to driftless"
    );

    host.write_config(&[(
        HOST_FILE,
        "[[file]]\npath = \"/etc/driftless-smoke\"\ncontent = \"inside\\n\"\n",
    )]);
    host.converge().expect_code(2);
    assert_eq!(
        host.read("/etc/driftless-smoke").as_deref(),
        Some("inside\n")
    );
    assert!(
        !std::path::Path::new("/etc/driftless-smoke").exists(),
        "driftless wrote to the test machine, not the host"
    );
    let identity = host.identity("/etc/driftless-smoke");
    host.converge().expect_code(0);
    assert_eq!(host.identity("/etc/driftless-smoke"), identity);

    // The helpers, against dnf and systemd driven by hand.
    assert_eq!(host.rpm_q("dl-hello"), None);
    assert_eq!(host.dnf_history_count(), 0);
    host.exec(&[
        "dnf",
        "-y",
        "--repofrompath=by-hand,file:///srv/repo",
        "--setopt=by-hand.gpgcheck=0",
        "install",
        "dl-hello-1.0-1",
    ])
    .expect_code(0);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));
    assert_eq!(host.dnf_history_count(), 1);
    assert!(
        !host.is_active(HELLO) && !host.is_enabled(HELLO),
        "preset must not enable it"
    );
    assert_eq!(host.main_pid(HELLO), 0);
    host.exec(&["systemctl", "enable", "--now", HELLO])
        .expect_code(0);
    assert!(host.is_active(HELLO) && host.is_enabled(HELLO));
    assert_ne!(host.main_pid(HELLO), 0);
}

/// Scenario 1: one converge takes an empty host to the whole desired state:
/// repo file, three packages (one pinned) in one dnf transaction, the file,
/// both services enabled and running, started once with the managed file.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn from_empty_host_one_converge_applies_everything() {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V1, &[]))]);
    let history = host.dnf_history_count();

    let run = host.converge();
    run.expect_code(2);

    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));
    assert_eq!(host.rpm_q("dl-web").as_deref(), Some("1.0-1"));
    assert_eq!(host.rpm_q("dl-tool").as_deref(), Some("1.0-1"));
    assert_services_up(&host);
    assert_eq!(host.read(CONF).as_deref(), Some(CONF_V1));
    let repo = host.read(REPO_FILE).expect("driftless wrote no .repo file");
    assert!(
        repo.contains("[driftless-test]") && repo.contains("file:///srv/repo"),
        "{REPO_FILE}:\n{repo}"
    );
    assert_eq!(
        host.dnf_history_count(),
        history + 1,
        "not exactly one dnf transaction"
    );

    // Packages before services: nothing is enabled or started before dnf
    // finished.
    let changed = mutating(&commands(&run));
    let last_dnf = changed
        .iter()
        .rposition(|c| program(c) == "dnf")
        .unwrap_or_else(|| panic!("no dnf command logged: {changed:#?}\n{}", run.stderr));
    let first_systemctl = changed
        .iter()
        .position(|c| program(c) == "systemctl")
        .unwrap_or_else(|| panic!("no systemctl command logged: {changed:#?}"));
    assert!(
        last_dnf < first_systemctl,
        "a service was touched before dnf: {changed:#?}"
    );

    // dl-web is being started, so its restart_on must not restart it too;
    // and it started with the managed file already in place.
    let restarts: Vec<_> = on_unit(&changed, WEB)
        .into_iter()
        .filter(|c| {
            matches!(
                systemctl_verb(c),
                Some("restart" | "try-restart" | "reload")
            )
        })
        .collect();
    assert!(
        restarts.is_empty(),
        "dl-web started and also restarted: {restarts:?}"
    );
    let events = wait_for_web_starts(&host, 1);
    assert_eq!(events, [("start".to_owned(), conf_sum(CONF_V1))]);
}

/// Scenario 2: a second converge of an unchanged state runs only queries: no
/// dnf, no mutating systemctl, no new transaction, no file rewritten, no
/// service restarted; plan agrees that all is in sync.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn second_converge_is_a_no_op() {
    let host = converged_host();
    let files_before = [CONF, REPO_FILE].map(|p| host.identity(p));
    let pids_before = [HELLO, WEB].map(|u| host.main_pid(u));
    let history = host.dnf_history_count();

    let run = host.converge();
    run.expect_code(0);

    let cmds = commands(&run);
    // The queries must be there, or the checks below would prove nothing
    // (the units are read over D-Bus: no process, a debug line each).
    assert!(
        cmds.iter().any(|c| program(c) == "rpm") && run.stderr.contains("unit observed"),
        "no rpm query or unit observation logged (is DRIFTLESS_LOG=debug honoured?): {cmds:#?}\n{}",
        run.stderr
    );
    let dnf: Vec<_> = cmds.iter().filter(|c| program(c) == "dnf").collect();
    assert!(dnf.is_empty(), "dnf ran on a converged host: {dnf:?}");
    assert_eq!(
        mutating(&cmds),
        Vec::<String>::new(),
        "a no-op converge changed something"
    );
    assert_eq!(host.dnf_history_count(), history);
    assert_eq!([CONF, REPO_FILE].map(|p| host.identity(p)), files_before);
    assert_eq!([HELLO, WEB].map(|u| host.main_pid(u)), pids_before);
    assert_eq!(
        web_events(&host).len(),
        1,
        "dl-web was restarted or reloaded"
    );

    let (plan, json) = host.plan_json();
    plan.expect_code(0);
    assert_eq!(change_keys(&json), BTreeSet::new());
}

/// Regression (issue 21): `[[package]] name = "module-init-tools"` with kmod
/// installed (kmod provides it) failed with "still differs: not
/// installed". A name an installed package provides counts as installed,
/// as dnf, Ansible and Puppet count it: the first converge installs its
/// provider, the next is a no-op.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn a_name_an_installed_package_provides_counts_as_installed() {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V1, &["dl-tool-virtual"]))]);
    host.converge().expect_code(2);
    assert!(host.rpm_q("dl-tool").is_some());
    assert_eq!(
        host.rpm_q("dl-tool-virtual"),
        None,
        "no package is called so"
    );
    let history = host.dnf_history_count();
    let again = host.converge();
    again.expect_code(0);
    assert_eq!(host.dnf_history_count(), history, "dnf ran again");
    let (plan, json) = host.plan_json();
    plan.expect_code(0);
    assert_eq!(change_keys(&json), BTreeSet::new());
}

/// Scenario 3: moving the pin upgrades, moving it back downgrades: each one dnf
/// transaction, and the pinned state is then stable.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn pinned_version_upgrades_and_downgrades_in_one_transaction() {
    let host = converged_host();
    for version in ["2.0-1", "1.0-1"] {
        let history = host.dnf_history_count();
        host.write_config(&[(HOST_FILE, &web1(version, CONF_V1, &[]))]);
        host.converge().expect_code(2);
        assert_eq!(host.rpm_q("dl-hello").as_deref(), Some(version));
        assert_eq!(
            host.dnf_history_count(),
            history + 1,
            "to {version}: not exactly one transaction"
        );
        assert_services_up(&host);
        // Still at the pin: nothing left to do.
        host.converge().expect_code(0);
        assert_eq!(host.dnf_history_count(), history + 1);
    }
}

/// Scenario 4: a changed file named in restart_on restarts that service, once,
/// and no other; the restarted service reads the new content.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn config_change_restarts_exactly_that_service_once() {
    let host = converged_host();
    let web_pid = host.main_pid(WEB);
    let hello_pid = host.main_pid(HELLO);
    let events_before = web_events(&host).len();

    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V2, &[]))]);
    let run = host.converge();
    run.expect_code(2);

    assert_eq!(host.read(CONF).as_deref(), Some(CONF_V2));
    assert!(host.is_active(WEB), "{}", host.unit_status(WEB));
    let new_pid = host.main_pid(WEB);
    assert!(
        new_pid != web_pid && new_pid != 0,
        "dl-web was not restarted (MainPID {web_pid} -> {new_pid})"
    );
    assert_eq!(host.main_pid(HELLO), hello_pid, "dl-hello was restarted");
    let events = wait_for_web_starts(&host, 2);
    assert_eq!(
        events[events_before..],
        [("start".to_owned(), conf_sum(CONF_V2))],
        "expected exactly one restart, reading the new file"
    );

    let changed = mutating(&commands(&run));
    let restarts: Vec<_> = on_unit(&changed, WEB)
        .into_iter()
        .filter(|c| matches!(systemctl_verb(c), Some("restart" | "try-restart")))
        .collect();
    assert_eq!(restarts.len(), 1, "restarts of dl-web: {changed:#?}");
    assert_eq!(
        on_unit(&changed, HELLO),
        Vec::<&String>::new(),
        "dl-hello was touched"
    );
    assert!(
        !changed.iter().any(|c| program(c) == "dnf"),
        "dnf ran: {changed:#?}"
    );
}

/// Scenario 5: drift made by hand (a stopped service, a removed package, an
/// edited file) is reported by plan and healed by one converge, which also
/// restarts the service whose file it rewrote.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn drift_is_reported_and_healed() {
    let host = converged_host();
    host.exec(&["systemctl", "stop", HELLO]).expect_code(0);
    host.exec(&["rpm", "-e", "dl-tool"]).expect_code(0);
    std::fs::write(host.path(CONF), "greeting = edited by hand\n").expect("edit the conf");
    assert_eq!(host.rpm_q("dl-tool"), None);
    let web_pid = host.main_pid(WEB);
    let events_before = web_events(&host).len();

    let (plan, json) = host.plan_json();
    plan.expect_code(2);
    let keys = change_keys(&json);
    let drifted: BTreeSet<String> = [
        "package:dl-tool",
        "service:dl-hello.service",
        "file:/etc/dl-web/dl-web.conf",
    ]
    .map(String::from)
    .into();
    assert!(keys.is_superset(&drifted), "plan misses drift: {keys:?}");
    // dl-web may be listed for its restart; nothing else drifted.
    let allowed: BTreeSet<String> = drifted
        .iter()
        .cloned()
        .chain(["service:dl-web.service".to_owned()])
        .collect();
    assert!(
        keys.is_subset(&allowed),
        "plan lists more than the drift: {keys:?}"
    );

    host.converge().expect_code(2);
    assert_eq!(host.rpm_q("dl-tool").as_deref(), Some("1.0-1"));
    assert_services_up(&host);
    assert_eq!(host.read(CONF).as_deref(), Some(CONF_V1));
    assert_ne!(
        host.main_pid(WEB),
        web_pid,
        "dl-web not restarted after its file was healed"
    );
    let events = wait_for_web_starts(&host, 2);
    assert_eq!(
        events[events_before..],
        [("start".to_owned(), conf_sum(CONF_V1))]
    );

    let (plan, json) = host.plan_json();
    plan.expect_code(0);
    assert_eq!(change_keys(&json), BTreeSet::new());
}

/// Scenario 6: an unknown package fails the dnf step: exit 4 with dnf's own
/// message, and nothing after it ran (the file keeps its old content, dl-web is
/// not restarted, no transaction recorded).
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn unknown_package_fails_with_dnfs_message_and_nothing_after_runs() {
    let host = converged_host();
    let conf = host.identity(CONF);
    let repo = host.identity(REPO_FILE);
    let web_pid = host.main_pid(WEB);
    let history = host.dnf_history_count();

    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V2, &["dl-nonexist"]))]);
    let run = host.converge();
    run.expect_code(4);

    assert!(
        run.stderr.contains(&dnf_says::no_match("dl-nonexist")),
        "dnf's message is missing:\n{}",
        run.stderr
    );
    assert_eq!(
        host.read(CONF).as_deref(),
        Some(CONF_V1),
        "the file was written after the failed dnf step:\n{}",
        run.stderr
    );
    assert_eq!(
        host.identity(CONF),
        conf,
        "the file was rewritten (restored?) though this converge never changed it:\n{}",
        run.stderr
    );
    assert_eq!(
        host.identity(REPO_FILE),
        repo,
        "the unchanged .repo file was rewritten"
    );
    assert_eq!(
        host.main_pid(WEB),
        web_pid,
        "dl-web was restarted:\n{}",
        run.stderr
    );
    assert_no_systemctl_change(&run);
    assert_eq!(host.dnf_history_count(), history);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));
    assert_eq!(host.rpm_q("dl-tool").as_deref(), Some("1.0-1"));
    assert_services_up(&host);
}

/// Scenario 7: a package whose %pre fails fails the converge the same way: exit
/// 4, rpm's scriptlet error, the package absent, nothing after it ran.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn failing_scriptlet_fails_the_converge() {
    let host = converged_host();
    let conf = host.identity(CONF);
    let web_pid = host.main_pid(WEB);

    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V2, &["dl-failpre"]))]);
    let run = host.converge();
    run.expect_code(4);

    assert!(
        run.stderr.contains(dnf_says::pre_scriptlet_failed()),
        "the scriptlet error is missing:\n{}",
        run.stderr
    );
    // A scriptlet that fails is the desired state's fault: quarantined.
    assert!(
        host.quarantined().is_some(),
        "a failing scriptlet was not quarantined"
    );
    assert_eq!(host.rpm_q("dl-failpre"), None);
    assert_eq!(
        host.read(CONF).as_deref(),
        Some(CONF_V1),
        "the file was written after the failed dnf step:\n{}",
        run.stderr
    );
    assert_eq!(
        host.identity(CONF),
        conf,
        "the file was rewritten (restored?) though this converge never changed it:\n{}",
        run.stderr
    );
    assert_eq!(
        host.main_pid(WEB),
        web_pid,
        "dl-web was restarted:\n{}",
        run.stderr
    );
    assert_no_systemctl_change(&run);
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"));
    assert_services_up(&host);
}

/// Scenario 8: what was written before a failed dnf step is restored: on an
/// empty host the .repo file driftless wrote for the transaction is gone again,
/// and neither packages nor later files are there.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn failed_transaction_restores_the_repo_file() {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, &web1("1.0-1", CONF_V1, &["dl-nonexist"]))]);

    let run = host.converge();
    run.expect_code(4);

    assert!(
        run.stderr.contains(&dnf_says::no_match("dl-nonexist")),
        "{}",
        run.stderr
    );
    let dnf_ran = commands(&run).iter().any(|c| program(c) == "dnf");
    assert!(
        dnf_ran,
        "dnf never ran, so the restore was not exercised:\n{}",
        run.stderr
    );
    assert_eq!(
        host.read(REPO_FILE),
        None,
        "the .repo file was not restored (removed)"
    );
    assert_eq!(host.rpm_q("dl-hello"), None);
    assert_eq!(host.rpm_q("dl-web"), None);
    assert_eq!(
        host.read(CONF),
        None,
        "a file after the failed dnf step was written"
    );
    assert!(!host.is_active(HELLO));
}

/// `state = "latest"`: one metadata query finds the newest build, which is
/// installed; once it is installed, a converge asks the repositories once
/// (read-only) and runs no transaction.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn latest_installs_the_newest_build_with_one_metadata_query() {
    let host = Host::boot("web1");
    // As on a minimal host: no repository directory at all. driftless
    // creates it and writes the repo file before asking for `latest`.
    host.exec(&["rm", "-rf", "/etc/yum.repos.d"]).expect_code(0);
    let config = "[[repo]]\nname = \"driftless-test\"\nbaseurl = \"file:///srv/repo\"\ngpgcheck = false\n\n[[package]]\nname = \"dl-tool\"\nstate = \"latest\"\n";
    host.write_config(&[(HOST_FILE, config)]);
    let first = host.converge();
    first.expect_code(2);
    assert_eq!(host.rpm_q("dl-tool").as_deref(), Some("1.0-1"));
    let history = host.dnf_history_count();

    let again = host.converge();
    again.expect_code(0);
    let dnf: Vec<String> = commands(&again)
        .into_iter()
        .filter(|c| program(c) == "dnf")
        .collect();
    assert_eq!(dnf.len(), 1, "expected one metadata query: {dnf:?}");
    assert!(dnf[0].contains("repoquery"), "{dnf:?}");
    assert_eq!(mutating(&commands(&again)), Vec::<String>::new());
    assert_eq!(host.dnf_history_count(), history);
}

/// A file owned by a user that a package in the same converge creates:
/// planned before the user exists, owned by it after one converge.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn a_file_can_be_owned_by_a_user_its_package_creates() {
    let host = Host::boot("web1");
    let config = "[[repo]]\nname = \"driftless-test\"\nbaseurl = \"file:///srv/repo\"\ngpgcheck = false\n\n[[package]]\nname = \"dl-owner\"\n\n[[file]]\npath = \"/etc/dl-owner.conf\"\ncontent = \"owned\\n\"\nowner = \"dlowner\"\ngroup = \"dlowner\"\nmode = \"0640\"\n";
    host.write_config(&[(HOST_FILE, config)]);
    let (plan, _) = host.plan_json();
    plan.expect_code(2);
    host.converge().expect_code(2);
    let stat = host.exec(&["stat", "-c", "%U:%G %a", "/etc/dl-owner.conf"]);
    stat.expect_code(0);
    assert_eq!(stat.stdout.trim(), "dlowner:dlowner 640");
    host.converge().expect_code(0);
}

/// A missing version, a conflict and an unreachable repository each fail the
/// converge with dnf's own words, and leave the packages as they were.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn other_dnf_failures_carry_dnfs_message() {
    let host = Host::boot("web1");
    let repo =
        "[[repo]]\nname = \"driftless-test\"\nbaseurl = \"file:///srv/repo\"\ngpgcheck = false\n";
    host.write_config(&[(
        HOST_FILE,
        &format!("{repo}\n[[package]]\nname = \"dl-conflict-a\"\n"),
    )]);
    host.converge().expect_code(2);
    // (what is declared, what dnf says, whether the desired state is to
    // blame and so quarantined)
    let cases = [
        (
            "[[package]]\nname = \"dl-hello\"\nversion = \"9.9-1\"\n",
            dnf_says::no_match("dl-hello-9.9-1"),
            true,
        ),
        (
            "[[package]]\nname = \"dl-conflict-b\"\n",
            "conflicts with dl-conflict-a".to_owned(),
            true,
        ),
        (
            "[[repo]]\nname = \"gone\"\nbaseurl = \"file:///srv/no-such-repo\"\ngpgcheck = false\n\n[[package]]\nname = \"dl-tool\"\n",
            dnf_says::repo_unreachable("gone"),
            false,
        ),
    ];
    for (extra, says, blamed) in cases {
        host.driftless(&["retry"]).expect_code(0);
        host.write_config(&[(
            HOST_FILE,
            &format!("{repo}\n[[package]]\nname = \"dl-conflict-a\"\n\n{extra}"),
        )]);
        let run = host.converge();
        run.expect_code(4);
        assert!(
            run.stderr.contains(&says),
            "expected dnf to say {says:?}:\n{}",
            run.stderr
        );
        assert_eq!(host.rpm_q("dl-conflict-a").as_deref(), Some("1.0-1"));
        for absent in ["dl-hello", "dl-conflict-b", "dl-tool"] {
            assert_eq!(host.rpm_q(absent), None, "{absent} was installed");
        }
        assert_eq!(
            host.quarantined().is_some(),
            blamed,
            "{says}: quarantined should be {blamed}"
        );
    }
}
