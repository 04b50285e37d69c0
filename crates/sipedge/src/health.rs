//! `sipedge health [--config FILE | --url URL]`: asks a running edge's own `/healthz` (or the URL
//! given, e.g. `/readyz`) — a container health check that needs no curl in the image. Exit 0 when
//! the answer is 200, 1 on any other HTTP answer (the edge said it is not healthy: its body says
//! why), 2 when no HTTP answer came (nothing listening, a timeout, not HTTP). Prints one line.
//!
//! Where it asks, first that applies: `--url`; `metrics.listen` of `--config FILE` (a wildcard
//! address asked on loopback); the embedded default's (with `SIPEDGE__METRICS__LISTEN` applied).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// More than any answer of the endpoint's health paths; the rest is not read.
const MAX_ANSWER: u64 = 16 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The edge's configuration: ask its metrics.listen.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    config: Option<PathBuf>,
    /// What to ask: http://HOST:PORT[/PATH] (path default /healthz; /readyz asks readiness).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

/// Why there was no verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The arguments or the configuration name no address to ask.
    Setup(String),
    /// Nothing answered HTTP there.
    NoAnswer(String),
}

/// Why `--url` names nothing to ask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthUrlError {
    #[error("{url:?} is not an http:// URL (e.g. http://127.0.0.1:9464/healthz)")]
    NotHttp { url: String },
    #[error("{url:?} needs a host and a port (e.g. http://127.0.0.1:9464)")]
    NoHostPort { url: String },
}

/// `http://host:port[/path]` → (host:port, path).
pub fn parse_url(url: &str) -> Result<(String, String), HealthUrlError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HealthUrlError::NotHttp { url: url.to_owned() })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or("/healthz"),
        ),
        None => (rest, "/healthz"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(HealthUrlError::NoHostPort { url: url.to_owned() });
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// The status code and body of an HTTP/1.x answer.
pub fn parse_answer(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    Some((code, body.trim().to_owned()))
}

/// Asks `target` (host:port) for `path`: the status and body, or why nothing answered.
pub fn ask(target: &str, path: &str) -> Result<(u16, String), Unanswered> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| Unanswered::NoAnswer(format!("cannot resolve {target}: {e}")))?
        .collect();
    let mut last = format!("{target} has no address");
    for addr in addrs {
        let mut s = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = format!("cannot connect to {addr}: {e}");
                continue;
            }
        };
        let io = |e: std::io::Error| Unanswered::NoAnswer(format!("{addr}: {e}"));
        s.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nUser-Agent: sipedge-health\r\n\r\n")
            .map_err(io)?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
        return parse_answer(&raw).ok_or_else(|| Unanswered::NoAnswer(format!("{addr} did not answer HTTP")));
    }
    Err(Unanswered::NoAnswer(last))
}

/// Where to ask, from the flags or a configuration.
fn target(args: &Args) -> Result<(String, String), Unanswered> {
    if let Some(url) = &args.url {
        return parse_url(url).map_err(|e| Unanswered::Setup(e.to_string()));
    }
    let config = match &args.config {
        Some(p) => crate::send::load_config(p),
        None => crate::send::embedded_default(),
    }
    .map_err(|e| Unanswered::Setup(e.to_string()))?;
    let listen = config.metrics().listen;
    let addr = crate::test_push::connectable(listen).ok_or_else(|| {
        Unanswered::Setup(format!(
            "metrics.listen is {listen}: no port to ask; give --url http://HOST:PORT"
        ))
    })?;
    Ok((addr.to_string(), "/healthz".to_owned()))
}

pub fn run(args: &Args) -> ExitCode {
    let answer = target(args).and_then(|(t, path)| ask(&t, &path).map(|a| (t, path, a)));
    match answer {
        Ok((t, path, (200, body))) => {
            println!("healthy: {t}{path} answered 200 {body}");
            ExitCode::SUCCESS
        }
        Ok((t, path, (code, body))) => {
            println!("not healthy: {t}{path} answered {code} {body}");
            ExitCode::from(1)
        }
        Err(Unanswered::Setup(e)) | Err(Unanswered::NoAnswer(e)) => {
            println!("no answer: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers() {
        assert_eq!(
            parse_url("http://127.0.0.1:9464"),
            Ok(("127.0.0.1:9464".into(), "/healthz".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:9464/readyz"),
            Ok(("[::1]:9464".into(), "/readyz".into()))
        );
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("http://nohost").is_err());
        assert_eq!(
            parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\ndraining\n"),
            Some((503, "draining".into()))
        );
        assert_eq!(parse_answer(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(parse_answer(b""), None);
    }

    #[test]
    fn url_errors_quote_the_url_and_give_an_example() {
        assert_eq!(
            parse_url("https://x:1").map_err(|e| e.to_string()),
            Err(r#""https://x:1" is not an http:// URL (e.g. http://127.0.0.1:9464/healthz)"#.to_owned())
        );
        assert_eq!(
            parse_url("http://nohost/readyz").map_err(|e| e.to_string()),
            Err(r#""http://nohost/readyz" needs a host and a port (e.g. http://127.0.0.1:9464)"#.to_owned())
        );
    }
}
