//! Secrets kept in the config repo encrypted with age to each host's key.
//!
//! A `source` ending in `.age` is decrypted while the desired state is
//! computed, with the identities the agent read from `[secrets] identity`.
//! Decrypting is computation, not I/O, so it belongs here with the rest of
//! the loader; reading the key file is the agent's job.

use std::io::Read;
use std::sync::Arc;

/// The suffix that marks an encrypted `source` or vars file.
pub(crate) const AGE_SUFFIX: &str = ".age";

/// How the loader treats encrypted content.
#[derive(Clone, Default)]
pub enum Secrets {
    /// No identity is configured: an encrypted source is an error naming
    /// the setting that is missing.
    #[default]
    NoIdentity,
    /// Only check that each secret is a well-formed age file (validating
    /// every host's file, where no host key is at hand); the content is a
    /// placeholder and templates see placeholders for secret variables.
    CheckOnly,
    /// Decrypt with these identities (the host's key file).
    Decrypt(Arc<Keys>),
}

/// The identities of one key file, with the recipients they answer to.
pub struct Keys {
    /// Where they were read from, for messages.
    pub file: String,
    identities: Vec<age::x25519::Identity>,
}

impl Keys {
    /// Parses an age identity file (what `age-keygen` writes: comments and
    /// `AGE-SECRET-KEY-1…` lines).
    pub fn parse(file: &str, text: &str) -> Result<Keys, String> {
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = line.parse::<age::x25519::Identity>().map_err(|_| {
                format!(
                    "{file}:{}: not an age identity (expected AGE-SECRET-KEY-1…)",
                    n + 1
                )
            })?;
            identities.push(id);
        }
        if identities.is_empty() {
            return Err(format!("{file}: holds no age identity"));
        }
        Ok(Keys {
            file: file.to_owned(),
            identities,
        })
    }

    /// The public keys (`age1…`) secrets for this host are encrypted to.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }
}

impl std::fmt::Debug for Keys {
    // Never the identities themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("file", &self.file)
            .field("recipients", &self.recipients())
            .finish()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secrets::NoIdentity => f.write_str("NoIdentity"),
            Secrets::CheckOnly => f.write_str("CheckOnly"),
            Secrets::Decrypt(k) => f.debug_tuple("Decrypt").field(k).finish(),
        }
    }
}

/// What opening one secret gave.
pub enum Opened {
    /// The plaintext.
    Plain(Vec<u8>),
    /// Checked well-formed only ([`Secrets::CheckOnly`]).
    Checked,
}

impl Secrets {
    /// What the loaded state depends on: the recipients of the key, so that
    /// a new key makes a commit be read again.
    pub fn fingerprint(&self) -> String {
        match self {
            Secrets::NoIdentity => "none".to_owned(),
            Secrets::CheckOnly => "check-only".to_owned(),
            Secrets::Decrypt(k) => k.recipients().join(","),
        }
    }

    /// Opens the age file `name` (binary or ASCII-armoured).
    pub fn open(&self, name: &str, bytes: &[u8]) -> Result<Opened, String> {
        const HEADERS: [&[u8]; 2] = [
            b"age-encryption.org/v1\n",
            b"-----BEGIN AGE ENCRYPTED FILE-----",
        ];
        let start = bytes.trim_ascii_start();
        if !HEADERS.iter().any(|h| start.starts_with(h)) {
            return Err(format!(
                "`{name}` is not an age-encrypted file (no age header; write it with `driftless secret encrypt`)"
            ));
        }
        let reader = age::armor::ArmoredReader::new(bytes);
        let decryptor = age::Decryptor::new_buffered(reader)
            .map_err(|e| format!("`{name}` is not a well-formed age file ({e})"))?;
        if decryptor.is_scrypt() {
            return Err(format!(
                "`{name}` is encrypted with a passphrase; encrypt it to the host's recipient (age1…)"
            ));
        }
        let keys = match self {
            Secrets::CheckOnly => return Ok(Opened::Checked),
            Secrets::NoIdentity => {
                return Err(format!(
                    "`{name}` is encrypted with age, but this agent has no key: set `[secrets] identity` in the agent config"
                ));
            }
            Secrets::Decrypt(keys) => keys,
        };
        let mut plain = Vec::new();
        decryptor
            .decrypt(keys.identities.iter().map(|i| i as &dyn age::Identity))
            .and_then(|mut r| r.read_to_end(&mut plain).map_err(age::DecryptError::from))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => format!(
                    "`{name}` is not encrypted to this host's key ({}, recipient {})",
                    keys.file,
                    keys.recipients().join(", ")
                ),
                e => format!("`{name}` could not be decrypted with {}: {e}", keys.file),
            })?;
        Ok(Opened::Plain(plain))
    }
}

/// Encrypts `plain` to `recipients` (`age1…` public keys), ASCII-armoured
/// so that the file diffs and reviews as text.
pub(crate) fn encrypt(recipients: &[String], plain: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let parsed = recipients
        .iter()
        .map(|r| {
            r.parse::<age::x25519::Recipient>()
                .map_err(|e| format!("`{r}` is not an age recipient (age1…): {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("cannot encrypt: {e}"))?;
    let mut out = Vec::new();
    let io = |e: std::io::Error| format!("cannot encrypt: {e}");
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(io)?;
    let mut w = encryptor.wrap_output(armored).map_err(io)?;
    w.write_all(plain).map_err(io)?;
    w.finish().and_then(|a| a.finish()).map_err(io)?;
    Ok(out)
}

/// A new identity file's text and its recipient.
pub(crate) fn generate() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# driftless host key; recipient: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Arc<Keys>, String) {
        let (text, recipient) = generate();
        (
            Arc::new(Keys::parse("/etc/driftless/age.key", &text).expect("keys")),
            recipient,
        )
    }

    #[test]
    fn a_secret_opens_with_its_key_only() {
        let (mine, me) = keys();
        let (other, _) = keys();
        let sealed = encrypt(&[me], b"hunter2\n").expect("encrypt");
        assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        match Secrets::Decrypt(mine).open("files/pw.age", &sealed) {
            Ok(Opened::Plain(p)) => assert_eq!(p, b"hunter2\n"),
            _ => panic!("not decrypted"),
        }
        let wrong = Secrets::Decrypt(other)
            .open("files/pw.age", &sealed)
            .err()
            .expect("wrong key refused");
        assert!(
            wrong.contains("not encrypted to this host's key"),
            "{wrong}"
        );
        assert!(matches!(
            Secrets::CheckOnly.open("files/pw.age", &sealed),
            Ok(Opened::Checked)
        ));
        let none = Secrets::NoIdentity
            .open("files/pw.age", &sealed)
            .err()
            .expect("no key refused");
        assert!(none.contains("[secrets] identity"), "{none}");
    }

    #[test]
    fn what_is_not_age_is_refused_even_without_a_key() {
        let err = Secrets::CheckOnly
            .open("files/pw.age", b"hunter2\n")
            .err()
            .expect("plain text refused");
        assert!(err.contains("is not an age-encrypted file"), "{err}");
    }

    #[test]
    fn a_key_file_is_parsed_with_its_line_on_error() {
        let err = Keys::parse("k", "# comment\nAGE-SECRET-KEY-NOPE\n").expect_err("bad key");
        assert_eq!(err, "k:2: not an age identity (expected AGE-SECRET-KEY-1…)");
        assert!(Keys::parse("k", "# only a comment\n").is_err());
        let (text, recipient) = generate();
        assert_eq!(
            Keys::parse("k", &text).expect("keys").recipients(),
            vec![recipient]
        );
    }
}
