//! `sipedge-bench`: the SIP load generator and sink of issue 11, written for this because SIPp and
//! Python cost more CPU per transaction than the proxy under test. Subcommands:
//!
//! - `run`: the generator (`gen.rs`) against `--target`, then the report (`report.rs`) on stdout, as
//!   text or `--json`;
//! - `sink`: the 200-OK UAS (`sink.rs`) the proxy forwards to;
//! - `relay`: a TLS relay that copies plaintext both ways without parsing (`relay.rs`): the floor
//!   of a TLS-terminating proxy, measured beside the edge;
//! - `pki`: the certificates of a run (`pki.rs`);
//! - `table`: the side-by-side table of several `--json` reports (what `benches/compare.sh` prints);
//! - `idle`, `handshakes`, `burst`: the connection scenarios (`conns.rs` over `pool.rs`), and
//!   `tls-server`, their reference server (`tls_server.rs`, rustls's tlsserver-mio example);
//!   `conn-table`: their table (`conntable.rs`, what `benches/connections.sh` prints).
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

mod conns;
mod conntable;
mod gen;
mod pki;
mod pool;
mod procstat;
mod rate;
mod relay;
mod report;
mod sink;
mod sip;
mod stream;
mod tls;
mod tls_server;

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
    /// Relay TLS to `--to`, copying plaintext both ways unparsed: the floor of a TLS proxy.
    Relay(RelayArgs),
    /// Write the test certificates into a directory.
    Pki {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the comparison table of several `run --json` reports (files, in order).
    Table { reports: Vec<PathBuf> },
    /// Idle TLS connections in steps up to the open-file limits: the target's RSS/PSS per connection.
    Idle(IdleArgs),
    /// New connection, handshake, close, again: handshakes/s and the target's CPU per handshake.
    Handshakes(HandshakeArgs),
    /// Many new connections at once, each handshaken and answered: time, failures, latency, CPU, RSS.
    Burst(BurstArgs),
    /// The reference server: rustls's tlsserver-mio example in echo mode, mutual TLS.
    TlsServer(TlsServerArgs),
    /// Print the table of `idle`/`handshakes`/`burst`/`run` --json reports (files, in order).
    ConnTable { reports: Vec<PathBuf> },
}

#[derive(Debug, Args)]
struct ConnArgs {
    /// The target's TLS listener.
    #[arg(long)]
    target: SocketAddr,
    /// The name the target's certificate must carry.
    #[arg(long, default_value = "edge-int.corp.test")]
    server_name: String,
    /// Own certificate chain (PEM): the front end's, for mutual TLS.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// The CA of the target's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Local addresses to connect from, in turn (e.g. 127.0.0.1,127.0.0.2); none: the kernel's.
    #[arg(long, value_delimiter = ',')]
    source: Vec<std::net::IpAddr>,
    /// The process(es) under test (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// The report's name (`sipedge-ring`, `rustls-ref-aws-lc-rs`, `kamailio`, …).
    #[arg(long, default_value = "run")]
    label: String,
    /// The target's key type, for the report (`ecdsa`, `rsa`).
    #[arg(long, default_value = "ecdsa")]
    key_type: String,
    /// Per connection: from connect to its answer (or the server's close).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[arg(long, default_value = "sip:bob@partner.test")]
    uri: String,
    #[arg(long, default_value = "sip:alice@corp.test")]
    from: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The most connections (0: from this process's and the target's open-file limits).
    #[arg(long, default_value_t = 0)]
    max: u64,
    /// Descriptors kept free on each side when the maximum comes from the limits.
    #[arg(long, default_value_t = 400)]
    reserve: u64,
    /// Explicit steps (cumulative connection counts); default: 1, 10, 100, 1000, … up to the max.
    #[arg(long, value_delimiter = ',')]
    steps: Vec<u64>,
    /// Connections handshaking at once while a step opens.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// After a step's last answer, before its memory is read.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// After the last step: seconds idle before one more reading (0: none). Past the proxy's
    /// transaction timers, what remains is the connections' own state.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
}

#[derive(Debug, Args)]
struct HandshakeArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Resume sessions (rustls's client session cache; TLS 1.3 tickets) instead of full handshakes.
    #[arg(long)]
    resume: bool,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

#[derive(Debug, Args)]
struct BurstArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Connections opened and not yet answered, at most.
    #[arg(long, default_value_t = 500)]
    concurrency: usize,
}

#[derive(Debug, Args)]
struct TlsServerArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Certificate chain (the example's --certs).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Client certificates required from this CA (the example's --auth … --require-auth).
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, value_enum, default_value = "ring")]
    provider: tls::Provider,
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
    /// A front end's shape: each connection writes its `--inflight` requests at once and waits for
    /// all their finals before the next burst (instead of keeping `--inflight` in flight), and the
    /// requests ask the sink to answer each with its own write, as a far end does.
    #[arg(long)]
    bursts: bool,
}

#[derive(Debug, Args)]
struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct RelayArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The listener's certificate, key and the CA its clients' certificates must chain to.
    #[command(flatten)]
    tls: TlsArgs,
    /// Where to relay (the sink).
    #[arg(long)]
    to: SocketAddr,
    /// The name the upstream's certificate must carry.
    #[arg(long)]
    to_name: String,
    /// The relay's client certificate towards `--to`.
    #[arg(long)]
    to_cert: PathBuf,
    #[arg(long)]
    to_key: PathBuf,
    /// The CA `--to`'s certificate must chain to.
    #[arg(long)]
    to_ca: PathBuf,
}

