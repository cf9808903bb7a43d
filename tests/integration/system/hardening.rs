//! The kinds of a hardening baseline on a real host: a kernel module
//! disabled in /etc/modprobe.d, as modprobe itself reads it (rolled back
//! with a failed converge, pruned when dropped); a drop-in that changes a
//! packaged unit, reloaded and restarted on, and forgotten when dropped; a
//! kernel parameter of the host's own IPC namespace applied live and
//! persisted; an alternative chosen with update-alternatives (each healed,
//! rolled back and pruned).

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

    // Edited by hand: healed.
    std::fs::write(host.path(CONF), "# nothing\n").unwrap();
    host.converge().expect_code(2);
    assert!(modprobe_config(&host).contains("install cramfs /bin/false"));

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
fn a_dropin_changes_a_packaged_unit_is_healed_rolled_back_and_forgotten_when_dropped() {
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

    // Edited by hand: healed, and the unit restarted on it.
    let file = "/etc/systemd/system/dl-web.service.d/10-env.conf";
    std::fs::write(
        host.path(file),
        "[Service]\nEnvironment=DL_GREETING=edited\n",
    )
    .unwrap();
    host.converge().expect_code(2);
    assert!(env().contains("DL_GREETING=hardened"), "{}", env());
    assert_eq!(starts(), before + 2, "restarted on the healed drop-in");

    // Another content with a failing check: the old drop-in is back, and
    // the unit runs with it.
    let other = dropin.replace("hardened", "other");
    host.write_config(&[(
        HOST_FILE,
        &with_dropin(&format!(
            "{other}\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n"
        )),
    )]);
    host.converge().expect_code(4);
    assert!(env().contains("DL_GREETING=hardened"), "{}", env());
    assert!(host.is_active("dl-web.service"));
    // Dropped: the file goes, systemd reloads and forgets it.
    host.write_config(&[(HOST_FILE, &with_dropin(""))]);
    host.converge().expect_code(2);
    assert_eq!(
        host.read("/etc/systemd/system/dl-web.service.d/10-env.conf"),
        None
    );
    assert!(!env().contains("DL_GREETING"), "{}", env());
}

/// `sysctl -n NAME` inside the host.
fn sysctl(host: &Host, name: &str) -> String {
    host.exec(&["sysctl", "-n", name]).stdout.trim().to_owned()
}

