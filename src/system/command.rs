//! The one way driftless runs rpm, dnf and systemctl.
//!
//! Every child: its argv is logged at debug level (`running argv="…"`),
//! it runs in its own process group with `LC_ALL=C` (parseable output), it
//! has a timeout, it is killed (the whole group: TERM, then KILL) when the
//! timeout passes or when the run's [`Cancel`] token asks to stop, and a
//! failure carries the tail of its stderr, which is where dnf says what
//! went wrong. Children never inherit systemd's notify socket or watchdog:
//! only driftless itself talks to systemd.
//!
//! What a child prints is bounded while it is read: a tool's output that
//! driftless parses is kept whole up to [`OUTPUT_MAX`] (more is an error,
//! never a truncated parse), and a command whose output is only reported
//! (`[[command]]`, checks, guards, hooks) keeps its last bytes
//! ([`Cmd::tail_only`]); a failure's tail is at most [`TAIL_MAX_BYTES`].

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::debug;

use crate::cancel::Cancel;

/// How long a child gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Lines of stderr kept for an error message.
const STDERR_TAIL_LINES: usize = 12;
/// Bytes of those lines kept, at most (one line can be huge).
pub(crate) const TAIL_MAX_BYTES: usize = 4096;
/// Output of a tool driftless parses, per stream, at most: the rpm query
/// of a thousand packages is tens of KB.
pub(crate) const OUTPUT_MAX: usize = 16 << 20;
/// `PATH` of a child started with [`Cmd::clear_env`].
pub(crate) const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
/// What a reported-only command keeps of each stream by default.
pub(crate) const REPORTED_TAIL: usize = 64 << 10;

/// A command to run.
#[derive(Clone, Debug)]
pub(crate) struct Cmd {
    program: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    ok_codes: Vec<i32>,
    kill_leftovers: bool,
    clear_env: bool,
    cwd: Option<std::path::PathBuf>,
    /// Bytes kept of each stream, and whether only the tail is wanted
    /// (else more than that is an error).
    keep: usize,
    tail_only: bool,
}

/// What a finished command printed.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Why a command did not give usable output. Callers branch on `Failed`
/// (a tool's own verdict) versus the rest (driftless could not run it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// It could not be started.
    #[error("failed to run `{argv}`: {source}")]
    Spawn {
        /// The command line.
        argv: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited with a code that is not accepted.
    #[error("`{argv}` failed with exit code {code}: {tail}")]
    Failed {
        /// The command line.
        argv: String,
        /// Its exit code (128 + n for a signal).
        code: i32,
        /// The last lines of its stderr (or stdout when stderr was empty).
        tail: String,
    },
    /// It printed more than a tool's output can be (see [`OUTPUT_MAX`]).
    #[error("`{argv}` printed more than {limit} bytes; its output was not used")]
    TooMuchOutput {
        /// The command line.
        argv: String,
        /// The bound.
        limit: usize,
    },
    /// It ran longer than its timeout and was killed.
    #[error("`{argv}` did not finish within {}; it was killed", humantime::format_duration(*.timeout))]
    Timeout {
        /// The command line.
        argv: String,
        /// The limit.
        timeout: Duration,
    },
    /// The run was cancelled (driftless is shutting down); the child was
    /// killed, or not started.
    #[error("`{argv}` was stopped because driftless is shutting down")]
    Interrupted {
        /// The command line.
        argv: String,
    },
}

