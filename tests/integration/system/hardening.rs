//! The kinds of a hardening baseline on a real host: a kernel module
//! disabled in /etc/modprobe.d, as modprobe itself reads it (rolled back
//! with a failed converge, pruned when dropped); a drop-in that changes a
//! packaged unit, reloaded and restarted on, and forgotten when dropped.

use super::harness::Host;

const HOST_FILE: &str = "hosts/web1.toml";
const CONF: &str = "/etc/modprobe.d/cramfs.conf";

/// modprobe's view of its configuration (no module is loaded: the sandbox
/// cannot, and reading the files is what the kind changes).
fn modprobe_config(host: &Host) -> String {
    let run = host.exec(&["sh", "-c", "modprobe --showconfig 2>/dev/null"]);
    run.stdout
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_disabled_kernel_module_is_what_modprobe_reads_and_goes_back_with_a_rollback() {
    let host = Host::boot("web1");
    host.write_config(&[(
        HOST_FILE,
        "[[kernel_module]]\nname = 'cramfs'\nstate = 'disabled'\n",
    )]);
    host.converge().expect_code(2);
    let config = modprobe_config(&host);
    assert!(
        config.contains("blacklist cramfs") && config.contains("install cramfs /bin/false"),
        "{config}"
    );
    host.converge().expect_code(0);

    // A converge that fails its check puts the old file back.
    host.write_config(&[(
        HOST_FILE,
        "[[kernel_module]]\nname = 'cramfs'\nstate = 'blacklisted'\n\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
    )]);
    host.converge().expect_code(4);
    assert!(modprobe_config(&host).contains("install cramfs /bin/false"));

    // Dropped from the repo: driftless made the file, so it goes.
    host.write_config(&[(HOST_FILE, "")]);
    host.converge().expect_code(2);
    assert_eq!(host.read(CONF), None);
    assert!(!modprobe_config(&host).contains("cramfs"));
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_dropin_changes_a_packaged_unit_and_restarts_it() {
    let host = Host::boot("web1");
    // Without `extra`, the service names no drop-in.
    let with_dropin = |extra: &str| {
        let restart = if extra.is_empty() {
            ""
        } else {
            "restart_on = [\"dropin:dl-web/10-env\"]\n"
        };
        format!(
            r#"[[repo]]
name = "driftless-test"
baseurl = "file:///srv/repo"
gpgcheck = false

[[package]]
name = "dl-web"

[[service]]
name = "dl-web"
enabled = true
state = "running"
{restart}{extra}"#
        )
    };
    host.write_config(&[(HOST_FILE, &with_dropin(""))]);
    host.converge().expect_code(2);
    let starts = || {
        super::harness::web_events(&host)
            .iter()
            .filter(|(kind, _)| kind == "start")
            .count()
    };
    let env = || {
        host.exec(&["systemctl", "show", "-p", "Environment", "dl-web.service"])
            .stdout
    };
    assert!(!env().contains("DL_GREETING"));
    let before = starts();
    let dropin = "\n[[dropin]]\nunit = \"dl-web\"\nname = \"10-env\"\ncontent = \"[Service]\\nEnvironment=DL_GREETING=hardened\\n\"\n";
    host.write_config(&[(HOST_FILE, &with_dropin(dropin))]);
    host.converge().expect_code(2);
    assert!(env().contains("DL_GREETING=hardened"), "{}", env());
    assert_eq!(starts(), before + 1, "restarted on its drop-in");
    host.converge().expect_code(0);
    assert_eq!(starts(), before + 1);
    // Dropped: the file goes, systemd reloads and forgets it.
    host.write_config(&[(HOST_FILE, &with_dropin(""))]);
    host.converge().expect_code(2);
    assert_eq!(
        host.read("/etc/systemd/system/dl-web.service.d/10-env.conf"),
        None
    );
    assert!(!env().contains("DL_GREETING"), "{}", env());
}

/// A vendor unit (under /usr/lib, as a package installs it: a unit file in
/// /etc cannot be masked), enabled and running.
const MASK_UNIT: &str = "[Unit]\nDescription=masked by the hardening baseline\n\n\
     [Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n";

fn unit_file_state(host: &Host, unit: &str) -> String {
    host.exec(&["systemctl", "is-enabled", unit])
        .stdout
        .trim()
        .to_owned()
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_masked_unit_stays_masked_goes_back_with_a_rollback_and_is_unmasked_when_dropped() {
    let host = Host::boot("web1");
    let unit = "dl-mask.service";
    std::fs::write(
        host.path(&format!("/usr/lib/systemd/system/{unit}")),
        MASK_UNIT,
    )
    .unwrap();
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "enable", "--now", unit])
        .expect_code(0);
    let masked = "[[service]]\nname = 'dl-mask'\nstate = 'masked'\n";
    let failing = "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n";

    // A converge that masks it and fails its check: unmasked, enabled and
    // running again.
    host.write_config(&[(HOST_FILE, &format!("{masked}{failing}"))]);
    host.converge().expect_code(4);
    assert_eq!(unit_file_state(&host, unit), "enabled");
    assert!(host.is_active(unit));

    // Planned with its reasons, then masked and stopped.
    host.write_config(&[(HOST_FILE, masked)]);
    let (_, plan) = host.plan_json();
    let reasons = plan.to_string();
    assert!(reasons.contains("\"mask\""), "{reasons}");
    assert!(reasons.contains("enabled, should be masked"), "{reasons}");
    assert!(reasons.contains("running, should be masked"), "{reasons}");
    host.converge().expect_code(2);
    assert_eq!(unit_file_state(&host, unit), "masked");
    assert!(!host.is_active(unit));
    host.exec(&["systemctl", "start", unit]).expect_code(1);
    host.converge().expect_code(0);

    // Unmasked by hand: masked again.
    host.exec(&["systemctl", "unmask", unit]).expect_code(0);
    host.converge().expect_code(2);
    assert_eq!(unit_file_state(&host, unit), "masked");

    // Declared running again with a failing check: unmasked and started,
    // then masked and stopped again by the rollback.
    host.write_config(&[(
        HOST_FILE,
        &format!("[[service]]\nname = 'dl-mask'\nstate = 'running'\n{failing}"),
    )]);
    host.converge().expect_code(4);
    assert_eq!(unit_file_state(&host, unit), "masked");
    assert!(!host.is_active(unit));

    // Dropped: put back as it was before driftless managed it.
    host.write_config(&[(HOST_FILE, "")]);
    host.converge().expect_code(2);
    assert_eq!(unit_file_state(&host, unit), "enabled");
    assert!(host.is_active(unit));
    host.converge().expect_code(0);
}
