//! `[[command]]` and `[[hook]]` on a real host: commands run by the live
//! converge (as root and as another user, through the host's `runuser`),
//! each guard and a refresh, and hooks told of each outcome.

use std::collections::BTreeMap;

use super::harness::{AGENT_CONFIG, Host};
use crate::util::hook_records;

const HOST_FILE: &str = "hosts/web1.toml";
/// Where the commands record their runs (in a directory of the app user,
/// who runs `migrate`).
const LOG: &str = "/var/lib/app/runs.log";

/// The commands: each appends its name to LOG when it runs.
fn host_file(schema: &str, extra: &str) -> String {
    format!(
        r#"[[directory]]
path = "/var/lib/app"
owner = "nobody"

[[file]]
path = "/etc/app/schema.sql"
content = "{schema}\n"

# Refreshed: runs once when the schema changes, as the app's user.
[[command]]
name = "migrate"
command = '''echo "migrate $(id -un)" >> {LOG}'''
shell = true
user = "nobody"
refresh_on = ["file:/etc/app/schema.sql"]

[[command]]
name = "enrol"
command = '''echo enrol >> {LOG}; touch /var/lib/app/.enrolled'''
shell = true
creates = "/var/lib/app/.enrolled"

[[command]]
name = "trust"
command = '''echo trust >> {LOG}; touch /etc/app/trusted'''
shell = true
unless = ["/usr/bin/test", "-e", "/etc/app/trusted"]

[[command]]
name = "reindex"
command = '''echo reindex >> {LOG}; rm -f /etc/app/stale'''
shell = true
onlyif = ["/usr/bin/test", "-e", "/etc/app/stale"]
{extra}"#
    )
}

fn runs(host: &Host) -> Vec<String> {
    host.read(LOG)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The hook's records: one map of DRIFTLESS_* per run.
fn hooked(host: &Host) -> Vec<BTreeMap<String, String>> {
    hook_records(
        &host
            .read("/var/log/driftless-test-hooks.log")
            .unwrap_or_default(),
    )
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn commands_run_on_their_guards_and_refreshes_and_hooks_hear_of_each_outcome() {
    let host = Host::boot("web1");
    std::fs::write(
        host.path(AGENT_CONFIG),
        "[[hook]]\nname = 'record'\ncommand = ['/bin/sh', '-c', 'env | grep ^DRIFTLESS_ | sort >> /var/log/driftless-test-hooks.log; echo --- >> /var/log/driftless-test-hooks.log']\n\
         on = ['changed', 'rolled_back', 'held', 'in_sync', 'quarantined']\n",
    )
    .expect("agent config");
    host.write_config(&[(HOST_FILE, &host_file("v1", ""))]);

    // What plan says, before anything ran.
    let (_, plan) = host.plan_json();
    let planned: Vec<String> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["action"] == "run_command")
        .map(|c| c["resource"]["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(planned, ["migrate", "enrol", "trust"], "{plan}");
    assert!(runs(&host).is_empty(), "plan ran a command");

    // First converge: the refresh (its file is new), creates and unless.
    host.converge().expect_code(2);
    assert_eq!(runs(&host), ["migrate nobody", "enrol", "trust"]);
    let h = hooked(&host);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["DRIFTLESS_OUTCOME"], "changed");
    assert_eq!(h[0]["DRIFTLESS_HOST"], "web1");
    assert_eq!(h[0]["DRIFTLESS_GENERATION"], "1");

    // Nothing changed: no command runs; the hook hears in_sync.
    host.converge().expect_code(0);
    assert_eq!(runs(&host).len(), 3);
    assert_eq!(hooked(&host)[1]["DRIFTLESS_OUTCOME"], "in_sync");

    // onlyif: runs while its condition holds, and heals it.
    std::fs::write(host.path("/etc/app/stale"), "").expect("stale");
    host.converge().expect_code(2);
    assert_eq!(runs(&host)[3], "reindex");
    host.converge().expect_code(0);
    assert_eq!(runs(&host).len(), 4);

    // The schema changes: migrate runs once more, after the file.
    host.write_config(&[(HOST_FILE, &host_file("v2", ""))]);
    host.converge().expect_code(2);
    assert_eq!(runs(&host)[4..], ["migrate nobody"]);
    assert_eq!(host.read("/etc/app/schema.sql").as_deref(), Some("v2\n"));

    // A failing command: the schema change before it is rolled back, the
    // commit quarantined, the hook told of both at once; then held.
    host.write_config(&[(
        HOST_FILE,
        &host_file(
            "v3",
            "\n[[command]]\nname = 'breaks'\ncommand = ['/bin/false']\nrefresh_on = ['file:/etc/app/schema.sql']\n",
        ),
    )]);
    host.converge().expect_code(4);
    assert_eq!(host.read("/etc/app/schema.sql").as_deref(), Some("v2\n"));
    let h = hooked(&host);
    let last = h.last().expect("a hook run");
    assert_eq!(last["DRIFTLESS_OUTCOME"], "rolled_back");
    assert_eq!(last["DRIFTLESS_QUARANTINED"], "1");
    assert!(last["DRIFTLESS_ERROR"].contains("breaks"), "{last:?}");
    host.converge().expect_code(3);
    assert_eq!(
        hooked(&host).last().expect("hook")["DRIFTLESS_OUTCOME"],
        "held"
    );
}

/// Regression (issue 23): a guard that is a script the same converge
/// installs could not run while observing, and every converge failed
/// before writing anything. Its command now runs when it is due, the
/// script in place by then; the next converge's guard says it is done.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_guard_script_installed_by_the_same_converge_decides_its_command() {
    let host = Host::boot("web1");
    host.write_config(&[(
        HOST_FILE,
        r##"[[file]]
path = "/usr/local/bin/dl-applied"
mode = "0755"
content = "#!/bin/sh\ntest -e /var/lib/dl/applied\n"

[[command]]
name = "apply"
command = ["/bin/sh", "-c", "mkdir -p /var/lib/dl && touch /var/lib/dl/applied && echo run >> /var/lib/dl/runs"]
unless = ["/usr/local/bin/dl-applied"]
"##,
    )]);
    let plan = host.plan_json().1;
    assert!(
        plan["changes"]
            .to_string()
            .contains("`unless` cannot run yet"),
        "{plan}"
    );
    host.converge().expect_code(2);
    assert_eq!(host.read("/var/lib/dl/runs").as_deref(), Some("run\n"));
    host.converge().expect_code(0);
    assert_eq!(host.read("/var/lib/dl/runs").as_deref(), Some("run\n"));
}
