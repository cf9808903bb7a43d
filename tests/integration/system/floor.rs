//! The no-op at its floor (issue 27): while the rpm database keeps its
//! identity the declared packages are not queried again, and whatever
//! changes the database (rpm or dnf, by hand, installing, removing,
//! upgrading, a rebuild in place) is seen by the next converge.

use std::time::Duration;

use super::harness::{Host, commands, program};
use crate::util::Run;

const HOST_FILE: &str = "hosts/web1.toml";

const CONFIG: &str = r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-hello"
version = "1.0-1"

[[package]]
name = "dl-tool"
"#;

/// How many `rpm` processes `run` started.
fn rpm_runs(run: &Run) -> usize {
    commands(run).iter().filter(|c| program(c) == "rpm").count()
}

/// Waits out the racily-clean window of the rpm database's stat (a change
/// within two seconds of a look is not trusted), then converges twice: the
/// first records the database's identity, the second is the no-op that
/// must not query.
fn settle(host: &Host) {
    std::thread::sleep(Duration::from_secs(3));
    host.converge().expect_code(0);
    let quiet = host.converge();
    quiet.expect_code(0);
    assert_eq!(
        rpm_runs(&quiet),
        0,
        "an unchanged rpm database was queried: {:?}",
        commands(&quiet)
    );
}

/// A change made behind driftless's back is seen: the converge queries the
/// database again and puts the declared state back (exit 2).
#[track_caller]
fn seen(host: &Host, change: &str) {
    host.exec(&["sh", "-c", change]).expect_code(0);
    let run = host.converge();
    run.expect_code(2);
    assert!(rpm_runs(&run) > 0, "{change}: not queried again");
    assert!(host.rpm_q("dl-tool").is_some(), "{change}");
    assert_eq!(host.rpm_q("dl-hello").as_deref(), Some("1.0-1"), "{change}");
    settle(host);
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn packages_are_not_queried_while_the_rpm_database_is_unchanged_and_every_change_is_seen()
 {
    let host = Host::boot("web1");
    host.write_config(&[(HOST_FILE, CONFIG)]);
    host.converge().expect_code(2);
    settle(&host);

    seen(&host, "rpm -e dl-tool");
    seen(&host, "dnf -y -q remove dl-tool");
    seen(&host, "rpm -U /srv/repo/dl-hello-2.0*.rpm");
    seen(&host, "dnf -y -q upgrade dl-hello");

    // A database rebuilt in place: nothing installed changed, but the
    // files did, so it is asked again (and finds the host in sync). The
    // hardest case: new files with the old size and mtime (`cp -p`), as
    // `rpmdb --rebuilddb` would leave them. (rpmdb itself cannot rename
    // the database directory on the sandbox's overlay root: EXDEV.)
    host.exec(&[
        "sh",
        "-c",
        "cd /var/lib/rpm && cp -p rpmdb.sqlite rebuilt && mv rebuilt rpmdb.sqlite",
    ])
    .expect_code(0);
    let run = host.converge();
    run.expect_code(0);
    assert!(rpm_runs(&run) > 0, "a rebuilt database was trusted");
    settle(&host);
}

/// A unit that refuses a manual stop (as auditd does).
const REFUSING: &str = "[Unit]\nRefuseManualStop=yes\n[Service]\nExecStart=/bin/sleep infinity\n";
/// A unit to enable and run, to stop, to mask.
const PLAIN: &str =
    "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";

/// The "unit observed" debug lines of a run, without the path they came
/// by (`via=`), sorted.
fn observed_units(run: &Run) -> Vec<String> {
    let mut lines: Vec<String> = run
        .stderr
        .lines()
        .filter(|l| l.contains("unit observed"))
        .map(|l| {
            let at = l.find("unit observed").unwrap_or(0);
            l[at..]
                .split_whitespace()
                .filter(|w| !w.starts_with("via="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
pub(super) fn units_read_over_d_bus_are_what_systemctl_reports_and_a_no_op_runs_no_process() {
    let host = Host::boot("web1");
    for (name, text) in [
        ("dl-run", PLAIN),
        ("dl-off", PLAIN),
        ("dl-masked", PLAIN),
        ("dl-refuse", REFUSING),
    ] {
        std::fs::write(
            host.path(&format!("/usr/lib/systemd/system/{name}.service")),
            text,
        )
        .unwrap();
    }
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "enable", "--now", "dl-run"])
        .expect_code(0);
    host.exec(&["systemctl", "start", "dl-refuse"])
        .expect_code(0);
    host.exec(&["systemctl", "mask", "dl-masked"])
        .expect_code(0);
    // Loaded, active, inactive, masked, static, refusing a stop, not
    // found, and one changed on disk since systemd read it.
    std::fs::write(
        host.path("/usr/lib/systemd/system/dl-run.service"),
        format!("{PLAIN}# changed\n"),
    )
    .unwrap();
    let units = [
        "dl-run",
        "dl-off",
        "dl-masked",
        "dl-refuse",
        "systemd-journald",
        "dl-none",
    ];
    let config: String = units
        .iter()
        .map(|u| format!("[[service]]\nname = '{u}'\n\n"))
        .collect();
    host.write_config(&[(HOST_FILE, &config)]);
    let plan = |via: &str| {
        host.exec(&[
            "env",
            "DRIFTLESS_LOG=debug",
            "NO_COLOR=1",
            &format!("DRIFTLESS_UNITS_VIA={via}"),
            "/usr/local/bin/driftless",
            "plan",
            "--repo",
            "/srv/config",
            "--host",
            "web1",
            "--config",
            "/srv/agent.toml",
        ])
    };
    let (bus, systemctl) = (plan("dbus"), plan("systemctl"));
    assert!(
        bus.stderr.contains("via=\"dbus\"") || bus.stderr.contains("via=dbus"),
        "{}",
        bus.stderr
    );
    assert!(
        commands(&bus).iter().all(|c| program(c) != "systemctl"),
        "{:?}",
        commands(&bus)
    );
    assert!(
        commands(&systemctl)
            .iter()
            .any(|c| program(c) == "systemctl")
    );
    let (a, b) = (observed_units(&bus), observed_units(&systemctl));
    assert_eq!(a.len(), units.len(), "{a:?}");
    assert_eq!(a, b);
    for (unit, want) in [
        ("dl-run.service", "active"),
        ("dl-masked.service", "masked"),
        ("dl-refuse.service", "refuse_manual_stop=true"),
        ("dl-run.service", "need_daemon_reload=true"),
    ] {
        assert!(
            a.iter().any(|l| l.contains(unit) && l.contains(want)),
            "{unit}: {want} in {a:?}"
        );
    }

    // A converge that manages units and packages and finds nothing to do
    // starts no process at all.
    host.write_config(&[(
        HOST_FILE,
        &format!("{CONFIG}\n[[service]]\nname = 'dl-run'\nenabled = true\nstate = 'running'\n"),
    )]);
    host.converge().expect_code(2);
    settle(&host);
    let quiet = host.converge();
    quiet.expect_code(0);
    assert_eq!(
        commands(&quiet),
        Vec::<String>::new(),
        "the no-op started processes"
    );
}
