//! The `driftless` binary: parse the command line, set up logging, run.

use clap::Parser;
use driftless::cli::{Cli, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, which scripts would read as
            // "changes pending": usage errors are errors, exit 1.
            let code = if e.use_stderr() {
                ExitCode::Error
            } else {
                ExitCode::Ok
            };
            let _ = e.print();
            return std::process::ExitCode::from(code as u8);
        }
    };
    driftless::logging::init(match cli.command {
        driftless::cli::Command::Daemon(_) => driftless::logging::Logger::Daemon,
        _ => driftless::logging::Logger::Cli {
            verbose: cli.verbose,
        },
    });
    std::process::ExitCode::from(driftless::cli::run(cli) as u8)
}
