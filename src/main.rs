//! The `driftless` binary: parse the command line, set up logging, run.

use std::io::Write;

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
            // With --json, a usage error is a JSON document too.
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                let doc = driftless::cli::render::usage_error_json(&e.to_string());
                let _ = writeln!(std::io::stdout(), "{doc}");
            }
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
