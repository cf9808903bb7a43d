//! `driftless fleet serve`: the fleet on one read-only page, for
//! operators. An operator's command, never the daemon's: hosts open no
//! port. It reads what `fleet status` reads (the same function, so
//! `/api/status` is exactly the JSON of `fleet status --json`) and keeps
//! the page live with server-sent events driven by one etcd watch of the
//! fleet's prefix ([`events`]); the pages that read the fleet after the
//! same change share one read ([`reads`]).
//!
//! Everything the page needs is in the binary (a small HTML file, its
//! stylesheet and its script, no framework) and every answer forbids
//! loading anything from elsewhere (`Content-Security-Policy: default-src
//! 'self'`). The server is small and bounded: std threads, at most
//! [`MAX_CONNECTIONS`] at once and [`MAX_STREAMS`] live pages, one request
//! per connection, a bounded request head read within a deadline, GET and
//! HEAD only. Beyond loopback it needs TLS and a token or client
//! certificates ([`access`]).

mod access;
mod events;
mod http;
mod reads;
mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::debug;

use crate::app::{App, HostFilter, fleet_status};
use crate::cancel::Cancel;
use crate::fleet::etcd::WatchOf;
use crate::fleet::watch::Watcher;
use events::Changes;
use http::{Method, Refusal, Request, Response};

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Live pages (event streams) at once; more are answered 503.
const MAX_STREAMS: usize = 16;
/// Bound on one read of a request (or of the TLS handshake).
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The TLS handshake and the whole request head must be done within this.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Bound on one write: a client that does not read is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read after a refused head (see [`drain`]).
const DRAIN_MAX: usize = 64 << 10;
/// Longest commit asked for with `?commit=`.
const COMMIT_MAX: usize = 64;

/// The page, its script and its style: embedded, nothing else is loaded.
const INDEX: &str = include_str!("page/index.html");
/// The page's script.
const APP_JS: &str = include_str!("page/app.js");
/// The page's style.
const STYLE: &str = include_str!("page/style.css");

/// What `fleet serve` is asked.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Its key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A file holding the bearer token clients must show.
    pub token_file: Option<PathBuf>,
    /// The CA whose client certificates are let in.
    pub client_ca: Option<PathBuf>,
}

/// Serves the dashboard until `cancel` is asked; `ready` is told the URL
/// once it listens.
pub(crate) fn serve(
    app: &App,
    opts: &Options,
    cancel: &Cancel,
    ready: &mut dyn FnMut(&str),
) -> Result<()> {
    let fleet = app
        .settings
        .fleet
        .as_ref()
        .context("the agent config has no [fleet]: there is no fleet to show")?;
    let server = Server::new(app, opts, cancel)?;
    let listener = TcpListener::bind(opts.listen)
        .with_context(|| format!("failed to listen on {}", opts.listen))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("failed to set up the listener on {}", opts.listen))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("failed to read the address of {}", opts.listen))?;
    let what = WatchOf {
        key: format!("{}/", fleet.prefix),
        prefix: true,
        puts_only: false,
    };
    let _watch = Watcher::start(
        fleet.etcd.clone(),
        what,
        "dashboard-watch",
        "the fleet's records (the dashboard refreshes every minute without it)",
        Arc::clone(&server.changes) as Arc<dyn crate::fleet::watch::Listener>,
    )?;
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    ready(&format!("{scheme}://{local}/"));
    std::thread::scope(|scope| server.accept(&listener, scope));
    Ok(())
}

/// A connection's stream, plain or TLS.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

/// What every connection's thread shares.
struct Server<'a> {
    app: &'a App,
    cancel: &'a Cancel,
    token: Option<Vec<u8>>,
    /// Clients authenticate (a token or client certificates): a request
    /// may then name any host.
    authenticated: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    changes: Arc<Changes>,
    reads: reads::Reads,
    connections: AtomicUsize,
    streams: AtomicUsize,
}

