//! End-to-end fetches over real ssh (sshd) and https (nginx + fcgiwrap +
//! git-http-backend) on 127.0.0.1. Needs `openssh-server`, `nginx`,
//! `fcgiwrap`, `openssl` installed; each server is a child of the test and is
//! stopped by its own pid when the test ends.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::common::*;
use driftless::source::git::{GitSourceSettings, fetch, open_or_init_cache};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process stopped with SIGTERM (by pid) and reaped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// A bare repo `dir/fleet.git` with one commit on main; returns (path, head).
fn bare_source(dir: &Path) -> (PathBuf, gix::ObjectId) {
    let work = new_repo(&dir.join("work"));
    let head = commit_file(&work, "hosts/web1.toml", "x = 1\n", "c1");
    let bare = dir.join("fleet.git");
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    (bare, head)
}

#[test]
#[ignore = "needs openssh-server installed: run with --include-ignored (CI does)"]
fn fetch_over_ssh_with_key_and_known_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (bare, head) = bare_source(dir);
    for name in ["host_key", "deploy_key", "other_host_key"] {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(name)));
    }
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/deploy_key.pub\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let _sshd = Server(
        Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);

    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
    let url = format!("ssh://root@127.0.0.1:{port}{}", bare.display());
    let s = GitSourceSettings {
        ssh_key: Some(dir.join("deploy_key")),
        known_hosts: Some(known_hosts),
        ..settings(&url, Duration::from_secs(20))
    };
    let repo = open_or_init_cache(&dir.join("cache")).unwrap();
    let out = fetch(&repo, &s, &AtomicBool::new(false)).unwrap();
    assert_eq!(out.head, head);
    let again = fetch(&repo, &s, &AtomicBool::new(false)).unwrap();
    assert!(!again.pack_received);

    // A different host key in known_hosts: refused.
    let other_pub = std::fs::read_to_string(dir.join("other_host_key.pub")).unwrap();
    let wrong_hosts = dir.join("wrong_known_hosts");
    std::fs::write(&wrong_hosts, format!("[127.0.0.1]:{port} {other_pub}")).unwrap();
    let s_wrong = GitSourceSettings {
        known_hosts: Some(wrong_hosts),
        ..s.clone()
    };
    let err = fetch(&repo, &s_wrong, &AtomicBool::new(false)).unwrap_err();
    let msg = format!("{err:#}");
    eprintln!("wrong host key: {msg}");
    assert!(msg.contains("ssh said: "), "{msg}");
    assert!(msg.contains("Host key verification failed"), "{msg}");

    // No key: BatchMode fails at once instead of prompting.
    let s_nokey = GitSourceSettings {
        ssh_key: Some(dir.join("other_host_key")),
        ..s.clone()
    };
    let started = Instant::now();
    let err = fetch(&repo, &s_nokey, &AtomicBool::new(false)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    eprintln!("wrong key: {err:#}");
    assert!(format!("{err:#}").contains("Permission denied"), "{err:#}");
}

/// A throwaway CA and a certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        ])
        .args(["-days", "2", "-subj", "/CN=driftless test CA"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]));
}

#[test]
#[ignore = "needs nginx and fcgiwrap installed: run with --include-ignored (CI does)"]
fn fetch_over_https_with_own_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // nginx workers and fcgiwrap must reach the socket and repos.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_bare, head) = bare_source(dir);
    make_certs(dir);

    let sock = dir.join("fcgi.sock");
    let _fcgi = Server(
        Command::new("fcgiwrap")
            .arg("-s")
            .arg(format!("unix:{}", sock.display()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "fcgiwrap did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let port = free_port();
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d}/server.crt;
    ssl_certificate_key {d}/server.key;
    location ~ ^/git(/.*) {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {d};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_pass unix:{sock};
    }}
  }}
}}
"#,
            sock = sock.display()
        ),
    )
    .unwrap();
    let _nginx = Server(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);

    let url = format!("https://127.0.0.1:{port}/git/fleet.git");
    let repo = open_or_init_cache(&dir.join("cache")).unwrap();

    // Our CA: accepted.
    let s = GitSourceSettings {
        ca_file: Some(dir.join("ca.crt")),
        ..settings(&url, Duration::from_secs(20))
    };
    let out = fetch(&repo, &s, &AtomicBool::new(false)).unwrap();
    assert_eq!(out.head, head);
    let again = fetch(&repo, &s, &AtomicBool::new(false)).unwrap();
    assert!(!again.pack_received && !again.changed);

    // System roots only: the test CA is unknown, the certificate refused.
    let s_system = settings(&url, Duration::from_secs(20));
    let err = fetch(&repo, &s_system, &AtomicBool::new(false)).unwrap_err();
    let msg = format!("{err:#}");
    eprintln!("unknown CA: {msg}");
    assert!(
        msg.contains("UnknownIssuer") || msg.contains("certificate"),
        "{msg}"
    );
}
