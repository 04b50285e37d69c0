//! One HTTP connection's input: the request head read within its bounds (size, header count) and
//! parsed with `httparse`.

use super::*;

impl Conn {
    pub(super) fn step(&mut self, max_head: usize) -> Step {
        let mut chunk = [0u8; 2048];
        match &mut self.state {
            State::Reading(buf) => loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Step::Close(None),
                    Ok(n) => {
                        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        if let Some(head) = parse(buf, max_head) {
                            return Step::Respond(head);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close(None),
                }
            },
            State::Writing { out, pos } => loop {
                let Some(rest) = out.get(*pos..).filter(|r| !r.is_empty()) else {
                    return Step::Written;
                };
                match self.stream.write(rest) {
                    Ok(0) => return Step::Close(None),
                    Ok(n) => *pos = pos.saturating_add(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close(None),
                }
            },
            // Waiting for a probe's answer: what the client sends meanwhile is discarded.
            State::Parked(_) => loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Step::Close(None),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close(None),
                }
            },
            State::Lingering { discarded } => loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Step::Close(None),
                    Ok(n) => {
                        *discarded = discarded.saturating_add(n);
                        if *discarded > LINGER_BYTES {
                            return Step::Close(None);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close(None),
                }
            },
        }
    }
}

/// The head in `buf`, or `None` while it is incomplete and within `max_head`.
pub(super) fn parse(buf: &[u8], max_head: usize) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => {
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let method = match req.method {
                Some("GET") => Method::Get,
                Some("HEAD") => Method::Head,
                _ => Method::Other,
            };
            Some(Head::Request {
                method,
                path: path.to_owned(),
            })
        }
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => Some(Head::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() > max_head => Some(Head::TooLarge),
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Head::Bad),
    }
}
