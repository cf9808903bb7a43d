//! Logs go to stderr through tracing, never to stdout (that is for results).

use tracing_subscriber::EnvFilter;

/// Sets up logging: warnings by default, `-v` info, `-vv` debug;
/// `DRIFTLESS_LOG` (an `EnvFilter` directive) overrides. No timestamps when
/// stderr goes to journald, which stamps lines itself.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("DRIFTLESS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests calling run() twice) is harmless: keep the first.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = builder.without_time().try_init();
    } else {
        let _ = builder.try_init();
    }
}
