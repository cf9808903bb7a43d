//! `driftless secret …`: making a host key and encrypting files to it, so
//! that an admin needs no other tool to put a secret in the config repo.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::config;
use crate::desired::secrets;
use crate::durable::{Perms, write_file};

/// `secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Make a host key (an age identity) at FILE, mode 0600, and print its
    /// recipient (`age1…`), the public half secrets are encrypted to.
    /// Refuses to replace an existing file.
    Keygen {
        /// Where to write the key (for the agent: /etc/driftless/age.key).
        #[arg(value_name = "FILE")]
        output: PathBuf,
    },
    /// Print the recipient of the agent's `[secrets] identity` (or of
    /// --identity FILE).
    Recipient {
        /// Read this key file instead of the agent config's.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Encrypt FILE to the recipients given (ASCII-armoured age) and write
    /// FILE.age, or --output. Commit the result; never the plain file.
    Encrypt {
        /// A recipient (`age1…`); repeat for several hosts or a break-glass key.
        #[arg(long = "to", value_name = "RECIPIENT", required = true)]
        to: Vec<String>,
        /// The plain file.
        #[arg(value_name = "FILE")]
        input: PathBuf,
        /// Where to write (default: FILE.age beside it).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs a `secret` command: exit 0 done, 1 failed (with the reason on stderr).
pub(super) fn run(cmd: &SecretCommand, config_file: Option<&Path>) -> super::ExitCode {
    let mut out = std::io::stdout().lock();
    match run_inner(cmd, config_file, &mut out) {
        Ok(()) => super::ExitCode::Ok,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            super::ExitCode::Error
        }
    }
}

fn run_inner(cmd: &SecretCommand, config_file: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    match cmd {
        SecretCommand::Keygen { output } => {
            if output.symlink_metadata().is_ok() {
                bail!(
                    "{} exists; driftless never replaces a key (remove it first if you mean to)",
                    output.display()
                );
            }
            let (text, recipient) = secrets::generate();
            let (dir, name) = split(output)?;
            write_file(&dir, &name, text.as_bytes(), Perms::private())?;
            writeln!(out, "{recipient}")?;
        }
        SecretCommand::Recipient { identity } => {
            let path = match identity {
                Some(p) => p.clone(),
                None => {
                    let explicit = config_file.is_some();
                    let file = config_file
                        .map_or_else(|| PathBuf::from(config::DEFAULT_CONFIG), Path::to_path_buf);
                    config::load(&file, explicit)?.secrets_identity.context(
                        "the agent config has no [secrets] identity; pass --identity FILE",
                    )?
                }
            };
            let text = crate::system::trust::read_private(&path)?;
            let keys = secrets::Keys::parse(&path.display().to_string(), &text)
                .map_err(anyhow::Error::msg)?;
            for r in keys.recipients() {
                writeln!(out, "{r}")?;
            }
        }
        SecretCommand::Encrypt { to, input, output } => {
            let plain = std::fs::read(input)
                .with_context(|| format!("failed to read {}", input.display()))?;
            let sealed = secrets::encrypt(to, &plain).map_err(anyhow::Error::msg)?;
            let output = output.clone().unwrap_or_else(|| {
                let mut name = input.clone().into_os_string();
                name.push(secrets::AGE_SUFFIX);
                PathBuf::from(name)
            });
            let (dir, name) = split(&output)?;
            let perms = Perms {
                mode: 0o644,
                ..Perms::private()
            };
            write_file(&dir, &name, &sealed, perms)?;
            writeln!(out, "{}", output.display())?;
        }
    }
    Ok(())
}

/// A file path as its directory and name.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}
