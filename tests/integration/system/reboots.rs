//! Reboots (issue 25, docs/reboots.md) on a sandbox host: the daemon runs
//! as a plain unit, a fake kernel RPM is the update, the running kernel is
//! read from `[reboot] running_kernel_file`, and `systemctl reboot` ends
//! the host's PID 1, after which the test boots the same root again.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{AGENT_CONFIG, CONFIG_DIR, Host};

pub(super) const UNIT: &str = "driftless.service";
const RUNNING_KERNEL: &str = "/srv/running-kernel";
const OLD_KERNEL: &str = "1.0.0-1.dl.x86_64";
const NEW_KERNEL: &str = "9.9.9-1.dl.x86_64";
const DRAIN_LOG: &str = "/var/lib/dl-drain.log";
/// While this file exists, the drain fails.
const DRAIN_FAILS: &str = "/srv/drain-fails";
/// Each run of the declared health check adds a line.
const CHECK_LOG: &str = "/var/lib/dl-checks.log";
/// The metrics textfile.
const METRICS: &str = "/var/lib/dl-driftless.prom";
// MESSAGE_IDs, as docs/journal.md lists them.
const REBOOT_REQUIRED: &str = "eb26385a0c434da5b28b69a68dbac1df";
pub(super) const REBOOTED: &str = "d2aee250fbed4e11af5e08b778d2ca4b";
pub(super) const REBOOT_POSTPONED: &str = "f62ef42dc61d482bb61e275cd436ad3e";

/// The agent config: a fast schedule, reboots when required in `window`,
/// the drain that logs, the test's running-kernel file.
fn agent_config(window: &str) -> String {
    format!(
        "[schedule]\ninterval = \"3s\"\nsplay = \"0s\"\n\n[metrics]\ntextfile = \"{METRICS}\"\n\n[reboot]\nmode = \"when-required\"\nwindows = [\"{window}\"]\ndrain = [\"/usr/local/bin/dl-drain\"]\ndrain_timeout = \"30s\"\nrunning_kernel_file = \"{RUNNING_KERNEL}\"\n"
    )
}

/// A window that is closed now whatever the host's time zone: it opens
/// twelve hours from now, for an hour.
pub(super) fn closed_window() -> String {
    let h = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 3600
        + 12)
        % 24;
    format!("daily {h:02}:00-{:02}:00", (h + 1) % 24)
}

