//! Pruning on a real host: a dropped file goes (driftless created it) or
//! comes back byte for byte (it was there before); a dropped service goes
//! back to the enablement and run state it had before driftless managed
//! it; a dropped package driftless installed stays, unless
//! `[prune] packages = true`.

use super::harness::{AGENT_CONFIG, Host};

const HOST_FILE: &str = "hosts/web1.toml";
const HELLO: &str = "dl-hello.service";

/// The host's own /etc/issue, and a file driftless creates.
const FILES: &str = "\n[[file]]\npath = \"/etc/issue\"\ncontent = \"managed by driftless\\n\"\nmode = \"0600\"\n\n[[file]]\npath = \"/etc/dl-new\"\ncontent = \"new\\n\"\n";

fn packages(names: &[&str], extra: &str) -> String {
    let mut text =
        "[[repo]]\nname = \"driftless-test\"\nbaseurl = \"file:///srv/repo\"\ngpgcheck = false\n"
            .to_owned();
    for n in names {
        text.push_str(&format!("\n[[package]]\nname = \"{n}\"\n"));
    }
    text.push_str(extra);
    text
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_dropped_service_returns_to_its_state_and_a_dropped_package_stays_unless_asked() {
    let host = Host::boot("web1");
    let meta = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(host.path(p)).expect("stat");
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    let issue = meta("/etc/issue");
    let issue_bytes = host.read("/etc/issue").expect("the host's /etc/issue");
    host.write_config(&[(
        HOST_FILE,
        &packages(&["dl-hello", "dl-tool", "dl-web"], FILES),
    )]);
    host.converge().expect_code(2);
    assert_eq!(
        host.read("/etc/issue").as_deref(),
        Some("managed by driftless\n")
    );
    // How the package left its unit: what pruning must go back to.
    let (enabled, active) = (host.is_enabled(HELLO), host.is_active(HELLO));

    // (dl-hello does not start without the config file the other suites
    // give it: only its enablement is managed here.)
    let service = format!(
        "\n[[service]]\nname = \"dl-hello\"\nenabled = {}\n",
        !enabled
    );
    host.write_config(&[(
        HOST_FILE,
        &packages(
            &["dl-hello", "dl-tool", "dl-web"],
            &format!("{FILES}{service}"),
        ),
    )]);
    host.converge().expect_code(2);
    assert_eq!(host.is_enabled(HELLO), !enabled);

    // The files, the service and dl-tool dropped: the unit goes back,
    // dl-tool stays.
    host.write_config(&[(HOST_FILE, &packages(&["dl-hello", "dl-web"], ""))]);
    let (_, plan) = host.plan_json();
    let text = plan.to_string();
    assert!(
        text.contains("no longer declared; put back as it was before driftless managed it"),
        "{plan}"
    );
    assert!(
        text.contains("package:dl-tool is no longer declared; driftless installed it"),
        "{plan}"
    );
    host.converge().expect_code(2);
    assert_eq!(
        (host.is_enabled(HELLO), host.is_active(HELLO)),
        (enabled, active),
        "{}",
        host.unit_status(HELLO)
    );
    assert!(host.rpm_q("dl-tool").is_some(), "dl-tool was removed");
    assert_eq!(
        host.read("/etc/dl-new"),
        None,
        "a file driftless created was left"
    );
    assert_eq!(host.read("/etc/issue"), Some(issue_bytes));
    assert_eq!(
        meta("/etc/issue"),
        issue,
        "/etc/issue came back with other metadata"
    );
    host.converge().expect_code(0);

    // With [prune] packages = true a package driftless installed goes.
    std::fs::write(host.path(AGENT_CONFIG), "[prune]\npackages = true\n").expect("agent config");
    host.write_config(&[(HOST_FILE, &packages(&["dl-hello"], ""))]);
    host.converge().expect_code(2);
    assert!(host.rpm_q("dl-web").is_none(), "dl-web was not removed");
    assert!(host.rpm_q("dl-hello").is_some());
    assert!(
        host.rpm_q("dl-tool").is_some(),
        "a forgotten package was removed"
    );
    host.converge().expect_code(0);
}
