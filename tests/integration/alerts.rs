//! The shipped Prometheus alerting rules (`packaging/driftless-alerts.yml`)
//! are valid, and every alert fires and clears as their unit tests
//! (`packaging/driftless-alerts.test.yml`) say: a git outage under the
//! default backoff, a quarantine cleared by a fix, a rollback, a stopped
//! daemon, a forgotten pause, drift healed, a host out of sync, and a
//! healthy host where nothing fires. promtool runs them; without promtool
//! this fails rather than skips.

use std::path::Path;
use std::process::Command;

/// Runs `promtool ARGS`, panicking with its output unless it succeeds.
fn promtool(args: &[&str]) {
    let out = match Command::new("promtool").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run promtool ({e}): the alert rules are tested with it; \
             `apt-get install prometheus` puts it in /usr/bin"
        ),
    };
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool check rules` accepts the shipped rules, and `promtool test
/// rules` passes their tests: each alert fires in its scenario and clears
/// when the host recovers, and none fires where it must not (a healthy
/// host, a host healing from its cache through a git outage, a paused or
/// quarantined host for DriftlessNotInSync).
#[test]
fn the_shipped_alert_rules_fire_and_clear_as_their_tests_say() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let rules = packaging.join("driftless-alerts.yml");
    let tests = packaging.join("driftless-alerts.test.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()]);
    promtool(&["test", "rules", tests.to_str().unwrap()]);
}
