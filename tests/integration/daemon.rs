//! The daemon outside systemd, on a temporary root with a `--repo` config
//! repo: what can be measured without a sandbox host.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::write_repo;

/// A daemon started by the test, killed on drop.
struct Daemon {
    child: Child,
    config: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// The host file most tests converge.
const HOST_FILE: &str =
    "[[file]]\npath = '/etc/motd'\ncontent = 'hello'\n[[directory]]\npath = '/srv/app'\n";

impl Daemon {
    fn start(dir: &Path, interval: &str) -> Self {
        Self::start_with(dir, interval, HOST_FILE, &[])
    }

    /// A daemon converging `host_file`, started through `wrapper` (a
    /// command such as `prlimit --nofile=N` that runs the rest), its log
    /// (warnings and up) in `dir/daemon.log`.
    fn start_with(dir: &Path, interval: &str, host_file: &str, wrapper: &[&str]) -> Self {
        let repo = dir.join("repo");
        write_repo(&repo, &[("hosts/h.toml", host_file)]);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = '{d}/state'\n[schedule]\ninterval = '{interval}'\nsplay = '0s'\n[daemon]\nsocket = '{d}/control.sock'\n[metrics]\ntextfile = '{d}/driftless.prom'\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_driftless"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_driftless")),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .args(["daemon", "--host", "h", "--repo"])
            .arg(&repo)
            .arg("--root")
            .arg(dir.join("root"))
            .env("DRIFTLESS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let d = Self { child, config };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.join("control.sock").exists() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .arg("--config")
            .arg(&self.config)
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The daemon's part of the document is in the contract too.
        crate::json_schema::check(&String::from_utf8_lossy(&out.stdout), 0)
    }

    /// Converges the daemon made so far.
    fn runs(&self) -> u64 {
        let st = self.status();
        st["status"]["daemon"]["converges"]
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0)
    }

    fn wait_for_runs(&self, n: u64, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while self.runs() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} runs in {seconds} s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Open file descriptors, resident memory (KiB) and threads, each the
    /// least of some samples: a converge in flight or a status connection
    /// holds a few descriptors for a moment, which is not a leak.
    fn usage(&self) -> (usize, u64, u64) {
        let mut least = (usize::MAX, u64::MAX, u64::MAX);
        for _ in 0..40 {
            let (f, r, t) = self.sample();
            least = (least.0.min(f), least.1.min(r), least.2.min(t));
            std::thread::sleep(Duration::from_millis(5));
        }
        least
    }

    fn sample(&self) -> (usize, u64, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let value = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (fds, value("VmRSS:"), value("Threads:"))
    }
}

/// A host file of `n` small files.
fn many_files(n: usize) -> String {
    (0..n)
        .map(|i| format!("[[file]]\npath = '/srv/many/f{i}'\ncontent = 'file {i}'\n"))
        .collect()
}

