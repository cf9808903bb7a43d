//! Reboots coordinated through the fleet (issue 25, docs/reboots.md), on
//! two sandbox hosts and etcd on this machine's loopback (the hosts share
//! its network namespace). Each host "needs" a reboot from the start: a
//! `/lib/modules/<new>/vmlinuz` newer than the release its
//! `running_kernel_file` says, which the test changes while the host is
//! down. Both are in one wave with `max_parallel = 1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{AGENT_CONFIG, CONFIG_DIR, Host};
use super::reboots::{
    REBOOT_POSTPONED, REBOOTED, UNIT, closed_window, journal_with, wait_for_reboot,
};
use crate::etcd::{Etcd, etcdctl};

const RUNNING_KERNEL: &str = "/srv/running-kernel";
const OLD_KERNEL: &str = "1.0.0-1.dl.x86_64";
const NEW_KERNEL: &str = "9.9.9-1.dl.x86_64";
const DRAIN_LOG: &str = "/var/lib/dl-drain.log";
/// While this file exists, the drain sleeps (a host that dies mid-drain).
const SLOW_DRAIN: &str = "/srv/slow-drain";
/// While this file exists, the host's health check fails.
const UNHEALTHY: &str = "/srv/unhealthy";

/// Makes `host` a fleet member that needs a reboot: the kernel files, the
/// drain (which logs, sleeps 2 s so that an overlap would show, and sleeps
/// long while [`SLOW_DRAIN`] exists), the agent config with `[fleet]` on
/// `etcd` and `[reboot]` when required with `back_within`, the config repo
/// (one wave, `max_parallel = 1`, a check that fails while [`UNHEALTHY`]
/// exists) and the daemon's unit, enabled but not started. With
/// `wave_policy`, the agent config says `mode = "report"` and a window
/// closed now, and the wave overrides both (`reboot_mode`,
/// `reboot_windows`): the hosts reboot by themselves only if the wave's
/// policy is the one in force.
fn fleet_host(
    host: &Host,
    name: &str,
    etcd: &Etcd,
    prefix: &str,
    back_within: &str,
    wave_policy: bool,
    fleet_toml: &str,
) {
    let modules = host.path(&format!("/lib/modules/{NEW_KERNEL}"));
    std::fs::create_dir_all(&modules).expect("modules dir");
    std::fs::write(modules.join("vmlinuz"), "not a kernel\n").expect("vmlinuz");
    std::fs::write(host.path(RUNNING_KERNEL), format!("{OLD_KERNEL}\n")).expect("kernel file");
    let drain = host.path("/usr/local/bin/dl-drain");
    std::fs::write(
        &drain,
        format!("#!/bin/sh\necho drained >> {DRAIN_LOG}\nsleep 2\nif [ -e {SLOW_DRAIN} ]; then sleep 600; fi\n"),
    )
    .expect("drain");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&drain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let (mode, windows) = if wave_policy {
        ("report", format!("[\"{}\"]", closed_window()))
    } else {
        ("when-required", "[]".to_owned())
    };
    std::fs::write(
        host.path(AGENT_CONFIG),
        format!(
            "[schedule]\ninterval = \"2s\"\nsplay = \"0s\"\n\n\
             [fleet]\nendpoints = [{endpoints}]\nprefix = \"{prefix}\"\nlease_ttl = \"60s\"\n\n\
             [reboot]\nmode = \"{mode}\"\nwindows = {windows}\ndrain = [\"/usr/local/bin/dl-drain\"]\ndrain_timeout = \"15m\"\n\
             back_within = \"{back_within}\"\nrunning_kernel_file = \"{RUNNING_KERNEL}\"\n"
        ),
    )
    .expect("config");
    let host_file = |n: &str| {
        format!(
            "[[file]]\npath = \"/etc/dl-fleet\"\ncontent = \"{n}\\n\"\n\n[[check]]\nname = \"healthy\"\ncommand = [\"/bin/sh\", \"-c\", \"test ! -e {UNHEALTHY}\"]\nretries = 0\n"
        )
    };
    host.write_config(&[
        ("fleet.toml", fleet_toml),
        (&format!("hosts/{name}.toml"), &host_file(name)),
    ]);
    std::fs::write(
        host.path("/etc/systemd/system/driftless.service"),
        format!(
            "[Unit]\nDescription=driftless\n\n[Service]\nType=notify\nExecStart=/usr/local/bin/driftless daemon --config {AGENT_CONFIG} --repo {CONFIG_DIR} --host {name}\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
    )
    .expect("unit");
    host.exec(&["systemctl", "daemon-reload"]).expect_code(0);
    host.exec(&["systemctl", "enable", UNIT]).expect_code(0);
    // Its desired state applied (and its record published) before any
    // daemon runs: `converge --now` never reboots. Each host's directory
    // repo is a commit of its own, which the rollout gate would hold
    // behind an earlier wave's hosts: rollouts are not what is tested.
    let applied = host.driftless(&[
        "converge",
        "--now",
        "--repo",
        CONFIG_DIR,
        "--host",
        name,
        "--ignore-rollout",
    ]);
    applied.expect_code(2);
}

/// Both hosts in one wave, one reboot at a time.
const ONE_WAVE: &str = "[[wave]]\nname = \"all\"\nhosts = [\"rf*\"]\nmax_parallel = 1\n";

/// Reboots `first` (whose PID 1 exits: it asked systemd) into the new
/// kernel, waits until it is back healthy with its slot given back, then
/// the same for `second`; then checks what `poll` saw ([`one_at_a_time`]).
fn in_turn(
    etcd: &Etcd,
    prefix: &str,
    poll: Poller,
    first: (&mut Host, &str),
    second: (&mut Host, &str),
) {
    for (host, name) in [(first.0, first.1), (second.0, second.1)] {
        host.reboot(Duration::from_secs(120), new_kernel);
        let r = wait_for_reboot(host, 90, &format!("{name} is back"), |r| {
            r["rebooted"].is_object() && r["slot"].is_null()
        });
        assert_eq!(r["rebooted"]["new_kernel"], NEW_KERNEL, "{r}");
        // And the journal: rebooted, into the new kernel.
        let said = journal_with(host, REBOOTED);
        assert!(
            said.iter().any(|e| e["DRIFTLESS_NEW_KERNEL"] == NEW_KERNEL),
            "{name}: {said:?}"
        );
    }
    // The records say so (the next converge at most).
    eventually("the records say both rebooted", 30, || {
        let records = values(etcd, prefix, "hosts/");
        records.len() == 2
            && records
                .iter()
                .all(|h| h["rebooted_at"].is_string() && h["rebooting_since"].is_null())
    });
    let samples = poll.finish();
    one_at_a_time(&samples, &values(etcd, prefix, "hosts/"), first.1, second.1);
}

/// Checks what the poller saw: never two hosts rebooting (their records'
/// `rebooting_since`) nor two reboot slots held at once, both seen
/// rebooting, and `second` rebooting only once `first` was back (its
/// `rebooted_at` in `records`, read at the end).
fn one_at_a_time(samples: &[Sample], records: &[Value], first: &str, second: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for (records, slots) in samples {
        let rebooting: Vec<&str> = records
            .iter()
            .filter(|h| h["rebooting_since"].is_string())
            .filter_map(|h| h["host"].as_str())
            .collect();
        assert!(
            rebooting.len() <= 1,
            "two hosts rebooting at once: {records:?}"
        );
        assert!(slots.len() <= 1, "two reboot slots held at once: {slots:?}");
        seen.extend(rebooting.iter().map(|h| (*h).to_owned()));
    }
    assert_eq!(
        seen.len(),
        2,
        "not both seen rebooting in {} samples",
        samples.len()
    );
    let second_since = samples
        .iter()
        .flat_map(|(records, _)| records.iter())
        .find(|r| r["host"] == second && r["rebooting_since"].is_string())
        .and_then(|r| r["rebooting_since"].as_str())
        .expect("the second seen rebooting")
        .to_owned();
    let first_back = records
        .iter()
        .find(|r| r["host"] == first)
        .and_then(|r| r["rebooted_at"].as_str())
        .unwrap_or_else(|| panic!("no rebooted_at of {first} in {records:?}"))
        .to_owned();
    let t = |s: &str| humantime::parse_rfc3339(s).expect("RFC 3339");
    assert!(
        t(&first_back) <= t(&second_since),
        "{second} took its slot at {second_since}, before {first} was back at {first_back}"
    );
}

/// etcd, a key prefix of its own (`tag` tells the tests apart) and two
/// hosts made fleet members by [`fleet_host`], rf1 and rf2, their daemons
/// not started yet.
fn fleet_of_two(
    tag: &str,
    back_within: &str,
    wave_policy: bool,
    fleet_toml: &str,
) -> (Etcd, String, Host, Host) {
    let etcd = Etcd::start(1);
    let prefix = format!("/driftless-rfleet/{}-{tag}", std::process::id());
    let h1 = Host::boot("rf1");
    let h2 = h1.boot_beside("rf2");
    fleet_host(
        &h1,
        "rf1",
        &etcd,
        &prefix,
        back_within,
        wave_policy,
        fleet_toml,
    );
    fleet_host(
        &h2,
        "rf2",
        &etcd,
        &prefix,
        back_within,
        wave_policy,
        fleet_toml,
    );
    (etcd, prefix, h1, h2)
}

/// Starts the host's daemon.
fn start(host: &Host) {
    host.exec(&["systemctl", "start", UNIT]).expect_code(0);
}

/// The values under `<prefix>/<rest>`, parsed.
fn values(etcd: &Etcd, prefix: &str, rest: &str) -> Vec<Value> {
    etcdctl(
        etcd,
        &[
            "get",
            "--prefix",
            &format!("{prefix}/{rest}"),
            "--print-value-only",
        ],
    )
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect()
}

/// The hosts holding a reboot slot now.
fn holders(etcd: &Etcd, prefix: &str) -> Vec<String> {
    values(etcd, prefix, "reboot-slots/")
        .iter()
        .filter_map(|s| s["host"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (at most `seconds`) until `ready`.
fn eventually(what: &str, seconds: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {seconds}s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One read of etcd: the hosts' records, and the reboot slots.
type Sample = (Vec<Value>, Vec<Value>);

/// Reads the hosts' records and the reboot slots from etcd every 250 ms
/// while the test goes on, as an operator's dashboard would.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Poller {
    fn start(etcd: &Etcd, prefix: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = etcd.endpoints().join(",");
        let prefix = prefix.to_owned();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let get = |rest: &str| -> Vec<Value> {
                let out = std::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={endpoints}"))
                    .args([
                        "get",
                        "--prefix",
                        &format!("{prefix}/{rest}"),
                        "--print-value-only",
                    ])
                    .output()
                    .expect("etcdctl");
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            };
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                samples.push((get("hosts/"), get("reboot-slots/")));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        Poller {
            stop,
            thread: Some(thread),
        }
    }

    /// Every sample: (the hosts' records, the reboot slots).
    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the poller panicked")
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Writes the new kernel's release into the running-kernel file of a host
/// that is down, as if it booted that kernel.
fn new_kernel(disk: &std::path::Path) {
    std::fs::write(
        disk.join(RUNNING_KERNEL.trim_start_matches('/')),
        format!("{NEW_KERNEL}\n"),
    )
    .expect("new kernel");
}

/// `fleet status --json`'s `fleet`, from inside `host`.
fn fleet_status(host: &Host) -> Value {
    let run = host.driftless(&["fleet", "status", "--json"]);
    run.expect_code(0);
    crate::json_schema::check(&run.stdout, run.code)["fleet"].clone()
}

/// With `max_parallel = 1`, two hosts that need a reboot never reboot at
/// once (their records, read from etcd all along, never both say
/// `rebooting_since`, and the second took its slot after the first was
/// back); and none reboots while the fleet is halted, nor while etcd is
/// down; one does after `fleet resume`. They reboot by their wave's `reboot_mode` and
/// `reboot_windows` (their agent configs say `report`, in a closed
/// window).
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn two_hosts_reboot_one_at_a_time_and_none_while_the_fleet_is_halted() {
    // The wave's reboot policy is the one in force: by their agent
    // configs alone, these hosts would wait for an operator.
    let waves = format!(
        "{ONE_WAVE}reboot_mode = \"when-required\"\nreboot_windows = [\"daily 00:00-24:00\"]\n"
    );
    let (mut etcd, prefix, mut h1, mut h2) = fleet_of_two("a", "120s", true, &waves);
    h1.driftless(&["fleet", "halt", "--reason", "kernel freeze"])
        .expect_code(0);
    start(&h1);
    start(&h2);

    // Halted: both need a reboot, and wait, saying why.
    for h in [&h1, &h2] {
        wait_for_reboot(h, 90, "waiting for the halt", |r| {
            r["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("the fleet is halted (kernel freeze)"))
        });
    }
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        holders(&etcd, &prefix).is_empty(),
        "a slot was taken while halted"
    );
    assert!(
        h1.read(DRAIN_LOG).is_none() && h2.read(DRAIN_LOG).is_none(),
        "drained while halted"
    );

    // etcd down: nothing reboots either (fail closed), and they say why.
    etcd.members[0].kill();
    for h in [&h1, &h2] {
        wait_for_reboot(h, 30, "waiting for etcd", |r| {
            r["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("the fleet's etcd cannot be asked"))
        });
    }
    assert!(
        h1.read(DRAIN_LOG).is_none() && h2.read(DRAIN_LOG).is_none(),
        "drained without etcd"
    );
    etcd.members[0].start();
    etcd.wait_healthy();

    // Resumed: one takes the wave's slot, the other waits for it.
    let poll = Poller::start(&etcd, &prefix);
    h1.driftless(&["fleet", "resume"]).expect_code(0);
    let mut first = Vec::new();
    eventually("a host takes the reboot slot", 60, || {
        first = holders(&etcd, &prefix);
        !first.is_empty()
    });
    let (a, b) = if first == ["rf1"] {
        (&mut h1, &mut h2)
    } else {
        (&mut h2, &mut h1)
    };
    let holder = format!("all 1 are taken ({})", first[0]);
    wait_for_reboot(b, 30, "the other waits for the slot", |r| {
        r["waiting"].as_str().is_some_and(|w| w.contains(&holder))
    });
    assert!(
        journal_with(b, REBOOT_POSTPONED)
            .iter()
            .any(|e| e["MESSAGE"].as_str().is_some_and(|m| m.contains(&holder))),
        "the journal of the waiting host does not say who holds the slot"
    );
    let line = b.exec(&["systemctl", "show", "-P", "StatusText", UNIT]);
    assert!(line.stdout.contains(&holder), "{line:?}");

    // The holder reboots; back healthy, it gives the slot back and the
    // other one reboots.
    let second = if first[0] == "rf1" { "rf2" } else { "rf1" };
    in_turn(&etcd, &prefix, poll, (a, &first[0]), (b, second));
    let status = fleet_status(&h1);
    assert_eq!(status["reboot_slots"], serde_json::json!([]), "{status}");
}

/// A host that dies while it drains frees its reboot slot when its lease
/// (`back_within`) ends, and the other host then reboots; that one comes
/// back unhealthy: it keeps its slot and halts its wave's reboots (shown in
/// `fleet status`), so the first, booted again and still needing its
/// reboot, waits until `fleet resume --reboots`.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_dead_holder_frees_its_slot_and_a_host_back_unhealthy_halts_the_waves_reboots() {
    let (etcd, prefix, mut h1, mut h2) = fleet_of_two("b", "10s", false, ONE_WAVE);
    std::fs::write(h1.path(SLOW_DRAIN), "").expect("slow drain");

    // rf1 takes the slot and drains (for long); rf2 waits for it.
    start(&h1);
    eventually("rf1 takes the slot", 90, || {
        holders(&etcd, &prefix) == ["rf1"]
    });
    start(&h2);
    wait_for_reboot(&h2, 90, "rf2 waits for rf1's slot", |r| {
        r["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("all 1 are taken (rf1)"))
    });

    // rf1 dies mid-drain. Its slot outlives it until its lease ends; then
    // rf2 takes it and reboots, coming back unhealthy.
    h1.power_off();
    let died = Instant::now();
    assert_eq!(holders(&etcd, &prefix), ["rf1"], "freed at once");
    eventually("rf2 takes the freed slot", 60, || {
        holders(&etcd, &prefix) == ["rf2"]
    });
    assert!(
        died.elapsed() >= Duration::from_secs(6),
        "rf2 took the slot {:?} after rf1 died: before rf1's lease could end",
        died.elapsed()
    );
    h2.reboot(Duration::from_secs(120), |disk| {
        new_kernel(disk);
        std::fs::write(disk.join(UNHEALTHY.trim_start_matches('/')), "").expect("unhealthy");
    });
    let r = wait_for_reboot(&h2, 90, "rf2 keeps its slot", |r| {
        r["slot"]["kept"].is_string()
    });
    assert!(r["rebooted"].is_null(), "{r}");
    let own = h2.driftless(&["status"]);
    assert!(
        own.stdout.contains("holds a reboot slot of wave all since")
            && own.stdout.contains("KEPT (its wave's reboots are halted)"),
        "{own:?}"
    );
    h2.wait_until("the status line says the slot is kept", 10, || {
        h2.exec(&["systemctl", "show", "-P", "StatusText", UNIT])
            .stdout
            .contains("reboot slot kept, its wave's reboots are halted")
    });
    let status = fleet_status(&h2);
    assert_eq!(status["reboot_halts"][0]["wave"], "all", "{status}");
    assert_eq!(status["reboot_halts"][0]["host"], "rf2", "{status}");
    assert_eq!(status["reboot_slots"][0]["host"], "rf2", "{status}");
    assert!(status["reboot_slots"][0]["kept"].is_string(), "{status}");
    let text = h2.driftless(&["fleet", "status"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("REBOOTS HALTED in wave all (and the waves after it) by rf2"),
        "{text:?}"
    );
    assert!(text.stdout.contains("held by rf2"), "{text:?}");

    // rf1 is back (powered on), still needs its reboot, and waits: its
    // wave's reboots are halted.
    h1.reboot(Duration::from_secs(30), |disk| {
        std::fs::remove_file(disk.join(SLOW_DRAIN.trim_start_matches('/'))).expect("fast drain");
    });
    wait_for_reboot(&h1, 90, "rf1 waits for the halt", |r| {
        r["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("reboots of wave all are halted by rf2"))
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(holders(&etcd, &prefix), ["rf2"]);
    assert_eq!(
        h1.read(DRAIN_LOG).as_deref(),
        Some("drained\n"),
        "rf1 drained again"
    );

    // The operator resumes reboots: the halt and the kept slot go, rf1
    // reboots, and rf2 forgets its slot.
    let resumed = h2.driftless(&["fleet", "resume", "--reboots"]);
    resumed.expect_code(0);
    assert!(resumed.stdout.contains("rf2"), "{resumed:?}");
    h1.reboot(Duration::from_secs(120), new_kernel);
    wait_for_reboot(&h1, 90, "rf1 is back", |r| r["rebooted"].is_object());
    wait_for_reboot(&h2, 30, "rf2 forgot its kept slot", |r| r["slot"].is_null());
    assert!(values(&etcd, &prefix, "reboot-halt/").is_empty());
}

/// Waves: the canary (rf1) reboots first; rf2, in the wave after it (the
/// implicit `rest`, no `max_parallel`), waits for it to reboot and to be
/// back healthy, then reboots.
#[test]
#[ignore = "needs root and a sandbox systemd host: system test (run with --include-ignored)"]
fn a_later_wave_reboots_only_once_the_earlier_waves_host_is_back_healthy() {
    let canary = "[[wave]]\nname = \"canary\"\nhosts = [\"rf1\"]\n";
    let (etcd, prefix, mut h1, mut h2) = fleet_of_two("c", "120s", false, canary);
    let poll = Poller::start(&etcd, &prefix);
    start(&h1);
    start(&h2);
    // rf2 may not go first, even with slots to spare.
    wait_for_reboot(&h2, 60, "rf2 waits for the canary", |r| {
        r["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("wave canary"))
    });
    in_turn(&etcd, &prefix, poll, (&mut h1, "rf1"), (&mut h2, "rf2"));
}
