//! Units as RHEL ships them, on a real host (issue 21): a unit that refuses
//! a manual stop (auditd's `RefuseManualStop=yes`) is refused by the plan
//! unless its own `restart_command` is declared, and is restarted with it;
//! a rollback leaves alone the units it did not concern, so such a unit
//! never turns an exit 4 into an exit 5; a unit that fails to start puts
//! its own last words into the error and the history; an image-mode host
//! refuses package changes and manages the rest.

use super::harness::Host;

const HOST_FILE: &str = "hosts/web1.toml";
const REFUSE: &str = "dl-refuse.service";
const STARTS: &str = "/var/log/dl-refuse.starts";

/// A unit that refuses a manual stop and is restarted by systemd when its
/// process dies, recording each start.
const REFUSE_UNIT: &str = "[Unit]\nDescription=refuses a manual stop, as auditd\nRefuseManualStop=yes\n\n\
     [Service]\nExecStart=/bin/sh -c 'echo start >> /var/log/dl-refuse.starts; exec sleep infinity'\n\
     Restart=always\nRestartSec=100ms\n\n[Install]\nWantedBy=multi-user.target\n";

/// A unit whose program refuses its configuration, as sshd does.
const BAD_UNIT: &str = "[Unit]\nDescription=fails to start\n\n[Service]\nExecStart=/bin/sh -c 'echo \"Bad configuration option: Frobnicate\" >&2; exit 1'\n";

fn starts(host: &Host) -> usize {
    host.read(STARTS).map_or(0, |t| t.lines().count())
}

fn config(restart_command: &str, conf: &str, extra: &str) -> String {
    format!(
        r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[file]]
path = "/etc/dl-refuse.conf"
content = "{conf}\n"

[[service]]
name = "{REFUSE}"
state = "running"
restart_on = ["file:/etc/dl-refuse.conf"]
{restart_command}
{extra}"#
    )
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn units_that_refuse_manual_stop_and_units_a_rollback_did_not_touch() {
    let host = Host::boot("web1");
    std::fs::write(
        host.path(&format!("/etc/systemd/system/{REFUSE}")),
        REFUSE_UNIT,
    )
    .unwrap();
    std::fs::write(host.path("/etc/systemd/system/dl-bad.service"), BAD_UNIT).unwrap();
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "start", REFUSE]).expect_code(0);
    host.wait_until("dl-refuse to start", 10, || starts(&host) == 1);

    // restart_on without a way to restart it: refused before any change.
    host.write_config(&[(HOST_FILE, &config("", "v1", ""))]);
    let refused = host.converge();
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("refuses a manual restart (RefuseManualStop=yes)")
            && refused.stderr.contains("restart_command"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        host.read("/etc/dl-refuse.conf"),
        None,
        "a refused plan changed the host"
    );

    // With its own restart command it is restarted on its file's change.
    let kill =
        r#"restart_command = ["/bin/systemctl", "kill", "--signal=TERM", "dl-refuse.service"]"#;
    host.write_config(&[(HOST_FILE, &config(kill, "v1", ""))]);
    host.converge().expect_code(2);
    host.wait_until("dl-refuse to be restarted by its command", 10, || {
        starts(&host) == 2
    });
    host.converge().expect_code(0);

    // A converge that changes packages and then fails: the rollback puts
    // the packages back and leaves the unit it did not concern alone (a
    // blanket restart of every declared unit was refused by this one and
    // turned exit 4 into exit 5).
    host.write_config(&[(
        HOST_FILE,
        &config(
            kill,
            "v1",
            "[[package]]\nname = \"dl-tool\"\n\n[[check]]\nname = 'broken'\ncommand = ['/bin/false']\nretries = 0\n",
        ),
    )]);
    let failed = host.converge();
    failed.expect_code(4);
    assert_eq!(
        host.rpm_q("dl-tool"),
        None,
        "the package set was not restored"
    );
    assert!(host.is_active(REFUSE));
    assert_eq!(
        starts(&host),
        2,
        "the rollback restarted a unit it did not concern"
    );

    // A unit that fails to start: its own words are in the error, and in
    // the history.
    host.write_config(&[(
        HOST_FILE,
        &format!(
            "{}\n[[service]]\nname = \"dl-bad.service\"\nstate = \"running\"\n",
            config(kill, "v1", "")
        ),
    )]);
    let bad = host.driftless(&[
        "converge",
        "--now",
        "--repo",
        super::harness::CONFIG_DIR,
        "--host",
        "web1",
        "--json",
    ]);
    bad.expect_code(4);
    assert!(
        bad.stdout.contains("Bad configuration option: Frobnicate"),
        "{}",
        bad.stdout
    );
    let history = host.driftless(&["history", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let last = doc["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Bad configuration option: Frobnicate")),
        "{last}"
    );

    // An image-mode host (bootc: /run/ostree-booted, /usr read-only):
    // package changes are refused before any change, naming bootc; files
    // and services are still managed.
    host.exec(&["touch", "/run/ostree-booted"]).expect_code(0);
    host.exec(&["mount", "--bind", "/usr", "/usr"])
        .expect_code(0);
    host.exec(&["mount", "-o", "remount,ro,bind", "/usr"])
        .expect_code(0);
    host.write_config(&[(
        HOST_FILE,
        &config(kill, "v2", "[[package]]\nname = \"dl-tool\"\n"),
    )]);
    let image = host.converge();
    image.expect_code(1);
    assert!(
        image.stderr.contains("image-mode host") && image.stderr.contains("bootc"),
        "{}",
        image.stderr
    );
    assert_eq!(host.read("/etc/dl-refuse.conf").as_deref(), Some("v1\n"));
    host.write_config(&[(HOST_FILE, &config(kill, "v2", ""))]);
    host.converge().expect_code(2);
    assert_eq!(host.read("/etc/dl-refuse.conf").as_deref(), Some("v2\n"));
}
