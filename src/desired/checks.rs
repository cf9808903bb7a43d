//! Pure checks of single values: host paths, modes, package names, EVRs,
//! unit names and resource references. Each returns the problem in words, so
//! the caller can place it at the right span.

use super::model::{Kind, ResourceId};

/// Host paths that driftless never manages: kernel and runtime filesystems
/// whose contents are not files an operator should write through GitOps.
pub(crate) const FORBIDDEN_ROOTS: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// Longest file name (one path component) Linux filesystems take, in bytes.
pub(crate) const NAME_MAX: usize = 255;
/// Longest path Linux takes, in bytes.
pub(crate) const PATH_MAX: usize = 4095;

/// A mount point: an absolute, normalised path, anywhere (`/`, `/dev/shm`
/// and `/proc` are mount points driftless declares but never writes).
pub(crate) fn mount_point(path: &str) -> Result<(), String> {
    absolute_path(path)
}

/// An absolute, normalised path within Linux's limits.
fn absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path `{path}` must be absolute (start with /)"));
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(format!("path `{path}` must not end with /"));
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".to_owned());
    }
    if path.len() > PATH_MAX {
        return Err(format!(
            "path `{}…` is {} bytes long, over the {PATH_MAX}-byte limit of Linux paths",
            path.chars().take(40).collect::<String>(),
            path.len()
        ));
    }
    for comp in path[1..].split('/') {
        if comp.len() > NAME_MAX {
            return Err(format!(
                "path `{path}` has a component of {} bytes, over the {NAME_MAX}-byte limit of file names",
                comp.len()
            ));
        }
        match comp {
            "" => return Err(format!("path `{path}` contains an empty component (//)")),
            "." | ".." => {
                return Err(format!(
                    "path `{path}` must be normalised (no `.` or `..` components)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `path` is an absolute, normalised host path outside the
/// forbidden trees and outside `state_dir`.
pub(crate) fn host_path(path: &str, state_dir: &str) -> Result<(), String> {
    if path == "/" {
        return Err("path `/` cannot be managed".to_owned());
    }
    absolute_path(path)?;
    for root in FORBIDDEN_ROOTS.iter().copied().chain([state_dir]) {
        if path == root || path.starts_with(&format!("{root}/")) {
            return Err(format!(
                "path `{path}` is under {root}, which driftless does not manage"
            ));
        }
    }
    Ok(())
}

/// Checks a host name as looked up in the config repo (`hosts/NAME.toml`):
/// letters, digits, `-`, `_` and dots between labels, at most 253 bytes. A
/// path or an empty name would silently fall back to `hosts/default.toml`.
pub(crate) fn host_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("host name `{name}` {why}"));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 253 {
        return bad("is longer than 253 bytes");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return bad("may hold only letters, digits, `-`, `_` and `.`");
    }
    if name.split('.').any(str::is_empty) || name.starts_with('-') {
        return bad("is not a host name (empty label, or a leading `-`)");
    }
    Ok(())
}

/// The URL schemes a `source` may download from. Plain `http://` is
/// accepted because a download is always pinned by its SHA-256, checked
/// before the bytes are used: a tampered answer fails, it is never written.
pub(crate) const DOWNLOAD_SCHEMES: [&str; 3] = ["https://", "http://", "file://"];

/// Whether a `source` names a download (a URL) rather than a repo path.
pub(crate) fn is_download(source: &str) -> bool {
    source.contains("://")
}

/// Checks a download URL: `https://HOST/…`, `http://HOST/…` or
/// `file:///ABSOLUTE/PATH`, with no spaces or control characters (curl
/// would otherwise send them as they are).
pub(crate) fn download_url(url: &str) -> Result<(), String> {
    let Some(scheme) = DOWNLOAD_SCHEMES.iter().find(|s| url.starts_with(**s)) else {
        return Err(format!(
            "source `{url}` is a URL of a scheme driftless does not download from; use https://, http:// or file://"
        ));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "source `{url}` holds a space or control character; percent-encode it (%20)"
        ));
    }
    let rest = &url[scheme.len()..];
    if *scheme == "file://" {
        if !rest.starts_with('/') {
            return Err(format!(
                "source `{url}` must name an absolute path on this host: file:///srv/dist/app.tar.gz"
            ));
        }
    } else if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
        return Err(format!("source `{url}` names no host"));
    }
    Ok(())
}

/// Parses a SHA-256 written as 64 hex digits (either case; an `sha256:`
/// prefix, as some release pages write it, is accepted).
pub(crate) fn sha256_hex(text: &str) -> Result<[u8; 32], String> {
    let digits = text.strip_prefix("sha256:").unwrap_or(text);
    hex::decode(digits)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "sha256 `{text}` is not a SHA-256: it must be 64 hex digits (as `sha256sum` prints)"
            )
        })
}

