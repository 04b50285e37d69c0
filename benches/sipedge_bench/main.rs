//! `sipedge-bench`: the SIP load generator and sink of issue 11, written for this because SIPp and
//! Python cost more CPU per transaction than the proxy under test. Subcommands:
//!
//! - `run`: the generator (`gen.rs`) against `--target`, then the report (`report.rs`) on stdout, as
//!   text or `--json`;
//! - `sink`: the 200-OK UAS (`sink.rs`) the proxy forwards to;
//! - `pki`: the certificates of a run (`pki.rs`);
//! - `table`: the side-by-side table of several `--json` reports (what `benches/compare.sh` prints).
//!
//! Connection I/O is `stream.rs` (mio, rustls with ring), SIP text `sip.rs`, pacing `rate.rs`, CPU
//! ticks `procstat.rs`. The workspace's panic-free lints are denied here too: the generator and the
//! sink parse what the proxy sends.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gen;
mod pki;
mod procstat;
mod rate;
mod report;
mod sink;
mod sip;
mod stream;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use rustls_pki_types::ServerName;

#[derive(Debug, Parser)]
#[command(
    name = "sipedge-bench",
    about = "SIP MESSAGE load generator, 200-OK sink and test PKI"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Generate load against a proxy (or a sink) and report.
    Run(RunArgs),
    /// Answer every request with 200 OK.
    Sink(SinkArgs),
    /// Write the test certificates into a directory.
    Pki {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the comparison table of several `run --json` reports (files, in order).
    Table { reports: Vec<PathBuf> },
}

#[derive(Debug, Args)]
struct TlsArgs {
    /// Plain TCP instead of TLS.
    #[arg(long)]
    tcp: bool,
    /// Own certificate chain (PEM).
    #[arg(long, required_unless_present = "tcp")]
    cert: Option<PathBuf>,
    /// Own private key (PEM).
    #[arg(long, required_unless_present = "tcp")]
    key: Option<PathBuf>,
    /// The CA of the peer's certificate (PEM).
    #[arg(long, required_unless_present = "tcp")]
    ca: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> Option<tls::TlsFiles> {
        if self.tcp {
            return None;
        }
        Some(tls::TlsFiles {
            cert: self.cert.clone()?,
            key: self.key.clone()?,
            ca: self.ca.clone()?,
        })
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Where to send (the proxy's listener, or a sink).
    #[arg(long)]
    target: SocketAddr,
    /// The name the target's certificate must carry.
    #[arg(long, default_value = "edge-int.corp.test")]
    server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Client connections.
    #[arg(short = 'c', long, default_value_t = 2)]
    connections: u32,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    inflight: u32,
    /// Transactions per second over all connections; 0: as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds before the measurement starts (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A request without a final response after this is a timeout.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    #[arg(long, default_value = "sip:bob@partner.test")]
    uri: String,
    #[arg(long, default_value = "sip:alice@corp.test")]
    from: String,
    /// The process(es) under test (repeat or comma-separate): their CPU in the window is reported.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// The report's name (`sipedge`, `kamailio`, `direct`).
    #[arg(long, default_value = "run")]
    label: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// The scenario this run belongs to (the table compares rows of one scenario).
    #[arg(long, default_value = "max")]
    scenario: String,
}

#[derive(Debug, Args)]
struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
}

fn secs(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s}: not a duration"))
}

fn run(a: &RunArgs) -> Result<()> {
    let tls = match a.tls.files() {
        Some(files) => {
            let name = ServerName::try_from(a.server_name.clone())
                .with_context(|| format!("--server-name {}", a.server_name))?;
            Some((tls::client(&files)?, name))
        }
        None => None,
    };
    let opts = gen::GenOpts {
        label: a.label.clone(),
        target: a.target,
        tls,
        connections: a.connections.max(1),
        inflight: a.inflight.max(1),
        rate: a.rate,
        warmup: secs(a.warmup, "--warmup")?,
        duration: secs(a.duration, "--duration")?,
        timeout: Duration::from_millis(a.timeout_ms),
        template: sip::RequestTemplate {
            uri: a.uri.clone(),
            from: a.from.clone(),
            transport: if a.tls.tcp { "TCP" } else { "TLS" },
        },
        pids: a.pid.clone(),
    };
    let (measured, latency) = gen::run(&opts)?;
    let mut r = report::Report::new(&measured, &latency);
    r.scenario = a.scenario.clone();
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", r.text());
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Sink(a) => {
            let cfg = a.tls.files().map(|f| tls::server(&f)).transpose()?;
            let listener = sink::bind(a.listen, cfg.is_some())?;
            sink::serve(listener, cfg)
        }
        Cmd::Pki { dir } => pki::generate(&dir),
        Cmd::Table { reports } => {
            let mut rows = Vec::new();
            for p in &reports {
                let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
                rows.push(
                    serde_json::from_str::<report::Report>(text.trim())
                        .with_context(|| format!("{}: not a sipedge-bench --json report", p.display()))?,
                );
            }
            print!("{}", report::table(&rows));
            Ok(())
        }
    }
}
