//! Where logs go. Results go to stdout; logs never do.
//!
//! - The command line logs to stderr (warnings by default, `-v` info, `-vv`
//!   debug), and also sends the entries that carry a `MESSAGE_ID`
//!   (`report::journal`) to journald when it runs, so that
//!   `journalctl MESSAGE_ID=…` finds a converge run by hand as well as one
//!   run by the daemon.
//! - The daemon under systemd logs everything from info up to journald
//!   (syslog identifier `driftless`, no field prefix, info at priority 6);
//!   without a journal socket, to stderr.
//!
//! `DRIFTLESS_LOG` (an `EnvFilter` directive) overrides the level. No
//! timestamps when stderr goes to journald, which stamps lines itself.

use tracing::Metadata;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Who is logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logger {
    /// A command run by hand; `verbose` is the count of `-v`.
    Cli {
        /// `-v` given this many times.
        verbose: u8,
    },
    /// The daemon.
    Daemon,
}

/// Sets up logging once; a second call (tests) keeps the first.
pub fn init(who: Logger) {
    let default = match who {
        Logger::Cli { verbose: 0 } => "warn",
        Logger::Cli { verbose: 1 } | Logger::Daemon => "info",
        Logger::Cli { .. } => "debug",
    };
    let filter =
        || EnvFilter::try_from_env("DRIFTLESS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = || {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_target(false);
        if under_journal {
            layer.without_time().boxed()
        } else {
            layer.boxed()
        }
    };
    let journal = journald();
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = match (who, journal) {
        (Logger::Daemon, Some(j)) if under_journal => vec![j.with_filter(filter()).boxed()],
        (Logger::Daemon, _) => vec![stderr().with_filter(filter()).boxed()],
        // The operator entries are for the journal: the command's own
        // output says the same on stdout and stderr.
        (Logger::Cli { .. }, Some(j)) => vec![
            stderr()
                .with_filter(filter())
                .with_filter(filter_fn(|m| !has_message_id(m)))
                .boxed(),
            j.with_filter(filter_fn(has_message_id)).boxed(),
        ],
        (Logger::Cli { .. }, None) => vec![
            stderr()
                .with_filter(filter())
                .with_filter(filter_fn(|m| !has_message_id(m)))
                .boxed(),
        ],
    };
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// The journald layer, when the journal socket answers.
fn journald() -> Option<tracing_journald::Layer> {
    let mut priorities = tracing_journald::PriorityMappings::new();
    priorities.info = tracing_journald::Priority::Informational;
    priorities.debug = tracing_journald::Priority::Debug;
    tracing_journald::layer().ok().map(|l| {
        l.with_syslog_identifier("driftless".to_owned())
            .with_field_prefix(None)
            .with_priority_mappings(priorities)
    })
}

/// Only the operator events go to the journal from a command run by hand.
fn has_message_id(meta: &Metadata<'_>) -> bool {
    meta.fields().field("message_id").is_some()
}