/// Counts one of a bounded kind while alive.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<'a> Server<'a> {
    /// Checks where it may listen, reads the token and the TLS files.
    fn new(app: &'a App, opts: &Options, cancel: &'a Cancel) -> Result<Self> {
        let tls_files = match (&opts.tls_cert, &opts.tls_key) {
            (Some(cert), Some(key)) => Some(tls::TlsFiles {
                cert,
                key,
                client_ca: opts.client_ca.as_deref(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let protection = access::Protection {
            tls: tls_files.is_some(),
            token: opts.token_file.is_some(),
            client_ca: opts.client_ca.is_some(),
        };
        access::check_listen(&opts.listen, protection)?;
        let token = opts
            .token_file
            .as_deref()
            .map(access::read_token)
            .transpose()?;
        let tls = tls_files.as_ref().map(tls::server_config).transpose()?;
        Ok(Server {
            app,
            cancel,
            authenticated: protection.token || protection.client_ca,
            token,
            tls,
            changes: Arc::new(Changes::default()),
            reads: reads::Reads::default(),
            connections: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
        })
    }

    /// Accepts connections until cancelled, each on a thread of its own.
    fn accept<'s>(&'s self, listener: &TcpListener, scope: &'s std::thread::Scope<'s, '_>) {
        while !self.cancel.is_cancelled() {
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        debug!(error = %e, "the dashboard could not accept a connection");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.connections.fetch_sub(1, Ordering::SeqCst);
                debug!(%peer, "the dashboard is busy: connection closed");
                continue;
            }
            let counted = Counted(&self.connections);
            let spawned = std::thread::Builder::new()
                .name("dashboard-conn".into())
                .spawn_scoped(scope, move || {
                    let _counted = counted;
                    if let Err(e) = self.exchange(stream) {
                        debug!(%peer, error = %e, "a dashboard connection failed");
                    }
                });
            if let Err(e) = spawned {
                debug!(error = %e, "no thread for a dashboard connection");
            }
        }
    }

    /// One connection: one request, one answer.
    fn exchange(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        // The TLS handshake and the request head, however slowly their
        // bytes come, end at the deadline.
        let deadline = Instant::now() + HEAD_DEADLINE;
        let timed = http::Timed::new(stream, deadline, READ_TIMEOUT);
        let Some(config) = &self.tls else {
            let mut plain = timed;
            return self.answer(&mut plain, deadline);
        };
        let conn = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, timed);
        let answered = self.answer(&mut tls, deadline);
        tls.conn.send_close_notify();
        // The peer may be gone already; the answer's own result counts.
        let _ = tls.flush();
        answered
    }

    /// Reads the request and answers it.
    fn answer(&self, c: &mut dyn Duplex, deadline: Instant) -> io::Result<()> {
        let req = match http::read_head(c, deadline).and_then(|h| http::parse(&h)) {
            Ok(r) => r,
            Err(refusal) => {
                let Some((status, why)) = refusal.answer() else {
                    return Ok(());
                };
                let mut r = Response::text(status, why);
                if refusal == Refusal::Method {
                    r.headers.push(("Allow", "GET, HEAD".to_owned()));
                }
                http::write(c, &r, Method::Get)?;
                if refusal == Refusal::TooLarge {
                    drain(c);
                }
                return Ok(());
            }
        };
        if !access::authorized(self.token.as_deref(), req.authorization.as_deref()) {
            let mut r = Response::text(
                401,
                "this dashboard needs its token: Authorization: Bearer TOKEN",
            );
            // A browser asks for it (any user name, the token as the
            // password); scripts send it as a bearer token.
            r.headers.push((
                "WWW-Authenticate",
                "Basic realm=\"driftless fleet\", charset=\"UTF-8\"".to_owned(),
            ));
            return http::write(c, &r, req.method);
        }
        // Unauthenticated: the page is this machine's, so the request must
        // name it (else a site the operator opens could read it by DNS
        // rebinding).
        if !self.authenticated && !access::loopback_host(req.host.as_deref()) {
            let r = Response::text(
                421,
                "this dashboard answers only requests for 127.0.0.1, [::1] or localhost (or give it a token)",
            );
            return http::write(c, &r, req.method);
        }
        if req.path == "/events" {
            return self.events(c, req.method);
        }
        http::write(c, &self.route(&req), req.method)
    }

    /// The answer to a request for anything but the event stream.
    fn route(&self, req: &Request) -> Response {
        match req.path.as_str() {
            "/" | "/index.html" => Response::ok("text/html; charset=utf-8", INDEX),
            "/app.js" => Response::ok("text/javascript; charset=utf-8", APP_JS),
            "/style.css" => Response::ok("text/css; charset=utf-8", STYLE),
            "/api/status" => self.status(req.param("commit").filter(|c| !c.is_empty())),
            _ => Response::text(404, "not found"),
        }
    }

    /// `/api/status`: `fleet status --json`'s `fleet`, for `commit` (else
    /// the head fetched here), read once for every page that asks for it
    /// after the same change ([`reads`]).
    fn status(&self, commit: Option<&str>) -> Response {
        if let Some(c) = commit
            && !plain_commit(c)
        {
            return Response::text(
                400,
                "commit= takes a commit id or name: at most 64 of A-Z a-z 0-9 . _ / -",
            );
        }
        // The count before the read: a change during it reads again.
        let count = self.changes.now();
        let read = self.reads.get(commit, count, || {
            let s = fleet_status(self.app, commit, &HostFilter::default())?;
            serde_json::to_vec(&s).context("failed to write the fleet's status")
        });
        match read {
            Ok(body) => Response::ok("application/json", body.as_slice()),
            Err(e) => Response {
                status: 502,
                content_type: "application/json",
                body: serde_json::json!({ "error": format!("{e:#}") })
                    .to_string()
                    .into_bytes(),
                headers: Vec::new(),
            },
        }
    }

    /// `/events`: the live page's stream, while there is room for one.
    fn events(&self, c: &mut dyn Duplex, method: Method) -> io::Result<()> {
        let open = self.streams.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&self.streams);
        if open >= MAX_STREAMS {
            let r = Response::text(503, "too many live pages: try again later");
            return http::write(c, &r, method);
        }
        c.write_all(events::head().as_bytes())?;
        c.flush()?;
        if method == Method::Head {
            return Ok(());
        }
        events::stream(c, &self.changes, self.cancel)
    }
}

