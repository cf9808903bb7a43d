//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/grant`, …) with the curl crate driftless
//! already uses: no gRPC stack, no protoc at build time. Endpoints are
//! tried in order, so a cluster with a member down still answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

/// What a key holds, for [`Etcd::put_if`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Holding<'a> {
    /// It does not exist.
    Nothing,
    /// It holds these bytes.
    Bytes(&'a [u8]),
}

/// Bound on one request to one endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on connecting to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one answer: the records of 10,000 hosts are a few MB.
const MAX_ANSWER: usize = 64 << 20;

/// How to reach the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs (`https://etcd1:2379`), tried in order.
    pub endpoints: Vec<String>,
    /// CA bundle that signs the cluster's certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for clusters that ask for one.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub key_file: Option<PathBuf>,
}

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kv {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
}

/// A client of one cluster.
pub(crate) struct Etcd {
    settings: EtcdSettings,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .context("etcd answered with a value that is not base64")
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client; nothing is contacted yet.
    pub(crate) fn new(settings: EtcdSettings) -> Self {
        Self { settings }
    }

    /// POSTs `body` to `path` of the first endpoint that answers.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        let mut errors = Vec::new();
        for ep in &self.settings.endpoints {
            let url = format!("{}{path}", ep.trim_end_matches('/'));
            match self.post(&url, &body) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("no etcd endpoint answered: {}", errors.join("; "))
    }

    /// A POST of `body` to `url`, with the cluster's TLS settings and a
    /// bound of `timeout` on the whole request.
    fn request(&self, url: &str, body: &[u8], timeout: Duration) -> Result<curl::easy::Easy> {
        let mut easy = curl::easy::Easy::new();
        easy.url(url)?;
        easy.post(true)?;
        easy.post_fields_copy(body)?;
        easy.timeout(timeout)?;
        easy.connect_timeout(CONNECT_TIMEOUT)?;
        let mut headers = curl::easy::List::new();
        headers.append("Content-Type: application/json")?;
        easy.http_headers(headers)?;
        if let Some(ca) = &self.settings.ca_file {
            easy.cainfo(ca)?;
        }
        if let Some(cert) = &self.settings.cert_file {
            easy.ssl_cert(cert)?;
        }
        if let Some(key) = &self.settings.key_file {
            easy.ssl_key(key)?;
        }
        Ok(easy)
    }

    fn post(&self, url: &str, body: &[u8]) -> Result<Value> {
        let mut easy = self.request(url, body, REQUEST_TIMEOUT)?;
        let mut out = Vec::new();
        let mut too_big = false;
        {
            let mut t = easy.transfer();
            t.write_function(|d| {
                // Refusing the data fails the transfer: an answer this big
                // is not one of the fleet's.
                if out.len() + d.len() > MAX_ANSWER {
                    too_big = true;
                    return Ok(0);
                }
                out.extend_from_slice(d);
                Ok(d.len())
            })?;
            let done = t.perform();
            drop(t);
            if too_big {
                bail!("the answer is larger than {MAX_ANSWER} bytes");
            }
            done?;
        }
        let code = easy.response_code()?;
        let value: Value = serde_json::from_slice(&out).with_context(|| {
            format!(
                "HTTP {code}, not JSON: {}",
                String::from_utf8_lossy(&out)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )
        })?;
        if code != 200 {
            bail!(
                "HTTP {code}: {}",
                value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("error")
            );
        }
        // A streamed answer (keepalive) comes wrapped in `result`.
        Ok(value.get("result").cloned().unwrap_or(value))
    }

