//! A small HTTPS file server on 127.0.0.1 for the download tests: rustls
//! with a certificate from a throwaway CA (`openssl`, as the git servers'),
//! serving fixed bodies by path with `Range` support, a path that answers
//! 500, and a log of the requests it saw. Stopped (and its port closed)
//! by [`HttpsFiles::stop`] or on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A request as the server saw it: its path and its `Range` header.
#[derive(Clone, Debug)]
// The path shows in a failed assertion's `{:?}`.
#[allow(dead_code)]
pub(crate) struct Seen {
    pub path: String,
    pub range: Option<String>,
}

/// The server; `ca_file` is what the agent must trust.
pub(crate) struct HttpsFiles {
    pub port: u16,
    pub ca_file: PathBuf,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpsFiles {
    /// Serves `files` (path -> body) on `port` (0: any free port), with
    /// certificates made in `dir`. `/fail` answers 500.
    pub(crate) fn start(dir: &Path, port: u16, files: BTreeMap<String, Vec<u8>>) -> Self {
        if !dir.join("server.crt").exists() {
            crate::gitserver::make_certs(dir);
        }
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2, config) = (stop.clone(), seen.clone(), Arc::new(config));
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // One connection at a time: curl makes one per run.
                        let _ = serve(stream, config.clone(), &files, &seen2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            ca_file: dir.join("ca.crt"),
            stop,
            seen,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The requests served so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops the server and closes its port.
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Answers one request on `stream`.
fn serve(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    files: &BTreeMap<String, Vec<u8>>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    drop(reader);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let (status, body): (&str, &[u8]) = match files.get(&path) {
        _ if path == "/fail" => ("500 Internal Server Error", b"down for maintenance\n"),
        None => ("404 Not Found", b"no such file\n"),
        Some(body) => match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let from: usize = r.trim_end_matches('-').parse().unwrap_or(0);
                if from >= body.len() {
                    ("416 Range Not Satisfiable", &b""[..])
                } else {
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                        body.len() - from,
                        body.len() - 1,
                        body.len()
                    );
                    tls.write_all(head.as_bytes())?;
                    tls.write_all(&body[from..])?;
                    tls.conn.send_close_notify();
                    return tls.flush();
                }
            }
            None => ("200 OK", body.as_slice()),
        },
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.conn.send_close_notify();
    tls.flush()
}
