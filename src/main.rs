//! The `driftless` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = driftless::cli::Cli::parse();
    driftless::logging::init(cli.verbose);
    std::process::ExitCode::from(driftless::cli::run(cli) as u8)
}