    /// Every key under `prefix`, in key order.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Kv>> {
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )?;
        kvs(&v)
    }

    /// The value of `key`, if it exists.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        Ok(kvs(&v)?.into_iter().next().map(|kv| kv.value))
    }

    /// Sets `key` (on `lease`, if given: gone when the lease ends).
    pub(crate) fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<()> {
        let mut body = json!({"key": b64(key.as_bytes()), "value": b64(value)});
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        self.call("/v3/kv/put", &body)?;
        Ok(())
    }

    /// Creates `key` on `lease` only if it does not exist; whether it did.
    pub(crate) fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<bool> {
        let k = b64(key.as_bytes());
        let v = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": b64(value), "lease": lease.to_string()}}],
            }),
        )?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Puts `value` at `key` (on `lease`, or none) only if the key holds
    /// what `now` says (its bytes, or nothing); whether it did. What a
    /// host writes over a key it believes its own goes through this: a
    /// key another host took meanwhile is never overwritten.
    pub(crate) fn put_if(
        &self,
        key: &str,
        now: Holding<'_>,
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<bool> {
        let k = b64(key.as_bytes());
        let compare = match now {
            Holding::Nothing => {
                json!({"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
            }
            Holding::Bytes(b) => {
                json!({"key": k, "result": "EQUAL", "target": "VALUE", "value": b64(b)})
            }
        };
        let mut put = json!({"key": k, "value": b64(value)});
        if let Some(l) = lease {
            put["lease"] = json!(l.to_string());
        }
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": [compare], "success": [{"request_put": put}]}),
        )?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Deletes `key` only if it still holds `value`; whether it did (a
    /// slot taken over by another host is not deleted by the first).
    pub(crate) fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool> {
        let k = b64(key.as_bytes());
        let v = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"key": k, "result": "EQUAL", "target": "VALUE", "value": b64(value)}],
                "success": [{"request_delete_range": {"key": k}}],
            }),
        )?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Deletes `key`.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        self.call("/v3/kv/deleterange", &json!({"key": b64(key.as_bytes())}))?;
        Ok(())
    }

    /// A new lease of `ttl`; its id.
    pub(crate) fn grant(&self, ttl: Duration) -> Result<i64> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({"TTL": ttl.as_secs().max(1).to_string()}),
        )?;
        id(&v, "ID")
    }

    /// Renews `lease`; `false` when it has expired already.
    pub(crate) fn keep_alive(&self, lease: i64) -> Result<bool> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        // An expired lease comes back with TTL 0 (or none).
        Ok(v.get("TTL")
            .and_then(|t| {
                t.as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .or(t.as_i64())
            })
            .is_some_and(|t| t > 0))
    }
}

/// What a watch is of: one key, or every key under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchOf {
    /// The key, or the prefix.
    pub key: String,
    /// Every key that starts with `key`.
    pub prefix: bool,
    /// Puts only (a nudge is a put); else deletes too (a host record
    /// gone with its lease is a change of the fleet).
    pub puts_only: bool,
}

/// What one message of a watch stream says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The watch is set up; the store is at `revision`.
    Created {
        /// The store's revision when the watch began.
        revision: i64,
    },
    /// The key changed: the next revision to watch from, and the newest
    /// value (cut to [`WATCH_VALUE_KEPT`] bytes).
    Changed {
        /// One past the newest change seen.
        next: i64,
        /// Its value.
        value: Vec<u8>,
    },
    /// A message over [`MAX_WATCH_MESSAGE`]: something changed, what is
    /// not read.
    Oversized,
    /// etcd ended the watch; `compacted` when the revision asked for is
    /// gone (compacted away).
    Canceled {
        /// The revision etcd compacted to, when that was why.
        compacted: Option<i64>,
        /// Why, in etcd's words.
        reason: String,
    },
    /// Something else (a progress notification): nothing to do.
    Other,
}

/// Bound on one message of a watch stream (a nudge is a few hundred bytes).
pub(crate) const MAX_WATCH_MESSAGE: usize = 64 << 10;
/// Bytes of a changed value handed on (for a log line).
pub(crate) const WATCH_VALUE_KEPT: usize = 512;
/// A watch stream is ended and set up again after this long: no request
/// to the outside is unbounded, and a connection that died silently (a
/// peer gone without a reset) is found out. Nothing is missed: the next
/// stream starts at the revision after the last one seen.
pub(crate) const WATCH_MAX: Duration = Duration::from_secs(600);

