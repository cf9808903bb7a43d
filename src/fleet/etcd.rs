//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/grant`, …) with the curl crate driftless
//! already uses: no gRPC stack, no protoc at build time. Endpoints are
//! tried in order, so a cluster with a member down still answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

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

    fn post(&self, url: &str, body: &[u8]) -> Result<Value> {
        let mut easy = curl::easy::Easy::new();
        easy.url(url)?;
        easy.post(true)?;
        easy.post_fields_copy(body)?;
        easy.timeout(REQUEST_TIMEOUT)?;
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
