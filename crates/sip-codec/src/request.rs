//! [`RequestBuilder`]: the one way the edge originates a request — the CANCEL and ACK it builds
//! from a forwarded INVITE, and the NOTIFY that ends a subscription whose link died. The caller
//! supplies every header (the builder knows no dialog state); the builder writes the start line, the
//! headers in the order given, `Max-Forwards` if none was given, `Content-Length`, and the body.
//! Values are written as given: a CR or LF in a name, a value or the Request-URI would let a caller
//! inject a header, so such a request is refused (`None`).

/// A request being built. Values borrow from the caller.
#[derive(Debug, Clone)]
pub struct RequestBuilder<'a> {
    method: &'a str,
    uri: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> RequestBuilder<'a> {
    pub fn new(method: &'a str, request_uri: &'a str) -> Self {
        RequestBuilder {
            method,
            uri: request_uri,
            headers: Vec::with_capacity(10),
            body: None,
        }
    }

    /// A header line, in order (repeat the name for several lines).
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value.as_bytes()));
        self
    }

    /// A header line whose value is raw octets (e.g. an unfolded header of a received message).
    pub fn header_bytes(mut self, name: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// The request's octets; `None` when a method, name, value or the Request-URI is empty where it
    /// must not be or holds CR/LF (or, for the method, anything but token octets).
    pub fn build(&self) -> Option<Vec<u8>> {
        let one_line = |v: &[u8]| !v.iter().any(|&b| b == b'\r' || b == b'\n');
        let uri_ok = !self.uri.is_empty() && one_line(self.uri.as_bytes()) && !self.uri.contains(' ');
        let headers_ok = self
            .headers
            .iter()
            .all(|(n, v)| crate::scan::is_token_str(n) && one_line(v));
        let body_ok = self.body.is_none_or(|(ct, _)| one_line(ct.as_bytes()));
        if !(crate::scan::is_token_str(self.method) && uri_ok && headers_ok && body_ok) {
            return None;
        }
        let body = self.body.map_or(&[][..], |(_, b)| b);
        let size = 64
            + self.method.len()
            + self.uri.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + self.body.map_or(0, |(ct, _)| ct.len() + 16)
            + body.len();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        for (n, v) in &self.headers {
            line(&mut out, n.as_bytes(), v);
        }
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Max-Forwards"))
        {
            line(&mut out, b"Max-Forwards", b"70");
        }
        if let Some((ct, _)) = self.body {
            line(&mut out, b"Content-Type", ct.as_bytes());
        }
        line(&mut out, b"Content-Length", body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, HeaderName};

    #[test]
    fn builds_a_request_that_parses_back() {
        let bytes = RequestBuilder::new("NOTIFY", "sip:alice@10.0.0.1:5061;transport=tls")
            .header("Via", "SIP/2.0/TLS edge.example;branch=z9hG4bKx1")
            .header("Route", "<sip:fe1.example;lr>")
            .header("From", "<sip:bob@partner.example>;tag=n1")
            .header("To", "<sip:alice@corp.example>;tag=s1")
            .header("Call-ID", "c1@x")
            .header("CSeq", "7 NOTIFY")
            .header("Subscription-State", "terminated;reason=deactivated")
            .build()
            .unwrap();
        let m = parse(&bytes).unwrap();
        m.check_mandatory().unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some("NOTIFY"));
        assert_eq!(m.request_uri(), Some("sip:alice@10.0.0.1:5061;transport=tls"));
        assert_eq!(m.max_forwards(), Some(70));
        assert_eq!(m.cseq().map(|c| (c.number, c.method)), Some((7, "NOTIFY")));
        assert_eq!(
            m.header(HeaderName::Route).map(|h| h.raw_value),
            Some(&b"<sip:fe1.example;lr>"[..])
        );
        assert!(m.body().is_empty());
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("NOTIFY sip:alice@10.0.0.1:5061;transport=tls SIP/2.0\r\nVia: "),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    }

    #[test]
    fn a_given_max_forwards_and_a_body_are_kept() {
        let bytes = RequestBuilder::new("MESSAGE", "sip:b@example.com")
            .header("Max-Forwards", "3")
            .header("Via", "SIP/2.0/TLS e;branch=z9hG4bK1")
            .header("From", "<sip:a@example.com>;tag=1")
            .header("To", "<sip:b@example.com>")
            .header("Call-ID", "x")
            .header("CSeq", "1 MESSAGE")
            .body("text/plain", b"hello")
            .build()
            .unwrap();
        let m = parse(&bytes).unwrap();
        assert_eq!(m.max_forwards(), Some(3));
        assert_eq!(m.body(), b"hello");
        assert_eq!(m.content_type(), Some("text/plain"));
        assert_eq!(String::from_utf8_lossy(&bytes).matches("Max-Forwards").count(), 1);
    }

    #[test]
    fn header_injection_is_refused() {
        let ok = || RequestBuilder::new("NOTIFY", "sip:a@b");
        assert!(ok().header("To", "<sip:a@b>\r\nX-Evil: 1").build().is_none());
        assert!(ok().header("To\r\nX", "v").build().is_none());
        assert!(ok().header("", "v").build().is_none());
        assert!(ok().header("Bad Name", "v").build().is_none());
        assert!(RequestBuilder::new("NOTIFY", "sip:a@b SIP/2.0\r\nX: y")
            .build()
            .is_none());
        assert!(RequestBuilder::new("NOTIFY", "").build().is_none());
        assert!(RequestBuilder::new("NO TIFY", "sip:a@b").build().is_none());
        assert!(RequestBuilder::new("", "sip:a@b").build().is_none());
        assert!(ok().body("text/plain\r\nX: y", b"").build().is_none());
        assert!(ok().header_bytes("To", b"a\nb").build().is_none());
        assert!(ok().header("To", "<sip:a@b>").build().is_some());
    }
}
