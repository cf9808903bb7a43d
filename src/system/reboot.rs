//! What the running host says about a reboot: its kernel and the
//! installed ones, when this boot began, when the core packages were
//! installed, which services map replaced files; and the reboot itself.
//!
//! Only the core-package question may run a process (`rpm -q`, or
//! `needs-restarting -r` where the host has it); [`Probe`] keeps its answer
//! for as long as the rpm database keeps its identity, so a tick that
//! changed nothing runs none.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::command::Cmd;
use crate::agent::reboot::{CORE_PACKAGES, Observed};
use crate::cancel::Cancel;
use crate::plan::observed::DbIdentity;

/// dnf-utils' (EL 8, 9) and dnf 5's tool, when installed.
const NEEDS_RESTARTING: &str = "/usr/bin/needs-restarting";

/// The core packages' answer: their install times (Unix seconds), or
/// what `needs-restarting -r` said (`Some(true)`: reboot).
type CoreAnswer = (Vec<(String, i64)>, Option<bool>);

/// The core-package answer, kept while the rpm database is unchanged.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// The database's identity when asked, and the answer: install times
    /// of the core packages, or what `needs-restarting -r` said.
    cached: Option<(DbIdentity, CoreAnswer)>,
}

/// This boot: an identity that another boot does not share, and when it
/// began (Unix seconds). The kernel's boot id and PID 1's start: in a
/// container (and the system tests' sandbox) PID 1 starting again is the
/// reboot, while the kernel's own boot id and btime stay the same.
pub(crate) fn boot() -> Result<(String, i64)> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("failed to read /proc/sys/kernel/random/boot_id")?;
    let stat = std::fs::read_to_string("/proc/stat").context("failed to read /proc/stat")?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .context("/proc/stat has no btime line")?;
    let init = std::fs::read_to_string("/proc/1/stat").context("failed to read /proc/1/stat")?;
    let ticks = pid1_start_ticks(&init).context("/proc/1/stat has no start time")?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100);
    let started = btime + i64::try_from(ticks / u64::try_from(hz).unwrap_or(100)).unwrap_or(0);
    Ok((format!("{}/{ticks}", id.trim()), started))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after the