impl Etcd {
    /// Watches `what` from revision `start` (else from now), on the first
    /// endpoint that answers, handing each message to `on` until the
    /// stream ends: at [`WATCH_MAX`], when the endpoint goes away, when
    /// `on` returns `false` (`Ok(true)`: set up and ended), or when `stop`
    /// says so (checked about once a second; `Ok(false)`). `Err` when no
    /// endpoint set one up.
    pub(crate) fn watch(
        &self,
        what: &WatchOf,
        start: Option<i64>,
        on: &mut dyn FnMut(Watched) -> bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<bool> {
        let mut create = json!({"key": b64(what.key.as_bytes())});
        if what.prefix {
            create["range_end"] = json!(b64(&prefix_end(&what.key)));
        }
        if what.puts_only {
            create["filters"] = json!(["NODELETE"]);
        }
        if let Some(r) = start {
            create["start_revision"] = json!(r.to_string());
        }
        let body = serde_json::to_vec(&json!({ "create_request": create }))?;
        let mut errors = Vec::new();
        for ep in &self.settings.endpoints {
            let url = format!("{}/v3/watch", ep.trim_end_matches('/'));
            match self.stream(&url, &body, on, stop) {
                Ok(Stream::Stopped) => return Ok(false),
                Ok(Stream::Ended) => return Ok(true),
                Ok(Stream::NotCreated(why)) => errors.push(format!("{ep}: {why}")),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("no etcd endpoint set up the watch: {}", errors.join("; "))
    }

    /// One watch stream on one endpoint.
    fn stream(
        &self,
        url: &str,
        body: &[u8],
        on: &mut dyn FnMut(Watched) -> bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<Stream> {
        let mut easy = self.request(url, body, WATCH_MAX)?;
        // A peer that vanished without a reset is noticed in about a
        // minute rather than at WATCH_MAX.
        easy.tcp_keepalive(true)?;
        easy.tcp_keepidle(Duration::from_secs(30))?;
        easy.tcp_keepintvl(Duration::from_secs(10))?;
        easy.progress(true)?;
        let mut lines = Lines::default();
        let stopped = std::cell::Cell::new(false);
        let (mut created, mut ended, mut refused) = (false, false, None::<String>);
        let done = {
            let mut t = easy.transfer();
            t.progress_function(|_, _, _, _| {
                if stop() {
                    stopped.set(true);
                }
                !stopped.get()
            })?;
            t.write_function(|data| {
                for line in lines.push(data) {
                    let message = match line {
                        Some(l) => parse_watched(&l),
                        None => Ok(Watched::Oversized),
                    };
                    match message {
                        Ok(m) => {
                            created |= matches!(m, Watched::Created { .. });
                            if !on(m) {
                                ended = true;
                                return Ok(0);
                            }
                        }
                        Err(e) => {
                            refused = Some(format!("{e:#}"));
                            return Ok(0);
                        }
                    }
                }
                Ok(data.len())
            })?;
            t.perform()
        };
        if stopped.get() {
            return Ok(Stream::Stopped);
        }
        if ended {
            return Ok(Stream::Ended);
        }
        if let Some(why) = refused {
            return Ok(if created {
                Stream::Ended
            } else {
                Stream::NotCreated(why)
            });
        }
        match (done, created) {
            (_, true) => Ok(Stream::Ended),
            (Ok(()), false) => Ok(Stream::NotCreated(format!(
                "HTTP {}: the stream ended before the watch was set up",
                easy.response_code()?
            ))),
            (Err(e), false) => Err(e.into()),
        }
    }
}

/// How one watch stream ended.
enum Stream {
    /// Set up, then ended (timeout, the endpoint went away, etcd ended it).
    Ended,
    /// Stopped from this side.
    Stopped,
    /// Never set up, and why.
    NotCreated(String),
}

/// Splits a stream into its lines, each at most [`MAX_WATCH_MESSAGE`]
/// bytes: a longer one comes out as `None` (its bytes are dropped as they
/// come, so memory stays bounded).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    oversized: bool,
}

impl Lines {
    fn push(&mut self, mut data: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            self.take(&data[..i]);
            let line = std::mem::take(&mut self.buf);
            if std::mem::take(&mut self.oversized) {
                out.push(None);
            } else if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(Some(line));
            }
            data = &data[i + 1..];
        }
        self.take(data);
        out
    }

    fn take(&mut self, part: &[u8]) {
        if self.oversized || self.buf.len() + part.len() > MAX_WATCH_MESSAGE {
            self.oversized = true;
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(part);
        }
    }
}

/// Reads one message of a watch stream.
fn parse_watched(line: &[u8]) -> Result<Watched> {
    let v: Value = serde_json::from_slice(line).with_context(|| {
        format!(
            "a watch message that is not JSON: {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })?;
    if let Some(e) = v.get("error") {
        bail!(
            "etcd refused the watch: {}",
            e.get("message").and_then(Value::as_str).unwrap_or("error")
        );
    }
    let r = v.get("result").unwrap_or(&v);
    let revision = r.get("header").and_then(|h| id(h, "revision").ok());
    if r.get("canceled").and_then(Value::as_bool) == Some(true) {
        return Ok(Watched::Canceled {
            compacted: id(r, "compact_revision").ok().filter(|c| *c > 0),
            reason: r
                .get("cancel_reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    // A creation without its revision says nothing to resume from (0
    // would replay the key's whole history).
    if r.get("created").and_then(Value::as_bool) == Some(true) {
        return Ok(revision.map_or(Watched::Other, |revision| Watched::Created { revision }));
    }
    let events = r.get("events").and_then(Value::as_array);
    let Some(last) = events.and_then(|e| e.last()) else {
        return Ok(Watched::Other);
    };
    let kv = last.get("kv").unwrap_or(&Value::Null);
    let newest = events
        .into_iter()
        .flatten()
        .filter_map(|e| id(e.get("kv")?, "mod_revision").ok())
        .max()
        .or(revision)
        .unwrap_or(0);
    let mut value = unb64(kv.get("value").and_then(Value::as_str).unwrap_or(""))?;
    value.truncate(WATCH_VALUE_KEPT);
    Ok(Watched::Changed {
        next: newest + 1,
        value,
    })
}

/// int64 fields come as strings in etcd's JSON.
fn id(v: &Value, field: &str) -> Result<i64> {
    let f = v
        .get(field)
        .with_context(|| format!("etcd's answer has no `{field}`: {v}"))?;
    f.as_str()
        .and_then(|s| s.parse().ok())
        .or(f.as_i64())
        .with_context(|| format!("etcd's `{field}` is not a number: {f}"))
}

fn kvs(v: &Value) -> Result<Vec<Kv>> {
    let Some(list) = v.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let key = unb64(kv.get("key").and_then(Value::as_str).unwrap_or(""))?;
            let value = unb64(kv.get("value").and_then(Value::as_str).unwrap_or(""))?;
            Ok(Kv {
                key: String::from_utf8_lossy(&key).into_owned(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch stream's messages as etcd 3.4's gateway sends them.
    #[test]
    fn watch_messages_are_read_and_bounded() {
        let created = br#"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"1","raft_term":"2"},"created":true}}"#;
        assert_eq!(
            parse_watched(created).expect("created"),
            Watched::Created { revision: 1 }
        );
        let changed = br#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L3gvbnVkZ2U=","create_revision":"4","mod_revision":"4","version":"1","value":"YWdhaW4="}}]}}"#;
        assert_eq!(
            parse_watched(changed).expect("changed"),
            Watched::Changed {
                next: 5,
                value: b"again".to_vec()
            }
        );
        let compacted =
            br#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#;
        assert!(matches!(
            parse_watched(compacted).expect("canceled"),
            Watched::Canceled {
                compacted: Some(4),
                ..
            }
        ));
        let refused = br#"{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: user name is empty"}}"#;
        let err = format!("{:#}", parse_watched(refused).expect_err("an error"));
        assert!(err.contains("user name is empty"), "{err}");
        assert!(parse_watched(b"{not json").is_err());

        // Lines split across chunks come out whole; one over the bound
        // comes out as None, without being kept.
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"a\":").is_empty());
        assert_eq!(
            lines.push(b"1}\n\n{\"b\""),
            vec![Some(b"{\"a\":1}".to_vec())]
        );
        let big = vec![b'x'; MAX_WATCH_MESSAGE + 1];
        assert!(lines.push(&big).is_empty());
        assert!(lines.buf.is_empty(), "an oversized line is not kept");
        assert_eq!(lines.push(b"\n{}\n"), vec![None, Some(b"{}".to_vec())]);
    }

    #[test]
    fn a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end("/dl/hosts/"), b"/dl/hosts0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    /// An endpoint that answers without end is cut off at the bound
    /// (everything from outside is bounded), as an error.
    #[test]
    fn an_answer_over_the_bound_is_an_error() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    MAX_ANSWER * 2
                )
                .as_bytes(),
            );
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..(MAX_ANSWER * 2 / chunk.len()) {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let etcd = Etcd::new(EtcdSettings {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            ca_file: None,
            cert_file: None,
            key_file: None,
        });
        let err = format!("{:#}", etcd.get("/k").expect_err("too big"));
        assert!(err.contains("larger than"), "{err}");
        let _ = server.join();
    }
}
