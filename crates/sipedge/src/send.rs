//! `sipedge send`: the edge's own first-request client. It connects to an edge's internal listener
//! over mutual TLS as a known server (rustls, ring), sends one well-formed out-of-dialog request
//! (OPTIONS or MESSAGE), reads what comes back until a final response or the timeout (`sip_client`, shared with
//! `test-push`), and prints each response's status line with its `ms-diagnostics`,
//! `ms-diagnostics-public` and `Warning` headers. Without flags it is a client of `sipedge run`
//! without `--config`: the local PKI's `client.pem`/`client.key`/`ca.pem` (`config::local_pki`) and
//! the internal address that run recorded (else the embedded default's `internal.listen`).
//!
//! Exit status: 0 on a 2xx final response, 1 on any other final response, 2 when no final response
//! came (connect or TLS failure, the edge closed, timeout) or the arguments or files are unusable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::local_pki::{self, LocalPki};
use crate::config::Config;
use crate::sip_client::{self, Event, Request, Target};

const NO_ANSWER: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Options,
    Message,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The edge's internal listener. Default: the address the last `sipedge run` without --config
    /// recorded in the state directory (internal.addr), else the embedded default's internal.listen.
    #[arg(long, value_name = "ADDR")]
    edge: Option<SocketAddr>,
    /// The name the edge's certificate must carry. Default: the embedded default's internal FQDN.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    #[command(flatten)]
    files: ClientFiles,
    #[arg(long, value_enum, default_value_t = Method::Options, ignore_case = true)]
    method: Method,
    /// Request-URI and To. The default is a partner domain the embedded default does not federate
    /// with, so the edge answers with its refusal and diagnostic.
    #[arg(long, value_name = "URI", default_value = "sip:bob@partner.example")]
    to: String,
    /// From. Default: sip:alice@<the embedded default's first SIP domain>.
    #[arg(long, value_name = "URI")]
    from: Option<String>,
    /// Body (sent as text/plain). Default: none for OPTIONS, a greeting for MESSAGE.
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// How long to wait for a final response, in milliseconds (the edge's own Timer F is 32 s).
    #[arg(long, value_name = "N", default_value_t = 35_000)]
    timeout_ms: u64,
}

/// A known server's TLS files, shared by `send` and `test-push`.
#[derive(Debug, clap::Args)]
pub struct ClientFiles {
    /// This client's certificate (PEM chain of a known server). Default: <state dir>/client.pem
    /// (test-push --config: the config's internal.cert_file).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM). Default: <state dir>/client.key (test-push --config:
    /// internal.key_file).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA(s) the edge's certificate must chain to (PEM). Default: <state dir>/ca.pem
    /// (test-push --config: internal.ca_file and the CAs in internal.cert_file).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

pub fn run(args: &Args) -> ExitCode {
    match send(args) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sipedge send: {e}");
            ExitCode::from(NO_ANSWER)
        }
    }
}

/// The final status, or why there was none.
fn send(args: &Args) -> Result<u16, String> {
    let state = local_pki::state_dir();
    let files = LocalPki::client_paths(&state.path);
    let needs_default = args.edge.is_none() || args.server_name.is_none() || args.from.is_none();
    let default = if needs_default {
        Some(embedded_default()?)
    } else {
        None
    };
    let edge = match (args.edge, &default) {
        (Some(a), _) => a,
        (None, d) => local_pki::read_internal_addr(&state.path)
            .or(d.as_ref().map(|c| c.internal().listen))
            .ok_or("no edge address: give --edge ADDR")?,
    };
    let server_name = match (&args.server_name, &default) {
        (Some(n), _) => n.clone(),
        (None, d) => d
            .as_ref()
            .map_or_else(|| "localhost".to_owned(), |c| c.internal().fqdn.to_string()),
    };
    let from = match (&args.from, &default) {
        (Some(f), _) => f.clone(),
        (None, d) => format!("sip:alice@{}", first_domain(d.as_ref())),
    };
    let cert = args.files.cert.clone().unwrap_or(files.cert);
    let key = args.files.key.clone().unwrap_or(files.key);
    let ca = args.files.ca.clone().unwrap_or(files.ca);
    let tls = sip_client::client_config(&cert, &key, &ca).map_err(|e| {
        format!(
            "{e} (the local PKI is written by `sipedge run` without --config into {}, chosen by {}; \
             or give --cert, --key and --ca)",
            state.path.display(),
            state.from
        )
    })?;
    let body = match (&args.body, args.method) {
        (Some(b), _) => b.clone(),
        (None, Method::Message) => "Hello from sipedge send.".to_owned(),
        (None, Method::Options) => String::new(),
    };
    let req = Request {
        method: args.method.as_str(),
        to: &args.to,
        from: &from,
        body: &body,
        user_agent: "sipedge-send",
    };
    let target = Target {
        edge,
        server_name: server_name.clone(),
        tls,
    };
    let who = sip_client::first_name(&cert).unwrap_or_else(|| cert.display().to_string());
    let mut show = |event: Event<'_>| match event {
        Event::Connected => println!(
            "{} {} -> {edge} (TLS as {who}, server {server_name})",
            args.method.as_str(),
            args.to
        ),
        Event::Response(r) => {
            println!("{}", r.start_line);
            for (name, value) in &r.diagnostics {
                println!("{name}: {value}");
            }
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    sip_client::transact(&target, &req, timeout, &mut show)
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// The embedded default configuration (its addresses and names are the defaults of the clients).
pub(crate) fn embedded_default() -> Result<Config, String> {
    Config::embedded_default().map_err(|issues| {
        let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
        format!(
            "the embedded default configuration is invalid: {}",
            all.join("; ")
        )
    })
}

/// The first of `edge.sip_domains` (the edge vouches for From URIs of its own domains only).
pub(crate) fn first_domain(config: Option<&Config>) -> String {
    config
        .and_then(|c| c.edge().sip_domains.first())
        .map_or_else(|| "localhost".to_owned(), ToString::to_string)
}