/// Parses an octal mode string such as `"0644"` or `"755"`.
pub(crate) fn mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "mode `{text}` is not an octal number such as \"0644\""
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("mode `{text}` is above 07777")),
    }
}

/// Checks an RPM package name: what rpm accepts in a Name tag, without
/// spaces, version operators or glob characters that dnf would expand.
pub(crate) fn package_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
    if name.is_empty() {
        return Err("package name is empty".to_owned());
    }
    if !name.chars().all(ok_char) || name.starts_with(['-', '.']) {
        return Err(format!(
            "package name `{name}` is malformed (letters, digits and . _ + - only)"
        ));
    }
    Ok(())
}

/// Checks an exact EVR: `[epoch:]version-release`, as `1.20.1-14.el9` or
/// `2:1.0-1`. The release is required: a pin must name one build.
pub(crate) fn evr(text: &str) -> Result<(), String> {
    let bad =
        || format!("version `{text}` is not an exact EVR such as \"1.20.1-14.el9\" or \"2:1.0-1\"");
    let (epoch, vr) = match text.split_once(':') {
        Some((e, rest)) => (Some(e), rest),
        None => (None, text),
    };
    if let Some(e) = epoch
        && (e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let (version, release) = vr.rsplit_once('-').ok_or_else(bad)?;
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+~^".contains(c))
    };
    if !ok_part(version) || !ok_part(release) {
        return Err(bad());
    }
    Ok(())
}

/// Completes a unit name (`nginx` becomes `nginx.service`) and checks it.
pub(crate) fn unit_name(name: &str) -> Result<String, String> {
    const SUFFIXES: [&str; 6] = [
        ".service", ".socket", ".timer", ".path", ".mount", ".target",
    ];
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c);
    if name.is_empty() || !name.chars().all(ok_char) {
        return Err(format!("unit name `{name}` is malformed"));
    }
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        Ok(name.to_owned())
    } else if name.contains('.') && !name.contains('@') {
        Err(format!(
            "unit `{name}` has an unsupported suffix (use one of {})",
            SUFFIXES.join(", ")
        ))
    } else {
        Ok(format!("{name}.service"))
    }
}

/// Parses a reference such as `file:/etc/nginx/nginx.conf` or `package:nginx`,
/// its key as the kind writes it (`service:nginx` is `nginx.service`).
pub(crate) fn reference(text: &str) -> Result<ResourceId, String> {
    let (kind, key) = text.split_once(':').ok_or_else(|| {
        format!("reference `{text}` must be written kind:name, as \"file:/etc/nginx/nginx.conf\"")
    })?;
    let kind = Kind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        format!(
            "reference `{text}` names an unknown kind `{kind}` (use one of {})",
            known.join(", ")
        )
    })?;
    Ok(ResourceId::new(kind, kind.reference_key(key)?))
}

/// Checks a `[[command]]` name: it is the key of `command:NAME` references.
pub(crate) fn command_name(name: &str) -> Result<(), String> {
    plain_name(name, "._-", "command name")
}

/// Checks the name of an edit (`[[line]]`, `[[block]]`, `[[ini]]`): it is
/// the key of `line:NAME` references.
pub(crate) fn edit_name(name: &str) -> Result<(), String> {
    plain_name(name, "._-", "name")
}

/// A name of letters, digits and the `punctuation` given, not starting
/// with a dot.
fn plain_name(name: &str, punctuation: &str, what: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || punctuation.contains(c);
    if name.is_empty() || !name.chars().all(ok_char) || name.starts_with('.') {
        let listed: Vec<String> = punctuation.chars().map(String::from).collect();
        return Err(format!(
            "{what} `{name}` is malformed (letters, digits and {} only)",
            listed.join(" ")
        ));
    }
    Ok(())
}

/// Checks a user or group name as shadow-utils accepts it: a lowercase
/// letter or `_` first, then letters, digits, `_`, `-` (and a final `$`
/// for machine accounts), at most 32 characters.
pub(crate) fn account_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let first_ok = body
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = body
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
    if !first_ok || !rest_ok || name.len() > 32 {
        return Err(format!(
            "`{name}` is not a valid user name (a lowercase letter or _ first, then a-z 0-9 _ -, at most 32 characters)"
        ));
    }
    Ok(())
}

/// Checks a group named by a user: a group name or a number.
pub(crate) fn group_ref(name: &str) -> Result<(), String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    account_name(name).map_err(|_| {
        format!("`{name}` is not a valid group name (a lowercase letter or _ first, then a-z 0-9 _ -, at most 32 characters)")
    })
}

