//! `sipedge send`: the edge's own first-request client. It connects to an edge's internal listener
//! over mutual TLS as a known server (rustls, ring), sends one well-formed out-of-dialog request
//! (OPTIONS or MESSAGE), reads what comes back until a final response or the timeout (`sip_client`, shared with
//! `test-push`), and prints each response's status line with its `ms-diagnostics`,
//! `ms-diagnostics-public` and `Warning` headers. Without flags it is a client of `sipedge run`
//! without `--config`: the local PKI's `client.pem`/`client.key`/`ca.pem` (`config::local_pki`) and
//! the internal address that run recorded (else the embedded default's `internal.listen`). With
//! `--config FILE` (as `test-push`) it is a client of the edge that file configures: its
//! `internal.listen`, `internal.fqdn`, first `edge.sip_domains` domain as From, and the edge's own
//! internal certificate as client identity (a known server, as the push probe's).
//!
//! When the edge closes without answering — what it does to a client certificate that names no
//! known server, logging `internal_peer_not_known_server` — `send` says so and names the entry to
//! add; a 1907 refusal (From not one of the edge's domains) gets the flag to give.
//!
//! Exit status: 0 on a 2xx final response, 1 on any other final response, 2 when no final response
//! came (connect or TLS failure, the edge closed, timeout) or the arguments or files are unusable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::local_pki::{self, LocalPki};
use crate::config::{Config, Issue};
use crate::sip_client::{self, ClientConfigError, ClientError, Event, Request, Target};
use crate::test_push::IdentityError;

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
    /// The edge's internal FQDN: the name its certificate must carry. Default: internal.fqdn of
    /// --config, else the embedded default's.
    #[arg(long, value_name = "NAME", alias = "server-name")]
    fqdn: Option<String>,
    /// The configuration of the edge to send to (read, not changed): its internal.listen,
    /// internal.fqdn, first edge.sip_domains domain, and its internal certificate as client identity.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    files: ClientFiles,
    #[arg(long, value_enum, default_value_t = Method::Options, ignore_case = true)]
    method: Method,
    /// Request-URI and To. The default is a partner domain the embedded default does not federate
    /// with, so the edge answers with its refusal and diagnostic.
    #[arg(long, value_name = "URI", default_value = "sip:bob@partner.example")]
    to: String,
    /// From. Default: sip:alice@<the first of edge.sip_domains of --config, else the embedded
    /// default's> (the edge refuses any other domain, 1907).
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
    /// This client's certificate (PEM chain of a known server). Default: internal.cert_file of
    /// --config, else <state dir>/client.pem.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM). Default: internal.key_file of --config, else <state dir>/client.key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA(s) the edge's certificate must chain to (PEM). Default: internal.ca_file and the CAs
    /// in internal.cert_file of --config, else <state dir>/ca.pem.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl ClientFiles {
    fn any(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.ca.is_some()
    }
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

/// Why a client's configuration (`--config FILE`, or the embedded default) is unusable: every
/// issue, on one line (`send`, `test-push` and `health` print it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the embedded default configuration is invalid: {}", joined(.issues))]
    EmbeddedDefault { issues: Vec<Issue> },
    #[error("{} is not a valid configuration: {}", .path.display(), joined(.issues))]
    Invalid { path: PathBuf, issues: Vec<Issue> },
}

/// Why `sipedge send` got no final response (printed after `sipedge send: `, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// `--config FILE` did not validate.
    #[error("{source} (sipedge check-config {})", .path.display())]
    Config { path: PathBuf, source: ConfigError },
    #[error(transparent)]
    EmbeddedDefault(ConfigError),
    /// `internal.listen` of `--config` cannot be dialled (port 0).
    #[error("internal.listen is {listen}: no address to connect to; give --edge ADDR")]
    NoInternalAddress { listen: SocketAddr },
    #[error("no edge address: give --edge ADDR")]
    NoEdgeAddress,
    /// The edge's own internal identity (`--config` without `--cert`/`--key`/`--ca`).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The client files given, or the local PKI's in the state directory (`chosen_by` its rule).
    #[error(
        "{source} (the local PKI is written by `sipedge run` without --config into {}, chosen by {chosen_by}; \
         or give --cert, --key and --ca, or --config)",
        .state_dir.display()
    )]
    ClientFiles {
        source: ClientConfigError,
        state_dir: PathBuf,
        chosen_by: &'static str,
    },
    /// The edge closed without answering, as it does to a client certificate (`who`) that names no
    /// known server.
    #[error(
        "{error}: the edge does that when the client certificate ({who}) names no known server — its log \
         then says `internal_peer_not_known_server` — so add [[internal.known_servers]] fqdn = \"{who}\" \
         to its configuration and reload (kill -HUP), or give --cert/--key of a known server"
    )]
    NoKnownServer { error: ClientError, who: String },
    #[error("{0}")]
    Transaction(ClientError),
}