fn relay(a: RelayArgs) -> Result<()> {
    let files = a
        .tls
        .files()
        .context("relay: --cert, --key and --ca are required")?;
    let server = tls::server(&files)?;
    let upstream = relay::Upstream {
        to: a.to,
        tls: tls::client(&tls::TlsFiles {
            cert: a.to_cert,
            key: a.to_key,
            ca: a.to_ca,
        })?,
        server_name: ServerName::try_from(a.to_name.clone())
            .with_context(|| format!("--to-name {}", a.to_name))?,
    };
    let listener = sink::bind(a.listen, true)?;
    relay::serve(listener, server, upstream)
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
            answer_each: a.bursts,
        },
        pids: a.pid.clone(),
        bursts: a.bursts,
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

impl ConnArgs {
    fn target(&self, resume: bool) -> Result<pool::Target> {
        let files = tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        };
        let tls = if resume {
            tls::client(&files)?
        } else {
            tls::client_without_resumption(&files)?
        };
        Ok(pool::Target {
            addr: self.target,
            sources: self.source.clone(),
            tls,
            name: ServerName::try_from(self.server_name.clone())
                .with_context(|| format!("--server-name {}", self.server_name))?,
            template: sip::RequestTemplate {
                uri: self.uri.clone(),
                from: self.from.clone(),
                transport: "TLS",
                answer_each: false,
            },
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }

    fn subject(&self) -> conns::Subject {
        conns::Subject {
            label: self.label.clone(),
            key: self.key_type.clone(),
            pids: self.pid.clone(),
        }
    }

    /// The report as JSON (`--json`) or as its row of the connection table.
    fn print<T: serde::Serialize>(&self, report: &T) -> Result<()> {
        let json = serde_json::to_string(report)?;
        if self.json {
            println!("{json}");
        } else {
            let row: conntable::AnyReport = serde_json::from_str(&json)?;
            print!("{}", conntable::table(&[row]));
        }
        Ok(())
    }
}

/// Raises this process's open-file soft limit to the hard limit (the connection scenarios hold
/// thousands of sockets); returns the soft limit now.
fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.maximum.is_some() && now.current < now.maximum {
        let raised = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("sipedge-bench: cannot raise the open-file limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

fn idle(a: &IdleArgs) -> Result<()> {
    let own = raise_nofile();
    let target_soft = a.conn.pid.first().and_then(|&p| procstat::nofile_soft(p));
    let max = if a.max > 0 {
        a.max
    } else {
        conns::max_connections(own, target_soft, a.reserve)
    };
    let steps = if a.steps.is_empty() {
        conns::idle_steps(max)
    } else {
        a.steps.iter().copied().filter(|&n| n <= max).collect()
    };
    let opts = conns::IdleOpts {
        steps,
        max,
        concurrency: a.concurrency.max(1),
        settle: Duration::from_millis(a.settle_ms),
        linger: secs(a.linger, "--linger")?,
    };
    let r = conns::idle(a.conn.target(false)?, &a.conn.subject(), &opts)?;
    a.conn.print(&r)
}

fn handshakes(a: &HandshakeArgs) -> Result<()> {
    raise_nofile();
    let opts = conns::HandshakeOpts {
        resume: a.resume,
        concurrency: a.concurrency.max(1),
        warmup: secs(a.warmup, "--warmup")?,
        duration: secs(a.duration, "--duration")?,
    };
    let r = conns::handshakes(a.conn.target(a.resume)?, &a.conn.subject(), &opts)?;
    a.conn.print(&r)
}

fn burst(a: &BurstArgs) -> Result<()> {
    raise_nofile();
    let opts = conns::BurstOpts {
        count: a.count,
        concurrency: a.concurrency.max(1),
    };
    let r = conns::burst(a.conn.target(false)?, &a.conn.subject(), &opts)?;
    a.conn.print(&r)
}

fn read_reports<T: serde::de::DeserializeOwned>(files: &[PathBuf]) -> Result<Vec<T>> {
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_str::<T>(text.trim())
                .with_context(|| format!("{}: not a sipedge-bench --json report", p.display()))
        })
        .collect()
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Idle(a) => idle(&a),
        Cmd::Handshakes(a) => handshakes(&a),
        Cmd::Burst(a) => burst(&a),
        Cmd::TlsServer(a) => {
            raise_nofile();
            let files = tls::TlsFiles {
                cert: a.cert,
                key: a.key,
                ca: a.ca,
            };
            tls_server::serve(a.listen, tls_server::config(&files, a.provider)?)
        }
        Cmd::ConnTable { reports } => {
            print!("{}", conntable::table(&read_reports(&reports)?));
            Ok(())
        }
        Cmd::Run(a) => run(&a),
        Cmd::Sink(a) => {
            let cfg = a.tls.files().map(|f| tls::server(&f)).transpose()?;
            let listener = sink::bind(a.listen, cfg.is_some())?;
            sink::serve(listener, cfg)
        }
        Cmd::Relay(a) => relay(a),
        Cmd::Pki { dir } => pki::generate(&dir),
        Cmd::Table { reports } => {
            print!("{}", report::table(&read_reports::<report::Report>(&reports)?));
            Ok(())
        }
    }
}
