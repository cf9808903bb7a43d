//! One line of an OpenSSH `authorized_keys` file, as sshd reads it
//! (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"): optional options, the key's
//! type, its base64 blob, an optional comment. Pure: checked when the repo
//! is read, so a key sshd would skip is a located error rather than a
//! line that silently lets nobody in.
//!
//! A key's identity is its type and blob, never its comment or options:
//! the same key with other options is the same key, to be replaced.

use base64::Engine;

/// The key types sshd accepts (OpenSSH 8/9, RHEL 8 and 9), plain and as
/// certificates.
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// The options sshd knows; it refuses a line with any other.
const OPTIONS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "touch-required",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// A key line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyLine<'a> {
    /// The options, verbatim (empty when there are none).
    pub options: &'a str,
    /// The key type (`ssh-ed25519`).
    pub kind: &'a str,
    /// The base64 blob.
    pub blob: &'a str,
    /// The comment, if any.
    pub comment: &'a str,
}

impl KeyLine<'_> {
    /// What identifies the key: its type and blob.
    pub(crate) fn identity(&self) -> String {
        format!("{} {}", self.kind, self.blob)
    }

    /// How messages name the key: its type, the blob's end and its
    /// comment (a public key, nothing secret; the end tells keys apart).
    pub(crate) fn short(&self) -> String {
        let tail = &self.blob[self.blob.len().saturating_sub(8)..];
        match self.comment {
            "" => format!("{} …{tail}", self.kind),
            c => format!("{} …{tail} {c}", self.kind),
        }
    }
}

/// Parses a line of `authorized_keys`, as sshd would; why not when it
/// would skip it.
pub(crate) fn parse(line: &str) -> Result<KeyLine<'_>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Err("an empty line or a comment is not a key".to_owned());
    }
    if line.contains('\n') {
        return Err("a key is one line".to_owned());
    }
    let (options, rest) = if TYPES.contains(&first_word(line)) {
        ("", line)
    } else {
        let end = options_end(line)?;
        let (options, rest) = (&line[..end], line[end..].trim_start());
        // One word before something that is not a key either: a type
        // misspelt, not options.
        if !TYPES.contains(&first_word(rest)) && !options.contains(['=', ',']) {
            return Err(not_a_type(options));
        }
        check_options(options)?;
        (options, rest)
    };
    let kind = first_word(rest);
    if !TYPES.contains(&kind) {
        return Err(not_a_type(kind));
    }
    let rest = rest[kind.len()..].trim_start();
    let blob = first_word(rest);
    if blob.is_empty() {
        return Err(format!("the {kind} key has no base64 blob after its type"));
    }
    check_blob(kind, blob)?;
    let comment = rest[blob.len()..].trim();
    Ok(KeyLine {
        options,
        kind,
        blob,
        comment,
    })
}

/// Why a word is not a key type.
fn not_a_type(word: &str) -> String {
    format!(
        "`{word}` is not a key type sshd accepts (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, …)"
    )
}

/// The text up to the first blank or tab.
fn first_word(s: &str) -> &str {
    s.split([' ', '\t']).next().unwrap_or_default()
}

/// Where the options end: the first blank outside double quotes.
fn options_end(line: &str) -> Result<usize, String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok(i),
            _ => {}
        }
    }
    Err(if quoted {
        "the options have a `\"` that is not closed".to_owned()
    } else {
        format!(
            "`{}` is not a key type sshd accepts, and no key follows it as options",
            first_word(line)
        )
    })
}

/// Checks options as sshd does: `name` or `name="value"`, separated by
/// commas, each name one sshd knows.
fn check_options(options: &str) -> Result<(), String> {
    let mut rest = options;
    while !rest.is_empty() {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if !OPTIONS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{name}` is not an authorized_keys option sshd knows"
            ));
        }
        rest = &rest[name_end..];
        if let Some(value) = rest.strip_prefix('=') {
            let Some(body) = value.strip_prefix('"') else {
                return Err(format!("the value of `{name}` must be in double quotes"));
            };
            let close = closing_quote(body)
                .ok_or_else(|| format!("the value of `{name}` has no closing `\"`"))?;
            rest = &body[close + 1..];
        }
        match rest.strip_prefix(',') {
            Some("") => return Err("the options end with a `,`".to_owned()),
            Some(r) => rest = r,
            None if rest.is_empty() => {}
            None => return Err(format!("`{name}` is followed by `{rest}`, not a `,`")),
        }
    }
    Ok(())
}

/// The index of the `"` that ends a quoted value (`\"` escapes one).
fn closing_quote(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Checks the blob is base64 of a key of the declared type (the blob
/// starts with its type's name, as sshd checks).
fn check_blob(kind: &str, blob: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|e| format!("the {kind} key's blob is not valid base64: {e}"))?;
    let named = bytes
        .get(..4)
        .and_then(|n| <[u8; 4]>::try_from(n).ok())
        .map(|n| u32::from_be_bytes(n) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!(
            "the blob is not a {kind} key (it does not start with its type)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ed25519 public key (ssh-keygen, no private half kept).
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMiQofGsbPyvEfXe/1o0kVS8Ri9h5D8Isut2wyglcRvw";

    #[test]
    fn keys_with_and_without_options_parse() {
        let line = format!("{ED} alice@laptop");
        let k = parse(&line).expect("parses");
        assert_eq!(
            (k.options, k.kind, k.comment),
            ("", "ssh-ed25519", "alice@laptop")
        );
        let line = format!(r#"from="10.0.0.0/8",command="echo \"hi there\"",no-pty {ED} x y"#);
        let k = parse(&line).expect("parses");
        assert_eq!(
            k.options,
            r#"from="10.0.0.0/8",command="echo \"hi there\"",no-pty"#
        );
        assert_eq!(k.comment, "x y");
        assert_eq!(k.identity(), ED);
    }

    #[test]
    fn what_sshd_would_skip_is_refused() {
        for (line, why) in [
            ("ssh-foo AAAA", "not a key type"),
            ("ssh-ed25519 AAAA!!", "not valid base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIMiQofGsbPyvEfXe/1o0kVS8Ri9h5D8Isut2wyglcRvw",
                "not a ssh-rsa key",
            ),
            ("ssh-ed25519", "no base64 blob"),
            (
                &format!("bogus-option {ED}"),
                "not an authorized_keys option",
            ),
            (&format!("from=10.0.0.1 {ED}"), "double quotes"),
            (&format!("from=\"10.0.0.1 {ED}"), "not closed"),
            (&format!("no-pty, {ED}"), "end with"),
            ("# a comment", "not a key"),
        ] {
            let err = parse(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
