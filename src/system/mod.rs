//! The only code that touches the host: the filesystem under a root,
//! accounts, facts, processes, and the programs that change packages and
//! services (rpm, dnf, systemctl), all run through one subprocess helper
//! ([`command`]); and the probes of health checks.

pub(crate) mod accounts;
pub(crate) mod archive;
pub(crate) mod command;
pub(crate) mod dnf;
pub(crate) mod environment;
pub(crate) mod facts;
pub(crate) mod fsroot;
pub(crate) mod memory;
pub(crate) mod mounts;
pub(crate) mod probes;
pub(crate) mod process;
pub(crate) mod reboot;
pub(crate) mod rpm;
pub(crate) mod selinux;
pub(crate) mod settings;
pub(crate) mod systemctl;
pub(crate) mod systemd_bus;
pub(crate) mod trust;

/// Reads the text file at `path` (a file of the running host: os-release,
/// a kernel parameter), refusing one larger than `max` bytes with an
/// `InvalidData` error: what is read from outside is bounded.
pub(crate) fn read_text_at_most(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes: not read", path.display()),
        ));
    }
    Ok(text)
}

/// Bound of a small file of the running host read whole (os-release, a
/// kernel parameter, a fact's source).
pub(crate) const SMALL_FILE_MAX: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_file_past_its_bound_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("os-release");
        std::fs::write(&p, "ID=rhel\n").expect("write");
        assert_eq!(
            super::read_text_at_most(&p, 8).expect("at the bound"),
            "ID=rhel\n"
        );
        let e = super::read_text_at_most(&p, 7).expect_err("past it");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
