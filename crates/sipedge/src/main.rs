//! The `sipedge` binary: command-line entry points (design brief §6). Each subcommand lives in its own
//! module; the edge itself is in `edge-core`, the decisions in `federation-policy`.

mod decode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode => decode::run(),
    }
}
