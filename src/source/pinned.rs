//! Downloads pinned by a SHA-256: the bytes of a `[[file]]` whose
//! `source` is a URL (`https://`, `http://`, `file://`).
//!
//! The caller (the use case, which owns the object store) names a partial
//! file; the download goes there, resuming what an earlier, interrupted
//! run left (an HTTP `Range` request), and is checked against the pinned
//! hash before it returns: bytes that do not match are deleted, never
//! used. Size-capped (the cap is checked as bytes arrive, not only
//! against `Content-Length`), with a connect timeout and a stall timeout
//! rather than a bound on the whole transfer (a large release over a slow
//! link is fine as long as it moves).
//!
//! Why a failure is whose fault: an unreachable server, DNS, a timeout, a
//! TLS certificate the agent does not trust, HTTP 5xx/408/429 or a
//! `file://` path that cannot be read are the environment's
//! ([`Environment`]: nothing is quarantined, the next run tries again); a
//! checksum mismatch, a 4xx such as 404, or a body over the cap are the
//! desired state's (its URL or its `sha256`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::Digest;

use crate::cancel::Cancel;
use crate::system::environment::Environment;

/// Default cap of one download: 256 MiB. The engine holds a file's bytes
/// in memory while it plans and writes them (whole-buffer atomic writes),
/// so the cap bounds the agent's memory too.
pub const DEFAULT_MAX_SIZE: u64 = 256 * 1024 * 1024;
/// Default time a download may make no progress before it is abandoned,
/// and the bound on opening its connection.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed (release hosts redirect to a CDN).
const MAX_REDIRECTS: u32 = 10;

/// Where the system's trusted CAs are, RHEL's path first: read to trust
/// them beside `[download] ca_file`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// Limits and trust of pinned downloads (`[download]` in agent.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadSettings {
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Largest download accepted, in bytes.
    pub max_size: u64,
    /// How long a download may stall (and a connection take to open).
    pub timeout: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            max_size: DEFAULT_MAX_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Downloads `url` into `part` until it holds exactly the bytes that hash
/// to `sha256`; what `part` already holds is resumed from. On a checksum
/// mismatch `part` is removed and the error names the URL and both
/// hashes. `part`'s directory must exist.
pub fn fetch(
    url: &str,
    sha256: &[u8; 32],
    part: &Path,
    settings: &DownloadSettings,
    cancel: &Cancel,
) -> Result<()> {
    let held = match std::fs::metadata(part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("failed to stat {}", part.display())),
    };
    // A resumed download that does not match may have been stitched onto
    // an older version of the file: it is tried once more from the start.
    let mut from = if held > settings.max_size { 0 } else { held };
    loop {
        if from == 0 || hash_of(part)? != *sha256 {
            transfer(url, part, from, settings, cancel)?;
        }
        let got = hash_of(part)?;
        if got == *sha256 {
            return Ok(());
        }
        if from > 0 {
            tracing::info!(
                url,
                "a resumed download does not match its sha256; fetching it whole"
            );
            from = 0;
            continue;
        }
        let _ = std::fs::remove_file(part);
        bail!(
            "checksum mismatch for {url}: expected sha256 {}, got {}; the download was discarded and nothing was written",
            hex::encode(sha256),
            hex::encode(got)
        );
    }
}

/// One transfer into `part` from byte `from` (0: from scratch, the file
/// truncated); a server that cannot resume gets the whole file asked for.
fn transfer(
    url: &str,
    part: &Path,
    from: u64,
    settings: &DownloadSettings,
    cancel: &Cancel,
) -> Result<()> {
    match attempt(url, part, from, settings, cancel) {
        Err(Failure::Curl(e, status)) if from > 0 && (e.is_range_error() || status == 416) => {
            tracing::info!(url, "the server cannot resume; fetching it whole");
            attempt(url, part, 0, settings, cancel).map_err(|f| f.into_error(url, settings))
        }
        r => r.map_err(|f| f.into_error(url, settings)),
    }
}

/// Why one attempt failed.
enum Failure {
    /// curl's error and the HTTP status (0 when none came).
    Curl(curl::Error, u32),
    /// More than the cap arrived.
    TooLarge,
    /// Writing the partial file failed.
    Write(std::io::Error, PathBuf),
    /// Anything before the transfer (opening the file, the CA bundle).
    Other(anyhow::Error),
}

