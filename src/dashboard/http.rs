//! HTTP/1.1, as little of it as a read-only page needs: one request per
//! connection (every answer says `Connection: close`), GET and HEAD only,
//! a request head of at most [`HEAD_MAX`] bytes read within a deadline,
//! and no request body. Parsing is pure, so that its limits are tested
//! without a socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) read.
pub(crate) const HEAD_MAX: usize = 16 << 10;
/// Most header lines taken.
const HEADERS_MAX: usize = 100;

/// The methods served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET.
    Get,
    /// HEAD: the GET's answer without its body.
    Head,
}

/// A request, as far as the dashboard reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// GET or HEAD.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query's `name=value` pairs, as sent (not decoded: the values
    /// served are checked against a plain alphabet instead).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, when sent.
    pub authorization: Option<String>,
    /// The `Host` header, when sent.
    pub host: Option<String>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer closed the connection, or it failed: nothing to answer.
    Closed,
    /// Not HTTP/1.x as read (400), and why.
    Malformed(&'static str),
    /// Not GET or HEAD (405).
    Method,
    /// A head over [`HEAD_MAX`] bytes or [`HEADERS_MAX`] lines (431).
    TooLarge,
    /// The head did not arrive within the deadline (408).
    Timeout,
}

impl Refusal {
    /// The answer's status and text; `None` for a closed connection.
    pub(crate) fn answer(&self) -> Option<(u16, &'static str)> {
        match self {
            Refusal::Closed => None,
            Refusal::Malformed(why) => Some((400, why)),
            Refusal::Method => Some((405, "only GET and HEAD are served")),
            Refusal::TooLarge => Some((431, "the request head is too large")),
            Refusal::Timeout => Some((408, "the request took too long")),
        }
    }
}

/// Reads a request head (up to and without the blank line) from `r`,
/// which has a read timeout of its own, until `deadline`.
pub(crate) fn read_head<R: Read + ?Sized>(
    r: &mut R,
    deadline: Instant,
) -> Result<Vec<u8>, Refusal> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Err(Refusal::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Refusal::Timeout);
            }
            Err(_) => return Err(Refusal::Closed),
        };
        // Only the new bytes (and the three before them) can complete the
        // blank line.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head[from..], b"\r\n\r\n") {
            head.truncate(from + end);
            if head.len() > HEAD_MAX {
                return Err(Refusal::TooLarge);
            }
            return Ok(head);
        }
        if head.len() > HEAD_MAX {
            return Err(Refusal::TooLarge);
        }
        if Instant::now() >= deadline {
            return Err(Refusal::Timeout);
        }
    }
}

/// A connection whose reads end at a deadline, whatever reads them (the
/// TLS layer reads on its own until it has a whole record: a client that
/// sends a byte now and then would keep it reading without end).
pub(crate) struct Timed {
    tcp: TcpStream,
    deadline: Instant,
    each: Duration,
}

