//! etcd on loopback for the tests that need one: the fleet's (tests/integration/fleet.rs)
//! and the system tests whose sandbox hosts coordinate through it (they
//! share this machine's network namespace, so 127.0.0.1 reaches it). Each
//! cluster has its own ports and data directory, and is killed when
//! dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gitserver::free_port;

/// One etcd member on loopback, stopped (killed) when dropped.
pub(crate) struct Member {
    name: String,
    dir: PathBuf,
    client: u16,
    peer: u16,
    cluster: String,
    child: Option<Child>,
}

impl Member {
    /// Its client URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Starts (or starts again) its etcd.
    pub(crate) fn start(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "driftless-test",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (apt install etcd-server)");
        self.child = Some(child);
    }

    /// Kills its etcd.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster of `n` members on loopback.
pub(crate) struct Etcd {
    _dir: tempfile::TempDir,
    /// Its members, in the order of [`Etcd::endpoints`].
    pub(crate) members: Vec<Member>,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster takes a write.
    pub(crate) fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| Member {
                name: format!("m{i}"),
                dir: dir.path().join(format!("m{i}")),
                client: *c,
                peer: *p,
                cluster: cluster.clone(),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        let e = Etcd { _dir: dir, members };
        e.wait_healthy();
        e
    }

    /// The members' client URLs.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    /// Waits until a write through the cluster succeeds.
    pub(crate) fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoints().join(",")))
                .args(["put", "/health", "ok"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `etcdctl` against `etcd`, its stdout.
pub(crate) fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(args)
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