impl Cmd {
    /// A command with a default timeout of 10 minutes (a large dnf
    /// transaction can legitimately take minutes).
    pub(crate) fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(600),
            ok_codes: vec![0],
            kill_leftovers: false,
            clear_env: false,
            cwd: None,
            keep: OUTPUT_MAX,
            tail_only: false,
        }
    }

    /// Keeps only the last `bytes` of each output stream, whatever the
    /// child prints: for commands whose output is only logged or reported
    /// (a `[[command]]`, a check, a guard, a hook), never parsed.
    pub(crate) fn tail_only(mut self, bytes: usize) -> Self {
        self.keep = bytes;
        self.tail_only = true;
        self
    }

    /// Keeps at most `bytes` of each output stream; more is an error
    /// ([`CommandError::TooMuchOutput`]), never a truncated parse.
    pub(crate) fn output_max(mut self, bytes: usize) -> Self {
        self.keep = bytes;
        self.tail_only = false;
        self
    }

    /// Starts the child with no variable of driftless's environment but a
    /// fixed `PATH` (and `LC_ALL=C` and what [`Cmd::env`] sets): for
    /// programs that are not driftless's own tools (custom facts), which
    /// must not depend on how driftless was started.
    pub(crate) fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Runs the child in `dir` (default: driftless's own working directory).
    pub(crate) fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Appends arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub(crate) fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Feeds `data` to the child's standard input (from a thread, so a child
    /// that writes before it reads cannot deadlock us).
    pub(crate) fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Kills what the command leaves running in its process group once it
    /// exits (for health-check commands: a `cmd &` must not outlive the
    /// check). Not for dnf: a package scriptlet may legitimately start a
    /// process that must keep running.
    pub(crate) fn kill_leftovers(mut self) -> Self {
        self.kill_leftovers = true;
        self
    }

    /// Sets the timeout.
    pub(crate) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Accepts these exit codes as success (`rpm -q` exits 1 when a
    /// queried package is not installed, which is an answer, not a failure).
    pub(crate) fn ok_codes(mut self, codes: &[i32]) -> Self {
        self.ok_codes = codes.to_vec();
        self
    }

    /// Accepts every exit code: the caller judges the output itself.
    pub(crate) fn any_code(mut self) -> Self {
        self.ok_codes = (0..=255).collect();
        self
    }

    /// The command line as one string, for logs and errors.
    pub(crate) fn argv(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to completion, or until `cancel` asks to stop.
    pub(crate) fn run(&self, cancel: &Cancel) -> Result<Output, CommandError> {
        let argv = self.argv();
        if cancel.should_stop() {
            return Err(CommandError::Interrupted { argv });
        }
        debug!(argv = ?argv, "running");
        let started = Instant::now();
        let mut command = Command::new(&self.program);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        if self.clear_env {
            command.env_clear().env("PATH", CLEAN_PATH);
        }
        let mut child = command
            .args(&self.args)
            .env("LC_ALL", "C")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a kill reaches dnf's helpers too, and a
            // Ctrl-C at the terminal reaches driftless, which decides.
            .process_group(0)
            .spawn()
            .map_err(|source| CommandError::Spawn {
                argv: argv.clone(),
                source,
            })?;
        let writer = match (self.stdin.clone(), child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(std::thread::spawn(move || {
                // A child that exits without reading gives EPIPE: its exit
                // status tells what happened, not this write.
                let _ = std::io::Write::write_all(&mut pipe, &data);
            })),
            _ => None,
        };
        let stdout = Reader::start(child.stdout.take(), self.keep);
        let stderr = Reader::start(child.stderr.take(), self.keep);
        let status = wait(&mut child, self.timeout, &argv, cancel)?;
        if self.kill_leftovers {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        }
        // The stdin writer ends by itself (EPIPE at worst); not waited for.
        drop(writer);
        let ((stdout, out_dropped), (stderr, err_dropped)) = (stdout.finish(), stderr.finish());
        if !self.tail_only && out_dropped + err_dropped > 0 {
            return Err(CommandError::TooMuchOutput {
                argv,
                limit: self.keep,
            });
        }
        let out = Output {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout,
            stderr,
        };
        debug!(argv = ?argv, code = out.code, elapsed_ms = started.elapsed().as_millis() as u64, "finished");
        if self.ok_codes.contains(&out.code) {
            Ok(out)
        } else {
            let text = if out.stderr.trim().is_empty() {
                &out.stdout
            } else {
                &out.stderr
            };
            Err(CommandError::Failed {
                argv,
                code: out.code,
                tail: tail(text, STDERR_TAIL_LINES),
            })
        }
    }
}

/// Reads a pipe on its own thread, so a chatty child never blocks on a
/// full pipe while we wait for it, keeping at most the last `keep` bytes.
struct Reader {
    buf: Arc<std::sync::Mutex<Kept>>,
    done: std::sync::mpsc::Receiver<()>,
    keep: usize,
}

/// The bytes kept of a stream, and how many were dropped before them.
#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Kept {
    /// Appends `data`, dropping the oldest bytes beyond `keep` (in halves,
    /// so that the copying stays linear): at most twice `keep` is held.
    fn push(&mut self, data: &[u8], keep: usize) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > keep.saturating_mul(2).max(keep + 8192) {
            self.trim(keep);
        }
    }

    fn trim(&mut self, keep: usize) {
        let over = self.bytes.len().saturating_sub(keep);
        if over > 0 {
            self.bytes.drain(..over);
            self.dropped += over as u64;
        }
    }
}

/// How long output may still trickle in after the command exited: a
/// process that escaped the group (a daemon) may hold the pipe forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