impl Timed {
    /// `tcp`, each of whose reads waits at most `each`, and none of which
    /// starts after `deadline`.
    pub(crate) fn new(tcp: TcpStream, deadline: Instant, each: Duration) -> Timed {
        Timed {
            tcp,
            deadline,
            each,
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request took too long",
            ));
        }
        self.tcp.set_read_timeout(Some(left.min(self.each)))?;
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a request head as [`read_head`] returns it.
pub(crate) fn parse(head: &[u8]) -> Result<Request, Refusal> {
    if head.len() > HEAD_MAX {
        return Err(Refusal::TooLarge);
    }
    let text =
        std::str::from_utf8(head).map_err(|_| Refusal::Malformed("the request is not text"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed("a malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::Malformed("only HTTP/1.x is served"));
    }
    if !target.starts_with('/') {
        return Err(Refusal::Malformed("the target must be a path"));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(Refusal::Method),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let (mut authorization, mut host) = (None, None);
    for (n, line) in lines.filter(|l| !l.is_empty()).enumerate() {
        if n >= HEADERS_MAX {
            return Err(Refusal::TooLarge);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal::Malformed("a header line without a colon"));
        };
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("host") {
            host = Some(value.trim().to_owned());
        }
    }
    Ok(Request {
        method,
        path: path.to_owned(),
        query,
        authorization,
        host,
    })
}

/// An answer.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    /// Its status code.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body (sent for GET, counted for HEAD).
    pub body: Vec<u8>,
    /// Headers beyond those every answer has.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A 200 with `body`.
    pub(crate) fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// An answer in plain text.
    pub(crate) fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// The reason phrase of the statuses served.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The headers of every answer: nothing may be loaded from elsewhere or
/// run inline (the page's script and style are files of its own), the
/// page is not framed, and nothing is cached (it is live).
pub(crate) const COMMON_HEADERS: &str = "Content-Security-Policy: default-src 'self'\r\n\
     X-Content-Type-Options: nosniff\r\n\
     X-Frame-Options: DENY\r\n\
     Referrer-Policy: no-referrer\r\n\
     Cache-Control: no-store\r\n\
     Connection: close\r\n";

/// The status line and headers of an answer of `status`, with `extra`
/// header lines (each ending in CRLF), up to the blank line.
pub(crate) fn head_of(status: u16, content_type: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n{COMMON_HEADERS}{extra}\r\n",
        reason(status)
    )
}

/// Writes `r` (without its body for HEAD).
pub(crate) fn write<W: Write + ?Sized>(w: &mut W, r: &Response, method: Method) -> io::Result<()> {
    let mut extra = format!("Content-Length: {}\r\n", r.body.len());
    for (name, value) in &r.headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    w.write_all(head_of(r.status, r.content_type, &extra).as_bytes())?;
    if method == Method::Get {
        w.write_all(&r.body)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_with_its_query_and_authorization() {
        let r = parse(
            b"GET /api/status?commit=abc&x HTTP/1.1\r\nHost: h\r\nauthorization:  Bearer t0k \r\n",
        )
        .expect("a request");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/api/status");
        assert_eq!(r.param("commit"), Some("abc"));
        assert_eq!(r.param("x"), Some(""));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0k"));
        let h = parse(b"HEAD / HTTP/1.0").expect("HEAD");
        assert_eq!((h.method, h.path.as_str()), (Method::Head, "/"));
    }

    #[test]
    fn other_methods_and_malformed_heads_are_refused() {
        assert_eq!(parse(b"POST / HTTP/1.1"), Err(Refusal::Method));
        assert_eq!(parse(b"DELETE /api/status HTTP/1.1"), Err(Refusal::Method));
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/2",
            b"GET http://elsewhere/ HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon",
            b"GET /\xff HTTP/1.1",
            b"GET  / HTTP/1.1",
        ] {
            assert!(
                matches!(parse(bad), Err(Refusal::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(Refusal::Method.answer().map(|a| a.0), Some(405));
        assert_eq!(Refusal::Closed.answer(), None);
    }

    #[test]
    fn the_head_is_bounded_in_size_lines_and_time() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ok: &[u8] = b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody ignored";
        assert_eq!(
            read_head(&mut ok, deadline).expect("a head"),
            b"GET / HTTP/1.1\r\nA: b"
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(HEAD_MAX));
        assert_eq!(
            read_head(&mut big.as_bytes(), deadline),
            Err(Refusal::TooLarge)
        );
        let many = format!("GET / HTTP/1.1{}", "\r\nA: b".repeat(HEADERS_MAX + 1));
        assert_eq!(parse(many.as_bytes()), Err(Refusal::TooLarge));
        // A head that never ends: cut at the deadline.
        let mut endless = io::repeat(b'a');
        let past = Instant::now();
        assert!(matches!(
            read_head(&mut endless, past),
            Err(Refusal::TooLarge | Refusal::Timeout)
        ));
        let mut short: &[u8] = b"GET / HTTP/1.1\r\n";
        assert_eq!(read_head(&mut short, deadline), Err(Refusal::Closed));
    }

    /// A client that sends a byte now and then is cut off at the
    /// deadline, also when something else (TLS) does the reading.
    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            for _ in 0..40 {
                if c.write_all(b"G").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (tcp, _) = listener.accept().expect("accept");
        let started = Instant::now();
        let deadline = started + Duration::from_millis(400);
        let mut timed = Timed::new(tcp, deadline, Duration::from_secs(5));
        let mut buf = [0u8; 1];
        let err = loop {
            if let Err(e) = timed.read_exact(&mut buf) {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(timed);
        client.join().expect("client");
    }

    #[test]
    fn every_answer_forbids_what_is_not_its_own() {
        let mut out = Vec::new();
        write(&mut out, &Response::text(404, "no"), Method::Head).expect("write");
        let text = String::from_utf8(out).expect("text");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Security-Policy: default-src 'self'\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text}");
    }
}
