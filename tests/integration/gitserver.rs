//! A real smart-HTTP git server over TLS on 127.0.0.1 (nginx + fcgiwrap +
//! git-http-backend, certificate from a throwaway CA), started and stopped
//! by the test, by pid. Needs `nginx`, `fcgiwrap` and `openssl`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub(crate) fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command that must succeed.
pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process stopped with SIGTERM (by pid) and reaped on drop.
pub(crate) struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// A throwaway CA (`ca.crt`) and a certificate for 127.0.0.1 signed by it
/// (`server.crt`, `server.key`), in `dir`.
pub(crate) fn make_certs(dir: &Path) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        ])
        .args(["-days", "2", "-subj", "/CN=driftless test CA"]));
    sign(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\n",
    );
}

/// A key and certificate `NAME.key`, `NAME.crt` for `subject`, signed by
/// the CA of [`make_certs`] in `dir`, with the X.509 v3 extensions `ext`.
pub(crate) fn sign(dir: &Path, name: &str, subject: &str, ext: &str) {
    let file = |suffix: &str| format!("{name}.{suffix}");
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .args([file("key"), "-out".to_owned(), file("csr")])
        .args(["-subj", subject]));
    std::fs::write(dir.join(file("ext")), ext).unwrap();
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-req", "-in"])
        .arg(file("csr"))
        .args([
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
        ])
        .arg(file("crt"))
        .args(["-days", "2", "-extfile"])
        .arg(file("ext")));
}

/// nginx + fcgiwrap serving the bare repos in `dir` at
/// `https://127.0.0.1:PORT/git/NAME.git`.
pub(crate) struct HttpsGit {
    dir: PathBuf,
    /// The port it listens on (kept across [`HttpsGit::stop`] and
    /// [`HttpsGit::start`]).
    pub port: u16,
    servers: Vec<Server>,
}

impl HttpsGit {
    /// Certificates in `dir`, then the servers. `dir` must be reachable by
    /// nginx's workers (made 0755).
    pub(crate) fn new(dir: &Path) -> Self {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        make_certs(dir);
        let mut s = Self {
            dir: dir.to_owned(),
            port: free_port(),
            servers: Vec::new(),
        };
        s.start();
        s
    }

    /// The CA that signed the server's certificate.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The URL of the bare repo `dir/NAME.git`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/git/{name}.git", self.port)
    }

    /// Stops both servers (the port refuses connections until `start`).
    pub(crate) fn stop(&mut self) {
        self.servers.clear();
    }

    /// Starts both servers (again).
    pub(crate) fn start(&mut self) {
        let dir = &self.dir;
        let sock = dir.join("fcgi.sock");
        let _ = std::fs::remove_file(&sock);
        let fcgi = Server(
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
        let d = dir.display();
        let port = self.port;
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
        let nginx = Server(
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
        self.servers = vec![nginx, fcgi];
    }
}