impl Daemon {
    /// The daemon's anonymous resident memory (KiB: its heap and stacks,
    /// not the pages of its binary, which depend on the code a run
    /// touched) once it is idle: the converge's thread gone and the freed
    /// memory handed back (two seconds after a converge).
    fn idle_anon(&self) -> u64 {
        let status =
            || std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let value = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while value(&status(), "Threads:") > 1 {
            assert!(Instant::now() < deadline, "the converge thread did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        value(&status(), "RssAnon:")
    }

    /// `converge --now` through the daemon, which must succeed.
    fn converge_now(&self) {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .arg("--config")
            .arg(&self.config)
            .args(["converge", "--now"])
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a converge used is given back once the daemon is idle: after a
/// full converge of 1000 files, and after a converge of 10 000 files and
/// one back to 1000, the daemon holds within 1 MiB of what it holds when
/// restarted in sync (its heap and stacks; a bound, not a timing).
#[test]
fn an_idle_daemon_holds_no_more_than_after_a_restart_whatever_it_converged() {
    let dir = tempfile::tempdir().unwrap();
    let thousand = many_files(1000);
    let d = Daemon::start_with(dir.path(), "1h", &thousand, &[]);
    d.wait_for_runs(1, 120);
    let after_full = d.idle_anon();
    drop(d);
    let d = Daemon::start_with(dir.path(), "1h", &thousand, &[]);
    d.wait_for_runs(1, 120);
    let restarted = d.idle_anon();
    write_repo(
        &dir.path().join("repo"),
        &[("hosts/h.toml", &many_files(10_000))],
    );
    d.converge_now();
    let after_big = d.idle_anon();
    write_repo(&dir.path().join("repo"), &[("hosts/h.toml", &thousand)]);
    d.converge_now();
    let back = d.idle_anon();
    eprintln!(
        "idle heap and stacks, KiB: restarted in sync {restarted}, after a full converge {after_full}, \
         after 10 000 files {after_big}, back at 1000 {back}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("root/srv/many"))
            .unwrap()
            .count(),
        1000
    );
    for (what, kib) in [
        ("a full converge", after_full),
        ("10 000 files and back", back),
    ] {
        assert!(
            kib <= restarted + 1024,
            "after {what} the idle daemon holds {kib} KiB, restarted in sync {restarted} KiB"
        );
    }
}

/// Over 1000 ticks the daemon must not grow: no file descriptor, thread or
/// memory is leaked by a converge, the socket or the metrics.
#[test]
fn a_thousand_ticks_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "10ms");
    // Warm up: allocator pools, the blocking thread, first-use caches.
    d.wait_for_runs(50, 60);
    let (fds, rss, threads) = d.usage();
    let at = d.runs();
    d.wait_for_runs(at + 1000, 240);
    let (fds_after, rss_after, threads_after) = d.usage();
    eprintln!(
        "1000 ticks: fds {fds} -> {fds_after}, RSS {rss} -> {rss_after} KiB, threads {threads} -> {threads_after}"
    );
    assert_eq!(fds_after, fds, "file descriptors leaked");
    assert!(
        rss_after < rss + 1024,
        "RSS grew by {} KiB over 1000 ticks",
        rss_after.saturating_sub(rss)
    );
    assert!(
        threads_after <= threads + 1,
        "threads {threads} -> {threads_after}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("driftless.prom")).unwrap();
    assert!(metrics.contains("driftless_in_sync 1"), "{metrics}");
}

/// SIGTERM while idle: the daemon exits 0 at once and removes its socket.
#[test]
fn sigterm_while_idle_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), "1h");
    d.wait_for_runs(1, 30);
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!dir.path().join("control.sock").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("root/etc/motd")).unwrap(),
        "hello"
    );
}

/// `converge --now` goes through a running daemon: the run's events are
/// streamed back, the exit code is the converge's; `--dry-run` changes
/// nothing; an ad hoc `--root` run never goes through the daemon.
#[test]
fn converge_now_goes_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "1h");
    d.wait_for_runs(1, 30);
    let motd = dir.path().join("root/etc/motd");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_driftless"))
            .arg("--config")
            .arg(&d.config)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    std::fs::write(&motd, "drifted").unwrap();
    let dry = cli(&["converge", "--now", "--dry-run", "--json"]);
    assert_eq!(
        dry.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    // JSON lines: the run's events as they came, then the same document as
    // an in-process converge's.
    let stdout = String::from_utf8_lossy(&dry.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let (doc, events) = lines.split_last().expect("an answer");
    assert!(
        events.iter().any(|e| e["type"] == "event"),
        "no events streamed: {stdout}"
    );
    let doc = crate::json_schema::check(&serde_json::to_string(doc).unwrap(), 2);
    assert_eq!(doc["command"], "converge", "{doc}");
    assert_eq!(doc["result"], "changes_pending", "{doc}");
    assert_eq!(doc["mode"], "audit", "{doc}");
    assert_eq!(doc["changes"][0]["path"], "/etc/motd", "{doc}");
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "drifted",
        "a dry run changed the host"
    );

    let run = cli(&["converge", "--now"]);
    assert_eq!(
        run.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let progress = String::from_utf8_lossy(&run.stderr);
    assert!(
        progress.contains("[1/1] file:/etc/motd: write file"),
        "{progress}"
    );
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("1 change applied"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello");
    assert_eq!(d.runs(), 3, "the daemon made both runs");

    // An ad hoc run: its own root, in this process.
    let other = dir.path().join("other-root");
    let adhoc = cli(&[
        "converge",
        "--now",
        "--create-root",
        "--repo",
        dir.path().join("repo").to_str().unwrap(),
        "--root",
        other.to_str().unwrap(),
        "--host",
        "h",
    ]);
    assert_eq!(
        adhoc.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&adhoc.stderr)
    );
    assert_eq!(d.runs(), 3, "an ad hoc run went through the daemon");
    assert_eq!(
        std::fs::read_to_string(other.join("etc/motd")).unwrap(),
        "hello"
    );
}

/// The first line the daemon answers `request` with.
fn ask_raw(socket: &Path, request: &[u8]) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
}

/// Regression: a request line that was not UTF-8 was closed without an
/// answer, while every other malformed line got `refused`.
#[test]
fn a_request_that_is_not_utf8_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let _d = Daemon::start(dir.path(), "1h");
    let sock = dir.path().join("control.sock");
    let answer = ask_raw(&sock, b"\xff\xfe{\"request\":\"status\"}\n");
    assert_eq!(answer["type"], "refused", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("not UTF-8"),
        "{answer}"
    );
    // The daemon goes on serving.
    assert_eq!(
        ask_raw(&sock, b"{\"request\":\"status\"}\n")["type"],
        "status"
    );
}

