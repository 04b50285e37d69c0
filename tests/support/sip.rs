//! SIP text helpers: LF → CRLF, requests as a front end or partner writes them, the RFC 3261 §8.2.6
//! response to a received request, and small accessors over `sip_codec::Message`.

use sip_codec::{parse, HeaderName, Message};

/// `\n` → `\r\n` (lines already ending in `\r\n` are kept).
pub fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// A request without body from `from` (with tag `a1`) to `uri`; `extra` are more header lines
/// (`Name: value\n` each). Call-ID is `call-<branch>`.
pub fn request(method: &str, uri: &str, via_host: &str, branch: &str, from: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\nVia: SIP/2.0/TLS {via_host};branch={branch}\nMax-Forwards: 70\nFrom: <{from}>;tag=a1\nTo: <{uri}>\nCall-ID: call-{branch}\nCSeq: 1 {method}\n{extra}Content-Length: 0\n\n"
    )
}

/// A MESSAGE with a short text body.
pub fn message(uri: &str, via_host: &str, branch: &str, from: &str) -> String {
    let body = "hello from the test";
    format!(
        "MESSAGE {uri} SIP/2.0\nVia: SIP/2.0/TLS {via_host};branch={branch}\nMax-Forwards: 70\nFrom: <{from}>;tag=a1\nTo: <{uri}>\nCall-ID: call-{branch}\nCSeq: 1 MESSAGE\nContent-Type: text/plain\nContent-Length: {}\n\n{body}",
        body.len()
    )
}

/// The response `status` to `req` (RFC 3261 §8.2.6): Via (all, in order), Record-Route, From, To
/// (a tag added when it has none), Call-ID, CSeq copied exactly; `extra` header lines
/// (`Name: value\n` each) added; no body. CRLF line ends.
pub fn reply_with(req: &Message<'_>, status: u16, reason: &str, to_tag: Option<&str>, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for h in req.headers() {
        let v = String::from_utf8_lossy(&h.unfolded()).into_owned();
        match h.name {
            HeaderName::Via
            | HeaderName::RecordRoute
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq => s.push_str(&format!("{}: {v}\r\n", h.name_str())),
            HeaderName::To => {
                let has_tag = req.to().ok().and_then(|t| t.tag()).is_some();
                match to_tag {
                    Some(t) if !has_tag => s.push_str(&format!("{}: {v};tag={t}\r\n", h.name_str())),
                    _ => s.push_str(&format!("{}: {v}\r\n", h.name_str())),
                }
            }
            _ => {}
        }
    }
    s.push_str(&crlf(extra));
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

pub fn reply(req: &Message<'_>, status: u16, reason: &str, to_tag: Option<&str>) -> String {
    reply_with(req, status, reason, to_tag, "")
}

/// Parses `text` (panics with the text when it does not parse).
pub fn p(text: &str) -> Message<'_> {
    parse(text.as_bytes()).unwrap_or_else(|e| panic!("unparseable message ({e}):\n{text}"))
}

pub fn status(text: &str) -> u16 {
    p(text).status().unwrap_or(0)
}

pub fn method(text: &str) -> String {
    p(text).method().unwrap_or("").to_owned()
}

/// CSeq method of a message ("" when absent).
pub fn cseq_method(text: &str) -> String {
    p(text).cseq().map(|c| c.method.to_owned()).unwrap_or_default()
}

/// Every value of `name` (list headers split at commas, lines in order), unfolded text.
pub fn values(text: &str, name: HeaderName) -> Vec<String> {
    p(text)
        .values(name)
        .filter_map(Result::ok)
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The first header line named `name` (as written, case-insensitively), its value.
pub fn header(text: &str, name: &str) -> Option<String> {
    let m = p(text);
    let v = m
        .headers_named(name)
        .next()
        .map(|h| String::from_utf8_lossy(&h.unfolded()).trim().to_owned());
    v
}

/// The branch of the top Via.
pub fn top_branch(text: &str) -> String {
    p(text)
        .top_via()
        .ok()
        .and_then(|v| v.branch())
        .unwrap_or("")
        .to_owned()
}

/// `host[:port]` of the top Via.
pub fn top_sent_by(text: &str) -> String {
    let m = p(text);
    let v = m.top_via().unwrap();
    match v.port {
        Some(port) => format!("{}:{port}", v.host),
        None => v.host.to_owned(),
    }
}

pub fn via_count(text: &str) -> usize {
    p(text).vias().count()
}

/// The URIs of the Record-Route values, in order.
pub fn record_route_uris(text: &str) -> Vec<String> {
    p(text)
        .record_routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect()
}

/// The URIs of the Route values, in order.
pub fn route_uris(text: &str) -> Vec<String> {
    p(text).routes().map(|r| r.unwrap().uri.to_owned()).collect()
}

/// The To tag of a response.
pub fn to_tag(text: &str) -> Option<String> {
    p(text).to().ok().and_then(|t| t.tag().map(str::to_owned))
}

/// The Call-ID.
pub fn call_id(text: &str) -> String {
    p(text).call_id().unwrap_or("").to_owned()
}

/// The first line of a message (for assertion messages).
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// First lines of several messages.
pub fn summary(msgs: &[String]) -> Vec<String> {
    msgs.iter()
        .map(|m| format!("{} [{}]", first_line(m), cseq_method(m)))
        .collect()
}