/// Checks a GECOS comment: one field of /etc/passwd.
pub(crate) fn gecos(text: &str) -> Result<(), String> {
    if text.contains([':', '\n']) {
        return Err("`comment` cannot hold `:` or a newline (it is a field of /etc/passwd)".into());
    }
    Ok(())
}

/// Checks a password as /etc/shadow holds it: a crypt(3) hash
/// (`$6$…`, `$y$…`) or a locked marker (`!`, `*`, or `!` before a hash),
/// never a clear-text password.
pub(crate) fn password_hash(text: &str) -> Result<(), String> {
    let hash = text.strip_prefix('!').unwrap_or(text);
    let locked = matches!(text, "!" | "!!" | "*");
    if text.contains([':', '\n']) || (!locked && !hash.starts_with('$')) {
        return Err(
            "`password` must be a crypt(3) hash such as `$6$…` (make one with `openssl passwd -6`), or `!` to lock the account; never the password itself"
                .into(),
        );
    }
    Ok(())
}

/// Checks a repository id: it becomes a file name.
pub(crate) fn repo_name(name: &str) -> Result<(), String> {
    plain_name(name, "._-:", "repo name")
}

/// Regexes from a config repo: large enough for any line pattern, small
/// enough that a hostile one cannot take the host's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A builder for a regex a config repo writes (an edit's `match`, a
/// template's `regex_replace`), its size bounded.
pub(crate) fn regex_builder(pattern: &str) -> regex::RegexBuilder {
    let mut b = regex::RegexBuilder::new(pattern);
    b.size_limit(REGEX_SIZE_LIMIT);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths() {
        assert!(host_path("/etc/motd", "/var/lib/driftless").is_ok());
        for bad in [
            "etc/motd",
            "/",
            "/etc/",
            "/etc//motd",
            "/etc/./motd",
            "/etc/../motd",
            "/proc/sys/kernel",
            "/sys",
            "/dev/null",
            "/run/x",
            "/var/lib/driftless/state",
        ] {
            assert!(host_path(bad, "/var/lib/driftless").is_err(), "{bad}");
        }
        // A prefix match is not a path match.
        assert!(host_path("/running/x", "/var/lib/driftless").is_ok());
        assert!(host_path("/var/lib/driftless2/x", "/var/lib/driftless").is_ok());
    }

    #[test]
    fn modes() {
        assert_eq!(mode("0644"), Ok(0o644));
        assert_eq!(mode("755"), Ok(0o755));
        assert_eq!(mode("04755"), Ok(0o4755));
        assert_eq!(mode("07777"), Ok(0o7777));
        for bad in ["", "0x1a", "0888", "17777", "rw-r--r--", "-644", "0644 "] {
            assert!(mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_names() {
        for ok in [
            "nginx",
            "python3.11-pip",
            "libstdc++",
            "perl-Data-Dumper",
            "kernel_x",
        ] {
            assert!(package_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "nginx>=1", "a b", "-rf", "ng*nx", "n/x"] {
            assert!(package_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evrs() {
        for ok in [
            "1.20.1-14.el9",
            "2:1.0-1",
            "1.0~rc1-1",
            "1.0^git1-2.fc40",
            "0:1-1",
        ] {
            assert!(evr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1.0", "-1", "1.0-", ":1.0-1", "x:1.0-1", "1.0 -1", "1.0-1-", "latest",
        ] {
            assert!(evr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("nginx").as_deref(), Ok("nginx.service"));
        assert_eq!(unit_name("getty@tty1").as_deref(), Ok("getty@tty1.service"));
        assert_eq!(unit_name("fstrim.timer").as_deref(), Ok("fstrim.timer"));
        assert!(unit_name("a b").is_err());
        assert!(unit_name("x.conf").is_err());
    }

    #[test]
    fn references() {
        assert_eq!(
            reference("file:/etc/x"),
            Ok(ResourceId::new(Kind::File, "/etc/x"))
        );
        assert_eq!(
            reference("service:nginx"),
            Ok(ResourceId::new(Kind::Service, "nginx.service"))
        );
        assert!(reference("nginx").is_err());
        assert!(reference("fiel:/etc/x").is_err());
    }

    /// Regression: `--host ""` and `--host /abs/path` fell back to
    /// `hosts/default.toml` without a word.
    #[test]
    fn host_names_that_are_no_host_names_are_refused() {
        for ok in ["web1", "web1.example.com", "db_2", "a-b.c"] {
            assert!(host_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs/path",
            "../x",
            "a b",
            ".web1",
            "web1.",
            "a..b",
            "-x",
            "ä",
        ] {
            assert!(host_name(bad).is_err(), "{bad:?}");
        }
        assert!(host_name(&"a".repeat(254)).is_err());
    }
}
