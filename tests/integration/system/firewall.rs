//! `[[firewalld]]` on a real firewalld (nftables), in a host booted in a
//! network namespace of its own: the zone as firewalld reads it, both its
//! runtime and its permanent configuration, reloaded on change, healed
//! after drift of the file and of the runtime alone (observed by asking
//! firewalld), put back and
//! reloaded by a rollback, and the shipped zone again once dropped.

use super::harness::Host;

const HOST_FILE: &str = "hosts/fw1.toml";
const ZONE_FILE: &str = "/etc/firewalld/zones/public.xml";

/// firewalld, kept running and reloaded when a zone changes or runs
/// another configuration than its file (no `reload_on` needed).
const FIREWALLD: &str = r#"
[[service]]
name = "firewalld.service"
state = "running"
"#;

/// The zone with `port` open, and what else the test adds.
fn zone(port: &str, extra: &str) -> String {
    format!(
        r#"[[firewalld]]
zone = "public"
services = ["ssh", "https"]
ports = ["{port}"]
rich_rules = ['rule family="ipv4" source address="192.0.2.0/24" service name="http" log prefix="web " level="info" limit value="1/m" accept']
{FIREWALLD}{extra}"#
    )
}

/// `firewall-cmd --zone=public ARGS`: what firewalld says of the zone.
fn zone_says(host: &Host, args: &[&str]) -> String {
    let mut argv = vec!["firewall-cmd", "--zone=public"];
    argv.extend_from_slice(args);
    let run = host.exec(&argv);
    run.expect_code(0);
    run.stdout.trim().to_owned()
}

#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_firewalld_zone_is_converged_healed_rolled_back_and_pruned_in_its_own_network() {
    let host = Host::boot_in_own_network("fw1");
    // Whatever firewalld does here stays in the host's network namespace.
    let here = std::fs::read_link("/proc/self/ns/net").expect("this machine's netns");
    let there = std::fs::read_link(host.live_path("/proc/1/ns/net")).expect("the host's netns");
    assert_ne!(
        here, there,
        "the host must not share this machine's network"
    );
    // The root ships firewalld masked, for the hosts that share it.
    host.exec(&["systemctl", "unmask", "firewalld.service"])
        .expect_code(0);
    host.exec(&["systemctl", "start", "firewalld.service"])
        .expect_code(0);
    let shipped = zone_says(&host, &["--list-all"]);
    assert!(shipped.contains("services: dhcpv6-client ssh"), "{shipped}");

    host.write_config(&[(HOST_FILE, &zone("8443/tcp", ""))]);
    let pid = host.main_pid("firewalld.service");
    let first = host.converge();
    first.expect_code(2);
    assert!(
        first.stdout.contains("firewalld:public changes"),
        "the zone reloads firewalld: {}",
        first.stdout
    );
    assert_eq!(
        host.main_pid("firewalld.service"),
        pid,
        "reloaded, not restarted"
    );
    for view in [&["--list-all"][..], &["--permanent", "--list-all"][..]] {
        let said = zone_says(&host, view);
        assert!(said.contains("services: https ssh"), "{view:?}: {said}");
        assert!(said.contains("ports: 8443/tcp"), "{view:?}: {said}");
        assert!(
            said.contains(
                r#"rule family="ipv4" source address="192.0.2.0/24" service name="http""#
            ),
            "{view:?}: {said}"
        );
    }

    // No-op: the file is not rewritten, firewalld not reloaded.
    let before = host.identity(ZONE_FILE);
    let noop = host.converge();
    noop.expect_code(0);
    assert_eq!(host.identity(ZONE_FILE), before);
    assert!(!noop.stdout.contains("reload"), "{}", noop.stdout);

    // Drift of the file (an admin's edit, loaded): healed and reloaded.
    let edited = host
        .read(ZONE_FILE)
        .expect("the zone file")
        .replace("<service name=\"https\"/>", "");
    std::fs::write(host.path(ZONE_FILE), edited).expect("edit the zone file");
    host.exec(&["firewall-cmd", "--reload"]).expect_code(0);
    assert_eq!(zone_says(&host, &["--list-services"]), "ssh");
    host.converge().expect_code(2);
    assert_eq!(zone_says(&host, &["--list-services"]), "https ssh");
    assert_eq!(
        zone_says(&host, &["--permanent", "--list-services"]),
        "https ssh"
    );

    let before_runtime_drift = host.identity(ZONE_FILE);
    // Drift of the runtime alone (the file as written): observed, and
    // healed by a reload.
    zone_says(&host, &["--add-port=9999/tcp"]);
    assert_eq!(zone_says(&host, &["--list-ports"]), "8443/tcp 9999/tcp");
    let healed = host.converge();
    healed.expect_code(2);
    assert!(
        healed
            .stdout
            .contains("firewalld:public: the running configuration differs from the one written"),
        "{}",
        healed.stdout
    );
    assert_eq!(host.identity(ZONE_FILE), before_runtime_drift);
    assert_eq!(zone_says(&host, &["--list-ports"]), "8443/tcp");
    host.converge().expect_code(0);

    // A converge whose check fails: the old zone file is put back and
    // firewalld runs it again.
    host.write_config(&[(
        HOST_FILE,
        &zone(
            "9443/tcp",
            "\n[[check]]\nname = 'broken'\ncommand = ['false']\nretries = 0\n",
        ),
    )]);
    host.converge().expect_code(4);
    assert!(
        host.read(ZONE_FILE)
            .expect("zone")
            .contains("port=\"8443\"")
    );
    assert_eq!(zone_says(&host, &["--list-ports"]), "8443/tcp");
    assert_eq!(
        zone_says(&host, &["--permanent", "--list-ports"]),
        "8443/tcp"
    );
    assert!(host.is_active("firewalld.service"));

    // firewalld's own checker refuses what it could not load; nothing is
    // written.
    let bad = zone("8443/tcp", "").replace("\"https\"", "\"no-such-service\"");
    host.write_config(&[(HOST_FILE, &bad)]);
    let refused = host.converge();
    assert_ne!(refused.code, 0, "{refused:?}");
    assert_ne!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("no-such-service") || refused.stdout.contains("no-such-service"),
        "{refused:?}"
    );
    assert!(host.read(ZONE_FILE).expect("zone").contains("https"));
    assert_eq!(zone_says(&host, &["--list-services"]), "https ssh");

    // Dropped from the repo: the file driftless made goes, and firewalld
    // runs the zone it ships again.
    host.write_config(&[(HOST_FILE, FIREWALLD)]);
    host.converge().expect_code(2);
    assert_eq!(host.read(ZONE_FILE), None);
    assert_eq!(zone_says(&host, &["--list-all"]), shipped);
    host.converge().expect_code(0);
}
