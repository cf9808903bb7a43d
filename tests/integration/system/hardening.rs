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