impl Failure {
    /// The error, wrapped as [`Environment`] when the host or the network
    /// is to blame.
    fn into_error(self, url: &str, settings: &DownloadSettings) -> anyhow::Error {
        match self {
            Failure::Curl(e, status) => {
                let what = match (status, e.extra_description()) {
                    (400.., _) => format!("HTTP {status}"),
                    (_, Some(extra)) => format!("{} ({extra})", e.description()),
                    _ => e.description().to_owned(),
                };
                let message = format!("failed to download {url}: {what}");
                if e.is_filesize_exceeded() {
                    too_large(url, settings)
                } else if environment_fault(&e, status) {
                    anyhow::Error::new(Environment(message))
                } else {
                    anyhow::anyhow!(message)
                }
            }
            Failure::TooLarge => too_large(url, settings),
            Failure::Write(e, part) => anyhow::Error::new(e).context(format!(
                "failed to write {} (downloading {url})",
                part.display()
            )),
            Failure::Other(e) => e,
        }
    }
}

fn too_large(url: &str, settings: &DownloadSettings) -> anyhow::Error {
    anyhow::anyhow!(
        "{url} is larger than the download cap of {} bytes ([download] max_size in the agent config); nothing was written",
        settings.max_size
    )
}

/// Whether a failed transfer is the network's or the host's fault rather
/// than the URL's.
fn environment_fault(e: &curl::Error, status: u32) -> bool {
    if e.is_http_returned_error() {
        return status >= 500 || status == 408 || status == 429;
    }
    e.is_couldnt_resolve_host()
        || e.is_couldnt_connect()
        || e.is_operation_timedout()
        || e.is_ssl_connect_error()
        || e.is_peer_failed_verification()
        || e.is_ssl_cacert()
        || e.is_ssl_cacert_badfile()
        || e.is_send_error()
        || e.is_recv_error()
        || e.is_got_nothing()
        || e.is_partial_file()
        || e.is_file_couldnt_read_file()
        || e.is_read_error()
        || e.is_aborted_by_callback()
        || e.is_http2_error()
        || e.is_http2_stream_error()
}

/// One curl transfer appending to `part` from byte `from`.
fn attempt(
    url: &str,
    part: &Path,
    from: u64,
    settings: &DownloadSettings,
    cancel: &Cancel,
) -> Result<(), Failure> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .and_then(|f| f.set_len(from).map(|()| f))
        .map_err(|e| Failure::Write(e, part.to_owned()))?;
    let mut easy = handle(url, from, settings).map_err(Failure::Other)?;
    let mut written = from;
    let mut failed: Option<Failure> = None;
    let result = {
        let mut transfer = easy.transfer();
        transfer
            .write_function(|data| {
                written += data.len() as u64;
                if written > settings.max_size {
                    failed = Some(Failure::TooLarge);
                    return Ok(0);
                }
                match file.write_all(data) {
                    Ok(()) => Ok(data.len()),
                    Err(e) => {
                        failed = Some(Failure::Write(e, part.to_owned()));
                        Ok(0)
                    }
                }
            })
            .map_err(|e| Failure::Curl(e, 0))?;
        // Returning false from the progress callback aborts the transfer.
        transfer
            .progress_function(|_, _, _, _| !cancel.should_stop())
            .map_err(|e| Failure::Curl(e, 0))?;
        transfer.perform()
    };
    if let Some(f) = failed {
        return Err(f);
    }
    let status = easy.response_code().unwrap_or(0);
    result.map_err(|e| Failure::Curl(e, status))?;
    file.sync_all()
        .map_err(|e| Failure::Write(e, part.to_owned()))
}

