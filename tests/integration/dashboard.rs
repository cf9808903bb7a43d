//! `driftless fleet serve` (issue 26): the dashboard against the fleet
//! harness of `fleet.rs` (etcd on loopback, agents in two waves), looked
//! at in a real headless Chromium driven by `chromedriver` over the
//! WebDriver protocol (a tiny client over `TcpStream` below), and its
//! endpoints read directly: `/api/status` is `fleet status --json`,
//! `/events` says when a record changed, and beyond loopback it needs TLS
//! and a token.
//!
//! Needs etcd (as the fleet tests) and Debian's `chromium` and
//! `chromium-driver`; nothing is skipped when they are missing: the test
//! fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::fleet::{Agent, Fleet, LONG_TTL, eventually};
use crate::gitserver::{free_port, make_certs, sign, wait_for_port};

const WAVES: &str =
    "[[wave]]\nname = \"canary\"\nhosts = [\"c*\"]\n\n[[wave]]\nname = \"mid\"\nhosts = [\"m*\"]\n";

/// A running `fleet serve`, stopped (SIGTERM, waited for) when dropped.
struct Serve {
    child: Child,
    /// Reaped already (its pid is no longer ours to signal).
    reaped: bool,
    /// `http://127.0.0.1:PORT` (or https), without the final slash.
    base: String,
}

impl Serve {
    /// Starts `fleet serve --listen 127.0.0.1:0 ARGS` with `agent`'s
    /// config and waits for the address it says it listens on.
    fn start(agent: &Agent, args: &[&str]) -> Serve {
        let mut all = vec!["fleet", "serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = agent
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fleet serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, url)) = line.split_once("the dashboard is at ") {
                    let url = url.split(' ').next().unwrap_or("").trim_end_matches('/');
                    let _ = tx.send(url.to_owned());
                } else {
                    eprintln!("fleet serve: {line}");
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("fleet serve says where it listens");
        Serve {
            child,
            reaped: false,
            base,
        }
    }

    fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }
}

impl Serve {
    /// Stops it as Ctrl-C would (SIGTERM): its exit code and stdout.
    fn stop(mut self) -> (Option<i32>, String) {
        self.terminate();
        let code = self.child.wait().expect("wait for fleet serve").code();
        self.reaped = true;
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).expect("its stdout");
        }
        (code, out)
    }

    fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if !self.reaped {
            self.terminate();
            let _ = self.child.wait();
        }
    }
}

/// An answer read off the wire.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One HTTP/1.1 request to 127.0.0.1:`port`. The answer is read to its
/// `Content-Length` (chromedriver keeps the connection open whatever the
/// request says), else to the end (the dashboard closes every connection).
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).expect("read the answer's head");
        assert!(n > 0, "the answer ended in its head: {raw:?}");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match length {
        // HEAD: a length, and no body.
        Some(_) if method == "HEAD" => {}
        Some(n) => {
            while body.len() < n {
                let got = s.read(&mut chunk).expect("read the answer's body");
                assert!(got > 0, "the answer ended early");
                body.extend_from_slice(&chunk[..got]);
            }
        }
        None => {
            s.read_to_end(&mut body).expect("read the answer");
        }
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    Answer { status, head, body }
}