/// Reads (and drops) what a client still sends after its head was refused,
/// at most [`DRAIN_MAX`] bytes: closing a socket with unread data resets
/// the connection, and the client would lose the answer.
fn drain(c: &mut dyn Duplex) {
    let mut buf = [0u8; 4096];
    let mut left = DRAIN_MAX;
    while left > 0 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Whether `c` is a commit id or name as `fleet nudge --commit` takes it.
fn plain_commit(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= COMMIT_MAX
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads only what the server serves: every `src`/`href` is
    /// a path of its own, and the script builds no URL of elsewhere.
    #[test]
    fn the_page_refers_to_nothing_outside_itself() {
        for text in [INDEX, APP_JS, STYLE] {
            for bad in ["http:", "https:", "//", "url(", "@import"] {
                let found = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains(bad));
                assert!(!found, "`{bad}` in the page");
            }
        }
        for path in ["/style.css", "/app.js"] {
            assert!(INDEX.contains(&format!("\"{path}\"")), "{path}");
        }
        assert!(
            !INDEX.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
        assert!(
            !INDEX.contains(" style="),
            "no inline style: the CSP forbids it"
        );
    }

    #[test]
    fn only_plain_commits_are_asked_for() {
        assert!(plain_commit("3f2a9c1"));
        assert!(plain_commit("release/1.2"));
        for bad in ["", "a b", "a%20b", "<x>", &"a".repeat(65)] {
            assert!(!plain_commit(bad), "{bad}");
        }
    }
}
