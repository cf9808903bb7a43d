//! Gathering [`Facts`] from the running host (read-only).
//!
//! Facts are gathered on every converge, forever: each one is a read of a
//! small file the kernel or the OS keeps, a system call, or `cpuid`; none
//! runs a program or touches the network (the one exception, `systemctl
//! --version`, runs only on a host whose systemd library is not where
//! RHEL, Fedora or Debian put it). Custom facts are [`custom`]'s; the
//! installed packages are looked up by name when a template reads one
//! ([`packages`]).

pub(crate) mod custom;
mod mounts;
mod net;
mod os;
pub(crate) mod packages;
mod virt;

use std::time::Duration;

use crate::cancel::Cancel;
use crate::desired::facts::{CustomFacts, Facts, Packages};

/// Reads the facts of this machine, custom facts and packages aside (see
/// [`custom::FactsDir`] and [`packages::under`]), for what needs only a
/// name or an id (the schedule's splay, `status`): a source that cannot
/// be read gives an empty value.
pub(crate) fn gather() -> Facts {
    gather_reading(&|path| Ok(small(path).unwrap_or_default())).unwrap_or_default()
}

/// This machine's OS (`ID VERSION_ID` of os-release) and kernel release,
/// for the fleet's inventory; what cannot be read is empty.
pub(crate) fn os_and_kernel() -> (String, String) {
    let os = os::parse(&small("/etc/os-release").unwrap_or_default());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        format!("{} {}", os.id, os.version_id).trim().to_owned(),
        kernel,
    )
}

/// [`gather`], for a desired state: a source that is missing gives an
/// empty value (a minimal container without `/etc/machine-id` is still a
/// valid host), one that is there but cannot be read is an error, never a
/// guess (a fact read as empty could turn a `when` false, and pruning
/// would then take away what it guards).
pub(crate) fn gather_checked() -> anyhow::Result<Facts> {
    gather_reading(&read_source)
}

/// A small file of the running host, bounded.
fn small(path: &str) -> std::io::Result<String> {
    super::read_text_at_most(std::path::Path::new(path), super::SMALL_FILE_MAX)
}

/// A file facts come from: missing is empty, unreadable is an error.
fn read_source(path: &str) -> anyhow::Result<String> {
    match small(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("failed to read {path} for the facts")))
        }
    }
}

/// The facts, each file read with `read`.
fn gather_reading(read: &dyn Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<Facts> {
    let os = os::parse(&read("/etc/os-release")?);
    let uname = nix::sys::utsname::uname().ok();
    let uname_field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let node = uname_field(nix::sys::utsname::UtsName::nodename);
    let kernel = uname_field(nix::sys::utsname::UtsName::release);
    let arch = Some(uname_field(nix::sys::utsname::UtsName::machine))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let meminfo = read("/proc/meminfo")?;
    let memory_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fqdn = fqdn(&node);
    let (default_ipv4, default_ipv6) = net::default_routes();
    let machine_id = read("/etc/machine-id")?.trim().to_owned();
    let enforce = read("/sys/fs/selinux/enforce")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    Ok(Facts {
        hostname: fqdn.split('.').next().unwrap_or(&fqdn).to_owned(),
        fqdn,
        os_id: os.id,
        os_version_id: os.version_id,
        os_family: os.family,
        os_major: os.major,
        os_minor: os.minor,
        machine_id,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        memory_mb: memory_kb / 1024,
        systemd_version: systemd_version(&arch),
        virtualization: virt::decide(&virt::inputs(&kernel)),
        selinux: selinux_word(Some(enforce.as_str()).filter(|e| !e.is_empty())).to_owned(),
        interfaces: net::interfaces(),
        default_ipv4,
        default_ipv6,
        mounts: mounts::parse(&mountinfo),
        custom: CustomFacts::default(),
        packages: Packages::default(),
        arch,
        kernel,
    })
}

/// The SELinux mode in force, from selinuxfs's `enforce` (`None`: not
/// mounted: the kernel has no SELinux, or it was disabled at boot). This
/// is the running mode, which `setenforce` changes, not the configured
/// one in `/etc/selinux/config`.
fn selinux_word(enforce: Option<&str>) -> &'static str {
    match enforce.map(str::trim) {
        None => "disabled",
        Some("1") => "enforcing",
        Some(_) => "permissive",
    }
}

