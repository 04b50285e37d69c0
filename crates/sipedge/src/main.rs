//! The `sipedge` binary: command-line entry points (design brief §6). Each subcommand lives in its own
//! module; the edge itself is in `edge-core`, the decisions in `federation-policy`.

mod check_config;
// The validated configuration is read by `sipedge run` (issue 4); until then only check-config and the
// tests use it, so some accessors are not yet called from the binary.
#[allow(dead_code, unused_imports)]
mod config;
mod decode;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sipedge", version, about = "SIP federation Access Edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read one SIP message on stdin (as one datagram carries it) and print it as JSON.
    Decode,
    /// Validate a configuration file (with SIPEDGE__SECTION__KEY environment overrides): print every
    /// warning and error; exit 0 when valid, 1 when not.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(required_unless_present = "embedded_default")]
        file: Option<PathBuf>,
        /// Check the configuration compiled into the binary (used by `run` without --config).
        #[arg(long, conflicts_with = "file")]
        embedded_default: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode => decode::run(),
        Command::CheckConfig { file, .. } => check_config::run(file.as_deref()),
    }
}
