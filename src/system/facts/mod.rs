//! Gathering [`Facts`] from the running host (read-only).

use crate::desired::Facts;

/// Reads the facts of this machine. Missing sources give empty values: a
/// minimal container without `/etc/machine-id` is still a valid host.
pub(crate) fn gather() -> Facts {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_field = |key: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let uname = nix::sys::utsname::uname().ok();
    let node = uname
        .as_ref()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let arch = uname
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fqdn = fqdn(&node);
    Facts {
        hostname: fqdn.split('.').next().unwrap_or(&fqdn).to_owned(),
        fqdn,
        os_id: os_field("ID"),
        os_version_id: os_field("VERSION_ID"),
        arch,
        machine_id: std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        memory_mb: memory_kb / 1024,
    }
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