/// The installed systemd's version, from the name of its shared library
/// (`libsystemd-shared-252.so`, Fedora's `libsystemd-shared-255.4-1.fc40.so`)
/// where RHEL, Fedora and Debian install it; else `systemctl --version`,
/// when there is a systemctl; else `None`.
fn systemd_version(arch: &str) -> Option<u64> {
    let dirs = [
        "/usr/lib64/systemd".to_owned(),
        "/usr/lib/systemd".to_owned(),
        format!("/usr/lib/{arch}-linux-gnu/systemd"),
    ];
    let from_file = dirs.iter().find_map(|d| {
        std::fs::read_dir(d).ok()?.flatten().find_map(|e| {
            let name = e.file_name();
            leading_number(name.to_str()?.strip_prefix("libsystemd-shared-")?)
        })
    });
    if from_file.is_some() {
        return from_file;
    }
    let systemctl = ["/usr/bin/systemctl", "/bin/systemctl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let out = crate::system::command::Cmd::new(systemctl)
        .arg("--version")
        .timeout(Duration::from_secs(5))
        .run(&Cancel::new())
        .ok()?;
    // "systemd 252 (252-32.el9_4)"
    leading_number(out.stdout.strip_prefix("systemd ")?)
}

/// The number `text` starts with.
fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The fully qualified name: the kernel's node name when it has dots,
/// else the canonical name from `/etc/hosts` for it, else the node name.
/// (No DNS: facts must not depend on the network.)
fn fqdn(node: &str) -> String {
    if node.contains('.') {
        return node.to_owned();
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| {
            let mut names = l.split_whitespace().skip(1);
            let canonical = names.next()?;
            let matches = canonical == node
                || canonical.split('.').next() == Some(node)
                || names.any(|n| n == node);
            (matches && canonical.contains('.')).then(|| canonical.to_owned())
        })
        .unwrap_or_else(|| node.to_owned())
}

/// Who runs this command, for the record of an operator's action: the
/// user's name, and the one behind `sudo` when there is one
/// (`alice (via sudo as root)`).
pub(crate) fn invoking_user() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    match std::env::var("SUDO_USER") {
        Ok(real) if !real.is_empty() && real != name => format!("{real} (via sudo as {name})"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review: an unreadable source gave an empty fact, which could turn a
    /// `when` false and have pruning take away what it guards.
    #[test]
    fn a_source_that_cannot_be_read_is_an_error_a_missing_one_is_empty() {
        assert_eq!(read_source("/nonexistent/os-release").unwrap(), "");
        // A directory where a file should be: there, but not readable.
        assert!(read_source("/").is_err());
        let failing = |path: &str| {
            if path == "/etc/os-release" {
                read_source("/")
            } else {
                Ok(String::new())
            }
        };
        assert!(gather_reading(&failing).is_err());
        assert!(gather_checked().is_ok());
    }

    #[test]
    fn selinux_mode_is_disabled_without_selinuxfs() {
        assert_eq!(selinux_word(None), "disabled");
        assert_eq!(selinux_word(Some("1")), "enforcing");
        assert_eq!(selinux_word(Some("0")), "permissive");
    }

    #[test]
    fn systemd_versions_are_read_from_library_names_and_systemctl() {
        assert_eq!(leading_number("252.so"), Some(252));
        assert_eq!(leading_number("255.4-1.fc40.so"), Some(255));
        assert_eq!(leading_number("252 (252-32.el9_4)\n+PAM"), Some(252));
        assert_eq!(leading_number("so"), None);
    }

    #[test]
    fn gathering_this_machine_gives_sane_values() {
        let f = gather();
        assert!(f.cpus >= 1);
        assert!(!f.kernel.is_empty());
        assert!(["enforcing", "permissive", "disabled"].contains(&f.selinux.as_str()));
        assert!(!f.virtualization.is_empty());
        assert!(
            !f.interfaces.iter().any(|i| i == "lo"),
            "{:?}",
            f.interfaces
        );
        assert!(f.mounts.iter().any(|m| m.path == "/"), "{:?}", f.mounts);
    }
}