/// kernel booted); the command name before it may hold spaces.
fn pid1_start_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The running kernel's release: from `kernel_file` when the agent config
/// names one (a testing knob, `[reboot] running_kernel_file`), else the
/// kernel's own `/proc/sys/kernel/osrelease`.
pub(crate) fn running_kernel(kernel_file: Option<&Path>) -> Result<String> {
    let path = kernel_file.unwrap_or(Path::new("/proc/sys/kernel/osrelease"));
    let text = super::read_text_at_most(path, super::SMALL_FILE_MAX)
        .with_context(|| format!("failed to read the running kernel from {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Releases of the kernels installed under `/lib/modules`: those whose
/// directory has a `vmlinuz` (RHEL's kernel-core puts it there; a
/// directory left with only modules is no kernel the host can boot).
pub(crate) fn installed_kernels() -> Result<Vec<String>> {
    let dir = Path::new("/lib/modules");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("failed to list /lib/modules"),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.context("failed to list /lib/modules")?;
        if entry.path().join("vmlinuz").is_file() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Units under `system.slice` with a process that maps a file deleted
/// since it was mapped (a library or program replaced by an update),
/// read from the cgroup tree and `/proc/PID/maps`: no process is run.
pub(crate) fn stale_services() -> Vec<String> {
    let slice = PathBuf::from("/sys/fs/cgroup/system.slice");
    let Ok(units) = std::fs::read_dir(&slice) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for unit in units.flatten() {
        let name = unit.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".service") {
            continue;
        }
        let Ok(procs) = std::fs::read_to_string(unit.path().join("cgroup.procs")) else {
            continue;
        };
        let stale = procs
            .lines()
            .any(|pid| maps_file_deleted(&format!("/proc/{}/maps", pid.trim())));
        if stale {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// The most of one process's maps read: a process with more mappings
/// than that (a large JVM) is judged by its first ones, as the program
/// and its libraries come first.
const MAPS_MAX: u64 = 4 << 20;

/// Whether the maps file at `path` holds a program or library deleted
/// since it was mapped, read line by line and at most [`MAPS_MAX`] bytes.
fn maps_file_deleted(path: &str) -> bool {
    use std::io::{BufRead, Read};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    std::io::BufReader::new(file.take(MAPS_MAX))
        .lines()
        .map_while(Result::ok)
        .any(|l| deleted_file_line(&l))
}

/// Whether one line of a maps file is a program or library file deleted
/// since (not memfd, shared memory or the like).
fn deleted_file_line(line: &str) -> bool {
    line.strip_suffix(" (deleted)").is_some_and(|l| {
        l.split_whitespace()
            .nth(5)
            .is_some_and(|p| p.starts_with("/usr/") || p.starts_with("/lib"))
    })
}

/// Whether a process's maps hold a program or library file deleted
/// since.
#[cfg(test)]
fn maps_deleted_file(maps: &str) -> bool {
    maps.lines().any(deleted_file_line)
}

impl Probe {
    /// Everything [`Observed`] holds, for the running host. `rpm -q` (or
    /// `needs-restarting -r`) runs only when the rpm database changed
    /// since the last call.
    pub(crate) fn observe(
        &mut self,
        kernel_file: Option<&Path>,
        cancel: &Cancel,
    ) -> Result<Observed> {
        let (_, boot_time) = boot()?;
        let db = super::rpm::db_identity(Path::new("/"))?;
        let (core_installed, needs_restarting) = match (&self.cached, &db) {
            (Some((was, answer)), Some(now)) if was == now => answer.clone(),
            _ => {
                let answer = core_packages(cancel)?;
                if let Some(db) = &db {
                    self.cached = Some((db.clone(), answer.clone()));
                }
                answer
            }
        };
        Ok(Observed {
            running_kernel: running_kernel(kernel_file)?,
            installed_kernels: installed_kernels()?,
            core_installed,
            boot_time,
            needs_restarting,
            stale_services: stale_services(),
        })
    }
}

/// `needs-restarting -r`'s verdict where it is installed (exit 1: a
/// reboot is needed), else the install times of the core packages from
/// `rpm -q`.
fn core_packages(cancel: &Cancel) -> Result<CoreAnswer> {
    if Path::new(NEEDS_RESTARTING).is_file() {
        let out = Cmd::new(NEEDS_RESTARTING)
            .arg("-r")
            .timeout(Duration::from_secs(60))
            .any_code()
            .run(cancel)
            .context("failed to run needs-restarting -r")?;
        return match out.code {
            0 => Ok((Vec::new(), Some(false))),
            1 => Ok((Vec::new(), Some(true))),
            c => anyhow::bail!("needs-restarting -r exited with {c}: {}", out.stderr.trim()),
        };
    }
    // Names not installed are reported on stdout and counted in the exit
    // code: only lines of the query format are read.
    let out = Cmd::new("rpm")
        .args(["-q", "--qf", "%{NAME} %{INSTALLTIME}\\n", "--"])
        .args(CORE_PACKAGES)
        .timeout(Duration::from_secs(60))
        .any_code()
        .run(cancel)
        .context("failed to query the core packages' install times")?;
    Ok((parse_install_times(&out.stdout), None))
}

/// `NAME TIME` lines; anything else ("package X is not installed") is
/// left out.
fn parse_install_times(stdout: &str) -> Vec<(String, i64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (name, at) = l.split_once(' ')?;
            Some((name.to_owned(), at.trim().parse().ok()?))
        })
        .collect()
}

/// Asks systemd to reboot the host (`systemctl --no-block reboot`): it
/// stops every unit, this daemon too, in order. `--no-block` returns once
/// the job is queued; even so systemd may stop this daemon's unit, and
/// the `systemctl` child in it, before that child exits: killed by
/// SIGTERM or SIGKILL after asking is taken as asked (a reboot that did
/// not happen is found by the next check, see `agent::reboot`).
pub(crate) fn reboot(cancel: &Cancel) -> Result<()> {
    match Cmd::new("systemctl")
        .args(["--no-block", "reboot"])
        .timeout(Duration::from_secs(60))
        .run(cancel)
    {
        Ok(_) => Ok(()),
        Err(super::command::CommandError::Failed { code, .. })
            if code == 128 + 15 || code == 128 + 9 =>
        {
            Ok(())
        }
        Err(e) => Err(e).context("`systemctl --no-block reboot` failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        let stat = "1 (systemd (x)) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 4242 1000 10";
        assert_eq!(pid1_start_ticks(stat), Some(4242));
        assert_eq!(
            parse_install_times("glibc 1700000000\npackage dbus is not installed\nsystemd 5\n"),
            [
                ("glibc".to_owned(), 1_700_000_000),
                ("systemd".to_owned(), 5)
            ]
        );
        let maps = "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib64/libssl.so.3 (deleted)\n";
        assert!(maps_deleted_file(maps));
        assert!(!maps_deleted_file(
            "7f00-7f01 rw-s 00000000 00:01 12 /memfd:x (deleted)\n7f00-7f01 r-xp 00000000 08:01 12 /usr/lib64/libc.so.6\n"
        ));
    }
}
