//! [`ResponseBuilder`]: responses the edge generates itself (RFC 3261 §8.2.6, §16.7): Via lines, From,
//! To (with a To tag added when the request had none), Call-ID and CSeq (when it parsed) copied from the request, then
//! the edge's own headers (`ms-diagnostics`, `Warning`, `Retry-After`, ...) and Content-Length.
//! Works on a partial message from a [`crate::ParseError`] too, so a malformed request still gets its 400.

use crate::header::HeaderName;
use crate::message::Message;
use crate::name_addr::NameAddr;

#[derive(Debug)]
pub struct ResponseBuilder<'m, 'a> {
    req: &'m Message<'a>,
    status: u16,
    reason: &'m str,
    to_tag: Option<&'m str>,
    extra: Vec<(&'m str, &'m str)>,
    body: Option<(&'m str, &'m [u8])>,
}

impl<'m, 'a> ResponseBuilder<'m, 'a> {
    pub fn new(req: &'m Message<'a>, status: u16, reason: &'m str) -> Self {
        ResponseBuilder {
            req,
            status,
            reason,
            to_tag: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// The tag to add to To when the request's To has none (ignored for 100 Trying, §8.2.6.2).
    pub fn to_tag(mut self, tag: &'m str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    pub fn header(mut self, name: &'m str, value: &'m str) -> Self {
        self.extra.push((name, value));
        self
    }

    pub fn body(mut self, content_type: &'m str, body: &'m [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in self.req.headers() {
            match h.name {
                // A CSeq that did not parse (a partial message) cannot be echoed usefully: omitted.
                HeaderName::CSeq => {
                    if let Some(c) = self.req.cseq() {
                        line(&mut out, "CSeq", format!("{} {}", c.number, c.method).as_bytes());
                    }
                }
                HeaderName::Via | HeaderName::From | HeaderName::CallId => {
                    line(&mut out, h.name.as_str().unwrap_or(""), &h.unfolded());
                }
                HeaderName::To => {
                    let value = h.unfolded();
                    line(&mut out, "To", &value);
                    let needs_tag = self.status > 100
                        && std::str::from_utf8(&value)
                            .ok()
                            .and_then(|v| NameAddr::parse(v).ok())
                            .is_some_and(|n| n.tag().is_none());
                    if let (true, Some(tag)) = (needs_tag, self.to_tag) {
                        out.truncate(out.len() - 2);
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                _ => {}
            }
        }
        for (name, value) in &self.extra {
            line(&mut out, name, value.as_bytes());
        }
        let body = match self.body {
            Some((ct, body)) => {
                line(&mut out, "Content-Type", ct.as_bytes());
                body
            }
            None => &[],
        };
        line(&mut out, "Content-Length", body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, ErrorKind};

    const REQ: &[u8] = b"OPTIONS sip:bob@partner.example SIP/2.0\r\n\
v: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK1\r\n\
Via: SIP/2.0/TLS app.corp.example;branch=z9hG4bK2\r\n\
f: <sip:alice@corp.example>;tag=a1\r\n\
t: \"Bob\"\r\n <sip:bob@partner.example>\r\n\
i: call-1\r\n\
CSeq: 7 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn copies_the_transaction_headers_and_adds_a_to_tag() {
        let req = parse(REQ).unwrap();
        let diag = "1008;reason=\"Unable to resolve DNS SRV record\";source=\"edge.corp.example\"";
        let bytes = ResponseBuilder::new(&req, 504, "Server Time-out")
            .to_tag("edge1")
            .header("ms-diagnostics", diag)
            .build();
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.status(), Some(504));
        assert_eq!(resp.reason(), Some(&b"Server Time-out"[..]));
        assert_eq!(resp.vias().count(), 2);
        assert_eq!(resp.top_via().unwrap().host, "fe1.corp.example");
        assert_eq!(resp.to().unwrap().tag(), Some("edge1"));
        assert_eq!(resp.to().unwrap().display_name().unwrap(), "Bob");
        assert_eq!(resp.from().unwrap().tag(), Some("a1"));
        assert_eq!(resp.call_id().unwrap(), "call-1");
        assert_eq!(resp.cseq().unwrap().number, 7);
        assert_eq!(resp.ms_diagnostics().unwrap().id, 1008);
        assert_eq!(resp.content_length(), Some(0));
        resp.check_mandatory().unwrap();
        resp.validate().unwrap();
    }

    #[test]
    fn no_tag_on_100_and_existing_tag_kept() {
        let req = parse(REQ).unwrap();
        let bytes = ResponseBuilder::new(&req, 100, "Trying").to_tag("x").build();
        let trying = parse(&bytes).unwrap();
        assert_eq!(trying.to().unwrap().tag(), None);
        let tagged = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("<sip:bob@partner.example>", "<sip:bob@partner.example>;tag=b2");
        let req = parse(tagged.as_bytes()).unwrap();
        let bytes = ResponseBuilder::new(&req, 200, "OK")
            .to_tag("x")
            .body("text/plain", b"ok")
            .build();
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.to().unwrap().tag(), Some("b2"));
        assert_eq!(resp.body(), b"ok");
        assert_eq!(resp.content_type(), Some("text/plain"));
    }

    #[test]
    fn answers_a_request_whose_content_length_is_broken() {
        let bad = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("Content-Length: 0", "Content-Length: zero");
        let err = parse(bad.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadContentLength);
        let partial = err.partial.expect("headers were indexed");
        let bytes = ResponseBuilder::new(&partial, 400, "Bad Request")
            .header(
                "Warning",
                "399 edge.corp.example \"Content-Length is not a decimal number\"",
            )
            .build();
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.status(), Some(400));
        assert_eq!(resp.call_id().unwrap(), "call-1");
        resp.validate().unwrap();
    }
}
