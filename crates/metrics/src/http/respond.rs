//! What the endpoint answers: a request head mapped to a page (`/metrics` scraped from the
//! [`crate::Source`], `/healthz`, `/readyz`, the edge's own paths through `Source::probe`), and the
//! bytes of an HTTP/1.1 response.

use super::*;

impl Server {
    pub(super) fn respond(&mut self, head: Head) -> Answer {
        let (get, path) = match head {
            // A HEAD is routed (and its probe asked) as a GET; `start_writing` leaves the body off.
            Head::Request { method, path } => (method != Method::Other, path),
            Head::TooLarge => {
                self.count(Refusal::HeadTooLarge);
                return Answer::Now(response(431, "text/plain", b"request head too large\n", ""));
            }
            Head::Bad => {
                self.count(Refusal::BadRequest);
                return Answer::Now(response(400, "text/plain", b"bad request\n", ""));
            }
        };
        let known = matches!(path.as_str(), "/metrics" | "/healthz" | "/readyz");
        if !known {
            let source = &self.source;
            let probe = if get {
                catch_unwind(AssertUnwindSafe(|| source.probe(&path)))
            } else {
                Ok(None)
            };
            return match probe {
                Ok(Some(Probe::Ready(r))) => Answer::Now(reply_bytes(&r)),
                Ok(Some(Probe::Pending { reply, wait })) => Answer::Later { reply, wait },
                Ok(None) => Answer::Now(response(404, "text/plain", b"not found\n", "")),
                Err(_) => Answer::Now(response(500, "text/plain", b"probe failed\n", "")),
            };
        }
        Answer::Now(self.respond_known(get, &path))
    }

    pub(super) fn respond_known(&mut self, get: bool, path: &str) -> Vec<u8> {
        if !get {
            return response(405, "text/plain", b"method not allowed\n", "Allow: GET, HEAD\r\n");
        }
        let source = &self.source;
        match path {
            "/healthz" => match catch_unwind(AssertUnwindSafe(|| source.health())) {
                Ok(h) if h.ok => response(200, "text/plain", b"ok\n", ""),
                Ok(h) => response(503, "text/plain", format!("{}\n", h.detail).as_bytes(), ""),
                Err(_) => response(503, "text/plain", b"health check failed\n", ""),
            },
            "/readyz" => match catch_unwind(AssertUnwindSafe(|| source.readiness())) {
                // The detail says what runs (e.g. the configuration generation, a refused reload).
                Ok(r) if r.ready && r.detail.is_empty() => response(200, "text/plain", b"ready\n", ""),
                Ok(r) if r.ready => {
                    response(200, "text/plain", format!("ready: {}\n", r.detail).as_bytes(), "")
                }
                Ok(r) => response(503, "text/plain", format!("{}\n", r.detail).as_bytes(), ""),
                Err(_) => response(503, "text/plain", b"readiness check failed\n", ""),
            },
            _ => self.scrape(),
        }
    }

    pub(super) fn scrape(&mut self) -> Vec<u8> {
        let source = &self.source;
        let Ok(mut families) = catch_unwind(AssertUnwindSafe(|| source.families())) else {
            return response(500, "text/plain", b"metrics source failed\n", "");
        };
        let mut usurped = 0usize;
        families.retain(|f| {
            let ours = EXPORTER.iter().any(|d| d.name == f.desc.name);
            if ours {
                usurped = usurped.saturating_add(f.samples.len());
            }
            !ours
        });
        let mut snapshot = Snapshot::new(&families);
        let rejected = snapshot
            .rejected()
            .saturating_add(u64::try_from(usurped).unwrap_or(u64::MAX));
        self.rejected_samples = self.rejected_samples.saturating_add(rejected);
        snapshot.push(
            &SAMPLES_REJECTED
                .family()
                .value::<&str>([], self.rejected_samples as f64),
        );
        let mut refused = HTTP_REFUSED.family();
        for (reason, n) in HTTP_REFUSALS.iter().zip(self.refusals) {
            refused = refused.value([*reason], n as f64);
        }
        snapshot.push(&refused);
        match snapshot.encode() {
            Ok(text) => response(200, prometheus::TEXT_FORMAT, text.as_bytes(), ""),
            Err(e) => response(500, "text/plain", format!("{e}\n").as_bytes(), ""),
        }
    }
}

/// What a request gets: bytes now, or a probe's answer later.
pub(super) enum Answer {
    Now(Vec<u8>),
    Later {
        reply: std::sync::mpsc::Receiver<Reply>,
        wait: Duration,
    },
}

pub(super) fn reply_bytes(r: &Reply) -> Vec<u8> {
    response(r.status, &r.content_type, r.body.as_bytes(), "")
}

/// The length of the status line and headers of `response`'s `out`, blank line included (all of it
/// if there is no blank line).
pub(super) fn head_len(out: &[u8]) -> usize {
    out.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |at| at.saturating_add(4))
}

pub(super) fn response(status: u16, content_type: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
