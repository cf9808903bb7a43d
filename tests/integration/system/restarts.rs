//! `[reboot] restart_services` (issue 25, docs/reboots.md) on a sandbox
//! host: two services preload a library the test then replaces; the
//! daemon's next converge restarts the one that is not denied, once, and
//! leaves the denied one running and listed.

use std::time::{Duration, Instant};

use super::harness::{AGENT_CONFIG, CONFIG_DIR, Host};
use super::reboots::journal_with;

const UNIT: &str = "driftless.service";
const LIBRARY: &str = "/usr/local/lib/dl-stale.so";
/// Any library the root has: preloaded into `sleep`, which never calls it.
const ORIGINAL: &str = "/lib/x86_64-linux-gnu/libz.so.1";
// MESSAGE_IDs, as docs/journal.md lists them.
const SERVICES_RESTARTED: &str = "454c4c9c6f6a4ee5b7906b500c2b7819";
const SERVICE_RESTART_FAILED: &str = "2b7745b8e7e3420181e833cfa379c80c";

/// A service that maps `LIBRARY`.
fn preloading(name: &str) -> String {
    format!(
        "[Unit]\nDescription={name}\n\n[Service]\nEnvironment=LD_PRELOAD={LIBRARY}\nExecStart=/bin/sleep infinity\n"
    )
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn services_using_a_replaced_library_are_restarted_except_the_denied_ones() {
    let host = Host::boot("restart1");
    host.exec(&["cp", ORIGINAL, LIBRARY]).expect_code(0);
    for unit in ["dl-lib-a", "dl-lib-b"] {
        std::fs::write(
            host.path(&format!("/etc/systemd/system/{unit}.service")),
            preloading(unit),
        )
        .expect("unit");
    }
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[schedule]\ninterval = \"2s\"\nsplay = \"0s\"\n\n[reboot]\nrestart_services = true\nrestart_deny = [\"dl-lib-b\"]\n",
    )
    .expect("config");
    host.write_config(&[(
        "hosts/restart1.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"managed\\n\"\n",
    )]);
    std::fs::write(
        host.path("/etc/systemd/system/driftless.service"),
        format!(
            "[Unit]\nDescription=driftless\n\n[Service]\nType=notify\nExecStart=/usr/local/bin/driftless daemon --config {AGENT_CONFIG} --repo {CONFIG_DIR} --host restart1\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
    )
    .expect("driftless unit");
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "start", "dl-lib-a", "dl-lib-b", UNIT])
        .expect_code(0);
    host.wait_until("the first converge", 60, || {
        host.status()["last_run"]["outcome"].is_string()
    });
    let (a, b) = (
        host.main_pid("dl-lib-a.service"),
        host.main_pid("dl-lib-b.service"),
    );
    // Nothing replaced yet: nothing restarted, whatever the ticks.
    std::thread::sleep(Duration::from_secs(5));
    assert!(journal_with(&host, SERVICES_RESTARTED).is_empty());
    assert_eq!(host.main_pid("dl-lib-a.service"), a);

    // An update replaces the library (a new file renamed over the old
    // one, as rpm does): both services now map a deleted file.
    host.exec(&["cp", ORIGINAL, &format!("{LIBRARY}.new")])
        .expect_code(0);
    host.exec(&["mv", "-f", &format!("{LIBRARY}.new"), LIBRARY])
        .expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let entry = loop {
        if let Some(e) = journal_with(&host, SERVICES_RESTARTED).pop() {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no restart within 60 s\n{}",
            host.unit_status(UNIT)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(entry["DRIFTLESS_UNITS"], "dl-lib-a.service", "{entry}");
    assert_eq!(entry["DRIFTLESS_DENIED"], "dl-lib-b.service", "{entry}");
    assert_ne!(host.main_pid("dl-lib-a.service"), a, "a was not restarted");
    assert!(host.is_active("dl-lib-a.service"));
    assert_eq!(
        host.main_pid("dl-lib-b.service"),
        b,
        "the denied service was restarted"
    );
    // The denied one is still listed as needing a restart; the restarted
    // one maps the new file and is not, and is not restarted again.
    host.wait_until("only the denied service listed", 30, || {
        host.status()["reboot"]["services"] == serde_json::json!(["dl-lib-b.service"])
    });
    let restarted = host.main_pid("dl-lib-a.service");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(journal_with(&host, SERVICES_RESTARTED).len(), 1);
    assert_eq!(host.main_pid("dl-lib-a.service"), restarted);
    assert!(journal_with(&host, SERVICE_RESTART_FAILED).is_empty());
}