const MSGMAX_FILE: &str = "/etc/sysctl.d/90-driftless-kernel.msgmax.conf";

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_sysctl_is_applied_live_and_persisted_healed_rolled_back_and_pruned() {
    // kernel.msgmax belongs to the host's own IPC namespace: nothing here
    // reaches this machine's kernel settings.
    let host = Host::boot("web1");
    let before = sysctl(&host, "kernel.msgmax");
    assert!(!before.is_empty());
    let declare = |value: &str, extra: &str| {
        host.write_config(&[(
            HOST_FILE,
            &format!("[[sysctl]]\nname = 'kernel.msgmax'\nvalue = {value}\n{extra}"),
        )]);
    };
    declare("9000", "");
    let (plan, json) = host.plan_json();
    plan.expect_code(2);
    let change = &json["changes"][0];
    assert_eq!(change["action"], "set", "{json}");
    assert_eq!(change["resource"]["kind"], "sysctl", "{json}");
    assert!(
        change["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("live value: `{before}` → `9000`")),
        "{json}"
    );
    host.converge().expect_code(2);
    assert_eq!(sysctl(&host, "kernel.msgmax"), "9000");
    let file = host.read(MSGMAX_FILE).expect("the persisting file");
    assert!(file.ends_with("kernel.msgmax = 9000\n"), "{file}");
    // A no-op observes and changes nothing.
    host.converge().expect_code(0);

    // Drift of the live value (sysctl -w) and of the file is healed.
    host.exec(&["sysctl", "-w", "kernel.msgmax=8500"]);
    assert_eq!(sysctl(&host, "kernel.msgmax"), "8500");
    // Audit mode (a dry run) reports the drift and leaves it.
    let audit = host.driftless(&[
        "converge",
        "--now",
        "--dry-run",
        "--repo",
        "/srv/config",
        "--host",
        "web1",
    ]);
    audit.expect_code(2);
    assert!(
        audit.stdout.contains("live value: `8500` → `9000`"),
        "{}",
        audit.stdout
    );
    assert_eq!(sysctl(&host, "kernel.msgmax"), "8500");
    host.converge().expect_code(2);
    assert_eq!(sysctl(&host, "kernel.msgmax"), "9000");
    host.exec(&[
        "sh",
        "-c",
        &format!("echo 'kernel.msgmax = 1' > {MSGMAX_FILE}"),
    ]);
    host.converge().expect_code(2);
    assert_eq!(host.read(MSGMAX_FILE), Some(file.clone()));
    host.converge().expect_code(0);

    // A converge that fails its check puts the value and the file back.
    declare(
        "9100",
        "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
    );
    host.converge().expect_code(4);
    assert_eq!(sysctl(&host, "kernel.msgmax"), "9000");
    assert_eq!(host.read(MSGMAX_FILE), Some(file));

    // Dropped: the value it had before driftless managed it comes back,
    // and the file driftless made goes.
    host.write_config(&[(HOST_FILE, "")]);
    host.converge().expect_code(2);
    assert_eq!(sysctl(&host, "kernel.msgmax"), before);
    assert_eq!(host.read(MSGMAX_FILE), None);
    host.converge().expect_code(0);

    // A parameter this kernel does not have is a located error at
    // validate and plan, and nothing changes.
    host.write_config(&[(
        HOST_FILE,
        "\n[[sysctl]]\nname = 'kernel.no_such_parameter'\nvalue = 1\n",
    )]);
    let v = host.driftless(&["validate", "--repo", "/srv/config", "--host", "web1"]);
    v.expect_code(1);
    assert!(
        v.stderr
            .contains("hosts/web1.toml:2:1: sysctl:kernel.no_such_parameter: the running kernel has no parameter `kernel.no_such_parameter`"),
        "{}",
        v.stderr
    );
    host.converge().expect_code(1);
}

/// The link and the mode (`auto` or `manual`) of the alternative
/// `dl-pager`, as update-alternatives keeps them.
fn pager(host: &Host) -> (String, String) {
    let link = host
        .exec(&["readlink", "/etc/alternatives/dl-pager"])
        .stdout
        .trim()
        .to_owned();
    let admin = host
        .read("/var/lib/dpkg/alternatives/dl-pager")
        .unwrap_or_default();
    (link, admin.lines().next().unwrap_or_default().to_owned())
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn an_alternative_is_chosen_healed_rolled_back_and_pruned_back_to_auto() {
    let host = Host::boot("web1");
    for (path, priority) in [("/usr/bin/cat", "10"), ("/usr/bin/tac", "20")] {
        host.exec(&[
            "update-alternatives",
            "--install",
            "/usr/local/bin/dl-pager",
            "dl-pager",
            path,
            priority,
        ])
        .expect_code(0);
    }
    let auto = ("/usr/bin/tac".to_owned(), "auto".to_owned());
    let chosen = ("/usr/bin/cat".to_owned(), "manual".to_owned());
    assert_eq!(pager(&host), auto);
    let declare = |path: &str, extra: &str| {
        host.write_config(&[(
            HOST_FILE,
            &format!("[[alternative]]\nname = 'dl-pager'\npath = '{path}'\n{extra}"),
        )]);
    };
    declare("/usr/bin/cat", "");
    let (plan, json) = host.plan_json();
    plan.expect_code(2);
    let change = &json["changes"][0];
    assert_eq!(change["action"], "set", "{json}");
    assert_eq!(change["domain"], "alternative", "{json}");
    assert_eq!(
        change["reasons"][0], "choice: `auto` → `/usr/bin/cat`",
        "{json}"
    );
    let first = host.converge();
    first.expect_code(2);
    assert!(
        super::harness::commands(&first)
            .iter()
            .any(|c| c.contains("update-alternatives --set dl-pager /usr/bin/cat")),
        "{:?}",
        super::harness::commands(&first)
    );
    assert_eq!(pager(&host), chosen);
    // A no-op reads the link and the admin file, and runs nothing.
    let noop = host.converge();
    noop.expect_code(0);
    assert!(
        !super::harness::commands(&noop)
            .iter()
            .any(|c| c.contains("alternatives")),
        "{:?}",
        super::harness::commands(&noop)
    );

    // Drift (another choice by hand, or back to auto) is healed.
    host.exec(&["update-alternatives", "--set", "dl-pager", "/usr/bin/tac"])
        .expect_code(0);
    // Audit mode (a dry run) reports the drift and leaves it.
    let audit = host.driftless(&[
        "converge",
        "--now",
        "--dry-run",
        "--repo",
        "/srv/config",
        "--host",
        "web1",
    ]);
    audit.expect_code(2);
    assert!(
        audit
            .stdout
            .contains("choice: `/usr/bin/tac` → `/usr/bin/cat`"),
        "{}",
        audit.stdout
    );
    assert_eq!(pager(&host).0, "/usr/bin/tac");
    host.converge().expect_code(2);
    assert_eq!(pager(&host), chosen);
    host.exec(&["update-alternatives", "--auto", "dl-pager"])
        .expect_code(0);
    host.converge().expect_code(2);
    assert_eq!(pager(&host), chosen);

    // A converge that fails its check puts the earlier choice back.
    declare(
        "/usr/bin/tac",
        "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
    );
    host.converge().expect_code(4);
    assert_eq!(pager(&host), chosen);

    // A path that is not registered is refused at its declaration, before
    // anything changes.
    declare("/usr/bin/head", "");
    let refused = host.converge();
    refused.expect_code(1);
    assert!(
        refused.stderr.contains(
            "`/usr/bin/head` is not a registered alternative for dl-pager (registered: /usr/bin/cat, /usr/bin/tac)"
        ) && refused.stderr.contains("hosts/web1.toml:1:1"),
        "{}",
        refused.stderr
    );
    assert_eq!(pager(&host), chosen);

    // Dropped: back to auto mode, as it was before driftless chose.
    host.write_config(&[(HOST_FILE, "")]);
    host.converge().expect_code(2);
    assert_eq!(pager(&host), auto);
    host.converge().expect_code(0);
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

/// The per-mount flags of `/srv/dl-mnt` as findmnt shows them ("" when
/// nothing is mounted there).
fn mount_options(host: &Host) -> String {
    host.exec(&["findmnt", "-n", "-o", "VFS-OPTIONS", "/srv/dl-mnt"])
        .stdout
        .trim()
        .to_owned()
}

/// A file as the host sees it (inside its mount namespace: a tmpfs it
/// mounted is not seen from outside).
fn cat(host: &Host, path: &str) -> String {
    host.exec(&["cat", path]).stdout
}

fn tmpfs(options: &str, state: &str, extra: &str) -> String {
    format!(
        "[[mount]]\npath = '/srv/dl-mnt'\ndevice = 'tmpfs'\nfstype = 'tmpfs'\noptions = '{options}'\nstate = '{state}'\n{extra}"
    )
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_mount_is_mounted_remounted_with_its_options_rolled_back_refused_when_busy_and_pruned() {
    // The host has its own mount namespace: nothing here reaches this
    // machine's mounts.
    let host = Host::boot("web1");
    let fstab_before = host.read("/etc/fstab");
    host.write_config(&[(HOST_FILE, &tmpfs("nodev,nosuid,size=16m", "mounted", ""))]);
    host.converge().expect_code(2);
    let opts = mount_options(&host);
    assert!(
        opts.contains("nodev") && opts.contains("nosuid") && !opts.contains("noexec"),
        "{opts}"
    );
    let line = "tmpfs /srv/dl-mnt tmpfs nodev,nosuid,size=16m 0 0";
    assert!(host.read("/etc/fstab").unwrap_or_default().contains(line));
    host.converge().expect_code(0);

    // Remounted by hand without nodev: healed in place (a remount: what is
    // on the tmpfs stays).
    host.exec(&["sh", "-c", "echo kept > /srv/dl-mnt/kept"])
        .expect_code(0);
    host.exec(&["mount", "-o", "remount,dev", "/srv/dl-mnt"])
        .expect_code(0);
    assert!(!mount_options(&host).contains("nodev"));
    host.converge().expect_code(2);
    assert!(mount_options(&host).contains("nodev"));
    assert_eq!(cat(&host, "/srv/dl-mnt/kept"), "kept\n");

    // An options change is a remount.
    host.write_config(&[(
        HOST_FILE,
        &tmpfs("nodev,nosuid,noexec,size=16m", "mounted", ""),
    )]);
    host.converge().expect_code(2);
    assert!(mount_options(&host).contains("noexec"));
    assert_eq!(cat(&host, "/srv/dl-mnt/kept"), "kept\n");

    // A failed check puts the line and the live flags back.
    let failing = "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n";
    host.write_config(&[(HOST_FILE, &tmpfs("nodev,size=16m", "mounted", failing))]);
    host.converge().expect_code(4);
    let opts = mount_options(&host);
    assert!(opts.contains("nosuid") && opts.contains("noexec"), "{opts}");
    assert!(
        host.read("/etc/fstab")
            .unwrap_or_default()
            .contains("tmpfs /srv/dl-mnt tmpfs nodev,nosuid,noexec,size=16m 0 0")
    );

    // A process working in it: the unmount is refused, naming it, and
    // nothing changes.
    let pid = host
        .exec(&[
            "sh",
            "-c",
            "cd /srv/dl-mnt && { setsid sleep 120 >/dev/null 2>&1 & echo $!; }",
        ])
        .stdout
        .trim()
        .to_owned();
    host.write_config(&[(
        HOST_FILE,
        &tmpfs("nodev,nosuid,noexec,size=16m", "unmounted", ""),
    )]);
    let quarantined = host.quarantined();
    let refused = host.converge();
    refused.expect_code(4);
    assert!(
        refused
            .stderr
            .contains("refusing to unmount /srv/dl-mnt: it is in use")
            && refused.stderr.contains("(sleep)"),
        "{refused:?}"
    );
    assert!(mount_options(&host).contains("noexec"));
    // The check's failure quarantined its own state; the busy mount
    // quarantines nothing more.
    assert_eq!(
        host.quarantined(),
        quarantined,
        "a busy mount is the host's state, not the commit's"
    );
    host.exec(&["kill", &pid]).expect_code(0);

    // Dropped: as before driftless, not mounted and no line.
    host.write_config(&[(HOST_FILE, "")]);
    host.converge().expect_code(2);
    assert_eq!(mount_options(&host), "");
    assert_eq!(host.read("/etc/fstab"), fstab_before);
    host.converge().expect_code(0);
}