impl Reader {
    fn start<R: Read + Send + 'static>(pipe: Option<R>, keep: usize) -> Self {
        let buf = Arc::new(std::sync::Mutex::new(Kept::default()));
        let (tx, done) = std::sync::mpsc::channel();
        let shared = Arc::clone(&buf);
        std::thread::spawn(move || {
            if let Some(mut p) = pipe {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = p.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(&chunk[..n], keep);
                }
            }
            let _ = tx.send(());
        });
        Self { buf, done, keep }
    }

    /// What was kept, waiting a little for the end of the output, and how
    /// many bytes before it were dropped.
    fn finish(self) -> (String, u64) {
        let _ = self.done.recv_timeout(DRAIN_GRACE);
        let mut kept = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.trim(self.keep);
        let text = String::from_utf8_lossy(&kept.bytes).into_owned();
        (text, kept.dropped)
    }
}

/// Waits for the child, killing its process group on timeout or shutdown.
fn wait(
    child: &mut Child,
    timeout: Duration,
    argv: &str,
    cancel: &Cancel,
) -> Result<ExitStatus, CommandError> {
    let deadline = Instant::now() + timeout;
    let pid = Pid::from_raw(child.id() as i32);
    // Polled in short slices on this thread: reaping stays here, so the
    // pid cannot be reused by another process before we kill its group.
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(source) => {
                return Err(CommandError::Spawn {
                    argv: argv.to_owned(),
                    source,
                });
            }
        }
        let interrupted = cancel.should_stop();
        if interrupted || Instant::now() >= deadline {
            kill_group(child, pid);
            return Err(if interrupted {
                CommandError::Interrupted {
                    argv: argv.to_owned(),
                }
            } else {
                CommandError::Timeout {
                    argv: argv.to_owned(),
                    timeout,
                }
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// TERM to the group, KILL after a grace period, and reap.
fn kill_group(child: &mut Child, pid: Pid) {
    let _ = killpg(pid, Signal::SIGTERM);
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// The last `n` non-empty lines of `text`, joined with " | " so they fit in
/// one log line, and at most [`TAIL_MAX_BYTES`] of them (the end is kept).
/// Progress bars (dnf 5 draws them even without a terminal) say nothing
/// about a failure and are left out.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !is_progress(l))
        .collect();
    if lines.is_empty() {
        return "(no output)".to_owned();
    }
    last_bytes(
        &lines[lines.len().saturating_sub(n)..].join(" | "),
        TAIL_MAX_BYTES,
    )
}

/// A progress bar's line: `[2/3] Prepare transaction  100% | 1.0 KiB/s |
/// 1.0 B | 00m00s`, `driftless-test  100% | 0.0 B/s | 0.0 B | 00m00s`.
fn is_progress(line: &str) -> bool {
    let mut cols = line.split(" | ").map(str::trim);
    let first = cols.next().unwrap_or("");
    let rate = cols.next().unwrap_or("");
    first.ends_with('%') && rate.ends_with("/s")
}

/// The end of `text`, at most `max` bytes of it, cut at a character and
/// marked with a leading `…` when cut.
pub(crate) fn last_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// The start of `text`, at most `max` bytes of it, cut at a character and
/// marked with a trailing `…` when cut.
pub(crate) fn first_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_accepted_codes() {
        let out = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 1"])
            .ok_codes(&[0, 1])
            .run(&Cancel::new())
            .expect("runs");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (1, "out\n", "err\n")
        );
    }

    #[test]
    fn progress_bars_are_no_part_of_a_tail() {
        let dnf5 = "Updating and loading repositories:\n driftless test packages                100% |   2.4 MiB/s |   4.9 KiB |  00m00s\nRepositories loaded.\n[2/3] Prepare transaction               100% | 142.0   B/s |   1.0   B |  00m00s\n>>> Error in %pre scriptlet: dl-failpre-0:1.0-1.noarch\n";
        assert_eq!(
            tail(dnf5, 10),
            "Updating and loading repositories: | Repositories loaded. | >>> Error in %pre scriptlet: dl-failpre-0:1.0-1.noarch"
        );
        // A line that only mentions a percentage stays.
        assert_eq!(tail("disk 100% | full\n", 10), "disk 100% | full");
    }

    #[test]
    fn failure_carries_the_stderr_tail() {
        let err = Cmd::new("sh")
            .args([
                "-c",
                "for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
            ])
            .run(&Cancel::new())
            .expect_err("fails");
        let msg = err.to_string();
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(
            msg.contains("line30") && msg.contains("line19") && !msg.contains("line18 "),
            "{msg}"
        );
        assert!(matches!(err, CommandError::Failed { code: 3, .. }));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/dnf")
            .run(&Cancel::new())
            .expect_err("no such program");
        assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/dnf"));
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild-survived");
        // A grandchild that would write the marker after 2s if not killed.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let err = Cmd::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_millis(300))
            .run(&Cancel::new())
            .expect_err("times out");
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(6));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the grandchild outlived the timeout");
    }

    #[test]
    fn stdin_and_environment_reach_the_child() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo \"$GREETING\""])
            .env("GREETING", "hi")
            .stdin(b"payload\n")
            .run(&Cancel::new())
            .expect("runs");
        assert_eq!(out.stdout, "payload\nhi\n");
    }

    #[test]
    fn a_cleared_environment_keeps_only_path_locale_and_what_is_set() {
        let out = Cmd::new("/usr/bin/env")
            .env("GREETING", "hi")
            .clear_env()
            .run(&Cancel::new())
            .expect("runs");
        let mut vars: Vec<&str> = out.stdout.lines().collect();
        vars.sort_unstable();
        assert_eq!(
            vars,
            vec!["GREETING=hi", "LC_ALL=C", &format!("PATH={CLEAN_PATH}")]
        );
        let e = Cmd::new("sh")
            .args(["-c", "printf 0123456789"])
            .output_max(4)
            .run(&Cancel::new())
            .expect_err("over the cap");
        assert!(
            matches!(e, CommandError::TooMuchOutput { limit: 4, .. }),
            "{e}"
        );
    }

    #[test]
    fn a_background_child_holding_the_pipes_does_not_outlast_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pid");
        let started = Instant::now();
        let out = Cmd::new("sh")
            .args([
                "-c",
                "echo before; sleep 30 & echo $! > \"$0\"; exit 1",
                marker.to_str().expect("utf-8"),
            ])
            .ok_codes(&[1])
            .timeout(Duration::from_secs(60))
            .kill_leftovers()
            .run(&Cancel::new())
            .expect("runs");
        assert_eq!(out.stdout, "before\n");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for the background child: {:?}",
            started.elapsed()
        );
        // The leftover was killed with the group (it is our child's child:
        // once killed and reaped by init, it is gone from /proc, or a zombie).
        let pid = std::fs::read_to_string(&marker)
            .expect("pid")
            .trim()
            .to_owned();
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !state.is_empty()
            && state
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        assert!(!alive, "the background child survived: {state}");
    }

    /// Regression: a command that printed 200 MB was held whole in memory
    /// (393 MB peak), and a failing one with a 300 KB line of stderr put
    /// all of it into the error.
    #[test]
    fn output_is_bounded_while_it_is_read() {
        let out = Cmd::new("sh")
            .args([
                "-c",
                "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo last",
            ])
            .tail_only(1000)
            .run(&Cancel::new())
            .expect("runs");
        assert_eq!(out.stdout.len(), 1000);
        assert!(
            out.stdout.ends_with("x\nlast\n"),
            "{:?}",
            &out.stdout[990..]
        );
        let err = Cmd::new("sh")
            .args(["-c", "head -c 300000 /dev/zero | tr '\\0' e >&2; exit 2"])
            .tail_only(REPORTED_TAIL)
            .run(&Cancel::new())
            .expect_err("fails");
        let msg = err.to_string();
        assert!(msg.len() < TAIL_MAX_BYTES + 200, "{} bytes", msg.len());
        assert!(msg.contains("exit code 2") && msg.contains("…eee"), "{msg}");
        // A tool whose output is parsed: too much is an error, not a cut.
        let mut parsed = Cmd::new("sh").args(["-c", "head -c 100000 /dev/zero"]);
        parsed.keep = 50_000;
        let err = parsed.run(&Cancel::new()).expect_err("too much");
        assert!(matches!(err, CommandError::TooMuchOutput { .. }), "{err}");
        assert_eq!(last_bytes("héllo", 4), "…llo");
        assert_eq!(first_bytes("héllo", 2), "h…");
    }

    #[test]
    fn big_output_does_not_deadlock() {
        let out = Cmd::new("sh").args(["-c", "head -c 1000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero | tr '\\0' y >&2"]).run(&Cancel::new()).expect("runs");
        assert_eq!(out.stdout.len(), 1_000_000);
        assert_eq!(out.stderr.len(), 1_000_000);
    }
}