/// Regression: a daemon that accepted but never answered made `status`
/// fail (exit 1 after 10 s) without showing anything; status always
/// answers, from the state files, and says the daemon did not.
#[test]
fn status_shows_the_state_files_when_the_daemon_does_not_answer() {
    let env = crate::util::Env::new();
    let sock = env.path().join("control.sock");
    env.set_config(&format!("[daemon]\nsocket = '{}'\n", sock.display()));
    // A listener that never accepts: connecting works, nobody answers.
    let _mute = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let r = env.run(&["status", "--json"]);
    r.expect_code(0);
    let doc = crate::json_schema::check(&r.stdout, 0);
    assert!(doc["status"]["daemon"].is_null(), "{doc}");
    let why = doc["status"]["daemon_error"].as_str().unwrap_or_default();
    assert!(why.contains("no answer within 5 s"), "{doc}");
    let text = env.run(&["status"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains("daemon:      did not answer"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("last run:    never"),
        "{}",
        text.stdout
    );
}

/// Regression: 1500 idle connections used up the daemon's 1024
/// descriptors, `accept` failed and was retried at once, writing about
/// 1 GB of warnings to the journal in 40 s, and `status` got no answer.
/// Now at most 64 connections are served at once (the rest are told
/// "busy"), a connection that sends no request is dropped after 5 s, a
/// failing `accept` backs off and is logged once a minute, and `status`
/// answers throughout (from the state files while the daemon is busy).
#[test]
fn a_flood_of_idle_connections_neither_starves_the_daemon_nor_floods_its_log() {
    let dir = tempfile::tempdir().unwrap();
    // Few descriptors, so that the flood also makes `accept` fail.
    let d = Daemon::start_with(dir.path(), "1h", HOST_FILE, &["prlimit", "--nofile=48"]);
    d.wait_for_runs(1, 30);
    let inherited: Vec<u32> = fd_numbers(d.child.id())
        .into_iter()
        .filter(|&n| n >= 48)
        .collect();
    let sock = dir.path().join("control.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = runtime.block_on(async {
        let mut open = Vec::new();
        for _ in 0..400 {
            let connect = tokio::net::UnixStream::connect(&sock);
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(20), connect).await {
                open.push(s);
            }
        }
        open
    });
    assert!(flood.len() > 48, "only {} connections got in", flood.len());
    // While flooded: status answers (the daemon's view, or the state files
    // with the reason the daemon gave none).
    let during = d.status();
    assert!(
        during["status"]["daemon"].is_object() || during["status"]["daemon_error"].is_string(),
        "{during}"
    );
    // Only what the daemon opened counts: descriptors it inherited from
    // this test process (which runs other tests beside this one, and
    // libraries that open sockets without close-on-exec) were there
    // before the flood, numbered past the limit.
    let fds = fd_numbers(d.child.id())
        .into_iter()
        .filter(|n| !inherited.contains(n))
        .count();
    assert!(fds <= 48, "{fds} descriptors");
    // The flood ends: the daemon serves again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.status()["status"]["daemon"].is_object() {
        assert!(Instant::now() < deadline, "the daemon did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("--config")
        .arg(&d.config)
        .args(["converge", "--now"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let failures = log.matches("accept failed").count();
    assert!(
        failures <= 2,
        "{failures} accept failures logged:\n{}",
        &log[..log.len().min(4000)]
    );
}

/// Regression: SIGTERM while the daemon ran a client's `converge --now`
/// rolled the converge back, but the daemon exited before writing the
/// client's last line: the client said "the daemon closed the connection"
/// and exited 1 instead of 4.
#[test]
fn a_client_gets_its_result_when_the_daemon_is_stopped_mid_converge() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("check-started");
    let host_file = format!(
        "{HOST_FILE}[[check]]\nname = 'slow'\ncommand = ['sh', '-c', 'touch {}; sleep 20']\ntimeout = '60s'\nretries = 0\n",
        marker.display()
    );
    let mut d = Daemon::start_with(dir.path(), "1h", &host_file, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The first run (a slow check too) ends; then drift to converge again.
    while d.runs() < 1 {
        assert!(Instant::now() < deadline, "no first run");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(dir.path().join("root/etc/motd"), "drifted").unwrap();
    let client = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("--config")
        .arg(&d.config)
        .args(["converge", "--now", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the check did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = client.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = crate::json_schema::check(stdout.lines().last().unwrap(), 4);
    assert_eq!(doc["result"], "rolled_back", "{doc}");
    assert!(d.child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("root/etc/motd")).unwrap(),
        "drifted",
        "rolled back to what was there"
    );
}

/// Regression (issue 20, 7 and 8): a config edited without a reload was
/// not visible anywhere (the daemon ran the old one while `source status`
/// read the new); with an invalid drop-in every command failed, `status`
/// included, though the daemon ran fine; there was no config check.
#[test]
fn status_says_a_reload_is_pending_and_answers_with_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "1h");
    d.wait_for_runs(1, 30);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .arg("--config")
            .arg(&d.config)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(d.status()["status"]["reload_pending"], false);
    let (code, out, _) = cli(&["config", "check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("agent config valid"), "{out}");

    // Edited, not reloaded: status and converge --now say so.
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace("interval = '1h'", "interval = '2h'"),
    )
    .unwrap();
    assert_eq!(d.status()["status"]["reload_pending"], true);
    let (_, out, _) = cli(&["status"]);
    assert!(out.contains("RELOAD PENDING"), "{out}");
    let (code, out, err) = cli(&["converge", "--now"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("the daemon runs an older agent config"),
        "{out}"
    );

    // A broken drop-in: the check names it, status still answers (exit 0)
    // and says the config is invalid; the daemon answers from its own.
    let dropins = dir.path().join("agent.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::write(
        dropins.join("50-bad.toml"),
        "[schedule]\ninterval = 'soon'\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["config", "check"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("50-bad.toml:2:"), "{err}");
    let (code, out, err) = cli(&["status", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let doc = crate::json_schema::check(&out, 0);
    assert!(
        doc["status"]["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("50-bad.toml")),
        "{doc}"
    );
    let (_, out, _) = cli(&["status"]);
    assert!(out.contains("AGENT CONFIG INVALID"), "{out}");
}

/// Issue 20, 5 and 12, on a daemon outside systemd: a plan's notice never
/// lands in `daemon.last_run.error` of a run that went well; a metrics
/// textfile that cannot be written is a warning with its reason, and
/// `status` shows it; a tick that changes nothing writes one info line.
#[test]
fn notices_are_no_errors_metrics_failures_show_and_a_no_op_tick_says_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let host_file = format!(
        "{HOST_FILE}[[command]]\nname = 'stamp'\ncommand = ['/bin/true']\ncreates = '{}'\n",
        dir.path().join("no-such-stamp").display()
    );
    let repo = dir.path().join("repo");
    write_repo(&repo, &[("hosts/h.toml", &host_file)]);
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    let config = dir.path().join("agent.toml");
    // The textfile's directory does not exist.
    std::fs::write(
        &config,
        format!(
            "state_dir = '{d}/state'\n[schedule]\ninterval = '300ms'\nsplay = '0s'\n[daemon]\nsocket = '{d}/control.sock'\n[metrics]\ntextfile = '{d}/missing/driftless.prom'\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("--config")
        .arg(&config)
        .args(["daemon", "--host", "h", "--repo"])
        .arg(&repo)
        .arg("--root")
        .arg(dir.path().join("root"))
        .env("DRIFTLESS_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon { child, config };
    d.wait_for_runs(6, 30);
    let st = d.status();
    let daemon = &st["status"]["daemon"];
    assert!(
        daemon["last_run"]["error"].is_null(),
        "a notice landed in an error field: {st}"
    );
    let why = daemon["metrics_error"].as_str().unwrap_or_default();
    assert!(why.contains("missing"), "{st}");
    let text = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("--config")
        .arg(&d.config)
        .arg("status")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("metrics:     NOT WRITTEN"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("could not write the metrics"))
        .collect();
    assert_eq!(warned.len(), 1, "said once, with its reason: {warned:?}");
    assert!(warned[0].contains("missing"), "{}", warned[0]);

    // Without the command, every tick changes nothing: one info line each.
    write_repo(&repo, &[("hosts/h.toml", HOST_FILE)]);
    let runs = d.runs();
    d.wait_for_runs(runs + 2, 30);
    let from = std::fs::read_to_string(&log).unwrap().len();
    let runs = d.runs();
    d.wait_for_runs(runs + 5, 30);
    let text = std::fs::read_to_string(&log).unwrap();
    let info: Vec<&str> = text[from..]
        .lines()
        .filter(|l| l.contains(" INFO "))
        .collect();
    assert!(info.len() >= 5, "{info:#?}");
    assert!(
        info.iter().all(|l| l.contains("in sync at")),
        "a no-op tick says more than its one line: {info:#?}"
    );
}

/// The numbers of the descriptors process `pid` has open.
fn fd_numbers(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