/// Waits (at most 10 s: the daemon writes the file just after it saved
/// what `status` reads) until the sample `name` in the metrics textfile,
/// which promtool accepts, is `want`.
fn expect_metric(host: &Host, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = host.read(METRICS).expect("the metrics textfile");
        let value: Option<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok());
        if value == Some(want) {
            super::daemon::promtool_accepts_metrics(&text);
            return;
        }
        assert!(Instant::now() < deadline, "{name} is not {want} in\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `status --json`'s `reboot`, polled until `done` says yes (at most
/// `seconds`).
pub(super) fn wait_for_reboot(
    host: &Host,
    seconds: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let r = host.status()["reboot"].clone();
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {seconds}s; reboot = {r}\n{}",
            host.unit_status(UNIT)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The unit's (`driftless.service`) journal entries with `id`.
pub(super) fn journal_with(host: &Host, id: &str) -> Vec<Value> {
    let r = host.exec(&["journalctl", "--no-pager", "-o", "json", "-u", UNIT]);
    r.expect_code(0);
    r.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["MESSAGE_ID"] == id)
        .collect()
}

/// A package update marks a reboot as required; a service running a
/// replaced program is listed; the reboot waits for its window, then drains, asks systemd (PID 1 exits), the host is booted
/// again, the daemon comes back, its health checks pass, and status and
/// the journal say `rebooted` with the old and new kernel.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_kernel_update_reboots_the_host_in_its_window_after_the_drain() {
    let mut host = Host::boot("reboot1");
    std::fs::write(host.path(RUNNING_KERNEL), format!("{OLD_KERNEL}\n")).expect("kernel file");
    std::fs::write(host.path(AGENT_CONFIG), agent_config(&closed_window())).expect("config");
    let drain = host.path("/usr/local/bin/dl-drain");
    std::fs::write(&drain, format!("#!/bin/sh\nif [ -e {DRAIN_FAILS} ]; then echo 'the balancer says no' >&2; exit 3; fi\necho drained >> {DRAIN_LOG}\n")).expect("drain");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&drain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    host.write_config(&[(
        "hosts/reboot1.toml",
        "[[repo]]\nname = \"driftless-test\"\nbaseurl = \"file:///srv/repo\"\ngpgcheck = false\n\n[[package]]\nname = \"kernel-core\"\n\n[[check]]\nname = \"logged\"\ncommand = [\"/bin/sh\", \"-c\", \"echo ok >> /var/lib/dl-checks.log\"]\n",
    )]);
    std::fs::write(
        host.path("/etc/systemd/system/driftless.service"),
        format!(
            "[Unit]\nDescription=driftless\n\n[Service]\nType=notify\nExecStart=/usr/local/bin/driftless daemon --config {AGENT_CONFIG} --repo {CONFIG_DIR} --host reboot1\nExecReload=/bin/kill -HUP $MAINPID\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
    )
    .expect("unit");
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "enable", "--now", UNIT])
        .expect_code(0);

    // The update: required, and waiting for the window.
    let r = wait_for_reboot(&host, 90, "reboot required, outside the window", |r| {
        r["required_since"].is_string() && r["waiting"].is_string()
    });
    assert_eq!(host.rpm_q("kernel-core").as_deref(), Some("9.9.9-1.dl"));
    let reasons = r["reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            "kernel {NEW_KERNEL} is installed, {OLD_KERNEL} is running"
        )),
        "{r}"
    );
    assert!(reasons.contains("kernel-core"), "{r}");
    assert_eq!(r["method"], "rpm", "{r}");
    assert_eq!(r["waiting"], "outside the reboot window", "{r}");
    assert_eq!(journal_with(&host, REBOOT_REQUIRED).len(), 1);
    let line = host.exec(&["systemctl", "show", "-P", "StatusText", UNIT]);
    assert!(line.stdout.contains("reboot required"), "{line:?}");
    assert!(host.read(DRAIN_LOG).is_none(), "drained outside the window");
    let text = host.driftless(&["status"]);
    assert!(text.stdout.contains("REBOOT REQUIRED since"), "{text:?}");
    expect_metric(&host, "driftless_reboot_required", 1.0);
    let since = humantime::parse_rfc3339(r["required_since"].as_str().expect("since"))
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    expect_metric(&host, "driftless_reboot_required_since_seconds", since);
    expect_metric(&host, "driftless_services_need_restart", 0.0);

    // A service whose program is replaced (deleted while it runs) needs a
    // restart: listed and counted, without making a reboot more required.
    host.exec(&["cp", "/bin/sleep", "/usr/local/libexec-dl-sleep"])
        .expect_code(0);
    host.exec(&[
        "systemd-run",
        "--unit",
        "dl-stale",
        "/usr/local/libexec-dl-sleep",
        "1000",
    ])
    .expect_code(0);
    host.exec(&["rm", "/usr/local/libexec-dl-sleep"])
        .expect_code(0);
    let r = wait_for_reboot(&host, 30, "the stale service", |r| {
        r["services"] == serde_json::json!(["dl-stale.service"])
    });
    assert_eq!(r["waiting"], "outside the reboot window", "{r}");
    expect_metric(&host, "driftless_services_need_restart", 1.0);
    let text = host.driftless(&["status"]);
    assert!(
        text.stdout
            .contains("services that need a restart (they map replaced files): dl-stale.service"),
        "{text:?}"
    );
    host.exec(&["systemctl", "stop", "dl-stale.service"])
        .expect_code(0);
    let r = wait_for_reboot(&host, 30, "no stale service", |r| r["services"].is_null());
    assert!(r["required_since"].is_string(), "{r}");
    expect_metric(&host, "driftless_services_need_restart", 0.0);

    // The window opens, but the drain fails: the reboot is postponed,
    // and said so.
    std::fs::write(host.path(DRAIN_FAILS), "").expect("drain fails");
    std::fs::write(host.path(AGENT_CONFIG), agent_config("daily 00:00-24:00")).expect("config");
    host.exec(&["systemctl", "reload", UNIT]).expect_code(0);
    let r = wait_for_reboot(&host, 60, "the drain failed", |r| {
        r["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("the drain failed"))
    });
    assert!(
        r["waiting"].to_string().contains("the balancer says no"),
        "{r}"
    );
    assert!(r["pending"].is_null(), "{r}");
    assert!(!journal_with(&host, REBOOT_POSTPONED).is_empty());
    assert_eq!(
        host.read(CHECK_LOG).as_deref(),
        Some("ok\n"),
        "checks ran once, with the update"
    );

    // The drain passes: systemctl reboot, PID 1 exits. The test boots the
    // same root again, on the new "kernel".
    std::fs::remove_file(host.path(DRAIN_FAILS)).expect("drain passes");
    host.reboot(Duration::from_secs(120), |disk| {
        let file = disk.join(RUNNING_KERNEL.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, format!("{NEW_KERNEL}\n")).expect("new kernel");
    });
    assert_eq!(host.read(DRAIN_LOG).as_deref(), Some("drained\n"));

    // Back: the daemon starts by itself, runs the checks, says rebooted.
    let r = wait_for_reboot(&host, 90, "rebooted recorded", |r| {
        r["rebooted"].is_object()
    });
    assert_eq!(r["rebooted"]["old_kernel"], OLD_KERNEL, "{r}");
    assert_eq!(r["rebooted"]["new_kernel"], NEW_KERNEL, "{r}");
    assert!(
        r["required_since"].is_null(),
        "still required after the reboot: {r}"
    );
    assert!(r["pending"].is_null(), "{r}");
    // The checks ran again after the boot, although nothing changed.
    assert_eq!(host.read(CHECK_LOG).as_deref(), Some("ok\nok\n"));
    expect_metric(&host, "driftless_reboot_required", 0.0);
    expect_metric(&host, "driftless_reboot_required_since_seconds", 0.0);
    let last = host.status()["last_run"]["outcome"].clone();
    assert_eq!(last, "in_sync");
    let back = journal_with(&host, REBOOTED);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["DRIFTLESS_NEW_KERNEL"], NEW_KERNEL);
    let text = host.driftless(&["status"]);
    assert!(
        text.stdout.contains(&format!(
            "kernel {OLD_KERNEL} -> {NEW_KERNEL}, health checks passed"
        )),
        "{text:?}"
    );
}
