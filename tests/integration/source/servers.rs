//! End-to-end fetches over real ssh (sshd) and https (nginx + fcgiwrap +
//! git-http-backend) on 127.0.0.1. Needs `openssh-server`, `nginx`,
//! `fcgiwrap`, `openssl` installed; each server is a child of the test and is
//! stopped by its own pid when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::common::*;
use crate::gitserver::{HttpsGit, Server, free_port, run, wait_for_port};
use driftless::source::git::{GitSourceSettings, fetch, open_or_init_cache};

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

#[test]
#[ignore = "needs nginx and fcgiwrap installed: run with --include-ignored (CI does)"]
fn fetch_over_https_with_own_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_bare, head) = bare_source(dir);
    let server = HttpsGit::new(dir);
    let url = server.url("fleet");
    let repo = open_or_init_cache(&dir.join("cache")).unwrap();

    // Our CA: accepted.
    let s = GitSourceSettings {
        ca_file: Some(server.ca()),
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
