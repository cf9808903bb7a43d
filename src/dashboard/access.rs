//! Who may listen where, and who may read: on loopback the page is this
//! machine's users' (as `fleet status` is); beyond loopback (any address
//! outside 127.0.0.0/8 and ::1, the unspecified 0.0.0.0 and :: included)
//! it is served only over TLS, and only to a client that shows the bearer
//! token or a certificate of the client CA. Pure decisions, and the
//! reading of the token file.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use sha2::{Digest, Sha256};

/// What `fleet serve` is given to protect the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Protection {
    /// `--tls-cert` and `--tls-key`.
    pub tls: bool,
    /// `--token-file`.
    pub token: bool,
    /// `--client-ca`.
    pub client_ca: bool,
}

/// Refuses a listen address beyond loopback without TLS and a way to
/// authenticate clients, and a client CA without TLS.
pub(crate) fn check_listen(addr: &SocketAddr, p: Protection) -> Result<()> {
    if p.client_ca && !p.tls {
        bail!("--client-ca needs TLS: give --tls-cert and --tls-key too");
    }
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !p.tls || !(p.token || p.client_ca) {
        bail!(
            "refusing to serve the dashboard on {addr} without TLS and authentication: \
             beyond loopback (127.0.0.0/8, ::1) `fleet serve` needs --tls-cert and --tls-key, \
             and --token-file or --client-ca (or listen on 127.0.0.1 and reach it through \
             an SSH tunnel)"
        );
    }
    Ok(())
}

/// The most of a token file read: its first line, within this.
const TOKEN_MAX: u64 = 4096;

/// Reads the bearer token: the file's first line, trimmed. Refused when
/// empty, or readable by every user (it would not be a secret).
pub(crate) fn read_token(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("failed to read the token file {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        bail!(
            "the token file {} is readable by every user (mode {:o}): `chmod o-r` it",
            path.display(),
            mode & 0o777
        );
    }
    // Its first line is all that is read: a token is short, and a file
    // named by mistake (a log, a device) is not read whole.
    let mut text = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::io::Read::take(
            std::fs::File::open(path)
                .with_context(|| format!("failed to read the token file {}", path.display()))?,
            TOKEN_MAX,
        )),
        &mut text,
    )
    .with_context(|| format!("failed to read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.as_bytes().to_vec())
}

/// Whether a request with `authorization` may read: always without a
/// token; with one, `Bearer TOKEN`, or `Basic` with the token as the
/// password (what a browser sends after its own login prompt). Compared
/// in constant time.
pub(crate) fn authorized(token: Option<&[u8]>, authorization: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some((scheme, value)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
        return false;
    };
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return same(value.as_bytes(), token);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
            return false;
        };
        let password = decoded
            .iter()
            .position(|b| *b == b':')
            .map_or(&[][..], |i| &decoded[i + 1..]);
        return same(password, token);
    }
    false
}

/// Equality in time that does not depend on where the two differ, nor on
/// their lengths: their SHA-256 digests are compared byte by byte, all of
/// them.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Whether a request naming `host` (its `Host` header) may read a page
/// served without a token: only when it names this machine's loopback
/// (`127.0.0.1:8430`, `[::1]:8430`, `localhost:8430`). A web page the
/// operator opens elsewhere could otherwise point its own name at
/// 127.0.0.1 (DNS rebinding) and read the fleet through the browser; with
/// a token that read fails anyway.
pub(crate) fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_only_a_loopback_host_header_reads() {
        for ok in [
            "127.0.0.1:8430",
            "127.0.0.1",
            "[::1]:8430",
            "localhost:8430",
            "LOCALHOST",
        ] {
            assert!(loopback_host(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8430",
            "10.0.0.1:8430",
            "[::2]:1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(Some(refused)), "{refused}");
        }
        assert!(!loopback_host(None));
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn beyond_loopback_needs_tls_and_a_way_to_authenticate() {
        let none = Protection::default();
        let tls = Protection { tls: true, ..none };
        let token = Protection { token: true, ..tls };
        let certs = Protection {
            client_ca: true,
            ..tls
        };
        for a in ["127.0.0.1:8430", "127.0.0.2:1", "[::1]:8430"] {
            assert!(check_listen(&addr(a), none).is_ok(), "{a}");
        }
        for a in [
            "0.0.0.0:8430",
            "192.0.2.7:8430",
            "[::]:8430",
            "[::ffff:127.0.0.1]:1",
        ] {
            for p in [
                none,
                tls,
                Protection {
                    token: true,
                    ..none
                },
            ] {
                let e = format!("{:#}", check_listen(&addr(a), p).expect_err(a));
                assert!(
                    e.contains("refusing to serve") && e.contains("--tls-cert"),
                    "{e}"
                );
            }
            assert!(check_listen(&addr(a), token).is_ok(), "{a}");
            assert!(check_listen(&addr(a), certs).is_ok(), "{a}");
        }
        let ca_alone = Protection {
            client_ca: true,
            ..none
        };
        assert!(check_listen(&addr("127.0.0.1:1"), ca_alone).is_err());
    }

    #[test]
    fn only_the_token_opens_the_page() {
        assert!(authorized(None, None));
        let t = Some(&b"s3cret"[..]);
        assert!(authorized(t, Some("Bearer s3cret")));
        assert!(authorized(t, Some("bearer  s3cret ")));
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:s3cret");
        assert!(authorized(t, Some(&format!("Basic {basic}"))));
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Token s3cret"),
            Some("Basic !!!"),
            Some("Basic czNjcmV0"),
        ] {
            assert!(!authorized(t, wrong), "{wrong:?}");
        }
    }

    #[test]
    fn a_token_file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("token");
        std::fs::write(&f, "abc\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = format!("{:#}", read_token(&f).expect_err("world-readable"));
        assert!(e.contains("readable by every user"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token(&f).expect("token"), b"abc");
        std::fs::write(&f, "\n").expect("write");
        assert!(read_token(&f).is_err());
        let e = format!(
            "{:#}",
            read_token(&d.path().join("none")).expect_err("missing")
        );
        assert!(e.contains("token file"), "{e}");
    }
}