/// A chunked body, joined.
fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// Headless Chromium through chromedriver; the session is ended and the
/// driver stopped when dropped.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Chromium's own process, killed if ending the session did not end it.
    chromium: Option<i32>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium chromium-driver)");
        wait_for_port(port);
        let profile = tempfile::tempdir().expect("tempdir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            // Nothing but 127.0.0.1 resolves: a request elsewhere fails.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
        ];
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            chromium: None,
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium(), "args": args},
        }}});
        let v = b.call("POST", "/session", Some(&caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b.chromium = v["capabilities"]["goog:processID"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        b
    }

    /// A WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let a = request(self.port, method, path, body);
        let v: Value = serde_json::from_slice(&a.body)
            .unwrap_or_else(|e| panic!("chromedriver: {e}: {}", String::from_utf8_lossy(&a.body)));
        let value = v["value"].clone();
        assert!(
            a.status == 200 && value.get("error").is_none(),
            "{method} {path}: {} {value}",
            a.status
        );
        value
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn go(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("a screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends Chromium; a driver that does not answer is killed below.
            let (port, path) = (self.port, self.session_path(""));
            let _ = std::panic::catch_unwind(move || request(port, "DELETE", &path, None));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if let Some(pid) = self.chromium {
            // Gone already after the session ended; else it is ours.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Debian's Chromium: the binary itself (its /usr/bin/chromium is a
/// wrapper script).
fn chromium() -> String {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed (apt-get install chromium chromium-driver)")
        .to_owned()
}

/// The state word the page shows for `host`, or null.
fn state_of(b: &Browser, host: &str) -> Value {
    b.eval(&format!(
        "const r = document.querySelector('[data-host=\"{host}\"]'); return r ? r.dataset.state : null;"
    ))
}

/// Where the test keeps what it shows (the screenshot).
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// The dashboard in a real browser: every host and wave shown; a host
/// that applies a new commit (its check sleeps 4 s) shows `applying`, then
/// `healthy` on that commit, without a reload; a screenshot is kept; and
/// no request of the page left 127.0.0.1.
#[test]
#[ignore = "needs etcd-server, etcd-client, chromium and chromium-driver installed: run with --include-ignored (CI does)"]
fn the_dashboard_shows_hosts_and_waves_live_in_a_real_browser() {
    let etcd = Etcd::start(1);
    let hosts = ["c1", "m1", "m2"];
    let fleet = Fleet::new(&hosts, &etcd, LONG_TTL);
    let v1 = fleet.commit("v1", false, Some(WAVES));
    fleet.converge(&hosts, 2);
    let c1 = fleet.agent("c1");
    let serve = Serve::start(c1, &[]);
    let browser = Browser::start();
    browser.go(&format!("{}/", serve.base));
    eventually("the page shows every host and wave", 20, || {
        let seen = browser.eval(
            "return [...document.querySelectorAll('[data-host]')].map(e => e.dataset.host)
               .concat([...document.querySelectorAll('#progress [data-wave]')].map(e => 'wave:' + e.dataset.wave));",
        );
        let seen: Vec<&str> = seen
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ["c1", "m1", "m2", "wave:canary", "wave:mid"]
            .iter()
            .all(|w| seen.contains(w))
    });
    let text = browser.eval("return document.body.innerText;");
    let text = text.as_str().expect("text");
    for w in ["c1", "m1", "m2", "canary", "mid"] {
        assert!(text.contains(w), "{w} not shown: {text}");
    }
    assert_eq!(state_of(&browser, "c1"), "healthy");
    // A mark the page keeps until it is loaded again.
    browser.eval("window.__kept = 'not reloaded'; return null;");

    // c1 applies v2, whose check takes 4 s: applying, then healthy.
    let v2 = fleet.commit_checked(
        "v2",
        "\n[[check]]\nname = 'app settles'\ncommand = ['/bin/sleep', '4']\nretries = 0\n",
    );
    let args = c1.converge_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = c1
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("converge c1");
    eventually("the page shows c1 applying", 20, || {
        state_of(&browser, "c1") == "applying"
    });
    // `fleet status` says so too, while the check runs.
    let o = c1.run(&["fleet", "status"]);
    assert!(
        o.stdout.contains(&format!("c1: runs {}", &v1[..12]))
            && o.stdout.contains(&format!("APPLYING {} now", &v2[..12])),
        "{}{}",
        o.stdout,
        o.stderr
    );
    let applying =
        browser.eval("return document.querySelector('[data-host=\"c1\"] .state').textContent;");
    assert!(
        applying.as_str().is_some_and(|t| t.contains(&v2[..12])),
        "{applying}"
    );
    eventually("the page shows c1 healthy on v2", 30, || {
        state_of(&browser, "c1") == "healthy"
            && browser
                .eval("return document.querySelector('[data-host=\"c1\"] code').title;")
                .as_str()
                == Some(v2.as_str())
    });
    assert_eq!(
        run.wait().expect("converge c1").code(),
        Some(2),
        "c1 applied v2"
    );
    let kept =
        browser.eval("return [window.__kept, performance.getEntriesByType('navigation').length];");
    assert_eq!(kept, json!(["not reloaded", 1]), "the page was reloaded");

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let shot = artifacts().join("dashboard.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());

    // Every request of the page went to this server; the page names no
    // address of elsewhere.
    let names = browser.eval(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => e.name);",
    );
    let names: Vec<&str> = names
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    let own = format!("{}/", serve.base);
    for n in &names {
        assert!(n.starts_with(&own), "a request left {own}: {n}");
    }
    let refs = browser.eval(
        "return [...document.querySelectorAll('[src],[href],[action]')].map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('action'));",
    );
    for r in refs.as_array().expect("refs") {
        let r = r.as_str().unwrap_or("");
        assert!(r.starts_with('/') && !r.starts_with("//"), "{r}");
    }
    let html = request(serve.port(), "GET", "/", None);
    let html = String::from_utf8_lossy(&html.body);
    assert!(!html.contains("://") && !html.contains("\"//"), "{html}");
}

/// `/api/status` (also `?commit=`) is the `fleet` of `fleet status --json`;
/// `/events` sends an event when a host's record changes; other methods,
/// paths, commits and oversized heads are refused; beyond loopback the
/// command refuses to listen without TLS and a token (exit 1, why); with
/// TLS and a token, a request without the token gets 401 and with it 200;
/// with TLS and a client CA, only a client with a certificate gets in.
#[test]
#[ignore = "needs etcd-server, etcd-client, chromium and chromium-driver installed: run with --include-ignored (CI does)"]
fn the_dashboards_api_is_fleet_status_its_events_follow_records_and_beyond_loopback_needs_tls_and_a_token()
 {
    let etcd = Etcd::start(1);
    let hosts = ["c1", "m1"];
    let fleet = Fleet::new(&hosts, &etcd, LONG_TTL);
    let v1 = fleet.commit("v1", false, Some(WAVES));
    fleet.converge(&hosts, 2);
    fleet.commit("v2", true, None);
    fleet.converge(&["c1"], 4);
    let c1 = fleet.agent("c1");
    let serve = Serve::start(c1, &[]);

    let without_time = |mut v: Value| {
        v.as_object_mut().expect("an object").remove("read_at");
        v
    };
    let of_v1 = format!("?commit={v1}");
    for (query, args) in [
        ("", vec!["fleet", "status", "--json"]),
        (
            of_v1.as_str(),
            vec!["fleet", "status", "--json", "--commit", &v1],
        ),
    ] {
        let a = request(serve.port(), "GET", &format!("/api/status{query}"), None);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(
            a.head.contains("Content-Type: application/json"),
            "{}",
            a.head
        );
        let api: Value = serde_json::from_slice(&a.body).expect("json");
        let o = c1.run(&args);
        assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
        let cli = crate::json_schema::check(&o.stdout, o.code)["fleet"].clone();
        assert_eq!(without_time(api), without_time(cli), "{query}");
    }
    let page = request(serve.port(), "GET", "/", None);
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .contains("Content-Security-Policy: default-src 'self'"),
        "{}",
        page.head
    );
    for (method, path, status) in [
        ("GET", "/nothing-here", 404),
        ("POST", "/api/status", 405),
        ("PUT", "/", 405),
        ("GET", "/api/status?commit=%3Cscript%3E", 400),
    ] {
        assert_eq!(
            request(serve.port(), method, path, None).status,
            status,
            "{method} {path}"
        );
    }
    let head = request(serve.port(), "HEAD", "/", None);
    assert_eq!((head.status, head.body.len()), (200, 0));
    // Without a token, only requests for this machine are answered: a
    // page elsewhere cannot read it through the browser by DNS rebinding.
    for host in ["rebound.example:8430", ""] {
        let mut s = TcpStream::connect(("127.0.0.1", serve.port())).expect("connect");
        let req = format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 421 "), "Host {host}: {answer}");
    }
    // A request head over 16 KiB is refused, and the server goes on.
    let mut big = TcpStream::connect(("127.0.0.1", serve.port())).expect("connect");
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20 << 10));
    // The server may answer (and close) before it has read it all.
    let _ = big.write_all(huge.as_bytes());
    let _ = big.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_eq!(request(serve.port(), "GET", "/style.css", None).status, 200);

    // The event stream: one event at once, one when m1's record changes
    // (drift healed by its next run).
    let mut events = TcpStream::connect(("127.0.0.1", serve.port())).expect("connect");
    events
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .expect("ask");
    let mut seen = String::new();
    let mut read_until = |count: usize, within: Duration| {
        let until = Instant::now() + within;
        let mut buf = [0u8; 1024];
        while seen.matches("event: change").count() < count {
            assert!(
                Instant::now() < until,
                "no event {count} within {within:?}: {seen}"
            );
            let n = events.read(&mut buf).expect("read the stream");
            assert!(n > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.clone()
    };
    let first = read_until(1, Duration::from_secs(10));
    assert!(first.contains("Content-Type: text/event-stream"), "{first}");
    std::fs::write(fleet.agent("m1").root().join("etc/version"), "by hand\n").expect("drift");
    // Held at its last good state (v2 is halted), with the drift healed.
    fleet.converge(&["m1"], 3);
    read_until(2, Duration::from_secs(10));
    // Ctrl-C (SIGTERM) stops it, with a page still open: exit 0.
    let (code, out) = serve.stop();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the dashboard stopped"), "{out}");

    // Beyond loopback: refused without TLS and a token, before listening.
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    for extra in [&[][..], &["--tls-cert", cert, "--tls-key", key][..]] {
        let mut args = vec!["fleet", "serve", "--listen", "0.0.0.0:0"];
        args.extend_from_slice(extra);
        let o = c1.run(&args);
        assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(
            all.contains(
                "refusing to serve the dashboard on 0.0.0.0:0 without TLS and authentication"
            ),
            "{all}"
        );
    }

    // With TLS and a token (on 127.0.0.1, as beyond loopback it would be).
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let tls = Serve::start(
        c1,
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    assert!(tls.base.starts_with("https://127.0.0.1:"), "{}", tls.base);
    let curl = |auth: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(dir.path().join("ca.crt"));
        if let Some(a) = auth {
            c.args(["-H", a]);
        }
        let out = c
            .arg(format!("{}/api/status", tls.base))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(None), "401");
    assert_eq!(curl(Some("Authorization: Bearer wrong")), "401");
    assert_eq!(curl(Some("Authorization: Bearer s3cret-token")), "200");
    drop(tls);

    // Or with client certificates: only a client with a certificate of
    // that CA gets through the handshake.
    sign(
        dir.path(),
        "client",
        "/CN=ops",
        "extendedKeyUsage=clientAuth\n",
    );
    let ca = dir.path().join("ca.crt");
    let mtls = Serve::start(
        c1,
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--client-ca",
            ca.to_str().expect("utf-8"),
        ],
    );
    let curl = |with_cert: bool| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca);
        if with_cert {
            c.arg("--cert")
                .arg(dir.path().join("client.crt"))
                .arg("--key")
                .arg(dir.path().join("client.key"));
        }
        let out = c
            .arg(format!("{}/api/status", mtls.base))
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(!curl(false).0, "no client certificate, no answer");
    assert_eq!(curl(true), (true, "200".to_owned()));
}
