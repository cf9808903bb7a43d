//! The client side of the daemon's control socket: `converge --now` and
//! `status` ask the daemon when it runs, so that the run is the daemon's
//! (in its journal, never two at once) and the status is live.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::app::{ConvergeResult, DaemonView};
use crate::converge::Event;
use crate::daemon::protocol::{self, Request, Response};

/// How long `status` waits for the daemon's answer; then it shows what
/// the state files say and that the daemon did not answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the daemon; `Ok(None)` when none runs.
pub(super) fn connect(socket: &Path) -> Result<Option<UnixStream>> {
    match UnixStream::connect(socket) {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "the driftless daemon's socket {} is for root only: run as root (sudo driftless …)",
            socket.display()
        ),
        Err(e) => Err(e).with_context(|| format!("failed to connect to {}", socket.display())),
    }
}

/// Sends the request. The daemon answers a client it refuses (not root)
/// at once and closes, so a failed send is followed by reading that answer.
fn send(stream: &mut UnixStream, request: &Request) -> Result<()> {
    let Err(e) = stream.write_all(&protocol::line(request)) else {
        return Ok(());
    };
    let mut line = String::new();
    if BufReader::new(&*stream).read_line(&mut line).is_ok()
        && let Ok(Response::Refused { message }) = serde_json::from_str::<Response>(&line)
    {
        return Err(refused(&message));
    }
    Err(e).context("failed to send the request to the daemon")
}

fn refused(message: &str) -> anyhow::Error {
    anyhow::anyhow!("the daemon refused: {message}")
}

/// The daemon's live view.
pub(super) fn status(mut stream: UnixStream) -> Result<DaemonView> {
    stream.set_read_timeout(Some(STATUS_TIMEOUT)).ok();
    stream.set_write_timeout(Some(STATUS_TIMEOUT)).ok();
    send(&mut stream, &Request::Status)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow::anyhow!("no answer within {} s", STATUS_TIMEOUT.as_secs())
            }
            _ => anyhow::Error::new(e).context("failed to read the daemon's answer"),
        })?;
    match serde_json::from_str::<Response>(&line).context("the daemon answered garbage")? {
        Response::Status { daemon } => Ok(*daemon),
        Response::Refused { message } => Err(refused(&message)),
        _ => bail!("the daemon answered something else than a status"),
    }
}

/// Tells a running daemon that the agent state changed, so that its
/// status line and metrics say so at once. Best effort: without a daemon,
/// or when it does not answer, there is nothing to tell.
pub(super) fn refresh(socket: &Path) {
    let Ok(Some(mut stream)) = connect(socket) else {
        return;
    };
    stream.set_read_timeout(Some(STATUS_TIMEOUT)).ok();
    stream.set_write_timeout(Some(STATUS_TIMEOUT)).ok();
    if send(&mut stream, &Request::Refresh).is_ok() {
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
    }
}

/// Asks the daemon to converge and follows the run: progress on stderr (a
/// live line on a terminal, plain lines otherwise) or, with `json`, the
/// socket's own `queued` and `event` lines on stdout, one JSON document per
/// line, ahead of the envelope the caller prints last. Returns the run's
/// result, which the caller reports as an in-process converge would be.
pub(super) fn converge(
    mut stream: UnixStream,
    dry_run: bool,
    force: bool,
    json: bool,
) -> Result<ConvergeResult> {
    let by = Some(crate::system::facts::invoking_user());
    send(&mut stream, &Request::Converge { dry_run, force, by })?;
    let mut progress = Progress::new(json);
    for line in BufReader::new(stream).lines() {
        let line = line.context("lost the daemon while it converged (the run goes on there)")?;
        let response =
            serde_json::from_str::<Response>(&line).context("the daemon answered garbage")?;
        if json && matches!(response, Response::Queued { .. } | Response::Event { .. }) {
            progress.json_line(&line)?;
            continue;
        }
        match response {
            Response::Queued { ahead } => progress.say(&format!(
                "waiting for {} ahead of this one",
                crate::words::count(ahead, "converge")
            )),
            Response::Event { event } => progress.event(&event),
            Response::Finished { result, .. } => {
                progress.done();
                return Ok(*result);
            }
            Response::Refused { message } => {
                progress.done();
                return Err(refused(&message));
            }
            Response::Status { .. } | Response::Refreshed => {}
        }
    }
    progress.done();
    bail!(
        "the daemon closed the connection before the converge ended (see `journalctl -u driftless`)"
    )
}

/// Progress of a run followed through the daemon.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines,
    /// `--json`: the socket's lines go to stdout as they come.
    Json,
}

impl Progress {
    fn new(json: bool) -> Self {
        if json {
            Progress::Json
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message("asking the driftless daemon");
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    fn say(&mut self, text: &str) {
        match self {
            Progress::Bar(b) => b.set_message(text.to_owned()),
            Progress::Lines => eprintln_safe(text),
            Progress::Json => {}
        }
    }

    /// One JSON line on stdout, flushed at once so that a script reading
    /// the pipe follows the run live.
    fn json_line(&mut self, line: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .context("failed to write to stdout")
    }

    fn event(&mut self, e: &Event) {
        let text = match e {
            Event::StepStarted { index, total, .. } => format!("[{index}/{total}] {}", e.words()),
            // The end is the result's to say.
            Event::StepFinished { .. }
            | Event::CheckResult { passed: true, .. }
            | Event::Finished { .. } => {
                return;
            }
            Event::Started { .. }
            | Event::FetchFailed { .. }
            | Event::Fetched { .. }
            | Event::Loaded { .. }
            | Event::Held { .. }
            | Event::PauseOverridden { .. }
            | Event::Planned { .. }
            | Event::Began { .. }
            | Event::PackagesStarted { .. }
            | Event::PackagesFinished { .. }
            | Event::CheckAttempt { .. }
            | Event::CheckResult { .. }
            | Event::RollingBack { .. }
            | Event::Restored { .. }
            | Event::RestoreFailed { .. } => e.words(),
        };
        self.say(&text);
    }

    fn done(&mut self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// One progress line on stderr; a closed stderr is not an error here.
fn eprintln_safe(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