/// The final status, or why there was none.
fn send(args: &Args) -> Result<u16, SendError> {
    let state = local_pki::state_dir();
    let files = LocalPki::client_paths(&state.path);
    let file_config = match &args.config {
        Some(p) => Some(load_config(p).map_err(|source| SendError::Config {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let needs_default = args.edge.is_none() || args.fqdn.is_none() || args.from.is_none();
    let default = match &file_config {
        None if needs_default => Some(embedded_default().map_err(SendError::EmbeddedDefault)?),
        _ => None,
    };
    let base = file_config.as_ref().or(default.as_ref());
    let edge = match (args.edge, &file_config) {
        (Some(a), _) => a,
        (None, Some(c)) => {
            let listen = c.internal().listen;
            crate::test_push::connectable(listen).ok_or(SendError::NoInternalAddress { listen })?
        }
        (None, None) => local_pki::read_internal_addr(&state.path)
            .or(base.map(|c| c.internal().listen))
            .ok_or(SendError::NoEdgeAddress)?,
    };
    let server_name = match &args.fqdn {
        Some(n) => n.clone(),
        None => base.map_or_else(|| "localhost".to_owned(), |c| c.internal().fqdn.to_string()),
    };
    let from = match &args.from {
        Some(f) => f.clone(),
        None => format!("sip:alice@{}", first_domain(base)),
    };
    let (tls, who) = match &file_config {
        // The edge's own internal identity, trusting its CAs (as test-push --config and the probe).
        Some(c) if !args.files.any() => {
            let (tls, name) = crate::test_push::internal_identity(c)?;
            let who = name.unwrap_or_else(|| "the internal certificate".to_owned());
            (tls, who)
        }
        _ => {
            let cert = args.files.cert.clone().unwrap_or(files.cert);
            let key = args.files.key.clone().unwrap_or(files.key);
            let ca = args.files.ca.clone().unwrap_or(files.ca);
            let tls =
                sip_client::client_config(&cert, &key, &ca).map_err(|source| SendError::ClientFiles {
                    source,
                    state_dir: state.path.clone(),
                    chosen_by: state.from,
                })?;
            let who = sip_client::first_name(&cert).unwrap_or_else(|| cert.display().to_string());
            (tls, who)
        }
    };
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
    let mut refused_from = false;
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
                refused_from |=
                    name.to_ascii_lowercase().starts_with("ms-diagnostics") && value.starts_with("1907;");
            }
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let result = sip_client::transact(&target, &req, timeout, &mut show);
    if refused_from {
        println!(
            "hint: the edge accepts From URIs of its own edge.sip_domains only: give --from sip:<user>@<one of \
             them>, or --config with the edge's configuration"
        );
    }
    result.map(|r| r.status).map_err(|e| match e {
        ClientError::Closed | ClientError::Connection(_) => SendError::NoKnownServer { error: e, who },
        other => SendError::Transaction(other),
    })
}

/// The embedded default configuration (its addresses and names are the defaults of the clients).
pub(crate) fn embedded_default() -> Result<Config, ConfigError> {
    Config::embedded_default().map_err(|issues| ConfigError::EmbeddedDefault { issues })
}

/// The configuration file `path`, loaded and validated (the clients' `--config`); the error names
/// the file and every issue.
pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, ConfigError> {
    Config::load(path).map_err(|issues| ConfigError::Invalid {
        path: path.to_path_buf(),
        issues,
    })
}

fn joined(issues: &[Issue]) -> String {
    let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// The first of `edge.sip_domains` (the edge vouches for From URIs of its own domains only).
pub(crate) fn first_domain(config: Option<&Config>) -> String {
    config
        .and_then(|c| c.edge().sip_domains.first())
        .map_or_else(|| "localhost".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(key: &str, problem: &str) -> Issue {
        Issue {
            key: key.into(),
            problem: problem.into(),
        }
    }

    #[test]
    fn config_errors_name_the_file_and_every_issue() {
        let path = PathBuf::from("/etc/sipedge.toml");
        let issues = vec![
            issue("edge.fqdn", "missing"),
            issue("metrics.listen", "not an address"),
        ];
        let e = ConfigError::Invalid {
            path: path.clone(),
            issues: issues.clone(),
        };
        assert_eq!(
            e.to_string(),
            "/etc/sipedge.toml is not a valid configuration: edge.fqdn: missing; metrics.listen: not an address"
        );
        let sent = SendError::Config {
            path: path.clone(),
            source: e.clone(),
        };
        assert_eq!(
            sent.to_string(),
            format!("{e} (sipedge check-config {})", path.display())
        );
        let embedded = SendError::EmbeddedDefault(ConfigError::EmbeddedDefault { issues });
        assert_eq!(
            embedded.to_string(),
            "the embedded default configuration is invalid: edge.fqdn: missing; metrics.listen: not an address"
        );
    }

    #[test]
    fn send_errors_keep_their_texts() {
        let closed = ClientError::Closed;
        let who = "fe.local.test";
        assert_eq!(
            SendError::NoKnownServer {
                error: closed.clone(),
                who: who.into()
            }
            .to_string(),
            format!(
                "{closed}: the edge does that when the client certificate ({who}) names no known server — its log \
                 then says `internal_peer_not_known_server` — so add [[internal.known_servers]] fqdn = \"{who}\" \
                 to its configuration and reload (kill -HUP), or give --cert/--key of a known server"
            )
        );
        assert_eq!(
            SendError::Transaction(ClientError::Timeout(35_000)).to_string(),
            "no final response within 35000 ms"
        );
        let listen: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(
            SendError::NoInternalAddress { listen }.to_string(),
            "internal.listen is 0.0.0.0:0: no address to connect to; give --edge ADDR"
        );
        assert_eq!(
            SendError::NoEdgeAddress.to_string(),
            "no edge address: give --edge ADDR"
        );
        assert_eq!(
            SendError::from(IdentityError::NoCertFile).to_string(),
            "internal.cert_file is not set (the embedded default)"
        );
        let files = SendError::ClientFiles {
            source: ClientConfigError::Setup("TLS setup: x".into()),
            state_dir: PathBuf::from("/s"),
            chosen_by: "$SIPEDGE_STATE_DIR",
        };
        assert_eq!(
            files.to_string(),
            "TLS setup: x (the local PKI is written by `sipedge run` without --config into /s, chosen by \
             $SIPEDGE_STATE_DIR; or give --cert, --key and --ca, or --config)"
        );
    }
}