/// A curl handle for `url`, resuming at `from`, with the limits and the
/// trust of `settings`.
fn handle(url: &str, from: u64, settings: &DownloadSettings) -> Result<curl::easy::Easy> {
    let mut easy = curl::easy::Easy::new();
    let set = |r: Result<(), curl::Error>| r.with_context(|| format!("cannot download {url}"));
    set(easy.url(url))?;
    set(easy.follow_location(true))?;
    set(easy.max_redirections(MAX_REDIRECTS))?;
    set(easy.fail_on_error(true))?;
    set(easy.connect_timeout(settings.timeout))?;
    // Abandoned when less than a byte a second arrives for `timeout`.
    set(easy.low_speed_limit(1))?;
    set(easy.low_speed_time(settings.timeout))?;
    set(easy.progress(true))?;
    set(easy.useragent(concat!("driftless/", env!("CARGO_PKG_VERSION"))))?;
    // Refused before any byte when the server says how large it is.
    set(easy.max_filesize(settings.max_size.saturating_sub(from)))?;
    if from > 0 {
        set(easy.resume_from(from))?;
    }
    match &settings.ca_file {
        // curl's rustls backend takes one set of roots: the system's
        // bundle and the configured CA, read into one.
        Some(ca) => set(easy.ssl_cainfo_blob(&trusted_roots(ca)?))?,
        None => {
            let mut opts = curl::easy::SslOpt::new();
            opts.native_ca(true);
            set(easy.ssl_options(&opts))?;
        }
    }
    Ok(easy)
}

/// The system's CA bundle (the first found) followed by `ca_file`.
fn trusted_roots(ca_file: &Path) -> Result<Vec<u8>> {
    let mut pem = SYSTEM_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    pem.push(b'\n');
    let extra = std::fs::read(ca_file)
        .with_context(|| format!("failed to read [download] ca_file {}", ca_file.display()))?;
    pem.extend_from_slice(&extra);
    Ok(pem)
}

/// The SHA-256 of the file at `path` (empty when it is missing), read in
/// chunks: a download may be large.
fn hash_of(path: &Path) -> Result<[u8; 32]> {
    let mut h = sha2::Sha256::new();
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(h.finalize().into()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(bytes).into()
    }

    #[test]
    fn a_file_url_is_fetched_checked_and_resumed() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("release.bin");
        let body: Vec<u8> = (0..100_000u32).flat_map(u32::to_le_bytes).collect();
        std::fs::write(&src, &body).expect("write");
        let url = format!("file://{}", src.display());
        let part = d.path().join("part");
        let s = DownloadSettings::default();
        fetch(&url, &sha(&body), &part, &s, &Cancel::new()).expect("fetch");
        assert_eq!(std::fs::read(&part).expect("read"), body);
        // Half of it left by an interrupted run: the rest is appended.
        std::fs::write(&part, &body[..body.len() / 2]).expect("half");
        fetch(&url, &sha(&body), &part, &s, &Cancel::new()).expect("resume");
        assert_eq!(std::fs::read(&part).expect("read"), body);
        // A stale partial (another version's bytes) is fetched whole again.
        std::fs::write(&part, b"something else entirely").expect("stale");
        fetch(&url, &sha(&body), &part, &s, &Cancel::new()).expect("refetch");
        assert_eq!(std::fs::read(&part).expect("read"), body);
    }

    #[test]
    fn a_mismatch_names_both_hashes_and_keeps_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("x");
        std::fs::write(&src, b"actual").expect("write");
        let part = d.path().join("part");
        let want = sha(b"expected");
        let e = fetch(
            &format!("file://{}", src.display()),
            &want,
            &part,
            &DownloadSettings::default(),
            &Cancel::new(),
        )
        .expect_err("mismatch");
        let text = format!("{e:#}");
        assert!(text.contains(&hex::encode(want)), "{text}");
        assert!(text.contains(&hex::encode(sha(b"actual"))), "{text}");
        assert!(!part.exists());
        assert!(!crate::system::environment::is_to_blame(&e));
    }

    #[test]
    fn the_cap_and_a_missing_file_are_told_apart() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("big");
        std::fs::write(&src, vec![7u8; 4096]).expect("write");
        let part = d.path().join("part");
        let small = DownloadSettings {
            max_size: 1000,
            ..DownloadSettings::default()
        };
        let url = format!("file://{}", src.display());
        let e = fetch(&url, &[0; 32], &part, &small, &Cancel::new()).expect_err("cap");
        assert!(format!("{e:#}").contains("larger than the download cap of 1000 bytes"));
        assert!(!crate::system::environment::is_to_blame(&e));
        let missing = format!("file://{}", d.path().join("nope").display());
        let e = fetch(&missing, &[0; 32], &part, &small, &Cancel::new()).expect_err("missing");
        assert!(crate::system::environment::is_to_blame(&e), "{e:#}");
    }
}
